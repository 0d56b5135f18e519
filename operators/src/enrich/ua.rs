//! User-agent parsing with the uap-core rules (`uap/regexes.json`, converted from uap-core
//! 0.18.0's `regexes.yaml`, Apache-2.0, licence beside it; regenerate with
//! `operators/testdata/enrich/refresh.py`). The rules are compiled into the binary, so
//! nothing is read at run time and every replica parses alike.

use std::sync::OnceLock;

/// Recorded in `enrich_version` so a rules upgrade shows in the data.
pub(crate) const UAP_VERSION: &str = "uap-core-0.18.0";

const RULES_JSON: &str = include_str!("uap/regexes.json");

type Extractor = ua_parser::Extractor<'static>;

/// The compiled rules, built once per process (compiling ~1,200 regexes takes a moment).
pub(crate) fn extractor() -> Result<&'static Extractor, String> {
    static RULES: OnceLock<Result<Extractor, String>> = OnceLock::new();
    RULES
        .get_or_init(|| {
            let regexes: ua_parser::Regexes<'static> = serde_json::from_str(RULES_JSON)
                .map_err(|e| format!("embedded uap-core rules do not parse: {e}"))?;
            Extractor::try_from(regexes)
                .map_err(|e| format!("embedded uap-core rules do not compile: {e}"))
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// The user-agent columns of one header value. Families are uap-core's, including its
/// `Other` for a value no rule matches.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct UaAnswer {
    pub(crate) browser: Option<String>,
    pub(crate) browser_major: Option<String>,
    pub(crate) os: Option<String>,
    pub(crate) os_major: Option<String>,
    pub(crate) device: Option<String>,
}

pub(crate) fn parse(extractor: &'static Extractor, user_agent: &str) -> UaAnswer {
    let other = || Some("Other".to_owned());
    let mut answer = UaAnswer {
        browser: other(),
        os: other(),
        device: other(),
        ..UaAnswer::default()
    };
    if let Some(ua) = extractor.ua.extract(user_agent) {
        answer.browser = Some(ua.family.into_owned());
        answer.browser_major = ua.major.map(|m| m.to_owned());
    }
    if let Some(os) = extractor.os.extract(user_agent) {
        answer.os = Some(os.os.into_owned());
        answer.os_major = os.major.map(|m| m.into_owned());
    }
    if let Some(device) = extractor.dev.extract(user_agent) {
        answer.device = Some(device.device.into_owned());
    }
    answer
}
