use super::*;

/// An API key (sha256 of "secret") named `ci-bot` with role `ci`, scope `mcp:tools`.
const KEYS: &str = r#""api_keys":{"keys":[{"name":"ci-bot","sha256":"2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b","roles":["ci"],"scopes":["mcp:tools"]}]}"#;
/// A JWT provider mapping roles and the `team` claim.
const JWT: &str = r#""jwt_providers":[{"name":"idp","issuer":"https://idp","audiences":["mcp"],"remote_jwks":{"cluster":"idp","path":"/jwks"},"claims":{"roles":"roles","other":{"team":"team"}}}]"#;
/// Everything a clean configuration needs besides its policy.
const CLEAN_REST: &str = r#""other_paths":"deny","upstream":{"identity_headers":{"subject":"x-sub"}},
    "rate_limits":{"limits":[{"name":"calls","methods":["tools/call"],"key":["subject"],"bucket":{"capacity":10}}]}"#;

fn findings(json: &str) -> Vec<Finding> {
    report(&Config::from_json(json.as_bytes()).unwrap())
}

/// `check path` of each finding.
fn lines(json: &str) -> Vec<String> {
    findings(json)
        .iter()
        .map(|f| format!("{} {}", f.check, f.path))
        .collect()
}

/// A configuration with auth (`auth_fields`), the clean rest, and `policy`.
fn with(auth_fields: &str, policy: &str) -> String {
    format!(r#"{{"auth":{{{auth_fields}}},{CLEAN_REST},"policy":{policy}}}"#)
}

#[test]
fn a_configuration_without_weaknesses_is_clean() {
    let policy =
        r#"{"rules":[{"name":"ci","who":{"api_keys":["ci-bot"]},"allow":{"tools":["echo"]}}]}"#;
    assert_eq!(lines(&with(KEYS, policy)), Vec::<String>::new());
}

#[test]
fn the_empty_configuration_reports_its_defaults() {
    assert_eq!(
        lines("{}"),
        [
            "anonymous-allow-all policy.allow",
            "no-auth auth",
            "no-tools-call-limit rate_limits",
        ]
    );
    let first = findings("{}").remove(0);
    assert_eq!(
        first.to_string(),
        "warning: policy.allow: anonymous callers may call every tool; fix: require authentication (auth), or list only the tools everyone may call in allow.tools"
    );
}

#[test]
fn anonymous_allow_all_needs_anonymous_callers_and_every_tool() {
    let anon = r#""allow_anonymous":true"#;
    let everyone = r#"{"rules":[{"name":"all","allow":{"tools":["*"]}}]}"#;
    assert_eq!(
        lines(&with(anon, everyone)),
        ["anonymous-allow-all policy.rules[0].allow"]
    );
    // Required scopes keep anonymous callers out; a narrower list or a `who` is no allow-all.
    let scoped = format!(r#"{anon},{KEYS},"required_scopes":["mcp:tools"]"#);
    assert_eq!(lines(&with(&scoped, everyone)), Vec::<String>::new());
    let narrow = r#"{"rules":[{"name":"all","allow":{"tools":["echo","db_*"]}}]}"#;
    assert_eq!(lines(&with(anon, narrow)), Vec::<String>::new());
    let annotated =
        r#"{"rules":[{"name":"all","allow":{"tools":["*"],"annotations":{"readOnlyHint":true}}}]}"#;
    assert_eq!(lines(&with(anon, annotated)), Vec::<String>::new());
    // Unless everything is denied to everyone anyway (a shadow deny does not count).
    let shadowed = ["allow-shadowed-by-deny policy.allow.tools[0]"];
    for (deny, want) in [
        (r#"{"methods":["tools/*"]}"#, &[][..]),
        (r#"{"tools":["*"]}"#, &shadowed[..]),
    ] {
        let denied = format!(r#"{{"allow":{{"tools":["*"]}},"deny":{deny}}}"#);
        assert_eq!(lines(&with(anon, &denied)), want, "{deny}");
    }
    let shadow = r#"{"rules":[{"name":"all","allow":{"tools":["*"]}},{"name":"d","shadow":true,"deny":{"tools":["*"]}}]}"#;
    assert_eq!(
        lines(&with(anon, shadow)),
        [
            "anonymous-allow-all policy.rules[0].allow",
            "shadow-mode policy.rules[1].shadow"
        ]
    );
}

#[test]
fn shadow_mode_is_reported_per_policy_or_per_rule() {
    let rule = r#"{"rules":[{"name":"s","shadow":true,"deny":{"tools":["x"]}}]}"#;
    let got = lines(&with(KEYS, rule));
    assert_eq!(got, ["shadow-mode policy.rules[0].shadow"]);
    let policy = r#"{"shadow":true,"rules":[{"name":"s","shadow":true,"deny":{"tools":["x"]}}]}"#;
    assert_eq!(lines(&with(KEYS, policy)), ["shadow-mode policy.shadow"]);
}

#[test]
fn rules_that_select_no_possible_caller() {
    let rule = |who: &str| {
        format!(r#"{{"rules":[{{"name":"r","who":{who},"allow":{{"tools":["echo"]}}}}]}}"#)
    };
    let dead = ["rule-never-applies policy.rules[0].who"];
    // Without auth every caller is anonymous.
    let no_auth = format!(
        r#"{{{CLEAN_REST},"policy":{}}}"#,
        rule(r#"{"roles":["dev"]}"#)
    );
    assert_eq!(
        lines(&no_auth),
        [vec!["no-auth auth"], dead.to_vec()].concat()
    );
    // API keys alone: roles and scopes only as the keys give them, no claims.
    for who in [
        r#"{"roles":["dev"]}"#,
        r#"{"scopes":["admin"]}"#,
        r#"{"api_keys":["other-*"]}"#,
        r#"{"subjects":["alice"]}"#,
        r#"{"claims":{"team":["a"]}}"#,
    ] {
        assert_eq!(lines(&with(KEYS, &rule(who))), dead, "{who}");
    }
    for who in [
        r#"{"roles":["c?"]}"#,
        r#"{"scopes":["mcp:*"]}"#,
        r#"{"api_keys":["ci-bot"]}"#,
        r#"{"subjects":["ci-bot"]}"#,
        r#"{"authenticated":true}"#,
    ] {
        assert_eq!(
            lines(&with(KEYS, &rule(who))),
            Vec::<String>::new(),
            "{who}"
        );
    }
    // Only anonymous access: `authenticated` selects nobody.
    let anon = with(
        r#""allow_anonymous":true"#,
        &rule(r#"{"authenticated":true}"#),
    );
    assert_eq!(lines(&anon), dead);
    // A JWT provider: roles if mapped, claims only those mapped.
    assert_eq!(
        lines(&with(
            JWT,
            &rule(r#"{"roles":["dev"],"claims":{"team":["a"]}}"#)
        )),
        Vec::<String>::new()
    );
    let partly = rule(r#"{"roles":["dev"],"claims":{"team":["a"],"org":["x"]},"api_keys":["ci"]}"#);
    assert_eq!(
        lines(&with(JWT, &partly)),
        [
            "selector-never-matches policy.rules[0].who.api_keys[0]",
            "selector-never-matches policy.rules[0].who.claims.org[0]",
        ]
    );
}

#[test]
fn a_rule_without_lists_decides_nothing() {
    let policy =
        r#"{"allow":{"tools":["echo"]},"rules":[{"name":"empty","who":{"authenticated":true}}]}"#;
    assert_eq!(
        lines(&with(KEYS, policy)),
        ["rule-decides-nothing policy.rules[0]"]
    );
}

#[test]
fn allows_a_broader_deny_makes_unreachable() {
    // The same rule, and a rule for every authenticated caller over a rule with a `who`.
    let policy = r#"{"rules":[
        {"name":"dev","who":{"roles":["ci"]},"allow":{"tools":["echo","db_query"],"resources":["db://x/*"]},"deny":{"tools":["db_*"]}},
        {"name":"no-db","who":{"authenticated":true},"deny":{"resources":["db://*"]}}]}"#;
    let got = findings(&with(KEYS, policy));
    let got: Vec<String> = got.iter().map(ToString::to_string).collect();
    assert_eq!(
        got,
        [
            r#"warning: policy.rules[0].allow.tools[1]: "db_query" can never pass: "db_*" at policy.rules[0].deny.tools[0] denies everything it allows (deny wins); fix: remove the allow pattern, or narrow the deny pattern"#,
            r#"warning: policy.rules[0].allow.resources[0]: "db://x/*" can never pass: "db://*" at policy.rules[1].deny.resources[0] denies everything it allows (deny wins); fix: remove the allow pattern, or narrow the deny pattern"#,
        ]
    );
    // The global deny covers every rule; a narrower deny, a deny for other callers, a shadow
    // deny or one with annotation conditions does not.
    let global = r#"{"deny":{"tools":["*"]},"rules":[{"name":"dev","who":{"roles":["ci"]},"allow":{"tools":["echo"]}}]}"#;
    assert_eq!(
        lines(&with(KEYS, global)),
        ["allow-shadowed-by-deny policy.rules[0].allow.tools[0]"]
    );
    for policy in [
        r#"{"rules":[{"name":"a","who":{"roles":["ci"]},"allow":{"tools":["db*"]},"deny":{"tools":["db_*"]}}]}"#,
        r#"{"rules":[{"name":"a","who":{"roles":["ci"]},"allow":{"tools":["db_q"]}},{"name":"b","who":{"api_keys":["ci-bot"]},"deny":{"tools":["db_*"]}}]}"#,
        r#"{"rules":[{"name":"a","who":{"roles":["ci"]},"allow":{"tools":["db_q"]}},{"name":"b","shadow":true,"deny":{"tools":["*"]}}]}"#,
        r#"{"rules":[{"name":"a","who":{"roles":["ci"]},"allow":{"tools":["db_q"]},"deny":{"tools":["*"],"annotations":{"destructiveHint":true}}}]}"#,
        r#"{"rules":[{"name":"a","allow":{"tools":["db_q"]}},{"name":"b","who":{"authenticated":true},"deny":{"tools":["*"]}}]}"#,
    ] {
        let got = lines(&with(KEYS, policy));
        assert!(
            !got.iter().any(|l| l.starts_with("allow-shadowed")),
            "{policy}: {got:?}"
        );
    }
}

#[test]
fn identity_headers_matter_when_rules_select_callers() {
    let policy =
        r#"{"rules":[{"name":"ci","who":{"api_keys":["ci-bot"]},"allow":{"tools":["echo"]}}]}"#;
    let config = format!(
        r#"{{"auth":{{{KEYS}}},"other_paths":"deny","policy":{policy},
        "rate_limits":{{"limits":[{{"name":"c","key":["subject"],"bucket":{{"capacity":10}}}}]}}}}"#
    );
    assert_eq!(
        lines(&config),
        ["no-identity-headers upstream.identity_headers"]
    );
    // A policy for everyone alike needs no identity upstream.
    let same = config.replace(r#""who":{"api_keys":["ci-bot"]},"#, "");
    assert_eq!(lines(&same), Vec::<String>::new());
}

#[test]
fn trust_on_first_use_pins_are_listed_in_order() {
    let hash = "ab".repeat(32);
    let pins = format!(
        r#"{{"auth":{{{KEYS}}},{CLEAN_REST},"policy":{{"allow":{{"tools":["echo"]}}}},
        "tools":{{"pins":{{"z":{{"*":"trust_on_first_use"}},"a":{{"echo":"{hash}","b":"trust_on_first_use"}}}}}}}}"#
    );
    assert_eq!(
        lines(&pins),
        [
            "trust-on-first-use tools.pins.a.b",
            "trust-on-first-use tools.pins.z.*"
        ]
    );
}

#[test]
fn a_limit_must_count_tools_call() {
    let policy = r#"{"allow":{"tools":["echo"]}}"#;
    let other =
        with(KEYS, policy).replace(r#""methods":["tools/call"]"#, r#""methods":["tools/list"]"#);
    assert_eq!(lines(&other), ["no-tools-call-limit rate_limits"]);
    let every = with(KEYS, policy).replace(r#""methods":["tools/call"],"#, "");
    assert_eq!(lines(&every), Vec::<String>::new());
}

#[test]
fn forwarded_credentials_are_reported() {
    let policy = r#"{"allow":{"tools":["echo"]}}"#;
    let forward = with(KEYS, policy).replace(
        r#""upstream":{"#,
        r#""upstream":{"remove_client_authorization":false,"#,
    );
    assert_eq!(
        lines(&forward),
        ["credentials-forwarded upstream.remove_client_authorization"]
    );
}

#[test]
fn tasks_list_is_reported_while_task_ids_are_sealed() {
    let policy = r#"{"allow":{"methods":["tools/*","tasks/*"],"tools":["echo"]}}"#;
    let sealed = with(KEYS, policy).replace(
        r#""other_paths""#,
        r#""ownership":{"keys":["AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="]},"other_paths""#,
    );
    assert_eq!(lines(&sealed), ["tasks-list-unscoped policy.allow.methods"]);
    // Denied for everyone, not sealing tasks, or not allowed at all: nothing to report.
    let denied = sealed.replace(
        r#""tools":["echo"]}"#,
        r#""tools":["echo"]},"deny":{"methods":["tasks/list"]}"#,
    );
    let sessions_only = sealed.replace(r#"]},"other_paths""#, r#"],"tasks":false},"other_paths""#);
    let not_allowed = sealed.replace(r#""tasks/*""#, r#""tasks/get""#);
    for config in [denied, sessions_only, not_allowed, with(KEYS, policy)] {
        assert_eq!(lines(&config), Vec::<String>::new(), "{config}");
    }
}
