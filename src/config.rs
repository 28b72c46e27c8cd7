//! The filter's configuration: a strict JSON schema (DTO) compiled once into [`Config`].
//! Each stage owns its section's DTO and compile step; this module assembles them and
//! checks what spans sections.
//!
//! Everything is validated at load time; an error names the exact path of the offending
//! value (`policy.deny.tools[0]: invalid pattern "[": …`), so Envoy's log says why a
//! configuration was refused.

use serde::Deserialize;

use crate::catalog::config::ToolsDto;
use crate::catalog::toolstate::ToolsConfig;
use crate::contract::calls::Checks;
use crate::contract::{Contracts, ContractsDto};
use crate::identity::ownership::{Ownership, OwnershipDto};
use crate::identity::{AuthDto, Authenticator, Provider};
use crate::limits::{RateLimits, RateLimitsDto};
use crate::policy::config::PolicyDto;
use crate::policy::glob::{patterns, PatternSet};
use crate::policy::Policy;
use crate::report::observe::{AuditDto, MetricsDto, Observe};
use crate::upstream::{Upstream, UpstreamDto};

pub use crate::section::{Access, ConfigError};

/// Default cap on an inspected request body: 1 MiB.
pub const DEFAULT_MAX_BODY_BYTES: u64 = 1 << 20;
/// Largest accepted `max_body_bytes`; Envoy must buffer the whole body.
pub const MAX_MAX_BODY_BYTES: u64 = 64 << 20;

/// How long a request to an MCP endpoint is held back from the upstream.
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Hold {
    /// The headers go on once the caller is authenticated; the body is held until the
    /// decision, and a refused request's upstream stream is reset before any of its body is
    /// sent. Works in every Envoy, whatever its Wasm plugin settings.
    #[default]
    Body,
    /// Nothing, not even the headers or a connection, reaches the upstream before the
    /// decision. Needs `allow_on_headers_stop_iteration: true` in the Wasm plugin config;
    /// required for routing on the parsed message (`upstream.routing_headers`).
    Request,
}

#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigDto {
    endpoints: Option<Vec<String>>,
    #[serde(default)]
    hold: Hold,
    /// Paths outside `endpoints` forwarded uninspected (health checks, OAuth metadata).
    #[serde(default)]
    pass_paths: Vec<String>,
    /// Every other path; `allow` forwards them uninspected (risky: see docs/CONFIG.md).
    #[serde(default = "deny")]
    other_paths: Access,
    max_body_bytes: Option<u64>,
    #[serde(default)]
    get_stream: Access,
    #[serde(default)]
    delete_session: Access,
    #[serde(default)]
    policy: PolicyDto,
    auth: Option<AuthDto>,
    #[serde(default)]
    upstream: UpstreamDto,
    #[serde(default)]
    metrics: MetricsDto,
    #[serde(default)]
    audit: AuditDto,
    #[serde(default)]
    tools: ToolsDto,
    #[serde(default)]
    rate_limits: RateLimitsDto,
    ownership: Option<OwnershipDto>,
    #[serde(default)]
    contracts: ContractsDto,
}

/// The compiled configuration the filter runs with.
#[derive(Debug, Clone)]
pub struct Config {
    /// MCP endpoints, as canonical patterns (see [`crate::protocol::path`]): matched on the
    /// canonical form of the request path.
    pub endpoints: PatternSet,
    /// Other paths forwarded uninspected, as canonical patterns.
    pub pass_paths: PatternSet,
    /// Requests to any path in neither set.
    pub other_paths: Access,
    /// What of a request waits for the decision.
    pub hold: Hold,
    pub max_body_bytes: u64,
    /// `GET` on an endpoint: the server-to-client stream (or the legacy SSE stream).
    pub get_stream: Access,
    /// `DELETE` on an endpoint: ends a session.
    pub delete_session: Access,
    pub policy: Policy,
    /// Who may call; `None` means every caller is anonymous.
    pub auth: Option<Authenticator>,
    /// What approved requests carry upstream instead of the client's credentials.
    pub upstream: Upstream,
    /// Metric labels and the audit log.
    pub observe: Observe,
    /// Tool pins and the bound on learned tools.
    pub tools: ToolsConfig,
    /// Rules test annotations, tools are pinned, or calls are checked against their tool's
    /// schema: `tools/list` answers are learned from and calls look their tool up in shared
    /// data. Otherwise neither costs anything.
    pub learns_tools: bool,
    /// What calls are checked against their tool's learned `inputSchema`.
    pub schema_checks: Checks,
    /// Token buckets approved requests take from; empty: no limits, no cost.
    pub rate_limits: RateLimits,
    /// Task and session ids sealed to their owner; `None`: ids pass as the upstream made them.
    pub ownership: Option<Ownership>,
    /// Something keys on the route's cluster (learned tools, rate-limit keys, injected
    /// headers, the audit line): the glue reads it once, after routing.
    pub needs_upstream: bool,
    /// Tool contracts: arguments against inputSchemas, results scanned.
    pub contracts: Contracts,
}

