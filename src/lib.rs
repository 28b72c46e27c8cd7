//! mcp-guard: a policy layer for MCP tool calls, as a proxy-wasm filter.
//!
//! Everything but [`filter`] is the pure core: plain Rust with no host dependency, unit
//! tested natively. [`filter`] is the thin glue that talks to the proxy-wasm host.
//!
//! The core is the request and response pipeline, one module per stage in the order a
//! request meets them: [`protocol`], [`identity`], [`policy`] (with what the [`catalog`]
//! knows of tools), `limits`, `upstream`; an answer goes through [`response`]. [`gate`]
//! calls the request stages in order; [`report`] tells outcomes, `state` is the shared data
//! behind learned tools and rate limits, and [`config`] assembles each stage's section.
//! A stage imports only the stages it builds on (policy builds on identity and catalog), and
//! `report`, `state`, `section`; none imports `config`, `gate` or `filter`.

pub mod catalog;
pub mod config;
pub mod contract;
pub(crate) mod fasthash;
pub mod gate;
pub mod identity;
pub(crate) mod limits;
mod located;
pub mod policy;
pub mod posture;
pub mod protocol;
pub mod report;
pub mod response;
mod section;
pub(crate) mod sort;
pub(crate) mod state;
pub(crate) mod upstream;
pub(crate) mod words;

pub mod filter;
