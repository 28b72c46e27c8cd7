#![allow(clippy::expect_used, clippy::indexing_slicing)] // a benchmark binary, not filter code

//! Microbenchmarks of the pure core (`make bench` runs them): body parsing by size, the
//! header/body check, the policy decision, hashing a tool definition, and JWT verification.
//! Plain `std` timing, no extra dependencies: each case runs for a fixed wall time after a
//! warm-up and reports the median of batches.

use std::hint::black_box;
use std::time::{Duration, Instant};

use mcp_guard::catalog::tooldef::ToolDef;
use mcp_guard::catalog::toolstate::NoTools;
use mcp_guard::config::Config;
use mcp_guard::gate::{BodyRule, Gate, HeaderMap, RequestHead};
use mcp_guard::identity::{Identity, IdentityKind};
use mcp_guard::protocol::jsonrpc::parse_body;

fn call_body(tool: &str, id: u64, text_len: usize) -> Vec<u8> {
    format!(
        r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"{tool}","arguments":{{"text":"{}","n":[1,2,3],"flag":true}},"_meta":{{"progressToken":{id}}}}}}}"#,
        "x".repeat(text_len)
    )
    .into_bytes()
}

/// Runs `f` in batches for about `budget`; returns the median time per call.
fn measure(budget: Duration, mut f: impl FnMut()) -> Duration {
    let warm = Instant::now();
    let mut per_batch = 1u32;
    while warm.elapsed() < budget / 10 {
        for _ in 0..per_batch {
            f();
        }
        per_batch = per_batch.saturating_mul(2);
    }
    let batch = per_batch.max(1);
    let mut samples = Vec::new();
    let start = Instant::now();
    while start.elapsed() < budget || samples.len() < 5 {
        let t = Instant::now();
        for _ in 0..batch {
            f();
        }
        samples.push(t.elapsed() / batch);
    }
    samples.sort();
    samples[samples.len() / 2]
}

fn report(name: &str, bytes: usize, t: Duration) {
    let ns = t.as_nanos() as f64;
    let mbps = if bytes > 0 {
        bytes as f64 / ns * 1e3
    } else {
        0.0
    };
    println!("| {name:<44} | {:>10.0} ns | {:>8.0} MB/s |", ns, mbps);
}

