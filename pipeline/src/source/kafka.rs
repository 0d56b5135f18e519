//! The Kafka source: one consumer in a consumer group (cooperative-sticky), one worker per
//! assigned partition.
//!
//! ```text
//!               rebalance callback (poll thread)
//!  assign(p) ──▶ claim epoch, read ledger tail, remove orphans   (object store, blocking)
//!            ──▶ no position in the ledger yet: record where `start_from` points now
//!                (the broker's earliest or next offset) in an entry of no records
//!            ──▶ split p's queue off the consumer, spawn worker p
//!            ──▶ incremental_assign(p @ ledger.next_offset)       (Kafka's offset never read)
//!  revoke(p) ──▶ stop worker p (it abandons its open commit), wait, incremental_unassign(p)
//! ```
//!
//! Each worker reads its own partition queue. When a worker is busy (slow store, big
//! batch) it stops reading; librdkafka stops fetching that partition once
//! `queued.max.messages.kbytes` is buffered. That is the backpressure: nothing in Weir
//! buffers more than one batch per partition plus its open commit.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use rdkafka::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaRespErr;
use tokio::sync::watch;
use tracing::{error, info, warn};

use crate::config::{KafkaConfig, StartFrom};
use crate::runtime::Shared;
use crate::worker::{Stop, Worker};

pub type WeirConsumer = StreamConsumer<WeirContext>;

struct Running {
    stop: watch::Sender<Stop>,
    join: tokio::task::JoinHandle<()>,
}

/// The consumer's context: owns the partition workers and runs the rebalance protocol.
pub struct WeirContext {
    shared: Arc<Shared>,
    runtime: tokio::runtime::Handle,
    consumer: OnceLock<Weak<WeirConsumer>>,
    workers: Mutex<HashMap<(String, i32), Running>>,
}

impl ClientContext for WeirContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => error!(facility = fac, "librdkafka: {log_message}"),
            RDKafkaLogLevel::Warning => warn!(facility = fac, "librdkafka: {log_message}"),
            _ => tracing::debug!(facility = fac, "librdkafka: {log_message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.shared.metrics.kafka_errors.inc();
        warn!(error = %error, reason, "kafka client error");
    }
}

impl ConsumerContext for WeirContext {
    fn rebalance(
        &self,
        base: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                let partitions = partitions_of(tpl);
                info!(partitions = ?partitions, "partitions assigned");
                // An empty assignment (this member got nothing, or the client is closing)
                // has nothing to resume; it is acknowledged all the same.
                if !partitions.is_empty()
                    && let Err(e) = self.on_assign(tpl, &partitions)
                {
                    error!(error = %e, "cannot resume assigned partitions from the ledger; exiting");
                    self.shared.fatal(format!("resume failed: {e}"));
                    // The client waits for every rebalance to be acknowledged, its close
                    // too: take none of the partitions, but answer, or the process never
                    // exits.
                    if let Err(e) = acknowledge_assignment(base, &TopicPartitionList::new()) {
                        warn!(error = %e, "empty assignment not acknowledged");
                    }
                    return;
                }
                if let Err(e) = acknowledge_assignment(base, tpl) {
                    self.shared.fatal(format!("assign failed: {e}"));
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                let partitions = partitions_of(tpl);
                let lost = base.assignment_lost();
                info!(partitions = ?partitions, lost, "partitions revoked");
                self.stop_workers(&partitions, Stop::Revoke);
                let res = if matches!(
                    base.rebalance_protocol(),
                    rdkafka::consumer::RebalanceProtocol::Cooperative
                ) {
                    base.incremental_unassign(tpl)
                } else {
                    base.unassign()
                };
                if let Err(e) = res {
                    warn!(error = %e, "unassign failed");
                }
            }
            other => {
                warn!(error = ?other, "rebalance error");
                let _ = base.unassign();
            }
        }
    }

    fn commit_callback(
        &self,
        result: rdkafka::error::KafkaResult<()>,
        _offsets: &TopicPartitionList,
    ) {
        if let Err(e) = result {
            // Only lag metrics depend on it: the ledger is the resume position.
            warn!(error = %e, "kafka group offset commit failed");
        }
    }
}

