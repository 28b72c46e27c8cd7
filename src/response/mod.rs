//! The response stage.

pub mod listfilter;
