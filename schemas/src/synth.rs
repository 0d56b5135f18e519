//! Deterministic synthetic Logpush records, for `weir demo`, benchmarks and end-to-end tests.
//!
//! Every generator is seeded (ChaCha8) and owns an event-time clock: each record is stamped
//! with the clock's current time, then the clock advances by a fixed step. The same seed,
//! start time and step always give byte-identical output; nothing reads the wall clock.
//!
//! Nothing here is real personal data: client addresses come from the shared/CGNAT and
//! benchmarking IPv4 ranges (100.64.0.0/10, 198.18.0.0/15) and the IPv6 documentation
//! prefix (2001:db8::/32); hosts are subdomains of example.com/.net/.org; identifiers are
//! hashes of counters.
//!
//! [`HttpRequests`] fills all 108 http_requests fields (about 1.7 KB per record); the
//! other generators fill the fields that matter for their datasets.

use std::io::Write;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// 2024-05-01T00:00:00Z, the default start of every clock.
pub const DEFAULT_START_NS: i64 = 1_714_521_600_000_000_000;

/// Default clock step: 100 µs of event time per record (10k records per second).
pub const DEFAULT_STEP_NS: i64 = 100_000;

/// What a generator reports about the record it just wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordMeta {
    /// Unique per record within one generator (for http_requests and firewall_events it is
    /// the RayID, as 16 hex digits via [`ray_id_hex`]).
    pub id: u64,
    /// The record's event time, nanoseconds since the epoch.
    pub event_time_ns: i64,
}

/// The 16-hex-digit form of a record id, as written in `RayID`.
pub fn ray_id_hex(id: u64) -> String {
    format!("{id:016x}")
}

/// A bijection on u64 (the splitmix64 finaliser): distinct counters give distinct ids.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// State shared by the generators: randomness, the event-time clock, the record counter.
#[derive(Debug, Clone)]
struct Core {
    rng: ChaCha8Rng,
    key: u64,
    sequence: u64,
    now_ns: i64,
    step_ns: i64,
}

impl Core {
    fn new(seed: u64) -> Core {
        Core {
            rng: ChaCha8Rng::seed_from_u64(seed),
            key: mix(seed ^ 0x5745_4952),
            sequence: 0,
            now_ns: DEFAULT_START_NS,
            step_ns: DEFAULT_STEP_NS,
        }
    }

    /// Stamps the next record and advances the clock.
    fn tick(&mut self) -> RecordMeta {
        let meta = RecordMeta {
            id: mix(self.sequence.wrapping_add(self.key)),
            event_time_ns: self.now_ns,
        };
        self.sequence += 1;
        self.now_ns += self.step_ns;
        meta
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.rng.random_range(0..items.len())]
    }

    /// An index below `n`, heavily skewed towards small values: the first 1% of the range
    /// gets about a third of the draws, roughly like a Zipf law.
    fn skewed(&mut self, n: u64) -> u64 {
        let u: f64 = self.rng.random();
        ((u * u * u * u) * n as f64) as u64
    }

    fn chance(&mut self, p: f64) -> bool {
        self.rng.random_bool(p)
    }

    fn range(&mut self, low: i64, high: i64) -> i64 {
        self.rng.random_range(low..high)
    }
}

macro_rules! clock_methods {
    () => {
        /// Sets the event time of the next record (nanoseconds since the epoch).
        pub fn set_event_time(&mut self, ns: i64) {
            self.core.now_ns = ns;
        }

        /// Sets how far event time advances per record.
        pub fn set_step(&mut self, step_ns: i64) {
            self.core.step_ns = step_ns;
        }

        /// Builder form of [`Self::set_event_time`].
        pub fn with_start_time(mut self, ns: i64) -> Self {
            self.set_event_time(ns);
            self
        }

        /// Builder form of [`Self::set_step`].
        pub fn with_step(mut self, step_ns: i64) -> Self {
            self.set_step(step_ns);
            self
        }

        /// The event time the next record will carry.
        pub fn event_time(&self) -> i64 {
            self.core.now_ns
        }

        /// How many records this generator has written.
        pub fn records_written(&self) -> u64 {
            self.core.sequence
        }

        /// One record as its own buffer, with its metadata.
        pub fn next_record(&mut self) -> (RecordMeta, Vec<u8>) {
            let mut out = Vec::with_capacity(2048);
            let meta = self.write_record(&mut out);
            (meta, out)
        }
    };
}

macro_rules! iterator_impl {
    ($ty:ty) => {
        impl Iterator for $ty {
            type Item = Vec<u8>;
            fn next(&mut self) -> Option<Vec<u8>> {
                Some(self.next_record().1)
            }
        }
    };
}

/// A pool of a few hundred thousand synthetic client addresses, drawn with a skew so that
/// some clients repeat a lot.
const CLIENTS: u64 = 300_000;

