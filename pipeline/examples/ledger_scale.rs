//! Ledger metadata at scale: does planning a one-hour query, and recovering a partition,
//! cost the same after a long history as after a short one?
//!
//! ```text
//! cargo run -p weir-pipeline --example ledger_scale -- [--entries 1000,100000]
//!     [--partitions 32] [--per-hour 30] [--rounds 5] [--dir DIR]
//! ```
//!
//! For each history length it starts from an empty lake prefix on a real S3 server
//! (s3s-fs from `$WEIR_CACHE/cargo/bin`, as `.ci/install` puts it, on 127.0.0.1), and
//! writes that many ledger entries over `--partitions` streams through the ledger's own API
//! (entries, checkpoints every 100 as `weir run` does by default, manifests), each entry
//! naming one file in the hour its partition is filling (`--per-hour` entries per
//! partition-hour, so the queried hour holds the same files whatever the history). The
//! files of the queried hour (the first) are real Parquet files; the others exist only in
//! the ledger. Then, `--rounds` times each, it times:
//!
//! * **plan+run**: a fresh `weir query` session (every stream's checkpoint and tail) and
//!   `SELECT count(*) FROM http_requests WHERE date = '2026-01-01' AND hour = '00'`;
//! * **recover**: a partition's recovery as on assignment (claim an epoch, read the tail,
//!   clean orphans).
//!
//! and prints medians and the ratio of each history to the first. The histories are
//! measured in turn within each round, so load from elsewhere weighs on them alike. With
//! `--dir`, a later run reuses the histories an earlier one wrote. The issue's target is a
//! ratio within 1.25.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use arrow::array::RecordBatch;
use futures::StreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use weir_pipeline::commit::Protocol;
use weir_pipeline::config::Config;
use weir_pipeline::ledger::{Entry, FileRef, LEDGER_VERSION, PartitionLedger};
use weir_pipeline::runner::{self, EnvSecrets};

const BUCKET: &str = "lake";
const KEY: &str = "weirbench";
const SECRET: &str = "weirbench-secret";
const CHECKPOINT_EVERY: u64 = 100;
const DATASET: &str = "http_requests";
const TOPIC: &str = "http";

struct Args {
    entries: Vec<u64>,
    partitions: i32,
    per_hour: u64,
    rounds: usize,
    dir: Option<PathBuf>,
}

fn args() -> Result<Args> {
    let mut out = Args {
        entries: vec![1_000, 100_000],
        partitions: 32,
        per_hour: 30,
        rounds: 5,
        dir: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--entries" => {
                out.entries = value
                    .split(',')
                    .map(|v| v.trim().parse())
                    .collect::<Result<_, _>>()?
            }
            "--partitions" => out.partitions = value.parse()?,
            "--per-hour" => out.per_hour = value.parse()?,
            "--rounds" => out.rounds = value.parse()?,
            "--dir" => out.dir = Some(value.into()),
            other => bail!("unknown flag {other}"),
        }
    }
    Ok(out)
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_s3(root: &std::path::Path) -> Result<(Server, u16)> {
    let cache = std::env::var("WEIR_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/weir"));
    let bin = cache.join("cargo/bin/s3s-fs");
    if !bin.exists() {
        bail!("{} not found: run .ci/install first", bin.display());
    }
    std::fs::create_dir_all(root.join(BUCKET))?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let child = Command::new(bin)
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .args(["--access-key", KEY, "--secret-key", SECRET])
        .arg(root)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let server = Server(child);
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok((server, port));
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    bail!("s3s-fs did not listen on {port}")
}

fn config(port: u16, prefix: &str) -> Result<Config> {
    let text = format!(
        r#"[kafka]
brokers = "127.0.0.1:9"
[storage]
url = "s3://{BUCKET}/{prefix}"
[storage.options]
endpoint = "http://127.0.0.1:{port}"
allow_http = "true"
access_key_id = "{KEY}"
secret_access_key = "{SECRET}"
region = "us-east-1"
[[datasets]]
name = "{DATASET}"
topic = "{TOPIC}"
"#
    );
    Ok(Config::parse(&text)?)
}

/// The hour (date, HH) of a partition's `seq`-th entry.
fn hour_of(seq: u64, per_hour: u64) -> (String, String) {
    let hours = (seq - 1) / per_hour;
    let t = chrono::NaiveDate::from_ymd_opt(2026, 1, 1)
        .unwrap()
        .and_hms_opt(0, 0, 0)
        .unwrap()
        + chrono::Duration::hours(hours as i64);
    (t.format("%Y-%m-%d").to_string(), t.format("%H").to_string())
}

