//! `weir query`: DataFusion SQL over committed files only.
//!
//! Each dataset is a table named after it, with Hive partition columns `date` and `hour`
//! (strings, `'2026-11-22'` and `'05'`) that prune files before any is opened. The table
//! `dead_letter` holds every dataset's dead letters. Files are listed through
//! [`CommittedView`], which hides every file no ledger entry names. The table `commits` is
//! the ledger itself, one row per entry ([`commits_schema`]), read only by queries that use
//! it.
//!
//! A dataset's table schema is what its newest committed files say in their Parquet
//! footers ([`CommittedView::newest_files`]), merged, read when a query first names the
//! table: what was written, not what the config would write today. So `weir query` builds no operator chain and needs none of the
//! operators' secrets or reference data. A table without files yet takes the schema its
//! [`Table`] declares. Older files that lack a column read it as null.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use arrow::array::{
    ArrayRef, Int32Builder, Int64Builder, RecordBatch, StringBuilder, TimestampMillisecondBuilder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::catalog::{MemorySchemaProvider, SchemaProvider, Session, TableProvider};
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::datasource::{MemTable, TableType};
use datafusion::error::DataFusionError;
use datafusion::logical_expr::{Expr, Operator, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::{SessionConfig, SessionContext};
use object_store::ObjectStore;

use crate::config::Config;
use crate::ledger;
use crate::runtime::DatasetRuntime;
mod view;

pub use view::CommittedView;

/// Output formats of `weir query`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Csv,
    Json,
}

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("{0}")]
    DataFusion(#[from] datafusion::error::DataFusionError),
    #[error("reading the ledger: {0}")]
    Ledger(#[from] ledger::LedgerError),
    #[error("listing the ledger: {0}")]
    Store(#[from] object_store::Error),
    #[error("formatting: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
}

const LAKE_URL: &str = "weir://lake/";

const DEAD_LETTER_URL: &str = "weir-dead-letter://lake/";

/// How many footers at most a table's schema is read from.
const SCHEMA_FILES: usize = 64;

/// A dataset's table, as a query session registers it.
#[derive(Debug, Clone)]
pub struct Table {
    pub name: String,
    /// The schema while the table has no committed file (the footers decide after).
    pub declared: SchemaRef,
}

impl Table {
    /// Every dataset of `config`, declared with the schema the config gives its rows
    /// ([`Config::declared_output_schema`]), which needs no secrets.
    pub fn from_config(config: &Config) -> Result<Vec<Table>, crate::config::ConfigError> {
        config
            .datasets
            .iter()
            .map(|ds| {
                Ok(Table {
                    name: ds.name.clone(),
                    declared: config.declared_output_schema(ds)?,
                })
            })
            .collect()
    }
}

/// Builds a session with every dataset of a running pipeline and `dead_letter` registered.
pub async fn session(
    store: Arc<dyn ObjectStore>,
    datasets: &[Arc<DatasetRuntime>],
) -> Result<SessionContext, QueryError> {
    let tables: Vec<Table> = datasets
        .iter()
        .map(|d| Table {
            name: d.name.clone(),
            declared: d.output_schema.clone(),
        })
        .collect();
    session_of(store, &tables).await
}

/// Builds a session with `tables` and `dead_letter` registered.
pub async fn session_of(
    store: Arc<dyn ObjectStore>,
    tables: &[Table],
) -> Result<SessionContext, QueryError> {
    let names: Vec<String> = tables.iter().map(|t| t.name.clone()).collect();
    let view = CommittedView::load(store.clone(), &names).await?;
    // Logpush field names are CamelCase: keep identifiers as written, so that
    // `SELECT EdgeResponseStatus FROM http_requests` works without quotes.
    let mut config = SessionConfig::new()
        .with_information_schema(true)
        .with_target_partitions(2);
    config.options_mut().sql_parser.enable_ident_normalization = false;
    // Dead letters sit one directory down (`_weir/dead_letter/<dataset>/`).
    config
        .options_mut()
        .execution
        .listing_table_ignore_subdirectory = false;
    // No listing cache: on a miss DataFusion's lists the whole table to fill it, which would
    // read every hour's manifests for a query that touches one.
    let runtime = datafusion::execution::runtime_env::RuntimeEnvBuilder::new()
        .with_cache_manager(
            datafusion::execution::cache::cache_manager::CacheManagerConfig::default()
                .with_list_files_cache_limit(0),
        )
        .build_arc()?;
    let ctx = SessionContext::new_with_config_rt(config, runtime.clone());
    let url = url::Url::parse(LAKE_URL).expect("static url");
    let store_for_commits = store;
    let view_of_files = view.clone();
    let view: Arc<dyn ObjectStore> = Arc::new(view);
    ctx.register_object_store(&url, view.clone());
    // DataFusion's listing skips path segments starting with `_` (Hive's hidden-file
    // convention), so dead letters get a root of their own at `_weir/dead_letter/`.
    let dead_url = url::Url::parse(DEAD_LETTER_URL).expect("static url");
    ctx.register_object_store(
        &dead_url,
        Arc::new(object_store::prefix::PrefixStore::new(
            view.clone(),
            "_weir/dead_letter",
        )),
    );
    // The dataset tables are made when a query names them (`LakeSchema`); `dead_letter`
    // and `commits` are registered beside them.
    let options = ctx.state().config_options().catalog.clone();
    let lake = LakeSchema {
        declared: tables
            .iter()
            .map(|t| (t.name.clone(), t.declared.clone()))
            .collect(),
        view: view_of_files,
        store: view,
        footers: datafusion::execution::SessionStateBuilder::new()
            .with_runtime_env(runtime)
            .build(),
        made: Mutex::new(HashMap::new()),
        others: MemorySchemaProvider::new(),
    };
    ctx.catalog(&options.default_catalog)
        .expect("the default catalog")
        .register_schema(&options.default_schema, Arc::new(lake))?;
    let table_url = ListingTableUrl::parse(DEAD_LETTER_URL)?;
    let options =
        ListingOptions::new(Arc::new(ParquetFormat::default())).with_file_extension(".parquet");
    register(
        &ctx,
        "dead_letter",
        table_url,
        options,
        crate::sink::dead_letter::schema(),
    )?;
    ctx.register_table(
        "commits",
        Arc::new(CommitsTable {
            store: store_for_commits,
            datasets: names,
        }),
    )?;
    Ok(ctx)
}

/// The session's default schema. A dataset's table is made when a query first names it,
/// with its schema read from footers then ([`CommittedView::newest_files`]): a query of
/// one table (or of `commits` alone) reads no other table's files, and a table whose
/// footers cannot be read fails only the queries that use it.
struct LakeSchema {
    /// Every dataset, with the schema its table has while it has no files.
    declared: BTreeMap<String, SchemaRef>,
    view: CommittedView,
    /// `view`, as the listing tables read it.
    store: Arc<dyn ObjectStore>,
    /// A session state for reading footers, sharing the query session's runtime (and so
    /// its footer cache): not the query session itself, which holds this schema.
    footers: datafusion::execution::SessionState,
    made: Mutex<HashMap<String, Arc<dyn TableProvider>>>,
    /// `dead_letter`, `commits`.
    others: MemorySchemaProvider,
}

impl std::fmt::Debug for LakeSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LakeSchema")
            .field("datasets", &self.declared.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl LakeSchema {
    async fn make(
        &self,
        name: &str,
        declared: &SchemaRef,
    ) -> datafusion::error::Result<Arc<dyn TableProvider>> {
        let table_url = ListingTableUrl::parse(format!("{LAKE_URL}{name}/"))?;
        let options = ListingOptions::new(Arc::new(ParquetFormat::default()))
            .with_file_extension(".parquet")
            .with_table_partition_cols(vec![
                ("date".to_owned(), DataType::Utf8),
                ("hour".to_owned(), DataType::Utf8),
            ]);
        let newest = self
            .view
            .newest_files(name, SCHEMA_FILES)
            .await
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        let schema = if newest.is_empty() {
            declared.clone()
        } else {
            // File by file: files of older writers hold nanosecond timestamps where newer
            // ones hold the configured unit, which a merge of raw footers refuses. Each is
            // read as the declared unit (the Parquet reader converts on read).
            let mut schemas = Vec::with_capacity(newest.len());
            for file in &newest {
                let found = options
                    .format
                    .infer_schema(&self.footers, &self.store, std::slice::from_ref(file))
                    .await?;
                schemas.push(with_declared_timestamp_units(&found, declared));
            }
            Arc::new(Schema::try_merge(schemas)?)
        };
        tracing::debug!(
            table = name,
            footers = newest.len(),
            fields = schema.fields().len(),
            "table schema"
        );
        let config = ListingTableConfig::new(table_url)
            .with_listing_options(options)
            .with_schema(schema);
        Ok(Arc::new(ListingTable::try_new(config)?))
    }
}

/// `found` with each top-level timestamp column in the unit `declared` gives it (or, for a
/// column the config does not declare, the unit of the declared timestamps).
fn with_declared_timestamp_units(found: &SchemaRef, declared: &SchemaRef) -> Schema {
    let unit_of = |name: &str| match declared.field_with_name(name).map(|f| f.data_type()) {
        Ok(DataType::Timestamp(unit, _)) => Some(*unit),
        _ => declared.fields().iter().find_map(|f| match f.data_type() {
            DataType::Timestamp(unit, _) => Some(*unit),
            _ => None,
        }),
    };
    let fields: Vec<Field> = found
        .fields()
        .iter()
        .map(|f| match (f.data_type(), unit_of(f.name())) {
            (DataType::Timestamp(_, tz), Some(unit)) => f
                .as_ref()
                .clone()
                .with_data_type(DataType::Timestamp(unit, tz.clone())),
            _ => f.as_ref().clone(),
        })
        .collect();
    Schema::new_with_metadata(fields, found.metadata().clone())
}

#[async_trait::async_trait]
impl SchemaProvider for LakeSchema {
    fn table_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.declared.keys().cloned().collect();
        names.extend(self.others.table_names());
        names
    }

    async fn table(&self, name: &str) -> datafusion::error::Result<Option<Arc<dyn TableProvider>>> {
        let Some(declared) = self.declared.get(name) else {
            return self.others.table(name).await;
        };
        if let Some(made) = self.made.lock().expect("tables lock").get(name) {
            return Ok(Some(made.clone()));
        }
        let table = self.make(name, declared).await?;
        self.made
            .lock()
            .expect("tables lock")
            .insert(name.to_owned(), table.clone());
        Ok(Some(table))
    }

    async fn table_type(&self, name: &str) -> datafusion::error::Result<Option<TableType>> {
        if self.declared.contains_key(name) {
            return Ok(Some(TableType::Base));
        }
        self.others.table_type(name).await
    }

    fn register_table(
        &self,
        name: String,
        table: Arc<dyn TableProvider>,
    ) -> datafusion::error::Result<Option<Arc<dyn TableProvider>>> {
        if self.declared.contains_key(&name) {
            return Err(DataFusionError::Plan(format!(
                "table {name} already exists"
            )));
        }
        self.others.register_table(name, table)
    }

    fn deregister_table(
        &self,
        name: &str,
    ) -> datafusion::error::Result<Option<Arc<dyn TableProvider>>> {
        self.others.deregister_table(name)
    }

    fn table_exist(&self, name: &str) -> bool {
        self.declared.contains_key(name) || self.others.table_exist(name)
    }
}

/// Schema of the `commits` table: one row per ledger entry. The column names are a
/// contract (documented in the README); add columns, never rename them.
pub fn commits_schema() -> SchemaRef {
    let int = |name: &str| Field::new(name, DataType::Int64, false);
    Arc::new(Schema::new(vec![
        Field::new("dataset", DataType::Utf8, false),
        Field::new("topic", DataType::Utf8, false),
        Field::new("partition", DataType::Int32, false),
        int("seq"),
        int("epoch"),
        Field::new("kind", DataType::Utf8, false),
        // Null for an entry that covers no position yet (a takeover before any commit).
        Field::new("first_offset", DataType::Int64, true),
        Field::new("next_offset", DataType::Int64, true),
        int("records"),
        int("rows"),
        int("dead_letters"),
        int("files"),
        int("bytes"),
        int("skipped_offsets"),
        int("offset_resets"),
        Field::new(
            "committed_at",
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            false,
        ),
        int("removed_files"),
        int("removed_rows"),
        int("holes"),
    ]))
}

/// What an entry did, as the `kind` column says it.
pub fn entry_kind(entry: &ledger::Entry) -> &'static str {
    if entry.takeover {
        "takeover"
    } else if entry.abandoned {
        "abandon"
    } else if entry.partition == ledger::MAINTENANCE_PARTITION {
        "replace"
    } else if ledger::is_staged(&entry.topic) {
        "staged"
    } else if entry.topic.starts_with(ledger::BACKFILL_PREFIX) {
        "backfill"
    } else if entry.records == 0 {
        // Entries without records: where a partition starts, or where its offsets
        // restarted after going back (its `first_offset` below its predecessor's end).
        "start"
    } else {
        "append"
    }
}

/// The `commits` table: reads the ledger entries of every dataset when a query scans it
/// (so other queries never pay for the history).
#[derive(Debug)]
struct CommitsTable {
    store: Arc<dyn ObjectStore>,
    datasets: Vec<String>,
}

#[async_trait::async_trait]
impl TableProvider for CommitsTable {
    fn schema(&self) -> SchemaRef {
        commits_schema()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    /// `dataset = '...'` narrows which ledgers are read (DataFusion still applies it).
    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> datafusion::error::Result<Vec<TableProviderFilterPushDown>> {
        Ok(filters
            .iter()
            .map(|f| match dataset_of(f) {
                Some(_) => TableProviderFilterPushDown::Inexact,
                None => TableProviderFilterPushDown::Unsupported,
            })
            .collect())
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        let datasets: Vec<String> = self
            .datasets
            .iter()
            .filter(|d| {
                filters
                    .iter()
                    .filter_map(dataset_of)
                    .all(|want| want == **d)
            })
            .cloned()
            .collect();
        let batch = commits_batch(&self.store, &datasets)
            .await
            .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))?;
        let table = MemTable::try_new(commits_schema(), vec![vec![batch]])?;
        table.scan(state, projection, &[], limit).await
    }
}

