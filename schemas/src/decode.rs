//! NDJSON → Arrow decoding with per-record errors.
//!
//! [`BatchDecoder`] has two engines, picked by [`DecoderEngine::DEFAULT`] (the one switch):
//!
//! - the compiled engine ([`DecoderEngine::Compiled`], module `compiled`): one strict JSON
//!   pass per record straight into column buffers built from the schema; records outside
//!   its fast path are decoded alone by the arrow-json engine, so both give the same
//!   batches and rejects;
//! - the arrow-json engine ([`DecoderEngine::ArrowJson`], below): the first implementation,
//!   kept as the test oracle of the compiled one and as its fallback.
//!
//! The arrow-json engine:
//!
//! ```text
//! messages ─▶ checks (empty, too large, utf-8) ─▶ arrow-json Decoder, one message at a time
//!                                                   │ exactly one complete value each?
//!                                                   ▼
//!                                 flush ─ error ─▶ bisect with fresh decoders until each
//!                                   │              failing record stands alone
//!                                   ▼
//!              second parse (json fields, `_extra`), only when the schema needs it
//!                                   │
//!                                   ▼
//!        timestamps normalised, event time and non-null fields checked, rejects filtered
//! ```
//!
//! Each message must hold exactly one JSON object: after feeding it, the arrow-json decoder
//! must have exactly one more row, no partial row, and have consumed every byte; otherwise
//! the record is `invalid_json` and the decoder is rebuilt from the good records before it.
//! arrow-json's tokenizer skips stray commas between members (`{"a":1,}` is accepted); a
//! record like that still yields exactly one row holding exactly its values. When the second
//! parse runs (json fields or `_extra`), serde_json is strict and refuses it as
//! `invalid_json`.
//!
//! Measured (`cargo run --release -p weir-schemas --example decode_throughput`, MB/s per
//! CPU-second on the shared dev machine): http_requests full records 227 without the second
//! parse and 134 with `_extra`; compact records 155; workers_trace_events, whose json fields
//! always need it, 90 (175k small records/s). So the second parse roughly halves throughput
//! and is only paid where a schema or option asks for it.
//!
//! The fast path (every record good) tokenizes each message once with arrow-json and
//! builds columns straight from its tape; nothing per record is allocated on the heap
//! besides what the column builders hold.

use std::sync::Arc;

use arrow_array::builder::TimestampNanosecondBuilder;
use arrow_array::cast::AsArray;
use arrow_array::{Array, ArrayRef, BooleanArray, ListArray, RecordBatch, StructArray};
use arrow_json::ReaderBuilder;
use arrow_json::reader::Decoder;
use arrow_schema::{ArrowError, DataType, FieldRef, SchemaRef};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::compiled::CompiledDecoder;
pub use crate::compiled::Parser;
use crate::rawpass::{RawColumns, RawPass};
use crate::schema::{DatasetSchema, FieldType, Stage, UTC, struct_fields};
use crate::timestamp::parse_instant;
use crate::{SchemaError, UnknownFields};

/// Records arrow-json buffers before a flush; larger inputs are decoded in chunks.
const CHUNK_ROWS: usize = 2048;

/// How a [`BatchDecoder`] treats its input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecoderOptions {
    #[serde(default)]
    pub unknown_fields: UnknownFields,
    /// Messages longer than this are rejected as [`DecodeErrorKind::TooLarge`] unread.
    #[serde(default = "default_max_record_bytes")]
    pub max_record_bytes: usize,
}

fn default_max_record_bytes() -> usize {
    1 << 20
}

impl Default for DecoderOptions {
    fn default() -> Self {
        DecoderOptions {
            unknown_fields: UnknownFields::Drop,
            max_record_bytes: default_max_record_bytes(),
        }
    }
}

