//! The sampler's two fixed functions: the key hash (XXH64) and the OpenTelemetry
//! probability ↔ threshold mapping.
//!
//! Both are part of the on-disk contract: a kept row's `_sample_rate`, and whether a key is
//! kept at all, must not change when Weir is upgraded, or a replay after an upgrade would
//! produce different rows. Test vectors in `tests.rs` pin them.

/// Bits of randomness compared against a threshold (OpenTelemetry's `R`, OTEP 235).
pub const RANDOMNESS_BITS: u32 = 56;
/// `2^56`: the threshold that rejects everything; probability `p` maps to
/// `MAX_THRESHOLD - round(p * 2^56)`.
pub const MAX_THRESHOLD: u64 = 1 << RANDOMNESS_BITS;
/// Smallest probability that still keeps something (one value of `R` in `2^56`).
pub const MIN_RATE: f64 = 1.0 / MAX_THRESHOLD as f64;

const P1: u64 = 0x9E37_79B1_85EB_CA87;
const P2: u64 = 0xC2B2_AE3D_27D4_EB4F;
const P3: u64 = 0x1656_67B1_9E37_79F9;
const P4: u64 = 0x85EB_CA77_C2B2_AE63;
const P5: u64 = 0x27D4_EB2F_1656_67C5;

#[inline(always)]
fn read_u64(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(word)
}

#[inline(always)]
fn read_u32(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0u8; 4];
    word.copy_from_slice(&bytes[at..at + 4]);
    u64::from(u32::from_le_bytes(word))
}

#[inline(always)]
fn lane_round(acc: u64, lane: u64) -> u64 {
    acc.wrapping_add(lane.wrapping_mul(P2))
        .rotate_left(31)
        .wrapping_mul(P1)
}

#[inline(always)]
fn merge_lane(acc: u64, lane: u64) -> u64 {
    (acc ^ lane_round(0, lane))
        .wrapping_mul(P1)
        .wrapping_add(P4)
}

/// XXH64 of `data` with `seed`, as specified by the xxHash project (`XXH64`, format
/// stable since xxHash 0.6). Chosen because it is fast on short keys, has a published
/// specification and reference vectors, and is available in every language, so a row's
/// decision can be recomputed outside Weir.
#[inline]
pub fn xxh64(data: &[u8], seed: u64) -> u64 {
    let len = data.len();
    let mut at = 0;
    let mut hash = if len >= 32 {
        let mut acc = [
            seed.wrapping_add(P1).wrapping_add(P2),
            seed.wrapping_add(P2),
            seed,
            seed.wrapping_sub(P1),
        ];
        while at + 32 <= len {
            for (lane, value) in acc.iter_mut().enumerate() {
                *value = lane_round(*value, read_u64(data, at + lane * 8));
            }
            at += 32;
        }
        let mut hash = acc[0]
            .rotate_left(1)
            .wrapping_add(acc[1].rotate_left(7))
            .wrapping_add(acc[2].rotate_left(12))
            .wrapping_add(acc[3].rotate_left(18));
        for value in acc {
            hash = merge_lane(hash, value);
        }
        hash
    } else {
        seed.wrapping_add(P5)
    };
    hash = hash.wrapping_add(len as u64);
    while at + 8 <= len {
        hash ^= lane_round(0, read_u64(data, at));
        hash = hash.rotate_left(27).wrapping_mul(P1).wrapping_add(P4);
        at += 8;
    }
    if at + 4 <= len {
        hash ^= read_u32(data, at).wrapping_mul(P1);
        hash = hash.rotate_left(23).wrapping_mul(P2).wrapping_add(P3);
        at += 4;
    }
    while at < len {
        hash ^= u64::from(data[at]).wrapping_mul(P5);
        hash = hash.rotate_left(11).wrapping_mul(P1);
        at += 1;
    }
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(P2);
    hash ^= hash >> 29;
    hash = hash.wrapping_mul(P3);
    hash ^ (hash >> 32)
}

/// The 56-bit randomness of a hashed key: the hash's top 56 bits.
#[inline(always)]
pub fn randomness_of_hash(hash: u64) -> u64 {
    hash >> (64 - RANDOMNESS_BITS)
}

/// Rejection threshold for keep probability `rate`, computed as OpenTelemetry's SDKs do:
/// `2^56 - round_half_even(rate * 2^56)`. A row is kept iff its randomness `R >= threshold`.
/// Rates outside `[0, 1]` are clamped.
#[inline]
pub fn threshold_for_rate(rate: f64) -> u64 {
    let rate = rate.clamp(0.0, 1.0);
    MAX_THRESHOLD - (rate * MAX_THRESHOLD as f64).round_ties_even() as u64
}

/// The exact probability that a uniformly random 56-bit `R` passes `threshold`; this (not
/// the configured rate, which it differs from by at most `2^-57`) is what `_sample_rate`
/// records.
#[inline]
pub fn rate_of_threshold(threshold: u64) -> f64 {
    (MAX_THRESHOLD - threshold.min(MAX_THRESHOLD)) as f64 / MAX_THRESHOLD as f64
}

/// The tracestate `th` encoding of `threshold` (W3C `ot=th:...`): 14 hex digits with
/// trailing zeros removed, `"0"` for the keep-everything threshold.
pub fn encode_th(threshold: u64) -> String {
    if threshold == 0 {
        return "0".to_owned();
    }
    let digits = format!("{threshold:014x}");
    digits.trim_end_matches('0').to_owned()
}

/// Parses a 32-hex-digit W3C trace id and returns its randomness: the lowest 56 bits.
#[inline]
pub fn trace_id_randomness(hex: &[u8]) -> Option<u64> {
    if hex.len() != 32 {
        return None;
    }
    let mut value = 0u64;
    for (index, &digit) in hex.iter().enumerate() {
        let nibble = match digit {
            b'0'..=b'9' => digit - b'0',
            b'a'..=b'f' => digit - b'a' + 10,
            b'A'..=b'F' => digit - b'A' + 10,
            _ => return None,
        };
        if index >= 18 {
            value = (value << 4) | u64::from(nibble);
        }
    }
    Some(value)
}

/// Randomness of a 16-byte binary trace id: its last 7 bytes, big-endian.
#[inline]
pub fn trace_id_randomness_binary(bytes: &[u8]) -> Option<u64> {
    if bytes.len() != 16 {
        return None;
    }
    Some(
        bytes[9..]
            .iter()
            .fold(0u64, |acc, &b| (acc << 8) | u64::from(b)),
    )
}
