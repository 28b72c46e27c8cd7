//! The answer to an approved request that the filter rewrites: a list request (`tools/list`,
//! `prompts/list`, `resources/list`, `resources/templates/list`) filtered for its caller, a
//! `tools/call` whose result a `contracts.results` rule scans, or any answer whose task ids
//! are sealed. A JSON answer is held to its end and spliced; an SSE answer is framed event
//! by event and each event rewritten as it completes (nothing waits for the stream's end).
//! When the configuration learns tools, every tool of a `tools/list` answer is learned
//! first (annotations, definition hash: see [`crate::catalog::toolstate`]; its inputSchema
//! for call checks: [`crate::catalog::schemas`]); a tool whose pin refuses it, or whose
//! `x-mcp-header`s are invalid, is left out for every caller. An answer the filter cannot
//! read (encoded, of another media type, too large) is refused, never passed on unread.

use std::rc::Rc;

use proxy_wasm::hostcalls;
use proxy_wasm::types::{Action, BufferType, LogLevel, MapType};

use super::host;
use super::log;
use super::report;
use super::shared::Catalog;
use super::shared::Shared;
use crate::catalog::tooldef::Hints;
use crate::config::Hold;
use crate::contract::{Action as Verdict, ResultRule};
use crate::identity::ownership::seal_task_ids;
use crate::identity::Identity;
use crate::report::reject::{Code, Rejection};
use crate::response::cachescope::privatize_cache_scope;
use crate::response::listfilter::{filter_list, visible, ListKind, ListRequest};
use crate::response::media_type;
use crate::response::sse::{rewrite_event, SseFramer};

/// Largest answer held for rewriting, unless a results rule sets its own `max_bytes`; a
/// larger one is refused (fail closed).
const MAX_HELD_BYTES: usize = 8 << 20;

/// What happens to the answer of a list request.
#[derive(Debug, Default)]
enum Response {
    /// Passed on untouched.
    #[default]
    Untouched,
    /// `application/json`: body buffered to its end, then rewritten. Its headers are held
    /// too with `hold: request` (a failure can still become a 502); with `hold: body` they go
    /// on (a paused header callback would stop the body callbacks in an Envoy without
    /// `allow_on_headers_stop_iteration`), and a failure replaces the body instead.
    Buffering { size: usize, headers_sent: bool },
    /// `text/event-stream`: events framed as they pass; the answer's event rewritten.
    Streaming(SseFramer),
    /// A local reply replaced the answer.
    Replaced,
    /// An SSE answer that could not be filtered: an error event was sent in its place and
    /// the rest of the stream is dropped.
    Dropping,
}

/// What an answer's JSON-RPC message becomes.
enum Rewrite {
    /// A list answer, filtered for the caller: one message, the answer.
    List(ListRequest),
    /// Any message of the answer (the result, task status notifications): its task ids
    /// sealed to the caller (`ownership.tasks`).
    Tasks,
    /// Every message of a `tools/call` answer, scanned by its results rule.
    Result(Box<Scanned>),
}

/// What scans a `tools/call` answer.
pub struct Scanned {
    /// The tool, for metrics and reasons (in a batch, the first call a rule covers).
    pub tool: String,
    /// The call's rule (in a batch, [`ResultRule::strictest`] of its calls' rules).
    pub rule: ResultRule,
    /// Task ids are sealed too (`ownership.tasks`), after the scan.
    pub seal: bool,
    /// The request's `x-request-id`, for the audit line.
    pub request_id: Option<String>,
}

pub struct Answer {
    shared: Rc<Shared>,
    rewrite: Rewrite,
    /// The request's id as JSON text, for the error that replaces an unreadable answer.
    id: String,
    identity: Identity,
    /// The cluster the request went to (empty unless the configuration learns tools).
    upstream: String,
    response: Response,
}

impl Answer {
    pub fn new(
        shared: Rc<Shared>,
        list: ListRequest,
        identity: Identity,
        upstream: String,
    ) -> Answer {
        Answer {
            shared,
            id: list.id.clone(),
            rewrite: Rewrite::List(list),
            identity,
            upstream,
            response: Response::Untouched,
        }
    }