/// Why one record was refused. The record's fault, never the decoder's: retrying the same
/// bytes gives the same error, so the record belongs in the dead-letter destination.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{}: {reason}", kind.as_str())]
pub struct DecodeError {
    pub kind: DecodeErrorKind,
    pub reason: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DecodeErrorKind {
    /// Zero-length message.
    Empty,
    /// Longer than `max_record_bytes`.
    TooLarge,
    InvalidUtf8,
    /// Not exactly one JSON object: a syntax error, trailing bytes, several values, or a
    /// value that is not an object.
    InvalidJson,
    /// A field's value does not fit its declared type.
    WrongType,
    /// The event-time field is missing, null, not an instant, or (checked by the pipeline,
    /// which holds the clock) too far in the future. Named `missing_event_time` before
    /// the future bound existed.
    InvalidEventTime,
    /// A field declared `"nullable": false` is missing or null.
    MissingField,
}

impl DecodeErrorKind {
    pub const ALL: [DecodeErrorKind; 7] = [
        DecodeErrorKind::Empty,
        DecodeErrorKind::TooLarge,
        DecodeErrorKind::InvalidUtf8,
        DecodeErrorKind::InvalidJson,
        DecodeErrorKind::WrongType,
        DecodeErrorKind::InvalidEventTime,
        DecodeErrorKind::MissingField,
    ];

    /// Stable snake_case name, for metrics labels and dead-letter records.
    pub fn as_str(self) -> &'static str {
        match self {
            DecodeErrorKind::Empty => "empty",
            DecodeErrorKind::TooLarge => "too_large",
            DecodeErrorKind::InvalidUtf8 => "invalid_utf8",
            DecodeErrorKind::InvalidJson => "invalid_json",
            DecodeErrorKind::WrongType => "wrong_type",
            DecodeErrorKind::InvalidEventTime => "invalid_event_time",
            DecodeErrorKind::MissingField => "missing_field",
        }
    }
}

impl std::fmt::Display for DecodeErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refused record: `index` is its position in the slice given to [`BatchDecoder::decode`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reject {
    pub index: usize,
    pub error: DecodeError,
}

/// The result of decoding one slice of messages.
///
/// `batch` holds the accepted records in input order, one row each; every other input
/// position appears exactly once in `rejects`, sorted by index. So
/// `batch.num_rows() + rejects.len()` always equals the number of messages.
#[derive(Debug)]
pub struct Decoded {
    pub batch: RecordBatch,
    pub rejects: Vec<Reject>,
}

impl Decoded {
    /// Input positions of the rows of `batch`, in order.
    pub fn accepted_indices(&self, input_len: usize) -> Vec<usize> {
        Decoded::accepted_positions(&self.rejects, input_len)
    }

    /// Input positions of the accepted rows, given the (sorted) rejects of a decode of
    /// `input_len` messages.
    pub fn accepted_positions(rejects: &[Reject], input_len: usize) -> Vec<usize> {
        let mut rejected = rejects.iter().map(|r| r.index).peekable();
        (0..input_len)
            .filter(|i| {
                if rejected.peek() == Some(i) {
                    rejected.next();
                    false
                } else {
                    true
                }
            })
            .collect()
    }
}

/// Which implementation a [`BatchDecoder`] uses. All give the same batches and the same
/// rejects (kinds and reasons) for every input; the oracle tests in `tests/oracle.rs` hold
/// them to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecoderEngine {
    /// One pass per record into column buffers compiled from the schema, with the parser
    /// that suits the build target ([`Parser::DEFAULT`]); records outside its fast path are
    /// handed, one at a time, to the arrow-json decoder.
    Compiled,
    /// [`DecoderEngine::Compiled`] with sonic-rs, whatever the build target.
    CompiledSonic,
    /// [`DecoderEngine::Compiled`] with serde_json, whatever the build target.
    CompiledSerdeJson,
    /// arrow-json's `Decoder` plus a serde_json pass for json fields and `_extra`.
    ArrowJson,
}

impl DecoderEngine {
    /// The engine [`BatchDecoder::new`] uses: the one switch between them.
    pub const DEFAULT: DecoderEngine = DecoderEngine::Compiled;
}

impl Default for DecoderEngine {
    fn default() -> Self {
        DecoderEngine::DEFAULT
    }
}

/// Decodes Kafka messages (one JSON object each) into record batches of one dataset.
///
/// Reuse one decoder per dataset and partition: it keeps its buffers between calls.
pub struct BatchDecoder {
    options: DecoderOptions,
    engine: Engine,
}

