//! Identity: who is calling, as one typed [`Identity`] for later stages, or the 401/403
//! challenge ([`challenge`]) when nobody is; when remote signing keys are fetched is
//! `key_store`'s schedule. It never decides what a caller may do (that is policy).
//!
//! Pure core: the glue reads the headers named by [`Authenticator::header_names`] and the
//! peer certificate's SANs into [`Credentials`], fetches remote JWKS documents (parsed with
//! [`KeySet::from_jwks`]) and passes the current time; nothing here reads a clock or talks
//! to the host. Credentials are tried in a fixed order: an API key header, a bearer token,
//! the peer certificate (if configured), anonymous access (if allowed).

mod apikey;
mod cache;
pub mod challenge;
mod config;
mod es256;
mod jws;
mod jwt;
pub(crate) mod key_store;
mod keys;
pub mod ownership;
mod rsa;
pub mod shared_tokens;
mod sip128;

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use serde_json::Value;

pub use cache::{Cached, TokenCache, TokenKey, Trusted, VerifiedTokens, TOKEN_CACHE_CAPACITY};
pub use config::{AuthDto, ResourceMetadata};
pub use jwt::{Provider, RemoteJwks};
pub use keys::{Alg, KeySet};

use apikey::ApiKeys;

/// How a caller proved who it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentityKind {
    /// A JWT verified by the named provider.
    Jwt { provider: String },
    /// A configured API key, by name.
    ApiKey { name: String },
    /// The TLS peer certificate (subject is the chosen SAN).
    Peer,
    /// No credentials, and anonymous access is allowed (subject is empty).
    Anonymous,
}

/// The authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub kind: IdentityKind,
    pub subject: String,
    pub roles: Vec<String>,
    pub scopes: Vec<String>,
    /// The configured `claims.other`, each rendered as strings.
    pub claims: BTreeMap<String, Vec<String>>,
    /// Unix seconds after which the credentials are no longer valid (JWT `exp`).
    pub expires_at: Option<u64>,
}

impl fmt::Display for IdentityKind {
    /// `jwt:<provider>`, `api_key:<name>`, `peer` or `anonymous`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdentityKind::Jwt { provider } => write!(f, "jwt:{provider}"),
            IdentityKind::ApiKey { name } => write!(f, "api_key:{name}"),
            IdentityKind::Peer => f.write_str("peer"),
            IdentityKind::Anonymous => f.write_str("anonymous"),
        }
    }
}

impl Identity {
    /// The caller without credentials (empty subject).
    pub fn anonymous() -> Identity {
        Identity::bare(IdentityKind::Anonymous, "")
    }

    /// An identity with a subject and nothing else.
    fn bare(kind: IdentityKind, subject: &str) -> Identity {
        Identity {
            kind,
            subject: subject.to_owned(),
            roles: Vec::new(),
            scopes: Vec::new(),
            claims: BTreeMap::new(),
            expires_at: None,
        }
    }
}

/// Why a request is not authenticated. Reasons name the failed check, never the token or a
/// secret, so they may be sent to the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthError {
    /// Nothing to authenticate with, and anonymous access is not allowed.
    MissingCredentials,
    /// A bearer token was present but is not acceptable.
    InvalidToken(String),
    /// The provider's keys have not been fetched yet: fetch them, then retry.
    KeysUnavailable { provider: String },
    /// No key of the provider has the token's `kid`: refetch once (rate-limited), then
    /// fail closed. `kid` comes from the untrusted token.
    UnknownKid { provider: String, kid: String },
    /// An API key was presented but matches no configured key.
    InvalidApiKey,
    /// Authenticated, but without every scope in `required`.
    InsufficientScope { required: Vec<String> },
}

