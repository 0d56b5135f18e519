//! The spine: Kafka → decode → Parquet on S3 → ledger → SQL, with dead letters, SIGTERM and
//! resume from the ledger.

use std::time::Duration;

use weir_schemas::synth::HttpRequests;

use crate::harness::{MockKafka, World, flush, produce_http, producer, send};

pub const TOPIC: &str = "cf.http_requests";
const DEAD_TOPIC: &str = "weir.dead_letters";

/// Reads `want` messages from the start of `topic` (partition 0): (key, payload, headers).
fn read_topic(
    bootstrap: &str,
    topic: &str,
    want: usize,
) -> Vec<(String, Vec<u8>, std::collections::BTreeMap<String, String>)> {
    use rdkafka::Message;
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::Headers;
    let consumer: BaseConsumer = rdkafka::config::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "weir-e2e-dead-letter-reader")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, rdkafka::Offset::Beginning)
        .unwrap();
    consumer.assign(&tpl).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut out = Vec::new();
    while out.len() < want && std::time::Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            let headers = m
                .headers()
                .map(|h| {
                    h.iter()
                        .map(|h| {
                            (
                                h.key.to_string(),
                                String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            out.push((
                String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned(),
                m.payload().unwrap_or_default().to_vec(),
                headers,
            ));
        }
    }
    out
}

pub fn dataset_toml(operators: &str) -> String {
    format!(
        r#"[[datasets]]
name = "http_requests"
topic = "{TOPIC}"
schema = "http_requests"
max_record_bytes = "64KiB"
{operators}
"#
    )
}

/// One record of each kind of bad input, with the dead-letter `error_kind` it must get.
pub fn malformed() -> Vec<(Vec<u8>, &'static str)> {
    let mut oversized = b"{\"RayID\": \"".to_vec();
    oversized.extend(std::iter::repeat_n(b'a', 100 * 1024));
    oversized.extend(b"\"}");
    vec![
        (b"{\"RayID\": \"not closed\"".to_vec(), "invalid_json"),
        (
            b"{\"EdgeStartTimestamp\": 1714521600, \"EdgeResponseStatus\": \"two hundred\"}"
                .to_vec(),
            "wrong_type",
        ),
        (b"\xff\xfe{\"RayID\": 1}".to_vec(), "invalid_utf8"),
        (Vec::new(), "empty"),
        (oversized, "too_large"),
    ]
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn lands_exactly_once_with_dead_letters_sigterm_and_resume() {
    let world = World::new();
    let kafka = MockKafka::start(&[(TOPIC, 4), (DEAD_TOPIC, 1)]);
    let metrics = crate::harness::free_port();
    let config = world.config(
        "weir.toml",
        &kafka.bootstrap,
        &format!(
            // Messages of at most 32 KiB: the 100 KiB record goes out cut, saying so.
            "[metrics]\nlisten = \"127.0.0.1:{metrics}\"\n[dead_letter]\nkafka_topic = \"{DEAD_TOPIC}\"\nkafka_max_message_bytes = \"32KiB\"\n{}",
            dataset_toml("")
        ),
    );

    // Good records with the bad ones in between, all in partition 0 so their offsets are known.
    let mut generator = HttpRequests::new(11).compact(true);
    let mut ids = produce_http(&kafka.bootstrap, TOPIC, 4, 300, &mut generator);
    let p = producer(&kafka.bootstrap);
    let bad = malformed();
    for (payload, _) in &bad {
        send(&p, TOPIC, 0, payload);
    }
    flush(&p);
    ids.extend(produce_http(&kafka.bootstrap, TOPIC, 4, 50, &mut generator));

    let mut weir = world.weir_run(&config, "weir-1.log", &[]);
    world.expect_rows(
        &config,
        "http_requests",
        ids.len(),
        Duration::from_secs(120),
        &mut [&mut weir],
    );
    let dead = world.wait_rows(
        &config,
        "dead_letter",
        bad.len(),
        Duration::from_secs(30),
        &mut [&mut weir],
    );
    assert_eq!(dead, bad.len(), "dead letters");

    // The dead-letter counter agrees with the table.
    let text = crate::harness::http_get(metrics, "/metrics")
        .map(|(_, body)| body)
        .unwrap_or_default();
    let counted: u64 = text
        .lines()
        .filter(|l| l.starts_with("weir_dead_letters_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    assert_eq!(counted, bad.len() as u64, "metrics:\n{text}");

    // SIGTERM: commit what is in flight, exit 0.
    weir.signal("TERM");
    let status = weir
        .wait_timeout(Duration::from_secs(40))
        .expect("weir exits after SIGTERM");
    assert!(
        status.success(),
        "exit status {status}\n{}",
        world.log("weir-1.log")
    );
    // A clean stop waits for the last commit's tidying: no intent is left behind.
    let ledger = world
        .lake_dir()
        .join("_weir/ledger/http_requests")
        .join(TOPIC);
    for p in 0..4 {
        let pending: Vec<_> = std::fs::read_dir(ledger.join(p.to_string()).join("pending"))
            .map(|d| d.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(
            pending.is_empty(),
            "partition {p}: intents left after SIGTERM: {pending:?}"
        );
    }

    world.assert_exactly_once(&config, &ids);

    // Dead letters keep their bytes and where they came from.
    let rows = world.query(
        &config,
        "SELECT \"partition\", \"offset\", stage, error_kind, raw_bytes, encode(raw, 'hex') FROM dead_letter ORDER BY \"offset\"",
    );
    assert_eq!(rows.len(), bad.len(), "{rows:?}");
    for (i, ((payload, kind), row)) in bad.iter().zip(&rows).enumerate() {
        let cols: Vec<&str> = row.split(',').collect();
        assert_eq!(cols[0], "0", "partition of dead letter {i}: {row}");
        assert_eq!(
            cols[1],
            (300 + i).to_string(),
            "offset of dead letter {i}: {row}"
        );
        assert_eq!(cols[2], "decode", "stage of dead letter {i}: {row}");
        assert_eq!(cols[3], *kind, "kind of dead letter {i}: {row}");
        assert_eq!(cols[4], payload.len().to_string(), "byte count: {row}");
        assert_eq!(cols[5], hex(payload), "raw bytes kept: {row}");
    }

    // The Kafka copy of the dead letters: original bytes as payload, origin in key and headers.
    let copies = read_topic(&kafka.bootstrap, DEAD_TOPIC, bad.len());
    let mut keys: Vec<&String> = copies.iter().map(|c| &c.0).collect();
    keys.dedup();
    assert_eq!(keys.len(), bad.len(), "{copies:?}");
    for (i, (payload, kind)) in bad.iter().enumerate() {
        let key = format!("{TOPIC}/0/{}", 300 + i);
        let copy = copies
            .iter()
            .find(|c| c.0 == key)
            .unwrap_or_else(|| panic!("no dead-letter message {key}"));
        if payload.len() < 16 << 10 {
            assert_eq!(&copy.1, payload, "{key} payload");
            assert_eq!(copy.2.get("weir.truncated"), None, "{key}");
        } else {
            // Cut to fit the topic's messages; the lake copy above kept every byte.
            assert!(
                copy.1.len() < 32 << 10 && payload.starts_with(&copy.1),
                "{key}: {} bytes sent",
                copy.1.len()
            );
            assert_eq!(
                copy.2.get("weir.truncated").map(String::as_str),
                Some("true")
            );
            assert_eq!(
                copy.2.get("weir.raw_bytes"),
                Some(&payload.len().to_string())
            );
        }
        assert_eq!(
            copy.2.get("weir.error_kind").map(String::as_str),
            Some(*kind)
        );
        assert_eq!(copy.2.get("weir.stage").map(String::as_str), Some("decode"));
        // The ledger entry the letter's commit became: a consumer of the topic can tell a
        // committed letter from one of an attempt that never was.
        let header = |k: &str| -> u64 {
            copy.2
                .get(k)
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{key}: no {k} header: {:?}", copy.2))
        };
        let (seq, epoch) = (header("weir.ledger.seq"), header("weir.ledger.epoch"));
        let entries = crate::input::ledger_entries(&world, 0);
        let entry = entries
            .iter()
            .find(|e| e["seq"].as_u64() == Some(seq))
            .unwrap_or_else(|| panic!("{key}: no entry {seq}"));
        assert_eq!(entry["epoch"].as_u64(), Some(epoch), "{key}");
        let offset = 300 + i as i64;
        assert!(
            entry["start_offset"].as_i64() <= Some(offset)
                && Some(offset) < entry["next_offset"].as_i64()
                && entry["dead_lettered"].as_u64() > Some(0),
            "{key}: {entry}"
        );
        assert!(copy.2.contains_key("weir.kafka_timestamp"), "{key}");
    }

    // DuckDB reads the Hive layout directly, with partition pruning columns.
    let duck = world.duckdb(
        "SELECT count(*), count(DISTINCT RayID), min(date) IS NOT NULL FROM read_parquet('http_requests/*/*/*.parquet', hive_partitioning=true)",
    );
    assert_eq!(duck, vec![format!("{0},{0},True", ids.len())]);

    // Partition columns prune: an hour that does not exist yields nothing.
    let none = world.query(
        &config,
        "SELECT count(*) FROM http_requests WHERE date = '1999-01-01'",
    );
    assert_eq!(none, vec!["0".to_string()]);

    // Restart: resumes from the ledger, nothing read twice.
    ids.extend(produce_http(
        &kafka.bootstrap,
        TOPIC,
        4,
        100,
        &mut generator,
    ));
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
    let dead = world.query(&config, "SELECT count(*) FROM dead_letter");
    assert_eq!(dead, vec![bad.len().to_string()], "dead letters once");
}

#[test]
fn bad_config_is_refused_naming_the_key() {
    let world = World::new();
    let config = world.config(
        "bad.toml",
        "127.0.0.1:9",
        &dataset_toml("[[datasets.operators]]\ntype = \"sample\"\nkey = \"RayID\"\nrate = 1.5\n"),
    );
    let out = std::process::Command::new(crate::harness::weir_bin())
        .args(["check-config", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("datasets[0].operators[0]"), "{err}");
    assert!(err.contains("rate"), "{err}");

    // `weir run` refuses the same config before touching Kafka or storage.
    let mut weir = world.weir_run(&config, "bad.log", &[]);
    let status = weir.wait_timeout(Duration::from_secs(20)).expect("exits");
    assert!(!status.success());
    assert!(
        world.log("bad.log").contains("rate"),
        "{}",
        world.log("bad.log")
    );
}
