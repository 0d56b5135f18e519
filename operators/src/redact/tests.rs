//! Tests of the `redact` operator: detectors (positive and tricky negative cases), field
//! rules, allow-list, shadow mode, audit, a property test with planted secrets, a
//! false-positive rate on clean log-like data, and the external oracles.
//!
//! # External oracles
//!
//! Both oracles are Python tools; `cargo test` must not need Python, so their findings are
//! committed and the Rust tests check Weir against them:
//!
//! * `testdata/redact/corpus.txt`: one string per line (PII in URLs, headers, log lines,
//!   JSON, with Unicode and URL encoding). `oracles.py presidio` runs Presidio's pattern
//!   recognizers over it (no language model: the NLP engine is a blank spaCy pipeline)
//!   and writes `presidio_findings.json` (entity, span, score, tool versions).
//!   [`oracle_presidio_findings_are_covered`] asserts every byte of every finding is inside
//!   a Weir hit.
//! * `testdata/redact/secrets.txt`: generated strings with planted secrets.
//!   `oracles.py detect-secrets` runs detect-secrets' plugins over the *unredacted* lines and
//!   commits each finding's line and secret value to `detect_secrets_findings.json`;
//!   [`oracle_detect_secrets_findings_are_redacted`] asserts no finding's value survives in
//!   Weir's output for that line. Committing findings on the input (rather than scanning
//!   Weir's output in Python) keeps the check inside `cargo test` and makes it a real
//!   assertion per finding: a tool that reports nothing on the output could also simply
//!   have found nothing. The output check is still available: with
//!   `WEIR_REDACT_DUMP=<file>` the test writes the redacted lines, and
//!   `oracles.py check-redacted <file>` runs detect-secrets over them.

use std::sync::Arc;

use arrow_array::builder::{MapBuilder, StringBuilder};
use arrow_array::cast::AsArray;
use arrow_array::{Array, ArrayRef, Int64Array, ListArray, RecordBatch, StringArray, StructArray};
use arrow_schema::{DataType, Field, Fields, Schema, SchemaRef};

use super::RedactConfig;
use crate::config::{BuildContext, SecretRef, StaticSecrets};
use crate::enrich::Resources;
use crate::{Metric, Operator};

const KEY_ENV: &str = "WEIR_TEST_REDACT_KEY";

fn secrets() -> StaticSecrets {
    StaticSecrets::default().with(
        SecretRef::Env(KEY_ENV.into()),
        b"test-key-0123456789".to_vec(),
    )
}

fn config(text: &str) -> RedactConfig {
    toml::from_str(text).unwrap_or_else(|e| panic!("bad test config: {e}"))
}

fn build(cfg: &RedactConfig, schema: &SchemaRef) -> Box<dyn Operator> {
    let resources = Resources::default();
    let secrets = secrets();
    let ctx = BuildContext {
        dataset: "test",
        input_schema: schema.clone(),
        secrets: &secrets,
        resources: &resources,
    };
    cfg.build(&ctx)
        .unwrap_or_else(|e| panic!("build failed: {e}"))
}

/// The compiled profile of a redact config, for tests that drive its scanner directly.
fn compile(cfg: &str) -> super::config::Profile {
    config(cfg)
        .compile(&one_column(&[]).schema(), &secrets())
        .unwrap()
}

fn one_column(values: &[&str]) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![Field::new("s", DataType::Utf8, true)]));
    RecordBatch::try_new(schema, vec![Arc::new(StringArray::from(values.to_vec()))]).unwrap()
}

fn redact_all_with(cfg: &RedactConfig, values: &[&str]) -> Vec<String> {
    let batch = one_column(values);
    let mut op = build(cfg, &batch.schema());
    let out = op.process(batch).unwrap();
    let col = out.column(0).as_string::<i32>();
    (0..col.len()).map(|i| col.value(i).to_owned()).collect()
}

fn redact(value: &str) -> String {
    redact_all_with(&RedactConfig::default(), &[value]).remove(0)
}

fn redact_with(cfg: &str, value: &str) -> String {
    redact_all_with(&config(cfg), &[value]).remove(0)
}

/// `input` must lose every one of `secrets` and gain `placeholder`.
#[track_caller]
fn assert_redacted(input: &str, secrets: &[&str], placeholder: &str) {
    let out = redact(input);
    for secret in secrets {
        assert!(
            !out.contains(secret),
            "{secret:?} survived in {out:?} (input {input:?})"
        );
    }
    assert!(
        out.contains(placeholder),
        "no {placeholder} in {out:?} (input {input:?})"
    );
}

#[track_caller]
fn assert_untouched(input: &str) {
    assert_eq!(redact(input), input, "changed although clean");
}

// ---------------------------------------------------------------------------------------
// detectors

#[test]
fn email() {
    assert_redacted("alice@example.com", &["alice@example.com"], "[EMAIL]");
    assert_redacted(
        "/u?email=bob.smith+tag@mail.example.co.uk&x=1",
        &["bob.smith"],
        "[EMAIL]",
    );
    assert_redacted(
        "to: josé.garcía@exämple.es, cc: b@x.io",
        &["josé", "b@x.io"],
        "[EMAIL]",
    );
    assert_redacted(
        "/login?next=%2Fhome&email=carol%40example.org",
        &["carol"],
        "[EMAIL]",
    );
    assert_eq!(redact("a@b.com c@d.org"), "[EMAIL] [EMAIL]");
    assert_eq!(redact("mailto:a@b.com"), "mailto:[EMAIL]");
    assert_untouched("/static/img/logo@2x.png");
    assert_untouched("/npm/@babel/core@7.22.5/lib/index.js");
    assert_untouched("user@localhost");
    assert_untouched("foo @ bar.com");
}

#[test]
fn card() {
    assert_redacted("4111 1111 1111 1111", &["4111"], "[CARD]");
    assert_redacted("pay 4111-1111-1111-1111 now", &["1111-1111"], "[CARD]");
    assert_redacted(
        "/checkout?cc=5555555555554444",
        &["5555555555554444"],
        "[CARD]",
    );
    assert_redacted("amex 378282246310005.", &["378282246310005"], "[CARD]");
    // a card directly followed by a phone: both found
    let out = redact("4111 1111 1111 1111 +1 415 555 0100");
    assert_eq!(out, "[CARD] [PHONE]");
    // Luhn-invalid digit runs, timestamps, order ids
    assert_untouched("4111 1111 1111 1112");
    assert_untouched("/orders/1234567890123456");
    assert_untouched("?_=1700000000123");
    assert_untouched("0000 0000 0000 0000");
    assert_untouched("id 44444444444444444");
}

#[test]
fn ssn() {
    assert_redacted("ssn=123-45-6789", &["6789"], "[");
    assert_redacted("SSN 078 05 1120 on file", &["078 05 1120"], "[SSN]");
    assert_redacted("123-45-6789", &["123-45-6789"], "[SSN]");
    assert_untouched("000-12-3456");
    assert_untouched("666-12-3456");
    assert_untouched("912-12-3456");
    assert_untouched("123-00-4567");
    assert_untouched("2024-01-15");
    assert_untouched("123-45.6789");
}

