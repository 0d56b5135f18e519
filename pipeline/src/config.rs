//! `weir.toml`: parsing, `${ENV}` interpolation and validation without I/O.
//!
//! Every key, its default and its meaning is documented in the README's config reference;
//! the doc comments here are the source of truth for it. Unknown keys are refused
//! (`deny_unknown_fields`) so a typo never silently falls back to a default.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::Duration;

use arrow::datatypes::SchemaRef;
use serde::{Deserialize, Deserializer, Serialize};
use sha2::{Digest, Sha256};
use thiserror::Error;
use weir_operators::{OperatorConfig, OperatorSpec};
use weir_schemas::{DatasetSchema, UnknownFields};

/// A config problem, naming the key at fault.
#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "config key {key} (line {line}): environment variable {name} is not set; \
         set it, or give a default with ${{{name}:-value}}"
    )]
    MissingEnv {
        name: String,
        key: String,
        line: usize,
    },
    #[error("config: {0}")]
    Parse(String),
    #[error("config key {key}: {reason}")]
    Invalid { key: String, reason: String },
}

fn invalid(key: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        reason: reason.into(),
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub kafka: KafkaConfig,
    #[serde(default)]
    pub storage: StorageConfig,
    #[serde(default)]
    pub commit: CommitConfig,
    #[serde(default)]
    pub batch: BatchConfig,
    #[serde(default)]
    pub parquet: ParquetConfig,
    #[serde(default)]
    pub dead_letter: DeadLetterConfig,
    #[serde(default)]
    pub delta: DeltaConfig,
    #[serde(default)]
    pub shutdown: ShutdownConfig,
    #[serde(default)]
    pub metrics: MetricsConfig,
    #[serde(default)]
    pub health: HealthConfig,
    #[serde(default)]
    pub reference: ReferenceConfig,
    #[serde(default)]
    pub memory: MemoryConfig,
    #[serde(default)]
    pub event_time: EventTimeConfig,
    #[serde(default)]
    pub compaction: CompactionConfig,
    #[serde(default)]
    pub retention: RetentionConfig,
    #[serde(default)]
    pub backfill: BackfillConfig,
    #[serde(default)]
    pub datasets: Vec<DatasetConfig>,
}

/// `weir backfill`: how it reaches an archive source.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackfillConfig {
    /// Credentials and settings of the archive store (`--source <URL>`), with the keys of
    /// `[storage.options]`. Default: `[storage.options]`.
    #[serde(default)]
    pub source_options: Option<std::collections::BTreeMap<String, String>>,
}

/// `weir compact`: what it merges and how it writes.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompactionConfig {
    /// Hours that ended at least this long ago are compacted (`--min-age` overrides it).
    /// Default `1h`.
    #[serde(default = "default_compaction_min_age", with = "humantime_serde")]
    pub min_age: Duration,
    /// Size of the files compaction writes; files under half of it are merged. Default
    /// `256MiB`.
    #[serde(default = "default_target_file_size", deserialize_with = "de_bytes")]
    pub target_file_size: u64,
    /// zstd level of compacted files, 1..=22. Default 6.
    #[serde(default = "default_compaction_zstd_level")]
    pub zstd_level: i32,
    /// Columns whose compacted column chunks get a bloom filter (where the dataset has
    /// them), e.g. `["RayID", "ClientIP"]`. Default none.
    #[serde(default)]
    pub bloom_filter_columns: Vec<String>,
}

fn default_compaction_min_age() -> Duration {
    Duration::from_secs(3600)
}
fn default_target_file_size() -> u64 {
    256 << 20
}
fn default_compaction_zstd_level() -> i32 {
    6
}

impl Default for CompactionConfig {
    fn default() -> Self {
        CompactionConfig {
            min_age: default_compaction_min_age(),
            target_file_size: default_target_file_size(),
            zstd_level: default_compaction_zstd_level(),
            bloom_filter_columns: Vec::new(),
        }
    }
}

/// `weir vacuum`: how long replaced and expired files are kept.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionConfig {
    /// Files taken out of the table are deleted only this long after, so queries that
    /// planned with them can finish (`--grace` overrides it). Default `1h`.
    #[serde(default = "default_retention_grace", with = "humantime_serde")]
    pub grace: Duration,
}

fn default_retention_grace() -> Duration {
    Duration::from_secs(3600)
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            grace: default_retention_grace(),
        }
    }
}

/// Bounds on the event time that places each row in its Hive hour.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventTimeConfig {
    /// A row whose event time is more than this ahead of the wall clock, when its batch is
    /// processed, goes to the dead letters (`invalid_event_time`) instead of the table.
    /// Default `1h`.
    #[serde(default = "default_max_future", with = "humantime_serde")]
    pub max_future: Duration,
    /// At most this many hours of a partition's open commit have a Parquet writer (each
    /// costs its codec contexts, ~40 MiB for http_requests); rows of further hours wait as
    /// Arrow data until the commit. Default: what the partition's share of `memory.limit`
    /// for open files pays for, at least 1.
    #[serde(default)]
    pub max_open_hours: Option<usize>,
}

fn default_max_future() -> Duration {
    Duration::from_secs(3600)
}

impl Default for EventTimeConfig {
    fn default() -> Self {
        EventTimeConfig {
            max_future: default_max_future(),
            max_open_hours: None,
        }
    }
}

/// Dataset names that are tables of Weir's own in `weir query`.
pub const RESERVED_DATASET_NAMES: [&str; 2] = ["dead_letter", "commits"];

/// Top-level column names Weir adds to rows, with what adds them. A schema may not have a
/// field of these names (compared without regard to case, as DuckDB and Spark compare
/// column names), and an operator chain may not output `date` or `hour`.
pub const RESERVED_COLUMNS: [(&str, &str); 6] = [
    ("date", "the Hive partition column of the lake layout"),
    ("hour", "the Hive partition column of the lake layout"),
    (
        weir_operators::sample::RATE_COLUMN,
        "written by the sample operator",
    ),
    (
        weir_operators::sample::TH_COLUMN,
        "written by the sample operator",
    ),
    (
        weir_operators::enrich::VERSION_COLUMN,
        "written by the enrich operator",
    ),
    (
        weir_schemas::EXTRA_COLUMN,
        "holds the unknown fields with unknown_fields = \"extra\"",
    ),
];

/// The Hive partition columns, which no column of a chain's output may be named.
pub const PARTITION_COLUMNS: [&str; 2] = ["date", "hour"];

/// The reserved name `name` collides with, if any.
pub fn reserved_column(name: &str) -> Option<(&'static str, &'static str)> {
    RESERVED_COLUMNS
        .iter()
        .find(|(reserved, _)| reserved.eq_ignore_ascii_case(name))
        .copied()
}

/// Refuses an operator chain output with a column named like a partition column.
pub fn check_output_columns(dataset: &str, schema: &SchemaRef) -> Result<(), String> {
    for field in schema.fields() {
        if let Some(partition) = PARTITION_COLUMNS
            .iter()
            .find(|p| p.eq_ignore_ascii_case(field.name()))
        {
            return Err(format!(
                "dataset {dataset}: the operator chain outputs a column {} that collides with \
                 the Hive partition column {partition}; rename it",
                field.name()
            ));
        }
    }
    Ok(())
}

/// The memory weir plans its buffers around.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemoryConfig {
    /// Resident memory the process stays under. Weir sizes the Kafka prefetch queues and
    /// commits a partition early when the open files of all partitions would pass their
    /// share; see `memory::Budget`. Default `512MiB`.
    #[serde(default = "default_memory_limit", deserialize_with = "de_bytes")]
    pub limit: u64,
}

fn default_memory_limit() -> u64 {
    512 << 20
}

impl Default for MemoryConfig {
    fn default() -> Self {
        MemoryConfig {
            limit: default_memory_limit(),
        }
    }
}

