//! The SSE framer and the list filter. Framing is lossless whatever the chunking: the events
//! and the tail put back together are the input. A filtered tools/list answer is valid JSON
//! that serde_json reads as the input without the dropped tool and without the elements
//! that have no single string name (which the filter cannot judge, so it drops them), in
//! order.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::fmt;

use mcp_guard::response::listfilter::{filter_list, ListKind, ListRequest};
use mcp_guard::response::sse::SseFramer;
use serde::de::{Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::Value;

/// The tool every filtered answer must lose.
const DROPPED: &str = "drop";

/// A list element's name as an upstream would judge it: `None` unless the element is an
/// object with exactly one `name` member, a string (serde_json's `Value` keeps only the last
/// of repeated keys, so it cannot tell).
struct Named(Option<String>);

impl<'de> Deserialize<'de> for Named {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Named, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Named;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Named, A::Error> {
                let (mut name, mut count) = (None, 0);
                while let Some(key) = map.next_key::<String>()? {
                    let value: Value = map.next_value()?;
                    if key == "name" {
                        count += 1;
                        name = value.as_str().map(str::to_owned);
                    }
                }
                Ok(Named(if count == 1 { name } else { None }))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Named, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Named(None))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Named, E> {
                Ok(Named(None))
            }
            fn visit_i64<E>(self, _: i64) -> Result<Named, E> {
                Ok(Named(None))
            }
            fn visit_u64<E>(self, _: u64) -> Result<Named, E> {
                Ok(Named(None))
            }
            fn visit_f64<E>(self, _: f64) -> Result<Named, E> {
                Ok(Named(None))
            }
            fn visit_str<E>(self, _: &str) -> Result<Named, E> {
                Ok(Named(None))
            }
            fn visit_unit<E>(self) -> Result<Named, E> {
                Ok(Named(None))
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Deserialize)]
struct Answer {
    result: ListResult,
}

#[derive(Deserialize)]
struct ListResult {
    tools: Vec<Named>,
}

fuzz_target!(|data: &[u8]| {
    let Some((&split, body)) = data.split_first() else {
        return;
    };
    // Framing: feed the body in chunks of a size the input picks.
    let chunk = usize::from(split % 16) + 1;
    let mut framer = SseFramer::default();
    let mut rebuilt = Vec::new();
    for piece in body.chunks(chunk) {
        for event in framer.push(piece) {
            assert!(!event.is_empty());
            rebuilt.extend_from_slice(&event);
        }
    }
    rebuilt.extend_from_slice(&framer.finish());
    assert_eq!(rebuilt, body, "framing lost or changed bytes");

    // Filtering: the body as a JSON answer to tools/list request id 1.
    let request = ListRequest {
        kind: ListKind::Tools,
        id: "1".into(),
    };
    let Some(out) = filter_list(body, &request, &mut |name, _raw| name != DROPPED) else {
        return;
    };
    let ours: Value = serde_json::from_slice(&out).expect("filtered answer is not JSON");
    let theirs: Value = serde_json::from_slice(body).expect("filtered an answer that is not JSON");
    let names: Answer =
        serde_json::from_slice(body).expect("filtered an answer without a tools list");
    let all = theirs["result"]["tools"]
        .as_array()
        .expect("filtered an answer without a tools array");
    let kept: Vec<&Value> = all
        .iter()
        .zip(&names.result.tools)
        .filter(|(_, named)| named.0.as_deref().is_some_and(|name| name != DROPPED))
        .map(|(value, _)| value)
        .collect();
    let shown: Vec<&Value> = ours["result"]["tools"]
        .as_array()
        .expect("tools array lost")
        .iter()
        .collect();
    assert_eq!(
        shown, kept,
        "filtered list differs from the input minus the dropped tool"
    );
    assert_eq!(ours["id"], theirs["id"]);
});
