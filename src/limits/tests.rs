//! #[cfg(test)] Rate-limit configuration, charges per message and caller, and the 429.

use std::collections::BTreeMap;

use super::*;
use crate::config::Config;
use crate::protocol::jsonrpc::parse_body;

fn limits(json: &str) -> RateLimits {
    match Config::from_json(format!(r#"{{"rate_limits":{json}}}"#).as_bytes()) {
        Ok(c) => c.rate_limits,
        Err(e) => panic!("{json}: {e}"),
    }
}

fn err(json: &str) -> String {
    Config::from_json(format!(r#"{{"rate_limits":{json}}}"#).as_bytes())
        .unwrap_err()
        .to_string()
}

fn api_key(name: &str, roles: &[&str]) -> Identity {
    Identity {
        kind: IdentityKind::ApiKey { name: name.into() },
        subject: format!("sub-{name}"),
        roles: roles.iter().map(|r| r.to_string()).collect(),
        scopes: vec![],
        claims: BTreeMap::from([("team".to_owned(), vec!["a".to_owned(), "b".to_owned()])]),
        expires_at: None,
    }
}

fn call(tool: &str, args: &str) -> String {
    format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"{tool}","arguments":{args}}}}}"#
    )
}

/// The charges as `limit:key=cost` strings.
fn charges(l: &RateLimits, who: &Identity, body: &str) -> Vec<String> {
    let parsed = parse_body(body.as_bytes()).unwrap();
    let cx = KeyContext {
        session: Some("s1"),
        upstream: Some("up"),
    };
    l.charges(who, parsed.messages(), body.as_bytes(), cx)
        .iter()
        .map(|c| format!("{}:{}={}", l.limits[c.limit].name, c.key.join("|"), c.cost))
        .collect()
}

