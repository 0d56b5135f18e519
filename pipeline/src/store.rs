//! The lake's object store: opening it from `storage.url` and retrying transient faults.
//! (The committed-files-only view that `weir query` reads through is
//! `query::view::CommittedView`.)
//!
//! Every store is wrapped so that its root is the lake root: paths inside Weir are always
//! relative (`http_requests/date=2026-11-22/hour=05/…parquet`, `_weir/ledger/…`).

use std::sync::Arc;
use std::time::Duration;

use object_store::prefix::PrefixStore;
use object_store::{ObjectStore, Result as OsResult};
use tracing::warn;

/// A parsed `storage.url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreUrl {
    Local(std::path::PathBuf),
    Memory,
    Remote { url: url::Url, prefix: String },
}

impl StoreUrl {
    pub fn parse(text: &str) -> Result<StoreUrl, String> {
        if let Some(rest) = text.strip_prefix("file://") {
            if rest.is_empty() {
                return Err("file:// needs a path (file:///var/lib/weir or file://./lake)".into());
            }
            return Ok(StoreUrl::Local(rest.into()));
        }
        if text == "memory://" || text == "memory:///" {
            return Ok(StoreUrl::Memory);
        }
        if !text.contains("://") {
            if text.is_empty() {
                return Err("must not be empty".into());
            }
            return Ok(StoreUrl::Local(text.into()));
        }
        let url = url::Url::parse(text).map_err(|e| format!("{text:?} is not a URL: {e}"))?;
        match url.scheme() {
            "s3" | "s3a" | "gs" | "az" | "abfs" | "abfss" => {}
            "http" | "https" => {
                return Err(format!(
                    "{text:?}: plain HTTP stores cannot write create-if-absent, which the ledger needs (use s3://, gs://, az:// or file://; for an S3-compatible server set storage.options.aws_endpoint)"
                ));
            }
            other => {
                return Err(format!(
                    "unsupported scheme {other}:// (use file://, memory://, s3://, gs:// or az://)"
                ));
            }
        }
        if url.host_str().unwrap_or("").is_empty() {
            return Err(format!("{text:?} has no bucket"));
        }
        let prefix = url.path().trim_matches('/').to_owned();
        Ok(StoreUrl::Remote { url, prefix })
    }
}

/// What object_store's HTTP client retries on its own: one request, at most 3 more times
/// within 20 s (5xx, 429, connect errors, and timeouts or resets of idempotent requests).
/// Short on purpose: Weir's own layers above (`retry`, then the worker's commit loop) log,
/// report health and settle unknown outcomes by reading. The table of layers is in
/// `ledger`'s module doc.
pub fn client_retry() -> object_store::RetryConfig {
    object_store::RetryConfig {
        backoff: object_store::BackoffConfig {
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            base: 2.0,
        },
        max_retries: 3,
        retry_timeout: Duration::from_secs(20),
    }
}

/// Opens the lake root. Creates a local directory if needed.
pub fn open(
    text: &str,
    options: &std::collections::BTreeMap<String, String>,
) -> Result<Arc<dyn ObjectStore>, String> {
    open_as(text, options, "storage.options")
}

