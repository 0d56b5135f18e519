//! Tests of the sampler's contract. Statistical tolerances are derived in the tests from
//! the sampling distribution (normal quantiles computed here, Bonferroni across groups),
//! and every input is generated from a fixed seed, so each test is deterministic: a failure
//! means the sampler changed, not bad luck.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::Float64Type;
use arrow_array::{
    Array, ArrayRef, FixedSizeBinaryArray, Float64Array, Int64Array, RecordBatch, StringArray,
    TimestampNanosecondArray,
};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use bytes::Bytes;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::hash::{
    MAX_THRESHOLD, encode_th, rate_of_threshold, threshold_for_rate, trace_id_randomness, xxh64,
};
use super::key::{MISSING, hashed_randomness};
use super::state::water_level;
use super::*;
use crate::config::OperatorConfig;
use crate::{Operator, OperatorError};

// ---------------------------------------------------------------------------------------
// Statistics helpers

/// Complementary error function, Chebyshev fit with fractional error below 1.2e-7
/// (Numerical Recipes' `erfcc`), enough for quantiles to about six digits.
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let value = t * poly.exp();
    if x >= 0.0 { value } else { 2.0 - value }
}

fn normal_cdf(x: f64) -> f64 {
    0.5 * erfc(-x / std::f64::consts::SQRT_2)
}

/// `z` with `Φ(z) = q`, by bisection.
fn normal_quantile(q: f64) -> f64 {
    let (mut low, mut high) = (-40.0f64, 40.0f64);
    for _ in 0..200 {
        let mid = 0.5 * (low + high);
        if normal_cdf(mid) < q {
            low = mid;
        } else {
            high = mid;
        }
    }
    0.5 * (low + high)
}

/// Upper `alpha` critical value of chi-square with `df` degrees of freedom, by the
/// Wilson–Hilferty cube-root normal approximation (relative error well under 1% for
/// `df >= 30`, which is all we use it for).
fn chi_square_critical(df: f64, alpha: f64) -> f64 {
    let z = normal_quantile(1.0 - alpha);
    let a = 2.0 / (9.0 * df);
    df * (1.0 - a + z * a.sqrt()).powi(3)
}

#[test]
fn statistics_helpers_match_tables() {
    assert!((normal_quantile(0.975) - 1.959_964).abs() < 1e-5);
    assert!((normal_quantile(0.9995) - 3.290_527).abs() < 1e-5);
    // Tabulated chi-square 0.999 quantiles: df=63 → 103.442, df=1023 → 1168.5 (approx).
    assert!((chi_square_critical(63.0, 0.001) - 103.442).abs() < 0.3);
    assert!((chi_square_critical(100.0, 0.001) - 149.449).abs() < 0.3);
}

/// Zipf(s) over `n` ranks by inverse CDF.
struct Zipf {
    cumulative: Vec<f64>,
}

impl Zipf {
    fn new(n: usize, s: f64) -> Zipf {
        let mut total = 0.0;
        let cumulative = (1..=n)
            .map(|rank| {
                total += 1.0 / (rank as f64).powf(s);
                total
            })
            .collect::<Vec<_>>();
        let cumulative = cumulative.iter().map(|c| c / total).collect();
        Zipf { cumulative }
    }

    fn sample(&self, rng: &mut impl Rng) -> usize {
        let u: f64 = rng.random();
        self.cumulative
            .partition_point(|c| *c < u)
            .min(self.cumulative.len() - 1)
    }
}

// ---------------------------------------------------------------------------------------
// Input helpers

#[derive(Debug, Clone)]
struct Row {
    ray: Option<String>,
    zone: String,
    status: i64,
    time_ns: Option<i64>,
    client_ip: Option<String>,
}

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("RayID", DataType::Utf8, true),
        Field::new("ZoneName", DataType::Utf8, false),
        Field::new("EdgeResponseStatus", DataType::Int64, false),
        Field::new(
            "EdgeStartTimestamp",
            DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())),
            true,
        ),
        Field::new("ClientIP", DataType::Utf8, true),
    ]))
}

fn batch(rows: &[Row]) -> RecordBatch {
    let columns: Vec<ArrayRef> = vec![
        Arc::new(rows.iter().map(|r| r.ray.clone()).collect::<StringArray>()),
        Arc::new(
            rows.iter()
                .map(|r| Some(r.zone.clone()))
                .collect::<StringArray>(),
        ),
        Arc::new(rows.iter().map(|r| r.status).collect::<Int64Array>()),
        Arc::new(
            rows.iter()
                .map(|r| r.time_ns)
                .collect::<TimestampNanosecondArray>()
                .with_timezone("UTC"),
        ),
        Arc::new(
            rows.iter()
                .map(|r| r.client_ip.clone())
                .collect::<StringArray>(),
        ),
    ];
    RecordBatch::try_new(schema(), columns).unwrap()
}

fn ray_id(index: u64) -> String {
    format!(
        "{:016x}",
        index.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x5A5A
    )
}

/// `count` rows with distinct RayIDs, Zipf-distributed zones and statuses, spread evenly
/// over `seconds` seconds of event time.
fn zipf_rows(count: usize, zones: usize, seconds: i64, seed: u64) -> Vec<Row> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let zipf = Zipf::new(zones, 1.1);
    let start = 1_700_000_000_000_000_000i64;
    (0..count)
        .map(|index| {
            let status = if rng.random::<f64>() < 0.01 { 503 } else { 200 };
            Row {
                ray: Some(ray_id(index as u64)),
                zone: format!("zone{}.example", zipf.sample(&mut rng)),
                status,
                time_ns: Some(start + index as i64 * seconds * 1_000_000_000 / count as i64),
                client_ip: Some(format!("10.0.{}.{}", index % 256, index / 256 % 256)),
            }
        })
        .collect()
}

