//! MaxMind DB format readers: GeoIP2 / GeoLite2 City and Country, GeoLite2 ASN, and the
//! databases laid out like them (DB-IP lite) or close to them (IPinfo lite, whose
//! `country` is a plain string and whose ASN is text like `AS15169`).

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::Deserialize;

use super::resources::ResourceError;

/// A parsed `.mmdb` file and what identifies its build.
pub(crate) struct Mmdb {
    reader: maxminddb::Reader<Vec<u8>>,
    /// `<database_type>@<build_epoch>` from the metadata (used in `enrich_version`): two
    /// builds of one product at the same second are the same build.
    pub(crate) version: String,
    pub(crate) database_type: String,
}

impl std::fmt::Debug for Mmdb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mmdb")
            .field("database_type", &self.database_type)
            .field("version", &self.version)
            .finish()
    }
}

/// Addresses looked up once at load: a database whose search tree or data section is
/// damaged usually fails here instead of row by row later.
const PROBES_V4: [&str; 4] = ["1.1.1.1", "8.8.8.8", "81.2.69.160", "216.160.83.56"];
const PROBES_V6: [&str; 3] = ["2001:4860:4860::8888", "2a02:cf40::1", "2001:218::1"];

impl Mmdb {
    pub(crate) fn parse(path: &str, bytes: Vec<u8>) -> Result<Mmdb, ResourceError> {
        let bad = |reason: String| ResourceError::Database {
            path: path.to_owned(),
            reason,
        };
        if bytes.is_empty() {
            return Err(bad("file is empty".to_owned()));
        }
        let reader = maxminddb::Reader::from_source(bytes).map_err(|e| bad(e.to_string()))?;
        let metadata = &reader.metadata;
        if metadata.node_count == 0 {
            return Err(bad("search tree has no nodes".to_owned()));
        }
        let database_type = metadata.database_type.clone();
        let version = format!("{}@{}", database_type, metadata.build_epoch);
        let mmdb = Mmdb {
            version,
            database_type,
            reader,
        };
        let v6 = mmdb.reader.metadata.ip_version == 6;
        let probes = PROBES_V4
            .iter()
            .chain(if v6 { &PROBES_V6[..] } else { &[][..] });
        for probe in probes {
            let ip: IpAddr = probe.parse().expect("probe addresses are valid");
            mmdb.reader
                .lookup::<GeoRecord>(ip)
                .map_err(|e| bad(format!("lookup of {ip} fails: {e}")))?;
            mmdb.reader
                .lookup::<AsnRecord>(ip)
                .map_err(|e| bad(format!("lookup of {ip} fails: {e}")))?;
        }
        Ok(mmdb)
    }

    /// Geo fields for `ip`; `Ok(None)` when the database has no network containing it.
    pub(crate) fn geo(&self, ip: IpAddr, locale: &str) -> Result<Option<GeoAnswer>, String> {
        let record = match self.reader.lookup::<GeoRecord>(ip) {
            Ok(Some(record)) => record,
            Ok(None) => return Ok(None),
            Err(e) => return Err(e.to_string()),
        };
        Ok(Some(record.answer(locale)))
    }

    pub(crate) fn asn(&self, ip: IpAddr) -> Result<Option<AsnAnswer>, String> {
        let record = match self.reader.lookup::<AsnRecord>(ip) {
            Ok(Some(record)) => record,
            Ok(None) => return Ok(None),
            Err(e) => return Err(e.to_string()),
        };
        let number = record.autonomous_system_number.or_else(|| {
            let text = record.asn.as_deref()?;
            let digits = text
                .strip_prefix("AS")
                .or_else(|| text.strip_prefix("as"))
                .unwrap_or(text);
            digits.parse().ok()
        });
        let org = record.autonomous_system_organization.or(record.as_name);
        if number.is_none() && org.is_none() {
            return Ok(None);
        }
        Ok(Some(AsnAnswer { number, org }))
    }
}

/// The GeoIP columns of one address.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct GeoAnswer {
    pub(crate) country_code: Option<String>,
    pub(crate) country: Option<String>,
    pub(crate) subdivision: Option<String>,
    pub(crate) city: Option<String>,
    pub(crate) postal_code: Option<String>,
    pub(crate) latitude: Option<f64>,
    pub(crate) longitude: Option<f64>,
    pub(crate) time_zone: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct AsnAnswer {
    pub(crate) number: Option<u32>,
    pub(crate) org: Option<String>,
}

#[derive(Deserialize, Default)]
struct GeoRecord {
    #[serde(default)]
    country: Option<Place>,
    /// IPinfo lite
    #[serde(default)]
    country_code: Option<String>,
    #[serde(default)]
    subdivisions: Option<Vec<NamedPlace>>,
    #[serde(default)]
    city: Option<Place>,
    #[serde(default)]
    postal: Option<Postal>,
    #[serde(default)]
    location: Option<Location>,
}

/// GeoIP2 writes places as maps; IPinfo lite writes the country as a plain name.
#[derive(Deserialize)]
#[serde(untagged)]
enum Place {
    Named(NamedPlace),
    Text(String),
}

#[derive(Deserialize, Default)]
struct NamedPlace {
    #[serde(default)]
    iso_code: Option<String>,
    #[serde(default)]
    names: Option<BTreeMap<String, String>>,
}

impl NamedPlace {
    fn name(&self, locale: &str) -> Option<String> {
        self.names.as_ref()?.get(locale).cloned()
    }
}

#[derive(Deserialize)]
struct Postal {
    #[serde(default)]
    code: Option<String>,
}

#[derive(Deserialize)]
struct Location {
    #[serde(default)]
    latitude: Option<f64>,
    #[serde(default)]
    longitude: Option<f64>,
    #[serde(default)]
    time_zone: Option<String>,
}

impl GeoRecord {
    fn answer(self, locale: &str) -> GeoAnswer {
        let mut answer = GeoAnswer::default();
        match self.country {
            Some(Place::Named(place)) => {
                answer.country = place.name(locale);
                answer.country_code = place.iso_code;
            }
            Some(Place::Text(name)) => answer.country = Some(name),
            None => {}
        }
        if answer.country_code.is_none() {
            answer.country_code = self.country_code;
        }
        answer.subdivision = self
            .subdivisions
            .as_ref()
            .and_then(|subdivisions| subdivisions.first())
            .and_then(|first| first.name(locale));
        answer.city = match self.city {
            Some(Place::Named(place)) => place.name(locale),
            Some(Place::Text(name)) => Some(name),
            None => None,
        };
        answer.postal_code = self.postal.and_then(|postal| postal.code);
        if let Some(location) = self.location {
            answer.latitude = location.latitude;
            answer.longitude = location.longitude;
            answer.time_zone = location.time_zone;
        }
        answer
    }
}

#[derive(Deserialize, Default)]
struct AsnRecord {
    #[serde(default)]
    autonomous_system_number: Option<u32>,
    #[serde(default)]
    autonomous_system_organization: Option<String>,
    /// IPinfo lite: `AS15169`
    #[serde(default)]
    asn: Option<String>,
    /// IPinfo lite
    #[serde(default)]
    as_name: Option<String>,
}
