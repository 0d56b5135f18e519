//! The operators through `weir run`: sample → enrich → redact in one chain, the kept set
//! unchanged by a crash, and reference data reloaded under a running pipeline.

use std::path::{Path, PathBuf};
use std::time::Duration;

use weir_schemas::synth::HttpRequests;

use crate::backbone::{TOPIC, dataset_toml};
use crate::harness::{MockKafka, World, flush, free_port, http_get, metric_sum, producer, send};

const PARTITIONS: i32 = 2;

fn maxmind(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../operators/testdata/enrich/maxmind")
        .join(file)
        .canonicalize()
        .unwrap()
}

/// IPs with known answers in MaxMind's test databases.
const IPS: &[(&str, &str)] = &[
    ("214.0.0.5", "city"),
    ("2001:480:10::1", "city"),
    ("1.128.0.1", "asn"),
];
const ZONES: &[&str] = &["a.example", "b.example", "c.example"];

/// Synthetic http_requests with a known IP, zone, and personal data in the URI.
/// Returns `(ray_id, partition, record)`.
fn records(seed: u64, n: usize) -> Vec<(String, i32, Vec<u8>)> {
    let mut generator = HttpRequests::new(seed).compact(true);
    let mut buf = Vec::new();
    (0..n)
        .map(|i| {
            buf.clear();
            let meta = generator.write_record(&mut buf);
            let mut v: serde_json::Value = serde_json::from_slice(&buf).unwrap();
            v["ClientIP"] = IPS[i % IPS.len()].0.into();
            v["ZoneName"] = ZONES[i % ZONES.len()].into();
            v["ClientRequestURI"] =
                format!("/login?email=alice{i}@example.com&token=s3cr3tT0ken{i}").into();
            (
                weir_schemas::synth::ray_id_hex(meta.id),
                (i % PARTITIONS as usize) as i32,
                serde_json::to_vec(&v).unwrap(),
            )
        })
        .collect()
}

fn produce(bootstrap: &str, recs: &[(String, i32, Vec<u8>)]) -> Vec<i64> {
    let p = producer(bootstrap);
    let mut counts = vec![0i64; PARTITIONS as usize];
    for (_, part, payload) in recs {
        send(&p, TOPIC, *part, payload);
        counts[*part as usize] += 1;
    }
    flush(&p);
    counts
}

fn chain_toml(lookup: &Path) -> String {
    format!(
        r#"[[datasets.operators]]
type = "sample"
key = "RayID"
seed = 7
rate = 0.5

[[datasets.operators]]
type = "enrich"
geoip = {{ database = "{city}", field = "ClientIP" }}
asn = {{ database = "{asn}", field = "ClientIP" }}
user_agent = {{ field = "ClientRequestUserAgent" }}
[[datasets.operators.lookup]]
path = "{lookup}"
key = ["ZoneName"]
columns = ["team"]

[[datasets.operators]]
type = "redact"
"#,
        city = maxmind("GeoIP2-City-Test.mmdb").display(),
        asn = maxmind("GeoLite2-ASN-Test.mmdb").display(),
        lookup = lookup.display(),
    )
}

