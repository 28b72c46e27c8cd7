//! The RSA verification against the `rsa` crate's arithmetic (what jwt-simple uses) and
//! against jwt-simple's own verifier, plus hand-built encodings that must be refused.

use std::sync::OnceLock;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jwt_simple::prelude::*;
use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::pkcs8::DecodePrivateKey;
use rsa::traits::{PrivateKeyParts, PublicKeyParts};
use rsa::{BigUint, RsaPrivateKey};

use super::*;

fn der() -> &'static [u8] {
    static DER: OnceLock<Vec<u8>> = OnceLock::new();
    DER.get_or_init(|| RS256KeyPair::generate(2048).unwrap().to_der().unwrap())
}

fn private() -> RsaPrivateKey {
    RsaPrivateKey::from_pkcs1_der(der())
        .or_else(|_| RsaPrivateKey::from_pkcs8_der(der()))
        .unwrap()
}

fn key() -> RsaKey {
    let k = private();
    RsaKey::new(&k.n().to_bytes_be(), &k.e().to_bytes_be()).unwrap()
}

/// Signs an arbitrary encoded message with the raw private operation, left-padded.
fn raw_sign(em: &[u8]) -> Vec<u8> {
    let k = private();
    let s = BigUint::from_bytes_be(em).modpow(k.d(), k.n());
    let mut out = s.to_bytes_be();
    while out.len() < k.size() {
        out.insert(0, 0);
    }
    out
}

fn em(digest: Digest, message: &[u8], k: usize) -> Vec<u8> {
    let mut t = digest.prefix().to_vec();
    t.extend(digest.hash(message));
    let mut out = vec![0, 1];
    out.resize(k - t.len() - 1, 0xff);
    out.push(0);
    out.extend(t);
    out
}

/// A small deterministic generator (xorshift) for the differential inputs.
fn bytes(seed: &mut u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|_| {
            *seed ^= *seed << 13;
            *seed ^= *seed >> 7;
            *seed ^= *seed << 17;
            *seed as u8
        })
        .collect()
}

#[test]
fn modular_exponentiation_matches_the_rsa_crate() {
    let k = private();
    let n = k.n();
    let mut seed = 0x9e37_79b9_7f4a_7c15;
    for e in [3u64, 17, 65537, (1 << 33) - 1] {
        let ours = RsaKey::new(&n.to_bytes_be(), &e.to_be_bytes()).unwrap();
        let mut inputs = vec![vec![0; 256], {
            let mut one = vec![0; 256];
            one[255] = 1;
            one
        }];
        let mut n_minus_1 = (n - 1u32).to_bytes_be();
        n_minus_1.resize(256, 0);
        inputs.push(n_minus_1);
        inputs.extend((0..40).map(|_| bytes(&mut seed, 256)));
        for s in inputs {
            let want = {
                let v = BigUint::from_bytes_be(&s);
                (v < *n).then(|| {
                    let mut out = v.modpow(&BigUint::from(e), n).to_bytes_be();
                    while out.len() < 256 {
                        out.insert(0, 0);
                    }
                    out
                })
            };
            assert_eq!(ours.public_op(&s), want, "e={e}");
        }
    }
}

