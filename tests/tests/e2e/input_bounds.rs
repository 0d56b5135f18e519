//! Input integrity through `weir run`: event times out of bounds go to the dead letters
//! (never into 1970), the `commits` table accounts for every record, operator state
//! survives a changed chain, and names Weir adds to rows are refused in schemas.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use weir_schemas::synth::HttpRequests;

use crate::backbone::{TOPIC, dataset_toml};
use crate::harness::{MockKafka, World, flush, producer, send};

const PARTITIONS: i32 = 2;
const HOUR_NS: i64 = 3_600_000_000_000;

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64
}

/// A synthetic http_requests record (event time now) with `EdgeStartTimestamp` replaced.
fn with_event_time(generator: &mut HttpRequests, time: serde_json::Value) -> (String, Vec<u8>) {
    let mut buf = Vec::new();
    let meta = generator.write_record(&mut buf);
    let mut record: serde_json::Value = serde_json::from_slice(&buf).unwrap();
    match time {
        serde_json::Value::String(s) if s == "<absent>" => {
            record.as_object_mut().unwrap().remove("EdgeStartTimestamp");
        }
        other => record["EdgeStartTimestamp"] = other,
    }
    (
        weir_schemas::synth::ray_id_hex(meta.id),
        serde_json::to_vec(&record).unwrap(),
    )
}

