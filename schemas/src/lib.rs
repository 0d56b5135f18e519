//! Weir dataset schemas: schema files, Arrow schemas, and NDJSON → Arrow decoding.
//!
//! ```text
//! schema file (JSON) ──from_json/validate──▶ DatasetSchema ──arrow_schema──▶ SchemaRef
//!                                                 │
//! Kafka messages (&[&[u8]]) ──▶ BatchDecoder ─────┴──▶ Decoded { batch, rejects }
//! ```
//!
//! # Schema files
//!
//! A dataset is described by one JSON file. The Cloudflare Logpush datasets are compiled in
//! from `schemas/datasets/*.json`; any other dataset is a file of the same shape passed by
//! path (see [`DatasetSchema::resolve`]), so adding one needs no rebuild.
//!
//! ```json
//! {
//!   "name": "checkout_events",
//!   "version": 1,
//!   "description": "what the dataset holds (optional)",
//!   "event_time": "At",
//!   "fields": [
//!     { "name": "At", "type": "timestamp", "description": "when it happened" },
//!     { "name": "Amount", "type": "float", "nullable": false },
//!     { "name": "Tags", "type": { "list": "string" } },
//!     { "name": "Headers", "type": { "map": "string" } },
//!     { "name": "Cart", "type": { "struct": [
//!         { "name": "Items", "type": "int" },
//!         { "name": "Raw", "type": "json" } ] } }
//!   ]
//! }
//! ```
//!
//! - `name`: ascii letters, digits, `_`, `-` (it becomes a folder of the lake).
//! - `version`: ≥ 1; bump it when the fields change.
//! - `event_time`: a top-level field of type `timestamp`; records without one are rejected.
//! - `fields[]`: `name` (unique within its struct; `_extra` is reserved at the top level),
//!   `type`, optional `description`, optional `nullable` (default `true`; a record whose
//!   non-nullable top-level field is missing or null is rejected as `missing_field`).
//!   Unknown keys anywhere in the file are errors.
//!
//! | type | Arrow column | accepts |
//! |---|---|---|
//! | `int` | Int64 | integers (also as strings of digits) |
//! | `float` | Float64 | numbers |
//! | `bool` | Boolean | `true` / `false` |
//! | `string` | Utf8 | strings; numbers and booleans are kept as their text |
//! | `timestamp` | Timestamp(ns, "UTC") | unix s/ms/µs/ns by magnitude or RFC 3339, see [`timestamp`]; top level only |
//! | `timestamp_s` … `timestamp_ns` | Timestamp(unit, "UTC") | numbers in that unit or RFC 3339; any depth |
//! | `json` | Utf8 | any JSON value, stored as its JSON text; a struct field only (not a list element or map value) |
//! | `{"list": T}` | List<T> (item field `item`) | arrays |
//! | `{"map": T}` | Map<Utf8, T> (`entries` / `keys` / `values`, unsorted) | objects with any keys |
//! | `{"struct": [fields]}` | Struct | objects; keys not declared are dropped |
//!
//! # Nested fields of the built-in datasets
//!
//! | dataset | field | column |
//! |---|---|---|
//! | http_requests | `RequestHeaders`, `ResponseHeaders`, `Cookies`, `JA4Signals` | Map<Utf8, Utf8> |
//! | http_requests | `BotDetectionIDs`, `ContentScanObjSizes`, `FraudDetectionIDs` | List<Int64> |
//! | http_requests | `BotTags`, `SecurityActions`, … (every `array[string]`) | List<Utf8> |
//! | firewall_events | `Metadata` | Map<Utf8, Utf8> |
//! | firewall_events | `AISecurityPIICategories`, … (every `array[string]`) | List<Utf8> |
//! | workers_trace_events | `Event` | Struct { `request`: Struct { `url`, `method`, `headers`: Map<Utf8, Utf8>, `cf`: JSON text }, `response`: Struct { `status`: Int64 }, `scheduledTime`: Timestamp(ms), `cron`, `queue`, `batchSize`: Int64, `rpcMethod`, `mailFrom`, `rcptTo`, `rawSize`: Int64 } |
//! | workers_trace_events | `Logs` | List<Struct { `level`: Utf8, `message`: JSON text (the array of logged values), `timestamp`: Timestamp(ms) }> |
//! | workers_trace_events | `Exceptions` | List<Struct { `name`: Utf8, `message`: Utf8, `timestamp`: Timestamp(ms) }> |
//! | workers_trace_events | `ScriptTags` | List<Utf8> |
//! | workers_trace_events | `ScriptVersion` | Struct { `id`, `tag`, `message`: Utf8 } |
//!
//! Timestamps that Logpush sends as "int or string" (`EdgeStartTimestamp`,
//! `EdgeEndTimestamp`, `Datetime`, `Timestamp`, and `EventTimestampMs`) are `timestamp`.
//!
//! # Decoding
//!
//! [`BatchDecoder`] decodes each message in one pass straight into column buffers compiled
//! from the schema, or with arrow-json (the older engine, kept as the test oracle and as the
//! fallback for odd records); see [`decode`] for the engines and how bad records are
//! isolated. Unknown top-level keys are dropped, or with [`UnknownFields::Extra`] gathered
//! into one nullable Utf8 column `_extra` holding a JSON object of them.

mod compiled;
pub mod decode;
mod rawpass;
pub mod schema;
pub mod synth;
pub mod timestamp;

use serde::{Deserialize, Serialize};
use thiserror::Error;

pub use decode::{
    BatchDecoder, DecodeError, DecodeErrorKind, Decoded, DecoderEngine, DecoderOptions, Parser,
    Reject,
};
pub use schema::{DatasetSchema, EXTRA_COLUMN, FieldDef, FieldType};

/// A schema that cannot be used: the user's file (or name) is at fault, not the input data.
#[derive(Debug, Error)]
pub enum SchemaError {
    #[error("schema {name}: {reason}")]
    Invalid { name: String, reason: String },
    #[error("unknown built-in schema {0}")]
    UnknownBuiltin(String),
    #[error(
        "no built-in schema is named {name} (built-in: {builtins}) and no schema file is at that path"
    )]
    NotFound { name: String, builtins: String },
    #[error("cannot read schema file {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// What to do with JSON fields that the schema does not name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnknownFields {
    /// Ignore them.
    #[default]
    Drop,
    /// Keep them as a JSON object in the `_extra` column.
    Extra,
}

#[cfg(test)]
mod tests;
