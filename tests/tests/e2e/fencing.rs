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

    // A freezes itself (SIGSTOP) in its first commit, after uploading its files and before
    // creating the ledger entry that would name them: a zombie holding an open commit.
    let mut a = world.weir_run(
        &config,
        "a.log",
        &[("WEIR_FAILPOINT", "after-upload:1:stop")],
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while !world
        .log("a.log")
        .contains("failpoint after-upload reached, stopping")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "A never reached its first commit\n{}",
            world.log("a.log")
        );
        assert!(a.running(), "A exited\n{}", world.log("a.log"));
        std::thread::sleep(Duration::from_millis(100));
    }

    // B takes over once A's session times out: a takeover entry holds the sequence number
    // A was about to commit, and A's files are removed.
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
    assert!(
        world.log("b.log").contains("takeover entry written"),
        "B never took over A's open commit\n--- b.log\n{}\n--- a.log\n{}",
        world.log("b.log"),
        world.log("a.log")
    );

    // A wakes up inside its commit: the ledger must refuse it, and it drops its files.
    a.signal("CONT");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !world
        .log("a.log")
        .contains("ledger entry already written by another writer")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "A's commit after waking up was never refused\n{}",
            world.log("a.log")
        );
        std::thread::sleep(Duration::from_millis(200));
    }
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
    for (w, log) in [(&mut a, "a.log"), (&mut b, "b.log")] {
        if w.running() {
            w.signal("TERM");
            if w.wait_timeout(Duration::from_secs(40)).is_none() {
                panic!(
                    "{log}: no exit 40 s after SIGTERM\n--- a.log\n{}\n--- b.log\n{}",
                    world.log("a.log"),
                    world.log("b.log")
                );
            }
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

/// Two deployments under different `kafka.group_id`s writing one lake (a blue/green switch
/// left half done): each group assigns the partition to its own member, the ledger lets one
/// writer commit at a time, and the one that lost says so at error level, naming what to
/// check, instead of a warning. Every record still lands once.
#[test]
fn a_deployment_under_another_group_supersedes_the_first_loudly() {
    let world = World::new();
    let kafka = MockKafka::start(&[(TOPIC, 1)]);
    let blue = world.config("blue.toml", &kafka.bootstrap, &dataset_toml(""));
    let text = std::fs::read_to_string(&blue).unwrap();
    let green_text = text.replace("group_id = \"weir-e2e\"", "group_id = \"weir-e2e-green\"");
    assert_ne!(text, green_text, "the config names its group");
    let green = world.path("green.toml");
    std::fs::write(&green, green_text).unwrap();

    let mut generator = HttpRequests::new(71).compact(true);
    let mut ids = produce_http(&kafka.bootstrap, TOPIC, 1, 100, &mut generator);
    let mut a = world.weir_run(&blue, "blue.log", &[]);
    world.expect_rows(
        &blue,
        "http_requests",
        ids.len(),
        Duration::from_secs(120),
        &mut [&mut a],
    );
    let mut b = world.weir_run(&green, "green.log", &[]);
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while !world
        .log("green.log")
        .contains("partition resumes from the ledger")
    {
        assert!(
            std::time::Instant::now() < deadline && b.running(),
            "green never took the partition\n{}",
            world.log("green.log")
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Both read what comes next; the ledger takes one commit per sequence number, and the
    // older epoch's writer stops once the newer one has committed before it.
    let superseded = "another writer took the partition over in the ledger";
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while !world.log("blue.log").contains(superseded) {
        assert!(
            std::time::Instant::now() < deadline,
            "blue was never superseded\n--- blue.log\n{}\n--- green.log\n{}",
            world.log("blue.log"),
            world.log("green.log")
        );
        ids.extend(produce_http(&kafka.bootstrap, TOPIC, 1, 20, &mut generator));
        std::thread::sleep(Duration::from_millis(1500));
    }
    let line = world
        .log("blue.log")
        .lines()
        .find(|l| l.contains(superseded))
        .unwrap()
        .to_owned();
    assert!(
        line.contains("ERROR") && line.contains("kafka.group_id"),
        "{line}"
    );
    // Blue holds the partition in its group without reading it; green goes on.
    ids.extend(produce_http(&kafka.bootstrap, TOPIC, 1, 50, &mut generator));
    world.expect_rows(
        &green,
        "http_requests",
        ids.len(),
        Duration::from_secs(120),
        &mut [&mut b],
    );
    assert!(a.running(), "blue keeps running\n{}", world.log("blue.log"));
    a.terminate();
    b.terminate();
    world.assert_exactly_once(&green, &ids);
}
