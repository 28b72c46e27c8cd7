//! Posture report: what weakens a configuration that is valid (`mcp-guard check`).
//!
//! Validation refuses what the filter cannot run; these findings are settings it runs
//! with but that leave a door open. Each names the configuration path at fault and a
//! one-line fix. The checks read the compiled [`Config`], so defaults count as written
//! (a default that changes changes the report with it). Detection rules, in report order:
//!
//! - `anonymous-allow-all`: anonymous callers get in (no `auth`, or `allow_anonymous`
//!   without `required_scopes`) and a rule without `who` allows `tools/call` of every tool
//!   (its tools list is `*`, or absent in the global rule) with no annotation condition,
//!   and no enforced rule without `who` denies every tool call (the method, or tools `*`).
//! - `no-auth`: there is no `auth` section.
//! - `other-paths-allow`: `other_paths` is `allow`.
//! - `shadow-mode`: `policy.shadow`, else each rule's own `shadow`.
//! - `rule-never-applies`: a rule's `who` can select no caller the `auth` section can
//!   produce; `selector-never-matches`: one pattern of a rule that still applies can't.
//!   What a caller can carry: without `auth` nothing; `authenticated` needs a JWT provider,
//!   API keys or a peer identity; `subjects` any of those (an API key's subject is its
//!   name); `roles` a provider mapping `claims.roles` or an API key with a matching role;
//!   `scopes` a provider or an API key with a matching scope; `api_keys` a configured key
//!   of a matching name; `claims.X` a provider mapping `claims.other.X`.
//! - `rule-decides-nothing`: a named rule with no allow and no deny pattern.
//! - `allow-shadowed-by-deny`: an allow pattern for tools, prompts or resources that an
//!   enforced deny pattern of the same kind covers (every name it matches, the deny one
//!   matches: [`Glob::covers`]), in the same rule or in a rule that applies to every caller
//!   the allowing rule applies to (no `who`; or `authenticated: true` when the allowing
//!   rule has a `who`, which never selects anonymous callers). Deny wins across rules
//!   whatever their order, so such a pattern can never let anything pass. Deny lists with
//!   annotation conditions are left out (they deny only some tools).
//! - `no-identity-headers`: there is an `auth` section, some rule has a `who`, but `upstream.identity_headers` sets no
//!   header: the server cannot tell the callers apart that the gateway does.
//! - `trust-on-first-use`: each `tools.pins` entry pinned on first use.
//! - `no-tools-call-limit`: no rate limit counts `tools/call`.
//! - `credentials-forwarded`: `upstream.remove_client_authorization` is false.
//! - `tasks-list-unscoped`: task ids are sealed (`ownership.tasks`) and a rule allows
//!   `tasks/list` that no enforced rule for everyone denies: the gateway cannot cut the
//!   server's list down to the caller's tasks (the ids carry no owner and nothing is
//!   stored), so what it shows is only as scoped as the server scopes it.

use std::fmt;

use serde::Serialize;

use crate::catalog::toolstate::Pin;
use crate::config::{Access, Config};
use crate::identity::Authenticator;
use crate::policy::glob::{Glob, PatternSet};
use crate::policy::{Lists, Rule, Selector, Who, GLOBAL_RULE};

/// One weakness of a configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Stable name of the check (documented in docs/CONFIG.md, "Posture checks").
    pub check: &'static str,
    /// The configuration path at fault.
    pub path: String,
    pub problem: String,
    pub fix: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "warning: {}: {}; fix: {}",
            self.path, self.problem, self.fix
        )
    }
}

fn finding(
    check: &'static str,
    path: impl Into<String>,
    problem: impl Into<String>,
    fix: &str,
) -> Finding {
    Finding {
        check,
        path: path.into(),
        problem: problem.into(),
        fix: fix.into(),
    }
}

