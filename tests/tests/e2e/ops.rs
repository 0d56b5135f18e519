//! What operators of a deployment rely on besides the data: traces exported over OTLP to
//! the collector the standard variables name, JSON log lines that point into those traces,
//! and `weir query` reading the lake without the operators' secrets or reference data.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use prost::Message;
use weir_schemas::synth::HttpRequests;

use crate::backbone::{TOPIC, dataset_toml};
use crate::harness::{MockKafka, World, flush, produce_http, producer, send, weir_bin};

const PARTITIONS: i32 = 2;

/// `(path, body)` of each request a [`Collector`] received.
type Received = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

/// A stand-in OTLP/HTTP collector on 127.0.0.1: answers every POST with 200 and keeps
/// `(path, body)` of each.
struct Collector {
    port: u16,
    received: Received,
}

impl Collector {
    fn start() -> Collector {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let received: Received = Arc::default();
        let sink = received.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let sink = sink.clone();
                std::thread::spawn(move || serve(stream, &sink));
            }
        });
        Collector { port, received }
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Every span received so far, with the `service.name` of its resource.
    fn spans(&self) -> Vec<(String, opentelemetry_proto::tonic::trace::v1::Span)> {
        let mut out = Vec::new();
        for (path, body) in self.received.lock().unwrap().iter() {
            assert_eq!(path, "/v1/traces", "weir exports traces only");
            let request = ExportTraceServiceRequest::decode(body.as_slice())
                .expect("an OTLP protobuf trace export");
            for resource in request.resource_spans {
                let service = resource
                    .resource
                    .iter()
                    .flat_map(|r| &r.attributes)
                    .find(|a| a.key == "service.name")
                    .and_then(|a| a.value.as_ref()?.value.clone())
                    .map(|v| match v {
                        Value::StringValue(s) => s,
                        other => format!("{other:?}"),
                    })
                    .unwrap_or_default();
                for scope in resource.scope_spans {
                    for span in scope.spans {
                        out.push((service.clone(), span));
                    }
                }
            }
        }
        out
    }
}

