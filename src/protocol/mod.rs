//! The protocol stage.

pub(crate) mod head;
pub mod jsonrpc;
pub(crate) mod revision;
