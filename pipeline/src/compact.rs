//! `weir compact`: merges the small files of old hours into large files sorted by event
//! time, committed as replace entries of the dataset's maintenance stream.
//!
//! ```text
//!  recover the maintenance stream (claim an epoch; a takeover entry and the deletion of
//!  │                               what a killed run left, exactly as for a partition)
//!  ▼
//!  the table as the ledger names it (query::CommittedView): files by hour
//!  │
//!  for each hour that ended at least min_age ago, oldest first:
//!  │   small = its files under half of target_file_size;  fewer than 2 → nothing to do
//!  │   their columns: the dataset's, plus any an input holds that it no longer has
//!  │   read them (DataFusion: sorted by event time, spilling to disk past its memory limit)
//!  │   write files of about target_file_size (zstd level, page index, bloom filters)
//!  │   rows written = rows the ledger says the inputs hold, or stop with an error
//!  ▼
//!  one replace entry per hour: removed = the inputs, files = the outputs
//!      (intent, upload, create-if-absent entry: the commit protocol of `crate::commit`)
//!  ▼
//!  dead letters: the small dead-letter files whose newest row was first written at least
//!  min_age ago, grouped by that time (windows of a 24th of retention, at least an hour;
//!  a day without retention), sorted by topic, partition and offset; one replace
//!  entry per group, its outputs named with the group's newest time
//!  (`FileRef::newest_written`), by which `weir vacuum` ages them for retention
//! ```
//!
//! Readers see an hour's old files or its new ones, never both: the entry is one object.
//! A file `weir run` commits into the hour meanwhile is not among the inputs and stays.
//! Output names carry the entry's sequence number and epoch
//! (`compact-<seq>-e<epoch>-<n>.parquet`), so a file of an attempt can only ever be named
//! by that attempt's entry, and a killed run's files are found from its intent and deleted
//! by the next run's recovery. The replaced files stay in storage until `weir vacuum`
//! deletes them after the grace period. Two compactions of one dataset at once are not
//! wanted (the CronJob forbids it): the second to commit is fenced, its files are deleted,
//! and it stops with an error that says so.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::datatypes::SchemaRef;
use chrono::{DateTime, DurationRound, NaiveDate, Utc};
use datafusion::common::Column;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::logical_expr::Expr;
use datafusion::prelude::{SessionConfig, SessionContext};
use futures::StreamExt;
use object_store::ObjectStore;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

use tracing::warn;

use crate::config::{CompactionConfig, Config};
use crate::ledger::{self, FileRef, LedgerError};
use crate::maintenance::{Job, JobError};
use crate::query::CommittedView;
use crate::runtime::DatasetRuntime;
use crate::sink::parquet::{ChunkedFile, ClosedFile};

#[derive(Debug, thiserror::Error)]
pub enum CompactError {
    #[error("{0}")]
    Ledger(#[from] LedgerError),
    #[error("object store: {0}")]
    Store(#[from] object_store::Error),
    #[error("reading the files of {hour}: {source}")]
    Read {
        hour: String,
        #[source]
        source: datafusion::error::DataFusionError,
    },
    #[error("writing the compacted files of {hour}: {source}")]
    Write {
        hour: String,
        #[source]
        source: parquet::errors::ParquetError,
    },
    #[error(
        "{group}: the ledger says the inputs hold {expected} rows, {written} were written; nothing committed"
    )]
    RowCount {
        group: String,
        expected: u64,
        written: u64,
    },
    #[error("{0}")]
    Job(#[from] JobError),
    #[error("compaction.{0}")]
    Config(String),
    #[error("{group}: {reason}; nothing committed")]
    Schema { group: String, reason: String },
}

/// What one run did, for the summary line.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    pub hours: u64,
    /// Hours left as they were because an input's column has another type than the
    /// dataset's (logged, each naming the column and the file).
    pub hours_refused: u64,
    pub files_in: u64,
    pub files_out: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub rows: u64,
}

impl Summary {
    pub fn add(&mut self, other: &Summary) {
        self.hours += other.hours;
        self.hours_refused += other.hours_refused;
        self.files_in += other.files_in;
        self.files_out += other.files_out;
        self.bytes_in += other.bytes_in;
        self.bytes_out += other.bytes_out;
        self.rows += other.rows;
    }
}

