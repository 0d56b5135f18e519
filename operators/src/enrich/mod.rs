//! The `enrich` operator (placeholder: being written).

use arrow_schema::SchemaRef;
use serde::{Deserialize, Serialize};

use crate::config::BuildContext;
use crate::error::{ConfigError, OperatorError};
use crate::Operator;

/// `type = "enrich"` config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct EnrichConfig {}

impl EnrichConfig {
    pub fn validate(&self, _input: &SchemaRef) -> Result<(), ConfigError> {
        Err(ConfigError::new("type", "the enrich operator is not available yet"))
    }

    pub fn build(&self, _ctx: &BuildContext<'_>) -> Result<Box<dyn Operator>, OperatorError> {
        Err(ConfigError::new("type", "the enrich operator is not available yet").into())
    }
}

/// Reference data (mmdb readers, lookup tables) loaded by the pipeline and shared with
/// every enrich operator; swapped atomically on reload.
#[derive(Debug, Default)]
pub struct Resources {}
