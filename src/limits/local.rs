//! Local limits: buckets in proxy-wasm shared data, so that every Envoy worker of one
//! process takes from the same bucket.
//!
//! - An update reads the bucket and its version, refills it lazily from `now_ms`, and
//!   writes it back only if the version is unchanged (compare-and-swap), retrying up to
//!   `cas_retries` times; a refusal writes nothing. An absent bucket is created with
//!   [`insert_new`], which exactly one racing worker wins.
//! - When the attempts run out (or the host refuses a write), `on_contention` decides:
//!   `allow` lets the request pass without taking from that bucket, `deny` refuses it.
//!   Either way it is counted.
//! - A request takes from its buckets in turn; when one refuses, what was taken is given
//!   back (again by compare-and-swap). Between the take and the give-back another request
//!   may see the bucket lower than it will be: it can only be refused, never let through
//!   beyond the capacity.
//! - Keys cannot be deleted, so each limit admits at most `max_keys` keys, counted in a
//!   shared counter. Past the bound, new keys share one overflow bucket of the same shape:
//!   they stay limited together rather than locked out. (A lost creation race still
//!   counts, so the count may exceed the true number of keys slightly; never below.)

use super::bucket::{Shape, State, Take};
use super::{Charge, RateLimits, Refusal, Scope};
use crate::section::Access;
use crate::state::{insert_new, SharedStore, StoreError};

/// What was taken from one bucket, to give back if a later limit refuses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Taken {
    pub key: String,
    pub shape: Shape,
    pub cost: u64,
}

/// The result of taking a request's local charges, with what the glue counts.
#[derive(Debug, PartialEq, Eq)]
pub struct Outcome {
    /// What was taken (to give back if a global limit refuses), or the refusal.
    pub result: Result<Vec<Taken>, Refusal>,
    /// Bucket updates that ran out of attempts.
    pub contention: u32,
    /// New keys sent to an overflow bucket.
    pub overflowed: u32,
}

/// One bucket update's result.
enum Step {
    Taken(String),
    Refused {
        remaining: u64,
        retry_after_ms: Option<u64>,
    },
    Contended,
}

/// Takes every local charge of a request, or none.
pub fn take_all(
    store: &impl SharedStore,
    limits: &RateLimits,
    charges: &[Charge],
    now_ms: u64,
) -> Outcome {
    let mut outcome = Outcome {
        result: Ok(Vec::new()),
        contention: 0,
        overflowed: 0,
    };
    let mut taken = Vec::new();
    for charge in charges {
        let Some(limit) = limits.limits.get(charge.limit) else {
            continue;
        };
        let Scope::Local(shape) = limit.scope else {
            continue;
        };
        let key = limit.store_key(&charge.key);
        let refusal = |remaining, retry_after_ms, why: Option<&str>| Refusal {
            limit: limit.name.clone(),
            quota: shape.capacity,
            window_seconds: shape.window_seconds(),
            remaining,
            retry_after_ms,
            why: why.map(str::to_owned),
        };
        let refused = match take(
            store,
            limits,
            limit,
            &key,
            shape,
            charge.cost,
            now_ms,
            &mut outcome,
        ) {
            Step::Taken(key) => {
                taken.push(Taken {
                    key,
                    shape,
                    cost: charge.cost,
                });
                continue;
            }
            Step::Contended => {
                outcome.contention += 1;
                if limits.on_contention == Access::Allow {
                    continue;
                }
                refusal(0, Some(1000), Some("its bucket is too contended to update"))
            }
            Step::Refused {
                remaining,
                retry_after_ms,
            } => refusal(remaining, retry_after_ms, None),
        };
        outcome.contention += give_back(store, &taken, limits.cas_retries);
        outcome.result = Err(refused);
        return outcome;
    }
    outcome.result = Ok(taken);
    outcome
}