/// Every finding for `config`, in the order of the module documentation.
pub fn report(config: &Config) -> Vec<Finding> {
    let rules = located_rules(config);
    let mut out = Vec::new();
    out.extend(anonymous_allow_all(config, &rules));
    if config.auth.is_none() {
        out.push(finding(
            "no-auth",
            "auth",
            "every caller is anonymous: rules cannot tell callers apart",
            "add an auth section (jwt_providers, api_keys or peer_identity)",
        ));
    }
    if config.other_paths == Access::Allow {
        out.push(finding(
            "other-paths-allow",
            "other_paths",
            "requests to non-MCP paths pass uninspected",
            "make it \"deny\" and list the paths that must pass in pass_paths",
        ));
    }
    out.extend(shadow_mode(config, &rules));
    out.extend(
        rules
            .iter()
            .flat_map(|rule| never_applies(config.auth.as_ref(), rule)),
    );
    out.extend(rules.iter().filter_map(decides_nothing));
    out.extend(shadowed_allows(&rules));
    let by_caller = rules.iter().any(|r| r.rule.who.is_some());
    if by_caller && config.auth.is_some() && !config.upstream.carries_identity() {
        out.push(finding(
            "no-identity-headers",
            "upstream.identity_headers",
            "rules depend on the caller but the server is not told who called",
            "set upstream.identity_headers.subject (and roles) so the server can log and check the caller",
        ));
    }
    out.extend(first_use_pins(config));
    let limited = config
        .rate_limits
        .limits
        .iter()
        .any(|l| l.counts_method("tools/call"));
    if !limited {
        out.push(finding(
            "no-tools-call-limit",
            "rate_limits",
            "no rate limit counts tools/call: one caller can call tools without bound",
            "add a limit with \"methods\": [\"tools/call\"] and \"key\": [\"subject\"]",
        ));
    }
    if !config.upstream.removes_client_credentials() {
        out.push(finding(
            "credentials-forwarded",
            "upstream.remove_client_authorization",
            "the client's credentials reach the MCP server (token passthrough)",
            "remove it (default true) and give the server its own credentials with upstream.inject",
        ));
    }
    out.extend(unscoped_task_lists(config, &rules));
    out
}

/// The tasks method whose answer the gateway cannot scope to the caller.
const TASKS_LIST: &str = "tasks/list";

fn unscoped_task_lists(config: &Config, rules: &[Located<'_>]) -> Option<Finding> {
    if !config.ownership.as_ref().is_some_and(|o| o.tasks) {
        return None;
    }
    let denied = rules.iter().any(|r| {
        r.rule.who.is_none() && !r.rule.shadow && r.rule.deny.methods.is_match(TASKS_LIST)
    });
    let rule = rules
        .iter()
        .find(|r| r.rule.allow.methods.is_match(TASKS_LIST))?;
    (!denied).then(|| {
        finding(
            "tasks-list-unscoped",
            format!("{}.methods", rule.list("allow")),
            "tasks/list is allowed while task ids are sealed: the gateway cannot drop other callers' tasks from the server's list, so their existence and status show (their listed ids give no access)",
            "deny tasks/list in policy.deny.methods, unless the server scopes it per session (with ownership.sessions) or by upstream.identity_headers",
        )
    })
}

/// A rule with the configuration path it was written at.
struct Located<'c> {
    path: String,
    rule: &'c Rule,
}

impl Located<'_> {
    /// The path of one of its lists: `allow` or `deny`.
    fn list(&self, which: &str) -> String {
        format!("{}.{which}", self.path)
    }
}

/// The rules with their paths: the global rule is `policy`, the named ones `policy.rules[i]`.
fn located_rules(config: &Config) -> Vec<Located<'_>> {
    let mut named = 0;
    config
        .policy
        .rules()
        .iter()
        .map(|rule| {
            let path = if rule.name == GLOBAL_RULE {
                "policy".to_owned()
            } else {
                named += 1;
                format!("policy.rules[{}]", named - 1)
            };
            Located { path, rule }
        })
        .collect()
}

