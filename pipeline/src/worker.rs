//! A partition worker: everything between one Kafka partition and its ledger stream.
//!
//! ```text
//!  partition queue ─▶ batch (≤ batch.max_rows, ≤ memory::Budget::batch_bytes, or batch.max_wait;
//!                     payloads copied into one buffer kept from batch to batch)
//!                     ─▶ decode (bad records → dead letters)
//!                     ─▶ operator chain
//!                     ─▶ PartitionWriter (open Parquet per Hive hour, in memory)
//!  every commit.interval, or when open files reach commit.max_bytes, or on SIGTERM:
//!                     ─▶ intent ─▶ upload files ─▶ ledger entry ─▶ Kafka group offset
//! ```
//!
//! A worker owns its chain, its open files and its position; nothing is shared with other
//! partitions.
//!
//! Commits are pipelined, one deep. Closing the open files (the CPU part) happens on the
//! worker; the upload, the ledger entry and their retries run as a task of their own
//! ([`InFlight`]) while the worker goes on reading and decoding the next records. The next
//! commit waits for that task before it closes its own files, so entries stay in sequence
//! and a commit never starts from a tail it has not seen. The files in flight stay on the
//! worker's memory lease until they are uploaded, so a slow or failing store fills the
//! budget, the worker then waits for the commit and stops reading its queue, and Kafka
//! fetching stops for that partition (backpressure). A commit that loses its race throws
//! away what was read after it too: the worker goes back to the ledger's position.

use std::sync::Arc;
use std::time::Duration;

use arrow::array::RecordBatch;
use futures::{FutureExt as _, StreamExt as _};
use rdkafka::Message;
use rdkafka::consumer::stream_consumer::StreamPartitionQueue;
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::error::KafkaResult;
use rdkafka::message::BorrowedMessage;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{Instrument as _, debug, error, info, warn};
use weir_operators::Chain;
use weir_operators::chain::RestoreOutcome;
use weir_schemas::{BatchDecoder, DecodeErrorKind, Decoded, DecoderOptions};

use crate::commit::{Attempt, Outcome, Protocol};
use crate::config::{OnOffsetGap, StartFrom};
use crate::failpoint;
use crate::ledger::{Entry, LEDGER_VERSION, LedgerError, PartitionLedger, Tail};
use crate::metrics::{BatchStage, Metrics, Partitions};
use crate::runtime::{DatasetRuntime, Shared};
use crate::sink::dead_letter::{DeadLetter, DeadLetterBuffer};
use crate::sink::parquet::{ClosedFile, PartitionWriter, WriteError, file_name};
use crate::source::kafka::{PendingJumps, WeirConsumer, WeirContext};

/// What the source asks of a worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    Running,
    /// The partition was revoked: abandon the open commit (the next owner redoes it).
    Revoke,
    /// Graceful shutdown: commit what is open, then stop.
    Shutdown,
}

/// A partition's ledger state, read on assignment before consuming.
#[derive(Debug)]
pub struct Recovery {
    pub dataset: Arc<DatasetRuntime>,
    pub topic: String,
    pub partition: i32,
    pub protocol: Protocol,
    pub epoch: u64,
    pub tail: Tail,
}

/// The records gathered for the next batch: their payloads back to back in one buffer
/// that keeps its allocation from batch to batch. A `Vec` per record allocated and freed
/// ~4000 times per batch, and with an allocator returning freed pages at once, every batch
/// faulted its memory in again (a third of the page faults draining a backlog).
#[derive(Default)]
struct RawBatch {
    bytes: Vec<u8>,
    records: Vec<RawRecord>,
}

struct RawRecord {
    offset: i64,
    timestamp: Option<i64>,
    /// End of the payload in `RawBatch::bytes`; it starts where the previous one ends.
    end: usize,
}

impl RawBatch {
    fn with_capacity(bytes: usize) -> RawBatch {
        RawBatch {
            bytes: Vec::with_capacity(bytes),
            records: Vec::new(),
        }
    }

    fn push(&mut self, offset: i64, timestamp: Option<i64>, payload: &[u8]) {
        self.bytes.extend_from_slice(payload);
        self.records.push(RawRecord {
            offset,
            timestamp,
            end: self.bytes.len(),
        });
    }

    fn len(&self) -> usize {
        self.records.len()
    }

    fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Payload bytes gathered.
    fn bytes(&self) -> usize {
        self.bytes.len()
    }

    fn payloads(&self) -> impl Iterator<Item = &[u8]> {
        let mut start = 0;
        self.records.iter().map(move |r| {
            let p = &self.bytes[start..r.end];
            start = r.end;
            p
        })
    }

    /// Empties the batch and keeps its buffers, up to `keep` bytes of payload space (a
    /// rare huge record must not hold its memory forever).
    fn clear(&mut self, keep: usize) {
        self.bytes.clear();
        self.bytes.shrink_to(keep);
        self.records.clear();
    }
}

/// What [`Worker::receive`] did with a message.
enum Received {
    /// Added to the batch.
    Taken,
    /// Added, and a batch was flushed: time to look at the memory budget and stop signals.
    Flushed,
    /// Below the position: kept as `Worker::rewound`.
    Rewound,
}

pub struct Worker {
    shared: Arc<Shared>,
    ds: Arc<DatasetRuntime>,
    topic: String,
    partition: i32,
    protocol: Protocol,
    epoch: u64,
    tail: Tail,
    consumer: Arc<WeirConsumer>,
    decoder: BatchDecoder,
    chain: Chain,
    writer: PartitionWriter,
    dead: DeadLetterBuffer,
    batch: RawBatch,
    /// One past the last offset consumed (None before the first record when the ledger
    /// is empty).
    next_offset: Option<i64>,
    /// First offset of the open commit.
    commit_start: Option<i64>,
    commit_records: u64,
    /// This worker's part of the memory budget: what its open files hold.
    lease: crate::memory::Lease,
    /// The open files reached `commit.max_bytes` (measured by `account`).
    open_full: bool,
    /// Operator counters already added to the process metrics, by (name, labels).
    exported: std::collections::HashMap<(String, Vec<(String, String)>), u64>,
    /// Offsets of the open commit that the broker deleted before they were read (a gap
    /// recorded under `kafka.on_offset_gap = "record"`); goes into the next entry.
    skipped_offsets: u64,
    /// Offsets of the open commit that hold no record (transaction markers, compaction):
    /// goes into the next entry with `skipped_offsets`.
    holes: u64,
    /// Jumps of the open commit not judged yet: judged together ([`Self::settle_jumps`])
    /// once due or before the commit is prepared, whichever comes first.
    jumps: PendingJumps,
    /// A record whose offset is below the position: the partition's offsets went back
    /// (topic recreated, offsets reset). Handled between two reads of the queue: the open
    /// commit is committed first, then this record starts the next entry.
    rewound: Option<OwnedRecord>,
    /// The commit being uploaded while the worker reads on (at most one).
    in_flight: Option<InFlight>,
    /// Committed entries' tidying still running (see `Protocol::tidy`), all awaited on
    /// shutdown so that a clean stop leaves no intent behind.
    tidying: Vec<tokio::task::JoinHandle<()>>,
    /// How many times everything open was dropped ([`Worker::abandon`]): a step that
    /// awaited a commit compares it to tell whether what it read still stands.
    resets: u64,
}

/// A commit whose files are closed, running as a task of its own: intent, uploads, the
/// dead-letter topic and the ledger entry, each retried until settled. A revoke does not
/// drop it: the worker waits for its current attempt to end (a fenced attempt then removes
/// its own files), and the task does not retry after it. Dropping it (the worker's own
/// task aborted at the shutdown deadline) aborts the task; what it uploaded is an orphan
/// that the partition's next recovery removes.
struct InFlight {
    /// `None` when the partition was revoked while the commit was retrying.
    handle: tokio::task::JoinHandle<Result<Option<Settled>, WorkerError>>,
    /// Bytes of its files and of the dead letters it still sends to their topic, held on
    /// the worker's lease until the task ends.
    bytes: usize,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.handle.abort();
    }
}

/// How an in-flight commit ended (its files are dropped by then).
struct Settled {
    entry: Entry,
    outcome: Outcome,
    bytes: u64,
    newest_event_time: Option<i64>,
    /// From closing the files to the ledger's answer.
    duration: Duration,
    /// The commit's span: the worker logs the outcome within it.
    span: tracing::Span,
    /// Clearing a committed entry's intent (and checkpointing), running on.
    tidy: Option<tokio::task::JoinHandle<()>>,
}