fn config(text: &str) -> SampleConfig {
    toml::from_str(text).unwrap_or_else(|error| panic!("bad test config: {error}\n{text}"))
}

fn operator(text: &str) -> SampleOperator {
    SampleOperator::new(&config(text), "http_requests", &schema()).unwrap()
}

fn run(op: &mut SampleOperator, rows: &[Row], batch_rows: usize) -> Vec<RecordBatch> {
    rows.chunks(batch_rows)
        .map(|chunk| op.process(batch(chunk)).unwrap())
        .collect()
}

/// `(RayID, _sample_rate)` of every kept row.
fn kept(batches: &[RecordBatch]) -> Vec<(Option<String>, f64)> {
    let mut out = Vec::new();
    for batch in batches {
        let rays = batch.column_by_name("RayID").unwrap().as_string::<i32>();
        let rates = batch
            .column_by_name(RATE_COLUMN)
            .unwrap()
            .as_primitive::<Float64Type>();
        for row in 0..batch.num_rows() {
            let ray = rays.is_valid(row).then(|| rays.value(row).to_owned());
            out.push((ray, rates.value(row)));
        }
    }
    out
}

fn metric(op: &SampleOperator, name: &str, label: (&str, &str)) -> u64 {
    op.metrics()
        .into_iter()
        .find(|m| m.name == name && m.labels.iter().any(|(k, v)| k == label.0 && v == label.1))
        .map(|m| m.value)
        .unwrap_or_else(|| panic!("no metric {name} {label:?}"))
}

// ---------------------------------------------------------------------------------------
// Pinned functions

#[test]
fn xxh64_matches_reference_vectors() {
    // From the reference implementation (xxHash 0.8.4 through python-xxhash 4.1.0).
    let cases: [(&[u8], u64, u64); 6] = [
        (b"", 0, 0xef46db3751d8e999),
        (b"abc", 0, 0x44bc2cf5ad770999),
        (b"0123456789abcdef", 0, 0x5c5b90c34e376d0b),
        (b"0123456789abcdef", 0x5745495200000001, 0xc76189ee2276cb0d),
        (
            b"The quick brown fox jumps over the lazy dog",
            0,
            0x0b242d361fda71bc,
        ),
        (
            b"The quick brown fox jumps over the lazy dog",
            123456789,
            0x529a4705750d354a,
        ),
    ];
    for (input, seed, expected) in cases {
        assert_eq!(xxh64(input, seed), expected, "xxh64({input:?}, {seed})");
    }
}

#[test]
fn thresholds_are_pinned() {
    assert_eq!(threshold_for_rate(1.0), 0);
    assert_eq!(threshold_for_rate(0.5), 1 << 55);
    assert_eq!(threshold_for_rate(0.01), 71_337_018_097_548_657);
    assert_eq!(encode_th(threshold_for_rate(0.01)), "fd70a3d70a3d71");
    assert_eq!(encode_th(threshold_for_rate(0.25)), "c");
    assert_eq!(encode_th(0), "0");
    assert!((rate_of_threshold(threshold_for_rate(0.01)) - 0.01).abs() < 1e-17);
    assert_eq!(
        trace_id_randomness(b"4bf92f3577b34da6a3ce929d0e0e4736"),
        Some(0xce929d0e0e4736)
    );
    assert_eq!(trace_id_randomness(b"not a trace id"), None);
}

/// A RayID's decision is part of the on-disk contract: pin a few.
#[test]
fn decisions_are_pinned() {
    let mut op = operator("key = \"RayID\"\nrate = 0.5\nseed = 7");
    let rows = zipf_rows(16, 3, 1, 1);
    let kept: Vec<String> = kept(&run(&mut op, &rows, 16))
        .into_iter()
        .map(|(ray, _)| ray.unwrap())
        .collect();
    let expected: Vec<String> = rows
        .iter()
        .map(|r| r.ray.clone().unwrap())
        .filter(|ray| (xxh64(ray.as_bytes(), 7) >> 8) >= 1 << 55)
        .collect();
    assert_eq!(kept, expected);
}

// ---------------------------------------------------------------------------------------
// Rate and uniformity

