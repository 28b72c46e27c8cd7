//! A per-worker cache of verified tokens, so a client's repeated requests skip the
//! signature check. Keyed by the SHA-256 of the token: raw tokens are never kept.

use std::collections::HashMap;

use super::Identity;

/// Entries a [`TokenCache`] holds by default.
pub const TOKEN_CACHE_CAPACITY: usize = 1024;

/// SHA-256 of a token.
pub(crate) type TokenHash = [u8; 32];

#[derive(Debug, Clone)]
struct Entry {
    identity: Identity,
    /// First second the token is usable (`nbf` minus leeway).
    valid_from: u64,
    /// First second the token is no longer served from the cache (`exp`).
    valid_until: u64,
}

/// Bounded map from token hash to identity. When full, the oldest insertion is evicted
/// (first in, first out through a ring of keys): O(1), no scans, no clock reads. Expired
/// entries are never returned and age out through the ring.
#[derive(Debug, Clone)]
pub struct TokenCache {
    entries: HashMap<TokenHash, Entry>,
    /// Keys in insertion order; `next` is the slot the next new key overwrites once full.
    ring: Vec<TokenHash>,
    next: usize,
    capacity: usize,
}

impl Default for TokenCache {
    fn default() -> Self {
        TokenCache::new(TOKEN_CACHE_CAPACITY)
    }
}

impl TokenCache {
    /// A cache of at most `capacity` entries (at least one).
    pub fn new(capacity: usize) -> TokenCache {
        let capacity = capacity.max(1);
        TokenCache {
            entries: HashMap::with_capacity(capacity),
            ring: Vec::with_capacity(capacity),
            next: 0,
            capacity,
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The identity cached for `token`, if it is usable at `now`.
    pub(crate) fn get(&self, token: &TokenHash, now: u64) -> Option<&Identity> {
        self.entries
            .get(token)
            .filter(|e| e.valid_from <= now && now < e.valid_until)
            .map(|e| &e.identity)
    }

    pub(crate) fn insert(
        &mut self,
        token: TokenHash,
        identity: Identity,
        valid_from: u64,
        valid_until: u64,
    ) {
        let entry = Entry {
            identity,
            valid_from,
            valid_until,
        };
        if let Some(old) = self.entries.get_mut(&token) {
            *old = entry;
            return;
        }
        if self.ring.len() < self.capacity {
            self.ring.push(token);
        } else if let Some(slot) = self.ring.get_mut(self.next) {
            self.entries.remove(slot);
            *slot = token;
            self.next = (self.next + 1) % self.capacity;
        }
        self.entries.insert(token, entry);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::IdentityKind;

    fn identity(subject: &str) -> Identity {
        Identity {
            kind: IdentityKind::Anonymous,
            subject: subject.into(),
            roles: vec![],
            scopes: vec![],
            claims: Default::default(),
            expires_at: Some(200),
        }
    }

    #[test]
    fn entries_live_between_valid_from_and_valid_until() {
        let mut cache = TokenCache::default();
        cache.insert([1; 32], identity("a"), 100, 200);
        for (now, hit) in [
            (99, false),
            (100, true),
            (199, true),
            (200, false),
            (500, false),
        ] {
            assert_eq!(cache.get(&[1; 32], now).is_some(), hit, "now={now}");
        }
        assert!(cache.get(&[2; 32], 150).is_none());
    }

    #[test]
    fn evicts_the_oldest_insertion_when_full() {
        let mut cache = TokenCache::new(3);
        for i in 0..3u8 {
            cache.insert([i; 32], identity(&i.to_string()), 0, 10);
        }
        cache.insert([1; 32], identity("1 again"), 0, 10); // replaces in place
        assert_eq!(cache.len(), 3);
        cache.insert([3; 32], identity("3"), 0, 10);
        cache.insert([4; 32], identity("4"), 0, 10);
        assert_eq!(cache.len(), 3);
        let alive: Vec<bool> = (0..5u8).map(|i| cache.get(&[i; 32], 5).is_some()).collect();
        assert_eq!(alive, [false, false, true, true, true]);
        assert_eq!(cache.get(&[2; 32], 5).unwrap().subject, "2");
        for i in 5..100u8 {
            cache.insert([i; 32], identity("x"), 0, 10);
            assert!(cache.len() <= 3 && cache.ring.len() <= 3);
        }
    }
}
