//! Answers checked against the data's own publishers: MaxMind's test databases against the
//! JSON they were written from, the uap-core rules against uap-core's test cases.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, UInt32Type};
use arrow_array::{Array, ArrayRef, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use serde_json::Value;

use super::*;
use crate::config::StaticSecrets;
use crate::{BuildContext, Metric, Operator, OperatorConfig};

fn testdata(relative: &str) -> PathBuf {
    [env!("CARGO_MANIFEST_DIR"), "testdata", "enrich", relative]
        .iter()
        .collect()
}

fn read_testdata(relative: &str) -> Vec<u8> {
    std::fs::read(testdata(relative)).unwrap_or_else(|e| panic!("{relative}: {e}"))
}

const CITY: &str = "maxmind/GeoIP2-City-Test.mmdb";
const ASN: &str = "maxmind/GeoLite2-ASN-Test.mmdb";

/// Reads paths under `testdata/enrich/`, or from `extra` when named there.
fn reader(extra: BTreeMap<String, ResourceData>) -> impl Fn(&str) -> Result<ResourceData, String> {
    move |path: &str| {
        if let Some(data) = extra.get(path) {
            return Ok(data.clone());
        }
        std::fs::read(testdata(path))
            .map(ResourceData::from)
            .map_err(|e| e.to_string())
    }
}

fn http_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("ClientIP", DataType::Utf8, true),
        Field::new("ClientRequestUserAgent", DataType::Utf8, true),
        Field::new("ZoneName", DataType::Utf8, true),
        Field::new("ClientRequestPath", DataType::Utf8, true),
        Field::new("ClientRequestURI", DataType::Utf8, true),
        Field::new("ClientRequestHost", DataType::Utf8, true),
        Field::new("EdgeResponseStatus", DataType::Int64, true),
    ]))
}

/// A batch of `http_schema()` with the given IPs and user agents; other columns fixed.
fn http_batch(ips: &[Option<&str>], agents: &[Option<&str>]) -> RecordBatch {
    let rows = ips.len().max(agents.len());
    fn pick<'a>(values: &[Option<&'a str>], row: usize) -> Option<&'a str> {
        values.get(row).copied().flatten()
    }
    let ip: StringArray = (0..rows).map(|r| pick(ips, r)).collect();
    let agent: StringArray = (0..rows).map(|r| pick(agents, r)).collect();
    let constant = |value: &str| -> ArrayRef {
        Arc::new((0..rows).map(|_| Some(value)).collect::<StringArray>())
    };
    RecordBatch::try_new(
        http_schema(),
        vec![
            Arc::new(ip),
            Arc::new(agent),
            constant("example.com"),
            constant("/a/1"),
            constant("/a/1?x=1"),
            constant("www.example.com"),
            Arc::new(Int64Array::from(vec![200; rows])),
        ],
    )
    .unwrap()
}

fn parse_config(toml_text: &str) -> EnrichConfig {
    match toml::from_str::<OperatorConfig>(toml_text).unwrap() {
        OperatorConfig::Enrich(config) => config,
        other => panic!("not an enrich config: {other:?}"),
    }
}

fn build(
    config: &EnrichConfig,
    resources: &Resources,
) -> Result<Box<dyn Operator>, crate::OperatorError> {
    let secrets = StaticSecrets::default();
    let ctx = BuildContext {
        dataset: "http_requests",
        input_schema: http_schema(),
        secrets: &secrets,
        resources,
    };
    config.build(&ctx)
}

fn load(config: &EnrichConfig) -> Resources {
    Resources::load(&[config], &reader(BTreeMap::new())).unwrap()
}

fn text(batch: &RecordBatch, column: &str) -> Vec<Option<String>> {
    let array = batch
        .column_by_name(column)
        .unwrap_or_else(|| panic!("no column {column}"));
    array
        .as_string::<i32>()
        .iter()
        .map(|v| v.map(str::to_owned))
        .collect()
}

fn metric(metrics: &[Metric], name: &str, labels: &[(&str, &str)]) -> u64 {
    metrics
        .iter()
        .filter(|m| {
            m.name == name
                && labels
                    .iter()
                    .all(|(k, v)| m.labels.iter().any(|(mk, mv)| mk == k && mv == v))
        })
        .map(|m| m.value)
        .sum()
}

// ---------------------------------------------------------------------------------------
// MaxMind databases against their source JSON

/// A network from the source JSON: family, first and last address, prefix length, record.
struct Network {
    v6: bool,
    first: u128,
    last: u128,
    prefix: u32,
    record: Value,
}

