//! The compiled decoder: one pass of a strict JSON parser (sonic-rs or serde_json, see
//! [`Parser`]) over each record, straight into column buffers.
//!
//! ```text
//! message ─▶ checks (empty, too large, utf-8 once) ─▶ every \u escape 4 hex digits, paired?
//!                                                          │ yes
//!                                                          ▼
//!   serde walk (sonic-rs or serde_json), driven by a tree compiled from the schema:
//!     known key  ─▶ its column (int, float, bool, text, timestamp, json text, list, map, struct)
//!     other key  ─▶ skipped, or its raw text appended to this record's `_extra` object
//!                                                          │
//!            ┌──── anything outside the plainly typed fast path ───┐
//!            ▼                                                      ▼ record fits
//!   columns cut back to the last good row;             event time and non-null fields
//!   the record alone goes through the arrow-json       checked: reject (cut back) or keep
//!   decoder (the oracle): its reject, or its one row
//!   appended to the columns in its place
//! ```
//!
//! The fast path takes a record only when it is strict JSON (both parsers validate every
//! byte, skipped values included, except the hex digits of `\u` escapes in values that
//! sonic-rs skips, which are checked before the walk) whose values have the types the schema
//! names: integers or digit strings for `int`, numbers for `float`, `true`/`false` for
//! `bool`, strings, numbers or booleans for `string` (numbers keep their text as written),
//! any value for `json`, integers, decimals or instants for `timestamp` (decimals keep their
//! text as written), integers for `timestamp_*`, and arrays, objects and nulls where
//! declared. A `string` or `timestamp` column reads numbers as values until it meets its
//! first non-integer one, and as raw text from then on; that first record goes to the
//! oracle. Everything the arrow-json
//! decoder treats with rules of its own (floats and other strings in integer columns,
//! non-integer or text values in `timestamp_*` columns, duplicate known keys, unpaired
//! surrogate escapes, stray commas and the other leniencies of its tokenizer, syntax errors,
//! values of the wrong type) sends that one record to the arrow-json decoder: its verdict and
//! its row are the oracle's by construction, at the oracle's price, for that record only.
//!
//! A batch with many such records (see `HAND_OVER_AFTER`) is handed to the oracle whole.
//!
//! Columns are lazily padded: a column is only touched when a record holds its key, and nulls
//! are appended up to the row being written (or the batch's length at the end), so the ~half
//! of the schema absent from a typical record costs nothing per record.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Float64Type, Int64Type, TimestampMicrosecondType, TimestampMillisecondType,
    TimestampNanosecondType, TimestampSecondType,
};
use arrow_array::{
    Array, ArrayRef, BooleanArray, Float64Array, Int64Array, ListArray, MapArray, PrimitiveArray,
    RecordBatch, StringArray, StructArray,
};
use arrow_buffer::{
    BooleanBuffer, BooleanBufferBuilder, Buffer, NullBuffer, OffsetBuffer, ScalarBuffer,
};
use arrow_schema::{DataType, Fields, SchemaRef, TimeUnit};
use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use sonic_rs::LazyValue;

use crate::decode::{ArrowJsonDecoder, DecodeError, DecodeErrorKind, Reject, precheck_size};
use crate::schema::{DatasetSchema, FieldDef, FieldType, UTC};
use crate::timestamp::parse_instant;
use crate::{SchemaError, UnknownFields};

/// Compiled decoder for one dataset; see the module documentation.
pub(crate) struct CompiledDecoder {
    schema: SchemaRef,
    max_record_bytes: usize,
    root: StructPlan,
    columns: Vec<Column>,
    extra: Option<TextColumn>,
    extra_text: Vec<u8>,
    event_time: usize,
    event_time_name: String,
    non_null: Vec<(usize, String)>,
    oracle: ArrowJsonDecoder,
    /// Records handed to the oracle since the decoder was built.
    oracle_records: u64,
    parser: Parser,
}

/// The JSON parser the compiled decoder walks records with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parser {
    /// sonic-rs. It chooses its SIMD code when it is compiled (AVX2 and PCLMULQDQ on x86_64,
    /// NEON on aarch64), not at run time; a portable x86_64 build runs its SSE2 code.
    Sonic,
    /// serde_json: no SIMD, but a quick scalar scanner.
    SerdeJson,
}

impl Parser {
    /// serde_json. On the portable x86_64 build Weir ships, sonic-rs runs its SSE2 code, and
    /// serde_json's scalar scanner walks the synthetic Logpush events in 15–25% less CPU time
    /// (release without LTO, same run, 2026-12-05: 3.47 against 4.15 µs per compact
    /// `http_requests` event; `decode_throughput` in the README's decoding section).
    /// sonic-rs stays selectable for builds with AVX2 or NEON, where its SIMD code may turn
    /// that round.
    pub const DEFAULT: Parser = Parser::SerdeJson;
}

impl CompiledDecoder {
    pub fn new(
        schema: &DatasetSchema,
        unknown_fields: UnknownFields,
        max_record_bytes: usize,
        parser: Parser,
        oracle: ArrowJsonDecoder,
    ) -> Result<CompiledDecoder, SchemaError> {
        let mut event_time = 0;
        let mut non_null = Vec::new();
        for (position, field) in schema.fields.iter().enumerate() {
            if field.name == schema.event_time {
                event_time = position;
            } else if !field.nullable {
                non_null.push((position, field.name.clone()));
            }
        }
        let columns = schema
            .fields
            .iter()
            .map(|f| Column::new(&f.field_type))
            .collect();
        Ok(CompiledDecoder {
            schema: schema.arrow_schema(unknown_fields),
            max_record_bytes,
            root: StructPlan::new(&schema.fields, true),
            columns,
            extra: (unknown_fields == UnknownFields::Extra).then(TextColumn::default),
            extra_text: Vec::new(),
            event_time,
            event_time_name: schema.event_time.clone(),
            non_null,
            oracle,
            oracle_records: 0,
            parser,
        })
    }

    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    pub fn oracle_records(&self) -> u64 {
        self.oracle_records
    }

    pub fn parser(&self) -> Parser {
        self.parser
    }

