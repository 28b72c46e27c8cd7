//! What the filter knows about each upstream's tools, shared by every Envoy worker: the
//! annotations and definition hash last seen in a `tools/list` answer, and the first
//! definition ever seen (the trust-on-first-use pin). Calls are judged by it: rules test
//! the hints, pins compare the hashes.
//!
//! One shared-data entry per tool, `mcp-guard/tool/<n>:<upstream>/<tool>` (`n`: the
//! upstream name's length, so names with `/` cannot collide), holding [`Record`]. Entries
//! are never deleted, so each upstream may create at most `max_tools_per_upstream` of them,
//! counted race-free in `mcp-guard/tools/<n>:<upstream>`; a tool beyond the bound is
//! never learned and stays unknown (spec-default hints; unverified if pinned).

use std::collections::HashMap;

use crate::catalog::tooldef::{Hints, ToolDef, MAX_NAME_BYTES};
use crate::state::{
    add_to_count, insert_new, push_key_part, SharedStore, StoreError, CAS_ATTEMPTS,
};

/// Default `tools.max_tools_per_upstream`.
pub const DEFAULT_MAX_TOOLS: u32 = 256;
/// Largest accepted `tools.max_tools_per_upstream`.
pub const MAX_MAX_TOOLS: u32 = 10_000;
/// The hash recorded for a definition that cannot be read: it matches no pin.
pub const UNREADABLE: [u8; 32] = [0; 32];

/// What the configuration pins for a tool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pin {
    /// The SHA-256 of the canonical definition.
    Sha256([u8; 32]),
    /// The first definition seen.
    TrustOnFirstUse,
}

/// The compiled `tools` section.
#[derive(Debug, Clone, Default)]
pub struct ToolsConfig {
    pub max_tools_per_upstream: u32,
    /// Upstream (cluster name, or `*` for any other) → tool (name, or `*` for any other).
    pub pins: HashMap<String, HashMap<String, Pin>>,
    /// `validate_mcp_param`.
    pub validate_mcp_param: bool,
    /// `fetch_timeout_ms`: the on-demand `tools/list` of a cold gateway.
    pub fetch_timeout_ms: u64,
}

impl ToolsConfig {
    /// The pin for `tool` of `upstream`: an exact name beats `*` at both levels.
    pub fn pin(&self, upstream: &str, tool: &str) -> Option<Pin> {
        let tools = self.pins.get(upstream).or_else(|| self.pins.get("*"))?;
        tools.get(tool).or_else(|| tools.get("*")).copied()
    }

    /// How `tool` of `upstream` stands, given what is recorded of it.
    pub fn status(&self, upstream: &str, tool: &str, record: Option<&Record>) -> ToolStatus {
        let pin = match (self.pin(upstream, tool), record) {
            (None, _) => PinState::NotPinned,
            (Some(_), None) => PinState::Unverified,
            (Some(Pin::Sha256(hash)), Some(r)) if r.live == hash => PinState::Verified,
            (Some(Pin::TrustOnFirstUse), Some(r)) if r.live == r.first => PinState::Verified,
            (Some(_), Some(_)) => PinState::Drifted,
        };
        ToolStatus {
            hints: record.map_or(Hints::UNKNOWN, |r| r.hints),
            pin,
        }
    }
}

/// One tool as shared data holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record {
    pub hints: Hints,
    /// Hash of the definition last seen.
    pub live: [u8; 32],
    /// Hash of the first definition seen (never changes).
    pub first: [u8; 32],
}

impl Record {
    /// A tool seen for the first time.
    pub fn first_seen(hints: Hints, hash: [u8; 32]) -> Record {
        Record {
            hints,
            live: hash,
            first: hash,
        }
    }
}

const RECORD_VERSION: u8 = 1;
const RECORD_BYTES: usize = 2 + 32 + 32;

