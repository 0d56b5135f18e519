//! [`CommittedView`]: the lake as the ledger names it, as an [`ObjectStore`] that
//! DataFusion's listing tables read through.
//!
//! A listing never reaches the data prefixes. `list("http_requests/date=…/hour=05")`
//! becomes, for every ledger stream of `http_requests`, a listing of that stream's
//! manifests of the same hour and a read of one manifest per stream (in parallel), plus the
//! entries after its checkpoint, read once per view. So a query whose filters pin
//! `date` and `hour` with `=` costs the hours it touches, whatever the length of the
//! history; a filter DataFusion cannot turn into a path prefix (a range of hours) costs
//! every hour under the narrowest prefix it can (`date = …` alone: that day's hours).
//! Reads (`get`, ranges) go straight to the store.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex};

use futures::stream::{BoxStream, StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, Result as OsResult,
};

use crate::ledger::{self, FileRef, LedgerError, StreamSnapshot};

/// A read-only view of the lake that lists only files a ledger entry names.
#[derive(Clone)]
pub struct CommittedView {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn ObjectStore>,
    /// Per dataset, a snapshot of each of its ledger streams, taken when the view was made.
    streams: BTreeMap<String, Vec<StreamSnapshot>>,
    /// Per dataset, its maintenance stream (replace entries), read before the others: a
    /// replace entry seen here only removes files committed before it, so they are in the
    /// streams' snapshots taken after.
    maintenance: BTreeMap<String, StreamSnapshot>,
    /// Listings already answered, by prefix.
    listed: Mutex<HashMap<String, Arc<Vec<ObjectMeta>>>>,
    /// A view of exactly these files instead of the ledger's (see [`CommittedView::of_files`]).
    fixed: Option<Vec<FileRef>>,
}

impl fmt::Debug for CommittedView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CommittedView")
            .field("datasets", &self.inner.streams.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl fmt::Display for CommittedView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CommittedView({})", self.inner.store)
    }
}

impl CommittedView {
    /// Takes a snapshot of every ledger stream of `datasets`: per stream its newest
    /// checkpoint and the entries after it, in parallel. No manifest is read yet.
    pub async fn load(
        store: Arc<dyn ObjectStore>,
        datasets: &[String],
    ) -> Result<CommittedView, LedgerError> {
        let mut streams = BTreeMap::new();
        let mut maintenance = BTreeMap::new();
        for dataset in datasets {
            let jobs = ledger::PartitionLedger::maintenance(store.clone(), dataset);
            maintenance.insert(dataset.clone(), jobs.snapshot().await?);
            let mut ledgers =
                ledger::streams(&store, dataset)
                    .await
                    .map_err(|source| LedgerError::Store {
                        stream: dataset.clone(),
                        source,
                    })?;
            // A `--replace` backfill's staged files enter the table only through the
            // maintenance entry that publishes them.
            ledgers.retain(|l| !ledger::is_staged(l.topic()));
            let snapshots: Vec<StreamSnapshot> = futures::stream::iter(ledgers)
                .map(|l| async move { l.snapshot().await })
                .buffer_unordered(32)
                .try_collect()
                .await?;
            streams.insert(dataset.clone(), snapshots);
        }
        Ok(CommittedView {
            inner: Arc::new(Inner {
                store,
                streams,
                maintenance,
                listed: Mutex::new(HashMap::new()),
                fixed: None,
            }),
        })
    }

    /// A view that lists exactly `files` (with the sizes they carry) and reads from
    /// `store`: what a job that read the ledger itself (compaction) hands DataFusion, so
    /// that a listing table over an hour's folder reads just those files.
    pub fn of_files(store: Arc<dyn ObjectStore>, files: Vec<FileRef>) -> CommittedView {
        CommittedView {
            inner: Arc::new(Inner {
                store,
                streams: BTreeMap::new(),
                maintenance: BTreeMap::new(),
                listed: Mutex::new(HashMap::new()),
                fixed: Some(files),
            }),
        }
    }

