//! The configuration loader: any input is compiled or refused with a path, never a panic;
//! what it accepts is valid JSON (serde_json agrees) and compiles the same way twice.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcp_guard::config::Config;

fuzz_target!(|text: &[u8]| {
    match Config::from_json(text) {
        Ok(_) => {
            let blank = text.iter().all(u8::is_ascii_whitespace);
            assert!(blank || serde_json::from_slice::<serde_json::Value>(text).is_ok());
            assert!(Config::from_json(text).is_ok());
        }
        Err(e) => assert!(!e.path.is_empty() && !e.message.is_empty()),
    }
});
