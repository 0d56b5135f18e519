//! Late data: a backlog whose event times spread over 30 days (a replay, a shipper that
//! caught up) must land completely with the resident memory of `weir run` within
//! `memory.limit`. Each open hour used to keep a Parquet writer (~40 MiB of codec contexts
//! for http_requests): 20,000 such events peaked at 4.3 GiB against a 512 MiB limit.

use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use weir_schemas::synth::HttpRequests;

use crate::backbone::{TOPIC, dataset_toml};
use crate::harness::{MockKafka, World, flush, producer, send};

const PARTITIONS: i32 = 2;
/// Enough for every batch to touch hundreds of hours: without a cap on open writers a
/// single batch would hold hundreds of them. Each commit writes one small file per hour it
/// touched, ~720, which a debug build makes slowly: the size stays small for CI.
const EVENTS: usize = 6_000;
const WAVES: usize = 3;
/// Waves produced ahead of what the ledger has committed. The mock broker keeps 5 MiB per
/// partition; two waves (2,000 events a partition) stay well inside it however slowly the
/// machine lets `weir` start and commit.
const WAVES_AHEAD: usize = 2;
const LIMIT_MIB: u64 = 512;
/// What the allocator and the kernel may add beyond the buffers `memory.limit` plans.
const SLACK_MIB: u64 = 64;

/// Peak resident memory of a live process (`VmHWM`), in MiB.
fn peak_rss_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM");
    kib / 1024
}

/// Names of a live process's threads.
fn thread_names(pid: u32) -> Vec<String> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .expect("proc tasks")
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .map(|name| name.trim().to_owned())
        .collect()
}

#[test]
fn a_backlog_spread_over_30_days_lands_within_the_memory_limit() {
    let mut world = World::new();
    // The default interval: every commit of spread-out rows makes one file per hour.
    world.commit_interval = "10s".into();
    let kafka = MockKafka::start(&[(TOPIC, PARTITIONS)]);
    let config = world.config(
        "weir.toml",
        &kafka.bootstrap,
        &format!("[memory]\nlimit = \"{LIMIT_MIB}MiB\"\n{}", dataset_toml("")),
    );
    // Event times drawn uniformly from the 30 days before yesterday: ~720 hours.
    let now_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64;
    let day = 86_400_000_000_000i64;
    let start = now_ns - 31 * day;
    let mut rng = ChaCha8Rng::seed_from_u64(30);
    let mut generator = HttpRequests::new(30).compact(true);
    let mut weir = world.weir_run(&config, "weir.log", &[]);
    let p = producer(&kafka.bootstrap);
    let mut ids = Vec::with_capacity(EVENTS);
    let mut buf = Vec::with_capacity(4096);
    // In waves, so no partition's unread backlog passes the mock broker's retention: a wave
    // is produced only once the wave `WAVES_AHEAD` before it is committed.
    let per_partition_wave = (EVENTS / WAVES / PARTITIONS as usize) as i64;
    for wave in 0..WAVES {
        if wave >= WAVES_AHEAD {
            let want = per_partition_wave * (wave + 1 - WAVES_AHEAD) as i64;
            world.wait_consumed(
                "http_requests",
                TOPIC,
                &[want; PARTITIONS as usize],
                Duration::from_secs(600),
                &mut weir,
            );
        }
        for i in 0..EVENTS / WAVES {
            generator.set_event_time(start + rng.random_range(0..30 * day));
            buf.clear();
            let meta = generator.write_record(&mut buf);
            ids.push(weir_schemas::synth::ray_id_hex(meta.id));
            send(&p, TOPIC, ((wave + i) % PARTITIONS as usize) as i32, &buf);
        }
        flush(&p);
    }
    world.expect_rows(
        &config,
        "http_requests",
        EVENTS,
        Duration::from_secs(600),
        &mut [&mut weir],
    );
    let peak = peak_rss_mib(weir.child.id());
    // The peak depends on the allocator's compiled-in settings (`allocator::CONF` in
    // weir's main.rs); their background purge thread shows they took effect.
    let threads = thread_names(weir.child.id());
    assert!(
        threads.iter().any(|t| t == "jemalloc_bg_thd"),
        "weir runs without jemalloc's background thread: {threads:?}"
    );
    let hours = world.query(
        &config,
        "SELECT count(*) FROM (SELECT DISTINCT date, hour FROM http_requests)",
    );
    eprintln!("peak RSS {peak} MiB over {} hours", hours[0]);
    assert!(
        hours[0].parse::<u64>().unwrap() > 700,
        "event times did not spread: {hours:?} hours"
    );
    assert!(
        peak <= LIMIT_MIB + SLACK_MIB,
        "peak RSS {peak} MiB with memory.limit = {LIMIT_MIB}MiB"
    );
    weir.terminate();
    world.assert_exactly_once(&config, &ids);
}
