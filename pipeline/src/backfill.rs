//! `weir backfill`: a bounded job that (re)fills whole hours of a dataset's table from a
//! source other than the live firehose.
//!
//! ```text
//!  plan: the source units of [from, to)      archive: files under a prefix (Logpush layout
//!        (sorted by name, each one shard's)           picks them by their time window)
//!                                            kafka:   the offset ranges of the entries that
//!                                                     wrote the hours' files (the ledger)
//!  done: units named by the backfill's entries (its own ledger streams)
//!  for each unit of this shard not done:     read ─▶ (kafka: records the dead letters
//!                                                 already hold stay there, skipped)
//!                                            ─▶ decode (bad records → dead letters)
//!                                            ─▶ rows outside [from, to) skipped, counted
//!                                            ─▶ a fresh operator chain ─▶ Parquet per hour
//!                                            ─▶ one ledger entry naming the unit
//!  --replace, once every unit is done:       one maintenance replace entry: the staged files
//!                                            in, the hours' old files out
//!  --abandon (instead, never both):          one maintenance entry naming no files; vacuum
//!                                            deletes the staged files
//! ```
//!
//! **Streams.** A backfill commits to ledger streams of its own, one per shard:
//! `@backfill.<id>/<shard>` when rows are added (they are in the table as each entry
//! commits), `@staged.<id>/<shard>` with `--replace` (readers skip staged streams; the
//! files enter the table only through the maintenance entry that publishes them, tagged
//! with the backfill id, which also removes the old files: readers see the old hours or
//! the new ones). Each entry goes through the commit protocol of partitions (intent,
//! uploads, create-if-absent entry, takeover on recovery), so a killed run leaves nothing
//! that a re-run does not clean, and a unit is either committed whole or not at all.
//!
//! **Identity, plan and progress.** `--id`, or by default `<dataset>-<from>-<to>-<hash>`
//! of the dataset, range, source and config hash. The first run records the plan
//! ([`Plan`]: units and parameters) create-if-absent; every shard and re-run works from it
//! and a run with other parameters is refused. Progress is the set of unit names the id's
//! entries carry (of every shard's stream), read after the shard's stream is recovered, so
//! a unit another run of the shard commits later fences ours: a re-run skips them, a
//! finished run is a no-op that says so. A unit belongs to shard `hash(name) mod N`, so
//! shards never share a unit and their union is the unsharded run.
//!
//! **Determinism.** Every unit runs through a fresh operator chain: the rows of a unit do
//! not depend on which shard ran it or what ran before. Operators whose output depends on
//! arrival order across units (a budget sampler's per-second budget) therefore start each
//! unit from zero: see the README.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use arrow::array::{Array, AsArray, RecordBatch, TimestampNanosecondArray};
use arrow::datatypes::{DataType, Int32Type, Int64Type, TimeUnit};
use chrono::{DateTime, NaiveDateTime, Utc};
use object_store::{ObjectStore, PutMode, PutOptions, PutPayload};
use parquet::arrow::{ParquetRecordBatchStreamBuilder, ProjectionMask};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tracing::{debug, info, warn};
use weir_operators::{Chain, SecretSource};
use weir_schemas::{BatchDecoder, DecoderOptions};

use crate::commit::{Attempt, Outcome, Protocol};
use crate::config::Config;
use crate::ledger::{
    self, BACKFILL_PREFIX, Entry, FileRef, LEDGER_VERSION, LedgerError, PartitionLedger,
    STAGED_PREFIX,
};
use crate::maintenance::{Job, JobError};
use crate::query::CommittedView;
use crate::runtime::DatasetRuntime;
use crate::sink::dead_letter::{DeadLetter, DeadLetterBuffer};
use crate::sink::parquet::{ClosedFile, PartitionWriter, WriteError, hive_dir};

pub mod archive;
pub mod kafka;

#[derive(Debug, thiserror::Error)]
pub enum BackfillError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Ledger(#[from] LedgerError),
    #[error("{0}")]
    Job(#[from] JobError),
    #[error("object store: {0}")]
    Store(#[from] object_store::Error),
    #[error("writing parquet: {0}")]
    Write(#[from] WriteError),
    #[error("source {unit}: {reason}")]
    Source { unit: String, reason: String },
    #[error("operator chain of {dataset}: {reason}")]
    Chain { dataset: String, reason: String },
    #[error(
        "cannot re-derive every hour from kafka: offsets no longer retained (nothing was written):\n{0}"
    )]
    NotRetained(String),
    #[error(
        "backfill {id} shard {shard}: another run of the same shard committed entry {seq} first (epoch {theirs}, ours {ours}); run one process per shard"
    )]
    Concurrent {
        id: String,
        shard: u32,
        seq: u64,
        ours: u64,
        theirs: u64,
    },
}

/// Where a backfill reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The records that produced the hours, read again from the dataset's topic.
    Kafka,
    /// NDJSON files (optionally `.gz` or `.zst`) under an object-store prefix.
    Archive(String),
}

impl Source {
    pub fn parse(text: &str) -> Result<Source, String> {
        if text == "kafka" {
            return Ok(Source::Kafka);
        }
        match text.split_once("://") {
            Some(("s3" | "s3a" | "gs" | "az" | "abfs" | "abfss" | "file", _)) => {
                Ok(Source::Archive(text.to_owned()))
            }
            _ => Err(format!(
                "{text:?}: want kafka or an archive URL (s3://, gs://, az://, file://)"
            )),
        }
    }

    fn describe(&self) -> &str {
        match self {
            Source::Kafka => "kafka",
            Source::Archive(url) => url,
        }
    }
}

/// `--shard I/N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

impl Shard {
    pub const ALL: Shard = Shard { index: 0, count: 1 };

    pub fn parse(text: &str) -> Result<Shard, String> {
        let bad = || format!("{text:?}: want I/N with 0 <= I < N (e.g. 0/3)");
        let (i, n) = text.split_once('/').ok_or_else(bad)?;
        let (index, count): (u32, u32) = (
            i.trim().parse().map_err(|_| bad())?,
            n.trim().parse().map_err(|_| bad())?,
        );
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }

    /// Whether `unit` is this shard's: a hash of its name, so the split does not depend on
    /// the order or number of the other units.
    pub fn owns(&self, unit: &str) -> bool {
        let digest = Sha256::digest(unit.as_bytes());
        let n = u64::from_be_bytes(digest[..8].try_into().expect("8 bytes"));
        n % u64::from(self.count) == u64::from(self.index)
    }
}

/// An RFC 3339 time or an hour `YYYY-MM-DDTHH` (UTC); it must fall on a whole hour.
pub fn parse_hour(text: &str) -> Result<DateTime<Utc>, String> {
    let t = if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        t.with_timezone(&Utc)
    } else if let Ok(t) =
        NaiveDateTime::parse_from_str(&format!("{text}:00:00"), "%Y-%m-%dT%H:%M:%S")
    {
        t.and_utc()
    } else {
        return Err(format!(
            "{text:?} is neither an RFC 3339 time nor an hour YYYY-MM-DDTHH"
        ));
    };
    if t.timestamp().rem_euclid(3600) != 0 || t.timestamp_subsec_nanos() != 0 {
        return Err(format!("{text:?} is not on a whole hour"));
    }
    Ok(t)
}

/// What `weir backfill` was asked.
#[derive(Clone)]
pub struct Options {
    pub dataset: String,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub source: Source,
    pub replace: bool,
    pub id: Option<String>,
    pub shard: Shard,
    pub dry_run: bool,
    /// This process start's writer id.
    pub writer: String,
}

/// One source unit: the grain of progress and of sharding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unit {
    /// Stable identity, recorded in the entry that commits it.
    pub name: String,
    pub bytes: u64,
    pub what: UnitSource,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnitSource {
    /// An archive file (path within the archive store).
    File(String),
    /// `[start, end)` of one partition of the dataset's topic: the range of one ledger
    /// entry, which read `records` records from it.
    Offsets {
        topic: String,
        partition: i32,
        start: i64,
        end: i64,
        records: u64,
        /// The range's hours the plan found its rows in.
        hours: Vec<String>,
        /// Hours outside the range the entry also wrote rows to (their files stay). `None`
        /// in plans recorded before it existed: unknown.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        outside_hours: Option<Vec<String>>,
        /// The entry's `offset_resets`: which of the partition's offset ranges these
        /// offsets are (dead letters under another count are other records).
        #[serde(default, skip_serializing_if = "is_zero")]
        resets: u64,
    },
}

