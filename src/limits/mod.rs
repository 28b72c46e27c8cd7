//! Limits: what an approved request owes its rate limits (`rate_limits`), token buckets per
//! caller, tool and method, and the 429 when it cannot pay. It judges only requests the
//! policy already approved, and never talks to the host: the glue takes the charges.
//!
//! - A limit applies to a message when its `who` selects the caller, its `methods` match
//!   the method and (if given) its `tools` match the called tool. Clients' responses never
//!   count.
//! - Each applicable message costs: the tool's cost, or the count an argument stands for,
//!   else the limit's default. The messages of one request that fall in the same bucket
//!   (same limit, same key) are summed into one [`Charge`].
//! - A request passes when every charge passes; a refused request consumes from none
//!   (see [`local`] for the give-back, and the glue for global limits).
//! - `local` limits live in proxy-wasm shared data ([`local`]); `global` ones are asked of
//!   an Envoy Rate Limit Service ([`rls`]) with the same key as descriptor entries.

pub mod bucket;
pub mod config;
pub mod local;
pub mod rls;

use std::fmt::Write as _;

use crate::identity::{Identity, IdentityKind};
use crate::policy::glob::{Glob, PatternSet};
use crate::policy::Who;
use crate::protocol::head::RequestHead;
use crate::protocol::jsonrpc::{Kind, Message, Target};
use crate::report::reject::{push_json_string, Code, Rejection};
use crate::section::Access;
use crate::state::push_key_part;
use bucket::Shape;

pub use config::RateLimitsDto;

/// The compiled `rate_limits`.
#[derive(Debug, Clone, Default)]
pub struct RateLimits {
    pub limits: Vec<Limit>,
    /// When a bucket cannot be updated within `cas_retries` attempts.
    pub on_contention: Access,
    /// Keys per local limit before new keys share the overflow bucket.
    pub max_keys: u64,
    pub cas_retries: u32,
    pub service: Option<Service>,
    /// Some key names the upstream cluster (a host property the glue reads only then).
    pub needs_upstream: bool,
}

/// Where the global limits are checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    /// The Envoy cluster of the gRPC Rate Limit Service.
    pub cluster: String,
    pub domain: String,
    pub timeout_ms: u64,
    /// When the service does not answer in time, or answers with an error.
    pub failure_mode: Access,
}

#[derive(Debug, Clone)]
pub struct Limit {
    pub name: String,
    who: Option<Who>,
    methods: PatternSet,
    tools: Option<PatternSet>,
    key: Vec<KeyPart>,
    pub scope: Scope,
    cost: Cost,
    /// Shared-data key prefix of a local limit; names the bucket shape, so that a changed
    /// configuration starts from fresh buckets.
    prefix: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Local(Shape),
    Global,
}

/// What one part of a limit's key is made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyPart {
    Subject,
    ApiKey,
    Claim(String),
    Tool,
    Method,
    Upstream,
    Session,
}

#[derive(Debug, Clone)]
struct Cost {
    default: u64,
    tools: Vec<(Glob, u64)>,
    /// Tool pattern → reference tokens of the argument whose count is the cost.
    arguments: Vec<(Glob, Vec<String>)>,
}

/// What one request owes one bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Charge {
    /// Index into [`RateLimits::limits`].
    pub limit: usize,
    /// The key parts' values, in the limit's key order.
    pub key: Vec<String>,
    pub cost: u64,
}

/// The request-side facts a key may name besides the identity and the message.
#[derive(Debug, Clone, Copy, Default)]
pub struct KeyContext<'a> {
    pub session: Option<&'a str>,
    pub upstream: Option<&'a str>,
}

impl KeyPart {
    fn parse(text: &str) -> Option<KeyPart> {
        Some(match text {
            "subject" => KeyPart::Subject,
            "api_key" => KeyPart::ApiKey,
            "tool" => KeyPart::Tool,
            "method" => KeyPart::Method,
            "upstream" => KeyPart::Upstream,
            "session" => KeyPart::Session,
            other => {
                let claim = other.strip_prefix("claim:").filter(|c| !c.is_empty())?;
                KeyPart::Claim(claim.to_owned())
            }
        })
    }

    /// The descriptor entry key for this part.
    fn name(&self) -> String {
        match self {
            KeyPart::Subject => "subject".into(),
            KeyPart::ApiKey => "api_key".into(),
            KeyPart::Claim(c) => format!("claim:{c}"),
            KeyPart::Tool => "tool".into(),
            KeyPart::Method => "method".into(),
            KeyPart::Upstream => "upstream".into(),
            KeyPart::Session => "session".into(),
        }
    }

