//! The ledger: Weir's commit log, and the only thing that makes a file part of the table.
//!
//! One ledger stream exists per (dataset, topic, partition), so writers of different
//! partitions never contend for the same object name. Within a stream:
//!
//! ```text
//! _weir/ledger/<dataset>/<topic>/<partition>/
//!     epochs/<epoch>.json           one per ownership: claimed create-if-absent on assignment
//!     pending/<seq>-e<epoch>.json   intent: the files a commit attempt is about to upload
//!     entries/<seq>.json            THE commit: files + offset range + operator state + epoch
//!     hours/<bucket>/<seq>.json     manifest: the files of one hour (or the dead letters)
//!                                   named by entries 1..=seq
//!     checkpoints/<seq>.json        every N entries, after the manifests of the hours its
//!                                   entries touched: entry <seq> (no file lists)
//!     _last_checkpoint              hint: seq of the newest checkpoint (overwritten)
//! ```
//!
//! Cost does not grow with history (ledger version 2, [`hours`]): recovery reads the
//! newest checkpoint and at most N entries after it, probed by name; a query reads those
//! per stream plus one manifest per stream and hour it touches. Epoch claims, checkpoints
//! and manifests that are superseded are deleted; entries are kept (the `commits` table).
//!
//! A commit of partition p by a writer holding epoch E, after reading entry N (the steps
//! live in [`crate::commit::Protocol`]):
//!
//! ```text
//!  1. put pending/<N+1>-e<E>        (names the files below; so a crash leaves no unknown file)
//!  2. upload data + dead-letter files (names carry first offset, N+1 and E: never reused)
//!  3. put entries/<N+1> if absent  ──▶ created, or present and carrying our identity
//!        │                              (E + writer id): committed, the files are in the table
//!        │                         └─▶ present with another identity: another writer committed
//!        │                              N+1 first (we are a zombie, or it was): delete_unnamed
//!        │                              reads entry N+1 and deletes only files it does not name
//!  4. delete pending/<N+1>-e<E>     (best effort; recovery removes leftovers)
//!  5. commit p's Kafka group offset (only for lag metrics; never read back)
//! ```
//!
//! Entry N+1 always starts at entry N's `next_offset`: an entry is written only by a writer
//! that has read entry N, and entry names are created exactly once. So the entries of a
//! stream tile the partition's offsets without gap or overlap, whoever wrote them. Two
//! recorded exceptions, both under `kafka.on_offset_gap = "record"`: offsets the broker
//! deleted before they were read are inside an entry's range and counted in its
//! `skipped_offsets`; and after the partition's offsets went back (topic recreated) the next
//! entry starts at the new, lower offset. Offsets that hold no record (transaction markers,
//! compacted records) are counted in `holes`, so an entry accounts for each offset it covers:
//! read (`records`), a recorded gap (`skipped_offsets`) or a hole.
//!
//! Invariants this module keeps (design.md):
//! * **The ledger is the commit point (2).** A data file is in the table iff an entry names
//!   it; queries read the set of named files, never a directory listing.
//! * **Fencing (3).** Entries are created with `PutMode::Create`. Two writers cannot both
//!   create entry N+1; the loser deletes its files. A writer that sees an entry with a
//!   higher epoch than its own knows it lost the partition and stops.
//! * **Resume from the ledger.** A partition resumes at its newest entry's `next_offset`,
//!   with that entry's operator state; Kafka's committed offset is never read.
//! * **Clean for plain readers (5).** Recovery deletes the files of every intent that no
//!   entry committed, before the new owner consumes anything.
//! * **Unknown outcomes are resolved by reading (8).** A create-if-absent that answers
//!   "already exists", or fails in any way, may have landed: the object is read back (with
//!   retries) and is ours iff it carries our writer identity, the epoch plus the writer id
//!   that is unique per process start (`Shared::owner`). Fields are compared, never bytes. A
//!   read that fails is "unknown" ([`LedgerError::Unknown`] or [`LedgerError::Store`]), never
//!   "theirs": the caller retries the whole, idempotent step later. An object that does not
//!   parse is [`LedgerError::Corrupt`], naming it.
//! * **Deleting is the dangerous step.** Every data or dead-letter file Weir deletes goes
//!   through [`PartitionLedger::delete_unnamed`], which first reads the committed entry of
//!   the attempt's sequence number and deletes only files that entry does not name. A file of
//!   the attempt at N can only ever be named by entry N: its name carries N and the epoch.
//!
//! Recovery by a new owner holding epoch F, when the tail is entry N:
//!
//! ```text
//!  a. put epochs/<F> if absent       (F greater than every earlier claim; a claim that is
//!                                     present is ours iff it carries our writer id)
//!  b. read the tail: entry N
//!  c. an intent pending/<N+1>-e<E>, E < F, exists? Its writer may only be paused, and
//!     could still create entries/<N+1> after we delete its files. So first:
//!     put entries/<N+1> if absent, as a takeover entry (no records, next_offset of N)
//!        ├─▶ ours: N+1 is ours; no older attempt can ever commit; the tail is now N+1
//!        └─▶ theirs: that writer committed after all; its files are real: back to b.
//!  d. for every intent at or below the tail: delete_unnamed(its seq, its files). The intent
//!     of an attempt that lost is kept for INTENT_GRACE (its writer, if only paused, could
//!     still be uploading: the next recovery deletes what lands late), then removed
//! ```
//!
//! ## Who retries what
//!
//! Three layers, each with one job. A step's outcome is unknown when its call failed in
//! any way after the request may have reached the store (lost answer, reset, timeout).
//!
//! | layer | retries | on what |
//! |---|---|---|
//! | object_store's client (`RetryConfig`, set in `store::open`) | one HTTP request, ≤ 3 times within 20 s | 5xx, 429, connect errors; timeouts and resets of idempotent requests. It retries conditional PUTs too, so "already exists" can answer our own write: resolved by reading |
//! | `store::retry` (8 tries, 100 ms doubling to 10 s, seeded jitter) | one store call of Weir's | the transient errors the client gave up on |
//! | the worker's commit task (`worker::run_commit`, 0.5 s doubling to 30 s, no limit) | the whole commit attempt, same seq, epoch, files and bytes | unknown outcomes and unreachable stores, until committed, revoked or the shutdown deadline; the partition reads on until its memory share is full, then stops consuming, and `/healthz` says so |
//!
//! | step | kind | outcome unknown → |
//! |---|---|---|
//! | a. claim `epochs/<F>` | conditional | read back: our writer id → ours; another → try F+1; unreadable → recovery retried |
//! | b. read tail (hint, checkpoint, entries after it) | read | retried; never decides anything from an error |
//! | c. takeover `entries/<N+1>` | conditional | read back by identity, as step 3 |
//! | d. delete orphans | delete (only via `delete_unnamed`) | idempotent: retried; "not found" is done |
//! | 1. put intent | overwrite, idempotent (same bytes) | the attempt is retried |
//! | 2. upload files (put or multipart) | overwrite, idempotent (same name, same bytes) | the attempt is retried; a half multipart upload is never visible |
//! | 3. create `entries/<N+1>` | conditional | read back: our identity → committed; another → fenced, `delete_unnamed`; unreadable → the attempt is retried |
//! | 4. delete intent (`Protocol::tidy`; the partition worker runs it beside its next commit, and awaits the last one on a clean stop) | delete, best effort | recovery removes leftovers |
//! | checkpoint: manifests, then the checkpoint object | conditional; any writer's copy at a seq is equivalent | skipped, the next one covers it; manifests without their checkpoint are correct for their seq |
//! | `_last_checkpoint` hint | overwrite, best effort | a stale or missing hint only costs a longer listing |

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;

use base64::Engine as _;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};
use thiserror::Error;
use tracing::{debug, info, warn};
use weir_operators::chain::{ChainState, SavedState};

use crate::store::retry;

mod hours;

pub use hours::{
    Change, DEAD_LETTER_BUCKET, FLAT_BUCKET, HourManifest, SUPERSEDED_GRACE, StreamSnapshot,
    VIEW_RELOAD, bucket_of,
};

/// Format version of entries, checkpoints and manifests written by this build. Version 2
/// added per-hour manifests and checkpoints without file lists ([`hours`]); a stream
/// written by version 1 is read as it is and converted by its first version-2 checkpoint.
pub const LEDGER_VERSION: u32 = 2;
/// Entries read at once when probing the entries after a checkpoint.
const PROBE_WINDOW: u64 = 16;
/// Epoch claims kept below the newest one.
const EPOCHS_KEPT: u64 = 4;
const ATTEMPTS: u32 = 8;

#[derive(Debug, Error)]
pub enum LedgerError {
    #[error(
        "ledger {stream}: entry {seq} was committed by another writer (epoch {theirs}, ours {ours})"
    )]
    Fenced {
        stream: String,
        seq: u64,
        ours: u64,
        theirs: u64,
    },
    #[error("ledger {stream}: object store: {source}")]
    Store {
        stream: String,
        #[source]
        source: object_store::Error,
    },
    #[error("ledger {stream}: corrupt object {path}: {reason}")]
    Corrupt {
        stream: String,
        path: String,
        reason: String,
    },
    #[error(
        "ledger {stream}: entry version {version} is newer than this build understands ({LEDGER_VERSION})"
    )]
    TooNew { stream: String, version: u32 },
    /// A snapshot read its hours' manifests too long after it was taken: the manifests it
    /// would choose may have been superseded and deleted meanwhile, and reading on would
    /// silently miss their files. Load a fresh view.
    #[error(
        "ledger {stream}: the view of it is {age_s} s old, too old to read its hour manifests safely (they are deleted {grace_s} s after being superseded); load it again"
    )]
    Stale {
        stream: String,
        age_s: u64,
        grace_s: u64,
    },
    /// A conditional write's outcome could not be settled by reading (the object was
    /// reported present and then not found): neither ours nor theirs yet.
    #[error("ledger {stream}: outcome of writing {path} is unknown: {reason}")]
    Unknown {
        stream: String,
        path: String,
        reason: String,
    },
}

