//! The archive source of `weir backfill`: NDJSON files under an object-store prefix, each
//! optionally compressed (`.gz`, `.zst`), as Logpush and most log shippers write them.
//!
//! Files in Logpush's layout, `<prefix>/<YYYYMMDD>/<start>_<end>_<suffix>.log.gz` with
//! `start` and `end` as `YYYYMMDDThhmmssZ`, are chosen by their time window: only day
//! folders that can hold `[from, to)` are listed, and only files whose window meets it are
//! read. Every other file under the prefix is read (its rows outside the range are skipped
//! and counted). A unit is one file, named by its path under the prefix.

use std::io::{BufRead, BufReader, Read};
use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Duration, NaiveDate, NaiveDateTime, Utc};
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{GetOptions, GetRange, Result as OsResult};
use object_store::{ObjectStore, ObjectStoreExt};
use tokio_util::io::{StreamReader, SyncIoBridge};
use tracing::warn;

use super::{BackfillError, SourceRecord, Unit, UnitSource};
use crate::config::Config;
use crate::store::retry;

/// Opens the archive store with `[backfill.source_options]` (default `[storage.options]`).
pub fn open(config: &Config, url: &str) -> Result<Arc<dyn ObjectStore>, BackfillError> {
    let (options, key) = match &config.backfill.source_options {
        Some(options) => (options, "backfill.source_options"),
        None => (&config.storage.options, "storage.options"),
    };
    crate::store::open_as(url, options, key)
        .map_err(|e| BackfillError::Invalid(format!("--source {url}: {e}")))
}

/// `(start, end)` of a file named in Logpush's layout.
pub fn logpush_window(name: &str) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    let mut parts = name.splitn(3, '_');
    let (start, end) = (parts.next()?, parts.next()?);
    parts.next()?;
    let parse = |t: &str| {
        NaiveDateTime::parse_from_str(t, "%Y%m%dT%H%M%SZ")
            .ok()
            .map(|t| t.and_utc())
    };
    Some((parse(start)?, parse(end)?))
}

fn day_folder(name: &str) -> Option<NaiveDate> {
    if name.len() != 8 || !name.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    NaiveDate::parse_from_str(name, "%Y%m%d").ok()
}

async fn list_all(
    store: &Arc<dyn ObjectStore>,
    prefix: Option<&Path>,
) -> Result<Vec<object_store::ObjectMeta>, BackfillError> {
    Ok(retry("archive list", 8, || {
        let store = store.clone();
        let prefix = prefix.cloned();
        async move { store.list(prefix.as_ref()).try_collect::<Vec<_>>().await }
    })
    .await?)
}