fn write_client_ip(out: &mut Vec<u8>, client: u64, key: u64) {
    let h = mix(client ^ key);
    if h.is_multiple_of(5) {
        let _ = write!(
            out,
            "2001:db8:{:x}:{:x}::{:x}",
            (h >> 8) & 0xffff,
            (h >> 24) & 0xffff,
            (h >> 40) & 0xffff
        );
    } else if h.is_multiple_of(7) {
        let _ = write!(
            out,
            "198.{}.{}.{}",
            18 + ((h >> 8) & 1),
            (h >> 16) & 0xff,
            1 + (h >> 24) % 254
        );
    } else {
        let _ = write!(
            out,
            "100.{}.{}.{}",
            64 + ((h >> 8) & 0x3f),
            (h >> 16) & 0xff,
            1 + (h >> 24) % 254
        );
    }
}

const ZONES: &[&str] = &["example.com", "example.net", "example.org"];
const SUBDOMAINS: &[&str] = &[
    "www", "api", "shop", "static", "cdn", "auth", "blog", "docs", "m", "status",
];
const PATHS: &[&str] = &[
    "/",
    "/index.html",
    "/api/v1/users/",
    "/api/v1/orders/",
    "/api/v2/search",
    "/products/",
    "/static/js/app.",
    "/static/css/site.",
    "/images/catalog/",
    "/login",
    "/logout",
    "/cart",
    "/checkout/payment",
    "/blog/2024/05/",
    "/docs/getting-started/",
    "/favicon.ico",
    "/robots.txt",
    "/sitemap.xml",
    "/.well-known/security.txt",
    "/graphql",
];
const WORDS: &[&str] = &[
    "river", "amber", "falcon", "orbit", "maple", "quartz", "harbor", "cinder", "willow", "summit",
    "meadow", "pixel", "lantern", "copper", "violet", "glacier",
];
const USER_AGENTS: &[&str] = &[
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4.1 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.6367.82 Mobile Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36 Edg/124.0.2478.67",
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
    "curl/8.7.1",
    "python-requests/2.31.0",
    "Go-http-client/2.0",
    "okhttp/4.12.0",
    "PostmanRuntime/7.37.3",
    "Mozilla/5.0 (iPad; CPU OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
];
const METHODS: &[(&str, u32)] = &[
    ("GET", 80),
    ("POST", 12),
    ("PUT", 3),
    ("HEAD", 3),
    ("OPTIONS", 1),
    ("DELETE", 1),
];
const STATUSES: &[(i64, u32)] = &[
    (200, 700),
    (204, 20),
    (206, 10),
    (301, 30),
    (302, 30),
    (304, 80),
    (400, 15),
    (401, 10),
    (403, 25),
    (404, 40),
    (429, 10),
    (499, 5),
    (500, 8),
    (502, 7),
    (503, 6),
    (504, 4),
];
const COUNTRIES: &[(&str, &str, &str)] = &[
    ("us", "CA", "San Jose"),
    ("us", "NY", "New York"),
    ("gb", "ENG", "London"),
    ("de", "HE", "Frankfurt"),
    ("fr", "IDF", "Paris"),
    ("nl", "NH", "Amsterdam"),
    ("jp", "13", "Tokyo"),
    ("sg", "01", "Singapore"),
    ("br", "SP", "Sao Paulo"),
    ("in", "MH", "Mumbai"),
    ("au", "NSW", "Sydney"),
    ("ca", "ON", "Toronto"),
];
const COLOS: &[(&str, i64)] = &[
    ("SJC", 11),
    ("EWR", 22),
    ("LHR", 33),
    ("FRA", 44),
    ("CDG", 55),
    ("AMS", 66),
    ("NRT", 77),
    ("SIN", 88),
    ("GRU", 99),
    ("BOM", 110),
    ("SYD", 121),
    ("YYZ", 132),
];
const CONTENT_TYPES: &[&str] = &[
    "text/html",
    "application/json",
    "application/javascript",
    "text/css",
    "image/webp",
    "image/png",
    "text/plain",
];
const CACHE_STATUSES: &[&str] = &[
    "hit",
    "miss",
    "dynamic",
    "expired",
    "revalidated",
    "bypass",
    "stale",
];
const LANGUAGES: &[&str] = &[
    "en-US,en;q=0.9",
    "de-DE,de;q=0.8,en;q=0.5",
    "fr-FR,fr;q=0.9",
    "ja-JP,ja;q=0.9",
    "pt-BR,pt;q=0.8",
];
const CIPHERS: &[&str] = &[
    "AEAD-AES128-GCM-SHA256",
    "AEAD-AES256-GCM-SHA384",
    "AEAD-CHACHA20-POLY1305-SHA256",
    "ECDHE-RSA-AES128-GCM-SHA256",
];
const BOT_SOURCES: &[&str] = &[
    "Machine Learning",
    "Heuristics",
    "Verified Bot",
    "JS Fingerprinting",
    "Not Computed",
];
const DEVICE_TYPES: &[&str] = &["desktop", "mobile", "tablet"];
const IP_CLASSES: &[&str] = &[
    "noRecord",
    "noRecord",
    "noRecord",
    "searchEngine",
    "monitoringService",
    "scan",
    "tor",
];

fn weighted<T: Copy>(core: &mut Core, items: &[(T, u32)]) -> T {
    let total: u32 = items.iter().map(|(_, w)| w).sum();
    let mut draw = core.rng.random_range(0..total);
    for (item, weight) in items {
        if draw < *weight {
            return *item;
        }
        draw -= weight;
    }
    items[items.len() - 1].0
}

