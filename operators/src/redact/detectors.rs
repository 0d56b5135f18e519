//! The detector catalogue and the one-pass scanner.
//!
//! Every enabled detector contributes one or more patterns to a single multi-pattern
//! [`meta::Regex`]; a string is searched once, leftmost-first, and each candidate is handed
//! to its detector's check (Luhn, IBAN mod 97, SSN ranges, IP context, ...). A candidate that
//! fails its check is retried against the other patterns anchored at the same position, so a
//! Luhn-invalid digit run does not hide an SSN starting at the same byte.
//!
//! Before the regex runs, cheap [`Gate`]s decide whether the string can hold a hit at all:
//! memchr for `@` and `:`, a walk back from each `=` / `:` / `%3D` to see whether a listed
//! parameter name precedes it (names bucketed by their last byte), one multi-literal
//! prefilter for key formats (`AKIA`, `ghp_`, `eyJ`, ...), and for the number-shaped
//! detectors the lengths of digit runs: phone-class runs (`[0-9 .()+-]`) long enough for
//! any run gate are found by probing every n-th byte, and only they are measured further,
//! then a vectorized digit count. Each pattern declares gates that are *necessary* for an
//! accepted hit; a string that passes no gate of any enabled pattern skips the regex
//! entirely. The column-wide part (memchr and the literal search over a column's value
//! buffer, [`Scanner::column_hints`]) lets [`Scanner::may_admit`] rule out most short
//! strings with two compares. On log data most strings (hosts, colo codes, methods,
//! accept headers) stop there.

use std::net::{Ipv4Addr, Ipv6Addr};

use regex_automata::meta::{self, Regex};
use regex_automata::nfa::thompson::WhichCaptures;
use regex_automata::util::syntax;
use regex_automata::{Anchored, Input};

/// A necessary condition for a pattern to produce an accepted hit. Each is cheap to test
/// (memchr, a vectorized digit count, one literal prefilter) and tested lazily.
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
    /// One of the key-format literals (`AKIA`, `ghp_`, `eyJ`, `PRIVATE KEY`, ...), found
    /// by one multi-literal prefilter.
    Literal,
    /// At least `digits` ASCII digits in the string and a run of at least `run` bytes of
    /// `[0-9 -]` (cards, IBANs).
    CardRun { digits: u16, run: u16 },
    /// At least `digits` ASCII digits and a run of at least `run` bytes of `[0-9 .()+-]`
    /// (phones, IPv4).
    PhoneRun { digits: u16, run: u16 },
    /// At least `digits` ASCII digits and a run of at least `run` bytes of `[0-9 ]`
    /// (IBANs: the check insists on it).
    IbanRun { digits: u16, run: u16 },
    /// SSNs: 9 digits, a run of 11 bytes of `[0-9 .()+-]` and 4 digits in a row.
    SsnRun,
    /// North American phone numbers: 10 digits, a run of 12 bytes of `[0-9 .()+-]` and 4
    /// digits in a row (the last group).
    NanpRun,
    /// International phone numbers: a `+`, 10 digits and a run of 11 bytes of
    /// `[0-9 .()+-]`.
    PlusRun,
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

/// Bits of a string's hint (see [`Scanner::column_hints`]).
const HINT_VALID: u8 = 1;
const HINT_AT: u8 = 2;
const HINT_SEP: u8 = 4;
const HINT_COLON: u8 = 8;
const HINT_LITERAL: u8 = 16;

/// Lazily computed facts about one string, shared by all gates.
struct Features<'a> {
    bytes: &'a [u8],
    hint: u8,
    /// Runs shorter than this are never asked about (see [`Scanner::run_floor`]).
    floor: usize,
    digits: Option<u16>,
    runs: Option<Runs>,
}

impl<'a> Features<'a> {
    fn new(bytes: &'a [u8], hint: u8, floor: usize) -> Self {
        Features {
            bytes,
            hint,
            floor,
            digits: None,
            runs: None,
        }
    }