    pub fn decode(&mut self, records: &[&[u8]]) -> (RecordBatch, Vec<Reject>) {
        let mut rejects = Vec::new();
        let mut rows = 0;
        // Records of this batch handed to the oracle.
        let mut odd = 0;
        for (index, record) in records.iter().enumerate() {
            if let Err(error) = precheck_size(record, self.max_record_bytes) {
                rejects.push(Reject { index, error });
                continue;
            }
            let text = match simdutf8::basic::from_utf8(record) {
                Ok(text) => text,
                Err(_) => {
                    let valid_up_to = simdutf8::compat::from_utf8(record)
                        .err()
                        .map_or(0, |e| e.valid_up_to());
                    rejects.push(Reject {
                        index,
                        error: DecodeError {
                            kind: DecodeErrorKind::InvalidUtf8,
                            reason: format!("invalid utf-8 at byte {valid_up_to}"),
                        },
                    });
                    continue;
                }
            };
            match self.record(text, rows) {
                Ok(()) => rows += 1,
                Err(Verdict::Reject(error)) => {
                    self.cut_back(rows);
                    rejects.push(Reject { index, error });
                }
                Err(Verdict::Oracle) => {
                    self.cut_back(rows);
                    self.oracle_records += 1;
                    odd += 1;
                    if odd >= HAND_OVER_AFTER && odd * 4 > index + 1 {
                        // A stream the fast path does not fit (say, floats in an integer
                        // column of every record): one-record oracle calls would cost more
                        // than the oracle on the whole batch.
                        self.cut_back(0);
                        self.oracle_records += (records.len() - odd) as u64;
                        let decoded = self.oracle.decode(records);
                        return (decoded.batch, decoded.rejects);
                    }
                    let decoded = self.oracle.decode(&[record]);
                    match decoded.rejects.into_iter().next() {
                        Some(reject) => rejects.push(Reject {
                            index,
                            error: reject.error,
                        }),
                        None => {
                            self.append_row(&decoded.batch, rows);
                            rows += 1;
                        }
                    }
                }
            }
        }
        (self.finish(rows), rejects)
    }

    fn cut_back(&mut self, rows: usize) {
        for column in &mut self.columns {
            column.truncate(rows);
        }
        if let Some(extra) = &mut self.extra {
            extra.truncate(rows);
        }
    }

    /// One record into the columns at `row`.
    fn record(&mut self, text: &str, row: usize) -> Result<(), Verdict> {
        if has_odd_unicode_escape(text.as_bytes()) {
            return Err(Verdict::Oracle);
        }
        self.extra_text.clear();
        let extra = self.extra.is_some().then_some(&mut self.extra_text);
        let parsed = if self.parser == Parser::SerdeJson {
            let mut deserializer = serde_json::Deserializer::from_str(text);
            RootSeed::<SerdeJson> {
                parser: std::marker::PhantomData,
                plan: &mut self.root,
                columns: &mut self.columns,
                row,
                extra,
            }
            .deserialize(&mut deserializer)
            .and_then(|()| deserializer.end())
            .is_ok()
        } else {
            let mut deserializer = sonic_rs::Deserializer::from_str(text);
            RootSeed::<Sonic> {
                parser: std::marker::PhantomData,
                plan: &mut self.root,
                columns: &mut self.columns,
                row,
                extra,
            }
            .deserialize(&mut deserializer)
            .and_then(|()| deserializer.end())
            .is_ok()
        };
        if !parsed {
            return Err(Verdict::Oracle);
        }
        if let Some(extra) = &mut self.extra
            && !self.extra_text.is_empty()
        {
            self.extra_text.push(b'}');
            extra.pad(row);
            extra.push_bytes(&self.extra_text);
        }
        if !self.columns[self.event_time].is_valid(row) {
            return Err(Verdict::Reject(DecodeError {
                kind: DecodeErrorKind::InvalidEventTime,
                reason: format!(
                    "event time field {} is missing or null",
                    self.event_time_name
                ),
            }));
        }
        for (position, name) in &self.non_null {
            if !self.columns[*position].is_valid(row) {
                return Err(Verdict::Reject(DecodeError {
                    kind: DecodeErrorKind::MissingField,
                    reason: format!("field {name} is missing or null"),
                }));
            }
        }
        Ok(())
    }

    /// The one row of a batch the oracle decoded, appended to the columns as row `at`.
    fn append_row(&mut self, row: &RecordBatch, at: usize) {
        for (column, array) in self.columns.iter_mut().zip(row.columns()) {
            column.append_from(array.as_ref(), 0, at);
        }
        if let Some(extra) = &mut self.extra {
            let array = row
                .columns()
                .last()
                .expect("the oracle's batch has _extra too");
            if array.is_valid(0) {
                extra.pad(at);
                extra.push_bytes(array.as_string::<i32>().value(0).as_bytes());
            }
        }
    }

    fn finish(&mut self, rows: usize) -> RecordBatch {
        let mut arrays: Vec<ArrayRef> = self
            .schema
            .fields()
            .iter()
            .zip(self.columns.iter_mut())
            .map(|(field, column)| column.finish(rows, field.data_type()))
            .collect();
        if let Some(extra) = &mut self.extra {
            arrays.push(Arc::new(extra.finish(rows)));
        }
        RecordBatch::try_new(self.schema.clone(), arrays).expect("columns follow the output schema")
    }
}

/// Once this many records of a batch (and more than a quarter of those read so far) were
/// outside the fast path, the whole batch goes to the oracle.
const HAND_OVER_AFTER: usize = 16;

/// Why the fast path did not keep a record.
enum Verdict {
    /// Refused, with the same kind and reason the oracle gives.
    Reject(DecodeError),
    /// Outside the fast path: the oracle decides.
    Oracle,
}

/// True if a `\u` escape is not four hex digits, or names a UTF-16 surrogate that is not
/// part of a high-low pair. arrow-json refuses both; sonic-rs skips the four characters after
/// `\u` unchecked in values it skips, and the compiled path leaves such records to the oracle.
/// An escaped backslash followed by `u` is counted too, which only costs speed.
fn has_odd_unicode_escape(text: &[u8]) -> bool {
    let mut skip_until = 0;
    for at in memchr::memchr_iter(b'\\', text) {
        if at < skip_until || text.get(at + 1) != Some(&b'u') {
            continue;
        }
        let Some(unit) = hex4(text.get(at + 2..at + 6)) else {
            return true;
        };
        match unit {
            0xD800..=0xDBFF => {
                let low = (text.get(at + 6..at + 8) == Some(b"\\u"))
                    .then(|| hex4(text.get(at + 8..at + 12)))
                    .flatten();
                match low {
                    Some(0xDC00..=0xDFFF) => skip_until = at + 12,
                    _ => return true,
                }
            }
            0xDC00..=0xDFFF => return true,
            _ => {}
        }
    }
    false
}

fn hex4(digits: Option<&[u8]>) -> Option<u16> {
    let digits = digits?;
    let mut value = 0u16;
    for &d in digits {
        value = (value << 4) | (d as char).to_digit(16)? as u16;
    }
    Some(value)
}

/// Key lookup for one struct level. Producers write keys in a stable order, so the plan
/// remembers which field followed each field last time (`successor`) and tries that first;
/// otherwise a small open-addressing table.
struct StructPlan {
    names: Vec<Box<str>>,
    table: Vec<u32>,
    /// `successor[i]`: the field that came after field i last time; the last slot is for the
    /// first key of an object.
    successor: Vec<u32>,
    children: Vec<Option<StructPlan>>,
    /// Declared `"nullable": false` (nested levels only; the top level is checked per record).
    required: Vec<bool>,
    /// `seen[i] == stamp`: field i was seen in the object being read.
    seen: Vec<u32>,
    stamp: u32,
}

const EMPTY: u32 = u32::MAX;

