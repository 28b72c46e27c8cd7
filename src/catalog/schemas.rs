//! Tools' `inputSchema`s, shared by every Envoy worker, and what the calls of a tool are
//! checked against: its `Mcp-Param-*` headers (SEP-2243) and its argument contract.
//!
//! When a `tools/list` answer passes, each definition's canonical `inputSchema` text goes
//! to shared data under its definition hash (the hash pins compare, `Record::live`):
//! `mcp-guard/schema/<hex>`, written once, since a hash always names the same text. A
//! worker that never saw the list finds the tool's hash in its learned record, reads the
//! text and compiles it once per hash ([`Compiled`]). Entries are never deleted, so each
//! upstream may create at most [`SCHEMAS_PER_TOOL`] × `max_tools_per_upstream` of them,
//! counted in `mcp-guard/schemas/<n>:<upstream>`; a schema beyond the bound stays unknown
//! to the workers that did not see it.

use std::collections::HashMap;

use crate::catalog::tooldef::{hex, ToolDef};
use crate::contract::{CallCheck, Contracts, Known, SchemaCache};
use crate::protocol::mcp_param::{ParamHeaders, SchemaError as ParamError};
use crate::state::{add_to_count, insert_new, SharedStore, StoreError};

/// Shared schemas an upstream may create per tool it may have (room for redefinitions).
pub const SCHEMAS_PER_TOOL: u32 = 2;
/// Compiled `Mcp-Param` header sets a worker keeps; past it, it starts over.
const MAX_PARAM_SETS: usize = 1024;

/// What the configuration checks calls against, so what a worker compiles of a schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checks {
    /// `Mcp-Param-*` headers against the arguments (`tools.validate_mcp_param`).
    pub params: bool,
    /// Arguments against the schema (some `contracts.arguments` rule is not `off`).
    pub arguments: bool,
    /// `format` asserts (`contracts.formats`).
    pub formats: bool,
}

impl Checks {
    /// Whether any call is checked against its tool's schema: schemas are learned then.
    pub fn any(self) -> bool {
        self.params || self.arguments
    }
}

/// The schemas of one upstream's tools in shared data.
pub struct SharedSchemas<'a, S: SharedStore> {
    pub store: &'a S,
    pub upstream: &'a str,
    /// `max_tools_per_upstream`.
    pub max_tools: u32,
}

impl<S: SharedStore> SharedSchemas<'_, S> {
    fn key(hash: &[u8; 32]) -> String {
        format!("mcp-guard/schema/{}", hex(hash))
    }

    fn count_key(&self) -> String {
        format!(
            "mcp-guard/schemas/{}:{}",
            self.upstream.len(),
            self.upstream
        )
    }

    /// Stores the canonical `inputSchema` text of the definition `hash` (`None`: the tool
    /// has none, stored as empty) unless it is there. `false`: not stored (the upstream's
    /// bound, or the host refused).
    pub fn publish(&self, hash: &[u8; 32], input_schema: Option<&str>) -> bool {
        let key = Self::key(hash);
        if self.store.get(&key).is_some() {
            return true;
        }
        let count = self.count_key();
        let max = self.max_tools.saturating_mul(SCHEMAS_PER_TOOL);
        if !add_to_count(self.store, &count, 1, max) {
            return false;
        }
        let text = input_schema.unwrap_or_default().as_bytes();
        match insert_new(self.store, &key, text) {
            Ok(()) => true,
            // Another worker stored the same text first: the slot was not needed.
            Err(StoreError::CasMismatch) => {
                add_to_count(self.store, &count, -1, max);
                true
            }
            Err(StoreError::Host) => {
                add_to_count(self.store, &count, -1, max);
                false
            }
        }
    }

    /// The stored text for `hash`: `Some(None)` for a tool without `inputSchema`.
    pub fn load(&self, hash: &[u8; 32]) -> Option<Option<Vec<u8>>> {
        let (text, _) = self.store.get(&Self::key(hash))?;
        Some((!text.is_empty()).then_some(text))
    }
}

/// What one worker compiled of the schemas its calls needed, by definition hash.
#[derive(Debug, Default)]
pub struct Compiled {
    pub contracts: SchemaCache,
    params: HashMap<[u8; 32], Result<ParamHeaders, ParamError>>,
}

