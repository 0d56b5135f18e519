//! The detector catalogue and the one-pass scanner.
//!
//! Every enabled detector contributes one or more patterns to a single multi-pattern
//! [`meta::Regex`]; a string is searched once, leftmost-first, and each candidate is handed
//! to its detector's check (Luhn, IBAN mod 97, SSN ranges, IP context, ...). A candidate that
//! fails its check is retried against the other patterns anchored at the same position, so a
//! Luhn-invalid digit run does not hide an SSN starting at the same byte. An email candidate
//! that fails its check (`logo@2x.png`) fails it from every later start inside its local
//! part too, so the rest of the local part is searched for the other patterns only.
//!
//! Before the regex runs, cheap [`Gate`]s decide whether the string can hold a hit at all.
//! Each pattern declares gates that are *necessary* for an accepted hit; a string that
//! passes no gate of any enabled pattern skips the regex entirely (the search could only
//! find candidates its checks reject, so skipping it changes no decision). Two kinds:
//!
//! * Trigger bytes and words, found for a whole column by passes over its value buffer
//!   ([`Scanner::column_hints`]) instead of one call per string: memchr for `@`; one
//!   memchr for the separators `=`, `:` and `%`, which notes `:` and `%40` and, unless the
//!   two bytes before it end no listed name, walks back from each `=` / `:` / `%3D` to see
//!   whether a listed parameter name precedes it; and one multi-literal search for key
//!   formats (`AKIA`, `ghp_`, `eyJ`, ...). Each bit is exact for its row, so such a gate
//!   costs one test of the row's bits.
//! * Number shapes, for the number-shaped detectors (card, SSN, phones, IBAN, IPv4). All of
//!   their digits lie in one run of `[0-9 .()+-]` bytes; runs long enough for some enabled
//!   detector are found by probing every n-th byte, and only they are walked, once, as a
//!   sequence of digit groups and separators ([`run_shapes`]). A card, for instance, needs a
//!   group starting with 2–6 on a word boundary and 13 digits in groups joined by single
//!   `[ -]`; an SSN groups of exactly 3, 2 and 4 digits joined by one and the same
//!   separator. Cookie ids, version numbers, timestamps and IP addresses have long digit
//!   runs but none of these shapes; most of them are ruled out before any walk by bit
//!   operations on masks of their digits and separators, classified sixteen bytes at a
//!   time ([`possible_shapes`]).
//!
//! On log data most strings (hosts, colo codes, methods, user agents, accept headers,
//! timestamps) stop there.

use std::net::{Ipv4Addr, Ipv6Addr};

use regex_automata::meta::{self, Regex};
use regex_automata::nfa::thompson::WhichCaptures;
use regex_automata::util::syntax;
use regex_automata::{Anchored, Input};

/// A necessary condition for a pattern to produce an accepted hit: a string that fails it
/// cannot produce one, whatever the regex finds. Each is cheap to test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Gate {
    /// Custom patterns: nothing is known about them.
    Always,
    /// An `@` in the string.
    At,
    /// An `@` or an encoded one (`%40`).
    AtOrEncoded,
    /// A `:` in the string.
    Colon,
    /// A `=`, `:` or `%3D` directly after a name from the parameter list (or
    /// `authorization`), checked by walking back from each separator.
    Names,
    /// One of the key-format literals (`AKIA`, `ghp_`, `eyJ`, `PRIVATE KEY`, ...) in a string
    /// of at least [`LITERAL_MIN_LEN`] bytes.
    Literal,
    /// Cards (`\b[2-6][0-9](?:[ -]?[0-9]){11,17}`): a digit group starting with 2–6 on a
    /// word boundary, at least 2 digits long, that starts a chain of groups joined by single
    /// `[ -]` holding 13 digits or more.
    Card,
    /// IBANs: a run of 10 bytes of `[0-9 ]` (the check insists on it), and somewhere two
    /// letters naming a country with IBANs, then two digits, on a word boundary.
    Iban,
    /// SSNs: digit groups of exactly 3, 2 and 4 digits joined by one and the same `[- .]`,
    /// not touching a word byte on either side.
    Ssn,
    /// North American phone numbers: after `[ .-)]`, a group of exactly 3 digits starting
    /// with 2–9, one `[ .-]`, and a group of exactly 4 digits not followed by a word byte
    /// (the exchange and the line number), in a run of at least 12 bytes.
    Nanp,
    /// International phone numbers: a `+` directly followed by 1–9, and at least 10 digits
    /// from there to the end of its run of `[0-9 .()+-]`.
    Intl,
    /// IPv4: 4 groups of 1–3 digits joined by single dots.
    Ipv4,
}

/// The literals behind [`Gate::Literal`]; every pattern gated by it starts with or contains
/// one of these exactly (no case folding).
const TRIGGER_LITERALS: &[&str] = &[
    "eyJ",
    "AKIA",
    "ASIA",
    "AGPA",
    "AIDA",
    "AROA",
    "AIPA",
    "ANPA",
    "ANVA",
    "ABIA",
    "ACCA",
    "A3T",
    "ghp_",
    "gho_",
    "ghu_",
    "ghs_",
    "ghr_",
    "github_pat_",
    "xoxa-",
    "xoxb-",
    "xoxp-",
    "xoxo-",
    "xoxs-",
    "xoxr-",
    "hooks.slack.com/services/",
    "sk_live_",
    "sk_test_",
    "rk_live_",
    "rk_test_",
    "AIza",
    "Bearer",
    "bearer",
    "BEARER",
    "Basic",
    "basic",
    "BASIC",
    "PRIVATE KEY",
    "aws",
    "AWS",
    "Aws",
];

/// Strings shorter than this cannot hold a [`Gate::Literal`] pattern.
const LITERAL_MIN_LEN: usize = 17;

/// Bits of a string's hint (see [`Scanner::column_hints`]). Every bit but `HINT_VALID`
/// states a fact about the string itself, exactly.
const HINT_VALID: u8 = 1;
/// An `@`.
const HINT_AT: u8 = 2;
/// A `%40`.
const HINT_AT_ENCODED: u8 = 4;
/// [`Gate::Names`] holds.
const HINT_NAMES: u8 = 8;
/// A `:`.
const HINT_COLON: u8 = 16;
/// A trigger literal, and at least [`LITERAL_MIN_LEN`] bytes.
const HINT_LITERAL: u8 = 32;

/// Bits of [`number_shapes`], one per number-shape gate.
const SHAPE_CARD: u8 = 1;
const SHAPE_IBAN: u8 = 2;
const SHAPE_SSN: u8 = 4;
const SHAPE_NANP: u8 = 8;
const SHAPE_INTL: u8 = 16;
const SHAPE_IPV4: u8 = 32;

/// The shortest run of `[0-9 .()+-]` that can hold each shape: a hit's digits and
/// separators are all in that class.
const SHAPE_MIN_RUN: [(u8, usize); 6] = [
    (SHAPE_CARD, 13),
    (SHAPE_IBAN, 10),
    (SHAPE_SSN, 11),
    (SHAPE_NANP, 12),
    (SHAPE_INTL, 11),
    (SHAPE_IPV4, 7),
];

/// Lazily computed facts about one string, shared by all gates.
struct Features<'a> {
    bytes: &'a [u8],
    hint: u8,
    shapes: Option<u8>,
}

/// The `\b` word bytes (the regexes are compiled without Unicode).
fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// The number shapes (`SHAPE_*` bits) of `wanted` found in `bytes`. `floor` is the shortest
/// run any wanted shape needs: runs of `[0-9 .()+-]` at least that long are found by
/// probing every `floor`-th byte (each such run covers a probe), so text without digits
/// costs a few probes instead of a pass over every byte. A probe that lands in a run walks
/// back to the run's start, then forward over the run once, summarizing it on the way
/// ([`RunSummary::walk`]).
fn number_shapes(bytes: &[u8], floor: usize, wanted: u8) -> u8 {
    walk_shapes(bytes, floor, wanted, true)
}

/// [`number_shapes`]; with `narrow`, `wanted` is first narrowed to the
/// [`possible_shapes`] of the string, when a probe first meets a byte of a run (strings
/// whose probes meet none never pay for it). Tests compare the two.
fn walk_shapes(bytes: &[u8], floor: usize, wanted: u8, narrow: bool) -> u8 {
    if wanted == 0 || bytes.len() < floor {
        return 0;
    }
    let step = floor.max(1);
    let mut found = 0u8;
    let mut wanted = wanted;
    let mut narrowed = !narrow;
    // Invariant: every run of `step` bytes or more not yet seen starts at or after
    // `probe + 1 - step`.
    let mut probe = step - 1;
    while probe < bytes.len() {
        if !PHONE_CLASS[usize::from(bytes[probe])] {
            probe += step;
            continue;
        }
        if !narrowed {
            narrowed = true;
            wanted &= possible_shapes(bytes);
            if wanted == 0 {
                return 0;
            }
        }
        let start = bytes[..probe]
            .iter()
            .rposition(|&b| !PHONE_CLASS[usize::from(b)])
            .map_or(0, |before| before + 1);
        let (summary, end) = RunSummary::walk(bytes, start);
        if end - start >= floor {
            if summary.may_hold() & wanted != 0 {
                found |= run_shapes(bytes, start, end);
            }
            // An IBAN hit is letters, digits and single spaces: the run of `[0-9 ]` its check
            // insists on follows a letter directly, so it starts the run, after a letter.
            if wanted & SHAPE_IBAN != 0
                && start > 0
                && bytes[start - 1].is_ascii_alphabetic()
                && bytes[start..end]
                    .iter()
                    .take_while(|b| b.is_ascii_digit() || **b == b' ')
                    .count()
                    >= 10
                && iban_start_before(bytes, start)
            {
                found |= SHAPE_IBAN;
            }
        }
        // `bytes[end]` ends the run: the next one starts at `end + 1` or later.
        probe = end + step;
    }
    found & wanted
}

/// Whether `bytes` holds a run of `[0-9 .()+-]` of at least `floor` bytes (what
/// [`number_shapes`] needs to find anything), probing every `floor`-th byte.
fn has_long_run(bytes: &[u8], floor: usize) -> bool {
    let step = floor.max(1);
    let mut probe = step - 1;
    while probe < bytes.len() {
        if !PHONE_CLASS[usize::from(bytes[probe])] {
            probe += step;
            continue;
        }
        let mut start = probe;
        while start > 0 && probe - start < floor && PHONE_CLASS[usize::from(bytes[start - 1])] {
            start -= 1;
        }
        let mut end = probe + 1;
        while end < bytes.len() && end - start < floor && PHONE_CLASS[usize::from(bytes[end])] {
            end += 1;
        }
        if end - start >= floor {
            return true;
        }
        probe = end + step;
    }
    false
}

