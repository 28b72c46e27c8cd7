//! Signing keys per JWT provider, and when to fetch remote ones.
//!
//! Remote JWKS are fetched at start, refreshed on a period, and re-fetched early when a
//! token names an unknown `kid` (at most once per `min_refetch`), so key rotation needs no
//! restart. A failed fetch keeps the last good keys. The glue does the I/O and passes the
//! time in; this module only decides.

use std::rc::Rc;

use crate::identity::{KeyLookup, KeySet};

/// While a provider has no keys at all, a failed fetch is retried this soon.
const RETRY_WITHOUT_KEYS_MS: u64 = 1000;

/// How one remote JWKS is kept fresh.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchPolicy {
    pub refresh_ms: u64,
    pub min_refetch_ms: u64,
    /// A fetch not answered within this (plus a second) is taken as lost, e.g. because the
    /// request that started it went away with its callback.
    pub timeout_ms: u64,
}

#[derive(Debug)]
struct Entry {
    remote: Option<FetchPolicy>,
    keys: Option<Rc<KeySet>>,
    in_flight: Option<u32>,
    last_attempt_ms: Option<u64>,
    last_success_ms: Option<u64>,
}

impl Entry {
    /// A fetch is under way and not yet given up on.
    fn busy(&self, now_ms: u64) -> bool {
        let limit = self.remote.map_or(0, |p| p.timeout_ms + 1000);
        self.in_flight.is_some()
            && self
                .last_attempt_ms
                .is_some_and(|t| now_ms.saturating_sub(t) <= limit)
    }
}

/// Keys of every provider (by provider index) and their fetch state.
#[derive(Debug, Default)]
pub struct KeyStore {
    entries: Vec<Entry>,
}

impl KeyStore {
    /// One entry per provider, by index: its fetch policy if its keys are remote (inline
    /// keys live in the provider itself).
    pub fn new(providers: impl IntoIterator<Item = Option<FetchPolicy>>) -> KeyStore {
        let entries = providers
            .into_iter()
            .map(|remote| Entry {
                remote,
                keys: None,
                in_flight: None,
                last_attempt_ms: None,
                last_success_ms: None,
            })
            .collect();
        KeyStore { entries }
    }

    /// Remote providers whose keys should be fetched now: never fetched, a retry is due, or
    /// the refresh period has passed.
    pub fn due(&self, now_ms: u64) -> Vec<usize> {
        let mut due = Vec::new();
        for (i, e) in self.entries.iter().enumerate() {
            let Some(policy) = e.remote else {
                continue;
            };
            if e.busy(now_ms) {
                continue;
            }
            let since = |t: Option<u64>| t.map(|t| now_ms.saturating_sub(t));
            let wanted = match (&e.keys, since(e.last_attempt_ms), since(e.last_success_ms)) {
                (_, None, _) => true,
                (None, Some(a), _) => a >= RETRY_WITHOUT_KEYS_MS,
                (Some(_), Some(a), s) => {
                    s.is_none_or(|s| s >= policy.refresh_ms)
                        && a >= policy.min_refetch_ms.min(policy.refresh_ms)
                }
            };
            if wanted {
                due.push(i);
            }
        }
        due
    }

    /// A token named a `kid` the provider's keys lack: may a fetch start now? `false` also
    /// when one is already under way (the caller then waits for it).
    pub fn refetch_allowed(&self, provider: usize, now_ms: u64) -> bool {
        self.entries.get(provider).is_some_and(|e| {
            e.remote.is_some()
                && !e.busy(now_ms)
                && e.last_attempt_ms.is_none_or(|t| {
                    now_ms.saturating_sub(t) >= e.remote.map_or(0, |p| p.min_refetch_ms)
                })
        })
    }

    /// Whether a fetch for `provider` is under way.
    pub fn fetching(&self, provider: usize, now_ms: u64) -> bool {
        self.entries.get(provider).is_some_and(|e| e.busy(now_ms))
    }

