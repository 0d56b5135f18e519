//! The memory budget: how `memory.limit` is shared between the parts of a running pipeline.
//!
//! ```text
//!  memory.limit (default 512 MiB)
//!  ├─ the process: code, tokio, librdkafka's threads and buffers, allocator slack   RESERVE
//!  ├─ per assigned partition, fixed while it is assigned:                          Lease::fixed
//!  │    Kafka prefetch queue (prefetch_kbytes) + a batch in flight, held about
//!  │    four times over while decoded (batch_bytes) + one zstd context pair per
//!  │    Parquet column of each open file
//!  └─ open files, what a commit frees: encoded row groups, the open row group's    files()
//!     pages and dictionaries, dead letters: a third of what is left. The rest covers
//!     what the Parquet writer does not report (resident memory grew about twice as
//!     fast as its `memory_size` between commits) and closing a file. Rows of late hours
//!     waiting as Arrow data report what they hold, and count at half for it
//!     (`PartitionWriter::memory_bytes`)
//! ```
//!
//! Each worker reports what its open files hold; once the sum reaches the files' share,
//! every worker holding at least the average commits early at its next batch (one whose
//! previous commit still uploads waits for it first, and commits only if the share is
//! still full once that upload has given its bytes back). A single
//! busy partition can use the whole share, and the sum stays near it however many
//! partitions are assigned. Committing early only makes files smaller; it never changes
//! what is committed. When the partitions' fixed parts leave less than `MIN_FILES_SHARE`
//! per partition, the share stays at that minimum and the limit cannot hold: a warning
//! says so once.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use tracing::warn;

/// Memory outside the buffers Weir sizes: code, runtime, Kafka client threads and fetch
/// responses, allocator slack. Measured: ~100 MiB resident for `weir run` with two
/// partitions before open files and batches.
const RESERVE: u64 = 100 << 20;

/// A batch in flight is held about this many times over: raw records, arrow-json's tape,
/// the Arrow columns, the operators' output.
const BATCH_COPIES: usize = 4;

/// The least each partition's open files get, whatever the limit says: below this,
/// commits would come every few batches and files would be tiny.
const MIN_FILES_SHARE: usize = 4 << 20;

#[derive(Debug)]
pub struct Budget {
    limit: u64,
    /// What open files hold now, all workers.
    used: AtomicUsize,
    /// Fixed parts of the workers that hold a lease.
    fixed: AtomicUsize,
    holders: AtomicUsize,
    warned: AtomicBool,
}

impl Budget {
    pub fn new(limit: u64) -> Arc<Budget> {
        Arc::new(Budget {
            limit,
            used: AtomicUsize::new(0),
            fixed: AtomicUsize::new(0),
            holders: AtomicUsize::new(0),
            warned: AtomicBool::new(false),
        })
    }

    /// Raw bytes a worker gathers before decoding a batch (besides `batch.max_rows`).
    pub fn batch_bytes(&self) -> usize {
        (self.limit / 64).clamp(1 << 20, 32 << 20) as usize
    }

    /// librdkafka's `queued.max.messages.kbytes`: the prefetch queue of each partition.
    /// Not smaller than 16 MiB at the default limit: at 8 MiB weir spent 15% more CPU per
    /// event draining a backlog (weir-bench, same run).
    pub fn prefetch_kbytes(&self) -> u64 {
        (self.limit / 32 / 1024).clamp(1024, 16 * 1024)
    }

    /// A worker's fixed part: its prefetch queue, its batch in flight, and `codec_bytes`
    /// for the codec contexts of one open file.
    pub fn worker_fixed(&self, codec_bytes: usize) -> usize {
        self.prefetch_kbytes() as usize * 1024 + BATCH_COPIES * self.batch_bytes() + codec_bytes
    }

    /// Bytes the open files of all partitions may hold together now.
    pub fn files(&self) -> usize {
        let holders = self.holders.load(Ordering::Relaxed).max(1);
        let fixed = self.fixed.load(Ordering::Relaxed) as u64;
        let left = self.limit.saturating_sub(RESERVE + fixed) as usize / 3;
        let floor = holders * MIN_FILES_SHARE;
        if left < floor {
            if !self.warned.swap(true, Ordering::Relaxed) {
                warn!(
                    limit_mib = self.limit >> 20,
                    partitions = holders,
                    needs_mib = (RESERVE + fixed + 3 * floor as u64) >> 20,
                    "memory.limit is too small for the partitions assigned here; files will be small and memory will exceed the limit: raise memory.limit or run more replicas"
                );
            }
            return floor;
        }
        left
    }

    /// One worker's even part of [`Budget::files`].
    pub fn files_per_worker(&self) -> usize {
        self.files() / self.holders.load(Ordering::Relaxed).max(1)
    }

    /// Bytes all open files hold now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// A worker's account, with its fixed part; dropping it gives everything back.
    pub fn lease(self: &Arc<Self>, fixed: usize) -> Lease {
        self.holders.fetch_add(1, Ordering::Relaxed);
        self.fixed.fetch_add(fixed, Ordering::Relaxed);
        Lease {
            budget: self.clone(),
            fixed,
            held: 0,
        }
    }
}

/// What one worker's open files hold.
#[derive(Debug)]
pub struct Lease {
    budget: Arc<Budget>,
    fixed: usize,
    held: usize,
}

impl Lease {
    /// Records that the worker's open files now hold `bytes` (what a commit would free).
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
        self.held > 0 && used >= self.budget.files() && self.held * holders >= used
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.set(0);
        self.budget.fixed.fetch_sub(self.fixed, Ordering::Relaxed);
        self.budget.holders.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_of_the_default_limit() {
        let b = Budget::new(512 << 20);
        assert_eq!(b.batch_bytes(), 8 << 20);
        assert_eq!(b.prefetch_kbytes(), 16384);
        assert_eq!(b.worker_fixed(42 << 20), (16 + 32 + 42) << 20);
        assert_eq!(b.files(), ((512 - 100) << 20) / 3);
        let _a = b.lease(b.worker_fixed(42 << 20));
        let _b = b.lease(b.worker_fixed(42 << 20));
        assert_eq!(b.files(), ((512 - 100 - 2 * 90) << 20) / 3);
        let small = Budget::new(128 << 20);
        assert_eq!(small.batch_bytes(), 2 << 20);
        assert_eq!(small.prefetch_kbytes(), 4096);
    }

    #[test]
    fn too_many_partitions_get_the_minimum_share() {
        let b = Budget::new(256 << 20);
        let leases: Vec<Lease> = (0..8).map(|_| b.lease(b.worker_fixed(42 << 20))).collect();
        assert_eq!(b.files(), 8 * MIN_FILES_SHARE);
        drop(leases);
        assert_eq!(b.fixed.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn the_largest_holders_commit_once_the_sum_reaches_the_share() {
        let b = Budget::new(512 << 20);
        let mut hot = b.lease(0);
        let mut cold = b.lease(0);
        let share = b.files();
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
