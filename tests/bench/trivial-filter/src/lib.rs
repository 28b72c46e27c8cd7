//! The Wasm floor for `make bench` (the `T` row): what any proxy-wasm filter that decides on
//! a JSON-RPC body pays before deciding anything. It holds the request headers, lets Envoy
//! buffer the body, copies it out once, parses it with serde_json and checks it has a
//! `method`; a body that is not one is answered 400. Nothing else: no policy, no metrics.

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType};

proxy_wasm::main! {{
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root) });
}}

struct Root;

impl Context for Root {}

impl RootContext for Root {
    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Request))
    }
}

struct Request;

impl Context for Request {}

impl HttpContext for Request {
    fn on_http_request_headers(&mut self, _headers: usize, end_of_stream: bool) -> Action {
        if end_of_stream {
            Action::Continue
        } else {
            Action::Pause
        }
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if !end_of_stream {
            return Action::Pause;
        }
        let body = hostcalls::get_buffer(BufferType::HttpRequestBody, 0, body_size)
            .ok()
            .flatten()
            .unwrap_or_default();
        let parsed: Option<serde_json::Value> = serde_json::from_slice(&body).ok();
        if parsed.as_ref().and_then(|v| v.get("method")).is_some() {
            return Action::Continue;
        }
        let _ = hostcalls::send_http_response(400, vec![], Some(b"not a JSON-RPC request"));
        Action::Pause
    }
}
