//! Protocol, the first stage: what the request is, read strictly before anyone judges it.
//! The HTTP head (`head`), the JSON-RPC reader and MCP message classification
//! ([`jsonrpc`]), and protocol revisions with the routing headers checked against the body
//! (`revision`). It decides only whether a request is MCP the filter can read (the
//! 400/405/413/415-class refusals); it never knows who is calling or what they may do, and
//! imports no other stage.

pub(crate) mod head;
pub mod headers;
pub mod jsonrpc;
pub mod mcp_param;
pub mod path;
pub(crate) mod revision;
pub mod revisions;
