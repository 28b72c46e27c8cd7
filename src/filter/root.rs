//! The root context: compiles the configuration once per VM and hands it to each request.

use std::rc::Rc;
use std::time::Duration;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel, MetricType};

use super::host;
use super::http::Request;
use super::log;
use super::shared::Shared;
use crate::config::Config;
use crate::identity::TOKEN_CACHE_CAPACITY;
use crate::report::reject::{Code, Rejection};
use crate::state;

/// The root's timer: JWKS refreshes, waiting-request deadlines, the memory gauge.
const TICK: Duration = Duration::from_millis(200);
/// The memory gauge is refreshed every this many ticks.
const MEMORY_GAUGE_TICKS: u32 = 25;

#[derive(Default)]
pub struct Root {
    shared: Option<Rc<Shared>>,
    /// `mcp_guard.vm_memory_bytes`: this VM's linear memory (one VM per Envoy worker).
    memory_gauge: Option<u32>,
    ticks: u32,
}

impl Root {
    fn record_memory(&self) {
        if let Some(id) = self.memory_gauge {
            let _ = hostcalls::record_metric(id, vm_memory_bytes());
        }
    }
}

/// Size of this VM's linear memory; it only grows, so it is the VM's high-water mark.
fn vm_memory_bytes() -> u64 {
    #[cfg(target_arch = "wasm32")]
    return core::arch::wasm32::memory_size(0) as u64 * 65536;
    #[cfg(not(target_arch = "wasm32"))]
    0
}

impl Context for Root {
    /// A JWKS fetch the root started (at start or on refresh) has answered.
    fn on_http_call_response(
        &mut self,
        token_id: u32,
        _headers: usize,
        body_size: usize,
        _trailers: usize,
    ) {
        if let Some(shared) = &self.shared {
            shared.on_http_call(token_id, body_size);
        }
    }
}

impl RootContext for Root {
    fn on_vm_start(&mut self, _vm_configuration_size: usize) -> bool {
        self.memory_gauge =
            hostcalls::define_metric(MetricType::Gauge, "mcp_guard.vm_memory_bytes").ok();
        let _ = hostcalls::set_tick_period(TICK);
        self.record_memory();
        true
    }

    fn on_tick(&mut self) {
        self.ticks = self.ticks.wrapping_add(1);
        if self.ticks % MEMORY_GAUGE_TICKS == 0 {
            self.record_memory();
        }
        if let Some(shared) = &self.shared {
            shared.on_tick();
        }
    }

    fn on_configure(&mut self, size: usize) -> bool {
        let bytes = match hostcalls::get_buffer(BufferType::PluginConfiguration, 0, size) {
            Ok(bytes) => bytes.unwrap_or_default(),
            Err(status) => {
                log(
                    LogLevel::Critical,
                    &format!("mcp-guard: cannot read configuration: {status:?}"),
                );
                return false;
            }
        };
        match Config::from_json(&bytes) {
            Ok(config) => {
                if state::reserve(&host::HostStore).is_err() {
                    log(
                        LogLevel::Critical,
                        "mcp-guard: cannot write shared data; refusing the configuration",
                    );
                    return false;
                }
                // The bounds of the verified-token caches, reported once.
                let tokens = match config.auth.as_ref() {
                    Some(auth) if !auth.providers.is_empty() => format!(
                        " (verified JWTs cached: {TOKEN_CACHE_CAPACITY} per worker, {} slots \
                         shared by the workers)",
                        auth.shared_token_cache_slots
                    ),
                    _ => String::new(),
                };
                let shared = Rc::new(Shared::new(config));
                // Fetch remote keys now rather than on the first request.
                shared.on_tick();
                self.shared = Some(shared);
                log(
                    LogLevel::Info,
                    &format!("mcp-guard: configuration loaded{tokens}"),
                );
                true
            }
            Err(e) => {
                // A refused configuration keeps the previous one (if any) in force.
                log(
                    LogLevel::Critical,
                    &format!("mcp-guard: invalid configuration: {e}"),
                );
                false
            }
        }
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(match &self.shared {
            Some(shared) => Box::new(Request::new(shared.clone(), context_id)),
            // Without a valid configuration every request is refused (fail closed).
            None => Box::new(Unconfigured),
        })
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

/// The request context of a VM that has no valid configuration: refuses everything.
struct Unconfigured;

impl Context for Unconfigured {}

impl HttpContext for Unconfigured {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        host::send_rejection(&Rejection::new(
            Code::Internal,
            "mcp-guard has no valid configuration",
        ));
        Action::Pause
    }
}
