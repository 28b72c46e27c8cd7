//! Argument constraints per tool (`policy.arguments`): the DTO, its compiled form, and the
//! check of one `tools/call`.
//!
//! - Keys are tool-name patterns; every entry whose pattern matches the called tool applies.
//! - A constraint names an argument by JSON pointer (RFC 6901) and checks its value with
//!   exactly one of `glob`, `regex`, `enum`, `range` or `max_length`. An absent argument
//!   passes unless `required`. When the value is an array, `glob`, `regex`, `enum` and
//!   `range` apply to every element; `max_length` counts elements. A value of the wrong
//!   type is a violation.
//! - Only the constrained pointers are read, from the byte range of `params.arguments`, with
//!   the strict reader: the path is walked, everything else is skipped, and only the target
//!   value (a scalar or an array of scalars) is decoded. A key repeated on the path (compared
//!   after unescaping) makes the argument ambiguous, which is a violation: two upstreams may
//!   pick different copies.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::ops::Range;

use serde::Deserialize;

use crate::policy::glob::glob_error;
use crate::policy::glob::{Glob, PatternSet};
use crate::protocol::jsonrpc::{Reader, SyntaxError};
use crate::section::ConfigError;

/// Longest value text quoted in a reason, in characters.
const MAX_QUOTED_CHARS: usize = 64;

/// `policy.arguments`: tool pattern → constraints, as configured.
pub type ArgumentsDto = BTreeMap<String, Vec<ConstraintDto>>;

/// One constraint as configured.
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConstraintDto {
    pointer: String,
    glob: Option<Vec<String>>,
    regex: Option<String>,
    #[serde(rename = "enum")]
    one_of: Option<Vec<serde_json::Value>>,
    range: Option<RangeDto>,
    max_length: Option<u64>,
    #[serde(default)]
    required: bool,
}

#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RangeDto {
    min: Option<f64>,
    max: Option<f64>,
}

/// A value `enum` allows.
#[derive(Debug, Clone, PartialEq)]
enum Scalar {
    String(String),
    Number(f64),
    Bool(bool),
}

/// What a constraint checks.
#[derive(Debug, Clone)]
enum Check {
    /// The patterns, compiled and as written (for reasons).
    Glob(PatternSet, Vec<String>),
    Regex(regex_lite::Regex),
    Enum(Vec<Scalar>),
    Range {
        min: Option<f64>,
        max: Option<f64>,
    },
    MaxLength(u64),
}

/// One compiled constraint.
#[derive(Debug, Clone)]
struct Constraint {
    /// The pointer as written, for reasons.
    pointer: String,
    /// Its reference tokens, unescaped.
    tokens: Vec<String>,
    check: Check,
    required: bool,
}

/// The compiled `policy.arguments`, in tool-pattern order.
#[derive(Debug, Clone, Default)]
pub struct Arguments {
    tools: Vec<(Glob, Vec<Constraint>)>,
}

/// Compiles `policy.arguments`; `path` is where it sits in the configuration.
pub fn compile(dto: ArgumentsDto, path: &str) -> Result<Arguments, ConfigError> {
    let mut tools = Vec::with_capacity(dto.len());
    for (pattern, list) in dto {
        let at = format!("{path}.{pattern}");
        let glob = Glob::new(&pattern).map_err(|e| ConfigError {
            path: at.clone(),
            message: e.to_string(),
        })?;
        let constraints = list
            .into_iter()
            .enumerate()
            .map(|(i, c)| c.compile(&format!("{at}[{i}]")))
            .collect::<Result<_, _>>()?;
        tools.push((glob, constraints));
    }
    Ok(Arguments { tools })
}

fn error(path: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError {
        path: path.into(),
        message: message.into(),
    }
}

