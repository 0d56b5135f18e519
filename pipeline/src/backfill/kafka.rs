//! The Kafka source of `weir backfill`: the records that produced the hours, found from the
//! ledger and read again from the dataset's topic.
//!
//! Every data file of an hour in the range leads back to the ledger entries whose records
//! it holds ([`Origins`]): a partition's file to its entry (file names carry the stream
//! and sequence number), a compacted file to the files its replace entry removed, a
//! backfill's file to the units its entry names. A unit is one such entry's offset range,
//! `<topic>@<partition>:<start>-<end>`. Before anything is written, every range must still
//! be on the broker; otherwise the backfill stops naming the hours and offsets it cannot
//! re-derive.
//!
//! Records the dataset's dead letters already hold are left there and not read again into
//! the table. A record that had a row but no longer decodes (a stricter config) goes to the
//! dead letters when every hour its entry wrote is in the range; otherwise the backfill
//! stops, as it cannot tell whether the record's row is in a file it replaces.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use object_store::ObjectStore;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use super::{BackfillError, SourceRecord, Unit, UnitSource};
use crate::config::Config;
use crate::ledger::{self, BACKFILL_PREFIX, Entry, PartitionLedger, STAGED_PREFIX};
use crate::runtime::DatasetRuntime;

/// The units of `[from, to)`: the offset ranges whose records the hours' files hold.
pub async fn plan(
    store: &Arc<dyn ObjectStore>,
    ds: &DatasetRuntime,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<Unit>, BackfillError> {
    let mut origins = Origins::new(store.clone(), &ds.name);
    // Every hour's files first (through views loaded again as they age), then where each
    // came from.
    let files = super::files_of_hours(store, &ds.name, super::hours(from, to)).await?;
    let mut hours_of: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (hour, files) in files {
        for f in files {
            for unit in origins.of(&f.path).await? {
                hours_of.entry(unit).or_default().insert(hour.clone());
            }
        }
    }
    let range: BTreeSet<String> = super::hours(from, to).into_iter().collect();
    let mut units = Vec::with_capacity(hours_of.len());
    // Each partition's count of offset resets now (its ledger tail).
    let mut resets_now: HashMap<(String, i32), u64> = HashMap::new();
    let mut before_reset: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    // Rows placed in hours by another event-time rule: rule → their hours.
    let rule = ds.resolved.schema.event_time_rule();
    let mut other_rule: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (name, hours) in hours_of {
        let Some(entry) = origins.entry_of_unit(&name).await? else {
            return Err(BackfillError::Invalid(format!(
                "{} holds rows a backfill imported from {name}: they cannot be re-derived from kafka (backfill those hours from the archive)",
                hours.into_iter().collect::<Vec<_>>().join(", ")
            )));
        };
        let key = (entry.topic.clone(), entry.partition);
        let now = match resets_now.get(&key) {
            Some(&n) => n,
            None => {
                let tail = PartitionLedger::new(store.clone(), &ds.name, &key.0, key.1)
                    .tail()
                    .await?;
                let n = tail.last.map_or(0, |e| e.offset_resets);
                resets_now.insert(key.clone(), n);
                n
            }
        };
        if let Some(theirs) = &entry.event_time
            && *theirs != rule
        {
            other_rule
                .entry(theirs.clone())
                .or_default()
                .extend(hours.iter().cloned());
            continue;
        }
        if entry.offset_resets < now {
            // Read before the partition's offsets went back: the broker's records at
            // those offsets are others now.
            before_reset
                .entry(format!("{}/{}", key.0, key.1))
                .or_default()
                .extend(hours.iter().cloned());
            continue;
        }
        units.push(Unit {
            name: name.clone(),
            bytes: 0,
            what: UnitSource::Offsets {
                topic: entry.topic.clone(),
                partition: entry.partition,
                // Offsets of a recorded gap at the start were never read.
                start: entry.start_offset + entry.skipped_offsets as i64,
                end: entry.next_offset,
                records: entry.records,
                hours: hours.into_iter().collect(),
                outside_hours: Some(outside(&entry, &range)),
                resets: entry.offset_resets,
            },
        });
    }
    if let Some((theirs, hours)) = other_rule.into_iter().next() {
        return Err(BackfillError::Invalid(format!(
            "{} hold rows placed in hours by the event time \"{theirs}\", and the dataset's schema now says \"{rule}\": re-derived from kafka, a record could land in another hour than the row it replaces, and be lost or doubled; back-fill these hours from an archive, or with the schema they were written with",
            hours.into_iter().collect::<Vec<_>>().join(", ")
        )));
    }
    if !before_reset.is_empty() {
        let detail: Vec<String> = before_reset
            .into_iter()
            .map(|(partition, hours)| {
                format!(
                    "{} (from {partition})",
                    hours.into_iter().collect::<Vec<_>>().join(", ")
                )
            })
            .collect();
        return Err(BackfillError::Invalid(format!(
            "{} hold rows read before the partition's offsets went back (topic recreated or offsets reset): the broker's records at those offsets are others now, so these hours cannot be re-derived from kafka (back-fill them from an archive)",
            detail.join("; ")
        )));
    }
    Ok(units)
}

/// Refuses units read before their partition's offsets last went back, checked again when a
/// recorded plan is run (the topic may have been recreated since it was planned): their
/// offsets name other records now.
pub async fn check_resets(
    store: &Arc<dyn ObjectStore>,
    dataset: &str,
    units: &[&Unit],
) -> Result<(), BackfillError> {
    let mut now: HashMap<(&str, i32), u64> = HashMap::new();
    for unit in units {
        let UnitSource::Offsets {
            topic,
            partition,
            resets,
            ..
        } = &unit.what
        else {
            continue;
        };
        let count = match now.get(&(topic.as_str(), *partition)) {
            Some(&n) => n,
            None => {
                let tail = PartitionLedger::new(store.clone(), dataset, topic, *partition)
                    .tail()
                    .await?;
                let n = tail.last.map_or(0, |e| e.offset_resets);
                now.insert((topic.as_str(), *partition), n);
                n
            }
        };
        if *resets < count {
            return Err(BackfillError::Invalid(format!(
                "unit {} was read before {topic}/{partition}'s offsets went back (topic recreated or offsets reset since the backfill was planned): the broker's records at those offsets are others now; nothing more is written (back-fill these hours from an archive)",
                unit.name
            )));
        }
    }
    Ok(())
}

/// The hours (`date=…/hour=…`, the ledger's buckets) `entry` wrote rows to that are not in
/// `range`.
fn outside(entry: &Entry, range: &BTreeSet<String>) -> Vec<String> {
    let hours: BTreeSet<String> = entry
        .files
        .iter()
        .map(|f| ledger::bucket_of(&entry.dataset, &f.path))
        .collect();
    hours.into_iter().filter(|h| !range.contains(h)).collect()
}

/// The unit of a partition's entry: `<topic>@<partition>/<seq>:<start>-<end>` (the
/// sequence number keeps ranges apart when a recreated topic reuses offsets).
pub fn unit_name(entry: &Entry) -> String {
    format!(
        "{}@{}/{}:{}-{}",
        entry.topic, entry.partition, entry.seq, entry.start_offset, entry.next_offset
    )
}

/// Which source units a committed file's rows came from.
pub struct Origins {
    store: Arc<dyn ObjectStore>,
    dataset: String,
    entries: HashMap<(String, i32, u64), Entry>,
    /// Partition entries by the unit name they stand for.
    units: HashMap<String, Entry>,
}

impl Origins {
    pub fn new(store: Arc<dyn ObjectStore>, dataset: &str) -> Origins {
        Origins {
            store,
            dataset: dataset.to_owned(),
            entries: HashMap::new(),
            units: HashMap::new(),
        }
    }

    async fn entry(
        &mut self,
        topic: &str,
        partition: i32,
        seq: u64,
    ) -> Result<Entry, BackfillError> {
        let key = (topic.to_owned(), partition, seq);
        if let Some(e) = self.entries.get(&key) {
            return Ok(e.clone());
        }
        let stream = if topic == ledger::MAINTENANCE_TOPIC {
            PartitionLedger::maintenance(self.store.clone(), &self.dataset)
        } else {
            PartitionLedger::new(self.store.clone(), &self.dataset, topic, partition)
        };
        let entry = stream.read_entry(seq).await?.ok_or_else(|| {
            BackfillError::Invalid(format!(
                "ledger entry {seq} of {} is missing, yet a committed file names it",
                stream.stream()
            ))
        })?;
        self.entries.insert(key, entry.clone());
        Ok(entry)
    }

    /// The partition entry a unit name (from [`Origins::of`]) stands for; `None` for the
    /// units of archive imports.
    pub async fn entry_of_unit(&mut self, unit: &str) -> Result<Option<Entry>, BackfillError> {
        if let Some(e) = self.units.get(unit) {
            return Ok(Some(e.clone()));
        }
        // `<topic>@<partition>/<seq>:<start>-<end>`, named by an earlier backfill's entry.
        let parsed = unit.rsplit_once('@').and_then(|(topic, rest)| {
            let (partition, rest) = rest.split_once('/')?;
            let (seq, _) = rest.split_once(':')?;
            Some((
                topic,
                partition.parse::<i32>().ok()?,
                seq.parse::<u64>().ok()?,
            ))
        });
        let Some((topic, partition, seq)) = parsed else {
            return Ok(None);
        };
        let entry = self.entry(topic, partition, seq).await?;
        if unit_name(&entry) != unit {
            return Ok(None);
        }
        Ok(Some(entry))
    }

    /// The units whose rows the file at `path` (relative to the lake root) holds: the
    /// name says which entry wrote it (a partition's, a backfill's or a maintenance
    /// entry's), and that entry says where its rows came from.
    pub async fn of(&mut self, path: &str) -> Result<Vec<String>, BackfillError> {
        let mut out = Vec::new();
        let mut todo = vec![path.to_owned()];
        while let Some(path) = todo.pop() {
            let file = path.rsplit('/').next().unwrap_or(&path);
            let stem = file
                .strip_suffix(".parquet")
                .ok_or_else(|| unknown(&path))?;
            match parse_name(stem) {
                Some(Name::Partition {
                    topic,
                    partition,
                    seq,
                }) => {
                    let entry = self.entry(topic, partition, seq).await?;
                    let unit = unit_name(&entry);
                    self.units.insert(unit.clone(), entry);
                    out.push(unit);
                }
                Some(Name::Backfill { prefix, shard, seq }) => {
                    let entry = self.entry(&format!("@{prefix}"), shard, seq).await?;
                    out.extend(entry.units);
                }
                Some(Name::Compacted { seq }) => {
                    let entry = self
                        .entry(
                            ledger::MAINTENANCE_TOPIC,
                            ledger::MAINTENANCE_PARTITION,
                            seq,
                        )
                        .await?;
                    todo.extend(entry.removed.into_iter().map(|f| f.path));
                }
                None => return Err(unknown(&path)),
            }
        }
        out.sort();
        out.dedup();
        Ok(out)
    }
}

/// Which writer a data file's name says wrote it.
#[derive(Debug, PartialEq, Eq)]
enum Name<'a> {
    /// `<topic>-<partition:5>-<first offset:20>-<seq:10>-e<epoch:6>` (`file_name`).
    Partition {
        topic: &'a str,
        partition: i32,
        seq: u64,
    },
    /// `<backfill.id|staged.id>-<shard:5>-<seq:10>-e<epoch:6>` ([`super::unit_file_name`]).
    Backfill {
        prefix: &'a str,
        shard: i32,
        seq: u64,
    },
    /// `compact-<seq>-e<epoch>-<n>` (`compact::output_name`).
    Compacted { seq: u64 },
}

