//! The commit protocol of one partition, as a unit: recovery on assignment, and each
//! commit attempt's steps (intent, uploads, the ledger entry, and what follows a lost race).
//!
//! The worker drives it with Kafka around it (batches, the dead-letter topic, metrics, the
//! group offset); `sim` drives it against a seeded faulty in-memory store with no Kafka at
//! all. The objects, the order of the steps and the retry layers are in [`crate::ledger`]'s
//! module doc.
//!
//! ```text
//!  recover(writer)  ── claim epoch ─▶ read tail ─▶ takeover if needed ─▶ delete orphans
//!  stage(attempt)   ── put intent ─▶ upload files            (idempotent: safe to repeat)
//!  finish(attempt)  ── create entry ─▶ ours: clear intent, checkpoint ─▶ Committed
//!                                   └▶ theirs: delete_unnamed, clear intent ─▶ Fenced
//!  (finish = finish_entry, then tidy; the worker runs tidy beside its next commit)
//! ```
//!
//! An attempt keeps its sequence number, epoch, file names and bytes until it ends, so
//! every step can be repeated after an unknown outcome without changing what it writes.

use std::sync::Arc;
use std::time::Duration;

use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};
use tracing::{Instrument as _, warn};

use crate::failpoint;
use crate::ledger::{Entry, LedgerError, PartitionLedger, Tail};
use crate::sink::parquet::ClosedFile;

/// One commit attempt: the entry it will create and the files that entry names.
#[derive(Debug)]
pub struct Attempt {
    pub entry: Entry,
    pub files: Vec<ClosedFile>,
    /// The intent is written and every file uploaded.
    staged: bool,
}

impl Attempt {
    pub fn new(entry: Entry, files: Vec<ClosedFile>) -> Attempt {
        Attempt {
            entry,
            files,
            staged: false,
        }
    }

    /// Whether [`Protocol::stage`] has written the intent and uploaded every file.
    pub fn staged(&self) -> bool {
        self.staged
    }

    pub fn paths(&self) -> Vec<String> {
        self.files.iter().map(|f| f.path.clone()).collect()
    }

    /// Bytes of all the attempt's files.
    pub fn bytes(&self) -> u64 {
        self.files
            .iter()
            .map(|f| f.bytes.content_length() as u64)
            .sum()
    }
}

/// How an attempt ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The entry is in the ledger with our identity: the files are part of the table.
    Committed,
    /// Another writer's entry holds the sequence number; our files that it does not name
    /// were deleted. The caller re-reads the tail (and stops if it was superseded).
    Fenced { theirs: u64, removed: usize },
}

/// What recovery found and did.
#[derive(Debug)]
pub struct Recovered {
    pub epoch: u64,
    pub tail: Tail,
    /// Files of uncommitted attempts deleted.
    pub removed: usize,
}

/// The commit protocol of one (dataset, topic, partition) stream for one writer.
#[derive(Debug, Clone)]
pub struct Protocol {
    pub ledger: PartitionLedger,
    store: Arc<dyn ObjectStore>,
    /// This process start's writer id (`Shared::owner`).
    writer: String,
    /// Files at least this large are uploaded in parts.
    multipart_threshold: usize,
    /// A checkpoint every this many entries.
    checkpoint_every: u64,
}

impl Protocol {
    pub fn new(
        ledger: PartitionLedger,
        store: Arc<dyn ObjectStore>,
        writer: &str,
        multipart_threshold: usize,
        checkpoint_every: u64,
    ) -> Protocol {
        Protocol {
            ledger,
            store,
            writer: writer.to_owned(),
            multipart_threshold,
            checkpoint_every: checkpoint_every.max(1),
        }
    }

    pub fn writer(&self) -> &str {
        &self.writer
    }

    /// Claims a new epoch, reads the tail and removes what uncommitted attempts left.
    pub async fn recover(&self) -> Result<Recovered, LedgerError> {
        let epoch = self.ledger.claim_epoch(&self.writer).await?;
        let tail = self.ledger.tail().await?;
        let (tail, removed) = self.ledger.clean_orphans(tail, epoch, &self.writer).await?;
        Ok(Recovered {
            epoch,
            tail,
            removed,
        })
    }

