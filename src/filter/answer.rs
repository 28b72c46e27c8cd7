//! The answer to an approved list request (`tools/list`, `prompts/list`, `resources/list`,
//! `resources/templates/list`), filtered for its caller: a JSON answer is held to its end
//! and spliced; an SSE answer is framed event by event and only the answer's event changes.
//! When the configuration learns tools, every tool of a `tools/list` answer is learned
//! first (annotations, definition hash: see [`crate::catalog::toolstate`]); a tool whose pin
//! refuses it is left out for every caller.

use std::rc::Rc;

use proxy_wasm::hostcalls;
use proxy_wasm::types::{Action, BufferType, LogLevel, MapType};

use super::host;
use super::log;
use super::shared::Shared;
use crate::catalog::tooldef::Hints;
use crate::catalog::toolstate::UpstreamTools;
use crate::identity::Identity;
use crate::report::reject::{Code, Rejection};
use crate::response::listfilter::{filter_list, visible, ListKind, ListRequest};
use crate::response::sse::{rewrite_event, SseFramer};

/// Largest list answer held for filtering; a larger one is refused (fail closed).
const MAX_LIST_BYTES: usize = 8 << 20;

/// What happens to the answer of a list request.
#[derive(Debug, Default)]
enum Response {
    /// Passed on untouched.
    #[default]
    Untouched,
    /// `application/json`: headers held, body buffered to its end, then rewritten.
    Buffering { size: usize },
    /// `text/event-stream`: events framed as they pass; the answer's event rewritten.
    Streaming(SseFramer),
    /// A local reply replaced the answer.
    Replaced,
    /// An SSE answer that could not be filtered: an error event was sent in its place and
    /// the rest of the stream is dropped.
    Dropping,
}

pub struct ListAnswer {
    shared: Rc<Shared>,
    list: ListRequest,
    identity: Identity,
    /// The cluster the request went to (empty unless the configuration learns tools).
    upstream: String,
    response: Response,
}

impl ListAnswer {
    pub fn new(
        shared: Rc<Shared>,
        list: ListRequest,
        identity: Identity,
        upstream: String,
    ) -> ListAnswer {
        ListAnswer {
            shared,
            list,
            identity,
            upstream,
            response: Response::Untouched,
        }
    }

    /// The answer's head: a list answer is held (JSON) or framed (SSE); any other passes.
    pub fn on_headers(&mut self, end_of_stream: bool) -> Action {
        if end_of_stream {
            return Action::Continue;
        }
        let header = |name: &str| {
            hostcalls::get_map_value(MapType::HttpResponseHeaders, name)
                .ok()
                .flatten()
                .unwrap_or_default()
        };
        if header(":status") != "200" {
            return Action::Continue;
        }
        // The request went upstream without Accept-Encoding, so an encoded answer is one
        // the filter cannot read: refused rather than shown unfiltered.
        let encoding = header("content-encoding");
        if !encoding.is_empty() && !encoding.trim().eq_ignore_ascii_case("identity") {
            return self.refuse(format!(
                "the list answer has Content-Encoding {encoding:?} and cannot be filtered"
            ));
        }
        let content_type = header("content-type");
        let media = content_type
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        let (response, action) = match media.as_str() {
            "application/json" => (Response::Buffering { size: 0 }, Action::Pause),
            "text/event-stream" => (Response::Streaming(SseFramer::default()), Action::Continue),
            other => {
                return self.refuse(format!(
                    "the list answer is {other:?}, neither JSON nor an event stream"
                ))
            }
        };
        // The body may change length: it goes on without one.
        if let Err(status) =
            hostcalls::set_map_value(MapType::HttpResponseHeaders, "content-length", None)
        {
            return self.refuse(format!("cannot remove content-length: {status:?}"));
        }
        self.response = response;
        action
    }

