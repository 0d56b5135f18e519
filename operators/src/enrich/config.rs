//! `type = "enrich"`: serde shape, validation against the input schema (no I/O), and the
//! names and types of the columns the operator appends.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use arrow_schema::{DataType, Field, SchemaRef};
use serde::{Deserialize, Serialize};

use crate::error::ConfigError;

/// Default number of distinct IPs remembered per database and operator (about 40 bytes
/// each plus the shared answer, so ~5 MiB per database per operator when full). A miss
/// costs a full record decode (several µs for a City record), a hit ~100 ns.
pub const DEFAULT_IP_CACHE: usize = 131_072;
/// Default number of distinct user agents remembered per operator.
pub const DEFAULT_UA_CACHE: usize = 8_192;
const MAX_CACHE: usize = 16 * 1024 * 1024;

/// Name of the per-row reference-data version column.
pub const VERSION_COLUMN: &str = "enrich_version";

/// ```toml
/// [[datasets.operators]]
/// type = "enrich"
/// geoip = { database = "/data/GeoIP2-City.mmdb", field = "ClientIP" }
/// asn = { database = "/data/GeoLite2-ASN.mmdb", field = "ClientIP" }
/// user_agent = { field = "ClientRequestUserAgent" }
/// lookup = [{ path = "s3://ref/zones.csv", key = ["ZoneName"], columns = ["customer", "plan"], prefix = "zone_" }]
/// derive = { path_template = { field = "ClientRequestPath" }, status_class = { field = "EdgeResponseStatus" } }
/// ```
///
/// Every part is optional; at least one must be present.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct EnrichConfig {
    /// City or Country database (GeoIP2 / GeoLite2, DB-IP, IPinfo lite).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub geoip: Option<MmdbConfig>,
    /// ASN database (GeoLite2 ASN, DB-IP ASN lite, IPinfo lite).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub asn: Option<MmdbConfig>,
    /// User-agent parsing with the uap-core rules compiled into the binary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<UserAgentConfig>,
    /// Lookup tables joined on one or more key columns.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lookup: Vec<LookupConfig>,
    /// Fields computed from the row alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub derive: Option<DeriveConfig>,
}

/// One MaxMind-format database applied to one IP column.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MmdbConfig {
    /// Path or object-store URL; the pipeline reads it, the operator never does.
    pub database: String,
    /// Input column holding the IP as text (IPv4 or IPv6).
    pub field: String,
    /// Output column prefix; `geo_` / `asn_` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// Language of place names (`names.<locale>`); `en` when absent. GeoIP only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locale: Option<String>,
    /// Distinct IPs remembered per operator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_size: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserAgentConfig {
    /// Input column holding the `User-Agent` header.
    pub field: String,
    /// Output column prefix; `ua_` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// Distinct user agents remembered per operator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_size: Option<usize>,
}

/// A table keyed by one or more columns. A row whose key is null or absent from the table
/// gets the `default` values (null where none is given); never an error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LookupConfig {
    /// Path or object-store URL of a CSV file (header row, every column read as text) or a
    /// Parquet file (decoded by the pipeline).
    pub path: String,
    /// Name in `enrich_version` and metrics; the file stem of `path` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Input columns forming the key, in order.
    pub key: Vec<String>,
    /// Table columns matched against `key`, in the same order; `key` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table_key: Option<Vec<String>>,
    /// Table columns to add.
    pub columns: Vec<String>,
    /// Prefix of the added columns (empty when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// Value per added column for rows without a match, parsed as the column's type.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub default: BTreeMap<String, String>,
}

impl LookupConfig {
    pub fn table_name(&self) -> String {
        if let Some(name) = &self.name {
            return name.clone();
        }
        let file = self.path.rsplit(['/', '\\']).next().unwrap_or(&self.path);
        let file = file.split(['?', '#']).next().unwrap_or(file);
        match file.rsplit_once('.') {
            Some((stem, _)) if !stem.is_empty() => stem.to_owned(),
            _ => file.to_owned(),
        }
    }

    pub(crate) fn table_key(&self) -> &[String] {
        self.table_key.as_deref().unwrap_or(&self.key)
    }

    pub(crate) fn prefix(&self) -> &str {
        self.prefix.as_deref().unwrap_or("")
    }

    /// Identity of this lookup inside a resources snapshot.
    pub(crate) fn spec_id(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| self.path.clone())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct DeriveConfig {
    /// Path (or URI, or full URL) → path with numeric and UUID segments replaced by `:id`.
    /// Output `url_template`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_template: Option<DerivedField>,
    /// URI or URL → sorted distinct query-string keys, comma-separated. Output `query_keys`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query_keys: Option<DerivedField>,
    /// HTTP status (integer or text) → `1xx` … `5xx`. Output `status_class`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_class: Option<DerivedField>,
    /// Host → registrable domain (public suffix + one label). Output `registrable_domain`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registrable_domain: Option<DerivedField>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DerivedField {
    /// Input column.
    pub field: String,
    /// Output column name, replacing the default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// What a derived column computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DeriveKind {
    PathTemplate,
    QueryKeys,
    StatusClass,
    RegistrableDomain,
}

impl DeriveKind {
    pub(crate) fn default_name(self) -> &'static str {
        match self {
            DeriveKind::PathTemplate => "url_template",
            DeriveKind::QueryKeys => "query_keys",
            DeriveKind::StatusClass => "status_class",
            DeriveKind::RegistrableDomain => "registrable_domain",
        }
    }

