//! Per-VM state shared by the root context and every request of one Envoy worker: the
//! compiled configuration, the signing keys and their fetches, the verified-token cache,
//! the requests waiting for keys, the report of tools drifting from their pins, the
//! tools' schemas compiled for the checks of their calls, and the `tools/list`s a cold
//! gateway sends for calls it cannot judge yet ([`crate::catalog::fetch`]).

use std::cell::{Cell, RefCell};
use std::rc::{Rc, Weak};
use std::time::Duration;

use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, LogLevel, MapType};

use super::host;
use super::log;
use super::ratelimit::Limiter;
use super::report::Metrics;
use crate::catalog::defmemo::DefMemo;
use crate::catalog::fetch::{ListFetch, RELIST_AFTER_MS};
use crate::catalog::schemas::SharedSchemas;
use crate::catalog::tooldef::ToolDef;
use crate::catalog::toolstate::{version_key, UpstreamTools};
use crate::config::Config;
use crate::contract::calls::{Compiled, SchemaNews};
use crate::fasthash::FastMap;
use crate::identity::key_store::{FetchPolicy, KeyStore};
use crate::identity::shared_tokens::{Layered, SharedTokens};
use crate::identity::{KeySet, TokenCache};
use crate::report::observe;
use crate::response::listfilter::filter_list;
use crate::state::{ReadMemo, Versioned};

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
    /// The upstream's `tools/list` it waits for was learned (`Err`: why it could not be).
    /// Called with the request's context made effective.
    fn retry_after_list(self: Rc<Self>, result: Result<(), String>);
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

/// A request waiting for a `tools/list` (`listing`: its [`Listing::id`]).
struct ListWaiter {
    listing: u64,
    context_id: u32,
    flow: Weak<dyn Resumable>,
}

/// This worker's `tools/list` in flight to one cluster (at most one per cluster).
struct Listing {
    id: u64,
    cluster: String,
    /// The host's token for the page in flight.
    token: u32,
    fetch: ListFetch,
    deadline_ms: u64,
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
    /// The tool records this worker has read from shared data (see [`Shared::catalog`]).
    catalog_memo: RefCell<ReadMemo>,
    waiters: RefCell<Vec<Waiter>>,
    /// `hold: request`: requests held for a body not delivered yet (see
    /// [`Resumable::check_body_delivery`]).
    awaiting_body: RefCell<Vec<(u32, Weak<dyn Resumable>)>>,
    listings: RefCell<Vec<Listing>>,
    /// The id of the next list.
    next_listing: Cell<u64>,
    list_waiters: RefCell<Vec<ListWaiter>>,
    /// Cluster → when this worker last learned its complete `tools/list` (one entry per
    /// cluster the routes name).
    listed: RefCell<FastMap<String, u64>>,
}

/// The tools of one upstream as the glue reads and writes them: every access goes through
/// this worker's memo, which one read of the upstream's version keeps current.
pub type Catalog<'a> = UpstreamTools<'a, Versioned<'a, host::HostStore>>;

impl Shared {
    /// The tools of `upstream`, for one decision or one list answer: the first record read
    /// reads the upstream's version, and records unchanged since this worker last read
    /// them cost nothing more.
    pub fn catalog<'a>(&'a self, upstream: &'a str) -> Catalog<'a> {
        UpstreamTools {
            store: Versioned::new(&host::HostStore, &self.catalog_memo, version_key(upstream)),
            config: &self.config.tools,
            upstream,
        }
    }

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
            catalog_memo: RefCell::default(),
            waiters: RefCell::new(Vec::new()),
            awaiting_body: RefCell::new(Vec::new()),
            listings: RefCell::new(Vec::new()),
            next_listing: Cell::new(0),
            list_waiters: RefCell::new(Vec::new()),
            listed: RefCell::default(),
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
        self.expire_listings(now_ms);
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

impl Shared {
    /// A host answer to a call this worker dispatched: a page of a `tools/list`, or JWKS.
    pub fn on_http_call(&self, token: u32, body_size: usize) {
        let listing = {
            let mut listings = self.listings.borrow_mut();
            let index = listings.iter().position(|l| l.token == token);
            index.map(|i| listings.swap_remove(i))
        };
        match listing {
            Some(listing) => self.on_list_page(listing, body_size),
            None => self.on_fetched(token, body_size),
        }
    }

    /// Whether this worker learned the complete `tools/list` of `cluster` a moment ago.
    pub fn recently_listed(&self, cluster: &str, now_ms: impl FnOnce() -> u64) -> bool {
        // The clock is read only for a cluster this worker listed.
        self.listed
            .borrow()
            .get(cluster)
            .is_some_and(|at| now_ms().saturating_sub(*at) < RELIST_AFTER_MS)
    }

