#![allow(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing)] // tests
//! Unit tests of the shared schemas: written once per hash, bounded per upstream.

use super::*;
use crate::state::MemoryStore;

fn shared<'a>(
    store: &'a MemoryStore,
    upstream: &'a str,
    max_tools: u32,
) -> SharedSchemas<'a, MemoryStore> {
    SharedSchemas {
        store,
        upstream,
        max_tools,
    }
}

#[test]
fn schemas_are_written_once_per_hash_and_bounded_per_upstream() {
    let store = MemoryStore::reserved();
    let a = shared(&store, "a", 1);
    let h = |n: u8| [n; 32];
    assert_eq!(a.load(&h(1)), None);
    assert!(a.publish(&h(1), Some(r#"{"type":"object"}"#)));
    let (_, version) = store
        .get(&SharedSchemas::<MemoryStore>::key(&h(1)))
        .unwrap();
    // Already there: not written again (same hash, same text).
    assert!(a.publish(&h(1), Some("ignored")));
    assert_eq!(
        store
            .get(&SharedSchemas::<MemoryStore>::key(&h(1)))
            .unwrap()
            .1,
        version
    );
    assert_eq!(a.load(&h(1)), Some(Some(br#"{"type":"object"}"#.to_vec())));
    // A tool without inputSchema is stored as such.
    assert!(a.publish(&h(2), None));
    assert_eq!(a.load(&h(2)), Some(None));
    // The bound: SCHEMAS_PER_TOOL × max_tools = 2 entries for "a".
    assert!(!a.publish(&h(3), Some("{}")));
    assert_eq!(a.load(&h(3)), None);
    // Another upstream has its own count, and sees what "a" stored (content-addressed).
    let b = shared(&store, "b", 1);
    assert_eq!(b.load(&h(1)), a.load(&h(1)));
    assert!(b.publish(&h(3), Some("{}")));
}
