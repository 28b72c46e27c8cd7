//! Upstream, the last request stage: the header edits an approved request goes on with,
//! instead of the client's credentials. It never refuses a request.
//!
//! MCP forbids token passthrough: the client's `Authorization` (and API key) stay at the
//! gateway. The upstream learns who called from identity headers the gateway sets, after
//! removing any copy the client sent, and gets its own credentials from `inject`.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::identity::Identity;
use crate::protocol::jsonrpc::{Message, Target};
use crate::section::ConfigError;

#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpstreamDto {
    remove_client_authorization: Option<bool>,
    identity_headers: Option<IdentityHeadersDto>,
    #[serde(default)]
    inject: Vec<InjectDto>,
    routing_headers: Option<RoutingHeadersDto>,
}

#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RoutingHeadersDto {
    method: Option<String>,
    tool: Option<String>,
}

#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct IdentityHeadersDto {
    subject: Option<String>,
    roles: Option<String>,
    scopes: Option<String>,
    method: Option<String>,
}

#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InjectDto {
    cluster: String,
    headers: BTreeMap<String, String>,
}

/// Compiled upstream header rules.
#[derive(Debug, Clone)]
pub struct Upstream {
    remove_client_authorization: bool,
    subject: Option<String>,
    roles: Option<String>,
    scopes: Option<String>,
    /// How the caller authenticated (`jwt:<provider>`, `api_key:<name>`, `peer`, `anonymous`).
    method: Option<String>,
    inject: Vec<(String, Vec<(String, String)>)>,
    /// Headers carrying the approved request's method and tool, for Envoy's routes.
    route_method: Option<String>,
    route_tool: Option<String>,
}

/// Header changes for one request, applied by the glue before the request moves on.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct HeaderEdits {
    pub remove: Vec<String>,
    pub set: Vec<(String, String)>,
}

impl UpstreamDto {
    pub(crate) fn compile(self) -> Result<Upstream, ConfigError> {
        let ids = self.identity_headers.unwrap_or_default();
        let name = |path: &str, v: Option<String>| match v {
            Some(h) => header_name(path, &h).map(Some),
            None => Ok(None),
        };
        let mut inject = Vec::new();
        for (i, rule) in self.inject.into_iter().enumerate() {
            let mut headers = Vec::new();
            for (k, v) in rule.headers {
                let k = header_name(&format!("upstream.inject[{i}].headers.{k}"), &k)?;
                headers.push((k, v));
            }
            inject.push((rule.cluster, headers));
        }
        let routing = self.routing_headers.unwrap_or_default();
        // Injection keys on the route's cluster, which the filter reads before routing
        // headers re-route the request: credentials could reach the wrong server.
        if (routing.method.is_some() || routing.tool.is_some()) && !inject.is_empty() {
            return Err(ConfigError {
                path: "upstream.inject".into(),
                message: "cannot be combined with routing_headers (the filter cannot see the \
                          route Envoy picks after them): add the credentials with the route's \
                          request_headers_to_add in Envoy instead"
                    .into(),
            });
        }
        Ok(Upstream {
            route_method: name("upstream.routing_headers.method", routing.method)?,
            route_tool: name("upstream.routing_headers.tool", routing.tool)?,
            remove_client_authorization: self.remove_client_authorization.unwrap_or(true),
            subject: name("upstream.identity_headers.subject", ids.subject)?,
            roles: name("upstream.identity_headers.roles", ids.roles)?,
            scopes: name("upstream.identity_headers.scopes", ids.scopes)?,
            method: name("upstream.identity_headers.method", ids.method)?,
            inject,
        })
    }
}

/// Header names are compared in lower case, as Envoy stores them; pseudo-headers are off limits.
fn header_name(path: &str, name: &str) -> Result<String, ConfigError> {
    let valid = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if !valid {
        return Err(ConfigError {
            path: path.into(),
            message: format!("{name:?} is not a valid HTTP header name"),
        });
    }
    Ok(name.to_ascii_lowercase())
}

