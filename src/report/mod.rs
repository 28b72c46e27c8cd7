//! The report stage.

pub mod observe;
pub mod reject;
