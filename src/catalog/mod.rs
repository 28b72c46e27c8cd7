//! The catalog stage.

pub mod tooldef;
pub mod toolstate;