/// The number shapes that [`number_shapes`] may find in `bytes`: every shape whose
/// necessary byte pattern the string holds (all of them for strings over 64 bytes). Each
/// test is implied by how [`run_shapes`], or the IBAN test of [`number_shapes`], finds its
/// shape. The bytes are classified sixteen at a time into bitmasks, so that a string full
/// of digits (an address, a time, a cookie id) is ruled out by a few bit operations instead
/// of a walk over its digit groups, whose ends are branches the CPU mispredicts.
fn possible_shapes(bytes: &[u8]) -> u8 {
    if bytes.len() > 64 {
        return u8::MAX;
    }
    let mut block = [0u8; 64];
    block[..bytes.len()].copy_from_slice(bytes);
    // Bytes past the string are zero, in no class.
    let [digit, space, dash, dot, plus, letter] = classify(&block, bytes.len().div_ceil(16));
    let digits = digit.count_ones();
    // An IBAN's country code is followed by two digits; every other shape but IPv4 has
    // seven or more.
    if digits < 2 {
        return SHAPE_IPV4;
    }
    let mut shapes = SHAPE_IPV4;
    // A letter, then ten bytes of `[0-9 ]`.
    if runs_from::<10>(digit | space) & (letter << 1) != 0 {
        shapes |= SHAPE_IBAN;
    }
    if digits < 7 {
        return shapes;
    }
    // A card's chain: 13 digits or more in groups joined by single `[ -]`, so 13 bytes of
    // digits and separators between two digits.
    let joins = (space | dash) & (digit << 1) & (digit >> 1);
    if digits >= 13 && runs_from::<13>(digit | joins) != 0 {
        shapes |= SHAPE_CARD;
    }
    // Bit `i`: a group of exactly 2, 3, 4 digits starts at `i`.
    let group_starts = digit & !(digit << 1);
    let two = group_starts & runs_from::<2>(digit) & !(digit >> 2);
    let three = group_starts & runs_from::<3>(digit) & !(digit >> 3);
    let four = group_starts & runs_from::<4>(digit) & !(digit >> 4);
    // A group of 3 digits, one separator, a group of 4; for an SSN, a group of 2 and one
    // more separator in between.
    let joint = space | dash | dot;
    let three_then = three & (joint >> 3);
    if three_then & (four >> 4) != 0 {
        shapes |= SHAPE_NANP;
    }
    if three_then & (two >> 4) & (joint >> 6) & (four >> 7) != 0 {
        shapes |= SHAPE_SSN;
    }
    // A `+` directly followed by a digit, and 10 digits.
    if digits >= 10 && plus & (digit >> 1) != 0 {
        shapes |= SHAPE_INTL;
    }
    shapes
}

/// Bit `i` set where `mask` has bits `i..i + K` all set (`K` at least 1), by doubling.
#[inline(always)]
fn runs_from<const K: u32>(mask: u64) -> u64 {
    let (mut run, mut covered) = (mask, 1);
    while covered < K {
        let step = (K - covered).min(covered);
        run &= run >> step;
        covered += step;
    }
    run
}

/// Bitmasks of the first `lanes` 16-byte lanes of `block` (bit `i`: `block[i]`): digits,
/// spaces, dashes, dots, `+` and ASCII letters.
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
fn classify(block: &[u8; 64], lanes: usize) -> [u64; 6] {
    // SAFETY: SSE2 is part of the x86_64 baseline, so every CPU that runs this build has
    // it; the function reads nothing but its arguments.
    unsafe { classify_sse2(block, lanes) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse2")]
fn classify_sse2(block: &[u8; 64], lanes: usize) -> [u64; 6] {
    use core::arch::x86_64::{
        __m128i, _mm_and_si128, _mm_cmpeq_epi8, _mm_cmpgt_epi8, _mm_cmplt_epi8, _mm_movemask_epi8,
        _mm_or_si128, _mm_set_epi64x, _mm_set1_epi8,
    };
    let byte = |b: u8| _mm_set1_epi8(b as i8);
    // Signed compares: bytes of 0x80 and over are negative, so below every bound here.
    let between = |v: __m128i, lo: u8, hi: u8| {
        _mm_and_si128(
            _mm_cmpgt_epi8(v, byte(lo - 1)),
            _mm_cmplt_epi8(v, byte(hi + 1)),
        )
    };
    let mut masks = [0u64; 6];
    for (k, lane) in block.chunks_exact(16).take(lanes).enumerate() {
        let word = |at: usize| u64::from_le_bytes(lane[at..at + 8].try_into().expect("8 bytes"));
        let v = _mm_set_epi64x(word(8) as i64, word(0) as i64);
        let classes = [
            between(v, b'0', b'9'),
            _mm_cmpeq_epi8(v, byte(b' ')),
            _mm_cmpeq_epi8(v, byte(b'-')),
            _mm_cmpeq_epi8(v, byte(b'.')),
            _mm_cmpeq_epi8(v, byte(b'+')),
            between(_mm_or_si128(v, byte(0x20)), b'a', b'z'),
        ];
        for (mask, class) in masks.iter_mut().zip(classes) {
            *mask |= u64::from(_mm_movemask_epi8(class) as u16) << (16 * k);
        }
    }
    masks
}

#[cfg(not(target_arch = "x86_64"))]
fn classify(block: &[u8; 64], lanes: usize) -> [u64; 6] {
    classify_bytewise(block, lanes)
}

/// [`classify`] a byte at a time: what other targets run, and what tests compare with.
#[cfg(any(test, not(target_arch = "x86_64")))]
fn classify_bytewise(block: &[u8; 64], lanes: usize) -> [u64; 6] {
    let mut masks = [0u64; 6];
    for (i, &b) in block.iter().enumerate().take(16 * lanes) {
        let classes = [
            b.is_ascii_digit(),
            b == b' ',
            b == b'-',
            b == b'.',
            b == b'+',
            b.is_ascii_alphabetic(),
        ];
        for (mask, class) in masks.iter_mut().zip(classes) {
            *mask |= u64::from(class) << i;
        }
    }
    masks
}

/// Counts over one run of `[0-9 .()+-]`, taken in one cheap pass, that rule out most runs
/// (IP addresses, dates, version numbers) before [`run_shapes`] looks at their groups.
struct RunSummary {
    digits: usize,
    /// Bit `k` (k < 31): a group of exactly `k` digits; bit 31: a longer one.
    lens: u32,
    /// The most digits in groups joined by single `[ -]` (an upper bound of a card's).
    chain: usize,
    /// A `+`.
    plus: bool,
}

impl RunSummary {
    /// Walks the run of `[0-9 .()+-]` that starts at `bytes[start]` (maximal on the left)
    /// group by group; returns its summary and its end (the first byte after it).
    fn walk(bytes: &[u8], start: usize) -> (RunSummary, usize) {
        let mut summary = RunSummary {
            digits: 0,
            lens: 0,
            chain: 0,
            plus: false,
        };
        // Digits of the current chain of groups joined by single `[ -]`.
        let mut chain = 0usize;
        let mut i = start;
        loop {
            let group_start = i;
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
            let group = i - group_start;
            summary.lens |= 1 << group.min(31);
            summary.digits += group;
            chain += group;
            // The byte after the group: a separator inside the run, or the run's end.
            let Some(&b) = bytes.get(i) else { break };
            if !PHONE_CLASS[usize::from(b)] {
                break;
            }
            // A single `[ -]` after a digit may join the next group to the chain; anything
            // else ends it.
            if group == 0 || !matches!(b, b' ' | b'-') {
                summary.chain = summary.chain.max(chain);
                chain = 0;
            }
            summary.plus |= b == b'+';
            i += 1;
        }
        summary.chain = summary.chain.max(chain);
        (summary, i)
    }

    /// The shapes but IBAN this run may hold: each test is implied by the shape's definition (with
    /// the area code a NANP number has 10 digits in the run, an international one 10 after
    /// its `+`).
    fn may_hold(&self) -> u8 {
        let has = |k: u32| self.lens & (1 << k) != 0;
        let mut shapes = 0;
        if self.chain >= 13 {
            shapes |= SHAPE_CARD;
        }
        if self.digits >= 9 && has(2) && has(3) && has(4) {
            shapes |= SHAPE_SSN;
        }
        if self.digits >= 10 && has(3) && has(4) {
            shapes |= SHAPE_NANP;
        }
        if self.plus && self.digits >= 10 {
            shapes |= SHAPE_INTL;
        }
        if self.digits >= 4 && self.lens & 0b1110 != 0 {
            shapes |= SHAPE_IPV4;
        }
        shapes
    }
}

/// A maximal group of ASCII digits, `bytes[start..end]`.
#[derive(Clone, Copy)]
struct Group {
    start: usize,
    end: usize,
}

impl Group {
    fn len(&self) -> usize {
        self.end - self.start
    }
}

/// The shapes but IBAN in the run `bytes[start..end]` of `[0-9 .()+-]` (maximal: the bytes
/// around it are outside the class). Walks the run once as digit groups; each shape is
/// tested when the group that completes it ends, from the last two groups.
fn run_shapes(bytes: &[u8], start: usize, end: usize) -> u8 {
    let word_before = |i: usize| i > 0 && is_word(bytes[i - 1]);
    let word_at = |i: usize| bytes.get(i).copied().is_some_and(is_word);
    let mut found = 0u8;
    let (mut prev, mut prev2): (Option<Group>, Option<Group>) = (None, None);
    // Digits of the current chain of card groups since its first possible card start (0:
    // no start yet).
    let mut card = 0usize;
    // Groups of 1–3 digits joined by single dots, ending with the current group.
    let mut dotted = 0usize;
    let mut digits = 0usize;
    // Digits before the first `+` that is directly followed by 1–9.
    let mut plus: Option<usize> = None;
    let mut i = start;
    while i < end {
        let b = bytes[i];
        if !b.is_ascii_digit() {
            if b == b'+' && plus.is_none() && matches!(bytes.get(i + 1), Some(b'1'..=b'9')) {
                plus = Some(digits);
            }
            i += 1;
            continue;
        }
        let g_start = i;
        while i < end && bytes[i].is_ascii_digit() {
            i += 1;
        }
        let g = Group {
            start: g_start,
            end: i,
        };
        let len = g.len();
        digits += len;
        // The single separator between the previous group and this one, if that is all
        // that lies between them.
        let joint = prev.filter(|p| p.end + 1 == g.start).map(|p| bytes[p.end]);
        let card_start = matches!(bytes[g.start], b'2'..=b'6') && len >= 2 && !word_before(g.start);
        card = if card > 0 && matches!(joint, Some(b' ' | b'-')) {
            card + len
        } else if card_start {
            len
        } else {
            0
        };
        if card >= 13 {
            found |= SHAPE_CARD;
        }
        dotted = match (len <= 3, joint) {
            (false, _) => 0,
            (true, Some(b'.')) if dotted > 0 => dotted + 1,
            (true, _) => 1,
        };
        if dotted >= 4 {
            found |= SHAPE_IPV4;
        }
        // Both end with a group of exactly 4 digits: the line number, the SSN serial.
        if len == 4 && !word_at(g.end) {
            if let Some(p) = prev.filter(|p| p.len() == 3) {
                let after_area =
                    p.start > 0 && matches!(bytes[p.start - 1], b' ' | b'.' | b'-' | b')');
                if matches!(bytes[p.start], b'2'..=b'9')
                    && matches!(joint, Some(b' ' | b'.' | b'-'))
                    && after_area
                {
                    found |= SHAPE_NANP;
                }
            }
            if let (Some(p), Some(p2)) = (prev, prev2)
                && p.len() == 2
                && p2.len() == 3
                && p2.end + 1 == p.start
                && matches!(joint, Some(b'-' | b' ' | b'.'))
                && joint == Some(bytes[p2.end])
                && !word_before(p2.start)
            {
                found |= SHAPE_SSN;
            }
        }
        prev2 = prev;
        prev = Some(g);
    }
    if plus.is_some_and(|before| digits - before >= 10) {
        found |= SHAPE_INTL;
    }
    let run = end - start;
    let fits = SHAPE_MIN_RUN
        .iter()
        .filter(|(_, min)| run >= *min)
        .fold(0, |bits, (bit, _)| bits | bit);
    found & fits
}

/// Whether an IBAN hit can hold the run of `[0-9 ]` that starts at `run`: two letters
/// naming a country with IBANs, then two digits, on a word boundary, and only
/// `[A-Za-z0-9 ]` from there to the run. The hit starts before the run (with its
/// letters), so the walk goes backwards from it.
fn iban_start_before(bytes: &[u8], run: usize) -> bool {
    let mut from = run;
    while from > 0 && (bytes[from - 1].is_ascii_alphanumeric() || bytes[from - 1] == b' ') {
        from -= 1;
    }
    (from..run).any(|i| {
        bytes.len() >= i + 4
            && bytes[i].is_ascii_alphabetic()
            && bytes[i + 1].is_ascii_alphabetic()
            && bytes[i + 2].is_ascii_digit()
            && bytes[i + 3].is_ascii_digit()
            && (i == 0 || !is_word(bytes[i - 1]))
            && iban_length([
                bytes[i].to_ascii_uppercase(),
                bytes[i + 1].to_ascii_uppercase(),
            ])
            .is_some()
    })
}

const fn phone_class() -> [bool; 256] {
    let mut table = [false; 256];
    let mut b = 0usize;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_digit() || matches!(c, b' ' | b'-' | b'.' | b'(' | b')' | b'+');
        b += 1;
    }
    table
}

/// `[0-9 .()+-]`: every byte of a number-shaped hit's digits and separators.
static PHONE_CLASS: [bool; 256] = phone_class();

/// Whether the separator at `bytes[at]` (`=`, `:`, or the `%` of `%3D` / `%253D`) directly
/// follows a listed name (see [`Gate::Names`]). A superset of what the `params` and
/// `auth_header` patterns can match there.
///
/// Most separators in log data follow two bytes that no listed name ends with (the digits
/// before a time's `:`, `;q` before `=0.9`, `ge` of `page=`): those bytes settle them
/// here, and only the others are walked back by [`name_ends_at`].
#[inline]
fn name_before_separator(bytes: &[u8], at: usize, names: &NameList) -> bool {
    let Some(allow_quote) = separator_allows_quote(bytes, at) else {
        return false;
    };
    let Some(&last) = at.checked_sub(1).and_then(|i| bytes.get(i)) else {
        return false;
    };
    // Unless skipped by the walk (the name then ends further back), `last` ends the name
    // and the byte before it either precedes it in the name or starts a one-byte name.
    if !matches!(last, b' ' | b'\t' | b'"' | b'\'') {
        let before = at.checked_sub(2).map_or(0, |i| bytes[i]);
        if !names.may_end_with_pair(before, last) {
            return false;
        }
    }
    name_ends_at(bytes, at, allow_quote, names)
}

/// The separator at `bytes[at]`: `Some(allow_quote)` for `:` (a quoted name may precede
/// it), `=`, `%3D` and `%253D`; `None` for a `%` that encodes something else.
fn separator_allows_quote(bytes: &[u8], at: usize) -> Option<bool> {
    match bytes[at] {
        b'=' => Some(false),
        b':' => Some(true),
        _ => {
            let rest = &bytes[at + 1..];
            let encoded_eq = rest.len() >= 2 && rest[0] == b'3' && (rest[1] | 0x20) == b'd';
            let twice = rest.len() >= 4 && rest.starts_with(b"253") && (rest[3] | 0x20) == b'd';
            (encoded_eq || twice).then_some(false)
        }
    }
}

/// Whether a listed name ends right before `bytes[end]`, after optional spaces or tabs
/// and, with `allow_quote`, one closing quote (`"token": ...`).
fn name_ends_at(bytes: &[u8], mut end: usize, allow_quote: bool, names: &NameList) -> bool {
    let is_name = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-');
    while end > 0 && matches!(bytes[end - 1], b' ' | b'\t') {
        end -= 1;
    }
    if allow_quote && end > 0 && matches!(bytes[end - 1], b'"' | b'\'') {
        end -= 1;
    }
    if end == 0 || !is_name(bytes[end - 1]) || !names.may_end_with(bytes[end - 1]) {
        return false;
    }
    let mut start = end - 1;
    while start > 0 && is_name(bytes[start - 1]) {
        start -= 1;
    }
    let run = &bytes[start..end];
    if names.matches_bytes(run) {
        return true;
    }
    // `%26token=`: the name may follow an escape (`%26`, or `%2526` encoded twice).
    let encoded = start > 0 && bytes[start - 1] == b'%';
    encoded
        && [2, 4].into_iter().any(|skip| {
            run.get(skip..)
                .is_some_and(|name| !name.is_empty() && names.matches_bytes(name))
        })
}

/// Whether some `=`, `:` or `%3D` in `bytes` directly follows a listed name.
fn has_listed_name(bytes: &[u8], names: &NameList) -> bool {
    memchr::memchr3_iter(b'=', b':', b'%', bytes).any(|at| name_before_separator(bytes, at, names))
}

/// The check run on a candidate before it counts as a hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Check {
    None,
    Email,
    Card,
    Ipv4,
    Ipv6,
    Ssn,
    PhoneNanp,
    PhoneIntl,
    Iban,
    /// The value of a named parameter: skip values that are already a placeholder.
    Param,
    /// The candidate must not be followed by another token byte.
    TokenEnd,
}

