//! Ledger version 2: per-hour manifests, so reading an hour costs the same after a year
//! as after a day.
//!
//! A stream's entries are folded, every `commit.checkpoint_every` entries, into one
//! manifest per *bucket* the folded entries touched. A bucket is the Hive folder of a data
//! file below its dataset (`date=2026-11-22/hour=05`), or [`DEAD_LETTER_BUCKET`] for the
//! stream's dead-letter files:
//!
//! ```text
//! <stream>/hours/<bucket>/<seq>.json   every file of <bucket> named by entries 1..=seq
//! <stream>/checkpoints/<seq>.json      written after the manifests of its fold: entry seq
//!                                      and the buckets folded; no file lists
//! ```
//!
//! The fold at C rests on one rule, for writers and readers alike: *for a bucket B, take
//! the newest manifest of B whose seq s ≤ C (none: s = 0, empty) and add the files in B
//! of entries s+1..=C.* It needs every entry after the newest checkpoint in hand, and holds
//! because a checkpoint object is created only after the manifests of every bucket its
//! entries touched: an entry at or below the newest checkpoint that touched B is covered
//! by a manifest of B. A crash between manifests and checkpoint leaves manifests at a seq
//! no checkpoint names; they are correct for their seq and the rule uses them. A v1
//! checkpoint (every file of the stream) is folded into manifests of every bucket it names
//! the first time a v2 writer checkpoints.
//!
//! A reader ([`StreamSnapshot`]) reads the newest checkpoint and the entries after it
//! (probed by sequence number, never listed), then for the hours a query touches lists
//! `hours/<prefix>` and reads one manifest per bucket, in parallel. Data prefixes are never
//! listed. Manifests and checkpoints superseded for longer than [`SUPERSEDED_GRACE`] are
//! deleted by the writer that supersedes them; a reader that started before that has long
//! finished planning, and a snapshot older than [`MAX_SNAPSHOT_AGE`] refuses to choose
//! manifests at all (a long job loads its view again rather than miss an hour's files).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt};
use serde::{Deserialize, Serialize};

use super::{Entry, FileRef, LedgerError, PartitionLedger};

/// The bucket of a stream's dead-letter files (they are not partitioned by hour).
pub const DEAD_LETTER_BUCKET: &str = "_dead_letter";
/// The bucket of data files directly below the dataset folder (not written by Weir today).
pub const FLAT_BUCKET: &str = "_flat";

/// How long a superseded manifest or checkpoint is kept: longer than any query takes to
/// plan, so a reader never finds the manifest it chose gone.
pub const SUPERSEDED_GRACE: std::time::Duration = std::time::Duration::from_secs(600);

/// The bucket a file named by an entry of `dataset` belongs to.
pub fn bucket_of(dataset: &str, path: &str) -> String {
    match path
        .strip_prefix(dataset)
        .and_then(|rest| rest.strip_prefix('/'))
    {
        Some(rest) => match rest.rsplit_once('/') {
            Some((dir, _)) => dir.to_owned(),
            None => FLAT_BUCKET.to_owned(),
        },
        None => DEAD_LETTER_BUCKET.to_owned(),
    }
}

/// `hours/<bucket>/<seq>.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HourManifest {
    pub version: u32,
    pub seq: u64,
    pub bucket: String,
    /// Files entries 1..=seq put in this bucket.
    pub files: Vec<FileRef>,
    /// Files entries 1..=seq took out of it (maintenance streams only). File names are
    /// never reused, so the bucket's table is `files` of every stream minus `removed`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removed: Vec<FileRef>,
}

/// What entries did to one bucket.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Change {
    pub added: Vec<FileRef>,
    pub removed: Vec<FileRef>,
}

impl Change {
    fn extend(&mut self, other: Change) {
        self.added.extend(other.added);
        self.removed.extend(other.removed);
    }
}

