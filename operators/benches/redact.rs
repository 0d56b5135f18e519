//! Throughput of the `redact` default profile on `http_requests`-like batches.
//!
//! `cargo bench -p weir-operators --bench redact`
//!
//! 8k-row batches (21 string columns, a RequestHeaders map and a Cookies map, two integer
//! columns), 2% of rows carrying one planted secret. Reports rows/s on one thread and two
//! baselines measured in the same run over the same batches: one `memchr` pass over every
//! string byte (the floor of any byte scan), and a deep copy of every string column (what
//! an operator that rebuilt every column would at least pay).

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use arrow_array::cast::AsArray;
use arrow_array::{Array, ArrayRef, RecordBatch, StringArray};
use arrow_schema::DataType;
use weir_operators::config::{BuildContext, StaticSecrets};
use weir_operators::enrich::Resources;
use weir_operators::redact::{RedactConfig, synth};

const ROWS: usize = 8192;
const BATCHES: usize = 8;

fn string_buffers(array: &ArrayRef, out: &mut Vec<ArrayRef>) {
    match array.data_type() {
        DataType::Utf8 => out.push(array.clone()),
        DataType::Map(_, _) => {
            let map = array.as_map();
            out.push(map.keys().clone());
            out.push(map.values().clone());
        }
        _ => {}
    }
}

fn memchr_pass(batches: &[RecordBatch]) -> usize {
    let mut found = 0;
    for batch in batches {
        let mut arrays = Vec::new();
        for column in batch.columns() {
            string_buffers(column, &mut arrays);
        }
        for array in arrays {
            let strings = array.as_string::<i32>();
            found += memchr::memchr_iter(b'@', strings.value_data()).count();
        }
    }
    found
}

fn copy_pass(batches: &[RecordBatch]) -> usize {
    let mut len = 0;
    for batch in batches {
        let mut arrays = Vec::new();
        for column in batch.columns() {
            string_buffers(column, &mut arrays);
        }
        for array in arrays {
            let strings = array.as_string::<i32>();
            let copy: StringArray = strings.iter().collect();
            len += copy.len();
        }
    }
    len
}

/// Seconds per call of `f`: the median of `rounds` timed calls after one warm-up call.
/// The median, not the mean, so that a round slowed by another process on the machine
/// does not move the figure; every pass (redact and both baselines) is timed the same way.
fn time<F: FnMut() -> usize>(rounds: usize, mut f: F) -> f64 {
    f(); // warm up
    let mut times: Vec<f64> = (0..rounds)
        .map(|_| {
            let start = Instant::now();
            black_box(f());
            start.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

fn main() {
    let batches: Vec<RecordBatch> = (0..BATCHES)
        .map(|i| synth::http_requests(ROWS, 0.02, 1000 + i as u64))
        .collect();
    let rows = (ROWS * BATCHES) as f64;
    let string_bytes: usize = batches
        .iter()
        .flat_map(|b| b.columns().to_vec())
        .map(|c| {
            let mut arrays = Vec::new();
            string_buffers(&c, &mut arrays);
            arrays
                .iter()
                .map(|a| a.as_string::<i32>().value_data().len())
                .sum::<usize>()
        })
        .sum();

    let secrets = StaticSecrets::default();
    let resources = Resources::default();
    let ctx = BuildContext {
        dataset: "http_requests",
        input_schema: batches[0].schema(),
        secrets: &secrets,
        resources: &resources,
    };
    // WEIR_REDACT_BENCH_CONFIG=<toml> measures another profile (e.g. `detectors = []`).
    let config: RedactConfig = match std::env::var("WEIR_REDACT_BENCH_CONFIG") {
        Ok(text) => toml::from_str(&text).expect("valid redact config"),
        Err(_) => RedactConfig::default(),
    };
    let mut op = config.build(&ctx).expect("default profile builds");

    // WEIR_REDACT_BENCH_ROUNDS=<n>: other than 11 timed rounds. Under callgrind, the
    // difference between 11 rounds and 1 is the steady state, without the warm-up round.
    let rounds: usize = std::env::var("WEIR_REDACT_BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(11);
    let redact = time(rounds, || {
        let mut changed = 0;
        for batch in &batches {
            let out = op.process(batch.clone()).expect("redact");
            changed += out
                .columns()
                .iter()
                .zip(batch.columns())
                .filter(|(a, b)| !Arc::ptr_eq(a, b))
                .count();
        }
        changed
    });
    let memchr = time(rounds, || memchr_pass(&batches));
    let copy = time(rounds, || copy_pass(&batches));

    let metrics = op.metrics();
    let searched = metrics
        .iter()
        .find(|m| m.name == "redact_strings_searched_total")
        .map_or(0, |m| m.value);
    let total = metrics
        .iter()
        .find(|m| m.name == "redact_strings_total")
        .map_or(0, |m| m.value);
    println!(
        "redact default profile: {:.0} rows/s ({:.1} MB/s of string bytes, {:.1} bytes/row), {} batches x {} rows",
        rows / redact,
        string_bytes as f64 / redact / 1e6,
        string_bytes as f64 / rows,
        BATCHES,
        ROWS
    );
    println!(
        "baseline memchr pass: {:.0} rows/s -> redact takes {:.1}x its time",
        rows / memchr,
        redact / memchr
    );
    println!(
        "baseline string copy: {:.0} rows/s -> redact takes {:.2}x its time",
        rows / copy,
        redact / copy
    );
    println!(
        "strings searched by the regex after the trigger gates: {searched} of {total} ({:.1}%)",
        100.0 * searched as f64 / total.max(1) as f64
    );
}
