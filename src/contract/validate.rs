//! Checking a value against a compiled [`Schema`]: the first violation, as the JSON pointer
//! of the value at fault and the keyword that failed.
//!
//! Decides only pass or the first violation; never reports, logs or echoes the value
//! itself. Work is bounded: recursion by the value's nesting plus [`MAX_EVAL_DEPTH`], and
//! the number of subschema evaluations by a budget proportional to the value's size, so
//! a schema that applies itself in place (`anyOf` of a `$ref` to itself) cannot make a call
//! cost more than a bounded amount; exhausting it is a violation (keyword `budget`).

use std::collections::HashSet;

use serde_json::Value;

use super::json::{canonical_key, equal, push_token};
use super::schema::{ty, Check, Format, Schema};

/// Deepest chain of subschema evaluations.
pub const MAX_EVAL_DEPTH: usize = 256;
/// Evaluations every call may use, before adding a few per value in the arguments.
const BASE_BUDGET: u64 = 100_000;
const BUDGET_PER_VALUE: u64 = 64;

/// The first thing that fails: where in the arguments (JSON pointer) and which keyword.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub pointer: String,
    pub keyword: &'static str,
}

impl Schema {
    /// Checks `value`; `Err`: the first violation found.
    pub fn validate(&self, value: &Value) -> Result<(), Violation> {
        let mut run = Run {
            schema: self,
            budget: BASE_BUDGET
                .saturating_add(BUDGET_PER_VALUE.saturating_mul(count_values(value))),
        };
        let mut pointer = String::new();
        run.check(0, value, &mut pointer, 0)
    }
}

fn count_values(value: &Value) -> u64 {
    match value {
        Value::Array(items) => items.iter().map(count_values).sum::<u64>() + 1,
        Value::Object(map) => map.values().map(count_values).sum::<u64>() + 1,
        _ => 1,
    }
}

struct Run<'s> {
    schema: &'s Schema,
    budget: u64,
}

fn violation(pointer: &str, keyword: &'static str) -> Result<(), Violation> {
    Err(Violation {
        pointer: pointer.to_owned(),
        keyword,
    })
}

fn type_bits(value: &Value) -> u8 {
    match value {
        Value::Null => ty::NULL,
        Value::Bool(_) => ty::BOOLEAN,
        Value::Number(n) if n.is_i64() || n.is_u64() => ty::INTEGER | ty::NUMBER,
        Value::Number(n) if n.as_f64().is_some_and(|f| f.fract() == 0.0) => {
            ty::INTEGER | ty::NUMBER
        }
        Value::Number(_) => ty::NUMBER,
        Value::String(_) => ty::STRING,
        Value::Array(_) => ty::ARRAY,
        Value::Object(_) => ty::OBJECT,
    }
}