/// The dataset a filter `dataset = '<name>'` (either way round) pins, if it is one.
fn dataset_of(filter: &Expr) -> Option<String> {
    let Expr::BinaryExpr(binary) = filter else {
        return None;
    };
    if binary.op != Operator::Eq {
        return None;
    }
    match (binary.left.as_ref(), binary.right.as_ref()) {
        (Expr::Column(column), Expr::Literal(value, _))
        | (Expr::Literal(value, _), Expr::Column(column))
            if column.name == "dataset" =>
        {
            value.try_as_str().flatten().map(str::to_owned)
        }
        _ => None,
    }
}

/// Every ledger entry of `datasets` as one batch of the `commits` table, ordered by
/// dataset, topic, partition and sequence number.
pub async fn commits_batch(
    store: &Arc<dyn ObjectStore>,
    datasets: &[String],
) -> Result<RecordBatch, QueryError> {
    let mut entries = Vec::new();
    for dataset in datasets {
        for stream in ledger::streams(store, dataset).await? {
            entries.extend(stream.entries().await?);
        }
        let jobs = ledger::PartitionLedger::maintenance(store.clone(), dataset);
        entries.extend(jobs.entries().await?);
    }
    entries.sort_by(|(a, _), (b, _)| {
        (&a.dataset, &a.topic, a.partition, a.seq).cmp(&(&b.dataset, &b.topic, b.partition, b.seq))
    });
    let n = entries.len();
    let mut dataset = StringBuilder::new();
    let mut topic = StringBuilder::new();
    let mut partition = Int32Builder::with_capacity(n);
    let mut seq = Int64Builder::with_capacity(n);
    let mut epoch = Int64Builder::with_capacity(n);
    let mut kind = StringBuilder::new();
    let mut first_offset = Int64Builder::with_capacity(n);
    let mut next_offset = Int64Builder::with_capacity(n);
    let mut records = Int64Builder::with_capacity(n);
    let mut rows = Int64Builder::with_capacity(n);
    let mut dead_letters = Int64Builder::with_capacity(n);
    let mut files = Int64Builder::with_capacity(n);
    let mut bytes = Int64Builder::with_capacity(n);
    let mut skipped = Int64Builder::with_capacity(n);
    let mut resets = Int64Builder::with_capacity(n);
    let mut committed_at = TimestampMillisecondBuilder::with_capacity(n).with_timezone("UTC");
    let mut removed_files = Int64Builder::with_capacity(n);
    let mut removed_rows = Int64Builder::with_capacity(n);
    let mut holes = Int64Builder::with_capacity(n);
    let count = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    // -1 stands for "no position yet" in a takeover entry before any commit.
    let offset = |o: i64| (o >= 0).then_some(o);
    for (entry, written) in &entries {
        dataset.append_value(&entry.dataset);
        topic.append_value(&entry.topic);
        partition.append_value(entry.partition);
        seq.append_value(count(entry.seq));
        epoch.append_value(count(entry.epoch));
        kind.append_value(entry_kind(entry));
        first_offset.append_option(offset(entry.start_offset));
        next_offset.append_option(offset(entry.next_offset));
        records.append_value(count(entry.records));
        rows.append_value(count(entry.rows));
        dead_letters.append_value(count(entry.dead_lettered));
        files.append_value(count(entry.files.len() as u64));
        bytes.append_value(count(entry.files.iter().map(|f| f.bytes).sum()));
        skipped.append_value(count(entry.skipped_offsets));
        resets.append_value(count(entry.offset_resets));
        holes.append_value(count(entry.holes));
        committed_at.append_value(written.timestamp_millis());
        removed_files.append_value(count(entry.removed.len() as u64));
        // Table rows only: a dead-letter file taken out (compacted) held no table rows.
        removed_rows.append_value(count(
            entry
                .removed
                .iter()
                .filter(|f| {
                    ledger::bucket_of(&entry.dataset, &f.path) != ledger::DEAD_LETTER_BUCKET
                })
                .map(|f| f.rows)
                .sum(),
        ));
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(dataset.finish()),
        Arc::new(topic.finish()),
        Arc::new(partition.finish()),
        Arc::new(seq.finish()),
        Arc::new(epoch.finish()),
        Arc::new(kind.finish()),
        Arc::new(first_offset.finish()),
        Arc::new(next_offset.finish()),
        Arc::new(records.finish()),
        Arc::new(rows.finish()),
        Arc::new(dead_letters.finish()),
        Arc::new(files.finish()),
        Arc::new(bytes.finish()),
        Arc::new(skipped.finish()),
        Arc::new(resets.finish()),
        Arc::new(committed_at.finish()),
        Arc::new(removed_files.finish()),
        Arc::new(removed_rows.finish()),
        Arc::new(holes.finish()),
    ];
    Ok(RecordBatch::try_new(commits_schema(), columns)?)
}

