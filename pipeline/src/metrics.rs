//! Process metrics on a `prometheus-client` registry, and the endpoint that serves them
//! (`server`): `GET /metrics`, `GET /healthz` (readiness), `GET /livez` (liveness).
//!
//! ```text
//!  workers, source, reloader ──▶ typed counters / histograms (updated in place)
//!  workers ──▶ Partitions (per held partition) ─┐
//!  operators' own counters ──▶ OperatorCounters ├─▶ derived at each scrape ──▶ /metrics
//!  lag poller ──▶ Partitions (watermarks)      ─┘
//! ```
//!
//! Every metric has a `# HELP`. Names and labels are a contract with dashboards and alert
//! rules (`k8s/components/monitoring`, `deploy/dashboards`): the README's metrics table
//! lists them all. `/metrics` answers OpenMetrics text to clients that ask for it
//! (Prometheus does) and the Prometheus text format 0.0.4 otherwise.

pub mod partitions;
pub mod server;

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

pub use partitions::{PartitionView, Partitions, Stalled};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DatasetLabels {
    pub dataset: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StageLabels {
    pub dataset: String,
    pub stage: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PartitionLabels {
    pub dataset: String,
    pub topic: String,
    pub partition: i32,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TopicPartitionLabels {
    topic: String,
    partition: i32,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabels {
    version: String,
}

/// A stage of a batch, timed by `weir_batch_seconds`.
#[derive(Debug, Clone, Copy)]
pub enum BatchStage {
    Decode,
    Operators,
    Write,
}

impl BatchStage {
    fn as_str(self) -> &'static str {
        match self {
            BatchStage::Decode => "decode",
            BatchStage::Operators => "operators",
            BatchStage::Write => "write",
        }
    }
}

type HistogramFamily<S> = Family<S, Histogram, fn() -> Histogram>;

/// Commits and uploads: 10 ms to about 80 s.
fn slow_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.01, 2.0, 14))
}

/// Batch stages: 100 µs to about 3 s.
fn fast_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 2.0, 15))
}