/// Writes `"key":` (keys here never need escaping).
fn key(out: &mut Vec<u8>, name: &str) {
    out.push(b'"');
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\":");
}

/// Fields a compact http_requests record leaves out: deprecated ones and fine-grained
/// timings and scores that Logpush jobs often do not select.
const RARELY_SELECTED: &[&str] = &[
    "CacheResponseStatus",
    "OriginResponseTime",
    "OriginResponseBytes",
    "WAFFlags",
    "WAFRCEAttackScore",
    "WAFSQLiAttackScore",
    "WAFXSSAttackScore",
    "OriginRequestHeaderSendDurationMs",
    "OriginResponseHeaderReceiveDurationMs",
    "OriginTCPHandshakeDurationMs",
    "OriginTLSHandshakeDurationMs",
    "OriginDNSResponseTimeMs",
    "ClientMTLSAuthStatus",
    "EdgePathingOp",
    "EdgePathingSrc",
    "EdgePathingStatus",
    "BotScoreSrc",
    "JSDetectionPassed",
    "ClientRequestSource",
    "WorkerStatus",
    "OriginSSLProtocol",
    "ClientSSLCipher",
];

/// Writes members of one record; in compact mode members holding an empty string, an
/// empty list, zero or false are left out, and so are the [`RARELY_SELECTED`] fields.
struct Fields<'a> {
    out: &'a mut Vec<u8>,
    compact: bool,
}

impl Fields<'_> {
    fn str(&mut self, name: &str, value: &str) {
        if self.compact && (value.is_empty() || RARELY_SELECTED.contains(&name)) {
            return;
        }
        key(self.out, name);
        self.out.push(b'"');
        self.out.extend_from_slice(value.as_bytes());
        self.out.extend_from_slice(b"\",");
    }

    fn int(&mut self, name: &str, value: i64) {
        if self.compact && (value == 0 || RARELY_SELECTED.contains(&name)) {
            return;
        }
        key(self.out, name);
        let _ = write!(self.out, "{value},");
    }

    fn bool(&mut self, name: &str, value: bool) {
        if self.compact && !value {
            return;
        }
        key(self.out, name);
        self.out
            .extend_from_slice(if value { b"true," } else { b"false," });
    }

    fn raw(&mut self, name: &str, json: &str) {
        if self.compact && json == "[]" {
            return;
        }
        key(self.out, name);
        self.out.extend_from_slice(json.as_bytes());
        self.out.push(b',');
    }
}

/// Replaces the trailing comma of the last member with the closing brace.
fn close(out: &mut Vec<u8>) {
    if out.last() == Some(&b',') {
        out.pop();
    }
    out.push(b'}');
}

/// Synthetic Cloudflare http_requests records.
#[derive(Debug, Clone)]
pub struct HttpRequests {
    core: Core,
    scratch: Vec<u8>,
    compact: bool,
}

impl HttpRequests {
    pub fn new(seed: u64) -> HttpRequests {
        HttpRequests {
            core: Core::new(seed),
            scratch: Vec::with_capacity(256),
            compact: false,
        }
    }

    /// Leave out members that hold an empty string, an empty list, zero or false, like a
    /// Logpush job whose output drops defaults, and the fields few jobs select
    /// ([`RARELY_SELECTED`]). All 108 keys take about 2.2 KB on their own, so full records
    /// average about 3.4 KB; compact ones are 1.5–2 KB.
    pub fn compact(mut self, compact: bool) -> Self {
        self.compact = compact;
        self
    }

    clock_methods!();