/// The files of the archive at `url` that can hold rows of `[from, to)`.
pub async fn plan(
    config: &Config,
    url: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<Unit>, BackfillError> {
    let store = open(config, url)?;
    let top = retry("archive list", 8, || {
        let store = store.clone();
        async move { store.list_with_delimiter(None).await }
    })
    .await?;
    let mut metas = top.objects;
    // A Logpush window starts on its folder's day, so a file can end the day after; the
    // day before `from` can therefore hold rows of the range.
    let first_day = (from - Duration::days(1)).date_naive();
    let last_day = to.date_naive();
    for folder in &top.common_prefixes {
        let name = folder.filename().unwrap_or_default();
        match day_folder(name) {
            Some(day) if day < first_day || day > last_day => continue,
            _ => metas.extend(list_all(&store, Some(folder)).await?),
        }
    }
    let mut units = Vec::new();
    for meta in metas {
        let path = meta.location.to_string();
        let file = meta.location.filename().unwrap_or_default();
        if file.starts_with('.') || file.starts_with('_') {
            continue;
        }
        if let Some((start, end)) = logpush_window(file)
            && (end <= from || start >= to)
        {
            continue;
        }
        units.push(Unit {
            name: path.clone(),
            bytes: meta.size,
            what: UnitSource::File(path),
        });
    }
    Ok(units)
}

/// One archive file's body as a reader of its bytes as they arrive, for a blocking thread
/// (`tokio::task::block_in_place`; the reader waits on the runtime it was opened on), so
/// memory holds a chunk of the file at a time, not the file. The request is retried like
/// every other store call. A body cut off part way is first resumed by the object store
/// client (a few times, within its retry timeout); when that gives up, the rest is asked
/// for again here, from the first byte not yet read, on condition that the object is still
/// the one whose start was read (its ETag): see [`resuming`].
pub async fn open_body(
    store: &Arc<dyn ObjectStore>,
    path: &Path,
) -> Result<impl Read + Send + use<>, BackfillError> {
    let got = retry("archive get", 8, || {
        let store = store.clone();
        let path = path.clone();
        async move { store.get(&path).await }
    })
    .await?;
    let at = Resume {
        store: store.clone(),
        path: path.clone(),
        e_tag: got.meta.e_tag.clone(),
        size: got.meta.size,
        offset: 0,
        stalled: 0,
    };
    Ok(reader_of(resuming(at, got.into_stream())))
}

/// Resumes in a row that read nothing before the body failed again: then the read fails.
const STALLED_RESUMES: u32 = 4;

/// Where a body stands, to ask for the rest of it.
struct Resume {
    store: Arc<dyn ObjectStore>,
    path: Path,
    /// `None` (a store without ETags): no resume, since nothing would show that the object
    /// was replaced between two ranges.
    e_tag: Option<String>,
    size: u64,
    /// Bytes handed on so far.
    offset: u64,
    /// Resumes since the last byte arrived.
    stalled: u32,
}

/// `body`, with every failure part way resumed by a ranged get of the rest (if-match the
/// first answer's ETag, each get retried as any store call), for as long as the resumes
/// make progress. A file replaced meanwhile fails the read (the precondition), as does a
/// body that fails [`STALLED_RESUMES`] times in a row before a byte arrives.
fn resuming(
    at: Resume,
    body: BoxStream<'static, OsResult<Bytes>>,
) -> BoxStream<'static, OsResult<Bytes>> {
    futures::stream::try_unfold((at, body), |(mut at, mut body)| async move {
        loop {
            let error = match body.next().await {
                None => return Ok(None),
                Some(Ok(bytes)) => {
                    if !bytes.is_empty() {
                        at.offset += bytes.len() as u64;
                        at.stalled = 0;
                    }
                    return Ok(Some((bytes, (at, body))));
                }
                Some(Err(error)) => error,
            };
            if at.offset >= at.size {
                // Every byte arrived; the failure came after the last one.
                return Ok(None);
            }
            let Some(e_tag) = at.e_tag.clone() else {
                return Err(error);
            };
            if at.stalled >= STALLED_RESUMES {
                return Err(error);
            }
            at.stalled += 1;
            warn!(path = %at.path, offset = at.offset, size = at.size, attempt = at.stalled, error = %error, "archive download cut off part way, asking for the rest");
            let options = GetOptions {
                range: Some(GetRange::Offset(at.offset)),
                if_match: Some(e_tag),
                ..GetOptions::default()
            };
            let got = retry("archive get (resume)", 8, || {
                let store = at.store.clone();
                let path = at.path.clone();
                let options = options.clone();
                async move { store.get_opts(&path, options).await }
            })
            .await?;
            body = got.into_stream();
        }
    })
    .boxed()
}

/// A blocking reader over a body stream; store errors read as `StoreRead`.
fn reader_of(body: BoxStream<'static, OsResult<Bytes>>) -> impl Read + Send + use<> {
    let body = body.map_err(|e| std::io::Error::other(StoreRead(e)));
    SyncIoBridge::new(StreamReader::new(body))
}

/// A store error while a body was being read (as opposed to bytes that do not decompress).
#[derive(Debug, thiserror::Error)]
#[error("object store: {0}")]
struct StoreRead(object_store::Error);