impl Record {
    fn encode(&self) -> [u8; RECORD_BYTES] {
        let mut out = [0; RECORD_BYTES];
        out[0] = RECORD_VERSION;
        out[1] = self.hints.to_byte();
        out[2..34].copy_from_slice(&self.live);
        out[34..].copy_from_slice(&self.first);
        out
    }

    fn decode(bytes: &[u8]) -> Option<Record> {
        let bytes: &[u8; RECORD_BYTES] = bytes.try_into().ok()?;
        let [version, hints, rest @ ..] = bytes;
        if *version != RECORD_VERSION {
            return None;
        }
        let (live, first) = rest.split_at(32);
        Some(Record {
            hints: Hints::from_byte(*hints),
            live: live.try_into().ok()?,
            first: first.try_into().ok()?,
        })
    }
}

/// How a tool stands against its pin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinState {
    /// No pin covers the tool.
    NotPinned,
    /// The last definition seen matches the pin.
    Verified,
    /// No definition was seen yet (or the tool is beyond the bound).
    Unverified,
    /// The last definition seen differs from the pin.
    Drifted,
}

impl PinState {
    /// Why a call to a tool in this state is refused, if it is; such a tool is also left
    /// out of `tools/list` answers.
    pub fn refusal(self) -> Option<&'static str> {
        match self {
            PinState::NotPinned | PinState::Verified => None,
            PinState::Drifted => Some(
                "is pinned and its definition changed (pin mismatch); refused until the \
                 server serves the pinned definition again",
            ),
            PinState::Unverified => Some(
                "is pinned and its definition was not verified yet: list the tools through \
                 the gateway first",
            ),
        }
    }
}

/// What a call to a tool is judged by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ToolStatus {
    pub hints: Hints,
    pub pin: PinState,
}

impl ToolStatus {
    /// A tool nothing is known about and no pin covers.
    pub const UNKNOWN: ToolStatus = ToolStatus {
        hints: Hints::UNKNOWN,
        pin: PinState::NotPinned,
    };
}

/// Where a call's tool facts come from: shared data in the filter, nothing offline.
pub trait ToolLookup {
    fn status(&self, tool: &str) -> ToolStatus;
}

/// The lookup of a filter that has seen no `tools/list` answer: every tool unknown.
pub struct NoTools;

impl ToolLookup for NoTools {
    fn status(&self, _tool: &str) -> ToolStatus {
        ToolStatus::UNKNOWN
    }
}

/// The tools of one upstream in shared data. The glue's `store` is a [`Versioned`] one
/// under [`version_key`], so that a worker reads a tool's record once per change, not once
/// per call or list.
///
/// [`Versioned`]: crate::state::Versioned
pub struct UpstreamTools<'a, S: SharedStore> {
    pub store: S,
    pub config: &'a ToolsConfig,
    pub upstream: &'a str,
}

/// What learning one definition found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Learned {
    pub status: ToolStatus,
    /// This definition made a pinned tool drift (it was not drifted before): report it.
    pub drifted_now: bool,
}

impl<S: SharedStore> ToolLookup for UpstreamTools<'_, S> {
    fn status(&self, tool: &str) -> ToolStatus {
        let record = self
            .store
            .get(&self.key(tool))
            .and_then(|(bytes, _)| Record::decode(&bytes));
        self.judge(tool, record.as_ref())
    }
}

/// The key every write of `upstream`'s tool entries bumps (see [`UpstreamTools`]).
pub fn version_key(upstream: &str) -> String {
    upstream_key("mcp-guard/tools-version/", upstream, 0)
}

/// `<prefix><len>:<upstream>`, with room for `more` bytes.
fn upstream_key(prefix: &str, upstream: &str, more: usize) -> String {
    let mut key = String::with_capacity(prefix.len() + 8 + upstream.len() + more);
    key.push_str(prefix);
    push_key_part(&mut key, upstream);
    key
}

