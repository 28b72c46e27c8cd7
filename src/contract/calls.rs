//! The checks of one approved `tools/call` against its tool's learned schema: its
//! `Mcp-Param-*` headers (SEP-2243) against its arguments, then its argument contract
//! ([`Contracts::check_call`], which runs the write-back guard first). [`Compiled`] keeps,
//! per worker, what was compiled of each schema, by definition hash; the texts come from
//! a `tools/list` answer this worker saw or from shared data
//! ([`crate::catalog::schemas`]).

use crate::catalog::schemas::SharedSchemas;
use crate::catalog::tooldef::ToolDef;
use crate::contract::{CallCheck, Contracts, Known, SchemaCache};
use crate::fasthash::FastMap;
use crate::protocol::headers::HeaderMap;
use crate::protocol::mcp_param::{ParamHeaders, SchemaError as ParamError};
use crate::state::SharedStore;

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

/// What one worker compiled of the schemas its calls needed, by definition hash.
#[derive(Debug, Default)]
pub struct Compiled {
    pub contracts: SchemaCache,
    params: FastMap<[u8; 32], Result<ParamHeaders, ParamError>>,
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
            params: FastMap::default(),
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
        headers: Option<&HeaderMap>,
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