/// The offset a partition without a position in the ledger starts at: its earliest offset
/// on the broker (`kafka.start_from = "earliest"`) or its next one (`"latest"`), asked of the
/// broker (retried for about 30 s).
fn start_offset(
    consumer: &WeirConsumer,
    topic: &str,
    partition: i32,
    start_from: StartFrom,
) -> Result<i64, String> {
    let (low, high) = watermarks(consumer, topic, partition).map_err(|e| {
        format!(
            "{topic}/{partition}: reading its offsets on the broker to record where it starts: {e}"
        )
    })?;
    let start = match start_from {
        StartFrom::Earliest => low,
        StartFrom::Latest => high,
    };
    if start < 0 {
        return Err(format!(
            "{topic}/{partition}: the broker reported offsets {low}..{high}; cannot record where it starts"
        ));
    }
    Ok(start)
}

/// A partition's (low, high) watermarks, asked of the broker: tries of up to 10 s each,
/// waiting a little longer after each failure, until [`WATERMARKS_PATIENCE`] has passed
/// (about 42 s at most in all), so that a leader election, whose errors come back at once,
/// is waited out. Blocks the calling thread.
pub(crate) fn watermarks(
    consumer: &WeirConsumer,
    topic: &str,
    partition: i32,
) -> Result<(i64, i64), KafkaError> {
    let deadline = std::time::Instant::now() + WATERMARKS_PATIENCE;
    let mut attempt: u64 = 0;
    loop {
        match consumer.fetch_watermarks(topic, partition, Duration::from_secs(10)) {
            Ok(found) => return Ok(found),
            Err(e) if std::time::Instant::now() < deadline => {
                attempt += 1;
                warn!(topic = %topic, partition, error = %e, attempt, "cannot read the partition's offsets on the broker, retrying");
                std::thread::sleep(Duration::from_millis(500 * attempt.min(4)));
            }
            Err(e) => return Err(e),
        }
    }
}

/// How long [`watermarks`] keeps trying before its caller fails (the last try may take 10 s
/// more).
const WATERMARKS_PATIENCE: Duration = Duration::from_secs(30);

/// A jump of a partition's offsets from the position `resume` to a record at `offset`
/// (`resume < offset`), judged by the log start `earliest` the broker reported: the offsets
/// below `earliest` were deleted before they were read (a gap, `skipped`), the others held no
/// record (`holes`: transaction markers, compacted records). The broker may have deleted even
/// the record just received since it sent it, so the gap ends at `offset` at most.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Jump {
    pub skipped: u64,
    pub holes: u64,
}

impl Jump {
    pub(crate) fn new(resume: i64, offset: i64, earliest: i64) -> Jump {
        debug_assert!(resume < offset, "a jump goes forward");
        let end = earliest.clamp(resume, offset);
        Jump {
            skipped: (end - resume) as u64,
            holes: (offset - end) as u64,
        }
    }
}

/// Jumps `(resume, offset)` of one partition, in order, judged by one log start `earliest`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Judged {
    /// Offsets that held no record.
    pub holes: u64,
    /// The first jump that lost offsets (its `resume`), and how many all of them lost.
    pub gap: Option<(i64, u64)>,
}

impl Judged {
    pub(crate) fn of(jumps: &[(i64, i64)], earliest: i64) -> Judged {
        let mut judged = Judged {
            holes: 0,
            gap: None,
        };
        for &(resume, offset) in jumps {
            let jump = Jump::new(resume, offset, earliest);
            judged.holes += jump.holes;
            if jump.skipped > 0 {
                judged.gap.get_or_insert((resume, 0)).1 += jump.skipped;
            }
        }
        judged
    }
}

/// Jumps an open commit notes before judging them without waiting for the commit (a
/// compacted topic jumps at almost every record): bounds what they hold.
pub(crate) const MAX_PENDING_JUMPS: usize = 4096;

/// How long a jump of the offsets may wait to be judged while records keep arriving: the
/// longer it waits, the likelier retention passes a hole meanwhile, which then counts as a
/// gap. Jumps judged together cost one broker query.
pub(crate) const JUDGE_JUMPS_WITHIN: Duration = Duration::from_secs(1);

