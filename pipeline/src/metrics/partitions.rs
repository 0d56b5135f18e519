//! What this process knows about each partition it holds: the ledger's position, the
//! broker's high watermark (polled), whether records wait for a commit, the newest committed
//! event time, and when it last made progress. The per-partition series of `/metrics`
//! (`weir_committed_offset`, `weir_consumer_lag`, `weir_freshness_seconds`,
//! `weir_assigned_partitions`) are derived from it at each scrape, so a revoked partition's
//! series go away with its entry. `/livez` asks it whether the process is stalled.
//!
//! ```text
//!  worker assigned ──▶ assigned(position)            revoked / stopped ──▶ remove(epoch)
//!  batch processed ──▶ consumed        (progress)    commit retry      ──▶ retrying (alive)
//!  ledger entry    ──▶ committed(next, newest event time)                     (progress)
//!  poller (every LAG_POLL_INTERVAL) ──▶ watermarks(low, high) or unknown
//! ```
//!
//! A partition *has work* while records wait for it: its lag is above zero or records it
//! consumed are not committed yet. The process is *stalled* when at least one partition has
//! work and none of those has made progress (a processed batch, a commit) or retried a
//! failing dependency within `[health] stall_timeout`. A partition without work is never
//! stalled, and the clock of one that gets work starts when the work appears. Nothing here
//! is used for correctness: the watermark is a hint (see `design.md`).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How often the broker's watermarks are asked for (one request per held partition).
pub const LAG_POLL_INTERVAL: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
struct State {
    dataset: String,
    /// The worker's epoch: a stopped worker removes its entry only, never its successor's.
    epoch: u64,
    /// The ledger's position (next offset to commit); `None` while the ledger is empty.
    position: Option<i64>,
    /// With an empty ledger, the partition starts at the broker's low watermark
    /// (`kafka.start_from = "earliest"`); with `latest` its lag is unknown until a commit.
    from_earliest: bool,
    /// `(low, high)` of the last poll; `None` when the last poll failed (lag unknown).
    watermarks: Option<(i64, i64)>,
    /// Records consumed and not yet committed.
    pending: bool,
    /// Newest event time (ns since the epoch) committed by this process for the partition.
    newest_event_time: Option<i64>,
    /// Last progress, retry, or moment the partition had no work.
    mark: Instant,
}

impl State {
    /// Records between the high watermark and the ledger's position; `None` when unknown.
    fn lag(&self) -> Option<i64> {
        let (low, high) = self.watermarks?;
        let position = match self.position {
            Some(p) => p,
            None if self.from_earliest => low,
            None => return None,
        };
        Some((high - position).max(0))
    }

    fn has_work(&self) -> bool {
        self.pending || self.lag().is_some_and(|lag| lag > 0)
    }
}

/// One held partition as exported on `/metrics`.
#[derive(Debug, Clone, PartialEq)]
pub struct PartitionView {
    pub dataset: String,
    pub topic: String,
    pub partition: i32,
    pub position: Option<i64>,
    pub lag: Option<i64>,
    pub newest_event_time: Option<i64>,
}

/// The verdict of `/livez` when it fails.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stalled {
    /// Partitions with work.
    pub waiting: usize,
    /// Since the most recent progress of any of them.
    pub since: Duration,
}

/// The partitions this process holds, by `(topic, partition)`.
#[derive(Debug, Default)]
pub struct Partitions {
    held: Mutex<BTreeMap<(String, i32), State>>,
}

impl Partitions {
    fn with<R>(&self, topic: &str, partition: i32, f: impl FnOnce(&mut State) -> R) -> Option<R> {
        let mut held = self.held.lock().expect("partitions lock");
        held.get_mut(&(topic.to_owned(), partition)).map(f)
    }

    /// A worker starts on the partition at the ledger's `position`.
    #[allow(clippy::too_many_arguments)]
    pub fn assigned(
        &self,
        dataset: &str,
        topic: &str,
        partition: i32,
        epoch: u64,
        position: Option<i64>,
        from_earliest: bool,
        now: Instant,
    ) {
        self.held.lock().expect("partitions lock").insert(
            (topic.to_owned(), partition),
            State {
                dataset: dataset.to_owned(),
                epoch,
                position,
                from_earliest,
                watermarks: None,
                pending: false,
                newest_event_time: None,
                mark: now,
            },
        );
    }

