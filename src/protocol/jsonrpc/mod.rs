//! JSON-RPC 2.0 as MCP uses it: a strict, selective reader and message classification.

#[cfg(any(test, feature = "fuzzing"))]
pub mod differential;
mod message;
mod reader;

pub use message::{
    parse_body, parse_body_for, Body, BodyError, Kind, Message, Seen, Target, META_PROTOCOL_VERSION,
};
pub use reader::{Reader, SyntaxError, MAX_DEPTH};