/// The jumps of a partition's open commit not judged yet, `(resume, offset)` in order, and
/// when the oldest was seen. They are judged together ([`PendingJumps::judge`]) once due
/// ([`PendingJumps::due`]) or before the commit is prepared, whichever comes first; offsets
/// that go back meanwhile make them a gap ([`PendingJumps::take_as_gap`]).
#[derive(Debug, Default)]
pub(crate) struct PendingJumps {
    jumps: Vec<(i64, i64)>,
    since: Option<Instant>,
}

impl PendingJumps {
    /// Notes a jump; the clock (`now`) is read for the first of the waiting jumps only.
    pub(crate) fn note(&mut self, resume: i64, offset: i64, now: impl FnOnce() -> Instant) {
        self.jumps.push((resume, offset));
        self.since.get_or_insert_with(now);
    }

    /// Whether they are judged now: the oldest has waited [`JUDGE_JUMPS_WITHIN`], or
    /// [`MAX_PENDING_JUMPS`] wait. Asked after every record: without jumps it is one test of
    /// an `Option`, and the clock (`now`) is read only while jumps wait.
    #[inline]
    pub(crate) fn due(&self, now: impl FnOnce() -> Instant) -> bool {
        self.since.is_some_and(|since| {
            self.jumps.len() >= MAX_PENDING_JUMPS
                || now().saturating_duration_since(since) >= JUDGE_JUMPS_WITHIN
        })
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.jumps.is_empty()
    }

    pub(crate) fn len(&self) -> usize {
        self.jumps.len()
    }

    /// The position the first waiting jump left.
    pub(crate) fn first_resume(&self) -> Option<i64> {
        self.jumps.first().map(|&(resume, _)| resume)
    }

    /// Judges every waiting jump by the log start `earliest` and forgets them.
    pub(crate) fn judge(&mut self, earliest: i64) -> Judged {
        let judged = Judged::of(&self.jumps, earliest);
        self.clear();
        judged
    }

    /// The offsets every waiting jump passed over, all counted as deleted (the log that
    /// could judge them is gone), and forgets them.
    pub(crate) fn take_as_gap(&mut self) -> u64 {
        let offsets = self.jumps.iter().map(|&(r, o)| (o - r) as u64).sum();
        self.clear();
        offsets
    }

    pub(crate) fn clear(&mut self) {
        self.jumps.clear();
        self.since = None;
    }
}

/// Takes `tpl` as this member's new partitions, the way the group's rebalance protocol
/// wants the assignment answered.
fn acknowledge_assignment<C: ConsumerContext>(
    base: &BaseConsumer<C>,
    tpl: &TopicPartitionList,
) -> rdkafka::error::KafkaResult<()> {
    if matches!(
        base.rebalance_protocol(),
        rdkafka::consumer::RebalanceProtocol::Cooperative
    ) {
        base.incremental_assign(tpl)
    } else {
        base.assign(tpl)
    }
}

fn partitions_of(tpl: &TopicPartitionList) -> Vec<(String, i32)> {
    tpl.elements()
        .iter()
        .map(|e| (e.topic().to_owned(), e.partition()))
        .collect()
}

impl WeirContext {
    pub fn new(shared: Arc<Shared>, runtime: tokio::runtime::Handle) -> Self {
        WeirContext {
            shared,
            runtime,
            consumer: OnceLock::new(),
            workers: Mutex::new(HashMap::new()),
        }
    }

