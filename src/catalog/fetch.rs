//! The on-demand `tools/list` of a cold gateway: a call needs a tool's record (its pin is
//! unverified) or schema (for `Mcp-Param-*` or contract checks) that this gateway never
//! learned, because the client never listed through it (a stateless 2026-07-28 client, or
//! a fresh Envoy process). The glue then holds the request, lists the upstream's tools
//! itself, learns the answer as it learns a client's, and judges the request again.
//!
//! This module decides: whether a request needs the list, what the gateway's own request
//! is (stateless for a 2026-07-28 client, else within the client's session), how its
//! answer is read (JSON or SSE, page after page), and what a tool still missing from a
//! complete list means. The glue only dispatches.

use serde_json::Value;

use super::toolstate::{Pin, PinState, ToolLookup, ToolStatus, UpstreamTools};
use crate::contract::{Contracts, Mode};
use crate::protocol::headers::HeaderMap;
use crate::protocol::jsonrpc::{Message, Target};
use crate::protocol::revisions::{requires_routing_headers, Revision};
use crate::report::reject::{push_json_string, Code, Rejection};
use crate::response::listfilter::{ListKind, ListRequest};
use crate::response::media_type;
use crate::response::sse::{event_data, SseFramer};
use crate::state::SharedStore;

/// Default `tools.fetch_timeout_ms`.
pub const DEFAULT_FETCH_TIMEOUT_MS: u64 = 2000;
/// Largest accepted `tools.fetch_timeout_ms`.
pub const MAX_FETCH_TIMEOUT_MS: u64 = 60_000;
/// Most pages one fetch follows; a longer list fails the fetch (fail closed).
pub const MAX_PAGES: u32 = 16;
/// After a complete list, a worker does not list the same upstream again for this long: a
/// pinned tool still unknown then is one the server does not have.
pub const RELIST_AFTER_MS: u64 = 5_000;
/// The `Retry-After` of a refusal because the list could not be fetched.
const RETRY_AFTER_SECONDS: &str = "1";

/// What the configuration judges calls by, beyond pins: what makes a tool never learned
/// worth listing for.
#[derive(Debug, Clone, Copy)]
pub struct Wants<'a> {
    /// Argument contracts (they need the tool's schema).
    pub contracts: &'a Contracts,
    /// The `Mcp-Param-*` check (it needs the schema, for a revision that has the headers).
    pub params: bool,
    /// Rules that test annotations (they need the tool's hints).
    pub annotations: bool,
}

