//! Classifies an MCP POST body into JSON-RPC messages and extracts what policy needs.
//!
//! Read exactly like a strict upstream: the whole body must be one valid JSON value with
//! nothing after it; every object the filter reads (the message, `params`, `params._meta`)
//! must not repeat a key, because two upstreams may pick different copies; escaped names
//! are decoded before anyone matches them. Tool arguments are validated but never decoded.

use std::borrow::Cow;
use std::ops::Range;

use super::reader::{Reader, SyntaxError};
use crate::protocol::revisions::{self, Param, Revision};

/// Key in `params._meta` that carries the protocol revision of a stateless (2026-07-28) request.
pub const META_PROTOCOL_VERSION: &str = "io.modelcontextprotocol/protocolVersion";

/// What a JSON-RPC message is, by its shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Has `method` and `id`: expects an answer.
    Request,
    /// Has `method`, no `id`.
    Notification,
    /// Has `id` and `result` or `error`: a client's reply to a server's request.
    Response,
}

/// The object of a request that policy decides on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target<'a> {
    /// `tools/call` `params.name`.
    Tool(Cow<'a, str>),
    /// `prompts/get` `params.name`.
    Prompt(Cow<'a, str>),
    /// `resources/read|subscribe|unsubscribe` `params.uri`.
    Resource(Cow<'a, str>),
}

impl Target<'_> {
    /// The name or URI, as the upstream will see it.
    pub fn value(&self) -> &str {
        match self {
            Target::Tool(v) | Target::Prompt(v) | Target::Resource(v) => v,
        }
    }
}

/// One classified JSON-RPC message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message<'a> {
    pub kind: Kind,
    /// The `id` exactly as written in the body (JSON text), for echoing in errors.
    pub id: Option<&'a str>,
    pub method: Option<Cow<'a, str>>,
    pub target: Option<Target<'a>>,
    /// `params._meta["io.modelcontextprotocol/protocolVersion"]` (2026-07-28 requests).
    pub meta_protocol_version: Option<Cow<'a, str>>,
    /// `params.protocolVersion` of an `initialize` request.
    pub initialize_protocol_version: Option<Cow<'a, str>>,
    /// Byte range of `params.arguments` in the body, for later, targeted reads.
    pub arguments: Option<Range<usize>>,
    /// `params.taskId` of a method that names a task (`tasks/get`, `tasks/cancel`, ...).
    pub task_id: Option<Cow<'a, str>>,
}

/// What the gate reports about a message after deciding: its method and target, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub method: Option<String>,
    pub target: Option<Target<'static>>,
    /// Byte range of `params.arguments` in the body.
    pub arguments: Option<Range<usize>>,
}

impl Message<'_> {
    pub fn seen(&self) -> Seen {
        Seen {
            method: self.method.as_deref().map(str::to_owned),
            target: self.target.as_ref().map(Target::to_owned),
            arguments: self.arguments.clone(),
        }
    }
}

impl Target<'_> {
    fn to_owned(&self) -> Target<'static> {
        let owned = |v: &Cow<'_, str>| Cow::Owned(v.to_string());
        match self {
            Target::Tool(v) => Target::Tool(owned(v)),
            Target::Prompt(v) => Target::Prompt(owned(v)),
            Target::Resource(v) => Target::Resource(owned(v)),
        }
    }
}

/// A POST body: one message or a non-empty batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body<'a> {
    Single(Message<'a>),
    Batch(Vec<Message<'a>>),
}

impl<'a> Body<'a> {
    pub fn messages(&self) -> &[Message<'a>] {
        match self {
            Body::Single(m) => std::slice::from_ref(m),
            Body::Batch(ms) => ms,
        }
    }
}

/// Why a body was refused, with the JSON-RPC code class it maps to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyError {
    /// Not valid JSON (-32700).
    Parse(String),
    /// Valid JSON, but not a JSON-RPC 2.0 message MCP accepts (-32600).
    InvalidRequest { reason: String, id: Option<String> },
    /// A request whose params lack what its method requires (-32602).
    InvalidParams { reason: String, id: Option<String> },
}

