//! The `weir` command line.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use weir_pipeline::config::Config;
use weir_pipeline::query::Format;
use weir_pipeline::runner::{self, EnvSecrets, RunOptions};

/// The allocator: jemalloc, with the settings in [`allocator::CONF`].
///
/// glibc's malloc, which weir used before, had to be held to two arenas to keep resident
/// memory within `memory.limit` (with one per thread, tokio's and librdkafka's threads kept
/// 930 MiB against 547 draining a backlog), and then the partition workers queued on the
/// arenas' locks: draining a backlog spread over 30 days spent half its CPU time in malloc,
/// free and the futex calls of their locks, and took from 7.7 to 15.3 CPU seconds over five
/// runs of the same build, depending on which threads shared an arena. jemalloc's
/// per-thread caches and arenas have no such lock on the common path, and it returns what
/// it frees on a clock (weir-bench, same VM: README, "The allocator, again").
///
/// Built without the default `jemalloc` feature, `weir` uses glibc's malloc with two arenas
/// (`M_ARENA_MAX`, unless `MALLOC_ARENA_MAX` is set): heap profilers such as heaptrack follow
/// glibc's malloc, not jemalloc's.
#[cfg(feature = "jemalloc")]
#[allow(unsafe_code)]
mod allocator {
    #[global_allocator]
    static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

    /// jemalloc's settings, read once at its first allocation (`_RJEM_MALLOC_CONF` in the
    /// environment is read after them and wins where both set an option):
    ///
    /// - `background_thread:true`: a thread of jemalloc's returns freed memory to the OS,
    ///   not the next allocation on a worker;
    /// - `dirty_decay_ms:5000,muzzy_decay_ms:0`: freed pages go back over five seconds, in
    ///   one step (no lazily freed middle state that still counts as resident);
    /// - `oversize_threshold:0`: allocations over 8 MiB (a batch's largest columns) are
    ///   served from the ordinary arenas, not from a separate one that returns its memory
    ///   at once and would fault it in again for every batch;
    /// - `percpu_arena:percpu`: an arena per CPU, so threads on different CPUs never share
    ///   one. Without it a 1M-event drain took 7% more CPU and peaked 60–90 MiB higher.
    ///   Measured on two CPUs; on a host with many more CPUs than the pod may use, threads
    ///   move over more arenas (`_RJEM_MALLOC_CONF=percpu_arena:disabled` turns it off).
    pub const CONF: &std::ffi::CStr = c"background_thread:true,dirty_decay_ms:5000,muzzy_decay_ms:0,oversize_threshold:0,percpu_arena:percpu";

    /// The symbol jemalloc reads its compiled-in settings from (`malloc_conf`, with the
    /// prefix tikv-jemalloc-sys gives its symbols).
    #[allow(non_upper_case_globals)]
    #[unsafe(export_name = "_rjem_malloc_conf")]
    pub static malloc_conf: Option<&'static std::ffi::c_char> =
        // SAFETY: CONF is a 'static NUL-terminated string; this takes its first byte.
        Some(unsafe { &*CONF.as_ptr() });

    pub fn tune() {}
}

/// glibc's malloc with two arenas, when built without the `jemalloc` feature.
#[cfg(all(not(feature = "jemalloc"), target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
mod allocator {
    pub fn tune() {
        if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
            // SAFETY: mallopt sets an integer parameter of glibc's malloc; called once at
            // start, before any other thread exists.
            unsafe { libc::mallopt(libc::M_ARENA_MAX, 2) };
        }
    }
}

#[cfg(all(
    not(feature = "jemalloc"),
    not(all(target_os = "linux", target_env = "gnu"))
))]
mod allocator {
    pub fn tune() {}
}