/// [`open`], with errors about an option naming it under `key` (the config table the
/// options came from).
pub fn open_as(
    text: &str,
    options: &std::collections::BTreeMap<String, String>,
    key: &str,
) -> Result<Arc<dyn ObjectStore>, String> {
    match StoreUrl::parse(text)? {
        StoreUrl::Memory => Ok(Arc::new(object_store::memory::InMemory::new())),
        StoreUrl::Local(path) => {
            std::fs::create_dir_all(&path)
                .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
            let fs = object_store::local::LocalFileSystem::new_with_prefix(&path)
                .map_err(|e| e.to_string())?
                .with_automatic_cleanup(true);
            Ok(Arc::new(SortedLocal(fs)))
        }
        StoreUrl::Remote { url, prefix } => {
            let store: Box<dyn ObjectStore> = match url.scheme() {
                "s3" | "s3a" => {
                    let mut b = object_store::aws::AmazonS3Builder::from_env()
                        .with_url(url.as_str())
                        .with_retry(client_retry());
                    for (k, v) in options {
                        let key = k
                            .parse::<object_store::aws::AmazonS3ConfigKey>()
                            .map_err(|e| format!("{key}.{k}: {e}"))?;
                        b = b.with_config(key, v);
                    }
                    Box::new(b.build().map_err(|e| e.to_string())?)
                }
                "gs" => {
                    let mut b = object_store::gcp::GoogleCloudStorageBuilder::from_env()
                        .with_url(url.as_str())
                        .with_retry(client_retry());
                    for (k, v) in options {
                        let key = k
                            .parse::<object_store::gcp::GoogleConfigKey>()
                            .map_err(|e| format!("{key}.{k}: {e}"))?;
                        b = b.with_config(key, v);
                    }
                    Box::new(b.build().map_err(|e| e.to_string())?)
                }
                "az" | "abfs" | "abfss" => {
                    let mut b = object_store::azure::MicrosoftAzureBuilder::from_env()
                        .with_url(url.as_str())
                        .with_retry(client_retry());
                    for (k, v) in options {
                        let key = k
                            .parse::<object_store::azure::AzureConfigKey>()
                            .map_err(|e| format!("{key}.{k}: {e}"))?;
                        b = b.with_config(key, v);
                    }
                    Box::new(b.build().map_err(|e| e.to_string())?)
                }
                _ => {
                    let (store, _) = object_store::parse_url_opts(&url, options.iter())
                        .map_err(|e| e.to_string())?;
                    store
                }
            };
            if prefix.is_empty() {
                Ok(Arc::from(store))
            } else {
                Ok(Arc::new(PrefixStore::new(store, prefix.as_str())))
            }
        }
    }
}

/// Whether an error is worth retrying (network, 5xx, timeouts) rather than a verdict
/// (not found, already exists, precondition failed, bad credentials).
pub fn is_transient(err: &object_store::Error) -> bool {
    use object_store::Error as E;
    !matches!(
        err,
        E::NotFound { .. }
            | E::AlreadyExists { .. }
            | E::Precondition { .. }
            | E::NotModified { .. }
            | E::NotImplemented { .. }
            | E::InvalidPath { .. }
            | E::PermissionDenied { .. }
            | E::Unauthenticated { .. }
            | E::UnknownConfigurationKey { .. }
            | E::NotSupported { .. }
    )
}

