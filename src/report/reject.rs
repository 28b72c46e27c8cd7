//! Rejections: the JSON-RPC error object and HTTP status every refused request gets.

use std::fmt::Write;

use crate::protocol::jsonrpc::Seen;

/// Why the filter refused a request; fixes the JSON-RPC code and the HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Code {
    /// The body is not valid JSON.
    ParseError,
    /// Valid JSON, but not a JSON-RPC 2.0 message MCP accepts, or ambiguous (duplicate keys).
    InvalidRequest,
    /// A request without the parameter its method needs (e.g. `tools/call` without a name).
    InvalidParams,
    /// `Mcp-Method`, `Mcp-Name` or `MCP-Protocol-Version` disagree with the body (2026-07-28).
    HeaderMismatch,
    /// No credentials, or credentials that do not verify.
    Unauthenticated,
    /// The policy does not allow this method, tool, prompt, resource, path or stream, or the
    /// caller lacks a required scope.
    Forbidden,
    /// The HTTP method has no meaning on an MCP endpoint.
    MethodNotAllowed,
    /// The body is larger than `max_body_bytes`.
    PayloadTooLarge,
    /// The body cannot be inspected: not JSON, or content-encoded.
    UnsupportedMediaType,
    /// The filter cannot decide (no valid configuration, a failed host call): fail closed.
    Internal,
    /// What a decision needs is not available yet (signing keys): fail closed, retry later.
    Unavailable,
    /// The upstream's answer cannot be made fit for the caller (a list too large to filter).
    BadGateway,
    /// A rate limit refuses the call (or cannot be checked and is configured to refuse).
    RateLimited,
    /// The `Mcp-Session-Id` is not one this gateway sealed (or was edited): 404 makes the
    /// client start anew.
    SessionNotFound,
}

impl Code {
    /// Every code, for tables and tests that must cover them all.
    pub const ALL: [Code; 14] = [
        Code::ParseError,
        Code::InvalidRequest,
        Code::InvalidParams,
        Code::HeaderMismatch,
        Code::Unauthenticated,
        Code::Forbidden,
        Code::MethodNotAllowed,
        Code::PayloadTooLarge,
        Code::UnsupportedMediaType,
        Code::Internal,
        Code::Unavailable,
        Code::BadGateway,
        Code::RateLimited,
        Code::SessionNotFound,
    ];

    /// The JSON-RPC `error.code`.
    pub fn json_rpc(self) -> i32 {
        match self {
            Code::ParseError => -32700,
            Code::InvalidRequest | Code::SessionNotFound => -32600,
            Code::InvalidParams => -32602,
            Code::HeaderMismatch => -32020,
            Code::Unauthenticated => -32001,
            Code::Forbidden => -32003,
            Code::MethodNotAllowed => -32005,
            Code::PayloadTooLarge => -32013,
            Code::UnsupportedMediaType => -32015,
            Code::RateLimited => -32029,
            Code::Internal | Code::Unavailable | Code::BadGateway => -32603,
        }
    }

    /// The HTTP status of the response.
    pub fn http_status(self) -> u32 {
        match self {
            Code::ParseError
            | Code::InvalidRequest
            | Code::InvalidParams
            | Code::HeaderMismatch => 400,
            Code::Unauthenticated => 401,
            Code::Forbidden => 403,
            Code::SessionNotFound => 404,
            Code::MethodNotAllowed => 405,
            Code::PayloadTooLarge => 413,
            Code::UnsupportedMediaType => 415,
            Code::RateLimited => 429,
            Code::Internal => 500,
            Code::Unavailable => 503,
            Code::BadGateway => 502,
        }
    }

    /// The JSON-RPC `error.message`.
    pub fn message(self) -> &'static str {
        match self {
            Code::ParseError => "Parse error",
            Code::InvalidRequest => "Invalid Request",
            Code::InvalidParams => "Invalid params",
            Code::HeaderMismatch => "Header mismatch",
            Code::Unauthenticated => "Unauthorized",
            Code::Forbidden => "Forbidden",
            Code::MethodNotAllowed => "Method not allowed",
            Code::PayloadTooLarge => "Request body too large",
            Code::UnsupportedMediaType => "Unsupported media type",
            Code::RateLimited => "Too many requests",
            Code::Internal => "Internal error",
            Code::Unavailable => "Service unavailable",
            Code::BadGateway => "Bad gateway",
            Code::SessionNotFound => "Session not found",
        }
    }
}

