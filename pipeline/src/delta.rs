//! Delta Lake publishing: each dataset folder is also a Delta table whose files are the
//! ledger's, so engines that read Delta (Spark, Trino, DuckDB, Polars, the `deltalake`
//! package) see exactly the committed rows, with snapshot isolation.
//!
//! ```text
//!  ledger streams of a dataset             <storage.url>/<dataset>/_delta_log/
//!    maintenance (replace entries) ─┐                version v+1: the partition streams'
//!    <topic>/<partition> …         ─┼─▶ publish ──▶   adds + their txns; version v+2: the
//!                                   │                 replace entries' adds / removes + the
//!  txn versions of version v ───────┘                 maintenance txn (appId = stream,
//!                                                     version = its newest entry published)
//! ```
//!
//! The ledger stays the commit point; the Delta log is a view of it, written by whoever
//! publishes (every `weir run` on `delta.publish_interval` and at shutdown, `weir compact`
//! and `weir vacuum` when they finish). One publish of a dataset:
//!
//! 1. load the table (create it, partitioned by `date` and `hour`, if it has no log yet) and
//!    read, per ledger stream, the txn version it holds: the stream's entries up to that
//!    sequence number are in the table;
//! 2. read the maintenance stream's entries after its txn version, *then* list the partition
//!    streams and read theirs. A replace entry only removes files committed before it, so
//!    every file it removes is named by an entry read here (a stream created after the
//!    maintenance read included) or already published;
//! 3. fold the partition entries into one commit (they add their files) and the replace
//!    entries into the next (they add theirs and remove what they replaced: `dataChange =
//!    false` for compaction, which keeps the rows; retention and replacing backfills change
//!    data). Two commits, so that rows committed and compacted between two publishes are
//!    first added as new data, which streaming readers take, and only then rewritten. A
//!    file both added and removed within one fold appears in neither list, so no commit
//!    names a path twice;
//! 4. commit each as the next version, create-if-absent, with its streams' new txn
//!    versions, and no retry on conflict: another publisher won that version, and the next
//!    publish starts again from 1, where the txn versions tell what is already published.
//!
//! So every table version is a prefix of each ledger stream, a commit is never published
//! twice however often a publisher crashes (a crash before step 4 publishes nothing; after
//! it, the txn versions say so), and partitions never contend on the log. Checkpoints
//! (every [`CHECKPOINT_INTERVAL`] versions) and the removal of expired log files
//! (`delta.logRetentionDuration`) are done by the Delta library after a commit.
//!
//! A dataset schema that adds columns (a new operator, a wider schema file) is published as
//! a metadata action with the next commit. The dead letters are a second table of the
//! dataset, at `_weir/dead_letter/<dataset>/` (not partitioned), published the same way
//! from the same entries ([`Table`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use arrow::datatypes::SchemaRef;
use chrono::{DateTime, Utc};
use deltalake_core::kernel::engine::arrow_conversion::TryIntoKernel as _;
use deltalake_core::kernel::transaction::{CommitBuilder, CommitProperties, TableReference};
use deltalake_core::kernel::{
    Action, Add, DataType as DeltaType, Remove, StructField, StructType, Transaction,
};
use deltalake_core::protocol::{DeltaOperation, OutputMode, SaveMode};
use deltalake_core::{DeltaTable, DeltaTableBuilder, DeltaTableError};
use object_store::ObjectStore;
use tracing::{debug, info, warn};

use crate::ledger::{self, Entry, FileRef, LedgerError, PartitionLedger};

/// `delta.checkpointInterval` of the tables Weir creates: a checkpoint every this many
/// versions keeps a reader's log replay short.
pub const CHECKPOINT_INTERVAL: u64 = 10;
/// The Hive partition columns, as strings (as `weir query` reads them).
pub const PARTITION_COLUMNS: [&str; 2] = ["date", "hour"];

#[derive(Debug, thiserror::Error)]
pub enum DeltaError {
    #[error("{0}")]
    Ledger(#[from] LedgerError),
    #[error("delta table {dataset}: {source}")]
    Table {
        dataset: String,
        #[source]
        source: DeltaTableError,
    },
    #[error("delta table {dataset}: schema: {reason}")]
    Schema { dataset: String, reason: String },
    #[error("object store: {0}")]
    Store(#[from] object_store::Error),
}

impl DeltaError {
    /// Whether another publisher committed the version this one tried to: nothing is
    /// wrong, the next publish reloads and goes on from there.
    pub fn is_conflict(&self) -> bool {
        match self {
            DeltaError::Table { source, .. } => matches!(
                source,
                DeltaTableError::VersionAlreadyExists(_)
                    | DeltaTableError::Transaction { .. }
                    | DeltaTableError::VersionMismatch(..)
            ),
            _ => false,
        }
    }
}

/// The Delta application id of a ledger stream.
pub fn app_id(dataset: &str, topic: &str, partition: i32) -> String {
    format!("weir/{dataset}/{topic}/{partition}")
}

/// The two Delta tables of a dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    /// `<dataset>/`: the data files, partitioned by `date` and `hour`.
    Data,
    /// `_weir/dead_letter/<dataset>/`: the dead-letter files, not partitioned.
    DeadLetters,
}

impl Table {
    /// The table's folder, relative to the lake root.
    pub fn root(self, dataset: &str) -> String {
        match self {
            Table::Data => dataset.to_owned(),
            Table::DeadLetters => format!("_weir/dead_letter/{dataset}"),
        }
    }