/// Settings of one run.
#[derive(Clone)]
pub struct Options {
    pub min_age: Duration,
    /// This process start's writer id (`host/pid/random`), as `weir run` has one.
    pub writer: String,
    /// Called with a line per hour done (a progress line on a terminal, a log line
    /// otherwise).
    pub progress: Arc<dyn Fn(&str) + Send + Sync>,
}

/// Compacts every hour of `dataset` older than `opts.min_age` at `now`.
pub async fn compact_dataset(
    config: &Config,
    dataset: &DatasetRuntime,
    store: Arc<dyn ObjectStore>,
    opts: &Options,
    now: DateTime<Utc>,
) -> Result<Summary, CompactError> {
    let settings = &config.compaction;
    let schema = dataset.output_schema.clone();
    let props_base = writer_properties(settings, &schema)?;
    let mut job = Job::start(config, &dataset.name, store.clone(), &opts.writer).await?;
    let view = CommittedView::load(store.clone(), std::slice::from_ref(&dataset.name)).await?;
    // Both lists now, while the view is fresh (it refuses to read hour manifests once it
    // is old, and merging the hours below can take long).
    let dead_letters = view.dead_letter_files(&dataset.name).await?;
    let mut by_hour: BTreeMap<String, Vec<FileRef>> = BTreeMap::new();
    for f in view.committed_files(&dataset.name).await? {
        let bucket = ledger::bucket_of(&dataset.name, &f.path);
        by_hour.entry(bucket).or_default().push(f);
    }
    let cutoff = now - chrono::Duration::from_std(opts.min_age).unwrap_or_default();
    let half = settings.target_file_size / 2;
    let memory_limit = (config.memory.limit / 2) as usize;
    let mut total = Summary::default();
    for (hour, files) in by_hour {
        let Some(end) = hour_end(&hour) else {
            continue;
        };
        if end > cutoff {
            continue;
        }
        let group = Group {
            label: format!("{} {hour}", dataset.name),
            dir: format!("{}/{hour}", dataset.name),
            inputs: files.into_iter().filter(|f| f.bytes < half).collect(),
            schema: schema.clone(),
            sort: vec![dataset.resolved.schema.event_time.clone()],
            dead_letters: None,
        };
        match compact_group(
            &mut job,
            store.clone(),
            group,
            settings,
            memory_limit,
            props_base.clone(),
            opts,
        )
        .await
        {
            Ok(Some(done)) => total.add(&done),
            Ok(None) => {}
            // One hour whose files disagree with the dataset's schema is left as it is
            // (nothing of it was committed); the others are still compacted.
            Err(CompactError::Schema { group, reason }) => {
                warn!(hour = %group, reason = %reason, "hour not compacted: its files' columns disagree with the dataset's schema");
                (opts.progress)(&format!("{group}: not compacted: {reason}"));
                total.hours_refused += 1;
            }
            Err(e) => return Err(e),
        }
    }
    // Dead letters: the small files whose rows were all first written at least min_age
    // ago, by Kafka position, grouped by when they were written (see `dead_letter_groups`).
    let modified = crate::maintenance::dead_letters_modified(&store, &dataset.name).await?;
    let window = dead_letter_window(dataset.resolved.config.retention);
    for ((from, _), merged) in dead_letter_groups(dead_letters, &modified, half, cutoff, window) {
        let group = Group {
            label: format!(
                "{} dead letters written from {}",
                dataset.name,
                from.format("%Y-%m-%dT%H:%MZ")
            ),
            dir: format!("_weir/dead_letter/{}", dataset.name),
            inputs: merged.files,
            schema: crate::sink::dead_letter::schema(),
            sort: vec!["topic".into(), "partition".into(), "offset".into()],
            dead_letters: Some(merged.newest_written),
        };
        if let Some(done) = compact_group(
            &mut job,
            store.clone(),
            group,
            settings,
            memory_limit,
            writer_properties(settings, &crate::sink::dead_letter::schema())?,
            opts,
        )
        .await?
        {
            total.add(&done);
        }
    }
    Ok(total)
}

