//! One request's way through the gate, as a small state machine the host drives.
//!
//! A request to an MCP endpoint is held while two things complete in either order:
//! authentication (which may wait for signing keys) and, for a POST, the body (buffered by
//! Envoy, read once when the stream ends or trailers come). Only then does the gate decide.
//! What is held depends on `hold` ([`Hold`]):
//! - `body` (the default): once the caller is authenticated the headers go on (Envoy picks
//!   the upstream and may connect), the body callbacks buffer, and a refusal is a local
//!   reply that resets the upstream stream before any of the body is sent. An upstream that
//!   answers before the decision gets a 502 in place of its answer. No Envoy setting needed.
//! - `request`: the headers are paused too (`Pause`), so nothing reaches the upstream before
//!   the decision. Envoy keeps delivering the body only with the Wasm plugin's
//!   `allow_on_headers_stop_iteration: true`; without it the body stays buffered in Envoy, so
//!   the root's tick checks held requests and refuses one whose body Envoy has received but
//!   not delivered, naming the missing setting, instead of letting it hang.
//!
//! A flow is shared (`Rc<RefCell<_>>`) so that whichever context receives new keys can
//! resume the requests waiting for them, and the tick can check the held ones.

use std::cell::RefCell;
use std::rc::{Rc, Weak};

use proxy_wasm::hostcalls;
use proxy_wasm::types::{Action, BufferType, LogLevel, MapType};

/// The session header, sealed on the way out and unsealed on the way in (`ownership`).
const SESSION_HEADER: &str = "mcp-session-id";
/// The method whose answers `contracts.results` rules scan.
const CALL: &str = "tools/call";

use super::answer::{Answer, Scanned};
use super::host;
use super::listen::ListenStream;
use super::log;
use super::ratelimit::{Pending, Start};
use super::report::{self, Report};
use super::shared::{Catalog, Resumable, Shared};
use crate::catalog::fetch::{
    goes_stateless, needs_list, unavailable, unlisted_call, AfterList, ListFetch, Wants,
};
use crate::config::Hold;
use crate::contract::{CallCheck, Mode, ResultRule};
use crate::gate::{Approved, BodyRule, Gate, HeadVerdict, RequestHead, TaskRequest};
use crate::identity::challenge::{AuthStep, Peer};
use crate::identity::ownership::{blank_task_id, unseal_task_id, IdKind, UnsealError};
use crate::identity::Identity;
use crate::policy::Decision;
use crate::protocol::jsonrpc::{Seen, Target};
use crate::protocol::revision::Header;
use crate::protocol::revisions::Revision;
use crate::report::observe::Outcome;
use crate::report::reject::{Code, Rejection};
use crate::response::listfilter::ListKind;
use crate::upstream::HeaderEdits;

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
    /// This flow as the per-VM state holds it while it waits (weakly).
    this: Weak<RefCell<Flow>>,
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
    /// A body callback arrived: Envoy delivers the body to this filter.
    body_seen: bool,
    /// `hold: body`: the headers went on before the decision.
    headers_released: bool,
    state: State,
    /// Set when an approved single list request's answer is to be filtered for the caller.
    answer: Option<Answer>,
    /// Set when an approved `subscriptions/listen` stream is to be filtered for the caller.
    listen: Option<ListenStream>,
    /// An approved single `tools/call`: its duration histogram and when the filter let it go.
    call: Option<(Option<u32>, u64)>,
    /// An approved request held for the Rate Limit Service.
    limiting: Option<Held>,
    /// A request held for the upstream's `tools/list` (a cold gateway): the body to judge
    /// again, and the id its refusal carries.
    listing: Option<(BodyRule, Vec<u8>, Option<String>)>,
    /// The upstream's `tools/list` was learned for this request.
    listed: bool,
    /// The client's session as the upstream knows it (unsealed), once authenticated.
    upstream_session: Option<String>,
}

/// A request held for the Rate Limit Service: its calls, the body to judge again (without
/// the limits) once they all said yes, and the message that stands for it in reports.
struct Held {
    pending: Pending,
    rule: BodyRule,
    body: Vec<u8>,
    seen: Option<Seen>,
}

