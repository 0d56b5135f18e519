//! Real processes for the end-to-end tests: an S3 server (s3s-fs), a Kafka-protocol broker
//! (librdkafka's mock cluster in `weir-mock-kafka`, or tansu), `weir run` children, and the
//! external readers (pyarrow, DuckDB) from the venv that `.ci/install` builds.
//!
//! Everything listens on 127.0.0.1 only. Each test gets its own servers and directories, so
//! tests can run in parallel.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use weir_schemas::synth::HttpRequests;

pub const BUCKET: &str = "weir";
pub const ACCESS_KEY: &str = "weirtest";
pub const SECRET_KEY: &str = "weirtestsecret";

/// Where `.ci/install` put s3s-fs and the Python venv.
pub fn cache_dir() -> PathBuf {
    match std::env::var_os("WEIR_CACHE") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(std::env::var_os("HOME").expect("HOME is set")).join(".cache/weir"),
    }
}

fn require(path: PathBuf, what: &str) -> PathBuf {
    assert!(
        path.exists(),
        "{what} not found at {}: run `bash .ci/install` (or the README's test command) first",
        path.display()
    );
    path
}

pub fn python() -> PathBuf {
    require(cache_dir().join("venv/bin/python"), "the test venv")
}

/// The `weir` binary of this build. `cargo test --workspace` builds it (the pipeline crate
/// has an integration test, which makes cargo build its binary next to ours).
/// `WEIR_E2E_BIN` names another build to test instead (e.g. to see a test fail on the
/// build before a fix).
pub fn weir_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("WEIR_E2E_BIN") {
        return require(PathBuf::from(bin), "the binary WEIR_E2E_BIN names");
    }
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    require(
        dir.join("weir"),
        "the weir binary (build it with `cargo build --bin weir` or run `cargo test --workspace`)",
    )
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

