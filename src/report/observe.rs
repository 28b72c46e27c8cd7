//! What the filter reports about each decision: metric names whose labels have a bounded set
//! of values, and the audit record (one JSON line per MCP message).
//!
//! Labels are encoded in metric names as `.mcp_<label>=<value>` segments, which the shipped
//! Envoy configs' `stats_tags` turn into Prometheus labels. Values are sanitized to
//! `[A-Za-z0-9_-]` so they cannot break the name apart. Cardinality stays bounded: a method
//! label is one of the MCP specification's methods or `other`; a tool label is a tool named
//! literally in the configuration (policy lists, argument constraints, `metrics.tools`),
//! `other`, or `none` for messages that name no tool.

use std::collections::HashSet;

use serde::Deserialize;

use crate::fasthash::FastMap;
use crate::protocol::jsonrpc::{Seen, Target};
use crate::report::reject::{push_json_string, Code};

/// The request and notification methods of the MCP specification (2026-07-28 and earlier).
pub const MCP_METHODS: &[&str] = &[
    "initialize",
    "ping",
    "server/discover",
    "tools/list",
    "tools/call",
    "prompts/list",
    "prompts/get",
    "resources/list",
    "resources/templates/list",
    "resources/read",
    "resources/subscribe",
    "resources/unsubscribe",
    "completion/complete",
    "logging/setLevel",
    "sampling/createMessage",
    "elicitation/create",
    "roots/list",
    "tasks/get",
    "tasks/list",
    "tasks/result",
    "tasks/cancel",
    "notifications/initialized",
    "notifications/cancelled",
    "notifications/progress",
    "notifications/roots/list_changed",
    "notifications/message",
    "notifications/tools/list_changed",
    "notifications/prompts/list_changed",
    "notifications/resources/list_changed",
    "notifications/resources/updated",
];

/// What happened to one message, as metrics and the audit log name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    Allowed,
    /// Refused by policy but let through: shadow mode.
    Shadow,
    DeniedAuth,
    DeniedPolicy,
    DeniedLimit,
    /// Not a message the filter can judge: malformed, ambiguous, too large, wrong headers.
    Invalid,
    /// The filter could not decide (keys unavailable, a failed host call): failed closed.
    Error,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Allowed => "allowed",
            Outcome::Shadow => "shadow",
            Outcome::DeniedAuth => "denied_auth",
            Outcome::DeniedPolicy => "denied_policy",
            Outcome::DeniedLimit => "denied_limit",
            Outcome::Invalid => "invalid",
            Outcome::Error => "error",
        }
    }

    /// The outcome of a request refused with `code`.
    pub fn of_rejection(code: Code) -> Outcome {
        match code {
            Code::Unauthenticated => Outcome::DeniedAuth,
            Code::Forbidden | Code::SessionNotFound => Outcome::DeniedPolicy,
            Code::RateLimited => Outcome::DeniedLimit,
            Code::ParseError
            | Code::InvalidRequest
            | Code::InvalidParams
            | Code::HeaderMismatch
            | Code::MethodNotAllowed
            | Code::PayloadTooLarge
            | Code::UnsupportedMediaType => Outcome::Invalid,
            Code::Internal | Code::Unavailable | Code::BadGateway => Outcome::Error,
        }
    }
}

/// The `reason` label of a rejection counter.
pub fn reason_label(code: Code) -> &'static str {
    match code {
        Code::ParseError => "parse_error",
        Code::InvalidRequest => "invalid_request",
        Code::InvalidParams => "invalid_params",
        Code::HeaderMismatch => "header_mismatch",
        Code::Unauthenticated => "unauthenticated",
        Code::Forbidden => "forbidden",
        Code::MethodNotAllowed => "method_not_allowed",
        Code::PayloadTooLarge => "too_large",
        Code::UnsupportedMediaType => "unsupported_media_type",
        Code::Internal => "internal",
        Code::Unavailable => "unavailable",
        Code::BadGateway => "bad_gateway",
        Code::RateLimited => "rate_limited",
        Code::SessionNotFound => "session_not_found",
    }
}

