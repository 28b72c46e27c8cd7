//! Canonical request paths, the form `endpoints` and `pass_paths` are matched on.
//!
//! Servers read one request path in different ways: Express ignores case and a trailing
//! slash, Java containers drop `;params`, some stacks decode `%2F` or read `\` as `/`, and
//! proxies merge slashes and resolve dot segments. Matching on a canonical form at least as
//! wide as all of them means no spelling of an endpoint reaches an MCP handler uninspected,
//! whatever the mesh in front of the filter normalises. The request itself is forwarded with
//! its original path: only the matching is canonical.

use std::borrow::Cow;
use std::fmt;

/// Why a path has no canonical form (the request is refused: its meaning is unclear).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    /// `%` not followed by two hex digits.
    BadEscape,
    /// The decoded bytes are not UTF-8 (overlong forms such as `%C0%AF` included).
    NotUtf8,
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PathError::BadEscape => "invalid percent-escape",
            PathError::NotUtf8 => "percent-escapes that do not decode to UTF-8",
        })
    }
}

/// A request path in canonical form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Canonical<'a> {
    pub path: Cow<'a, str>,
    /// A `..` segment was resolved: the path may name something else to a server that does
    /// not resolve it, so it is never passed uninspected by `pass_paths`.
    pub climbed: bool,
}

/// The canonical form of a request path (`:path`): query and fragment removed, escapes
/// decoded once, `\` read as `/`, `;params` dropped from each segment, empty and `.`
/// segments removed, `..` resolved (never above the root), no trailing slash, and lower
/// case (ASCII, plus `ſ` and the Kelvin sign, which JavaScript's case-insensitive Unicode
/// matching folds to `s` and `k`). A path already in that form is borrowed, not copied.
pub fn canonical(path: &str) -> Result<Canonical<'_>, PathError> {
    let path = path.get(..query_start(path)).unwrap_or_default();
    if is_canonical(path) {
        return Ok(Canonical {
            path: Cow::Borrowed(path),
            climbed: false,
        });
    }
    let decoded = String::from_utf8(percent_decode(path)?).map_err(|_| PathError::NotUtf8)?;
    let (path, climbed) = resolve(&decoded);
    Ok(Canonical {
        path: Cow::Owned(path),
        climbed,
    })
}

/// Where a request path's query or fragment starts (its length without either). Byte by
/// byte: a `char` pattern costs hundreds of wasm instructions per call.
pub fn query_start(path: &str) -> usize {
    path.bytes()
        .position(|b| matches!(b, b'?' | b'#'))
        .unwrap_or(path.len())
}

/// The canonical form of a configured path pattern: the same segment rules, no decoding
/// (patterns with `%`, `;` or `\` are refused when the configuration is compiled).
pub fn canonical_pattern(pattern: &str) -> String {
    resolve(pattern).0
}

/// Characters a configured path pattern may not contain, with why.
pub fn pattern_error(pattern: &str) -> Option<String> {
    if !pattern.starts_with('/') {
        return Some(format!("path {pattern:?} must start with '/'"));
    }
    let bad = pattern
        .chars()
        .find(|c| matches!(c, '%' | ';' | '\\' | '#'))?;
    Some(format!(
        "path {pattern:?} must not contain {bad:?}: requests are matched decoded, without \
         ;params, with '\\' read as '/'"
    ))
}

/// Already canonical: the fast path, no copy.
fn is_canonical(path: &str) -> bool {
    let Some(rest) = path.as_bytes().strip_prefix(b"/") else {
        return false;
    };
    rest.is_empty()
        || rest.split(|&b| b == b'/').all(|segment| {
            !matches!(segment, b"" | b"." | b"..")
                && segment.iter().all(|&b| {
                    b.is_ascii_graphic()
                        && !b.is_ascii_uppercase()
                        && !matches!(b, b'%' | b'\\' | b';')
                })
        })
}

/// Decodes every `%XX`; any other `%` is an error.
fn percent_decode(path: &str) -> Result<Vec<u8>, PathError> {
    let mut out = Vec::with_capacity(path.len());
    let mut bytes = path.bytes();
    while let Some(b) = bytes.next() {
        if b != b'%' {
            out.push(b);
            continue;
        }
        let hex = |b: Option<u8>| char::from(b?).to_digit(16);
        match (hex(bytes.next()), hex(bytes.next())) {
            (Some(hi), Some(lo)) => out.push((hi * 16 + lo) as u8),
            _ => return Err(PathError::BadEscape),
        }
    }
    Ok(out)
}