/// What a backfill planned, recorded once (create-if-absent) under
/// `_weir/backfill/<dataset>/<id>/plan.json` by its first run: every shard and re-run works
/// from it, so they agree on the units whoever planned, and a run with other parameters
/// under the same id is refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// What this build writes ([`PLAN_FORMAT`]); 0 in plans recorded before it existed. A
    /// build refuses a plan of a newer format, whose units may carry what it would ignore.
    #[serde(default)]
    pub format: u32,
    pub id: String,
    pub dataset: String,
    pub from: String,
    pub to: String,
    pub source: String,
    pub replace: bool,
    pub shards: u32,
    pub config_hash: String,
    pub units: Vec<Unit>,
}

/// The plan format this build writes and the newest it reads. Raise it when a unit gains
/// something an older build must not ignore.
pub const PLAN_FORMAT: u32 = 1;

impl Plan {
    /// Parses a recorded plan (`path` names it in errors), refusing a newer format.
    fn parse(path: &object_store::path::Path, bytes: &[u8]) -> Result<Plan, BackfillError> {
        let plan: Plan = serde_json::from_slice(bytes)
            .map_err(|e| BackfillError::Invalid(format!("{path} does not parse: {e}")))?;
        if plan.format > PLAN_FORMAT {
            return Err(BackfillError::Invalid(format!(
                "{path} was recorded by a newer weir (plan format {}, this build reads up to {PLAN_FORMAT}): run this backfill with that version",
                plan.format
            )));
        }
        Ok(plan)
    }

    /// The first parameter in which `other` differs from this plan, as (name, ours, theirs).
    fn differs(&self, other: &Plan) -> Option<(&'static str, String, String)> {
        let pairs = [
            ("--dataset", &self.dataset, &other.dataset),
            ("--from", &self.from, &other.from),
            ("--to", &self.to, &other.to),
            ("--source", &self.source, &other.source),
            ("the config hash", &self.config_hash, &other.config_hash),
        ];
        for (name, a, b) in pairs {
            if a != b {
                return Some((name, a.clone(), b.clone()));
            }
        }
        if self.replace != other.replace {
            return Some((
                "--replace",
                self.replace.to_string(),
                other.replace.to_string(),
            ));
        }
        if self.shards != other.shards {
            return Some((
                "the shard count",
                self.shards.to_string(),
                other.shards.to_string(),
            ));
        }
        None
    }
}

/// Where a backfill's plan is recorded.
pub fn plan_path(dataset: &str, id: &str) -> String {
    format!("_weir/backfill/{dataset}/{id}/plan.json")
}

/// The object name of a backfill's data file: `<prefix>-<shard>-<seq>-e<epoch>`, four
/// parts, where a partition's file has five (`file_name`), so neither can be taken for
/// the other.
pub fn unit_file_name(prefix: &str, shard: u32, seq: u64, epoch: u64) -> String {
    format!("{prefix}-{shard:05}-{seq:010}-e{epoch:06}.parquet")
}

/// What a run did (the summary line).
#[derive(Debug, Default, Clone)]
pub struct Summary {
    pub id: String,
    pub units: usize,
    pub units_skipped: usize,
    pub records: u64,
    pub rows: u64,
    pub outside_range: u64,
    /// Kafka: records read again that the dataset's dead letters already held (left there).
    pub already_dead_lettered: u64,
    pub dead_lettered: u64,
    pub files: usize,
    pub bytes_read: u64,
    pub bytes_written: u64,
    pub published: Option<Published>,
    pub nothing_to_do: bool,
}

/// What the publishing replace entry of a `--replace` backfill did.
#[derive(Debug, Default, Clone)]
pub struct Published {
    pub files_added: usize,
    pub rows_added: u64,
    pub files_removed: usize,
    pub rows_removed: u64,
}

/// The default identity: readable, and changed by anything that changes the rows.
pub fn default_id(opts: &Options, config_hash: &str) -> String {
    let mut h = Sha256::new();
    for part in [
        opts.dataset.as_str(),
        &opts.from.to_rfc3339(),
        &opts.to.to_rfc3339(),
        opts.source.describe(),
        config_hash,
    ] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    format!(
        "{}-{}-{}-{}",
        opts.dataset,
        opts.from.format("%Y%m%dT%H"),
        opts.to.format("%Y%m%dT%H"),
        hex::encode(&h.finalize()[..4])
    )
}

fn check_id(id: &str) -> Result<(), String> {
    let ok = !id.is_empty()
        && id.len() <= 120
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(format!("--id {id:?}: use 1 to 120 of A-Z a-z 0-9 . _ -"))
    }
}

