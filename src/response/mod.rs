//! Response: the transforms an approved request's answer goes through on its way back.
//! One SSE framer ([`sse`]) and the per-answer transforms on top of it: today list
//! filtering ([`listfilter`]: a list answer spliced down to what the caller may use). A
//! transform never re-serialises what the server wrote, never holds an event stream to its
//! end, and passes an answer it cannot read unchanged.

pub mod cachescope;
pub mod listfilter;
pub mod sse;

/// The media type of a `Content-Type` value, lower case, without its parameters.
pub fn media_type(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}