fn digits(s: &str, width: usize) -> bool {
    s.len() == width && s.bytes().all(|b| b.is_ascii_digit())
}

fn all_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

fn parse_name(stem: &str) -> Option<Name<'_>> {
    // Partition files first: five parts of fixed widths, whatever the topic.
    let parts: Vec<&str> = stem.rsplitn(5, '-').collect();
    if let [epoch, seq, first, partition, topic] = parts.as_slice()
        && epoch.strip_prefix('e').is_some_and(|e| digits(e, 6))
        && digits(seq, 10)
        && digits(first, 20)
        && digits(partition, 5)
    {
        return Some(Name::Partition {
            topic,
            partition: partition.parse().ok()?,
            seq: seq.parse().ok()?,
        });
    }
    let parts: Vec<&str> = stem.rsplitn(4, '-').collect();
    if let [epoch, seq, shard, prefix] = parts.as_slice()
        && epoch.strip_prefix('e').is_some_and(|e| digits(e, 6))
        && digits(seq, 10)
        && digits(shard, 5)
        && (prefix.starts_with(&BACKFILL_PREFIX[1..]) || prefix.starts_with(&STAGED_PREFIX[1..]))
    {
        return Some(Name::Backfill {
            prefix,
            shard: shard.parse().ok()?,
            seq: seq.parse().ok()?,
        });
    }
    let rest = stem.strip_prefix("compact-")?;
    let parts: Vec<&str> = rest.split('-').collect();
    if let [seq, epoch, n] = parts.as_slice()
        && all_digits(seq)
        && epoch.strip_prefix('e').is_some_and(all_digits)
        && all_digits(n)
    {
        return Some(Name::Compacted {
            seq: seq.parse().ok()?,
        });
    }
    None
}

