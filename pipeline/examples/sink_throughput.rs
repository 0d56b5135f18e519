//! The Parquet writer alone: generated compact `http_requests` events, decoded once
//! before the clock starts, written through one [`PartitionWriter`] at the default
//! `[parquet]` settings and closed every `--commit-rows` rows, as a partition's commits do
//! (no Kafka, no store). Prints CPU µs and output bytes per row for each of `--rounds`.
//!
//! `cargo run --profile profiling -p weir-pipeline --example sink_throughput -- 100000`
//!
//! Under `valgrind --tool=callgrind --toggle-collect='*PartitionWriter::write'
//! --toggle-collect='*PartitionWriter::close'` it counts the writer's instructions per row,
//! a figure that does not move with the machine's load. (A pattern that also matches the
//! functions those call, such as `*PartitionWriter*`, toggles collection off inside them.)

use arrow::array::RecordBatch;
use weir_pipeline::config::ParquetConfig;
use weir_pipeline::sink::parquet::PartitionWriter;
use weir_schemas::synth::HttpRequests;
use weir_schemas::{BatchDecoder, DatasetSchema, DecoderOptions};

/// Seconds this thread has spent on a CPU (Linux).
fn cpu_seconds() -> f64 {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").expect("schedstat");
    let nanos: f64 = text
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .expect("schedstat starts with nanoseconds on a cpu");
    nanos / 1e9
}

fn flag(args: &[String], name: &str, default: usize) -> usize {
    args.windows(2)
        .find(|w| w[0] == name)
        .map_or(default, |w| w[1].parse().expect("a number"))
}

/// Closes the writer's open files: (their bytes, how many).
fn close(writer: &mut PartitionWriter) -> (usize, usize) {
    let files = writer.close("bench.parquet", &[]).expect("close");
    let bytes = files.iter().map(|f| f.bytes.content_length()).sum();
    (bytes, files.len())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let rows: usize = args.get(1).and_then(|n| n.parse().ok()).unwrap_or(100_000);
    let commit_rows = flag(&args, "--commit-rows", 50_000);
    let rounds = flag(&args, "--rounds", 3);

    let schema = DatasetSchema::builtin("http_requests").expect("built-in schema");
    let mut decoder = BatchDecoder::new(&schema, DecoderOptions::default()).expect("decoder");
    let records: Vec<Vec<u8>> = HttpRequests::new(1).compact(true).take(rows).collect();
    let slices: Vec<&[u8]> = records.iter().map(Vec::as_slice).collect();
    let batches: Vec<RecordBatch> = slices
        .chunks(8192)
        .map(|chunk| decoder.decode(chunk).batch)
        .collect();
    drop(records);

    for round in 0..rounds {
        let mut writer = PartitionWriter::new(
            "http_requests",
            decoder.schema().clone(),
            &schema.event_time,
            &ParquetConfig::default(),
            Vec::new(),
        )
        .expect("writer");
        let start = cpu_seconds();
        let (mut bytes, mut pending, mut files) = (0, 0, 0);
        for batch in &batches {
            writer.write(batch).expect("write");
            pending += batch.num_rows();
            if pending >= commit_rows {
                let (b, f) = close(&mut writer);
                (bytes, files, pending) = (bytes + b, files + f, 0);
            }
        }
        let (b, f) = close(&mut writer);
        (bytes, files) = (bytes + b, files + f);
        let cpu = cpu_seconds() - start;
        println!(
            "round {round}: {:.3} µs per row, {:.1} B per row, {files} files, {rows} rows",
            cpu * 1e6 / rows as f64,
            bytes as f64 / rows as f64,
        );
    }
}