impl Config {
    /// The JWT provider at `index`, as authentication steps and the key store number them.
    pub fn provider(&self, index: usize) -> Option<&Provider> {
        self.auth.as_ref()?.providers.get(index)
    }

    /// Parses and compiles a configuration; empty input means all defaults.
    pub fn from_json(text: &[u8]) -> Result<Config, ConfigError> {
        let text = if text.iter().all(u8::is_ascii_whitespace) {
            &b"{}"[..]
        } else {
            text
        };
        let dto: ConfigDto = crate::located::from_slice(text).map_err(|e| ConfigError {
            message: e.to_string(),
            // The document itself has an empty path (so has an empty top-level key).
            path: if e.path.is_empty() {
                "configuration".into()
            } else {
                e.path
            },
        })?;
        dto.compile()
    }
}

/// The JSON Schema of the configuration, generated from the types the filter parses, for
/// editors and CI (`mcp-guard schema`; committed as docs/mcp-guard.schema.json).
#[cfg(not(target_arch = "wasm32"))]
pub fn json_schema() -> String {
    let mut schema = schemars::schema_for!(ConfigDto);
    schema.insert("title".into(), "mcp-guard filter configuration".into());
    serde_json::to_string_pretty(&schema).unwrap_or_default()
}

impl ConfigDto {
    fn compile(self) -> Result<Config, ConfigError> {
        let endpoints = self.endpoints.unwrap_or_else(|| vec!["/mcp".into()]);
        if endpoints.is_empty() {
            return Err(ConfigError {
                path: "endpoints".into(),
                message: "at least one MCP endpoint path is required".into(),
            });
        }
        let max_body_bytes = self.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY_BYTES);
        if !(1..=MAX_MAX_BODY_BYTES).contains(&max_body_bytes) {
            return Err(ConfigError {
                path: "max_body_bytes".into(),
                message: format!("{max_body_bytes} is outside 1..={MAX_MAX_BODY_BYTES}"),
            });
        }
        let policy = self.policy.compile()?;
        let observe = Observe::compile(self.metrics, self.audit, policy.tool_literals());
        let tools = self.tools.compile()?;
        let upstream = self.upstream.compile()?;
        if upstream.routes() && self.hold == Hold::Body {
            return Err(ConfigError {
                path: "upstream.routing_headers".into(),
                message: "routing on the parsed message needs \"hold\": \"request\" (and \
                          allow_on_headers_stop_iteration: true in the Wasm plugin config): \
                          with \"hold\": \"body\" the headers, and so the route, go on \
                          before the body is read"
                    .into(),
            });
        }
        let rate_limits = self.rate_limits.compile("rate_limits")?;
        let contracts = self.contracts.compile("contracts")?;
        let schema_checks = Checks {
            params: tools.validate_mcp_param,
            arguments: contracts.validates_arguments(),
            formats: contracts.formats,
        };
        let learns_tools =
            policy.uses_annotations() || !tools.pins.is_empty() || schema_checks.any();
        Ok(Config {
            schema_checks,
            needs_upstream: learns_tools
                || rate_limits.needs_upstream
                || upstream.injects()
                || observe.audit.is_some()
                || contracts.is_active(),
            learns_tools,
            policy,
            tools,
            endpoints: path_patterns("endpoints", &endpoints)?,
            pass_paths: path_patterns("pass_paths", &self.pass_paths)?,
            other_paths: self.other_paths,
            hold: self.hold,
            max_body_bytes,
            get_stream: self.get_stream,
            delete_session: self.delete_session,
            auth: self.auth.map(|a| a.compile("auth")).transpose()?,
            upstream,
            observe,
            rate_limits,
            ownership: self.ownership.map(|o| o.compile("ownership")).transpose()?,
            contracts,
        })
    }
}

