//! The catalog stage.

pub(crate) mod config;
pub mod tooldef;
pub mod toolstate;
