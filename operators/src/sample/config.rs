//! `type = "sample"` configuration: serde types and validation against the input schema.

use std::collections::BTreeMap;

use arrow_array::{ArrayRef, BooleanArray, Float64Array, Int64Array, StringArray, new_null_array};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use serde::{Deserialize, Serialize};

use super::hash::MIN_RATE;
use crate::error::ConfigError;

/// Name of the column every kept row carries: the probability it was kept with.
pub const RATE_COLUMN: &str = "_sample_rate";
/// Name of the optional column holding the OpenTelemetry `th` value of the decision.
pub const TH_COLUMN: &str = "_sample_th";
/// Default bound on the groups a stateful mode tracks per window.
pub const DEFAULT_MAX_GROUPS: usize = 100_000;

/// `type = "sample"` config. See the module documentation for the modes and an example.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SampleConfig {
    /// Field (or fields) whose value decides a row's fate: rows with equal keys get equal
    /// decisions at equal rates.
    pub key: FieldList,
    /// Seed of the key hash; change it to draw an independent sample of the same keys.
    #[serde(default)]
    pub seed: u64,
    /// Where a key's randomness comes from: `hash` (XXH64 of the key with `seed`) or
    /// `trace_id` (the lowest 56 bits of a W3C trace id, as OpenTelemetry does; `seed` is
    /// not used).
    #[serde(default)]
    pub randomness: Randomness,
    /// Keep probability of rows no rule matches (plain mode). Exactly one of `rate`,
    /// `budget` and `target` sets the default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<f64>,
    /// Per-value rates for rows no rule matches, looked up by one column; values missing
    /// from the table use `rate`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_table: Option<RateTableConfig>,
    /// Exceptions, tried in order before the default: the first rule whose conditions all
    /// hold sets the row's rate.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<RuleConfig>,
    /// Per-group budget of events per second of event time (stateful).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<BudgetConfig>,
    /// Chain-wide target of kept events per second of event time, shared so that rare
    /// groups keep more of their rows than common ones (stateful).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<TargetConfig>,
    /// Event-time column (`Timestamp`) the stateful modes window on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_field: Option<String>,
    /// What to do with a row whose key is null (or, for `trace_id`, not a trace id).
    #[serde(default)]
    pub on_missing_key: MissingKeyPolicy,
    /// Also write `_sample_th`, the OpenTelemetry tracestate threshold of the decision.
    #[serde(default)]
    pub record_threshold: bool,
}

/// One field name or a list of them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum FieldList {
    One(String),
    Many(Vec<String>),
}

impl FieldList {
    pub fn names(&self) -> &[String] {
        match self {
            FieldList::One(name) => std::slice::from_ref(name),
            FieldList::Many(names) => names,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Randomness {
    #[default]
    Hash,
    TraceId,
}

/// `on_missing_key = "keep"` (default: kept with rate 1), `"drop"`, or
/// `{ fallback = "ClientIP" }` (hash another field or fields instead; kept with rate 1 if
/// those are null too).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum MissingKeyPolicy {
    #[default]
    Keep,
    Drop,
    Fallback(FieldList),
}

/// `rate_table = { field = "ZoneName", rates = { "example.com" = 0.5 } }`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateTableConfig {
    pub field: String,
    /// Column value (as text) → keep probability.
    pub rates: BTreeMap<String, f64>,
}

/// One rule: every condition given must hold; comparisons with a null never hold.
///
/// ```toml
/// rules = [
///   { field = "EdgeResponseStatus", gte = 500, rate = 1.0 },
///   { field = "ZoneName", in = ["a.example", "b.example"], rate = 0.5 },
/// ]
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    pub field: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eq: Option<Scalar>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ne: Option<Scalar>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gt: Option<Scalar>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gte: Option<Scalar>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lt: Option<Scalar>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lte: Option<Scalar>,
    #[serde(default, rename = "in", skip_serializing_if = "Option::is_none")]
    pub in_list: Option<Vec<Scalar>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_in: Option<Vec<Scalar>>,
    /// `true`: the field is null; `false`: it is not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_null: Option<bool>,
    pub rate: f64,
}

