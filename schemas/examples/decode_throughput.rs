//! Release-mode throughput of the synthetic generator and of `BatchDecoder::decode`, with
//! both decoder engines on the same events in the same run (the compiled one against the
//! arrow-json one, as a ratio of µs per record per CPU-second).
//!
//! `cargo run --release -p weir-schemas --example decode_throughput [records]`
//!
//! `DECODE_ONLY` picks engines and `DECODE_CASE` one case (see `compare`).

use std::time::Instant;

use weir_schemas::synth::{HttpRequests, WorkersTraceEvents};
use weir_schemas::{BatchDecoder, DatasetSchema, DecoderEngine, DecoderOptions, UnknownFields};

const BATCH: usize = 8192;

/// Seconds this thread has spent on a CPU (Linux), so that the figures mean "per core"
/// even on a busy machine; falls back to wall time elsewhere.
fn cpu_seconds() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let nanos: f64 = text.split_whitespace().next()?.parse().ok()?;
    Some(nanos / 1e9)
}

struct Timer {
    wall: Instant,
    cpu: Option<f64>,
}

impl Timer {
    fn start() -> Timer {
        Timer {
            wall: Instant::now(),
            cpu: cpu_seconds(),
        }
    }

    /// (wall seconds, cpu seconds)
    fn stop(&self) -> (f64, f64) {
        let wall = self.wall.elapsed().as_secs_f64();
        let cpu = match (self.cpu, cpu_seconds()) {
            (Some(start), Some(end)) => end - start,
            _ => wall,
        };
        (wall, cpu)
    }
}

/// Decodes `records` in batches of [`BATCH`]; returns µs per record per CPU-second.
fn measure(
    label: &str,
    dataset: &str,
    records: &[Vec<u8>],
    unknown_fields: UnknownFields,
    engine: DecoderEngine,
) -> f64 {
    let schema = DatasetSchema::builtin(dataset).expect("built-in schema");
    let options = DecoderOptions {
        unknown_fields,
        ..DecoderOptions::default()
    };
    let mut decoder = BatchDecoder::with_engine(&schema, options, engine).expect("decoder");
    let slices: Vec<&[u8]> = records.iter().map(Vec::as_slice).collect();
    let bytes: usize = records.iter().map(Vec::len).sum();
    // One warm-up pass, then the timed passes.
    for chunk in slices.chunks(BATCH) {
        decoder.decode(chunk);
    }
    let passes = 3;
    let timer = Timer::start();
    let mut rows = 0;
    for _ in 0..passes {
        for chunk in slices.chunks(BATCH) {
            let decoded = decoder.decode(chunk);
            assert!(decoded.rejects.is_empty());
            rows += decoded.batch.num_rows();
        }
    }
    let (wall, cpu) = timer.stop();
    let micros = cpu * 1e6 / rows as f64;
    let engine = match engine {
        DecoderEngine::Compiled => "compiled",
        DecoderEngine::CompiledSonic => "sonic-rs",
        DecoderEngine::CompiledSerdeJson => "serde_json",
        DecoderEngine::ArrowJson => "arrow-json",
    };
    println!(
        "decode {label:<34} {engine:<10} {micros:>6.2} µs/record {:>7.1} MB/s per cpu-second ({:>6.1} wall) {:>9.0} records/cpu-s ({} B avg)",
        (bytes * passes) as f64 / cpu / 1e6,
        (bytes * passes) as f64 / wall / 1e6,
        rows as f64 / cpu,
        bytes / records.len()
    );
    micros
}