#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MetricsDto {
    /// Tools that get their own label value, beyond those the policy names.
    #[serde(default)]
    tools: Vec<String>,
}

#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AuditDto {
    #[serde(default)]
    enabled: bool,
    /// Log `tools/call` arguments (redacted by key).
    #[serde(default)]
    arguments: bool,
    /// Argument keys whose values are replaced by `"[redacted]"`, at any depth, ignoring case.
    #[serde(default)]
    redact: Vec<String>,
}

/// What the audit log records, when it is on.
#[derive(Debug, Clone, Default)]
pub struct Audit {
    pub arguments: bool,
    redact: HashSet<String>,
}

/// Compiled `metrics` and `audit` sections.
#[derive(Debug, Clone, Default)]
pub struct Observe {
    /// Tool names with their own label value, and their index in `tool_names`.
    tools: FastMap<String, u32>,
    tool_names: Vec<String>,
    pub audit: Option<Audit>,
}

/// A message's counter labels as small numbers: the key the glue caches the counter under,
/// so a message costs no string building once its combination has been seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RequestLabels {
    method: Method,
    tool: Tool,
    outcome: Outcome,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Method {
    /// Index in [`MCP_METHODS`].
    Known(u8),
    Other,
    /// A client's JSON-RPC response.
    Response,
    /// Refused before the body was read.
    Unknown,
}

/// A tool's metric label, as a small number: what the glue caches per-tool metrics under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tool {
    /// Index in `Observe::tool_names`.
    Named(u32),
    Other,
    None,
}

impl Observe {
    /// `policy_tools`: tool names the policy names literally.
    pub(crate) fn compile(
        metrics: MetricsDto,
        audit: AuditDto,
        policy_tools: impl IntoIterator<Item = String>,
    ) -> Observe {
        let mut tool_names: Vec<String> = metrics.tools.into_iter().chain(policy_tools).collect();
        crate::sort::sort(&mut tool_names);
        tool_names.dedup();
        let tools = (0..)
            .zip(&tool_names)
            .map(|(i, name)| (name.clone(), i))
            .collect();
        let audit = audit.enabled.then(|| Audit {
            arguments: audit.arguments,
            redact: audit
                .redact
                .iter()
                .map(|k| k.to_ascii_lowercase())
                .collect(),
        });
        Observe {
            tools,
            tool_names,
            audit,
        }
    }

    /// The labels of one message's counter. `seen` is `None` for a request refused before
    /// its body was read (method `unknown`).
    pub fn request_labels(&self, seen: Option<&Seen>, outcome: Outcome) -> RequestLabels {
        let method = match seen.map(|s| s.method.as_deref()) {
            Some(Some(m)) => MCP_METHODS
                .iter()
                .position(|known| *known == m)
                .and_then(|i| u8::try_from(i).ok())
                .map_or(Method::Other, Method::Known),
            Some(None) => Method::Response,
            None => Method::Unknown,
        };
        RequestLabels {
            method,
            tool: self.tool(seen.and_then(|s| s.target.as_ref())),
            outcome,
        }
    }

    /// The counter for `labels`: `mcp_guard.requests.mcp_method=….mcp_tool=….mcp_decision=…`.
    pub fn request_metric(&self, labels: RequestLabels) -> String {
        let mut name = String::with_capacity(96);
        name.push_str("mcp_guard.requests.mcp_method=");
        match labels.method {
            Method::Known(i) => push_label(
                &mut name,
                MCP_METHODS.get(usize::from(i)).map_or("other", |m| m),
            ),
            Method::Other => name.push_str("other"),
            Method::Response => name.push_str("response"),
            Method::Unknown => name.push_str("unknown"),
        }
        name.push_str(".mcp_tool=");
        self.push_tool(&mut name, labels.tool);
        name.push_str(".mcp_decision=");
        name.push_str(labels.outcome.as_str());
        name
    }

    /// The tool label of `target`: its name when configured, `other`, or `none`.
    pub fn tool(&self, target: Option<&Target<'_>>) -> Tool {
        match target {
            Some(Target::Tool(tool)) => self
                .tools
                .get(tool.as_ref())
                .map_or(Tool::Other, |i| Tool::Named(*i)),
            _ => Tool::None,
        }
    }

