//! Dataset schema files: the format, loading, validation and the Arrow schemas derived
//! from them. See the crate documentation for the file format.

use std::collections::HashSet;
use std::sync::Arc;

use arrow_schema::{DataType, Field, FieldRef, Fields, Schema, SchemaRef, TimeUnit};
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use crate::{SchemaError, UnknownFields};

/// Name of the column that holds unknown top-level keys in [`UnknownFields::Extra`] mode.
pub const EXTRA_COLUMN: &str = "_extra";

/// Timezone attached to every timestamp column.
pub const UTC: &str = "UTC";

const BUILTINS: &[(&str, &str)] = &[
    (
        "http_requests",
        include_str!("../datasets/http_requests.json"),
    ),
    (
        "firewall_events",
        include_str!("../datasets/firewall_events.json"),
    ),
    (
        "workers_trace_events",
        include_str!("../datasets/workers_trace_events.json"),
    ),
    ("dns_logs", include_str!("../datasets/dns_logs.json")),
];

/// A dataset schema: its name, version, event-time field and typed fields.
///
/// Build one with [`DatasetSchema::builtin`], [`DatasetSchema::from_json`] or
/// [`DatasetSchema::resolve`]; those validate. Deserializing with serde directly skips
/// validation, so prefer `from_json` for user input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetSchema {
    pub name: String,
    pub version: u32,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// Top-level field of type `timestamp` that gives each record its event time.
    pub event_time: String,
    pub fields: Vec<FieldDef>,
}

/// One field of a dataset (or of a struct inside it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldDef {
    pub name: String,
    #[serde(rename = "type")]
    pub field_type: FieldType,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    #[serde(default = "default_nullable", skip_serializing_if = "is_true")]
    pub nullable: bool,
}

fn default_nullable() -> bool {
    true
}

fn is_true(value: &bool) -> bool {
    *value
}

/// The type of a field, as written in a schema file.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldType {
    Int,
    Float,
    Bool,
    String,
    /// Any JSON value, kept as its JSON text in a Utf8 column.
    Json,
    /// An instant given as unix seconds, milliseconds, microseconds or nanoseconds (unit
    /// chosen by magnitude) or as an RFC 3339 string; top-level fields only.
    Timestamp,
    /// An instant whose numbers are in one fixed unit (or RFC 3339 strings); allowed at any
    /// depth.
    TimestampIn(TimeUnit),
    List(Box<FieldType>),
    /// A JSON object with arbitrary string keys, all values of one type.
    Map(Box<FieldType>),
    Struct(Vec<FieldDef>),
}

const TYPE_NAMES: &str = "int, float, bool, string, json, timestamp, timestamp_s, timestamp_ms, \
     timestamp_us, timestamp_ns, {\"list\": T}, {\"map\": T}, {\"struct\": [fields]}";

impl FieldType {
    fn from_value(value: &Value) -> Result<FieldType, String> {
        match value {
            Value::String(name) => match name.as_str() {
                "int" => Ok(FieldType::Int),
                "float" => Ok(FieldType::Float),
                "bool" => Ok(FieldType::Bool),
                "string" => Ok(FieldType::String),
                "json" => Ok(FieldType::Json),
                "timestamp" => Ok(FieldType::Timestamp),
                "timestamp_s" => Ok(FieldType::TimestampIn(TimeUnit::Second)),
                "timestamp_ms" => Ok(FieldType::TimestampIn(TimeUnit::Millisecond)),
                "timestamp_us" => Ok(FieldType::TimestampIn(TimeUnit::Microsecond)),
                "timestamp_ns" => Ok(FieldType::TimestampIn(TimeUnit::Nanosecond)),
                other => Err(format!(
                    "unknown type \"{other}\" (expected one of {TYPE_NAMES})"
                )),
            },
            Value::Object(map) if map.len() == 1 => {
                let (kind, inner) = map.iter().next().expect("one entry");
                match kind.as_str() {
                    "list" => Ok(FieldType::List(Box::new(FieldType::from_value(inner)?))),
                    "map" => Ok(FieldType::Map(Box::new(FieldType::from_value(inner)?))),
                    "struct" => {
                        let fields = Vec::<FieldDef>::deserialize(inner)
                            .map_err(|e| format!("in struct: {e}"))?;
                        Ok(FieldType::Struct(fields))
                    }
                    other => Err(format!(
                        "unknown type \"{other}\" (expected one of {TYPE_NAMES})"
                    )),
                }
            }
            other => Err(format!(
                "invalid type {other} (expected one of {TYPE_NAMES})"
            )),
        }
    }

