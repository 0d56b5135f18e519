//! Input integrity (design.md invariant 7): every codec a producer may use lands; records the
//! client cannot deliver stop the partition instead of being skipped; offsets the broker
//! deleted before Weir read them, or offsets that went back (a recreated topic), are recorded
//! in the ledger or refused, never skipped silently.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use weir_schemas::synth::HttpRequests;

use crate::backbone::{TOPIC, dataset_toml};
use crate::harness::{
    MockKafka, Proc, World, flush, free_port, http_get, metric_sum, produce_http,
    produce_http_with, producer_with, send,
};

const DATASET: &str = "http_requests";

/// The ledger entries of one partition, in sequence order.
pub(crate) fn ledger_entries(world: &World, partition: i32) -> Vec<serde_json::Value> {
    let dir = world
        .lake_dir()
        .join("_weir/ledger")
        .join(DATASET)
        .join(TOPIC)
        .join(partition.to_string())
        .join("entries");
    let mut entries: Vec<serde_json::Value> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
                .map(|e| serde_json::from_slice(&std::fs::read(e.path()).unwrap()).unwrap())
                .collect()
        })
        .unwrap_or_default();
    entries.sort_by_key(|e| e["seq"].as_u64());
    entries
}

/// The partition's (low, high) watermarks as the broker reports them.
fn watermarks(bootstrap: &str, partition: i32) -> (i64, i64) {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "weir-e2e-watermarks")
        .create()
        .expect("consumer");
    consumer
        .fetch_watermarks(TOPIC, partition, Duration::from_secs(10))
        .expect("watermarks")
}

/// The counter's value once it reaches `want`, or after 10 s: counters that follow a
/// committed entry move a moment after the ledger shows it.
fn metric_reaching(port: u16, series: &str, want: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric(port, series) < want && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    metric(port, series)
}

/// A labelled counter's value in `/metrics` (0 when absent).
fn metric(port: u16, series: &str) -> u64 {
    let text = http_get(port, "/metrics").map(|r| r.1).unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0)
}

/// Waits for `weir` to exit on its own; it must fail, and its log must name every fact.
fn expect_failure(world: &World, weir: &mut Proc, log: &str, facts: &[&str]) -> String {
    let status = weir
        .wait_timeout(Duration::from_secs(120))
        .unwrap_or_else(|| panic!("weir kept running\n{}", world.log(log)));
    let text = world.log(log);
    assert!(!status.success(), "weir exited with {status}\n{text}");
    for fact in facts {
        assert!(text.contains(fact), "the log does not say {fact:?}\n{text}");
    }
    text
}