/// Runs the chain over `recs`, crashing once after a ledger commit if `crash`, and returns
/// the world and config for inspection, and what the last `weir run` served on `/metrics`
/// once it had consumed everything.
fn run_chain(recs: &[(String, i32, Vec<u8>)], crash: bool) -> (World, PathBuf, String) {
    let world = World::new();
    let kafka = MockKafka::start(&[(TOPIC, PARTITIONS)]);
    let lookup = world.path("zones.csv");
    std::fs::write(&lookup, "ZoneName,team\na.example,alpha\nb.example,beta\n").unwrap();
    let metrics = free_port();
    let config = world.config(
        "weir.toml",
        &kafka.bootstrap,
        &format!(
            "[metrics]\nlisten = \"127.0.0.1:{metrics}\"\n{}",
            dataset_toml(&chain_toml(&lookup))
        ),
    );
    let half = recs.len() / 2;
    let mut counts = produce(&kafka.bootstrap, &recs[..half]);
    if crash {
        let mut weir = world.weir_run(
            &config,
            "crash.log",
            &[("WEIR_FAILPOINT", "after-ledger:2")],
        );
        let status = weir
            .wait_timeout(Duration::from_secs(120))
            .expect("failpoint reached");
        assert!(!status.success(), "{}", world.log("crash.log"));
    }
    let more = produce(&kafka.bootstrap, &recs[half..]);
    for (c, m) in counts.iter_mut().zip(more) {
        *c += m;
    }
    let mut weir = world.weir_run(&config, "weir.log", &[]);
    world.wait_consumed(
        "http_requests",
        TOPIC,
        &counts,
        Duration::from_secs(180),
        &mut weir,
    );
    let text = http_get(metrics, "/metrics").expect("metrics answer").1;
    weir.terminate();
    drop(kafka);
    (world, config, text)
}

