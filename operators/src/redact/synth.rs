//! Seeded generator of `http_requests`-like batches, with or without planted personal data,
//! shared by the redact tests and `benches/redact.rs`. Not part of the operator.

use std::sync::Arc;

use arrow_array::builder::{MapBuilder, StringBuilder};
use arrow_array::{Array, ArrayRef, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};

/// SplitMix64: small, seeded, good enough for test data.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
    pub fn chance(&mut self, p: f64) -> bool {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
    pub fn chars(&mut self, alphabet: &[u8], n: usize) -> String {
        (0..n).map(|_| *self.pick(alphabet) as char).collect()
    }
    pub fn hex(&mut self, n: usize) -> String {
        self.chars(b"0123456789abcdef", n)
    }
}

const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
const WORDS: &[&str] = &[
    "alpha", "river", "garden", "winter", "orange", "rocket", "summit", "harbor", "pixel",
    "canyon", "meadow", "signal", "forest", "copper", "violet", "thunder",
];
const USER_AGENTS: &[&str] = &[
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:109.0) Gecko/20100101 Firefox/115.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1.2 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/119.0.6045.163 Mobile Safari/537.36",
    "curl/8.4.0",
    "python-requests/2.31.0",
    "Googlebot/2.1 (+http://www.google.com/bot.html)",
    "okhttp/4.12.0",
];
const HOSTS: &[&str] = &[
    "www.example.com",
    "api.example.com",
    "cdn.shop-example.net",
    "blog.example.org",
    "static.example.io",
];
const COLOS: &[&str] = &["SJC", "FRA", "LHR", "NRT", "AMS", "IAD", "SIN", "GRU"];

/// A string column's name, in output order.
pub const STRING_COLUMNS: &[&str] = &[
    "ClientRequestURI",
    "ClientRequestUserAgent",
    "ClientRequestHost",
    "ClientRequestReferer",
    "ClientRequestMethod",
    "ClientRequestProtocol",
    "ClientRequestScheme",
    "ClientIP",
    "ClientCountry",
    "ClientDeviceType",
    "ClientSSLProtocol",
    "ClientSSLCipher",
    "EdgeColoCode",
    "EdgeResponseContentType",
    "CacheCacheStatus",
    "RayID",
    "ZoneName",
    "OriginIP",
    "SecurityAction",
    "WorkerScriptName",
    "EdgeStartTimestamp",
];

fn uri(rng: &mut Rng) -> String {
    let word = *rng.pick(WORDS);
    let other = *rng.pick(WORDS);
    match rng.below(14) {
        0 => "/".to_owned(),
        1 => "/index.html".to_owned(),
        2 => format!("/api/v1/users/{}", rng.below(10_000_000)),
        3 => format!(
            "/api/v2/items/{}?page={}&limit=50",
            rng.below(100_000),
            rng.below(40)
        ),
        4 => format!("/static/js/app.{}.js", rng.hex(20)),
        5 => format!("/images/{word}-{}.jpg", rng.below(500)),
        6 => format!("/search?q={word}+{other}&lang=en-US"),
        7 => format!("/blog/2024/{:02}/{word}-{other}-guide", 1 + rng.below(12)),
        8 => {
            format!("/products/{word}-{other}?utm_source=google&utm_medium=cpc&utm_campaign={word}")
        }
        9 => format!("/cdn-cgi/rum?ray={}", rng.hex(16)),
        10 => format!("/wp-content/uploads/2023/11/{word}@2x.png"),
        11 => format!(
            "/v1/track?event=pageview&ts=17{}",
            rng.below(100_000_000_000)
        ),
        12 => format!(
            "/download/{word}-v{}.{}.{}.{}.tar.gz",
            rng.below(5),
            rng.below(20),
            rng.below(10),
            rng.below(300)
        ),
        _ => format!(
            "/graphql?operationName={word}&variables=%7B%22id%22%3A%22{}%22%7D",
            rng.hex(24)
        ),
    }
}