    /// Appends one record (no trailing newline) to `out`.
    pub fn write_record(&mut self, out: &mut Vec<u8>) -> RecordMeta {
        let meta = self.core.tick();
        let w = &mut Fields {
            out,
            compact: self.compact,
        };
        let core = &mut self.core;
        let ray = meta.id;
        let client = core.skewed(CLIENTS);
        let client_hash = mix(client ^ core.key);
        let zone = core.pick(ZONES);
        let subdomain = core.pick(SUBDOMAINS);
        let method = weighted(core, METHODS);
        let status = weighted(core, STATUSES);
        let (country, region, city) = COUNTRIES[(client_hash % COUNTRIES.len() as u64) as usize];
        let (colo, colo_id) = COLOS[(client_hash >> 5) as usize % COLOS.len()];
        let agent = USER_AGENTS[(client_hash >> 11) as usize % USER_AGENTS.len()];
        let is_bot = agent.contains("bot") || !agent.starts_with("Mozilla");
        let content_type = core.pick(CONTENT_TYPES);
        let cache_status = core.pick(CACHE_STATUSES);
        let ttfb = core.skewed(2_000) as i64 + 2;
        let origin_ms = if cache_status == "hit" {
            0
        } else {
            ttfb.saturating_sub(1)
        };
        let body_bytes = core.skewed(400_000) as i64 + 120;
        let request_bytes = core.range(300, 4_000);
        let worker = core.chance(0.15);
        let blocked = status == 403;

        // Host, path and query, built once and reused by several fields.
        let mut host = String::with_capacity(32);
        host.push_str(subdomain);
        host.push('.');
        host.push_str(zone);
        self.scratch.clear();
        let path_start = core.pick(PATHS);
        self.scratch.extend_from_slice(path_start.as_bytes());
        if path_start.ends_with('/') && path_start.len() > 1 {
            let word = core.pick(WORDS);
            let _ = write!(self.scratch, "{word}-{}", core.skewed(50_000));
        } else if path_start.ends_with('.') {
            let _ = write!(
                self.scratch,
                "{:08x}.{}",
                mix(core.skewed(64)) as u32,
                if path_start.contains("js") {
                    "js"
                } else {
                    "css"
                }
            );
        }
        let path_len = self.scratch.len();
        if core.chance(0.4) {
            let _ = write!(
                self.scratch,
                "?q={}&page={}&utm_source={}",
                core.pick(WORDS),
                core.range(1, 40),
                core.pick(&["newsletter", "search", "social", "partner"])
            );
        }
        let uri = std::str::from_utf8(&self.scratch).unwrap_or("/");
        let path = &uri[..path_len];

        w.out.reserve(2048);
        w.out.push(b'{');
        let detection_ids = if is_bot { "[33554817,50331651]" } else { "[]" };
        w.raw("BotDetectionIDs", detection_ids);
        w.raw(
            "BotDetectionTags",
            if is_bot {
                r#"["headless_browser","automation"]"#
            } else {
                "[]"
            },
        );
        w.int(
            "BotScore",
            if is_bot {
                core.range(1, 30)
            } else {
                core.range(30, 100)
            },
        );
        w.str("BotScoreSrc", core.pick(BOT_SOURCES));
        w.raw(
            "BotTags",
            if agent.contains("bot") {
                r#"["search_engine"]"#
            } else {
                "[]"
            },
        );
        w.str("CacheCacheStatus", cache_status);
        w.bool("CacheReserveUsed", core.chance(0.02));
        w.int(
            "CacheResponseBytes",
            if cache_status == "hit" {
                body_bytes + 400
            } else {
                0
            },
        );
        w.int("CacheResponseStatus", status);
        w.bool("CacheTieredFill", core.chance(0.1));
        w.int("ClientASN", 64_496 + (client_hash % 1_000) as i64);
        w.str("ClientCity", city);
        w.str("ClientCountry", country);
        w.str(
            "ClientDeviceType",
            DEVICE_TYPES[(client_hash >> 17) as usize % DEVICE_TYPES.len()],
        );
        key(w.out, "ClientIP");
        w.out.push(b'"');
        write_client_ip(w.out, client, core.key);
        w.out.extend_from_slice(b"\",");
        w.str(
            "ClientIPClass",
            IP_CLASSES[(client_hash >> 21) as usize % IP_CLASSES.len()],
        );
        let _ = write!(
            w.out,
            "\"ClientLatitude\":\"{:.4}\",\"ClientLongitude\":\"{:.4}\",",
            (client_hash % 1_400) as f64 / 10.0 - 60.0,
            ((client_hash >> 12) % 3_600) as f64 / 10.0 - 180.0
        );
        w.str("ClientMTLSAuthCertFingerprint", "");
        w.str("ClientMTLSAuthStatus", "unknown");
        w.str("ClientRegionCode", region);
        w.int("ClientRequestBytes", request_bytes);
        w.str("ClientRequestHost", &host);
        w.str("ClientRequestMethod", method);
        w.str("ClientRequestPath", path);
        w.str(
            "ClientRequestProtocol",
            if core.chance(0.6) {
                "HTTP/2"
            } else if core.chance(0.5) {
                "HTTP/3"
            } else {
                "HTTP/1.1"
            },
        );
        key(w.out, "ClientRequestReferer");
        let _ = write!(
            w.out,
            "\"https://{}.{}/{}\",",
            core.pick(SUBDOMAINS),
            zone,
            core.pick(WORDS)
        );
        w.str("ClientRequestScheme", "https");
        w.str(
            "ClientRequestSource",
            if worker { "edgeWorkerFetch" } else { "eyeball" },
        );
        w.str("ClientRequestURI", uri);
        w.str("ClientRequestUserAgent", agent);
        w.str("ClientSSLCipher", core.pick(CIPHERS));
        w.str(
            "ClientSSLProtocol",
            if core.chance(0.85) {
                "TLSv1.3"
            } else {
                "TLSv1.2"
            },
        );
        w.int("ClientSrcPort", core.range(1_024, 65_535));
        w.int("ClientTCPRTTMs", core.skewed(400) as i64 + 1);
        w.str(
            "ClientXRequestedWith",
            if content_type == "application/json" {
                "XMLHttpRequest"
            } else {
                ""
            },
        );
        w.raw(
            "ContentScanObjResults",
            if method == "POST" {
                r#"["clean"]"#
            } else {
                "[]"
            },
        );
        w.raw(
            "ContentScanObjSizes",
            if method == "POST" { "[2048]" } else { "[]" },
        );
        w.raw(
            "ContentScanObjTypes",
            if method == "POST" {
                r#"["application/pdf"]"#
            } else {
                "[]"
            },
        );
        let _ = write!(
            w.out,
            "\"Cookies\":{{\"session\":\"{:016x}\",\"consent\":\"{}\"}},",
            client_hash,
            client_hash & 1 == 0
        );
        w.bool("EdgeCFConnectingO2O", false);
        w.str("EdgeColoCode", colo);
        w.int("EdgeColoID", colo_id);
        let end_ns = meta.event_time_ns + (ttfb + core.skewed(50) as i64) * 1_000_000;
        w.int("EdgeEndTimestamp", end_ns);
        w.str("EdgePathingOp", if blocked { "ban" } else { "wl" });
        w.str(
            "EdgePathingSrc",
            if blocked {
                "filterBasedFirewall"
            } else {
                "macro"
            },
        );
        w.str("EdgePathingStatus", if blocked { "zl" } else { "nr" });
        w.str("EdgeRequestHost", &host);
        w.int("EdgeResponseBodyBytes", body_bytes);
        w.int("EdgeResponseBytes", body_bytes + 450);
        let ratio = if content_type.starts_with("image") {
            1.0
        } else {
            1.0 + (client_hash % 300) as f64 / 100.0
        };
        let _ = write!(w.out, "\"EdgeResponseCompressionRatio\":{ratio:.2},");
        w.str("EdgeResponseContentType", content_type);
        w.int("EdgeResponseStatus", status);
        let _ = write!(
            w.out,
            "\"EdgeServerIP\":\"198.18.{}.{}\",",
            colo_id,
            1 + ray % 200
        );
        w.int("EdgeStartTimestamp", meta.event_time_ns);
        w.int("EdgeTimeToFirstByteMs", ttfb);
        w.str("FraudAttack", "");
        w.raw("FraudDetectionIDs", "[]");
        w.raw("FraudDetectionTags", "[]");
        w.str("FraudEmailRisk", "");
        w.str("FraudUserID", "");
        let _ = write!(
            w.out,
            "\"JA3Hash\":\"{:016x}{:016x}\",",
            mix(client_hash),
            mix(client_hash ^ 1)
        );
        let _ = write!(
            w.out,
            "\"JA4\":\"t13d1516h2_8daaf6152771_{:012x}\",",
            client_hash >> 16
        );
        let _ = write!(
            w.out,
            "\"JA4Signals\":{{\"h2h3_ratio_1h\":{:.3},\"heuristic_ratio_1h\":{:.4},\"reqs_quantile_1h\":{:.3},\"uas_rank_1h\":{}}},",
            (client_hash % 1000) as f64 / 1000.0,
            (client_hash % 97) as f64 / 10_000.0,
            ((client_hash >> 7) % 1000) as f64 / 1000.0,
            (client_hash >> 20) % 900 + 1
        );
        w.str(
            "JSDetectionPassed",
            if is_bot { "failed" } else { "passed" },
        );
        w.str(
            "LeakedCredentialCheckResult",
            if path.starts_with("/login") {
                "clean"
            } else {
                ""
            },
        );
        w.int(
            "OriginDNSResponseTimeMs",
            if origin_ms > 0 { core.range(0, 5) } else { 0 },
        );
        let _ = write!(
            w.out,
            "\"OriginIP\":\"198.19.{}.{}\",",
            (client_hash >> 3) % 4,
            10 + (client_hash >> 9) % 20
        );
        w.int(
            "OriginRequestHeaderSendDurationMs",
            if origin_ms > 0 { 1 } else { 0 },
        );
        w.int(
            "OriginResponseBytes",
            if origin_ms > 0 { body_bytes + 300 } else { 0 },
        );
        w.int("OriginResponseDurationMs", origin_ms);
        w.str("OriginResponseHTTPExpires", "");
        w.str(
            "OriginResponseHTTPLastModified",
            if content_type == "text/html" {
                "Tue, 30 Apr 2024 08:00:00 GMT"
            } else {
                ""
            },
        );
        w.int("OriginResponseHeaderReceiveDurationMs", origin_ms / 2);
        w.int(
            "OriginResponseStatus",
            if origin_ms > 0 { status } else { 0 },
        );
        w.int("OriginResponseTime", origin_ms * 1_000_000);
        w.str(
            "OriginSSLProtocol",
            if origin_ms > 0 { "TLSv1.3" } else { "none" },
        );
        w.int(
            "OriginTCPHandshakeDurationMs",
            if origin_ms > 0 { core.range(0, 20) } else { 0 },
        );
        w.int(
            "OriginTLSHandshakeDurationMs",
            if origin_ms > 0 { core.range(0, 30) } else { 0 },
        );
        key(w.out, "ParentRayID");
        if worker {
            let _ = write!(w.out, "\"{:016x}\",", mix(ray));
        } else {
            w.out.extend_from_slice(b"\"00\",");
        }
        w.str("PayPerCrawlStatus", "");
        let _ = write!(w.out, "\"RayID\":\"{ray:016x}\",");
        let _ = write!(
            w.out,
            "\"RequestHeaders\":{{\"accept\":\"{}\",\"accept-encoding\":\"gzip, deflate, br, zstd\",\"accept-language\":\"{}\",\"x-request-id\":\"{:016x}\"}},",
            if content_type == "text/html" {
                "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
            } else {
                "*/*"
            },
            LANGUAGES[(client_hash >> 25) as usize % LANGUAGES.len()],
            mix(ray ^ 7)
        );
        let _ = write!(
            w.out,
            "\"ResponseHeaders\":{{\"cache-control\":\"{}\",\"content-type\":\"{}\",\"etag\":\"W/\\\"{:08x}\\\"\",\"server\":\"cloudflare\"}},",
            if cache_status == "dynamic" {
                "no-store"
            } else {
                "public, max-age=3600"
            },
            content_type,
            mix(ray ^ 3) as u32
        );
        w.str("SecurityAction", if blocked { "block" } else { "" });
        w.raw(
            "SecurityActions",
            if blocked { r#"["block"]"# } else { "[]" },
        );
        w.str(
            "SecurityRuleDescription",
            if blocked {
                "Block requests from scanners"
            } else {
                ""
            },
        );
        if blocked {
            let _ = write!(
                w.out,
                "\"SecurityRuleID\":\"{:032x}\",",
                u128::from(mix(client_hash)) << 64 | u128::from(client_hash)
            );
        } else {
            w.str("SecurityRuleID", "");
        }
        w.raw("SecurityRuleIDs", "[]");
        w.raw(
            "SecuritySources",
            if blocked {
                r#"["firewallManaged"]"#
            } else {
                "[]"
            },
        );
        w.int("SmartRouteColoID", 0);
        w.int(
            "UpperTierColoID",
            if cache_status == "miss" {
                colo_id + 1
            } else {
                0
            },
        );
        w.str(
            "VerifiedBotCategory",
            if agent.contains("bot") {
                "Search Engine Crawler"
            } else {
                ""
            },
        );
        let attack = if blocked {
            core.range(1, 20)
        } else {
            core.range(60, 100)
        };
        w.int("WAFAttackScore", attack);
        w.str("WAFFlags", "0");
        w.str("WAFMatchedVar", "");
        w.int("WAFRCEAttackScore", attack.min(99));
        w.int("WAFSQLiAttackScore", (attack + 3).min(99));
        w.int("WAFXSSAttackScore", (attack + 7).min(99));
        w.raw(
            "WebAssetsLabelsManaged",
            if path.starts_with("/login") {
                r#"["cf-log-in"]"#
            } else {
                "[]"
            },
        );
        w.str("WebAssetsOperationID", "");
        w.int(
            "WorkerCPUTime",
            if worker { core.range(200, 20_000) } else { 0 },
        );
        w.str("WorkerScriptName", if worker { "edge-router" } else { "" });
        w.str("WorkerStatus", if worker { "ok" } else { "unknown" });
        w.bool("WorkerSubrequest", worker);
        w.int(
            "WorkerSubrequestCount",
            if worker { core.range(1, 5) } else { 0 },
        );
        w.int(
            "WorkerWallTimeUs",
            if worker {
                core.range(1_000, 200_000)
            } else {
                0
            },
        );
        w.str("ZoneName", zone);
        close(w.out);
        meta
    }
}

iterator_impl!(HttpRequests);

/// Synthetic firewall_events records (rule matches, with RayIDs like http_requests).
#[derive(Debug, Clone)]
pub struct FirewallEvents {
    core: Core,
}

impl FirewallEvents {
    pub fn new(seed: u64) -> FirewallEvents {
        FirewallEvents {
            core: Core::new(seed),
        }
    }

