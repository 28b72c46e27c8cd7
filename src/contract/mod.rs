//! Tool contracts (`contracts`): a call's arguments checked against the inputSchema its
//! upstream advertised, and a call's answer scanned for secrets and personal data.
//!
//! The pure core of both: [`Contracts`] is the compiled section and decides, per upstream
//! and tool, the argument mode and the results rule; [`Contracts::check_call`] judges one
//! `tools/call` given what is known of its schema; [`SchemaCache`] keeps compiled schemas
//! per worker, by definition hash; `scan` rewrites answers. Nothing here talks to the host,
//! fetches a schema, or logs: the glue does (see docs/notes/contracts-integration.md).
//! Reasons and counts never carry argument or result values.

pub mod calls;
pub mod config;
pub mod detect;
pub mod json;
pub mod scan;
pub mod schema;
pub mod validate;

use std::collections::VecDeque;

use serde::Deserialize;

use crate::fasthash::FastMap;
use crate::policy::glob::PatternSet;
use crate::report::reject::{push_json_string, Code, Rejection};

pub use config::ContractsDto;
pub use scan::{carries_marker, scan_event, Action, ResultRule, Scan, MARKER_PREFIX};
pub use schema::{Schema, SchemaError};
pub use validate::Violation;

/// How a tool's arguments are held to its inputSchema.
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// A violation refuses the call (400, JSON-RPC -32602).
    Enforce,
    /// A violation is logged and counted; the call goes on.
    Shadow,
    #[default]
    Off,
}

/// What happens to calls of a tool whose schema cannot be compiled or is not known.
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Uncompilable {
    #[default]
    Refuse,
    Pass,
}

/// Which calls a rule covers.
#[derive(Debug, Clone)]
pub struct Scope {
    pub upstreams: PatternSet,
    pub tools: PatternSet,
}

impl Scope {
    fn covers(&self, upstream: &str, tool: &str) -> bool {
        self.upstreams.is_match(upstream) && self.tools.is_match(tool)
    }
}

/// The compiled `contracts` section.
#[derive(Debug, Clone, Default)]
pub struct Contracts {
    arguments: Vec<(Scope, Mode)>,
    pub uncompilable: Uncompilable,
    /// `format` asserts (else it is an annotation).
    pub formats: bool,
    /// Compiled schemas a worker keeps ([`SchemaCache::new`]).
    pub max_schemas: usize,
    results: Vec<(Scope, ResultRule)>,
}

/// What is known of a called tool's inputSchema.
#[derive(Debug, Clone, Copy)]
pub enum Known<'s> {
    Schema(&'s Schema),
    Uncompilable(&'s SchemaError),
    /// Never seen (not listed through the gateway, or evicted and not fetched again).
    Unknown,
}

/// The verdict on one call's arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallCheck {
    Pass,
    /// The call goes on, but log `reason` and count `outcome` (`shadow`: a violation in
    /// shadow mode; `uncompilable`: no usable schema, passed by configuration).
    Report {
        outcome: &'static str,
        reason: String,
    },
    Refuse(Rejection),
}

impl Contracts {
    /// The mode of the first `arguments` rule covering the call; `Off` if none does.
    pub fn argument_mode(&self, upstream: &str, tool: &str) -> Mode {
        self.arguments
            .iter()
            .find(|(scope, _)| scope.covers(upstream, tool))
            .map_or(Mode::Off, |(_, mode)| *mode)
    }

    /// Whether any call may be validated: the glue learns inputSchemas only then.
    pub fn validates_arguments(&self) -> bool {
        self.arguments.iter().any(|(_, mode)| *mode != Mode::Off)
    }

    /// The first `results` rule covering the call's answer; `None`: not scanned.
    pub fn result_rule(&self, upstream: &str, tool: &str) -> Option<&ResultRule> {
        self.results
            .iter()
            .find(|(scope, _)| scope.covers(upstream, tool))
            .map(|(_, rule)| rule)
    }

    /// Whether some `tools/call` answers may be scanned: their calls then carry their
    /// request id and go upstream without `Accept-Encoding`.
    pub fn scans_results(&self) -> bool {
        !self.results.is_empty()
    }

    /// Whether the section does anything: calls then need their route's cluster.
    pub fn is_active(&self) -> bool {
        self.validates_arguments() || self.scans_results()
    }

    /// Whether some answers are redacted, so calls are checked for written-back markers.
    pub fn guards_write_back(&self) -> bool {
        self.results
            .iter()
            .any(|(_, rule)| rule.action == Action::Redact)
    }

    /// Judges a `tools/call`: the write-back guard first, then the arguments (`None`: not
    /// given, validated as `{}`) against the tool's schema under the call's mode.
    pub fn check_call(
        &self,
        upstream: &str,
        tool: &str,
        arguments: Option<&[u8]>,
        schema: Known<'_>,
    ) -> CallCheck {
        if self.guards_write_back() && arguments.is_some_and(carries_marker) {
            return CallCheck::Refuse(Rejection::new(
                Code::InvalidParams,
                format!(
                    "the arguments of tool {tool:?} contain a redaction marker ({MARKER_PREFIX}…]): \
                     a redacted result cannot be sent back as data"
                ),
            ));
        }
        let mode = self.argument_mode(upstream, tool);
        if mode == Mode::Off {
            return CallCheck::Pass;
        }
        let violation = match schema {
            Known::Schema(schema) => match schema.validate_arguments(arguments) {
                Ok(()) => return CallCheck::Pass,
                Err(v) => v,
            },
            Known::Uncompilable(e) => {
                return self.unusable(mode, format!("the inputSchema of tool {tool:?} cannot be used: {e}"), Code::BadGateway)
            }
            Known::Unknown => {
                return self.unusable(
                    mode,
                    format!("the inputSchema of tool {tool:?} is not known: list the tools through the gateway first"),
                    Code::Forbidden,
                )
            }
        };
        let reason = format!(
            "the arguments of tool {tool:?} do not match its inputSchema: {:?} fails {:?}",
            violation.pointer, violation.keyword
        );
        if mode == Mode::Shadow {
            return CallCheck::Report {
                outcome: "shadow",
                reason,
            };
        }
        let (mut pointer, mut keyword) = (String::new(), String::new());
        push_json_string(&mut pointer, &violation.pointer);
        push_json_string(&mut keyword, violation.keyword);
        CallCheck::Refuse(
            Rejection::new(Code::InvalidParams, reason)
                .with_data("pointer", pointer)
                .with_data("keyword", keyword),
        )
    }