#[derive(Debug, Parser)]
#[command(
    name = "weir",
    version,
    about = "Kafka firehoses → sample / redact / enrich → Parquet on object storage, exactly once; SQL over the lake"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the pipeline (the service). SIGTERM commits in-flight work and exits 0.
    Run {
        /// The config file (TOML; the README's configuration reference lists its keys).
        #[arg(long, short)]
        config: PathBuf,
        /// How long to keep retrying at start while the broker is unreachable or a
        /// dataset's topic does not exist yet; then exit with an error.
        #[arg(long, default_value = "2m", value_parser = humantime::parse_duration)]
        connect_timeout: std::time::Duration,
        /// Honour WEIR_FAILPOINT (crash points for tests).
        #[arg(long, hide = true)]
        enable_failpoints: bool,
    },
    /// Zero-setup demo: in-process Kafka, generated traffic, a local lake, some SQL.
    Demo {
        /// Where the demo lake goes (default: a fresh temporary directory).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// How many events to generate.
        #[arg(long, default_value_t = 50_000)]
        events: usize,
    },
    /// Run SQL over the committed lake.
    Query {
        /// The config file (TOML; the README's configuration reference lists its keys).
        #[arg(long, short)]
        config: PathBuf,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
        /// The SQL statement.
        sql: String,
    },
    /// Merge the small files of hours older than --min-age into large files sorted by
    /// event time (a bounded job: exits 0 when done).
    Compact {
        /// The config file (TOML; the README's configuration reference lists its keys).
        #[arg(long, short)]
        config: PathBuf,
        /// Only this dataset (default: every dataset in the config).
        #[arg(long)]
        dataset: Option<String>,
        /// Compact hours that ended at least this long ago (default: compaction.min_age).
        #[arg(long, value_parser = humantime::parse_duration)]
        min_age: Option<std::time::Duration>,
        /// Honour WEIR_FAILPOINT (crash points for tests).
        #[arg(long, hide = true)]
        enable_failpoints: bool,
    },
    /// Remove hours and dead letters past each dataset's retention, then delete files the
    /// table no longer names (replaced or expired more than --grace ago, or left by crashed
    /// attempts). A bounded job: exits 0 when done.
    Vacuum {
        /// The config file (TOML; the README's configuration reference lists its keys).
        #[arg(long, short)]
        config: PathBuf,
        /// Only this dataset (default: every dataset in the config).
        #[arg(long)]
        dataset: Option<String>,
        /// Keep files taken out of the table at least this long (default: retention.grace).
        #[arg(long, value_parser = humantime::parse_duration)]
        grace: Option<std::time::Duration>,
        /// Honour WEIR_FAILPOINT (crash points for tests).
        #[arg(long, hide = true)]
        enable_failpoints: bool,
        /// Apply retention as if it were this time (RFC 3339), for tests: what is older than
        /// retention is measured from it. Grace is always measured from the clock.
        #[arg(long, hide = true, value_parser = parse_instant)]
        retention_now: Option<chrono::DateTime<chrono::Utc>>,
    },
    /// (Re)fill whole hours [--from, --to) of a dataset from an NDJSON archive or from
    /// Kafka, through the current operator chain (a bounded job: exits 0 when done; a
    /// re-run continues, a finished backfill is a no-op). With --abandon --id: give up an
    /// unpublished --replace backfill.
    Backfill {
        /// The config file (TOML; the README's configuration reference lists its keys).
        #[arg(long, short)]
        config: PathBuf,
        #[arg(long)]
        dataset: String,
        /// First hour (event time): RFC 3339 or YYYY-MM-DDTHH, on a whole hour.
        #[arg(long, value_parser = weir_pipeline::backfill::parse_hour, required_unless_present = "abandon")]
        from: Option<chrono::DateTime<chrono::Utc>>,
        /// End of the range (excluded), like --from.
        #[arg(long, value_parser = weir_pipeline::backfill::parse_hour, required_unless_present = "abandon")]
        to: Option<chrono::DateTime<chrono::Utc>>,
        /// `kafka` (re-read the records that produced the hours) or an archive URL
        /// (s3://, gs://, az://, file://) of NDJSON files, optionally .gz or .zst.
        #[arg(long, default_value = "kafka", value_parser = weir_pipeline::backfill::Source::parse)]
        source: weir_pipeline::backfill::Source,
        /// Replace the hours atomically instead of adding rows.
        #[arg(long)]
        replace: bool,
        /// The backfill's identity in the ledger (default: from dataset, range, source and
        /// config hash).
        #[arg(long)]
        id: Option<String>,
        /// Run shard I of N (e.g. 0/3; a Kubernetes Indexed Job passes its index).
        #[arg(long, value_parser = weir_pipeline::backfill::Shard::parse)]
        shard: Option<weir_pipeline::backfill::Shard>,
        /// Print the plan and change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Give up the unpublished --replace backfill --id: its staged units never enter
        /// the table, weir vacuum deletes their files (dead letters included), and the id
        /// can no longer run or publish.
        #[arg(long, requires = "id", conflicts_with_all = ["from", "to", "source", "replace", "shard", "dry_run"])]
        abandon: bool,
        /// Honour WEIR_FAILPOINT (crash points for tests).
        #[arg(long, hide = true)]
        enable_failpoints: bool,
    },
    /// Publish each dataset's committed files to its Delta table (`<dataset>/_delta_log/`)
    /// once, as `weir run` does every delta.publish_interval. A bounded job: exits 0 when
    /// every table holds every committed entry.
    Publish {
        /// The config file (TOML; the README's configuration reference lists its keys).
        #[arg(long, short)]
        config: PathBuf,
        /// Honour WEIR_FAILPOINT (crash points for tests).
        #[arg(long, hide = true)]
        enable_failpoints: bool,
    },
    /// Validate a config without touching Kafka or storage.
    CheckConfig {
        /// The config file (TOML; the README's configuration reference lists its keys).
        #[arg(long, short)]
        config: PathBuf,
    },
}

