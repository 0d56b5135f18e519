//! Reference data for the `enrich` operator (mmdb databases, lookup tables): the pipeline
//! does the I/O so operators never do.
//!
//! ```text
//!  start:  every path the enrich operators name ──read──▶ Resources::load ──▶ snapshot g1
//!  timer (reference.reload_interval):
//!          stat each path (file: mtime + size, URL: ETag / last-modified)
//!          changed? ──read──▶ Resources::reload ── valid ──▶ snapshot g2 (next batch sees it)
//!                                               └ invalid ─▶ g1 stays, error logged + counted
//! ```
//!
//! A path is a local file, or an object-store URL (`s3://`, `gs://`, `az://`, `file://`)
//! opened with the same `[storage.options]` as the lake. `.parquet` tables are decoded here
//! to Arrow; everything else (mmdb, CSV) is handed over as bytes.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use tracing::{info, warn};
use weir_operators::OperatorConfig;
use weir_operators::enrich::{EnrichConfig, ResourceData, Resources};

use crate::config::Config;

/// Every enrich operator config in the file.
fn enrich_configs(config: &Config) -> Vec<&EnrichConfig> {
    config
        .datasets
        .iter()
        .flat_map(|d| &d.operators)
        .filter_map(|o| match &o.config {
            OperatorConfig::Enrich(e) => Some(e),
            _ => None,
        })
        .collect()
}

/// Every distinct resource path the config names.
fn paths(config: &Config) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for e in enrich_configs(config) {
        for db in [&e.geoip, &e.asn].into_iter().flatten() {
            out.push(db.database.clone());
        }
        for l in &e.lookup {
            out.push(l.path.clone());
        }
    }
    out.sort();
    out.dedup();
    out
}

/// What identifies one version of a resource without reading it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp(String);

enum Location {
    File(std::path::PathBuf),
    Object(Arc<dyn ObjectStore>, StorePath),
}

fn locate(path: &str, config: &Config) -> Result<Location, String> {
    if !path.contains("://") {
        return Ok(Location::File(path.into()));
    }
    let url = url::Url::parse(path).map_err(|e| format!("{path}: {e}"))?;
    if url.scheme() == "file" {
        return Ok(Location::File(
            url.to_file_path()
                .map_err(|()| format!("{path}: not a local file url"))?,
        ));
    }
    let (store, object) = object_store::parse_url_opts(&url, config.storage.options.iter())
        .map_err(|e| format!("{path}: {e}"))?;
    Ok(Location::Object(Arc::from(store), object))
}

async fn stamp(loc: &Location) -> Result<Stamp, String> {
    match loc {
        Location::File(p) => {
            let meta = tokio::fs::metadata(p)
                .await
                .map_err(|e| format!("{}: {e}", p.display()))?;
            let modified = meta
                .modified()
                .ok()
                .and_then(|m| m.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_nanos());
            Ok(Stamp(format!("{modified}:{}", meta.len())))
        }
        Location::Object(store, p) => {
            let meta = store.head(p).await.map_err(|e| e.to_string())?;
            Ok(Stamp(format!(
                "{}:{}:{}",
                meta.e_tag.unwrap_or_default(),
                meta.last_modified.timestamp_nanos_opt().unwrap_or(0),
                meta.size
            )))
        }
    }
}

async fn read(path: &str, loc: &Location) -> Result<ResourceData, String> {
    let bytes: Bytes = match loc {
        Location::File(p) => tokio::fs::read(p)
            .await
            .map_err(|e| format!("{}: {e}", p.display()))?
            .into(),
        Location::Object(store, p) => store
            .get(p)
            .await
            .map_err(|e| e.to_string())?
            .bytes()
            .await
            .map_err(|e| e.to_string())?,
    };
    if path.ends_with(".parquet") {
        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
            .and_then(|b| b.build())
            .map_err(|e| format!("not a readable parquet file: {e}"))?;
        let batches = reader
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("not a readable parquet file: {e}"))?;
        Ok(ResourceData::Batches(batches))
    } else {
        Ok(ResourceData::Bytes(bytes.to_vec()))
    }
}