    /// Holds a request (`flow`, in `context_id`) until the `tools/list` of `cluster` is
    /// learned; starts that list with `fetch` unless one is in flight. The answer comes
    /// back to the current context's `on_http_call_response`. `Err`: the list cannot be
    /// sent (nothing waits then).
    pub fn await_list(
        &self,
        cluster: &str,
        fetch: ListFetch,
        context_id: u32,
        flow: Weak<dyn Resumable>,
    ) -> Result<(), String> {
        // With a Rate Limit Service, a request judged again calls it, and the SDK delivers
        // the answer to the context whose callback made the call: each request then waits
        // on its own list, answered in its own context.
        let shared = self.config.rate_limits.service.is_none();
        let in_flight = self
            .listings
            .borrow()
            .iter()
            .find(|l| shared && l.cluster == cluster)
            .map(|l| l.id);
        let listing = match in_flight {
            Some(id) => id,
            None => {
                let id = self.next_listing.get();
                self.next_listing.set(id.wrapping_add(1));
                let now_ms = host::now_ms();
                let deadline_ms = now_ms + self.config.tools.fetch_timeout_ms;
                let listing = Listing {
                    id,
                    cluster: cluster.to_owned(),
                    token: 0,
                    fetch,
                    deadline_ms,
                };
                self.request_page(listing, now_ms)?;
                id
            }
        };
        self.list_waiters.borrow_mut().push(ListWaiter {
            listing,
            context_id,
            flow,
        });
        Ok(())
    }

    /// Sends the current page of `listing`, with what is left of its time.
    fn request_page(&self, mut listing: Listing, now_ms: u64) -> Result<(), String> {
        let timeout = Duration::from_millis(listing.deadline_ms.saturating_sub(now_ms).max(1));
        let body = listing.fetch.body();
        let headers = listing.fetch.headers();
        listing.token =
            hostcalls::dispatch_http_call(&listing.cluster, headers, Some(&body), vec![], timeout)
                .map_err(|status| format!("cannot send it: {status:?}"))?;
        self.listings.borrow_mut().push(listing);
        Ok(())
    }

    /// Takes one page's answer: learns it as a client's list answer is learned, then asks
    /// for the next page or ends the list.
    fn on_list_page(&self, mut listing: Listing, body_size: usize) {
        let header = |name: &str| {
            hostcalls::get_map_value(MapType::HttpCallResponseHeaders, name)
                .ok()
                .flatten()
        };
        let body = hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, body_size)
            .ok()
            .flatten()
            .unwrap_or_default();
        let page = listing.fetch.read(
            header(":status").as_deref(),
            &header("content-type").unwrap_or_default(),
            &body,
        );
        let more = page.and_then(|page| {
            self.learn_list(&listing.cluster, &listing.fetch, &page.answer);
            listing.fetch.advance(page.next_cursor)
        });
        let (id, cluster) = (listing.id, listing.cluster.clone());
        let ended = match more {
            Ok(true) => {
                let now_ms = host::now_ms();
                if now_ms >= listing.deadline_ms {
                    Err("timed out".into())
                } else {
                    self.request_page(listing, now_ms).map(|()| false)
                }
            }
            Ok(false) => {
                self.listed
                    .borrow_mut()
                    .insert(cluster.clone(), host::now_ms());
                Ok(true)
            }
            Err(e) => Err(e),
        };
        match ended {
            Ok(false) => {}
            Ok(true) => self.listed_or_not(id, &cluster, Ok(())),
            Err(e) => self.listed_or_not(id, &cluster, Err(e)),
        }
    }

    /// Learns every tool of one page of `cluster`'s list, exactly as a client's list
    /// answer's tools are learned.
    fn learn_list(&self, cluster: &str, fetch: &ListFetch, answer: &[u8]) {
        let tools = self.catalog(cluster);
        filter_list(answer, &fetch.list_request(), &mut |name, element| {
            self.learn_listed_tool(&tools, name, element);
            true
        });
    }

    /// Fails the lists whose time is up (a page that never answered: the host's own
    /// timeout should come first, this one is the backstop).
    fn expire_listings(&self, now_ms: u64) {
        let expired: Vec<Listing> = {
            let mut listings = self.listings.borrow_mut();
            let (expired, kept) = listings
                .drain(..)
                .partition(|l: &Listing| l.deadline_ms + TICK_SLACK_MS <= now_ms);
            *listings = kept;
            expired
        };
        for listing in expired {
            self.listed_or_not(listing.id, &listing.cluster, Err("timed out".into()));
        }
    }

    /// Counts one list of a cold gateway, by result.
    pub fn count_list(&self, ok: bool) {
        let outcome = if ok { "ok" } else { "failed" };
        self.metrics
            .count(format!("mcp_guard.tools_fetches.mcp_result={outcome}"));
    }

    /// The list `listing` of `cluster` ended (`Err`: failed): counts it, and every request
    /// waiting for it is judged again or refused.
    fn listed_or_not(&self, listing: u64, cluster: &str, result: Result<(), String>) {
        if let Err(e) = &result {
            log(
                LogLevel::Warn,
                &format!("mcp-guard: cannot list the tools of upstream {cluster:?}: {e}"),
            );
        }
        self.count_list(result.is_ok());
        let woken: Vec<ListWaiter> = {
            let mut waiters = self.list_waiters.borrow_mut();
            let (woken, kept) = waiters.drain(..).partition(|w| w.listing == listing);
            *waiters = kept;
            woken
        };
        for waiter in woken {
            let Some(flow) = waiter.flow.upgrade() else {
                continue; // the client went away
            };
            if hostcalls::set_effective_context(waiter.context_id).is_ok() {
                flow.retry_after_list(result.clone());
            }
        }
    }
}

/// A list's deadline is checked on the root's tick, after the host's own timeout had its
/// chance to answer.
const TICK_SLACK_MS: u64 = 500;
