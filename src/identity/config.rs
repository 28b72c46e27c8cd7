//! The `auth` configuration section (DTO) and its compilation into an [`Authenticator`].
//!
//! Like the rest of the configuration, every error names the exact path of the value at
//! fault (`auth.jwt_providers[0].jwks.keys[2]: unsupported key type "foo"`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::apikey::{parse_sha256, ApiKey, ApiKeys};
use super::jwt::{self, ClaimPaths, Provider, RemoteJwks, TokenSource};
use super::keys::{Alg, Jwk, KeySet};
use super::{shared_tokens, Authenticator, PeerIdentity};
use crate::section::ConfigError;

/// Largest accepted `leeway_seconds`.
const MAX_LEEWAY_SECONDS: u64 = 3600;
/// Largest accepted `max_token_bytes` (Envoy's default header limit is 60 KiB).
const MAX_TOKEN_BYTES: u64 = 64 << 10;
/// Upper bound of the remote JWKS periods and timeouts: one day, in s or ms.
const MAX_SECONDS: u64 = 86_400;
const MAX_MS: u64 = 60_000;

/// The `auth` section. Embed it as `auth: Option<AuthDto>` and call [`AuthDto::compile`]
/// with the path it sits at (`"auth"`).
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthDto {
    #[serde(default)]
    allow_anonymous: bool,
    #[serde(default)]
    jwt_providers: Vec<ProviderDto>,
    api_keys: Option<ApiKeysDto>,
    peer_identity: Option<PeerIdentity>,
    #[serde(default)]
    required_scopes: Vec<String>,
    resource_metadata: Option<ResourceMetadataDto>,
    /// Slots of the cache of verified tokens shared by every Envoy worker; 0 turns it off.
    shared_token_cache_slots: Option<u64>,
}

#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProviderDto {
    name: String,
    issuer: String,
    audiences: Vec<String>,
    algorithms: Option<Vec<String>>,
    leeway_seconds: Option<u64>,
    max_token_bytes: Option<u64>,
    #[serde(default)]
    token: TokenDto,
    jwks: Option<JwksDto>,
    remote_jwks: Option<RemoteJwksDto>,
    #[serde(default)]
    claims: ClaimsDto,
}

#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenDto {
    header: Option<String>,
    prefix: Option<String>,
}

/// A JWKS document pasted into the configuration; its other members are ignored.
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[derive(Debug, Deserialize)]
struct JwksDto {
    keys: Vec<Jwk>,
}

#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RemoteJwksDto {
    cluster: String,
    path: String,
    authority: Option<String>,
    refresh_seconds: Option<u64>,
    timeout_ms: Option<u64>,
    min_refetch_seconds: Option<u64>,
    max_wait_ms: Option<u64>,
}

#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClaimsDto {
    subject: Option<String>,
    roles: Option<String>,
    scopes: Option<String>,
    #[serde(default)]
    other: BTreeMap<String, String>,
}

#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ApiKeysDto {
    header: Option<String>,
    keys: Vec<ApiKeyDto>,
}

#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ApiKeyDto {
    name: String,
    sha256: String,
    #[serde(default)]
    roles: Vec<String>,
    #[serde(default)]
    scopes: Vec<String>,
}

/// RFC 9728 protected resource metadata; serialized as is into the served document.
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct ResourceMetadataDto {
    resource: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    authorization_servers: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    scopes_supported: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    bearer_methods_supported: Option<Vec<String>>,
}

/// The protected resource metadata (RFC 9728) the glue serves and points clients to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceMetadata {
    /// The JSON document.
    pub document: String,
    /// Where it is served: `/.well-known/oauth-protected-resource` + the resource's path.
    pub well_known_path: String,
    /// Its absolute URL, for the `resource_metadata` parameter of `WWW-Authenticate`.
    pub url: String,
}

fn error(path: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError {
        path: path.into(),
        message: message.into(),
    }
}

/// Refuses an empty string.
fn non_empty(path: &str, value: &str) -> Result<(), ConfigError> {
    if value.is_empty() {
        return Err(error(path, "must not be empty"));
    }
    Ok(())
}

/// `value`, or `default` when absent, refused outside `lo..=hi`.
fn in_range(
    path: &str,
    value: Option<u64>,
    default: u64,
    lo: u64,
    hi: u64,
) -> Result<u64, ConfigError> {
    let value = value.unwrap_or(default);
    if !(lo..=hi).contains(&value) {
        return Err(error(path, format!("{value} is outside {lo}..={hi}")));
    }
    Ok(value)
}

