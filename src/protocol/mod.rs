//! The protocol stage.

pub mod head;
pub mod jsonrpc;
pub mod revision;
