//! The Parquet writer of one partition's open commit.
//!
//! Rows are split by the hour of their event time into Hive partitions
//! (`<dataset>/date=YYYY-MM-DD/hour=HH/`), each with one zstd Parquet file per commit. At
//! commit, every file is closed, its lineage appended to the footer, and handed back as
//! bytes for upload. The total buffered size is what `commit.max_bytes` bounds.
//!
//! An open Parquet writer costs its codec contexts (one per column, ~40 MiB for
//! http_requests) however few rows it holds, so at most `max_open` hours have one (see
//! [`PartitionWriter::set_max_open`]). Rows of further hours (late data, a replay spread
//! over weeks) wait as Arrow data, taken once per batch, and each such hour's file is
//! written and closed at commit, one at a time, from gathers of several hours' rows.
//! Memory then grows with rows, not with the number of hours, and the memory budget
//! commits early as it does for open files.
//!
//! Such an hour's file usually holds a handful of rows, and a zstd file costs a compression
//! and a decompression context per column whatever its size: creating them, each with a
//! CPU feature probe that traps to the hypervisor on a VM, was a fifth of Weir's CPU while
//! draining a backlog spread over 30 days. A waiting hour of fewer than
//! [`SMALL_FILE_ROWS`] rows is therefore written with Snappy, which has no context to
//! build, without dictionaries (a hash table per column for a few values) and without an
//! offset index (one page per column needs none); `weir compact` rewrites such hours
//! with the read settings later. Per such file that took a third less CPU and 11% fewer
//! bytes (`cargo run --profile profiling -p weir-pipeline --example late_files`); the footer,
//! one entry per leaf column, is most of a file of a few rows either way.
//!
//! Such a file has no column statistics either (16% less CPU per late event and 11% fewer
//! bytes again, `late_files`). What they would let a reader skip is a column chunk of
//! fewer than 1,024 rows, after it has already fetched the footer they would sit in, so
//! they save a reader next to nothing; the hour's other files, and the compacted file that
//! later replaces them all, have them.
//!
//! Timestamp columns are written in the unit `parquet.timestamp_unit` names (microseconds
//! by default, see [`file_schema`]); rows are split into hours from their nanosecond event
//! times before the cast, so the unit never moves a row to another hour.
//!
//! File names come from what the file covers, never from a random id or the clock:
//! `<topic>-<partition>-<first offset>-<seq>-e<epoch>.parquet`. A replay by the same writer
//! rewrites the same key; a different writer (another epoch) never collides with it.

use std::collections::BTreeMap;

use arrow::array::{Array, RecordBatch, TimestampNanosecondArray, UInt32Array};
use arrow::compute::take_record_batch;
use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};
use chrono::{DateTime, Utc};
use object_store::PutPayload;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_writer::ArrowWriterOptions;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::{EnabledStatistics, WriterProperties, WriterPropertiesBuilder};
use parquet::schema::types::SchemaDescriptor;

use crate::config::{ParquetConfig, ParquetDictionary, ParquetStatistics, TimestampUnit};

pub mod columns;

const NANOS_PER_HOUR: i64 = 3_600_000_000_000;

/// A waiting hour with fewer rows than this is written with Snappy rather than zstd (see
/// the module documentation).
pub const SMALL_FILE_ROWS: usize = 1024;
/// Rows of a waiting hour gathered into one batch at a time when its file is written: a
/// write per batch stays cheap, and the copy stays small when one hour holds much of a
/// commit.
const GATHER_ROWS: usize = 8192;

/// Memory an open file holds per leaf column beyond what the writer reports: each column
/// chunk has its own zstd compression and (unused) decompression context. Measured with
/// heaptrack on http_requests (112 leaf columns) at zstd level 3: about 83 MiB over two
/// open files, so ~370 KiB per column.
const CODEC_BYTES_PER_COLUMN: usize = 384 << 10;

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("event time column {0} is missing from the operator chain's output")]
    NoEventTime(String),
    #[error("event time column {0} is not Timestamp(Nanosecond, UTC)")]
    EventTimeType(String),
    #[error("{rows} rows have no event time after the operator chain")]
    NullEventTime { rows: usize },
    #[error("parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    #[error("arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
}

/// A closed file ready for upload.
#[derive(Debug)]
pub struct ClosedFile {
    /// Relative to the lake root.
    pub path: String,
    pub rows: u64,
    /// The file's bytes, in the chunks they were written in.
    pub bytes: PutPayload,
    /// Dead-letter files: the records' offsets ([`crate::ledger::FileRef::offsets`]).
    pub offsets: Option<Vec<crate::ledger::OffsetSpan>>,
}

impl ClosedFile {
    /// How a ledger entry names this file.
    pub fn file_ref(&self) -> crate::ledger::FileRef {
        crate::ledger::FileRef {
            path: self.path.clone(),
            rows: self.rows,
            bytes: self.bytes.content_length() as u64,
            newest_written: None,
            offsets: self.offsets.clone(),
        }
    }
}

/// An in-memory file written in 1 MiB chunks. A growing `Vec<u8>` copies the whole file
/// at each doubling and, at commit, held the old and the new allocation next to the
/// pages being flushed: the peak of a 40 MiB file was ~2.5 times its size. Chunks are
/// never copied and go to the store as they are.
#[derive(Debug, Default)]
pub struct ChunkedFile {
    chunks: Vec<Vec<u8>>,
}

const FILE_CHUNK: usize = 1 << 20;
const FIRST_FILE_CHUNK: usize = 64 << 10;

