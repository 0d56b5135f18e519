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
//! `Vec<OperatorSpec>` (each an optional `name` plus an [`OperatorConfig`]), checks the
//! names with [`check_names`], calls [`OperatorConfig::validate`] against the dataset's
//! Arrow schema (this is all `weir check-config` does), and later builds one
//! [`Chain`](crate::Chain) per (dataset, partition).
//!
//! An operator's identity is its type plus its name. The name defaults to the type, so a
//! chain with one operator of each type needs no names; two of one type must be named.
//! Operator state is saved and restored by identity, never by position, so operators can
//! be added, removed and reordered without losing the state of the others.

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

/// One `[[datasets.operators]]` table: an optional `name` and the operator's own keys.
///
/// ```toml
/// [[datasets.operators]]
/// type = "sample"
/// name = "per_zone_budget"      # optional; defaults to the type
/// key = "RayID"
/// ```
///
/// Read by hand rather than with `#[serde(flatten)]`: a flattened (or internally tagged)
/// table is buffered before its type is known, and serde's errors from the buffer name
/// neither the key nor its line. Here the `type` picks the operator's config struct, which
/// is then read with its path tracked, so `rate = "ten percent"` is refused as
/// `rate: invalid type: string "ten percent", expected f64`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OperatorSpec {
    /// Stable name of this operator in its chain: what its saved state is filed under,
    /// and the dead-letter `stage` of a batch it fails. Defaults to the type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(flatten)]
    pub config: OperatorConfig,
}

impl<'de> Deserialize<'de> for OperatorSpec {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        use toml::Value;
        // Buffered as TOML values, which keep what the file says (`inf`, `nan`, dates):
        // a JSON value would turn a non-finite float into null.
        let mut table = toml::Table::deserialize(deserializer)?;
        let name = match table.remove("name") {
            None => None,
            Some(Value::String(name)) => Some(name),
            Some(other) => {
                return Err(D::Error::custom(format!(
                    "name: expected a string, found {}",
                    other.type_str()
                )));
            }
        };
        let kind = match table.remove("type") {
            Some(Value::String(kind)) => kind,
            Some(other) => {
                return Err(D::Error::custom(format!(
                    "type: expected a string, found {}",
                    other.type_str()
                )));
            }
            None => return Err(D::Error::missing_field("type")),
        };
        fn read<T: serde::de::DeserializeOwned, E: serde::de::Error>(
            table: toml::Table,
        ) -> Result<T, E> {
            serde_path_to_error::deserialize(Value::Table(table)).map_err(|e| {
                let path = e.path().to_string();
                let inner = e.into_inner();
                if path == "." {
                    E::custom(inner)
                } else {
                    E::custom(format!("{path}: {inner}"))
                }
            })
        }
        let config = match kind.as_str() {
            "sample" => OperatorConfig::Sample(read(table)?),
            "redact" => OperatorConfig::Redact(read(table)?),
            "enrich" => OperatorConfig::Enrich(read(table)?),
            other => {
                return Err(D::Error::custom(format!(
                    "type: unknown operator type {other:?}, expected one of sample, redact, enrich"
                )));
            }
        };
        Ok(OperatorSpec { name, config })
    }
}

impl OperatorSpec {
    /// An operator without an explicit name (named after its type).
    pub fn new(config: OperatorConfig) -> Self {
        OperatorSpec { name: None, config }
    }

    pub fn named(name: impl Into<String>, config: OperatorConfig) -> Self {
        OperatorSpec {
            name: Some(name.into()),
            config,
        }
    }

    /// The effective name: the configured one, or the type.
    pub fn name(&self) -> &str {
        self.name.as_deref().unwrap_or(self.config.kind())
    }
}

/// Names the pipeline uses as dead-letter `stage` itself.
pub const RESERVED_NAMES: [&str; 2] = ["decode", "write"];

/// Longest operator name accepted.
pub const MAX_NAME_LEN: usize = 64;

/// Checks that every operator of one chain has a valid name of its own. On failure,
/// returns the position of the offending operator and the error (key `name`).
pub fn check_names(specs: &[OperatorSpec]) -> Result<(), (usize, ConfigError)> {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (position, spec) in specs.iter().enumerate() {
        if let Some(name) = &spec.name
            && (name.is_empty()
                || name.len() > MAX_NAME_LEN
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'))
        {
            return Err((
                position,
                ConfigError::new(
                    "name",
                    format!("{name:?} must be 1 to {MAX_NAME_LEN} of [A-Za-z0-9_-]"),
                ),
            ));
        }
        let name = spec.name();
        if RESERVED_NAMES.contains(&name) {
            return Err((
                position,
                ConfigError::new(
                    "name",
                    format!("{name:?} is a dead-letter stage of the pipeline's own; pick another"),
                ),
            ));
        }
        if let Some(first) = seen.insert(name, position) {
            let reason = if spec.name.is_none() && specs[first].name.is_none() {
                format!(
                    "operators {first} and {position} are both {} operators without a name; \
                     give each a distinct name = \"...\" so its state can be told apart",
                    spec.config.kind()
                )
            } else {
                format!("operators {first} and {position} are both named {name:?}")
            };
            return Err((position, ConfigError::new("name", reason)));
        }
    }
    Ok(())
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