/// Refuses the second occurrence of a name in a list.
fn unique<'a>(
    items: impl Iterator<Item = &'a str>,
    path: impl Fn(usize) -> String,
    what: &str,
) -> Result<(), ConfigError> {
    let mut seen = Vec::new();
    for (i, item) in items.enumerate() {
        if seen.contains(&item) {
            return Err(error(path(i), format!("duplicate {what} {item:?}")));
        }
        seen.push(item);
    }
    Ok(())
}

impl AuthDto {
    /// Validates the section found at `path` and compiles it.
    pub fn compile(self, path: &str) -> Result<Authenticator, ConfigError> {
        let providers = self
            .jwt_providers
            .into_iter()
            .enumerate()
            .map(|(i, p)| p.compile(&format!("{path}.jwt_providers[{i}]")))
            .collect::<Result<Vec<Provider>, _>>()?;
        let provider_path =
            |field: &'static str| move |i| format!("{path}.jwt_providers[{i}].{field}");
        unique(
            providers.iter().map(|p| p.name.as_str()),
            provider_path("name"),
            "provider name",
        )?;
        unique(
            providers.iter().map(|p| p.issuer.as_str()),
            provider_path("issuer"),
            "issuer",
        )?;
        let api_keys = self
            .api_keys
            .map(|k| k.compile(&format!("{path}.api_keys")))
            .transpose()?;
        if let Some(keys) = &api_keys {
            if providers.iter().any(|p| p.source.header == keys.header) {
                return Err(error(
                    format!("{path}.api_keys.header"),
                    format!("{:?} is also a JWT provider's token header", keys.header),
                ));
            }
        }
        if providers.is_empty()
            && api_keys.is_none()
            && self.peer_identity.is_none()
            && !self.allow_anonymous
        {
            return Err(error(
                path,
                "no way to authenticate: configure jwt_providers, api_keys, peer_identity or allow_anonymous",
            ));
        }
        for (i, scope) in self.required_scopes.iter().enumerate() {
            if scope.is_empty() || scope.contains(char::is_whitespace) {
                return Err(error(
                    format!("{path}.required_scopes[{i}]"),
                    format!("{scope:?} is not a scope (empty or with spaces)"),
                ));
            }
        }
        let resource_metadata = self
            .resource_metadata
            .map(|m| m.compile(&format!("{path}.resource_metadata")))
            .transpose()?;
        let mut header_names: Vec<String> = Vec::new();
        for name in providers
            .iter()
            .map(|p| &p.source.header)
            .chain(api_keys.iter().map(|k| &k.header))
        {
            if !header_names.contains(name) {
                header_names.push(name.clone());
            }
        }
        let max_token_bytes = providers
            .iter()
            .filter_map(|p| p.options.max_token_length)
            .max()
            .unwrap_or(0);
        let shared_token_cache_slots = in_range(
            &format!("{path}.shared_token_cache_slots"),
            self.shared_token_cache_slots,
            shared_tokens::DEFAULT_SLOTS.into(),
            0,
            shared_tokens::MAX_SLOTS.into(),
        )? as u32;
        Ok(Authenticator {
            shared_token_cache_slots,
            providers,
            api_keys,
            peer_identity: self.peer_identity,
            allow_anonymous: self.allow_anonymous,
            required_scopes: self.required_scopes,
            resource_metadata,
            header_names,
            max_token_bytes,
        })
    }
}

