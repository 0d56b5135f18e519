//! State shared by the source, the partition workers and the metrics endpoint.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use object_store::ObjectStore;
use tokio::sync::mpsc;
use weir_operators::{OperatorSpec, SecretSource};

use crate::config::{Config, ResolvedDataset};
use crate::metrics::Metrics;

/// A dataset as the workers need it.
#[derive(Debug)]
pub struct DatasetRuntime {
    pub name: String,
    pub topic: String,
    pub resolved: ResolvedDataset,
    pub operators: Vec<OperatorSpec>,
    /// Schema of the rows as they land in the files: the operator chain's output with
    /// timestamps in `parquet.timestamp_unit`. Queries and compaction read with it.
    pub output_schema: SchemaRef,
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
            metrics: Metrics::new(),
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

#[cfg(test)]
impl Shared {
    /// `config` over an in-memory store, with no datasets, secrets, reference data or
    /// dead-letter topic, for unit tests; fatal errors go nowhere.
    pub(crate) fn for_tests(config: Config) -> Arc<Shared> {
        Shared::new(
            config,
            Arc::new(object_store::memory::InMemory::new()),
            HashMap::new(),
            Arc::new(weir_operators::config::StaticSecrets::default()),
            Arc::new(weir_operators::enrich::Resources::default()),
            None,
        )
        .0
    }
}
