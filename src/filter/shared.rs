//! Per-VM state shared by the root context and every request of one Envoy worker: the
//! compiled configuration, the signing keys and their fetches, the verified-token cache,
//! the requests waiting for keys, the report of tools drifting from their pins, and the
//! tools' schemas compiled for the checks of their calls.

use std::cell::RefCell;
use std::rc::{Rc, Weak};
use std::time::Duration;

use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, LogLevel, MapType};

use super::host;
use super::log;
use super::ratelimit::Limiter;
use super::report::Metrics;
use crate::catalog::defmemo::DefMemo;
use crate::catalog::schemas::SharedSchemas;
use crate::catalog::tooldef::ToolDef;
use crate::config::Config;
use crate::contract::calls::{Compiled, SchemaNews};
use crate::identity::key_store::{FetchPolicy, KeyStore};
use crate::identity::shared_tokens::{Layered, SharedTokens};
use crate::identity::{KeySet, TokenCache};
use crate::report::observe;

/// Bounds of the remembered tool definitions: a worker keeps at most this many list
/// elements (and this many bytes of them and their schemas) read already.
const DEF_MEMO_ENTRIES: usize = 1024;
const DEF_MEMO_BYTES: usize = 1 << 20;

/// A request its flow holds, as the per-VM state sees it: the root's tick and JWKS answers
/// resume or refuse it through this, so this module never depends on the flow.
pub trait Resumable {
    /// Keys of the provider it waits for changed (or the wait timed out): try again.
    /// Called with the request's context made effective.
    fn retry_authentication(self: Rc<Self>, timed_out: bool);
    /// Whether to keep watching it for a body Envoy has not delivered (`hold: request`).
    fn check_body_delivery(self: Rc<Self>) -> bool;
}

/// Signatures checked (token cache misses in this worker and in shared data).
const JWT_VERIFICATIONS: &str = "mcp_guard.jwt_verifications";
/// Tokens this worker took from the shared cache instead of verifying them.
const JWT_SHARED_HITS: &str = "mcp_guard.jwt_shared_cache_hits";

/// A request waiting for keys.
pub struct Waiter {
    pub provider: usize,
    pub context_id: u32,
    pub flow: Weak<dyn Resumable>,
    pub deadline_ms: u64,
}

pub struct Shared {
    pub config: Config,
    pub keys: RefCell<KeyStore>,
    pub cache: RefCell<TokenCache>,
    /// `None` without rate limits.
    pub limiter: Option<Limiter>,
    pub metrics: Metrics,
    /// Schemas compiled for `Mcp-Param-*` and argument checks, by definition hash.
    pub schemas: RefCell<Compiled>,
    /// The tool definitions this worker has read from list answers.
    pub defs: RefCell<DefMemo>,
    waiters: RefCell<Vec<Waiter>>,
    /// `hold: request`: requests held for a body not delivered yet (see
    /// [`Resumable::check_body_delivery`]).
    awaiting_body: RefCell<Vec<(u32, Weak<dyn Resumable>)>>,
}

impl Shared {
    pub fn new(config: Config) -> Shared {
        let policies = config.auth.iter().flat_map(|a| &a.providers).map(|p| {
            p.remote_jwks.as_ref().map(|r| FetchPolicy {
                refresh_ms: r.refresh_seconds * 1000,
                min_refetch_ms: r.min_refetch_seconds * 1000,
                timeout_ms: r.timeout_ms,
            })
        });
        Shared {
            keys: RefCell::new(KeyStore::new(policies)),
            cache: RefCell::new(TokenCache::default()),
            metrics: Metrics::new(),
            schemas: RefCell::new(Compiled::new(config.contracts.max_schemas)),
            defs: RefCell::new(DefMemo::new(DEF_MEMO_ENTRIES, DEF_MEMO_BYTES)),
            waiters: RefCell::new(Vec::new()),
            awaiting_body: RefCell::new(Vec::new()),
            limiter: Limiter::new(&config.rate_limits),
            config,
        }
    }