fn key_hash(key: &[u8]) -> usize {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in key {
        hash = (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    (hash ^ (hash >> 29)) as usize
}

impl StructPlan {
    fn new(fields: &[FieldDef], top_level: bool) -> StructPlan {
        let size = (fields.len() * 2).next_power_of_two().max(8);
        let mut table = vec![EMPTY; size];
        for (index, field) in fields.iter().enumerate() {
            let mut slot = key_hash(field.name.as_bytes()) & (size - 1);
            while table[slot] != EMPTY {
                slot = (slot + 1) & (size - 1);
            }
            table[slot] = index as u32;
        }
        StructPlan {
            names: fields.iter().map(|f| f.name.clone().into()).collect(),
            table,
            successor: (1..=fields.len() as u32).chain([0]).collect(),
            children: fields.iter().map(|f| nested_plan(&f.field_type)).collect(),
            required: fields.iter().map(|f| !top_level && !f.nullable).collect(),
            seen: vec![0; fields.len()],
            stamp: 0,
        }
    }

    /// The field named `key`, given the previous known field of this object (`None` at the
    /// object's start). Called for every key: left to itself the compiler kept it (and the
    /// column pushes below) out of line, and the calls cost 3.6% of the decoder's
    /// instructions.
    #[inline(always)]
    fn find(&mut self, key: &str, previous: Option<usize>) -> Option<usize> {
        let from = previous.unwrap_or(self.names.len());
        let guess = self.successor[from] as usize;
        if self
            .names
            .get(guess)
            .is_some_and(|n| same_key(n.as_bytes(), key.as_bytes()))
        {
            return Some(guess);
        }
        let found = self.lookup(key)?;
        self.successor[from] = found as u32;
        Some(found)
    }

    fn lookup(&self, key: &str) -> Option<usize> {
        let mask = self.table.len() - 1;
        let mut slot = key_hash(key.as_bytes()) & mask;
        loop {
            let index = self.table[slot];
            if index == EMPTY {
                return None;
            }
            if *self.names[index as usize] == *key {
                return Some(index as usize);
            }
            slot = (slot + 1) & mask;
        }
    }

    fn begin_object(&mut self) {
        self.stamp = self.stamp.wrapping_add(1);
        if self.stamp == 0 {
            self.seen.fill(0);
            self.stamp = 1;
        }
    }

    /// Marks field `index` seen; false if it already was (a duplicate key).
    #[inline]
    fn mark(&mut self, index: usize) -> bool {
        std::mem::replace(&mut self.seen[index], self.stamp) != self.stamp
    }
}

/// Byte equality for short keys without a call to `memcmp`: eight bytes at a time, the
/// tail as one more eight-byte word that overlaps the last chunk (or two overlapping
/// four-byte words for keys shorter than eight). Keys differ in length from field to field,
/// so a byte loop over the tail made the branch predictor miss on most keys (a callgrind
/// branch simulation of `http_requests` put ~47 mispredictions per record there).
#[inline]
fn same_key(a: &[u8], b: &[u8]) -> bool {
    let len = a.len();
    if len != b.len() {
        return false;
    }
    if len >= 8 {
        let mut at = 0;
        while at + 8 < len {
            if word8(a, at) != word8(b, at) {
                return false;
            }
            at += 8;
        }
        word8(a, len - 8) == word8(b, len - 8)
    } else if len >= 4 {
        (word4(a, 0) == word4(b, 0)) & (word4(a, len - 4) == word4(b, len - 4))
    } else if len > 0 {
        // Bytes 0, len / 2 and len - 1 are every byte of a key of one to three bytes.
        (a[0] == b[0]) & (a[len / 2] == b[len / 2]) & (a[len - 1] == b[len - 1])
    } else {
        true
    }
}

#[inline]
fn word8(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}

#[inline]
fn word4(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

/// The struct plan a field's values need (for a struct, or a list or map of them).
fn nested_plan(field_type: &FieldType) -> Option<StructPlan> {
    match field_type {
        FieldType::Struct(fields) => Some(StructPlan::new(fields, false)),
        FieldType::List(inner) | FieldType::Map(inner) => nested_plan(inner),
        _ => None,
    }
}

/// Validity bits, one per value, in 64-bit words; their count is the column's length.
/// Bits from `len` on are always zero, so a push only sets bits. Arrow's
/// `BooleanBufferBuilder` grows its buffer a byte at a time, with a call to `memset` every
/// eighth push; a word is added every 64th here.
struct Validity {
    words: Vec<u64>,
    len: usize,
}

impl Default for Validity {
    fn default() -> Self {
        Validity {
            words: Vec::with_capacity(1024 / 64),
            len: 0,
        }
    }
}

impl Validity {
    #[inline]
    fn len(&self) -> usize {
        self.len
    }
    #[inline]
    fn push(&mut self, valid: bool) {
        let bit = self.len % 64;
        if bit == 0 {
            self.words.push(u64::from(valid));
        } else if let Some(word) = self.words.last_mut() {
            *word |= u64::from(valid) << bit;
        }
        self.len += 1;
    }
    /// Appends `n` nulls.
    #[inline]
    fn push_nulls(&mut self, n: usize) {
        self.len += n;
        self.words.resize(self.len.div_ceil(64), 0);
    }
    fn truncate(&mut self, len: usize) {
        if len >= self.len {
            return;
        }
        self.words.truncate(len.div_ceil(64));
        if !len.is_multiple_of(64)
            && let Some(last) = self.words.last_mut()
        {
            *last &= (1u64 << (len % 64)) - 1;
        }
        self.len = len;
    }
    fn is_valid(&self, index: usize) -> bool {
        index < self.len && self.words[index / 64] >> (index % 64) & 1 == 1
    }
    fn finish(&mut self) -> Option<NullBuffer> {
        let capacity = self.words.capacity();
        let mut words = std::mem::replace(&mut self.words, Vec::with_capacity(capacity));
        // Arrow's bit order is least significant bit first within each byte: the words'
        // bytes in little-endian order (a no-op on x86_64 and aarch64).
        for word in &mut words {
            *word = word.to_le();
        }
        let len = std::mem::take(&mut self.len);
        let nulls = NullBuffer::new(BooleanBuffer::new(Buffer::from_vec(words), 0, len));
        (nulls.null_count() > 0).then_some(nulls)
    }
}

#[derive(Default)]
struct TextColumn {
    offsets: Vec<i32>,
    data: Vec<u8>,
    valid: Validity,
    /// Read values as raw JSON text (slower), so that non-integer numbers keep their text as
    /// written. Set for good once the column meets such a number.
    numbers_as_written: bool,
}

impl TextColumn {
    fn len(&self) -> usize {
        self.valid.len()
    }
    #[inline]
    fn close(&mut self) {
        if self.offsets.is_empty() {
            self.offsets.push(0);
        }
        self.offsets.push(self.data.len() as i32);
    }
    #[inline]
    fn pad(&mut self, len: usize) {
        let missing = len.saturating_sub(self.len());
        if missing > 0 {
            if self.offsets.is_empty() {
                self.offsets.push(0);
            }
            let end = self.data.len() as i32;
            self.offsets.extend(std::iter::repeat_n(end, missing));
            self.valid.push_nulls(missing);
        }
    }
    #[inline]
    fn push_bytes(&mut self, bytes: &[u8]) {
        self.data.extend_from_slice(bytes);
        self.close();
        self.valid.push(true);
    }
    #[inline]
    fn push_null(&mut self) {
        self.close();
        self.valid.push(false);
    }
    /// Cuts back to `len` values, and drops text written after the last one (a value cut
    /// off before it was closed).
    fn truncate(&mut self, len: usize) {
        if self.len() > len {
            self.valid.truncate(len);
            self.offsets.truncate(len + 1);
        }
        let end = self.offsets.last().map_or(0, |&end| end as usize);
        self.data.truncate(end);
    }
    fn finish(&mut self, len: usize) -> StringArray {
        self.pad(len);
        if self.offsets.is_empty() {
            self.offsets.push(0);
        }
        let offsets = std::mem::replace(&mut self.offsets, Vec::with_capacity(len + 1));
        let capacity = self.data.capacity();
        let data = std::mem::replace(&mut self.data, Vec::with_capacity(capacity));
        let nulls = self.valid.finish();
        // `OffsetBuffer::new` checks that the offsets start at zero and never decrease.
        let offsets = OffsetBuffer::new(ScalarBuffer::from(offsets));
        let data = Buffer::from_vec(data);
        if cfg!(debug_assertions) {
            // Tests build with debug assertions: every batch they decode is checked whole.
            return StringArray::try_new(offsets, data, nulls)
                .expect("text columns hold utf-8 from the checked input");
        }
        assert!(
            *offsets.last().expect("offsets start with 0") as usize <= data.len()
                && nulls.as_ref().is_none_or(|n| n.len() == offsets.len() - 1),
            "text column offsets, values and validity agree"
        );
        text_array_of_checked_utf8(offsets, data, nulls)
    }
}

/// A `StringArray` over text the decoder copied from UTF-8 it checked, without checking
/// every byte again: `StringArray::try_new` did that in ~2.5% of the decoder's instructions
/// (callgrind, compact `http_requests` events).
#[allow(unsafe_code)]
fn text_array_of_checked_utf8(
    offsets: OffsetBuffer<i32>,
    data: Buffer,
    nulls: Option<NullBuffer>,
) -> StringArray {
    // SAFETY: `new_unchecked` needs what `try_new` checks. The offsets are monotonic from
    // zero (checked by `OffsetBuffer::new`), the last is within the values and the validity
    // has one bit per value (asserted by the caller). Every value is UTF-8 and starts and ends
    // on a character boundary: a `TextColumn` only appends whole `&str` values handed over by
    // the parser, the raw text of whole JSON values, keys and punctuation cut at ASCII bytes
    // from a record that passed `simdutf8`, the decimal text of integers, what `unescape`
    // writes (slices of the checked input split at ASCII backslashes, and encoded `char`s),
    // and the values of rows the oracle decoded (`&str`s of its `StringArray`s); `truncate`
    // cuts the values back to a value's end offset.
    unsafe { StringArray::new_unchecked(offsets, data, nulls) }
}

/// Numbers in a `timestamp` column: unit by magnitude, or in one fixed unit.
#[derive(Clone, Copy)]
enum Instant {
    ByMagnitude,
    Fixed,
}

enum Column {
    Int {
        values: Vec<i64>,
        valid: Validity,
    },
    Float {
        values: Vec<f64>,
        valid: Validity,
    },
    Bool {
        values: BooleanBufferBuilder,
        valid: Validity,
    },
    Text(TextColumn),
    Json(TextColumn),
    Timestamp {
        values: Vec<i64>,
        valid: Validity,
        instant: Instant,
        /// Read values as raw JSON text (slower), so that decimals keep every digit as
        /// written. Set for good once the column meets a non-integer number.
        numbers_as_written: bool,
    },
    List {
        offsets: Vec<i32>,
        valid: Validity,
        item: Box<Column>,
    },
    Map {
        offsets: Vec<i32>,
        valid: Validity,
        keys: TextColumn,
        values: Box<Column>,
    },
    Struct {
        valid: Validity,
        children: Vec<Column>,
    },
}

impl Column {
    fn new(field_type: &FieldType) -> Column {
        match field_type {
            FieldType::Int => Column::Int {
                values: Vec::new(),
                valid: Validity::default(),
            },
            FieldType::Float => Column::Float {
                values: Vec::new(),
                valid: Validity::default(),
            },
            FieldType::Bool => Column::Bool {
                values: BooleanBufferBuilder::new(1024),
                valid: Validity::default(),
            },
            FieldType::String => Column::Text(TextColumn::default()),
            FieldType::Json => Column::Json(TextColumn::default()),
            FieldType::Timestamp => Column::Timestamp {
                values: Vec::new(),
                valid: Validity::default(),
                instant: Instant::ByMagnitude,
                numbers_as_written: false,
            },
            FieldType::TimestampIn(_) => Column::Timestamp {
                values: Vec::new(),
                valid: Validity::default(),
                instant: Instant::Fixed,
                numbers_as_written: false,
            },
            FieldType::List(inner) => Column::List {
                offsets: Vec::new(),
                valid: Validity::default(),
                item: Box::new(Column::new(inner)),
            },
            FieldType::Map(inner) => Column::Map {
                offsets: Vec::new(),
                valid: Validity::default(),
                keys: TextColumn::default(),
                values: Box::new(Column::new(inner)),
            },
            FieldType::Struct(fields) => Column::Struct {
                valid: Validity::default(),
                children: fields.iter().map(|f| Column::new(&f.field_type)).collect(),
            },
        }
    }

    fn len(&self) -> usize {
        match self {
            Column::Int { valid, .. }
            | Column::Float { valid, .. }
            | Column::Bool { valid, .. }
            | Column::Timestamp { valid, .. }
            | Column::List { valid, .. }
            | Column::Map { valid, .. }
            | Column::Struct { valid, .. } => valid.len(),
            Column::Text(text) | Column::Json(text) => text.len(),
        }
    }

    fn is_valid(&self, index: usize) -> bool {
        match self {
            Column::Int { valid, .. }
            | Column::Float { valid, .. }
            | Column::Bool { valid, .. }
            | Column::Timestamp { valid, .. }
            | Column::List { valid, .. }
            | Column::Map { valid, .. }
            | Column::Struct { valid, .. } => valid.is_valid(index),
            Column::Text(text) | Column::Json(text) => text.valid.is_valid(index),
        }
    }

    /// Appends nulls until the column holds `len` values.
    fn pad(&mut self, len: usize) {
        let missing = len.saturating_sub(self.len());
        if missing == 0 {
            return;
        }
        match self {
            Column::Int { values, valid } | Column::Timestamp { values, valid, .. } => {
                values.resize(len, 0);
                valid.push_nulls(missing);
            }
            Column::Float { values, valid } => {
                values.resize(len, 0.0);
                valid.push_nulls(missing);
            }
            Column::Bool { values, valid } => {
                values.append_n(missing, false);
                valid.push_nulls(missing);
            }
            Column::Text(text) | Column::Json(text) => text.pad(len),
            Column::List { offsets, valid, .. } | Column::Map { offsets, valid, .. } => {
                pad_offsets(offsets, valid, len);
            }
            Column::Struct { valid, .. } => valid.push_nulls(missing),
        }
    }

    /// Drops every value from position `len` on (a refused record's partial values). Lists
    /// and maps close a value only at its end, so their items are cut even when the column
    /// itself is not longer than `len`.
    fn truncate(&mut self, len: usize) {
        match self {
            Column::Int { values, valid } | Column::Timestamp { values, valid, .. } => {
                values.truncate(len);
                valid.truncate(len);
            }
            Column::Float { values, valid } => {
                values.truncate(len);
                valid.truncate(len);
            }
            Column::Bool { values, valid } => {
                if values.len() > len {
                    values.truncate(len);
                }
                valid.truncate(len);
            }
            Column::Text(text) | Column::Json(text) => text.truncate(len),
            Column::List {
                offsets,
                valid,
                item,
            } => {
                offsets.truncate(len + 1);
                valid.truncate(len);
                item.truncate(offsets.last().map_or(0, |&end| end as usize));
            }
            Column::Map {
                offsets,
                valid,
                keys,
                values,
            } => {
                offsets.truncate(len + 1);
                valid.truncate(len);
                let end = offsets.last().map_or(0, |&end| end as usize);
                keys.truncate(end);
                values.truncate(end);
            }
            Column::Struct { valid, children } => {
                valid.truncate(len);
                for child in children {
                    child.truncate(len);
                }
            }
        }
    }

    fn push_null(&mut self, at: usize) {
        self.pad(at + 1);
    }

    /// Appends value `index` of `array` (a column of the oracle's batch, of this column's
    /// type) as value `at`: how a record the oracle decoded takes its place in the batch,
    /// instead of every column being copied again to splice it in.
    fn append_from(&mut self, array: &dyn Array, index: usize, at: usize) {
        if array.is_null(index) {
            self.push_null(at);
            return;
        }
        self.pad(at);
        match self {
            Column::Int { values, valid } => {
                values.push(array.as_primitive::<Int64Type>().value(index));
                valid.push(true);
            }
            Column::Float { values, valid } => {
                values.push(array.as_primitive::<Float64Type>().value(index));
                valid.push(true);
            }
            Column::Bool { values, valid } => {
                values.append(array.as_boolean().value(index));
                valid.push(true);
            }
            Column::Text(text) | Column::Json(text) => {
                text.push_bytes(array.as_string::<i32>().value(index).as_bytes());
            }
            Column::Timestamp { values, valid, .. } => {
                values.push(timestamp_value(array, index));
                valid.push(true);
            }
            Column::List {
                offsets,
                valid,
                item,
            } => {
                let items = array.as_list::<i32>().value(index);
                // `pad` leaves a column with no values without its first offset.
                pad_offsets(offsets, valid, at);
                for position in 0..items.len() {
                    let at = item.len();
                    item.append_from(items.as_ref(), position, at);
                }
                offsets.push(item.len() as i32);
                valid.push(true);
            }
            Column::Map {
                offsets,
                valid,
                keys,
                values,
            } => {
                let entries = array.as_map().value(index);
                let (entry_keys, entry_values) = (entries.column(0), entries.column(1));
                // `pad` leaves a column with no values without its first offset.
                pad_offsets(offsets, valid, at);
                for position in 0..entries.len() {
                    let at = keys.len();
                    keys.push_bytes(entry_keys.as_string::<i32>().value(position).as_bytes());
                    values.append_from(entry_values.as_ref(), position, at);
                }
                offsets.push(keys.len() as i32);
                valid.push(true);
            }
            Column::Struct { valid, children } => {
                let fields = array.as_struct();
                valid.push(true);
                for (child, array) in children.iter_mut().zip(fields.columns()) {
                    child.append_from(array.as_ref(), index, at);
                }
            }
        }
    }

    fn finish(&mut self, len: usize, data_type: &DataType) -> ArrayRef {
        self.pad(len);
        match self {
            Column::Int { values, valid } => Arc::new(Int64Array::new(
                ScalarBuffer::from(std::mem::replace(values, Vec::with_capacity(len))),
                valid.finish(),
            )),
            Column::Float { values, valid } => Arc::new(Float64Array::new(
                ScalarBuffer::from(std::mem::replace(values, Vec::with_capacity(len))),
                valid.finish(),
            )),
            Column::Bool { values, valid } => {
                let bits = values.finish();
                Arc::new(BooleanArray::new(bits, valid.finish()))
            }
            Column::Text(text) | Column::Json(text) => Arc::new(text.finish(len)),
            Column::Timestamp { values, valid, .. } => {
                let values = ScalarBuffer::from(std::mem::replace(values, Vec::with_capacity(len)));
                let nulls = valid.finish();
                match data_type {
                    DataType::Timestamp(TimeUnit::Second, _) => Arc::new(
                        PrimitiveArray::<TimestampSecondType>::new(values, nulls)
                            .with_timezone(UTC),
                    ),
                    DataType::Timestamp(TimeUnit::Millisecond, _) => Arc::new(
                        PrimitiveArray::<TimestampMillisecondType>::new(values, nulls)
                            .with_timezone(UTC),
                    ),
                    DataType::Timestamp(TimeUnit::Microsecond, _) => Arc::new(
                        PrimitiveArray::<TimestampMicrosecondType>::new(values, nulls)
                            .with_timezone(UTC),
                    ),
                    _ => Arc::new(
                        PrimitiveArray::<TimestampNanosecondType>::new(values, nulls)
                            .with_timezone(UTC),
                    ),
                }
            }
            Column::List {
                offsets,
                valid,
                item,
            } => {
                let DataType::List(item_field) = data_type else {
                    unreachable!("list columns have list types")
                };
                if offsets.is_empty() {
                    offsets.push(0);
                }
                let end = *offsets.last().expect("offsets start with 0") as usize;
                let values = item.finish(end, item_field.data_type());
                let offsets = std::mem::replace(offsets, Vec::with_capacity(len + 1));
                Arc::new(
                    ListArray::try_new(
                        item_field.clone(),
                        OffsetBuffer::new(ScalarBuffer::from(offsets)),
                        values,
                        valid.finish(),
                    )
                    .expect("list column matches its type"),
                )
            }
            Column::Map {
                offsets,
                valid,
                keys,
                values,
            } => {
                let DataType::Map(entries_field, sorted) = data_type else {
                    unreachable!("map columns have map types")
                };
                let DataType::Struct(entry_fields) = entries_field.data_type() else {
                    unreachable!("map entries are structs")
                };
                if offsets.is_empty() {
                    offsets.push(0);
                }
                let end = *offsets.last().expect("offsets start with 0") as usize;
                let keys = Arc::new(keys.finish(end)) as ArrayRef;
                let values = values.finish(end, entry_fields[1].data_type());
                let entries = StructArray::try_new(entry_fields.clone(), vec![keys, values], None)
                    .expect("map entries match their type");
                let offsets = std::mem::replace(offsets, Vec::with_capacity(len + 1));
                Arc::new(
                    MapArray::try_new(
                        entries_field.clone(),
                        OffsetBuffer::new(ScalarBuffer::from(offsets)),
                        entries,
                        valid.finish(),
                        *sorted,
                    )
                    .expect("map column matches its type"),
                )
            }
            Column::Struct { valid, children } => {
                let DataType::Struct(fields) = data_type else {
                    unreachable!("struct columns have struct types")
                };
                let arrays = children
                    .iter_mut()
                    .zip(fields.iter())
                    .map(|(child, field)| child.finish(len, field.data_type()))
                    .collect();
                struct_array(fields, arrays, valid.finish())
            }
        }
    }
}

fn struct_array(fields: &Fields, arrays: Vec<ArrayRef>, nulls: Option<NullBuffer>) -> ArrayRef {
    Arc::new(StructArray::try_new(fields.clone(), arrays, nulls).expect("struct matches its type"))
}

/// The JSON parser under the walk: both are strict serde deserializers; they differ in how
/// a value's raw text is borrowed.
pub(crate) trait JsonParser {
    type Raw<'de>: Deserialize<'de>;
    fn text<'r>(raw: &'r Self::Raw<'_>) -> &'r str;
}

/// sonic-rs: SIMD where the build target has it.
pub(crate) struct Sonic;

impl JsonParser for Sonic {
    type Raw<'de> = LazyValue<'de>;
    fn text<'r>(raw: &'r Self::Raw<'_>) -> &'r str {
        raw.as_raw_str()
    }
}

/// serde_json.
pub(crate) struct SerdeJson;

impl JsonParser for SerdeJson {
    type Raw<'de> = &'de RawValue;
    fn text<'r>(raw: &'r Self::Raw<'_>) -> &'r str {
        raw.get()
    }
}

/// Signals "not on the fast path"; the message is never shown.
fn miss<E: de::Error>() -> E {
    E::custom("outside the fast path")
}

/// Object keys, borrowed when they hold no escapes.
struct Key<'de>(Cow<'de, str>);

impl<'de> de::Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object key")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

struct RootSeed<'s, P> {
    parser: std::marker::PhantomData<P>,
    plan: &'s mut StructPlan,
    columns: &'s mut [Column],
    row: usize,
    extra: Option<&'s mut Vec<u8>>,
}

impl<'de, P: JsonParser> DeserializeSeed<'de> for RootSeed<'_, P> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de, P: JsonParser> Visitor<'de> for RootSeed<'_, P> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a json object")
    }
    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<(), A::Error> {
        self.plan.begin_object();
        let mut previous = None;
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            match self.plan.find(&key, previous) {
                Some(index) => {
                    if !self.plan.mark(index) {
                        return Err(miss());
                    }
                    previous = Some(index);
                    map.next_value_seed(ValueSeed {
                        parser: std::marker::PhantomData::<P>,
                        column: &mut self.columns[index],
                        plan: self.plan.children[index].as_mut(),
                        at: self.row,
                    })?;
                }
                None => match self.extra.as_deref_mut() {
                    Some(text) => {
                        let raw = map.next_value::<P::Raw<'de>>()?;
                        let raw = P::text(&raw);
                        text.push(if text.is_empty() { b'{' } else { b',' });
                        match &key {
                            Cow::Borrowed(plain) => {
                                text.push(b'"');
                                text.extend_from_slice(plain.as_bytes());
                                text.push(b'"');
                            }
                            Cow::Owned(unescaped) => {
                                serde_json::to_writer(&mut *text, unescaped)
                                    .map_err(|_| miss::<A::Error>())?;
                            }
                        }
                        text.push(b':');
                        text.extend_from_slice(raw.as_bytes());
                    }
                    None => {
                        map.next_value::<IgnoredAny>()?;
                    }
                },
            }
        }
        Ok(())
    }
}

