//! `rate_limits` as configured (a strict DTO) and its compile step into [`RateLimits`].

use std::collections::{BTreeMap, HashSet};

use serde::Deserialize;

use super::bucket::{Shape, MAX_PERIOD_MS, MAX_TOKENS};
use super::{Cost, KeyPart, Limit, RateLimits, Scope, Service};
use crate::policy::arguments::parse_pointer;
use crate::policy::config::WhoDto;
use crate::policy::glob::patterns;
use crate::policy::glob::{Glob, PatternSet};
use crate::section::{Access, ConfigError};

/// Default bound on the keys of one local limit.
pub const DEFAULT_MAX_KEYS: u64 = 10_000;
/// Largest `max_keys`: every key is a shared-data entry that is never deleted.
pub const MAX_MAX_KEYS: u64 = 1_000_000;
/// Default compare-and-swap attempts per bucket update.
pub const DEFAULT_CAS_RETRIES: u32 = 16;
/// Default time the rate limit service has to answer.
pub const DEFAULT_TIMEOUT_MS: u64 = 100;

#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitsDto {
    /// Every limit that applies to a request must let it pass.
    #[serde(default)]
    limits: Vec<LimitDto>,
    /// When a bucket cannot be updated in `cas_retries` attempts (default deny).
    on_contention: Option<Access>,
    /// Buckets per local limit before new keys share its overflow bucket (default 10000).
    max_keys: Option<u64>,
    /// Compare-and-swap attempts per bucket update (default 16).
    cas_retries: Option<u32>,
    /// The Envoy Rate Limit Service for global limits.
    service: Option<ServiceDto>,
}

#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitDto {
    /// Letters, digits, '-', '_', '.'; named in the 429 and its headers.
    name: String,
    /// The callers it applies to (default everyone).
    who: Option<WhoDto>,
    /// Method patterns it counts (default all).
    methods: Option<Vec<String>>,
    /// Tool patterns it counts; when given, only messages naming a matching tool.
    tools: Option<Vec<String>>,
    /// What makes a separate bucket: subject, api_key, claim:<name>, tool, method,
    /// upstream, session.
    #[serde(default)]
    key: Vec<String>,
    /// local (shared data of this Envoy) or global (the Rate Limit Service).
    #[serde(default)]
    scope: ScopeDto,
    /// Required for a local limit; a global limit's bucket is configured in the service.
    bucket: Option<BucketDto>,
    #[serde(default)]
    cost: CostDto,
}

#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum ScopeDto {
    #[default]
    Local,
    Global,
}

#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BucketDto {
    /// Tokens when full (a new bucket starts full).
    capacity: u64,
    /// Without it the bucket never refills.
    refill: Option<RefillDto>,
}

#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RefillDto {
    /// Tokens added every `per_seconds`, continuously.
    tokens: u64,
    /// The refill period in seconds (default 1).
    per_seconds: Option<u64>,
}

#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct CostDto {
    /// Tokens a message costs (default 1).
    default: Option<u64>,
    /// Tool pattern -> cost; the highest of those that match.
    #[serde(default)]
    tools: BTreeMap<String, u64>,
    /// Tool pattern -> JSON pointer of an argument whose count (a number, or an array's
    /// length; at least 1) is the cost.
    #[serde(default)]
    arguments: BTreeMap<String, String>,
}

#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ServiceDto {
    /// The Envoy cluster (HTTP/2) of the gRPC Rate Limit Service.
    cluster: String,
    /// The requests' domain (default "mcp-guard").
    domain: Option<String>,
    /// Time the service has to answer (default 100).
    timeout_ms: Option<u64>,
    /// When the service fails or times out (default deny).
    failure_mode: Option<Access>,
}

fn error(path: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError {
        path: path.into(),
        message: message.into(),
    }
}

/// Names end up in shared-data keys, descriptors and structured header strings.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn tokens(path: String, n: u64) -> Result<u64, ConfigError> {
    if (1..=MAX_TOKENS).contains(&n) {
        Ok(n)
    } else {
        Err(error(path, format!("{n} is outside 1..={MAX_TOKENS}")))
    }
}

impl RateLimitsDto {
    pub fn compile(self, path: &str) -> Result<RateLimits, ConfigError> {
        let max_keys = self.max_keys.unwrap_or(DEFAULT_MAX_KEYS);
        if !(1..=MAX_MAX_KEYS).contains(&max_keys) {
            return Err(error(
                format!("{path}.max_keys"),
                format!("{max_keys} is outside 1..={MAX_MAX_KEYS}"),
            ));
        }
        let cas_retries = self.cas_retries.unwrap_or(DEFAULT_CAS_RETRIES);
        if !(1..=1000).contains(&cas_retries) {
            return Err(error(
                format!("{path}.cas_retries"),
                format!("{cas_retries} is outside 1..=1000"),
            ));
        }
        let service = self
            .service
            .map(|s| s.compile(&format!("{path}.service")))
            .transpose()?;
        let mut names = HashSet::new();
        let mut limits = Vec::with_capacity(self.limits.len());
        for (i, dto) in self.limits.into_iter().enumerate() {
            let at = format!("{path}.limits[{i}]");
            if !valid_name(&dto.name) {
                return Err(error(
                    format!("{at}.name"),
                    format!(
                        "{:?}: use 1 to 64 letters, digits, '-', '_' or '.'",
                        dto.name
                    ),
                ));
            }
            if !names.insert(dto.name.clone()) {
                return Err(error(
                    format!("{at}.name"),
                    format!("duplicate limit name {:?}", dto.name),
                ));
            }
            if dto.scope == ScopeDto::Global && service.is_none() {
                return Err(error(
                    format!("{at}.scope"),
                    format!("a global limit needs {path}.service"),
                ));
            }
            limits.push(dto.compile(&at)?);
        }
        Ok(RateLimits {
            needs_upstream: limits.iter().any(|l| l.key.contains(&KeyPart::Upstream)),
            limits,
            on_contention: self.on_contention.unwrap_or(Access::Deny),
            max_keys,
            cas_retries,
            service,
        })
    }
}

