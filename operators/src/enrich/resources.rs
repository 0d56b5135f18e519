//! Reference data shared by every enrich operator of a process, and how the pipeline
//! replaces it while operators run.
//!
//! ```text
//!  pipeline (owns all I/O)                       operators (one per dataset × partition)
//!  ───────────────────────                       ─────────────────────────────────────
//!  Resources::load(configs, read) ──▶ Snapshot g1 ◀── process(): current() once per batch
//!  timer: mtime / ETag changed?                      │  (a batch never mixes versions)
//!    Resources::reload(path, bytes)                  ▼
//!      parse + validate ── ok ──▶ Snapshot g2 ◀── next batch sees g2, clears its caches
//!                       └ err ──▶ g1 stays, reload error counted
//! ```
//!
//! A [`Snapshot`] is immutable. `reload` builds a new one beside it and swaps the pointer
//! under a write lock held only for that swap; operators take the current `Arc<Snapshot>`
//! under a read lock at the start of each batch.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io::Cursor;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use arrow_array::{Array, ArrayRef, RecordBatch, StringArray, new_null_array};
use arrow_cast::cast::{CastOptions, cast_with_options};
use arrow_cast::display::{ArrayFormatter, FormatOptions};
use arrow_schema::{DataType, Field, Schema};
use sha2::{Digest, Sha256};
use thiserror::Error;

use super::cache::FxHashMap;
use super::config::{EnrichConfig, LookupConfig};
use super::geo::Mmdb;
use crate::Metric;

/// What the pipeline read for one resource path.
#[derive(Debug, Clone)]
pub enum ResourceData {
    /// Raw file bytes: an `.mmdb` database or a CSV table.
    Bytes(Vec<u8>),
    /// A table already decoded to Arrow (the pipeline decodes Parquet; operators do not
    /// depend on parquet).
    Batches(Vec<RecordBatch>),
}

impl From<Vec<u8>> for ResourceData {
    fn from(bytes: Vec<u8>) -> Self {
        ResourceData::Bytes(bytes)
    }
}

impl From<Vec<RecordBatch>> for ResourceData {
    fn from(batches: Vec<RecordBatch>) -> Self {
        ResourceData::Batches(batches)
    }
}

/// Why a database or table was refused. The path is always named; none of these is
/// retryable with the same bytes.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ResourceError {
    #[error("{path}: cannot read: {reason}")]
    Read { path: String, reason: String },
    #[error("{path}: not a usable maxmind database: {reason}")]
    Database { path: String, reason: String },
    #[error("{path}: not a usable lookup table: {reason}")]
    Table { path: String, reason: String },
    #[error("{path}: key {key:?} appears twice (data rows {first} and {second})")]
    DuplicateKey {
        path: String,
        key: String,
        first: usize,
        second: usize,
    },
    #[error("{path}: refusing replacement: {reason}")]
    Incompatible { path: String, reason: String },
    #[error("{path}: nothing was loaded from this path, so it cannot be reloaded")]
    UnknownPath { path: String },
}

impl ResourceError {
    pub fn path(&self) -> &str {
        match self {
            ResourceError::Read { path, .. }
            | ResourceError::Database { path, .. }
            | ResourceError::Table { path, .. }
            | ResourceError::DuplicateKey { path, .. }
            | ResourceError::Incompatible { path, .. }
            | ResourceError::UnknownPath { path } => path,
        }
    }
}

/// What a successful load or reload installed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    pub path: String,
    /// `<database_type>@<build_epoch>` of an mmdb, or the first 12 hex digits of a table's
    /// SHA-256.
    pub version: String,
    /// Snapshot generation now current (1 after `load`, +1 per successful reload).
    pub generation: u64,
}

/// A loaded table: every column of the file, and the digest naming its content.
pub(crate) struct Table {
    batch: RecordBatch,
    pub(crate) digest: String,
}

