//! Reports decisions to the host: counters and histograms through the proxy-wasm metrics
//! API (names and labels come from [`crate::report::observe`]), the audit line, and the filter state
//! Envoy's access logs read (`%FILTER_STATE(wasm.mcp_guard.decision:PLAIN)%`).

use std::cell::{Cell, RefCell};

use proxy_wasm::hostcalls;
use proxy_wasm::types::{LogLevel, MetricType};

use super::host;
use super::log;
use crate::config::Config;
use crate::fasthash::FastMap;
use crate::gate::RequestHead;
use crate::identity::{Identity, IdentityKind};
use crate::protocol::jsonrpc::{Seen, Target};
use crate::report::observe::{self, AuditRecord, Observe, Outcome, RequestLabels, Tool};
use crate::report::reject::Code;

/// Metric ids by name, defined on first use: `define_metric` is a host call, so each name
/// is defined once per VM (the host gives every VM the same metric for a name).
#[derive(Default)]
pub struct Metrics {
    ids: RefCell<FastMap<String, u32>>,
    /// Metrics named by a few labels, cached by the labels: no name is built (nor hashed)
    /// once a combination is known.
    requests: RefCell<FastMap<RequestLabels, Option<u32>>>,
    call_durations: RefCell<FastMap<Tool, Option<u32>>>,
    rejections: RefCell<FastMap<Code, Option<u32>>>,
    /// Decisions seen, for sampling their timing.
    decisions: Cell<u32>,
}

/// One decision in this many is timed: the histogram's shape is the same, and the other
/// decisions save two host calls.
const DECISION_TIME_SAMPLE: u32 = 8;
/// The filter's own decision time, in µs.
const DECISION_TIME: &str = "mcp_guard.decision_time_us";

impl Metrics {
    /// The decision-time histogram is defined at once, so dashboards see it before the
    /// first sampled decision.
    pub fn new() -> Metrics {
        let metrics = Metrics::default();
        let _ = metrics.id(MetricType::Histogram, DECISION_TIME.into());
        metrics
    }

    pub fn record_decision_time(&self, us: u64) {
        self.record(DECISION_TIME.into(), us);
    }

    fn id(&self, kind: MetricType, name: String) -> Option<u32> {
        if let Some(id) = self.ids.borrow().get(&name) {
            return Some(*id);
        }
        match hostcalls::define_metric(kind, &name) {
            Ok(id) => {
                self.ids.borrow_mut().insert(name, id);
                Some(id)
            }
            Err(status) => {
                log(
                    LogLevel::Warn,
                    &format!("mcp-guard: cannot define metric {name}: {status:?}"),
                );
                None
            }
        }
    }

    pub fn count(&self, name: String) {
        self.count_by(name, 1);
    }

    pub fn count_by(&self, name: String, n: u64) {
        if let Some(id) = self.id(MetricType::Counter, name) {
            let _ = hostcalls::increment_metric(id, i64::try_from(n).unwrap_or(i64::MAX));
        }
    }

    /// The id of the metric `labels` name in `cache`, defined as `name()` on first use.
    fn labelled<K: Copy + Eq + std::hash::Hash>(
        &self,
        cache: &RefCell<FastMap<K, Option<u32>>>,
        labels: K,
        kind: MetricType,
        name: impl FnOnce() -> String,
    ) -> Option<u32> {
        let known = cache.borrow().get(&labels).copied();
        known.unwrap_or_else(|| {
            let id = self.id(kind, name());
            cache.borrow_mut().insert(labels, id);
            id
        })
    }

    /// Counts one message under `labels`.
    pub fn count_request(&self, observe: &Observe, labels: RequestLabels) {
        let id = self.labelled(&self.requests, labels, MetricType::Counter, || {
            observe.request_metric(labels)
        });
        if let Some(id) = id {
            let _ = hostcalls::increment_metric(id, 1);
        }
    }

    /// Counts a refusal by its reason.
    pub fn count_rejection(&self, code: Code) {
        let id = self.labelled(&self.rejections, code, MetricType::Counter, || {
            observe::rejection_metric(code)
        });
        if let Some(id) = id {
            let _ = hostcalls::increment_metric(id, 1);
        }
    }

    /// The duration histogram of calls to `tool` (its id, for [`Metrics::record_id`]).
    pub fn call_duration(&self, observe: &Observe, tool: &Target<'_>) -> Option<u32> {
        let label = observe.tool(Some(tool));
        self.labelled(&self.call_durations, label, MetricType::Histogram, || {
            observe.call_duration_metric(label)
        })
    }