/// Hands every non-blank line of a (possibly compressed) file to `push`, numbered from 1,
/// with `origin` (the file's URL) as where it came from.
/// A file that does not decompress stops the backfill naming it: what follows the damage
/// is unknown, so neither a row nor a dead letter can stand for it. A store error while
/// reading stops it too (the unit is not committed; a re-run reads the file again).
pub fn lines(
    unit: &Unit,
    origin: &str,
    body: impl Read,
    push: &mut dyn FnMut(SourceRecord) -> Result<(), BackfillError>,
) -> Result<(), BackfillError> {
    let name = unit.name.as_str();
    let reader: Box<dyn Read + '_> = if name.ends_with(".gz") {
        Box::new(flate2::read::MultiGzDecoder::new(body))
    } else if name.ends_with(".zst") || name.ends_with(".zstd") {
        Box::new(
            zstd::stream::read::Decoder::new(body).map_err(|e| BackfillError::Source {
                unit: unit.name.clone(),
                reason: format!("zstd: {e}"),
            })?,
        )
    } else {
        Box::new(body)
    };
    let mut reader = BufReader::with_capacity(1 << 20, reader);
    let mut line = Vec::with_capacity(4096);
    let mut number = 0i64;
    loop {
        line.clear();
        let n = reader
            .read_until(b'\n', &mut line)
            .map_err(|e| BackfillError::Source {
                unit: unit.name.clone(),
                reason: format!("reading after line {number}: {e}"),
            })?;
        if n == 0 {
            return Ok(());
        }
        number += 1;
        while line.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
            line.pop();
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        push(SourceRecord {
            origin: origin.to_owned(),
            partition: -1,
            offset: number,
            timestamp: None,
            payload: line.clone(),
        })?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logpush_names_give_their_window() {
        let (s, e) = logpush_window("20261205T071500Z_20261205T072000Z_a1b2c3.log.gz").unwrap();
        assert_eq!(s.to_rfc3339(), "2026-12-05T07:15:00+00:00");
        assert_eq!(e.to_rfc3339(), "2026-12-05T07:20:00+00:00");
        assert!(logpush_window("export-0001.ndjson.gz").is_none());
        assert!(day_folder("20261205").is_some());
        assert!(day_folder("2026120").is_none());
    }

    #[test]
    fn lines_of_compressed_files_are_numbered_from_one() {
        use std::io::Write;
        let text = b"{\"a\":1}\n\n{\"a\":2}\r\n{\"a\":3}";
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(text).unwrap();
        let gz = gz.finish().unwrap();
        let zst = zstd::encode_all(&text[..], 3).unwrap();
        for (name, bytes) in [
            ("a.log.gz", gz),
            ("a.log.zst", zst),
            ("a.log", text.to_vec()),
        ] {
            let unit = Unit {
                name: name.into(),
                bytes: 0,
                what: UnitSource::File(name.to_owned()),
            };
            let mut got = Vec::new();
            lines(&unit, name, &bytes[..], &mut |r| {
                got.push((r.offset, String::from_utf8(r.payload).unwrap()));
                Ok(())
            })
            .unwrap();
            assert_eq!(
                got,
                vec![
                    (1, "{\"a\":1}".to_owned()),
                    (3, "{\"a\":2}".to_owned()),
                    (4, "{\"a\":3}".to_owned())
                ],
                "{name}"
            );
        }
        // Damage is an error naming the file, not a silent end.
        let unit = Unit {
            name: "bad.log.gz".into(),
            bytes: 0,
            what: UnitSource::File("bad.log.gz".to_owned()),
        };
        let err = lines(
            &unit,
            "bad.log.gz",
            &b"\x1f\x8b\x08\x00garbage"[..],
            &mut |_| Ok(()),
        )
        .unwrap_err();
        assert!(err.to_string().contains("bad.log.gz"), "{err}");
    }

    /// A body that fails part way (after the client's own resumes gave up) stops the unit
    /// with an error naming it and the store, whatever lines came before.
    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_body_that_fails_part_way_stops_the_unit() {
        use futures::StreamExt;
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        for i in 0..2000 {
            writeln!(gz, "{{\"a\":{i}}}").unwrap();
        }
        let gz = bytes::Bytes::from(gz.finish().unwrap());
        let half = gz.slice(..gz.len() / 2);
        let body = futures::stream::iter(vec![
            Ok(half),
            Err(object_store::Error::Generic {
                store: "S3",
                source: "connection reset".into(),
            }),
        ])
        .boxed();
        let reader = reader_of(body);
        let unit = Unit {
            name: "20261205/cut.log.gz".to_owned(),
            bytes: gz.len() as u64,
            what: UnitSource::File("20261205/cut.log.gz".to_owned()),
        };
        let mut seen = 0;
        let err = tokio::task::block_in_place(|| {
            lines(&unit, "s3://a/20261205/cut.log.gz", reader, &mut |_| {
                seen += 1;
                Ok(())
            })
        })
        .unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with("source 20261205/cut.log.gz: reading after line")
                && text.contains("object store: Generic S3 error: connection reset"),
            "{text}"
        );
        assert!(seen < 2000, "{seen} lines from half a file");
    }

    /// An in-memory store whose bodies fail part way: each get hands over at most `cut`
    /// bytes (ranged gets too) and then an error; from get `dead_from` on, bodies fail
    /// before their first byte; `replace` is written over the object after the first get.
    #[derive(Debug)]
    struct CutBodies {
        inner: object_store::memory::InMemory,
        cut: usize,
        dead_from: usize,
        gets: std::sync::atomic::AtomicUsize,
        replace: std::sync::Mutex<Option<Bytes>>,
    }

    impl CutBodies {
        async fn holding(path: &Path, bytes: Bytes, cut: usize, dead_from: usize) -> Arc<Self> {
            let inner = object_store::memory::InMemory::new();
            inner.put(path, bytes.into()).await.unwrap();
            Arc::new(CutBodies {
                inner,
                cut,
                dead_from,
                gets: Default::default(),
                replace: Default::default(),
            })
        }
    }

    impl std::fmt::Display for CutBodies {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "CutBodies")
        }
    }

    fn cut_off() -> object_store::Error {
        object_store::Error::Generic {
            store: "S3",
            source: "connection reset".into(),
        }
    }

    #[async_trait::async_trait]
    impl ObjectStore for CutBodies {
        async fn put_opts(
            &self,
            location: &Path,
            payload: object_store::PutPayload,
            opts: object_store::PutOptions,
        ) -> OsResult<object_store::PutResult> {
            self.inner.put_opts(location, payload, opts).await
        }
        async fn put_multipart_opts(
            &self,
            location: &Path,
            opts: object_store::PutMultipartOptions,
        ) -> OsResult<Box<dyn object_store::MultipartUpload>> {
            self.inner.put_multipart_opts(location, opts).await
        }
        async fn get_opts(
            &self,
            location: &Path,
            options: GetOptions,
        ) -> OsResult<object_store::GetResult> {
            let n = self.gets.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let got = self.inner.get_opts(location, options).await?;
            let replace = self.replace.lock().unwrap().take();
            if let Some(new) = replace {
                self.inner.put(location, new.into()).await?;
            }
            let (meta, range, attributes) =
                (got.meta.clone(), got.range.clone(), got.attributes.clone());
            let all = got.bytes().await?;
            let keep = if n >= self.dead_from { 0 } else { self.cut };
            let body: Vec<OsResult<Bytes>> = if keep >= all.len() {
                vec![Ok(all)]
            } else {
                vec![Ok(all.slice(..keep)), Err(cut_off())]
            };
            Ok(object_store::GetResult {
                payload: object_store::GetResultPayload::Stream(
                    futures::stream::iter(body).boxed(),
                ),
                meta,
                range,
                attributes,
            })
        }
        fn delete_stream(
            &self,
            locations: BoxStream<'static, OsResult<Path>>,
        ) -> BoxStream<'static, OsResult<Path>> {
            self.inner.delete_stream(locations)
        }
        fn list(
            &self,
            prefix: Option<&Path>,
        ) -> BoxStream<'static, OsResult<object_store::ObjectMeta>> {
            self.inner.list(prefix)
        }
        async fn list_with_delimiter(
            &self,
            prefix: Option<&Path>,
        ) -> OsResult<object_store::ListResult> {
            self.inner.list_with_delimiter(prefix).await
        }
        async fn copy_opts(
            &self,
            from: &Path,
            to: &Path,
            options: object_store::CopyOptions,
        ) -> OsResult<()> {
            self.inner.copy_opts(from, to, options).await
        }
    }

    fn gzipped_lines(n: usize) -> Bytes {
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        for i in 0..n {
            // Digits that do not repeat much, so the file is some kilobytes.
            writeln!(
                gz,
                "{{\"a\":{i},\"b\":{}}}",
                (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
            )
            .unwrap();
        }
        Bytes::from(gz.finish().unwrap())
    }

    fn file_unit(path: &str, bytes: u64) -> Unit {
        Unit {
            name: path.to_owned(),
            bytes,
            what: UnitSource::File(path.to_owned()),
        }
    }

    /// Reads `path` from `store` through `open_body` and `lines`: the payloads in order, or
    /// the error.
    async fn read_lines(store: Arc<CutBodies>, path: &Path) -> Result<Vec<Vec<u8>>, BackfillError> {
        let store: Arc<dyn ObjectStore> = store;
        let body = open_body(&store, path).await?;
        let unit = file_unit(path.as_ref(), 0);
        let mut got = Vec::new();
        tokio::task::block_in_place(|| {
            lines(&unit, "s3://a/x.log.gz", body, &mut |r| {
                assert_eq!(
                    r.offset,
                    got.len() as i64 + 1,
                    "lines are numbered in order"
                );
                got.push(r.payload);
                Ok(())
            })
        })?;
        Ok(got)
    }

    /// A body cut off every 1,000 bytes, ranged resumes too, many more times than the store
    /// client resumes: the rest is asked for from where it stopped, and every line arrives
    /// once, in order.
    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_body_cut_off_again_and_again_is_read_whole() {
        let file = gzipped_lines(5_000);
        assert!(file.len() > 20_000, "{} bytes", file.len());
        let path = Path::from("20261205/cut.log.gz");
        let store = CutBodies::holding(&path, file.clone(), 1_000, usize::MAX).await;
        let got = read_lines(store.clone(), &path).await.unwrap();
        assert_eq!(got.len(), 5_000);
        for (i, line) in got.iter().enumerate() {
            assert!(line.starts_with(format!("{{\"a\":{i},").as_bytes()));
        }
        let gets = store.gets.load(std::sync::atomic::Ordering::SeqCst);
        assert_eq!(gets, file.len().div_ceil(1_000), "one get per 1,000 bytes");
    }

    /// Resumes that read nothing, four in a row: the read fails naming the store error.
    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn resumes_that_make_no_progress_give_up() {
        let file = gzipped_lines(5_000);
        let path = Path::from("20261205/dead.log.gz");
        let store = CutBodies::holding(&path, file, 1_000, 2).await;
        let err = read_lines(store.clone(), &path)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("source 20261205/dead.log.gz: reading after line")
                && err.contains("object store: Generic S3 error: connection reset"),
            "{err}"
        );
        // The first get and one resume read 1,000 bytes each; four more read nothing.
        assert_eq!(store.gets.load(std::sync::atomic::Ordering::SeqCst), 2 + 4);
    }

    /// The object replaced between the first get and the resume: the ranged get is refused
    /// (its ETag no longer matches) rather than splicing two files together.
    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_file_replaced_while_read_is_not_spliced() {
        let path = Path::from("20261205/replaced.log.gz");
        let store = CutBodies::holding(&path, gzipped_lines(5_000), 1_000, usize::MAX).await;
        *store.replace.lock().unwrap() = Some(gzipped_lines(6_000));
        let err = read_lines(store.clone(), &path)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("object store: Request precondition failure"),
            "{err}"
        );
        assert_eq!(store.gets.load(std::sync::atomic::Ordering::SeqCst), 2);
    }
}