/// One value into `column` at position `at`.
struct ValueSeed<'s, P> {
    parser: std::marker::PhantomData<P>,
    column: &'s mut Column,
    plan: Option<&'s mut StructPlan>,
    at: usize,
}

impl<'de, P: JsonParser> DeserializeSeed<'de> for ValueSeed<'_, P> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        let at = self.at;
        match self.column {
            Column::Int { values, valid } => {
                let value = deserializer.deserialize_any(IntVisitor)?;
                push_primitive(values, valid, at, value);
                Ok(())
            }
            Column::Bool { values, valid } => {
                let value = deserializer.deserialize_any(BoolVisitor)?;
                let missing = at - valid.len();
                values.append_n(missing, false);
                valid.push_nulls(missing);
                values.append(value.unwrap_or(false));
                valid.push(value.is_some());
                Ok(())
            }
            Column::Float { values, valid } => {
                let raw = P::Raw::deserialize(deserializer)?;
                let raw = P::text(&raw);
                let value = match raw.as_bytes()[0] {
                    b'n' => None,
                    b'-' | b'0'..=b'9' => match raw.parse::<f64>() {
                        Ok(v) if v.is_finite() => Some(v),
                        _ => return Err(miss()),
                    },
                    _ => return Err(miss()),
                };
                push_primitive(values, valid, at, value);
                Ok(())
            }
            Column::Text(text) if text.numbers_as_written => {
                let raw = P::Raw::deserialize(deserializer)?;
                let raw = P::text(&raw).as_bytes();
                text.pad(at);
                match raw[0] {
                    b'"' => {
                        unescape(&raw[1..raw.len() - 1], &mut text.data).ok_or_else(miss)?;
                        text.close();
                        text.valid.push(true);
                    }
                    b'n' => text.push_null(),
                    b'{' | b'[' => return Err(miss()),
                    // Numbers keep their text as written; true and false are their text.
                    _ => text.push_bytes(raw),
                }
                Ok(())
            }
            Column::Text(text) => {
                text.pad(at);
                deserializer.deserialize_any(TextVisitor(text))
            }
            Column::Json(text) => {
                let raw = P::Raw::deserialize(deserializer)?;
                let raw = P::text(&raw).as_bytes();
                text.pad(at);
                if raw == b"null" {
                    text.push_null();
                } else {
                    text.push_bytes(raw);
                }
                Ok(())
            }
            Column::Timestamp {
                values,
                valid,
                instant,
                numbers_as_written,
            } if !*numbers_as_written => {
                let value = deserializer.deserialize_any(InstantVisitor {
                    instant: *instant,
                    numbers_as_written,
                })?;
                push_primitive(values, valid, at, value);
                Ok(())
            }
            Column::Timestamp {
                values,
                valid,
                instant,
                ..
            } => {
                let raw = P::Raw::deserialize(deserializer)?;
                let raw = P::text(&raw);
                let value = match (raw.as_bytes()[0], *instant) {
                    (b'n', _) => None,
                    (b'-' | b'0'..=b'9', Instant::ByMagnitude) => {
                        Some(parse_instant(raw).ok_or_else(miss)?)
                    }
                    (b'-' | b'0'..=b'9', Instant::Fixed) => {
                        Some(parse_plain_integer(raw.as_bytes()).ok_or_else(miss)?)
                    }
                    (b'"', Instant::ByMagnitude) => {
                        let inner = &raw[1..raw.len() - 1];
                        let nanos = if inner.contains('\\') {
                            let mut buf = Vec::with_capacity(inner.len());
                            unescape(inner.as_bytes(), &mut buf).ok_or_else(miss)?;
                            let text = std::str::from_utf8(&buf).map_err(|_| miss::<D::Error>())?;
                            parse_instant(text)
                        } else {
                            parse_instant(inner)
                        };
                        Some(nanos.ok_or_else(miss)?)
                    }
                    _ => return Err(miss()),
                };
                push_primitive(values, valid, at, value);
                Ok(())
            }
            Column::List { .. } | Column::Map { .. } | Column::Struct { .. } => deserializer
                .deserialize_any(NestedVisitor {
                    parser: std::marker::PhantomData::<P>,
                    column: self.column,
                    plan: self.plan,
                    at,
                }),
        }
    }
}

