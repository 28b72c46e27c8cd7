//! The configuration loader: any input is compiled or refused with a path, never a panic;
//! what it accepts is valid JSON (serde_json agrees) and compiles the same way twice.
//! The same input as a request path: the canonical form endpoints are matched on is
//! always one (rooted, no empty, `.` or `..` segment, no `\`, `;`, upper case or trailing
//! slash), and a path already in that form is matched as it is.
#![no_main]

use std::borrow::Cow;

use libfuzzer_sys::fuzz_target;
use mcp_guard::config::Config;
use mcp_guard::protocol::path::canonical;

fuzz_target!(|text: &[u8]| {
    match Config::from_json(text) {
        Ok(_) => {
            let blank = text.iter().all(u8::is_ascii_whitespace);
            assert!(blank || serde_json::from_slice::<serde_json::Value>(text).is_ok());
            assert!(Config::from_json(text).is_ok());
        }
        Err(e) => assert!(!e.path.is_empty() && !e.message.is_empty()),
    }
    if let Ok(path) = std::str::from_utf8(text) {
        check_path(path);
    }
});

fn check_path(path: &str) {
    let Ok(c) = canonical(path) else { return };
    let p: &str = &c.path;
    assert!(p.starts_with('/'), "{path:?} -> {p:?}");
    assert!(p == "/" || !p.ends_with('/'), "{path:?} -> {p:?}");
    assert!(
        !p.contains(['\\', ';']) && !p.bytes().any(|b| b.is_ascii_uppercase()),
        "{path:?} -> {p:?}"
    );
    let rest = p.get(1..).unwrap_or_default();
    assert!(
        rest.is_empty() || rest.split('/').all(|s| !matches!(s, "" | "." | "..")),
        "{path:?} -> {p:?}"
    );
    if let Cow::Borrowed(b) = c.path {
        assert!(path.starts_with(b), "{path:?} -> {b:?}");
    }
}