    fn partition_columns(self) -> &'static [&'static str] {
        match self {
            Table::Data => &PARTITION_COLUMNS,
            Table::DeadLetters => &[],
        }
    }

    /// The files an entry puts in this table (before filtering by path).
    fn added(self, entry: &Entry) -> &[FileRef] {
        match self {
            Table::Data => &entry.files,
            Table::DeadLetters => &entry.dead_letters,
        }
    }
}

/// What one publish of a dataset did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Published {
    /// The table version committed, if anything was new.
    pub version: Option<u64>,
    /// Ledger entries folded into it.
    pub entries: usize,
    pub added: usize,
    pub removed: usize,
    /// Per stream (app id), the newest entry the table now holds.
    pub streams: BTreeMap<String, u64>,
    /// When the oldest entry this publish found unpublished was committed (for the lag).
    pub oldest_new: Option<DateTime<Utc>>,
}

/// The Delta schema of one of a dataset's tables: its file schema plus the partition
/// columns.
pub fn table_schema(
    dataset: &str,
    table: Table,
    file_schema: &SchemaRef,
) -> Result<StructType, DeltaError> {
    let schema: StructType =
        file_schema
            .as_ref()
            .try_into_kernel()
            .map_err(|e| DeltaError::Schema {
                dataset: dataset.to_owned(),
                reason: e.to_string(),
            })?;
    let mut fields: Vec<StructField> = schema.fields().cloned().collect();
    for &column in table.partition_columns() {
        if fields.iter().any(|f| f.name() == column) {
            return Err(DeltaError::Schema {
                dataset: dataset.to_owned(),
                reason: format!("column {column} is also a partition column"),
            });
        }
        fields.push(StructField::new(column, DeltaType::STRING, true));
    }
    StructType::try_new(fields).map_err(|e| DeltaError::Schema {
        dataset: dataset.to_owned(),
        reason: e.to_string(),
    })
}

/// The table at `root` (relative to the lake) on the lake's store, not loaded yet.
fn table_handle(store: &Arc<dyn ObjectStore>, root: &str) -> Result<DeltaTable, DeltaError> {
    let table_err = |source| DeltaError::Table {
        dataset: root.to_owned(),
        source,
    };
    // The store is rooted at the lake; the table is a folder below it. The `memory`
    // scheme only selects Delta's plain log store (commits as create-if-absent puts on the
    // given store); nothing is kept in memory.
    let url = url::Url::parse(&format!("memory:///{root}"))
        .map_err(|e| table_err(DeltaTableError::InvalidTableLocation(e.to_string())))?;
    DeltaTableBuilder::from_url(url.clone())
        .map_err(table_err)?
        .with_storage_backend(store.clone(), url)
        .build()
        .map_err(table_err)
}

/// Loads `table` of `dataset`, creating it (empty, version 0) when it has no log yet.
async fn open_table(
    store: &Arc<dyn ObjectStore>,
    dataset: &str,
    kind: Table,
    file_schema: &SchemaRef,
) -> Result<DeltaTable, DeltaError> {
    let table_err = |source| DeltaError::Table {
        dataset: dataset.to_owned(),
        source,
    };
    let root = kind.root(dataset);
    let mut table = table_handle(store, &root)?;
    match table.load().await {
        Ok(()) => return Ok(table),
        Err(DeltaTableError::NotATable(_)) => {}
        Err(e) => return Err(table_err(e)),
    }
    let schema = table_schema(dataset, kind, file_schema)?;
    info!(dataset, table = %root, "creating the delta table");
    let created = deltalake_core::operations::create::CreateBuilder::new()
        .with_log_store(table.log_store())
        .with_table_name(dataset)
        .with_columns(schema.fields().cloned())
        .with_partition_columns(kind.partition_columns().iter().copied())
        .with_configuration_property(
            deltalake_core::TableProperty::CheckpointInterval,
            Some(CHECKPOINT_INTERVAL.to_string()),
        )
        .with_save_mode(SaveMode::Ignore)
        .await;
    match created {
        Ok(t) => Ok(t),
        // Another publisher may have created it first: then it loads. If it does not, the
        // create's own error is the one that says why.
        Err(create_error) => {
            let mut table = table_handle(store, &root)?;
            match table.load().await {
                Ok(()) => Ok(table),
                Err(load_error) => {
                    warn!(dataset, table = %root, error = %load_error, "the delta table could not be loaded after its creation failed");
                    Err(table_err(create_error))
                }
            }
        }
    }
}

/// Files of one fold, by path: what the commit adds and removes.
#[derive(Default)]
struct Fold {
    add: BTreeMap<String, (FileRef, bool)>,
    remove: BTreeMap<String, (FileRef, bool)>,
}