    /// Every committed object under `prefix` (segment-wise, as `ObjectStore::list`).
    async fn committed_under(&self, prefix: &str) -> OsResult<Arc<Vec<ObjectMeta>>> {
        if let Some(found) = self.inner.listed.lock().unwrap().get(prefix) {
            return Ok(found.clone());
        }
        let mut files: Vec<FileRef> = self.inner.fixed.clone().unwrap_or_default();
        let segments: Vec<&str> = prefix.split('/').filter(|s| !s.is_empty()).collect();
        let wants_dead_letters = matches!(
            segments.as_slice(),
            [] | ["_weir"] | ["_weir", "dead_letter", ..]
        );
        if wants_dead_letters {
            let only = segments.get(2).copied();
            for dataset in self.inner.streams.keys() {
                if only.is_none_or(|d| d == dataset) {
                    files.extend(self.dead_letter_files(dataset).await?);
                }
            }
        }
        match segments.as_slice() {
            [] => {
                for dataset in self.inner.streams.keys() {
                    files.extend(self.data_files(dataset, "").await?);
                }
            }
            [dataset, rest @ ..] if !dataset.starts_with('_') => {
                files.extend(self.data_files(dataset, &rest.join("/")).await?);
            }
            _ => {}
        }
        let want = Path::from(prefix);
        let mut metas: Vec<ObjectMeta> = files
            .into_iter()
            .map(meta)
            .filter(|m| prefix.is_empty() || m.location.prefix_matches(&want))
            .collect();
        metas.sort_by(|a, b| a.location.cmp(&b.location));
        metas.dedup_by(|a, b| a.location == b.location);
        tracing::debug!(prefix, files = metas.len(), "listed committed files");
        let metas = Arc::new(metas);
        self.inner
            .listed
            .lock()
            .unwrap()
            .insert(prefix.to_owned(), metas.clone());
        Ok(metas)
    }
}

impl CommittedView {
    /// Every data file of `dataset`'s table.
    pub async fn committed_files(&self, dataset: &str) -> OsResult<Vec<FileRef>> {
        self.data_files(dataset, "").await
    }

    /// Live data files that show what the newest rows of `dataset` look like, for reading
    /// the table's schema from their footers: the files of each stream's newest entry that
    /// still belong to the table, and where compaction or retention took all of them out,
    /// a few live files of the same hour. At most `limit`; empty for a table without files.
    /// Costs one listing per hour the streams last wrote to (typically one or two).
    pub async fn newest_files(&self, dataset: &str, limit: usize) -> OsResult<Vec<ObjectMeta>> {
        const PER_EMPTIED_HOUR: usize = 4;
        let Some(snapshots) = self.inner.streams.get(dataset) else {
            return Ok(Vec::new());
        };
        // Hour folder → the newest files streams put there.
        let mut hours: BTreeMap<String, Vec<&FileRef>> = BTreeMap::new();
        for snapshot in snapshots {
            for file in snapshot.newest_data_files() {
                hours
                    .entry(ledger::bucket_of(dataset, &file.path))
                    .or_default()
                    .push(file);
            }
        }
        let mut out = Vec::new();
        // Newest hour first (`date=…/hour=…` sorts as text).
        for (hour, newest) in hours.iter().rev() {
            if out.len() >= limit {
                break;
            }
            let live = if hour == ledger::FLAT_BUCKET {
                self.data_files(dataset, hour)
                    .await?
                    .into_iter()
                    .map(meta)
                    .collect()
            } else {
                self.committed_under(&format!("{dataset}/{hour}"))
                    .await?
                    .as_ref()
                    .clone()
            };
            let wanted: Vec<&ObjectMeta> = live
                .iter()
                .filter(|m| newest.iter().any(|f| m.location.as_ref() == f.path))
                .collect();
            if wanted.is_empty() {
                out.extend(live.iter().rev().take(PER_EMPTIED_HOUR).cloned());
            } else {
                out.extend(wanted.into_iter().cloned());
            }
        }
        out.truncate(limit);
        Ok(out)
    }

    /// Every dead-letter file of `dataset`: what its partitions' streams and its
    /// maintenance stream put in, minus what the maintenance stream took out.
    pub async fn dead_letter_files(&self, dataset: &str) -> OsResult<Vec<FileRef>> {
        let Some(snapshots) = self.inner.streams.get(dataset) else {
            return Ok(Vec::new());
        };
        let mut files = gather(snapshots, None).await?;
        if let Some(jobs) = self.inner.maintenance.get(dataset) {
            let change =
                jobs.dead_letter_changes()
                    .await
                    .map_err(|e| object_store::Error::Generic {
                        store: "ledger",
                        source: Box::new(e),
                    })?;
            apply(&mut files, change);
        }
        Ok(files)
    }

