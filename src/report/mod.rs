//! Report: how outcomes are told. [`reject`] turns a refusal into a JSON-RPC error body,
//! an HTTP status and headers (and holds [`reject::LocalReply`], any other answer the
//! filter sends itself); `observe` names metrics with bounded labels and builds the
//! redacted audit record. Every stage speaks it; it decides nothing and never talks to the
//! host (the glue's `filter/report.rs` does).

pub(crate) mod observe;
pub mod reject;
