//! What the bounded jobs that rewrite committed hours share (`weir compact`, `weir vacuum`,
//! and backfills that replace hours): a writer of the dataset's maintenance stream
//! ([`PartitionLedger::maintenance`]) that commits replace entries.
//!
//! A job starts by recovering the stream exactly as `weir run` recovers a partition: it
//! claims an epoch, reads the tail, and, when a killed run left an intent past the tail,
//! writes a takeover entry and deletes that run's files. Each replace entry then goes
//! through the same steps as a partition's commit (intent, uploads, create-if-absent entry).
//! Its files are named by the entry's sequence number and epoch, so a file of an attempt
//! can only ever be named by that attempt's entry. Should another job commit the same
//! sequence number first, ours is fenced: its files are deleted and the job stops with
//! [`JobError::Concurrent`] (run one maintenance job per dataset at a time: a CronJob's
//! `Forbid` only keeps it from overlapping itself, so the shipped schedules keep compaction,
//! vacuum and the nightly backfill apart in time).

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore};
use tracing::{Instrument as _, info, warn};

use crate::commit::{Attempt, Outcome, Protocol};
use crate::config::Config;
use crate::ledger::{
    self, Entry, FileRef, LEDGER_VERSION, LedgerError, OffsetSpan, PartitionLedger,
};
use crate::sink::parquet::ClosedFile;
use crate::store::retry;

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("{0}")]
    Ledger(#[from] LedgerError),
    #[error(
        "{dataset}: another maintenance job ({writer}) committed entry {seq} first (epoch {theirs}, ours {ours}){what}; ours was removed: run again, and keep this dataset's maintenance jobs (compact, vacuum, backfills that replace) from overlapping"
    )]
    Concurrent {
        dataset: String,
        seq: u64,
        ours: u64,
        theirs: u64,
        /// The other job's writer id (empty when its entry could not be read).
        writer: String,
        /// What the other entry did, for the message.
        what: &'static str,
    },
}

/// A writer of one dataset's maintenance stream.
#[derive(Debug)]
pub struct Job {
    dataset: String,
    protocol: Protocol,
    epoch: u64,
    seq: u64,
    config_hash: String,
}

impl Job {
    /// Recovers the maintenance stream of `dataset` for `writer` (this process start's id).
    pub async fn start(
        config: &Config,
        dataset: &str,
        store: Arc<dyn ObjectStore>,
        writer: &str,
    ) -> Result<Job, JobError> {
        let protocol = Protocol::new(
            PartitionLedger::maintenance(store.clone(), dataset),
            store,
            writer,
            config.storage_multipart_threshold(),
            config.commit.checkpoint_every,
        );
        let recovered = protocol
            .recover_retrying(8, std::time::Duration::from_millis(500), |round, e, wait| {
                warn!(dataset, round, error = %e, retry_in_ms = wait.as_millis() as u64, "maintenance stream recovery failed, retrying");
            })
            .instrument(tracing::info_span!(
                "recovery",
                dataset,
                topic = ledger::MAINTENANCE_TOPIC,
                partition = ledger::MAINTENANCE_PARTITION,
            ))
            .await?;
        if recovered.removed > 0 {
            info!(
                dataset,
                files = recovered.removed,
                "removed the files of an interrupted maintenance run"
            );
        }
        Ok(Job {
            dataset: dataset.to_owned(),
            epoch: recovered.epoch,
            seq: recovered.tail.next_seq(),
            protocol,
            config_hash: config.hash(),
        })
    }

    /// The sequence number and epoch the next replace entry will carry: what its files'
    /// names must be derived from.
    pub fn next(&self) -> (u64, u64) {
        (self.seq, self.epoch)
    }

    /// Commits the replace entry that publishes `--replace` backfill `id`: its staged files
    /// (already uploaded and named by its own streams) enter the table as `removed` leave.
    pub async fn publish(
        &mut self,
        id: &str,
        removed: Vec<FileRef>,
        added: Vec<FileRef>,
        added_dead_letters: Vec<FileRef>,
    ) -> Result<(), JobError> {
        let mut entry = self.entry(removed, added, added_dead_letters);
        entry.backfill = Some(id.to_owned());
        self.commit(Attempt::new(entry, Vec::new())).await
    }

    /// Commits the entry that abandons `--replace` backfill `id`: it names no files; its
    /// staged files stay out of the table and `weir vacuum` deletes them.
    pub async fn abandon(&mut self, id: &str) -> Result<(), JobError> {
        let mut entry = self.entry(Vec::new(), Vec::new(), Vec::new());
        entry.backfill = Some(id.to_owned());
        entry.abandoned = true;
        self.commit(Attempt::new(entry, Vec::new())).await
    }

