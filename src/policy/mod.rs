//! Policy: the decision for each JSON-RPC message, given who calls: rules, each for some
//! callers, with allow and deny lists, then argument constraints (`arguments`), over glob
//! patterns ([`glob`]). It never reads headers or bodies itself, nor learns tools: it is
//! handed the parsed message, the [`Identity`] and the tool's hints.
//!
//! - A rule applies to a caller when it has no `who` (everyone, anonymous included) or any
//!   of its selectors matches the [`Identity`]: a subject pattern (the anonymous caller has
//!   no subject), any role, any scope, the API key's name (API-key callers only), any value
//!   of a mapped claim, or `authenticated` (every caller that is not anonymous).
//! - A rule allows a message when its method is in the rule's allowed methods and, if the
//!   message names a tool, prompt or resource, that name matches the rule's list of its kind.
//! - A rule denies a message when its method, or its target, matches a deny list.
//! - A list's `annotations` narrows its `tools` patterns to tools whose hints (learned from
//!   the upstream's `tools/list` answers, else the MCP defaults: see [`crate::catalog::tooldef`])
//!   have the given values.
//! - Among the rules that apply: any denial refuses (deny wins), else any allowing rule lets
//!   it pass, else `initialize`, `ping` and `notifications/*` pass (every authenticated
//!   caller needs them), else it is refused because no rule allows it. Clients' responses
//!   always pass.
//! - Shadow rules report their denials instead of enforcing them; with the policy-wide
//!   shadow flag, "no rule allows" is reported too. An enforced denial beats a shadow one.
//!   A shadow rule's allow lists count like any other's.
//! - A `tools/call` the rules let pass is then checked against the argument constraints
//!   (`arguments`): a violation is a denial (no rule named), or a shadow denial when the
//!   whole policy is in shadow mode; rules' own shadow flags do not apply to it.

pub(crate) mod arguments;
pub(crate) mod config;
pub mod glob;
pub mod subscriptions;

use crate::catalog::tooldef::{Effective, Hints};
use crate::fasthash::FastMap;
use crate::identity::{Identity, IdentityKind};
use crate::policy::arguments::Arguments;
use crate::policy::glob::{Glob, PatternSet};
use crate::protocol::jsonrpc::{Kind, Message, Target};

/// Methods a named rule's `allow.tools` implies.
pub const TOOL_METHODS: &[&str] = &["tools/call", "tools/list"];
/// Methods a named rule's `allow.prompts` implies.
pub const PROMPT_METHODS: &[&str] = &["prompts/get", "prompts/list"];
/// Methods a named rule's `allow.resources` implies.
pub const RESOURCE_METHODS: &[&str] = &[
    "resources/read",
    "resources/subscribe",
    "resources/unsubscribe",
    "resources/list",
    "resources/templates/list",
];

/// Name of the rule made of the top-level `policy.allow` / `policy.deny`; reserved.
pub const GLOBAL_RULE: &str = "global";

/// Patterns for each thing a message can name.
#[derive(Debug, Clone, Default)]
pub struct Lists {
    pub methods: PatternSet,
    pub tools: PatternSet,
    pub prompts: PatternSet,
    pub resources: PatternSet,
    /// Hint values a tool must have for `tools` to match it (`None` in a field: any).
    pub annotations: Option<Hints>,
}

impl Lists {
    /// Whether `target` is in the list of its kind; a tool also needs the hints asked for.
    fn matches(&self, target: &Target<'_>, hints: &Effective) -> bool {
        match target {
            Target::Tool(name) => {
                self.tools.is_match(name)
                    && self.annotations.is_none_or(|wanted| admits(&wanted, hints))
            }
            Target::Prompt(name) => self.prompts.is_match(name),
            Target::Resource(uri) => self.resources.is_match(uri),
        }
    }
}

/// Whether a tool with `hints` has every value `wanted` names.
fn admits(wanted: &Hints, hints: &Effective) -> bool {
    [
        (wanted.read_only, hints.read_only),
        (wanted.destructive, hints.destructive),
        (wanted.idempotent, hints.idempotent),
        (wanted.open_world, hints.open_world),
    ]
    .iter()
    .all(|(want, have)| want.is_none_or(|w| w == *have))
}

