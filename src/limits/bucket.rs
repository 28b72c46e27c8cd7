//! Token-bucket arithmetic, pure and exact: tokens are integers scaled so that a refill
//! never rounds (no drift however often a bucket is updated), time comes in as `now_ms`,
//! and every operation saturates instead of overflowing.
//!
//! With a refill of `tokens` per `period_ms`, one token is `period_ms` units and a
//! millisecond adds exactly `tokens` units. Without refill, one token is one unit.

/// Largest capacity, refill amount or cost (keeps every product far from `u64::MAX`).
pub const MAX_TOKENS: u64 = 1_000_000_000;
/// Longest refill period: a day.
pub const MAX_PERIOD_MS: u64 = 86_400_000;

/// A bucket's configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    pub capacity: u64,
    /// Tokens added per period; 0: the bucket never refills.
    pub refill_tokens: u64,
    pub period_ms: u64,
}

/// A bucket's stored state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct State {
    pub units: u64,
    /// When the bucket was last refilled, by the host clock.
    pub last_ms: u64,
}

/// The outcome of taking `cost` tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Take {
    /// Enough tokens: the state after taking them.
    Taken(State),
    /// Not enough: whole tokens left, and how long until `cost` tokens are there (`None`:
    /// never, because the bucket does not refill or the cost exceeds the capacity).
    Refused {
        remaining: u64,
        retry_after_ms: Option<u64>,
    },
}

impl Shape {
    /// Units per token.
    fn unit(&self) -> u64 {
        if self.refill_tokens == 0 {
            1
        } else {
            self.period_ms.max(1)
        }
    }

    fn units(&self, tokens: u64) -> u64 {
        tokens.saturating_mul(self.unit())
    }

    /// A full bucket at `now_ms`.
    pub fn full(&self, now_ms: u64) -> State {
        State {
            units: self.units(self.capacity),
            last_ms: now_ms,
        }
    }

    /// Seconds an empty bucket takes to fill (rounded up); `None` without refill.
    pub fn window_seconds(&self) -> Option<u64> {
        (self.refill_tokens > 0).then(|| {
            self.units(self.capacity)
                .div_ceil(self.refill_tokens)
                .div_ceil(1000)
        })
    }

    /// `state` refilled up to `now_ms`. A clock that went backwards refills nothing and
    /// keeps `last_ms`, so the time is not counted twice when the clock catches up.
    pub fn refill(&self, state: State, now_ms: u64) -> State {
        let full = self.units(self.capacity);
        if now_ms <= state.last_ms {
            return State {
                units: state.units.min(full),
                last_ms: state.last_ms,
            };
        }
        let added = (now_ms - state.last_ms).saturating_mul(self.refill_tokens);
        State {
            units: state.units.saturating_add(added).min(full),
            last_ms: now_ms,
        }
    }

    /// Takes `cost` tokens from `state` refilled to `now_ms`.
    pub fn take(&self, state: State, cost: u64, now_ms: u64) -> Take {
        let state = self.refill(state, now_ms);
        let need = self.units(cost);
        if cost <= self.capacity && state.units >= need {
            return Take::Taken(State {
                units: state.units - need,
                last_ms: state.last_ms,
            });
        }
        let retry_after_ms = (cost <= self.capacity && self.refill_tokens > 0)
            .then(|| (need - state.units).div_ceil(self.refill_tokens));
        Take::Refused {
            remaining: state.units / self.unit(),
            retry_after_ms,
        }
    }

    /// `state` with `cost` tokens given back (never above the capacity).
    pub fn give_back(&self, state: State, cost: u64) -> State {
        State {
            units: state
                .units
                .saturating_add(self.units(cost))
                .min(self.units(self.capacity)),
            last_ms: state.last_ms,
        }
    }
}

impl State {
    /// Sixteen bytes: units and `last_ms`, little endian.
    pub fn encode(&self) -> [u8; 16] {
        let mut out = [0u8; 16];
        let (units, last) = out.split_at_mut(8);
        units.copy_from_slice(&self.units.to_le_bytes());
        last.copy_from_slice(&self.last_ms.to_le_bytes());
        out
    }

