//! The compiled decoder against the arrow-json decoder (the oracle): generated records for
//! every built-in schema and every field type, good, odd and malformed, must give the same
//! batch (schema, values, nulls) and the same rejects (index, kind, reason) from both.
//!
//! The generator is seeded (ChaCha8 from fixed seeds), so every run checks the same records;
//! `WEIR_ORACLE_SEEDS=N` (and `WEIR_ORACLE_FIRST_SEED=S`) widen the search locally.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::schema::{FieldDef, FieldType};
use crate::*;

struct Gen {
    rng: ChaCha8Rng,
}

const UNKNOWN_KEYS: &[&str] = &[
    "Mystery",
    "we\\\"ird",
    "\\u00e9t\\u00e9",
    "emoji\\ud83d\\ude00",
    "tab\\tkey",
    "x",
    "_extra",
];

const STRINGS: &[&str] = &[
    "",
    "plain",
    "GET",
    "https://example.com/a?b=c&d=e",
    "quote \\\" backslash \\\\ slash \\/",
    "ctl \\b\\f\\n\\r\\t",
    "\\u0041\\u00e9\\u4e2d\\u0000",
    "pair \\ud83d\\ude00 end",
    "\\uD83D\\uDE00",
    "lone \\ud800 high",
    "lone \\udc00 low",
    "high then other \\ud83d\\u0041",
    "raw é 中 😀",
    "1714564800",
    "-0",
    "+5",
    " 7",
    "12a",
    "2024-05-01T12:00:00.123456789Z",
    "2024-05-01T14:00:00+02:00",
    "2024-05-01 12:00:00",
    "2300-01-01T00:00:00Z",
    "1714564800.5",
    "true",
    "null",
];

const NUMBERS: &[&str] = &[
    "0",
    "-0",
    "1",
    "-1",
    "42",
    "13335",
    "1714564800",
    "1714564800123",
    "1714564800123456",
    "1714564800123456789",
    "9223372036854775807",
    "-9223372036854775808",
    "9223372036854775808",
    "18446744073709551616",
    "99999999999999999999999",
    "1.5",
    "-2.75",
    "0.1",
    "1e3",
    "1E400",
    "-1e-400",
    "2.5e-7",
    "1714564800.123456789",
    "123456789012345678901234567890",
    "0.30000000000000004",
    "1.7976931348623157e308",
];

impl Gen {
    fn chance(&mut self, p: f64) -> bool {
        self.rng.random_bool(p)
    }