enum Engine {
    Compiled(Box<CompiledDecoder>),
    ArrowJson(Box<ArrowJsonDecoder>),
}

impl std::fmt::Debug for BatchDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchDecoder")
            .field("schema", self.schema())
            .field("options", &self.options)
            .field("engine", &self.engine())
            .finish_non_exhaustive()
    }
}

impl BatchDecoder {
    /// A decoder with [`DecoderEngine::DEFAULT`].
    pub fn new(schema: &DatasetSchema, options: DecoderOptions) -> Result<Self, SchemaError> {
        BatchDecoder::with_engine(schema, options, DecoderEngine::DEFAULT)
    }

    pub fn with_engine(
        schema: &DatasetSchema,
        options: DecoderOptions,
        engine: DecoderEngine,
    ) -> Result<Self, SchemaError> {
        let arrow_json = ArrowJsonDecoder::new(schema, options.clone())?;
        let parser = match engine {
            DecoderEngine::ArrowJson => {
                return Ok(BatchDecoder {
                    options,
                    engine: Engine::ArrowJson(Box::new(arrow_json)),
                });
            }
            DecoderEngine::Compiled => Parser::DEFAULT,
            DecoderEngine::CompiledSonic => Parser::Sonic,
            DecoderEngine::CompiledSerdeJson => Parser::SerdeJson,
        };
        let engine = Engine::Compiled(Box::new(CompiledDecoder::new(
            schema,
            options.unknown_fields,
            options.max_record_bytes,
            parser,
            arrow_json,
        )?));
        Ok(BatchDecoder { options, engine })
    }

    /// The engine, with the parser a [`DecoderEngine::Compiled`] decoder settled on.
    pub fn engine(&self) -> DecoderEngine {
        match &self.engine {
            Engine::Compiled(decoder) => match decoder.parser() {
                Parser::Sonic => DecoderEngine::CompiledSonic,
                Parser::SerdeJson => DecoderEngine::CompiledSerdeJson,
            },
            Engine::ArrowJson(_) => DecoderEngine::ArrowJson,
        }
    }

    /// The schema of every batch this decoder returns.
    pub fn schema(&self) -> &SchemaRef {
        match &self.engine {
            Engine::Compiled(decoder) => decoder.schema(),
            Engine::ArrowJson(decoder) => decoder.schema(),
        }
    }

    pub fn options(&self) -> &DecoderOptions {
        &self.options
    }

    /// Records the compiled engine had arrow-json decode since this decoder was built: those
    /// outside its fast path, and every record of a batch it handed over whole (when more
    /// than a quarter of the batch, and at least 16 records, fell outside). Always 0 for
    /// [`DecoderEngine::ArrowJson`].
    pub fn fallback_records(&self) -> u64 {
        match &self.engine {
            Engine::Compiled(decoder) => decoder.oracle_records(),
            Engine::ArrowJson(_) => 0,
        }
    }

    /// Decodes one message per element of `records`. Never fails as a whole: each bad
    /// record becomes a [`Reject`], and the good ones land in `batch` in input order.
    pub fn decode(&mut self, records: &[&[u8]]) -> Decoded {
        match &mut self.engine {
            Engine::Compiled(decoder) => {
                let (batch, rejects) = decoder.decode(records);
                Decoded { batch, rejects }
            }
            Engine::ArrowJson(decoder) => decoder.decode(records),
        }
    }
}

/// How to build each top-level output column from what arrow-json decoded.
#[derive(Debug)]
enum Column {
    /// Taken as decoded, from this read column.
    Plain(usize),
    /// Text in this read column, normalised to nanoseconds.
    Timestamp(usize),
    /// Rebuilt with the second pass's json fields spliced in.
    Nested(usize, Shape),
    /// A top-level json field: this second-pass array.
    Json(usize),
}

/// Where json fields sit inside a nested column.
#[derive(Debug)]
enum Shape {
    Plain,
    Json(usize),
    Struct(arrow_schema::Fields, Vec<Shape>),
    List(FieldRef, Box<Shape>),
}

