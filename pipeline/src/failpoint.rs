//! Named crash points for the exactly-once tests.
//!
//! Off unless `weir run --enable-failpoints` is given (the flag is hidden from `--help`).
//! Then `WEIR_FAILPOINT=<name>[:<n>]` makes the process abort (as abruptly as `kill -9`:
//! no destructors, no flush) the n-th time (default 1st) execution reaches that point,
//! and `WEIR_STORE_FAULTS` wraps the lake's store in [`crate::faulty_store::FaultyStore`].

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

static ARMED: OnceLock<(String, u64, Action)> = OnceLock::new();

/// What an armed failpoint does when reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    /// Abort at once, as `kill -9` would.
    Abort,
    /// Freeze the whole process with SIGSTOP (a paused zombie) until a SIGCONT; then go on.
    Stop,
}
static STORE_FAULTS: OnceLock<crate::faulty_store::FaultSpec> = OnceLock::new();

/// The store faults `WEIR_STORE_FAULTS` asked for, when failpoints are enabled.
pub fn store_faults() -> Option<crate::faulty_store::FaultSpec> {
    STORE_FAULTS.get().copied()
}
static HITS: AtomicU64 = AtomicU64::new(0);

/// The points a test can name.
pub const POINTS: &[&str] = &[
    "mid-batch",
    "after-upload",
    "during-multipart",
    "after-ledger",
    "orphan-cleanup",
    "before-delta-commit",
    "after-delta-commit",
];

/// Reads `WEIR_FAILPOINT`. Called once at start when failpoints are enabled.
pub fn arm_from_env() -> Result<(), String> {
    if let Ok(faults) = std::env::var("WEIR_STORE_FAULTS") {
        let spec = crate::faulty_store::FaultSpec::parse(&faults)?;
        tracing::warn!(
            rate = spec.rate,
            seed = spec.seed,
            "object store fault injection on"
        );
        let _ = STORE_FAULTS.set(spec);
    }
    let Ok(spec) = std::env::var("WEIR_FAILPOINT") else {
        return Ok(());
    };
    // <name>[:<n>][:stop]
    let mut parts = spec.split(':');
    let name = parts.next().unwrap_or_default().to_owned();
    let nth = match parts.next() {
        Some(k) => k
            .parse::<u64>()
            .map_err(|_| format!("WEIR_FAILPOINT: bad count in {spec:?}"))?,
        None => 1,
    };
    let action = match parts.next() {
        None | Some("abort") => Action::Abort,
        Some("stop") => Action::Stop,
        Some(other) => {
            return Err(format!(
                "WEIR_FAILPOINT: unknown action {other:?} in {spec:?} (abort or stop)"
            ));
        }
    };
    if !POINTS.contains(&name.as_str()) {
        return Err(format!(
            "WEIR_FAILPOINT: unknown point {name:?} (known: {})",
            POINTS.join(", ")
        ));
    }
    tracing::warn!(point = %name, nth, action = ?action, "failpoint armed: this process will abort or stop there");
    let _ = ARMED.set((name, nth.max(1), action));
    Ok(())
}

/// Aborts (or stops) the process if `name` is armed and this is its n-th hit.
pub fn hit(name: &str) {
    if let Some((armed, nth, action)) = ARMED.get()
        && armed == name
        && HITS.fetch_add(1, Ordering::SeqCst) + 1 == *nth
    {
        if *action == Action::Stop {
            eprintln!("weir: failpoint {name} reached, stopping");
            // SIGSTOP through kill(1): the process freezes here, every thread with it.
            let stopped = std::process::Command::new("kill")
                .args(["-STOP", &std::process::id().to_string()])
                .status()
                .is_ok_and(|s| s.success());
            if stopped {
                eprintln!("weir: failpoint {name} continued");
                return;
            }
        }
        eprintln!("weir: failpoint {name} reached, aborting");
        std::process::abort();
    }
}