fn main() {
    let budget = Duration::from_millis(
        std::env::var("BENCH_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1000),
    );
    println!("| case | per op | throughput |\n|---|---:|---:|");
    for (label, text_len) in [
        ("300 B", 150),
        ("4 KiB", 3900),
        ("64 KiB", 65_300),
        ("1 MiB", 1_048_000),
    ] {
        let body = call_body("echo", 7, text_len);
        let t = measure(budget, || {
            black_box(parse_body(black_box(&body)).is_ok());
        });
        report(
            &format!("parse tools/call {label} ({} B)", body.len()),
            body.len(),
            t,
        );
    }

    let head = RequestHead::new(
        HeaderMap::from_pairs(&[
            (":method", "POST"),
            (":path", "/mcp"),
            ("content-type", "application/json"),
        ]),
        false,
    );
    let tools: Vec<String> = (0..100).map(|i| format!("team{i}_*")).collect();
    // 100 named rules, one per role; the caller holds the last one's role.
    let rules: Vec<String> = (0..100)
        .map(|i| format!(r#"{{"name":"team{i}","who":{{"roles":["role{i}"]}},"allow":{{"tools":["team{i}_*"]}}}}"#))
        .collect();
    let caller = Identity {
        kind: IdentityKind::Jwt {
            provider: "idp".into(),
        },
        subject: "alice".into(),
        roles: vec!["staff".into(), "role99".into()],
        scopes: vec!["mcp:tools".into()],
        ..Identity::anonymous()
    };
    for (label, config) in [
        ("gate: allow all", r#"{}"#.to_owned()),
        ("gate: 3 exact + 1 glob", r#"{"policy":{"allow":{"tools":["echo","add","search","db_*"]},"deny":{"tools":["db_drop"]}}}"#.to_owned()),
        ("gate: 100 glob patterns", format!(r#"{{"policy":{{"allow":{{"tools":{}}}}}}}"#, serde_json::to_string(&tools).unwrap_or_default())),
        ("gate: 100 rules", format!(r#"{{"policy":{{"rules":[{}]}}}}"#, rules.join(","))),
    ] {
        let config = Config::from_json(config.as_bytes()).expect("bench config");
        let gate = Gate { config: &config };
        let bodies: Vec<Vec<u8>> = (0..64).map(|i| call_body(if i % 2 == 0 { "team99_x" } else { "echo" }, i, 150)).collect();
        let mut i = 0;
        let t = measure(budget, || {
            i = (i + 1) % bodies.len();
            black_box(gate.approve(BodyRule::JsonRpc, &head, &caller, black_box(&bodies[i]), &NoTools).is_ok());
        });
        report(&format!("{label}, 300 B call"), bodies[0].len(), t);
    }
    // A tools/list element as the Python SDK writes it: hints and canonical SHA-256.
    let tool = br#"{"name":"echo","description":"Return the text unchanged.","inputSchema":{"type":"object","properties":{"text":{"title":"Text","type":"string"}},"required":["text"],"title":"echoArguments"},"outputSchema":{"properties":{"result":{"title":"Result","type":"string"}},"required":["result"],"title":"echoOutput","type":"object"},"annotations":{"readOnlyHint":true}}"#;
    let t = measure(budget, || {
        black_box(ToolDef::parse(black_box(tool)).is_ok());
    });
    report("tool definition: hints + canonical SHA-256", tool.len(), t);
    contract_cases(budget, &head, &caller);
    auth_cases(budget);
}

/// JWT verification per algorithm with a cold cache, and a cache hit (`auth::Authenticator`).
fn auth_cases(budget: Duration) {
    use jwt_simple::prelude::*;
    use mcp_guard::identity::{AuthDto, Credentials, KeySet, TokenCache};

    let b64 = |bytes: &[u8]| {
        base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, bytes)
    };
    let rsa = RS256KeyPair::generate(2048)
        .expect("RSA key")
        .with_key_id("rsa");
    let ec = ES256KeyPair::generate().with_key_id("ec");
    let ed = Ed25519KeyPair::generate().with_key_id("ed");
    let (n, e) = {
        let c = rsa.public_key().to_components();
        (b64(&c.n), b64(&c.e))
    };
    let point = ec.public_key().public_key().to_bytes_uncompressed();
    let jwks = serde_json::json!({"keys": [
        {"kty": "RSA", "kid": "rsa", "n": n, "e": e},
        {"kty": "EC", "crv": "P-256", "kid": "ec", "x": b64(&point[1..33]), "y": b64(&point[33..])},
        {"kty": "OKP", "crv": "Ed25519", "kid": "ed", "x": b64(&ed.public_key().to_bytes())},
    ]});
    let config = serde_json::json!({"jwt_providers": [{"name": "idp", "issuer": "https://idp.example.com",
        "audiences": ["https://mcp.example.com/mcp"], "jwks": jwks,
        "claims": {"roles": "realm_access.roles"}}]});
    let auth = serde_json::from_value::<AuthDto>(config)
        .expect("auth config")
        .compile("auth")
        .expect("auth config");
    let keys: Vec<Option<KeySet>> = Vec::new();
    let now = Clock::now_since_epoch().as_secs();
    let claims = || {
        let roles = serde_json::json!({"realm_access": {"roles": ["dev", "ops"]}, "scope": "mcp:tools read"});
        Claims::with_custom_claims(roles, Duration::from_hours(1))
            .with_issuer("https://idp.example.com")
            .with_audience("https://mcp.example.com/mcp")
            .with_subject("alice")
    };
    let mut cache = TokenCache::default();
    for (label, token) in [
        ("RS256 (2048-bit)", rsa.sign(claims())),
        ("ES256", ec.sign(claims())),
        ("EdDSA", ed.sign(claims())),
    ] {
        let token = token.expect("sign");
        let value = format!("Bearer {token}");
        let headers = [("authorization", value.as_bytes())];
        let credentials = Credentials {
            headers: &headers,
            ..Credentials::default()
        };
        auth.authenticate(&credentials, &keys, &mut cache, now)
            .expect("the token verifies");
        let t = measure(budget, || {
            let mut cold = TokenCache::new(1);
            black_box(
                auth.authenticate(black_box(&credentials), &keys, &mut cold, now)
                    .is_ok(),
            );
        });
        report(&format!("auth: verify {label}, no cache"), token.len(), t);
        let t = measure(budget, || {
            black_box(
                auth.authenticate(black_box(&credentials), &keys, &mut cache, now)
                    .is_ok(),
            );
        });
        report(&format!("auth: {label}, cache hit"), token.len(), t);
    }
}

/// Tool contracts: a 300 B call with and without inputSchema validation (gate included, as
/// the glue runs both), and the result detectors over a 64 KiB answer.
fn contract_cases(budget: Duration, head: &RequestHead, caller: &Identity) {
    use mcp_guard::contract::calls::{Checks, Compiled};
    use mcp_guard::contract::{CallCheck, SchemaCache};

    let config = Config::from_json(
        br#"{"contracts":{"arguments":[{"mode":"enforce"}],"results":[{"detectors":["secrets","pii"],"action":"redact"}]}}"#,
    )
    .expect("bench config");
    let gate = Gate { config: &config };
    let tool = br#"{"name":"echo","inputSchema":{"type":"object","properties":{"text":{"type":"string","maxLength":4096},"n":{"type":"array","items":{"type":"integer","minimum":0}},"flag":{"type":"boolean"}},"required":["text"],"additionalProperties":false}}"#;
    let mut cache = SchemaCache::new(16);
    cache.learn([7; 32], tool, false);
    let body = call_body("echo", 7, 150);
    let parsed = parse_body(&body).expect("bench body");
    let arguments = parsed.messages()[0].arguments.clone().map(|r| &body[r]);
    let t = measure(budget, || {
        black_box(
            gate.approve(BodyRule::JsonRpc, head, caller, black_box(&body), &NoTools)
                .is_ok(),
        );
    });
    report("contract off: gate, 300 B call", body.len(), t);
    let t = measure(budget, || {
        black_box(
            gate.approve(BodyRule::JsonRpc, head, caller, black_box(&body), &NoTools)
                .is_ok(),
        );
        let verdict =
            config
                .contracts
                .check_call("mcp", "echo", black_box(arguments), cache.get(&[7; 32]));
        black_box(verdict == CallCheck::Pass);
    });
    report("contract on: gate + validate, 300 B call", body.len(), t);
    let t = measure(budget, || {
        let verdict =
            config
                .contracts
                .check_call("mcp", "echo", black_box(arguments), cache.get(&[7; 32]));
        black_box(verdict == CallCheck::Pass);
    });
    report(
        "contract: validate arguments only, 300 B",
        arguments.map_or(0, <[u8]>::len),
        t,
    );
    // What the filter runs per call once the schema is compiled: the `Mcp-Param-*` check
    // (a mirrored `text` header) and the contract, through the per-worker cache.
    let mirrored = br#"{"name":"echo","inputSchema":{"type":"object","properties":{"text":{"type":"string","maxLength":4096,"x-mcp-header":"Text"},"n":{"type":"array","items":{"type":"integer","minimum":0}},"flag":{"type":"boolean"}},"required":["text"],"additionalProperties":false}}"#;
    let def = ToolDef::parse(mirrored).expect("bench tool");
    let mut compiled = Compiled::new(16);
    let checks = Checks {
        params: true,
        arguments: true,
        formats: false,
    };
    compiled.learn(
        def.sha256,
        def.input_schema.as_deref().map(str::as_bytes),
        checks,
    );
    let headers = HeaderMap::from_pairs(&[("mcp-param-text", "x".repeat(150))]);
    let t = measure(budget, || {
        let verdict = compiled.check_call(
            &config.contracts,
            "mcp",
            "echo",
            Some(&def.sha256),
            black_box(arguments),
            Some(&headers),
            Some("7"),
        );
        black_box(verdict == CallCheck::Pass);
    });
    report(
        "call checks: Mcp-Param + validate, 300 B",
        arguments.map_or(0, <[u8]>::len),
        t,
    );

    let rule = config
        .contracts
        .result_rule("mcp", "echo")
        .expect("results rule");
    let prose =
        "The quarterly report lists 1200 orders from 31 regions; totals were 4,500.25 EUR. ";
    let clean = prose.repeat(65_536 / prose.len());
    let answer = |text: &str| {
        serde_json::json!({"jsonrpc": "2.0", "id": 3, "result": {"content": [{"type": "text", "text": text}]}})
            .to_string()
            .into_bytes()
    };
    let clean_answer = answer(&clean);
    let dirty_answer = answer(&clean.replacen(
        "orders",
        "orders (bob@example.com, AKIAIOSFODNN7EXAMPLE)",
        8,
    ));
    for (label, bytes) in [
        ("clean", &clean_answer),
        ("16 matches, redacted", &dirty_answer),
    ] {
        let t = measure(budget, || {
            black_box(rule.scan("echo", black_box(bytes)).body.is_some());
        });
        report(
            &format!("scan 64 KiB result, secrets+pii, {label}"),
            bytes.len(),
            t,
        );
    }
}