fn shape_of(field_type: &FieldType, next_leaf: &mut usize) -> Shape {
    match field_type {
        FieldType::Json => {
            *next_leaf += 1;
            Shape::Json(*next_leaf - 1)
        }
        FieldType::Struct(fields) if field_type.has_json() => Shape::Struct(
            struct_fields(fields, Stage::Output),
            fields
                .iter()
                .map(|f| shape_of(&f.field_type, next_leaf))
                .collect(),
        ),
        FieldType::List(inner) if inner.has_json() => {
            let DataType::List(item) = field_type.arrow_type() else {
                unreachable!("list types map to arrow lists")
            };
            Shape::List(item, Box::new(shape_of(inner, next_leaf)))
        }
        _ => Shape::Plain,
    }
}

/// The arrow-json decoder: the first implementation, now the test oracle of the compiled one
/// (and its fallback for records outside the compiled fast path).
pub(crate) struct ArrowJsonDecoder {
    schema: SchemaRef,
    read_schema: SchemaRef,
    options: DecoderOptions,
    event_time: usize,
    columns: Vec<Column>,
    non_null: Vec<(usize, String)>,
    raw_pass: Option<RawPass>,
    decoder: Decoder,
}

impl ArrowJsonDecoder {
    pub fn new(schema: &DatasetSchema, options: DecoderOptions) -> Result<Self, SchemaError> {
        schema.validate()?;
        let read_schema = schema.read_schema();
        let mut next_leaf = 0;
        let mut read_index = 0;
        let mut columns = Vec::with_capacity(schema.fields.len());
        let mut event_time = 0;
        let mut non_null = Vec::new();
        for (position, field) in schema.fields.iter().enumerate() {
            if field.name == schema.event_time {
                event_time = position;
            } else if !field.nullable {
                non_null.push((position, field.name.clone()));
            }
            let column = match &field.field_type {
                FieldType::Json => {
                    next_leaf += 1;
                    columns.push(Column::Json(next_leaf - 1));
                    continue;
                }
                FieldType::Timestamp => Column::Timestamp(read_index),
                other if other.has_json() => {
                    Column::Nested(read_index, shape_of(other, &mut next_leaf))
                }
                _ => Column::Plain(read_index),
            };
            columns.push(column);
            read_index += 1;
        }
        let raw_pass = RawPass::new(schema, options.unknown_fields == UnknownFields::Extra);
        let decoder = new_decoder(&read_schema).map_err(|e| SchemaError::Invalid {
            name: schema.name.clone(),
            reason: format!("arrow-json cannot decode this schema: {e}"),
        })?;
        Ok(ArrowJsonDecoder {
            schema: schema.arrow_schema(options.unknown_fields),
            read_schema,
            options,
            event_time,
            columns,
            non_null,
            raw_pass,
            decoder,
        })
    }

    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    pub fn decode(&mut self, records: &[&[u8]]) -> Decoded {
        let mut rejects = Vec::new();
        let mut candidates = Vec::with_capacity(records.len());
        for (index, record) in records.iter().enumerate() {
            match precheck(record, self.options.max_record_bytes) {
                Ok(()) => candidates.push(index),
                Err(error) => rejects.push(Reject { index, error }),
            }
        }
        let batch = loop {
            let (batches, accepted) = self.decode_candidates(records, &candidates, &mut rejects);
            match self.finish(records, batches, &accepted, &mut rejects) {
                Ok(batch) => break batch,
                Err(refused) => {
                    // The second parse refused records arrow-json took; drop them and redo
                    // the batch so that its json columns line up. Rare.
                    let refused_set: std::collections::HashSet<usize> =
                        refused.iter().map(|r| r.index).collect();
                    candidates = accepted
                        .into_iter()
                        .filter(|i| !refused_set.contains(i))
                        .collect();
                    rejects.extend(refused);
                }
            }
        };
        rejects.sort_by_key(|r| r.index);
        Decoded { batch, rejects }
    }

    fn reset(&mut self) {
        self.decoder = new_decoder(&self.read_schema).expect("schema was accepted before");
    }

