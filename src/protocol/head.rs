//! The HTTP request head as the pipeline reads it: method, path, content type and
//! encoding, length, the MCP routing headers, and every header as received.

use std::borrow::Cow;

use crate::protocol::headers::HeaderMap;
use crate::protocol::path::query_start;
use crate::protocol::revision::RoutingHeaders;

/// The request head as the gate sees it: the few fields it decides on, found once, and
/// every header as received (moved in from the host, not copied).
#[derive(Debug, Clone, Default)]
pub struct RequestHead {
    /// Where in `headers` the fields the gate reads are (the last copy of each): read in
    /// place, so a request's head costs no allocation of its own.
    method: Option<usize>,
    path: Option<usize>,
    content_type: Option<usize>,
    content_encoding: Option<usize>,
    pub content_length: Option<u64>,
    pub routing: RoutingHeaders,
    /// The request has no body (headers ended the stream).
    pub end_of_stream: bool,
    /// All headers, names in lower case (pseudo-headers included).
    pub headers: HeaderMap,
    /// The route's upstream cluster, set by the glue only when learned tools or a rate-limit
    /// key need it.
    pub upstream: Option<String>,
}

impl RequestHead {
    pub fn new(headers: HeaderMap, end_of_stream: bool) -> RequestHead {
        let mut head = RequestHead {
            end_of_stream,
            ..RequestHead::default()
        };
        for (i, (name, value)) in headers.iter().enumerate() {
            match name {
                b":method" => head.method = Some(i),
                b":path" => head.path = Some(i),
                b"content-type" => head.content_type = Some(i),
                b"content-encoding" => head.content_encoding = Some(i),
                b"content-length" => {
                    head.content_length = std::str::from_utf8(value)
                        .ok()
                        .and_then(|v| v.trim().parse().ok())
                }
                _ => head.routing.observe(name, value),
            }
        }
        head.headers = headers;
        head
    }

    /// The value of the header at `at`, as text (invalid UTF-8 replaced).
    fn text(&self, at: Option<usize>) -> Option<Cow<'_, str>> {
        Some(String::from_utf8_lossy(self.headers.value(at?)?))
    }

    /// `:method`.
    pub fn method(&self) -> Cow<'_, str> {
        self.text(self.method).unwrap_or_default()
    }

    /// `:path`, query string included.
    pub fn path(&self) -> Cow<'_, str> {
        self.text(self.path).unwrap_or_default()
    }

    pub fn content_type(&self) -> Option<Cow<'_, str>> {
        self.text(self.content_type)
    }

    pub fn content_encoding(&self) -> Option<Cow<'_, str>> {
        self.text(self.content_encoding)
    }

    /// Every value of header `name` (lower case), in order.
    pub fn values<'h>(&'h self, name: &'h str) -> impl Iterator<Item = &'h [u8]> + 'h {
        self.headers.values(name)
    }

    /// The request path without query string or fragment.
    pub fn path_only(&self) -> Cow<'_, str> {
        match self.path() {
            Cow::Borrowed(path) => Cow::Borrowed(path.get(..query_start(path)).unwrap_or_default()),
            Cow::Owned(mut path) => {
                path.truncate(query_start(&path));
                Cow::Owned(path)
            }
        }
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
        let pairs: Vec<(&str, &str)> = [(":method", method), (":path", path)]
            .iter()
            .chain(headers)
            .copied()
            .collect();
        RequestHead::new(HeaderMap::from_pairs(&pairs), end_of_stream)
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
