//! The Wasm floor for `make bench` (the `T` row): what any proxy-wasm filter that decides on
//! a JSON-RPC body pays before deciding anything. It holds the request headers, lets Envoy
//! buffer the body, copies it out once, parses it with serde_json and checks it has a
//! `method`; a body that is not one is answered 400. Nothing else: no policy, no metrics.
//!
//! With a plugin configuration `{"probe": "<host call>", "times": N}` it also makes that
//! host call N times per request, after parsing (the `T-<probe>` rows): the price of one
//! host call is the row's added CPU over T's, divided by N.

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, MapType, MetricType};

proxy_wasm::main! {{
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::default()) });
}}

/// A host call the probe rows price.
#[derive(Clone, Copy)]
enum Probe {
    /// `get_current_time_nanoseconds`.
    Clock,
    /// `increment_metric` on a counter.
    Metric(u32),
    /// `get_property` of `xds.cluster_name` (a buffer the host allocates in the VM).
    Property,
    /// `get_shared_data` of a small entry (a buffer the host allocates in the VM).
    SharedGet,
    /// `get_header_map_pairs` of the request headers (a buffer the host allocates in the VM).
    Headers,
    /// `remove_header_map_value` of an absent header.
    RemoveHeader,
}

#[derive(Default)]
struct Root {
    probe: Option<(Probe, u32)>,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, size: usize) -> bool {
        let config = hostcalls::get_buffer(BufferType::PluginConfiguration, 0, size)
            .ok()
            .flatten()
            .unwrap_or_default();
        let Ok(config) = serde_json::from_slice::<serde_json::Value>(&config) else {
            return true;
        };
        let times = config.get("times").and_then(|t| t.as_u64()).unwrap_or(1) as u32;
        let probe = match config.get("probe").and_then(|p| p.as_str()) {
            Some("clock") => Probe::Clock,
            Some("metric") => match hostcalls::define_metric(MetricType::Counter, "probe") {
                Ok(id) => Probe::Metric(id),
                Err(_) => return false,
            },
            Some("property") => Probe::Property,
            Some("shared_get") => {
                if hostcalls::set_shared_data("probe", Some(b"0123456789abcdef"), None).is_err() {
                    return false;
                }
                Probe::SharedGet
            }
            Some("headers") => Probe::Headers,
            Some("remove_header") => Probe::RemoveHeader,
            _ => return true,
        };
        self.probe = Some((probe, times));
        true
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Request { probe: self.probe }))
    }
}

struct Request {
    probe: Option<(Probe, u32)>,
}

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
        if let Some((probe, times)) = self.probe {
            for _ in 0..times {
                call(probe);
            }
        }
        if parsed.as_ref().and_then(|v| v.get("method")).is_some() {
            return Action::Continue;
        }
        let _ = hostcalls::send_http_response(400, vec![], Some(b"not a JSON-RPC request"));
        Action::Pause
    }
}

fn call(probe: Probe) {
    // The answers are not used: only the calls are priced.
    match probe {
        Probe::Clock => {
            let _ = hostcalls::get_current_time();
        }
        Probe::Metric(id) => {
            let _ = hostcalls::increment_metric(id, 1);
        }
        Probe::Property => {
            let _ = hostcalls::get_property(vec!["xds", "cluster_name"]);
        }
        Probe::SharedGet => {
            let _ = hostcalls::get_shared_data("probe");
        }
        Probe::Headers => {
            let _ = hostcalls::get_map_bytes(MapType::HttpRequestHeaders);
        }
        Probe::RemoveHeader => {
            let _ = hostcalls::set_map_value(MapType::HttpRequestHeaders, "x-absent", None);
        }
    }
}
