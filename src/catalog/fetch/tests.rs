use super::*;
use crate::catalog::tooldef::Hints;
use crate::catalog::toolstate::{Pin, PinState, ToolLookup, ToolsConfig};
use crate::config::Config;
use crate::protocol::jsonrpc::parse_body;
use crate::state::MemoryStore;

fn pinned() -> ToolsConfig {
    let mut config = ToolsConfig {
        max_tools_per_upstream: 8,
        ..ToolsConfig::default()
    };
    config
        .pins
        .entry("svc".into())
        .or_default()
        .insert("echo".into(), Pin::TrustOnFirstUse);
    config
}

fn call(tool: &str, meta: &str) -> Vec<u8> {
    format!(
        r#"{{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{{"name":"{tool}","arguments":{{}}{meta}}}}}"#
    )
    .into_bytes()
}

const STATELESS: &str = r#","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}"#;

fn needs(config: &ToolsConfig, contracts: &Contracts, store: &MemoryStore, body: &[u8]) -> bool {
    needs_for(config, contracts, false, store, body)
}

fn needs_for(
    config: &ToolsConfig,
    contracts: &Contracts,
    annotations: bool,
    store: &MemoryStore,
    body: &[u8],
) -> bool {
    let tools = UpstreamTools {
        store,
        config,
        upstream: "svc",
    };
    let parsed = parse_body(body).unwrap();
    let wants = Wants {
        contracts,
        params: true,
        annotations,
    };
    needs_list(parsed.messages(), &tools, wants, None)
}

#[test]
fn a_pinned_tool_never_seen_needs_the_list_until_learned() {
    let (config, store) = (pinned(), MemoryStore::reserved());
    let none = Contracts::default();
    assert!(needs(&config, &none, &store, &call("echo", "")));
    // An unpinned tool with no check needing its schema does not.
    assert!(!needs(&config, &none, &store, &call("add", "")));
    let tools = UpstreamTools {
        store: &store,
        config: &config,
        upstream: "svc",
    };
    tools.learn("echo", crate::catalog::tooldef::Hints::UNKNOWN, [1; 32]);
    assert!(!needs(&config, &none, &store, &call("echo", "")));
    // In a batch, one cold call is enough.
    let batch = format!(
        "[{},{}]",
        String::from_utf8(call("echo", "")).unwrap(),
        String::from_utf8(call("other", "")).unwrap()
    );
    assert!(!needs(&config, &none, &store, batch.as_bytes()));
    let mut wider = pinned();
    wider
        .pins
        .entry("svc".into())
        .or_default()
        .insert("other".into(), Pin::TrustOnFirstUse);
    assert!(needs(&wider, &none, &store, batch.as_bytes()));
}

