//! `weir run`: wires config, store, Kafka source and workers together, and shuts down
//! cleanly.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::Message;
use rdkafka::consumer::Consumer;
use tracing::{error, info, warn};
use weir_operators::config::SecretRef;
use weir_operators::{Chain, SecretSource};

use crate::config::Config;
use crate::runtime::{DatasetRuntime, Shared};
use crate::source::kafka;
use crate::worker::Stop;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{0}")]
    Config(#[from] crate::config::ConfigError),
    #[error("storage.url: {0}")]
    Store(String),
    #[error("dataset {dataset}: {reason}")]
    Dataset { dataset: String, reason: String },
    #[error("kafka: {0}")]
    Kafka(String),
    #[error("{0}")]
    Fatal(String),
}

/// Secrets from the process environment and files.
#[derive(Debug, Default)]
pub struct EnvSecrets;

impl SecretSource for EnvSecrets {
    fn resolve(&self, secret: &SecretRef) -> Result<Vec<u8>, String> {
        match secret {
            SecretRef::Env(name) => std::env::var(name)
                .map(String::into_bytes)
                .map_err(|_| format!("environment variable {name} is not set")),
            SecretRef::File(path) => std::fs::read(path)
                .map(|mut b| {
                    while b.last().is_some_and(|c| c.is_ascii_whitespace()) {
                        b.pop();
                    }
                    b
                })
                .map_err(|e| format!("cannot read {path}: {e}")),
        }
    }
}

/// Options of `weir run` that are not config.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// How long to keep retrying an unreachable broker at start.
    pub connect_timeout: Option<Duration>,
}

/// Builds the per-dataset runtime (resolves schemas, builds each chain once to learn its
/// output schema).
pub fn prepare(
    config: &Config,
    secrets: &dyn SecretSource,
    resources: &weir_operators::enrich::Resources,
) -> Result<Vec<Arc<DatasetRuntime>>, RunError> {
    let resolved = config.validate(secrets)?;
    let mut out = Vec::new();
    for r in resolved {
        let chain = Chain::build(
            &r.config.operators,
            &r.config.name,
            r.input_schema.clone(),
            secrets,
            resources,
        )
        .map_err(|e| RunError::Dataset {
            dataset: r.config.name.clone(),
            reason: e.to_string(),
        })?;
        if chain
            .output_schema()
            .index_of(&r.schema.event_time)
            .is_err()
        {
            return Err(RunError::Dataset {
                dataset: r.config.name.clone(),
                reason: format!(
                    "the operator chain removes the event time column {}",
                    r.schema.event_time
                ),
            });
        }
        crate::config::check_output_columns(&r.config.name, chain.output_schema()).map_err(
            |reason| RunError::Dataset {
                dataset: r.config.name.clone(),
                reason,
            },
        )?;
        out.push(Arc::new(DatasetRuntime {
            name: r.config.name.clone(),
            topic: r.config.topic.clone(),
            operators: r.config.operators.clone(),
            output_schema: crate::sink::parquet::file_schema(
                chain.output_schema(),
                config.parquet.timestamp_unit,
            ),
            resolved: r,
        }));
    }
    Ok(out)
}

/// Leaves the consumer group and closes the client, waiting at most `timeout`.
///
/// Everything is committed by now; closing only tells the group coordinator that this
/// member leaves, so the partitions move without waiting for its session to time out. The
/// client serves a rebalance while it closes, and a close that met a rebalance started by
/// another member once never returned (e2e `fencing::`, against the mock cluster, on a
/// loaded machine): the process kept running after SIGTERM until it was killed. The close
/// therefore runs on a thread of its own; past `timeout` the process exits without it, and
/// the group drops the member when its session times out.
fn close_consumer(consumer: Arc<kafka::WeirConsumer>, timeout: Duration) {
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let closing = std::thread::Builder::new()
        .name("weir-kafka-close".to_owned())
        .spawn(move || {
            consumer.unsubscribe();
            drop(consumer);
            let _ = done_tx.send(());
        });
    if let Err(e) = closing {
        warn!(error = %e, "cannot start the thread that closes the kafka client; exiting without leaving the group");
        return;
    }
    if tokio::task::block_in_place(|| done_rx.recv_timeout(timeout)).is_err() {
        warn!(
            timeout = ?timeout,
            "kafka client did not close within shutdown.timeout; exiting without leaving the group (its session timeout moves the partitions)"
        );
    }
}