/// Reads the object at `path` with [`retry`]; `None` when it does not exist.
pub async fn get_if_exists(
    store: &Arc<dyn ObjectStore>,
    path: &object_store::path::Path,
    what: &str,
    attempts: u32,
) -> OsResult<Option<bytes::Bytes>> {
    use object_store::ObjectStoreExt as _;
    retry(what, attempts, || async move {
        match store.get(path).await {
            Ok(r) => r.bytes().await.map(Some),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    })
    .await
}

/// Retries `op` on transient errors with exponential backoff and jitter, up to `attempts`
/// tries (the last error is returned). The jitter is seeded from `what`, never from the
/// clock: retry timing does not influence any data.
pub async fn retry<T, F, Fut>(what: &str, attempts: u32, mut op: F) -> OsResult<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = OsResult<T>>,
{
    let mut delay = Duration::from_millis(100);
    let mut jitter_state: u64 = what.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    let mut attempt = 1;
    loop {
        match op().await {
            Ok(v) => return Ok(v),
            Err(e) if attempt < attempts && is_transient(&e) => {
                jitter_state = jitter_state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let jitter = Duration::from_millis(
                    (jitter_state >> 33) % (delay.as_millis() as u64 / 2 + 1),
                );
                warn!(operation = what, attempt, error = %e, retry_in_ms = (delay + jitter).as_millis() as u64, "object store call failed, retrying");
                tokio::time::sleep(delay + jitter).await;
                delay = (delay * 2).min(Duration::from_secs(10));
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

/// A local directory as the lake: `LocalFileSystem`, with every listing in path order.
///
/// Object stores list in key order, and Delta's log reader counts on it: it reads the
/// commit files after a version from one listing and stops at the first gap in versions.
/// A directory lists in whatever order the file system keeps (hash order on ext4, newest
/// first on tmpfs), and `LocalFileSystem` passes that order on: on a `file://` lake a
/// Delta publish failed with "expected contiguous commit files" whenever version 1 was
/// listed before version 0, and the Delta table stopped at the last version that had
/// loaded. Listings are collected and sorted here; everything else goes straight through.
#[derive(Debug)]
pub struct SortedLocal(object_store::local::LocalFileSystem);

impl std::fmt::Display for SortedLocal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Sorted({})", self.0)
    }
}

/// `listing`, collected and sorted by path.
fn sorted(
    listing: futures::stream::BoxStream<'static, OsResult<object_store::ObjectMeta>>,
) -> futures::stream::BoxStream<'static, OsResult<object_store::ObjectMeta>> {
    use futures::{StreamExt, TryStreamExt};
    futures::stream::once(async move {
        let mut all: Vec<object_store::ObjectMeta> = listing.try_collect().await?;
        all.sort_unstable_by(|a, b| a.location.cmp(&b.location));
        Ok::<_, object_store::Error>(futures::stream::iter(all.into_iter().map(Ok)))
    })
    .try_flatten()
    .boxed()
}

#[async_trait::async_trait]
impl ObjectStore for SortedLocal {
    async fn put_opts(
        &self,
        location: &object_store::path::Path,
        payload: object_store::PutPayload,
        opts: object_store::PutOptions,
    ) -> OsResult<object_store::PutResult> {
        self.0.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &object_store::path::Path,
        opts: object_store::PutMultipartOptions,
    ) -> OsResult<Box<dyn object_store::MultipartUpload>> {
        self.0.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &object_store::path::Path,
        options: object_store::GetOptions,
    ) -> OsResult<object_store::GetResult> {
        self.0.get_opts(location, options).await
    }

    async fn get_ranges(
        &self,
        location: &object_store::path::Path,
        ranges: &[std::ops::Range<u64>],
    ) -> OsResult<Vec<bytes::Bytes>> {
        self.0.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: futures::stream::BoxStream<'static, OsResult<object_store::path::Path>>,
    ) -> futures::stream::BoxStream<'static, OsResult<object_store::path::Path>> {
        self.0.delete_stream(locations)
    }

    fn list(
        &self,
        prefix: Option<&object_store::path::Path>,
    ) -> futures::stream::BoxStream<'static, OsResult<object_store::ObjectMeta>> {
        sorted(self.0.list(prefix))
    }

    fn list_with_offset(
        &self,
        prefix: Option<&object_store::path::Path>,
        offset: &object_store::path::Path,
    ) -> futures::stream::BoxStream<'static, OsResult<object_store::ObjectMeta>> {
        sorted(self.0.list_with_offset(prefix, offset))
    }

    async fn list_with_delimiter(
        &self,
        prefix: Option<&object_store::path::Path>,
    ) -> OsResult<object_store::ListResult> {
        let mut result = self.0.list_with_delimiter(prefix).await?;
        result
            .objects
            .sort_unstable_by(|a, b| a.location.cmp(&b.location));
        result.common_prefixes.sort_unstable();
        Ok(result)
    }

    async fn copy_opts(
        &self,
        from: &object_store::path::Path,
        to: &object_store::path::Path,
        options: object_store::CopyOptions,
    ) -> OsResult<()> {
        self.0.copy_opts(from, to, options).await
    }

    async fn rename_opts(
        &self,
        from: &object_store::path::Path,
        to: &object_store::path::Path,
        options: object_store::RenameOptions,
    ) -> OsResult<()> {
        self.0.rename_opts(from, to, options).await
    }
}

/// A Parquet file in the object store read by ranges (the footer, then the column chunks a
/// reader asks for), each read retried as [`retry`] does.
pub struct ParquetRanges {
    store: Arc<dyn ObjectStore>,
    path: object_store::path::Path,
    size: u64,
}

impl ParquetRanges {
    /// `size`: the file's length in bytes, as its ledger entry records it.
    pub fn new(store: Arc<dyn ObjectStore>, path: object_store::path::Path, size: u64) -> Self {
        ParquetRanges { store, path, size }
    }
}

