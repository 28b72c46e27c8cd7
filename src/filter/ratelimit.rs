//! Rate limits in the glue: the local buckets in Envoy's shared data, the `ShouldRateLimit`
//! calls for global limits (one per distinct cost, the request's `hits_addend`) made through
//! the configured cluster while the request is held, and the counters of what went wrong
//! (refusals are counted with every rejection, as `rate_limited`).

use std::cell::Cell;
use std::collections::BTreeMap;
use std::time::Duration;

use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, LogLevel};

use super::host::HostStore;
use super::log;
use super::report::Metrics;
use crate::config::Access;
use crate::limits::local::{self, Taken};
use crate::limits::rls::{self, CODE_OK, CODE_OVER_LIMIT};
use crate::limits::{Charge, RateLimits, Scope};
use crate::report::reject::{Code, Rejection};

/// Bucket updates that ran out of attempts (or gave back less than they took).
const CONTENTION: &str = "mcp_guard.ratelimit_contention";
/// New keys sent to a limit's overflow bucket.
const OVERFLOW: &str = "mcp_guard.ratelimit_overflow";
/// Rate Limit Service calls that failed, timed out or answered nonsense.
const SERVICE_ERRORS: &str = "mcp_guard.ratelimit_service_errors";

/// Rate limiting for one VM; exists only when limits are configured.
pub struct Limiter {
    /// The key bound is logged once per VM, not once per request.
    overflow_logged: Cell<bool>,
}

/// What becomes of a request after its local charges.
pub enum Start {
    Pass,
    /// Refused, by the named limit (`None`: the service failed).
    Refuse(Rejection, Option<String>),
    /// Held until the Rate Limit Service has answered every call.
    Wait(Pending),
}

/// A request's calls to the Rate Limit Service in flight.
pub struct Pending {
    /// Each call's token and the charges (indexes) whose descriptors it carries, in order.
    calls: Vec<(u32, Vec<usize>)>,
    charges: Vec<Charge>,
    /// Local tokens taken, given back if a global limit refuses.
    taken: Vec<Taken>,
    id: Option<String>,
    /// The first refusal (or failure) answered so far, and the limit that refused.
    refused: Option<(Rejection, Option<String>)>,
}

fn count(metrics: &Metrics, name: &str, n: u32) {
    for _ in 0..n {
        metrics.count(name.to_owned());
    }
}

impl Limiter {
    /// The limiter for `limits`; `None` when there are none (nothing on the request path).
    pub fn new(limits: &RateLimits) -> Option<Limiter> {
        (!limits.is_empty()).then(|| Limiter {
            overflow_logged: Cell::new(false),
        })
    }

    /// Gives back the local tokens of a request that will not be forwarded (refused by a
    /// global limit, or ended while its calls were in flight).
    pub fn abandon(&self, metrics: &Metrics, limits: &RateLimits, pending: &Pending) {
        let failed = local::give_back(&HostStore, &pending.taken, limits.cas_retries);
        count(metrics, CONTENTION, failed);
    }

