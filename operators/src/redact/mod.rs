//! The `redact` operator: removes personal data and secrets from every string of a batch
//! before it is written.
//!
//! ```text
//!  RecordBatch ─▶ per column, by plan ─┬─ field rule: drop · null · token · mask ·
//!                                      │               truncate_ip · constant · keep
//!                                      └─ scan (default): every string, also inside
//!                                         struct / list / map columns
//!                                              │
//!   trigger gates (per column: memchr,  ────────┤ most strings stop here, unchanged
//!   one literal search, listed names;           │
//!   per string: number shapes, remembered       │
//!   for values repeated in the batch)           │
//!                                              ▼
//!           one multi-pattern regex, leftmost-first ─▶ candidate ─▶ check
//!           (email, card, iban, jwt, keys, params, …)   (Luhn, mod 97, SSN ranges,
//!                                                       IP context, …)
//!                                              │
//!                                  hit ─▶ `[EMAIL]` or `[EMAIL:<hmac>]`
//!  map columns (headers, cookies): a value whose key is a sensitive header or
//!  parameter name is replaced whole; other values are scanned
//! ```
//!
//! A column in which nothing matched is returned as the same `ArrayRef`; in a column that
//! changed, unchanged rows are copied in contiguous runs.
//!
//! # Config
//!
//! ```toml
//! [[datasets.operators]]
//! type = "redact"                     # alone: the default profile
//! mode = "enforce"                    # or "shadow": count, change nothing
//! detectors = ["email", "card"]       # replace the default detector set
//! enable = ["ipv4", "ipv6"]           # add to it
//! disable = ["phone"]                 # remove from it
//! on_match = "placeholder"            # or "token": [EMAIL:<32 hex>]
//! tokenize = ["email"]                # these detectors produce tokens anyway
//! params = ["token", "*_token"]       # replaces the default parameter-name list
//! headers = ["authorization"]         # replaces the default header-name list
//! unlisted_fields = "scan"            # or "drop": allow-list, fail closed (the sampler's
//!                                     # _sample_rate / _sample_th are always kept)
//! hmac_key = { env = "WEIR_REDACT_KEY" }   # or { file = "..." }
//!
//! [[datasets.operators.custom_detectors]]
//! name = "employee_id"
//! pattern = 'EMP-[0-9]{6}'
//! placeholder = "[EMPLOYEE]"
//!
//! [datasets.operators.fields]
//! ClientIP = { action = "truncate_ip", ipv4_prefix = 24, ipv6_prefix = 48 }
//! UserEmail = { action = "token" }
//! CardLast4 = { action = "mask", keep_last = 4, mask_char = "*" }
//! ClientRequestUserAgent = { action = "keep" }
//! Debug = { action = "drop" }         # also "null", "scan", "constant" (+ value = "...")
//! ```
//!
//! Built-in detectors (matching order): `private_key`, `jwt`, `aws_access_key`,
//! `aws_secret_key`, `github_token`, `slack_token`, `stripe_key`, `google_api_key`,
//! `auth_header`, `url_credentials`, `params`, `email`, `iban`, `card`, `ssn`, `phone`,
//! `ipv6`, `ipv4`. All are on by default except `ipv4` and `ipv6`.
//!
//! What the detectors deliberately do not flag (documented trade-offs against false
//! positives on log data): bare 9-digit numbers as SSNs, phone numbers without separators
//! or a leading `+`, card numbers not starting with 2–6, `name@2x.png`-style asset names,
//! `Product/1.2.3.4` version tokens as IPv4, `Basic` credentials shorter than 17
//! characters when no `Authorization` name precedes them. Custom detectors run on every
//! string (the byte-class gate cannot reason about an arbitrary regex).
//!
//! # Audit
//!
//! [`Operator::metrics`](crate::Operator::metrics) reports `redact_hits_total{rule, field,
//! mode}`, where `rule` is a detector name, `sensitive_key` (map value replaced because of
//! its key) or `field:<action>`. [`Operator::lineage`](crate::Operator::lineage) reports
//! `redact.profile_hash`: SHA-256 over the effective rules (detector patterns,
//! placeholders, name lists, field rules, mode), never over the HMAC key.

mod config;
mod detectors;
mod operator;
#[doc(hidden)]
pub mod synth;

#[cfg(test)]
mod tests;

pub use config::{CustomDetector, FieldRule, Mode, OnMatch, RedactConfig, Unlisted};
pub use detectors::{BUILTIN_DETECTORS, DEFAULT_HEADERS, DEFAULT_PARAMS, OFF_BY_DEFAULT};