    fn to_value(&self) -> Value {
        let unit_name = |unit: &TimeUnit| match unit {
            TimeUnit::Second => "timestamp_s",
            TimeUnit::Millisecond => "timestamp_ms",
            TimeUnit::Microsecond => "timestamp_us",
            TimeUnit::Nanosecond => "timestamp_ns",
        };
        match self {
            FieldType::Int => "int".into(),
            FieldType::Float => "float".into(),
            FieldType::Bool => "bool".into(),
            FieldType::String => "string".into(),
            FieldType::Json => "json".into(),
            FieldType::Timestamp => "timestamp".into(),
            FieldType::TimestampIn(unit) => unit_name(unit).into(),
            FieldType::List(inner) => serde_json::json!({ "list": inner.to_value() }),
            FieldType::Map(inner) => serde_json::json!({ "map": inner.to_value() }),
            FieldType::Struct(fields) => {
                serde_json::json!({ "struct": serde_json::to_value(fields).unwrap_or(Value::Null) })
            }
        }
    }

    /// True if this type is, or contains, a `json` field.
    pub fn has_json(&self) -> bool {
        match self {
            FieldType::Json => true,
            FieldType::List(inner) | FieldType::Map(inner) => inner.has_json(),
            FieldType::Struct(fields) => fields.iter().any(|f| f.field_type.has_json()),
            _ => false,
        }
    }

    /// The Arrow type of the column in decoded batches.
    pub fn arrow_type(&self) -> DataType {
        self.arrow_type_for(Stage::Output)
            .expect("output types always exist")
    }

