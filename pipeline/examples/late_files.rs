//! The cost of late data in the Parquet sink: the same events written once with event
//! times within one hour and once spread over 30 days, through a [`PartitionWriter`] as
//! one partition's worker drives it (batches of the worker's size, a cap on open hours,
//! one close per commit), with no Kafka and no store around it.
//!
//! ```text
//! cargo run --profile profiling -p weir-pipeline --example late_files -- \
//!     [--events 25000] [--days 30] [--commits 2] [--max-open 2] [--rounds 3]
//! ```
//!
//! Prints CPU time per event for each case, per file for the spread one, and the ratio of
//! the two rates (the issue's bound: the spread drains at no less than half the rate).
//! The cases alternate within each round; medians are reported.

use std::time::Instant;

use arrow::array::RecordBatch;
use weir_pipeline::config::ParquetConfig;
use weir_pipeline::sink::parquet::PartitionWriter;
use weir_schemas::synth::HttpRequests;
use weir_schemas::{BatchDecoder, DatasetSchema, DecoderOptions};

/// The allocator `weir` runs with (set `_RJEM_MALLOC_CONF` to `allocator::CONF` of
/// `src/main.rs` to match its settings too; this example runs on one thread).
#[cfg(feature = "jemalloc")]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const BATCH: usize = 8192;
const HOUR_NS: i64 = 3_600_000_000_000;

fn arg<T: std::str::FromStr>(name: &str, default: T) -> T {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn cpu_seconds() -> f64 {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").expect("schedstat");
    let nanos: f64 = text.split_whitespace().next().unwrap().parse().unwrap();
    nanos / 1e9
}

/// Decoded batches of `events` records whose event times are spread evenly, in a
/// scrambled order, over `span_ns`.
fn batches(events: usize, span_ns: i64) -> Vec<RecordBatch> {
    let schema = DatasetSchema::builtin("http_requests").expect("built-in schema");
    let mut decoder = BatchDecoder::new(&schema, DecoderOptions::default()).expect("decoder");
    let mut generator = HttpRequests::new(7).compact(true);
    let start = 1_700_000_000_000_000_000i64 / HOUR_NS * HOUR_NS;
    let mut records = Vec::with_capacity(events);
    for i in 0..events {
        // A multiplicative scramble of i, so consecutive records fall far apart.
        let slot = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) % events as u64;
        generator.set_event_time(start + (slot as i64) * (span_ns / events as i64));
        let mut buf = Vec::with_capacity(2048);
        generator.write_record(&mut buf);
        records.push(buf);
    }
    let slices: Vec<&[u8]> = records.iter().map(Vec::as_slice).collect();
    slices
        .chunks(BATCH)
        .map(|chunk| {
            let decoded = decoder.decode(chunk);
            assert!(decoded.rejects.is_empty(), "synthetic records decode");
            decoded.batch
        })
        .collect()
}

/// CPU seconds, files and bytes of writing `batches` in `commits` commits.
fn drain(batches: &[RecordBatch], commits: usize, max_open: usize) -> (f64, usize, usize) {
    let schema = batches[0].schema();
    let mut writer = PartitionWriter::new(
        "http_requests",
        schema,
        "EdgeStartTimestamp",
        &ParquetConfig::default(),
        Vec::new(),
    )
    .expect("writer");
    let per_commit = batches.len().div_ceil(commits);
    let started = cpu_seconds();
    let mut files = 0;
    let mut bytes = 0;
    for (n, group) in batches.chunks(per_commit).enumerate() {
        writer.set_max_open(max_open);
        for batch in group {
            writer.write(batch).expect("write");
        }
        let closed = writer
            .close(&format!("t-00000-{n:020}-0000000001-e000001.parquet"), &[])
            .expect("close");
        files += closed.len();
        bytes += closed
            .iter()
            .map(|f| f.bytes.content_length())
            .sum::<usize>();
        std::hint::black_box(closed);
    }
    (cpu_seconds() - started, files, bytes)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let events: usize = arg("--events", 25_000);
    let days: i64 = arg("--days", 30);
    let commits: usize = arg("--commits", 2);
    let max_open: usize = arg("--max-open", 2);
    let rounds: usize = arg("--rounds", 3);
    let t = Instant::now();
    let hour = batches(events, HOUR_NS);
    let spread = batches(events, days * 24 * HOUR_NS);
    eprintln!("decoded 2 x {events} events in {:.1?}", t.elapsed());
    let (mut hour_cpu, mut spread_cpu, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    let mut spread_files = 0;
    for round in 0..rounds {
        let (h, _, hour_bytes) = drain(&hour, commits, max_open);
        let (s, files, bytes) = drain(&spread, commits, max_open);
        spread_files = files;
        println!(
            "round {round}: 1 hour {:.2} µs/event {} B/event, {days} days {:.2} µs/event {} B/event ({files} files, {:.0} µs/file beyond the 1-hour cost)",
            h * 1e6 / events as f64,
            hour_bytes / events,
            s * 1e6 / events as f64,
            bytes / events,
            (s - h) * 1e6 / files as f64
        );
        hour_cpu.push(h);
        spread_cpu.push(s);
        ratios.push(h / s);
    }
    println!(
        "median: 1 hour {:.2} µs/event, {days} days {:.2} µs/event over {spread_files} files; rate {days} days / 1 hour {:.2}x",
        median(hour_cpu) * 1e6 / events as f64,
        median(spread_cpu) * 1e6 / events as f64,
        median(ratios)
    );
}