/// A record copied out of the consumer, kept across an await.
struct OwnedRecord {
    offset: i64,
    timestamp: Option<i64>,
    payload: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("{0}")]
    Ledger(#[from] LedgerError),
    #[error("building the operator chain: {0}")]
    Chain(String),
    #[error("writing parquet: {0}")]
    Write(#[from] crate::sink::parquet::WriteError),
    #[error("this writer lost the partition to a newer one (epoch {theirs} > {ours})")]
    Superseded { ours: u64, theirs: u64 },
    #[error("kafka: {0}")]
    Kafka(String),
    #[error("dead-letter topic: {0}")]
    DeadLetterTopic(String),
    #[error("commit task ended abnormally: {0}")]
    CommitTask(String),
    /// The client reported records of the partition it cannot deliver (a batch that cannot
    /// be decompressed or parsed). The partition stops there rather than skip them.
    #[error(
        "{topic}/{partition}: records from offset {offset} cannot be delivered by the kafka client ({error}); stopping instead of skipping them"
    )]
    Undeliverable {
        topic: String,
        partition: i32,
        /// The first offset not delivered, or `start` when nothing was read yet.
        offset: String,
        error: String,
    },
    /// The ledger's position is no longer on the broker and `kafka.on_offset_gap = "fail"`.
    #[error(
        "{topic}/{partition}: offset gap: resume offset {resume} is below the earliest offset on the broker {earliest}; {skipped} offsets were deleted before they were read (kafka.on_offset_gap = \"fail\")"
    )]
    OffsetGap {
        topic: String,
        partition: i32,
        resume: i64,
        earliest: i64,
        skipped: u64,
    },
    /// Offsets went back below the ledger's position and `kafka.on_offset_gap = "fail"`.
    #[error(
        "{topic}/{partition}: offsets went back: resume offset {resume} is past the partition's end, the earliest record now has offset {earliest} (topic recreated or offsets reset; kafka.on_offset_gap = \"fail\")"
    )]
    OffsetsRewound {
        topic: String,
        partition: i32,
        resume: i64,
        earliest: i64,
    },
}

impl Recovery {
    /// Records where a partition with no position in the ledger starts, before anything of
    /// it is read: an entry covering no records whose `next_offset` is `offset` (the
    /// partition's earliest or next offset on the broker, as `kafka.start_from` says). A
    /// later owner then resumes there rather than where `start_from` points at its own
    /// start, so records read by an owner that never committed are read again, and records
    /// deleted meanwhile are a gap that the next entry records. A store that fails or leaves
    /// the outcome unknown is retried (the entry is settled by reading it back).
    pub async fn record_start(
        &mut self,
        offset: i64,
        config_hash: &str,
    ) -> Result<(), LedgerError> {
        let entry = Entry {
            version: LEDGER_VERSION,
            seq: self.tail.next_seq(),
            epoch: self.epoch,
            writer: self.protocol.writer().to_owned(),
            dataset: self.dataset.name.clone(),
            topic: self.topic.clone(),
            partition: self.partition,
            start_offset: offset,
            next_offset: offset,
            records: 0,
            rows: 0,
            dead_lettered: 0,
            skipped_offsets: 0,
            holes: 0,
            offset_resets: self.tail.last.as_ref().map_or(0, |e| e.offset_resets),
            files: Vec::new(),
            dead_letters: Vec::new(),
            removed: Vec::new(),
            operator_state: Vec::new(),
            config_hash: config_hash.to_owned(),
            weir_version: env!("CARGO_PKG_VERSION").to_owned(),
            takeover: false,
            units: Vec::new(),
            backfill: None,
            abandoned: false,
            event_time: None,
        };
        match commit_without_records(&self.protocol.ledger, &entry, "start").await {
            Ok(()) => {
                self.tail = Tail { last: Some(entry) };
                Ok(())
            }
            Err(LedgerError::Fenced { .. }) => {
                // Another owner of the partition (a rebalance that overlapped) wrote this
                // sequence number first: its entry is the position. Should it hold a newer
                // epoch, this worker's first commit is fenced and it stops there.
                let tail = self.protocol.ledger.tail().await?;
                if tail.next_offset().is_some() {
                    self.tail = tail;
                    return Ok(());
                }
                Err(LedgerError::Fenced {
                    stream: self.protocol.ledger.stream(),
                    seq: entry.seq,
                    ours: self.epoch,
                    theirs: tail.last.map_or(0, |e| e.epoch),
                })
            }
            Err(e) => Err(e),
        }
    }
}

impl Worker {
    /// Claims an epoch, reads the ledger tail and removes orphans of earlier attempts.
    /// A store that fails or leaves an outcome unknown is retried with backoff (store
    /// unhealthy meanwhile, healthy again once it succeeds) for up to `RECOVERY_ATTEMPTS`
    /// rounds; a verdict (a corrupt object, a newer ledger format) is returned at once.
    pub async fn recover(
        shared: Arc<Shared>,
        topic: String,
        partition: i32,
    ) -> Result<Recovery, LedgerError> {
        const RECOVERY_ATTEMPTS: u32 = 6;
        let dataset = shared
            .datasets
            .get(&topic)
            .cloned()
            .expect("assigned a topic weir did not subscribe to");
        let ledger = PartitionLedger::new(shared.store.clone(), &dataset.name, &topic, partition);
        let protocol = Protocol::new(
            ledger,
            shared.store.clone(),
            &shared.owner,
            shared.config.storage_multipart_threshold(),
            shared.config.commit.checkpoint_every,
        );
        let span = tracing::info_span!(
            "recovery",
            dataset = %dataset.name,
            topic = %topic,
            partition,
            epoch = tracing::field::Empty,
            orphans_removed = tracing::field::Empty,
        );
        let recovered = protocol
            .recover_retrying(RECOVERY_ATTEMPTS, Duration::from_secs(1), |round, e, wait| {
                shared.metrics.store_errors.inc();
                shared.metrics.set_store_healthy(false);
                warn!(topic = %topic, partition, round, error = %e, retry_in_ms = wait.as_millis() as u64, "partition recovery failed, retrying");
            })
            .instrument(span.clone())
            .await?;
        // Its reads, listings and deletes answered: the store is back, as after a commit (an
        // idle partition would otherwise leave `/healthz` failing until some partition
        // commits).
        shared.metrics.set_store_healthy(true);
        span.record("epoch", recovered.epoch);
        span.record("orphans_removed", recovered.removed as u64);
        if recovered.removed > 0 {
            shared.metrics.count(
                &shared.metrics.orphans_removed,
                &dataset.name,
                recovered.removed as u64,
            );
        }
        Ok(Recovery {
            dataset,
            topic,
            partition,
            protocol,
            epoch: recovered.epoch,
            tail: recovered.tail,
        })
    }

    pub fn new(
        shared: Arc<Shared>,
        rec: Recovery,
        consumer: Arc<WeirConsumer>,
    ) -> Result<Worker, WorkerError> {
        let ds = rec.dataset.clone();
        let decoder = BatchDecoder::new(
            &ds.resolved.schema,
            DecoderOptions {
                unknown_fields: ds.resolved.config.unknown_fields,
                max_record_bytes: ds.resolved.config.max_record_bytes as usize,
            },
        )
        .map_err(|e| WorkerError::Chain(e.to_string()))?;
        let chain = build_chain(&shared, &ds, &rec.tail)?;
        let writer = new_writer(&shared, &ds, &chain)?;
        let lease = shared
            .budget
            .lease(shared.budget.worker_fixed(writer.codec_bytes()));
        let next_offset = rec.tail.next_offset();
        Ok(Worker {
            ds,
            topic: rec.topic,
            partition: rec.partition,
            protocol: rec.protocol,
            epoch: rec.epoch,
            tail: rec.tail,
            consumer,
            decoder,
            chain,
            writer,
            dead: DeadLetterBuffer::default(),
            batch: RawBatch::with_capacity(shared.budget.batch_bytes()),
            next_offset,
            commit_start: next_offset,
            commit_records: 0,
            lease,
            open_full: false,
            exported: Default::default(),
            skipped_offsets: 0,
            holes: 0,
            jumps: PendingJumps::default(),
            rewound: None,
            in_flight: None,
            tidying: Vec::new(),
            resets: 0,
            shared,
        })
    }