fn register(
    ctx: &SessionContext,
    name: &str,
    url: ListingTableUrl,
    options: ListingOptions,
    schema: SchemaRef,
) -> Result<(), QueryError> {
    let config = ListingTableConfig::new(url)
        .with_listing_options(options)
        .with_schema(schema);
    let table = ListingTable::try_new(config)?;
    ctx.register_table(name, Arc::new(table))?;
    Ok(())
}

/// Runs `sql` and returns its batches.
pub async fn run(ctx: &SessionContext, sql: &str) -> Result<Vec<RecordBatch>, QueryError> {
    let df = ctx.sql(sql).await?;
    Ok(df.collect().await?)
}

/// Renders batches in `format`.
pub fn render(batches: &[RecordBatch], format: Format) -> Result<String, QueryError> {
    match format {
        Format::Table => Ok(arrow::util::pretty::pretty_format_batches(batches)?.to_string()),
        Format::Csv => {
            let mut buf = Vec::new();
            {
                let mut w = arrow::csv::WriterBuilder::new()
                    .with_header(true)
                    .build(&mut buf);
                if batches.is_empty() {
                    return Ok(String::new());
                }
                for b in batches {
                    w.write(b)?;
                }
            }
            Ok(String::from_utf8_lossy(&buf).into_owned())
        }
        Format::Json => {
            let mut buf = Vec::new();
            {
                let mut w = arrow::json::LineDelimitedWriter::new(&mut buf);
                for b in batches {
                    w.write(b)?;
                }
                w.finish()?;
            }
            Ok(String::from_utf8_lossy(&buf).into_owned())
        }
    }
}