impl Default for Upstream {
    fn default() -> Self {
        Upstream {
            remove_client_authorization: true,
            subject: None,
            roles: None,
            scopes: None,
            method: None,
            inject: Vec::new(),
            route_method: None,
            route_tool: None,
        }
    }
}

/// A claim can hold any text; control characters would split or corrupt a header.
fn header_value(value: &str) -> String {
    value
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

impl Upstream {
    /// Whether the client's credentials stay at the gateway (`remove_client_authorization`).
    pub fn removes_client_credentials(&self) -> bool {
        self.remove_client_authorization
    }

    /// Whether the upstream learns who called from any identity header.
    pub fn carries_identity(&self) -> bool {
        [&self.subject, &self.roles, &self.scopes, &self.method]
            .iter()
            .any(|h| h.is_some())
    }

    /// Whether any cluster gets injected headers (only then is the cluster looked up).
    pub fn injects(&self) -> bool {
        !self.inject.is_empty()
    }

    /// The headers the gateway owns (identity and routing): any copy the client sent is removed.
    pub fn identity_header_names(&self) -> impl Iterator<Item = &str> {
        [
            &self.subject,
            &self.roles,
            &self.scopes,
            &self.method,
            &self.route_method,
            &self.route_tool,
        ]
        .into_iter()
        .flatten()
        .map(String::as_str)
    }

    /// Edits for an authenticated request routed to `cluster`. `credential_headers` are the
    /// headers the client authenticated with (API key header, custom token headers).
    pub fn edits(&self, identity: &Identity, credential_headers: &[String]) -> HeaderEdits {
        let mut edits = HeaderEdits::default();
        edits
            .remove
            .extend(self.identity_header_names().map(str::to_owned));
        if self.remove_client_authorization {
            edits.remove.push("authorization".into());
            edits.remove.extend(credential_headers.iter().cloned());
        }
        let mut set = |name: &Option<String>, value: String| {
            if let Some(name) = name {
                edits.set.push((name.clone(), header_value(&value)));
            }
        };
        set(&self.subject, identity.subject.clone());
        set(&self.roles, identity.roles.join(","));
        set(&self.scopes, identity.scopes.join(" "));
        set(&self.method, identity.kind.to_string());
        crate::sort::sort(&mut edits.remove);
        edits.remove.dedup();
        edits
    }

    /// The headers injected into a request that goes to `cluster` (the route's final cluster,
    /// after the routing headers chose it).
    pub fn inject_edits(&self, cluster: &str) -> HeaderEdits {
        let set = self
            .inject
            .iter()
            .filter(|(c, _)| c == cluster)
            .flat_map(|(_, headers)| headers.iter().cloned())
            .collect();
        HeaderEdits {
            remove: Vec::new(),
            set,
        }
    }

    /// Whether approved requests get routing headers.
    pub fn routes(&self) -> bool {
        self.route_method.is_some() || self.route_tool.is_some()
    }

    /// Routing headers for a parsed body: the method of a single message (`batch` for a
    /// batch) and the tool of a single `tools/call`. The client's copies were removed with
    /// the identity headers, so an absent value leaves the header absent.
    pub fn routing_edits(&self, messages: &[Message<'_>]) -> HeaderEdits {
        let mut edits = HeaderEdits::default();
        let (method, tool) = match messages {
            [one] => (
                one.method.as_deref(),
                match &one.target {
                    Some(Target::Tool(tool)) => Some(tool.as_ref()),
                    _ => None,
                },
            ),
            [] => (None, None),
            _ => (Some("batch"), None),
        };
        for (name, value) in [(&self.route_method, method), (&self.route_tool, tool)] {
            if let (Some(name), Some(value)) = (name, value) {
                edits.set.push((name.clone(), header_value(value)));
            }
        }
        edits
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::IdentityKind;
    use crate::protocol::jsonrpc::parse_body;

    fn upstream(json: &str) -> Result<Upstream, ConfigError> {
        serde_json::from_str::<UpstreamDto>(json).unwrap().compile()
    }

    #[test]
    fn edits_remove_credentials_and_set_identity() {
        let up = upstream(
            r#"{"identity_headers":{"subject":"X-MCP-Subject","roles":"x-mcp-roles","method":"x-mcp-auth"},
                "inject":[{"cluster":"db","headers":{"authorization":"Bearer svc"}}]}"#,
        )
        .unwrap();
        let mut identity = Identity::anonymous();
        identity.kind = IdentityKind::Jwt {
            provider: "corp".into(),
        };
        identity.subject = "alice\r\nx-evil: 1".into();
        identity.roles = vec!["dev".into(), "ops".into()];
        let edits = up.edits(&identity, &["x-api-key".into()]);
        assert_eq!(
            edits.remove,
            [
                "authorization",
                "x-api-key",
                "x-mcp-auth",
                "x-mcp-roles",
                "x-mcp-subject"
            ]
        );
        assert_eq!(
            edits.set,
            [
                ("x-mcp-subject".to_owned(), "alice  x-evil: 1".to_owned()),
                ("x-mcp-roles".to_owned(), "dev,ops".to_owned()),
                ("x-mcp-auth".to_owned(), "jwt:corp".to_owned()),
            ]
        );
        assert_eq!(
            up.inject_edits("db").set,
            [("authorization".to_owned(), "Bearer svc".to_owned())]
        );
        assert!(
            up.inject_edits("web").set.is_empty(),
            "injection is per cluster"
        );
    }

    #[test]
    fn routing_headers_name_method_and_tool_and_are_owned() {
        let up = upstream(r#"{"routing_headers":{"method":"X-MCP-Method","tool":"x-mcp-tool"}}"#)
            .unwrap();
        let edits = up.edits(&Identity::anonymous(), &[]);
        assert!(edits.remove.contains(&"x-mcp-method".to_owned()));
        assert!(edits.remove.contains(&"x-mcp-tool".to_owned()));
        let call =
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"db_query"}}"#;
        let parsed = parse_body(call).unwrap();
        assert_eq!(
            up.routing_edits(parsed.messages()).set,
            [
                ("x-mcp-method".to_owned(), "tools/call".to_owned()),
                ("x-mcp-tool".to_owned(), "db_query".to_owned())
            ]
        );
        let batch =
            br#"[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"db_query"}},
                         {"jsonrpc":"2.0","id":2,"method":"tools/list"}]"#;
        assert_eq!(
            up.routing_edits(parse_body(batch).unwrap().messages()).set,
            [("x-mcp-method".to_owned(), "batch".to_owned())]
        );
        assert!(!upstream("{}").unwrap().routes());
    }

    #[test]
    fn injection_and_routing_headers_exclude_each_other() {
        let err = upstream(
            r#"{"routing_headers":{"tool":"x-mcp-tool"},"inject":[{"cluster":"db","headers":{"authorization":"Bearer s"}}]}"#,
        )
        .unwrap_err();
        assert_eq!(err.path, "upstream.inject");
        assert!(err.message.contains("request_headers_to_add"), "{err}");
    }

    #[test]
    fn client_authorization_may_be_kept() {
        let up = upstream(r#"{"remove_client_authorization":false}"#).unwrap();
        assert!(up
            .edits(&Identity::anonymous(), &["x-api-key".into()])
            .remove
            .is_empty());
    }

    #[test]
    fn header_names_are_validated() {
        let err = upstream(r#"{"identity_headers":{"subject":"bad header"}}"#).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"upstream.identity_headers.subject: "bad header" is not a valid HTTP header name"#
        );
        let err = upstream(r#"{"inject":[{"cluster":"c","headers":{":path":"/x"}}]}"#).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"upstream.inject[0].headers.:path: ":path" is not a valid HTTP header name"#
        );
    }
}