fn deny() -> Access {
    Access::Deny
}

/// Path patterns in canonical form, so a request path is canonicalised once and matched
/// as is (see [`crate::protocol::path`]).
fn path_patterns(path: &str, list: &[String]) -> Result<PatternSet, ConfigError> {
    let mut canonical = Vec::with_capacity(list.len());
    for (i, pattern) in list.iter().enumerate() {
        if let Some(message) = crate::protocol::path::pattern_error(pattern) {
            return Err(ConfigError {
                path: format!("{path}[{i}]"),
                message,
            });
        }
        canonical.push(crate::protocol::path::canonical_pattern(pattern));
    }
    patterns(path, &canonical)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::toolstate::Pin;

    fn err(json: &str) -> String {
        Config::from_json(json.as_bytes()).unwrap_err().to_string()
    }

    /// Whether an anonymous `tools/call` of `tool` passes.
    fn allows(c: &Config, method: &str, tool: &str) -> bool {
        let body = format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"{method}","params":{{"name":"{tool}"}}}}"#
        );
        let parsed = crate::protocol::jsonrpc::parse_body(body.as_bytes()).unwrap();
        let rules = c.policy.applicable(&crate::identity::Identity::anonymous());
        !matches!(
            rules.decide(
                &parsed.messages()[0],
                &crate::catalog::tooldef::Hints::UNKNOWN.effective()
            ),
            crate::policy::Decision::Denied { .. }
        )
    }

    #[test]
    fn hold_defaults_to_body_and_routing_needs_the_request_hold() {
        assert_eq!(Config::from_json(b"{}").unwrap().hold, Hold::Body);
        let routed = r#"{"upstream":{"routing_headers":{"tool":"x-mcp-tool"}}}"#;
        let e = err(routed);
        assert!(
            e.starts_with("upstream.routing_headers: routing on the parsed message needs \"hold\": \"request\" (and allow_on_headers_stop_iteration: true"),
            "{e}"
        );
        let held = r#"{"hold":"request","upstream":{"routing_headers":{"tool":"x-mcp-tool"}}}"#;
        let c = Config::from_json(held.as_bytes()).unwrap();
        assert_eq!(c.hold, Hold::Request);
        assert!(c.upstream.routes());
        assert_eq!(
            err(r#"{"hold":"headers"}"#),
            "hold: unknown variant `headers`, expected `body` or `request` at line 1 column 17"
        );
    }

    #[test]
    fn defaults_apply_to_empty_config() {
        for empty in ["", "  \n", "{}"] {
            let c = Config::from_json(empty.as_bytes()).unwrap();
            assert!(c.endpoints.is_match("/mcp"));
            assert!(!c.endpoints.is_match("/mcp/x"));
            assert!(c.pass_paths.is_empty());
            assert_eq!(c.max_body_bytes, 1 << 20);
            assert_eq!(
                (c.other_paths, c.get_stream, c.delete_session),
                (Access::Deny, Access::Allow, Access::Allow)
            );
            assert!(allows(&c, "tools/call", "anything"));
        }
    }

    #[test]
    fn errors_name_the_path() {
        let cases = [
            (r#"{"policy":{"deny":{"tools":["["]}}}"#, r#"policy.deny.tools[0]: invalid pattern "[": unclosed or empty '['"#),
            (r#"{"policy":{"allow":{"methods":["a","b[!"]}}}"#, r#"policy.allow.methods[1]: invalid pattern "b[!": unclosed or empty '['"#),
            (r#"{"policy":{"allow":{"tool":[]}}}"#, "policy.allow.tool: unknown field `tool`, expected one of `methods`, `tools`, `prompts`, `resources`, `annotations` at line 1 column 26"),
            (r#"{"max_body_bytes":0}"#, "max_body_bytes: 0 is outside 1..=67108864"),
            (r#"{"max_body_bytes":-1}"#, "max_body_bytes: invalid value: integer `-1`, expected u64 at line 1 column 20"),
            (r#"{"endpoints":[]}"#, "endpoints: at least one MCP endpoint path is required"),
            (r#"{"endpoints":["/mcp","mcp"]}"#, "endpoints[1]: path \"mcp\" must start with '/'"),
            (r#"{"pass_paths":["/healthz","/a;b"]}"#, "pass_paths[1]: path \"/a;b\" must not contain ';': requests are matched decoded, without ;params, with '\\' read as '/'"),
            (r#"{"pass_paths":["/[x"]}"#, r#"pass_paths[0]: invalid pattern "/[x": unclosed or empty '['"#),
            (r#"{"other_paths":"maybe"}"#, "other_paths: unknown variant `maybe`, expected `allow` or `deny` at line 1 column 22"),
            (r#"{"bogus":1}"#, "bogus: unknown field `bogus`, expected one of `endpoints`, `hold`, `pass_paths`, `other_paths`, `max_body_bytes`, `get_stream`, `delete_session`, `policy`, `auth`, `upstream`, `metrics`, `audit`, `tools`, `rate_limits`, `ownership`, `contracts` at line 1 column 8"),
            (r#"{"get_stream":"allow","get_stream":"deny"}"#, "configuration: duplicate field `get_stream` at line 1 column 34"),
            (r#"{} {}"#, "configuration: trailing characters at line 1 column 4"),
            // Found by the config fuzz target: an empty key once gave an empty path.
            (r#"{"":1}"#, "configuration: unknown field ``, expected one of `endpoints`, `hold`, `pass_paths`, `other_paths`, `max_body_bytes`, `get_stream`, `delete_session`, `policy`, `auth`, `upstream`, `metrics`, `audit`, `tools`, `rate_limits`, `ownership`, `contracts` at line 1 column 3"),
            (r#"not json"#, "configuration: expected ident at line 1 column 2"),
            // A syntax error names the value being read where the reader stopped.
            (r#"{"policy":{"rules":[{"name" "a"}]}}"#, "policy.rules[0]: expected `:` at line 1 column 29"),
            (r#"{"auth":{"jwt_providers":[{"name":"a","issuer":"x"#, "auth.jwt_providers[0].issuer: EOF while parsing a string at line 1 column 49"),
            (r#"{"endpoints":["/mcp",]}"#, "endpoints: trailing comma at line 1 column 22"),
            // Numbers and enums read as serde_json reads them; a struct only from an object.
            (r#"{"max_body_bytes":18446744073709551616}"#, "max_body_bytes: invalid type: floating point `1.8446744073709552e+19`, expected u64 at line 1 column 38"),
            (r#"{"hold":{"request":1}}"#, "hold.request: invalid type: integer `1`, expected unit at line 1 column 20"),
            (r#"{"hold":{"body":null,"x":1}}"#, "hold: expected value at line 1 column 20"),
            (r#"{"tools":[256]}"#, "tools: invalid type: sequence, expected struct ToolsDto at line 1 column 9"),
            (r#"{"policy":{"rules":[{"name":"a","who":{"roles":["ok","["]}}]}}"#, r#"policy.rules[0].who.roles[1]: invalid pattern "[": unclosed or empty '['"#),
            (r#"{"policy":{"rules":[{"name":"a"},{"name":"b"},{"name":"c","allow":{"tools":["["]}}]}}"#, r#"policy.rules[2].allow.tools[0]: invalid pattern "[": unclosed or empty '['"#),
            (r#"{"policy":{"rules":[{"name":"a","allow":{"methods":["x["],"tools":["t"]}}]}}"#, r#"policy.rules[0].allow.methods[0]: invalid pattern "x[": unclosed or empty '['"#),
            (r#"{"policy":{"rules":[{"name":"a","deny":{"resources":["\\"]}}]}}"#, r#"policy.rules[0].deny.resources[0]: invalid pattern "\\": dangling escape"#),
            (r#"{"policy":{"rules":[{"name":"a","who":{"claims":{"team":["[!"]}}}]}}"#, r#"policy.rules[0].who.claims.team[0]: invalid pattern "[!": unclosed or empty '['"#),
            (r#"{"policy":{"rules":[{"name":"a","who":{"subjects":["a"],"api_keys":["b","c["]}}]}}"#, r#"policy.rules[0].who.api_keys[1]: invalid pattern "c[": unclosed or empty '['"#),
            (r#"{"policy":{"rules":[{"name":"a"},{"name":"a"}]}}"#, r#"policy.rules[1].name: duplicate rule name "a""#),
            (r#"{"policy":{"rules":[{"name":""}]}}"#, "policy.rules[0].name: a rule needs a non-empty name"),
            (r#"{"policy":{"rules":[{"name":"global"}]}}"#, r#"policy.rules[0].name: "global" is reserved for the top-level policy.allow and policy.deny"#),
            (r#"{"policy":{"rules":[{"name":"a","who":{}}]}}"#, "policy.rules[0].who: selects no caller: give subjects, roles, scopes, api_keys, claims or authenticated, or omit `who` to apply the rule to everyone"),
            (r#"{"policy":{"rules":[{"name":"a","who":{"roles":[],"claims":{"team":[]}}}]}}"#, "policy.rules[0].who: selects no caller: give subjects, roles, scopes, api_keys, claims or authenticated, or omit `who` to apply the rule to everyone"),
            (r#"{"policy":{"rules":[{"name":"a","who":{"roles":["r"],"authenticated":false}}]}}"#, "policy.rules[0].who.authenticated: only `true` selects callers; omit it otherwise"),
            (r#"{"policy":{"rules":[{"name":"a","who":{"role":["r"]}}]}}"#, "policy.rules[0].who.role: unknown field `role`, expected one of `subjects`, `roles`, `scopes`, `api_keys`, `claims`, `authenticated` at line 1 column 45"),
            (r#"{"policy":{"rules":[{"name":"a","allowed":{}}]}}"#, "policy.rules[0].allowed: unknown field `allowed`, expected one of `name`, `who`, `allow`, `deny`, `shadow` at line 1 column 41"),
            (r#"{"policy":{"rules":[{"who":{"roles":["r"]}}]}}"#, "policy.rules[0]: missing field `name` at line 1 column 43"),
            (r#"{"policy":{"shadow":"yes"}}"#, "policy.shadow: invalid type: string \"yes\", expected a boolean at line 1 column 25"),
            (r#"{"policy":{"rules":[{"name":"a","deny":{"annotations":{"destructiveHint":true}}}]}}"#, r#"policy.rules[0].deny.annotations: narrows the tools list beside it: give "tools" too (e.g. ["*"])"#),
            (r#"{"policy":{"allow":{"tools":["*"],"annotations":{"destructive":true}}}}"#, "policy.allow.annotations.destructive: unknown field `destructive`, expected one of `readOnlyHint`, `destructiveHint`, `idempotentHint`, `openWorldHint` at line 1 column 62"),
            (r#"{"policy":{"allow":{"tools":["*"],"annotations":{"readOnlyHint":1}}}}"#, "policy.allow.annotations.readOnlyHint: invalid type: integer `1`, expected a boolean at line 1 column 65"),
            (r#"{"tools":{"max_tools_per_upstream":0}}"#, "tools.max_tools_per_upstream: 0 is outside 1..=10000"),
            (r#"{"tools":{"pins":{"mcp":{"echo":"abc"}}}}"#, r#"tools.pins.mcp.echo: "abc" is neither a SHA-256 (64 hex digits) nor "trust_on_first_use""#),
            (&format!(r#"{{"tools":{{"pins":{{"*":{{"echo":"{}"}}}}}}}}"#, "g".repeat(64)), &format!(r#"tools.pins.*.echo: "{}" is neither a SHA-256 (64 hex digits) nor "trust_on_first_use""#, "g".repeat(64))),
            (r#"{"tools":{"pins":{"*":{"echo":"tofu"}}}}"#, r#"tools.pins.*.echo: "tofu" is neither a SHA-256 (64 hex digits) nor "trust_on_first_use""#),
            (r#"{"tools":{"pin":{}}}"#, "tools.pin: unknown field `pin`, expected one of `max_tools_per_upstream`, `pins`, `validate_mcp_param`, `fetch_timeout_ms` at line 1 column 15"),
            (r#"{"tools":{"fetch_timeout_ms":0}}"#, "tools.fetch_timeout_ms: 0 is outside 1..=60000"),
            (r#"{"policy":{"rule":[]}}"#, "policy.rule: unknown field `rule`, expected one of `shadow`, `allow`, `deny`, `rules`, `arguments` at line 1 column 17"),
        ];
        for (json, want) in cases {
            assert_eq!(err(json), want, "{json}");
        }
    }

    #[test]
    fn tools_section_compiles_pins_and_the_flag() {
        let hash = "AB".repeat(32);
        let c = Config::from_json(
            format!(
                r#"{{"tools":{{"pins":{{"mcp":{{"echo":"{hash}","*":"trust_on_first_use"}}}}}}}}"#
            )
            .as_bytes(),
        )
        .unwrap();
        assert!(c.learns_tools);
        assert_eq!(c.tools.max_tools_per_upstream, 256);
        assert_eq!(c.tools.fetch_timeout_ms, 2000);
        assert_eq!(c.tools.pin("mcp", "echo"), Some(Pin::Sha256([0xab; 32])));
        assert_eq!(c.tools.pin("mcp", "add"), Some(Pin::TrustOnFirstUse));
        assert_eq!(c.tools.pin("other", "echo"), None);
        // Annotation conditions alone also learn, and so does the Mcp-Param check (on by
        // default); none of them means no learning at all.
        let annotations = r#"{"policy":{"rules":[{"name":"r","allow":{"tools":["*"],"annotations":{"readOnlyHint":true}}}]}}"#;
        assert!(
            Config::from_json(annotations.as_bytes())
                .unwrap()
                .learns_tools
        );
        assert!(Config::from_json(b"{}").unwrap().learns_tools);
        let none = br#"{"tools":{"validate_mcp_param":false}}"#;
        assert!(!Config::from_json(none).unwrap().learns_tools);
    }

    #[test]
    fn compiles_a_full_config() {
        let c = Config::from_json(
            br#"{"endpoints":["/mcp","/messages/"],"other_paths":"deny","max_body_bytes":4096,
                "get_stream":"deny","delete_session":"allow",
                "policy":{"allow":{"tools":["echo","db_*"]},"deny":{"tools":["db_drop"],"methods":["sampling/*"]}}}"#,
        )
        .unwrap();
        assert!(c.endpoints.is_match("/messages"));
        assert_eq!((c.other_paths, c.get_stream), (Access::Deny, Access::Deny));
        assert_eq!(c.max_body_bytes, 4096);
        assert!(allows(&c, "tools/call", "db_query"));
        assert!(!allows(&c, "tools/call", "db_drop"));
        assert!(!allows(&c, "sampling/createMessage", "x"));
    }
}

#[cfg(test)]
mod doc_tests {
    use super::Config;

    /// The committed schema is the one the types generate (regenerate with
    /// `cargo run -q --bin mcp-guard -- schema > docs/mcp-guard.schema.json`).
    #[test]
    fn committed_schema_is_current() {
        let committed = include_str!("../docs/mcp-guard.schema.json");
        assert_eq!(
            committed.trim_end(),
            super::json_schema(),
            "docs/mcp-guard.schema.json is stale"
        );
    }

    /// Every JSON example in docs/CONFIG.md is a configuration the filter accepts (fragments
    /// such as `"auth": {...}` are wrapped in an object first), so the docs stay true.
    #[test]
    fn documented_examples_compile() {
        let doc = include_str!("../docs/CONFIG.md");
        let blocks: Vec<&str> = doc
            .split("```json")
            .skip(1)
            .filter_map(|b| b.split("```").next())
            .collect();
        assert!(blocks.len() >= 4, "examples found: {}", blocks.len());
        for block in blocks {
            let json = block.trim();
            let json = if json.starts_with('"') {
                format!("{{{json}}}")
            } else {
                json.to_owned()
            };
            if let Err(e) = Config::from_json(json.as_bytes()) {
                panic!("docs/CONFIG.md example refused: {e}\n{json}");
            }
        }
    }
}
