//! A tool's `inputSchema` compiled into a validator, once per definition.
//!
//! Decides which JSON Schema (2020-12, with the draft-07 spellings servers still emit)
//! keywords a compiled schema asserts, and refuses to compile what it cannot check
//! faithfully: a `$ref` that is not a local `#/...` JSON pointer (the MCP specification,
//! SEP-2106, forbids dereferencing external references), keywords whose meaning needs
//! evaluation tracking (`unevaluatedProperties`, `$dynamicRef`, ...), patterns `regex-lite`
//! cannot compile, and schemas past the size bounds. Unknown keywords are annotations.
//! `format` asserts only when configured. Never fetches anything; validation lives in
//! `validate.rs`.

use std::collections::HashMap;
use std::fmt;

use regex_lite::{Regex, RegexBuilder};
use serde_json::{Map, Value};

/// Most schema nodes (subschemas) one tool's schema may compile into.
pub const MAX_NODES: usize = 2048;
/// Deepest subschema nesting accepted.
pub const MAX_DEPTH: usize = 64;
/// Compiled size of one `pattern` (regex-lite's own measure).
const MAX_REGEX_BYTES: usize = 64 * 1024;

/// Keywords that assert but cannot be checked here: a schema using them does not compile.
const UNSUPPORTED: &[&str] = &[
    "unevaluatedProperties",
    "unevaluatedItems",
    "$dynamicRef",
    "$recursiveRef",
];

/// A type in `type`, as a bit.
pub(super) mod ty {
    pub const NULL: u8 = 1;
    pub const BOOLEAN: u8 = 2;
    pub const INTEGER: u8 = 4;
    pub const NUMBER: u8 = 8;
    pub const STRING: u8 = 16;
    pub const ARRAY: u8 = 32;
    pub const OBJECT: u8 = 64;
}

/// A `format` that asserts when formats are configured to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Format {
    DateTime,
    Date,
    Email,
    Uuid,
    Ipv4,
    Ipv6,
    Uri,
}

/// One assertion or applicator of a subschema; node indexes point into [`Schema::nodes`].
#[derive(Debug, Clone)]
pub(super) enum Check {
    /// The `false` schema.
    False,
    Type(u8),
    Enum(Vec<Value>),
    Const(Value),
    Minimum(f64),
    Maximum(f64),
    ExclusiveMinimum(f64),
    ExclusiveMaximum(f64),
    MultipleOf(f64),
    MinLength(u64),
    MaxLength(u64),
    Pattern(Regex),
    Format(Format),
    Items {
        prefix: Vec<usize>,
        rest: Option<usize>,
    },
    MinItems(u64),
    MaxItems(u64),
    UniqueItems,
    Contains {
        node: usize,
        min: u64,
        max: Option<u64>,
    },
    Properties {
        named: Vec<(String, usize)>,
        patterns: Vec<(Regex, usize)>,
        additional: Option<usize>,
    },
    Required(Vec<String>),
    MinProperties(u64),
    MaxProperties(u64),
    PropertyNames(usize),
    DependentRequired(Vec<(String, Vec<String>)>),
    DependentSchemas(Vec<(String, usize)>),
    AllOf(Vec<usize>),
    AnyOf(Vec<usize>),
    OneOf(Vec<usize>),
    Not(usize),
    If {
        condition: usize,
        then: Option<usize>,
        otherwise: Option<usize>,
    },
    Ref(usize),
}

/// A compiled `inputSchema`: node 0 is the root.
#[derive(Debug, Clone)]
pub struct Schema {
    pub(super) nodes: Vec<Vec<Check>>,
    /// Approximate heap bytes, for the cache bound and its report.
    weight: usize,
}

/// Why a schema does not compile, with the schema location (JSON pointer) at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaError {
    pub at: String,
    pub message: String,
}

impl fmt::Display for SchemaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "inputSchema#{}: {}", self.at, self.message)
    }
}

impl Schema {
    /// Compiles `root`; `formats`: whether `format` asserts (else it is an annotation).
    pub fn compile(root: &Value, formats: bool) -> Result<Schema, SchemaError> {
        let mut compiler = Compiler {
            root,
            formats,
            nodes: Vec::new(),
            refs: HashMap::new(),
            weight: 0,
        };
        compiler.node(root, "", 0)?;
        let weight = compiler.weight + compiler.nodes.len() * std::mem::size_of::<Vec<Check>>();
        Ok(Schema {
            nodes: compiler.nodes,
            weight,
        })
    }

