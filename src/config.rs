//! The filter's configuration: a strict JSON schema (DTO) compiled once into [`Config`].
//!
//! Everything is validated at load time; an error names the exact path of the offending
//! value (`policy.deny.tools[0]: invalid pattern "[": …`), so Envoy's log says why a
//! configuration was refused.

use std::collections::{BTreeMap, HashSet};
use std::fmt;

use serde::Deserialize;

use crate::arguments::{self, ArgumentsDto};
use crate::auth::{AuthDto, Authenticator, Provider};
use crate::contract::{Contracts, ContractsDto};
use crate::glob::{Glob, GlobError, PatternSet};
use crate::observe::{AuditDto, MetricsDto, Observe};
use crate::policy::{
    Lists, Policy, Rule, Selector, Who, GLOBAL_RULE, PROMPT_METHODS, RESOURCE_METHODS, TOOL_METHODS,
};
use crate::ratelimit::{RateLimits, RateLimitsDto};
use crate::tooldef::Hints;
use crate::toolstate::{Pin, ToolsConfig, DEFAULT_MAX_TOOLS, MAX_MAX_TOOLS};
use crate::upstream::{Upstream, UpstreamDto};

/// Default cap on an inspected request body: 1 MiB.
pub const DEFAULT_MAX_BODY_BYTES: u64 = 1 << 20;
/// Largest accepted `max_body_bytes`; Envoy must buffer the whole body.
pub const MAX_MAX_BODY_BYTES: u64 = 64 << 20;

/// What to do with a request or stream: let it through or refuse it.
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Access {
    #[default]
    Allow,
    Deny,
}

#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigDto {
    endpoints: Option<Vec<String>>,
    #[serde(default)]
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
    #[serde(default)]
    contracts: ContractsDto,
}

#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ToolsDto {
    max_tools_per_upstream: Option<u32>,
    /// Upstream → tool → 64 hex digits or `trust_on_first_use`.
    #[serde(default)]
    pins: BTreeMap<String, BTreeMap<String, String>>,
}

/// The pin value that pins the first definition seen.
pub const TRUST_ON_FIRST_USE: &str = "trust_on_first_use";

#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
struct HintsDto {
    #[serde(rename = "readOnlyHint")]
    read_only: Option<bool>,
    #[serde(rename = "destructiveHint")]
    destructive: Option<bool>,
    #[serde(rename = "idempotentHint")]
    idempotent: Option<bool>,
    #[serde(rename = "openWorldHint")]
    open_world: Option<bool>,
}

#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyDto {
    #[serde(default)]
    shadow: bool,
    allow: Option<ListsDto>,
    deny: Option<ListsDto>,
    #[serde(default)]
    rules: Vec<RuleDto>,
    #[serde(default)]
    arguments: ArgumentsDto,
}

#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleDto {
    name: String,
    who: Option<WhoDto>,
    #[serde(default)]
    allow: ListsDto,
    #[serde(default)]
    deny: ListsDto,
    #[serde(default)]
    shadow: bool,
}

#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct WhoDto {
    #[serde(default)]
    subjects: Vec<String>,
    #[serde(default)]
    roles: Vec<String>,
    #[serde(default)]
    scopes: Vec<String>,
    #[serde(default)]
    api_keys: Vec<String>,
    #[serde(default)]
    claims: BTreeMap<String, Vec<String>>,
    authenticated: Option<bool>,
}

#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListsDto {
    methods: Option<Vec<String>>,
    tools: Option<Vec<String>>,
    prompts: Option<Vec<String>>,
    resources: Option<Vec<String>>,
    annotations: Option<HintsDto>,
}

/// The compiled configuration the filter runs with.
#[derive(Debug, Clone)]
pub struct Config {
    /// Request paths (query removed) that are MCP endpoints.
    pub endpoints: PatternSet,
    /// Requests to any other path.
    pub other_paths: Access,
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
    /// Rules test annotations or tools are pinned: `tools/list` answers are learned from
    /// and calls look their tool up in shared data. Otherwise neither costs anything.
    pub learns_tools: bool,
    /// Token buckets approved requests take from; empty: no limits, no cost.
    pub rate_limits: RateLimits,
    /// Something keys on the route's cluster (learned tools, rate-limit keys, injected
    /// headers, the audit line): the glue reads it once, after routing.
    pub needs_upstream: bool,
    /// Tool contracts: arguments against inputSchemas, results scanned.
    pub contracts: Contracts,
}

