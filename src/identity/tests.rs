//! End-to-end tests of the authentication core (built only under #[cfg(test)], see mod.rs):
//! tokens minted with jwt-simple, verified through a compiled configuration.

use std::sync::OnceLock;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jwt_simple::prelude::*;
use serde_json::{json, Map, Value};

use super::shared_tokens::{Layered, SharedTokens};
use super::*;
use crate::state::MemoryStore;

const NOW: u64 = 1_700_000_000;
const ISS: &str = "https://idp.example.com";
const AUD: &str = "https://mcp.example.com/mcp";

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// One RSA key for all RSA algorithms: 2048-bit generation is slow in debug builds.
fn rsa_der() -> &'static [u8] {
    static DER: OnceLock<Vec<u8>> = OnceLock::new();
    DER.get_or_init(|| RS256KeyPair::generate(2048).unwrap().to_der().unwrap())
}

fn rsa_jwk() -> Value {
    let c = RS256KeyPair::from_der(rsa_der())
        .unwrap()
        .public_key()
        .to_components();
    json!({"kty": "RSA", "n": b64(&c.n), "e": b64(&c.e)})
}

/// Generates a key pair once per test binary, kept as bytes (the types are not `Clone`).
macro_rules! fixed_key {
    ($name:ident, $ty:ty) => {
        fn $name() -> $ty {
            static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
            <$ty>::from_bytes(BYTES.get_or_init(|| <$ty>::generate().to_bytes())).unwrap()
        }
    };
}
fixed_key!(es256, ES256KeyPair);
fixed_key!(es384, ES384KeyPair);
fixed_key!(ed25519, Ed25519KeyPair);

const HS_SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

fn ec_jwk(crv: &str, sec1: &[u8]) -> Value {
    let xy = &sec1[1..];
    let (x, y) = xy.split_at(xy.len() / 2);
    json!({"kty": "EC", "crv": crv, "x": b64(x), "y": b64(y)})
}

/// A signer per algorithm and the JWK (without `alg` or `kid`) that verifies it.
type Signer = Box<dyn Fn(JWTClaims<Map<String, Value>>) -> String>;

fn key(alg: &str) -> (Value, Signer) {
    let der = rsa_der();
    match alg {
        "RS256" => (
            rsa_jwk(),
            Box::new(|c| {
                RS256KeyPair::from_der(der)
                    .unwrap()
                    .with_key_id("k1")
                    .sign(c)
                    .unwrap()
            }),
        ),
        "RS384" => (
            rsa_jwk(),
            Box::new(|c| {
                RS384KeyPair::from_der(der)
                    .unwrap()
                    .with_key_id("k1")
                    .sign(c)
                    .unwrap()
            }),
        ),
        "RS512" => (
            rsa_jwk(),
            Box::new(|c| {
                RS512KeyPair::from_der(der)
                    .unwrap()
                    .with_key_id("k1")
                    .sign(c)
                    .unwrap()
            }),
        ),
        "PS256" => (
            rsa_jwk(),
            Box::new(|c| {
                PS256KeyPair::from_der(der)
                    .unwrap()
                    .with_key_id("k1")
                    .sign(c)
                    .unwrap()
            }),
        ),
        "ES256" => (
            ec_jwk(
                "P-256",
                &es256().public_key().public_key().to_bytes_uncompressed(),
            ),
            Box::new(|c| es256().with_key_id("k1").sign(c).unwrap()),
        ),
        "ES384" => (
            ec_jwk(
                "P-384",
                &es384().public_key().public_key().to_bytes_uncompressed(),
            ),
            Box::new(|c| es384().with_key_id("k1").sign(c).unwrap()),
        ),
        "EdDSA" => (
            json!({"kty": "OKP", "crv": "Ed25519", "x": b64(&ed25519().public_key().to_bytes())}),
            Box::new(|c| ed25519().with_key_id("k1").sign(c).unwrap()),
        ),
        "HS256" => (
            json!({"kty": "oct", "k": b64(HS_SECRET)}),
            Box::new(|c| {
                HS256Key::from_bytes(HS_SECRET)
                    .with_key_id("k1")
                    .authenticate(c)
                    .unwrap()
            }),
        ),
        _ => panic!("no test key for {alg}"),
    }
}

/// Claims valid at `NOW` for `ISS`/`AUD`, plus `extra` (which may override `iss`/`aud`).
fn claims(extra: Value) -> JWTClaims<Map<String, Value>> {
    let mut custom: Map<String, Value> =
        serde_json::from_value(json!({"scope": "mcp:tools read"})).unwrap();
    custom.extend(extra.as_object().unwrap().clone());
    let take = |custom: &mut Map<String, Value>, k: &str| custom.remove(k);
    let time = |v: Option<Value>, default: Option<u64>| match v {
        Some(Value::Null) => None,
        Some(v) => v.as_u64().map(UnixTimeStamp::from_secs),
        None => default.map(UnixTimeStamp::from_secs),
    };
    let mut c = Claims::with_custom_claims(Map::new(), Duration::from_secs(1));
    c.issued_at = time(take(&mut custom, "iat"), Some(NOW));
    c.expires_at = time(take(&mut custom, "exp"), Some(NOW + 600));
    c.invalid_before = time(take(&mut custom, "nbf"), Some(NOW));
    c.issuer = take(&mut custom, "iss").map_or(Some(ISS.into()), |v| v.as_str().map(String::from));
    c.subject =
        take(&mut custom, "sub").map_or(Some("alice".into()), |v| v.as_str().map(String::from));
    c = match take(&mut custom, "aud") {
        Some(Value::Null) => c,
        Some(v) => c.with_audience(v.as_str().unwrap()),
        None => c.with_audience(AUD),
    };
    c.custom = custom;
    c
}

