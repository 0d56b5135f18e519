//! Writes synthetic Logpush records of every built-in dataset as an NDJSON archive in
//! Logpush's layout, `<out>/<dataset>/<YYYYMMDD>/<start>_<end>_<n>.log`, for
//! `weir backfill --source file://<out>/<dataset>`. `deploy/pgo.sh` trains the
//! profile-guided build on it.
//!
//! `cargo run --release -p weir-schemas --example synth_archive -- <out> [records] [seed]`
//!
//! `records` per dataset (default 100,000), in files of 25,000; http_requests alternates
//! compact and full records, and half of them take their `ClientIP` from networks the
//! MaxMind test databases in `operators/testdata/enrich/maxmind/` hold (the generator's own
//! addresses are in none), so enrich's lookups both find and miss. One line in 2,000 of
//! each dataset is malformed in one of four ways, so the dead-letter path runs too. Event
//! time starts at 2024-05-01T00:00:00Z and advances 100 µs per record: any count up to 36
//! million stays within the first hour, `--from 2024-05-01T00 --to 2024-05-01T01`.

use std::io::Write;
use std::path::Path;

use weir_schemas::synth::{
    DEFAULT_START_NS, DnsLogs, FirewallEvents, HttpRequests, RecordMeta, WorkersTraceEvents,
};

const FILE_RECORDS: usize = 25_000;

/// Addresses inside networks of the MaxMind test databases (City and ASN).
const KNOWN_IPS: &[&str] = &[
    "81.2.69.160",
    "81.2.69.170",
    "89.160.20.130",
    "175.16.199.7",
    "216.160.83.58",
    "2.125.160.218",
    "67.43.156.9",
    "202.196.224.5",
    "1.128.0.12",
    "12.81.92.40",
    "2001:218::1",
    "2001:230::7",
];

/// Replaces the value of the first `"ClientIP":"…"` member of `record` with `ip`.
fn set_client_ip(record: &mut Vec<u8>, ip: &str) {
    const KEY: &[u8] = b"\"ClientIP\":\"";
    let Some(start) = record.windows(KEY.len()).position(|w| w == KEY) else {
        return;
    };
    let start = start + KEY.len();
    let Some(len) = record[start..].iter().position(|&b| b == b'"') else {
        return;
    };
    record.splice(start..start + len, ip.bytes());
}

const MALFORMED: &[&[u8]] = &[
    b"{\"RayID\": \"not closed\"",
    b"[1, 2, 3]",
    b"{\"EdgeStartTimestamp\": \"yesterday\"}",
    b"\xff\xfe not utf-8",
];

/// Nanoseconds since the epoch in `format` (chrono's `strftime` syntax), UTC.
fn utc(ns: i64, format: &str) -> String {
    chrono::DateTime::from_timestamp_nanos(ns)
        .format(format)
        .to_string()
}

fn write_dataset(
    out: &Path,
    name: &str,
    records: usize,
    mut next: impl FnMut(&mut Vec<u8>, usize) -> RecordMeta,
) -> std::io::Result<()> {
    let mut record = Vec::with_capacity(4096);
    let mut written = 0;
    let mut file_index = 0;
    while written < records {
        let count = FILE_RECORDS.min(records - written);
        let mut text = Vec::with_capacity(count * 2048);
        let (mut first, mut last) = (i64::MAX, i64::MIN);
        for i in written..written + count {
            if i % 2_000 == 1_999 {
                text.extend_from_slice(MALFORMED[i / 2_000 % MALFORMED.len()]);
            } else {
                record.clear();
                let meta = next(&mut record, i);
                first = first.min(meta.event_time_ns);
                last = last.max(meta.event_time_ns);
                text.extend_from_slice(&record);
            }
            text.push(b'\n');
        }
        let day = out.join(name).join(utc(first, "%Y%m%d"));
        std::fs::create_dir_all(&day)?;
        let file = day.join(format!(
            "{}_{}_{file_index:04}.log",
            utc(first, "%Y%m%dT%H%M%SZ"),
            utc(last + 1_000_000_000, "%Y%m%dT%H%M%SZ")
        ));
        std::fs::File::create(&file)?.write_all(&text)?;
        written += count;
        file_index += 1;
    }
    Ok(())
}

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let Some(out) = args.get(1) else {
        eprintln!("usage: synth_archive <out> [records per dataset] [seed]");
        std::process::exit(2);
    };
    let out = Path::new(out);
    let records: usize = args.get(2).map_or(100_000, |n| n.parse().expect("a count"));
    let seed: u64 = args.get(3).map_or(11, |n| n.parse().expect("a seed"));

    let mut compact = HttpRequests::new(seed).compact(true);
    let mut full = HttpRequests::new(seed + 1);
    let mut clock = DEFAULT_START_NS;
    write_dataset(out, "http_requests", records, |record, i| {
        // One clock for both generators, so each file stays in time order.
        let generator = if i % 2 == 0 { &mut compact } else { &mut full };
        generator.set_event_time(clock);
        let meta = generator.write_record(record);
        clock = generator.event_time();
        if i % 4 < 2 {
            set_client_ip(record, KNOWN_IPS[i / 4 % KNOWN_IPS.len()]);
        }
        meta
    })?;
    let mut firewall = FirewallEvents::new(seed);
    write_dataset(out, "firewall_events", records, |record, _| {
        firewall.write_record(record)
    })?;
    let mut workers = WorkersTraceEvents::new(seed);
    write_dataset(out, "workers_trace_events", records, |record, _| {
        workers.write_record(record)
    })?;
    let mut dns = DnsLogs::new(seed);
    write_dataset(out, "dns_logs", records, |record, _| {
        dns.write_record(record)
    })?;
    println!("{records} records of each dataset under {}", out.display());
    Ok(())
}