    /// Approximate memory the compiled schema holds, in bytes.
    pub fn weight(&self) -> usize {
        self.weight
    }
}

struct Compiler<'v> {
    root: &'v Value,
    formats: bool,
    nodes: Vec<Vec<Check>>,
    /// `$ref` target pointer → node, so recursive schemas compile to a cycle.
    refs: HashMap<String, usize>,
    weight: usize,
}

fn fail<T>(at: &str, message: impl Into<String>) -> Result<T, SchemaError> {
    Err(SchemaError {
        at: at.to_owned(),
        message: message.into(),
    })
}

impl<'v> Compiler<'v> {
    /// Reserves a node index, within the bound.
    fn reserve(&mut self, at: &str) -> Result<usize, SchemaError> {
        if self.nodes.len() >= MAX_NODES {
            return fail(at, format!("more than {MAX_NODES} subschemas"));
        }
        self.nodes.push(Vec::new());
        Ok(self.nodes.len() - 1)
    }

    fn node(&mut self, schema: &'v Value, at: &str, depth: usize) -> Result<usize, SchemaError> {
        if depth > MAX_DEPTH {
            return fail(at, format!("nested deeper than {MAX_DEPTH} subschemas"));
        }
        let index = self.reserve(at)?;
        let checks = match schema {
            Value::Bool(true) => Vec::new(),
            Value::Bool(false) => vec![Check::False],
            Value::Object(map) => self.checks(map, at, depth)?,
            _ => return fail(at, "a schema must be an object or a boolean"),
        };
        self.weight += checks.len() * std::mem::size_of::<Check>();
        if let Some(slot) = self.nodes.get_mut(index) {
            *slot = checks;
        }
        Ok(index)
    }

    fn sub(
        &mut self,
        map: &'v Map<String, Value>,
        key: &str,
        at: &str,
        depth: usize,
    ) -> Result<Option<usize>, SchemaError> {
        map.get(key)
            .map(|v| self.node(v, &format!("{at}/{key}"), depth + 1))
            .transpose()
    }

    fn list(
        &mut self,
        value: &'v Value,
        at: &str,
        depth: usize,
    ) -> Result<Vec<usize>, SchemaError> {
        match value {
            Value::Array(items) if !items.is_empty() => items
                .iter()
                .enumerate()
                .map(|(i, v)| self.node(v, &format!("{at}/{i}"), depth + 1))
                .collect(),
            _ => fail(at, "must be a non-empty array of schemas"),
        }
    }

    fn regex(&mut self, pattern: &Value, at: &str) -> Result<Regex, SchemaError> {
        let Some(text) = pattern.as_str() else {
            return fail(at, "must be a string");
        };
        self.weight += text.len() * 16;
        RegexBuilder::new(text)
            .size_limit(MAX_REGEX_BYTES)
            .build()
            .or_else(|e| fail(at, format!("pattern not supported: {e}")))
    }

