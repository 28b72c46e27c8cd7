//! The `policy` section: rules with their callers and lists, compiled into [`Policy`].

use std::collections::{BTreeMap, HashSet};

use serde::Deserialize;

use super::arguments::{self, ArgumentsDto};
use super::glob::{glob_error, patterns, Glob, PatternSet};
use super::{
    Lists, Policy, Rule, Selector, Who, GLOBAL_RULE, PROMPT_METHODS, RESOURCE_METHODS, TOOL_METHODS,
};
use crate::catalog::tooldef::Hints;
use crate::section::ConfigError;

#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
struct HintsDto {
    #[serde(rename = "readOnlyHint")]
    read_only: Option<bool>,
    #[serde(rename = "destructiveHint")]
    destructive: Option<bool>,
    #[serde(rename = "idempotentHint")]
    idempotent: Option<bool>,
    #[serde(rename = "openWorldHint")]
    open_world: Option<bool>,
}

#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PolicyDto {
    #[serde(default)]
    shadow: bool,
    allow: Option<ListsDto>,
    deny: Option<ListsDto>,
    #[serde(default)]
    rules: Vec<RuleDto>,
    #[serde(default)]
    arguments: ArgumentsDto,
}

#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleDto {
    name: String,
    who: Option<WhoDto>,
    #[serde(default)]
    allow: ListsDto,
    #[serde(default)]
    deny: ListsDto,
    #[serde(default)]
    shadow: bool,
}

#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct WhoDto {
    #[serde(default)]
    subjects: Vec<String>,
    #[serde(default)]
    roles: Vec<String>,
    #[serde(default)]
    scopes: Vec<String>,
    #[serde(default)]
    api_keys: Vec<String>,
    #[serde(default)]
    claims: BTreeMap<String, Vec<String>>,
    authenticated: Option<bool>,
}

#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListsDto {
    methods: Option<Vec<String>>,
    tools: Option<Vec<String>>,
    prompts: Option<Vec<String>>,
    resources: Option<Vec<String>>,
    annotations: Option<HintsDto>,
}

impl PolicyDto {
    pub(crate) fn compile(self) -> Result<Policy, ConfigError> {
        let mut rules = Vec::with_capacity(self.rules.len() + 1);
        // The top-level lists are the rule for everyone; without named rules it always
        // exists, so that an empty policy allows everything.
        if self.allow.is_some() || self.deny.is_some() || self.rules.is_empty() {
            rules.push(Rule {
                name: GLOBAL_RULE.into(),
                who: None,
                allow: self
                    .allow
                    .unwrap_or_default()
                    .compile("policy.allow", true)?,
                deny: self
                    .deny
                    .unwrap_or_default()
                    .compile("policy.deny", false)?,
                shadow: false,
            });
        }
        let mut names = HashSet::new();
        for (i, rule) in self.rules.into_iter().enumerate() {
            let path = format!("policy.rules[{i}]");
            // Names identify rules in reasons, logs and counters.
            let problem = if rule.name.is_empty() {
                Some("a rule needs a non-empty name".to_owned())
            } else if rule.name == GLOBAL_RULE {
                Some(format!(
                    "{GLOBAL_RULE:?} is reserved for the top-level policy.allow and policy.deny"
                ))
            } else if !names.insert(rule.name.clone()) {
                Some(format!("duplicate rule name {:?}", rule.name))
            } else {
                None
            };
            if let Some(message) = problem {
                return Err(ConfigError {
                    path: format!("{path}.name"),
                    message,
                });
            }
            rules.push(rule.compile(&path)?);
        }
        let arguments = arguments::compile(self.arguments, "policy.arguments")?;
        Ok(Policy::new(rules, self.shadow).with_arguments(arguments))
    }
}

