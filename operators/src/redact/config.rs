//! `type = "redact"`: serde config, validation against the input schema, and compilation
//! into a [`Profile`] that the operator runs.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_schema::{DataType, SchemaRef};
use hmac::{Hmac, KeyInit};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::detectors::{
    self, BUILTIN_DETECTORS, DEFAULT_HEADERS, DEFAULT_PARAMS, NameList, OFF_BY_DEFAULT,
    PatternSpec, Scanner,
};
use super::operator::RedactOperator;
use crate::Operator;
use crate::config::{BuildContext, SecretRef, SecretSource};
use crate::error::{ConfigError, OperatorError};

/// Bumped whenever the meaning of a profile changes without its config changing (a
/// detector's pattern or check); it is part of the profile hash.
const PROFILE_VERSION: &str = "weir.redact.v1";

/// `type = "redact"` config. Every key is optional: an empty table is the default profile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct RedactConfig {
    /// `enforce` (default) rewrites data; `shadow` only counts what would be redacted.
    pub mode: Mode,
    /// Replaces the default detector set (all built-ins except `ipv4` and `ipv6`).
    pub detectors: Option<Vec<String>>,
    /// Built-in detectors added to the set (e.g. `["ipv4", "ipv6"]`).
    pub enable: Vec<String>,
    /// Built-in detectors removed from the set.
    pub disable: Vec<String>,
    /// What a detector hit becomes: its typed placeholder (`[EMAIL]`) or a keyed token
    /// (`[EMAIL:3f0c…]`).
    pub on_match: OnMatch,
    /// Detectors whose hits become keyed tokens even when `on_match = "placeholder"`.
    pub tokenize: Vec<String>,
    /// Extra detectors: a regex and a placeholder each.
    pub custom_detectors: Vec<CustomDetector>,
    /// Parameter names (query string, form body, cookies, JSON keys) whose values are
    /// redacted by the `params` detector, and map keys whose values are redacted whole.
    /// Replaces the default list. A leading `*` matches any prefix.
    pub params: Option<Vec<String>>,
    /// Header names: map values under these keys are redacted whole. Replaces the default
    /// list. A leading `*` matches any prefix.
    pub headers: Option<Vec<String>>,
    /// Per-column rules, by top-level field name.
    pub fields: BTreeMap<String, FieldRule>,
    /// What happens to columns `fields` does not name: `scan` (default) runs the detectors;
    /// `drop` removes them (allow-list, fail closed: a column that appears later is
    /// dropped too).
    pub unlisted_fields: Unlisted,
    /// The HMAC-SHA256 key for tokens; required when any rule produces tokens.
    pub hmac_key: Option<SecretRef>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    #[default]
    Enforce,
    Shadow,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum OnMatch {
    #[default]
    Placeholder,
    Token,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Unlisted {
    #[default]
    Scan,
    Drop,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomDetector {
    /// Name used in metrics and in `tokenize`; must not shadow a built-in.
    pub name: String,
    /// Regex (Rust `regex` syntax, bytes, ASCII classes). With a capture group, only group
    /// 1 is redacted.
    pub pattern: String,
    /// Defaults to `[<NAME>]`.
    #[serde(default)]
    pub placeholder: Option<String>,
}

/// What to do with one column.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
pub enum FieldRule {
    /// Pass the column through untouched (no detectors).
    Keep,
    /// Run the detectors over it (the default for every column).
    Scan,
    /// Remove the column from the output schema.
    Drop,
    /// Replace every value with null.
    Null,
    /// Replace each value with `tok_` + a keyed HMAC-SHA256 of it (32 hex digits).
    Token,
    /// Keep the last `keep_last` characters, replace the others with `mask_char`. Values
    /// no longer than `keep_last` are masked whole.
    Mask {
        #[serde(default = "default_keep_last")]
        keep_last: usize,
        #[serde(default = "default_mask_char")]
        mask_char: char,
    },
    /// Zero the host bits of an IP address; values that are not an IP become null. The
    /// prefixes are read as any non-negative integer so that one too long is refused by
    /// validation ("must be at most 32"), not by the integer type.
    TruncateIp {
        #[serde(default = "default_v4_prefix")]
        ipv4_prefix: u64,
        #[serde(default = "default_v6_prefix")]
        ipv6_prefix: u64,
    },
    /// Replace every non-null value with `value`.
    Constant { value: String },
}

fn default_keep_last() -> usize {
    4
}
fn default_mask_char() -> char {
    '*'
}
fn default_v4_prefix() -> u64 {
    24
}
fn default_v6_prefix() -> u64 {
    48
}

impl FieldRule {
    pub(crate) fn label(&self) -> &'static str {
        match self {
            FieldRule::Keep => "keep",
            FieldRule::Scan => "scan",
            FieldRule::Drop => "drop",
            FieldRule::Null => "null",
            FieldRule::Token => "token",
            FieldRule::Mask { .. } => "mask",
            FieldRule::TruncateIp { .. } => "truncate_ip",
            FieldRule::Constant { .. } => "constant",
        }
    }

    fn needs_string(&self) -> bool {
        matches!(
            self,
            FieldRule::Token
                | FieldRule::Mask { .. }
                | FieldRule::TruncateIp { .. }
                | FieldRule::Constant { .. }
        )
    }
}

pub(crate) fn is_string(dt: &DataType) -> bool {
    matches!(
        dt,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
    )
}

/// One detector of a compiled profile.
#[derive(Debug, Clone)]
pub(crate) struct DetectorInfo {
    pub name: String,
    pub placeholder: String,
    pub tokenize: bool,
}

/// A validated, compiled redaction profile. Shared by every operator built from it.
#[derive(Debug)]
pub(crate) struct Profile {
    pub shadow: bool,
    pub scanner: Scanner,
    pub detectors: Vec<DetectorInfo>,
    pub fields: BTreeMap<String, FieldRule>,
    pub unlisted_drop: bool,
    /// Map keys whose values are replaced whole (headers and parameter names).
    pub sensitive_keys: NameList,
    pub key_placeholder: String,
    pub hmac: Option<Hmac<Sha256>>,
    /// Hex SHA-256 of the effective rules.
    pub hash: String,
}

/// The effective rules, serialized to compute the profile hash.
#[derive(Serialize)]
struct Effective<'a> {
    version: &'static str,
    mode: Mode,
    detectors: Vec<(&'a str, &'a str, &'a str, bool)>,
    params: Vec<String>,
    headers: Vec<String>,
    fields: &'a BTreeMap<String, FieldRule>,
    unlisted_fields: Unlisted,
}

impl RedactConfig {
    /// Checks the config against `input` and resolves the HMAC key if one is needed.
    pub fn validate(
        &self,
        input: &SchemaRef,
        secrets: &dyn SecretSource,
    ) -> Result<(), ConfigError> {
        self.compile(input, secrets).map(|_| ())
    }

    pub fn build(&self, ctx: &BuildContext<'_>) -> Result<Box<dyn Operator>, OperatorError> {
        let profile = self.compile(&ctx.input_schema, ctx.secrets)?;
        Ok(Box::new(RedactOperator::new(
            Arc::new(profile),
            ctx.input_schema.clone(),
        )))
    }

    fn detector_set(&self) -> Result<Vec<String>, ConfigError> {
        let check = |key: String, name: &str| {
            if BUILTIN_DETECTORS.contains(&name) {
                Ok(())
            } else {
                Err(ConfigError::new(
                    key,
                    format!(
                        "unknown detector {name:?}; built-in detectors are {}",
                        BUILTIN_DETECTORS.join(", ")
                    ),
                ))
            }
        };
        let mut set: Vec<String> = match &self.detectors {
            Some(list) => {
                for (i, name) in list.iter().enumerate() {
                    check(format!("detectors[{i}]"), name)?;
                }
                list.clone()
            }
            None => BUILTIN_DETECTORS
                .iter()
                .filter(|d| !OFF_BY_DEFAULT.contains(d))
                .map(|d| (*d).to_owned())
                .collect(),
        };
        for (i, name) in self.enable.iter().enumerate() {
            check(format!("enable[{i}]"), name)?;
            if !set.contains(name) {
                set.push(name.clone());
            }
        }
        for (i, name) in self.disable.iter().enumerate() {
            check(format!("disable[{i}]"), name)?;
            set.retain(|d| d != name);
        }
        // Matching order is the catalogue's, whatever order the config lists them in.
        set.sort_by_key(|d| BUILTIN_DETECTORS.iter().position(|b| b == d));
        set.dedup();
        Ok(set)
    }

    fn name_list(
        key: &str,
        configured: &Option<Vec<String>>,
        defaults: &[&str],
    ) -> Result<Vec<String>, ConfigError> {
        let names: Vec<String> = match configured {
            Some(list) => list.clone(),
            None => defaults.iter().map(|s| (*s).to_owned()).collect(),
        };
        for (i, name) in names.iter().enumerate() {
            if !detectors::valid_name(name) {
                return Err(ConfigError::new(
                    format!("{key}[{i}]"),
                    format!(
                        "invalid name {name:?}: use letters, digits, '_', '.', '-', optionally with a leading '*'"
                    ),
                ));
            }
        }
        let mut names: Vec<String> = names.iter().map(|n| n.to_ascii_lowercase()).collect();
        names.sort();
        names.dedup();
        Ok(names)
    }

    pub(crate) fn compile(
        &self,
        input: &SchemaRef,
        secrets: &dyn SecretSource,
    ) -> Result<Profile, ConfigError> {
        let set = self.detector_set()?;
        let params = Self::name_list("params", &self.params, DEFAULT_PARAMS)?;
        let headers = Self::name_list("headers", &self.headers, DEFAULT_HEADERS)?;
        let param_list = NameList::new(&params);

        let mut detectors: Vec<DetectorInfo> = Vec::new();
        let mut patterns: Vec<PatternSpec> = Vec::new();
        let mut pattern_keys: Vec<String> = Vec::new();
        for name in &set {
            let index = detectors.len();
            detectors.push(DetectorInfo {
                name: name.clone(),
                placeholder: detectors::builtin_placeholder(name).to_owned(),
                tokenize: false,
            });
            for spec in detectors::builtin_patterns(name, index, &param_list) {
                pattern_keys.push(format!("detectors.{name}"));
                patterns.push(spec);
            }
        }
        for (i, custom) in self.custom_detectors.iter().enumerate() {
            let key = format!("custom_detectors[{i}]");
            if custom.name.is_empty()
                || !custom
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_')
            {
                return Err(ConfigError::new(
                    format!("{key}.name"),
                    "must be non-empty letters, digits and '_'",
                ));
            }
            if BUILTIN_DETECTORS.contains(&custom.name.as_str())
                || detectors.iter().any(|d| d.name == custom.name)
            {
                return Err(ConfigError::new(
                    format!("{key}.name"),
                    format!("detector {:?} is already defined", custom.name),
                ));
            }
            if let Err(reason) = detectors::check_pattern(&custom.pattern) {
                return Err(ConfigError::new(
                    format!("{key}.pattern"),
                    format!(
                        "invalid regex: {}",
                        reason.lines().collect::<Vec<_>>().join(" ")
                    ),
                ));
            }
            let index = detectors.len();
            detectors.push(DetectorInfo {
                name: custom.name.clone(),
                placeholder: custom
                    .placeholder
                    .clone()
                    .unwrap_or_else(|| format!("[{}]", custom.name.to_ascii_uppercase())),
                tokenize: false,
            });
            let group = detectors::explicit_groups(&custom.pattern) > 0;
            pattern_keys.push(format!("{key}.pattern"));
            patterns.push(PatternSpec {
                detector: index,
                source: custom.pattern.clone(),
                group,
                check: detectors::Check::None,
                gates: vec![detectors::Gate::Always],
                rescan: false,
            });
        }

        for (i, name) in self.tokenize.iter().enumerate() {
            match detectors.iter_mut().find(|d| &d.name == name) {
                Some(d) => d.tokenize = true,
                None => {
                    return Err(ConfigError::new(
                        format!("tokenize[{i}]"),
                        format!("detector {name:?} is not enabled"),
                    ));
                }
            }
        }
        if self.on_match == OnMatch::Token {
            detectors.iter_mut().for_each(|d| d.tokenize = true);
        }

        let sources: Vec<String> = (0..detectors.len())
            .map(|i| {
                patterns
                    .iter()
                    .filter(|p| p.detector == i)
                    .map(|p| p.source.as_str())
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .collect();
        let mut gate_names = params.clone();
        gate_names.extend(["authorization".to_owned(), "proxy-authorization".to_owned()]);
        let scanner = Scanner::new(patterns, NameList::new(&gate_names)).map_err(|e| {
            let key = pattern_keys
                .get(e.index)
                .cloned()
                .unwrap_or_else(|| "custom_detectors".to_owned());
            ConfigError::new(key, format!("cannot compile: {}", e.reason))
        })?;

        for (name, rule) in &self.fields {
            let key = format!("fields.{name}");
            let Some((_, field)) = input.column_with_name(name) else {
                return Err(ConfigError::new(key, "no such field in the input schema"));
            };
            if crate::sample::is_sample_column(name) && !matches!(rule, FieldRule::Keep) {
                return Err(ConfigError::new(
                    format!("{key}.action"),
                    format!(
                        "{name} records how many records each sampled row stands for (the only \
                         record of what the sampler dropped); redact always keeps it"
                    ),
                ));
            }
            if rule.needs_string() && !is_string(field.data_type()) {
                return Err(ConfigError::new(
                    format!("{key}.action"),
                    format!(
                        "{} needs a string column, {name} is {}",
                        rule.label(),
                        field.data_type()
                    ),
                ));
            }
            match rule {
                FieldRule::TruncateIp {
                    ipv4_prefix,
                    ipv6_prefix,
                } => {
                    if *ipv4_prefix > 32 {
                        return Err(ConfigError::new(
                            format!("{key}.ipv4_prefix"),
                            "must be at most 32",
                        ));
                    }
                    if *ipv6_prefix > 128 {
                        return Err(ConfigError::new(
                            format!("{key}.ipv6_prefix"),
                            "must be at most 128",
                        ));
                    }
                }
                FieldRule::Mask { mask_char, .. } if mask_char.is_control() => {
                    return Err(ConfigError::new(
                        format!("{key}.mask_char"),
                        "must be a printable character",
                    ));
                }
                _ => {}
            }
        }

        let token_user = self
            .fields
            .iter()
            .find(|(_, r)| **r == FieldRule::Token)
            .map(|(name, _)| format!("fields.{name}.action is \"token\""))
            .or_else(|| {
                detectors
                    .iter()
                    .find(|d| d.tokenize)
                    .map(|d| format!("detector {} produces tokens", d.name))
            });
        let hmac = match (&self.hmac_key, token_user) {
            (None, Some(user)) => {
                return Err(ConfigError::new(
                    "hmac_key",
                    format!(
                        "required because {user}; set hmac_key = {{ env = \"...\" }} or {{ file = \"...\" }}"
                    ),
                ));
            }
            (Some(secret), Some(_)) => {
                let key = secrets
                    .resolve(secret)
                    .map_err(|reason| ConfigError::new("hmac_key", reason))?;
                if key.is_empty() {
                    return Err(ConfigError::new(
                        "hmac_key",
                        format!("secret {secret} is empty"),
                    ));
                }
                Some(
                    <Hmac<Sha256> as KeyInit>::new_from_slice(&key)
                        .map_err(|e| ConfigError::new("hmac_key", e.to_string()))?,
                )
            }
            (_, None) => None,
        };

        let effective = Effective {
            version: PROFILE_VERSION,
            mode: self.mode,
            detectors: detectors
                .iter()
                .zip(&sources)
                .map(|(d, src)| {
                    (
                        d.name.as_str(),
                        d.placeholder.as_str(),
                        src.as_str(),
                        d.tokenize,
                    )
                })
                .collect(),
            params: params.clone(),
            headers: headers.clone(),
            fields: &self.fields,
            unlisted_fields: self.unlisted_fields,
        };
        let canonical = serde_json::to_vec(&effective)
            .map_err(|e| ConfigError::new("type", format!("cannot hash profile: {e}")))?;
        let hash = hex::encode(Sha256::digest(&canonical));

        let mut keys = headers;
        keys.extend(params);
        Ok(Profile {
            shadow: self.mode == Mode::Shadow,
            scanner,
            detectors,
            fields: self.fields.clone(),
            unlisted_drop: self.unlisted_fields == Unlisted::Drop,
            sensitive_keys: NameList::new(&keys),
            key_placeholder: detectors::builtin_placeholder("params").to_owned(),
            hmac,
            hash,
        })
    }
}