/// HTTP/1.1 with keep-alive: requests with a `content-length` body, one after another.
fn serve(stream: TcpStream, sink: &Mutex<Vec<(String, Vec<u8>)>>) {
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let path = request_line
            .split_whitespace()
            .nth(1)
            .unwrap_or_default()
            .to_owned();
        let mut length = 0usize;
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 {
                return;
            }
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().unwrap();
            }
        }
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        sink.lock().unwrap().push((path, body));
        let answer =
            "HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n";
        if writer.write_all(answer.as_bytes()).is_err() {
            return;
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn spans_reach_the_otlp_collector_and_json_logs_name_their_trace() {
    let world = World::new();
    let kafka = MockKafka::start(&[(TOPIC, PARTITIONS)]);
    let collector = Collector::start();
    let config = world.config("weir.toml", &kafka.bootstrap, &dataset_toml(""));
    let mut generator = HttpRequests::new(5).compact(true);
    let per_partition = 300;
    produce_http(
        &kafka.bootstrap,
        TOPIC,
        PARTITIONS,
        per_partition,
        &mut generator,
    );
    let endpoint = collector.endpoint();
    let mut weir = world.weir_run(
        &config,
        "weir.log",
        &[
            ("WEIR_LOG_FORMAT", "json"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_BSP_SCHEDULE_DELAY", "200"),
        ],
    );
    world.wait_consumed(
        "http_requests",
        TOPIC,
        &[per_partition as i64; PARTITIONS as usize],
        Duration::from_secs(120),
        &mut weir,
    );
    // SIGTERM: the spans still queued are exported before the process exits.
    weir.terminate();
    drop(kafka);

    let spans = collector.spans();
    let log = world.log("weir.log");
    assert!(!spans.is_empty(), "no spans arrived; weir's log:\n{log}");
    let services: BTreeSet<&str> = spans.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(services, BTreeSet::from(["weir"]));
    let mut by_name: BTreeMap<&str, Vec<&opentelemetry_proto::tonic::trace::v1::Span>> =
        BTreeMap::new();
    for (_, span) in &spans {
        by_name.entry(span.name.as_str()).or_default().push(span);
    }
    for name in ["recovery", "commit", "upload", "ledger"] {
        assert!(
            by_name.contains_key(name),
            "no {name} span among {:?}",
            by_name.keys().collect::<Vec<_>>()
        );
    }
    // Every partition was recovered when it was assigned.
    let recovered: BTreeSet<i64> = by_name["recovery"]
        .iter()
        .filter_map(|span| {
            span.attributes
                .iter()
                .find(|a| a.key == "partition")
                .and_then(|a| match a.value.as_ref()?.value.as_ref()? {
                    Value::IntValue(p) => Some(*p),
                    _ => None,
                })
        })
        .collect();
    assert_eq!(recovered, (0..PARTITIONS as i64).collect::<BTreeSet<_>>());
    // Uploads and ledger writes happen inside a commit: same trace, the commit as parent.
    let commits: BTreeMap<Vec<u8>, &opentelemetry_proto::tonic::trace::v1::Span> =
        by_name["commit"]
            .iter()
            .map(|s| (s.span_id.clone(), *s))
            .collect();
    for name in ["upload", "ledger"] {
        for span in &by_name[name] {
            let parent = commits
                .get(&span.parent_span_id)
                .unwrap_or_else(|| panic!("a {name} span outside any commit: {span:?}"));
            assert_eq!(parent.trace_id, span.trace_id);
            assert!(span.start_time_unix_nano >= parent.start_time_unix_nano);
            assert!(span.end_time_unix_nano <= parent.end_time_unix_nano);
        }
    }
    // Every commit wrote its entry: as many ledger spans as commits, each one of its own.
    assert_eq!(by_name["ledger"].len(), commits.len());

    // JSON log lines: every "committed" line names the trace and span of its commit.
    let commit_traces: BTreeSet<(String, String)> = commits
        .values()
        .map(|s| (hex(&s.trace_id), hex(&s.span_id)))
        .collect();
    let mut committed_lines = 0;
    for line in log.lines().filter(|l| l.starts_with('{')) {
        let value: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("a log line that is not JSON ({e}): {line}"));
        if value["fields"]["message"] != "committed" {
            continue;
        }
        committed_lines += 1;
        let trace_id = value["trace_id"]
            .as_str()
            .unwrap_or_else(|| panic!("no trace_id: {line}"));
        let span_id = value["span_id"]
            .as_str()
            .unwrap_or_else(|| panic!("no span_id: {line}"));
        assert_eq!(trace_id.len(), 32, "{line}");
        assert!(
            commit_traces.contains(&(trace_id.to_owned(), span_id.to_owned())),
            "the trace of {line} was not exported as a commit span"
        );
    }
    assert_eq!(
        committed_lines,
        commits.len(),
        "one committed line per commit span"
    );
}

/// A chain with a keyed token (HMAC key from the environment) and a lookup enrichment
/// (a reference file): `weir run` needs both, `weir query` neither.
#[test]
fn query_reads_the_lake_without_operator_secrets_or_reference_data() {
    const KEY_ENV: &str = "WEIR_E2E_REDACT_KEY";
    let world = World::new();
    let kafka = MockKafka::start(&[(TOPIC, PARTITIONS)]);
    let lookup = world.path("zones.csv");
    std::fs::write(&lookup, "ZoneName,team\na.example,alpha\nb.example,beta\n").unwrap();
    // Every third record is in a zone the lookup does not know.
    let zones = ["a.example", "b.example", "c.example"];
    let per_partition = 200;
    let producer = producer(&kafka.bootstrap);
    let mut generator = HttpRequests::new(9).compact(true);
    let mut buf = Vec::new();
    let total = per_partition * PARTITIONS as usize;
    for i in 0..total {
        buf.clear();
        generator.write_record(&mut buf);
        let mut record: serde_json::Value = serde_json::from_slice(&buf).unwrap();
        record["ZoneName"] = zones[i % zones.len()].into();
        let payload = serde_json::to_vec(&record).unwrap();
        send(&producer, TOPIC, (i % PARTITIONS as usize) as i32, &payload);
    }
    flush(&producer);
    let known_zone = (0..total).filter(|i| i % zones.len() != 2).count();
    let config = world.config(
        "weir.toml",
        &kafka.bootstrap,
        &dataset_toml(&format!(
            r#"[[datasets.operators]]
type = "redact"
hmac_key = {{ env = "{KEY_ENV}" }}
[datasets.operators.fields]
ClientIP = {{ action = "token" }}

[[datasets.operators]]
type = "enrich"
[[datasets.operators.lookup]]
path = "{lookup}"
key = ["ZoneName"]
columns = ["team"]
"#,
            lookup = lookup.display()
        )),
    );
    let mut weir = world.weir_run(&config, "weir.log", &[(KEY_ENV, "e2e-key")]);
    world.wait_consumed(
        "http_requests",
        TOPIC,
        &[per_partition as i64; PARTITIONS as usize],
        Duration::from_secs(120),
        &mut weir,
    );
    weir.terminate();
    drop(kafka);

    // The reference file is gone and the key is not in this environment: the config no
    // longer validates, as `weir check-config` says.
    std::fs::remove_file(&lookup).unwrap();
    assert!(std::env::var_os(KEY_ENV).is_none());
    let check = std::process::Command::new(weir_bin())
        .args(["check-config", "--config"])
        .arg(&config)
        .env_remove(KEY_ENV)
        .output()
        .unwrap();
    assert!(
        !check.status.success(),
        "check-config passed without the key"
    );
    assert!(
        String::from_utf8_lossy(&check.stderr).contains(KEY_ENV),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );

    // `weir query` still reads every row, with the columns the operators wrote.
    let rows = world.query(
        &config,
        "SELECT count(*), count(DISTINCT ClientIP), min(ClientIP), count(team) FROM http_requests",
    );
    let cols: Vec<&str> = rows[0].split(',').collect();
    assert_eq!(cols[0], total.to_string());
    assert!(cols[1].parse::<u64>().unwrap() > 1, "{rows:?}");
    assert!(cols[2].starts_with("tok_"), "ClientIP is a token: {rows:?}");
    assert_eq!(cols[3].parse::<usize>().unwrap(), known_zone, "{rows:?}");
    // The enrichment's column is in the table even where the lookup found nothing.
    let columns = world.query(
        &config,
        "SELECT column_name FROM information_schema.columns \
         WHERE table_name = 'http_requests' AND column_name IN ('team', 'ClientIP', 'date') \
         ORDER BY 1",
    );
    assert_eq!(columns, ["ClientIP", "date", "team"]);
}
