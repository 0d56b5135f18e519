//! Window state of the stateful modes (`budget`, `target`) and its snapshot format.
//!
//! Rows are counted per group in windows of event time. A row's rate depends only on the
//! counts of rows before it (in partition order) and on the previous window's counts, never
//! on its own randomness, so each row's keep probability is fixed before its coin is
//! flipped and `1 / _sample_rate` re-weights without bias.
//!
//! * `budget`: the k-th row of a group in a window has rate 1 while `k <= per_second`;
//!   for the e-th row of the excess, `min(1, excess / max(prev_excess, e))`, where
//!   `prev_excess` is the group's excess in the previous window. A steady group keeps about
//!   `excess` rows of its excess; a group that suddenly grows is throttled within the
//!   window (at most `excess · (1 + ln(e / excess))` expected).
//! * `target`: at each window close the budget `B = events_per_second · window_seconds` is
//!   water-filled over the closed window's counts `n_g`: the level `L` solves
//!   `Σ min(n_g, L) = B` (or, when everything fits, `L = max n_g + (B − Σ n_g)`). The k-th row
//!   of group g in the next window has rate `min(1, L / max(prev_n_g, k))`.
//!
//! Windows: the current window is the latest one any row has reached. A row from a later
//! window closes it (the state is advanced row by row, so batch boundaries never matter);
//! a row from an earlier window (late data) or without a time is counted in the current
//! window. A jump of more than one window means the windows in between were empty.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::hash::MIN_RATE;

/// Group hash standing for every group beyond `max_groups`.
pub const OVERFLOW_GROUP: u64 = u64::MAX;

const MAGIC: &[u8; 4] = b"WSMP";
/// Version 2 added the settings fingerprint; version 1 snapshots are still restored.
const FORMAT_VERSION: u8 = 2;

/// Group keys are already XXH64 hashes; hashing them again would only cost time.
#[derive(Default)]
pub struct PassThroughHasher(u64);

impl Hasher for PassThroughHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(byte);
        }
    }
    fn write_u64(&mut self, value: u64) {
        self.0 = value;
    }
}

