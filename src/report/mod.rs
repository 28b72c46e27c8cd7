//! The report stage.

pub(crate) mod observe;
pub mod reject;
