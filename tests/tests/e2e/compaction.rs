//! `weir compact` on hours that `weir run` is still writing into (late data), with
//! kill -9 of both processes at seeded points: every row stays exactly once through
//! `weir query`, no file of a killed compaction survives the next run, and a run with
//! nothing left to do changes nothing.

use std::collections::HashSet;
use std::time::Duration;

use chrono::DurationRound;

use rand::{Rng, SeedableRng};
use weir_schemas::synth::{DEFAULT_START_NS, HttpRequests};

use crate::backbone::{TOPIC, dataset_toml, malformed};
use crate::harness::{MockKafka, Proc, World, flush, produce_http, producer, send};

const PARTITIONS: i32 = 4;
/// Event time advances 2.5 s per record: each wave of 4 × 400 records spans about an hour.
const STEP_NS: i64 = 2_500_000_000;

/// Where `weir compact` may be killed: after uploading its files, before its entry; right
/// after its entry; while a later run removes what a killed one left.
const COMPACT_POINTS: [&str; 3] = ["after-upload:1", "after-ledger:1", "after-upload:2"];

fn compact(world: &World, config: &std::path::Path, log: &str, failpoint: Option<&str>) -> Proc {
    let env: Vec<(&str, &str)> = failpoint
        .map(|p| vec![("WEIR_FAILPOINT", p)])
        .unwrap_or_default();
    world.weir_job("compact", config, &["--min-age", "0s"], log, &env)
}