impl LedgerError {
    pub fn is_fenced(&self) -> bool {
        matches!(self, LedgerError::Fenced { .. })
    }

    /// Whether the operation may succeed when retried later: the store failed or an
    /// outcome is unknown. Fencing, corrupt objects and newer formats are verdicts.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            LedgerError::Store { .. } | LedgerError::Unknown { .. }
        )
    }
}

/// A file an entry names, relative to the lake root.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FileRef {
    pub path: String,
    pub rows: u64,
    pub bytes: u64,
    /// Dead-letter files that compaction merged only: when the newest of its inputs was
    /// first written to the lake (an input's own `newest_written`, or else the time its
    /// object was last modified, which for a file a commit wrote is the commit's). Retention
    /// ages dead letters by it, so merging them does not make them young again. `None` for
    /// every other file: its object's last-modified time is its age.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub newest_written: Option<chrono::DateTime<chrono::Utc>>,
    /// Dead-letter files only: which records the file may hold, as the lowest and highest
    /// offset of each topic and partition in it (a merged file carries its inputs' spans).
    /// A Kafka backfill reads only the dead-letter files whose spans meet its ranges, so
    /// its cost follows the range and not the dead letters' history. `None` for data files
    /// and for dead-letter files named before spans were recorded: those may hold anything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offsets: Option<Vec<OffsetSpan>>,
}

/// The offsets of one topic and partition a dead-letter file holds: `first..=last`, with
/// no claim that every offset in between is in it. An archive's dead letters use the
/// archive file as `topic`, `-1` as `partition` and line numbers as offsets.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct OffsetSpan {
    pub topic: String,
    pub partition: i32,
    pub first: i64,
    pub last: i64,
    /// The [`Entry::offset_resets`] of the entries that read these records: the same
    /// offsets under another count are other records (a recreated topic).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub resets: u64,
}

impl OffsetSpan {
    /// The spans of `records` (topic, partition, offset resets, offset), one per topic,
    /// partition and count, sorted by them.
    pub fn of<'a>(records: impl IntoIterator<Item = (&'a str, i32, u64, i64)>) -> Vec<OffsetSpan> {
        let mut spans: BTreeMap<(&str, i32, u64), (i64, i64)> = BTreeMap::new();
        for (topic, partition, resets, offset) in records {
            let span = spans
                .entry((topic, partition, resets))
                .or_insert((offset, offset));
            span.0 = span.0.min(offset);
            span.1 = span.1.max(offset);
        }
        spans
            .into_iter()
            .map(|((topic, partition, resets), (first, last))| OffsetSpan {
                topic: topic.to_owned(),
                partition,
                first,
                last,
                resets,
            })
            .collect()
    }

    /// The spans of files merged into one: `None` when any of them has none (it may hold
    /// anything, and so may the merged file).
    pub fn merged<'a>(files: impl IntoIterator<Item = &'a FileRef>) -> Option<Vec<OffsetSpan>> {
        let mut all = Vec::new();
        for f in files {
            for s in f.offsets.as_ref()? {
                all.push((s.topic.as_str(), s.partition, s.resets, s.first));
                all.push((s.topic.as_str(), s.partition, s.resets, s.last));
            }
        }
        Some(OffsetSpan::of(all))
    }
}

impl FileRef {
    /// When the newest of this file's rows was first written: `newest_written`, or else
    /// `modified`, the time its object was last modified.
    pub fn written(
        &self,
        modified: chrono::DateTime<chrono::Utc>,
    ) -> chrono::DateTime<chrono::Utc> {
        self.newest_written.unwrap_or(modified)
    }
}

/// One operator's snapshot, base64 in JSON, under the operator's identity: its type
/// (`operator`) and its name. Entries written before operators had names have no `name`;
/// their states are matched by position and type (see `weir_operators::chain`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorState {
    pub position: usize,
    pub operator: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub state: String,
}

/// A committed ledger entry (`entries/<seq>.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub version: u32,
    pub seq: u64,
    pub epoch: u64,
    /// Who wrote the entry: unique per process start (see `Shared::owner`). Together with
    /// `epoch` it is the writer identity that decides "mine or theirs" after an unknown
    /// outcome. Empty in entries written before it existed.
    #[serde(default)]
    pub writer: String,
    pub dataset: String,
    pub topic: String,
    pub partition: i32,
    /// First Kafka offset this entry covers (the previous entry's `next_offset`).
    pub start_offset: i64,
    /// Where the partition resumes: one past the last offset covered.
    pub next_offset: i64,
    /// Kafka records consumed in `[start_offset, next_offset)`.
    pub records: u64,
    /// Rows written to `files` (after sampling).
    pub rows: u64,
    /// Records sent to dead letters.
    pub dead_lettered: u64,
    /// Offsets in `[start_offset, next_offset)` that were never read because the broker no
    /// longer had them (retention passed the resume point, topic recreated): a recorded gap.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub skipped_offsets: u64,
    /// Offsets in `[start_offset, next_offset)` passed over without a record while the
    /// broker's log started at or below them: transaction markers, records of aborted
    /// transactions (under `read_committed`), records removed by log compaction. With
    /// `records` and `skipped_offsets` they account for every offset a partition's entry
    /// with records covers: `records + skipped_offsets + holes = next_offset -
    /// start_offset`. (A rewind entry's `skipped_offsets` are records of the offsets before
    /// the rewind; backfill units carry no offsets.) Entries written before it existed read
    /// as 0 and may leave holes out of that sum.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub holes: u64,
    /// Partition streams: how many times the partition's offsets went back (the topic was
    /// recreated or its offsets reset: an entry that starts below its predecessor's
    /// `next_offset`) up to and including this entry; each entry carries its predecessor's
    /// count. Offsets of entries with different counts name different records, which a
    /// Kafka backfill must not confuse. Entries written before it existed read as 0, so a
    /// reset recorded by such an older binary is not counted.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub offset_resets: u64,
    pub files: Vec<FileRef>,
    pub dead_letters: Vec<FileRef>,
    /// Files this entry takes out of the table. Only replace entries of a dataset's
    /// maintenance stream ([`PartitionLedger::maintenance`]: compaction, retention,
    /// backfills that replace hours) have any; `files` are then the files put in their
    /// place, and readers see the old set or the new set, never both.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removed: Vec<FileRef>,
    #[serde(default)]
    pub operator_state: Vec<OperatorState>,
    pub config_hash: String,
    pub weir_version: String,
    /// A takeover entry: written by a new owner before it deletes the files of another
    /// writer's uncommitted attempt, so that attempt can never be committed afterwards.
    /// Covers no records; `next_offset` is the previous entry's (or -1 when there is none).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub takeover: bool,
    /// Backfills only ([`crate::backfill`]): the source units (archive files, offset
    /// ranges) whose rows this entry committed in full. A backfill's progress is the union of
    /// its entries' units.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub units: Vec<String>,
    /// A maintenance replace entry that publishes a `--replace` backfill: its id. The entry
    /// adds the backfill's staged files and removes the rows they re-derive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backfill: Option<String>,
    /// With `backfill`: this maintenance entry abandons that `--replace` backfill instead of
    /// publishing it (`weir backfill --abandon`). It adds and removes nothing: the staged
    /// files never enter the table, `weir vacuum` deletes them, and the id can neither run
    /// nor publish again. A binary older than this field reads the entry as the backfill's
    /// publication, which adds nothing: it stays out of the table there too.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub abandoned: bool,
    /// Entries that wrote rows (a partition's, a backfill unit's): how their rows were
    /// placed in hours, as the dataset's schema said then
    /// ([`weir_schemas::DatasetSchema::event_time_rule`]). A Kafka backfill whose schema
    /// places records otherwise cannot tell which old row lies in which hour. `None` in
    /// entries without rows and in entries written before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_time: Option<String>,
}

impl Entry {
    pub fn chain_state(&self) -> Result<ChainState, String> {
        let mut operators = Vec::with_capacity(self.operator_state.len());
        for s in &self.operator_state {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(&s.state)
                .map_err(|e| format!("operator state of {}: {e}", s.operator))?;
            operators.push(SavedState {
                position: s.position,
                kind: s.operator.clone(),
                name: s.name.clone(),
                bytes,
            });
        }
        Ok(ChainState { operators })
    }

    pub fn encode_state(state: &ChainState) -> Vec<OperatorState> {
        state
            .operators
            .iter()
            .map(|saved| OperatorState {
                position: saved.position,
                operator: saved.kind.clone(),
                name: saved.name.clone(),
                state: base64::engine::general_purpose::STANDARD.encode(&saved.bytes),
            })
            .collect()
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// `pending/<seq>-e<epoch>.json`: what a commit attempt is about to upload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Intent {
    pub version: u32,
    pub seq: u64,
    pub epoch: u64,
    #[serde(default)]
    pub writer: String,
    pub paths: Vec<String>,
}

/// How long the intent of an attempt that lost its sequence number is kept after its files
/// were deleted: its writer may be a paused zombie whose upload is still to land, and the
/// intent is how a later recovery finds (and deletes) such a file.
pub const INTENT_GRACE: std::time::Duration = std::time::Duration::from_secs(3600);

/// What [`PartitionLedger::delete_unnamed`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deleted {
    /// Files deleted (or already gone).
    pub files: usize,
    /// Epoch of the committed entry that was read before deleting.
    pub entry_epoch: u64,
}

