//! The `enrich` operator: appends columns answered from reference data (MaxMind-format IP
//! databases, uap-core user-agent rules, lookup tables) and from the row itself (URL path
//! template, query keys, status class, registrable domain).
//!
//! ```text
//!                     Resources (shared, swapped whole on reload)
//!                     ┌─────────────────────────────────────────┐
//!  pipeline I/O ────▶ │ Snapshot g: mmdb readers, lookup tables │
//!  load / reload      └──────────────────┬──────────────────────┘
//!                                        │ Arc<Snapshot>, taken once per batch
//!  batch ──▶ EnrichOperator::process ────┴──▶ + geo_* asn_* ua_* <lookup> <derived>
//!              per-operator caches (IP → answer, UA → answer)      + enrich_version
//! ```
//!
//! Every added column is nullable. Bad data in a row (text that is not an IP, an empty
//! user agent, a key missing from a table) gives nulls or the configured default and is
//! counted in [`crate::Operator::metrics`]; it never fails the batch. A database or table
//! that is missing or does not parse is refused when the pipeline loads it
//! ([`Resources::load`]) or reloads it ([`Resources::reload`], which keeps the old data).
//!
//! Each row carries `enrich_version`, e.g.
//! `geoip=GeoIP2-City@1700000000;asn=GeoLite2-ASN@1700000000;ua=uap-core-0.18.0;lookup:zones=3fa2c1d09b7e`
//! (each mmdb's `database_type` and `build_epoch`, the compiled-in rules' release, the first 12 hex digits of each
//! table's SHA-256), and [`crate::Operator::lineage`] reports the same for Parquet footers.
//! Same input, config and reference data give the same rows: caches only change speed.

mod cache;
mod config;
mod derive;
mod geo;
mod operator;
mod resources;
mod ua;

#[cfg(test)]
mod tests;

pub use config::{
    DEFAULT_IP_CACHE, DEFAULT_UA_CACHE, DeriveConfig, DerivedField, EnrichConfig, LookupConfig,
    MmdbConfig, UserAgentConfig, VERSION_COLUMN,
};
pub use resources::{ResourceData, ResourceError, Resources, Snapshot, Version};

use crate::Operator;
use crate::config::BuildContext;
use crate::error::OperatorError;

impl EnrichConfig {
    /// Builds the operator against the reference data in `ctx.resources`, which must have
    /// been loaded from this config (a database or table it names but `Resources` lacks is
    /// an error here, not a column of nulls).
    pub fn build(&self, ctx: &BuildContext<'_>) -> Result<Box<dyn Operator>, OperatorError> {
        let operator = operator::EnrichOperator::new(
            self,
            ctx.dataset,
            ctx.input_schema.clone(),
            ctx.resources,
        )?;
        Ok(Box::new(operator))
    }
}

/// Compiles the built-in uap-core rules now instead of in the first operator build that
/// needs them (about a second of CPU); the pipeline may call it at start.
pub fn warm_up() -> Result<(), String> {
    ua::extractor().map(|_| ())
}