impl Fold {
    /// Folds `entry` in: its files of `table`; other paths are left out.
    fn entry(&mut self, dataset: &str, table: Table, entry: &Entry) {
        // Compaction keeps the rows it rewrites; retention (nothing added) and replacing
        // backfills (tagged with their id; they can keep the row count and change values)
        // change what the table holds.
        let data_files: Vec<&FileRef> = table
            .added(entry)
            .iter()
            .filter(|f| relative(table, dataset, &f.path).is_some())
            .collect();
        let removed: Vec<&FileRef> = entry
            .removed
            .iter()
            .filter(|f| relative(table, dataset, &f.path).is_some())
            .collect();
        let rewrite = entry.backfill.is_none()
            && !removed.is_empty()
            && !data_files.is_empty()
            && removed.iter().map(|f| f.rows).sum::<u64>()
                == data_files.iter().map(|f| f.rows).sum::<u64>();
        let data_change = !rewrite;
        for f in removed {
            if self.add.remove(&f.path).is_none() {
                self.remove.insert(f.path.clone(), (f.clone(), data_change));
            }
        }
        for f in data_files {
            self.add.insert(f.path.clone(), (f.clone(), data_change));
        }
    }

    fn actions(&self, dataset: &str, table: Table, now_ms: i64) -> Vec<Action> {
        let mut out = Vec::with_capacity(self.add.len() + self.remove.len());
        for (path, (f, data_change)) in &self.remove {
            let Some((rel, partition_values)) = relative(table, dataset, path) else {
                continue;
            };
            out.push(Action::Remove(Remove {
                path: rel,
                data_change: *data_change,
                deletion_timestamp: Some(now_ms),
                extended_file_metadata: Some(true),
                partition_values: Some(partition_values),
                size: Some(f.bytes as i64),
                tags: None,
                deletion_vector: None,
                base_row_id: None,
                default_row_commit_version: None,
            }));
        }
        for (path, (f, data_change)) in &self.add {
            let Some((rel, partition_values)) = relative(table, dataset, path) else {
                continue;
            };
            out.push(Action::Add(Add {
                path: rel,
                partition_values,
                size: f.bytes as i64,
                modification_time: now_ms,
                data_change: *data_change,
                stats: Some(format!("{{\"numRecords\":{}}}", f.rows)),
                tags: None,
                deletion_vector: None,
                base_row_id: None,
                default_row_commit_version: None,
                clustering_provider: None,
            }));
        }
        out
    }
}

/// A file's path relative to `table`, with its partition values: for data, from the Hive
/// folders Weir writes (`<dataset>/date=…/hour=…/<file>`); for dead letters, a file
/// directly in their folder. `None` for any other path.
fn relative(
    table: Table,
    dataset: &str,
    path: &str,
) -> Option<(String, HashMap<String, Option<String>>)> {
    let root = table.root(dataset);
    let rel = path.strip_prefix(root.as_str())?.strip_prefix('/')?;
    let mut parts = rel.split('/');
    let mut values = HashMap::new();
    for &column in table.partition_columns() {
        let (key, value) = parts.next()?.split_once('=')?;
        if key != column {
            return None;
        }
        values.insert(column.to_owned(), Some(value.to_owned()));
    }
    parts.next()?;
    if parts.next().is_some() {
        return None;
    }
    Some((rel.to_owned(), values))
}

/// The table's metadata with the dataset's current schema, when that schema adds columns to
/// the table's (a new operator, a wider dataset schema). A schema that drops or changes a
/// column of the table's is left out with a warning: files written before keep those
/// columns, and a table whose readers would lose them is not what anyone asked for.
fn schema_change(
    dataset: &str,
    table: Table,
    snapshot: &deltalake_core::table::state::DeltaTableState,
    file_schema: &SchemaRef,
) -> Result<Option<deltalake_core::kernel::Metadata>, DeltaError> {
    use deltalake_core::kernel::MetadataExt as _;
    let wanted = table_schema(dataset, table, file_schema)?;
    let current = snapshot.schema();
    if *current == wanted {
        return Ok(None);
    }
    let keeps_every_column = current.fields().all(|f| {
        wanted
            .field(f.name())
            .is_some_and(|w| w.data_type() == f.data_type())
    });
    if !keeps_every_column {
        warn!(
            dataset,
            "the dataset's schema drops or changes a column of its delta table; the table keeps its schema"
        );
        return Ok(None);
    }
    let metadata = snapshot
        .metadata()
        .clone()
        .with_schema(&wanted)
        .map_err(|e| DeltaError::Schema {
            dataset: dataset.to_owned(),
            reason: e.to_string(),
        })?;
    info!(dataset, "delta table schema widened to the dataset's");
    Ok(Some(metadata))
}

