//! The runtime enrich operator: one per (dataset, partition) chain, holding its own caches
//! and a handle on the shared [`Resources`].

use std::net::IpAddr;
use std::sync::Arc;

use arrow_array::builder::{Float64Builder, StringBuilder, UInt32Builder};
use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use arrow_array::{
    Array, ArrayRef, LargeStringArray, RecordBatch, StringArray, StringViewArray, UInt32Array,
};
use arrow_schema::{DataType, FieldRef, Schema, SchemaRef};

use super::cache::Memo;
use super::config::{
    ASN_COLUMNS, DEFAULT_IP_CACHE, DEFAULT_UA_CACHE, DeriveKind, EnrichConfig, GEO_COLUMNS,
    LookupConfig, UA_COLUMNS, VERSION_COLUMN, nullable,
};
use super::derive;
use super::geo::{AsnAnswer, GeoAnswer, Mmdb};
use super::resources::{KEY_SEPARATOR, PreparedLookup, Resources, Snapshot, as_text};
use super::ua::{self, UaAnswer};
use crate::error::OperatorError;
use crate::{Metric, Operator};

const NAME: &str = "enrich";
/// Distinct `enrich_version` values kept for [`Operator::lineage`].
const MAX_VERSIONS_SEEN: usize = 16;

/// Result of one IP lookup, as remembered by the cache.
enum Outcome<T> {
    Found(Arc<T>),
    NotFound,
    Failed,
}

impl<T> Clone for Outcome<T> {
    fn clone(&self) -> Self {
        match self {
            Outcome::Found(answer) => Outcome::Found(Arc::clone(answer)),
            Outcome::NotFound => Outcome::NotFound,
            Outcome::Failed => Outcome::Failed,
        }
    }
}

#[derive(Default, Clone, Copy)]
struct IpCounts {
    found: u64,
    not_found: u64,
    lookup_error: u64,
    invalid_ip: u64,
    null: u64,
}

struct MmdbPart<T> {
    part: &'static str,
    field: String,
    path: String,
    locale: String,
    db: Arc<Mmdb>,
    cache: Memo<IpAddr, Outcome<T>>,
    counts: IpCounts,
}

struct UaPart {
    field: String,
    extractor: &'static ua_parser::Extractor<'static>,
    cache: Memo<String, Arc<UaAnswer>>,
    parsed: u64,
    empty: u64,
    null: u64,
}

struct LookupPart {
    spec: LookupConfig,
    name: String,
    prepared: Arc<PreparedLookup>,
    matched: u64,
    missing: u64,
    null_key: u64,
}

struct DerivePart {
    kind: DeriveKind,
    field: String,
    name: String,
    derived: u64,
    empty: u64,
}

pub(crate) struct EnrichOperator {
    dataset: String,
    resources: Resources,
    generation: u64,
    input_schema: SchemaRef,
    output_schema: SchemaRef,
    added: Vec<FieldRef>,
    geo: Option<MmdbPart<GeoAnswer>>,
    asn: Option<MmdbPart<AsnAnswer>>,
    ua: Option<UaPart>,
    lookups: Vec<LookupPart>,
    derived: Vec<DerivePart>,
    version: Arc<str>,
    /// Oldest first.
    versions_seen: Vec<Arc<str>>,
    rows: u64,
    generations_seen: u64,
}

fn not_loaded(what: &str, path: &str) -> OperatorError {
    OperatorError::Other {
        operator: NAME.to_owned(),
        reason: format!(
            "{what} {path} is not loaded: the pipeline must pass this config to Resources::load"
        ),
    }
}

