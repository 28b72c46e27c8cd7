//! The gate: the request pipeline, calling each stage in the order a request meets them.
//!
//! The glue calls [`Gate::on_head`] with the request headers (protocol: path, method,
//! content type), [`Gate::metadata_reply`] and [`Gate::authenticate`] (identity), then, for
//! a held body, `Gate::parse` (protocol: messages, routing headers) and `Gate::judge`
//! (policy with the catalog's hints and pins, then what the request owes the limits);
//! [`Gate::approve`] is both, for callers that do not route in between. Nothing is
//! forwarded until the gate approves, and everything it cannot understand is refused. The
//! stages' details live in them; what the gate answers is in `verdict`.

mod verdict;

use crate::catalog::toolstate::{ToolLookup, ToolStatus};
use crate::config::{Access, Config};
use crate::identity::challenge::{self, AuthStep, Peer};
use crate::identity::{Identity, KeyLookup, VerifiedTokens};
use crate::policy::subscriptions::{check_listen, LISTEN};
use crate::policy::{Applicable, Decision};
use crate::protocol::head::check_content_type;
use crate::protocol::jsonrpc::{parse_body_for, Body, BodyError, Message, Target};
use crate::protocol::path::{self, Canonical};
use crate::protocol::revisions::{defines, Revision};
use crate::report::reject::{Code, Rejection};
use crate::response::listfilter::ListRequest;
use verdict::check_headers_of;

pub use crate::protocol::head::RequestHead;
pub use crate::protocol::headers::HeaderMap;
pub use crate::report::reject::LocalReply;
pub(crate) use verdict::Parsed;
pub use verdict::{Approved, BodyRule, HeadVerdict, TaskRequest};

/// The request gate for one configuration.
pub struct Gate<'c> {
    pub config: &'c Config,
}

impl<'c> Gate<'c> {
    /// The metadata document, when `head` asks for it (`GET` on either well-known path).
    pub fn metadata_reply(&self, head: &RequestHead) -> Option<HeadVerdict> {
        challenge::metadata_reply(self.config.auth.as_ref(), head).map(HeadVerdict::Respond)
    }

    /// Authenticates the caller of an MCP request. Without an `auth` section every caller
    /// is anonymous.
    pub fn authenticate(
        &self,
        head: &RequestHead,
        peer: &Peer,
        keys: &dyn KeyLookup,
        cache: &mut dyn VerifiedTokens,
        now: u64,
    ) -> AuthStep {
        challenge::authenticate(self.config.auth.as_ref(), head, peer, keys, cache, now)
    }

    /// The answer for a request that is still waiting for keys it cannot get.
    pub fn keys_unavailable(&self, provider: usize, unknown_kid: bool) -> Rejection {
        challenge::keys_unavailable(self.config.auth.as_ref(), provider, unknown_kid)
    }

    pub fn on_head(&self, head: &RequestHead) -> HeadVerdict {
        let raw_path = head.path();
        let canonical = match path::canonical(&raw_path) {
            Ok(canonical) => canonical,
            Err(e) => {
                let path = head.path_only();
                return reject(Code::InvalidRequest, format!("path {path:?}: {e}"));
            }
        };
        if !self.config.endpoints.is_match(&canonical.path) {
            return self.off_endpoint(head, &canonical);
        }
        let rule = match head.method().as_ref() {
            "POST" => return self.on_post_head(head),
            "GET" => ("GET stream", self.config.get_stream),
            "DELETE" => ("DELETE session", self.config.delete_session),
            other => {
                return reject(
                    Code::MethodNotAllowed,
                    format!("HTTP method {other} is not used by MCP"),
                )
            }
        };
        match rule {
            (what, Access::Deny) => reject(Code::Forbidden, format!("{what} is denied by policy")),
            (_, Access::Allow) if head.end_of_stream || head.content_length == Some(0) => {
                HeadVerdict::Endpoint(None)
            }
            (_, Access::Allow) => HeadVerdict::Endpoint(Some(BodyRule::MustBeEmpty)),
        }
    }

    /// A path that is no endpoint: forwarded uninspected when `pass_paths` lists it (never
    /// a path below an endpoint, which a server mounting the endpoint as a prefix serves,
    /// nor one that climbed with `..`) or `other_paths` allows every path; else refused.
    fn off_endpoint(&self, head: &RequestHead, canonical: &Canonical<'_>) -> HeadVerdict {
        let path = &canonical.path;
        let below_endpoint = path.match_indices('/').skip(1).any(|(i, _)| {
            path.get(..i)
                .is_some_and(|p| self.config.endpoints.is_match(p))
        });
        let passes = !canonical.climbed && !below_endpoint && self.config.pass_paths.is_match(path);
        if passes || self.config.other_paths == Access::Allow {
            return HeadVerdict::Forward;
        }
        let path = head.path_only();
        reject(
            Code::Forbidden,
            format!("path {path:?} is not an MCP endpoint"),
        )
    }