impl From<SyntaxError> for BodyError {
    fn from(e: SyntaxError) -> Self {
        BodyError::Parse(format!("{} at byte {}", e.reason, e.offset))
    }
}

/// Parses and classifies a POST body.
pub fn parse_body(body: &[u8]) -> Result<Body<'_>, BodyError> {
    parse_body_for(body, None)
}

/// Parses and classifies a POST body whose `MCP-Protocol-Version` header is `header`: a
/// message's params are required as the revision it declares (its `_meta`, else the
/// header) defines its method (see [`crate::protocol::revisions`]).
pub fn parse_body_for<'b>(body: &'b [u8], header: Option<&str>) -> Result<Body<'b>, BodyError> {
    let header = header.and_then(Revision::parse);
    if body.starts_with(b"\xEF\xBB\xBF") {
        return Err(BodyError::Parse("byte order mark before JSON".into()));
    }
    let mut r = Reader::new(body);
    let parsed = match r.peek() {
        Some(b'[') => {
            r.begin_array()?;
            let mut first = true;
            let mut members = Vec::new();
            while r.next_element(&mut first)? {
                members.push(read_member(&mut r, Some(members.len()), header)?);
            }
            if members.is_empty() {
                return Err(invalid(None, "empty batch".into()));
            }
            Body::Batch(members)
        }
        Some(b'{') => Body::Single(read_member(&mut r, None, header)?),
        _ => {
            r.skip_value()?;
            r.finish()?;
            return Err(invalid(
                None,
                "body is not a JSON-RPC object or batch".into(),
            ));
        }
    };
    r.finish()?;
    Ok(parsed)
}

fn invalid(id: Option<&str>, reason: String) -> BodyError {
    BodyError::InvalidRequest {
        reason,
        id: id.map(str::to_owned),
    }
}

/// A field the filter may need, as found: a string, or some other JSON value.
#[derive(Default)]
enum Field<'a> {
    #[default]
    Absent,
    Str(Cow<'a, str>),
    Other,
}

impl<'a> Field<'a> {
    fn read(r: &mut Reader<'a>) -> Result<Field<'a>, SyntaxError> {
        if r.peek() == Some(b'"') {
            Ok(Field::Str(r.read_string()?))
        } else {
            r.skip_value()?;
            Ok(Field::Other)
        }
    }
}

/// Fields of `params` (and its `_meta`) that any method's decision might need.
#[derive(Default)]
struct Params<'a> {
    name: Field<'a>,
    uri: Field<'a>,
    protocol_version: Field<'a>,
    meta_protocol_version: Field<'a>,
    task_id: Field<'a>,
    arguments: Option<Range<usize>>,
}

/// Finds a repeated key among one object's keys (compared after unescaping). The keys the
/// reader expects are noted by a bit each; any other key, and an expected one seen again,
/// goes to a list that is only sorted when there is one (a request's objects rarely have
/// keys the filter does not read, so the list is rarely even allocated).
#[derive(Default)]
struct Keys<'a> {
    seen: u32,
    others: Vec<Cow<'a, [u8]>>,
}

impl<'a> Keys<'a> {
    /// Notes `key`; returns its index in `known` (at most 32 names), if it is one.
    fn note(&mut self, key: Cow<'a, [u8]>, known: &[&str]) -> Option<usize> {
        let index = known.iter().position(|k| k.as_bytes() == key.as_ref());
        match index.map(|i| 1u32 << i) {
            Some(bit) if self.seen & bit == 0 => self.seen |= bit,
            // Both copies go to the list, where the repeat is found as for any other key.
            Some(_) => self.others.extend([key.clone(), key]),
            None => self.others.push(key),
        }
        index
    }

