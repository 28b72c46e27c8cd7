//! JSON Web Keys (RFC 7517) turned into verifiers, one per usable algorithm: RSA keys into
//! [`RsaVerifier`]s (their modulus prepared once, here), P-256 keys into [`Es256Key`]s
//! (their point tables built once, here), the others into jwt-simple's.
//!
//! jwt-simple has no JWKS parser: keys are rebuilt from their components (RSA `n`/`e`, EC
//! `x`/`y` as an uncompressed SEC1 point, Ed25519 `x`, `oct` `k`). A key without `alg`
//! yields a verifier for every algorithm its type fits, so a token's `alg` must still match
//! the key type: an RSA key never checks an HMAC tag.

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::{alphabet, Engine};
use jwt_simple::prelude::*;
use jwt_simple::JWTError;
use serde::Deserialize;

use super::es256::Es256Key;
use super::rsa::{Digest, Padding, RsaVerifier};

/// JWK members are base64url; some issuers still pad them.
const B64URL: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Shortest accepted RSA modulus: 2048 bits.
const MIN_RSA_MODULUS_BYTES: usize = 256;

/// Declares [`Alg`] and `Verifier` (one key type per algorithm) from one list,
/// so names, variants and the verification dispatch cannot drift apart.
macro_rules! algorithms {
    ($($alg:ident($key:ty)),* $(,)?) => {
        /// A JWS algorithm mcp-guard verifies. `none` is not one.
        #[allow(clippy::upper_case_acronyms)]
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Alg { $($alg),* }

        impl Alg {
            /// Every supported algorithm, in a stable order.
            pub const ALL: &'static [Alg] = &[$(Alg::$alg),*];

            /// The `alg` header value.
            pub fn name(self) -> &'static str {
                match self { $(Alg::$alg => stringify!($alg)),* }
            }
        }

        #[allow(clippy::upper_case_acronyms)]
        #[derive(Debug, Clone)]
        enum Verifier { $($alg($key)),* }

        impl Verifier {
            fn alg(&self) -> Alg {
                match self { $(Verifier::$alg(_) => Alg::$alg),* }
            }

            fn verify(
                &self,
                token: &str,
                options: VerificationOptions,
            ) -> Result<JWTClaims<NoCustomClaims>, jwt_simple::Error> {
                match self { $(Verifier::$alg(k) => k.verify_token(token, Some(options))),* }
            }
        }
    };
}

algorithms!(
    RS256(RsaVerifier),
    RS384(RsaVerifier),
    RS512(RsaVerifier),
    PS256(RsaVerifier),
    PS384(RsaVerifier),
    PS512(RsaVerifier),
    ES256(Es256Key),
    ES384(ES384PublicKey),
    EdDSA(Ed25519PublicKey),
    HS256(HS256Key),
    HS384(HS384Key),
    HS512(HS512Key),
);

impl Alg {
    /// A provider's default: every public-key algorithm.
    pub const ASYMMETRIC: &'static [Alg] = &[
        Alg::RS256,
        Alg::RS384,
        Alg::RS512,
        Alg::PS256,
        Alg::PS384,
        Alg::PS512,
        Alg::ES256,
        Alg::ES384,
        Alg::EdDSA,
    ];

    /// Parses an `alg` value; `none` and unknown names are `None`.
    pub fn from_name(name: &str) -> Option<Alg> {
        Alg::ALL.iter().copied().find(|a| a.name() == name)
    }

    /// HMAC: the verification key is a shared secret.
    pub fn is_symmetric(self) -> bool {
        matches!(self, Alg::HS256 | Alg::HS384 | Alg::HS512)
    }
}

/// One JWK as published; unknown members (`x5c`, `key_ops`, …) are ignored, as RFC 7517 asks.
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Deserialize)]
pub struct Jwk {
    kty: String,
    kid: Option<String>,
    alg: Option<String>,
    #[serde(rename = "use")]
    use_: Option<String>,
    crv: Option<String>,
    n: Option<String>,
    e: Option<String>,
    x: Option<String>,
    y: Option<String>,
    k: Option<String>,
}