/// Loads every reference file the config's enrich operators name. Any unreadable or invalid
/// file is an error naming it: the pipeline refuses to start rather than emit nulls.
pub async fn load(config: &Config) -> Result<Resources, String> {
    let mut data = BTreeMap::new();
    for path in paths(config) {
        let loc = locate(&path, config)?;
        let got = read(&path, &loc)
            .await
            .map_err(|e| format!("reference data {path}: {e}"))?;
        data.insert(path, got);
    }
    let configs = enrich_configs(config);
    let read = |path: &str| {
        data.get(path)
            .cloned()
            .ok_or_else(|| format!("{path} was not read"))
    };
    Resources::load(&configs, &read).map_err(|e| e.to_string())
}

/// Re-reads changed reference files every `reference.reload_interval` and swaps them in.
/// A replacement that cannot be read, parsed or validated is refused (the old data stays)
/// and logged. `outcome` hears of every changed file: `true` swapped in, `false` refused.
/// Runs until the returned task is aborted.
pub fn spawn_reloader(
    config: Arc<Config>,
    resources: Arc<Resources>,
    outcome: impl Fn(bool) + Send + 'static,
) -> Option<tokio::task::JoinHandle<()>> {
    let every = config.reference.reload_interval;
    let paths = paths(&config);
    if every.is_zero() || paths.is_empty() {
        return None;
    }
    Some(tokio::spawn(async move {
        let mut stamps: BTreeMap<String, Option<Stamp>> = BTreeMap::new();
        for path in &paths {
            let s = match locate(path, &config) {
                Ok(loc) => stamp(&loc).await.ok(),
                Err(_) => None,
            };
            stamps.insert(path.clone(), s);
        }
        loop {
            tokio::time::sleep(every).await;
            for path in &paths {
                match check_one(path, &config, &resources, &mut stamps).await {
                    Ok(Checked::Unchanged) => {}
                    Ok(Checked::Reloaded) => outcome(true),
                    Err(CheckError::Unreachable(e)) => {
                        warn!(path = %path, error = %e, "reference data cannot be checked for changes; keeping the loaded version");
                    }
                    Err(CheckError::Refused(e)) => {
                        outcome(false);
                        warn!(path = %path, error = %e, "reference data reload refused; keeping the loaded version");
                    }
                }
            }
        }
    }))
}

/// What one look at a reference file found.
enum Checked {
    Unchanged,
    Reloaded,
}

#[derive(Debug, thiserror::Error)]
enum CheckError {
    /// The file could not be looked at: nothing was loaded, nothing refused.
    #[error("{0}")]
    Unreachable(String),
    /// A changed version could not be read, parsed or validated.
    #[error("{0}")]
    Refused(String),
}

async fn check_one(
    path: &str,
    config: &Config,
    resources: &Resources,
    stamps: &mut BTreeMap<String, Option<Stamp>>,
) -> Result<Checked, CheckError> {
    let loc = locate(path, config).map_err(CheckError::Unreachable)?;
    let now = stamp(&loc).await.map_err(CheckError::Unreachable)?;
    if stamps.get(path).and_then(Option::as_ref) == Some(&now) {
        return Ok(Checked::Unchanged);
    }
    // Remember the stamp even when the new file is bad, so a broken file is reported once
    // per change rather than on every tick.
    stamps.insert(path.to_owned(), Some(now));
    let data = read(path, &loc).await.map_err(CheckError::Refused)?;
    let version = resources
        .reload(path, data)
        .map_err(|e| CheckError::Refused(e.to_string()))?;
    info!(path = %path, version = ?version, "reference data reloaded");
    Ok(Checked::Reloaded)
}

/// How often the reloader looks, exposed for the config docs.
pub const DEFAULT_RELOAD_INTERVAL: Duration = Duration::from_secs(60);
