//! Crash at each dangerous moment (design.md invariants 1–6), restart, and prove every record
//! is in the table exactly once, through `weir query` and through pyarrow on the raw layout.

use std::time::Duration;

use rand::{Rng, SeedableRng};
use weir_schemas::synth::HttpRequests;

use crate::backbone::{TOPIC, dataset_toml, malformed};
use crate::harness::{MockKafka, World, flush, produce_http, producer, send};

const PARTITIONS: i32 = 4;

/// Runs `weir` once per failpoint spec (each must abort the process there), producing more
/// records between crashes, then once without failpoints to drain, and checks exactly once.
fn crash_then_recover(name: &str, storage_extra: &str, points: &[&str]) {
    let world = World::new();
    let kafka = MockKafka::start(&[(TOPIC, PARTITIONS)]);
    let config = world.config_with(
        "weir.toml",
        &kafka.bootstrap,
        storage_extra,
        &dataset_toml(""),
    );
    let mut generator = HttpRequests::new(name.len() as u64).compact(true);
    let mut ids = produce_http(&kafka.bootstrap, TOPIC, PARTITIONS, 300, &mut generator);
    // Bad records in partition 1, between good ones: dead letters must also land once.
    let bad = malformed();
    let p = producer(&kafka.bootstrap);
    for (payload, _) in &bad {
        send(&p, TOPIC, 1, payload);
    }
    flush(&p);
    drop(p);
    for (i, point) in points.iter().enumerate() {
        let log = format!("weir-crash-{i}.log");
        let mut weir = world.weir_run(&config, &log, &[("WEIR_FAILPOINT", point)]);
        let status = weir
            .wait_timeout(Duration::from_secs(120))
            .unwrap_or_else(|| {
                panic!(
                    "{name}: failpoint {point} never reached\n{}",
                    world.log(&log)
                )
            });
        assert!(
            !status.success() && world.log(&log).contains("failpoint"),
            "{name}: weir should have aborted at {point}, got {status}\n{}",
            world.log(&log)
        );
        ids.extend(produce_http(
            &kafka.bootstrap,
            TOPIC,
            PARTITIONS,
            50,
            &mut generator,
        ));
    }
    let mut weir = world.weir_run(&config, "weir-final.log", &[]);
    world.expect_rows(
        &config,
        "http_requests",
        ids.len(),
        Duration::from_secs(180),
        &mut [&mut weir],
    );
    weir.signal("TERM");
    let status = weir.wait_timeout(Duration::from_secs(40)).expect("exit");
    assert!(status.success(), "{name}: {status}");
    world.assert_exactly_once(&config, &ids);
    let dead = world.query(
        &config,
        "SELECT \"partition\", \"offset\", error_kind, count(*) FROM dead_letter GROUP BY 1, 2, 3 ORDER BY 2",
    );
    let want: Vec<String> = bad
        .iter()
        .enumerate()
        .map(|(i, (_, kind))| format!("1,{},{kind},1", 300 + i))
        .collect();
    assert_eq!(dead, want, "{name}: each dead letter exactly once");
}

#[test]
fn crash_mid_batch() {
    crash_then_recover("mid-batch", "", &["mid-batch:3"]);
}

#[test]
fn crash_after_upload_before_ledger_then_during_orphan_cleanup() {
    crash_then_recover("after-upload", "", &["after-upload:2", "orphan-cleanup:1"]);
}

#[test]
fn crash_after_ledger_before_kafka_commit() {
    crash_then_recover("after-ledger", "", &["after-ledger:3"]);
}

#[test]
fn crash_during_multipart_upload() {
    // Every file goes up in parts, so the crash lands between a part and the completion.
    crash_then_recover(
        "during-multipart",
        "multipart_threshold = \"1KiB\"\n",
        &["during-multipart:2"],
    );
}

/// SIGKILL at seeded random moments while records keep arriving. CI runs 5 kills;
/// `WEIR_E2E_KILLS=25` runs the long version.
#[test]
fn random_kills() {
    let kills: usize = std::env::var("WEIR_E2E_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let world = World::new();
    let kafka = MockKafka::start(&[(TOPIC, PARTITIONS)]);
    let config = world.config("weir.toml", &kafka.bootstrap, &dataset_toml(""));
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0x5eed);
    let mut generator = HttpRequests::new(99).compact(true);
    let mut ids = Vec::new();
    for i in 0..kills {
        ids.extend(produce_http(
            &kafka.bootstrap,
            TOPIC,
            PARTITIONS,
            60,
            &mut generator,
        ));
        let log = format!("weir-{i}.log");
        let mut weir = world.weir_run(&config, &log, &[]);
        std::thread::sleep(Duration::from_millis(rng.random_range(500..6_000)));
        assert!(
            weir.running(),
            "weir exited on its own\n{}",
            world.log(&log)
        );
        weir.signal("KILL");
        weir.wait_timeout(Duration::from_secs(10)).expect("killed");
    }
    let mut weir = world.weir_run(&config, "weir-final.log", &[]);
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