    fn checks(
        &mut self,
        map: &'v Map<String, Value>,
        at: &str,
        depth: usize,
    ) -> Result<Vec<Check>, SchemaError> {
        let mut checks = Vec::new();
        if let Some(key) = UNSUPPORTED.iter().find(|k| map.contains_key(**k)) {
            return fail(at, format!("{key} is not supported"));
        }
        if depth > 0 && map.contains_key("$id") {
            return fail(
                &format!("{at}/$id"),
                "an embedded $id (a new base URI) is not supported",
            );
        }
        for (key, value) in map {
            let here = format!("{at}/{}", pointer_token(key));
            let count = || {
                value
                    .as_u64()
                    .map_or_else(|| fail(&here, "must be a non-negative integer"), Ok)
            };
            let number = || {
                value
                    .as_f64()
                    .map_or_else(|| fail(&here, "must be a number"), Ok)
            };
            let check = match key.as_str() {
                "type" => Check::Type(types(value, &here)?),
                "enum" => match value {
                    Value::Array(items) => {
                        self.weight += value.to_string().len();
                        Check::Enum(items.clone())
                    }
                    _ => return fail(&here, "must be an array"),
                },
                "const" => Check::Const(value.clone()),
                "minimum" => Check::Minimum(number()?),
                "maximum" => Check::Maximum(number()?),
                // Draft 4's boolean form makes `minimum`/`maximum` exclusive.
                "exclusiveMinimum" | "exclusiveMaximum" if value.is_boolean() => {
                    let bound = if key == "exclusiveMinimum" {
                        "minimum"
                    } else {
                        "maximum"
                    };
                    match (value.as_bool(), map.get(bound).and_then(Value::as_f64)) {
                        (Some(true), Some(b)) if bound == "minimum" => Check::ExclusiveMinimum(b),
                        (Some(true), Some(b)) => Check::ExclusiveMaximum(b),
                        _ => continue,
                    }
                }
                "exclusiveMinimum" => Check::ExclusiveMinimum(number()?),
                "exclusiveMaximum" => Check::ExclusiveMaximum(number()?),
                "multipleOf" => match number()? {
                    m if m > 0.0 => Check::MultipleOf(m),
                    _ => return fail(&here, "must be greater than 0"),
                },
                "minLength" => Check::MinLength(count()?),
                "maxLength" => Check::MaxLength(count()?),
                "pattern" => Check::Pattern(self.regex(value, &here)?),
                "format" if self.formats => match value.as_str().and_then(format) {
                    Some(f) => Check::Format(f),
                    None => continue,
                },
                "minItems" => Check::MinItems(count()?),
                "maxItems" => Check::MaxItems(count()?),
                "uniqueItems" => match value.as_bool() {
                    Some(true) => Check::UniqueItems,
                    Some(false) => continue,
                    None => return fail(&here, "must be a boolean"),
                },
                "prefixItems" => continue, // read with `items`
                "items" => self.items(map, at, depth)?,
                // Draft 7: `items` as an array is the tuple, `additionalItems` the rest.
                "additionalItems" => continue,
                "contains" => Check::Contains {
                    node: self.node(value, &here, depth + 1)?,
                    min: map.get("minContains").and_then(Value::as_u64).unwrap_or(1),
                    max: map.get("maxContains").and_then(Value::as_u64),
                },
                "properties" | "patternProperties" | "additionalProperties" => {
                    // Compiled once, on whichever of the three comes first.
                    if checks.iter().any(|c| matches!(c, Check::Properties { .. })) {
                        continue;
                    }
                    self.properties(map, at, depth)?
                }
                "required" => Check::Required(strings(value, &here)?),
                "minProperties" => Check::MinProperties(count()?),
                "maxProperties" => Check::MaxProperties(count()?),
                "propertyNames" => Check::PropertyNames(self.node(value, &here, depth + 1)?),
                "dependentRequired" => Check::DependentRequired(
                    object(value, &here)?
                        .iter()
                        .map(|(k, v)| Ok((k.clone(), strings(v, &format!("{here}/{k}"))?)))
                        .collect::<Result<_, SchemaError>>()?,
                ),
                "dependentSchemas" => Check::DependentSchemas(
                    object(value, &here)?
                        .iter()
                        .map(|(k, v)| {
                            Ok((k.clone(), self.node(v, &format!("{here}/{k}"), depth + 1)?))
                        })
                        .collect::<Result<_, SchemaError>>()?,
                ),
                "allOf" => Check::AllOf(self.list(value, &here, depth)?),
                "anyOf" => Check::AnyOf(self.list(value, &here, depth)?),
                "oneOf" => Check::OneOf(self.list(value, &here, depth)?),
                "not" => Check::Not(self.node(value, &here, depth + 1)?),
                "if" => Check::If {
                    condition: self.node(value, &here, depth + 1)?,
                    then: self.sub(map, "then", at, depth)?,
                    otherwise: self.sub(map, "else", at, depth)?,
                },
                "$ref" => Check::Ref(self.reference(value, &here, depth)?),
                _ => continue,
            };
            checks.push(check);
        }
        Ok(checks)
    }

    fn items(
        &mut self,
        map: &'v Map<String, Value>,
        at: &str,
        depth: usize,
    ) -> Result<Check, SchemaError> {
        let (tuple, rest_key) = match (map.get("prefixItems"), map.get("items")) {
            (Some(prefix), _) => (Some((prefix, "prefixItems")), "items"),
            (None, Some(items @ Value::Array(_))) => (Some((items, "items")), "additionalItems"),
            _ => (None, "items"),
        };
        let prefix = match tuple {
            Some((value, key)) => self.list(value, &format!("{at}/{key}"), depth)?,
            None => Vec::new(),
        };
        Ok(Check::Items {
            prefix,
            rest: self.sub(map, rest_key, at, depth)?,
        })
    }