fn networks(json: &str) -> Vec<Network> {
    let entries: Vec<BTreeMap<String, Value>> =
        serde_json::from_slice(&read_testdata(json)).unwrap();
    let mut out = Vec::new();
    for entry in entries {
        for (cidr, record) in entry {
            let (address, prefix) = cidr.split_once('/').unwrap();
            let prefix: u32 = prefix.parse().unwrap();
            let (v6, bits, base) = match address.parse::<IpAddr>().unwrap() {
                IpAddr::V4(v4) => (false, 32, u128::from(u32::from(v4))),
                IpAddr::V6(v6) => (true, 128, u128::from(v6)),
            };
            let host_bits = bits - prefix;
            let size_mask = if host_bits == 128 {
                u128::MAX
            } else {
                (1u128 << host_bits) - 1
            };
            out.push(Network {
                v6,
                first: base & !size_mask,
                last: base | size_mask,
                prefix,
                record,
            });
        }
    }
    out
}

fn to_ip(v6: bool, value: u128) -> IpAddr {
    if v6 {
        IpAddr::V6(value.into())
    } else {
        IpAddr::V4((value as u32).into())
    }
}

/// The record of the most specific network containing the address, as a database built
/// from these networks answers.
fn expected(all: &[Network], v6: bool, value: u128) -> Option<&Value> {
    all.iter()
        .filter(|n| n.v6 == v6 && n.first <= value && value <= n.last)
        .max_by_key(|n| n.prefix)
        .map(|n| &n.record)
}

/// First and last address of every network, plus addresses in no network.
fn probe_addresses(all: &[Network]) -> Vec<(bool, u128)> {
    let mut probes = Vec::new();
    for network in all {
        probes.push((network.v6, network.first));
        probes.push((network.v6, network.last));
    }
    for miss in ["10.0.0.1", "127.0.0.1", "255.255.255.254", "fd00::1", "::1"] {
        match miss.parse::<IpAddr>().unwrap() {
            IpAddr::V4(v4) => probes.push((false, u128::from(u32::from(v4)))),
            IpAddr::V6(v6) => probes.push((true, u128::from(v6))),
        }
    }
    probes
}

fn json_str<'a>(record: Option<&'a Value>, path: &[&str]) -> Option<&'a str> {
    let mut value = record?;
    for step in path {
        value = match step.parse::<usize>() {
            Ok(i) => value.get(i)?,
            Err(_) => value.get(step)?,
        };
    }
    value.as_str()
}

fn json_f64(record: Option<&Value>, path: &[&str]) -> Option<f64> {
    let mut value = record?;
    for step in path {
        value = value.get(step)?;
    }
    value.as_f64()
}

#[test]
fn geoip_city_answers_match_maxmind_source_data() {
    for (mmdb, json) in [
        (CITY, "maxmind/GeoIP2-City-Test.json"),
        (
            "maxmind/GeoIP2-Country-Test.mmdb",
            "maxmind/GeoIP2-Country-Test.json",
        ),
        (
            "maxmind/GeoLite2-City-Test.mmdb",
            "maxmind/GeoLite2-City-Test.json",
        ),
    ] {
        let config = parse_config(&format!(
            "type = \"enrich\"\ngeoip = {{ database = \"{mmdb}\", field = \"ClientIP\" }}"
        ));
        let resources = load(&config);
        let mut op = build(&config, &resources).unwrap();
        let all = networks(json);
        let probes = probe_addresses(&all);
        let ips: Vec<String> = probes
            .iter()
            .map(|&(v6, v)| to_ip(v6, v).to_string())
            .collect();
        let ip_refs: Vec<Option<&str>> = ips.iter().map(|s| Some(s.as_str())).collect();
        let out = op.process(http_batch(&ip_refs, &[])).unwrap();
        let columns: Vec<Vec<Option<String>>> = [
            "geo_country_code",
            "geo_country",
            "geo_subdivision",
            "geo_city",
            "geo_postal_code",
            "geo_time_zone",
        ]
        .iter()
        .map(|c| text(&out, c))
        .collect();
        let latitude = out
            .column_by_name("geo_latitude")
            .unwrap()
            .as_primitive::<Float64Type>()
            .clone();
        let longitude = out
            .column_by_name("geo_longitude")
            .unwrap()
            .as_primitive::<Float64Type>()
            .clone();
        let (mut v4, mut v6, mut misses, mut found) = (0, 0, 0, 0);
        for (row, &(is_v6, value)) in probes.iter().enumerate() {
            let record = expected(&all, is_v6, value);
            let want = [
                json_str(record, &["country", "iso_code"]),
                json_str(record, &["country", "names", "en"]),
                json_str(record, &["subdivisions", "0", "names", "en"]),
                json_str(record, &["city", "names", "en"]),
                json_str(record, &["postal", "code"]),
                json_str(record, &["location", "time_zone"]),
            ];
            for (column, want) in columns.iter().zip(want) {
                assert_eq!(column[row].as_deref(), want, "{mmdb} {}", ips[row]);
            }
            let got_lat = latitude.is_valid(row).then(|| latitude.value(row));
            let got_lon = longitude.is_valid(row).then(|| longitude.value(row));
            assert_eq!(
                got_lat,
                json_f64(record, &["location", "latitude"]),
                "{}",
                ips[row]
            );
            assert_eq!(
                got_lon,
                json_f64(record, &["location", "longitude"]),
                "{}",
                ips[row]
            );
            match (record.is_some(), is_v6) {
                (false, _) => misses += 1,
                (true, false) => v4 += 1,
                (true, true) => v6 += 1,
            }
            if want[0].is_some() {
                found += 1;
            }
        }
        assert!(
            v4 >= 4 && v6 >= 10 && misses >= 5 && found > 10,
            "{mmdb}: {v4} {v6} {misses}"
        );
    }
}

