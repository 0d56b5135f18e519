//! The `sample` operator: keeps a deterministic, re-weightable subset of rows.
//!
//! ```text
//!                      key fields ──XXH64(seed)──▶ R (56 bits)    or  trace id ──▶ low 56 bits
//!                                                       │
//!  batch ──▶ rules (first match) ─▶ rate table ─▶ default rate ──▶ threshold T = 2^56 − round(p·2^56)
//!                                                  │ rate │ budget │ target │      keep iff R ≥ T
//!                                                  └──────┴─ window state (event time, snapshotted)
//!        ──▶ filter ──▶ + _sample_rate (= (2^56 − T) / 2^56, times any upstream _sample_rate)
//!                       + _sample_th   (optional, OpenTelemetry tracestate `th`)
//! ```
//!
//! # Configuration
//!
//! ```toml
//! [[datasets.operators]]
//! type = "sample"
//! key = "RayID"                    # a field or a list of fields
//! seed = 0                         # hash seed; another seed draws an independent sample
//! randomness = "hash"              # or "trace_id": key is a W3C trace id, seed unused
//! rate = 0.01                      # default keep probability (plain mode)
//! on_missing_key = "keep"          # "keep" (rate 1) | "drop" | { fallback = "ClientIP" }
//! record_threshold = false         # also write _sample_th (OpenTelemetry `th`)
//! rules = [                        # first match wins; rules are exceptions to the default
//!   { field = "EdgeResponseStatus", gte = 500, rate = 1.0 },
//!   { field = "ZoneName", in = ["a.example", "b.example"], rate = 0.5 },
//! ]
//! rate_table = { field = "ZoneName", rates = { "big.example" = 0.001 } }  # only with `rate`
//!
//! # instead of `rate` (stateful; both need the event-time column):
//! time_field = "EdgeStartTimestamp"
//! budget = { group_by = "ZoneName", per_second = 1000, excess_per_second = 100 }
//! target = { group_by = ["ZoneName", "EdgeResponseStatus"], events_per_second = 5000, window_seconds = 10 }
//! ```
//!
//! Rule conditions: `eq`, `ne`, `gt`, `gte`, `lt`, `lte`, `in`, `not_in`, `is_null`; all
//! given on one rule must hold, and comparisons with null never hold. Literals are cast to
//! the field's type when the config is validated.
//!
//! # Decisions
//!
//! A row is kept iff `R >= T`, where `R` is the key's 56-bit randomness and `T` the
//! threshold of the row's rate, exactly as in OpenTelemetry's consistent probability
//! sampling (OTEP 235, the `th` tracestate field). Consequences:
//!
//! * **Consistent:** a key gets the same decision at the same rate in every replica,
//!   restart, replay and backfill; nothing but config, seed and key enter it.
//! * **Nested:** keys kept at rate `p₁` are a subset of those kept at any `p₂ ≥ p₁`.
//! * **OpenTelemetry-compatible:** with `randomness = "trace_id"`, `R` is the trace id's
//!   lowest 56 bits and `T` is computed as the SDKs do (`2^56 − round_half_even(p·2^56)`),
//!   so a trace kept by an upstream OpenTelemetry sampler at probability ≥ ours stays whole.
//!   `R` from an explicit `rv` tracestate value is not read.
//!
//! `_sample_rate` is the exact probability of `R >= T` (it differs from the configured rate
//! by at most `2^-57`), so `SELECT sum(1 / _sample_rate)` is an unbiased count. An upstream
//! `_sample_rate` column is multiplied in (assumes the upstream sampler's randomness is
//! independent of ours, e.g. another seed); with `record_threshold` an upstream `_sample_th`
//! is combined as OpenTelemetry does for the same randomness, `max(upstream, ours)`.
//!
//! Rows whose key is null (any of its fields), or for `trace_id` not 32 hex digits, follow
//! `on_missing_key` and are counted in `sample_missing_key_total`; they never fail a batch.
//!
//! # Stateful modes
//!
//! `budget` and `target` derive each row's rate from counts of earlier rows per group and
//! event-time window (see [`state`] for the formulas). The rate never depends on the row's
//! own randomness, so re-weighting stays unbiased. The window state is advanced row by row
//! in partition order, so decisions do not depend on batch boundaries; they do depend on
//! the order of rows within the partition (which a replay reproduces) and, at window close,
//! on which row first reaches the next window. Late rows count in the current window. The
//! state is returned by `snapshot` (versioned binary, [`state::WindowState::snapshot`]) and
//! a restored operator continues exactly as an uninterrupted one.
//!
//! One chain runs per Kafka partition, so `target.events_per_second` and
//! `budget.per_second` apply per partition: divide a dataset-wide figure by the partition
//! count. Choose a per-event `key` (e.g. `RayID`) in these modes; with a per-group key the
//! group's rows would be kept or dropped together.

mod config;
pub mod hash;
mod key;
mod operator;
mod rules;
pub mod state;

#[cfg(test)]
mod tests;

pub use config::{
    BudgetConfig, DEFAULT_MAX_GROUPS, FieldList, MissingKeyPolicy, RATE_COLUMN, Randomness,
    RateTableConfig, RuleConfig, SampleConfig, Scalar, TH_COLUMN, TargetConfig,
};
pub use operator::SampleOperator;

/// Whether `name` is one of the columns the sampler adds to the rows it keeps.
pub fn is_sample_column(name: &str) -> bool {
    name == RATE_COLUMN || name == TH_COLUMN
}

use crate::Operator;
use crate::config::BuildContext;
use crate::error::OperatorError;

impl SampleConfig {
    /// Validates against `ctx.input_schema` and builds the operator.
    pub fn build(&self, ctx: &BuildContext<'_>) -> Result<Box<dyn Operator>, OperatorError> {
        Ok(Box::new(SampleOperator::new(
            self,
            ctx.dataset,
            &ctx.input_schema,
        )?))
    }
}
