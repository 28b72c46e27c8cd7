//! Protocol revisions and the agreement between routing headers and the body.
//!
//! In the stateless 2026-07-28 revision, clients mirror the method and the tool, prompt or
//! resource name into `Mcp-Method` and `Mcp-Name` headers so intermediaries can route
//! without parsing. An intermediary that routes on a header while the server acts on the
//! body is an attack surface, so every disagreement is refused with `HeaderMismatch`
//! (-32020): in 2026-07-28 requests the headers are required; in older revisions they are
//! optional but, when present, must still agree.

use base64::Engine;

use crate::protocol::jsonrpc::{Body, Message, Target};
use crate::protocol::revisions::{mirrored_param, requires_routing_headers, Param, Revision};

/// One routing header as received: absent, once, or repeated (always ambiguous).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Header {
    #[default]
    Absent,
    One(String),
    /// Sent more than once: which copy counts is up to each reader.
    Repeated,
    /// Bytes that are not UTF-8 can never equal a JSON string.
    NotUtf8,
}

impl Header {
    fn add(&mut self, value: &[u8]) {
        *self = match (&self, std::str::from_utf8(value)) {
            (Header::Absent, Ok(v)) => Header::One(v.to_owned()),
            (Header::Absent, Err(_)) => Header::NotUtf8,
            _ => Header::Repeated,
        };
    }
}

/// The MCP routing headers of one request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoutingHeaders {
    pub method: Header,
    pub name: Header,
    pub protocol_version: Header,
}

impl RoutingHeaders {
    /// Records `name: value` if it is a routing header (`name` in lower case, as HTTP/2 and
    /// Envoy deliver it).
    pub fn observe(&mut self, name: &[u8], value: &[u8]) {
        match name {
            b"mcp-method" => self.method.add(value),
            b"mcp-name" => self.name.add(value),
            b"mcp-protocol-version" => self.protocol_version.add(value),
            _ => {}
        }
    }

    /// The revision `MCP-Protocol-Version` names, if it was sent once.
    pub fn revision(&self) -> Option<&str> {
        match &self.protocol_version {
            Header::One(v) => Some(v),
            _ => None,
        }
    }
}

/// Whether requests of `revision` must carry the routing headers.
fn stateless(revision: &str) -> bool {
    Revision::parse(revision).is_some_and(requires_routing_headers)
}

/// The revision a message declares in its body (`_meta`, or `initialize` params).
#[cfg(test)]
fn body_revision<'m>(message: &'m Message<'_>) -> Option<&'m str> {
    message
        .meta_protocol_version
        .as_deref()
        .or(message.initialize_protocol_version.as_deref())
}

/// Checks that the routing headers agree with `body`; the error is the reason to report.
pub fn check_headers(body: &Body<'_>, headers: &RoutingHeaders) -> Result<(), String> {
    for (name, h) in [
        ("Mcp-Method", &headers.method),
        ("Mcp-Name", &headers.name),
        ("MCP-Protocol-Version", &headers.protocol_version),
    ] {
        match h {
            Header::Repeated => return Err(format!("{name} header appears more than once")),
            Header::NotUtf8 => return Err(format!("{name} header is not valid UTF-8")),
            _ => {}
        }
    }
    match body {
        Body::Single(message) => check_message(message, headers),
        Body::Batch(members) => {
            if headers.method != Header::Absent || headers.name != Header::Absent {
                return Err("Mcp-Method and Mcp-Name cannot describe a batch".into());
            }
            members.iter().enumerate().try_for_each(|(i, m)| {
                check_version(m, headers).map_err(|e| format!("batch[{i}]: {e}"))
            })
        }
    }
}

fn check_version(message: &Message<'_>, headers: &RoutingHeaders) -> Result<(), String> {
    match (&message.meta_protocol_version, &headers.protocol_version) {
        (Some(meta), Header::One(h)) if meta != h => Err(format!(
            "MCP-Protocol-Version header {h:?} does not match the body's protocol version {meta:?}"
        )),
        (Some(meta), Header::Absent) if stateless(meta) => Err(format!(
            "MCP-Protocol-Version header is required for protocol version {meta:?}"
        )),
        _ => Ok(()),
    }
}

