//! State: the process-wide key-value store every Envoy worker's VM sees (proxy-wasm shared
//! data), behind a trait so the core's cross-worker state (rate-limit buckets, learned tool
//! annotations, pinned tool definitions) is tested natively with [`MemoryStore`]. It
//! decides nothing; it only says what a read or a compare-and-swap write did.
//!
//! The host's semantics, which the fake reproduces (proxy-wasm-cpp-host `SharedData`):
//! - every successful set gives the entry a new version ("cas"), from one process-wide
//!   counter that starts at 1;
//! - a set with `cas` `None` (0 on the wire) overwrites unconditionally;
//! - a set with `Some(cas)` on an existing key fails with [`StoreError::CasMismatch`]
//!   unless the entry's version is `cas`; on an absent key it always succeeds;
//! - keys are never deleted, and there is no TTL: callers must bound their key space.

use std::cell::{Cell, RefCell};

use crate::fasthash::FastMap;

/// Why a set failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreError {
    /// The entry changed since it was read (or was created by another worker).
    CasMismatch,
    /// The host refused for another reason.
    Host,
}

/// Shared data as the core uses it.
pub trait SharedStore {
    /// The value under `key` and its version, if the key was ever set.
    fn get(&self, key: &str) -> Option<(Vec<u8>, u32)>;
    /// Stores `value` under `key`: unconditionally with `cas` `None`, else only if the
    /// entry's version is still `cas` (or the key is absent; see [`insert_new`]).
    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError>;
}

/// Appends `<len>:<value>` to a shared-data key: parts are length-prefixed so that no two
/// run together. Built by hand: keys are made on every request, and `format!` costs
/// several times the pushes in wasm.
pub fn push_key_part(key: &mut String, value: &str) {
    push_decimal(key, value.len());
    key.push(':');
    key.push_str(value);
}

fn push_decimal(out: &mut String, n: usize) {
    if n >= 10 {
        push_decimal(out, n / 10);
    }
    out.push(char::from(b'0' + (n % 10) as u8));
}

/// Key of the entry the glue writes once at start so that no other entry ever has version
/// [`ABSENT_CAS`] (the host's first version is 1).
pub const RESERVE_KEY: &str = "mcp-guard/reserve";
/// The version [`insert_new`] sets with: reserved by [`RESERVE_KEY`], so a set with it
/// fails on any existing entry.
pub const ABSENT_CAS: u32 = 1;

/// Writes the reservation that makes [`insert_new`] race-free; call once per process start
/// (more calls are harmless).
pub fn reserve(store: &impl SharedStore) -> Result<(), StoreError> {
    match store.get(RESERVE_KEY) {
        Some(_) => Ok(()),
        None => store.set(RESERVE_KEY, b"", None),
    }
}

/// Creates `key` with `value` unless it exists: when two workers race, exactly one
/// creates it and the other gets [`StoreError::CasMismatch`] (a set with version 0 would
/// overwrite, and any unreserved version could match the winner's).
pub fn insert_new(store: &impl SharedStore, key: &str, value: &[u8]) -> Result<(), StoreError> {
    store.set(key, value, Some(ABSENT_CAS))
}

/// Attempts at a compare-and-swap update before giving up (another worker keeps winning).
pub const CAS_ATTEMPTS: usize = 8;

/// Moves the counter under `key` (a little-endian `u32`, absent: 0) by `delta` within
/// `0..=max`; `false` if it cannot (at a bound, or the store keeps refusing). Counters bound
/// the entries a key space may create, since entries are never deleted.
pub fn add_to_count(store: &impl SharedStore, key: &str, delta: i64, max: u32) -> bool {
    for _ in 0..CAS_ATTEMPTS {
        let (count, cas) = match store.get(key) {
            Some((bytes, cas)) => match <[u8; 4]>::try_from(bytes.as_slice()) {
                Ok(b) => (u32::from_le_bytes(b), Some(cas)),
                Err(_) => return false,
            },
            None => (0, None),
        };
        let next = i64::from(count) + delta;
        if next < 0 || next > i64::from(max) {
            return false;
        }
        let bytes = (next as u32).to_le_bytes();
        let result = match cas {
            Some(cas) => store.set(key, &bytes, Some(cas)),
            None => insert_new(store, key, &bytes),
        };
        match result {
            Ok(()) => return true,
            Err(StoreError::CasMismatch) => continue,
            Err(StoreError::Host) => return false,
        }
    }
    false
}

impl<T: SharedStore> SharedStore for &T {
    fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        (**self).get(key)
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError> {
        (**self).set(key, value, cas)
    }
}

/// A value and its version, as [`SharedStore::get`] returns them.
type Entry = (Vec<u8>, u32);

/// Entries a worker's [`ReadMemo`] holds; past it, it starts over.
const MEMO_ENTRIES: usize = 4096;

/// What one worker last read of a family of keys, each entry with the family's version
/// at the time ([`Versioned`]).
#[derive(Debug, Default)]
pub struct ReadMemo {
    entries: FastMap<String, (Option<u32>, Option<Entry>)>,
}

/// A family of keys read far more often than written (the tools learned of one upstream),
/// with a version entry every write bumps: a worker answers reads from its [`ReadMemo`]
/// while the version is the one it read them under, so a warm read costs the one read of
/// the version per instance (make one per decision). A write lands before its bump, and a
/// read memoises under the version read before it, so a memoised value is never older
/// than the version it is kept under. Every write of the family must go through here.
pub struct Versioned<'a, S: SharedStore> {
    store: &'a S,
    memo: &'a RefCell<ReadMemo>,
    version_key: String,
    /// The version key's `cas` as this instance read it (`Some(None)`: never written).
    version: Cell<Option<Option<u32>>>,
}