impl AuthError {
    /// The RFC 6750 `error` of the `WWW-Authenticate: Bearer` challenge, if any.
    pub fn www_authenticate_error(&self) -> Option<&'static str> {
        match self {
            AuthError::InvalidToken(_) | AuthError::UnknownKid { .. } => Some("invalid_token"),
            AuthError::InsufficientScope { .. } => Some("insufficient_scope"),
            AuthError::MissingCredentials
            | AuthError::KeysUnavailable { .. }
            | AuthError::InvalidApiKey => None,
        }
    }
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuthError::MissingCredentials => f.write_str("missing credentials"),
            AuthError::InvalidToken(reason) => write!(f, "invalid token: {reason}"),
            AuthError::KeysUnavailable { provider } => {
                write!(f, "keys of provider {provider:?} are not available yet")
            }
            AuthError::UnknownKid { provider, .. } => {
                write!(
                    f,
                    "invalid token: no key of provider {provider:?} has its kid"
                )
            }
            AuthError::InvalidApiKey => f.write_str("invalid API key"),
            AuthError::InsufficientScope { required } => {
                write!(f, "insufficient scope: requires {:?}", required.join(" "))
            }
        }
    }
}

impl std::error::Error for AuthError {}

/// What the glue read from a request, borrowed from it (a token is not copied).
#[derive(Debug, Clone, Copy, Default)]
pub struct Credentials<'a> {
    /// Values of the headers in [`Authenticator::header_names`] that are present (each
    /// once: a repeated one is refused before).
    pub headers: &'a [(&'a str, &'a [u8])],
    /// URI SANs of the verified TLS peer certificate (empty without mTLS).
    pub peer_uri_sans: &'a [String],
    /// DNS SANs of the verified TLS peer certificate.
    pub peer_dns_sans: &'a [String],
}

impl<'a> Credentials<'a> {
    fn header(&self, name: &str) -> Option<&'a [u8]> {
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| *v)
    }
}

/// The current keys of each provider, by index in [`Authenticator::providers`]. A
/// provider's inline keys ([`Provider::inline_keys`]) are used even if this omits them.
pub trait KeyLookup {
    /// The key set of provider `provider`; `None` while remote keys are not fetched yet.
    fn keys(&self, provider: usize) -> Option<&KeySet>;
}

impl KeyLookup for Vec<Option<KeySet>> {
    fn keys(&self, provider: usize) -> Option<&KeySet> {
        self.get(provider).and_then(Option::as_ref)
    }
}

/// Which SAN of the TLS peer certificate names the caller.
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PeerIdentity {
    /// The first URI SAN starting with `spiffe://`.
    Spiffe,
    /// The first URI SAN, else the first DNS SAN.
    San,
}

impl PeerIdentity {
    fn subject<'a>(self, uri_sans: &'a [String], dns_sans: &'a [String]) -> Option<&'a str> {
        match self {
            PeerIdentity::Spiffe => uri_sans.iter().find(|s| s.starts_with("spiffe://")),
            PeerIdentity::San => uri_sans.first().or(dns_sans.first()),
        }
        .map(String::as_str)
    }
}

/// The compiled `auth` configuration (see [`AuthDto::compile`]).
#[derive(Debug, Clone)]
pub struct Authenticator {
    pub providers: Vec<Provider>,
    api_keys: Option<ApiKeys>,
    pub peer_identity: Option<PeerIdentity>,
    pub allow_anonymous: bool,
    pub required_scopes: Vec<String>,
    pub resource_metadata: Option<ResourceMetadata>,
    /// Slots of the shared cache of verified tokens (see [`shared_tokens`]); 0: off.
    pub shared_token_cache_slots: u32,
    /// Every header a credential may come from, lower case, without duplicates.
    header_names: Vec<String>,
    /// The largest `max_token_bytes` of any provider: longer tokens are not even decoded.
    max_token_bytes: usize,
}

impl Authenticator {
    /// The configured API keys, if any.
    pub(crate) fn api_keys(&self) -> Option<&ApiKeys> {
        self.api_keys.as_ref()
    }

