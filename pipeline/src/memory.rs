//! The memory budget: how `memory.limit` is shared between the parts of a running pipeline.
//!
//! ```text
//!  memory.limit (default 512 MiB)
//!  ├─ fixed: the binary, tokio, librdkafka's threads, schemas, operator state     RESERVE
//!  ├─ Kafka prefetch: librdkafka's queue per assigned partition                   prefetch_kbytes()
//!  ├─ batches in flight: raw records + decoded Arrow + operator output, per worker BATCH_SHARE
//!  └─ open files: encoded Parquet + the open row group + dead letters, all workers files()
//! ```
//!
//! Open files are the part that grows with time (until the commit). Each worker reports
//! what its open files hold; once the sum reaches the files' share, every worker holding at
//! least the average commits early at its next batch. A single busy partition can use the
//! whole share, and the sum stays near it however many partitions are assigned. Committing
//! early only makes files smaller; it never changes what is committed.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Memory not available to buffers: code, runtime, Kafka client threads, allocator slack.
const RESERVE: u64 = 96 << 20;

/// The bytes one worker's batch may hold in flight, as a fraction of the limit.
const BATCH_SHARE: u64 = 64;

#[derive(Debug)]
pub struct Budget {
    limit: u64,
    files: usize,
    used: AtomicUsize,
    holders: AtomicUsize,
}

impl Budget {
    pub fn new(limit: u64) -> Arc<Budget> {
        let files = limit.saturating_sub(RESERVE) / 2;
        Arc::new(Budget {
            limit,
            files: files as usize,
            used: AtomicUsize::new(0),
            holders: AtomicUsize::new(0),
        })
    }

    /// Bytes the open files of all partitions may hold together.
    pub fn files(&self) -> usize {
        self.files
    }

    /// Raw bytes a worker gathers before decoding a batch (besides `batch.max_rows`).
    pub fn batch_bytes(&self) -> usize {
        (self.limit / BATCH_SHARE).clamp(1 << 20, 32 << 20) as usize
    }

    /// librdkafka's `queued.max.messages.kbytes`: the prefetch queue of each partition.
    pub fn prefetch_kbytes(&self) -> u64 {
        (self.limit / 64 / 1024).clamp(1024, 16 * 1024)
    }

    /// Bytes all open files hold now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// A worker's account; dropping it gives back what it held.
    pub fn lease(self: &Arc<Self>) -> Lease {
        self.holders.fetch_add(1, Ordering::Relaxed);
        Lease {
            budget: self.clone(),
            held: 0,
        }
    }
}

/// What one worker's open files hold.
#[derive(Debug)]
pub struct Lease {
    budget: Arc<Budget>,
    held: usize,
}

impl Lease {
    /// Records that the worker's open files now hold `bytes`.
    pub fn set(&mut self, bytes: usize) {
        if bytes >= self.held {
            self.budget
                .used
                .fetch_add(bytes - self.held, Ordering::Relaxed);
        } else {
            self.budget
                .used
                .fetch_sub(self.held - bytes, Ordering::Relaxed);
        }
        self.held = bytes;
    }

    pub fn held(&self) -> usize {
        self.held
    }

    /// True when all open files together reached their share and this worker holds at
    /// least the average: it should commit now.
    pub fn over(&self) -> bool {
        let used = self.budget.used();
        let holders = self.budget.holders.load(Ordering::Relaxed).max(1);
        used >= self.budget.files && self.held > 0 && self.held * holders >= used
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.set(0);
        self.budget.holders.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_of_the_default_limit() {
        let b = Budget::new(512 << 20);
        assert_eq!(b.files(), 208 << 20);
        assert_eq!(b.batch_bytes(), 8 << 20);
        assert_eq!(b.prefetch_kbytes(), 8192);
        let small = Budget::new(128 << 20);
        assert_eq!(small.files(), 16 << 20);
        assert_eq!(small.batch_bytes(), 2 << 20);
        assert_eq!(small.prefetch_kbytes(), 2048);
    }

    #[test]
    fn the_largest_holders_commit_once_the_sum_reaches_the_share() {
        let b = Budget::new(512 << 20);
        let share = b.files();
        let mut hot = b.lease();
        let mut cold = b.lease();
        cold.set(share / 10);
        hot.set(share / 2);
        assert!(!hot.over() && !cold.over(), "under the share");
        // One busy partition may use nearly all of it.
        hot.set(share - share / 10);
        assert!(
            hot.over(),
            "the sum reached the share; hot holds more than the average"
        );
        assert!(!cold.over(), "cold holds less than the average");
        hot.set(0);
        assert_eq!(b.used(), share / 10);
        drop(cold);
        assert_eq!(b.used(), 0);
        drop(hot);
        assert_eq!(b.holders.load(Ordering::Relaxed), 0);
    }
}