impl<'a, S: SharedStore> Versioned<'a, S> {
    pub fn new(store: &'a S, memo: &'a RefCell<ReadMemo>, version_key: String) -> Self {
        Versioned {
            store,
            memo,
            version_key,
            version: Cell::new(None),
        }
    }

    /// The family's version as this instance read it (once, at its first use; again after
    /// its own write): `None` while nothing of the family was ever written.
    pub fn version(&self) -> Option<u32> {
        if let Some(version) = self.version.get() {
            return version;
        }
        let version = self.store.get(&self.version_key).map(|(_, cas)| cas);
        self.version.set(Some(version));
        version
    }
}

impl<S: SharedStore> SharedStore for Versioned<'_, S> {
    fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        let version = self.version();
        if let Some((at, value)) = self.memo.borrow().entries.get(key) {
            if *at == version {
                return value.clone();
            }
        }
        let value = self.store.get(key);
        let mut memo = self.memo.borrow_mut();
        if memo.entries.len() >= MEMO_ENTRIES {
            memo.entries.clear();
        }
        memo.entries
            .insert(key.to_owned(), (version, value.clone()));
        value
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError> {
        let result = self.store.set(key, value, cas);
        // Whatever happened, the next read of `key` asks the store (a CAS loop must see
        // the entry that beat it).
        self.memo.borrow_mut().entries.remove(key);
        result?;
        self.version.set(None);
        self.store.set(&self.version_key, b"", None)
    }
}

/// An in-memory [`SharedStore`] with the host's semantics, for tests.
#[cfg(test)]
#[derive(Default)]
pub struct MemoryStore {
    entries: std::cell::RefCell<std::collections::HashMap<String, (Vec<u8>, u32)>>,
    last_cas: std::cell::Cell<u32>,
}

#[cfg(test)]
impl MemoryStore {
    /// A store as the glue leaves it at start: reserved for [`insert_new`].
    pub fn reserved() -> MemoryStore {
        let store = MemoryStore::default();
        let _ = reserve(&store);
        store
    }
}

#[cfg(test)]
impl SharedStore for MemoryStore {
    fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        self.entries.borrow().get(key).cloned()
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError> {
        let mut entries = self.entries.borrow_mut();
        if let (Some(cas), Some((_, current))) = (cas, entries.get(key)) {
            if cas != *current {
                return Err(StoreError::CasMismatch);
            }
        }
        let next = self.last_cas.get().wrapping_add(1).max(1);
        self.last_cas.set(next);
        entries.insert(key.to_string(), (value.to_vec(), next));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_change_on_every_set_and_guard_updates() {
        let store = MemoryStore::default();
        store.set("a", b"1", None).unwrap();
        let (_, v1) = store.get("a").unwrap();
        store.set("a", b"2", Some(v1)).unwrap();
        assert_eq!(store.set("a", b"3", Some(v1)), Err(StoreError::CasMismatch));
        assert_eq!(store.get("a").unwrap().0, b"2");
    }

    #[test]
    fn insert_new_creates_once_after_the_reservation() {
        let store = MemoryStore::default();
        // Without the reservation the first entry ever gets version 1 and a second
        // "create" would overwrite it: the race the reservation closes.
        reserve(&store).unwrap();
        insert_new(&store, "k", b"first").unwrap();
        assert_eq!(
            insert_new(&store, "k", b"second"),
            Err(StoreError::CasMismatch)
        );
        assert_eq!(store.get("k").unwrap().0, b"first");
    }

    #[test]
    fn versioned_reads_stay_current_across_workers() {
        let store = MemoryStore::reserved();
        let (memo_a, memo_b) = (RefCell::default(), RefCell::default());
        let worker = |memo| Versioned::new(&store, memo, "v".into());
        store.set("k", b"1", None).unwrap();
        assert_eq!(worker(&memo_a).get("k").unwrap().0, b"1");
        // Written behind the memo's back (no bump): a worker keeps what it read.
        store.set("k", b"stale", None).unwrap();
        assert_eq!(worker(&memo_a).get("k").unwrap().0, b"1");
        // Written through another worker's family: every worker reads it afresh.
        let b = worker(&memo_b);
        let (_, cas) = b.get("k").unwrap();
        b.set("k", b"2", Some(cas)).unwrap();
        assert_eq!(worker(&memo_a).get("k").unwrap().0, b"2");
        assert_eq!(worker(&memo_a).get("absent"), None);
        worker(&memo_b).set("absent", b"3", None).unwrap();
        assert_eq!(worker(&memo_a).get("absent").unwrap().0, b"3");
    }

    #[test]
    fn a_failed_compare_and_swap_reads_the_winner_next() {
        let store = MemoryStore::reserved();
        let memo = RefCell::default();
        let a = Versioned::new(&store, &memo, "v".into());
        insert_new(&a, "k", b"1").unwrap();
        let (_, cas) = a.get("k").unwrap();
        store.set("k", b"other", None).unwrap();
        assert_eq!(a.set("k", b"2", Some(cas)), Err(StoreError::CasMismatch));
        assert_eq!(a.get("k").unwrap().0, b"other");
    }

    #[test]
    fn without_reservation_version_one_is_taken_by_a_real_entry() {
        let store = MemoryStore::default();
        insert_new(&store, "k", b"first").unwrap();
        assert_eq!(store.get("k").unwrap().1, ABSENT_CAS);
        assert!(insert_new(&store, "k", b"second").is_ok());
    }
}