    pub fn on_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        match &mut self.response {
            Response::Untouched => Action::Continue,
            Response::Replaced => Action::Pause,
            Response::Dropping => replace_chunk(body_size, b""),
            Response::Buffering { size } => {
                *size = body_size;
                if body_size > MAX_LIST_BYTES {
                    return self.refuse(format!("the list answer exceeds {MAX_LIST_BYTES} bytes"));
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
                        return self.drop_stream(body_size, b"", reason);
                    }
                };
                let events = framer.push(&chunk);
                let mut out = Vec::with_capacity(chunk.len());
                let mut done = false;
                let list = &self.list;
                let mut keep = keeper(&self.shared, list.kind, &self.identity, &self.upstream);
                for event in events {
                    if done {
                        out.extend_from_slice(&event);
                        continue;
                    }
                    let mut filter = |data: &[u8]| filter_list(data, list, &mut keep);
                    match rewrite_event(&event, &mut filter) {
                        Some(rewritten) => {
                            out.extend_from_slice(&rewritten);
                            done = true;
                        }
                        None => out.extend_from_slice(&event),
                    }
                }
                drop(keep);
                // An event that never ends could be the answer: it is not held without bound.
                let oversized = !done && framer.pending() > MAX_LIST_BYTES;
                // After the answer (or at the end), the rest passes as received.
                let finished = done || end_of_stream;
                if finished && !oversized {
                    out.extend_from_slice(&framer.finish());
                }
                if oversized {
                    let reason =
                        format!("an event of the list answer exceeds {MAX_LIST_BYTES} bytes");
                    return self.drop_stream(body_size, &out, reason);
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
        log(LogLevel::Warn, &format!("mcp-guard: {reason}"));
        self.response = Response::Replaced;
        let id = Some(self.list.id.as_str());
        host::send_rejection(&Rejection::new(Code::BadGateway, reason).with_id(id));
        Action::Pause
    }

    /// Fails closed in the middle of an SSE answer: the current chunk becomes an error event
    /// for the list request and the rest of the stream is dropped (reset if even that fails).
    /// `passed` are the complete events of this chunk that go on before the error.
    fn drop_stream(&mut self, body_size: usize, passed: &[u8], reason: String) -> Action {
        log(LogLevel::Warn, &format!("mcp-guard: {reason}"));
        self.response = Response::Dropping;
        let id = Some(self.list.id.as_str());
        let error = Rejection::new(Code::BadGateway, reason)
            .with_id(id)
            .to_json();
        let mut out = passed.to_vec();
        out.extend_from_slice(format!("event: message\ndata: {error}\n\n").as_bytes());
        replace_chunk(body_size, &out)
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
        let Response::Buffering { size } = std::mem::take(&mut self.response) else {
            return Action::Continue;
        };
        let body = match hostcalls::get_buffer(BufferType::HttpResponseBody, 0, size) {
            Ok(body) => body.unwrap_or_default(),
            Err(status) => return self.refuse(format!("cannot read the list answer: {status:?}")),
        };
        let mut keep = keeper(&self.shared, self.list.kind, &self.identity, &self.upstream);
        let rewritten = filter_list(&body, &self.list, &mut keep);
        drop(keep);
        let Some(rewritten) = rewritten else {
            log(
                LogLevel::Debug,
                "mcp-guard: list answer passed unchanged (nothing to drop, or not a list result)",
            );
            return Action::Continue;
        };
        match hostcalls::set_buffer(BufferType::HttpResponseBody, 0, size, &rewritten) {
            Ok(()) => Action::Continue,
            Err(status) => self.refuse(format!("cannot replace the list answer: {status:?}")),
        }
    }
}

/// Replaces the current response chunk (`size` bytes) with `bytes`; if the host refuses,
/// the stream is reset rather than let the unfiltered chunk through.
fn replace_chunk(size: usize, bytes: &[u8]) -> Action {
    if let Err(status) = hostcalls::set_buffer(BufferType::HttpResponseBody, 0, size, bytes) {
        log(
            LogLevel::Error,
            &format!("mcp-guard: cannot replace an answer chunk, resetting: {status:?}"),
        );
        let _ = hostcalls::reset_http_response();
    }
    Action::Continue
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
    let tools = UpstreamTools {
        store: &host::HostStore,
        config: &shared.config.tools,
        upstream,
    };
    move |name, element| {
        if !learning {
            return visible(&rules, kind, name, &Hints::UNKNOWN.effective());
        }
        let learned = tools.learn_element(name, element);
        if learned.drifted_now {
            shared.report_drift(upstream, name);
        }
        learned.status.pin.refusal().is_none()
            && visible(&rules, kind, name, &learned.status.hints.effective())
    }
}