#[test]
fn asn_answers_match_maxmind_source_data() {
    let config = parse_config(&format!(
        "type = \"enrich\"\nasn = {{ database = \"{ASN}\", field = \"ClientIP\" }}"
    ));
    let resources = load(&config);
    let mut op = build(&config, &resources).unwrap();
    let all = networks("maxmind/GeoLite2-ASN-Test.json");
    let probes = probe_addresses(&all);
    let ips: Vec<String> = probes
        .iter()
        .map(|&(v6, v)| to_ip(v6, v).to_string())
        .collect();
    let ip_refs: Vec<Option<&str>> = ips.iter().map(|s| Some(s.as_str())).collect();
    let out = op.process(http_batch(&ip_refs, &[])).unwrap();
    let numbers = out
        .column_by_name("asn_number")
        .unwrap()
        .as_primitive::<UInt32Type>()
        .clone();
    let orgs = text(&out, "asn_org");
    let (mut v4, mut v6, mut misses) = (0, 0, 0);
    for (row, &(is_v6, value)) in probes.iter().enumerate() {
        let record = expected(&all, is_v6, value);
        let want_number = record
            .and_then(|r| r.get("autonomous_system_number"))
            .and_then(Value::as_u64)
            .map(|n| n as u32);
        let got_number = numbers.is_valid(row).then(|| numbers.value(row));
        assert_eq!(got_number, want_number, "{}", ips[row]);
        assert_eq!(
            orgs[row].as_deref(),
            json_str(record, &["autonomous_system_organization"]),
            "{}",
            ips[row]
        );
        match (record.is_some(), is_v6) {
            (false, _) => misses += 1,
            (true, false) => v4 += 1,
            (true, true) => v6 += 1,
        }
    }
    assert!(v4 > 10 && v6 > 10 && misses >= 5, "{v4} {v6} {misses}");
    let metrics = op.metrics();
    assert_eq!(
        metric(
            &metrics,
            "enrich_ip_lookups_total",
            &[("part", "asn"), ("outcome", "found")]
        ),
        (v4 + v6) as u64
    );
}

#[test]
fn geoip_and_asn_known_addresses() {
    let config = parse_config(&format!(
        r#"type = "enrich"
geoip = {{ database = "{CITY}", field = "ClientIP" }}
asn = {{ database = "{ASN}", field = "ClientIP", prefix = "net_" }}"#
    ));
    let resources = load(&config);
    let mut op = build(&config, &resources).unwrap();
    let out = op
        .process(http_batch(
            &[
                Some("81.2.69.160"),
                Some("2001:218::1"),
                Some("1.128.0.1"),
                Some("10.1.2.3"),
                Some("not-an-ip"),
                Some(""),
                None,
                Some("2a02:cf40::1"),
            ],
            &[],
        ))
        .unwrap();
    let countries = text(&out, "geo_country_code");
    assert_eq!(countries[0].as_deref(), Some("GB"));
    assert_eq!(text(&out, "geo_city")[0].as_deref(), Some("London"));
    assert_eq!(countries[1].as_deref(), Some("JP"));
    assert_eq!(text(&out, "net_org")[2].as_deref(), Some("Telstra Pty Ltd"));
    let orgs = text(&out, "net_org");
    assert!(countries[3..7].iter().all(Option::is_none));
    assert!(orgs[3..7].iter().all(Option::is_none));
    let metrics = op.metrics();
    let count = |part: &str, outcome: &str| {
        metric(
            &metrics,
            "enrich_ip_lookups_total",
            &[("part", part), ("outcome", outcome)],
        )
    };
    assert_eq!(count("geoip", "invalid_ip"), 2);
    assert_eq!(count("geoip", "null"), 1);
    // 10.1.2.3, and 2a02:cf40::1 which only the ASN database knows
    assert_eq!(count("geoip", "not_found"), 2);
    assert_eq!(count("asn", "invalid_ip"), 2);
    let versions = text(&out, VERSION_COLUMN);
    let version = versions[0].clone().unwrap();
    assert!(
        version.starts_with("geoip=GeoIP2-City@") && version.contains(";asn=GeoLite2-ASN@"),
        "{version}"
    );
    assert!(
        versions
            .iter()
            .all(|v| v.as_deref() == Some(version.as_str()))
    );
    assert_eq!(op.lineage()[0], ("enrich_version".to_owned(), version));
}