    pub fn decode(bytes: &[u8]) -> Option<State> {
        let units = bytes.get(..8)?.try_into().ok()?;
        let last = bytes.get(8..16)?.try_into().ok()?;
        (bytes.len() == 16).then(|| State {
            units: u64::from_le_bytes(units),
            last_ms: u64::from_le_bytes(last),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 10 tokens, refilled at 2 per second.
    const SHAPE: Shape = Shape {
        capacity: 10,
        refill_tokens: 2,
        period_ms: 1000,
    };

    fn taken(t: Take) -> State {
        match t {
            Take::Taken(s) => s,
            other => panic!("refused: {other:?}"),
        }
    }

    #[test]
    fn takes_until_empty_then_says_when() {
        let mut s = SHAPE.full(1_000);
        for _ in 0..10 {
            s = taken(SHAPE.take(s, 1, 1_000));
        }
        assert_eq!(
            SHAPE.take(s, 1, 1_000),
            Take::Refused {
                remaining: 0,
                retry_after_ms: Some(500)
            }
        );
        assert_eq!(
            SHAPE.take(s, 3, 1_200),
            Take::Refused {
                remaining: 0,
                retry_after_ms: Some(1_300)
            }
        );
        // 500 ms later one token is back, exactly.
        let s = taken(SHAPE.take(s, 1, 1_500));
        assert_eq!(s.units, 0);
    }

    #[test]
    fn refill_is_exact_over_many_small_steps() {
        // 7 tokens per 3 s: a token every 428.57 ms; updating every ms must not drift.
        let shape = Shape {
            capacity: 1_000,
            refill_tokens: 7,
            period_ms: 3_000,
        };
        let mut s = State {
            units: 0,
            last_ms: 0,
        };
        for now in 1..=30_000 {
            s = shape.refill(s, now);
        }
        assert_eq!(s.units / 3_000, 70);
        assert_eq!(s.units % 3_000, 0);
    }

    #[test]
    fn refill_stops_at_capacity() {
        let s = SHAPE.refill(
            State {
                units: 0,
                last_ms: 0,
            },
            3_600_000,
        );
        assert_eq!(s, SHAPE.full(3_600_000));
    }

    #[test]
    fn clock_going_backwards_refills_nothing_and_is_not_counted_twice() {
        let empty = State {
            units: 0,
            last_ms: 10_000,
        };
        let back = SHAPE.refill(empty, 9_000);
        assert_eq!(back, empty);
        // Once the clock is past last_ms again, only the time after it counts.
        assert_eq!(SHAPE.refill(back, 10_500).units, 1_000);
    }

    #[test]
    fn costs_and_impossible_costs() {
        let s = SHAPE.full(0);
        assert_eq!(taken(SHAPE.take(s, 4, 0)).units, 6_000);
        assert_eq!(taken(SHAPE.take(s, 10, 0)).units, 0);
        assert_eq!(taken(SHAPE.take(s, 0, 0)), s);
        // More than the capacity can never pass: no retry time.
        assert_eq!(
            SHAPE.take(s, 11, 0),
            Take::Refused {
                remaining: 10,
                retry_after_ms: None
            }
        );
    }

    #[test]
    fn no_refill_means_never() {
        let shape = Shape {
            capacity: 2,
            refill_tokens: 0,
            period_ms: 1_000,
        };
        let s = taken(shape.take(shape.full(0), 2, 0));
        assert_eq!(
            shape.take(s, 1, u64::MAX),
            Take::Refused {
                remaining: 0,
                retry_after_ms: None
            }
        );
        assert_eq!(shape.window_seconds(), None);
        assert_eq!(SHAPE.window_seconds(), Some(5));
    }

    #[test]
    fn overflow_saturates() {
        let shape = Shape {
            capacity: MAX_TOKENS,
            refill_tokens: MAX_TOKENS,
            period_ms: 1,
        };
        let s = shape.refill(
            State {
                units: 0,
                last_ms: 0,
            },
            u64::MAX,
        );
        assert_eq!(s.units, MAX_TOKENS);
        assert_eq!(shape.give_back(s, u64::MAX).units, MAX_TOKENS);
        assert!(matches!(
            shape.take(s, u64::MAX, u64::MAX),
            Take::Refused {
                retry_after_ms: None,
                ..
            }
        ));
    }

    #[test]
    fn give_back_restores_and_caps() {
        let s = taken(SHAPE.take(SHAPE.full(0), 3, 0));
        assert_eq!(SHAPE.give_back(s, 3), SHAPE.full(0));
        assert_eq!(SHAPE.give_back(s, 9), SHAPE.full(0));
    }

    #[test]
    fn state_round_trips_and_rejects_other_lengths() {
        let s = State {
            units: 0x0102_0304_0506_0708,
            last_ms: u64::MAX,
        };
        assert_eq!(State::decode(&s.encode()), Some(s));
        assert_eq!(State::decode(&[0; 15]), None);
        assert_eq!(State::decode(&[0; 17]), None);
    }
}