    fn key(self) -> &'static str {
        match self {
            DeriveKind::PathTemplate => "path_template",
            DeriveKind::QueryKeys => "query_keys",
            DeriveKind::StatusClass => "status_class",
            DeriveKind::RegistrableDomain => "registrable_domain",
        }
    }
}

impl DeriveConfig {
    pub(crate) fn parts(&self) -> Vec<(DeriveKind, &DerivedField)> {
        let mut parts = Vec::new();
        let all = [
            (DeriveKind::PathTemplate, &self.path_template),
            (DeriveKind::QueryKeys, &self.query_keys),
            (DeriveKind::StatusClass, &self.status_class),
            (DeriveKind::RegistrableDomain, &self.registrable_domain),
        ];
        for (kind, field) in all {
            if let Some(field) = field {
                parts.push((kind, field));
            }
        }
        parts
    }
}

/// Suffixes of the GeoIP columns, in output order.
pub(crate) const GEO_COLUMNS: [(&str, DataType); 8] = [
    ("country_code", DataType::Utf8),
    ("country", DataType::Utf8),
    ("subdivision", DataType::Utf8),
    ("city", DataType::Utf8),
    ("postal_code", DataType::Utf8),
    ("latitude", DataType::Float64),
    ("longitude", DataType::Float64),
    ("time_zone", DataType::Utf8),
];
pub(crate) const ASN_COLUMNS: [(&str, DataType); 2] =
    [("number", DataType::UInt32), ("org", DataType::Utf8)];
pub(crate) const UA_COLUMNS: [&str; 5] = ["browser", "browser_major", "os", "os_major", "device"];

pub(crate) fn is_text(data_type: &DataType) -> bool {
    matches!(
        data_type,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
    )
}

fn is_status(data_type: &DataType) -> bool {
    is_text(data_type)
        || matches!(
            data_type,
            DataType::Int8
                | DataType::Int16
                | DataType::Int32
                | DataType::Int64
                | DataType::UInt8
                | DataType::UInt16
                | DataType::UInt32
                | DataType::UInt64
        )
}

fn check_cache(key: &str, size: Option<usize>) -> Result<(), ConfigError> {
    match size {
        Some(0) => Err(ConfigError::new(key, "must be at least 1")),
        Some(n) if n > MAX_CACHE => Err(ConfigError::new(
            key,
            format!("must be at most {MAX_CACHE}"),
        )),
        _ => Ok(()),
    }
}

fn check_text_field(input: &SchemaRef, key: &str, field: &str) -> Result<(), ConfigError> {
    let found = input
        .field_with_name(field)
        .map_err(|_| ConfigError::new(key, format!("no input column named {field:?}")))?;
    if !is_text(found.data_type()) {
        return Err(ConfigError::new(
            key,
            format!("column {field:?} is {}, expected text", found.data_type()),
        ));
    }
    Ok(())
}