    /// The answer to a request whose answer may carry task ids (`id`: the request's id).
    pub fn tasks(shared: Rc<Shared>, id: String, identity: Identity) -> Answer {
        Answer {
            shared,
            rewrite: Rewrite::Tasks,
            id,
            identity,
            upstream: String::new(),
            response: Response::Untouched,
        }
    }

    /// The answer to a `tools/call` (`id`: the request's id) scanned as `scanned` says.
    pub fn result(shared: Rc<Shared>, id: String, identity: Identity, scanned: Scanned) -> Answer {
        Answer {
            shared,
            rewrite: Rewrite::Result(Box::new(scanned)),
            id,
            identity,
            upstream: String::new(),
            response: Response::Untouched,
        }
    }

    /// What the answer is, for the reasons it is refused.
    fn what(&self) -> &'static str {
        match self.rewrite {
            Rewrite::List(_) => "the list answer",
            Rewrite::Tasks => "the answer",
            Rewrite::Result(_) => "the tool result",
        }
    }

    /// The most the filter holds of the answer (or of one event); over it the answer is
    /// refused: a results rule's `max_bytes`, else [`MAX_HELD_BYTES`].
    fn limit(&self) -> usize {
        match &self.rewrite {
            Rewrite::Result(scanned) => scanned.rule.max_bytes.map_or(MAX_HELD_BYTES, |max| {
                usize::try_from(max).unwrap_or(usize::MAX)
            }),
            _ => MAX_HELD_BYTES,
        }
    }

    /// The answer's head: a list answer is held (JSON) or framed (SSE); any other passes.
    pub fn on_headers(&mut self, end_of_stream: bool) -> Action {
        if end_of_stream {
            return Action::Continue;
        }
        // One read of the whole map: each host call costs more than the lookups.
        let headers = match host::header_map(MapType::HttpResponseHeaders) {
            Ok(headers) => headers,
            Err(e) => return self.refuse(format!("cannot read the answer's headers: {e}")),
        };
        let values = |name: &'static str| headers.values(name).map(String::from_utf8_lossy);
        if !headers.values(":status").eq([&b"200"[..]]) {
            return Action::Continue;
        }
        // The request went upstream without Accept-Encoding, so an encoded answer is one
        // the filter cannot read: refused rather than shown unfiltered (every value).
        let encoding = values("content-encoding").collect::<Vec<_>>().join(", ");
        let identity = |coding: &str| coding.trim().eq_ignore_ascii_case("identity");
        if !encoding.is_empty() && !encoding.split(',').all(identity) {
            return self.refuse(format!(
                "{} has Content-Encoding {encoding:?} and cannot be filtered",
                self.what()
            ));
        }
        let media = media_type(&values("content-type").next().unwrap_or_default());
        let (response, action) = match media.as_str() {
            "application/json" => match self.shared.config.hold {
                Hold::Request => (
                    Response::Buffering {
                        size: 0,
                        headers_sent: false,
                    },
                    Action::Pause,
                ),
                Hold::Body => (
                    Response::Buffering {
                        size: 0,
                        headers_sent: true,
                    },
                    Action::Continue,
                ),
            },
            "text/event-stream" => (Response::Streaming(SseFramer::default()), Action::Continue),
            other => {
                return self.refuse(format!(
                    "{} is {other:?}, neither JSON nor an event stream",
                    self.what()
                ))
            }
        };
        // The body may change length: it goes on without one.
        if values("content-length").next().is_some() {
            if let Err(status) =
                hostcalls::set_map_value(MapType::HttpResponseHeaders, "content-length", None)
            {
                return self.refuse(format!("cannot remove content-length: {status:?}"));
            }
        }
        self.response = response;
        action
    }

    pub fn on_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let limit = self.limit();
        match &mut self.response {
            Response::Untouched => Action::Continue,
            Response::Replaced => Action::Pause,
            Response::Dropping => replace_chunk(body_size, b""),
            Response::Buffering { size, .. } => {
                *size = body_size;
                if body_size > limit {
                    let reason = format!("{} exceeds {limit} bytes", self.what());
                    return self.refuse_buffered(body_size, reason);
                }
                if !end_of_stream {
                    return Action::Pause;
                }
                self.finish_buffered()
            }
            Response::Streaming(framer) => {
                let chunk = match hostcalls::get_buffer(BufferType::HttpResponseBody, 0, body_size)
                {
                    Ok(chunk) => chunk.unwrap_or_default(),
                    Err(status) => {
                        let reason = format!("cannot read an answer chunk: {status:?}");
                        return self.drop_stream(body_size, b"", reason, true);
                    }
                };
                let events = framer.push(&chunk);
                let mut out = Vec::with_capacity(chunk.len());
                let mut done = false;
                // A list's answer is one event; task ids may come in any.
                let one_message = matches!(self.rewrite, Rewrite::List(_));
                let mut transform =
                    transform(&self.shared, &self.rewrite, &self.identity, &self.upstream);
                for event in events {
                    if done {
                        out.extend_from_slice(&event);
                        continue;
                    }
                    match rewrite_event(&event, &mut transform) {
                        Some(rewritten) => {
                            out.extend_from_slice(&rewritten);
                            done = one_message;
                        }
                        None => out.extend_from_slice(&event),
                    }
                }
                // An event that never ends could be the answer: it is not held without bound.
                drop(transform);
                let oversized = !done && framer.pending() > limit;
                // After the answer (or at the end), the rest passes as received.
                let finished = done || end_of_stream;
                if finished && !oversized {
                    out.extend_from_slice(&framer.finish());
                }
                if oversized {
                    let reason = format!("an event of {} exceeds {limit} bytes", self.what());
                    return self.drop_stream(body_size, &out, reason, true);
                }
                if finished {
                    self.response = Response::Untouched;
                }
                if out == chunk {
                    return Action::Continue;
                }
                replace_chunk(body_size, &out)
            }
        }
    }

    /// Fails closed before the answer's head went out: a 502 JSON-RPC error replaces it.
    fn refuse(&mut self, reason: String) -> Action {
        self.report_refusal(&reason);
        self.response = Response::Replaced;
        let id = Some(self.id.as_str());
        host::send_rejection(&Rejection::new(Code::BadGateway, reason).with_id(id));
        Action::Pause
    }

    /// Fails closed once the answer's head went out: the current chunk becomes the JSON-RPC
    /// error for the list request (an SSE event when `sse`) and the rest of the answer is
    /// dropped (reset if even that fails). `passed` are the complete events of this chunk
    /// that go on before the error.
    fn drop_stream(
        &mut self,
        body_size: usize,
        passed: &[u8],
        reason: String,
        sse: bool,
    ) -> Action {
        self.report_refusal(&reason);
        self.response = Response::Dropping;
        let id = Some(self.id.as_str());
        let error = Rejection::new(Code::BadGateway, reason)
            .with_id(id)
            .to_json();
        let mut out = passed.to_vec();
        if sse {
            out.extend_from_slice(format!("event: message\ndata: {error}\n\n").as_bytes());
        } else {
            out.extend_from_slice(error.as_bytes());
        }
        replace_chunk(body_size, &out)
    }

    /// Fails closed on a held JSON answer of `size` bytes: a 502 while its headers are held,
    /// else the body becomes the JSON-RPC error and the rest of the answer is dropped.
    fn refuse_buffered(&mut self, size: usize, reason: String) -> Action {
        match self.response {
            Response::Buffering {
                headers_sent: true, ..
            } => self.drop_stream(size, b"", reason, false),
            _ => self.refuse(reason),
        }
    }

    /// Logs why the answer is refused; a tool result refused unread counts as blocked.
    fn report_refusal(&self, reason: &str) {
        log(LogLevel::Warn, &format!("mcp-guard: {reason}"));
        if let Rewrite::Result(scanned) = &self.rewrite {
            let shared = &self.shared;
            let request_id = scanned.request_id.as_deref();
            let (metrics, config, tool) = (&shared.metrics, &shared.config, &scanned.tool);
            report::result(
                metrics,
                config,
                request_id,
                tool,
                "blocked",
                &[],
                Some(reason),
            );
        }
    }

    /// HTTP/2 answers may end with trailers: a held JSON answer is complete then.
    pub fn on_trailers(&mut self) -> Action {
        match self.response {
            Response::Buffering { .. } => self.finish_buffered(),
            Response::Replaced => Action::Pause,
            _ => Action::Continue,
        }
    }

    /// Rewrites the complete held JSON answer (if it needs it) and lets it go.
    fn finish_buffered(&mut self) -> Action {
        let Response::Buffering { size, .. } = self.response else {
            return Action::Continue;
        };
        let body = match hostcalls::get_buffer(BufferType::HttpResponseBody, 0, size) {
            Ok(body) => body.unwrap_or_default(),
            Err(status) => {
                let reason = format!("cannot read {}: {status:?}", self.what());
                return self.refuse_buffered(size, reason);
            }
        };
        let rewritten =
            transform(&self.shared, &self.rewrite, &self.identity, &self.upstream)(&body);
        let Some(rewritten) = rewritten else {
            log(
                LogLevel::Debug,
                "mcp-guard: answer passed unchanged (nothing to drop or seal)",
            );
            self.response = Response::Untouched;
            return Action::Continue;
        };
        match hostcalls::set_buffer(BufferType::HttpResponseBody, 0, size, &rewritten) {
            Ok(()) => {
                self.response = Response::Untouched;
                Action::Continue
            }
            Err(status) => {
                let reason = format!("cannot replace {}: {status:?}", self.what());
                self.refuse_buffered(size, reason)
            }
        }
    }
}