/// Key material by type, decoded and checked for size.
enum Material {
    Rsa { n: Vec<u8>, e: Vec<u8> },
    P256(Vec<u8>),
    P384(Vec<u8>),
    Ed25519(Vec<u8>),
    Oct(Vec<u8>),
}

impl Material {
    /// SHA-256 of the key's type and components: names the key in cached verifications.
    fn fingerprint(&self) -> KeyFingerprint {
        let mut h = hmac_sha256::Hash::new();
        let mut part = |tag: &[u8], bytes: &[u8]| {
            h.update(tag);
            h.update((bytes.len() as u32).to_le_bytes());
            h.update(bytes);
        };
        match self {
            Material::Rsa { n, e } => {
                part(b"RSA", n);
                part(b"e", e);
            }
            Material::P256(p) => part(b"P-256", p),
            Material::P384(p) => part(b"P-384", p),
            Material::Ed25519(x) => part(b"Ed25519", x),
            Material::Oct(k) => part(b"oct", k),
        }
        h.finalize()
    }

    /// The algorithms this material can verify (HMAC keys at least as long as the hash).
    fn algs(&self) -> Vec<Alg> {
        match self {
            Material::Rsa { .. } => vec![
                Alg::RS256,
                Alg::RS384,
                Alg::RS512,
                Alg::PS256,
                Alg::PS384,
                Alg::PS512,
            ],
            Material::P256(_) => vec![Alg::ES256],
            Material::P384(_) => vec![Alg::ES384],
            Material::Ed25519(_) => vec![Alg::EdDSA],
            Material::Oct(k) => [(Alg::HS256, 32), (Alg::HS384, 48), (Alg::HS512, 64)]
                .into_iter()
                .filter(|(_, min)| k.len() >= *min)
                .map(|(alg, _)| alg)
                .collect(),
        }
    }

    fn verifier(&self, alg: Alg) -> Result<Verifier, jwt_simple::Error> {
        Ok(match (alg, self) {
            (Alg::RS256, Material::Rsa { n, e }) => {
                Verifier::RS256(RsaVerifier::new(n, e, Padding::Pkcs1, Digest::Sha256)?)
            }
            (Alg::RS384, Material::Rsa { n, e }) => {
                Verifier::RS384(RsaVerifier::new(n, e, Padding::Pkcs1, Digest::Sha384)?)
            }
            (Alg::RS512, Material::Rsa { n, e }) => {
                Verifier::RS512(RsaVerifier::new(n, e, Padding::Pkcs1, Digest::Sha512)?)
            }
            (Alg::PS256, Material::Rsa { n, e }) => {
                Verifier::PS256(RsaVerifier::new(n, e, Padding::Pss, Digest::Sha256)?)
            }
            (Alg::PS384, Material::Rsa { n, e }) => {
                Verifier::PS384(RsaVerifier::new(n, e, Padding::Pss, Digest::Sha384)?)
            }
            (Alg::PS512, Material::Rsa { n, e }) => {
                Verifier::PS512(RsaVerifier::new(n, e, Padding::Pss, Digest::Sha512)?)
            }
            (Alg::ES256, Material::P256(p)) => Verifier::ES256(Es256Key::new(p)?),
            (Alg::ES384, Material::P384(p)) => Verifier::ES384(ES384PublicKey::from_bytes(p)?),
            (Alg::EdDSA, Material::Ed25519(x)) => Verifier::EdDSA(Ed25519PublicKey::from_bytes(x)?),
            (Alg::HS256, Material::Oct(k)) => Verifier::HS256(HS256Key::from_bytes(k)),
            (Alg::HS384, Material::Oct(k)) => Verifier::HS384(HS384Key::from_bytes(k)),
            (Alg::HS512, Material::Oct(k)) => Verifier::HS512(HS512Key::from_bytes(k)),
            _ => return Err(JWTError::InvalidPublicKey.into()),
        })
    }
}

