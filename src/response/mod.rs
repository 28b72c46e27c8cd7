//! The response stage.

pub mod listfilter;
pub mod sse;
