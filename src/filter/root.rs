//! The root context: compiles the configuration once per VM and hands it to each request.

use std::rc::Rc;
use std::time::Duration;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{BufferType, ContextType, LogLevel, MetricType};

use super::http::Request;
use super::log;
use crate::config::Config;

/// How often the VM's memory gauge is refreshed.
const MEMORY_GAUGE_PERIOD: Duration = Duration::from_secs(5);

#[derive(Default)]
pub struct Root {
    config: Option<Rc<Config>>,
    /// `mcp_guard.vm_memory_bytes`: this VM's linear memory (one VM per Envoy worker).
    memory_gauge: Option<u32>,
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

impl Context for Root {}

impl RootContext for Root {
    fn on_vm_start(&mut self, _vm_configuration_size: usize) -> bool {
        self.memory_gauge =
            hostcalls::define_metric(MetricType::Gauge, "mcp_guard.vm_memory_bytes").ok();
        let _ = hostcalls::set_tick_period(MEMORY_GAUGE_PERIOD);
        self.record_memory();
        true
    }

    fn on_tick(&mut self) {
        self.record_memory();
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
                self.config = Some(Rc::new(config));
                log(LogLevel::Info, "mcp-guard: configuration loaded");
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

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Request::new(self.config.clone())))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
