use arrow_array::cast::AsArray;
use arrow_array::types::{Int64Type, TimestampMillisecondType, TimestampNanosecondType};
use arrow_array::{Array, RecordBatch};
use arrow_schema::{DataType, TimeUnit};

use crate::*;

fn decoder(name: &str, unknown_fields: UnknownFields) -> BatchDecoder {
    let schema = DatasetSchema::builtin(name).unwrap();
    BatchDecoder::new(
        &schema,
        DecoderOptions {
            unknown_fields,
            ..DecoderOptions::default()
        },
    )
    .unwrap()
}

fn decode(decoder: &mut BatchDecoder, records: &[&str]) -> Decoded {
    let bytes: Vec<&[u8]> = records.iter().map(|r| r.as_bytes()).collect();
    let decoded = decoder.decode(&bytes);
    assert_eq!(
        decoded.batch.num_rows() + decoded.rejects.len(),
        records.len()
    );
    decoded
}

fn kinds(decoded: &Decoded) -> Vec<(usize, DecodeErrorKind)> {
    decoded
        .rejects
        .iter()
        .map(|r| (r.index, r.error.kind))
        .collect()
}

fn strings(batch: &RecordBatch, column: &str) -> Vec<Option<String>> {
    let array = batch.column_by_name(column).unwrap().as_string::<i32>();
    array.iter().map(|v| v.map(str::to_owned)).collect()
}

fn nanos(batch: &RecordBatch, column: &str) -> Vec<Option<i64>> {
    let array = batch.column_by_name(column).unwrap();
    array
        .as_primitive::<TimestampNanosecondType>()
        .iter()
        .collect()
}

#[test]
fn every_builtin_schema_loads() {
    for name in DatasetSchema::builtin_names() {
        let schema = DatasetSchema::builtin(name).unwrap();
        assert_eq!(&schema.name, name);
        let arrow = schema.arrow_schema(UnknownFields::Drop);
        let event_time = arrow.field_with_name(&schema.event_time).unwrap();
        assert_eq!(
            event_time.data_type(),
            &DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into()))
        );
        assert!(!event_time.is_nullable());
        assert!(
            schema.fields.iter().all(|f| !f.description.is_empty()),
            "{name}"
        );
        let extra = schema.arrow_schema(UnknownFields::Extra);
        assert_eq!(extra.fields().len(), arrow.fields().len() + 1);
        BatchDecoder::new(&schema, DecoderOptions::default()).unwrap();
        // The file format round-trips.
        let text = serde_json::to_string(&schema).unwrap();
        assert_eq!(DatasetSchema::from_json(&text).unwrap(), schema);
    }
    let counts: Vec<usize> = DatasetSchema::builtin_names()
        .iter()
        .map(|n| DatasetSchema::builtin(n).unwrap().fields.len())
        .collect();
    assert_eq!(counts, [108, 43, 13, 9]);
    let http = DatasetSchema::builtin("http_requests").unwrap();
    assert_eq!(
        http.field("EdgeEndTimestamp").unwrap().field_type,
        FieldType::Timestamp
    );
    assert!(matches!(
        DatasetSchema::builtin("nope"),
        Err(SchemaError::UnknownBuiltin(_))
    ));
}