impl ConstraintDto {
    fn compile(self, path: &str) -> Result<Constraint, ConfigError> {
        let tokens = parse_pointer(&self.pointer)
            .map_err(|m| error(format!("{path}.pointer"), format!("{:?} {m}", self.pointer)))?;
        let given: Vec<&str> = [
            ("glob", self.glob.is_some()),
            ("regex", self.regex.is_some()),
            ("enum", self.one_of.is_some()),
            ("range", self.range.is_some()),
            ("max_length", self.max_length.is_some()),
        ]
        .into_iter()
        .filter_map(|(name, set)| set.then_some(name))
        .collect();
        if given.len() != 1 {
            let found = match given.as_slice() {
                [] => "none".to_owned(),
                many => many.join(" and "),
            };
            return Err(error(
                path,
                format!("give exactly one of glob, regex, enum, range, max_length (found {found})"),
            ));
        }
        let check = if let Some(patterns) = self.glob {
            if patterns.is_empty() {
                return Err(error(format!("{path}.glob"), "needs at least one pattern"));
            }
            let set = PatternSet::compile(&patterns)
                .map_err(|(i, e)| glob_error(&format!("{path}.glob"), i, e))?;
            Check::Glob(set, patterns)
        } else if let Some(regex) = self.regex {
            let compiled = regex_lite::Regex::new(&regex).map_err(|e| {
                error(
                    format!("{path}.regex"),
                    format!("invalid regex {regex:?}: {e}"),
                )
            })?;
            Check::Regex(compiled)
        } else if let Some(values) = self.one_of {
            if values.is_empty() {
                return Err(error(format!("{path}.enum"), "needs at least one value"));
            }
            let scalars = values
                .into_iter()
                .enumerate()
                .map(|(i, v)| {
                    match v {
                        serde_json::Value::String(s) => Ok(Scalar::String(s)),
                        serde_json::Value::Bool(b) => Ok(Scalar::Bool(b)),
                        serde_json::Value::Number(n) => n.as_f64().map(Scalar::Number).ok_or(()),
                        _ => Err(()),
                    }
                    .map_err(|()| {
                        error(
                            format!("{path}.enum[{i}]"),
                            "must be a string, a number or a boolean",
                        )
                    })
                })
                .collect::<Result<_, _>>()?;
            Check::Enum(scalars)
        } else if let Some(RangeDto { min, max }) = self.range {
            match (min, max) {
                (None, None) => {
                    return Err(error(format!("{path}.range"), "give min, max or both"))
                }
                (Some(lo), Some(hi)) if lo > hi => {
                    return Err(error(
                        format!("{path}.range"),
                        format!("min {lo} is greater than max {hi}"),
                    ))
                }
                _ => Check::Range { min, max },
            }
        } else {
            Check::MaxLength(self.max_length.unwrap_or_default())
        };
        Ok(Constraint {
            pointer: self.pointer,
            tokens,
            check,
            required: self.required,
        })
    }
}

/// The unescaped reference tokens of a JSON pointer; the whole document (`""`) is refused.
pub(crate) fn parse_pointer(pointer: &str) -> Result<Vec<String>, &'static str> {
    let Some(rest) = pointer.strip_prefix('/') else {
        return Err("must start with '/'");
    };
    rest.split('/')
        .map(|token| {
            let mut out = String::with_capacity(token.len());
            let mut chars = token.chars();
            while let Some(c) = chars.next() {
                out.push(match c {
                    '~' => match chars.next() {
                        Some('0') => '~',
                        Some('1') => '/',
                        _ => return Err("has '~' not followed by '0' or '1'"),
                    },
                    c => c,
                });
            }
            Ok(out)
        })
        .collect()
}

