//! Other engines read the lake: the `deltalake` Python package reads each dataset's Delta
//! table and must see what `weir query` sees (every row once, nothing else) during
//! ingestion, after `weir run` is killed in the middle of a publish, after compaction and
//! after vacuum; and Spark (pyspark on the machine's Java) reads the plain Hive folders,
//! with event time as a timestamp, once vacuum has removed what the table no longer names.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use weir_schemas::synth::HttpRequests;

use crate::backbone::{TOPIC, dataset_toml, malformed};
use crate::harness::{
    MockKafka, Proc, World, flush, free_port, http_get, produce_http, producer, python, send,
};

const PARTITIONS: i32 = 4;

/// What the `deltalake` package reads from a table: its version and each RayID's count.
pub struct DeltaRead {
    pub version: i64,
    pub counts: HashMap<String, usize>,
}

pub fn read_delta(table: &Path) -> DeltaRead {
    let script = r#"
import os, sys, collections
from deltalake import DeltaTable
dt = DeltaTable(sys.argv[1])
t = dt.to_pyarrow_table(columns=["RayID"])
print(dt.version())
for k, n in collections.Counter(t.column("RayID").to_pylist()).items():
    print(f"{k},{n}")
sys.stdout.flush()
# deltalake's runtime threads can abort the interpreter's teardown ("terminate called
# without an active exception"): leave without it once the answer is out.
os._exit(0)
"#;
    let out = Command::new(python())
        .arg("-c")
        .arg(script)
        .arg(table)
        .output()
        .expect("python");
    assert!(
        out.status.success(),
        "deltalake read failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let mut lines = text.lines();
    let version = lines.next().unwrap().trim().parse().unwrap();
    let counts = lines
        .map(|l| {
            let (id, n) = l.split_once(',').unwrap();
            (id.to_owned(), n.parse().unwrap())
        })
        .collect();
    DeltaRead { version, counts }
}

/// The row count of the Delta table at `table`, read with the `deltalake` package.
pub fn delta_rows(table: &Path) -> usize {
    let script = r#"
import os, sys
from deltalake import DeltaTable
print(DeltaTable(sys.argv[1]).to_pyarrow_table().num_rows)
sys.stdout.flush()
os._exit(0)
"#;
    let out = Command::new(python())
        .arg("-c")
        .arg(script)
        .arg(table)
        .output()
        .expect("python");
    assert!(
        out.status.success(),
        "deltalake read failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// A table version read while data keeps arriving: no row twice, no row that was not
/// produced. Returns its row count.
fn assert_consistent(read: &DeltaRead, produced: &HashSet<&str>) -> usize {
    for (id, n) in &read.counts {
        assert_eq!(*n, 1, "version {}: {id} {n} times", read.version);
        assert!(
            produced.contains(id.as_str()),
            "version {}: {id} was never produced",
            read.version
        );
    }
    read.counts.len()
}

/// Waits until the table holds exactly `ids`, each once (the publisher runs every second).
fn wait_delta_equals(world: &World, ids: &[String], limit: Duration, weir: &mut [&mut Proc]) {
    let table = world.lake_dir().join("http_requests");
    let produced: HashSet<&str> = ids.iter().map(String::as_str).collect();
    let deadline = Instant::now() + limit;
    loop {
        let read = read_delta(&table);
        let rows = assert_consistent(&read, &produced);
        if rows == ids.len() {
            return;
        }
        if Instant::now() > deadline {
            let logs: Vec<String> = weir
                .iter()
                .filter_map(|w| std::fs::read_to_string(w.log.as_ref()?).ok())
                .collect();
            panic!(
                "delta version {}: {rows} rows, want {}\n{}",
                read.version,
                ids.len(),
                logs.join("\n")
            );
        }
        for w in weir.iter_mut() {
            if let Some(status) = w.child.try_wait().unwrap() {
                panic!("{} exited early with {status}", w.name);
            }
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// `weir query`'s row count and distinct RayIDs.
fn query_counts(world: &World, config: &Path) -> String {
    let rows = world.query(
        config,
        "SELECT count(*), count(DISTINCT \"RayID\") FROM http_requests",
    );
    rows.join("")
}

fn job(world: &World, verb: &str, config: &Path, args: &[&str], log: &str) {
    let mut p = world.weir_job(verb, config, args, log, &[]);
    let status = p
        .wait_timeout(Duration::from_secs(120))
        .unwrap_or_else(|| panic!("weir {verb} did not finish"));
    assert!(status.success(), "weir {verb}: {}", world.log(log));
}

#[test]
fn delta_table_agrees_with_weir_query_through_kills_compaction_and_vacuum() {
    let world = World::new();
    let kafka = MockKafka::start(&[(TOPIC, PARTITIONS)]);
    let port = free_port();
    let config = world.config(
        "weir.toml",
        &kafka.bootstrap,
        &format!(
            "[delta]\npublish_interval = \"1s\"\n[metrics]\nlisten = \"127.0.0.1:{port}\"\n{}",
            dataset_toml("")
        ),
    );
    // Records over a few hours, so the table has several partitions.
    let mut generator = HttpRequests::new(19)
        .compact(true)
        .with_step(20_000_000_000);
    let mut ids = produce_http(&kafka.bootstrap, TOPIC, PARTITIONS, 150, &mut generator);
    // Dead letters too: their own table.
    let bad = malformed();
    let p = producer(&kafka.bootstrap);
    for (payload, _) in &bad {
        send(&p, TOPIC, 2, payload);
    }
    flush(&p);
    drop(p);

    // During ingestion: every version the reader sees is consistent, and it catches up.
    let mut weir = world.weir_run(&config, "weir-0.log", &[]);
    let mut seen_versions = HashSet::new();
    let table = world.lake_dir().join("http_requests");
    let started = Instant::now();
    // Past the checkpoint interval (10 versions), so the log has a checkpoint below.
    let mut newest = -1;
    while (seen_versions.len() < 3 || newest < 12) && started.elapsed() < Duration::from_secs(180) {
        if table.join("_delta_log").exists() {
            let read = read_delta(&table);
            assert_consistent(&read, &ids.iter().map(String::as_str).collect());
            seen_versions.insert(read.version);
            newest = newest.max(read.version);
        }
        ids.extend(produce_http(
            &kafka.bootstrap,
            TOPIC,
            PARTITIONS,
            20,
            &mut generator,
        ));
        std::thread::sleep(Duration::from_millis(700));
    }
    wait_delta_equals(&world, &ids, Duration::from_secs(120), &mut [&mut weir]);
    // The lag of the last publish is exported per dataset.
    let metrics = http_get(port, "/metrics").map(|r| r.1).unwrap_or_default();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("weir_delta_lag_seconds{dataset=\"http_requests\"}")),
        "{metrics}"
    );
    weir.terminate();
    let all = ids.len();
    assert_eq!(query_counts(&world, &config), format!("{all},{all}"));

    // kill -9 in the middle of a publish: before its Delta commit, then right after it
    // (the commit is in the log; the next publisher must not add those files again).
    for (i, point) in ["before-delta-commit:2", "after-delta-commit:2"]
        .iter()
        .enumerate()
    {
        ids.extend(produce_http(
            &kafka.bootstrap,
            TOPIC,
            PARTITIONS,
            50,
            &mut generator,
        ));
        let log = format!("weir-kill-{i}.log");
        let mut weir = world.weir_run(&config, &log, &[("WEIR_FAILPOINT", point)]);
        let started = Instant::now();
        // Keep data coming until the publisher reaches the failpoint.
        while weir.running() {
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "weir never reached {point}: {}",
                world.log(&log)
            );
            ids.extend(produce_http(
                &kafka.bootstrap,
                TOPIC,
                PARTITIONS,
                5,
                &mut generator,
            ));
            std::thread::sleep(Duration::from_millis(500));
        }
        assert!(
            world.log(&log).contains("failpoint"),
            "weir exited without its failpoint: {}",
            world.log(&log)
        );
        let read = read_delta(&table);
        let set: HashSet<&str> = ids.iter().map(String::as_str).collect();
        assert_consistent(&read, &set);
    }
    let mut weir = world.weir_run(&config, "weir-1.log", &[]);
    world.expect_rows(
        &config,
        "http_requests",
        ids.len(),
        Duration::from_secs(120),
        &mut [&mut weir],
    );
    wait_delta_equals(&world, &ids, Duration::from_secs(60), &mut [&mut weir]);
    weir.terminate();
    let all = ids.len();
    assert_eq!(query_counts(&world, &config), format!("{all},{all}"));

    // Compaction publishes its replace entries (remove + add, no data change).
    job(
        &world,
        "compact",
        &config,
        &["--min-age", "0s"],
        "compact.log",
    );
    wait_delta_equals(&world, &ids, Duration::from_secs(5), &mut []);
    assert_eq!(query_counts(&world, &config), format!("{all},{all}"));
    let log_dir = table.join("_delta_log");
    let checkpoints = std::fs::read_dir(&log_dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains(".checkpoint."))
        .count();
    assert!(
        checkpoints > 0,
        "no delta checkpoint in {} (newest version seen during ingestion: {newest})",
        log_dir.display()
    );

    // Vacuum deletes the replaced files: the Delta table no longer names them, and the
    // plain folders now hold each row once.
    job(&world, "vacuum", &config, &["--grace", "0s"], "vacuum.log");
    wait_delta_equals(&world, &ids, Duration::from_secs(5), &mut []);
    world.assert_exactly_once_pyarrow("http_requests", &ids);
    let dead = world.query(&config, "SELECT count(*) FROM dead_letter");
    assert_eq!(dead, vec![bad.len().to_string()]);
    let dead_table = world.lake_dir().join("_weir/dead_letter/http_requests");
    assert_eq!(
        delta_rows(&dead_table),
        bad.len(),
        "dead-letter delta table"
    );
    assert_spark_reads_hive_folders(&world, all);
}

/// pyspark, one local session: the Hive folders with `EdgeStartTimestamp` as a timestamp
/// and `rows` rows, each RayID once.
fn assert_spark_reads_hive_folders(world: &World, rows: usize) {
    let script = r#"
import sys
from pyspark.sql import SparkSession
spark = (SparkSession.builder.master("local[1]").appName("weir-e2e")
         .config("spark.ui.enabled", "false")
         .config("spark.ui.showConsoleProgress", "false")
         .config("spark.sql.shuffle.partitions", "1")
         .config("spark.driver.host", "127.0.0.1")
         .config("spark.driver.bindAddress", "127.0.0.1")
         .getOrCreate())
spark.sparkContext.setLogLevel("ERROR")
df = spark.read.parquet(sys.argv[1])
types = dict(df.dtypes)
print(types["EdgeStartTimestamp"])
print(df.count(), df.select("RayID").distinct().count())
print(df.selectExpr("min(EdgeStartTimestamp) > timestamp'2000-01-01 00:00:00'").first()[0])
spark.stop()
"#;
    let out = Command::new(python())
        .arg("-c")
        .arg(script)
        .arg(world.lake_dir().join("http_requests"))
        .env("SPARK_LOCAL_IP", "127.0.0.1")
        .env("PYSPARK_PYTHON", python())
        .output()
        .expect("python");
    assert!(
        out.status.success(),
        "pyspark failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines,
        vec!["timestamp", &format!("{rows} {rows}"), "True"],
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