#[test]
fn kept_count_is_within_binomial_interval_and_uniform() {
    const KEYS: u64 = 1_000_000;
    let rate = 0.01;
    let mut op = operator("key = \"RayID\"\nrate = 0.01\nseed = 42");
    let mut kept_by_bucket = [0u64; 64];
    let mut randomness_by_bucket = vec![0u64; 1024];
    let mut kept_total = 0u64;
    let mut randomness = Vec::new();
    for start in (0..KEYS).step_by(8192) {
        let rows: Vec<Row> = (start..(start + 8192).min(KEYS))
            .map(|index| Row {
                ray: Some(ray_id(index)),
                zone: String::new(),
                status: 200,
                time_ns: None,
                client_ip: None,
            })
            .collect();
        let input = batch(&rows);
        hashed_randomness(&input, &["RayID".to_owned()], 42, &mut randomness).unwrap();
        for value in &randomness {
            randomness_by_bucket[(value >> 46) as usize] += 1;
        }
        let output = op.process(input).unwrap();
        let rays = output.column_by_name("RayID").unwrap().as_string::<i32>();
        for ray in rays.iter().flatten() {
            let index = u64::from_str_radix(ray, 16).unwrap() ^ 0x5A5A;
            // Undo the multiplication (0x9E3779B97F4A7C15 is odd, so invertible mod 2^64).
            let inverse = {
                let a = 0x9E37_79B9_7F4A_7C15u64;
                let mut x = a;
                for _ in 0..6 {
                    x = x.wrapping_mul(2u64.wrapping_sub(a.wrapping_mul(x)));
                }
                x
            };
            let original = index.wrapping_mul(inverse);
            assert!(original < KEYS);
            kept_by_bucket[(original % 64) as usize] += 1;
        }
        kept_total += output.num_rows() as u64;
    }

    // Binomial(n, p') with p' the exact keep probability; normal approximation with
    // continuity correction (np = 10^4, so the approximation error is negligible).
    let p = rate_of_threshold(threshold_for_rate(rate));
    let n = KEYS as f64;
    let z = normal_quantile(1.0 - 0.001 / 2.0);
    let sigma = (n * p * (1.0 - p)).sqrt();
    let half_width = z * sigma + 0.5;
    let deviation = (kept_total as f64 - n * p).abs();
    assert!(
        deviation <= half_width,
        "kept {kept_total}, expected {} ± {half_width:.1} (99.9%)",
        n * p
    );

    // Randomness of all keys over 1024 buckets: chi-square with 1023 df at alpha 0.001.
    let expected = n / 1024.0;
    let chi: f64 = randomness_by_bucket
        .iter()
        .map(|&count| (count as f64 - expected).powi(2) / expected)
        .sum();
    let critical = chi_square_critical(1023.0, 0.001);
    assert!(
        chi < critical,
        "randomness chi-square {chi:.1} >= {critical:.1}"
    );

    // Kept keys over 64 buckets of the key space: given the total kept, each bucket holds a
    // multinomial share with equal probabilities; chi-square with 63 df at alpha 0.001.
    let expected = kept_total as f64 / 64.0;
    let chi: f64 = kept_by_bucket
        .iter()
        .map(|&count| (count as f64 - expected).powi(2) / expected)
        .sum();
    let critical = chi_square_critical(63.0, 0.001);
    assert!(chi < critical, "kept chi-square {chi:.1} >= {critical:.1}");
}

// ---------------------------------------------------------------------------------------
// Determinism, subsets

#[test]
fn same_input_same_output_across_runs() {
    let rows = zipf_rows(20_000, 40, 10, 3);
    let text = "key = \"RayID\"\nrate = 0.1\nseed = 9";
    let first = kept(&run(&mut operator(text), &rows, 8192));
    let second = kept(&run(&mut operator(text), &rows, 1000));
    assert_eq!(first, second);
    let other_seed = kept(&run(
        &mut operator("key = \"RayID\"\nrate = 0.1\nseed = 10"),
        &rows,
        8192,
    ));
    assert_ne!(first, other_seed);
}

#[test]
fn kept_keys_are_nested_across_rates() {
    let rows = zipf_rows(50_000, 10, 10, 4);
    let mut previous: Option<HashSet<String>> = None;
    for rate in [0.001, 0.01, 0.05, 0.2, 0.5, 1.0] {
        let mut op = operator(&format!("key = \"RayID\"\nrate = {rate}\nseed = 5"));
        let set: HashSet<String> = kept(&run(&mut op, &rows, 8192))
            .into_iter()
            .map(|(ray, _)| ray.unwrap())
            .collect();
        if let Some(smaller) = &previous {
            assert!(smaller.is_subset(&set), "rate {rate} is not a superset");
        }
        previous = Some(set);
    }
    assert_eq!(previous.unwrap().len(), rows.len());
}

const BUDGET: &str = "key = \"RayID\"\ntime_field = \"EdgeStartTimestamp\"\n\
    budget = { group_by = \"ZoneName\", per_second = 10, excess_per_second = 3 }";
const TARGET: &str = "key = \"RayID\"\ntime_field = \"EdgeStartTimestamp\"\n\
    target = { group_by = [\"ZoneName\", \"EdgeResponseStatus\"], events_per_second = 1000, window_seconds = 1 }";

#[test]
fn stateful_modes_survive_snapshot_restore_and_rebatching() {
    let rows = zipf_rows(60_000, 50, 10, 6);
    for text in [BUDGET, TARGET] {
        let uninterrupted = kept(&run(&mut operator(text), &rows, 8192));

        let rebatched = kept(&run(&mut operator(text), &rows, 777));
        assert_eq!(
            uninterrupted, rebatched,
            "batch boundaries changed decisions"
        );

        let (head, tail) = rows.split_at(25_000);
        let mut first = operator(text);
        let mut out = run(&mut first, head, 8192);
        let state = first.snapshot().expect("stateful mode has state");
        let mut second = operator(text);
        second.restore(state.clone()).unwrap();
        assert_eq!(second.snapshot().unwrap(), state, "snapshot round trip");
        out.extend(run(&mut second, tail, 8192));
        assert_eq!(uninterrupted, kept(&out), "restore changed decisions");
        assert!(
            uninterrupted.len() < rows.len() / 2,
            "the mode should sample"
        );
    }
}

#[test]
fn restore_rejects_foreign_state() {
    let mut budget = operator(BUDGET);
    let mut target = operator(TARGET);
    target.process(batch(&zipf_rows(100, 3, 1, 1))).unwrap();
    let state = target.snapshot().unwrap();
    assert!(matches!(
        budget.restore(state.clone()),
        Err(OperatorError::Restore { .. })
    ));
    assert!(budget.restore(Bytes::from_static(b"garbage")).is_err());
    let mut truncated = state.to_vec();
    truncated.truncate(truncated.len() - 3);
    assert!(target.restore(Bytes::from(truncated)).is_err());
    let mut future = state.to_vec();
    future[4] = 99;
    assert!(target.restore(Bytes::from(future)).is_err());
}