/// One decoded value at a pointer, or an array element.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Item<'a> {
    String(Cow<'a, str>),
    /// The number's text, as sent.
    Number(&'a str),
    Bool(bool),
    Null,
    /// An object or array, skipped.
    Container,
}

/// What a pointer finds in the arguments.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Found<'a> {
    Absent,
    One(Item<'a>),
    Array(Vec<Item<'a>>),
    /// A key on the path occurs twice.
    Ambiguous(String),
}

impl Arguments {
    pub fn is_empty(&self) -> bool {
        self.tools.is_empty()
    }

    /// The first violation by a `tools/call` of `tool` whose arguments are `body[arguments]`
    /// (`None`: no arguments), as a reason.
    pub fn violation(
        &self,
        tool: &str,
        body: &[u8],
        arguments: Option<Range<usize>>,
    ) -> Option<String> {
        let args = arguments.and_then(|r| body.get(r));
        self.tools
            .iter()
            .filter(|(glob, _)| glob.is_match(tool))
            .flat_map(|(_, constraints)| constraints)
            .find_map(|c| c.violation(tool, args))
    }
}

impl Constraint {
    fn violation(&self, tool: &str, args: Option<&[u8]>) -> Option<String> {
        let found = match args {
            None => Found::Absent,
            Some(args) => match find(&mut Reader::new(args), &self.tokens) {
                Ok(found) => found,
                Err(e) => {
                    return Some(format!(
                        "{} cannot be read: {} at byte {}",
                        self.subject(tool),
                        e.reason,
                        e.offset
                    ))
                }
            },
        };
        match found {
            Found::Absent if self.required => Some(format!("{} is required", self.subject(tool))),
            Found::Absent => None,
            Found::Ambiguous(key) => Some(format!(
                "{} is ambiguous: key {:?} occurs twice on its path",
                self.subject(tool),
                quote_limit(&key)
            )),
            Found::One(item) => self
                .check_one(&item)
                .map(|why| format!("{}: {why}", self.subject(tool))),
            Found::Array(items) => self.check_array(tool, &items),
        }
    }

    /// How reasons name this argument.
    fn subject(&self, tool: &str) -> String {
        format!("argument {:?} of tool {:?}", self.pointer, tool)
    }

    fn check_array(&self, tool: &str, items: &[Item<'_>]) -> Option<String> {
        if let Check::MaxLength(max) = self.check {
            return (items.len() as u64 > max).then(|| {
                format!(
                    "{}: {} elements exceed the maximum of {max}",
                    self.subject(tool),
                    items.len()
                )
            });
        }
        items.iter().enumerate().find_map(|(i, item)| {
            self.check_one(item).map(|why| {
                format!(
                    "argument {:?} of tool {tool:?}: {why}",
                    format!("{}/{i}", self.pointer)
                )
            })
        })
    }

    /// Why one value fails the check, if it does.
    fn check_one(&self, item: &Item<'_>) -> Option<String> {
        let shown = show(item);
        match (&self.check, item) {
            (Check::Glob(set, patterns), Item::String(s)) => {
                (!set.is_match(s)).then(|| format!("{shown} does not match {patterns:?}"))
            }
            (Check::Regex(re), Item::String(s)) => {
                (!re.is_match(s)).then(|| format!("{shown} does not match regex {:?}", re.as_str()))
            }
            (Check::Enum(allowed), _) => {
                let ok = allowed.iter().any(|a| match (a, item) {
                    (Scalar::String(a), Item::String(s)) => a == s,
                    (Scalar::Bool(a), Item::Bool(b)) => a == b,
                    (Scalar::Number(a), Item::Number(n)) => n.parse::<f64>().ok() == Some(*a),
                    _ => false,
                });
                (!ok).then(|| format!("{shown} is not one of {}", show_scalars(allowed)))
            }
            (Check::Range { min, max }, Item::Number(n)) => {
                let v = n.parse::<f64>().ok()?;
                if let Some(min) = min.filter(|m| v < *m) {
                    Some(format!("{shown} is below the minimum {min}"))
                } else {
                    max.filter(|m| v > *m)
                        .map(|max| format!("{shown} is above the maximum {max}"))
                }
            }
            (Check::MaxLength(max), Item::String(s)) => {
                let n = s.chars().count();
                (n as u64 > *max).then(|| format!("{n} characters exceed the maximum of {max}"))
            }
            (check, _) => Some(format!("expected {}, got {shown}", check.expects())),
        }
    }
}

impl Check {
    /// The type of value the check accepts, for wrong-type reasons.
    fn expects(&self) -> &'static str {
        match self {
            Check::Glob(..) | Check::Regex(_) => "a string",
            Check::Enum(_) => "a string, number or boolean",
            Check::Range { .. } => "a number",
            Check::MaxLength(_) => "a string or an array",
        }
    }
}

/// A value as shown in reasons: JSON-like, long strings and numbers cut short.
fn show(item: &Item<'_>) -> String {
    match item {
        Item::String(s) => format!("{:?}", quote_limit(s)),
        Item::Number(n) => quote_limit(n).into_owned(),
        Item::Bool(b) => b.to_string(),
        Item::Null => "null".into(),
        Item::Container => "an object or array".into(),
    }
}

fn show_scalars(values: &[Scalar]) -> String {
    let mut out = String::from("[");
    for (i, v) in values.iter().enumerate() {
        let sep = if i == 0 { "" } else { ", " };
        let _ = match v {
            Scalar::String(s) => write!(out, "{sep}{s:?}"),
            Scalar::Number(n) => write!(out, "{sep}{n}"),
            Scalar::Bool(b) => write!(out, "{sep}{b}"),
        };
    }
    out.push(']');
    out
}

/// `text` cut to [`MAX_QUOTED_CHARS`] characters, with `…` when cut.
fn quote_limit(text: &str) -> Cow<'_, str> {
    match text.char_indices().nth(MAX_QUOTED_CHARS) {
        Some((end, _)) => Cow::Owned(format!("{}…", text.get(..end).unwrap_or_default())),
        None => Cow::Borrowed(text),
    }
}

/// Walks `tokens` from the value at the cursor, consuming that whole value.
pub(crate) fn find<'a>(r: &mut Reader<'a>, tokens: &[String]) -> Result<Found<'a>, SyntaxError> {
    let Some((token, rest)) = tokens.split_first() else {
        return read_target(r);
    };
    let mut found = Found::Absent;
    match r.peek() {
        Some(b'{') => {
            r.begin_object()?;
            let mut first = true;
            while let Some(key) = r.next_key(&mut first)? {
                if key != token.as_str() {
                    r.skip_value()?;
                } else if found == Found::Absent {
                    found = find(r, rest)?;
                } else {
                    r.skip_value()?;
                    found = Found::Ambiguous(key.into_owned());
                }
            }
        }
        Some(b'[') => {
            let index = array_index(token);
            r.begin_array()?;
            let mut first = true;
            let mut i = 0usize;
            while r.next_element(&mut first)? {
                if Some(i) == index {
                    found = find(r, rest)?;
                } else {
                    r.skip_value()?;
                }
                i += 1;
            }
        }
        _ => r.skip_value()?,
    }
    Ok(found)
}