// ---------------------------------------------------------------------------------------
// User agents against uap-core's test cases

/// Runs one uap-core test file, returns (cases, misses listed as text).
fn uap_agreement(file: &str, answer: impl Fn(&str) -> Vec<Option<String>>) -> (usize, Vec<String>) {
    let text = String::from_utf8(read_testdata(file)).unwrap();
    let mut total = 0;
    let mut misses = Vec::new();
    for line in text.lines() {
        let row: Vec<Option<String>> = serde_json::from_str(line).unwrap();
        let agent = row[0].clone().unwrap();
        let want = &row[1..];
        let got = answer(&agent);
        total += 1;
        if got != want {
            misses.push(format!("{agent:?}: want {want:?}, got {got:?}"));
        }
    }
    (total, misses)
}

#[test]
fn user_agents_agree_with_uap_core_tests() {
    let extractor = ua::extractor().unwrap();
    let none_if_empty = |v: Option<&str>| v.filter(|s| !s.is_empty()).map(str::to_owned);
    let other = || Some("Other".to_owned());
    let results = [
        (
            "uap/test_ua.jsonl",
            uap_agreement("uap/test_ua.jsonl", |agent| {
                match extractor.ua.extract(agent) {
                    Some(v) => vec![
                        Some(v.family.to_string()),
                        none_if_empty(v.major),
                        none_if_empty(v.minor),
                        none_if_empty(v.patch),
                    ],
                    None => vec![other(), None, None, None],
                }
            }),
        ),
        (
            "uap/test_os.jsonl",
            uap_agreement("uap/test_os.jsonl", |agent| {
                match extractor.os.extract(agent) {
                    Some(v) => vec![
                        Some(v.os.to_string()),
                        none_if_empty(v.major.as_deref()),
                        none_if_empty(v.minor.as_deref()),
                        none_if_empty(v.patch.as_deref()),
                        none_if_empty(v.patch_minor.as_deref()),
                    ],
                    None => vec![other(), None, None, None, None],
                }
            }),
        ),
        (
            "uap/test_device.jsonl",
            uap_agreement("uap/test_device.jsonl", |agent| {
                match extractor.dev.extract(agent) {
                    Some(v) => vec![
                        Some(v.device.to_string()),
                        none_if_empty(v.brand.as_deref()),
                        none_if_empty(v.model.as_deref()),
                    ],
                    None => vec![other(), None, None],
                }
            }),
        ),
    ];
    let mut report = String::new();
    let mut failed = false;
    for (file, (total, misses)) in &results {
        let agreement = 1.0 - misses.len() as f64 / *total as f64;
        report.push_str(&format!(
            "{file}: {total} cases, {} misses, agreement {:.4}%\n",
            misses.len(),
            agreement * 100.0
        ));
        for miss in misses.iter().take(20) {
            report.push_str(&format!("  {miss}\n"));
        }
        failed |= agreement < 0.999 || *total < 100;
    }
    println!("{report}");
    assert!(!failed, "{report}");
}

