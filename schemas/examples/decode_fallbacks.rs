//! Which synthetic records leave the compiled decoder's fast path (debugging aid).
use weir_schemas::synth::{HttpRequests, WorkersTraceEvents};
use weir_schemas::{BatchDecoder, DatasetSchema, DecoderEngine, DecoderOptions};

fn main() {
    let sets: [(&str, Vec<Vec<u8>>); 3] = [
        ("http_requests", HttpRequests::new(1).take(2000).collect()),
        (
            "http_requests",
            HttpRequests::new(1).compact(true).take(2000).collect(),
        ),
        (
            "workers_trace_events",
            WorkersTraceEvents::new(1).take(2000).collect(),
        ),
    ];
    for (name, records) in sets {
        let schema = DatasetSchema::builtin(name).unwrap();
        let mut decoder =
            BatchDecoder::with_engine(&schema, DecoderOptions::default(), DecoderEngine::Compiled)
                .unwrap();
        let mut shown = 0;
        for record in &records {
            let before = decoder.fallback_records();
            decoder.decode(&[record]);
            if decoder.fallback_records() > before && shown < 2 {
                shown += 1;
                println!("{}", String::from_utf8_lossy(record));
            }
        }
        println!(
            "{name}: {} of {} records through arrow-json",
            decoder.fallback_records(),
            records.len()
        );
    }
}