    fn on_post_head(&self, head: &RequestHead) -> HeadVerdict {
        if let Some(enc) = head.content_encoding() {
            if !enc.trim().eq_ignore_ascii_case("identity") {
                return reject(
                    Code::UnsupportedMediaType,
                    format!(
                        "Content-Encoding {enc:?} cannot be inspected; send the body uncompressed"
                    ),
                );
            }
        }
        if let Err(reason) = check_content_type(head.content_type().as_deref()) {
            return reject(Code::UnsupportedMediaType, reason);
        }
        match head.content_length {
            Some(n) if n > self.config.max_body_bytes => HeadVerdict::Reject(self.too_large()),
            _ if head.end_of_stream => reject(Code::ParseError, "empty request body"),
            _ => HeadVerdict::Endpoint(Some(BodyRule::JsonRpc)),
        }
    }

    /// The answer for a body that grew past `max_body_bytes`.
    pub fn too_large(&self) -> Rejection {
        Rejection::new(
            Code::PayloadTooLarge,
            format!("request body exceeds {} bytes", self.config.max_body_bytes),
        )
    }

    /// Judges a complete body held under `rule`, sent by `identity` (`tools`: what is known
    /// of the tools calls name): the decision on each message (shadow denials included, for
    /// the glue to log) and what an approved list answer is filtered by, or the refusal.
    /// `Gate::parse` then `Gate::judge`, for callers with no routing between them.
    pub fn approve(
        &self,
        rule: BodyRule,
        head: &RequestHead,
        identity: &Identity,
        body: &[u8],
        tools: &dyn ToolLookup,
    ) -> Result<Approved<'c>, Rejection> {
        let parsed = self.parse(rule, head, body)?;
        self.judge(&parsed, head, identity, body, tools)
    }

    /// Reads a complete body held under `rule`: its messages, checked against the routing
    /// headers. The glue routes on them before the policy runs (the route's cluster keys
    /// learned tools, rate limits and injected credentials).
    pub(crate) fn parse<'b>(
        &self,
        rule: BodyRule,
        head: &RequestHead,
        body: &'b [u8],
    ) -> Result<Parsed<'b>, Rejection> {
        match rule {
            BodyRule::MustBeEmpty if body.is_empty() => return Ok(Parsed { body: None }),
            BodyRule::MustBeEmpty => {
                return Err(Rejection::new(
                    Code::InvalidRequest,
                    format!("{} on an MCP endpoint must not carry a body", head.method()),
                ))
            }
            BodyRule::JsonRpc if body.is_empty() => {
                return Err(Rejection::new(Code::ParseError, "empty request body"))
            }
            BodyRule::JsonRpc => {}
        }
        let parsed = parse_body_for(body, head.routing.revision()).map_err(|e| match e {
            BodyError::Parse(reason) => Rejection::new(Code::ParseError, reason),
            BodyError::InvalidRequest { reason, id } => {
                Rejection::new(Code::InvalidRequest, reason).with_id(id.as_deref())
            }
            BodyError::InvalidParams { reason, id } => {
                Rejection::new(Code::InvalidParams, reason).with_id(id.as_deref())
            }
        })?;
        let parsed = Parsed { body: Some(parsed) };
        check_headers_of(&parsed, head)?;
        Ok(parsed)
    }

    /// The policy, argument constraints, pins and rate-limit charges for a parsed body.
    pub(crate) fn judge(
        &self,
        parsed: &Parsed<'_>,
        head: &RequestHead,
        identity: &Identity,
        body: &[u8],
        tools: &dyn ToolLookup,
    ) -> Result<Approved<'c>, Rejection> {
        let Some(messages) = &parsed.body else {
            return Ok(Approved::default());
        };
        let id = parsed.id();
        let rules = self.config.policy.applicable(identity);
        let list = match messages {
            Body::Single(m) => ListRequest::of_message(m),
            Body::Batch(_) => None,
        };
        let decisions = messages
            .messages()
            .iter()
            .enumerate()
            .map(
                |(i, message)| match self.decide(&rules, message, body, tools) {
                    Decision::Denied { reason, rule } => {
                        let reason = match messages {
                            Body::Batch(_) => format!("batch[{i}]: {reason}"),
                            Body::Single(_) => reason,
                        };
                        Err(Rejection::new(Code::Forbidden, reason)
                            .with_id(id)
                            .about(message.seen(), rule))
                    }
                    decision => Ok((message.seen(), decision)),
                },
            )
            .collect::<Result<Vec<_>, _>>()?;
        // A listen stream follows resources: the caller must be able to read each of them.
        let listen = matches!(messages, Body::Single(m) if m.method.as_deref() == Some(LISTEN));
        if listen {
            check_listen(&rules, body, id)?;
        }
        let seals_tasks = self.config.ownership.as_ref().is_some_and(|o| o.tasks);
        let tasks = match messages {
            Body::Single(m) if seals_tasks => task_request(m, head.routing.revision()),
            // Task ids are unsealed in single requests only: none may slip past in a batch.
            Body::Batch(ms) if seals_tasks => match ms.iter().position(names_a_task) {
                Some(i) => {
                    let reason = format!(
                        "batch[{i}]: tasks requests cannot be batched while task ids are sealed"
                    );
                    return Err(Rejection::new(Code::InvalidRequest, reason));
                }
                None => None,
            },
            _ => None,
        };
        let charges =
            self.config
                .rate_limits
                .charges_for(identity, messages.messages(), body, head);
        Ok(Approved {
            decisions,
            list,
            listen,
            id: id
                .filter(|_| {
                    !charges.is_empty()
                        || tasks.is_some()
                        || self.checks_calls(messages)
                        || self.config.contracts.scans_results()
                })
                .map(str::to_owned),
            tasks,
            charges,
        })
    }

    /// Whether approved calls are checked further by the glue (`Mcp-Param-*` headers,
    /// argument contracts, the write-back guard), whose refusals need the request's id.
    fn checks_calls(&self, messages: &Body<'_>) -> bool {
        (self.config.schema_checks.any() || self.config.contracts.guards_write_back())
            && messages
                .messages()
                .iter()
                .any(|m| m.method.as_deref() == Some("tools/call"))
    }

    /// One message's decision: the rules' and argument constraints' (with the hints of the
    /// tool a call names), then the tool's pin. Tool facts are looked up only when the
    /// configuration learns tools. A pin is enforced even in shadow mode.
    pub fn decide(
        &self,
        rules: &Applicable<'c>,
        message: &Message<'_>,
        body: &[u8],
        tools: &dyn ToolLookup,
    ) -> Decision<'c> {
        let status = match &message.target {
            Some(Target::Tool(name)) if self.config.learns_tools => tools.status(name),
            _ => ToolStatus::UNKNOWN,
        };
        let decision = rules.decide_with_arguments(message, body, &status.hints.effective());
        if matches!(decision, Decision::Denied { .. }) {
            return decision;
        }
        let (Some(Target::Tool(name)), Some(reason)) = (&message.target, status.pin.refusal())
        else {
            return decision;
        };
        Decision::Denied {
            rule: None,
            reason: format!("tool {name:?} {reason}"),
        }
    }
}