/// Names of the built-in detectors, in the order they take part in matching.
pub const BUILTIN_DETECTORS: &[&str] = &[
    "private_key",
    "jwt",
    "aws_access_key",
    "aws_secret_key",
    "github_token",
    "slack_token",
    "stripe_key",
    "google_api_key",
    "auth_header",
    "url_credentials",
    "params",
    "email",
    "iban",
    "card",
    "ssn",
    "phone",
    "ipv6",
    "ipv4",
];

/// Detectors that are off unless enabled: IP addresses in free text are often wanted
/// (and `ClientIP` columns are better served by a `truncate_ip` field rule).
pub const OFF_BY_DEFAULT: &[&str] = &["ipv4", "ipv6"];

/// Default names whose query, form, cookie and JSON values are redacted. A leading `*`
/// matches any prefix (`*_token` matches `access_token`).
pub const DEFAULT_PARAMS: &[&str] = &[
    "token",
    "*_token",
    "*-token",
    "*token",
    "key",
    "api_key",
    "apikey",
    "api-key",
    "access_key",
    "secret_key",
    "private_key",
    "password",
    "passwd",
    "pwd",
    "pass",
    "*_password",
    "secret",
    "*_secret",
    "sig",
    "signature",
    "*-signature",
    "*_signature",
    "auth",
    "*_auth",
    "session",
    "sessionid",
    "session_id",
    "sid",
    "phpsessid",
    "jsessionid",
    "code",
    "otp",
    "credential",
    "credentials",
];

/// Default header names (map keys) whose whole value is redacted.
pub const DEFAULT_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "x-api-key",
    "x-auth-token",
    "x-csrf-token",
    "x-xsrf-token",
    "x-amz-security-token",
    "x-goog-api-key",
];

/// The placeholder a built-in detector writes in place of what it found.
pub fn builtin_placeholder(name: &str) -> &'static str {
    match name {
        "email" => "[EMAIL]",
        "card" => "[CARD]",
        "ipv4" => "[IPV4]",
        "ipv6" => "[IPV6]",
        "ssn" => "[SSN]",
        "phone" => "[PHONE]",
        "iban" => "[IBAN]",
        "jwt" => "[JWT]",
        "aws_access_key" => "[AWS_ACCESS_KEY]",
        "aws_secret_key" => "[AWS_SECRET_KEY]",
        "github_token" => "[GITHUB_TOKEN]",
        "slack_token" => "[SLACK_TOKEN]",
        "stripe_key" => "[STRIPE_KEY]",
        "google_api_key" => "[GOOGLE_API_KEY]",
        "auth_header" => "[CREDENTIALS]",
        "private_key" => "[PRIVATE_KEY]",
        "url_credentials" => "[CREDENTIALS]",
        "params" => "[REDACTED]",
        _ => "[REDACTED]",
    }
}

/// One pattern of the combined matcher.
#[derive(Debug, Clone)]
pub(crate) struct PatternSpec {
    pub detector: usize,
    pub source: String,
    /// Redact only capture group 1 instead of the whole match.
    pub group: bool,
    pub check: Check,
    pub gates: Vec<Gate>,
    /// Search the redacted group again: it is a free-form value (`key: ...`) that may
    /// start a longer secret.
    pub rescan: bool,
}

/// A name list (parameters or headers) as a regex alternation and as a matcher for map keys.
#[derive(Debug, Clone, Default)]
pub(crate) struct NameList {
    exact: Vec<String>,
    suffixes: Vec<String>,
    /// Entries by their last byte (all entries are lowercase): `(entry, is_suffix)`. A
    /// name can only match an entry that ends with its own lowercased last byte.
    by_last: Vec<Vec<(Box<[u8]>, bool)>>,
    /// By last byte, the lengths of the exact entries (bit `n`, longer ones in bit 63) and
    /// the length of the shortest suffix entry (`usize::MAX`: none), so that most names
    /// (`page`, `utm_source`, `accept-encoding`) are ruled out before any comparison.
    exact_lens: Vec<u64>,
    min_suffix: Vec<usize>,
    /// Bit `256 * a + b`: some name the list matches can end with the (lowercased) bytes
    /// `a`, `b`; for entries of one byte (and the bare `*`), `a` is any byte (a one-byte
    /// name is looked up with `a` = 0). See [`NameList::may_end_with_pair`].
    tails: Vec<u64>,
    /// The same bits for the suffix entries alone.
    suffix_tails: Vec<u64>,
    /// Whether the list holds the empty name (it has no last byte).
    empty: bool,
}