    /// This part's value for one message (empty when the request has none).
    fn value(&self, identity: &Identity, message: &Message<'_>, cx: KeyContext<'_>) -> String {
        match self {
            KeyPart::Subject => identity.subject.clone(),
            KeyPart::ApiKey => match &identity.kind {
                IdentityKind::ApiKey { name } => name.clone(),
                _ => String::new(),
            },
            KeyPart::Claim(c) => identity
                .claims
                .get(c)
                .map(|values| values.join(","))
                .unwrap_or_default(),
            KeyPart::Tool => tool(message).unwrap_or_default().to_owned(),
            KeyPart::Method => message.method.as_deref().unwrap_or_default().to_owned(),
            KeyPart::Upstream => cx.upstream.unwrap_or_default().to_owned(),
            KeyPart::Session => cx.session.unwrap_or_default().to_owned(),
        }
    }
}

fn tool<'m>(message: &'m Message<'_>) -> Option<&'m str> {
    match &message.target {
        Some(Target::Tool(name)) => Some(name.as_ref()),
        _ => None,
    }
}

impl Cost {
    /// The cost of `message` (its arguments read from `body`): an argument's count (at
    /// least 1, so that a call cannot make itself free) if one is configured for the tool
    /// and present, else the highest matching tool cost, else the default.
    fn of(&self, message: &Message<'_>, body: &[u8]) -> u64 {
        let Some(tool) = tool(message) else {
            return self.default;
        };
        let args = message.arguments.clone().and_then(|r| body.get(r));
        let counted = self
            .arguments
            .iter()
            .filter(|(glob, _)| glob.is_match(tool))
            .filter_map(|(_, tokens)| crate::policy::arguments::count_at(args?, tokens))
            .max()
            .map(|n| n.max(1));
        counted
            .or_else(|| {
                self.tools
                    .iter()
                    .filter(|(glob, _)| glob.is_match(tool))
                    .map(|(_, n)| *n)
                    .max()
            })
            .unwrap_or(self.default)
    }
}

impl Limit {
    /// Whether this limit counts messages of `method` (its `methods`; `tools` may narrow it).
    pub fn counts_method(&self, method: &str) -> bool {
        self.methods.is_match(method)
    }

    fn applies(&self, message: &Message<'_>) -> bool {
        if message.kind == Kind::Response {
            return false;
        }
        let method = message.method.as_deref().unwrap_or_default();
        self.methods.is_match(method)
            && self
                .tools
                .as_ref()
                .is_none_or(|tools| tool(message).is_some_and(|t| tools.is_match(t)))
    }

    /// The shared-data key of the bucket for `key` (values length-prefixed, so that no two
    /// keys run together).
    pub fn store_key(&self, key: &[String]) -> String {
        let mut out = String::with_capacity(self.prefix.len() + 24 * key.len());
        out.push_str(&self.prefix);
        for value in key {
            push_key_part(&mut out, value);
        }
        out
    }

    /// Where a local limit counts its keys, and the bucket new keys share past the bound.
    pub fn bound_keys(&self) -> (String, String) {
        (
            format!("{}#keys", self.prefix),
            format!("{}#overflow", self.prefix),
        )
    }

    /// The descriptor entries for `key`: the limit's name, then each key part.
    pub fn descriptor(&self, key: &[String]) -> Vec<(String, String)> {
        std::iter::once(("limit".to_owned(), self.name.clone()))
            .chain(self.key.iter().map(KeyPart::name).zip(key.iter().cloned()))
            .collect()
    }
}

impl RateLimits {
    pub fn is_empty(&self) -> bool {
        self.limits.is_empty()
    }

