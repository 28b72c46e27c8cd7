//! The serde `Deserializer` over the located tree: serde_json's semantics, and errors that
//! carry the path and byte offset serde_json's streaming reader would have given them.

use std::fmt;

use serde::de::{self, DeserializeSeed, Visitor};
use serde_json::Value;

use super::{Kind, Node};

/// Where a value sits, from the root: what the error path is made of.
pub(super) enum Path<'a> {
    Root,
    Key(&'a Path<'a>, &'a str),
    Index(&'a Path<'a>, usize),
}

impl fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Path::Root => Ok(()),
            Path::Key(Path::Root, key) => f.write_str(key),
            Path::Key(parent, key) => write!(f, "{parent}.{key}"),
            Path::Index(parent, i) => write!(f, "{parent}[{i}]"),
        }
    }
}

/// The error while deserializing: placed by the innermost value that sees it. Boxed: every
/// derived visitor passes it along, and a pointer-sized error keeps their code small.
#[derive(Debug)]
pub(super) struct DeError(pub(super) Box<Placed>);

#[derive(Debug)]
pub(super) struct Placed {
    pub(super) message: String,
    pub(super) offset: Option<usize>,
    pub(super) path: Option<String>,
}

impl DeError {
    fn new(message: impl Into<String>, offset: usize) -> DeError {
        DeError(Box::new(Placed {
            message: message.into(),
            offset: Some(offset),
            path: None,
        }))
    }

    #[cold]
    #[inline(never)]
    fn at(mut self, offset: usize) -> DeError {
        self.0.offset.get_or_insert(offset);
        self
    }

    #[cold]
    #[inline(never)]
    fn within(mut self, path: &Path<'_>) -> DeError {
        if self.0.path.is_none() {
            self.0.path = Some(path.to_string());
        }
        self
    }
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.message)
    }
}

impl std::error::Error for DeError {}

impl de::Error for DeError {
    #[cold]
    fn custom<T: fmt::Display>(message: T) -> DeError {
        DeError(Box::new(Placed {
            message: message.to_string(),
            offset: None,
            path: None,
        }))
    }

    #[cold]
    #[inline(never)]
    fn invalid_type(unexpected: de::Unexpected, expected: &dyn de::Expected) -> DeError {
        let unexpected = Unexpected(unexpected);
        DeError::custom(format_args!(
            "invalid type: {unexpected}, expected {expected}"
        ))
    }

    #[cold]
    #[inline(never)]
    fn invalid_value(unexpected: de::Unexpected, expected: &dyn de::Expected) -> DeError {
        let unexpected = Unexpected(unexpected);
        DeError::custom(format_args!(
            "invalid value: {unexpected}, expected {expected}"
        ))
    }
}

/// A value of the wrong type or range, named as serde_json names it: `null`, and a number
/// written as serde_json writes numbers.
struct Unexpected<'a>(de::Unexpected<'a>);

impl fmt::Display for Unexpected<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            de::Unexpected::Unit => f.write_str("null"),
            de::Unexpected::Float(x) => match serde_json::Number::from_f64(x) {
                Some(n) => write!(f, "floating point `{n}`"),
                None => f.write_str("floating point"),
            },
            other => other.fmt(f),
        }
    }
}

/// Deserializes one node of the tree.
#[derive(Clone, Copy)]
pub(super) struct De<'a> {
    pub(super) node: &'a Node,
    pub(super) text: &'a [u8],
    pub(super) path: &'a Path<'a>,
}

impl<'a> De<'a> {
    /// Where serde_json's reader stands after looking at this value and refusing its type:
    /// past a scalar (it reads it whole), before an array or object.
    fn refused_at(&self) -> usize {
        match self.node.kind {
            Kind::Scalar(_) => self.node.end,
            Kind::Array(_) | Kind::Object(_) => self.node.start,
        }
    }

    /// The error for a value of the wrong type (cold and shared: every visitor refuses).
    #[cold]
    #[inline(never)]
    fn refuse(&self, expected: &dyn de::Expected) -> DeError {
        let unexpected = match &self.node.kind {
            Kind::Scalar(Value::Null) => de::Unexpected::Unit,
            Kind::Scalar(Value::Bool(b)) => de::Unexpected::Bool(*b),
            Kind::Scalar(Value::Number(n)) => match (n.as_u64(), n.as_i64(), n.as_f64()) {
                (Some(u), _, _) => de::Unexpected::Unsigned(u),
                (_, Some(i), _) => de::Unexpected::Signed(i),
                (_, _, f) => de::Unexpected::Float(f.unwrap_or(f64::NAN)),
            },
            Kind::Scalar(Value::String(s)) => de::Unexpected::Str(s),
            Kind::Array(_) | Kind::Scalar(Value::Array(_)) => de::Unexpected::Seq,
            Kind::Object(_) | Kind::Scalar(Value::Object(_)) => de::Unexpected::Map,
        };
        <DeError as de::Error>::invalid_type(unexpected, expected).at(self.refused_at())
    }