/// Files merged into one replace entry: an hour of a dataset, or its dead letters.
struct Group {
    /// For progress lines and errors: `http_requests date=…/hour=…`.
    label: String,
    /// The folder the inputs are in and the outputs go to, relative to the lake root.
    dir: String,
    inputs: Vec<FileRef>,
    schema: SchemaRef,
    /// Output order, ascending.
    sort: Vec<String>,
    /// `Some` when the outputs are dead-letter files (the entry's `dead_letters`, not its
    /// `files`): when the newest input was first written ([`FileRef::written`]), which the
    /// outputs carry.
    dead_letters: Option<DateTime<Utc>>,
}

/// Dead-letter files to merge into one group, and when the newest of their dead letters
/// was first written: the time the merged files carry.
#[derive(Debug)]
struct DeadLetterGroup {
    files: Vec<FileRef>,
    newest_written: DateTime<Utc>,
}

/// How far apart the times at which the dead letters of one merged file were written may
/// lie: a 24th of the dataset's retention, in whole hours and at least one; a day without
/// retention. Retention removes dead letters by whole files, when the newest of a file's
/// dead letters passes it, so a dead letter stays at most this much longer than retention
/// (plus the time until the next `weir vacuum`), and at most about 25 merged files of a
/// dataset's dead letters are in the table at any time. Without retention the day's window
/// keeps files apart in time all the same, so retention set later finds old dead letters in
/// old files.
fn dead_letter_window(retention: Option<Duration>) -> chrono::Duration {
    let hours = retention.map_or(24, |r| (r.as_secs() / 24 / 3600).max(1));
    chrono::Duration::hours(hours as i64)
}

/// The dead-letter files to merge, grouped by when the newest of their dead letters was
/// first written ([`FileRef::written`], with `modified` from a listing): the files under
/// `half` bytes written at or before `cutoff`, in groups of `window` counted from the Unix
/// epoch (the map's key is a group's start). A merged file's time is its newest input's,
/// inside the group, so a later run merges it with that group's newer files only and never
/// with younger dead letters. A file the listing missed is left for a later run. Files of
/// records read after different numbers of offset resets are kept apart (the second part of
/// the key), so a merged file never holds the old and the new records of a recreated
/// topic's offsets, which a Kafka backfill could not tell apart.
fn dead_letter_groups(
    files: Vec<FileRef>,
    modified: &HashMap<String, DateTime<Utc>>,
    half: u64,
    cutoff: DateTime<Utc>,
    window: chrono::Duration,
) -> BTreeMap<(DateTime<Utc>, u64), DeadLetterGroup> {
    let mut groups: BTreeMap<(DateTime<Utc>, u64), DeadLetterGroup> = BTreeMap::new();
    for f in files {
        if f.bytes >= half {
            continue;
        }
        let Some(&modified) = modified.get(&f.path) else {
            continue;
        };
        let written = f.written(modified);
        if written > cutoff {
            continue;
        }
        let from = written.duration_trunc(window).unwrap_or(written);
        // One count per file: a commit's file has one, and merged files keep it. A file
        // with several is left as it is.
        let counts: std::collections::BTreeSet<u64> =
            f.offsets.iter().flatten().map(|s| s.resets).collect();
        if counts.len() > 1 {
            continue;
        }
        let resets = counts.first().copied().unwrap_or(0);
        let group = groups
            .entry((from, resets))
            .or_insert_with(|| DeadLetterGroup {
                files: Vec::new(),
                newest_written: written,
            });
        group.newest_written = group.newest_written.max(written);
        group.files.push(f);
    }
    groups
}

/// Merges a group of two or more files and commits the replace entry. `None` when there is
/// nothing to merge.
async fn compact_group(
    job: &mut Job,
    store: Arc<dyn ObjectStore>,
    mut group: Group,
    settings: &CompactionConfig,
    memory_limit: usize,
    props: parquet::file::properties::WriterPropertiesBuilder,
    opts: &Options,
) -> Result<Option<Summary>, CompactError> {
    if group.inputs.len() < 2 {
        return Ok(None);
    }
    group.inputs.sort_by(|a, b| a.path.cmp(&b.path));
    let started = Instant::now();
    let outputs = merge(
        store,
        &group,
        settings,
        // Sorting spills to disk past this; the output file is held in memory besides.
        memory_limit,
        props,
        job.next(),
    )
    .await?;
    let expected: u64 = group.inputs.iter().map(|f| f.rows).sum();
    let written: u64 = outputs.iter().map(|f| f.rows).sum();
    if expected != written {
        return Err(CompactError::RowCount {
            group: group.label,
            expected,
            written,
        });
    }
    let done = Summary {
        hours: u64::from(group.dead_letters.is_none()),
        hours_refused: 0,
        files_in: group.inputs.len() as u64,
        files_out: outputs.len() as u64,
        bytes_in: group.inputs.iter().map(|f| f.bytes).sum(),
        bytes_out: outputs
            .iter()
            .map(|f| f.bytes.content_length() as u64)
            .sum(),
        rows: written,
    };
    match group.dead_letters {
        Some(newest_written) => {
            job.replace_dead_letters(group.inputs, outputs, newest_written)
                .await?
        }
        None => job.replace(group.inputs, outputs, Vec::new()).await?,
    }
    (opts.progress)(&format!(
        "{}: {} files ({} bytes) → {} ({} bytes), {} rows, {:.1} s",
        group.label,
        done.files_in,
        done.bytes_in,
        done.files_out,
        done.bytes_out,
        done.rows,
        started.elapsed().as_secs_f64()
    ));
    Ok(Some(done))
}

