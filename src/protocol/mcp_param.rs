//! `Mcp-Param-*` headers (SEP-2243): tool arguments a server asks clients to mirror into
//! headers, checked against the body so that a route matching the header sees the value
//! the server will act on.
//!
//! [`ParamHeaders::from_schema`] reads a tool's `inputSchema` for `x-mcp-header`
//! properties (at any depth) and refuses a schema that breaks the revision's rules, as a
//! client must. [`ParamHeaders::check`] compares a `tools/call`'s arguments with the
//! request's headers: a value in the body needs its header, a header needs its value (a
//! `null` counts as absent), and the header, after `=?base64?…?=` decoding, must equal the
//! value (strings as they are, `true`/`false`, integers compared as numbers). A header no
//! schema declares is never looked at: it goes upstream untouched.

use std::fmt::Write;

use serde_json::Value;

use crate::policy::arguments::{find, Found, Item};
use crate::protocol::headers::HeaderMap;
use crate::protocol::jsonrpc::Reader;
use crate::protocol::revision::decode_header_value;
use crate::report::reject::{Code, Rejection};

/// One mirrored argument: its path of property names under `arguments` and its header's
/// name suffix as the schema spells it (`Region` for `Mcp-Param-Region`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamHeader {
    pub path: Vec<String>,
    pub name: String,
}

impl ParamHeader {
    /// The header's name in lower case, as the host hands headers over.
    fn header_key(&self) -> String {
        format!("mcp-param-{}", self.name.to_ascii_lowercase())
    }

    /// The argument as a JSON pointer, for reasons.
    fn pointer(&self) -> String {
        self.path.iter().fold(String::new(), |mut out, token| {
            let _ = write!(out, "/{}", token.replace('~', "~0").replace('/', "~1"));
            out
        })
    }
}

/// The mirrored arguments of one tool.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParamHeaders(pub Vec<ParamHeader>);

/// Why a tool's `inputSchema` cannot be used: the JSON pointer of the property at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaError {
    pub pointer: String,
    pub reason: String,
}

/// Why a request's `Mcp-Param-*` headers disagree with its arguments (400, -32020).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// The header, as `Mcp-Param-{name}`.
    pub header: String,
    pub reason: String,
}

impl Mismatch {
    pub fn rejection(&self, id: Option<&str>) -> Rejection {
        Rejection::new(
            Code::HeaderMismatch,
            format!("{} header {}", self.header, self.reason),
        )
        .with_id(id)
    }
}

/// HTTP token characters (RFC 9110 `tchar`): what a header name may be made of.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

impl ParamHeaders {
    /// The `x-mcp-header` properties of `input_schema` (a tool's `inputSchema` as JSON).
    pub fn from_schema(input_schema: &[u8]) -> Result<ParamHeaders, SchemaError> {
        let schema: Value = serde_json::from_slice(input_schema).map_err(|e| SchemaError {
            pointer: String::new(),
            reason: format!("inputSchema is not JSON: {e}"),
        })?;
        let mut out = ParamHeaders::default();
        out.collect(&schema, &mut Vec::new())?;
        Ok(out)
    }

    fn collect(&mut self, schema: &Value, path: &mut Vec<String>) -> Result<(), SchemaError> {
        let Some(properties) = schema.get("properties").and_then(Value::as_object) else {
            return Ok(());
        };
        for (key, property) in properties {
            path.push(key.clone());
            if let Some(name) = property.get("x-mcp-header") {
                let param = ParamHeader {
                    path: path.clone(),
                    name: name.as_str().unwrap_or_default().to_owned(),
                };
                let fault = |reason: String| SchemaError {
                    pointer: param.pointer(),
                    reason,
                };
                if param.name.is_empty() || !param.name.bytes().all(is_tchar) {
                    return Err(fault(format!(
                        "x-mcp-header {name} is not a non-empty HTTP token"
                    )));
                }
                let kind = property.get("type").and_then(Value::as_str);
                if !matches!(kind, Some("string" | "integer" | "boolean")) {
                    return Err(fault(format!(
                        "x-mcp-header on a property of type {}: only string, integer and boolean may be mirrored",
                        property.get("type").unwrap_or(&Value::Null)
                    )));
                }
                if self
                    .0
                    .iter()
                    .any(|p| p.name.eq_ignore_ascii_case(&param.name))
                {
                    return Err(fault(format!(
                        "x-mcp-header {:?} is used twice (names are case-insensitive)",
                        param.name
                    )));
                }
                self.0.push(param);
            }
            self.collect(property, path)?;
            path.pop();
        }
        Ok(())
    }

