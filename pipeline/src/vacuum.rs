//! `weir vacuum`: retention (whole hours), then the deletion of files the table no longer
//! names.
//!
//! ```text
//!  1. retention: every hour of a dataset with `retention` that ended longer ago than it
//!     leaves the table through one replace entry (all its files removed, none added),
//!     and so, through one more, does every dead-letter file whose newest row was first
//!     written longer ago than it (`FileRef::written`);
//!     intents older than `ledger::INTENT_GRACE` at or below their stream's tail are
//!     settled and removed
//!  1b. with Delta publishing on, publish the dataset (retention's removes included): a
//!     file is deleted only once the Delta table no longer names it either
//!  2. list the dataset's data and dead-letter folders   ─┐ in this order: a file of a
//!  3. list every stream's pending intents                │ commit in flight has its intent
//!  4. read the table (CommittedView) and the maintenance  │ written before its upload, and
//!     stream's entries (what was removed, and when)      ─┘ is named once that is cleared
//!  5. delete a listed file when no live entry names it and no intent does, and
//!       it was removed by an entry committed more than `grace` ago (and, with Delta
//!       publishing on, in the Delta table as it was `grace` ago), or
//!       no entry ever named it (an orphan) and it was written more than `grace` ago
//! ```
//!
//! A file a live entry names is never deleted: the live set is read after the listing, so
//! a file committed meanwhile is in it. `grace` lets queries that planned with a replaced
//! file finish reading it; `--grace 0s` is for tests and for lakes nobody reads meanwhile.
//! The dataset's `_delta_log/` is the Delta library's to clean (checkpoints and log
//! retention) and is never listed here.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use object_store::{ObjectStore, ObjectStoreExt};
use tracing::{info, warn};

use crate::config::Config;
use crate::ledger::{self, FileRef, LedgerError, PartitionLedger};
use crate::maintenance::{Job, JobError};
use crate::query::CommittedView;
use crate::store::retry;

