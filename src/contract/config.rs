//! The `contracts` section: its DTO and the compile step that checks it.
//!
//! Decides what a configuration may say about tool contracts and refuses the rest at load
//! time, with the path of the value at fault
//! (`contracts.results[0].custom[0].pattern: invalid regex …`). Rules are scoped by
//! upstream (Envoy cluster) and tool patterns; the first rule that matches a call applies.

use serde::Deserialize;

use crate::policy::glob::patterns;
use crate::policy::glob::PatternSet;
use crate::section::ConfigError;

use super::detect::{Builtin, Detector};
use super::scan::{Action, ResultRule};
use super::{Contracts, Mode, Scope, Uncompilable};

/// Default bound on compiled schemas kept per worker VM.
pub const DEFAULT_MAX_SCHEMAS: u32 = 256;
/// Largest accepted `max_schemas`.
pub const MAX_MAX_SCHEMAS: u32 = 10_000;
/// Largest accepted `max_bytes` of a results rule (Envoy buffers the answer).
pub const MAX_RESULT_BYTES: u64 = 64 << 20;

/// `contracts`, as configured.
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContractsDto {
    /// Which calls are validated against their tool's inputSchema, and how.
    #[serde(default)]
    arguments: Vec<ArgumentsRuleDto>,
    /// A tool whose inputSchema cannot be compiled (or was never seen): refuse its calls
    /// or pass them unvalidated; logged once per definition.
    #[serde(default)]
    uncompilable: Uncompilable,
    /// `format` keywords: annotations only (default), or asserted for date-time, date,
    /// email, uuid, ipv4, ipv6 and uri.
    #[serde(default)]
    formats: Formats,
    /// Compiled schemas kept per worker VM (1 to 10000, default 256).
    max_schemas: Option<u32>,
    /// Which answers are scanned, with which detectors, and what happens to matches.
    #[serde(default)]
    results: Vec<ResultsRuleDto>,
}

#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Formats {
    #[default]
    Annotate,
    Assert,
}

#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ArgumentsRuleDto {
    /// Upstream (Envoy cluster) patterns; default every upstream.
    upstreams: Option<Vec<String>>,
    /// Tool name patterns; default every tool.
    tools: Option<Vec<String>>,
    mode: Mode,
}

#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ResultsRuleDto {
    upstreams: Option<Vec<String>>,
    tools: Option<Vec<String>>,
    /// Built-in detector names, or the groups `secrets` and `pii`.
    #[serde(default)]
    detectors: Vec<String>,
    #[serde(default)]
    custom: Vec<CustomDto>,
    action: ActionDto,
    /// Answers (one JSON-RPC message) larger than this are blocked.
    max_bytes: Option<u64>,
}

#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CustomDto {
    /// Lower-case letters, digits and `_`; shown in markers and metrics.
    name: String,
    /// A regex-lite expression; it must not match the empty string.
    pattern: String,
}

#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
enum ActionDto {
    Redact,
    Block,
    Log,
}

fn error(path: String, message: impl Into<String>) -> ConfigError {
    ConfigError {
        path,
        message: message.into(),
    }
}

fn scope(
    path: &str,
    upstreams: Option<Vec<String>>,
    tools: Option<Vec<String>>,
) -> Result<Scope, ConfigError> {
    let set = |name: &str, list: Option<Vec<String>>| match list {
        Some(list) => patterns(&format!("{path}.{name}"), &list),
        None => Ok(PatternSet::everything()),
    };
    Ok(Scope {
        upstreams: set("upstreams", upstreams)?,
        tools: set("tools", tools)?,
    })
}