    /// The request headers to copy into [`Credentials::headers`].
    pub fn header_names(&self) -> &[String] {
        &self.header_names
    }

    /// Authenticates a request at `now` (unix seconds). Verified tokens are cached in
    /// `cache` until their `exp`; `keys` supplies the fetched keys of remote providers.
    pub fn authenticate(
        &self,
        credentials: &Credentials<'_>,
        keys: &dyn KeyLookup,
        cache: &mut dyn VerifiedTokens,
        now: u64,
    ) -> Result<Identity, AuthError> {
        if let Some(api_keys) = &self.api_keys {
            if let Some(presented) = credentials.header(&api_keys.header) {
                return api_keys.identify(presented).ok_or(AuthError::InvalidApiKey);
            }
        }
        let token = self
            .providers
            .iter()
            .find_map(|p| p.source.token(credentials.header(&p.source.header)?));
        if let Some(token) = token {
            return self.bearer(token, keys, cache, now);
        }
        let peer = self
            .peer_identity
            .and_then(|p| p.subject(credentials.peer_uri_sans, credentials.peer_dns_sans));
        match peer {
            Some(subject) => Ok(Identity::bare(IdentityKind::Peer, subject)),
            None if self.allow_anonymous => Ok(Identity::anonymous()),
            None => Err(AuthError::MissingCredentials),
        }
    }

    /// Checks that `identity` holds every scope in `required_scopes`.
    pub fn check_scopes(&self, identity: &Identity) -> Result<(), AuthError> {
        if self
            .required_scopes
            .iter()
            .all(|s| identity.scopes.contains(s))
        {
            Ok(())
        } else {
            Err(AuthError::InsufficientScope {
                required: self.required_scopes.clone(),
            })
        }
    }

    /// Whether the provider and key named by a cached entry still vouch for it: the provider
    /// is configured as it was, and its current key set still holds the key.
    fn still_trusted(&self, entry: &Cached, keys: &dyn KeyLookup) -> bool {
        self.providers
            .iter()
            .enumerate()
            .find(|(_, p)| p.cache_tag == entry.provider)
            .and_then(|(i, p)| p.inline_keys.as_ref().or(keys.keys(i)))
            .is_some_and(|set| set.contains(&entry.key))
    }

    /// A bearer token: from the cache, else verified by the provider of its issuer.
    fn bearer(
        &self,
        token: &[u8],
        keys: &dyn KeyLookup,
        cache: &mut dyn VerifiedTokens,
        now: u64,
    ) -> Result<Identity, AuthError> {
        let invalid = |reason: &str| AuthError::InvalidToken(reason.to_owned());
        if token.len() > self.max_token_bytes {
            return Err(invalid("token is too large"));
        }
        let key = TokenKey::new(token);
        if let Some(identity) = cache.get(&key, now, &|e| self.still_trusted(e, keys)) {
            return Ok(identity);
        }
        let token =
            std::str::from_utf8(token).map_err(|_| invalid("malformed token: not UTF-8"))?;
        let claims = jwt::unverified_claims(token)?;
        let issuer = claims
            .get("iss")
            .and_then(Value::as_str)
            .ok_or_else(|| invalid("token has no issuer"))?;
        let (index, provider) = self
            .providers
            .iter()
            .enumerate()
            .find(|(_, p)| p.issuer == issuer)
            .ok_or_else(|| invalid("token issuer is not trusted"))?;
        let verified = provider.verify(token, &claims, keys.keys(index), now);
        if !matches!(
            verified,
            Err(AuthError::KeysUnavailable { .. } | AuthError::UnknownKid { .. })
        ) {
            cache.count_verification();
        }
        let verified = verified?;
        cache.insert(
            &key,
            Cached {
                identity: verified.identity.clone(),
                provider: provider.cache_tag,
                key: verified.key,
                valid_from: verified.valid_from,
                valid_until: verified.valid_until,
            },
        );
        Ok(verified.identity)
    }
}

#[cfg(test)]
mod tests;