impl NameList {
    /// `names` must already be validated by [`valid_name`].
    pub fn new<S: AsRef<str>>(names: &[S]) -> NameList {
        let mut list = NameList {
            by_last: vec![Vec::new(); 256],
            exact_lens: vec![0; 256],
            min_suffix: vec![usize::MAX; 256],
            tails: vec![0; 256 * 256 / 64],
            suffix_tails: vec![0; 256 * 256 / 64],
            ..NameList::default()
        };
        for name in names {
            let name = name.as_ref().to_ascii_lowercase();
            let (entry, is_suffix) = match name.strip_prefix('*') {
                Some(suffix) => {
                    list.suffixes.push(suffix.to_owned());
                    (suffix.to_owned(), true)
                }
                None => {
                    list.exact.push(name.clone());
                    (name, false)
                }
            };
            match entry.as_bytes().last() {
                Some(&last) => list.by_last[usize::from(last)]
                    .push((entry.into_bytes().into_boxed_slice(), is_suffix)),
                // `*` alone matches every non-empty name
                None if is_suffix => {
                    for bucket in &mut list.by_last {
                        bucket.push((Box::default(), true));
                    }
                }
                None => list.empty = true,
            }
        }
        for (last, bucket) in list.by_last.iter().enumerate() {
            for (entry, is_suffix) in bucket {
                if *is_suffix {
                    list.min_suffix[last] = list.min_suffix[last].min(entry.len());
                } else {
                    list.exact_lens[last] |= 1 << entry.len().min(63);
                }
                // A name matching an entry of two bytes or more ends with the entry's last
                // two bytes; one matching a shorter entry may have anything before its last.
                let befores = match entry.len() {
                    0 | 1 => 0..256,
                    n => {
                        let before = usize::from(entry[n - 2]);
                        before..before + 1
                    }
                };
                for before in befores {
                    let bit = before * 256 + last;
                    list.tails[bit / 64] |= 1 << (bit % 64);
                    if *is_suffix {
                        list.suffix_tails[bit / 64] |= 1 << (bit % 64);
                    }
                }
            }
        }
        list
    }

    /// Whether `name` is listed, ASCII case-insensitively (exact, or longer than a `*`
    /// suffix and ending with it).
    #[inline]
    pub fn matches_bytes(&self, name: &[u8]) -> bool {
        let Some(&last) = name.last() else {
            return self.empty;
        };
        // Most names (map keys such as `accept`, `x-forwarded-proto`) end with two bytes no
        // entry ends with; a one-byte name has nothing before its last byte.
        let before = name.len().checked_sub(2).map_or(0, |i| name[i]);
        self.may_end_with_pair(before, last) && self.matches_entries(name, before, last)
    }

    /// [`NameList::matches_bytes`] past its first test: compares `name` (whose last two
    /// bytes are `before`, `last`) with the entries ending with `last`.
    fn matches_entries(&self, name: &[u8], before: u8, last: u8) -> bool {
        let tail = pair_bit(before, last);
        let last = usize::from(last.to_ascii_lowercase());
        let exact_lens = self.exact_lens.get(last).copied().unwrap_or(0);
        let min_suffix = self.min_suffix.get(last).copied().unwrap_or(usize::MAX);
        // An exact entry has the name's length; a suffix entry is shorter than the name
        // and ends with the same two bytes (or is one byte long).
        let exact = exact_lens & (1 << name.len().min(63)) != 0;
        let suffix = name.len() > min_suffix && bit_set(&self.suffix_tails, tail);
        if !exact && !suffix {
            return false;
        }
        let Some(bucket) = self.by_last.get(last) else {
            return false;
        };
        bucket.iter().any(|(entry, is_suffix)| {
            if *is_suffix {
                name.len() > entry.len()
                    && name[name.len() - entry.len()..].eq_ignore_ascii_case(entry)
            } else {
                name.len() == entry.len() && name.eq_ignore_ascii_case(entry)
            }
        })
    }

    /// Whether a name the list matches can end with `before`, `last` (ASCII case-insensitively):
    /// a name whose last two bytes fail this cannot match, nor can a one-byte name after
    /// `before`. Cheaper than walking back to the name's start.
    #[inline]
    fn may_end_with_pair(&self, before: u8, last: u8) -> bool {
        bit_set(&self.tails, pair_bit(before, last))
    }

    /// Whether some entry ends with `byte` (lowercased): a name whose last byte fails
    /// this cannot match.
    fn may_end_with(&self, byte: u8) -> bool {
        self.by_last
            .get(usize::from(byte.to_ascii_lowercase()))
            .is_some_and(|bucket| !bucket.is_empty())
    }

    fn alternation(&self) -> String {
        let mut parts: Vec<String> = self.exact.iter().map(|n| regex_escape(n)).collect();
        parts.extend(
            self.suffixes
                .iter()
                .map(|s| format!("[a-z0-9_.-]+{}", regex_escape(s))),
        );
        parts.join("|")
    }

    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.suffixes.is_empty()
    }
}

/// The bit of the (lowercased) byte pair `before`, `last` in a [`NameList`] tail set.
#[inline]
fn pair_bit(before: u8, last: u8) -> usize {
    usize::from(before.to_ascii_lowercase()) * 256 + usize::from(last.to_ascii_lowercase())
}

#[inline]
fn bit_set(set: &[u64], bit: usize) -> bool {
    set.get(bit / 64)
        .is_some_and(|word| word & (1 << (bit % 64)) != 0)
}

/// Whether `name` is usable in a parameter or header list: `[A-Za-z0-9_.-]+`, optionally
/// with one leading `*`.
pub fn valid_name(name: &str) -> bool {
    let body = name.strip_prefix('*').unwrap_or(name);
    !body.is_empty()
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

fn regex_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        if !ch.is_ascii_alphanumeric() && ch != '_' {
            out.push('\\');
        }
        out.push(ch);
    }
    out
}

/// The patterns of built-in detector `name` (index `detector` in the profile).
pub(crate) fn builtin_patterns(name: &str, detector: usize, params: &NameList) -> Vec<PatternSpec> {
    let p = |source: String, group: bool, check: Check, gates: &[Gate]| PatternSpec {
        detector,
        source,
        group,
        check,
        gates: gates.to_vec(),
        rescan: matches!(name, "params" | "auth_header"),
    };
    // A non-ASCII character of two or three UTF-8 bytes (accented letters, CJK): lets emails
    // and hosts carry Unicode without compiling Unicode classes into the automaton. Four-byte
    // characters (emoji) are left out so that they delimit an address.
    const U: &str = r"(?:[\xC2-\xDF][\x80-\xBF]|[\xE0-\xEF][\x80-\xBF]{2})";
    match name {
        "email" => {
            let alnum = format!("(?:[A-Za-z0-9]|{U})");
            let label = format!("{alnum}(?:(?:[A-Za-z0-9-]|{U})*{alnum})?");
            vec![p(
                format!(
                    r"(?:[A-Za-z0-9._%+'-]|{U})+(?:@|%40){label}(?:\.{label})*\.(?:[A-Za-z]|{U}){{2,}}"
                ),
                false,
                Check::Email,
                &[Gate::AtOrEncoded],
            )]
        }
        "card" => vec![p(
            r"\b[2-6][0-9](?:[ -]?[0-9]){11,17}\b".into(),
            false,
            Check::Card,
            &[Gate::Card],
        )],
        "ssn" => vec![p(
            r"\b[0-9]{3}[- .][0-9]{2}[- .][0-9]{4}\b".into(),
            false,
            Check::Ssn,
            &[Gate::Ssn],
        )],
        "phone" => vec![
            p(
                r"(?:\+1[ .-]?|\b1[ .-])?(?:\([2-9][0-9]{2}\)[ .-]?|\b[2-9][0-9]{2}[ .-])[2-9][0-9]{2}[ .-][0-9]{4}\b"
                    .into(),
                false,
                Check::PhoneNanp,
                &[Gate::Nanp],
            ),
            p(
                r"\+[1-9](?:[ .-]?\(?[0-9]\)?){9,14}\b".into(),
                false,
                Check::PhoneIntl,
                &[Gate::Intl],
            ),
        ],
        "iban" => vec![p(
            r"(?i)\b[a-z]{2}[0-9]{2}(?: ?[a-z0-9]){11,30}\b".into(),
            false,
            Check::Iban,
            &[Gate::Iban],
        )],
        "ipv4" => {
            let octet = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])";
            vec![p(
                format!(r"\b{octet}(?:\.{octet}){{3}}\b"),
                false,
                Check::Ipv4,
                &[Gate::Ipv4],
            )]
        }
        "ipv6" => vec![p(
            r"[0-9A-Fa-f.]*:[0-9A-Fa-f.]*:[0-9A-Fa-f:.]*".into(),
            false,
            Check::Ipv6,
            &[Gate::Colon],
        )],
        "jwt" => vec![p(
            r"\beyJ[A-Za-z0-9_-]{14,}\.[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]*".into(),
            false,
            Check::None,
            &[Gate::Literal],
        )],
        "aws_access_key" => vec![p(
            r"\b(?:A3T[A-Z0-9]|AKIA|ASIA|AGPA|AIDA|AROA|AIPA|ANPA|ANVA|ABIA|ACCA)[A-Z0-9]{16}\b"
                .into(),
            false,
            Check::None,
            &[Gate::Literal],
        )],
        "aws_secret_key" => vec![p(
            r"(?:aws|AWS|Aws)(?i:.{0,20}?(?:key|pwd|pw|password|pass|token|secret).{0,20}?)([A-Za-z0-9/+]{40})"
                .into(),
            true,
            Check::TokenEnd,
            &[Gate::Literal],
        )],
        "github_token" => vec![p(
            r"\b(?:gh[pousr]_[A-Za-z0-9]{36}[A-Za-z0-9]*|github_pat_[A-Za-z0-9_]{22}[A-Za-z0-9_]*)".into(),
            false,
            Check::None,
            &[Gate::Literal],
        )],
        "slack_token" => vec![
            p(
                r"\bxox[abposr]-[A-Za-z0-9-]{12,}".into(),
                false,
                Check::None,
                &[Gate::Literal],
            ),
            p(
                r"hooks\.slack\.com/services/(T[A-Za-z0-9_]+/B[A-Za-z0-9_]+/[A-Za-z0-9_]+)"
                    .into(),
                true,
                Check::None,
                &[Gate::Literal],
            ),
        ],
        "stripe_key" => vec![p(
            r"\b(?:sk|rk)_(?:live|test)_[0-9A-Za-z]{16,}".into(),
            false,
            Check::None,
            &[Gate::Literal],
        )],
        "google_api_key" => vec![p(
            r"\bAIza[0-9A-Za-z_-]{35}".into(),
            false,
            Check::None,
            &[Gate::Literal],
        )],
        "auth_header" => vec![
            p(
                r#"(?i)\b(?:proxy-)?authorization(?:\s*=|\s*:\s|["']\s*:)\s*["']?(?:(?:bearer|basic|token|digest|negotiate|apikey)\s+)?([^\s"',;&]+)"#
                    .into(),
                true,
                Check::None,
                &[Gate::Names],
            ),
            p(
                r"\b(?:[Bb]earer|BEARER|[Bb]asic|BASIC)\s+([A-Za-z0-9_~+/-]{17}[A-Za-z0-9._~+/=-]*)".into(),
                true,
                Check::None,
                &[Gate::Literal],
            ),
        ],
        "private_key" => vec![p(
            r"-----BEGIN[A-Z ]{0,30}PRIVATE KEY(?: BLOCK)?-----(?:[^-]|-[^-])*(?:-----END[A-Z ]{0,30}PRIVATE KEY(?: BLOCK)?-----)?"
                .into(),
            false,
            Check::None,
            &[Gate::Literal],
        )],
        "url_credentials" => vec![p(
            r"(?i)\b[a-z][a-z0-9+.-]*://([^\s/?#@:]+:[^\s/?#]*)@".into(),
            true,
            Check::None,
            &[Gate::At],
        )],
        "params" => {
            if params.is_empty() {
                return Vec::new();
            }
            let names = params.alternation();
            // `%XX` escapes other than an encoded `&` (%26, or %2526 when encoded twice).
            let escape = r"%(?:[013-9a-f][0-9a-f]|2[0-47-9a-f]|25(?:[013-9a-f][0-9a-f]|2[0-57-9a-f]))";
            vec![p(
                format!(
                    r#"(?i)(?:^|[?&;#,\s"'{{(]|%26|%3f|%2526|%253f)["']?(?:{names})(?:\s*=|%3d|%253d|["']\s*:|\s*:\s)\s*["']?((?:[^&;#\s"',}}%\x00-\x1f]|{escape})+)"#
                ),
                true,
                Check::Param,
                &[Gate::Names],
            )]
        }
        _ => Vec::new(),
    }
}