    /// What an approved request owes, its keys read from `head` (the session, the route's
    /// cluster); nothing, at no cost, without limits.
    pub(crate) fn charges_for(
        &self,
        identity: &Identity,
        messages: &[Message<'_>],
        body: &[u8],
        head: &RequestHead,
    ) -> Vec<Charge> {
        if self.is_empty() {
            return Vec::new();
        }
        let session = head
            .values("mcp-session-id")
            .next()
            .and_then(|v| std::str::from_utf8(v).ok());
        let cx = KeyContext {
            session,
            upstream: head.upstream.as_deref(),
        };
        self.charges(identity, messages, body, cx)
    }

    /// What a request of `identity` made of `messages` (read from `body`) owes, bucket by
    /// bucket, in limit order. Zero costs are left out.
    pub fn charges(
        &self,
        identity: &Identity,
        messages: &[Message<'_>],
        body: &[u8],
        cx: KeyContext<'_>,
    ) -> Vec<Charge> {
        let mut charges: Vec<Charge> = Vec::new();
        for (index, limit) in self.limits.iter().enumerate() {
            if !limit.who.as_ref().is_none_or(|w| w.matches(identity)) {
                continue;
            }
            for message in messages.iter().filter(|m| limit.applies(m)) {
                let cost = limit.cost.of(message, body);
                if cost == 0 {
                    continue;
                }
                let key: Vec<String> = limit
                    .key
                    .iter()
                    .map(|part| part.value(identity, message, cx))
                    .collect();
                match charges
                    .iter_mut()
                    .find(|c| c.limit == index && c.key == key)
                {
                    Some(charge) => charge.cost = charge.cost.saturating_add(cost),
                    None => charges.push(Charge {
                        limit: index,
                        key,
                        cost,
                    }),
                }
            }
        }
        charges
    }
}

impl RateLimits {
    /// The refusal for an OVER_LIMIT answer to one call whose descriptors were `charges`, in
    /// order: the first descriptor over its limit, with the service's numbers. A service that
    /// sends no statuses (Limitador answers with the overall code only) is still obeyed: the
    /// call's first limit is named, with what is known (`q=0`: not told).
    pub fn global_refusal<'c>(
        &self,
        charges: impl Iterator<Item = &'c Charge>,
        statuses: &[rls::Status],
    ) -> Refusal {
        let mut charges = charges.peekable();
        let first = charges.peek().map(|c| c.limit);
        let (status, limit) = statuses
            .iter()
            .zip(charges)
            .find(|(s, _)| s.code == rls::CODE_OVER_LIMIT)
            .map_or((None, first), |(s, c)| (Some(s), Some(c.limit)));
        let status = status.cloned().unwrap_or_default();
        Refusal {
            limit: limit
                .and_then(|i| self.limits.get(i))
                .map_or_else(String::new, |l| l.name.clone()),
            quota: status.requests_per_unit,
            window_seconds: status.unit_seconds(),
            remaining: status.limit_remaining,
            retry_after_ms: (status.reset_ms > 0).then_some(status.reset_ms),
            why: None,
        }
    }
}

/// A refused request: the limit and what the client is told about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub limit: String,
    /// Tokens (or requests) the limit allows per window.
    pub quota: u64,
    /// Seconds the quota is counted over (`None`: never refills).
    pub window_seconds: Option<u64>,
    pub remaining: u64,
    /// When the request could pass (`None`: never, at this cost).
    pub retry_after_ms: Option<u64>,
    /// Why, when it is not simply "exceeded" (contention, an unavailable service).
    pub why: Option<String>,
}

impl Refusal {
    /// The 429: `Retry-After`, `RateLimit-Policy` and `RateLimit` (structured fields as in
    /// draft-ietf-httpapi-ratelimit-headers), and `error.data` naming the limit and the wait.
    pub fn rejection(&self, id: Option<&str>) -> Rejection {
        let retry_seconds = self.retry_after_ms.map(|ms| ms.div_ceil(1000));
        let reason = match (&self.why, retry_seconds) {
            (Some(why), _) => format!("rate limit {:?}: {why}", self.limit),
            (None, Some(s)) => format!("rate limit {:?} exceeded; retry in {s} s", self.limit),
            (None, None) => format!(
                "rate limit {:?} exceeded; this call cannot pass it",
                self.limit
            ),
        };
        let mut policy = format!("\"{}\";q={}", self.limit, self.quota);
        let mut state = format!("\"{}\";r={}", self.limit, self.remaining);
        if let Some(w) = self.window_seconds {
            let _ = write!(policy, ";w={w}");
        }
        if let Some(t) = retry_seconds {
            let _ = write!(state, ";t={t}");
        }
        let mut name = String::new();
        push_json_string(&mut name, &self.limit);
        let mut rejection = Rejection::new(Code::RateLimited, reason)
            .with_id(id)
            .with_data("limit", name)
            .with_data(
                "retry_after_seconds",
                retry_seconds.map_or("null".into(), |s| s.to_string()),
            );
        if let Some(s) = retry_seconds {
            rejection = rejection.with_header("retry-after", s.to_string());
        }
        rejection
            .with_header("ratelimit-policy", policy)
            .with_header("ratelimit", state)
    }
}

#[cfg(test)]
mod tests;