#[test]
fn a_schema_check_needs_the_list_for_an_unknown_tool() {
    let (config, store) = (ToolsConfig::default(), MemoryStore::reserved());
    let none = Contracts::default();
    // Mcp-Param-* headers exist from 2026-07-28: an older call needs no schema for them.
    assert!(!needs(&config, &none, &store, &call("add", "")));
    assert!(needs(&config, &none, &store, &call("add", STATELESS)));
    let enforce = Config::from_json(br#"{"contracts":{"arguments":[{"mode":"enforce"}]}}"#)
        .unwrap()
        .contracts;
    assert!(needs(&config, &enforce, &store, &call("add", "")));
    // Rules on annotations judge a cold gateway's call by the tool's own hints too.
    assert!(needs_for(&config, &none, true, &store, &call("add", "")));
}

#[test]
fn a_list_goes_stateless_for_a_2026_request() {
    let old = call("add", "");
    let new = call("add", STATELESS);
    let parsed = parse_body(&old).unwrap();
    assert!(!goes_stateless(parsed.messages(), None));
    assert!(goes_stateless(
        parsed.messages(),
        Some(Revision::R2026_07_28)
    ));
    let parsed = parse_body(&new).unwrap();
    assert!(goes_stateless(parsed.messages(), None));
}

/// `tool`'s call after a complete list of upstream "svc" that did not have it.
fn after_list(config: &ToolsConfig, store: &MemoryStore, tool: &str) -> (PinState, Option<String>) {
    let tools = UpstreamTools {
        store,
        config,
        upstream: "svc",
    };
    let after = AfterList { tools: &tools };
    let body = call(tool, "");
    let parsed = parse_body(&body).unwrap();
    let refusal = unlisted_call(parsed.messages(), &after).map(|r| r.to_json());
    (after.status(tool).pin, refusal)
}

#[test]
fn after_a_complete_list_an_unlisted_tool_has_nothing_to_pin_on_first_use() {
    let store = MemoryStore::reserved();
    // The server answers for it, as it would without the gateway.
    assert_eq!(
        after_list(&pinned(), &store, "echo"),
        (PinState::NotPinned, None)
    );
    assert_eq!(
        after_list(&pinned(), &store, "add"),
        (PinState::NotPinned, None)
    );
    // A definition the list had is pinned as usual.
    let config = pinned();
    let tools = UpstreamTools {
        store: &store,
        config: &config,
        upstream: "svc",
    };
    tools.learn("echo", Hints::UNKNOWN, [1; 32]);
    assert_eq!(
        after_list(&config, &store, "echo"),
        (PinState::Verified, None)
    );
    tools.learn("echo", Hints::UNKNOWN, [2; 32]);
    assert_eq!(after_list(&config, &store, "echo").0, PinState::Drifted);
}

#[test]
fn after_a_complete_list_a_pin_no_definition_verifies_refuses_the_call_as_unknown() {
    let unknown = r#"{"jsonrpc":"2.0","id":7,"error":{"code":-32602,"message":"Invalid params","data":{"reason":"Unknown tool: echo"}}}"#;
    let mut hashed = pinned();
    hashed
        .pins
        .entry("svc".into())
        .or_default()
        .insert("echo".into(), Pin::Sha256([1; 32]));
    let store = MemoryStore::reserved();
    assert_eq!(
        after_list(&hashed, &store, "echo"),
        (PinState::Unverified, Some(unknown.to_owned()))
    );
    // An upstream at its bound may have listed the tool without the gateway keeping it.
    let full = ToolsConfig {
        max_tools_per_upstream: 0,
        ..pinned()
    };
    assert_eq!(
        after_list(&full, &store, "echo"),
        (PinState::Unverified, Some(unknown.to_owned()))
    );
}

/// A client's request headers, as the filter reads them.
fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    HeaderMap::from_pairs(pairs)
}

#[test]
fn a_stateless_fetch_carries_the_revision_and_only_the_gateway_credentials() {
    let client = headers(&[
        (":path", "/mcp"),
        (":authority", "api.example"),
        ("authorization", "Bearer client"),
        ("mcp-session-id", "s1"),
        ("mcp-protocol-version", "2026-07-28"),
    ]);
    let credentials = vec![("authorization".to_owned(), "Bearer gateway".to_owned())];
    let fetch = ListFetch::for_request(&client, true, credentials);
    let sent = fetch.headers();
    assert!(sent.contains(&(":path", "/mcp")));
    assert!(sent.contains(&(":authority", "api.example")));
    assert!(sent.contains(&("mcp-method", "tools/list")));
    assert!(sent.contains(&("mcp-protocol-version", "2026-07-28")));
    assert!(sent.contains(&("authorization", "Bearer gateway")));
    assert!(!sent
        .iter()
        .any(|(_, v)| *v == "Bearer client" || *v == "s1"));
    let body: Value = serde_json::from_slice(&fetch.body()).unwrap();
    assert_eq!(body["method"], "tools/list");
    assert_eq!(body["id"], "mcp-guard-tools-0");
    assert_eq!(
        body["params"]["_meta"]["io.modelcontextprotocol/protocolVersion"],
        "2026-07-28"
    );
}

#[test]
fn a_session_fetch_goes_within_the_clients_session() {
    let client = headers(&[
        (":path", "/mcp"),
        (":authority", "a"),
        ("mcp-session-id", "upstream-session"),
        ("mcp-protocol-version", "2025-11-25"),
    ]);
    let fetch = ListFetch::for_request(&client, false, Vec::new());
    let sent = fetch.headers();
    assert!(sent.contains(&("mcp-session-id", "upstream-session")));
    assert!(sent.contains(&("mcp-protocol-version", "2025-11-25")));
    assert!(!sent.iter().any(|(n, _)| *n == "mcp-method"));
    let body: Value = serde_json::from_slice(&fetch.body()).unwrap();
    assert_eq!(body["params"], serde_json::json!({}));
}