    pub async fn run(
        mut self,
        queue: StreamPartitionQueue<WeirContext>,
        mut stop: watch::Receiver<Stop>,
    ) {
        let cfg = self.shared.config.clone();
        // The partition's series on `/metrics` live as long as this future: they go when
        // the worker returns or its task is aborted.
        let _held = Held::register(&self, cfg.kafka.start_from == StartFrom::Earliest);
        let mut commit_deadline = Instant::now() + cfg.commit.interval;
        let mut batch_deadline: Option<Instant> = None;
        // One stream for the worker's life: `queue.recv()` builds a stream per message,
        // which takes a lock to register a waker slot and another to drop it.
        let mut messages = queue.stream();
        loop {
            let how = *stop.borrow();
            match how {
                Stop::Running => {}
                Stop::Revoke => {
                    // The commit in flight ends its current attempt (so a fenced one still
                    // removes its files) and is not retried.
                    if let Err(e) = self.settle_in_flight(&stop).await {
                        self.fail(e);
                    }
                    self.abandon();
                    info!(topic = %self.topic, partition = self.partition, "worker stopped: partition revoked, open commit abandoned");
                    return;
                }
                Stop::Shutdown => {
                    if let Err(e) = self.flush_batch() {
                        error!(topic = %self.topic, partition = self.partition, error = %e, "batch failed during shutdown, open commit abandoned");
                        // The commit already in flight is whole: it still lands.
                        if let Err(e) = self.settle_in_flight(&stop).await {
                            error!(topic = %self.topic, partition = self.partition, error = %e, "commit in flight failed during shutdown");
                        }
                    } else if let Err(e) = self.commit_until_done(&stop).await {
                        if matches!(e, WorkerError::OffsetGap { .. }) {
                            // Refused under `on_offset_gap = "fail"`: `weir run` exits non-zero.
                            self.fail(e);
                        } else {
                            error!(topic = %self.topic, partition = self.partition, error = %e, "final commit failed");
                        }
                    } else if let Some(record) = self.rewound.take()
                        && self.shared.config.kafka.on_offset_gap == OnOffsetGap::Record
                        && let Err(e) = self.record_rewind(record.offset, 0, &stop).await
                    {
                        // The next owner meets the same rewind, unless the new offsets have
                        // passed the old position by then.
                        error!(topic = %self.topic, partition = self.partition, error = %e, "recording the rewind failed during shutdown");
                    }
                    for tidying in std::mem::take(&mut self.tidying) {
                        let _ = tidying.await;
                    }
                    info!(topic = %self.topic, partition = self.partition, "worker stopped: shutdown");
                    return;
                }
            }
            if let Some(record) = self.rewound.take() {
                if let Err(e) = self.rewind(record, &mut stop).await {
                    self.fail(e);
                    return;
                }
                commit_deadline = Instant::now() + cfg.commit.interval;
                batch_deadline = Some(Instant::now() + cfg.batch.max_wait);
                continue;
            }
            // A commit that is due while the one before still uploads waits for it (the
            // in-flight arm below), not for the timer.
            let waits_for_in_flight = self.in_flight.is_some() && Instant::now() >= commit_deadline;
            let sleep_until = match (batch_deadline, waits_for_in_flight) {
                (Some(b), true) => b,
                (Some(b), false) => b.min(commit_deadline),
                (None, false) => commit_deadline,
                (None, true) => Instant::now() + Duration::from_secs(3600),
            };
            tokio::select! {
                biased;
                _ = stop.changed() => continue,
                // Before the queue: with a backlog a message is always ready.
                joined = next_settled(&mut self.in_flight) => {
                    if let Err(e) = self.apply(joined, false).await {
                        self.fail(e);
                        return;
                    }
                }
                msg = messages.next() => {
                    // Then every message already waiting (up to a batch), without going
                    // back through `select!`: its timer and stop futures cost more than a
                    // message.
                    let mut msg = msg.expect("kafka streams never end");
                    let mut taken = 0;
                    loop {
                        match self.receive(msg, &mut batch_deadline, cfg.batch.max_wait) {
                            Ok(Received::Taken) => {}
                            Ok(Received::Flushed | Received::Rewound) => break,
                            Err(e) => {
                                self.fail(e);
                                return;
                            }
                        }
                        taken += 1;
                        if taken >= cfg.batch.max_rows {
                            break;
                        }
                        match messages.next().now_or_never() {
                            Some(next) => msg = next.expect("kafka streams never end"),
                            None => break,
                        }
                    }
                }
                _ = tokio::time::sleep_until(sleep_until) => {
                    if batch_deadline.is_some_and(|b| Instant::now() >= b) {
                        batch_deadline = None;
                        if let Err(e) = self.flush_batch() {
                            self.fail(e);
                            return;
                        }
                    }
                }
            }
            // Checked after either arm: while the queue always has a message ready (a
            // backlog), the timer arm is never polled, and the interval must still bound
            // how long a record waits to become queryable.
            let due = Instant::now() >= commit_deadline;
            let pressed = self.open_full || self.lease.over();
            // Due only by time while the commit before still uploads: read on; this one
            // starts once that one has settled. Full files or a full memory share wait for
            // it instead.
            if pressed || (due && self.in_flight.is_none()) {
                if !due {
                    debug!(topic = %self.topic, partition = self.partition, open_bytes = self.lease.held(), all_open_bytes = self.shared.budget.used(), "committing early: open files reached their size or memory share");
                }
                batch_deadline = None;
                if let Err(e) = self.flush_batch() {
                    self.fail(e);
                    return;
                }
                // The commit before this one first (its entry gives this one's sequence
                // number); then this one's files are closed and handed to a task, and the
                // worker reads on while they upload.
                let settled = self.in_flight.is_some();
                match self.settle_in_flight(&stop).await {
                    Ok(true) => {}
                    Ok(false) => continue, // revoked: everything open was dropped
                    Err(e) => {
                        self.fail(e);
                        return;
                    }
                }
                // Pressed by the memory share alone: the commit that just settled gave back
                // what its upload held, which may be enough. Without this check a partition
                // whose last commit held much (the small files of a backlog spread over
                // weeks) committed again a few batches later, every hour it touched a file
                // of its own again.
                if settled && !due && !self.open_full && !self.lease.over() {
                    continue;
                }
                if let Err(e) = self.launch_commit(&stop) {
                    self.fail(e);
                    return;
                }
                commit_deadline = Instant::now() + cfg.commit.interval;
            }
        }
    }

    /// Takes one message from the partition queue into the batch, flushing the batch when it
    /// is full. A message below the position is kept aside as a rewind (handled at the top
    /// of the loop, after a commit).
    fn receive(
        &mut self,
        msg: KafkaResult<BorrowedMessage<'_>>,
        batch_deadline: &mut Option<Instant>,
        max_wait: std::time::Duration,
    ) -> Result<Received, WorkerError> {
        let m = match msg {
            Ok(m) => m,
            Err(e) => {
                self.shared.metrics.kafka_errors.inc();
                if stands_for_records(&e) {
                    return Err(WorkerError::Undeliverable {
                        topic: self.topic.clone(),
                        partition: self.partition,
                        offset: self
                            .next_offset
                            .map_or_else(|| "start".to_owned(), |o| o.to_string()),
                        error: e.to_string(),
                    });
                }
                warn!(topic = %self.topic, partition = self.partition, error = %e, "partition fetch error");
                return Ok(Received::Taken);
            }
        };
        // The borrowed message is copied into the batch here and never held across an
        // await.
        let offset = m.offset();
        if let Some(n) = self.next_offset {
            if offset < n {
                if !self.jumps.is_empty()
                    && self.shared.config.kafka.on_offset_gap == OnOffsetGap::Fail
                {
                    // Refused before the open commit can be made: its jumps can no longer
                    // be judged, and "fail" records no gap.
                    return Err(WorkerError::OffsetsRewound {
                        topic: self.topic.clone(),
                        partition: self.partition,
                        resume: n,
                        earliest: offset,
                    });
                }
                self.unjudged_jumps_are_gaps();
                self.rewound = Some(OwnedRecord {
                    offset,
                    timestamp: m.timestamp().to_millis(),
                    payload: m.payload().unwrap_or_default().to_vec(),
                });
                return Ok(Received::Rewound);
            }
            if offset > n {
                self.note_jump(n, offset);
            }
            if self.jumps.due(std::time::Instant::now) {
                self.settle_jumps()?;
            }
        }
        if self.commit_start.is_none() {
            self.commit_start = Some(offset);
        }
        self.next_offset = Some(offset + 1);
        self.commit_records += 1;
        let payload = m.payload().unwrap_or_default();
        let batch_bytes = self.shared.budget.batch_bytes();
        // A batch stays within its buffer: a record that does not fit goes into the next
        // one.
        let mut flushed = false;
        if !self.batch.is_empty() && self.batch.bytes() + payload.len() > batch_bytes {
            *batch_deadline = None;
            self.flush_batch()?;
            flushed = true;
        }
        self.batch.push(offset, m.timestamp().to_millis(), payload);
        if batch_deadline.is_none() {
            *batch_deadline = Some(Instant::now() + max_wait);
        }
        if self.batch.len() >= self.shared.config.batch.max_rows
            || self.batch.bytes() >= batch_bytes
        {
            *batch_deadline = None;
            self.flush_batch()?;
            flushed = true;
        }
        Ok(if flushed {
            Received::Flushed
        } else {
            Received::Taken
        })
    }

