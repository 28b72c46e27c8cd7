//! The configuration's JSON, read into a tree that knows where each value sits, and a serde
//! `Deserializer` over that tree that names the path and line/column of a value at fault.
//!
//! serde_json checks the syntax first (its messages and positions; [`syntax`] names the path
//! being read there). The derived DTOs then see the tree with serde_json's semantics (numbers
//! as it reads them, an enum from a string or a one-key object, duplicates as they come) and
//! errors placed where its streaming reader would place them; a struct is read from an
//! object only. One small deserializer keeps each derive instantiated once, where the wrapper
//! around the streaming reader it replaces (serde_path_to_error) was a sixth of the module.

use std::fmt;

mod de;
mod syntax;

use serde::de::DeserializeOwned;
use serde_json::Value;

use de::{De, DeError, Path};

/// A refused document: where (path, then line and column) and why.
#[derive(Debug)]
pub struct Error {
    /// Dotted path with `[index]` steps; empty for the document itself.
    pub path: String,
    pub message: String,
    /// 1-based line and the column serde_json reports, when the error has a place.
    pub position: Option<(usize, usize)>,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        match self.position {
            Some((line, column)) => write!(f, " at line {line} column {column}"),
            None => Ok(()),
        }
    }
}

/// Reads `text` as JSON into `T`.
pub fn from_slice<T: DeserializeOwned>(text: &[u8]) -> Result<T, Error> {
    if let Err(e) = serde_json::from_slice::<Value>(text) {
        let message = e.to_string();
        let message = match message.rfind(" at line ") {
            Some(end) if e.line() > 0 => message.get(..end).unwrap_or_default().to_owned(),
            _ => message,
        };
        let position = (e.line() > 0).then(|| (e.line(), e.column()));
        return Err(Error {
            path: syntax::path_at(
                text,
                offset(text, e.line(), e.column()),
                e.classify() == serde_json::error::Category::Eof,
            ),
            message,
            position,
        });
    }
    let malformed = || Error {
        path: String::new(),
        message: "malformed JSON".into(),
        position: None,
    };
    let mut reader = Reader { text, at: 0 };
    let root = reader.node(0).ok_or_else(malformed)?;
    let de = De {
        node: &root,
        text,
        path: &Path::Root,
    };
    T::deserialize(de).map_err(|DeError(e)| {
        let position = e.offset.map(|at| position(text, at));
        Error {
            path: e.path.unwrap_or_default(),
            message: e.message,
            position,
        }
    })
}

/// serde_json's line and column of byte offset `at` (the column counts bytes).
fn position(text: &[u8], at: usize) -> (usize, usize) {
    let before = text.get(..at).unwrap_or(text);
    let line_start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    let lines = before.iter().filter(|&&b| b == b'\n').count();
    (lines + 1, at - line_start)
}

/// The byte offset of serde_json's line and column (the inverse of [`position`]).
fn offset(text: &[u8], line: usize, column: usize) -> usize {
    let line_start = text
        .iter()
        .enumerate()
        .filter(|(_, &b)| b == b'\n')
        .nth(line.saturating_sub(2))
        .map_or(0, |(i, _)| i + 1);
    let line_start = if line <= 1 { 0 } else { line_start };
    line_start + column
}

/// A JSON value and the byte range it spans.
struct Node {
    start: usize,
    end: usize,
    kind: Kind,
}

enum Kind {
    /// Null, a boolean, a number or a string, as serde_json reads it.
    Scalar(Value),
    Array(Vec<Node>),
    /// Members in document order, duplicates included, each with where its key ends.
    Object(Vec<(String, usize, Node)>),
}

/// Builds the tree from text serde_json has already accepted; `None` if it is not JSON after
/// all (cannot happen, but the filter fails closed rather than trust that).
struct Reader<'t> {
    text: &'t [u8],
    at: usize,
}

/// serde_json's nesting limit; the syntax check has enforced it already.
const MAX_DEPTH: usize = 128;

impl Reader<'_> {
    fn peek(&self) -> Option<u8> {
        self.text.get(self.at).copied()
    }

    fn skip_whitespace(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\n' | b'\t' | b'\r')) {
            self.at += 1;
        }
    }

    fn eat(&mut self, byte: u8) -> bool {
        self.skip_whitespace();
        let found = self.peek() == Some(byte);
        self.at += usize::from(found);
        found
    }

    fn node(&mut self, depth: usize) -> Option<Node> {
        self.skip_whitespace();
        let start = self.at;
        let kind = match self.peek()? {
            _ if depth > MAX_DEPTH => return None,
            b'{' => {
                self.at += 1;
                let mut members = Vec::new();
                if !self.eat(b'}') {
                    loop {
                        self.skip_whitespace();
                        let Value::String(key) = self.scalar()? else {
                            return None;
                        };
                        let key_end = self.at;
                        if !self.eat(b':') {
                            return None;
                        }
                        members.push((key, key_end, self.node(depth + 1)?));
                        if !self.eat(b',') {
                            break;
                        }
                    }
                    self.eat(b'}').then_some(())?;
                }
                Kind::Object(members)
            }
            b'[' => {
                self.at += 1;
                let mut items = Vec::new();
                if !self.eat(b']') {
                    loop {
                        items.push(self.node(depth + 1)?);
                        if !self.eat(b',') {
                            break;
                        }
                    }
                    self.eat(b']').then_some(())?;
                }
                Kind::Array(items)
            }
            _ => Kind::Scalar(self.scalar()?),
        };
        Some(Node {
            start,
            end: self.at,
            kind,
        })
    }

    /// The string, number or literal at the cursor, decoded by serde_json itself.
    fn scalar(&mut self) -> Option<Value> {
        let start = self.at;
        if self.peek() == Some(b'"') {
            self.at += 1;
            loop {
                match self.peek()? {
                    b'"' => break,
                    b'\\' => self.at += 2,
                    _ => self.at += 1,
                }
            }
            self.at += 1;
        } else {
            while !matches!(
                self.peek(),
                None | Some(b',' | b']' | b'}' | b':' | b' ' | b'\n' | b'\t' | b'\r')
            ) {
                self.at += 1;
            }
        }
        let value = serde_json::from_slice(self.text.get(start..self.at)?).ok()?;
        (!matches!(value, Value::Array(_) | Value::Object(_))).then_some(value)
    }
}