    fn push_tool(&self, name: &mut String, tool: Tool) {
        match tool {
            Tool::Named(i) => {
                push_label(name, self.tool_names.get(i as usize).map_or("other", |t| t))
            }
            Tool::Other => name.push_str("other"),
            Tool::None => name.push_str("none"),
        }
    }

    /// The counter of a pinned tool drifting: `mcp_guard.pin_drift.mcp_tool=…`.
    pub fn pin_drift_metric(&self, tool: &str) -> String {
        let mut name = String::from("mcp_guard.pin_drift.mcp_tool=");
        self.push_tool(&mut name, self.tool(Some(&Target::Tool(tool.into()))));
        name
    }

    /// A counter of scanned tool results: `mcp_guard.result_<what>.mcp_tool=…` (`what`:
    /// `blocked` or `redacted`), or with a `detector`, `mcp_guard.result_matches.mcp_tool=
    /// ….mcp_detector=…` (detector names are bounded by the configuration).
    pub fn result_metric(&self, what: &str, tool: &str, detector: Option<&str>) -> String {
        let mut name = String::with_capacity(64);
        name.push_str("mcp_guard.result_");
        name.push_str(detector.map_or(what, |_| "matches"));
        name.push_str(".mcp_tool=");
        self.push_tool(&mut name, self.tool(Some(&Target::Tool(tool.into()))));
        if let Some(detector) = detector {
            name.push_str(".mcp_detector=");
            push_label(&mut name, detector);
        }
        name
    }

    /// The counter of argument checks by outcome (`valid`, `refused`, `shadow`,
    /// `uncompilable`): `mcp_guard.contract_arguments.mcp_tool=….mcp_result=…`.
    pub fn contract_arguments_metric(&self, tool: &str, outcome: &str) -> String {
        let mut name = String::from("mcp_guard.contract_arguments.mcp_tool=");
        self.push_tool(&mut name, self.tool(Some(&Target::Tool(tool.into()))));
        name.push_str(".mcp_result=");
        push_label(&mut name, outcome);
        name
    }

    /// The counter of tools whose inputSchema cannot be compiled (counted once per
    /// definition and worker): `mcp_guard.contract_uncompilable.mcp_tool=…`.
    pub fn contract_uncompilable_metric(&self, tool: &str) -> String {
        let mut name = String::from("mcp_guard.contract_uncompilable.mcp_tool=");
        self.push_tool(&mut name, self.tool(Some(&Target::Tool(tool.into()))));
        name
    }

    /// The histogram of a tool call's duration: `mcp_guard.call_duration_ms.mcp_tool=…`.
    pub fn call_duration_metric(&self, tool: Tool) -> String {
        let mut name = String::from("mcp_guard.call_duration_ms.mcp_tool=");
        self.push_tool(&mut name, tool);
        name
    }
}

/// The counter of refused requests by reason.
pub fn rejection_metric(code: Code) -> String {
    format!("mcp_guard.rejections.mcp_reason={}", reason_label(code))
}

/// The counter of JWKS fetches of a provider by result.
pub fn jwks_metric(provider: &str, ok: bool) -> String {
    let mut name = String::from("mcp_guard.jwks_fetches.mcp_provider=");
    push_label(&mut name, provider);
    name.push_str(if ok {
        ".mcp_result=ok"
    } else {
        ".mcp_result=failed"
    });
    name
}

/// Appends `value` with every character outside `[A-Za-z0-9_-]` replaced by `_`.
fn push_label(out: &mut String, value: &str) {
    out.extend(value.chars().map(|c| {
        if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
            c
        } else {
            '_'
        }
    }));
}

