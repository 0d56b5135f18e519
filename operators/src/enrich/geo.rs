//! MaxMind DB format readers: GeoIP2 / GeoLite2 City and Country, GeoLite2 ASN, and the
//! databases laid out like them (DB-IP lite) or close to them (IPinfo lite, whose
//! `country` is a plain string and whose ASN is text like `AS15169`).

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
    /// IPinfo's flat layout rather than MaxMind's nested one.
    ipinfo: bool,
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
        let ipinfo = database_type.to_ascii_lowercase().contains("ipinfo");
        let mmdb = Mmdb {
            version,
            database_type,
            ipinfo,
            reader,
        };
        let v6 = mmdb.reader.metadata.ip_version == 6;
        let probes = PROBES_V4
            .iter()
            .chain(if v6 { &PROBES_V6[..] } else { &[][..] });
        for probe in probes {
            let ip: IpAddr = probe.parse().expect("probe addresses are valid");
            mmdb.geo(ip, "en")
                .map_err(|e| bad(format!("lookup of {ip} fails: {e}")))?;
            mmdb.asn(ip)
                .map_err(|e| bad(format!("lookup of {ip} fails: {e}")))?;
        }
        Ok(mmdb)
    }

    /// Geo fields for `ip`; `Ok(None)` when the database has no network containing it.
    pub(crate) fn geo(&self, ip: IpAddr, locale: &str) -> Result<Option<GeoAnswer>, String> {
        if self.ipinfo {
            let Some(record) = self
                .reader
                .lookup::<IpinfoRecord>(ip)
                .map_err(|e| e.to_string())?
            else {
                return Ok(None);
            };
            return Ok(Some(GeoAnswer {
                country_code: record.country_code.map(str::to_owned),
                country: record.country.map(str::to_owned),
                ..GeoAnswer::default()
            }));
        }
        let record = self
            .reader
            .lookup::<GeoRecord>(ip)
            .map_err(|e| e.to_string())?;
        Ok(record.map(|record| record.answer(locale)))
    }

    pub(crate) fn asn(&self, ip: IpAddr) -> Result<Option<AsnAnswer>, String> {
        let (number, org) = if self.ipinfo {
            let Some(record) = self
                .reader
                .lookup::<IpinfoRecord>(ip)
                .map_err(|e| e.to_string())?
            else {
                return Ok(None);
            };
            let number = record.asn.and_then(|text| {
                let digits = text.strip_prefix("AS").or_else(|| text.strip_prefix("as"));
                digits.unwrap_or(text).parse().ok()
            });
            (number, record.as_name)
        } else {
            let Some(record) = self
                .reader
                .lookup::<AsnRecord>(ip)
                .map_err(|e| e.to_string())?
            else {
                return Ok(None);
            };
            (
                record.autonomous_system_number,
                record.autonomous_system_organization,
            )
        };
        if number.is_none() && org.is_none() {
            return Ok(None);
        }
        Ok(Some(AsnAnswer {
            number,
            org: org.map(str::to_owned),
        }))
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

/// Locales MaxMind databases carry place names in.
pub(crate) const LOCALES: [&str; 8] = ["de", "en", "es", "fr", "ja", "pt-BR", "ru", "zh-CN"];

/// GeoIP2 / GeoLite2 / DB-IP layout. Strings borrow from the database and names decode
/// into fixed fields, so a lookup allocates only for the subdivision list.
#[derive(Deserialize, Default)]
struct GeoRecord<'a> {
    #[serde(borrow, default)]
    country: Option<Place<'a>>,
    #[serde(borrow, default)]
    subdivisions: Option<Vec<Place<'a>>>,
    #[serde(borrow, default)]
    city: Option<Place<'a>>,
    #[serde(borrow, default)]
    postal: Option<Postal<'a>>,
    #[serde(borrow, default)]
    location: Option<Location<'a>>,
}

#[derive(Deserialize, Default)]
struct Place<'a> {
    #[serde(borrow, default)]
    iso_code: Option<&'a str>,
    #[serde(borrow, default)]
    names: Option<Names<'a>>,
}

#[derive(Deserialize, Default)]
struct Names<'a> {
    #[serde(borrow, default)]
    de: Option<&'a str>,
    #[serde(borrow, default)]
    en: Option<&'a str>,
    #[serde(borrow, default)]
    es: Option<&'a str>,
    #[serde(borrow, default)]
    fr: Option<&'a str>,
    #[serde(borrow, default)]
    ja: Option<&'a str>,
    #[serde(borrow, default, rename = "pt-BR")]
    pt_br: Option<&'a str>,
    #[serde(borrow, default)]
    ru: Option<&'a str>,
    #[serde(borrow, default, rename = "zh-CN")]
    zh_cn: Option<&'a str>,
}

impl<'a> Place<'a> {
    fn name(&self, locale: &str) -> Option<String> {
        let names = self.names.as_ref()?;
        let name = match locale {
            "de" => names.de,
            "en" => names.en,
            "es" => names.es,
            "fr" => names.fr,
            "ja" => names.ja,
            "pt-BR" => names.pt_br,
            "ru" => names.ru,
            "zh-CN" => names.zh_cn,
            _ => None,
        };
        name.map(str::to_owned)
    }
}

#[derive(Deserialize)]
struct Postal<'a> {
    #[serde(borrow, default)]
    code: Option<&'a str>,
}

#[derive(Deserialize)]
struct Location<'a> {
    #[serde(default)]
    latitude: Option<f64>,
    #[serde(default)]
    longitude: Option<f64>,
    #[serde(borrow, default)]
    time_zone: Option<&'a str>,
}

impl GeoRecord<'_> {
    fn answer(&self, locale: &str) -> GeoAnswer {
        let owned = |s: Option<&str>| s.map(str::to_owned);
        let country = self.country.as_ref();
        GeoAnswer {
            country_code: owned(country.and_then(|c| c.iso_code)),
            country: country.and_then(|c| c.name(locale)),
            subdivision: self
                .subdivisions
                .as_ref()
                .and_then(|list| list.first())
                .and_then(|first| first.name(locale)),
            city: self.city.as_ref().and_then(|c| c.name(locale)),
            postal_code: owned(self.postal.as_ref().and_then(|p| p.code)),
            latitude: self.location.as_ref().and_then(|l| l.latitude),
            longitude: self.location.as_ref().and_then(|l| l.longitude),
            time_zone: owned(self.location.as_ref().and_then(|l| l.time_zone)),
        }
    }
}

/// GeoLite2 ASN / DB-IP ASN layout.
#[derive(Deserialize, Default)]
struct AsnRecord<'a> {
    #[serde(default)]
    autonomous_system_number: Option<u32>,
    #[serde(borrow, default)]
    autonomous_system_organization: Option<&'a str>,
}

/// IPinfo lite: one flat record with both country and ASN, all text (`asn = "AS15169"`).
#[derive(Deserialize, Default)]
struct IpinfoRecord<'a> {
    #[serde(borrow, default)]
    country: Option<&'a str>,
    #[serde(borrow, default)]
    country_code: Option<&'a str>,
    #[serde(borrow, default)]
    asn: Option<&'a str>,
    #[serde(borrow, default)]
    as_name: Option<&'a str>,
}
