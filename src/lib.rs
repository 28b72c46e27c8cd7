//! mcp-guard: a policy layer for MCP tool calls, as a proxy-wasm filter.
//!
//! Everything but [`filter`] is the pure core: plain Rust with no host dependency, unit
//! tested natively. [`filter`] is the thin glue that talks to the proxy-wasm host.

pub mod arguments;
pub mod auth;
pub mod authn;
pub mod config;
pub mod contract;
pub mod gate;
pub mod glob;
pub mod jsonrpc;
pub mod key_store;
pub mod listfilter;
pub mod observe;
pub mod policy;
pub mod ratelimit;
pub mod reject;
pub mod revision;
pub mod shared_store;
pub mod tooldef;
pub mod toolstate;
pub mod upstream;

pub mod filter;