    /// The next record's offset is past the position (`resume`): either a hole in the log
    /// (compaction, transaction markers) or records deleted before they were read, when the
    /// broker's log now starts above `resume`. Noted here and judged with the other jumps
    /// waiting, by one broker query ([`Self::settle_jumps`]), once they are due
    /// ([`PendingJumps::due`]) or before the commit is prepared, whichever comes first: not
    /// one query per transaction marker.
    fn note_jump(&mut self, resume: i64, offset: i64) {
        self.jumps.note(resume, offset, std::time::Instant::now);
    }

    /// The offsets went back: the broker's log start is now the new log's and cannot judge
    /// the jumps of the old one still waiting. Their offsets count as deleted (a recorded
    /// gap): the old log is gone, and whether they held records cannot be asked any more.
    fn unjudged_jumps_are_gaps(&mut self) {
        let first = self.jumps.first_resume();
        let offsets = self.jumps.take_as_gap();
        if let Some(resume) = first {
            error!(topic = %self.topic, partition = self.partition, resume, skipped = offsets, "offsets went back before jumps of the old offsets were judged: their offsets are recorded as skipped");
        }
        self.skipped_offsets += offsets;
    }

    /// Judges the waiting jumps by the partition's log start, asked of the broker now: the
    /// offsets of a jump below it were deleted before they were read, a gap recorded or
    /// refused according to `kafka.on_offset_gap`; the others held no record (holes). Both
    /// are counted for the next entry, so that it accounts for every offset it covers.
    ///
    /// Asking a little after the jumps were seen, rather than at each, decides no jump a
    /// hole that an immediate query would have called a gap: a log start only moves forward
    /// while the log lasts (a rewind ends it: [`Self::unjudged_jumps_are_gaps`]), so one at
    /// or below a jump's position now was there when the jump was seen. A log start that
    /// passed a jump's position in between (retention reaching a reader that lags by as much)
    /// makes it a gap: counted as deleted, never lost without a record.
    fn settle_jumps(&mut self) -> Result<(), WorkerError> {
        let Some(first) = self.jumps.first_resume() else {
            return Ok(());
        };
        debug!(topic = %self.topic, partition = self.partition, jumps = self.jumps.len(), first, "asking the broker where the partition's log starts, to judge the offsets that jumped");
        let earliest = self.earliest_offset()?;
        let judged = self.jumps.judge(earliest);
        if let Some((resume, skipped)) = judged.gap {
            if self.shared.config.kafka.on_offset_gap == OnOffsetGap::Fail {
                return Err(WorkerError::OffsetGap {
                    topic: self.topic.clone(),
                    partition: self.partition,
                    resume,
                    earliest,
                    skipped,
                });
            }
            error!(topic = %self.topic, partition = self.partition, resume, earliest, skipped, "offset gap: records were deleted from the broker before they were read; the gap is recorded in the next ledger entry");
            // Counted on `/metrics` once the entry that records it is committed: a fence
            // drops what was read after the commit in flight, and the gap is then met again.
            self.skipped_offsets += skipped;
        }
        self.holes += judged.holes;
        Ok(())
    }

    /// The partition's earliest offset on the broker (its low watermark), asked of the
    /// broker (retried for about 30 s; blocks this worker). Only to judge jumps.
    fn earliest_offset(&self) -> Result<i64, WorkerError> {
        tokio::task::block_in_place(|| {
            crate::source::kafka::watermarks(&self.consumer, &self.topic, self.partition)
        })
        .map(|(low, _high)| low)
        .map_err(|e| {
            WorkerError::Kafka(format!(
                "reading the earliest offset of {}/{}: {e}",
                self.topic, self.partition
            ))
        })
    }

    /// The partition's offsets went back below the position: the topic was recreated or
    /// its offsets reset, and librdkafka restarted it at its earliest record. Under
    /// `kafka.on_offset_gap = "record"` the open commit is committed as it is, then an
    /// entry without records at `record`'s offset, below the previous entry's
    /// `next_offset`, records the rewind ([`Self::record_rewind`]), and `record` starts
    /// the next commit: the ledger shows the new offset range instead of dropping its
    /// records until the offsets pass the old position.
    async fn rewind(
        &mut self,
        record: OwnedRecord,
        stop: &mut watch::Receiver<Stop>,
    ) -> Result<(), WorkerError> {
        let resume = self
            .next_offset
            .expect("a rewind is seen against a position");
        if self.shared.config.kafka.on_offset_gap == OnOffsetGap::Fail {
            return Err(WorkerError::OffsetsRewound {
                topic: self.topic.clone(),
                partition: self.partition,
                resume,
                earliest: record.offset,
            });
        }
        error!(topic = %self.topic, partition = self.partition, resume, earliest = record.offset, "offsets went back below the ledger's position (topic recreated or offsets reset); committing what is open, then resuming at the earliest offset");
        // Counted on `/metrics` once the entry that starts below its predecessor is
        // committed (a fence makes the rewind be met again).
        let resets = self.resets;
        self.flush_batch()?;
        self.commit_until_done(stop).await?;
        if self.resets != resets {
            // A commit was fenced and the partition sought back to the ledger's position:
            // this record is read again from there (and the rewind seen again if it is one).
            return Ok(());
        }
        // Recorded before reading on, even when stopping: should this owner die before its
        // next commit, the next one would resume at the old position, which the new offsets
        // may have passed by then, and read on from there without a word. Records read
        // before the rewind that are still open here were never committed (the partition
        // was revoked while the commit before them settled); the broker no longer has them
        // (its offsets went back), so the rewind entry records them as a gap, with the gaps
        // the open commit was to record (jumps not judged when the rewind was seen among
        // them).
        let uncommitted = self.commit_records + self.skipped_offsets;
        if !self.record_rewind(record.offset, uncommitted, stop).await?
            || *stop.borrow() != Stop::Running
        {
            return Ok(());
        }
        self.next_offset = Some(record.offset + 1);
        self.commit_start = Some(record.offset);
        self.commit_records = 1;
        self.batch
            .push(record.offset, record.timestamp, &record.payload);
        Ok(())
    }

    /// Writes the entry that records a rewind: no records, `start_offset` = `next_offset` =
    /// `offset` (below its predecessor's `next_offset`), the operator state carried on and
    /// `offset_resets` one more; `lost`, offsets read past the ledger's position before the
    /// rewind and never committed (records and gaps), as its `skipped_offsets`. The next
    /// owner then resumes at the new offsets. Created if absent and settled by reading it
    /// back, as every entry, and retried through store failures until written
    /// ([`commit_rewind`]); `false` when another owner wrote that sequence number first (this
    /// worker then starts again from the ledger) or the partition was revoked first.
    async fn record_rewind(
        &mut self,
        offset: i64,
        lost: u64,
        stop: &watch::Receiver<Stop>,
    ) -> Result<bool, WorkerError> {
        if lost > 0 {
            error!(topic = %self.topic, partition = self.partition, lost, "offsets read before the offsets went back were not committed before the partition was revoked, and the broker no longer has them: the rewind entry records them as skipped offsets");
        }
        let previous = self.tail.last.as_ref();
        let entry = Entry {
            version: LEDGER_VERSION,
            seq: self.tail.next_seq(),
            epoch: self.epoch,
            writer: self.protocol.writer().to_owned(),
            dataset: self.ds.name.clone(),
            topic: self.topic.clone(),
            partition: self.partition,
            start_offset: offset,
            next_offset: offset,
            records: 0,
            rows: 0,
            dead_lettered: 0,
            skipped_offsets: lost,
            holes: 0,
            offset_resets: previous.map_or(0, |e| e.offset_resets) + 1,
            files: Vec::new(),
            dead_letters: Vec::new(),
            removed: Vec::new(),
            operator_state: Entry::encode_state(&self.chain.snapshot()),
            config_hash: self.shared.config_hash.clone(),
            weir_version: env!("CARGO_PKG_VERSION").to_owned(),
            takeover: false,
            units: Vec::new(),
            backfill: None,
            abandoned: false,
            event_time: None,
        };
        match commit_rewind(&self.shared, &self.protocol.ledger, &entry, stop).await {
            Ok(true) => self.shared.metrics.set_store_healthy(true),
            Ok(false) => {
                error!(topic = %self.topic, partition = self.partition, offset, "the partition was revoked before the rewind entry was settled (it may not have been written): its next owner meets the rewind again only if the new offsets have not passed the old position by then");
                return Ok(false);
            }
            Err(LedgerError::Fenced { .. }) => {
                // The store answered: another owner wrote that sequence number first.
                self.shared.metrics.set_store_healthy(true);
                if *stop.borrow() == Stop::Running {
                    self.reset_to_ledger().await?;
                }
                // Stopping: nothing more is read, so no position to restore.
                return Ok(false);
            }
            Err(e) => return Err(e.into()),
        }
        let metrics = &self.shared.metrics;
        metrics.partition(
            &metrics.offset_resets,
            &self.ds.name,
            &self.topic,
            self.partition,
            1,
        );
        if lost > 0 {
            metrics.partition(
                &metrics.skipped_offsets,
                &self.ds.name,
                &self.topic,
                self.partition,
                lost,
            );
        }
        self.tail = Tail { last: Some(entry) };
        Ok(true)
    }