    /// The Arrow type handed to arrow-json (`None`: the field is filled by the second pass).
    fn arrow_type_for(&self, stage: Stage) -> Option<DataType> {
        Some(match self {
            FieldType::Int => DataType::Int64,
            FieldType::Float => DataType::Float64,
            FieldType::Bool => DataType::Boolean,
            FieldType::String => DataType::Utf8,
            FieldType::Json => match stage {
                Stage::Output => DataType::Utf8,
                Stage::Read => return None,
            },
            FieldType::Timestamp => match stage {
                Stage::Output => DataType::Timestamp(TimeUnit::Nanosecond, Some(UTC.into())),
                Stage::Read => DataType::Utf8,
            },
            FieldType::TimestampIn(unit) => DataType::Timestamp(*unit, Some(UTC.into())),
            FieldType::List(inner) => DataType::List(Arc::new(Field::new(
                "item",
                inner.arrow_type_for(stage)?,
                true,
            ))),
            FieldType::Map(inner) => map_type(inner.arrow_type_for(stage)?),
            FieldType::Struct(fields) => DataType::Struct(struct_fields(fields, stage)),
        })
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stage {
    /// Columns of decoded batches.
    Output,
    /// Columns arrow-json decodes: json fields left out, `timestamp` read as text.
    Read,
}

fn map_type(value: DataType) -> DataType {
    let entries = Fields::from(vec![
        Field::new("keys", DataType::Utf8, false),
        Field::new("values", value, true),
    ]);
    DataType::Map(
        Arc::new(Field::new("entries", DataType::Struct(entries), false)),
        false,
    )
}

pub(crate) fn struct_fields(fields: &[FieldDef], stage: Stage) -> Fields {
    fields
        .iter()
        .filter_map(|f| {
            let data_type = f.field_type.arrow_type_for(stage)?;
            Some(Arc::new(Field::new(&f.name, data_type, f.nullable)) as FieldRef)
        })
        .collect()
}

impl Serialize for FieldType {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_value().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for FieldType {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        FieldType::from_value(&value).map_err(D::Error::custom)
    }
}

impl DatasetSchema {
    /// How a record's hour is found: the event-time field and its declared type, as
    /// `<field> <type>` (e.g. `EdgeStartTimestamp timestamp`). Two schemas with the same
    /// rule place every record in the same hour.
    pub fn event_time_rule(&self) -> String {
        let declared = self
            .fields
            .iter()
            .find(|f| f.name == self.event_time)
            .map_or_else(|| "?".to_owned(), |f| f.field_type.to_value().to_string());
        format!("{} {}", self.event_time, declared.trim_matches('"'))
    }

    pub fn builtin_names() -> &'static [&'static str] {
        &[
            "http_requests",
            "firewall_events",
            "workers_trace_events",
            "dns_logs",
        ]
    }

    /// One of the compiled-in Cloudflare Logpush datasets.
    pub fn builtin(name: &str) -> Result<DatasetSchema, SchemaError> {
        let (_, text) = BUILTINS
            .iter()
            .find(|(builtin, _)| *builtin == name)
            .ok_or_else(|| SchemaError::UnknownBuiltin(name.to_owned()))?;
        DatasetSchema::from_json(text)
    }

    /// Parses and validates a schema file's text.
    pub fn from_json(text: &str) -> Result<DatasetSchema, SchemaError> {
        let schema: DatasetSchema =
            serde_json::from_str(text).map_err(|e| SchemaError::Invalid {
                name: peek_name(text),
                reason: e.to_string(),
            })?;
        schema.validate()?;
        Ok(schema)
    }

    /// A built-in dataset by name, else the schema file at that path.
    pub fn resolve(name_or_path: &str) -> Result<DatasetSchema, SchemaError> {
        if Self::builtin_names().contains(&name_or_path) {
            return Self::builtin(name_or_path);
        }
        let text = std::fs::read_to_string(name_or_path).map_err(|source| {
            // A bare name (no folder, no `.json`) was most likely meant as a built-in one.
            let bare = !name_or_path.contains('/') && !name_or_path.ends_with(".json");
            if source.kind() == std::io::ErrorKind::NotFound && bare {
                SchemaError::NotFound {
                    name: name_or_path.to_owned(),
                    builtins: Self::builtin_names().join(", "),
                }
            } else {
                SchemaError::Io {
                    path: name_or_path.to_owned(),
                    source,
                }
            }
        })?;
        Self::from_json(&text)
    }

    /// Checks everything serde cannot: names, duplicates, the event-time field, and where
    /// each type may appear.
    pub fn validate(&self) -> Result<(), SchemaError> {
        let invalid = |reason: String| SchemaError::Invalid {
            name: self.name.clone(),
            reason,
        };
        if self.name.is_empty()
            || !self
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(invalid(
                "dataset name must be non-empty ascii letters, digits, '_' or '-'".into(),
            ));
        }
        if self.version == 0 {
            return Err(invalid("version must be at least 1".into()));
        }
        if self.fields.is_empty() {
            return Err(invalid("a dataset needs at least one field".into()));
        }
        validate_fields(&self.fields, "", true).map_err(invalid)?;
        if self.fields.iter().any(|f| f.name == EXTRA_COLUMN) {
            return Err(invalid(format!("field name {EXTRA_COLUMN} is reserved")));
        }
        let event_time = self
            .fields
            .iter()
            .find(|f| f.name == self.event_time)
            .ok_or_else(|| {
                invalid(format!(
                    "event_time field {} is not a field",
                    self.event_time
                ))
            })?;
        if event_time.field_type != FieldType::Timestamp {
            return Err(invalid(format!(
                "event_time field {} must have type \"timestamp\", not {}",
                self.event_time,
                event_time.field_type.to_value()
            )));
        }
        Ok(())
    }

