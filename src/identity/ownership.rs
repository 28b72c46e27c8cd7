//! Task and session ownership without a store shared between replicas: the id a client
//! sees is the upstream's id sealed to its owner.
//!
//! [`Sealer::seal`] turns an id the upstream issued (a task id, an `Mcp-Session-Id`) into
//! `mg1.<id>.<tag>` (base64url, no padding: safe in URLs, JSON strings and header values),
//! where the tag is an HMAC-SHA256 over the id's kind, the owner's stable key (how it
//! authenticated and its subject) and the id. [`Sealer::unseal`] gives the upstream id
//! back only to that owner. Any replica holding the configured keys can check any id, so
//! nothing is stored and nothing expires here (the upstream still decides whether the id
//! is alive). This module decides ownership only; it never talks to the upstream, never
//! rewrites bodies and never sees a key after [`OwnershipDto::compile`].
//!
//! Threat model: a client can neither forge an id (it lacks the key), nor move one to
//! another identity or kind (both are under the tag), nor edit one (the tag no longer
//! verifies). Replay by the same identity is fine: the id is its own. The upstream id is
//! encoded, not encrypted: the owner may read it, which costs nothing since it was the
//! owner's to begin with. Anonymous callers all share one owner key, so sealing protects
//! nothing between them. Rotation: ids are sealed with the first key and accepted under
//! any listed key; an id sealed with a key since removed is refused like a foreign one
//! (403), so remove a key only once the ids it sealed have expired upstream.

use std::fmt;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use hmac_sha256::HMAC;
use serde::Deserialize;

use crate::identity::Identity;
use crate::report::reject::{Code, Rejection};
use crate::section::ConfigError;

/// What sealed ids start with; a version, so the format can change.
const PREFIX: &str = "mg1.";
/// Bytes of the owner fingerprint and of the tag in a sealed id.
const FINGERPRINT: usize = 8;
const TAG: usize = 16;

/// What an id stands for; an id of one kind is never accepted as the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdKind {
    Task,
    Session,
    /// A task id from a `tasks/list` answer: the upstream's list carries no owner, so such
    /// an id shows a task but is never given back (a request with it is an unknown task).
    Listed,
}

impl IdKind {
    fn domain(self) -> &'static [u8] {
        match self {
            IdKind::Task => b"mcp-guard/task",
            IdKind::Session => b"mcp-guard/session",
            IdKind::Listed => b"mcp-guard/listed-task",
        }
    }
}

/// Why a client's id was not given back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnsealError {
    /// Not an id this gateway sealed (an upstream id sent as is, or garbage).
    NotSealed,
    /// Sealed for another identity, or with a key no longer configured.
    WrongOwner,
    /// Sealed for this identity, but changed since.
    Tampered,
}

impl UnsealError {
    /// The refusal. Another identity's id is forbidden (403, -32003): the id is real, the
    /// caller is not its owner, and telling it so reveals nothing it did not send. Anything
    /// else is worded like the upstream's answer to an unknown id: an unknown task is
    /// invalid params (-32602), an unknown session 404, which makes clients start a new one.
    pub fn rejection(self, kind: IdKind, id: Option<&str>) -> Rejection {
        match (self, kind) {
            (UnsealError::WrongOwner, IdKind::Task | IdKind::Listed) => {
                Rejection::new(Code::Forbidden, "the task belongs to another caller")
            }
            (UnsealError::WrongOwner, IdKind::Session) => {
                Rejection::new(Code::Forbidden, "the session belongs to another caller")
            }
            (_, IdKind::Task | IdKind::Listed) => {
                Rejection::new(Code::InvalidParams, "unknown task")
            }
            (_, IdKind::Session) => Rejection::new(Code::SessionNotFound, "unknown session"),
        }
        .with_id(id)
    }
}

/// HMAC keys, the first one sealing.
#[derive(Clone)]
pub struct Sealer {
    keys: Vec<[u8; 32]>,
}

impl fmt::Debug for Sealer {
    /// Never prints a key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sealer({} keys)", self.keys.len())
    }
}

/// The owner's stable key: how it authenticated and its subject, length-prefixed so that
/// no two owners share one.
fn owner_key(owner: &Identity) -> Vec<u8> {
    let kind = owner.kind.to_string();
    let mut out = Vec::with_capacity(kind.len() + owner.subject.len() + 16);
    for part in [kind.as_bytes(), owner.subject.as_bytes()] {
        out.extend_from_slice(&(part.len() as u64).to_be_bytes());
        out.extend_from_slice(part);
    }
    out
}