fn provider(jwks: Value, extra: Value) -> Value {
    let mut p =
        json!({"name": "corp", "issuer": ISS, "audiences": [AUD], "jwks": {"keys": [jwks]}});
    p.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    p
}

fn compile(config: Value) -> Authenticator {
    serde_json::from_value::<AuthDto>(config)
        .unwrap()
        .compile("auth")
        .unwrap()
}

/// Credentials as the glue lends them (leaked: a test's requests live as long as it).
fn presented(
    headers: &[(&'static str, &str)],
    uri_sans: &[&str],
    dns_sans: &[&str],
) -> Credentials<'static> {
    let leak = |s: &str| -> &'static [u8] { Box::leak(s.as_bytes().into()) };
    let headers: Vec<(&str, &[u8])> = headers.iter().map(|&(n, v)| (n, leak(v))).collect();
    let sans =
        |s: &[&str]| -> &'static [String] { Box::leak(s.iter().map(|s| s.to_string()).collect()) };
    Credentials {
        headers: Box::leak(headers.into()),
        peer_uri_sans: sans(uri_sans),
        peer_dns_sans: sans(dns_sans),
    }
}

fn bearer(token: &str) -> Credentials<'static> {
    presented(&[("authorization", &format!("Bearer {token}"))], &[], &[])
}

fn run(auth: &Authenticator, credentials: &Credentials<'_>) -> Result<Identity, AuthError> {
    auth.authenticate(credentials, &Vec::new(), &mut TokenCache::default(), NOW)
}

fn invalid(reason: &str) -> Result<&'static str, AuthError> {
    Err(AuthError::InvalidToken(reason.into()))
}

#[test]
fn every_algorithm_verifies_with_and_without_alg_in_the_key() {
    for alg in [
        "RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA", "HS256",
    ] {
        let (jwk, sign) = key(alg);
        let token = sign(claims(json!({})));
        let algorithms = if alg == "HS256" {
            json!({"algorithms": ["HS256"]})
        } else {
            json!({})
        };
        for jwk in [with(&with(&jwk, "alg", alg), "kid", "k1"), jwk] {
            let auth =
                compile(json!({"jwt_providers": [provider(jwk.clone(), algorithms.clone())]}));
            let id = run(&auth, &bearer(&token)).unwrap_or_else(|e| panic!("{alg} {jwk}: {e}"));
            assert_eq!(
                id.kind,
                IdentityKind::Jwt {
                    provider: "corp".into()
                }
            );
            assert_eq!(
                (id.subject.as_str(), id.expires_at),
                ("alice", Some(NOW + 600))
            );
            assert_eq!(id.scopes, ["mcp:tools", "read"]);
        }
    }
}

