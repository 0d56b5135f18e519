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
/// Its whole-request `timeout` is [`REQUEST_TIMEOUT`] unless those options set one: a body
/// is read as fast as its lines are decoded, which for a large file takes longer than the
/// client's 30 s default (stalls are caught by [`BODY_IDLE`] instead).
pub fn open(config: &Config, url: &str) -> Result<Arc<dyn ObjectStore>, BackfillError> {
    let (options, key) = match &config.backfill.source_options {
        Some(options) => (options, "backfill.source_options"),
        None => (&config.storage.options, "storage.options"),
    };
    let mut options = options.clone();
    options
        .entry("timeout".to_owned())
        .or_insert_with(|| REQUEST_TIMEOUT.to_owned());
    crate::store::open_as(url, &options, key)
        .map_err(|e| BackfillError::Invalid(format!("--source {url}: {e}")))
}

/// The archive store's default whole-request timeout (body included).
pub const REQUEST_TIMEOUT: &str = "1h";

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
/// every other store call. A body cut off part way may first be resumed by the object
/// store client (up to three times, only within 20 s of its request); past that, the rest
/// is asked for again here: see [`resuming`].
pub async fn open_body(
    store: &Arc<dyn ObjectStore>,
    path: &Path,
) -> Result<impl Read + Send + use<>, BackfillError> {
    Ok(reader_of(body(store, path).await?))
}

/// The body of [`open_body`] as a stream.
async fn body(
    store: &Arc<dyn ObjectStore>,
    path: &Path,
) -> Result<BoxStream<'static, OsResult<Bytes>>, BackfillError> {
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
        resumes: 0,
    };
    Ok(resuming(at, got.into_stream()))
}

/// Resumes in a row that brought no byte: then the read fails.
const STALLED_RESUMES: u32 = 4;

/// A body that brings no byte for this long while one is awaited is taken as cut off.
/// (The archive store's whole-request timeout is long by default, see [`open`]: a body is
/// read at the pace of decoding, not of the network.)
const BODY_IDLE: std::time::Duration = std::time::Duration::from_secs(60);

/// Empty chunks in a row that count as a cut: a local file truncated while it is read
/// yields them without end.
const EMPTY_CHUNKS: u32 = 1024;

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
    /// Resumes of this body in all.
    resumes: u64,
}

impl Resume {
    fn failed(&self, why: String) -> object_store::Error {
        object_store::Error::Generic {
            store: "archive",
            source: format!("{}: {why}", self.path).into(),
        }
    }
}