/// Whether judging `messages` needs tools this gateway has not learned from `tools`' upstream:
/// a `tools/call` of a pinned tool never seen, or of a tool never learned whose hints or
/// schema `wants` needs. A cold gateway so judges like a warm one.
pub fn needs_list<S: SharedStore>(
    messages: &[Message<'_>],
    tools: &UpstreamTools<'_, S>,
    wants: Wants<'_>,
    header_revision: Option<Revision>,
) -> bool {
    messages.iter().any(|m| {
        let (Some("tools/call"), Some(Target::Tool(tool))) = (m.method.as_deref(), &m.target)
        else {
            return false;
        };
        if tools.status(tool).pin == PinState::Unverified {
            return true;
        }
        let wanted = wants.annotations
            || wants.contracts.argument_mode(tools.upstream, tool) != Mode::Off
            || (wants.params && revision(m, header_revision).is_some_and(requires_routing_headers));
        wanted && tools.live(tool).is_none()
    })
}

/// Whether the gateway's list for `messages` goes stateless: one of them is a 2026-07-28
/// request.
pub fn goes_stateless(messages: &[Message<'_>], header_revision: Option<Revision>) -> bool {
    messages
        .iter()
        .any(|m| revision(m, header_revision).is_some_and(requires_routing_headers))
}

/// The revision a message declares (its `_meta`, else the request's header).
fn revision(message: &Message<'_>, header_revision: Option<Revision>) -> Option<Revision> {
    message
        .meta_protocol_version
        .as_deref()
        .and_then(Revision::parse)
        .or(header_revision)
}

/// How calls are judged after a complete list of `tools`' upstream. A tool the list did
/// not have has no definition to pin: under a trust-on-first-use pin it is judged as not
/// pinned, and the server answers for a tool it does not list as it would without the
/// gateway (the pin takes the first definition a later list shows). A SHA-256 pin stays
/// unverified, and so does every tool of an upstream at its bound, which may have listed
/// it without the gateway keeping it.
pub struct AfterList<'a, 'b, S: SharedStore> {
    pub tools: &'b UpstreamTools<'a, S>,
}

impl<S: SharedStore> ToolLookup for AfterList<'_, '_, S> {
    fn status(&self, tool: &str) -> ToolStatus {
        let status = self.tools.status(tool);
        let first_use =
            self.tools.config.pin(self.tools.upstream, tool) == Some(Pin::TrustOnFirstUse);
        if status.pin == PinState::Unverified && first_use && self.tools.below_bound() {
            return ToolStatus {
                pin: PinState::NotPinned,
                ..status
            };
        }
        status
    }
}

/// After a complete list: the first call of a pinned tool the list did not have and no
/// definition can verify ([`AfterList`]). Calling a tool the server does not list is an
/// unknown tool (JSON-RPC -32602), answered here so that no call a pin cannot verify
/// reaches the server.
pub fn unlisted_call<S: SharedStore>(
    messages: &[Message<'_>],
    tools: &AfterList<'_, '_, S>,
) -> Option<Rejection> {
    messages.iter().find_map(|m| {
        let (Some("tools/call"), Some(Target::Tool(tool))) = (m.method.as_deref(), &m.target)
        else {
            return None;
        };
        (tools.status(tool).pin == PinState::Unverified).then(|| {
            let reason = format!("Unknown tool: {tool}");
            Rejection::new(Code::InvalidParams, reason).with_id(m.id)
        })
    })
}

/// The refusal of a request whose list could not be fetched (`why`): retry later.
pub fn unavailable(why: &str, id: Option<&str>) -> Rejection {
    let reason = format!("the upstream's tools could not be listed to judge this call: {why}");
    Rejection::new(Code::Unavailable, reason)
        .with_id(id)
        .with_header("retry-after", RETRY_AFTER_SECONDS.to_owned())
}

/// The gateway's own `tools/list` to one upstream, page by page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListFetch {
    /// The client's `:path` and `:authority`: the route the client's request took.
    pub path: String,
    pub authority: String,
    /// A 2026-07-28 client: the list goes stateless (`_meta`, `Mcp-Method`); else it goes
    /// within the client's session.
    pub stateless: bool,
    /// The client's `MCP-Protocol-Version` header (session mode).
    pub protocol_version: Option<String>,
    /// The upstream's own session id (unsealed), session mode.
    pub session: Option<String>,
    /// What `upstream.inject` adds for the cluster: the gateway's credentials, never the
    /// client's.
    pub credentials: Vec<(String, String)>,
    page: u32,
    cursor: Option<String>,
}

/// One page of the answer, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// The JSON-RPC answer, for the learning path of list answers.
    pub answer: Vec<u8>,
    pub next_cursor: Option<String>,
}

impl ListFetch {
    /// A fetch for a request the client sent with `headers` (names in lower case).
    pub fn for_request(
        headers: &HeaderMap,
        stateless: bool,
        credentials: Vec<(String, String)>,
    ) -> ListFetch {
        let header = |name: &str| {
            let value = headers.values(name).next()?;
            std::str::from_utf8(value).ok().map(str::to_owned)
        };
        let session_header = |name: &str| header(name).filter(|_| !stateless);
        ListFetch {
            path: header(":path").unwrap_or_else(|| "/".into()),
            authority: header(":authority").unwrap_or_default(),
            stateless,
            protocol_version: session_header("mcp-protocol-version"),
            session: session_header("mcp-session-id"),
            credentials,
            page: 0,
            cursor: None,
        }
    }

    /// The request's `id` (JSON text): one per page.
    pub fn id(&self) -> String {
        format!("\"mcp-guard-tools-{}\"", self.page)
    }

    /// The request to learn a page's answer as the answer to.
    pub fn list_request(&self) -> ListRequest {
        ListRequest {
            kind: ListKind::Tools,
            id: self.id(),
        }
    }

    /// The headers of the current page's request.
    pub fn headers(&self) -> Vec<(&str, &str)> {
        let mut headers = vec![
            (":method", "POST"),
            (":path", self.path.as_str()),
            (":authority", self.authority.as_str()),
            ("content-type", "application/json"),
            ("accept", "application/json, text/event-stream"),
        ];
        if self.stateless {
            headers.push(("mcp-method", "tools/list"));
            headers.push(("mcp-protocol-version", Revision::R2026_07_28.as_str()));
        }
        if let Some(version) = &self.protocol_version {
            headers.push(("mcp-protocol-version", version));
        }
        if let Some(session) = &self.session {
            headers.push(("mcp-session-id", session));
        }
        headers.extend(
            self.credentials
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_str())),
        );
        headers
    }

    /// The body of the current page's request.
    pub fn body(&self) -> Vec<u8> {
        let mut params = Vec::new();
        if let Some(cursor) = &self.cursor {
            let mut member = String::from("\"cursor\":");
            push_json_string(&mut member, cursor);
            params.push(member);
        }
        if self.stateless {
            params.push(format!(
                "\"_meta\":{{\"io.modelcontextprotocol/protocolVersion\":\"{}\",\
                 \"io.modelcontextprotocol/clientCapabilities\":{{}},\
                 \"io.modelcontextprotocol/clientInfo\":{{\"name\":\"mcp-guard\",\"version\":\"{}\"}}}}",
                Revision::R2026_07_28.as_str(),
                env!("CARGO_PKG_VERSION"),
            ));
        }
        format!(
            "{{\"jsonrpc\":\"2.0\",\"id\":{},\"method\":\"tools/list\",\"params\":{{{}}}}}",
            self.id(),
            params.join(",")
        )
        .into_bytes()
    }

    /// Reads the answer to the current page: `status` (`None`: no answer at all), its
    /// `content_type` and body. Anything but a 200 carrying a `tools/list` result fails.
    pub fn read(
        &self,
        status: Option<&str>,
        content_type: &str,
        body: &[u8],
    ) -> Result<Page, String> {
        match status {
            Some("200") => {}
            Some(other) => return Err(format!("HTTP status {other}")),
            None => return Err("no answer (connection failed or timed out)".into()),
        }
        let answer = match media_type(content_type).as_str() {
            "application/json" => body.to_vec(),
            "text/event-stream" => self.answer_event(body)?,
            other => return Err(format!("the answer is {other:?}, neither JSON nor SSE")),
        };
        let message: Value =
            serde_json::from_slice(&answer).map_err(|e| format!("unreadable answer: {e}"))?;
        let expected: Value = serde_json::from_slice(self.id().as_bytes()).unwrap_or_default();
        if message.get("id") != Some(&expected) {
            return Err("the answer is not the answer to the list request".into());
        }
        if let Some(error) = message.get("error") {
            return Err(format!("the server answered with an error: {error}"));
        }
        let result = message.get("result");
        if !result
            .and_then(|r| r.get("tools"))
            .is_some_and(Value::is_array)
        {
            return Err("the answer has no tools list".into());
        }
        let next_cursor = match result.and_then(|r| r.get("nextCursor")) {
            None | Some(Value::Null) => None,
            Some(Value::String(cursor)) => Some(cursor.clone()),
            Some(_) => return Err("nextCursor is not a string".into()),
        };
        Ok(Page {
            answer,
            next_cursor,
        })
    }

    /// The data of the SSE event that answers the current page.
    fn answer_event(&self, body: &[u8]) -> Result<Vec<u8>, String> {
        let mut framer = SseFramer::default();
        let mut events = framer.push(body);
        events.push(framer.finish());
        let expected: Value = serde_json::from_slice(self.id().as_bytes()).unwrap_or_default();
        events
            .iter()
            .filter_map(|event| event_data(event))
            .find(|data| {
                serde_json::from_slice::<Value>(data).is_ok_and(|m| m.get("id") == Some(&expected))
            })
            .ok_or_else(|| "the event stream has no answer to the list request".into())
    }

    /// Moves on after a page: `Ok(true)` when `next_cursor` asks for another page.
    pub fn advance(&mut self, next_cursor: Option<String>) -> Result<bool, String> {
        let Some(cursor) = next_cursor else {
            return Ok(false);
        };
        if self.page + 1 >= MAX_PAGES {
            return Err(format!("the list has more than {MAX_PAGES} pages"));
        }
        self.page += 1;
        self.cursor = Some(cursor);
        Ok(true)
    }
}

#[cfg(test)]
mod tests;