#[cfg(test)]
mod tests {
    use object_store::memory::InMemory;

    use super::*;
    use crate::config::Config;
    use crate::ledger::{Entry, FileRef, LEDGER_VERSION, PartitionLedger};
    use crate::runtime::DatasetRuntime;

    fn datasets() -> Vec<Arc<DatasetRuntime>> {
        let config = Config::parse(
            "[kafka]\nbrokers = \"127.0.0.1:9\"\n[[datasets]]\nname = \"dns_logs\"\ntopic = \"dns\"\n\
             [[datasets]]\nname = \"firewall_events\"\ntopic = \"fw\"\n",
        )
        .unwrap();
        let resolved = config
            .validate(&weir_operators::config::StaticSecrets::default())
            .unwrap();
        resolved
            .into_iter()
            .map(|r| {
                Arc::new(DatasetRuntime {
                    name: r.config.name.clone(),
                    topic: r.config.topic.clone(),
                    operators: Vec::new(),
                    output_schema: r.input_schema.clone(),
                    resolved: r,
                })
            })
            .collect()
    }

    #[allow(clippy::too_many_arguments)]
    fn entry(
        partition: i32,
        seq: u64,
        epoch: u64,
        offsets: (i64, i64),
        records: u64,
        dead: u64,
        file_bytes: &[u64],
        skipped: u64,
    ) -> Entry {
        let files: Vec<FileRef> = file_bytes
            .iter()
            .enumerate()
            .map(|(i, &bytes)| FileRef {
                path: format!("dns_logs/date=2026-12-05/hour=0{i}/p{partition}-{seq}.parquet"),
                rows: 2,
                bytes,
                newest_written: None,
                offsets: None,
            })
            .collect();
        Entry {
            version: LEDGER_VERSION,
            seq,
            epoch,
            writer: "test".into(),
            dataset: "dns_logs".into(),
            topic: "dns".into(),
            partition,
            start_offset: offsets.0,
            next_offset: offsets.1,
            records,
            rows: files.iter().map(|f| f.rows).sum(),
            dead_lettered: dead,
            skipped_offsets: skipped,
            holes: 0,
            offset_resets: 0,
            files,
            dead_letters: Vec::new(),
            removed: vec![],
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

    #[tokio::test]
    async fn commits_has_one_row_per_ledger_entry() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let before = chrono::Utc::now().timestamp_millis();
        let zero = PartitionLedger::new(store.clone(), "dns_logs", "dns", 0);
        let one = PartitionLedger::new(store.clone(), "dns_logs", "dns", 1);
        zero.commit(&entry(0, 1, 1, (0, 10), 10, 2, &[100, 50], 0))
            .await
            .unwrap();
        let mut takeover = entry(0, 2, 2, (10, 10), 0, 0, &[], 0);
        takeover.takeover = true;
        zero.commit(&takeover).await.unwrap();
        // Two of its offsets were deleted unread, one held no record (a transaction marker).
        let mut third = entry(0, 3, 2, (10, 28), 15, 0, &[70], 2);
        third.holes = 1;
        zero.commit(&third).await.unwrap();
        let mut first = entry(1, 1, 1, (-1, -1), 0, 0, &[], 0);
        first.takeover = true;
        one.commit(&first).await.unwrap();
        one.commit(&entry(1, 2, 1, (0, 5), 5, 1, &[40], 0))
            .await
            .unwrap();
        let after = chrono::Utc::now().timestamp_millis();

        let ctx = session(store, &datasets()).await.unwrap();
        let rows = run(
            &ctx,
            "SELECT dataset, topic, \"partition\", seq, epoch, kind, first_offset, next_offset, \
             records, rows, dead_letters, files, bytes, skipped_offsets, holes \
             FROM commits ORDER BY \"partition\", seq",
        )
        .await
        .unwrap();
        let csv = render(&rows, Format::Csv).unwrap();
        assert_eq!(
            csv.lines().collect::<Vec<_>>(),
            [
                "dataset,topic,partition,seq,epoch,kind,first_offset,next_offset,records,rows,dead_letters,files,bytes,skipped_offsets,holes",
                "dns_logs,dns,0,1,1,append,0,10,10,4,2,2,150,0,0",
                "dns_logs,dns,0,2,2,takeover,10,10,0,0,0,0,0,0,0",
                "dns_logs,dns,0,3,2,append,10,28,15,2,0,1,70,2,1",
                "dns_logs,dns,1,1,1,takeover,,,0,0,0,0,0,0,0",
                "dns_logs,dns,1,2,1,append,0,5,5,2,1,1,40,0,0",
            ]
        );
        // committed_at is when the store wrote each entry.
        let times = run(
            &ctx,
            "SELECT min(committed_at), max(committed_at), count(*) FROM commits",
        )
        .await
        .unwrap();
        let column = |i: usize| {
            times[0]
                .column(i)
                .as_any()
                .downcast_ref::<arrow::array::TimestampMillisecondArray>()
                .unwrap()
                .value(0)
        };
        assert!(
            before <= column(0) && column(1) <= after,
            "{before} {} {} {after}",
            column(0),
            column(1)
        );
        // Records, skipped offsets and holes add up to the offsets covered.
        let sums = run(
            &ctx,
            "SELECT \"partition\", sum(records) + sum(skipped_offsets) + sum(holes), max(next_offset) \
             FROM commits GROUP BY 1 ORDER BY 1",
        )
        .await
        .unwrap();
        assert_eq!(
            render(&sums, Format::Csv)
                .unwrap()
                .lines()
                .skip(1)
                .collect::<Vec<_>>(),
            ["0,28,28", "1,5,5"]
        );
    }

    /// A table's schema is its newest files' footers (here a column no config declares,
    /// as an operator adds), found through a checkpoint; a table without files keeps the
    /// declared schema.
    #[tokio::test]
    async fn table_schemas_come_from_the_newest_footers() {
        use arrow::array::StringArray;
        use object_store::ObjectStoreExt as _;

        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let written = Arc::new(Schema::new(vec![
            Field::new("QueryName", DataType::Utf8, true),
            Field::new("team", DataType::Utf8, true),
        ]));
        let batch = RecordBatch::try_new(
            written.clone(),
            vec![
                Arc::new(StringArray::from(vec!["a.example", "b.example"])),
                Arc::new(StringArray::from(vec![Some("alpha"), None])),
            ],
        )
        .unwrap();
        let mut bytes = Vec::new();
        let mut writer = parquet::arrow::ArrowWriter::try_new(&mut bytes, written, None).unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
        let path = "dns_logs/date=2026-12-05/hour=07/p0-1.parquet";
        store
            .put(&object_store::path::Path::from(path), bytes.clone().into())
            .await
            .unwrap();
        let mut first = entry(0, 1, 1, (0, 2), 2, 0, &[], 0);
        first.files = vec![FileRef {
            path: path.into(),
            rows: 2,
            bytes: bytes.len() as u64,
            newest_written: None,
            offsets: None,
        }];
        first.rows = 2;
        let ledger = PartitionLedger::new(store.clone(), "dns_logs", "dns", 0);
        ledger.commit(&first).await.unwrap();
        ledger.checkpoint(&first).await.unwrap();
        // A later entry without files: the footer is still found, behind the checkpoint.
        let mut takeover = entry(0, 2, 2, (2, 2), 0, 0, &[], 0);
        takeover.takeover = true;
        ledger.commit(&takeover).await.unwrap();

        let declared = datasets();
        assert!(declared[0].output_schema.index_of("team").is_err());
        let ctx = session(store, &declared).await.unwrap();
        let rows = run(
            &ctx,
            "SELECT QueryName, team, hour FROM dns_logs ORDER BY 1",
        )
        .await
        .unwrap();
        assert_eq!(
            render(&rows, Format::Csv)
                .unwrap()
                .lines()
                .collect::<Vec<_>>(),
            ["QueryName,team,hour", "a.example,alpha,07", "b.example,,07"]
        );
        let columns = run(
            &ctx,
            "SELECT table_name, count(*) FROM information_schema.columns \
             WHERE table_name IN ('dns_logs', 'firewall_events') GROUP BY 1 ORDER BY 1",
        )
        .await
        .unwrap();
        assert_eq!(
            render(&columns, Format::Csv)
                .unwrap()
                .lines()
                .skip(1)
                .collect::<Vec<_>>(),
            [
                "dns_logs,4".to_owned(),
                format!(
                    "firewall_events,{}",
                    declared[1].output_schema.fields().len() + 2
                ),
            ]
        );
    }

    /// `WHERE dataset = '...'` narrows the ledgers read, and the answers stay exact.
    #[tokio::test]
    async fn a_dataset_filter_narrows_the_ledgers_read() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        PartitionLedger::new(store.clone(), "dns_logs", "dns", 0)
            .commit(&entry(0, 1, 1, (0, 7), 7, 0, &[10], 0))
            .await
            .unwrap();
        let mut firewall = entry(3, 1, 1, (0, 4), 4, 0, &[], 0);
        firewall.dataset = "firewall_events".into();
        firewall.topic = "fw".into();
        PartitionLedger::new(store.clone(), "firewall_events", "fw", 3)
            .commit(&firewall)
            .await
            .unwrap();
        let ctx = session(store, &datasets()).await.unwrap();
        for (filter, want) in [
            ("dataset = 'dns_logs'", vec!["dns_logs,0,7"]),
            ("'firewall_events' = dataset", vec!["firewall_events,3,4"]),
            ("dataset = 'nope'", vec![]),
            ("records > 0", vec!["dns_logs,0,7", "firewall_events,3,4"]),
            (
                "dataset = 'dns_logs' OR dataset = 'firewall_events'",
                vec!["dns_logs,0,7", "firewall_events,3,4"],
            ),
        ] {
            let rows = run(
                &ctx,
                &format!(
                    "SELECT dataset, \"partition\", records FROM commits WHERE {filter} ORDER BY 1"
                ),
            )
            .await
            .unwrap();
            let csv = render(&rows, Format::Csv).unwrap();
            let got: Vec<&str> = csv.lines().skip(1).collect();
            assert_eq!(got, want, "{filter}");
        }
    }
}

