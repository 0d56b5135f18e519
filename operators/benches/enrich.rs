//! Throughput of the enrich operator on http_requests-like batches.
//!
//! `cargo bench -p weir-operators --bench enrich`
//!
//! 8,192-row batches; client IPs drawn Zipf(s = 1) from 100,000 addresses inside the
//! networks of MaxMind's test City and ASN databases (so lookups find records and decode
//! them, as with real databases); user agents drawn Zipf(s = 1) from 300 real ones
//! (uap-core's test strings). One thread, seeded, so runs compare.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use weir_operators::enrich::{EnrichConfig, ResourceData, Resources};
use weir_operators::{BuildContext, Chain, Metric, Operator, OperatorConfig};

const ROWS: usize = 8_192;
const BATCHES: usize = 48;
const DISTINCT_IPS: usize = 100_000;
const DISTINCT_UAS: usize = 300;
const RUN_FOR: Duration = Duration::from_secs(3);

fn testdata(relative: &str) -> PathBuf {
    [env!("CARGO_MANIFEST_DIR"), "testdata", "enrich", relative]
        .iter()
        .collect()
}

/// Cumulative Zipf(s = 1) weights over `n` ranks.
fn zipf_cdf(n: usize) -> Vec<f64> {
    let mut total = 0.0;
    let mut cdf = Vec::with_capacity(n);
    for rank in 1..=n {
        total += 1.0 / rank as f64;
        cdf.push(total);
    }
    cdf.iter_mut().for_each(|c| *c /= total);
    cdf
}

fn zipf_pick(cdf: &[f64], rng: &mut ChaCha8Rng) -> usize {
    let u: f64 = rng.random();
    cdf.partition_point(|&c| c < u).min(cdf.len() - 1)
}

/// Networks (first address, size) of the test databases' source data.
fn networks() -> Vec<(bool, u128, u128)> {
    let mut out = Vec::new();
    for json in [
        "maxmind/GeoIP2-City-Test.json",
        "maxmind/GeoLite2-ASN-Test.json",
    ] {
        let bytes = std::fs::read(testdata(json)).expect("test data");
        let entries: Vec<BTreeMap<String, serde_json::Value>> =
            serde_json::from_slice(&bytes).expect("json");
        for entry in entries {
            for cidr in entry.keys() {
                let (address, prefix) = cidr.split_once('/').expect("cidr");
                let prefix: u32 = prefix.parse().expect("prefix");
                let (v6, bits, base) = match address.parse::<IpAddr>().expect("ip") {
                    IpAddr::V4(v4) => (false, 32, u128::from(u32::from(v4))),
                    IpAddr::V6(v6) => (true, 128, u128::from(v6)),
                };
                let host_bits = (bits - prefix).min(64);
                out.push((v6, base, 1u128 << host_bits));
            }
        }
    }
    out
}

fn distinct_ips(rng: &mut ChaCha8Rng) -> Vec<String> {
    let networks = networks();
    (0..DISTINCT_IPS)
        .map(|_| {
            let (v6, base, size) = networks[rng.random_range(0..networks.len())];
            let offset = rng.random_range(0..size.min(u64::MAX as u128) as u64) as u128;
            if v6 {
                IpAddr::V6((base + offset).into()).to_string()
            } else {
                IpAddr::V4(((base + offset) as u32).into()).to_string()
            }
        })
        .collect()
}

fn distinct_agents() -> Vec<String> {
    let text = std::fs::read_to_string(testdata("uap/test_ua.jsonl")).expect("test data");
    text.lines()
        .step_by(4)
        .take(DISTINCT_UAS)
        .map(|line| {
            let row: Vec<Option<String>> = serde_json::from_str(line).expect("jsonl");
            row[0].clone().expect("user agent")
        })
        .collect()
}

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("RayID", DataType::Utf8, false),
        Field::new("ClientIP", DataType::Utf8, true),
        Field::new("ClientRequestUserAgent", DataType::Utf8, true),
        Field::new("ClientRequestHost", DataType::Utf8, true),
        Field::new("ClientRequestPath", DataType::Utf8, true),
        Field::new("EdgeResponseStatus", DataType::Int64, true),
    ]))
}

fn batches() -> Vec<RecordBatch> {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let ips = distinct_ips(&mut rng);
    let agents = distinct_agents();
    let ip_cdf = zipf_cdf(ips.len());
    let ua_cdf = zipf_cdf(agents.len());
    let hosts = [
        "www.example.com",
        "api.example.co.uk",
        "shop.test",
        "cdn.example.net",
    ];
    (0..BATCHES)
        .map(|b| {
            let ray: StringArray = (0..ROWS)
                .map(|r| Some(format!("{:016x}", b * ROWS + r)))
                .collect();
            let ip: StringArray = (0..ROWS)
                .map(|_| Some(ips[zipf_pick(&ip_cdf, &mut rng)].as_str()))
                .collect();
            let ua: StringArray = (0..ROWS)
                .map(|_| Some(agents[zipf_pick(&ua_cdf, &mut rng)].as_str()))
                .collect();
            let host: StringArray = (0..ROWS).map(|r| Some(hosts[r % hosts.len()])).collect();
            let path: StringArray = (0..ROWS)
                .map(|r| Some(format!("/api/v1/items/{}?page={}", r % 977, r % 5)))
                .collect();
            let status =
                Int64Array::from_iter_values((0..ROWS).map(|r| [200, 304, 404, 503][r % 4]));
            let columns: Vec<ArrayRef> = vec![
                Arc::new(ray),
                Arc::new(ip),
                Arc::new(ua),
                Arc::new(host),
                Arc::new(path),
                Arc::new(status),
            ];
            RecordBatch::try_new(schema(), columns).expect("batch")
        })
        .collect()
}

