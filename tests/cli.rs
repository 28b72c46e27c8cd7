#![allow(clippy::unwrap_used, clippy::indexing_slicing)] // test helpers, not filter code

//! The `mcp-guard` command-line tool, run as a process on files in a temporary directory.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jwt_simple::prelude::*;
use serde_json::json;

const ISS: &str = "https://idp.example.com";
const AUD: &str = "https://mcp.example.com/mcp";
/// sha256("secret").
const SECRET_SHA256: &str = "2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b";

/// A file with `contents` in a directory of its own for this test process.
fn file(name: &str, contents: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let dir: PathBuf = std::env::temp_dir().join(format!("mcp-guard-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let path = dir.join(format!("{n}-{name}"));
    std::fs::write(&path, contents).unwrap();
    path.to_str().unwrap().to_owned()
}

fn run(args: &[&str], stdin: &str) -> (i32, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_mcp-guard"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), stdin.as_bytes()).unwrap();
    let Output {
        status,
        stdout,
        stderr,
    } = child.wait_with_output().unwrap();
    (
        status.code().unwrap(),
        String::from_utf8(stdout).unwrap(),
        String::from_utf8(stderr).unwrap(),
    )
}

fn explain(config: &str, body: &str, extra: &[&str]) -> (i32, String, String) {
    let (config, request) = (file("config.json", config), file("request.json", body));
    let mut args = vec!["explain", "--config", &config, "--request", &request];
    args.extend(extra);
    run(&args, "")
}

fn call(id: u32, tool: &str) -> String {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": tool}})
        .to_string()
}

const POLICY: &str = r#"{"policy":{"allow":{"tools":["echo"]},"deny":{"tools":["delete_*"]},
    "rules":[{"name":"no-shell","deny":{"tools":["shell"]}}]}}"#;

/// A configuration `check --strict` passes: authenticated callers, identity upstream, paths
/// outside the endpoint refused, a limit on tools/call.
fn clean() -> serde_json::Value {
    json!({
        "other_paths": "deny",
        "auth": {"api_keys": {"keys": [{"name": "ci-bot", "sha256": SECRET_SHA256, "roles": ["ci"]}]}},
        "upstream": {"identity_headers": {"subject": "x-mcp-subject"}},
        "policy": {"rules": [{"name": "ci", "who": {"roles": ["ci"]}, "allow": {"tools": ["echo", "db_*"]}}]},
        "rate_limits": {"limits": [{"name": "calls", "methods": ["tools/call"], "key": ["subject"], "bucket": {"capacity": 10}}]}
    })
}

/// `check --strict --json` of `config`: the exit code and each finding as `check path`.
fn posture(config: &serde_json::Value) -> (i32, Vec<String>) {
    let (code, out, err) = run(
        &["check", "--strict", "--json", "--config", "-"],
        &config.to_string(),
    );
    assert!(err.is_empty(), "{err}");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    let findings = report["findings"].as_array().unwrap();
    let lines = findings
        .iter()
        .map(|f| {
            format!(
                "{} {}",
                f["check"].as_str().unwrap(),
                f["path"].as_str().unwrap()
            )
        })
        .collect();
    (code, lines)
}

#[test]
fn check_accepts_a_valid_configuration() {
    let config = clean().to_string();
    let (code, out, err) = run(&["check", "--config", &file("ok.json", &config)], "");
    assert_eq!((code, out.as_str(), err.as_str()), (0, "ok\n", ""));
    let (code, out, _) = run(&["check", "--strict", "--config", "-"], &config);
    assert_eq!((code, out.as_str()), (0, "ok\n"));
    assert_eq!(posture(&clean()), (0, vec![]));
}

