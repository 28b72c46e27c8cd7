//! The filter's configuration: a strict JSON schema (DTO) compiled once into [`Config`].
//!
//! Everything is validated at load time; an error names the exact path of the offending
//! value (`policy.deny.tools[0]: invalid pattern "[": …`), so Envoy's log says why a
//! configuration was refused.

use std::fmt;

use serde::Deserialize;

use crate::auth::{AuthDto, Authenticator, Provider};
use crate::glob::PatternSet;
use crate::policy::{Lists, Policy};
use crate::upstream::{Upstream, UpstreamDto};

/// Default cap on an inspected request body: 1 MiB.
pub const DEFAULT_MAX_BODY_BYTES: u64 = 1 << 20;
/// Largest accepted `max_body_bytes`; Envoy must buffer the whole body.
pub const MAX_MAX_BODY_BYTES: u64 = 64 << 20;

/// What to do with a request or stream: let it through or refuse it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Access {
    #[default]
    Allow,
    Deny,
}

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
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyDto {
    allow: Option<ListsDto>,
    deny: Option<ListsDto>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListsDto {
    methods: Option<Vec<String>>,
    tools: Option<Vec<String>>,
    prompts: Option<Vec<String>>,
    resources: Option<Vec<String>>,
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
                path: if path == "." {
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
        let allow = self.policy.allow.unwrap_or_default();
        let deny = self.policy.deny.unwrap_or_default();
        Ok(Config {
            endpoints: patterns("endpoints", &endpoints)?,
            other_paths: self.other_paths,
            max_body_bytes,
            get_stream: self.get_stream,
            delete_session: self.delete_session,
            policy: Policy {
                allow: allow.compile("policy.allow", true)?,
                deny: deny.compile("policy.deny", false)?,
            },
            auth: self.auth.map(|a| a.compile("auth")).transpose()?,
            upstream: self.upstream.compile()?,
        })
    }
}

impl ListsDto {
    /// Compiles each list; an absent list matches everything in `allow` and nothing in `deny`.
    fn compile(self, path: &str, absent_matches: bool) -> Result<Lists, ConfigError> {
        let list = |name: &str, v: Option<Vec<String>>| match v {
            Some(v) => patterns(&format!("{path}.{name}"), &v),
            None if absent_matches => Ok(PatternSet::everything()),
            None => Ok(PatternSet::default()),
        };
        Ok(Lists {
            methods: list("methods", self.methods)?,
            tools: list("tools", self.tools)?,
            prompts: list("prompts", self.prompts)?,
            resources: list("resources", self.resources)?,
        })
    }
}

fn patterns(path: &str, list: &[String]) -> Result<PatternSet, ConfigError> {
    PatternSet::compile(list).map_err(|(i, e)| ConfigError {
        path: format!("{path}[{i}]"),
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(json: &str) -> String {
        Config::from_json(json.as_bytes()).unwrap_err().to_string()
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
            assert!(c.policy.allow.tools.is_match("anything"));
            assert!(c.policy.deny.tools.is_empty());
        }
    }

    #[test]
    fn errors_name_the_path() {
        let cases = [
            (r#"{"policy":{"deny":{"tools":["["]}}}"#, r#"policy.deny.tools[0]: invalid pattern "[": unclosed or empty '['"#),
            (r#"{"policy":{"allow":{"methods":["a","b[!"]}}}"#, r#"policy.allow.methods[1]: invalid pattern "b[!": unclosed or empty '['"#),
            (r#"{"policy":{"allow":{"tool":[]}}}"#, "policy.allow.tool: unknown field `tool`, expected one of `methods`, `tools`, `prompts`, `resources` at line 1 column 26"),
            (r#"{"max_body_bytes":0}"#, "max_body_bytes: 0 is outside 1..=67108864"),
            (r#"{"max_body_bytes":-1}"#, "max_body_bytes: invalid value: integer `-1`, expected u64 at line 1 column 20"),
            (r#"{"endpoints":[]}"#, "endpoints: at least one MCP endpoint path is required"),
            (r#"{"endpoints":["/mcp","mcp"]}"#, "endpoints[1]: path \"mcp\" must start with '/'"),
            (r#"{"other_paths":"maybe"}"#, "other_paths: unknown variant `maybe`, expected `allow` or `deny` at line 1 column 22"),
            (r#"{"bogus":1}"#, "bogus: unknown field `bogus`, expected one of `endpoints`, `other_paths`, `max_body_bytes`, `get_stream`, `delete_session`, `policy`, `auth`, `upstream` at line 1 column 8"),
            (r#"{"get_stream":"allow","get_stream":"deny"}"#, "configuration: duplicate field `get_stream` at line 1 column 34"),
            (r#"{} {}"#, "configuration: trailing characters at line 1 column 4"),
            (r#"not json"#, "configuration: expected ident at line 1 column 2"),
        ];
        for (json, want) in cases {
            assert_eq!(err(json), want, "{json}");
        }
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
        assert!(c.policy.allow.tools.is_match("db_query"));
        assert!(c.policy.deny.tools.is_match("db_drop"));
        assert!(c.policy.allow.methods.is_match("tools/call"));
    }
}
