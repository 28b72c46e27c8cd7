//! Catalog: what is learned about each upstream's tools from its `tools/list` answers. One
//! definition read ([`tooldef`]: annotation hints, the SHA-256 of its canonical form), the
//! record per upstream in shared data ([`toolstate`]: hints, pins, drift), and the `tools`
//! section. It tells the policy and the response stage what a tool is; it never allows or
//! refuses anything itself (the gate turns a pin's state into a refusal). Each definition's
//! `inputSchema` is shared too ([`schemas`]), for the checks of `Mcp-Param-*` headers and
//! argument contracts.

pub(crate) mod config;
pub mod defmemo;
pub mod fetch;
pub mod schemas;
pub mod tooldef;
pub mod toolstate;