    /// The worker of `epoch` stopped (revoked, shut down, failed): its series go away. A
    /// successor already registered under a newer epoch is kept.
    pub fn remove(&self, topic: &str, partition: i32, epoch: u64) {
        let mut held = self.held.lock().expect("partitions lock");
        let key = (topic.to_owned(), partition);
        if held.get(&key).is_some_and(|s| s.epoch == epoch) {
            held.remove(&key);
        }
    }

    /// A batch was processed: records now wait for a commit.
    pub fn consumed(&self, topic: &str, partition: i32, now: Instant) {
        self.with(topic, partition, |s| {
            s.pending = true;
            s.mark = now;
        });
    }

    /// A ledger entry moved the position to `next_offset`; `newest_event_time` is the
    /// newest event time of the rows it committed, if any.
    pub fn committed(
        &self,
        topic: &str,
        partition: i32,
        next_offset: i64,
        newest_event_time: Option<i64>,
        now: Instant,
    ) {
        self.with(topic, partition, |s| {
            s.position = Some(next_offset);
            s.pending = false;
            s.newest_event_time = s.newest_event_time.max(newest_event_time);
            s.mark = now;
        });
    }

    /// The open commit was dropped and the worker went back to the ledger's `position`
    /// (a lost race).
    pub fn reset(&self, topic: &str, partition: i32, position: Option<i64>, now: Instant) {
        self.with(topic, partition, |s| {
            s.position = position;
            s.pending = false;
            s.mark = now;
        });
    }

    /// The worker is retrying a failing dependency (the store, the dead-letter topic): it
    /// is alive, and `/healthz` or the error counters say what it waits for.
    pub fn retrying(&self, topic: &str, partition: i32, now: Instant) {
        self.with(topic, partition, |s| s.mark = now);
    }

    /// The broker's `(low, high)` watermarks, or `None` when they could not be read (the
    /// lag is then unknown and counts as no work).
    pub fn watermarks(
        &self,
        topic: &str,
        partition: i32,
        watermarks: Option<(i64, i64)>,
        now: Instant,
    ) {
        self.with(topic, partition, |s| {
            let had_work = s.has_work();
            s.watermarks = watermarks;
            if !had_work {
                // Idle until now: the stall clock starts when work appears.
                s.mark = now;
            }
        });
    }

    /// `(topic, partition)` of every held partition.
    pub fn keys(&self) -> Vec<(String, i32)> {
        self.held
            .lock()
            .expect("partitions lock")
            .keys()
            .cloned()
            .collect()
    }

    pub fn views(&self) -> Vec<PartitionView> {
        self.held
            .lock()
            .expect("partitions lock")
            .iter()
            .map(|((topic, partition), s)| PartitionView {
                dataset: s.dataset.clone(),
                topic: topic.clone(),
                partition: *partition,
                position: s.position,
                lag: s.lag(),
                newest_event_time: s.newest_event_time,
            })
            .collect()
    }