/// Equality in time independent of where the inputs differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Sealer {
    /// The owner fingerprint (tells a foreign id from a tampered one) and the tag.
    fn mac(key: &[u8; 32], kind: IdKind, owner: &[u8], id: &[u8]) -> ([u8; 32], [u8; 32]) {
        let mut fingerprint = HMAC::new(key);
        fingerprint.update(b"owner\0");
        fingerprint.update(owner);
        let mut tag = HMAC::new(key);
        for part in [kind.domain(), owner, id] {
            tag.update((part.len() as u64).to_be_bytes());
            tag.update(part);
        }
        (fingerprint.finalize(), tag.finalize())
    }

    /// The id the client sees for `upstream_id`, owned by `owner`.
    pub fn seal(&self, kind: IdKind, upstream_id: &str, owner: &Identity) -> String {
        let Some(key) = self.keys.first() else {
            // Compilation refuses an empty key list; an unsealed id would be unverifiable.
            return String::new();
        };
        let (fingerprint, tag) = Self::mac(key, kind, &owner_key(owner), upstream_id.as_bytes());
        let mut proof = Vec::with_capacity(FINGERPRINT + TAG);
        proof.extend(fingerprint.iter().take(FINGERPRINT));
        proof.extend(tag.iter().take(TAG));
        format!(
            "{PREFIX}{}.{}",
            URL_SAFE_NO_PAD.encode(upstream_id),
            URL_SAFE_NO_PAD.encode(proof)
        )
    }

    /// The upstream id behind `visible`, if `owner` owns it.
    pub fn unseal(
        &self,
        kind: IdKind,
        visible: &str,
        owner: &Identity,
    ) -> Result<String, UnsealError> {
        let (id, proof) = visible
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split_once('.'))
            .ok_or(UnsealError::NotSealed)?;
        let id = URL_SAFE_NO_PAD
            .decode(id)
            .ok()
            .and_then(|b| String::from_utf8(b).ok());
        let proof = URL_SAFE_NO_PAD.decode(proof).ok();
        let (Some(id), Some(proof)) = (id, proof) else {
            return Err(UnsealError::NotSealed);
        };
        let (Some(their_fingerprint), Some(their_tag)) =
            (proof.get(..FINGERPRINT), proof.get(FINGERPRINT..))
        else {
            return Err(UnsealError::NotSealed);
        };
        let owner = owner_key(owner);
        let mut error = UnsealError::WrongOwner;
        for key in &self.keys {
            let (fingerprint, tag) = Self::mac(key, kind, &owner, id.as_bytes());
            if !same(
                fingerprint.get(..FINGERPRINT).unwrap_or_default(),
                their_fingerprint,
            ) {
                continue;
            }
            if same(tag.get(..TAG).unwrap_or_default(), their_tag) {
                return Ok(id);
            }
            error = UnsealError::Tampered;
        }
        Err(error)
    }
}

/// The `ownership` section: keys (base64 of 32 random bytes each, the first sealing) and
/// which ids are sealed.
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OwnershipDto {
    keys: Vec<String>,
    #[serde(default = "yes")]
    tasks: bool,
    #[serde(default = "yes")]
    sessions: bool,
}

fn yes() -> bool {
    true
}

/// The compiled `ownership` section.
#[derive(Debug, Clone)]
pub struct Ownership {
    pub sealer: Sealer,
    /// Task ids in answers are sealed, and task requests unsealed.
    pub tasks: bool,
    /// `Mcp-Session-Id` is sealed on the way out and unsealed on the way in.
    pub sessions: bool,
}

impl OwnershipDto {
    /// Checks the keys (never echoing them) and the flags.
    pub fn compile(self, path: &str) -> Result<Ownership, ConfigError> {
        let error = |at: String, message: String| ConfigError { path: at, message };
        if !self.tasks && !self.sessions {
            return Err(error(
                path.into(),
                "seals nothing: set tasks or sessions, or remove the section".into(),
            ));
        }
        if self.keys.is_empty() {
            return Err(error(
                format!("{path}.keys"),
                "at least one key is required".into(),
            ));
        }
        let mut keys: Vec<[u8; 32]> = Vec::with_capacity(self.keys.len());
        for (i, text) in self.keys.iter().enumerate() {
            let at = format!("{path}.keys[{i}]");
            let bytes = STANDARD.decode(text.trim()).map_err(|_| {
                error(
                    at.clone(),
                    "not base64 (standard alphabet, padded); make one with `openssl rand -base64 32`"
                        .into(),
                )
            })?;
            let key: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
                error(
                    at.clone(),
                    format!("decodes to {} bytes; a key is 32 bytes", bytes.len()),
                )
            })?;
            if let Some(j) = keys.iter().position(|k| *k == key) {
                return Err(error(at, format!("the same key as keys[{j}]")));
            }
            keys.push(key);
        }
        Ok(Ownership {
            sealer: Sealer { keys },
            tasks: self.tasks,
            sessions: self.sessions,
        })
    }
}