    clock_methods!();

    pub fn write_record(&mut self, out: &mut Vec<u8>) -> RecordMeta {
        let meta = self.core.tick();
        let w = &mut Fields {
            out,
            compact: false,
        };
        let core = &mut self.core;
        let client = core.skewed(CLIENTS);
        let client_hash = mix(client ^ core.key);
        let (country, _, _) = COUNTRIES[(client_hash % COUNTRIES.len() as u64) as usize];
        let action = core.pick(&["block", "managed_challenge", "log", "skip", "js_challenge"]);
        let source = core.pick(&[
            "firewallManaged",
            "firewallCustom",
            "ratelimit",
            "bic",
            "securitylevel",
        ]);
        w.out.push(b'{');
        w.str("Action", action);
        w.int("ClientASN", 64_496 + (client_hash % 1_000) as i64);
        w.str("ClientASNDescription", "EXAMPLE-NET");
        w.str("ClientCountry", country);
        key(w.out, "ClientIP");
        w.out.push(b'"');
        write_client_ip(w.out, client, core.key);
        w.out.extend_from_slice(b"\",");
        w.str(
            "ClientIPClass",
            IP_CLASSES[(client_hash >> 21) as usize % IP_CLASSES.len()],
        );
        w.str(
            "ClientRequestHost",
            &format!("{}.{}", core.pick(SUBDOMAINS), core.pick(ZONES)),
        );
        w.str("ClientRequestMethod", weighted(core, METHODS));
        w.str("ClientRequestPath", core.pick(PATHS));
        w.str("ClientRequestProtocol", "HTTP/2");
        w.str("ClientRequestQuery", "");
        w.str("ClientRequestScheme", "https");
        w.str(
            "ClientRequestUserAgent",
            USER_AGENTS[(client_hash >> 11) as usize % USER_AGENTS.len()],
        );
        w.int("Datetime", meta.event_time_ns);
        w.str("Description", "Synthetic rule match");
        w.str(
            "EdgeColoCode",
            COLOS[(client_hash >> 5) as usize % COLOS.len()].0,
        );
        w.int(
            "EdgeResponseStatus",
            if action == "block" { 403 } else { 200 },
        );
        w.str("Kind", "firewall");
        w.int("MatchIndex", 0);
        let _ = write!(
            w.out,
            "\"Metadata\":{{\"ruleset_version\":\"{}\"}},",
            core.range(1, 40)
        );
        w.int("OriginResponseStatus", 0);
        w.str("OriginatorRayID", "00");
        let _ = write!(w.out, "\"RayID\":\"{:016x}\",", meta.id);
        w.str("Ref", "");
        let _ = write!(w.out, "\"RuleID\":\"{:016x}\",", mix(client_hash % 50));
        w.str("Source", source);
        close(w.out);
        meta
    }
}

iterator_impl!(FirewallEvents);

/// Synthetic workers_trace_events records: fetch and scheduled invocations with logs.
#[derive(Debug, Clone)]
pub struct WorkersTraceEvents {
    core: Core,
}

impl WorkersTraceEvents {
    pub fn new(seed: u64) -> WorkersTraceEvents {
        WorkersTraceEvents {
            core: Core::new(seed),
        }
    }