/// Pads a list or map column's offsets and validity with nulls up to value `at`.
#[inline]
fn pad_offsets(offsets: &mut Vec<i32>, valid: &mut Validity, at: usize) {
    if offsets.is_empty() {
        offsets.push(0);
    }
    let end = *offsets.last().expect("offsets start with 0");
    let missing = at - valid.len();
    offsets.extend(std::iter::repeat_n(end, missing));
    valid.push_nulls(missing);
}

/// Value `index` of a timestamp array of any unit, in that unit.
fn timestamp_value(array: &dyn Array, index: usize) -> i64 {
    match array.data_type() {
        DataType::Timestamp(TimeUnit::Second, _) => {
            array.as_primitive::<TimestampSecondType>().value(index)
        }
        DataType::Timestamp(TimeUnit::Millisecond, _) => array
            .as_primitive::<TimestampMillisecondType>()
            .value(index),
        DataType::Timestamp(TimeUnit::Microsecond, _) => array
            .as_primitive::<TimestampMicrosecondType>()
            .value(index),
        DataType::Timestamp(TimeUnit::Nanosecond, _) => {
            array.as_primitive::<TimestampNanosecondType>().value(index)
        }
        other => unreachable!("timestamp columns have timestamp types, not {other}"),
    }
}

#[inline]
fn push_primitive<T: Default + Copy>(
    values: &mut Vec<T>,
    valid: &mut Validity,
    at: usize,
    value: Option<T>,
) {
    values.resize(at, T::default());
    valid.push_nulls(at - valid.len());
    values.push(value.unwrap_or_default());
    valid.push(value.is_some());
}