/// Takes `cost` from the bucket under `key` (or the overflow bucket, past the key bound).
#[allow(clippy::too_many_arguments)]
fn take(
    store: &impl SharedStore,
    limits: &RateLimits,
    limit: &super::Limit,
    key: &str,
    shape: Shape,
    cost: u64,
    now_ms: u64,
    outcome: &mut Outcome,
) -> Step {
    let mut key = key.to_owned();
    // A new key is counted once, before its bucket is created; past the bound it is sent to
    // the overflow bucket, which is read afresh without spending an attempt.
    let mut admitted = false;
    let mut attempts = 0;
    while attempts < limits.cas_retries {
        let (state, cas) = match store.get(&key) {
            Some((bytes, cas)) => {
                // An unreadable entry (not written by this version) starts full.
                (
                    State::decode(&bytes).unwrap_or(shape.full(now_ms)),
                    Some(cas),
                )
            }
            None => (shape.full(now_ms), None),
        };
        let next = match shape.take(state, cost, now_ms) {
            Take::Taken(next) => next,
            Take::Refused {
                remaining,
                retry_after_ms,
            } => {
                return Step::Refused {
                    remaining,
                    retry_after_ms,
                }
            }
        };
        if cas.is_none() && !admitted {
            admitted = true;
            let (counter, overflow) = limit.bound_keys();
            match admit(store, &counter, limits.max_keys, limits.cas_retries) {
                Some(true) => {}
                Some(false) => {
                    outcome.overflowed += 1;
                    key = overflow;
                    continue;
                }
                None => return Step::Contended,
            }
        }
        attempts += 1;
        let written = match cas {
            Some(cas) => store.set(&key, &next.encode(), Some(cas)),
            None => insert_new(store, &key, &next.encode()),
        };
        match written {
            Ok(()) => return Step::Taken(key),
            Err(StoreError::CasMismatch) => continue,
            Err(StoreError::Host) => return Step::Contended,
        }
    }
    Step::Contended
}

/// Counts one more key under `counter` if fewer than `max_keys` are counted: `Some(true)`
/// admitted, `Some(false)` at the bound, `None` when the counter could not be updated.
fn admit(store: &impl SharedStore, counter: &str, max_keys: u64, retries: u32) -> Option<bool> {
    for _ in 0..retries {
        let (count, cas) = match store.get(counter) {
            Some((bytes, cas)) => (
                bytes
                    .get(..8)
                    .and_then(|b| b.try_into().ok())
                    .map_or(u64::MAX, u64::from_le_bytes),
                Some(cas),
            ),
            None => (0, None),
        };
        if count >= max_keys {
            return Some(false);
        }
        let next = (count + 1).to_le_bytes();
        let written = match cas {
            Some(cas) => store.set(counter, &next, Some(cas)),
            None => insert_new(store, counter, &next),
        };
        match written {
            Ok(()) => return Some(true),
            Err(StoreError::CasMismatch) => continue,
            Err(StoreError::Host) => return None,
        }
    }
    None
}

