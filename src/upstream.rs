//! What an approved request carries upstream instead of the client's credentials.
//!
//! MCP forbids token passthrough: the client's `Authorization` (and API key) stay at the
//! gateway. The upstream learns who called from identity headers the gateway sets, after
//! removing any copy the client sent, and gets its own credentials from `inject`.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::auth::Identity;
use crate::config::ConfigError;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpstreamDto {
    remove_client_authorization: Option<bool>,
    identity_headers: Option<IdentityHeadersDto>,
    #[serde(default)]
    inject: Vec<InjectDto>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct IdentityHeadersDto {
    subject: Option<String>,
    roles: Option<String>,
    scopes: Option<String>,
    method: Option<String>,
}

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
        Ok(Upstream {
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
    /// Whether any cluster gets injected headers (only then is the cluster looked up).
    pub fn injects(&self) -> bool {
        !self.inject.is_empty()
    }

    /// The identity headers the gateway owns: removed from every request, even unauthenticated ones.
    pub fn identity_header_names(&self) -> impl Iterator<Item = &str> {
        [&self.subject, &self.roles, &self.scopes, &self.method]
            .into_iter()
            .flatten()
            .map(String::as_str)
    }

    /// Edits for an authenticated request routed to `cluster`. `credential_headers` are the
    /// headers the client authenticated with (API key header, custom token headers).
    pub fn edits(
        &self,
        identity: &Identity,
        cluster: Option<&str>,
        credential_headers: &[String],
    ) -> HeaderEdits {
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
        if let Some(cluster) = cluster {
            for (c, headers) in &self.inject {
                if c == cluster {
                    edits.set.extend(headers.iter().cloned());
                }
            }
        }
        edits.remove.sort();
        edits.remove.dedup();
        edits
    }
}