/// What `target` is called in reasons.
fn kind_name(target: &Target<'_>) -> &'static str {
    match target {
        Target::Tool(_) => "tool",
        Target::Prompt(_) => "prompt",
        Target::Resource(_) => "resource",
    }
}

/// Methods every caller that passed authentication may send when no rule says otherwise:
/// without them no session can start or stay alive.
fn allowed_by_default(method: &str) -> bool {
    matches!(method, "initialize" | "ping") || method.starts_with("notifications/")
}

/// The part of an identity a `who` pattern is matched against; `C` names a claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selector<C = String> {
    Subject,
    Role,
    Scope,
    ApiKey,
    Claim(C),
}

impl Selector {
    fn as_ref(&self) -> Selector<&str> {
        match self {
            Selector::Subject => Selector::Subject,
            Selector::Role => Selector::Role,
            Selector::Scope => Selector::Scope,
            Selector::ApiKey => Selector::ApiKey,
            Selector::Claim(name) => Selector::Claim(name),
        }
    }
}

/// The callers a rule applies to: any pattern matches, or `authenticated` and the caller
/// is not anonymous.
#[derive(Debug, Clone, Default)]
pub struct Who {
    pub patterns: Vec<(Selector, Glob)>,
    pub authenticated: bool,
}

impl Who {
    /// Whether this selects `identity`: the test the policy's index makes, for one `who`.
    pub fn matches(&self, identity: &Identity) -> bool {
        (self.authenticated && identity.kind != IdentityKind::Anonymous)
            || facets(identity).any(|(selector, value)| {
                self.patterns
                    .iter()
                    .any(|(s, glob)| s.as_ref() == selector && glob.is_match(value))
            })
    }
}

#[derive(Debug, Clone)]
pub struct Rule {
    pub name: String,
    /// `None`: everyone, anonymous included.
    pub who: Option<Who>,
    pub allow: Lists,
    pub deny: Lists,
    pub shadow: bool,
}

impl Rule {
    /// Why this rule denies the message, if it does.
    fn denial(
        &self,
        method: &str,
        target: Option<&Target<'_>>,
        hints: &Effective,
    ) -> Option<String> {
        let (what, value) = if self.deny.methods.is_match(method) {
            ("method", method)
        } else {
            let target = target?;
            let denied = self.deny.matches(target, hints);
            denied.then_some((kind_name(target), target.value()))?
        };
        // The global rule keeps the reasons of the allow/deny lists it replaces.
        Some(if self.name == GLOBAL_RULE {
            format!("{what} {value:?} is denied by policy")
        } else {
            format!("{what} {value:?} is denied by rule {:?}", self.name)
        })
    }

    fn allows(&self, method: &str, target: Option<&Target<'_>>, hints: &Effective) -> bool {
        self.allow.methods.is_match(method) && target.is_none_or(|t| self.allow.matches(t, hints))
    }
}

/// The outcome for one message, for the gate to enforce and the glue to log and count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision<'p> {
    /// Passes: allowed by the named rule, or (`None`) a client's response or a method every
    /// caller may send.
    Allowed { rule: Option<&'p str> },
    /// Refused by the named rule, or (`None`) because no rule allows it or an argument
    /// violates a constraint.
    Denied {
        rule: Option<&'p str>,
        reason: String,
    },
    /// Passes, but would have been refused: a shadow rule denies it (or, `None`, no rule
    /// allows it and the whole policy is in shadow mode).
    ShadowDenied {
        rule: Option<&'p str>,
        reason: String,
    },
}

/// The compiled rules, indexed by the exact selector values they name so that a request
/// only looks at the rules that can apply to its caller.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// In configuration order (the global rule first); indexes below refer to it.
    rules: Vec<Rule>,
    /// The policy-wide shadow flag (already folded into each rule's `shadow`).
    shadow: bool,
    everyone: Vec<usize>,
    authenticated: Vec<usize>,
    /// Literal patterns by their text: one hash lookup per identity value.
    exact: FastMap<String, Vec<(Selector, usize)>>,
    /// Patterns with wildcards, tried against the identity values of their selector.
    globs: Vec<(Selector, Glob, usize)>,
    /// Argument constraints per tool, for every caller.
    arguments: Arguments,
    /// Some list has `annotations`: calls need their tool's hints.
    uses_annotations: bool,
}