/// The count the value at `tokens` in `args` (a JSON object's text) stands for: a
/// non-negative number rounded up, or an array's length. `None` when it is absent,
/// ambiguous, unreadable or of another type.
pub(crate) fn count_at(args: &[u8], tokens: &[String]) -> Option<u64> {
    match find(&mut Reader::new(args), tokens).ok()? {
        Found::One(Item::Number(text)) => {
            let n = text.parse::<f64>().ok().filter(|n| *n >= 0.0)?;
            // `as` saturates; the reader refuses numbers beyond f64.
            Some(n.ceil() as u64)
        }
        Found::Array(items) => Some(items.len() as u64),
        _ => None,
    }
}

/// An RFC 6901 array index: `0` or digits without a leading zero.
fn array_index(token: &str) -> Option<usize> {
    let digits = !token.is_empty() && token.bytes().all(|b| b.is_ascii_digit());
    (digits && (token == "0" || !token.starts_with('0')))
        .then(|| token.parse().ok())
        .flatten()
}

/// Decodes the target value: a scalar, or an array whose scalar elements are decoded.
fn read_target<'a>(r: &mut Reader<'a>) -> Result<Found<'a>, SyntaxError> {
    if r.peek() != Some(b'[') {
        return read_item(r).map(Found::One);
    }
    r.begin_array()?;
    let mut items = Vec::new();
    let mut first = true;
    while r.next_element(&mut first)? {
        items.push(read_item(r)?);
    }
    Ok(Found::Array(items))
}

