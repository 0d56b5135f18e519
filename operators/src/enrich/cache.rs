//! A bounded memo for per-value answers (IP → geo record, user agent → parsed fields).
//!
//! Two generations: lookups hit `young` first, then `old` (a hit there promotes the entry).
//! Inserts go to `young`; when `young` holds half the capacity, `old` is dropped and
//! `young` becomes `old`. Entries that keep being asked for survive, one-off values age out
//! after two flips. Eviction depends only on the sequence of keys, never on time or on a
//! random hash seed, so two replicas fed the same batches hold the same entries. The cache
//! never changes an answer, only how fast it is found.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hash, Hasher};

/// A fixed-seed multiply-rotate hasher (the rustc "Fx" scheme): fast on short keys and free
/// of per-process randomness. Keys are values from the firehose, so a hostile client could
/// aim at collisions; the cache is bounded and a collision costs speed, not correctness.
#[derive(Default, Clone, Copy)]
pub(crate) struct FxHasher {
    hash: u64,
}

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl FxHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(word) ^ ((rest.len() as u64) << 56));
        }
    }
    #[inline]
    fn write_u8(&mut self, n: u8) {
        self.add(u64::from(n));
    }
    #[inline]
    fn write_u32(&mut self, n: u32) {
        self.add(u64::from(n));
    }
    #[inline]
    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }
    #[inline]
    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }
    /// The multiply leaves the low bits depending only on the low bits of the input (an
    /// IPv4 address's last octets land in high bits), and hashbrown picks buckets with the
    /// low bits: fold the high half down before answering.
    #[inline]
    fn finish(&self) -> u64 {
        let folded = self.hash ^ (self.hash >> 32);
        folded.wrapping_mul(SEED) ^ (folded >> 29)
    }
}

pub(crate) type FxBuild = BuildHasherDefault<FxHasher>;
pub(crate) type FxHashMap<K, V> = HashMap<K, V, FxBuild>;

#[derive(Debug)]
pub(crate) struct Memo<K, V> {
    young: FxHashMap<K, V>,
    old: FxHashMap<K, V>,
    half: usize,
    hits: u64,
    misses: u64,
}

impl<K: Hash + Eq, V: Clone> Memo<K, V> {
    /// A memo holding at most `capacity` entries (at least 2).
    pub(crate) fn new(capacity: usize) -> Self {
        let half = (capacity / 2).max(1);
        Memo {
            young: FxHashMap::with_capacity_and_hasher(half.min(1 << 16), FxBuild::default()),
            old: FxHashMap::default(),
            half,
            hits: 0,
            misses: 0,
        }
    }

    /// The cached answer for `key`, or `compute`'s, which is remembered.
    #[inline]
    pub(crate) fn get_or_insert_with<Q>(&mut self, key: &Q, compute: impl FnOnce() -> V) -> V
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        if let Some(value) = self.young.get(key) {
            self.hits += 1;
            return value.clone();
        }
        if let Some((owned, value)) = self.old.remove_entry(key) {
            self.hits += 1;
            self.insert(owned, value.clone());
            return value;
        }
        self.misses += 1;
        let value = compute();
        self.insert(key.to_owned(), value.clone());
        value
    }

    fn insert(&mut self, key: K, value: V) {
        if self.young.len() >= self.half {
            self.old = std::mem::take(&mut self.young);
            self.young.reserve(self.half.min(1 << 16));
        }
        self.young.insert(key, value);
    }

    pub(crate) fn clear(&mut self) {
        self.young.clear();
        self.old.clear();
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.young.len() + self.old.len()
    }

    pub(crate) fn hits(&self) -> u64 {
        self.hits
    }

    pub(crate) fn misses(&self) -> u64 {
        self.misses
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memo_stays_bounded_and_keeps_hot_keys() {
        let mut memo: Memo<u32, u32> = Memo::new(100);
        for round in 0..10_000u32 {
            // key 7 is asked for every other call, the rest are one-offs
            let key = if round % 2 == 0 { 7 } else { 1_000 + round };
            let value = memo.get_or_insert_with(&key, || key * 2);
            assert_eq!(value, key * 2);
            assert!(memo.len() <= 100);
        }
        assert!(memo.hits() >= 4_990, "hits {}", memo.hits());
    }

    #[test]
    fn memo_looks_up_strings_by_str() {
        let mut memo: Memo<String, usize> = Memo::new(4);
        assert_eq!(memo.get_or_insert_with("abc", || 3), 3);
        assert_eq!(memo.get_or_insert_with("abc", || 99), 3);
        assert_eq!((memo.hits(), memo.misses()), (1, 1));
    }
}