impl EnrichOperator {
    pub(crate) fn new(
        config: &EnrichConfig,
        dataset: &str,
        input_schema: SchemaRef,
        resources: &Resources,
    ) -> Result<Self, OperatorError> {
        config.validate(&input_schema)?;
        let snapshot = resources.current();
        let mmdb_part = |part: &'static str, mmdb: &super::config::MmdbConfig| {
            let db = snapshot
                .database(&mmdb.database)
                .ok_or_else(|| not_loaded(&format!("{part} database"), &mmdb.database))?;
            Ok::<_, OperatorError>((
                part,
                mmdb.field.clone(),
                mmdb.database.clone(),
                mmdb.locale.clone().unwrap_or_else(|| "en".to_owned()),
                db.clone(),
                mmdb.cache_size.unwrap_or(DEFAULT_IP_CACHE),
            ))
        };
        let mut added = Vec::new();
        let geo = match &config.geoip {
            Some(mmdb) => {
                let (part, field, path, locale, db, size) = mmdb_part("geoip", mmdb)?;
                let prefix = mmdb.prefix.as_deref().unwrap_or("geo_");
                for (suffix, data_type) in &GEO_COLUMNS {
                    added.push(nullable(format!("{prefix}{suffix}"), data_type.clone()));
                }
                Some(MmdbPart {
                    part,
                    field,
                    path,
                    locale,
                    db,
                    cache: Memo::new(size),
                    counts: IpCounts::default(),
                })
            }
            None => None,
        };
        let asn = match &config.asn {
            Some(mmdb) => {
                let (part, field, path, locale, db, size) = mmdb_part("asn", mmdb)?;
                let prefix = mmdb.prefix.as_deref().unwrap_or("asn_");
                for (suffix, data_type) in &ASN_COLUMNS {
                    added.push(nullable(format!("{prefix}{suffix}"), data_type.clone()));
                }
                Some(MmdbPart {
                    part,
                    field,
                    path,
                    locale,
                    db,
                    cache: Memo::new(size),
                    counts: IpCounts::default(),
                })
            }
            None => None,
        };
        let ua = match &config.user_agent {
            Some(ua) => {
                let extractor = ua::extractor().map_err(|reason| OperatorError::Other {
                    operator: NAME.to_owned(),
                    reason,
                })?;
                let prefix = ua.prefix.as_deref().unwrap_or("ua_");
                for suffix in UA_COLUMNS {
                    added.push(nullable(format!("{prefix}{suffix}"), DataType::Utf8));
                }
                Some(UaPart {
                    field: ua.field.clone(),
                    extractor,
                    cache: Memo::new(ua.cache_size.unwrap_or(DEFAULT_UA_CACHE)),
                    parsed: 0,
                    empty: 0,
                    null: 0,
                })
            }
            None => None,
        };
        let mut lookups = Vec::new();
        for spec in &config.lookup {
            let prepared = snapshot
                .lookup(spec)
                .ok_or_else(|| not_loaded("lookup table", &spec.path))?;
            for (column, values) in spec.columns.iter().zip(&prepared.values) {
                added.push(nullable(
                    format!("{}{column}", spec.prefix()),
                    values.data_type().clone(),
                ));
            }
            lookups.push(LookupPart {
                name: spec.table_name(),
                spec: spec.clone(),
                prepared: prepared.clone(),
                matched: 0,
                missing: 0,
                null_key: 0,
            });
        }
        let mut derived = Vec::new();
        if let Some(derive) = &config.derive {
            for (kind, field) in derive.parts() {
                let name = field
                    .name
                    .clone()
                    .unwrap_or_else(|| kind.default_name().to_owned());
                added.push(nullable(name.clone(), DataType::Utf8));
                derived.push(DerivePart {
                    kind,
                    field: field.field.clone(),
                    name,
                    derived: 0,
                    empty: 0,
                });
            }
        }
        added.push(nullable(VERSION_COLUMN.to_owned(), DataType::Utf8));
        let output_schema = extend_schema(&input_schema, &added);
        let mut operator = EnrichOperator {
            dataset: dataset.to_owned(),
            resources: resources.clone(),
            generation: snapshot.generation(),
            input_schema,
            output_schema,
            added,
            geo,
            asn,
            ua,
            lookups,
            derived,
            version: Arc::from(""),
            versions_seen: Vec::new(),
            rows: 0,
            generations_seen: 0,
        };
        operator.version = operator.version_text().into();
        Ok(operator)
    }

    /// `geoip=<type>@<epoch>;asn=<type>@<epoch>;ua=<rules>;lookup:<name>=<digest>`, configured parts only.
    fn version_text(&self) -> String {
        let mut parts = Vec::new();
        if let Some(geo) = &self.geo {
            parts.push(format!("geoip={}", geo.db.version));
        }
        if let Some(asn) = &self.asn {
            parts.push(format!("asn={}", asn.db.version));
        }
        if self.ua.is_some() {
            parts.push(format!("ua={}", ua::UAP_VERSION));
        }
        for lookup in &self.lookups {
            parts.push(format!("lookup:{}={}", lookup.name, lookup.prepared.digest));
        }
        if parts.is_empty() {
            parts.push("derive".to_owned());
        }
        parts.join(";")
    }

    /// Switches to a newer snapshot between batches; caches of the old data are dropped.
    fn adopt(&mut self, snapshot: &Snapshot) -> Result<(), OperatorError> {
        for part in [&mut self.geo].into_iter().flatten() {
            part.db = snapshot
                .database(&part.path)
                .ok_or_else(|| not_loaded("geoip database", &part.path))?
                .clone();
            part.cache.clear();
        }
        for part in [&mut self.asn].into_iter().flatten() {
            part.db = snapshot
                .database(&part.path)
                .ok_or_else(|| not_loaded("asn database", &part.path))?
                .clone();
            part.cache.clear();
        }
        for lookup in &mut self.lookups {
            let prepared = snapshot
                .lookup(&lookup.spec)
                .ok_or_else(|| not_loaded("lookup table", &lookup.spec.path))?;
            for (now, was) in prepared.values.iter().zip(&lookup.prepared.values) {
                if now.data_type() != was.data_type() {
                    return Err(OperatorError::Other {
                        operator: NAME.to_owned(),
                        reason: format!(
                            "lookup table {} changed column types under a running operator",
                            lookup.spec.path
                        ),
                    });
                }
            }
            lookup.prepared = prepared.clone();
        }
        self.generation = snapshot.generation();
        self.generations_seen += 1;
        self.version = self.version_text().into();
        Ok(())
    }
}