#[test]
fn check_prints_warnings_and_fails_only_with_strict() {
    let (code, out, err) = run(&["check", "--config", "-"], POLICY);
    assert_eq!((code, err.as_str()), (0, ""));
    assert_eq!(
        out,
        "warning: auth: every caller is anonymous: rules cannot tell callers apart; fix: add an auth section (jwt_providers, api_keys or peer_identity)\n\
         warning: rate_limits: no rate limit counts tools/call: one caller can call tools without bound; fix: add a limit with \"methods\": [\"tools/call\"] and \"key\": [\"subject\"]\n\
         valid, 2 warnings\n"
    );
    let (code, strict, _) = run(&["check", "--config", "-", "--strict"], POLICY);
    assert_eq!((code, strict), (2, out));
    // An invalid configuration is an error, --strict or not.
    let (code, out, err) = run(
        &["check", "--strict", "--json", "--config", "-"],
        r#"{"bogus":1}"#,
    );
    assert_eq!((code, out.as_str()), (1, ""));
    assert!(
        err.starts_with("mcp-guard: invalid configuration: bogus: unknown field"),
        "{err}"
    );
}

#[test]
fn check_reports_each_weakness_at_its_path() {
    type Edit = fn(&mut serde_json::Value);
    #[rustfmt::skip]
    let cases: &[(Edit, &[&str])] = &[
        (|c| { c.as_object_mut().unwrap().remove("auth"); c["policy"] = json!({}); },
         &["anonymous-allow-all policy.allow", "no-auth auth"]),
        (|c| c["auth"]["allow_anonymous"] = json!(true), &[]),
        (|c| { c["auth"]["allow_anonymous"] = json!(true); c["policy"]["rules"][0] = json!({"name": "all", "allow": {"tools": ["*"]}}); },
         &["anonymous-allow-all policy.rules[0].allow"]),
        (|c| c["other_paths"] = json!("allow"), &["other-paths-allow other_paths"]),
        (|c| c["policy"]["shadow"] = json!(true), &["shadow-mode policy.shadow"]),
        (|c| c["policy"]["rules"][0]["shadow"] = json!(true), &["shadow-mode policy.rules[0].shadow"]),
        (|c| c["policy"]["rules"][0]["who"] = json!({"roles": ["dev"]}), &["rule-never-applies policy.rules[0].who"]),
        (|c| c["policy"]["rules"][0]["who"] = json!({"roles": ["ci"], "api_keys": ["cd-bot"]}),
         &["selector-never-matches policy.rules[0].who.api_keys[0]"]),
        (|c| c["policy"]["rules"][0]["who"] = json!({"roles": ["ci"], "api_keys": ["ci-*"]}), &[]),
        (|c| c["policy"]["rules"].as_array_mut().unwrap().push(json!({"name": "empty"})), &["rule-decides-nothing policy.rules[1]"]),
        (|c| c["policy"]["rules"][0]["deny"] = json!({"tools": ["db_*"]}), &["allow-shadowed-by-deny policy.rules[0].allow.tools[1]"]),
        (|c| c["policy"]["rules"][0]["deny"] = json!({"tools": ["db_drop*"]}), &[]),
        (|c| c["policy"]["deny"] = json!({"tools": ["*"]}),
         &["allow-shadowed-by-deny policy.rules[0].allow.tools[0]", "allow-shadowed-by-deny policy.rules[0].allow.tools[1]"]),
        (|c| { c.as_object_mut().unwrap().remove("upstream"); }, &["no-identity-headers upstream.identity_headers"]),
        (|c| c["tools"] = json!({"pins": {"db": {"*": "trust_on_first_use"}}}), &["trust-on-first-use tools.pins.db.*"]),
        (|c| c["tools"] = json!({"pins": {"db": {"*": "ab".repeat(32)}}}), &[]),
        (|c| { c.as_object_mut().unwrap().remove("rate_limits"); }, &["no-tools-call-limit rate_limits"]),
        (|c| c["rate_limits"]["limits"][0]["methods"] = json!(["tools/list"]), &["no-tools-call-limit rate_limits"]),
        (|c| c["upstream"]["remove_client_authorization"] = json!(false),
         &["credentials-forwarded upstream.remove_client_authorization"]),
    ];
    for (edit, want) in cases {
        let mut config = clean();
        edit(&mut config);
        let (code, got) = posture(&config);
        assert_eq!(got, *want, "{config}");
        assert_eq!(code, if want.is_empty() { 0 } else { 2 }, "{config}");
    }
}