#[derive(Debug, thiserror::Error)]
pub enum VacuumError {
    #[error("{0}")]
    Ledger(#[from] LedgerError),
    #[error("{0}")]
    Job(#[from] JobError),
    #[error("object store: {0}")]
    Store(#[from] object_store::Error),
    #[error("{0}")]
    Delta(#[from] crate::delta::DeltaError),
}

/// The stream (its index in `streams`) and sequence number of the entry that would name
/// the file at `path`, read from the file's name: `compact-<seq>-e<epoch>-<n>.parquet` (the
/// maintenance stream), `<topic>-<partition>-<first offset>-<seq>-e<epoch>.parquet` (a
/// partition) or `<prefix>-<shard>-<seq>-e<epoch>.parquet` (a backfill). `None` for other
/// names, or a stream not among `streams`.
fn naming_entry(path: &str, streams: &[PartitionLedger]) -> Option<(usize, u64)> {
    let name = path.rsplit('/').next()?.strip_suffix(".parquet")?;
    let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
    let parts: Vec<&str> = name.rsplitn(4, '-').collect();
    // `<topic>-<partition:5>-<first offset:20>-<seq:10>-e<epoch:6>`: a partition's file.
    if let [epoch, seq, first, rest] = parts[..]
        && digits(first, 20)
        && digits(seq, 10)
        && epoch.strip_prefix('e').is_some_and(|e| digits(e, 6))
        && let Some((topic, partition)) = rest.rsplit_once('-')
        && digits(partition, 5)
    {
        let partition: i32 = partition.parse().ok()?;
        let index = streams.iter().position(|s| {
            !s.topic().starts_with('@')
                && s.partition() == partition
                && crate::sink::parquet::file_topic(s.topic()) == topic
        })?;
        return Some((index, seq.parse().ok()?));
    }
    // `compact-<seq:10>-e<epoch:6>-<n:4>`: the maintenance stream's.
    if let Some(rest) = name.strip_prefix("compact-")
        && let [seq, epoch, n] = rest.split('-').collect::<Vec<_>>()[..]
        && digits(seq, 10)
        && epoch.strip_prefix('e').is_some_and(|e| digits(e, 6))
        && digits(n, 4)
    {
        let maintenance = streams
            .iter()
            .position(|s| s.partition() == ledger::MAINTENANCE_PARTITION)?;
        return Some((maintenance, seq.parse().ok()?));
    }
    // `<backfill.id | staged.id>-<shard:5>-<seq:10>-e<epoch:6>`: a backfill unit's.
    if let [epoch, seq, shard, prefix] = parts[..]
        && digits(shard, 5)
        && digits(seq, 10)
        && epoch.strip_prefix('e').is_some_and(|e| digits(e, 6))
    {
        let shard: i32 = shard.parse().ok()?;
        let index = streams.iter().position(|s| {
            s.topic().starts_with('@')
                && s.partition() == shard
                && s.topic().trim_start_matches('@') == prefix
        })?;
        return Some((index, seq.parse().ok()?));
    }
    None
}

/// The stream and sequence number of the entry that names the file at `path`, if the entry
/// its name points to ([`naming_entry`]) exists and names it. Entries read are kept in
/// `read` (many files share one).
async fn named_by_its_entry(
    path: &str,
    streams: &[PartitionLedger],
    read: &mut HashMap<(usize, u64), Option<ledger::Entry>>,
) -> Result<Option<(String, u64)>, LedgerError> {
    let Some(key) = naming_entry(path, streams) else {
        return Ok(None);
    };
    if let std::collections::hash_map::Entry::Vacant(slot) = read.entry(key) {
        slot.insert(streams[key.0].read_entry(key.1).await?);
    }
    let names = read[&key].as_ref().is_some_and(|entry| {
        entry
            .files
            .iter()
            .chain(&entry.dead_letters)
            .any(|f| f.path == path)
    });
    Ok(names.then(|| (streams[key.0].stream(), key.1)))
}

/// What one run did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    pub hours_expired: u64,
    /// Dead-letter files past retention, and the dead letters they held.
    pub dead_letter_files_expired: u64,
    pub dead_letters_expired: u64,
    pub files_deleted: u64,
    pub bytes_deleted: u64,
}

/// Settings of one run.
#[derive(Clone)]
pub struct Options {
    pub grace: Duration,
    /// The dataset's file schema when Delta publishing is on (step 1b); `None` when off.
    pub delta_schema: Option<arrow::datatypes::SchemaRef>,
    pub writer: String,
    pub progress: Arc<dyn Fn(&str) + Send + Sync>,
}

/// Vacuums `dataset` (with its `retention`, if any) at `now`.
pub async fn vacuum_dataset(
    config: &Config,
    dataset: &str,
    retention: Option<Duration>,
    store: Arc<dyn ObjectStore>,
    opts: &Options,
    now: DateTime<Utc>,
) -> Result<Summary, VacuumError> {
    let mut summary = Summary::default();
    let mut job = Job::start(config, dataset, store.clone(), &opts.writer).await?;
    if let Some(retention) = retention {
        let cutoff = now - chrono::Duration::from_std(retention).unwrap_or_default();
        let view = CommittedView::load(store.clone(), &[dataset.to_owned()]).await?;
        // Both lists now, while the view is fresh: it refuses to read hour manifests once
        // it is old, and expiring many hours (retention newly set on an old lake) takes long.
        let dead_letters = view.dead_letter_files(dataset).await?;
        let mut by_hour: BTreeMap<String, Vec<FileRef>> = BTreeMap::new();
        for f in view.committed_files(dataset).await? {
            by_hour
                .entry(ledger::bucket_of(dataset, &f.path))
                .or_default()
                .push(f);
        }
        for (hour, files) in by_hour {
            if crate::compact::hour_end(&hour).is_none_or(|end| end > cutoff) {
                continue;
            }
            let rows: u64 = files.iter().map(|f| f.rows).sum();
            let n = files.len();
            job.replace(files, Vec::new(), Vec::new()).await?;
            summary.hours_expired += 1;
            (opts.progress)(&format!(
                "{dataset} {hour}: expired ({n} files, {rows} rows) past retention {}",
                humantime::format_duration(retention)
            ));
        }
        // Dead letters hold the records' original bytes, unredacted: a file leaves once the
        // newest of its rows was first written longer ago than retention (compaction keeps
        // that time through merges, see `FileRef::newest_written`).
        let modified = crate::maintenance::dead_letters_modified(&store, dataset).await?;
        let mut expired = Vec::new();
        for f in dead_letters {
            match f.newest_written.or_else(|| modified.get(&f.path).copied()) {
                Some(written) if written <= cutoff => expired.push(f),
                Some(_) => {}
                None => {
                    warn!(dataset, file = %f.path, "a dead-letter file the table names is not in storage; kept in the table");
                }
            }
        }
        if !expired.is_empty() {
            let n = expired.len() as u64;
            let rows: u64 = expired.iter().map(|f| f.rows).sum();
            job.replace(expired, Vec::new(), Vec::new()).await?;
            summary.dead_letter_files_expired += n;
            summary.dead_letters_expired += rows;
            (opts.progress)(&format!(
                "{dataset} dead letters: expired ({n} files, {rows} dead letters) written no later than {}, past retention {}",
                cutoff.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                humantime::format_duration(retention)
            ));
        }
    }

    // Intents that outlived their grace: their attempts are settled (the files their entry
    // does not name deleted), so they stop protecting anything below.
    let mut streams = ledger::streams(&store, dataset).await?;
    streams.push(PartitionLedger::maintenance(store.clone(), dataset));
    for stream in &streams {
        let (intents, files) = stream.expire_intents(chrono::Utc::now()).await?;
        if intents > 0 {
            info!(stream = %stream.stream(), intents, files, "removed expired intents");
        }
    }

    // 1b. The Delta table catches up with the ledger (retention's removes included). A
    // maintenance entry after the one published is not acted on below.
    let delta_published: Option<u64> = match &opts.delta_schema {
        Some(schema) => {
            crate::delta::publish_all(&store, dataset, schema).await?;
            // Both tables (data, dead letters) must have let go of a file.
            let app = crate::delta::app_id(
                dataset,
                ledger::MAINTENANCE_TOPIC,
                ledger::MAINTENANCE_PARTITION,
            );
            // As the tables were `grace` ago: a file is deleted only once a Delta reader's
            // snapshot has not named it for the grace, however late it was published (a
            // `weir run` that was down leaves the log behind the ledger).
            let at =
                chrono::Utc::now() - chrono::Duration::from_std(opts.grace).unwrap_or_default();
            let mut published = u64::MAX;
            for table in [crate::delta::Table::Data, crate::delta::Table::DeadLetters] {
                published = published.min(
                    crate::delta::published_version_at(&store, dataset, table, &app, at).await?,
                );
            }
            Some(published)
        }
        None => None,
    };

    // 2. What is in the data folders, with when each file was written.
    let mut listed: Vec<object_store::ObjectMeta> = Vec::new();
    for folder in [dataset.to_owned(), format!("_weir/dead_letter/{dataset}")] {
        listed.extend(crate::maintenance::list_files(&store, &folder).await?);
    }
    // 3. What commits in flight are about to name.
    // Listed again: a stream created since step 2 began may have a commit in flight.
    let mut intended: HashSet<String> = HashSet::new();
    let mut streams = ledger::streams(&store, dataset).await?;
    streams.push(PartitionLedger::maintenance(store.clone(), dataset));
    // A staged stream's, apart: an abandoned backfill's attempts never publish (below).
    let mut staged_intents: HashMap<String, Vec<String>> = HashMap::new();
    for stream in &streams {
        let paths = stream.pending_paths().await?;
        if ledger::is_staged(stream.topic()) {
            staged_intents.insert(stream.topic().to_owned(), paths);
        } else {
            intended.extend(paths);
        }
    }
    // 4. What the table names now, and what was taken out of it, when.
    let view = CommittedView::load(store.clone(), &[dataset.to_owned()]).await?;
    let live: HashSet<String> = view
        .committed_files(dataset)
        .await?
        .into_iter()
        .chain(view.dead_letter_files(dataset).await?)
        .map(|f| f.path)
        .collect();
    let jobs = PartitionLedger::maintenance(store.clone(), dataset);
    let mut removed_at: HashMap<String, DateTime<Utc>> = HashMap::new();
    // `--replace` backfills given up (`weir backfill --abandon`), by id: when.
    let mut abandoned: HashMap<String, DateTime<Utc>> = HashMap::new();
    for (entry, written) in jobs.entries().await? {
        if entry.abandoned
            && let Some(id) = &entry.backfill
        {
            abandoned.insert(id.clone(), written);
        }
        if delta_published.is_some_and(|published| entry.seq > published) {
            // Not in the Delta table yet: its readers still read these files.
            for f in entry.removed {
                intended.insert(f.path);
            }
            continue;
        }
        for f in entry.removed {
            removed_at.insert(f.path, written);
        }
    }
    // The staged files of `--replace` backfills are named by their own streams, which
    // readers skip until a maintenance entry publishes them: kept until that entry (or a
    // later one) takes them out. An abandoned backfill's never enter the table: they go
    // once the grace has passed since it was abandoned (units a shard still committed
    // afterwards included).
    let mut live = live;
    for stream in streams.iter().filter(|s| ledger::is_staged(s.topic())) {
        let (data, dead) = stream.committed_files().await?;
        let id = &stream.topic()[ledger::STAGED_PREFIX.len()..];
        let intents = staged_intents.remove(stream.topic()).unwrap_or_default();
        if let Some(&at) = abandoned.get(id) {
            // The attempt a killed run left in flight included: no run of the id recovers
            // the stream any more.
            for path in data.into_iter().chain(dead).map(|f| f.path).chain(intents) {
                removed_at.entry(path).or_insert(at);
            }
            continue;
        }
        intended.extend(intents);
        live.extend(
            data.into_iter()
                .chain(dead)
                .map(|f| f.path)
                .filter(|p| !removed_at.contains_key(p)),
        );
    }
    // 5. Delete. Grace is measured to now, after this run's own retention entries.
    let now = chrono::Utc::now();
    let grace = chrono::Duration::from_std(opts.grace).unwrap_or_default();
    let mut doomed = Vec::new();
    let mut entries: HashMap<(usize, u64), Option<ledger::Entry>> = HashMap::new();
    for meta in listed {
        let path = meta.location.to_string();
        if live.contains(&path) || intended.contains(&path) {
            continue;
        }
        let since = removed_at.get(&path).copied().unwrap_or(meta.last_modified);
        if now.signed_duration_since(since) < grace {
            continue;
        }
        // A file no replace took out must be one no entry names (a crashed attempt's). Its
        // name says which entry would: read it, rather than trust the view alone.
        if !removed_at.contains_key(&path)
            && let Some((stream, seq)) = named_by_its_entry(&path, &streams, &mut entries).await?
        {
            warn!(dataset, file = %path, stream = %stream, seq, "kept a file the table's view missed although its entry names it; run vacuum again");
            continue;
        }
        doomed.push(meta);
    }
    for meta in doomed {
        let path = meta.location.clone();
        retry("vacuum delete", 8, || {
            let store = store.clone();
            let path = path.clone();
            async move {
                match store.delete(&path).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                    Err(e) => Err(e),
                }
            }
        })
        .await?;
        summary.files_deleted += 1;
        summary.bytes_deleted += meta.size;
    }
    if summary.files_deleted > 0 {
        info!(
            dataset,
            files = summary.files_deleted,
            bytes = summary.bytes_deleted,
            "deleted files the table no longer names"
        );
        (opts.progress)(&format!(
            "{dataset}: deleted {} files ({} bytes) no entry names",
            summary.files_deleted, summary.bytes_deleted
        ));
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;

    /// The check vacuum makes before deleting a file no replace took out: the entry the
    /// file's name points to is read, and a file it names is kept whatever the view said.
    #[tokio::test]
    async fn a_file_its_entry_names_is_found_by_its_name() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let p0 = PartitionLedger::new(store.clone(), "ds", "cf.http", 0);
        let streams = vec![
            p0.clone(),
            PartitionLedger::maintenance(store.clone(), "ds"),
        ];
        let hour = "ds/date=2026-11-22/hour=05";
        let committed = format!(
            "{hour}/{}",
            crate::sink::parquet::file_name("cf.http", 0, 0, 1, 1)
        );
        let dead = format!(
            "_weir/dead_letter/ds/{}",
            crate::sink::parquet::file_name("cf.http", 0, 0, 1, 1)
        );
        // An attempt of the same sequence number that lost (another epoch): never named.
        let lost = format!(
            "{hour}/{}",
            crate::sink::parquet::file_name("cf.http", 0, 0, 1, 2)
        );
        // A sequence number no entry has yet: a crashed attempt's.
        let crashed = format!(
            "{hour}/{}",
            crate::sink::parquet::file_name("cf.http", 0, 9, 2, 1)
        );
        let file = |path: &str| ledger::FileRef {
            path: path.to_owned(),
            rows: 1,
            bytes: 1,
            newest_written: None,
            offsets: None,
        };
        let entry = ledger::Entry {
            version: ledger::LEDGER_VERSION,
            seq: 1,
            epoch: 1,
            writer: "w".into(),
            dataset: "ds".into(),
            topic: "cf.http".into(),
            partition: 0,
            start_offset: 0,
            next_offset: 9,
            records: 9,
            rows: 1,
            dead_lettered: 1,
            skipped_offsets: 0,
            holes: 0,
            offset_resets: 0,
            files: vec![file(&committed)],
            dead_letters: vec![file(&dead)],
            removed: Vec::new(),
            operator_state: Vec::new(),
            config_hash: "h".into(),
            weir_version: "test".into(),
            takeover: false,
            units: Vec::new(),
            backfill: None,
            abandoned: false,
            event_time: None,
        };
        p0.commit(&entry).await.unwrap();
        let mut read = HashMap::new();
        for (path, named) in [
            (&committed, true),
            (&dead, true),
            (&lost, false),
            (&crashed, false),
        ] {
            let found = named_by_its_entry(path, &streams, &mut read).await.unwrap();
            assert_eq!(found.is_some(), named, "{path}");
        }
        assert_eq!(
            named_by_its_entry(&committed, &streams, &mut read)
                .await
                .unwrap()
                .map(|(_, seq)| seq),
            Some(1)
        );
        // One read per entry, whatever the number of files.
        assert_eq!(read.len(), 2);
    }

    #[test]
    fn file_names_say_which_entry_would_name_them() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let streams = vec![
            PartitionLedger::new(store.clone(), "ds", "cf.http", 3),
            PartitionLedger::new(store.clone(), "ds", "cf/other", 0),
            PartitionLedger::new(store.clone(), "ds", "@backfill.b-1", 2),
            PartitionLedger::maintenance(store.clone(), "ds"),
        ];
        let hour = "ds/date=2026-11-22/hour=05";
        let partition = crate::sink::parquet::file_name("cf.http", 3, 42, 7, 2);
        assert_eq!(
            naming_entry(&format!("{hour}/{partition}"), &streams),
            Some((0, 7))
        );
        // Dead letters carry the data file's name.
        assert_eq!(
            naming_entry(&format!("_weir/dead_letter/ds/{partition}"), &streams),
            Some((0, 7))
        );
        // A topic with characters file names replace.
        let other = crate::sink::parquet::file_name("cf/other", 0, 0, 12, 1);
        assert_eq!(
            naming_entry(&format!("{hour}/{other}"), &streams),
            Some((1, 12))
        );
        let unit = crate::backfill::unit_file_name("backfill.b-1", 2, 4, 1);
        assert_eq!(
            naming_entry(&format!("{hour}/{unit}"), &streams),
            Some((2, 4))
        );
        assert_eq!(
            naming_entry(
                &format!("{hour}/compact-0000000009-e000003-0001.parquet"),
                &streams
            ),
            Some((3, 9))
        );
        // Kafka topics that look like other kinds of file.
        let tricky = vec![
            PartitionLedger::new(store.clone(), "ds", "compact-7", 0),
            PartitionLedger::new(store.clone(), "ds", "backfill.x", 2),
            PartitionLedger::new(store.clone(), "ds", "@backfill.x", 2),
            PartitionLedger::maintenance(store.clone(), "ds"),
        ];
        let file = crate::sink::parquet::file_name("compact-7", 0, 5, 3, 1);
        assert_eq!(
            naming_entry(&format!("{hour}/{file}"), &tricky),
            Some((0, 3))
        );
        let file = crate::sink::parquet::file_name("backfill.x", 2, 5, 3, 1);
        assert_eq!(
            naming_entry(&format!("{hour}/{file}"), &tricky),
            Some((1, 3))
        );
        let unit = crate::backfill::unit_file_name("backfill.x", 2, 8, 1);
        assert_eq!(
            naming_entry(&format!("{hour}/{unit}"), &tricky),
            Some((2, 8))
        );
        // Not Weir's, or of a stream it does not know: no entry to ask.
        for other in [
            format!("{hour}/part-0.parquet"),
            format!(
                "{hour}/{}",
                crate::sink::parquet::file_name("cf.http", 4, 42, 7, 2)
            ),
            format!("{hour}/notes.txt"),
        ] {
            assert_eq!(naming_entry(&other, &streams), None, "{other}");
        }
    }
}