impl RuleDto {
    fn compile(self, path: &str) -> Result<Rule, ConfigError> {
        Ok(Rule {
            who: self
                .who
                .map(|who| who.compile(&format!("{path}.who")))
                .transpose()?,
            allow: self
                .allow
                .with_implied_methods()
                .compile(&format!("{path}.allow"), false)?,
            deny: self.deny.compile(&format!("{path}.deny"), false)?,
            shadow: self.shadow,
            name: self.name,
        })
    }
}

impl WhoDto {
    pub(crate) fn compile(self, path: &str) -> Result<Who, ConfigError> {
        let authenticated = match self.authenticated {
            // `false` would read as "anonymous callers only", which it cannot mean.
            Some(false) => {
                return Err(ConfigError {
                    path: format!("{path}.authenticated"),
                    message: "only `true` selects callers; omit it otherwise".into(),
                })
            }
            Some(true) => true,
            None => false,
        };
        let claims = self
            .claims
            .into_iter()
            .map(|(name, list)| (format!("claims.{name}"), Selector::Claim(name), list));
        let lists = [
            ("subjects".to_owned(), Selector::Subject, self.subjects),
            ("roles".to_owned(), Selector::Role, self.roles),
            ("scopes".to_owned(), Selector::Scope, self.scopes),
            ("api_keys".to_owned(), Selector::ApiKey, self.api_keys),
        ]
        .into_iter()
        .chain(claims);
        let mut patterns = Vec::new();
        for (field, selector, list) in lists {
            for (i, pattern) in list.iter().enumerate() {
                let glob =
                    Glob::new(pattern).map_err(|e| glob_error(&format!("{path}.{field}"), i, e))?;
                patterns.push((selector.clone(), glob));
            }
        }
        // An empty `who` most likely lost its selectors by mistake; everyone is "no `who`".
        if patterns.is_empty() && !authenticated {
            return Err(ConfigError {
                path: path.into(),
                message: "selects no caller: give subjects, roles, scopes, api_keys, claims or \
                          authenticated, or omit `who` to apply the rule to everyone"
                    .into(),
            });
        }
        Ok(Who {
            patterns,
            authenticated,
        })
    }
}

impl ListsDto {
    /// A named rule's `allow`: each target list given also allows the methods that use it,
    /// so `"tools": ["db_*"]` alone is enough to list and call those tools.
    fn with_implied_methods(mut self) -> ListsDto {
        let implied: Vec<String> = [
            (self.tools.is_some(), TOOL_METHODS),
            (self.prompts.is_some(), PROMPT_METHODS),
            (self.resources.is_some(), RESOURCE_METHODS),
        ]
        .into_iter()
        .filter(|(given, _)| *given)
        .flat_map(|(_, methods)| methods.iter().map(|m| (*m).to_owned()))
        .collect();
        // Appended after the explicit methods, so error indexes still point into those.
        if !implied.is_empty() {
            self.methods.get_or_insert_with(Vec::new).extend(implied);
        }
        self
    }

    /// Compiles each list; an absent list matches everything if `absent_matches` (the
    /// global rule's `allow`), else nothing.
    fn compile(self, path: &str, absent_matches: bool) -> Result<Lists, ConfigError> {
        let list = |name: &str, v: Option<Vec<String>>| match v {
            Some(v) => patterns(&format!("{path}.{name}"), &v),
            None if absent_matches => Ok(PatternSet::everything()),
            None => Ok(PatternSet::default()),
        };
        if self.annotations.is_some() && self.tools.is_none() {
            return Err(ConfigError {
                path: format!("{path}.annotations"),
                message: "narrows the tools list beside it: give \"tools\" too (e.g. [\"*\"])"
                    .into(),
            });
        }
        Ok(Lists {
            annotations: self.annotations.map(|a| Hints {
                read_only: a.read_only,
                destructive: a.destructive,
                idempotent: a.idempotent,
                open_world: a.open_world,
            }),
            methods: list("methods", self.methods)?,
            tools: list("tools", self.tools)?,
            prompts: list("prompts", self.prompts)?,
            resources: list("resources", self.resources)?,
        })
    }
}