/// A lookup table ready for one [`LookupConfig`]: key → row, and the chosen columns with
/// one extra row at the end holding the defaults (nulls where none is configured).
pub(crate) struct PreparedLookup {
    pub(crate) digest: String,
    pub(crate) index: FxHashMap<String, u32>,
    pub(crate) values: Vec<ArrayRef>,
    pub(crate) missing_row: u32,
}

/// One immutable version of all reference data.
#[derive(Default)]
pub struct Snapshot {
    generation: u64,
    databases: BTreeMap<String, Arc<Mmdb>>,
    tables: BTreeMap<String, Arc<Table>>,
    lookups: BTreeMap<String, Arc<PreparedLookup>>,
    specs: Vec<LookupConfig>,
}

impl fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Snapshot")
            .field("generation", &self.generation)
            .field("versions", &self.versions())
            .finish()
    }
}

impl Snapshot {
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Version of every loaded path.
    pub fn versions(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        for (path, db) in &self.databases {
            out.insert(path.clone(), db.version.clone());
        }
        for (path, table) in &self.tables {
            out.insert(path.clone(), table.digest.clone());
        }
        out
    }

    pub(crate) fn database(&self, path: &str) -> Option<&Arc<Mmdb>> {
        self.databases.get(path)
    }

    pub(crate) fn lookup(&self, spec: &LookupConfig) -> Option<&Arc<PreparedLookup>> {
        self.lookups.get(&spec.spec_id())
    }
}

struct Shared {
    current: RwLock<Arc<Snapshot>>,
    /// Serialises reloads so two timers cannot race a read-modify-swap.
    reloading: Mutex<()>,
    reloads_ok: AtomicU64,
    reloads_failed: AtomicU64,
}

/// Handle on the current reference data. Cloning shares it: every operator built from a
/// `Resources` sees the pipeline's reloads. `Resources::default()` holds nothing (enough
/// for chains without enrich, or enrich with only `derive`).
#[derive(Clone)]
pub struct Resources {
    shared: Arc<Shared>,
}

impl Default for Resources {
    fn default() -> Self {
        Resources::from_snapshot(Snapshot::default())
    }
}

impl fmt::Debug for Resources {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Resources").field(&self.current()).finish()
    }
}

impl Resources {
    fn from_snapshot(snapshot: Snapshot) -> Self {
        Resources {
            shared: Arc::new(Shared {
                current: RwLock::new(Arc::new(snapshot)),
                reloading: Mutex::new(()),
                reloads_ok: AtomicU64::new(0),
                reloads_failed: AtomicU64::new(0),
            }),
        }
    }

    /// Reads and validates every database and table the given configs name. `read` does
    /// the I/O (file, object store) and returns the bytes, or decoded batches for Parquet;
    /// each distinct path is read once. Fails on the first unreadable or invalid resource,
    /// so a bad file stops the pipeline at start rather than producing nulls.
    pub fn load(
        configs: &[&EnrichConfig],
        read: &dyn Fn(&str) -> Result<ResourceData, String>,
    ) -> Result<Resources, ResourceError> {
        let fetch = |path: &str| {
            read(path).map_err(|reason| ResourceError::Read {
                path: path.to_owned(),
                reason,
            })
        };
        let mut snapshot = Snapshot {
            generation: 1,
            ..Snapshot::default()
        };
        for config in configs {
            for mmdb in [&config.geoip, &config.asn].into_iter().flatten() {
                if snapshot.databases.contains_key(&mmdb.database) {
                    continue;
                }
                let bytes = match fetch(&mmdb.database)? {
                    ResourceData::Bytes(bytes) => bytes,
                    ResourceData::Batches(_) => {
                        return Err(ResourceError::Database {
                            path: mmdb.database.clone(),
                            reason: "expected file bytes, got record batches".to_owned(),
                        });
                    }
                };
                let db = Mmdb::parse(&mmdb.database, bytes)?;
                snapshot
                    .databases
                    .insert(mmdb.database.clone(), Arc::new(db));
            }
            for lookup in &config.lookup {
                if !snapshot.tables.contains_key(&lookup.path) {
                    let table = Table::parse(&lookup.path, fetch(&lookup.path)?)?;
                    snapshot.tables.insert(lookup.path.clone(), Arc::new(table));
                }
                if !snapshot.specs.contains(lookup) {
                    let prepared = prepare(lookup, &snapshot.tables[&lookup.path])?;
                    snapshot
                        .lookups
                        .insert(lookup.spec_id(), Arc::new(prepared));
                    snapshot.specs.push(lookup.clone());
                }
            }
        }
        Ok(Resources::from_snapshot(snapshot))
    }

