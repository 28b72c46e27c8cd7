//! JSON values for contract checks: read strictly from bytes, compared as JSON Schema
//! compares them.
//!
//! Decides what a `tools/call`'s arguments are as a tree: the project's strict reader walks
//! the bytes, and a key repeated in any object is refused (two upstreams may keep different
//! copies, so no single tree is "the" arguments). Equality is JSON Schema's: numbers by
//! value (`1` equals `1.0`), objects regardless of key order. Never logs or echoes a value.

use std::fmt::Write as _;

use serde_json::{Map, Number, Value};

use crate::protocol::jsonrpc::Reader;

/// Why bytes are not one unambiguous JSON value; `pointer` is where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadError {
    pub pointer: String,
    pub reason: &'static str,
}

/// Reads one JSON value, refusing trailing bytes and repeated keys.
pub fn read_value(bytes: &[u8]) -> Result<Value, ReadError> {
    let mut reader = Reader::new(bytes);
    let mut path = String::new();
    let value = value(&mut reader, &mut path)?;
    reader.finish().map_err(|e| syntax(&path, e.reason))?;
    Ok(value)
}

fn syntax(path: &str, reason: &'static str) -> ReadError {
    ReadError {
        pointer: path.to_owned(),
        reason,
    }
}

/// One value at the reader's cursor; `path` is its JSON pointer (restored on return).
fn value(reader: &mut Reader<'_>, path: &mut String) -> Result<Value, ReadError> {
    let fail = |path: &str, e: crate::protocol::jsonrpc::SyntaxError| syntax(path, e.reason);
    match reader.peek() {
        Some(b'{') => {
            reader.begin_object().map_err(|e| fail(path, e))?;
            let mut map = Map::new();
            let mut first = true;
            while let Some(key) = reader.next_key(&mut first).map_err(|e| fail(path, e))? {
                let len = path.len();
                push_token(path, &key);
                if map.contains_key(key.as_ref()) {
                    return Err(syntax(path, "repeated key"));
                }
                let member = value(reader, path)?;
                path.truncate(len);
                map.insert(key.into_owned(), member);
            }
            Ok(Value::Object(map))
        }
        Some(b'[') => {
            reader.begin_array().map_err(|e| fail(path, e))?;
            let mut items = Vec::new();
            let mut first = true;
            while reader.next_element(&mut first).map_err(|e| fail(path, e))? {
                let len = path.len();
                let _ = write!(path, "/{}", items.len());
                items.push(value(reader, path)?);
                path.truncate(len);
            }
            Ok(Value::Array(items))
        }
        Some(b'"') => Ok(Value::String(
            reader
                .read_string()
                .map_err(|e| fail(path, e))?
                .into_owned(),
        )),
        Some(b'-' | b'0'..=b'9') => {
            let text = reader.read_number().map_err(|e| fail(path, e))?;
            text.parse::<Number>()
                .map(Value::Number)
                .map_err(|_| syntax(path, "number out of range"))
        }
        Some(byte) => {
            reader.skip_value().map_err(|e| fail(path, e))?;
            Ok(match byte {
                b't' => Value::Bool(true),
                b'f' => Value::Bool(false),
                _ => Value::Null,
            })
        }
        None => Err(syntax(path, "expected a value")),
    }
}

/// Appends `/token` to a JSON pointer, escaping `~` and `/` (RFC 6901).
pub fn push_token(pointer: &mut String, token: &str) {
    pointer.push('/');
    for c in token.chars() {
        match c {
            '~' => pointer.push_str("~0"),
            '/' => pointer.push_str("~1"),
            c => pointer.push(c),
        }
    }
}

/// JSON Schema equality: numbers by value, arrays in order, objects by members.
pub fn equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => number_equal(x, y),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| equal(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, a)| y.get(k).is_some_and(|b| equal(a, b)))
        }
        _ => a == b,
    }
}

fn number_equal(x: &Number, y: &Number) -> bool {
    match (x.as_i64(), y.as_i64(), x.as_u64(), y.as_u64()) {
        (Some(a), Some(b), _, _) => a == b,
        (_, _, Some(a), Some(b)) => a == b,
        _ => x.as_f64() == y.as_f64(),
    }
}

/// A text equal for exactly the values [`equal`] calls equal, for `uniqueItems` in linear
/// time: object keys sorted, numbers by value.
pub fn canonical_key(value: &Value, out: &mut String) {
    match value {
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => {
                let _ = write!(out, "{i}");
            }
            (_, Some(u)) => {
                let _ = write!(out, "{u}");
            }
            // An integral float prints as the integer it equals.
            _ => match n.as_f64() {
                Some(f) if f.fract() == 0.0 && f.abs() < 9.2e18 => {
                    let _ = write!(out, "{}", f as i64);
                }
                // Bits, not decimal text: equal floats have equal bits, and no float
                // formatting code is pulled into the filter.
                f => {
                    let _ = write!(out, "f{:x}", f.unwrap_or_default().to_bits());
                }
            },
        },
        Value::Array(items) => {
            out.push('[');
            for item in items {
                canonical_key(item, out);
                out.push(',');
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            crate::sort::sort(&mut keys);
            out.push('{');
            for key in keys {
                crate::report::reject::push_json_string(out, key);
                out.push(':');
                if let Some(v) = map.get(key) {
                    canonical_key(v, out);
                }
                out.push(',');
            }
            out.push('}');
        }
        other => out.push_str(&other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_values_and_refuses_repeated_keys_after_unescaping() {
        let v = read_value(br#"{"a":[1,2.5,"x\u0041",true,false,null],"b":{}}"#).unwrap();
        assert_eq!(v, json!({"a":[1,2.5,"xA",true,false,null],"b":{}}));
        let e = read_value(br#"{"o":{"n":1,"\u006e":2}}"#).unwrap_err();
        assert_eq!((e.pointer.as_str(), e.reason), ("/o/n", "repeated key"));
        assert!(read_value(b"{} x").is_err());
        assert!(read_value(b"[1,]").is_err());
        let e = read_value(br#"{"a/b":[0,{"~":{"k":1,"k":2}}]}"#).unwrap_err();
        assert_eq!(e.pointer, "/a~1b/1/~0/k");
    }

    #[test]
    fn equality_and_canonical_keys_agree_on_numbers_and_key_order() {
        let pairs = [
            (json!(1), json!(1.0), true),
            (json!({"a":1,"b":[2]}), json!({"b":[2.0],"a":1}), true),
            (json!([1, 2]), json!([2, 1]), false),
            (json!("1"), json!(1), false),
            (json!(0.5), json!(0.5), true),
        ];
        for (a, b, same) in pairs {
            assert_eq!(equal(&a, &b), same, "{a} {b}");
            let (mut ka, mut kb) = (String::new(), String::new());
            canonical_key(&a, &mut ka);
            canonical_key(&b, &mut kb);
            assert_eq!(ka == kb, same, "{ka} {kb}");
        }
    }
}
