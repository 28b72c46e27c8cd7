//! JWT bearer tokens: where to find them, which provider verifies them, and the identity
//! their claims map to.

use std::collections::{BTreeMap, HashSet};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jwt_simple::prelude::{Duration, Token, UnixTimeStamp, VerificationOptions};
use jwt_simple::JWTError;
use serde_json::{Map, Value};

use super::cache::ProviderTag;
use super::keys::{Alg, KeyError, KeyFingerprint, KeySet};
use super::{AuthError, Identity, IdentityKind};

/// The header carrying a token, and the scheme prefix before it.
#[derive(Debug, Clone)]
pub(crate) struct TokenSource {
    /// Lower-case header name.
    pub header: String,
    /// Matched case-insensitively (`Bearer ` also matches `bearer `); may be empty.
    pub prefix: String,
}

impl TokenSource {
    /// The token in `value` if it starts with the prefix.
    pub fn token<'a>(&self, value: &'a [u8]) -> Option<&'a [u8]> {
        let prefix = value.get(..self.prefix.len())?;
        prefix
            .eq_ignore_ascii_case(self.prefix.as_bytes())
            .then(|| value.get(self.prefix.len()..))
            .flatten()
    }
}

/// Where the configured identity fields come from, as dotted claim paths.
#[derive(Debug, Clone)]
pub(crate) struct ClaimPaths {
    pub subject: String,
    pub roles: Option<String>,
    pub scopes: String,
    pub other: BTreeMap<String, String>,
}

/// Where a remote provider's JWKS is fetched from; the glue fetches, the core parses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteJwks {
    /// Envoy cluster to send the request to.
    pub cluster: String,
    pub path: String,
    /// `:authority` of the request.
    pub authority: String,
    /// Refetch period of a successfully fetched set.
    pub refresh_seconds: u64,
    /// Timeout of one fetch.
    pub timeout_ms: u64,
    /// Least time between two refetches caused by an unknown `kid`.
    pub min_refetch_seconds: u64,
    /// Longest a request waits for a first fetch before it fails closed.
    pub max_wait_ms: u64,
}

/// One trusted token issuer.
#[derive(Debug, Clone)]
pub struct Provider {
    pub name: String,
    pub issuer: String,
    /// Where the keys are fetched from; `None` when they are inline.
    pub remote_jwks: Option<RemoteJwks>,
    /// The configured keys; `None` when they are fetched.
    pub inline_keys: Option<KeySet>,
    pub(crate) algorithms: Vec<Alg>,
    /// Issuer, audiences, leeway and size limit; the time is set per call.
    pub(crate) options: VerificationOptions,
    pub(crate) source: TokenSource,
    pub(crate) claims: ClaimPaths,
    /// Digest of everything above that shapes a verified identity (see [`cache_tag`]).
    pub(crate) cache_tag: ProviderTag,
}

/// A verified token: its identity, the key that checked it and the window it may be served
/// from the cache.
pub(crate) struct Verified {
    pub identity: Identity,
    pub key: KeyFingerprint,
    pub valid_from: u64,
    pub valid_until: u64,
}

fn invalid(reason: impl Into<String>) -> AuthError {
    AuthError::InvalidToken(reason.into())
}

/// The claims of a token, decoded without verification: only to pick its provider, and
/// read again only after the signature over these very bytes has been checked.
pub(crate) fn unverified_claims(token: &str) -> Result<Map<String, Value>, AuthError> {
    let mut parts = token.split('.');
    let payload = match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(_), Some(payload), Some(_), None) => payload,
        _ => return Err(invalid("malformed token: not three dot-separated parts")),
    };
    let json = URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| invalid("malformed token: payload is not base64url"))?;
    // Read as a Value (the filter's one serde_json reader of slices), then its object.
    match serde_json::from_slice(&json) {
        Ok(Value::Object(claims)) => Ok(claims),
        _ => Err(invalid("malformed token: payload is not a JSON object")),
    }
}