/// The end of the hour a bucket (`date=YYYY-MM-DD/hour=HH`) names.
pub fn hour_end(bucket: &str) -> Option<DateTime<Utc>> {
    let (date, hour) = bucket.split_once('/')?;
    let date = NaiveDate::parse_from_str(date.strip_prefix("date=")?, "%Y-%m-%d").ok()?;
    let hour: u32 = hour.strip_prefix("hour=")?.parse().ok()?;
    let start = date.and_hms_opt(hour, 0, 0)?.and_utc();
    Some(start + chrono::Duration::hours(1))
}

fn writer_properties(
    settings: &CompactionConfig,
    schema: &SchemaRef,
) -> Result<parquet::file::properties::WriterPropertiesBuilder, CompactError> {
    let level = ZstdLevel::try_new(settings.zstd_level)
        .map_err(|e| CompactError::Config(format!("zstd_level: {e}")))?;
    let mut b = WriterProperties::builder()
        .set_compression(Compression::ZSTD(level))
        .set_statistics_enabled(EnabledStatistics::Page);
    for name in &settings.bloom_filter_columns {
        if schema.field_with_name(name).is_ok() {
            b = b.set_column_bloom_filter_enabled(ColumnPath::from(name.as_str()), true);
        }
    }
    Ok(b)
}

/// `schema` with the columns of `inputs` (read from their footers) that it lacks appended,
/// nullable (the other inputs have no values for them). A column whose type in a file
/// differs from the schema's is refused, naming it: compacting would have to drop or
/// convert its values.
async fn widened(
    schema: &SchemaRef,
    store: &Arc<dyn ObjectStore>,
    inputs: &[FileRef],
) -> Result<SchemaRef, String> {
    use futures::TryStreamExt as _;
    let mut fields: Vec<arrow::datatypes::FieldRef> = schema.fields().iter().cloned().collect();
    // An hour can have thousands of inputs: their footers are read 32 at a time, then
    // folded in input order, so the columns come in the same order every time.
    let mut footers: Vec<(usize, arrow::datatypes::Schema)> =
        futures::stream::iter(inputs.iter().enumerate())
            .map(|(i, input)| async move {
                footer_schema(store, input)
                    .await
                    .map(|found| (i, found))
                    .map_err(|e| format!("reading the footer of {}: {e}", input.path))
            })
            .buffer_unordered(32)
            .try_collect()
            .await?;
    footers.sort_by_key(|(i, _)| *i);
    for (i, found) in &footers {
        let input = &inputs[*i];
        for field in found.fields() {
            match fields.iter().find(|f| f.name() == field.name()) {
                Some(known) if known.data_type() != field.data_type() => {
                    return Err(format!(
                        "column {} is {} in the dataset's schema but {} in {}: compacting would \
                         have to convert or drop its values",
                        field.name(),
                        known.data_type(),
                        field.data_type(),
                        input.path
                    ));
                }
                Some(_) => {}
                None => fields.push(Arc::new(field.as_ref().clone().with_nullable(true))),
            }
        }
    }
    if fields.len() == schema.fields().len() {
        return Ok(schema.clone());
    }
    Ok(Arc::new(arrow::datatypes::Schema::new_with_metadata(
        fields,
        schema.metadata().clone(),
    )))
}