/// Publishes every ledger entry of `dataset` not yet in its `kind` Delta table (see the
/// module doc). `file_schema` is the schema of that table's files.
pub async fn publish(
    store: &Arc<dyn ObjectStore>,
    dataset: &str,
    kind: Table,
    file_schema: &SchemaRef,
) -> Result<Published, DeltaError> {
    let table_err = |source| DeltaError::Table {
        dataset: dataset.to_owned(),
        source,
    };
    let table = open_table(store, dataset, kind, file_schema).await?;
    let snapshot = table.snapshot().map_err(table_err)?;
    let log_store = table.log_store();
    let published_of = |app: String| {
        let log_store = log_store.clone();
        async move {
            snapshot
                .transaction_version(log_store.as_ref(), app)
                .await
                .map(|v| v.map_or(0, |v| u64::try_from(v).unwrap_or(0)))
                .map_err(table_err)
        }
    };
    // The maintenance stream's entries first, and only then the list of partition streams
    // and their entries: a replace entry removes files committed before it, so every file
    // it removes is named by an entry read below (or already published), even one of a
    // stream created after the maintenance read.
    let maintenance = PartitionLedger::maintenance(store.clone(), dataset);
    let (topic, partition) = maintenance.topic_partition();
    let app = app_id(dataset, &topic, partition);
    let entries = maintenance
        .entries_after(published_of(app.clone()).await?)
        .await?;
    let maintenance = (maintenance, app, entries);
    let mut partitions: Vec<(PartitionLedger, String, Vec<Entry>)> = Vec::new();
    // A `--replace` backfill's staged files enter the table through the maintenance entry
    // that publishes it, never through their own stream.
    for stream in ledger::streams(store, dataset)
        .await?
        .into_iter()
        .filter(|l| !ledger::is_staged(l.topic()))
    {
        let (topic, partition) = stream.topic_partition();
        let app = app_id(dataset, &topic, partition);
        let entries = stream
            .entries_after(published_of(app.clone()).await?)
            .await?;
        partitions.push((stream, app, entries));
    }

    // Two versions when both have news: the partition streams' entries, then the
    // maintenance stream's. A file committed and compacted since the last publish is then
    // added in the first (`dataChange = true`: its rows are new to the table) and rewritten
    // in the second (`dataChange = false`), so a streaming reader that skips rewrites still
    // receives its rows.
    let mut out = Published::default();
    let mut metadata = schema_change(dataset, kind, snapshot, file_schema)?;
    // The version each commit builds on: the loaded one, then the one just committed.
    let mut committed_base = None;
    for group in [&partitions[..], std::slice::from_ref(&maintenance)] {
        let mut fold = Fold::default();
        let mut txns = Vec::new();
        for (stream, app, entries) in group {
            let (Some(first), Some(last)) = (entries.first(), entries.last()) else {
                continue;
            };
            let written = stream.entry_written(first.seq).await?;
            out.oldest_new = match (out.oldest_new, written) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            for entry in entries {
                fold.entry(dataset, kind, entry);
            }
            out.entries += entries.len();
            out.streams.insert(app.clone(), last.seq);
            txns.push(Transaction::new(app.clone(), last.seq as i64));
        }
        if txns.is_empty() && metadata.is_none() {
            continue;
        }
        let now_ms = Utc::now().timestamp_millis();
        let mut actions: Vec<Action> = metadata.take().into_iter().map(Action::Metadata).collect();
        actions.extend(fold.actions(dataset, kind, now_ms));
        out.added += fold.add.len();
        out.removed += fold.remove.len();
        crate::failpoint::hit("before-delta-commit");
        let committed = CommitBuilder::from(
            CommitProperties::default()
                .with_application_transactions(txns)
                .with_max_retries(0),
        )
        .with_actions(actions)
        .build(
            Some(committed_base.as_ref().unwrap_or(snapshot) as &dyn TableReference),
            log_store.clone(),
            DeltaOperation::StreamingUpdate {
                output_mode: OutputMode::Append,
                query_id: "weir".to_owned(),
                epoch_id: 0,
            },
        )
        .await
        .map_err(table_err)?;
        crate::failpoint::hit("after-delta-commit");
        out.version = Some(committed.version() as u64);
        committed_base = Some(committed.snapshot());
    }
    if let Some(version) = out.version {
        debug!(
            dataset,
            version,
            entries = out.entries,
            added = out.added,
            removed = out.removed,
            "published ledger entries to the delta table"
        );
    }
    Ok(out)
}

/// What [`publish_all`] did to each of a dataset's tables.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DatasetPublished {
    pub data: Published,
    pub dead_letters: Published,
}

