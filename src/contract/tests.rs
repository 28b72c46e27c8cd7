#![allow(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing)] // tests
//! Unit tests of the contracts core: each schema keyword, each detector (true and false
//! positives), escapes and Unicode, redaction that keeps JSON valid, the write-back guard,
//! the configuration's errors and the schema cache bound.

use serde_json::{json, Value};

use super::detect::{find_all, iban_valid, luhn, Builtin, Detector};
use super::*;
use crate::config::Config;

fn schema(s: Value) -> Schema {
    Schema::compile(&s, false).unwrap()
}

/// `Ok` or the violation's (pointer, keyword).
fn check(s: &Value, args: &str) -> Result<(), (String, &'static str)> {
    schema(s.clone())
        .validate_arguments(Some(args.as_bytes()))
        .map_err(|v| (v.pointer, v.keyword))
}

fn fails(s: Value, args: &str, pointer: &str, keyword: &str) {
    assert_eq!(
        check(&s, args),
        Err((pointer.to_owned(), keyword)),
        "{s} {args}"
    );
}

fn passes(s: Value, args: &str) {
    assert_eq!(check(&s, args), Ok(()), "{s} {args}");
}

#[test]
fn type_keyword_with_unions_and_integers() {
    let s = json!({"type":"object","properties":{"n":{"type":"integer"},"s":{"type":["string","null"]},"x":{"type":"number"}}});
    passes(s.clone(), r#"{"n":3,"s":null,"x":1.5}"#);
    passes(s.clone(), r#"{"n":3.0,"s":"a","x":2}"#);
    fails(s.clone(), r#"{"n":3.5}"#, "/n", "type");
    fails(s.clone(), r#"{"s":1}"#, "/s", "type");
    fails(s, r#"{"x":"1"}"#, "/x", "type");
    // Arguments are an object whatever the schema says; omitted arguments are `{}`.
    fails(json!({}), "[1]", "", "type");
    let required = schema(json!({"type":"object","required":["a"]}));
    assert_eq!(
        required.validate_arguments(None).unwrap_err().keyword,
        "required"
    );
    assert!(schema(json!({"type":"object"}))
        .validate_arguments(None)
        .is_ok());
}

#[test]
fn object_keywords() {
    let s = json!({"type":"object","properties":{"a":{"type":"string"}},"required":["a"],"additionalProperties":false});
    passes(s.clone(), r#"{"a":"x"}"#);
    fails(s.clone(), r#"{}"#, "/a", "required");
    fails(
        s.clone(),
        r#"{"a":"x","b/c":1}"#,
        "/b~1c",
        "additionalProperties",
    );
    let typed = json!({"properties":{"a":{}},"additionalProperties":{"type":"integer"}});
    fails(typed, r#"{"a":"x","b":"y"}"#, "/b", "type");
    let pattern =
        json!({"patternProperties":{"^x_":{"type":"integer"}},"additionalProperties":false});
    passes(pattern.clone(), r#"{"x_1":1}"#);
    fails(pattern.clone(), r#"{"x_1":"1"}"#, "/x_1", "type");
    fails(pattern, r#"{"y":1}"#, "/y", "additionalProperties");
    fails(
        json!({"minProperties":2}),
        r#"{"a":1}"#,
        "",
        "minProperties",
    );
    fails(
        json!({"maxProperties":1}),
        r#"{"a":1,"b":2}"#,
        "",
        "maxProperties",
    );
    fails(
        json!({"propertyNames":{"maxLength":3}}),
        r#"{"long":1}"#,
        "/long",
        "propertyNames",
    );
    fails(
        json!({"dependentRequired":{"a":["b"]}}),
        r#"{"a":1}"#,
        "/b",
        "dependentRequired",
    );
    fails(
        json!({"dependentSchemas":{"a":{"required":["c"]}}}),
        r#"{"a":1}"#,
        "/c",
        "required",
    );
    // A repeated key is ambiguous: two upstreams could read different values.
    fails(json!({}), r#"{"a":1,"\u0061":2}"#, "/a", "duplicateKey");
}

#[test]
fn enum_and_const_compare_as_json() {
    let s = json!({"properties":{"m":{"enum":["a",1,{"k":[true]}]},"c":{"const":2}}});
    passes(s.clone(), r#"{"m":1.0,"c":2.0}"#);
    passes(s.clone(), r#"{"m":{"k":[true]}}"#);
    fails(s.clone(), r#"{"m":"b"}"#, "/m", "enum");
    fails(s, r#"{"c":3}"#, "/c", "const");
}

#[test]
fn numeric_bounds_including_exclusive_and_draft4_forms() {
    let s = json!({"properties":{"n":{"minimum":1,"maximum":10,"multipleOf":0.5},"e":{"exclusiveMinimum":0,"exclusiveMaximum":1}}});
    passes(s.clone(), r#"{"n":1,"e":0.5}"#);
    fails(s.clone(), r#"{"n":0}"#, "/n", "minimum");
    fails(s.clone(), r#"{"n":11}"#, "/n", "maximum");
    fails(s.clone(), r#"{"n":1.3}"#, "/n", "multipleOf");
    fails(s.clone(), r#"{"e":0}"#, "/e", "exclusiveMinimum");
    fails(s, r#"{"e":1}"#, "/e", "exclusiveMaximum");
    let draft4 = json!({"properties":{"n":{"minimum":0,"exclusiveMinimum":true}}});
    fails(draft4, r#"{"n":0}"#, "/n", "exclusiveMinimum");
    // Bounds ignore values of other types.
    passes(json!({"properties":{"n":{"minimum":5}}}), r#"{"n":"1"}"#);
}

#[test]
fn string_lengths_count_code_points_not_bytes() {
    let s = json!({"properties":{"s":{"minLength":2,"maxLength":3}}});
    // Three code points, nine bytes; one astral code point written as a surrogate pair.
    passes(s.clone(), r#"{"s":"日本語"}"#);
    passes(s.clone(), r#"{"s":"\ud83d\ude00x"}"#);
    fails(s.clone(), r#"{"s":"日本語!"}"#, "/s", "maxLength");
    fails(s, r#"{"s":"\u00e9"}"#, "/s", "minLength");
}

#[test]
fn pattern_and_formats() {
    let s = json!({"properties":{"p":{"pattern":"^[a-z]+$"}}});
    passes(s.clone(), r#"{"p":"abc"}"#);
    fails(s, r#"{"p":"ab\u0043"}"#, "/p", "pattern");
    let f = json!({"properties":{"d":{"format":"date"},"u":{"format":"uuid"},"t":{"format":"date-time"},"e":{"format":"email"},"i":{"format":"ipv4"}}});
    // `format` is an annotation unless configured.
    passes(f.clone(), r#"{"d":"2024-02-30"}"#);
    let asserted = Schema::compile(&f, true).unwrap();
    let v = |args: &str| {
        asserted
            .validate_arguments(Some(args.as_bytes()))
            .map_err(|v| v.pointer)
    };
    assert_eq!(
        v(
            r#"{"d":"2024-02-29","u":"123e4567-e89b-12d3-a456-426614174000","t":"2024-01-01T10:00:00.5Z","e":"a@b.io","i":"10.0.0.1"}"#
        ),
        Ok(())
    );
    assert_eq!(v(r#"{"d":"2023-02-29"}"#), Err("/d".into()));
    assert_eq!(v(r#"{"u":"123e4567"}"#), Err("/u".into()));
    assert_eq!(v(r#"{"t":"2024-01-01 10:00:00Z"}"#), Err("/t".into()));
    assert_eq!(v(r#"{"t":"2024-01-01T25:00:00+01:00"}"#), Err("/t".into()));
    assert_eq!(v(r#"{"e":"nobody"}"#), Err("/e".into()));
    assert_eq!(v(r#"{"i":"300.1.1.1"}"#), Err("/i".into()));
}

#[test]
fn array_keywords() {
    let s = json!({"properties":{"a":{"type":"array","items":{"type":"integer"},"minItems":1,"maxItems":3,"uniqueItems":true}}});
    passes(s.clone(), r#"{"a":[1,2,3]}"#);
    fails(s.clone(), r#"{"a":[]}"#, "/a", "minItems");
    fails(s.clone(), r#"{"a":[1,2,3,4]}"#, "/a", "maxItems");
    fails(s.clone(), r#"{"a":[1,"x"]}"#, "/a/1", "type");
    fails(s, r#"{"a":[1,1.0]}"#, "/a", "uniqueItems");
    let tuple = json!({"properties":{"t":{"prefixItems":[{"type":"string"},{"type":"integer"}],"items":false}}});
    passes(tuple.clone(), r#"{"t":["a",1]}"#);
    fails(tuple.clone(), r#"{"t":[1]}"#, "/t/0", "type");
    fails(tuple, r#"{"t":["a",1,2]}"#, "/t/2", "false");
    let draft7 = json!({"properties":{"t":{"items":[{"type":"string"}],"additionalItems":{"type":"boolean"}}}});
    fails(draft7, r#"{"t":["a",1]}"#, "/t/1", "type");
    let contains = json!({"properties":{"c":{"contains":{"const":"x"},"maxContains":1}}});
    passes(contains.clone(), r#"{"c":["a","x"]}"#);
    fails(contains.clone(), r#"{"c":["a"]}"#, "/c", "contains");
    fails(contains, r#"{"c":["x","x"]}"#, "/c", "contains");
    passes(
        json!({"properties":{"u":{"uniqueItems":true}}}),
        r#"{"u":[{"a":1,"b":2},{"b":2,"a":1.5}]}"#,
    );
    fails(
        json!({"properties":{"u":{"uniqueItems":true}}}),
        r#"{"u":[{"a":1,"b":2},{"b":2,"a":1}]}"#,
        "/u",
        "uniqueItems",
    );
}

#[test]
fn composition_and_conditionals() {
    let s = json!({"properties":{
        "any":{"anyOf":[{"type":"string"},{"type":"integer"}]},
        "one":{"oneOf":[{"type":"integer"},{"minimum":0}]},
        "all":{"allOf":[{"type":"string"},{"maxLength":2}]},
        "not":{"not":{"type":"null"}},
        "if":{"if":{"type":"string"},"then":{"minLength":2},"else":{"type":"integer"}}}});
    passes(
        s.clone(),
        r#"{"any":"a","one":-1,"all":"ab","not":1,"if":"ab"}"#,
    );
    fails(s.clone(), r#"{"any":true}"#, "/any", "anyOf");
    fails(s.clone(), r#"{"one":1}"#, "/one", "oneOf");
    fails(s.clone(), r#"{"all":"abc"}"#, "/all", "maxLength");
    fails(s.clone(), r#"{"not":null}"#, "/not", "not");
    fails(s.clone(), r#"{"if":"a"}"#, "/if", "minLength");
    fails(s, r#"{"if":1.5}"#, "/if", "type");
}

#[test]
fn local_refs_defs_and_recursion() {
    let s = json!({"type":"object","$defs":{"node":{"type":"object","properties":{"v":{"type":"integer"},"next":{"$ref":"#/$defs/node"}}}},
        "properties":{"list":{"$ref":"#/$defs/node"},"old":{"$ref":"#/definitions/x"}},"definitions":{"x":{"type":"string"}}});
    passes(
        s.clone(),
        r#"{"list":{"v":1,"next":{"v":2,"next":{"v":3}}},"old":"a"}"#,
    );
    fails(
        s.clone(),
        r#"{"list":{"v":1,"next":{"v":"2"}}}"#,
        "/list/next/v",
        "type",
    );
    fails(s, r#"{"old":1}"#, "/old", "type");
    // Percent-encoded and escaped pointer tokens.
    let enc = json!({"$defs":{"a b":{"type":"string"},"c/d":{"type":"integer"}},"properties":{"x":{"$ref":"#/$defs/a%20b"},"y":{"$ref":"#/$defs/c~1d"}}});
    fails(enc.clone(), r#"{"x":1}"#, "/x", "type");
    fails(enc, r#"{"y":"1"}"#, "/y", "type");
    // A schema that applies itself in place ends in the budget, never a hang.
    let self_loop = json!({"anyOf":[{"$ref":"#"},{"$ref":"#"}]});
    fails(self_loop, r#"{}"#, "", "budget");
}

#[test]
fn what_does_not_compile() {
    let cases = [
        (
            json!({"properties":{"a":{"$ref":"https://example.com/s.json"}}}),
            "inputSchema#/properties/a/$ref: only local references (#/...) are followed (SEP-2106)",
        ),
        (
            json!({"$ref":"#/$defs/missing"}),
            "inputSchema#/$ref: \"#/$defs/missing\" points to nothing",
        ),
        (
            json!({"$ref":"#anchor"}),
            "inputSchema#/$ref: only JSON-pointer fragments (#/...) are supported, not anchors",
        ),
        (
            json!({"unevaluatedProperties":false}),
            "inputSchema#: unevaluatedProperties is not supported",
        ),
        (
            json!({"properties":{"a":{"pattern":"(?<=a)b"}}}),
            "inputSchema#/properties/a/pattern: pattern not supported: ",
        ),
        (
            json!({"type":"text"}),
            "inputSchema#/type: unknown type \"text\"",
        ),
        (
            json!({"properties":{"a":{"$id":"x"}}}),
            "inputSchema#/properties/a/$id: an embedded $id (a new base URI) is not supported",
        ),
        (
            json!(3),
            "inputSchema#: a schema must be an object or a boolean",
        ),
    ];
    for (s, want) in cases {
        let e = Schema::compile(&s, false).unwrap_err().to_string();
        assert!(e.starts_with(want), "{e}");
    }
    // Size bounds: too many subschemas, too deep.
    let wide: serde_json::Map<String, Value> = (0..schema::MAX_NODES)
        .map(|i| (format!("p{i}"), json!({})))
        .collect();
    assert!(Schema::compile(&json!({"properties": wide}), false)
        .unwrap_err()
        .message
        .contains("subschemas"));
    let mut deep = json!({});
    for _ in 0..=schema::MAX_DEPTH {
        deep = json!({"not": deep});
    }
    assert!(Schema::compile(&deep, false)
        .unwrap_err()
        .message
        .contains("deeper"));
    assert!(schema(json!({"properties":{"a":{"type":"string"}}})).weight() > 0);
}

// --- detectors ---

/// The detector names found in `text` with `names`, in order.
fn found(names: &[Builtin], text: &str) -> Vec<String> {
    let detectors: Vec<Detector> = names.iter().map(|b| Detector::Builtin(*b)).collect();
    let mut counts = vec![0; detectors.len()];
    find_all(&detectors, text, &mut counts)
        .iter()
        .map(|f| format!("{}:{}", detectors[f.detector].name(), &text[f.span.clone()]))
        .collect()
}

#[test]
fn credential_detectors_true_and_false_positives() {
    let all: Vec<Builtin> = Builtin::all().collect();
    let github = format!("ghp_{}", "a1B2".repeat(9));
    let cases: Vec<(String, Vec<String>)> = vec![
        (
            "key AKIAIOSFODNN7EXAMPLE here".into(),
            vec!["aws_key:AKIAIOSFODNN7EXAMPLE".into()],
        ),
        (
            "XAKIAIOSFODNN7EXAMPLE AKIAIOSFODNN7EXAMPLEX AKIA123".into(),
            vec![],
        ),
        (
            format!("token={github}."),
            vec![format!("github_token:{github}")],
        ),
        (
            format!("github_pat_{}", "A1_b".repeat(20)),
            vec![format!("github_token:github_pat_{}", "A1_b".repeat(20))],
        ),
        ("ghp_short".into(), vec![]),
        (
            "xoxb-1234567890-abcdef".into(),
            vec!["slack_token:xoxb-1234567890-abcdef".into()],
        ),
        (
            format!("sk_live_{}", "4eC39HqLyjWDarjtT1zdp7dc"),
            vec!["stripe_key:sk_live_4eC39HqLyjWDarjtT1zdp7dc".into()],
        ),
        (
            format!("AIza{}", "SyA-1234567890abcdefghijklmnopqrstu"),
            vec!["google_api_key:AIzaSyA-1234567890abcdefghijklmnopqrstu".into()],
        ),
        (
            format!("sk-proj-{}", "x".repeat(40)),
            vec![format!("openai_key:sk-proj-{}", "x".repeat(40))],
        ),
        ("task-force desk-lamp sk-short".into(), vec![]),
        (
            "-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY-----\ntail".into(),
            vec![
                "private_key:-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY-----"
                    .into(),
            ],
        ),
        (
            "-----BEGIN CERTIFICATE-----\nMIIE\n-----END CERTIFICATE-----".into(),
            vec![],
        ),
        (
            "Authorization: Bearer abcdefghijklmnop0123=".into(),
            vec!["bearer_token:abcdefghijklmnop0123=".into()],
        ),
        ("bearer short".into(), vec![]),
    ];
    for (text, want) in cases {
        assert_eq!(found(&all, &text), want, "{text}");
    }
    let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl";
    assert_eq!(
        found(&[Builtin::Jwt], &format!("t={jwt};")),
        vec![format!("jwt:{jwt}")]
    );
    assert_eq!(
        found(&[Builtin::Jwt], "eyJhbGciOiJIUzI1NiJ9 only a header"),
        Vec::<String>::new()
    );
    // A JWT after `Bearer` is one redaction (overlaps merge), counted by both detectors.
    let detectors = [
        Detector::Builtin(Builtin::BearerToken),
        Detector::Builtin(Builtin::Jwt),
    ];
    let mut counts = [0, 0];
    assert_eq!(
        find_all(&detectors, &format!("Bearer {jwt}"), &mut counts).len(),
        1
    );
    assert_eq!(counts, [1, 1]);
}

#[test]
fn personal_data_detectors_true_and_false_positives() {
    let pii = Builtin::PII;
    let cases: Vec<(&str, Vec<&str>)> = vec![
        ("mail alice.smith+x@mail.example.com.", vec!["email:alice.smith+x@mail.example.com"]),
        ("@handle, a@b, x@y.1, user@localhost", vec![]),
        ("card 4111 1111 1111 1111 exp", vec!["payment_card:4111 1111 1111 1111"]),
        ("card 4111-1111-1111-1111", vec!["payment_card:4111-1111-1111-1111"]),
        ("amex 378282246310005", vec!["payment_card:378282246310005"]),
        // Fails Luhn; a 1 (not a card network) first; too long; inside a word or a decimal.
        ("4111 1111 1111 1112 1234567812345670 41111111111111111111 id4111111111111111 0.4111111111111111", vec![]),
        ("IBAN DE89 3704 0044 0532 0130 00, ok", vec!["iban:DE89 3704 0044 0532 0130 00"]),
        ("GB82WEST12345698765432", vec!["iban:GB82WEST12345698765432"]),
        ("DE89370400440532013001 GB00WEST12345698765432", vec![]),
        ("call +1 (415) 555-2671 now", vec!["phone:+1 (415) 555-2671"]),
        ("+44 20 7946 0958", vec!["phone:+44 20 7946 0958"]),
        ("1+1234567 (415) 555-2671, +12, +0 123 456 789, version 1.2.3", vec![]),
    ];
    for (text, want) in cases {
        assert_eq!(found(pii, text), want, "{text}");
    }
    assert!(luhn(&[4, 2, 4, 2, 4, 2, 4, 2, 4, 2, 4, 2, 4, 2, 4, 2]));
    assert!(!luhn(&[1, 2, 3, 4]));
    assert!(iban_valid(b"GB82WEST12345698765432"));
    assert!(!iban_valid(b"GB82WEST12345698765433"));
}

// --- scanning answers ---

fn rule(detectors: &[Builtin], action: Action, max_bytes: Option<u64>) -> ResultRule {
    ResultRule {
        detectors: detectors.iter().map(|b| Detector::Builtin(*b)).collect(),
        action,
        max_bytes,
    }
}

#[test]
fn redaction_decodes_escapes_keeps_json_valid_and_other_bytes_as_they_were() {
    // The key is written with \u escapes, the email twice in structuredContent.
    let answer = r#"{"jsonrpc":"2.0", "id":7,"result":{"content":[{"type":"text","text":"key \u0041KIAIOSFODNN7EXAMPLE \"q\"\n"},{"type":"image","data":"AKIAIOSFODNN7EXAMPLE"}],
        "structuredContent":{"a":["bob@example.com",{"k":"bob@example.com"}],"n":1},"isError":false}}"#;
    let r = rule(&[Builtin::AwsKey, Builtin::Email], Action::Redact, None);
    let scan = r.scan("db_query", answer.as_bytes());
    assert_eq!(scan.counts, vec![("aws_key", 1), ("email", 2)]);
    assert_eq!(scan.blocked, None);
    let body = String::from_utf8(scan.body.unwrap()).unwrap();
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        v["result"]["content"][0]["text"],
        "key [REDACTED:aws_key] \"q\"\n"
    );
    // Image data is not text: left alone, byte for byte.
    assert!(body.contains(r#"{"type":"image","data":"AKIAIOSFODNN7EXAMPLE"}"#));
    assert_eq!(
        v["result"]["structuredContent"]["a"],
        json!(["[REDACTED:email]", {"k":"[REDACTED:email]"}])
    );
    assert!(
        body.starts_with(r#"{"jsonrpc":"2.0", "id":7,"result":{"content":[{"type":"text","text":"#)
    );
    assert!(body.ends_with(r#","n":1},"isError":false}}"#));
    // Nothing found: nothing rewritten.
    let clean = r#"{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"hello"}]}}"#;
    assert_eq!(r.scan("t", clean.as_bytes()).body, None);
}

#[test]
fn embedded_resources_and_any_json_structured_content_are_scanned() {
    let r = rule(&[Builtin::Email], Action::Redact, None);
    let answer = r#"{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"resource","resource":{"uri":"a@b.io","text":"to a@b.io"}}],"structuredContent":"c@d.io"}}"#;
    let body = r.scan("t", answer.as_bytes()).body.unwrap();
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        v["result"]["content"][0]["resource"]["text"],
        "to [REDACTED:email]"
    );
    assert_eq!(v["result"]["content"][0]["resource"]["uri"], "a@b.io");
    assert_eq!(v["result"]["structuredContent"], "[REDACTED:email]");
}

#[test]
fn block_and_log_actions_and_the_size_bound() {
    let answer = br#"{"jsonrpc":"2.0","id":"x-1","result":{"content":[{"type":"text","text":"-----BEGIN PRIVATE KEY-----\nAAA"}]}}"#;
    let block = rule(&[Builtin::PrivateKey], Action::Block, None);
    let scan = block.scan("vault_read", answer);
    let v: Value = serde_json::from_slice(&scan.body.unwrap()).unwrap();
    assert_eq!(v["id"], "x-1");
    assert_eq!(v["error"]["code"], -32603);
    assert_eq!(
        v["error"]["data"]["reason"],
        "the result of tool \"vault_read\" was withheld: it contains private_key"
    );
    assert!(!scan.blocked.unwrap().contains("AAA"));
    let log = rule(&[Builtin::PrivateKey], Action::Log, None);
    let logged = log.scan("t", answer);
    assert_eq!(
        (logged.body, logged.counts),
        (None, vec![("private_key", 1)])
    );
    let size = rule(&[], Action::Log, Some(16));
    let big = size.scan("t", answer);
    assert!(big.blocked.unwrap().contains("over its max_bytes (16)"));
    // Unreadable JSON cannot be scanned: blocked unless the rule only logs.
    let broken = br#"{"jsonrpc":"2.0","id":1,"result":{"content":[{"text":"a"#;
    assert!(rule(&[Builtin::Email], Action::Redact, None)
        .scan("t", broken)
        .blocked
        .is_some());
    assert_eq!(
        rule(&[Builtin::Email], Action::Log, None)
            .scan("t", broken)
            .body,
        None
    );
    // Errors, requests and non-JSON pass untouched.
    for other in [
        &br#"{"jsonrpc":"2.0","id":1,"error":{"code":1,"message":"a@b.io"}}"#[..],
        b"",
        b"ping",
    ] {
        assert_eq!(
            rule(&[Builtin::Email], Action::Block, None)
                .scan("t", other)
                .body,
            None
        );
    }
}

#[test]
fn sse_event_with_data_split_over_lines_is_scanned_and_rewritten() {
    let r = rule(&[Builtin::Email], Action::Redact, None);
    let event = b"event: message\r\nid: 3\r\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"content\":\r\ndata: [{\"type\":\"text\",\"text\":\"mail a@b.io\"}]}}\r\n\r\n";
    let scan = scan_event(&r, "t", event);
    assert_eq!(scan.counts, vec![("email", 1)]);
    let out = String::from_utf8(scan.body.unwrap()).unwrap();
    assert!(
        out.starts_with("event: message\r\nid: 3\r\ndata: "),
        "{out}"
    );
    assert!(out.ends_with("\r\n\r\n"));
    let data: String = out
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .collect();
    let v: Value = serde_json::from_str(&data).unwrap();
    assert_eq!(v["result"]["content"][0]["text"], "mail [REDACTED:email]");
    assert_eq!(scan_event(&r, "t", b": keep-alive\n\n").body, None);
}

/// What a client receives when `stream` passes through the framer in the given chunks,
/// each complete event scanned as it completes.
fn scanned_stream(r: &ResultRule, chunks: &[&[u8]]) -> Vec<u8> {
    let mut framer = crate::response::sse::SseFramer::default();
    let mut out = Vec::new();
    for chunk in chunks {
        for event in framer.push(chunk) {
            out.extend(scan_event(r, "t", &event).body.unwrap_or(event));
        }
    }
    out.extend(framer.finish());
    out
}

#[test]
fn a_secret_split_across_chunks_at_every_byte_and_inside_escapes_is_found() {
    // The key is partly \u-escaped and the message spans two data lines, after a
    // progress notification: wherever the chunks are cut, the result is the same.
    let stream: &[u8] = b"event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{\"progress\":1}}\n\n\
        event: message\r\ndata: {\"jsonrpc\":\"2.0\",\"id\":4,\r\ndata: \"result\":{\"content\":[{\"type\":\"text\",\"text\":\"k=\\u0041KIA\\u0049OSFODNN7EXAMPLE\"}]}}\r\n\r\n";
    let r = rule(&[Builtin::AwsKey], Action::Redact, None);
    let whole = scanned_stream(&r, &[stream]);
    let text = String::from_utf8(whole.clone()).unwrap();
    assert!(text.contains(r#""text":"k=[REDACTED:aws_key]""#), "{text}");
    assert!(text.starts_with("event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\""));
    for cut in 0..=stream.len() {
        let (a, b) = stream.split_at(cut);
        assert_eq!(scanned_stream(&r, &[a, b]), whole, "cut at {cut}");
    }
    let bytes: Vec<&[u8]> = stream.chunks(1).collect();
    assert_eq!(scanned_stream(&r, &bytes), whole);
}

#[test]
fn a_batch_is_scanned_by_the_strictest_of_its_rules() {
    let redact = rule(&[Builtin::Email], Action::Redact, Some(100));
    let block = rule(&[Builtin::AwsKey, Builtin::Email], Action::Block, None);
    let log = rule(&[Builtin::Phone], Action::Log, Some(50));
    let merged = ResultRule::strictest(&[&redact, &log, &block]).unwrap();
    let names: Vec<&str> = merged.detectors.iter().map(Detector::name).collect();
    assert_eq!(names, ["email", "phone", "aws_key"]);
    assert_eq!((merged.action, merged.max_bytes), (Action::Block, Some(50)));
    let only = ResultRule::strictest(&[&redact, &log]).unwrap();
    assert_eq!((only.action, only.max_bytes), (Action::Redact, Some(50)));
    assert!(ResultRule::strictest(&[]).is_none());
}

#[test]
fn the_documented_crm_rule_redacts_what_the_docs_say() {
    let c = Config::from_json(br#"{"contracts":{"results":[{"upstreams":["crm"],"tools":["customer_*"],"detectors":["email","phone","payment_card","iban","secrets"],"action":"redact"}]}}"#).unwrap();
    let r = c.contracts.result_rule("crm", "customer_get").unwrap();
    assert!(c.contracts.result_rule("vault", "customer_get").is_none());
    let answer = br#"{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"Jane, jane@acme.example, +44 20 7946 0958"}]}}"#;
    let v: Value = serde_json::from_slice(&r.scan("customer_get", answer).body.unwrap()).unwrap();
    assert_eq!(
        v["result"]["content"][0]["text"],
        "Jane, [REDACTED:email], [REDACTED:phone]"
    );
}

#[test]
fn custom_detectors_from_the_configuration() {
    let c = Config::from_json(br#"{"contracts":{"results":[{"tools":["db_*"],"detectors":["pii"],"custom":[{"name":"ticket","pattern":"TCK-[0-9]{6}"}],"action":"redact"}]}}"#).unwrap();
    let r = c.contracts.result_rule("any", "db_query").unwrap();
    assert!(c.contracts.result_rule("any", "echo").is_none());
    let scan = r.scan("db_query", br#"{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"TCK-123456 TCK-12"}]}}"#);
    assert_eq!(scan.counts, vec![("ticket", 1)]);
    assert!(String::from_utf8(scan.body.unwrap())
        .unwrap()
        .contains("[REDACTED:ticket] TCK-12"));
}

// --- calls: modes, uncompilable schemas, write-back guard ---

const SCHEMA_TOOL: &str = r#"{"name":"send","inputSchema":{"type":"object","properties":{"to":{"type":"string","maxLength":5}},"required":["to"]}}"#;

fn contracts(json: &str) -> Contracts {
    Config::from_json(json.as_bytes()).unwrap().contracts
}

#[test]
fn calls_are_judged_by_mode_and_refused_with_pointer_and_keyword() {
    let c = contracts(
        r#"{"contracts":{"arguments":[{"upstreams":["lab"],"tools":["*"],"mode":"shadow"},{"tools":["send"],"mode":"enforce"}]}}"#,
    );
    let mut cache = SchemaCache::new(c.max_schemas);
    assert_eq!(
        cache.learn([1; 32], SCHEMA_TOOL.as_bytes(), c.formats),
        None
    );
    let known = cache.get(&[1; 32]);
    let secret = br#"{"to":"secret-value"}"#;
    assert_eq!(
        c.check_call("prod", "send", Some(br#"{"to":"bob"}"#), known),
        CallCheck::Pass
    );
    let CallCheck::Refuse(r) = c.check_call("prod", "send", Some(secret), known) else {
        panic!()
    };
    let body = r.to_json();
    assert!(!body.contains("secret-value"), "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (v["error"]["code"].clone(), r.code.http_status()),
        (json!(-32602), 400)
    );
    assert_eq!(v["error"]["data"]["pointer"], "/to");
    assert_eq!(v["error"]["data"]["keyword"], "maxLength");
    assert!(matches!(
        c.check_call("prod", "send", None, known),
        CallCheck::Refuse(_)
    ));
    assert!(matches!(
        c.check_call("lab", "send", Some(secret), known),
        CallCheck::Report {
            outcome: "shadow",
            ..
        }
    ));
    assert_eq!(
        c.check_call("prod", "other", Some(secret), known),
        CallCheck::Pass
    );
}

#[test]
fn uncompilable_and_unknown_schemas_follow_the_configuration() {
    let bad = br#"{"name":"x","inputSchema":{"$ref":"https://evil.example/s.json"}}"#;
    for (config, refused) in [
        (r#""uncompilable":"refuse""#, true),
        (r#""uncompilable":"pass""#, false),
    ] {
        let c = contracts(&format!(
            r#"{{"contracts":{{"arguments":[{{"mode":"enforce"}}],{config}}}}}"#
        ));
        let mut cache = SchemaCache::new(4);
        assert!(
            cache.learn([2; 32], bad, false).is_some(),
            "logged the first time"
        );
        assert!(cache.learn([2; 32], bad, false).is_none(), "and only once");
        for known in [cache.get(&[2; 32]), cache.get(&[3; 32])] {
            let verdict = c.check_call("u", "x", Some(b"{}"), known);
            assert_eq!(
                matches!(verdict, CallCheck::Refuse(_)),
                refused,
                "{verdict:?}"
            );
        }
    }
}

#[test]
fn write_back_guard_finds_the_marker_through_escapes() {
    let c = contracts(r#"{"contracts":{"results":[{"detectors":["email"],"action":"redact"}]}}"#);
    assert!(c.guards_write_back());
    for args in [
        &br#"{"q":"x [REDACTED:email]"}"#[..],
        br#"{"q":["\u005bREDACTED:email]"]}"#,
        br#"{"[REDACTED:x]":1}"#,
    ] {
        assert!(
            matches!(
                c.check_call("u", "t", Some(args), Known::Unknown),
                CallCheck::Refuse(_)
            ),
            "{args:?}"
        );
    }
    assert_eq!(
        c.check_call(
            "u",
            "t",
            Some(br#"{"q":"REDACTED \\u005b"}"#),
            Known::Unknown
        ),
        CallCheck::Pass
    );
    assert!(
        !contracts(r#"{"contracts":{"results":[{"detectors":["email"],"action":"log"}]}}"#)
            .guards_write_back()
    );
}

#[test]
fn cache_is_bounded_and_reports_its_size() {
    let mut cache = SchemaCache::new(2);
    for i in 0..3u8 {
        cache.learn([i; 32], SCHEMA_TOOL.as_bytes(), false);
    }
    assert!(matches!(cache.get(&[0; 32]), Known::Unknown));
    assert!(matches!(cache.get(&[2; 32]), Known::Schema(_)));
    let (n, bytes) = cache.usage();
    assert_eq!(n, 2);
    assert!(bytes > 0);
}

#[test]
fn configuration_errors_name_the_path() {
    let cases = [
        (r#"{"contracts":{"results":[{"custom":[{"name":"t","pattern":"("}],"action":"redact"}]}}"#, "contracts.results[0].custom[0].pattern: invalid regex \"(\": "),
        (r#"{"contracts":{"results":[{"custom":[{"name":"t","pattern":"a*"}],"action":"redact"}]}}"#, "contracts.results[0].custom[0].pattern: \"a*\" matches the empty string"),
        (r#"{"contracts":{"results":[{"custom":[{"name":"Email","pattern":"x"}],"action":"redact"}]}}"#, "contracts.results[0].custom[0].name: \"Email\" must be"),
        (r#"{"contracts":{"results":[{"custom":[{"name":"email","pattern":"x"}],"action":"redact"}]}}"#, "contracts.results[0].custom[0].name: \"email\" must be"),
        (r#"{"contracts":{"results":[{"detectors":["ssn"],"action":"redact"}]}}"#, "contracts.results[0].detectors[0]: unknown detector \"ssn\"; known: secrets, pii, private_key"),
        (r#"{"contracts":{"results":[{"action":"block"}]}}"#, "contracts.results[0]: give detectors, custom or max_bytes: this rule checks nothing"),
        (r#"{"contracts":{"results":[{"max_bytes":0,"action":"block"}]}}"#, "contracts.results[0].max_bytes: 0 is outside 1..=67108864"),
        (r#"{"contracts":{"results":[{"detectors":["email"]}]}}"#, "contracts.results[0]: missing field `action`"),
        (r#"{"contracts":{"arguments":[{"tools":["["],"mode":"enforce"}]}}"#, "contracts.arguments[0].tools[0]: invalid pattern \"[\""),
        (r#"{"contracts":{"arguments":[{"mode":"strict"}]}}"#, "contracts.arguments[0].mode: unknown variant `strict`"),
        (r#"{"contracts":{"max_schemas":0}}"#, "contracts.max_schemas: 0 is outside 1..=10000"),
    ];
    for (json, want) in cases {
        let e = Config::from_json(json.as_bytes()).unwrap_err().to_string();
        assert!(e.starts_with(want), "{e}\nwant {want}");
    }
    let c = Config::from_json(br#"{"contracts":{"arguments":[{"mode":"off"}]}}"#).unwrap();
    assert!(!c.contracts.is_active() && c.needs_upstream == c.schema_checks.params);
    let c = Config::from_json(br#"{"contracts":{"arguments":[{"mode":"shadow"}]}}"#).unwrap();
    assert!(c.contracts.validates_arguments() && c.needs_upstream);
}