impl Run<'_> {
    fn check(
        &mut self,
        node: usize,
        value: &Value,
        pointer: &mut String,
        depth: usize,
    ) -> Result<(), Violation> {
        self.budget = match self.budget.checked_sub(1) {
            Some(left) if depth <= MAX_EVAL_DEPTH => left,
            _ => return violation(pointer, "budget"),
        };
        let schema = self.schema;
        let Some(checks) = schema.nodes.get(node) else {
            return Ok(());
        };
        for check in checks {
            self.one(check, value, pointer, depth)?;
        }
        Ok(())
    }

    /// Whether `value` passes `node`, for applicators that only need a yes or no. Budget
    /// exhaustion is not a "no": it propagates.
    fn passes(
        &mut self,
        node: usize,
        value: &Value,
        pointer: &mut String,
        depth: usize,
    ) -> Result<bool, Violation> {
        match self.check(node, value, pointer, depth + 1) {
            Ok(()) => Ok(true),
            Err(v) if v.keyword == "budget" => Err(v),
            Err(_) => Ok(false),
        }
    }

    /// Checks a member or element: `pointer` gets `token` for the call.
    fn child(
        &mut self,
        node: usize,
        value: &Value,
        pointer: &mut String,
        token: Token<'_>,
        depth: usize,
    ) -> Result<(), Violation> {
        let len = pointer.len();
        match token {
            Token::Key(key) => push_token(pointer, key),
            Token::Index(i) => {
                use std::fmt::Write as _;
                let _ = write!(pointer, "/{i}");
            }
        }
        let result = self.check(node, value, pointer, depth + 1);
        pointer.truncate(len);
        result
    }

    fn one(
        &mut self,
        check: &Check,
        value: &Value,
        pointer: &mut String,
        depth: usize,
    ) -> Result<(), Violation> {
        let number = value.as_f64();
        let failed = match check {
            Check::False => Some("false"),
            Check::Type(bits) => (type_bits(value) & bits == 0).then_some("type"),
            Check::Enum(options) => (!options.iter().any(|o| equal(o, value))).then_some("enum"),
            Check::Const(c) => (!equal(c, value)).then_some("const"),
            Check::Minimum(m) => number.is_some_and(|n| n < *m).then_some("minimum"),
            Check::Maximum(m) => number.is_some_and(|n| n > *m).then_some("maximum"),
            Check::ExclusiveMinimum(m) => number
                .is_some_and(|n| n <= *m)
                .then_some("exclusiveMinimum"),
            Check::ExclusiveMaximum(m) => number
                .is_some_and(|n| n >= *m)
                .then_some("exclusiveMaximum"),
            Check::MultipleOf(m) => number
                .is_some_and(|n| !multiple_of(n, *m))
                .then_some("multipleOf"),
            Check::MinLength(min) => chars(value)
                .is_some_and(|n| n < *min)
                .then_some("minLength"),
            Check::MaxLength(max) => chars(value)
                .is_some_and(|n| n > *max)
                .then_some("maxLength"),
            Check::Pattern(regex) => value
                .as_str()
                .is_some_and(|s| !regex.is_match(s))
                .then_some("pattern"),
            Check::Format(format) => value
                .as_str()
                .is_some_and(|s| !matches_format(*format, s))
                .then_some("format"),
            Check::MinItems(min) => len(value.as_array())
                .is_some_and(|n| n < *min)
                .then_some("minItems"),
            Check::MaxItems(max) => len(value.as_array())
                .is_some_and(|n| n > *max)
                .then_some("maxItems"),
            Check::UniqueItems => value
                .as_array()
                .is_some_and(|items| !unique(items))
                .then_some("uniqueItems"),
            Check::MinProperties(min) => len(value.as_object())
                .is_some_and(|n| n < *min)
                .then_some("minProperties"),
            Check::MaxProperties(max) => len(value.as_object())
                .is_some_and(|n| n > *max)
                .then_some("maxProperties"),
            Check::Required(names) => {
                if let Some(map) = value.as_object() {
                    if let Some(missing) = names.iter().find(|n| !map.contains_key(*n)) {
                        let mut at = pointer.clone();
                        push_token(&mut at, missing);
                        return violation(&at, "required");
                    }
                }
                None
            }
            Check::DependentRequired(rules) => {
                if let Some(map) = value.as_object() {
                    for (_, names) in rules.iter().filter(|(k, _)| map.contains_key(k)) {
                        if let Some(missing) = names.iter().find(|n| !map.contains_key(*n)) {
                            let mut at = pointer.clone();
                            push_token(&mut at, missing);
                            return violation(&at, "dependentRequired");
                        }
                    }
                }
                None
            }
            Check::DependentSchemas(rules) => {
                if let Some(map) = value.as_object() {
                    for (_, node) in rules.iter().filter(|(k, _)| map.contains_key(k)) {
                        self.check(*node, value, pointer, depth + 1)?;
                    }
                }
                None
            }
            Check::Items { prefix, rest } => {
                if let Some(items) = value.as_array() {
                    for (i, item) in items.iter().enumerate() {
                        let node = match prefix.get(i) {
                            Some(node) => Some(*node),
                            None => *rest,
                        };
                        if let Some(node) = node {
                            self.child(node, item, pointer, Token::Index(i), depth)?;
                        }
                    }
                }
                None
            }
            Check::Contains { node, min, max } => {
                if let Some(items) = value.as_array() {
                    let mut found = 0u64;
                    for item in items {
                        if self.passes(*node, item, pointer, depth)? {
                            found += 1;
                        }
                    }
                    if found < *min || max.is_some_and(|m| found > m) {
                        return violation(pointer, "contains");
                    }
                }
                None
            }
            Check::Properties {
                named,
                patterns,
                additional,
            } => {
                if let Some(map) = value.as_object() {
                    for (key, member) in map {
                        let mut matched = false;
                        if let Some((_, node)) = named.iter().find(|(name, _)| name == key) {
                            matched = true;
                            self.child(*node, member, pointer, Token::Key(key), depth)?;
                        }
                        for (_, node) in patterns.iter().filter(|(r, _)| r.is_match(key)) {
                            matched = true;
                            self.child(*node, member, pointer, Token::Key(key), depth)?;
                        }
                        match additional {
                            Some(node) if !matched => {
                                let false_schema = matches!(
                                    self.schema.nodes.get(*node).map(Vec::as_slice),
                                    Some([Check::False])
                                );
                                if false_schema {
                                    let mut at = pointer.clone();
                                    push_token(&mut at, key);
                                    return violation(&at, "additionalProperties");
                                }
                                self.child(*node, member, pointer, Token::Key(key), depth)?;
                            }
                            _ => {}
                        }
                    }
                }
                None
            }
            Check::PropertyNames(node) => {
                if let Some(map) = value.as_object() {
                    for key in map.keys() {
                        let name = Value::String(key.clone());
                        if !self.passes(*node, &name, pointer, depth)? {
                            let mut at = pointer.clone();
                            push_token(&mut at, key);
                            return violation(&at, "propertyNames");
                        }
                    }
                }
                None
            }
            Check::AllOf(nodes) => {
                for node in nodes {
                    self.check(*node, value, pointer, depth + 1)?;
                }
                None
            }
            Check::AnyOf(nodes) => {
                let mut any = false;
                for node in nodes {
                    if self.passes(*node, value, pointer, depth)? {
                        any = true;
                        break;
                    }
                }
                (!any).then_some("anyOf")
            }
            Check::OneOf(nodes) => {
                let mut passed = 0;
                for node in nodes {
                    if self.passes(*node, value, pointer, depth)? {
                        passed += 1;
                    }
                }
                (passed != 1).then_some("oneOf")
            }
            Check::Not(node) => self.passes(*node, value, pointer, depth)?.then_some("not"),
            Check::If {
                condition,
                then,
                otherwise,
            } => {
                let branch = if self.passes(*condition, value, pointer, depth)? {
                    then
                } else {
                    otherwise
                };
                if let Some(node) = branch {
                    self.check(*node, value, pointer, depth + 1)?;
                }
                None
            }
            Check::Ref(node) => {
                self.check(*node, value, pointer, depth + 1)?;
                None
            }
        };
        match failed {
            Some(keyword) => violation(pointer, keyword),
            None => Ok(()),
        }
    }
}