impl parquet::arrow::async_reader::AsyncFileReader for ParquetRanges {
    fn get_bytes(
        &mut self,
        range: std::ops::Range<u64>,
    ) -> futures::future::BoxFuture<'_, parquet::errors::Result<bytes::Bytes>> {
        Box::pin(async move {
            retry("parquet range", 8, || {
                let (store, path, range) = (self.store.clone(), self.path.clone(), range.clone());
                async move { object_store::ObjectStoreExt::get_range(&store, &path, range).await }
            })
            .await
            .map_err(|e| parquet::errors::ParquetError::External(Box::new(e)))
        })
    }

    fn get_metadata<'a>(
        &'a mut self,
        options: Option<&'a parquet::arrow::arrow_reader::ArrowReaderOptions>,
    ) -> futures::future::BoxFuture<
        'a,
        parquet::errors::Result<Arc<parquet::file::metadata::ParquetMetaData>>,
    > {
        Box::pin(async move {
            let size = self.size;
            let metadata = parquet::file::metadata::ParquetMetaDataReader::new()
                .with_arrow_reader_options(options)
                .load_and_finish(self, size)
                .await?;
            Ok(Arc::new(metadata))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A local lake lists in path order whatever order the directory keeps (the test
    /// writes names in descending order; tmpfs lists newest first, ext4 by hash).
    #[tokio::test]
    async fn a_local_lake_lists_in_path_order() {
        use futures::TryStreamExt;
        use object_store::ObjectStoreExt;
        use object_store::path::Path;
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path().to_str().unwrap(), &Default::default()).unwrap();
        let names: Vec<String> = (0..64)
            .rev()
            .map(|v| format!("t/_delta_log/{v:020}.json"))
            .collect();
        for name in &names {
            store
                .put(&Path::from(name.as_str()), b"{}".to_vec().into())
                .await
                .unwrap();
        }
        store
            .put(&Path::from("t/a/x.parquet"), b"x".to_vec().into())
            .await
            .unwrap();
        let mut expected: Vec<String> = names.clone();
        expected.sort();
        let listed: Vec<String> = store
            .list(Some(&Path::from("t/_delta_log")))
            .map_ok(|m| m.location.to_string())
            .try_collect()
            .await
            .unwrap();
        assert_eq!(listed, expected);
        let offset = Path::from(expected[9].as_str());
        let after: Vec<String> = store
            .list_with_offset(Some(&Path::from("t/_delta_log")), &offset)
            .map_ok(|m| m.location.to_string())
            .try_collect()
            .await
            .unwrap();
        assert_eq!(after, expected[10..]);
        let level = store
            .list_with_delimiter(Some(&Path::from("t/_delta_log")))
            .await
            .unwrap();
        let objects: Vec<String> = level
            .objects
            .iter()
            .map(|m| m.location.to_string())
            .collect();
        assert_eq!(objects, expected);
        let top = store
            .list_with_delimiter(Some(&Path::from("t")))
            .await
            .unwrap();
        assert_eq!(
            top.common_prefixes,
            vec![Path::from("t/_delta_log"), Path::from("t/a")]
        );
    }

    #[test]
    fn parses_urls() {
        assert_eq!(
            StoreUrl::parse("file:///tmp/x").unwrap(),
            StoreUrl::Local("/tmp/x".into())
        );
        assert_eq!(
            StoreUrl::parse("./lake").unwrap(),
            StoreUrl::Local("./lake".into())
        );
        assert_eq!(StoreUrl::parse("memory://").unwrap(), StoreUrl::Memory);
        match StoreUrl::parse("s3://bucket/a/b/").unwrap() {
            StoreUrl::Remote { prefix, .. } => assert_eq!(prefix, "a/b"),
            other => panic!("{other:?}"),
        }
        assert!(
            StoreUrl::parse("ftp://x/y")
                .unwrap_err()
                .contains("unsupported scheme")
        );
        assert!(StoreUrl::parse("s3:///nobucket").is_err());
    }
}
