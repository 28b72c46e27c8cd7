//! The protocol stage.

pub mod jsonrpc;
pub mod revision;