/// One audit line's content.
#[derive(Debug, Default)]
pub struct AuditRecord<'a> {
    pub time_ms: u64,
    pub request_id: Option<&'a str>,
    pub session_id: Option<&'a str>,
    pub subject: Option<&'a str>,
    pub method: Option<&'a str>,
    pub target: Option<&'a Target<'a>>,
    pub outcome: Option<Outcome>,
    pub rule: Option<&'a str>,
    pub limit: Option<&'a str>,
    pub reason: Option<&'a str>,
    pub upstream: Option<&'a str>,
    /// The call's arguments as JSON text, already redacted.
    pub arguments: Option<String>,
    /// What scanning the call's result found (`redacted`, `blocked` or `logged`, then
    /// `detector=count` pairs), never the matched text.
    pub result: Option<&'a str>,
}

impl AuditRecord<'_> {
    /// The record as one line of JSON; absent fields are omitted.
    pub fn to_line(&self) -> String {
        let mut out = String::with_capacity(256);
        out.push_str("{\"time\":");
        push_json_string(&mut out, &rfc3339(self.time_ms));
        let mut field = |key: &str, value: Option<&str>| {
            if let Some(value) = value {
                out.push_str(",\"");
                out.push_str(key);
                out.push_str("\":");
                push_json_string(&mut out, value);
            }
        };
        field("request_id", self.request_id);
        field("session_id", self.session_id);
        field("subject", self.subject);
        field("method", self.method);
        let (kind, value) = match self.target {
            Some(Target::Tool(v)) => ("tool", Some(v.as_ref())),
            Some(Target::Prompt(v)) => ("prompt", Some(v.as_ref())),
            Some(Target::Resource(v)) => ("uri", Some(v.as_ref())),
            None => ("tool", None),
        };
        field(kind, value);
        field("decision", self.outcome.map(Outcome::as_str));
        field("rule", self.rule);
        field("limit", self.limit);
        field("reason", self.reason);
        field("upstream", self.upstream);
        field("result", self.result);
        if let Some(arguments) = &self.arguments {
            out.push_str(",\"arguments\":");
            out.push_str(arguments);
        }
        out.push('}');
        out
    }
}

impl Audit {
    /// `raw` (a JSON value the reader validated) with the values of redacted keys replaced,
    /// re-serialized compactly; `None` if it does not parse.
    pub fn redacted(&self, raw: &[u8]) -> Option<String> {
        let mut value: serde_json::Value = serde_json::from_slice(raw).ok()?;
        if !self.redact.is_empty() {
            self.redact_in(&mut value);
        }
        serde_json::to_string(&value).ok()
    }