/// `-?[0-9]{1,18}` as an i64: exactly what arrow-json and arrow-cast read it as.
fn parse_plain_integer(text: &[u8]) -> Option<i64> {
    let (negative, digits) = match text.first()? {
        b'-' => (true, &text[1..]),
        _ => (false, text),
    };
    if digits.is_empty() || digits.len() > 18 {
        return None;
    }
    let mut value: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        value = value * 10 + i64::from(d - b'0');
    }
    Some(if negative { -value } else { value })
}

/// Decodes the inside of a JSON string (valid JSON, surrogates already checked) into `out`.
fn unescape(raw: &[u8], out: &mut Vec<u8>) -> Option<()> {
    let mut rest = raw;
    while let Some(at) = memchr::memchr(b'\\', rest) {
        out.extend_from_slice(&rest[..at]);
        let escape = *rest.get(at + 1)?;
        rest = &rest[at + 2..];
        let byte = match escape {
            b'"' => b'"',
            b'\\' => b'\\',
            b'/' => b'/',
            b'b' => 8,
            b'f' => 12,
            b'n' => b'\n',
            b'r' => b'\r',
            b't' => b'\t',
            b'u' => {
                let unit = hex4(rest.get(..4))?;
                rest = &rest[4..];
                let c = if (0xD800..0xDC00).contains(&unit) {
                    let low = (rest.get(..2) == Some(b"\\u"))
                        .then(|| hex4(rest.get(2..6)))
                        .flatten()?;
                    rest = &rest[6..];
                    let code =
                        0x10000 + ((u32::from(unit) - 0xD800) << 10) + (u32::from(low) - 0xDC00);
                    char::from_u32(code)?
                } else {
                    char::from_u32(u32::from(unit))?
                };
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                continue;
            }
            _ => return None,
        };
        out.push(byte);
    }
    out.extend_from_slice(rest);
    Some(())
}