    fn digits(&mut self) -> u16 {
        *self.digits.get_or_insert_with(|| {
            // written so that it vectorizes
            let n = self
                .bytes
                .iter()
                .filter(|b| b.wrapping_sub(b'0') < 10)
                .count();
            n.min(u16::MAX as usize) as u16
        })
    }

    fn runs(&mut self) -> Runs {
        let (bytes, floor) = (self.bytes, self.floor);
        *self.runs.get_or_insert_with(|| long_runs(bytes, floor))
    }

    /// Whether the string holds a run of at least `len` bytes of `[0-9]`.
    fn digit_run(&self, len: usize) -> bool {
        has_run(self.bytes, DIGIT, len)
    }
}

/// Longest runs of `[0-9 -]`, `[0-9 .()+-]` and `[0-9 ]`, exact for lengths of at least
/// `floor` (a shorter longest run may be reported as 0).
#[derive(Debug, Clone, Copy, Default)]
struct Runs {
    card: usize,
    phone: usize,
    iban: usize,
}

/// [`Runs`] of `bytes`. The card and IBAN classes are subsets of the phone class, so each
/// of their runs lies inside a phone run at least as long; only the phone runs of at least
/// `floor` bytes (found by probing every `floor`-th byte) are measured further.
fn long_runs(bytes: &[u8], floor: usize) -> Runs {
    let step = floor.max(1);
    let phone = |b: u8| RUN_CLASS[usize::from(b)] & PHONE != 0;
    let mut runs = Runs::default();
    // Invariant: every phone run of `step` bytes or more not yet seen starts at or after
    // `probe + 1 - step`.
    let mut probe = step - 1;
    while probe < bytes.len() {
        if !phone(bytes[probe]) {
            probe += step;
            continue;
        }
        let mut start = probe;
        while start > 0 && phone(bytes[start - 1]) {
            start -= 1;
        }
        let mut end = probe + 1;
        while end < bytes.len() && phone(bytes[end]) {
            end += 1;
        }
        if end - start >= floor {
            runs.phone = runs.phone.max(end - start);
            let (mut card, mut iban) = (0usize, 0usize);
            for &b in &bytes[start..end] {
                let class = RUN_CLASS[usize::from(b)];
                card = if class & CARD != 0 { card + 1 } else { 0 };
                iban = if class & IBAN != 0 { iban + 1 } else { 0 };
                runs.card = runs.card.max(card);
                runs.iban = runs.iban.max(iban);
            }
        }
        probe = end + step;
    }
    runs
}

/// Bits of [`RUN_CLASS`]: `[0-9 -]`, `[0-9 .()+-]`, `[0-9 ]` and `[0-9]`.
const CARD: u8 = 1;
const PHONE: u8 = 2;
const IBAN: u8 = 4;
const DIGIT: u8 = 8;

/// Whether `bytes` holds a run of at least `len` bytes that all have bit `class` in
/// [`RUN_CLASS`]. Looks only at every `len`-th byte (each such run covers one of them)
/// and measures the run around the bytes that are in the class, so long text without
/// digits costs a few probes instead of a pass over every byte.
fn has_run(bytes: &[u8], class: u8, len: usize) -> bool {
    if len == 0 {
        return true;
    }
    let in_class = |b: u8| RUN_CLASS[usize::from(b)] & class != 0;
    // Invariant: every qualifying run not yet seen starts at or after `probe + 1 - len`.
    let mut probe = len - 1;
    while probe < bytes.len() {
        if !in_class(bytes[probe]) {
            probe += len;
            continue;
        }
        let mut start = probe;
        while start > 0 && in_class(bytes[start - 1]) {
            start -= 1;
        }
        let mut end = probe + 1;
        while end < bytes.len() && end - start < len && in_class(bytes[end]) {
            end += 1;
        }
        if end - start >= len {
            return true;
        }
        // `bytes[end]` ends the run: the next one starts at `end + 1` or later.
        probe = end + len;
    }
    false
}