fn check_message(message: &Message<'_>, headers: &RoutingHeaders) -> Result<(), String> {
    check_version(message, headers)?;
    let revision = message
        .meta_protocol_version
        .as_deref()
        .or(headers.revision());
    let stateless = revision.is_some_and(stateless);

    match (&headers.method, message.method.as_deref()) {
        (Header::One(h), Some(m)) if h == m => {}
        (Header::One(h), Some(m)) => {
            return Err(format!(
                "Mcp-Method header {h:?} does not match the body's method {m:?}"
            ))
        }
        (Header::One(h), None) => {
            return Err(format!(
                "Mcp-Method header {h:?} was sent with a JSON-RPC response"
            ))
        }
        (_, Some(m)) if stateless => {
            return Err(format!("Mcp-Method header is required (body method {m:?})"))
        }
        _ => {}
    }

    // The name, URI or task id the revision table says `Mcp-Name` mirrors.
    let named = match message.method.as_deref().and_then(mirrored_param) {
        Some(Param::TaskId) => message.task_id.as_deref().map(|v| ("taskId", v)),
        Some(_) => message
            .target
            .as_ref()
            .map(|t| (target_field(t), t.value())),
        None => None,
    };
    match (&headers.name, named) {
        (Header::One(h), Some((field, value))) => {
            let decoded = decode_header_value(h)
                .ok_or_else(|| "Mcp-Name header carries a malformed base64 value".to_owned())?;
            if decoded != value {
                return Err(format!(
                    "Mcp-Name header {decoded:?} does not match the body's {field} {value:?}"
                ));
            }
        }
        (Header::One(_), None) => {
            return Err("Mcp-Name header was sent for a method that has no name".into())
        }
        (_, Some((field, value))) if stateless => {
            return Err(format!(
                "Mcp-Name header is required (body {field} {value:?})"
            ))
        }
        _ => {}
    }
    Ok(())
}

