//! Glob patterns for names, URIs and paths, compiled once at configuration time.
//!
//! Syntax: `*` matches any run of characters (including `/`), `?` exactly one character,
//! `[abc]`, `[a-z]` and `[!a-z]` one character of (or not of) a set, and `\x` the character
//! `x` literally. Matching is by Unicode scalar value and case-sensitive, like the upstream
//! servers that look tools up by exact name.

use std::collections::HashSet;
use std::fmt;

use crate::section::ConfigError;

/// A compiled glob pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    tokens: Vec<Token>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Literal(char),
    AnyOne,
    AnyRun,
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

/// Why a pattern does not compile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GlobError {
    pub pattern: String,
    pub reason: &'static str,
}

impl fmt::Display for GlobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid pattern {:?}: {}", self.pattern, self.reason)
    }
}

impl Glob {
    /// Compiles `pattern`, rejecting unclosed classes, empty classes and dangling escapes.
    pub fn new(pattern: &str) -> Result<Glob, GlobError> {
        let err = |reason| GlobError {
            pattern: pattern.to_owned(),
            reason,
        };
        let mut tokens = Vec::new();
        let mut chars = pattern.chars();
        while let Some(c) = chars.next() {
            let token = match c {
                '*' => {
                    if tokens.last() == Some(&Token::AnyRun) {
                        continue;
                    }
                    Token::AnyRun
                }
                '?' => Token::AnyOne,
                '\\' => Token::Literal(chars.next().ok_or_else(|| err("dangling escape"))?),
                '[' => parse_class(&mut chars).ok_or_else(|| err("unclosed or empty '['"))?,
                c => Token::Literal(c),
            };
            tokens.push(token);
        }
        Ok(Glob { tokens })
    }

    /// Whether every text `other` matches, this pattern matches too (sound, not complete:
    /// `false` may still hide an inclusion). Posture checks use it to find allow patterns a
    /// deny pattern makes unreachable.
    pub fn covers(&self, other: &Glob) -> bool {
        // covered[i * width + j]: self.tokens[i..] covers other.tokens[j..], filled backwards.
        let width = other.tokens.len() + 1;
        let mut covered = vec![false; (self.tokens.len() + 1) * width];
        let at = |cells: &[bool], i: usize, j: usize| cells.get(i * width + j) == Some(&true);
        for i in (0..=self.tokens.len()).rev() {
            for j in (0..width).rev() {
                let value = match (self.tokens.get(i), other.tokens.get(j)) {
                    (None, None) => true,
                    // A run matches nothing, or absorbs the other pattern's next token.
                    (Some(Token::AnyRun), next) => {
                        at(&covered, i + 1, j) || (next.is_some() && at(&covered, i, j + 1))
                    }
                    (Some(mine), Some(theirs)) => {
                        mine.covers_one(theirs) && at(&covered, i + 1, j + 1)
                    }
                    _ => false,
                };
                if let Some(cell) = covered.get_mut(i * width + j) {
                    *cell = value;
                }
            }
        }
        at(&covered, 0, 0)
    }

    /// The literal text this pattern matches, when it has no wildcard at all.
    pub fn as_literal(&self) -> Option<String> {
        self.tokens
            .iter()
            .map(|t| match t {
                Token::Literal(c) => Some(*c),
                _ => None,
            })
            .collect()
    }

    /// Whether `text` matches the whole pattern.
    ///
    /// Classic single-backtrack matcher: on a mismatch it retries from the last `*`,
    /// which keeps the worst case at O(pattern × text) without recursion.
    pub fn is_match(&self, text: &str) -> bool {
        // `t` is a byte offset into `text`; no allocation on the hot path.
        let (mut p, mut t) = (0usize, 0usize);
        let mut star: Option<(usize, usize)> = None;
        let next_char = |t: usize| text.get(t..).and_then(|rest| rest.chars().next());
        while let Some(c) = next_char(t) {
            match self.tokens.get(p) {
                Some(Token::AnyRun) => {
                    star = Some((p, t));
                    p += 1;
                }
                Some(token) if token.matches_one(c) => {
                    p += 1;
                    t += c.len_utf8();
                }
                _ => match star {
                    Some((sp, st)) => {
                        let skipped = next_char(st).map_or(1, char::len_utf8);
                        p = sp + 1;
                        t = st + skipped;
                        star = Some((sp, t));
                    }
                    None => return false,
                },
            }
        }
        self.tokens
            .get(p..)
            .is_some_and(|rest| rest.iter().all(|t| *t == Token::AnyRun))
    }
}