/// Gives back what `taken` took; returns how many buckets could not be updated (their
/// tokens stay taken: the error is on the strict side).
pub fn give_back(store: &impl SharedStore, taken: &[Taken], retries: u32) -> u32 {
    let mut failed = 0;
    'bucket: for t in taken {
        for _ in 0..retries {
            let Some((bytes, cas)) = store.get(&t.key) else {
                break;
            };
            let Some(state) = State::decode(&bytes) else {
                break;
            };
            match store.set(
                &t.key,
                &t.shape.give_back(state, t.cost).encode(),
                Some(cas),
            ) {
                Ok(()) => continue 'bucket,
                Err(StoreError::CasMismatch) => continue,
                Err(StoreError::Host) => break,
            }
        }
        failed += 1;
    }
    failed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::state::{reserve, MemoryStore};

    fn limits(json: &str) -> RateLimits {
        Config::from_json(format!(r#"{{"rate_limits":{json}}}"#).as_bytes())
            .unwrap()
            .rate_limits
    }

    fn charge(limit: usize, key: &str, cost: u64) -> Charge {
        Charge {
            limit,
            key: vec![key.to_owned()],
            cost,
        }
    }

    fn store() -> MemoryStore {
        let s = MemoryStore::default();
        reserve(&s).unwrap();
        s
    }

    const TWO: &str = r#"{"limits":[
        {"name":"a","key":["subject"],"bucket":{"capacity":3}},
        {"name":"b","key":["subject"],"bucket":{"capacity":5,"refill":{"tokens":1,"per_seconds":2}}}]}"#;

    #[test]
    fn takes_exactly_capacity_then_refuses_with_details() {
        let l = limits(TWO);
        let s = store();
        for _ in 0..3 {
            assert!(take_all(&s, &l, &[charge(0, "u", 1)], 0).result.is_ok());
        }
        let refused = take_all(&s, &l, &[charge(0, "u", 1)], 10_000)
            .result
            .unwrap_err();
        assert_eq!(
            refused,
            Refusal {
                limit: "a".into(),
                quota: 3,
                window_seconds: None,
                remaining: 0,
                retry_after_ms: None,
                why: None,
            }
        );
        // Another key has its own bucket.
        assert!(take_all(&s, &l, &[charge(0, "v", 3)], 0).result.is_ok());
    }

    #[test]
    fn a_refusal_gives_back_what_earlier_limits_took() {
        let l = limits(TWO);
        let s = store();
        assert!(take_all(&s, &l, &[charge(1, "u", 4)], 0).result.is_ok());
        // a would pass, b refuses (1 left, 2 asked): a must be untouched.
        let r = take_all(&s, &l, &[charge(0, "u", 2), charge(1, "u", 2)], 0);
        let refusal = r.result.unwrap_err();
        assert_eq!(
            (
                refusal.limit.as_str(),
                refusal.remaining,
                refusal.retry_after_ms,
                refusal.window_seconds
            ),
            ("b", 1, Some(2000), Some(10))
        );
        assert!(take_all(&s, &l, &[charge(0, "u", 3)], 0).result.is_ok());
    }

    #[test]
    fn key_bound_sends_new_keys_to_one_overflow_bucket() {
        let l = limits(
            r#"{"max_keys":2,"limits":[{"name":"a","key":["subject"],"bucket":{"capacity":2}}]}"#,
        );
        let s = store();
        for k in ["k1", "k2"] {
            let o = take_all(&s, &l, &[charge(0, k, 1)], 0);
            assert_eq!((o.result.is_ok(), o.overflowed), (true, 0));
        }
        let o = take_all(&s, &l, &[charge(0, "k3", 1)], 0);
        assert_eq!((o.result.is_ok(), o.overflowed), (true, 1));
        let o = take_all(&s, &l, &[charge(0, "k4", 1)], 0);
        assert_eq!((o.result.is_ok(), o.overflowed), (true, 1));
        // k3 and k4 shared the overflow bucket of capacity 2: it is empty now.
        assert!(take_all(&s, &l, &[charge(0, "k5", 1)], 0).result.is_err());
        // Known keys keep their own buckets.
        assert!(take_all(&s, &l, &[charge(0, "k1", 1)], 0).result.is_ok());
    }

    #[test]
    fn one_attempt_is_enough_without_contention() {
        // Admission and overflow do not spend the attempts bucket writes need.
        let l = limits(
            r#"{"cas_retries":1,"max_keys":1,"limits":[{"name":"a","key":["subject"],"bucket":{"capacity":2}}]}"#,
        );
        let s = store();
        for key in ["k1", "k1", "k2", "k3"] {
            let o = take_all(&s, &l, &[charge(0, key, 1)], 0);
            assert_eq!((o.result.is_ok(), o.contention), (true, 0), "{key}");
        }
        // k1 has its own bucket (now empty), k2 and k3 shared the overflow bucket (empty).
        assert!(take_all(&s, &l, &[charge(0, "k1", 1)], 0).result.is_err());
        assert!(take_all(&s, &l, &[charge(0, "k4", 1)], 0).result.is_err());
        // The key counter counted k1 only.
        let (counter, _) = l.limits[0].bound_keys();
        assert_eq!(s.get(&counter).unwrap().0, 1u64.to_le_bytes());
    }

    /// A store whose versioned writes always lose, as under a storm of other workers.
    struct Hot(MemoryStore);

    impl SharedStore for Hot {
        fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
            self.0.get(key)
        }
        fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError> {
            if cas.is_some() && key.ends_with(":u") {
                return Err(StoreError::CasMismatch);
            }
            self.0.set(key, value, cas)
        }
    }

    #[test]
    fn contention_follows_on_contention_and_is_counted() {
        for (mode, passes) in [("allow", true), ("deny", false)] {
            let l = limits(&format!(
                r#"{{"on_contention":"{mode}","cas_retries":3,"limits":[{{"name":"a","key":["subject"],"bucket":{{"capacity":9}}}}]}}"#
            ));
            let s = Hot(store());
            let o = take_all(&s, &l, &[charge(0, "u", 1)], 0);
            assert_eq!((o.result.is_ok(), o.contention), (passes, 1), "{mode}");
            if let Err(r) = o.result {
                assert_eq!(r.retry_after_ms, Some(1000));
                assert!(r.why.is_some());
            }
        }
    }

    #[test]
    fn creation_race_has_one_winner() {
        // Two workers both saw the key absent; the second's insert_new loses and its retry
        // takes from the bucket the first created.
        let l = limits(TWO);
        let s = store();
        let key = l.limits[0].store_key(&["u".to_owned()]);
        let Scope::Local(shape) = l.limits[0].scope else {
            panic!("a local limit")
        };
        let Take::Taken(first) = shape.take(shape.full(0), 1, 0) else {
            panic!("a full bucket gives")
        };
        insert_new(&s, &key, &first.encode()).unwrap();
        assert_eq!(
            insert_new(&s, &key, &first.encode()),
            Err(StoreError::CasMismatch)
        );
        assert!(take_all(&s, &l, &[charge(0, "u", 2)], 0).result.is_ok());
        assert!(take_all(&s, &l, &[charge(0, "u", 1)], 0).result.is_err());
    }
}