/// Runs the pipeline until `shutdown` resolves (or a fatal error).
pub async fn run(
    config: Config,
    opts: RunOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<(), RunError> {
    let secrets: Arc<dyn SecretSource> = Arc::new(EnvSecrets);
    let resources = Arc::new(
        crate::reference::load(&config)
            .await
            .map_err(RunError::Fatal)?,
    );
    let datasets = prepare(&config, secrets.as_ref(), &resources)?;
    let mut store = crate::store::open(&config.storage.url, &config.storage.options)
        .map_err(RunError::Store)?;
    if let Some(faults) = crate::failpoint::store_faults() {
        store = Arc::new(crate::faulty_store::FaultyStore::new(store, faults));
    }
    let by_topic: HashMap<String, Arc<DatasetRuntime>> = datasets
        .iter()
        .map(|d| (d.topic.clone(), d.clone()))
        .collect();
    let topics: Vec<String> = datasets.iter().map(|d| d.topic.clone()).collect();
    let dead_letter_topic = crate::sink::dead_letter_topic::DeadLetterTopic::from_config(&config)
        .map_err(RunError::Fatal)?;
    let (shared, mut fatal_rx) = Shared::new(
        config.clone(),
        store,
        by_topic,
        secrets,
        resources,
        dead_letter_topic,
    );
    let reloader = {
        let shared = shared.clone();
        crate::reference::spawn_reloader(
            Arc::new(config.clone()),
            shared.resources.clone(),
            move |ok| shared.metrics.reference_reload(ok),
        )
    };
    info!(
        storage = %config.storage.url,
        brokers = %config.kafka.brokers,
        group = %config.kafka.group_id,
        datasets = ?datasets.iter().map(|d| d.name.as_str()).collect::<Vec<_>>(),
        config_hash = %shared.config_hash,
        "weir starting"
    );
    let consumer =
        kafka::build_consumer(shared.clone()).map_err(|e| RunError::Kafka(e.to_string()))?;
    let topic_refs: Vec<&str> = topics.iter().map(String::as_str).collect();
    kafka::wait_for_broker(
        &consumer,
        &topic_refs,
        opts.connect_timeout.unwrap_or(Duration::from_secs(120)),
    )
    .await
    .map_err(RunError::Kafka)?;
    consumer
        .subscribe(&topic_refs)
        .map_err(|e| RunError::Kafka(e.to_string()))?;
    let metrics_server = match config.metrics.address() {
        Some(addr) => Some(
            crate::metrics::server::serve(addr, shared.clone())
                .await
                .map_err(|e| RunError::Fatal(e.to_string()))?,
        ),
        None => None,
    };
    let lag_poller = kafka::spawn_lag_poller(&consumer);
    let delta_tables: Vec<(String, arrow::datatypes::SchemaRef)> = datasets
        .iter()
        .map(|d| (d.name.clone(), d.output_schema.clone()))
        .collect();
    if config.delta.enabled && !config.delta_publishing() {
        warn!(
            "delta publishing is off: parquet.timestamp_unit = \"nanos\" has no Delta Lake type (use \"micros\", or set delta.enabled = false)"
        );
    }
    let publisher = config.delta_publishing().then(|| {
        tokio::spawn(crate::delta::run_publisher(
            shared.clone(),
            delta_tables.clone(),
            config.delta.publish_interval,
        ))
    });
    tokio::pin!(shutdown);
    let result = loop {
        tokio::select! {
            _ = &mut shutdown => {
                info!("shutdown requested: committing open work");
                break Ok(());
            }
            reason = fatal_rx.recv() => {
                let reason = reason.unwrap_or_else(|| "internal channel closed".to_owned());
                error!(reason = %reason, "fatal error, stopping");
                break Err(RunError::Fatal(reason));
            }
            msg = consumer.recv() => {
                match msg {
                    Ok(m) => {
                        let reason = format!("record {}/{}@{} arrived on the main queue, outside its partition worker", m.topic(), m.partition(), m.offset());
                        error!(reason = %reason, "internal error");
                        break Err(RunError::Fatal(reason));
                    }
                    Err(e) => {
                        shared.metrics.kafka_errors.inc();
                        tracing::warn!(error = %e, "kafka consumer error");
                    }
                }
            }
        }
    };
    let how = if result.is_ok() {
        Stop::Shutdown
    } else {
        Stop::Revoke
    };
    consumer.context().stop_all(how).await;
    // A worker that failed while shutting down (a gap refused by its final commit) makes the
    // exit non-zero too.
    let result = match (result, fatal_rx.try_recv()) {
        (Ok(()), Ok(reason)) => {
            error!(reason = %reason, "fatal error while stopping");
            Err(RunError::Fatal(reason))
        }
        (result, _) => result,
    };
    lag_poller.abort();
    if let Some(publisher) = publisher {
        // A publish cut short commits nothing or all of its version; the last one below
        // folds in the final commits.
        publisher.abort();
        let _ = publisher.await;
        if tokio::time::timeout(
            config.shutdown.timeout,
            crate::delta::publish_round(&shared.store, &delta_tables, &shared.metrics),
        )
        .await
        .is_err()
        {
            warn!(
                "delta publish at shutdown did not finish in shutdown.timeout; the next publisher folds those entries in"
            );
        }
    }
    if let Some(server) = metrics_server {
        server.abort();
    }
    if let Some(reloader) = reloader {
        reloader.abort();
    }
    close_consumer(consumer, config.shutdown.timeout);
    info!("weir stopped");
    result
}
