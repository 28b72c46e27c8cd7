//! One request's authentication: its credentials read from the head into one typed
//! [`Identity`], and the OAuth resource-server answers (RFC 6750 challenges, RFC 9728
//! metadata) when nobody is.

use crate::identity::{AuthError, Authenticator, Credentials, Identity, KeyLookup, VerifiedTokens};
use crate::protocol::head::RequestHead;
use crate::report::reject::{push_json_string, Code, LocalReply, Rejection};

/// Root form of the protected-resource metadata path; the path-suffixed form appends the
/// resource's path.
const WELL_KNOWN: &str = "/.well-known/oauth-protected-resource";

/// The outcome of authenticating one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthStep {
    Authenticated(Identity),
    /// Provider `provider` (index) has no usable key yet; `unknown_kid` when it has keys but
    /// not the token's. The glue fetches, waits (bounded) and tries again.
    NeedKeys {
        provider: usize,
        unknown_kid: bool,
    },
    Reject(Rejection),
}

/// The TLS peer's certificate names, when the connection has one.
#[derive(Debug, Clone, Default)]
pub struct Peer {
    pub uri_sans: Vec<String>,
    pub dns_sans: Vec<String>,
}

/// The metadata document, when `head` asks for it (`GET` on either well-known path).
pub(crate) fn metadata_reply(
    auth: Option<&Authenticator>,
    head: &RequestHead,
) -> Option<LocalReply> {
    let metadata = auth?.resource_metadata.as_ref()?;
    let path = head.path_only();
    let asked = path == WELL_KNOWN || path == metadata.well_known_path;
    (asked && head.method() == "GET").then(|| LocalReply {
        status: 200,
        content_type: "application/json",
        body: metadata.document.clone(),
    })
}

/// Authenticates the caller of an MCP request. Without an `auth` section every caller is
/// anonymous.
pub(crate) fn authenticate(
    auth: Option<&Authenticator>,
    head: &RequestHead,
    peer: &Peer,
    keys: &dyn KeyLookup,
    cache: &mut dyn VerifiedTokens,
    now: u64,
) -> AuthStep {
    let Some(auth) = auth else {
        return AuthStep::Authenticated(Identity::anonymous());
    };
    let mut headers = Vec::new();
    for name in auth.header_names() {
        let mut values = head.values(name);
        if let Some(value) = values.next() {
            if values.next().is_some() {
                // Which copy counts would be up to each reader: refuse both.
                return reject_auth(
                    Some(auth),
                    &AuthError::InvalidToken(format!("{name} header appears more than once")),
                );
            }
            headers.push((name.as_str(), value));
        }
    }
    let credentials = Credentials {
        headers: &headers,
        peer_uri_sans: &peer.uri_sans,
        peer_dns_sans: &peer.dns_sans,
    };
    let result = auth
        .authenticate(&credentials, keys, cache, now)
        .and_then(|identity| auth.check_scopes(&identity).map(|()| identity));
    match result {
        Ok(identity) => AuthStep::Authenticated(identity),
        Err(AuthError::KeysUnavailable { provider }) => need_keys(auth, &provider, false),
        Err(AuthError::UnknownKid { provider, .. }) => need_keys(auth, &provider, true),
        Err(e) => reject_auth(Some(auth), &e),
    }
}

fn need_keys(auth: &Authenticator, provider: &str, unknown_kid: bool) -> AuthStep {
    match auth.providers.iter().position(|p| p.name == provider) {
        Some(provider) => AuthStep::NeedKeys {
            provider,
            unknown_kid,
        },
        None => AuthStep::Reject(Rejection::new(Code::Internal, "unknown JWT provider")),
    }
}

/// The answer for a request that is still waiting for keys it cannot get.
pub(crate) fn keys_unavailable(
    auth: Option<&Authenticator>,
    provider: usize,
    unknown_kid: bool,
) -> Rejection {
    let name = auth
        .and_then(|a| a.providers.get(provider))
        .map_or("?", |p| p.name.as_str());
    if unknown_kid {
        rejection(
            auth,
            &AuthError::UnknownKid {
                provider: name.to_owned(),
                kid: String::new(),
            },
        )
    } else {
        Rejection::new(
            Code::Unavailable,
            format!("signing keys of provider {name:?} are not available; try again later"),
        )
    }
}

fn reject_auth(auth: Option<&Authenticator>, error: &AuthError) -> AuthStep {
    AuthStep::Reject(rejection(auth, error))
}

