use std::cell::Cell;

use super::*;
use crate::identity::cache::tests::entry;
use crate::state::{reserve, MemoryStore};

fn jwt_entry(subject: &str, valid_from: u64, valid_until: u64) -> Cached {
    let mut e = entry(subject, valid_from, valid_until);
    e.identity.kind = IdentityKind::Jwt {
        provider: "corp".into(),
    };
    e.identity.roles = vec!["admin".into(), "".into()];
    e.identity.scopes = vec!["mcp:tools".into()];
    e.identity.claims = [("team".to_owned(), vec!["blue".to_owned()])].into();
    e.identity.expires_at = Some(valid_until);
    e
}

fn store() -> MemoryStore {
    let store = MemoryStore::default();
    reserve(&store).unwrap();
    store
}

/// A token hash landing in slot `slot` of 4, told apart by `n`.
fn token(slot: u8, n: u8) -> TokenHash {
    let mut t = [n; 32];
    t[..4].copy_from_slice(&[slot, 0, 0, 0]);
    t
}

#[test]
fn entries_round_trip_and_malformed_slots_read_as_misses() {
    let e = jwt_entry("alice", 100, 200);
    let bytes = encode(&[3; 32], &e).unwrap();
    assert_eq!(decode(&bytes), Some(([3; 32], e.clone())));
    for cut in 0..bytes.len() {
        assert_eq!(decode(&bytes[..cut]), None, "cut at {cut}");
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert_eq!(decode(&longer), None);
    let mut other_version = bytes;
    other_version[0] = ENTRY_VERSION + 1;
    assert_eq!(decode(&other_version), None);
    // Only verified JWT identities are shared.
    assert_eq!(encode(&[3; 32], &entry("anonymous", 0, 1)), None);
}

#[test]
fn a_slot_serves_only_its_own_token_inside_its_window() {
    let store = store();
    let shared = SharedTokens {
        store: &store,
        slots: 4,
    };
    let (a, b) = (token(1, 1), token(5, 2)); // 1 and 5 share slot 1 of 4
    shared.put(&a, &jwt_entry("a", 100, 200)).unwrap();
    assert_eq!(
        store.get("mcp-guard/jwt/1").map(|(v, _)| !v.is_empty()),
        Some(true)
    );
    for (now, hit) in [(99, false), (100, true), (199, true), (200, false)] {
        assert_eq!(shared.get(&a, now).is_some(), hit, "now={now}");
    }
    assert!(shared.get(&b, 150).is_none());
    // A new token overwrites its slot: the bound is the slot count, predictably.
    shared.put(&b, &jwt_entry("b", 100, 200)).unwrap();
    assert!(shared.get(&a, 150).is_none());
    assert_eq!(shared.get(&b, 150).unwrap().identity.subject, "b");
    let off = SharedTokens {
        store: &store,
        slots: 0,
    };
    assert!(off.get(&b, 150).is_none());
    off.put(&token(2, 3), &jwt_entry("c", 100, 200)).unwrap();
    assert!(store.get("mcp-guard/jwt/2").is_none());
}

/// A store where another worker writes the slot between this worker's read and write.
struct Racing {
    inner: MemoryStore,
    raced: Cell<bool>,
}

impl SharedStore for Racing {
    fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        let seen = self.inner.get(key);
        if !self.raced.replace(true) {
            let other = encode(&token(1, 9), &jwt_entry("other", 0, 10)).unwrap();
            self.inner.set(key, &other, None).unwrap();
        }
        seen
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError> {
        self.inner.set(key, value, cas)
    }
}

#[test]
fn a_concurrent_write_wins_over_a_stale_read() {
    for existing in [false, true] {
        let inner = store();
        if existing {
            let old = encode(&token(1, 7), &jwt_entry("old", 0, 10)).unwrap();
            inner.set("mcp-guard/jwt/1", &old, None).unwrap();
        }
        let store = Racing {
            inner,
            raced: Cell::new(false),
        };
        let shared = SharedTokens {
            store: &store,
            slots: 4,
        };
        assert_eq!(
            shared.put(&token(1, 1), &jwt_entry("mine", 0, 10)),
            Err(StoreError::CasMismatch),
            "existing={existing}"
        );
        assert_eq!(
            shared.get(&token(1, 9), 5).unwrap().identity.subject,
            "other"
        );
    }
}

#[test]
fn the_local_cache_stays_in_front_and_learns_shared_hits() {
    let store = store();
    let e = jwt_entry("alice", 0, 100);
    let mut worker_a = TokenCache::default();
    let mut worker_b = TokenCache::default();
    let layered = |local| Layered {
        local,
        shared: SharedTokens {
            store: &store,
            slots: 8,
        },
        verifications: 0,
        shared_hits: 0,
    };
    let token = TokenKey::new(b"a.b.c");
    layered(&mut worker_a).insert(&token, e.clone());
    let mut b = layered(&mut worker_b);
    assert!(b.get(&token, 10, &|c| c.key != e.key).is_none());
    assert_eq!(b.shared_hits, 0);
    assert_eq!(b.get(&token, 10, &|_| true), Some(e.identity.clone()));
    assert_eq!(b.get(&token, 11, &|_| true), Some(e.identity.clone()));
    assert_eq!(
        b.shared_hits, 1,
        "the second read is served by the local cache"
    );
    assert_eq!(worker_b.len(), 1);
}