impl Flow {
    pub fn new(shared: Rc<Shared>, context_id: u32, this: Weak<RefCell<Flow>>) -> Flow {
        Flow {
            shared,
            context_id,
            this,
            head: RequestHead::default(),
            rule: None,
            identity: None,
            waiting: None,
            wait_deadline_ms: None,
            body_size: 0,
            body_complete: false,
            body_seen: false,
            headers_released: false,
            state: State::Passing,
            answer: None,
            listen: None,
            call: None,
            limiting: None,
            listing: None,
            listed: false,
            upstream_session: None,
        }
    }

    fn gate(&self) -> Gate<'_> {
        Gate {
            config: &self.shared.config,
        }
    }

    pub fn on_headers(this: &Rc<RefCell<Flow>>, end_of_stream: bool) -> Action {
        let mut flow = this.borrow_mut();
        let pairs = match host::header_map(MapType::HttpRequestHeaders) {
            Ok(pairs) => pairs,
            Err(e) => return flow.internal(&format!("cannot read request headers: {e}")),
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
                if flow.release_headers() {
                    return Action::Continue;
                }
                let action = flow.advance();
                if flow.awaits_body() && flow.shared.config.hold == Hold::Request {
                    flow.shared.watch_body(flow.context_id, held_by(this));
                }
                action
            }
        }
    }

    pub fn on_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        match self.state {
            State::Passing => return Action::Continue,
            State::Rejected => return Action::Pause,
            State::Holding => {}
        }
        self.body_seen = true;
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
        if flow.release_headers() || flow.advance() == Action::Continue {
            resume(hostcalls::resume_http_request());
        }
    }

    /// `hold: body`: an authenticated caller's headers go on before the body is read, with
    /// what the request carries upstream that depends on the headers alone (the route's
    /// credentials; no `Accept-Encoding` when the answer may be a list to filter). Not once
    /// body bytes were delivered while the headers were paused: continuing then would
    /// forward them undecided, so the decision comes first.
    fn release_headers(&mut self) -> bool {
        let ready = self.state == State::Holding
            && self.identity.is_some()
            && !self.body_complete
            && !self.body_seen
            && !self.headers_released
            && self.shared.config.hold == Hold::Body;
        if !ready {
            return false;
        }
        if self.shared.config.needs_upstream {
            self.head.upstream = host::property(&["xds", "cluster_name"]);
        }
        self.inject();
        // Unless `Mcp-Method` (checked against the body later) names another method.
        let may = |is: &dyn Fn(&str) -> bool| match &self.head.routing.method {
            Header::One(method) => is(method),
            _ => true,
        };
        let may_list = may(&|method| ListKind::of_method(method).is_some());
        let may_scan = self.shared.config.contracts.scans_results() && may(&|m| m == CALL);
        let seals_tasks = self
            .shared
            .config
            .ownership
            .as_ref()
            .is_some_and(|o| o.tasks);
        if may_list || may_scan || seals_tasks {
            self.ask_for_identity_encoding();
        }
        self.headers_released = true;
        true
    }

    /// Held for a body that has not been delivered (yet).
    fn awaits_body(&self) -> bool {
        self.state == State::Holding && !self.body_complete && !self.body_seen
    }

    /// `hold: request`, from the root's tick with this flow's context effective: a request
    /// whose body Envoy received but never handed to the filter is stuck behind a paused
    /// header callback (the plugin runs without `allow_on_headers_stop_iteration`). It is
    /// refused, naming the setting. Returns whether to keep watching.
    pub fn check_body_delivery(this: &Rc<RefCell<Flow>>) -> bool {
        let mut flow = this.borrow_mut();
        if !flow.awaits_body() {
            return false;
        }
        if host::request_body_bytes_received().unwrap_or_default() == 0 {
            return true;
        }
        flow.internal(
            "Envoy holds this request's body from the filter: \"hold\": \"request\" needs \
             allow_on_headers_stop_iteration: true in the Wasm plugin config (or use \
             \"hold\": \"body\", which needs no setting)",
        );
        false
    }

    /// The upstream answered a request the gate has not decided (`hold: body`): it answered
    /// without the body, so its answer is not one to this request's messages, and Envoy
    /// stops delivering the rest of a body whose upstream has finished. The answer is
    /// replaced by a 502 (fail closed); Envoy's own answers pass. Returns whether it was.
    pub fn refuse_early_answer(&mut self) -> bool {
        if self.state != State::Holding {
            return false;
        }
        // Envoy's own answer (the upstream could not be reached, or reset): no server saw
        // the request, and the client gets Envoy's status as it would without the filter.
        let details = host::property(&["response", "code_details"]);
        if details.as_deref() != Some("via_upstream") {
            self.state = State::Passing;
            return false;
        }
        let reason = "the upstream answered before the request was complete";
        self.reject(&Rejection::new(Code::BadGateway, reason));
        true
    }

    /// Runs the authentication step; on success edits the held headers for the upstream.
    fn authenticate(&mut self, this: &Rc<RefCell<Flow>>) {
        let peer = self.peer();
        // Only credentials need the clock: without `auth` every caller is anonymous.
        let now_ms = self
            .shared
            .config
            .auth
            .as_ref()
            .map_or(0, |_| host::now_ms());
        let step = {
            let keys = self.shared.keys.borrow();
            let mut local = self.shared.cache.borrow_mut();
            let mut tokens = self.shared.tokens(&mut local);
            let step =
                self.gate()
                    .authenticate(&self.head, &peer, &*keys, &mut tokens, now_ms / 1000);
            self.shared.report_tokens(&tokens);
            step
        };
        match step {
            AuthStep::Authenticated(identity) => {
                let credential_headers = self
                    .shared
                    .config
                    .auth
                    .as_ref()
                    .map_or(&[][..], |a| a.header_names());
                let mut edits =
                    self.shared
                        .config
                        .upstream
                        .edits(&identity, credential_headers, |name| {
                            self.head.values(name).next().is_some()
                        });
                self.unseal_task_header(&identity, &mut edits);
                match self.unseal_session(&identity, &mut edits) {
                    Ok(session) => self.upstream_session = session,
                    Err(rejection) => {
                        self.reject(&rejection);
                        return;
                    }
                }
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
                    .wait(provider, self.context_id, held_by(this), deadline);
            }
            AuthStep::Reject(rejection) => {
                self.reject(&rejection);
            }
        }
    }

    /// With sealed sessions, the client's `Mcp-Session-Id` goes upstream as the session the
    /// upstream issued, and only when `identity` owns it. Returns the session as it goes
    /// upstream.
    fn unseal_session(
        &self,
        identity: &Identity,
        edits: &mut HeaderEdits,
    ) -> Result<Option<String>, Rejection> {
        let Some(visible) = self.head.values(SESSION_HEADER).next() else {
            return Ok(None);
        };
        let visible = std::str::from_utf8(visible).unwrap_or_default();
        let Some(ownership) = self.shared.config.ownership.as_ref().filter(|o| o.sessions) else {
            return Ok(Some(visible.to_owned()));
        };
        let upstream = ownership
            .sealer
            .unseal(IdKind::Session, visible, identity)
            .map_err(|e| e.rejection(IdKind::Session, None))?;
        edits.set.push((SESSION_HEADER.into(), upstream.clone()));
        Ok(Some(upstream))
    }

    /// With sealed tasks, the client's task id in the held body goes upstream as the id the
    /// upstream issued (same length: the body's length may already be upstream), and only
    /// when the caller owns it; for a method the revision removed, a blank id otherwise.
    fn unseal_task(
        &self,
        task: &TaskRequest,
        body: &[u8],
        id: Option<&str>,
    ) -> Result<(), Rejection> {
        let (Some(ownership), Some(identity), Some(visible)) =
            (&self.shared.config.ownership, &self.identity, &task.visible)
        else {
            return Ok(());
        };
        let refusal = |e: UnsealError| e.rejection(IdKind::Task, id);
        let unsealed = match unseal_task_id(body, visible, &ownership.sealer, identity) {
            Ok((unsealed, _)) => unsealed,
            Err(e) if task.removed => blank_task_id(body, visible).ok_or_else(|| refusal(e))?,
            Err(e) => return Err(refusal(e)),
        };
        hostcalls::set_buffer(BufferType::HttpRequestBody, 0, body.len(), &unsealed).map_err(
            |status| {
                Rejection::new(
                    Code::Internal,
                    format!("cannot replace the body: {status:?}"),
                )
            },
        )
    }

    /// With sealed tasks, a 2026-07-28 tasks request names its task in `Mcp-Name` too: it
    /// goes upstream unsealed, like the body's. One that does not unseal is left as it is:
    /// the body's id (which must agree) is then refused, with the request's id.
    fn unseal_task_header(&self, identity: &Identity, edits: &mut HeaderEdits) {
        let Some(ownership) = self.shared.config.ownership.as_ref().filter(|o| o.tasks) else {
            return;
        };
        let (Header::One(method), Header::One(visible)) =
            (&self.head.routing.method, &self.head.routing.name)
        else {
            return;
        };
        if !method.starts_with("tasks/") {
            return;
        }
        if let Ok(upstream) = ownership.sealer.unseal(IdKind::Task, visible, identity) {
            edits.set.push(("mcp-name".into(), upstream));
        }
    }

    /// With sealed sessions, a session the upstream issues reaches the client sealed to the
    /// caller that created it.
    fn seal_session(&self) {
        let (Some(ownership), Some(identity)) = (
            self.shared.config.ownership.as_ref().filter(|o| o.sessions),
            &self.identity,
        ) else {
            return;
        };
        let Ok(Some(upstream)) =
            hostcalls::get_map_value(MapType::HttpResponseHeaders, SESSION_HEADER)
        else {
            return;
        };
        let sealed = ownership.sealer.seal(IdKind::Session, &upstream, identity);
        if hostcalls::set_map_value(MapType::HttpResponseHeaders, SESSION_HEADER, Some(&sealed))
            .is_err()
        {
            // The upstream's own id must not reach the client unsealed.
            let _ = hostcalls::reset_http_response();
        }
    }

    /// The answer's head: an early answer is refused, a session sealed, and an answer to be
    /// filtered set up.
    pub fn on_response_headers(&mut self, end_of_stream: bool) -> Action {
        if self.refuse_early_answer() {
            return Action::Pause;
        }
        if self.state == State::Rejected {
            return Action::Continue; // our own reply
        }
        self.seal_session();
        if let Some(listen) = &mut self.listen {
            return listen.on_headers();
        }
        self.answer
            .as_mut()
            .map_or(Action::Continue, |a| a.on_headers(end_of_stream))
    }

    pub fn on_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if self.refuse_early_answer() {
            return Action::Pause;
        }
        if let Some(listen) = &mut self.listen {
            return listen.on_body(body_size, end_of_stream);
        }
        self.answer
            .as_mut()
            .map_or(Action::Continue, |a| a.on_body(body_size, end_of_stream))
    }

    pub fn on_response_trailers(&mut self) -> Action {
        if self.refuse_early_answer() {
            return Action::Pause;
        }
        self.answer
            .as_mut()
            .map_or(Action::Continue, |a| a.on_trailers())
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
        let waiting = self.limiting.is_some() || self.listing.is_some();
        if self.identity.is_none() || !self.body_complete || waiting {
            return Action::Pause;
        }
        let Some(rule) = self.rule else {
            // No body to route on: the route is final, and so is its cluster.
            if self.shared.config.needs_upstream {
                self.head.upstream = host::property(&["xds", "cluster_name"]);
            }
            self.inject();
            self.state = State::Passing;
            return Action::Continue;
        };
        let body = match hostcalls::get_buffer(BufferType::HttpRequestBody, 0, self.body_size) {
            Ok(body) => body.unwrap_or_default(),
            Err(status) => return self.internal(&format!("cannot read request body: {status:?}")),
        };
        self.decide(rule, body, true)
    }

    /// Judges the complete body and, with `limit`, takes what it owes the rate limits
    /// (without, once the Rate Limit Service has let it pass): forwards it, refuses it, or
    /// holds it for the service.
    fn decide(&mut self, rule: BodyRule, body: Vec<u8>, limit: bool) -> Action {
        let Some(identity) = &self.identity else {
            return Action::Pause;
        };
        // One decision in a few is timed; a held request judged again after the Rate Limit
        // Service is not a new decision.
        let now = host::Now::default();
        let timed = (limit && self.shared.metrics.time_this_decision()).then(|| now.us());
        // The decisions borrow the configuration, not the flow, which they update below.
        let shared = self.shared.clone();
        let config = &shared.config;
        let gate = Gate { config };
        let header_revision = self.head.routing.revision().and_then(Revision::parse);
        // The cluster of the route Envoy chose for the request as it arrived: Envoy re-picks
        // the route after the routing headers, but a filter cannot read that choice before
        // the router runs (the host's route info stays stale).
        if limit && config.needs_upstream && self.head.upstream.is_none() {
            self.head.upstream = host::property(&["xds", "cluster_name"]);
        }
        let upstream = self.head.upstream.clone().unwrap_or_default();
        // Looked up only when the configuration learns tools (`Gate::decide`).
        let tools = shared.catalog(&upstream);
        // Set when the request is to wait for the upstream's `tools/list`.
        let mut list = None;
        let verdict = gate.parse(rule, &self.head, &body).and_then(|parsed| {
            if limit && config.upstream.routes() {
                host::apply(&config.upstream.routing_edits(parsed.messages()));
            }
            if limit && config.learns_tools {
                let messages = parsed.messages();
                let wants = Wants {
                    contracts: &config.contracts,
                    params: config.schema_checks.params,
                    annotations: config.policy.uses_annotations(),
                };
                if self.listed || shared.recently_listed(tools.upstream, || now.ms()) {
                    let after = AfterList { tools: &tools };
                    if let Some(rejection) = unlisted_call(messages, &after) {
                        return Err(rejection);
                    }
                    return gate
                        .judge(&parsed, &self.head, identity, &body, &after)
                        .map(Some);
                } else if !tools.upstream.is_empty()
                    && needs_list(messages, &tools, wants, header_revision)
                {
                    let stateless = goes_stateless(messages, header_revision);
                    let id = messages.iter().find_map(|m| m.id).map(str::to_owned);
                    list = Some((stateless, id));
                    return Ok(None);
                }
            }
            gate.judge(&parsed, &self.head, identity, &body, &tools)
                .map(Some)
        });
        if let Some(start) = timed {
            shared
                .metrics
                .record_decision_time(host::now_us().saturating_sub(start));
        }
        let mut approved = match verdict {
            Ok(Some(approved)) => approved,
            Ok(None) => return self.hold_for_list(rule, body, list),
            Err(rejection) => return self.reject(&rejection),
        };
        // Judged once: a request judged again after the Rate Limit Service passed them.
        if limit {
            if let Err(rejection) = self.check_calls(&approved, &body, &tools) {
                return self.reject(&rejection);
            }
        }
        if let (true, Some(limiter)) = (limit && !approved.charges.is_empty(), &shared.limiter) {
            let charges = std::mem::take(&mut approved.charges);
            let id = approved.id.clone();
            match limiter.start(&shared.metrics, &config.rate_limits, charges, id, now.ms()) {
                Start::Pass => {}
                Start::Refuse(rejection, limit) => {
                    return self.refuse_limited(rejection, limit, first_seen(&approved));
                }
                Start::Wait(pending) => {
                    let seen = first_seen(&approved);
                    self.limiting = Some(Held {
                        pending,
                        rule,
                        body,
                        seen,
                    });
                    return Action::Pause;
                }
            }
        }
        if let Some(task) = &approved.tasks {
            if let Err(rejection) = self.unseal_task(task, &body, approved.id.as_deref()) {
                return self.reject(&rejection);
            }
        }
        for (seen, decision) in &approved.decisions {
            let (outcome, rule, reason) = match decision {
                Decision::ShadowDenied { rule, reason } => {
                    // Shadow mode: the request goes on; operators see what would happen.
                    log(
                        LogLevel::Info,
                        &format!(
                            "mcp-guard: shadow deny by {:?}: {reason}",
                            rule.unwrap_or("no rule")
                        ),
                    );
                    (Outcome::Shadow, *rule, Some(reason.as_str()))
                }
                Decision::Allowed { rule } => (Outcome::Allowed, *rule, None),
                Decision::Denied { rule, reason } => {
                    (Outcome::DeniedPolicy, *rule, Some(reason.as_str()))
                }
            };
            let arguments = seen.arguments.clone().and_then(|range| body.get(range));
            let report = Report {
                seen: Some(seen),
                outcome,
                rule,
                limit: None,
                reason,
                arguments,
            };
            report::message(&shared.metrics, config, &self.head, Some(identity), &report);
        }
        if let [(
            Seen {
                target: Some(tool @ Target::Tool(_)),
                ..
            },
            _,
        )] = approved.decisions.as_slice()
        {
            let started = timed.unwrap_or_else(|| now.us());
            self.call = Some((shared.metrics.call_duration(&config.observe, tool), started));
        }
        if !self.headers_released {
            self.inject();
        }
        let scanned = self.scanned(&approved, &upstream);
        let rewrites = approved.list.is_some() || approved.tasks.is_some() || scanned.is_some();
        if rewrites && !self.headers_released {
            self.ask_for_identity_encoding();
        }
        let id = approved.id.unwrap_or_else(|| "null".into());
        let shared = self.shared.clone();
        self.answer = match (
            approved.list,
            scanned,
            approved.tasks,
            self.identity.clone(),
        ) {
            (Some(list), _, _, Some(identity)) => {
                Some(Answer::new(shared, list, identity, upstream))
            }
            (None, Some(scanned), _, Some(identity)) => {
                Some(Answer::result(shared, id, identity, scanned))
            }
            (None, None, Some(_), Some(identity)) => Some(Answer::tasks(shared, id, identity)),
            _ => None,
        };
        if approved.listen {
            self.listen = self
                .identity
                .clone()
                .map(|identity| ListenStream::new(self.shared.clone(), identity));
        }
        self.state = State::Passing;
        Action::Continue
    }

    /// Holds the request until its upstream's `tools/list` is learned (`list`: whether it
    /// goes stateless, the id a refusal carries). The list is the gateway's own, sent with
    /// the gateway's credentials for the cluster and, for a client with a session, in the
    /// upstream session the client's unseals to.
    fn hold_for_list(
        &mut self,
        rule: BodyRule,
        body: Vec<u8>,
        list: Option<(bool, Option<String>)>,
    ) -> Action {
        let (Some((stateless, id)), Some(cluster)) = (list, self.head.upstream.clone()) else {
            return self.internal("a request held for its upstream's tools lost its state");
        };
        let credentials = self.shared.config.upstream.inject_edits(&cluster).set;
        let mut fetch = ListFetch::for_request(&self.head.headers, stateless, credentials);
        if fetch.session.is_some() {
            fetch.session.clone_from(&self.upstream_session);
        }
        let this: Weak<dyn Resumable> = self.this.clone();
        if let Err(why) = self
            .shared
            .await_list(&cluster, fetch, self.context_id, this)
        {
            self.shared.count_list(false);
            return self.reject(&unavailable(&why, id.as_deref()));
        }
        self.listing = Some((rule, body, id));
        Action::Pause
    }

    /// The upstream's `tools/list` this request waited for was learned (or not: it is
    /// refused, 503): the request is judged again.
    pub fn retry_after_list(this: &Rc<RefCell<Flow>>, result: Result<(), String>) {
        let mut flow = this.borrow_mut();
        let Some((rule, body, id)) = flow.listing.take() else {
            return;
        };
        if let Err(why) = result {
            flow.reject(&unavailable(&why, id.as_deref()));
            return;
        }
        flow.listed = true;
        if flow.decide(rule, body, true) == Action::Continue {
            resume(hostcalls::resume_http_request());
        }
    }

    /// The checks of approved `tools/call` messages against their tool's learned schema
    /// (its `Mcp-Param-*` headers, for a single call; its argument contract) and the
    /// write-back guard. One refusal refuses the request, as the policy's does.
    fn check_calls(
        &self,
        approved: &Approved<'_>,
        body: &[u8],
        tools: &Catalog<'_>,
    ) -> Result<(), Rejection> {
        let shared = &self.shared;
        let config = &shared.config;
        if !config.schema_checks.any() && !config.contracts.guards_write_back() {
            return Ok(());
        }
        let upstream = tools.upstream;
        // Headers mirror one call: a batch member's arguments have none.
        let headers = (approved.decisions.len() == 1).then_some(&self.head.headers);
        for (seen, _) in &approved.decisions {
            let (Some("tools/call"), Some(Target::Tool(tool))) =
                (seen.method.as_deref(), &seen.target)
            else {
                continue;
            };
            let hash = tools.live(tool);
            if let Some(hash) = &hash {
                shared.find_schema(upstream, tool, hash);
            }
            let arguments = seen.arguments.clone().and_then(|range| body.get(range));
            let check = shared.schemas.borrow().check_call(
                &config.contracts,
                upstream,
                tool,
                hash.as_ref(),
                arguments,
                headers,
                approved.id.as_deref(),
            );
            let validated = config.contracts.argument_mode(upstream, tool) != Mode::Off;
            let count = |outcome: &str| {
                let metric = config.observe.contract_arguments_metric(tool, outcome);
                shared.metrics.count(metric);
            };
            match check {
                CallCheck::Pass if validated => count("valid"),
                CallCheck::Pass => {}
                CallCheck::Report { outcome, reason } => {
                    log(LogLevel::Info, &format!("mcp-guard: contract: {reason}"));
                    count(outcome);
                }
                CallCheck::Refuse(rejection) => {
                    if rejection.code != Code::HeaderMismatch {
                        count("refused");
                    }
                    return Err(rejection.about(seen.clone(), None));
                }
            }
        }
        Ok(())
    }

    /// A Rate Limit Service answer for this request: once all are in, forward or refuse.
    pub fn on_rate_limit_answer(&mut self, token: u32, status: u32, size: usize) {
        let shared = self.shared.clone();
        let (Some(held), Some(limiter)) = (self.limiting.as_mut(), &shared.limiter) else {
            return;
        };
        let Some(done) = limiter.on_answer(
            &shared.metrics,
            &shared.config.rate_limits,
            &mut held.pending,
            token,
            status,
            size,
        ) else {
            return;
        };
        let Some(held) = self.limiting.take() else {
            return;
        };
        let action = match done {
            Ok(()) => self.decide(held.rule, held.body, false),
            Err((rejection, limit)) => self.refuse_limited(rejection, limit, held.seen),
        };
        if action == Action::Continue {
            resume(hostcalls::resume_http_request());
        }
    }

    /// Refuses for a rate limit (`limit`; `None` when the service failed), naming it and
    /// `seen` for the metrics and the audit log.
    fn refuse_limited(
        &mut self,
        rejection: Rejection,
        limit: Option<String>,
        seen: Option<Seen>,
    ) -> Action {
        let rejection = match seen {
            Some(seen) => rejection.about(seen, limit.as_deref()),
            None => rejection,
        };
        self.reject(&rejection)
    }

    /// The stream ended while held for the Rate Limit Service: nothing was forwarded, so
    /// nothing is owed.
    pub fn abandon(&mut self) {
        if let (Some(held), Some(limiter)) = (self.limiting.take(), &self.shared.limiter) {
            limiter.abandon(
                &self.shared.metrics,
                &self.shared.config.rate_limits,
                &held.pending,
            );
        }
    }

    /// How the answer of an approved request's `tools/call`s is scanned, if a results rule
    /// covers any of them: a batch's answers (one body) by the strictest of their rules.
    fn scanned(&self, approved: &Approved<'_>, upstream: &str) -> Option<Scanned> {
        let contracts = &self.shared.config.contracts;
        if !contracts.scans_results() {
            return None;
        }
        let calls: Vec<(&str, &ResultRule)> = approved
            .decisions
            .iter()
            .filter(|(seen, _)| seen.method.as_deref() == Some(CALL))
            .filter_map(|(seen, _)| match &seen.target {
                Some(Target::Tool(tool)) => {
                    Some((tool.as_ref(), contracts.result_rule(upstream, tool)?))
                }
                _ => None,
            })
            .collect();
        let rules: Vec<&ResultRule> = calls.iter().map(|(_, rule)| *rule).collect();
        Some(Scanned {
            tool: calls.first()?.0.to_owned(),
            rule: ResultRule::strictest(&rules)?,
            seal: approved.tasks.is_some(),
            request_id: self
                .head
                .values("x-request-id")
                .next()
                .and_then(|v| std::str::from_utf8(v).ok())
                .map(str::to_owned),
        })
    }

    /// A list answer is filtered: the request goes on without `Accept-Encoding`, so the answer
    /// comes back readable (an encoded one is refused).
    fn ask_for_identity_encoding(&self) {
        if self.head.values("accept-encoding").next().is_some() {
            host::apply(&HeaderEdits {
                remove: vec!["accept-encoding".into()],
                set: Vec::new(),
            });
        }
    }

    /// Headers the configuration injects for the request's cluster (known by now).
    fn inject(&self) {
        let upstream = &self.shared.config.upstream;
        if let (true, Some(cluster)) = (upstream.injects(), self.head.upstream.as_deref()) {
            host::apply(&upstream.inject_edits(cluster));
        }
    }

    /// The stream ended: an approved tool call's duration is recorded.
    pub fn on_log(&mut self) {
        if let Some((Some(metric), started_us)) = self.call.take() {
            let ms = host::now_us().saturating_sub(started_us) / 1000;
            self.shared.metrics.record_id(metric, ms);
        }
    }

    fn reject(&mut self, rejection: &Rejection) -> Action {
        self.state = State::Rejected;
        let metrics = &self.shared.metrics;
        metrics.count_rejection(rejection.code);
        let (seen, rule) = match rejection.about.as_deref() {
            Some((seen, rule)) => (Some(seen), rule.as_deref()),
            None => (None, None),
        };
        // A rate-limit refusal names its limit where others name their rule.
        let (rule, limit) = match rejection.code {
            Code::RateLimited => (None, rule),
            _ => (rule, None),
        };
        let report = Report {
            seen,
            outcome: Outcome::of_rejection(rejection.code),
            rule,
            limit,
            reason: Some(&rejection.reason),
            arguments: None,
        };
        report::message(
            metrics,
            &self.shared.config,
            &self.head,
            self.identity.as_ref(),
            &report,
        );
        host::send_rejection(rejection);
        Action::Pause
    }

    fn internal(&mut self, reason: &str) -> Action {
        log(LogLevel::Error, &format!("mcp-guard: {reason}"));
        self.reject(&Rejection::new(Code::Internal, reason))
    }
}