/// The related-task `_meta` of `value`, if it has one.
fn related(value: Option<&serde_json::Value>) -> Option<&serde_json::Value> {
    value?.get("_meta")?.get(RELATED_TASK)
}

/// The `taskId` string of `value`, if it has one.
fn id_at(value: Option<&serde_json::Value>) -> Option<&str> {
    value?.get("taskId")?.as_str()
}

/// Where a message names the task it belongs to (`_meta`, in `tasks/result` answers and
/// messages sent on a task's behalf).
const RELATED_TASK: &str = "io.modelcontextprotocol/related-task";

/// The message's task ids sealed to `owner`, where the tasks extension puts them
/// (`result.taskId`, `result.task.taskId`, a status notification's `params.taskId`, and the
/// related-task `_meta` of a result or of a message's params; a `tasks/list` answer's
/// `result.tasks[*].taskId` as [`IdKind::Listed`], which shows a task but never gives it
/// back: the upstream's list may hold other callers' tasks); every other byte kept. `None`: none there. A message
/// without the bytes `taskId` is not parsed: an id this misses (an escaped key) reaches the
/// client unsealed and is then refused as unknown, never honoured for another caller.
pub fn seal_task_ids(message: &[u8], sealer: &Sealer, owner: &Identity) -> Option<Vec<u8>> {
    if !message.windows(6).any(|w| w == b"taskId") {
        return None;
    }
    let value: serde_json::Value = serde_json::from_slice(message).ok()?;
    let result = value.get("result");
    let mut listed: Vec<&str> = result
        .and_then(|r| r.get("tasks")?.as_array())
        .into_iter()
        .flatten()
        .filter_map(|task| id_at(Some(task)))
        .collect();
    let mut owned: Vec<&str> = [
        id_at(result),
        id_at(result.and_then(|r| r.get("task"))),
        id_at(value.get("params")),
        id_at(related(result)),
        id_at(related(value.get("params"))),
    ]
    .into_iter()
    .flatten()
    .collect();
    for ids in [&mut listed, &mut owned] {
        crate::sort::sort(ids);
        ids.dedup();
    }
    // An id both listed and named elsewhere is sealed as listed: never given back.
    owned.retain(|id| listed.binary_search(id).is_err());
    let ids = listed
        .iter()
        .map(|id| (id, IdKind::Listed))
        .chain(owned.iter().map(|id| (id, IdKind::Task)));
    let mut out = message.to_vec();
    let mut any = false;
    for (id, kind) in ids {
        let sealed = sealer.seal(kind, id, owner);
        out = replace_json_string(&out, id, &sealed, false)?;
        any = true;
    }
    any.then_some(out)
}

/// The request `body` with the client's task id `visible` (as `params.taskId` and wherever
/// else it appears as that JSON string) replaced by the upstream id it seals for `owner`,
/// padded with spaces to the same length: with `hold: body` the request's
/// `Content-Length` has already gone upstream. An id the client escaped is not found and
/// is refused like a foreign one.
pub fn unseal_task_id(
    body: &[u8],
    visible: &str,
    sealer: &Sealer,
    owner: &Identity,
) -> Result<(Vec<u8>, String), UnsealError> {
    let upstream = sealer.unseal(IdKind::Task, visible, owner)?;
    let body = replace_json_string(body, visible, &upstream, true).ok_or(UnsealError::NotSealed)?;
    Ok((body, upstream))
}

/// The request `body` with the client's task id `visible` replaced by an empty string,
/// padded to the same length: for a method the request's revision removed, whose server
/// then answers as the revision prescribes. `None`: the id is not there as written.
pub fn blank_task_id(body: &[u8], visible: &str) -> Option<Vec<u8>> {
    replace_json_string(body, visible, "", true)
}