    fn properties(
        &mut self,
        map: &'v Map<String, Value>,
        at: &str,
        depth: usize,
    ) -> Result<Check, SchemaError> {
        let mut named = Vec::new();
        if let Some(value) = map.get("properties") {
            for (name, schema) in object(value, &format!("{at}/properties"))? {
                let here = format!("{at}/properties/{}", pointer_token(name));
                named.push((name.clone(), self.node(schema, &here, depth + 1)?));
            }
        }
        let mut patterns = Vec::new();
        if let Some(value) = map.get("patternProperties") {
            for (pattern, schema) in object(value, &format!("{at}/patternProperties"))? {
                let here = format!("{at}/patternProperties/{}", pointer_token(pattern));
                let regex = self.regex(&Value::String(pattern.clone()), &here)?;
                patterns.push((regex, self.node(schema, &here, depth + 1)?));
            }
        }
        Ok(Check::Properties {
            named,
            patterns,
            additional: self.sub(map, "additionalProperties", at, depth)?,
        })
    }

    /// Resolves a local `$ref` to a node, compiling its target once.
    fn reference(&mut self, value: &Value, at: &str, depth: usize) -> Result<usize, SchemaError> {
        let Some(text) = value.as_str() else {
            return fail(at, "must be a string");
        };
        let Some(fragment) = text.strip_prefix('#') else {
            return fail(at, "only local references (#/...) are followed (SEP-2106)");
        };
        let pointer = percent_decode(fragment).ok_or_else(|| SchemaError {
            at: at.into(),
            message: "invalid percent-encoding".into(),
        })?;
        if !(pointer.is_empty() || pointer.starts_with('/')) {
            return fail(
                at,
                "only JSON-pointer fragments (#/...) are supported, not anchors",
            );
        }
        if let Some(&node) = self.refs.get(&pointer) {
            return Ok(node);
        }
        let root = self.root;
        let Some(target) = root.pointer(&pointer) else {
            return fail(at, format!("{text:?} points to nothing"));
        };
        // The root is node 0; any other target gets its node before it is compiled, so a
        // reference back to it (recursion) finds it.
        if pointer.is_empty() {
            return Ok(0);
        }
        let index = self.nodes.len();
        self.refs.insert(pointer.clone(), index);
        self.node(target, &pointer, depth + 1)
    }
}

fn types(value: &Value, at: &str) -> Result<u8, SchemaError> {
    let one = |name: &str| -> Result<u8, SchemaError> {
        Ok(match name {
            "null" => ty::NULL,
            "boolean" => ty::BOOLEAN,
            "integer" => ty::INTEGER,
            "number" => ty::NUMBER | ty::INTEGER,
            "string" => ty::STRING,
            "array" => ty::ARRAY,
            "object" => ty::OBJECT,
            other => return fail(at, format!("unknown type {other:?}")),
        })
    };
    match value {
        Value::String(name) => one(name),
        Value::Array(names) => names.iter().try_fold(0, |bits, name| match name.as_str() {
            Some(name) => Ok(bits | one(name)?),
            None => fail(at, "type names must be strings"),
        }),
        _ => fail(at, "must be a type name or an array of them"),
    }
}

fn format(name: &str) -> Option<Format> {
    Some(match name {
        "date-time" => Format::DateTime,
        "date" => Format::Date,
        "email" => Format::Email,
        "uuid" => Format::Uuid,
        "ipv4" => Format::Ipv4,
        "ipv6" => Format::Ipv6,
        "uri" => Format::Uri,
        _ => return None,
    })
}

fn strings(value: &Value, at: &str) -> Result<Vec<String>, SchemaError> {
    match value {
        Value::Array(items) => items
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .map_or_else(|| fail(at, "must be an array of strings"), Ok)
            })
            .collect(),
        _ => fail(at, "must be an array of strings"),
    }
}

fn object<'a>(value: &'a Value, at: &str) -> Result<&'a Map<String, Value>, SchemaError> {
    value
        .as_object()
        .map_or_else(|| fail(at, "must be an object"), Ok)
}

/// A key as a JSON pointer token (for schema locations in errors).
fn pointer_token(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// Decodes `%XX` in a URI fragment; `None` if malformed or not UTF-8.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}
