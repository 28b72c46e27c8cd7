//! Filtered lists: a `tools/list` (`prompts/list`, `resources/list`,
//! `resources/templates/list`) answer rewritten to name only what the caller may use.
//!
//! The answer is the server's: it is never re-serialised. The strict reader locates the
//! `result.<list>` array; kept elements are copied byte for byte, dropped ones are cut out
//! with their separating comma, and every other byte stays as the server wrote it. An answer
//! that is not valid JSON, not a result for the request's id or not the expected shape is
//! passed on unchanged. For `text/event-stream` answers, [`crate::response::sse`] cuts the
//! stream into events incrementally so that only the event carrying the answer is rewritten.

use std::borrow::Cow;
use std::ops::Range;

use crate::catalog::tooldef::Effective;
use crate::policy::{Applicable, Decision};
use crate::protocol::jsonrpc::{Kind, Message, Reader, SyntaxError, Target};

/// Which list a request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListKind {
    Tools,
    Prompts,
    Resources,
    Templates,
}

impl ListKind {
    /// The list method `method` names, if any.
    pub fn of_method(method: &str) -> Option<ListKind> {
        match method {
            "tools/list" => Some(ListKind::Tools),
            "prompts/list" => Some(ListKind::Prompts),
            "resources/list" => Some(ListKind::Resources),
            "resources/templates/list" => Some(ListKind::Templates),
            _ => None,
        }
    }

    /// The member of `result` that holds the list.
    fn member(self) -> &'static str {
        match self {
            ListKind::Tools => "tools",
            ListKind::Prompts => "prompts",
            ListKind::Resources => "resources",
            ListKind::Templates => "resourceTemplates",
        }
    }

    /// The member of an element that names it.
    fn key(self) -> &'static str {
        match self {
            ListKind::Tools | ListKind::Prompts => "name",
            ListKind::Resources => "uri",
            ListKind::Templates => "uriTemplate",
        }
    }
}

/// An approved single list request whose answer is to be filtered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListRequest {
    pub kind: ListKind,
    /// The request's `id` as JSON text.
    pub id: String,
}

impl ListRequest {
    /// The list request a message is, if it is one.
    pub fn of_message(message: &Message<'_>) -> Option<ListRequest> {
        if message.kind != Kind::Request {
            return None;
        }
        Some(ListRequest {
            kind: ListKind::of_method(message.method.as_deref()?)?,
            id: message.id?.to_owned(),
        })
    }
}

/// Whether the caller may see an element named `value` (a tool with `hints`): a synthetic
/// request for it must not be refused. Shadow denials keep the element (shadow rules do not enforce). A
/// resource template is dropped only when a rule's deny list matches the template text as
/// a resource URI; not being allowed by any rule keeps it, since a template is not a
/// resource and its concrete URIs are judged when read.
pub fn visible(rules: &Applicable<'_>, kind: ListKind, value: &str, hints: &Effective) -> bool {
    let (method, target) = match kind {
        ListKind::Tools => ("tools/call", Target::Tool(Cow::Borrowed(value))),
        ListKind::Prompts => ("prompts/get", Target::Prompt(Cow::Borrowed(value))),
        ListKind::Resources | ListKind::Templates => {
            ("resources/read", Target::Resource(Cow::Borrowed(value)))
        }
    };
    let message = Message {
        kind: Kind::Request,
        id: None,
        method: Some(Cow::Borrowed(method)),
        target: Some(target),
        meta_protocol_version: None,
        initialize_protocol_version: None,
        arguments: None,
        task_id: None,
    };
    match rules.decide(&message, hints) {
        Decision::Denied { rule: None, .. } => kind == ListKind::Templates,
        Decision::Denied { .. } => false,
        Decision::Allowed { .. } | Decision::ShadowDenied { .. } => true,
    }
}

/// One element of the list: its span and name (`None`: not one readable string), borrowed
/// from the answer unless escaped.
struct Element<'a> {
    span: Range<usize>,
    name: Option<Cow<'a, str>>,
}

/// What a JSON-RPC answer holds, as far as filtering cares.
struct Located<'a> {
    id: Option<Range<usize>>,
    /// Offset just after the array's `[`, and its elements.
    list: Option<(usize, Vec<Element<'a>>)>,
}

