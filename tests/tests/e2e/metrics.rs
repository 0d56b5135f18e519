//! `/metrics`, `/livez` and `/healthz` of running `weir` processes: the series that the
//! dashboards and alert rules read, with sane values during and after a run, and no
//! per-partition series left on a process for partitions it no longer holds.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use weir_schemas::synth::HttpRequests;

use crate::backbone::{TOPIC, dataset_toml};
use crate::harness::{MockKafka, Proc, World, free_port, http_get, produce_http};

const PARTITIONS: i32 = 4;

/// One scrape of `/metrics`: `(name, labels, value)` per sample line.
struct Scrape(Vec<(String, String, f64)>);

impl Scrape {
    fn take(port: u16) -> Option<Scrape> {
        let (status, text) = http_get(port, "/metrics")?;
        assert_eq!(status, 200, "{text}");
        let mut samples = Vec::new();
        for line in text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
        {
            let (series, value) = line.rsplit_once(' ').expect("a sample line");
            let (name, labels) = match series.split_once('{') {
                Some((n, l)) => (n, l.trim_end_matches('}')),
                None => (series, ""),
            };
            samples.push((name.to_owned(), labels.to_owned(), value.parse().unwrap()));
        }
        Some(Scrape(samples))
    }

    fn series(&self, name: &str) -> Vec<(&str, f64)> {
        self.0
            .iter()
            .filter(|(n, _, _)| n == name)
            .map(|(_, l, v)| (l.as_str(), *v))
            .collect()
    }

    fn value(&self, name: &str, labels: &str) -> Option<f64> {
        self.series(name)
            .into_iter()
            .find(|(l, _)| *l == labels)
            .map(|(_, v)| v)
    }

    fn sum(&self, name: &str) -> f64 {
        self.series(name).iter().map(|(_, v)| v).sum()
    }

    /// The `partition` label of each series of `name`.
    fn partitions(&self, name: &str) -> BTreeSet<i32> {
        self.series(name)
            .iter()
            .map(|(l, _)| {
                let at = l.find("partition=\"").expect("a partition label") + 11;
                l[at..].split('"').next().unwrap().parse().unwrap()
            })
            .collect()
    }
}