fn read_item<'a>(r: &mut Reader<'a>) -> Result<Item<'a>, SyntaxError> {
    let item = match r.peek() {
        Some(b'"') => return r.read_string().map(Item::String),
        Some(b'-' | b'0'..=b'9') => return r.read_number().map(Item::Number),
        Some(b't') => Item::Bool(true),
        Some(b'f') => Item::Bool(false),
        Some(b'n') => Item::Null,
        _ => Item::Container,
    };
    r.skip_value()?;
    Ok(item)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn arguments(json: &str) -> Arguments {
        let config = format!(r#"{{"policy":{{"arguments":{json}}}}}"#);
        match Config::from_json(config.as_bytes()) {
            Ok(c) => c.policy.arguments().clone(),
            Err(e) => panic!("{json}: {e}"),
        }
    }

    /// The violation for a call of `tool` with `args` (the raw `arguments` JSON, or `None`).
    fn check(a: &Arguments, tool: &str, args: Option<&str>) -> Option<String> {
        let body = args.unwrap_or_default().as_bytes();
        a.violation(tool, body, args.map(|_| 0..body.len()))
    }

    #[test]
    fn constraint_kinds_table() {
        let a = arguments(
            r#"{
            "send_email": [
                {"pointer": "/to", "glob": ["*@example.com"]},
                {"pointer": "/count", "range": {"min": 1, "max": 10}},
                {"pointer": "/mode", "enum": ["draft", "send", 3, true]},
                {"pointer": "/subject", "max_length": 5},
                {"pointer": "/path", "regex": "^/tmp/[a-z]+$", "required": true}
            ],
            "db_*": [{"pointer": "/query", "max_length": 4}],
            "*": [{"pointer": "/a~1b/~0c", "enum": ["ok"]}, {"pointer": "/items/0/name", "glob": ["n*"]}]
        }"#,
        );
        let p = r#""path":"/tmp/x""#;
        let cases: Vec<(&str, String, Option<&str>)> = vec![
            ("send_email", format!(r#"{{{p}}}"#), None),
            (
                "send_email",
                format!(
                    r#"{{{p},"to":"bob@example.com","count":10,"mode":"draft","subject":"héllo"}}"#
                ),
                None,
            ),
            (
                "send_email",
                format!(r#"{{{p},"to":"eve@evil.test"}}"#),
                Some(
                    r#"argument "/to" of tool "send_email": "eve@evil.test" does not match ["*@example.com"]"#,
                ),
            ),
            (
                "send_email",
                format!(r#"{{{p},"to":"\u0065ve@example.com"}}"#),
                None,
            ),
            (
                "send_email",
                format!(r#"{{{p},"to":"eve@example.co\u006d\u0021"}}"#),
                Some(
                    r#"argument "/to" of tool "send_email": "eve@example.com!" does not match ["*@example.com"]"#,
                ),
            ),
            (
                "send_email",
                format!(r#"{{{p},"to":["a@example.com","b@example.com"]}}"#),
                None,
            ),
            (
                "send_email",
                format!(r#"{{{p},"to":["a@example.com","eve@evil.test"]}}"#),
                Some(
                    r#"argument "/to/1" of tool "send_email": "eve@evil.test" does not match ["*@example.com"]"#,
                ),
            ),
            ("send_email", format!(r#"{{{p},"to":[]}}"#), None),
            (
                "send_email",
                format!(r#"{{{p},"to":7}}"#),
                Some(r#"argument "/to" of tool "send_email": expected a string, got 7"#),
            ),
            (
                "send_email",
                format!(r#"{{{p},"to":{{"a":1}}}}"#),
                Some(
                    r#"argument "/to" of tool "send_email": expected a string, got an object or array"#,
                ),
            ),
            (
                "send_email",
                format!(r#"{{{p},"to":["a@example.com",["x"]]}}"#),
                Some(
                    r#"argument "/to/1" of tool "send_email": expected a string, got an object or array"#,
                ),
            ),
            (
                "send_email",
                format!(r#"{{{p},"count":0}}"#),
                Some(r#"argument "/count" of tool "send_email": 0 is below the minimum 1"#),
            ),
            (
                "send_email",
                format!(r#"{{{p},"count":10.5}}"#),
                Some(r#"argument "/count" of tool "send_email": 10.5 is above the maximum 10"#),
            ),
            ("send_email", format!(r#"{{{p},"count":[1,2,1e1]}}"#), None),
            (
                "send_email",
                format!(r#"{{{p},"count":"5"}}"#),
                Some(r#"argument "/count" of tool "send_email": expected a number, got "5""#),
            ),
            (
                "send_email",
                format!(r#"{{{p},"count":null}}"#),
                Some(r#"argument "/count" of tool "send_email": expected a number, got null"#),
            ),
            ("send_email", format!(r#"{{{p},"mode":"send"}}"#), None),
            ("send_email", format!(r#"{{{p},"mode":3.0}}"#), None),
            ("send_email", format!(r#"{{{p},"mode":true}}"#), None),
            (
                "send_email",
                format!(r#"{{{p},"mode":["draft",false]}}"#),
                Some(
                    r#"argument "/mode/1" of tool "send_email": false is not one of ["draft", "send", 3, true]"#,
                ),
            ),
            (
                "send_email",
                format!(r#"{{{p},"mode":"Draft"}}"#),
                Some(
                    r#"argument "/mode" of tool "send_email": "Draft" is not one of ["draft", "send", 3, true]"#,
                ),
            ),
            (
                "send_email",
                format!(r#"{{{p},"subject":"héllo!"}}"#),
                Some(
                    r#"argument "/subject" of tool "send_email": 6 characters exceed the maximum of 5"#,
                ),
            ),
            (
                "send_email",
                format!(r#"{{{p},"subject":[1,2,3,4,5,6]}}"#),
                Some(
                    r#"argument "/subject" of tool "send_email": 6 elements exceed the maximum of 5"#,
                ),
            ),
            (
                "send_email",
                format!(r#"{{{p},"subject":true}}"#),
                Some(
                    r#"argument "/subject" of tool "send_email": expected a string or an array, got true"#,
                ),
            ),
            (
                "send_email",
                r#"{"path":"/tmp/X"}"#.into(),
                Some(
                    r#"argument "/path" of tool "send_email": "/tmp/X" does not match regex "^/tmp/[a-z]+$""#,
                ),
            ),
            (
                "send_email",
                r#"{"to":"bob@example.com"}"#.into(),
                Some(r#"argument "/path" of tool "send_email" is required"#),
            ),
            (
                "send_email",
                format!(r#"{{{p},"to":"bob@example.com","t\u006f":"eve@evil.test"}}"#),
                Some(
                    r#"argument "/to" of tool "send_email" is ambiguous: key "to" occurs twice on its path"#,
                ),
            ),
            (
                "db_query",
                r#"{"query":"select"}"#.into(),
                Some(
                    r#"argument "/query" of tool "db_query": 6 characters exceed the maximum of 4"#,
                ),
            ),
            (
                "db_query",
                r#"{"other":{"query":"select"},"query":"sel"}"#.into(),
                None,
            ),
            ("xdb_query", r#"{"query":"select"}"#.into(), None),
            (
                "any",
                r#"{"a/b":{"~c":"ok"},"a~1b":{"~c":"no"}}"#.into(),
                None,
            ),
            (
                "any",
                r#"{"a/b":{"~c":"no"}}"#.into(),
                Some(r#"argument "/a~1b/~0c" of tool "any": "no" is not one of ["ok"]"#),
            ),
            ("any", r#"{"items":[{"name":"nope"}]}"#.into(), None),
            (
                "any",
                r#"{"items":[{"name":"bad"},{"name":"nope"}]}"#.into(),
                Some(r#"argument "/items/0/name" of tool "any": "bad" does not match ["n*"]"#),
            ),
            ("any", r#"{"items":[{"x":1},{"name":"bad"}]}"#.into(), None),
            (
                "any",
                r#"{"items":{"0":{"name":"bad"}}}"#.into(),
                Some(r#"argument "/items/0/name" of tool "any": "bad" does not match ["n*"]"#),
            ),
            (
                "any",
                r#"{"items":[{"name":"n","name":"bad"}]}"#.into(),
                Some(
                    r#"argument "/items/0/name" of tool "any" is ambiguous: key "name" occurs twice on its path"#,
                ),
            ),
            (
                "any",
                r#"{"items":[{"name":"n"}],"items":[]}"#.into(),
                Some(
                    r#"argument "/items/0/name" of tool "any" is ambiguous: key "items" occurs twice on its path"#,
                ),
            ),
            ("any", r#"{"x":{"items":1,"items":2}}"#.into(), None),
            ("any", r#"[{"name":"bad"}]"#.into(), None),
        ];
        for (tool, args, want) in &cases {
            assert_eq!(
                check(&a, tool, Some(args)).as_deref(),
                *want,
                "{tool} {args}"
            );
        }
        // No `arguments` at all: every argument is absent.
        assert_eq!(
            check(&a, "send_email", None).as_deref(),
            Some(r#"argument "/path" of tool "send_email" is required"#)
        );
        assert_eq!(check(&a, "db_query", None), None);
    }

    #[test]
    fn long_values_are_cut_in_reasons() {
        let a = arguments(r#"{"t":[{"pointer":"/v","enum":["x"]}]}"#);
        let long = "y".repeat(100);
        let got = check(&a, "t", Some(&format!(r#"{{"v":"{long}"}}"#))).unwrap();
        assert_eq!(
            got,
            format!(
                r#"argument "/v" of tool "t": "{}…" is not one of ["x"]"#,
                "y".repeat(MAX_QUOTED_CHARS)
            )
        );
    }

    #[test]
    fn pointers_and_indexes() {
        assert_eq!(
            parse_pointer("/a~1b/~0c/0/"),
            Ok(vec!["a/b".into(), "~c".into(), "0".into(), String::new()])
        );
        assert!(parse_pointer("a").is_err());
        assert!(parse_pointer("").is_err());
        assert!(parse_pointer("/a~2").is_err());
        assert!(parse_pointer("/a~").is_err());
        for (token, want) in [
            ("0", Some(0)),
            ("12", Some(12)),
            ("01", None),
            ("-", None),
            ("", None),
            ("1a", None),
        ] {
            assert_eq!(array_index(token), want, "{token:?}");
        }
    }

    #[test]
    fn config_errors_name_the_path() {
        let cases = [
            (r#"{"send_email":[{"pointer":"/a","max_length":1},{"pointer":"/b","max_length":1},{"pointer":"to","glob":["x"]}]}"#, r#"policy.arguments.send_email[2].pointer: "to" must start with '/'"#),
            (r#"{"t":[{"pointer":"/a~2","max_length":1}]}"#, r#"policy.arguments.t[0].pointer: "/a~2" has '~' not followed by '0' or '1'"#),
            (r#"{"t":[{"pointer":"/a","regex":"(x"}]}"#, "policy.arguments.t[0].regex: invalid regex \"(x\": "),
            (r#"{"t":[{"pointer":"/a","glob":["ok","["]}]}"#, r#"policy.arguments.t[0].glob[1]: invalid pattern "[": unclosed or empty '['"#),
            (r#"{"t":[{"pointer":"/a","glob":[]}]}"#, "policy.arguments.t[0].glob: needs at least one pattern"),
            (r#"{"t":[{"pointer":"/a","glob":["x"],"regex":"x"}]}"#, "policy.arguments.t[0]: give exactly one of glob, regex, enum, range, max_length (found glob and regex)"),
            (r#"{"t":[{"pointer":"/a","required":true}]}"#, "policy.arguments.t[0]: give exactly one of glob, regex, enum, range, max_length (found none)"),
            (r#"{"t":[{"pointer":"/a","range":{"min":5,"max":1}}]}"#, "policy.arguments.t[0].range: min 5 is greater than max 1"),
            (r#"{"t":[{"pointer":"/a","range":{}}]}"#, "policy.arguments.t[0].range: give min, max or both"),
            (r#"{"t":[{"pointer":"/a","enum":["x",null]}]}"#, "policy.arguments.t[0].enum[1]: must be a string, a number or a boolean"),
            (r#"{"t":[{"pointer":"/a","enum":[]}]}"#, "policy.arguments.t[0].enum: needs at least one value"),
            (r#"{"t[":[{"pointer":"/a","max_length":1}]}"#, r#"policy.arguments.t[: invalid pattern "t[": unclosed or empty '['"#),
            (r#"{"t":[{"pointer":"/a","max_length":-1}]}"#, "policy.arguments.t[0].max_length: invalid value"),
            (r#"{"t":[{"pointer":"/a","globs":["x"]}]}"#, "policy.arguments.t[0].globs: unknown field `globs`"),
            (r#"{"t":[{"glob":["x"]}]}"#, "policy.arguments.t[0]: missing field `pointer`"),
        ];
        for (json, want) in cases {
            let config = format!(r#"{{"policy":{{"arguments":{json}}}}}"#);
            let got = Config::from_json(config.as_bytes())
                .unwrap_err()
                .to_string();
            assert!(got.starts_with(want), "{json}\n got: {got}\nwant: {want}");
        }
    }
}
