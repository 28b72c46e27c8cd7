//! Verified tokens shared by every Envoy worker, so a token is verified once per Envoy
//! process rather than once per worker VM. The per-VM [`TokenCache`] stays in front
//! ([`Layered`]): a hit there costs no host call.
//!
//! Shared data has no TTL and keys are never deleted, so the cache is direct-mapped: a fixed
//! number of slots `mcp-guard/jwt/<i>`, `i` taken from the token's SHA-256; a new token
//! overwrites whatever its slot held. Entries carry the full token hash (never the token),
//! the verified identity, its time window, the provider's settings tag and the fingerprint
//! of the key that checked the signature: an entry is used only inside its window and while
//! that provider, configured the same, still has that key. Writes are compare-and-swap on
//! the version read, and a lost race is simply not written (the winner's entry is as good).

use std::collections::BTreeMap;

use super::cache::{Cached, TokenCache, TokenHash, TokenKey, Trusted, VerifiedTokens};
use super::{Identity, IdentityKind};
use crate::state::{insert_new, SharedStore, StoreError};

/// Default `auth.shared_token_cache_slots`.
pub const DEFAULT_SLOTS: u32 = 4096;
/// Largest accepted `auth.shared_token_cache_slots`.
pub const MAX_SLOTS: u32 = 65_536;

const KEY_PREFIX: &str = "mcp-guard/jwt/";
const ENTRY_VERSION: u8 = 1;

/// The shared slots as one worker sees them.
pub struct SharedTokens<'a, S: SharedStore> {
    pub store: &'a S,
    /// Number of slots; 0 turns the shared cache off.
    pub slots: u32,
}

impl<S: SharedStore> SharedTokens<'_, S> {
    fn key(&self, token: &TokenHash) -> Option<String> {
        let [a, b, c, d, ..] = *token;
        let slot = u32::from_le_bytes([a, b, c, d]).checked_rem(self.slots)?;
        Some(format!("{KEY_PREFIX}{slot}"))
    }

    /// The entry for `token`, if its slot holds it and it is usable at `now`.
    pub fn get(&self, token: &TokenHash, now: u64) -> Option<Cached> {
        let (bytes, _) = self.store.get(&self.key(token)?)?;
        let (hash, entry) = decode(&bytes)?;
        (hash == *token && entry.usable_at(now)).then_some(entry)
    }

    /// Writes `entry` into the slot of `token` unless it already holds it. A concurrent
    /// write by another worker wins ([`StoreError::CasMismatch`]).
    pub fn put(&self, token: &TokenHash, entry: &Cached) -> Result<(), StoreError> {
        let Some(key) = self.key(token) else {
            return Ok(());
        };
        let bytes = encode(token, entry).ok_or(StoreError::Host)?;
        match self.store.get(&key) {
            None => insert_new(self.store, &key, &bytes),
            Some((current, _)) if current == bytes => Ok(()),
            Some((_, cas)) => self.store.set(&key, &bytes, Some(cas)),
        }
    }
}

/// The per-VM cache in front of the shared one, counting what the glue reports.
pub struct Layered<'a, S: SharedStore> {
    pub local: &'a mut TokenCache,
    pub shared: SharedTokens<'a, S>,
    /// Signatures checked (misses in both caches).
    pub verifications: u32,
    /// Tokens taken from the shared cache (verified by another worker, or evicted here).
    pub shared_hits: u32,
}

impl<S: SharedStore> VerifiedTokens for Layered<'_, S> {
    fn get(&mut self, token: &TokenKey<'_>, now: u64, trusted: Trusted<'_>) -> Option<Identity> {
        if let Some(identity) = self.local.get(token, now, trusted) {
            return Some(identity);
        }
        let entry = self
            .shared
            .get(token.sha256(), now)
            .filter(|e| trusted(e))?;
        let identity = entry.identity.clone();
        self.local.insert(token, entry);
        self.shared_hits += 1;
        Some(identity)
    }

    fn insert(&mut self, token: &TokenKey<'_>, entry: Cached) {
        // Best effort: a slot another worker just wrote, or a host error, only costs that
        // other worker one verification.
        let _ = self.shared.put(token.sha256(), &entry);
        self.local.insert(token, entry);
    }

    fn count_verification(&mut self) {
        self.verifications += 1;
    }
}