fn anonymous_allow_all(config: &Config, rules: &[Located<'_>]) -> Option<Finding> {
    let anonymous = config
        .auth
        .as_ref()
        .is_none_or(|a| a.allow_anonymous && a.required_scopes.is_empty());
    let for_everyone = |r: &&Located<'_>| r.rule.who.is_none();
    // An enforced deny of every tool call for everyone leaves nothing to allow.
    let all_denied = rules.iter().filter(for_everyone).any(|r| {
        let deny = &r.rule.deny;
        !r.rule.shadow
            && (deny.methods.is_match("tools/call")
                || (deny.tools.matches_everything() && deny.annotations.is_none()))
    });
    let rule = rules.iter().filter(for_everyone).find(|r| {
        let allow = &r.rule.allow;
        allow.methods.is_match("tools/call")
            && allow.tools.matches_everything()
            && allow.annotations.is_none()
    })?;
    (anonymous && !all_denied).then(|| {
        finding(
            "anonymous-allow-all",
            rule.list("allow"),
            "anonymous callers may call every tool",
            "require authentication (auth), or list only the tools everyone may call in allow.tools",
        )
    })
}

fn shadow_mode(config: &Config, rules: &[Located<'_>]) -> Vec<Finding> {
    let fix = "set it to false once the logs show no unexpected denials";
    if config.policy.shadow() {
        return vec![finding(
            "shadow-mode",
            "policy.shadow",
            "every denial is logged, not enforced",
            fix,
        )];
    }
    rules
        .iter()
        .filter(|r| r.rule.shadow)
        .map(|r| {
            let problem = format!(
                "rule {:?} logs its denials instead of enforcing them",
                r.rule.name
            );
            finding("shadow-mode", format!("{}.shadow", r.path), problem, fix)
        })
        .collect()
}

/// The configuration field of a `who` selector.
fn selector_field(selector: &Selector) -> String {
    match selector {
        Selector::Subject => "subjects".into(),
        Selector::Role => "roles".into(),
        Selector::Scope => "scopes".into(),
        Selector::ApiKey => "api_keys".into(),
        Selector::Claim(name) => format!("claims.{name}"),
    }
}

/// Whether some caller `auth` can authenticate carries a value `glob` matches for `selector`.
fn can_match(auth: &Authenticator, selector: &Selector, glob: &Glob) -> bool {
    let keys = auth
        .api_keys()
        .map(|k| k.keys.as_slice())
        .unwrap_or_default();
    let providers = &auth.providers;
    match selector {
        Selector::Subject => {
            !providers.is_empty()
                || auth.peer_identity.is_some()
                || keys.iter().any(|k| glob.is_match(&k.name))
        }
        Selector::Role => {
            providers.iter().any(|p| p.claims.roles.is_some())
                || keys
                    .iter()
                    .any(|k| k.roles.iter().any(|r| glob.is_match(r)))
        }
        Selector::Scope => {
            !providers.is_empty()
                || keys
                    .iter()
                    .any(|k| k.scopes.iter().any(|s| glob.is_match(s)))
        }
        Selector::ApiKey => keys.iter().any(|k| glob.is_match(&k.name)),
        Selector::Claim(name) => providers.iter().any(|p| p.claims.other.contains_key(name)),
    }
}

/// Whether `auth` authenticates anyone who is not anonymous.
fn authenticates(auth: &Authenticator) -> bool {
    !auth.providers.is_empty() || auth.api_keys().is_some() || auth.peer_identity.is_some()
}

/// The rule-level or per-pattern findings for a `who` that can (partly) never match.
fn never_applies(auth: Option<&Authenticator>, rule: &Located<'_>) -> Vec<Finding> {
    let Some(who) = &rule.rule.who else {
        return Vec::new();
    };
    let dead = dead_selectors(auth, who, &format!("{}.who", rule.path));
    let live_authenticated = who.authenticated && auth.is_some_and(authenticates);
    if !live_authenticated && dead.len() == who.patterns.len() {
        let why = match auth {
            None => "without an auth section every caller is anonymous",
            Some(_) => "no caller the auth section accepts carries what it selects",
        };
        return vec![finding(
            "rule-never-applies",
            format!("{}.who", rule.path),
            format!("rule {:?} can never apply: {why}", rule.rule.name),
            "select callers the auth section can produce (roles need claims.roles or API-key roles; claims need claims.other)",
        )];
    }
    dead.into_iter()
        .map(|path| {
            finding(
                "selector-never-matches",
                path,
                "no caller the auth section accepts can match this pattern",
                "fix the pattern or configure what it needs in auth",
            )
        })
        .collect()
}

/// Paths of the `who` patterns no caller can match.
fn dead_selectors(auth: Option<&Authenticator>, who: &Who, path: &str) -> Vec<String> {
    let mut dead = Vec::new();
    for (n, (selector, glob)) in who.patterns.iter().enumerate() {
        // Patterns are compiled field by field, in order: the index within the field.
        let index = who
            .patterns
            .iter()
            .take(n)
            .filter(|(s, _)| s == selector)
            .count();
        if !auth.is_some_and(|a| can_match(a, selector, glob)) {
            dead.push(format!("{path}.{}[{index}]", selector_field(selector)));
        }
    }
    dead
}

fn decides_nothing(rule: &Located<'_>) -> Option<Finding> {
    let lists = [&rule.rule.allow, &rule.rule.deny];
    let empty = lists.iter().all(|l| {
        [&l.methods, &l.tools, &l.prompts, &l.resources]
            .iter()
            .all(|set| set.is_empty())
    });
    (empty && rule.rule.name != GLOBAL_RULE).then(|| {
        finding(
            "rule-decides-nothing",
            rule.path.clone(),
            format!("rule {:?} has no allow and no deny pattern", rule.rule.name),
            "give it allow or deny lists, or remove it",
        )
    })
}

/// One kind of list a deny can shadow, read from a rule's `allow` or `deny`.
type KindList = fn(&Lists) -> &PatternSet;

/// The kinds a deny can shadow: tools, prompts, resources.
const KINDS: [(&str, KindList); 3] = [
    ("tools", |l| &l.tools),
    ("prompts", |l| &l.prompts),
    ("resources", |l| &l.resources),
];

/// Whether `denier`'s denials reach every caller `allower` applies to.
fn denies_for(denier: &Rule, allower: &Rule) -> bool {
    std::ptr::eq(denier, allower)
        || match &denier.who {
            None => true,
            Some(who) => who.authenticated && allower.who.is_some(),
        }
}

fn shadowed_allows(rules: &[Located<'_>]) -> Vec<Finding> {
    let mut out = Vec::new();
    for allower in rules {
        for (kind, list) in KINDS {
            for (i, written) in list(&allower.rule.allow).written().iter().enumerate() {
                let Ok(allowed) = Glob::new(written) else {
                    continue;
                };
                let cover = rules
                    .iter()
                    .filter(|d| !d.rule.shadow && d.rule.deny.annotations.is_none())
                    .filter(|d| denies_for(d.rule, allower.rule))
                    .find_map(|d| {
                        let denied = list(&d.rule.deny)
                            .written()
                            .iter()
                            .enumerate()
                            .find(|(_, p)| Glob::new(p).is_ok_and(|g| g.covers(&allowed)))?;
                        Some((d, denied))
                    });
                if let Some((denier, (j, pattern))) = cover {
                    out.push(finding(
                        "allow-shadowed-by-deny",
                        format!("{}.{kind}[{i}]", allower.list("allow")),
                        format!(
                            "{written:?} can never pass: {pattern:?} at {}.{kind}[{j}] denies everything it allows (deny wins)",
                            denier.list("deny")
                        ),
                        "remove the allow pattern, or narrow the deny pattern",
                    ));
                }
            }
        }
    }
    out
}

fn first_use_pins(config: &Config) -> Vec<Finding> {
    let mut paths: Vec<String> = config
        .tools
        .pins
        .iter()
        .flat_map(|(upstream, tools)| {
            tools
                .iter()
                .filter(|(_, pin)| **pin == Pin::TrustOnFirstUse)
                .map(move |(tool, _)| format!("tools.pins.{upstream}.{tool}"))
        })
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|path| {
            finding(
                "trust-on-first-use",
                path,
                "the first definition the gateway sees is trusted, whoever serves it",
                "review the tools and pin their SHA-256 (make pin)",
            )
        })
        .collect()
}

#[cfg(test)]
mod tests;