/// Logs a failed resume; the stream then ends by Envoy's timeouts, never upstream undecided.
fn resume(result: Result<(), proxy_wasm::types::Status>) {
    if let Err(status) = result {
        log(
            LogLevel::Error,
            &format!("mcp-guard: cannot resume a stream: {status:?}"),
        );
    }
}

/// The first message of an approved request: a batch refused by a rate limit is refused
/// whole, and its first message stands for it in metrics and the audit log.
fn first_seen(approved: &Approved<'_>) -> Option<Seen> {
    approved.decisions.first().map(|(seen, _)| seen.clone())
}

/// The flow as the per-VM state keeps it: weakly, so a finished request is dropped.
fn held_by(this: &Rc<RefCell<Flow>>) -> Weak<dyn Resumable> {
    let weak: Weak<RefCell<Flow>> = Rc::downgrade(this);
    weak
}

impl Resumable for RefCell<Flow> {
    fn retry_authentication(self: Rc<Self>, timed_out: bool) {
        Flow::retry_authentication(&self, timed_out);
    }

    fn check_body_delivery(self: Rc<Self>) -> bool {
        Flow::check_body_delivery(&self)
    }

    fn retry_after_list(self: Rc<Self>, result: Result<(), String>) {
        Flow::retry_after_list(&self, result);
    }
}