#[test]
fn restore_refuses_state_of_other_groups_or_windows_and_keeps_its_own() {
    let rows = zipf_rows(2_000, 20, 5, 3);
    let mut first = operator(TARGET);
    first.process(batch(&rows)).unwrap();
    let state = first.snapshot().unwrap();
    // A new rate keeps the meaning of the counts: restored.
    let mut faster = operator(&TARGET.replace("events_per_second = 1000", "events_per_second = 5"));
    faster.restore(state.clone()).unwrap();
    // Another grouping or window length gives the counts another meaning: refused, and the
    // operator is left as built.
    for changed in [
        TARGET.replace("[\"ZoneName\", \"EdgeResponseStatus\"]", "\"ZoneName\""),
        TARGET.replace("window_seconds = 1", "window_seconds = 10"),
    ] {
        let mut other = operator(&changed);
        let fresh = other.snapshot().unwrap();
        let err = other.restore(state.clone()).unwrap_err().to_string();
        assert!(err.contains("group_by, window or time_field"), "{err}");
        assert_eq!(
            other.snapshot().unwrap(),
            fresh,
            "a refused restore changes nothing"
        );
    }
}

#[test]
fn version_1_snapshots_are_still_restored() {
    let rows = zipf_rows(2_000, 20, 5, 3);
    let mut first = operator(BUDGET);
    first.process(batch(&rows)).unwrap();
    let v2 = first.snapshot().unwrap();
    // Version 1 is version 2 without the 8-byte settings fingerprint after the policy tag.
    let mut v1 = v2[..6].to_vec();
    v1[4] = 1;
    v1.extend_from_slice(&v2[14..]);
    let mut second = operator(BUDGET);
    second.restore(Bytes::from(v1)).unwrap();
    assert_eq!(second.snapshot().unwrap(), v2);
}

// ---------------------------------------------------------------------------------------
// Unbiased estimates

/// Runs `op` over `rows` and checks the re-weighted count of every zone against the truth,
/// within `z · sqrt(Var)`, where `Var = Σ (1 − pᵢ) / pᵢ` over the zone's rows is the exact
/// variance of the Horvitz–Thompson estimate (each row's pᵢ is fixed before its coin is
/// flipped, and coins of distinct RayIDs are independent), and `z` is the two-sided normal
/// quantile for a family-wise error of 0.001 over all zones (Bonferroni).
fn check_unbiased(mut op: SampleOperator, rows: &[Row]) -> (usize, usize) {
    op.all_rates = Some(Vec::new());
    let output = run(&mut op, rows, 8192);
    let rates = op.all_rates.take().unwrap();
    assert_eq!(rates.len(), rows.len());

    let mut truth: BTreeMap<&str, (f64, f64)> = BTreeMap::new();
    for (row, p) in rows.iter().zip(&rates) {
        let entry = truth.entry(row.zone.as_str()).or_default();
        entry.0 += 1.0;
        entry.1 += (1.0 - p) / p;
    }
    let mut estimate: BTreeMap<String, f64> = BTreeMap::new();
    for batch in &output {
        let zones = batch.column_by_name("ZoneName").unwrap().as_string::<i32>();
        let weights = batch
            .column_by_name(RATE_COLUMN)
            .unwrap()
            .as_primitive::<Float64Type>();
        for row in 0..batch.num_rows() {
            *estimate.entry(zones.value(row).to_owned()).or_default() += 1.0 / weights.value(row);
        }
    }
    let z = normal_quantile(1.0 - 0.001 / (2.0 * truth.len() as f64));
    for (zone, (count, variance)) in &truth {
        let got = estimate.get(*zone).copied().unwrap_or(0.0);
        let tolerance = z * variance.sqrt() + 1e-6 * count;
        assert!(
            (got - count).abs() <= tolerance,
            "{zone}: estimated {got:.1}, true {count}, tolerance {tolerance:.1} (z = {z:.2})"
        );
    }
    let kept_rows = output.iter().map(RecordBatch::num_rows).sum();
    (kept_rows, truth.len())
}

#[test]
fn plain_mode_estimates_are_unbiased() {
    let rows = zipf_rows(200_000, 60, 60, 11);
    let (kept_rows, _) = check_unbiased(operator("key = \"RayID\"\nrate = 0.05\nseed = 1"), &rows);
    assert!(kept_rows < 20_000);
}

#[test]
fn rules_mode_estimates_are_unbiased() {
    let rows = zipf_rows(200_000, 60, 60, 12);
    let text = r#"
key = "RayID"
seed = 2
rate = 0.02
rules = [
  { field = "EdgeResponseStatus", gte = 500, rate = 1.0 },
  { field = "ZoneName", in = ["zone3.example", "zone7.example"], rate = 0.5 },
]
rate_table = { field = "ZoneName", rates = { "zone0.example" = 0.001, "zone1.example" = 0.005 } }
"#;
    let mut op = operator(text);
    op.all_rates = Some(Vec::new());
    let out = run(&mut op, &rows, 8192);
    let rates = op.all_rates.take().unwrap();
    for (row, rate) in rows.iter().zip(&rates) {
        let expected = if row.status >= 500 {
            1.0
        } else if row.zone == "zone3.example" || row.zone == "zone7.example" {
            0.5
        } else if row.zone == "zone0.example" {
            0.001
        } else if row.zone == "zone1.example" {
            0.005
        } else {
            0.02
        };
        assert!((rate - expected).abs() < 1e-15, "{row:?}: {rate}");
    }
    let errors_kept = out
        .iter()
        .map(|b| {
            b.column_by_name("EdgeResponseStatus")
                .unwrap()
                .as_primitive::<arrow_array::types::Int64Type>()
                .iter()
                .filter(|s| *s == Some(503))
                .count()
        })
        .sum::<usize>();
    assert_eq!(errors_kept, rows.iter().filter(|r| r.status >= 500).count());
    assert_eq!(
        metric(&op, "sample_rule_hits_total", ("rule", "0")) as usize,
        errors_kept
    );
    check_unbiased(operator(text), &rows);
}