    pub fn field(&self, name: &str) -> Option<&FieldDef> {
        self.fields.iter().find(|f| f.name == name)
    }

    /// The Arrow schema of decoded batches: declared fields in order (the event-time column
    /// is never null), then `_extra` in [`UnknownFields::Extra`] mode.
    pub fn arrow_schema(&self, unknown: UnknownFields) -> SchemaRef {
        let mut fields: Vec<FieldRef> = self
            .fields
            .iter()
            .map(|f| {
                let nullable = f.nullable && f.name != self.event_time;
                Arc::new(Field::new(&f.name, f.field_type.arrow_type(), nullable))
            })
            .collect();
        if unknown == UnknownFields::Extra {
            fields.push(Arc::new(Field::new(EXTRA_COLUMN, DataType::Utf8, true)));
        }
        Arc::new(Schema::new(fields))
    }

    /// The schema handed to arrow-json: json fields left out, `timestamp` fields as Utf8,
    /// top-level fields all nullable (nulls are checked after decoding, per record).
    pub(crate) fn read_schema(&self) -> SchemaRef {
        let fields: Vec<FieldRef> = self
            .fields
            .iter()
            .filter_map(|f| {
                let data_type = f.field_type.arrow_type_for(Stage::Read)?;
                Some(Arc::new(Field::new(&f.name, data_type, true)) as FieldRef)
            })
            .collect();
        Arc::new(Schema::new(fields))
    }
}

fn peek_name(text: &str) -> String {
    #[derive(Deserialize)]
    struct NameOnly {
        name: Option<String>,
    }
    serde_json::from_str::<NameOnly>(text)
        .ok()
        .and_then(|n| n.name)
        .unwrap_or_else(|| "<unnamed>".into())
}

fn validate_fields(fields: &[FieldDef], prefix: &str, top_level: bool) -> Result<(), String> {
    let mut seen = HashSet::new();
    for field in fields {
        let path = format!("{prefix}{}", field.name);
        if field.name.is_empty() {
            return Err(format!(
                "empty field name in {}",
                if prefix.is_empty() { "fields" } else { prefix }
            ));
        }
        if !seen.insert(field.name.as_str()) {
            return Err(format!("duplicate field {path}"));
        }
        validate_type(&field.field_type, &path, top_level, Parent::Struct)?;
    }
    Ok(())
}

#[derive(Clone, Copy, PartialEq)]
enum Parent {
    Struct,
    List,
    Map,
}

fn validate_type(
    ty: &FieldType,
    path: &str,
    top_level: bool,
    parent: Parent,
) -> Result<(), String> {
    match ty {
        FieldType::Timestamp if !top_level => Err(format!(
            "field {path}: type \"timestamp\" is only allowed for top-level fields; nested \
             instants use timestamp_s, timestamp_ms, timestamp_us or timestamp_ns"
        )),
        FieldType::Json if parent != Parent::Struct => Err(format!(
            "field {path}: type \"json\" is only allowed for struct fields (top level or \
             nested), not as a list element or map value"
        )),
        FieldType::List(inner) => validate_type(inner, &format!("{path}[]"), false, Parent::List),
        FieldType::Map(inner) => validate_type(inner, &format!("{path}{{}}"), false, Parent::Map),
        FieldType::Struct(fields) => {
            if parent == Parent::Map && ty.has_json() {
                return Err(format!(
                    "field {path}: json fields are not allowed inside map values"
                ));
            }
            if fields.is_empty() {
                return Err(format!("field {path}: a struct needs at least one field"));
            }
            if fields.iter().all(|f| f.field_type == FieldType::Json) {
                return Err(format!(
                    "field {path}: a struct made only of json fields should be one json field"
                ));
            }
            validate_fields(fields, &format!("{path}."), false)
        }
        _ => Ok(()),
    }
}