impl EnrichConfig {
    /// Checks fields, names and sizes against the input schema. Whether the databases and
    /// tables exist and parse is checked when the pipeline loads them
    /// ([`super::Resources::load`]).
    pub fn validate(&self, input: &SchemaRef) -> Result<(), ConfigError> {
        if self.geoip.is_none()
            && self.asn.is_none()
            && self.user_agent.is_none()
            && self.lookup.is_empty()
            && self.derive.as_ref().is_none_or(|d| d.parts().is_empty())
        {
            return Err(ConfigError::new(
                "type",
                "enrich needs at least one of geoip, asn, user_agent, lookup, derive",
            ));
        }
        for (part, mmdb) in [("geoip", &self.geoip), ("asn", &self.asn)] {
            let Some(mmdb) = mmdb else { continue };
            if mmdb.database.trim().is_empty() {
                return Err(ConfigError::new(
                    format!("{part}.database"),
                    "must not be empty",
                ));
            }
            check_text_field(input, &format!("{part}.field"), &mmdb.field)?;
            check_cache(&format!("{part}.cache_size"), mmdb.cache_size)?;
            if let Some(locale) = &mmdb.locale
                && !super::geo::LOCALES.contains(&locale.as_str())
            {
                return Err(ConfigError::new(
                    format!("{part}.locale"),
                    format!("must be one of {}", super::geo::LOCALES.join(", ")),
                ));
            }
            if part == "asn" && mmdb.locale.is_some() {
                return Err(ConfigError::new("asn.locale", "only geoip has place names"));
            }
        }
        if let Some(ua) = &self.user_agent {
            check_text_field(input, "user_agent.field", &ua.field)?;
            check_cache("user_agent.cache_size", ua.cache_size)?;
        }
        for (i, lookup) in self.lookup.iter().enumerate() {
            let at = |k: &str| format!("lookup[{i}].{k}");
            if lookup.path.trim().is_empty() {
                return Err(ConfigError::new(at("path"), "must not be empty"));
            }
            if lookup.key.is_empty() {
                return Err(ConfigError::new(at("key"), "needs at least one column"));
            }
            for field in &lookup.key {
                if input.field_with_name(field).is_err() {
                    return Err(ConfigError::new(
                        at("key"),
                        format!("no input column named {field:?}"),
                    ));
                }
            }
            if lookup.table_key().len() != lookup.key.len() {
                return Err(ConfigError::new(
                    at("table_key"),
                    format!(
                        "has {} columns but key has {}",
                        lookup.table_key().len(),
                        lookup.key.len()
                    ),
                ));
            }
            if lookup.columns.is_empty() {
                return Err(ConfigError::new(at("columns"), "needs at least one column"));
            }
            let wanted: BTreeSet<&String> = lookup.columns.iter().collect();
            if wanted.len() != lookup.columns.len() {
                return Err(ConfigError::new(at("columns"), "lists a column twice"));
            }
            for column in lookup.default.keys() {
                if !wanted.contains(column) {
                    return Err(ConfigError::new(
                        at("default"),
                        format!("{column:?} is not one of columns"),
                    ));
                }
            }
            if lookup.table_name().is_empty() {
                return Err(ConfigError::new(at("name"), "must not be empty"));
            }
        }
        if let Some(derive) = &self.derive {
            for (kind, field) in derive.parts() {
                let key = format!("derive.{}.field", kind.key());
                let found = input.field_with_name(&field.field).map_err(|_| {
                    ConfigError::new(&key, format!("no input column named {:?}", field.field))
                })?;
                let ok = match kind {
                    DeriveKind::StatusClass => is_status(found.data_type()),
                    _ => is_text(found.data_type()),
                };
                if !ok {
                    return Err(ConfigError::new(
                        key,
                        format!(
                            "column {:?} has unsupported type {}",
                            field.field,
                            found.data_type()
                        ),
                    ));
                }
            }
        }
        // Output names: no clash with the input or with each other.
        let mut seen: BTreeSet<String> = BTreeSet::new();
        for (key, name) in self.output_names() {
            if name.is_empty() {
                return Err(ConfigError::new(key, "gives an empty column name"));
            }
            if input.field_with_name(&name).is_ok() {
                return Err(ConfigError::new(
                    key,
                    format!("output column {name:?} already exists in the input"),
                ));
            }
            if !seen.insert(name.clone()) {
                return Err(ConfigError::new(
                    key,
                    format!("output column {name:?} is produced twice"),
                ));
            }
        }
        Ok(())
    }

    /// `(config key responsible, column name)` of every added column except the lookup
    /// values' types, which come from the tables.
    pub(crate) fn output_names(&self) -> Vec<(String, String)> {
        let mut names = Vec::new();
        if let Some(geo) = &self.geoip {
            let prefix = geo.prefix.as_deref().unwrap_or("geo_");
            for (suffix, _) in &GEO_COLUMNS {
                names.push(("geoip.prefix".to_owned(), format!("{prefix}{suffix}")));
            }
        }
        if let Some(asn) = &self.asn {
            let prefix = asn.prefix.as_deref().unwrap_or("asn_");
            for (suffix, _) in &ASN_COLUMNS {
                names.push(("asn.prefix".to_owned(), format!("{prefix}{suffix}")));
            }
        }
        if let Some(ua) = &self.user_agent {
            let prefix = ua.prefix.as_deref().unwrap_or("ua_");
            for suffix in UA_COLUMNS {
                names.push(("user_agent.prefix".to_owned(), format!("{prefix}{suffix}")));
            }
        }
        for (i, lookup) in self.lookup.iter().enumerate() {
            for column in &lookup.columns {
                names.push((
                    format!("lookup[{i}].prefix"),
                    format!("{}{column}", lookup.prefix()),
                ));
            }
        }
        if let Some(derive) = &self.derive {
            for (kind, field) in derive.parts() {
                names.push((
                    format!("derive.{}.name", kind.key()),
                    field
                        .name
                        .clone()
                        .unwrap_or_else(|| kind.default_name().to_owned()),
                ));
            }
        }
        names.push(("type".to_owned(), VERSION_COLUMN.to_owned()));
        names
    }
}

pub(crate) fn nullable(name: String, data_type: DataType) -> Arc<Field> {
    Arc::new(Field::new(name, data_type, true))
}
