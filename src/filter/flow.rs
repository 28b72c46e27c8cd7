//! One request's way through the gate, as a small state machine the host drives.
//!
//! The request head is held (`Pause` from the headers callback; the plugin must run with
//! `allow_on_headers_stop_iteration: true` so the body keeps arriving) while two things
//! complete in either order: authentication (which may wait for signing keys) and, for a
//! POST, the body (buffered by Envoy, read once when the stream ends or trailers come).
//! Only then does the gate decide. A flow is shared (`Rc<RefCell<_>>`) so that whichever
//! context receives new keys can resume the requests waiting for them.

use std::cell::RefCell;
use std::rc::{Rc, Weak};

use proxy_wasm::hostcalls;
use proxy_wasm::types::{Action, BufferType, LogLevel, MapType};

use super::host;
use super::log;
use super::shared::Shared;
use crate::auth::Identity;
use crate::authn::{AuthStep, Peer};
use crate::gate::{BodyRule, Gate, HeadVerdict, RequestHead};
use crate::listfilter::{filter_list, rewrite_event, visible, ListRequest, SseFramer};
use crate::policy::Decision;
use crate::reject::{Code, Rejection};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Not an MCP request, or approved: nothing more to do.
    Passing,
    /// Held until authentication and (if any) the body are complete.
    Holding,
    /// A local reply was sent.
    Rejected,
}

pub struct Flow {
    shared: Rc<Shared>,
    context_id: u32,
    head: RequestHead,
    rule: Option<BodyRule>,
    /// The caller, once authenticated.
    identity: Option<Identity>,
    /// Set while waiting for keys: the provider, and whether its keys lack the token's kid.
    waiting: Option<(usize, bool)>,
    /// When waiting for keys must end; set once, kept across retries.
    wait_deadline_ms: Option<u64>,
    body_size: usize,
    body_complete: bool,
    state: State,
    /// An approved single list request: its answer is filtered for the caller.
    list: Option<ListRequest>,
    response: Response,
}

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

impl Flow {
    pub fn new(shared: Rc<Shared>, context_id: u32) -> Flow {
        Flow {
            shared,
            context_id,
            head: RequestHead::default(),
            rule: None,
            identity: None,
            waiting: None,
            wait_deadline_ms: None,
            body_size: 0,
            body_complete: false,
            state: State::Passing,
            list: None,
            response: Response::Untouched,
        }
    }