    /// Visits a scalar as serde_json's `deserialize_any` does.
    fn visit_scalar<'de, V: Visitor<'de>>(
        &self,
        value: &Value,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        match value {
            Value::Null => visitor.visit_unit(),
            Value::Bool(b) => visitor.visit_bool(*b),
            Value::Number(n) => match (n.as_u64(), n.as_i64(), n.as_f64()) {
                (Some(u), _, _) => visitor.visit_u64(u),
                (_, Some(i), _) => visitor.visit_i64(i),
                (_, _, Some(f)) => visitor.visit_f64(f),
                _ => Err(self.refuse(&visitor)),
            },
            Value::String(s) => visitor.visit_str(s),
            Value::Array(_) | Value::Object(_) => Err(self.refuse(&visitor)),
        }
    }

    fn visit_map<'de, V: Visitor<'de>>(
        &self,
        members: &'a [(String, usize, Node)],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        let mut access = Members {
            members,
            next: 0,
            cursor: self.node.start + 1,
            parent: *self,
        };
        let value = visitor.visit_map(&mut access);
        value.map_err(|e| e.at(self.closed_at(access.cursor, b'}')))
    }

    fn visit_seq<'de, V: Visitor<'de>>(
        &self,
        items: &'a [Node],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        let mut access = Items {
            items,
            next: 0,
            cursor: self.node.start + 1,
            parent: *self,
        };
        let value = visitor.visit_seq(&mut access);
        value.map_err(|e| e.at(self.closed_at(access.cursor, b']')))
    }

    /// Where serde_json stands when a visitor fails with the reader at `cursor`: it skips
    /// whitespace and consumes the container's closing bracket if that comes next.
    #[cold]
    #[inline(never)]
    fn closed_at(&self, cursor: usize, close: u8) -> usize {
        let rest = self.text.get(cursor..).unwrap_or_default();
        let blank = rest
            .iter()
            .take_while(|b| matches!(b, b' ' | b'\n' | b'\t' | b'\r'))
            .count();
        let at = cursor + blank;
        at + usize::from(self.text.get(at) == Some(&close))
    }

    fn child<'b>(&self, node: &'b Node, path: &'b Path<'b>) -> De<'b>
    where
        'a: 'b,
    {
        De {
            node,
            text: self.text,
            path,
        }
    }
}

/// Implements the typed entry points that take exactly one kind of scalar (serde_json's
/// `deserialize_bool`, `deserialize_u64`, …): that kind is visited, any other refused.
macro_rules! typed {
    ($($method:ident => $accepts:pat,)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
            match &self.node.kind {
                Kind::Scalar(value @ $accepts) => {
                    self.visit_scalar(value, visitor).map_err(|e| e.at(self.node.end))
                }
                _ => Err(self.refuse(&visitor)),
            }
        }
    )*};
}