/// `body`, with every failure part way resumed: a ranged get from the first byte not yet
/// handed on, if-match the first answer's ETag, each get retried as any store call, for as
/// long as resumes bring bytes. A failure is an error of the body, a body that ends before
/// the object's size, or [`BODY_IDLE`] without a byte. The answer to a resume must carry
/// the first answer's ETag and size (checked here too: not every server honours
/// `If-Match`), so a file replaced meanwhile fails the read instead of being spliced, as
/// does a body that fails [`STALLED_RESUMES`] times in a row before a byte arrives.
fn resuming(
    at: Resume,
    body: BoxStream<'static, OsResult<Bytes>>,
) -> BoxStream<'static, OsResult<Bytes>> {
    futures::stream::try_unfold((at, body), |(mut at, mut body)| async move {
        let mut empty = 0;
        loop {
            let cut = match tokio::time::timeout(BODY_IDLE, body.next()).await {
                Ok(Some(Ok(bytes))) if bytes.is_empty() && empty < EMPTY_CHUNKS => {
                    empty += 1;
                    continue;
                }
                Ok(Some(Ok(bytes))) if bytes.is_empty() => at.failed(format!(
                    "{EMPTY_CHUNKS} empty chunks in a row at byte {} of {}",
                    at.offset, at.size
                )),
                Ok(Some(Ok(bytes))) => {
                    at.offset += bytes.len() as u64;
                    at.stalled = 0;
                    return Ok(Some((bytes, (at, body))));
                }
                Ok(None) if at.offset >= at.size => return Ok(None),
                // Every byte arrived; the failure came after the last one.
                Ok(Some(Err(_))) if at.offset >= at.size => return Ok(None),
                Ok(None) => at.failed(format!(
                    "the body ended at byte {} of {}",
                    at.offset, at.size
                )),
                Ok(Some(Err(error))) => error,
                Err(_) => at.failed(format!(
                    "no byte for {}s at byte {} of {}",
                    BODY_IDLE.as_secs(),
                    at.offset,
                    at.size
                )),
            };
            let Some(e_tag) = at.e_tag.clone() else {
                return Err(at.failed(format!(
                    "cut off at byte {} of {} and not resumed: the store gives no ETag to \
                     check the rest against ({cut})",
                    at.offset, at.size
                )));
            };
            if at.stalled >= STALLED_RESUMES {
                return Err(at.failed(format!(
                    "{STALLED_RESUMES} resumes in a row brought no byte at byte {} of {} ({cut})",
                    at.offset, at.size
                )));
            }
            at.stalled += 1;
            at.resumes += 1;
            warn!(path = %at.path, offset = at.offset, size = at.size, resumes = at.resumes, error = %cut, "archive download cut off part way, asking for the rest");
            if at.stalled > 1 {
                tokio::time::sleep(std::time::Duration::from_secs(u64::from(at.stalled))).await;
            }
            let options = GetOptions {
                range: Some(GetRange::Offset(at.offset)),
                if_match: Some(e_tag.clone()),
                ..GetOptions::default()
            };
            let got = retry("archive get (resume)", 8, || {
                let store = at.store.clone();
                let path = at.path.clone();
                let options = options.clone();
                async move { store.get_opts(&path, options).await }
            })
            .await?;
            if got.meta.e_tag.as_deref() != Some(e_tag.as_str()) || got.meta.size != at.size {
                return Err(object_store::Error::Precondition {
                    path: at.path.to_string(),
                    source: format!(
                        "the file changed while it was read (ETag {e_tag}, {} bytes; now {:?}, {} bytes)",
                        at.size, got.meta.e_tag, got.meta.size
                    )
                    .into(),
                });
            }
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

    /// How a [`CutBodies`] body ends after its `cut` bytes.
    #[derive(Debug, Clone, Copy, PartialEq)]
    enum After {
        /// An error (a connection reset).
        Error,
        /// Nothing more, ever (a stalled connection).
        Hang,
        /// A clean end, short of the object's size.
        End,
        /// Empty chunks without end (a local file truncated while it is read).
        Empty,
    }

    /// An in-memory store whose bodies fail part way: each get hands over at most `cut`
    /// bytes (ranged gets too) and then ends as `after` says; from get `dead_from` on, bodies
    /// end before their first byte; `replace` is written over the object after the first
    /// get; with `ignore_if_match`, gets drop their `If-Match` (as some servers do).
    #[derive(Debug)]
    struct CutBodies {
        inner: object_store::memory::InMemory,
        cut: usize,
        after: After,
        dead_from: usize,
        ignore_if_match: bool,
        gets: std::sync::atomic::AtomicUsize,
        replace: std::sync::Mutex<Option<Bytes>>,
    }

    impl CutBodies {
        async fn holding(path: &Path, bytes: Bytes, cut: usize) -> CutBodies {
            let inner = object_store::memory::InMemory::new();
            inner.put(path, bytes.into()).await.unwrap();
            CutBodies {
                inner,
                cut,
                after: After::Error,
                dead_from: usize::MAX,
                ignore_if_match: false,
                gets: Default::default(),
                replace: Default::default(),
            }
        }

        fn gets(&self) -> usize {
            self.gets.load(std::sync::atomic::Ordering::SeqCst)
        }
    }

    impl std::fmt::Display for CutBodies {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "CutBodies")
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
            mut options: GetOptions,
        ) -> OsResult<object_store::GetResult> {
            let n = self.gets.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            if self.ignore_if_match {
                options.if_match = None;
            }
            let got = self.inner.get_opts(location, options).await?;
            let replace = self.replace.lock().unwrap().take();
            if let Some(new) = replace {
                self.inner.put(location, new.into()).await?;
            }
            let (meta, range, attributes) =
                (got.meta.clone(), got.range.clone(), got.attributes.clone());
            let all = got.bytes().await?;
            let keep = if n >= self.dead_from { 0 } else { self.cut };
            let body = if keep >= all.len() {
                futures::stream::iter(vec![Ok(all)]).boxed()
            } else {
                let head = futures::stream::iter(vec![Ok(all.slice(..keep))]);
                match self.after {
                    After::Error => head
                        .chain(futures::stream::iter(vec![Err(
                            object_store::Error::Generic {
                                store: "S3",
                                source: "connection reset".into(),
                            },
                        )]))
                        .boxed(),
                    After::Hang => head.chain(futures::stream::pending()).boxed(),
                    After::End => head.boxed(),
                    After::Empty => head
                        .chain(futures::stream::repeat_with(|| Ok(Bytes::new())))
                        .boxed(),
                }
            };
            Ok(object_store::GetResult {
                payload: object_store::GetResultPayload::Stream(body),
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

    /// Every byte of `path` through [`body`], or the error.
    async fn read_all(store: CutBodies, path: &Path) -> (Result<Bytes, String>, usize) {
        let store = Arc::new(store);
        let dyn_store: Arc<dyn ObjectStore> = store.clone();
        let got = match body(&dyn_store, path).await {
            Ok(stream) => stream
                .try_collect::<Vec<Bytes>>()
                .await
                .map(|chunks| Bytes::from(chunks.concat()))
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        (got, store.gets())
    }

    /// A body cut off every 1,000 bytes, ranged resumes too, many more times than the store
    /// client resumes, read through `open_body` and `lines` as a backfill does: every line
    /// arrives once, in order, one get per 1,000 bytes.
    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_body_cut_off_again_and_again_is_read_whole() {
        let file = gzipped_lines(5_000);
        assert!(file.len() > 20_000, "{} bytes", file.len());
        let path = Path::from("20261205/cut.log.gz");
        let store = Arc::new(CutBodies::holding(&path, file.clone(), 1_000).await);
        let dyn_store: Arc<dyn ObjectStore> = store.clone();
        let reader = open_body(&dyn_store, &path).await.unwrap();
        let unit = Unit {
            name: path.to_string(),
            bytes: file.len() as u64,
            what: UnitSource::File(path.to_string()),
        };
        let mut got = Vec::new();
        tokio::task::block_in_place(|| {
            lines(&unit, "s3://a/20261205/cut.log.gz", reader, &mut |r| {
                assert_eq!(
                    r.offset,
                    got.len() as i64 + 1,
                    "lines are numbered in order"
                );
                got.push(r.payload);
                Ok(())
            })
        })
        .unwrap();
        assert_eq!(got.len(), 5_000);
        for (i, line) in got.iter().enumerate() {
            assert!(line.starts_with(format!("{{\"a\":{i},").as_bytes()));
        }
        assert_eq!(store.gets(), file.len().div_ceil(1_000));
    }

    /// A body that stops bringing bytes without failing, ends cleanly short of the object's
    /// size, or brings only empty chunks, is taken as cut off and resumed like a failed one.
    #[tokio::test(start_paused = true)]
    async fn stalled_and_short_bodies_are_resumed() {
        let file = gzipped_lines(5_000);
        let path = Path::from("20261205/slow.log.gz");
        for after in [After::Hang, After::End, After::Empty] {
            let mut store = CutBodies::holding(&path, file.clone(), 4_000).await;
            store.after = after;
            let started = tokio::time::Instant::now();
            let (got, gets) = read_all(store, &path).await;
            assert_eq!(got.unwrap(), file, "{after:?}");
            assert_eq!(gets, file.len().div_ceil(4_000), "{after:?}");
            if after == After::Hang {
                // Each stall is waited out for BODY_IDLE (the clock is paused: no real wait).
                assert!(started.elapsed() >= BODY_IDLE * (gets as u32 - 1));
            }
        }
    }

    /// Resumes that bring nothing, four in a row (with growing pauses between them): the
    /// read fails, saying so.
    #[tokio::test(start_paused = true)]
    async fn resumes_that_make_no_progress_give_up() {
        let path = Path::from("20261205/dead.log.gz");
        let mut store = CutBodies::holding(&path, gzipped_lines(5_000), 1_000).await;
        store.dead_from = 2;
        let (got, gets) = read_all(store, &path).await;
        let err = got.unwrap_err();
        assert!(
            err.contains("20261205/dead.log.gz: 4 resumes in a row brought no byte at byte 2000")
                && err.contains("connection reset"),
            "{err}"
        );
        // The first get and one resume read 1,000 bytes each; four more read nothing.
        assert_eq!(gets, 2 + 4);
    }

    /// The object replaced between the first get and the resume: the resume is refused,
    /// by the store's own `If-Match` or, where the store ignores it, by the ETag check,
    /// rather than splicing two files together.
    #[tokio::test(start_paused = true)]
    async fn a_file_replaced_while_read_is_not_spliced() {
        let path = Path::from("20261205/replaced.log.gz");
        for ignore_if_match in [false, true] {
            let mut store = CutBodies::holding(&path, gzipped_lines(5_000), 1_000).await;
            store.ignore_if_match = ignore_if_match;
            *store.replace.lock().unwrap() = Some(gzipped_lines(6_000));
            let (got, gets) = read_all(store, &path).await;
            let err = got.unwrap_err();
            let expected = if ignore_if_match {
                "the file changed while it was read"
            } else {
                "Request precondition failure"
            };
            assert!(err.contains(expected), "{ignore_if_match}: {err}");
            assert_eq!(gets, 2);
        }
    }
}