#[test]
fn budget_mode_estimates_are_unbiased_and_bounded() {
    const PER_SECOND: f64 = 10.0;
    const EXCESS: f64 = 3.0;
    let rows = zipf_rows(240_000, 60, 60, 13);
    let (kept_rows, _) = check_unbiased(operator(BUDGET), &rows);
    assert!(
        kept_rows < rows.len() / 4,
        "kept {kept_rows} of {}",
        rows.len()
    );

    // Expected kept rows per (zone, second) = Σ pᵢ. The formula bounds it by
    // `N + E · (1 + ln(e / E))` for a zone-second with e excess rows (the first N at rate 1,
    // then E/max(prev, j) for the j-th excess row: Σ_j min(1, E/j) ≤ E (1 + ln(e/E))).
    let mut op = operator(BUDGET);
    op.all_rates = Some(Vec::new());
    let out = run(&mut op, &rows, 8192);
    let rates = op.all_rates.take().unwrap();
    let mut cells: BTreeMap<(&str, i64), (f64, f64, f64)> = BTreeMap::new();
    for (row, p) in rows.iter().zip(&rates) {
        let cell = cells
            .entry((
                row.zone.as_str(),
                row.time_ns.unwrap().div_euclid(1_000_000_000),
            ))
            .or_default();
        cell.0 += 1.0;
        cell.1 += p;
        cell.2 += p * (1.0 - p);
    }
    let mut expected_total = 0.0;
    let mut variance_total = 0.0;
    for ((zone, second), (count, expected, variance)) in &cells {
        let excess = (count - PER_SECOND).max(0.0);
        let bound = count.min(PER_SECOND) + EXCESS * (1.0 + (excess / EXCESS).max(1.0).ln());
        assert!(
            *expected <= bound + 1e-9,
            "{zone} @ {second}: expected kept {expected:.2} > bound {bound:.2} ({count} rows)"
        );
        expected_total += expected;
        variance_total += variance;
    }
    // The kept total is a sum of independent Bernoulli(pᵢ): within z·σ at 99.9%.
    let z = normal_quantile(1.0 - 0.001 / 2.0);
    let kept_total: usize = out.iter().map(RecordBatch::num_rows).sum();
    assert!(
        (kept_total as f64 - expected_total).abs() <= z * variance_total.sqrt() + 0.5,
        "kept {kept_total}, expected {expected_total:.1}"
    );
}

#[test]
fn target_mode_estimates_are_unbiased_and_keeps_rare_groups() {
    let seconds = 60;
    let rows = zipf_rows(240_000, 200, seconds, 14);
    let mut op = operator(TARGET);
    op.all_rates = Some(Vec::new());
    let out = run(&mut op, &rows, 8192);
    let rates = op.all_rates.take().unwrap();
    let kept_rows: usize = out.iter().map(RecordBatch::num_rows).sum();
    // About 1000/s is the goal; the first window and the surge guard allow some slack.
    let goal = 1000.0 * seconds as f64;
    assert!(
        (kept_rows as f64) < 1.5 * goal && (kept_rows as f64) > 0.5 * goal,
        "kept {kept_rows}, goal {goal}"
    );
    // Rare (zone, status) groups keep more of their rows than common ones: rates fall as
    // group size grows, and the rarest groups are kept (almost) whole.
    let mut per_group: BTreeMap<(String, i64), (f64, f64)> = BTreeMap::new();
    for (row, rate) in rows.iter().zip(&rates) {
        let entry = per_group.entry((row.zone.clone(), row.status)).or_default();
        entry.0 += 1.0;
        entry.1 += rate;
    }
    let mut by_size: Vec<(f64, f64)> = per_group.values().map(|(n, sum)| (*n, sum / n)).collect();
    by_size.sort_by(|a, b| a.0.total_cmp(&b.0));
    let tenth = by_size.len() / 10;
    let mean = |slice: &[(f64, f64)]| slice.iter().map(|g| g.1).sum::<f64>() / slice.len() as f64;
    let rarest = mean(&by_size[..tenth]);
    let commonest = mean(&by_size[by_size.len() - tenth..]);
    assert!(
        rarest > 0.95 && commonest < 0.5 && by_size.last().unwrap().1 < 0.05,
        "rarest decile mean rate {rarest}, commonest {commonest}, top {:?}",
        by_size.last()
    );
    check_unbiased(operator(TARGET), &rows);
}

#[test]
fn water_level_shares_the_budget() {
    assert_eq!(water_level(&mut [10, 20, 1000], 100.0), 70.0);
    assert_eq!(water_level(&mut [10, 60, 1000], 100.0), 45.0);
    assert_eq!(water_level(&mut [10, 20], 100.0), 90.0);
    assert_eq!(water_level(&mut [], 100.0), 100.0);
    assert_eq!(water_level(&mut [500, 500], 100.0), 50.0);
}

// ---------------------------------------------------------------------------------------
// OpenTelemetry agreement

#[derive(serde::Deserialize)]
struct OtelVectors {
    source: String,
    cases: Vec<OtelCase>,
}

