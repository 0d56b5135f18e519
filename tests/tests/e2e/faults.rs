//! Store and broker faults: injected store errors (refused calls, lost responses, timeouts,
//! on puts, multipart parts and completions, gets and lists), a store that goes away and
//! comes back, and a broker outage. Every record lands exactly once.

use std::time::{Duration, Instant};

use weir_schemas::synth::HttpRequests;

use crate::backbone::{TOPIC, dataset_toml};
use crate::harness::{MockKafka, World, free_port, http_get, metric_sum, produce_http};

const PARTITIONS: i32 = 4;

#[test]
fn injected_store_faults_are_retried_and_the_table_stays_exact() {
    let world = World::new();
    let kafka = MockKafka::start(&[(TOPIC, PARTITIONS)]);
    // Multipart for every file, so parts and completions get faults too.
    let config = world.config_with(
        "weir.toml",
        &kafka.bootstrap,
        "multipart_threshold = \"1KiB\"",
        &dataset_toml(""),
    );
    let mut generator = HttpRequests::new(31).compact(true);
    let mut ids = produce_http(&kafka.bootstrap, TOPIC, PARTITIONS, 200, &mut generator);
    let faults = [("WEIR_STORE_FAULTS", "rate=0.15,seed=3,delay=200ms")];
    let mut weir = world.weir_run(&config, "weir.log", &faults);
    std::thread::sleep(Duration::from_secs(3));
    ids.extend(produce_http(
        &kafka.bootstrap,
        TOPIC,
        PARTITIONS,
        100,
        &mut generator,
    ));
    world.expect_rows(
        &config,
        "http_requests",
        ids.len(),
        Duration::from_secs(240),
        &mut [&mut weir],
    );
    assert!(
        world.log("weir.log").contains("injected fault"),
        "no fault was injected:\n{}",
        world.log("weir.log")
    );
    weir.terminate();
    world.assert_exactly_once(&config, &ids);
}

