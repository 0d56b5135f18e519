//! Deterministic simulation of the commit protocol.
//!
//! Each schedule is one seed. Writers of one partition stream (an owner, then one or two
//! successors) run [`Protocol`] against an in-memory store wrapped by [`SimStore`], which
//! for every call draws from the seed whether to apply it, fail before applying, apply and
//! then lose the answer (an error, or a timeout after a delay), or delay it. The owner may
//! be paused at a drawn call (a zombie: its successors take over, then it wakes up) or
//! crash there (its call may or may not have landed, nothing after it does). Everything
//! runs on one thread with tokio's paused clock, so a seed always replays the same
//! interleaving.
//!
//! After the writers stop, a last writer recovers without faults and the schedule is
//! checked: entries 1..=N exist and tile the offsets without gap or overlap; every file an
//! entry names exists and holds exactly the offsets of its entry (so no record is in two
//! entries, and none committed is lost); no file an entry names was ever deleted; no data
//! file that no entry names survives recovery.
//!
//! `WEIR_SIM_SEED=<n>` re-runs one schedule; `WEIR_SIM_SEEDS=<n>` runs n schedules
//! (default 10,000).

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    ObjectStoreExt, PutMultipartOptions, PutOptions, PutPayload, PutResult, Result as OsResult,
    UploadPart,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio::sync::watch;

use super::{Attempt, Outcome, Protocol};
use crate::ledger::{Entry, FileRef, LEDGER_VERSION, LedgerError, PartitionLedger};
use crate::sink::parquet::{ClosedFile, file_name};

const DATASET: &str = "ds";
const TOPIC: &str = "t";
const LEDGER: &str = "_weir/ledger/ds/t/0";

/// What the store does with one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Act {
    Apply,
    Refuse,
    /// Apply, then answer with an error.
    LoseAnswer,
    /// Apply, wait, then answer with a timeout.
    TimeOut(Duration),
    /// Wait, then apply.
    Delay(Duration),
}

/// Counters over all schedules, so the test can show it exercised what it claims.
#[derive(Debug, Default, Clone, Copy)]
struct Stats {
    committed: u64,
    fenced: u64,
    superseded: u64,
    takeovers: u64,
    lost_entry_answers: u64,
    paused: u64,
    crashed: u64,
}

impl Stats {
    fn add(&mut self, o: Stats) {
        self.committed += o.committed;
        self.fenced += o.fenced;
        self.superseded += o.superseded;
        self.takeovers += o.takeovers;
        self.lost_entry_answers += o.lost_entry_answers;
        self.paused += o.paused;
        self.crashed += o.crashed;
    }
}

/// The store shared by all writers of one schedule, and its fault dice.
struct World {
    inner: InMemory,
    dice: Mutex<ChaCha8Rng>,
    rate: f64,
    faults_on: AtomicBool,
    /// Every path a delete was applied to.
    deleted: Mutex<Vec<Path>>,
    stats: Mutex<Stats>,
}

impl World {
    fn draw(&self) -> Act {
        if !self.faults_on.load(Ordering::Relaxed) {
            return Act::Apply;
        }
        let mut rng = self.dice.lock().unwrap();
        let u: f64 = rng.random();
        if u < self.rate {
            match rng.random_range(0..3) {
                0 => Act::Refuse,
                1 => Act::LoseAnswer,
                _ => Act::TimeOut(Duration::from_millis(rng.random_range(1..3_000))),
            }
        } else if u < self.rate + 0.1 {
            Act::Delay(Duration::from_millis(rng.random_range(1..500)))
        } else {
            Act::Apply
        }
    }
}

/// Where a writer stops responding: paused until released, or crashed for good.
#[derive(Debug)]
struct Halt {
    /// The writer's call number at which it halts.
    at: u64,
    crash: bool,
    /// Set when the writer reached `at` (or finished without reaching it).
    reached: watch::Sender<bool>,
    /// Set by the scenario to wake a paused writer.
    released: watch::Sender<bool>,
}