impl ContractsDto {
    /// Compiles the section; `path` is where it sits (`contracts`).
    pub fn compile(self, path: &str) -> Result<Contracts, ConfigError> {
        let max_schemas = self.max_schemas.unwrap_or(DEFAULT_MAX_SCHEMAS);
        if !(1..=MAX_MAX_SCHEMAS).contains(&max_schemas) {
            return Err(error(
                format!("{path}.max_schemas"),
                format!("{max_schemas} is outside 1..={MAX_MAX_SCHEMAS}"),
            ));
        }
        let arguments = self
            .arguments
            .into_iter()
            .enumerate()
            .map(|(i, rule)| {
                Ok((
                    scope(
                        &format!("{path}.arguments[{i}]"),
                        rule.upstreams,
                        rule.tools,
                    )?,
                    rule.mode,
                ))
            })
            .collect::<Result<_, ConfigError>>()?;
        let results = self
            .results
            .into_iter()
            .enumerate()
            .map(|(i, rule)| rule.compile(&format!("{path}.results[{i}]")))
            .collect::<Result<_, ConfigError>>()?;
        Ok(Contracts {
            arguments,
            uncompilable: self.uncompilable,
            formats: self.formats == Formats::Assert,
            max_schemas: max_schemas as usize,
            results,
        })
    }
}

impl ResultsRuleDto {
    fn compile(self, path: &str) -> Result<(Scope, ResultRule), ConfigError> {
        let scope = scope(path, self.upstreams, self.tools)?;
        let mut detectors: Vec<Detector> = Vec::new();
        for (i, name) in self.detectors.iter().enumerate() {
            let named: Vec<Builtin> = match name.as_str() {
                "secrets" => Builtin::SECRETS.to_vec(),
                "pii" => Builtin::PII.to_vec(),
                other => match Builtin::from_name(other) {
                    Some(b) => vec![b],
                    None => {
                        let known: Vec<&str> = Builtin::all().map(Builtin::name).collect();
                        return Err(error(
                            format!("{path}.detectors[{i}]"),
                            format!(
                                "unknown detector {other:?}; known: secrets, pii, {}",
                                known.join(", ")
                            ),
                        ));
                    }
                },
            };
            for b in named {
                if !detectors
                    .iter()
                    .any(|d| matches!(d, Detector::Builtin(x) if *x == b))
                {
                    detectors.push(Detector::Builtin(b));
                }
            }
        }
        for (i, custom) in self.custom.into_iter().enumerate() {
            let at = format!("{path}.custom[{i}]");
            let valid = !custom.name.is_empty()
                && custom.name.len() <= 32
                && custom
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
            if !valid
                || detectors.iter().any(|d| d.name() == custom.name)
                || Builtin::from_name(&custom.name).is_some()
            {
                return Err(error(
                    format!("{at}.name"),
                    format!("{:?} must be 1 to 32 lower-case letters, digits or '_', and not a built-in or repeated name", custom.name),
                ));
            }
            let regex = regex_lite::RegexBuilder::new(&custom.pattern)
                .size_limit(1 << 20)
                .build()
                .map_err(|e| {
                    error(
                        format!("{at}.pattern"),
                        format!("invalid regex {:?}: {e}", custom.pattern),
                    )
                })?;
            if regex.is_match("") {
                return Err(error(
                    format!("{at}.pattern"),
                    format!("{:?} matches the empty string", custom.pattern),
                ));
            }
            detectors.push(Detector::Custom {
                name: custom.name,
                regex,
            });
        }
        if let Some(max) = self.max_bytes {
            if !(1..=MAX_RESULT_BYTES).contains(&max) {
                return Err(error(
                    format!("{path}.max_bytes"),
                    format!("{max} is outside 1..={MAX_RESULT_BYTES}"),
                ));
            }
        }
        if detectors.is_empty() && self.max_bytes.is_none() {
            return Err(error(
                path.to_owned(),
                "give detectors, custom or max_bytes: this rule checks nothing",
            ));
        }
        let action = match self.action {
            ActionDto::Redact => Action::Redact,
            ActionDto::Block => Action::Block,
            ActionDto::Log => Action::Log,
        };
        Ok((
            scope,
            ResultRule {
                detectors,
                action,
                max_bytes: self.max_bytes,
            },
        ))
    }
}
