//! Dead letters: records that could not be decoded or processed, kept with their original
//! bytes, where they came from, the stage that refused them and why.
//!
//! They are written as Parquet under `_weir/dead_letter/<dataset>/` by the same commit as
//! the partition's data (so each appears exactly once, across crashes too) and queried as
//! the table `dead_letter`. `raw` holds the original message bytes: treat the table as
//! holding unredacted personal data (see the README on access and retention).

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BinaryBuilder, Int32Builder, Int64Builder, RecordBatch, StringBuilder,
    TimestampMillisecondBuilder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use super::parquet::ClosedFile;
use crate::ledger::OffsetSpan;

/// One refused record.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    /// The Kafka message timestamp (ms), when the broker gave one.
    pub kafka_timestamp: Option<i64>,
    /// `decode` or the operator's name.
    pub stage: String,
    /// Stable machine-readable reason (`invalid_json`, `too_large`, ...).
    pub error_kind: String,
    pub error: String,
    pub raw: Vec<u8>,
}

/// Schema of the `dead_letter` table.
pub fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("dataset", DataType::Utf8, false),
        Field::new("topic", DataType::Utf8, false),
        Field::new("partition", DataType::Int32, false),
        Field::new("offset", DataType::Int64, false),
        Field::new(
            "kafka_timestamp",
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            true,
        ),
        Field::new("stage", DataType::Utf8, false),
        Field::new("error_kind", DataType::Utf8, false),
        Field::new("error", DataType::Utf8, false),
        Field::new("raw_bytes", DataType::Int64, false),
        Field::new("raw", DataType::Binary, false),
    ]))
}

/// The dead letters of one partition's open commit.
#[derive(Debug, Default)]
pub struct DeadLetterBuffer {
    letters: Vec<DeadLetter>,
    bytes: usize,
}

impl DeadLetterBuffer {
    pub fn push(&mut self, letter: DeadLetter) {
        self.bytes += letter.raw.len() + letter.error.len() + 64;
        self.letters.push(letter);
    }

    pub fn len(&self) -> usize {
        self.letters.len()
    }

    /// The letters of the open commit, in arrival order.
    pub fn letters(&self) -> &[DeadLetter] {
        &self.letters
    }

    pub fn is_empty(&self) -> bool {
        self.letters.is_empty()
    }

    pub fn buffered_bytes(&self) -> usize {
        self.bytes
    }

    pub fn discard(&mut self) {
        self.letters.clear();
        self.bytes = 0;
    }

    /// Path of this commit's dead-letter file.
    pub fn path(dataset: &str, file: &str) -> String {
        format!("_weir/dead_letter/{dataset}/{file}")
    }

    /// Writes the buffered letters as one Parquet file (None when there are none).
    /// `offset_resets`: the count of the entry that names it ([`OffsetSpan::resets`]).
    pub fn close(
        &mut self,
        dataset: &str,
        file: &str,
        offset_resets: u64,
    ) -> Result<Option<ClosedFile>, super::parquet::WriteError> {
        if self.letters.is_empty() {
            return Ok(None);
        }
        let letters = std::mem::take(&mut self.letters);
        self.bytes = 0;
        let n = letters.len();
        let offsets = OffsetSpan::of(
            letters
                .iter()
                .map(|l| (l.topic.as_str(), l.partition, offset_resets, l.offset)),
        );
        let mut ds = StringBuilder::new();
        let mut topic = StringBuilder::new();
        let mut partition = Int32Builder::with_capacity(n);
        let mut offset = Int64Builder::with_capacity(n);
        let mut ts = TimestampMillisecondBuilder::with_capacity(n).with_timezone("UTC");
        let mut stage = StringBuilder::new();
        let mut kind = StringBuilder::new();
        let mut error = StringBuilder::new();
        let mut raw_bytes = Int64Builder::with_capacity(n);
        let mut raw = BinaryBuilder::new();
        for l in &letters {
            ds.append_value(dataset);
            topic.append_value(&l.topic);
            partition.append_value(l.partition);
            offset.append_value(l.offset);
            ts.append_option(l.kafka_timestamp);
            stage.append_value(&l.stage);
            kind.append_value(&l.error_kind);
            error.append_value(&l.error);
            raw_bytes.append_value(l.raw.len() as i64);
            raw.append_value(&l.raw);
        }
        let columns: Vec<ArrayRef> = vec![
            Arc::new(ds.finish()),
            Arc::new(topic.finish()),
            Arc::new(partition.finish()),
            Arc::new(offset.finish()),
            Arc::new(ts.finish()),
            Arc::new(stage.finish()),
            Arc::new(kind.finish()),
            Arc::new(error.finish()),
            Arc::new(raw_bytes.finish()),
            Arc::new(raw.finish()),
        ];
        let batch = RecordBatch::try_new(schema(), columns)?;
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::try_new(3)?))
            .build();
        let mut w = ArrowWriter::try_new(Vec::new(), schema(), Some(props))?;
        w.write(&batch)?;
        let buf = w.into_inner()?;
        Ok(Some(ClosedFile {
            path: Self::path(dataset, file),
            rows: n as u64,
            bytes: object_store::PutPayload::from(buf),
            offsets: Some(offsets),
        }))
    }
}