impl Provider {
    /// Verifies `token` fully (header, signature, time, issuer, audience) and maps its
    /// claims; `claims` are the payload decoded by [`unverified_claims`],
    /// `looked_up` the keys the glue holds for it (inline keys take precedence).
    pub(crate) fn verify(
        &self,
        token: &str,
        claims: &Map<String, Value>,
        looked_up: Option<&KeySet>,
        now: u64,
    ) -> Result<Verified, AuthError> {
        if self
            .options
            .max_token_length
            .is_some_and(|max| token.len() > max)
        {
            return Err(invalid("token is too large"));
        }
        let header =
            Token::decode_metadata(token).map_err(|_| invalid("malformed token: bad header"))?;
        let alg = match Alg::from_name(header.algorithm()) {
            Some(alg) if self.algorithms.contains(&alg) => alg,
            Some(alg) => return Err(invalid(format!("algorithm {} is not accepted", alg.name()))),
            None if header.algorithm().eq_ignore_ascii_case("none") => {
                return Err(invalid("unsigned token (alg none)"))
            }
            None => return Err(invalid("unsupported algorithm")),
        };
        let keys =
            self.inline_keys
                .as_ref()
                .or(looked_up)
                .ok_or_else(|| AuthError::KeysUnavailable {
                    provider: self.name.clone(),
                })?;
        let options = VerificationOptions {
            artificial_time: Some(UnixTimeStamp::from_secs(now)),
            ..self.options.clone()
        };
        let (verified, key) = keys
            .verify(alg, header.key_id(), token, &options)
            .map_err(|e| match e {
                KeyError::UnknownKid => AuthError::UnknownKid {
                    provider: self.name.clone(),
                    kid: header.key_id().unwrap_or_default().to_owned(),
                },
                KeyError::NoKeyForAlg => invalid(format!("no key for algorithm {}", alg.name())),
                KeyError::Token(e) => invalid(reason(&e)),
            })?;
        let exp = verified
            .expires_at
            .ok_or_else(|| invalid("token has no exp claim"))?
            .as_secs();
        let leeway = self.options.time_tolerance.unwrap_or_default().as_secs();
        // jwt-simple still accepts a token at `exp` + leeway; RFC 7519 does not.
        if now >= exp.saturating_add(leeway) {
            return Err(invalid("token has expired"));
        }
        let nbf = verified.invalid_before.map_or(0, |t| t.as_secs());
        Ok(Verified {
            identity: self.identity(claims, exp)?,
            key,
            valid_from: nbf.saturating_sub(leeway),
            valid_until: exp,
        })
    }

    fn identity(&self, claims: &Map<String, Value>, exp: u64) -> Result<Identity, AuthError> {
        let subject = lookup(claims, &self.claims.subject)
            .and_then(scalar)
            .ok_or_else(|| {
                invalid(format!(
                    "claim {:?} is missing or not a string",
                    self.claims.subject
                ))
            })?;
        let roles = self
            .claims
            .roles
            .as_deref()
            .and_then(|path| lookup(claims, path))
            .map(strings)
            .unwrap_or_default();
        let scopes = match lookup(claims, &self.claims.scopes) {
            Some(Value::String(s)) => s.split_whitespace().map(str::to_owned).collect(),
            Some(other) => strings(other),
            None => Vec::new(),
        };
        // Inserted one by one, already in key order: collecting into a BTreeMap would link a
        // std sort (several KB of wasm) to order them again.
        let mut other = BTreeMap::new();
        for (name, path) in &self.claims.other {
            if let Some(value) = lookup(claims, path) {
                other.insert(name.clone(), strings(value));
            }
        }
        Ok(Identity {
            kind: IdentityKind::Jwt {
                provider: self.name.clone(),
            },
            subject,
            roles,
            scopes,
            claims: other,
            expires_at: Some(exp),
        })
    }
}

/// Verification options for a provider, with an explicit leeway (jwt-simple's default
/// tolerance is 15 minutes).
pub(crate) fn options(
    issuer: &str,
    audiences: &[String],
    leeway_seconds: u64,
    max_token_bytes: usize,
) -> VerificationOptions {
    VerificationOptions {
        allowed_issuers: Some(HashSet::from([issuer.to_owned()])),
        allowed_audiences: Some(audiences.iter().cloned().collect()),
        time_tolerance: Some(Duration::from_secs(leeway_seconds)),
        max_token_length: Some(max_token_bytes),
        ..VerificationOptions::default()
    }
}

