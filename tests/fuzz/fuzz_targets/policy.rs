//! The whole body decision under a fixed policy: nothing the policy denies is approved,
//! whatever the body looks like. serde_json's reading of each message is the reference: a
//! `tools/call` of a tool named `delete_*`, or any call by a caller without a rule, must be
//! refused, and no body serde_json refuses is approved.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use mcp_guard::identity::Identity;
use mcp_guard::config::Config;
use mcp_guard::gate::{BodyRule, Gate, HeaderMap, RequestHead};
use mcp_guard::catalog::toolstate::NoTools;
use serde_json::Value;

static CONFIG: LazyLock<Config> = LazyLock::new(|| {
    Config::from_json(
        br#"{"policy": {
            "allow": {"tools": ["echo", "add", "db_*", "delete_*"], "prompts": ["greet*"]},
            "deny": {"tools": ["delete_*", "db_drop*"], "resources": ["file:///etc/*"]},
            "arguments": {"echo": [{"pointer": "/text", "max_length": 8}]}}}"#,
    )
    .expect("fuzz policy compiles")
});

fn denied_tool(name: &str) -> bool {
    name.starts_with("delete_")
        || name.starts_with("db_drop")
        || !(name == "echo" || name == "add" || name.starts_with("db_"))
}

fuzz_target!(|body: &[u8]| {
    let gate = Gate { config: &CONFIG };
    let head = RequestHead::new(
        HeaderMap::from_pairs(&[
            (":method", "POST"),
            (":path", "/mcp"),
            ("content-type", "application/json"),
        ]),
        false,
    );
    let Ok(approved) = gate.approve(
        BodyRule::JsonRpc,
        &head,
        &Identity::anonymous(),
        body,
        &NoTools,
    ) else {
        return;
    };
    let value: Value = serde_json::from_slice(body).expect("approved a body serde_json refuses");
    let messages = match &value {
        Value::Array(items) => items.iter().collect(),
        other => vec![other],
    };
    assert_eq!(messages.len(), approved.decisions.len());
    for m in messages {
        if m["method"] == "tools/call" {
            let name = m["params"]["name"]
                .as_str()
                .expect("approved a call without a name");
            assert!(!denied_tool(name), "approved a call of {name:?}");
            if name == "echo" {
                if let Some(text) = m["params"]["arguments"]["text"].as_str() {
                    assert!(text.chars().count() <= 8, "approved echo with a long text");
                }
            }
        }
    }
});