const fn run_classes() -> [u8; 256] {
    let mut table = [0u8; 256];
    let mut b = 0usize;
    while b < 256 {
        let c = b as u8;
        let digit = c.is_ascii_digit();
        let card = digit || c == b' ' || c == b'-';
        let phone = card || c == b'.' || c == b'(' || c == b')' || c == b'+';
        let iban = digit || c == b' ';
        table[b] = (card as u8) | ((phone as u8) << 1) | ((iban as u8) << 2) | ((digit as u8) << 3);
        b += 1;
    }
    table
}

static RUN_CLASS: [u8; 256] = run_classes();

/// Whether some `=`, `:` or `%3D` in `bytes` directly follows a listed name (see
/// [`Gate::Names`]). A superset of what the `params` and `auth_header` patterns can match.
fn has_listed_name(bytes: &[u8], names: &NameList) -> bool {
    let is_name = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-');
    let check_before = |mut end: usize, allow_quote: bool| -> bool {
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
        let encoded = start > 0 && bytes[start - 1] == b'%';
        let candidates = [
            Some(run),
            encoded.then(|| run.get(2..)).flatten(),
            encoded.then(|| run.get(4..)).flatten(),
        ];
        candidates
            .into_iter()
            .flatten()
            .filter(|name| !name.is_empty())
            .any(|name| names.matches_bytes(name))
    };
    for at in memchr::memchr3_iter(b'=', b':', b'%', bytes) {
        let found = match bytes[at] {
            b'=' => check_before(at, false),
            b':' => check_before(at, true),
            _ => {
                let rest = &bytes[at + 1..];
                let encoded_eq = rest.len() >= 2 && rest[0] == b'3' && (rest[1] | 0x20) == b'd';
                let twice = rest.len() >= 4 && rest.starts_with(b"253") && (rest[3] | 0x20) == b'd';
                (encoded_eq || twice) && check_before(at, false)
            }
        };
        if found {
            return true;
        }
    }
    false
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
    /// Whether the list holds the empty name (it has no last byte).
    empty: bool,
}