    /// The snapshot to use for one batch.
    pub fn current(&self) -> Arc<Snapshot> {
        // A poisoned lock only means a reloading thread panicked after the swap or before
        // it; the snapshot behind it is complete either way.
        let guard = self
            .shared
            .current
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        Arc::clone(&guard)
    }

    /// Every path loaded, for the pipeline to watch (mtime, ETag, or periodic re-read).
    pub fn paths(&self) -> Vec<String> {
        let snapshot = self.current();
        let mut paths: BTreeSet<String> = snapshot.databases.keys().cloned().collect();
        paths.extend(snapshot.tables.keys().cloned());
        paths.into_iter().collect()
    }

    /// Version of every loaded path (for logs and `/status`).
    pub fn versions(&self) -> BTreeMap<String, String> {
        self.current().versions()
    }

    /// Replaces the resource loaded from `path` with `data`, as one atomic swap.
    ///
    /// The replacement is parsed and validated first (an mmdb must open, answer probe
    /// lookups and stay of the same family, ASN or not; a table must keep the columns and types the
    /// operators output and have no duplicate keys). On any failure the current data stays
    /// in place, the failure is counted, and the error says why. Operators pick up the new
    /// snapshot at their next batch.
    pub fn reload(&self, path: &str, data: ResourceData) -> Result<Version, ResourceError> {
        let result = self.try_reload(path, data);
        let counter = if result.is_ok() {
            &self.shared.reloads_ok
        } else {
            &self.shared.reloads_failed
        };
        counter.fetch_add(1, Ordering::Relaxed);
        result
    }

    fn try_reload(&self, path: &str, data: ResourceData) -> Result<Version, ResourceError> {
        let _one_at_a_time = self
            .shared
            .reloading
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let old = self.current();
        let mut next = Snapshot {
            generation: old.generation + 1,
            databases: old.databases.clone(),
            tables: old.tables.clone(),
            lookups: old.lookups.clone(),
            specs: old.specs.clone(),
        };
        let version = if let Some(current) = old.databases.get(path) {
            let bytes = match data {
                ResourceData::Bytes(bytes) => bytes,
                ResourceData::Batches(_) => {
                    return Err(ResourceError::Database {
                        path: path.to_owned(),
                        reason: "expected file bytes, got record batches".to_owned(),
                    });
                }
            };
            let db = Mmdb::parse(path, bytes)?;
            let is_asn = |t: &str| t.to_ascii_lowercase().contains("asn");
            if is_asn(&db.database_type) != is_asn(&current.database_type) {
                return Err(ResourceError::Incompatible {
                    path: path.to_owned(),
                    reason: format!(
                        "database type changed from {:?} to {:?}",
                        current.database_type, db.database_type
                    ),
                });
            }
            let version = db.version.clone();
            next.databases.insert(path.to_owned(), Arc::new(db));
            version
        } else if old.tables.contains_key(path) {
            let table = Table::parse(path, data)?;
            for spec in old.specs.iter().filter(|spec| spec.path == path) {
                let prepared = prepare(spec, &table)?;
                let before = &old.lookups[&spec.spec_id()];
                for ((column, now), was) in spec
                    .columns
                    .iter()
                    .zip(&prepared.values)
                    .zip(&before.values)
                {
                    if now.data_type() != was.data_type() {
                        return Err(ResourceError::Incompatible {
                            path: path.to_owned(),
                            reason: format!(
                                "column {column:?} changed type from {} to {}",
                                was.data_type(),
                                now.data_type()
                            ),
                        });
                    }
                }
                next.lookups.insert(spec.spec_id(), Arc::new(prepared));
            }
            let version = table.digest.clone();
            next.tables.insert(path.to_owned(), Arc::new(table));
            version
        } else {
            return Err(ResourceError::UnknownPath {
                path: path.to_owned(),
            });
        };
        let generation = next.generation;
        *self
            .shared
            .current
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(next);
        Ok(Version {
            path: path.to_owned(),
            version,
            generation,
        })
    }

