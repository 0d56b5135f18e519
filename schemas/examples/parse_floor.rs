//! Floors for the decoder on this machine now: sonic-rs validating each record (skipping
//! every value), and simdutf8 alone. Debugging aid for decode_throughput's figures.
use std::time::Instant;

use weir_schemas::synth::HttpRequests;

fn main() {
    let records: Vec<Vec<u8>> = HttpRequests::new(1).compact(true).take(50_000).collect();
    for round in 0..2 {
        let start = Instant::now();
        let mut n = 0;
        for r in &records {
            let text = simdutf8::basic::from_utf8(r).unwrap();
            let _: serde::de::IgnoredAny = sonic_rs::from_str(text).unwrap();
            n += 1;
        }
        let sonic = start.elapsed().as_secs_f64() * 1e6 / n as f64;
        let start = Instant::now();
        for r in &records {
            let _: serde::de::IgnoredAny = serde_json::from_slice(r).unwrap();
        }
        let serde = start.elapsed().as_secs_f64() * 1e6 / n as f64;
        let start = Instant::now();
        for r in &records {
            let _: sonic_rs::Value = sonic_rs::from_slice(r).unwrap();
        }
        let dom = start.elapsed().as_secs_f64() * 1e6 / n as f64;
        println!(
            "round {round}: sonic skip {sonic:.2} µs, serde_json skip {serde:.2} µs, sonic dom {dom:.2} µs per record"
        );
    }
}
