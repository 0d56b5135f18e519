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

use chrono::{DateTime, Duration, NaiveDate, NaiveDateTime, Utc};
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use tokio_util::io::{StreamReader, SyncIoBridge};

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
/// (`tokio::task::block_in_place`; the reader waits on the runtime it was opened on). The
/// request is retried like every other store call. A body cut off part way is resumed by
/// the object store client with a ranged request for the rest, checked against the first
/// answer's ETag (up to its `max_retries`); an error that outlasts those ends the reader
/// with an error. Memory holds a chunk of the file at a time, not the file.
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
    Ok(reader_of(got.into_stream()))
}

/// A blocking reader over a body stream; store errors read as `StoreRead`.
fn reader_of(
    body: futures::stream::BoxStream<'static, object_store::Result<bytes::Bytes>>,
) -> impl Read + Send + use<> {
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
}