/// A `string` value: strings as they are (sonic-rs unescapes them), integers and booleans
/// as their JSON text. A JSON integer's text is its canonical decimal (sonic-rs reads `-0`
/// as a float), so writing the value back gives the text as written. The text of a float
/// cannot be recovered from its value: the record goes to the oracle, and the column
/// switches to reading raw text from then on.
struct TextVisitor<'s>(&'s mut TextColumn);

impl<'de> Visitor<'de> for TextVisitor<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string")
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.0.push_null();
        Ok(())
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<(), E> {
        self.0.push_bytes(v.as_bytes());
        Ok(())
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        self.0.push_bytes(v.as_bytes());
        Ok(())
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<(), E> {
        self.0.push_bytes(if v { b"true" } else { b"false" });
        Ok(())
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        use std::io::Write;
        let _ = write!(&mut self.0.data, "{v}");
        self.0.close();
        self.0.valid.push(true);
        Ok(())
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        use std::io::Write;
        let _ = write!(&mut self.0.data, "{v}");
        self.0.close();
        self.0.valid.push(true);
        Ok(())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        self.0.numbers_as_written = true;
        Err(miss())
    }
}

struct IntVisitor;

impl<'de> Visitor<'de> for IntVisitor {
    type Value = Option<i64>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an integer")
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Some(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        i64::try_from(v).map(Some).map_err(|_| miss())
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        parse_plain_integer(v.as_bytes()).map(Some).ok_or_else(miss)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        parse_plain_integer(v.as_bytes()).map(Some).ok_or_else(miss)
    }
}

/// A `timestamp` or `timestamp_*` value read without its raw text: integers (the unit by
/// magnitude, or the column's unit) and, for `timestamp`, strings, both turned into the
/// column's values by the same rules as the raw-text path (`parse_instant` and
/// `parse_plain_integer`). A non-integer number cannot be rebuilt exactly from its `f64`:
/// the record goes to the oracle, and the column switches to reading raw text from then on.
struct InstantVisitor<'s> {
    instant: Instant,
    numbers_as_written: &'s mut bool,
}

/// `parse_plain_integer` takes at most 18 digits.
const PLAIN_INTEGER_BELOW: u64 = 1_000_000_000_000_000_000;