/// A refused request: what to tell the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub code: Code,
    /// A precise, secret-free explanation, sent as `error.data.reason`.
    pub reason: String,
    /// The request's `id` as JSON text, when it is known.
    pub id: Option<String>,
    /// More response headers (a `WWW-Authenticate` challenge on a 401, `Retry-After` on a
    /// 429), names in lower case.
    pub headers: Vec<(&'static str, String)>,
    /// More members of `error.data` after `reason`: name and value as JSON text.
    pub data: Vec<(&'static str, String)>,
    /// The message refused and the rule (for a 429: the limit) that refused it, for metrics
    /// and the audit log.
    pub about: Option<Box<(Seen, Option<String>)>>,
}

impl Rejection {
    pub fn new(code: Code, reason: impl Into<String>) -> Rejection {
        Rejection {
            code,
            reason: reason.into(),
            id: None,
            headers: Vec::new(),
            data: Vec::new(),
            about: None,
        }
    }

    pub fn about(mut self, message: Seen, rule: Option<&str>) -> Rejection {
        self.about = Some(Box::new((message, rule.map(str::to_owned))));
        self
    }

    pub fn with_header(mut self, name: &'static str, value: String) -> Rejection {
        self.headers.push((name, value));
        self
    }

    /// The first value of response header `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Adds `error.data.<name>` with `json` (valid JSON text) as its value.
    pub fn with_data(mut self, name: &'static str, json: String) -> Rejection {
        self.data.push((name, json));
        self
    }

    pub fn with_id(mut self, id: Option<&str>) -> Rejection {
        self.id = id.map(str::to_owned);
        self
    }

    /// The response body: `{"jsonrpc":"2.0","id":…,"error":{"code":…,"message":…,"data":{"reason":…}}}`.
    pub fn to_json(&self) -> String {
        let mut out = String::with_capacity(96 + self.reason.len());
        out.push_str("{\"jsonrpc\":\"2.0\",\"id\":");
        // `id` was validated as JSON by the reader, so it is inserted verbatim.
        out.push_str(self.id.as_deref().unwrap_or("null"));
        let _ = write!(
            out,
            ",\"error\":{{\"code\":{},\"message\":",
            self.code.json_rpc()
        );
        push_json_string(&mut out, self.code.message());
        out.push_str(",\"data\":{\"reason\":");
        push_json_string(&mut out, &self.reason);
        for (name, json) in &self.data {
            out.push(',');
            push_json_string(&mut out, name);
            out.push(':');
            out.push_str(json);
        }
        out.push_str("}}}");
        out
    }
}

/// A response the filter sends itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalReply {
    pub status: u32,
    pub content_type: &'static str,
    pub body: String,
}

/// Appends `s` as a JSON string literal with only the escapes JSON requires, in their
/// short forms where there is one (as RFC 8785 canonical JSON writes them).
pub fn push_json_string(out: &mut String, s: &str) {
    out.reserve(s.len() + 2);
    out.push('"');
    // Runs of characters that need no escape are copied whole (the bytes that need one
    // are ASCII, so every cut is on a character boundary).
    let mut run = 0;
    for (i, b) in s.bytes().enumerate() {
        let escape = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            0..=0x1f => "",
            _ => continue,
        };
        out.push_str(s.get(run..i).unwrap_or_default());
        if escape.is_empty() {
            let _ = write!(out, "\\u{b:04x}");
        } else {
            out.push_str(escape);
        }
        run = i + 1;
    }
    out.push_str(s.get(run..).unwrap_or_default());
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_json_rpc_error() {
        let r = Rejection::new(Code::Forbidden, "tool \"rm\"\n is denied").with_id(Some("\"a\""));
        let v: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"jsonrpc":"2.0","id":"a","error":{"code":-32003,"message":"Forbidden",
                "data":{"reason":"tool \"rm\"\n is denied"}}})
        );
        let v: serde_json::Value =
            serde_json::from_str(&Rejection::new(Code::ParseError, "\u{1}").to_json()).unwrap();
        assert_eq!(v["id"], serde_json::Value::Null);
        assert_eq!(v["error"]["data"]["reason"], "\u{1}");
        let r = Rejection::new(Code::RateLimited, "slow down")
            .with_data("limit", "\"calls\"".into())
            .with_data("retry_after_seconds", "3".into());
        let v: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
        assert_eq!(
            v["error"]["data"],
            serde_json::json!({"reason":"slow down","limit":"calls","retry_after_seconds":3})
        );
    }

    #[test]
    fn statuses_fit_codes() {
        let table = [
            (Code::ParseError, -32700, 400),
            (Code::InvalidRequest, -32600, 400),
            (Code::InvalidParams, -32602, 400),
            (Code::HeaderMismatch, -32020, 400),
            (Code::Forbidden, -32003, 403),
            (Code::MethodNotAllowed, -32005, 405),
            (Code::PayloadTooLarge, -32013, 413),
            (Code::UnsupportedMediaType, -32015, 415),
            (Code::Unauthenticated, -32001, 401),
            (Code::Internal, -32603, 500),
            (Code::Unavailable, -32603, 503),
            (Code::BadGateway, -32603, 502),
            (Code::RateLimited, -32029, 429),
            (Code::SessionNotFound, -32600, 404),
        ];
        assert_eq!(table.len(), Code::ALL.len());
        for (code, rpc, http) in table {
            assert_eq!(
                (code.json_rpc(), code.http_status()),
                (rpc, http),
                "{code:?}"
            );
        }
    }
}