/// Replaces the current response chunk (`size` bytes) with `bytes`; if the host refuses,
/// the stream is reset rather than let the unfiltered chunk through.
pub fn replace_chunk(size: usize, bytes: &[u8]) -> Action {
    if let Err(status) = hostcalls::set_buffer(BufferType::HttpResponseBody, 0, size, bytes) {
        log(
            LogLevel::Error,
            &format!("mcp-guard: cannot replace an answer chunk, resetting: {status:?}"),
        );
        let _ = hostcalls::reset_http_response();
    }
    Action::Continue
}

/// One JSON-RPC message of an answer as the caller receives it; `None`: unchanged. (A free
/// function over the answer's parts, so the SSE framer can stay borrowed meanwhile.)
fn transform<'a>(
    shared: &'a Shared,
    rewrite: &'a Rewrite,
    identity: &'a Identity,
    upstream: &'a str,
) -> impl FnMut(&[u8]) -> Option<Vec<u8>> + 'a {
    let mut keep = match rewrite {
        Rewrite::List(list) => Some(keeper(shared, list.kind, identity, upstream)),
        Rewrite::Tasks | Rewrite::Result(_) => None,
    };
    move |data: &[u8]| match (rewrite, keep.as_mut()) {
        (Rewrite::List(list), Some(keep)) => for_caller(data, list, keep),
        (Rewrite::Result(scanned), _) => {
            let scanned_data = scan(shared, scanned, data);
            if !scanned.seal {
                return scanned_data;
            }
            seal(shared, identity, scanned_data.as_deref().unwrap_or(data)).or(scanned_data)
        }
        _ => seal(shared, identity, data),
    }
}

