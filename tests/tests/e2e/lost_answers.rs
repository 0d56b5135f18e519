//! Lost answers: `weir run` talks to s3s-fs through `tests/tools/fault_proxy.py`, which lets
//! a seeded fraction of requests land and then answers 500 or drops the connection, or
//! refuses reads with 503. Each run drains 40,000 events on 32 partitions; every event must
//! be in the table exactly once (through `weir query` on a direct connection, and through
//! pyarrow reading the Hive folders), and every file the ledger names must exist.

use std::time::Duration;

use weir_schemas::synth::HttpRequests;

use crate::backbone::{TOPIC, dataset_toml};
use crate::harness::{FaultProxy, MockKafka, World, produce_http};

const PARTITIONS: i32 = 32;
/// 40,000 events: 1,250 per partition, ~2.5 MB each, within the mock broker's retention.
const PER_PARTITION: usize = 1_250;
const WAVES: usize = 10;

/// `hit`: substrings that some injected fault's line must contain (the requests the run
/// is about really were faulted).
fn drain_through_proxy(seed: u64, rules: &[&str], storage_extra: &str, hit: &[&str]) {
    let mut world = World::new();
    // Short commits: many ledger writes and uploads for the faults to hit.
    world.commit_interval = "250ms".into();
    let kafka = MockKafka::start(&[(TOPIC, PARTITIONS)]);
    let proxy = FaultProxy::start(world.s3.server_port, seed, rules, world.path("proxy.log"));
    let run = world.config_at(
        "run.toml",
        &kafka.bootstrap,
        &proxy.endpoint(),
        storage_extra,
        &dataset_toml(""),
    );
    let direct = world.config("query.toml", &kafka.bootstrap, &dataset_toml(""));
    let mut generator = HttpRequests::new(seed).compact(true);
    let mut weir = world.weir_run(&run, "weir.log", &[]);
    // Produced in waves while weir consumes, so each partition makes many commits.
    let mut ids = Vec::new();
    for _ in 0..WAVES {
        ids.extend(produce_http(
            &kafka.bootstrap,
            TOPIC,
            PARTITIONS,
            PER_PARTITION / WAVES,
            &mut generator,
        ));
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(ids.len(), 40_000);
    world.expect_rows(
        &direct,
        "http_requests",
        ids.len(),
        Duration::from_secs(900),
        &mut [&mut weir],
    );
    weir.terminate();
    let faults = proxy.faults();
    for want in hit {
        assert!(
            faults
                .iter()
                .any(|f| f.to_lowercase().contains(&want.to_lowercase())),
            "no fault hit a request matching {want:?}; {} faults: {faults:?}",
            faults.len()
        );
    }
    eprintln!(
        "{} faults injected, first: {:?}",
        faults.len(),
        &faults[..3]
    );
    world.assert_exactly_once(&direct, &ids);
    let entries = world.assert_named_files_exist("http_requests");
    assert!(entries >= PARTITIONS as usize, "{entries} ledger entries");
}

/// (a) 30% of the writes under `_weir/ledger/` land and lose their answer: intents, epoch
/// claims, entries, checkpoints.
#[test]
fn ledger_writes_that_lose_their_answers_commit_exactly_once() {
    drain_through_proxy(
        1301,
        &["PUT,POST|/_weir/ledger/|0.3|lose"],
        "",
        &[
            "/epochs/",
            "/pending/",
            "/entries/",
            "lose-500",
            "lose-drop",
        ],
    );
}

/// (b) 10% of all writes lose their answers, including multipart parts and completions of
/// data files (every data file is a multipart upload here) and deletes.
#[test]
fn any_write_that_loses_its_answer_commits_exactly_once() {
    drain_through_proxy(
        1302,
        &["PUT,POST,DELETE|.|0.1|lose"],
        "multipart_threshold = \"1KiB\"",
        &[
            "POST /weir/lake/http_requests/",
            "partNumber=",
            "/entries/",
            // deletes: one DELETE, or S3's bulk `POST ?delete`
            "delete",
        ],
    );
}

/// (c) 10% of reads and listings are refused with 503. `weir run` reads at recovery (epoch
/// claims, hint, checkpoints, entries, intents): about 200 reads for 32 partitions.
#[test]
fn refused_reads_and_listings_commit_exactly_once() {
    drain_through_proxy(
        1303,
        &["GET,HEAD|.|0.1|refuse503"],
        "",
        &["list-type=2", "GET /weir/lake/_weir/ledger/"],
    );
}
