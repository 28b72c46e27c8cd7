//! The gate's authentication step: who is calling, as one typed [`Identity`], and the
//! OAuth resource-server answers (RFC 6750 challenges, RFC 9728 metadata) when nobody is.

use crate::auth::{AuthError, Credentials, Identity, KeyLookup, TokenCache};
use crate::gate::{Gate, HeadVerdict, LocalReply, RequestHead};
use crate::reject::{push_json_string, Code, Rejection};

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

impl Gate<'_> {
    /// The metadata document, when `head` asks for it (`GET` on either well-known path).
    pub fn metadata_reply(&self, head: &RequestHead) -> Option<HeadVerdict> {
        let metadata = self.config.auth.as_ref()?.resource_metadata.as_ref()?;
        let path = head.path_only();
        let asked = path == WELL_KNOWN || path == metadata.well_known_path;
        (asked && head.method == "GET").then(|| {
            HeadVerdict::Respond(LocalReply {
                status: 200,
                content_type: "application/json",
                body: metadata.document.clone(),
            })
        })
    }

    /// Authenticates the caller of an MCP request. Without an `auth` section every caller
    /// is anonymous.
    pub fn authenticate(
        &self,
        head: &RequestHead,
        peer: &Peer,
        keys: &dyn KeyLookup,
        cache: &mut TokenCache,
        now: u64,
    ) -> AuthStep {
        let Some(auth) = &self.config.auth else {
            return AuthStep::Authenticated(Identity::anonymous());
        };
        let mut credentials = Credentials {
            peer_uri_sans: peer.uri_sans.clone(),
            peer_dns_sans: peer.dns_sans.clone(),
            ..Credentials::default()
        };
        for name in auth.header_names() {
            let mut values = head.values(name);
            if let Some(value) = values.next() {
                if values.next().is_some() {
                    // Which copy counts would be up to each reader: refuse both.
                    return self.reject_auth(&AuthError::InvalidToken(format!(
                        "{name} header appears more than once"
                    )));
                }
                credentials.headers.insert(name.clone(), value.to_vec());
            }
        }
        let result = auth
            .authenticate(&credentials, keys, cache, now)
            .and_then(|identity| auth.check_scopes(&identity).map(|()| identity));
        match result {
            Ok(identity) => AuthStep::Authenticated(identity),
            Err(AuthError::KeysUnavailable { provider }) => self.need_keys(&provider, false),
            Err(AuthError::UnknownKid { provider, .. }) => self.need_keys(&provider, true),
            Err(e) => self.reject_auth(&e),
        }
    }

    fn need_keys(&self, provider: &str, unknown_kid: bool) -> AuthStep {
        let index = self
            .config
            .auth
            .as_ref()
            .and_then(|a| a.providers.iter().position(|p| p.name == provider));
        match index {
            Some(provider) => AuthStep::NeedKeys {
                provider,
                unknown_kid,
            },
            None => AuthStep::Reject(Rejection::new(Code::Internal, "unknown JWT provider")),
        }
    }

    /// The answer for a request that is still waiting for keys it cannot get.
    pub fn keys_unavailable(&self, provider: usize, unknown_kid: bool) -> Rejection {
        let name = self
            .config
            .auth
            .as_ref()
            .and_then(|a| a.providers.get(provider))
            .map_or("?", |p| p.name.as_str());
        if unknown_kid {
            self.rejection(&AuthError::UnknownKid {
                provider: name.to_owned(),
                kid: String::new(),
            })
        } else {
            Rejection::new(
                Code::Unavailable,
                format!("signing keys of provider {name:?} are not available; try again later"),
            )
        }
    }

    fn reject_auth(&self, error: &AuthError) -> AuthStep {
        AuthStep::Reject(self.rejection(error))
    }

    /// 401 (or 403 for a missing scope) with the `WWW-Authenticate` challenge MCP clients
    /// use to discover the authorization server and step up their scopes.
    pub fn rejection(&self, error: &AuthError) -> Rejection {
        let auth = self.config.auth.as_ref();
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
        let mut rejection = Rejection::new(code, error.to_string());
        rejection.challenge = Some(challenge);
        rejection
    }
}