impl Token {
    /// Whether this one-character token matches every character `other` matches.
    fn covers_one(&self, other: &Token) -> bool {
        match (self, other) {
            (Token::AnyRun, _) | (_, Token::AnyRun) => false,
            (Token::AnyOne, _) => true,
            (_, Token::Literal(c)) => self.matches_one(*c),
            (
                Token::Class {
                    negated: false,
                    ranges,
                },
                Token::Class {
                    negated: false,
                    ranges: theirs,
                },
            ) => theirs
                .iter()
                .all(|(lo, hi)| ranges.iter().any(|(l, h)| l <= lo && hi <= h)),
            _ => self == other,
        }
    }

    fn matches_one(&self, c: char) -> bool {
        match self {
            Token::Literal(l) => *l == c,
            Token::AnyOne => true,
            Token::AnyRun => false,
            Token::Class { negated, ranges } => {
                ranges.iter().any(|(lo, hi)| (*lo..=*hi).contains(&c)) != *negated
            }
        }
    }
}

/// Parses a class body after `[`; `None` when it is unclosed or empty.
fn parse_class(chars: &mut std::str::Chars<'_>) -> Option<Token> {
    let mut negated = false;
    let mut ranges = Vec::new();
    let mut first = true;
    loop {
        let c = chars.next()?;
        match c {
            '!' | '^' if first && !negated => {
                negated = true;
                continue;
            }
            ']' if !ranges.is_empty() => return Some(Token::Class { negated, ranges }),
            ']' => return None,
            _ => {}
        }
        first = false;
        let lo = if c == '\\' { chars.next()? } else { c };
        let mut lookahead = chars.clone();
        let hi = match (lookahead.next(), lookahead.next()) {
            (Some('-'), Some(h)) if h != ']' => {
                chars.next();
                chars.next();
                if h == '\\' {
                    chars.next()?
                } else {
                    h
                }
            }
            _ => lo,
        };
        if hi < lo {
            return None;
        }
        ranges.push((lo, hi));
    }
}

/// A set of patterns: exact names are looked up in a hash set, wildcards tried in order.
#[derive(Debug, Clone, Default)]
pub struct PatternSet {
    /// The patterns as written, in order: what posture checks name and compare.
    written: Vec<String>,
    exact: HashSet<String>,
    globs: Vec<Glob>,
    match_all: bool,
}

impl PatternSet {
    /// Compiles every pattern; the error carries the index of the first bad one.
    pub fn compile<S: AsRef<str>>(patterns: &[S]) -> Result<PatternSet, (usize, GlobError)> {
        let mut set = PatternSet::default();
        for (i, p) in patterns.iter().enumerate() {
            let glob = Glob::new(p.as_ref()).map_err(|e| (i, e))?;
            set.written.push(p.as_ref().to_owned());
            if glob.tokens == [Token::AnyRun] {
                set.match_all = true;
            } else if let Some(lit) = glob.as_literal() {
                set.exact.insert(lit);
            } else {
                set.globs.push(glob);
            }
        }
        Ok(set)
    }

    /// A set that matches every name.
    pub fn everything() -> PatternSet {
        PatternSet {
            match_all: true,
            ..PatternSet::default()
        }
    }

    pub fn is_match(&self, text: &str) -> bool {
        self.match_all || self.exact.contains(text) || self.globs.iter().any(|g| g.is_match(text))
    }

    /// The names this set lists exactly (its patterns without wildcards).
    pub fn literals(&self) -> impl Iterator<Item = &str> {
        self.exact.iter().map(String::as_str)
    }

    /// The patterns as written (none for [`PatternSet::everything`]).
    pub fn written(&self) -> &[String] {
        &self.written
    }

    /// Whether every name matches (a `*` pattern, or [`PatternSet::everything`]).
    pub fn matches_everything(&self) -> bool {
        self.match_all
    }

    pub fn is_empty(&self) -> bool {
        !self.match_all && self.exact.is_empty() && self.globs.is_empty()
    }
}

