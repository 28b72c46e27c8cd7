//! The thin glue between the proxy-wasm host and the pure core: the only module that
//! imports `proxy_wasm`. It moves headers and body bytes in, and decisions out.

mod answer;
mod flow;
mod host;
mod http;
mod listen;
mod ratelimit;
mod report;
mod root;
mod shared;

pub use root::Root;

#[cfg(target_arch = "wasm32")]
proxy_wasm::main! {{
    // The release build aborts on panic; say why first, loudly, in Envoy's log.
    std::panic::set_hook(Box::new(|info| {
        log(LogLevel::Critical, &format!("mcp-guard: panic: {info}"));
    }));
    proxy_wasm::set_root_context(|_| -> Box<dyn proxy_wasm::traits::RootContext> {
        Box::new(Root::default())
    });
}}

use proxy_wasm::hostcalls;
use proxy_wasm::types::LogLevel;

/// Logs through the host; a failed log call is not worth failing a request for.
fn log(level: LogLevel, message: &str) {
    let _ = hostcalls::log(level, message);
}