fn unknown(path: &str) -> BackfillError {
    BackfillError::Invalid(format!(
        "cannot tell which ledger entry wrote {path} from its name"
    ))
}

fn consumer(config: &Config) -> Result<BaseConsumer, BackfillError> {
    let mut client = crate::source::kafka::client_config(&config.kafka, 64 * 1024);
    // Reads by assignment only: never joins the service's group or commits offsets.
    client.set("group.id", format!("{}-backfill", config.kafka.group_id));
    // A range whose start is gone must fail, never continue from wherever the log starts.
    client.set("auto.offset.reset", "error");
    client
        .create()
        .map_err(|e| BackfillError::Invalid(format!("kafka: creating the consumer: {e}")))
}

/// Stops (before anything is written) when a range is no longer on the broker, naming
/// the hours and offsets that cannot be re-derived.
pub async fn check_retained(config: &Config, units: &[&Unit]) -> Result<(), BackfillError> {
    let ranges: Vec<(String, i32, i64, i64, Vec<String>)> = units
        .iter()
        .filter_map(|u| match &u.what {
            UnitSource::Offsets {
                topic,
                partition,
                start,
                end,
                hours,
                ..
            } => Some((topic.clone(), *partition, *start, *end, hours.clone())),
            UnitSource::File(_) => None,
        })
        .collect();
    if ranges.is_empty() {
        return Ok(());
    }
    let config = config.clone();
    tokio::task::spawn_blocking(move || {
        let consumer = consumer(&config)?;
        let mut low: HashMap<(String, i32), i64> = HashMap::new();
        let mut missing = Vec::new();
        for (topic, partition, start, end, hours) in &ranges {
            let key = (topic.clone(), *partition);
            let earliest = match low.get(&key) {
                Some(l) => *l,
                None => {
                    let (l, _) = consumer
                        .fetch_watermarks(topic, *partition, Duration::from_secs(30))
                        .map_err(|e| {
                            BackfillError::Invalid(format!(
                                "kafka: watermarks of {topic}/{partition}: {e}"
                            ))
                        })?;
                    low.insert(key, l);
                    l
                }
            };
            if *start < earliest {
                missing.push(format!(
                    "  {}: {topic}/{partition} offsets {start}..{} (earliest retained {earliest})",
                    hours.join(", "),
                    (*end).min(earliest)
                ));
            }
        }
        if missing.is_empty() {
            Ok(())
        } else {
            Err(BackfillError::NotRetained(missing.join("\n")))
        }
    })
    .await
    .map_err(|e| BackfillError::Invalid(format!("kafka: {e}")))?
}