/// Compiles the pattern list at `path`, naming the bad pattern on error.
pub(crate) fn patterns(path: &str, list: &[String]) -> Result<PatternSet, ConfigError> {
    PatternSet::compile(list).map_err(|(i, e)| glob_error(path, i, e))
}

/// The error for the bad pattern at `path[i]`.
pub(crate) fn glob_error(path: &str, i: usize, e: GlobError) -> ConfigError {
    ConfigError {
        path: format!("{path}[{i}]"),
        message: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_table() {
        let cases: &[(&str, &str, bool)] = &[
            ("echo", "echo", true),
            ("echo", "Echo", false),
            ("echo", "echo2", false),
            ("*", "", true),
            ("*", "anything/at all", true),
            ("db_*", "db_query", true),
            ("db_*", "db_", true),
            ("db_*", "xdb_query", false),
            ("*_delete", "file_delete", true),
            ("*_delete", "file_delete_x", false),
            ("a*b*c", "aXbYc", true),
            ("a*b*c", "aXbYcZ", false),
            ("a*b*c", "abbbc", true),
            ("?", "é", true),
            ("?", "ab", false),
            ("file_[rw]*", "file_read", true),
            ("file_[rw]*", "file_delete", false),
            ("file_[!rw]*", "file_delete", true),
            ("[a-c]x", "bx", true),
            ("[a-c]x", "dx", false),
            ("\\*", "*", true),
            ("\\*", "x", false),
            ("[]]", "]", false),
            ("**a", "ba", true),
        ];
        for (pattern, text, want) in cases {
            match Glob::new(pattern) {
                Ok(g) => assert_eq!(g.is_match(text), *want, "{pattern:?} vs {text:?}"),
                Err(e) => assert!(!want, "{pattern:?} failed to compile: {e}"),
            }
        }
    }

    #[test]
    fn rejects_bad_patterns() {
        for bad in ["[", "a[bc", "[]", "x\\", "[z-a]", "[!]"] {
            assert!(Glob::new(bad).is_err(), "{bad:?} should not compile");
        }
        let err = Glob::new("[").unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"invalid pattern "[": unclosed or empty '['"#
        );
    }

    #[test]
    fn covers_table() {
        let cases: &[(&str, &str, bool)] = &[
            ("*", "db_*", true),
            ("*", "", true),
            ("db_*", "db_query", true),
            ("db_*", "db_*", true),
            ("db_*", "db_q*x?", true),
            ("db_*", "db*", false),
            ("db_*", "*", false),
            ("d?_*", "db_*", true),
            ("*_delete", "file_delete", true),
            ("*_delete", "*_delete", true),
            ("*_delete", "*delete", false),
            ("[a-c]x", "bx", true),
            ("[a-c]x", "[ab]x", true),
            ("[a-c]x", "[a-d]x", false),
            ("[a-c]x", "?x", false),
            ("[!a]x", "[!a]x", true),
            ("?", "[a-z]", true),
            ("a*b*c", "a*b*c", true),
            ("a*c", "a*b*c", true),
            ("a*b*c", "a*c", false),
            ("echo", "echo", true),
            ("echo", "echo2", false),
        ];
        for (mine, theirs, want) in cases {
            let (mine_glob, theirs_glob) = (Glob::new(mine).unwrap(), Glob::new(theirs).unwrap());
            assert_eq!(
                mine_glob.covers(&theirs_glob),
                *want,
                "{mine:?} covers {theirs:?}"
            );
        }
    }

    #[test]
    fn pattern_set_uses_exact_globs_and_wildcard() {
        let set = PatternSet::compile(&["echo", "db_*"]).unwrap();
        assert!(set.is_match("echo"));
        assert!(set.is_match("db_drop"));
        assert!(!set.is_match("ech"));
        assert!(PatternSet::compile(&["*"]).unwrap().is_match("x"));
        assert!(PatternSet::compile::<&str>(&[]).unwrap().is_empty());
        assert_eq!(PatternSet::compile(&["ok", "["]).unwrap_err().0, 1);
        assert_eq!(set.written(), ["echo", "db_*"]);
        assert!(!set.matches_everything());
        assert!(PatternSet::compile(&["a", "*"])
            .unwrap()
            .matches_everything());
    }
}