fn answer(id: &str, cursor: Option<&str>) -> String {
    let cursor = cursor.map_or(String::new(), |c| format!(r#","nextCursor":"{c}""#));
    format!(
        r#"{{"jsonrpc":"2.0","id":"{id}","result":{{"tools":[{{"name":"echo","inputSchema":{{"type":"object"}}}}]{cursor}}}}}"#
    )
}

#[test]
fn pages_are_followed_by_cursor_and_bounded() {
    let mut fetch = ListFetch::for_request(&HeaderMap::default(), true, Vec::new());
    let page = fetch
        .read(
            Some("200"),
            "application/json",
            answer("mcp-guard-tools-0", Some("c1")).as_bytes(),
        )
        .unwrap();
    assert_eq!(page.next_cursor.as_deref(), Some("c1"));
    assert_eq!(fetch.advance(page.next_cursor), Ok(true));
    let body: Value = serde_json::from_slice(&fetch.body()).unwrap();
    assert_eq!(body["params"]["cursor"], "c1");
    assert_eq!(body["id"], "mcp-guard-tools-1");
    assert_eq!(fetch.list_request().id, "\"mcp-guard-tools-1\"");
    // The answer to an earlier page is not this page's.
    let stale = fetch.read(
        Some("200"),
        "application/json",
        answer("mcp-guard-tools-0", None).as_bytes(),
    );
    assert!(stale.is_err());
    let last = fetch
        .read(
            Some("200"),
            "application/json",
            answer("mcp-guard-tools-1", None).as_bytes(),
        )
        .unwrap();
    assert_eq!(fetch.advance(last.next_cursor), Ok(false));
    // A server that never stops paging fails the fetch.
    let mut endless = ListFetch::for_request(&HeaderMap::default(), true, Vec::new());
    let mut pages = 1;
    while endless.advance(Some("more".into())) == Ok(true) {
        pages += 1;
    }
    assert_eq!(pages, MAX_PAGES);
}

#[test]
fn an_sse_answer_is_read_from_its_event() {
    let fetch = ListFetch::for_request(&HeaderMap::default(), false, Vec::new());
    let stream = format!(
        "event: message\ndata: {{\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\"}}\n\n: note\ndata: {}\n\n",
        answer("mcp-guard-tools-0", None)
    );
    let page = fetch
        .read(
            Some("200"),
            "text/event-stream; charset=utf-8",
            stream.as_bytes(),
        )
        .unwrap();
    assert_eq!(page.answer, answer("mcp-guard-tools-0", None).into_bytes());
    assert!(fetch
        .read(Some("200"), "text/event-stream", b"data: {}\n\n")
        .is_err());
}

#[test]
fn anything_but_a_list_result_fails_the_fetch() {
    let fetch = ListFetch::for_request(&HeaderMap::default(), true, Vec::new());
    let json = "application/json";
    let ok = answer("mcp-guard-tools-0", None);
    assert!(fetch.read(Some("200"), json, ok.as_bytes()).is_ok());
    assert_eq!(
        fetch.read(Some("401"), json, ok.as_bytes()).unwrap_err(),
        "HTTP status 401"
    );
    assert!(fetch
        .read(None, json, b"")
        .unwrap_err()
        .contains("no answer"));
    assert!(fetch.read(Some("200"), "text/html", ok.as_bytes()).is_err());
    assert!(fetch.read(Some("200"), json, b"{not json").is_err());
    let error =
        r#"{"jsonrpc":"2.0","id":"mcp-guard-tools-0","error":{"code":-32601,"message":"no"}}"#;
    assert!(fetch
        .read(Some("200"), json, error.as_bytes())
        .unwrap_err()
        .contains("error"));
    let no_tools = r#"{"jsonrpc":"2.0","id":"mcp-guard-tools-0","result":{}}"#;
    assert!(fetch.read(Some("200"), json, no_tools.as_bytes()).is_err());
    let bad_cursor =
        r#"{"jsonrpc":"2.0","id":"mcp-guard-tools-0","result":{"tools":[],"nextCursor":3}}"#;
    assert!(fetch
        .read(Some("200"), json, bad_cursor.as_bytes())
        .is_err());
}

#[test]
fn the_refusal_for_a_failed_fetch_is_a_503_to_retry() {
    let refusal = unavailable("HTTP status 500", Some("\"a\""));
    assert_eq!(refusal.code.http_status(), 503);
    assert!(refusal
        .headers
        .iter()
        .any(|(n, v)| *n == "retry-after" && v == "1"));
    assert!(refusal.to_json().contains(r#""id":"a""#));
}