#[test]
fn sample_enrich_redact_end_to_end_and_same_sample_after_a_crash() {
    let recs = records(21, 1200);
    let (world, config, _) = run_chain(&recs, true);

    // Sampling: every kept row says the rate it was kept with; the estimate is near the truth.
    let rows = world.query(
        &config,
        "SELECT count(*), min(_sample_rate), max(_sample_rate), sum(1 / _sample_rate) FROM http_requests",
    );
    let cols: Vec<&str> = rows[0].split(',').collect();
    let kept: f64 = cols[0].parse().unwrap();
    assert!(
        (500.0..=700.0).contains(&kept),
        "kept {kept} of 1200 at p=0.5"
    );
    assert_eq!((cols[1], cols[2]), ("0.5", "0.5"));
    let estimate: f64 = cols[3].parse().unwrap();
    assert!((estimate - 2.0 * kept).abs() < 1e-6);

    // Enrichment from MaxMind's test databases, the lookup table, and the version column.
    let geo = world.query(
        &config,
        "SELECT ClientIP, geo_country_code, geo_city, asn_number, count(*) FROM http_requests GROUP BY 1, 2, 3, 4 ORDER BY 1",
    );
    let by_ip: Vec<Vec<&str>> = geo.iter().map(|r| r.split(',').collect()).collect();
    let find = |ip: &str| {
        by_ip
            .iter()
            .find(|r| r[0] == ip)
            .unwrap_or_else(|| panic!("no rows for {ip}: {geo:?}"))
    };
    assert_eq!(find("214.0.0.5")[1..3], ["SG", "Singapore"]);
    assert_eq!(find("2001:480:10::1")[1..3], ["US", "San Diego"]);
    assert_eq!(find("1.128.0.1")[3], "1221");
    let teams = world.query(
        &config,
        "SELECT ZoneName, team, count(*) FROM http_requests GROUP BY 1, 2 ORDER BY 1",
    );
    let teams: Vec<String> = teams
        .iter()
        .map(|r| r.rsplit_once(',').unwrap().0.to_string())
        .collect();
    assert_eq!(teams, ["a.example,alpha", "b.example,beta", "c.example,"]);
    let versions = world.query(
        &config,
        "SELECT count(*) FROM http_requests WHERE enrich_version IS NULL OR enrich_version NOT LIKE '%GeoIP2-City%'",
    );
    assert_eq!(versions, ["0"], "every row names the database build it saw");

    // Redaction: nothing personal in what landed, in SQL or in the raw files.
    let leaked = world.query(
        &config,
        "SELECT count(*) FROM http_requests WHERE ClientRequestURI LIKE '%@example.com%' OR ClientRequestURI LIKE '%s3cr3tT0ken%'",
    );
    assert_eq!(leaked, ["0"]);
    for entry in walk(&world.lake_dir().join("http_requests")) {
        let bytes = std::fs::read(&entry).unwrap();
        assert!(
            !contains(&bytes, b"s3cr3tT0ken") && !contains(&bytes, b"@example.com"),
            "{} holds unredacted data",
            entry.display()
        );
    }

    // The crash changed nothing: the kept set equals an uninterrupted run's, each row once.
    let (control, control_config, metrics) = run_chain(&recs, false);
    let sql = "SELECT RayID FROM http_requests ORDER BY 1";
    let ours = world.query(&config, sql);
    let theirs = control.query(&control_config, sql);
    assert_eq!(ours.len(), kept as usize);
    let mut dedup = ours.clone();
    dedup.dedup();
    assert_eq!(dedup.len(), ours.len(), "a row landed twice");
    assert_eq!(
        ours, theirs,
        "the kept set differs from an uninterrupted run"
    );

    // The operators' counters reach /metrics, labelled by dataset: the uninterrupted run saw
    // every record once, and every kept row had personal data in its URI.
    let ds = "dataset=\"http_requests\"";
    let kept_metric = metric_sum(
        &metrics,
        "weir_sample_rows_total",
        &[ds, "outcome=\"kept\""],
    );
    let dropped = metric_sum(
        &metrics,
        "weir_sample_rows_total",
        &[ds, "outcome=\"dropped\""],
    );
    assert_eq!(
        (kept_metric, kept_metric + dropped),
        (kept as u64, recs.len() as u64),
        "metrics:\n{metrics}"
    );
    let uri_hits = metric_sum(
        &metrics,
        "weir_redact_hits_total",
        &[ds, "field=\"ClientRequestURI\"", "mode=\"enforce\""],
    );
    assert!(uri_hits >= kept as u64, "metrics:\n{metrics}");
    assert!(
        metric_sum(&metrics, "weir_enrich_rows_total", &[ds]) >= kept as u64,
        "metrics:\n{metrics}"
    );
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn mmdb_and_lookup_table_reload_under_a_running_pipeline_and_bad_files_are_refused() {
    let world = World::new();
    let kafka = MockKafka::start(&[(TOPIC, PARTITIONS)]);
    let lookup = world.path("zones.csv");
    std::fs::write(&lookup, "ZoneName,team\na.example,alpha\nb.example,beta\n").unwrap();
    let city = world.path("city.mmdb");
    std::fs::copy(maxmind("GeoIP2-City-Test.mmdb"), &city).unwrap();
    let ops = format!(
        r#"[[datasets.operators]]
type = "enrich"
geoip = {{ database = "{}", field = "ClientIP" }}
[[datasets.operators.lookup]]
path = "{}"
key = ["ZoneName"]
columns = ["team"]

[reference]
reload_interval = "300ms"
"#,
        city.display(),
        lookup.display()
    );
    let port = crate::harness::free_port();
    let config = world.config(
        "weir.toml",
        &kafka.bootstrap,
        &format!(
            "[metrics]\nlisten = \"127.0.0.1:{port}\"\n{}",
            dataset_toml(&ops)
        ),
    );
    // `weir_reference_reloads_total{outcome}` reaches `want` (it is counted just after the
    // log line).
    let wait_reloads = |outcome: &str, want: u64| {
        let series = format!("weir_reference_reloads_total{{outcome=\"{outcome}\"}} ");
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let text = crate::harness::http_get(port, "/metrics")
                .map(|r| r.1)
                .unwrap_or_default();
            let got: u64 = text
                .lines()
                .find_map(|l| l.strip_prefix(&series)?.trim().parse().ok())
                .unwrap_or(0);
            if got >= want {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{series}{got}, want {want}\n{text}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let mut weir = world.weir_run(&config, "weir.log", &[]);
    let mut counts = vec![0i64; PARTITIONS as usize];
    let phase = |seed: u64, counts: &mut Vec<i64>, weir: &mut crate::harness::Proc| {
        let recs = records(seed, 60);
        for (c, m) in counts.iter_mut().zip(produce(&kafka.bootstrap, &recs)) {
            *c += m;
        }
        world.wait_consumed(
            "http_requests",
            TOPIC,
            counts,
            Duration::from_secs(120),
            weir,
        );
        recs.into_iter().map(|r| r.0).collect::<Vec<_>>()
    };
    let first = phase(1, &mut counts, &mut weir);

    // New versions of the table and the database: rows from now on see them.
    std::fs::write(
        &lookup,
        "ZoneName,team\na.example,apex\nb.example,beta\nc.example,gamma\n",
    )
    .unwrap();
    std::fs::copy(
        maxmind("GeoLite2-City-Test.mmdb"),
        world.path("city.mmdb.new"),
    )
    .unwrap();
    std::fs::rename(world.path("city.mmdb.new"), &city).unwrap();
    wait_for_log(&world, "weir.log", "reference data reloaded", 2);
    wait_reloads("ok", 2);
    let second = phase(2, &mut counts, &mut weir);

    // A bad replacement (duplicate keys) is refused; the previous version stays.
    std::fs::write(&lookup, "ZoneName,team\na.example,x\na.example,y\n").unwrap();
    std::fs::write(&city, b"this is not a maxmind database").unwrap();
    wait_for_log(&world, "weir.log", "reference data reload refused", 2);
    wait_reloads("refused", 2);
    let third = phase(3, &mut counts, &mut weir);
    weir.terminate();
    assert!(
        world.log("weir.log").contains("duplicate") || world.log("weir.log").contains("twice"),
        "the refusal names the problem:\n{}",
        world.log("weir.log")
    );

    // `weir query` builds the chain to learn the table's schema, so it needs valid
    // reference data too: put the good version back before asking.
    std::fs::write(
        &lookup,
        "ZoneName,team\na.example,apex\nb.example,beta\nc.example,gamma\n",
    )
    .unwrap();
    std::fs::copy(maxmind("GeoLite2-City-Test.mmdb"), &city).unwrap();
    let databases = |ids: &[String]| {
        let list = ids
            .iter()
            .map(|i| format!("'{i}'"))
            .collect::<Vec<_>>()
            .join(",");
        world.query(
            &config,
            &format!(
                "SELECT DISTINCT CASE WHEN enrich_version LIKE '%GeoLite2-City@%' THEN 'geolite' WHEN enrich_version LIKE '%GeoIP2-City@%' THEN 'geoip2' ELSE enrich_version END FROM http_requests WHERE RayID IN ({list})"
            ),
        )
    };
    assert_eq!(databases(&first), ["geoip2"]);
    assert_eq!(databases(&second), ["geolite"]);
    assert_eq!(
        databases(&third),
        ["geolite"],
        "the corrupt database was refused"
    );
    let teams = |ids: &[String]| {
        let list = ids
            .iter()
            .map(|i| format!("'{i}'"))
            .collect::<Vec<_>>()
            .join(",");
        world.query(
            &config,
            &format!(
                "SELECT ZoneName, team, count(DISTINCT enrich_version) FROM http_requests WHERE RayID IN ({list}) GROUP BY 1, 2 ORDER BY 1"
            ),
        )
    };
    assert_eq!(
        teams(&first),
        ["a.example,alpha,1", "b.example,beta,1", "c.example,,1"]
    );
    assert_eq!(
        teams(&second),
        ["a.example,apex,1", "b.example,beta,1", "c.example,gamma,1"]
    );
    assert_eq!(
        teams(&third),
        ["a.example,apex,1", "b.example,beta,1", "c.example,gamma,1"]
    );
    let versions = world.query(
        &config,
        "SELECT count(DISTINCT enrich_version) FROM http_requests",
    );
    assert_eq!(versions, ["2"], "rows name the table version they saw");
}

fn wait_for_log(world: &World, log: &str, needle: &str, times: usize) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while world.log(log).matches(needle).count() < times {
        assert!(
            std::time::Instant::now() < deadline,
            "no {needle:?} in the log:\n{}",
            world.log(log)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
