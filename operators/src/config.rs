//! Operator configuration: a closed serde enum, validated without I/O, built into runtime
//! operators.
//!
//! ```toml
//! [[datasets.operators]]
//! type = "sample"          # "sample" | "redact" | "enrich"
//! key = "RayID"
//! rate = 0.01
//! ```
//!
//! Life cycle: the pipeline parses the dataset's `operators` array into
//! `Vec<OperatorConfig>`, calls [`OperatorConfig::validate`] against the dataset's Arrow
//! schema (this is all `weir check-config` does), and later [`OperatorConfig::build`]s one
//! operator per (dataset, partition) chain.

use std::collections::HashMap;
use std::fmt;

use arrow_schema::SchemaRef;
use serde::{Deserialize, Serialize};

use crate::Operator;
use crate::enrich::{EnrichConfig, Resources};
use crate::error::{ConfigError, OperatorError};
use crate::redact::RedactConfig;
use crate::sample::SampleConfig;

/// One entry of a dataset's `[[datasets.operators]]` list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum OperatorConfig {
    Sample(SampleConfig),
    Redact(RedactConfig),
    Enrich(EnrichConfig),
}

impl OperatorConfig {
    /// The `type` value of this entry.
    pub fn kind(&self) -> &'static str {
        match self {
            OperatorConfig::Sample(_) => "sample",
            OperatorConfig::Redact(_) => "redact",
            OperatorConfig::Enrich(_) => "enrich",
        }
    }

    /// Checks the config against the schema the operator will receive, without I/O
    /// (reading environment variables is allowed; files are not).
    pub fn validate(
        &self,
        input: &SchemaRef,
        secrets: &dyn SecretSource,
    ) -> Result<(), ConfigError> {
        match self {
            OperatorConfig::Sample(c) => c.validate(input),
            OperatorConfig::Redact(c) => c.validate(input, secrets),
            OperatorConfig::Enrich(c) => c.validate(input),
        }
    }

    /// Builds the runtime operator.
    pub fn build(&self, ctx: &BuildContext<'_>) -> Result<Box<dyn Operator>, OperatorError> {
        match self {
            OperatorConfig::Sample(c) => c.build(ctx),
            OperatorConfig::Redact(c) => c.build(ctx),
            OperatorConfig::Enrich(c) => c.build(ctx),
        }
    }
}

/// What the pipeline hands an operator when building it.
pub struct BuildContext<'a> {
    /// Dataset name (for metrics labels and error messages).
    pub dataset: &'a str,
    /// Schema of the batches this operator will receive.
    pub input_schema: SchemaRef,
    /// Resolves secret references (HMAC keys) to bytes.
    pub secrets: &'a dyn SecretSource,
    /// Reference data for `enrich`, loaded (and reloaded) by the pipeline.
    pub resources: &'a Resources,
}

impl fmt::Debug for BuildContext<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BuildContext")
            .field("dataset", &self.dataset)
            .finish_non_exhaustive()
    }
}

/// Where a secret comes from. Secrets are never written in the config file itself.
///
/// ```toml
/// hmac_key = { env = "WEIR_REDACT_KEY" }
/// hmac_key = { file = "/var/run/secrets/weir/redact-key" }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum SecretRef {
    Env(String),
    File(String),
}

impl fmt::Display for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretRef::Env(name) => write!(f, "env:{name}"),
            SecretRef::File(path) => write!(f, "file:{path}"),
        }
    }
}

/// Resolves [`SecretRef`]s. The pipeline implements it over the process environment and
/// the file system; tests use [`StaticSecrets`].
pub trait SecretSource: Send + Sync {
    /// The secret's bytes, or a human-readable reason it is unavailable.
    fn resolve(&self, secret: &SecretRef) -> Result<Vec<u8>, String>;
}

/// A fixed map of secrets, for tests and for `weir demo`.
#[derive(Debug, Default, Clone)]
pub struct StaticSecrets(pub HashMap<SecretRef, Vec<u8>>);

impl StaticSecrets {
    pub fn with(mut self, secret: SecretRef, value: impl Into<Vec<u8>>) -> Self {
        self.0.insert(secret, value.into());
        self
    }
}

impl SecretSource for StaticSecrets {
    fn resolve(&self, secret: &SecretRef) -> Result<Vec<u8>, String> {
        self.0
            .get(secret)
            .cloned()
            .ok_or_else(|| format!("secret {secret} is not set"))
    }
}