/// Scrapes `port` until `done` holds for a scrape, or fails after `limit` with the last one.
fn wait_scrape(
    port: u16,
    what: &str,
    limit: Duration,
    weir: &mut [&mut Proc],
    done: impl Fn(&Scrape) -> bool,
) -> Scrape {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(s) = Scrape::take(port)
            && done(&s)
        {
            return s;
        }
        for w in weir.iter_mut() {
            assert!(w.running(), "{} exited", w.name);
        }
        if Instant::now() > deadline {
            let text = http_get(port, "/metrics").map(|r| r.1).unwrap_or_default();
            panic!("{what}: not seen within {limit:?}; last scrape:\n{text}");
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn config(world: &World, name: &str, bootstrap: &str, port: u16) -> std::path::PathBuf {
    world.config(
        name,
        bootstrap,
        &format!(
            "[metrics]\nlisten = \"127.0.0.1:{port}\"\n[health]\nstall_timeout = \"2m\"\n{}",
            dataset_toml("")
        ),
    )
}

#[test]
fn metrics_follow_a_run_a_drain_and_a_rebalance() {
    let world = World::new();
    let kafka = MockKafka::start(&[(TOPIC, PARTITIONS)]);
    let (port_a, port_b) = (free_port(), free_port());
    let config_a = config(&world, "a.toml", &kafka.bootstrap, port_a);
    let config_b = config(&world, "b.toml", &kafka.bootstrap, port_b);
    // Event times a minute ago, 1 ms apart: freshness is about a minute after the drain.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64;
    let start = now - 60_000_000_000;
    let mut generator = HttpRequests::new(21)
        .compact(true)
        .with_start_time(start)
        .with_step(1_000_000);
    let mut ids = produce_http(&kafka.bootstrap, TOPIC, PARTITIONS, 300, &mut generator);

    let mut a = world.weir_run(&config_a, "a.log", &[]);
    // During the run: every partition held, its lag known, alive and ready.
    let during = wait_scrape(
        port_a,
        "A holding every partition with a known lag",
        Duration::from_secs(90),
        &mut [&mut a],
        |s| {
            s.value("weir_assigned_partitions", "") == Some(f64::from(PARTITIONS))
                && s.series("weir_consumer_lag").len() == PARTITIONS as usize
        },
    );
    assert_eq!(
        during.series("weir_build_info"),
        [(
            format!("version=\"{}\"", env!("CARGO_PKG_VERSION")).as_str(),
            1.0
        )]
    );
    assert_eq!(http_get(port_a, "/livez").map(|r| r.0), Some(200));
    assert_eq!(http_get(port_a, "/healthz").map(|r| r.0), Some(200));

    world.expect_rows(
        &config_a,
        "http_requests",
        ids.len(),
        Duration::from_secs(120),
        &mut [&mut a],
    );
    // After the drain: the ledger is at each partition's end, so the lag falls to 0.
    let drained = wait_scrape(
        port_a,
        "lag 0 and the ledger at the end of every partition",
        Duration::from_secs(60),
        &mut [&mut a],
        |s| {
            let lags = s.series("weir_consumer_lag");
            lags.len() == PARTITIONS as usize
                && lags.iter().all(|(_, v)| *v == 0.0)
                && (0..PARTITIONS).all(|p| {
                    s.value(
                        "weir_committed_offset",
                        &format!("topic=\"{TOPIC}\",partition=\"{p}\""),
                    ) == Some(300.0)
                })
        },
    );
    let fresh = drained.value("weir_freshness_seconds", "dataset=\"http_requests\"");
    let fresh = fresh.expect("freshness of http_requests");
    assert!(
        fresh.is_finite() && (50.0..900.0).contains(&fresh),
        "freshness {fresh}"
    );
    assert_eq!(drained.sum("weir_records_total"), ids.len() as f64);
    assert_eq!(drained.sum("weir_rows_total"), ids.len() as f64);
    let commits = drained.sum("weir_commits_total");
    assert!(commits >= f64::from(PARTITIONS), "{commits} commits");
    for histogram in [
        "weir_commit_duration_seconds",
        "weir_upload_duration_seconds",
    ] {
        let count = drained.sum(&format!("{histogram}_count"));
        assert_eq!(count, commits, "{histogram}: one observation per commit");
        assert!(
            drained.sum(&format!("{histogram}_sum")) > 0.0,
            "{histogram}"
        );
        let inf = drained.value(
            &format!("{histogram}_bucket"),
            "dataset=\"http_requests\",le=\"+Inf\"",
        );
        assert_eq!(
            inf,
            Some(count),
            "{histogram}: +Inf bucket holds every observation"
        );
    }
    for stage in ["decode", "operators", "write"] {
        let count = drained
            .value(
                "weir_batch_seconds_count",
                &format!("dataset=\"http_requests\",stage=\"{stage}\""),
            )
            .unwrap_or(0.0);
        assert!(count >= 1.0, "batch stage {stage}: {count} batches");
    }
    assert_eq!(http_get(port_a, "/livez").map(|r| r.0), Some(200));

    // B joins: partitions move from A to B, and A drops the series of those it gave up.
    let mut b = world.weir_run(&config_b, "b.log", &[]);
    let split = |s: &Scrape| s.value("weir_assigned_partitions", "").unwrap_or(0.0);
    let deadline = Instant::now() + Duration::from_secs(120);
    let (held_a, held_b) = loop {
        let (sa, sb) = (Scrape::take(port_a), Scrape::take(port_b));
        if let (Some(sa), Some(sb)) = (sa, sb) {
            let (na, nb) = (split(&sa), split(&sb));
            let (pa, pb) = (
                sa.partitions("weir_committed_offset"),
                sb.partitions("weir_committed_offset"),
            );
            if na > 0.0
                && nb > 0.0
                && na + nb == f64::from(PARTITIONS)
                && pa.len() as f64 == na
                && pb.len() as f64 == nb
                && sa.partitions("weir_consumer_lag") == pa
                && sb.partitions("weir_consumer_lag") == pb
            {
                break (pa, pb);
            }
        }
        assert!(a.running() && b.running(), "a weir exited");
        assert!(
            Instant::now() < deadline,
            "partitions were not split between A and B\n--- a\n{}\n--- b\n{}",
            http_get(port_a, "/metrics")
                .map(|r| r.1)
                .unwrap_or_default(),
            http_get(port_b, "/metrics")
                .map(|r| r.1)
                .unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    assert!(
        held_a.is_disjoint(&held_b),
        "a partition exported by both: {held_a:?} {held_b:?}"
    );

    // More records for both; both drain to lag 0.
    ids.extend(produce_http(
        &kafka.bootstrap,
        TOPIC,
        PARTITIONS,
        100,
        &mut generator,
    ));
    world.expect_rows(
        &config_a,
        "http_requests",
        ids.len(),
        Duration::from_secs(120),
        &mut [&mut a, &mut b],
    );
    for port in [port_a, port_b] {
        wait_scrape(
            port,
            "lag 0 on the partitions held",
            Duration::from_secs(60),
            &mut [&mut a, &mut b],
            |s| {
                let lags = s.series("weir_consumer_lag");
                !lags.is_empty()
                    && lags.iter().all(|(_, v)| *v == 0.0)
                    && s.series("weir_committed_offset")
                        .iter()
                        .all(|(_, v)| *v == 400.0)
            },
        );
        assert_eq!(http_get(port, "/livez").map(|r| r.0), Some(200));
    }

    // B leaves: A holds every partition again.
    b.terminate();
    wait_scrape(
        port_a,
        "A holding every partition again",
        Duration::from_secs(120),
        &mut [&mut a],
        |s| {
            s.value("weir_assigned_partitions", "") == Some(f64::from(PARTITIONS))
                && s.partitions("weir_committed_offset").len() == PARTITIONS as usize
                && s.series("weir_consumer_lag").iter().all(|(_, v)| *v == 0.0)
        },
    );
    a.terminate();
    world.assert_exactly_once(&config_a, &ids);
}