/// One writer's view of the store.
#[derive(Clone)]
struct SimStore {
    world: Arc<World>,
    calls: Arc<AtomicU64>,
    halt: Option<Arc<Halt>>,
    crashed: Arc<AtomicBool>,
}

impl fmt::Debug for SimStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SimStore")
    }
}

impl fmt::Display for SimStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SimStore")
    }
}

fn fault(what: &str) -> object_store::Error {
    object_store::Error::Generic {
        store: "sim",
        source: format!("simulated fault: {what}").into(),
    }
}

impl SimStore {
    /// Runs one call under the schedule: halts, crashes and drawn faults.
    async fn call<T>(
        &self,
        what: &str,
        op: impl std::future::Future<Output = OsResult<T>>,
    ) -> OsResult<T> {
        if self.crashed.load(Ordering::Relaxed) {
            return Err(fault("writer crashed"));
        }
        let n = self.calls.fetch_add(1, Ordering::Relaxed) + 1;
        if let Some(h) = &self.halt
            && n == h.at
        {
            h.reached.send_replace(true);
            if h.crash {
                self.crashed.store(true, Ordering::Relaxed);
                // The call it died in may or may not have reached the store.
                let landed = self.world.dice.lock().unwrap().random_bool(0.5);
                if landed {
                    let _ = op.await;
                }
                return Err(fault("writer crashed"));
            }
            let mut released = h.released.subscribe();
            let _ = released.wait_for(|r| *r).await;
        }
        match self.world.draw() {
            Act::Apply => op.await,
            Act::Refuse => Err(fault(what)),
            Act::LoseAnswer => {
                let applied = op.await;
                if applied.is_ok() && what == "create" {
                    self.world.stats.lock().unwrap().lost_entry_answers += 1;
                }
                Err(fault(what))
            }
            Act::TimeOut(d) => {
                let _ = op.await;
                tokio::time::sleep(d).await;
                Err(fault(what))
            }
            Act::Delay(d) => {
                tokio::time::sleep(d).await;
                op.await
            }
        }
    }
}