/// Polls `done` until it holds while `weir` keeps running; fails, naming `what` and showing
/// weir's `log`, if weir exits first or `limit` passes.
fn wait_while_running(
    world: &World,
    weir: &mut Proc,
    log: &str,
    what: &str,
    limit: Duration,
    mut done: impl FnMut() -> bool,
) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(weir.running(), "weir exited: {what}\n{}", world.log(log));
        assert!(
            Instant::now() < deadline,
            "{what}: not within {limit:?}\n{}",
            world.log(log)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// 100 records on a first cluster's topic, committed by a `weir run` that then stops; the
/// cluster is gone afterwards, so the next one stands for the topic recreated.
fn committed_on_a_first_cluster(world: &World, seed: u64) -> (Vec<String>, HttpRequests) {
    let kafka = MockKafka::start(&[(TOPIC, 1)]);
    let config = world.config("weir-1.toml", &kafka.bootstrap, &dataset_toml(""));
    let mut generator = HttpRequests::new(seed).compact(true);
    let ids = produce_http(&kafka.bootstrap, TOPIC, 1, 100, &mut generator);
    let mut weir = world.weir_run(&config, "weir-1.log", &[]);
    world.wait_consumed(DATASET, TOPIC, &[100], Duration::from_secs(120), &mut weir);
    weir.terminate();
    (ids, generator)
}

#[test]
fn every_codec_lands_exactly_once() {
    let world = World::new();
    let kafka = MockKafka::start(&[(TOPIC, 4)]);
    let config = world.config("weir.toml", &kafka.bootstrap, &dataset_toml(""));
    let mut generator = HttpRequests::new(41).compact(true);
    let mut ids = Vec::new();
    for codec in ["gzip", "snappy", "lz4", "zstd"] {
        ids.extend(produce_http_with(
            &kafka.bootstrap,
            &[("compression.type", codec)],
            TOPIC,
            4,
            100,
            &mut generator,
        ));
    }
    let mut weir = world.weir_run(&config, "weir.log", &[]);
    world.expect_rows(
        &config,
        DATASET,
        ids.len(),
        Duration::from_secs(120),
        &mut [&mut weir],
    );
    weir.terminate();
    let log = world.log("weir.log");
    assert!(
        !log.contains("partition fetch error"),
        "fetch errors while reading compressed batches:\n{log}"
    );
    world.assert_exactly_once(&config, &ids);
}

/// CRC-32C (Castagnoli), as record batches carry it.
fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// Appends a batch of `records` records to `topic`/`partition` with a raw Produce request
/// (v3): a well-formed record batch that says its records are gzip-compressed, and whose
/// payload is not gzip. The mock broker stores batches without opening them, so consumers
/// get a batch they cannot decompress.
fn produce_undecodable_batch(bootstrap: &str, partition: i32, records: i32) {
    let mut after_crc = Vec::new();
    after_crc.extend_from_slice(&1i16.to_be_bytes()); // attributes: gzip
    after_crc.extend_from_slice(&(records - 1).to_be_bytes()); // last offset delta
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    after_crc.extend_from_slice(&now.to_be_bytes()); // first timestamp
    after_crc.extend_from_slice(&now.to_be_bytes()); // max timestamp
    after_crc.extend_from_slice(&(-1i64).to_be_bytes()); // producer id
    after_crc.extend_from_slice(&(-1i16).to_be_bytes()); // producer epoch
    after_crc.extend_from_slice(&(-1i32).to_be_bytes()); // base sequence
    after_crc.extend_from_slice(&records.to_be_bytes());
    after_crc.extend_from_slice(b"these bytes were never gzip-compressed");
    let mut batch = Vec::new();
    batch.extend_from_slice(&0i64.to_be_bytes()); // base offset (the broker assigns it)
    batch.extend_from_slice(&((4 + 1 + 4 + after_crc.len()) as i32).to_be_bytes());
    batch.extend_from_slice(&(-1i32).to_be_bytes()); // partition leader epoch
    batch.push(2); // magic
    batch.extend_from_slice(&crc32c(&after_crc).to_be_bytes());
    batch.extend_from_slice(&after_crc);

    let mut request = Vec::new();
    request.extend_from_slice(&0i16.to_be_bytes()); // api key: Produce
    request.extend_from_slice(&3i16.to_be_bytes()); // api version
    request.extend_from_slice(&7i32.to_be_bytes()); // correlation id
    let client = b"weir-e2e";
    request.extend_from_slice(&(client.len() as i16).to_be_bytes());
    request.extend_from_slice(client);
    request.extend_from_slice(&(-1i16).to_be_bytes()); // no transactional id
    request.extend_from_slice(&(-1i16).to_be_bytes()); // acks: all
    request.extend_from_slice(&10_000i32.to_be_bytes()); // timeout
    request.extend_from_slice(&1i32.to_be_bytes()); // one topic
    request.extend_from_slice(&(TOPIC.len() as i16).to_be_bytes());
    request.extend_from_slice(TOPIC.as_bytes());
    request.extend_from_slice(&1i32.to_be_bytes()); // one partition
    request.extend_from_slice(&partition.to_be_bytes());
    request.extend_from_slice(&(batch.len() as i32).to_be_bytes());
    request.extend_from_slice(&batch);

    let mut sock = TcpStream::connect(bootstrap).expect("connect to the mock broker");
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    sock.write_all(&(request.len() as i32).to_be_bytes())
        .unwrap();
    sock.write_all(&request).unwrap();
    let mut len = [0u8; 4];
    sock.read_exact(&mut len).expect("produce response");
    let mut response = vec![0u8; i32::from_be_bytes(len) as usize];
    sock.read_exact(&mut response).expect("produce response");
    // correlation id, topic count, topic name, partition count, partition, error code
    let name_end = 4 + 4 + 2 + TOPIC.len();
    let error_at = name_end + 4 + 4;
    let error = i16::from_be_bytes([response[error_at], response[error_at + 1]]);
    assert_eq!(error, 0, "the mock broker refused the batch");
}

#[test]
fn undecodable_batch_stops_the_partition() {
    let world = World::new();
    let kafka = MockKafka::start(&[(TOPIC, 1)]);
    let config = world.config("weir.toml", &kafka.bootstrap, &dataset_toml(""));
    let mut generator = HttpRequests::new(42).compact(true);
    produce_http(&kafka.bootstrap, TOPIC, 1, 100, &mut generator);
    produce_undecodable_batch(&kafka.bootstrap, 0, 5);
    produce_http(&kafka.bootstrap, TOPIC, 1, 100, &mut generator);
    assert_eq!(watermarks(&kafka.bootstrap, 0).1, 205);

    let mut weir = world.weir_run(&config, "weir.log", &[]);
    expect_failure(
        &world,
        &mut weir,
        "weir.log",
        &[
            "cf.http_requests/0: records from offset 100 cannot be delivered",
            "BadCompression",
        ],
    );
    // The ledger never passes the batch it could not read.
    let next = world.ledger_next_offset(DATASET, TOPIC, 0).unwrap_or(0);
    assert!(next <= 100, "the ledger went past the bad batch: {next}");
}

/// Retention deletes records while Weir is stopped. With `on_offset_gap = "fail"` Weir
/// refuses to resume, naming the offsets; with the default it records the gap in the ledger
/// and the metric, and lands every retained record exactly once.
#[test]
fn retention_gap_is_refused_or_recorded() {
    let world = World::new();
    let kafka = MockKafka::start(&[(TOPIC, 1)]);
    let metrics = free_port();
    let extra = format!(
        "[metrics]\nlisten = \"127.0.0.1:{metrics}\"\n{}",
        dataset_toml("")
    );
    let config = world.config("weir.toml", &kafka.bootstrap, &extra);
    let mut generator = HttpRequests::new(43).compact(true);
    let first = produce_http(&kafka.bootstrap, TOPIC, 1, 200, &mut generator);
    let mut weir = world.weir_run(&config, "weir-1.log", &[]);
    world.wait_consumed(DATASET, TOPIC, &[200], Duration::from_secs(120), &mut weir);
    weir.terminate();

    // More than the mock broker keeps of a partition (5 MiB), while Weir is stopped.
    let second = produce_http(&kafka.bootstrap, TOPIC, 1, 4000, &mut generator);
    let (low, high) = watermarks(&kafka.bootstrap, 0);
    assert_eq!(high, 4200);
    assert!(
        low > 200,
        "retention did not pass the resume point: low {low}"
    );

    let refuse = world.config_kafka(
        "weir-fail.toml",
        &kafka.bootstrap,
        "on_offset_gap = \"fail\"",
        "",
        &extra,
    );
    let mut weir = world.weir_run(&refuse, "weir-fail.log", &[]);
    expect_failure(
        &world,
        &mut weir,
        "weir-fail.log",
        &[
            "cf.http_requests/0: offset gap",
            "resume offset 200",
            &format!("earliest offset on the broker {low}"),
            &format!("{} offsets were deleted", low - 200),
        ],
    );
    assert_eq!(world.ledger_next_offset(DATASET, TOPIC, 0), Some(200));

    let mut weir = world.weir_run(&config, "weir-2.log", &[]);
    world.wait_consumed(DATASET, TOPIC, &[4200], Duration::from_secs(180), &mut weir);
    let series = format!(
        "weir_skipped_offsets_total{{dataset=\"{DATASET}\",topic=\"{TOPIC}\",partition=\"0\"}}"
    );
    // Counted once the entry recording the gap is committed, a moment after the ledger
    // shows it.
    assert_eq!(
        metric_reaching(metrics, &series, (low - 200) as u64),
        (low - 200) as u64
    );
    weir.terminate();
    let log = world.log("weir-2.log");
    assert!(log.contains("offset gap"), "{log}");

    let entries = ledger_entries(&world, 0);
    let skipped: Vec<(i64, i64, u64)> = entries
        .iter()
        .filter(|e| e["skipped_offsets"].as_u64().unwrap_or(0) > 0)
        .map(|e| {
            (
                e["start_offset"].as_i64().unwrap(),
                e["next_offset"].as_i64().unwrap(),
                e["skipped_offsets"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(skipped.len(), 1, "one entry records the gap: {skipped:?}");
    let (start, next, count) = skipped[0];
    assert_eq!((start, count), (200, (low - 200) as u64));
    assert!(next > low, "{skipped:?}");
    // The entries still tile the offsets, and account for each one: read, deleted unread,
    // or a hole (none here: every offset of this topic held a record).
    for pair in entries
        .windows(2)
        .filter(|p| p[0]["next_offset"].as_i64() >= Some(0))
    {
        assert_eq!(pair[1]["start_offset"], pair[0]["next_offset"], "{pair:?}");
    }
    for e in &entries {
        let n = |k: &str| e[k].as_i64().unwrap_or(0);
        assert_eq!(n("holes"), 0, "{e}");
        if n("next_offset") >= 0 {
            assert_eq!(
                n("records") + n("skipped_offsets"),
                n("next_offset") - n("start_offset"),
                "{e}"
            );
        }
    }
    let mut want = first;
    want.extend_from_slice(&second[(low - 200) as usize..]);
    world.assert_exactly_once(&config, &want);
}

/// Under `kafka.on_offset_gap = "fail"`, a gap that only the last commit of a shutdown finds
/// (its jump still waited to be judged when SIGTERM came) fails `weir run` as a gap found
/// while running does: a non-zero exit, nothing committed past the gap. Before, the worker
/// refused the commit and the process still exited 0, so a supervisor saw a clean stop.
#[test]
fn a_gap_found_by_the_shutdown_commit_fails_the_run() {
    let mut world = World::new();
    let kafka = MockKafka::start(&[(TOPIC, 1)]);
    let metrics = free_port();
    let extra = format!(
        "[metrics]\nlisten = \"127.0.0.1:{metrics}\"\n{}",
        dataset_toml("")
    );
    let config = world.config("weir.toml", &kafka.bootstrap, &extra);
    let mut generator = HttpRequests::new(50).compact(true);
    let first = produce_http(&kafka.bootstrap, TOPIC, 1, 200, &mut generator);
    let mut weir = world.weir_run(&config, "weir-1.log", &[]);
    world.wait_consumed(DATASET, TOPIC, &[200], Duration::from_secs(120), &mut weir);
    weir.terminate();

    // The commit interval outlasts the test: the only commit this run would make is its
    // shutdown's.
    world.commit_interval = "10m".into();
    let refuse = world.config_kafka(
        "weir-fail.toml",
        &kafka.bootstrap,
        "on_offset_gap = \"fail\"",
        "",
        &format!("{extra}\n[health]\nstall_timeout = \"20m\"\n"),
    );
    let mut weir = world.weir_run(&refuse, "weir-fail.log", &[]);
    wait_while_running(
        &world,
        &mut weir,
        "weir-fail.log",
        "the partition was not assigned",
        Duration::from_secs(120),
        || {
            world
                .log("weir-fail.log")
                .contains("partition resumes from the ledger")
        },
    );
    // Frozen at offset 200, Weir misses retention passing it: a few large records (not
    // JSON, so dead letters) push the mock broker's 5 MiB past offset 200. Being few, the
    // ones left arrive together once Weir thaws, within the second a jump waits to be
    // judged, so the jump still waits when the records stop.
    weir.signal("STOP");
    let producer = producer_with(&kafka.bootstrap, &[("linger.ms", "0")]);
    let large = vec![b'x'; 900_000];
    for _ in 0..8 {
        send(&producer, TOPIC, 0, &large);
        flush(&producer);
    }
    let (low, high) = watermarks(&kafka.bootstrap, 0);
    assert_eq!(high, 208);
    assert!(
        low > 200 && low < high,
        "retention did not pass the position: low {low}"
    );
    weir.signal("CONT");
    let read = || {
        http_get(metrics, "/metrics")
            .map_or(0, |(_, body)| metric_sum(&body, "weir_records_total", &[]))
    };
    wait_while_running(
        &world,
        &mut weir,
        "weir-fail.log",
        "weir did not read the records past the gap",
        Duration::from_secs(120),
        || read() >= (high - low) as u64,
    );
    // Longer than a jump waits with records arriving: none arrive, so it is not judged.
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        weir.running(),
        "the gap was judged before the shutdown\n{}",
        world.log("weir-fail.log")
    );
    weir.signal("TERM");
    expect_failure(
        &world,
        &mut weir,
        "weir-fail.log",
        &[
            "cf.http_requests/0: offset gap",
            "resume offset 200",
            &format!("earliest offset on the broker {low}"),
        ],
    );
    assert_eq!(world.ledger_next_offset(DATASET, TOPIC, 0), Some(200));

    // Under "record" (and the first config's 1 s commit interval) the next run records
    // the gap and reads on.
    let mut weir = world.weir_run(&config, "weir-2.log", &[]);
    world.wait_consumed(DATASET, TOPIC, &[high], Duration::from_secs(120), &mut weir);
    weir.terminate();
    let entries = ledger_entries(&world, 0);
    let skipped: u64 = entries
        .iter()
        .map(|e| e["skipped_offsets"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(skipped, (low - 200) as u64, "{entries:?}");
    let dead: u64 = entries
        .iter()
        .map(|e| e["dead_lettered"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(dead, (high - low) as u64, "{entries:?}");
    world.assert_exactly_once(&config, &first);
}

/// The broker's partition starts again below the ledger's position (here: a new cluster,
/// as after deleting and recreating the topic). `fail` refuses; `record` commits the new
/// offsets from the start instead of dropping them until they pass the old position.
#[test]
fn recreated_topic_is_refused_or_recorded() {
    let world = World::new();
    let first_kafka = MockKafka::start(&[(TOPIC, 1)]);
    let metrics = free_port();
    let extra = format!(
        "[metrics]\nlisten = \"127.0.0.1:{metrics}\"\n{}",
        dataset_toml("")
    );
    let config = world.config("weir-1.toml", &first_kafka.bootstrap, &extra);
    let mut generator = HttpRequests::new(44).compact(true);
    // Offset 10 of the old topic is a dead letter; offset 10 of the new one a good record.
    let mut ids = produce_http(&first_kafka.bootstrap, TOPIC, 1, 10, &mut generator);
    let p = crate::harness::producer(&first_kafka.bootstrap);
    crate::harness::send(&p, TOPIC, 0, b"{\"RayID\": \"not closed\"");
    crate::harness::flush(&p);
    drop(p);
    ids.extend(produce_http(
        &first_kafka.bootstrap,
        TOPIC,
        1,
        189,
        &mut generator,
    ));
    let mut weir = world.weir_run(&config, "weir-1.log", &[]);
    world.wait_consumed(DATASET, TOPIC, &[200], Duration::from_secs(120), &mut weir);
    weir.terminate();
    drop(first_kafka);

    // The new topic's records are two days later: hours of their own.
    let kafka = MockKafka::start(&[(TOPIC, 1)]);
    generator.set_event_time(weir_schemas::synth::DEFAULT_START_NS + 2 * 86_400_000_000_000);
    ids.extend(produce_http(&kafka.bootstrap, TOPIC, 1, 50, &mut generator));
    let refuse = world.config_kafka(
        "weir-fail.toml",
        &kafka.bootstrap,
        "on_offset_gap = \"fail\"",
        "",
        &extra,
    );
    let mut weir = world.weir_run(&refuse, "weir-fail.log", &[]);
    expect_failure(
        &world,
        &mut weir,
        "weir-fail.log",
        &[
            "cf.http_requests/0: offsets went back",
            "resume offset 200",
            "the earliest record now has offset 0",
        ],
    );
    assert_eq!(world.ledger_next_offset(DATASET, TOPIC, 0), Some(200));

    let config = world.config("weir-2.toml", &kafka.bootstrap, &extra);
    let mut weir = world.weir_run(&config, "weir-2.log", &[]);
    let deadline = Instant::now() + Duration::from_secs(120);
    while world.ledger_next_offset(DATASET, TOPIC, 0) != Some(50) {
        assert!(weir.running(), "weir exited\n{}", world.log("weir-2.log"));
        assert!(
            Instant::now() < deadline,
            "the new offsets were not committed\n{}",
            world.log("weir-2.log")
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let series = format!(
        "weir_offset_resets_total{{dataset=\"{DATASET}\",topic=\"{TOPIC}\",partition=\"0\"}}"
    );
    // Counted once the entry recording the rewind is committed, a moment after the ledger
    // shows it.
    assert_eq!(metric_reaching(metrics, &series, 1), 1);
    weir.terminate();
    // Exactly one entry starts below its predecessor's end: at the new partition's start.
    let entries = ledger_entries(&world, 0);
    let rewinds: Vec<&[serde_json::Value]> = entries
        .windows(2)
        .filter(|p| p[1]["start_offset"].as_i64() < p[0]["next_offset"].as_i64())
        .collect();
    assert_eq!(rewinds.len(), 1, "{entries:?}");
    assert_eq!(rewinds[0][0]["next_offset"].as_i64(), Some(200));
    assert_eq!(rewinds[0][1]["start_offset"].as_i64(), Some(0));
    // The rewind is counted from its entry on: entries before it name other records.
    let resets = |e: &serde_json::Value| e["offset_resets"].as_u64().unwrap_or(0);
    assert_eq!(resets(&rewinds[0][0]), 0);
    assert_eq!(resets(&rewinds[0][1]), 1);
    assert_eq!(resets(entries.last().unwrap()), 1, "{entries:?}");
    world.assert_exactly_once(&config, &ids);

    // So the hours cannot be re-derived from Kafka: the old offsets would read the new
    // topic's records in place of the old ones. Refused before anything is written.
    let days = world.query(&config, "SELECT min(date), max(date) FROM http_requests");
    let (first, last) = days[0].split_once(',').unwrap();
    let to = chrono::NaiveDate::parse_from_str(last, "%Y-%m-%d").unwrap() + chrono::Days::new(1);
    let (from, to) = (
        format!("{first}T00"),
        format!("{}T00", to.format("%Y-%m-%d")),
    );
    let args = [
        "--dataset",
        DATASET,
        "--from",
        &from,
        "--to",
        &to,
        "--replace",
    ];
    let status = world
        .weir_job("backfill", &config, &args, "backfill.log", &[])
        .wait_timeout(Duration::from_secs(120))
        .expect("backfill finished");
    let log = world.log("backfill.log");
    assert!(
        !status.success() && log.contains("before the partition's offsets went back"),
        "{log}"
    );
    assert_eq!(
        world.query(
            &config,
            "SELECT count(*) FROM commits WHERE topic LIKE '@staged.%'"
        ),
        vec!["0"]
    );
    world.assert_exactly_once(&config, &ids);

    // The new topic's own hours can be: the old record's dead letter at offset 10 is not
    // taken for the new record there, which keeps its row.
    assert_ne!(first, last, "the two topics' records share a day");
    let from = format!("{last}T00");
    let args = [
        "--dataset",
        DATASET,
        "--from",
        &from,
        "--to",
        &to,
        "--replace",
        "--id",
        "after",
    ];
    let status = world
        .weir_job("backfill", &config, &args, "backfill-after.log", &[])
        .wait_timeout(Duration::from_secs(120))
        .expect("backfill finished");
    assert!(status.success(), "{}", world.log("backfill-after.log"));
    assert_eq!(
        world.query(&config, "SELECT \"offset\" FROM dead_letter"),
        vec!["10"]
    );
    // Plain-folder readers see the replaced files until vacuum deletes them.
    let vacuumed = world
        .weir_job("vacuum", &config, &["--grace", "0s"], "vacuum.log", &[])
        .wait_timeout(Duration::from_secs(120))
        .expect("vacuum finished");
    assert!(vacuumed.success(), "{}", world.log("vacuum.log"));
    world.assert_exactly_once(&config, &ids);
}

/// A rewind is written to the ledger as soon as it is seen, before the new offsets are read
/// on. An owner killed before its first commit after the rewind is followed from the new
/// offsets: had the ledger kept the old position, the successor would seek to it, which
/// the new topic has passed by then, and the new records below it would be in neither the
/// table nor the dead letters nor a recorded gap.
#[test]
fn a_rewind_is_recorded_before_reading_on() {
    let mut world = World::new();
    let (mut ids, mut generator) = committed_on_a_first_cluster(&world, 49);

    // The recreated topic holds fewer records than the old position when Weir meets it,
    // and more once the owner that met it dies.
    let kafka = MockKafka::start(&[(TOPIC, 1)]);
    ids.extend(produce_http(&kafka.bootstrap, TOPIC, 1, 50, &mut generator));
    // This owner's commit interval outlasts it: it sees the rewind, reads, and dies
    // uncommitted.
    world.commit_interval = "10m".into();
    let slow = world.config(
        "weir-2.toml",
        &kafka.bootstrap,
        &format!("{}\n[health]\nstall_timeout = \"20m\"\n", dataset_toml("")),
    );
    let mut weir = world.weir_run(&slow, "weir-2.log", &[]);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let entries = ledger_entries(&world, 0);
        let last = entries.last().unwrap();
        if last["offset_resets"].as_u64() == Some(1) {
            assert_eq!(
                (last["start_offset"].as_i64(), last["next_offset"].as_i64()),
                (Some(0), Some(0)),
                "{entries:?}"
            );
            break;
        }
        assert!(weir.running(), "weir exited\n{}", world.log("weir-2.log"));
        assert!(
            Instant::now() < deadline,
            "the rewind was not recorded\n{}",
            world.log("weir-2.log")
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    ids.extend(produce_http(
        &kafka.bootstrap,
        TOPIC,
        1,
        100,
        &mut generator,
    ));
    // Give it time to read them, then kill it before any commit.
    std::thread::sleep(Duration::from_secs(2));
    weir.signal("KILL");
    let _ = weir.wait_timeout(Duration::from_secs(10));
    assert_eq!(world.ledger_next_offset(DATASET, TOPIC, 0), Some(0));

    world.commit_interval = "1s".into();
    let config = world.config("weir-3.toml", &kafka.bootstrap, &dataset_toml(""));
    let mut weir = world.weir_run(&config, "weir-3.log", &[]);
    world.wait_consumed(DATASET, TOPIC, &[150], Duration::from_secs(120), &mut weir);
    weir.terminate();
    world.assert_exactly_once(&config, &ids);
}

/// A rewind met while the store is down: its entry is retried, as a commit is, until the
/// store answers again, and reading goes on only then. Before, the worker gave up after
/// six tries and stopped the process; its successor resumed at the old
/// position, and had the new offsets passed it by then, the new records below it would
/// have been in neither the table nor the dead letters nor a recorded gap.
#[test]
fn a_rewind_entry_waits_out_a_store_outage() {
    let mut world = World::new();
    let (mut ids, mut generator) = committed_on_a_first_cluster(&world, 51);

    // The topic recreated empty: Weir resumes at 100 and waits at its new start.
    let kafka = MockKafka::start(&[(TOPIC, 1)]);
    let metrics = free_port();
    let config = world.config(
        "weir-2.toml",
        &kafka.bootstrap,
        &format!(
            "[metrics]\nlisten = \"127.0.0.1:{metrics}\"\n{}",
            dataset_toml("")
        ),
    );
    let mut weir = world.weir_run(&config, "weir-2.log", &[]);
    wait_while_running(
        &world,
        &mut weir,
        "weir-2.log",
        "the partition was not assigned",
        Duration::from_secs(120),
        || {
            world
                .log("weir-2.log")
                .contains("partition resumes from the ledger")
        },
    );
    world.s3.stop();
    ids.extend(produce_http(&kafka.bootstrap, TOPIC, 1, 50, &mut generator));
    // A sixth failed try retried: the entry used to get six tries (over a minute here, with
    // the client's and the store layer's own retries inside each), and still running.
    let tries = || {
        world
            .log("weir-2.log")
            .matches("writing the rewind entry failed, retrying")
            .count()
    };
    wait_while_running(
        &world,
        &mut weir,
        "weir-2.log",
        "the rewind entry was not retried six times (weir gave up on it if it exited)",
        Duration::from_secs(300),
        || tries() >= 6,
    );
    assert!(weir.running(), "{}", world.log("weir-2.log"));
    assert_eq!(
        http_get(metrics, "/healthz").map(|r| r.0),
        Some(503),
        "a rewind entry that cannot be written is a store failure"
    );

    world.s3.restart();
    // Past the old position: only the rewind entry tells a successor to start at 0.
    ids.extend(produce_http(
        &kafka.bootstrap,
        TOPIC,
        1,
        100,
        &mut generator,
    ));
    world.wait_consumed(DATASET, TOPIC, &[150], Duration::from_secs(180), &mut weir);
    let deadline = Instant::now() + Duration::from_secs(30);
    while http_get(metrics, "/healthz").map(|r| r.0) != Some(200) {
        assert!(Instant::now() < deadline, "never healthy again");
        std::thread::sleep(Duration::from_millis(250));
    }
    weir.terminate();
    let entries = ledger_entries(&world, 0);
    let rewind = entries
        .iter()
        .find(|e| e["offset_resets"].as_u64() == Some(1))
        .unwrap_or_else(|| panic!("no rewind entry: {entries:?}"));
    assert_eq!(
        (
            rewind["start_offset"].as_i64(),
            rewind["next_offset"].as_i64(),
            rewind["records"].as_u64()
        ),
        (Some(0), Some(0), Some(0)),
        "{entries:?}"
    );
    world.assert_exactly_once(&config, &ids);
}

/// `kafka.start_from = "latest"`: where it pointed when the partition was first assigned is
/// written to the ledger (a `start` entry) before any record is read. An owner killed before
/// its first commit is then followed from that offset, so the records it read are read
/// again; were the successor to start from the broker's end in its turn, they would be in
/// neither the table nor the dead letters nor a recorded gap.
#[test]
fn latest_start_is_recorded_before_anything_is_read() {
    let mut world = World::new();
    let kafka = MockKafka::start(&[(TOPIC, 1)]);
    let metrics = free_port();
    let extra = format!(
        "[metrics]\nlisten = \"127.0.0.1:{metrics}\"\n{}",
        dataset_toml("")
    );
    let mut generator = HttpRequests::new(48).compact(true);
    // Before Weir's first start: `latest` skips these.
    produce_http(&kafka.bootstrap, TOPIC, 1, 30, &mut generator);
    // The first owner's commit interval outlasts it: it reads, then dies uncommitted.
    world.commit_interval = "10m".into();
    let first = world.config_kafka(
        "weir-1.toml",
        &kafka.bootstrap,
        "start_from = \"latest\"",
        "",
        &format!("{extra}\n[health]\nstall_timeout = \"20m\"\n"),
    );
    let mut weir = world.weir_run(&first, "weir-1.log", &[]);
    let deadline = Instant::now() + Duration::from_secs(120);
    while world.ledger_next_offset(DATASET, TOPIC, 0).is_none() {
        assert!(weir.running(), "weir exited\n{}", world.log("weir-1.log"));
        assert!(
            Instant::now() < deadline,
            "the partition's start was not recorded\n{}",
            world.log("weir-1.log")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(world.ledger_next_offset(DATASET, TOPIC, 0), Some(30));
    let mut ids = produce_http(&kafka.bootstrap, TOPIC, 1, 40, &mut generator);
    let read = || {
        http_get(metrics, "/metrics")
            .map_or(0, |(_, body)| metric_sum(&body, "weir_records_total", &[]))
    };
    while read() < 40 {
        assert!(weir.running(), "weir exited\n{}", world.log("weir-1.log"));
        assert!(
            Instant::now() < deadline,
            "the first owner did not read the records\n{}",
            world.log("weir-1.log")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    weir.signal("KILL");
    weir.wait_timeout(Duration::from_secs(10)).expect("killed");
    assert_eq!(
        world.ledger_next_offset(DATASET, TOPIC, 0),
        Some(30),
        "the first owner committed nothing"
    );

    ids.extend(produce_http(&kafka.bootstrap, TOPIC, 1, 20, &mut generator));
    world.commit_interval = "1s".into();
    let second = world.config_kafka(
        "weir-2.toml",
        &kafka.bootstrap,
        "start_from = \"latest\"",
        "",
        &extra,
    );
    let mut weir = world.weir_run(&second, "weir-2.log", &[]);
    world.wait_consumed(DATASET, TOPIC, &[90], Duration::from_secs(120), &mut weir);
    weir.terminate();
    world.assert_exactly_once(&second, &ids);
    let entries = ledger_entries(&world, 0);
    assert_eq!(entries[0]["records"].as_u64(), Some(0), "{:?}", entries[0]);
    assert_eq!(entries[0]["next_offset"].as_i64(), Some(30));
    assert_eq!(
        world.query(&second, "SELECT kind FROM commits WHERE seq = 1"),
        ["start"]
    );
}