/// Process-wide metrics. Counters and histograms are updated where the work happens;
/// per-partition gauges come from [`Partitions`] at each scrape.
pub struct Metrics {
    registry: Registry,
    pub kafka_errors: Counter,
    pub store_errors: Counter,
    pub commit_conflicts: Counter,
    store_healthy: Gauge,
    pub records: Family<DatasetLabels, Counter>,
    pub rows: Family<DatasetLabels, Counter>,
    pub dead_letters: Family<StageLabels, Counter>,
    pub commits: Family<DatasetLabels, Counter>,
    pub bytes_written: Family<DatasetLabels, Counter>,
    pub orphans_removed: Family<DatasetLabels, Counter>,
    pub skipped_offsets: Family<PartitionLabels, Counter>,
    pub offset_resets: Family<PartitionLabels, Counter>,
    pub reference_reloads: Family<OutcomeLabels, Counter>,
    pub commit_duration: HistogramFamily<DatasetLabels>,
    delta_lag: Family<DatasetLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    pub upload_duration: HistogramFamily<DatasetLabels>,
    batch_seconds: HistogramFamily<StageLabels>,
    /// What the operators counted, exported under their own names.
    pub operators: std::sync::Arc<OperatorCounters>,
    /// The partitions this process holds.
    pub partitions: std::sync::Arc<Partitions>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("weir");
        let m = Metrics {
            kafka_errors: Counter::default(),
            store_errors: Counter::default(),
            commit_conflicts: Counter::default(),
            store_healthy: Gauge::default(),
            records: Family::default(),
            rows: Family::default(),
            dead_letters: Family::default(),
            commits: Family::default(),
            bytes_written: Family::default(),
            orphans_removed: Family::default(),
            skipped_offsets: Family::default(),
            offset_resets: Family::default(),
            reference_reloads: Family::default(),
            commit_duration: Family::new_with_constructor(slow_buckets),
            delta_lag: Family::default(),
            upload_duration: Family::new_with_constructor(slow_buckets),
            batch_seconds: Family::new_with_constructor(fast_buckets),
            operators: Default::default(),
            partitions: Default::default(),
            registry: Registry::default(),
        };
        // Counter names are registered without `_total`: the encoder appends it.
        registry.register(
            "kafka_errors",
            "Errors reported by the Kafka client (connection, authentication, fetch)",
            m.kafka_errors.clone(),
        );
        registry.register(
            "store_errors",
            "Object-store calls that failed after the client's own retries",
            m.store_errors.clone(),
        );
        registry.register(
            "commit_conflicts",
            "Ledger entries lost to another writer of the same partition (a fenced zombie)",
            m.commit_conflicts.clone(),
        );
        registry.register(
            "records",
            "Kafka records read and decoded (replays after a crash or rebalance count again)",
            m.records.clone(),
        );
        registry.register(
            "rows",
            "Rows written to Parquet after the operator chain",
            m.rows.clone(),
        );
        registry.register(
            "dead_letters",
            "Records sent to the dead letters, by the stage that refused them",
            m.dead_letters.clone(),
        );
        registry.register("commits", "Ledger entries committed", m.commits.clone());
        registry.register(
            "bytes_written",
            "Bytes of data and dead-letter files committed",
            m.bytes_written.clone(),
        );
        registry.register(
            "orphans_removed",
            "Files of unfinished commits removed during partition recovery",
            m.orphans_removed.clone(),
        );
        registry.register(
            "skipped_offsets",
            "Offsets deleted by the broker before they were read, recorded in the ledger",
            m.skipped_offsets.clone(),
        );
        registry.register(
            "offset_resets",
            "Times a partition's offsets went back below the ledger's position",
            m.offset_resets.clone(),
        );
        registry.register(
            "reference_reloads",
            "Reloads of changed reference data (outcome ok: swapped in; refused: unreadable or invalid, the loaded version stays)",
            m.reference_reloads.clone(),
        );
        registry.register(
            "store_healthy",
            "1 while object-store calls succeed, 0 after one failed until one succeeds (/healthz)",
            m.store_healthy.clone(),
        );
        registry.register(
            "delta_lag_seconds",
            "At the dataset's last Delta publish, the age of the oldest ledger entry it published (0 when there was nothing new)",
            m.delta_lag.clone(),
        );
        registry.register(
            "commit_duration_seconds",
            "Time from closing a commit's files to its ledger entry, retries included",
            m.commit_duration.clone(),
        );
        registry.register(
            "upload_duration_seconds",
            "Time to upload a commit's intent and files to the object store",
            m.upload_duration.clone(),
        );
        registry.register(
            "batch_seconds",
            "Time a batch spends in each stage (decode, operators, write to the open Parquet files)",
            m.batch_seconds.clone(),
        );
        registry.register(
            "build",
            "The running weir's version",
            Info::new(VersionLabels {
                version: env!("CARGO_PKG_VERSION").to_owned(),
            }),
        );
        registry.register_collector(Box::new(PartitionCollector(m.partitions.clone())));
        registry.register_collector(Box::new(m.operators.clone()));
        Metrics { registry, ..m }
    }

    pub fn set_delta_lag(&self, dataset: &str, seconds: f64) {
        self.delta_lag
            .get_or_create(&DatasetLabels {
                dataset: dataset.to_owned(),
            })
            .set(seconds);
    }

    pub fn set_store_healthy(&self, ok: bool) {
        self.store_healthy.set(i64::from(ok));
    }

    pub fn store_healthy(&self) -> bool {
        self.store_healthy.get() == 1
    }

    pub fn count(&self, family: &Family<DatasetLabels, Counter>, dataset: &str, n: u64) {
        family
            .get_or_create(&DatasetLabels {
                dataset: dataset.to_owned(),
            })
            .inc_by(n);
    }

    pub fn dead_lettered(&self, dataset: &str, stage: &str, n: u64) {
        self.dead_letters
            .get_or_create(&StageLabels {
                dataset: dataset.to_owned(),
                stage: stage.to_owned(),
            })
            .inc_by(n);
    }

    pub fn partition(
        &self,
        family: &Family<PartitionLabels, Counter>,
        dataset: &str,
        topic: &str,
        partition: i32,
        n: u64,
    ) {
        family
            .get_or_create(&PartitionLabels {
                dataset: dataset.to_owned(),
                topic: topic.to_owned(),
                partition,
            })
            .inc_by(n);
    }

    pub fn reference_reload(&self, ok: bool) {
        self.reference_reloads
            .get_or_create(&OutcomeLabels {
                outcome: if ok { "ok" } else { "refused" }.to_owned(),
            })
            .inc();
    }

    pub fn observe(family: &HistogramFamily<DatasetLabels>, dataset: &str, took: Duration) {
        family
            .get_or_create(&DatasetLabels {
                dataset: dataset.to_owned(),
            })
            .observe(took.as_secs_f64());
    }

    pub fn batch_stage(&self, dataset: &str, stage: BatchStage, took: Duration) {
        self.batch_seconds
            .get_or_create(&StageLabels {
                dataset: dataset.to_owned(),
                stage: stage.as_str().to_owned(),
            })
            .observe(took.as_secs_f64());
    }

    /// The exposition: OpenMetrics text when `openmetrics`, else Prometheus text 0.0.4.
    pub fn render(&self, openmetrics: bool) -> String {
        let mut out = String::new();
        let res = if openmetrics {
            prometheus_client::encoding::text::encode(&mut out, &self.registry)
        } else {
            prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
        };
        res.expect("writing to a string cannot fail");
        out
    }
}