fn ipv4(rng: &mut Rng) -> String {
    format!(
        "{}.{}.{}.{}",
        1 + rng.below(223),
        rng.below(256),
        rng.below(256),
        1 + rng.below(254)
    )
}

/// A Luhn-valid 16-digit Visa-like number.
pub fn card(rng: &mut Rng) -> String {
    let mut digits: Vec<u8> = vec![4];
    for _ in 0..14 {
        digits.push(rng.below(10) as u8);
    }
    for check in 0..10u8 {
        let mut all = digits.clone();
        all.push(check);
        if super::detectors::luhn(&all) {
            digits = all;
            break;
        }
    }
    let plain: String = digits.iter().map(|d| (b'0' + d) as char).collect();
    match rng.below(3) {
        0 => plain,
        1 => plain
            .as_bytes()
            .chunks(4)
            .map(|c| std::str::from_utf8(c).unwrap_or_default())
            .collect::<Vec<_>>()
            .join(" "),
        _ => plain
            .as_bytes()
            .chunks(4)
            .map(|c| std::str::from_utf8(c).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("-"),
    }
}

pub fn email(rng: &mut Rng) -> String {
    format!(
        "{}.{}{}@{}.example.{}",
        rng.pick(WORDS),
        rng.pick(WORDS),
        rng.below(100),
        rng.pick(WORDS),
        rng.pick(&["com", "org", "de", "co.uk"])
    )
}

/// Builds `rows` rows; a fraction `pii` of them carries one planted secret.
pub fn http_requests(rows: usize, pii: f64, seed: u64) -> RecordBatch {
    let mut rng = Rng::new(seed);
    let mut columns: Vec<Vec<String>> = vec![Vec::with_capacity(rows); STRING_COLUMNS.len()];
    let mut headers = MapBuilder::new(None, StringBuilder::new(), StringBuilder::new());
    let mut cookies = MapBuilder::new(None, StringBuilder::new(), StringBuilder::new());
    let mut status = Vec::with_capacity(rows);
    let mut bytes = Vec::with_capacity(rows);
    for _ in 0..rows {
        let host = *rng.pick(HOSTS);
        let mut request_uri = uri(&mut rng);
        let mut referer = match rng.below(3) {
            0 => String::new(),
            1 => "https://www.google.com/".to_owned(),
            _ => format!("https://{host}{}", uri(&mut rng)),
        };
        let mut extra_header: Option<(String, String)> = None;
        let mut extra_cookie: Option<(String, String)> = None;
        if rng.chance(pii) {
            match rng.below(7) {
                0 => request_uri.push_str(&format!("?email={}", email(&mut rng))),
                1 => request_uri.push_str(&format!("?cc={}", card(&mut rng).replace(' ', "+"))),
                2 => request_uri.push_str(&format!("?access_token={}", rng.hex(32))),
                3 => referer = format!("https://{host}/reset?user={}", email(&mut rng)),
                4 => {
                    extra_header = Some((
                        "authorization".into(),
                        format!("Bearer {}", rng.chars(ALNUM, 40)),
                    ))
                }
                5 => extra_cookie = Some(("session".into(), rng.hex(32))),
                _ => request_uri.push_str(&format!(
                    "?tel=%2B1{}555{:04}",
                    200 + rng.below(700),
                    rng.below(10_000)
                )),
            }
        }
        let values: [String; 21] = [
            request_uri,
            (*rng.pick(USER_AGENTS)).to_owned(),
            host.to_owned(),
            referer,
            (*rng.pick(&["GET", "GET", "GET", "POST", "HEAD", "PUT"])).to_owned(),
            (*rng.pick(&["HTTP/1.1", "HTTP/2", "HTTP/3"])).to_owned(),
            "https".to_owned(),
            if rng.chance(0.1) {
                format!("2001:db8:{:x}::{:x}", rng.below(65536), rng.below(65536))
            } else {
                ipv4(&mut rng)
            },
            (*rng.pick(&["us", "de", "gb", "jp", "br", "in", "fr"])).to_owned(),
            (*rng.pick(&["desktop", "mobile", "tablet"])).to_owned(),
            "TLSv1.3".to_owned(),
            (*rng.pick(&[
                "AEAD-AES128-GCM-SHA256",
                "AEAD-CHACHA20-POLY1305-SHA256",
                "ECDHE-RSA-AES128-GCM-SHA256",
            ]))
            .to_owned(),
            (*rng.pick(COLOS)).to_owned(),
            (*rng.pick(&[
                "text/html; charset=utf-8",
                "application/json",
                "image/webp",
                "application/javascript",
            ]))
            .to_owned(),
            (*rng.pick(&["hit", "miss", "dynamic", "expired", "revalidated"])).to_owned(),
            rng.hex(16),
            "example.com".to_owned(),
            format!("198.51.100.{}", rng.below(256)),
            (*rng.pick(&["unknown", "allow", "managed_challenge"])).to_owned(),
            (*rng.pick(&["", "router-worker", "auth-edge"])).to_owned(),
            format!(
                "2024-06-{:02}T{:02}:{:02}:{:02}.{:03}Z",
                1 + rng.below(28),
                rng.below(24),
                rng.below(60),
                rng.below(60),
                rng.below(1000)
            ),
        ];
        for (column, value) in columns.iter_mut().zip(values) {
            column.push(value);
        }
        let mut header_entries = vec![
            (
                "accept".to_owned(),
                "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8".to_owned(),
            ),
            ("accept-language".to_owned(), "en-US,en;q=0.9".to_owned()),
            ("accept-encoding".to_owned(), "gzip, deflate, br".to_owned()),
            ("x-forwarded-proto".to_owned(), "https".to_owned()),
            (
                "x-request-id".to_owned(),
                format!(
                    "{}-{}-4{}-a{}-{}",
                    rng.hex(8),
                    rng.hex(4),
                    rng.hex(3),
                    rng.hex(3),
                    rng.hex(12)
                ),
            ),
        ];
        header_entries.extend(extra_header);
        for (k, v) in header_entries {
            headers.keys().append_value(k);
            headers.values().append_value(v);
        }
        let _ = headers.append(true);
        let mut cookie_entries = vec![
            (
                "__cf_bm".to_owned(),
                format!(
                    "{}-17{}-1.0.1.1-{}",
                    rng.chars(ALNUM, 22),
                    rng.below(100_000_000),
                    rng.chars(ALNUM, 30)
                ),
            ),
            (
                "theme".to_owned(),
                (*rng.pick(&["dark", "light"])).to_owned(),
            ),
            (
                "_ga".to_owned(),
                format!(
                    "GA1.1.{}.17{}",
                    100_000_000 + rng.below(900_000_000),
                    rng.below(100_000_000)
                ),
            ),
        ];
        cookie_entries.extend(extra_cookie);
        for (k, v) in cookie_entries {
            cookies.keys().append_value(k);
            cookies.values().append_value(v);
        }
        let _ = cookies.append(true);
        status.push(*rng.pick(&[200i64, 200, 200, 304, 404, 500]));
        bytes.push(rng.below(200_000) as i64);
    }
    let headers = headers.finish();
    let cookies = cookies.finish();
    let mut fields: Vec<Field> = STRING_COLUMNS
        .iter()
        .map(|name| Field::new(*name, DataType::Utf8, true))
        .collect();
    fields.push(Field::new(
        "RequestHeaders",
        headers.data_type().clone(),
        true,
    ));
    fields.push(Field::new("Cookies", cookies.data_type().clone(), true));
    fields.push(Field::new("EdgeResponseStatus", DataType::Int64, true));
    fields.push(Field::new("EdgeResponseBytes", DataType::Int64, true));
    let mut arrays: Vec<ArrayRef> = columns
        .into_iter()
        .map(|c| Arc::new(StringArray::from(c)) as ArrayRef)
        .collect();
    arrays.push(Arc::new(headers));
    arrays.push(Arc::new(cookies));
    arrays.push(Arc::new(Int64Array::from(status)));
    arrays.push(Arc::new(Int64Array::from(bytes)));
    RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays).expect("consistent columns")
}