    /// arrow-json stage: returns the decoded batches (read schema) and the input positions
    /// of their rows.
    fn decode_candidates(
        &mut self,
        records: &[&[u8]],
        candidates: &[usize],
        rejects: &mut Vec<Reject>,
    ) -> (Vec<RecordBatch>, Vec<usize>) {
        let mut batches = Vec::new();
        let mut accepted = Vec::with_capacity(candidates.len());
        for chunk in candidates.chunks(CHUNK_ROWS) {
            let mut segment_start = 0;
            for (position, &index) in chunk.iter().enumerate() {
                let record = records[index];
                let before = self.decoder.len();
                let fed = self.decoder.decode(record);
                let problem = match fed {
                    Err(e) => Some(format!("invalid json: {e}")),
                    Ok(read) if read != record.len() => {
                        Some("more than one json value in the message".to_owned())
                    }
                    Ok(_) if self.decoder.has_partial_record() => {
                        Some("json value is incomplete".to_owned())
                    }
                    Ok(_) if self.decoder.len() == before => {
                        Some("message holds no json value".to_owned())
                    }
                    Ok(_) if self.decoder.len() > before + 1 => {
                        Some("more than one json value in the message".to_owned())
                    }
                    Ok(_) => None,
                };
                if let Some(reason) = problem {
                    rejects.push(Reject {
                        index,
                        error: DecodeError {
                            kind: DecodeErrorKind::InvalidJson,
                            reason,
                        },
                    });
                    // The decoder now holds part of the bad record: start over with the good
                    // records of this segment, which each hold exactly one value.
                    self.reset();
                    let segment = &chunk[segment_start..position];
                    for &good in segment {
                        self.decoder
                            .decode(records[good])
                            .expect("record decoded before");
                    }
                    self.flush_segment(records, segment, &mut batches, &mut accepted, rejects);
                    segment_start = position + 1;
                }
            }
            let segment = &chunk[segment_start..];
            self.flush_segment(records, segment, &mut batches, &mut accepted, rejects);
        }
        (batches, accepted)
    }

    /// Flushes what the decoder holds (the records of `segment`); on a type error, finds the
    /// failing records by bisection.
    fn flush_segment(
        &mut self,
        records: &[&[u8]],
        segment: &[usize],
        batches: &mut Vec<RecordBatch>,
        accepted: &mut Vec<usize>,
        rejects: &mut Vec<Reject>,
    ) {
        match self.decoder.flush() {
            Ok(Some(batch)) => {
                batches.push(batch);
                accepted.extend_from_slice(segment);
            }
            Ok(None) => {}
            Err(error) => {
                self.reset();
                self.bisect(records, segment, error, batches, accepted, rejects);
            }
        }
    }

    fn bisect(
        &mut self,
        records: &[&[u8]],
        group: &[usize],
        error: ArrowError,
        batches: &mut Vec<RecordBatch>,
        accepted: &mut Vec<usize>,
        rejects: &mut Vec<Reject>,
    ) {
        if let [index] = group {
            rejects.push(Reject {
                index: *index,
                error: classify(
                    records[*index],
                    &error,
                    self.schema.field(self.event_time).name(),
                ),
            });
            return;
        }
        let (left, right) = group.split_at(group.len() / 2);
        for half in [left, right] {
            let mut fed = Ok(0);
            for &index in half {
                fed = self.decoder.decode(records[index]);
                if fed.is_err() {
                    break;
                }
            }
            let result = fed.and_then(|_| self.decoder.flush());
            match result {
                Ok(Some(batch)) => {
                    batches.push(batch);
                    accepted.extend_from_slice(half);
                }
                Ok(None) => {}
                Err(error) => {
                    self.reset();
                    self.bisect(records, half, error, batches, accepted, rejects);
                }
            }
        }
    }

