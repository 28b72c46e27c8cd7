//! The HTTP request head as the pipeline reads it: method, path, content type and
//! encoding, length, the MCP routing headers, and every header as received.

use crate::protocol::revision::RoutingHeaders;

/// The request head as the gate sees it: the few fields it decides on, parsed once, and
/// every header as received (moved in from the host, not copied).
#[derive(Debug, Clone, Default)]
pub struct RequestHead {
    pub method: String,
    pub path: String,
    pub content_type: Option<String>,
    pub content_encoding: Option<String>,
    pub content_length: Option<u64>,
    pub routing: RoutingHeaders,
    /// The request has no body (headers ended the stream).
    pub end_of_stream: bool,
    /// All headers, names in lower case (pseudo-headers included); values are bytes because
    /// HTTP allows non-UTF-8 octets in them.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The route's upstream cluster, set by the glue only when learned tools or a rate-limit
    /// key need it.
    pub upstream: Option<String>,
}

impl RequestHead {
    pub fn new(headers: Vec<(String, Vec<u8>)>, end_of_stream: bool) -> RequestHead {
        let mut head = RequestHead {
            end_of_stream,
            ..RequestHead::default()
        };
        for (name, value) in &headers {
            let text = || String::from_utf8_lossy(value).into_owned();
            match name.as_str() {
                ":method" => head.method = text(),
                ":path" => head.path = text(),
                "content-type" => head.content_type = Some(text()),
                "content-encoding" => head.content_encoding = Some(text()),
                "content-length" => head.content_length = text().trim().parse().ok(),
                _ => head.routing.observe(name, value),
            }
        }
        head.headers = headers;
        head
    }

    /// Every value of header `name` (lower case), in order.
    pub fn values<'h>(&'h self, name: &'h str) -> impl Iterator<Item = &'h [u8]> + 'h {
        self.headers
            .iter()
            .filter(move |(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    }

    /// The request path without query string or fragment.
    pub fn path_only(&self) -> &str {
        self.path.split(['?', '#']).next().unwrap_or_default()
    }
}

#[cfg(test)]
impl RequestHead {
    /// A head from literal headers, for tests.
    pub(crate) fn for_test(
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        end_of_stream: bool,
    ) -> RequestHead {
        let pairs = [(":method", method), (":path", path)]
            .iter()
            .chain(headers)
            .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
            .collect();
        RequestHead::new(pairs, end_of_stream)
    }
}

/// Accepts `application/json` with no parameter but an optional UTF-8 charset.
pub(crate) fn check_content_type(value: Option<&str>) -> Result<(), String> {
    let Some(value) = value else {
        return Err("a POST to an MCP endpoint needs Content-Type: application/json".into());
    };
    let mut parts = value.split(';');
    let media = parts.next().unwrap_or_default().trim();
    if !media.eq_ignore_ascii_case("application/json") {
        return Err(format!("Content-Type {value:?} is not application/json"));
    }
    for param in parts {
        let (k, v) = param.split_once('=').unwrap_or((param, ""));
        let v = v.trim().trim_matches('"');
        if !(k.trim().eq_ignore_ascii_case("charset") && v.eq_ignore_ascii_case("utf-8")) {
            return Err(format!(
                "Content-Type parameter {:?} is not supported",
                param.trim()
            ));
        }
    }
    Ok(())
}