#[async_trait::async_trait]
impl ObjectStore for SimStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> OsResult<PutResult> {
        let what = if matches!(opts.mode, object_store::PutMode::Create)
            && location.as_ref().contains("/entries/")
        {
            "create"
        } else {
            "put"
        };
        self.call(what, self.world.inner.put_opts(location, payload, opts))
            .await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> OsResult<Box<dyn MultipartUpload>> {
        let inner = self
            .call(
                "create multipart",
                self.world.inner.put_multipart_opts(location, opts),
            )
            .await?;
        Ok(Box::new(SimUpload {
            inner,
            store: self.clone(),
        }))
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> OsResult<GetResult> {
        self.call("get", self.world.inner.get_opts(location, options))
            .await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, OsResult<Path>>,
    ) -> BoxStream<'static, OsResult<Path>> {
        let store = self.clone();
        locations
            .then(move |path| {
                let store = store.clone();
                async move {
                    let path = path?;
                    let world = store.world.clone();
                    let target = path.clone();
                    store
                        .call("delete", async move {
                            let r = world.inner.delete(&target).await;
                            if r.is_ok() {
                                world.deleted.lock().unwrap().push(target);
                            }
                            r
                        })
                        .await?;
                    Ok(path)
                }
            })
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, OsResult<ObjectMeta>> {
        let store = self.clone();
        let prefix = prefix.cloned();
        futures::stream::once(async move {
            let world = store.world.clone();
            store
                .call("list", async move {
                    use futures::TryStreamExt;
                    world
                        .inner
                        .list(prefix.as_ref())
                        .try_collect::<Vec<_>>()
                        .await
                })
                .await
        })
        .map(|r| match r {
            Ok(v) => futures::stream::iter(v.into_iter().map(Ok)).boxed(),
            Err(e) => futures::stream::once(async { Err(e) }).boxed(),
        })
        .flatten()
        .boxed()
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> OsResult<ListResult> {
        self.call("list", self.world.inner.list_with_delimiter(prefix))
            .await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> OsResult<()> {
        self.call("copy", self.world.inner.copy_opts(from, to, options))
            .await
    }
}

#[derive(Debug)]
struct SimUpload {
    inner: Box<dyn MultipartUpload>,
    store: SimStore,
}

#[async_trait::async_trait]
impl MultipartUpload for SimUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        let part = self.inner.put_part(data);
        let store = self.store.clone();
        Box::pin(async move { store.call("upload part", part).await })
    }

    async fn complete(&mut self) -> OsResult<PutResult> {
        let store = self.store.clone();
        store
            .call("complete multipart", self.inner.complete())
            .await
    }

    async fn abort(&mut self) -> OsResult<()> {
        self.inner.abort().await
    }
}

/// How one writer ended.
#[derive(Debug, Default)]
struct Report {
    committed: u64,
    fenced: u64,
    superseded: bool,
}

/// The bytes of a data file covering `offsets`: one line per record.
fn content(offsets: std::ops::Range<i64>) -> Vec<u8> {
    offsets.map(|o| format!("{o}\n")).collect::<String>().into()
}

fn data_path(hour: u32, start: i64, seq: u64, epoch: u64) -> String {
    format!(
        "{DATASET}/date=2026-01-01/hour={hour:02}/{}",
        file_name(TOPIC, 0, start, seq, epoch)
    )
}

/// One writer: recovers, then commits `batches` batches as the worker does (an attempt is
/// repeated until settled; a lost race resets to the ledger, a newer epoch stops it).
/// Gives up (as a crash would) after too many unsettled rounds.
async fn writer(
    world: Arc<World>,
    name: String,
    halt: Option<Arc<Halt>>,
    rng_seed: u64,
    batches: usize,
    checkpoint_every: u64,
    multipart_threshold: usize,
) -> Result<Report, String> {
    const ROUNDS: u32 = 10;
    let mut rng = ChaCha8Rng::seed_from_u64(rng_seed);
    let store = SimStore {
        world: world.clone(),
        calls: Arc::new(AtomicU64::new(0)),
        halt: halt.clone(),
        crashed: Arc::new(AtomicBool::new(false)),
    };
    let dyn_store: Arc<dyn ObjectStore> = Arc::new(store.clone());
    let ledger = PartitionLedger::new(dyn_store.clone(), DATASET, TOPIC, 0);
    let protocol = Protocol::new(
        ledger.clone(),
        dyn_store,
        &name,
        multipart_threshold,
        checkpoint_every,
    );
    let mut report = Report::default();
    let done = |report| {
        if let Some(h) = &halt {
            h.reached.send_replace(true);
        }
        Ok(report)
    };
    let verdict = |e: LedgerError| Err(format!("{name}: unexpected verdict: {e}"));

    let mut round = 0;
    let recovered = loop {
        match protocol.recover().await {
            Ok(r) => break r,
            Err(e) if e.is_retryable() && round < ROUNDS => {
                round += 1;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) if e.is_retryable() => return done(report),
            Err(e) => return verdict(e),
        }
    };
    let epoch = recovered.epoch;
    let mut tail = recovered.tail;
    'batches: for _ in 0..batches {
        let start = tail.next_offset().unwrap_or(0);
        let n: i64 = rng.random_range(1..=5);
        let seq = tail.next_seq();
        // One file, or the batch split over two hours.
        let split = if n > 1 && rng.random_bool(0.4) {
            start + n / 2
        } else {
            start + n
        };
        let mut files = vec![(data_path(0, start, seq, epoch), start..split)];
        if split < start + n {
            files.push((data_path(1, start, seq, epoch), split..start + n));
        }
        let files: Vec<ClosedFile> = files
            .into_iter()
            .map(|(path, range)| ClosedFile {
                path,
                rows: (range.end - range.start) as u64,
                bytes: PutPayload::from(content(range)),
                offsets: None,
            })
            .collect();
        let entry = Entry {
            version: LEDGER_VERSION,
            seq,
            epoch,
            writer: name.clone(),
            dataset: DATASET.into(),
            topic: TOPIC.into(),
            partition: 0,
            start_offset: start,
            next_offset: start + n,
            records: n as u64,
            rows: n as u64,
            dead_lettered: 0,
            skipped_offsets: 0,
            holes: 0,
            offset_resets: 0,
            files: files
                .iter()
                .map(|f| FileRef {
                    path: f.path.clone(),
                    rows: f.rows,
                    bytes: f.bytes.content_length() as u64,
                    newest_written: None,
                    offsets: None,
                })
                .collect(),
            dead_letters: vec![],
            removed: vec![],
            operator_state: vec![],
            config_hash: "sim".into(),
            weir_version: "sim".into(),
            takeover: false,
            units: Vec::new(),
            backfill: None,
            abandoned: false,
            event_time: None,
        };
        let mut attempt = Attempt::new(entry, files);
        let mut round = 0;
        loop {
            let settled = match protocol.stage(&mut attempt).await {
                Ok(()) => protocol.finish(&attempt).await,
                Err(e) => Err(e),
            };
            match settled {
                Ok(Outcome::Committed) => {
                    report.committed += 1;
                    tail.last = Some(attempt.entry);
                    continue 'batches;
                }
                Ok(Outcome::Fenced { .. }) => {
                    report.fenced += 1;
                    // Re-read the tail, as the worker's reset_to_ledger does.
                    let mut tries = 0;
                    tail = loop {
                        match ledger.tail().await {
                            Ok(t) => break t,
                            Err(e) if e.is_retryable() && tries < ROUNDS => tries += 1,
                            Err(e) if e.is_retryable() => return done(report),
                            Err(e) => return verdict(e),
                        }
                    };
                    if tail.last.as_ref().is_some_and(|l| l.epoch > epoch) {
                        report.superseded = true;
                        return done(report);
                    }
                    continue 'batches;
                }
                Err(e) if e.is_retryable() && round < ROUNDS => {
                    round += 1;
                    tokio::time::sleep(Duration::from_millis(500 << round.min(6))).await;
                }
                Err(e) if e.is_retryable() => return done(report),
                Err(e) => return verdict(e),
            }
        }
    }
    done(report)
}