    fn fail(&self, e: WorkerError) {
        match e {
            WorkerError::Superseded { ours, theirs } => {
                // Within one consumer group the partition's revocation follows (this member
                // was paused or cut off past its session). If none does, another deployment
                // under another `kafka.group_id` writes the same lake, and this member holds
                // the partition without reading it.
                error!(topic = %self.topic, partition = self.partition, epoch = ours, newer_epoch = theirs, "worker stopped: another writer took the partition over in the ledger; this member reads nothing from it until its group revokes it (if no revocation follows, check for a second deployment with another kafka.group_id writing the same lake)");
            }
            other => {
                error!(topic = %self.topic, partition = self.partition, error = %other, "partition worker failed");
                self.shared
                    .fatal(format!("{}/{}: {other}", self.topic, self.partition));
            }
        }
    }

    /// Drops everything read after the last settled commit: the commit in flight, the
    /// batch, open files and dead letters, a rewound record and the gap the open commit was
    /// to record (reading again from the ledger's position meets it again).
    fn abandon(&mut self) {
        self.in_flight = None;
        self.batch.clear(self.shared.budget.batch_bytes());
        self.writer.discard();
        self.dead.discard();
        self.rewound = None;
        self.skipped_offsets = 0;
        self.holes = 0;
        self.jumps.clear();
        self.resets += 1;
        self.account();
    }