/// The Arrow schema a Parquet file's footer holds (two ranged reads: the footer's length,
/// then the footer).
async fn footer_schema(
    store: &Arc<dyn ObjectStore>,
    file: &FileRef,
) -> Result<arrow::datatypes::Schema, String> {
    use parquet::arrow::async_reader::AsyncFileReader as _;
    let path = object_store::path::Path::from(file.path.as_str());
    let mut reader = crate::store::ParquetRanges::new(store.clone(), path, file.bytes);
    let metadata = reader.get_metadata(None).await.map_err(|e| e.to_string())?;
    let file_metadata = metadata.file_metadata();
    parquet::arrow::parquet_to_arrow_schema(
        file_metadata.schema_descr(),
        file_metadata.key_value_metadata(),
    )
    .map_err(|e| e.to_string())
}

/// Refuses `compaction.bloom_filter_columns` naming a column no dataset has.
pub fn check_bloom_filter_columns(
    config: &Config,
    datasets: &[Arc<DatasetRuntime>],
) -> Result<(), CompactError> {
    let outputs: Vec<_> = datasets.iter().map(|d| d.output_schema.clone()).collect();
    match config.bloom_column_no_dataset_has(&outputs) {
        Some(name) => Err(CompactError::Config(format!(
            "bloom_filter_columns: no dataset has a column {name}"
        ))),
        None => Ok(()),
    }
}

async fn merge(
    store: Arc<dyn ObjectStore>,
    group: &Group,
    settings: &CompactionConfig,
    memory_limit: usize,
    props: parquet::file::properties::WriterPropertiesBuilder,
    (seq, epoch): (u64, u64),
) -> Result<Vec<ClosedFile>, CompactError> {
    let hour = group.label.as_str();
    let inputs = group.inputs.as_slice();
    let read_err = |source| CompactError::Read {
        hour: hour.to_owned(),
        source,
    };
    // The dataset's columns, and any the inputs hold that it no longer names (an operator
    // or a schema field removed since they were written): read with the dataset's schema
    // alone, those values would be gone once vacuum deleted the inputs.
    let schema = &widened(&group.schema, &store, inputs)
        .await
        .map_err(|reason| CompactError::Schema {
            group: hour.to_owned(),
            reason,
        })?;
    let runtime = RuntimeEnvBuilder::new()
        .with_memory_limit(memory_limit, 1.0)
        .build_arc()
        .map_err(read_err)?;
    let mut session = SessionConfig::new().with_target_partitions(1);
    session.options_mut().sql_parser.enable_ident_normalization = false;
    let ctx = SessionContext::new_with_config_rt(session, runtime);
    // The group's folder, seen through a view that lists exactly the inputs (never the
    // folder itself: it may hold files of commits in flight and replaced files).
    let url = url::Url::parse("weir-compact://lake/").expect("static url");
    let view: Arc<dyn ObjectStore> = Arc::new(CommittedView::of_files(store, inputs.to_vec()));
    ctx.register_object_store(
        &url,
        Arc::new(object_store::prefix::PrefixStore::new(
            view,
            group.dir.as_str(),
        )),
    );
    let folder = ListingTableUrl::parse("weir-compact://lake/").map_err(read_err)?;
    let options =
        ListingOptions::new(Arc::new(ParquetFormat::default())).with_file_extension(".parquet");
    let table = ListingTable::try_new(
        ListingTableConfig::new(folder)
            .with_listing_options(options)
            .with_schema(schema.clone()),
    )
    .map_err(read_err)?;
    let sorted = ctx
        .read_table(Arc::new(table))
        .map_err(read_err)?
        .sort(
            group
                .sort
                .iter()
                .map(|c| Expr::Column(Column::new_unqualified(c.as_str())).sort(true, false))
                .collect(),
        )
        .map_err(read_err)?;
    let mut stream = sorted.execute_stream().await.map_err(read_err)?;
    let write_err = |source| CompactError::Write {
        hour: hour.to_owned(),
        source,
    };
    let lineage = |n: usize| {
        vec![
            KeyValue::new("weir.version".into(), env!("CARGO_PKG_VERSION").to_owned()),
            KeyValue::new("weir.compacted_group".into(), group.label.clone()),
            KeyValue::new("weir.ledger.stream".into(), "maintenance".to_owned()),
            KeyValue::new("weir.ledger.seq".into(), seq.to_string()),
            KeyValue::new("weir.ledger.epoch".into(), epoch.to_string()),
            KeyValue::new("weir.compacted_from".into(), inputs.len().to_string()),
            KeyValue::new("weir.compacted_part".into(), n.to_string()),
        ]
    };
    let mut outputs = Vec::new();
    let mut current: Option<(ArrowWriter<ChunkedFile>, u64)> = None;
    while let Some(batch) = stream.next().await {
        let batch = batch.map_err(read_err)?;
        if batch.num_rows() == 0 {
            continue;
        }
        let (writer, rows) = match &mut current {
            Some(w) => w,
            None => {
                let props = props
                    .clone()
                    .set_key_value_metadata(Some(lineage(outputs.len())))
                    .build();
                let w = ArrowWriter::try_new(ChunkedFile::default(), schema.clone(), Some(props))
                    .map_err(write_err)?;
                current.insert((w, 0))
            }
        };
        writer.write(&batch).map_err(write_err)?;
        *rows += batch.num_rows() as u64;
        let size = writer.bytes_written() + writer.in_progress_size();
        if size as u64 >= settings.target_file_size {
            let (w, rows) = current.take().expect("open");
            outputs.push(close(w, rows, &group.dir, hour, seq, epoch, outputs.len())?);
        }
    }
    if let Some((w, rows)) = current.take() {
        outputs.push(close(w, rows, &group.dir, hour, seq, epoch, outputs.len())?);
    }
    Ok(outputs)
}

