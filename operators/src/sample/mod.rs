//! The `sample` operator (placeholder: being written).

use arrow_schema::SchemaRef;
use serde::{Deserialize, Serialize};

use crate::config::BuildContext;
use crate::error::{ConfigError, OperatorError};
use crate::Operator;

/// `type = "sample"` config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct SampleConfig {}

impl SampleConfig {
    pub fn validate(&self, _input: &SchemaRef) -> Result<(), ConfigError> {
        Err(ConfigError::new("type", "the sample operator is not available yet"))
    }

    pub fn build(&self, _ctx: &BuildContext<'_>) -> Result<Box<dyn Operator>, OperatorError> {
        Err(ConfigError::new("type", "the sample operator is not available yet").into())
    }
}
