//! What the pipeline answers: the verdict on a request head, the rule its held body is
//! read under, the body as read, and an approved body with what it owes.

use crate::limits::Charge;
use crate::policy::Decision;
use crate::protocol::head::RequestHead;
use crate::protocol::jsonrpc::{Body, Message, Seen};
use crate::protocol::revision::check_headers;
use crate::report::reject::{Code, LocalReply, Rejection};
use crate::response::listfilter::ListRequest;

/// What to do after the request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeadVerdict {
    /// Not for the gate (a path outside the MCP endpoints, allowed by config): forward as is.
    Forward,
    /// A request to an MCP endpoint: authenticate the caller, then forward it (`None`: it has
    /// no body) or hold it and hand its body to `Gate::parse`.
    Endpoint(Option<BodyRule>),
    /// Answer locally (the protected-resource metadata document).
    Respond(LocalReply),
    Reject(Rejection),
}

/// An approved body: the policy's decisions (shadow denials included, for the glue to
/// log), for a single list request the request whose answer is to be filtered, and what
/// the request owes the rate limits (for the glue to take before it forwards).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Approved<'p> {
    /// The decision on each message, with what the message was, in body order.
    pub decisions: Vec<(Seen, Decision<'p>)>,
    pub list: Option<ListRequest>,
    /// A single `subscriptions/listen`: its stream is filtered event by event for the caller.
    pub listen: bool,
    /// A single `tools/call` or `tasks/*` request while task ids are sealed
    /// (`ownership.tasks`): its answer's task ids are sealed to the caller.
    pub tasks: Option<TaskRequest>,
    pub charges: Vec<Charge>,
    /// The single request's `id` as JSON text, for a refusal after the policy's (only with
    /// rate-limit charges, sealed tasks, call checks or scanned results).
    pub id: Option<String>,
}

/// A single request whose answer may carry task ids, while task ids are sealed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskRequest {
    /// The client's task id (`params.taskId`, if any): the sealed one to give back.
    pub visible: Option<String>,
    /// The request's revision does not define its method (`tasks/result` in 2026-07-28): an
    /// id the caller does not own is blanked instead of refused, so the server answers the
    /// removed method as the revision prescribes, and never with another caller's task.
    pub removed: bool,
}

/// A held body, read: its JSON-RPC messages (`None` for an empty GET or DELETE body).
#[derive(Debug)]
pub struct Parsed<'b> {
    pub(super) body: Option<Body<'b>>,
}

impl<'b> Parsed<'b> {
    pub fn messages(&self) -> &[Message<'b>] {
        self.body.as_ref().map_or(&[], |b| b.messages())
    }

    /// The single request's `id` as JSON text (a batch has none to echo).
    pub(super) fn id(&self) -> Option<&'b str> {
        match &self.body {
            Some(Body::Single(m)) => m.id,
            _ => None,
        }
    }
}

/// `Mcp-Method` / `Mcp-Name` / `MCP-Protocol-Version` against the body.
pub(super) fn check_headers_of(parsed: &Parsed<'_>, head: &RequestHead) -> Result<(), Rejection> {
    let Some(body) = &parsed.body else {
        return Ok(());
    };
    check_headers(body, &head.routing)
        .map_err(|reason| Rejection::new(Code::HeaderMismatch, reason).with_id(parsed.id()))
}

/// How the held body is judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyRule {
    /// A POST: JSON-RPC messages for the policy.
    JsonRpc,
    /// A GET or DELETE: allowed only when it turns out to have no body.
    MustBeEmpty,
}