/// Per-partition gauges from [`Partitions`], at scrape time.
#[derive(Debug)]
struct PartitionCollector(std::sync::Arc<Partitions>);

impl Collector for PartitionCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let views = self.0.views();
        let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX);
        ConstGauge::new(views.len() as i64).encode(encoder.encode_descriptor(
            "assigned_partitions",
            "Kafka partitions this process holds",
            None,
            MetricType::Gauge,
        )?)?;
        let mut family = encoder.encode_descriptor(
            "committed_offset",
            "The ledger's position of each held partition (next offset to commit)",
            None,
            MetricType::Gauge,
        )?;
        for v in &views {
            if let Some(position) = v.position {
                let labels = TopicPartitionLabels {
                    topic: v.topic.clone(),
                    partition: v.partition,
                };
                ConstGauge::new(position).encode(family.encode_family(&labels)?)?;
            }
        }
        let mut family = encoder.encode_descriptor(
            "consumer_lag",
            "Records between the broker's high watermark (polled every few seconds) and the ledger's position, per held partition",
            None,
            MetricType::Gauge,
        )?;
        for v in &views {
            if let Some(lag) = v.lag {
                let labels = PartitionLabels {
                    dataset: v.dataset.clone(),
                    topic: v.topic.clone(),
                    partition: v.partition,
                };
                ConstGauge::new(lag).encode(family.encode_family(&labels)?)?;
            }
        }
        let mut newest: BTreeMap<&str, i64> = BTreeMap::new();
        for v in &views {
            if let Some(t) = v.newest_event_time {
                let e = newest.entry(v.dataset.as_str()).or_insert(t);
                *e = (*e).max(t);
            }
        }
        let mut family = encoder.encode_descriptor(
            "freshness_seconds",
            "Now minus the newest event time committed by this process for the dataset's held partitions",
            None,
            MetricType::Gauge,
        )?;
        for (dataset, t) in newest {
            let age = (now.saturating_sub(t)).max(0) as f64 / 1e9;
            let labels = DatasetLabels {
                dataset: dataset.to_owned(),
            };
            ConstGauge::new(age).encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

/// One operator counter's value by label set.
type OperatorSeries = BTreeMap<Vec<(String, String)>, u64>;

/// The operators' own counters (redaction hits, sampling decisions, enrichment caches),
/// summed over this process's workers, under the names the operators give them.
#[derive(Debug, Default)]
pub struct OperatorCounters {
    /// name (with `_total`) -> labels -> value
    values: Mutex<BTreeMap<String, OperatorSeries>>,
}

impl OperatorCounters {
    pub fn add(&self, name: &str, labels: Vec<(String, String)>, n: u64) {
        let mut values = self.values.lock().expect("operator counters lock");
        *values
            .entry(name.to_owned())
            .or_default()
            .entry(labels)
            .or_default() += n;
    }
}

/// `# HELP` of the operators' counters; a name not listed gets a generic one.
fn operator_help(name: &str) -> &'static str {
    match name {
        "redact_hits_total" => "Values redacted, by rule, field and mode (enforce or shadow)",
        "redact_strings_total" => "String values the redactor looked at",
        "redact_strings_searched_total" => "String values the redactor searched with patterns",
        "sample_rows_total" => "Rows the sampler kept or dropped",
        "sample_missing_key_total" => "Rows without the sampling key, by the action taken",
        "sample_rule_hits_total" => "Rows matched by each sampling rule",
        "sample_rate_table_hits_total" => "Rows whose rate came from the sampling rate table",
        "sample_overflow_group_rows_total" => "Rows of groups past the sampler's group budget",
        "sample_windows_closed_total" => "Sampling budget windows closed",
        "enrich_rows_total" => "Rows the enrich operator processed",
        "enrich_cache_hits_total" => "Enrichment lookups answered from the cache",
        "enrich_cache_misses_total" => "Enrichment lookups not in the cache",
        "enrich_ip_lookups_total" => "IP addresses looked up in the GeoIP or ASN databases",
        "enrich_user_agents_total" => "User agents parsed",
        "enrich_lookup_rows_total" => "Rows matched in lookup tables",
        "enrich_derived_total" => "Derived fields computed",
        "enrich_reference_swaps_total" => "Times an operator switched to reloaded reference data",
        _ => "A counter of an operator in the chain",
    }
}