#[test]
fn check_reports_the_filter_error_with_its_path() {
    let bad =
        r#"{"policy":{"rules":[{"name":"a"},{"name":"b"},{"name":"c","allow":{"tools":["["]}}]}}"#;
    let (code, out, err) = run(&["check", "--config", &file("bad.json", bad)], "");
    assert_eq!(code, 1);
    assert_eq!(out, "");
    assert_eq!(
        err,
        "mcp-guard: invalid configuration: policy.rules[2].allow.tools[0]: invalid pattern \"[\": unclosed or empty '['\n"
    );
    let (code, _, err) = run(&["check"], "");
    assert_eq!(code, 1);
    assert!(
        err.starts_with("mcp-guard: --config is required\n"),
        "{err}"
    );
}

#[test]
fn explain_allows() {
    let (code, out, _) = explain(POLICY, &call(1, "echo"), &[]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        out,
        "request:  POST /mcp (71 bytes)\n\
         identity: anonymous, subject \"\", roles [], scopes []\n\
         message   allow        tools/call tool \"echo\"  (rule \"global\")\n\
         verdict:  pass\n"
    );
}

#[test]
fn explain_shows_what_a_call_owes_the_rate_limits() {
    let config = r#"{"rate_limits":{"limits":[
        {"name":"per-tool","key":["tool"],"bucket":{"capacity":9},"cost":{"tools":{"echo":2}}},
        {"name":"lists","methods":["tools/list"],"bucket":{"capacity":9}}]}}"#;
    let (code, out, _) = explain(config, &call(1, "echo"), &[]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.ends_with("limit:    \"per-tool\" key [\"echo\"] costs 2\nverdict:  pass\n"),
        "{out}"
    );
}

#[test]
fn explain_names_the_denying_rule_and_prints_the_403() {
    let (code, out, _) = explain(POLICY, &call(7, "shell"), &[]);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("message   deny         tools/call tool \"shell\"  (rule \"no-shell\"): tool \"shell\" is denied by rule \"no-shell\"\n"),
        "{out}"
    );
    assert!(
        out.ends_with(
            "verdict:  refused, HTTP 403 Forbidden\n\
             {\"jsonrpc\":\"2.0\",\"id\":7,\"error\":{\"code\":-32003,\"message\":\"Forbidden\",\"data\":{\"reason\":\"tool \\\"shell\\\" is denied by rule \\\"no-shell\\\"\"}}}\n"
        ),
        "{out}"
    );
}

#[test]
fn explain_a_batch_with_one_denied_member() {
    let batch = format!("[{},{}]", call(1, "echo"), call(2, "delete_all"));
    let (code, out, _) = explain(POLICY, &batch, &[]);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("batch[0]  allow        tools/call tool \"echo\"  (rule \"global\")\n"),
        "{out}"
    );
    assert!(out.contains("batch[1]  deny         tools/call tool \"delete_all\"  (rule \"global\"): tool \"delete_all\" is denied by policy\n"), "{out}");
    assert!(out.contains(r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32003,"message":"Forbidden","data":{"reason":"batch[1]: tool \"delete_all\" is denied by policy"}}}"#), "{out}");
}

const AUTH: &str = r#"{"auth":{
    "api_keys":{"header":"X-Key","keys":[{"name":"ci","sha256":"SHA","roles":["ci"]}]},
    "resource_metadata":{"resource":"https://mcp.example.com/mcp","authorization_servers":["https://idp.example.com"]}},
  "policy":{"rules":[{"name":"ci","who":{"roles":["ci"]},"allow":{"tools":["echo"]}}]}}"#;