/// What `entry` did, by bucket.
pub(super) fn changes_by_bucket(entry: &Entry) -> BTreeMap<String, Change> {
    let mut out: BTreeMap<String, Change> = BTreeMap::new();
    for f in entry.files.iter().chain(&entry.dead_letters) {
        out.entry(bucket_of(&entry.dataset, &f.path))
            .or_default()
            .added
            .push(f.clone());
    }
    for f in &entry.removed {
        out.entry(bucket_of(&entry.dataset, &f.path))
            .or_default()
            .removed
            .push(f.clone());
    }
    out
}

/// Whether `bucket` lies under the data prefix `prefix` (relative to the dataset folder,
/// `""` for all of it). The dead-letter bucket is never under a data prefix.
fn under(bucket: &str, prefix: &str) -> bool {
    if bucket == DEAD_LETTER_BUCKET {
        return false;
    }
    prefix.is_empty()
        || bucket == prefix
        || bucket
            .strip_prefix(prefix)
            .is_some_and(|r| r.starts_with('/'))
}

/// What a reader knows of one stream: the checkpoint it started from and every entry after.
#[derive(Debug, Clone)]
pub struct StreamSnapshot {
    ledger: PartitionLedger,
    /// Files of a v1 checkpoint (every file up to its seq); `None` for v2 or no checkpoint.
    legacy: Option<Vec<FileRef>>,
    /// Entries after the checkpoint, oldest first.
    tail: Vec<Entry>,
    /// The entry the checkpoint was taken at (`Checkpoint::last`), if there is a checkpoint.
    checkpointed: Option<Entry>,
    /// The newest entry seen: manifests above it are ignored.
    high: u64,
    /// When the snapshot was taken: see [`MAX_SNAPSHOT_AGE`].
    taken: std::time::Instant,
}

/// How long after a snapshot was taken it may still choose manifests. The manifest it
/// chooses (the newest at or below its `high`) can only be superseded by one written after
/// the snapshot began, and is deleted [`SUPERSEDED_GRACE`] after that; so a listing made
/// within the grace (less a margin for the snapshot's own reads and clock skew) finds it,
/// and a read that comes later still fails loudly (not found) rather than missing it.
/// Older, the snapshot refuses ([`LedgerError::Stale`]) rather than silently missing an
/// hour's files. Long jobs load their view again every [`VIEW_RELOAD`].
pub const MAX_SNAPSHOT_AGE: std::time::Duration =
    std::time::Duration::from_secs(SUPERSEDED_GRACE.as_secs() - 120);

/// How often a job that reads many hours one after another loads its view again.
pub const VIEW_RELOAD: std::time::Duration =
    std::time::Duration::from_secs(MAX_SNAPSHOT_AGE.as_secs() / 2);

impl StreamSnapshot {
    pub(super) fn new(
        ledger: PartitionLedger,
        legacy: Option<Vec<FileRef>>,
        tail: Vec<Entry>,
        checkpointed: Option<Entry>,
        high: u64,
    ) -> Self {
        StreamSnapshot {
            ledger,
            legacy,
            tail,
            checkpointed,
            high,
            taken: std::time::Instant::now(),
        }
    }

    /// The data files of the newest entry that added any (from the entries this snapshot
    /// read, without further reads); empty when the stream never committed a data file.
    /// Later entries may have taken them out again (compaction, retention): readers that
    /// need live files look their hour up.
    pub fn newest_data_files(&self) -> &[FileRef] {
        self.tail
            .iter()
            .rev()
            .chain(self.checkpointed.as_ref())
            .map(|e| e.files.as_slice())
            .find(|files| !files.is_empty())
            .unwrap_or_default()
    }

    /// Makes the snapshot `age` older (tests of [`MAX_SNAPSHOT_AGE`]).
    #[cfg(test)]
    pub(crate) fn age_for_test(&mut self, age: std::time::Duration) {
        self.taken -= age;
    }

    pub fn ledger(&self) -> &PartitionLedger {
        &self.ledger
    }

    /// The newest entry seq this snapshot covers.
    pub fn high(&self) -> u64 {
        self.high
    }