#[test]
fn user_agent_columns_and_bad_values() {
    let config =
        parse_config("type = \"enrich\"\nuser_agent = { field = \"ClientRequestUserAgent\" }");
    let resources = Resources::default();
    let mut op = build(&config, &resources).unwrap();
    let chrome = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36";
    let iphone = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1";
    let out = op
        .process(http_batch(
            &[],
            &[
                Some(chrome),
                Some(iphone),
                Some(""),
                Some("   "),
                None,
                Some("zzz"),
                Some(chrome),
            ],
        ))
        .unwrap();
    assert_eq!(text(&out, "ua_browser")[0].as_deref(), Some("Chrome"));
    assert_eq!(text(&out, "ua_browser_major")[0].as_deref(), Some("120"));
    assert_eq!(text(&out, "ua_os")[0].as_deref(), Some("Windows"));
    assert_eq!(text(&out, "ua_os_major")[0].as_deref(), Some("10"));
    assert_eq!(text(&out, "ua_device")[0].as_deref(), Some("Other"));
    assert_eq!(
        text(&out, "ua_browser")[1].as_deref(),
        Some("Mobile Safari")
    );
    assert_eq!(text(&out, "ua_os")[1].as_deref(), Some("iOS"));
    assert_eq!(text(&out, "ua_device")[1].as_deref(), Some("iPhone"));
    for row in 2..5 {
        assert_eq!(text(&out, "ua_browser")[row], None);
    }
    assert_eq!(text(&out, "ua_browser")[5].as_deref(), Some("Other"));
    assert_eq!(
        text(&out, VERSION_COLUMN)[0].as_deref(),
        Some("ua=uap-core-0.18.0")
    );
    let metrics = op.metrics();
    assert_eq!(
        metric(
            &metrics,
            "enrich_user_agents_total",
            &[("outcome", "empty")]
        ),
        2
    );
    assert_eq!(
        metric(&metrics, "enrich_user_agents_total", &[("outcome", "null")]),
        1
    );
    assert_eq!(
        metric(
            &metrics,
            "enrich_cache_hits_total",
            &[("part", "user_agent")]
        ),
        1
    );
}

// ---------------------------------------------------------------------------------------
// Lookup tables

const ZONES_V1: &str = "zone,customer,plan,owner\nexample.com,Acme,enterprise,edge\nshop.test,Shop Ltd,pro,web\n00501.test,Zip Co,free,\n";
const ZONES_V2: &str =
    "zone,customer,plan,owner\nexample.com,Acme,business,edge\nshop.test,Shop Ltd,pro,web\n";

fn zone_config() -> EnrichConfig {
    parse_config(
        r#"type = "enrich"
lookup = [{ path = "s3://ref/zones.csv", key = ["ZoneName"], table_key = ["zone"], columns = ["customer", "plan"], prefix = "zone_", default = { plan = "none" } }]"#,
    )
}

fn zone_batch(zones: &[Option<&str>]) -> RecordBatch {
    let mut batch = http_batch(&vec![None; zones.len()], &[]);
    let zones: ArrayRef = Arc::new(zones.iter().copied().collect::<StringArray>());
    let mut columns = batch.columns().to_vec();
    columns[2] = zones;
    batch = RecordBatch::try_new(batch.schema(), columns).unwrap();
    batch
}

fn zones_resources(csv: &str) -> Result<Resources, ResourceError> {
    let config = zone_config();
    let extra = BTreeMap::from([(
        "s3://ref/zones.csv".to_owned(),
        ResourceData::from(csv.as_bytes().to_vec()),
    )]);
    Resources::load(&[&config], &reader(extra))
}

#[test]
fn lookup_table_adds_columns_with_defaults() {
    let config = zone_config();
    config.validate(&http_schema()).unwrap();
    let resources = zones_resources(ZONES_V1).unwrap();
    let mut op = build(&config, &resources).unwrap();
    let out = op
        .process(zone_batch(&[
            Some("example.com"),
            Some("nope.test"),
            None,
            Some("shop.test"),
        ]))
        .unwrap();
    assert_eq!(
        text(&out, "zone_customer"),
        vec![Some("Acme".into()), None, None, Some("Shop Ltd".into())]
    );
    assert_eq!(
        text(&out, "zone_plan"),
        vec![
            Some("enterprise".into()),
            Some("none".into()),
            Some("none".into()),
            Some("pro".into())
        ]
    );
    let version = text(&out, VERSION_COLUMN)[0].clone().unwrap();
    assert!(version.starts_with("lookup:zones=") && version.len() == "lookup:zones=".len() + 12);
    let metrics = op.metrics();
    assert_eq!(
        metric(
            &metrics,
            "enrich_lookup_rows_total",
            &[("outcome", "matched")]
        ),
        2
    );
    assert_eq!(
        metric(
            &metrics,
            "enrich_lookup_rows_total",
            &[("outcome", "missing")]
        ),
        1
    );
    assert_eq!(
        metric(
            &metrics,
            "enrich_lookup_rows_total",
            &[("outcome", "null_key")]
        ),
        1
    );
}