    /// Everything after arrow-json: the second parse, timestamps, null checks, filtering.
    /// Err holds records the second parse refused (the caller redoes the batch without them).
    fn finish(
        &mut self,
        records: &[&[u8]],
        batches: Vec<RecordBatch>,
        accepted: &[usize],
        rejects: &mut Vec<Reject>,
    ) -> Result<RecordBatch, Vec<Reject>> {
        if accepted.is_empty() {
            return Ok(RecordBatch::new_empty(self.schema.clone()));
        }
        let read = if batches.len() == 1 {
            batches.into_iter().next().expect("one batch")
        } else {
            arrow_select::concat::concat_batches(&self.read_schema, &batches)
                .expect("batches share the read schema")
        };
        let rows = read.num_rows();
        debug_assert_eq!(rows, accepted.len());

        let raw = match &self.raw_pass {
            Some(pass) => Some(
                pass.run(accepted.iter().map(|&i| records[i]), rows)
                    .map_err(|failures| {
                        failures
                            .into_iter()
                            .map(|(position, reason)| Reject {
                                index: accepted[position],
                                error: DecodeError {
                                    kind: DecodeErrorKind::InvalidJson,
                                    reason: format!("invalid json: {reason}"),
                                },
                            })
                            .collect::<Vec<_>>()
                    })?,
            ),
            None => None,
        };
        let RawColumns { leaves, extra } = raw.unwrap_or(RawColumns {
            leaves: Vec::new(),
            extra: None,
        });

        let mut row_errors: Vec<Option<DecodeError>> = vec![None; rows];
        let mut any_error = false;
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(self.schema.fields().len());
        for (position, column) in self.columns.iter().enumerate() {
            let array = match column {
                Column::Plain(read_index) => read.column(*read_index).clone(),
                Column::Json(leaf) => leaves[*leaf].clone(),
                Column::Nested(read_index, shape) => {
                    splice(read.column(*read_index), shape, &leaves)
                }
                Column::Timestamp(read_index) => {
                    let name = self.schema.field(position).name();
                    let is_event_time = position == self.event_time;
                    let text = read.column(*read_index).as_string::<i32>();
                    let mut builder = TimestampNanosecondBuilder::with_capacity(rows);
                    for (row, row_error) in row_errors.iter_mut().enumerate() {
                        if text.is_null(row) {
                            builder.append_null();
                            if is_event_time {
                                any_error = true;
                                row_error.get_or_insert_with(|| DecodeError {
                                    kind: DecodeErrorKind::InvalidEventTime,
                                    reason: format!("event time field {name} is missing or null"),
                                });
                            }
                            continue;
                        }
                        let value = text.value(row);
                        match parse_instant(value) {
                            Some(nanos) => builder.append_value(nanos),
                            None => {
                                builder.append_null();
                                any_error = true;
                                let kind = if is_event_time {
                                    DecodeErrorKind::InvalidEventTime
                                } else {
                                    DecodeErrorKind::WrongType
                                };
                                row_error.get_or_insert_with(|| DecodeError {
                                    kind,
                                    reason: format!(
                                        "field {name}: {} is not a timestamp",
                                        truncate(value)
                                    ),
                                });
                            }
                        }
                    }
                    Arc::new(builder.finish().with_timezone(UTC))
                }
            };
            columns.push(array);
        }
        for (position, name) in &self.non_null {
            let array = &columns[*position];
            if array.null_count() == 0 {
                continue;
            }
            any_error = true;
            for (row, slot) in row_errors.iter_mut().enumerate() {
                if array.is_null(row) {
                    slot.get_or_insert_with(|| DecodeError {
                        kind: DecodeErrorKind::MissingField,
                        reason: format!("field {name} is missing or null"),
                    });
                }
            }
        }
        if let Some(extra) = extra {
            columns.push(extra);
        }

        if any_error {
            let keep: BooleanArray = row_errors.iter().map(|e| Some(e.is_none())).collect();
            for (row, error) in row_errors.into_iter().enumerate() {
                if let Some(error) = error {
                    rejects.push(Reject {
                        index: accepted[row],
                        error,
                    });
                }
            }
            columns = columns
                .iter()
                .map(|c| arrow_select::filter::filter(c, &keep).expect("same length"))
                .collect();
        }
        Ok(RecordBatch::try_new(self.schema.clone(), columns)
            .expect("columns follow the output schema"))
    }
}

fn new_decoder(read_schema: &SchemaRef) -> Result<Decoder, ArrowError> {
    ReaderBuilder::new(read_schema.clone())
        .with_batch_size(CHUNK_ROWS + 1)
        .with_coerce_primitive(true)
        .build_decoder()
}