fn halt(at: u64, crash: bool) -> Arc<Halt> {
    Arc::new(Halt {
        at,
        crash,
        reached: watch::channel(false).0,
        released: watch::channel(false).0,
    })
}

/// Runs one schedule and checks it. `Err` says what broke.
async fn schedule(seed: u64) -> Result<Stats, String> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let world = Arc::new(World {
        inner: InMemory::new(),
        dice: Mutex::new(ChaCha8Rng::seed_from_u64(seed ^ 0x5e_ed0f_fa17)),
        rate: rng.random_range(0.0..0.35),
        faults_on: AtomicBool::new(true),
        deleted: Mutex::new(Vec::new()),
        stats: Mutex::new(Stats::default()),
    });
    let checkpoint_every = rng.random_range(1..=4);
    let multipart = if rng.random_bool(0.3) { 1 } else { 1 << 20 };
    let crash = rng.random_bool(0.3);
    let owner_halt = halt(rng.random_range(1..60), crash);
    let successors = rng.random_range(1..=2usize);
    let release_after = rng.random_range(0..=2usize);
    let mut stats = Stats::default();
    if crash {
        stats.crashed += 1;
    } else {
        stats.paused += 1;
    }

    let owner = tokio::spawn(writer(
        world.clone(),
        "owner".into(),
        Some(owner_halt.clone()),
        rng.random(),
        rng.random_range(1..=6),
        checkpoint_every,
        multipart,
    ));
    // Successors start once the owner halted (or finished without halting).
    let mut reached = owner_halt.reached.subscribe();
    let _ = reached.wait_for(|r| *r).await;
    let mut handles = Vec::new();
    for i in 0..successors {
        let batches = rng.random_range(release_after..=release_after + 3).max(1);
        handles.push(tokio::spawn(writer(
            world.clone(),
            format!("successor-{i}"),
            None,
            rng.random(),
            batches,
            checkpoint_every,
            multipart,
        )));
    }
    // The zombie wakes up while (or after) its successors work.
    for _ in 0..release_after * 4 {
        tokio::time::sleep(Duration::from_millis(rng.random_range(1..2_000))).await;
    }
    owner_halt.released.send_replace(true);
    let mut reports = vec![owner.await.map_err(|e| format!("owner panicked: {e}"))??];
    for h in handles {
        reports.push(h.await.map_err(|e| format!("successor panicked: {e}"))??);
    }
    for r in &reports {
        stats.committed += r.committed;
        stats.fenced += r.fenced;
        stats.superseded += u64::from(r.superseded);
    }

    // A last writer recovers on a healthy store, then everything is checked.
    world.faults_on.store(false, Ordering::Relaxed);
    let store: Arc<dyn ObjectStore> = Arc::new(SimStore {
        world: world.clone(),
        calls: Arc::new(AtomicU64::new(0)),
        halt: None,
        crashed: Arc::new(AtomicBool::new(false)),
    });
    let last = Protocol::new(
        PartitionLedger::new(store.clone(), DATASET, TOPIC, 0),
        store,
        "last",
        1 << 20,
        checkpoint_every,
    );
    last.recover()
        .await
        .map_err(|e| format!("final recovery: {e}"))?;
    stats.add(*world.stats.lock().unwrap());
    stats.takeovers += check(&world).await?;
    Ok(stats)
}