/// `checkpoints/<seq>.json`: entry `seq` itself, written once the per-hour manifests of
/// every bucket that entries since the previous checkpoint touched are in place (version
/// 2). A version-1 checkpoint instead lists every file named by entries `..=seq`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub version: u32,
    pub seq: u64,
    /// Version 1 only: every data file named up to `seq`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<FileRef>,
    /// Version 1 only: every dead-letter file named up to `seq`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dead_letters: Vec<FileRef>,
    pub last: Entry,
    /// Version 2: the buckets whose manifests this checkpoint's fold wrote.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub buckets: Vec<String>,
}

/// What recovery found: the newest entry (if any), for resuming.
#[derive(Debug, Clone, Default)]
pub struct Tail {
    pub last: Option<Entry>,
}

impl Tail {
    pub fn next_seq(&self) -> u64 {
        self.last.as_ref().map_or(1, |e| e.seq + 1)
    }
    pub fn next_offset(&self) -> Option<i64> {
        self.last
            .as_ref()
            .map(|e| e.next_offset)
            .filter(|&o| o >= 0)
    }
}

/// The ledger stream of one (dataset, topic, partition).
#[derive(Debug, Clone)]
pub struct PartitionLedger {
    store: Arc<dyn ObjectStore>,
    dataset: String,
    topic: String,
    partition: i32,
    root: String,
}

fn seq_name(seq: u64) -> String {
    format!("{seq:020}")
}

pub fn ledger_root(dataset: &str) -> String {
    format!("_weir/ledger/{dataset}")
}

/// Where a dataset's maintenance stream lives (outside [`ledger_root`], so no Kafka topic
/// name can collide with it).
pub fn maintenance_root(dataset: &str) -> String {
    format!("_weir/maintenance/{dataset}")
}

/// Backfill streams ([`crate::backfill`]) are named `@backfill.<id>` (rows added as they
/// commit) or `@staged.<id>` (`--replace`: out of the table until published), partition =
/// shard. `@` cannot occur in a Kafka topic name, so no partition's stream collides.
pub const BACKFILL_PREFIX: &str = "@backfill.";
pub const STAGED_PREFIX: &str = "@staged.";

/// Whether a stream holds a `--replace` backfill's staged files.
pub fn is_staged(topic: &str) -> bool {
    topic.starts_with(STAGED_PREFIX)
}

/// The topic and partition a maintenance stream's entries carry.
pub const MAINTENANCE_TOPIC: &str = "_maintenance";
pub const MAINTENANCE_PARTITION: i32 = -1;

impl PartitionLedger {
    pub fn new(store: Arc<dyn ObjectStore>, dataset: &str, topic: &str, partition: i32) -> Self {
        PartitionLedger {
            store,
            dataset: dataset.to_owned(),
            topic: topic.to_owned(),
            partition,
            root: format!("{}/{topic}/{partition}", ledger_root(dataset)),
        }
    }