    clock_methods!();

    pub fn write_record(&mut self, out: &mut Vec<u8>) -> RecordMeta {
        let meta = self.core.tick();
        let w = &mut Fields {
            out,
            compact: false,
        };
        let core = &mut self.core;
        let millis = meta.event_time_ns.div_euclid(1_000_000);
        let scheduled = core.chance(0.1);
        let failed = core.chance(0.03);
        w.out.push(b'{');
        w.int("CPUTimeMs", core.skewed(50) as i64);
        w.str("DispatchNamespace", "");
        w.str("Entrypoint", "");
        if scheduled {
            let _ = write!(
                w.out,
                "\"Event\":{{\"cron\":\"*/5 * * * *\",\"scheduledTime\":{millis}}},"
            );
        } else {
            let _ = write!(
                w.out,
                "\"Event\":{{\"request\":{{\"url\":\"https://{}.{}{}\",\"method\":\"{}\",\"headers\":{{\"accept\":\"*/*\"}},\"cf\":{{\"colo\":\"{}\",\"httpProtocol\":\"HTTP/2\",\"asn\":{}}}}},\"response\":{{\"status\":{}}}}},",
                core.pick(SUBDOMAINS),
                core.pick(ZONES),
                core.pick(PATHS),
                weighted(core, METHODS),
                core.pick(COLOS).0,
                64_496 + core.range(0, 1_000),
                if failed { 500 } else { 200 }
            );
        }
        w.int("EventTimestampMs", millis);
        w.str("EventType", if scheduled { "scheduled" } else { "fetch" });
        if failed {
            let _ = write!(
                w.out,
                "\"Exceptions\":[{{\"name\":\"TypeError\",\"message\":\"cannot read properties of undefined\",\"timestamp\":{}}}],",
                millis + 2
            );
        } else {
            w.raw("Exceptions", "[]");
        }
        let _ = write!(
            w.out,
            "\"Logs\":[{{\"level\":\"log\",\"message\":[\"handled\",{{\"ms\":{}}}],\"timestamp\":{}}}],",
            core.skewed(200),
            millis + 1
        );
        w.str("Outcome", if failed { "exception" } else { "ok" });
        w.str(
            "ScriptName",
            if scheduled {
                "nightly-report"
            } else {
                "edge-router"
            },
        );
        w.raw("ScriptTags", r#"["synthetic"]"#);
        let _ = write!(
            w.out,
            "\"ScriptVersion\":{{\"id\":\"{:016x}\"}},",
            mix(core.key) >> 1
        );
        w.int("WallTimeMs", core.skewed(500) as i64 + 1);
        close(w.out);
        meta
    }
}

iterator_impl!(WorkersTraceEvents);

/// Synthetic dns_logs records.
#[derive(Debug, Clone)]
pub struct DnsLogs {
    core: Core,
}

impl DnsLogs {
    pub fn new(seed: u64) -> DnsLogs {
        DnsLogs {
            core: Core::new(seed),
        }
    }