#[test]
fn explain_missing_credentials_gives_401_and_the_challenge() {
    let config = AUTH.replace("SHA", SECRET_SHA256);
    let (code, out, _) = explain(&config, &call(1, "echo"), &[]);
    assert_eq!(code, 2, "{out}");
    assert_eq!(
        out,
        "request:  POST /mcp (71 bytes)\n\
         verdict:  refused, HTTP 401 Unauthorized\n\
         www-authenticate: Bearer resource_metadata=\"https://mcp.example.com/.well-known/oauth-protected-resource/mcp\"\n\
         {\"jsonrpc\":\"2.0\",\"id\":null,\"error\":{\"code\":-32001,\"message\":\"Unauthorized\",\"data\":{\"reason\":\"missing credentials\"}}}\n"
    );
    // The API key goes in the configured header.
    let (code, out, _) = explain(&config, &call(1, "echo"), &["--api-key", "secret"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("identity: api_key:ci, subject \"ci\", roles [\"ci\"], scopes []\n"),
        "{out}"
    );
    assert!(out.contains("(rule \"ci\")"), "{out}");
}

fn jwk(key: &ES256KeyPair) -> serde_json::Value {
    let sec1 = key.public_key().public_key().to_bytes_uncompressed();
    let (x, y) = sec1[1..].split_at(32);
    json!({"kty": "EC", "crv": "P-256", "kid": "k1", "x": URL_SAFE_NO_PAD.encode(x), "y": URL_SAFE_NO_PAD.encode(y)})
}

fn token(key: &ES256KeyPair, roles: &[&str]) -> String {
    let claims = Claims::with_custom_claims(
        json!({"roles": roles, "scope": "mcp:tools"}),
        Duration::from_hours(1),
    )
    .with_issuer(ISS)
    .with_audience(AUD)
    .with_subject("alice");
    ES256KeyPair::from_bytes(&key.to_bytes())
        .unwrap()
        .with_key_id("k1")
        .sign(claims)
        .unwrap()
}

/// One ES256 provider with `keys` (`jwks` or `remote_jwks`), and a rule for admins.
fn jwt_config(keys: serde_json::Value) -> String {
    let mut provider = json!({"name": "corp", "issuer": ISS, "audiences": [AUD],
        "algorithms": ["ES256"], "claims": {"roles": "roles"}});
    let (name, value) = keys.as_object().unwrap().iter().next().unwrap();
    provider[name] = value.clone();
    json!({
        "auth": {"jwt_providers": [provider]},
        "policy": {"rules": [{"name": "admins", "who": {"roles": ["admin"]}, "allow": {"tools": ["*"]}}]}
    })
    .to_string()
}

#[test]
fn explain_a_jwt_allowed_by_a_role_rule() {
    let key = ES256KeyPair::generate();
    let config = jwt_config(json!({"jwks": {"keys": [jwk(&key)]}}));
    let admin = token(&key, &["admin"]);
    let (code, out, err) = explain(&config, &call(3, "deploy"), &["--token", &admin]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(
            "identity: jwt:corp, subject \"alice\", roles [\"admin\"], scopes [\"mcp:tools\"]"
        ),
        "{out}"
    );
    assert!(
        out.contains("message   allow        tools/call tool \"deploy\"  (rule \"admins\")\n"),
        "{out}"
    );

    // No rule applies to a mere user.
    let user = token(&key, &["user"]);
    let (code, out, _) = explain(&config, &call(3, "deploy"), &["--token", &user]);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("(no rule): no rule allows method \"tools/call\""),
        "{out}"
    );

    // Two hours later the token has expired.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let later = (now.as_secs() + 7200).to_string();
    let (code, out, _) = explain(
        &config,
        &call(3, "deploy"),
        &["--token", &admin, "--now", &later],
    );
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("HTTP 401"), "{out}");
}

#[test]
fn explain_remote_jwks_needs_a_jwks_file() {
    let key = ES256KeyPair::generate();
    let config = jwt_config(json!({"remote_jwks": {"cluster": "idp", "path": "/jwks"}}));
    let admin = token(&key, &["admin"]);
    let (code, out, err) = explain(&config, &call(3, "deploy"), &["--token", &admin]);
    assert_eq!(code, 1, "{out}");
    assert!(
        err.contains("\"corp\" uses remote_jwks") && err.contains("--jwks FILE"),
        "{err}"
    );

    let jwks = file("jwks.json", &json!({"keys": [jwk(&key)]}).to_string());
    let (code, out, err) = explain(
        &config,
        &call(3, "deploy"),
        &["--token", &admin, "--jwks", &jwks],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("(rule \"admins\")"), "{out}");
}

const TOOLS_ANSWER: &str = r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[
  {"name":"echo","description":"Echo.","inputSchema":{"type":"object","properties":{"text":{"type":"string"}}},"annotations":{"readOnlyHint":true}},
  {"name":"rm","inputSchema":{"type":"object"},"title":"not hashed"}]}}"#;

