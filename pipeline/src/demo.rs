//! `weir demo`: zero setup. Starts librdkafka's mock cluster in this process, produces
//! synthetic Cloudflare http_requests events (plus a few malformed ones), runs the pipeline
//! into a local lake, then answers a few SQL questions about what landed.

use std::path::PathBuf;

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rdkafka::config::ClientConfig;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use weir_schemas::synth::HttpRequests;

use crate::config::Config;
use crate::ledger::PartitionLedger;
use crate::runner::{self, EnvSecrets, RunOptions};

const TOPIC: &str = "cf.http_requests";
const PARTITIONS: i32 = 8;
/// The mock broker keeps only the newest 5 MiB per partition: never run further ahead of
/// what the pipeline has committed than this many records per partition.
const MAX_AHEAD: i64 = 2_000;

const MALFORMED: &[&[u8]] = &[
    b"{\"RayID\": \"not closed\"",
    b"",
    b"{\"EdgeStartTimestamp\": \"yesterday\", \"RayID\": \"0000000000000bad\"}",
    b"\xff\xfe not utf-8",
];

pub async fn run(dir: Option<PathBuf>, events: usize) -> Result<()> {
    let dir = match dir {
        Some(d) => d,
        None => std::env::temp_dir().join(format!("weir-demo-{}", std::process::id())),
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let dir = dir.canonicalize()?;
    let cluster = MockCluster::new(1).context("starting the in-process Kafka mock cluster")?;
    cluster
        .create_topic(TOPIC, PARTITIONS, 1)
        .context("creating the demo topic")?;
    let brokers = cluster.bootstrap_servers();
    println!("weir demo");
    println!(
        "  kafka:  in-process mock cluster at {brokers}, topic {TOPIC} ({PARTITIONS} partitions)"
    );
    println!("  lake:   {}", dir.display());

    let config_text = format!(
        r#"
[kafka]
brokers = "{brokers}"
group_id = "weir-demo"
[storage]
url = "file://{lake}"
[commit]
interval = "1s"
[[datasets]]
name = "http_requests"
topic = "{TOPIC}"
schema = "http_requests"
[[datasets.operators]]
type = "redact"
"#,
        lake = dir.display()
    );
    std::fs::write(dir.join("weir-demo.toml"), &config_text)?;
    let config = Config::parse(&config_text)?;
    let store = crate::store::open(&config.storage.url, &config.storage.options)
        .map_err(anyhow::Error::msg)?;

    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let pipeline = tokio::spawn(runner::run(config.clone(), RunOptions::default(), async {
        let _ = stop_rx.await;
    }));

    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("linger.ms", "5")
        .create()
        .context("creating the demo producer")?;
    let started = Instant::now();
    let mut generator = HttpRequests::new(7).compact(true);
    let mut produced = vec![0i64; PARTITIONS as usize];
    let ledgers: Vec<PartitionLedger> = (0..PARTITIONS)
        .map(|p| PartitionLedger::new(store.clone(), "http_requests", TOPIC, p))
        .collect();
    let total = events + MALFORMED.len();
    let mut record = Vec::with_capacity(2048);
    for i in 0..total {
        let partition = (i % PARTITIONS as usize) as i32;
        let p = partition as usize;
        while produced[p] - committed(&ledgers[p]).await? >= MAX_AHEAD {
            if pipeline.is_finished() {
                bail!("the pipeline stopped early: {:?}", pipeline.await);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let payload: &[u8] = if i % (total / MALFORMED.len()).max(1) == 0
            && i / (total / MALFORMED.len()).max(1) < MALFORMED.len()
        {
            MALFORMED[i / (total / MALFORMED.len()).max(1)]
        } else {
            record.clear();
            generator.write_record(&mut record);
            &record
        };
        loop {
            match producer.send(
                BaseRecord::<(), [u8]>::to(TOPIC)
                    .partition(partition)
                    .payload(payload),
            ) {
                Ok(()) => break,
                Err((e, _)) => {
                    if !matches!(
                        e.rdkafka_error_code(),
                        Some(rdkafka::types::RDKafkaErrorCode::QueueFull)
                    ) {
                        bail!("producing: {e}");
                    }
                    producer.poll(Duration::from_millis(50));
                }
            }
        }
        produced[p] += 1;
        producer.poll(Duration::ZERO);
    }
    producer
        .flush(Duration::from_secs(30))
        .context("flushing the demo producer")?;
    println!(
        "  produced {total} records ({} malformed) in {:.1?}",
        MALFORMED.len(),
        started.elapsed()
    );

    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let mut done = true;
        for (p, l) in ledgers.iter().enumerate() {
            if committed(l).await? < produced[p] {
                done = false;
            }
        }
        if done {
            break;
        }
        if pipeline.is_finished() {
            bail!("the pipeline stopped early: {:?}", pipeline.await);
        }
        if Instant::now() > deadline {
            bail!("timed out waiting for the pipeline to commit everything");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let _ = stop_tx.send(());
    pipeline.await??;
    println!("  everything committed after {:.1?}\n", started.elapsed());

    let resources = crate::reference::load(&config)
        .await
        .map_err(anyhow::Error::msg)?;
    let datasets = runner::prepare(&config, &EnvSecrets, &resources)?;
    let ctx = crate::query::session(store, &datasets).await?;
    for (title, sql) in [
        (
            "rows per hour",
            "SELECT date, hour, count(*) AS rows FROM http_requests GROUP BY date, hour ORDER BY date, hour",
        ),
        (
            "status classes",
            "SELECT EdgeResponseStatus / 100 * 100 AS class, count(*) AS rows FROM http_requests GROUP BY 1 ORDER BY 1",
        ),
        (
            "busiest hosts",
            "SELECT ClientRequestHost, count(*) AS rows FROM http_requests GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 5",
        ),
        (
            "dead letters",
            "SELECT stage, error_kind, \"offset\", raw_bytes FROM dead_letter ORDER BY \"partition\", \"offset\"",
        ),
    ] {
        let batches = crate::query::run(&ctx, sql).await?;
        println!(
            "-- {title}\n{sql};\n{}\n",
            crate::query::render(&batches, crate::query::Format::Table)?
        );
    }
    println!(
        "query it yourself:  weir query --config {} \"SELECT count(*) FROM http_requests\"",
        dir.join("weir-demo.toml").display()
    );
    drop(cluster);
    Ok(())
}

async fn committed(ledger: &PartitionLedger) -> Result<i64> {
    Ok(ledger.tail().await?.next_offset().unwrap_or(0))
}