    fn redact_in(&self, value: &mut serde_json::Value) {
        match value {
            serde_json::Value::Object(map) => {
                for (key, v) in map.iter_mut() {
                    if self.redact.contains(&key.to_ascii_lowercase()) {
                        *v = serde_json::Value::String("[redacted]".into());
                    } else {
                        self.redact_in(v);
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(|v| self.redact_in(v)),
            _ => {}
        }
    }
}

/// `2026-11-25T22:32:30.123Z` for milliseconds since the Unix epoch.
fn rfc3339(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms % 1000
    )
}

/// Year, month, day of a day count since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use super::*;

    fn observe(tools: &[&str]) -> Observe {
        Observe::compile(
            MetricsDto::default(),
            AuditDto {
                enabled: true,
                arguments: true,
                redact: vec!["Password".into()],
            },
            tools.iter().map(|t| t.to_string()),
        )
    }

    #[test]
    fn result_metrics_name_tool_and_detector() {
        let o = observe(&["db.query"]);
        assert_eq!(
            o.result_metric("matches", "db.query", Some("aws_key")),
            "mcp_guard.result_matches.mcp_tool=db_query.mcp_detector=aws_key"
        );
        assert_eq!(
            o.result_metric("blocked", "anything", None),
            "mcp_guard.result_blocked.mcp_tool=other"
        );
    }

    #[test]
    fn labels_are_bounded_and_sanitized() {
        let o = observe(&["db.query", "echo"]);
        let tool = |t: &'static str| Target::Tool(Cow::Borrowed(t));
        let seen = |method: Option<&str>, target: Option<Target<'static>>| Seen {
            method: method.map(str::to_owned),
            target,
            arguments: None,
        };
        let cases = [
            (Some("tools/call"), Some(tool("echo")), Outcome::Allowed,
             "mcp_guard.requests.mcp_method=tools_call.mcp_tool=echo.mcp_decision=allowed"),
            (Some("tools/call"), Some(tool("db.query")), Outcome::DeniedPolicy,
             "mcp_guard.requests.mcp_method=tools_call.mcp_tool=db_query.mcp_decision=denied_policy"),
            // A tool the configuration does not name, and a made-up method, share one label.
            (Some("tools/call"), Some(tool("x.mcp_decision=allowed")), Outcome::Shadow,
             "mcp_guard.requests.mcp_method=tools_call.mcp_tool=other.mcp_decision=shadow"),
            (Some("evil/method.mcp_tool=x"), None, Outcome::Invalid,
             "mcp_guard.requests.mcp_method=other.mcp_tool=none.mcp_decision=invalid"),
            (None, None, Outcome::Allowed,
             "mcp_guard.requests.mcp_method=response.mcp_tool=none.mcp_decision=allowed"),
            (Some("prompts/get"), Some(Target::Prompt(Cow::Borrowed("echo"))), Outcome::Allowed,
             "mcp_guard.requests.mcp_method=prompts_get.mcp_tool=none.mcp_decision=allowed"),
        ];
        for (method, target, outcome, want) in cases {
            let labels = o.request_labels(Some(&seen(method, target)), outcome);
            assert_eq!(o.request_metric(labels), want);
        }
        assert_eq!(
            o.request_metric(o.request_labels(None, Outcome::DeniedAuth)),
            "mcp_guard.requests.mcp_method=unknown.mcp_tool=none.mcp_decision=denied_auth"
        );
        assert_eq!(
            jwks_metric("corp.idp", false),
            "mcp_guard.jwks_fetches.mcp_provider=corp_idp.mcp_result=failed"
        );
        assert_eq!(
            rejection_metric(Code::PayloadTooLarge),
            "mcp_guard.rejections.mcp_reason=too_large"
        );
    }

    #[test]
    fn every_code_has_an_outcome_and_a_reason() {
        for code in Code::ALL {
            let reason = reason_label(code);
            assert!(
                reason.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{reason}"
            );
            let _ = Outcome::of_rejection(code);
        }
        assert_eq!(
            Outcome::of_rejection(Code::Unauthenticated),
            Outcome::DeniedAuth
        );
        assert_eq!(
            Outcome::of_rejection(Code::Forbidden),
            Outcome::DeniedPolicy
        );
        assert_eq!(
            Outcome::of_rejection(Code::RateLimited),
            Outcome::DeniedLimit
        );
    }

    #[test]
    fn audit_line_is_one_json_object_with_redacted_arguments() {
        let o = observe(&[]);
        let audit = o.audit.as_ref().unwrap();
        let target = Target::Tool(Cow::Borrowed("login"));
        let record = AuditRecord {
            time_ms: 1_795_818_750_123,
            request_id: Some("r-1"),
            session_id: None,
            subject: Some("alice\n\"admin\""),
            method: Some("tools/call"),
            target: Some(&target),
            outcome: Some(Outcome::DeniedPolicy),
            rule: Some("support"),
            reason: Some("tool \"login\" is denied"),
            arguments: audit
                .redacted(br#"{"user":"a","PASSWORD":"s3cret","nested":[{"password":1}]}"#),
            ..AuditRecord::default()
        };
        let line = record.to_line();
        assert!(!line.contains('\n') && !line.contains("s3cret"), "{line}");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["time"], "2026-11-27T22:32:30.123Z");
        assert_eq!(v["subject"], "alice\n\"admin\"");
        assert_eq!(v["tool"], "login");
        assert_eq!(v["decision"], "denied_policy");
        assert_eq!(v["arguments"]["PASSWORD"], "[redacted]");
        assert_eq!(v["arguments"]["nested"][0]["password"], "[redacted]");
        assert_eq!(v["arguments"]["user"], "a");
        assert!(v.get("session_id").is_none() && v.get("limit").is_none());
    }

    #[test]
    fn dates_round_trip_known_days() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(rfc3339(4_107_542_399_999), "2100-02-28T23:59:59.999Z");
    }
}