/// Reads offset ranges.
pub struct Reader {
    consumer: BaseConsumer,
}

impl Reader {
    pub fn new(config: &Config) -> Result<Reader, BackfillError> {
        Ok(Reader {
            consumer: consumer(config)?,
        })
    }

    /// Hands every record of the unit's range to `push`. Blocking: run on a blocking thread.
    pub fn read(
        &self,
        unit: &Unit,
        push: &mut dyn FnMut(SourceRecord) -> Result<(), BackfillError>,
    ) -> Result<(), BackfillError> {
        let UnitSource::Offsets {
            topic,
            partition,
            start,
            end,
            ..
        } = &unit.what
        else {
            return Ok(());
        };
        if start >= end {
            return Ok(());
        }
        let fail = |reason: String| BackfillError::Source {
            unit: unit.name.clone(),
            reason,
        };
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, *partition, Offset::Offset(*start))
            .map_err(|e| fail(e.to_string()))?;
        self.consumer
            .assign(&tpl)
            .map_err(|e| fail(format!("assign: {e}")))?;
        let stall = Duration::from_secs(60);
        let mut last = Instant::now();
        // The next offset this range still needs.
        let mut next = *start;
        loop {
            match self.consumer.poll(Duration::from_millis(500)) {
                Some(Ok(m)) => {
                    last = Instant::now();
                    // Only this assignment's records (a fetch of an earlier one is dropped by
                    // the client on reassignment; this guards the range anyway).
                    if m.topic() != topic || m.partition() != *partition || m.offset() < next {
                        continue;
                    }
                    if m.offset() >= *end {
                        break;
                    }
                    next = m.offset() + 1;
                    push(SourceRecord {
                        origin: topic.clone(),
                        partition: *partition,
                        offset: m.offset(),
                        timestamp: m.timestamp().to_millis(),
                        payload: m.payload().unwrap_or_default().to_vec(),
                    })?;
                    if m.offset() + 1 >= *end {
                        break;
                    }
                }
                Some(Err(e)) => {
                    if last.elapsed() > stall {
                        return Err(fail(format!("kafka: {e}")));
                    }
                }
                None => {
                    // Offsets at the end of the range without a record (transaction
                    // markers, compaction) never arrive: the range is done once nothing
                    // is left below the high watermark.
                    if last.elapsed() > Duration::from_secs(5)
                        && let Ok((_, high)) = self.consumer.fetch_watermarks(
                            topic,
                            *partition,
                            Duration::from_secs(10),
                        )
                        && next >= high.min(*end)
                    {
                        break;
                    }
                    if last.elapsed() > stall {
                        return Err(fail(format!(
                            "no record for {}s before offset {end}",
                            stall.as_secs()
                        )));
                    }
                }
            }
        }
        let _ = self.consumer.unassign();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_say_which_entry_wrote_them() {
        use crate::sink::parquet::file_name;
        let p = file_name("cf.http_requests", 3, 120, 7, 2);
        assert_eq!(
            parse_name(p.strip_suffix(".parquet").unwrap()),
            Some(Name::Partition {
                topic: "cf.http_requests",
                partition: 3,
                seq: 7
            })
        );
        // A topic that looks like the other kinds is still a partition's.
        for topic in ["compact-7", "backfill.x", "staged.y-00001"] {
            let p = file_name(topic, 0, 0, 1, 1);
            assert!(
                matches!(parse_name(p.strip_suffix(".parquet").unwrap()), Some(Name::Partition { topic: t, .. }) if t == topic),
                "{p}"
            );
        }
        let b = super::super::unit_file_name("backfill.nightly-2026-12-04", 2, 9, 3);
        assert_eq!(
            parse_name(b.strip_suffix(".parquet").unwrap()),
            Some(Name::Backfill {
                prefix: "backfill.nightly-2026-12-04",
                shard: 2,
                seq: 9
            })
        );
        let c = crate::compact::output_name(12, 3, 0);
        assert_eq!(
            parse_name(c.strip_suffix(".parquet").unwrap()),
            Some(Name::Compacted { seq: 12 })
        );
        assert_eq!(parse_name("something-else"), None);
    }
}
