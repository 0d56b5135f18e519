//! Weir's operators: synchronous, CPU-only steps that turn one Arrow [`RecordBatch`] into
//! another. A dataset's chain runs them in config order between the decoder and the Parquet
//! writer:
//!
//! ```text
//! SourceBatch ──▶ sample ──▶ redact ──▶ enrich ──▶ … ──▶ Parquet writer
//!                 (drops rows, adds     (rewrites      (adds columns from
//!                  _sample_rate)         strings)        reference data)
//! ```
//!
//! Operators never do I/O and never read the wall clock: anything from outside (an HMAC key,
//! an mmdb file, a lookup table) is loaded by the pipeline and handed in through
//! [`BuildContext`]. The same input batches, config and reference data therefore always give
//! the same output rows (design invariant 4, deterministic replay).
//!
//! One chain exists per (dataset, Kafka partition): its state is snapshotted into that
//! partition's ledger commit and restored when the partition is assigned again.

pub mod chain;
pub mod config;
pub mod enrich;
pub mod error;
pub mod redact;
pub mod sample;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use bytes::Bytes;

pub use chain::Chain;
pub use config::{BuildContext, OperatorConfig, OperatorSpec, SecretSource};
pub use error::{ConfigError, OperatorError};

/// One step of a dataset's chain.
///
/// # Contract
///
/// * **Synchronous and CPU only.** `process` must not block on I/O, sleep, spawn threads that
///   outlive the call, or read the clock. The pipeline calls it from a worker thread.
/// * **Deterministic.** Given the same sequence of input batches after the same `restore`,
///   an operator returns the same output batches. Randomness must be seeded from config.
/// * **Schema-stable.** Every batch returned by `process` has exactly the schema returned by
///   `output_schema` for the chain's input schema (the pipeline writes one Parquet schema per
///   file and relies on it).
/// * **Row-preserving unless it says otherwise.** Only the sampler removes rows; no operator
///   adds rows. Data problems in a row (an unparsable IP, a missing key) are answered with
///   nulls or a configured policy and counted in [`Operator::metrics`], never an `Err`.
///   An `Err` from `process` means the whole batch could not be handled; the pipeline sends
///   the batch's original records to dead letters with this operator's name as the stage.
/// * **State in the commit.** A stateful operator returns its state from `snapshot`; the
///   pipeline stores it in the same ledger entry as the rows it produced, and calls `restore`
///   with it before the first batch after a restart or reassignment. A restored operator must
///   decide exactly as an uninterrupted one would over the same input. `restore` refuses
///   (`Err`) state it cannot continue from, including state whose meaning the operator's
///   settings have changed, and then leaves the operator exactly as built: the chain runs it
///   from fresh state rather than failing.
pub trait Operator: Send {
    /// Short, stable name used in logs, metrics and dead-letter `stage` (e.g. `"sample"`).
    fn name(&self) -> &str;

    /// The schema of batches this operator returns, given the schema it receives.
    fn output_schema(&self, input: &SchemaRef) -> Result<SchemaRef, OperatorError>;

    /// Transforms one batch.
    fn process(&mut self, batch: RecordBatch) -> Result<RecordBatch, OperatorError>;

    /// Serialized state to store with the next commit; `None` for stateless operators.
    fn snapshot(&self) -> Option<Bytes> {
        None
    }

    /// Restores state produced by [`Operator::snapshot`] of the same operator type. On
    /// `Err` the operator must be unchanged.
    fn restore(&mut self, _state: Bytes) -> Result<(), OperatorError> {
        Ok(())
    }

    /// Key/value pairs recorded in each Parquet footer this operator's output lands in
    /// (e.g. the redaction profile hash, reference-data versions). Keys are prefixed by the
    /// pipeline with `weir.operator.<index>.`.
    fn lineage(&self) -> Vec<(String, String)> {
        Vec::new()
    }

    /// Monotonic counters since the operator was built (hits per rule, cache hits, ...).
    fn metrics(&self) -> Vec<Metric> {
        Vec::new()
    }
}

/// A monotonic counter exported by an operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metric {
    /// Metric name without the `weir_` prefix, snake_case (e.g. `redact_hits_total`).
    pub name: String,
    /// Label pairs, e.g. `[("rule", "email"), ("field", "ClientRequestURI")]`.
    pub labels: Vec<(String, String)>,
    pub value: u64,
}

impl Metric {
    pub fn new(name: impl Into<String>, labels: &[(&str, &str)], value: u64) -> Self {
        Metric {
            name: name.into(),
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            value,
        }
    }
}