#[cfg(test)]
mod timestamp_unit_tests {
    use std::sync::Arc;

    use arrow::array::{ArrayRef, RecordBatch, TimestampNanosecondArray, new_null_array};
    use arrow::datatypes::{DataType, TimeUnit};
    use object_store::memory::InMemory;
    use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

    use super::*;
    use crate::config::{Config, TimestampUnit};
    use crate::ledger::{Entry, FileRef, LEDGER_VERSION, PartitionLedger};
    use crate::runtime::DatasetRuntime;
    use crate::sink::parquet::file_schema;

    /// One dns_logs row at `nanos`, every other column null, as Parquet with `schema`.
    fn file(schema: &arrow::datatypes::SchemaRef, nanos: i64) -> (Vec<u8>, FileRef) {
        let columns: Vec<ArrayRef> = schema
            .fields()
            .iter()
            .map(|f| -> ArrayRef {
                if f.name() == "Timestamp" {
                    let t: ArrayRef =
                        Arc::new(TimestampNanosecondArray::from(vec![nanos]).with_timezone("UTC"));
                    arrow::compute::cast(&t, f.data_type()).unwrap()
                } else {
                    new_null_array(f.data_type(), 1)
                }
            })
            .collect();
        let batch = RecordBatch::try_new(schema.clone(), columns).unwrap();
        let mut bytes = Vec::new();
        let mut w = parquet::arrow::ArrowWriter::try_new(&mut bytes, schema.clone(), None).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        let f = FileRef {
            path: String::new(),
            rows: 1,
            bytes: bytes.len() as u64,
            newest_written: None,
            offsets: None,
        };
        (bytes, f)
    }