    /// Decodes, transforms and buffers the pending batch.
    fn flush_batch(&mut self) -> Result<(), WorkerError> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let batch = std::mem::take(&mut self.batch);
        let res = tokio::task::block_in_place(|| self.process(&batch));
        self.batch = batch;
        self.batch.clear(self.shared.budget.batch_bytes());
        self.account();
        self.shared.metrics.partitions.consumed(
            &self.topic,
            self.partition,
            std::time::Instant::now(),
        );
        res
    }

    /// Tells the budget what the open files hold now.
    /// Open files only change here (after a batch, a commit or an abandon), so their sizes
    /// are measured here, not for every record the loop receives.
    fn account(&mut self) {
        let in_flight = self.in_flight.as_ref().map_or(0, |f| f.bytes);
        self.lease
            .set(self.writer.memory_bytes() + self.dead.buffered_bytes() + in_flight);
        self.open_full = self.writer.buffered_bytes() + self.dead.buffered_bytes()
            >= self.shared.config.commit.max_bytes as usize;
    }

    fn process(&mut self, batch: &RawBatch) -> Result<(), WorkerError> {
        let payloads: Vec<&[u8]> = batch.payloads().collect();
        let started = std::time::Instant::now();
        let decoded = self.decoder.decode(&payloads);
        let n = batch.len();
        let rejected = decoded.rejects.len();
        let metrics = &self.shared.metrics;
        metrics.count(&metrics.records, &self.ds.name, n as u64);
        let mut accepted = vec![true; n];
        for r in &decoded.rejects {
            accepted[r.index] = false;
            self.dead_letter(
                &batch.records[r.index],
                payloads[r.index],
                "decode",
                r.error.kind.as_str(),
                r.error.reason.clone(),
            );
        }
        if rejected > 0 {
            self.shared
                .metrics
                .dead_lettered(&self.ds.name, "decode", rejected as u64);
        }
        let future = self.too_far_ahead(&decoded.batch);
        let mut input = decoded.batch;
        if !future.is_empty() {
            let rows = Decoded::accepted_positions(&decoded.rejects, n);
            let max_future = self.shared.config.event_time.max_future;
            for &row in &future {
                let index = rows[row];
                accepted[index] = false;
                let error = format!(
                    "event time {} is more than {} ahead of the wall clock",
                    crate::event_time::rfc3339(self.event_time_of(&input, row)),
                    humantime::format_duration(max_future)
                );
                self.dead_letter(
                    &batch.records[index],
                    payloads[index],
                    "decode",
                    DecodeErrorKind::InvalidEventTime.as_str(),
                    error,
                );
            }
            self.shared
                .metrics
                .dead_lettered(&self.ds.name, "decode", future.len() as u64);
            input = crate::event_time::without(&input, &future).map_err(WriteError::from)?;
        }
        let rejected = rejected + future.len();
        failpoint::hit("mid-batch");
        let decoded_at = std::time::Instant::now();
        self.shared
            .metrics
            .batch_stage(&self.ds.name, BatchStage::Decode, decoded_at - started);
        let processed = self.chain.process(input);
        let processed_at = std::time::Instant::now();
        self.shared.metrics.batch_stage(
            &self.ds.name,
            BatchStage::Operators,
            processed_at - decoded_at,
        );
        self.export_operator_metrics();
        // A batch the chain failed on, or whose output the writer refused, goes to the dead
        // letters whole: (stage, error_kind, error).
        let failure = match processed {
            Ok(out) => match self.write(&out) {
                Ok(()) => None,
                Err(WorkerError::Write(e @ WriteError::NullEventTime { .. })) => Some((
                    "write".to_owned(),
                    DecodeErrorKind::InvalidEventTime.as_str(),
                    e.to_string(),
                )),
                Err(e) => return Err(e),
            },
            Err(e) => Some((e.stage, "operator_error", e.error.to_string())),
        };
        if let Some((stage, kind, error)) = failure {
            warn!(topic = %self.topic, partition = self.partition, stage = %stage, error_kind = kind, error = %error, records = n - rejected, "batch failed after decoding; it goes to dead letters");
            for (i, p) in batch.records.iter().enumerate() {
                if accepted[i] {
                    self.dead_letter(p, payloads[i], &stage, kind, error.clone());
                }
            }
            self.shared
                .metrics
                .dead_lettered(&self.ds.name, &stage, (n - rejected) as u64);
        }
        Ok(())
    }

    /// Puts one record of the batch in the dead letters, with its original bytes.
    fn dead_letter(
        &mut self,
        record: &RawRecord,
        raw: &[u8],
        stage: &str,
        kind: &str,
        error: String,
    ) {
        self.dead.push(DeadLetter {
            topic: self.topic.clone(),
            partition: self.partition,
            offset: record.offset,
            kafka_timestamp: record.timestamp,
            stage: stage.to_owned(),
            error_kind: kind.to_owned(),
            error,
            raw: raw.to_vec(),
        });
    }

    /// Rows of a decoded batch whose event time is beyond `[event_time] max_future` from
    /// now (see [`crate::event_time`]).
    fn too_far_ahead(&self, batch: &RecordBatch) -> Vec<usize> {
        let Ok(column) = batch.schema().index_of(&self.ds.resolved.schema.event_time) else {
            return Vec::new();
        };
        let limit =
            crate::event_time::limit(chrono::Utc::now(), self.shared.config.event_time.max_future);
        crate::event_time::beyond(batch, column, limit)
    }

    fn event_time_of(&self, batch: &RecordBatch, row: usize) -> i64 {
        batch
            .column_by_name(&self.ds.resolved.schema.event_time)
            .and_then(|c| {
                c.as_any()
                    .downcast_ref::<arrow::array::TimestampNanosecondArray>()
                    .map(|t| t.value(row))
            })
            .unwrap_or_default()
    }

    /// Adds what the operators counted since the last call to the process metrics
    /// (`/metrics`), labelled with the dataset if the operator did not: redaction hits per rule and field, sample
    /// decisions, enrichment cache hits.
    fn export_operator_metrics(&mut self) {
        for m in self.chain.metrics() {
            let key = (m.name, m.labels);
            let seen = self.exported.entry(key.clone()).or_default();
            if m.value > *seen {
                let mut labels = key.1.clone();
                if !labels.iter().any(|(k, _)| k == "dataset") {
                    labels.insert(0, ("dataset".to_owned(), self.ds.name.clone()));
                }
                self.shared
                    .metrics
                    .operators
                    .add(&key.0, labels, m.value - *seen);
                *seen = m.value;
            }
        }
    }

    fn write(&mut self, batch: &RecordBatch) -> Result<(), WorkerError> {
        let started = std::time::Instant::now();
        self.writer.set_max_open(self.max_open_hours());
        self.writer.write(batch)?;
        let metrics = &self.shared.metrics;
        metrics.batch_stage(&self.ds.name, BatchStage::Write, started.elapsed());
        metrics.count(&metrics.rows, &self.ds.name, batch.num_rows() as u64);
        Ok(())
    }

    /// How many hours may have an open Parquet writer: `[event_time] max_open_hours`, or
    /// what this worker's share of the open-files budget pays for in codec contexts, at
    /// least one. Rows of other hours wait
    /// as Arrow data until the commit (see `sink::parquet`), so a backlog spread over
    /// weeks costs memory by rows, not by hours.
    fn max_open_hours(&self) -> usize {
        self.shared
            .config
            .event_time
            .max_open_hours
            .unwrap_or_else(|| {
                (self.shared.budget.files_per_worker() / self.writer.codec_bytes().max(1)).max(1)
            })
    }

    /// Commits everything open and waits until it is settled: the commit in flight first,
    /// then this one. Store failures and unknown outcomes are retried (the same attempt:
    /// same seq, epoch, files and bytes) until the commit is settled or the partition is
    /// revoked; on shutdown the shutdown timeout ends the wait too.
    async fn commit_until_done(&mut self, stop: &watch::Receiver<Stop>) -> Result<(), WorkerError> {
        if !self.settle_in_flight(stop).await? {
            return Ok(());
        }
        self.launch_commit(stop)?;
        self.settle_in_flight(stop).await?;
        Ok(())
    }

    /// Waits for the commit in flight, if any, and takes in its outcome. `Ok(false)` when
    /// the partition was revoked meanwhile: the commit stopped retrying, and it and
    /// everything open were dropped.
    async fn settle_in_flight(
        &mut self,
        stop: &watch::Receiver<Stop>,
    ) -> Result<bool, WorkerError> {
        let Some(in_flight) = self.in_flight.as_mut() else {
            return Ok(true);
        };
        let joined = (&mut in_flight.handle).await;
        let revoked = *stop.borrow() == Stop::Revoke;
        self.apply(joined, revoked).await?;
        Ok(!revoked)
    }

    /// Closes the open files and starts their commit as a task (see [`InFlight`]). The
    /// open commit then starts at the next offset. Nothing to do without records.
    fn launch_commit(&mut self, stop: &watch::Receiver<Stop>) -> Result<(), WorkerError> {
        assert!(self.in_flight.is_none(), "one commit in flight at a time");
        if self.commit_records == 0 {
            return Ok(());
        }
        let prepared = self.prepare()?;
        let span = tracing::info_span!(
            "commit",
            dataset = %self.ds.name,
            topic = %self.topic,
            partition = self.partition,
            seq = prepared.attempt.entry.seq,
            records = self.commit_records,
        );
        self.commit_start = Some(prepared.attempt.entry.next_offset);
        self.commit_records = 0;
        // The raw copies of dead letters still to send to their topic are held as long.
        let bytes = prepared.attempt.bytes() as usize
            + prepared.to_topic.iter().map(|d| d.raw.len()).sum::<usize>();
        let task = run_commit(
            self.shared.clone(),
            self.protocol.clone(),
            self.ds.name.clone(),
            self.topic.clone(),
            self.partition,
            stop.clone(),
            prepared,
        );
        self.in_flight = Some(InFlight {
            handle: tokio::spawn(task.instrument(span)),
            bytes,
        });
        self.account();
        Ok(())
    }

    /// Takes in how the commit in flight ended. `revoked`: the partition is being given
    /// up, so a lost race only drops what is open (no reset to the ledger).
    async fn apply(
        &mut self,
        joined: Result<Result<Option<Settled>, WorkerError>, tokio::task::JoinError>,
        revoked: bool,
    ) -> Result<(), WorkerError> {
        self.in_flight = None;
        let Some(settled) = joined.map_err(|e| WorkerError::CommitTask(e.to_string()))?? else {
            // Revoked while retrying: the commit was given up.
            self.abandon();
            return Ok(());
        };
        self.tidying.retain(|t| !t.is_finished());
        self.tidying.extend(settled.tidy);
        let metrics = &self.shared.metrics;
        metrics.set_store_healthy(true);
        let entry = settled.entry;
        match settled.outcome {
            Outcome::Fenced { theirs, removed } => {
                metrics.commit_conflicts.inc();
                settled.span.in_scope(|| {
                    warn!(topic = %self.topic, partition = self.partition, seq = entry.seq, ours = self.epoch, theirs, removed, "ledger entry already written by another writer; our files it does not name were removed, and what was read after them is dropped");
                });
                if revoked {
                    self.abandon();
                } else {
                    // Everything read since was built on the lost entry's state.
                    self.reset_to_ledger().await?;
                }
                return Ok(());
            }
            Outcome::Committed => {}
        }
        Metrics::observe(&metrics.commit_duration, &self.ds.name, settled.duration);
        metrics.count(&metrics.commits, &self.ds.name, 1);
        metrics.count(&metrics.bytes_written, &self.ds.name, settled.bytes);
        if let Some(previous) = &self.tail.last
            && entry.start_offset < previous.next_offset
        {
            // The entry that records a rewind: offsets went back (topic recreated, reset).
            metrics.partition(
                &metrics.offset_resets,
                &self.ds.name,
                &self.topic,
                self.partition,
                1,
            );
        }
        if entry.skipped_offsets > 0 {
            metrics.partition(
                &metrics.skipped_offsets,
                &self.ds.name,
                &self.topic,
                self.partition,
                entry.skipped_offsets,
            );
        }
        let now = std::time::Instant::now();
        metrics.partitions.committed(
            &self.topic,
            self.partition,
            entry.next_offset,
            settled.newest_event_time,
            now,
        );
        if self.commit_records > 0 {
            // Records read while the commit uploaded still wait for the next one.
            metrics
                .partitions
                .consumed(&self.topic, self.partition, now);
        }
        settled.span.in_scope(|| {
            info!(topic = %self.topic, partition = self.partition, seq = entry.seq, offsets = %format!("{}..{}", entry.start_offset, entry.next_offset), rows = entry.rows, dead_letters = entry.dead_lettered, files = entry.files.len(), "committed");
        });
        let mut tpl = TopicPartitionList::new();
        if tpl
            .add_partition_offset(
                &self.topic,
                self.partition,
                Offset::Offset(entry.next_offset),
            )
            .is_ok()
            && let Err(e) = self.consumer.commit(&tpl, CommitMode::Async)
        {
            debug!(error = %e, "kafka group offset commit not sent");
        }
        self.tail = Tail { last: Some(entry) };
        self.account();
        Ok(())
    }

    /// Closes the open files and builds the entry that will name them.
    fn prepare(&mut self) -> Result<Prepared, WorkerError> {
        self.settle_jumps()?;
        let seq = self.tail.next_seq();
        let start = self.commit_start.expect("records were consumed");
        let next = self.next_offset.expect("records were consumed");
        let file = file_name(&self.topic, self.partition, start, seq, self.epoch);
        let lineage = vec![
            ("weir.kafka.topic".to_owned(), self.topic.clone()),
            (
                "weir.kafka.partition".to_owned(),
                self.partition.to_string(),
            ),
            ("weir.kafka.offsets".to_owned(), format!("{start}..{next}")),
            ("weir.ledger.seq".to_owned(), seq.to_string()),
            ("weir.ledger.epoch".to_owned(), self.epoch.to_string()),
        ];
        let newest_event_time = self.writer.newest_event_time();
        // A rewind is counted by the marker entry `rewind` writes, or else by the entry that
        // starts below its predecessor.
        let offset_resets = self.tail.last.as_ref().map_or(0, |e| {
            e.offset_resets + u64::from(e.next_offset >= 0 && start < e.next_offset)
        });
        let to_topic = if self.shared.dead_letter_topic.is_some() {
            self.dead.letters().to_vec()
        } else {
            Vec::new()
        };
        let (data, dead) = tokio::task::block_in_place(|| {
            let data = self.writer.close(&file, &lineage)?;
            let dead = self.dead.close(&self.ds.name, &file, offset_resets)?;
            Ok::<_, WorkerError>((data, dead))
        })?;
        let rows = data.iter().map(|f| f.rows).sum();
        let dead_lettered = dead.as_ref().map_or(0, |f| f.rows);
        let entry = Entry {
            version: LEDGER_VERSION,
            seq,
            epoch: self.epoch,
            writer: self.protocol.writer().to_owned(),
            dataset: self.ds.name.clone(),
            topic: self.topic.clone(),
            partition: self.partition,
            start_offset: start,
            next_offset: next,
            records: self.commit_records,
            rows,
            dead_lettered,
            skipped_offsets: std::mem::take(&mut self.skipped_offsets),
            holes: std::mem::take(&mut self.holes),
            offset_resets,
            files: data.iter().map(ClosedFile::file_ref).collect(),
            dead_letters: dead.iter().map(ClosedFile::file_ref).collect(),
            removed: vec![],
            operator_state: Entry::encode_state(&self.chain.snapshot()),
            config_hash: self.shared.config_hash.clone(),
            weir_version: env!("CARGO_PKG_VERSION").to_owned(),
            takeover: false,
            units: Vec::new(),
            backfill: None,
            abandoned: false,
            event_time: Some(self.ds.resolved.schema.event_time_rule()),
        };
        let mut files = data;
        files.extend(dead);
        Ok(Prepared {
            attempt: Attempt::new(entry, files),
            to_topic,
            newest_event_time,
        })
    }

    /// After losing a commit race: drop everything open, reload state from the ledger and
    /// seek the partition back to the ledger's position.
    async fn reset_to_ledger(&mut self) -> Result<(), WorkerError> {
        self.abandon();
        let tail = self.protocol.ledger.tail().await?;
        if let Some(last) = &tail.last
            && last.epoch > self.epoch
        {
            return Err(WorkerError::Superseded {
                ours: self.epoch,
                theirs: last.epoch,
            });
        }
        self.chain = build_chain(&self.shared, &self.ds, &tail)?;
        self.exported.clear();
        let next = tail.next_offset();
        self.shared.metrics.partitions.reset(
            &self.topic,
            self.partition,
            next,
            std::time::Instant::now(),
        );
        self.tail = tail;
        self.next_offset = next;
        self.commit_start = next;
        self.commit_records = 0;
        // Without a position in the ledger (not expected: a partition's start is recorded
        // when it is assigned), where a partition starts: `kafka.start_from`.
        let offset = match next {
            Some(offset) => Offset::Offset(offset),
            None => match self.shared.config.kafka.start_from {
                StartFrom::Earliest => Offset::Beginning,
                StartFrom::Latest => Offset::End,
            },
        };
        let consumer = self.consumer.clone();
        let topic = self.topic.clone();
        let partition = self.partition;
        // With a timeout, librdkafka's seek returns once its fetcher has taken the new
        // position and purges what it prefetched from the old one: no message read before
        // the seek reaches the queue after it (rdkafka.h, `rd_kafka_seek`). `note_jump`
        // relies on that: a stale message past the position would read as a hole.
        tokio::task::block_in_place(|| {
            consumer.seek(&topic, partition, offset, Duration::from_secs(10))
        })
        .map_err(|e| WorkerError::Kafka(format!("seek to {offset:?}: {e}")))?;
        Ok(())
    }
}