    /// This worker's token cache in front of the one in shared data.
    pub fn tokens<'a>(&self, local: &'a mut TokenCache) -> Layered<'a, host::HostStore> {
        let slots = self
            .config
            .auth
            .as_ref()
            .map_or(0, |a| a.shared_token_cache_slots);
        Layered {
            local,
            shared: SharedTokens {
                store: &host::HostStore,
                slots,
            },
            verifications: 0,
            shared_hits: 0,
        }
    }

    /// Counts what one authentication did with the token caches.
    pub fn report_tokens(&self, tokens: &Layered<'_, host::HostStore>) {
        for _ in 0..tokens.verifications {
            self.metrics.count(JWT_VERIFICATIONS.to_owned());
        }
        for _ in 0..tokens.shared_hits {
            self.metrics.count(JWT_SHARED_HITS.to_owned());
        }
    }

    /// A pinned tool's live definition no longer matches its pin: say so and count it.
    pub fn report_drift(&self, upstream: &str, tool: &str) {
        log(
            LogLevel::Warn,
            &format!(
                "mcp-guard: tool drift: tool {tool:?} of upstream {upstream:?} no longer \
                 matches its pin; it is left out of tools/list and calls to it are refused"
            ),
        );
        self.metrics
            .count(self.config.observe.pin_drift_metric(tool));
    }

    fn shared_schemas<'a>(&self, upstream: &'a str) -> SharedSchemas<'a, host::HostStore> {
        SharedSchemas {
            store: &host::HostStore,
            upstream,
            max_tools: self.config.tools.max_tools_per_upstream,
        }
    }

    /// Learns the schema of a definition a `tools/list` answer carries (compiled here,
    /// shared with the other workers). `false`: its `x-mcp-header` properties are invalid,
    /// and clients must exclude the tool, so the caller does not see it.
    pub fn learn_listed_schema(&self, upstream: &str, def: &ToolDef) -> bool {
        let checks = self.config.schema_checks;
        let mut compiled = self.schemas.borrow_mut();
        let first = !compiled.knows(&def.sha256, checks);
        let news = compiled.learn_listed(&self.shared_schemas(upstream), def, checks);
        drop(compiled);
        if first {
            self.report_schema(upstream, &def.name, &news);
        }
        news.params.is_none()
    }

    /// Makes the schema of a called tool's definition `hash` known to this worker, from
    /// what another worker stored (a no-op once compiled here).
    pub fn find_schema(&self, upstream: &str, tool: &str, hash: &[u8; 32]) {
        let checks = self.config.schema_checks;
        let news = self
            .schemas
            .borrow_mut()
            .find(&self.shared_schemas(upstream), hash, checks);
        self.report_schema(upstream, tool, &news);
    }

    /// Logs (once per definition and worker) what compiling a schema found, and updates
    /// the schema gauges.
    fn report_schema(&self, upstream: &str, tool: &str, news: &SchemaNews) {
        if let Some(e) = &news.params {
            log(
                LogLevel::Warn,
                &format!(
                    "mcp-guard: tool {tool:?} of upstream {upstream:?} has an invalid \
                     x-mcp-header ({e}): left out of tools/list answers"
                ),
            );
        }
        if let Some(e) = &news.uncompilable {
            log(
                LogLevel::Warn,
                &format!("mcp-guard: contract: tool {tool:?} of upstream {upstream:?}: {e}"),
            );
            self.metrics
                .count(self.config.observe.contract_uncompilable_metric(tool));
        }
        if self.config.schema_checks.arguments {
            let (entries, bytes) = self.schemas.borrow().contracts.usage();
            self.metrics
                .set("mcp_guard.contract_schemas", entries as u64);
            self.metrics
                .set("mcp_guard.contract_schema_bytes", bytes as u64);
        }
    }

    /// Starts fetching the JWKS of `provider` from the current context; its answer comes
    /// back to that context's `on_http_call_response`, which hands it to [`Shared::on_fetched`].
    pub fn fetch(&self, provider: usize, now_ms: u64) {
        let Some(remote) = self
            .config
            .provider(provider)
            .and_then(|p| p.remote_jwks.as_ref())
        else {
            return;
        };
        let headers = vec![
            (":method", "GET"),
            (":path", remote.path.as_str()),
            (":authority", remote.authority.as_str()),
            ("accept", "application/json"),
        ];
        let timeout = Duration::from_millis(remote.timeout_ms);
        match hostcalls::dispatch_http_call(&remote.cluster, headers, None, vec![], timeout) {
            Ok(token) => self.keys.borrow_mut().started(provider, token, now_ms),
            Err(status) => log(
                LogLevel::Warn,
                &format!(
                    "mcp-guard: cannot fetch JWKS from cluster {:?}: {status:?}",
                    remote.cluster
                ),
            ),
        }
    }

    /// Takes a JWKS answer: new keys replace the old ones; anything else keeps them. Then
    /// the requests waiting on that provider try again.
    pub fn on_fetched(&self, token: u32, body_size: usize) {
        let status = hostcalls::get_map_value(MapType::HttpCallResponseHeaders, ":status")
            .ok()
            .flatten();
        let result = match status.as_deref() {
            Some("200") => {
                match hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, body_size) {
                    Ok(body) => KeySet::from_jwks(&body.unwrap_or_default()),
                    Err(e) => Err(format!("cannot read the answer: {e:?}")),
                }
            }
            Some(other) => Err(format!("HTTP status {other}")),
            None => Err("no answer (connection failed or timed out)".into()),
        };
        let ok = result.is_ok();
        if let Err(e) = &result {
            log(
                LogLevel::Warn,
                &format!("mcp-guard: JWKS fetch failed, keeping the last good keys: {e}"),
            );
        }
        let provider = self
            .keys
            .borrow_mut()
            .finished(token, result, host::now_ms());
        if let Some(provider) = provider {
            if let Some(p) = self.config.provider(provider) {
                self.metrics.count(observe::jwks_metric(&p.name, ok));
            }
            self.wake(|w| w.provider == provider, false);
        }
    }

    /// When a request that starts waiting for the keys of `provider` now must give up.
    pub fn wait_deadline(&self, provider: usize, now_ms: u64) -> u64 {
        let max_wait = self
            .config
            .provider(provider)
            .and_then(|p| p.remote_jwks.as_ref())
            .map_or(0, |r| r.max_wait_ms);
        now_ms + max_wait
    }

    /// Registers a request that waits for the keys of `provider` until `deadline_ms`.
    pub fn wait(
        &self,
        provider: usize,
        context_id: u32,
        flow: Weak<dyn Resumable>,
        deadline_ms: u64,
    ) {
        self.waiters.borrow_mut().push(Waiter {
            provider,
            context_id,
            flow,
            deadline_ms,
        });
    }

    /// Periodic work: fetch keys that are due, and fail requests that waited too long.
    pub fn on_tick(&self) {
        let now_ms = host::now_ms();
        let due = self.keys.borrow().due(now_ms);
        for provider in due {
            self.fetch(provider, now_ms);
        }
        self.wake(|w| w.deadline_ms <= now_ms, true);
        self.check_bodies();
    }

    /// Watches a request held (`hold: request`) for a body it has not been handed yet.
    pub fn watch_body(&self, context_id: u32, flow: Weak<dyn Resumable>) {
        self.awaiting_body.borrow_mut().push((context_id, flow));
    }

    /// Checks the watched requests; keeps those still waiting for a body the client has not
    /// sent yet.
    fn check_bodies(&self) {
        let watched = std::mem::take(&mut *self.awaiting_body.borrow_mut());
        for (context_id, flow) in watched {
            let Some(strong) = flow.upgrade() else {
                continue; // the stream ended
            };
            if hostcalls::set_effective_context(context_id).is_ok() && strong.check_body_delivery()
            {
                self.awaiting_body.borrow_mut().push((context_id, flow));
            }
        }
    }

    /// Resumes (or, on timeout, refuses) the waiting requests `which` selects.
    fn wake(&self, which: impl Fn(&Waiter) -> bool, timed_out: bool) {
        let woken: Vec<Waiter> = {
            let mut waiters = self.waiters.borrow_mut();
            let (woken, kept) = waiters.drain(..).partition(|w| which(w));
            *waiters = kept;
            woken
        };
        for waiter in woken {
            let Some(flow) = waiter.flow.upgrade() else {
                continue; // the client went away
            };
            if hostcalls::set_effective_context(waiter.context_id).is_ok() {
                flow.retry_authentication(timed_out);
            }
        }
    }
}