#[test]
fn config_errors_name_the_path() {
    let b = r#""bucket":{"capacity":1}"#;
    let cases = [
        (format!(r#"{{"limits":[{{"name":"a b",{b}}}]}}"#), r#"rate_limits.limits[0].name: "a b": use 1 to 64 letters, digits, '-', '_' or '.'"#),
        (format!(r#"{{"limits":[{{"name":"a",{b}}},{{"name":"a",{b}}}]}}"#), r#"rate_limits.limits[1].name: duplicate limit name "a""#),
        (r#"{"limits":[{"name":"a","bucket":{"capacity":0}}]}"#.into(), "rate_limits.limits[0].bucket.capacity: 0 is outside 1..=1000000000"),
        (r#"{"limits":[{"name":"a","bucket":{"capacity":1,"refill":{"tokens":1,"per_seconds":0}}}]}"#.into(), "rate_limits.limits[0].bucket.refill.per_seconds: 0 is outside 1..=86400"),
        (r#"{"limits":[{"name":"a"}]}"#.into(), "rate_limits.limits[0]: a local limit needs a bucket"),
        (format!(r#"{{"limits":[{{"name":"a","key":["subject","ip"],{b}}}]}}"#), r#"rate_limits.limits[0].key[1]: "ip": expected subject, api_key, claim:<name>, tool, method, upstream or session"#),
        (format!(r#"{{"limits":[{{"name":"a","key":["tool","tool"],{b}}}]}}"#), "rate_limits.limits[0].key[1]: repeated"),
        (format!(r#"{{"limits":[{{"name":"a","tools":["["],{b}}}]}}"#), r#"rate_limits.limits[0].tools[0]: invalid pattern "[": unclosed or empty '['"#),
        (format!(r#"{{"limits":[{{"name":"a","who":{{}},{b}}}]}}"#), "rate_limits.limits[0].who: selects no caller: give subjects, roles, scopes, api_keys, claims or authenticated, or omit `who` to apply the rule to everyone"),
        (format!(r#"{{"limits":[{{"name":"a","cost":{{"arguments":{{"send":"to"}}}},{b}}}]}}"#), r#"rate_limits.limits[0].cost.arguments.send: "to" must start with '/'"#),
        (format!(r#"{{"limits":[{{"name":"a","cost":{{"tools":{{"x":2000000000}}}},{b}}}]}}"#), "rate_limits.limits[0].cost.tools.x: 2000000000 is above 1000000000"),
        (format!(r#"{{"limits":[{{"name":"a","scope":"global",{b}}}]}}"#), "rate_limits.limits[0].scope: a global limit needs rate_limits.service"),
        (format!(r#"{{"service":{{"cluster":"rls"}},"limits":[{{"name":"a","scope":"global",{b}}}]}}"#), "rate_limits.limits[0].bucket: a global limit's bucket is configured in the rate limit service"),
        (r#"{"service":{"cluster":"rls","timeout_ms":0}}"#.into(), "rate_limits.service.timeout_ms: 0 is outside 1..=60000"),
        (r#"{"max_keys":0}"#.into(), "rate_limits.max_keys: 0 is outside 1..=1000000"),
        (r#"{"on_contention":"maybe"}"#.into(), "rate_limits.on_contention: unknown variant `maybe`, expected `allow` or `deny` at line 1 column 39"),
    ];
    for (json, want) in cases {
        assert_eq!(err(&json), want, "{json}");
    }
}

#[test]
fn selectors_keys_and_costs() {
    let l = limits(
        r#"{"limits":[
        {"name":"per-caller-tool","who":{"roles":["dev"]},"methods":["tools/call"],
         "key":["api_key","tool"],"bucket":{"capacity":10},
         "cost":{"default":1,"tools":{"send_*":5,"send_fax":7},"arguments":{"send_email":"/to"}}},
        {"name":"everything","key":["subject","claim:team","method","session","upstream"],"bucket":{"capacity":10}},
        {"name":"only-db","tools":["db_*"],"bucket":{"capacity":10}},
        {"name":"free-echo","key":["tool"],"cost":{"tools":{"echo":0}},"bucket":{"capacity":10}}]}"#,
    );
    let dev = api_key("k1", &["dev"]);
    let other = api_key("k2", &["ops"]);
    assert_eq!(
        charges(&l, &dev, &call("echo", "{}")),
        [
            "per-caller-tool:k1|echo=1",
            "everything:sub-k1|a,b|tools/call|s1|up=1"
        ]
    );
    assert_eq!(
        charges(&l, &other, &call("echo", "{}")),
        ["everything:sub-k2|a,b|tools/call|s1|up=1"]
    );
    // Tool costs: the highest matching entry; an argument's count beats them.
    let per_caller = |body: &str| charges(&l, &dev, body).remove(0);
    assert_eq!(
        per_caller(&call("send_sms", "{}")),
        "per-caller-tool:k1|send_sms=5"
    );
    assert_eq!(
        per_caller(&call("send_fax", "{}")),
        "per-caller-tool:k1|send_fax=7"
    );
    assert_eq!(
        per_caller(&call("send_email", r#"{"to":["a","b","c"]}"#)),
        "per-caller-tool:k1|send_email=3"
    );
    assert_eq!(
        per_caller(&call("send_email", r#"{"to":2.5}"#)),
        "per-caller-tool:k1|send_email=3"
    );
    // A count of zero still costs one: a call cannot make itself free.
    for args in [r#"{"to":[]}"#, r#"{"to":0}"#, r#"{"to":-0}"#] {
        assert_eq!(
            per_caller(&call("send_email", args)),
            "per-caller-tool:k1|send_email=1",
            "{args}"
        );
    }
    // Absent, negative or not a count: the tool's cost.
    for args in ["{}", r#"{"to":-4}"#, r#"{"to":"x"}"#, r#"{"to":1,"to":2}"#] {
        assert_eq!(
            per_caller(&call("send_email", args)),
            "per-caller-tool:k1|send_email=5",
            "{args}"
        );
    }
    // Tools selector: only calls of matching tools; zero cost: no charge.
    assert_eq!(
        charges(&l, &other, &call("db_query", "{}")),
        [
            "everything:sub-k2|a,b|tools/call|s1|up=1",
            "only-db:=1",
            "free-echo:db_query=1"
        ]
    );
    // Responses never count; a ping counts where methods allow it.
    let response = r#"{"jsonrpc":"2.0","id":1,"result":{}}"#;
    assert!(charges(&l, &dev, response).is_empty());
    assert_eq!(
        charges(&l, &other, r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#),
        ["everything:sub-k2|a,b|ping|s1|up=1", "free-echo:=1"]
    );
}

#[test]
fn batch_members_in_one_bucket_add_up() {
    let l = limits(
        r#"{"limits":[{"name":"t","key":["tool"],"cost":{"tools":{"b":3}},"bucket":{"capacity":10}}]}"#,
    );
    let batch = format!(
        "[{},{},{}]",
        call("a", "{}"),
        call("b", "{}"),
        call("a", "{}")
    );
    assert_eq!(
        charges(&l, &Identity::anonymous(), &batch),
        ["t:a=2", "t:b=3"]
    );
}

#[test]
fn store_keys_do_not_run_together_and_name_the_shape() {
    let l = limits(
        r#"{"limits":[{"name":"n","key":["subject","tool"],"bucket":{"capacity":5,"refill":{"tokens":2,"per_seconds":3}}}]}"#,
    );
    let limit = &l.limits[0];
    let a = limit.store_key(&["a:1".into(), "b".into()]);
    let b = limit.store_key(&["a".into(), "1:b".into()]);
    assert_ne!(a, b);
    assert_eq!(a, "mcp-guard/rl/n/5.2.3000/3:a:11:b");
    assert_eq!(
        limit.descriptor(&["alice".into(), "echo".into()]),
        [
            ("limit".to_owned(), "n".to_owned()),
            ("subject".to_owned(), "alice".to_owned()),
            ("tool".to_owned(), "echo".to_owned())
        ]
    );
}

#[test]
fn refusal_is_a_429_with_headers_and_data() {
    let refusal = Refusal {
        limit: "calls".into(),
        quota: 20,
        window_seconds: Some(60),
        remaining: 0,
        retry_after_ms: Some(2_001),
        why: None,
    };
    let r = refusal.rejection(Some("7"));
    assert_eq!((r.code.http_status(), r.code.json_rpc()), (429, -32029));
    assert_eq!(
        r.headers,
        [
            ("retry-after", "3".to_owned()),
            ("ratelimit-policy", r#""calls";q=20;w=60"#.to_owned()),
            ("ratelimit", r#""calls";r=0;t=3"#.to_owned()),
        ]
    );
    let v: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
    assert_eq!(v["id"], 7);
    assert_eq!(
        v["error"]["data"],
        serde_json::json!({"reason":"rate limit \"calls\" exceeded; retry in 3 s","limit":"calls","retry_after_seconds":3})
    );

    // Never: no Retry-After, no t, and a null wait.
    let never = Refusal {
        window_seconds: None,
        retry_after_ms: None,
        remaining: 2,
        ..refusal
    }
    .rejection(None);
    assert_eq!(
        never.headers,
        [
            ("ratelimit-policy", r#""calls";q=20"#.to_owned()),
            ("ratelimit", r#""calls";r=2"#.to_owned()),
        ]
    );
    let v: serde_json::Value = serde_json::from_str(&never.to_json()).unwrap();
    assert_eq!(
        v["error"]["data"]["retry_after_seconds"],
        serde_json::Value::Null
    );
}

#[test]
fn global_refusal_names_the_descriptor_over_its_limit() {
    let l = limits(
        r#"{"service":{"cluster":"rls"},"limits":[{"name":"a","scope":"global"},{"name":"b","scope":"global"}]}"#,
    );
    let charges = [
        Charge {
            limit: 0,
            key: vec![],
            cost: 1,
        },
        Charge {
            limit: 1,
            key: vec![],
            cost: 1,
        },
    ];
    let ok = rls::Status {
        code: rls::CODE_OK,
        ..rls::Status::default()
    };
    let over = rls::Status {
        code: rls::CODE_OVER_LIMIT,
        requests_per_unit: 20,
        unit: 2,
        limit_remaining: 0,
        reset_ms: 1_500,
    };
    let r = l.global_refusal(charges.iter(), &[ok, over]);
    assert_eq!(
        r,
        Refusal {
            limit: "b".into(),
            quota: 20,
            window_seconds: Some(60),
            remaining: 0,
            retry_after_ms: Some(1_500),
            why: None,
        }
    );
    // No statuses (Limitador): still refused, naming the call's first limit.
    let r = l.global_refusal(charges.iter(), &[]);
    assert_eq!(
        (
            r.limit.as_str(),
            r.quota,
            r.window_seconds,
            r.retry_after_ms
        ),
        ("a", 0, None, None)
    );
}