    /// The maintenance stream of `dataset`: the one ledger stream that is not a Kafka
    /// partition's. Jobs that rewrite committed hours (compaction, retention, backfills
    /// with replace) commit replace entries here, with the same protocol as partitions
    /// (epochs, intents, create-if-absent entries, takeover). Jobs contend only with each
    /// other, never with `weir run`.
    pub fn maintenance(store: Arc<dyn ObjectStore>, dataset: &str) -> Self {
        PartitionLedger {
            store,
            dataset: dataset.to_owned(),
            topic: MAINTENANCE_TOPIC.to_owned(),
            partition: MAINTENANCE_PARTITION,
            root: maintenance_root(dataset),
        }
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    pub fn partition(&self) -> i32 {
        self.partition
    }

    pub fn stream(&self) -> String {
        format!("{}/{}/{}", self.dataset, self.topic, self.partition)
    }

    fn err(&self, source: object_store::Error) -> LedgerError {
        LedgerError::Store {
            stream: self.stream(),
            source,
        }
    }

    fn corrupt(&self, path: &Path, reason: impl ToString) -> LedgerError {
        LedgerError::Corrupt {
            stream: self.stream(),
            path: path.to_string(),
            reason: reason.to_string(),
        }
    }

    fn entry_path(&self, seq: u64) -> Path {
        Path::from(format!("{}/entries/{}.json", self.root, seq_name(seq)))
    }

    fn intent_path(&self, seq: u64, epoch: u64) -> Path {
        Path::from(format!(
            "{}/pending/{}-e{epoch:010}.json",
            self.root,
            seq_name(seq)
        ))
    }

    fn checkpoint_path(&self, seq: u64) -> Path {
        Path::from(format!("{}/checkpoints/{}.json", self.root, seq_name(seq)))
    }

    fn hint_path(&self) -> Path {
        Path::from(format!("{}/_last_checkpoint", self.root))
    }

    async fn get_json<T: for<'de> Deserialize<'de>>(
        &self,
        path: &Path,
    ) -> Result<Option<T>, LedgerError> {
        match self.get_bytes(path).await? {
            None => Ok(None),
            Some(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| self.corrupt(path, e)),
        }
    }

    /// Reads an object, retrying transient failures; `None` when it does not exist.
    async fn get_bytes(&self, path: &Path) -> Result<Option<bytes::Bytes>, LedgerError> {
        crate::store::get_if_exists(&self.store, path, "ledger get", ATTEMPTS)
            .await
            .map_err(|e| self.err(e))
    }

    /// Lists the objects directly under `dir`, with their metadata. One delimited listing
    /// of that folder alone (a recursive listing costs some servers the whole bucket).
    async fn list_metas(&self, dir: &str) -> Result<Vec<object_store::ObjectMeta>, LedgerError> {
        let (mut metas, _) = self.list_level(dir).await?;
        metas.sort_by(|a, b| a.location.cmp(&b.location));
        Ok(metas)
    }

    /// One delimited listing of `dir`: its objects and its sub-folders (relative to the
    /// stream's root).
    async fn list_level(
        &self,
        dir: &str,
    ) -> Result<(Vec<object_store::ObjectMeta>, Vec<String>), LedgerError> {
        let prefix = Path::from(format!("{}/{dir}", self.root));
        let store = self.store.clone();
        let listed = retry("ledger list", ATTEMPTS, || {
            let store = store.clone();
            let prefix = prefix.clone();
            async move { store.list_with_delimiter(Some(&prefix)).await }
        })
        .await
        .map_err(|e| self.err(e))?;
        let root = format!("{}/", self.root);
        let dirs = listed
            .common_prefixes
            .iter()
            .filter_map(|p| p.as_ref().strip_prefix(&root).map(str::to_owned))
            .collect();
        Ok((listed.objects, dirs))
    }

    /// Every object below `dir`, in one recursive listing (paginated by the store).
    async fn list_tree(&self, dir: &str) -> Result<Vec<object_store::ObjectMeta>, LedgerError> {
        let prefix = Path::from(format!("{}/{dir}", self.root));
        let store = self.store.clone();
        let mut metas = retry("ledger list", ATTEMPTS, || {
            let store = store.clone();
            let prefix = prefix.clone();
            async move { store.list(Some(&prefix)).try_collect::<Vec<_>>().await }
        })
        .await
        .map_err(|e| self.err(e))?;
        metas.sort_by(|a, b| a.location.cmp(&b.location));
        Ok(metas)
    }

    /// Lists the file names (last path segment) directly under `dir`.
    async fn list_names(&self, dir: &str) -> Result<Vec<String>, LedgerError> {
        let mut names: Vec<String> = self
            .list_metas(dir)
            .await?
            .into_iter()
            .filter_map(|m| m.location.filename().map(str::to_owned))
            .collect();
        names.sort();
        Ok(names)
    }

    /// Claims a new epoch for `owner` (this process start's writer id): one higher than
    /// any claimed before.
    pub async fn claim_epoch(&self, owner: &str) -> Result<u64, LedgerError> {
        // Indexed before it can hold an entry, so readers of the index never miss it.
        if self.partition != MAINTENANCE_PARTITION {
            let store = self.store.clone();
            let path = index_path(&self.dataset, &self.topic, self.partition);
            retry("streams index", ATTEMPTS, || {
                let store = store.clone();
                let path = path.clone();
                async move { store.put(&path, PutPayload::default()).await }
            })
            .await
            .map_err(|e| self.err(e))?;
        }
        let names = self.list_names("epochs").await?;
        let mut epoch = names
            .iter()
            .filter_map(|n| n.strip_suffix(".json")?.parse::<u64>().ok())
            .max()
            .unwrap_or(0)
            + 1;
        loop {
            let path = Path::from(format!("{}/epochs/{}.json", self.root, seq_name(epoch)));
            let body =
                serde_json::json!({ "version": LEDGER_VERSION, "epoch": epoch, "owner": owner });
            let created = self
                .create(&path, serde_json::to_vec(&body).expect("json"), |b| {
                    let v: serde_json::Value = serde_json::from_slice(b)?;
                    Ok(v.get("epoch").and_then(|e| e.as_u64()) == Some(epoch)
                        && v.get("owner").and_then(|o| o.as_str()) == Some(owner))
                })
                .await?;
            match created {
                Created::Ours => break,
                Created::Theirs(_) => epoch += 1,
            }
        }
        // Claims below ours only ever served to pick a number above them; keep a few for
        // the record and drop the rest (best effort), so the listing above stays short.
        for name in &names {
            if let Some(old) = name
                .strip_suffix(".json")
                .and_then(|n| n.parse::<u64>().ok())
                && old + EPOCHS_KEPT < epoch
            {
                let path = Path::from(format!("{}/epochs/{name}", self.root));
                let _ = self.store.delete(&path).await;
            }
        }
        Ok(epoch)
    }

    /// Creates `path` if absent, and settles whose object is there by reading it.
    ///
    /// Any answer but success may hide a write that landed: "already exists" can be our
    /// own earlier try (ours, or object_store's retry underneath us), and an error may
    /// have come after the store applied the request. So the object is read back and
    /// `is_ours` compares its identity fields. A read that fails leaves the outcome
    /// unknown (an error the caller retries), never "theirs".
    async fn create(
        &self,
        path: &Path,
        body: Vec<u8>,
        is_ours: impl Fn(&[u8]) -> Result<bool, serde_json::Error>,
    ) -> Result<Created, LedgerError> {
        let body = bytes::Bytes::from(body);
        let store = self.store.clone();
        let put = retry("ledger create", ATTEMPTS, || {
            let store = store.clone();
            let path = path.clone();
            let payload = PutPayload::from(body.clone());
            async move {
                let opts = PutOptions {
                    mode: PutMode::Create,
                    ..Default::default()
                };
                store.put_opts(&path, payload, opts).await
            }
        })
        .await;
        match put {
            Ok(_) => Ok(Created::Ours),
            Err(
                object_store::Error::AlreadyExists { .. }
                | object_store::Error::Precondition { .. },
            ) => {
                let Some(found) = self.get_bytes(path).await? else {
                    return Err(LedgerError::Unknown {
                        stream: self.stream(),
                        path: path.to_string(),
                        reason: "reported present, then not found".to_owned(),
                    });
                };
                match is_ours(&found) {
                    Ok(true) => {
                        debug!(path = %path, "conditional write found in place with our identity");
                        Ok(Created::Ours)
                    }
                    Ok(false) => Ok(Created::Theirs(found)),
                    Err(e) => Err(self.corrupt(path, e)),
                }
            }
            Err(e) => Err(self.err(e)),
        }
    }

    /// Reads the newest entry, starting from the newest checkpoint. Costs the checkpoint
    /// and the entries after it, never the history.
    pub async fn tail(&self) -> Result<Tail, LedgerError> {
        let checkpoint = self.latest_checkpoint().await?;
        let after = checkpoint.as_ref().map_or(0, |c| c.seq);
        let mut newer = self.entries_after(after).await?;
        let last = match newer.pop() {
            Some(e) => Some(e),
            None => checkpoint.map(|c| c.last),
        };
        Ok(Tail { last })
    }

    /// What a reader needs of this stream: the newest checkpoint and every entry after it.
    pub async fn snapshot(&self) -> Result<StreamSnapshot, LedgerError> {
        let checkpoint = self.latest_checkpoint().await?;
        let after = checkpoint.as_ref().map_or(0, |c| c.seq);
        let tail = self.entries_after(after).await?;
        let high = tail.last().map_or(after, |e| e.seq);
        let checkpointed = checkpoint.as_ref().map(|c| c.last.clone());
        let legacy = checkpoint
            .filter(|c| c.version < 2)
            .map(|c| c.files.into_iter().chain(c.dead_letters).collect());
        Ok(StreamSnapshot::new(
            self.clone(),
            legacy,
            tail,
            checkpointed,
            high,
        ))
    }

    /// Entries `after+1, after+2, …` up to the first that does not exist, oldest first.
    /// Entries are created in order without holes, so the first missing one ends the
    /// stream; they are read by name in parallel windows, never listed.
    pub async fn entries_after(&self, after: u64) -> Result<Vec<Entry>, LedgerError> {
        let mut out = Vec::new();
        let mut from = after + 1;
        loop {
            let window: Vec<Option<Entry>> = futures::stream::iter(from..from + PROBE_WINDOW)
                .map(|seq| {
                    let ledger = self.clone();
                    async move { ledger.read_entry(seq).await }
                })
                .buffered(PROBE_WINDOW as usize)
                .try_collect()
                .await?;
            let mut ended = false;
            for e in window {
                match e {
                    Some(e) => out.push(e),
                    None => {
                        ended = true;
                        break;
                    }
                }
            }
            if ended {
                return Ok(out);
            }
            from += PROBE_WINDOW;
        }
    }

    /// The (topic, partition) this stream is of.
    pub fn topic_partition(&self) -> (String, i32) {
        (self.topic.clone(), self.partition)
    }

    /// When entry `seq` was committed (its object's last-modified time), if it exists.
    pub async fn entry_written(
        &self,
        seq: u64,
    ) -> Result<Option<chrono::DateTime<chrono::Utc>>, LedgerError> {
        let path = self.entry_path(seq);
        let head = retry("ledger head", ATTEMPTS, || {
            let store = self.store.clone();
            let path = path.clone();
            async move {
                match store.head(&path).await {
                    Ok(meta) => Ok(Some(meta.last_modified)),
                    Err(object_store::Error::NotFound { .. }) => Ok(None),
                    Err(e) => Err(e),
                }
            }
        })
        .await;
        head.map_err(|e| self.err(e))
    }

    /// Entry `seq`, if it exists; an entry of a newer format is an error.
    pub async fn read_entry(&self, seq: u64) -> Result<Option<Entry>, LedgerError> {
        let path = self.entry_path(seq);
        let Some(entry) = self.get_json::<Entry>(&path).await? else {
            return Ok(None);
        };
        if entry.version > LEDGER_VERSION {
            return Err(LedgerError::TooNew {
                stream: self.stream(),
                version: entry.version,
            });
        }
        Ok(Some(entry))
    }

    async fn latest_checkpoint(&self) -> Result<Option<Checkpoint>, LedgerError> {
        let hinted: Option<u64> = match self.get_json::<serde_json::Value>(&self.hint_path()).await
        {
            Ok(Some(v)) => v.get("seq").and_then(|s| s.as_u64()),
            _ => None,
        };
        if let Some(seq) = hinted
            && let Some(c) = self.read_checkpoint(seq).await?
        {
            return Ok(Some(c));
        }
        // No hint, or its checkpoint was garbage-collected: the listing decides.
        let newest = self
            .list_names("checkpoints")
            .await?
            .iter()
            .filter_map(|n| n.strip_suffix(".json")?.parse::<u64>().ok())
            .max();
        match newest {
            None => Ok(None),
            Some(seq) => self.read_checkpoint(seq).await,
        }
    }

    async fn read_checkpoint(&self, seq: u64) -> Result<Option<Checkpoint>, LedgerError> {
        let c: Option<Checkpoint> = self.get_json(&self.checkpoint_path(seq)).await?;
        if let Some(c) = &c
            && c.version > LEDGER_VERSION
        {
            return Err(LedgerError::TooNew {
                stream: self.stream(),
                version: c.version,
            });
        }
        Ok(c)
    }

    /// Records what a commit attempt will upload (step 1).
    pub async fn write_intent(
        &self,
        seq: u64,
        epoch: u64,
        writer: &str,
        paths: &[String],
    ) -> Result<(), LedgerError> {
        let intent = Intent {
            version: LEDGER_VERSION,
            seq,
            epoch,
            writer: writer.to_owned(),
            paths: paths.to_vec(),
        };
        let body = serde_json::to_vec(&intent).expect("json");
        let store = self.store.clone();
        let path = self.intent_path(seq, epoch);
        retry("ledger intent", ATTEMPTS, || {
            let store = store.clone();
            let path = path.clone();
            let body = body.clone();
            async move { store.put(&path, PutPayload::from(body)).await }
        })
        .await
        .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Creates `entries/<seq>` (step 3). `Fenced` when an entry with another writer
    /// identity is there.
    pub async fn commit(&self, entry: &Entry) -> Result<(), LedgerError> {
        let path = self.entry_path(entry.seq);
        let body = serde_json::to_vec_pretty(entry).expect("json");
        let created = self
            .create(&path, body, |b| {
                let found: Entry = serde_json::from_slice(b)?;
                Ok(found.seq == entry.seq
                    && found.epoch == entry.epoch
                    && found.writer == entry.writer)
            })
            .await?;
        match created {
            Created::Ours => {
                debug!(stream = %self.stream(), seq = entry.seq, next_offset = entry.next_offset, "ledger entry committed");
                Ok(())
            }
            Created::Theirs(found) => {
                let theirs: Entry =
                    serde_json::from_slice(&found).map_err(|e| self.corrupt(&path, e))?;
                Err(LedgerError::Fenced {
                    stream: self.stream(),
                    seq: entry.seq,
                    ours: entry.epoch,
                    theirs: theirs.epoch,
                })
            }
        }
    }

    /// Every file the intents in `pending/` name: files of commit attempts in flight (or
    /// of attempts that lost, kept for [`INTENT_GRACE`]).
    pub async fn pending_paths(&self) -> Result<Vec<String>, LedgerError> {
        let mut out = Vec::new();
        for meta in self.list_metas("pending").await? {
            if let Some(intent) = self.get_json::<Intent>(&meta.location).await? {
                out.extend(intent.paths);
            }
        }
        Ok(out)
    }

    /// Deletes an intent after its commit (step 4); failures are left to recovery.
    pub async fn clear_intent(&self, seq: u64, epoch: u64) {
        if let Err(e) = self.store.delete(&self.intent_path(seq, epoch)).await {
            debug!(stream = %self.stream(), seq, error = %e, "could not delete intent; recovery will");
        }
    }

    /// Deletes the files of the attempt at `seq` that the committed entry `seq` does not
    /// name. This is the only way Weir deletes a data or dead-letter file: a fenced attempt,
    /// orphan cleanup at recovery and a takeover all come here, and nothing is deleted
    /// before that entry has been read. `None` when entry `seq` does not exist (nothing is
    /// deleted then: without the committed entry there is no proof).
    pub async fn delete_unnamed(
        &self,
        seq: u64,
        paths: &[String],
    ) -> Result<Option<Deleted>, LedgerError> {
        let Some(entry) = self.get_json::<Entry>(&self.entry_path(seq)).await? else {
            warn!(stream = %self.stream(), seq, files = paths.len(), "no committed entry for this attempt's sequence number; keeping its files");
            return Ok(None);
        };
        let named: HashSet<&str> = entry
            .files
            .iter()
            .chain(&entry.dead_letters)
            .map(|f| f.path.as_str())
            .collect();
        let doomed: Vec<String> = paths
            .iter()
            .filter(|p| !named.contains(p.as_str()))
            .cloned()
            .collect();
        if !doomed.is_empty() {
            crate::failpoint::hit("orphan-cleanup");
            info!(stream = %self.stream(), seq, entry_epoch = entry.epoch, files = doomed.len(), "removing files that committed entry does not name");
            self.delete_files(&doomed).await?;
        }
        Ok(Some(Deleted {
            files: doomed.len(),
            entry_epoch: entry.epoch,
        }))
    }

    async fn delete_files(&self, paths: &[String]) -> Result<(), LedgerError> {
        for p in paths {
            let store = self.store.clone();
            let path = Path::from(p.as_str());
            retry("delete orphan", ATTEMPTS, || {
                let store = store.clone();
                let path = path.clone();
                async move {
                    match store.delete(&path).await {
                        Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                        Err(e) => Err(e),
                    }
                }
            })
            .await
            .map_err(|e| self.err(e))?;
        }
        Ok(())
    }

    /// Settles intents older than [`INTENT_GRACE`] at `now` at or below the tail, for `weir vacuum`
    /// (recovery does the same on assignment): the files their entry does not name are
    /// deleted through [`Self::delete_unnamed`], then the intent. Intents past the tail
    /// belong to a commit in flight (or to the next recovery) and are left alone. Returns
    /// (intents removed, files deleted).
    pub async fn expire_intents(
        &self,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<(usize, usize), LedgerError> {
        let tail = self.tail().await?;
        let last_seq = tail.last.as_ref().map_or(0, |e| e.seq);
        let (mut intents, mut files) = (0, 0);
        for meta in self.list_metas("pending").await? {
            let age = now
                .signed_duration_since(meta.last_modified)
                .to_std()
                .unwrap_or_default();
            if age < INTENT_GRACE {
                continue;
            }
            let Some(intent) = self.get_json::<Intent>(&meta.location).await? else {
                continue;
            };
            if intent.seq > last_seq {
                continue;
            }
            if let Some(done) = self.delete_unnamed(intent.seq, &intent.paths).await? {
                files += done.files;
                let _ = self.store.delete(&meta.location).await;
                intents += 1;
            }
        }
        Ok((intents, files))
    }

    /// Removes the files of every intent that no entry committed. Returns the tail to
    /// resume from and how many files were deleted.
    ///
    /// An intent past the tail may belong to a writer that is only paused: it could still
    /// create that entry after we delete its files. So before deleting anything past the
    /// tail, the new owner (`epoch`, `writer`) takes the next sequence number itself with a
    /// takeover entry (create-if-absent); from then on no older attempt can commit. If the
    /// other writer wins that race, its entry is real and recovery starts over from the new
    /// tail. Files are then deleted through [`Self::delete_unnamed`] only.
    pub async fn clean_orphans(
        &self,
        mut tail: Tail,
        epoch: u64,
        writer: &str,
    ) -> Result<(Tail, usize), LedgerError> {
        let mut intents = Vec::new();
        for meta in self.list_metas("pending").await? {
            if let Some(intent) = self.get_json::<Intent>(&meta.location).await? {
                intents.push((meta, intent));
            }
        }
        let last_seq = tail.last.as_ref().map_or(0, |e| e.seq);
        if intents
            .iter()
            .any(|(_, i)| i.seq > last_seq && i.epoch < epoch)
        {
            let previous = tail.last.as_ref();
            let next_offset = previous.map_or(-1, |e| e.next_offset);
            let takeover = Entry {
                version: LEDGER_VERSION,
                seq: last_seq + 1,
                epoch,
                writer: writer.to_owned(),
                dataset: self.dataset.clone(),
                topic: self.topic.clone(),
                partition: self.partition,
                start_offset: next_offset,
                next_offset,
                records: 0,
                rows: 0,
                dead_lettered: 0,
                skipped_offsets: 0,
                holes: 0,
                offset_resets: previous.map_or(0, |e| e.offset_resets),
                files: Vec::new(),
                dead_letters: Vec::new(),
                removed: Vec::new(),
                operator_state: previous
                    .map(|e| e.operator_state.clone())
                    .unwrap_or_default(),
                config_hash: previous.map(|e| e.config_hash.clone()).unwrap_or_default(),
                weir_version: env!("CARGO_PKG_VERSION").to_owned(),
                takeover: true,
                units: Vec::new(),
                backfill: None,
                abandoned: false,
                event_time: None,
            };
            match self.commit(&takeover).await {
                Ok(()) => {
                    info!(stream = %self.stream(), seq = takeover.seq, epoch, "takeover entry written before removing another writer's uncommitted files");
                    tail.last = Some(takeover);
                }
                Err(LedgerError::Fenced { .. }) => {
                    // The other writer committed after all: its files are real.
                    let tail = self.tail().await?;
                    return Box::pin(self.clean_orphans(tail, epoch, writer)).await;
                }
                Err(e) => return Err(e),
            }
        }
        let last_seq = tail.last.as_ref().map_or(0, |e| e.seq);
        let now = chrono::Utc::now();
        let mut deleted = 0;
        for (meta, intent) in intents {
            if intent.seq > last_seq {
                // Our own epoch never has intents at recovery; a newer epoch's intent means
                // we are already superseded: leave it to its owner.
                continue;
            }
            let Some(done) = self.delete_unnamed(intent.seq, &intent.paths).await? else {
                continue;
            };
            deleted += done.files;
            // The winning attempt's intent has served its purpose. A losing attempt's writer
            // may be a zombie still uploading: keep its intent a while so a later recovery
            // finds what lands late.
            let won = done.entry_epoch == intent.epoch;
            let age = now
                .signed_duration_since(meta.last_modified)
                .to_std()
                .unwrap_or_default();
            if won || age >= INTENT_GRACE {
                let _ = self.store.delete(&meta.location).await;
            }
        }
        Ok((tail, deleted))
    }

    /// Writes a checkpoint at `entry.seq`: folds the entries since the previous checkpoint
    /// into the manifests of the buckets they touched, then creates the checkpoint object
    /// (see [`hours`] for the rule that makes this safe to crash and repeat). Any writer's
    /// manifest or checkpoint at a given seq folds the same committed entries, so whoever's
    /// is there will do. Superseded manifests and checkpoints are deleted after
    /// [`SUPERSEDED_GRACE`].
    pub async fn checkpoint(&self, entry: &Entry) -> Result<(), LedgerError> {
        let c = entry.seq;
        let previous = self.latest_checkpoint().await?;
        let (p, legacy) = match previous {
            Some(cp) if cp.seq >= c => return Ok(()),
            Some(cp) if cp.version < 2 => {
                let all: Vec<FileRef> = cp.files.into_iter().chain(cp.dead_letters).collect();
                (cp.seq, Some(all))
            }
            Some(cp) => (cp.seq, None),
            None => (0, None),
        };
        let entries: Vec<Entry> = futures::stream::iter(p + 1..=c)
            .map(|seq| {
                let ledger = self.clone();
                async move {
                    let path = ledger.entry_path(seq);
                    ledger
                        .read_entry(seq)
                        .await?
                        .ok_or_else(|| ledger.corrupt(&path, "entry missing below a newer one"))
                }
            })
            .buffered(PROBE_WINDOW as usize)
            .try_collect()
            .await?;
        let mut touched: BTreeMap<String, Vec<(u64, hours::Change)>> = BTreeMap::new();
        for e in &entries {
            for (bucket, change) in hours::changes_by_bucket(e) {
                touched.entry(bucket).or_default().push((e.seq, change));
            }
        }
        // Converting a version-1 stream: every bucket its checkpoint names gets a manifest.
        let mut legacy_by_bucket: BTreeMap<String, Vec<FileRef>> = BTreeMap::new();
        for f in legacy.into_iter().flatten() {
            legacy_by_bucket
                .entry(bucket_of(&self.dataset, &f.path))
                .or_default()
                .push(f);
        }
        let buckets: BTreeSet<String> = touched
            .keys()
            .chain(legacy_by_bucket.keys())
            .cloned()
            .collect();
        let folds: Vec<_> = buckets
            .iter()
            .map(|bucket| {
                let ledger = self.clone();
                let bucket = bucket.clone();
                let touched = touched.get(&bucket).cloned().unwrap_or_default();
                let legacy = legacy_by_bucket.get(&bucket).cloned();
                async move {
                    ledger
                        .fold_bucket(&bucket, c, p, legacy.as_ref(), &touched)
                        .await
                }
            })
            .collect();
        futures::stream::iter(folds)
            .buffer_unordered(8)
            .try_collect::<Vec<()>>()
            .await?;
        let checkpoint = Checkpoint {
            version: LEDGER_VERSION,
            seq: c,
            files: Vec::new(),
            dead_letters: Vec::new(),
            last: entry.clone(),
            buckets: buckets.into_iter().collect(),
        };
        self.create(
            &self.checkpoint_path(c),
            serde_json::to_vec(&checkpoint).expect("json"),
            |_| Ok(true),
        )
        .await?;
        let hint = serde_json::json!({ "seq": c, "version": LEDGER_VERSION });
        let _ = self
            .store
            .put(
                &self.hint_path(),
                PutPayload::from(serde_json::to_vec(&hint).expect("json")),
            )
            .await;
        // Checkpoints below the previous one are superseded twice over.
        let mut checkpoints: Vec<(u64, object_store::ObjectMeta)> = self
            .list_metas("checkpoints")
            .await?
            .into_iter()
            .filter_map(|m| {
                let seq = m
                    .location
                    .filename()
                    .and_then(|n| n.strip_suffix(".json")?.parse::<u64>().ok())?;
                Some((seq, m))
            })
            .collect();
        checkpoints.sort_by_key(|(s, _)| *s);
        hours::delete_superseded(&self.store, &checkpoints, p).await;
        Ok(())
    }

    /// Writes the manifest of `bucket` at `c`: the newest manifest at or below `c` (or,
    /// converting a version-1 stream, its checkpoint's files at `p`) plus the files of the
    /// entries above it.
    async fn fold_bucket(
        &self,
        bucket: &str,
        c: u64,
        p: u64,
        legacy: Option<&Vec<FileRef>>,
        touched: &[(u64, hours::Change)],
    ) -> Result<(), LedgerError> {
        let existing = self
            .manifests(bucket)
            .await?
            .remove(bucket)
            .unwrap_or_default();
        let newest = existing.iter().rev().map(|(s, _)| *s).find(|&s| s <= c);
        if newest == Some(c) {
            return Ok(());
        }
        let (base_seq, mut files, mut removed) = match (newest, legacy) {
            (Some(s), Some(legacy)) if s < p => (p, legacy.clone(), Vec::new()),
            (Some(s), _) => {
                let m = self.read_manifest(bucket, s).await?;
                (s, m.files, m.removed)
            }
            (None, Some(legacy)) => (p, legacy.clone(), Vec::new()),
            (None, None) => (0, Vec::new(), Vec::new()),
        };
        let mut seen: HashSet<String> = files.iter().map(|f| f.path.clone()).collect();
        let mut gone: HashSet<String> = removed.iter().map(|f| f.path.clone()).collect();
        for (seq, change) in touched {
            if *seq > base_seq {
                for f in &change.added {
                    if seen.insert(f.path.clone()) {
                        files.push(f.clone());
                    }
                }
                for f in &change.removed {
                    if gone.insert(f.path.clone()) {
                        removed.push(f.clone());
                    }
                }
            }
        }
        let manifest = HourManifest {
            version: LEDGER_VERSION,
            seq: c,
            bucket: bucket.to_owned(),
            files,
            removed,
        };
        self.create(
            &self.manifest_path(bucket, c),
            serde_json::to_vec(&manifest).expect("json"),
            |_| Ok(true),
        )
        .await?;
        hours::delete_superseded(&self.store, &existing, base_seq).await;
        Ok(())
    }

    /// Every entry of this stream, oldest first, each with the time the store says its
    /// object was written (last-modified). Reads the whole history: for `weir query`'s
    /// `commits` table, never for recovery or commits.
    pub async fn entries(
        &self,
    ) -> Result<Vec<(Entry, chrono::DateTime<chrono::Utc>)>, LedgerError> {
        let mut metas = self.list_metas("entries").await?;
        metas.retain(|m| m.location.as_ref().ends_with(".json"));
        let read: Vec<Result<Option<(Entry, _)>, LedgerError>> = futures::stream::iter(metas)
            .map(|meta| async move {
                let entry = self.get_json::<Entry>(&meta.location).await?;
                Ok(entry.map(|e| (e, meta.last_modified)))
            })
            .buffered(16)
            .collect()
            .await;
        let mut out = Vec::with_capacity(read.len());
        for r in read {
            out.extend(r?);
        }
        Ok(out)
    }

    /// Every file named by this stream's entries: (data files, dead-letter files). Reads
    /// every manifest of the stream: for tests and tools, not for query planning.
    pub async fn committed_files(&self) -> Result<(Vec<FileRef>, Vec<FileRef>), LedgerError> {
        let snapshot = self.snapshot().await?;
        Ok((
            snapshot.data_files("").await?,
            snapshot.dead_letter_files().await?,
        ))
    }
}

enum Created {
    /// Created now, or found carrying our identity.
    Ours,
    /// Present with another writer's identity: its bytes.
    Theirs(bytes::Bytes),
}

/// Where the index of a dataset's streams lives: one empty object per stream,
/// `<topic>@<partition>` (`@` cannot occur in a Kafka topic name), and `_complete` once the
/// index is known to hold every stream. Readers list this one folder instead of the ledger's
/// tree (which some servers walk in full, entries and all, to answer a delimited listing).
pub fn streams_index_root(dataset: &str) -> String {
    format!("_weir/streams/{dataset}")
}

const INDEX_COMPLETE: &str = "_complete";

fn index_path(dataset: &str, topic: &str, partition: i32) -> Path {
    Path::from(format!(
        "{}/{topic}@{partition}",
        streams_index_root(dataset)
    ))
}

/// Every (topic, partition) stream that has a ledger for `dataset`.
///
/// From the streams index when it is complete. Otherwise (a lake whose streams were all
/// created before the index existed, or not yet indexed) from the ledger's folders, and
/// the index is then completed (best effort) for the next reader. Every stream is indexed
/// when it is claimed ([`PartitionLedger::claim_epoch`]), before it can hold an entry.
pub async fn streams(
    store: &Arc<dyn ObjectStore>,
    dataset: &str,
) -> Result<Vec<PartitionLedger>, object_store::Error> {
    let index = Path::from(streams_index_root(dataset));
    let listed = retry("streams index", ATTEMPTS, || {
        let store = store.clone();
        let index = index.clone();
        async move { store.list_with_delimiter(Some(&index)).await }
    })
    .await?;
    let names: Vec<String> = listed
        .objects
        .iter()
        .filter_map(|m| m.location.filename().map(str::to_owned))
        .collect();
    let parse = |name: &str| -> Option<(String, i32)> {
        let (topic, partition) = name.rsplit_once('@')?;
        Some((topic.to_owned(), partition.parse().ok()?))
    };
    if names.iter().any(|n| n == INDEX_COMPLETE) {
        let mut out: Vec<PartitionLedger> = names
            .iter()
            .filter_map(|n| parse(n))
            .map(|(topic, p)| PartitionLedger::new(store.clone(), dataset, &topic, p))
            .collect();
        out.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        return Ok(out);
    }
    let root = Path::from(ledger_root(dataset));
    let topics = store.list_with_delimiter(Some(&root)).await?;
    let mut out = Vec::new();
    for topic_dir in topics.common_prefixes {
        let Some(topic) = topic_dir.filename().map(str::to_owned) else {
            continue;
        };
        let parts = store.list_with_delimiter(Some(&topic_dir)).await?;
        for part_dir in parts.common_prefixes {
            if let Some(p) = part_dir.filename().and_then(|p| p.parse::<i32>().ok()) {
                out.push(PartitionLedger::new(store.clone(), dataset, &topic, p));
            }
        }
    }
    // Complete the index: every stream found, then the marker.
    let mut indexed = true;
    for l in &out {
        indexed &= store
            .put(
                &index_path(dataset, &l.topic, l.partition),
                PutPayload::default(),
            )
            .await
            .is_ok();
    }
    if indexed {
        let _ = store
            .put(
                &Path::from(format!("{}/{INDEX_COMPLETE}", streams_index_root(dataset))),
                PutPayload::default(),
            )
            .await;
    }
    Ok(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use object_store::memory::InMemory;

    /// An entry of dataset `ds`, topic `t`, partition 0, writer `w`, for tests.
    pub(crate) fn entry(seq: u64, epoch: u64, start: i64, next: i64, files: &[&str]) -> Entry {
        Entry {
            version: LEDGER_VERSION,
            seq,
            epoch,
            writer: "w".into(),
            dataset: "ds".into(),
            topic: "t".into(),
            partition: 0,
            start_offset: start,
            next_offset: next,
            records: (next - start) as u64,
            rows: 1,
            dead_lettered: 0,
            skipped_offsets: 0,
            holes: 0,
            offset_resets: 0,
            files: files
                .iter()
                .map(|p| FileRef {
                    path: (*p).into(),
                    rows: 1,
                    bytes: 1,
                    newest_written: None,
                    offsets: None,
                })
                .collect(),
            dead_letters: vec![],
            removed: vec![],
            operator_state: vec![],
            config_hash: "h".into(),
            weir_version: "test".into(),
            takeover: false,
            units: Vec::new(),
            backfill: None,
            abandoned: false,
            event_time: None,
        }
    }

    fn ledger() -> (Arc<dyn ObjectStore>, PartitionLedger) {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let l = PartitionLedger::new(store.clone(), "ds", "t", 0);
        (store, l)
    }

    /// `holes` is left out at 0 (an older binary's entries read the same) and kept otherwise.
    #[test]
    fn holes_are_optional_in_the_json() {
        let mut e = entry(3, 1, 10, 20, &["a.parquet"]);
        e.records = 7;
        let json = serde_json::to_string(&e).unwrap();
        assert!(!json.contains("holes"), "{json}");
        assert_eq!(serde_json::from_str::<Entry>(&json).unwrap().holes, 0);
        e.holes = 3;
        let json = serde_json::to_string(&e).unwrap();
        assert!(json.contains(r#""holes":3"#), "{json}");
        let back: Entry = serde_json::from_str(&json).unwrap();
        assert_eq!(
            back.records + back.skipped_offsets + back.holes,
            (back.next_offset - back.start_offset) as u64
        );
    }

    /// A dead-letter file's spans survive the ledger's JSON; a file named without them (an
    /// older weir, a data file) reads as one that may hold anything, and writes no key.
    #[test]
    fn offset_spans_are_optional_in_the_json() {
        let spans = OffsetSpan::of([
            ("t", 1, 0, 40),
            ("t", 0, 0, 7),
            ("t", 1, 0, 12),
            ("t", 0, 0, 9),
        ]);
        assert_eq!(
            spans
                .iter()
                .map(|s| (s.partition, s.first, s.last))
                .collect::<Vec<_>>(),
            [(0, 7, 9), (1, 12, 40)]
        );
        let with = FileRef {
            path: "_weir/dead_letter/ds/x.parquet".into(),
            rows: 4,
            bytes: 10,
            newest_written: None,
            offsets: Some(spans),
        };
        let json = serde_json::to_string(&with).unwrap();
        assert_eq!(serde_json::from_str::<FileRef>(&json).unwrap(), with);
        let old = r#"{"path":"_weir/dead_letter/ds/y.parquet","rows":1,"bytes":2}"#;
        let without: FileRef = serde_json::from_str(old).unwrap();
        assert_eq!(without.offsets, None);
        assert_eq!(serde_json::to_string(&without).unwrap(), old);
    }

    #[tokio::test]
    async fn empty_ledger_has_no_tail() {
        let (_, l) = ledger();
        let tail = l.tail().await.unwrap();
        assert!(tail.last.is_none());
        assert_eq!(tail.next_seq(), 1);
    }

    #[tokio::test]
    async fn epochs_increase_and_never_repeat() {
        let (_, l) = ledger();
        assert_eq!(l.claim_epoch("a").await.unwrap(), 1);
        assert_eq!(l.claim_epoch("b").await.unwrap(), 2);
        let l2 = l.clone();
        assert_eq!(l2.claim_epoch("c").await.unwrap(), 3);
    }

    #[tokio::test]
    async fn second_writer_of_same_seq_is_fenced() {
        let (_, l) = ledger();
        l.commit(&entry(1, 1, 0, 10, &["a.parquet"])).await.unwrap();
        let err = l
            .commit(&entry(1, 2, 0, 12, &["b.parquet"]))
            .await
            .unwrap_err();
        match err {
            LedgerError::Fenced {
                seq, ours, theirs, ..
            } => assert_eq!((seq, ours, theirs), (1, 2, 1)),
            other => panic!("{other}"),
        }
        let tail = l.tail().await.unwrap();
        assert_eq!(tail.last.unwrap().next_offset, 10);
    }

    #[tokio::test]
    async fn an_entry_that_landed_unanswered_is_recognised_as_ours_by_identity() {
        let (store, l) = ledger();
        let ours = entry(1, 4, 0, 10, &["a.parquet"]);
        // Our earlier try landed (its answer was lost) with the same identity; the retry
        // meets "already exists" on its first attempt.
        store
            .put(
                &l.entry_path(1),
                PutPayload::from(serde_json::to_vec(&ours).unwrap()),
            )
            .await
            .unwrap();
        let mut retry = ours.clone();
        retry.weir_version = "formatted differently".into();
        l.commit(&retry).await.unwrap();
        // Same epoch, another writer id: not ours.
        let mut other = ours.clone();
        other.writer = "another process".into();
        assert!(matches!(
            l.commit(&other).await,
            Err(LedgerError::Fenced { .. })
        ));
    }

    #[tokio::test]
    async fn an_object_that_does_not_parse_is_an_error_naming_it() {
        let (store, l) = ledger();
        store
            .put(
                &l.entry_path(1),
                PutPayload::from_static(b"{\"seq\": 1, trunc"),
            )
            .await
            .unwrap();
        match l.commit(&entry(1, 1, 0, 5, &[])).await {
            Err(LedgerError::Corrupt { path, .. }) => {
                assert!(
                    path.ends_with("entries/00000000000000000001.json"),
                    "{path}"
                )
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn files_are_deleted_only_when_the_committed_entry_does_not_name_them() {
        let (store, l) = ledger();
        for p in ["named.parquet", "unnamed.parquet"] {
            store
                .put(&Path::from(p), PutPayload::from_static(b"x"))
                .await
                .unwrap();
        }
        let both = ["named.parquet".to_owned(), "unnamed.parquet".to_owned()];
        // No entry for the sequence number: no proof, nothing deleted.
        assert_eq!(l.delete_unnamed(1, &both).await.unwrap(), None);
        assert!(store.head(&Path::from("unnamed.parquet")).await.is_ok());
        l.commit(&entry(1, 2, 0, 5, &["named.parquet"]))
            .await
            .unwrap();
        let done = l.delete_unnamed(1, &both).await.unwrap().unwrap();
        assert_eq!((done.files, done.entry_epoch), (1, 2));
        assert!(store.head(&Path::from("named.parquet")).await.is_ok());
        assert!(store.head(&Path::from("unnamed.parquet")).await.is_err());
    }

    fn hour_file(hour: u64, name: &str) -> String {
        format!("ds/date=2026-01-01/hour={hour:02}/{name}.parquet")
    }

    fn sorted(files: Vec<FileRef>) -> Vec<String> {
        let mut names: Vec<String> = files.into_iter().map(|f| f.path).collect();
        names.sort();
        names
    }

    #[tokio::test]
    async fn tail_and_files_through_checkpoints() {
        let (_, l) = ledger();
        let mut start = 0;
        let mut all = Vec::new();
        for seq in 1..=7 {
            let path = hour_file(seq % 3, &format!("f{seq}"));
            all.push(path.clone());
            let mut e = entry(seq, 1, start, start + 5, &[&path]);
            e.dead_letters.push(FileRef {
                path: format!("_weir/dead_letter/ds/d{seq}.parquet"),
                rows: 1,
                bytes: 1,
                newest_written: None,
                offsets: None,
            });
            l.commit(&e).await.unwrap();
            if seq % 3 == 0 {
                l.checkpoint(&e).await.unwrap();
            }
            start += 5;
        }
        let tail = l.tail().await.unwrap();
        assert_eq!(tail.last.as_ref().unwrap().seq, 7);
        assert_eq!(tail.next_offset(), Some(35));
        let (files, dead) = l.committed_files().await.unwrap();
        all.sort();
        assert_eq!(sorted(files), all);
        assert_eq!(dead.len(), 7);
        // One hour costs one manifest (and the entries after the checkpoint).
        let snap = l.snapshot().await.unwrap();
        assert_eq!(snap.high(), 7);
        assert_eq!(
            sorted(snap.data_files("date=2026-01-01/hour=01").await.unwrap()),
            vec![hour_file(1, "f1"), hour_file(1, "f4"), hour_file(1, "f7")]
        );
        assert_eq!(snap.data_files("date=2026-01-01").await.unwrap().len(), 7);
        assert!(snap.data_files("date=2026-01-02").await.unwrap().is_empty());
        // Checkpoints carry no file lists any more.
        let cp = l.latest_checkpoint().await.unwrap().unwrap();
        assert_eq!((cp.seq, cp.version, cp.files.len()), (6, LEDGER_VERSION, 0));
    }

    /// A snapshot that chooses manifests long after it was taken refuses, naming the stream:
    /// the manifest it would choose may have been deleted as superseded meanwhile, and its
    /// hour's files would be missing without an error (vacuum would then delete them).
    #[tokio::test]
    async fn an_old_snapshot_refuses_to_read_manifests() {
        let (_, l) = ledger();
        let e = entry(1, 1, 0, 5, &[&hour_file(1, "f1")]);
        l.commit(&e).await.unwrap();
        l.checkpoint(&e).await.unwrap();
        let mut snap = l.snapshot().await.unwrap();
        assert_eq!(snap.data_files("").await.unwrap().len(), 1);
        snap.age_for_test(hours::MAX_SNAPSHOT_AGE + std::time::Duration::from_secs(1));
        let err = snap.data_files("").await.unwrap_err();
        assert!(matches!(err, LedgerError::Stale { .. }), "{err}");
        assert!(err.to_string().contains("load it again"), "{err}");
        assert!(snap.dead_letter_files().await.is_err());
    }

    /// A stream written by version 1 (checkpoints that list every file) is read as it is,
    /// and the first version-2 checkpoint converts it into manifests.
    #[tokio::test]
    async fn a_version_1_stream_is_read_and_converted() {
        let (store, l) = ledger();
        let mut v1 = Vec::new();
        let mut start = 0;
        for seq in 1..=5u64 {
            let mut e = entry(
                seq,
                1,
                start,
                start + 5,
                &[&hour_file(seq % 2, &format!("v{seq}"))],
            );
            e.version = 1;
            v1.push(e);
            start += 5;
        }
        for e in &v1 {
            store
                .put(
                    &l.entry_path(e.seq),
                    PutPayload::from(serde_json::to_vec(e).unwrap()),
                )
                .await
                .unwrap();
        }
        // Version 1's checkpoint at 4: every file so far, no `buckets`.
        let files: Vec<serde_json::Value> = v1[..4]
            .iter()
            .map(|e| serde_json::to_value(&e.files[0]).unwrap())
            .collect();
        let checkpoint = serde_json::json!({
            "version": 1, "seq": 4, "files": files, "dead_letters": [],
            "last": serde_json::to_value(&v1[3]).unwrap(),
        });
        store
            .put(
                &l.checkpoint_path(4),
                PutPayload::from(serde_json::to_vec(&checkpoint).unwrap()),
            )
            .await
            .unwrap();
        store
            .put(&l.hint_path(), PutPayload::from_static(br#"{"seq":4}"#))
            .await
            .unwrap();
        let expect: Vec<String> = {
            let mut v: Vec<String> = v1.iter().map(|e| e.files[0].path.clone()).collect();
            v.sort();
            v
        };
        assert_eq!(sorted(l.committed_files().await.unwrap().0), expect);
        assert_eq!(l.tail().await.unwrap().last.unwrap().seq, 5);
        // The new build goes on: entry 6 and a checkpoint convert the stream.
        let e6 = entry(6, 2, 25, 30, &[&hour_file(7, "n6")]);
        l.commit(&e6).await.unwrap();
        l.checkpoint(&e6).await.unwrap();
        let cp = l.latest_checkpoint().await.unwrap().unwrap();
        assert_eq!((cp.seq, cp.version), (6, LEDGER_VERSION));
        let mut expect = expect;
        expect.push(hour_file(7, "n6"));
        expect.sort();
        assert_eq!(sorted(l.committed_files().await.unwrap().0), expect);
        let buckets: Vec<String> = l.manifests("").await.unwrap().into_keys().collect();
        assert_eq!(
            buckets,
            vec![
                "date=2026-01-01/hour=00",
                "date=2026-01-01/hour=01",
                "date=2026-01-01/hour=07"
            ]
        );
    }

    /// Seeded: commits, checkpoints, and folds that crash after some of their manifests,
    /// in random order. After every step a fresh reader sees exactly the files the entries
    /// name, per hour and in all.
    #[tokio::test]
    async fn readers_see_exactly_the_named_files_whatever_folds_did() {
        use rand::{Rng, SeedableRng};
        for seed in 0..20u64 {
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let (_, l) = ledger();
            let mut named: Vec<String> = Vec::new();
            for seq in 1..=60u64 {
                let start = seq as i64 - 1;
                let n = rng.random_range(0..=2);
                let paths: Vec<String> = (0..n)
                    .map(|i| hour_file(rng.random_range(0..6), &format!("s{seq}-{i}")))
                    .collect();
                let refs: Vec<&str> = paths.iter().map(String::as_str).collect();
                let e = entry(seq, 1, start, start + 1, &refs);
                l.commit(&e).await.unwrap();
                named.extend(paths);
                match rng.random_range(0..10) {
                    0..=1 => l.checkpoint(&e).await.unwrap(),
                    2 => {
                        // A fold that crashed after some manifests, before its checkpoint.
                        let p = l.latest_checkpoint().await.unwrap().map_or(0, |c| c.seq);
                        let mut touched: BTreeMap<String, Vec<(u64, hours::Change)>> =
                            BTreeMap::new();
                        for s in p + 1..=seq {
                            let e = l.read_entry(s).await.unwrap().unwrap();
                            for (b, f) in hours::changes_by_bucket(&e) {
                                touched.entry(b).or_default().push((s, f));
                            }
                        }
                        for (b, t) in touched {
                            if rng.random_bool(0.5) {
                                l.fold_bucket(&b, seq, p, None, &t).await.unwrap();
                            }
                        }
                    }
                    _ => {}
                }
                let snap = l.snapshot().await.unwrap();
                let mut want = named.clone();
                want.sort();
                assert_eq!(
                    sorted(snap.data_files("").await.unwrap()),
                    want,
                    "seed {seed} seq {seq}"
                );
                let hour = rng.random_range(0..6);
                let prefix = format!("date=2026-01-01/hour={hour:02}");
                let want_hour: Vec<String> = want
                    .iter()
                    .filter(|p| p.contains(&prefix))
                    .cloned()
                    .collect();
                assert_eq!(
                    sorted(snap.data_files(&prefix).await.unwrap()),
                    want_hour,
                    "seed {seed} seq {seq} hour {hour}"
                );
            }
        }
    }

    #[tokio::test]
    async fn orphans_of_uncommitted_and_fenced_attempts_are_removed() {
        let (store, l) = ledger();
        for p in ["won.parquet", "lost.parquet", "crashed.parquet"] {
            store
                .put(&Path::from(p), PutPayload::from_static(b"x"))
                .await
                .unwrap();
        }
        l.write_intent(1, 1, "w", &["won.parquet".into()])
            .await
            .unwrap();
        l.write_intent(1, 2, "w2", &["lost.parquet".into()])
            .await
            .unwrap();
        l.commit(&entry(1, 1, 0, 5, &["won.parquet"]))
            .await
            .unwrap();
        l.write_intent(2, 1, "w", &["crashed.parquet".into()])
            .await
            .unwrap();
        let tail = l.tail().await.unwrap();
        let (tail, deleted) = l.clean_orphans(tail, 3, "w3").await.unwrap();
        assert_eq!(deleted, 2);
        assert!(store.head(&Path::from("won.parquet")).await.is_ok());
        assert!(store.head(&Path::from("lost.parquet")).await.is_err());
        assert!(store.head(&Path::from("crashed.parquet")).await.is_err());
        // The winner's intent is gone; the two losers' intents stay for INTENT_GRACE, so
        // a late upload of a paused writer is still found by the next recovery.
        assert_eq!(
            l.list_names("pending").await.unwrap(),
            vec![
                format!("{}-e{:010}.json", seq_name(1), 2),
                format!("{}-e{:010}.json", seq_name(2), 1)
            ]
        );
        // The crashed attempt was past the tail: a takeover entry now holds its seq, so
        // the (possibly only paused) writer of epoch 1 can never commit it.
        let last = tail.last.unwrap();
        assert!(last.takeover);
        assert_eq!((last.seq, last.epoch, last.next_offset), (2, 3, 5));
        assert_eq!(tail_of(&l).await.next_offset(), Some(5));
        assert!(matches!(
            l.commit(&entry(2, 1, 5, 9, &["crashed.parquet"])).await,
            Err(LedgerError::Fenced { .. })
        ));
    }

    #[tokio::test]
    async fn expired_intents_are_settled_and_fresh_or_in_flight_ones_kept() {
        let (store, l) = ledger();
        for p in ["won.parquet", "lost.parquet", "next.parquet"] {
            store
                .put(&Path::from(p), PutPayload::from_static(b"x"))
                .await
                .unwrap();
        }
        l.write_intent(1, 1, "w", &["won.parquet".into()])
            .await
            .unwrap();
        l.write_intent(1, 2, "w2", &["lost.parquet".into()])
            .await
            .unwrap();
        l.commit(&entry(1, 1, 0, 5, &["won.parquet"]))
            .await
            .unwrap();
        // In flight: past the tail.
        l.write_intent(2, 1, "w", &["next.parquet".into()])
            .await
            .unwrap();
        // Within the grace nothing moves.
        assert_eq!(l.expire_intents(chrono::Utc::now()).await.unwrap(), (0, 0));
        assert_eq!(l.list_names("pending").await.unwrap().len(), 3);
        // Past it, the two at the tail are settled; the one in flight stays, with its file.
        let later = chrono::Utc::now() + chrono::Duration::hours(2);
        assert_eq!(l.expire_intents(later).await.unwrap(), (2, 1));
        assert_eq!(
            l.list_names("pending").await.unwrap(),
            vec![format!("{}-e{:010}.json", seq_name(2), 1)]
        );
        assert!(store.head(&Path::from("won.parquet")).await.is_ok());
        assert!(store.head(&Path::from("lost.parquet")).await.is_err());
        assert!(store.head(&Path::from("next.parquet")).await.is_ok());
    }

    async fn tail_of(l: &PartitionLedger) -> Tail {
        l.tail().await.unwrap()
    }

    #[tokio::test]
    async fn takeover_before_any_entry_keeps_no_resume_point() {
        let (store, l) = ledger();
        store
            .put(&Path::from("early.parquet"), PutPayload::from_static(b"x"))
            .await
            .unwrap();
        l.write_intent(1, 1, "w", &["early.parquet".into()])
            .await
            .unwrap();
        let (tail, deleted) = l.clean_orphans(Tail::default(), 2, "w2").await.unwrap();
        assert_eq!(deleted, 1);
        assert_eq!(tail.next_seq(), 2);
        assert_eq!(tail.next_offset(), None);
        assert!(matches!(
            l.commit(&entry(1, 1, 0, 4, &["early.parquet"])).await,
            Err(LedgerError::Fenced { .. })
        ));
    }

    /// Readers find streams through the index: a lake from before it is listed once the
    /// old way (and indexed), and a stream claimed later is in the index.
    #[tokio::test]
    async fn streams_are_found_through_the_index() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let names =
            |v: Vec<PartitionLedger>| -> Vec<String> { v.iter().map(|l| l.stream()).collect() };
        // Written before the index existed: entries only.
        let old = PartitionLedger::new(store.clone(), "ds", "t", 3);
        old.commit(&entry(1, 1, 0, 5, &[])).await.unwrap();
        assert_eq!(names(streams(&store, "ds").await.unwrap()), vec!["ds/t/3"]);
        let index = Path::from(streams_index_root("ds"));
        let indexed: Vec<String> = store
            .list(Some(&index))
            .map_ok(|m| m.location.filename().unwrap().to_owned())
            .try_collect()
            .await
            .unwrap();
        assert_eq!(indexed, vec!["_complete".to_owned(), "t@3".to_owned()]);
        // A new stream is indexed when claimed, before any entry.
        let new = PartitionLedger::new(store.clone(), "ds", "t.x", 0);
        new.claim_epoch("w").await.unwrap();
        assert_eq!(
            names(streams(&store, "ds").await.unwrap()),
            vec!["ds/t/3", "ds/t.x/0"]
        );
        // The maintenance stream is not a partition's.
        PartitionLedger::maintenance(store.clone(), "ds")
            .claim_epoch("w")
            .await
            .unwrap();
        assert_eq!(streams(&store, "ds").await.unwrap().len(), 2);
    }

    #[tokio::test]
    async fn state_round_trips() {
        let state = ChainState {
            operators: vec![SavedState {
                position: 1,
                kind: "sample".into(),
                name: Some("per_zone".into()),
                bytes: vec![0, 1, 255],
            }],
        };
        let mut e = entry(1, 1, 0, 1, &[]);
        e.operator_state = Entry::encode_state(&state);
        assert_eq!(e.chain_state().unwrap(), state);
        // Entries written before operators had names still read, without a name.
        let old: OperatorState =
            serde_json::from_str(r#"{"position":0,"operator":"sample","state":"AAE="}"#).unwrap();
        assert_eq!(old.name, None);
        let mut e = entry(1, 1, 0, 1, &[]);
        e.operator_state = vec![old];
        assert_eq!(e.chain_state().unwrap().operators[0].bytes, vec![0, 1]);
    }
}