/// Checks the invariants on the store as the schedule left it. Returns the number of
/// takeover entries.
async fn check(world: &World) -> Result<u64, String> {
    use futures::TryStreamExt;
    let inner = &world.inner;
    let mut entries = BTreeMap::new();
    let prefix = Path::from(format!("{LEDGER}/entries"));
    for meta in inner
        .list(Some(&prefix))
        .try_collect::<Vec<_>>()
        .await
        .map_err(|e| e.to_string())?
    {
        let body = inner
            .get(&meta.location)
            .await
            .map_err(|e| e.to_string())?
            .bytes()
            .await
            .map_err(|e| e.to_string())?;
        let e: Entry = serde_json::from_slice(&body)
            .map_err(|e| format!("entry {} does not parse: {e}", meta.location))?;
        entries.insert(e.seq, e);
    }
    let seqs: Vec<u64> = entries.keys().copied().collect();
    if seqs != (1..=seqs.len() as u64).collect::<Vec<_>>() {
        return Err(format!("entry sequence numbers are not 1..=N: {seqs:?}"));
    }
    // Entries tile the offsets; the files hold exactly their entry's records.
    let mut next = 0i64;
    let mut named = HashSet::new();
    let mut takeovers = 0;
    for e in entries.values() {
        let start = if e.start_offset < 0 {
            0
        } else {
            e.start_offset
        };
        if start != next {
            return Err(format!(
                "entry {} starts at {} but the previous one ends at {next}",
                e.seq, e.start_offset
            ));
        }
        if e.takeover {
            takeovers += 1;
            if e.next_offset != e.start_offset || !e.files.is_empty() {
                return Err(format!("takeover entry {} covers records", e.seq));
            }
            continue;
        }
        if e.next_offset <= e.start_offset {
            return Err(format!("entry {} covers nothing", e.seq));
        }
        let mut held = Vec::new();
        for f in &e.files {
            named.insert(f.path.clone());
            let body = match inner.get(&Path::from(f.path.as_str())).await {
                Ok(r) => r.bytes().await.map_err(|e| e.to_string())?,
                Err(err) => {
                    return Err(format!(
                        "entry {} names {}, which is missing: {err}",
                        e.seq, f.path
                    ));
                }
            };
            held.extend_from_slice(&body);
        }
        if held != content(e.start_offset..e.next_offset) {
            return Err(format!(
                "entry {}'s files do not hold exactly offsets {}..{}",
                e.seq, e.start_offset, e.next_offset
            ));
        }
        next = e.next_offset;
    }
    // Readers (checkpoints and per-hour manifests, folded under the same faults) see
    // exactly the files the entries name.
    let reader = PartitionLedger::new(Arc::new(inner.clone()), DATASET, TOPIC, 0);
    let (seen, _) = reader
        .committed_files()
        .await
        .map_err(|e| format!("reading the committed files: {e}"))?;
    let seen: HashSet<String> = seen.into_iter().map(|f| f.path).collect();
    if seen != named {
        return Err(format!(
            "readers see {} files, the entries name {} (missing {:?}, extra {:?})",
            seen.len(),
            named.len(),
            named.difference(&seen).take(3).collect::<Vec<_>>(),
            seen.difference(&named).take(3).collect::<Vec<_>>()
        ));
    }
    for p in world.deleted.lock().unwrap().iter() {
        if named.contains(p.as_ref()) {
            return Err(format!("{p} was deleted although an entry names it"));
        }
    }
    let data = Path::from(DATASET);
    for meta in inner
        .list(Some(&data))
        .try_collect::<Vec<_>>()
        .await
        .map_err(|e| e.to_string())?
    {
        if !named.contains(meta.location.as_ref()) {
            return Err(format!(
                "{} survived recovery although no entry names it",
                meta.location
            ));
        }
    }
    Ok(takeovers)
}