/// The SHA-256 of `canonical`, in hex.
fn sha256_hex(canonical: &str) -> String {
    hmac_sha256::Hash::hash(canonical.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn pin_prints_the_pins_of_every_tool() {
    let echo = sha256_hex(
        r#"{"annotations":{"readOnlyHint":true},"description":"Echo.","inputSchema":{"properties":{"text":{"type":"string"}},"type":"object"},"name":"echo"}"#,
    );
    let rm = sha256_hex(r#"{"inputSchema":{"type":"object"},"name":"rm"}"#);
    // From stdin, the whole JSON-RPC answer; from a file, the bare result.
    let (code, out, err) = run(&["pin"], TOOLS_ANSWER);
    assert_eq!(code, 0, "{err}");
    let printed: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        printed,
        json!({"tools": {"pins": {"*": {"echo": echo, "rm": rm}}}})
    );
    let result: serde_json::Value = serde_json::from_str(TOOLS_ANSWER).unwrap();
    let path = file("result.json", &result["result"].to_string());
    let (code, out, _) = run(&["pin", "--answer", &path, "--upstream", "mcp_backend"], "");
    assert_eq!(code, 0);
    let printed: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(printed["tools"]["pins"]["mcp_backend"]["rm"], rm);
    // What it prints is a valid configuration.
    let config = file("pins.json", &out);
    assert_eq!(run(&["check", "--config", &config], "").0, 0);
}

#[test]
fn pin_refuses_what_is_not_a_tools_list() {
    for (input, want) in [
        ("not json", "not JSON"),
        (r#"{"result":{"prompts":[]}}"#, "not a tools/list answer"),
        (
            r#"{"tools":[{"description":"x"}]}"#,
            "tools[0]: a tool definition needs a string name",
        ),
        (
            r#"{"tools":[{"name":"a"},{"name":"a"}]}"#,
            "tool \"a\" is listed twice",
        ),
    ] {
        let (code, _, err) = run(&["pin"], input);
        assert_eq!(code, 1, "{input}");
        assert!(err.contains(want), "{input}: {err}");
    }
}

#[test]
fn explain_judges_annotations_and_pins_by_a_saved_tools_list() {
    let echo = sha256_hex(
        r#"{"annotations":{"readOnlyHint":true},"description":"Echo.","inputSchema":{"properties":{"text":{"type":"string"}},"type":"object"},"name":"echo"}"#,
    );
    let config = json!({
        "policy": {"rules": [
            {"name": "safe", "allow": {"tools": ["*"], "annotations": {"destructiveHint": false}}}
        ]},
        "tools": {"pins": {"backend": {"echo": echo, "rm": "0".repeat(64)}}}
    })
    .to_string();
    let tools = file("tools.json", TOOLS_ANSWER);
    let cases: &[(&str, &[&str], i32, &str)] = &[
        // Without the answer every tool is unknown: destructive by default.
        ("echo", &[], 2, r#"no rule allows tool \"echo\""#),
        ("echo", &["--tools", &tools], 0, r#"(rule "safe")"#),
        // `rm` says nothing: destructive by default.
        (
            "rm",
            &["--tools", &tools],
            2,
            r#"no rule allows tool \"rm\""#,
        ),
        // Under the pinned upstream, `echo` matches its pin and `rm` does not.
        (
            "echo",
            &["--tools", &tools, "--upstream", "backend"],
            0,
            r#"(rule "safe")"#,
        ),
        (
            "rm",
            &["--tools", &tools, "--upstream", "backend"],
            2,
            r#"no rule allows tool \"rm\""#,
        ),
        (
            "add",
            &["--tools", &tools, "--upstream", "backend"],
            2,
            r#"no rule allows tool \"add\""#,
        ),
    ];
    for (tool, extra, want_code, want) in cases {
        let (code, out, err) = explain(&config, &call(1, tool), extra);
        assert_eq!(code, *want_code, "{tool} {extra:?}: {out}{err}");
        assert!(out.contains(want), "{tool} {extra:?}: {out}");
    }
    // A drifted pin refuses a tool the rules allow.
    let drifted = config.replace(&echo, &"1".repeat(64));
    let extra = ["--tools", &tools, "--upstream", "backend"];
    let (code, out, _) = explain(&drifted, &call(1, "echo"), &extra);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("pin mismatch"), "{out}");
}

const CONTRACTS: &str = r#"{"contracts":{"arguments":[{"tools":["send"],"mode":"enforce"}],
    "results":[{"tools":["db_*"],"detectors":["secrets","email"],"action":"redact"},
               {"tools":["vault_*"],"detectors":["private_key"],"action":"block"}]}}"#;

fn tools_list() -> String {
    json!({"jsonrpc": "2.0", "id": 1, "result": {"tools": [{"name": "send", "inputSchema": {
        "type": "object", "properties": {"to": {"type": "string", "maxLength": 8}}, "required": ["to"]}}]}})
    .to_string()
}

fn send(arguments: serde_json::Value) -> String {
    json!({"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": {"name": "send", "arguments": arguments}})
        .to_string()
}

#[test]
fn explain_validates_arguments_against_a_saved_tools_list() {
    let tools = file("tools.json", &tools_list());
    let (code, out, _) = explain(CONTRACTS, &send(json!({"to": "bob"})), &["--tools", &tools]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("contract: tool \"send\": arguments match its inputSchema (Enforce)\n"),
        "{out}"
    );
    let (code, out, _) = explain(
        CONTRACTS,
        &send(json!({"to": "a-very-long-secret"})),
        &["--tools", &tools],
    );
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("verdict:  refused, HTTP 400 Invalid params\n"),
        "{out}"
    );
    assert!(
        out.contains(r#""pointer":"/to","keyword":"maxLength""#),
        "{out}"
    );
    assert!(!out.contains("a-very-long-secret"), "{out}");
    // Without the tools list the schema is unknown: refused by default (uncompilable: refuse).
    let (code, out, _) = explain(CONTRACTS, &send(json!({"to": "bob"})), &[]);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("is not known: list the tools through the gateway first"),
        "{out}"
    );
    // A redaction marker written back is refused for every tool.
    let (code, out, _) = explain(CONTRACTS, &call(5, "other"), &[]);
    assert_eq!(code, 0, "{out}");
    let marker = json!({"jsonrpc": "2.0", "id": 6, "method": "tools/call",
        "params": {"name": "other", "arguments": {"q": "[REDACTED:email]"}}});
    let (code, out, _) = explain(CONTRACTS, &marker.to_string(), &[]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("contain a redaction marker"), "{out}");
}

#[test]
fn scan_redacts_a_json_answer_and_blocks_an_sse_one() {
    let config = file("contracts.json", CONTRACTS);
    let answer = json!({"jsonrpc": "2.0", "id": 9, "result": {"content": [{"type": "text",
        "text": "owner bob@example.com key AKIAIOSFODNN7EXAMPLE"}]}});
    let path = file("answer.json", &answer.to_string());
    let (code, out, _) = run(
        &[
            "scan", "--config", &config, "--answer", &path, "--tool", "db_query",
        ],
        "",
    );
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("message   redacted [aws_key x1, email x1]\n"),
        "{out}"
    );
    assert!(
        out.contains("owner [REDACTED:email] key [REDACTED:aws_key]"),
        "{out}"
    );
    assert!(!out.contains("bob@example.com"), "{out}");
    let sse = "event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":3,\"result\":{\"content\":\ndata: [{\"type\":\"text\",\"text\":\"-----BEGIN EC PRIVATE KEY-----\\nMHc\"}]}}\n\n";
    let (code, out, _) = run(
        &[
            "scan",
            "--config",
            &config,
            "--answer",
            "-",
            "--tool",
            "vault_read",
        ],
        sse,
    );
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("event[0]  blocked: the result of tool \"vault_read\" was withheld: it contains private_key [private_key x1]"), "{out}");
    assert!(!out.contains("MHc"), "{out}");
    let (code, out, _) = run(
        &[
            "scan", "--config", &config, "--answer", &path, "--tool", "echo",
        ],
        "",
    );
    assert_eq!(code, 0);
    assert!(out.contains("none covers tool \"echo\""), "{out}");
    let (code, _, err) = run(&["scan", "--config", &config, "--answer", &path], "");
    assert_eq!(code, 1);
    assert!(
        err.contains("scan needs --config, --answer and --tool"),
        "{err}"
    );
}