impl ServiceDto {
    fn compile(self, path: &str) -> Result<Service, ConfigError> {
        if self.cluster.is_empty() {
            return Err(error(format!("{path}.cluster"), "must not be empty"));
        }
        let domain = self.domain.unwrap_or_else(|| "mcp-guard".into());
        if domain.is_empty() {
            return Err(error(format!("{path}.domain"), "must not be empty"));
        }
        let timeout_ms = self.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS);
        if !(1..=60_000).contains(&timeout_ms) {
            return Err(error(
                format!("{path}.timeout_ms"),
                format!("{timeout_ms} is outside 1..=60000"),
            ));
        }
        Ok(Service {
            cluster: self.cluster,
            domain,
            timeout_ms,
            failure_mode: self.failure_mode.unwrap_or(Access::Deny),
        })
    }
}

impl LimitDto {
    fn compile(self, path: &str) -> Result<Limit, ConfigError> {
        let methods = match &self.methods {
            Some(list) => patterns(&format!("{path}.methods"), list)?,
            None => PatternSet::everything(),
        };
        let tools = self
            .tools
            .as_ref()
            .map(|list| patterns(&format!("{path}.tools"), list))
            .transpose()?;
        let mut key = Vec::with_capacity(self.key.len());
        for (i, part) in self.key.iter().enumerate() {
            let part = KeyPart::parse(part).ok_or_else(|| {
                error(
                    format!("{path}.key[{i}]"),
                    format!(
                        "{part:?}: expected subject, api_key, claim:<name>, tool, method, \
                         upstream or session"
                    ),
                )
            })?;
            if key.contains(&part) {
                return Err(error(format!("{path}.key[{i}]"), "repeated"));
            }
            key.push(part);
        }
        let scope = match (self.scope, self.bucket) {
            (ScopeDto::Local, Some(bucket)) => {
                Scope::Local(bucket.compile(&format!("{path}.bucket"))?)
            }
            (ScopeDto::Local, None) => {
                return Err(error(path, "a local limit needs a bucket"));
            }
            (ScopeDto::Global, Some(_)) => {
                return Err(error(
                    format!("{path}.bucket"),
                    "a global limit's bucket is configured in the rate limit service",
                ));
            }
            (ScopeDto::Global, None) => Scope::Global,
        };
        let cost = self.cost.compile(&format!("{path}.cost"))?;
        let who = self
            .who
            .map(|who| who.compile(&format!("{path}.who")))
            .transpose()?;
        let prefix = match &scope {
            Scope::Local(shape) => format!(
                "mcp-guard/rl/{}/{}.{}.{}/",
                self.name, shape.capacity, shape.refill_tokens, shape.period_ms
            ),
            Scope::Global => String::new(),
        };
        Ok(Limit {
            name: self.name,
            who,
            methods,
            tools,
            key,
            scope,
            cost,
            prefix,
        })
    }
}

impl BucketDto {
    fn compile(self, path: &str) -> Result<Shape, ConfigError> {
        let capacity = tokens(format!("{path}.capacity"), self.capacity)?;
        let (refill_tokens, period_ms) = match self.refill {
            None => (0, 1000),
            Some(refill) => {
                let refill_tokens = tokens(format!("{path}.refill.tokens"), refill.tokens)?;
                let seconds = refill.per_seconds.unwrap_or(1);
                let max = MAX_PERIOD_MS / 1000;
                if !(1..=max).contains(&seconds) {
                    return Err(error(
                        format!("{path}.refill.per_seconds"),
                        format!("{seconds} is outside 1..={max}"),
                    ));
                }
                (refill_tokens, seconds * 1000)
            }
        };
        Ok(Shape {
            capacity,
            refill_tokens,
            period_ms,
        })
    }
}

impl CostDto {
    fn compile(self, path: &str) -> Result<Cost, ConfigError> {
        let check = |at: String, n: u64| {
            if n <= MAX_TOKENS {
                Ok(n)
            } else {
                Err(error(at, format!("{n} is above {MAX_TOKENS}")))
            }
        };
        let default = check(format!("{path}.default"), self.default.unwrap_or(1))?;
        let mut tools = Vec::with_capacity(self.tools.len());
        for (pattern, n) in self.tools {
            let at = format!("{path}.tools.{pattern}");
            let glob = Glob::new(&pattern).map_err(|e| error(&at, e.to_string()))?;
            tools.push((glob, check(at, n)?));
        }
        let mut arguments = Vec::with_capacity(self.arguments.len());
        for (pattern, pointer) in self.arguments {
            let at = format!("{path}.arguments.{pattern}");
            let glob = Glob::new(&pattern).map_err(|e| error(&at, e.to_string()))?;
            let tokens =
                parse_pointer(&pointer).map_err(|m| error(&at, format!("{pointer:?} {m}")))?;
            arguments.push((glob, tokens));
        }
        Ok(Cost {
            default,
            tools,
            arguments,
        })
    }
}