/// Commits an entry that covers no records and names no files (a partition's start; a
/// rewind's goes through [`commit_rewind`]): no intent and no uploads, the entry alone,
/// created if absent and settled by reading it back when the answer is lost
/// (`PartitionLedger::commit`). A store failure or an unknown outcome is retried a few
/// times with backoff; `Fenced` and verdicts return at once. `kind` names the entry in the
/// retry log line.
async fn commit_without_records(
    ledger: &PartitionLedger,
    entry: &Entry,
    kind: &'static str,
) -> Result<(), LedgerError> {
    const ROUNDS: u32 = 6;
    let mut wait = Duration::from_millis(500);
    let mut round = 1;
    loop {
        match ledger.commit(entry).await {
            Err(e) if e.is_retryable() && round < ROUNDS => {
                warn!(topic = %entry.topic, partition = entry.partition, kind, round, error = %e, retry_in_ms = wait.as_millis() as u64, "writing an entry without records failed, retrying");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(10));
                round += 1;
            }
            other => return other,
        }
    }
}

struct Prepared {
    attempt: Attempt,
    /// Dead letters still to produce to `dead_letter.kafka_topic` (emptied once sent, so a
    /// retried commit does not send them again).
    to_topic: Vec<DeadLetter>,
    /// Newest event time (ns) of the rows the attempt commits.
    newest_event_time: Option<i64>,
}

/// Where [`Worker::run`] waits for the commit in flight: never ready without one.
async fn next_settled(
    in_flight: &mut Option<InFlight>,
) -> Result<Result<Option<Settled>, WorkerError>, tokio::task::JoinError> {
    match in_flight {
        Some(f) => (&mut f.handle).await,
        None => std::future::pending().await,
    }
}

/// The body of an [`InFlight`] commit: stage, send dead letters to their topic, finish;
/// a store failure, an unknown outcome or an unreachable dead-letter topic is retried
/// (0.5 s doubling to 30 s, no limit) with the same attempt, until the partition is
/// revoked (`Ok(None)`; an attempt is never cut short). A commit that keeps failing fills
/// the worker's lease with what it reads meanwhile, and then the worker waits.
async fn run_commit(
    shared: Arc<Shared>,
    protocol: Protocol,
    dataset: String,
    topic: String,
    partition: i32,
    stop: watch::Receiver<Stop>,
    mut p: Prepared,
) -> Result<Option<Settled>, WorkerError> {
    let started = std::time::Instant::now();
    let mut delay = Duration::from_millis(500);
    loop {
        match attempt_commit(&shared, &protocol, &dataset, &mut p).await {
            Ok(outcome) => {
                let Prepared {
                    attempt,
                    newest_event_time,
                    ..
                } = p;
                // Clearing the intent and checkpointing are off the commit's path: the
                // entry is the commit, and the next commit need not wait for them.
                let tidy = (outcome == Outcome::Committed).then(|| {
                    let (protocol, entry) = (protocol.clone(), attempt.entry.clone());
                    tokio::spawn(async move { protocol.tidy(&entry).await })
                });
                return Ok(Some(Settled {
                    tidy,
                    bytes: attempt.bytes(),
                    entry: attempt.entry,
                    outcome,
                    newest_event_time,
                    duration: started.elapsed(),
                    // The task runs instrumented with its commit's span.
                    span: tracing::Span::current(),
                }));
            }
            Err(WorkerError::Ledger(e)) if e.is_retryable() => {
                shared.metrics.store_errors.inc();
                shared.metrics.set_store_healthy(false);
                warn!(topic = %topic, partition, error = %e, retry_in_ms = delay.as_millis() as u64, "commit not settled, retrying; the partition reads on until its memory share is full");
            }
            Err(WorkerError::DeadLetterTopic(reason)) => {
                shared.metrics.kafka_errors.inc();
                warn!(topic = %topic, partition, error = %reason, retry_in_ms = delay.as_millis() as u64, "commit waits for the dead-letter topic");
            }
            Err(e) => return Err(e),
        }
        if *stop.borrow() == Stop::Revoke {
            return Ok(None);
        }
        shared
            .metrics
            .partitions
            .retrying(&topic, partition, std::time::Instant::now());
        sleep_unless_revoked(delay, stop.clone()).await;
        delay = (delay * 2).min(Duration::from_secs(30));
    }
}

/// Writes a rewind entry, retrying a store failure or an unknown outcome as a commit is
/// retried (0.5 s doubling to 30 s, no limit; [`run_commit`]) until it is written, or the
/// partition is revoked (`Ok(false)`). Giving up instead would stop the process with the
/// rewind known only to it: were the new offsets to pass the old position before the next
/// owner reads, that owner would resume there without a word.
///
/// An entry that records offsets lost before it (`skipped_offsets`: records read before the
/// rewind and never committed, which the broker no longer has) is the only record of them,
/// so it is retried past a revoke too, until written or the worker is aborted once
/// `shutdown.timeout` has passed.
async fn commit_rewind(
    shared: &Shared,
    ledger: &PartitionLedger,
    entry: &Entry,
    stop: &watch::Receiver<Stop>,
) -> Result<bool, LedgerError> {
    let until_revoked = entry.skipped_offsets == 0;
    let mut delay = Duration::from_millis(500);
    loop {
        match ledger.commit(entry).await {
            Err(e) if e.is_retryable() => {
                shared.metrics.store_errors.inc();
                shared.metrics.set_store_healthy(false);
                warn!(topic = %entry.topic, partition = entry.partition, seq = entry.seq, error = %e, retry_in_ms = delay.as_millis() as u64, "writing the rewind entry failed, retrying; the partition reads nothing until it is written");
            }
            other => return other.map(|()| true),
        }
        if until_revoked && *stop.borrow() == Stop::Revoke {
            return Ok(false);
        }
        shared.metrics.partitions.retrying(
            &entry.topic,
            entry.partition,
            std::time::Instant::now(),
        );
        if until_revoked {
            sleep_unless_revoked(delay, stop.clone()).await;
        } else {
            tokio::time::sleep(delay).await;
        }
        delay = (delay * 2).min(Duration::from_secs(30));
    }
}

/// Waits `delay` before a retry; a revoke ends the wait early, other changes (shutdown) do
/// not.
async fn sleep_unless_revoked(delay: Duration, mut stop: watch::Receiver<Stop>) {
    tokio::select! {
        () = tokio::time::sleep(delay) => {}
        () = async {
            loop {
                if stop.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
                if *stop.borrow() == Stop::Revoke {
                    return;
                }
            }
        } => {}
    }
}