/// A configuration error, with the path of the value at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub path: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

impl std::error::Error for ConfigError {}

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
        let mut de = serde_json::Deserializer::from_slice(text);
        let dto: ConfigDto = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let path = e.path().to_string();
            ConfigError {
                // An empty top-level key renders as an empty path.
                path: if path == "." || path.is_empty() {
                    "configuration".into()
                } else {
                    path
                },
                message: e.into_inner().to_string(),
            }
        })?;
        de.end().map_err(|e| ConfigError {
            path: "configuration".into(),
            message: e.to_string(),
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
        if let Some((i, p)) = endpoints
            .iter()
            .enumerate()
            .find(|(_, p)| !p.starts_with('/'))
        {
            return Err(ConfigError {
                path: format!("endpoints[{i}]"),
                message: format!("path {p:?} must start with '/'"),
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
        let learns_tools = policy.uses_annotations() || !tools.pins.is_empty();
        let upstream = self.upstream.compile()?;
        let rate_limits = self.rate_limits.compile("rate_limits")?;
        let contracts = self.contracts.compile("contracts")?;
        Ok(Config {
            needs_upstream: learns_tools
                || rate_limits.needs_upstream
                || upstream.injects()
                || observe.audit.is_some()
                || contracts.is_active(),
            learns_tools,
            policy,
            tools,
            endpoints: patterns("endpoints", &endpoints)?,
            other_paths: self.other_paths,
            max_body_bytes,
            get_stream: self.get_stream,
            delete_session: self.delete_session,
            auth: self.auth.map(|a| a.compile("auth")).transpose()?,
            upstream,
            observe,
            rate_limits,
            contracts,
        })
    }
}

impl ToolsDto {
    fn compile(self) -> Result<ToolsConfig, ConfigError> {
        let max = self.max_tools_per_upstream.unwrap_or(DEFAULT_MAX_TOOLS);
        if !(1..=MAX_MAX_TOOLS).contains(&max) {
            return Err(ConfigError {
                path: "tools.max_tools_per_upstream".into(),
                message: format!("{max} is outside 1..={MAX_MAX_TOOLS}"),
            });
        }
        let mut pins = std::collections::HashMap::new();
        for (upstream, tools) in self.pins {
            let mut compiled = std::collections::HashMap::new();
            for (tool, value) in tools {
                let pin = parse_pin(&value).ok_or_else(|| ConfigError {
                    path: format!("tools.pins.{upstream}.{tool}"),
                    message: format!(
                        "{value:?} is neither a SHA-256 (64 hex digits) nor {TRUST_ON_FIRST_USE:?}"
                    ),
                })?;
                compiled.insert(tool, pin);
            }
            pins.insert(upstream, compiled);
        }
        Ok(ToolsConfig {
            max_tools_per_upstream: max,
            pins,
        })
    }
}

/// A pin as written in the configuration.
fn parse_pin(value: &str) -> Option<Pin> {
    if value == TRUST_ON_FIRST_USE {
        return Some(Pin::TrustOnFirstUse);
    }
    if value.len() != 64 {
        return None;
    }
    let mut hash = [0u8; 32];
    for (byte, pair) in hash.iter_mut().zip(value.as_bytes().chunks(2)) {
        let text = std::str::from_utf8(pair).ok()?;
        *byte = u8::from_str_radix(text, 16).ok()?;
    }
    Some(Pin::Sha256(hash))
}

impl PolicyDto {
    fn compile(self) -> Result<Policy, ConfigError> {
        let mut rules = Vec::with_capacity(self.rules.len() + 1);
        // The top-level lists are the rule for everyone; without named rules it always
        // exists, so that an empty policy allows everything.
        if self.allow.is_some() || self.deny.is_some() || self.rules.is_empty() {
            rules.push(Rule {
                name: GLOBAL_RULE.into(),
                who: None,
                allow: self
                    .allow
                    .unwrap_or_default()
                    .compile("policy.allow", true)?,
                deny: self
                    .deny
                    .unwrap_or_default()
                    .compile("policy.deny", false)?,
                shadow: false,
            });
        }
        let mut names = HashSet::new();
        for (i, rule) in self.rules.into_iter().enumerate() {
            let path = format!("policy.rules[{i}]");
            // Names identify rules in reasons, logs and counters.
            let problem = if rule.name.is_empty() {
                Some("a rule needs a non-empty name".to_owned())
            } else if rule.name == GLOBAL_RULE {
                Some(format!(
                    "{GLOBAL_RULE:?} is reserved for the top-level policy.allow and policy.deny"
                ))
            } else if !names.insert(rule.name.clone()) {
                Some(format!("duplicate rule name {:?}", rule.name))
            } else {
                None
            };
            if let Some(message) = problem {
                return Err(ConfigError {
                    path: format!("{path}.name"),
                    message,
                });
            }
            rules.push(rule.compile(&path)?);
        }
        let arguments = arguments::compile(self.arguments, "policy.arguments")?;
        Ok(Policy::new(rules, self.shadow).with_arguments(arguments))
    }
}

impl RuleDto {
    fn compile(self, path: &str) -> Result<Rule, ConfigError> {
        Ok(Rule {
            who: self
                .who
                .map(|who| who.compile(&format!("{path}.who")))
                .transpose()?,
            allow: self
                .allow
                .with_implied_methods()
                .compile(&format!("{path}.allow"), false)?,
            deny: self.deny.compile(&format!("{path}.deny"), false)?,
            shadow: self.shadow,
            name: self.name,
        })
    }
}

impl WhoDto {
    pub(crate) fn compile(self, path: &str) -> Result<Who, ConfigError> {
        let authenticated = match self.authenticated {
            // `false` would read as "anonymous callers only", which it cannot mean.
            Some(false) => {
                return Err(ConfigError {
                    path: format!("{path}.authenticated"),
                    message: "only `true` selects callers; omit it otherwise".into(),
                })
            }
            Some(true) => true,
            None => false,
        };
        let claims = self
            .claims
            .into_iter()
            .map(|(name, list)| (format!("claims.{name}"), Selector::Claim(name), list));
        let lists = [
            ("subjects".to_owned(), Selector::Subject, self.subjects),
            ("roles".to_owned(), Selector::Role, self.roles),
            ("scopes".to_owned(), Selector::Scope, self.scopes),
            ("api_keys".to_owned(), Selector::ApiKey, self.api_keys),
        ]
        .into_iter()
        .chain(claims);
        let mut patterns = Vec::new();
        for (field, selector, list) in lists {
            for (i, pattern) in list.iter().enumerate() {
                let glob =
                    Glob::new(pattern).map_err(|e| glob_error(&format!("{path}.{field}"), i, e))?;
                patterns.push((selector.clone(), glob));
            }
        }
        // An empty `who` most likely lost its selectors by mistake; everyone is "no `who`".
        if patterns.is_empty() && !authenticated {
            return Err(ConfigError {
                path: path.into(),
                message: "selects no caller: give subjects, roles, scopes, api_keys, claims or \
                          authenticated, or omit `who` to apply the rule to everyone"
                    .into(),
            });
        }
        Ok(Who {
            patterns,
            authenticated,
        })
    }
}

impl ListsDto {
    /// A named rule's `allow`: each target list given also allows the methods that use it,
    /// so `"tools": ["db_*"]` alone is enough to list and call those tools.
    fn with_implied_methods(mut self) -> ListsDto {
        let implied: Vec<String> = [
            (self.tools.is_some(), TOOL_METHODS),
            (self.prompts.is_some(), PROMPT_METHODS),
            (self.resources.is_some(), RESOURCE_METHODS),
        ]
        .into_iter()
        .filter(|(given, _)| *given)
        .flat_map(|(_, methods)| methods.iter().map(|m| (*m).to_owned()))
        .collect();
        // Appended after the explicit methods, so error indexes still point into those.
        if !implied.is_empty() {
            self.methods.get_or_insert_with(Vec::new).extend(implied);
        }
        self
    }

    /// Compiles each list; an absent list matches everything if `absent_matches` (the
    /// global rule's `allow`), else nothing.
    fn compile(self, path: &str, absent_matches: bool) -> Result<Lists, ConfigError> {
        let list = |name: &str, v: Option<Vec<String>>| match v {
            Some(v) => patterns(&format!("{path}.{name}"), &v),
            None if absent_matches => Ok(PatternSet::everything()),
            None => Ok(PatternSet::default()),
        };
        if self.annotations.is_some() && self.tools.is_none() {
            return Err(ConfigError {
                path: format!("{path}.annotations"),
                message: "narrows the tools list beside it: give \"tools\" too (e.g. [\"*\"])"
                    .into(),
            });
        }
        Ok(Lists {
            annotations: self.annotations.map(|a| Hints {
                read_only: a.read_only,
                destructive: a.destructive,
                idempotent: a.idempotent,
                open_world: a.open_world,
            }),
            methods: list("methods", self.methods)?,
            tools: list("tools", self.tools)?,
            prompts: list("prompts", self.prompts)?,
            resources: list("resources", self.resources)?,
        })
    }
}

pub(crate) fn patterns(path: &str, list: &[String]) -> Result<PatternSet, ConfigError> {
    PatternSet::compile(list).map_err(|(i, e)| glob_error(path, i, e))
}

/// The error for the bad pattern at `path[i]`.
pub(crate) fn glob_error(path: &str, i: usize, e: GlobError) -> ConfigError {
    ConfigError {
        path: format!("{path}[{i}]"),
        message: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(json: &str) -> String {
        Config::from_json(json.as_bytes()).unwrap_err().to_string()
    }

    /// Whether an anonymous `tools/call` of `tool` passes.
    fn allows(c: &Config, method: &str, tool: &str) -> bool {
        let body = format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"{method}","params":{{"name":"{tool}"}}}}"#
        );
        let parsed = crate::jsonrpc::parse_body(body.as_bytes()).unwrap();
        let rules = c.policy.applicable(&crate::auth::Identity::anonymous());
        !matches!(
            rules.decide(
                &parsed.messages()[0],
                &crate::tooldef::Hints::UNKNOWN.effective()
            ),
            crate::policy::Decision::Denied { .. }
        )
    }

    #[test]
    fn defaults_apply_to_empty_config() {
        for empty in ["", "  \n", "{}"] {
            let c = Config::from_json(empty.as_bytes()).unwrap();
            assert!(c.endpoints.is_match("/mcp"));
            assert!(!c.endpoints.is_match("/mcp/x"));
            assert_eq!(c.max_body_bytes, 1 << 20);
            assert_eq!(
                (c.other_paths, c.get_stream, c.delete_session),
                (Access::Allow, Access::Allow, Access::Allow)
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
            (r#"{"other_paths":"maybe"}"#, "other_paths: unknown variant `maybe`, expected `allow` or `deny` at line 1 column 22"),
            (r#"{"bogus":1}"#, "bogus: unknown field `bogus`, expected one of `endpoints`, `other_paths`, `max_body_bytes`, `get_stream`, `delete_session`, `policy`, `auth`, `upstream`, `metrics`, `audit`, `tools`, `rate_limits`, `contracts` at line 1 column 8"),
            (r#"{"get_stream":"allow","get_stream":"deny"}"#, "configuration: duplicate field `get_stream` at line 1 column 34"),
            (r#"{} {}"#, "configuration: trailing characters at line 1 column 4"),
            // Found by the config fuzz target: an empty key once gave an empty path.
            (r#"{"":1}"#, "configuration: unknown field ``, expected one of `endpoints`, `other_paths`, `max_body_bytes`, `get_stream`, `delete_session`, `policy`, `auth`, `upstream`, `metrics`, `audit`, `tools`, `rate_limits`, `contracts` at line 1 column 3"),
            (r#"not json"#, "configuration: expected ident at line 1 column 2"),
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
            (r#"{"tools":{"pin":{}}}"#, "tools.pin: unknown field `pin`, expected `max_tools_per_upstream` or `pins` at line 1 column 15"),
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
        assert_eq!(c.tools.pin("mcp", "echo"), Some(Pin::Sha256([0xab; 32])));
        assert_eq!(c.tools.pin("mcp", "add"), Some(Pin::TrustOnFirstUse));
        assert_eq!(c.tools.pin("other", "echo"), None);
        // Annotation conditions alone also learn; neither means no learning at all.
        let annotations = r#"{"policy":{"rules":[{"name":"r","allow":{"tools":["*"],"annotations":{"readOnlyHint":true}}}]}}"#;
        assert!(
            Config::from_json(annotations.as_bytes())
                .unwrap()
                .learns_tools
        );
        assert!(!Config::from_json(b"{}").unwrap().learns_tools);
    }

    #[test]
    fn compiles_a_full_config() {
        let c = Config::from_json(
            br#"{"endpoints":["/mcp","/messages/"],"other_paths":"deny","max_body_bytes":4096,
                "get_stream":"deny","delete_session":"allow",
                "policy":{"allow":{"tools":["echo","db_*"]},"deny":{"tools":["db_drop"],"methods":["sampling/*"]}}}"#,
        )
        .unwrap();
        assert!(c.endpoints.is_match("/messages/"));
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