type GroupMap = HashMap<u64, Counts, BuildHasherDefault<PassThroughHasher>>;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Counts {
    /// Previous window: the excess (budget) or all rows (target) of the group.
    prev: u64,
    /// Rows of the group in the current window.
    current: u64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Policy {
    Budget { per_window: u64, excess: u64 },
    Target { per_window: f64 },
}

impl Policy {
    fn tag(&self) -> u8 {
        match self {
            Policy::Budget { .. } => 1,
            Policy::Target { .. } => 2,
        }
    }

    fn initial_level(&self) -> f64 {
        match self {
            Policy::Budget { .. } => 0.0,
            Policy::Target { per_window } => *per_window,
        }
    }
}

/// Counters the state reports through the operator's metrics.
#[derive(Debug, Default, Clone, Copy)]
pub struct StateCounters {
    pub late_rows: u64,
    pub no_time_rows: u64,
    pub overflow_rows: u64,
    pub windows_closed: u64,
}

#[derive(Debug)]
pub struct WindowState {
    policy: Policy,
    /// Fingerprint of the settings that give the counts their meaning (what a group is,
    /// how long a window is, which time it is measured on): a snapshot taken under other
    /// settings is refused rather than restored into counts that mean something else.
    settings: u64,
    max_groups: usize,
    current: Option<i64>,
    level: f64,
    groups: GroupMap,
    pub counters: StateCounters,
}

impl WindowState {
    pub fn new(policy: Policy, max_groups: usize) -> WindowState {
        WindowState {
            policy,
            settings: 0,
            max_groups,
            current: None,
            level: policy.initial_level(),
            groups: GroupMap::default(),
            counters: StateCounters::default(),
        }
    }

    /// Sets the settings fingerprint that snapshots carry and restores check.
    pub fn with_settings(mut self, settings: u64) -> WindowState {
        self.settings = settings;
        self
    }

    /// Counts one row of `group` at event-time `window` and returns the probability it is
    /// to be kept with.
    #[inline]
    pub fn next_rate(&mut self, group: u64, window: Option<i64>) -> f64 {
        match (window, self.current) {
            (Some(window), None) => self.current = Some(window),
            (Some(window), Some(current)) if window > current => self.advance(window, current),
            (Some(window), Some(current)) if window < current => self.counters.late_rows += 1,
            (Some(_), Some(_)) => {}
            (None, _) => self.counters.no_time_rows += 1,
        }
        let group = if group == OVERFLOW_GROUP {
            OVERFLOW_GROUP - 1
        } else {
            group
        };
        let group = if self.groups.len() < self.max_groups || self.groups.contains_key(&group) {
            group
        } else {
            self.counters.overflow_rows += 1;
            OVERFLOW_GROUP
        };
        let counts = self.groups.entry(group).or_default();
        counts.current += 1;
        let seen = counts.current;
        let rate = match self.policy {
            Policy::Budget { per_window, excess } => {
                if seen <= per_window {
                    1.0
                } else {
                    let over = seen - per_window;
                    excess as f64 / counts.prev.max(over) as f64
                }
            }
            Policy::Target { .. } => self.level / counts.prev.max(seen) as f64,
        };
        rate.clamp(MIN_RATE, 1.0)
    }

    fn advance(&mut self, window: i64, current: i64) {
        self.counters.windows_closed += 1;
        if window == current + 1 {
            if let Policy::Target { per_window } = self.policy {
                let mut counts: Vec<u64> = self.groups.values().map(|c| c.current).collect();
                self.level = water_level(&mut counts, per_window);
            }
            self.groups.retain(|_, counts| counts.current > 0);
            for counts in self.groups.values_mut() {
                counts.prev = match self.policy {
                    Policy::Budget { per_window, .. } => counts.current.saturating_sub(per_window),
                    Policy::Target { .. } => counts.current,
                };
                counts.current = 0;
            }
        } else {
            self.groups.clear();
            self.level = self.policy.initial_level();
        }
        self.current = Some(window);
    }

    /// Versioned binary snapshot; groups sorted so equal states give equal bytes.
    ///
    /// ```text
    /// "WSMP" | version u8 (2) | policy u8 (1 budget, 2 target) | settings u64
    ///        | has window u8 | window i64 | level f64 | groups u64
    ///        | groups × (group u64, prev u64, current u64)
    /// ```
    /// (all little-endian). Version 1 had no `settings`.
    pub fn snapshot(&self) -> Bytes {
        let mut groups: Vec<(u64, Counts)> = self.groups.iter().map(|(g, c)| (*g, *c)).collect();
        groups.sort_unstable_by_key(|(group, _)| *group);
        let mut out = BytesMut::with_capacity(32 + groups.len() * 24);
        out.put_slice(MAGIC);
        out.put_u8(FORMAT_VERSION);
        out.put_u8(self.policy.tag());
        out.put_u64_le(self.settings);
        out.put_u8(u8::from(self.current.is_some()));
        out.put_i64_le(self.current.unwrap_or(0));
        out.put_f64_le(self.level);
        out.put_u64_le(groups.len() as u64);
        for (group, counts) in groups {
            out.put_u64_le(group);
            out.put_u64_le(counts.prev);
            out.put_u64_le(counts.current);
        }
        out.freeze()
    }

    /// Restores a snapshot; on `Err` the state is left as it was.
    pub fn restore(&mut self, mut bytes: Bytes) -> Result<(), String> {
        // has window, window, level, group count
        const FIXED: usize = 1 + 8 + 8 + 8;
        if bytes.len() < 4 + 1 + 1 + FIXED || &bytes[..4] != MAGIC {
            return Err("not a sample state snapshot".to_owned());
        }
        bytes.advance(4);
        let version = bytes.get_u8();
        if version == 0 || version > FORMAT_VERSION {
            return Err(format!("unsupported snapshot version {version}"));
        }
        let tag = bytes.get_u8();
        if tag != self.policy.tag() {
            return Err(format!(
                "snapshot is of sample policy {tag}, this operator runs policy {}",
                self.policy.tag()
            ));
        }
        if version >= 2 {
            if bytes.len() < 8 + FIXED {
                return Err("snapshot is truncated".to_owned());
            }
            let settings = bytes.get_u64_le();
            if settings != self.settings {
                return Err(
                    "snapshot was taken with other group_by, window or time_field settings"
                        .to_owned(),
                );
            }
        }
        let has_window = bytes.get_u8() != 0;
        let window = bytes.get_i64_le();
        let level = bytes.get_f64_le();
        let count = bytes.get_u64_le();
        if count.checked_mul(24) != Some(bytes.len() as u64) {
            return Err(format!(
                "snapshot announces {count} groups but holds {} bytes of them",
                bytes.len()
            ));
        }
        let mut groups = GroupMap::with_capacity_and_hasher(count as usize, Default::default());
        for _ in 0..count {
            let group = bytes.get_u64_le();
            let prev = bytes.get_u64_le();
            let current = bytes.get_u64_le();
            groups.insert(group, Counts { prev, current });
        }
        self.current = has_window.then_some(window);
        self.level = level;
        self.groups = groups;
        Ok(())
    }

    #[cfg(test)]
    pub fn groups(&self) -> usize {
        self.groups.len()
    }
}

/// The water level `L` with `Σ min(n_g, L) = budget`; when everything fits, the slack is
/// given to the largest group (`L = max n_g + budget − Σ n_g`) so steady traffic is kept
/// whole and growth up to the budget is too. Sorting makes the result independent of the
/// map's iteration order.
pub fn water_level(counts: &mut [u64], budget: f64) -> f64 {
    counts.sort_unstable();
    let total: u64 = counts.iter().sum();
    if total as f64 <= budget {
        return counts.last().copied().unwrap_or(0) as f64 + (budget - total as f64);
    }
    let mut remaining = budget;
    let groups = counts.len();
    for (index, &count) in counts.iter().enumerate() {
        let left = (groups - index) as f64;
        if count as f64 * left > remaining {
            return remaining / left;
        }
        remaining -= count as f64;
    }
    remaining
}
