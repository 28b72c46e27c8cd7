//! A per-worker cache of verified tokens, so a client's repeated requests skip the
//! signature check. Raw tokens are never kept: this cache keys a token by a 128-bit
//! fingerprint under a secret drawn per VM (SipHash-2-4's 128-bit output, one pass, a
//! fraction of the cost of SHA-256 on a long token; no caller can aim for another token's
//! fingerprint without the secret), and the cache every worker shares by its SHA-256,
//! computed only when this one misses ([`TokenKey`]).

use std::cell::OnceCell;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;

use super::keys::KeyFingerprint;
use super::sip128::{sip128, SipKey};
use super::Identity;
use crate::fasthash::{FastHash, FastMap};

/// Entries a [`TokenCache`] holds by default.
pub const TOKEN_CACHE_CAPACITY: usize = 1024;

/// SHA-256 of a token.
pub type TokenHash = [u8; 32];

/// A presented token as the caches look it up; its SHA-256 is computed on first need.
pub struct TokenKey<'a> {
    token: &'a [u8],
    sha256: OnceCell<TokenHash>,
}

impl<'a> TokenKey<'a> {
    pub fn new(token: &'a [u8]) -> TokenKey<'a> {
        TokenKey {
            token,
            sha256: OnceCell::new(),
        }
    }

    pub fn sha256(&self) -> &TokenHash {
        self.sha256
            .get_or_init(|| hmac_sha256::Hash::hash(self.token))
    }
}

/// A token's key in one VM's [`TokenCache`].
type Fingerprint = u128;

/// Names a provider's verification settings (see `Provider::cache_tag`): an entry verified
/// under other settings is not reused.
pub type ProviderTag = [u8; 16];

/// A verified token as the caches hold it: what the decision needs, until when, and who
/// vouched for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cached {
    pub identity: Identity,
    /// The provider that verified it.
    pub provider: ProviderTag,
    /// The key whose signature checked: once it leaves the provider's set, so does the entry.
    pub key: KeyFingerprint,
    /// First second the token is usable (`nbf` minus leeway).
    pub valid_from: u64,
    /// First second the token is no longer served from the cache (`exp`).
    pub valid_until: u64,
}

impl Cached {
    pub(crate) fn usable_at(&self, now: u64) -> bool {
        self.valid_from <= now && now < self.valid_until
    }
}

/// Whether the provider and key a cached entry names still vouch for it.
pub type Trusted<'a> = &'a dyn Fn(&Cached) -> bool;

/// Where verified tokens are remembered between requests. Entries outside their time
/// window, or not [`Trusted`], are never returned.
pub trait VerifiedTokens {
    fn get(&mut self, token: &TokenKey<'_>, now: u64, trusted: Trusted<'_>) -> Option<Identity>;
    fn insert(&mut self, token: &TokenKey<'_>, entry: Cached);
    /// A signature was checked (a cache miss): for the verification counter.
    fn count_verification(&mut self) {}
}

/// Bounded map from token hash to identity. When full, the oldest insertion is evicted
/// (first in, first out through a ring of keys): O(1), no scans, no clock reads. Expired
/// entries are never returned and age out through the ring.
#[derive(Debug, Clone)]
pub struct TokenCache {
    /// Fingerprints are outputs of a keyed PRF: the fast hasher is enough for the table.
    entries: FastMap<Fingerprint, Cached>,
    /// Keys in insertion order; `next` is the slot the next new key overwrites once full.
    ring: Vec<Fingerprint>,
    next: usize,
    capacity: usize,
    /// The fingerprint's secret, drawn for this VM.
    secret: SipKey,
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
            entries: FastMap::with_capacity_and_hasher(capacity, FastHash::default()),
            ring: Vec::with_capacity(capacity),
            next: 0,
            capacity,
            // std's per-map random keys, drawn from the host's random source: a keyed hash
            // of a constant under each is a fresh secret word.
            secret: SipKey([RandomState::new(), RandomState::new()].map(|r| r.hash_one(0u8))),
        }
    }

    fn fingerprint(&self, token: &TokenKey<'_>) -> Fingerprint {
        sip128(self.secret, token.token)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl VerifiedTokens for TokenCache {
    fn get(&mut self, token: &TokenKey<'_>, now: u64, trusted: Trusted<'_>) -> Option<Identity> {
        self.entries
            .get(&self.fingerprint(token))
            .filter(|e| e.usable_at(now) && trusted(e))
            .map(|e| e.identity.clone())
    }

    fn insert(&mut self, token: &TokenKey<'_>, entry: Cached) {
        let token = self.fingerprint(token);
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
pub(crate) mod tests {
    use super::*;
    use crate::identity::IdentityKind;

    pub(crate) fn entry(subject: &str, valid_from: u64, valid_until: u64) -> Cached {
        Cached {
            identity: identity(subject),
            provider: [7; 16],
            key: [9; 32],
            valid_from,
            valid_until,
        }
    }

    fn any(_: &Cached) -> bool {
        true
    }

    /// The token `[n]` (leaked: a test's tokens live as long as it).
    fn key(n: u8) -> TokenKey<'static> {
        TokenKey::new(Box::leak(Box::new([n])))
    }

    pub(crate) fn identity(subject: &str) -> Identity {
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
        cache.insert(&key(1), entry("a", 100, 200));
        for (now, hit) in [
            (99, false),
            (100, true),
            (199, true),
            (200, false),
            (500, false),
        ] {
            assert_eq!(cache.get(&key(1), now, &any).is_some(), hit, "now={now}");
        }
        assert!(cache.get(&key(2), 150, &any).is_none());
        assert!(cache.get(&key(1), 150, &|e| e.key != [9; 32]).is_none());
    }

    #[test]
    fn evicts_the_oldest_insertion_when_full() {
        let mut cache = TokenCache::new(3);
        for i in 0..3u8 {
            cache.insert(&key(i), entry(&i.to_string(), 0, 10));
        }
        cache.insert(&key(1), entry("1 again", 0, 10)); // replaces in place
        assert_eq!(cache.len(), 3);
        cache.insert(&key(3), entry("3", 0, 10));
        cache.insert(&key(4), entry("4", 0, 10));
        assert_eq!(cache.len(), 3);
        let alive: Vec<bool> = (0..5u8)
            .map(|i| cache.get(&key(i), 5, &any).is_some())
            .collect();
        assert_eq!(alive, [false, false, true, true, true]);
        assert_eq!(cache.get(&key(2), 5, &any).unwrap().subject, "2");
        for i in 5..100u8 {
            cache.insert(&key(i), entry("x", 0, 10));
            assert!(cache.len() <= 3 && cache.ring.len() <= 3);
        }
    }
}