fn precheck(record: &[u8], max_record_bytes: usize) -> Result<(), DecodeError> {
    precheck_size(record, max_record_bytes)?;
    if let Err(e) = simdutf8::compat::from_utf8(record) {
        return Err(DecodeError {
            kind: DecodeErrorKind::InvalidUtf8,
            reason: format!("invalid utf-8 at byte {}", e.valid_up_to()),
        });
    }
    Ok(())
}

/// The checks before any parsing: too large, then empty.
pub(crate) fn precheck_size(record: &[u8], max_record_bytes: usize) -> Result<(), DecodeError> {
    if record.len() > max_record_bytes {
        return Err(DecodeError {
            kind: DecodeErrorKind::TooLarge,
            reason: format!(
                "message of {} bytes exceeds the limit of {max_record_bytes} bytes",
                record.len()
            ),
        });
    }
    if record.is_empty() {
        return Err(DecodeError {
            kind: DecodeErrorKind::Empty,
            reason: "empty message".to_owned(),
        });
    }
    Ok(())
}

/// Sorts a lone record's arrow-json error into a kind: a value of the wrong type is
/// `invalid_event_time` when it is the event time's, `wrong_type` otherwise.
fn classify(record: &[u8], error: &ArrowError, event_time: &str) -> DecodeError {
    let first = record.iter().find(|b| !b.is_ascii_whitespace()).copied();
    if first != Some(b'{') {
        return DecodeError {
            kind: DecodeErrorKind::InvalidJson,
            reason: "message is not a json object".to_owned(),
        };
    }
    let message = error.to_string();
    let message = message.strip_prefix("Json error: ").unwrap_or(&message);
    let kind = if message.starts_with(&format!("whilst decoding field '{event_time}':")) {
        DecodeErrorKind::InvalidEventTime
    } else {
        DecodeErrorKind::WrongType
    };
    DecodeError {
        kind,
        reason: lowercase_first(message),
    }
}

fn lowercase_first(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

fn truncate(text: &str) -> String {
    const MAX: usize = 64;
    if text.len() <= MAX {
        return format!("{text:?}");
    }
    let mut end = MAX;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{:?}…", &text[..end])
}

/// Rebuilds a nested column with json fields from the second pass put in place.
fn splice(read: &ArrayRef, shape: &Shape, leaves: &[ArrayRef]) -> ArrayRef {
    let mut cursors = vec![0usize; leaves.len()];
    splice_at(read, shape, leaves, &mut cursors)
}

fn splice_at(
    read: &ArrayRef,
    shape: &Shape,
    leaves: &[ArrayRef],
    cursors: &mut [usize],
) -> ArrayRef {
    match shape {
        Shape::Plain => read.clone(),
        Shape::Json(leaf) => {
            let start = cursors[*leaf];
            cursors[*leaf] += read.len();
            leaves[*leaf].slice(start, read.len())
        }
        Shape::Struct(fields, children) => {
            let read = read.as_struct();
            let mut read_children = read.columns().iter();
            let columns = children
                .iter()
                .map(|child| match child {
                    Shape::Json(leaf) => {
                        let start = cursors[*leaf];
                        cursors[*leaf] += read.len();
                        leaves[*leaf].slice(start, read.len())
                    }
                    other => {
                        let column = read_children.next().expect("read struct has the field");
                        splice_at(column, other, leaves, cursors)
                    }
                })
                .collect();
            Arc::new(
                StructArray::try_new(fields.clone(), columns, read.nulls().cloned())
                    .expect("spliced struct matches its fields"),
            )
        }
        Shape::List(item, element) => {
            let read = read.as_list::<i32>();
            // Leaves count only the elements the list actually holds, from its first offset.
            let first = read.value_offsets()[0] as usize;
            let last = read.value_offsets()[read.len()] as usize;
            let values = read.values().slice(first, last - first);
            let values = splice_at(&values, element, leaves, cursors);
            let offsets = arrow_buffer::OffsetBuffer::new(
                read.offsets().iter().map(|o| o - first as i32).collect(),
            );
            Arc::new(
                ListArray::try_new(item.clone(), offsets, values, read.nulls().cloned())
                    .expect("spliced list matches its item"),
            )
        }
    }
}