/// `text` with every JSON string token equal to `from` replaced by `to`'s; `pad` keeps the
/// length by trailing spaces (`to` must not be longer). `None`: `from` is not there, or
/// `to` is longer than `from` with `pad`.
fn replace_json_string(text: &[u8], from: &str, to: &str, pad: bool) -> Option<Vec<u8>> {
    let from = serde_json::to_string(from).ok()?;
    let mut to = serde_json::to_string(to).ok()?;
    if pad {
        let spaces = from.len().checked_sub(to.len())?;
        to.extend(std::iter::repeat_n(' ', spaces));
    }
    let (from, to) = (from.as_bytes(), to.as_bytes());
    let mut out = Vec::with_capacity(text.len() + to.len());
    let (mut rest, mut found) = (text, false);
    while let Some(at) = rest.windows(from.len()).position(|w| w == from) {
        let (before, after) = rest.split_at(at);
        out.extend_from_slice(before);
        out.extend_from_slice(to);
        rest = after.get(from.len()..)?;
        found = true;
    }
    out.extend_from_slice(rest);
    found.then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_ids_are_sealed_where_the_extension_puts_them_and_given_back_to_their_owner() {
        let sealer = sealer(&[K1]);
        let (alice, bob) = (alice(), who(IdentityKind::Peer, "bob"));
        let answer = br#"{"jsonrpc":"2.0","id":1,"result":{"task":{"taskId":"t-1","status":"working"},"note":"kept \u00e9"}}"#;
        let sealed = seal_task_ids(answer, &sealer, &alice).unwrap();
        let value: serde_json::Value = serde_json::from_slice(&sealed).unwrap();
        let visible = value["result"]["task"]["taskId"].as_str().unwrap();
        assert!(visible.starts_with("mg1."));
        assert!(String::from_utf8_lossy(&sealed).contains(r#""note":"kept \u00e9""#));
        let result = br#"{"jsonrpc":"2.0","id":4,"result":{"content":[],"_meta":{"io.modelcontextprotocol/related-task":{"taskId":"t-1"}}}}"#;
        let result = seal_task_ids(result, &sealer, &alice).unwrap();
        assert!(String::from_utf8_lossy(&result).contains(visible));
        let listed =
            br#"{"jsonrpc":"2.0","id":2,"result":{"tasks":[{"taskId":"a"},{"taskId":"b"}]}}"#;
        let listed = seal_task_ids(listed, &sealer, &alice).unwrap();
        let listed: serde_json::Value = serde_json::from_slice(&listed).unwrap();
        let shown = listed["result"]["tasks"][0]["taskId"].as_str().unwrap();
        assert!(shown.starts_with("mg1."));
        // Listed ids are never given back, not even to the caller they were listed to: the
        // upstream's list may be anyone's.
        assert_eq!(
            sealer.unseal(IdKind::Task, shown, &alice),
            Err(UnsealError::Tampered)
        );
        let get = format!(r#"{{"params":{{"taskId":"{shown}"}}}}"#);
        assert!(unseal_task_id(get.as_bytes(), shown, &sealer, &alice).is_err());
        assert_eq!(
            seal_task_ids(br#"{"jsonrpc":"2.0","id":1,"result":{}}"#, &sealer, &alice),
            None
        );

        let request = format!(
            r#"{{"jsonrpc":"2.0","id":3,"method":"tasks/get","params":{{"taskId":"{visible}"}}}}"#
        );
        let (unsealed, upstream) =
            unseal_task_id(request.as_bytes(), visible, &sealer, &alice).unwrap();
        assert_eq!(upstream, "t-1");
        assert_eq!(
            unsealed.len(),
            request.len(),
            "same length: Content-Length may be upstream already"
        );
        let value: serde_json::Value = serde_json::from_slice(&unsealed).unwrap();
        assert_eq!(value["params"]["taskId"], "t-1");
        assert_eq!(
            unseal_task_id(request.as_bytes(), visible, &sealer, &bob).unwrap_err(),
            UnsealError::WrongOwner
        );
        // Escaped by the client: not found, refused like a foreign id.
        let escaped = request.replacen("mg1.", "mg\\u0031.", 1);
        assert!(unseal_task_id(escaped.as_bytes(), visible, &sealer, &alice).is_err());
        assert_eq!(blank_task_id(escaped.as_bytes(), visible), None);
    }
    use crate::identity::IdentityKind;

    const K1: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    const K2: &str = "ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=";

    fn ownership(json: &str) -> Result<Ownership, ConfigError> {
        let dto: OwnershipDto = serde_json::from_str(json).unwrap();
        dto.compile("ownership")
    }

    fn sealer(keys: &[&str]) -> Sealer {
        let keys = serde_json::to_string(keys).unwrap();
        ownership(&format!(r#"{{"keys":{keys}}}"#)).unwrap().sealer
    }

    fn who(kind: IdentityKind, subject: &str) -> Identity {
        Identity {
            kind,
            subject: subject.into(),
            ..Identity::anonymous()
        }
    }

    fn alice() -> Identity {
        who(
            IdentityKind::Jwt {
                provider: "corp".into(),
            },
            "alice",
        )
    }

    #[test]
    fn round_trip_for_the_owner_only() {
        let s = sealer(&[K1]);
        let id = "786512e2-9e0d-44bd-8f29-789f320fe840";
        let sealed = s.seal(IdKind::Task, id, &alice());
        assert!(sealed.starts_with("mg1."));
        assert!(sealed
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)));
        assert_eq!(s.unseal(IdKind::Task, &sealed, &alice()), Ok(id.to_owned()));
        // Same subject, other provider or method: another owner.
        for other in [
            who(
                IdentityKind::Jwt {
                    provider: "other".into(),
                },
                "alice",
            ),
            who(
                IdentityKind::ApiKey {
                    name: "alice".into(),
                },
                "alice",
            ),
            who(
                IdentityKind::Jwt {
                    provider: "corp".into(),
                },
                "bob",
            ),
            Identity::anonymous(),
        ] {
            assert_eq!(
                s.unseal(IdKind::Task, &sealed, &other),
                Err(UnsealError::WrongOwner),
                "{other:?}"
            );
        }
        // A task id is not a session id.
        assert_eq!(
            s.unseal(IdKind::Session, &sealed, &alice()),
            Err(UnsealError::Tampered)
        );
        // Another upstream id under the same proof.
        let (_, proof) = sealed.rsplit_once('.').unwrap();
        let moved = format!("mg1.{}.{proof}", URL_SAFE_NO_PAD.encode("other-task"));
        assert_eq!(
            s.unseal(IdKind::Task, &moved, &alice()),
            Err(UnsealError::Tampered)
        );
        for junk in [id, "mg1.", "mg1.x", "mg1.!.x", "mg1.YQ.YQ", ""] {
            assert_eq!(
                s.unseal(IdKind::Task, junk, &alice()),
                Err(UnsealError::NotSealed),
                "{junk}"
            );
        }
    }

    #[test]
    fn rotation_seals_with_the_first_key_and_accepts_any() {
        let old = sealer(&[K1]).seal(IdKind::Session, "s-1", &alice());
        let rotated = sealer(&[K2, K1]);
        assert_eq!(
            rotated.unseal(IdKind::Session, &old, &alice()),
            Ok("s-1".into())
        );
        let new = rotated.seal(IdKind::Session, "s-1", &alice());
        assert_ne!(new, old);
        assert_eq!(
            sealer(&[K1]).unseal(IdKind::Session, &new, &alice()),
            Err(UnsealError::WrongOwner)
        );
    }

    #[test]
    fn another_callers_id_is_forbidden_anything_else_unknown() {
        let r = UnsealError::WrongOwner.rejection(IdKind::Task, Some("4"));
        assert_eq!(
            (r.code.http_status(), r.reason.as_str(), r.id.as_deref()),
            (403, "the task belongs to another caller", Some("4"))
        );
        let r = UnsealError::WrongOwner.rejection(IdKind::Session, None);
        assert_eq!(
            (r.code.http_status(), r.reason.as_str()),
            (403, "the session belongs to another caller")
        );
        let r = UnsealError::NotSealed.rejection(IdKind::Task, Some("4"));
        assert_eq!(
            (r.code, r.reason.as_str(), r.id.as_deref()),
            (Code::InvalidParams, "unknown task", Some("4"))
        );
        let r = UnsealError::Tampered.rejection(IdKind::Session, None);
        assert_eq!(
            (r.code.http_status(), r.reason.as_str()),
            (404, "unknown session")
        );
    }

    #[test]
    fn config_errors_name_the_key_without_echoing_it() {
        let cases = [
            (
                r#"{"keys":[]}"#,
                "ownership.keys: at least one key is required",
            ),
            (
                r#"{"keys":["not base64!"]}"#,
                "ownership.keys[0]: not base64",
            ),
            (
                r#"{"keys":["AAEC"]}"#,
                "ownership.keys[0]: decodes to 3 bytes; a key is 32 bytes",
            ),
            (
                &format!(r#"{{"keys":["{K1}","{K2}","{K1}"]}}"#),
                "ownership.keys[2]: the same key as keys[0]",
            ),
            (
                &format!(r#"{{"keys":["{K1}"],"tasks":false,"sessions":false}}"#),
                "ownership: seals nothing",
            ),
        ];
        for (json, want) in cases {
            let e = ownership(json).unwrap_err().to_string();
            assert!(e.starts_with(want), "{json}: {e}");
            assert!(!e.contains(K1), "{e}");
        }
        let o = ownership(&format!(r#"{{"keys":["{K1}"],"sessions":false}}"#)).unwrap();
        assert_eq!((o.tasks, o.sessions), (true, false));
        assert_eq!(format!("{:?}", o.sealer), "Sealer(1 keys)");
    }
}