fn seeds() -> Vec<u64> {
    if let Ok(one) = std::env::var("WEIR_SIM_SEED") {
        return vec![one.parse().expect("WEIR_SIM_SEED is a number")];
    }
    let n = std::env::var("WEIR_SIM_SEEDS")
        .ok()
        .map(|n| n.parse().expect("WEIR_SIM_SEEDS is a number"))
        .unwrap_or(10_000u64);
    (0..n).collect()
}

/// Runs one schedule on its own single-threaded runtime with paused time.
fn run_one(seed: u64) -> Stats {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("runtime");
    let outcome =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| rt.block_on(schedule(seed))));
    let rerun = format!(
        "re-run it alone: WEIR_SIM_SEED={seed} cargo test -p weir-pipeline --lib commit::sim"
    );
    match outcome {
        Ok(Ok(stats)) => stats,
        Ok(Err(broke)) => panic!("schedule {seed}: {broke}\n{rerun}"),
        Err(_) => panic!("schedule {seed} panicked\n{rerun}"),
    }
}

#[test]
fn commit_protocol_holds_under_seeded_fault_schedules() {
    let seeds = seeds();
    // Schedules are independent: two threads share them (each schedule is still one
    // thread, so it replays the same way alone).
    let threads = 2;
    let total = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let seeds = &seeds;
                scope.spawn(move || {
                    let mut total = Stats::default();
                    for &seed in seeds.iter().skip(t).step_by(threads) {
                        total.add(run_one(seed));
                    }
                    total
                })
            })
            .collect();
        let mut total = Stats::default();
        for w in workers {
            match w.join() {
                Ok(s) => total.add(s),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        total
    });
    eprintln!("{} schedules: {total:?}", seeds.len());
    // The schedules must have exercised what they are for.
    if seeds.len() >= 1_000 {
        let n = seeds.len() as u64;
        assert!(total.committed > n, "{total:?}");
        assert!(total.fenced > n / 50, "{total:?}");
        assert!(total.superseded > n / 50, "{total:?}");
        assert!(total.takeovers > n / 50, "{total:?}");
        assert!(total.lost_entry_answers > n / 50, "{total:?}");
        assert!(total.crashed > n / 10 && total.paused > n / 10, "{total:?}");
    }
}
