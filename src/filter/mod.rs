//! The thin glue between the proxy-wasm host and the pure core: the only module that
//! imports `proxy_wasm`. It moves headers and body bytes in, and decisions out.

mod http;
mod root;

pub use root::Root;

#[cfg(target_arch = "wasm32")]
proxy_wasm::main! {{
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
