//! The SSE framer and the list filter. Framing is lossless whatever the chunking: the events
//! and the tail put back together are the input. A filtered tools/list answer is valid JSON
//! that serde_json reads as the input without the dropped tool and without elements that
//! have no string name (which the filter cannot judge, so it drops them), in order.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcp_guard::listfilter::{filter_list, ListKind, ListRequest, SseFramer};
use serde_json::Value;

/// The tool every filtered answer must lose.
const DROPPED: &str = "drop";

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
    let Some(out) = filter_list(body, &request, &mut |name| name != DROPPED) else {
        return;
    };
    let ours: Value = serde_json::from_slice(&out).expect("filtered answer is not JSON");
    let theirs: Value = serde_json::from_slice(body).expect("filtered an answer that is not JSON");
    let kept: Vec<&Value> = theirs["result"]["tools"]
        .as_array()
        .expect("filtered an answer without a tools array")
        .iter()
        .filter(|t| t["name"].as_str().is_some_and(|name| name != DROPPED))
        .collect();
    let shown: Vec<&Value> = ours["result"]["tools"].as_array().expect("tools array lost").iter().collect();
    assert_eq!(shown, kept, "filtered list differs from the input minus the dropped tool");
    assert_eq!(ours["id"], theirs["id"]);
});