    /// The table's files under `prefix` (relative to the dataset folder): what the
    /// partitions' streams and the maintenance stream put there, minus what the
    /// maintenance stream took out.
    pub async fn data_files(&self, dataset: &str, prefix: &str) -> OsResult<Vec<FileRef>> {
        let Some(snapshots) = self.inner.streams.get(dataset) else {
            return Ok(Vec::new());
        };
        let mut files = gather(snapshots, Some(prefix.to_owned())).await?;
        if let Some(jobs) = self.inner.maintenance.get(dataset) {
            let change =
                jobs.data_changes(prefix)
                    .await
                    .map_err(|e| object_store::Error::Generic {
                        store: "ledger",
                        source: Box::new(e),
                    })?;
            apply(&mut files, change);
        }
        Ok(files)
    }
}

/// A committed file as a listing answers it (its size from the ledger).
fn meta(file: FileRef) -> ObjectMeta {
    ObjectMeta {
        location: Path::from(file.path),
        last_modified: chrono::DateTime::UNIX_EPOCH,
        size: file.bytes,
        e_tag: None,
        version: None,
    }
}

/// Adds what a maintenance stream put in and drops what it took out.
fn apply(files: &mut Vec<FileRef>, change: ledger::Change) {
    files.extend(change.added);
    let gone: std::collections::HashSet<String> =
        change.removed.into_iter().map(|f| f.path).collect();
    files.retain(|f| !gone.contains(&f.path));
}

/// The data files under `data_prefix` (relative to the dataset folder), or with `None` the
/// dead-letter files, of every stream, read in parallel.
async fn gather(
    snapshots: &[StreamSnapshot],
    data_prefix: Option<String>,
) -> OsResult<Vec<FileRef>> {
    let per_stream: Vec<Vec<FileRef>> = futures::stream::iter(snapshots.iter().cloned())
        .map(|s| {
            let data_prefix = data_prefix.clone();
            async move {
                match data_prefix {
                    Some(prefix) => s.data_files(&prefix).await,
                    None => s.dead_letter_files().await,
                }
            }
        })
        .buffer_unordered(32)
        .try_collect()
        .await
        .map_err(|e| object_store::Error::Generic {
            store: "ledger",
            source: Box::new(e),
        })?;
    Ok(per_stream.into_iter().flatten().collect())
}

fn read_only() -> object_store::Error {
    object_store::Error::NotSupported {
        source: "the committed view of the lake is read only".into(),
    }
}

#[async_trait::async_trait]
impl ObjectStore for CommittedView {
    async fn put_opts(&self, _: &Path, _: PutPayload, _: PutOptions) -> OsResult<PutResult> {
        Err(read_only())
    }
    async fn put_multipart_opts(
        &self,
        _: &Path,
        _: PutMultipartOptions,
    ) -> OsResult<Box<dyn MultipartUpload>> {
        Err(read_only())
    }
    async fn get_opts(&self, location: &Path, options: GetOptions) -> OsResult<GetResult> {
        self.inner.store.get_opts(location, options).await
    }
    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[std::ops::Range<u64>],
    ) -> OsResult<Vec<bytes::Bytes>> {
        self.inner.store.get_ranges(location, ranges).await
    }
    fn delete_stream(
        &self,
        _: BoxStream<'static, OsResult<Path>>,
    ) -> BoxStream<'static, OsResult<Path>> {
        futures::stream::once(async { Err(read_only()) }).boxed()
    }
    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, OsResult<ObjectMeta>> {
        let view = self.clone();
        let prefix = prefix.map(|p| p.as_ref().to_owned()).unwrap_or_default();
        futures::stream::once(async move { view.committed_under(&prefix).await })
            .map_ok(|metas| futures::stream::iter(metas.as_ref().clone().into_iter().map(Ok)))
            .try_flatten()
            .boxed()
    }
    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> OsResult<ListResult> {
        let base = prefix.map(|p| p.as_ref().to_owned()).unwrap_or_default();
        let all = self.committed_under(&base).await?;
        let skip = if base.is_empty() { 0 } else { base.len() + 1 };
        let mut objects = Vec::new();
        let mut dirs = std::collections::BTreeSet::new();
        for meta in all.iter() {
            let rest = &meta.location.as_ref()[skip..];
            match rest.split_once('/') {
                Some((dir, _)) => {
                    let dir = if base.is_empty() {
                        dir.to_owned()
                    } else {
                        format!("{base}/{dir}")
                    };
                    dirs.insert(dir);
                }
                None => objects.push(meta.clone()),
            }
        }
        Ok(ListResult {
            common_prefixes: dirs.into_iter().map(Path::from).collect(),
            objects,
        })
    }
    async fn copy_opts(&self, _: &Path, _: &Path, _: CopyOptions) -> OsResult<()> {
        Err(read_only())
    }
}