    /// A repeated key, if any (the first in sorted order); sorting keeps large objects
    /// O(n log n).
    fn duplicate(mut self, object: &str) -> Option<String> {
        if self.others.len() < 2 {
            return None;
        }
        crate::sort::sort(&mut self.others);
        self.others.windows(2).find_map(|w| match w {
            [a, b] if a == b => Some(format!(
                "duplicate key {:?} in {object}",
                String::from_utf8_lossy(a)
            )),
            _ => None,
        })
    }
}

/// The members of a message the reader uses; [`read_member`] matches their indices.
const MESSAGE_KEYS: [&str; 6] = ["jsonrpc", "id", "method", "params", "result", "error"];
/// The members of `params` the reader uses; [`read_params`] matches their indices.
const PARAMS_KEYS: [&str; 6] = [
    "name",
    "uri",
    "protocolVersion",
    "taskId",
    "_meta",
    "arguments",
];
/// The member of `params._meta` the reader uses.
const META_KEYS: [&str; 1] = [META_PROTOCOL_VERSION];

/// Reads one message object; `index` is its position in a batch, for error reasons;
/// `header` the revision the request's header declares.
fn read_member<'a>(
    r: &mut Reader<'a>,
    index: Option<usize>,
    header: Option<Revision>,
) -> Result<Message<'a>, BodyError> {
    let at = |what: String| match index {
        Some(i) => format!("batch[{i}]: {what}"),
        None => what,
    };
    if r.peek() != Some(b'{') {
        r.skip_value()?;
        return Err(invalid(None, at("batch member is not an object".into())));
    }
    let mut jsonrpc = Field::Absent;
    let mut id: Option<(Range<usize>, bool)> = None;
    let mut method = Field::Absent;
    let mut params: Option<Params<'a>> = None;
    let (mut has_result, mut has_error) = (false, false);
    let mut duplicate: Option<String> = None;
    let mut keys = Keys::default();

    r.begin_object()?;
    let mut first = true;
    while let Some(key) = r.next_key_bytes(&mut first)? {
        match keys.note(key, &MESSAGE_KEYS) {
            Some(0) => jsonrpc = Field::read(r)?,
            Some(1) => id = Some(read_id(r)?),
            Some(2) => method = Field::read(r)?,
            Some(3) => params = Some(read_params(r, &mut duplicate)?),
            Some(4) => {
                has_result = true;
                r.skip_value()?;
            }
            Some(5) => {
                has_error = true;
                r.skip_value()?;
            }
            _ => r.skip_value()?,
        }
    }

    let id_text = id.as_ref().map(|(span, _)| r.slice(span.start, span.end));
    if let Some(d) = keys.duplicate("message").or(duplicate) {
        return Err(invalid(id_text, at(d)));
    }
    if !matches!(&jsonrpc, Field::Str(v) if v == "2.0") {
        return Err(invalid(id_text, at("\"jsonrpc\" must be \"2.0\"".into())));
    }
    let id_valid = id.as_ref().map(|(_, valid)| *valid);
    let kind = match (&method, id_valid, has_result || has_error) {
        (Field::Absent, Some(valid), true) if !(has_result && has_error) => {
            if !(valid || has_error && id_text == Some("null")) {
                return Err(invalid(
                    id_text,
                    at("\"id\" must be a string or an integer".into()),
                ));
            }
            Kind::Response
        }
        (Field::Absent, _, _) => {
            return Err(invalid(
                id_text,
                at("not a request, notification or response".into()),
            ))
        }
        (Field::Other, _, _) => {
            return Err(invalid(id_text, at("\"method\" must be a string".into())))
        }
        (Field::Str(_), _, true) => {
            return Err(invalid(
                id_text,
                at("a request cannot carry \"result\" or \"error\"".into()),
            ))
        }
        (Field::Str(_), Some(false), _) => {
            return Err(invalid(
                id_text,
                at("\"id\" must be a string or an integer".into()),
            ))
        }
        (Field::Str(_), Some(true), false) => Kind::Request,
        (Field::Str(_), None, false) => Kind::Notification,
    };
    let method = match method {
        Field::Str(m) => Some(m),
        _ => None,
    };
    let params = params.unwrap_or_default();
    let revision = match &params.meta_protocol_version {
        Field::Str(v) => Revision::parse(v),
        _ => None,
    }
    .or(header);
    let method_name = method.as_deref().unwrap_or_default();
    let needs = revisions::required_param(revision, method_name);
    let param = |field, param: Param| match (field, needs) {
        (Field::Str(v), _) => Ok(Some(v)),
        (_, Some(_)) => Err(BodyError::InvalidParams {
            reason: at(format!("params.{} must be a string", param.key())),
            id: id_text.map(str::to_owned),
        }),
        // The revision has no such method: its server answers it.
        (_, None) => Ok(None),
    };
    let (mut target, mut task_id) = (None, None);
    match (revisions::target_param(method_name), method_name) {
        (Some(Param::Name), "prompts/get") => {
            target = param(params.name, Param::Name)?.map(Target::Prompt)
        }
        (Some(Param::Name), _) => target = param(params.name, Param::Name)?.map(Target::Tool),
        (Some(Param::Uri), _) => target = param(params.uri, Param::Uri)?.map(Target::Resource),
        (Some(Param::TaskId), _) => task_id = param(params.task_id, Param::TaskId)?,
        (None, _) => {}
    }
    let initialize_protocol_version = match (method.as_deref(), params.protocol_version) {
        (Some("initialize"), Field::Str(v)) => Some(v),
        _ => None,
    };
    let meta_protocol_version = match params.meta_protocol_version {
        Field::Str(v) => Some(v),
        Field::Other => {
            return Err(BodyError::InvalidParams {
                reason: at(format!("_meta[{META_PROTOCOL_VERSION:?}] must be a string")),
                id: id_text.map(str::to_owned),
            })
        }
        Field::Absent => None,
    };
    Ok(Message {
        kind,
        id: id_text,
        method,
        target,
        meta_protocol_version,
        initialize_protocol_version,
        arguments: params.arguments,
        task_id,
    })
}