fn close(
    writer: ArrowWriter<ChunkedFile>,
    rows: u64,
    dir: &str,
    hour: &str,
    seq: u64,
    epoch: u64,
    n: usize,
) -> Result<ClosedFile, CompactError> {
    let file = writer.into_inner().map_err(|source| CompactError::Write {
        hour: hour.to_owned(),
        source,
    })?;
    Ok(ClosedFile {
        path: format!("{dir}/{}", output_name(seq, epoch, n)),
        rows,
        bytes: file.into_payload(),
        offsets: None,
    })
}

/// The name of compaction output `n` of the maintenance entry `seq` written in `epoch`.
pub fn output_name(seq: u64, epoch: u64, n: usize) -> String {
    format!("compact-{seq:010}-e{epoch:06}-{n:04}.parquet")
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, AsArray, RecordBatch, StringArray, TimestampMicrosecondArray};
    use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
    use object_store::ObjectStoreExt;
    use object_store::memory::InMemory;
    use object_store::{PutPayload, path::Path};

    const HOUR: &str = "http_requests/date=2026-11-22/hour=05";

    fn ts() -> DataType {
        DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
    }

    /// A Parquet file of `ids` at `path`, with a `Referer` column when `referer` is given.
    async fn put(
        store: &Arc<dyn ObjectStore>,
        name: &str,
        ids: &[&str],
        referer: Option<&str>,
    ) -> FileRef {
        let mut fields = vec![
            Field::new("RayID", DataType::Utf8, false),
            Field::new("EdgeStartTimestamp", ts(), false),
        ];
        let times: Vec<i64> = (0..ids.len() as i64)
            .map(|i| 1_795_323_600_000_000 + i)
            .collect();
        let mut columns: Vec<arrow::array::ArrayRef> = vec![
            Arc::new(StringArray::from(ids.to_vec())),
            Arc::new(TimestampMicrosecondArray::from(times).with_timezone("UTC")),
        ];
        if let Some(referer) = referer {
            fields.push(Field::new("Referer", DataType::Utf8, true));
            columns.push(Arc::new(StringArray::from(vec![referer; ids.len()])));
        }
        let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap();
        let mut out = Vec::new();
        let mut writer = ArrowWriter::try_new(&mut out, batch.schema(), None).unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
        let path = format!("{HOUR}/{name}.parquet");
        let bytes = out.len() as u64;
        store
            .put(&Path::from(path.as_str()), PutPayload::from(out))
            .await
            .unwrap();
        FileRef {
            path,
            rows: ids.len() as u64,
            bytes,
            newest_written: None,
            offsets: None,
        }
    }

    fn dataset_schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("RayID", DataType::Utf8, false),
            Field::new("EdgeStartTimestamp", ts(), false),
        ]))
    }

    fn group(inputs: Vec<FileRef>) -> Group {
        Group {
            label: format!("http_requests {HOUR}"),
            dir: HOUR.to_owned(),
            inputs,
            schema: dataset_schema(),
            sort: vec!["EdgeStartTimestamp".into()],
            dead_letters: None,
        }
    }

    /// A column the dataset's schema no longer has (say, an operator removed since) keeps
    /// its values through compaction; the files that never had it give nulls.
    #[tokio::test]
    async fn columns_the_dataset_dropped_since_are_kept() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let inputs = vec![
            put(&store, "a", &["a1", "a2"], Some("https://example.com/")).await,
            put(&store, "b", &["b1"], None).await,
        ];
        let settings = crate::config::CompactionConfig::default();
        let outputs = merge(
            store.clone(),
            &group(inputs),
            &settings,
            64 << 20,
            writer_properties(&settings, &dataset_schema()).unwrap(),
            (1, 1),
        )
        .await
        .unwrap();
        assert_eq!(outputs.len(), 1);
        let bytes: Vec<u8> = outputs[0]
            .bytes
            .iter()
            .flat_map(|chunk| chunk.iter().copied())
            .collect();
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReader::try_new(
            bytes::Bytes::from(bytes),
            1024,
        )
        .unwrap();
        let batches: Vec<RecordBatch> = reader.map(|b| b.unwrap()).collect();
        let batch = arrow::compute::concat_batches(&batches[0].schema(), &batches).unwrap();
        assert_eq!(batch.num_rows(), 3);
        let referer = batch
            .column_by_name("Referer")
            .expect("the dropped column is kept");
        assert_eq!(referer.null_count(), 1);
        let values: Vec<Option<&str>> = referer.as_string::<i32>().iter().collect();
        assert_eq!(
            values
                .iter()
                .filter(|v| **v == Some("https://example.com/"))
                .count(),
            2
        );
    }

    /// A column whose type in a file is not the dataset's is refused, naming it, before
    /// anything is written.
    #[tokio::test]
    async fn a_column_of_another_type_is_refused_by_name() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let inputs = vec![
            put(&store, "a", &["a1"], Some("x")).await,
            put(&store, "b", &["b1"], None).await,
        ];
        let mut fields: Vec<Field> = dataset_schema()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        fields.push(Field::new("Referer", DataType::Int64, true));
        let err = widened(&Arc::new(Schema::new(fields)), &store, &inputs)
            .await
            .unwrap_err();
        assert!(err.contains("column Referer is Int64"), "{err}");
        assert!(err.contains("a.parquet"), "{err}");
    }

    #[test]
    fn hours_end_an_hour_after_they_start() {
        assert_eq!(
            hour_end("date=2026-11-22/hour=23").unwrap().to_rfc3339(),
            "2026-11-23T00:00:00+00:00"
        );
        assert_eq!(hour_end("_dead_letter"), None);
        assert_eq!(hour_end("date=2026-11-22/hour=xx"), None);
    }

    /// Dead letters of records read before and after a partition's offsets went back are
    /// merged apart, however close in time: a merged file holding both at the same offsets
    /// would stop every Kafka backfill of them. A file that holds several counts already is
    /// not merged again.
    #[test]
    fn dead_letters_of_other_offset_resets_are_kept_apart() {
        let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().to_utc();
        let span = |resets| crate::ledger::OffsetSpan {
            topic: "t".into(),
            partition: 0,
            first: 0,
            last: 9,
            resets,
        };
        let file = |name: &str, resets: Option<u64>| FileRef {
            path: format!("_weir/dead_letter/ds/{name}.parquet"),
            rows: 1,
            bytes: 100,
            newest_written: None,
            offsets: resets.map(|r| vec![span(r)]),
        };
        let mut mixed = file("mixed", Some(0));
        mixed
            .offsets
            .as_mut()
            .unwrap()
            .push(crate::ledger::OffsetSpan {
                partition: 1,
                ..span(1)
            });
        let files = vec![
            file("before", Some(0)),
            file("legacy", None),
            file("after", Some(1)),
            file("after-too", Some(1)),
            mixed,
        ];
        let modified: HashMap<String, DateTime<Utc>> = files
            .iter()
            .map(|f| (f.path.clone(), at("2026-12-07T05:10:00Z")))
            .collect();
        let groups: Vec<(u64, usize)> = dead_letter_groups(
            files,
            &modified,
            1_000,
            at("2026-12-07T07:00:00Z"),
            chrono::Duration::hours(1),
        )
        .into_iter()
        .map(|((_, resets), group)| (resets, group.files.len()))
        .collect();
        assert_eq!(groups, vec![(0, 2), (1, 2)]);
    }

    /// Dead letters are merged by when their newest row was first written: a merged file's
    /// own time (`newest_written`) places it, not when it was rewritten, so a later run adds
    /// its group's new files to it and never mixes in younger ones.
    #[test]
    fn dead_letters_merge_within_the_window_they_were_written_in() {
        let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().to_utc();
        let file = |name: &str, bytes: u64, newest: Option<&str>| FileRef {
            path: format!("_weir/dead_letter/ds/{name}.parquet"),
            rows: 1,
            bytes,
            newest_written: newest.map(at),
            offsets: None,
        };
        let files = || {
            vec![
                file("p0-a", 100, None),
                file("p1-b", 100, None),
                // Merged at 07:20 from files written at 05:40 at the latest.
                file("compact-1", 300, Some("2026-12-07T05:40:00Z")),
                file("p0-c", 100, None),
                file("p0-big", 10_000, None),
                file("p1-young", 100, None),
                file("p1-unlisted", 100, None),
            ]
        };
        let modified: HashMap<String, DateTime<Utc>> = [
            ("p0-a", "2026-12-07T05:05:00Z"),
            ("p1-b", "2026-12-07T05:59:59Z"),
            ("compact-1", "2026-12-07T07:20:00Z"),
            ("p0-c", "2026-12-07T06:00:00Z"),
            ("p0-big", "2026-12-07T05:10:00Z"),
            ("p1-young", "2026-12-07T07:30:01Z"),
        ]
        .into_iter()
        .map(|(name, t)| (format!("_weir/dead_letter/ds/{name}.parquet"), at(t)))
        .collect();
        let groups = |window: chrono::Duration| {
            dead_letter_groups(
                files(),
                &modified,
                1_000,
                at("2026-12-07T07:30:00Z"),
                window,
            )
            .into_iter()
            .map(|((from, _), group)| {
                let names: Vec<String> = group
                    .files
                    .iter()
                    .map(|f| {
                        f.path
                            .trim_start_matches("_weir/dead_letter/ds/")
                            .trim_end_matches(".parquet")
                            .to_owned()
                    })
                    .collect();
                (from.to_rfc3339(), names, group.newest_written.to_rfc3339())
            })
            .collect::<Vec<_>>()
        };
        let owned = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        // Retention of up to two days: windows of an hour.
        assert_eq!(
            dead_letter_window(Some(Duration::from_secs(3 * 3600))),
            chrono::Duration::hours(1)
        );
        assert_eq!(
            groups(dead_letter_window(Some(Duration::from_secs(86_400)))),
            vec![
                (
                    "2026-12-07T05:00:00+00:00".to_owned(),
                    owned(&["p0-a", "p1-b", "compact-1"]),
                    "2026-12-07T05:59:59+00:00".to_owned()
                ),
                (
                    "2026-12-07T06:00:00+00:00".to_owned(),
                    owned(&["p0-c"]),
                    "2026-12-07T06:00:00+00:00".to_owned()
                ),
            ]
        );
        // Thirty days: windows of thirty hours, counted from the epoch (2026-12-07T00:00 is
        // 499,056 hours after it, 6 past a multiple of 30: the window began at 18:00 before).
        assert_eq!(
            dead_letter_window(Some(Duration::from_secs(30 * 86_400))),
            chrono::Duration::hours(30)
        );
        assert_eq!(
            groups(dead_letter_window(Some(Duration::from_secs(30 * 86_400)))),
            vec![(
                "2026-12-06T18:00:00+00:00".to_owned(),
                owned(&["p0-a", "p1-b", "compact-1", "p0-c"]),
                "2026-12-07T06:00:00+00:00".to_owned()
            )]
        );
        // No retention: windows of a day.
        assert_eq!(dead_letter_window(None), chrono::Duration::hours(24));
        assert_eq!(
            groups(dead_letter_window(None)),
            vec![(
                "2026-12-07T00:00:00+00:00".to_owned(),
                owned(&["p0-a", "p1-b", "compact-1", "p0-c"]),
                "2026-12-07T06:00:00+00:00".to_owned()
            )]
        );
    }
}