/// The hour folders of `[from, to)`, e.g. `date=2026-12-05/hour=07`.
pub fn hours(from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<String> {
    let (a, b) = (from.timestamp() / 3600, to.timestamp() / 3600);
    (a..b).map(hive_dir).collect()
}

/// Everything a run needs that does not change between units.
pub struct Backfill {
    config: Config,
    ds: Arc<DatasetRuntime>,
    store: Arc<dyn ObjectStore>,
    secrets: Arc<dyn SecretSource>,
    resources: Arc<weir_operators::enrich::Resources>,
    opts: Options,
    id: String,
    config_hash: String,
}

impl Backfill {
    pub fn new(
        config: Config,
        ds: Arc<DatasetRuntime>,
        store: Arc<dyn ObjectStore>,
        secrets: Arc<dyn SecretSource>,
        resources: Arc<weir_operators::enrich::Resources>,
        opts: Options,
    ) -> Result<Backfill, BackfillError> {
        if opts.from >= opts.to {
            return Err(BackfillError::Invalid(format!(
                "--from {} is not before --to {}",
                opts.from.to_rfc3339(),
                opts.to.to_rfc3339()
            )));
        }
        if opts.source == Source::Kafka && !opts.replace {
            return Err(BackfillError::Invalid(
                "--source kafka re-derives hours that already hold the rows it reads: add --replace (adding them again would write every row twice)".to_owned(),
            ));
        }
        let config_hash = config.hash();
        let id = match &opts.id {
            Some(id) => id.clone(),
            None => default_id(&opts, &config_hash),
        };
        check_id(&id).map_err(BackfillError::Invalid)?;
        Ok(Backfill {
            config,
            ds,
            store,
            secrets,
            resources,
            opts,
            id,
            config_hash,
        })
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// The stream topic of this backfill's shards.
    fn stream_topic(&self) -> String {
        let prefix = if self.opts.replace {
            STAGED_PREFIX
        } else {
            BACKFILL_PREFIX
        };
        format!("{prefix}{}", self.id)
    }

    /// Every stream of this backfill that exists (any shard count it ran with).
    async fn streams(&self) -> Result<Vec<PartitionLedger>, BackfillError> {
        let topic = self.stream_topic();
        Ok(ledger::streams(&self.store, &self.ds.name)
            .await?
            .into_iter()
            .filter(|l| l.topic() == topic)
            .collect())
    }

    /// Units committed by any shard of this backfill.
    async fn done(&self) -> Result<HashSet<String>, BackfillError> {
        let mut done = HashSet::new();
        for stream in self.streams().await? {
            for (entry, _) in stream.entries().await? {
                done.extend(entry.units);
            }
        }
        Ok(done)
    }

    /// What the maintenance stream says became of this (`--replace`) backfill.
    async fn fate(&self) -> Result<Fate, BackfillError> {
        fate_of(&self.store, &self.ds.name, &self.id).await
    }

    /// Every unit of the whole backfill (all shards), sorted by name.
    async fn plan(&self) -> Result<Vec<Unit>, BackfillError> {
        let mut units = match &self.opts.source {
            Source::Archive(url) => {
                archive::plan(&self.config, url, self.opts.from, self.opts.to).await?
            }
            Source::Kafka => {
                kafka::plan(&self.store, &self.ds, self.opts.from, self.opts.to).await?
            }
        };
        units.sort_by(|a, b| a.name.cmp(&b.name));
        units.dedup_by(|a, b| a.name == b.name);
        Ok(units)
    }

    /// This run's parameters as a plan without units (what a recorded plan must match).
    fn params(&self) -> Plan {
        Plan {
            format: PLAN_FORMAT,
            id: self.id.clone(),
            dataset: self.ds.name.clone(),
            from: self.opts.from.to_rfc3339(),
            to: self.opts.to.to_rfc3339(),
            source: self.opts.source.describe().to_owned(),
            replace: self.opts.replace,
            shards: self.opts.shard.count,
            config_hash: self.config_hash.clone(),
            units: Vec::new(),
        }
    }

    /// The recorded plan, checked against this run's parameters.
    async fn recorded_plan(&self) -> Result<Option<Plan>, BackfillError> {
        let path = object_store::path::Path::from(plan_path(&self.ds.name, &self.id));
        let got = crate::store::get_if_exists(&self.store, &path, "backfill plan", 8).await?;
        let Some(bytes) = got else {
            return Ok(None);
        };
        let plan = Plan::parse(&path, &bytes)?;
        if let Some((what, theirs, ours)) = plan.differs(&self.params()) {
            return Err(BackfillError::Invalid(format!(
                "backfill {} was planned with {what} {theirs}; this run has {ours}: run it with the same (or give a new --id)",
                self.id
            )));
        }
        Ok(Some(plan))
    }

    /// The plan every shard and re-run works from: the recorded one, or a new one recorded
    /// now (create-if-absent: when two shards plan at once, the first recorded wins and
    /// both use it). A dry run records nothing.
    async fn plan_once(&self) -> Result<Plan, BackfillError> {
        if let Some(plan) = self.recorded_plan().await? {
            return Ok(plan);
        }
        let units = self.plan().await?;
        if units.is_empty()
            && let Source::Archive(url) = &self.opts.source
        {
            return Err(BackfillError::Invalid(format!(
                "no file under {url} can hold rows of [{}, {}): check --source and the range",
                self.opts.from.to_rfc3339(),
                self.opts.to.to_rfc3339()
            )));
        }
        if self.opts.source == Source::Kafka && !self.opts.dry_run {
            // Nothing is recorded (or written) unless every range can still be read.
            kafka::check_retained(&self.config, &units.iter().collect::<Vec<_>>()).await?;
        }
        let plan = Plan {
            units,
            ..self.params()
        };
        if self.opts.dry_run {
            return Ok(plan);
        }
        let path = object_store::path::Path::from(plan_path(&self.ds.name, &self.id));
        let body = serde_json::to_vec_pretty(&plan).expect("a plan serializes");
        let put = self
            .store
            .put_opts(
                &path,
                PutPayload::from(body),
                PutOptions {
                    mode: PutMode::Create,
                    ..PutOptions::default()
                },
            )
            .await;
        match put {
            Ok(_) => Ok(plan),
            // Another shard's plan, or ours whose answer was lost: what is there counts.
            Err(e) => match self.recorded_plan().await? {
                Some(recorded) => Ok(recorded),
                None => Err(BackfillError::Store(e)),
            },
        }
    }

    /// Recovers this shard's stream: settles a killed run's attempt (its files removed),
    /// and fixes the sequence number our next entry takes, so a unit another run of this
    /// shard commits after this point fences ours instead of landing twice.
    async fn recover(&self) -> Result<(Protocol, u64, u64), BackfillError> {
        let shard = self.opts.shard;
        let protocol = Protocol::new(
            PartitionLedger::new(
                self.store.clone(),
                &self.ds.name,
                &self.stream_topic(),
                shard.index as i32,
            ),
            self.store.clone(),
            &self.opts.writer,
            self.config.storage_multipart_threshold(),
            self.config.commit.checkpoint_every,
        );
        let stream = protocol.ledger.stream().to_owned();
        let recovered = protocol
            .recover_retrying(8, std::time::Duration::from_millis(500), |round, e, wait| {
                warn!(stream = %stream, round, error = %e, retry_in_ms = wait.as_millis() as u64, "backfill stream recovery failed, retrying");
            })
            .await?;
        if recovered.removed > 0 {
            info!(backfill = %self.id, shard = shard.index, files = recovered.removed, "removed the files of an interrupted run");
        }
        let (epoch, next_seq) = (recovered.epoch, recovered.tail.next_seq());
        Ok((protocol, epoch, next_seq))
    }

    /// Runs (or with `--dry-run` describes) the backfill. `say` prints for the user.
    pub async fn run(&self, say: &(dyn Fn(&str) + Sync)) -> Result<Summary, BackfillError> {
        let mut summary = Summary {
            id: self.id.clone(),
            ..Summary::default()
        };
        let (shard, replace) = (self.opts.shard, self.opts.replace);
        if replace {
            match self.fate().await? {
                Fate::Pending => {}
                Fate::Published => {
                    say(&format!(
                        "backfill {} is already published: nothing to do",
                        self.id
                    ));
                    summary.nothing_to_do = true;
                    return Ok(summary);
                }
                Fate::Abandoned => return Err(abandoned(&self.id)),
            }
        }
        let plan = self.plan_once().await?.units;
        if let Source::Kafka = self.opts.source
            && !self.opts.dry_run
        {
            // Nothing is written unless every remaining unit (of every shard) can be read.
            let done = self.done().await?;
            let pending: Vec<&Unit> = plan.iter().filter(|u| !done.contains(&u.name)).collect();
            kafka::check_resets(&self.store, &self.ds.name, &pending).await?;
            kafka::check_retained(&self.config, &pending).await?;
        }
        let stream = if self.opts.dry_run {
            None
        } else {
            Some(self.recover().await?)
        };
        let done = self.done().await?;
        let mine: Vec<&Unit> = plan
            .iter()
            .filter(|u| shard.owns(&u.name) && !done.contains(&u.name))
            .collect();
        summary.units_skipped = plan
            .iter()
            .filter(|u| shard.owns(&u.name) && done.contains(&u.name))
            .count();
        let Some(stream) = stream else {
            self.describe(&plan, &mine, &done, say).await?;
            return Ok(summary);
        };
        if mine.is_empty() && !replace {
            say(&format!(
                "backfill {} shard {}/{}: every unit is done ({} of {}): nothing to do",
                self.id,
                shard.index,
                shard.count,
                summary.units_skipped,
                plan.iter().filter(|u| shard.owns(&u.name)).count()
            ));
            summary.nothing_to_do = true;
            return Ok(summary);
        }
        if !mine.is_empty() {
            self.commit_units(stream, &mine, &mut summary).await?;
        }
        if replace {
            let done = self.done().await?;
            let missing = plan.iter().filter(|u| !done.contains(&u.name)).count();
            if missing > 0 {
                say(&format!(
                    "backfill {} shard {}/{}: done; {missing} units of other shards remain, the shard that finishes last publishes",
                    self.id, shard.index, shard.count
                ));
            } else {
                summary.published = Some(self.publish(&done, say).await?);
            }
        }
        Ok(summary)
    }

    async fn describe(
        &self,
        plan: &[Unit],
        mine: &[&Unit],
        done: &HashSet<String>,
        say: &(dyn Fn(&str) + Sync),
    ) -> Result<(), BackfillError> {
        let shard = self.opts.shard;
        say(&format!(
            "backfill {} of {}: [{}, {}) from {}, {}, shard {}/{}",
            self.id,
            self.ds.name,
            self.opts.from.to_rfc3339(),
            self.opts.to.to_rfc3339(),
            self.opts.source.describe(),
            if self.opts.replace {
                "replacing the hours"
            } else {
                "adding rows"
            },
            shard.index,
            shard.count
        ));
        let hours = hours(self.opts.from, self.opts.to);
        say(&format!(
            "hours: {} ({} .. {})",
            hours.len(),
            hours.first().map(String::as_str).unwrap_or(""),
            hours.last().map(String::as_str).unwrap_or("")
        ));
        for u in plan.iter().filter(|u| shard.owns(&u.name)) {
            let state = if done.contains(&u.name) {
                "done"
            } else {
                "to do"
            };
            say(&format!("  {state:5} {} ({} bytes)", u.name, u.bytes));
        }
        let bytes: u64 = mine.iter().map(|u| u.bytes).sum();
        say(&format!(
            "this shard: {} units to do ({bytes} bytes), {} done; all shards: {} units",
            mine.len(),
            plan.iter()
                .filter(|u| shard.owns(&u.name) && done.contains(&u.name))
                .count(),
            plan.len()
        ));
        if self.opts.replace {
            // As published once every unit of the plan is done.
            let all: HashSet<String> = plan.iter().map(|u| u.name.clone()).collect();
            let (removed, _) = self.old_files(&all, true).await?;
            let mut per_hour: BTreeMap<String, (usize, u64)> = BTreeMap::new();
            for f in &removed {
                let e = per_hour
                    .entry(ledger::bucket_of(&self.ds.name, &f.path))
                    .or_default();
                e.0 += 1;
                e.1 += f.rows;
            }
            for (hour, (files, rows)) in &per_hour {
                say(&format!("  replaces {hour}: {files} files, {rows} rows"));
            }
            say(&format!(
                "--replace would remove {} files ({} rows) when published",
                removed.len(),
                removed.iter().map(|f| f.rows).sum::<u64>()
            ));
        }
        Ok(())
    }

    /// Processes and commits this shard's units, one entry each.
    async fn commit_units(
        &self,
        (protocol, epoch, mut next_seq): (Protocol, u64, u64),
        units: &[&Unit],
        summary: &mut Summary,
    ) -> Result<(), BackfillError> {
        let shard = self.opts.shard;
        let topic = self.stream_topic();
        let mut progress = Progress::new(units.iter().map(|u| u.bytes).sum(), units.len());
        let kafka = match self.opts.source {
            Source::Kafka => Some(kafka::Reader::new(&self.config)?),
            Source::Archive(_) => None,
        };
        let refused = match self.opts.source {
            Source::Kafka => dead_lettered_offsets(&self.store, &self.ds.name, units).await?,
            Source::Archive(_) => Refused::new(),
        };
        let archive = match &self.opts.source {
            Source::Archive(url) => Some(archive::open(&self.config, url)?),
            Source::Kafka => None,
        };
        for unit in units {
            let mut run = UnitRun::new(self, unit, &refused)?;
            match &unit.what {
                UnitSource::File(path) => {
                    let store = archive.as_ref().expect("archive source");
                    let path = object_store::path::Path::from(path.as_str());
                    let body = archive::open_body(store, &path).await?;
                    let origin = format!(
                        "{}/{}",
                        self.opts.source.describe().trim_end_matches('/'),
                        unit.name
                    );
                    tokio::task::block_in_place(|| {
                        archive::lines(unit, &origin, body, &mut |r| run.push(r))?;
                        run.flush()
                    })?;
                }
                UnitSource::Offsets { records, .. } => {
                    // Again before each unit: a long run can outlast the topic.
                    kafka::check_resets(&self.store, &self.ds.name, &[unit]).await?;
                    let reader = kafka.as_ref().expect("kafka source");
                    tokio::task::block_in_place(|| {
                        reader.read(unit, &mut |r| run.push(r))?;
                        run.flush()
                    })?;
                    // The entry read exactly these records: fewer means some were not
                    // delivered this time (deleted meanwhile, a fetch that skipped), and
                    // committing the unit would replace rows with nothing.
                    if run.records != *records {
                        return Err(BackfillError::Source {
                            unit: unit.name.clone(),
                            reason: format!(
                                "read {} records, the ledger entry read {records}: nothing of this unit was committed",
                                run.records
                            ),
                        });
                    }
                }
            }
            let seq = next_seq;
            let prefix = topic.trim_start_matches('@');
            let file = unit_file_name(prefix, shard.index, seq, epoch);
            let lineage = vec![
                ("weir.backfill.id".to_owned(), self.id.clone()),
                ("weir.backfill.unit".to_owned(), unit.name.clone()),
                ("weir.ledger.seq".to_owned(), seq.to_string()),
                ("weir.ledger.epoch".to_owned(), epoch.to_string()),
            ];
            let (data, dead) = tokio::task::block_in_place(|| {
                let data = run.writer.close(&file, &lineage)?;
                let resets = match &unit.what {
                    UnitSource::Offsets { resets, .. } => *resets,
                    UnitSource::File(_) => 0,
                };
                let dead = run.dead.close(&self.ds.name, &file, resets)?;
                Ok::<_, WriteError>((data, dead))
            })?;
            let dead: Vec<ClosedFile> = dead.into_iter().collect();
            let entry = Entry {
                version: LEDGER_VERSION,
                seq,
                epoch,
                writer: self.opts.writer.clone(),
                dataset: self.ds.name.clone(),
                topic: topic.clone(),
                partition: shard.index as i32,
                start_offset: -1,
                next_offset: -1,
                records: run.records,
                rows: data.iter().map(|f| f.rows).sum(),
                dead_lettered: dead.iter().map(|f| f.rows).sum(),
                skipped_offsets: 0,
                holes: 0,
                offset_resets: 0,
                files: data.iter().map(ClosedFile::file_ref).collect(),
                dead_letters: dead.iter().map(ClosedFile::file_ref).collect(),
                removed: Vec::new(),
                operator_state: Vec::new(),
                config_hash: self.config_hash.clone(),
                weir_version: env!("CARGO_PKG_VERSION").to_owned(),
                takeover: false,
                units: vec![unit.name.clone()],
                backfill: None,
                abandoned: false,
                event_time: Some(self.ds.resolved.schema.event_time_rule()),
            };
            let (rows, dead_lettered, files) = (entry.rows, entry.dead_lettered, entry.files.len());
            let mut all = data;
            all.extend(dead);
            let mut attempt = Attempt::new(entry, all);
            let written = attempt.bytes();
            match commit_until_settled(&protocol, &mut attempt).await? {
                Outcome::Committed => next_seq += 1,
                Outcome::Fenced { theirs, .. } => {
                    return Err(BackfillError::Concurrent {
                        id: self.id.clone(),
                        shard: shard.index,
                        seq,
                        ours: epoch,
                        theirs,
                    });
                }
            }
            summary.units += 1;
            summary.records += run.records;
            summary.rows += rows;
            summary.outside_range += run.outside;
            summary.already_dead_lettered += run.already_dead;
            summary.dead_lettered += dead_lettered;
            summary.files += files;
            summary.bytes_read += unit.bytes;
            summary.bytes_written += written;
            info!(backfill = %self.id, shard = shard.index, unit = %unit.name, seq, records = run.records, rows, outside_range = run.outside, already_dead_lettered = run.already_dead, dead_letters = dead_lettered, files, "unit committed");
            progress.unit_done(unit.bytes, summary);
        }
        progress.finish();
        Ok(())
    }

    /// The files of the range's hours that a publish takes out, and the hours' files it
    /// leaves (committed after the backfill planned, from units it did not re-derive).
    async fn old_files(
        &self,
        done: &HashSet<String>,
        dry_run: bool,
    ) -> Result<(Vec<FileRef>, Vec<FileRef>), BackfillError> {
        let mut removed = Vec::new();
        let mut kept = Vec::new();
        let mut mixed = Vec::new();
        let mut origins = kafka::Origins::new(self.store.clone(), &self.ds.name);
        // Every hour's files first, then where each came from. Hours stand alone, so a long
        // range reads through a view loaded again every `ledger::VIEW_RELOAD` (a view
        // refuses to read hour manifests once it is old).
        let files = files_of_hours(
            &self.store,
            &self.ds.name,
            hours(self.opts.from, self.opts.to),
        )
        .await?;
        for f in files.into_iter().flat_map(|(_, files)| files) {
            let take = match self.opts.source {
                // The archive is the whole truth of its hours.
                Source::Archive(_) => true,
                // Only rows this backfill re-derived: every unit the file came from.
                Source::Kafka => {
                    let units = origins.of(&f.path).await?;
                    let ours = units.iter().filter(|u| done.contains(*u)).count();
                    if ours > 0 && ours < units.len() {
                        mixed.push(f.path.clone());
                    }
                    ours == units.len()
                }
            };
            if take {
                removed.push(f);
            } else {
                kept.push(f);
            }
        }
        // A file holding re-derived rows and rows of records the plan did not read (a
        // compaction merged late data after the backfill planned) can neither stay (rows
        // twice) nor go (rows lost).
        if !mixed.is_empty() && !dry_run {
            return Err(BackfillError::Invalid(format!(
                "{} files of the hours mix rows this backfill re-derived with rows of records it did not read (compacted after it planned), e.g. {}: run the backfill again under a new --id",
                mixed.len(),
                mixed[0]
            )));
        }
        Ok((removed, kept))
    }

    /// Refuses to publish staged dead letters of records the committed dead letters hold
    /// already: another backfill of the same records published them after this one read
    /// the dead letters (two backfills of one range at once, or one re-run after another
    /// finished). Checked after the maintenance job started, so a publish that commits
    /// after this check fences ours and the next round checks again.
    async fn check_dead_letters_once(&self, staged: &[FileRef]) -> Result<(), BackfillError> {
        if self.opts.source != Source::Kafka || staged.is_empty() {
            return Ok(());
        }
        let Some(plan) = self.recorded_plan().await? else {
            return Ok(());
        };
        let units: Vec<&Unit> = plan.units.iter().collect();
        let ours = dead_letters_in(&self.store, staged, &ranges_of(&units)).await?;
        let committed = dead_lettered_offsets(&self.store, &self.ds.name, &units).await?;
        for (topic, records) in &ours {
            if let Some((partition, offset)) = committed
                .get(topic)
                .and_then(|c| records.iter().find(|r| c.contains(r)))
            {
                return Err(BackfillError::Invalid(format!(
                    "backfill {}: the dead letters already hold {topic} partition {partition} offset {offset}, which this backfill dead-lettered too (another backfill of these records published since this one read them); nothing was published: back-fill the range again under a new --id",
                    self.id
                )));
            }
        }
        Ok(())
    }

    /// Commits the maintenance replace entry that puts the staged files in and the hours'
    /// old files out. Retried when another maintenance job committed first (the set of old
    /// files is then read again).
    async fn publish(
        &self,
        done: &HashSet<String>,
        say: &(dyn Fn(&str) + Sync),
    ) -> Result<Published, BackfillError> {
        const ATTEMPTS: u32 = 5;
        let mut round = 1;
        loop {
            let mut job = Job::start(
                &self.config,
                &self.ds.name,
                self.store.clone(),
                &self.opts.writer,
            )
            .await?;
            // Read after the job started: an entry committed after this read fences ours.
            match self.fate().await? {
                Fate::Pending => {}
                Fate::Published => {
                    say(&format!(
                        "backfill {} was published by another shard",
                        self.id
                    ));
                    return Ok(Published::default());
                }
                Fate::Abandoned => return Err(abandoned(&self.id)),
            }
            let (removed, kept) = self.old_files(done, false).await?;
            if !kept.is_empty() {
                warn!(backfill = %self.id, files = kept.len(), "files of the hours that came from records this backfill did not read (committed after it planned) stay in the table");
            }
            let mut added = Vec::new();
            let mut added_dead = Vec::new();
            for stream in self.streams().await? {
                let (data, dead) = stream.committed_files().await?;
                added.extend(data);
                added_dead.extend(dead);
            }
            self.check_dead_letters_once(&added_dead).await?;
            let published = Published {
                files_added: added.len(),
                rows_added: added.iter().map(|f| f.rows).sum(),
                files_removed: removed.len(),
                rows_removed: removed.iter().map(|f| f.rows).sum(),
            };
            match job.publish(&self.id, removed, added, added_dead).await {
                Ok(()) => {
                    info!(backfill = %self.id, files_added = published.files_added, rows_added = published.rows_added, files_removed = published.files_removed, rows_removed = published.rows_removed, "backfill published");
                    return Ok(published);
                }
                Err(JobError::Concurrent { .. }) if round < ATTEMPTS => {
                    warn!(backfill = %self.id, round, "another maintenance job committed first; publishing again");
                    round += 1;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// What became of a `--replace` backfill, by the maintenance stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    /// Neither published nor abandoned: its staged units wait for the last shard.
    Pending,
    Published,
    /// `weir backfill --abandon`: its staged files never enter the table.
    Abandoned,
}

/// What the maintenance stream of `dataset` says became of backfill `id` (the first entry
/// that names it decides: publishing and abandoning each refuse once the other is there).
async fn fate_of(
    store: &Arc<dyn ObjectStore>,
    dataset: &str,
    id: &str,
) -> Result<Fate, BackfillError> {
    let jobs = PartitionLedger::maintenance(store.clone(), dataset);
    Ok(jobs
        .entries()
        .await?
        .iter()
        .find(|(e, _)| e.backfill.as_deref() == Some(id))
        .map_or(Fate::Pending, |(e, _)| {
            if e.abandoned {
                Fate::Abandoned
            } else {
                Fate::Published
            }
        }))
}

fn abandoned(id: &str) -> BackfillError {
    BackfillError::Invalid(format!(
        "backfill {id} was abandoned (weir backfill --abandon): it can neither run nor publish again; give a new --id"
    ))
}

/// What `weir backfill --abandon` found and did.
#[derive(Debug, Default, Clone)]
pub struct Abandoned {
    /// Already abandoned by an earlier run: nothing was committed.
    pub already: bool,
    /// The staged units, data files and dead-letter files `weir vacuum` now deletes.
    pub units: usize,
    pub files: usize,
    pub dead_letter_files: usize,
}

/// `weir backfill --abandon`: gives up `--replace` backfill `id` of `dataset` before it is
/// published. One maintenance entry records it, so it is ordered with the backfill's own
/// publication (whichever commits first stands, the other refuses), with compaction and
/// with vacuum. The staged files never enter the table; `weir vacuum` deletes them (dead
/// letters included) once `retention.grace` has passed since.
pub async fn abandon(
    config: &Config,
    store: Arc<dyn ObjectStore>,
    dataset: &str,
    id: &str,
    writer: &str,
) -> Result<Abandoned, BackfillError> {
    check_id(id).map_err(BackfillError::Invalid)?;
    let path = object_store::path::Path::from(plan_path(dataset, id));
    let Some(bytes) = crate::store::get_if_exists(&store, &path, "backfill plan", 8).await? else {
        return Err(BackfillError::Invalid(format!(
            "no backfill {id} of {dataset} was planned ({path} does not exist): nothing to abandon"
        )));
    };
    let plan = Plan::parse(&path, &bytes)?;
    if !plan.replace {
        return Err(BackfillError::Invalid(format!(
            "backfill {id} adds rows (it was planned without --replace): the rows of its finished units are in the table already, and there is nothing staged to abandon"
        )));
    }
    const ATTEMPTS: u32 = 5;
    let mut round = 1;
    loop {
        let mut job = Job::start(config, dataset, store.clone(), writer).await?;
        match fate_of(&store, dataset, id).await? {
            Fate::Pending => {}
            Fate::Published => {
                return Err(BackfillError::Invalid(format!(
                    "backfill {id} is published: its rows are in the table, and there is nothing to abandon (a new --replace backfill of the hours replaces them)"
                )));
            }
            Fate::Abandoned => {
                return Ok(Abandoned {
                    already: true,
                    ..Abandoned::default()
                });
            }
        }
        match job.abandon(id).await {
            Ok(()) => break,
            Err(JobError::Concurrent { .. }) if round < ATTEMPTS => {
                warn!(backfill = %id, round, "another maintenance job committed first; abandoning again");
                round += 1;
            }
            Err(e) => return Err(e.into()),
        }
    }
    let mut done = Abandoned::default();
    let topic = format!("{STAGED_PREFIX}{id}");
    for stream in ledger::streams(&store, dataset)
        .await?
        .into_iter()
        .filter(|l| l.topic() == topic)
    {
        for (entry, _) in stream.entries().await? {
            done.units += entry.units.len();
            done.files += entry.files.len();
            done.dead_letter_files += entry.dead_letters.len();
        }
    }
    info!(backfill = %id, dataset, units = done.units, files = done.files, dead_letter_files = done.dead_letter_files, "backfill abandoned");
    Ok(done)
}

/// Records by topic, then (partition, offset).
type Refused = HashMap<String, HashSet<(i32, i64)>>;

/// Offset ranges by topic, then partition: `[start, end)` each, with the count of offset
/// resets they belong to ([`ledger::OffsetSpan::resets`]).
type Ranges = BTreeMap<String, BTreeMap<i32, Vec<(i64, i64, u64)>>>;

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// The (topic, partition, offset) of every record of `units`' offset ranges that the committed
/// dead letters of `dataset` hold: records the run that first read them refused (or an
/// earlier backfill did). A Kafka backfill leaves them where they are: re-deriving one
/// whose refusal no longer applies (a larger `max_record_bytes`, a fixed operator) would
/// put it in the table while its dead letter stays, and the replace only takes data files
/// out.
async fn dead_lettered_offsets(
    store: &Arc<dyn ObjectStore>,
    dataset: &str,
    units: &[&Unit],
) -> Result<Refused, BackfillError> {
    let ranges = ranges_of(units);
    if ranges.is_empty() {
        return Ok(Refused::new());
    }
    let view = CommittedView::load(store.clone(), &[dataset.to_owned()]).await?;
    let files = view.dead_letter_files(dataset).await?;
    dead_letters_in(store, &files, &ranges).await
}

/// topic → partition → the `[start, end)` of `units`' offset ranges.
fn ranges_of(units: &[&Unit]) -> Ranges {
    let mut ranges = Ranges::new();
    for unit in units {
        if let UnitSource::Offsets {
            topic,
            partition,
            start,
            end,
            resets,
            ..
        } = &unit.what
        {
            ranges
                .entry(topic.clone())
                .or_default()
                .entry(*partition)
                .or_default()
                .push((*start, *end, *resets));
        }
    }
    ranges
}

/// The ranges of `ranges` whose records `file` (a dead-letter file) may hold: those its
/// spans meet under the range's count of offset resets. A span that meets a range under
/// another count holds other records at those offsets (the topic was recreated); a file
/// that holds both for one partition cannot tell its rows apart, and is refused. A file
/// named without spans was written by a weir that counted no resets, before any this one
/// counted: its records are those of count 0.
fn ranges_in(file: &FileRef, ranges: &Ranges) -> Result<Ranges, BackfillError> {
    let mut out = Ranges::new();
    let Some(spans) = &file.offsets else {
        for (topic, partitions) in ranges {
            for (partition, rs) in partitions {
                let before: Vec<_> = rs.iter().filter(|r| r.2 == 0).copied().collect();
                if !before.is_empty() {
                    out.entry(topic.clone())
                        .or_default()
                        .insert(*partition, before);
                }
            }
        }
        return Ok(out);
    };
    let mut others = Vec::new();
    for s in spans {
        let Some(rs) = ranges.get(&s.topic).and_then(|p| p.get(&s.partition)) else {
            continue;
        };
        for &(a, b, resets) in rs {
            if s.first < b && s.last >= a {
                if s.resets == resets {
                    let mine = out
                        .entry(s.topic.clone())
                        .or_default()
                        .entry(s.partition)
                        .or_default();
                    if !mine.contains(&(a, b, resets)) {
                        mine.push((a, b, resets));
                    }
                } else {
                    others.push(s);
                }
            }
        }
    }
    // Rows are matched by offset: rows of another count inside the ranges read would pass
    // for ours.
    if let Some(o) = others.iter().find(|o| {
        out.get(&o.topic)
            .and_then(|p| p.get(&o.partition))
            .is_some_and(|r| r.iter().any(|&(a, b, _)| o.first < b && o.last >= a))
    }) {
        return Err(BackfillError::Invalid(format!(
            "dead-letter file {} holds records of {}/{} from before and after its offsets went back ({} resets and others) at offsets this backfill reads: it cannot tell them apart; back-fill these hours from an archive",
            file.path, o.topic, o.partition, o.resets
        )));
    }
    Ok(out)
}

/// The records of `files` (dead-letter files) inside `ranges` (topic → partition → the
/// ranges' `[start, end)`).
async fn dead_letters_in(
    store: &Arc<dyn ObjectStore>,
    files: &[FileRef],
    ranges: &Ranges,
) -> Result<Refused, BackfillError> {
    use futures::StreamExt as _;
    let mut out = Refused::new();
    // Only the files whose recorded spans meet a range are opened (a file named before
    // spans were recorded always is): the read follows the units, not the history.
    let mut meeting: Vec<(&FileRef, Ranges)> = Vec::new();
    for f in files {
        let mine = ranges_in(f, ranges)?;
        if !mine.is_empty() {
            meeting.push((f, mine));
        }
    }
    debug!(
        files = files.len(),
        read = meeting.len(),
        "dead-letter files whose offsets may meet the backfill's ranges"
    );
    for (file, ranges) in meeting {
        let path = object_store::path::Path::from(file.path.as_str());
        let unreadable = |e: String| BackfillError::Source {
            unit: file.path.clone(),
            reason: format!(
                "dead-letter file does not read (a vacuum that ran meanwhile removes replaced files: run the backfill again): {e}"
            ),
        };
        // Range reads of the footer and the three columns: the `raw` column, the records'
        // bytes, is most of a dead-letter file and is never fetched.
        let reader = crate::store::ParquetRanges::new(store.clone(), path, file.bytes);
        let builder = ParquetRecordBatchStreamBuilder::new(reader)
            .await
            .map_err(|e| unreadable(e.to_string()))?;
        let columns = ["topic", "partition", "offset"];
        let mask = ProjectionMask::columns(builder.parquet_schema(), columns);
        let mut batches = builder
            .with_projection(mask)
            .build()
            .map_err(|e| unreadable(e.to_string()))?;
        while let Some(batch) = batches.next().await {
            let batch = batch.map_err(|e| unreadable(e.to_string()))?;
            let column = |name: &str| {
                batch
                    .column_by_name(name)
                    .ok_or_else(|| unreadable(format!("no {name} column")))
            };
            let (topics, partitions, offsets) = (
                column("topic")?.as_string_opt::<i32>(),
                column("partition")?.as_primitive_opt::<Int32Type>(),
                column("offset")?.as_primitive_opt::<Int64Type>(),
            );
            let (Some(topics), Some(partitions), Some(offsets)) = (topics, partitions, offsets)
            else {
                return Err(unreadable("unexpected column types".to_owned()));
            };
            for i in 0..batch.num_rows() {
                let (topic, partition, offset) =
                    (topics.value(i), partitions.value(i), offsets.value(i));
                if ranges
                    .get(topic)
                    .and_then(|p| p.get(&partition))
                    .is_some_and(|r| r.iter().any(|&(a, b, _)| offset >= a && offset < b))
                {
                    out.entry(topic.to_owned())
                        .or_default()
                        .insert((partition, offset));
                }
            }
        }
    }
    Ok(out)
}

/// The committed data files of each of `hours` of `dataset`, read through a view loaded
/// again every [`ledger::VIEW_RELOAD`]: each hour's set comes from one view, and hours do
/// not depend on one another.
pub(crate) async fn files_of_hours(
    store: &Arc<dyn ObjectStore>,
    dataset: &str,
    hours: impl IntoIterator<Item = String>,
) -> Result<Vec<(String, Vec<FileRef>)>, BackfillError> {
    let names = [dataset.to_owned()];
    let load = || CommittedView::load(store.clone(), &names);
    let mut view = load().await?;
    let mut loaded = std::time::Instant::now();
    let mut out = Vec::new();
    for hour in hours {
        if loaded.elapsed() > ledger::VIEW_RELOAD {
            view = load().await?;
            loaded = std::time::Instant::now();
        }
        let files = view.data_files(dataset, &hour).await?;
        out.push((hour, files));
    }
    Ok(out)
}

/// Stages and finishes one attempt, retrying the same attempt (same sequence number,
/// epoch, files and bytes: idempotent) while the store's answer is unknown or it is
/// unreachable, for up to about five minutes; a verdict is returned at once.
async fn commit_until_settled(
    protocol: &Protocol,
    attempt: &mut Attempt,
) -> Result<Outcome, LedgerError> {
    const ROUNDS: u32 = 12;
    let mut delay = std::time::Duration::from_millis(500);
    let mut round = 1;
    loop {
        let result = async {
            if !attempt.staged() {
                protocol.stage(attempt).await?;
            }
            protocol.finish(attempt).await
        }
        .await;
        match result {
            Err(e) if e.is_retryable() && round < ROUNDS => {
                warn!(stream = %protocol.ledger.stream(), seq = attempt.entry.seq, round, error = %e, retry_in_ms = delay.as_millis() as u64, "backfill commit not settled, retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(std::time::Duration::from_secs(30));
                round += 1;
            }
            other => return other,
        }
    }
}

/// One unit on its way: a fresh decoder and chain, open files, dead letters.
struct UnitRun<'a> {
    bf: &'a Backfill,
    unit: &'a Unit,
    decoder: BatchDecoder,
    chain: Chain,
    writer: PartitionWriter,
    dead: DeadLetterBuffer,
    pending: Vec<SourceRecord>,
    pending_bytes: usize,
    /// Records of the pending batch skipped as already dead-lettered: they count towards
    /// the batch's size, so batches start at the same records whichever are skipped.
    pending_skipped: usize,
    records: u64,
    outside: u64,
    /// Kafka: the records the dataset's dead letters already hold.
    refused: &'a Refused,
    already_dead: u64,
    event_time: String,
}

/// One record of a source: where it came from (for dead letters) and its bytes.
#[derive(Debug, Clone)]
pub struct SourceRecord {
    /// Archive: the file; kafka: the topic.
    pub origin: String,
    /// Archive: -1; kafka: the partition.
    pub partition: i32,
    /// Archive: the line number (from 1); kafka: the offset.
    pub offset: i64,
    pub timestamp: Option<i64>,
    pub payload: Vec<u8>,
}

const BATCH_RECORDS: usize = 8192;
const BATCH_BYTES: usize = 16 << 20;

impl<'a> UnitRun<'a> {
    fn new(
        bf: &'a Backfill,
        unit: &'a Unit,
        refused: &'a Refused,
    ) -> Result<UnitRun<'a>, BackfillError> {
        let ds = &bf.ds;
        let chain_err = |reason: String| BackfillError::Chain {
            dataset: ds.name.clone(),
            reason,
        };
        let decoder = BatchDecoder::new(
            &ds.resolved.schema,
            DecoderOptions {
                unknown_fields: ds.resolved.config.unknown_fields,
                max_record_bytes: ds.resolved.config.max_record_bytes as usize,
            },
        )
        .map_err(|e| chain_err(e.to_string()))?;
        let chain = Chain::build(
            &ds.operators,
            &ds.name,
            ds.resolved.input_schema.clone(),
            bf.secrets.as_ref(),
            &bf.resources,
        )
        .map_err(|e| chain_err(e.to_string()))?;
        let mut lineage = vec![
            (
                "weir.version".to_owned(),
                env!("CARGO_PKG_VERSION").to_owned(),
            ),
            ("weir.dataset".to_owned(), ds.name.clone()),
            ("weir.schema".to_owned(), ds.resolved.schema.name.clone()),
            ("weir.config_hash".to_owned(), bf.config_hash.clone()),
        ];
        lineage.extend(chain.lineage());
        let mut writer = PartitionWriter::new(
            &ds.name,
            chain.output_schema().clone(),
            &ds.resolved.schema.event_time,
            &bf.config.parquet,
            lineage,
        )?;
        // A unit spans few hours (an archive file its time window, an entry its commit);
        // more wait as Arrow rows instead of holding codec contexts.
        writer.set_max_open(8);
        Ok(UnitRun {
            bf,
            unit,
            decoder,
            chain,
            writer,
            dead: DeadLetterBuffer::default(),
            pending: Vec::new(),
            pending_bytes: 0,
            pending_skipped: 0,
            records: 0,
            outside: 0,
            refused,
            already_dead: 0,
            event_time: ds.resolved.schema.event_time.clone(),
        })
    }

    fn push(&mut self, record: SourceRecord) -> Result<(), BackfillError> {
        // A record an earlier run refused stays in the dead letters: re-deriving it would
        // put it in the table as well (see `dead_lettered_offsets`).
        if self
            .refused
            .get(&record.origin)
            .is_some_and(|r| r.contains(&(record.partition, record.offset)))
        {
            self.records += 1;
            self.already_dead += 1;
            self.pending_skipped += 1;
            self.pending_bytes += record.payload.len();
        } else {
            self.pending_bytes += record.payload.len();
            self.pending.push(record);
        }
        if self.pending.len() + self.pending_skipped >= BATCH_RECORDS
            || self.pending_bytes >= BATCH_BYTES
        {
            self.flush()?;
        }
        Ok(())
    }

    fn dead_letter(&mut self, r: &SourceRecord, stage: &str, kind: &str, error: String) {
        self.dead.push(DeadLetter {
            topic: r.origin.clone(),
            partition: r.partition,
            offset: r.offset,
            kafka_timestamp: r.timestamp,
            stage: stage.to_owned(),
            error_kind: kind.to_owned(),
            error,
            raw: r.payload.clone(),
        });
    }

    fn flush(&mut self) -> Result<(), BackfillError> {
        self.pending_skipped = 0;
        if self.pending.is_empty() {
            self.pending_bytes = 0;
            return Ok(());
        }
        let batch = std::mem::take(&mut self.pending);
        self.pending_bytes = 0;
        let n = batch.len();
        self.records += n as u64;
        let payloads: Vec<&[u8]> = batch.iter().map(|r| r.payload.as_slice()).collect();
        let decoded = self.decoder.decode(&payloads);
        // Records the dead letters held were skipped in `push`: a record refused here had a
        // row in the table until now (a stricter config: a smaller `max_record_bytes`, ...).
        // The replace takes that row out if it lies in the range's hours, and the record
        // then goes to the dead letters. Without an event time there is no telling which
        // hour it lay in, so a unit whose entry also wrote hours outside the range stops.
        if let (UnitSource::Offsets { outside_hours, .. }, Some(r)) =
            (&self.unit.what, decoded.rejects.first())
        {
            let record = &batch[r.index];
            let reason = match outside_hours {
                Some(hours) if hours.is_empty() => None,
                Some(hours) => Some(format!(
                    "its entry also wrote rows to {}, outside the range, whose files stay: back-fill a range that covers them",
                    hours.join(", ")
                )),
                None => Some(
                    "the plan was recorded by an older weir, which did not note the entry's other hours: give a new --id"
                        .to_owned(),
                ),
            };
            if let Some(reason) = reason {
                return Err(BackfillError::Source {
                    unit: self.unit.name.clone(),
                    reason: format!(
                        "{} record(s) had a row and no longer decode (first: offset {}, {}: {}); \
                         its row may be in an hour this backfill keeps, so it cannot be moved to the \
                         dead letters without being in both: {reason}",
                        decoded.rejects.len(),
                        record.offset,
                        r.error.kind.as_str(),
                        r.error.reason
                    ),
                });
            }
        }
        for r in &decoded.rejects {
            self.dead_letter(
                &batch[r.index],
                "decode",
                r.error.kind.as_str(),
                r.error.reason.clone(),
            );
        }
        let positions = weir_schemas::Decoded::accepted_positions(&decoded.rejects, n);
        let (from, to) = (
            self.bf.opts.from.timestamp_nanos_opt().unwrap_or(i64::MIN),
            self.bf.opts.to.timestamp_nanos_opt().unwrap_or(i64::MAX),
        );
        let times = event_times(&decoded.batch, &self.event_time);
        let mut outside = Vec::new();
        let mut kept = Vec::new();
        for (row, t) in times.iter().enumerate() {
            match t {
                Some(t) if *t >= from && *t < to => kept.push(positions[row]),
                // Null event times are the decoder's to refuse; keep them for the writer's
                // check (which dead-letters them).
                None => kept.push(positions[row]),
                Some(_) => outside.push(row),
            }
        }
        self.outside += outside.len() as u64;
        let input =
            crate::event_time::without(&decoded.batch, &outside).map_err(WriteError::from)?;
        let failure = match self.chain.process(input) {
            Ok(out) => match self.writer.write(&out) {
                Ok(()) => None,
                Err(e @ WriteError::NullEventTime { .. }) => Some((
                    "write".to_owned(),
                    weir_schemas::DecodeErrorKind::InvalidEventTime.as_str(),
                    e.to_string(),
                )),
                Err(e) => return Err(e.into()),
            },
            Err(e) => Some((e.stage, "operator_error", e.error.to_string())),
        };
        if let Some((stage, kind, error)) = failure {
            warn!(unit = %self.unit.name, stage = %stage, error_kind = kind, error = %error, records = kept.len(), "batch failed after decoding; it goes to dead letters");
            for &i in &kept {
                self.dead_letter(&batch[i], &stage, kind, error.clone());
            }
        }
        Ok(())
    }
}

/// The event times of `batch`'s column `name`, in nanoseconds (whatever its unit).
fn event_times(batch: &RecordBatch, name: &str) -> Vec<Option<i64>> {
    let Ok(index) = batch.schema().index_of(name) else {
        return vec![None; batch.num_rows()];
    };
    let column = batch.column(index);
    let Ok(nanos) = arrow::compute::cast(column, &DataType::Timestamp(TimeUnit::Nanosecond, None))
    else {
        return vec![None; batch.num_rows()];
    };
    let Some(nanos) = nanos.as_any().downcast_ref::<TimestampNanosecondArray>() else {
        return vec![None; batch.num_rows()];
    };
    (0..nanos.len())
        .map(|i| (!nanos.is_null(i)).then(|| nanos.value(i)))
        .collect()
}

/// A progress bar on a terminal, periodic log lines otherwise.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    total_units: usize,
    total_bytes: u64,
    started: Instant,
    last_log: Instant,
    units_done: usize,
    bytes_done: u64,
}

impl Progress {
    fn new(total_bytes: u64, total_units: usize) -> Progress {
        use std::io::IsTerminal;
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new(total_bytes);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{bar:30} {bytes}/{total_bytes} {bytes_per_sec} eta {eta} {msg}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            bar
        });
        Progress {
            bar,
            total_units,
            total_bytes,
            started: Instant::now(),
            last_log: Instant::now(),
            units_done: 0,
            bytes_done: 0,
        }
    }

    fn unit_done(&mut self, bytes: u64, summary: &Summary) {
        self.units_done += 1;
        self.bytes_done += bytes;
        let (units, done_bytes) = (self.units_done, self.bytes_done);
        if let Some(bar) = &self.bar {
            bar.inc(bytes);
            bar.set_message(format!(
                "{units}/{} units, {} records",
                self.total_units, summary.records
            ));
            return;
        }
        if self.last_log.elapsed() < std::time::Duration::from_secs(10) && units < self.total_units
        {
            return;
        }
        self.last_log = Instant::now();
        let secs = self.started.elapsed().as_secs_f64().max(1e-3);
        let rate = done_bytes as f64 / secs;
        let eta = if rate > 0.0 {
            (self.total_bytes.saturating_sub(done_bytes)) as f64 / rate
        } else {
            0.0
        };
        info!(
            units = %format!("{units}/{}", self.total_units),
            records = summary.records,
            bytes_per_second = rate as u64,
            eta_seconds = eta as u64,
            "backfill progress"
        );
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::ObjectStoreExt as _;

    #[test]
    fn times_are_hours_or_rfc3339_on_the_hour() {
        assert_eq!(
            parse_hour("2026-12-05T07").unwrap().to_rfc3339(),
            "2026-12-05T07:00:00+00:00"
        );
        assert_eq!(
            parse_hour("2026-12-05T07:00:00Z").unwrap(),
            parse_hour("2026-12-05T08:00:00+01:00").unwrap()
        );
        assert!(
            parse_hour("2026-12-05T07:30:00Z")
                .unwrap_err()
                .contains("whole hour")
        );
        assert!(parse_hour("yesterday").is_err());
    }

    #[test]
    fn shards_split_units_without_overlap() {
        let names: Vec<String> = (0..300)
            .map(|i| format!("20261205/file-{i}.log.gz"))
            .collect();
        let shards: Vec<Shard> = (0..3).map(|i| Shard { index: i, count: 3 }).collect();
        for n in &names {
            assert_eq!(shards.iter().filter(|s| s.owns(n)).count(), 1, "{n}");
            assert!(Shard::ALL.owns(n));
        }
        // Every shard gets some.
        for s in &shards {
            assert!(names.iter().filter(|n| s.owns(n)).count() > 50);
        }
        assert!(Shard::parse("3/3").is_err());
        assert!(Shard::parse("0/0").is_err());
        assert_eq!(Shard::parse("1/3").unwrap(), Shard { index: 1, count: 3 });
    }

    #[test]
    fn hours_of_a_range() {
        let h = hours(
            parse_hour("2026-12-04T22").unwrap(),
            parse_hour("2026-12-05T01").unwrap(),
        );
        assert_eq!(
            h,
            vec![
                "date=2026-12-04/hour=22",
                "date=2026-12-04/hour=23",
                "date=2026-12-05/hour=00"
            ]
        );
    }

    /// A dead-letter file is opened only when its spans meet the ranges: files outside
    /// them are never read (here they do not even exist), files without spans always are.
    #[tokio::test]
    async fn dead_letters_are_read_only_from_files_that_meet_the_ranges() {
        let store: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
        let letter = |topic: &str, partition: i32, offset: i64| DeadLetter {
            topic: topic.to_owned(),
            partition,
            offset,
            kafka_timestamp: None,
            stage: "decode".to_owned(),
            error_kind: "invalid_json".to_owned(),
            error: "bad".to_owned(),
            raw: b"{".to_vec(),
        };
        let mut written = Vec::new();
        for (name, letters) in [
            (
                "a",
                vec![letter("t", 0, 10), letter("t", 0, 20), letter("u", 0, 30)],
            ),
            ("b", vec![letter("t", 1, 17)]),
        ] {
            let mut buffer = DeadLetterBuffer::default();
            for l in letters {
                buffer.push(l);
            }
            let file = buffer.close("ds", name, 0).unwrap().unwrap();
            store
                .put(&file.path.as_str().into(), file.bytes.clone())
                .await
                .unwrap();
            written.push(file.file_ref());
        }
        let (a, b) = (written[0].clone(), written[1].clone());
        assert_eq!(
            a.offsets.as_ref().unwrap(),
            &[
                ledger::OffsetSpan {
                    topic: "t".into(),
                    partition: 0,
                    first: 10,
                    last: 20,
                    resets: 0
                },
                ledger::OffsetSpan {
                    topic: "u".into(),
                    partition: 0,
                    first: 30,
                    last: 30,
                    resets: 0
                },
            ]
        );
        let missing = |name: &str, offsets| FileRef {
            path: format!("_weir/dead_letter/ds/{name}"),
            rows: 1,
            bytes: 100,
            newest_written: None,
            offsets,
        };
        let beyond = missing(
            "beyond",
            Some(vec![ledger::OffsetSpan {
                topic: "t".into(),
                partition: 0,
                first: 50,
                last: 90,
                resets: 0,
            }]),
        );
        let ranges: Ranges = [("t".to_owned(), [(0, vec![(15, 50, 0)])].into())].into();
        let found = dead_letters_in(&store, &[a.clone(), b.clone(), beyond.clone()], &ranges)
            .await
            .unwrap();
        assert_eq!(found, [("t".to_owned(), [(0, 20)].into())].into());
        // The span's last offset is inside the range: the file is read (and fails).
        let ranges: Ranges = [("t".to_owned(), [(0, vec![(90, 95, 0)])].into())].into();
        assert!(dead_letters_in(&store, &[beyond], &ranges).await.is_err());
        // A file named before spans were recorded may hold anything.
        let ranges: Ranges = [("t".to_owned(), [(0, vec![(15, 50, 0)])].into())].into();
        assert!(
            dead_letters_in(&store, &[a.clone(), missing("old", None)], &ranges)
                .await
                .is_err()
        );
        // Merged files carry their inputs' spans, or none when an input has none.
        let merged = ledger::OffsetSpan::merged([&a, &b]).unwrap();
        assert_eq!(
            merged
                .iter()
                .map(|s| (s.topic.as_str(), s.partition, s.first, s.last))
                .collect::<Vec<_>>(),
            [("t", 0, 10, 20), ("t", 1, 17, 17), ("u", 0, 30, 30)]
        );
        assert!(ledger::OffsetSpan::merged([&a, &missing("old", None)]).is_none());

        // After the partition's offsets went back (resets 1), spans of the old records
        // (resets 0) at the same offsets are other records: such a file is not read, and
        // a file holding both cannot tell them apart.
        let span = |first, last, resets| ledger::OffsetSpan {
            topic: "t".into(),
            partition: 0,
            first,
            last,
            resets,
        };
        let ranges: Ranges = [("t".to_owned(), [(0, vec![(15, 50, 1)])].into())].into();
        let old = missing("old-records", Some(vec![span(10, 40, 0)]));
        assert!(
            dead_letters_in(&store, &[old], &ranges)
                .await
                .unwrap()
                .is_empty()
        );
        // A file named without spans predates every counted reset: its records are the
        // old ones.
        assert!(
            dead_letters_in(&store, &[missing("legacy", None)], &ranges)
                .await
                .unwrap()
                .is_empty()
        );
        let both = missing("both", Some(vec![span(10, 40, 0), span(20, 30, 1)]));
        let err = dead_letters_in(&store, &[both], &ranges).await.unwrap_err();
        assert!(err.to_string().contains("cannot tell them apart"), "{err}");
        // Rows are matched against the ranges the file's own spans meet under its count:
        // its partition-1 records (count 0) are not taken for the backfill's (count 1).
        let mut buffer = DeadLetterBuffer::default();
        buffer.push(letter("t", 0, 25));
        buffer.push(letter("t", 1, 5));
        let closed = buffer.close("ds", "two-partitions", 0).unwrap().unwrap();
        store
            .put(&closed.path.as_str().into(), closed.bytes.clone())
            .await
            .unwrap();
        let mut two = closed.file_ref();
        two.offsets = Some(vec![
            span(25, 25, 1),
            ledger::OffsetSpan {
                partition: 1,
                ..span(5, 5, 0)
            },
        ]);
        let ranges: Ranges = [(
            "t".to_owned(),
            [(0, vec![(15, 50, 1)]), (1, vec![(0, 10, 1)])].into(),
        )]
        .into();
        assert_eq!(
            dead_letters_in(&store, &[two], &ranges).await.unwrap(),
            [("t".to_owned(), [(0, 25)].into())].into()
        );
        let merged = ledger::OffsetSpan::of([("t", 0, 1, 30), ("t", 0, 0, 12), ("t", 0, 1, 20)]);
        assert_eq!(merged, vec![span(12, 12, 0), span(20, 30, 1)]);
    }

    #[test]
    fn plans_of_a_newer_format_are_refused() {
        let path = object_store::path::Path::from("_weir/backfill/ds/x/plan.json");
        let json = |format: &str| {
            format!(
                r#"{{{format}"id":"x","dataset":"ds","from":"a","to":"b","source":"kafka","replace":true,"shards":1,"config_hash":"h","units":[]}}"#
            )
        };
        assert_eq!(Plan::parse(&path, json("").as_bytes()).unwrap().format, 0);
        let current = json(&format!(r#""format":{PLAN_FORMAT},"#));
        assert_eq!(
            Plan::parse(&path, current.as_bytes()).unwrap().format,
            PLAN_FORMAT
        );
        let newer = json(&format!(r#""format":{},"#, PLAN_FORMAT + 1));
        let err = Plan::parse(&path, newer.as_bytes()).unwrap_err();
        assert!(err.to_string().contains("newer weir"), "{err}");
    }

    #[test]
    fn ids_are_checked() {
        assert!(check_id("nightly-2026-12-04").is_ok());
        assert!(check_id("a/b").is_err());
        assert!(check_id("").is_err());
    }
}