/// Reference data of the enrich operators (mmdb databases, lookup tables).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReferenceConfig {
    /// How often changed reference files are looked for and swapped in; `0s` turns
    /// reloading off. Default `60s`.
    #[serde(default = "default_reload_interval", with = "humantime_serde")]
    pub reload_interval: Duration,
}

fn default_reload_interval() -> Duration {
    crate::reference::DEFAULT_RELOAD_INTERVAL
}

impl Default for ReferenceConfig {
    fn default() -> Self {
        ReferenceConfig {
            reload_interval: default_reload_interval(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// `bootstrap.servers`: comma-separated `host:port` list. Required.
    pub brokers: String,
    /// Consumer group id. Default `weir`.
    #[serde(default = "default_group_id")]
    pub group_id: String,
    /// Where a partition with no ledger history starts: `earliest` (default) or `latest`.
    #[serde(default)]
    pub start_from: StartFrom,
    /// What happens when a partition's ledger position is no longer on the broker
    /// (retention deleted it, the topic was recreated, offsets were reset): `record`
    /// (default) or `fail`.
    #[serde(default)]
    pub on_offset_gap: OnOffsetGap,
    /// Passed to librdkafka as is (e.g. `"security.protocol" = "SASL_SSL"`). The keys Weir
    /// manages itself (`group.id`, `bootstrap.servers`, `enable.auto.commit`,
    /// `enable.auto.offset.store`, `auto.offset.reset`, `enable.partition.eof`) are
    /// refused; Weir's defaults for others (`partition.assignment.strategy`,
    /// `queued.max.messages.kbytes`, ...) give way to the table.
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
}

fn default_group_id() -> String {
    "weir".to_owned()
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StartFrom {
    #[default]
    Earliest,
    Latest,
}

/// `kafka.on_offset_gap`: what a partition does when the broker no longer has the offset
/// its ledger resumes from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnOffsetGap {
    /// Resume at the earliest offset the broker still has; the next ledger entry counts the
    /// offsets that were never read in `skipped_offsets`, and so does
    /// `weir_skipped_offsets_total`.
    #[default]
    Record,
    /// Stop the process with an error naming the topic, partition and offsets.
    Fail,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    /// Lake root: `file:///path` (default `file://./weir-lake`), a plain path, `memory://`,
    /// `s3://bucket/prefix`, `gs://bucket/prefix`, `az://container/prefix`.
    #[serde(default = "default_storage_url")]
    pub url: String,
    /// object_store's own option keys (`aws_endpoint`, `aws_allow_http`, `aws_region`,
    /// `aws_access_key_id`, `aws_secret_access_key`, `google_service_account`, ...). For
    /// `s3://` the standard `AWS_*` environment variables fill any key not given here.
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    /// Files at least this large are uploaded in parts (multipart). Default `8MiB`.
    #[serde(default = "default_multipart_threshold", deserialize_with = "de_bytes")]
    pub multipart_threshold: u64,
}

fn default_multipart_threshold() -> u64 {
    8 << 20
}

fn default_storage_url() -> String {
    "file://./weir-lake".to_owned()
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            url: default_storage_url(),
            options: BTreeMap::new(),
            multipart_threshold: default_multipart_threshold(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommitConfig {
    /// Longest time between ledger commits of a partition: the bound on produce→queryable
    /// latency. Default `10s`.
    #[serde(default = "default_commit_interval", with = "humantime_serde")]
    pub interval: Duration,
    /// A partition commits early once its open files hold this many (compressed) bytes.
    /// Bounds memory per partition. Default `64MiB`.
    #[serde(default = "default_commit_max_bytes", deserialize_with = "de_bytes")]
    pub max_bytes: u64,
    /// Every this many ledger entries a checkpoint is written. Default 100.
    #[serde(default = "default_checkpoint_every")]
    pub checkpoint_every: u64,
}

fn default_commit_interval() -> Duration {
    Duration::from_secs(10)
}
fn default_commit_max_bytes() -> u64 {
    64 << 20
}
fn default_checkpoint_every() -> u64 {
    100
}

impl Default for CommitConfig {
    fn default() -> Self {
        CommitConfig {
            interval: default_commit_interval(),
            max_bytes: default_commit_max_bytes(),
            checkpoint_every: default_checkpoint_every(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchConfig {
    /// Records per decoded batch. Default 8192.
    #[serde(default = "default_batch_rows")]
    pub max_rows: usize,
    /// Longest wait to fill a batch. Default `100ms`.
    #[serde(default = "default_batch_wait", with = "humantime_serde")]
    pub max_wait: Duration,
}

fn default_batch_rows() -> usize {
    8192
}
fn default_batch_wait() -> Duration {
    Duration::from_millis(100)
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            max_rows: default_batch_rows(),
            max_wait: default_batch_wait(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParquetConfig {
    /// zstd level 1..=22. Default 1: ingest writes for speed, compaction for size.
    #[serde(default = "default_zstd_level")]
    pub zstd_level: i32,
    /// Rows per row group. Default 131072.
    #[serde(default = "default_row_group_rows")]
    pub row_group_rows: usize,
    /// Unit of the timestamp columns in the files. Default `micros`, which every reader
    /// takes (Spark refuses `TIMESTAMP(NANOS)`, and Delta Lake has no nanosecond type).
    #[serde(default)]
    pub timestamp_unit: TimestampUnit,
    /// Which columns get a dictionary. Default `auto`: measured per column (see
    /// `sink::parquet::columns`).
    #[serde(default)]
    pub dictionary: ParquetDictionary,
    /// Statistics in the files. Default `chunk`: min/max per column chunk, no page index.
    #[serde(default)]
    pub statistics: ParquetStatistics,
}

/// `parquet.dictionary`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ParquetDictionary {
    /// Measured on the first batch of a writer: a dictionary for columns whose values
    /// repeat; integers and timestamps whose values do not are delta-encoded, other such
    /// columns written plain.
    #[default]
    Auto,
    /// A dictionary on every column (the Parquet writer's default).
    Always,
}

/// `parquet.statistics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ParquetStatistics {
    /// Min, max and null count per column chunk.
    #[default]
    Chunk,
    /// Per page too, with a page index (more to write; finer pruning for readers).
    Page,
}

/// How timestamp columns are stored in Parquet. Rows are decoded and bucketed into hours
/// with nanosecond event times either way; only the written files differ.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TimestampUnit {
    /// `TIMESTAMP(MICROS, UTC)`: read by Spark, Trino, DuckDB, pyarrow, Polars and Delta
    /// Lake. Sub-microsecond digits are dropped.
    #[default]
    Micros,
    /// `TIMESTAMP(NANOS, UTC)`: full precision for readers that take it (not Spark, not
    /// Delta Lake).
    Nanos,
}

fn default_zstd_level() -> i32 {
    1
}
fn default_row_group_rows() -> usize {
    128 * 1024
}

impl Default for ParquetConfig {
    fn default() -> Self {
        ParquetConfig {
            zstd_level: default_zstd_level(),
            row_group_rows: default_row_group_rows(),
            timestamp_unit: TimestampUnit::default(),
            dictionary: ParquetDictionary::default(),
            statistics: ParquetStatistics::default(),
        }
    }
}

/// Publishing each dataset's committed files as a Delta Lake table (see `crate::delta`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeltaConfig {
    /// Keep `<storage.url>/<dataset>/_delta_log/` in step with the ledger. Default `true`;
    /// off whatever it says when `parquet.timestamp_unit = "nanos"` (Delta Lake has no
    /// nanosecond timestamp).
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// How often `weir run` folds newly committed ledger entries into a Delta commit (and
    /// once more at shutdown). Default `30s`.
    #[serde(default = "default_publish_interval", with = "humantime_serde")]
    pub publish_interval: Duration,
}

fn default_true() -> bool {
    true
}
fn default_publish_interval() -> Duration {
    Duration::from_secs(30)
}

impl Default for DeltaConfig {
    fn default() -> Self {
        DeltaConfig {
            enabled: true,
            publish_interval: default_publish_interval(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeadLetterConfig {
    /// Also produce each dead letter to this Kafka topic (at least once). The lake copy
    /// under `_weir/dead_letter/` is always written, exactly once, with the data commit.
    #[serde(default)]
    pub kafka_topic: Option<String>,
    /// The largest message produced to `kafka_topic`, headers included: a letter whose
    /// bytes do not fit is sent cut to fit, with headers saying so (the lake copy keeps
    /// every byte). Keep it at or below the topic's `max.message.bytes`. Default 1,000,000
    /// bytes (Kafka's default limit is 1,048,588).
    #[serde(
        default = "default_dead_letter_max_message",
        deserialize_with = "de_bytes"
    )]
    pub kafka_max_message_bytes: u64,
}

impl Default for DeadLetterConfig {
    fn default() -> Self {
        DeadLetterConfig {
            kafka_topic: None,
            kafka_max_message_bytes: default_dead_letter_max_message(),
        }
    }
}

fn default_dead_letter_max_message() -> u64 {
    1_000_000
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShutdownConfig {
    /// One deadline for stopping partition workers, counted from the moment they are told
    /// to stop: on SIGTERM (or a fatal error) every worker's final commit must finish within
    /// it, all together, not one after another; on a rebalance, the same bound for the
    /// workers of the revoked partitions. A worker still running at the deadline is
    /// aborted and its open commit abandoned (the partition's next owner removes its files
    /// and redoes the work). Default `30s`.
    #[serde(default = "default_shutdown_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

fn default_shutdown_timeout() -> Duration {
    Duration::from_secs(30)
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        ShutdownConfig {
            timeout: default_shutdown_timeout(),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// `host:port` for `GET /metrics` (Prometheus text), `GET /healthz` and `GET /livez`.
    /// Off by default, and when empty (`listen = "${WEIR_METRICS_LISTEN}"` with the
    /// variable set to nothing).
    #[serde(default)]
    pub listen: Option<String>,
}

impl MetricsConfig {
    /// The address to serve on, if any.
    pub fn address(&self) -> Option<&str> {
        self.listen
            .as_deref()
            .filter(|addr| !addr.trim().is_empty())
    }
}

/// What `/livez` (on `metrics.listen`) checks.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthConfig {
    /// `/livez` fails when partitions had records waiting and none made progress (a batch
    /// processed, a commit, a retry of a failing dependency) for this long. Default `5m`.
    #[serde(default = "default_stall_timeout", with = "humantime_serde")]
    pub stall_timeout: Duration,
}

fn default_stall_timeout() -> Duration {
    Duration::from_secs(300)
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            stall_timeout: default_stall_timeout(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetConfig {
    /// Table name and lake folder. `[a-z0-9_]+`. Required.
    pub name: String,
    /// Kafka topic. Required.
    pub topic: String,
    /// Built-in schema name or a path to a schema file. Default: the dataset name.
    #[serde(default)]
    pub schema: Option<String>,
    /// JSON fields the schema does not name: `drop` (default) or `extra` (one `_extra`
    /// JSON column).
    #[serde(default)]
    pub unknown_fields: UnknownFields,
    /// Records larger than this go to dead letters. Default `1MiB`.
    #[serde(default = "default_max_record_bytes", deserialize_with = "de_bytes")]
    pub max_record_bytes: u64,
    /// The operator chain, in order. Each may have a `name` (default: its type); state is
    /// kept under the type and name.
    #[serde(default)]
    pub operators: Vec<OperatorSpec>,
    /// Whole hours that ended longer ago than this are removed by `weir vacuum`, and so are
    /// dead letters written to the lake longer ago than this. Default: kept forever.
    #[serde(default, with = "humantime_serde")]
    pub retention: Option<Duration>,
}

fn default_max_record_bytes() -> u64 {
    1 << 20
}

/// Accepts `1048576`, `"1048576"`, `"512KiB"`, `"64MiB"`, `"1GiB"`, `"10MB"`.
fn de_bytes<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Int(i64),
        Float(f64),
        Text(String),
    }
    match Raw::deserialize(d)? {
        Raw::Int(n) => u64::try_from(n)
            .map_err(|_| serde::de::Error::custom(format!("{n} is not a byte size: negative"))),
        Raw::Float(f) => Err(serde::de::Error::custom(format!(
            "{f} is not a byte size: a whole number of bytes, or a string such as \"64MiB\""
        ))),
        Raw::Text(s) => parse_bytes(&s).map_err(serde::de::Error::custom),
    }
}

pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{text:?} is not a byte size (e.g. 64MiB)"))?;
    let mult = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1000,
        "kib" | "k" => 1 << 10,
        "mb" => 1000 * 1000,
        "mib" | "m" => 1 << 20,
        "gb" => 1000 * 1000 * 1000,
        "gib" | "g" => 1 << 30,
        other => return Err(format!("unknown byte unit {other:?} in {text:?}")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("{text:?} is too large a byte size"))
}

/// Replaces `${NAME}` with the environment variable's value, and `${NAME:-default}` with
/// the value or, when `NAME` is unset or empty, `default`. `$${` escapes a literal `${`.
/// Whole-line comments are left as they are. An unset variable without a default is an
/// error naming it and the config key it stands in (as far as a line scan can tell).
pub fn interpolate_env(
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<String, ConfigError> {
    let mut out = String::with_capacity(text.len());
    let mut keys = KeyTracker::default();
    for (index, line) in text.split_inclusive('\n').enumerate() {
        let trimmed = line.trim_start();
        if trimmed.starts_with('#') {
            out.push_str(line);
            continue;
        }
        keys.see(trimmed);
        interpolate_line(line, env, &mut out).map_err(|missing| match missing {
            Missing::Variable(name) => ConfigError::MissingEnv {
                name,
                key: keys.current(),
                line: index + 1,
            },
            Missing::Brace => ConfigError::Parse(format!(
                "line {}: ${{ without a closing }} (write $${{ for a literal ${{)",
                index + 1
            )),
        })?;
    }
    Ok(out)
}

enum Missing {
    Variable(String),
    Brace,
}

fn interpolate_line(
    line: &str,
    env: &dyn Fn(&str) -> Option<String>,
    out: &mut String,
) -> Result<(), Missing> {
    let mut rest = line;
    while let Some(pos) = rest.find("${") {
        if pos > 0 && rest.as_bytes()[pos - 1] == b'$' {
            out.push_str(&rest[..pos - 1]);
            out.push_str("${");
            rest = &rest[pos + 2..];
            continue;
        }
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 2..];
        let end = after.find('}').ok_or(Missing::Brace)?;
        let (name, default) = match after[..end].split_once(":-") {
            Some((name, default)) => (name, Some(default)),
            None => (&after[..end], None),
        };
        let value = match (
            env(name).filter(|v| !v.is_empty() || default.is_none()),
            default,
        ) {
            (Some(v), _) => v,
            (None, Some(d)) => d.to_owned(),
            (None, None) => return Err(Missing::Variable(name.to_owned())),
        };
        out.push_str(&value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(())
}

/// Follows table headers and `key =` lines, to name the key a line belongs to in errors:
/// `datasets[1].operators[0].rate`. A line scan, not a TOML parser: inline tables and
/// dotted keys are named by their first key.
#[derive(Default)]
struct KeyTracker {
    /// The current table's path, with an index for each array-of-tables element.
    table: String,
    /// How many elements each array of tables has had so far, by its path.
    elements: HashMap<String, usize>,
    key: Option<String>,
}

impl KeyTracker {
    fn see(&mut self, line: &str) {
        let line = line.trim_end();
        if let Some(name) = line
            .strip_prefix("[[")
            .and_then(|l| l.split_once("]]"))
            .map(|(name, _)| name)
        {
            let name = name.trim();
            // Nested arrays (`[[datasets.operators]]`) belong to the parent's newest element.
            let (parent, last) = match name.rsplit_once('.') {
                Some((parent, last)) => (self.element_path(parent), last),
                None => (String::new(), name),
            };
            let array = if parent.is_empty() {
                last.to_owned()
            } else {
                format!("{parent}.{last}")
            };
            let count = self.elements.entry(array.clone()).or_insert(0);
            self.table = format!("{array}[{count}]");
            *count += 1;
            self.key = None;
        } else if let Some(name) = line
            .strip_prefix('[')
            .and_then(|l| l.split_once(']'))
            .map(|(name, _)| name.trim())
            .filter(|name| is_key(name))
        {
            self.table = self.element_path(name);
            self.key = None;
        } else if let Some((key, _)) = line.split_once('=')
            && is_key(key.trim())
        {
            let key = key.trim();
            let unquoted = key.trim_matches(['"', '\'']);
            // Quotes stay where they tell a key with a dot from a dotted key.
            self.key = Some(
                if unquoted.contains('.') {
                    key
                } else {
                    unquoted
                }
                .to_owned(),
            );
        }
    }

    /// `datasets.operators` as it stands now: `datasets[2].operators[0]`.
    fn element_path(&self, dotted: &str) -> String {
        let mut path = String::new();
        for part in dotted.split('.') {
            if !path.is_empty() {
                path.push('.');
            }
            path.push_str(part.trim());
            if let Some(n) = self.elements.get(&path) {
                path = format!("{path}[{}]", n.saturating_sub(1));
            }
        }
        path
    }

    fn current(&self) -> String {
        match (&self.key, self.table.is_empty()) {
            (Some(key), true) => key.clone(),
            (Some(key), false) => format!("{}.{key}", self.table),
            (None, false) => self.table.clone(),
            (None, true) => "(top level)".to_owned(),
        }
    }
}

/// A bare or quoted TOML key (possibly dotted), as opposed to a value line.
fn is_key(text: &str) -> bool {
    let mut rest = text.trim();
    loop {
        let part_len = match rest.chars().next() {
            Some(quote @ ('"' | '\'')) => match rest[1..].find(quote) {
                Some(close) => close + 2,
                None => return false,
            },
            Some(_) => rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
                .unwrap_or(rest.len()),
            None => return false,
        };
        if part_len == 0 {
            return false;
        }
        rest = rest[part_len..].trim_start();
        match rest.strip_prefix('.') {
            Some(next) => rest = next.trim_start(),
            None => return rest.is_empty(),
        }
    }
}

/// A dataset with its schema resolved.
#[derive(Debug, Clone)]
pub struct ResolvedDataset {
    pub config: DatasetConfig,
    pub schema: DatasetSchema,
    /// Arrow schema the decoder produces.
    pub input_schema: SchemaRef,
}

impl Config {
    pub fn storage_multipart_threshold(&self) -> usize {
        self.storage.multipart_threshold as usize
    }

    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Config::parse(&text)
    }

    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let text = interpolate_env(text, &|name| std::env::var(name).ok())?;
        let config: Config =
            toml::from_str(&text).map_err(|e| ConfigError::Parse(e.to_string()))?;
        Ok(config)
    }

    /// Whether Delta Lake publishing is on: `delta.enabled`, and files whose timestamps a
    /// Delta table can describe (`parquet.timestamp_unit = "micros"`).
    pub fn delta_publishing(&self) -> bool {
        self.delta.enabled && self.parquet.timestamp_unit == TimestampUnit::Micros
    }

    /// Checks everything that can be checked without touching the network or the store.
    /// Returns the datasets with their schemas resolved.
    pub fn validate(
        &self,
        secrets: &dyn weir_operators::SecretSource,
    ) -> Result<Vec<ResolvedDataset>, ConfigError> {
        if self.kafka.brokers.trim().is_empty() {
            return Err(invalid("kafka.brokers", "must not be empty"));
        }
        if self.kafka.group_id.trim().is_empty() {
            return Err(invalid("kafka.group_id", "must not be empty"));
        }
        // Keys weir sets itself, after the pass-through properties: refused rather than
        // silently ignored.
        for (key, reason) in [
            (
                "enable.auto.commit",
                "is managed by weir (offsets are committed after the ledger); remove it",
            ),
            (
                "enable.auto.offset.store",
                "is managed by weir (offsets are committed after the ledger); remove it",
            ),
            ("group.id", "is set by kafka.group_id; remove it"),
            ("bootstrap.servers", "is set by kafka.brokers; remove it"),
            (
                "auto.offset.reset",
                "is managed by weir (kafka.start_from sets where a new partition starts, kafka.on_offset_gap what happens when the ledger's position is gone); remove it",
            ),
            (
                "enable.partition.eof",
                "is managed by weir (workers wait for records, not for the end); remove it",
            ),
        ] {
            if self.kafka.properties.contains_key(key) {
                return Err(invalid(format!("kafka.properties.\"{key}\""), reason));
            }
        }
        crate::store::StoreUrl::parse(&self.storage.url)
            .map_err(|reason| invalid("storage.url", reason))?;
        if self.commit.interval < Duration::from_millis(100) {
            return Err(invalid("commit.interval", "must be at least 100ms"));
        }
        if self.health.stall_timeout < Duration::from_secs(10) {
            return Err(invalid("health.stall_timeout", "must be at least 10s"));
        }
        if !(crate::sink::dead_letter_topic::MIN_MESSAGE
            ..=crate::sink::dead_letter_topic::MAX_MESSAGE)
            .contains(&self.dead_letter.kafka_max_message_bytes)
        {
            return Err(invalid(
                "dead_letter.kafka_max_message_bytes",
                format!(
                    "must be between {} and {} bytes",
                    crate::sink::dead_letter_topic::MIN_MESSAGE,
                    crate::sink::dead_letter_topic::MAX_MESSAGE
                ),
            ));
        }
        if self.health.stall_timeout <= self.commit.interval {
            return Err(invalid(
                "health.stall_timeout",
                "must be longer than commit.interval (a partition may show no progress for a whole interval)",
            ));
        }
        if self.commit.max_bytes < (1 << 20) {
            return Err(invalid("commit.max_bytes", "must be at least 1MiB"));
        }
        if self.memory.limit < (128 << 20) {
            return Err(invalid("memory.limit", "must be at least 128MiB"));
        }
        if self.commit.checkpoint_every == 0 {
            return Err(invalid("commit.checkpoint_every", "must be at least 1"));
        }
        if !(1..=22).contains(&self.compaction.zstd_level) {
            return Err(invalid("compaction.zstd_level", "must be between 1 and 22"));
        }
        if self.compaction.target_file_size < (1 << 20) {
            return Err(invalid(
                "compaction.target_file_size",
                "must be at least 1MiB",
            ));
        }
        if self.event_time.max_open_hours == Some(0) {
            return Err(invalid("event_time.max_open_hours", "must be at least 1"));
        }
        if self.batch.max_rows == 0 || self.batch.max_rows > 1 << 20 {
            return Err(invalid("batch.max_rows", "must be between 1 and 1048576"));
        }
        if !(1..=22).contains(&self.parquet.zstd_level) {
            return Err(invalid("parquet.zstd_level", "must be between 1 and 22"));
        }
        if self.parquet.row_group_rows < 1024 {
            return Err(invalid("parquet.row_group_rows", "must be at least 1024"));
        }
        if self.delta.publish_interval < Duration::from_secs(1) {
            return Err(invalid("delta.publish_interval", "must be at least 1s"));
        }
        if self.shutdown.timeout < Duration::from_secs(1) {
            return Err(invalid(
                "shutdown.timeout",
                "must be at least 1s (the final commits must have time to finish)",
            ));
        }
        if let Some(listen) = self.metrics.address() {
            let port = listen
                .rsplit_once(':')
                .map(|(host, port)| (host, port.parse::<u16>()));
            if !matches!(port, Some((host, Ok(_))) if !host.is_empty()) {
                return Err(invalid(
                    "metrics.listen",
                    format!("{listen:?} must be host:port, e.g. \"0.0.0.0:9090\""),
                ));
            }
        }
        if let Some(topic) = &self.dead_letter.kafka_topic {
            if topic.trim().is_empty() {
                return Err(invalid(
                    "dead_letter.kafka_topic",
                    "must not be empty (leave it out to write dead letters to the lake only)",
                ));
            }
            if let Some(ds) = self.datasets.iter().find(|ds| &ds.topic == topic) {
                return Err(invalid(
                    "dead_letter.kafka_topic",
                    format!(
                        "{topic} is the topic of dataset {}: its dead letters would be read \
                         back and refused again",
                        ds.name
                    ),
                ));
            }
        }
        if self.datasets.is_empty() {
            return Err(invalid(
                "datasets",
                "at least one [[datasets]] entry is required",
            ));
        }
        let mut resolved = Vec::with_capacity(self.datasets.len());
        let mut known_outputs = Vec::new();
        let mut all_outputs_known = true;
        let mut names = std::collections::HashSet::new();
        let mut topics = std::collections::HashSet::new();
        for (i, ds) in self.datasets.iter().enumerate() {
            let key = |k: &str| format!("datasets[{i}].{k}");
            if ds.name.is_empty()
                || !ds
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            {
                return Err(invalid(
                    key("name"),
                    format!("{:?} must match [a-z0-9_]+", ds.name),
                ));
            }
            // The lake's own folders (`_weir/`: every dataset's ledger and dead letters)
            // start with `_`: a dataset folder of that name would hold them, and vacuum would
            // take them for the dataset's stray files.
            if ds.name.starts_with('_') {
                return Err(invalid(
                    key("name"),
                    format!(
                        "{:?} starts with _, which is kept for the lake's own folders (_weir/)",
                        ds.name
                    ),
                ));
            }
            if RESERVED_DATASET_NAMES.contains(&ds.name.as_str()) {
                return Err(invalid(
                    key("name"),
                    format!("{} is reserved for a table of weir's own", ds.name),
                ));
            }
            if !names.insert(ds.name.clone()) {
                return Err(invalid(
                    key("name"),
                    format!("dataset {} is defined twice", ds.name),
                ));
            }
            if let Some(r) = ds.retention
                && r < Duration::from_secs(3600)
            {
                return Err(invalid(
                    key("retention"),
                    "must be at least 1h (whole hours are removed)",
                ));
            }
            if ds.topic.is_empty() {
                return Err(invalid(key("topic"), "must not be empty"));
            }
            if !topics.insert(ds.topic.clone()) {
                return Err(invalid(
                    key("topic"),
                    format!("topic {} is used by two datasets", ds.topic),
                ));
            }
            if ds.max_record_bytes == 0 {
                return Err(invalid(key("max_record_bytes"), "must be positive"));
            }
            let schema_ref = ds.schema.clone().unwrap_or_else(|| ds.name.clone());
            let schema = DatasetSchema::resolve(&schema_ref).map_err(|e| match &ds.schema {
                Some(_) => invalid(key("schema"), e.to_string()),
                // The user wrote no schema key: the dataset's name was taken for one.
                None => invalid(
                    key("name"),
                    format!(
                        "dataset {} has no schema key, so its name is read as a built-in \
                         schema: {e}",
                        ds.name
                    ),
                ),
            })?;
            for field in &schema.fields {
                if let Some((reserved, why)) = reserved_column(&field.name) {
                    return Err(invalid(
                        key("schema"),
                        format!(
                            "dataset {}: schema {} has a field {} but {reserved} is reserved \
                             ({why}); rename the field",
                            ds.name, schema.name, field.name
                        ),
                    ));
                }
            }
            weir_operators::config::check_names(&ds.operators).map_err(|(j, e)| {
                invalid(
                    format!("datasets[{i}].operators[{j}].{}", e.key),
                    format!("dataset {}: {}", ds.name, e.reason),
                )
            })?;
            let mut input_schema = schema.arrow_schema(ds.unknown_fields);
            // Whether every operator of the chain could be built here (enrich needs its
            // reference data, which validation does not read).
            let mut output_known = true;
            for (j, op) in ds.operators.iter().enumerate() {
                let op = &op.config;
                op.validate(&input_schema, secrets).map_err(|e| {
                    invalid(format!("datasets[{i}].operators[{j}].{}", e.key), e.reason)
                })?;
                if let OperatorConfig::Redact(redact) = op
                    && let Some(rule) = redact.fields.get(&schema.event_time)
                    && !matches!(
                        rule,
                        weir_operators::redact::FieldRule::Keep
                            | weir_operators::redact::FieldRule::Scan
                    )
                {
                    return Err(invalid(
                        format!("datasets[{i}].operators[{j}].fields.{}", schema.event_time),
                        format!(
                            "dataset {}: {} is the event time, which places each row in its \
                             hour; it can only be kept",
                            ds.name, schema.event_time
                        ),
                    ));
                }
                match next_schema(op, &input_schema, secrets)
                    .map_err(|reason| invalid(format!("datasets[{i}].operators[{j}]"), reason))?
                {
                    Some(next) => input_schema = next,
                    None => output_known = false,
                }
                if input_schema.index_of(&schema.event_time).is_err() {
                    return Err(invalid(
                        format!("datasets[{i}].operators[{j}]"),
                        format!(
                            "dataset {}: the operator removes the event time column {}, \
                             which places each row in its hour",
                            ds.name, schema.event_time
                        ),
                    ));
                }
            }
            check_output_columns(&ds.name, &input_schema)
                .map_err(|reason| invalid(key("operators"), reason))?;
            if output_known {
                known_outputs.push(input_schema.clone());
            } else {
                all_outputs_known = false;
            }
            resolved.push(ResolvedDataset {
                config: ds.clone(),
                input_schema: schema.arrow_schema(ds.unknown_fields),
                schema,
            });
        }
        // A column an operator adds is only known once the chain is built; without every
        // output schema the check is left to `weir compact`.
        if all_outputs_known && let Some(name) = self.bloom_column_no_dataset_has(&known_outputs) {
            return Err(invalid(
                "compaction.bloom_filter_columns",
                format!("no dataset has a column {name}"),
            ));
        }
        Ok(resolved)
    }

    /// The first of `compaction.bloom_filter_columns` that none of the datasets' output
    /// schemas has (validation, and `weir compact` with the chains built).
    pub fn bloom_column_no_dataset_has(&self, outputs: &[SchemaRef]) -> Option<&str> {
        self.compaction
            .bloom_filter_columns
            .iter()
            .find(|name| !outputs.iter().any(|o| o.field_with_name(name).is_ok()))
            .map(String::as_str)
    }

    /// The schema of the rows `ds` lands, from its schema and operator configs alone: no
    /// secrets, no reference data, no validation of the operators. An operator that cannot
    /// be built without them counts as keeping its input's columns. For a table that has no
    /// files yet (`weir query`); the files' footers are the schema after that.
    pub fn declared_output_schema(&self, ds: &DatasetConfig) -> Result<SchemaRef, ConfigError> {
        let schema_ref = ds.schema.clone().unwrap_or_else(|| ds.name.clone());
        let schema = DatasetSchema::resolve(&schema_ref).map_err(|e| {
            let i = self.datasets.iter().position(|d| d.name == ds.name);
            // Without a schema key, the dataset's name was taken for one (as in `validate`).
            let key = if ds.schema.is_some() {
                "schema"
            } else {
                "name"
            };
            invalid(
                format!("datasets[{}].{key}", i.unwrap_or_default()),
                format!("dataset {}: {e}", ds.name),
            )
        })?;
        let mut out = schema.arrow_schema(ds.unknown_fields);
        let secrets = weir_operators::config::StaticSecrets::default();
        for op in &ds.operators {
            if let Ok(Some(next)) = next_schema(&op.config, &out, &secrets) {
                out = next;
            }
        }
        Ok(out)
    }

    /// A stable hash of the config with secrets left out, recorded in Parquet footers.
    pub fn hash(&self) -> String {
        let mut redacted = self.clone();
        redacted
            .storage
            .options
            .retain(|k, _| !k.contains("secret") && !k.contains("key") && !k.contains("token"));
        redacted
            .kafka
            .properties
            .retain(|k, _| !k.contains("password") && !k.contains("secret"));
        let json = serde_json::to_vec(&redacted).unwrap_or_default();
        hex::encode(&Sha256::digest(&json)[..8])
    }
}

/// Schema after `op`, for validating the operators that follow it; `None` when the
/// operator cannot be built without I/O (enrich reads reference files, which
/// `check-config` must not), and the caller then threads its input through unchanged.
fn next_schema(
    op: &OperatorConfig,
    input: &SchemaRef,
    secrets: &dyn weir_operators::SecretSource,
) -> Result<Option<SchemaRef>, String> {
    let resources = weir_operators::enrich::Resources::default();
    let ctx = weir_operators::BuildContext {
        dataset: "check",
        input_schema: input.clone(),
        secrets,
        resources: &resources,
    };
    match op.build(&ctx) {
        Ok(built) => built
            .output_schema(input)
            .map(Some)
            .map_err(|e| e.to_string()),
        Err(_) => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minimal() -> String {
        r#"
[kafka]
brokers = "127.0.0.1:9092"
[[datasets]]
name = "http_requests"
topic = "cf.http_requests"
"#
        .to_owned()
    }

    #[test]
    fn defaults_apply() {
        let c = Config::parse(&minimal()).unwrap();
        assert_eq!(c.kafka.group_id, "weir");
        assert_eq!(c.commit.interval, Duration::from_secs(10));
        assert_eq!(c.batch.max_rows, 8192);
        assert_eq!(c.storage.url, "file://./weir-lake");
        assert_eq!(c.datasets[0].max_record_bytes, 1 << 20);
    }

    #[test]
    fn dead_letter_message_limit_defaults_and_bad_values_are_named() {
        let c = Config::parse(&minimal()).unwrap();
        assert_eq!(c.dead_letter.kafka_max_message_bytes, 1_000_000);
        let text = minimal()
            + "\n[dead_letter]\nkafka_topic = \"dlq\"\nkafka_max_message_bytes = \"512KiB\"\n";
        assert_eq!(
            Config::parse(&text)
                .unwrap()
                .dead_letter
                .kafka_max_message_bytes,
            512 << 10
        );
        for bad in ["\"1KiB\"", "\"1GiB\""] {
            let text = minimal() + &format!("\n[dead_letter]\nkafka_max_message_bytes = {bad}\n");
            let err = Config::parse(&text)
                .unwrap()
                .validate(&weir_operators::config::StaticSecrets::default())
                .unwrap_err()
                .to_string();
            assert!(err.contains("dead_letter.kafka_max_message_bytes"), "{err}");
        }
    }

    #[test]
    fn unknown_key_is_named() {
        let text = minimal() + "\n[commit]\nintervall = \"5s\"\n";
        let err = Config::parse(&text).unwrap_err().to_string();
        assert!(err.contains("intervall"), "{err}");
    }

    #[test]
    fn parquet_dictionary_and_statistics_default_and_bad_values_are_named() {
        let parquet = Config::parse(&minimal()).unwrap().parquet;
        assert_eq!(parquet.dictionary, ParquetDictionary::Auto);
        assert_eq!(parquet.statistics, ParquetStatistics::Chunk);
        let with =
            |keys: &str| minimal().replace("[kafka]", &format!("[parquet]\n{keys}\n[kafka]"));
        let parquet = Config::parse(&with("dictionary = \"always\"\nstatistics = \"page\""))
            .unwrap()
            .parquet;
        assert_eq!(parquet.dictionary, ParquetDictionary::Always);
        assert_eq!(parquet.statistics, ParquetStatistics::Page);
        for (keys, key) in [
            ("dictionary = \"sometimes\"", "dictionary"),
            ("statistics = \"row\"", "statistics"),
        ] {
            let err = Config::parse(&with(keys)).unwrap_err().to_string();
            assert!(err.contains(key), "{err}");
        }
    }

    #[test]
    fn timestamp_unit_defaults_to_micros_and_a_bad_one_is_named() {
        assert_eq!(
            Config::parse(&minimal()).unwrap().parquet.timestamp_unit,
            TimestampUnit::Micros
        );
        let with = |unit: &str| {
            minimal().replace(
                "[kafka]",
                &format!("[parquet]\ntimestamp_unit = \"{unit}\"\n[kafka]"),
            )
        };
        assert_eq!(
            Config::parse(&with("nanos"))
                .unwrap()
                .parquet
                .timestamp_unit,
            TimestampUnit::Nanos
        );
        let err = Config::parse(&with("millis")).unwrap_err().to_string();
        assert!(
            err.contains("timestamp_unit") && err.contains("micros") && err.contains("nanos"),
            "{err}"
        );
    }

    #[test]
    fn bad_duration_is_named() {
        let text = minimal().replace("[kafka]", "[commit]\ninterval = \"soon\"\n[kafka]");
        let err = Config::parse(&text).unwrap_err().to_string();
        assert!(err.contains("interval"), "{err}");
    }

    #[test]
    fn managed_kafka_property_refused() {
        let text = minimal().replace(
            "[[datasets]]",
            "[kafka.properties]\n\"enable.auto.commit\" = \"true\"\n[[datasets]]",
        );
        let c = Config::parse(&text).unwrap();
        let err = c
            .validate(&weir_operators::config::StaticSecrets::default())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("kafka.properties.\"enable.auto.commit\""),
            "{err}"
        );
    }

    #[test]
    fn start_position_and_eof_properties_refused() {
        for (key, names) in [
            ("auto.offset.reset", "kafka.start_from"),
            ("enable.partition.eof", "managed by weir"),
        ] {
            let text = minimal().replace(
                "[[datasets]]",
                &format!("[kafka.properties]\n\"{key}\" = \"true\"\n[[datasets]]"),
            );
            let err = Config::parse(&text)
                .unwrap()
                .validate(&weir_operators::config::StaticSecrets::default())
                .unwrap_err()
                .to_string();
            assert!(
                err.contains(&format!("kafka.properties.\"{key}\"")),
                "{err}"
            );
            assert!(err.contains(names), "{err}");
        }
    }

    #[test]
    fn on_offset_gap_values() {
        assert_eq!(
            Config::parse(&minimal()).unwrap().kafka.on_offset_gap,
            OnOffsetGap::Record
        );
        let with = |v: &str| {
            minimal().replace(
                "[[datasets]]",
                &format!("on_offset_gap = \"{v}\"\n[[datasets]]"),
            )
        };
        assert_eq!(
            Config::parse(&with("fail")).unwrap().kafka.on_offset_gap,
            OnOffsetGap::Fail
        );
        let err = Config::parse(&with("skip")).unwrap_err().to_string();
        assert!(err.contains("on_offset_gap"), "{err}");
        assert!(err.contains("record") && err.contains("fail"), "{err}");
    }

    #[test]
    fn env_interpolation() {
        let env = |n: &str| (n == "BROKER").then(|| "b:1".to_owned());
        assert_eq!(
            interpolate_env("x=${BROKER};$${LIT}", &env).unwrap(),
            "x=b:1;${LIT}"
        );
        let err = interpolate_env("${NOPE}", &env).unwrap_err().to_string();
        assert!(err.contains("NOPE"), "{err}");
        // A default for an unset or empty variable, as in the shell.
        let env = |n: &str| match n {
            "BROKER" => Some("b:1".to_owned()),
            "EMPTY" => Some(String::new()),
            _ => None,
        };
        assert_eq!(
            interpolate_env(
                "${BROKER:-x};${NOPE:-127.0.0.1:9092};${EMPTY:-d};${EMPTY}|${NOPE:-}",
                &env
            )
            .unwrap(),
            "b:1;127.0.0.1:9092;d;|"
        );
    }

    #[test]
    fn an_unset_variable_names_its_key_and_line() {
        let env = |n: &str| (n == "SET").then(|| "v".to_owned());
        let text = "# ${IN_A_COMMENT} is left alone\n\
                    [kafka]\n\
                    brokers = \"${SET}\"\n\
                    [kafka.properties]\n\
                    \"sasl.password\" = '${KAFKA_PASSWORD}'\n";
        let err = interpolate_env(text, &env).unwrap_err();
        match &err {
            ConfigError::MissingEnv { name, key, line } => {
                assert_eq!(name, "KAFKA_PASSWORD");
                assert_eq!(key, "kafka.properties.\"sasl.password\"");
                assert_eq!(*line, 5);
            }
            other => panic!("{other:?}"),
        }
        let message = err.to_string();
        assert!(
            message.contains("KAFKA_PASSWORD") && message.contains("${KAFKA_PASSWORD:-"),
            "{message}"
        );

        // Arrays of tables are counted, nested ones within their parent's element.
        let text = "[[datasets]]\nname = \"a\"\n[[datasets.operators]]\ntype = \"sample\"\n\
                    [[datasets]]\nname = \"b\"\n[[datasets.operators]]\ntype = \"redact\"\n\
                    [[datasets.operators]]\ntype = \"enrich\"\nmmdb = \"${GEO}\"\n";
        match interpolate_env(text, &env).unwrap_err() {
            ConfigError::MissingEnv { key, line, .. } => {
                assert_eq!(key, "datasets[1].operators[1].mmdb");
                assert_eq!(line, 11);
            }
            other => panic!("{other:?}"),
        }
        // A variable on a line of its own inside a multi-line value: the key above it.
        let text = "[kafka]\nbrokers = \"x\"\nlist = [\n  \"a\",\n  \"${NOPE}\",\n]\n";
        match interpolate_env(text, &env).unwrap_err() {
            ConfigError::MissingEnv { key, line, .. } => {
                assert_eq!(key, "kafka.list");
                assert_eq!(line, 5);
            }
            other => panic!("{other:?}"),
        }
        // At the top level, before any table.
        match interpolate_env("${NOPE}", &env).unwrap_err() {
            ConfigError::MissingEnv { key, line, .. } => {
                assert_eq!(key, "(top level)");
                assert_eq!(line, 1);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn comment_lines_are_not_interpolated() {
        let env = |_: &str| None;
        let text = "# brokers = \"${KAFKA_BROKERS}\"\n  # ${ALSO}\nx = \"${A:-1}\"\n";
        assert_eq!(
            interpolate_env(text, &env).unwrap(),
            "# brokers = \"${KAFKA_BROKERS}\"\n  # ${ALSO}\nx = \"1\"\n"
        );
        let err = interpolate_env("x = \"${A\"\ny = \"}\"\n", &env)
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 1"), "{err}");
    }

    #[test]
    fn byte_sizes() {
        assert_eq!(parse_bytes("64MiB").unwrap(), 64 << 20);
        assert_eq!(parse_bytes("10MB").unwrap(), 10_000_000);
        assert_eq!(parse_bytes("123").unwrap(), 123);
        assert!(parse_bytes("12 parsecs").is_err());
        // Too large for 64 bits: refused, never wrapped to a small size.
        let err = parse_bytes("17179869184G").unwrap_err();
        assert!(err.contains("too large"), "{err}");
        let limit = |value: &str| {
            Config::parse(&format!("{}[memory]\nlimit = {value}\n", minimal()))
                .map(|c| c.memory.limit)
                .map_err(|e| e.to_string())
        };
        assert_eq!(limit("\"1GiB\""), Ok(1 << 30));
        assert_eq!(limit("536870912"), Ok(1 << 29));
        let negative = limit("-5").unwrap_err();
        assert!(
            negative.contains("negative") && negative.contains("limit"),
            "{negative}"
        );
        let fraction = limit("1.5").unwrap_err();
        assert!(fraction.contains("whole number of bytes"), "{fraction}");
    }
    #[test]
    fn stall_timeout_defaults_and_bounds() {
        let validate = |text: &str| {
            Config::parse(text)
                .unwrap()
                .validate(&weir_operators::config::StaticSecrets::default())
                .map(|_| ())
                .map_err(|e| e.to_string())
        };
        let c = Config::parse(&minimal()).unwrap();
        assert_eq!(c.health.stall_timeout, Duration::from_secs(300));
        let with = |health: &str| format!("[health]\n{health}\n{}", minimal());
        assert!(validate(&with("stall_timeout = \"2m\"")).is_ok());
        let err = validate(&with("stall_timeout = \"5s\"")).unwrap_err();
        assert!(err.contains("health.stall_timeout"), "{err}");
        let err = validate(&format!(
            "[commit]\ninterval = \"2m\"\n{}",
            with("stall_timeout = \"1m\"")
        ))
        .unwrap_err();
        assert!(err.contains("longer than commit.interval"), "{err}");
        assert!(
            Config::parse(&with("stall = \"1m\"")).is_err(),
            "unknown keys are refused"
        );
    }

    #[test]
    fn bad_dataset_name_and_duplicate_topic() {
        let text = minimal().replace("name = \"http_requests\"", "name = \"Http\"");
        let c = Config::parse(&text).unwrap();
        let err = c
            .validate(&weir_operators::config::StaticSecrets::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("datasets[0].name"), "{err}");
    }
}

#[cfg(test)]
mod reserved_and_named_tests {
    use super::*;
    use weir_operators::config::StaticSecrets;

    fn validate(text: &str) -> Result<Vec<ResolvedDataset>, String> {
        Config::parse(text)
            .map_err(|e| e.to_string())?
            .validate(&StaticSecrets::default())
            .map_err(|e| e.to_string())
    }

    fn with_dataset(dataset: &str) -> String {
        format!("[kafka]\nbrokers = \"127.0.0.1:9092\"\n{dataset}")
    }

    fn schema_file(dir: &std::path::Path, extra_field: &str) -> std::path::PathBuf {
        let path = dir.join("app_logs.json");
        std::fs::write(
            &path,
            format!(
                r#"{{"name": "app_logs", "version": 1, "event_time": "ts", "fields": [
                    {{"name": "ts", "type": "timestamp"}},
                    {{"name": "level", "type": "string"}},
                    {{"name": "{extra_field}", "type": "string"}}]}}"#
            ),
        )
        .unwrap();
        path
    }

    #[test]
    fn schema_fields_named_like_weirs_own_columns_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        for field in [
            "date",
            "Hour",
            "_sample_rate",
            "_sample_th",
            "enrich_version",
        ] {
            let path = schema_file(dir.path(), field);
            let err = validate(&with_dataset(&format!(
                "[[datasets]]\nname = \"app\"\ntopic = \"app\"\nschema = \"{}\"\n",
                path.display()
            )))
            .unwrap_err();
            assert!(err.contains("datasets[0].schema"), "{err}");
            assert!(err.contains(&format!("field {field}")), "{err}");
            assert!(err.contains("dataset app"), "{err}");
        }
        // A field that merely starts like one is fine.
        let path = schema_file(dir.path(), "date_of_birth");
        validate(&with_dataset(&format!(
            "[[datasets]]\nname = \"app\"\ntopic = \"app\"\nschema = \"{}\"\n",
            path.display()
        )))
        .unwrap();
    }

    #[test]
    fn an_operator_output_named_like_a_partition_column_is_refused() {
        let err = validate(&with_dataset(
            "[[datasets]]\nname = \"http_requests\"\ntopic = \"t\"\n\
             [[datasets.operators]]\ntype = \"enrich\"\n\
             derive = { status_class = { field = \"EdgeResponseStatus\", name = \"hour\" } }\n",
        ))
        .unwrap_err();
        assert!(err.contains("datasets[0].operators"), "{err}");
        assert!(err.contains("hour"), "{err}");
        assert!(err.contains("dataset http_requests"), "{err}");
    }

    #[test]
    fn commits_and_dead_letter_are_not_dataset_names() {
        for name in ["commits", "dead_letter"] {
            let err = validate(&with_dataset(&format!(
                "[[datasets]]\nname = \"{name}\"\ntopic = \"t\"\nschema = \"dns_logs\"\n"
            )))
            .unwrap_err();
            assert!(err.contains("datasets[0].name"), "{err}");
            assert!(err.contains("reserved"), "{err}");
        }
    }

    #[test]
    fn dataset_names_do_not_start_with_an_underscore() {
        for name in ["_weir", "_audit"] {
            let err = validate(&with_dataset(&format!(
                "[[datasets]]\nname = \"{name}\"\ntopic = \"t\"\nschema = \"dns_logs\"\n"
            )))
            .unwrap_err();
            assert!(err.contains("datasets[0].name"), "{err}");
            assert!(err.contains("_weir/"), "{err}");
        }
        validate(&with_dataset(
            "[[datasets]]\nname = \"dns_\"\ntopic = \"t\"\nschema = \"dns_logs\"\n",
        ))
        .unwrap();
    }

    #[test]
    fn operators_are_named_and_duplicates_without_names_refused() {
        let sampler = "[[datasets.operators]]\ntype = \"sample\"\nkey = \"RayID\"\nrate = 0.5\n";
        let text = with_dataset(&format!(
            "[[datasets]]\nname = \"http_requests\"\ntopic = \"t\"\n{sampler}{sampler}"
        ));
        let err = validate(&text).unwrap_err();
        assert!(err.contains("datasets[0].operators[1].name"), "{err}");
        assert!(err.contains("dataset http_requests"), "{err}");
        let named = with_dataset(&format!(
            "[[datasets]]\nname = \"http_requests\"\ntopic = \"t\"\n{sampler}name = \"first\"\n{sampler}name = \"second\"\n"
        ));
        let resolved = validate(&named).unwrap();
        let names: Vec<&str> = resolved[0]
            .config
            .operators
            .iter()
            .map(|o| o.name())
            .collect();
        assert_eq!(names, ["first", "second"]);
        let typo = named.replace("name = \"second\"", "nmae = \"second\"");
        let err = validate(&typo).unwrap_err();
        assert!(err.contains("nmae"), "{err}");
    }

    #[test]
    fn redaction_may_not_rewrite_the_event_time() {
        for action in ["null", "drop"] {
            let err = validate(&with_dataset(&format!(
                "[[datasets]]\nname = \"http_requests\"\ntopic = \"t\"\n\
                 [[datasets.operators]]\ntype = \"redact\"\n\
                 fields = {{ EdgeStartTimestamp = {{ action = \"{action}\" }} }}\n"
            )))
            .unwrap_err();
            assert!(
                err.contains("datasets[0].operators[0].fields.EdgeStartTimestamp"),
                "{err}"
            );
        }
    }

    #[test]
    fn max_future_has_a_default_and_refuses_unknown_keys() {
        let base = with_dataset("[[datasets]]\nname = \"dns_logs\"\ntopic = \"t\"\n");
        let c = Config::parse(&base).unwrap();
        assert_eq!(c.event_time.max_future, Duration::from_secs(3600));
        let c = Config::parse(&format!("[event_time]\nmax_future = \"15m\"\n{base}")).unwrap();
        assert_eq!(c.event_time.max_future, Duration::from_secs(900));
        let err = Config::parse(&format!("[event_time]\nmax_futur = \"15m\"\n{base}"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("max_futur"), "{err}");
        let err = Config::parse(&format!("[event_time]\nmax_future = \"soon\"\n{base}"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("max_future"), "{err}");
    }

    #[test]
    fn max_open_hours_is_optional_and_positive() {
        let base = with_dataset("[[datasets]]\nname = \"dns_logs\"\ntopic = \"t\"\n");
        assert_eq!(
            Config::parse(&base).unwrap().event_time.max_open_hours,
            None
        );
        let c = Config::parse(&format!("[event_time]\nmax_open_hours = 3\n{base}")).unwrap();
        assert_eq!(c.event_time.max_open_hours, Some(3));
        let err = validate(&format!("[event_time]\nmax_open_hours = 0\n{base}")).unwrap_err();
        assert!(err.contains("event_time.max_open_hours"), "{err}");
    }

    fn minimal_dataset() -> String {
        with_dataset("[[datasets]]\nname = \"http_requests\"\ntopic = \"cf.http_requests\"\n")
    }

    /// Mistakes `weir run` or `weir compact` would only meet later (or never, until the
    /// first dead letter) are refused by validation, naming the key.
    #[test]
    fn mistakes_found_late_are_refused_at_validation() {
        let refused = |extra: &str, key: &str, reason: &str| {
            let err = validate(&format!("{}{extra}", minimal_dataset())).unwrap_err();
            assert!(err.contains(key) && err.contains(reason), "{extra}: {err}");
        };
        refused(
            "[dead_letter]\nkafka_topic = \"cf.http_requests\"\n",
            "dead_letter.kafka_topic",
            "is the topic of dataset http_requests",
        );
        refused(
            "[dead_letter]\nkafka_topic = \" \"\n",
            "dead_letter.kafka_topic",
            "must not be empty",
        );
        refused(
            "[metrics]\nlisten = \"9090\"\n",
            "metrics.listen",
            "host:port",
        );
        refused(
            "[metrics]\nlisten = \":9090\"\n",
            "metrics.listen",
            "host:port",
        );
        refused(
            "[metrics]\nlisten = \"0.0.0.0:http\"\n",
            "metrics.listen",
            "host:port",
        );
        refused(
            "[shutdown]\ntimeout = \"0s\"\n",
            "shutdown.timeout",
            "at least 1s",
        );
        refused(
            "[shutdown]\ntimeout = \"999ms\"\n",
            "shutdown.timeout",
            "at least 1s",
        );
        refused(
            "[compaction]\nbloom_filter_columns = [\"RayId\"]\n",
            "compaction.bloom_filter_columns",
            "no dataset has a column RayId",
        );
        refused(
            "[[datasets.operators]]\ntype = \"redact\"\nunlisted_fields = \"drop\"\n",
            "datasets[0].operators[0]",
            "removes the event time column EdgeStartTimestamp",
        );
        for fine in [
            "[dead_letter]\nkafka_topic = \"cf.dead_letters\"\n",
            "[metrics]\nlisten = \"0.0.0.0:9090\"\n",
            "[metrics]\nlisten = \"localhost:9090\"\n",
            "[metrics]\nlisten = \"[::1]:9090\"\n",
            "[metrics]\nlisten = \"::1:9090\"\n",
            // Empty: off, as when the key is absent.
            "[metrics]\nlisten = \"\"\n",
            "[shutdown]\ntimeout = \"1s\"\n",
            // A batch of whatever is queued when it is looked at.
            "[batch]\nmax_wait = \"0s\"\n",
            "[compaction]\nbloom_filter_columns = [\"RayID\", \"ClientIP\"]\n",
        ] {
            validate(&format!("{}{fine}", minimal_dataset())).unwrap();
        }
        // A column enrich adds is known only once the chain is built with its reference
        // data: validation leaves that name to `weir compact`.
        validate(&format!(
            "{}[compaction]\nbloom_filter_columns = [\"geo_country_code\"]\n\
             [[datasets.operators]]\ntype = \"enrich\"\n\
             geoip = {{ database = \"/nonexistent/City.mmdb\", field = \"ClientIP\" }}\n",
            minimal_dataset()
        ))
        .unwrap();
        // A dataset without a schema key whose name is no built-in schema: the name is
        // what is wrong, and the built-in names are listed.
        let err = validate(&with_dataset(
            "[[datasets]]\nname = \"http_request\"\ntopic = \"t\"\n",
        ))
        .unwrap_err();
        assert!(
            err.contains("datasets[0].name") && err.contains("built-in: "),
            "{err}"
        );
    }
}