    /// Reload outcomes since this `Resources` was loaded, and the current generation.
    pub fn metrics(&self) -> Vec<Metric> {
        vec![
            Metric::new(
                "enrich_resource_reloads_total",
                &[("result", "ok")],
                self.shared.reloads_ok.load(Ordering::Relaxed),
            ),
            Metric::new(
                "enrich_resource_reloads_total",
                &[("result", "error")],
                self.shared.reloads_failed.load(Ordering::Relaxed),
            ),
            Metric::new("enrich_resource_generation", &[], self.current().generation),
        ]
    }
}

fn short_digest(hasher: Sha256) -> String {
    let digest = hasher.finalize();
    let mut text = hex::encode(&digest[..]);
    text.truncate(12);
    text
}

impl Table {
    fn parse(path: &str, data: ResourceData) -> Result<Table, ResourceError> {
        let bad = |reason: String| ResourceError::Table {
            path: path.to_owned(),
            reason,
        };
        let (batch, digest) = match data {
            ResourceData::Bytes(bytes) => {
                let lower = path.to_ascii_lowercase();
                if lower.ends_with(".parquet") || bytes.starts_with(b"PAR1") {
                    return Err(bad(
                        "parquet tables must be decoded by the pipeline and passed as record batches"
                            .to_owned(),
                    ));
                }
                let mut hasher = Sha256::new();
                hasher.update(&bytes);
                (parse_csv(&bytes).map_err(bad)?, short_digest(hasher))
            }
            ResourceData::Batches(batches) => {
                let Some(first) = batches.first() else {
                    return Err(bad("no record batches".to_owned()));
                };
                let schema = first.schema();
                let batch = arrow_select::concat::concat_batches(&schema, &batches)
                    .map_err(|e| bad(format!("batches do not share one schema: {e}")))?;
                let digest = digest_batch(&batch).map_err(bad)?;
                (batch, digest)
            }
        };
        Ok(Table { batch, digest })
    }
}

/// Every column is read as text: a table of zone names or postal codes must not have
/// `00501` turned into 501 by type inference.
fn parse_csv(bytes: &[u8]) -> Result<RecordBatch, String> {
    let format = arrow_csv::reader::Format::default().with_header(true);
    let (inferred, _) = format
        .infer_schema(Cursor::new(bytes), Some(1))
        .map_err(|e| format!("csv header: {e}"))?;
    let mut names = BTreeSet::new();
    let mut fields = Vec::new();
    for field in inferred.fields() {
        if field.name().is_empty() {
            return Err("csv header has an empty column name".to_owned());
        }
        if !names.insert(field.name().clone()) {
            return Err(format!("csv header names {:?} twice", field.name()));
        }
        fields.push(Field::new(field.name(), DataType::Utf8, true));
    }
    if fields.is_empty() {
        return Err("csv has no header row".to_owned());
    }
    let schema = Arc::new(Schema::new(fields));
    let reader = arrow_csv::ReaderBuilder::new(schema.clone())
        .with_format(format)
        .with_batch_size(8192)
        .build(Cursor::new(bytes))
        .map_err(|e| format!("csv: {e}"))?;
    let batches = reader
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("csv: {e}"))?;
    arrow_select::concat::concat_batches(&schema, &batches).map_err(|e| format!("csv: {e}"))
}

