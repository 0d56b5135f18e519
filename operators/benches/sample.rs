//! Throughput of the sample operator on http_requests-like batches.
//!
//! `cargo bench -p weir-operators --bench sample`
//!
//! 8,192-row batches of a 16-hex-digit `RayID`, `ZoneName` drawn Zipf(s = 1.1) from 500
//! zones, `EdgeResponseStatus` (1% 5xx), `EdgeStartTimestamp` advancing 50,000 rows per
//! second of event time, and a few more columns. Every mode is timed with `process`
//! (decide, filter, add `_sample_rate`) against a baseline measured in the same run:
//! `filter_record_batch` of the same batches with a precomputed mask of the same
//! selectivity, which is the least any sampler must pay. One thread, seeded.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::{
    ArrayRef, BooleanArray, Int64Array, RecordBatch, StringArray, TimestampNanosecondArray,
};
use arrow_buffer::BooleanBuffer;
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow_select::filter::filter_record_batch;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use weir_operators::Operator;
use weir_operators::sample::{SampleConfig, SampleOperator};

const ROWS: usize = 8_192;
const BATCHES: usize = 48;
const ZONES: usize = 500;
const ROWS_PER_SECOND: i64 = 50_000;
const RUN_FOR: Duration = Duration::from_secs(3);

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("RayID", DataType::Utf8, false),
        Field::new("ZoneName", DataType::Utf8, false),
        Field::new("EdgeResponseStatus", DataType::Int64, false),
        Field::new(
            "EdgeStartTimestamp",
            DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())),
            false,
        ),
        Field::new("ClientIP", DataType::Utf8, false),
        Field::new("ClientRequestPath", DataType::Utf8, false),
        Field::new("EdgeResponseBytes", DataType::Int64, false),
    ]))
}

fn batches() -> Vec<RecordBatch> {
    let mut rng = ChaCha8Rng::seed_from_u64(2025);
    let mut total = 0.0;
    let cdf: Vec<f64> = (1..=ZONES)
        .map(|rank| {
            total += 1.0 / (rank as f64).powf(1.1);
            total
        })
        .collect();
    let start = 1_700_000_000_000_000_000i64;
    (0..BATCHES)
        .map(|batch| {
            let first = (batch * ROWS) as i64;
            let mut rays = Vec::with_capacity(ROWS);
            let mut zones = Vec::with_capacity(ROWS);
            let mut statuses = Vec::with_capacity(ROWS);
            let mut times = Vec::with_capacity(ROWS);
            let mut ips = Vec::with_capacity(ROWS);
            let mut paths = Vec::with_capacity(ROWS);
            let mut bytes = Vec::with_capacity(ROWS);
            for row in 0..ROWS as i64 {
                let index = first + row;
                rays.push(format!("{:016x}", rng.random::<u64>()));
                let u = rng.random::<f64>() * total;
                zones.push(format!(
                    "zone{}.example.com",
                    cdf.partition_point(|c| *c < u)
                ));
                statuses.push(if rng.random::<f64>() < 0.01 { 503 } else { 200 });
                times.push(start + index * 1_000_000_000 / ROWS_PER_SECOND);
                ips.push(format!(
                    "198.51.{}.{}",
                    rng.random::<u8>(),
                    rng.random::<u8>()
                ));
                paths.push(format!("/api/v1/items/{}", rng.random::<u16>()));
                bytes.push(rng.random_range(200..20_000i64));
            }
            let columns: Vec<ArrayRef> = vec![
                Arc::new(StringArray::from(rays)),
                Arc::new(StringArray::from(zones)),
                Arc::new(Int64Array::from(statuses)),
                Arc::new(TimestampNanosecondArray::from(times).with_timezone("UTC")),
                Arc::new(StringArray::from(ips)),
                Arc::new(StringArray::from(paths)),
                Arc::new(Int64Array::from(bytes)),
            ];
            RecordBatch::try_new(schema(), columns).unwrap()
        })
        .collect()
}

/// Runs `pass` (one pass over all batches, returning kept rows) until `RUN_FOR` elapsed;
/// returns input rows per second and kept fraction.
fn measure(mut pass: impl FnMut() -> usize) -> (f64, f64) {
    pass();
    let started = Instant::now();
    let mut rows = 0usize;
    let mut kept = 0usize;
    while started.elapsed() < RUN_FOR {
        kept += pass();
        rows += ROWS * BATCHES;
    }
    (
        rows as f64 / started.elapsed().as_secs_f64(),
        kept as f64 / rows as f64,
    )
}

fn operator(text: &str) -> SampleOperator {
    let config: SampleConfig = toml::from_str(text).unwrap();
    SampleOperator::new(&config, "http_requests", &schema()).unwrap()
}

fn main() {
    let input = batches();
    let modes = [
        (
            "consistent p=0.01",
            "key = \"RayID\"\nrate = 0.01\nseed = 1",
        ),
        ("consistent p=0.1", "key = \"RayID\"\nrate = 0.1\nseed = 1"),
        (
            "rules + rate table",
            r#"key = "RayID"
rate = 0.01
rules = [
  { field = "EdgeResponseStatus", gte = 500, rate = 1.0 },
  { field = "ZoneName", in = ["zone3.example.com", "zone4.example.com"], rate = 0.5 },
]
rate_table = { field = "ZoneName", rates = { "zone0.example.com" = 0.001, "zone1.example.com" = 0.002 } }"#,
        ),
        (
            "budget 20/s per zone",
            "key = \"RayID\"\ntime_field = \"EdgeStartTimestamp\"\nbudget = { group_by = \"ZoneName\", per_second = 20 }",
        ),
        (
            "target 2000/s by zone+status",
            "key = \"RayID\"\ntime_field = \"EdgeStartTimestamp\"\ntarget = { group_by = [\"ZoneName\", \"EdgeResponseStatus\"], events_per_second = 2000, window_seconds = 1 }",
        ),
    ];
    println!("sample bench: {BATCHES} batches × {ROWS} rows, one thread, {RUN_FOR:?} per line");
    println!(
        "{:<30} {:>14} {:>8} {:>16} {:>8}",
        "mode", "rows/s", "kept", "baseline rows/s", "ratio"
    );
    for (name, text) in modes {
        // Stateful modes are rebuilt each pass so event time starts over; building is cheap.
        let (rate, kept) = measure(|| {
            let mut op = operator(text);
            input
                .iter()
                .map(|batch| black_box(op.process(batch.clone()).unwrap()).num_rows())
                .sum()
        });
        // Baseline: the same selectivity with a precomputed mask (every n-th row).
        let every = (1.0 / kept.max(1e-9)).round().max(1.0) as usize;
        let mask = BooleanArray::new(
            BooleanBuffer::collect_bool(ROWS, |row| row % every == 0),
            None,
        );
        let (baseline, _) = measure(|| {
            input
                .iter()
                .map(|batch| black_box(filter_record_batch(batch, &mask).unwrap()).num_rows())
                .sum()
        });
        println!(
            "{name:<30} {rate:>14.0} {:>7.2}% {baseline:>16.0} {:>7.2}x",
            kept * 100.0,
            baseline / rate
        );
    }
}