/// Rewrites `json` if it is the answer to `request` and some element must go; `None`
/// means "pass it on unchanged" (nothing to drop, or not an answer this filter reads).
/// `keep` is asked about every element of the answer, in order, with its name and its
/// raw bytes; an element without one readable name is dropped unasked.
pub fn filter_list(
    json: &[u8],
    request: &ListRequest,
    keep: &mut dyn FnMut(&str, &[u8]) -> bool,
) -> Option<Vec<u8>> {
    let located = locate(json, request.kind).ok()?;
    let id = located.id?;
    let same_id = Reader::new(json).slice(id.start, id.end);
    if !same_id_text(same_id, &request.id) {
        return None;
    }
    let (open, elements) = located.list?;
    let kept: Vec<bool> = elements
        .iter()
        .map(|e| match (&e.name, json.get(e.span.clone())) {
            (Some(name), Some(raw)) => keep(name, raw),
            _ => false,
        })
        .collect();
    if kept.iter().all(|k| *k) {
        return None;
    }
    let close = elements.last().map_or(open, |e| e.span.end);
    let mut out = Vec::with_capacity(json.len());
    out.extend_from_slice(json.get(..open)?);
    let mut previous_end = open;
    let mut wrote = false;
    for (element, keep) in elements.iter().zip(kept) {
        if keep {
            // The bytes before the element: its comma and spacing, or (first kept) the
            // spacing after `[`.
            let gap = json.get(previous_end..element.span.start)?;
            let gap = if wrote {
                gap
            } else {
                let after_comma = gap.iter().position(|&b| b == b',').map_or(0, |i| i + 1);
                gap.get(after_comma..)?
            };
            out.extend_from_slice(gap);
            out.extend_from_slice(json.get(element.span.clone())?);
            wrote = true;
        }
        previous_end = element.span.end;
    }
    out.extend_from_slice(json.get(close..)?);
    Some(out)
}

/// Two JSON-RPC ids are the same: equal strings after decoding, or equal number text.
fn same_id_text(a: &str, b: &str) -> bool {
    fn key(text: &str) -> Option<Cow<'_, str>> {
        let mut reader = Reader::new(text.as_bytes());
        if reader.peek() == Some(b'"') {
            reader.read_string().ok()
        } else {
            Some(Cow::Borrowed(text.trim()))
        }
    }
    let (a_string, b_string) = (
        a.trim_start().starts_with('"'),
        b.trim_start().starts_with('"'),
    );
    a_string == b_string && key(a).is_some() && key(a) == key(b)
}

/// Walks the whole answer (it must be valid JSON with no repeated top-level or `result`
/// member) and records the id's span and the list's elements.
fn locate(json: &[u8], kind: ListKind) -> Result<Located<'_>, SyntaxError> {
    let mut reader = Reader::new(json);
    let mut located = Located {
        id: None,
        list: None,
    };
    let shape = |offset| SyntaxError {
        offset,
        reason: "not a list result",
    };
    reader.begin_object()?;
    // Keys are compared as bytes: no text conversion per key.
    let mut seen: Vec<Cow<'_, [u8]>> = Vec::new();
    let mut first = true;
    while let Some(key) = reader.next_key_bytes(&mut first)? {
        if seen.contains(&key) {
            return Err(shape(reader.offset()));
        }
        match key.as_ref() {
            b"id" => {
                let start = reader.offset_after_ws();
                reader.skip_value()?;
                located.id = Some(start..reader.offset());
            }
            b"result" => {
                if reader.peek() != Some(b'{') {
                    return Err(shape(reader.offset()));
                }
                reader.begin_object()?;
                let mut inner_seen: Vec<Cow<'_, [u8]>> = Vec::new();
                let mut inner_first = true;
                while let Some(inner) = reader.next_key_bytes(&mut inner_first)? {
                    if inner_seen.contains(&inner) {
                        return Err(shape(reader.offset()));
                    }
                    if *inner == *kind.member().as_bytes() {
                        located.list = Some(read_list(&mut reader, kind)?);
                    } else {
                        reader.skip_value()?;
                    }
                    inner_seen.push(inner);
                }
            }
            _ => reader.skip_value()?,
        }
        seen.push(key);
    }
    reader.finish()?;
    Ok(located)
}