#[test]
fn store_outage_stops_consumption_reports_unhealthy_and_recovers() {
    let mut world = World::new();
    let kafka = MockKafka::start(&[(TOPIC, PARTITIONS)]);
    let metrics = free_port();
    let config = world.config(
        "weir.toml",
        &kafka.bootstrap,
        &format!(
            "[metrics]\nlisten = \"127.0.0.1:{metrics}\"\n{}",
            dataset_toml("")
        ),
    );
    let mut generator = HttpRequests::new(32).compact(true);
    let mut ids = produce_http(&kafka.bootstrap, TOPIC, PARTITIONS, 100, &mut generator);
    let mut weir = world.weir_run(&config, "weir.log", &[]);
    world.expect_rows(
        &config,
        "http_requests",
        ids.len(),
        Duration::from_secs(120),
        &mut [&mut weir],
    );
    assert_eq!(http_get(metrics, "/healthz").map(|r| r.0), Some(200));

    world.s3.stop();
    ids.extend(produce_http(
        &kafka.bootstrap,
        TOPIC,
        PARTITIONS,
        100,
        &mut generator,
    ));
    let deadline = Instant::now() + Duration::from_secs(90);
    while http_get(metrics, "/healthz").map(|r| r.0) != Some(503) {
        assert!(
            Instant::now() < deadline,
            "never reported unhealthy\n{}",
            world.log("weir.log")
        );
        assert!(
            weir.running(),
            "weir gave up during the outage\n{}",
            world.log("weir.log")
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    std::thread::sleep(Duration::from_secs(3));
    assert!(weir.running(), "weir exited during the outage");

    world.s3.restart();
    world.expect_rows(
        &config,
        "http_requests",
        ids.len(),
        Duration::from_secs(180),
        &mut [&mut weir],
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while http_get(metrics, "/healthz").map(|r| r.0) != Some(200) {
        assert!(Instant::now() < deadline, "never healthy again");
        std::thread::sleep(Duration::from_millis(250));
    }
    let text = http_get(metrics, "/metrics").expect("metrics answer").1;
    assert!(text.contains("weir_store_errors_total"), "{text}");
    weir.terminate();
    world.assert_exactly_once(&config, &ids);
}

#[test]
fn broker_outage_then_exactly_once() {
    let world = World::new();
    let mut kafka = MockKafka::start(&[(TOPIC, PARTITIONS)]);
    let config = world.config("weir.toml", &kafka.bootstrap, &dataset_toml(""));
    let mut generator = HttpRequests::new(33).compact(true);
    let mut ids = produce_http(&kafka.bootstrap, TOPIC, PARTITIONS, 150, &mut generator);
    let mut weir = world.weir_run(&config, "weir.log", &[]);
    std::thread::sleep(Duration::from_secs(3));
    kafka.command("down");
    std::thread::sleep(Duration::from_secs(8));
    assert!(
        weir.running(),
        "weir exited while the broker was down\n{}",
        world.log("weir.log")
    );
    kafka.command("up");
    ids.extend(produce_http(
        &kafka.bootstrap,
        TOPIC,
        PARTITIONS,
        150,
        &mut generator,
    ));
    world.expect_rows(
        &config,
        "http_requests",
        ids.len(),
        Duration::from_secs(180),
        &mut [&mut weir],
    );
    weir.terminate();
    world.assert_exactly_once(&config, &ids);
}

/// A real broker process restart: tansu keeps its log in the S3 server (its `s3://`
/// storage engine), so killing and restarting the process loses nothing but connections.
#[test]
fn broker_process_restart_with_tansu() {
    use crate::tansu::{create_topic, start_tansu};
    let world = World::new();
    std::fs::create_dir_all(world.s3.root.join("tansu")).unwrap();
    let port = free_port();
    let mut tansu = start_tansu(&world, port, "s3://tansu/", "tansu-1.log");
    create_topic(port, TOPIC, 2);
    let bootstrap = format!("127.0.0.1:{port}");
    let config = world.config("weir.toml", &bootstrap, &dataset_toml(""));
    let mut generator = HttpRequests::new(34).compact(true);
    let mut ids = produce_http(&bootstrap, TOPIC, 2, 150, &mut generator);
    let mut weir = world.weir_run(&config, "weir.log", &[]);
    world.expect_rows(
        &config,
        "http_requests",
        ids.len(),
        Duration::from_secs(120),
        &mut [&mut weir],
    );

    // Kill the broker process, keep it down a while, start a new one on the same port.
    tansu.signal("KILL");
    tansu
        .wait_timeout(Duration::from_secs(10))
        .expect("tansu killed");
    std::thread::sleep(Duration::from_secs(5));
    assert!(
        weir.running(),
        "weir exited while the broker was gone\n{}",
        world.log("weir.log")
    );
    let _tansu = start_tansu(&world, port, "s3://tansu/", "tansu-2.log");
    std::thread::sleep(Duration::from_secs(1));
    ids.extend(produce_http(&bootstrap, TOPIC, 2, 150, &mut generator));
    world.expect_rows(
        &config,
        "http_requests",
        ids.len(),
        Duration::from_secs(180),
        &mut [&mut weir],
    );
    weir.terminate();
    world.assert_exactly_once(&config, &ids);
}

/// Creates one key from `writers` clients at once, `rounds` times, at `endpoint`; returns
/// how many creates succeeded in each round. `raw`: the server itself, which may refuse a
/// create by closing the connection before reading the body (counted as a loss).
fn racing_creates(endpoint: &str, raw: bool, writers: usize, rounds: usize) -> Vec<usize> {
    use object_store::aws::AmazonS3Builder;
    use object_store::{ObjectStore, PutMode, PutOptions, PutPayload, path::Path};

    let store = std::sync::Arc::new(
        AmazonS3Builder::new()
            .with_endpoint(endpoint)
            .with_allow_http(true)
            .with_region("us-east-1")
            .with_bucket_name(crate::harness::BUCKET)
            .with_access_key_id(crate::harness::ACCESS_KEY)
            .with_secret_access_key(crate::harness::SECRET_KEY)
            .build()
            .expect("s3 client"),
    );
    let prefix = if raw { "raw" } else { "proxied" };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let mut wins = Vec::new();
        for round in 0..rounds {
            let path = Path::from(format!("race/{prefix}/{round}/entry"));
            let creates = (0..writers).map(|w| {
                let store = store.clone();
                let path = path.clone();
                // A large body keeps each upload open long enough to overlap the others.
                let body = PutPayload::from(vec![w as u8; 4 << 20]);
                async move {
                    let opts = PutOptions {
                        mode: PutMode::Create,
                        ..Default::default()
                    };
                    match store.put_opts(&path, body, opts).await {
                        Ok(_) => 1,
                        Err(
                            object_store::Error::AlreadyExists { .. }
                            | object_store::Error::Precondition { .. },
                        ) => 0,
                        Err(e) if raw => {
                            eprintln!("create {path}: {e}");
                            0
                        }
                        Err(e) => panic!("create {path}: {e}"),
                    }
                }
            });
            wins.push(futures::future::join_all(creates).await.iter().sum());
        }
        wins
    })
}

/// The store the tests write to decides a create-if-absent once, as S3 does, when
/// several writers race for one key (two owners of a partition, two runs of a backfill
/// shard). s3s-fs alone does not: the harness puts a proxy in front (see `S3Server`).
#[test]
fn racing_creates_of_one_key_have_one_winner() {
    let world = World::new();
    let raw = racing_creates(
        &format!("http://127.0.0.1:{}", world.s3.server_port),
        true,
        8,
        5,
    );
    eprintln!("wins per round straight at s3s-fs: {raw:?}");
    let wins = racing_creates(&world.s3.endpoint(), false, 8, 10);
    assert_eq!(wins, vec![1; 10], "creates that succeeded, per round");
}

/// Commits are pipelined: while one uploads to a slow store (every call takes 2 s), the
/// partition reads and decodes the records that arrive meanwhile. Were the worker to wait
/// for its commit, `weir_records_total` could not pass the first entry's records before
/// that entry exists.
#[test]
fn records_are_read_while_a_commit_uploads() {
    let world = World::new();
    let kafka = MockKafka::start(&[(TOPIC, 1)]);
    let metrics = free_port();
    let config = world.config(
        "weir.toml",
        &kafka.bootstrap,
        &format!(
            "[metrics]\nlisten = \"127.0.0.1:{metrics}\"\n{}",
            dataset_toml("")
        ),
    );
    let mut generator = HttpRequests::new(34).compact(true);
    let mut ids = produce_http(&kafka.bootstrap, TOPIC, 1, 200, &mut generator);
    let mut weir = world.weir_run(
        &config,
        "weir.log",
        &[("WEIR_STORE_FAULTS", "rate=0,slow=2s")],
    );
    let ledger = world
        .lake_dir()
        .join("_weir/ledger/http_requests")
        .join(TOPIC)
        .join("0");
    let names = |dir: &str| -> Vec<String> {
        std::fs::read_dir(ledger.join(dir))
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.ends_with(".json"))
                    .collect()
            })
            .unwrap_or_default()
    };
    // Entry 1 records where the partition starts (it covers no records); the commits of
    // records are entries 2 and on.
    let start = format!("{:020}", 1);
    let commits = |dir: &str| -> Vec<String> {
        names(dir)
            .into_iter()
            .filter(|n| !n.starts_with(&start))
            .collect()
    };
    // The first commit's intent is written: its files are closed and being uploaded.
    let deadline = Instant::now() + Duration::from_secs(120);
    while commits("pending").is_empty() {
        assert!(
            Instant::now() < deadline,
            "no commit started\n{}",
            world.log("weir.log")
        );
        assert!(weir.running(), "weir exited\n{}", world.log("weir.log"));
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        commits("entries").is_empty(),
        "the first entry came too soon"
    );
    ids.extend(produce_http(
        &kafka.bootstrap,
        TOPIC,
        1,
        200,
        &mut generator,
    ));
    // Records decoded, as long as the first entry does not exist.
    let mut read_before_entry = 0u64;
    let deadline = Instant::now() + Duration::from_secs(120);
    let first = loop {
        let entries = commits("entries");
        if let Some(first) = entries.iter().min() {
            break first.clone();
        }
        if let Some((200, body)) = http_get(metrics, "/metrics") {
            let decoded = metric_sum(&body, "weir_records_total", &[]);
            read_before_entry = read_before_entry.max(decoded);
        }
        assert!(
            Instant::now() < deadline,
            "the first entry never came\n{}",
            world.log("weir.log")
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let entry: serde_json::Value = serde_json::from_slice(
        &std::fs::read(ledger.join("entries").join(&first)).expect("first entry"),
    )
    .expect("entry json");
    let committed = entry["records"].as_u64().expect("records");
    world.expect_rows(
        &config,
        "http_requests",
        ids.len(),
        Duration::from_secs(180),
        &mut [&mut weir],
    );
    weir.terminate();
    assert!(
        read_before_entry > committed,
        "while the first commit ({committed} records) uploaded, only {read_before_entry} records were read: consumption waited for the store\n{}",
        world.log("weir.log")
    );
    world.assert_exactly_once(&config, &ids);
}