impl NameList {
    /// `names` must already be validated by [`valid_name`].
    pub fn new<S: AsRef<str>>(names: &[S]) -> NameList {
        let mut list = NameList {
            by_last: vec![Vec::new(); 256],
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
        list
    }

    /// Whether `name` is listed, ASCII case-insensitively (exact, or longer than a `*`
    /// suffix and ending with it).
    pub fn matches(&self, name: &str) -> bool {
        self.matches_bytes(name.as_bytes())
    }

    pub fn matches_bytes(&self, name: &[u8]) -> bool {
        let Some(&last) = name.last() else {
            return self.empty;
        };
        let Some(bucket) = self.by_last.get(usize::from(last.to_ascii_lowercase())) else {
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
            &[Gate::CardRun { digits: 13, run: 13 }],
        )],
        "ssn" => vec![p(
            r"\b[0-9]{3}[- .][0-9]{2}[- .][0-9]{4}\b".into(),
            false,
            Check::Ssn,
            &[Gate::SsnRun],
        )],
        "phone" => vec![
            p(
                r"(?:\+1[ .-]?|\b1[ .-])?(?:\([2-9][0-9]{2}\)[ .-]?|\b[2-9][0-9]{2}[ .-])[2-9][0-9]{2}[ .-][0-9]{4}\b"
                    .into(),
                false,
                Check::PhoneNanp,
                &[Gate::NanpRun],
            ),
            p(
                r"\+[1-9](?:[ .-]?\(?[0-9]\)?){9,14}\b".into(),
                false,
                Check::PhoneIntl,
                &[Gate::PlusRun],
            ),
        ],
        "iban" => vec![p(
            r"(?i)\b[a-z]{2}[0-9]{2}(?: ?[a-z0-9]){11,30}\b".into(),
            false,
            Check::Iban,
            &[Gate::IbanRun { digits: 8, run: 10 }],
        )],
        "ipv4" => {
            let octet = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])";
            vec![p(
                format!(r"\b{octet}(?:\.{octet}){{3}}\b"),
                false,
                Check::Ipv4,
                &[Gate::PhoneRun { digits: 4, run: 7 }],
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

/// All enabled patterns compiled into one matcher.
#[derive(Debug)]
pub(crate) struct Scanner {
    combined: Regex,
    /// The same patterns one by one, for captures and for anchored retries after a
    /// candidate fails its check. Only touched on candidates.
    singles: Vec<Regex>,
    patterns: Vec<PatternSpec>,
    /// Gates of all patterns, deduplicated, split by what they look at: a string that
    /// passes none is not searched. `hint_gates` start from the column hint bits (cheapest
    /// first); `run_gates` need a run of at least `run_floor` bytes of `[0-9 .()+-]`
    /// (every class they measure is a subset of it), which is probed first.
    hint_gates: Vec<Gate>,
    /// Hint bits of which every hint gate needs at least one.
    hint_bits: u8,
    run_gates: Vec<Gate>,
    run_floor: usize,
    /// A custom pattern is enabled: every string is searched.
    always: bool,
    /// Prefilter behind [`Gate::Literal`].
    literals: Regex,
    /// Names behind [`Gate::Names`].
    names: NameList,
    encoded_at: memchr::memmem::Finder<'static>,
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

fn gate_cost(gate: &Gate) -> u8 {
    match gate {
        Gate::At | Gate::AtOrEncoded | Gate::Colon | Gate::Literal => 0,
        Gate::CardRun { .. }
        | Gate::PhoneRun { .. }
        | Gate::IbanRun { .. }
        | Gate::SsnRun
        | Gate::NanpRun
        | Gate::PlusRun => 1,
        Gate::Names => 2,
        Gate::Always => 4,
    }
}

/// The shortest run of `[0-9 .()+-]` a run gate needs (`None`: not a run gate).
fn run_length(gate: &Gate) -> Option<usize> {
    match *gate {
        Gate::CardRun { run, .. } | Gate::PhoneRun { run, .. } | Gate::IbanRun { run, .. } => {
            Some(usize::from(run))
        }
        Gate::SsnRun | Gate::PlusRun => Some(11),
        Gate::NanpRun => Some(12),
        Gate::Always | Gate::At | Gate::AtOrEncoded | Gate::Colon | Gate::Names | Gate::Literal => {
            None
        }
    }
}

/// The hint bit a hint gate needs (0 for run gates).
fn hint_bit(gate: &Gate) -> u8 {
    match gate {
        Gate::At | Gate::AtOrEncoded => HINT_AT,
        Gate::Colon => HINT_COLON,
        Gate::Names => HINT_SEP,
        Gate::Literal => HINT_LITERAL,
        Gate::Always => u8::MAX,
        Gate::CardRun { .. }
        | Gate::PhoneRun { .. }
        | Gate::IbanRun { .. }
        | Gate::SsnRun
        | Gate::NanpRun
        | Gate::PlusRun => 0,
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
        let combined = builder()
            .configure(
                Regex::config()
                    .which_captures(WhichCaptures::Implicit)
                    .hybrid_cache_capacity(16 << 20),
            )
            .build_many(&sources)
            .map_err(|e| PatternError {
                index: usize::MAX,
                reason: e.to_string(),
            })?;
        let mut gates: Vec<Gate> = Vec::new();
        for g in patterns.iter().flat_map(|p| p.gates.iter()) {
            if !gates.contains(g) {
                gates.push(*g);
            }
        }
        gates.sort_by_key(gate_cost);
        let always = gates.contains(&Gate::Always);
        let (run_gates, hint_gates): (Vec<Gate>, Vec<Gate>) = gates
            .into_iter()
            .filter(|g| *g != Gate::Always)
            .partition(|g| run_length(g).is_some());
        let hint_bits = hint_gates.iter().fold(0, |bits, g| bits | hint_bit(g));
        let run_floor = run_gates.iter().filter_map(run_length).min().unwrap_or(0);
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
            hint_gates,
            hint_bits,
            run_gates,
            run_floor,
            always,
            literals,
            names,
            encoded_at: memchr::memmem::Finder::new(b"%40"),
        })
    }

    /// Per-row trigger bits for a whole column, found by passes over the column's value
    /// buffer (memchr, one multi-literal search) instead of one call per string. A match
    /// that straddles two rows marks a row that cannot match: harmless, the gate is only a
    /// superset.
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
        let mark = |hints: &mut Vec<u8>, positions: &mut dyn Iterator<Item = usize>, bit: u8| {
            let mut row = 0usize;
            for pos in positions {
                let pos = pos + base;
                while row + 1 < rows && offsets[row + 1].as_usize() <= pos {
                    row += 1;
                }
                hints[row] |= bit;
            }
        };
        // Only the bits some gate of this profile looks at.
        let wanted = self.hint_bits;
        if wanted & HINT_AT != 0 {
            mark(&mut hints, &mut memchr::memchr_iter(b'@', data), HINT_AT);
            mark(&mut hints, &mut self.encoded_at.find_iter(data), HINT_AT);
        }
        if wanted & HINT_SEP != 0 {
            mark(
                &mut hints,
                &mut memchr::memchr3_iter(b'=', b':', b'%', data),
                HINT_SEP,
            );
        }
        if wanted & HINT_COLON != 0 {
            mark(&mut hints, &mut memchr::memchr_iter(b':', data), HINT_COLON);
        }
        if wanted & HINT_LITERAL != 0 {
            let mut literals = self.literals.find_iter(Input::new(data)).map(|m| m.start());
            mark(&mut hints, &mut literals, HINT_LITERAL);
        }
        hints
    }

    fn string_hint(&self, bytes: &[u8]) -> u8 {
        let mut hint = HINT_VALID;
        if memchr::memchr(b'@', bytes).is_some() || self.encoded_at.find(bytes).is_some() {
            hint |= HINT_AT;
        }
        if let Some(p) = memchr::memchr3(b'=', b':', b'%', bytes) {
            hint |= HINT_SEP;
            if bytes[p] == b':' || memchr::memchr(b':', bytes).is_some() {
                hint |= HINT_COLON;
            }
        }
        if bytes.len() >= LITERAL_MIN_LEN
            && self.literals.is_match(Input::new(bytes).earliest(true))
        {
            hint |= HINT_LITERAL;
        }
        hint
    }

    /// Whether a string of `len` bytes with column hint `hint` can pass any gate at all;
    /// `false` means [`Scanner::scan_hinted`] would not search it. Costs two compares, so
    /// callers can skip most strings without setting up a scan.
    #[inline]
    pub fn may_admit(&self, hint: u8, len: usize) -> bool {
        self.always
            || hint & HINT_VALID == 0
            || hint & self.hint_bits != 0
            || (!self.run_gates.is_empty() && len >= self.run_floor)
    }

    /// Whether any gate of any pattern admits the string.
    fn admitted(&self, f: &mut Features<'_>) -> bool {
        if self.always {
            return true;
        }
        if f.hint & self.hint_bits != 0 && self.hint_gates.iter().any(|g| self.admits(g, f)) {
            return true;
        }
        !self.run_gates.is_empty()
            && f.bytes.len() >= self.run_floor
            && f.runs().phone >= self.run_floor
            && self.run_gates.iter().any(|g| self.admits(g, f))
    }

    fn admits(&self, gate: &Gate, f: &mut Features<'_>) -> bool {
        match *gate {
            Gate::Always => true,
            Gate::At => f.hint & HINT_AT != 0 && memchr::memchr(b'@', f.bytes).is_some(),
            Gate::AtOrEncoded => f.hint & HINT_AT != 0,
            Gate::Colon => f.hint & HINT_COLON != 0,
            Gate::CardRun { digits, run } => {
                f.runs().card >= usize::from(run) && f.digits() >= digits
            }
            Gate::PhoneRun { digits, run } => {
                f.runs().phone >= usize::from(run) && f.digits() >= digits
            }
            Gate::IbanRun { digits, run } => {
                f.runs().iban >= usize::from(run) && f.digits() >= digits
            }
            Gate::NanpRun => f.runs().phone >= 12 && f.digits() >= 10 && f.digit_run(4),
            Gate::PlusRun => {
                f.runs().phone >= 11 && f.digits() >= 10 && memchr::memchr(b'+', f.bytes).is_some()
            }
            Gate::SsnRun => f.runs().phone >= 11 && f.digits() >= 9 && f.digit_run(4),
            Gate::Names => f.hint & HINT_SEP != 0 && has_listed_name(f.bytes, &self.names),
            Gate::Literal => {
                f.hint & HINT_LITERAL != 0
                    && f.bytes.len() >= LITERAL_MIN_LEN
                    && self.literals.is_match(Input::new(f.bytes).earliest(true))
            }
        }
    }

    pub fn create_cache(&self) -> meta::Cache {
        self.combined.create_cache()
    }

    /// Appends the hits in `hay` to `out`, in order and without overlap. Returns whether
    /// the string was searched at all (false: the byte-class gate ruled it out).
    pub fn scan(&self, cache: &mut meta::Cache, hay: &str, out: &mut Vec<Hit>) -> bool {
        self.scan_hinted(cache, hay, 0, out)
    }

    /// [`Scanner::scan`] with the string's bits from [`Scanner::column_hints`] (0: compute
    /// them here).
    pub fn scan_hinted(
        &self,
        cache: &mut meta::Cache,
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
        let mut features = Features::new(bytes, hint, self.run_floor);
        if !self.admitted(&mut features) {
            return false;
        }
        let mut pos = 0;
        while pos < bytes.len() {
            let input = Input::new(bytes).span(pos..bytes.len());
            let Some(m) = self.combined.search_with(cache, &input) else {
                break;
            };
            let pid = m.pattern().as_usize();
            if let Some(hit) = self.accept(pid, bytes, m.start(), m.end()) {
                pos = self.resume_after(pid, &hit, m.start());
                push_merged(out, hit);
                continue;
            }
            // Rejected: give the other patterns a chance at the same start.
            let mut retried = None;
            for (other, spec) in self.patterns.iter().enumerate() {
                if other == pid || !spec.gates.iter().any(|g| self.admits(g, &mut features)) {
                    continue;
                }
                let input = Input::new(bytes)
                    .span(m.start()..bytes.len())
                    .anchored(Anchored::Yes);
                if let Some(m2) = self.singles[other].search(&input) {
                    if let Some(hit) = self.accept(other, bytes, m2.start(), m2.end()) {
                        retried = Some((other, hit));
                        break;
                    }
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
        true
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

/// Appends `hit`, merging it into the previous hit when they overlap (the earlier hit's
/// detector names the merged span).
fn push_merged(out: &mut Vec<Hit>, hit: Hit) {
    if let Some(last) = out.last_mut() {
        if hit.start < last.end {
            last.end = last.end.max(hit.end);
            return;
        }
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
    sum % 10 == 0
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

/// Returns the byte length of the IBAN at the start of `text`: the candidate may have
/// swallowed a following word, so shorter cuts at spaces are tried too.
fn check_iban(text: &[u8]) -> Option<usize> {
    let country = [text[0].to_ascii_uppercase(), text[1].to_ascii_uppercase()];
    let want = IBAN_LENGTHS
        .iter()
        .find(|(code, _)| **code == country)
        .map(|(_, len)| *len)?;
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
pub(crate) fn truncate_ip(text: &str, v4_prefix: u8, v6_prefix: u8) -> Option<String> {
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
        u128::MAX << (128 - u32::from(v6_prefix.min(128)))
    };
    Some(Ipv6Addr::from(bits & mask).to_string())
}

fn mask_v4(v4: Ipv4Addr, prefix: u8) -> Ipv4Addr {
    let mask = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix.min(32)))
    };
    Ipv4Addr::from(u32::from(v4) & mask)
}