    /// Checks the headers (`headers`: every request header, names in lower case) against
    /// `arguments` (the `tools/call`'s `params.arguments` text, `None` when absent).
    pub fn check(&self, arguments: Option<&[u8]>, headers: &HeaderMap) -> Result<(), Mismatch> {
        self.0
            .iter()
            .try_for_each(|param| check_one(param, arguments, headers))
    }
}

fn check_one(
    param: &ParamHeader,
    arguments: Option<&[u8]>,
    headers: &HeaderMap,
) -> Result<(), Mismatch> {
    let fail = |reason: String| Mismatch {
        header: format!("Mcp-Param-{}", param.name),
        reason,
    };
    let key = param.header_key();
    let mut sent = headers.values(&key);
    let header = sent.next();
    if sent.next().is_some() {
        return Err(fail("appears more than once".into()));
    }
    let pointer = param.pointer();
    let found = match arguments {
        None => Found::Absent,
        Some(args) => find(&mut Reader::new(args), &param.path).map_err(|e| {
            fail(format!(
                "cannot be checked: arguments unreadable ({})",
                e.reason
            ))
        })?,
    };
    let expected = match found {
        Found::Absent | Found::One(Item::Null) => None,
        Found::One(Item::String(s)) => Some(Expected::Text(s.into_owned())),
        Found::One(Item::Bool(b)) => Some(Expected::Text(b.to_string())),
        Found::One(Item::Number(n)) => Some(Expected::Number(n.parse().unwrap_or(f64::NAN))),
        Found::Ambiguous(k) => {
            return Err(fail(format!(
                "cannot be checked: key {k:?} occurs twice on {pointer}"
            )))
        }
        Found::One(Item::Container) | Found::Array(_) => {
            return Err(fail(format!(
                "mirrors {pointer}, which is not a string, integer or boolean"
            )))
        }
    };
    match (header, expected) {
        (None, None) => Ok(()),
        (Some(_), None) => Err(fail(format!(
            "was sent but the arguments have no value at {pointer}"
        ))),
        (None, Some(_)) => Err(fail(format!(
            "is missing: the arguments have a value at {pointer}"
        ))),
        (Some(raw), Some(expected)) => {
            let value = decode(raw).map_err(fail)?;
            if expected.matches(&value) {
                Ok(())
            } else {
                Err(fail(format!(
                    "{value:?} does not match the arguments' value at {pointer}"
                )))
            }
        }
    }
}

/// A body value as its header must render it.
enum Expected {
    Text(String),
    Number(f64),
}

impl Expected {
    fn matches(&self, header: &str) -> bool {
        match self {
            Expected::Text(t) => t == header,
            // The revision asks for a numeric comparison (`42.0` equals `42`).
            Expected::Number(n) => header.parse::<f64>().is_ok_and(|h| h == *n),
        }
    }
}