    clock_methods!();

    pub fn write_record(&mut self, out: &mut Vec<u8>) -> RecordMeta {
        let meta = self.core.tick();
        let w = &mut Fields {
            out,
            compact: false,
        };
        let core = &mut self.core;
        let client = core.skewed(CLIENTS);
        w.out.push(b'{');
        w.str("ColoCode", core.pick(COLOS).0);
        w.str("EDNSSubnet", "");
        w.int("EDNSSubnetLength", 0);
        let _ = write!(
            w.out,
            "\"QueryName\":\"{}.{}\",",
            core.pick(SUBDOMAINS),
            core.pick(ZONES)
        );
        w.int("QueryType", core.pick(&[1, 1, 1, 28, 28, 5, 15, 16, 65]));
        w.bool("ResponseCached", core.chance(0.7));
        w.int("ResponseCode", if core.chance(0.05) { 3 } else { 0 });
        key(w.out, "SourceIP");
        w.out.push(b'"');
        write_client_ip(w.out, client, core.key);
        w.out.extend_from_slice(b"\",");
        w.int("Timestamp", meta.event_time_ns);
        close(w.out);
        meta
    }
}

iterator_impl!(DnsLogs);

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::{BatchDecoder, DatasetSchema, DecoderOptions, UnknownFields};