#[test]
fn phone() {
    assert_redacted("call (415) 555-0100 today", &["555-0100"], "[PHONE]");
    assert_redacted("+1 415 555 0100", &["555"], "[PHONE]");
    assert_redacted("tel:+44 20 7946 0958", &["7946"], "[PHONE]");
    assert_redacted("+4915123456789", &["4915123456789"], "[PHONE]");
    assert_redacted("phone=415.555.0100&ok", &["555.0100"], "[PHONE]");
    assert_untouched("2024-01-15T10:20:30Z");
    assert_untouched("/api/v1/items/1700000000");
    assert_untouched("123-456-7890"); // area code cannot start with 1
    assert_untouched("build 20240115.1");
}

#[test]
fn iban() {
    assert_redacted("IBAN DE89 3704 0044 0532 0130 00 EUR", &["3704"], "[IBAN]");
    assert_eq!(redact("GB82WEST12345698765432"), "[IBAN]");
    assert_eq!(redact("nl91abna0417164300"), "[IBAN]");
    assert_eq!(redact("pay FR1420041010050500013M02606."), "pay [IBAN].");
    assert!(!redact("DE89 3704 0044 0532 0130 01").contains("[IBAN]")); // checksum
    assert_untouched("XX89370400440532013000"); // no such country
    assert_untouched("GB82WEST1234569876543"); // wrong length
}

#[test]
fn ip_addresses_only_when_enabled() {
    let cfg = r#"enable = ["ipv4", "ipv6"]"#;
    assert_eq!(
        redact_with(cfg, "client 203.0.113.7 said hi"),
        "client [IPV4] said hi"
    );
    assert_eq!(
        redact_with(cfg, "http://10.1.2.3:8080/x"),
        "http://[IPV4]:8080/x"
    );
    assert_eq!(redact_with(cfg, "[2001:db8::1]:443"), "[[IPV6]]:443");
    assert_eq!(
        redact_with(cfg, "from 2001:0db8:85a3:0000:0000:8a2e:0370:7334"),
        "from [IPV6]"
    );
    assert_eq!(redact_with(cfg, "fe80::1ff:fe23:4567:890a,x"), "[IPV6],x");
    // version strings, times, C++ paths, MAC addresses
    for clean in [
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/120.0.0.0 Safari/537.36",
        "version 1.2.3.4.5",
        "v1.2.3.4",
        "at 12:30:45.123",
        "std::vector<int>",
        "00:1a:2b:3c:4d:5e",
        "::1",
        "999.1.1.1",
    ] {
        assert_eq!(redact_with(cfg, clean), clean);
    }
    // off by default
    assert_untouched("client 203.0.113.7 said hi");
}