#[test]
fn resolve_reads_a_file_when_not_builtin() {
    let dir = std::env::temp_dir().join(format!("weir-schemas-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("orders.json");
    std::fs::write(
        &path,
        r#"{"name":"orders","version":2,"event_time":"At",
            "fields":[{"name":"At","type":"timestamp"},{"name":"Total","type":"float"}]}"#,
    )
    .unwrap();
    let schema = DatasetSchema::resolve(path.to_str().unwrap()).unwrap();
    assert_eq!(schema.name, "orders");
    assert_eq!(schema.version, 2);
    // A path is reported as a file that cannot be read.
    let missing = DatasetSchema::resolve(dir.join("missing.json").to_str().unwrap()).unwrap_err();
    assert!(matches!(missing, SchemaError::Io { .. }), "{missing}");
    // A misspelt built-in name says which names there are.
    let misspelt = DatasetSchema::resolve("http_request")
        .unwrap_err()
        .to_string();
    assert!(
        misspelt.contains("no built-in schema is named http_request")
            && misspelt.contains("http_requests, "),
        "{misspelt}"
    );
    // A path that exists but cannot be read as a file is still reported as such.
    assert!(matches!(
        DatasetSchema::resolve(dir.to_str().unwrap()),
        Err(SchemaError::Io { .. })
    ));
    assert_eq!(DatasetSchema::resolve("dns_logs").unwrap().name, "dns_logs");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn invalid_schema_files_say_why() {
    let cases = [
        (
            r#"{"name":"x","version":1,"event_time":"t","fields":[{"name":"t","type":"integer"}]}"#,
            "unknown type \"integer\"",
        ),
        (
            r#"{"name":"x","version":1,"event_time":"t","fields":[{"name":"t","type":"timestamp"},{"name":"t","type":"int"}]}"#,
            "duplicate field t",
        ),
        (
            r#"{"name":"x","version":1,"event_time":"t","fields":[{"name":"t","type":"int"}]}"#,
            "must have type \"timestamp\"",
        ),
        (
            r#"{"name":"x","version":1,"event_time":"u","fields":[{"name":"t","type":"timestamp"}]}"#,
            "is not a field",
        ),
        (
            r#"{"name":"x","version":1,"event_time":"t","fields":[{"name":"t","type":"timestamp","colour":1}]}"#,
            "unknown field `colour`",
        ),
        (
            r#"{"name":"x","version":1,"event_time":"t","fields":[{"name":"t","type":"timestamp"},{"name":"s","type":{"struct":[{"name":"a","type":"int"},{"name":"a","type":"int"}]}}]}"#,
            "duplicate field s.a",
        ),
        (
            r#"{"name":"x","version":1,"event_time":"t","fields":[{"name":"t","type":"timestamp"},{"name":"s","type":{"struct":[{"name":"a","type":"timestamp"}]}}]}"#,
            "only allowed for top-level",
        ),
        (
            r#"{"name":"x","version":1,"event_time":"t","fields":[{"name":"t","type":"timestamp"},{"name":"l","type":{"list":"json"}}]}"#,
            "only allowed for struct fields",
        ),
        (
            r#"{"name":"x","version":1,"event_time":"t","fields":[{"name":"t","type":"timestamp"},{"name":"_extra","type":"int"}]}"#,
            "reserved",
        ),
        (
            r#"{"name":"a/b","version":1,"event_time":"t","fields":[{"name":"t","type":"timestamp"}]}"#,
            "dataset name",
        ),
        (
            r#"{"name":"x","version":0,"event_time":"t","fields":[{"name":"t","type":"timestamp"}]}"#,
            "version",
        ),
    ];
    for (text, expected) in cases {
        let error = DatasetSchema::from_json(text).unwrap_err().to_string();
        assert!(
            error.contains(expected),
            "{error} should contain {expected}"
        );
    }
}

#[test]
fn every_timestamp_form_gives_the_same_instant_with_ns_precision() {
    let mut decoder = decoder("dns_logs", UnknownFields::Drop);
    let forms = [
        r#"{"Timestamp":1714564800123456789,"QueryName":"a"}"#,
        r#"{"Timestamp":"1714564800123456789"}"#,
        r#"{"Timestamp":"2024-05-01T12:00:00.123456789Z"}"#,
        r#"{"Timestamp":"2024-05-01T13:00:00.123456789+01:00"}"#,
        r#"{"Timestamp":1714564800.123456789}"#,
    ];
    let decoded = decode(&mut decoder, &forms);
    assert!(decoded.rejects.is_empty(), "{:?}", decoded.rejects);
    assert!(
        nanos(&decoded.batch, "Timestamp")
            .iter()
            .all(|t| *t == Some(1_714_564_800_123_456_789))
    );

    let coarse = [
        r#"{"Timestamp":1714564800}"#,
        r#"{"Timestamp":"1714564800"}"#,
        r#"{"Timestamp":1714564800000}"#,
        r#"{"Timestamp":1714564800000000}"#,
        r#"{"Timestamp":1714564800000000000}"#,
        r#"{"Timestamp":"2024-05-01T12:00:00Z"}"#,
    ];
    let decoded = decode(&mut decoder, &coarse);
    assert!(decoded.rejects.is_empty(), "{:?}", decoded.rejects);
    assert!(
        nanos(&decoded.batch, "Timestamp")
            .iter()
            .all(|t| *t == Some(1_714_564_800_000_000_000))
    );
}

#[test]
fn other_timestamp_fields_are_normalised_too() {
    let mut decoder = decoder("http_requests", UnknownFields::Drop);
    let decoded = decode(
        &mut decoder,
        &[
            r#"{"EdgeStartTimestamp":1714564800000000001,"EdgeEndTimestamp":"2024-05-01T12:00:01Z"}"#,
            r#"{"EdgeStartTimestamp":1714564800,"EdgeEndTimestamp":null}"#,
            r#"{"EdgeStartTimestamp":1714564800,"EdgeEndTimestamp":"soon"}"#,
        ],
    );
    assert_eq!(kinds(&decoded), [(2, DecodeErrorKind::WrongType)]);
    assert_eq!(
        nanos(&decoded.batch, "EdgeEndTimestamp"),
        [Some(1_714_564_801_000_000_000), None]
    );
    assert_eq!(
        nanos(&decoded.batch, "EdgeStartTimestamp"),
        [
            Some(1_714_564_800_000_000_001),
            Some(1_714_564_800_000_000_000)
        ]
    );
}

#[test]
fn maps_and_lists_decode() {
    let mut decoder = decoder("http_requests", UnknownFields::Drop);
    let decoded = decode(
        &mut decoder,
        &[
            r#"{"EdgeStartTimestamp":1714564800,"RequestHeaders":{"accept":"*/*","x-n":7},
             "BotDetectionIDs":[1,2,3],"BotTags":["api"],"CacheReserveUsed":true,
             "EdgeResponseCompressionRatio":1.5,"ClientASN":"13335"}"#,
        ],
    );
    assert!(decoded.rejects.is_empty(), "{:?}", decoded.rejects);
    let batch = &decoded.batch;
    let headers = batch.column_by_name("RequestHeaders").unwrap().as_map();
    let keys = headers.keys().as_string::<i32>();
    let values = headers.values().as_string::<i32>();
    assert_eq!(keys.value(0), "accept");
    assert_eq!(values.value(1), "7");
    let ids = batch
        .column_by_name("BotDetectionIDs")
        .unwrap()
        .as_list::<i32>();
    assert_eq!(
        ids.value(0).as_primitive::<Int64Type>().values(),
        &[1, 2, 3]
    );
    let asn = batch
        .column_by_name("ClientASN")
        .unwrap()
        .as_primitive::<Int64Type>();
    assert_eq!(asn.value(0), 13335);
}

const WORKER_EVENT: &str = r#"{"EventTimestampMs":1714564800123,"EventType":"fetch","Outcome":"ok",
    "Event":{"request":{"url":"https://example.com/a","method":"GET","headers":{"accept":"*/*"},
             "cf":{"colo":"AMS","tlsVersion":"TLSv1.3","botManagement":{"score":30}}},
             "response":{"status":200}},
    "Logs":[{"level":"log","message":["hello",{"n":1}],"timestamp":1714564800124},
            {"level":"warn","message":["careful"],"timestamp":1714564800125}],
    "Exceptions":[],"ScriptTags":["prod"],"ScriptVersion":{"id":"v1"},"CPUTimeMs":3,"WallTimeMs":9}"#;