    fn on_assign(
        &self,
        tpl: &mut TopicPartitionList,
        partitions: &[(String, i32)],
    ) -> Result<(), String> {
        let consumer = self
            .consumer
            .get()
            .and_then(Weak::upgrade)
            .ok_or("consumer is gone")?;
        let shared = self.shared.clone();
        let handle = self.runtime.clone();
        let partitions_owned = partitions.to_vec();
        // A partition assigned again while its previous worker in this process still runs
        // (a revoke we never saw, e.g. after a lost assignment): that worker is stopped and
        // awaited before its successor claims an epoch, so the two never overlap here.
        let replaced: Vec<Running> = {
            let mut workers = self.workers.lock().expect("workers lock");
            partitions
                .iter()
                .filter_map(|k| workers.remove(k))
                .collect()
        };
        for r in &replaced {
            let _ = r.stop.send(Stop::Revoke);
        }
        let timeout = self.shared.config.shutdown.timeout;
        // The rebalance callback runs on the thread polling the consumer, inside the
        // runtime; recovery needs the object store, so block this thread on it.
        let starts_with = consumer.clone();
        let recovered = tokio::task::block_in_place(move || {
            handle.block_on(async move {
                if !replaced.is_empty() {
                    info!(
                        workers = replaced.len(),
                        "waiting for replaced partition workers before their successors start"
                    );
                    join_all_within(replaced, timeout, Aborted::Await).await;
                }
                let futs = partitions_owned.iter().map(|(topic, p)| {
                    let (shared, consumer) = (shared.clone(), starts_with.clone());
                    async move {
                        let mut recovery = Worker::recover(shared.clone(), topic.clone(), *p)
                            .await
                            .map_err(|e| format!("{topic}/{p}: {e}"))?;
                        if recovery.tail.next_offset().is_none() {
                            // Where `kafka.start_from` points now, recorded before any
                            // record is read (all partitions at once: a first deployment
                            // assigns many).
                            let start_from = shared.config.kafka.start_from;
                            let (t, partition) = (topic.clone(), *p);
                            let start = tokio::task::spawn_blocking(move || {
                                start_offset(&consumer, &t, partition, start_from)
                            })
                            .await
                            .map_err(|e| format!("{topic}/{p}: {e}"))??;
                            recovery
                                .record_start(start, &shared.config_hash)
                                .await
                                .map_err(|e| {
                                    format!("{topic}/{p}: recording where it starts: {e}")
                                })?;
                            info!(topic = %topic, partition = p, offset = start, start_from = ?start_from, "partition has no position in the ledger: its start is recorded");
                        }
                        Ok::<_, String>(recovery)
                    }
                });
                futures::future::join_all(futs).await
            })
        });
        for ((topic, partition), rec) in partitions.iter().zip(recovered) {
            let recovery = rec?;
            let offset = Offset::Offset(
                recovery
                    .tail
                    .next_offset()
                    .expect("every assigned partition has a position in its ledger"),
            );
            tpl.set_partition_offset(topic, *partition, offset)
                .map_err(|e| format!("{topic}/{partition}: {e}"))?;
            let queue = consumer
                .split_partition_queue(topic, *partition)
                .ok_or_else(|| format!("{topic}/{partition}: cannot split partition queue"))?;
            let (stop_tx, stop_rx) = watch::channel(Stop::Running);
            info!(topic = %topic, partition, epoch = recovery.epoch, resume = ?offset, "partition resumes from the ledger");
            let worker = Worker::new(self.shared.clone(), recovery, consumer.clone())
                .map_err(|e| format!("{topic}/{partition}: {e}"))?;
            let join = self.runtime.spawn(worker.run(queue, stop_rx));
            self.workers.lock().expect("workers lock").insert(
                (topic.clone(), *partition),
                Running {
                    stop: stop_tx,
                    join,
                },
            );
        }
        Ok(())
    }

    /// Signals the workers of `partitions` and waits (bounded) for them to finish.
    fn stop_workers(&self, partitions: &[(String, i32)], how: Stop) {
        let running: Vec<Running> = {
            let mut workers = self.workers.lock().expect("workers lock");
            partitions
                .iter()
                .filter_map(|k| workers.remove(k))
                .collect()
        };
        if running.is_empty() {
            return;
        }
        for r in &running {
            let _ = r.stop.send(how);
        }
        let timeout = self.shared.config.shutdown.timeout;
        let handle = self.runtime.clone();
        tokio::task::block_in_place(move || {
            handle.block_on(join_all_within(running, timeout, Aborted::Await))
        });
    }

    /// Stops every worker (graceful shutdown: each commits what it has).
    pub async fn stop_all(&self, how: Stop) {
        let running: Vec<Running> = {
            let mut workers = self.workers.lock().expect("workers lock");
            workers.drain().map(|(_, r)| r).collect()
        };
        for r in &running {
            let _ = r.stop.send(how);
        }
        // The process ends: no successor here for an aborted worker to overlap with.
        join_all_within(running, self.shared.config.shutdown.timeout, Aborted::Leave).await;
    }
}

