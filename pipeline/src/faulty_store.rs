//! A fault-injecting [`ObjectStore`] wrapper for the exactly-once tests.
//!
//! Only reachable through `weir run --enable-failpoints` with
//! `WEIR_STORE_FAULTS=rate=<0..1>[,seed=<n>][,delay=<duration>][,slow=<duration>]`.
//! `slow` adds that latency to every call (a slow store, nothing fails). At the given rate, each
//! call (put, multipart part, multipart completion, get, head, list) fails in one of three
//! ways, chosen by a seeded generator, never the clock:
//!
//! - **refused**: a 503-like error before the inner store sees the request;
//! - **lost response**: the inner call succeeds, then the caller is told it failed (the
//!   nastiest case for create-if-absent writes and multipart completion);
//! - **timeout**: the call hangs for `delay` (default 2s), then fails.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::stream::{BoxStream, StreamExt};
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, Result as OsResult, UploadPart,
};

/// What `WEIR_STORE_FAULTS` asked for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FaultSpec {
    pub rate: f64,
    pub seed: u64,
    pub delay: Duration,
    pub slow: Duration,
}

impl FaultSpec {
    pub fn parse(text: &str) -> Result<FaultSpec, String> {
        let mut spec = FaultSpec {
            rate: 0.0,
            seed: 0,
            delay: Duration::from_secs(2),
            slow: Duration::ZERO,
        };
        for part in text.split(',').filter(|p| !p.is_empty()) {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| format!("WEIR_STORE_FAULTS: {part:?} is not key=value"))?;
            match k.trim() {
                "rate" => {
                    spec.rate = v
                        .parse()
                        .ok()
                        .filter(|r: &f64| (0.0..=1.0).contains(r))
                        .ok_or_else(|| format!("WEIR_STORE_FAULTS: rate {v:?} is not in [0, 1]"))?
                }
                "seed" => {
                    spec.seed = v
                        .parse()
                        .map_err(|_| format!("WEIR_STORE_FAULTS: seed {v:?}"))?
                }
                "slow" => {
                    spec.slow = humantime::parse_duration(v)
                        .map_err(|e| format!("WEIR_STORE_FAULTS: slow {v:?}: {e}"))?
                }
                "delay" => {
                    spec.delay = humantime::parse_duration(v)
                        .map_err(|e| format!("WEIR_STORE_FAULTS: delay {v:?}: {e}"))?
                }
                other => return Err(format!("WEIR_STORE_FAULTS: unknown key {other:?}")),
            }
        }
        Ok(spec)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    None,
    Refused,
    LostResponse,
    Timeout,
}

#[derive(Debug)]
struct Dice {
    spec: FaultSpec,
    calls: AtomicU64,
}

impl Dice {
    fn roll(&self) -> Fault {
        let n = self.calls.fetch_add(1, Ordering::Relaxed);
        // splitmix64 of (seed, call number)
        let mut z = self
            .spec
            .seed
            .wrapping_add(n.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        let u = (z >> 11) as f64 / (1u64 << 53) as f64;
        if u >= self.spec.rate {
            return Fault::None;
        }
        match z % 3 {
            0 => Fault::Refused,
            1 => Fault::LostResponse,
            _ => Fault::Timeout,
        }
    }
}

fn injected(what: &str) -> object_store::Error {
    object_store::Error::Generic {
        store: "fault-injection",
        source: format!("injected fault: {what} (503 slow down)").into(),
    }
}

/// The wrapper. See the module docs.
#[derive(Debug)]
pub struct FaultyStore {
    inner: Arc<dyn ObjectStore>,
    dice: Arc<Dice>,
}

impl FaultyStore {
    pub fn new(inner: Arc<dyn ObjectStore>, spec: FaultSpec) -> FaultyStore {
        FaultyStore {
            inner,
            dice: Arc::new(Dice {
                spec,
                calls: AtomicU64::new(0),
            }),
        }
    }
}

impl fmt::Display for FaultyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FaultyStore({})", self.inner)
    }
}

/// Runs `call` under a rolled fault.
async fn with_fault<T>(
    dice: &Dice,
    what: &str,
    call: impl std::future::Future<Output = OsResult<T>>,
) -> OsResult<T> {
    if !dice.spec.slow.is_zero() {
        tokio::time::sleep(dice.spec.slow).await;
    }
    match dice.roll() {
        Fault::None => call.await,
        Fault::Refused => Err(injected(what)),
        Fault::LostResponse => {
            call.await?;
            Err(injected(what))
        }
        Fault::Timeout => {
            tokio::time::sleep(dice.spec.delay).await;
            Err(injected(what))
        }
    }
}

#[async_trait::async_trait]
impl ObjectStore for FaultyStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> OsResult<PutResult> {
        with_fault(
            &self.dice,
            "put",
            self.inner.put_opts(location, payload, opts),
        )
        .await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> OsResult<Box<dyn MultipartUpload>> {
        let upload = with_fault(
            &self.dice,
            "create multipart upload",
            self.inner.put_multipart_opts(location, opts),
        )
        .await?;
        Ok(Box::new(FaultyUpload {
            inner: upload,
            dice: self.dice.clone(),
        }))
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> OsResult<GetResult> {
        with_fault(&self.dice, "get", self.inner.get_opts(location, options)).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, OsResult<Path>>,
    ) -> BoxStream<'static, OsResult<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, OsResult<ObjectMeta>> {
        match self.dice.roll() {
            Fault::None => self.inner.list(prefix),
            _ => futures::stream::once(async { Err(injected("list")) }).boxed(),
        }
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> OsResult<ListResult> {
        with_fault(&self.dice, "list", self.inner.list_with_delimiter(prefix)).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> OsResult<()> {
        with_fault(&self.dice, "copy", self.inner.copy_opts(from, to, options)).await
    }
}

#[derive(Debug)]
struct FaultyUpload {
    inner: Box<dyn MultipartUpload>,
    dice: Arc<Dice>,
}

#[async_trait::async_trait]
impl MultipartUpload for FaultyUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        let part = self.inner.put_part(data);
        let dice = self.dice.clone();
        Box::pin(async move { with_fault(&dice, "upload part", part).await })
    }

    async fn complete(&mut self) -> OsResult<PutResult> {
        let dice = self.dice.clone();
        with_fault(&dice, "complete multipart upload", self.inner.complete()).await
    }

    async fn abort(&mut self) -> OsResult<()> {
        self.inner.abort().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_parses_and_refuses_nonsense() {
        let s = FaultSpec::parse("rate=0.2,seed=7,delay=50ms").unwrap();
        assert_eq!(
            (s.rate, s.seed, s.delay),
            (0.2, 7, Duration::from_millis(50))
        );
        assert!(FaultSpec::parse("rate=2").is_err());
        assert!(FaultSpec::parse("speed=1").is_err());
    }

    #[test]
    fn dice_hit_the_rate_and_repeat_with_the_seed() {
        let roll = |seed| {
            let d = Dice {
                spec: FaultSpec {
                    rate: 0.25,
                    seed,
                    delay: Duration::ZERO,
                    slow: Duration::ZERO,
                },
                calls: AtomicU64::new(0),
            };
            (0..10_000).map(|_| d.roll()).collect::<Vec<_>>()
        };
        let a = roll(1);
        assert_eq!(a, roll(1));
        assert_ne!(a, roll(2));
        let faults = a.iter().filter(|f| **f != Fault::None).count();
        assert!((2_250..2_750).contains(&faults), "{faults}");
    }
}