/// A message with its task ids sealed to the caller (`ownership.tasks`); `None`: unchanged.
fn seal(shared: &Shared, identity: &Identity, data: &[u8]) -> Option<Vec<u8>> {
    let ownership = shared.config.ownership.as_ref()?;
    seal_task_ids(data, &ownership.sealer, identity)
}

/// A message of a tool's answer after its results rule's scan (`None`: unchanged); what
/// the scan found is counted and audited, never the matched text.
fn scan(shared: &Shared, scanned: &Scanned, data: &[u8]) -> Option<Vec<u8>> {
    let scan = scanned.rule.scan(&scanned.tool, data);
    let what = match (&scan.blocked, scanned.rule.action) {
        _ if scan.counts.is_empty() && scan.blocked.is_none() => return scan.body,
        (Some(reason), _) => {
            log(LogLevel::Warn, &format!("mcp-guard: {reason}"));
            "blocked"
        }
        (None, Verdict::Redact) => "redacted",
        (None, _) => "logged",
    };
    let request_id = scanned.request_id.as_deref();
    let (counts, reason) = (&scan.counts, scan.blocked.as_deref());
    let (metrics, config) = (&shared.metrics, &shared.config);
    report::result(
        metrics,
        config,
        request_id,
        &scanned.tool,
        what,
        counts,
        reason,
    );
    scan.body
}

