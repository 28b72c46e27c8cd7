#![allow(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing)] // tests
//! Unit tests of the call checks: a schema read by a worker that never saw the list, the
//! `Mcp-Param-*` headers and the contract checked against it, and what learning reports.

use super::*;
use crate::catalog::schemas::SharedSchemas;
use crate::config::Config;
use crate::report::reject::Code;
use crate::state::MemoryStore;

const PARAMS_ONLY: Checks = Checks {
    params: true,
    arguments: false,
    formats: false,
};
const BOTH: Checks = Checks {
    params: true,
    arguments: true,
    formats: false,
};

/// Upstream "up" of `store`, room for 8 tools.
fn up(store: &MemoryStore) -> SharedSchemas<'_, MemoryStore> {
    SharedSchemas {
        store,
        upstream: "up",
        max_tools: 8,
    }
}

const REGION_TOOL: &str = r#"{"name":"deploy","inputSchema":{"type":"object","properties":{"region":{"type":"string","x-mcp-header":"Region"},"n":{"type":"integer","maximum":3}},"required":["region"]}}"#;

fn def(element: &str) -> ToolDef {
    ToolDef::parse(element.as_bytes()).unwrap()
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    HeaderMap::from_pairs(pairs)
}

#[test]
fn a_worker_that_never_saw_the_list_reads_the_schema_and_checks_calls() {
    let store = MemoryStore::reserved();
    let up = up(&store);
    let config = Config::from_json(br#"{"contracts":{"arguments":[{"mode":"enforce"}]}}"#).unwrap();
    let listed = def(REGION_TOOL);
    // The worker that saw the list.
    let mut lister = Compiled::new(8);
    assert_eq!(
        lister.learn_listed(&up, &listed, BOTH),
        SchemaNews::default()
    );
    // Another worker: nothing compiled until it reads shared data, once.
    let mut caller = Compiled::new(8);
    assert!(!caller.knows(&listed.sha256, BOTH));
    caller.find(&up, &listed.sha256, BOTH);
    assert!(caller.knows(&listed.sha256, BOTH));
    let call = |args: &str, hs: &[(&str, &str)]| {
        caller.check_call(
            &config.contracts,
            "up",
            "deploy",
            Some(&listed.sha256),
            Some(args.as_bytes()),
            Some(&headers(hs)),
            Some("7"),
        )
    };
    assert_eq!(
        call(r#"{"region":"eu"}"#, &[("mcp-param-region", "eu")]),
        CallCheck::Pass
    );
    // The base64 form decodes to the same value.
    assert_eq!(
        call(
            r#"{"region":"eu"}"#,
            &[("mcp-param-region", "=?base64?ZXU=?=")]
        ),
        CallCheck::Pass
    );
    let refused = |check: CallCheck| match check {
        CallCheck::Refuse(r) => (r.code, r.reason, r.id),
        other => panic!("not refused: {other:?}"),
    };
    let (code, reason, id) = refused(call(r#"{"region":"eu"}"#, &[("mcp-param-region", "us")]));
    assert_eq!((code, id.as_deref()), (Code::HeaderMismatch, Some("7")));
    assert!(reason.contains("Mcp-Param-Region"), "{reason}");
    let (code, reason, _) = refused(call(r#"{"region":"eu"}"#, &[]));
    assert_eq!(code, Code::HeaderMismatch);
    assert!(reason.contains("Mcp-Param-Region"), "{reason}");
    assert_eq!(
        refused(call(
            r#"{"region":"eu"}"#,
            &[("mcp-param-region", "=?base64?!!?=")]
        ))
        .0,
        Code::HeaderMismatch
    );
    // Headers agree, the contract does not: -32602 naming the keyword.
    let (code, reason, id) = refused(call(
        r#"{"region":"eu","n":9}"#,
        &[("mcp-param-region", "eu")],
    ));
    assert_eq!((code, id.as_deref()), (Code::InvalidParams, Some("7")));
    assert!(
        reason.contains("maximum") && !reason.contains('9'),
        "{reason}"
    );
    // Unrecognised Mcp-Param headers are not looked at; a batch member has no headers.
    assert_eq!(
        call(
            r#"{"region":"eu"}"#,
            &[("mcp-param-region", "eu"), ("mcp-param-other", "x")]
        ),
        CallCheck::Pass
    );
    let batch = caller.check_call(
        &config.contracts,
        "up",
        "deploy",
        Some(&listed.sha256),
        Some(br#"{"region":"eu"}"#),
        None,
        None,
    );
    assert_eq!(batch, CallCheck::Pass);
}

#[test]
fn unknown_schemas_check_no_headers_and_follow_the_contract_mode() {
    let store = MemoryStore::reserved();
    let up = up(&store);
    let mut worker = Compiled::new(8);
    // Nothing in shared data: nothing learned.
    assert_eq!(worker.find(&up, &[5; 32], BOTH), SchemaNews::default());
    assert!(!worker.knows(&[5; 32], BOTH));
    let off = Config::from_json(b"{}").unwrap();
    let check = |config: &Config, hash| {
        worker.check_call(
            &config.contracts,
            "up",
            "t",
            hash,
            Some(b"{}"),
            Some(&HeaderMap::default()),
            Some("1"),
        )
    };
    assert_eq!(check(&off, None), CallCheck::Pass);
    assert_eq!(check(&off, Some(&[5; 32])), CallCheck::Pass);
    let enforce =
        Config::from_json(br#"{"contracts":{"arguments":[{"mode":"enforce"}]}}"#).unwrap();
    assert!(matches!(check(&enforce, None), CallCheck::Refuse(r) if r.code == Code::Forbidden));
    let pass = Config::from_json(
        br#"{"contracts":{"arguments":[{"mode":"enforce"}],"uncompilable":"pass"}}"#,
    )
    .unwrap();
    assert!(matches!(
        check(&pass, None),
        CallCheck::Report {
            outcome: "uncompilable",
            ..
        }
    ));
}

#[test]
fn invalid_headers_and_uncompilable_schemas_are_news_once() {
    let store = MemoryStore::reserved();
    let up = up(&store);
    let mut worker = Compiled::new(8);
    let bad = def(
        r#"{"name":"t","inputSchema":{"type":"object","properties":{"o":{"type":"object","x-mcp-header":"O"}}}}"#,
    );
    let news = worker.learn_listed(&up, &bad, PARAMS_ONLY);
    assert!(
        news.params.as_deref().unwrap().starts_with("/o: "),
        "{news:?}"
    );
    // Still refused on every later answer (clients must exclude the tool).
    assert!(worker.learn_listed(&up, &bad, PARAMS_ONLY).params.is_some());
    let uncompilable =
        def(r#"{"name":"u","inputSchema":{"type":"object","$ref":"https://example.com/s"}}"#);
    let first = worker.learn_listed(&up, &uncompilable, BOTH);
    assert!(
        first.uncompilable.is_some() && first.params.is_none(),
        "{first:?}"
    );
    assert_eq!(
        worker.learn_listed(&up, &uncompilable, BOTH),
        SchemaNews::default()
    );
    // A tool without inputSchema mirrors nothing; argument checks cannot use it.
    let bare = def(r#"{"name":"b"}"#);
    let news = worker.learn_listed(&up, &bare, BOTH);
    assert!(news.params.is_none() && news.uncompilable.is_some());
}