    /// Records a dispatched fetch.
    pub fn started(&mut self, provider: usize, token: u32, now_ms: u64) {
        if let Some(e) = self.entries.get_mut(provider) {
            e.in_flight = Some(token);
            e.last_attempt_ms = Some(now_ms);
        }
    }

    /// Records the outcome of fetch `token`: new keys replace the old ones, a failure keeps
    /// them. Returns the provider, or `None` for a token this store did not start.
    pub fn finished(
        &mut self,
        token: u32,
        result: Result<KeySet, String>,
        now_ms: u64,
    ) -> Option<usize> {
        let (i, e) = self
            .entries
            .iter_mut()
            .enumerate()
            .find(|(_, e)| e.in_flight == Some(token))?;
        e.in_flight = None;
        if let Ok(keys) = result {
            e.keys = Some(Rc::new(keys));
            e.last_success_ms = Some(now_ms);
        }
        Some(i)
    }
}

impl KeyLookup for KeyStore {
    fn keys(&self, provider: usize) -> Option<&KeySet> {
        self.entries.get(provider).and_then(|e| e.keys.as_deref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: FetchPolicy = FetchPolicy {
        refresh_ms: 60_000,
        min_refetch_ms: 5_000,
        timeout_ms: 2_000,
    };

    fn keys() -> KeySet {
        KeySet::from_jwks(br#"{"keys":[{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","kid":"a"}]}"#).unwrap()
    }

    #[test]
    fn fetches_at_start_retries_and_refreshes() {
        let mut store = KeyStore::new([Some(POLICY), None]);
        assert_eq!(
            store.due(0),
            vec![0],
            "remote keys are fetched at once; inline ones never"
        );
        store.started(0, 7, 0);
        assert!(store.due(100).is_empty(), "one fetch at a time");
        assert!(store.fetching(0, 100));
        assert_eq!(store.finished(7, Err("down".into()), 500), Some(0));
        assert!(store.keys(0).is_none());
        assert!(
            store.due(999).is_empty(),
            "a retry waits a second without keys"
        );
        assert_eq!(store.due(1_000), vec![0]);
        store.started(0, 8, 1_001);
        assert_eq!(store.finished(8, Ok(keys()), 1_100), Some(0));
        assert!(store.keys(0).is_some());
        assert!(store.due(60_000).is_empty());
        assert_eq!(store.due(61_100), vec![0], "refreshed after refresh_ms");
    }

    #[test]
    fn failed_refresh_keeps_last_good_keys() {
        let mut store = KeyStore::new([Some(POLICY)]);
        store.started(0, 1, 0);
        store.finished(1, Ok(keys()), 0);
        store.started(0, 2, 60_000);
        store.finished(2, Err("garbage".into()), 60_100);
        assert!(store.keys(0).is_some());
        assert!(
            store.due(62_000).is_empty(),
            "a failed refresh is retried after min_refetch_ms"
        );
        assert_eq!(store.due(65_000), vec![0]);
    }

    #[test]
    fn unknown_kid_refetch_is_rate_limited() {
        let mut store = KeyStore::new([Some(POLICY)]);
        assert!(store.refetch_allowed(0, 0));
        store.started(0, 1, 0);
        assert!(!store.refetch_allowed(0, 10), "a fetch is under way");
        store.finished(1, Ok(keys()), 20);
        assert!(!store.refetch_allowed(0, 4_999));
        assert!(store.refetch_allowed(0, 5_000));
        assert_eq!(
            store.finished(99, Ok(keys()), 30),
            None,
            "unknown tokens are ignored"
        );
    }

    #[test]
    fn a_lost_fetch_is_given_up_after_its_timeout() {
        let mut store = KeyStore::new([Some(POLICY)]);
        store.started(0, 1, 0);
        assert!(store.fetching(0, 3_000));
        assert!(!store.fetching(0, 3_001));
        assert_eq!(store.due(3_001), vec![0]);
    }
}
