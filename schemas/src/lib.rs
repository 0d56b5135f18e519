//! Weir dataset schemas (API skeleton; implementation in progress).
//!
//! A dataset schema is a JSON data file (see `schemas/datasets/*.json`): the built-in
//! Cloudflare Logpush datasets are compiled in, and users add datasets by writing a file.

use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::{Schema, SchemaRef};
use serde::{Deserialize, Serialize};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum SchemaError {
    #[error("schema {name}: {reason}")]
    Invalid { name: String, reason: String },
    #[error("unknown built-in schema {0}")]
    UnknownBuiltin(String),
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
    #[default]
    Drop,
    Extra,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetSchema {
    pub name: String,
    pub event_time: String,
}

impl DatasetSchema {
    pub fn builtin_names() -> &'static [&'static str] {
        &["http_requests", "firewall_events", "workers_trace_events", "dns_logs"]
    }
    pub fn builtin(name: &str) -> Result<DatasetSchema, SchemaError> {
        Err(SchemaError::UnknownBuiltin(name.to_owned()))
    }
    pub fn from_json(_text: &str) -> Result<DatasetSchema, SchemaError> {
        unimplemented!()
    }
    pub fn resolve(name_or_path: &str) -> Result<DatasetSchema, SchemaError> {
        Self::builtin(name_or_path)
    }
    pub fn arrow_schema(&self, _unknown: UnknownFields) -> SchemaRef {
        Arc::new(Schema::empty())
    }
}

#[derive(Debug, Clone)]
pub struct DecoderOptions {
    pub unknown_fields: UnknownFields,
    pub max_record_bytes: usize,
}

#[derive(Debug, Clone, Error)]
#[error("{reason}")]
pub struct DecodeError {
    pub kind: DecodeErrorKind,
    pub reason: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeErrorKind {
    Empty,
    TooLarge,
    InvalidUtf8,
    InvalidJson,
    WrongType,
    MissingEventTime,
}

#[derive(Debug)]
pub struct Reject {
    pub index: usize,
    pub error: DecodeError,
}

#[derive(Debug)]
pub struct Decoded {
    pub batch: RecordBatch,
    pub rejects: Vec<Reject>,
}

pub struct BatchDecoder {
    schema: SchemaRef,
}

impl BatchDecoder {
    pub fn new(schema: &DatasetSchema, opts: DecoderOptions) -> Result<Self, SchemaError> {
        Ok(BatchDecoder { schema: schema.arrow_schema(opts.unknown_fields) })
    }
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }
    pub fn decode(&mut self, _records: &[&[u8]]) -> Decoded {
        unimplemented!()
    }
}