#[test]
fn compaction_during_ingestion_with_kills_keeps_every_row_once() {
    let seed: u64 = std::env::var("WEIR_COMPACTION_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(15);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let world = World::new();
    let kafka = MockKafka::start(&[(TOPIC, PARTITIONS)]);
    let config = world.config(
        "weir.toml",
        &kafka.bootstrap,
        &format!(
            "[compaction]\nbloom_filter_columns = [\"RayID\", \"ClientIP\"]\n{}",
            dataset_toml("")
        ),
    );
    let mut generator = HttpRequests::new(seed).compact(true).with_step(STEP_NS);
    let mut ids = produce_http(&kafka.bootstrap, TOPIC, PARTITIONS, 400, &mut generator);
    let mut weir = world.weir_run(&config, "weir-0.log", &[]);
    world.expect_rows(
        &config,
        "http_requests",
        ids.len(),
        Duration::from_secs(180),
        &mut [&mut weir],
    );

    let mut aborted = 0;
    let mut bad = 0usize;
    for round in 0..4 {
        // More records: some late (back at the first hours), some new.
        if round % 2 == 1 {
            generator.set_event_time(DEFAULT_START_NS + rng.random_range(0..3_600_000_000_000));
        }
        ids.extend(produce_http(
            &kafka.bootstrap,
            TOPIC,
            PARTITIONS,
            200,
            &mut generator,
        ));
        // And records that go to the dead letters, compacted too.
        let p = producer(&kafka.bootstrap);
        for (payload, _) in malformed() {
            send(&p, TOPIC, round % PARTITIONS, &payload);
            bad += 1;
        }
        flush(&p);
        // A compaction while weir run consumes them; killed at a seeded point or not.
        let point = if rng.random_bool(0.75) {
            Some(COMPACT_POINTS[rng.random_range(0..COMPACT_POINTS.len())])
        } else {
            None
        };
        let log = format!("compact-{round}.log");
        let mut job = compact(&world, &config, &log, point);
        let status = job
            .wait_timeout(Duration::from_secs(240))
            .unwrap_or_else(|| panic!("weir compact did not finish\n{}", world.log(&log)));
        let compacted = world.log(&log).matches(" rows, ").count();
        eprintln!("round {round}: failpoint {point:?}, exit {status}, hours compacted {compacted}");
        match point {
            Some(p) if world.log(&log).contains("failpoint") => {
                assert!(!status.success(), "compaction should have aborted at {p}");
                aborted += 1;
            }
            // The point may not be reached (nothing to compact, or one hour only).
            _ => assert!(
                status.success(),
                "weir compact failed: {status}\n{}",
                world.log(&log)
            ),
        }
        // And weir run killed -9 now and then.
        if rng.random_bool(0.5) {
            weir.signal("KILL");
            let _ = weir.wait_timeout(Duration::from_secs(10));
            weir = world.weir_run(&config, &format!("weir-{}.log", round + 1), &[]);
        }
    }
    assert!(
        aborted > 0,
        "seed {seed}: no compaction was killed; pick another seed"
    );
    world.expect_rows(
        &config,
        "http_requests",
        ids.len(),
        Duration::from_secs(180),
        &mut [&mut weir],
    );
    weir.terminate();

    // A last compaction with nothing in flight, then one with nothing to do.
    let mut job = compact(&world, &config, "compact-final.log", None);
    let status = job
        .wait_timeout(Duration::from_secs(240))
        .expect("compaction finishes");
    assert!(status.success(), "{}", world.log("compact-final.log"));
    let mut job = compact(&world, &config, "compact-noop.log", None);
    let status = job
        .wait_timeout(Duration::from_secs(120))
        .expect("compaction finishes");
    assert!(status.success(), "{}", world.log("compact-noop.log"));
    assert!(
        world.log("compact-noop.log").contains("compacted 0 hours"),
        "a second run must have nothing to do:\n{}",
        world.log("compact-noop.log")
    );

    world.assert_exactly_once_sql(&config, "http_requests", &ids);
    let dead_once = |world: &World| {
        let dead = world.query(
            &config,
            "SELECT count(*), count(DISTINCT \"partition\" * 1000000 + \"offset\") FROM dead_letter",
        );
        assert_eq!(dead, vec![format!("{bad},{bad}")], "each dead letter once");
    };
    dead_once(&world);
    let dead_replaced = world.query(
        &config,
        "SELECT count(*) FROM commits WHERE kind = 'replace' AND removed_files > 0 AND removed_rows = 0",
    );
    assert_ne!(
        dead_replaced,
        vec!["0".to_owned()],
        "dead letters were compacted"
    );
    // The ledger's own account agrees: rows added minus rows removed.
    let count = world.query(
        &config,
        "SELECT sum(rows) - sum(removed_rows), sum(CASE WHEN kind = 'replace' THEN 1 ELSE 0 END) FROM commits WHERE dataset = 'http_requests'",
    );
    let (net, replaces) = count[0].split_once(',').unwrap();
    assert_eq!(net.parse::<usize>().unwrap(), ids.len());
    assert!(
        replaces.parse::<usize>().unwrap() >= 3,
        "hours were compacted: {replaces}"
    );
    // Each past hour is now a few files: what the last compaction left, plus nothing.
    let files = world.query(
        &config,
        "SELECT date, hour, count(*) FROM http_requests GROUP BY 1, 2 ORDER BY 1, 2",
    );
    assert!(files.len() >= 3, "{files:?}");

    // No file of a killed compaction is left: every compacted file on disk is named by a
    // maintenance entry, and every file a live entry names exists.
    let maintenance = world
        .lake_dir()
        .join("_weir/maintenance/http_requests/entries");
    let named: HashSet<String> = world
        .named_by_entries(&maintenance, "files")
        .into_iter()
        .collect();
    let mut on_disk = Vec::new();
    for hour in walk(&world.lake_dir().join("http_requests")) {
        let rel = hour
            .strip_prefix(world.lake_dir())
            .unwrap()
            .to_string_lossy()
            .into_owned();
        if rel
            .rsplit('/')
            .next()
            .is_some_and(|n| n.starts_with("compact-"))
        {
            on_disk.push(rel);
        }
    }
    assert!(!on_disk.is_empty(), "compaction wrote files");
    for f in &on_disk {
        assert!(named.contains(f), "{f} is left from a killed compaction");
    }
    for f in &named {
        assert!(
            world.lake_dir().join(f).exists(),
            "{f} is named but missing"
        );
    }
    world.assert_named_files_exist("http_requests");

    // Vacuum with no grace: the replaced files go, and a plain reader of the Hive folders
    // (pyarrow) sees every row exactly once, as weir query does.
    let mut job = world.weir_job("vacuum", &config, &["--grace", "0s"], "vacuum.log", &[]);
    let status = job
        .wait_timeout(Duration::from_secs(120))
        .expect("vacuum finishes");
    assert!(status.success(), "{}", world.log("vacuum.log"));
    world.assert_exactly_once(&config, &ids);
    let duck = world.duckdb(&format!(
        "SELECT count(*), count(DISTINCT RayID) FROM read_parquet('{}/http_requests/*/*/*.parquet', hive_partitioning = true)",
        world.lake_dir().display()
    ));
    assert_eq!(
        duck,
        vec![format!("{},{}", ids.len(), ids.len())],
        "DuckDB over the Hive folders"
    );
    dead_once(&world);
    let plain = world.duckdb(&format!(
        "SELECT count(*) FROM read_parquet('{}/_weir/dead_letter/http_requests/*.parquet')",
        world.lake_dir().display()
    ));
    assert_eq!(
        plain,
        vec![bad.to_string()],
        "DuckDB over the dead-letter folder"
    );
}

/// `retention` takes whole hours out (through the ledger, then from storage) and leaves the
/// others untouched. It takes dead letters out too, by when they were written: merging them
/// (compaction) does not make them younger, and those written within it stay.
#[test]
fn retention_drops_whole_hours_only() {
    let world = World::new();
    let kafka = MockKafka::start(&[(TOPIC, 2)]);
    let hour_ns = 3_600_000_000_000i64;
    let now_ns = chrono::Utc::now().timestamp_nanos_opt().unwrap();
    // 1,200 records over the six hours before the current one.
    let start = (now_ns / hour_ns - 6) * hour_ns;
    let mut generator = HttpRequests::new(7)
        .compact(true)
        .with_start_time(start)
        .with_step(6 * hour_ns / 1_200);
    let ids = produce_http(&kafka.bootstrap, TOPIC, 2, 600, &mut generator);
    // And records that go to the dead letters, on both partitions: at least two files.
    let before_dead = chrono::Utc::now();
    let p = producer(&kafka.bootstrap);
    let mut bad = 0;
    for partition in 0..2 {
        for (payload, _) in malformed() {
            send(&p, TOPIC, partition, &payload);
            bad += 1;
        }
    }
    flush(&p);
    let plain = world.config("plain.toml", &kafka.bootstrap, &dataset_toml(""));
    let mut weir = world.weir_run(&plain, "weir.log", &[]);
    world.expect_rows(
        &plain,
        "http_requests",
        ids.len(),
        Duration::from_secs(180),
        &mut [&mut weir],
    );
    weir.terminate();
    let dead_letters = |config: &std::path::Path| -> usize {
        world.query(config, "SELECT count(*) FROM dead_letter")[0]
            .parse()
            .unwrap()
    };
    assert_eq!(dead_letters(&plain), bad);
    let dead_dir = world.lake_dir().join("_weir/dead_letter/http_requests");
    let dead_files = || -> Vec<std::path::PathBuf> {
        walk(&dead_dir)
            .into_iter()
            .filter(|p| {
                p.extension().is_some_and(|e| e == "parquet")
                    && !p.to_string_lossy().contains("_delta_log")
            })
            .collect()
    };
    let written: Vec<chrono::DateTime<chrono::Utc>> = dead_files()
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().modified().unwrap().into())
        .collect();
    assert!(
        written.len() >= 2,
        "one dead-letter file per partition at least"
    );

    // Merged a few seconds later: the merged file is younger than its rows.
    std::thread::sleep(Duration::from_secs(2));
    let merge_started = chrono::Utc::now();
    std::thread::sleep(Duration::from_millis(1_100));
    // Compaction with the retention config: dead letters merged in windows of an hour (a
    // 24th of 3h, at least an hour).
    let kept = dataset_toml("").replace("max_record_bytes", "retention = \"3h\"\nmax_record_bytes");
    let config = world.config("retention.toml", &kafka.bootstrap, &kept);
    let mut job = compact(&world, &config, "compact.log", None);
    let status = job
        .wait_timeout(Duration::from_secs(240))
        .expect("compaction finishes");
    assert!(status.success(), "{}", world.log("compact.log"));
    // Merged unless the files were written in two different hours (merges stay within one
    // window).
    let hour_of = |t: &chrono::DateTime<chrono::Utc>| t.timestamp().div_euclid(3600);
    if written.iter().all(|t| hour_of(t) == hour_of(&written[0])) {
        let merged: Vec<std::path::PathBuf> = dead_files()
            .into_iter()
            .filter(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("compact-"))
            })
            .collect();
        assert_eq!(merged.len(), 1, "{merged:?}\n{}", world.log("compact.log"));
        let modified: chrono::DateTime<chrono::Utc> = std::fs::metadata(&merged[0])
            .unwrap()
            .modified()
            .unwrap()
            .into();
        assert!(
            modified >= merge_started,
            "the merged file is the newer one"
        );
    } else {
        eprintln!("dead letters written in two hours ({written:?}): merged within each");
    }
    assert_eq!(
        dead_letters(&plain),
        bad,
        "compaction keeps every dead letter"
    );

    let per_hour = |config: &std::path::Path| -> Vec<(String, usize)> {
        world
            .query(
                config,
                "SELECT date || 'T' || hour, count(*) FROM http_requests GROUP BY 1 ORDER BY 1",
            )
            .iter()
            .map(|l| {
                let (h, n) = l.split_once(',').unwrap();
                (h.to_owned(), n.parse().unwrap())
            })
            .collect()
    };
    let before = per_hour(&plain);
    assert_eq!(before.len(), 6, "{before:?}");

    let vacuum = |log: &str, now: Option<chrono::DateTime<chrono::Utc>>| {
        let now = now.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
        let mut args = vec!["--grace", "0s"];
        if let Some(now) = &now {
            args.extend(["--retention-now", now.as_str()]);
        }
        let mut job = world.weir_job("vacuum", &config, &args, log, &[]);
        let status = job
            .wait_timeout(Duration::from_secs(120))
            .expect("vacuum finishes");
        assert!(status.success(), "{}", world.log(log));
    };
    let cutoff_before = chrono::Utc::now() - chrono::Duration::hours(3);
    vacuum("vacuum.log", None);
    let cutoff_after = chrono::Utc::now() - chrono::Duration::hours(3);
    let after: std::collections::BTreeMap<String, usize> = per_hour(&config).into_iter().collect();
    for (hour, rows) in &before {
        let start = chrono::NaiveDateTime::parse_from_str(&format!("{hour}:00"), "%Y-%m-%dT%H:%M")
            .unwrap()
            .and_utc();
        let end = start + chrono::Duration::hours(1);
        match after.get(hour) {
            None => assert!(
                end <= cutoff_after,
                "{hour} expired although it ended after the cutoff"
            ),
            Some(n) => {
                assert!(
                    end > cutoff_before,
                    "{hour} kept although it ended before the cutoff"
                );
                assert_eq!(n, rows, "{hour} must be whole");
            }
        }
    }
    assert!(after.len() < before.len(), "some hours expired: {after:?}");
    assert!(!after.is_empty(), "some hours kept");
    // Plain readers agree: the expired hours' files are gone from storage.
    let kept_rows: usize = after.values().sum();
    let duck = world.duckdb(&format!(
        "SELECT count(*) FROM read_parquet('{}/http_requests/*/*/*.parquet', hive_partitioning = true)",
        world.lake_dir().display()
    ));
    assert_eq!(duck, vec![kept_rows.to_string()]);
    // Dead letters written minutes ago are within retention.
    assert_eq!(dead_letters(&config), bad, "{}", world.log("vacuum.log"));

    // Three hours after the dead letters were first written (to the second), less a
    // second: all stay, although the merged file was written later.
    let first = before_dead
        .duration_trunc(chrono::Duration::seconds(1))
        .unwrap();
    vacuum(
        "vacuum-early.log",
        Some(first + chrono::Duration::hours(3) - chrono::Duration::seconds(1)),
    );
    assert_eq!(
        dead_letters(&config),
        bad,
        "{}",
        world.log("vacuum-early.log")
    );
    assert!(!dead_files().is_empty());
    // Another engine agrees: vacuum published the dead letters' Delta table first.
    assert_eq!(
        crate::delta::delta_rows(&dead_dir),
        bad,
        "the dead letters' Delta table"
    );
    // Three hours after the merge began: all were written before it, so all go, from the
    // table and from storage; and every hour of data, each of which ended before then.
    vacuum(
        "vacuum-late.log",
        Some(merge_started + chrono::Duration::hours(3)),
    );
    assert_eq!(dead_letters(&config), 0, "{}", world.log("vacuum-late.log"));
    assert_eq!(dead_files(), Vec::<std::path::PathBuf>::new());
    assert_eq!(
        crate::delta::delta_rows(&dead_dir),
        0,
        "the dead letters' Delta table"
    );
    assert!(
        per_hour(&config).is_empty(),
        "every hour ended before the cutoff"
    );
    assert_eq!(
        crate::delta::delta_rows(&world.lake_dir().join("http_requests")),
        0,
        "the data's Delta table"
    );
    assert!(
        world
            .log("vacuum-late.log")
            .contains(&format!("{bad} dead letters expired")),
        "{}",
        world.log("vacuum-late.log")
    );
}

pub(crate) fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
