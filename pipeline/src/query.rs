//! `weir query`: DataFusion SQL over committed files only.
//!
//! Each dataset is a table named after it, with Hive partition columns `date` and `hour`
//! (strings, `'2026-11-22'` and `'05'`) that prune files before any is opened. The table
//! `dead_letter` holds every dataset's dead letters. Files are listed through
//! [`CommittedView`], which hides every file no ledger entry names.

use std::collections::HashSet;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, SchemaRef};
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::prelude::{SessionConfig, SessionContext};
use object_store::ObjectStore;
use object_store::path::Path;

use crate::ledger;
use crate::runtime::DatasetRuntime;
use crate::store::CommittedView;

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

/// Builds a session with every dataset and `dead_letter` registered.
pub async fn session(
    store: Arc<dyn ObjectStore>,
    datasets: &[Arc<DatasetRuntime>],
) -> Result<SessionContext, QueryError> {
    let mut committed: HashSet<Path> = HashSet::new();
    for ds in datasets {
        for stream in ledger::streams(&store, &ds.name).await? {
            let (files, dead) = stream.committed_files().await?;
            committed.extend(files.into_iter().chain(dead).map(|f| Path::from(f.path)));
        }
    }
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
    let ctx = SessionContext::new_with_config(config);
    let url = url::Url::parse(LAKE_URL).expect("static url");
    let view: Arc<dyn ObjectStore> = Arc::new(CommittedView::new(store, committed));
    ctx.register_object_store(&url, view.clone());
    // DataFusion's listing skips path segments starting with `_` (Hive's hidden-file
    // convention), so dead letters get a root of their own at `_weir/dead_letter/`.
    let dead_url = url::Url::parse(DEAD_LETTER_URL).expect("static url");
    ctx.register_object_store(
        &dead_url,
        Arc::new(object_store::prefix::PrefixStore::new(
            view,
            "_weir/dead_letter",
        )),
    );
    for ds in datasets {
        let table_url = ListingTableUrl::parse(format!("{LAKE_URL}{}/", ds.name))?;
        let options = ListingOptions::new(Arc::new(ParquetFormat::default()))
            .with_file_extension(".parquet")
            .with_table_partition_cols(vec![
                ("date".to_owned(), DataType::Utf8),
                ("hour".to_owned(), DataType::Utf8),
            ]);
        register(&ctx, &ds.name, table_url, options, ds.output_schema.clone())?;
    }
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
    Ok(ctx)
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
