//! Errors of operator configuration and execution.

use thiserror::Error;

/// A configuration that cannot be built. Always names the config key at fault so
/// `weir check-config` can print `datasets[0].operators[1].rate: ...`.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("{key}: {reason}")]
pub struct ConfigError {
    /// Dotted path of the offending key relative to the operator table (e.g. `rate`,
    /// `rules[2].when`); the pipeline prefixes it with the operator's position.
    pub key: String,
    pub reason: String,
}

impl ConfigError {
    pub fn new(key: impl Into<String>, reason: impl Into<String>) -> Self {
        ConfigError {
            key: key.into(),
            reason: reason.into(),
        }
    }
}

/// Failure while running an operator.
#[derive(Debug, Error)]
pub enum OperatorError {
    #[error("invalid operator config: {0}")]
    Config(#[from] ConfigError),
    #[error("operator {operator}: input schema mismatch: {reason}")]
    Schema { operator: String, reason: String },
    #[error("operator {operator}: {source}")]
    Arrow {
        operator: String,
        #[source]
        source: arrow_schema::ArrowError,
    },
    #[error("operator {operator}: cannot restore state: {reason}")]
    Restore { operator: String, reason: String },
    #[error("operator {operator}: {reason}")]
    Other { operator: String, reason: String },
}

impl OperatorError {
    pub fn arrow(operator: &str, source: arrow_schema::ArrowError) -> Self {
        OperatorError::Arrow {
            operator: operator.to_owned(),
            source,
        }
    }
    pub fn schema(operator: &str, reason: impl Into<String>) -> Self {
        OperatorError::Schema {
            operator: operator.to_owned(),
            reason: reason.into(),
        }
    }
    pub fn restore(operator: &str, reason: impl Into<String>) -> Self {
        OperatorError::Restore {
            operator: operator.to_owned(),
            reason: reason.into(),
        }
    }
}