fn read_list<'a>(
    reader: &mut Reader<'a>,
    kind: ListKind,
) -> Result<(usize, Vec<Element<'a>>), SyntaxError> {
    reader.begin_array()?;
    let open = reader.offset();
    let mut elements = Vec::new();
    let mut first = true;
    while reader.next_element(&mut first)? {
        let start = reader.offset_after_ws();
        let mut value: Option<Option<Cow<'_, str>>> = None;
        if reader.peek() == Some(b'{') {
            reader.begin_object()?;
            let mut member_first = true;
            while let Some(member) = reader.next_key_bytes(&mut member_first)? {
                let named = *member == *kind.key().as_bytes();
                if named && reader.peek() == Some(b'"') {
                    // A repeated name is ambiguous: the element is dropped.
                    value = Some(match value {
                        None => Some(reader.read_string()?),
                        Some(_) => {
                            reader.skip_value()?;
                            None
                        }
                    });
                } else {
                    if named {
                        value = Some(None);
                    }
                    reader.skip_value()?;
                }
            }
        } else {
            reader.skip_value()?;
        }
        // An element without a readable name cannot be judged: it is dropped.
        elements.push(Element {
            span: start..reader.offset(),
            name: value.flatten(),
        });
    }
    Ok((open, elements))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::response::sse::{rewrite_event, SseFramer};

    fn tools_request(id: &str) -> ListRequest {
        ListRequest {
            kind: ListKind::Tools,
            id: id.into(),
        }
    }

    fn only(names: &'static [&'static str]) -> impl FnMut(&str, &[u8]) -> bool {
        move |name, _| names.contains(&name)
    }

    fn filtered(json: &str, names: &'static [&'static str]) -> Option<String> {
        let mut keep = only(names);
        filter_list(json.as_bytes(), &tools_request("1"), &mut keep)
            .map(|b| String::from_utf8(b).unwrap())
    }

    const LIST: &str = r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[ {"name":"a","x":[1]} , {"name":"b"},
  {"name":"c","description":"ü"} ],"nextCursor":"n2"}}"#;

    #[test]
    fn splices_elements_out() {
        let cases: &[(&[&str], Option<&str>)] = &[
            (&["a", "b", "c"], None),
            (
                &["b", "c"],
                Some(
                    r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[ {"name":"b"},
  {"name":"c","description":"ü"} ],"nextCursor":"n2"}}"#,
                ),
            ),
            (
                &["a", "c"],
                Some(
                    r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[ {"name":"a","x":[1]},
  {"name":"c","description":"ü"} ],"nextCursor":"n2"}}"#,
                ),
            ),
            (
                &["a", "b"],
                Some(
                    r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[ {"name":"a","x":[1]} , {"name":"b"} ],"nextCursor":"n2"}}"#,
                ),
            ),
            (
                &[],
                Some(r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[ ],"nextCursor":"n2"}}"#),
            ),
            (
                &["c"],
                Some(
                    r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[
  {"name":"c","description":"ü"} ],"nextCursor":"n2"}}"#,
                ),
            ),
        ];
        for (keep, want) in cases {
            let keep: Vec<String> = keep.iter().map(|s| s.to_string()).collect();
            let mut f = |n: &str, _: &[u8]| keep.iter().any(|k| k == n);
            let got = filter_list(LIST.as_bytes(), &tools_request("1"), &mut f)
                .map(|b| String::from_utf8(b).unwrap());
            assert_eq!(got.as_deref(), *want, "keep {keep:?}");
            if let Some(text) = got {
                serde_json::from_str::<serde_json::Value>(&text).unwrap();
            }
        }
    }

    #[test]
    fn escaped_names_are_decoded_and_unicode_kept() {
        let json = r#"{"id":1,"result":{"tools":[{"name":"\u0065cho","d":"日本"},{"name":"rm\u00e9"}]},"jsonrpc":"2.0"}"#;
        assert_eq!(
            filtered(json, &["echo"]).as_deref(),
            Some(
                r#"{"id":1,"result":{"tools":[{"name":"\u0065cho","d":"日本"}]},"jsonrpc":"2.0"}"#
            )
        );
        assert_eq!(
            filtered(json, &["rmé"]).as_deref(),
            Some(r#"{"id":1,"result":{"tools":[{"name":"rm\u00e9"}]},"jsonrpc":"2.0"}"#)
        );
    }

    #[test]
    fn odd_answers_pass_unchanged_and_odd_elements_go() {
        let all: &'static [&'static str] = &["a", "b"];
        // Not JSON, an error, another id, a duplicate result, trailing bytes: unchanged.
        for json in [
            r#"{"id":1,"result":{"tools":[{"name":"x"}]}"#,
            r#"{"id":1,"error":{"code":1,"message":"m"}}"#,
            r#"{"id":2,"result":{"tools":[{"name":"x"}]}}"#,
            r#"{"id":"1","result":{"tools":[{"name":"x"}]}}"#,
            r#"{"id":1,"result":{"tools":[]},"result":{"tools":[{"name":"x"}]}}"#,
            r#"{"id":1,"result":{"tools":[{"name":"x"}]}} x"#,
            r#"{"id":1,"result":{"prompts":[{"name":"x"}]}}"#,
        ] {
            assert_eq!(filtered(json, all), None, "{json}");
        }
        // Elements without one string name are dropped.
        assert_eq!(
            filtered(
                r#"{"id":1,"result":{"tools":[{"name":"a","name":"x"},7,{"name":1},{"name":"b"}]}}"#,
                all
            )
            .as_deref(),
            Some(r#"{"id":1,"result":{"tools":[{"name":"b"}]}}"#)
        );
        // String ids compare decoded.
        let mut keep = only(&["a"]);
        assert!(filter_list(
            br#"{"id":"\u0061b","result":{"tools":[{"name":"a"},{"name":"b"}]}}"#,
            &tools_request("\"ab\""),
            &mut keep
        )
        .is_some());
    }

    #[test]
    fn keep_sees_each_raw_element_of_the_answer_only() {
        let mut seen = Vec::new();
        let mut keep = |name: &str, raw: &[u8]| {
            seen.push((name.to_owned(), String::from_utf8(raw.to_vec()).unwrap()));
            name == "a"
        };
        let out = filter_list(LIST.as_bytes(), &tools_request("1"), &mut keep);
        assert!(out.is_some());
        assert_eq!(
            seen,
            [
                ("a".into(), r#"{"name":"a","x":[1]}"#.into()),
                ("b".into(), r#"{"name":"b"}"#.into()),
                ("c".into(), r#"{"name":"c","description":"ü"}"#.into()),
            ]
        );
        // The answer to another request is not looked at.
        seen.clear();
        let mut keep = |name: &str, _: &[u8]| {
            seen.push((name.to_owned(), String::new()));
            true
        };
        assert_eq!(
            filter_list(LIST.as_bytes(), &tools_request("2"), &mut keep),
            None
        );
        assert!(seen.is_empty());
    }

    #[test]
    fn other_kinds_read_their_key() {
        let json = br#"{"id":1,"result":{"resources":[{"uri":"file:///a","name":"a"},{"uri":"file:///b","name":"b"}]}}"#;
        let request = ListRequest {
            kind: ListKind::Resources,
            id: "1".into(),
        };
        let mut keep = |uri: &str, _: &[u8]| uri == "file:///b";
        let out = filter_list(json, &request, &mut keep).unwrap();
        assert_eq!(
            out,
            br#"{"id":1,"result":{"resources":[{"uri":"file:///b","name":"b"}]}}"#
        );
    }

    #[test]
    fn list_answer_in_a_stream() {
        let json = r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"a"},{"name":"b"}],"nextCursor":"c"}}"#;
        let stream = format!("event: message\ndata: {json}\n\n");
        let mut framer = SseFramer::default();
        let mut out = Vec::new();
        for chunk in stream.as_bytes().chunks(5) {
            for event in framer.push(chunk) {
                let mut keep = only(&["b"]);
                let mut filter = |data: &[u8]| filter_list(data, &tools_request("1"), &mut keep);
                out.extend(rewrite_event(&event, &mut filter).unwrap_or(event));
            }
        }
        out.extend(framer.finish());
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"tools\":[{\"name\":\"b\"}],\"nextCursor\":\"c\"}}\n\n"
        );
    }
}