#[test]
fn lookup_table_from_record_batches_with_composite_key() {
    let config = parse_config(
        r#"type = "enrich"
lookup = [{ path = "/ref/owners.parquet", name = "owners", key = ["ZoneName", "EdgeResponseStatus"], table_key = ["zone", "status"], columns = ["team", "weight"], default = { weight = "-1" } }]"#,
    );
    let table = RecordBatch::try_new(
        Arc::new(Schema::new(vec![
            Field::new("zone", DataType::Utf8, false),
            Field::new("status", DataType::Int64, false),
            Field::new("team", DataType::Utf8, true),
            Field::new("weight", DataType::Int64, true),
        ])),
        vec![
            Arc::new(StringArray::from(vec!["example.com", "example.com"])),
            Arc::new(Int64Array::from(vec![200, 404])),
            Arc::new(StringArray::from(vec!["edge", "errors"])),
            Arc::new(Int64Array::from(vec![10, 20])),
        ],
    )
    .unwrap();
    let extra = BTreeMap::from([(
        "/ref/owners.parquet".to_owned(),
        ResourceData::Batches(vec![table.clone()]),
    )]);
    let resources = Resources::load(&[&config], &reader(extra)).unwrap();
    let mut op = build(&config, &resources).unwrap();
    let out = op
        .process(zone_batch(&[Some("example.com"), Some("other.com")]))
        .unwrap();
    assert_eq!(text(&out, "team"), vec![Some("edge".into()), None]);
    let weight = out.column_by_name("weight").unwrap();
    assert_eq!(weight.data_type(), &DataType::Int64);
    assert_eq!(
        weight
            .as_primitive::<arrow_array::types::Int64Type>()
            .values(),
        &[10, -1]
    );
    assert!(
        text(&out, VERSION_COLUMN)[0]
            .as_deref()
            .unwrap()
            .starts_with("lookup:owners=")
    );

    // Parquet bytes are the pipeline's to decode.
    let extra = BTreeMap::from([(
        "/ref/owners.parquet".to_owned(),
        ResourceData::from(b"PAR1....".to_vec()),
    )]);
    let error = Resources::load(&[&config], &reader(extra)).unwrap_err();
    assert!(
        error.to_string().contains("decoded by the pipeline"),
        "{error}"
    );
}

#[test]
fn lookup_files_that_cannot_be_used_are_refused() {
    let duplicate = "zone,customer,plan\nexample.com,A,x\nshop.test,B,y\nexample.com,C,z\n";
    let error = zones_resources(duplicate).unwrap_err();
    assert_eq!(
        error,
        ResourceError::DuplicateKey {
            path: "s3://ref/zones.csv".into(),
            key: "example.com".into(),
            first: 1,
            second: 3,
        }
    );
    assert!(error.to_string().contains("appears twice"));
    let error = zones_resources("zone,customer\nexample.com,A\n").unwrap_err();
    assert!(error.to_string().contains("no column \"plan\""), "{error}");
    let error = zones_resources("").unwrap_err();
    assert!(matches!(error, ResourceError::Table { .. }), "{error}");
    let error = zones_resources("zone,zone,plan\na,b,c\n").unwrap_err();
    assert!(error.to_string().contains("twice"), "{error}");
}

// ---------------------------------------------------------------------------------------
// Reload