/// A literal in a rule, converted to the field's type when the operator is built.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Scalar {
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
}

/// As written in the config: `500`, `1.5`, `true`, `"five hundred"`.
impl std::fmt::Display for Scalar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Scalar::Bool(v) => write!(f, "{v}"),
            Scalar::Int(v) => write!(f, "{v}"),
            Scalar::Float(v) => write!(f, "{v:?}"),
            Scalar::Str(v) => write!(f, "{v:?}"),
        }
    }
}

impl Scalar {
    /// A one-element array of the literal cast to `data_type`.
    pub(crate) fn to_array(&self, data_type: &DataType) -> Result<ArrayRef, String> {
        let literal: ArrayRef = match self {
            Scalar::Bool(v) => std::sync::Arc::new(BooleanArray::from(vec![*v])),
            Scalar::Int(v) => std::sync::Arc::new(Int64Array::from(vec![*v])),
            Scalar::Float(v) => std::sync::Arc::new(Float64Array::from(vec![*v])),
            Scalar::Str(v) => std::sync::Arc::new(StringArray::from(vec![v.as_str()])),
        };
        if literal.data_type() == data_type {
            return Ok(literal);
        }
        let options = arrow_cast::CastOptions {
            safe: false,
            ..Default::default()
        };
        arrow_cast::cast_with_options(&literal, data_type, &options)
            .map_err(|error| format!("{self} is not a valid {data_type}: {error}"))
            .and_then(|array| {
                if array.is_null(0) {
                    Err(format!("{self} is not a valid {data_type}"))
                } else {
                    Ok(array)
                }
            })
    }
}

/// `budget = { group_by = "ZoneName", per_second = 1000 }`: the first `per_second` rows of
/// each group in each second of event time are kept; the rest (the excess) are sampled at a
/// rate that adapts so that about `excess_per_second` of them are kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BudgetConfig {
    pub group_by: FieldList,
    pub per_second: u64,
    /// Default: `ceil(per_second / 10)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub excess_per_second: Option<u64>,
    /// Groups tracked per window; further groups share one overflow group.
    #[serde(default = "default_max_groups")]
    pub max_groups: usize,
}

impl BudgetConfig {
    pub fn excess(&self) -> u64 {
        self.excess_per_second
            .unwrap_or_else(|| self.per_second.div_ceil(10))
    }
}

/// `target = { group_by = ["ZoneName", "EdgeResponseStatus"], events_per_second = 5000 }`:
/// per window, the budget `events_per_second × window_seconds` is shared between groups by
/// water-filling (each group gets `min(its count, level)`), so rare groups are kept whole
/// and common ones are sampled down.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetConfig {
    pub group_by: FieldList,
    pub events_per_second: u64,
    #[serde(default = "default_window_seconds")]
    pub window_seconds: u64,
    #[serde(default = "default_max_groups")]
    pub max_groups: usize,
}

fn default_max_groups() -> usize {
    DEFAULT_MAX_GROUPS
}

fn default_window_seconds() -> u64 {
    10
}

/// Field types a key or group may be made of.
pub(crate) fn hashable(data_type: &DataType) -> bool {
    use DataType::*;
    matches!(
        data_type,
        Utf8 | LargeUtf8
            | Utf8View
            | Binary
            | LargeBinary
            | BinaryView
            | FixedSizeBinary(_)
            | Boolean
            | Int8
            | Int16
            | Int32
            | Int64
            | UInt8
            | UInt16
            | UInt32
            | UInt64
            | Timestamp(_, _)
            | Date32
            | Date64
    )
}

fn check_rate(key: &str, rate: f64) -> Result<(), ConfigError> {
    if !(rate > 0.0 && rate <= 1.0) {
        return Err(ConfigError::new(
            key,
            format!("rate must be in (0, 1], got {rate}"),
        ));
    }
    if rate < MIN_RATE {
        return Err(ConfigError::new(
            key,
            format!("rate {rate} is below the smallest representable rate 2^-56"),
        ));
    }
    Ok(())
}

