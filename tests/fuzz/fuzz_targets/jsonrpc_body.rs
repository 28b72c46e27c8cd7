//! The JSON-RPC body reader against serde_json: whatever the filter accepts, serde_json
//! accepts and reads with the same method, id and tool/prompt name or resource URI.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcp_guard::protocol::jsonrpc::differential::agree;

fuzz_target!(|body: &[u8]| {
    if let Err(disagreement) = agree(body) {
        panic!("{disagreement}");
    }
});