impl Policy {
    /// Indexes `rules`; `shadow` turns every rule into a shadow rule.
    pub fn new(mut rules: Vec<Rule>, shadow: bool) -> Policy {
        let mut policy = Policy {
            shadow,
            ..Policy::default()
        };
        for (id, rule) in rules.iter_mut().enumerate() {
            rule.shadow |= shadow;
            let Some(who) = &rule.who else {
                policy.everyone.push(id);
                continue;
            };
            if who.authenticated {
                policy.authenticated.push(id);
            }
            for (selector, glob) in &who.patterns {
                match glob.as_literal() {
                    Some(text) => policy
                        .exact
                        .entry(text)
                        .or_default()
                        .push((selector.clone(), id)),
                    None => policy.globs.push((selector.clone(), glob.clone(), id)),
                }
            }
        }
        policy.uses_annotations = rules
            .iter()
            .any(|r| r.allow.annotations.is_some() || r.deny.annotations.is_some());
        policy.rules = rules;
        policy
    }

    /// Whether decisions depend on tools' hints (else any hints may be passed).
    pub fn uses_annotations(&self) -> bool {
        self.uses_annotations
    }

    /// This policy with argument constraints.
    pub fn with_arguments(self, arguments: Arguments) -> Policy {
        Policy { arguments, ..self }
    }

    pub fn arguments(&self) -> &Arguments {
        &self.arguments
    }

    /// The rules in configuration order, the global rule (if any) first.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Whether the whole policy is in shadow mode (`policy.shadow`).
    pub fn shadow(&self) -> bool {
        self.shadow
    }

    /// Tool names the rules list exactly: the tools metrics label by name.
    pub fn tool_literals(&self) -> impl Iterator<Item = String> + '_ {
        self.rules
            .iter()
            .flat_map(|r| r.allow.tools.literals().chain(r.deny.tools.literals()))
            .map(str::to_owned)
    }

    /// The rules that apply to `identity`, in configuration order.
    pub fn applicable(&self, identity: &Identity) -> Applicable<'_> {
        let mut ids = self.everyone.clone();
        if identity.kind != IdentityKind::Anonymous {
            ids.extend(&self.authenticated);
        }
        for (selector, value) in facets(identity) {
            if let Some(hits) = self.exact.get(value) {
                ids.extend(
                    hits.iter()
                        .filter(|(s, _)| s.as_ref() == selector)
                        .map(|(_, id)| id),
                );
            }
            ids.extend(
                self.globs
                    .iter()
                    .filter(|(s, g, _)| s.as_ref() == selector && g.is_match(value))
                    .map(|(_, _, id)| id),
            );
        }
        crate::sort::sort(&mut ids);
        ids.dedup();
        Applicable { policy: self, ids }
    }
}

/// Every value of `identity` a `who` pattern may match, with its selector.
fn facets(identity: &Identity) -> impl Iterator<Item = (Selector<&str>, &str)> {
    let subject = (identity.kind != IdentityKind::Anonymous)
        .then_some((Selector::Subject, identity.subject.as_str()));
    let api_key = match &identity.kind {
        IdentityKind::ApiKey { name } => Some((Selector::ApiKey, name.as_str())),
        _ => None,
    };
    let claims = identity.claims.iter().flat_map(|(name, values)| {
        values
            .iter()
            .map(move |v| (Selector::Claim(name.as_str()), v.as_str()))
    });
    subject
        .into_iter()
        .chain(api_key)
        .chain(identity.roles.iter().map(|r| (Selector::Role, r.as_str())))
        .chain(
            identity
                .scopes
                .iter()
                .map(|s| (Selector::Scope, s.as_str())),
        )
        .chain(claims)
}

/// The rules that apply to one caller; computed once per request, used for each message.
#[derive(Debug, Clone)]
pub struct Applicable<'p> {
    policy: &'p Policy,
    ids: Vec<usize>,
}

impl<'p> Applicable<'p> {
    fn rules(&self) -> impl Iterator<Item = &'p Rule> + '_ {
        self.ids.iter().filter_map(|&id| self.policy.rules.get(id))
    }