impl<S: SharedStore> UpstreamTools<'_, S> {
    fn key(&self, tool: &str) -> String {
        let mut key = upstream_key("mcp-guard/tool/", self.upstream, 1 + tool.len());
        key.push('/');
        key.push_str(tool);
        key
    }

    fn count_key(&self) -> String {
        upstream_key("mcp-guard/tools/", self.upstream, 0)
    }

    fn judge(&self, tool: &str, record: Option<&Record>) -> ToolStatus {
        self.config.status(self.upstream, tool, record)
    }

    /// Records a definition seen in a `tools/list` answer (`hash` [`UNREADABLE`] for one
    /// that cannot be read) and says how the tool now stands. Writes only on change.
    pub fn learn(&self, name: &str, hints: Hints, hash: [u8; 32]) -> Learned {
        let unknown = |this: &Self| Learned {
            status: this.judge(name, None),
            drifted_now: false,
        };
        if name.len() > MAX_NAME_BYTES {
            return unknown(self);
        }
        let key = self.key(name);
        for _ in 0..CAS_ATTEMPTS {
            let (previous, result) = match self.store.get(&key) {
                Some((bytes, cas)) => {
                    let previous = Record::decode(&bytes);
                    let record = Record {
                        hints,
                        live: hash,
                        // An entry this version cannot read gets a fresh first definition.
                        first: previous.map_or(hash, |p| p.first),
                    };
                    if previous == Some(record) {
                        return Learned {
                            status: self.judge(name, Some(&record)),
                            drifted_now: false,
                        };
                    }
                    let result = self.store.set(&key, &record.encode(), Some(cas));
                    (previous, result.map(|()| record))
                }
                None => {
                    // An unreadable first definition is never pinned on first use.
                    if hash == UNREADABLE || !self.take_slot() {
                        return unknown(self);
                    }
                    let record = Record::first_seen(hints, hash);
                    let result = insert_new(&self.store, &key, &record.encode());
                    if result.is_err() {
                        self.release_slot();
                    }
                    (None, result.map(|()| record))
                }
            };
            match result {
                Ok(record) => {
                    let status = self.judge(name, Some(&record));
                    let was = previous.map(|p| self.judge(name, Some(&p)).pin);
                    return Learned {
                        status,
                        drifted_now: status.pin == PinState::Drifted
                            && was != Some(PinState::Drifted),
                    };
                }
                Err(StoreError::CasMismatch) => continue,
                Err(StoreError::Host) => break,
            }
        }
        // Not recorded: judged by what shared data holds.
        Learned {
            status: self.status(name),
            drifted_now: false,
        }
    }

    /// Learns one raw `tools/list` element named `name`.
    pub fn learn_element(&self, name: &str, element: &[u8]) -> Learned {
        self.learn_def(name, ToolDef::parse(element).ok().as_ref())
    }

    /// Learns the element named `name`, as [`ToolDef::parse`] read it (`None`: unreadable;
    /// a definition of another name counts as unreadable).
    pub fn learn_def(&self, name: &str, def: Option<&ToolDef>) -> Learned {
        match def {
            Some(def) if def.name == name => self.learn(name, def.hints, def.sha256),
            _ => self.learn(name, Hints::UNKNOWN, UNREADABLE),
        }
    }

    /// The hash of the definition last learned for `tool`, if any (never [`UNREADABLE`]).
    pub fn live(&self, tool: &str) -> Option<[u8; 32]> {
        self.store
            .get(&self.key(tool))
            .and_then(|(bytes, _)| Record::decode(&bytes))
            .map(|r| r.live)
            .filter(|hash| *hash != UNREADABLE)
    }

    /// Whether every tool the upstream lists gets a record: it holds fewer than its bound
    /// (at the bound, a tool without a record may be listed but not kept).
    pub fn below_bound(&self) -> bool {
        let count = match self.store.get(&self.count_key()) {
            Some((bytes, _)) => match <[u8; 4]>::try_from(bytes.as_slice()) {
                Ok(b) => u32::from_le_bytes(b),
                Err(_) => return false,
            },
            None => 0,
        };
        count < self.config.max_tools_per_upstream
    }

    /// Takes one of the upstream's entry slots; `false` at the bound.
    fn take_slot(&self) -> bool {
        self.add_to_count(1)
    }

    fn release_slot(&self) {
        self.add_to_count(-1);
    }

    /// Moves the entry count by `delta` within `0..=max`; `false` if it cannot.
    fn add_to_count(&self, delta: i64) -> bool {
        add_to_count(
            &self.store,
            &self.count_key(),
            delta,
            self.config.max_tools_per_upstream,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{reserve, MemoryStore};

    fn store() -> MemoryStore {
        let store = MemoryStore::default();
        reserve(&store).unwrap();
        store
    }

    fn upstream<'a>(
        store: &'a MemoryStore,
        config: &'a ToolsConfig,
        name: &'a str,
    ) -> UpstreamTools<'a, &'a MemoryStore> {
        UpstreamTools {
            store,
            config,
            upstream: name,
        }
    }

    fn config(max: u32, pins: &[(&str, &str, Pin)]) -> ToolsConfig {
        let mut config = ToolsConfig {
            max_tools_per_upstream: max,
            ..ToolsConfig::default()
        };
        for (upstream, tool, pin) in pins {
            config
                .pins
                .entry(upstream.to_string())
                .or_default()
                .insert(tool.to_string(), *pin);
        }
        config
    }

    const READ_ONLY: Hints = Hints {
        read_only: Some(true),
        ..Hints::UNKNOWN
    };

    fn h(n: u8) -> [u8; 32] {
        [n; 32]
    }

    #[test]
    fn learns_hints_per_upstream() {
        let store = store();
        let config = config(10, &[]);
        let a = upstream(&store, &config, "a");
        let b = UpstreamTools { upstream: "b", ..a };
        assert_eq!(a.status("echo"), ToolStatus::UNKNOWN);
        let learned = a.learn("echo", READ_ONLY, h(1));
        assert_eq!(learned.status.hints, READ_ONLY);
        assert_eq!(a.status("echo").hints, READ_ONLY);
        // Another upstream's tool of the same name is not this one.
        assert_eq!(b.status("echo"), ToolStatus::UNKNOWN);
        // Later answers replace the hints.
        a.learn("echo", Hints::UNKNOWN, h(2));
        assert_eq!(a.status("echo").hints, Hints::UNKNOWN);
        // Names that could collide through a `/` do not.
        let ab = UpstreamTools {
            upstream: "a/b",
            ..a
        };
        a.learn("b/c", READ_ONLY, h(1));
        assert_eq!(ab.status("c"), ToolStatus::UNKNOWN);
    }

    #[test]
    fn pins_verify_drift_and_recover() {
        let store = store();
        let config = config(
            10,
            &[
                ("up", "echo", Pin::Sha256(h(1))),
                ("up", "*", Pin::TrustOnFirstUse),
                ("*", "add", Pin::Sha256(h(7))),
            ],
        );
        let tools = upstream(&store, &config, "up");
        let state = |tool| tools.status(tool).pin;
        // Before any list: pinned tools are unverified, others are not pinned.
        assert_eq!(state("echo"), PinState::Unverified);
        assert_eq!(state("rm"), PinState::Unverified);
        let other = UpstreamTools {
            upstream: "other",
            ..tools
        };
        assert_eq!(other.status("rm").pin, PinState::NotPinned);
        assert_eq!(other.status("add").pin, PinState::Unverified);
        // (step, tool, hash, state after, drift reported)
        let steps = [
            (
                "configured pin matches",
                "echo",
                1,
                PinState::Verified,
                false,
            ),
            ("configured pin differs", "echo", 2, PinState::Drifted, true),
            (
                "still differs: reported once",
                "echo",
                3,
                PinState::Drifted,
                false,
            ),
            (
                "pinned definition again",
                "echo",
                1,
                PinState::Verified,
                false,
            ),
            ("first use pins", "rm", 5, PinState::Verified, false),
            ("first use pin differs", "rm", 6, PinState::Drifted, true),
            ("first definition again", "rm", 5, PinState::Verified, false),
            ("drifts again: reported", "rm", 6, PinState::Drifted, true),
        ];
        for (step, tool, hash, state_after, reported) in steps {
            let learned = tools.learn(tool, Hints::UNKNOWN, h(hash));
            assert_eq!(learned.status.pin, state_after, "{step}");
            assert_eq!(learned.drifted_now, reported, "{step}");
            assert_eq!(state(tool), state_after, "{step}");
        }
        // An unreadable definition matches no pin, and is never the first-use pin.
        assert_eq!(
            tools.learn_element("new", b"{\"name\":\"new\",\"x\":1,\"x\":2}"),
            Learned {
                status: ToolStatus {
                    hints: Hints::UNKNOWN,
                    pin: PinState::Unverified
                },
                drifted_now: false
            }
        );
        assert_eq!(
            tools.learn("new", Hints::UNKNOWN, h(8)).status.pin,
            PinState::Verified
        );
        assert_eq!(
            tools
                .learn_element("echo", br#"{"name":"echo","name":"x"}"#)
                .status
                .pin,
            PinState::Drifted
        );
    }

    #[test]
    fn trust_on_first_use_keeps_the_first_of_racing_workers() {
        let store = store();
        let config = config(10, &[("*", "*", Pin::TrustOnFirstUse)]);
        let tools = upstream(&store, &config, "up");
        // Another worker created the entry between this worker's read and its create.
        let other = Record {
            hints: Hints::UNKNOWN,
            live: h(9),
            first: h(9),
        };
        let key = tools.key("echo");
        insert_new(&store, &key, &other.encode()).unwrap();
        assert!(insert_new(
            &store,
            &key,
            &Record {
                first: h(1),
                ..other
            }
            .encode()
        )
        .is_err());
        let learned = tools.learn("echo", Hints::UNKNOWN, h(1));
        assert_eq!(learned.status.pin, PinState::Drifted);
        assert_eq!(
            Record::decode(&store.get(&key).unwrap().0).unwrap().first,
            h(9)
        );
    }

    #[test]
    fn the_bound_leaves_new_tools_unknown() {
        let store = store();
        let config = config(2, &[("*", "*", Pin::TrustOnFirstUse)]);
        let tools = upstream(&store, &config, "up");
        assert_eq!(tools.learn("a", READ_ONLY, h(1)).status.hints, READ_ONLY);
        assert_eq!(tools.learn("b", READ_ONLY, h(1)).status.hints, READ_ONLY);
        let third = tools.learn("c", READ_ONLY, h(1));
        assert_eq!(
            third.status,
            ToolStatus {
                hints: Hints::UNKNOWN,
                pin: PinState::Unverified
            }
        );
        assert!(store.get(&tools.key("c")).is_none());
        // Known tools still update at the bound; other upstreams have their own count.
        assert_eq!(
            tools.learn("a", Hints::UNKNOWN, h(1)).status.hints,
            Hints::UNKNOWN
        );
        let other = UpstreamTools {
            upstream: "other",
            ..tools
        };
        assert_eq!(other.learn("c", READ_ONLY, h(1)).status.hints, READ_ONLY);
        // Overlong names are never learned.
        let long = "x".repeat(MAX_NAME_BYTES + 1);
        assert_eq!(
            other.learn(&long, READ_ONLY, h(1)).status.hints,
            Hints::UNKNOWN
        );
        assert!(store.get(&other.key(&long)).is_none());
    }

    #[test]
    fn records_round_trip() {
        let record = Record {
            hints: READ_ONLY,
            live: h(3),
            first: h(4),
        };
        assert_eq!(Record::decode(&record.encode()), Some(record));
        assert_eq!(Record::decode(&record.encode()[1..]), None);
        let mut other_version = record.encode();
        other_version[0] = 9;
        assert_eq!(Record::decode(&other_version), None);
    }
}