    fn decode_all(dataset: &str, records: &[Vec<u8>]) -> arrow_array::RecordBatch {
        let schema = DatasetSchema::builtin(dataset).unwrap();
        let options = DecoderOptions {
            unknown_fields: UnknownFields::Extra,
            ..DecoderOptions::default()
        };
        let mut decoder = BatchDecoder::new(&schema, options).unwrap();
        let slices: Vec<&[u8]> = records.iter().map(Vec::as_slice).collect();
        let decoded = decoder.decode(&slices);
        assert!(
            decoded.rejects.is_empty(),
            "{dataset}: {:?}",
            &decoded.rejects[..1]
        );
        let extra = decoded.batch.column_by_name(crate::EXTRA_COLUMN).unwrap();
        assert_eq!(
            extra.null_count(),
            records.len(),
            "{dataset}: generator wrote unknown keys"
        );
        decoded.batch
    }

    #[test]
    fn http_records_decode_cleanly_and_have_realistic_size() {
        let records: Vec<Vec<u8>> = HttpRequests::new(7).take(3_000).collect();
        let batch = decode_all("http_requests", &records);
        assert_eq!(batch.num_rows(), 3_000);
        let average = records.iter().map(Vec::len).sum::<usize>() / records.len();
        assert!(
            (3_000..=3_800).contains(&average),
            "average full record is {average} bytes"
        );
        let first: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(&records[0]).unwrap();
        assert_eq!(first.len(), 108);

        let compact: Vec<Vec<u8>> = HttpRequests::new(7).compact(true).take(3_000).collect();
        let batch = decode_all("http_requests", &compact);
        assert_eq!(batch.num_rows(), 3_000);
        let average = compact.iter().map(Vec::len).sum::<usize>() / compact.len();
        assert!(
            (1_500..=2_000).contains(&average),
            "average compact record is {average} bytes"
        );
    }

    #[test]
    fn other_generators_decode_cleanly() {
        decode_all(
            "firewall_events",
            &FirewallEvents::new(1).take(1_000).collect::<Vec<_>>(),
        );
        decode_all(
            "workers_trace_events",
            &WorkersTraceEvents::new(2).take(1_000).collect::<Vec<_>>(),
        );
        decode_all("dns_logs", &DnsLogs::new(3).take(1_000).collect::<Vec<_>>());
    }

    #[test]
    fn same_seed_same_bytes() {
        let a: Vec<Vec<u8>> = HttpRequests::new(42).take(50).collect();
        let b: Vec<Vec<u8>> = HttpRequests::new(42).take(50).collect();
        let c: Vec<Vec<u8>> = HttpRequests::new(43).take(50).collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn ray_ids_are_unique_and_event_time_follows_the_clock() {
        let mut generator = HttpRequests::new(9)
            .with_start_time(1_000_000_000_000_000_000)
            .with_step(1_000);
        let mut ids = HashSet::new();
        let mut out = Vec::new();
        for i in 0..10_000 {
            out.clear();
            let meta = generator.write_record(&mut out);
            assert_eq!(meta.event_time_ns, 1_000_000_000_000_000_000 + i * 1_000);
            assert!(ids.insert(meta.id));
            let needle = format!("\"RayID\":\"{}\"", ray_id_hex(meta.id));
            assert!(out.windows(needle.len()).any(|w| w == needle.as_bytes()));
        }
        generator.set_event_time(5);
        assert_eq!(generator.next_record().0.event_time_ns, 5);
        assert_eq!(generator.records_written(), 10_001);
    }

    #[test]
    fn clients_repeat_with_a_skew() {
        let records: Vec<Vec<u8>> = HttpRequests::new(11).take(20_000).collect();
        let batch = decode_all("http_requests", &records);
        let ips = batch.column_by_name("ClientIP").unwrap();
        let ips = arrow_array::cast::AsArray::as_string::<i32>(ips);
        let mut counts = std::collections::HashMap::new();
        for ip in ips.iter().flatten() {
            *counts.entry(ip.to_owned()).or_insert(0usize) += 1;
        }
        let top = counts.values().max().copied().unwrap();
        assert!(counts.len() > 5_000, "{} distinct clients", counts.len());
        assert!(top > 20, "most frequent client seen {top} times");
        assert!(counts.keys().any(|ip| ip.contains(':')));
        let statuses = batch.column_by_name("EdgeResponseStatus").unwrap();
        let statuses =
            arrow_array::cast::AsArray::as_primitive::<arrow_array::types::Int64Type>(statuses);
        assert!(statuses.values().iter().any(|s| *s >= 500));
    }
}