/// Writes `per_partition` entries to each stream, as `weir run` would have.
async fn fill(
    store: &Arc<dyn ObjectStore>,
    partitions: i32,
    per_partition: u64,
    per_hour: u64,
    parquet: &bytes::Bytes,
) -> Result<()> {
    let jobs = (0..partitions).map(|p| {
        let store = store.clone();
        let parquet = parquet.clone();
        async move {
            let ledger = PartitionLedger::new(store.clone(), DATASET, TOPIC, p);
            let epoch = ledger.claim_epoch("ledger_scale").await?;
            for seq in 1..=per_partition {
                let (date, hour) = hour_of(seq, per_hour);
                let path = format!("{DATASET}/date={date}/hour={hour}/p{p:05}-{seq:010}.parquet");
                let bytes = if seq <= per_hour {
                    store
                        .put(
                            &Path::from(path.as_str()),
                            PutPayload::from(parquet.clone()),
                        )
                        .await?;
                    parquet.len() as u64
                } else {
                    1000
                };
                let entry = Entry {
                    version: LEDGER_VERSION,
                    seq,
                    epoch,
                    writer: "ledger_scale".into(),
                    dataset: DATASET.into(),
                    topic: TOPIC.into(),
                    partition: p,
                    start_offset: (seq as i64 - 1) * 100,
                    next_offset: seq as i64 * 100,
                    records: 100,
                    rows: 100,
                    dead_lettered: 0,
                    skipped_offsets: 0,
                    holes: 0,
                    offset_resets: 0,
                    files: vec![FileRef {
                        path,
                        rows: 100,
                        bytes,
                        newest_written: None,
                        offsets: None,
                    }],
                    dead_letters: vec![],
                    removed: vec![],
                    operator_state: vec![],
                    config_hash: "bench".into(),
                    weir_version: env!("CARGO_PKG_VERSION").into(),
                    takeover: false,
                    units: Vec::new(),
                    backfill: None,
                    abandoned: false,
                    event_time: None,
                };
                ledger.commit(&entry).await?;
                if seq % CHECKPOINT_EVERY == 0 {
                    ledger.checkpoint(&entry).await?;
                }
            }
            anyhow::Ok(())
        }
    });
    let results: Vec<Result<()>> = futures::stream::iter(jobs)
        .buffer_unordered(partitions as usize)
        .collect()
        .await;
    results.into_iter().collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn tiny_parquet(batch: &RecordBatch) -> Result<bytes::Bytes> {
    let mut buf = Vec::new();
    let mut w = parquet::arrow::ArrowWriter::try_new(&mut buf, batch.schema(), None)?;
    w.write(batch)?;
    w.close()?;
    Ok(buf.into())
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = args()?;
    let tmp = tempfile::tempdir()?;
    let root = args.dir.clone().unwrap_or_else(|| tmp.path().to_path_buf());
    let (_server, port) = start_s3(&root.join("s3"))?;
    println!(
        "machine: {} cores, {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(
                |c| c.lines().find(|l| l.starts_with("model name")).map(|l| l
                    .split(':')
                    .nth(1)
                    .unwrap_or("")
                    .trim()
                    .to_owned())
            )
            .unwrap_or_default()
    );
    println!(
        "store: s3s-fs on 127.0.0.1; {} partitions, {} entries per partition-hour, checkpoint every {CHECKPOINT_EVERY}",
        args.partitions, args.per_hour
    );
    // Fill every history first (or find it filled by an earlier run with the same --dir),
    // then measure them in turn, round after round, so that whatever else the machine is
    // doing weighs on each alike.
    struct Lake {
        entries: u64,
        store: Arc<dyn ObjectStore>,
        datasets: Vec<Arc<weir_pipeline::runtime::DatasetRuntime>>,
        plan: Vec<f64>,
        /// The ledger's part of planning: a view of the lake and the listing of the hour.
        ledger: Vec<f64>,
        recover: Vec<f64>,
        rows: usize,
    }
    let mut lakes = Vec::new();
    for &entries in &args.entries {
        let prefix = format!("scale-{entries}");
        let config = config(port, &prefix)?;
        let resources = weir_pipeline::reference::load(&config)
            .await
            .map_err(anyhow::Error::msg)?;
        let datasets = runner::prepare(&config, &EnvSecrets, &resources)?;
        let schema = datasets[0].output_schema.clone();
        let columns = schema
            .fields()
            .iter()
            .map(|f| arrow::array::new_null_array(f.data_type(), 1))
            .collect();
        let batch = RecordBatch::try_new(schema.clone(), columns)
            .unwrap_or_else(|_| RecordBatch::new_empty(schema.clone()));
        let parquet = tiny_parquet(&batch)?;
        let store = weir_pipeline::store::open(&config.storage.url, &config.storage.options)
            .map_err(anyhow::Error::msg)?;
        let marker = Path::from("_bench_filled");
        if store.head(&marker).await.is_ok() {
            println!("{entries} entries: already written (--dir reused)");
        } else {
            let per_partition = entries / args.partitions as u64;
            let started = Instant::now();
            fill(
                &store,
                args.partitions,
                per_partition,
                args.per_hour,
                &parquet,
            )
            .await?;
            store.put(&marker, PutPayload::default()).await?;
            println!(
                "{entries} entries: written in {:.1} s",
                started.elapsed().as_secs_f64()
            );
        }
        lakes.push(Lake {
            entries,
            store,
            datasets,
            plan: Vec::new(),
            ledger: Vec::new(),
            recover: Vec::new(),
            rows: 0,
        });
    }
    let sql =
        format!("SELECT count(*) AS n FROM {DATASET} WHERE date = '2026-01-01' AND hour = '00'");
    for _ in 0..args.rounds {
        for lake in &mut lakes {
            let t = Instant::now();
            let view = weir_pipeline::query::CommittedView::load(
                lake.store.clone(),
                &[DATASET.to_owned()],
            )
            .await?;
            let hour = Path::from(format!("{DATASET}/date=2026-01-01/hour=00"));
            let listed: Vec<_> = futures::TryStreamExt::try_collect(view.list(Some(&hour))).await?;
            anyhow::ensure!(!listed.is_empty(), "the queried hour lists no file");
            lake.ledger.push(t.elapsed().as_secs_f64());
            let t = Instant::now();
            let ctx = weir_pipeline::query::session(lake.store.clone(), &lake.datasets).await?;
            let t_run = Instant::now();
            let batches = weir_pipeline::query::run(&ctx, &sql).await?;
            if std::env::var_os("LEDGER_SCALE_VERBOSE").is_some() {
                eprintln!(
                    "{}: session {:.0} ms, run {:.0} ms",
                    lake.entries,
                    (t_run - t).as_secs_f64() * 1e3,
                    t_run.elapsed().as_secs_f64() * 1e3
                );
            }
            lake.plan.push(t.elapsed().as_secs_f64());
            lake.rows = batches
                .first()
                .and_then(|b| {
                    b.column(0)
                        .as_any()
                        .downcast_ref::<arrow::array::Int64Array>()
                        .map(|a| a.value(0) as usize)
                })
                .unwrap_or(0);
            let protocol = Protocol::new(
                PartitionLedger::new(lake.store.clone(), DATASET, TOPIC, 0),
                lake.store.clone(),
                "ledger_scale/recover",
                8 << 20,
                CHECKPOINT_EVERY,
            );
            let t = Instant::now();
            protocol.recover().await?;
            lake.recover.push(t.elapsed().as_secs_f64());
        }
    }
    let mut results: Vec<(u64, f64, f64, f64)> = Vec::new();
    for lake in lakes {
        let (p, l, r) = (median(lake.plan), median(lake.ledger), median(lake.recover));
        println!(
            "{} entries: plan+run {:.1} ms (count {}), ledger listing {:.1} ms, recover {:.1} ms",
            lake.entries,
            p * 1e3,
            lake.rows,
            l * 1e3,
            r * 1e3
        );
        results.push((lake.entries, p, r, l));
    }
    let (base_n, base_p, base_r, base_l) = results[0];
    println!(
        "\n| entries | plan+run ms | ratio | of which ledger listing ms | ratio | recover ms | ratio |"
    );
    println!("|---|---|---|---|---|---|---|");
    let mut worst: f64 = 1.0;
    for (n, p, r, l) in &results {
        let (rp, rr, rl) = (p / base_p, r / base_r, l / base_l);
        worst = worst.max(rp).max(rr);
        println!(
            "| {n} | {:.1} | {rp:.2} | {:.1} | {rl:.2} | {:.1} | {rr:.2} |",
            p * 1e3,
            l * 1e3,
            r * 1e3
        );
    }
    println!(
        "\nbaseline: {base_n} entries; worst ratio (plan+run, recover) {worst:.2} (target ≤ 1.25)"
    );
    Ok(())
}