/// Waits for stopped workers, all against one deadline (not one timeout each). A worker
/// still running at the deadline is aborted: whatever it had not committed stays
/// uncommitted, and the partition's next owner removes its files (the takeover entry keeps
/// it from committing later).
async fn join_all_within(running: Vec<Running>, timeout: Duration, aborted_then: Aborted) {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut aborted = Vec::new();
    for mut r in running {
        if tokio::time::timeout_at(deadline, &mut r.join)
            .await
            .is_err()
        {
            r.join.abort();
            warn!(timeout = ?timeout, "partition worker did not finish within shutdown.timeout; aborted, its open commit is abandoned");
            aborted.push(r);
        }
    }
    if aborted_then == Aborted::Leave {
        return;
    }
    // An aborted worker stops at its next await; one inside a blocking call (a broker
    // query, a seek) runs on until that call returns. Its successor in this process must
    // not start before: both would take messages from the partition's one queue, and what
    // the old one took would look like a hole to the new one.
    let deadline = tokio::time::Instant::now() + ABORTED_GRACE;
    for mut r in aborted {
        if tokio::time::timeout_at(deadline, &mut r.join)
            .await
            .is_err()
        {
            error!(grace = ?ABORTED_GRACE, "partition worker still running after it was aborted (stuck in a blocking call); its partition's next worker in this process may start beside it");
        }
    }
}

/// What [`join_all_within`] does with workers it aborted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Aborted {
    /// Wait until they stop (up to [`ABORTED_GRACE`]): their partitions' next workers may
    /// start in this process.
    Await,
    /// Return at once: the process is ending.
    Leave,
}

/// How long an aborted worker is awaited: longer than its longest blocking call (the
/// watermark query's tries, at most about 42 s; a 10 s seek).
const ABORTED_GRACE: Duration = Duration::from_secs(60);

/// The client settings of the consumer: Weir's defaults, then `kafka.properties`, then the
/// keys Weir manages itself (validation refuses them in `kafka.properties`).
///
/// `auto.offset.reset` is always `earliest`: every assigned partition gets an explicit
/// position (the ledger's, or `start_from` when it has none), so the policy only applies
/// when that position is no longer on the broker. librdkafka then restarts the partition at
/// its earliest retained offset, and the worker sees the offsets jump: it checks them
/// against the broker's log start and records or refuses the gap (`kafka.on_offset_gap`).
/// (`error` would stop the partition instead, and librdkafka cannot seek a partition in that
/// state without assigning it again.)
pub fn client_config(cfg: &KafkaConfig, prefetch_kbytes: u64) -> ClientConfig {
    let mut client = ClientConfig::new();
    // The prefetch queue of each partition and the largest fetch come out of `memory.limit`
    // (see `memory::Budget`) unless `kafka.properties` sets them.
    client
        .set("queued.max.messages.kbytes", prefetch_kbytes.to_string())
        .set("fetch.max.bytes", (prefetch_kbytes * 1024).to_string())
        .set("session.timeout.ms", "30000")
        .set("max.poll.interval.ms", "300000");
    for (k, v) in &cfg.properties {
        client.set(k, v);
    }
    client
        .set("bootstrap.servers", &cfg.brokers)
        .set("group.id", &cfg.group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false")
        .set("auto.offset.reset", "earliest");
    if !cfg.properties.contains_key("partition.assignment.strategy") {
        client.set("partition.assignment.strategy", "cooperative-sticky");
    }
    client.set_log_level(RDKafkaLogLevel::Warning);
    client
}

/// Builds the consumer with [`client_config`].
pub fn build_consumer(shared: Arc<Shared>) -> Result<Arc<WeirConsumer>, KafkaError> {
    let client = client_config(&shared.config.kafka, shared.budget.prefetch_kbytes());
    let ctx = WeirContext::new(shared, tokio::runtime::Handle::current());
    let consumer: Arc<WeirConsumer> = Arc::new(client.create_with_context(ctx)?);
    let _ = consumer.context().consumer.set(Arc::downgrade(&consumer));
    Ok(consumer)
}

/// Waits until `consumer` has fetched metadata for `topics`, with backoff, so a wrong
/// broker address, certificate or password fails with a clear message instead of a silent
/// idle consumer. Must run before the consumer subscribes.
pub async fn wait_for_broker(
    consumer: &WeirConsumer,
    topics: &[&str],
    give_up_after: Duration,
) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + give_up_after;
    let mut delay = Duration::from_millis(200);
    loop {
        let res =
            tokio::task::block_in_place(|| consumer.fetch_metadata(None, Duration::from_secs(5)));
        match res {
            Ok(md) => {
                let missing: Vec<&str> = topics
                    .iter()
                    .filter(|t| {
                        !md.topics()
                            .iter()
                            .any(|mt| mt.name() == **t && mt.error().is_none())
                    })
                    .copied()
                    .collect();
                if missing.is_empty() {
                    return Ok(());
                }
                if tokio::time::Instant::now() >= deadline {
                    return Err(format!(
                        "topics not found on the broker: {}",
                        missing.join(", ")
                    ));
                }
                warn!(missing = ?missing, "topics not found yet, retrying");
            }
            Err(e) => {
                if tokio::time::Instant::now() >= deadline {
                    return Err(format!("broker unreachable: {e}"));
                }
                warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "broker unreachable, retrying");
            }
        }
        // Serve the client's events while waiting, so that what librdkafka learnt about the
        // failure (a certificate it could not verify, a refused SASL login) reaches the log
        // through `WeirContext`. Nothing is subscribed yet: no record can arrive here.
        if let Ok(Err(e)) = tokio::time::timeout(delay, consumer.recv()).await {
            warn!(error = %e, "kafka client error");
        }
        delay = (delay * 2).min(Duration::from_secs(10));
    }
}

