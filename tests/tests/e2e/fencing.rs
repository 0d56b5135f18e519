//! Zombies and rebalances: a paused owner that wakes up after its partitions moved must be
//! refused by the ledger and drop its files; members joining and leaving never lose or
//! duplicate a record.

use std::time::Duration;

use weir_schemas::synth::HttpRequests;

use crate::backbone::{TOPIC, dataset_toml};
use crate::harness::{MockKafka, World, produce_http};

const PARTITIONS: i32 = 4;

#[test]
fn paused_owner_is_fenced_after_its_partitions_move() {
    let world = World::new();
    let kafka = MockKafka::start(&[(TOPIC, PARTITIONS)]);
    let config = world.config("weir.toml", &kafka.bootstrap, &dataset_toml(""));
    let mut generator = HttpRequests::new(5).compact(true);
    let mut ids = produce_http(&kafka.bootstrap, TOPIC, PARTITIONS, 200, &mut generator);

    let mut a = world.weir_run(&config, "a.log", &[]);
    world.expect_rows(
        &config,
        "http_requests",
        ids.len(),
        Duration::from_secs(120),
        &mut [&mut a],
    );

    // A is frozen holding uncommitted rows; B takes over once A's session times out.
    ids.extend(produce_http(
        &kafka.bootstrap,
        TOPIC,
        PARTITIONS,
        100,
        &mut generator,
    ));
    std::thread::sleep(Duration::from_millis(400));
    a.signal("STOP");
    let mut b = world.weir_run(&config, "b.log", &[]);
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
        Duration::from_secs(120),
        &mut [&mut b],
    );

    // A wakes up believing it still owns everything: its commits must be refused.
    a.signal("CONT");
    ids.extend(produce_http(
        &kafka.bootstrap,
        TOPIC,
        PARTITIONS,
        100,
        &mut generator,
    ));
    std::thread::sleep(Duration::from_secs(8));
    world.expect_rows(
        &config,
        "http_requests",
        ids.len(),
        Duration::from_secs(120),
        &mut [&mut b],
    );
    for w in [&mut a, &mut b] {
        if w.running() {
            w.signal("TERM");
            w.wait_timeout(Duration::from_secs(40)).expect("exit");
        }
    }
    world.assert_exactly_once(&config, &ids);
}

#[test]
fn members_join_and_leave_mid_stream() {
    let world = World::new();
    let kafka = MockKafka::start(&[(TOPIC, PARTITIONS)]);
    let config = world.config("weir.toml", &kafka.bootstrap, &dataset_toml(""));
    let mut generator = HttpRequests::new(6).compact(true);
    let mut ids = produce_http(&kafka.bootstrap, TOPIC, PARTITIONS, 150, &mut generator);

    let mut a = world.weir_run(&config, "a.log", &[]);
    std::thread::sleep(Duration::from_secs(2));
    let mut b = world.weir_run(&config, "b.log", &[]);
    ids.extend(produce_http(
        &kafka.bootstrap,
        TOPIC,
        PARTITIONS,
        100,
        &mut generator,
    ));
    let mut c = world.weir_run(&config, "c.log", &[]);
    ids.extend(produce_http(
        &kafka.bootstrap,
        TOPIC,
        PARTITIONS,
        100,
        &mut generator,
    ));
    std::thread::sleep(Duration::from_secs(3));
    // B leaves cleanly, C leaves by dying; their partitions move back to A.
    b.terminate();
    ids.extend(produce_http(
        &kafka.bootstrap,
        TOPIC,
        PARTITIONS,
        100,
        &mut generator,
    ));
    c.signal("KILL");
    c.wait_timeout(Duration::from_secs(10)).expect("c killed");
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
        Duration::from_secs(180),
        &mut [&mut a],
    );
    a.terminate();
    world.assert_exactly_once(&config, &ids);
}