#[test]
fn pkcs1_signatures_verify_and_malformed_ones_do_not() {
    let key = key();
    let k = key.bytes;
    let message = b"header.payload";
    for digest in [Digest::Sha256, Digest::Sha384, Digest::Sha512] {
        let good = raw_sign(&em(digest, message, k));
        assert!(
            key.verify(Padding::Pkcs1, digest, message, &good),
            "{digest:?}"
        );
        assert!(!key.verify(Padding::Pkcs1, digest, b"header.payloaD", &good));
        for other in [Digest::Sha256, Digest::Sha384, Digest::Sha512] {
            assert_eq!(
                key.verify(Padding::Pkcs1, other, message, &good),
                other == digest
            );
        }
    }
    let d = Digest::Sha256;
    let good = em(d, message, k);
    let mut cases: Vec<(&str, Vec<u8>)> = Vec::new();
    let mut block_type_2 = good.clone();
    block_type_2[1] = 2;
    cases.push(("block type 2", block_type_2));
    let mut leading = good.clone();
    leading[0] = 1;
    leading[1] = 0;
    cases.push(("no leading zero", leading));
    let mut ps = good.clone();
    ps[10] = 0xfe;
    cases.push(("padding byte not ff", ps));
    let mut separator = good.clone();
    let at = k - 32 - 19 - 1;
    separator[at] = 1;
    cases.push(("no zero separator", separator));
    let mut oid = good.clone();
    oid[at + 1 + 14] = 0x02; // the SHA-384 OID with a SHA-256 hash
    cases.push(("wrong digest OID", oid));
    // The hash moved left, with garbage after it (the Bleichenbacher 2006 forgery shape).
    let mut shifted = good[..at].to_vec();
    shifted.truncate(at - 8);
    shifted.push(0);
    shifted.extend(&good[at + 1..]);
    shifted.extend([0xaa; 8]);
    cases.push(("garbage after the hash", shifted));
    for (what, em) in cases {
        assert_eq!(em.len(), k, "{what}");
        assert!(
            !key.verify(Padding::Pkcs1, d, message, &raw_sign(&em)),
            "{what}"
        );
    }
    let sig = raw_sign(&good);
    assert!(key.verify(Padding::Pkcs1, d, message, &sig));
    let mut longer = vec![0];
    longer.extend(&sig);
    assert!(
        !key.verify(Padding::Pkcs1, d, message, &longer),
        "one byte longer"
    );
    assert!(
        !key.verify(Padding::Pkcs1, d, message, &sig[1..]),
        "one byte shorter"
    );
    let n = private().n().to_bytes_be();
    let n_plus = (BigUint::from_bytes_be(&n) + 1u32).to_bytes_be();
    for at_least_n in [n, n_plus, vec![0xff; k]] {
        assert!(key.public_op(&at_least_n).is_none());
        assert!(!key.verify(Padding::Pkcs1, d, message, &at_least_n));
    }
}

#[test]
fn keys_are_checked_when_loaded() {
    let k = private();
    let n = k.n().to_bytes_be();
    let mut even = n.clone();
    *even.last_mut().unwrap() &= 0xfe;
    assert!(RsaKey::new(&even, &[1, 0, 1]).is_none(), "even modulus");
    for e in [
        &[1][..],
        &[2],
        &[1, 0, 0],
        &[2, 0, 0, 0, 1],
        &[0, 0, 1, 0, 1],
    ] {
        let ok = e == [0, 0, 1, 0, 1];
        assert_eq!(RsaKey::new(&n, e).is_some(), ok, "e={e:?}");
    }
    assert!(RsaKey::new(&[0xff; 513], &[3]).is_none(), "over 4096 bits");
    let mut padded = vec![0, 0];
    padded.extend(&n);
    assert_eq!(RsaKey::new(&padded, &[1, 0, 1]).unwrap().bytes, 256);
}