/// A hit: bytes `start..end` of the scanned string belong to detector `detector`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Hit {
    pub start: usize,
    pub end: usize,
    pub detector: usize,
}

/// See [`Screen::prescreen`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Prescreen {
    /// A hint gate admits the string: it is searched.
    Search,
    /// No gate can admit it.
    Skip,
    /// Only a number-shape gate can admit it.
    Shapes,
}

/// A small copy of the scanner's gate settings ([`Scanner::screen`]), so that a loop over a
/// column keeps them in registers instead of reading them again for every string.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Screen {
    /// No pattern is enabled.
    none: bool,
    always: bool,
    hint_bits: u8,
    /// The shortest string a number shape can admit (`usize::MAX`: no shape is enabled).
    shapes_from: usize,
}

impl Screen {
    /// What the gates make of a string of `len` bytes with column hint `hint` (from
    /// [`Scanner::column_hints`]) before its bytes are looked at: [`Prescreen::Shapes`]
    /// leaves it to [`Scanner::shapes_admit`]. Together they decide exactly whether
    /// [`Scanner::scan_hinted`] searches the string, so callers skip the others without
    /// setting up a scan.
    #[inline]
    pub fn prescreen(self, hint: u8, len: usize) -> Prescreen {
        if self.none {
            Prescreen::Skip
        } else if self.always || hint & self.hint_bits != 0 {
            Prescreen::Search
        } else if len >= self.shapes_from {
            Prescreen::Shapes
        } else {
            Prescreen::Skip
        }
    }
}

/// All enabled patterns compiled into one matcher.
#[derive(Debug)]
pub(crate) struct Scanner {
    combined: Regex,
    /// The same patterns one by one, for captures and for anchored retries after a
    /// candidate fails its check. Only touched on candidates.
    singles: Vec<Regex>,
    patterns: Vec<PatternSpec>,
    /// Hint bits of the hint gates of all patterns: a string with any of them passes a
    /// gate (the bits are exact).
    hint_bits: u8,
    /// Shape bits of the number-shape gates of all patterns.
    shape_bits: u8,
    /// The shortest run of `[0-9 .()+-]` any enabled shape needs.
    run_floor: usize,
    /// A custom pattern is enabled: every string is searched.
    always: bool,
    /// The email pattern, and all patterns but it compiled into one matcher with the
    /// original index of each (see [`Scanner::search`]): used after an email candidate
    /// failed its check, over the rest of its local part.
    email: Option<(usize, Regex, Vec<usize>)>,
    /// Prefilter behind [`Gate::Literal`].
    literals: Regex,
    /// Names behind [`Gate::Names`].
    names: NameList,
    encoded_at: memchr::memmem::Finder<'static>,
}

/// The matchers' mutable search state; one per thread (see [`Scanner::create_cache`]).
#[derive(Debug)]
pub(crate) struct ScanCache {
    combined: meta::Cache,
    /// For the matcher without the email pattern.
    rest: Option<meta::Cache>,
}

/// A compile error of one pattern.
#[derive(Debug)]
pub(crate) struct PatternError {
    pub index: usize,
    pub reason: String,
}

fn builder() -> meta::Builder {
    let mut b = Regex::builder();
    b.syntax(syntax::Config::new().utf8(false).unicode(false));
    b
}