/// SHA-256 of a key's material (see `Material::fingerprint`).
pub type KeyFingerprint = [u8; 32];

/// One verifier for one algorithm, under the `kid` of the JWK it came from.
#[derive(Debug, Clone)]
struct Key {
    kid: Option<String>,
    fingerprint: KeyFingerprint,
    verifier: Verifier,
}

/// A usable set of verification keys for one provider.
#[derive(Debug, Clone)]
pub struct KeySet {
    keys: Vec<Key>,
}

/// Why a [`KeySet`] did not accept a token.
#[derive(Debug)]
pub(crate) enum KeyError {
    /// No key has the token's `kid`: the set may be stale.
    UnknownKid,
    /// Keys exist, but none for the token's algorithm.
    NoKeyForAlg,
    /// A fitting key rejected the token (signature or claims).
    Token(jwt_simple::Error),
}

impl KeySet {
    /// Parses a fetched JWKS document leniently: keys that are unsupported, secret (`oct`),
    /// for encryption or malformed are skipped; a set without one usable key is an error.
    pub fn from_jwks(json: &[u8]) -> Result<KeySet, String> {
        #[derive(Deserialize)]
        struct Jwks {
            keys: Vec<serde_json::Value>,
        }
        let jwks: Jwks = serde_json::from_slice(json).map_err(|e| format!("invalid JWKS: {e}"))?;
        let keys: Vec<Key> = jwks
            .keys
            .into_iter()
            .filter_map(|v| serde_json::from_value::<Jwk>(v).ok())
            .filter_map(|jwk| jwk.keys(false, Alg::ASYMMETRIC).ok())
            .flatten()
            .collect();
        if keys.is_empty() {
            return Err("JWKS has no usable signature verification key".into());
        }
        Ok(KeySet { keys })
    }

    /// Builds a set from configured JWKs strictly: the first bad key fails with its index.
    pub(crate) fn from_config(jwks: &[Jwk], algs: &[Alg]) -> Result<KeySet, (usize, String)> {
        let mut keys = Vec::new();
        for (i, jwk) in jwks.iter().enumerate() {
            keys.extend(jwk.keys(true, algs).map_err(|e| (i, e))?);
        }
        Ok(KeySet { keys })
    }

    /// Whether a key with this fingerprint is still in the set.
    pub(crate) fn contains(&self, fingerprint: &KeyFingerprint) -> bool {
        self.keys.iter().any(|k| &k.fingerprint == fingerprint)
    }

    /// Verifies `token` (whose header names `alg` and `kid`) with each fitting key in turn
    /// until one signature checks; a key without `kid` fits any `kid`. The first key whose
    /// signature checks settles the outcome, claim errors such as expiry included; the
    /// claims come with the fingerprint of the key that checked them.
    pub(crate) fn verify(
        &self,
        alg: Alg,
        kid: Option<&str>,
        token: &str,
        options: &VerificationOptions,
    ) -> Result<(JWTClaims<NoCustomClaims>, KeyFingerprint), KeyError> {
        let mut by_kid = self
            .keys
            .iter()
            .filter(|k| kid.is_none() || k.kid.is_none() || k.kid.as_deref() == kid)
            .peekable();
        if by_kid.peek().is_none() {
            return Err(KeyError::UnknownKid);
        }
        let mut outcome = Err(KeyError::NoKeyForAlg);
        for key in by_kid.filter(|k| k.verifier.alg() == alg) {
            outcome = key
                .verifier
                .verify(token, options.clone())
                .map(|claims| (claims, key.fingerprint))
                .map_err(KeyError::Token);
            let bad_signature = matches!(
                &outcome,
                Err(KeyError::Token(e)) if matches!(
                    e.downcast_ref::<JWTError>(),
                    Some(JWTError::InvalidSignature | JWTError::InvalidAuthenticationTag)
                )
            );
            if !bad_signature {
                break;
            }
        }
        outcome
    }
}