fn extend_schema(input: &SchemaRef, added: &[FieldRef]) -> SchemaRef {
    let mut fields: Vec<FieldRef> = input.fields().iter().cloned().collect();
    fields.extend(added.iter().cloned());
    Arc::new(Schema::new_with_metadata(fields, input.metadata().clone()))
}

/// A text column of any of Arrow's three string layouts.
enum TextColumn<'a> {
    Utf8(&'a StringArray),
    Large(&'a LargeStringArray),
    View(&'a StringViewArray),
}

impl<'a> TextColumn<'a> {
    fn of(batch: &'a RecordBatch, name: &str) -> Result<TextColumn<'a>, OperatorError> {
        let column = column(batch, name)?;
        match column.data_type() {
            DataType::Utf8 => Ok(TextColumn::Utf8(column.as_string::<i32>())),
            DataType::LargeUtf8 => Ok(TextColumn::Large(column.as_string::<i64>())),
            DataType::Utf8View => Ok(TextColumn::View(column.as_string_view())),
            other => Err(OperatorError::schema(
                NAME,
                format!("column {name:?} is {other}, expected text"),
            )),
        }
    }

    #[inline]
    fn get(&self, row: usize) -> Option<&'a str> {
        match self {
            TextColumn::Utf8(a) => a.is_valid(row).then(|| a.value(row)),
            TextColumn::Large(a) => a.is_valid(row).then(|| a.value(row)),
            TextColumn::View(a) => a.is_valid(row).then(|| a.value(row)),
        }
    }
}

fn column<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a ArrayRef, OperatorError> {
    batch
        .column_by_name(name)
        .ok_or_else(|| OperatorError::schema(NAME, format!("no input column named {name:?}")))
}

fn arrow_error(error: arrow_schema::ArrowError) -> OperatorError {
    OperatorError::arrow(NAME, error)
}

/// An IP column cell, parsed once per batch even when geoip and asn both read it.
#[derive(Clone, Copy)]
enum Cell {
    Null,
    Invalid,
    Ip(IpAddr),
}

fn parse_ips(batch: &RecordBatch, field: &str) -> Result<Vec<Cell>, OperatorError> {
    let text = TextColumn::of(batch, field)?;
    Ok((0..batch.num_rows())
        .map(|row| match text.get(row) {
            None => Cell::Null,
            Some(value) => value
                .trim()
                .parse::<IpAddr>()
                .map_or(Cell::Invalid, Cell::Ip),
        })
        .collect())
}

/// Looks up one cell, through the cache.
#[inline]
fn resolve<T>(
    part: &mut MmdbPart<T>,
    cell: Cell,
    lookup: impl Fn(&Mmdb, IpAddr) -> Result<Option<T>, String>,
) -> Option<Arc<T>> {
    let ip = match cell {
        Cell::Null => {
            part.counts.null += 1;
            return None;
        }
        Cell::Invalid => {
            part.counts.invalid_ip += 1;
            return None;
        }
        Cell::Ip(ip) => ip,
    };
    let db = &part.db;
    let outcome = part.cache.get_or_insert_with(&ip, || match lookup(db, ip) {
        Ok(Some(answer)) => Outcome::Found(Arc::new(answer)),
        Ok(None) => Outcome::NotFound,
        Err(_) => Outcome::Failed,
    });
    match outcome {
        Outcome::Found(answer) => {
            part.counts.found += 1;
            Some(answer)
        }
        Outcome::NotFound => {
            part.counts.not_found += 1;
            None
        }
        Outcome::Failed => {
            part.counts.lookup_error += 1;
            None
        }
    }
}

fn geo_columns(part: &mut MmdbPart<GeoAnswer>, ips: &[Cell]) -> Vec<ArrayRef> {
    let rows = ips.len();
    let mut text: Vec<StringBuilder> = (0..6)
        .map(|_| StringBuilder::with_capacity(rows, rows * 8))
        .collect();
    let mut latitude = Float64Builder::with_capacity(rows);
    let mut longitude = Float64Builder::with_capacity(rows);
    let locale = part.locale.clone();
    for &cell in ips {
        let answer = resolve(part, cell, |db, ip| db.geo(ip, &locale));
        match answer {
            Some(geo) => {
                text[0].append_option(geo.country_code.as_deref());
                text[1].append_option(geo.country.as_deref());
                text[2].append_option(geo.subdivision.as_deref());
                text[3].append_option(geo.city.as_deref());
                text[4].append_option(geo.postal_code.as_deref());
                text[5].append_option(geo.time_zone.as_deref());
                latitude.append_option(geo.latitude);
                longitude.append_option(geo.longitude);
            }
            None => {
                for builder in &mut text {
                    builder.append_null();
                }
                latitude.append_null();
                longitude.append_null();
            }
        }
    }
    let mut text: Vec<ArrayRef> = text
        .into_iter()
        .map(|mut b| Arc::new(b.finish()) as ArrayRef)
        .collect();
    let time_zone = text.pop().expect("six builders");
    text.push(Arc::new(latitude.finish()));
    text.push(Arc::new(longitude.finish()));
    text.push(time_zone);
    text
}

fn asn_columns(part: &mut MmdbPart<AsnAnswer>, ips: &[Cell]) -> Vec<ArrayRef> {
    let rows = ips.len();
    let mut number = UInt32Builder::with_capacity(rows);
    let mut org = StringBuilder::with_capacity(rows, rows * 16);
    for &cell in ips {
        match resolve(part, cell, |db, ip| db.asn(ip)) {
            Some(asn) => {
                number.append_option(asn.number);
                org.append_option(asn.org.as_deref());
            }
            None => {
                number.append_null();
                org.append_null();
            }
        }
    }
    vec![Arc::new(number.finish()), Arc::new(org.finish())]
}

fn ua_columns(part: &mut UaPart, batch: &RecordBatch) -> Result<Vec<ArrayRef>, OperatorError> {
    let agents = TextColumn::of(batch, &part.field)?;
    let rows = batch.num_rows();
    let mut builders: Vec<StringBuilder> = (0..5)
        .map(|_| StringBuilder::with_capacity(rows, rows * 8))
        .collect();
    let extractor = part.extractor;
    for row in 0..rows {
        let answer = match agents.get(row) {
            None => {
                part.null += 1;
                None
            }
            Some(agent) if agent.trim().is_empty() => {
                part.empty += 1;
                None
            }
            Some(agent) => {
                part.parsed += 1;
                Some(
                    part.cache
                        .get_or_insert_with(agent, || Arc::new(ua::parse(extractor, agent))),
                )
            }
        };
        match answer {
            Some(ua) => {
                builders[0].append_option(ua.browser.as_deref());
                builders[1].append_option(ua.browser_major.as_deref());
                builders[2].append_option(ua.os.as_deref());
                builders[3].append_option(ua.os_major.as_deref());
                builders[4].append_option(ua.device.as_deref());
            }
            None => {
                for builder in &mut builders {
                    builder.append_null();
                }
            }
        }
    }
    Ok(builders
        .into_iter()
        .map(|mut b| Arc::new(b.finish()) as ArrayRef)
        .collect())
}

fn lookup_columns(
    part: &mut LookupPart,
    batch: &RecordBatch,
) -> Result<Vec<ArrayRef>, OperatorError> {
    let mut keys = Vec::with_capacity(part.spec.key.len());
    for name in &part.spec.key {
        let text = as_text(column(batch, name)?).map_err(|reason| OperatorError::Other {
            operator: NAME.to_owned(),
            reason: format!("lookup {} key {name:?}: {reason}", part.name),
        })?;
        keys.push(text);
    }
    let keys: Vec<&StringArray> = keys.iter().map(|k| k.as_string::<i32>()).collect();
    let prepared = &part.prepared;
    let mut indices = Vec::with_capacity(batch.num_rows());
    let mut composite = String::new();
    for row in 0..batch.num_rows() {
        let found = if keys.iter().any(|k| k.is_null(row)) {
            part.null_key += 1;
            indices.push(prepared.missing_row);
            continue;
        } else if let [single] = keys.as_slice() {
            prepared.index.get(single.value(row))
        } else {
            composite.clear();
            for (i, key) in keys.iter().enumerate() {
                if i > 0 {
                    composite.push(KEY_SEPARATOR);
                }
                composite.push_str(key.value(row));
            }
            prepared.index.get(composite.as_str())
        };
        match found {
            Some(&index) => {
                part.matched += 1;
                indices.push(index);
            }
            None => {
                part.missing += 1;
                indices.push(prepared.missing_row);
            }
        }
    }
    let indices = UInt32Array::from(indices);
    prepared
        .values
        .iter()
        .map(|values| {
            arrow_select::take::take(values.as_ref(), &indices, None).map_err(arrow_error)
        })
        .collect()
}

fn derived_column(part: &mut DerivePart, batch: &RecordBatch) -> Result<ArrayRef, OperatorError> {
    let rows = batch.num_rows();
    let mut out = StringBuilder::with_capacity(rows, rows * 8);
    let input = column(batch, &part.field)?;
    if part.kind == DeriveKind::StatusClass && !super::config::is_text(input.data_type()) {
        let codes = arrow_cast::cast(input.as_ref(), &DataType::Int64).map_err(arrow_error)?;
        let codes = codes.as_primitive::<Int64Type>();
        for row in 0..rows {
            let class = codes
                .is_valid(row)
                .then(|| derive::status_class(codes.value(row)))
                .flatten();
            count(part, class.is_some());
            out.append_option(class);
        }
        return Ok(Arc::new(out.finish()));
    }
    let text = TextColumn::of(batch, &part.field)?;
    let mut scratch = String::new();
    let mut buf = String::new();
    for row in 0..rows {
        let Some(value) = text.get(row) else {
            part.empty += 1;
            out.append_null();
            continue;
        };
        scratch.clear();
        let derived: Option<&str> = match part.kind {
            DeriveKind::PathTemplate => {
                derive::path_template(value, &mut scratch).then_some(scratch.as_str())
            }
            DeriveKind::QueryKeys => {
                derive::query_keys(value, &mut scratch).then_some(scratch.as_str())
            }
            DeriveKind::StatusClass => derive::status_class_text(value),
            DeriveKind::RegistrableDomain => derive::registrable_domain(value, &mut buf),
        };
        count(part, derived.is_some());
        out.append_option(derived);
    }
    Ok(Arc::new(out.finish()))
}

fn count(part: &mut DerivePart, derived: bool) {
    if derived {
        part.derived += 1;
    } else {
        part.empty += 1;
    }
}

impl Operator for EnrichOperator {
    fn name(&self) -> &str {
        NAME
    }

    fn output_schema(&self, input: &SchemaRef) -> Result<SchemaRef, OperatorError> {
        if input == &self.input_schema {
            return Ok(self.output_schema.clone());
        }
        Ok(extend_schema(input, &self.added))
    }

    fn process(&mut self, batch: RecordBatch) -> Result<RecordBatch, OperatorError> {
        // One snapshot for the whole batch, so its rows never mix two versions.
        let snapshot = self.resources.current();
        if snapshot.generation() != self.generation {
            self.adopt(&snapshot)?;
        }
        let rows = batch.num_rows();
        let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
        let mut parsed: Option<(&str, Vec<Cell>)> = None;
        if let Some(part) = &mut self.geo {
            let ips = parse_ips(&batch, &part.field)?;
            columns.extend(geo_columns(part, &ips));
            parsed = Some((part.field.as_str(), ips));
        }
        if let Some(part) = &mut self.asn {
            let ips = match parsed {
                Some((field, ips)) if field == part.field => ips,
                _ => parse_ips(&batch, &part.field)?,
            };
            columns.extend(asn_columns(part, &ips));
        }
        if let Some(part) = &mut self.ua {
            columns.extend(ua_columns(part, &batch)?);
        }
        for part in &mut self.lookups {
            columns.extend(lookup_columns(part, &batch)?);
        }
        for part in &mut self.derived {
            columns.push(derived_column(part, &batch)?);
        }
        let version: &str = &self.version;
        let mut versions = StringBuilder::with_capacity(rows, rows * version.len());
        for _ in 0..rows {
            versions.append_value(version);
        }
        columns.push(Arc::new(versions.finish()));
        if !self.versions_seen.iter().any(|seen| &**seen == version) {
            // bounded: a long-running operator reloads many times; lineage keeps the newest
            if self.versions_seen.len() >= MAX_VERSIONS_SEEN {
                self.versions_seen.remove(0);
            }
            self.versions_seen.push(self.version.clone());
        }
        self.rows += rows as u64;
        let schema = self.output_schema(&batch.schema())?;
        RecordBatch::try_new(schema, columns).map_err(arrow_error)
    }

    fn lineage(&self) -> Vec<(String, String)> {
        let seen: Vec<&str> = self.versions_seen.iter().map(|v| &**v).collect();
        vec![
            ("enrich_version".to_owned(), self.version.to_string()),
            ("enrich_versions_seen".to_owned(), seen.join(" | ")),
        ]
    }

    fn metrics(&self) -> Vec<Metric> {
        let dataset = self.dataset.as_str();
        let mut out = vec![
            Metric::new("enrich_rows_total", &[("dataset", dataset)], self.rows),
            Metric::new(
                "enrich_reference_swaps_total",
                &[("dataset", dataset)],
                self.generations_seen,
            ),
        ];
        let ip_parts = [
            self.geo
                .as_ref()
                .map(|p| (p.part, p.counts, p.cache.hits(), p.cache.misses())),
            self.asn
                .as_ref()
                .map(|p| (p.part, p.counts, p.cache.hits(), p.cache.misses())),
        ];
        for (part, counts, hits, misses) in ip_parts.into_iter().flatten() {
            for (outcome, value) in [
                ("found", counts.found),
                ("not_found", counts.not_found),
                ("invalid_ip", counts.invalid_ip),
                ("null", counts.null),
                ("lookup_error", counts.lookup_error),
            ] {
                out.push(Metric::new(
                    "enrich_ip_lookups_total",
                    &[("dataset", dataset), ("part", part), ("outcome", outcome)],
                    value,
                ));
            }
            out.push(Metric::new(
                "enrich_cache_hits_total",
                &[("dataset", dataset), ("part", part)],
                hits,
            ));
            out.push(Metric::new(
                "enrich_cache_misses_total",
                &[("dataset", dataset), ("part", part)],
                misses,
            ));
        }
        if let Some(ua) = &self.ua {
            for (outcome, value) in [
                ("parsed", ua.parsed),
                ("empty", ua.empty),
                ("null", ua.null),
            ] {
                out.push(Metric::new(
                    "enrich_user_agents_total",
                    &[("dataset", dataset), ("outcome", outcome)],
                    value,
                ));
            }
            out.push(Metric::new(
                "enrich_cache_hits_total",
                &[("dataset", dataset), ("part", "user_agent")],
                ua.cache.hits(),
            ));
            out.push(Metric::new(
                "enrich_cache_misses_total",
                &[("dataset", dataset), ("part", "user_agent")],
                ua.cache.misses(),
            ));
        }
        for lookup in &self.lookups {
            for (outcome, value) in [
                ("matched", lookup.matched),
                ("missing", lookup.missing),
                ("null_key", lookup.null_key),
            ] {
                out.push(Metric::new(
                    "enrich_lookup_rows_total",
                    &[
                        ("dataset", dataset),
                        ("table", &lookup.name),
                        ("outcome", outcome),
                    ],
                    value,
                ));
            }
        }
        for part in &self.derived {
            for (outcome, value) in [("derived", part.derived), ("empty", part.empty)] {
                out.push(Metric::new(
                    "enrich_derived_total",
                    &[
                        ("dataset", dataset),
                        ("column", &part.name),
                        ("outcome", outcome),
                    ],
                    value,
                ));
            }
        }
        out
    }
}