/// Compiles one pattern the way the scanner would; used to validate custom detectors.
pub(crate) fn check_pattern(source: &str) -> Result<(), String> {
    builder()
        .build(source)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Number of explicit capture groups of a pattern that [`check_pattern`] accepted.
pub(crate) fn explicit_groups(source: &str) -> usize {
    builder()
        .build(source)
        .map(|re| re.group_info().group_len(regex_automata::PatternID::ZERO) - 1)
        .unwrap_or(0)
}

/// The hint bits a hint gate accepts (0 for the other gates).
fn hint_bit(gate: &Gate) -> u8 {
    match gate {
        Gate::At => HINT_AT,
        Gate::AtOrEncoded => HINT_AT | HINT_AT_ENCODED,
        Gate::Colon => HINT_COLON,
        Gate::Names => HINT_NAMES,
        Gate::Literal => HINT_LITERAL,
        Gate::Always
        | Gate::Card
        | Gate::Iban
        | Gate::Ssn
        | Gate::Nanp
        | Gate::Intl
        | Gate::Ipv4 => 0,
    }
}

/// The shape bit of a number-shape gate (0 for the other gates).
fn shape_bit(gate: &Gate) -> u8 {
    match gate {
        Gate::Card => SHAPE_CARD,
        Gate::Iban => SHAPE_IBAN,
        Gate::Ssn => SHAPE_SSN,
        Gate::Nanp => SHAPE_NANP,
        Gate::Intl => SHAPE_INTL,
        Gate::Ipv4 => SHAPE_IPV4,
        Gate::Always | Gate::At | Gate::AtOrEncoded | Gate::Colon | Gate::Names | Gate::Literal => {
            0
        }
    }
}

impl Scanner {
    /// `names`: the parameter names plus `authorization`, for [`Gate::Names`].
    pub fn new(patterns: Vec<PatternSpec>, names: NameList) -> Result<Scanner, PatternError> {
        let mut singles = Vec::with_capacity(patterns.len());
        for (index, spec) in patterns.iter().enumerate() {
            let re = builder().build(&spec.source).map_err(|e| PatternError {
                index,
                reason: e.to_string(),
            })?;
            singles.push(re);
        }
        let sources: Vec<&str> = patterns.iter().map(|p| p.source.as_str()).collect();
        let build_many = |sources: &[&str]| {
            builder()
                .configure(
                    Regex::config()
                        .which_captures(WhichCaptures::Implicit)
                        .hybrid_cache_capacity(16 << 20),
                )
                .build_many(sources)
                .map_err(|e| PatternError {
                    index: usize::MAX,
                    reason: e.to_string(),
                })
        };
        let combined = build_many(&sources)?;
        let email = match patterns.iter().position(|p| p.check == Check::Email) {
            Some(pid) if patterns.len() > 1 => {
                let ids: Vec<usize> = (0..patterns.len()).filter(|&i| i != pid).collect();
                let rest: Vec<&str> = ids.iter().map(|&i| sources[i]).collect();
                Some((pid, build_many(&rest)?, ids))
            }
            _ => None,
        };
        let gates = || patterns.iter().flat_map(|p| p.gates.iter());
        let always = gates().any(|g| *g == Gate::Always);
        let hint_bits = gates().fold(0, |bits, g| bits | hint_bit(g));
        let shape_bits = gates().fold(0, |bits, g| bits | shape_bit(g));
        let run_floor = SHAPE_MIN_RUN
            .iter()
            .filter(|(bit, _)| bit & shape_bits != 0)
            .map(|(_, min)| *min)
            .min()
            .unwrap_or(0);
        let literal_sources: Vec<String> =
            TRIGGER_LITERALS.iter().map(|l| regex_escape(l)).collect();
        let literals = builder()
            .configure(Regex::config().which_captures(WhichCaptures::Implicit))
            .build_many(&literal_sources)
            .map_err(|e| PatternError {
                index: usize::MAX,
                reason: e.to_string(),
            })?;
        Ok(Scanner {
            combined,
            singles,
            patterns,
            hint_bits,
            shape_bits,
            run_floor,
            always,
            email,
            literals,
            names,
            encoded_at: memchr::memmem::Finder::new(b"%40"),
        })
    }

    /// Per-row hint bits for a whole column, found by passes over the column's value buffer
    /// (memchr for `@`, one memchr over the separators `=`, `:`, `%`, one multi-literal
    /// search) instead of one call per string. Each bit
    /// is exact for its row: a match that straddles two rows belongs to neither, and the
    /// literal search resumes inside it so that it hides no match of the next row.
    pub fn column_hints<O: arrow_array::OffsetSizeTrait>(
        &self,
        data: &[u8],
        offsets: &[O],
    ) -> Vec<u8> {
        let rows = offsets.len().saturating_sub(1);
        let mut hints = vec![HINT_VALID; rows];
        if rows == 0 {
            return hints;
        }
        let base = offsets[0].as_usize();
        let end = offsets[rows].as_usize();
        let data = &data[base..end];
        // `row` only moves forward: each pass sees positions in increasing order.
        let row_of = |row: &mut usize, pos: usize| {
            while *row + 1 < rows && offsets[*row + 1].as_usize() - base <= pos {
                *row += 1;
            }
        };
        let bounds = |row: usize| {
            (
                offsets[row].as_usize() - base,
                offsets[row + 1].as_usize() - base,
            )
        };
        // Only the bits some gate of this profile looks at.
        let wanted = self.hint_bits;
        if wanted & HINT_AT != 0 {
            let mut row = 0;
            for pos in memchr::memchr_iter(b'@', data) {
                row_of(&mut row, pos);
                hints[row] |= HINT_AT;
            }
        }
        // One pass over the separators answers three bits: `:`, `%40` and listed names.
        let separator_bits = HINT_COLON | HINT_AT_ENCODED | HINT_NAMES;
        if wanted & separator_bits != 0 {
            let mut row = 0;
            for pos in memchr::memchr3_iter(b'=', b':', b'%', data) {
                row_of(&mut row, pos);
                match data[pos] {
                    b':' => hints[row] |= HINT_COLON & wanted,
                    b'%' if data[pos + 1..].starts_with(b"40") && pos + 3 <= bounds(row).1 => {
                        hints[row] |= HINT_AT_ENCODED & wanted
                    }
                    _ => {}
                }
                if wanted & HINT_NAMES != 0 && hints[row] & HINT_NAMES == 0 {
                    let (start, end) = bounds(row);
                    if name_before_separator(&data[start..end], pos - start, &self.names) {
                        hints[row] |= HINT_NAMES;
                    }
                }
            }
        }
        // A column of short strings (methods, country codes, ids) has no row the bit can be
        // set in: its search is skipped.
        let long_row = || {
            offsets
                .windows(2)
                .any(|w| w[1].as_usize() - w[0].as_usize() >= LITERAL_MIN_LEN)
        };
        if wanted & HINT_LITERAL != 0 && long_row() {
            let mut row = 0;
            let mut at = 0;
            while let Some(m) = self.literals.search(&Input::new(data).range(at..)) {
                row_of(&mut row, m.start());
                let (start, end) = bounds(row);
                if m.end() <= end {
                    if end - start >= LITERAL_MIN_LEN {
                        hints[row] |= HINT_LITERAL;
                    }
                    // The row is decided: go on with the next one.
                    at = end.max(m.end());
                } else {
                    // Straddles into the next row: a literal of that row may start inside it.
                    at = m.start() + 1;
                }
                if at >= data.len() {
                    break;
                }
            }
        }
        hints
    }

    /// The hint bits of one string (what [`Scanner::column_hints`] gives its row).
    fn string_hint(&self, bytes: &[u8]) -> u8 {
        let wanted = self.hint_bits;
        let mut hint = HINT_VALID;
        if wanted & HINT_AT != 0 && memchr::memchr(b'@', bytes).is_some() {
            hint |= HINT_AT;
        }
        if wanted & HINT_AT_ENCODED != 0 && self.encoded_at.find(bytes).is_some() {
            hint |= HINT_AT_ENCODED;
        }
        if wanted & HINT_COLON != 0 && memchr::memchr(b':', bytes).is_some() {
            hint |= HINT_COLON;
        }
        if wanted & HINT_NAMES != 0 && has_listed_name(bytes, &self.names) {
            hint |= HINT_NAMES;
        }
        if wanted & HINT_LITERAL != 0
            && bytes.len() >= LITERAL_MIN_LEN
            && self.literals.is_match(Input::new(bytes).earliest(true))
        {
            hint |= HINT_LITERAL;
        }
        hint
    }

    /// The gate settings behind [`Screen::prescreen`], copied out for a loop over a column.
    pub fn screen(&self) -> Screen {
        Screen {
            none: self.patterns.is_empty(),
            always: self.always,
            hint_bits: self.hint_bits,
            shapes_from: if self.shape_bits != 0 {
                self.run_floor
            } else {
                usize::MAX
            },
        }
    }

    /// Whether `bytes` is long enough and has the digits for some number shape: a cheap
    /// necessary condition of [`Scanner::shapes_admit`].
    pub fn may_have_shapes(&self, bytes: &[u8]) -> bool {
        has_long_run(bytes, self.run_floor)
    }

    /// Whether some number-shape gate admits `bytes`: a pure function of the bytes, so a
    /// caller may remember it per distinct value.
    pub fn shapes_admit(&self, bytes: &[u8]) -> bool {
        self.shapes(bytes) != 0
    }

    /// The enabled number shapes in `bytes`.
    fn shapes(&self, bytes: &[u8]) -> u8 {
        number_shapes(bytes, self.run_floor, self.shape_bits)
    }

    /// Whether some number-shape gate holds for the string behind `f`.
    fn admits_shapes(&self, f: &mut Features<'_>) -> bool {
        let bytes = f.bytes;
        *f.shapes.get_or_insert_with(|| self.shapes(bytes)) != 0
    }

    /// Whether `gate` holds for the string behind `f`.
    fn admits(&self, gate: &Gate, f: &mut Features<'_>) -> bool {
        match *gate {
            Gate::Always => true,
            Gate::At | Gate::AtOrEncoded | Gate::Colon | Gate::Names | Gate::Literal => {
                f.hint & hint_bit(gate) != 0
            }
            Gate::Card | Gate::Iban | Gate::Ssn | Gate::Nanp | Gate::Intl | Gate::Ipv4 => {
                let bytes = f.bytes;
                let shapes = *f.shapes.get_or_insert_with(|| self.shapes(bytes));
                shapes & shape_bit(gate) != 0
            }
        }
    }

    pub fn create_cache(&self) -> ScanCache {
        ScanCache {
            combined: self.combined.create_cache(),
            rest: self.email.as_ref().map(|(_, rest, _)| rest.create_cache()),
        }
    }

    /// Appends the hits in `hay` to `out`, in order and without overlap. Returns whether
    /// the string was searched at all (false: the byte-class gate ruled it out).
    pub fn scan(&self, cache: &mut ScanCache, hay: &str, out: &mut Vec<Hit>) -> bool {
        self.scan_hinted(cache, hay, 0, out)
    }

    /// [`Scanner::scan`] with the string's bits from [`Scanner::column_hints`] (0: compute
    /// them here).
    pub fn scan_hinted(
        &self,
        cache: &mut ScanCache,
        hay: &str,
        hint: u8,
        out: &mut Vec<Hit>,
    ) -> bool {
        if self.patterns.is_empty() {
            return false;
        }
        let bytes = hay.as_bytes();
        let hint = if hint & HINT_VALID == 0 {
            self.string_hint(bytes)
        } else {
            hint
        };
        let mut features = Features {
            bytes,
            hint,
            shapes: None,
        };
        let admitted =
            self.always || hint & self.hint_bits != 0 || self.admits_shapes(&mut features);
        if !admitted {
            return false;
        }
        self.search(cache, &mut features, true, out);
        true
    }

    /// The search behind [`Scanner::scan_hinted`]; `gated`: skip retries of patterns whose
    /// gates fail (without, every pattern is retried: what the gates must not change).
    fn search(
        &self,
        cache: &mut ScanCache,
        features: &mut Features<'_>,
        gated: bool,
        out: &mut Vec<Hit>,
    ) {
        let bytes = features.bytes;
        let mut pos = 0;
        // Email candidates starting before this are known to fail their check.
        let mut email_fails_before = 0;
        while pos < bytes.len() {
            let input = Input::new(bytes).span(pos..bytes.len());
            let (m, pid) = match (&self.email, &mut cache.rest) {
                (Some((_, rest, ids)), Some(rest_cache)) if pos < email_fails_before => {
                    match rest.search_with(rest_cache, &input) {
                        Some(m) if m.start() < email_fails_before => (m, ids[m.pattern()]),
                        // From there on the email pattern takes part again, and may
                        // start before what the other patterns found.
                        _ => {
                            pos = email_fails_before;
                            continue;
                        }
                    }
                }
                _ => match self.combined.search_with(&mut cache.combined, &input) {
                    Some(m) => (m, m.pattern().as_usize()),
                    None => break,
                },
            };
            if let Some(hit) = self.accept(pid, bytes, m.start(), m.end()) {
                pos = self.resume_after(pid, &hit, m.start());
                push_merged(out, hit);
                continue;
            }
            let email = self.email.as_ref().map(|(email, _, _)| *email);
            if email == Some(pid) {
                email_fails_before =
                    email_fails_before.max(local_part_end(bytes, m.start(), m.end()));
            }
            // Rejected: give the other patterns a chance at the same start.
            let mut retried = None;
            for (other, spec) in self.patterns.iter().enumerate() {
                if other == pid
                    || email == Some(other) && m.start() < email_fails_before
                    || gated && !spec.gates.iter().any(|g| self.admits(g, features))
                {
                    continue;
                }
                let input = Input::new(bytes)
                    .span(m.start()..bytes.len())
                    .anchored(Anchored::Yes);
                if let Some(m2) = self.singles[other].search(&input)
                    && let Some(hit) = self.accept(other, bytes, m2.start(), m2.end())
                {
                    retried = Some((other, hit));
                    break;
                }
            }
            match retried {
                Some((other, hit)) => {
                    pos = self.resume_after(other, &hit, m.start());
                    push_merged(out, hit);
                }
                None => pos = m.start() + 1,
            }
        }
    }

    /// The hits of [`Scanner::scan`] without any gate: every string searched, every pattern
    /// retried. Tests compare the two to show the gates are necessary conditions.
    #[cfg(test)]
    pub fn scan_ungated(&self, cache: &mut ScanCache, hay: &str, out: &mut Vec<Hit>) {
        let mut features = Features {
            bytes: hay.as_bytes(),
            hint: u8::MAX,
            shapes: Some(u8::MAX),
        };
        self.search(cache, &mut features, false, out);
    }

    /// What [`Scanner::scan`] means, spelled out slowly for tests: at each byte from the
    /// left, the first pattern in order that matches there and passes its check is a hit,
    /// and the walk goes on where [`Scanner::resume_after`] says. No combined matcher, no
    /// gate, no shortcut.
    #[cfg(test)]
    pub fn scan_reference(&self, hay: &str, out: &mut Vec<Hit>) {
        let bytes = hay.as_bytes();
        let mut pos = 0;
        while pos < bytes.len() {
            let input = Input::new(bytes)
                .span(pos..bytes.len())
                .anchored(Anchored::Yes);
            let found = self.singles.iter().enumerate().find_map(|(pid, re)| {
                let m = re.search(&input)?;
                self.accept(pid, bytes, m.start(), m.end())
                    .map(|hit| (pid, hit))
            });
            match found {
                Some((pid, hit)) => {
                    pos = self.resume_after(pid, &hit, pos);
                    push_merged(out, hit);
                }
                None => pos += 1,
            }
        }
    }

    /// [`Scanner::column_hints`] and the per-string hints of the same strings, for tests.
    #[cfg(test)]
    pub fn hints_both_ways(&self, values: &[&str]) -> (Vec<u8>, Vec<u8>) {
        let array = arrow_array::StringArray::from(values.to_vec());
        let column = self.column_hints(array.value_data(), array.value_offsets());
        let strings = values
            .iter()
            .map(|v| self.string_hint(v.as_bytes()))
            .collect();
        (column, strings)
    }

    /// Where the search goes on after a hit. After a hit that is a capture group (the
    /// value of `key: ...`), the value itself is searched again: it may start something
    /// longer than the group (a private key block after `key: `); overlapping hits are
    /// merged by [`push_merged`].
    fn resume_after(&self, pid: usize, hit: &Hit, match_start: usize) -> usize {
        if self.patterns[pid].rescan {
            hit.start.max(match_start + 1)
        } else {
            hit.end.max(match_start + 1)
        }
    }

    fn accept(&self, pid: usize, bytes: &[u8], start: usize, end: usize) -> Option<Hit> {
        let spec = &self.patterns[pid];
        let (start, end) = if spec.group {
            let re = &self.singles[pid];
            let mut caps = re.create_captures();
            let input = Input::new(bytes)
                .span(start..bytes.len())
                .anchored(Anchored::Yes);
            re.search_captures(&input, &mut caps);
            let span = caps.get_group(1)?;
            (span.start, span.end)
        } else {
            (start, end)
        };
        let (start, end) = check(spec.check, bytes, start, end)?;
        if start >= end {
            return None;
        }
        let (start, end) = widen_to_char_boundaries(bytes, start, end);
        Some(Hit {
            start,
            end,
            detector: spec.detector,
        })
    }
}

/// Where the local part of the email candidate `bytes[start..end]` ends at the latest: its
/// first `@` or `%40`. An email candidate that starts later inside the local part is the
/// same candidate shortened at the front: the match ends where this one does (the local
/// part's class holds every byte in between, and the engine prefers the same way to go on
/// from there), so its check, which looks at the `@` and the top-level domain only, rejects
/// it just the same.
fn local_part_end(bytes: &[u8], start: usize, end: usize) -> usize {
    let text = &bytes[start..end];
    let at = memchr::memchr(b'@', text).unwrap_or(text.len());
    let encoded = memchr::memmem::find(&text[..at], b"%40").unwrap_or(at);
    start + encoded
}

/// Appends `hit`, merging it into the previous hit when they overlap (the earlier hit's
/// detector names the merged span).
fn push_merged(out: &mut Vec<Hit>, hit: Hit) {
    if let Some(last) = out.last_mut()
        && hit.start < last.end
    {
        last.end = last.end.max(hit.end);
        return;
    }
    out.push(hit);
}

fn widen_to_char_boundaries(bytes: &[u8], mut start: usize, mut end: usize) -> (usize, usize) {
    let is_continuation = |b: u8| (b & 0xC0) == 0x80;
    while start > 0 && start < bytes.len() && is_continuation(bytes[start]) {
        start -= 1;
    }
    while end < bytes.len() && is_continuation(bytes[end]) {
        end += 1;
    }
    (start, end)
}

/// Runs the detector's check; may shrink the candidate (a card followed by more digits).
fn check(kind: Check, bytes: &[u8], start: usize, end: usize) -> Option<(usize, usize)> {
    let text = &bytes[start..end];
    let before = start.checked_sub(1).map(|i| bytes[i]);
    let after = bytes.get(end).copied();
    match kind {
        Check::None => Some((start, end)),
        Check::TokenEnd => match after {
            Some(b) if b.is_ascii_alphanumeric() || b == b'/' || b == b'+' => None,
            _ => Some((start, end)),
        },
        Check::Email => check_email(text).then_some((start, end)),
        Check::Card => check_card(text).map(|len| (start, start + len)),
        Check::Ssn => check_ssn(text).then_some((start, end)),
        Check::PhoneNanp => {
            // A longer digit run around it is some other number (an order id, a card).
            if before.is_some_and(|b| b.is_ascii_digit()) {
                return None;
            }
            Some((start, end))
        }
        Check::PhoneIntl => {
            let digits = text.iter().filter(|b| b.is_ascii_digit()).count();
            let opens = text.iter().filter(|&&b| b == b'(').count();
            let closes = text.iter().filter(|&&b| b == b')').count();
            if !(10..=15).contains(&digits)
                || opens != closes
                || after.is_some_and(|b| b.is_ascii_digit())
            {
                return None;
            }
            Some((start, end))
        }
        Check::Iban => check_iban(text).map(|len| (start, start + len)),
        Check::Ipv4 => check_ipv4_context(bytes, start, end).then_some((start, end)),
        Check::Ipv6 => check_ipv6(bytes, start, end),
        Check::Param => {
            if text.starts_with(b"[") && text.ends_with(b"]") {
                None
            } else {
                Some((start, end))
            }
        }
    }
}

/// File extensions that turn `logo@2x.png` into something shaped like an email address.
const ASSET_SUFFIXES: &[&str] = &[
    "png", "jpg", "jpeg", "gif", "svg", "webp", "avif", "ico", "css", "js", "mjs", "map", "json",
    "html", "htm", "php", "txt", "xml", "woff", "woff2", "ttf", "pdf", "mp4", "webm",
];

fn check_email(text: &[u8]) -> bool {
    let at = match memchr::memchr(b'@', text) {
        Some(at) => at,
        None => match memchr::memmem::find(text, b"%40") {
            Some(at) => at,
            None => return false,
        },
    };
    if at == 0 {
        return false;
    }
    let tld_start = text.iter().rposition(|&b| b == b'.').map_or(0, |i| i + 1);
    let tld = &text[tld_start..];
    !ASSET_SUFFIXES
        .iter()
        .any(|suffix| tld.eq_ignore_ascii_case(suffix.as_bytes()))
}

/// Luhn over the digits of `text`. Returns the byte length of the longest prefix that ends
/// at a group boundary, has 13..=19 digits and passes, so that a card directly followed by
/// another number is still found.
fn check_card(text: &[u8]) -> Option<usize> {
    let mut ends: Vec<(usize, usize)> = Vec::new(); // (byte end, digit count)
    let mut digits = 0;
    for (i, &b) in text.iter().enumerate() {
        if b.is_ascii_digit() {
            digits += 1;
            let at_boundary = text.get(i + 1).is_none_or(|n| !n.is_ascii_digit());
            if at_boundary && (13..=19).contains(&digits) {
                ends.push((i + 1, digits));
            }
        }
    }
    for &(end, count) in ends.iter().rev() {
        let digits: Vec<u8> = text[..end]
            .iter()
            .filter(|b| b.is_ascii_digit())
            .map(|b| b - b'0')
            .collect();
        debug_assert_eq!(digits.len(), count);
        if digits.iter().all(|&d| d == digits[0]) {
            continue;
        }
        if luhn(&digits) {
            return Some(end);
        }
    }
    None
}

pub(crate) fn luhn(digits: &[u8]) -> bool {
    let mut sum = 0u32;
    for (i, &d) in digits.iter().rev().enumerate() {
        let mut v = u32::from(d);
        if i % 2 == 1 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    sum.is_multiple_of(10)
}

fn check_ssn(text: &[u8]) -> bool {
    let digits: Vec<u8> = text
        .iter()
        .filter(|b| b.is_ascii_digit())
        .copied()
        .collect();
    let (area, group, serial) = (&digits[0..3], &digits[3..5], &digits[5..9]);
    // Mixed separators ("123-45.6789") are rarely an SSN.
    if text[3] != text[6] {
        return false;
    }
    area != b"000"
        && area != b"666"
        && area[0] != b'9'
        && group != b"00"
        && serial != b"0000"
        && !digits.iter().all(|&d| d == digits[0])
}

/// IBAN lengths by country (ISO 13616 registry).
const IBAN_LENGTHS: &[(&[u8; 2], usize)] = &[
    (b"AD", 24),
    (b"AE", 23),
    (b"AL", 28),
    (b"AT", 20),
    (b"AZ", 28),
    (b"BA", 20),
    (b"BE", 16),
    (b"BG", 22),
    (b"BH", 22),
    (b"BI", 27),
    (b"BR", 29),
    (b"BY", 28),
    (b"CH", 21),
    (b"CR", 22),
    (b"CY", 28),
    (b"CZ", 24),
    (b"DE", 22),
    (b"DJ", 27),
    (b"DK", 18),
    (b"DO", 28),
    (b"EE", 20),
    (b"EG", 29),
    (b"ES", 24),
    (b"FI", 18),
    (b"FK", 18),
    (b"FO", 18),
    (b"FR", 27),
    (b"GB", 22),
    (b"GE", 22),
    (b"GI", 23),
    (b"GL", 18),
    (b"GR", 27),
    (b"GT", 28),
    (b"HR", 21),
    (b"HU", 28),
    (b"IE", 22),
    (b"IL", 23),
    (b"IQ", 23),
    (b"IS", 26),
    (b"IT", 27),
    (b"JO", 30),
    (b"KW", 30),
    (b"KZ", 20),
    (b"LB", 28),
    (b"LC", 32),
    (b"LI", 21),
    (b"LT", 20),
    (b"LU", 20),
    (b"LV", 21),
    (b"LY", 25),
    (b"MC", 27),
    (b"MD", 24),
    (b"ME", 22),
    (b"MK", 19),
    (b"MN", 20),
    (b"MR", 27),
    (b"MT", 31),
    (b"MU", 30),
    (b"NI", 28),
    (b"NL", 18),
    (b"NO", 15),
    (b"OM", 23),
    (b"PK", 24),
    (b"PL", 28),
    (b"PS", 29),
    (b"PT", 25),
    (b"QA", 29),
    (b"RO", 24),
    (b"RS", 22),
    (b"RU", 33),
    (b"SA", 24),
    (b"SC", 31),
    (b"SD", 18),
    (b"SE", 24),
    (b"SI", 19),
    (b"SK", 24),
    (b"SM", 27),
    (b"SO", 23),
    (b"ST", 25),
    (b"SV", 28),
    (b"TL", 23),
    (b"TN", 24),
    (b"TR", 26),
    (b"UA", 29),
    (b"VA", 22),
    (b"VG", 24),
    (b"XK", 20),
    (b"YE", 30),
];

/// The IBAN length of an (uppercase) country code; `None`: the country has no IBANs.
fn iban_length(country: [u8; 2]) -> Option<usize> {
    IBAN_LENGTHS
        .iter()
        .find(|(code, _)| **code == country)
        .map(|(_, len)| *len)
}

/// Returns the byte length of the IBAN at the start of `text`: the candidate may have
/// swallowed a following word, so shorter cuts at spaces are tried too.
fn check_iban(text: &[u8]) -> Option<usize> {
    let want = iban_length([text[0].to_ascii_uppercase(), text[1].to_ascii_uppercase()])?;
    let mut count = 0;
    for (i, &b) in text.iter().enumerate() {
        if b == b' ' {
            continue;
        }
        count += 1;
        if count == want {
            let at_boundary = text.get(i + 1).is_none_or(|n| !n.is_ascii_alphanumeric());
            let compact: Vec<u8> = text[..=i]
                .iter()
                .filter(|&&b| b != b' ')
                .map(|b| b.to_ascii_uppercase())
                .collect();
            let mut run = 0;
            let mut longest = 0;
            for &b in &text[..=i] {
                run = if b.is_ascii_digit() || b == b' ' {
                    run + 1
                } else {
                    0
                };
                longest = longest.max(run);
            }
            // The gate promised a digit run of at least 10 bytes.
            if at_boundary && longest >= 10 && iban_mod97(&compact) {
                return Some(i + 1);
            }
            return None;
        }
    }
    None
}

fn iban_mod97(compact: &[u8]) -> bool {
    let mut rem = 0u32;
    let rotated = compact[4..].iter().chain(&compact[..4]);
    for &b in rotated {
        let v = match b {
            b'0'..=b'9' => u32::from(b - b'0'),
            b'A'..=b'Z' => u32::from(b - b'A') + 10,
            _ => return false,
        };
        rem = if v >= 10 {
            (rem * 100 + v) % 97
        } else {
            (rem * 10 + v) % 97
        };
    }
    rem == 1
}

/// IPv4 in context: not part of a longer dotted sequence, and not a `product/1.2.3.4`
/// version token (`Chrome/120.0.0.0`).
fn check_ipv4_context(bytes: &[u8], start: usize, end: usize) -> bool {
    if start > 0 {
        let prev = bytes[start - 1];
        if prev == b'.' || prev.is_ascii_alphanumeric() {
            return false;
        }
        if prev == b'/' && start >= 2 && bytes[start - 2].is_ascii_alphanumeric() {
            return false;
        }
    }
    if let Some(&next) = bytes.get(end) {
        if next == b'.' && bytes.get(end + 1).is_some_and(|b| b.is_ascii_digit()) {
            return false;
        }
        if next.is_ascii_alphanumeric() {
            return false;
        }
    }
    bytes[start..end].iter().filter(|&&b| b == b'.').count() == 3
}

fn check_ipv6(bytes: &[u8], start: usize, mut end: usize) -> Option<(usize, usize)> {
    if start > 0 {
        let prev = bytes[start - 1];
        if prev.is_ascii_alphanumeric() || prev == b':' || prev == b'.' {
            return None;
        }
    }
    if bytes.get(end).is_some_and(|b| b.is_ascii_alphanumeric()) {
        return None;
    }
    while end > start && bytes[end - 1] == b'.' {
        end -= 1;
    }
    let text = std::str::from_utf8(&bytes[start..end]).ok()?;
    let addr: Ipv6Addr = text.parse().ok()?;
    // `::` and `::1` carry no information about anyone; neither do times like `12::`.
    let hex_digits = text.bytes().filter(|b| b.is_ascii_hexdigit()).count();
    if addr.is_unspecified() || addr.is_loopback() || hex_digits < 4 {
        return None;
    }
    // A zone id (`fe80::1%eth0`) belongs to the address.
    if bytes.get(end) == Some(&b'%') {
        let zone = bytes[end + 1..]
            .iter()
            .take_while(|b| b.is_ascii_alphanumeric() || **b == b'_' || **b == b'.')
            .count();
        end += 1 + zone;
    }
    Some((start, end))
}

/// Truncates an IP address to its network prefix (`203.0.113.7` → `203.0.113.0` for /24).
/// IPv4-mapped IPv6 addresses are truncated with the IPv4 prefix. `None` if `text` is not
/// an IP address.
pub(crate) fn truncate_ip(text: &str, v4_prefix: u64, v6_prefix: u64) -> Option<String> {
    let text = text.trim();
    if let Ok(v4) = text.parse::<Ipv4Addr>() {
        return Some(mask_v4(v4, v4_prefix).to_string());
    }
    let v6: Ipv6Addr = text
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .unwrap_or(text)
        .parse()
        .ok()?;
    if let Some(v4) = v6.to_ipv4_mapped() {
        return Some(mask_v4(v4, v4_prefix).to_ipv6_mapped().to_string());
    }
    let bits = u128::from(v6);
    let mask = if v6_prefix == 0 {
        0
    } else {
        u128::MAX << (128 - v6_prefix.min(128))
    };
    Some(Ipv6Addr::from(bits & mask).to_string())
}

fn mask_v4(v4: Ipv4Addr, prefix: u64) -> Ipv4Addr {
    let mask = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix.min(32))
    };
    Ipv4Addr::from(u32::from(v4) & mask)
}

