//! One HTTP request: hold it until the gate approves, then forward it untouched.
//!
//! The request head is held (`Pause` from the headers callback; the plugin must run with
//! `allow_on_headers_stop_iteration: true` so the body keeps arriving) and the body is
//! buffered by Envoy, then read once, in full, when the stream ends (or its trailers come).

use std::rc::Rc;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, BufferType, LogLevel, MapType};

use super::log;
use crate::config::Config;
use crate::gate::{BodyRule, Gate, HeadVerdict, RequestHead};
use crate::reject::{Code, Rejection};

enum State {
    /// Headers not seen yet, or the request is forwarded: nothing to do.
    Passing,
    /// Held until the body is complete.
    Holding { rule: BodyRule, body_size: usize },
    /// A local reply was sent; the stream is over for us.
    Rejected,
}

pub struct Request {
    config: Option<Rc<Config>>,
    head: RequestHead,
    state: State,
}

impl Request {
    pub fn new(config: Option<Rc<Config>>) -> Request {
        Request {
            config,
            head: RequestHead::default(),
            state: State::Passing,
        }
    }

    /// Sends the JSON-RPC error and stops the request.
    fn reject(&mut self, rejection: &Rejection) -> Action {
        self.state = State::Rejected;
        let body = rejection.to_json();
        let headers = vec![("content-type", "application/json")];
        if let Err(status) = hostcalls::send_http_response(
            rejection.code.http_status(),
            headers,
            Some(body.as_bytes()),
        ) {
            log(
                LogLevel::Error,
                &format!("mcp-guard: cannot send rejection: {status:?}"),
            );
        }
        Action::Pause
    }

    fn internal(&mut self, reason: &str) -> Action {
        log(LogLevel::Error, &format!("mcp-guard: {reason}"));
        self.reject(&Rejection::new(Code::Internal, reason))
    }

    /// Reads the complete held body and lets the gate judge it.
    fn decide(&mut self, rule: BodyRule, body_size: usize) -> Action {
        let Some(config) = self.config.clone() else {
            return self.internal("no valid configuration");
        };
        let body = match hostcalls::get_buffer(BufferType::HttpRequestBody, 0, body_size) {
            Ok(body) => body.unwrap_or_default(),
            Err(status) => return self.internal(&format!("cannot read request body: {status:?}")),
        };
        match (Gate { config: &config }).on_body(rule, &self.head, &body) {
            Ok(()) => {
                self.state = State::Passing;
                Action::Continue
            }
            Err(rejection) => self.reject(&rejection),
        }
    }
}

impl Context for Request {}

impl HttpContext for Request {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let Some(config) = self.config.clone() else {
            return self.internal("no valid configuration");
        };
        let pairs = match hostcalls::get_map_bytes(MapType::HttpRequestHeaders) {
            Ok(pairs) => pairs,
            Err(status) => {
                return self.internal(&format!("cannot read request headers: {status:?}"))
            }
        };
        self.head.end_of_stream = end_of_stream;
        for (name, value) in &pairs {
            self.head.observe(name, value);
        }
        match (Gate { config: &config }).on_head(&self.head) {
            HeadVerdict::Forward => Action::Continue,
            HeadVerdict::InspectBody(rule) => {
                self.state = State::Holding { rule, body_size: 0 };
                Action::Pause
            }
            HeadVerdict::Reject(rejection) => self.reject(&rejection),
        }
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let rule = match self.state {
            State::Holding { rule, .. } => rule,
            State::Passing => return Action::Continue,
            State::Rejected => return Action::Pause,
        };
        let Some(config) = self.config.clone() else {
            return self.internal("no valid configuration");
        };
        // Checked on every chunk: a body is refused as soon as it outgrows the limit.
        if body_size as u64 > config.max_body_bytes {
            return self.reject(&Gate { config: &config }.too_large());
        }
        if !end_of_stream {
            self.state = State::Holding { rule, body_size };
            return Action::Pause;
        }
        self.decide(rule, body_size)
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        // HTTP/2 and gRPC-style clients may end the body with trailers instead of END_STREAM.
        match self.state {
            State::Holding { rule, body_size } => self.decide(rule, body_size),
            State::Passing => Action::Continue,
            State::Rejected => Action::Pause,
        }
    }
}