#[derive(serde::Deserialize)]
struct OtelCase {
    probability: f64,
    threshold: u64,
    vectors: Vec<OtelVector>,
}

#[derive(serde::Deserialize)]
struct OtelVector {
    trace_id: String,
    sampled: bool,
    tracestate_ot: Option<String>,
    legacy_sampled: bool,
}

#[test]
fn trace_id_decisions_match_opentelemetry_sdk() {
    let vectors: OtelVectors =
        serde_json::from_str(include_str!("../../testdata/sample/otel_vectors.json")).unwrap();
    assert!(vectors.source.contains("composable_traceid_ratio_based"));
    let trace_schema = Arc::new(Schema::new(vec![Field::new(
        "TraceId",
        DataType::Utf8,
        true,
    )]));
    let mut legacy_disagreements = 0;
    let mut checked = 0;
    for case in &vectors.cases {
        assert_eq!(threshold_for_rate(case.probability), case.threshold);
        let text = format!(
            "key = \"TraceId\"\nrandomness = \"trace_id\"\nrecord_threshold = true\nrate = {:e}",
            case.probability
        );
        let config = config(&text);
        assert_eq!(config.rate, Some(case.probability), "rate survives TOML");
        let mut op = SampleOperator::new(&config, "traces", &trace_schema).unwrap();
        let ids: StringArray = case
            .vectors
            .iter()
            .map(|v| Some(v.trace_id.as_str()))
            .collect();
        let input = RecordBatch::try_new(trace_schema.clone(), vec![Arc::new(ids)]).unwrap();
        let output = op.process(input).unwrap();
        let kept_ids = output.column(0).as_string::<i32>();
        let th = output.column_by_name(TH_COLUMN).unwrap().as_string::<i32>();
        let rates = output
            .column_by_name(RATE_COLUMN)
            .unwrap()
            .as_primitive::<Float64Type>();
        let mut expected = case.vectors.iter().filter(|v| v.sampled);
        for row in 0..output.num_rows() {
            let vector = expected.next().expect("kept a trace the SDK dropped");
            assert_eq!(
                kept_ids.value(row),
                vector.trace_id,
                "p = {}",
                case.probability
            );
            let ot = vector
                .tracestate_ot
                .as_deref()
                .expect("sampled spans carry th");
            assert_eq!(format!("th:{}", th.value(row)), ot);
            assert_eq!(rates.value(row), rate_of_threshold(case.threshold));
            checked += 1;
        }
        assert!(expected.next().is_none(), "dropped a trace the SDK kept");
        legacy_disagreements += case
            .vectors
            .iter()
            .filter(|v| v.sampled != v.legacy_sampled)
            .count();
    }
    assert!(checked > 300);
    // The stable TraceIdRatioBased (low 64 bits < p·2^64) is a different rule.
    assert!(legacy_disagreements > 0);
}

#[test]
fn binary_trace_ids_match_hex_ones() {
    let hex = "4bf92f3577b34da6a3ce929d0e0e4736";
    let bytes: Vec<u8> = (0..16)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    let binary_schema = Arc::new(Schema::new(vec![Field::new(
        "TraceId",
        DataType::FixedSizeBinary(16),
        false,
    )]));
    let column = FixedSizeBinaryArray::try_from_iter(std::iter::once(bytes)).unwrap();
    let input = RecordBatch::try_new(binary_schema.clone(), vec![Arc::new(column)]).unwrap();
    let mut randomness = Vec::new();
    super::key::trace_id_randomness_column(&input, "TraceId", &mut randomness).unwrap();
    assert_eq!(randomness, vec![0xce929d0e0e4736]);
    let threshold_above = 0xce929d0e0e4737u64;
    let rate = (MAX_THRESHOLD - threshold_above) as f64 / MAX_THRESHOLD as f64;
    let config = config(&format!(
        "key = \"TraceId\"\nrandomness = \"trace_id\"\nrate = {rate:e}"
    ));
    let mut op = SampleOperator::new(&config, "traces", &binary_schema).unwrap();
    assert_eq!(op.process(input).unwrap().num_rows(), 0);
}

// ---------------------------------------------------------------------------------------
// Bad input

fn rows_with_missing_keys() -> Vec<Row> {
    let mut rows = zipf_rows(1000, 5, 1, 20);
    for (index, row) in rows.iter_mut().enumerate() {
        if index % 10 == 0 {
            row.ray = None;
        }
        if index % 20 == 0 {
            row.client_ip = None;
        }
    }
    rows
}

#[test]
fn missing_keys_follow_the_policy_and_are_counted() {
    let rows = rows_with_missing_keys();
    let base = "key = \"RayID\"\nrate = 0.000001\nseed = 3\n";

    let mut keep = operator(base);
    let out = kept(&run(&mut keep, &rows, 300));
    assert_eq!(out.iter().filter(|(ray, _)| ray.is_none()).count(), 100);
    assert!(out.iter().all(|(ray, rate)| ray.is_some() || *rate == 1.0));
    assert_eq!(
        metric(&keep, "sample_missing_key_total", ("action", "kept")),
        100
    );

    let mut drop = operator(&format!("{base}on_missing_key = \"drop\""));
    let out = kept(&run(&mut drop, &rows, 300));
    assert!(out.iter().all(|(ray, _)| ray.is_some()));
    assert_eq!(
        metric(&drop, "sample_missing_key_total", ("action", "dropped")),
        100
    );

    let mut fallback = operator(&format!(
        "{base}on_missing_key = {{ fallback = \"ClientIP\" }}"
    ));
    let out = kept(&run(&mut fallback, &rows, 300));
    // Rows without either key are kept at rate 1; the others are sampled at 1e-6.
    assert_eq!(out.iter().filter(|(_, rate)| *rate == 1.0).count(), 50);
    assert_eq!(
        metric(
            &fallback,
            "sample_missing_key_total",
            ("action", "fallback")
        ),
        50
    );
    assert_eq!(
        metric(&fallback, "sample_missing_key_total", ("action", "kept")),
        50
    );
}