impl Jwk {
    /// The verifiers of this key for the algorithms in `allowed`. `secrets` admits `oct` keys
    /// (configuration only: a fetched JWKS must never carry shared secrets).
    fn keys(&self, secrets: bool, allowed: &[Alg]) -> Result<Vec<Key>, String> {
        if self.use_.as_deref() == Some("enc") {
            return Err("key is for encryption (\"use\": \"enc\")".into());
        }
        let material = self.material(secrets)?;
        let fingerprint = material.fingerprint();
        let fits = material.algs();
        let algs = match &self.alg {
            Some(name) => match Alg::from_name(name) {
                Some(alg) if fits.contains(&alg) => vec![alg],
                Some(_) => return Err(format!("alg {name:?} does not fit this {} key", self.kty)),
                None => return Err(format!("unsupported alg {name:?}")),
            },
            None => fits,
        };
        let algs: Vec<Alg> = algs.into_iter().filter(|a| allowed.contains(a)).collect();
        if algs.is_empty() {
            return Err(format!(
                "this {} key fits none of the provider's algorithms",
                self.kty
            ));
        }
        algs.into_iter()
            .map(|alg| {
                Ok(Key {
                    kid: self.kid.clone(),
                    fingerprint,
                    verifier: material
                        .verifier(alg)
                        .map_err(|_| format!("invalid {} key", self.kty))?,
                })
            })
            .collect()
    }

    fn material(&self, secrets: bool) -> Result<Material, String> {
        let crv = self.crv.as_deref().unwrap_or_default();
        match (self.kty.as_str(), crv) {
            ("RSA", _) => {
                let n = member("n", &self.n)?;
                let significant = n.iter().skip_while(|b| **b == 0).count();
                if significant < MIN_RSA_MODULUS_BYTES {
                    return Err(format!(
                        "RSA modulus of {} bits is shorter than 2048",
                        significant * 8
                    ));
                }
                Ok(Material::Rsa {
                    n,
                    e: member("e", &self.e)?,
                })
            }
            ("EC", "P-256") => Ok(Material::P256(self.ec_point(32)?)),
            ("EC", "P-384") => Ok(Material::P384(self.ec_point(48)?)),
            ("OKP", "Ed25519") => Ok(Material::Ed25519(sized("x", &self.x, 32)?)),
            ("EC" | "OKP", _) => Err(format!("unsupported {} curve {crv:?}", self.kty)),
            ("oct", _) if secrets => Ok(Material::Oct(member("k", &self.k)?)),
            (kty, _) => Err(format!("unsupported key type {kty:?}")),
        }
    }

    /// The uncompressed SEC1 point `04 || x || y`.
    fn ec_point(&self, len: usize) -> Result<Vec<u8>, String> {
        let mut point = vec![4];
        point.extend(sized("x", &self.x, len)?);
        point.extend(sized("y", &self.y, len)?);
        Ok(point)
    }
}

/// A required base64url member.
fn member(name: &str, value: &Option<String>) -> Result<Vec<u8>, String> {
    let value = value
        .as_deref()
        .ok_or_else(|| format!("missing {name:?}"))?;
    match B64URL.decode(value) {
        Ok(bytes) if !bytes.is_empty() => Ok(bytes),
        _ => Err(format!("{name:?} is not non-empty base64url")),
    }
}

/// A required base64url member of exactly `len` bytes.
fn sized(name: &str, value: &Option<String>, len: usize) -> Result<Vec<u8>, String> {
    let bytes = member(name, value)?;
    if bytes.len() != len {
        return Err(format!("{name:?} must be {len} bytes, not {}", bytes.len()));
    }
    Ok(bytes)
}