/// Asks the broker for the watermarks of every held partition every
/// [`LAG_POLL_INTERVAL`](crate::metrics::partitions::LAG_POLL_INTERVAL), for
/// `weir_consumer_lag` and `/livez`: one request per partition on a blocking thread, never
/// on a worker's path. A partition whose watermarks cannot be read has an unknown lag until
/// the next round. Runs until the returned task is aborted.
pub fn spawn_lag_poller(consumer: &Arc<WeirConsumer>) -> tokio::task::JoinHandle<()> {
    use crate::metrics::partitions::LAG_POLL_INTERVAL;
    let consumer = Arc::downgrade(consumer);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(LAG_POLL_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let consumer = consumer.clone();
            let round = tokio::task::spawn_blocking(move || {
                // Only while the consumer lives: the poller never keeps it open.
                let Some(consumer) = consumer.upgrade() else {
                    return false;
                };
                let partitions = consumer.context().shared.metrics.partitions.clone();
                for (topic, partition) in partitions.keys() {
                    let watermarks = consumer
                        .fetch_watermarks(&topic, partition, Duration::from_secs(2))
                        .map_err(|e| {
                            tracing::debug!(topic = %topic, partition, error = %e, "watermarks not read; lag unknown until the next round");
                        })
                        .ok();
                    partitions.watermarks(&topic, partition, watermarks, std::time::Instant::now());
                }
                true
            });
            if !matches!(round.await, Ok(true)) {
                return;
            }
        }
    })
}

impl WeirContext {
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }
}