    /// Takes the local charges (at `now_ms`), then asks the service about the global ones.
    pub fn start(
        &self,
        metrics: &Metrics,
        limits: &RateLimits,
        charges: Vec<Charge>,
        id: Option<String>,
        now_ms: u64,
    ) -> Start {
        let outcome = local::take_all(&HostStore, limits, &charges, now_ms);
        count(metrics, CONTENTION, outcome.contention);
        count(metrics, OVERFLOW, outcome.overflowed);
        if outcome.overflowed > 0 && !self.overflow_logged.replace(true) {
            log(
                LogLevel::Warn,
                &format!(
                    "mcp-guard: a rate limit reached max_keys ({}); new keys share its overflow bucket",
                    limits.max_keys
                ),
            );
        }
        let taken = match outcome.result {
            Ok(taken) => taken,
            Err(refusal) => {
                return Start::Refuse(refusal.rejection(id.as_deref()), Some(refusal.limit))
            }
        };
        let (Some(service), true) = (
            &limits.service,
            charges.iter().any(|c| is_global(limits, c)),
        ) else {
            return Start::Pass;
        };
        let mut by_cost: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
        for (i, charge) in charges.iter().enumerate() {
            if is_global(limits, charge) {
                by_cost.entry(charge.cost).or_default().push(i);
            }
        }
        let mut pending = Pending {
            calls: Vec::with_capacity(by_cost.len()),
            charges,
            taken,
            id,
            refused: None,
        };
        for (cost, indexes) in by_cost {
            let descriptors: Vec<rls::Descriptor> = indexes
                .iter()
                .filter_map(|&i| {
                    let charge = pending.charges.get(i)?;
                    Some(limits.limits.get(charge.limit)?.descriptor(&charge.key))
                })
                .collect();
            let hits = u32::try_from(cost).unwrap_or(u32::MAX);
            let message = rls::encode_request(&service.domain, &descriptors, hits);
            match hostcalls::dispatch_grpc_call(
                &service.cluster,
                rls::SERVICE,
                rls::METHOD,
                vec![],
                Some(&message),
                Duration::from_millis(service.timeout_ms),
            ) {
                Ok(token) => pending.calls.push((token, indexes)),
                Err(status) => {
                    let reason = format!(
                        "cannot call the rate limit service on cluster {:?}: {status:?}",
                        service.cluster
                    );
                    if let Some(rejection) = failed(metrics, limits, pending.id.as_deref(), &reason)
                    {
                        pending.refused.get_or_insert((rejection, None));
                    }
                }
            }
        }
        match (pending.calls.is_empty(), pending.refused.take()) {
            (true, None) => Start::Pass,
            (true, Some((rejection, limit))) => {
                self.abandon(metrics, limits, &pending);
                Start::Refuse(rejection, limit)
            }
            (false, refused) => {
                pending.refused = refused;
                Start::Wait(pending)
            }
        }
    }

    /// One call's answer (`status` is the gRPC status, 0 for OK). When it was the last one:
    /// `Some(Ok)` to forward the request, `Some(Err)` to refuse it (local tokens given back).
    pub fn on_answer(
        &self,
        metrics: &Metrics,
        limits: &RateLimits,
        pending: &mut Pending,
        token: u32,
        status: u32,
        size: usize,
    ) -> Option<Result<(), (Rejection, Option<String>)>> {
        let at = pending.calls.iter().position(|(t, _)| *t == token)?;
        let (_, indexes) = pending.calls.swap_remove(at);
        let answer = match status {
            0 => hostcalls::get_buffer(BufferType::GrpcReceiveBuffer, 0, size)
                .map_err(|e| format!("cannot read its answer: {e:?}"))
                .and_then(|b| {
                    rls::decode_response(&b.unwrap_or_default())
                        .map_err(|_| "its answer is not a RateLimitResponse".to_owned())
                }),
            status => Err(format!("gRPC status {status}")),
        };
        let outcome = match answer {
            Ok(response) if response.overall_code == CODE_OK => None,
            Ok(response) if response.overall_code == CODE_OVER_LIMIT => {
                let charges = indexes.iter().filter_map(|&i| pending.charges.get(i));
                let refusal = limits.global_refusal(charges, &response.statuses);
                Some((
                    refusal.rejection(pending.id.as_deref()),
                    Some(refusal.limit),
                ))
            }
            Ok(response) => failed(
                metrics,
                limits,
                pending.id.as_deref(),
                &format!("rate limit service answered code {}", response.overall_code),
            )
            .map(|r| (r, None)),
            Err(why) => failed(
                metrics,
                limits,
                pending.id.as_deref(),
                &format!("rate limit service: {why}"),
            )
            .map(|r| (r, None)),
        };
        if let Some(rejection) = outcome {
            pending.refused.get_or_insert(rejection);
        }
        if !pending.calls.is_empty() {
            return None;
        }
        Some(match pending.refused.take() {
            None => Ok(()),
            Some(refused) => {
                self.abandon(metrics, limits, pending);
                Err(refused)
            }
        })
    }
}

/// A failed check: counted, logged, and a refusal if `failure_mode` is `deny`.
fn failed(
    metrics: &Metrics,
    limits: &RateLimits,
    id: Option<&str>,
    reason: &str,
) -> Option<Rejection> {
    count(metrics, SERVICE_ERRORS, 1);
    log(LogLevel::Warn, &format!("mcp-guard: {reason}"));
    let deny = limits
        .service
        .as_ref()
        .is_none_or(|s| s.failure_mode == Access::Deny);
    deny.then(|| {
        Rejection::new(
            Code::Unavailable,
            "the rate limit service cannot be reached",
        )
        .with_id(id)
    })
}

fn is_global(limits: &RateLimits, charge: &Charge) -> bool {
    limits
        .limits
        .get(charge.limit)
        .is_some_and(|l| l.scope == Scope::Global)
}