/// 401 (or 403 for a missing scope) with the `WWW-Authenticate` challenge MCP clients use
/// to discover the authorization server and step up their scopes.
fn rejection(auth: Option<&Authenticator>, error: &AuthError) -> Rejection {
    let mut challenge = String::from("Bearer");
    let mut params: Vec<(&str, String)> = Vec::new();
    if let Some(e) = error.www_authenticate_error() {
        params.push(("error", e.to_owned()));
    }
    let code = match error {
        AuthError::InsufficientScope { required } => {
            params.push(("scope", required.join(" ")));
            Code::Forbidden
        }
        _ => Code::Unauthenticated,
    };
    if let Some(m) = auth.and_then(|a| a.resource_metadata.as_ref()) {
        params.push(("resource_metadata", m.url.clone()));
    }
    for (i, (k, v)) in params.iter().enumerate() {
        challenge.push_str(if i == 0 { " " } else { ", " });
        challenge.push_str(k);
        challenge.push('=');
        // A quoted-string is a JSON string without control characters, which `v` lacks.
        push_json_string(&mut challenge, v);
    }
    Rejection::new(code, error.to_string()).with_header("www-authenticate", challenge)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::gate::{Gate, HeadVerdict};
    use crate::identity::key_store::KeyStore;
    use crate::identity::TokenCache;

    const CONFIG: &str = r#"{"auth":{
        "jwt_providers":[{"name":"corp","issuer":"https://idp.example.com","audiences":["mcp"],
            "jwks":{"keys":[{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}}],
        "api_keys":{"header":"x-api-key","keys":[{"name":"bot","sha256":"2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b","scopes":["read"]}]},
        "required_scopes":["mcp:tools"],
        "resource_metadata":{"resource":"https://mcp.example.com/mcp","authorization_servers":["https://idp.example.com"]}}}"#;

    fn head(method: &str, path: &str, headers: &[(&str, &str)]) -> RequestHead {
        RequestHead::for_test(method, path, headers, true)
    }

    fn step(config: &Config, headers: &[(&str, &str)]) -> AuthStep {
        let gate = Gate { config };
        let mut cache = TokenCache::default();
        gate.authenticate(
            &head("POST", "/mcp", headers),
            &Peer::default(),
            &KeyStore::default(),
            &mut cache,
            0,
        )
    }

    #[test]
    fn challenges_point_to_the_metadata() {
        let config = Config::from_json(CONFIG.as_bytes()).unwrap();
        let AuthStep::Reject(r) = step(&config, &[]) else {
            panic!()
        };
        assert_eq!(
            (r.code, r.reason.as_str()),
            (Code::Unauthenticated, "missing credentials")
        );
        assert_eq!(
            r.header("www-authenticate"),
            Some(
                r#"Bearer resource_metadata="https://mcp.example.com/.well-known/oauth-protected-resource/mcp""#
            )
        );
        // sha256("secret") is configured, with scope "read" only.
        let AuthStep::Reject(r) = step(&config, &[("x-api-key", "secret")]) else {
            panic!()
        };
        assert_eq!(r.code, Code::Forbidden);
        assert_eq!(
            r.header("www-authenticate"),
            Some(
                r#"Bearer error="insufficient_scope", scope="mcp:tools", resource_metadata="https://mcp.example.com/.well-known/oauth-protected-resource/mcp""#
            )
        );
        let AuthStep::Reject(r) = step(&config, &[("authorization", "Bearer x.y.z")]) else {
            panic!()
        };
        assert_eq!(r.code, Code::Unauthenticated);
        assert!(
            r.header("www-authenticate")
                .unwrap_or_default()
                .starts_with(r#"Bearer error="invalid_token", "#),
            "{r:?}"
        );
    }

    #[test]
    fn repeated_credential_headers_are_refused() {
        let config = Config::from_json(CONFIG.as_bytes()).unwrap();
        let AuthStep::Reject(r) = step(&config, &[("x-api-key", "secret"), ("x-api-key", "other")])
        else {
            panic!()
        };
        assert_eq!(
            r.reason,
            "invalid token: x-api-key header appears more than once"
        );
    }

    #[test]
    fn without_auth_everyone_is_anonymous() {
        let config = Config::from_json(b"{}").unwrap();
        assert_eq!(
            step(&config, &[("authorization", "Bearer x")]),
            AuthStep::Authenticated(Identity::anonymous())
        );
        assert_eq!(
            Gate { config: &config }.metadata_reply(&head("GET", WELL_KNOWN, &[])),
            None
        );
    }

    #[test]
    fn serves_the_metadata_document_on_both_paths() {
        let config = Config::from_json(CONFIG.as_bytes()).unwrap();
        let gate = Gate { config: &config };
        for path in [WELL_KNOWN, "/.well-known/oauth-protected-resource/mcp"] {
            let Some(HeadVerdict::Respond(reply)) = gate.metadata_reply(&head("GET", path, &[]))
            else {
                panic!("{path}")
            };
            let doc: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
            assert_eq!(doc["resource"], "https://mcp.example.com/mcp");
            assert_eq!(doc["authorization_servers"][0], "https://idp.example.com");
        }
        assert_eq!(gate.metadata_reply(&head("POST", WELL_KNOWN, &[])), None);
        assert_eq!(
            gate.metadata_reply(&head(
                "GET",
                "/.well-known/oauth-protected-resource/other",
                &[]
            )),
            None
        );
    }
}