/// `version, token hash, provider tag, key fingerprint, valid_from, valid_until, provider
/// name, subject, roles, scopes, claims`; integers little-endian, strings and lists
/// prefixed by a u32 length. `None` if a length does not fit.
fn encode(token: &TokenHash, entry: &Cached) -> Option<Vec<u8>> {
    let IdentityKind::Jwt { provider } = &entry.identity.kind else {
        return None;
    };
    let identity = &entry.identity;
    let mut out = Vec::with_capacity(128 + identity.subject.len());
    out.push(ENTRY_VERSION);
    out.extend_from_slice(token);
    out.extend_from_slice(&entry.provider);
    out.extend_from_slice(&entry.key);
    out.extend_from_slice(&entry.valid_from.to_le_bytes());
    out.extend_from_slice(&entry.valid_until.to_le_bytes());
    put_str(&mut out, provider)?;
    put_str(&mut out, &identity.subject)?;
    put_list(&mut out, &identity.roles)?;
    put_list(&mut out, &identity.scopes)?;
    put_len(&mut out, identity.claims.len())?;
    for (name, values) in &identity.claims {
        put_str(&mut out, name)?;
        put_list(&mut out, values)?;
    }
    Some(out)
}

fn put_len(out: &mut Vec<u8>, len: usize) -> Option<()> {
    out.extend_from_slice(&u32::try_from(len).ok()?.to_le_bytes());
    Some(())
}

fn put_str(out: &mut Vec<u8>, s: &str) -> Option<()> {
    put_len(out, s.len())?;
    out.extend_from_slice(s.as_bytes());
    Some(())
}

fn put_list(out: &mut Vec<u8>, items: &[String]) -> Option<()> {
    put_len(out, items.len())?;
    items.iter().try_for_each(|s| put_str(out, s))
}

/// The token hash and entry of an encoded slot; `None` for anything malformed (read as a
/// miss, and overwritten by the next verification).
fn decode(bytes: &[u8]) -> Option<(TokenHash, Cached)> {
    let mut r = Reader(bytes);
    if r.take(1)? != [ENTRY_VERSION] {
        return None;
    }
    let token = r.array()?;
    let provider_tag = r.array()?;
    let key = r.array()?;
    let valid_from = u64::from_le_bytes(r.array()?);
    let valid_until = u64::from_le_bytes(r.array()?);
    let provider = r.string()?;
    let subject = r.string()?;
    let roles = r.list()?;
    let scopes = r.list()?;
    let mut claims = BTreeMap::new();
    for _ in 0..r.len()? {
        let name = r.string()?;
        claims.insert(name, r.list()?);
    }
    if !r.0.is_empty() {
        return None;
    }
    let identity = Identity {
        kind: IdentityKind::Jwt { provider },
        subject,
        roles,
        scopes,
        claims,
        expires_at: Some(valid_until),
    };
    let entry = Cached {
        identity,
        provider: provider_tag,
        key,
        valid_from,
        valid_until,
    };
    Some((token, entry))
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = self.0.split_at_checked(n)?;
        self.0 = rest;
        Some(head)
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }

    fn len(&mut self) -> Option<usize> {
        usize::try_from(u32::from_le_bytes(self.array()?)).ok()
    }

    fn string(&mut self) -> Option<String> {
        let n = self.len()?;
        String::from_utf8(self.take(n)?.to_vec()).ok()
    }

    fn list(&mut self) -> Option<Vec<String>> {
        // Each string needs at least its 4-byte length: a bogus count fails before it allocates.
        let n = self.len()?;
        if n > self.0.len() / 4 {
            return None;
        }
        (0..n).map(|_| self.string()).collect()
    }
}

#[cfg(test)]
mod tests;