    /// A lake written with nanosecond files before the default became micros reads on,
    /// next to micro files, through the micro table schema.
    #[tokio::test]
    async fn nanosecond_files_of_older_writers_read_with_the_micros_schema() {
        let config = Config::parse(
            "[kafka]\nbrokers = \"127.0.0.1:9\"\n[[datasets]]\nname = \"dns_logs\"\ntopic = \"dns\"\n",
        )
        .unwrap();
        let r = config
            .validate(&weir_operators::config::StaticSecrets::default())
            .unwrap()
            .remove(0);
        let nanos_schema = r.input_schema.clone();
        let micros_schema = file_schema(&nanos_schema, TimestampUnit::Micros);
        assert_eq!(
            micros_schema
                .field_with_name("Timestamp")
                .unwrap()
                .data_type(),
            &DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
        );
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let base = 1_764_892_800_000_000_000i64; // 2025-12-05T00:00:00Z
        let mut refs = Vec::new();
        for (name, schema, t) in [
            ("old", &nanos_schema, base + 1_500),
            ("new", &micros_schema, base + 7_000),
        ] {
            let (bytes, mut f) = file(schema, t);
            f.path = format!("dns_logs/date=2025-12-05/hour=00/{name}.parquet");
            store
                .put(&f.path.as_str().into(), PutPayload::from(bytes))
                .await
                .unwrap();
            refs.push(f);
        }
        PartitionLedger::new(store.clone(), "dns_logs", "dns", 0)
            .commit(&Entry {
                version: LEDGER_VERSION,
                seq: 1,
                epoch: 1,
                writer: "test".into(),
                dataset: "dns_logs".into(),
                topic: "dns".into(),
                partition: 0,
                start_offset: 0,
                next_offset: 2,
                records: 2,
                rows: 2,
                dead_lettered: 0,
                skipped_offsets: 0,
                holes: 0,
                offset_resets: 0,
                files: refs,
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
            })
            .await
            .unwrap();
        let datasets = vec![Arc::new(DatasetRuntime {
            name: r.config.name.clone(),
            topic: r.config.topic.clone(),
            operators: Vec::new(),
            output_schema: micros_schema,
            resolved: r,
        })];
        let ctx = session(store, &datasets).await.unwrap();
        let rows = run(
            &ctx,
            "SELECT count(*), CAST(min(\"Timestamp\") AS BIGINT), CAST(max(\"Timestamp\") AS BIGINT) FROM dns_logs",
        )
        .await
        .unwrap();
        let csv = render(&rows, Format::Csv).unwrap();
        // Microseconds: the old file's sub-microsecond digits are dropped on read.
        let want = format!("2,{},{}", (base + 1_500) / 1_000, (base + 7_000) / 1_000);
        assert_eq!(csv.lines().nth(1), Some(want.as_str()), "{csv}");
    }
}
