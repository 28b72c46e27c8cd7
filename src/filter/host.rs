//! Small wrappers over `proxy_wasm::hostcalls` that never panic on an `Err` and log what
//! failed, so callers stay about decisions.

use std::cell::Cell;
use std::time::{Duration, UNIX_EPOCH};

use proxy_wasm::hostcalls;
use proxy_wasm::types::{LogLevel, MapType, Status};

use super::log;
use crate::gate::{HeaderMap, LocalReply};
use crate::report::reject::Rejection;
use crate::state::{SharedStore, StoreError};
use crate::upstream::HeaderEdits;

/// Microseconds since the Unix epoch by the host's clock (0 if it cannot tell).
pub fn now_us() -> u64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .unwrap_or(Duration::ZERO)
        .as_micros() as u64
}

/// Milliseconds since the Unix epoch by the host's clock (0 if it cannot tell).
pub fn now_ms() -> u64 {
    now_us() / 1000
}

/// The host's clock read at most once, for what one callback does at one moment (a
/// decision's rate limits, the start of the call it approves): each read is a host call.
#[derive(Default)]
pub struct Now(Cell<Option<u64>>);

impl Now {
    pub fn us(&self) -> u64 {
        if let Some(us) = self.0.get() {
            return us;
        }
        let us = now_us();
        self.0.set(Some(us));
        us
    }

    pub fn ms(&self) -> u64 {
        self.us() / 1000
    }
}

/// Sends a JSON-RPC rejection as the local reply of the current stream.
pub fn send_rejection(rejection: &Rejection) {
    let body = rejection.to_json();
    let mut headers = vec![("content-type", "application/json")];
    headers.extend(rejection.headers.iter().map(|(n, v)| (*n, v.as_str())));
    send(rejection.code.http_status(), headers, body.as_bytes());
}

pub fn send_reply(reply: &LocalReply) {
    send(
        reply.status,
        vec![("content-type", reply.content_type)],
        reply.body.as_bytes(),
    );
}

fn send(status: u32, headers: Vec<(&str, &str)>, body: &[u8]) {
    if let Err(status) = hostcalls::send_http_response(status, headers, Some(body)) {
        log(
            LogLevel::Error,
            &format!("mcp-guard: cannot send a local reply: {status:?}"),
        );
    }
}

/// Applies header edits to the held request headers.
pub fn apply(edits: &HeaderEdits) {
    for name in &edits.remove {
        if let Err(status) = hostcalls::set_map_value(MapType::HttpRequestHeaders, name, None) {
            log(
                LogLevel::Error,
                &format!("mcp-guard: cannot remove header {name}: {status:?}"),
            );
        }
    }
    for (name, value) in &edits.set {
        if let Err(status) =
            hostcalls::set_map_value(MapType::HttpRequestHeaders, name, Some(value))
        {
            log(
                LogLevel::Error,
                &format!("mcp-guard: cannot set header {name}: {status:?}"),
            );
        }
    }
}

/// A string property of the stream (e.g. `["xds", "cluster_name"]`), if the host has it.
pub fn property(path: &[&str]) -> Option<String> {
    let bytes = hostcalls::get_property(path.to_vec()).ok()??;
    String::from_utf8(bytes).ok()
}

/// A header map in one read, kept as the host's buffer: the SDK's readers copy every
/// name and value (see [`HeaderMap`]).
pub fn header_map(map: MapType) -> Result<HeaderMap, String> {
    let serialized = serialized_map(map).map_err(|status| format!("status {status}"))?;
    HeaderMap::parse(serialized).map_err(str::to_owned)
}

/// The host's serialization of header map `map` (`proxy_get_header_map_pairs`), or the
/// host's status code when it refuses. The crate's one `unsafe`: the SDK offers this
/// call only behind a copy of every header.
#[allow(unsafe_code)]
fn serialized_map(map: MapType) -> Result<Vec<u8>, u32> {
    #[link(wasm_import_module = "env")]
    extern "C" {
        fn proxy_get_header_map_pairs(
            map_type: u32,
            return_map_data: *mut *mut u8,
            return_map_size: *mut usize,
        ) -> u32;
    }
    let mut data: *mut u8 = std::ptr::null_mut();
    let mut size: usize = 0;
    // SAFETY: the host writes a pointer and a size it allocated through the SDK's
    // `proxy_on_memory_allocate` (a boxed `[u8]` of exactly `size` bytes, alignment 1),
    // whose ownership passes to us; it is taken back once, with that length as capacity,
    // exactly as the SDK's own readers do.
    unsafe {
        match proxy_get_header_map_pairs(map as u32, &mut data, &mut size) {
            0 if data.is_null() => Ok(Vec::new()),
            0 => Ok(Vec::from_raw_parts(data, size, size)),
            status => Err(status),
        }
    }
}

/// Body bytes Envoy has received for the current request so far, whether or not it has
/// handed them to the filter: `request.total_size` (a little-endian int64: bytes received
/// plus the header map's size) less the size of the request headers as they are now.
pub fn request_body_bytes_received() -> Option<u64> {
    let total = hostcalls::get_property(vec!["request", "total_size"]).ok()??;
    let total = u64::from_le_bytes(total.get(..8)?.try_into().ok()?);
    let headers = header_map(MapType::HttpRequestHeaders).ok()?;
    let header_bytes: usize = headers.iter().map(|(k, v)| k.len() + v.len()).sum();
    Some(total.saturating_sub(header_bytes as u64))
}

/// Envoy's shared data (one map per process, seen by every worker's VM).
pub struct HostStore;

impl SharedStore for HostStore {
    fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        match hostcalls::get_shared_data(key) {
            // An empty value comes back as no data with a version: the entry exists (the
            // version entries of `state::Versioned` and the reservation are empty).
            Ok((value, Some(cas))) => Some((value.unwrap_or_default(), cas)),
            Ok((_, None)) => None,
            Err(status) => {
                log(
                    LogLevel::Error,
                    &format!("mcp-guard: cannot read shared data {key}: {status:?}"),
                );
                None
            }
        }
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError> {
        match hostcalls::set_shared_data(key, Some(value), cas) {
            Ok(()) => Ok(()),
            Err(Status::CasMismatch) => Err(StoreError::CasMismatch),
            Err(status) => {
                log(
                    LogLevel::Error,
                    &format!("mcp-guard: cannot write shared data {key}: {status:?}"),
                );
                Err(StoreError::Host)
            }
        }
    }
}