#[cfg(test)]
mod tests {
    use object_store::memory::InMemory;

    use super::*;
    use crate::ledger::{Entry, LEDGER_VERSION, PartitionLedger};

    fn file(path: &str, rows: u64) -> FileRef {
        FileRef {
            path: path.into(),
            rows,
            bytes: 10,
            newest_written: None,
            offsets: None,
        }
    }

    fn entry(l: &PartitionLedger, seq: u64, files: Vec<FileRef>, removed: Vec<FileRef>) -> Entry {
        Entry {
            version: LEDGER_VERSION,
            seq,
            epoch: 1,
            writer: "w".into(),
            dataset: "ds".into(),
            topic: l.stream(),
            partition: 0,
            start_offset: -1,
            next_offset: -1,
            records: 0,
            rows: 0,
            dead_lettered: 0,
            skipped_offsets: 0,
            holes: 0,
            offset_resets: 0,
            files,
            dead_letters: vec![],
            removed,
            operator_state: vec![],
            config_hash: "h".into(),
            weir_version: "t".into(),
            takeover: false,
            units: Vec::new(),
            backfill: None,
            abandoned: false,
            event_time: None,
        }
    }

    async fn listed(store: &Arc<dyn ObjectStore>, prefix: &str) -> Vec<String> {
        let view = CommittedView::load(store.clone(), &["ds".to_owned()])
            .await
            .unwrap();
        let metas: Vec<ObjectMeta> = view
            .list(Some(&Path::from(prefix)))
            .try_collect()
            .await
            .unwrap();
        metas.into_iter().map(|m| m.location.to_string()).collect()
    }

    /// A replace entry of the maintenance stream takes files out and puts others in, as one
    /// step for readers, whether it is still in the tail or folded into a manifest.
    #[tokio::test]
    async fn replace_entries_swap_an_hours_files() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let h5 = "ds/date=2026-01-01/hour=05";
        let h6 = "ds/date=2026-01-01/hour=06";
        let p0 = PartitionLedger::new(store.clone(), "ds", "t", 0);
        let p1 = PartitionLedger::new(store.clone(), "ds", "t", 1);
        p0.commit(&entry(
            &p0,
            1,
            vec![file(&format!("{h5}/a"), 1), file(&format!("{h6}/x"), 1)],
            vec![],
        ))
        .await
        .unwrap();
        p1.commit(&entry(&p1, 1, vec![file(&format!("{h5}/b"), 2)], vec![]))
            .await
            .unwrap();
        assert_eq!(
            listed(&store, h5).await,
            vec![format!("{h5}/a"), format!("{h5}/b")]
        );
        let jobs = PartitionLedger::maintenance(store.clone(), "ds");
        let replace = entry(
            &jobs,
            1,
            vec![file(&format!("{h5}/compact-1"), 3)],
            vec![file(&format!("{h5}/a"), 1), file(&format!("{h5}/b"), 2)],
        );
        jobs.commit(&replace).await.unwrap();
        // A file committed after the replace, into the same hour, stays.
        p0.commit(&entry(&p0, 2, vec![file(&format!("{h5}/late"), 1)], vec![]))
            .await
            .unwrap();
        let want = vec![format!("{h5}/compact-1"), format!("{h5}/late")];
        assert_eq!(listed(&store, h5).await, want);
        assert_eq!(listed(&store, h6).await, vec![format!("{h6}/x")]);
        // Folded into manifests (both kinds of stream), the answer is the same.
        jobs.checkpoint(&replace).await.unwrap();
        let e = p0.read_entry(2).await.unwrap().unwrap();
        p0.checkpoint(&e).await.unwrap();
        assert_eq!(listed(&store, h5).await, want);
        assert_eq!(
            listed(&store, "ds").await,
            vec![
                format!("{h5}/compact-1"),
                format!("{h5}/late"),
                format!("{h6}/x")
            ]
        );
    }
}