impl<'de, 'a> de::Deserializer<'de> for De<'a> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.node.kind {
            Kind::Scalar(value) => self
                .visit_scalar(value, visitor)
                .map_err(|e| e.at(self.node.end)),
            Kind::Array(items) => self.visit_seq(items, visitor),
            Kind::Object(members) => self.visit_map(members, visitor),
        }
    }

    typed! {
        deserialize_bool => Value::Bool(_),
        deserialize_i8 => Value::Number(_),
        deserialize_i16 => Value::Number(_),
        deserialize_i32 => Value::Number(_),
        deserialize_i64 => Value::Number(_),
        deserialize_u8 => Value::Number(_),
        deserialize_u16 => Value::Number(_),
        deserialize_u32 => Value::Number(_),
        deserialize_u64 => Value::Number(_),
        deserialize_f32 => Value::Number(_),
        deserialize_f64 => Value::Number(_),
        deserialize_char => Value::String(_),
        deserialize_str => Value::String(_),
        deserialize_string => Value::String(_),
        deserialize_identifier => Value::String(_),
        deserialize_unit => Value::Null,
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.node.kind {
            Kind::Scalar(Value::Null) => visitor
                .visit_none::<DeError>()
                .map_err(|e| e.at(self.node.end)),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.node.kind {
            Kind::Array(items) => self.visit_seq(items, visitor),
            _ => Err(self.refuse(&visitor)),
        }
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.node.kind {
            Kind::Object(members) => self.visit_map(members, visitor),
            _ => Err(self.refuse(&visitor)),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_map(visitor)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        let expected_value = |at| Err(DeError::new("expected value", at));
        match &self.node.kind {
            Kind::Scalar(Value::String(variant)) => visitor
                .visit_enum(Variant {
                    name: variant,
                    name_end: self.node.end,
                    value: None,
                    parent: self,
                })
                .map_err(|e| e.at(self.node.end)),
            Kind::Object(members) => match members.as_slice() {
                [] => expected_value(self.node.end),
                [(name, name_end, value), rest @ ..] => {
                    let variant = Variant {
                        name,
                        name_end: *name_end,
                        value: Some(value),
                        parent: self,
                    };
                    let chosen = visitor.visit_enum(variant)?;
                    match rest {
                        [] => Ok(chosen),
                        _ => expected_value(self.closed_at(value.end, b'}')),
                    }
                }
            },
            _ => expected_value(self.node.start + 1),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_unit()
    }

    serde::forward_to_deserialize_any! {
        <W: Visitor<'de>>
        i128 u128 bytes byte_buf unit_struct tuple tuple_struct
    }
}

/// An object's members, handed to a visitor one by one.
struct Members<'a> {
    members: &'a [(String, usize, Node)],
    next: usize,
    /// Where serde_json's reader would stand: after the last key or value read.
    cursor: usize,
    parent: De<'a>,
}

impl<'de, 'a> de::MapAccess<'de> for Members<'a> {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        let Some((key, key_end, _)) = self.members.get(self.next) else {
            return Ok(None);
        };
        self.cursor = *key_end;
        let path = Path::Key(self.parent.path, key);
        seed.deserialize(Key(key))
            .map(Some)
            .map_err(|e| e.within(&path))
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        let Some((key, _, node)) = self.members.get(self.next) else {
            return Err(DeError::new("expected value", self.cursor));
        };
        self.next += 1;
        let path = Path::Key(self.parent.path, key);
        let value = seed.deserialize(self.parent.child(node, &path));
        self.cursor = node.end;
        value.map_err(|e| e.within(&path))
    }
}

/// An array's items, handed to a visitor one by one.
struct Items<'a> {
    items: &'a [Node],
    next: usize,
    /// Where serde_json's reader would stand: after the last item read.
    cursor: usize,
    parent: De<'a>,
}

impl<'de, 'a> de::SeqAccess<'de> for Items<'a> {
    type Error = DeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DeError> {
        let Some(node) = self.items.get(self.next) else {
            return Ok(None);
        };
        let path = Path::Index(self.parent.path, self.next);
        self.next += 1;
        let value = seed.deserialize(self.parent.child(node, &path));
        self.cursor = node.end;
        value.map(Some).map_err(|e| e.within(&path))
    }
}

/// An object key, as serde_json hands keys over: a string, whatever the visitor asks for.
struct Key<'a>(&'a str);

impl<'de, 'a> de::Deserializer<'de> for Key<'a> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_str(self.0)
    }

    serde::forward_to_deserialize_any! {
        <W: Visitor<'de>>
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map struct enum identifier ignored_any
    }
}

/// An enum given as `"variant"` or `{"variant": null}`: only unit variants exist in the
/// configuration, so a variant's value must be null.
struct Variant<'a> {
    name: &'a str,
    name_end: usize,
    value: Option<&'a Node>,
    parent: De<'a>,
}

impl<'de, 'a> de::EnumAccess<'de> for Variant<'a> {
    type Error = DeError;
    type Variant = Self;

    fn variant_seed<S: DeserializeSeed<'de>>(self, seed: S) -> Result<(S::Value, Self), DeError> {
        let chosen = seed
            .deserialize(Key(self.name))
            .map_err(|e| e.at(self.name_end))?;
        Ok((chosen, self))
    }
}

impl<'de, 'a> de::VariantAccess<'de> for Variant<'a> {
    type Error = DeError;

    fn unit_variant(self) -> Result<(), DeError> {
        let Some(node) = self.value else {
            return Ok(());
        };
        let path = Path::Key(self.parent.path, self.name);
        let value = de::Deserialize::deserialize(self.parent.child(node, &path));
        value.map_err(|e| e.within(&path))
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, _seed: T) -> Result<T::Value, DeError> {
        Err(self.no_data())
    }

    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, _visitor: V) -> Result<V::Value, DeError> {
        Err(self.no_data())
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, DeError> {
        Err(self.no_data())
    }
}

impl Variant<'_> {
    /// The configuration has no enum with data; refuse rather than guess.
    fn no_data(&self) -> DeError {
        DeError::new(
            format!("variant `{}` takes no value", self.name),
            self.name_end,
        )
    }
}