    fn pick<'a>(&mut self, items: &'a [&'a str]) -> &'a str {
        items[self.rng.random_range(0..items.len())]
    }

    fn string(&mut self) -> String {
        format!("\"{}\"", self.pick(STRINGS))
    }

    fn number(&mut self) -> String {
        if self.chance(0.5) {
            self.pick(NUMBERS).to_owned()
        } else {
            let v: i64 = self.rng.random_range(-1_000_000..1_000_000_000_000);
            if self.chance(0.3) {
                format!("{}.{}", v, self.rng.random_range(0..1000))
            } else {
                v.to_string()
            }
        }
    }

    /// Any JSON value, nested up to `depth`.
    fn any(&mut self, depth: u32) -> String {
        let choice = self.rng.random_range(0..if depth == 0 { 5 } else { 7 });
        match choice {
            0 => "null".into(),
            1 => self.pick(&["true", "false"]).into(),
            2 => self.number(),
            3 | 4 => self.string(),
            5 => {
                let n = self.rng.random_range(0..4);
                let items: Vec<String> = (0..n).map(|_| self.any(depth - 1)).collect();
                format!("[{}]", items.join(self.pick(&[",", ", ", " ,\n"])))
            }
            _ => {
                let n = self.rng.random_range(0..4);
                let items: Vec<String> = (0..n)
                    .map(|_| {
                        let key = if self.chance(0.5) {
                            self.pick(UNKNOWN_KEYS).to_owned()
                        } else {
                            format!("k{}", self.rng.random_range(0..3))
                        };
                        format!("\"{key}\":{}", self.any(depth - 1))
                    })
                    .collect();
                format!("{{{}}}", items.join(","))
            }
        }
    }

    fn deep(&mut self) -> String {
        let depth = self.rng.random_range(100..300);
        let open: String = (0..depth)
            .map(|i| if i % 2 == 0 { "[" } else { "{\"d\":" })
            .collect();
        let close: String = (0..depth)
            .rev()
            .map(|i| if i % 2 == 0 { "]" } else { "}" })
            .collect();
        format!("{open}1{close}")
    }

    /// A value for a field of this type: mostly fitting, sometimes null or of another type.
    fn value(&mut self, field_type: &FieldType, depth: u32) -> String {
        if self.chance(0.08) {
            return "null".into();
        }
        if self.chance(0.04) {
            return self.any(2);
        }
        match field_type {
            FieldType::Int => match self.rng.random_range(0..10) {
                0 => self.pick(NUMBERS).into(),
                1 => format!(
                    "\"{}\"",
                    self.pick(&["123", "-0", "+5", " 7", "007", "1.5", "x"])
                ),
                _ => self.rng.random_range(-5_000i64..5_000_000).to_string(),
            },
            FieldType::Float => match self.rng.random_range(0..6) {
                0 => self.pick(NUMBERS).into(),
                1 => format!("\"{}\"", self.pick(&["1.5", "nan", "inf", "x"])),
                _ => format!(
                    "{}",
                    self.rng.random_range(-1000.0f64..1000.0)
                        * 10f64.powi(self.rng.random_range(-8..8))
                ),
            },
            FieldType::Bool => self
                .pick(&["true", "false", "true", "\"true\"", "1"])
                .into(),
            FieldType::String => match self.rng.random_range(0..10) {
                0 => self.number(),
                1 => self.pick(&["true", "false"]).into(),
                _ => self.string(),
            },
            FieldType::Json => {
                if self.chance(0.05) {
                    self.deep()
                } else {
                    self.any(3)
                }
            }
            FieldType::Timestamp => match self.rng.random_range(0..8) {
                0 => format!("\"{}\"", self.pick(STRINGS)),
                1 => self.pick(NUMBERS).into(),
                2 => "true".into(),
                3 => format!("\"{}\"", self.rng.random_range(0i64..1_800_000_000_000)),
                _ => self
                    .rng
                    .random_range(1_600_000_000i64..1_800_000_000_000_000_000)
                    .to_string(),
            },
            FieldType::TimestampIn(_) => match self.rng.random_range(0..6) {
                0 => format!("\"{}\"", self.pick(STRINGS)),
                1 => self.pick(NUMBERS).into(),
                _ => self.rng.random_range(0i64..1_800_000_000_000).to_string(),
            },
            FieldType::List(inner) => {
                let n = self.rng.random_range(0..4);
                let items: Vec<String> = (0..n).map(|_| self.value(inner, depth + 1)).collect();
                format!("[{}]", items.join(","))
            }
            FieldType::Map(inner) => {
                let n = self.rng.random_range(0..4);
                let items: Vec<String> = (0..n)
                    .map(|_| {
                        let key = if self.chance(0.3) {
                            self.pick(UNKNOWN_KEYS).to_owned()
                        } else {
                            format!("h{}", self.rng.random_range(0..3))
                        };
                        format!("\"{key}\":{}", self.value(inner, depth + 1))
                    })
                    .collect();
                format!("{{{}}}", items.join(","))
            }
            FieldType::Struct(fields) => self.object(fields, depth + 1, None),
        }
    }

    /// An object with some of `fields` (and maybe unknown and duplicate keys).
    fn object(&mut self, fields: &[FieldDef], depth: u32, event_time: Option<&str>) -> String {
        let mut members = Vec::new();
        let density = self.rng.random_range(0.1..0.9);
        for field in fields {
            let wanted = match event_time {
                Some(name) if field.name == name => self.chance(0.93),
                _ => self.chance(density),
            };
            if !wanted || depth > 4 {
                continue;
            }
            let key = if self.chance(0.02) {
                // The same key, spelled with an escape.
                let mut chars = field.name.chars();
                let first = chars.next().expect("names are not empty");
                format!("\\u{:04x}{}", first as u32, chars.as_str())
            } else {
                field.name.clone()
            };
            members.push(format!(
                "\"{key}\":{}",
                self.value(&field.field_type, depth)
            ));
            if self.chance(0.01) {
                members.push(format!(
                    "\"{key}\":{}",
                    self.value(&field.field_type, depth)
                ));
            }
        }
        let unknown = self.rng.random_range(0..3);
        for _ in 0..unknown {
            if self.chance(0.5) {
                let key = self.pick(UNKNOWN_KEYS).to_owned();
                members.push(format!("\"{key}\":{}", self.any(3)));
            }
        }
        if members.len() > 1 && self.chance(0.5) {
            // Keys in another order than the schema's.
            let a = self.rng.random_range(0..members.len());
            let b = self.rng.random_range(0..members.len());
            members.swap(a, b);
        }
        let separator = self.pick(&[",", ",", ", ", " ,\n\t"]);
        format!("{{{}}}", members.join(separator))
    }

    fn record(&mut self, schema: &DatasetSchema) -> Vec<u8> {
        let mut text = self.object(&schema.fields, 0, Some(&schema.event_time));
        if self.chance(0.1) {
            text = format!(" \n{text}\t ");
        }
        let mut bytes = text.into_bytes();
        if self.chance(0.12) {
            self.spoil(&mut bytes);
        }
        bytes
    }

    /// Makes a record malformed in one of the ways messages arrive malformed.
    fn spoil(&mut self, bytes: &mut Vec<u8>) {
        match self.rng.random_range(0..10) {
            0 => {
                let at = self.rng.random_range(0..bytes.len());
                bytes.truncate(at);
            }
            1 => bytes.extend_from_slice(
                self.pick(&[" x", "}", "{}", "\n{\"a\":1}", ",", "  "])
                    .as_bytes(),
            ),
            2 => {
                let at = self.rng.random_range(0..bytes.len());
                bytes[at] = self.pick_byte(&[0xff, 0xc3, 0x80, 0xed]);
            }
            3 => {
                // Stray commas, which arrow-json's tokenizer skips.
                if let Some(at) = bytes.iter().position(|&b| b == b',') {
                    bytes.insert(at, b',');
                } else {
                    bytes.insert(1, b',');
                }
            }
            4 => {
                if let Some(at) = bytes.iter().rposition(|&b| b == b'}') {
                    bytes.insert(at, b',');
                }
            }
            5 => {
                *bytes = self.any(2).into_bytes();
            }
            6 => {
                *bytes = self
                    .pick(&[
                        "",
                        "   ",
                        "[1]",
                        "{}",
                        "{\"a\" 1}",
                        "{\"a\":}",
                        "{a:1}",
                        "{\"a\":01}",
                        "{\"a\":1.}",
                        "{\"a\":tru}",
                        "{\"a\":\"\u{1}\"}",
                    ])
                    .into();
            }
            7 => {
                // A number that is not JSON, in place of the first digit run.
                if let Some(at) = bytes.iter().position(u8::is_ascii_digit) {
                    bytes.insert(at, self.pick_byte(b"0+.-"));
                }
            }
            8 => {
                let at = self.rng.random_range(0..bytes.len());
                bytes.insert(at, self.pick_byte(&[b'"', b'\\', b'{', b'[', b':', 0x01]));
            }
            _ => {
                bytes.splice(0..0, b"{\"x\":1}".iter().copied());
            }
        }
    }

    fn pick_byte(&mut self, items: &[u8]) -> u8 {
        items[self.rng.random_range(0..items.len())]
    }
}

fn describe(records: &[Vec<u8>], index: usize) -> String {
    String::from_utf8_lossy(&records[index]).into_owned()
}

/// Decodes `records` with the oracle and with each compiled decoder, and compares everything.
fn compare(
    oracle: &mut BatchDecoder,
    compiled: &mut [BatchDecoder],
    records: &[Vec<u8>],
    context: &str,
) {
    let slices: Vec<&[u8]> = records.iter().map(Vec::as_slice).collect();
    if let Ok(dir) = std::env::var("WEIR_ORACLE_DUMP") {
        let path = format!("{dir}/{}.ndjson", context.replace(' ', "_"));
        std::fs::write(&path, records.join(&b"\x1e"[..])).expect("dump");
    }
    let expected = oracle.decode(&slices);
    for decoder in compiled {
        let actual = decoder.decode(&slices);
        let context = format!("{context} {:?}", decoder.engine());
        compare_one(&expected, &actual, records, &context);
    }
}

fn compare_one(expected: &Decoded, actual: &Decoded, records: &[Vec<u8>], context: &str) {
    for (e, a) in expected.rejects.iter().zip(&actual.rejects) {
        assert_eq!(
            e,
            a,
            "{context}: rejects differ at record {}: {}",
            e.index.min(a.index),
            describe(records, e.index.min(a.index))
        );
    }
    assert_eq!(
        expected.rejects.len(),
        actual.rejects.len(),
        "{context}: reject counts differ: {:?} vs {:?}",
        expected.rejects.get(actual.rejects.len()),
        actual.rejects.get(expected.rejects.len())
    );
    assert_eq!(expected.batch.schema(), actual.batch.schema(), "{context}");
    if expected.batch != actual.batch {
        // Find the first differing row and column for the message.
        let accepted = expected.accepted_indices(records.len());
        for (column, field) in expected.batch.schema().fields().iter().enumerate() {
            let e = expected.batch.column(column);
            let a = actual.batch.column(column);
            for (row, &index) in accepted.iter().enumerate() {
                if e.slice(row, 1) != a.slice(row, 1) {
                    panic!(
                        "{context}: column {} row {row} differs: {:?} vs {:?}\nrecord: {}",
                        field.name(),
                        e.slice(row, 1),
                        a.slice(row, 1),
                        describe(records, index)
                    );
                }
            }
            assert_eq!(e, a, "{context}: column {} differs", field.name());
        }
        panic!("{context}: batches differ");
    }
}

/// The oracle and one compiled decoder per parser.
fn decoders(schema: &DatasetSchema, options: DecoderOptions) -> (BatchDecoder, Vec<BatchDecoder>) {
    let oracle =
        BatchDecoder::with_engine(schema, options.clone(), DecoderEngine::ArrowJson).unwrap();
    let compiled = [
        DecoderEngine::CompiledSonic,
        DecoderEngine::CompiledSerdeJson,
    ]
    .into_iter()
    .map(|engine| BatchDecoder::with_engine(schema, options.clone(), engine).unwrap())
    .collect();
    (oracle, compiled)
}

#[test]
fn compiled_decoder_matches_the_arrow_json_oracle() {
    let seeds: u64 = std::env::var("WEIR_ORACLE_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(4);
    let first: u64 = std::env::var("WEIR_ORACLE_FIRST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    for name in DatasetSchema::builtin_names() {
        let schema = DatasetSchema::builtin(name).unwrap();
        for unknown_fields in [UnknownFields::Drop, UnknownFields::Extra] {
            let options = DecoderOptions {
                unknown_fields,
                max_record_bytes: 4096,
            };
            let (mut oracle, mut compiled) = decoders(&schema, options);
            for seed in first..first + seeds {
                let mut generator = Gen {
                    rng: ChaCha8Rng::seed_from_u64(seed),
                };
                // Batches of varied sizes through the same decoders, state carried over.
                for batch in 0..6 {
                    let size = generator.rng.random_range(0..80);
                    let records: Vec<Vec<u8>> =
                        (0..size).map(|_| generator.record(&schema)).collect();
                    let context = format!("{name} {unknown_fields:?} seed {seed} batch {batch}");
                    compare(&mut oracle, &mut compiled, &records, &context);
                }
            }
        }
    }
}

#[test]
fn synthetic_events_match_the_oracle() {
    use crate::synth::{DnsLogs, FirewallEvents, HttpRequests, WorkersTraceEvents};
    let sets: [(&str, Vec<Vec<u8>>); 5] = [
        ("http_requests", HttpRequests::new(7).take(300).collect()),
        (
            "http_requests",
            HttpRequests::new(8).compact(true).take(300).collect(),
        ),
        (
            "firewall_events",
            FirewallEvents::new(7).take(300).collect(),
        ),
        (
            "workers_trace_events",
            WorkersTraceEvents::new(7).take(300).collect(),
        ),
        ("dns_logs", DnsLogs::new(7).take(300).collect()),
    ];
    for (name, records) in sets {
        let schema = DatasetSchema::builtin(name).unwrap();
        for unknown_fields in [UnknownFields::Drop, UnknownFields::Extra] {
            let options = DecoderOptions {
                unknown_fields,
                ..DecoderOptions::default()
            };
            let (mut oracle, mut compiled) = decoders(&schema, options);
            compare(
                &mut oracle,
                &mut compiled,
                &records,
                &format!("{name} {unknown_fields:?} synthetic"),
            );
        }
    }
}

#[test]
fn a_stream_outside_the_fast_path_goes_to_the_oracle_whole() {
    let schema = DatasetSchema::builtin("dns_logs").unwrap();
    let (mut oracle, mut compiled) = decoders(&schema, DecoderOptions::default());
    // Floats in an integer column: every record needs the oracle's truncation rule; a few
    // good ones first, so the hand-over comes mid-batch.
    let records: Vec<Vec<u8>> = (0..200)
        .map(|i| {
            if i < 5 {
                format!(r#"{{"Timestamp":{i},"QueryType":{i}}}"#)
            } else {
                format!(r#"{{"Timestamp":{i},"QueryType":{i}.5}}"#)
            }
            .into_bytes()
        })
        .collect();
    for _ in 0..2 {
        compare(&mut oracle, &mut compiled, &records, "floats for ints");
    }
    for decoder in &compiled {
        assert_eq!(decoder.fallback_records(), 2 * 200);
    }
}

#[test]
fn hand_picked_edge_cases_match_the_oracle() {
    let cases: &[(&str, &[&str])] = &[
        (
            "dns_logs",
            &[
                r#"{"Timestamp":1,"QueryName":"a","QueryName":"b"}"#,
                r#"{"Timestamp":1,"Timestamp":2}"#,
                r#"{"Timestamp":1,,"QueryName":"a",}"#,
                r#"{"Timestamp":1.5e3}"#,
                r#"{"Timestamp":"1714564800"}"#,
                r#"{"Timestamp":-5}"#,
                r#"{"Timestamp":1,"QueryType":1.9}"#,
                r#"{"Timestamp":1,"QueryType":"12"}"#,
                r#"{"Timestamp":1,"QueryType":9223372036854775807}"#,
                r#"{"Timestamp":1,"QueryType":9223372036854775808}"#,
                r#"{"Timestamp":1,"QueryName":"\ud800"}"#,
                r#"{"Timestamp":1,"QueryName":"\ud83d\ude00"}"#,
                r#"{"Timestamp":1,"QueryName":1.50}"#,
                r#"{"Timestamp":1,"QueryName":-0}"#,
                r#"{"Timestamp":1,"QueryName":{"a":1}}"#,
                r#"{"Timestamp":1,"Other":01}"#,
                r#"{"Timestamp":1,"\u0051ueryName":"escaped key"}"#,
                r#"{"Timestamp":1,"Other":"\ud800"}"#,
                "{\"Timestamp\":1,\"QueryName\":\"tab\tinside\"}",
            ],
        ),
        (
            "workers_trace_events",
            &[
                r#"{"EventTimestampMs":1,"Logs":[{"message":["a"],"message":["b"]}]}"#,
                r#"{"EventTimestampMs":1,"Event":{"request":{"cf":{"a":[1,{"b":null}]}}}}"#,
                r#"{"EventTimestampMs":1,"Event":{"request":{"cf":null}},"Logs":[null,{"level":"x"}]}"#,
                r#"{"EventTimestampMs":1,"Event":"x"}"#,
                r#"{"EventTimestampMs":1,"Logs":{"message":1}}"#,
                r#"{"EventTimestampMs":1,"Event":{"scheduledTime":"2024-05-01T12:00:00Z"}}"#,
                r#"{"EventTimestampMs":1,"Event":{"scheduledTime":1.5}}"#,
                r#"{"EventTimestampMs":1,"Event":{"request":{"headers":{"a":"1","a":"2","b":3}}}}"#,
            ],
        ),
    ];
    for (name, records) in cases {
        let schema = DatasetSchema::builtin(name).unwrap();
        let records: Vec<Vec<u8>> = records.iter().map(|r| r.as_bytes().to_vec()).collect();
        for unknown_fields in [UnknownFields::Drop, UnknownFields::Extra] {
            let options = DecoderOptions {
                unknown_fields,
                ..DecoderOptions::default()
            };
            let (mut oracle, mut compiled) = decoders(&schema, options);
            compare(
                &mut oracle,
                &mut compiled,
                &records,
                &format!("{name} {unknown_fields:?} edge cases"),
            );
        }
    }
}

/// Instants are read as numbers until a column meets a decimal, then as raw text: both
/// ways must give the oracle's rows and rejects for the same values. The generated records
/// above flip their columns within the first few records, so each way is checked here on
/// its own, value by value, on both sides of the flip.
#[test]
fn instants_read_as_numbers_and_as_text_match_the_oracle() {
    const BY_MAGNITUDE: &[&str] = &[
        "0",
        "1",
        "-5",
        "99999999999",
        "100000000000",
        "99999999999999",
        "100000000000000",
        "99999999999999999",
        "100000000000000000",
        "1714564800123456789",
        "9223372036",
        "9223372037",
        "-9223372037",
        "9223372036854775807",
        "9223372036854775808",
        "18446744073709551615",
        "18446744073709551616",
        "-9223372036854775808",
        "-9223372036854775809",
        "\"1714564800\"",
        "\"-5\"",
        "\"2024-05-01T12:00:00.5Z\"",
        "\"1714564800.25\"",
        "\"x\"",
        "null",
        "true",
        "[1]",
    ];
    const FIXED: &[&str] = &[
        "0",
        "-1",
        "1714564800123",
        "999999999999999999",
        "1000000000000000000",
        "-999999999999999999",
        "-1000000000000000000",
        "9223372036854775807",
        "18446744073709551616",
        "\"1714564800123\"",
        "null",
        "false",
    ];
    struct Case {
        dataset: &'static str,
        record: fn(&str) -> String,
        values: &'static [&'static str],
        decimal: &'static str,
    }
    let cases = [
        Case {
            dataset: "dns_logs",
            record: |v| format!(r#"{{"QueryName":"a","Timestamp":{v}}}"#),
            values: BY_MAGNITUDE,
            decimal: "1714564800.5",
        },
        Case {
            dataset: "workers_trace_events",
            record: |v| format!(r#"{{"EventTimestampMs":1,"Event":{{"scheduledTime":{v}}}}}"#),
            values: FIXED,
            decimal: "1.5",
        },
    ];
    for Case {
        dataset: name,
        record,
        values,
        decimal,
    } in cases
    {
        let schema = DatasetSchema::builtin(name).unwrap();
        let records: Vec<Vec<u8>> = values.iter().map(|v| record(v).into_bytes()).collect();
        let (mut oracle, mut compiled) = decoders(&schema, DecoderOptions::default());
        let (oracle, compiled) = (&mut oracle, &mut compiled[..]);
        batch_then_alone(
            oracle,
            compiled,
            &records,
            values,
            &format!("{name} as numbers"),
        );
        let flip = record(decimal).into_bytes();
        compare(oracle, compiled, &[flip], &format!("{name} {decimal}"));
        batch_then_alone(
            oracle,
            compiled,
            &records,
            values,
            &format!("{name} as text"),
        );
    }
}

/// The records as one batch, then each alone, so that no other record's value masks it.
fn batch_then_alone(
    oracle: &mut BatchDecoder,
    compiled: &mut [BatchDecoder],
    records: &[Vec<u8>],
    values: &[&str],
    context: &str,
) {
    compare(oracle, compiled, records, context);
    for (value, record) in values.iter().zip(records) {
        let context = format!("{context}, {value} alone");
        compare(oracle, compiled, std::slice::from_ref(record), &context);
    }
}

#[test]
#[ignore = "debugging aid: WEIR_ORACLE_FILE=<dump> DATASET=<name>"]
fn replay_a_dump() {
    let path = std::env::var("WEIR_ORACLE_FILE").unwrap();
    let name = std::env::var("DATASET").unwrap();
    let bytes = std::fs::read(path).unwrap();
    let records: Vec<Vec<u8>> = bytes.split(|&b| b == 0x1e).map(<[u8]>::to_vec).collect();
    let schema = DatasetSchema::builtin(&name).unwrap();
    let options = DecoderOptions {
        unknown_fields: UnknownFields::Drop,
        max_record_bytes: 4096,
    };
    let (mut oracle, mut compiled) = decoders(&schema, options);
    for (i, record) in records.iter().enumerate() {
        let expected = oracle.decode(&[record]).rejects;
        for decoder in &mut compiled {
            let actual = decoder.decode(&[record]).rejects;
            if expected != actual {
                println!(
                    "alone {i}: {expected:?} vs {actual:?}\n{}",
                    String::from_utf8_lossy(record)
                );
            }
        }
    }
    compare(&mut oracle, &mut compiled, &records, "replay");
}