enum Token<'a> {
    Key(&'a str),
    Index(usize),
}

/// Length in Unicode code points, as JSON Schema counts it.
fn chars(value: &Value) -> Option<u64> {
    value.as_str().map(|s| s.chars().count() as u64)
}

fn len<T: Collection>(value: Option<&T>) -> Option<u64> {
    value.map(|c| c.size() as u64)
}

trait Collection {
    fn size(&self) -> usize;
}

impl Collection for Vec<Value> {
    fn size(&self) -> usize {
        self.len()
    }
}

impl Collection for serde_json::Map<String, Value> {
    fn size(&self) -> usize {
        self.len()
    }
}

fn multiple_of(n: f64, m: f64) -> bool {
    let q = n / m;
    q.is_finite() && (q - q.round()).abs() <= 1e-9 * q.abs().max(1.0)
}

fn unique(items: &[Value]) -> bool {
    let mut seen = HashSet::with_capacity(items.len());
    items.iter().all(|item| {
        let mut key = String::new();
        canonical_key(item, &mut key);
        seen.insert(key)
    })
}

fn matches_format(format: Format, s: &str) -> bool {
    match format {
        Format::Date => is_date(s),
        Format::DateTime => s
            .split_once(['T', 't'])
            .is_some_and(|(date, time)| is_date(date) && is_time(time)),
        Format::Email => s.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && !domain.contains('@')
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
        }),
        Format::Uuid => {
            s.len() == 36
                && s.char_indices().all(|(i, c)| match i {
                    8 | 13 | 18 | 23 => c == '-',
                    _ => c.is_ascii_hexdigit(),
                })
        }
        Format::Ipv4 => s.parse::<std::net::Ipv4Addr>().is_ok(),
        Format::Ipv6 => s.parse::<std::net::Ipv6Addr>().is_ok(),
        Format::Uri => s.split_once(':').is_some_and(|(scheme, rest)| {
            scheme
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic())
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
                && !rest.chars().any(char::is_whitespace)
        }),
    }
}

/// `YYYY-MM-DD` with a real month and day.
fn is_date(s: &str) -> bool {
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| {
        b.get(r)
            .filter(|d| d.iter().all(u8::is_ascii_digit))
            .and_then(|d| std::str::from_utf8(d).ok()?.parse::<u32>().ok())
    };
    match (
        b.len(),
        b.get(4),
        b.get(7),
        digits(0..4),
        digits(5..7),
        digits(8..10),
    ) {
        (10, Some(b'-'), Some(b'-'), Some(year), Some(month), Some(day)) => {
            let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
            let days = match month {
                2 if leap => 29,
                2 => 28,
                4 | 6 | 9 | 11 => 30,
                1..=12 => 31,
                _ => 0,
            };
            (1..=days).contains(&day)
        }
        _ => false,
    }
}

/// RFC 3339 `HH:MM:SS[.frac](Z|±HH:MM)`.
fn is_time(s: &str) -> bool {
    let (clock, offset) = match s.find(['Z', 'z', '+', '-']) {
        Some(i) => (
            s.get(..i).unwrap_or_default(),
            s.get(i..).unwrap_or_default(),
        ),
        None => return false,
    };
    let (hms, frac) = clock.split_once('.').unwrap_or((clock, "0"));
    let part = |p: &str, max: u32| p.len() == 2 && p.parse::<u32>().is_ok_and(|v| v <= max);
    let mut fields = hms.split(':');
    let clock_ok = matches!((fields.next(), fields.next(), fields.next(), fields.next()),
        (Some(h), Some(m), Some(sec), None) if part(h, 23) && part(m, 59) && part(sec, 60));
    let offset_ok = match offset {
        "Z" | "z" => true,
        _ => offset
            .get(1..)
            .and_then(|o| o.split_once(':'))
            .is_some_and(|(h, m)| part(h, 23) && part(m, 59)),
    };
    clock_ok && offset_ok && !frac.is_empty() && frac.bytes().all(|b| b.is_ascii_digit())
}