#[test]
fn reload_swaps_data_under_a_running_operator() {
    let geo_path = "/data/GeoIP2-City.mmdb";
    let config = parse_config(&format!(
        r#"type = "enrich"
geoip = {{ database = "{geo_path}", field = "ClientIP" }}
lookup = [{{ path = "s3://ref/zones.csv", key = ["ZoneName"], table_key = ["zone"], columns = ["plan"] }}]"#
    ));
    let extra = BTreeMap::from([
        (geo_path.to_owned(), ResourceData::from(read_testdata(CITY))),
        (
            "s3://ref/zones.csv".to_owned(),
            ResourceData::from(ZONES_V1.as_bytes().to_vec()),
        ),
    ]);
    let resources = Resources::load(&[&config], &reader(extra)).unwrap();
    assert_eq!(
        resources.paths(),
        vec![geo_path.to_owned(), "s3://ref/zones.csv".to_owned()]
    );
    let mut op = build(&config, &resources).unwrap();
    let batch = || {
        let mut batch = zone_batch(&[Some("example.com")]);
        let mut columns = batch.columns().to_vec();
        columns[0] = Arc::new(StringArray::from(vec!["81.2.69.160"]));
        batch = RecordBatch::try_new(batch.schema(), columns).unwrap();
        batch
    };

    let before = op.process(batch()).unwrap();
    assert_eq!(text(&before, "geo_city")[0].as_deref(), Some("London"));
    assert_eq!(text(&before, "plan")[0].as_deref(), Some("enterprise"));
    let version_before = text(&before, VERSION_COLUMN)[0].clone().unwrap();

    // Country database instead of City: same address, no city any more.
    let country = resources
        .reload(
            geo_path,
            read_testdata("maxmind/GeoIP2-Country-Test.mmdb").into(),
        )
        .unwrap();
    assert_eq!(country.generation, 2);
    assert!(country.version.starts_with("GeoIP2-Country@"));
    let tables = resources
        .reload("s3://ref/zones.csv", ZONES_V2.as_bytes().to_vec().into())
        .unwrap();
    assert_eq!(tables.generation, 3);

    let after = op.process(batch()).unwrap();
    assert_eq!(text(&after, "geo_city")[0], None);
    assert_eq!(text(&after, "geo_country_code")[0].as_deref(), Some("GB"));
    assert_eq!(text(&after, "plan")[0].as_deref(), Some("business"));
    let version_after = text(&after, VERSION_COLUMN)[0].clone().unwrap();
    assert_ne!(version_before, version_after);
    assert!(
        version_after.contains(&format!("geoip={}", country.version)),
        "{version_after}"
    );
    assert!(version_after.contains(&format!("lookup:zones={}", tables.version)));
    assert_eq!(before.schema(), after.schema());

    // Corrupt replacements are refused and the current data stays.
    let city = read_testdata(CITY);
    let refusals: Vec<(&str, ResourceData)> = vec![
        (geo_path, city[..city.len() / 2].to_vec().into()),
        (geo_path, b"not a database".to_vec().into()),
        (geo_path, Vec::<u8>::new().into()),
        (geo_path, read_testdata(ASN).into()),
        (
            geo_path,
            read_testdata("maxmind/GeoIP2-City-Test-Invalid-Node-Count.mmdb").into(),
        ),
        (
            "s3://ref/zones.csv",
            b"zone,plan\na,x\na,y\n".to_vec().into(),
        ),
        (
            "s3://ref/zones.csv",
            b"zone,customer\na,x\n".to_vec().into(),
        ),
        ("/never/loaded.csv", b"zone,plan\n".to_vec().into()),
    ];
    let mut refused = 0;
    for (path, data) in refusals {
        match resources.reload(path, data) {
            Err(error) => {
                assert_eq!(error.path(), path);
                refused += 1;
            }
            Ok(version) => panic!("{path}: accepted {version:?}"),
        }
    }
    assert_eq!(refused, 8);
    let still = op.process(batch()).unwrap();
    assert_eq!(
        text(&still, VERSION_COLUMN)[0].as_deref(),
        Some(version_after.as_str())
    );
    assert_eq!(text(&still, "plan")[0].as_deref(), Some("business"));
    let metrics = resources.metrics();
    assert_eq!(
        metric(
            &metrics,
            "enrich_resource_reloads_total",
            &[("result", "ok")]
        ),
        2
    );
    assert_eq!(
        metric(
            &metrics,
            "enrich_resource_reloads_total",
            &[("result", "error")]
        ),
        8
    );
    let lineage = op.lineage();
    assert_eq!(lineage[0].1, version_after);
    assert!(lineage[1].1.contains(&version_before) && lineage[1].1.contains(&version_after));
}

#[test]
fn reload_is_atomic_for_concurrent_batches() {
    let config = zone_config();
    let resources = zones_resources(ZONES_V1).unwrap();
    let mut op = build(&config, &resources).unwrap();
    let reloader = {
        let resources = resources.clone();
        std::thread::spawn(move || {
            for i in 0..50 {
                let csv = if i % 2 == 0 { ZONES_V2 } else { ZONES_V1 };
                resources
                    .reload("s3://ref/zones.csv", csv.as_bytes().to_vec().into())
                    .unwrap();
            }
        })
    };
    let batch = zone_batch(&vec![Some("example.com"); 500]);
    for _ in 0..50 {
        let out = op.process(batch.clone()).unwrap();
        // every row of one batch comes from one version
        let plans = text(&out, "zone_plan");
        let versions = text(&out, VERSION_COLUMN);
        assert!(plans.iter().all(|p| p == &plans[0]));
        assert!(versions.iter().all(|v| v == &versions[0]));
    }
    reloader.join().unwrap();
}

// ---------------------------------------------------------------------------------------
// Config and start-up refusals

#[test]
fn missing_database_is_refused_at_start() {
    let config = parse_config(
        "type = \"enrich\"\ngeoip = { database = \"/data/missing.mmdb\", field = \"ClientIP\" }",
    );
    config.validate(&http_schema()).unwrap();
    let error = Resources::load(&[&config], &reader(BTreeMap::new())).unwrap_err();
    assert!(matches!(error, ResourceError::Read { .. }), "{error}");
    assert!(
        error
            .to_string()
            .starts_with("/data/missing.mmdb: cannot read"),
        "{error}"
    );
    // built without loading: a clear error, not silent nulls
    let error = build(&config, &Resources::default()).err().unwrap();
    assert!(error.to_string().contains("is not loaded"), "{error}");
}