/// A list answer as its caller may see it: the elements it may not see dropped, and, since
/// the answer is then this caller's view, never left marked for shared caches
/// (`cacheScope: "public"` becomes private). `None`: unchanged.
fn for_caller(
    answer: &[u8],
    list: &ListRequest,
    keep: &mut dyn FnMut(&str, &[u8]) -> bool,
) -> Option<Vec<u8>> {
    let filtered = filter_list(answer, list, keep);
    privatize_cache_scope(filtered.as_deref().unwrap_or(answer)).or(filtered)
}

/// Whether the caller sees an element of a `kind` list: for a tool, after learning its
/// definition when the configuration learns tools.
fn keeper<'a>(
    shared: &'a Shared,
    kind: ListKind,
    identity: &Identity,
    upstream: &'a str,
) -> impl FnMut(&str, &[u8]) -> bool + 'a {
    let rules = shared.config.policy.applicable(identity);
    let learning = kind == ListKind::Tools && shared.config.learns_tools;
    let tools = shared.catalog(upstream);
    move |name, element| {
        if !learning {
            return visible(&rules, kind, name, &Hints::UNKNOWN.effective());
        }
        match shared.learn_listed_tool(&tools, name, element) {
            Some(hints) => visible(&rules, kind, name, &hints.effective()),
            None => false,
        }
    }
}

impl Shared {
    /// Learns one element named `name` of a `tools/list` answer of `tools`' upstream (its
    /// record, its schema), whoever asked for the list. `Some`: its hints, for a tool
    /// callers may see; `None`: every caller must be kept from it (its pin refuses it, or
    /// its `x-mcp-header`s are invalid).
    pub fn learn_listed_tool(
        &self,
        tools: &Catalog<'_>,
        name: &str,
        element: &[u8],
    ) -> Option<Hints> {
        let remembered = self.defs.borrow_mut().read(element);
        // Learned before from this upstream, which has not written a record since: the
        // same record, the same conclusion (an element's name is part of its bytes).
        let version = tools.store.version();
        if let Some(visible) = remembered
            .as_ref()
            .and_then(|r| r.listed(tools.upstream, version))
        {
            return visible;
        }
        let def = remembered.as_ref().map(|r| &r.def);
        let def = def.filter(|d| d.name == name);
        let learned = tools.learn_def(name, def);
        if learned.drifted_now {
            self.report_drift(tools.upstream, name);
        }
        // A tool whose `x-mcp-header`s are invalid is one clients must exclude.
        let usable = match def {
            Some(def) if self.config.schema_checks.any() => {
                self.learn_listed_schema(tools.upstream, def)
            }
            _ => true,
        };
        let visible =
            (usable && learned.status.pin.refusal().is_none()).then_some(learned.status.hints);
        // Kept only if this learning wrote nothing: a write bumps the version.
        if let Some(remembered) = remembered.filter(|_| tools.store.version() == version) {
            remembered.remember_listed(tools.upstream, version, visible);
        }
        visible
    }
}