    /// Every data file under `prefix` (relative to the dataset folder; `""` for all) that
    /// this stream's entries put there. (Only maintenance streams take files out again:
    /// see [`Self::data_changes`].)
    pub async fn data_files(&self, prefix: &str) -> Result<Vec<FileRef>, LedgerError> {
        Ok(self.data_changes(prefix).await?.added)
    }

    /// What this stream's entries put under `prefix`, and what they took out.
    pub async fn data_changes(&self, prefix: &str) -> Result<Change, LedgerError> {
        self.changes(|b| under(b, prefix), prefix).await
    }

    /// Every dead-letter file the stream's entries put in.
    pub async fn dead_letter_files(&self) -> Result<Vec<FileRef>, LedgerError> {
        Ok(self.dead_letter_changes().await?.added)
    }

    /// The dead-letter files the stream's entries put in, and those they took out.
    pub async fn dead_letter_changes(&self) -> Result<Change, LedgerError> {
        self.changes(|b| b == DEAD_LETTER_BUCKET, DEAD_LETTER_BUCKET)
            .await
    }

    async fn changes(
        &self,
        wanted: impl Fn(&str) -> bool,
        list_prefix: &str,
    ) -> Result<Change, LedgerError> {
        let dataset = self.ledger.dataset.clone();
        let mut out = Change::default();
        let base: HashMap<String, u64> = match &self.legacy {
            Some(all) => {
                out.added = all
                    .iter()
                    .filter(|f| wanted(&bucket_of(&dataset, &f.path)))
                    .cloned()
                    .collect();
                HashMap::new()
            }
            None => {
                let listed = self.ledger.newest_manifests(list_prefix, self.high).await?;
                // After the listing: a manifest listed in time is kept for at least
                // SUPERSEDED_GRACE - MAX_SNAPSHOT_AGE more, long enough to read it.
                let age = self.taken.elapsed();
                if age > MAX_SNAPSHOT_AGE {
                    return Err(LedgerError::Stale {
                        stream: self.ledger.stream(),
                        age_s: age.as_secs(),
                        grace_s: SUPERSEDED_GRACE.as_secs(),
                    });
                }
                let chosen: Vec<(String, u64)> = listed
                    .into_iter()
                    .filter(|(bucket, _)| wanted(bucket))
                    .collect();
                let read: Vec<HourManifest> = futures::stream::iter(chosen.iter().cloned())
                    .map(|(bucket, seq)| {
                        let ledger = self.ledger.clone();
                        async move { ledger.read_manifest(&bucket, seq).await }
                    })
                    .buffer_unordered(32)
                    .try_collect()
                    .await?;
                for m in read {
                    out.extend(Change {
                        added: m.files,
                        removed: m.removed,
                    });
                }
                chosen.into_iter().collect()
            }
        };
        for e in &self.tail {
            for (bucket, change) in changes_by_bucket(e) {
                if wanted(&bucket) && e.seq > base.get(&bucket).copied().unwrap_or(0) {
                    out.extend(change);
                }
            }
        }
        Ok(out)
    }
}

impl PartitionLedger {
    pub(super) fn manifest_path(&self, bucket: &str, seq: u64) -> Path {
        Path::from(format!(
            "{}/hours/{bucket}/{}.json",
            self.root,
            super::seq_name(seq)
        ))
    }