/// What learning a schema found: to log once, and whether the tool may be listed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SchemaNews {
    /// The `x-mcp-header` properties are invalid: clients must exclude the tool.
    pub params: Option<String>,
    /// The schema cannot be compiled for argument checks (reported the first time only).
    pub uncompilable: Option<String>,
}

impl Compiled {
    pub fn new(max_schemas: usize) -> Compiled {
        Compiled {
            contracts: SchemaCache::new(max_schemas),
            params: HashMap::new(),
        }
    }

    /// Whether the schema of `hash` is compiled for `checks`.
    pub fn knows(&self, hash: &[u8; 32], checks: Checks) -> bool {
        (!checks.params || self.params.contains_key(hash))
            && (!checks.arguments || !matches!(self.contracts.get(hash), Known::Unknown))
    }

    /// Compiles `input_schema` (`None`: the tool has none) under `hash` for `checks`,
    /// unless it is compiled already.
    pub fn learn(
        &mut self,
        hash: [u8; 32],
        input_schema: Option<&[u8]>,
        checks: Checks,
    ) -> SchemaNews {
        let mut news = SchemaNews::default();
        if checks.params {
            if self.params.len() >= MAX_PARAM_SETS && !self.params.contains_key(&hash) {
                self.params.clear();
            }
            let params = self.params.entry(hash).or_insert_with(|| {
                input_schema.map_or(Ok(ParamHeaders::default()), ParamHeaders::from_schema)
            });
            news.params = params
                .as_ref()
                .err()
                .map(|e| format!("{}: {}", e.pointer, e.reason));
        }
        if checks.arguments {
            news.uncompilable = self
                .contracts
                .learn_schema(hash, input_schema, checks.formats)
                .map(ToString::to_string);
        }
        news
    }

    /// Learns a definition from a `tools/list` answer: compiled here, published for the
    /// other workers. Its news say whether the caller may see it.
    pub fn learn_listed<S: SharedStore>(
        &mut self,
        shared: &SharedSchemas<'_, S>,
        def: &ToolDef,
        checks: Checks,
    ) -> SchemaNews {
        if !self.knows(&def.sha256, checks) {
            shared.publish(&def.sha256, def.input_schema.as_deref());
        }
        self.learn(
            def.sha256,
            def.input_schema.as_deref().map(str::as_bytes),
            checks,
        )
    }

    /// Makes the schema of `hash` known to this worker from shared data, if it is there.
    /// Returns what compiling it found (only when it was compiled now).
    pub fn find<S: SharedStore>(
        &mut self,
        shared: &SharedSchemas<'_, S>,
        hash: &[u8; 32],
        checks: Checks,
    ) -> SchemaNews {
        if self.knows(hash, checks) {
            return SchemaNews::default();
        }
        match shared.load(hash) {
            Some(text) => self.learn(*hash, text.as_deref(), checks),
            None => SchemaNews::default(),
        }
    }

    /// Judges one `tools/call` of `tool` (definition `hash`, if learned): its
    /// `Mcp-Param-*` headers (`headers`: the request's, `None` for a batch member, which no
    /// header can mirror) against its arguments, then its argument contract.
    #[allow(clippy::too_many_arguments)]
    pub fn check_call(
        &self,
        contracts: &Contracts,
        upstream: &str,
        tool: &str,
        hash: Option<&[u8; 32]>,
        arguments: Option<&[u8]>,
        headers: Option<&[(String, Vec<u8>)]>,
        id: Option<&str>,
    ) -> CallCheck {
        if let (Some(Ok(params)), Some(headers)) = (hash.and_then(|h| self.params.get(h)), headers)
        {
            if let Err(mismatch) = params.check(arguments, headers) {
                return CallCheck::Refuse(mismatch.rejection(id));
            }
        }
        let known = hash.map_or(Known::Unknown, |h| self.contracts.get(h));
        match contracts.check_call(upstream, tool, arguments, known) {
            CallCheck::Refuse(rejection) => CallCheck::Refuse(rejection.with_id(id)),
            other => other,
        }
    }
}

#[cfg(test)]
mod tests;