impl ProviderDto {
    fn compile(self, path: &str) -> Result<Provider, ConfigError> {
        non_empty(&format!("{path}.name"), &self.name)?;
        non_empty(&format!("{path}.issuer"), &self.issuer)?;
        if self.audiences.is_empty() {
            return Err(error(
                format!("{path}.audiences"),
                "at least one audience is required",
            ));
        }
        for (i, audience) in self.audiences.iter().enumerate() {
            non_empty(&format!("{path}.audiences[{i}]"), audience)?;
        }
        let algorithms = algorithms(&format!("{path}.algorithms"), self.algorithms)?;
        let symmetric = algorithms.iter().any(|a| a.is_symmetric());
        let leeway = in_range(
            &format!("{path}.leeway_seconds"),
            self.leeway_seconds,
            60,
            0,
            MAX_LEEWAY_SECONDS,
        )?;
        let max_token_bytes = in_range(
            &format!("{path}.max_token_bytes"),
            self.max_token_bytes,
            8192,
            1,
            MAX_TOKEN_BYTES,
        )?;
        let (inline_keys, remote_jwks) = match (self.jwks, self.remote_jwks) {
            (Some(jwks), None) => {
                let keys_path = format!("{path}.jwks.keys");
                if jwks.keys.is_empty() {
                    return Err(error(keys_path, "at least one key is required"));
                }
                let keys = KeySet::from_config(&jwks.keys, &algorithms)
                    .map_err(|(i, message)| error(format!("{keys_path}[{i}]"), message))?;
                (Some(keys), None)
            }
            (None, Some(_)) if symmetric => {
                return Err(error(
                    format!("{path}.remote_jwks"),
                    "HMAC (HS*) keys are shared secrets: configure them inline in `jwks`, never fetched",
                ))
            }
            (None, Some(remote)) => (None, Some(remote.compile(&format!("{path}.remote_jwks"))?)),
            _ => return Err(error(path, "exactly one of `jwks` and `remote_jwks` is required")),
        };
        let header = self.token.header.unwrap_or_else(|| "authorization".into());
        non_empty(&format!("{path}.token.header"), &header)?;
        let claims = self.claims.compile(&format!("{path}.claims"))?;
        let cache_tag = jwt::cache_tag(
            &self.name,
            &self.issuer,
            &self.audiences,
            &algorithms,
            leeway,
            &claims,
        );
        Ok(Provider {
            cache_tag,
            options: jwt::options(
                &self.issuer,
                &self.audiences,
                leeway,
                max_token_bytes as usize,
            ),
            name: self.name,
            issuer: self.issuer,
            remote_jwks,
            inline_keys,
            algorithms,
            source: TokenSource {
                header: header.to_ascii_lowercase(),
                prefix: self.token.prefix.unwrap_or_else(|| "Bearer ".into()),
            },
            claims,
        })
    }
}

/// The accepted algorithms: every public-key one by default; HMAC only when listed, and
/// never mixed with public-key ones (a public key must never serve as an HMAC secret).
fn algorithms(path: &str, names: Option<Vec<String>>) -> Result<Vec<Alg>, ConfigError> {
    let Some(names) = names else {
        return Ok(Alg::ASYMMETRIC.to_vec());
    };
    if names.is_empty() {
        return Err(error(path, "at least one algorithm is required"));
    }
    let mut algs = Vec::new();
    for (i, name) in names.iter().enumerate() {
        match Alg::from_name(name) {
            Some(alg) => algs.push(alg),
            None if name.eq_ignore_ascii_case("none") => {
                return Err(error(
                    format!("{path}[{i}]"),
                    "alg \"none\" (unsigned tokens) is never accepted",
                ))
            }
            None => {
                let all: Vec<&str> = Alg::ALL.iter().map(|a| a.name()).collect();
                return Err(error(
                    format!("{path}[{i}]"),
                    format!(
                        "unsupported algorithm {name:?}, expected one of {}",
                        all.join(", ")
                    ),
                ));
            }
        }
    }
    if algs.iter().any(|a| a.is_symmetric()) && algs.iter().any(|a| !a.is_symmetric()) {
        return Err(error(
            path,
            "HMAC (HS*) and public-key algorithms cannot be mixed (algorithm confusion)",
        ));
    }
    Ok(algs)
}

impl RemoteJwksDto {
    fn compile(self, path: &str) -> Result<RemoteJwks, ConfigError> {
        non_empty(&format!("{path}.cluster"), &self.cluster)?;
        if !self.path.starts_with('/') {
            return Err(error(
                format!("{path}.path"),
                format!("path {:?} must start with '/'", self.path),
            ));
        }
        let field = |name: &str| format!("{path}.{name}");
        Ok(RemoteJwks {
            refresh_seconds: in_range(
                &field("refresh_seconds"),
                self.refresh_seconds,
                300,
                1,
                MAX_SECONDS,
            )?,
            timeout_ms: in_range(&field("timeout_ms"), self.timeout_ms, 2000, 1, MAX_MS)?,
            min_refetch_seconds: in_range(
                &field("min_refetch_seconds"),
                self.min_refetch_seconds,
                10,
                0,
                MAX_SECONDS,
            )?,
            max_wait_ms: in_range(&field("max_wait_ms"), self.max_wait_ms, 2000, 0, MAX_MS)?,
            authority: self.authority.unwrap_or_else(|| self.cluster.clone()),
            cluster: self.cluster,
            path: self.path,
        })
    }
}