    /// Records `value` in a histogram whose id is known (see [`Metrics::call_duration`]).
    pub fn record_id(&self, id: u32, value: u64) {
        let _ = hostcalls::record_metric(id, value);
    }

    /// Whether to time this decision (one in [`DECISION_TIME_SAMPLE`]).
    pub fn time_this_decision(&self) -> bool {
        let n = self.decisions.get().wrapping_add(1);
        self.decisions.set(n);
        n % DECISION_TIME_SAMPLE == 0
    }

    /// Sets a gauge (this worker's value; Envoy shows each worker's VM under one name).
    pub fn set(&self, name: &str, value: u64) {
        if let Some(id) = self.id(MetricType::Gauge, name.into()) {
            let _ = hostcalls::record_metric(id, value);
        }
    }

    pub fn record(&self, name: String, value: u64) {
        if let Some(id) = self.id(MetricType::Histogram, name) {
            let _ = hostcalls::record_metric(id, value);
        }
    }
}

/// One message's decision, as reported.
pub struct Report<'a> {
    pub seen: Option<&'a Seen>,
    pub outcome: Outcome,
    pub rule: Option<&'a str>,
    /// The rate limit that refused it.
    pub limit: Option<&'a str>,
    pub reason: Option<&'a str>,
    /// The call's raw arguments, when the audit log may record them.
    pub arguments: Option<&'a [u8]>,
}

/// Counts `report` and, with the audit log on, writes its line and filter state.
pub fn message(
    metrics: &Metrics,
    config: &Config,
    head: &RequestHead,
    identity: Option<&Identity>,
    report: &Report<'_>,
) {
    let observe = &config.observe;
    let method = report.seen.and_then(|s| s.method.as_deref());
    let target = report.seen.and_then(|s| s.target.as_ref());
    metrics.count_request(observe, observe.request_labels(report.seen, report.outcome));
    let Some(audit) = &observe.audit else {
        return;
    };
    let subject = identity
        .filter(|i| i.kind != IdentityKind::Anonymous)
        .map(|i| i.subject.as_str());
    let header = |name| {
        head.values(name)
            .next()
            .and_then(|v| std::str::from_utf8(v).ok())
    };
    let record = AuditRecord {
        time_ms: host::now_ms(),
        request_id: header("x-request-id"),
        session_id: header("mcp-session-id"),
        subject,
        method,
        target,
        outcome: Some(report.outcome),
        rule: report.rule,
        limit: report.limit,
        reason: report.reason,
        // With routing headers the final cluster is chosen after the filter: left out here
        // (the access log's %UPSTREAM_CLUSTER% has it).
        upstream: head
            .upstream
            .as_deref()
            .filter(|_| !config.upstream.routes()),
        arguments: report
            .arguments
            .filter(|_| audit.arguments)
            .and_then(|raw| audit.redacted(raw)),
        result: None,
    };
    log(
        LogLevel::Info,
        &format!("mcp-guard.audit {}", record.to_line()),
    );
    let tool = target.map(|t| t.value());
    for (key, value) in [
        ("mcp_guard.decision", Some(report.outcome.as_str())),
        ("mcp_guard.method", method),
        ("mcp_guard.tool", tool),
        ("mcp_guard.subject", subject),
        ("mcp_guard.rule", report.rule),
    ] {
        if let Some(value) = value {
            let _ = hostcalls::set_property(vec![key], Some(value.as_bytes()));
        }
    }
}

/// What scanning a tool's result found or did (`what`: `redacted`, `blocked` or `logged`),
/// by detector: counted and, with the audit log on, noted in a line of its own for the
/// call (`request_id`); never with the matched text.
pub fn result(
    metrics: &Metrics,
    config: &Config,
    request_id: Option<&str>,
    tool: &str,
    what: &'static str,
    counts: &[(&str, u32)],
    reason: Option<&str>,
) {
    let observe = &config.observe;
    for (detector, n) in counts {
        let name = observe.result_metric("matches", tool, Some(detector));
        metrics.count_by(name, u64::from(*n));
    }
    if what != "logged" {
        metrics.count(observe.result_metric(what, tool, None));
    }
    if observe.audit.is_none() {
        return;
    }
    let mut note = String::from(what);
    for (detector, n) in counts {
        note.push_str(&format!(" {detector}={n}"));
    }
    let target = Target::Tool(tool.into());
    let record = AuditRecord {
        time_ms: host::now_ms(),
        request_id,
        method: Some("tools/call"),
        target: Some(&target),
        reason,
        result: Some(&note),
        ..AuditRecord::default()
    };
    log(
        LogLevel::Info,
        &format!("mcp-guard.audit {}", record.to_line()),
    );
}