#[test]
fn tokens_are_judged_as_jwt_simple_judges_them() {
    let pair = RS256KeyPair::from_der(der()).unwrap();
    let components = pair.public_key().to_components();
    let reference = pair.public_key();
    let ours =
        RsaVerifier::new(&components.n, &components.e, Padding::Pkcs1, Digest::Sha256).unwrap();
    let other = RS256KeyPair::generate(2048).unwrap();
    let options = || {
        Some(VerificationOptions {
            allowed_issuers: Some(["iss".to_owned()].into()),
            allowed_audiences: Some(["aud".to_owned()].into()),
            time_tolerance: Some(Duration::from_secs(10)),
            artificial_time: Some(UnixTimeStamp::from_secs(1_000_000)),
            ..Default::default()
        })
    };
    let claims = |exp: u64, iss: &str, aud: &str| {
        let mut c = Claims::create(Duration::from_secs(1));
        c.issued_at = Some(UnixTimeStamp::from_secs(999_990));
        c.expires_at = Some(UnixTimeStamp::from_secs(exp));
        c.with_issuer(iss).with_audience(aud)
    };
    let good = pair.sign(claims(1_000_100, "iss", "aud")).unwrap();
    let (head, rest) = good.split_once('.').unwrap();
    let (payload, sig) = rest.split_once('.').unwrap();
    let sig_bytes = URL_SAFE_NO_PAD.decode(sig).unwrap();
    let mut flipped = sig_bytes.clone();
    flipped[100] ^= 1;
    let other_payload = URL_SAFE_NO_PAD.encode(br#"{"iss":"iss","aud":"aud","exp":1000100}"#);
    let hs_head = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let crit_head = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","crit":["x"]}"#);
    let typ_head = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","typ":"at+jwt"}"#);
    let bad_typ_head = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","typ":"JWS"}"#);
    let resign = |head: &str| {
        let signed = format!("{head}.{payload}");
        let em = em(Digest::Sha256, signed.as_bytes(), 256);
        format!("{signed}.{}", URL_SAFE_NO_PAD.encode(raw_sign(&em)))
    };
    let tokens = [
        good.clone(),
        pair.sign(claims(1_000_005, "iss", "aud")).unwrap(), // within the tolerance
        pair.sign(claims(999_980, "iss", "aud")).unwrap(),   // expired
        pair.sign(claims(1_000_100, "evil", "aud")).unwrap(),
        pair.sign(claims(1_000_100, "iss", "other")).unwrap(),
        other.sign(claims(1_000_100, "iss", "aud")).unwrap(), // wrong key
        format!("{head}.{payload}.{}", URL_SAFE_NO_PAD.encode(&flipped)),
        format!("{head}.{other_payload}.{sig}"),
        format!("{hs_head}.{payload}.{sig}"),
        format!("{head}.{payload}"),
        format!("{head}.{payload}.{sig}.x"),
        resign(&crit_head),
        resign(&typ_head),
        resign(&bad_typ_head),
        resign(head),
    ];
    for token in &tokens {
        let want = reference.verify_token::<NoCustomClaims>(token, options());
        let got = ours.verify_token(token, options());
        let err = |r: &Result<JWTClaims<NoCustomClaims>, jwt_simple::Error>| {
            r.as_ref()
                .err()
                .map(|e| e.downcast_ref::<JWTError>().map(|j| j.to_string()))
        };
        assert_eq!(err(&got), err(&want), "{token}");
        if let (Ok(a), Ok(b)) = (&got, &want) {
            assert_eq!((a.expires_at, &a.issuer), (b.expires_at, &b.issuer));
        }
    }
    // Non-canonical base64url in the signature: padding, or trailing bits set (jwt-simple
    // may decode those to the same bytes; we refuse them).
    for sig in [format!("{sig}="), {
        let mut s = sig.to_owned();
        let last = s.pop().unwrap();
        let bumped = match last {
            'A'..='Y' | 'a'..='y' | '0'..='8' => (last as u8 + 1) as char,
            _ => 'A',
        };
        s.push(bumped);
        s
    }] {
        assert!(ours
            .verify_token(&format!("{head}.{payload}.{sig}"), options())
            .is_err());
    }
}

/// EMSA-PSS-ENCODE for a 2048-bit key with the given salt, and a way to spoil it.
fn pss_em(
    digest: Digest,
    message: &[u8],
    salt: &[u8],
    spoil: impl FnOnce(&mut Vec<u8>),
) -> Vec<u8> {
    let h_len = digest.hash(b"").len();
    let mut m_prime = vec![0u8; 8];
    m_prime.extend(digest.hash(message));
    m_prime.extend_from_slice(salt);
    let h = digest.hash(&m_prime);
    let db_len = 256 - h_len - 1;
    let mut db = vec![0u8; db_len - salt.len() - 1];
    db.push(1);
    db.extend_from_slice(salt);
    let mut em: Vec<u8> = db
        .iter()
        .zip(mgf1(digest, &h, db_len))
        .map(|(a, b)| a ^ b)
        .collect();
    em[0] &= 0x7f; // emBits = 2047
    em.extend(h);
    em.push(0xbc);
    spoil(&mut em);
    em
}

#[test]
fn pss_signatures_verify_and_malformed_ones_do_not() {
    let key = key();
    let message = b"header.payload";
    for digest in [Digest::Sha256, Digest::Sha384, Digest::Sha512] {
        let h_len = digest.hash(b"").len();
        let salt = vec![7u8; h_len];
        let good = raw_sign(&pss_em(digest, message, &salt, |_| {}));
        assert!(
            key.verify(Padding::Pss, digest, message, &good),
            "{digest:?}"
        );
        assert!(!key.verify(Padding::Pss, digest, b"header.payloaD", &good));
        assert!(!key.verify(Padding::Pkcs1, digest, message, &good));
        type Spoil = Box<dyn FnOnce(&mut Vec<u8>)>;
        let spoiled: [(&str, Spoil); 4] = [
            ("trailer", Box::new(|em| *em.last_mut().unwrap() = 0xbd)),
            ("top bit", Box::new(|em| em[0] |= 0x80)),
            ("hash", Box::new(move |em| em[256 - 2] ^= 1)),
            ("masked DB", Box::new(|em| em[40] ^= 1)),
        ];
        for (what, spoil) in spoiled {
            let sig = raw_sign(&pss_em(digest, message, &salt, spoil));
            assert!(
                !key.verify(Padding::Pss, digest, message, &sig),
                "{digest:?} {what}"
            );
        }
        // RFC 7518 fixes the salt length to the hash length.
        for len in [0, h_len - 1, h_len + 1] {
            let sig = raw_sign(&pss_em(digest, message, &vec![7u8; len], |_| {}));
            assert!(
                !key.verify(Padding::Pss, digest, message, &sig),
                "{digest:?} salt {len}"
            );
        }
    }
}

#[test]
fn ps_tokens_are_judged_as_jwt_simple_judges_them() {
    let rs = RS256KeyPair::from_der(der()).unwrap();
    let c = rs.public_key().to_components();
    let claims = || Claims::create(Duration::from_secs(60));
    fn options() -> Option<VerificationOptions> {
        Some(VerificationOptions::default())
    }
    type Verify = Box<dyn Fn(&str) -> Result<JWTClaims<NoCustomClaims>, jwt_simple::Error>>;
    /// A token signed with jwt-simple's key pair, and jwt-simple's verification.
    macro_rules! case {
        ($pair:ty, $digest:expr) => {{
            let pair = || <$pair>::from_der(der()).unwrap();
            let verify: Verify = Box::new(move |t| pair().public_key().verify_token(t, options()));
            ($digest, pair().sign(claims()).unwrap(), verify)
        }};
    }
    let cases = [
        case!(PS256KeyPair, Digest::Sha256),
        case!(PS384KeyPair, Digest::Sha384),
        case!(PS512KeyPair, Digest::Sha512),
    ];
    for (digest, token, reference) in cases {
        let ours = RsaVerifier::new(&c.n, &c.e, Padding::Pss, digest).unwrap();
        let (signed, sig) = token.rsplit_once('.').unwrap();
        let mut flipped = URL_SAFE_NO_PAD.decode(sig).unwrap();
        flipped[17] ^= 0x10;
        let tampered = format!("{signed}.{}", URL_SAFE_NO_PAD.encode(&flipped));
        for (t, ok) in [(&token, true), (&tampered, false)] {
            assert_eq!(ours.verify_token(t, options()).is_ok(), ok, "{digest:?}");
            assert_eq!(reference(t).is_ok(), ok, "{digest:?}");
        }
        let rs = RsaVerifier::new(&c.n, &c.e, Padding::Pkcs1, digest).unwrap();
        assert!(rs.verify_token(&token, options()).is_err());
    }
}