#[test]
fn config_errors_name_the_key() {
    let schema = http_schema();
    let cases = [
        ("type = \"enrich\"", "type"),
        (
            "type = \"enrich\"\ngeoip = { database = \"x\", field = \"Nope\" }",
            "geoip.field",
        ),
        (
            "type = \"enrich\"\ngeoip = { database = \"x\", field = \"EdgeResponseStatus\" }",
            "geoip.field",
        ),
        (
            "type = \"enrich\"\ngeoip = { database = \"\", field = \"ClientIP\" }",
            "geoip.database",
        ),
        (
            "type = \"enrich\"\nasn = { database = \"x\", field = \"ClientIP\", cache_size = 0 }",
            "asn.cache_size",
        ),
        (
            "type = \"enrich\"\nlookup = [{ path = \"z.csv\", key = [\"ZoneName\"], columns = [\"IP\"], prefix = \"Client\" }]",
            "lookup[0].prefix",
        ),
        (
            "type = \"enrich\"\nlookup = [{ path = \"z.csv\", key = [\"ZoneName\"], columns = [\"a\"], default = { b = \"1\" } }]",
            "lookup[0].default",
        ),
        (
            "type = \"enrich\"\nlookup = [{ path = \"z.csv\", key = [\"ZoneName\"], table_key = [\"a\", \"b\"], columns = [\"a\"] }]",
            "lookup[0].table_key",
        ),
        (
            "type = \"enrich\"\nderive = { status_class = { field = \"ClientIP\", name = \"ua_os\" } }\nuser_agent = { field = \"ClientRequestUserAgent\" }",
            "derive.status_class.name",
        ),
    ];
    for (toml_text, key) in cases {
        let error = parse_config(toml_text).validate(&schema).unwrap_err();
        assert_eq!(error.key, key, "{toml_text}: {error}");
        assert!(!error.reason.ends_with('.'));
    }
    assert!(
        toml::from_str::<OperatorConfig>(
            "type = \"enrich\"\ngeoip = { database = \"x\", field = \"ClientIP\", colour = 1 }"
        )
        .is_err()
    );
}

// ---------------------------------------------------------------------------------------
// Derived fields, determinism

#[test]
fn derived_fields() {
    let config = parse_config(
        r#"type = "enrich"
derive = { path_template = { field = "ClientRequestPath" }, query_keys = { field = "ClientRequestURI" }, status_class = { field = "EdgeResponseStatus" }, registrable_domain = { field = "ClientRequestHost", name = "site" } }"#,
    );
    let resources = Resources::default();
    let mut op = build(&config, &resources).unwrap();
    let out = op.process(http_batch(&[None], &[])).unwrap();
    assert_eq!(text(&out, "url_template")[0].as_deref(), Some("/a/:id"));
    assert_eq!(text(&out, "query_keys")[0].as_deref(), Some("x"));
    assert_eq!(text(&out, "status_class")[0].as_deref(), Some("2xx"));
    assert_eq!(text(&out, "site")[0].as_deref(), Some("example.com"));
    assert_eq!(text(&out, VERSION_COLUMN)[0].as_deref(), Some("derive"));
    assert_eq!(out.schema(), op.output_schema(&http_schema()).unwrap());
}

#[test]
fn cache_size_never_changes_answers() {
    let make = |cache: usize| {
        parse_config(&format!(
            r#"type = "enrich"
geoip = {{ database = "{CITY}", field = "ClientIP", cache_size = {cache} }}
asn = {{ database = "{ASN}", field = "ClientIP", cache_size = {cache} }}
user_agent = {{ field = "ClientRequestUserAgent", cache_size = {cache} }}"#
        ))
    };
    let ips = [
        "81.2.69.160",
        "1.128.0.1",
        "2001:218::1",
        "bad",
        "81.2.69.160",
        "10.0.0.1",
    ];
    let agents = [
        "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0",
        "curl/8.4.0",
    ];
    let ip_col: Vec<Option<&str>> = (0..300).map(|i| Some(ips[(i * 7) % ips.len()])).collect();
    let ua_col: Vec<Option<&str>> = (0..300)
        .map(|i| Some(agents[(i * 3) % agents.len()]))
        .collect();
    let batch = http_batch(&ip_col, &ua_col);
    let run = |cache: usize| {
        let config = make(cache);
        let resources = load(&config);
        let mut op = build(&config, &resources).unwrap();
        (
            op.process(batch.clone()).unwrap(),
            op.process(batch.clone()).unwrap(),
        )
    };
    let small = run(1);
    let large = run(1 << 20);
    assert_eq!(small, large);
}