fn wait_listening(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not listen on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A child process killed when dropped.
pub struct Proc {
    pub child: Child,
    pub name: String,
    /// Where its output goes, shown when a test fails.
    pub log: Option<PathBuf>,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proc {
    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("kill");
        assert!(status.success(), "kill -{sig} {}", self.name);
    }

    /// Waits for the process to exit; `None` if it is still running at the deadline.
    pub fn wait_timeout(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM, then the process must exit 0 within a minute (Weir commits what it holds).
    pub fn terminate(&mut self) {
        self.signal("TERM");
        let status = self
            .wait_timeout(Duration::from_secs(60))
            .unwrap_or_else(|| panic!("{} did not exit within 60s of SIGTERM", self.name));
        assert!(
            status.success(),
            "{} exited with {status} after SIGTERM",
            self.name
        );
    }

    pub fn running(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_none()
    }
}

/// s3s-fs serving `root`; each directory in it is a bucket, each object a plain file, so
/// `root/<bucket>/<prefix>/<dataset>/date=…/hour=…/*.parquet` is the Hive layout on disk.
///
/// Clients reach it through `tests/tools/fault_proxy.py` without rules, on `port`: s3s-fs
/// alone lets two overlapping creates of one key both succeed, and the proxy orders
/// conditional writes per key, as S3 decides them (see the script's doc). The server
/// listens on `server_port`.
pub struct S3Server {
    pub root: PathBuf,
    pub port: u16,
    pub server_port: u16,
    proc: Option<Proc>,
    proxy: Option<FaultProxy>,
}

impl S3Server {
    pub fn start(root: &Path) -> S3Server {
        std::fs::create_dir_all(root.join(BUCKET)).unwrap();
        let mut server = S3Server {
            root: root.to_path_buf(),
            port: free_port(),
            server_port: free_port(),
            proc: None,
            proxy: None,
        };
        server.restart();
        server
    }

    /// Kills the server and its proxy (an outage: connections refused until
    /// [`S3Server::restart`]).
    pub fn stop(&mut self) {
        self.proxy = None;
        self.proc = None;
    }

    /// Starts the server again on the same ports and data directory.
    pub fn restart(&mut self) {
        self.stop();
        let bin = require(cache_dir().join("cargo/bin/s3s-fs"), "s3s-fs");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.root.with_extension("log"))
            .unwrap();
        let child = Command::new(bin)
            .args([
                "--host",
                "127.0.0.1",
                "--port",
                &self.server_port.to_string(),
            ])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(&self.root)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("starting s3s-fs");
        self.proc = Some(Proc {
            child,
            name: "s3s-fs".into(),
            log: Some(self.root.with_extension("log")),
        });
        wait_listening(self.server_port, "s3s-fs");
        self.proxy = Some(FaultProxy::start_on(
            self.port,
            self.server_port,
            0,
            &[],
            self.root.with_extension("proxy.log"),
        ));
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The `[storage]` section pointing at this server, lake under `prefix`.
    pub fn storage_toml(&self, prefix: &str, extra: &str) -> String {
        storage_toml_at(&self.endpoint(), prefix, extra)
    }

    /// The lake on disk, as a plain reader sees it.
    pub fn lake_dir(&self, prefix: &str) -> PathBuf {
        self.root.join(BUCKET).join(prefix)
    }
}

/// The `[storage]` section for an S3 endpoint (the server, or a proxy in front of it).
pub fn storage_toml_at(endpoint: &str, prefix: &str, extra: &str) -> String {
    format!(
        r#"[storage]
url = "s3://{BUCKET}/{prefix}"
{extra}
[storage.options]
aws_endpoint = "{endpoint}"
aws_allow_http = "true"
aws_region = "us-east-1"
aws_access_key_id = "{ACCESS_KEY}"
aws_secret_access_key = "{SECRET_KEY}"
"#
    )
}

/// `tests/tools/fault_proxy.py` between weir and the S3 server: forwards every request and,
/// for a seeded fraction of those its rules match, loses the answer after the request
/// landed (500 or a dropped connection) or refuses it with 503. See the script's doc.
pub struct FaultProxy {
    pub port: u16,
    pub log: PathBuf,
    _proc: Proc,
}

impl FaultProxy {
    /// `rules`: `METHODS|PATH_REGEX|RATE|ACTION`, first match decides.
    pub fn start(upstream_port: u16, seed: u64, rules: &[&str], log: PathBuf) -> FaultProxy {
        FaultProxy::start_on(free_port(), upstream_port, seed, rules, log)
    }

    /// [`FaultProxy::start`] listening on `port`.
    pub fn start_on(
        port: u16,
        upstream_port: u16,
        seed: u64,
        rules: &[&str],
        log: PathBuf,
    ) -> FaultProxy {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/fault_proxy.py");
        let mut cmd = Command::new(python());
        cmd.arg(script)
            .args(["--listen", &port.to_string()])
            .args(["--upstream", &format!("127.0.0.1:{upstream_port}")])
            .args(["--seed", &seed.to_string()])
            .arg("--log")
            .arg(&log);
        for r in rules {
            cmd.args(["--rule", r]);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting the fault proxy");
        wait_listening(port, "fault proxy");
        FaultProxy {
            port,
            log: log.clone(),
            _proc: Proc {
                child,
                name: "fault proxy".into(),
                log: None,
            },
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The faults injected so far, one line each.
    pub fn faults(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

/// librdkafka's mock cluster in its own process.
pub struct MockKafka {
    pub bootstrap: String,
    stdin: ChildStdin,
    stdout: BufReader<std::process::ChildStdout>,
    _proc: Proc,
}

impl MockKafka {
    pub fn start(topics: &[(&str, i32)]) -> MockKafka {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_weir-mock-kafka"));
        for (t, p) in topics {
            cmd.arg("--topic").arg(format!("{t}:{p}"));
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting weir-mock-kafka");
        let stdin = child.stdin.take().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout
            .read_line(&mut line)
            .expect("mock kafka bootstrap line");
        let bootstrap = line
            .trim()
            .strip_prefix("bootstrap=")
            .unwrap_or_else(|| panic!("unexpected mock kafka output {line:?}"))
            .to_string();
        MockKafka {
            bootstrap,
            stdin,
            stdout,
            _proc: Proc {
                child,
                name: "weir-mock-kafka".into(),
                log: None,
            },
        }
    }

    pub fn command(&mut self, cmd: &str) {
        writeln!(self.stdin, "{cmd}").unwrap();
        self.stdin.flush().unwrap();
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "ok", "mock kafka command {cmd:?}");
    }
}

pub fn producer(bootstrap: &str) -> BaseProducer {
    producer_with(bootstrap, &[])
}

/// A producer with extra client properties (e.g. `compression.type`).
pub fn producer_with(bootstrap: &str, properties: &[(&str, &str)]) -> BaseProducer {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "5")
        .set("enable.idempotence", "true");
    for (k, v) in properties {
        config.set(*k, *v);
    }
    config.create().expect("producer")
}

/// Sends `payload` to `topic`/`partition`, waiting out a full local queue.
pub fn send(producer: &BaseProducer, topic: &str, partition: i32, payload: &[u8]) {
    loop {
        match producer.send(
            BaseRecord::<(), [u8]>::to(topic)
                .partition(partition)
                .payload(payload),
        ) {
            Ok(()) => break,
            Err((e, _)) => {
                assert!(
                    matches!(
                        e.rdkafka_error_code(),
                        Some(rdkafka::types::RDKafkaErrorCode::QueueFull)
                    ),
                    "produce: {e}"
                );
                producer.poll(Duration::from_millis(20));
            }
        }
    }
    producer.poll(Duration::ZERO);
}

pub fn flush(producer: &BaseProducer) {
    producer.flush(Duration::from_secs(60)).expect("flush");
}

/// Produces `per_partition` synthetic http_requests records to each partition
/// (compact records, ~2 KB each, unique RayIDs). Returns the RayIDs produced.
pub fn produce_http(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    per_partition: usize,
    generator: &mut HttpRequests,
) -> Vec<String> {
    produce_http_with(bootstrap, &[], topic, partitions, per_partition, generator)
}

/// [`produce_http`] through a producer with extra client properties.
pub fn produce_http_with(
    bootstrap: &str,
    properties: &[(&str, &str)],
    topic: &str,
    partitions: i32,
    per_partition: usize,
    generator: &mut HttpRequests,
) -> Vec<String> {
    let p = producer_with(bootstrap, properties);
    let mut ids = Vec::new();
    let mut buf = Vec::with_capacity(4096);
    for i in 0..per_partition * partitions as usize {
        buf.clear();
        let meta = generator.write_record(&mut buf);
        ids.push(weir_schemas::synth::ray_id_hex(meta.id));
        send(&p, topic, (i % partitions as usize) as i32, &buf);
    }
    flush(&p);
    ids
}

/// A test's world: a temp dir, an S3 server, a broker, and configs for `weir`.
pub struct World {
    pub dir: tempfile::TempDir,
    pub s3: S3Server,
    pub prefix: String,
    /// `[commit] interval` of the configs written from now on.
    pub commit_interval: String,
}

impl World {
    pub fn new() -> World {
        let dir = tempfile::Builder::new()
            .prefix("weir-e2e-")
            .tempdir()
            .unwrap();
        let s3 = S3Server::start(&dir.path().join("s3"));
        World {
            dir,
            s3,
            prefix: "lake".into(),
            commit_interval: "1s".into(),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes a config with the given `[kafka]` brokers, this world's storage, short commit
    /// intervals, and the given extra TOML (datasets, operators) appended.
    pub fn config(&self, name: &str, brokers: &str, extra: &str) -> PathBuf {
        self.config_with(name, brokers, "", extra)
    }

    /// Like [`World::config`], with extra keys for the `[storage]` section.
    pub fn config_with(
        &self,
        name: &str,
        brokers: &str,
        storage_extra: &str,
        extra: &str,
    ) -> PathBuf {
        self.config_at(name, brokers, &self.s3.endpoint(), storage_extra, extra)
    }

    /// Like [`World::config_with`], reaching the S3 server through `endpoint` (a proxy).
    pub fn config_at(
        &self,
        name: &str,
        brokers: &str,
        endpoint: &str,
        storage_extra: &str,
        extra: &str,
    ) -> PathBuf {
        self.config_full(name, brokers, "", endpoint, storage_extra, extra)
    }

    /// Like [`World::config_with`], with extra keys for the `[kafka]` section (TOML lines
    /// placed at the top of `[kafka]`).
    pub fn config_kafka(
        &self,
        name: &str,
        brokers: &str,
        kafka_extra: &str,
        storage_extra: &str,
        extra: &str,
    ) -> PathBuf {
        self.config_full(
            name,
            brokers,
            kafka_extra,
            &self.s3.endpoint(),
            storage_extra,
            extra,
        )
    }

    fn config_full(
        &self,
        name: &str,
        brokers: &str,
        kafka_extra: &str,
        endpoint: &str,
        storage_extra: &str,
        extra: &str,
    ) -> PathBuf {
        let text = format!(
            r#"[kafka]
brokers = "{brokers}"
group_id = "weir-e2e"
{kafka_extra}
[kafka.properties]
"session.timeout.ms" = "6000"
"heartbeat.interval.ms" = "500"
"topic.metadata.refresh.interval.ms" = "1000"
{storage}
[commit]
interval = "{commit_interval}"
[batch]
max_rows = 512
max_wait = "50ms"
[shutdown]
timeout = "20s"
{extra}
"#,
            storage = storage_toml_at(endpoint, &self.prefix, storage_extra),
            commit_interval = self.commit_interval
        );
        let path = self.path(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    pub fn lake_dir(&self) -> PathBuf {
        self.s3.lake_dir(&self.prefix)
    }

    /// Starts `weir run` with failpoints enabled and `env` set; its stderr goes to a log file.
    pub fn weir_run(&self, config: &Path, log_name: &str, env: &[(&str, &str)]) -> Proc {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path(log_name))
            .unwrap();
        let mut cmd = Command::new(weir_bin());
        cmd.args([
            "run",
            "--enable-failpoints",
            "--connect-timeout",
            "60s",
            "--config",
        ])
        .arg(config)
        .env("WEIR_LOG", "info,weir_pipeline=debug")
        .env_remove("WEIR_FAILPOINT")
        // A process group of its own: job-control signals meant for the test's group
        // (or a stopped weir's group becoming orphaned) never reach it.
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log);
        for (k, v) in env {
            cmd.env(k, v);
        }
        Proc {
            child: cmd.spawn().expect("starting weir run"),
            name: format!("weir run ({log_name})"),
            log: Some(self.path(log_name)),
        }
    }

    /// Starts a bounded `weir` job (`compact`, `vacuum`, `backfill`: `args` after the verb's
    /// name, with `--config` added) with failpoints enabled and `env` set.
    pub fn weir_job(
        &self,
        verb: &str,
        config: &Path,
        args: &[&str],
        log_name: &str,
        env: &[(&str, &str)],
    ) -> Proc {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path(log_name))
            .unwrap();
        let mut cmd = Command::new(weir_bin());
        cmd.args([verb, "--enable-failpoints", "--config"])
            .arg(config)
            .args(args)
            .env("WEIR_LOG", "info,weir_pipeline=debug")
            .env_remove("WEIR_FAILPOINT")
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        for (k, v) in env {
            cmd.env(k, v);
        }
        Proc {
            child: cmd.spawn().expect("starting a weir job"),
            name: format!("weir {verb} ({log_name})"),
            log: Some(self.path(log_name)),
        }
    }

    /// The paths every entry of a ledger directory (a stream's `entries/`) names, under
    /// `list` (`files`, `dead_letters` or `removed`).
    pub fn named_by_entries(&self, entries_dir: &Path, list: &str) -> Vec<String> {
        let mut out = Vec::new();
        let Ok(dir) = std::fs::read_dir(entries_dir) else {
            return out;
        };
        for entry in dir.flatten() {
            let text = std::fs::read_to_string(entry.path()).unwrap();
            let v: serde_json::Value = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{} does not parse: {e}", entry.path().display()));
            for f in v[list].as_array().into_iter().flatten() {
                out.push(f["path"].as_str().expect("a file path").to_owned());
            }
        }
        out
    }

    pub fn log(&self, log_name: &str) -> String {
        std::fs::read_to_string(self.path(log_name)).unwrap_or_default()
    }

    /// `weir query --format csv`: the rows without the header, as lines.
    pub fn query(&self, config: &Path, sql: &str) -> Vec<String> {
        let out = Command::new(weir_bin())
            .args(["query", "--format", "csv", "--config"])
            .arg(config)
            .arg(sql)
            .env("WEIR_LOG", "warn")
            .output()
            .expect("weir query");
        assert!(
            out.status.success(),
            "weir query {sql:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        text.lines().skip(1).map(str::to_owned).collect()
    }

    /// Polls `SELECT count(*)` over `table` until it reaches `want` or `limit` passes,
    /// failing early if `weir` exits. Returns the last count.
    pub fn wait_rows(
        &self,
        config: &Path,
        table: &str,
        want: usize,
        limit: Duration,
        weir: &mut [&mut Proc],
    ) -> usize {
        let deadline = Instant::now() + limit;
        loop {
            let got: usize = self.query(config, &format!("SELECT count(*) FROM {table}"))[0]
                .parse()
                .unwrap();
            if got >= want || Instant::now() > deadline {
                return got;
            }
            for w in weir.iter_mut() {
                if let Some(status) = w.child.try_wait().unwrap() {
                    panic!("{} exited early with {status}", w.name);
                }
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    /// Every id in `http_requests` exactly once, through `weir query` and through pyarrow
    /// reading the files directly.
    pub fn assert_exactly_once(&self, config: &Path, ids: &[String]) {
        self.assert_exactly_once_sql(config, "http_requests", ids);
        self.assert_exactly_once_pyarrow("http_requests", ids);
    }

    /// Like [`World::wait_rows`], and the count must be exactly `want`; on failure the
    /// logs of `weir` are shown.
    pub fn expect_rows(
        &self,
        config: &Path,
        table: &str,
        want: usize,
        limit: Duration,
        weir: &mut [&mut Proc],
    ) {
        let got = self.wait_rows(config, table, want, limit, weir);
        if got != want {
            let logs: Vec<String> = weir
                .iter()
                .filter_map(|w| {
                    let text = std::fs::read_to_string(w.log.as_ref()?).ok()?;
                    Some(format!("--- {}\n{text}", w.name))
                })
                .collect();
            panic!("{table}: {got} rows, want {want}\n{}", logs.join("\n"));
        }
    }

    /// Exactly-once check through `weir query`: every id once, no other ids.
    pub fn assert_exactly_once_sql(&self, config: &Path, table: &str, ids: &[String]) {
        let rows = self.query(
            config,
            &format!("SELECT \"RayID\", count(*) FROM {table} GROUP BY 1 ORDER BY 1"),
        );
        check_ids(
            "weir query",
            rows.iter().map(|l| {
                let (id, n) = l.split_once(',').unwrap();
                (id.to_string(), n.parse::<usize>().unwrap())
            }),
            ids,
        );
    }

    /// Exactly-once check through pyarrow reading the Hive layout on the S3 server's disk,
    /// the way a plain reader would (no ledger).
    pub fn assert_exactly_once_pyarrow(&self, dataset: &str, ids: &[String]) {
        let script = r#"
import sys, collections
import pyarrow.dataset as ds
d = ds.dataset(sys.argv[1], format="parquet", partitioning="hive")
t = d.to_table(columns=["RayID"])
for k, n in sorted(collections.Counter(t.column("RayID").to_pylist()).items()):
    print(f"{k},{n}")
"#;
        let out = Command::new(python())
            .arg("-c")
            .arg(script)
            .arg(self.lake_dir().join(dataset))
            .output()
            .expect("python");
        assert!(
            out.status.success(),
            "pyarrow read failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        check_ids(
            "pyarrow",
            text.lines().map(|l| {
                let (id, n) = l.split_once(',').unwrap();
                (id.to_string(), n.parse::<usize>().unwrap())
            }),
            ids,
        );
    }

    /// Runs DuckDB over the Hive layout and returns its CSV rows (no header).
    pub fn duckdb(&self, sql: &str) -> Vec<String> {
        let script = r#"
import sys, duckdb
con = duckdb.connect()
con.execute("SET threads=1")
for row in con.execute(sys.argv[1]).fetchall():
    print(",".join("" if v is None else str(v) for v in row))
"#;
        let out = Command::new(python())
            .arg("-c")
            .arg(script)
            .arg(sql)
            .current_dir(self.lake_dir())
            .output()
            .expect("python");
        assert!(
            out.status.success(),
            "duckdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

fn check_ids(reader: &str, got: impl Iterator<Item = (String, usize)>, want: &[String]) {
    let mut want: Vec<&String> = want.iter().collect();
    want.sort();
    want.dedup();
    let mut dups = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for (id, n) in got {
        if n != 1 {
            dups.push((id.clone(), n));
        }
        seen.insert(id);
    }
    let missing: Vec<_> = want
        .iter()
        .filter(|id| !seen.contains(id.as_str()))
        .take(10)
        .collect();
    let extra: Vec<_> = seen
        .iter()
        .filter(|id| want.binary_search(id).is_err())
        .take(10)
        .collect();
    assert!(
        dups.is_empty() && missing.is_empty() && extra.is_empty(),
        "{reader}: {} ids duplicated (first {:?}), {} missing (first {:?}), unexpected {:?}",
        dups.len(),
        dups.iter().take(5).collect::<Vec<_>>(),
        want.len().saturating_sub(seen.len().min(want.len())),
        missing,
        extra
    );
    assert_eq!(seen.len(), want.len(), "{reader}: distinct ids");
}

impl World {
    /// Where each partition's ledger says it resumes, read from the S3 server's disk.
    pub fn ledger_next_offset(&self, dataset: &str, topic: &str, partition: i32) -> Option<i64> {
        let dir = self
            .lake_dir()
            .join("_weir/ledger")
            .join(dataset)
            .join(topic)
            .join(partition.to_string())
            .join("entries");
        let mut names: Vec<_> = std::fs::read_dir(dir)
            .ok()?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".json"))
            .collect();
        names.sort();
        let text = std::fs::read_to_string(
            self.lake_dir()
                .join("_weir/ledger")
                .join(dataset)
                .join(topic)
                .join(partition.to_string())
                .join("entries")
                .join(names.last()?),
        )
        .ok()?;
        let v: serde_json::Value = serde_json::from_str(&text).ok()?;
        v["next_offset"].as_i64().filter(|o| *o >= 0)
    }

    /// Every file that a ledger entry of `dataset` names (data and dead letters), read from
    /// the S3 server's disk, must exist there. Returns how many entries were read.
    pub fn assert_named_files_exist(&self, dataset: &str) -> usize {
        let root = self.lake_dir().join("_weir/ledger").join(dataset);
        let mut entries = 0;
        let mut missing = Vec::new();
        for topic in std::fs::read_dir(&root)
            .expect("ledger of the dataset")
            .flatten()
        {
            for partition in std::fs::read_dir(topic.path()).unwrap().flatten() {
                let Ok(dir) = std::fs::read_dir(partition.path().join("entries")) else {
                    continue;
                };
                for entry in dir.flatten() {
                    let text = std::fs::read_to_string(entry.path()).unwrap();
                    let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|e| {
                        panic!("{} does not parse: {e}", entry.path().display())
                    });
                    entries += 1;
                    for list in ["files", "dead_letters"] {
                        for f in v[list].as_array().into_iter().flatten() {
                            let path = f["path"].as_str().expect("a file path");
                            if !self.lake_dir().join(path).exists() {
                                missing.push(path.to_owned());
                            }
                        }
                    }
                }
            }
        }
        assert!(
            missing.is_empty(),
            "{} files named by the ledger are missing, first: {:?}",
            missing.len(),
            &missing[..missing.len().min(5)]
        );
        entries
    }

    /// Waits until every partition's ledger has reached `want[p]` (all produced records
    /// consumed and committed, whatever the operators kept).
    pub fn wait_consumed(
        &self,
        dataset: &str,
        topic: &str,
        want: &[i64],
        limit: Duration,
        weir: &mut Proc,
    ) {
        let deadline = Instant::now() + limit;
        loop {
            let done = want.iter().enumerate().all(|(p, w)| {
                self.ledger_next_offset(dataset, topic, p as i32)
                    .unwrap_or(0)
                    >= *w
            });
            if done {
                return;
            }
            if let Some(status) = weir.child.try_wait().unwrap() {
                panic!("{} exited early with {status}", weir.name);
            }
            assert!(Instant::now() < deadline, "ledger did not reach {want:?}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// The sum of every `/metrics` series named `name` whose labels include all of `labels`.
pub fn metric_sum(text: &str, name: &str, labels: &[&str]) -> u64 {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .filter(|l| labels.iter().all(|want| l.contains(want)))
        .map(|l| l.rsplit_once(' ').unwrap().1.parse::<u64>().unwrap())
        .sum()
}

/// `GET path` on 127.0.0.1:port: the status code and body, or `None` when nothing answers.
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    use std::io::Read;
    let mut sock = TcpStream::connect(("127.0.0.1", port)).ok()?;
    sock.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n");
    sock.write_all(request.as_bytes()).ok()?;
    let mut text = String::new();
    sock.read_to_string(&mut text).ok()?;
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, text.split_once("\r\n\r\n")?.1.to_owned()))
}