impl ClaimsDto {
    fn compile(self, path: &str) -> Result<ClaimPaths, ConfigError> {
        let claims = ClaimPaths {
            subject: self.subject.unwrap_or_else(|| "sub".into()),
            roles: self.roles,
            scopes: self.scopes.unwrap_or_else(|| "scope".into()),
            other: self.other,
        };
        non_empty(&format!("{path}.subject"), &claims.subject)?;
        non_empty(&format!("{path}.scopes"), &claims.scopes)?;
        if let Some(roles) = &claims.roles {
            non_empty(&format!("{path}.roles"), roles)?;
        }
        for (name, claim) in &claims.other {
            non_empty(&format!("{path}.other.{name}"), claim)?;
        }
        Ok(claims)
    }
}

impl ApiKeysDto {
    fn compile(self, path: &str) -> Result<ApiKeys, ConfigError> {
        let header = self.header.unwrap_or_else(|| "x-api-key".into());
        non_empty(&format!("{path}.header"), &header)?;
        if self.keys.is_empty() {
            return Err(error(
                format!("{path}.keys"),
                "at least one key is required",
            ));
        }
        unique(
            self.keys.iter().map(|k| k.name.as_str()),
            |i| format!("{path}.keys[{i}].name"),
            "key name",
        )?;
        let keys = self
            .keys
            .into_iter()
            .enumerate()
            .map(|(i, k)| {
                non_empty(&format!("{path}.keys[{i}].name"), &k.name)?;
                let sha256 = parse_sha256(&k.sha256).ok_or_else(|| {
                    error(
                        format!("{path}.keys[{i}].sha256"),
                        "expected the 64 hex digits of a SHA-256 digest",
                    )
                })?;
                Ok(ApiKey {
                    name: k.name,
                    sha256,
                    roles: k.roles,
                    scopes: k.scopes,
                })
            })
            .collect::<Result<_, ConfigError>>()?;
        Ok(ApiKeys {
            header: header.to_ascii_lowercase(),
            keys,
        })
    }
}

impl ResourceMetadataDto {
    fn compile(self, path: &str) -> Result<ResourceMetadata, ConfigError> {
        let (origin, resource_path) =
            split_url(&self.resource).map_err(|m| error(format!("{path}.resource"), m))?;
        for (i, server) in self.authorization_servers.iter().flatten().enumerate() {
            split_url(server)
                .map_err(|m| error(format!("{path}.authorization_servers[{i}]"), m))?;
        }
        for (i, method) in self.bearer_methods_supported.iter().flatten().enumerate() {
            if !["header", "body", "query"].contains(&method.as_str()) {
                return Err(error(
                    format!("{path}.bearer_methods_supported[{i}]"),
                    format!("{method:?} is not one of \"header\", \"body\", \"query\""),
                ));
            }
        }
        // RFC 9728 §3.1: the well-known segment goes between the host and the path.
        let well_known_path = format!(
            "/.well-known/oauth-protected-resource{}",
            if resource_path == "/" {
                ""
            } else {
                resource_path
            }
        );
        let url = format!("{origin}{well_known_path}");
        let document = serde_json::to_string(&self).map_err(|e| error(path, e.to_string()))?;
        Ok(ResourceMetadata {
            document,
            well_known_path,
            url,
        })
    }
}

/// Splits an absolute http(s) URL into origin and path; refuses queries, fragments and
/// whitespace, which have no place in a resource or issuer identifier.
fn split_url(url: &str) -> Result<(&str, &str), String> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| format!("{url:?} is not an absolute https:// or http:// URL"))?;
    if url.contains(['?', '#']) || url.contains(|c: char| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "{url:?} must not have a query, a fragment or spaces"
        ));
    }
    let host = rest.find('/').unwrap_or(rest.len());
    if host == 0 {
        return Err(format!("{url:?} has no host"));
    }
    url.split_at_checked(url.len() - rest.len() + host)
        .ok_or_else(|| format!("{url:?} is not a URL"))
}