impl DatasetPublished {
    /// When the oldest entry either table found unpublished was committed.
    pub fn oldest_new(&self) -> Option<DateTime<Utc>> {
        match (self.data.oldest_new, self.dead_letters.oldest_new) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// Publishes both tables of `dataset`: the data (`file_schema`) and the dead letters.
pub async fn publish_all(
    store: &Arc<dyn ObjectStore>,
    dataset: &str,
    file_schema: &SchemaRef,
) -> Result<DatasetPublished, DeltaError> {
    Ok(DatasetPublished {
        data: publish_retrying(store, dataset, Table::Data, file_schema).await?,
        dead_letters: publish_retrying(
            store,
            dataset,
            Table::DeadLetters,
            &crate::sink::dead_letter::schema(),
        )
        .await?,
    })
}

/// Publishes one table, again while another publisher wins the version (bounded), until a
/// publish lands, finds nothing new or fails otherwise.
async fn publish_retrying(
    store: &Arc<dyn ObjectStore>,
    dataset: &str,
    kind: Table,
    file_schema: &SchemaRef,
) -> Result<Published, DeltaError> {
    let mut conflicts = 0u32;
    loop {
        match publish(store, dataset, kind, file_schema).await {
            Ok(p) => return Ok(p),
            Err(e) if e.is_conflict() && conflicts < 8 => {
                conflicts += 1;
                debug!(dataset, error = %e, "another publisher committed first; publishing again");
                tokio::time::sleep(Duration::from_millis(50 << conflicts.min(5))).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// The running publisher of `weir run`: every `interval`, publishes each dataset and sets
/// `weir_delta_lag_seconds`. A failed publish is logged and tried again next time.
pub async fn run_publisher(
    shared: Arc<crate::runtime::Shared>,
    datasets: Vec<(String, SchemaRef)>,
    interval: Duration,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    loop {
        ticker.tick().await;
        publish_round(&shared.store, &datasets, &shared.metrics).await;
    }
}

/// One publish of every dataset, with its lag metric.
pub async fn publish_round(
    store: &Arc<dyn ObjectStore>,
    datasets: &[(String, SchemaRef)],
    metrics: &crate::metrics::Metrics,
) {
    for (dataset, schema) in datasets {
        match publish_all(store, dataset, schema).await {
            Ok(published) => {
                let lag = published.oldest_new().map_or(0.0, |t| {
                    (Utc::now() - t).num_milliseconds().max(0) as f64 / 1e3
                });
                metrics.set_delta_lag(dataset, lag);
                for (table, p) in [
                    (Table::Data, &published.data),
                    (Table::DeadLetters, &published.dead_letters),
                ] {
                    if let Some(version) = p.version {
                        info!(
                            dataset = %dataset,
                            table = %table.root(dataset),
                            version,
                            entries = p.entries,
                            added = p.added,
                            removed = p.removed,
                            "delta table published"
                        );
                    }
                }
            }
            Err(e) => {
                warn!(dataset = %dataset, error = %e, "delta publish failed; retried at the next interval");
            }
        }
    }
}

/// The newest entry of stream `app` that the `kind` Delta table of `dataset` holds (0:
/// none, or no table yet).
pub async fn published_version(
    store: &Arc<dyn ObjectStore>,
    dataset: &str,
    kind: Table,
    app: &str,
) -> Result<u64, DeltaError> {
    let table_err = |source| DeltaError::Table {
        dataset: dataset.to_owned(),
        source,
    };
    let mut table = table_handle(store, &kind.root(dataset))?;
    match table.load().await {
        Ok(()) => {}
        Err(DeltaTableError::NotATable(_)) => return Ok(0),
        Err(e) => return Err(table_err(e)),
    }
    published_in(&table, app).await.map_err(table_err)
}

/// The txn version of `app` in the loaded `table` (0: none).
async fn published_in(table: &DeltaTable, app: &str) -> Result<u64, DeltaTableError> {
    let version = table
        .snapshot()?
        .transaction_version(table.log_store().as_ref(), app)
        .await?;
    Ok(version.map_or(0, |v| u64::try_from(v).unwrap_or(0)))
}

/// The txn version of `app` in `dataset`'s `kind` table as it was at `at`: the stream's
/// entries up to it were in the table by then. 0 when the table did not exist yet, or when
/// its log no longer reaches back to `at` (older commit files removed by log retention):
/// nothing is then taken as published before `at`, and a warning says why.
pub async fn published_version_at(
    store: &Arc<dyn ObjectStore>,
    dataset: &str,
    kind: Table,
    app: &str,
    at: DateTime<Utc>,
) -> Result<u64, DeltaError> {
    let table_err = |source| DeltaError::Table {
        dataset: dataset.to_owned(),
        source,
    };
    let root = kind.root(dataset);
    let mut table = table_handle(store, &root)?;
    match table.load_with_datetime(at).await {
        Ok(()) => {}
        Err(DeltaTableError::NotATable(_)) => return Ok(0),
        Err(e) => return Err(table_err(e)),
    }
    let Some(version) = table.version() else {
        return Ok(0);
    };
    // `load_with_datetime` falls back to the oldest version it finds, which may be newer.
    let commit = object_store::path::Path::from(format!("{root}/_delta_log/{version:020}.json"));
    let written = object_store::ObjectStoreExt::head(store.as_ref(), &commit)
        .await?
        .last_modified;
    if written > at {
        if version > 0 {
            warn!(
                dataset,
                oldest_version = version,
                at = %at,
                "the delta log no longer reaches back to the vacuum grace; files taken out of the table are kept until it does (shorten the grace below delta.logRetentionDuration)"
            );
        }
        return Ok(0);
    }
    published_in(&table, app).await.map_err(table_err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
    use object_store::memory::InMemory;
    use object_store::{ObjectStoreExt, path::Path};

    const DS: &str = "http_requests";

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("RayID", DataType::Utf8, false),
            Field::new(
                "EdgeStartTimestamp",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                false,
            ),
        ]))
    }

    fn file(hour: u32, name: &str, rows: u64) -> FileRef {
        FileRef {
            path: format!("{DS}/date=2026-12-05/hour={hour:02}/{name}.parquet"),
            rows,
            bytes: 100 * rows,
            newest_written: None,
            offsets: None,
        }
    }

    fn entry(topic: &str, partition: i32, seq: u64, files: Vec<FileRef>) -> Entry {
        Entry {
            version: ledger::LEDGER_VERSION,
            seq,
            epoch: 1,
            writer: "test".into(),
            dataset: DS.into(),
            topic: topic.into(),
            partition,
            start_offset: -1,
            next_offset: -1,
            records: 0,
            rows: files.iter().map(|f| f.rows).sum(),
            dead_lettered: 0,
            skipped_offsets: 0,
            holes: 0,
            offset_resets: 0,
            files,
            dead_letters: Vec::new(),
            removed: Vec::new(),
            operator_state: Vec::new(),
            config_hash: "h".into(),
            weir_version: "test".into(),
            takeover: false,
            units: Vec::new(),
            backfill: None,
            abandoned: false,
            event_time: None,
        }
    }

    async fn active_files(store: &Arc<dyn ObjectStore>) -> Vec<String> {
        active_files_of(store, DS).await
    }

    async fn active_files_of(store: &Arc<dyn ObjectStore>, root: &str) -> Vec<String> {
        let mut table = table_handle(store, root).unwrap();
        table.load().await.unwrap();
        let mut files: Vec<String> = table
            .get_file_uris()
            .unwrap()
            .map(|uri| uri.rsplit('/').next().unwrap().to_owned())
            .collect();
        files.sort();
        files
    }

    #[test]
    fn only_hive_data_paths_of_the_dataset_are_table_files() {
        let (rel, values) = relative(Table::Data, DS, &file(5, "a", 1).path).unwrap();
        assert_eq!(rel, "date=2026-12-05/hour=05/a.parquet");
        assert_eq!(values["date"].as_deref(), Some("2026-12-05"));
        assert_eq!(values["hour"].as_deref(), Some("05"));
        for other in [
            "_weir/dead_letter/http_requests/x.parquet",
            "http_requests/x.parquet",
            "http_requests/hour=05/date=2026-12-05/x.parquet",
            "http_requests/date=2026-12-05/hour=05/extra/x.parquet",
            "http_requests_2/date=2026-12-05/hour=05/x.parquet",
        ] {
            assert!(relative(Table::Data, DS, other).is_none(), "{other}");
        }
    }

    #[tokio::test]
    async fn publishes_each_entry_once_and_replaces_as_remove_and_add() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let p0 = PartitionLedger::new(store.clone(), DS, "cf.http", 0);
        let p1 = PartitionLedger::new(store.clone(), DS, "cf.http", 1);
        let jobs = PartitionLedger::maintenance(store.clone(), DS);
        p0.commit(&entry(
            "cf.http",
            0,
            1,
            vec![file(0, "p0-1a", 2), file(1, "p0-1b", 3)],
        ))
        .await
        .unwrap();
        p0.commit(&entry("cf.http", 0, 2, vec![file(0, "p0-2", 4)]))
            .await
            .unwrap();
        p1.commit(&entry("cf.http", 1, 1, vec![file(0, "p1-1", 5)]))
            .await
            .unwrap();

        let first = publish(&store, DS, Table::Data, &schema()).await.unwrap();
        assert_eq!(first.version, Some(1), "version 0 creates the table");
        assert_eq!((first.entries, first.added, first.removed), (3, 4, 0));
        assert!(first.oldest_new.is_some());
        assert_eq!(
            active_files(&store).await,
            [
                "p0-1a.parquet",
                "p0-1b.parquet",
                "p0-2.parquet",
                "p1-1.parquet"
            ]
        );
        // Nothing new: no version.
        let again = publish(&store, DS, Table::Data, &schema()).await.unwrap();
        assert_eq!(again.version, None);
        // A schema that drops a column leaves the table's alone.
        let narrower = Arc::new(Schema::new(vec![schema().field(0).clone()]));
        assert_eq!(
            publish(&store, DS, Table::Data, &narrower)
                .await
                .unwrap()
                .version,
            None
        );

        // Compaction of hour 00 (rows kept), then a late file into hour 01 and retention
        // of hour 01 (its files removed, the late one included), all in one publish.
        let mut compact = entry(
            ledger::MAINTENANCE_TOPIC,
            ledger::MAINTENANCE_PARTITION,
            1,
            vec![file(0, "compact-1", 11)],
        );
        compact.removed = vec![file(0, "p0-1a", 2), file(0, "p0-2", 4), file(0, "p1-1", 5)];
        jobs.commit(&compact).await.unwrap();
        p1.commit(&entry("cf.http", 1, 2, vec![file(1, "p1-2", 1)]))
            .await
            .unwrap();
        let mut retention = entry(
            ledger::MAINTENANCE_TOPIC,
            ledger::MAINTENANCE_PARTITION,
            2,
            Vec::new(),
        );
        retention.removed = vec![file(1, "p0-1b", 3), file(1, "p1-2", 1)];
        jobs.commit(&retention).await.unwrap();

        // A new column (say, from a new enrich operator) comes with the next commit.
        let mut fields: Vec<Field> = schema()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        fields.push(Field::new("ClientCity", DataType::Utf8, true));
        let wider = Arc::new(Schema::new(fields));
        let second = publish(&store, DS, Table::Data, &wider).await.unwrap();
        // Two versions: the partition streams' news (p1-2, and the metadata), then the
        // maintenance stream's, which removes p1-2 again.
        assert_eq!(second.version, Some(3));
        assert_eq!((second.entries, second.added, second.removed), (3, 2, 5));
        assert_eq!(active_files(&store).await, ["compact-1.parquet"]);
        let partitions = delta_log(&store, DS, 2).await;
        assert_eq!(
            data_change(&partitions, "add", "p1-2"),
            Some(true),
            "a partition's file is new data"
        );
        let actions = delta_log(&store, DS, 3).await;
        let change = |kind: &str, name: &str| -> bool {
            data_change(&actions, kind, name).unwrap_or_else(|| panic!("no {kind} of {name}"))
        };
        let schema_string = partitions
            .iter()
            .find_map(|a| {
                a.get("metaData")?["schemaString"]
                    .as_str()
                    .map(str::to_owned)
            })
            .expect("a metadata action");
        assert!(schema_string.contains("ClientCity"), "{schema_string}");
        assert!(!change("add", "compact-1"), "compaction keeps the rows");
        assert!(!change("remove", "p0-1a"));
        assert!(change("remove", "p0-1b"), "retention changes data");
        assert!(
            change("remove", "p1-2"),
            "retention of a late file changes data"
        );
        assert_eq!(
            txns(&partitions),
            BTreeMap::from([(app_id(DS, "cf.http", 1), 2)])
        );
        assert_eq!(
            txns(&actions),
            BTreeMap::from([(app_id(DS, "_maintenance", -1), 2)])
        );
        assert_eq!(
            published_version(&store, DS, Table::Data, &app_id(DS, "cf.http", 0))
                .await
                .unwrap(),
            2
        );
    }

    /// The actions of the Delta log's `version`.
    async fn delta_log(
        store: &Arc<dyn ObjectStore>,
        root: &str,
        version: u64,
    ) -> Vec<serde_json::Value> {
        let log = store
            .get(&Path::from(format!("{root}/_delta_log/{version:020}.json")))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        log.split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).unwrap())
            .collect()
    }