#[test]
fn structs_and_json_fields_decode() {
    let mut decoder = decoder("workers_trace_events", UnknownFields::Drop);
    let decoded = decode(
        &mut decoder,
        &[
            WORKER_EVENT,
            r#"{"EventTimestampMs":1714564800200,"EventType":"scheduled",
                "Event":{"cron":"*/5 * * * *","scheduledTime":1714564800000},"Logs":null}"#,
            r#"{"EventTimestampMs":1714564800300,"Logs":[{"level":"error","message":[1,true]}]}"#,
        ],
    );
    assert!(decoded.rejects.is_empty(), "{:?}", decoded.rejects);
    let batch = &decoded.batch;
    assert_eq!(
        nanos(batch, "EventTimestampMs")[0],
        Some(1_714_564_800_123_000_000)
    );

    let event = batch.column_by_name("Event").unwrap().as_struct();
    let request = event.column_by_name("request").unwrap().as_struct();
    let cf = request.column_by_name("cf").unwrap().as_string::<i32>();
    assert_eq!(
        cf.value(0),
        r#"{"colo":"AMS","tlsVersion":"TLSv1.3","botManagement":{"score":30}}"#
    );
    assert!(cf.is_null(1) && cf.is_null(2));
    let url = request.column_by_name("url").unwrap().as_string::<i32>();
    assert_eq!(url.value(0), "https://example.com/a");
    let status = event
        .column_by_name("response")
        .unwrap()
        .as_struct()
        .column(0)
        .as_primitive::<Int64Type>();
    assert_eq!(status.value(0), 200);
    let cron = event.column_by_name("cron").unwrap().as_string::<i32>();
    assert_eq!(cron.value(1), "*/5 * * * *");
    let scheduled = event
        .column_by_name("scheduledTime")
        .unwrap()
        .as_primitive::<TimestampMillisecondType>();
    assert_eq!(scheduled.value(1), 1_714_564_800_000);

    let logs = batch.column_by_name("Logs").unwrap().as_list::<i32>();
    assert_eq!(logs.value_length(0), 2);
    assert!(logs.is_null(1));
    assert_eq!(logs.value_length(2), 1);
    let first = logs.value(0);
    let first = first.as_struct();
    let message = first.column_by_name("message").unwrap().as_string::<i32>();
    assert_eq!(message.value(0), r#"["hello",{"n":1}]"#);
    assert_eq!(message.value(1), r#"["careful"]"#);
    let third = logs.value(2);
    let message = third
        .as_struct()
        .column_by_name("message")
        .unwrap()
        .as_string::<i32>();
    assert_eq!(message.value(0), "[1,true]");
    let level = third
        .as_struct()
        .column_by_name("level")
        .unwrap()
        .as_string::<i32>();
    assert_eq!(level.value(0), "error");
}

#[test]
fn json_fields_survive_rejects_and_slices() {
    let mut decoder = decoder("workers_trace_events", UnknownFields::Drop);
    let decoded = decode(
        &mut decoder,
        &[
            r#"{"EventTimestampMs":1,"Logs":[{"message":["a"]}]}"#,
            r#"{"Logs":[{"message":["dropped"]}]}"#,
            r#"{"EventTimestampMs":1,"Logs":[{"message":"wrong"}],"CPUTimeMs":"x"}"#,
            r#"{"EventTimestampMs":3,"Logs":[{"message":["b"]},{"message":["c"]}]}"#,
        ],
    );
    assert_eq!(
        kinds(&decoded),
        [
            (1, DecodeErrorKind::InvalidEventTime),
            (2, DecodeErrorKind::WrongType)
        ]
    );
    let logs = decoded
        .batch
        .column_by_name("Logs")
        .unwrap()
        .as_list::<i32>();
    let messages: Vec<String> = (0..logs.len())
        .flat_map(|row| {
            let value = logs.value(row);
            let texts = value
                .as_struct()
                .column_by_name("message")
                .unwrap()
                .as_string::<i32>()
                .clone();
            texts
                .iter()
                .map(|t| t.unwrap().to_owned())
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(messages, [r#"["a"]"#, r#"["b"]"#, r#"["c"]"#]);
}

#[test]
fn unknown_fields_drop_or_extra() {
    let records = [
        r#"{"Timestamp":1,"QueryName":"a","Mystery":{"x":[1,2]},"Other":"o"}"#,
        r#"{"Timestamp":2,"QueryName":"b"}"#,
        r#"{"Timestamp":3,"we\"ird":null}"#,
    ];
    let mut dropping = decoder("dns_logs", UnknownFields::Drop);
    let decoded = decode(&mut dropping, &records);
    assert!(decoded.rejects.is_empty());
    assert!(decoded.batch.column_by_name(EXTRA_COLUMN).is_none());

    let mut keeping = decoder("dns_logs", UnknownFields::Extra);
    let decoded = decode(&mut keeping, &records);
    assert!(decoded.rejects.is_empty());
    assert_eq!(
        strings(&decoded.batch, EXTRA_COLUMN),
        [
            Some(r#"{"Mystery":{"x":[1,2]},"Other":"o"}"#.to_owned()),
            None,
            Some(r#"{"we\"ird":null}"#.to_owned())
        ]
    );
    assert_eq!(
        strings(&decoded.batch, "QueryName"),
        [Some("a".into()), Some("b".into()), None]
    );
}

#[test]
fn an_event_time_that_is_no_instant_is_an_invalid_event_time() {
    let mut decoder = decoder("dns_logs", UnknownFields::Drop);
    let records: Vec<&[u8]> = vec![
        br#"{"Timestamp":{"seconds":1},"QueryName":"object"}"#,
        br#"{"Timestamp":[1],"QueryName":"list"}"#,
        br#"{"Timestamp":1,"QueryName":"good"}"#,
        br#"{"Timestamp":99999999999999999999999,"QueryName":"past the nanosecond range"}"#,
        br#"{"Timestamp":"2300-01-01T00:00:00Z","QueryName":"past the nanosecond range"}"#,
        br#"{"Timestamp":true,"QueryName":"bool"}"#,
    ];
    let decoded = decoder.decode(&records);
    use DecodeErrorKind::*;
    assert_eq!(
        kinds(&decoded),
        [
            (0, InvalidEventTime),
            (1, InvalidEventTime),
            (3, InvalidEventTime),
            (4, InvalidEventTime),
            (5, InvalidEventTime),
        ]
    );
}

#[test]
fn each_reject_kind_lands_in_order_between_good_records() {
    let mut decoder = decoder("dns_logs", UnknownFields::Drop);
    let records: Vec<&[u8]> = vec![
        br#"{"Timestamp":1,"QueryName":"good0"}"#,
        b"",
        br#"{"Timestamp":1,"QueryName":"good2"}"#,
        b"{\"Timestamp\":1,\"QueryName\":\"\xff\xfe\"}",
        br#"{"Timestamp":1,"QueryName":"good4"}"#,
        br#"{"Timestamp":1,"QueryName":"#,
        br#"{"Timestamp":1,"QueryName":"good6"}"#,
        br#"{"Timestamp":1,"QueryType":"not a number"}"#,
        br#"{"Timestamp":1,"QueryName":"good8"}"#,
        br#"{"QueryName":"no time"}"#,
        br#"{"Timestamp":null,"QueryName":"null time"}"#,
        br#"{"Timestamp":"yesterday","QueryName":"bad time"}"#,
        br#"{"Timestamp":1,"QueryName":"good12"}"#,
        br#"{"Timestamp":1,"ResponseCached":"maybe"}"#,
        br#"{"Timestamp":1,"QueryName":"good14"}"#,
        &[b' '; 200],
        br#"{"Timestamp":1,"QueryName":"good16"}"#,
    ];
    let decoded = decoder.decode(&records);
    use DecodeErrorKind::*;
    assert_eq!(
        kinds(&decoded),
        [
            (1, Empty),
            (3, InvalidUtf8),
            (5, InvalidJson),
            (7, WrongType),
            (9, InvalidEventTime),
            (10, InvalidEventTime),
            (11, InvalidEventTime),
            (13, WrongType),
            (15, InvalidJson),
        ]
    );
    let names: Vec<String> = strings(&decoded.batch, "QueryName")
        .into_iter()
        .map(Option::unwrap)
        .collect();
    assert_eq!(
        names,
        [
            "good0", "good2", "good4", "good6", "good8", "good12", "good14", "good16"
        ]
    );
    assert_eq!(
        decoded.accepted_indices(records.len()),
        [0, 2, 4, 6, 8, 12, 14, 16]
    );
    for reject in &decoded.rejects {
        let text = reject.error.to_string();
        assert!(text.starts_with(reject.error.kind.as_str()), "{text}");
        assert!(!reject.error.reason.ends_with('.'), "{text}");
    }
}

#[test]
fn a_ten_megabyte_message_is_too_large() {
    let mut decoder = decoder("dns_logs", UnknownFields::Drop);
    let huge = vec![b'{'; 10 << 20];
    let good = br#"{"Timestamp":1}"#;
    let decoded = decoder.decode(&[good, &huge, good]);
    assert_eq!(kinds(&decoded), [(1, DecodeErrorKind::TooLarge)]);
    assert_eq!(decoded.batch.num_rows(), 2);
}

#[test]
fn one_message_is_one_object() {
    let mut decoder = decoder("dns_logs", UnknownFields::Drop);
    let bad = [
        "{}{}",
        "[1]",
        "\"x\"",
        "1",
        "true",
        "null",
        "{\"Timestamp\":1} x",
        "{\"Timestamp\":1}\n{\"Timestamp\":2}",
        "{\"Timestamp\":1",
        "{\"Timestamp\":1}}",
        "   ",
    ];
    for (position, text) in bad.iter().enumerate() {
        let records = [r#"{"Timestamp":5}"#, text, r#"{"Timestamp":6}"#];
        let decoded = decode(&mut decoder, &records);
        assert_eq!(
            kinds(&decoded),
            [(1, DecodeErrorKind::InvalidJson)],
            "case {position}: {text}"
        );
        assert_eq!(
            nanos(&decoded.batch, "Timestamp"),
            [Some(5_000_000_000), Some(6_000_000_000)]
        );
    }
}

#[test]
fn stray_commas_are_tolerated() {
    // arrow-json's tokenizer treats commas between members as separators it may skip; the
    // record still yields exactly one row with the values it plainly holds.
    let mut decoder = decoder("dns_logs", UnknownFields::Drop);
    let decoded = decode(&mut decoder, &[r#"{"Timestamp":1,,"QueryName":"a",}"#]);
    assert!(decoded.rejects.is_empty());
    assert_eq!(strings(&decoded.batch, "QueryName"), [Some("a".to_owned())]);
}

#[test]
fn non_nullable_fields_are_enforced() {
    let schema = DatasetSchema::from_json(
        r#"{"name":"orders","version":1,"event_time":"At",
            "fields":[{"name":"At","type":"timestamp"},{"name":"Id","type":"string","nullable":false}]}"#,
    )
    .unwrap();
    let mut decoder = BatchDecoder::new(&schema, DecoderOptions::default()).unwrap();
    let decoded = decode(
        &mut decoder,
        &[
            r#"{"At":1,"Id":"a"}"#,
            r#"{"At":1}"#,
            r#"{"At":1,"Id":null}"#,
        ],
    );
    assert_eq!(
        kinds(&decoded),
        [
            (1, DecodeErrorKind::MissingField),
            (2, DecodeErrorKind::MissingField)
        ]
    );
    assert!(
        !decoded
            .batch
            .schema()
            .field_with_name("Id")
            .unwrap()
            .is_nullable()
    );
}

#[test]
fn large_inputs_are_chunked_and_reuse_the_decoder() {
    let mut decoder = decoder("dns_logs", UnknownFields::Drop);
    let records: Vec<String> = (0..20_000)
        .map(|i| {
            if i % 997 == 0 {
                "oops".to_owned()
            } else {
                format!(r#"{{"Timestamp":{i},"QueryType":{i}}}"#)
            }
        })
        .collect();
    let bytes: Vec<&[u8]> = records.iter().map(|r| r.as_bytes()).collect();
    for _ in 0..2 {
        let decoded = decoder.decode(&bytes);
        assert_eq!(decoded.rejects.len(), 21);
        let types = decoded
            .batch
            .column_by_name("QueryType")
            .unwrap()
            .as_primitive::<Int64Type>();
        let expected: Vec<i64> = (0..20_000).filter(|i| i % 997 != 0).collect();
        assert_eq!(types.values(), &expected[..]);
    }
    let empty = decoder.decode(&[]);
    assert_eq!(empty.batch.num_rows(), 0);
    assert_eq!(empty.batch.schema(), *decoder.schema());
}

#[test]
fn kind_names_are_stable() {
    let names: Vec<&str> = DecodeErrorKind::ALL.iter().map(|k| k.as_str()).collect();
    assert_eq!(
        names,
        [
            "empty",
            "too_large",
            "invalid_utf8",
            "invalid_json",
            "wrong_type",
            "invalid_event_time",
            "missing_field"
        ]
    );
}

mod oracle;

mod properties {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        #[test]
        fn random_bytes_never_break_good_records(
            noise in proptest::collection::vec(
                prop_oneof![
                    proptest::collection::vec(any::<u8>(), 0..64),
                    "[{}\\[\\]\":,0-9a-z ]{0,40}".prop_map(String::into_bytes),
                    "\\{\"(Timestamp|QueryName|Logs|Event)\":[\\[\\]{}\"0-9a-z:,]{0,30}\\}?".prop_map(String::into_bytes),
                ],
                0..12,
            ),
            dataset in prop_oneof![Just("dns_logs"), Just("workers_trace_events")],
            extra in any::<bool>(),
        ) {
            let unknown = if extra { UnknownFields::Extra } else { UnknownFields::Drop };
            let mut decoder = decoder(dataset, unknown);
            let good = if dataset == "dns_logs" {
                r#"{"Timestamp":1714564800,"QueryName":"ok"}"#
            } else {
                r#"{"EventTimestampMs":1714564800000,"Logs":[{"message":["ok"]}]}"#
            };
            let mut records: Vec<&[u8]> = Vec::new();
            let mut good_positions = Vec::new();
            for item in &noise {
                good_positions.push(records.len());
                records.push(good.as_bytes());
                records.push(item);
            }
            good_positions.push(records.len());
            records.push(good.as_bytes());
            let decoded = decoder.decode(&records);
            prop_assert_eq!(decoded.batch.num_rows() + decoded.rejects.len(), records.len());
            let accepted = decoded.accepted_indices(records.len());
            for position in &good_positions {
                prop_assert!(accepted.contains(position));
            }
            let mut previous = None;
            for reject in &decoded.rejects {
                prop_assert!(previous < Some(reject.index));
                previous = Some(reject.index);
            }
        }
    }
}

#[test]
fn decoders_can_move_between_threads() {
    fn send<T: Send>() {}
    send::<BatchDecoder>();
}

/// The rule that places records in hours names the field and its declared type, so a
/// change of either is seen.
#[test]
fn event_time_rules_name_the_field_and_its_type() {
    let http = DatasetSchema::builtin("http_requests").unwrap();
    assert_eq!(http.event_time_rule(), "EdgeStartTimestamp timestamp");
    let mut ms = http.clone();
    for f in &mut ms.fields {
        if f.name == "EdgeStartTimestamp" {
            f.field_type = FieldType::TimestampIn(TimeUnit::Millisecond);
        }
    }
    assert_eq!(ms.event_time_rule(), "EdgeStartTimestamp timestamp_ms");
    let mut end = http;
    end.event_time = "EdgeEndTimestamp".into();
    assert_eq!(end.event_time_rule(), "EdgeEndTimestamp timestamp");
}
