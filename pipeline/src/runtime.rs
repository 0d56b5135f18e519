//! State shared by the source, the partition workers and the metrics endpoint.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arrow::datatypes::SchemaRef;
use object_store::ObjectStore;
use tokio::sync::mpsc;
use weir_operators::{OperatorSpec, SecretSource};

use crate::config::{Config, ResolvedDataset};

/// A dataset as the workers need it.
#[derive(Debug)]
pub struct DatasetRuntime {
    pub name: String,
    pub topic: String,
    pub resolved: ResolvedDataset,
    pub operators: Vec<OperatorSpec>,
    /// Schema of the rows that land (after the operator chain).
    pub output_schema: SchemaRef,
}

/// A monotonic counter.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Process-wide counters, exported as Prometheus text by `/metrics`.
#[derive(Debug, Default)]
pub struct Metrics {
    pub kafka_errors: Counter,
    pub store_errors: Counter,
    pub commit_conflicts: Counter,
    /// `(name, sorted labels) -> value` for labelled counters.
    labelled: Mutex<BTreeMap<(String, Vec<(String, String)>), u64>>,
    /// `(name, sorted labels) -> value` for gauges.
    gauges: Mutex<BTreeMap<(String, Vec<(String, String)>), i64>>,
    store_healthy: AtomicBool,
}

impl Metrics {
    pub fn add(&self, name: &str, labels: &[(&str, &str)], n: u64) {
        let key = (
            name.to_owned(),
            labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        );
        *self
            .labelled
            .lock()
            .expect("metrics lock")
            .entry(key)
            .or_default() += n;
    }

    pub fn set_gauge(&self, name: &str, labels: &[(&str, &str)], v: i64) {
        let key = (
            name.to_owned(),
            labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        );
        self.gauges.lock().expect("metrics lock").insert(key, v);
    }

    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        let key = (
            name.to_owned(),
            labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect::<Vec<_>>(),
        );
        self.labelled
            .lock()
            .expect("metrics lock")
            .get(&key)
            .copied()
            .unwrap_or(0)
    }

    pub fn set_store_healthy(&self, ok: bool) {
        self.store_healthy.store(ok, Ordering::Relaxed);
    }

    pub fn store_healthy(&self) -> bool {
        self.store_healthy.load(Ordering::Relaxed)
    }

    /// Prometheus text exposition.
    pub fn render(&self) -> String {
        fn labels(l: &[(String, String)]) -> String {
            if l.is_empty() {
                return String::new();
            }
            let inner: Vec<String> = l
                .iter()
                .map(|(k, v)| format!("{k}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"")))
                .collect();
            format!("{{{}}}", inner.join(","))
        }
        let mut out = String::new();
        for (name, v) in [
            ("weir_kafka_errors_total", self.kafka_errors.get()),
            ("weir_store_errors_total", self.store_errors.get()),
            ("weir_commit_conflicts_total", self.commit_conflicts.get()),
        ] {
            out.push_str(&format!("# TYPE {name} counter\n{name} {v}\n"));
        }
        out.push_str(&format!(
            "# TYPE weir_store_healthy gauge\nweir_store_healthy {}\n",
            u8::from(self.store_healthy())
        ));
        let mut last = String::new();
        for ((name, l), v) in self.labelled.lock().expect("metrics lock").iter() {
            if *name != last {
                out.push_str(&format!("# TYPE weir_{name} counter\n"));
                last = name.clone();
            }
            out.push_str(&format!("weir_{name}{} {v}\n", labels(l)));
        }
        let mut last = String::new();
        for ((name, l), v) in self.gauges.lock().expect("metrics lock").iter() {
            if *name != last {
                out.push_str(&format!("# TYPE weir_{name} gauge\n"));
                last = name.clone();
            }
            out.push_str(&format!("weir_{name}{} {v}\n", labels(l)));
        }
        out
    }
}

/// Everything a running pipeline shares.
pub struct Shared {
    pub config: Config,
    pub config_hash: String,
    /// `host/pid/nonce`: this process start's writer id, unique even where every container
    /// runs as pid 1. Recorded in epoch claims, intents and ledger entries; with the epoch it
    /// is how a writer recognises its own objects after an unknown outcome.
    pub owner: String,
    pub store: Arc<dyn ObjectStore>,
    /// Datasets by Kafka topic.
    pub datasets: HashMap<String, Arc<DatasetRuntime>>,
    pub secrets: Arc<dyn SecretSource>,
    pub resources: Arc<weir_operators::enrich::Resources>,
    pub metrics: Metrics,
    /// How `memory.limit` is shared between workers.
    pub budget: Arc<crate::memory::Budget>,
    /// `dead_letter.kafka_topic`, when set.
    pub dead_letter_topic: Option<crate::sink::dead_letter_topic::DeadLetterTopic>,
    fatal_tx: mpsc::UnboundedSender<String>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("owner", &self.owner)
            .finish_non_exhaustive()
    }
}

/// A writer id unique to this process start: `host/pid/random`. It is the identity that
/// decides "mine or theirs" for every object Weir creates in the ledger.
pub fn writer_id() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "localhost".to_owned());
    format!(
        "{host}/{}/{:016x}",
        std::process::id(),
        rand::random::<u64>()
    )
}

impl Shared {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        config: Config,
        store: Arc<dyn ObjectStore>,
        datasets: HashMap<String, Arc<DatasetRuntime>>,
        secrets: Arc<dyn SecretSource>,
        resources: Arc<weir_operators::enrich::Resources>,
        dead_letter_topic: Option<crate::sink::dead_letter_topic::DeadLetterTopic>,
    ) -> (Arc<Shared>, mpsc::UnboundedReceiver<String>) {
        let (fatal_tx, fatal_rx) = mpsc::unbounded_channel();
        let shared = Shared {
            budget: crate::memory::Budget::new(config.memory.limit),
            config_hash: config.hash(),
            config,
            owner: writer_id(),
            store,
            datasets,
            secrets,
            resources,
            metrics: Metrics::default(),
            dead_letter_topic,
            fatal_tx,
        };
        shared.metrics.set_store_healthy(true);
        (Arc::new(shared), fatal_rx)
    }

    /// Reports an error the process cannot continue after; `weir run` exits non-zero.
    pub fn fatal(&self, reason: String) {
        let _ = self.fatal_tx.send(reason);
    }
}