/// Reads an `id`; returns its span and whether MCP accepts it (a string or an integer).
fn read_id(r: &mut Reader<'_>) -> Result<(Range<usize>, bool), SyntaxError> {
    let start = r.offset_after_ws();
    let valid = match r.peek() {
        Some(b'"') => {
            r.read_string()?;
            true
        }
        // Byte by byte: a `char` pattern costs hundreds of wasm instructions per call.
        Some(b'-' | b'0'..=b'9') => !r
            .read_number()?
            .bytes()
            .any(|b| matches!(b, b'.' | b'e' | b'E')),
        _ => {
            r.skip_value()?;
            false
        }
    };
    Ok((start..r.offset(), valid))
}

/// Walks an object the filter reads (any other value is skipped), handing each member's
/// value to `member` with the index of its key in `known` (`None` for another key), and
/// noting a repeated key in `duplicate`.
fn read_object<'a>(
    r: &mut Reader<'a>,
    name: &str,
    known: &[&str],
    duplicate: &mut Option<String>,
    mut member: impl FnMut(
        &mut Reader<'a>,
        Option<usize>,
        &mut Option<String>,
    ) -> Result<(), SyntaxError>,
) -> Result<(), SyntaxError> {
    if r.peek() != Some(b'{') {
        return r.skip_value();
    }
    let mut keys = Keys::default();
    r.begin_object()?;
    let mut first = true;
    while let Some(key) = r.next_key_bytes(&mut first)? {
        let index = keys.note(key, known);
        member(r, index, duplicate)?;
    }
    if let Some(d) = keys.duplicate(name) {
        duplicate.get_or_insert(d);
    }
    Ok(())
}

