//! The answer to an approved list request (`tools/list`, `prompts/list`, `resources/list`,
//! `resources/templates/list`), filtered for its caller: a JSON answer is held to its end
//! and spliced; an SSE answer is framed event by event and only the answer's event changes.

use std::rc::Rc;

use proxy_wasm::hostcalls;
use proxy_wasm::types::{Action, BufferType, LogLevel, MapType};

use super::host;
use super::log;
use super::shared::Shared;
use crate::auth::Identity;
use crate::listfilter::{filter_list, rewrite_event, visible, ListRequest, SseFramer};
use crate::reject::{Code, Rejection};

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
}

pub struct ListAnswer {
    shared: Rc<Shared>,
    list: ListRequest,
    identity: Identity,
    response: Response,
}

impl ListAnswer {
    pub fn new(shared: Rc<Shared>, list: ListRequest, identity: Identity) -> ListAnswer {
        ListAnswer {
            shared,
            list,
            identity,
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
        let encoding = header("content-encoding");
        if !encoding.is_empty() && !encoding.trim().eq_ignore_ascii_case("identity") {
            log(
                LogLevel::Warn,
                &format!(
                    "mcp-guard: a list answer with Content-Encoding {encoding:?} is not filtered"
                ),
            );
            return Action::Continue;
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
            _ => return Action::Continue,
        };
        // The body may change length: it goes on without one.
        if let Err(status) =
            hostcalls::set_map_value(MapType::HttpResponseHeaders, "content-length", None)
        {
            log(
                LogLevel::Error,
                &format!("mcp-guard: cannot remove content-length: {status:?}"),
            );
            return Action::Continue;
        }
        self.response = response;
        action
    }

    pub fn on_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        match &mut self.response {
            Response::Untouched => Action::Continue,
            Response::Replaced => Action::Pause,
            Response::Buffering { size } => {
                *size = body_size;
                if body_size > MAX_LIST_BYTES {
                    self.response = Response::Replaced;
                    let reason = format!("the list answer exceeds {MAX_LIST_BYTES} bytes");
                    log(LogLevel::Warn, &format!("mcp-guard: {reason}"));
                    let id = Some(self.list.id.as_str());
                    host::send_rejection(&Rejection::new(Code::BadGateway, reason).with_id(id));
                    return Action::Pause;
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
                        log(
                            LogLevel::Error,
                            &format!("mcp-guard: cannot read an answer chunk: {status:?}"),
                        );
                        return Action::Continue;
                    }
                };
                let events = framer.push(&chunk);
                let mut out = Vec::with_capacity(chunk.len());
                let mut done = false;
                let rules = self.shared.config.policy.applicable(&self.identity);
                let list = &self.list;
                let mut keep = |value: &str| visible(&rules, list.kind, value);
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
                // After the answer (or at the end), the rest passes as received.
                if done || end_of_stream {
                    out.extend_from_slice(&framer.finish());
                    self.response = Response::Untouched;
                }
                if out != chunk {
                    if let Err(status) =
                        hostcalls::set_buffer(BufferType::HttpResponseBody, 0, body_size, &out)
                    {
                        log(
                            LogLevel::Error,
                            &format!("mcp-guard: cannot replace an answer chunk: {status:?}"),
                        );
                    }
                }
                Action::Continue
            }
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
        let Response::Buffering { size } = std::mem::take(&mut self.response) else {
            return Action::Continue;
        };
        let body = match hostcalls::get_buffer(BufferType::HttpResponseBody, 0, size) {
            Ok(body) => body.unwrap_or_default(),
            Err(status) => {
                log(
                    LogLevel::Error,
                    &format!("mcp-guard: cannot read the list answer: {status:?}"),
                );
                return Action::Continue;
            }
        };
        let rules = self.shared.config.policy.applicable(&self.identity);
        let mut keep = |value: &str| visible(&rules, self.list.kind, value);
        match filter_list(&body, &self.list, &mut keep) {
            Some(rewritten) => {
                if let Err(status) =
                    hostcalls::set_buffer(BufferType::HttpResponseBody, 0, size, &rewritten)
                {
                    log(
                        LogLevel::Error,
                        &format!("mcp-guard: cannot replace the list answer: {status:?}"),
                    );
                }
            }
            None => log(
                LogLevel::Debug,
                "mcp-guard: list answer passed unchanged (nothing to drop, or not a list result)",
            ),
        }
        Action::Continue
    }
}