impl std::io::Write for ChunkedFile {
    fn write(&mut self, mut buf: &[u8]) -> std::io::Result<usize> {
        let n = buf.len();
        while !buf.is_empty() {
            let last = match self.chunks.last_mut() {
                Some(c) if c.len() < c.capacity() => c,
                _ => {
                    // Chunks grow with the file up to FILE_CHUNK: a late hour's file of a
                    // few rows is tens of KiB, and a MiB for each was mostly never touched
                    // but still allocated and returned.
                    let written: usize = self.chunks.iter().map(Vec::len).sum();
                    let size = written.clamp(FIRST_FILE_CHUNK, FILE_CHUNK);
                    self.chunks.push(Vec::with_capacity(size));
                    self.chunks.last_mut().expect("just pushed")
                }
            };
            let take = (last.capacity() - last.len()).min(buf.len());
            last.extend_from_slice(&buf[..take]);
            buf = &buf[take..];
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl ChunkedFile {
    /// Bytes allocated.
    pub fn capacity(&self) -> usize {
        self.chunks.iter().map(Vec::capacity).sum()
    }

    pub fn into_payload(self) -> PutPayload {
        self.chunks.into_iter().map(bytes::Bytes::from).collect()
    }
}

/// The schema of a dataset's files: `schema` (the operator chain's output) with every
/// nanosecond timestamp, nested ones included, in `unit`. Other timestamp units are left as
/// they are.
pub fn file_schema(schema: &SchemaRef, unit: TimestampUnit) -> SchemaRef {
    let target = match unit {
        TimestampUnit::Nanos => return schema.clone(),
        TimestampUnit::Micros => TimeUnit::Microsecond,
    };
    let fields: Fields = schema
        .fields()
        .iter()
        .map(|f| file_field(f, &target))
        .collect();
    std::sync::Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

fn file_field(field: &Field, unit: &TimeUnit) -> Field {
    field
        .clone()
        .with_data_type(file_type(field.data_type(), unit))
}

fn file_type(data_type: &DataType, unit: &TimeUnit) -> DataType {
    use std::sync::Arc;
    match data_type {
        DataType::Timestamp(TimeUnit::Nanosecond, tz) => DataType::Timestamp(*unit, tz.clone()),
        DataType::Struct(fields) => {
            DataType::Struct(fields.iter().map(|f| file_field(f, unit)).collect())
        }
        DataType::List(item) => DataType::List(Arc::new(file_field(item, unit))),
        DataType::LargeList(item) => DataType::LargeList(Arc::new(file_field(item, unit))),
        DataType::FixedSizeList(item, n) => {
            DataType::FixedSizeList(Arc::new(file_field(item, unit)), *n)
        }
        DataType::Map(entries, sorted) => {
            DataType::Map(Arc::new(file_field(entries, unit)), *sorted)
        }
        other => other.clone(),
    }
}

/// `batch` with its columns cast to `schema` (the file schema), where they differ.
fn to_file_schema(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch, WriteError> {
    if batch.schema().fields() == schema.fields() {
        return Ok(batch.clone());
    }
    let columns = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(column, field)| {
            if column.data_type() == field.data_type() {
                Ok(column.clone())
            } else {
                arrow::compute::cast(column, field.data_type())
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}

/// The properties of a waiting hour's file of fewer than [`SMALL_FILE_ROWS`] rows: `props`'s
/// row group size and metadata with Snappy instead of zstd, no dictionaries, no offset
/// index and no statistics (see the module documentation), and no per-column settings, so
/// every column is plain-encoded. Without them, the writer's property lookups (several per
/// column and file) find an empty map instead of hashing the column's path, which was
/// about 3% of the CPU of draining a backlog spread over 30 days (files of ~50 rows); such
/// files are about 2% larger without delta encoding of their integers and timestamps.
fn small_file_properties(props: &WriterProperties) -> WriterProperties {
    WriterProperties::builder()
        .set_max_row_group_row_count(props.max_row_group_row_count())
        .set_key_value_metadata(props.key_value_metadata().cloned())
        .set_compression(Compression::SNAPPY)
        .set_dictionary_enabled(false)
        .set_offset_index_disabled(true)
        .set_statistics_enabled(EnabledStatistics::None)
        .build()
}

/// A writer of one file. `props` must already hold `schema` encoded (`ARROW:schema`, see
/// [`PartitionWriter::new`]) and `parquet_schema` be `schema` converted: both are made once
/// per partition writer rather than for every file, which took 7% of the CPU of a late
/// hour's small file (`late_files`).
fn open_writer(
    schema: &SchemaRef,
    parquet_schema: &SchemaDescriptor,
    props: &WriterProperties,
) -> Result<ArrowWriter<ChunkedFile>, WriteError> {
    let options = ArrowWriterOptions::new()
        .with_properties(props.clone())
        .with_skip_arrow_metadata(true)
        .with_parquet_schema(parquet_schema.clone());
    Ok(ArrowWriter::try_new_with_options(
        ChunkedFile::default(),
        schema.clone(),
        options,
    )?)
}

/// Hive partition key: hours since the epoch.
type HourBucket = i64;

pub struct PartitionWriter {
    dataset: String,
    schema: SchemaRef,
    /// `schema` with timestamps in the configured unit: what the files hold.
    file_schema: SchemaRef,
    event_time_index: usize,
    /// The properties of files opened from now on.
    props: WriterProperties,
    /// `props` before the per-column choices; `None` once they are made (or when
    /// `parquet.dictionary = "always"`). See [`columns`].
    unmeasured: Option<WriterPropertiesBuilder>,
    /// `file_schema` as a Parquet schema, converted once: every file has the same one.
    parquet_schema: SchemaDescriptor,
    open: BTreeMap<HourBucket, (ArrowWriter<ChunkedFile>, u64)>,
    /// Hours without an open writer: their rows, until close.
    waiting: Waiting,
    /// At most this many hours have an open writer.
    max_open: usize,
    /// Newest event time (ns since the epoch) of the rows written since the last close.
    newest: Option<i64>,
}

/// Rows of hours past the open-file cap.
#[derive(Default)]
struct Waiting {
    /// Each input batch's waiting rows, taken once.
    batches: Vec<RecordBatch>,
    /// Per hour, its rows in arrival order: runs of consecutive rows of `batches`, as
    /// (index in `batches`, first row, rows). Each batch holds its hours' rows grouped by
    /// hour, so an hour has one run per batch it appeared in.
    rows: BTreeMap<HourBucket, Vec<(usize, usize, usize)>>,
    /// Arrow memory of `batches`.
    bytes: usize,
}

impl Waiting {
    /// Calls `write` for each waiting hour in order with its row count and its rows in
    /// arrival order, as one or more batches.
    ///
    /// Hours are gathered from the batches holding them several at a time, up to
    /// [`GATHER_ROWS`] rows per gather, and each is handed a slice of its gather. One
    /// `interleave` per column and gather, rather than per column and hour, matters when
    /// a commit's rows spread over weeks: with one gather per hour, the per-call work of
    /// `interleave` (a look at every source batch, for each of the 112 columns) took 15%
    /// of the CPU of draining a backlog spread over 30 days, for hours of ~50 rows. An
    /// hour of more rows than a gather holds is written on its own, as its one run's
    /// slice or in gathers of its own, so the copy stays small whatever one hour holds.
    fn write_hours(
        &self,
        mut write: impl FnMut(HourBucket, usize, Parts) -> Result<(), WriteError>,
    ) -> Result<(), WriteError> {
        let sources: Vec<&RecordBatch> = self.batches.iter().collect();
        let rows_of = |runs: &[(usize, usize, usize)]| -> Vec<(usize, usize)> {
            runs.iter()
                .flat_map(|&(batch, first, len)| (first..first + len).map(move |row| (batch, row)))
                .collect()
        };
        // The gather being filled: its rows' (batch, row), and its hours with their counts.
        let mut indices: Vec<(usize, usize)> = Vec::new();
        let mut hours: Vec<(HourBucket, usize)> = Vec::new();
        let flush = |indices: &mut Vec<(usize, usize)>,
                     hours: &mut Vec<(HourBucket, usize)>,
                     write: &mut dyn FnMut(HourBucket, usize, Parts) -> Result<(), WriteError>|
         -> Result<(), WriteError> {
            if indices.is_empty() {
                return Ok(());
            }
            let gathered = arrow::compute::interleave_record_batch(&sources, indices)?;
            let mut at = 0;
            for (bucket, rows) in hours.drain(..) {
                write(
                    bucket,
                    rows,
                    &mut std::iter::once(Ok(gathered.slice(at, rows))),
                )?;
                at += rows;
            }
            indices.clear();
            Ok(())
        };
        for (&bucket, runs) in &self.rows {
            let rows: usize = runs.iter().map(|&(_, _, len)| len).sum();
            if rows <= GATHER_ROWS {
                if indices.len() + rows > GATHER_ROWS {
                    flush(&mut indices, &mut hours, &mut write)?;
                }
                indices.extend(rows_of(runs));
                hours.push((bucket, rows));
                continue;
            }
            flush(&mut indices, &mut hours, &mut write)?;
            if let [(batch, first, len)] = runs.as_slice() {
                let part = self.batches[*batch].slice(*first, *len);
                write(bucket, rows, &mut std::iter::once(Ok(part)))?;
            } else {
                let own = rows_of(runs);
                let mut parts = own
                    .chunks(GATHER_ROWS)
                    .map(|chunk| Ok(arrow::compute::interleave_record_batch(&sources, chunk)?));
                write(bucket, rows, &mut parts)?;
            }
        }
        flush(&mut indices, &mut hours, &mut write)
    }
}

/// An hour's rows in order, as batches made when asked for (see [`Waiting::write_hours`]).
type Parts<'a> = &'a mut dyn Iterator<Item = Result<RecordBatch, WriteError>>;

impl std::fmt::Debug for PartitionWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartitionWriter")
            .field("dataset", &self.dataset)
            .field("open_files", &self.open.len())
            .finish()
    }
}

/// `date=YYYY-MM-DD/hour=HH` of an hour bucket.
pub fn hive_dir(bucket: HourBucket) -> String {
    let dt: DateTime<Utc> = DateTime::from_timestamp(bucket * 3600, 0).unwrap_or_default();
    dt.format("date=%Y-%m-%d/hour=%H").to_string()
}

/// The object name of a data file.
pub fn file_name(topic: &str, partition: i32, first_offset: i64, seq: u64, epoch: u64) -> String {
    let topic = file_topic(topic);
    format!("{topic}-{partition:05}-{first_offset:020}-{seq:010}-e{epoch:06}.parquet")
}

/// A topic as file names carry it: characters other than `[A-Za-z0-9._-]` become `_`.
pub fn file_topic(topic: &str) -> String {
    topic
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

impl PartitionWriter {
    pub fn new(
        dataset: &str,
        schema: SchemaRef,
        event_time: &str,
        config: &ParquetConfig,
        lineage: Vec<(String, String)>,
    ) -> Result<Self, WriteError> {
        let event_time_index = schema
            .index_of(event_time)
            .map_err(|_| WriteError::NoEventTime(event_time.to_owned()))?;
        match schema.field(event_time_index).data_type() {
            arrow::datatypes::DataType::Timestamp(arrow::datatypes::TimeUnit::Nanosecond, _) => {}
            _ => return Err(WriteError::EventTimeType(event_time.to_owned())),
        }
        let statistics = match config.statistics {
            ParquetStatistics::Chunk => EnabledStatistics::Chunk,
            ParquetStatistics::Page => EnabledStatistics::Page,
        };
        let file_schema = file_schema(&schema, config.timestamp_unit);
        // The Arrow schema is encoded here once, as the Arrow writer would for each file it
        // opens (see `open_writer`).
        let metadata = lineage
            .into_iter()
            .map(|(k, v)| KeyValue::new(k, v))
            .chain([KeyValue::new(
                parquet::arrow::ARROW_SCHEMA_META_KEY.to_owned(),
                parquet::arrow::encode_arrow_schema(&file_schema),
            )])
            .collect();
        let builder = WriterProperties::builder()
            .set_compression(Compression::ZSTD(
                ZstdLevel::try_new(config.zstd_level).map_err(WriteError::Parquet)?,
            ))
            .set_max_row_group_row_count(Some(config.row_group_rows))
            .set_statistics_enabled(statistics)
            .set_key_value_metadata(Some(metadata));
        let props = builder.clone().build();
        let unmeasured = (config.dictionary == ParquetDictionary::Auto).then_some(builder);
        let parquet_schema = parquet::arrow::ArrowSchemaConverter::new().convert(&file_schema)?;
        Ok(PartitionWriter {
            dataset: dataset.to_owned(),
            schema,
            file_schema,
            event_time_index,
            props,
            unmeasured,
            parquet_schema,
            open: BTreeMap::new(),
            waiting: Waiting::default(),
            max_open: usize::MAX,
            newest: None,
        })
    }

    /// Caps the hours with an open writer (at least one). Rows of other hours wait as
    /// Arrow data until [`PartitionWriter::close`]. Hours already open stay open.
    pub fn set_max_open(&mut self, max_open: usize) {
        self.max_open = max_open.max(1);
    }

    /// Hours with an open writer now.
    pub fn open_hours(&self) -> usize {
        self.open.len()
    }

    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// Appends a batch, splitting it by event-time hour. A batch with a row without event
    /// time is refused whole ([`WriteError::NullEventTime`], nothing written): such a row
    /// has no hour to go to.
    pub fn write(&mut self, batch: &RecordBatch) -> Result<(), WriteError> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let times = batch
            .column(self.event_time_index)
            .as_any()
            .downcast_ref::<TimestampNanosecondArray>()
            .ok_or_else(|| {
                WriteError::EventTimeType(self.schema.field(self.event_time_index).name().clone())
            })?;
        // The decoder refuses rows without event time and config validation refuses
        // operators that null it; should one get here all the same, it is not filed under
        // 1970.
        if times.null_count() > 0 {
            return Err(WriteError::NullEventTime {
                rows: times.null_count(),
            });
        }
        self.newest = self.newest.max(arrow::compute::max(times));
        let bucket_of = |i: usize| times.value(i).div_euclid(NANOS_PER_HOUR);
        let first = bucket_of(0);
        let batch = &to_file_schema(batch, &self.file_schema)?;
        if batch.num_rows() >= columns::MEASURE_ROWS
            && let Some(builder) = self.unmeasured.take()
        {
            self.props = columns::apply(builder, &columns::measure(batch)).build();
        }
        if (1..times.len()).all(|i| bucket_of(i) == first) && self.writes_directly(first) {
            return self.append(first, batch);
        }
        let mut groups: BTreeMap<HourBucket, Vec<u32>> = BTreeMap::new();
        for i in 0..times.len() {
            groups.entry(bucket_of(i)).or_default().push(i as u32);
        }
        let mut waiting: Vec<(HourBucket, Vec<u32>)> = Vec::new();
        for (bucket, indices) in groups {
            if self.writes_directly(bucket) {
                let part = take_record_batch(batch, &UInt32Array::from(indices))?;
                self.append(bucket, &part)?;
            } else {
                waiting.push((bucket, indices));
            }
        }
        if !waiting.is_empty() {
            let all: Vec<u32> = waiting
                .iter()
                .flat_map(|(_, i)| i.iter().copied())
                .collect();
            let taken = take_record_batch(batch, &UInt32Array::from(all))?;
            let index = self.waiting.batches.len();
            self.waiting.bytes += taken.get_array_memory_size();
            self.waiting.batches.push(taken);
            let mut row = 0;
            for (bucket, indices) in waiting {
                let runs = self.waiting.rows.entry(bucket).or_default();
                runs.push((index, row, indices.len()));
                row += indices.len();
            }
        }
        Ok(())
    }

    /// Whether rows of `bucket` go to an open writer (it has one, or may open one) rather
    /// than wait. An hour that already has waiting rows keeps waiting, so its rows stay in
    /// arrival order.
    fn writes_directly(&self, bucket: HourBucket) -> bool {
        if self.waiting.rows.contains_key(&bucket) {
            return false;
        }
        self.open.contains_key(&bucket) || self.open.len() < self.max_open
    }

    fn append(&mut self, bucket: HourBucket, batch: &RecordBatch) -> Result<(), WriteError> {
        let entry = match self.open.entry(bucket) {
            std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::btree_map::Entry::Vacant(v) => v.insert((
                open_writer(&self.file_schema, &self.parquet_schema, &self.props)?,
                0,
            )),
        };
        entry.0.write(batch)?;
        entry.1 += batch.num_rows() as u64;
        Ok(())
    }

    /// Bytes held by open files (encoded and in-progress).
    pub fn buffered_bytes(&self) -> usize {
        self.open
            .values()
            .map(|(w, _)| w.bytes_written() + w.in_progress_size())
            .sum::<usize>()
            + self.waiting.bytes
    }

    /// Memory the open files hold that a commit frees: the encoded row groups (the whole
    /// allocation), the open row group's pages, dictionaries and unencoded values, and the
    /// codec contexts of every open file beyond the first (those of one file are counted
    /// as fixed, [`PartitionWriter::codec_bytes`]), and half the Arrow memory of the waiting
    /// rows.
    ///
    /// The memory budget gives open files a third of what is left to them because a
    /// Parquet writer's resident memory grows about twice as fast as it reports (see
    /// `crate::memory`). Waiting rows are Arrow arrays whose reported size is what they
    /// hold; counted at half, they may hold twice what a writer's reported bytes may, the
    /// same resident memory either way. Counted whole, a backlog spread over weeks
    /// committed twice as often as its memory called for, and every commit writes a file
    /// per hour it touched.
    pub fn memory_bytes(&self) -> usize {
        let buffers: usize = self
            .open
            .values()
            .map(|(w, _)| w.inner().capacity() + w.memory_size())
            .sum();
        buffers + self.open.len().saturating_sub(1) * self.codec_bytes() + self.waiting.bytes / 2
    }

    /// The codec contexts of one open file (not reported by the Parquet writer).
    pub fn codec_bytes(&self) -> usize {
        self.parquet_schema.num_columns() * CODEC_BYTES_PER_COLUMN
    }

    pub fn rows(&self) -> u64 {
        self.open.values().map(|(_, rows)| *rows).sum::<u64>()
            + self
                .waiting
                .rows
                .values()
                .flatten()
                .map(|&(_, _, rows)| rows as u64)
                .sum::<u64>()
    }

    /// Newest event time (ns since the epoch) of the rows written since the last
    /// [`PartitionWriter::close`] or [`PartitionWriter::discard`].
    pub fn newest_event_time(&self) -> Option<i64> {
        self.newest
    }

    /// The paths `close` will produce for this commit.
    pub fn planned_paths(&self, file: &str) -> Vec<String> {
        let mut buckets: Vec<HourBucket> = self
            .open
            .keys()
            .chain(self.waiting.rows.keys())
            .copied()
            .collect();
        buckets.sort_unstable();
        buckets
            .into_iter()
            .map(|b| format!("{}/{}/{file}", self.dataset, hive_dir(b)))
            .collect()
    }

    /// Closes every open file, adding `lineage` to each footer.
    pub fn close(
        &mut self,
        file: &str,
        lineage: &[(String, String)],
    ) -> Result<Vec<ClosedFile>, WriteError> {
        self.newest = None;
        let mut out = Vec::with_capacity(self.open.len() + self.waiting.rows.len());
        for (bucket, (writer, rows)) in std::mem::take(&mut self.open) {
            out.push(self.finish(bucket, writer, rows, file, lineage)?);
        }
        // Hours that waited: one writer at a time, written and closed at once, each from
        // its rows gathered with other hours' (see `Waiting::write_hours`).
        let waiting = std::mem::take(&mut self.waiting);
        let small = (!waiting.rows.is_empty()).then(|| small_file_properties(&self.props));
        waiting.write_hours(|bucket, rows, parts| {
            let props = match &small {
                Some(small) if rows < SMALL_FILE_ROWS => small,
                _ => &self.props,
            };
            let mut writer = open_writer(&self.file_schema, &self.parquet_schema, props)?;
            for part in parts {
                writer.write(&part?)?;
            }
            out.push(self.finish(bucket, writer, rows as u64, file, lineage)?);
            Ok(())
        })?;
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }

    fn finish(
        &self,
        bucket: HourBucket,
        mut writer: ArrowWriter<ChunkedFile>,
        rows: u64,
        file: &str,
        lineage: &[(String, String)],
    ) -> Result<ClosedFile, WriteError> {
        for (k, v) in lineage {
            writer.append_key_value_metadata(KeyValue::new(k.clone(), v.clone()));
        }
        let buf = writer.into_inner()?;
        Ok(ClosedFile {
            path: format!("{}/{}/{file}", self.dataset, hive_dir(bucket)),
            rows,
            bytes: buf.into_payload(),
            offsets: None,
        })
    }

    /// Drops every open file and waiting row (an abandoned commit).
    pub fn discard(&mut self) {
        self.newest = None;
        self.open.clear();
        self.waiting = Waiting::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, TimestampNanosecondArray};
    use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use std::sync::Arc;

    /// A batch of [`schema`]: event times (ns) and values.
    fn batch(times: Vec<i64>, values: Vec<i64>) -> RecordBatch {
        RecordBatch::try_new(
            schema(),
            vec![
                Arc::new(TimestampNanosecondArray::from(times).with_timezone("UTC")),
                Arc::new(Int64Array::from(values)),
            ],
        )
        .unwrap()
    }

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new(
                "t",
                DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())),
                false,
            ),
            Field::new("v", DataType::Int64, false),
        ]))
    }

    /// The encodings of each column chunk of the first row group, by column name.
    fn encodings(file: &ClosedFile) -> BTreeMap<String, (Vec<parquet::basic::Encoding>, bool)> {
        let reader =
            ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(file.bytes.clone()))
                .unwrap();
        let meta = reader.metadata();
        meta.row_group(0)
            .columns()
            .iter()
            .map(|c| {
                let encodings = c.encodings().collect::<Vec<_>>();
                let dictionary = c.dictionary_page_offset().is_some();
                (c.column_path().string(), (encodings, dictionary))
            })
            .collect()
    }

    #[test]
    fn columns_are_encoded_as_measured_and_read_back_the_same() {
        use parquet::basic::Encoding;
        let schema = Arc::new(Schema::new(vec![
            Field::new(
                "t",
                DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())),
                false,
            ),
            Field::new("status", DataType::Int64, false),
            Field::new("bytes", DataType::Int64, false),
        ]));
        let base = 1_795_323_600_000_000_000i64;
        let n = 3000i64;
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(
                    TimestampNanosecondArray::from_iter_values((0..n).map(|i| base + i * 1000))
                        .with_timezone("UTC"),
                ),
                Arc::new(Int64Array::from_iter_values((0..n).map(|i| 200 + i % 5))),
                Arc::new(Int64Array::from_iter_values(
                    (0..n).map(|i| i * 7919 % 100_003),
                )),
            ],
        )
        .unwrap();
        for (dictionary, delta) in [
            (crate::config::ParquetDictionary::Auto, true),
            (crate::config::ParquetDictionary::Always, false),
        ] {
            let config = ParquetConfig {
                dictionary,
                ..ParquetConfig::default()
            };
            let mut w = PartitionWriter::new("ds", schema.clone(), "t", &config, vec![]).unwrap();
            w.write(&batch).unwrap();
            let files = w.close("f.parquet", &[]).unwrap();
            let enc = encodings(&files[0]);
            assert!(
                enc["status"].1,
                "repeated values keep their dictionary: {enc:?}"
            );
            for column in ["t", "bytes"] {
                let (encodings, has_dictionary) = &enc[column];
                assert_eq!(
                    encodings.contains(&Encoding::DELTA_BINARY_PACKED),
                    delta,
                    "{column} with {dictionary:?}: {enc:?}"
                );
                assert_eq!(
                    *has_dictionary, !delta,
                    "{column} with {dictionary:?}: {enc:?}"
                );
            }
            let (_, times) = written_times(&files[0]);
            assert_eq!(
                times,
                (0..n).map(|i| (base + i * 1000) / 1000).collect::<Vec<_>>()
            );
            let reader = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(
                files[0].bytes.clone(),
            ))
            .unwrap()
            .build()
            .unwrap();
            let read: Vec<RecordBatch> = reader.map(Result::unwrap).collect();
            let read = arrow::compute::concat_batches(&read[0].schema(), &read).unwrap();
            for c in ["status", "bytes"] {
                assert_eq!(
                    read.column_by_name(c).unwrap().as_ref(),
                    batch.column_by_name(c).unwrap().as_ref(),
                    "{c}"
                );
            }
        }
    }

    #[test]
    fn hive_dirs_and_names() {
        // 2026-11-22T05:00:00Z
        let bucket = 1_795_323_600 / 3600;
        assert_eq!(hive_dir(bucket), "date=2026-11-22/hour=05");
        assert_eq!(
            file_name("cf.http", 3, 42, 7, 2),
            "cf.http-00003-00000000000000000042-0000000007-e000002.parquet"
        );
        assert_eq!(
            file_name("a/b c", 0, 0, 1, 1).split('-').next(),
            Some("a_b_c")
        );
    }

    /// Files opened directly, waiting hours' small files and files opened after the
    /// per-column choices all carry the Arrow schema once (read back with its time zone
    /// and unit) after the writer-level lineage and before the file's own.
    #[test]
    fn every_kind_of_file_carries_the_arrow_schema_once() {
        let h = 3_600_000_000_000i64;
        let base = 1_795_323_600_000_000_000i64;
        let n = columns::MEASURE_ROWS as i64 + 10;
        // The first hour is open; the other two wait (one open file at most).
        let times: Vec<i64> = (0..n).map(|i| base + (i % 3) * h + i).collect();
        let values: Vec<i64> = (0..n).collect();
        let mut w = PartitionWriter::new(
            "ds",
            schema(),
            "t",
            &ParquetConfig::default(),
            vec![("weir.version".into(), "x".into())],
        )
        .unwrap();
        w.set_max_open(1);
        w.write(&batch(times, values)).unwrap();
        let mut files = w
            .close("f.parquet", &[("weir.kafka.topic".into(), "t".into())])
            .unwrap();
        // A file opened after the choices were made (the first batch made them).
        w.write(&batch(vec![base + 5 * h], vec![7])).unwrap();
        files.extend(w.close("g.parquet", &[]).unwrap());
        assert_eq!(files.len(), 4);
        let expected = file_schema(&schema(), TimestampUnit::Micros);
        for file in &files {
            let reader =
                ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(file.bytes.clone()))
                    .unwrap();
            let keys: Vec<String> = reader
                .metadata()
                .file_metadata()
                .key_value_metadata()
                .unwrap()
                .iter()
                .map(|k| k.key.clone())
                .collect();
            let own = if file.path.ends_with("f.parquet") {
                vec!["weir.kafka.topic".to_owned()]
            } else {
                vec![]
            };
            let mut want = vec!["weir.version".to_owned(), "ARROW:schema".to_owned()];
            want.extend(own);
            assert_eq!(keys, want, "{}", file.path);
            assert_eq!(reader.schema().fields(), expected.fields(), "{}", file.path);
        }
    }

    #[test]
    fn splits_by_hour_and_keeps_lineage() {
        let h = 3_600_000_000_000i64;
        let base = 1_795_323_600_000_000_000i64;
        let batch = RecordBatch::try_new(
            schema(),
            vec![
                Arc::new(
                    TimestampNanosecondArray::from(vec![base, base + h, base + 1, base + h + 5])
                        .with_timezone("UTC"),
                ),
                Arc::new(Int64Array::from(vec![1, 2, 3, 4])),
            ],
        )
        .unwrap();
        let mut w = PartitionWriter::new(
            "ds",
            schema(),
            "t",
            &ParquetConfig::default(),
            vec![("weir.version".into(), "x".into())],
        )
        .unwrap();
        w.write(&batch).unwrap();
        assert_eq!(w.rows(), 4);
        assert_eq!(w.newest_event_time(), Some(base + h + 5));
        let files = w
            .close("f.parquet", &[("weir.kafka.topic".into(), "t".into())])
            .unwrap();
        assert_eq!(
            w.newest_event_time(),
            None,
            "a close starts the next commit"
        );
        assert_eq!(files.len(), 2);
        assert_eq!(files[0].path, "ds/date=2026-11-22/hour=05/f.parquet");
        assert_eq!(files[1].path, "ds/date=2026-11-22/hour=06/f.parquet");
        let reader =
            ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(files[0].bytes.clone()))
                .unwrap();
        let kv = reader
            .metadata()
            .file_metadata()
            .key_value_metadata()
            .unwrap()
            .clone();
        assert!(kv.iter().any(|k| k.key == "weir.kafka.topic"));
        assert!(kv.iter().any(|k| k.key == "weir.version"));
        let rows: usize = reader.build().unwrap().map(|b| b.unwrap().num_rows()).sum();
        assert_eq!(rows, 2);
    }

    /// Reads each closed file back: (path, values of `v` in file order).
    fn contents(files: &[ClosedFile]) -> Vec<(String, Vec<i64>)> {
        files
            .iter()
            .map(|f| {
                let reader =
                    ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(f.bytes.clone()))
                        .unwrap()
                        .build()
                        .unwrap();
                let mut values = Vec::new();
                for b in reader {
                    let b = b.unwrap();
                    let v = b.column(1).as_any().downcast_ref::<Int64Array>().unwrap();
                    values.extend(v.values().iter().copied());
                }
                assert_eq!(values.len() as u64, f.rows, "{}", f.path);
                (f.path.clone(), values)
            })
            .collect()
    }

    /// Writes `batches` through one partition writer with at most `max_open` open hours
    /// (unbounded for `None`) and reads back what each closed file holds. Checks on the way
    /// that the cap holds, that every row is counted and that the files land at the paths
    /// planned before the close.
    fn write_all(batches: &[RecordBatch], max_open: Option<usize>) -> Vec<(String, Vec<i64>)> {
        let mut w =
            PartitionWriter::new("ds", schema(), "t", &ParquetConfig::default(), vec![]).unwrap();
        if let Some(m) = max_open {
            w.set_max_open(m);
        }
        for b in batches {
            w.write(b).unwrap();
            assert!(w.open_hours() <= max_open.unwrap_or(usize::MAX));
        }
        let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
        assert_eq!(w.rows() as usize, rows);
        let planned = w.planned_paths("f.parquet");
        let files = w.close("f.parquet", &[]).unwrap();
        assert_eq!(
            planned,
            files.iter().map(|f| f.path.clone()).collect::<Vec<_>>()
        );
        contents(&files)
    }

    #[test]
    fn hours_past_the_open_cap_wait_as_rows_and_land_the_same() {
        let h = 3_600_000_000_000i64;
        let base = 1_795_323_600_000_000_000i64;
        // Three batches spread over 50 hours, hours revisited across batches.
        let batches: Vec<RecordBatch> = (0..3)
            .map(|b| {
                let times: Vec<i64> = (0..40)
                    .map(|i| base + ((i * 7 + b * 3) % 50) * h + i)
                    .collect();
                let values: Vec<i64> = (0..40).map(|i| b * 100 + i).collect();
                batch(times, values)
            })
            .collect();
        let unbounded = write_all(&batches, None);
        assert_eq!(unbounded.len(), 50);
        assert_eq!(write_all(&batches, Some(1)), unbounded);
        assert_eq!(write_all(&batches, Some(7)), unbounded);
    }

    /// A waiting hour of more rows than one gather holds, in runs from two batches, lands
    /// the same as when it had a writer of its own.
    #[test]
    fn a_large_waiting_hour_is_written_in_several_gathers() {
        let h = 3_600_000_000_000i64;
        let base = 1_795_323_600_000_000_000i64;
        let rows = GATHER_ROWS as i64 * 2;
        // Each batch alternates runs of 100 rows: two of hour 0, one of the hour that
        // waits (a third of the rows, more than one gather over the two batches).
        let batches: Vec<RecordBatch> = (0..2)
            .map(|b| {
                let times: Vec<i64> = (0..rows)
                    .map(|i| {
                        let waits = (i / 100) % 3 == 1;
                        base + if waits { h } else { 0 } + i
                    })
                    .collect();
                let values: Vec<i64> = (0..rows).map(|i| b * rows + i).collect();
                batch(times, values)
            })
            .collect();
        let both_open = write_all(&batches, Some(2));
        assert_eq!(both_open.len(), 2);
        assert_eq!(write_all(&batches, Some(1)), both_open);
    }

    /// Waiting hours of many sizes, more rows than several gathers hold, with a large hour
    /// in one run and one in runs from two batches among them, land as with a writer each.
    #[test]
    fn waiting_hours_gathered_together_land_the_same() {
        let h = 3_600_000_000_000i64;
        let base = 1_795_323_600_000_000_000i64;
        let big = GATHER_ROWS as i64 + 5;
        let batches: Vec<RecordBatch> = (0..3i64)
            .map(|b| {
                // Hours 0..60 with 1 to ~400 rows each, rows of the hours interleaved.
                let mut times: Vec<i64> = Vec::new();
                for hour in 0..60i64 {
                    let rows = 1 + (hour * 37 + b * 11) % 400;
                    times.extend((0..rows).map(|i| base + hour * h + i));
                }
                times.sort_by_key(|t| (t % 7, *t));
                // Hour 70 in one run of batch 1; hour 80 in runs of batches 0 and 2.
                if b == 1 {
                    times.extend((0..big).map(|i| base + 70 * h + i));
                } else {
                    times.extend((0..big / 2 + 3).map(|i| base + 80 * h + i));
                }
                let values: Vec<i64> = (0..times.len() as i64).map(|i| b * 1_000_000 + i).collect();
                batch(times, values)
            })
            .collect();
        let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
        assert!(rows > 3 * GATHER_ROWS);
        let unbounded = write_all(&batches, None);
        assert_eq!(unbounded.len(), 62);
        assert_eq!(write_all(&batches, Some(1)), unbounded);
    }

    #[test]
    fn small_waiting_hours_are_written_with_snappy_and_the_rest_with_zstd() {
        // ...and a small one has no dictionary page, no offset index and no statistics; the
        // others do.
        let h = 3_600_000_000_000i64;
        let base = 1_795_323_600_000_000_000i64;
        // Hour 0 opens a writer; hour 1 waits with a full file's rows, hour 2 with three.
        let mut times = vec![base; 10];
        times.extend(std::iter::repeat_n(base + h, SMALL_FILE_ROWS));
        times.extend([base + 2 * h; 3]);
        let values: Vec<i64> = (0..times.len() as i64).collect();
        let batch = RecordBatch::try_new(
            schema(),
            vec![
                Arc::new(TimestampNanosecondArray::from(times).with_timezone("UTC")),
                Arc::new(Int64Array::from(values)),
            ],
        )
        .unwrap();
        // Dictionaries everywhere, so that only the small file's settings can drop one.
        let config = ParquetConfig {
            dictionary: crate::config::ParquetDictionary::Always,
            ..ParquetConfig::default()
        };
        let mut w = PartitionWriter::new("ds", schema(), "t", &config, vec![]).unwrap();
        w.set_max_open(1);
        w.write(&batch.slice(0, 10)).unwrap();
        w.write(&batch.slice(10, batch.num_rows() - 10)).unwrap();
        assert_eq!(w.open_hours(), 1);
        let files = w.close("f.parquet", &[]).unwrap();
        let codecs: Vec<(u64, Compression)> = files
            .iter()
            .map(|f| {
                let reader =
                    ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(f.bytes.clone()))
                        .unwrap();
                let meta = reader.metadata();
                let codecs: Vec<Compression> = meta
                    .row_groups()
                    .iter()
                    .flat_map(|g| g.columns().iter().map(|c| c.compression()))
                    .collect();
                assert!(codecs.windows(2).all(|p| p[0] == p[1]), "{codecs:?}");
                let v = meta.row_group(0).column(1);
                let small = codecs[0] == Compression::SNAPPY;
                assert_eq!(v.dictionary_page_offset().is_none(), small, "{v:?}");
                assert_eq!(v.offset_index_offset().is_none(), small, "{v:?}");
                assert_eq!(v.statistics().is_none(), small, "{v:?}");
                (f.rows, codecs[0])
            })
            .collect();
        let zstd =
            Compression::ZSTD(ZstdLevel::try_new(ParquetConfig::default().zstd_level).unwrap());
        assert_eq!(
            codecs,
            vec![
                (10, zstd),
                (SMALL_FILE_ROWS as u64, zstd),
                (3, Compression::SNAPPY)
            ]
        );
        // Every row reads back, in order.
        let read = contents(&files);
        let all: Vec<i64> = read.iter().flat_map(|(_, v)| v.iter().copied()).collect();
        assert_eq!(all, (0..batch.num_rows() as i64).collect::<Vec<_>>());
    }

    #[test]
    fn chunked_file_keeps_every_byte_in_order() {
        use std::io::Write;
        let mut f = ChunkedFile::default();
        let data: Vec<u8> = (0..(3 * FILE_CHUNK + 5)).map(|i| (i % 251) as u8).collect();
        for piece in data.chunks(FILE_CHUNK / 3 + 7) {
            f.write_all(piece).unwrap();
        }
        // Chunks double from FIRST_FILE_CHUNK up to FILE_CHUNK.
        assert!(f.chunks.iter().all(|c| c.capacity() <= FILE_CHUNK));
        assert_eq!(f.chunks[0].capacity(), FIRST_FILE_CHUNK);
        assert!(f.capacity() < data.len() + FILE_CHUNK, "{}", f.capacity());
        let payload = f.into_payload();
        assert_eq!(payload.content_length(), data.len());
        assert_eq!(bytes::Bytes::from(payload), data);
    }

    #[test]
    fn rows_without_event_time_are_refused_not_filed_under_1970() {
        let base = 1_795_323_600_000_000_000i64;
        let batch = RecordBatch::try_new(
            schema_nullable(),
            vec![
                Arc::new(
                    TimestampNanosecondArray::from(vec![Some(base), None, Some(base + 1)])
                        .with_timezone("UTC"),
                ),
                Arc::new(Int64Array::from(vec![1, 2, 3])),
            ],
        )
        .unwrap();
        let mut w = PartitionWriter::new(
            "ds",
            schema_nullable(),
            "t",
            &ParquetConfig::default(),
            vec![],
        )
        .unwrap();
        let err = w.write(&batch).unwrap_err();
        assert!(
            matches!(err, WriteError::NullEventTime { rows: 1 }),
            "{err}"
        );
        assert_eq!(w.rows(), 0, "nothing of the batch was written");
        assert!(w.close("f.parquet", &[]).unwrap().is_empty());
    }

    fn schema_nullable() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new(
                "t",
                DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())),
                true,
            ),
            Field::new("v", DataType::Int64, false),
        ]))
    }

    #[test]
    fn missing_event_time_is_refused() {
        let err = PartitionWriter::new("ds", schema(), "nope", &ParquetConfig::default(), vec![])
            .unwrap_err();
        assert!(err.to_string().contains("nope"));
    }

    /// The Parquet timestamp type of column `t` in a closed file, and its values.
    fn written_times(file: &ClosedFile) -> (String, Vec<i64>) {
        let reader =
            ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(file.bytes.clone()))
                .unwrap();
        let logical = format!(
            "{:?}",
            reader
                .metadata()
                .file_metadata()
                .schema_descr()
                .column(0)
                .logical_type_ref()
        );
        let mut values = Vec::new();
        for b in reader.build().unwrap() {
            let b = b.unwrap();
            let t = arrow::compute::cast(b.column(0), &DataType::Int64).unwrap();
            values.extend(t.as_any().downcast_ref::<Int64Array>().unwrap().values());
        }
        (logical, values)
    }

    #[test]
    fn timestamps_are_written_in_the_configured_unit_and_bucketed_from_nanos() {
        let h = 3_600_000_000_000i64;
        let base = 1_795_323_600_000_000_000i64;
        // The last nanosecond of an hour stays in that hour, whatever the file's unit; so
        // does the last nanosecond before the epoch.
        let times = vec![base - 1, base + 1_999, base + h, -1];
        let batch = RecordBatch::try_new(
            schema(),
            vec![
                Arc::new(TimestampNanosecondArray::from(times.clone()).with_timezone("UTC")),
                Arc::new(Int64Array::from(vec![1, 2, 3, 4])),
            ],
        )
        .unwrap();
        let paths = [
            "ds/date=1969-12-31/hour=23/f.parquet",
            "ds/date=2026-11-22/hour=04/f.parquet",
            "ds/date=2026-11-22/hour=05/f.parquet",
            "ds/date=2026-11-22/hour=06/f.parquet",
        ];
        for (unit, parquet_unit, scale) in [
            (TimestampUnit::Micros, "MICROS", 1_000),
            (TimestampUnit::Nanos, "NANOS", 1),
        ] {
            let config = ParquetConfig {
                timestamp_unit: unit,
                ..ParquetConfig::default()
            };
            let mut w = PartitionWriter::new("ds", schema(), "t", &config, vec![]).unwrap();
            w.write(&batch).unwrap();
            let files = w.close("f.parquet", &[]).unwrap();
            assert_eq!(
                files.iter().map(|f| f.path.as_str()).collect::<Vec<_>>(),
                paths
            );
            let mut written = Vec::new();
            for f in &files {
                let (logical, values) = written_times(f);
                assert!(
                    logical.contains(parquet_unit)
                        && logical.contains("is_adjusted_to_u_t_c: true"),
                    "{unit:?}: {logical}"
                );
                written.extend(values);
            }
            // Files in path order: pre-epoch, 04, 05, 06.
            let expected: Vec<i64> = [times[3], times[0], times[1], times[2]]
                .iter()
                .map(|t| t / scale)
                .collect();
            assert_eq!(written, expected, "{unit:?}");
        }
    }

    #[test]
    fn file_schema_converts_nested_nanosecond_timestamps_only() {
        let nanos = DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into()));
        let micros = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
        let millis = DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()));
        let schema = Arc::new(Schema::new(vec![
            Field::new("t", nanos.clone(), false),
            Field::new("m", millis.clone(), true),
            Field::new(
                "s",
                DataType::Struct(vec![Field::new("inner", nanos.clone(), true)].into()),
                true,
            ),
            Field::new_list("l", Field::new_list_field(nanos.clone(), true), true),
        ]));
        let micro = file_schema(&schema, TimestampUnit::Micros);
        assert_eq!(micro.field(0).data_type(), &micros);
        assert_eq!(micro.field(1).data_type(), &millis);
        assert_eq!(
            micro.field(2).data_type(),
            &DataType::Struct(vec![Field::new("inner", micros.clone(), true)].into())
        );
        assert_eq!(
            micro.field(3).data_type(),
            &DataType::List(Arc::new(Field::new_list_field(micros, true)))
        );
        assert_eq!(file_schema(&schema, TimestampUnit::Nanos), schema);
    }
}