/// Digest of a decoded table: schema, then every value as displayed text, with explicit
/// separators and null markers, so equal tables give equal digests whatever their batching.
fn digest_batch(batch: &RecordBatch) -> Result<String, String> {
    let mut hasher = Sha256::new();
    let options = FormatOptions::default().with_null("\u{0}null");
    for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
        hasher.update(field.name().as_bytes());
        hasher.update(b"\x1e");
        hasher.update(field.data_type().to_string().as_bytes());
        hasher.update(b"\x1d");
        let formatter = ArrayFormatter::try_new(column.as_ref(), &options)
            .map_err(|e| format!("column {:?}: {e}", field.name()))?;
        for row in 0..column.len() {
            hasher.update(formatter.value(row).to_string().as_bytes());
            hasher.update(b"\x1f");
        }
    }
    Ok(short_digest(hasher))
}

/// Separator of composite key parts (ASCII unit separator, absent from real keys).
pub(crate) const KEY_SEPARATOR: char = '\u{1f}';

/// Values of `columns` as text (nulls stay null), for building and probing key indexes.
pub(crate) fn as_text(column: &ArrayRef) -> Result<ArrayRef, String> {
    if column.data_type() == &DataType::Utf8 {
        return Ok(column.clone());
    }
    arrow_cast::cast(column.as_ref(), &DataType::Utf8)
        .map_err(|e| format!("cannot use {} as a key: {e}", column.data_type()))
}

fn prepare(spec: &LookupConfig, table: &Table) -> Result<PreparedLookup, ResourceError> {
    let path = spec.path.as_str();
    let bad = |reason: String| ResourceError::Table {
        path: path.to_owned(),
        reason,
    };
    let schema = table.batch.schema();
    let column = |name: &str| {
        schema
            .index_of(name)
            .map(|i| table.batch.column(i).clone())
            .map_err(|_| {
                let available: Vec<&str> =
                    schema.fields().iter().map(|f| f.name().as_str()).collect();
                bad(format!(
                    "no column {name:?} (columns: {})",
                    available.join(", ")
                ))
            })
    };
    let mut keys = Vec::new();
    for name in spec.table_key() {
        let text = as_text(&column(name)?).map_err(&bad)?;
        keys.push(text);
    }
    let keys: Vec<&StringArray> = keys
        .iter()
        .map(|k| {
            k.as_any()
                .downcast_ref::<StringArray>()
                .expect("cast to utf8")
        })
        .collect();
    let rows = table.batch.num_rows();
    let missing_row = u32::try_from(rows)
        .ok()
        .filter(|&r| r < u32::MAX)
        .ok_or_else(|| bad(format!("{rows} rows is too many")))?;
    let mut index: FxHashMap<String, u32> = FxHashMap::default();
    index.reserve(rows);
    let mut key = String::new();
    'rows: for row in 0..rows {
        key.clear();
        for (i, part) in keys.iter().enumerate() {
            if part.is_null(row) {
                continue 'rows;
            }
            if i > 0 {
                key.push(KEY_SEPARATOR);
            }
            key.push_str(part.value(row));
        }
        if let Some(&first) = index.get(key.as_str()) {
            return Err(ResourceError::DuplicateKey {
                path: path.to_owned(),
                key: key.replace(KEY_SEPARATOR, ","),
                first: first as usize + 1,
                second: row + 1,
            });
        }
        index.insert(key.clone(), row as u32);
    }
    let mut values = Vec::new();
    for name in &spec.columns {
        let values_column = column(name)?;
        let data_type = values_column.data_type().clone();
        let default_row: ArrayRef = match spec.default.get(name) {
            Some(text) => {
                let literal: ArrayRef = Arc::new(StringArray::from(vec![text.as_str()]));
                let options = CastOptions {
                    safe: false,
                    ..CastOptions::default()
                };
                cast_with_options(&literal, &data_type, &options).map_err(|e| {
                    bad(format!(
                        "default {text:?} for column {name:?} is not a {data_type}: {e}"
                    ))
                })?
            }
            None => new_null_array(&data_type, 1),
        };
        let with_default =
            arrow_select::concat::concat(&[values_column.as_ref(), default_row.as_ref()])
                .map_err(|e| bad(format!("column {name:?}: {e}")))?;
        values.push(with_default);
    }
    Ok(PreparedLookup {
        digest: table.digest.clone(),
        index,
        values,
        missing_row,
    })
}