#[cfg(test)]
mod tests {
    use super::{
        DEFAULT_PARAMS, NameList, classify, classify_bytewise, name_before_separator, name_ends_at,
        number_shapes, possible_shapes, separator_allows_quote, walk_shapes,
    };
    use crate::redact::synth::Rng;

    /// [`name_before_separator`] without the two-byte shortcut: the walk alone.
    fn walk_only(bytes: &[u8], at: usize, names: &NameList) -> bool {
        separator_allows_quote(bytes, at)
            .is_some_and(|allow_quote| name_ends_at(bytes, at, allow_quote, names))
    }

    /// `matches_bytes` by its definition: equal to an entry, or longer than a `*` entry
    /// and ending with it, ASCII case-insensitively.
    fn listed(list: &[String], name: &[u8]) -> bool {
        list.iter().any(|entry| match entry.strip_prefix('*') {
            Some(suffix) => {
                name.len() > suffix.len()
                    && name[name.len() - suffix.len()..].eq_ignore_ascii_case(suffix.as_bytes())
            }
            None => name.eq_ignore_ascii_case(entry.as_bytes()),
        })
    }

    /// Name lists both name tests run besides the defaults: one-byte, suffix, dotted and
    /// mixed-case entries, and `*` alone.
    fn odd_lists() -> [Vec<String>; 2] {
        [
            ["q", "*x", "a.b", "Token", "*_ID"]
                .map(String::from)
                .to_vec(),
            vec!["*".into()],
        ]
    }

