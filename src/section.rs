//! What every configuration section shares, so that each stage can compile its own
//! section without importing the whole configuration: the error type (with the path of the
//! value at fault) and the allow/deny choice. It depends on nothing else in the crate.

use std::fmt;

use serde::Deserialize;

/// What to do with a request or stream: let it through or refuse it.
/// (Serialize: the schema shows the defaults.)
#[cfg_attr(
    not(target_arch = "wasm32"),
    derive(schemars::JsonSchema, serde::Serialize)
)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Access {
    #[default]
    Allow,
    Deny,
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