    /// `Some` when at least one partition has work and none of those made progress (or
    /// retried) within `timeout` before `now`.
    pub fn stalled(&self, now: Instant, timeout: Duration) -> Option<Stalled> {
        let held = self.held.lock().expect("partitions lock");
        let mut waiting = 0;
        let mut since = Duration::MAX;
        for s in held.values().filter(|s| s.has_work()) {
            waiting += 1;
            since = since.min(now.saturating_duration_since(s.mark));
        }
        (waiting > 0 && since >= timeout).then_some(Stalled { waiting, since })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(300);

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    fn held(t0: Instant) -> Partitions {
        let p = Partitions::default();
        p.assigned("ds", "t", 0, 1, Some(100), true, t0);
        p.assigned("ds", "t", 1, 1, Some(50), true, t0);
        p
    }

    #[test]
    fn idle_partitions_are_never_stalled() {
        let t0 = Instant::now();
        let p = held(t0);
        p.watermarks("t", 0, Some((0, 100)), t0);
        p.watermarks("t", 1, Some((0, 50)), t0);
        assert_eq!(p.stalled(t0 + secs(3600), TIMEOUT), None);
    }

    #[test]
    fn work_without_progress_stalls_after_the_timeout() {
        let t0 = Instant::now();
        let p = held(t0);
        // Partition 0 idles for an hour; then records arrive and nothing consumes them.
        p.watermarks("t", 0, Some((0, 100)), t0 + secs(3600));
        p.watermarks("t", 0, Some((0, 180)), t0 + secs(3610));
        assert_eq!(
            p.stalled(t0 + secs(3610), TIMEOUT),
            None,
            "the clock starts with the work"
        );
        assert_eq!(p.stalled(t0 + secs(3909), TIMEOUT), None);
        assert_eq!(
            p.stalled(t0 + secs(3910), TIMEOUT),
            Some(Stalled {
                waiting: 1,
                since: secs(300)
            })
        );
        // A processed batch is progress; so is the commit that follows.
        p.consumed("t", 0, t0 + secs(3911));
        assert_eq!(p.stalled(t0 + secs(3911), TIMEOUT), None);
        p.committed("t", 0, 180, None, t0 + secs(3912));
        assert_eq!(
            p.stalled(t0 + secs(9999), TIMEOUT),
            None,
            "lag 0, nothing pending"
        );
    }

    #[test]
    fn one_partition_progressing_keeps_the_process_alive() {
        let t0 = Instant::now();
        let p = held(t0);
        p.watermarks("t", 0, Some((0, 500)), t0);
        p.watermarks("t", 1, Some((0, 500)), t0);
        p.consumed("t", 1, t0 + secs(290));
        assert_eq!(p.stalled(t0 + secs(400), TIMEOUT), None);
        assert_eq!(
            p.stalled(t0 + secs(590), TIMEOUT),
            Some(Stalled {
                waiting: 2,
                since: secs(300)
            })
        );
    }

    #[test]
    fn a_pending_commit_is_work_and_retries_are_signs_of_life() {
        let t0 = Instant::now();
        let p = held(t0);
        p.consumed("t", 0, t0);
        // Lag unknown (the broker does not answer): the pending commit is still work.
        p.watermarks("t", 0, None, t0 + secs(1));
        for i in 1..=10 {
            p.retrying("t", 0, t0 + secs(60 * i));
        }
        assert_eq!(p.stalled(t0 + secs(600 + 299), TIMEOUT), None);
        assert!(p.stalled(t0 + secs(600 + 300), TIMEOUT).is_some());
    }

    #[test]
    fn unknown_lag_is_no_work() {
        let t0 = Instant::now();
        let p = held(t0);
        p.watermarks("t", 0, Some((0, 900)), t0);
        p.watermarks("t", 0, None, t0 + secs(10));
        assert_eq!(p.stalled(t0 + secs(3600), TIMEOUT), None);
    }

    #[test]
    fn lag_is_high_watermark_minus_ledger_position() {
        let t0 = Instant::now();
        let p = Partitions::default();
        p.assigned("ds", "t", 0, 1, Some(100), true, t0);
        p.assigned("ds", "t", 1, 1, None, true, t0);
        p.assigned("ds", "t", 2, 1, None, false, t0);
        p.assigned("ds", "t", 3, 1, Some(10), true, t0);
        p.watermarks("t", 0, Some((0, 130)), t0);
        p.watermarks("t", 1, Some((7, 20)), t0);
        p.watermarks("t", 2, Some((7, 20)), t0);
        // The mock broker and tansu may report a high watermark below the position.
        p.watermarks("t", 3, Some((0, 5)), t0);
        let lags: Vec<Option<i64>> = p.views().iter().map(|v| v.lag).collect();
        assert_eq!(lags, [Some(30), Some(13), None, Some(0)]);
        p.committed("t", 0, 130, Some(5), t0);
        p.committed("t", 0, 130, Some(3), t0);
        let v = &p.views()[0];
        assert_eq!(
            (v.lag, v.position, v.newest_event_time),
            (Some(0), Some(130), Some(5))
        );
    }

    #[test]
    fn a_stopped_worker_removes_its_own_entry_only() {
        let t0 = Instant::now();
        let p = Partitions::default();
        p.assigned("ds", "t", 0, 1, None, true, t0);
        // Reassigned in this process before the old worker's task was dropped.
        p.assigned("ds", "t", 0, 2, None, true, t0);
        p.remove("t", 0, 1);
        assert_eq!(p.keys(), [("t".to_owned(), 0)]);
        p.remove("t", 0, 2);
        assert!(p.keys().is_empty());
    }
}