    #[test]
    fn name_filters_change_no_match() {
        let mut defaults: Vec<String> = DEFAULT_PARAMS.iter().map(|s| s.to_string()).collect();
        defaults.extend(super::DEFAULT_HEADERS.iter().map(|s| s.to_string()));
        let [odd, star] = odd_lists();
        let lists = [defaults, odd, star, vec!["*d".into(), "sessionid".into()]];
        let pieces: &[&str] = &[
            "token", "TOKEN", "x", "q", "id", "ID", "_id", "session", "a.b", "-", "_", ".", "a",
            "b", "d", "key", "auth", "request", "cookie", "x-", "1", "pass", "word", "\u{e9}",
        ];
        let mut rng = Rng::new(11);
        let mut matched = 0;
        for list in &lists {
            let names = NameList::new(list);
            for _ in 0..20_000 {
                let n = rng.below(5) as usize;
                let name: String = (0..n).map(|_| *rng.pick(pieces)).collect();
                let want = listed(list, name.as_bytes());
                assert_eq!(
                    names.matches_bytes(name.as_bytes()),
                    want,
                    "{list:?} {name:?}"
                );
                matched += usize::from(want);
            }
        }
        assert!(matched > 2_000, "{matched}");
    }

    #[test]
    fn two_byte_shortcut_changes_no_verdict() {
        let mut defaults: Vec<String> = DEFAULT_PARAMS.iter().map(|s| s.to_string()).collect();
        defaults.push("authorization".into());
        let [odd, star] = odd_lists();
        let lists = [defaults, odd, star, vec!["k".into()]];
        let pieces: &[&str] = &[
            "token", "TOKEN", "x", "q", "k", "a.b", "_id", "ID", "page", "=", ":", "%", "%3D",
            "%253d", "%26", "%2526", " ", "\t", "\"", "'", "&", "?", "a", "b", "_", "-", ".", "1",
            "9", "passwd", "secret", "\u{e9}",
        ];
        let mut rng = Rng::new(77);
        let mut checked = 0;
        let mut accepted = 0;
        for names in &lists {
            let names = NameList::new(names);
            for _ in 0..20_000 {
                let n = 1 + rng.below(12) as usize;
                let text: String = (0..n).map(|_| *rng.pick(pieces)).collect();
                let bytes = text.as_bytes();
                for at in memchr::memchr3_iter(b'=', b':', b'%', bytes) {
                    let verdict = walk_only(bytes, at, &names);
                    assert_eq!(
                        name_before_separator(bytes, at, &names),
                        verdict,
                        "{text:?} at {at}"
                    );
                    checked += 1;
                    accepted += usize::from(verdict);
                }
            }
        }
        assert!(checked > 50_000 && accepted > 5_000, "{checked} {accepted}");
    }

    #[test]
    fn byte_classes_match_their_definitions() {
        let mut rng = Rng::new(64);
        // Bytes at every range edge, and non-ASCII bytes whose low 7 bits are in a range.
        let alphabet: Vec<u8> = b"09/:+,-. @AZ[`az{\x00\x7f"
            .iter()
            .copied()
            .chain([
                0x80, 0xB0, 0xB9, 0xA0, 0xAD, 0xAB, 0xAE, 0xC1, 0xE1, 0xFA, 0xFF,
            ])
            .collect();
        for _ in 0..20_000 {
            let mut block = [0u8; 64];
            for b in block.iter_mut() {
                *b = *rng.pick(&alphabet);
            }
            let lanes = rng.below(5) as usize;
            let bits = |f: fn(u8) -> bool| {
                block
                    .iter()
                    .enumerate()
                    .take(16 * lanes)
                    .filter(|(_, b)| f(**b))
                    .fold(0u64, |m, (i, _)| m | 1 << i)
            };
            let want = [
                bits(|b| b.is_ascii_digit()),
                bits(|b| b == b' '),
                bits(|b| b == b'-'),
                bits(|b| b == b'.'),
                bits(|b| b == b'+'),
                bits(|b| b.is_ascii_alphabetic()),
            ];
            assert_eq!(classify(&block, lanes), want, "{block:?} {lanes}");
            assert_eq!(classify_bytewise(&block, lanes), want, "{block:?} {lanes}");
        }
    }

    /// Every shape the full walk finds is one [`possible_shapes`] allows, whichever shapes
    /// are wanted, so narrowing to them changes no verdict.
    #[test]
    fn possible_shapes_never_rule_out_a_found_shape() {
        let corpus = crate::redact::tests::gate_corpus();
        let mut found = [0usize; 6];
        let mut ruled_out = 0;
        for value in &corpus {
            let bytes = value.as_bytes();
            let possible = possible_shapes(bytes);
            for (floor, wanted) in [(7, 0x3F), (10, 0x1F)] {
                let shapes = walk_shapes(bytes, floor, wanted, false);
                assert_eq!(shapes & !possible, 0, "{value:?}: found {shapes:#b}");
                assert_eq!(number_shapes(bytes, floor, wanted), shapes, "{value:?}");
                for (bit, count) in found.iter_mut().enumerate() {
                    *count += usize::from(shapes & (1 << bit) != 0);
                }
            }
            ruled_out += usize::from(possible & 0x1F == 0);
        }
        // IPv4 is never ruled out; the other five must each be found often, and many
        // strings ruled out.
        assert!(
            found[..5].iter().all(|&n| n > 100),
            "shapes found: {found:?}"
        );
        assert!(ruled_out > 5_000, "only {ruled_out} strings ruled out");
        for clean in [
            "203.0.113.45",
            "2024-06-05T12:34:56.789Z",
            "GA1.1.123456789.1712345678",
        ] {
            assert_eq!(possible_shapes(clean.as_bytes()) & 0x1F, 0, "{clean}");
        }
    }
}