    /// `dataChange` of the first `kind` action ("add" or "remove") whose path holds `name`.
    fn data_change(actions: &[serde_json::Value], kind: &str, name: &str) -> Option<bool> {
        actions.iter().find_map(|a| {
            let a = a.get(kind)?;
            a["path"]
                .as_str()?
                .contains(name)
                .then(|| a["dataChange"].as_bool().unwrap())
        })
    }

    fn txns(actions: &[serde_json::Value]) -> BTreeMap<String, i64> {
        actions
            .iter()
            .filter_map(|a| {
                let t = a.get("txn")?;
                Some((t["appId"].as_str()?.to_owned(), t["version"].as_i64()?))
            })
            .collect()
    }

    /// A late file committed and compacted between two publishes: its rows reach the table
    /// first as an add with `dataChange = true` (what a streaming reader takes), and only
    /// then are rewritten (`dataChange = false`, which it skips). Folded into one version,
    /// the add would have cancelled out and the rows would only exist in a rewrite.
    #[tokio::test]
    async fn rows_compacted_before_their_first_publish_still_arrive_as_new_data() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let p0 = PartitionLedger::new(store.clone(), DS, "cf.http", 0);
        p0.commit(&entry("cf.http", 0, 1, vec![file(3, "early", 4)]))
            .await
            .unwrap();
        assert_eq!(
            publish(&store, DS, Table::Data, &schema())
                .await
                .unwrap()
                .version,
            Some(1)
        );
        p0.commit(&entry("cf.http", 0, 2, vec![file(3, "late", 2)]))
            .await
            .unwrap();
        let mut compact = entry(
            ledger::MAINTENANCE_TOPIC,
            ledger::MAINTENANCE_PARTITION,
            1,
            vec![file(3, "compact-1", 6)],
        );
        compact.removed = vec![file(3, "early", 4), file(3, "late", 2)];
        PartitionLedger::maintenance(store.clone(), DS)
            .commit(&compact)
            .await
            .unwrap();
        let published = publish(&store, DS, Table::Data, &schema()).await.unwrap();
        assert_eq!(published.version, Some(3));
        assert_eq!(active_files(&store).await, ["compact-1.parquet"]);
        let news = delta_log(&store, DS, 2).await;
        assert_eq!(data_change(&news, "add", "late"), Some(true));
        assert_eq!(data_change(&news, "remove", "late"), None);
        let rewrite = delta_log(&store, DS, 3).await;
        assert_eq!(data_change(&rewrite, "remove", "late"), Some(false));
        assert_eq!(data_change(&rewrite, "remove", "early"), Some(false));
        assert_eq!(data_change(&rewrite, "add", "compact-1"), Some(false));
        // Nothing left to publish, and each stream's txn says so.
        assert_eq!(
            publish(&store, DS, Table::Data, &schema())
                .await
                .unwrap()
                .version,
            None
        );
    }

    /// A `file://` lake: the log's commit files are listed in version order whatever
    /// order the directory keeps them in (see `store::SortedLocal`), so every publish loads
    /// the table it appends to.
    #[tokio::test]
    async fn a_local_lake_publishes_version_after_version() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::open(dir.path().to_str().unwrap(), &Default::default()).unwrap();
        let ledger = PartitionLedger::new(store.clone(), DS, "cf.http", 0);
        let mut names = Vec::new();
        for seq in 1..=12u64 {
            let name = format!("f{seq:02}");
            ledger
                .commit(&entry("cf.http", 0, seq, vec![file(1, &name, 1)]))
                .await
                .unwrap();
            names.push(name + ".parquet");
            let published = publish(&store, DS, Table::Data, &schema()).await.unwrap();
            assert_eq!(published.version, Some(seq), "publish of entry {seq}");
        }
        assert_eq!(active_files(&store).await, names);
    }

    /// Vacuum measures its grace against the Delta table as it was then: a replace entry
    /// committed long ago but published only now counts as published now.
    #[tokio::test]
    async fn the_published_version_is_read_as_of_a_time() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let app = app_id(DS, ledger::MAINTENANCE_TOPIC, ledger::MAINTENANCE_PARTITION);
        let at = |t| published_version_at(&store, DS, Table::Data, &app, t);
        let before = Utc::now() - chrono::Duration::minutes(1);
        assert_eq!(at(before).await.unwrap(), 0, "no table yet");
        PartitionLedger::new(store.clone(), DS, "cf.http", 0)
            .commit(&entry("cf.http", 0, 1, vec![file(0, "a", 2)]))
            .await
            .unwrap();
        publish(&store, DS, Table::Data, &schema()).await.unwrap();
        let mut compact = entry(
            ledger::MAINTENANCE_TOPIC,
            ledger::MAINTENANCE_PARTITION,
            1,
            vec![file(0, "compact-1", 2)],
        );
        compact.removed = vec![file(0, "a", 2)];
        PartitionLedger::maintenance(store.clone(), DS)
            .commit(&compact)
            .await
            .unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
        let mid = Utc::now();
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
        // Committed before `mid`, published after it.
        assert_eq!(
            publish(&store, DS, Table::Data, &schema())
                .await
                .unwrap()
                .version,
            Some(2)
        );
        assert_eq!(at(mid).await.unwrap(), 0, "not in the table at mid");
        assert_eq!(
            at(Utc::now() + chrono::Duration::seconds(1)).await.unwrap(),
            1
        );
        assert_eq!(at(before).await.unwrap(), 0, "older than the table");
    }

    #[tokio::test]
    async fn dead_letters_are_a_table_of_their_own() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let dead = |name: &str| FileRef {
            path: format!("_weir/dead_letter/{DS}/{name}.parquet"),
            rows: 3,
            bytes: 300,
            newest_written: None,
            offsets: None,
        };
        let mut first = entry("cf.http", 0, 1, vec![file(0, "a", 1)]);
        first.dead_letters = vec![dead("d1")];
        let mut second = entry("cf.http", 0, 2, vec![file(0, "b", 1)]);
        second.dead_letters = vec![dead("d2")];
        let p0 = PartitionLedger::new(store.clone(), DS, "cf.http", 0);
        p0.commit(&first).await.unwrap();
        p0.commit(&second).await.unwrap();
        let published = publish_all(&store, DS, &schema()).await.unwrap();
        assert_eq!(published.data.version, Some(1));
        assert_eq!(published.dead_letters.version, Some(1));
        assert_eq!(active_files(&store).await, ["a.parquet", "b.parquet"]);
        let root = Table::DeadLetters.root(DS);
        assert_eq!(
            active_files_of(&store, &root).await,
            ["d1.parquet", "d2.parquet"]
        );
        // Compaction of the dead letters replaces them in their table only.
        let mut compact = entry(
            ledger::MAINTENANCE_TOPIC,
            ledger::MAINTENANCE_PARTITION,
            1,
            Vec::new(),
        );
        compact.dead_letters = vec![FileRef {
            rows: 6,
            ..dead("compact-1")
        }];
        compact.removed = vec![dead("d1"), dead("d2")];
        PartitionLedger::maintenance(store.clone(), DS)
            .commit(&compact)
            .await
            .unwrap();
        let published = publish_all(&store, DS, &schema()).await.unwrap();
        assert_eq!(published.data.version, Some(2), "its txn moves on");
        assert_eq!(published.data.added + published.data.removed, 0);
        assert_eq!(published.dead_letters.version, Some(2));
        assert_eq!(active_files(&store).await, ["a.parquet", "b.parquet"]);
        assert_eq!(active_files_of(&store, &root).await, ["compact-1.parquet"]);
        assert!(relative(Table::DeadLetters, DS, &dead("x").path).is_some());
        assert!(relative(Table::DeadLetters, DS, &file(0, "a", 1).path).is_none());
    }

    #[tokio::test]
    async fn a_publisher_that_lost_the_version_publishes_nothing_twice() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let p0 = PartitionLedger::new(store.clone(), DS, "cf.http", 0);
        p0.commit(&entry("cf.http", 0, 1, vec![file(0, "a", 1)]))
            .await
            .unwrap();
        // Two publishers at once: one commit lands, the other finds it already there.
        let schema = schema();
        let (a, b) = tokio::join!(
            publish_all(&store, DS, &schema),
            publish_all(&store, DS, &schema)
        );
        let versions: Vec<Option<u64>> = vec![a.unwrap().data.version, b.unwrap().data.version];
        assert!(versions.contains(&Some(1)), "{versions:?}");
        assert!(!versions.contains(&Some(2)), "{versions:?}");
        assert_eq!(active_files(&store).await, ["a.parquet"]);
    }
}