impl Collector for OperatorCounters {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let values = self.values.lock().expect("operator counters lock");
        for (name, series) in values.iter() {
            let base = name.strip_suffix("_total").unwrap_or(name);
            let mut family =
                encoder.encode_descriptor(base, operator_help(name), None, MetricType::Counter)?;
            for (labels, v) in series {
                ConstCounter::new(*v).encode(family.encode_family(labels)?)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    fn series<'a>(text: &'a str, name: &str) -> Vec<&'a str> {
        text.lines()
            .filter(|l| {
                l.strip_prefix(name)
                    .is_some_and(|rest| rest.starts_with(['{', ' ']))
            })
            .collect()
    }

    #[test]
    fn every_metric_has_help_and_type_in_both_formats() {
        let m = Metrics::new();
        m.kafka_errors.inc();
        m.count(&m.records, "http", 5);
        m.dead_lettered("http", "decode", 2);
        m.partition(&m.skipped_offsets, "http", "logs", 3, 7);
        m.reference_reload(false);
        Metrics::observe(&m.commit_duration, "http", Duration::from_millis(20));
        m.batch_stage("http", BatchStage::Operators, Duration::from_micros(300));
        m.operators.add(
            "redact_hits_total",
            vec![("dataset".into(), "http".into())],
            4,
        );
        m.partitions
            .assigned("http", "logs", 0, 1, Some(10), true, Instant::now());
        for openmetrics in [false, true] {
            let text = m.render(openmetrics);
            let mut helped = std::collections::BTreeSet::new();
            let mut typed = std::collections::BTreeSet::new();
            for line in text.lines() {
                if let Some(rest) = line.strip_prefix("# HELP ") {
                    let (name, help) = rest.split_once(' ').expect("help text");
                    assert!(!help.trim().is_empty(), "{line}");
                    helped.insert(name.to_owned());
                } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                    typed.insert(rest.split(' ').next().unwrap().to_owned());
                } else if !line.starts_with('#') {
                    let name = line.split(['{', ' ']).next().unwrap();
                    let family = ["_bucket", "_sum", "_count", "_total", "_info"]
                        .iter()
                        .find_map(|s| name.strip_suffix(s).filter(|b| typed.contains(*b)))
                        .unwrap_or(name);
                    assert!(
                        typed.contains(family) || typed.contains(name),
                        "{name} has no # TYPE\n{text}"
                    );
                    assert!(
                        helped.contains(family) || helped.contains(name),
                        "{name} has no # HELP\n{text}"
                    );
                }
            }
            assert_eq!(helped, typed, "{text}");
            let text = m.render(openmetrics);
            assert_eq!(
                series(&text, "weir_kafka_errors_total"),
                ["weir_kafka_errors_total 1"]
            );
            assert_eq!(
                series(&text, "weir_skipped_offsets_total"),
                ["weir_skipped_offsets_total{dataset=\"http\",topic=\"logs\",partition=\"3\"} 7"]
            );
            assert_eq!(
                series(&text, "weir_dead_letters_total"),
                ["weir_dead_letters_total{dataset=\"http\",stage=\"decode\"} 2"]
            );
            assert_eq!(
                series(&text, "weir_reference_reloads_total"),
                ["weir_reference_reloads_total{outcome=\"refused\"} 1"]
            );
            assert_eq!(
                series(&text, "weir_redact_hits_total"),
                ["weir_redact_hits_total{dataset=\"http\"} 4"]
            );
            assert_eq!(
                series(&text, "weir_build_info"),
                [format!(
                    "weir_build_info{{version=\"{}\"}} 1",
                    env!("CARGO_PKG_VERSION")
                )]
            );
            assert_eq!(
                series(&text, "weir_commit_duration_seconds_count"),
                ["weir_commit_duration_seconds_count{dataset=\"http\"} 1"]
            );
            assert_eq!(
                series(&text, "weir_batch_seconds_count"),
                ["weir_batch_seconds_count{dataset=\"http\",stage=\"operators\"} 1"]
            );
            assert_eq!(
                series(&text, "weir_committed_offset"),
                ["weir_committed_offset{topic=\"logs\",partition=\"0\"} 10"]
            );
            assert_eq!(
                series(&text, "weir_assigned_partitions"),
                ["weir_assigned_partitions 1"]
            );
            assert_eq!(
                series(&text, "weir_store_healthy"),
                ["weir_store_healthy 0"]
            );
            assert_eq!(text.ends_with("# EOF\n"), openmetrics);
        }
    }

    #[test]
    fn partition_series_follow_the_partitions_held() {
        let m = Metrics::new();
        let t0 = Instant::now();
        m.partitions
            .assigned("http", "logs", 0, 1, Some(10), true, t0);
        m.partitions
            .assigned("http", "logs", 1, 1, Some(40), true, t0);
        m.partitions.watermarks("logs", 0, Some((0, 25)), t0);
        m.partitions.watermarks("logs", 1, Some((0, 40)), t0);
        let newest = chrono::Utc::now().timestamp_nanos_opt().unwrap() - 30_000_000_000;
        m.partitions.committed("logs", 1, 40, Some(newest), t0);
        let text = m.render(false);
        assert_eq!(
            series(&text, "weir_consumer_lag"),
            [
                "weir_consumer_lag{dataset=\"http\",topic=\"logs\",partition=\"0\"} 15",
                "weir_consumer_lag{dataset=\"http\",topic=\"logs\",partition=\"1\"} 0"
            ]
        );
        let fresh = series(&text, "weir_freshness_seconds");
        assert_eq!(fresh.len(), 1, "{text}");
        let age: f64 = fresh[0].rsplit(' ').next().unwrap().parse().unwrap();
        assert!((30.0..60.0).contains(&age), "{age}");

        m.partitions.remove("logs", 1, 1);
        let text = m.render(false);
        assert_eq!(series(&text, "weir_committed_offset").len(), 1, "{text}");
        assert_eq!(series(&text, "weir_consumer_lag").len(), 1, "{text}");
        assert!(series(&text, "weir_freshness_seconds").is_empty(), "{text}");
        assert_eq!(
            series(&text, "weir_assigned_partitions"),
            ["weir_assigned_partitions 1"]
        );
    }
}