/// One try of a commit's remote steps; each is skipped when an earlier try did it.
async fn attempt_commit(
    shared: &Shared,
    protocol: &Protocol,
    dataset: &str,
    p: &mut Prepared,
) -> Result<Outcome, WorkerError> {
    if !p.attempt.staged() {
        let started = std::time::Instant::now();
        protocol.stage(&mut p.attempt).await?;
        Metrics::observe(&shared.metrics.upload_duration, dataset, started.elapsed());
    }
    if let Some(dlt) = &shared.dead_letter_topic
        && !p.to_topic.is_empty()
    {
        let entry = &p.attempt.entry;
        dlt.send(dataset, (entry.seq, entry.epoch), &p.to_topic)
            .await
            .map_err(WorkerError::DeadLetterTopic)?;
        p.to_topic.clear();
    }
    Ok(protocol.finish_entry(&p.attempt).await?)
}

/// A worker's entry in [`Partitions`], removed when the worker's future ends (it returned,
/// or its task was aborted).
struct Held {
    partitions: Arc<Partitions>,
    topic: String,
    partition: i32,
    epoch: u64,
}

impl Held {
    fn register(worker: &Worker, from_earliest: bool) -> Held {
        let partitions = worker.shared.metrics.partitions.clone();
        partitions.assigned(
            &worker.ds.name,
            &worker.topic,
            worker.partition,
            worker.epoch,
            worker.tail.next_offset(),
            from_earliest,
            std::time::Instant::now(),
        );
        Held {
            partitions,
            topic: worker.topic.clone(),
            partition: worker.partition,
            epoch: worker.epoch,
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.partitions
            .remove(&self.topic, self.partition, self.epoch);
    }
}

fn build_chain(shared: &Shared, ds: &DatasetRuntime, tail: &Tail) -> Result<Chain, WorkerError> {
    let mut chain = Chain::build(
        &ds.operators,
        &ds.name,
        ds.resolved.input_schema.clone(),
        shared.secrets.as_ref(),
        &shared.resources,
    )
    .map_err(|e| WorkerError::Chain(e.to_string()))?;
    let Some(last) = &tail.last else {
        return Ok(chain);
    };
    let state = match last.chain_state() {
        Ok(state) => state,
        Err(reason) => {
            // Undecodable state is a damaged entry, not a config change: stop rather
            // than silently resample or re-budget from zero.
            return Err(WorkerError::Chain(format!(
                "operator state of ledger entry {}: {reason}",
                last.seq
            )));
        }
    };
    let report = chain.restore(&state);
    let (topic, partition, seq) = (&last.topic, last.partition, last.seq);
    for op in &report.operators {
        let (kind, name) = (&op.kind, &op.name);
        match &op.outcome {
            RestoreOutcome::Stateless => {}
            RestoreOutcome::Restored => {
                info!(dataset = %ds.name, topic = %topic, partition, seq, operator = %name, kind = %kind, "operator state restored")
            }
            RestoreOutcome::RestoredLegacy { saved_position } => {
                info!(dataset = %ds.name, topic = %topic, partition, seq, operator = %name, kind = %kind, saved_position, "operator state restored, matched by position and type (entry written before operator names)")
            }
            RestoreOutcome::NoState => {
                info!(dataset = %ds.name, topic = %topic, partition, seq, operator = %name, kind = %kind, "operator starts with fresh state: the ledger holds none under its name")
            }
            RestoreOutcome::Refused { reason } => {
                warn!(dataset = %ds.name, topic = %topic, partition, seq, operator = %name, kind = %kind, reason = %reason, "operator starts with fresh state: its saved state no longer fits its settings")
            }
        }
    }
    for saved in &report.dropped {
        let name = saved.name.as_deref().unwrap_or(&saved.kind);
        warn!(dataset = %ds.name, topic = %topic, partition, seq, operator = %name, kind = %saved.kind, position = saved.position, "saved operator state dropped: no operator in the chain keeps state under its type and name")
    }
    Ok(chain)
}

fn new_writer(
    shared: &Shared,
    ds: &DatasetRuntime,
    chain: &Chain,
) -> Result<PartitionWriter, WorkerError> {
    let mut lineage = vec![
        (
            "weir.version".to_owned(),
            env!("CARGO_PKG_VERSION").to_owned(),
        ),
        ("weir.dataset".to_owned(), ds.name.clone()),
        ("weir.schema".to_owned(), ds.resolved.schema.name.clone()),
        ("weir.config_hash".to_owned(), shared.config_hash.clone()),
    ];
    lineage.extend(chain.lineage());
    Ok(PartitionWriter::new(
        &ds.name,
        chain.output_schema().clone(),
        &ds.resolved.schema.event_time,
        &shared.config.parquet,
        lineage,
    )?)
}

/// Whether a consumer error stands for records of the partition that the client cannot
/// deliver: librdkafka reports them once and then fetches past them, so carrying on would
/// skip them. Every other error is about the broker or the connection (librdkafka retries).
fn stands_for_records(error: &rdkafka::error::KafkaError) -> bool {
    use rdkafka::types::RDKafkaErrorCode as Code;
    matches!(
        error.rdkafka_error_code(),
        Some(
            Code::BadCompression
                | Code::BadMessage
                | Code::NotImplemented
                | Code::InvalidMessage
                | Code::InvalidMessageSize
                | Code::InvalidRecord
                | Code::MessageSizeTooLarge
                | Code::UnsupportedCompressionType
        )
    )
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use object_store::memory::InMemory;
    use rdkafka::error::KafkaError;
    use rdkafka::types::RDKafkaErrorCode as Code;
    use tokio::sync::watch;

    use super::{Stop, commit_rewind, stands_for_records};
    use crate::config::Config;
    use crate::faulty_store::{FaultSpec, FaultyStore};
    use crate::ledger::{Entry, PartitionLedger};
    use crate::runtime::Shared;

    fn shared() -> Arc<Shared> {
        Shared::for_tests(
            Config::parse("[kafka]\nbrokers = \"b:1\"\n[storage]\nurl = \"memory://\"\n").unwrap(),
        )
    }

    /// A rewind entry at offset 0; `lost`, offsets read before the rewind and never
    /// committed.
    fn rewind_entry(lost: u64) -> Entry {
        Entry {
            rows: 0,
            skipped_offsets: lost,
            offset_resets: 1,
            ..crate::ledger::tests::entry(1, 1, 0, 0, &[])
        }
    }

    /// Against a store that fails every call, a revoked partition gives up a rewind entry
    /// that records nothing lost (its next owner meets the rewind itself), but not one
    /// that records offsets lost before it: that entry is their only record, and only the
    /// abort at `shutdown.timeout` ends its retries. With a store that answers, it is
    /// written.
    #[tokio::test(start_paused = true)]
    async fn a_rewind_entry_recording_lost_offsets_is_retried_past_a_revoke() {
        let shared = shared();
        let failing = FaultyStore::new(
            Arc::new(InMemory::new()),
            FaultSpec::parse("rate=1,seed=7,delay=1s").unwrap(),
        );
        let ledger = PartitionLedger::new(Arc::new(failing), "ds", "t", 0);
        let (_tx, revoked) = watch::channel(Stop::Revoke);
        assert!(
            !commit_rewind(&shared, &ledger, &rewind_entry(0), &revoked)
                .await
                .unwrap()
        );
        let lost = tokio::time::timeout(
            Duration::from_secs(600),
            commit_rewind(&shared, &ledger, &rewind_entry(5), &revoked),
        )
        .await;
        assert!(lost.is_err(), "gave up: {lost:?}");
        assert!(!shared.metrics.store_healthy());

        let ledger = PartitionLedger::new(Arc::new(InMemory::new()), "ds", "t", 0);
        assert!(
            commit_rewind(&shared, &ledger, &rewind_entry(5), &revoked)
                .await
                .unwrap()
        );
    }

    #[test]
    fn record_errors_are_told_from_transport_errors() {
        for code in [
            Code::BadCompression,
            Code::BadMessage,
            Code::InvalidRecord,
            Code::UnsupportedCompressionType,
        ] {
            assert!(
                stands_for_records(&KafkaError::MessageConsumption(code)),
                "{code:?}"
            );
        }
        for code in [
            Code::BrokerTransportFailure,
            Code::AllBrokersDown,
            Code::NotLeaderForPartition,
            Code::RequestTimedOut,
            Code::UnknownTopicOrPartition,
        ] {
            assert!(
                !stands_for_records(&KafkaError::MessageConsumption(code)),
                "{code:?}"
            );
        }
    }
}