    fn gate(&self) -> Gate<'_> {
        Gate {
            config: &self.shared.config,
        }
    }

    pub fn on_headers(this: &Rc<RefCell<Flow>>, end_of_stream: bool) -> Action {
        let mut flow = this.borrow_mut();
        let pairs = match hostcalls::get_map_bytes(MapType::HttpRequestHeaders) {
            Ok(pairs) => pairs,
            Err(status) => {
                return flow.internal(&format!("cannot read request headers: {status:?}"))
            }
        };
        flow.head = RequestHead::new(pairs, end_of_stream);
        let gate = flow.gate();
        let verdict = gate
            .metadata_reply(&flow.head)
            .unwrap_or_else(|| gate.on_head(&flow.head));
        match verdict {
            HeadVerdict::Forward => Action::Continue,
            HeadVerdict::Respond(reply) => {
                flow.state = State::Rejected;
                host::send_reply(&reply);
                Action::Pause
            }
            HeadVerdict::Reject(rejection) => flow.reject(&rejection),
            HeadVerdict::Endpoint(rule) => {
                flow.rule = rule;
                flow.body_complete = rule.is_none();
                flow.state = State::Holding;
                flow.authenticate(this);
                flow.advance()
            }
        }
    }

    pub fn on_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        match self.state {
            State::Passing => return Action::Continue,
            State::Rejected => return Action::Pause,
            State::Holding => {}
        }
        // Checked on every chunk: a body is refused as soon as it outgrows the limit.
        if body_size as u64 > self.shared.config.max_body_bytes {
            let rejection = self.gate().too_large();
            return self.reject(&rejection);
        }
        self.body_size = body_size;
        self.body_complete = end_of_stream;
        self.advance()
    }

    /// HTTP/2 and gRPC-style clients may end the body with trailers instead of END_STREAM.
    pub fn on_trailers(&mut self) -> Action {
        if self.state == State::Holding {
            self.body_complete = true;
        }
        self.advance()
    }

    /// Keys of the provider this flow waits for changed (or the wait timed out): try again.
    /// Called from another context's callback, with this flow's context made effective.
    pub fn retry_authentication(this: &Rc<RefCell<Flow>>, timed_out: bool) {
        let mut flow = this.borrow_mut();
        let Some((provider, unknown_kid)) = flow.waiting.take() else {
            return;
        };
        if timed_out {
            let rejection = flow.gate().keys_unavailable(provider, unknown_kid);
            flow.reject(&rejection);
            return;
        }
        flow.authenticate(this);
        if flow.advance() == Action::Continue {
            if let Err(status) = hostcalls::resume_http_request() {
                log(
                    LogLevel::Error,
                    &format!("mcp-guard: cannot resume a request: {status:?}"),
                );
            }
        }
    }

    /// Runs the authentication step; on success edits the held headers for the upstream.
    fn authenticate(&mut self, this: &Rc<RefCell<Flow>>) {
        let peer = self.peer();
        let now_ms = host::now_ms();
        let step = {
            let keys = self.shared.keys.borrow();
            let mut cache = self.shared.cache.borrow_mut();
            self.gate()
                .authenticate(&self.head, &peer, &*keys, &mut cache, now_ms / 1000)
        };
        match step {
            AuthStep::Authenticated(identity) => {
                let cluster = if self.shared.config.upstream.injects() {
                    host::property(&["xds", "cluster_name"])
                } else {
                    None
                };
                let credential_headers = self
                    .shared
                    .config
                    .auth
                    .as_ref()
                    .map_or(&[][..], |a| a.header_names());
                let mut edits = self.shared.config.upstream.edits(
                    &identity,
                    cluster.as_deref(),
                    credential_headers,
                );
                // Removing an absent header would cost a host call on every request.
                edits
                    .remove
                    .retain(|name| self.head.values(name).next().is_some());
                host::apply(&edits);
                self.identity = Some(identity);
            }
            AuthStep::NeedKeys {
                provider,
                unknown_kid,
            } => {
                // A second unknown kid after a refetch is final: no key has it.
                let fetched = self.shared.keys.borrow().fetching(provider, now_ms);
                let allowed = self.shared.keys.borrow().refetch_allowed(provider, now_ms);
                if unknown_kid && !allowed && !fetched {
                    let rejection = self.gate().keys_unavailable(provider, true);
                    self.reject(&rejection);
                    return;
                }
                if allowed {
                    self.shared.fetch(provider, now_ms);
                }
                self.waiting = Some((provider, unknown_kid));
                let deadline = *self
                    .wait_deadline_ms
                    .get_or_insert_with(|| self.shared.wait_deadline(provider, now_ms));
                self.shared
                    .wait(provider, self.context_id, Rc::downgrade(this), deadline);
            }
            AuthStep::Reject(rejection) => {
                self.reject(&rejection);
            }
        }
    }

    fn peer(&self) -> Peer {
        let wanted = self
            .shared
            .config
            .auth
            .as_ref()
            .is_some_and(|a| a.peer_identity.is_some());
        if !wanted {
            return Peer::default();
        }
        Peer {
            uri_sans: host::property(&["connection", "uri_san_peer_certificate"])
                .into_iter()
                .collect(),
            dns_sans: host::property(&["connection", "dns_san_peer_certificate"])
                .into_iter()
                .collect(),
        }
    }

    /// Decides once both authentication and the body are complete.
    fn advance(&mut self) -> Action {
        match self.state {
            State::Passing => return Action::Continue,
            State::Rejected => return Action::Pause,
            State::Holding => {}
        }
        let Some(identity) = &self.identity else {
            return Action::Pause;
        };
        if !self.body_complete {
            return Action::Pause;
        }
        let Some(rule) = self.rule else {
            self.state = State::Passing;
            return Action::Continue;
        };
        let body = match hostcalls::get_buffer(BufferType::HttpRequestBody, 0, self.body_size) {
            Ok(body) => body.unwrap_or_default(),
            Err(status) => return self.internal(&format!("cannot read request body: {status:?}")),
        };
        let verdict = self
            .gate()
            .approve(rule, &self.head, identity, &body)
            .map(|approved| {
                for decision in &approved.decisions {
                    if let Decision::ShadowDenied { rule, reason } = decision {
                        // Shadow mode: the request goes on; operators see what would happen.
                        let rule = rule.unwrap_or("no rule");
                        log(
                            LogLevel::Info,
                            &format!("mcp-guard: shadow deny by {rule:?}: {reason}"),
                        );
                    }
                }
                approved.list
            });
        match verdict {
            Ok(list) => {
                self.list = list;
                self.state = State::Passing;
                Action::Continue
            }
            Err(rejection) => self.reject(&rejection),
        }
    }

    /// The answer's head: a list answer is held (JSON) or framed (SSE); any other passes.
    pub fn on_response_headers(&mut self, end_of_stream: bool) -> Action {
        if self.list.is_none() || end_of_stream {
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

    pub fn on_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        match &mut self.response {
            Response::Untouched => Action::Continue,
            Response::Replaced => Action::Pause,
            Response::Buffering { size } => {
                *size = body_size;
                if body_size > MAX_LIST_BYTES {
                    self.response = Response::Replaced;
                    let reason = format!("the list answer exceeds {MAX_LIST_BYTES} bytes");
                    log(LogLevel::Warn, &format!("mcp-guard: {reason}"));
                    let id = self.list.as_ref().map(|l| l.id.as_str());
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
                if let (Some(list), Some(identity)) = (&self.list, &self.identity) {
                    let rules = self.shared.config.policy.applicable(identity);
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
    pub fn on_response_trailers(&mut self) -> Action {
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
        let (Some(list), Some(identity)) = (&self.list, &self.identity) else {
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
        let rules = self.shared.config.policy.applicable(identity);
        let mut keep = |value: &str| visible(&rules, list.kind, value);
        match filter_list(&body, list, &mut keep) {
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

    fn reject(&mut self, rejection: &Rejection) -> Action {
        self.state = State::Rejected;
        host::send_rejection(rejection);
        Action::Pause
    }

    fn internal(&mut self, reason: &str) -> Action {
        log(LogLevel::Error, &format!("mcp-guard: {reason}"));
        self.reject(&Rejection::new(Code::Internal, reason))
    }
}

/// A request waiting for keys.
pub struct Waiter {
    pub provider: usize,
    pub context_id: u32,
    pub flow: Weak<RefCell<Flow>>,
    pub deadline_ms: u64,
}