    /// The manifests under `hours/<prefix>`, by bucket, sorted by seq.
    pub(super) async fn manifests(
        &self,
        prefix: &str,
    ) -> Result<BTreeMap<String, Vec<(u64, ObjectMeta)>>, LedgerError> {
        let dir = if prefix.is_empty() {
            "hours".to_owned()
        } else {
            format!("hours/{prefix}")
        };
        let hours_root = format!("{}/hours/", self.root);
        let mut out: BTreeMap<String, Vec<(u64, ObjectMeta)>> = BTreeMap::new();
        // One bucket (the usual query: `date = … AND hour = …`, and every fold) is one
        // folder: a listing of it alone. A wider prefix needs the folders below it.
        let is_bucket = prefix == DEAD_LETTER_BUCKET
            || prefix == FLAT_BUCKET
            || prefix
                .rsplit('/')
                .next()
                .is_some_and(|last| last.starts_with("hour="));
        let metas = if is_bucket {
            self.list_metas(&dir).await?
        } else {
            self.list_tree(&dir).await?
        };
        for meta in metas {
            let Some(rel) = meta.location.as_ref().strip_prefix(&hours_root) else {
                continue;
            };
            let Some((bucket, name)) = rel.rsplit_once('/') else {
                continue;
            };
            let Some(seq) = name
                .strip_suffix(".json")
                .and_then(|s| s.parse::<u64>().ok())
            else {
                continue;
            };
            out.entry(bucket.to_owned()).or_default().push((seq, meta));
        }
        for v in out.values_mut() {
            v.sort_by_key(|(s, _)| *s);
        }
        Ok(out)
    }

    /// For each bucket under `prefix`, the newest manifest seq at or below `high`.
    pub(super) async fn newest_manifests(
        &self,
        prefix: &str,
        high: u64,
    ) -> Result<Vec<(String, u64)>, LedgerError> {
        Ok(self
            .manifests(prefix)
            .await?
            .into_iter()
            .filter_map(|(bucket, seqs)| {
                let s = seqs.iter().rev().map(|(s, _)| *s).find(|&s| s <= high)?;
                Some((bucket, s))
            })
            .collect())
    }

    pub(super) async fn read_manifest(
        &self,
        bucket: &str,
        seq: u64,
    ) -> Result<HourManifest, LedgerError> {
        let path = self.manifest_path(bucket, seq);
        let m: HourManifest = self
            .get_json(&path)
            .await?
            .ok_or_else(|| self.corrupt(&path, "listed but missing"))?;
        if m.version > super::LEDGER_VERSION {
            return Err(LedgerError::TooNew {
                stream: self.stream(),
                version: m.version,
            });
        }
        Ok(m)
    }
}

/// Deletes objects superseded for at least [`SUPERSEDED_GRACE`] (best effort). `versions`
/// are one kind of object (a bucket's manifests, a stream's checkpoints) sorted by seq;
/// those below `below` are candidates, and each counts as superseded since the next one
/// was written (a reader that listed before then may still pick it).
pub(super) async fn delete_superseded(
    store: &Arc<dyn ObjectStore>,
    versions: &[(u64, ObjectMeta)],
    below: u64,
) {
    let now = chrono::Utc::now();
    for pair in versions.windows(2) {
        let ((seq, old), (_, next)) = (&pair[0], &pair[1]);
        if *seq >= below {
            break;
        }
        let since = now
            .signed_duration_since(next.last_modified)
            .to_std()
            .unwrap_or_default();
        if since >= SUPERSEDED_GRACE {
            let _ = store.delete(&old.location).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_follow_the_hive_folder() {
        assert_eq!(
            bucket_of(
                "http_requests",
                "http_requests/date=2026-11-22/hour=05/f.parquet"
            ),
            "date=2026-11-22/hour=05"
        );
        assert_eq!(
            bucket_of("ds", "_weir/dead_letter/ds/f.parquet"),
            DEAD_LETTER_BUCKET
        );
        assert_eq!(bucket_of("ds", "ds/f.parquet"), FLAT_BUCKET);
        // A dataset whose name is a prefix of another's is not confused with it.
        assert_eq!(bucket_of("ds", "ds2/date=x/f.parquet"), DEAD_LETTER_BUCKET);
    }

    #[test]
    fn prefixes_match_whole_segments() {
        assert!(under("date=2026-11-22/hour=05", ""));
        assert!(under("date=2026-11-22/hour=05", "date=2026-11-22"));
        assert!(under("date=2026-11-22/hour=05", "date=2026-11-22/hour=05"));
        assert!(!under("date=2026-11-22/hour=05", "date=2026-11-2"));
        assert!(!under("date=2026-11-22/hour=05", "date=2026-11-22/hour=0"));
        assert!(!under(DEAD_LETTER_BUCKET, ""));
    }
}