impl InstantVisitor<'_> {
    fn integer<E: de::Error>(&self, negative: bool, magnitude: u64) -> Result<Option<i64>, E> {
        let value = match self.instant {
            Instant::ByMagnitude => crate::timestamp::from_integer(negative, magnitude),
            Instant::Fixed if magnitude < PLAIN_INTEGER_BELOW => {
                let value = magnitude as i64;
                Some(if negative { -value } else { value })
            }
            Instant::Fixed => None,
        };
        value.map(Some).ok_or_else(miss)
    }
}

impl<'de> Visitor<'de> for InstantVisitor<'_> {
    type Value = Option<i64>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an instant")
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        self.integer(false, v)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        self.integer(v < 0, v.unsigned_abs())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        *self.numbers_as_written = true;
        Err(miss())
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        match self.instant {
            Instant::ByMagnitude => parse_instant(v).map(Some).ok_or_else(miss),
            Instant::Fixed => Err(miss()),
        }
    }
}

struct BoolVisitor;

impl<'de> Visitor<'de> for BoolVisitor {
    type Value = Option<bool>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a boolean")
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Some(v))
    }
}

/// Lists, maps and structs: null, or the container the column expects.
struct NestedVisitor<'s, P> {
    parser: std::marker::PhantomData<P>,
    column: &'s mut Column,
    plan: Option<&'s mut StructPlan>,
    at: usize,
}

impl<'de, P: JsonParser> Visitor<'de> for NestedVisitor<'_, P> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list, an object or null")
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.column.push_null(self.at);
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let Column::List {
            offsets,
            valid,
            item,
        } = self.column
        else {
            return Err(miss());
        };
        pad_offsets(offsets, valid, self.at);
        let mut plan = self.plan;
        loop {
            let at = item.len();
            let seed = ValueSeed {
                parser: std::marker::PhantomData::<P>,
                column: item,
                plan: plan.as_deref_mut(),
                at,
            };
            if seq.next_element_seed(seed)?.is_none() {
                break;
            }
        }
        offsets.push(item.len() as i32);
        valid.push(true);
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        match self.column {
            Column::Map {
                offsets,
                valid,
                keys,
                values,
            } => {
                pad_offsets(offsets, valid, self.at);
                let mut plan = self.plan;
                while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
                    let at = keys.len();
                    keys.push_bytes(key.as_bytes());
                    map.next_value_seed(ValueSeed {
                        parser: std::marker::PhantomData::<P>,
                        column: values,
                        plan: plan.as_deref_mut(),
                        at,
                    })?;
                }
                offsets.push(keys.len() as i32);
                valid.push(true);
                Ok(())
            }
            Column::Struct { valid, children } => {
                let plan = self.plan.expect("struct columns have a plan");
                let missing = self.at - valid.len();
                valid.push_nulls(missing);
                valid.push(true);
                plan.begin_object();
                let mut previous = None;
                while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
                    match plan.find(&key, previous) {
                        Some(index) => {
                            if !plan.mark(index) {
                                return Err(miss());
                            }
                            previous = Some(index);
                            map.next_value_seed(ValueSeed {
                                parser: std::marker::PhantomData::<P>,
                                column: &mut children[index],
                                plan: plan.children[index].as_mut(),
                                at: self.at,
                            })?;
                        }
                        None => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                for (index, required) in plan.required.iter().enumerate() {
                    if *required && !children[index].is_valid(self.at) {
                        return Err(miss());
                    }
                }
                Ok(())
            }
            _ => Err(miss()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Validity, has_odd_unicode_escape, same_key, unescape};
    use rand::{Rng, SeedableRng};

    #[test]
    fn surrogates() {
        assert!(!has_odd_unicode_escape(br#"{"a":"\ud83d\ude00"}"#));
        assert!(has_odd_unicode_escape(br#"{"a":"\ud83d"}"#));
        assert!(has_odd_unicode_escape(br#"{"a":"\ude00"}"#));
        assert!(has_odd_unicode_escape(br#"{"a":"\u0"0e9"}"#));
        assert!(has_odd_unicode_escape(br#"{"a":"\ud83d\u0041"}"#));
        assert!(!has_odd_unicode_escape(br#"{"a":"\u00e9"}"#));
    }

    #[test]
    fn keys_compare_by_bytes() {
        for (a, b) in [
            ("", ""),
            ("a", "a"),
            ("EdgeStartTimestamp", "EdgeStartTimestamp"),
        ] {
            assert!(same_key(a.as_bytes(), b.as_bytes()));
        }
        for (a, b) in [
            ("a", "b"),
            ("EdgeStartTimestamp", "EdgeStartTimestampX"),
            ("ClientRequestHost", "ClientRequestHosu"),
            ("12345678", "12345679"),
        ] {
            assert!(!same_key(a.as_bytes(), b.as_bytes()));
        }
        // Every length up to five words, equal and with one byte changed at each position
        // (the tail words overlap the chunks, so each position is covered by some word).
        let base: Vec<u8> = (0..40u8).map(|i| b'A' + i % 26).collect();
        for len in 0..=base.len() {
            let a = &base[..len];
            assert!(same_key(a, &base[..len]), "len {len}");
            for at in 0..len {
                let mut b = a.to_vec();
                b[at] ^= 0x20;
                assert!(!same_key(a, &b), "len {len}, byte {at}");
            }
            if len > 0 {
                assert!(
                    !same_key(a, &base[..len - 1]),
                    "len {len} against {}",
                    len - 1
                );
            }
        }
    }

    #[test]
    fn unescapes() {
        let mut out = Vec::new();
        unescape(br#"a\"b\\c\/\n\u00e9\ud83d\ude00"#, &mut out).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "a\"b\\c/\né😀");
    }

    /// Validity against a `Vec<bool>` over seeded random pushes, runs of nulls and cuts,
    /// across word boundaries, checked bit by bit and through the `NullBuffer` it becomes.
    #[test]
    fn validity_matches_a_vec_of_bools() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(17);
        for _ in 0..200 {
            let mut bits = Validity::default();
            let mut model: Vec<bool> = Vec::new();
            for _ in 0..rng.random_range(0..60) {
                match rng.random_range(0..10) {
                    0..=5 => {
                        let valid = rng.random_bool(0.7);
                        bits.push(valid);
                        model.push(valid);
                    }
                    6..=7 => {
                        let n = rng.random_range(0..150);
                        bits.push_nulls(n);
                        model.resize(model.len() + n, false);
                    }
                    _ => {
                        let len = rng.random_range(0..=model.len() + 3);
                        bits.truncate(len);
                        model.truncate(len);
                    }
                }
                assert_eq!(bits.len(), model.len());
                for (i, &valid) in model.iter().enumerate() {
                    assert_eq!(bits.is_valid(i), valid, "bit {i} of {}", model.len());
                }
                assert!(!bits.is_valid(model.len()));
            }
            let nulls = bits.finish();
            assert_eq!(bits.len(), 0);
            match nulls {
                Some(nulls) => {
                    assert_eq!(nulls.len(), model.len());
                    let valid: Vec<bool> = (0..model.len()).map(|i| nulls.is_valid(i)).collect();
                    assert_eq!(valid, model);
                }
                None => assert!(model.iter().all(|&v| v)),
            }
        }
    }
}
