//! The HTTP context: a thin shell that hands each host callback to the request's [`Flow`].

use std::cell::RefCell;
use std::rc::Rc;

use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;

use super::flow::Flow;
use super::shared::Shared;

pub struct Request {
    shared: Rc<Shared>,
    flow: Rc<RefCell<Flow>>,
}

impl Request {
    pub fn new(shared: Rc<Shared>, context_id: u32) -> Request {
        Request {
            flow: Rc::new_cyclic(|this| {
                RefCell::new(Flow::new(shared.clone(), context_id, this.clone()))
            }),
            shared,
        }
    }
}

impl Context for Request {
    /// A JWKS fetch or a `tools/list` page this request started has answered.
    fn on_http_call_response(
        &mut self,
        token_id: u32,
        _headers: usize,
        body_size: usize,
        _trailers: usize,
    ) {
        self.shared.on_http_call(token_id, body_size);
    }

    /// The stream ends; a request still held for the Rate Limit Service gives its local
    /// tokens back (the client went away before the answer).
    fn on_done(&mut self) -> bool {
        self.flow.borrow_mut().abandon();
        true
    }

    /// A Rate Limit Service call this request made has answered (or failed).
    fn on_grpc_call_response(&mut self, token_id: u32, status_code: u32, response_size: usize) {
        self.flow
            .borrow_mut()
            .on_rate_limit_answer(token_id, status_code, response_size);
    }
}

impl HttpContext for Request {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        Flow::on_headers(&self.flow, end_of_stream)
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        self.flow.borrow_mut().on_body(body_size, end_of_stream)
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        self.flow.borrow_mut().on_trailers()
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        self.flow.borrow_mut().on_response_headers(end_of_stream)
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        self.flow
            .borrow_mut()
            .on_response_body(body_size, end_of_stream)
    }

    fn on_log(&mut self) {
        self.flow.borrow_mut().on_log();
    }

    fn on_http_response_trailers(&mut self, _num_trailers: usize) -> Action {
        self.flow.borrow_mut().on_response_trailers()
    }
}
