//! The CLI's view of tool contracts: `explain` says whether a call's arguments match the
//! inputSchema of a saved `tools/list`, and `scan` runs a results rule over a saved answer.
//!
//! Decides nothing of its own: both go through the same `contract` functions the filter
//! calls, so what they print is what the filter would do.

use std::process::ExitCode;

use mcp_guard::catalog::tooldef::ToolDef;
use mcp_guard::config::Config;
use mcp_guard::contract::{scan_event, CallCheck, Known, Mode, ResultRule, Scan, SchemaCache};
use mcp_guard::protocol::jsonrpc::{parse_body, Target};
use mcp_guard::report::reject::Rejection;
use mcp_guard::response::sse::SseFramer;

use super::{load_config, read_input, usage, Error, Options, Report, REFUSED};

/// Contract lines for each `tools/call` of an approved body; the refusal, if one is
/// refused. `listed`: the tools of `--tools`, each with its element's JSON.
pub(super) fn explain(
    config: &Config,
    body: &[u8],
    options: &Options,
    listed: Option<&[(ToolDef, String)]>,
    out: &mut Report,
) -> Option<Rejection> {
    let contracts = &config.contracts;
    if !contracts.is_active() {
        return None;
    }
    let upstream = options.upstream.as_deref().unwrap_or_default();
    let mut cache = SchemaCache::new(contracts.max_schemas);
    for (def, element) in listed.unwrap_or_default() {
        if let Some(e) = cache.learn(def.sha256, element.as_bytes(), contracts.formats) {
            out.line(format!("contract: tool {:?}: {e}", def.name));
        }
    }
    let parsed = parse_body(body).ok()?;
    for message in parsed.messages() {
        let Some(Target::Tool(tool)) = &message.target else {
            continue;
        };
        let hash = listed
            .unwrap_or_default()
            .iter()
            .find(|(def, _)| def.name == *tool)
            .map(|(def, _)| def.sha256);
        let known = hash.map_or(Known::Unknown, |h| cache.get(&h));
        let arguments = message.arguments.clone().and_then(|r| body.get(r));
        let mode = contracts.argument_mode(upstream, tool);
        match contracts.check_call(upstream, tool, arguments, known) {
            CallCheck::Pass if matches!(known, Known::Schema(_)) && mode != Mode::Off => {
                out.line(format!(
                    "contract: tool {tool:?}: arguments match its inputSchema ({mode:?})"
                ));
            }
            CallCheck::Pass => {}
            CallCheck::Report { outcome, reason } => {
                out.line(format!("contract: {outcome}: {reason}"))
            }
            CallCheck::Refuse(rejection) => return Some(rejection.with_id(message.id)),
        }
    }
    None
}

/// `mcp-guard scan`: the rule's verdict on each message of a saved answer.
pub(super) fn scan(options: &Options) -> Result<ExitCode, Error> {
    let (Some(answer), Some(tool)) = (options.answer.as_deref(), options.tool.as_deref()) else {
        return Err(usage("scan needs --config, --answer and --tool"));
    };
    if options.config.as_deref() == Some("-") && answer == "-" {
        return Err(usage("only one of --config and --answer can be stdin"));
    }
    let (_, config) = load_config(options)?;
    let bytes = read_input(answer)?;
    let upstream = options.upstream.as_deref().unwrap_or_default();
    let mut out = Report::default();
    let Some(rule) = config.contracts.result_rule(upstream, tool) else {
        out.line(format!("rule:     none covers tool {tool:?} of upstream {upstream:?}: the answer is not scanned"));
        return out.finish(ExitCode::SUCCESS);
    };
    let names: Vec<&str> = rule.detectors.iter().map(|d| d.name()).collect();
    out.line(format!(
        "rule:     {:?}, detectors [{}]",
        rule.action,
        names.join(", ")
    ));
    let json = matches!(
        bytes.iter().find(|b| !b.is_ascii_whitespace()),
        Some(b'{' | b'[')
    );
    let mut blocked = false;
    let mut answer_out = Vec::with_capacity(bytes.len());
    if json {
        let scan = rule.scan(tool, &bytes);
        blocked |= describe(&mut out, "message", rule, &scan);
        answer_out.extend_from_slice(scan.body.as_deref().unwrap_or(&bytes));
    } else {
        let mut framer = SseFramer::default();
        let mut events = framer.push(&bytes);
        events.push(framer.finish());
        for (i, event) in events.iter().enumerate().filter(|(_, e)| !e.is_empty()) {
            let scan = scan_event(rule, tool, event);
            blocked |= describe(&mut out, &format!("event[{i}]"), rule, &scan);
            answer_out.extend_from_slice(scan.body.as_deref().unwrap_or(event));
        }
    }
    out.line(format!(
        "verdict:  {}",
        if blocked { "blocked" } else { "forwarded" }
    ));
    out.line(String::from_utf8_lossy(&answer_out));
    out.finish(if blocked {
        ExitCode::from(REFUSED)
    } else {
        ExitCode::SUCCESS
    })
}

/// One message's line: counts per detector and what happens; whether it was blocked.
fn describe(out: &mut Report, label: &str, rule: &ResultRule, scan: &Scan<'_>) -> bool {
    let counts: Vec<String> = scan
        .counts
        .iter()
        .map(|(name, n)| format!("{name} x{n}"))
        .collect();
    let what = match (&scan.blocked, &scan.body) {
        (Some(reason), _) => format!("blocked: {reason}"),
        (None, Some(_)) => "redacted".to_owned(),
        (None, None) if counts.is_empty() => "clean".to_owned(),
        (None, None) => format!("{:?} only", rule.action),
    };
    let found = if counts.is_empty() {
        String::new()
    } else {
        format!(" [{}]", counts.join(", "))
    };
    out.line(format!("{label:<9} {what}{found}"));
    scan.blocked.is_some()
}