    /// [`Protocol::recover`], tried again after an error worth retrying (a store that did
    /// not answer, an unknown outcome) for up to `rounds` rounds in all, waiting `first`
    /// and then twice as long each time (at most 30 s); `on_retry(round, error, wait)`
    /// is told before each wait. A verdict (a corrupt or too new ledger) ends it at once.
    /// Each round claims an epoch of its own: an earlier round's takeover entry carries a
    /// lower one and counts as a lost attempt.
    pub async fn recover_retrying(
        &self,
        rounds: u32,
        first: Duration,
        mut on_retry: impl FnMut(u32, &LedgerError, Duration),
    ) -> Result<Recovered, LedgerError> {
        let mut delay = first;
        let mut round = 1;
        loop {
            match self.recover().await {
                Err(e) if e.is_retryable() && round < rounds => {
                    on_retry(round, &e, delay);
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(30));
                    round += 1;
                }
                other => return other,
            }
        }
    }

    /// Steps 1 and 2: the intent, then every file. Repeating them rewrites the same objects
    /// with the same bytes.
    pub async fn stage(&self, attempt: &mut Attempt) -> Result<(), LedgerError> {
        if attempt.staged {
            return Ok(());
        }
        let e = &attempt.entry;
        let span = tracing::info_span!(
            "upload",
            stream = %self.ledger.stream(),
            seq = e.seq,
            epoch = e.epoch,
            files = attempt.files.len(),
            bytes = attempt.bytes(),
        );
        async {
            self.ledger
                .write_intent(e.seq, e.epoch, &self.writer, &attempt.paths())
                .await?;
            upload(&self.store, self.multipart_threshold, &attempt.files)
                .await
                .map_err(|source| LedgerError::Store {
                    stream: self.ledger.stream(),
                    source,
                })
        }
        .instrument(span)
        .await?;
        attempt.staged = true;
        Ok(())
    }

    /// Steps 3 and 4 after [`Self::stage`]: create the entry (settled by reading when the
    /// answer is lost), then clear the intent and checkpoint; or, when another writer holds
    /// the sequence number, delete our files that its entry does not name.
    pub async fn finish(&self, attempt: &Attempt) -> Result<Outcome, LedgerError> {
        let outcome = self.finish_entry(attempt).await?;
        if outcome == Outcome::Committed {
            self.tidy(&attempt.entry).await;
        }
        Ok(outcome)
    }

    /// Step 3 alone: [`Self::finish`] without clearing the intent and checkpointing after a
    /// commit, which the caller then does with [`Self::tidy`] when it likes (the partition
    /// worker does it beside its next commit: a lost commit's latency is its intent, its
    /// files and its entry).
    pub async fn finish_entry(&self, attempt: &Attempt) -> Result<Outcome, LedgerError> {
        assert!(attempt.staged, "finish before stage");
        failpoint::hit("after-upload");
        let entry = &attempt.entry;
        let span = tracing::info_span!(
            "ledger",
            stream = %self.ledger.stream(),
            seq = entry.seq,
            epoch = entry.epoch,
            outcome = tracing::field::Empty,
        );
        let outcome = self.settle(attempt).instrument(span.clone()).await;
        span.record(
            "outcome",
            match &outcome {
                Ok(Outcome::Committed) => "committed",
                Ok(Outcome::Fenced { .. }) => "fenced",
                Err(_) => "unsettled",
            },
        );
        outcome
    }

    async fn settle(&self, attempt: &Attempt) -> Result<Outcome, LedgerError> {
        let entry = &attempt.entry;
        match self.ledger.commit(entry).await {
            Ok(()) => {}
            Err(LedgerError::Fenced { theirs, .. }) => {
                let removed = self
                    .ledger
                    .delete_unnamed(entry.seq, &attempt.paths())
                    .await?
                    .map_or(0, |d| d.files);
                self.ledger.clear_intent(entry.seq, entry.epoch).await;
                return Ok(Outcome::Fenced { theirs, removed });
            }
            Err(e) => return Err(e),
        }
        failpoint::hit("after-ledger");
        Ok(Outcome::Committed)
    }

    /// Step 4 after a committed entry: clear its intent and, every `checkpoint_every`
    /// entries, checkpoint. Best effort: an intent left behind (a failed delete, a process
    /// that stopped first) names only files the committed entry names, and the next
    /// recovery clears it; a failed checkpoint is covered by the next one.
    pub async fn tidy(&self, entry: &Entry) {
        self.ledger.clear_intent(entry.seq, entry.epoch).await;
        if entry.seq.is_multiple_of(self.checkpoint_every)
            && let Err(e) = self.ledger.checkpoint(entry).await
        {
            warn!(stream = %self.ledger.stream(), seq = entry.seq, error = %e, "checkpoint failed; the next one will cover it");
        }
    }
}