    /// The decision for `message`; `hints` are those of the tool it names, if it names one.
    pub fn decide(&self, message: &Message<'_>, hints: &Effective) -> Decision<'p> {
        // A client's reply to a server request names nothing the policy governs.
        if message.kind == Kind::Response {
            return Decision::Allowed { rule: None };
        }
        let method = message.method.as_deref().unwrap_or_default();
        let target = message.target.as_ref();
        let mut allowed_by = None;
        let mut shadow_denial = None;
        for rule in self.rules() {
            match rule.denial(method, target, hints) {
                Some(reason) if !rule.shadow => {
                    return Decision::Denied {
                        rule: Some(&rule.name),
                        reason,
                    }
                }
                Some(reason) => {
                    shadow_denial.get_or_insert(Decision::ShadowDenied {
                        rule: Some(&rule.name),
                        reason,
                    });
                }
                None if allowed_by.is_none() && rule.allows(method, target, hints) => {
                    allowed_by = Some(rule.name.as_str());
                }
                None => {}
            }
        }
        if let Some(decision) = shadow_denial {
            return decision;
        }
        if allowed_by.is_some() || allowed_by_default(method) {
            return Decision::Allowed { rule: allowed_by };
        }
        let reason = self.not_allowed(method, target);
        if self.policy.shadow {
            Decision::ShadowDenied { rule: None, reason }
        } else {
            Decision::Denied { rule: None, reason }
        }
    }

    /// The decision for `message`, read from `body`: the rules' ([`Applicable::decide`]),
    /// then, for a `tools/call` they let pass, the argument constraints. An enforced
    /// argument violation beats a rule's shadow denial.
    pub fn decide_with_arguments(
        &self,
        message: &Message<'_>,
        body: &[u8],
        hints: &Effective,
    ) -> Decision<'p> {
        let decision = self.decide(message, hints);
        let tool = match &message.target {
            Some(Target::Tool(tool)) if message.method.as_deref() == Some("tools/call") => tool,
            _ => return decision,
        };
        if matches!(decision, Decision::Denied { .. }) {
            return decision;
        }
        let arguments = message.arguments.clone();
        let Some(reason) = self.policy.arguments.violation(tool, body, arguments) else {
            return decision;
        };
        match decision {
            _ if !self.policy.shadow => Decision::Denied { rule: None, reason },
            Decision::ShadowDenied { .. } => decision,
            _ => Decision::ShadowDenied { rule: None, reason },
        }
    }