/// The arrow-json engine and the compiled one with each parser on the same records; prints
/// old / new for each.
fn compare(label: &str, dataset: &str, records: &[Vec<u8>], unknown_fields: UnknownFields) {
    // DECODE_CASE="http_requests compact" (a label as printed): that case alone, for
    // callgrind runs (`--toggle-collect='*CompiledDecoder*decode*'`: instructions per
    // record are the count over 4 × records, the warm-up and the 3 timed passes).
    if std::env::var("DECODE_CASE").is_ok_and(|case| case != label) {
        return;
    }
    let compiled = [
        DecoderEngine::CompiledSonic,
        DecoderEngine::CompiledSerdeJson,
    ];
    // For profiles of the new engine alone: DECODE_ONLY=compiled (both parsers),
    // DECODE_ONLY=sonic-rs or DECODE_ONLY=serde_json (one).
    match std::env::var("DECODE_ONLY").as_deref() {
        Ok("compiled") => {
            for engine in compiled {
                measure(label, dataset, records, unknown_fields, engine);
            }
            return;
        }
        Ok("sonic-rs") => {
            measure(label, dataset, records, unknown_fields, compiled[0]);
            return;
        }
        Ok("serde_json") => {
            measure(label, dataset, records, unknown_fields, compiled[1]);
            return;
        }
        _ => {}
    }
    let old = measure(
        label,
        dataset,
        records,
        unknown_fields,
        DecoderEngine::ArrowJson,
    );
    for engine in compiled {
        let new = measure(label, dataset, records, unknown_fields, engine);
        println!(
            "decode {label:<34} {engine:?} is {:.2}x arrow-json ({old:.2} → {new:.2} µs/record)",
            old / new
        );
    }
}

/// The record with the integer value of `key` written with a `.0`.
fn integer_as_float(record: &[u8], key: &str) -> Vec<u8> {
    let text = std::str::from_utf8(record).expect("generated records are utf-8");
    let key = format!("\"{key}\":");
    let Some(start) = text.find(&key).map(|at| at + key.len()) else {
        return record.to_vec();
    };
    let end = start + text[start..].find([',', '}']).expect("a value ends");
    format!("{}.0{}", &text[..end], &text[end..]).into_bytes()
}

fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("model name") || l.starts_with("Model"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown cpu".to_owned());
    format!("{cpus} cpus, {model}, {}", std::env::consts::ARCH)
}

fn main() {
    let count: usize = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(100_000);

    println!("machine: {}", machine());
    println!(
        "compiled engine's parser in this build: {:?}",
        weir_schemas::Parser::DEFAULT
    );
    let timer = Timer::start();
    let mut generator = HttpRequests::new(1);
    let mut out = Vec::with_capacity(4096);
    let mut bytes = 0;
    for _ in 0..count {
        out.clear();
        generator.write_record(&mut out);
        bytes += out.len();
    }
    let (wall, cpu) = timer.stop();
    println!(
        "generate http_requests (full)            {:>7.1} MB/s per cpu-second ({:>6.1} wall) {:>9.0} records/cpu-s",
        bytes as f64 / cpu / 1e6,
        bytes as f64 / wall / 1e6,
        count as f64 / cpu
    );

    let full: Vec<Vec<u8>> = HttpRequests::new(1).take(count).collect();
    let compact: Vec<Vec<u8>> = HttpRequests::new(1).compact(true).take(count).collect();
    let workers: Vec<Vec<u8>> = WorkersTraceEvents::new(1).take(count).collect();
    compare(
        "http_requests full",
        "http_requests",
        &full,
        UnknownFields::Drop,
    );
    compare(
        "http_requests compact",
        "http_requests",
        &compact,
        UnknownFields::Drop,
    );
    // One record in 1,000 outside the compiled engine's fast path (an integer written as
    // `432.0`): arrow-json decodes that record alone, and its row joins the batch.
    let odd: Vec<Vec<u8>> = compact
        .iter()
        .enumerate()
        .map(|(i, record)| {
            if i % 1000 == 999 {
                integer_as_float(record, "ClientRequestBytes")
            } else {
                record.clone()
            }
        })
        .collect();
    compare(
        "http_requests compact, 1 in 1,000 odd",
        "http_requests",
        &odd,
        UnknownFields::Drop,
    );
    compare(
        "http_requests full, extra mode",
        "http_requests",
        &full,
        UnknownFields::Extra,
    );
    compare(
        "workers_trace_events (json fields)",
        "workers_trace_events",
        &workers,
        UnknownFields::Drop,
    );
}