/// Uploads a commit has in flight at once. A commit of late data names a file for every
/// hour it touched (~720 over 30 days); all at once, that was a burst of 720 requests per
/// partition (and on a local-directory store a blocking thread each: a 30-day drain of
/// 300,000 events started 323 threads, now 110).
pub const UPLOAD_CONCURRENCY: usize = 32;

/// Uploads `files`: small ones with one put, large ones in parts, at most
/// [`UPLOAD_CONCURRENCY`] at once. Each is retried on its own (an upload rewrites the same
/// name with the same bytes, so a retry is harmless).
async fn upload(
    store: &Arc<dyn ObjectStore>,
    threshold: usize,
    files: &[ClosedFile],
) -> object_store::Result<()> {
    // Owned tasks (not a borrowed stream of futures): the worker future must stay `Send`.
    let mut tasks = tokio::task::JoinSet::new();
    let mut first_error = None;
    for f in files {
        if tasks.len() >= UPLOAD_CONCURRENCY
            && let Some(joined) = tasks.join_next().await
            && let Err(e) = joined_result(joined)
        {
            first_error.get_or_insert(e);
        }
        let store = store.clone();
        let path = Path::from(f.path.as_str());
        let bytes = f.bytes.clone();
        tasks.spawn(async move {
            if bytes.content_length() < threshold {
                crate::store::retry("upload", 8, move || {
                    let store = store.clone();
                    let path = path.clone();
                    let payload = bytes.clone();
                    async move { store.put(&path, payload).await.map(|_| ()) }
                })
                .await
            } else {
                crate::store::retry("multipart upload", 8, move || {
                    multipart(store.clone(), path.clone(), bytes.clone())
                })
                .await
            }
        });
    }
    while let Some(joined) = tasks.join_next().await {
        if let Err(e) = joined_result(joined) {
            first_error.get_or_insert(e);
        }
    }
    match first_error {
        None => Ok(()),
        Some(e) => Err(e),
    }
}

/// An upload task's result, a panicked or cancelled task as an error.
fn joined_result(
    joined: Result<object_store::Result<()>, tokio::task::JoinError>,
) -> object_store::Result<()> {
    joined.unwrap_or_else(|e| {
        Err(object_store::Error::Generic {
            store: "upload",
            source: Box::new(e),
        })
    })
}

async fn multipart(
    store: Arc<dyn ObjectStore>,
    path: Path,
    bytes: PutPayload,
) -> object_store::Result<()> {
    const PART: usize = 8 << 20;
    let upload = store.put_multipart(&path).await?;
    let mut writer = WriteMultipart::new_with_chunk_size(upload, PART);
    let mut sent = 0;
    let mut first_part_done = false;
    for chunk in &bytes {
        writer.put(chunk.clone());
        sent += chunk.len();
        if !first_part_done && sent >= PART {
            // The first part is on its way; the rest of the file is not.
            writer.wait_for_capacity(0).await?;
            failpoint::hit("during-multipart");
            first_part_done = true;
        }
    }
    if !first_part_done {
        writer.wait_for_capacity(0).await?;
        failpoint::hit("during-multipart");
    }
    writer.finish().await?;
    Ok(())
}

#[cfg(test)]
mod sim;

#[cfg(test)]
mod tests {
    use object_store::memory::InMemory;

    use super::*;
    use crate::faulty_store::{FaultSpec, FaultyStore};

    fn protocol(store: Arc<dyn ObjectStore>) -> Protocol {
        Protocol::new(
            PartitionLedger::new(store.clone(), "http", "logs", 0),
            store,
            "writer-1",
            8 << 20,
            10,
        )
    }

    #[tokio::test(start_paused = true)]
    async fn recovery_is_retried_for_its_rounds_with_growing_waits_then_gives_up() {
        let failing: Arc<dyn ObjectStore> = Arc::new(FaultyStore::new(
            Arc::new(InMemory::new()),
            FaultSpec::parse("rate=1,seed=7").unwrap(),
        ));
        let mut retries = Vec::new();
        let res = protocol(failing)
            .recover_retrying(3, Duration::from_secs(1), |round, e, wait| {
                assert!(e.is_retryable(), "{e}");
                retries.push((round, wait));
            })
            .await;
        assert!(
            res.is_err(),
            "a store that always fails cannot be recovered"
        );
        assert_eq!(
            retries,
            [(1, Duration::from_secs(1)), (2, Duration::from_secs(2))]
        );

        let mut retried = 0;
        let recovered = protocol(Arc::new(InMemory::new()))
            .recover_retrying(3, Duration::from_secs(1), |_, _, _| retried += 1)
            .await
            .expect("a working store recovers");
        assert_eq!(retried, 0);
        assert!(recovered.tail.last.is_none());
    }
}