#[test]
fn missing_keys_and_times_in_stateful_modes_never_panic() {
    let mut rows = rows_with_missing_keys();
    for (index, row) in rows.iter_mut().enumerate() {
        if index % 7 == 0 {
            row.time_ns = None;
        }
        if index % 13 == 0 {
            // Late and far-early rows.
            row.time_ns = Some(0);
        }
    }
    for text in [BUDGET, TARGET] {
        let mut op = operator(text);
        let out = run(&mut op, &rows, 100);
        assert!(!out.is_empty());
        assert!(
            metric(
                &op,
                "sample_no_time_rows_total",
                ("dataset", "http_requests")
            ) > 0
        );
        assert!(metric(&op, "sample_late_rows_total", ("dataset", "http_requests")) > 0);
    }
}

#[test]
fn invalid_trace_ids_are_missing_keys() {
    let trace_schema = Arc::new(Schema::new(vec![Field::new(
        "TraceId",
        DataType::Utf8,
        true,
    )]));
    let ids = StringArray::from(vec![
        Some("4bf92f3577b34da6a3ce929d0e0e4736"),
        Some("xyz"),
        None,
        Some("4bf92f3577b34da6a3ce929d0e0e473g"),
    ]);
    let input = RecordBatch::try_new(trace_schema.clone(), vec![Arc::new(ids)]).unwrap();
    let config = config(
        "key = \"TraceId\"\nrandomness = \"trace_id\"\nrate = 1e-9\non_missing_key = \"drop\"",
    );
    let mut op = SampleOperator::new(&config, "traces", &trace_schema).unwrap();
    assert_eq!(op.process(input).unwrap().num_rows(), 0);
    assert_eq!(
        metric(&op, "sample_missing_key_total", ("action", "dropped")),
        3
    );
}

#[test]
fn validate_names_the_key_at_fault() {
    let schema = schema();
    let error_key = |text: &str| config(text).validate(&schema).unwrap_err().key;
    assert_eq!(error_key("key = \"RayID\"\nrate = 0.0"), "rate");
    assert_eq!(error_key("key = \"RayID\"\nrate = 1.5"), "rate");
    assert_eq!(error_key("key = \"RayID\"\nrate = -0.1"), "rate");
    assert_eq!(error_key("key = \"RayID\"\nrate = nan"), "rate");
    assert_eq!(error_key("key = \"RayID\"\nrate = 1e-30"), "rate");
    assert_eq!(error_key("key = \"Nope\"\nrate = 0.1"), "key");
    assert_eq!(
        error_key("key = [\"RayID\", \"Nope\"]\nrate = 0.1"),
        "key[1]"
    );
    assert_eq!(error_key("key = \"RayID\""), "rate");
    assert_eq!(
        error_key(
            "key = \"RayID\"\nrate = 0.1\nrules = [{ field = \"ZoneName\", eq = \"a\", rate = 1.0 }, { field = \"EdgeResponseStatus\", gte = 500, rate = 2.0 }]"
        ),
        "rules[1].rate"
    );
    assert_eq!(
        error_key(
            "key = \"RayID\"\nrate = 0.1\nrules = [{ field = \"Nope\", eq = 1, rate = 1.0 }]"
        ),
        "rules[0].field"
    );
    assert_eq!(
        error_key(
            "key = \"RayID\"\nrate = 0.1\nrules = [{ field = \"EdgeResponseStatus\", gte = \"five hundred\", rate = 1.0 }]"
        ),
        "rules[0].gte"
    );
    assert_eq!(
        error_key("key = \"RayID\"\nrate = 0.1\nrules = [{ field = \"ZoneName\", rate = 1.0 }]"),
        "rules[0]"
    );
    assert_eq!(
        error_key(
            "key = \"RayID\"\nrate = 0.1\nrate_table = { field = \"ZoneName\", rates = { a = 0.0 } }"
        ),
        "rate_table.rates.\"a\""
    );
    assert_eq!(
        error_key(
            "key = \"RayID\"\ntime_field = \"EdgeStartTimestamp\"\nbudget = { group_by = \"ZoneName\", per_second = 0 }"
        ),
        "budget.per_second"
    );
    assert_eq!(
        error_key(
            "key = \"RayID\"\ntime_field = \"EdgeStartTimestamp\"\nbudget = { group_by = \"Nope\", per_second = 5 }"
        ),
        "budget.group_by"
    );
    assert_eq!(
        error_key("key = \"RayID\"\nbudget = { group_by = \"ZoneName\", per_second = 5 }"),
        "time_field"
    );
    assert_eq!(
        error_key(
            "key = \"RayID\"\ntime_field = \"ZoneName\"\nbudget = { group_by = \"ZoneName\", per_second = 5 }"
        ),
        "time_field"
    );
    assert_eq!(
        error_key(
            "key = \"RayID\"\ntime_field = \"EdgeStartTimestamp\"\ntarget = { group_by = \"ZoneName\", events_per_second = 0 }"
        ),
        "target.events_per_second"
    );
    assert_eq!(
        error_key(
            "key = \"RayID\"\nrate = 0.1\ntime_field = \"EdgeStartTimestamp\"\ntarget = { group_by = \"ZoneName\", events_per_second = 5 }"
        ),
        "target"
    );
    assert_eq!(
        error_key("key = \"RayID\"\nrate = 0.1\non_missing_key = { fallback = \"Nope\" }"),
        "on_missing_key.fallback"
    );
    assert_eq!(
        error_key("key = \"EdgeResponseStatus\"\nrandomness = \"trace_id\"\nrate = 0.1"),
        "key"
    );
    assert_eq!(
        error_key("key = [\"RayID\", \"ZoneName\"]\nrandomness = \"trace_id\"\nrate = 0.1"),
        "key"
    );
}

