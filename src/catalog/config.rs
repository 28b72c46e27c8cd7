//! The `tools` section: pins per upstream and tool, and the bound on learned tools.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::fetch::{DEFAULT_FETCH_TIMEOUT_MS, MAX_FETCH_TIMEOUT_MS};
use super::toolstate::{Pin, ToolsConfig, DEFAULT_MAX_TOOLS, MAX_MAX_TOOLS};
use crate::section::ConfigError;

#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ToolsDto {
    max_tools_per_upstream: Option<u32>,
    /// Upstream → tool → 64 hex digits or `trust_on_first_use`.
    #[serde(default)]
    pins: BTreeMap<String, BTreeMap<String, String>>,
    /// Check `Mcp-Param-*` headers against the arguments of calls to tools whose
    /// `inputSchema` was learned (default true).
    validate_mcp_param: Option<bool>,
    /// How long a cold gateway waits for the upstream's `tools/list` (all its pages) when
    /// a call needs a tool it has not seen (default 2000).
    fetch_timeout_ms: Option<u64>,
}

/// The pin value that pins the first definition seen.
const TRUST_ON_FIRST_USE: &str = "trust_on_first_use";

impl ToolsDto {
    pub(crate) fn compile(self) -> Result<ToolsConfig, ConfigError> {
        let max = self.max_tools_per_upstream.unwrap_or(DEFAULT_MAX_TOOLS);
        if !(1..=MAX_MAX_TOOLS).contains(&max) {
            return Err(ConfigError {
                path: "tools.max_tools_per_upstream".into(),
                message: format!("{max} is outside 1..={MAX_MAX_TOOLS}"),
            });
        }
        let fetch_timeout_ms = self.fetch_timeout_ms.unwrap_or(DEFAULT_FETCH_TIMEOUT_MS);
        if !(1..=MAX_FETCH_TIMEOUT_MS).contains(&fetch_timeout_ms) {
            return Err(ConfigError {
                path: "tools.fetch_timeout_ms".into(),
                message: format!("{fetch_timeout_ms} is outside 1..={MAX_FETCH_TIMEOUT_MS}"),
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
            validate_mcp_param: self.validate_mcp_param.unwrap_or(true),
            fetch_timeout_ms,
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
