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
    /// Listings already answered, by prefix.
    listed: Mutex<HashMap<String, Arc<Vec<ObjectMeta>>>>,
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
        for dataset in datasets {
            let ledgers =
                ledger::streams(&store, dataset)
                    .await
                    .map_err(|source| LedgerError::Store {
                        stream: dataset.clone(),
                        source,
                    })?;
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
                listed: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// Every committed object under `prefix` (segment-wise, as `ObjectStore::list`).
    async fn committed_under(&self, prefix: &str) -> OsResult<Arc<Vec<ObjectMeta>>> {
        if let Some(found) = self.inner.listed.lock().unwrap().get(prefix) {
            return Ok(found.clone());
        }
        let mut files: Vec<FileRef> = Vec::new();
        let segments: Vec<&str> = prefix.split('/').filter(|s| !s.is_empty()).collect();
        let wants_dead_letters = match segments.as_slice() {
            [] | ["_weir"] | ["_weir", "dead_letter", ..] => true,
            _ => false,
        };
        if wants_dead_letters {
            let only = segments.get(2).copied();
            for (dataset, snapshots) in &self.inner.streams {
                if only.is_none_or(|d| d == dataset) {
                    files.extend(gather(snapshots, None).await?);
                }
            }
        }
        match segments.as_slice() {
            [] => {
                for snapshots in self.inner.streams.values() {
                    files.extend(gather(snapshots, Some(String::new())).await?);
                }
            }
            [dataset, rest @ ..] if !dataset.starts_with('_') => {
                if let Some(snapshots) = self.inner.streams.get(*dataset) {
                    files.extend(gather(snapshots, Some(rest.join("/"))).await?);
                }
            }
            _ => {}
        }
        let want = Path::from(prefix);
        let mut metas: Vec<ObjectMeta> = files
            .into_iter()
            .map(|f| ObjectMeta {
                location: Path::from(f.path),
                last_modified: chrono::DateTime::UNIX_EPOCH,
                size: f.bytes,
                e_tag: None,
                version: None,
            })
            .filter(|m| prefix.is_empty() || m.location.prefix_matches(&want))
            .collect();
        metas.sort_by(|a, b| a.location.cmp(&b.location));
        metas.dedup_by(|a, b| a.location == b.location);
        let metas = Arc::new(metas);
        self.inner
            .listed
            .lock()
            .unwrap()
            .insert(prefix.to_owned(), metas.clone());
        Ok(metas)
    }
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