    fn entry(
        &self,
        removed: Vec<FileRef>,
        files: Vec<FileRef>,
        dead_letters: Vec<FileRef>,
    ) -> Entry {
        Entry {
            version: LEDGER_VERSION,
            seq: self.seq,
            epoch: self.epoch,
            writer: self.protocol.writer().to_owned(),
            dataset: self.dataset.clone(),
            topic: ledger::MAINTENANCE_TOPIC.to_owned(),
            partition: ledger::MAINTENANCE_PARTITION,
            start_offset: -1,
            next_offset: -1,
            records: 0,
            rows: files.iter().map(|f| f.rows).sum(),
            dead_lettered: 0,
            skipped_offsets: 0,
            holes: 0,
            offset_resets: 0,
            files,
            dead_letters,
            removed,
            operator_state: Vec::new(),
            config_hash: self.config_hash.clone(),
            weir_version: env!("CARGO_PKG_VERSION").to_owned(),
            takeover: false,
            units: Vec::new(),
            backfill: None,
            abandoned: false,
            event_time: None,
        }
    }

    async fn commit(&mut self, mut attempt: Attempt) -> Result<(), JobError> {
        let span = tracing::info_span!(
            "commit",
            dataset = %self.dataset,
            topic = %attempt.entry.topic,
            partition = attempt.entry.partition,
            seq = attempt.entry.seq,
        );
        let outcome = async {
            self.protocol.stage(&mut attempt).await?;
            self.protocol.finish(&attempt).await
        }
        .instrument(span)
        .await?;
        match outcome {
            Outcome::Committed => {
                self.seq += 1;
                Ok(())
            }
            Outcome::Fenced { theirs, .. } => {
                // Say what the other job did: a takeover (a job that started meanwhile took
                // the stream over and removed our attempt in flight) or work of its own.
                let other = self
                    .protocol
                    .ledger
                    .read_entry(self.seq)
                    .await
                    .ok()
                    .flatten();
                let (writer, what) = match &other {
                    Some(e) if e.takeover => (
                        e.writer.clone(),
                        ": a takeover by a job that started while ours was committing",
                    ),
                    Some(e) => (e.writer.clone(), ": its work stands"),
                    None => (String::new(), ""),
                };
                Err(JobError::Concurrent {
                    dataset: self.dataset.clone(),
                    seq: self.seq,
                    ours: self.epoch,
                    theirs,
                    writer,
                    what,
                })
            }
        }
    }

    /// Commits one replace entry: `removed` leave the table and `added` (files named from
    /// [`Self::next`]) take their place, as one step for readers.
    pub async fn replace(
        &mut self,
        removed: Vec<FileRef>,
        added: Vec<ClosedFile>,
        added_dead_letters: Vec<ClosedFile>,
    ) -> Result<(), JobError> {
        let refs = |files: &[ClosedFile]| files.iter().map(ClosedFile::file_ref).collect();
        let entry = self.entry(removed, refs(&added), refs(&added_dead_letters));
        let mut files = added;
        files.extend(added_dead_letters);
        self.commit(Attempt::new(entry, files)).await
    }

    /// [`Self::replace`] for dead letters that compaction merged: `added` are dead-letter
    /// files, named in the entry with `newest_written`, the time the newest of `removed`
    /// was first written ([`FileRef::written`]), so retention ages them as their inputs.
    pub async fn replace_dead_letters(
        &mut self,
        removed: Vec<FileRef>,
        added: Vec<ClosedFile>,
        newest_written: DateTime<Utc>,
    ) -> Result<(), JobError> {
        let refs = added
            .iter()
            .map(|f| FileRef {
                newest_written: Some(newest_written),
                // What one output holds of the inputs is not tracked: each carries the
                // spans of them all.
                offsets: OffsetSpan::merged(&removed),
                ..f.file_ref()
            })
            .collect();
        let entry = self.entry(removed, Vec::new(), refs);
        self.commit(Attempt::new(entry, added)).await
    }
}

/// The files under `folder` (relative to the lake root), its Delta log left out: that is
/// the Delta library's to clean.
pub async fn list_files(
    store: &Arc<dyn ObjectStore>,
    folder: &str,
) -> Result<Vec<ObjectMeta>, object_store::Error> {
    let folder = Path::from(folder);
    let listed = retry("lake list", 8, || {
        let store = store.clone();
        let folder = folder.clone();
        async move { store.list(Some(&folder)).try_collect::<Vec<_>>().await }
    })
    .await?;
    Ok(listed
        .into_iter()
        .filter(|m| !m.location.as_ref().contains("/_delta_log/"))
        .collect())
}

/// When each file under the dataset's dead-letter folder (`_weir/dead_letter/<dataset>/`)
/// was last modified, by path: one listing, where asking for each file would take a
/// request per file.
pub async fn dead_letters_modified(
    store: &Arc<dyn ObjectStore>,
    dataset: &str,
) -> Result<HashMap<String, DateTime<Utc>>, object_store::Error> {
    Ok(list_files(store, &format!("_weir/dead_letter/{dataset}"))
        .await?
        .into_iter()
        .map(|m| (m.location.to_string(), m.last_modified))
        .collect())
}