/// Segment rules on decoded text; also says whether a `..` was resolved.
fn resolve(text: &str) -> (String, bool) {
    let mut out = String::with_capacity(text.len() + 1);
    let mut climbed = false;
    for segment in text.split(['/', '\\']) {
        match segment.split(';').next().unwrap_or_default() {
            "" | "." => {}
            ".." => {
                climbed = true;
                out.truncate(out.rfind('/').unwrap_or(0));
            }
            segment => {
                out.push('/');
                out.extend(segment.chars().map(fold));
            }
        }
    }
    if out.is_empty() {
        out.push('/');
    }
    (out, climbed)
}

fn fold(c: char) -> char {
    match c {
        '\u{17F}' => 's',
        '\u{212A}' => 'k',
        c => c.to_ascii_lowercase(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(path: &str) -> Result<String, PathError> {
        canonical(path).map(|c| c.path.into_owned())
    }

    #[test]
    fn every_spelling_of_an_endpoint_is_the_endpoint() {
        for path in [
            "/mcp",
            "/MCP",
            "/Mcp/",
            "/mcp/",
            "/mcp//",
            "/mcp?x=1",
            "/mcp#frag",
            "/mcp;x=1",
            "/mcp;",
            "/mcp/;x",
            "/mcp%2F",
            "/mcp%2f",
            "/mcp%5C",
            "/mcp%3Bx",
            "/%6dcp",
            "/%6D%43%50",
            "/x/../mcp",
            "/x/..;y/mcp",
            "/x/%2e%2e/mcp",
            "/./mcp",
            "/../mcp",
            "//mcp",
            "///mcp",
            "\\mcp",
            "/mcp\\",
            "mcp",
            "/a;b/../mcp",
        ] {
            assert_eq!(canon(path).as_deref(), Ok("/mcp"), "{path:?}");
        }
    }

    #[test]
    fn distinct_paths_stay_distinct() {
        for (path, want) in [
            ("/", "/"),
            ("", "/"),
            ("/..", "/"),
            ("/mcp/x", "/mcp/x"),
            ("/mcpx", "/mcpx"),
            ("/mcp/../other", "/other"),
            ("/%252F", "/%2f"),
            ("/a%20b", "/a b"),
            ("/ſtatus/\u{212A}", "/status/k"),
            ("/Ünïcode", "/Ünïcode"),
            ("/.well-known/x", "/.well-known/x"),
            ("/...", "/..."),
        ] {
            assert_eq!(canon(path).as_deref(), Ok(want), "{path:?}");
        }
    }

    #[test]
    fn bad_escapes_and_non_utf8_are_errors() {
        for path in ["/%", "/mcp%", "/%4", "/%zz", "/%g0", "/mcp%2", "/%%41"] {
            assert_eq!(canon(path), Err(PathError::BadEscape), "{path:?}");
        }
        for path in ["/%C0%AF", "/%E0%80%AF", "/%FF", "/%C3", "/%ED%A0%80"] {
            assert_eq!(canon(path), Err(PathError::NotUtf8), "{path:?}");
        }
        // The query is not part of the path.
        assert_eq!(canon("/mcp?%zz").as_deref(), Ok("/mcp"));
    }

    #[test]
    fn canonical_paths_are_borrowed_and_climbing_is_noted() {
        for path in ["/mcp", "/", "/a/b.c/d-e_f~", "/mcp?x=%zz"] {
            assert!(
                matches!(canonical(path).map(|c| c.path), Ok(Cow::Borrowed(_))),
                "{path:?}"
            );
        }
        assert!(canonical("/x/../mcp").is_ok_and(|c| c.climbed));
        assert!(canonical("/x/./mcp").is_ok_and(|c| !c.climbed));
    }

    #[test]
    fn canonical_is_idempotent() {
        for path in ["/MCP/", "/a/./b/../c;d", "//x\\Y", "/%41%2fb"] {
            let once = canon(path).unwrap_or_default();
            assert_eq!(canon(&once).as_deref(), Ok(once.as_str()), "{path:?}");
        }
    }

    #[test]
    fn patterns_are_canonical_and_checked() {
        assert_eq!(canonical_pattern("/messages/"), "/messages");
        assert_eq!(canonical_pattern("/API//Tools/*"), "/api/tools/*");
        assert_eq!(canonical_pattern("/"), "/");
        assert_eq!(pattern_error("/mcp"), None);
        assert_eq!(
            pattern_error("mcp").as_deref(),
            Some("path \"mcp\" must start with '/'")
        );
        for bad in ["/a%20", "/a;b", "/a\\*", "/a#b"] {
            assert!(pattern_error(bad).is_some(), "{bad:?}");
        }
    }
}