#[test]
fn unknown_config_keys_are_refused() {
    assert!(toml::from_str::<SampleConfig>("key = \"RayID\"\nrate = 0.1\nrat = 0.2").is_err());
    assert!(
        toml::from_str::<SampleConfig>(
            "key = \"RayID\"\ntime_field = \"EdgeStartTimestamp\"\nbudget = { group_by = \"ZoneName\", per_second = 5, burst = 1 }"
        )
        .is_err()
    );
}

#[test]
fn builds_through_the_operator_config_enum() {
    #[derive(serde::Deserialize)]
    struct Dataset {
        operators: Vec<OperatorConfig>,
    }
    let dataset: Dataset = toml::from_str(
        r#"
[[operators]]
type = "sample"
key = "RayID"
rate = 0.01
"#,
    )
    .unwrap();
    let [OperatorConfig::Sample(sample)] = dataset.operators.as_slice() else {
        panic!("expected one sample operator");
    };
    assert_eq!(sample.rate, Some(0.01));
    let secrets = crate::config::StaticSecrets::default();
    dataset.operators[0].validate(&schema(), &secrets).unwrap();
    let output = operator("key = \"RayID\"\nrate = 0.01")
        .output_schema(&schema())
        .unwrap();
    assert_eq!(output.field(5).name(), RATE_COLUMN);
    assert_eq!(output.field(5).data_type(), &DataType::Float64);
    assert!(
        operator("key = \"RayID\"\nrate = 0.01")
            .snapshot()
            .is_none()
    );
}

#[test]
fn upstream_sample_rate_is_multiplied() {
    let mut fields: Vec<Field> = schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    fields.push(Field::new(RATE_COLUMN, DataType::Float64, true));
    let with_rate = Arc::new(Schema::new(fields));
    let rows = zipf_rows(2000, 3, 1, 21);
    let base = batch(&rows);
    let mut columns = base.columns().to_vec();
    columns.push(Arc::new(Float64Array::from_iter(
        (0..rows.len()).map(|i| if i % 2 == 0 { Some(0.5) } else { None }),
    )));
    let input = RecordBatch::try_new(with_rate.clone(), columns).unwrap();
    let config = config("key = \"RayID\"\nrate = 0.25\nseed = 4");
    let mut op = SampleOperator::new(&config, "http_requests", &with_rate).unwrap();
    assert_eq!(op.output_schema(&with_rate).unwrap(), with_rate);
    let output = op.process(input).unwrap();
    assert_eq!(output.schema(), with_rate);
    let rates = output.column(5).as_primitive::<Float64Type>();
    let mut seen = HashSet::new();
    for rate in rates.iter() {
        seen.insert(rate.unwrap().to_bits());
    }
    assert_eq!(seen, HashSet::from([0.125f64.to_bits(), 0.25f64.to_bits()]));
}

#[test]
fn hashed_randomness_marks_nulls_missing() {
    let rows = rows_with_missing_keys();
    let mut out = Vec::new();
    hashed_randomness(
        &batch(&rows),
        &["RayID".to_owned(), "ZoneName".to_owned()],
        0,
        &mut out,
    )
    .unwrap();
    assert_eq!(out.iter().filter(|v| **v == MISSING).count(), 100);
    assert!(out.iter().all(|v| *v == MISSING || *v < MAX_THRESHOLD));
}

#[test]
fn group_memory_is_bounded_by_max_groups() {
    let rows = zipf_rows(20_000, 50, 5, 22);
    let text = "key = \"RayID\"\ntime_field = \"EdgeStartTimestamp\"\n\
        budget = { group_by = \"ZoneName\", per_second = 10, max_groups = 4 }";
    let mut op = operator(text);
    let rebatched = kept(&run(&mut operator(text), &rows, 999));
    assert_eq!(kept(&run(&mut op, &rows, 8192)), rebatched);
    assert!(
        metric(
            &op,
            "sample_overflow_group_rows_total",
            ("dataset", "http_requests")
        ) > 0
    );
    let state = op.snapshot().unwrap();
    // Header (39 bytes, with the settings fingerprint) plus at most max_groups + 1
    // (overflow) entries of 24 bytes.
    assert!(state.len() <= 39 + 5 * 24, "{} bytes", state.len());
}

#[test]
fn rule_conditions_cover_null_and_negation() {
    let mut rows = zipf_rows(2000, 4, 1, 23);
    for (index, row) in rows.iter_mut().enumerate() {
        if index % 4 == 0 {
            row.client_ip = None;
        }
    }
    let text = r#"
key = "RayID"
rate = 0.000001
rules = [
  { field = "ClientIP", is_null = true, rate = 1.0 },
  { field = "ZoneName", not_in = ["zone0.example"], lt = "zone2.example", rate = 1.0 },
]
"#;
    let mut op = operator(text);
    op.all_rates = Some(Vec::new());
    run(&mut op, &rows, 500);
    let rates = op.all_rates.take().unwrap();
    for (row, rate) in rows.iter().zip(rates) {
        let expected = row.client_ip.is_none() || row.zone == "zone1.example";
        assert_eq!(rate == 1.0, expected, "{row:?}");
    }
}