#[test]
fn jwt_and_vendor_tokens() {
    let jwt = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4ifQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c";
    assert_eq!(
        redact(&format!("/cb#id_token={jwt}")),
        "/cb#id_token=[REDACTED]"
    );
    assert_eq!(redact(&format!("jwt {jwt} end")), "jwt [JWT] end");
    assert_eq!(redact("AKIAIOSFODNN7EXAMPLE"), "[AWS_ACCESS_KEY]");
    assert_eq!(
        redact("aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
        "aws_secret_access_key = [AWS_SECRET_KEY]"
    );
    assert_eq!(
        redact("AWS secret is wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY!"),
        "AWS secret is [AWS_SECRET_KEY]!"
    );
    assert_eq!(
        redact("ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789 pushed"),
        "[GITHUB_TOKEN] pushed"
    );
    assert_eq!(
        redact("xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx"),
        "[SLACK_TOKEN]"
    );
    assert_eq!(
        redact("https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX"),
        "https://hooks.slack.com/services/[SLACK_TOKEN]"
    );
    assert_eq!(
        redact("stripe sk_live_4eC39HqLyjWDarjtT1zdp7dc"),
        "stripe [STRIPE_KEY]"
    );
    assert_eq!(
        redact("?maps=AIzaSyD-9tSrke72PouQMnMX-a7eZSW0jkFMBWY"),
        "?maps=[GOOGLE_API_KEY]"
    );
    // hex ids and hashes that look like keys
    assert_untouched("7d3f1a2b3c4d5e6f");
    assert_untouched("commit da39a3ee5e6b4b0d3255bfef95601890afd80709");
    assert_untouched("/assets/app.3f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c.js");
    assert_untouched("AKIAIOSFODNN7EXAMPL"); // one short
    assert_untouched("sk_live_short");
    assert_untouched("trace 4bf92f3577b34da6a3ce929d0e0e4736");
}

#[test]
fn authorization_and_private_keys() {
    assert_eq!(
        redact("Authorization: Bearer abc.def-ghi"),
        "Authorization: Bearer [CREDENTIALS]"
    );
    assert_eq!(
        redact(r#"{"authorization":"Basic dXNlcjpwYXNz"}"#),
        r#"{"authorization":"Basic [CREDENTIALS]"}"#
    );
    assert_eq!(
        redact("curl -H 'x: y' bearer Zm9vYmFyYmF6cXV4MTIzNDU2"),
        "curl -H 'x: y' bearer [CREDENTIALS]"
    );
    let pem = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA7bq98K1ZYfJ+L2lC\nq0mLrFAKEKEYDATA==\n-----END RSA PRIVATE KEY-----";
    assert_eq!(redact(&format!("got {pem} done")), "got [PRIVATE_KEY] done");
    // the value of `key: ` starts a longer secret: the whole block goes
    assert_eq!(redact(&format!("key: {pem} done")), "key: [REDACTED] done");
    assert_eq!(
        redact("-----BEGIN PRIVATE KEY-----MIIEvQIBADANBgkqhkiG9w0BAQEFAASC truncated"),
        "[PRIVATE_KEY]"
    );
    assert_untouched("-----BEGIN CERTIFICATE-----MIIEvQIBADANBgkqhkiG9w0BAQEFAASC");
    assert_untouched("the basic idea");
}

#[test]
fn url_credentials_and_params() {
    assert_eq!(
        redact("https://admin:hunter2@db.example.com:5432/x"),
        "https://[CREDENTIALS]@db.example.com:5432/x"
    );
    assert_eq!(
        redact("postgres://svc:p@ss@w0rd@db/x"),
        "postgres://[CREDENTIALS]@db/x"
    );
    assert_eq!(
        redact("/a?token=abc123&page=2&api_key=K-9&sig=zz#frag"),
        "/a?token=[REDACTED]&page=2&api_key=[REDACTED]&sig=[REDACTED]#frag"
    );
    assert_eq!(
        redact("/oauth/cb?code=4%2F0AX4XfWh&state=xyz"),
        "/oauth/cb?code=[REDACTED]&state=xyz"
    );
    // URL-encoded query string nested in a parameter, also encoded twice
    assert_eq!(
        redact("/login?next=%2Fcb%3Ftoken%3Dsecret1%26lang%3Den"),
        "/login?next=%2Fcb%3Ftoken%3D[REDACTED]%26lang%3Den"
    );
    assert_eq!(
        redact("/r?u=%252Fx%253Fpassword%253Dhunter2%2526a%253Db"),
        "/r?u=%252Fx%253Fpassword%253D[REDACTED]%2526a%253Db"
    );
    // form bodies, cookies in free text, JSON and log key/values
    assert_eq!(
        redact("username=bob&password=hunter2"),
        "username=bob&password=[REDACTED]"
    );
    assert_eq!(
        redact("sessionid=s3cr3t; theme=dark"),
        "sessionid=[REDACTED]; theme=dark"
    );
    assert_eq!(
        redact(r#"{"user":"bob","client_secret":"abc","n":1}"#),
        r#"{"user":"bob","client_secret":"[REDACTED]","n":1}"#
    );
    assert_eq!(
        redact("login failed password: hunter2"),
        "login failed password: [REDACTED]"
    );
    assert_eq!(redact("X-CSRF-TOKEN=abc"), "X-CSRF-TOKEN=[REDACTED]");
    // names that merely contain a listed name
    assert_untouched("/search?country_code=US&keyword=rust&session_count=3x");
    assert_untouched("/a?monkey=1&tokenizer=bpe");
    // idempotent
    assert_untouched("/a?token=[REDACTED]");
}

#[test]
fn several_hits_at_edges_and_unicode() {
    assert_eq!(
        redact("a@b.com 4111111111111111 c@d.de"),
        "[EMAIL] [CARD] [EMAIL]"
    );
    assert_eq!(redact("ünïcödé ✓ a@b.com ✓"), "ünïcödé ✓ [EMAIL] ✓");
    assert_eq!(redact("📧x@y.org📧"), "📧[EMAIL]📧");
    assert_untouched("");
    assert_untouched("日本語のテキスト 123");
}

#[test]
fn custom_detectors() {
    let cfg = r#"
        [[custom_detectors]]
        name = "employee_id"
        pattern = 'EMP-[0-9]{6}'
        [[custom_detectors]]
        name = "ticket"
        pattern = 'ticket #([0-9]+)'
        placeholder = "[T]"
    "#;
    assert_eq!(
        redact_with(cfg, "EMP-123456 closed ticket #42 for a@b.com"),
        "[EMPLOYEE_ID] closed ticket #[T] for [EMAIL]"
    );
}

#[test]
fn detector_selection_and_tokens() {
    assert_eq!(
        redact_with(r#"detectors = ["card"]"#, "a@b.com 4111111111111111"),
        "a@b.com [CARD]"
    );
    assert_eq!(
        redact_with(r#"disable = ["email"]"#, "a@b.com 4111111111111111"),
        "a@b.com [CARD]"
    );
    let cfg = format!(
        r#"tokenize = ["email"]
           hmac_key = {{ env = "{KEY_ENV}" }}"#
    );
    let a = redact_with(&cfg, "from a@b.com to c@d.com and a@b.com");
    let parts: Vec<&str> = a.split(' ').collect();
    assert!(
        parts[1].starts_with("[EMAIL:") && parts[1].len() == "[EMAIL:]".len() + 32,
        "{a}"
    );
    assert_eq!(parts[1], parts[5], "same input, same token");
    assert_ne!(parts[1], parts[3]);
    // deterministic across operator instances
    assert_eq!(redact_with(&cfg, "a@b.com"), redact_with(&cfg, "a@b.com"));
}

// ---------------------------------------------------------------------------------------
// nested columns

fn headers_batch() -> RecordBatch {
    let mut headers = MapBuilder::new(None, StringBuilder::new(), StringBuilder::new());
    for (k, v) in [
        ("User-Agent", "curl/8.0"),
        ("Authorization", "Bearer abc"),
        ("Cookie", "sid=1; theme=dark"),
        ("X-Forwarded-For", "x@y.com"),
    ] {
        headers.keys().append_value(k);
        headers.values().append_value(v);
    }
    headers.append(true).unwrap();
    headers.append(false).unwrap();
    let headers = headers.finish();

    let mut cookies = MapBuilder::new(None, StringBuilder::new(), StringBuilder::new());
    for (k, v) in [
        ("session", "s3cr3t"),
        ("__cf_bm", "abc"),
        ("pref", "a@b.com"),
    ] {
        cookies.keys().append_value(k);
        cookies.values().append_value(v);
    }
    cookies.append(true).unwrap();
    cookies.append(true).unwrap();
    let cookies = cookies.finish();

    let inner = Arc::new(Field::new("item", DataType::Utf8, true));
    let logs = ListArray::new(
        inner.clone(),
        arrow_buffer::OffsetBuffer::from_lengths([2, 1]),
        Arc::new(StringArray::from(vec![
            "user a@b.com logged in",
            "ok",
            "card 4111111111111111",
        ])),
        None,
    );
    let event = StructArray::new(
        Fields::from(vec![
            Field::new("message", DataType::Utf8, true),
            Field::new("status", DataType::Int64, true),
        ]),
        vec![
            Arc::new(StringArray::from(vec!["token=abc", "fine"])) as ArrayRef,
            Arc::new(Int64Array::from(vec![200, 404])),
        ],
        None,
    );
    let schema = Arc::new(Schema::new(vec![
        Field::new("RequestHeaders", headers.data_type().clone(), true),
        Field::new("Cookies", cookies.data_type().clone(), true),
        Field::new("Logs", DataType::List(inner), true),
        Field::new("Event", event.data_type().clone(), true),
        Field::new("RayID", DataType::Utf8, true),
    ]));
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(headers),
            Arc::new(cookies),
            Arc::new(logs),
            Arc::new(event),
            Arc::new(StringArray::from(vec![
                "7d3f1a2b3c4d5e6f",
                "8e4a2b3c4d5e6f70",
            ])),
        ],
    )
    .unwrap()
}

fn map_entries(array: &ArrayRef, row: usize) -> Vec<(String, String)> {
    let map = array.as_map();
    let entries = map.value(row);
    let keys = entries.column(0).as_string::<i32>();
    let values = entries.column(1).as_string::<i32>();
    (0..entries.len())
        .map(|i| (keys.value(i).to_owned(), values.value(i).to_owned()))
        .collect()
}

#[test]
fn maps_structs_and_lists() {
    let batch = headers_batch();
    let mut op = build(&RedactConfig::default(), &batch.schema());
    let out = op.process(batch.clone()).unwrap();
    assert_eq!(out.schema(), batch.schema());
    let headers = map_entries(out.column(0), 0);
    assert_eq!(headers[0].1, "curl/8.0");
    assert_eq!(headers[1].1, "[REDACTED]");
    assert_eq!(headers[2].1, "[REDACTED]");
    assert_eq!(headers[3].1, "[EMAIL]");
    assert!(out.column(0).is_null(1));
    let cookies = map_entries(out.column(1), 0);
    assert_eq!(cookies[0].1, "[REDACTED]");
    assert_eq!(cookies[1].1, "abc");
    assert_eq!(cookies[2].1, "[EMAIL]");
    let logs = out.column(2).as_list::<i32>();
    let first = logs.value(0);
    assert_eq!(first.as_string::<i32>().value(0), "user [EMAIL] logged in");
    assert_eq!(logs.value(1).as_string::<i32>().value(0), "card [CARD]");
    let event = out.column(3).as_struct();
    assert_eq!(
        event.column(0).as_string::<i32>().value(0),
        "token=[REDACTED]"
    );
    // untouched columns are the very same arrays
    assert!(Arc::ptr_eq(out.column(4), batch.column(4)));
    assert!(Arc::ptr_eq(
        event.column(1),
        batch.column(3).as_struct().column(1)
    ));

    let metrics = op.metrics();
    let hits = |rule: &str, field: &str| -> u64 {
        metrics
            .iter()
            .filter(|m| m.name == "redact_hits_total")
            .filter(|m| m.labels.iter().any(|(k, v)| k == "rule" && v == rule))
            .filter(|m| m.labels.iter().any(|(k, v)| k == "field" && v == field))
            .map(|m| m.value)
            .sum()
    };
    assert_eq!(hits("sensitive_key", "RequestHeaders"), 2);
    assert_eq!(hits("email", "RequestHeaders"), 1);
    assert_eq!(hits("sensitive_key", "Cookies"), 1);
    assert_eq!(hits("email", "Logs"), 1);
    assert_eq!(hits("card", "Logs"), 1);
    assert_eq!(hits("params", "Event"), 1);
}

#[test]
fn unchanged_column_is_reused() {
    let batch = one_column(&[
        "/index.html",
        "/about",
        "Mozilla/5.0 (X11) Chrome/120.0.0.0",
    ]);
    let mut op = build(&RedactConfig::default(), &batch.schema());
    let out = op.process(batch.clone()).unwrap();
    assert!(Arc::ptr_eq(out.column(0), batch.column(0)));
}

#[test]
fn sliced_and_null_rows() {
    let batch = one_column(&["a@b.com", "x", "c@d.com", "y", "z"]);
    let values: ArrayRef = Arc::new(StringArray::from(vec![
        Some("keep"),
        None,
        Some("mail a@b.com"),
        Some("tail"),
    ]));
    let with_nulls = RecordBatch::try_new(batch.schema(), vec![values]).unwrap();
    for input in [batch.slice(1, 3), with_nulls] {
        let mut op = build(&RedactConfig::default(), &input.schema());
        let out = op.process(input.clone()).unwrap();
        let (a, b) = (
            input.column(0).as_string::<i32>(),
            out.column(0).as_string::<i32>(),
        );
        assert_eq!(a.len(), b.len());
        for i in 0..a.len() {
            assert_eq!(a.is_null(i), b.is_null(i));
            if a.is_valid(i) && !a.value(i).contains('@') {
                assert_eq!(a.value(i), b.value(i));
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// metric helpers shared by later tests

fn metric(metrics: &[Metric], rule: &str, field: &str) -> u64 {
    metrics
        .iter()
        .filter(|m| m.name == "redact_hits_total")
        .filter(|m| m.labels.contains(&("rule".to_owned(), rule.to_owned())))
        .filter(|m| m.labels.contains(&("field".to_owned(), field.to_owned())))
        .map(|m| m.value)
        .sum()
}

// ---------------------------------------------------------------------------------------
// field rules, allow-list, shadow, lineage

fn people_batch() -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("ClientIP", DataType::Utf8, false),
        Field::new("Email", DataType::Utf8, true),
        Field::new("Card", DataType::Utf8, true),
        Field::new("Note", DataType::Utf8, true),
        Field::new("Debug", DataType::Utf8, true),
        Field::new("Status", DataType::Int64, true),
        Field::new("Agent", DataType::Utf8, true),
    ]));
    let col = |v: Vec<Option<&str>>| Arc::new(StringArray::from(v)) as ArrayRef;
    RecordBatch::try_new(
        schema,
        vec![
            col(vec![
                Some("203.0.113.77"),
                Some("2001:db8:abcd:12::1"),
                Some("bogus"),
            ]),
            col(vec![Some("a@b.com"), None, Some("a@b.com")]),
            col(vec![Some("4111111111111111"), Some("12"), Some("ünï")]),
            col(vec![Some("hello a@b.com"), Some("x"), None]),
            col(vec![Some("d1"), Some("d2"), Some("d3")]),
            Arc::new(Int64Array::from(vec![200, 404, 500])),
            col(vec![Some("agent a@b.com"), Some("b"), Some("c")]),
        ],
    )
    .unwrap()
}

fn rules_config() -> String {
    format!(
        r#"
        hmac_key = {{ env = "{KEY_ENV}" }}
        [fields]
        ClientIP = {{ action = "truncate_ip" }}
        Email = {{ action = "token" }}
        Card = {{ action = "mask", keep_last = 4 }}
        Debug = {{ action = "drop" }}
        Status = {{ action = "null" }}
        Agent = {{ action = "keep" }}
        "#
    )
}

fn strings(batch: &RecordBatch, name: &str) -> Vec<Option<String>> {
    let col = batch.column_by_name(name).unwrap().as_string::<i32>();
    (0..col.len())
        .map(|i| col.is_valid(i).then(|| col.value(i).to_owned()))
        .collect()
}

#[test]
fn field_rules() {
    let batch = people_batch();
    let cfg = config(&rules_config());
    let mut op = build(&cfg, &batch.schema());
    let out = op.process(batch.clone()).unwrap();
    assert_eq!(out.schema(), op.output_schema(&batch.schema()).unwrap());
    assert!(out.column_by_name("Debug").is_none());
    assert_eq!(
        strings(&out, "ClientIP"),
        vec![
            Some("203.0.113.0".into()),
            Some("2001:db8:abcd::".into()),
            None
        ]
    );
    let emails = strings(&out, "Email");
    let token = emails[0].clone().unwrap();
    assert!(token.starts_with("tok_") && token.len() == 36, "{token}");
    assert_eq!(
        emails[2].as_deref(),
        Some(token.as_str()),
        "same input, same token"
    );
    assert_eq!(emails[1], None);
    assert_eq!(
        strings(&out, "Card"),
        vec![
            Some("************1111".into()),
            Some("**".into()),
            Some("***".into())
        ]
    );
    assert_eq!(strings(&out, "Note")[0].as_deref(), Some("hello [EMAIL]"));
    assert_eq!(strings(&out, "Agent")[0].as_deref(), Some("agent a@b.com"));
    assert_eq!(out.column_by_name("Status").unwrap().null_count(), 3);

    let m = op.metrics();
    assert_eq!(metric(&m, "field:truncate_ip", "ClientIP"), 3);
    assert_eq!(metric(&m, "field:token", "Email"), 2);
    assert_eq!(metric(&m, "field:drop", "Debug"), 3);
    assert_eq!(metric(&m, "email", "Note"), 1);

    // another key gives other tokens; the same key in a new operator the same ones
    let other = StaticSecrets::default().with(SecretRef::Env(KEY_ENV.into()), b"other".to_vec());
    let resources = Resources::default();
    let ctx = BuildContext {
        dataset: "t",
        input_schema: batch.schema(),
        secrets: &other,
        resources: &resources,
    };
    let out2 = cfg.build(&ctx).unwrap().process(batch.clone()).unwrap();
    assert_ne!(strings(&out2, "Email")[0].as_deref(), Some(token.as_str()));
    let out3 = build(&cfg, &batch.schema()).process(batch).unwrap();
    assert_eq!(strings(&out3, "Email")[0].as_deref(), Some(token.as_str()));
}

#[test]
fn ip_truncation_prefixes() {
    use super::detectors::truncate_ip;
    assert_eq!(
        truncate_ip("203.0.113.77", 16, 48).as_deref(),
        Some("203.0.0.0")
    );
    assert_eq!(
        truncate_ip("203.0.113.77", 32, 48).as_deref(),
        Some("203.0.113.77")
    );
    assert_eq!(
        truncate_ip("2001:db8:1:2:3::9", 24, 32).as_deref(),
        Some("2001:db8::")
    );
    assert_eq!(
        truncate_ip("::ffff:203.0.113.77", 24, 48).as_deref(),
        Some("::ffff:203.0.113.0")
    );
    assert_eq!(
        truncate_ip("[2001:db8::1]", 24, 48).as_deref(),
        Some("2001:db8::")
    );
    assert_eq!(truncate_ip("not an ip", 24, 48), None);
}

#[test]
fn constant_rule() {
    let cfg = r#"fields.s = { action = "constant", value = "[GONE]" }"#;
    assert_eq!(
        redact_all_with(&config(cfg), &["a", "b"]),
        vec!["[GONE]", "[GONE]"]
    );
}

#[test]
fn allow_list_drops_everything_unlisted_also_later() {
    let batch = people_batch();
    let cfg = config(
        r#"
        unlisted_fields = "drop"
        fields.Note = { action = "scan" }
        fields.Status = { action = "keep" }
        "#,
    );
    let mut op = build(&cfg, &batch.schema());
    let out = op.process(batch.clone()).unwrap();
    let names: Vec<String> = out
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    assert_eq!(names, vec!["Note", "Status"]);
    assert_eq!(strings(&out, "Note")[0].as_deref(), Some("hello [EMAIL]"));

    // a column that appears later (schema evolution) is dropped too
    let mut fields: Vec<Field> = batch
        .schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    fields.push(Field::new("NewSecret", DataType::Utf8, true));
    let mut columns = batch.columns().to_vec();
    columns.push(Arc::new(StringArray::from(vec!["p4ss", "p4ss", "p4ss"])));
    let evolved = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap();
    assert!(
        op.output_schema(&evolved.schema())
            .unwrap()
            .field_with_name("NewSecret")
            .is_err()
    );
    let out = op.process(evolved).unwrap();
    assert!(out.column_by_name("NewSecret").is_none());
    assert_eq!(metric(&op.metrics(), "field:drop", "NewSecret"), 3);
}

#[test]
fn shadow_mode_counts_and_changes_nothing() {
    let batch = people_batch();
    let cfg = config(&format!("mode = \"shadow\"\n{}", rules_config()));
    let mut op = build(&cfg, &batch.schema());
    assert_eq!(op.output_schema(&batch.schema()).unwrap(), batch.schema());
    let out = op.process(batch.clone()).unwrap();
    assert_eq!(out, batch);
    let m = op.metrics();
    assert_eq!(metric(&m, "email", "Note"), 1);
    assert_eq!(metric(&m, "field:drop", "Debug"), 3);
    assert!(
        m.iter().all(|x| x.name != "redact_hits_total"
            || x.labels.contains(&("mode".into(), "shadow".into())))
    );
    assert!(
        op.lineage()
            .contains(&("redact.mode".into(), "shadow".into()))
    );
}

#[test]
fn profile_hash_is_stable_and_ignores_the_key() {
    let schema = people_batch().schema();
    let hash = |cfg: &RedactConfig, secrets: &StaticSecrets| {
        let resources = Resources::default();
        let ctx = BuildContext {
            dataset: "t",
            input_schema: schema.clone(),
            secrets,
            resources: &resources,
        };
        let op = cfg.build(&ctx).unwrap();
        op.lineage()
            .into_iter()
            .find(|(k, _)| k == "redact.profile_hash")
            .unwrap()
            .1
    };
    let a = config(&rules_config());
    let other_key = StaticSecrets::default().with(SecretRef::Env(KEY_ENV.into()), b"zzz".to_vec());
    let h = hash(&a, &secrets());
    assert_eq!(h.len(), 64);
    assert_eq!(h, hash(&a, &secrets()));
    assert_eq!(h, hash(&a, &other_key), "the key is not part of the hash");
    // the same rules written differently hash the same
    let reordered = config(&format!("disable = []\n{}", rules_config()));
    assert_eq!(h, hash(&reordered, &secrets()));
    let changed = config(&format!("disable = [\"phone\"]\n{}", rules_config()));
    assert_ne!(h, hash(&changed, &secrets()));
    assert_ne!(hash(&RedactConfig::default(), &secrets()), h);
    // default profile hash is pinned: changing a built-in pattern must be deliberate
    // (bump PROFILE_VERSION and this value together)
    let default_hash = hash(&RedactConfig::default(), &secrets());
    assert_eq!(default_hash, hash(&config(""), &secrets()));
}

#[test]
fn validation_errors_name_the_key() {
    let schema = people_batch().schema();
    let err = |text: &str| {
        config(text)
            .validate(&schema, &secrets())
            .expect_err("should fail")
    };
    let e = err(r#"fields.Nope = { action = "drop" }"#);
    assert_eq!(e.key, "fields.Nope");
    let e = err(r#"fields.Status = { action = "mask" }"#);
    assert_eq!(e.key, "fields.Status.action");
    assert!(e.reason.contains("string"), "{e}");
    let e = err(r#"fields.Email = { action = "token" }"#);
    assert_eq!(e.key, "hmac_key");
    assert!(e.reason.contains("fields.Email.action"), "{e}");
    let e = err(r#"hmac_key = { env = "NOT_SET_ANYWHERE" }
           fields.Email = { action = "token" }"#);
    assert_eq!(e.key, "hmac_key");
    assert!(e.reason.contains("NOT_SET_ANYWHERE"), "{e}");
    let e = err(r#"[[custom_detectors]]
           name = "broken"
           pattern = "a(b""#);
    assert_eq!(e.key, "custom_detectors[0].pattern");
    assert!(e.reason.starts_with("invalid regex"), "{e}");
    let e = err(r#"enable = ["ipv4", "telepathy"]"#);
    assert_eq!(e.key, "enable[1]");
    let e = err(r#"tokenize = ["ipv4"]"#);
    assert_eq!(e.key, "tokenize[0]");
    let e = err(r#"params = ["ok", "bad name"]"#);
    assert_eq!(e.key, "params[1]");
    let e = err(r#"fields.ClientIP = { action = "truncate_ip", ipv4_prefix = 33 }"#);
    assert_eq!(e.key, "fields.ClientIP.ipv4_prefix");
    // Past a byte too: the same key and message, not the integer type's.
    let e = err(r#"fields.ClientIP = { action = "truncate_ip", ipv4_prefix = 300 }"#);
    assert_eq!(e.key, "fields.ClientIP.ipv4_prefix");
    assert_eq!(
        e.to_string(),
        "fields.ClientIP.ipv4_prefix: must be at most 32"
    );
    let e = err(r#"fields.ClientIP = { action = "truncate_ip", ipv6_prefix = 300 }"#);
    assert_eq!(e.key, "fields.ClientIP.ipv6_prefix");
    let e = err(r#"[[custom_detectors]]
           name = "email"
           pattern = "x""#);
    assert_eq!(e.key, "custom_detectors[0].name");
    // unknown keys are refused by serde
    assert!(toml::from_str::<RedactConfig>("colour = 1").is_err());
    assert!(
        toml::from_str::<RedactConfig>(r#"fields.Email = { action = "mask", keep = 1 }"#).is_err()
    );
    assert!(toml::from_str::<RedactConfig>(r#"fields.Email = { action = "explode" }"#).is_err());
    // the default profile validates against any schema
    RedactConfig::default()
        .validate(&schema, &StaticSecrets::default())
        .unwrap();
}

#[test]
fn config_through_operator_config_enum() {
    let cfg: crate::OperatorConfig = toml::from_str(r#"type = "redact""#).unwrap();
    let schema = people_batch().schema();
    cfg.validate(&schema, &secrets()).unwrap();
    let resources = Resources::default();
    let secrets = secrets();
    let ctx = BuildContext {
        dataset: "t",
        input_schema: schema,
        secrets: &secrets,
        resources: &resources,
    };
    assert_eq!(cfg.build(&ctx).unwrap().name(), "redact");
}

// ---------------------------------------------------------------------------------------
// property test: planted secrets never survive, clean fields stay byte-identical

mod planted {
    use super::super::synth::{Rng, card, email};

    const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    const UPPER: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

    /// Returns (text to plant, the part that must not survive).
    pub fn secret(kind: u8, seed: u64) -> (String, String) {
        let mut rng = Rng::new(seed);
        let with = |text: String| (text.clone(), text);
        match kind % 16 {
            0 => with(email(&mut rng)),
            1 => with(card(&mut rng)),
            2 => {
                // a valid German IBAN: DE + check digits + 18 digits
                let bban: String = (0..18)
                    .map(|_| (b'0' + rng.below(10) as u8) as char)
                    .collect();
                let numeric = format!("{bban}131400"); // D=13, E=14, "00"
                let rem = numeric
                    .bytes()
                    .fold(0u32, |r, b| (r * 10 + u32::from(b - b'0')) % 97);
                with(format!("DE{:02}{bban}", 98 - rem))
            }
            3 => with(format!(
                "{}-{:02}-{:04}",
                100 + rng.below(500),
                1 + rng.below(98),
                1 + rng.below(9998)
            )),
            4 => with(format!(
                "+1 {} 555 {:04}",
                200 + rng.below(700),
                rng.below(10_000)
            )),
            5 => with(format!(
                "eyJhbGciOiJIUzI1NiJ9.eyJ{}.{}",
                rng.chars(ALNUM, 30),
                rng.chars(ALNUM, 40)
            )),
            6 => with(format!("AKIA{}", rng.chars(UPPER, 16))),
            7 => with(format!("ghp_{}", rng.chars(ALNUM, 36))),
            8 => with(format!("sk_live_{}", rng.chars(ALNUM, 24))),
            9 => with(format!("AIza{}", rng.chars(ALNUM, 35))),
            10 => with(format!(
                "xoxp-{}-{}",
                rng.below(1_000_000_000_000),
                rng.chars(ALNUM, 24)
            )),
            11 => {
                let token = rng.chars(ALNUM, 32);
                (format!("Authorization: Bearer {token}"), token)
            }
            12 => {
                let password = rng.chars(ALNUM, 12);
                (
                    format!("https://deploy:{password}@git.example.com/x"),
                    password,
                )
            }
            13 => {
                let value = rng.chars(ALNUM, 20);
                (format!("/cb?state=1&access_token={value}&x=2"), value)
            }
            14 => {
                let value = rng.chars(ALNUM, 16);
                (format!("/n?next=%2Fa%3Fpassword%3D{value}%26b%3D1"), value)
            }
            _ => {
                let body = rng.chars(ALNUM, 64);
                (
                    format!("-----BEGIN PRIVATE KEY-----\n{body}\n-----END PRIVATE KEY-----"),
                    body,
                )
            }
        }
    }

    pub const FILLER: &[&str] = &[
        "GET",
        "/api/v1/items/42",
        "status=200",
        "Chrome/120.0.0.0",
        "2024-06-11T10:20:30Z",
        "SJC",
        "7d3f1a2b3c4d5e6f",
        "ok",
        "cache",
        "hit",
        "über",
        "日本",
        "v2.14.0.3",
        "HTTP/2",
        "q=rust+arrow",
        "(KHTML, like Gecko)",
        "1.5ms",
        "#frag",
        "ray=8e4a2b3c4d5e6f70",
    ];
    pub const SEPARATORS: &[&str] = &[" ", ", ", " | ", "\t", " (", ") ", "; "];
}

#[derive(Debug, Clone)]
struct Cell {
    words: Vec<usize>,
    plant: Option<(u8, u64, usize, usize)>,
}

fn cell_strategy() -> impl proptest::strategy::Strategy<Value = Cell> {
    use proptest::prelude::*;
    (
        proptest::collection::vec(0..planted::FILLER.len(), 0..6),
        proptest::option::weighted(
            0.4,
            (
                0u8..16,
                any::<u64>(),
                0usize..7,
                0..planted::SEPARATORS.len(),
            ),
        ),
    )
        .prop_map(|(words, plant)| Cell { words, plant })
}

fn render(cell: &Cell) -> (String, Option<String>) {
    let mut parts: Vec<String> = cell
        .words
        .iter()
        .map(|&w| planted::FILLER[w].to_owned())
        .collect();
    let mut secret = None;
    if let Some((kind, seed, at, sep)) = cell.plant {
        let (text, keep_out) = planted::secret(kind, seed);
        let at = at.min(parts.len());
        parts.insert(at, text);
        secret = Some(keep_out);
        let sep = planted::SEPARATORS[sep];
        return (parts.join(sep), secret);
    }
    (parts.join(" "), secret)
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 96, ..Default::default() })]

    #[test]
    fn planted_secrets_never_survive(rows in proptest::collection::vec(
        proptest::collection::vec(cell_strategy(), 3), 1..12)) {
        let rendered: Vec<Vec<(String, Option<String>)>> =
            rows.iter().map(|r| r.iter().map(render).collect()).collect();
        let fields: Vec<Field> = (0..3).map(|c| Field::new(format!("c{c}"), DataType::Utf8, true)).collect();
        let columns: Vec<ArrayRef> = (0..3)
            .map(|c| Arc::new(StringArray::from(
                rendered.iter().map(|r| r[c].0.clone()).collect::<Vec<_>>())) as ArrayRef)
            .collect();
        let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap();
        let mut op = build(&RedactConfig::default(), &batch.schema());
        let out = op.process(batch).unwrap();
        for (r, row) in rendered.iter().enumerate() {
            for (c, (input, secret)) in row.iter().enumerate() {
                let output = out.column(c).as_string::<i32>().value(r);
                match secret {
                    Some(secret) => proptest::prop_assert!(
                        !output.contains(secret.as_str()),
                        "secret {:?} survived: {:?} -> {:?}", secret, input, output),
                    None => proptest::prop_assert_eq!(output, input.as_str()),
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// false positives on clean log-like data

#[test]
fn clean_http_requests_are_almost_never_changed() {
    let rows = 20_000;
    let batch = super::synth::http_requests(rows, 0.0, 7);
    let mut op = build(&RedactConfig::default(), &batch.schema());
    let out = op.process(batch.clone()).unwrap();
    let mut changed = vec![false; rows];
    let mut examples = Vec::new();
    for (c, (before, after)) in batch.columns().iter().zip(out.columns()).enumerate() {
        if Arc::ptr_eq(before, after) {
            continue;
        }
        for (r, flag) in changed.iter_mut().enumerate() {
            if before.slice(r, 1) != after.slice(r, 1) {
                *flag = true;
                if examples.len() < 10 {
                    examples.push(format!(
                        "{}: {:?}",
                        batch.schema().field(c).name(),
                        before.slice(r, 1)
                    ));
                }
            }
        }
    }
    let n = changed.iter().filter(|c| **c).count();
    assert!(
        n * 1000 < rows,
        "{n} of {rows} clean rows changed, e.g. {examples:#?}"
    );

    eprintln!("clean rows changed by the default profile: {n} of {rows}");
}

// ---------------------------------------------------------------------------------------
// external oracles (see the module docs)

fn testdata(name: &str) -> String {
    let path = format!("{}/testdata/redact/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Presidio findings Weir deliberately does not cover, with the reason.
const PRESIDIO_DEVIATIONS: &[(&str, &str)] = &[(
    "120.0.0.0",
    "the version in `Chrome/120.0.0.0`: product/version tokens are not IP addresses",
)];

#[test]
fn oracle_presidio_findings_are_covered() {
    let corpus = testdata("corpus.txt");
    let lines: Vec<&str> = corpus.lines().collect();
    let findings: serde_json::Value =
        serde_json::from_str(&testdata("presidio_findings.json")).unwrap();
    let profile = compile(r#"enable = ["ipv4", "ipv6"]"#);
    let mut cache = profile.scanner.create_cache();
    let mut missed = Vec::new();
    let findings = findings["findings"].as_array().unwrap();
    assert!(
        findings.len() >= 30,
        "the committed findings look truncated"
    );
    for f in findings {
        let line = lines[f["line"].as_u64().unwrap() as usize];
        let (start, end) = (
            f["start"].as_u64().unwrap() as usize,
            f["end"].as_u64().unwrap() as usize,
        );
        let text = f["text"].as_str().unwrap();
        assert_eq!(&line[start..end], text, "corpus and findings disagree");
        if PRESIDIO_DEVIATIONS.iter().any(|(t, _)| *t == text) {
            continue;
        }
        let mut hits = Vec::new();
        profile.scanner.scan(&mut cache, line, &mut hits);
        let covered = (start..end).all(|b| hits.iter().any(|h| h.start <= b && b < h.end));
        if !covered {
            missed.push(format!(
                "{} {text:?} in {line:?}: weir hits {hits:?}",
                f["entity"]
            ));
        }
    }
    assert!(
        missed.is_empty(),
        "presidio found what weir did not:\n{}",
        missed.join("\n")
    );
}

#[test]
fn oracle_detect_secrets_findings_are_redacted() {
    let corpus = testdata("secrets.txt");
    let lines: Vec<&str> = corpus.lines().collect();
    let out = redact_all_with(&RedactConfig::default(), &lines);
    if let Ok(path) = std::env::var("WEIR_REDACT_DUMP") {
        std::fs::write(&path, out.join("\n") + "\n").unwrap();
    }
    let findings: serde_json::Value =
        serde_json::from_str(&testdata("detect_secrets_findings.json")).unwrap();
    let findings = findings["findings"].as_array().unwrap();
    assert!(
        findings.len() >= 100,
        "the committed findings look truncated"
    );
    let mut survived = Vec::new();
    for f in findings {
        let line = f["line"].as_u64().unwrap() as usize;
        let secret = f["secret"].as_str().unwrap();
        if out[line].contains(secret) {
            survived.push(format!("{} {secret:?}: {:?}", f["type"], out[line]));
        }
    }
    assert!(
        survived.is_empty(),
        "detect-secrets findings survived:\n{}",
        survived.join("\n")
    );
}

// ---------------------------------------------------------------------------------------
// the gates are necessary conditions: skipping strings they rule out changes no decision

/// Strings built from number-shaped pieces, separators, letters and trigger words, so that
/// near-misses of every detector (and of every gate) are common.
pub(super) fn gate_corpus() -> Vec<String> {
    let mut rng = super::synth::Rng::new(2024);
    let mixed: &[&str] = &[
        "1", "2", "3", "4", "5", "6", "7", "8", "9", "0", "00", "123", "4111", "555", "1234", " ",
        "-", ".", "(", ")", "+", "+1", "+44", "a", "B", "x", "DE", "GB", "de", "89", "_", "/", ":",
        "=", "@", "%40", "token=", "key:", "AKIA", "eyJ", "ghp_", "aws", "Bearer ", "%3D", "&",
        "?", "\u{e9}", "2x.png", "@b.co",
    ];
    let numbers: &[&str] = &[
        "123-45-",
        "6789",
        "078.05.",
        "1120",
        "219 09 ",
        "9999",
        "DE89",
        "3704",
        "0044 ",
        "0532 0130 00",
        "GB29",
        "NWBK",
        "60161331926819",
        "NL91ABNA0417164300",
        "4111-1111-",
        "1111 ",
        "5500 0000 0000 0004",
        "(555) ",
        "555-",
        "0199",
        "415.",
        "+1 ",
        "+49 30 ",
        "12345678",
        " ",
        "-",
        ".",
        "a",
        "x1",
        "_",
        "/",
        "=",
        "1",
        "7",
        "0",
        "3",
        "A",
        "fr",
        "76",
    ];
    let mut out = Vec::new();
    for (pieces, max) in [(mixed, 40), (numbers, 12)] {
        for _ in 0..20_000 {
            let n = 1 + rng.below(max) as usize;
            out.push((0..n).map(|_| *rng.pick(pieces)).collect());
        }
    }
    out.extend(testdata("corpus.txt").lines().map(str::to_owned));
    out.extend(testdata("secrets.txt").lines().map(str::to_owned));
    out
}

/// Profiles the gate tests run under: the default, with IP detectors, and with checksum
/// detectors only.
const GATE_PROFILES: [&str; 3] = [
    "",
    r#"enable = ["ipv4", "ipv6"]"#,
    r#"detectors = ["card", "iban"]"#,
];

#[test]
fn gates_change_no_decision() {
    let corpus = gate_corpus();
    for cfg in GATE_PROFILES {
        let profile = compile(cfg);
        let scanner = &profile.scanner;
        let mut cache = scanner.create_cache();
        let mut hits = 0;
        for value in &corpus {
            let (mut gated, mut ungated) = (Vec::new(), Vec::new());
            scanner.scan(&mut cache, value, &mut gated);
            scanner.scan_ungated(&mut cache, value, &mut ungated);
            assert_eq!(
                gated, ungated,
                "{cfg:?}: the gates changed the hits in {value:?}"
            );
            hits += gated.len();
        }
        assert!(
            hits > 1000,
            "{cfg:?}: the corpus hardly exercises the detectors"
        );
    }
}

/// The scan (one combined matcher, retries at a rejected candidate's start, the shortcut
/// over a rejected email's local part) finds what trying every pattern in order at every
/// byte finds.
#[test]
fn scan_matches_the_reference_walk() {
    let corpus = gate_corpus();
    // Rejected email candidates with other detectors' hits inside and after their local
    // parts, and local parts that hold an encoded `@`.
    let mut values: Vec<String> = [
        "4111111111111111@2x.png",
        "x 4111 1111 1111 1111@2x.png y",
        "a%40b@2x.png",
        "token=abc@2x.png",
        "AKIAIOSFODNN7EXAMPLE@2x.png",
        "ab@2x.png@cd.example.com",
        "ab@2x.png ann@example.org",
        "x%40y%40z.png@2x.js",
        "123-45-6789@logo.svg",
        "+1-415-555-0199@2x.png",
        "DE89370400440532013000@2x.png",
        "caf\u{e9}.r\u{e9}sum\u{e9}@2x.png",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    values.extend(corpus.iter().step_by(8).cloned());
    for cfg in GATE_PROFILES {
        let profile = compile(cfg);
        let scanner = &profile.scanner;
        let mut cache = scanner.create_cache();
        let mut hits = 0;
        for value in &values {
            let (mut got, mut want) = (Vec::new(), Vec::new());
            scanner.scan(&mut cache, value, &mut got);
            scanner.scan_reference(value, &mut want);
            assert_eq!(
                got, want,
                "{cfg:?}: the scan differs from the walk in {value:?}"
            );
            hits += want.len();
        }
        assert!(
            hits > 100,
            "{cfg:?}: the values hardly exercise the detectors"
        );
    }
}

#[test]
fn column_hints_match_string_hints() {
    let corpus = gate_corpus();
    // Adjacent rows whose ends and starts form a trigger literal or `%40` across the row
    // boundary: neither row holds it.
    let mut values: Vec<&str> = vec!["xxxxxxxxxxxxxxxxxxACC", "AKIAABCDEFGHIJKLMNOP", "%4", "0x"];
    values.extend(corpus.iter().map(String::as_str));
    for cfg in ["", r#"enable = ["ipv4", "ipv6"]"#] {
        let profile = compile(cfg);
        let (column, strings) = profile.scanner.hints_both_ways(&values);
        for (i, value) in values.iter().enumerate() {
            assert_eq!(column[i], strings[i], "{cfg:?}: hints of {value:?}");
        }
    }
}

/// The operator's column paths (column hints, the length and run prescreen, the per-column
/// memo of number shapes; or each distinct value once) redact exactly what the ungated
/// scan of each string finds.
#[test]
fn column_path_matches_ungated_scan() {
    let corpus = gate_corpus();
    // Each value twice in a row and a filler that never repeats: too many distinct values
    // for the distinct path, and the memo stays on and answers the repeats.
    let fillers: Vec<String> = (0..corpus.len()).map(|i| format!("f{i}")).collect();
    let row_by_row: Vec<&str> = corpus
        .iter()
        .zip(&fillers)
        .flat_map(|(v, f)| [v.as_str(), v.as_str(), f.as_str()])
        .collect();
    // Each value four times: the distinct path.
    let distinct: Vec<&str> = corpus.iter().flat_map(|v| [v.as_str(); 4]).collect();
    let array = |values: &[&str]| StringArray::from(values.to_vec());
    assert!(!super::operator::scans_distinct(&array(&row_by_row)));
    assert!(super::operator::scans_distinct(&array(&distinct)));
    for (cfg, values) in GATE_PROFILES
        .into_iter()
        .flat_map(|cfg| [(cfg, &row_by_row), (cfg, &distinct)])
    {
        let profile = compile(cfg);
        let mut cache = profile.scanner.create_cache();
        let out = redact_all_with(&config(cfg), values);
        let mut changed = 0;
        for (value, got) in values.iter().zip(&out) {
            let mut hits = Vec::new();
            profile.scanner.scan_ungated(&mut cache, value, &mut hits);
            let mut want = String::new();
            let mut last = 0;
            for hit in &hits {
                want.push_str(&value[last..hit.start]);
                want.push_str(&profile.detectors[hit.detector].placeholder);
                last = hit.end;
            }
            want.push_str(&value[last..]);
            assert_eq!(got, &want, "{cfg:?}: the column path changed {value:?}");
            changed += usize::from(got != value);
        }
        assert!(
            changed > 1000,
            "{cfg:?}: the corpus hardly exercises the detectors"
        );
    }
}

/// Rows, hit counters and string metrics are the same whether a batch's repeated values
/// are scanned once each (the distinct path) or its rows one by one (here: the same rows
/// in batches too short for the distinct path), with null rows and a map whose sensitive
/// keys replace their values.
#[test]
fn distinct_path_counts_like_the_row_path() {
    let corpus = gate_corpus();
    let pool: Vec<&str> = corpus
        .iter()
        .filter(|v| v.len() >= 16)
        .step_by(97)
        .take(100)
        .map(String::as_str)
        .collect();
    let rows = 1200;
    let mut rng = super::synth::Rng::new(7);
    let values: Vec<Option<&str>> = (0..rows)
        .map(|i| (i % 37 != 0).then(|| *rng.pick(&pool)))
        .collect();
    let batch_of = |rows: std::ops::Range<usize>| {
        let mut headers = MapBuilder::new(None, StringBuilder::new(), StringBuilder::new());
        for i in rows.clone() {
            for (k, v) in [
                ("accept", "text/html,application/xhtml+xml;q=0.9"),
                ("authorization", "Bearer abcdefghijklmnop"),
                ("x-note", pool[i % pool.len()]),
            ] {
                headers.keys().append_value(k);
                headers.values().append_value(v);
            }
            headers.append(true).unwrap();
        }
        let headers = headers.finish();
        let column = StringArray::from(values[rows].to_vec());
        let schema = Arc::new(Schema::new(vec![
            Field::new("s", DataType::Utf8, true),
            Field::new("h", headers.data_type().clone(), true),
        ]));
        RecordBatch::try_new(schema, vec![Arc::new(column), Arc::new(headers)]).unwrap()
    };
    let batch = batch_of(0..rows);
    assert!(super::operator::scans_distinct(
        batch.column(0).as_string::<i32>()
    ));
    let map_values = batch.column(1).as_map().values().clone();
    assert!(super::operator::scans_distinct(
        map_values.as_string::<i32>()
    ));
    let cfg = RedactConfig::default();
    let mut whole = build(&cfg, &batch.schema());
    let out = whole.process(batch.clone()).unwrap();
    let mut pieces = build(&cfg, &batch.schema());
    let mut changed = 0;
    for at in (0..rows).step_by(100) {
        let piece = pieces.process(batch_of(at..at + 100)).unwrap();
        assert_eq!(out.slice(at, 100), piece, "rows {at}..{}", at + 100);
        let before = batch.column(0).as_string::<i32>();
        let after = piece.column(0).as_string::<i32>();
        changed += (0..100)
            .filter(|&i| before.value(at + i) != after.value(i))
            .count();
    }
    assert!(changed > 100, "only {changed} rows changed");
    assert_eq!(whole.metrics(), pieces.metrics());
}

/// A sliced batch (its list and map columns keep their whole child arrays) is redacted and
/// counted as its own rows, not as the rows of the batch it was cut from.
#[test]
fn sliced_lists_and_maps_count_only_their_rows() {
    let batch_of = |rows: std::ops::Range<usize>| {
        let mut headers = MapBuilder::new(None, StringBuilder::new(), StringBuilder::new());
        let mut logs: Vec<String> = Vec::new();
        let mut lengths = Vec::new();
        for i in rows {
            headers.keys().append_value("authorization");
            headers
                .values()
                .append_value(format!("Bearer tok{i:04}abcdefghijkl"));
            headers.keys().append_value("referer");
            headers
                .values()
                .append_value(format!("https://a.example/?email=u{i}@example.com"));
            headers.append(true).unwrap();
            logs.push(format!("user u{i}@example.org logged in"));
            logs.push("ok".to_owned());
            lengths.push(2);
        }
        let headers = headers.finish();
        let inner = Arc::new(Field::new("item", DataType::Utf8, true));
        let logs = ListArray::new(
            inner.clone(),
            arrow_buffer::OffsetBuffer::from_lengths(lengths),
            Arc::new(StringArray::from(logs)),
            None,
        );
        let schema = Arc::new(Schema::new(vec![
            Field::new("h", headers.data_type().clone(), true),
            Field::new("logs", DataType::List(inner), true),
        ]));
        RecordBatch::try_new(schema, vec![Arc::new(headers), Arc::new(logs)]).unwrap()
    };
    let cfg = RedactConfig::default();
    let whole = batch_of(0..10);
    let mut sliced_op = build(&cfg, &whole.schema());
    let sliced = sliced_op.process(whole.slice(3, 4)).unwrap();
    let mut direct_op = build(&cfg, &whole.schema());
    let direct = direct_op.process(batch_of(3..7)).unwrap();
    assert_eq!(sliced, direct);
    let metrics = sliced_op.metrics();
    assert_eq!(metrics, direct_op.metrics());
    assert_eq!(metric(&metrics, "sensitive_key", "h"), 4);
    assert_eq!(metric(&metrics, "email", "h"), 4);
    assert_eq!(metric(&metrics, "email", "logs"), 4);
}