/// Names a provider's settings in shared cache entries, so that a worker running another
/// configuration (during a reload) never takes an identity mapped differently: the first 16
/// bytes of SHA-256 over name, issuer, audiences, algorithms, leeway and claim paths.
pub(crate) fn cache_tag(
    name: &str,
    issuer: &str,
    audiences: &[String],
    algorithms: &[Alg],
    leeway_seconds: u64,
    claims: &ClaimPaths,
) -> ProviderTag {
    let described =
        format!("{name:?}{issuer:?}{audiences:?}{algorithms:?}{leeway_seconds}{claims:?}");
    let hash = hmac_sha256::Hash::hash(described.as_bytes());
    std::array::from_fn(|i| hash.get(i).copied().unwrap_or_default())
}

/// A precise reason for a jwt-simple rejection, never quoting the token.
fn reason(e: &jwt_simple::Error) -> &'static str {
    match e.downcast_ref::<JWTError>() {
        Some(JWTError::InvalidSignature | JWTError::InvalidAuthenticationTag) => {
            "invalid signature"
        }
        Some(JWTError::TokenHasExpired) => "token has expired",
        Some(JWTError::TokenNotValidYet) => "token is not valid yet (nbf)",
        Some(JWTError::ClockDrift) => "token is issued in the future (iat)",
        Some(JWTError::RequiredIssuerMismatch | JWTError::RequiredIssuerMissing) => "wrong issuer",
        Some(JWTError::RequiredAudienceMismatch | JWTError::RequiredAudienceMissing) => {
            "token is not meant for this audience"
        }
        Some(JWTError::TokenTooLong) => "token is too large",
        Some(JWTError::UnknownCriticalExtension) => "token has an unsupported critical header",
        Some(JWTError::NotJWT) => "token type is not JWT",
        _ => "malformed token",
    }
}

/// The value at a dotted path through nested objects. A key that itself contains dots
/// (`https://example.com/roles`) is matched whole first.
fn lookup<'a>(claims: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    if let Some(v) = claims.get(path) {
        return Some(v);
    }
    let (head, rest) = path.split_once('.')?;
    lookup(claims.get(head)?.as_object()?, rest)
}

/// A string, number or boolean claim as a string.
fn scalar(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A claim as strings: a scalar is one string, an array its scalar elements; objects and
/// nulls are ignored.
fn strings(value: &Value) -> Vec<String> {
    match value {
        Value::Array(items) => items.iter().filter_map(scalar).collect(),
        other => scalar(other).into_iter().collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_source_matches_the_scheme_case_insensitively() {
        let bearer = TokenSource {
            header: "authorization".into(),
            prefix: "Bearer ".into(),
        };
        let cases: [(&[u8], Option<&[u8]>); 6] = [
            (b"Bearer abc", Some(b"abc")),
            (b"bearer abc", Some(b"abc")),
            (b"BEARER abc", Some(b"abc")),
            (b"Basic abc", None),
            (b"Bearer", None),
            (b"Bearer ", Some(b"")),
        ];
        for (value, want) in cases {
            assert_eq!(
                bearer.token(value),
                want,
                "{:?}",
                String::from_utf8_lossy(value)
            );
        }
        let raw = TokenSource {
            header: "x-token".into(),
            prefix: String::new(),
        };
        assert_eq!(raw.token(b"abc"), Some(&b"abc"[..]));
    }

    #[test]
    fn dotted_paths_and_string_rendering() {
        let claims: Map<String, Value> = serde_json::from_str(
            r#"{"sub":"u1","realm_access":{"roles":["admin",7,true,null,{"x":1}]},
                "org":{"team":"blue","depth":{"n":1.5}},"https://example.com/roles":["r"],"flag":false}"#,
        )
        .unwrap();
        let cases: [(&str, Option<Vec<&str>>); 8] = [
            ("sub", Some(vec!["u1"])),
            ("realm_access.roles", Some(vec!["admin", "7", "true"])),
            ("org.team", Some(vec!["blue"])),
            ("org.depth.n", Some(vec!["1.5"])),
            ("org.depth", Some(vec![])),
            ("https://example.com/roles", Some(vec!["r"])),
            ("flag", Some(vec!["false"])),
            ("org.missing", None),
        ];
        for (path, want) in cases {
            let got = lookup(&claims, path).map(strings);
            let want = want.map(|v| v.into_iter().map(String::from).collect::<Vec<_>>());
            assert_eq!(got, want, "{path}");
        }
    }
}