/// Reads `params`, keeping the fields decisions use.
fn read_params<'a>(
    r: &mut Reader<'a>,
    duplicate: &mut Option<String>,
) -> Result<Params<'a>, SyntaxError> {
    let mut p = Params::default();
    read_object(r, "params", &PARAMS_KEYS, duplicate, |r, key, duplicate| {
        match key {
            Some(0) => p.name = Field::read(r)?,
            Some(1) => p.uri = Field::read(r)?,
            Some(2) => p.protocol_version = Field::read(r)?,
            Some(3) => p.task_id = Field::read(r)?,
            Some(4) => {
                read_object(r, "params._meta", &META_KEYS, duplicate, |r, key, _| {
                    if key.is_some() {
                        p.meta_protocol_version = Field::read(r)?;
                        Ok(())
                    } else {
                        r.skip_value()
                    }
                })?;
            }
            Some(5) => {
                let start = r.offset_after_ws();
                r.skip_value()?;
                p.arguments = Some(start..r.offset());
            }
            _ => r.skip_value()?,
        }
        Ok(())
    })?;
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str) -> Result<Body<'_>, BodyError> {
        parse_body(body.as_bytes())
    }

    fn one(body: &str) -> Message<'_> {
        match parse(body) {
            Ok(Body::Single(m)) => m,
            other => panic!("{body}: {other:?}"),
        }
    }

    #[test]
    fn classifies_messages() {
        let cases: &[(&str, Kind, Option<&str>, Option<&str>)] = &[
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#,
                Kind::Request,
                Some("1"),
                Some("tools/list"),
            ),
            (
                r#"{"jsonrpc":"2.0","id":"a-1","method":"ping"}"#,
                Kind::Request,
                Some("\"a-1\""),
                Some("ping"),
            ),
            (
                r#"{"method":"ping","id":-7,"jsonrpc":"2.0"}"#,
                Kind::Request,
                Some("-7"),
                Some("ping"),
            ),
            (
                r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
                Kind::Notification,
                None,
                Some("notifications/initialized"),
            ),
            (
                r#"{"jsonrpc":"2.0","id":3,"result":{"roots":[]}}"#,
                Kind::Response,
                Some("3"),
                None,
            ),
            (
                r#"{"jsonrpc":"2.0","id":3,"error":{"code":-1,"message":"no"}}"#,
                Kind::Response,
                Some("3"),
                None,
            ),
            (
                r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"x"}}"#,
                Kind::Response,
                Some("null"),
                None,
            ),
            (
                " \n{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"x\"}\r\n ",
                Kind::Request,
                Some("1"),
                Some("x"),
            ),
        ];
        for (body, kind, id, method) in cases {
            let m = one(body);
            assert_eq!(
                (m.kind, m.id, m.method.as_deref()),
                (*kind, *id, *method),
                "{body}"
            );
        }
    }

    #[test]
    fn extracts_targets_and_revisions() {
        let m = one(
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"ech\u006f","arguments":{"text":"hi","name":"other"}}}"#,
        );
        assert_eq!(m.target, Some(Target::Tool("echo".into())));
        let args = m.arguments.unwrap();
        assert_eq!(
            &r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"ech\u006f","arguments":{"text":"hi","name":"other"}}}"#
                [args],
            r#"{"text":"hi","name":"other"}"#
        );

        let m = one(r#"{"jsonrpc":"2.0","id":1,"method":"prompts/get","params":{"name":"greet"}}"#);
        assert_eq!(m.target, Some(Target::Prompt("greet".into())));
        for method in [
            "resources/read",
            "resources/subscribe",
            "resources/unsubscribe",
        ] {
            let body = format!(
                r#"{{"jsonrpc":"2.0","id":1,"method":"{method}","params":{{"uri":"file:///a b"}}}}"#
            );
            assert_eq!(
                one(&body).target,
                Some(Target::Resource("file:///a b".into()))
            );
        }
        let m = one(
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","other":{"x":[1]}}}}"#,
        );
        assert_eq!(m.meta_protocol_version.as_deref(), Some("2026-07-28"));
        assert_eq!(m.target, None);
        let m = one(
            r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25"}}"#,
        );
        assert_eq!(m.initialize_protocol_version.as_deref(), Some("2025-11-25"));
        // protocolVersion means nothing outside initialize.
        let m = one(
            r#"{"jsonrpc":"2.0","id":0,"method":"ping","params":{"protocolVersion":"2025-11-25"}}"#,
        );
        assert_eq!(m.initialize_protocol_version, None);
    }

    #[test]
    fn classifies_batches() {
        match parse(
            r#"[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a"}},{"jsonrpc":"2.0","method":"notifications/cancelled"},{"jsonrpc":"2.0","id":9,"result":{}}]"#,
        ) {
            Ok(Body::Batch(ms)) => {
                let kinds: Vec<Kind> = ms.iter().map(|m| m.kind).collect();
                assert_eq!(kinds, [Kind::Request, Kind::Notification, Kind::Response]);
                assert_eq!(ms[0].target, Some(Target::Tool("a".into())));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn rejects_with_fitting_class() {
        enum Want {
            Parse(&'static str),
            Invalid(&'static str, Option<&'static str>),
            Params(&'static str),
        }
        use Want::*;
        let cases: &[(&[u8], Want)] = &[
            (b"", Parse("unexpected end of input at byte 0")),
            (b"{", Parse("unexpected end of input at byte 1")),
            (b"{\"jsonrpc\":\"2.0", Parse("unterminated string")),
            (b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"} x", Parse("trailing bytes")),
            (b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}{}", Parse("trailing bytes")),
            (b"\xEF\xBB\xBF{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}", Parse("byte order mark")),
            (b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"p\xffng\"}", Parse("invalid UTF-8 at byte 35")),
            (b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"a\",\"arguments\":{\"x\":[1,}}}", Parse("expected a value")),
            (b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"x\",\"params\":{\"name\":\"\\ud800\"}}", Parse("unpaired surrogate")),
            (b"[]", Invalid("empty batch", None)),
            (b"42", Invalid("body is not a JSON-RPC object or batch", None)),
            (b"[1]", Invalid("batch[0]: batch member is not an object", None)),
            (b"[{\"jsonrpc\":\"2.0\",\"method\":\"a\"},{\"jsonrpc\":\"1.0\",\"method\":\"b\"}]", Invalid("batch[1]: \"jsonrpc\" must be \"2.0\"", None)),
            (b"{\"id\":1,\"method\":\"ping\"}", Invalid("\"jsonrpc\" must be \"2.0\"", Some("1"))),
            (b"{\"jsonrpc\":2.0,\"id\":1,\"method\":\"ping\"}", Invalid("\"jsonrpc\" must be \"2.0\"", Some("1"))),
            (b"{\"jsonrpc\":\"2.0\",\"id\":null,\"method\":\"ping\"}", Invalid("\"id\" must be a string or an integer", Some("null"))),
            (b"{\"jsonrpc\":\"2.0\",\"id\":1.5,\"method\":\"ping\"}", Invalid("\"id\" must be a string or an integer", Some("1.5"))),
            (b"{\"jsonrpc\":\"2.0\",\"id\":{},\"method\":\"ping\"}", Invalid("\"id\" must be a string or an integer", Some("{}"))),
            (b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":7}", Invalid("\"method\" must be a string", Some("1"))),
            (b"{\"jsonrpc\":\"2.0\",\"id\":1}", Invalid("not a request, notification or response", Some("1"))),
            (b"{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{},\"error\":{}}", Invalid("not a request, notification or response", Some("1"))),
            (b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"x\",\"result\":{}}", Invalid("a request cannot carry \"result\" or \"error\"", Some("1"))),
            (b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"method\":\"tools/list\"}", Invalid("duplicate key \"method\" in message", Some("1"))),
            (b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"m\\u0065thod\":\"tools/list\"}", Invalid("duplicate key \"method\" in message", Some("1"))),
            (b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"echo\",\"name\":\"rm\"}}", Invalid("duplicate key \"name\" in params", Some("1"))),
            (b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"echo\",\"_meta\":{\"a\":1,\"a\":2}}}", Invalid("duplicate key \"a\" in params._meta", Some("1"))),
            (b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{}}", Params("params.name must be a string")),
            (b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":[\"echo\"]}}", Params("params.name must be a string")),
            (b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":[\"echo\"]}", Params("params.name must be a string")),
            (b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"resources/read\",\"params\":{\"name\":\"x\"}}", Params("params.uri must be a string")),
            (b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/list\",\"params\":{\"_meta\":{\"io.modelcontextprotocol/protocolVersion\":1}}}", Params("protocolVersion\"] must be a string")),
        ];
        for (body, want) in cases {
            let got = parse_body(body).unwrap_err();
            let text = String::from_utf8_lossy(body);
            match (want, &got) {
                (Parse(r), BodyError::Parse(g)) => assert!(g.contains(r), "{text}: {g}"),
                (Invalid(r, id), BodyError::InvalidRequest { reason, id: gid }) => {
                    assert_eq!((reason.as_str(), gid.as_deref()), (*r, *id), "{text}")
                }
                (Params(r), BodyError::InvalidParams { reason, .. }) => {
                    assert!(reason.contains(r), "{text}: {reason}")
                }
                _ => panic!("{text}: unexpected {got:?}"),
            }
        }
    }

    #[test]
    fn params_are_required_as_the_declared_revision_defines_the_method() {
        let meta = |v: &str| format!(r#""_meta":{{"{META_PROTOCOL_VERSION}":"{v}"}}"#);
        // Removed in 2026-07-28: the server answers "method not found", not the gateway.
        for method in ["resources/subscribe", "resources/unsubscribe"] {
            let body = format!(
                r#"{{"jsonrpc":"2.0","id":1,"method":"{method}","params":{{{}}}}}"#,
                meta("2026-07-28")
            );
            assert_eq!(one(&body).target, None, "{body}");
            let body = format!(r#"{{"jsonrpc":"2.0","id":1,"method":"{method}"}}"#);
            assert!(matches!(
                parse_body_for(body.as_bytes(), Some("2026-07-28")),
                Ok(Body::Single(Message { target: None, .. }))
            ));
            // Older or unknown revisions still need the uri.
            for header in [Some("2025-11-25"), Some("1999-01-01"), None] {
                assert!(matches!(
                    parse_body_for(body.as_bytes(), header),
                    Err(BodyError::InvalidParams { .. })
                ));
            }
        }
        // A uri that is sent is still judged by the policy.
        let body = format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"resources/subscribe","params":{{"uri":"a://b",{}}}}}"#,
            meta("2026-07-28")
        );
        assert_eq!(one(&body).target, Some(Target::Resource("a://b".into())));
        // Tasks name their task.
        let body = format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"tasks/cancel","params":{{"taskId":"t\u002d1",{}}}}}"#,
            meta("2026-07-28")
        );
        assert_eq!(one(&body).task_id.as_deref(), Some("t-1"));
        let body = r#"{"jsonrpc":"2.0","id":1,"method":"tasks/get","params":{"taskId":7}}"#;
        assert!(matches!(
            parse(body),
            Err(BodyError::InvalidParams { reason, .. }) if reason == "params.taskId must be a string"
        ));
    }

    #[test]
    fn duplicate_keys_inside_arguments_are_left_to_the_server() {
        // Parsing does not read arguments; argument constraints judge duplicates on their paths.
        let m = one(
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"a":1,"a":2}}}"#,
        );
        assert_eq!(m.target, Some(Target::Tool("echo".into())));
    }

    #[test]
    fn large_objects_find_duplicates() {
        let mut body = String::from(r#"{"jsonrpc":"2.0","id":1,"method":"x","params":{"#);
        for i in 0..500 {
            body.push_str(&format!("\"k{i}\":{i},"));
        }
        body.push_str(r#""k250":0}}"#);
        assert!(
            matches!(parse(&body), Err(BodyError::InvalidRequest { reason, .. }) if reason == "duplicate key \"k250\" in params")
        );
    }
}