struct Outcome {
    rows: u64,
    elapsed: Duration,
    metrics: Vec<Metric>,
}

impl Outcome {
    fn rows_per_second(&self) -> f64 {
        self.rows as f64 / self.elapsed.as_secs_f64()
    }
}

/// Feeds the batches round-robin for `RUN_FOR` after one warm-up pass.
fn run(mut process: impl FnMut(RecordBatch) -> usize, batches: &[RecordBatch]) -> (u64, Duration) {
    for batch in batches {
        std::hint::black_box(process(batch.clone()));
    }
    let start = Instant::now();
    let mut rows = 0u64;
    let mut i = 0;
    while start.elapsed() < RUN_FOR {
        for _ in 0..8 {
            rows += process(batches[i % batches.len()].clone()) as u64;
            i += 1;
        }
    }
    (rows, start.elapsed())
}

fn bench_operator(toml_text: &str, resources: &Resources, batches: &[RecordBatch]) -> Outcome {
    let OperatorConfig::Enrich(config) = toml::from_str::<OperatorConfig>(toml_text).expect("toml")
    else {
        panic!("not enrich")
    };
    let secrets = weir_operators::config::StaticSecrets::default();
    let ctx = BuildContext {
        dataset: "http_requests",
        input_schema: schema(),
        secrets: &secrets,
        resources,
    };
    let mut op: Box<dyn Operator> = config.build(&ctx).expect("build");
    let (rows, elapsed) = run(
        |batch| std::hint::black_box(op.process(batch).expect("process")).num_rows(),
        batches,
    );
    Outcome {
        rows,
        elapsed,
        metrics: op.metrics(),
    }
}

fn counter(metrics: &[Metric], name: &str, part: &str) -> u64 {
    metrics
        .iter()
        .filter(|m| m.name == name && m.labels.iter().any(|(k, v)| k == "part" && v == part))
        .map(|m| m.value)
        .sum()
}

fn main() {
    let setup = Instant::now();
    let batches = batches();
    let geo = "maxmind/GeoIP2-City-Test.mmdb";
    let asn = "maxmind/GeoLite2-ASN-Test.mmdb";
    let full = format!(
        r#"type = "enrich"
geoip = {{ database = "{geo}", field = "ClientIP" }}
asn = {{ database = "{asn}", field = "ClientIP" }}
user_agent = {{ field = "ClientRequestUserAgent" }}"#
    );
    let OperatorConfig::Enrich(full_config) =
        toml::from_str::<OperatorConfig>(&full).expect("toml")
    else {
        panic!("not enrich")
    };
    let configs: [&EnrichConfig; 1] = [&full_config];
    let resources = Resources::load(&configs, &|path: &str| {
        std::fs::read(testdata(path))
            .map(ResourceData::from)
            .map_err(|e| e.to_string())
    })
    .expect("load");
    weir_operators::enrich::warm_up().expect("uap rules");
    println!(
        "enrich bench: {BATCHES} batches x {ROWS} rows, Zipf(1) over {DISTINCT_IPS} IPs and {DISTINCT_UAS} user agents, setup {:.1}s",
        setup.elapsed().as_secs_f64()
    );

    let mut baseline_chain = Chain::empty(schema());
    let (rows, elapsed) = run(
        |batch| std::hint::black_box(baseline_chain.process(batch).expect("chain")).num_rows(),
        &batches,
    );
    let baseline = rows as f64 / elapsed.as_secs_f64();
    println!(
        "{:<44} {:>12.0} rows/s",
        "baseline: pass-through chain", baseline
    );

    let cases = [
        ("geoip + asn + user_agent", full.clone()),
        (
            "geoip only",
            format!("type = \"enrich\"\ngeoip = {{ database = \"{geo}\", field = \"ClientIP\" }}"),
        ),
        (
            "asn only",
            format!("type = \"enrich\"\nasn = {{ database = \"{asn}\", field = \"ClientIP\" }}"),
        ),
        (
            "user_agent only",
            "type = \"enrich\"\nuser_agent = { field = \"ClientRequestUserAgent\" }".to_owned(),
        ),
        (
            "derive (template, query keys, status, domain)",
            "type = \"enrich\"\nderive = { path_template = { field = \"ClientRequestPath\" }, query_keys = { field = \"ClientRequestPath\" }, status_class = { field = \"EdgeResponseStatus\" }, registrable_domain = { field = \"ClientRequestHost\" } }".to_owned(),
        ),
    ];
    for (label, toml_text) in cases {
        let outcome = bench_operator(&toml_text, &resources, &batches);
        let mut line = format!("{label:<44} {:>12.0} rows/s", outcome.rows_per_second());
        for part in ["geoip", "asn", "user_agent"] {
            let hits = counter(&outcome.metrics, "enrich_cache_hits_total", part);
            let misses = counter(&outcome.metrics, "enrich_cache_misses_total", part);
            if hits + misses > 0 {
                line.push_str(&format!(
                    "  {part} hit {:.1}%",
                    100.0 * hits as f64 / (hits + misses) as f64
                ));
            }
        }
        if label.starts_with("geoip + asn") {
            let found = outcome
                .metrics
                .iter()
                .filter(|m| {
                    m.name == "enrich_ip_lookups_total"
                        && m.labels.iter().any(|(_, v)| v == "found")
                })
                .map(|m| m.value)
                .sum::<u64>();
            line.push_str(&format!(
                "  ({:.1} ns/row, {:.2}x baseline time, {:.0}% of ip lookups found)",
                1e9 / outcome.rows_per_second(),
                baseline / outcome.rows_per_second(),
                100.0 * found as f64 / (2 * (outcome.rows + (BATCHES * ROWS) as u64)) as f64
            ));
        }
        println!("{line}");
    }
}