pub use rdkafka::message::Message as KafkaMessage;

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    /// A jump's offsets are split at the log start: below it a gap, from it holes; the gap
    /// never reaches past the record that was received.
    #[test]
    fn a_jump_is_split_into_a_gap_and_holes_at_the_log_start() {
        let jump = |earliest| {
            let j = Jump::new(100, 110, earliest);
            (j.skipped, j.holes)
        };
        // The log starts at or below the position: every offset skipped held no record.
        assert_eq!(jump(0), (0, 10));
        assert_eq!(jump(100), (0, 10));
        // It starts inside the jump: deleted up to it, holes from it.
        assert_eq!(jump(101), (1, 9));
        assert_eq!(jump(107), (7, 3));
        assert_eq!(jump(110), (10, 0));
        // It moved past the record since the broker sent it.
        assert_eq!(jump(500), (10, 0));
    }

    /// Jumps judged together: a log start only moves forward, so the ones below it are a
    /// prefix; the gap is reported at the first of them, with what all of them lost.
    #[test]
    fn jumps_are_judged_together_by_one_log_start() {
        let jumps = [(10, 11), (20, 25), (30, 40), (50, 51)];
        // At or below the first position: all holes.
        assert_eq!(
            Judged::of(&jumps, 3),
            Judged {
                holes: 1 + 5 + 10 + 1,
                gap: None
            }
        );
        // Inside the third jump: the first two were deleted whole, the third up to 34.
        assert_eq!(
            Judged::of(&jumps, 34),
            Judged {
                holes: 6 + 1,
                gap: Some((10, 1 + 5 + 4))
            }
        );
        // Past all of them (retention reached a reader this far behind).
        assert_eq!(
            Judged::of(&jumps, 60),
            Judged {
                holes: 0,
                gap: Some((10, 17))
            }
        );
        assert_eq!(
            Judged::of(&[], 60),
            Judged {
                holes: 0,
                gap: None
            }
        );
    }

    /// Waiting jumps are due a second after the first was noted, or at once when 4,096
    /// wait; never without one.
    #[test]
    fn pending_jumps_are_due_by_age_or_by_count() {
        let t0 = Instant::now();
        let mut pending = PendingJumps::default();
        // Without jumps the clock is not read.
        assert!(!pending.due(|| unreachable!("the clock is read without jumps")));
        pending.note(10, 12, || t0);
        // Later jumps neither read the clock nor restart it.
        pending.note(20, 21, || {
            unreachable!("the clock is read for the first jump only")
        });
        assert!(!pending.due(|| t0 + Duration::from_millis(999)));
        assert!(pending.due(|| t0 + JUDGE_JUMPS_WITHIN));
        // A clock read before the note (another task's) is not a negative age.
        assert!(!pending.due(|| t0 - Duration::from_millis(1)));
        assert_eq!(pending.first_resume(), Some(10));

        let mut pending = PendingJumps::default();
        for i in 0..MAX_PENDING_JUMPS as i64 - 1 {
            pending.note(2 * i, 2 * i + 1, || t0);
        }
        assert!(!pending.due(|| t0));
        pending.note(100_000, 100_001, || t0);
        assert!(pending.due(|| t0));
        assert_eq!(pending.len(), MAX_PENDING_JUMPS);
    }

    /// Judged or taken as a gap, the waiting jumps are forgotten, and the clock with them.
    #[test]
    fn pending_jumps_are_forgotten_once_judged_or_taken_as_a_gap() {
        let t0 = Instant::now();
        let mut pending = PendingJumps::default();
        pending.note(10, 11, || t0);
        pending.note(20, 25, || t0);
        assert_eq!(
            pending.judge(22),
            Judged {
                holes: 3,
                gap: Some((10, 3))
            }
        );
        assert!(pending.is_empty());
        assert!(!pending.due(|| t0 + Duration::from_secs(60)));

        pending.note(30, 40, || t0);
        pending.note(50, 51, || t0 + Duration::from_secs(5));
        assert_eq!(pending.take_as_gap(), 10 + 1);
        assert!(pending.is_empty());
        assert!(!pending.due(|| t0 + Duration::from_secs(60)));
        assert_eq!(pending.take_as_gap(), 0);
        // The clock starts again with the next note.
        pending.note(60, 61, || t0 + Duration::from_secs(10));
        assert!(!pending.due(|| t0 + Duration::from_secs(10)));
    }

    /// A worker aborted inside a blocking call runs on until the call returns: it is
    /// awaited, so no successor starts beside it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_aborted_worker_is_awaited_until_it_stops() {
        let finished = Arc::new(AtomicBool::new(false));
        let done = finished.clone();
        let join = tokio::spawn(async move {
            tokio::task::block_in_place(|| std::thread::sleep(Duration::from_millis(1500)));
            done.store(true, Ordering::SeqCst);
            // Never reached: the abort takes effect at this await.
            tokio::time::sleep(Duration::from_secs(3600)).await;
        });
        let (stop, _) = watch::channel(Stop::Running);
        let started = std::time::Instant::now();
        join_all_within(
            vec![Running { stop, join }],
            Duration::from_millis(100),
            Aborted::Await,
        )
        .await;
        assert!(finished.load(Ordering::SeqCst));
        assert!(started.elapsed() < Duration::from_secs(10));
    }
}
