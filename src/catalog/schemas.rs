//! Tools' `inputSchema`s, shared by every Envoy worker, for the checks of their calls
//! (`Mcp-Param-*` headers, argument contracts: [`crate::contract::calls`]).
//!
//! When a `tools/list` answer passes, each definition's canonical `inputSchema` text goes
//! to shared data under its definition hash (the hash pins compare, `Record::live`):
//! `mcp-guard/schema/<hex>`, written once, since a hash always names the same text. A
//! worker that never saw the list finds the tool's hash in its learned record, reads the
//! text and compiles it once per hash. Entries are never deleted, so each
//! upstream may create at most [`SCHEMAS_PER_TOOL`] × `max_tools_per_upstream` of them,
//! counted in `mcp-guard/schemas/<n>:<upstream>`; a schema beyond the bound stays unknown
//! to the workers that did not see it.

use crate::catalog::tooldef::hex;
use crate::state::{add_to_count, insert_new, SharedStore, StoreError};

/// Shared schemas an upstream may create per tool it may have (room for redefinitions).
pub const SCHEMAS_PER_TOOL: u32 = 2;

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

#[cfg(test)]
mod tests;