/// Good records in both partitions, and in partition 0 records whose event time is absent,
/// null, no instant, of the wrong shape, or too far ahead; one is ahead but within
/// `max_future` and lands.
#[test]
fn event_times_out_of_bounds_are_dead_letters_and_commits_add_up() {
    let world = World::new();
    let kafka = MockKafka::start(&[(TOPIC, PARTITIONS)]);
    let config = world.config(
        "weir.toml",
        &kafka.bootstrap,
        &format!("[event_time]\nmax_future = \"1h\"\n{}", dataset_toml("")),
    );
    let mut generator = HttpRequests::new(5).compact(true);
    let p = producer(&kafka.bootstrap);
    let mut produced = [0i64; PARTITIONS as usize];
    let mut ids = Vec::new();
    let send_to = |part: i32, payload: &[u8], produced: &mut [i64]| {
        send(&p, TOPIC, part, payload);
        produced[part as usize] += 1;
    };
    for i in 0..400 {
        let (id, record) = with_event_time(&mut generator, serde_json::json!(now_ns()));
        ids.push(id);
        send_to(i % PARTITIONS, &record, &mut produced);
    }
    // (event time, lands?) in partition 0, after its first 200 records.
    let now = now_ns();
    let cases: Vec<(serde_json::Value, bool)> = vec![
        (serde_json::json!("<absent>"), false),
        (serde_json::Value::Null, false),
        (serde_json::json!("not a time"), false),
        (serde_json::json!({ "seconds": 1 }), false),
        (serde_json::json!(now + 2 * HOUR_NS), false),
        (serde_json::json!(now + 400 * 24 * HOUR_NS), false),
        (serde_json::json!(now + HOUR_NS / 2), true),
    ];
    let mut dead_offsets = Vec::new();
    for (time, lands) in &cases {
        let (id, record) = with_event_time(&mut generator, time.clone());
        if *lands {
            ids.push(id);
        } else {
            dead_offsets.push(produced[0]);
        }
        send_to(0, &record, &mut produced);
    }
    flush(&p);
    let total: i64 = produced.iter().sum();

    let mut weir = world.weir_run(&config, "weir.log", &[]);
    world.wait_consumed(
        "http_requests",
        TOPIC,
        &produced,
        Duration::from_secs(120),
        &mut weir,
    );
    weir.terminate();

    // The table holds the good records exactly once, nothing in 1970 or far ahead.
    world.assert_exactly_once(&config, &ids);
    let hours = world.query(
        &config,
        "SELECT DISTINCT date FROM http_requests ORDER BY 1",
    );
    assert!(
        hours.iter().all(|d| d.as_str() > "2020-01-01"),
        "dates {hours:?}"
    );
    // Every folder but the Delta log is a date.
    let on_disk: Vec<String> = std::fs::read_dir(world.lake_dir().join("http_requests"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name != "_delta_log")
        .collect();
    assert!(
        on_disk.iter().all(|d| d.as_str() > "date=2020"),
        "{on_disk:?}"
    );

    // Each refused record is a dead letter with its offset and kind.
    let dead = world.query(
        &config,
        "SELECT \"partition\", \"offset\", stage, error_kind FROM dead_letter ORDER BY \"offset\"",
    );
    let want: Vec<String> = dead_offsets
        .iter()
        .map(|o| format!("0,{o},decode,invalid_event_time"))
        .collect();
    assert_eq!(dead, want, "{}", world.log("weir.log"));
    let why = world.query(
        &config,
        "SELECT error FROM dead_letter ORDER BY \"offset\" DESC LIMIT 1",
    );
    assert!(
        why[0].contains("ahead of the wall clock"),
        "the far-future letter says why: {why:?}"
    );

    // The commits table: one row per ledger entry, accounting for every record.
    let sums = world.query(
        &config,
        "SELECT sum(records), sum(dead_letters), sum(skipped_offsets), min(kind), max(kind) FROM commits",
    );
    // Each partition's first entry is its `start` (it covers no records), the others append.
    assert_eq!(
        sums,
        [format!("{total},{},0,append,start", dead_offsets.len())]
    );
    let rows = world.query(&config, "SELECT sum(rows) FROM commits");
    assert_eq!(rows, [ids.len().to_string()]);
    let entries = world.query(
        &config,
        "SELECT \"partition\", seq, epoch, first_offset, next_offset, records, files, bytes, \
         committed_at FROM commits ORDER BY \"partition\", seq",
    );
    let mut by_partition: BTreeMap<i32, Vec<Vec<String>>> = BTreeMap::new();
    for line in &entries {
        let cols: Vec<String> = line.split(',').map(str::to_owned).collect();
        by_partition
            .entry(cols[0].parse().unwrap())
            .or_default()
            .push(cols);
    }
    assert_eq!(by_partition.len(), PARTITIONS as usize, "{entries:?}");
    let mut files = 0;
    let mut bytes = 0;
    for (partition, rows) in &by_partition {
        let mut next = 0i64;
        for (i, cols) in rows.iter().enumerate() {
            assert_eq!(cols[1], (i + 1).to_string(), "seq contiguous: {rows:?}");
            assert_eq!(
                cols[3],
                next.to_string(),
                "entries tile the offsets: {rows:?}"
            );
            let (first, after): (i64, i64) = (cols[3].parse().unwrap(), cols[4].parse().unwrap());
            assert_eq!(
                cols[5],
                (after - first).to_string(),
                "records = offsets: {cols:?}"
            );
            assert!(cols[8].starts_with("20"), "committed_at {cols:?}");
            next = after;
            files += cols[6].parse::<u64>().unwrap();
            bytes += cols[7].parse::<u64>().unwrap();
        }
        assert_eq!(next, produced[*partition as usize], "partition {partition}");
    }
    // `files` and `bytes` are the data files on the S3 server's disk.
    let mut disk_files = 0;
    let mut disk_bytes = 0;
    for date in std::fs::read_dir(world.lake_dir().join("http_requests")).unwrap() {
        let date = date.unwrap();
        if date.file_name() == "_delta_log" {
            continue;
        }
        for hour in std::fs::read_dir(date.path()).unwrap() {
            for file in std::fs::read_dir(hour.unwrap().path()).unwrap() {
                let file = file.unwrap();
                if file.file_name().to_string_lossy().ends_with(".parquet") {
                    disk_files += 1;
                    disk_bytes += file.metadata().unwrap().len();
                }
            }
        }
    }
    assert_eq!((files, bytes), (disk_files, disk_bytes));
}

const BUDGET: &str = r#"[[datasets.operators]]
type = "sample"
key = "RayID"
time_field = "EdgeStartTimestamp"
budget = { group_by = "ZoneName", per_second = 2, excess_per_second = 1 }
"#;

/// Issue 14: inserting an operator ahead of a stateful sampler made every partition fail to
/// restore its state (matched by position), a crash loop. Now the sampler's state is found
/// by its identity, and a removed operator's state is dropped with a log line.
#[test]
fn inserting_an_operator_ahead_of_a_stateful_sampler_keeps_its_state() {
    let world = World::new();
    let kafka = MockKafka::start(&[(TOPIC, PARTITIONS)]);
    let before = world.config("before.toml", &kafka.bootstrap, &dataset_toml(BUDGET));
    let after = world.config(
        "after.toml",
        &kafka.bootstrap,
        &dataset_toml(&format!(
            "[[datasets.operators]]\ntype = \"redact\"\n{BUDGET}"
        )),
    );
    let mut generator = HttpRequests::new(9).compact(true);
    let p = producer(&kafka.bootstrap);
    let mut produced = vec![0i64; PARTITIONS as usize];
    let mut produce = |n: usize, produced: &mut Vec<i64>| {
        for i in 0..n {
            let (_, record) = with_event_time(&mut generator, serde_json::json!(now_ns()));
            send(&p, TOPIC, (i % 2) as i32, &record);
            produced[i % 2] += 1;
        }
        flush(&p);
    };
    produce(300, &mut produced);
    let mut weir = world.weir_run(&before, "before.log", &[]);
    world.wait_consumed(
        "http_requests",
        TOPIC,
        &produced,
        Duration::from_secs(120),
        &mut weir,
    );
    weir.terminate();
    // The entries carry the sampler's state under its identity.
    for partition in 0..PARTITIONS {
        let state = newest_entry(&world, partition)["operator_state"].clone();
        assert_eq!(state[0]["operator"], "sample", "{state}");
        assert_eq!(state[0]["name"], "sample", "{state}");
    }

    produce(300, &mut produced);
    let mut weir = world.weir_run(&after, "after.log", &[]);
    world.wait_consumed(
        "http_requests",
        TOPIC,
        &produced,
        Duration::from_secs(120),
        &mut weir,
    );
    assert!(weir.running(), "{}", world.log("after.log"));
    weir.terminate();
    let log = world.log("after.log");
    assert_eq!(
        partitions_logging(&log, &["operator state restored", "operator=sample"]),
        [0, 1],
        "{log}"
    );
    assert!(!log.contains("fresh state"), "{log}");
    for partition in 0..PARTITIONS {
        let state = newest_entry(&world, partition)["operator_state"].clone();
        assert_eq!(state[0]["position"], 1, "{state}");
    }

    // Back to the sampler alone, renamed: its state is not found under the new name, so it
    // starts fresh, said in the log; nothing fails.
    produce(100, &mut produced);
    let renamed = world.config(
        "renamed.toml",
        &kafka.bootstrap,
        &dataset_toml(&BUDGET.replace("type = \"sample\"", "type = \"sample\"\nname = \"zones\"")),
    );
    let mut weir = world.weir_run(&renamed, "renamed.log", &[]);
    world.wait_consumed(
        "http_requests",
        TOPIC,
        &produced,
        Duration::from_secs(120),
        &mut weir,
    );
    weir.terminate();
    let log = world.log("renamed.log");
    assert_eq!(
        partitions_logging(
            &log,
            &["operator starts with fresh state", "operator=zones"]
        ),
        [0, 1],
        "{log}"
    );
    assert_eq!(
        partitions_logging(&log, &["saved operator state dropped", "operator=sample"]),
        [0, 1],
        "{log}"
    );
    let total: i64 = produced.iter().sum();
    let records = world.query(&renamed, "SELECT sum(records) FROM commits");
    assert_eq!(records, [total.to_string()]);
}

/// `text` without ANSI colour sequences (the log is written for a terminal).
fn plain(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The partitions named by the log lines that contain all of `words`.
fn partitions_logging(log: &str, words: &[&str]) -> Vec<i32> {
    let mut partitions: Vec<i32> = plain(log)
        .lines()
        .filter(|l| words.iter().all(|w| l.contains(w)))
        .filter_map(|l| {
            let rest = l.split("partition=").nth(1)?;
            rest.split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()
        })
        .collect();
    partitions.sort();
    partitions.dedup();
    partitions
}

/// The newest ledger entry of a partition, read from the S3 server's disk.
fn newest_entry(world: &World, partition: i32) -> serde_json::Value {
    let dir = world
        .lake_dir()
        .join("_weir/ledger/http_requests")
        .join(TOPIC)
        .join(partition.to_string())
        .join("entries");
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    names.sort();
    serde_json::from_slice(&std::fs::read(names.last().unwrap()).unwrap()).unwrap()
}

/// A schema with a field named like a column Weir adds is refused by `check-config` and by
/// `weir run`, naming the field and the dataset.
#[test]
fn reserved_field_names_are_refused_by_check_config_and_run() {
    let world = World::new();
    let schema = world.path("app_logs.json");
    std::fs::write(
        &schema,
        r#"{"name": "app_logs", "version": 1, "event_time": "ts", "fields": [
            {"name": "ts", "type": "timestamp"},
            {"name": "hour", "type": "int"}]}"#,
    )
    .unwrap();
    let config = world.config(
        "reserved.toml",
        "127.0.0.1:9",
        &format!(
            "[[datasets]]\nname = \"app_logs\"\ntopic = \"app\"\nschema = \"{}\"\n",
            schema.display()
        ),
    );
    let out = std::process::Command::new(crate::harness::weir_bin())
        .args(["check-config", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("field hour") && err.contains("dataset app_logs"),
        "{err}"
    );

    let mut weir = world.weir_run(&config, "reserved.log", &[]);
    let status = weir.wait_timeout(Duration::from_secs(20)).expect("exits");
    assert!(!status.success());
    let log = world.log("reserved.log");
    assert!(
        log.contains("field hour") && log.contains("dataset app_logs"),
        "{log}"
    );
}