    fn unusable(&self, mode: Mode, reason: String, code: Code) -> CallCheck {
        match (mode, self.uncompilable) {
            (Mode::Enforce, Uncompilable::Refuse) => {
                CallCheck::Refuse(Rejection::new(code, reason))
            }
            _ => CallCheck::Report {
                outcome: "uncompilable",
                reason,
            },
        }
    }
}

impl Schema {
    /// Validates a call's `arguments` bytes (`None`: omitted, validated as `{}`). Arguments
    /// that are not one unambiguous object (a repeated key) are a violation too.
    pub fn validate_arguments(&self, arguments: Option<&[u8]>) -> Result<(), Violation> {
        let value = match arguments {
            Some(bytes) => json::read_value(bytes).map_err(|e| Violation {
                pointer: e.pointer,
                keyword: if e.reason == "repeated key" {
                    "duplicateKey"
                } else {
                    "json"
                },
            })?,
            None => serde_json::Value::Object(serde_json::Map::new()),
        };
        // MCP tool arguments are an object whatever the schema says (SEP-2106 keeps the
        // `type: "object"` root).
        if !value.is_object() {
            return Err(Violation {
                pointer: String::new(),
                keyword: "type",
            });
        }
        self.validate(&value)
    }
}

fn no_input_schema() -> SchemaError {
    SchemaError {
        at: String::new(),
        message: "the tool has no inputSchema".into(),
    }
}

/// Upper bound of the memory all cached schemas may hold together.
pub const MAX_CACHE_BYTES: usize = 16 << 20;

/// Compiled schemas by tool definition hash (SHA-256 of the canonical definition, as
/// pins use), per worker VM, bounded in entries and bytes; the oldest go first.
#[derive(Debug, Default)]
pub struct SchemaCache {
    entries: FastMap<[u8; 32], (Result<Schema, SchemaError>, usize)>,
    order: VecDeque<[u8; 32]>,
    bytes: usize,
    max_entries: usize,
}

impl SchemaCache {
    pub fn new(max_entries: usize) -> SchemaCache {
        SchemaCache {
            max_entries: max_entries.max(1),
            ..SchemaCache::default()
        }
    }

    /// Compiles the `inputSchema` of a `tools/list` element under `hash`, unless it is
    /// cached already. Returns the compile error only the first time, to be logged once.
    pub fn learn(&mut self, hash: [u8; 32], element: &[u8], formats: bool) -> Option<&SchemaError> {
        if self.entries.contains_key(&hash) {
            return None;
        }
        let compiled = match json::read_value(element) {
            Ok(tool) => match tool.get("inputSchema") {
                Some(schema) => Schema::compile(schema, formats),
                None => Err(no_input_schema()),
            },
            Err(e) => Err(SchemaError {
                at: String::new(),
                message: format!("the tool definition is not valid JSON ({})", e.reason),
            }),
        };
        self.insert(hash, compiled)
    }

    /// Compiles an `inputSchema` given as its own text (`None`: the tool has none), as a
    /// worker reads it from shared data, under `hash`; like [`SchemaCache::learn`].
    pub fn learn_schema(
        &mut self,
        hash: [u8; 32],
        input_schema: Option<&[u8]>,
        formats: bool,
    ) -> Option<&SchemaError> {
        if self.entries.contains_key(&hash) {
            return None;
        }
        let compiled = match input_schema.map(json::read_value) {
            Some(Ok(schema)) => Schema::compile(&schema, formats),
            Some(Err(e)) => Err(SchemaError {
                at: String::new(),
                message: format!("the inputSchema is not valid JSON ({})", e.reason),
            }),
            None => Err(no_input_schema()),
        };
        self.insert(hash, compiled)
    }

    fn insert(
        &mut self,
        hash: [u8; 32],
        compiled: Result<Schema, SchemaError>,
    ) -> Option<&SchemaError> {
        let weight = compiled.as_ref().map_or(256, Schema::weight);
        while (self.entries.len() >= self.max_entries || self.bytes + weight > MAX_CACHE_BYTES)
            && !self.order.is_empty()
        {
            if let Some(old) = self.order.pop_front() {
                if let Some((_, w)) = self.entries.remove(&old) {
                    self.bytes -= w;
                }
            }
        }
        self.bytes += weight;
        self.order.push_back(hash);
        let (entry, _) = self.entries.entry(hash).or_insert((compiled, weight));
        entry.as_ref().err()
    }

    /// What is known of the schema with this definition hash.
    pub fn get(&self, hash: &[u8; 32]) -> Known<'_> {
        match self.entries.get(hash) {
            Some((Ok(schema), _)) => Known::Schema(schema),
            Some((Err(e), _)) => Known::Uncompilable(e),
            None => Known::Unknown,
        }
    }

    /// Schemas held, and their approximate bytes (for a gauge).
    pub fn usage(&self) -> (usize, usize) {
        (self.entries.len(), self.bytes)
    }
}

#[cfg(test)]
mod tests;