/// A request whose answer may carry task ids: a call (which may create a task) or a method
/// of the tasks extension, whatever its revision (a removed one is unsealed too: a server
/// that still serves it must not get an id the caller does not own).
fn task_request(message: &Message<'_>, header_revision: Option<&str>) -> Option<TaskRequest> {
    let method = message.method.as_deref()?;
    if method == "tools/call" {
        return Some(TaskRequest {
            visible: None,
            removed: false,
        });
    }
    if !names_a_task(message) {
        return None;
    }
    let revision = message
        .meta_protocol_version
        .as_deref()
        .or(header_revision)
        .and_then(Revision::parse);
    Some(TaskRequest {
        visible: message.task_id.as_deref().map(str::to_owned),
        removed: !defines(revision, method),
    })
}

/// A method of the tasks extension.
fn names_a_task(message: &Message<'_>) -> bool {
    message
        .method
        .as_deref()
        .is_some_and(|m| m.starts_with("tasks/"))
}

fn reject(code: Code, reason: impl Into<String>) -> HeadVerdict {
    HeadVerdict::Reject(Rejection::new(code, reason))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::Charge;

    impl<'c> Gate<'c> {
        /// The decisions alone, as most tests check them.
        fn on_body(
            &self,
            rule: BodyRule,
            head: &RequestHead,
            identity: &Identity,
            body: &[u8],
            tools: &dyn ToolLookup,
        ) -> Result<Vec<Decision<'c>>, Rejection> {
            self.approve(rule, head, identity, body, tools)
                .map(|approved| approved.decisions.into_iter().map(|(_, d)| d).collect())
        }
    }
    use crate::catalog::toolstate::NoTools;

    fn head(
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        end_of_stream: bool,
    ) -> RequestHead {
        RequestHead::for_test(method, path, headers, end_of_stream)
    }

    const JSON: &[(&str, &str)] = &[("content-type", "application/json")];

    fn verdict(config: &str, h: &RequestHead) -> HeadVerdict {
        let config = Config::from_json(config.as_bytes()).unwrap();
        Gate { config: &config }.on_head(h)
    }

    fn rejected(v: HeadVerdict) -> (Code, String) {
        match v {
            HeadVerdict::Reject(r) => (r.code, r.reason),
            other => panic!("expected a rejection, got {other:?}"),
        }
    }

    #[test]
    fn head_table() {
        let inspect = HeadVerdict::Endpoint(Some(BodyRule::JsonRpc));
        assert_eq!(verdict("{}", &head("POST", "/mcp", JSON, false)), inspect);
        assert_eq!(
            verdict(
                "{}",
                &head(
                    "POST",
                    "/mcp?session=1",
                    &[("content-type", "Application/JSON; charset=UTF-8")],
                    false
                )
            ),
            inspect
        );
        assert_eq!(
            verdict("{}", &head("GET", "/mcp", &[], true)),
            HeadVerdict::Endpoint(None)
        );
        assert_eq!(
            verdict("{}", &head("DELETE", "/mcp", &[], true)),
            HeadVerdict::Endpoint(None)
        );
        assert_eq!(
            verdict("{}", &head("GET", "/mcp", &[], false)),
            HeadVerdict::Endpoint(Some(BodyRule::MustBeEmpty))
        );
        assert_eq!(
            verdict(
                r#"{"other_paths":"allow"}"#,
                &head("POST", "/other", &[], false)
            ),
            HeadVerdict::Forward
        );
        assert_eq!(
            verdict(
                r#"{"endpoints":["/mcp","/messages/"]}"#,
                &head("POST", "/messages/?session_id=abc", JSON, false)
            ),
            inspect
        );

        let cases: Vec<(&str, RequestHead, Code, &str)> = vec![
            (
                "{}",
                head("GET", "/admin", &[], true),
                Code::Forbidden,
                "path \"/admin\" is not an MCP endpoint",
            ),
            (
                "{}",
                head("POST", "/mcp%2", JSON, false),
                Code::InvalidRequest,
                "path \"/mcp%2\": invalid percent-escape",
            ),
            (
                "{}",
                head("POST", "/%C0%AFmcp", JSON, false),
                Code::InvalidRequest,
                "path \"/%C0%AFmcp\": percent-escapes that do not decode to UTF-8",
            ),
            (
                r#"{"get_stream":"deny"}"#,
                head("GET", "/mcp", &[], true),
                Code::Forbidden,
                "GET stream is denied by policy",
            ),
            (
                r#"{"delete_session":"deny"}"#,
                head("DELETE", "/mcp", &[], true),
                Code::Forbidden,
                "DELETE session is denied by policy",
            ),
            (
                "{}",
                head("PUT", "/mcp", JSON, false),
                Code::MethodNotAllowed,
                "HTTP method PUT is not used by MCP",
            ),
            (
                "{}",
                head(
                    "POST",
                    "/mcp",
                    &[
                        ("content-type", "application/json"),
                        ("content-encoding", "gzip"),
                    ],
                    false,
                ),
                Code::UnsupportedMediaType,
                "Content-Encoding \"gzip\" cannot be inspected; send the body uncompressed",
            ),
            (
                "{}",
                head("POST", "/mcp", &[("content-type", "text/plain")], false),
                Code::UnsupportedMediaType,
                "Content-Type \"text/plain\" is not application/json",
            ),
            (
                "{}",
                head(
                    "POST",
                    "/mcp",
                    &[("content-type", "application/json; charset=latin1")],
                    false,
                ),
                Code::UnsupportedMediaType,
                "Content-Type parameter \"charset=latin1\" is not supported",
            ),
            (
                "{}",
                head("POST", "/mcp", &[], false),
                Code::UnsupportedMediaType,
                "a POST to an MCP endpoint needs Content-Type: application/json",
            ),
            (
                r#"{"max_body_bytes":10}"#,
                head(
                    "POST",
                    "/mcp",
                    &[
                        ("content-type", "application/json"),
                        ("content-length", "11"),
                    ],
                    false,
                ),
                Code::PayloadTooLarge,
                "request body exceeds 10 bytes",
            ),
            (
                "{}",
                head("POST", "/mcp", JSON, true),
                Code::ParseError,
                "empty request body",
            ),
        ];
        for (config, h, code, reason) in cases {
            assert_eq!(
                rejected(verdict(config, &h)),
                (code, reason.to_owned()),
                "{config} {h:?}"
            );
        }
        let identity = head(
            "POST",
            "/mcp",
            &[
                ("content-type", "application/json"),
                ("content-encoding", "identity"),
            ],
            false,
        );
        assert_eq!(verdict("{}", &identity), inspect);
    }

    #[test]
    fn paths_are_matched_canonically_and_pass_paths_stay_narrow() {
        let inspect = HeadVerdict::Endpoint(Some(BodyRule::JsonRpc));
        for path in [
            "/MCP", "/mcp/", "/Mcp/", "/mcp;x=1", "/mcp%2F", "/%6dcp", "//mcp",
        ] {
            assert_eq!(
                verdict("{}", &head("POST", path, JSON, false)),
                inspect,
                "{path}"
            );
        }
        let config =
            r#"{"endpoints":["/mcp","/Messages/"],"pass_paths":["/healthz","/static/*","/mcp/*"]}"#;
        assert_eq!(
            verdict(config, &head("POST", "/messages?session_id=1", JSON, false)),
            inspect
        );
        for path in ["/healthz", "/HEALTHZ/", "/static/app.js"] {
            assert_eq!(
                verdict(config, &head("GET", path, &[], true)),
                HeadVerdict::Forward,
                "{path}"
            );
        }
        // Below an endpoint (an axum `nest_service` serves it), or after `..`: never passed.
        for path in ["/mcp/x", "/static/../static/a", "/MCP/x"] {
            let (code, _) = rejected(verdict(config, &head("POST", path, JSON, false)));
            assert_eq!(code, Code::Forbidden, "{path}");
        }
        let allow = r#"{"other_paths":"allow"}"#;
        assert_eq!(
            verdict(allow, &head("POST", "/mcp/x", JSON, false)),
            HeadVerdict::Forward
        );
        assert_eq!(verdict(allow, &head("POST", "/MCP/", JSON, false)), inspect);
    }

    #[test]
    fn body_decisions() {
        let config = Config::from_json(br#"{"policy":{"deny":{"tools":["delete_*"]}}}"#).unwrap();
        let gate = Gate { config: &config };
        let anon = &Identity::anonymous();
        let post = head("POST", "/mcp", JSON, false);
        let ok = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"x"}}}"#;
        let global = Decision::Allowed {
            rule: Some("global"),
        };
        assert_eq!(
            gate.on_body(BodyRule::JsonRpc, &post, anon, ok, &NoTools),
            Ok(vec![global.clone()])
        );

        let denied = br#"{"jsonrpc":"2.0","id":"q","method":"tools/call","params":{"name":"delete_\u0066ile"}}"#;
        let r = gate
            .on_body(BodyRule::JsonRpc, &post, anon, denied, &NoTools)
            .unwrap_err();
        assert_eq!(
            (r.code, r.reason.as_str(), r.id.as_deref()),
            (
                Code::Forbidden,
                "tool \"delete_file\" is denied by policy",
                Some("\"q\"")
            )
        );

        let batch = br#"[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"}},{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"delete_file"}}]"#;
        let r = gate
            .on_body(BodyRule::JsonRpc, &post, anon, batch, &NoTools)
            .unwrap_err();
        assert_eq!(
            (r.code, r.reason.as_str(), r.id),
            (
                Code::Forbidden,
                "batch[1]: tool \"delete_file\" is denied by policy",
                None
            )
        );

        let mismatch = head(
            "POST",
            "/mcp",
            &[("content-type", "application/json"), ("mcp-name", "echo")],
            false,
        );
        let r = gate
            .on_body(BodyRule::JsonRpc, &mismatch, anon, denied, &NoTools)
            .unwrap_err();
        assert_eq!(
            (r.code, r.id.as_deref()),
            (Code::HeaderMismatch, Some("\"q\""))
        );

        let r = gate
            .on_body(BodyRule::JsonRpc, &post, anon, b"{", &NoTools)
            .unwrap_err();
        assert_eq!(r.code, Code::ParseError);
        let r = gate
            .on_body(
                BodyRule::JsonRpc,
                &post,
                anon,
                br#"{"jsonrpc":"2.0","id":5,"method":"tools/call"}"#,
                &NoTools,
            )
            .unwrap_err();
        assert_eq!((r.code, r.id.as_deref()), (Code::InvalidParams, Some("5")));
        let r = gate
            .on_body(
                BodyRule::JsonRpc,
                &post,
                anon,
                br#"{"jsonrpc":"2.0","id":5,"id":6,"method":"ping"}"#,
                &NoTools,
            )
            .unwrap_err();
        assert_eq!(r.code, Code::InvalidRequest);

        let get = head("GET", "/mcp", &[], false);
        assert_eq!(
            gate.on_body(BodyRule::MustBeEmpty, &get, anon, b"", &NoTools),
            Ok(vec![])
        );
        assert_eq!(
            gate.on_body(BodyRule::MustBeEmpty, &get, anon, b"{}", &NoTools)
                .unwrap_err()
                .code,
            Code::InvalidRequest
        );
    }

    #[test]
    fn methods_a_revision_removed_reach_the_server() {
        let config = Config::from_json(b"{}").unwrap();
        let gate = Gate { config: &config };
        let anon = &Identity::anonymous();
        let stateless = head(
            "POST",
            "/mcp",
            &[
                ("content-type", "application/json"),
                ("mcp-protocol-version", "2026-07-28"),
                ("mcp-method", "resources/subscribe"),
                // Unknown Mcp-Param headers are the server's business.
                ("mcp-param-region", "=?base64?not base64"),
            ],
            false,
        );
        let subscribe = br#"{"jsonrpc":"2.0","id":1,"method":"resources/subscribe","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#;
        assert!(gate
            .on_body(BodyRule::JsonRpc, &stateless, anon, subscribe, &NoTools)
            .is_ok());
        let session = head("POST", "/mcp", JSON, false);
        let old = br#"{"jsonrpc":"2.0","id":1,"method":"resources/subscribe","params":{}}"#;
        let r = gate
            .on_body(BodyRule::JsonRpc, &session, anon, old, &NoTools)
            .unwrap_err();
        assert_eq!(r.code, Code::InvalidParams);
    }

    #[test]
    fn approved_requests_carry_what_they_owe() {
        let config = Config::from_json(
            br#"{"policy":{"deny":{"tools":["rm"]}},"rate_limits":{"limits":[{"name":"s",
                "key":["session","tool"],"methods":["tools/call"],"bucket":{"capacity":5}}]}}"#,
        )
        .unwrap();
        let gate = Gate { config: &config };
        let anon = &Identity::anonymous();
        let post = head(
            "POST",
            "/mcp",
            &[
                ("content-type", "application/json"),
                ("mcp-session-id", "abc"),
            ],
            false,
        );
        let call = br#"{"jsonrpc":"2.0","id":"q","method":"tools/call","params":{"name":"echo"}}"#;
        let approved = gate
            .approve(BodyRule::JsonRpc, &post, anon, call, &NoTools)
            .unwrap();
        assert_eq!(
            approved.charges,
            [Charge {
                limit: 0,
                key: vec!["abc".into(), "echo".into()],
                cost: 1
            }]
        );
        assert_eq!(approved.id.as_deref(), Some("\"q\""));
        // A message no limit applies to owes nothing (and needs no id for a 429).
        let ping = br#"{"jsonrpc":"2.0","id":2,"method":"ping"}"#;
        let approved = gate
            .approve(BodyRule::JsonRpc, &post, anon, ping, &NoTools)
            .unwrap();
        assert_eq!((approved.charges.len(), approved.id), (0, None));
        // A request the policy refuses is refused before it owes anything.
        let rm = br#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"rm"}}"#;
        assert_eq!(
            gate.approve(BodyRule::JsonRpc, &post, anon, rm, &NoTools)
                .unwrap_err()
                .code,
            Code::Forbidden
        );
    }

    #[test]
    fn tasks_requests_are_unsealed_in_every_revision_and_never_batched() {
        let config = Config::from_json(
            br#"{"ownership":{"keys":["AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="]},
                "policy":{"deny":{"methods":["tasks/cancel"]}},
                "rate_limits":{"limits":[{"name":"polls","methods":["tasks/get"],"bucket":{"capacity":5}}]}}"#,
        )
        .unwrap();
        let gate = Gate { config: &config };
        let anon = &Identity::anonymous();
        let task = |method: &str, revision: &str| {
            format!(
                r#"{{"jsonrpc":"2.0","id":1,"method":"{method}","params":{{"taskId":"mg1.x","_meta":{{"io.modelcontextprotocol/protocolVersion":"{revision}"}}}}}}"#
            )
        };
        // As the SDKs send them: 2026-07-28 with its routing headers.
        let approve = |body: &str| {
            let value: serde_json::Value = serde_json::from_str(body).unwrap();
            let revision = value["params"]["_meta"]["io.modelcontextprotocol/protocolVersion"]
                .as_str()
                .unwrap_or_default();
            let method = value["method"].as_str().unwrap_or_default();
            let mut headers = vec![("content-type", "application/json")];
            if revision == "2026-07-28" {
                headers.extend([("mcp-protocol-version", revision), ("mcp-method", method)]);
                // A removed method names nothing: its Mcp-Name would be refused.
                if method != "tasks/result" {
                    headers.push(("mcp-name", "mg1.x"));
                }
            }
            let post = head("POST", "/mcp", &headers, false);
            gate.approve(BodyRule::JsonRpc, &post, anon, body.as_bytes(), &NoTools)
        };
        for (method, revision, removed) in [
            ("tasks/get", "2025-11-25", false),
            ("tasks/result", "2025-11-25", false),
            ("tasks/update", "2026-07-28", false),
            // Removed: still unsealed (blanked when foreign), so a lenient server never
            // acts on an id that is not the caller's.
            ("tasks/result", "2026-07-28", true),
            ("tasks/update", "2025-11-25", true),
        ] {
            let approved = approve(&task(method, revision)).unwrap();
            let want = TaskRequest {
                visible: Some("mg1.x".into()),
                removed,
            };
            assert_eq!(approved.tasks, Some(want), "{method} {revision}");
        }
        // The rules and the rate limits apply to tasks methods like to any other.
        let cancel = approve(&task("tasks/cancel", "2025-11-25")).unwrap_err();
        assert_eq!(cancel.code, Code::Forbidden);
        assert_eq!(
            approve(&task("tasks/get", "2025-11-25"))
                .unwrap()
                .charges
                .len(),
            1
        );
        let batch = format!(
            "[{},{}]",
            r#"{"jsonrpc":"2.0","id":0,"method":"tools/list"}"#,
            task("tasks/get", "2025-11-25")
        );
        let r = approve(&batch).unwrap_err();
        assert_eq!(
            (r.code, r.reason.as_str()),
            (
                Code::InvalidRequest,
                "batch[1]: tasks requests cannot be batched while task ids are sealed"
            )
        );
    }

    #[test]
    fn shadow_denials_pass_with_their_decision() {
        let config = Config::from_json(
            br#"{"policy":{"shadow":true,"deny":{"tools":["delete_*"]},
                "rules":[{"name":"devs","who":{"roles":["dev"]},"deny":{"tools":["echo"]}}]}}"#,
        )
        .unwrap();
        let gate = Gate { config: &config };
        let post = head("POST", "/mcp", JSON, false);
        let dev = Identity {
            roles: vec!["dev".into()],
            ..Identity::anonymous()
        };
        let batch = br#"[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"}},{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"delete_file"}}]"#;
        let shadow = |rule, reason: &str| Decision::ShadowDenied {
            rule: Some(rule),
            reason: reason.into(),
        };
        assert_eq!(
            gate.on_body(BodyRule::JsonRpc, &post, &dev, batch, &NoTools),
            Ok(vec![
                shadow("devs", "tool \"echo\" is denied by rule \"devs\""),
                shadow("global", "tool \"delete_file\" is denied by policy"),
            ])
        );
    }

    #[test]
    fn argument_constraints_deny_or_shadow() {
        let constraints = r#""arguments":{"send_*":[{"pointer":"/to","glob":["*@example.com"]}]}"#;
        let call = |to: &str| {
            format!(
                r#"{{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{{"name":"send_email","arguments":{{"to":{to}}}}}}}"#
            )
        };
        let post = head("POST", "/mcp", JSON, false);
        let anon = &Identity::anonymous();
        let reason = r#"argument "/to" of tool "send_email": "eve@evil.test" does not match ["*@example.com"]"#;
        // (policy, arguments, outcome): `Ok(decision)` or `Err(reason)` of a 403.
        #[rustfmt::skip]
        let cases: Vec<(String, &str, Result<Decision<'_>, &str>)> = vec![
            (format!("{{{constraints}}}"), r#""bob@example.com""#, Ok(Decision::Allowed { rule: Some("global") })),
            (format!("{{{constraints}}}"), r#""eve@evil.test""#, Err(reason)),
            (format!("{{{constraints}}}"), r#"["bob@example.com","eve@evil.test"]"#, Err(r#"argument "/to/1" of tool "send_email": "eve@evil.test" does not match ["*@example.com"]"#)),
            // A refusal by the rules stays as it is.
            (format!(r#"{{"deny":{{"tools":["send_email"]}},{constraints}}}"#), r#""eve@evil.test""#, Err(r#"tool "send_email" is denied by policy"#)),
            // A rule's shadow flag does not cover argument constraints...
            (format!(r#"{{"rules":[{{"name":"r","shadow":true,"allow":{{"tools":["*"]}}}}],{constraints}}}"#), r#""eve@evil.test""#, Err(reason)),
            // ...the policy-wide one does.
            (format!(r#"{{"shadow":true,{constraints}}}"#), r#""eve@evil.test""#, Ok(Decision::ShadowDenied { rule: None, reason: reason.into() })),
        ];
        for (policy, to, want) in cases {
            let config = Config::from_json(format!(r#"{{"policy":{policy}}}"#).as_bytes()).unwrap();
            let gate = Gate { config: &config };
            let got = gate
                .on_body(
                    BodyRule::JsonRpc,
                    &post,
                    anon,
                    call(to).as_bytes(),
                    &NoTools,
                )
                .map_err(|r| {
                    assert_eq!((r.code, r.id.as_deref()), (Code::Forbidden, Some("7")));
                    r.reason
                });
            let want = want.map(|d| vec![d]).map_err(str::to_owned);
            assert_eq!(got, want, "{policy} {to}");
        }
    }

    #[test]
    fn calls_are_judged_by_learned_hints_and_pins() {
        use crate::catalog::toolstate::UpstreamTools;
        use crate::state::{reserve, MemoryStore};

        let config = Config::from_json(
            br#"{"policy":{"rules":[
                {"name":"safe","allow":{"tools":["*"],"annotations":{"destructiveHint":false}}},
                {"name":"admins","who":{"roles":["admin"]},"allow":{"tools":["*"]}}]},
              "tools":{"pins":{"up":{"*":"trust_on_first_use"}}}}"#,
        )
        .unwrap();
        let gate = Gate { config: &config };
        let store = MemoryStore::default();
        reserve(&store).unwrap();
        let tools = UpstreamTools {
            store: &store,
            config: &config.tools,
            upstream: "up",
        };
        let post = head("POST", "/mcp", JSON, false);
        let anon = &Identity::anonymous();
        let admin = &Identity {
            roles: vec!["admin".into()],
            ..Identity::anonymous()
        };
        let outcome = |who: &Identity, tool: &str| {
            let body = format!(
                r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"{tool}"}}}}"#
            );
            match gate.on_body(BodyRule::JsonRpc, &post, who, body.as_bytes(), &tools) {
                Ok(_) => "allow".to_owned(),
                Err(r) => {
                    assert_eq!((r.code, r.id.as_deref()), (Code::Forbidden, Some("1")));
                    r.reason
                }
            }
        };
        let learn = |element: &str| {
            let def = crate::catalog::tooldef::ToolDef::parse(element.as_bytes()).unwrap();
            tools.learn(&def.name, def.hints, def.sha256)
        };
        let unverified = r#"tool "read" is pinned and its definition was not verified yet: list the tools through the gateway first"#;
        assert_eq!(outcome(admin, "read"), unverified);
        learn(r#"{"name":"read","annotations":{"readOnlyHint":true}}"#);
        learn(r#"{"name":"rm","annotations":{"destructiveHint":true}}"#);
        assert_eq!(outcome(anon, "read"), "allow");
        assert_eq!(outcome(anon, "rm"), r#"no rule allows tool "rm""#);
        assert_eq!(outcome(admin, "rm"), "allow");
        // The definition changes: nobody may call it, until it is back.
        learn(
            r#"{"name":"read","description":"now also writes","annotations":{"readOnlyHint":true}}"#,
        );
        let drifted = r#"tool "read" is pinned and its definition changed (pin mismatch); refused until the server serves the pinned definition again"#;
        assert_eq!(outcome(anon, "read"), drifted);
        assert_eq!(outcome(admin, "read"), drifted);
        learn(r#"{"name":"read","annotations":{"readOnlyHint":true}}"#);
        assert_eq!(outcome(anon, "read"), "allow");
        // Without annotation conditions, pins or schema checks the lookup is never consulted.
        struct Panics;
        impl ToolLookup for Panics {
            fn status(&self, _: &str) -> ToolStatus {
                panic!("looked up")
            }
        }
        let plain = Config::from_json(br#"{"tools":{"validate_mcp_param":false}}"#).unwrap();
        let body = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x"}}"#;
        assert!(Gate { config: &plain }
            .on_body(BodyRule::JsonRpc, &post, anon, body, &Panics)
            .is_ok());
    }
}