/// A header value without its optional whitespace, decoded from `=?base64?…?=`; a plain
/// value must be visible ASCII, space or tab, as the revision requires.
fn decode(raw: &[u8]) -> Result<String, String> {
    let text = std::str::from_utf8(raw)
        .ok()
        .filter(|t| t.bytes().all(|b| b == b'\t' || (b' '..=b'~').contains(&b)))
        .ok_or("has characters a header value cannot carry: use the =?base64?…?= form")?;
    decode_header_value(text.trim_matches([' ', '\t']))
        .ok_or_else(|| "carries a malformed base64 value".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCHEMA: &str = r#"{"type":"object","properties":{
        "region":{"type":"string","x-mcp-header":"Region"},
        "query":{"type":"string"},
        "limit":{"type":"integer","x-mcp-header":"Limit"},
        "dry":{"type":"boolean","x-mcp-header":"Dry-Run"},
        "target":{"type":"object","properties":{"a/b":{"type":"string","x-mcp-header":"Tenant"}}}}}"#;

    fn params() -> ParamHeaders {
        ParamHeaders::from_schema(SCHEMA.as_bytes()).unwrap()
    }

    #[test]
    fn schema_yields_pointers_and_names() {
        let params = params();
        let found: Vec<(String, &str)> = params
            .0
            .iter()
            .map(|p| (p.pointer(), p.name.as_str()))
            .collect();
        assert_eq!(
            found,
            [
                ("/dry".to_owned(), "Dry-Run"),
                ("/limit".to_owned(), "Limit"),
                ("/region".to_owned(), "Region"),
                ("/target/a~1b".to_owned(), "Tenant"),
            ]
        );
        assert_eq!(
            ParamHeaders::from_schema(br#"{"type":"object"}"#),
            Ok(ParamHeaders::default())
        );
    }

    #[test]
    fn schema_errors() {
        let cases = [
            (
                r#"{"properties":{"a":{"type":"string","x-mcp-header":""}}}"#,
                "/a",
                "not a non-empty HTTP token",
            ),
            (
                r#"{"properties":{"a":{"type":"string","x-mcp-header":"A B"}}}"#,
                "/a",
                "not a non-empty HTTP token",
            ),
            (
                r#"{"properties":{"a":{"type":"string","x-mcp-header":7}}}"#,
                "/a",
                "not a non-empty HTTP token",
            ),
            (
                r#"{"properties":{"a":{"type":"number","x-mcp-header":"A"}}}"#,
                "/a",
                "type \"number\"",
            ),
            (
                r#"{"properties":{"a":{"x-mcp-header":"A"}}}"#,
                "/a",
                "type null",
            ),
            (
                r#"{"properties":{"a":{"type":"string","x-mcp-header":"A"},"b":{"type":"string","x-mcp-header":"a"}}}"#,
                "/b",
                "used twice",
            ),
        ];
        for (schema, pointer, reason) in cases {
            let e = ParamHeaders::from_schema(schema.as_bytes()).unwrap_err();
            assert_eq!(e.pointer, pointer, "{schema}");
            assert!(e.reason.contains(reason), "{schema}: {}", e.reason);
        }
    }

    /// Request headers as the host hands them over: lower-case names, byte values.
    type Headers<'a> = &'a [(&'a str, &'a [u8])];

    fn check(args: Option<&str>, headers: Headers<'_>) -> Result<(), String> {
        params()
            .check(args.map(str::as_bytes), &HeaderMap::from_pairs(headers))
            .map_err(|m| m.rejection(None).reason)
    }

    #[test]
    fn headers_agree_with_arguments() {
        let ok: &[(Option<&str>, Headers<'_>)] = &[
            (None, &[]),
            (Some(r#"{"query":"x"}"#), &[]),
            (Some(r#"{"region":null}"#), &[]),
            (
                Some(r#"{"region":"us-west1"}"#),
                &[("mcp-param-region", b"us-west1")],
            ),
            (
                Some(r#"{"region":"us-west1"}"#),
                &[("mcp-param-region", b"  us-west1\t")],
            ),
            (
                Some(r#"{"region":"Hello"}"#),
                &[("mcp-param-region", b"=?base64?SGVsbG8=?=")],
            ),
            (
                Some(r#"{"region":"SGVsbG8="}"#),
                &[("mcp-param-region", b"SGVsbG8=")],
            ),
            (
                Some(r#"{"region":"=?base64?SGVsbG8="}"#),
                &[("mcp-param-region", b"=?base64?SGVsbG8=")],
            ),
            (
                Some(r#"{"region":"Hello, 世界"}"#),
                &[("mcp-param-region", b"=?base64?SGVsbG8sIOS4lueVjA==?=")],
            ),
            (
                Some(r#"{"region":" padded "}"#),
                &[("mcp-param-region", b"=?base64?IHBhZGRlZCA=?=")],
            ),
            (Some(r#"{"limit":42}"#), &[("mcp-param-limit", b"42")]),
            (Some(r#"{"limit":42}"#), &[("mcp-param-limit", b"42.0")]),
            (Some(r#"{"limit":-7}"#), &[("mcp-param-limit", b"-7")]),
            (Some(r#"{"dry":false}"#), &[("mcp-param-dry-run", b"false")]),
            (
                Some(r#"{"target":{"a/b":"acme"}}"#),
                &[("mcp-param-tenant", b"acme")],
            ),
            // Headers no schema declares are not looked at.
            (Some("{}"), &[("mcp-param-other", b"\xff")]),
        ];
        for (args, headers) in ok {
            assert_eq!(check(*args, headers), Ok(()), "{args:?} {headers:?}");
        }
    }

    #[test]
    fn disagreements_name_the_header() {
        let bad: &[(Option<&str>, Headers<'_>, &str)] = &[
            (
                Some(r#"{"region":"us"}"#),
                &[],
                "Mcp-Param-Region header is missing: the arguments have a value at /region",
            ),
            (
                None,
                &[("mcp-param-region", b"us")],
                "Mcp-Param-Region header was sent but the arguments have no value at /region",
            ),
            (
                Some(r#"{"region":null}"#),
                &[("mcp-param-region", b"us")],
                "Mcp-Param-Region header was sent but the arguments have no value at /region",
            ),
            (
                Some(r#"{"region":"us"}"#),
                &[("mcp-param-region", b"eu")],
                "Mcp-Param-Region header \"eu\" does not match the arguments' value at /region",
            ),
            (
                Some(r#"{"region":"Hello"}"#),
                &[("mcp-param-region", b"=?base64?SGVsbG8?=")],
                "Mcp-Param-Region header carries a malformed base64 value",
            ),
            (
                Some(r#"{"region":"Hello"}"#),
                &[("mcp-param-region", b"=?base64?SGVs!!!bG8=?=")],
                "Mcp-Param-Region header carries a malformed base64 value",
            ),
            (
                Some(r#"{"region":"é"}"#),
                &[("mcp-param-region", "é".as_bytes())],
                "Mcp-Param-Region header has characters a header value cannot carry",
            ),
            (
                Some(r#"{"region":"a"}"#),
                &[("mcp-param-region", b"a"), ("mcp-param-region", b"a")],
                "Mcp-Param-Region header appears more than once",
            ),
            (
                Some(r#"{"limit":42}"#),
                &[("mcp-param-limit", b"43")],
                "Mcp-Param-Limit header \"43\" does not match",
            ),
            (
                Some(r#"{"limit":42}"#),
                &[("mcp-param-limit", b"forty-two")],
                "Mcp-Param-Limit header \"forty-two\" does not match",
            ),
            (
                Some(r#"{"dry":true}"#),
                &[("mcp-param-dry-run", b"True")],
                "Mcp-Param-Dry-Run header \"True\" does not match",
            ),
            (
                Some(r#"{"region":["us"]}"#),
                &[("mcp-param-region", b"us")],
                "mirrors /region, which is not a string, integer or boolean",
            ),
            (
                Some(r#"{"region":"us","region":"eu"}"#),
                &[("mcp-param-region", b"us")],
                "key \"region\" occurs twice on /region",
            ),
        ];
        for (args, headers, want) in bad {
            let got = check(*args, headers).unwrap_err();
            assert!(got.contains(want), "{args:?} {headers:?}: {got}");
        }
        let r = Mismatch {
            header: "Mcp-Param-Region".into(),
            reason: "x".into(),
        }
        .rejection(Some("3"));
        assert_eq!(
            (r.code.http_status(), r.code, r.id.as_deref()),
            (400, Code::HeaderMismatch, Some("3"))
        );
    }
}
