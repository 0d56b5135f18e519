//! Floors for the decoder on this machine: sonic-rs and serde_json validating each record
//! while skipping every value, and sonic-rs's lazy object iterator handing over each
//! top-level key and raw value (strings copied out, as the decoder would). Debugging aid for
//! decode_throughput's figures.
//!
//!   parse_floor            # times all three, two rounds
//!   parse_floor serde      # one pass of the serde_json skip only (for callgrind)
//!   parse_floor lazy       # one pass of the lazy iterator only
use std::hint::black_box;
use std::time::Instant;

use weir_schemas::synth::HttpRequests;

#[inline(never)]
fn serde_skip(records: &[Vec<u8>]) -> usize {
    let mut n = 0;
    for r in records {
        let _: serde::de::IgnoredAny = serde_json::from_slice(r).unwrap();
        n += 1;
    }
    n
}

#[inline(never)]
fn sonic_lazy(records: &[Vec<u8>], out: &mut Vec<u8>) -> usize {
    let mut n = 0;
    for r in records {
        let text = simdutf8::basic::from_utf8(r).unwrap();
        for entry in sonic_rs::to_object_iter(text) {
            let (key, value) = entry.unwrap();
            n += key.len();
            let raw = value.as_raw_str().as_bytes();
            if raw[0] == b'"' {
                out.extend_from_slice(&raw[1..raw.len() - 1]);
            } else {
                n += raw.len();
            }
        }
        out.clear();
    }
    n
}

fn main() {
    let records: Vec<Vec<u8>> = HttpRequests::new(1).compact(true).take(50_000).collect();
    let mode = std::env::args().nth(1).unwrap_or_default();
    let mut out = Vec::new();
    if mode == "serde" {
        black_box(serde_skip(&records));
        return;
    }
    if mode == "lazy" {
        black_box(sonic_lazy(&records, &mut out));
        return;
    }
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
        black_box(serde_skip(&records));
        let serde = start.elapsed().as_secs_f64() * 1e6 / n as f64;
        let start = Instant::now();
        black_box(sonic_lazy(&records, &mut out));
        let lazy = start.elapsed().as_secs_f64() * 1e6 / n as f64;
        println!(
            "round {round}: sonic skip {sonic:.2} µs, serde_json skip {serde:.2} µs, sonic lazy iter {lazy:.2} µs per record"
        );
    }
}
