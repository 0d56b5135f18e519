//! Fields computed from one row alone: URL path template, query-string keys, HTTP status
//! class, registrable domain. Each writes into a caller-owned buffer and answers `false`
//! (the column gets a null) when the input has nothing to derive from.

/// Path part of a path, URI (`/a?b`) or absolute URL (`https://h/a?b`), with every
/// all-digit or UUID segment replaced by `:id`: `/v1/users/42/orders/…-…` →
/// `/v1/users/:id/orders/:id`.
pub(crate) fn path_template(input: &str, out: &mut String) -> bool {
    let mut path = input.trim();
    if let Some(scheme_end) = path.find("://") {
        let after = &path[scheme_end + 3..];
        path = after.find('/').map_or("/", |slash| &after[slash..]);
    }
    let end = path.find(['?', '#']).unwrap_or(path.len());
    let path = &path[..end];
    if path.is_empty() {
        return false;
    }
    for (i, segment) in path.split('/').enumerate() {
        if i > 0 {
            out.push('/');
        }
        if is_identifier(segment) {
            out.push_str(":id");
        } else {
            out.push_str(segment);
        }
    }
    true
}

fn is_identifier(segment: &str) -> bool {
    let bytes = segment.as_bytes();
    if !bytes.is_empty() && bytes.iter().all(u8::is_ascii_digit) {
        return true;
    }
    is_uuid(bytes)
}

/// `8-4-4-4-12` hexadecimal digits, either case.
fn is_uuid(bytes: &[u8]) -> bool {
    if bytes.len() != 36 {
        return false;
    }
    bytes.iter().enumerate().all(|(i, b)| match i {
        8 | 13 | 18 | 23 => *b == b'-',
        _ => b.is_ascii_hexdigit(),
    })
}

/// Distinct keys of the query string, sorted, comma-separated: `?b=1&a=2&b=3` → `a,b`.
/// Keys are left percent-encoded, so a comma inside a key stays `%2C`.
pub(crate) fn query_keys(input: &str, out: &mut String) -> bool {
    let Some(start) = input.find('?') else {
        return false;
    };
    let query = &input[start + 1..];
    let query = &query[..query.find('#').unwrap_or(query.len())];
    let mut keys: Vec<&str> = query
        .split(['&', ';'])
        .map(|pair| pair.split_once('=').map_or(pair, |(key, _)| key))
        .filter(|key| !key.is_empty())
        .collect();
    if keys.is_empty() {
        return false;
    }
    keys.sort_unstable();
    keys.dedup();
    for (i, key) in keys.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(key);
    }
    true
}

/// `1xx` … `5xx` for codes 100–599, `None` otherwise (0 means "no response" in many
/// logs and is not a class).
pub(crate) fn status_class(code: i64) -> Option<&'static str> {
    match code {
        100..=199 => Some("1xx"),
        200..=299 => Some("2xx"),
        300..=399 => Some("3xx"),
        400..=499 => Some("4xx"),
        500..=599 => Some("5xx"),
        _ => None,
    }
}

pub(crate) fn status_class_text(code: &str) -> Option<&'static str> {
    code.trim().parse::<i64>().ok().and_then(status_class)
}

/// Registrable domain (eTLD+1) by the public suffix list shipped in the `psl` crate:
/// `www.shop.example.co.uk:443` → `example.co.uk`. IP literals, single labels and bare
/// public suffixes have none. `buf` is scratch space for the lower-cased host.
pub(crate) fn registrable_domain<'b>(host: &str, buf: &'b mut String) -> Option<&'b str> {
    let host = host.trim();
    if host.starts_with('[') {
        return None;
    }
    let host = match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        Some(_) => return None,
        None => host,
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.is_empty() || !host.contains('.') || host.parse::<std::net::Ipv4Addr>().is_ok() {
        return None;
    }
    buf.clear();
    buf.extend(host.chars().map(|c| c.to_ascii_lowercase()));
    let domain = psl::domain_str(buf)?;
    // the domain is a suffix of `buf`
    let start = buf.len() - domain.len();
    Some(&buf[start..])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(input: &str) -> Option<String> {
        let mut out = String::new();
        path_template(input, &mut out).then_some(out)
    }

    fn keys(input: &str) -> Option<String> {
        let mut out = String::new();
        query_keys(input, &mut out).then_some(out)
    }

    #[test]
    fn path_templates() {
        assert_eq!(
            template("/v1/users/42/orders").as_deref(),
            Some("/v1/users/:id/orders")
        );
        assert_eq!(
            template("/a/0f8fad5b-d9cb-469f-a165-70867728950e/b?x=1").as_deref(),
            Some("/a/:id/b")
        );
        assert_eq!(
            template("https://example.com/items/7#top").as_deref(),
            Some("/items/:id")
        );
        assert_eq!(template("https://example.com").as_deref(), Some("/"));
        assert_eq!(template("/v2/abc123/").as_deref(), Some("/v2/abc123/"));
        assert_eq!(template(""), None);
        assert_eq!(template("?q=1"), None);
    }

    #[test]
    fn query_key_lists() {
        assert_eq!(keys("/p?b=1&a=2&b=3").as_deref(), Some("a,b"));
        assert_eq!(keys("/p?flag&x=").as_deref(), Some("flag,x"));
        assert_eq!(keys("/p?"), None);
        assert_eq!(keys("/p"), None);
        assert_eq!(keys("/p?a=1#frag=2").as_deref(), Some("a"));
    }

    #[test]
    fn status_classes() {
        assert_eq!(status_class(204), Some("2xx"));
        assert_eq!(status_class(599), Some("5xx"));
        assert_eq!(status_class(0), None);
        assert_eq!(status_class(600), None);
        assert_eq!(status_class_text(" 404"), Some("4xx"));
        assert_eq!(status_class_text("abc"), None);
    }

    #[test]
    fn registrable_domains() {
        let mut buf = String::new();
        let mut domain = |host: &str| registrable_domain(host, &mut buf).map(str::to_owned);
        assert_eq!(domain("www.Example.COM").as_deref(), Some("example.com"));
        assert_eq!(
            domain("a.b.example.co.uk:8443").as_deref(),
            Some("example.co.uk")
        );
        assert_eq!(domain("foo.github.io").as_deref(), Some("foo.github.io"));
        assert_eq!(domain("co.uk"), None);
        assert_eq!(domain("localhost"), None);
        assert_eq!(domain("192.0.2.1"), None);
        assert_eq!(domain("[2001:db8::1]:443"), None);
        assert_eq!(domain("example.com.").as_deref(), Some("example.com"));
    }
}
