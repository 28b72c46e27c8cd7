//! List caching hints (SEP-2549): an answer filtered for one caller must not be cached for
//! others.
//!
//! Servers mark `tools/list`, `prompts/list`, `resources/list`,
//! `resources/templates/list` and `resources/read` results with `ttlMs` and `cacheScope`
//! (`"public"` or `"private"`). Once the gateway has cut a list down to what one caller
//! may see, a shared cache keyed without the caller would hand that cut to everyone, or
//! everyone's list to a cut-down caller, so `result.cacheScope: "public"` becomes
//! `"private"`. Only those bytes change (the splice of [`crate::listfilter`]); `ttlMs`
//! and everything else stay as the server wrote them. It never adds a hint the server
//! did not send and never reads anything but `result.cacheScope`.

use std::ops::Range;

use crate::protocol::jsonrpc::Reader;
use crate::words;

/// What replaces a public scope.
const PRIVATE: &[u8] = b"\"private\"";

/// `answer` with every `result.cacheScope` that says `"public"` made `"private"`; `None`
/// when there is nothing to change or the answer is not one JSON object.
pub fn privatize_cache_scope(answer: &[u8]) -> Option<Vec<u8>> {
    let spans = public_scopes(answer)?;
    let mut out = Vec::with_capacity(answer.len() + spans.len() * 2);
    let mut at = 0;
    for span in spans {
        out.extend_from_slice(answer.get(at..span.start)?);
        out.extend_from_slice(PRIVATE);
        at = span.end;
    }
    out.extend_from_slice(answer.get(at..)?);
    Some(out)
}

/// The spans of the `"public"` values of `result.cacheScope` (all of them, should the
/// key repeat), in order; `None` for none or for an answer that does not parse.
fn public_scopes(answer: &[u8]) -> Option<Vec<Range<usize>>> {
    if !may_name_cache_scope(answer) {
        return None;
    }
    let mut r = Reader::new(answer);
    let mut spans = Vec::new();
    r.begin_object().ok()?;
    let mut first = true;
    while let Some(key) = r.next_key(&mut first).ok()? {
        if key != "result" || r.peek() != Some(b'{') {
            r.skip_value().ok()?;
            continue;
        }
        r.begin_object().ok()?;
        let mut first_member = true;
        while let Some(member) = r.next_key(&mut first_member).ok()? {
            let start = r.offset_after_ws();
            if member == "cacheScope" && r.peek() == Some(b'"') {
                if r.read_string().ok()? == "public" {
                    spans.push(start..r.offset());
                }
            } else {
                r.skip_value().ok()?;
            }
        }
    }
    r.finish().ok()?;
    (!spans.is_empty()).then_some(spans)
}

/// Whether `answer` may have a `cacheScope` key: it spells the name out, or it has a `\u`
/// escape, which could spell any key. Most answers do neither and skip the full read. Every
/// list answer passes here, so it looks for the two rare bytes (`S`, `\`) eight at a time
/// and checks around each: a byte-by-byte walk was a tenth of a list's cost.
fn may_name_cache_scope(answer: &[u8]) -> bool {
    const NAME: &[u8] = b"cacheScope";
    const CAPITAL: usize = 5; // `S` in NAME
    let mut from = 0;
    while let Some(i) = find_either(answer, from, b'S', b'\\') {
        let found = match answer.get(i) {
            Some(b'\\') => answer.get(i + 1) == Some(&b'u'),
            _ => {
                i.checked_sub(CAPITAL)
                    .and_then(|start| answer.get(start..start + NAME.len()))
                    == Some(NAME)
            }
        };
        if found {
            return true;
        }
        from = i + 1;
    }
    false
}

/// The first position at or after `from` holding `a` or `b`, eight bytes at a time.
fn find_either(bytes: &[u8], from: usize, a: u8, b: u8) -> Option<usize> {
    let mut at = from;
    while let Some(w) = words::word_at(bytes, at) {
        let flags = words::equal(w, a) | words::equal(w, b);
        if flags != 0 {
            return Some(at + words::first_flagged(flags));
        }
        at += 8;
    }
    let tail = bytes.get(at..)?;
    tail.iter().position(|&c| c == a || c == b).map(|i| at + i)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewrite(answer: &str) -> Option<String> {
        privatize_cache_scope(answer.as_bytes()).map(|b| String::from_utf8(b).unwrap())
    }

    #[test]
    fn public_becomes_private_byte_for_byte() {
        assert_eq!(
            rewrite(r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[],"ttlMs":60000, "cacheScope" : "public" ,"x":{"cacheScope":"public"}}}"#).as_deref(),
            Some(r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[],"ttlMs":60000, "cacheScope" : "private" ,"x":{"cacheScope":"public"}}}"#)
        );
        assert_eq!(
            rewrite(r#"{"result":{"cacheScope":"p\u0075blic","cacheScope":"public"},"id":2}"#)
                .as_deref(),
            Some(r#"{"result":{"cacheScope":"private","cacheScope":"private"},"id":2}"#)
        );
    }

    #[test]
    fn a_key_spelled_with_escapes_is_still_found() {
        assert_eq!(
            rewrite(r#"{"id":1,"result":{"\u0063acheScope":"public"}}"#).as_deref(),
            Some(r#"{"id":1,"result":{"\u0063acheScope":"private"}}"#)
        );
        assert!(may_name_cache_scope(br#"{"a":"\u0041"}"#));
        assert!(!may_name_cache_scope(br#"{"cache":"Scope","c":"\\"}"#));
    }

    #[test]
    fn the_prefilter_finds_the_name_and_escapes_at_every_offset() {
        // The plain definition, byte by byte, against the word-at-a-time search.
        let plain = |answer: &[u8]| {
            (0..answer.len())
                .any(|i| answer[i..].starts_with(b"cacheScope") || answer[i..].starts_with(b"\\u"))
        };
        for needle in [
            &b"cacheScope"[..],
            b"\\u",
            b"cacheScop",
            b"acheScope",
            b"S",
            b"\\",
        ] {
            for pad in 0..20 {
                for tail in 0..10 {
                    let mut answer = vec![b'x'; pad];
                    answer.extend_from_slice(needle);
                    answer.extend(std::iter::repeat_n(b'S', tail));
                    assert_eq!(
                        may_name_cache_scope(&answer),
                        plain(&answer),
                        "{:?}",
                        String::from_utf8_lossy(&answer)
                    );
                }
            }
        }
    }

    #[test]
    fn nothing_to_change_passes_unchanged() {
        for answer in [
            r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[],"cacheScope":"private"}}"#,
            r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[]}}"#,
            r#"{"jsonrpc":"2.0","id":1,"error":{"code":-1,"message":"public"}}"#,
            r#"{"jsonrpc":"2.0","id":1,"result":{"cacheScope":"public"}} trailing"#,
            r#"{"jsonrpc":"2.0","id":1,"result":{"cacheScope":"public""#,
            r#"[{"result":{"cacheScope":"public"}}]"#,
            "",
        ] {
            assert_eq!(rewrite(answer), None, "{answer}");
        }
    }
}