fn find_field<'a>(schema: &'a Schema, key: &str, name: &str) -> Result<&'a Field, ConfigError> {
    schema
        .field_with_name(name)
        .map_err(|_| ConfigError::new(key, format!("unknown field {name:?}")))
}

fn check_fields(schema: &Schema, key: &str, fields: &FieldList) -> Result<(), ConfigError> {
    if fields.names().is_empty() {
        return Err(ConfigError::new(key, "at least one field is required"));
    }
    for (index, name) in fields.names().iter().enumerate() {
        let key = match fields {
            FieldList::One(_) => key.to_owned(),
            FieldList::Many(_) => format!("{key}[{index}]"),
        };
        let field = find_field(schema, &key, name)?;
        if !hashable(field.data_type()) {
            return Err(ConfigError::new(
                key,
                format!(
                    "field {name:?} has type {} which cannot be hashed",
                    field.data_type()
                ),
            ));
        }
    }
    Ok(())
}

impl SampleConfig {
    /// Checks the config against the schema the operator will receive. Error keys are
    /// relative to the operator table (`rate`, `rules[1].gte`, `budget.per_second`).
    pub fn validate(&self, input: &SchemaRef) -> Result<(), ConfigError> {
        check_fields(input, "key", &self.key)?;
        if self.randomness == Randomness::TraceId {
            let [name] = self.key.names() else {
                return Err(ConfigError::new(
                    "key",
                    "randomness = \"trace_id\" needs exactly one key field",
                ));
            };
            let data_type = input.field_with_name(name).map(|f| f.data_type().clone());
            match data_type {
                Ok(DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
                | Ok(DataType::FixedSizeBinary(16)) => {}
                Ok(other) => {
                    return Err(ConfigError::new(
                        "key",
                        format!(
                            "randomness = \"trace_id\" needs a hex string or 16-byte binary field, {name:?} is {other}"
                        ),
                    ));
                }
                Err(_) => unreachable!("checked by check_fields"),
            }
        }
        if let MissingKeyPolicy::Fallback(fields) = &self.on_missing_key {
            check_fields(input, "on_missing_key.fallback", fields)?;
        }

        let defaults = [
            self.rate.is_some(),
            self.budget.is_some(),
            self.target.is_some(),
        ];
        match defaults.iter().filter(|set| **set).count() {
            0 => {
                return Err(ConfigError::new(
                    "rate",
                    "one of rate, budget or target is required",
                ));
            }
            1 => {}
            _ => {
                let key = if self.target.is_some() {
                    "target"
                } else {
                    "budget"
                };
                return Err(ConfigError::new(
                    key,
                    "only one of rate, budget and target may be set",
                ));
            }
        }
        if let Some(rate) = self.rate {
            check_rate("rate", rate)?;
        }
        if let Some(table) = &self.rate_table {
            if self.rate.is_none() {
                return Err(ConfigError::new(
                    "rate_table",
                    "a rate table refines the plain rate and needs rate to be set",
                ));
            }
            find_field(input, "rate_table.field", &table.field)?;
            for (value, rate) in &table.rates {
                check_rate(&format!("rate_table.rates.{value:?}"), *rate)?;
            }
        }
        for (index, rule) in self.rules.iter().enumerate() {
            validate_rule(input, &format!("rules[{index}]"), rule)?;
        }

        let stateful = self.budget.is_some() || self.target.is_some();
        if let Some(budget) = &self.budget {
            check_fields(input, "budget.group_by", &budget.group_by)?;
            if budget.per_second == 0 {
                return Err(ConfigError::new(
                    "budget.per_second",
                    "the budget must be at least one event per second",
                ));
            }
            if budget.excess() == 0 {
                return Err(ConfigError::new(
                    "budget.excess_per_second",
                    "must be at least 1 (the excess is sampled, never dropped whole)",
                ));
            }
            if budget.max_groups == 0 {
                return Err(ConfigError::new("budget.max_groups", "must be at least 1"));
            }
        }
        if let Some(target) = &self.target {
            check_fields(input, "target.group_by", &target.group_by)?;
            if target.events_per_second == 0 {
                return Err(ConfigError::new(
                    "target.events_per_second",
                    "the target must be at least one event per second",
                ));
            }
            if target.window_seconds == 0 {
                return Err(ConfigError::new(
                    "target.window_seconds",
                    "must be at least 1",
                ));
            }
            if target.max_groups == 0 {
                return Err(ConfigError::new("target.max_groups", "must be at least 1"));
            }
        }
        match (&self.time_field, stateful) {
            (None, true) => {
                return Err(ConfigError::new(
                    "time_field",
                    "budget and target sample by event time: name the timestamp field",
                ));
            }
            (Some(name), _) => {
                let field = find_field(input, "time_field", name)?;
                if !matches!(field.data_type(), DataType::Timestamp(_, _)) {
                    return Err(ConfigError::new(
                        "time_field",
                        format!("field {name:?} is {}, not a timestamp", field.data_type()),
                    ));
                }
                if !stateful {
                    return Err(ConfigError::new(
                        "time_field",
                        "only used by budget and target",
                    ));
                }
            }
            (None, false) => {}
        }

        if let Ok(field) = input.field_with_name(RATE_COLUMN)
            && field.data_type() != &DataType::Float64
        {
            return Err(ConfigError::new(
                "type",
                format!(
                    "input column {RATE_COLUMN} is {}, expected Float64 to multiply into",
                    field.data_type()
                ),
            ));
        }
        if self.record_threshold
            && let Ok(field) = input.field_with_name(TH_COLUMN)
            && !matches!(field.data_type(), DataType::Utf8)
        {
            return Err(ConfigError::new(
                "record_threshold",
                format!(
                    "input column {TH_COLUMN} is {}, expected Utf8",
                    field.data_type()
                ),
            ));
        }
        Ok(())
    }
}

/// Time unit of a timestamp column in units per second.
pub(crate) fn units_per_second(unit: &TimeUnit) -> i64 {
    match unit {
        TimeUnit::Second => 1,
        TimeUnit::Millisecond => 1_000,
        TimeUnit::Microsecond => 1_000_000,
        TimeUnit::Nanosecond => 1_000_000_000,
    }
}

fn validate_rule(schema: &Schema, key: &str, rule: &RuleConfig) -> Result<(), ConfigError> {
    check_rate(&format!("{key}.rate"), rule.rate)?;
    let field = find_field(schema, &format!("{key}.field"), &rule.field)?;
    let data_type = field.data_type();
    let mut conditions = 0;
    for (name, literal) in [
        ("eq", &rule.eq),
        ("ne", &rule.ne),
        ("gt", &rule.gt),
        ("gte", &rule.gte),
        ("lt", &rule.lt),
        ("lte", &rule.lte),
    ] {
        if let Some(literal) = literal {
            conditions += 1;
            literal
                .to_array(data_type)
                .map_err(|reason| ConfigError::new(format!("{key}.{name}"), reason))?;
        }
    }
    for (name, list) in [("in", &rule.in_list), ("not_in", &rule.not_in)] {
        if let Some(list) = list {
            conditions += 1;
            for (index, literal) in list.iter().enumerate() {
                literal
                    .to_array(data_type)
                    .map_err(|reason| ConfigError::new(format!("{key}.{name}[{index}]"), reason))?;
            }
        }
    }
    if rule.is_null.is_some() {
        conditions += 1;
    }
    if conditions == 0 {
        return Err(ConfigError::new(
            key,
            "a rule needs at least one condition (eq, ne, gt, gte, lt, lte, in, not_in, is_null)",
        ));
    }
    // Probe the comparison kernels once so an unsupported type fails here, not per batch.
    let probe = new_null_array(data_type, 1);
    for literal in [&rule.eq, &rule.gt].into_iter().flatten() {
        let literal = literal
            .to_array(data_type)
            .map_err(|reason| ConfigError::new(key, reason))?;
        arrow_ord::cmp::eq(&probe, &arrow_array::Scalar::new(literal)).map_err(|error| {
            ConfigError::new(
                format!("{key}.field"),
                format!("cannot compare {data_type}: {error}"),
            )
        })?;
    }
    Ok(())
}