    /// Why no rule allows the message: its method, or else its target.
    fn not_allowed(&self, method: &str, target: Option<&Target<'_>>) -> String {
        let method_allowed = self.rules().any(|r| r.allow.methods.is_match(method));
        match target {
            Some(t) if method_allowed => {
                format!("no rule allows {} {:?}", kind_name(t), t.value())
            }
            _ => format!("no rule allows method {method:?}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::config::Config;
    use crate::protocol::jsonrpc::parse_body;

    fn policy(json: &str) -> Policy {
        Config::from_json(json.as_bytes()).unwrap().policy
    }

    fn jwt(subject: &str, roles: &[&str], scopes: &[&str], claims: &[(&str, &[&str])]) -> Identity {
        let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        Identity {
            kind: IdentityKind::Jwt {
                provider: "idp".into(),
            },
            subject: subject.into(),
            roles: strings(roles),
            scopes: strings(scopes),
            claims: claims
                .iter()
                .map(|(k, v)| (k.to_string(), strings(v)))
                .collect::<BTreeMap<_, _>>(),
            expires_at: None,
        }
    }

    fn api_key(name: &str) -> Identity {
        Identity {
            kind: IdentityKind::ApiKey { name: name.into() },
            ..jwt(name, &[], &[], &[])
        }
    }

    fn call(method: &str, name: &str) -> String {
        let key = if method.starts_with("resources/") {
            "uri"
        } else {
            "name"
        };
        format!(r#"{{"jsonrpc":"2.0","id":1,"method":"{method}","params":{{"{key}":"{name}"}}}}"#)
    }

    fn bare(method: &str) -> String {
        format!(r#"{{"jsonrpc":"2.0","id":1,"method":"{method}"}}"#)
    }

    /// The decision as one line: `allow <rule>`, `deny <rule>: <reason>`, `shadow <rule>: <reason>`
    /// (`-` for no rule).
    fn decide(policy: &Policy, identity: &Identity, body: &str) -> String {
        let parsed = parse_body(body.as_bytes()).unwrap();
        let rule = |r: Option<&str>| r.unwrap_or("-").to_owned();
        let unknown = Hints::UNKNOWN.effective();
        match policy
            .applicable(identity)
            .decide(&parsed.messages()[0], &unknown)
        {
            Decision::Allowed { rule: r } => format!("allow {}", rule(r)),
            Decision::Denied { rule: r, reason } => format!("deny {}: {reason}", rule(r)),
            Decision::ShadowDenied { rule: r, reason } => format!("shadow {}: {reason}", rule(r)),
        }
    }

    fn check(policy: &Policy, cases: &[(&Identity, String, &str)]) {
        for (identity, body, want) in cases {
            assert_eq!(
                decide(policy, identity, body),
                *want,
                "{body} as {identity:?}"
            );
        }
    }

    #[test]
    fn global_rule_keeps_the_allow_deny_lists() {
        let p = policy(
            r#"{"policy":{
            "allow":{"methods":["initialize","notifications/*","tools/*","prompts/get","resources/read"],
                     "tools":["echo","db_*"],"prompts":["greet"],"resources":["demo://*"]},
            "deny":{"tools":["db_drop"],"resources":["demo://secret/*"]}}}"#,
        );
        let anon = Identity::anonymous();
        let a = &anon;
        #[rustfmt::skip]
        let cases = [
            (a, call("tools/call", "echo"), "allow global"),
            (a, call("tools/call", "db_query"), "allow global"),
            (a, call("tools/call", "db_drop"), r#"deny global: tool "db_drop" is denied by policy"#),
            (a, call("tools/call", "rm"), r#"deny -: no rule allows tool "rm""#),
            (a, call("tools/call", "\\u0064b_drop"), r#"deny global: tool "db_drop" is denied by policy"#),
            (a, call("tools/call", "Echo"), r#"deny -: no rule allows tool "Echo""#),
            (a, call("tools/call", "echo\\u0000"), "deny -: no rule allows tool \"echo\\0\""),
            (a, bare("tools/list"), "allow global"),
            // Not in allow.methods, but every caller may ping.
            (a, bare("ping"), "allow -"),
            (a, bare("logging/setLevel"), r#"deny -: no rule allows method "logging/setLevel""#),
            (a, r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#.into(), "allow global"),
            (a, r#"{"jsonrpc":"2.0","id":7,"result":{}}"#.into(), "allow -"),
            (a, call("prompts/get", "greet"), "allow global"),
            (a, call("prompts/get", "leak"), r#"deny -: no rule allows prompt "leak""#),
            (a, call("resources/read", "demo://readme"), "allow global"),
            (a, call("resources/read", "demo://secret/k"), r#"deny global: resource "demo://secret/k" is denied by policy"#),
        ];
        check(&p, &cases);
        // An empty policy allows everything; a deny list alone allows all but what it names.
        let anything = policy("{}");
        check(&anything, &[(a, call("tools/call", "rm"), "allow global")]);
        let all_but_rm = policy(r#"{"policy":{"deny":{"tools":["rm"]}}}"#);
        #[rustfmt::skip]
        let cases = [
            (a, call("tools/call", "rm"), r#"deny global: tool "rm" is denied by policy"#),
            (a, call("prompts/get", "rm"), "allow global"),
        ];
        check(&all_but_rm, &cases);
    }

    const RULES: &str = r#"{"policy":{"rules":[
        {"name":"payments-devs","who":{"roles":["dev"],"claims":{"team":["payments"]}},
         "allow":{"tools":["db_*"],"prompts":["report_*"],"resources":["db://payments/*"]},
         "deny":{"tools":["db_drop*"]}},
        {"name":"readers","who":{"authenticated":true},"allow":{"methods":["tools/list","resources/list"]}},
        {"name":"services","who":{"subjects":["svc-*"]},"allow":{"tools":["echo"]}},
        {"name":"ci","who":{"api_keys":["ci-bot"]},"allow":{"tools":["build_*"]},"deny":{"methods":["prompts/*"]}},
        {"name":"admins","who":{"scopes":["mcp:admin"]},"allow":{"tools":["*"]}},
        {"name":"no-Echo","deny":{"tools":["Echo"]}}
    ]}}"#;

    #[test]
    fn rules_by_selector() {
        let p = policy(RULES);
        let dev = jwt("alice", &["dev"], &[], &[]);
        let payments = jwt("bob", &[], &[], &[("team", &["ops", "payments"])]);
        let svc = jwt("svc-build", &[], &[], &[]);
        let ci = api_key("ci-bot");
        let ci_jwt = jwt("ci-bot", &[], &[], &[]);
        let admin_dev = jwt("carol", &["dev"], &["read", "mcp:admin"], &[]);
        let anon = Identity::anonymous();
        let traps = jwt(
            "dave",
            &["Dev", "dév"],
            &["mcp:Admin"],
            &[("team", &["Payments"])],
        );
        #[rustfmt::skip]
        let cases = [
            (&dev, call("tools/call", "db_query"), "allow payments-devs"),
            (&dev, call("tools/call", "db_drop_all"), r#"deny payments-devs: tool "db_drop_all" is denied by rule "payments-devs""#),
            (&payments, call("tools/call", "db_query"), "allow payments-devs"),
            // Implied methods; overlapping rules report the first in configuration order.
            (&dev, bare("tools/list"), "allow payments-devs"),
            (&dev, call("prompts/get", "report_q1"), "allow payments-devs"),
            (&dev, bare("prompts/list"), "allow payments-devs"),
            (&dev, call("resources/read", "db://payments/t"), "allow payments-devs"),
            (&dev, bare("resources/templates/list"), "allow payments-devs"),
            (&dev, call("resources/read", "db://hr/t"), r#"deny -: no rule allows resource "db://hr/t""#),
            (&dev, call("tools/call", "echo"), r#"deny -: no rule allows tool "echo""#),
            (&dev, bare("completion/complete"), r#"deny -: no rule allows method "completion/complete""#),
            (&svc, call("tools/call", "echo"), "allow services"),
            (&svc, bare("tools/list"), "allow readers"),
            (&svc, call("prompts/get", "x"), r#"deny -: no rule allows method "prompts/get""#),
            (&ci, call("tools/call", "build_app"), "allow ci"),
            (&ci, call("prompts/get", "x"), r#"deny ci: method "prompts/get" is denied by rule "ci""#),
            // The same name, but not an API key.
            (&ci_jwt, call("tools/call", "build_app"), r#"deny -: no rule allows method "tools/call""#),
            // Deny wins across rules, and names are case-sensitive and decoded.
            (&admin_dev, call("tools/call", "db_drop_x"), r#"deny payments-devs: tool "db_drop_x" is denied by rule "payments-devs""#),
            (&admin_dev, call("tools/call", "rm"), "allow admins"),
            (&admin_dev, call("tools/call", "echo"), "allow admins"),
            (&admin_dev, call("tools/call", "Echo"), r#"deny no-Echo: tool "Echo" is denied by rule "no-Echo""#),
            (&admin_dev, call("tools/call", "\\u0045cho"), r#"deny no-Echo: tool "Echo" is denied by rule "no-Echo""#),
            (&traps, call("tools/call", "db_query"), r#"deny -: no rule allows method "tools/call""#),
            (&traps, bare("tools/list"), "allow readers"),
            // The anonymous caller: only rules for everyone, and the default methods.
            (&anon, bare("tools/list"), r#"deny -: no rule allows method "tools/list""#),
            (&anon, call("tools/call", "Echo"), r#"deny no-Echo: tool "Echo" is denied by rule "no-Echo""#),
            (&anon, bare("ping"), "allow -"),
            (&anon, call("initialize", "x"), "allow -"),
            (&anon, r#"{"jsonrpc":"2.0","method":"notifications/cancelled"}"#.into(), "allow -"),
            (&anon, r#"{"jsonrpc":"2.0","id":3,"error":{"code":1,"message":"m"}}"#.into(), "allow -"),
        ];
        check(&p, &cases);
        // A subject pattern never selects the anonymous caller (it has no subject).
        let p = policy(
            r#"{"policy":{"rules":[{"name":"all","who":{"subjects":["*"]},"allow":{"tools":["*"]}}]}}"#,
        );
        #[rustfmt::skip]
        let cases = [
            (&anon, call("tools/call", "x"), r#"deny -: no rule allows method "tools/call""#),
            (&ci, call("tools/call", "x"), "allow all"),
        ];
        check(&p, &cases);
    }

    #[test]
    fn default_methods_can_be_denied() {
        let p = policy(r#"{"policy":{"rules":[{"name":"quiet","deny":{"methods":["ping"]}}]}}"#);
        let anon = Identity::anonymous();
        #[rustfmt::skip]
        let cases = [
            (&anon, bare("ping"), r#"deny quiet: method "ping" is denied by rule "quiet""#),
            (&anon, bare("initialize"), "allow -"),
        ];
        check(&p, &cases);
    }

    #[test]
    fn global_rule_beside_named_rules() {
        // A top-level list makes the global rule exist: here it allows everything but `rm`.
        let p = policy(
            r#"{"policy":{"deny":{"tools":["rm"]},
            "rules":[{"name":"strict","who":{"roles":["intern"]},"deny":{"tools":["db_*"]}}]}}"#,
        );
        let intern = jwt("i", &["intern"], &[], &[]);
        let other = jwt("o", &[], &[], &[]);
        #[rustfmt::skip]
        let cases = [
            (&intern, call("tools/call", "db_q"), r#"deny strict: tool "db_q" is denied by rule "strict""#),
            (&intern, call("tools/call", "rm"), r#"deny global: tool "rm" is denied by policy"#),
            (&intern, call("tools/call", "echo"), "allow global"),
            (&other, call("tools/call", "db_q"), "allow global"),
        ];
        check(&p, &cases);
    }

    #[test]
    fn shadow_rules_report_instead_of_refusing() {
        let p = policy(
            r#"{"policy":{"rules":[
            {"name":"base","allow":{"tools":["*"]}},
            {"name":"trial","shadow":true,"deny":{"tools":["rm*"]}},
            {"name":"hard","deny":{"tools":["rm_root"]}},
            {"name":"ops-trial","who":{"roles":["ops"]},"shadow":true,
             "allow":{"prompts":["whoami"]},"deny":{"prompts":["whoami"]}}]}}"#,
        );
        let a = &Identity::anonymous();
        let ops = &jwt("o", &["ops"], &[], &[]);
        #[rustfmt::skip]
        let cases = [
            (a, call("tools/call", "rm_x"), r#"shadow trial: tool "rm_x" is denied by rule "trial""#),
            // An enforced denial beats a shadow one, whatever their order.
            (a, call("tools/call", "rm_root"), r#"deny hard: tool "rm_root" is denied by rule "hard""#),
            (a, call("tools/call", "echo"), "allow base"),
            // Per-rule shadow does not soften "no rule allows".
            (a, call("prompts/get", "p"), r#"deny -: no rule allows method "prompts/get""#),
            // A shadow denial passes even when it is the only rule about the message.
            (ops, call("prompts/get", "whoami"), r#"shadow ops-trial: prompt "whoami" is denied by rule "ops-trial""#),
        ];
        check(&p, &cases);
        let p = policy(
            r#"{"policy":{"shadow":true,"deny":{"tools":["rm"]},"allow":{"tools":["echo","rm"]},
            "rules":[{"name":"t","who":{"authenticated":true},"deny":{"tools":["echo"]}}]}}"#,
        );
        let user = &jwt("u", &[], &[], &[]);
        #[rustfmt::skip]
        let cases = [
            (a, call("tools/call", "rm"), r#"shadow global: tool "rm" is denied by policy"#),
            (a, call("tools/call", "other"), r#"shadow -: no rule allows tool "other""#),
            (a, call("tools/call", "echo"), "allow global"),
            (user, call("tools/call", "echo"), r#"shadow t: tool "echo" is denied by rule "t""#),
        ];
        check(&p, &cases);
    }

    #[test]
    fn many_rules_select_by_index() {
        let rules: Vec<String> = (0..150)
            .map(|i| {
                let who = if i % 2 == 0 {
                    format!(r#"{{"roles":["role{i}"]}}"#)
                } else {
                    format!(r#"{{"subjects":["user{i}-*"]}}"#)
                };
                format!(r#"{{"name":"r{i}","who":{who},"allow":{{"tools":["t{i}_*"]}}}}"#)
            })
            .collect();
        let p = policy(&format!(
            r#"{{"policy":{{"rules":[{}]}}}}"#,
            rules.join(",")
        ));
        let role = jwt("x", &["role42", "role148"], &[], &[]);
        let user = jwt("user77-a", &[], &[], &[]);
        assert_eq!(p.applicable(&role).ids, [42, 148]);
        assert_eq!(p.applicable(&user).ids, [77]);
        #[rustfmt::skip]
        let cases = [
            (&role, call("tools/call", "t148_x"), "allow r148"),
            (&role, call("tools/call", "t42_x"), "allow r42"),
            (&role, call("tools/call", "t44_x"), r#"deny -: no rule allows tool "t44_x""#),
            (&user, call("tools/call", "t77_x"), "allow r77"),
            (&user, call("tools/call", "t79_x"), r#"deny -: no rule allows tool "t79_x""#),
        ];
        check(&p, &cases);
    }

    #[test]
    fn annotation_conditions_narrow_tool_lists() {
        // Only admins may call destructive tools; everyone may call the others; nobody
        // may call open-world tools that are not read-only.
        let p = policy(
            r#"{"policy":{"rules":[
            {"name":"safe","who":{"authenticated":true},"allow":{"tools":["*"],"annotations":{"destructiveHint":false}}},
            {"name":"admins","who":{"roles":["admin"]},"allow":{"tools":["*"]}},
            {"name":"closed","deny":{"tools":["*"],"annotations":{"openWorldHint":true,"readOnlyHint":false}}}]}}"#,
        );
        assert!(p.uses_annotations());
        assert!(!policy("{}").uses_annotations());
        let admin = jwt("root", &["admin"], &[], &[]);
        let dev = jwt("dev", &["dev"], &[], &[]);
        let hints = |read_only, destructive, open_world| Hints {
            read_only,
            destructive,
            idempotent: None,
            open_world,
        };
        let decide = |who: &Identity, h: Hints| {
            let body = call("tools/call", "t");
            let parsed = parse_body(body.as_bytes()).unwrap();
            match p
                .applicable(who)
                .decide(&parsed.messages()[0], &h.effective())
            {
                Decision::Allowed { rule } => format!("allow {}", rule.unwrap_or("-")),
                Decision::Denied { rule, .. } => format!("deny {}", rule.unwrap_or("-")),
                Decision::ShadowDenied { .. } => "shadow".into(),
            }
        };
        let closed = Some(false);
        #[rustfmt::skip]
        let cases = [
            // (hints, dev, admin)
            (hints(Some(true), None, None), "allow safe", "allow safe"),
            (hints(None, Some(false), closed), "allow safe", "allow safe"),
            (hints(None, Some(true), closed), "deny -", "allow admins"),
            // Unknown: the spec defaults (destructive, open world) refuse it to everyone.
            (Hints::UNKNOWN, "deny closed", "deny closed"),
            (hints(None, Some(false), None), "deny closed", "deny closed"),
            (hints(Some(false), Some(false), Some(true)), "deny closed", "deny closed"),
            // Read-only says non-destructive even when destructiveHint says otherwise.
            (hints(Some(true), Some(true), Some(true)), "allow safe", "allow safe"),
        ];
        for (h, for_dev, for_admin) in cases {
            assert_eq!(decide(&dev, h), for_dev, "dev {h:?}");
            assert_eq!(decide(&admin, h), for_admin, "admin {h:?}");
        }
        // Conditions concern tools only: other messages decide as before.
        let anon = Identity::anonymous();
        check(
            &p,
            &[(
                &anon,
                bare("tools/list"),
                r#"deny -: no rule allows method "tools/list""#,
            )],
        );
        check(&p, &[(&dev, bare("tools/list"), "allow safe")]);
    }
}