fn target_field(target: &Target<'_>) -> &'static str {
    match target {
        Target::Resource(_) => "uri",
        _ => "name",
    }
}

/// Decodes a header value that may use the `=?base64?…?=` form for non-ASCII text.
/// Only canonical base64 of valid UTF-8 is accepted, so one name has one encoding.
pub fn decode_header_value(value: &str) -> Option<String> {
    let Some(payload) = value
        .strip_prefix("=?base64?")
        .and_then(|v| v.strip_suffix("?="))
    else {
        return Some(value.to_owned());
    };
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(payload)
        .ok()?;
    String::from_utf8(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::jsonrpc::parse_body;

    fn headers(pairs: &[(&str, &str)]) -> RoutingHeaders {
        let mut h = RoutingHeaders::default();
        for (k, v) in pairs {
            h.observe(k.as_bytes(), v.as_bytes());
        }
        h
    }

    const STATELESS_CALL: &str = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#;
    const STATELESS_TASK: &str = r#"{"jsonrpc":"2.0","id":1,"method":"tasks/get","params":{"taskId":"t-1","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#;
    const SESSION_CALL: &str =
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{}}}"#;

    #[test]
    fn header_agreement_table() {
        let full = [
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/call"),
            ("mcp-name", "echo"),
        ];
        type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], Option<&'a str>);
        let cases: &[Case] = &[
            (STATELESS_CALL, &full, None),
            (
                STATELESS_CALL,
                &[("mcp-protocol-version", "2026-07-28"), ("mcp-method", "tools/call"), ("mcp-name", "=?base64?ZWNobw==?=")],
                None,
            ),
            (
                STATELESS_CALL,
                &[("mcp-protocol-version", "2026-07-28"), ("mcp-method", "tools/call"), ("mcp-name", "delete")],
                Some("Mcp-Name header \"delete\" does not match the body's name \"echo\""),
            ),
            (
                STATELESS_CALL,
                &[("mcp-protocol-version", "2026-07-28"), ("mcp-method", "tools/list"), ("mcp-name", "echo")],
                Some("Mcp-Method header \"tools/list\" does not match the body's method \"tools/call\""),
            ),
            (
                STATELESS_CALL,
                &[("mcp-protocol-version", "2026-07-28"), ("mcp-name", "echo")],
                Some("Mcp-Method header is required (body method \"tools/call\")"),
            ),
            (
                STATELESS_CALL,
                &[("mcp-protocol-version", "2026-07-28"), ("mcp-method", "tools/call")],
                Some("Mcp-Name header is required (body name \"echo\")"),
            ),
            (
                STATELESS_CALL,
                &[("mcp-method", "tools/call"), ("mcp-name", "echo")],
                Some("MCP-Protocol-Version header is required for protocol version \"2026-07-28\""),
            ),
            (
                STATELESS_CALL,
                &[("mcp-protocol-version", "2025-11-25"), ("mcp-method", "tools/call"), ("mcp-name", "echo")],
                Some("MCP-Protocol-Version header \"2025-11-25\" does not match the body's protocol version \"2026-07-28\""),
            ),
            (
                STATELESS_CALL,
                &[("mcp-protocol-version", "2026-07-28"), ("mcp-method", "tools/call"), ("mcp-method", "tools/call"), ("mcp-name", "echo")],
                Some("Mcp-Method header appears more than once"),
            ),
            (
                STATELESS_CALL,
                &[("mcp-protocol-version", "2026-07-28"), ("mcp-method", "tools/call"), ("mcp-name", "=?base64?ZWNobw?=")],
                Some("Mcp-Name header carries a malformed base64 value"),
            ),
            // Session-based revisions: headers optional, but checked when present.
            (SESSION_CALL, &[("mcp-protocol-version", "2025-11-25")], None),
            (SESSION_CALL, &[], None),
            (
                SESSION_CALL,
                &[("mcp-name", "other")],
                Some("Mcp-Name header \"other\" does not match the body's name \"echo\""),
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#,
                &[("mcp-name", "echo")],
                Some("Mcp-Name header was sent for a method that has no name"),
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"result":{}}"#,
                &[("mcp-method", "ping")],
                Some("Mcp-Method header \"ping\" was sent with a JSON-RPC response"),
            ),
            (
                r#"[{"jsonrpc":"2.0","method":"notifications/initialized"}]"#,
                &[("mcp-method", "notifications/initialized")],
                Some("Mcp-Method and Mcp-Name cannot describe a batch"),
            ),
            (SESSION_CALL, &[("mcp-name", "\u{fffd}")], Some("Mcp-Name header \"\u{fffd}\" does not match the body's name \"echo\"")),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"demo://ä"}}"#,
                &[("mcp-name", "=?base64?ZGVtbzovL8Ok?=")],
                None,
            ),
            // Tasks are routed by their id.
            (STATELESS_TASK, &[("mcp-protocol-version", "2026-07-28"), ("mcp-method", "tasks/get"), ("mcp-name", "t-1")], None),
            (
                STATELESS_TASK,
                &[("mcp-protocol-version", "2026-07-28"), ("mcp-method", "tasks/get")],
                Some("Mcp-Name header is required (body taskId \"t-1\")"),
            ),
            (
                STATELESS_TASK,
                &[("mcp-protocol-version", "2026-07-28"), ("mcp-method", "tasks/get"), ("mcp-name", "t-2")],
                Some("Mcp-Name header \"t-2\" does not match the body's taskId \"t-1\""),
            ),
        ];
        for (body, pairs, want) in cases {
            let parsed = parse_body(body.as_bytes()).unwrap();
            let got = check_headers(&parsed, &headers(pairs));
            assert_eq!(got.err().as_deref(), *want, "{body} with {pairs:?}");
        }
    }

    #[test]
    fn non_utf8_header_is_refused() {
        let mut h = RoutingHeaders::default();
        h.observe(b"mcp-name", b"\xff");
        let body = parse_body(SESSION_CALL.as_bytes()).unwrap();
        assert_eq!(
            check_headers(&body, &h),
            Err("Mcp-Name header is not valid UTF-8".into())
        );
    }

    #[test]
    fn revision_comes_from_meta_or_initialize() {
        let b = parse_body(STATELESS_CALL.as_bytes()).unwrap();
        assert_eq!(body_revision(&b.messages()[0]), Some("2026-07-28"));
        let init = r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"c","version":"1"}}}"#;
        let b = parse_body(init.as_bytes()).unwrap();
        assert_eq!(body_revision(&b.messages()[0]), Some("2025-11-25"));
    }
}
