//! mcp-guard: a policy layer for MCP tool calls, as a proxy-wasm filter.
//!
//! Everything but [`filter`] is the pure core: plain Rust with no host dependency, unit
//! tested natively. [`filter`] is the thin glue that talks to the proxy-wasm host.

pub mod catalog;
pub mod config;
pub mod gate;
pub mod identity;
pub(crate) mod limits;
pub mod policy;
pub mod protocol;
pub mod report;
pub mod response;
mod section;
pub(crate) mod state;
pub(crate) mod upstream;

pub mod filter;