fn main() -> Result<()> {
    allocator::tune();
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .thread_name("weir")
        .build()
        .context("starting the async runtime")?;
    // The demo and queries print results on stdout; keep their logs to warnings by default.
    let telemetry = weir_pipeline::telemetry::init(
        match cli.command {
            Command::Run { .. }
            | Command::Compact { .. }
            | Command::Vacuum { .. }
            | Command::Backfill { .. }
            | Command::Publish { .. } => "info",
            _ => "warn",
        },
        rt.handle().clone(),
    )?;
    if telemetry.exporting() {
        tracing::info!("exporting traces over OTLP");
    }
    let result = rt.block_on(async_main(cli));
    // The runtime still runs here: the last exports are sent on it.
    telemetry.shutdown();
    result
}

async fn async_main(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Run {
            config,
            connect_timeout,
            enable_failpoints,
        } => {
            if enable_failpoints {
                weir_pipeline::failpoint::arm_from_env().map_err(anyhow::Error::msg)?;
            }
            let config = Config::load(&config)?;
            let opts = RunOptions {
                connect_timeout: Some(connect_timeout),
            };
            runner::run(config, opts, shutdown_signal()).await?;
            Ok(())
        }
        Command::Demo { dir, events } => weir_pipeline::demo::run(dir, events).await,
        Command::Query {
            config,
            format,
            sql,
        } => {
            // No operator chain is built: table schemas come from the files' footers, so
            // neither operator secrets nor reference data are needed to read the lake.
            let config = Config::load(&config)?;
            let tables = weir_pipeline::query::Table::from_config(&config)?;
            let store = weir_pipeline::store::open(&config.storage.url, &config.storage.options)
                .map_err(|e| anyhow::anyhow!("storage.url: {e}"))?;
            let ctx = weir_pipeline::query::session_of(store, &tables).await?;
            let batches = weir_pipeline::query::run(&ctx, &sql).await?;
            print!("{}", weir_pipeline::query::render(&batches, format)?);
            if format == Format::Table {
                println!();
            }
            Ok(())
        }
        Command::Compact {
            config,
            dataset,
            min_age,
            enable_failpoints,
        } => {
            if enable_failpoints {
                weir_pipeline::failpoint::arm_from_env().map_err(anyhow::Error::msg)?;
            }
            let config = Config::load(&config)?;
            let resources = weir_pipeline::reference::load(&config)
                .await
                .map_err(anyhow::Error::msg)?;
            let datasets = select(runner::prepare(&config, &EnvSecrets, &resources)?, dataset)?;
            weir_pipeline::compact::check_bloom_filter_columns(&config, &datasets)?;
            let store = weir_pipeline::store::open(&config.storage.url, &config.storage.options)
                .map_err(|e| anyhow::anyhow!("storage.url: {e}"))?;
            let opts = weir_pipeline::compact::Options {
                min_age: min_age.unwrap_or(config.compaction.min_age),
                writer: weir_pipeline::runtime::writer_id(),
                progress: progress_printer(),
            };
            let started = std::time::Instant::now();
            let mut total = weir_pipeline::compact::Summary::default();
            for ds in &datasets {
                let done = weir_pipeline::compact::compact_dataset(
                    &config,
                    ds,
                    store.clone(),
                    &opts,
                    chrono::Utc::now(),
                )
                .await
                .with_context(|| format!("compacting {}", ds.name))?;
                if config.delta_publishing() {
                    weir_pipeline::delta::publish_all(&store, &ds.name, &ds.output_schema)
                        .await
                        .with_context(|| format!("publishing {} to its delta table", ds.name))?;
                }
                total.add(&done);
            }
            println!(
                "compacted {} hours: {} files ({} bytes) into {} files ({} bytes), {} rows, {:.1} s",
                total.hours,
                total.files_in,
                total.bytes_in,
                total.files_out,
                total.bytes_out,
                total.rows,
                started.elapsed().as_secs_f64()
            );
            if total.hours_refused > 0 {
                anyhow::bail!(
                    "{} hours not compacted: an input's column has another type than the dataset's (each is named above)",
                    total.hours_refused
                );
            }
            Ok(())
        }
        Command::Vacuum {
            config,
            dataset,
            grace,
            enable_failpoints,
            retention_now,
        } => {
            if enable_failpoints {
                weir_pipeline::failpoint::arm_from_env().map_err(anyhow::Error::msg)?;
            }
            let config = Config::load(&config)?;
            config.validate(&EnvSecrets)?;
            let names: Vec<String> = config.datasets.iter().map(|d| d.name.clone()).collect();
            if let Some(only) = &dataset
                && !names.contains(only)
            {
                anyhow::bail!(
                    "--dataset: no dataset named {only} in the config (it has: {})",
                    names.join(", ")
                );
            }
            let store = weir_pipeline::store::open(&config.storage.url, &config.storage.options)
                .map_err(|e| anyhow::anyhow!("storage.url: {e}"))?;
            // The file schemas, for Delta tables vacuum may have to create.
            let mut schemas = std::collections::HashMap::new();
            if config.delta_publishing() {
                let resources = weir_pipeline::reference::load(&config)
                    .await
                    .map_err(anyhow::Error::msg)?;
                for ds in runner::prepare(&config, &EnvSecrets, &resources)? {
                    schemas.insert(ds.name.clone(), ds.output_schema.clone());
                }
            }
            let mut opts = weir_pipeline::vacuum::Options {
                grace: grace.unwrap_or(config.retention.grace),
                delta_schema: None,
                writer: weir_pipeline::runtime::writer_id(),
                progress: progress_printer(),
            };
            let started = std::time::Instant::now();
            let mut total = weir_pipeline::vacuum::Summary::default();
            for ds in &config.datasets {
                if dataset.as_ref().is_some_and(|only| *only != ds.name) {
                    continue;
                }
                opts.delta_schema = schemas.get(&ds.name).cloned();
                let done = weir_pipeline::vacuum::vacuum_dataset(
                    &config,
                    &ds.name,
                    ds.retention,
                    store.clone(),
                    &opts,
                    retention_now.unwrap_or_else(chrono::Utc::now),
                )
                .await
                .with_context(|| format!("vacuuming {}", ds.name))?;
                total.hours_expired += done.hours_expired;
                total.dead_letter_files_expired += done.dead_letter_files_expired;
                total.dead_letters_expired += done.dead_letters_expired;
                total.files_deleted += done.files_deleted;
                total.bytes_deleted += done.bytes_deleted;
            }
            println!(
                "vacuumed: {} hours expired, {} dead letters expired ({} files), {} files deleted ({} bytes), {:.1} s",
                total.hours_expired,
                total.dead_letters_expired,
                total.dead_letter_files_expired,
                total.files_deleted,
                total.bytes_deleted,
                started.elapsed().as_secs_f64()
            );
            Ok(())
        }
        Command::Backfill {
            config,
            dataset,
            from,
            to,
            source,
            replace,
            id,
            shard,
            dry_run,
            abandon,
            enable_failpoints,
        } => {
            use weir_pipeline::backfill;
            if enable_failpoints {
                weir_pipeline::failpoint::arm_from_env().map_err(anyhow::Error::msg)?;
            }
            let config = Config::load(&config)?;
            if abandon {
                let id = id.expect("clap: --abandon requires --id");
                if !config.datasets.iter().any(|d| d.name == dataset) {
                    let known: Vec<&str> =
                        config.datasets.iter().map(|d| d.name.as_str()).collect();
                    anyhow::bail!(
                        "--dataset: no dataset named {dataset} in the config (it has: {})",
                        known.join(", ")
                    );
                }
                let store =
                    weir_pipeline::store::open(&config.storage.url, &config.storage.options)
                        .map_err(|e| anyhow::anyhow!("storage.url: {e}"))?;
                let done = backfill::abandon(
                    &config,
                    store,
                    &dataset,
                    &id,
                    &weir_pipeline::runtime::writer_id(),
                )
                .await
                .with_context(|| format!("backfill {id}"))?;
                if done.already {
                    println!("backfill {id} was already abandoned: nothing to do");
                } else {
                    println!(
                        "backfill {id} abandoned: {} staged units ({} data files, {} dead-letter files) stay out of the table; weir vacuum deletes their files once retention.grace has passed",
                        done.units, done.files, done.dead_letter_files
                    );
                }
                return Ok(());
            }
            let (Some(from), Some(to)) = (from, to) else {
                unreachable!("clap: --from and --to are required without --abandon");
            };
            let resources = std::sync::Arc::new(
                weir_pipeline::reference::load(&config)
                    .await
                    .map_err(anyhow::Error::msg)?,
            );
            let ds = select(
                runner::prepare(&config, &EnvSecrets, &resources)?,
                Some(dataset),
            )?
            .remove(0);
            let mut store =
                weir_pipeline::store::open(&config.storage.url, &config.storage.options)
                    .map_err(|e| anyhow::anyhow!("storage.url: {e}"))?;
            if let Some(faults) = weir_pipeline::failpoint::store_faults() {
                store = std::sync::Arc::new(weir_pipeline::faulty_store::FaultyStore::new(
                    store, faults,
                ));
            }
            let opts = backfill::Options {
                dataset: ds.name.clone(),
                from,
                to,
                source,
                replace,
                id,
                shard: shard.unwrap_or(backfill::Shard::ALL),
                dry_run,
                writer: weir_pipeline::runtime::writer_id(),
            };
            let publish_delta = config.delta_publishing() && !dry_run;
            let (ds_name, ds_schema, lake) =
                (ds.name.clone(), ds.output_schema.clone(), store.clone());
            let job = backfill::Backfill::new(
                config,
                ds,
                store,
                std::sync::Arc::new(EnvSecrets),
                resources,
                opts,
            )?;
            let started = std::time::Instant::now();
            let say = |line: &str| println!("{line}");
            let s = job
                .run(&say)
                .await
                .with_context(|| format!("backfill {}", job.id()))?;
            if !dry_run && !s.nothing_to_do {
                println!(
                    "backfill {}: {} units ({} already done), {} records, {} rows, {} outside the range, {} dead letters, {} records already in the dead letters (left there), {} files, {} bytes read, {} bytes written, {:.1} s",
                    s.id,
                    s.units,
                    s.units_skipped,
                    s.records,
                    s.rows,
                    s.outside_range,
                    s.dead_lettered,
                    s.already_dead_lettered,
                    s.files,
                    s.bytes_read,
                    s.bytes_written,
                    started.elapsed().as_secs_f64()
                );
                if let Some(p) = s.published {
                    println!(
                        "backfill {}: published: {} files ({} rows) in, {} files ({} rows) out",
                        s.id, p.files_added, p.rows_added, p.files_removed, p.rows_removed
                    );
                }
            }
            // The Delta table is a view of the ledger that any later publish brings up to
            // date: the backfill's rows are committed whether this one succeeds or not.
            if publish_delta
                && let Err(e) = weir_pipeline::delta::publish_all(&lake, &ds_name, &ds_schema).await
            {
                tracing::warn!(dataset = %ds_name, error = %e, "delta table not published; weir run or weir publish will bring it up to date");
            }
            Ok(())
        }
        Command::Publish {
            config,
            enable_failpoints,
        } => {
            if enable_failpoints {
                weir_pipeline::failpoint::arm_from_env().map_err(anyhow::Error::msg)?;
            }
            let config = Config::load(&config)?;
            if !config.delta_publishing() {
                anyhow::bail!(
                    "delta publishing is off (delta.enabled = false, or parquet.timestamp_unit = \"nanos\", which Delta Lake cannot describe)"
                );
            }
            let resources = weir_pipeline::reference::load(&config)
                .await
                .map_err(anyhow::Error::msg)?;
            let datasets = runner::prepare(&config, &EnvSecrets, &resources)?;
            let store = weir_pipeline::store::open(&config.storage.url, &config.storage.options)
                .map_err(|e| anyhow::anyhow!("storage.url: {e}"))?;
            for ds in &datasets {
                let published =
                    weir_pipeline::delta::publish_all(&store, &ds.name, &ds.output_schema)
                        .await
                        .with_context(|| format!("publishing {}", ds.name))?;
                for (table, p) in [
                    (ds.name.clone(), &published.data),
                    (format!("{} dead letters", ds.name), &published.dead_letters),
                ] {
                    match p.version {
                        Some(v) => println!(
                            "{table}: version {v}: {} entries, {} files added, {} removed",
                            p.entries, p.added, p.removed
                        ),
                        None => println!("{table}: up to date"),
                    }
                }
            }
            Ok(())
        }
        Command::CheckConfig { config } => {
            let path = config.display().to_string();
            let config = Config::load(&config)?;
            let resolved = config.validate(&EnvSecrets)?;
            println!(
                "{path}: ok ({} dataset{})",
                resolved.len(),
                if resolved.len() == 1 { "" } else { "s" }
            );
            for r in resolved {
                println!(
                    "  {} <- {} (schema {}, {} fields, {} operators)",
                    r.config.name,
                    r.config.topic,
                    r.schema.name,
                    r.input_schema.fields().len(),
                    r.config.operators.len()
                );
            }
            Ok(())
        }
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

/// The datasets a job works on: all, or the one `--dataset` names.
fn select(
    datasets: Vec<std::sync::Arc<weir_pipeline::runtime::DatasetRuntime>>,
    only: Option<String>,
) -> Result<Vec<std::sync::Arc<weir_pipeline::runtime::DatasetRuntime>>> {
    let Some(name) = only else {
        return Ok(datasets);
    };
    let known: Vec<String> = datasets.iter().map(|d| d.name.clone()).collect();
    let chosen: Vec<_> = datasets.into_iter().filter(|d| d.name == name).collect();
    if chosen.is_empty() {
        anyhow::bail!(
            "--dataset: no dataset named {name} in the config (it has: {})",
            known.join(", ")
        );
    }
    Ok(chosen)
}

/// A progress line per unit of work: on stderr when it is a terminal, as a log line
/// otherwise (a Kubernetes Job's log).
fn progress_printer() -> std::sync::Arc<dyn Fn(&str) + Send + Sync> {
    use std::io::IsTerminal;
    if std::io::stderr().is_terminal() {
        std::sync::Arc::new(|line: &str| eprintln!("{line}"))
    } else {
        std::sync::Arc::new(|line: &str| tracing::info!(progress = line, "done"))
    }
}

/// An RFC 3339 instant, for hidden test flags.
fn parse_instant(s: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&chrono::Utc))
        .map_err(|e| format!("{s:?} is not an RFC 3339 time: {e}"))
}