#[test]
fn rejections() {
    let (jwk, sign) = key("ES256");
    let jwk = with(&jwk, "kid", "k1");
    let auth = compile(
        json!({"jwt_providers": [provider(jwk, json!({"max_token_bytes": 1024, "algorithms": ["ES256"]}))]}),
    );
    let good = sign(claims(json!({})));
    let [header, payload, signature]: [&str; 3] =
        good.split('.').collect::<Vec<_>>().try_into().unwrap();

    let unsigned = format!("{}.{payload}.", b64(br#"{"alg":"none","typ":"JWT"}"#));
    // HS256 keyed with the RSA public key: the classic algorithm-confusion forgery.
    let rsa_auth = compile(json!({"jwt_providers": [provider(rsa_jwk(), json!({}))]}));
    let pem = RS256KeyPair::from_der(rsa_der())
        .unwrap()
        .public_key()
        .to_pem()
        .unwrap();
    let confused = HS256Key::from_bytes(pem.as_bytes())
        .authenticate(claims(json!({})))
        .unwrap();
    let other_payload = good.split('.').nth(1).map(|_| b64(br#"{"iss":"https://idp.example.com","sub":"mallory","aud":"https://mcp.example.com/mcp","exp":1700000600}"#)).unwrap();
    let mut bad_sig = signature.to_owned().into_bytes();
    bad_sig[10] = if bad_sig[10] == b'A' { b'B' } else { b'A' };
    let bad_sig = String::from_utf8(bad_sig).unwrap();
    let other_key = ES256KeyPair::generate()
        .with_key_id("k1")
        .sign(claims(json!({})))
        .unwrap();
    let unknown_kid = es256().with_key_id("k2").sign(claims(json!({}))).unwrap();
    let no_kid = es256().sign(claims(json!({}))).unwrap();

    let cases: Vec<(&str, &Authenticator, String, Result<&str, AuthError>)> = vec![
        (
            "alg none",
            &auth,
            unsigned,
            invalid("unsigned token (alg none)"),
        ),
        (
            "algorithm confusion",
            &rsa_auth,
            confused,
            invalid("algorithm HS256 is not accepted"),
        ),
        (
            "RS256 not listed",
            &auth,
            key("RS256").1(claims(json!({}))),
            invalid("algorithm RS256 is not accepted"),
        ),
        (
            "unknown kid",
            &auth,
            unknown_kid,
            Err(AuthError::UnknownKid {
                provider: "corp".into(),
                kid: "k2".into(),
            }),
        ),
        (
            "other key, same kid",
            &auth,
            other_key,
            invalid("invalid signature"),
        ),
        (
            "tampered payload",
            &auth,
            format!("{header}.{other_payload}.{signature}"),
            invalid("invalid signature"),
        ),
        (
            "tampered signature",
            &auth,
            format!("{header}.{payload}.{bad_sig}"),
            invalid("invalid signature"),
        ),
        (
            "expired past leeway",
            &auth,
            sign(claims(json!({"exp": NOW - 61}))),
            invalid("token has expired"),
        ),
        (
            "not yet valid past leeway",
            &auth,
            sign(claims(json!({"nbf": NOW + 61}))),
            invalid("token is not valid yet (nbf)"),
        ),
        (
            "issued in the future",
            &auth,
            sign(claims(json!({"iat": NOW + 3600, "nbf": null}))),
            invalid("token is issued in the future (iat)"),
        ),
        (
            "wrong audience",
            &auth,
            sign(claims(json!({"aud": "https://other.example.com"}))),
            invalid("token is not meant for this audience"),
        ),
        (
            "no audience",
            &auth,
            sign(claims(json!({"aud": null}))),
            invalid("token is not meant for this audience"),
        ),
        (
            "another issuer",
            &auth,
            sign(claims(json!({"iss": "https://evil.example.com"}))),
            invalid("token issuer is not trusted"),
        ),
        (
            "no issuer",
            &auth,
            sign(claims(json!({"iss": null}))),
            invalid("token has no issuer"),
        ),
        (
            "no exp",
            &auth,
            sign(claims(json!({"exp": null}))),
            invalid("token has no exp claim"),
        ),
        (
            "no subject",
            &auth,
            sign(claims(json!({"sub": null}))),
            invalid("claim \"sub\" is missing or not a string"),
        ),
        (
            "unsupported algorithm",
            &auth,
            format!("{}.{payload}.{signature}", b64(br#"{"alg":"ES999"}"#)),
            invalid("unsupported algorithm"),
        ),
        (
            "oversized",
            &auth,
            sign(claims(json!({"pad": "x".repeat(1024)}))),
            invalid("token is too large"),
        ),
        (
            "two parts",
            &auth,
            format!("{header}.{payload}"),
            invalid("malformed token: not three dot-separated parts"),
        ),
        (
            "payload not base64",
            &auth,
            format!("{header}.*.{signature}"),
            invalid("malformed token: payload is not base64url"),
        ),
        (
            "payload not JSON",
            &auth,
            format!("{header}.{}.{signature}", b64(b"[1]")),
            invalid("malformed token: payload is not a JSON object"),
        ),
        (
            "bad header",
            &auth,
            format!("e30x.{payload}.{signature}"),
            invalid("malformed token: bad header"),
        ),
        (
            "expired within leeway",
            &auth,
            sign(claims(json!({"exp": NOW - 59}))),
            Ok("alice"),
        ),
        (
            "nbf within leeway",
            &auth,
            sign(claims(json!({"nbf": NOW + 59}))),
            Ok("alice"),
        ),
        ("token without kid", &auth, no_kid, Ok("alice")),
    ];
    for (name, auth, token, want) in cases {
        let got = run(auth, &bearer(&token));
        if let Err(e) = &got {
            assert!(
                !e.to_string().contains(&token),
                "{name}: the reason quotes the token"
            );
        }
        assert_eq!(got.map(|id| id.subject), want.map(String::from), "{name}");
    }
}

#[test]
fn claims_map_to_the_identity() {
    let (jwk, sign) = key("EdDSA");
    let mapping = json!({"claims": {"subject": "email", "roles": "realm_access.roles", "scopes": "scp",
                                    "other": {"team": "org.team", "level": "org.level", "absent": "nope"}}});
    let auth = compile(json!({"jwt_providers": [provider(jwk, mapping)]}));
    let token = |scp: Value| {
        sign(claims(json!({"email": "alice@example.com", "scp": scp,
                           "realm_access": {"roles": ["admin", "dev"]}, "org": {"team": "blue", "level": 3}})))
    };
    for scp in [json!("a b  c"), json!(["a", "b", "c"])] {
        let id = run(&auth, &bearer(&token(scp))).unwrap();
        assert_eq!(id.subject, "alice@example.com");
        assert_eq!(
            (id.roles, id.scopes),
            (
                vec!["admin".to_owned(), "dev".into()],
                vec!["a".to_owned(), "b".into(), "c".into()]
            )
        );
        let want: BTreeMap<String, Vec<String>> = [
            ("level".into(), vec!["3".into()]),
            ("team".into(), vec!["blue".into()]),
        ]
        .into();
        assert_eq!(id.claims, want);
    }
    let listed = sign(claims(json!({"email": ["a@example.com", "b@example.com"]})));
    let want = "claim \"email\" is missing or not a string";
    assert_eq!(
        run(&auth, &bearer(&listed)),
        Err(AuthError::InvalidToken(want.into()))
    );
}

fn sha256_hex(secret: &[u8]) -> String {
    hmac_sha256::Hash::hash(secret)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn credential_order_api_key_bearer_peer_anonymous() {
    let (jwk, sign) = key("ES256");
    let token = sign(claims(json!({})));
    let config = |anonymous: bool, peer: Value| {
        compile(json!({
            "allow_anonymous": anonymous,
            "peer_identity": peer,
            "jwt_providers": [provider(jwk.clone(), json!({}))],
            "api_keys": {"header": "X-API-Key", "keys": [
                {"name": "ci-bot", "sha256": sha256_hex(b"ci-secret"), "roles": ["ci"], "scopes": ["tools:call"]},
                {"name": "ops", "sha256": sha256_hex(b"ops-secret")}]}
        }))
    };
    let creds = |api_key: Option<&str>, authorization: Option<&str>, uri: &[&str], dns: &[&str]| {
        let headers: Vec<(&str, &str)> = [("x-api-key", api_key), ("authorization", authorization)]
            .into_iter()
            .filter_map(|(k, v)| Some((k, v?)))
            .collect();
        presented(&headers, uri, dns)
    };
    let bearer = format!("Bearer {token}");
    let kind = |r: Result<Identity, AuthError>| r.map(|id| (id.kind.to_string(), id.subject));
    let ok = |kind: &str, subject: &str| Ok((kind.to_owned(), subject.to_owned()));
    let (strict, open) = (config(false, Value::Null), config(true, json!("spiffe")));
    let san = config(false, json!("san"));
    let spiffe = "spiffe://example.org/ns/default/sa/agent";
    let cases = [
        (
            &strict,
            creds(Some("ci-secret"), Some(&bearer), &[], &[]),
            ok("api_key:ci-bot", "ci-bot"),
        ),
        (
            &strict,
            creds(Some("wrong"), Some(&bearer), &[], &[]),
            Err(AuthError::InvalidApiKey),
        ),
        (
            &strict,
            creds(Some(""), None, &[], &[]),
            Err(AuthError::InvalidApiKey),
        ),
        (
            &strict,
            creds(None, Some(&bearer), &[], &[]),
            ok("jwt:corp", "alice"),
        ),
        (
            &strict,
            creds(None, Some("Basic dXNlcjpwdw=="), &[], &[]),
            Err(AuthError::MissingCredentials),
        ),
        (
            &strict,
            creds(None, None, &[spiffe], &[]),
            Err(AuthError::MissingCredentials),
        ),
        (
            &open,
            creds(None, None, &["https://x", spiffe], &["a.example"]),
            ok("peer", spiffe),
        ),
        (
            &open,
            creds(None, None, &["https://x"], &["a.example"]),
            ok("anonymous", ""),
        ),
        (
            &open,
            creds(None, Some("Bearer x.y"), &[spiffe], &[]),
            Err(AuthError::InvalidToken(
                "malformed token: not three dot-separated parts".into(),
            )),
        ),
        (
            &san,
            creds(None, None, &["https://x", spiffe], &["a.example"]),
            ok("peer", "https://x"),
        ),
        (
            &san,
            creds(None, None, &[], &["a.example", "b.example"]),
            ok("peer", "a.example"),
        ),
        (
            &san,
            creds(None, None, &[], &[]),
            Err(AuthError::MissingCredentials),
        ),
    ];
    for (i, (auth, credentials, want)) in cases.into_iter().enumerate() {
        assert_eq!(kind(run(auth, &credentials)), want, "case {i}");
    }
    let ci = run(&strict, &creds(Some("ci-secret"), None, &[], &[])).unwrap();
    assert_eq!(
        (ci.roles, ci.scopes, ci.expires_at),
        (vec!["ci".to_owned()], vec!["tools:call".to_owned()], None)
    );
    assert_eq!(strict.header_names(), ["authorization", "x-api-key"]);
}

/// One worker's view of the token caches over `store`, counting verifications.
fn worker<'a>(local: &'a mut TokenCache, store: &'a MemoryStore) -> Layered<'a, MemoryStore> {
    Layered {
        local,
        shared: SharedTokens { store, slots: 16 },
        verifications: 0,
        shared_hits: 0,
    }
}

#[test]
fn cache_serves_until_exp_and_while_the_key_is_in_the_set() {
    let (jwk, sign) = key("ES256");
    let remote = json!({"name": "corp", "issuer": ISS, "audiences": [AUD], "leeway_seconds": 0,
                        "remote_jwks": {"cluster": "idp", "path": "/jwks"}});
    let auth = compile(json!({"jwt_providers": [remote]}));
    let jwks = |jwk: &Value| KeySet::from_jwks(json!({"keys": [jwk]}).to_string().as_bytes());
    let keys = vec![Some(jwks(&jwk).unwrap())];
    let (other_jwk, _) = key("EdDSA");
    let rotated = vec![Some(KeySet::from_jwks(
        json!({"keys": [other_jwk, ec_jwk("P-256", &ES256KeyPair::generate().public_key().public_key().to_bytes_uncompressed())]})
            .to_string()
            .as_bytes(),
    ).unwrap())];
    let none: Vec<Option<KeySet>> = vec![None];
    let token = bearer(&sign(claims(json!({"nbf": NOW + 100, "exp": NOW + 600}))));
    let store = MemoryStore::default();
    let mut local = TokenCache::default();
    let mut cache = worker(&mut local, &store);
    let unavailable = Err(AuthError::KeysUnavailable {
        provider: "corp".into(),
    });

    assert_eq!(
        auth.authenticate(&token, &none, &mut cache, NOW + 100),
        unavailable
    );
    assert_eq!(cache.verifications, 0);
    let first = auth
        .authenticate(&token, &keys, &mut cache, NOW + 100)
        .unwrap();
    assert_eq!(cache.verifications, 1);
    let expired = Err(AuthError::InvalidToken("token has expired".into()));
    for (now, want) in [
        (NOW + 100, Ok(first.clone())),
        (NOW + 599, Ok(first.clone())),
        (
            NOW + 99,
            Err(AuthError::InvalidToken(
                "token is not valid yet (nbf)".into(),
            )),
        ),
        (NOW + 600, expired.clone()),
        (NOW + 10_000, expired.clone()),
    ] {
        let before = cache.verifications;
        let got = auth.authenticate(&token, &keys, &mut cache, now);
        assert_eq!(got, want, "now={now}");
        assert_eq!(
            cache.verifications - before,
            u32::from(got.is_err()),
            "now={now}"
        );
    }
    // The key that verified the token must still be in the set: keys not (yet) fetched in
    // this worker or rotated away are never taken on trust.
    assert_eq!(
        auth.authenticate(&token, &none, &mut cache, NOW + 200),
        unavailable
    );
    assert_eq!(
        auth.authenticate(&token, &rotated, &mut cache, NOW + 200),
        Err(AuthError::InvalidToken("invalid signature".into()))
    );
}

#[test]
fn a_token_verified_by_one_worker_is_taken_by_another_until_exp_or_rotation() {
    let (jwk, sign) = key("RS256");
    let remote = json!({"name": "corp", "issuer": ISS, "audiences": [AUD], "leeway_seconds": 0,
                        "remote_jwks": {"cluster": "idp", "path": "/jwks"},
                        "claims": {"roles": "roles", "other": {"team": "org.team"}}});
    let auth = compile(json!({"jwt_providers": [remote]}));
    let keys = vec![Some(
        KeySet::from_jwks(json!({"keys": [jwk]}).to_string().as_bytes()).unwrap(),
    )];
    let token = bearer(&sign(claims(
        json!({"exp": NOW + 600, "roles": ["admin"], "org": {"team": "blue"}}),
    )));
    let store = MemoryStore::default();
    crate::state::reserve(&store).unwrap();
    let (mut local_a, mut local_b, mut local_c) = Default::default();
    let mut a = worker(&mut local_a, &store);
    let verified = auth.authenticate(&token, &keys, &mut a, NOW).unwrap();
    assert_eq!((a.verifications, a.shared_hits), (1, 0));
    let mut b = worker(&mut local_b, &store);
    assert_eq!(
        auth.authenticate(&token, &keys, &mut b, NOW),
        Ok(verified.clone())
    );
    assert_eq!((b.verifications, b.shared_hits), (0, 1));
    assert_eq!(verified.claims["team"], ["blue"]);

    // Past exp, neither worker serves it.
    let expired = Err(AuthError::InvalidToken("token has expired".into()));
    assert_eq!(auth.authenticate(&token, &keys, &mut a, NOW + 600), expired);
    assert_eq!(auth.authenticate(&token, &keys, &mut b, NOW + 600), expired);

    // The same provider with another key: a third worker does not take the shared entry.
    let (ec, _) = key("ES256");
    let rotated = vec![Some(
        KeySet::from_jwks(json!({"keys": [ec]}).to_string().as_bytes()).unwrap(),
    )];
    let mut c = worker(&mut local_c, &store);
    let refused = auth.authenticate(&token, &rotated, &mut c, NOW + 1);
    assert_eq!(
        refused,
        Err(AuthError::InvalidToken("no key for algorithm RS256".into()))
    );
    assert_eq!((c.verifications, c.shared_hits), (1, 0));

    // Another configuration of the provider (other claim mapping) does not either.
    let remapped = compile(json!({"jwt_providers": [{"name": "corp", "issuer": ISS,
        "audiences": [AUD], "leeway_seconds": 0, "remote_jwks": {"cluster": "idp", "path": "/jwks"}}]}));
    let mut local_d = TokenCache::default();
    let mut d = worker(&mut local_d, &store);
    let identity = remapped
        .authenticate(&token, &keys, &mut d, NOW + 1)
        .unwrap();
    assert!(identity.roles.is_empty());
    assert_eq!((d.verifications, d.shared_hits), (1, 0));
}

#[test]
fn remote_jwks_are_parsed_leniently() {
    let (jwk, sign) = key("ES256");
    let good = KeySet::from_jwks(
        json!({"keys": [{"kty": "foo"}, {"kty": "oct", "k": b64(HS_SECRET)}, {"kty": "EC", "crv": "P-521", "x": "AA", "y": "AA"},
                        {"kty": "RSA", "use": "enc", "n": "AQAB", "e": "AQAB"}, "not an object", jwk.clone()],
               "other": true})
        .to_string()
        .as_bytes(),
    )
    .unwrap();
    let auth = compile(
        json!({"jwt_providers": [{"name": "corp", "issuer": ISS, "audiences": [AUD],
                                                 "remote_jwks": {"cluster": "idp", "path": "/jwks"}}]}),
    );
    let token = bearer(&sign(claims(json!({}))));
    assert!(auth
        .authenticate(&token, &vec![Some(good)], &mut TokenCache::default(), NOW)
        .is_ok());
    for (doc, want) in [
        (
            json!({"keys": [{"kty": "oct", "k": b64(HS_SECRET)}]}).to_string(),
            "JWKS has no usable signature verification key",
        ),
        (
            json!({"keys": []}).to_string(),
            "JWKS has no usable signature verification key",
        ),
        (
            "{}".into(),
            "invalid JWKS: missing field `keys` at line 1 column 2",
        ),
        (
            "<html>".into(),
            "invalid JWKS: expected value at line 1 column 1",
        ),
    ] {
        assert_eq!(
            KeySet::from_jwks(doc.as_bytes()).unwrap_err(),
            want,
            "{doc}"
        );
    }
}

#[test]
fn scopes_and_challenges() {
    let auth = compile(json!({"allow_anonymous": true, "required_scopes": ["mcp:tools", "read"]}));
    let mut id = Identity::anonymous();
    let insufficient = AuthError::InsufficientScope {
        required: vec!["mcp:tools".into(), "read".into()],
    };
    assert_eq!(auth.check_scopes(&id), Err(insufficient.clone()));
    id.scopes = vec!["read".into(), "mcp:tools".into(), "extra".into()];
    assert_eq!(auth.check_scopes(&id), Ok(()));
    let cases = [
        (AuthError::MissingCredentials, None, "missing credentials"),
        (
            AuthError::InvalidToken("token has expired".into()),
            Some("invalid_token"),
            "invalid token: token has expired",
        ),
        (
            AuthError::KeysUnavailable {
                provider: "corp".into(),
            },
            None,
            "keys of provider \"corp\" are not available yet",
        ),
        (
            AuthError::UnknownKid {
                provider: "corp".into(),
                kid: "k9".into(),
            },
            Some("invalid_token"),
            "invalid token: no key of provider \"corp\" has its kid",
        ),
        (AuthError::InvalidApiKey, None, "invalid API key"),
        (
            insufficient,
            Some("insufficient_scope"),
            "insufficient scope: requires \"mcp:tools read\"",
        ),
    ];
    for (error, challenge, text) in cases {
        assert_eq!(
            (error.www_authenticate_error(), error.to_string().as_str()),
            (challenge, text)
        );
    }
}

#[test]
fn resource_metadata_document() {
    let auth = compile(json!({"allow_anonymous": true, "resource_metadata": {
        "resource": "https://mcp.example.com/mcp", "authorization_servers": ["https://idp.example.com"],
        "scopes_supported": ["mcp:tools"], "bearer_methods_supported": ["header"]}}));
    let m = auth.resource_metadata.unwrap();
    assert_eq!(
        m.document,
        r#"{"resource":"https://mcp.example.com/mcp","authorization_servers":["https://idp.example.com"],"scopes_supported":["mcp:tools"],"bearer_methods_supported":["header"]}"#
    );
    assert_eq!(
        m.well_known_path,
        "/.well-known/oauth-protected-resource/mcp"
    );
    assert_eq!(
        m.url,
        "https://mcp.example.com/.well-known/oauth-protected-resource/mcp"
    );
    for (resource, path) in [
        ("http://localhost:10000", ""),
        ("https://mcp.example.com/", ""),
        ("https://a.example/x/y/", "/x/y/"),
    ] {
        let auth =
            compile(json!({"allow_anonymous": true, "resource_metadata": {"resource": resource}}));
        let m = auth.resource_metadata.unwrap();
        assert_eq!(m.document, format!(r#"{{"resource":"{resource}"}}"#));
        assert_eq!(
            m.well_known_path,
            format!("/.well-known/oauth-protected-resource{path}")
        );
    }
}

/// `object` with `key` set to `value`.
fn with(object: &Value, key: &str, value: &str) -> Value {
    let mut object = object.clone();
    object[key] = json!(value);
    object
}

/// The error the whole configuration would report, with this section at `auth`.
fn config_error(auth: Value) -> String {
    let text = auth.to_string();
    match crate::located::from_slice::<AuthDto>(text.as_bytes()) {
        Err(e) => format!("auth.{}: {}", e.path, e.message),
        Ok(dto) => dto.compile("auth").unwrap_err().to_string(),
    }
}

#[test]
fn config_errors_name_the_path() {
    let (es, _) = key("ES256");
    let p = |extra: Value| json!({"jwt_providers": [provider(es.clone(), extra)]});
    let remote = json!({"cluster": "idp", "path": "/jwks"});
    let oct = json!({"kty": "oct", "k": b64(HS_SECRET)});
    let keys = |keys: Value| p(json!({"jwks": {"keys": keys}}));
    let cases = [
        (json!({}), "auth: no way to authenticate: configure jwt_providers, api_keys, peer_identity or allow_anonymous"),
        (json!({"allow_anonymous": true, "bogus": 1}), "auth.bogus: unknown field `bogus`, expected one of `allow_anonymous`, `jwt_providers`, `api_keys`, `peer_identity`, `required_scopes`, `resource_metadata`, `shared_token_cache_slots`"),
        (json!({"peer_identity": "x509"}), "auth.peer_identity: unknown variant `x509`, expected `spiffe` or `san`"),
        (p(json!({"algorithms": ["none"]})), "auth.jwt_providers[0].algorithms[0]: alg \"none\" (unsigned tokens) is never accepted"),
        (p(json!({"algorithms": ["ES256", "XS1"]})), "auth.jwt_providers[0].algorithms[1]: unsupported algorithm \"XS1\", expected one of RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA, HS256, HS384, HS512"),
        (p(json!({"algorithms": ["RS256", "HS256"]})), "auth.jwt_providers[0].algorithms: HMAC (HS*) and public-key algorithms cannot be mixed (algorithm confusion)"),
        (p(json!({"algorithms": []})), "auth.jwt_providers[0].algorithms: at least one algorithm is required"),
        (p(json!({"algorithms": ["HS256"], "jwks": null, "remote_jwks": remote})), "auth.jwt_providers[0].remote_jwks: HMAC (HS*) keys are shared secrets: configure them inline in `jwks`, never fetched"),
        (p(json!({"algorithms": ["HS256"]})), "auth.jwt_providers[0].jwks.keys[0]: this EC key fits none of the provider's algorithms"),
        (keys(json!([es, oct])), "auth.jwt_providers[0].jwks.keys[1]: this oct key fits none of the provider's algorithms"),
        (p(json!({"algorithms": ["HS512"], "jwks": {"keys": [oct]}})), "auth.jwt_providers[0].jwks.keys[0]: this oct key fits none of the provider's algorithms"),
        (p(json!({"remote_jwks": remote})), "auth.jwt_providers[0]: exactly one of `jwks` and `remote_jwks` is required"),
        (p(json!({"jwks": null})), "auth.jwt_providers[0]: exactly one of `jwks` and `remote_jwks` is required"),
        (keys(json!([])), "auth.jwt_providers[0].jwks.keys: at least one key is required"),
        (keys(json!([es, es, {"kty": "foo"}])), "auth.jwt_providers[0].jwks.keys[2]: unsupported key type \"foo\""),
        (keys(json!([{"kty": "EC", "crv": "P-521", "x": "AA", "y": "AA"}])), "auth.jwt_providers[0].jwks.keys[0]: unsupported EC curve \"P-521\""),
        (keys(json!([{"kty": "OKP", "crv": "X25519", "x": "AA"}])), "auth.jwt_providers[0].jwks.keys[0]: unsupported OKP curve \"X25519\""),
        (keys(json!([{"kty": "RSA", "use": "enc", "n": "AQAB", "e": "AQAB"}])), "auth.jwt_providers[0].jwks.keys[0]: key is for encryption (\"use\": \"enc\")"),
        (keys(json!([{"kty": "RSA", "n": b64(&[0xff; 128]), "e": "AQAB"}])), "auth.jwt_providers[0].jwks.keys[0]: RSA modulus of 1024 bits is shorter than 2048"),
        (keys(json!([{"kty": "RSA", "e": "AQAB"}])), "auth.jwt_providers[0].jwks.keys[0]: missing \"n\""),
        (keys(json!([{"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"}])), "auth.jwt_providers[0].jwks.keys[0]: \"x\" must be 32 bytes, not 1"),
        (keys(json!([{"kty": "EC", "crv": "P-256", "x": b64(&[0; 32]), "y": b64(&[0; 32])}])), "auth.jwt_providers[0].jwks.keys[0]: invalid EC key"),
        (keys(json!([{"kty": "OKP", "crv": "Ed25519", "x": "!!"}])), "auth.jwt_providers[0].jwks.keys[0]: \"x\" is not non-empty base64url"),
        (keys(json!([with(&es, "alg", "RS256")])), "auth.jwt_providers[0].jwks.keys[0]: alg \"RS256\" does not fit this EC key"),
        (keys(json!([with(&es, "alg", "none")])), "auth.jwt_providers[0].jwks.keys[0]: unsupported alg \"none\""),
        (keys(json!([{"crv": "P-256"}])), "auth.jwt_providers[0].jwks.keys[0]: missing field `kty`"),
        (p(json!({"audiences": []})), "auth.jwt_providers[0].audiences: at least one audience is required"),
        (p(json!({"issuer": ""})), "auth.jwt_providers[0].issuer: must not be empty"),
        (p(json!({"leeway_seconds": 4000})), "auth.jwt_providers[0].leeway_seconds: 4000 is outside 0..=3600"),
        (p(json!({"max_token_bytes": 0})), "auth.jwt_providers[0].max_token_bytes: 0 is outside 1..=65536"),
        (p(json!({"token": {"header": ""}})), "auth.jwt_providers[0].token.header: must not be empty"),
        (p(json!({"token": {"scheme": "Bearer"}})), "auth.jwt_providers[0].token.scheme: unknown field `scheme`, expected `header` or `prefix`"),
        (p(json!({"claims": {"other": {"team": ""}}})), "auth.jwt_providers[0].claims.other.team: must not be empty"),
        (p(json!({"jwks": null, "remote_jwks": {"cluster": "idp", "path": "jwks"}})), "auth.jwt_providers[0].remote_jwks.path: path \"jwks\" must start with '/'"),
        (p(json!({"jwks": null, "remote_jwks": {"cluster": "idp", "path": "/j", "timeout_ms": 0}})), "auth.jwt_providers[0].remote_jwks.timeout_ms: 0 is outside 1..=60000"),
        (json!({"jwt_providers": [provider(es.clone(), json!({})), provider(es.clone(), json!({"issuer": "https://b"}))]}), "auth.jwt_providers[1].name: duplicate provider name \"corp\""),
        (json!({"jwt_providers": [provider(es.clone(), json!({})), provider(es.clone(), json!({"name": "b"}))]}), "auth.jwt_providers[1].issuer: duplicate issuer \"https://idp.example.com\""),
        (json!({"api_keys": {"keys": []}}), "auth.api_keys.keys: at least one key is required"),
        (json!({"api_keys": {"keys": [{"name": "a", "sha256": "abc"}]}}), "auth.api_keys.keys[0].sha256: expected the 64 hex digits of a SHA-256 digest"),
        (json!({"api_keys": {"keys": [{"name": "a", "sha256": sha256_hex(b"1")}, {"name": "a", "sha256": sha256_hex(b"2")}]}}), "auth.api_keys.keys[1].name: duplicate key name \"a\""),
        (json!({"api_keys": {"header": "Authorization", "keys": [{"name": "a", "sha256": sha256_hex(b"1")}]}, "jwt_providers": [provider(es.clone(), json!({}))]}), "auth.api_keys.header: \"authorization\" is also a JWT provider's token header"),
        (json!({"allow_anonymous": true, "shared_token_cache_slots": 70000}), "auth.shared_token_cache_slots: 70000 is outside 0..=65536"),
        (json!({"allow_anonymous": true, "required_scopes": ["a b"]}), "auth.required_scopes[0]: \"a b\" is not a scope (empty or with spaces)"),
        (json!({"allow_anonymous": true, "resource_metadata": {}}), "auth.resource_metadata: missing field `resource`"),
        (json!({"allow_anonymous": true, "resource_metadata": {"resource": "mcp.example.com"}}), "auth.resource_metadata.resource: \"mcp.example.com\" is not an absolute https:// or http:// URL"),
        (json!({"allow_anonymous": true, "resource_metadata": {"resource": "https://a/mcp#x"}}), "auth.resource_metadata.resource: \"https://a/mcp#x\" must not have a query, a fragment or spaces"),
        (json!({"allow_anonymous": true, "resource_metadata": {"resource": "https:///mcp"}}), "auth.resource_metadata.resource: \"https:///mcp\" has no host"),
        (json!({"allow_anonymous": true, "resource_metadata": {"resource": "https://a", "authorization_servers": ["https://b", "b"]}}), "auth.resource_metadata.authorization_servers[1]: \"b\" is not an absolute https:// or http:// URL"),
        (json!({"allow_anonymous": true, "resource_metadata": {"resource": "https://a", "bearer_methods_supported": ["cookie"]}}), "auth.resource_metadata.bearer_methods_supported[0]: \"cookie\" is not one of \"header\", \"body\", \"query\""),
    ];
    for (config, want) in cases {
        let got = config_error(config.clone());
        // serde's messages end with the position in the section's text; the path is the point.
        let got = got.split(" at line ").next().unwrap();
        assert_eq!(got, want, "{config}");
    }
}
