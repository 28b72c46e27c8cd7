//! The ES256 verification against the `p256` crate (what jwt-simple uses): the field and
//! scalar arithmetic against big integers, the point sums against `p256`'s, signatures and
//! tokens judged the same, including hand-built edge cases.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jwt_simple::prelude::*;
use p256::ecdsa::signature::Verifier as _;
use p256::elliptic_curve::ff::PrimeField as _;
use p256::elliptic_curve::sec1::ToSec1Point as _;
use p256::{ProjectivePoint, PublicKey, Scalar};
use rsa::BigUint;

use super::field::{N, P};
use super::*;

fn big(a: &Limbs) -> BigUint {
    BigUint::from_slice(a)
}

fn limbs(a: &BigUint) -> Limbs {
    from_be(&be32(a))
}

fn be32(a: &BigUint) -> [u8; 32] {
    let bytes = a.to_bytes_be();
    let mut out = [0u8; 32];
    out[32 - bytes.len()..].copy_from_slice(&bytes);
    out
}

fn n() -> BigUint {
    big(&N.m)
}

fn p() -> BigUint {
    big(&P.m)
}

/// A small deterministic generator (xorshift) for the differential inputs.
fn random(seed: &mut u64) -> [u8; 32] {
    let mut out = [0u8; 32];
    for b in out.iter_mut() {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        *b = *seed as u8;
    }
    out
}

fn scalar(v: &BigUint) -> Scalar {
    Scalar::from_repr(be32(v).into()).unwrap()
}

/// `d·G` as an uncompressed SEC1 point.
fn public(d: &BigUint) -> Vec<u8> {
    (ProjectivePoint::GENERATOR * scalar(d))
        .to_affine()
        .to_sec1_point(false)
        .as_bytes()
        .to_vec()
}

fn sec1(point: &ProjectivePoint) -> Vec<u8> {
    point.to_affine().to_sec1_point(false).as_bytes().to_vec()
}

/// Our point as uncompressed SEC1 bytes, or the single byte 0 at infinity (as `p256`).
fn ours_sec1(point: Jacobian) -> Vec<u8> {
    let Some(a) = point.to_affine() else {
        return vec![0];
    };
    let mut out = vec![4];
    out.extend(be32(&big(&a.x)));
    out.extend(be32(&big(&a.y)));
    out
}

/// Values every arithmetic check includes: the small, the largest, and the random.
fn values(m: &BigUint, seed: &mut u64) -> Vec<BigUint> {
    let mut out: Vec<BigUint> = [0u32, 1, 2, 3].iter().map(|v| BigUint::from(*v)).collect();
    out.extend([
        m - 1u32,
        m - 2u32,
        m >> 1,
        BigUint::from(1u8) << 255usize & m,
    ]);
    out.extend((0..40).map(|_| BigUint::from_bytes_be(&random(seed)) % m));
    out
}

#[test]
fn field_and_scalar_arithmetic_match_big_integers() {
    let mut seed = 0x9e37_79b9_7f4a_7c15;
    for modulus in [&P, &N] {
        let m = big(&modulus.m);
        let vals = values(&m, &mut seed);
        // Compared through the representation: `enter` is checked by the products.
        let enter = |v: &BigUint| modulus.enter(&limbs(v));
        for a in &vals {
            for b in &vals {
                let (la, lb) = (enter(a), enter(b));
                assert_eq!(modulus.mul(&la, &lb), enter(&(a * b % &m)), "{a:x} * {b:x}");
                assert_eq!(modulus.add(&la, &lb), enter(&((a + b) % &m)));
                assert_eq!(modulus.sub(&la, &lb), enter(&((a + &m - b) % &m)));
            }
            assert_eq!(modulus.square(&enter(a)), enter(&(a * a % &m)), "{a:x}²");
            let inverse = modulus.invert(&enter(a));
            let want = a.modpow(&(&m - 2u32), &m);
            assert_eq!(inverse, enter(&want), "1 / {a:x}");
        }
    }
    // The Montgomery form of n: 1 enters as R mod n.
    let r = BigUint::from(1u8) << 256usize;
    assert_eq!(big(&N.enter(&[1, 0, 0, 0, 0, 0, 0, 0])), &r % n());
    assert_eq!(P.enter(&[1, 0, 0, 0, 0, 0, 0, 0]), [1, 0, 0, 0, 0, 0, 0, 0]);
}

#[test]
fn wnaf_digits_sum_to_the_scalar() {
    let mut seed = 0x1234_5678_9abc_def1;
    for k in values(&n(), &mut seed)
        .iter()
        .chain([&(BigUint::from(1u8) << 256usize) - 1u32].iter())
    {
        for w in [W_G, W_Q, 2, 3] {
            let digits = wnaf(&limbs(k), w);
            let (mut pos, mut neg) = (BigUint::from(0u8), BigUint::from(0u8));
            let mut last_nonzero: Option<usize> = None;
            for (i, d) in digits.iter().enumerate() {
                if *d == 0 {
                    continue;
                }
                assert!(
                    d % 2 != 0 && i32::from(d.unsigned_abs()) < 1 << (w - 1),
                    "{d}"
                );
                if let Some(j) = last_nonzero {
                    assert!(i - j >= w as usize, "digits {j} and {i} too close");
                }
                last_nonzero = Some(i);
                let term = BigUint::from(d.unsigned_abs()) << i;
                if *d > 0 {
                    pos += term;
                } else {
                    neg += term;
                }
            }
            assert_eq!(pos - neg, *k, "w = {w}");
        }
    }
}

#[test]
fn point_sums_match_p256_including_exceptional_cases() {
    let n = n();
    let one = BigUint::from(1u8);
    let mut seed = 0x0bad_cafe_dead_beef;
    // Keys whose tables coincide with (or negate) the generator's, chunk by chunk.
    let mut keys: Vec<BigUint> = [0usize, 32, 64, 128, 224]
        .iter()
        .map(|s| &one << *s)
        .collect();
    keys.extend([&n - 1u32, &n - (&one << 32usize), BigUint::from(3u8)]);
    keys.push(BigUint::from_bytes_be(&random(&mut seed)) % &n);
    for d in &keys {
        let q = Es256Key::new(&public(d)).unwrap();
        let qp = ProjectivePoint::GENERATOR * scalar(d);
        let k = BigUint::from_bytes_be(&random(&mut seed)) % &n;
        let mut pairs = vec![
            (BigUint::from(0u8), one.clone()),
            (one.clone(), one.clone()),
            (one.clone(), &n - 1u32),
            (k.clone(), k.clone()),
            (k.clone(), &n - &k),
            (&n - 1u32, &n - 1u32),
            (&one << 32usize, one.clone()),
            (one.clone(), &one << 224usize),
            // u1 + u2·d ≡ 0: the sum is the point at infinity.
            ((&n - (&k * d % &n)) % &n, k.clone()),
        ];
        pairs.extend((0..4).map(|_| {
            (
                BigUint::from_bytes_be(&random(&mut seed)) % &n,
                BigUint::from_bytes_be(&random(&mut seed)) % &n,
            )
        }));
        for (u1, u2) in &pairs {
            let want = ProjectivePoint::GENERATOR * scalar(u1) + qp * scalar(u2);
            let want = if want == ProjectivePoint::IDENTITY {
                vec![0]
            } else {
                sec1(&want)
            };
            let got = ours_sec1(lincomb(generator().unwrap(), &limbs(u1), &q.q, &limbs(u2)));
            assert_eq!(got, want, "d = {d:x}, u1 = {u1:x}, u2 = {u2:x}");
        }
    }
}

#[test]
fn keys_are_checked_when_loaded() {
    let good = public(&BigUint::from(12345u32));
    assert!(Es256Key::new(&good).is_ok());
    let p_bytes = be32(&p());
    let mut cases = vec![
        good[1..].to_vec(),
        good[..64].to_vec(),
        [good.clone(), vec![0]].concat(),
        [&[2u8][..], &good[1..33]].concat(),
        vec![0],
        vec![],
        [&[4u8][..], &[0; 64][..]].concat(),
        [&[4u8][..], &p_bytes[..], &good[33..]].concat(),
        [&[4u8][..], &good[1..33], &p_bytes[..]].concat(),
    ];
    let mut off_curve = good.clone();
    off_curve[64] ^= 1;
    cases.push(off_curve);
    let mut prefix = good.clone();
    prefix[0] = 6;
    cases.push(prefix);
    // x + p for a valid x: the same point modulo p, but not a canonical encoding.
    let x = BigUint::from_bytes_be(&good[1..33]);
    if &x + p() < BigUint::from(1u8) << 256usize {
        cases.push([&[4u8][..], &be32(&(&x + p()))[..], &good[33..]].concat());
    }
    for case in &cases {
        assert!(Es256Key::new(case).is_err(), "{case:02x?}");
        if case.len() == 65 && case[0] == 4 {
            assert!(p256::ecdsa::VerifyingKey::from_sec1_bytes(case).is_err());
        }
    }
}

/// An ECDSA signature `r || s` of `message` by `d` with nonce `k`, and `s` exactly as given
/// by the formula (high or low).
fn sign(d: &BigUint, k: &BigUint, message: &[u8]) -> Vec<u8> {
    let n = n();
    let z = BigUint::from_bytes_be(&hmac_sha256::Hash::hash(message)) % &n;
    let r_point = public(k);
    let r = BigUint::from_bytes_be(&r_point[1..33]) % &n;
    let s = (z + &r * d) * k.modpow(&(&n - 2u32), &n) % &n;
    [be32(&r), be32(&s)].concat()
}

/// Both verdicts, ours and `p256`'s.
fn verdicts(key: &[u8], message: &[u8], signature: &[u8]) -> (bool, bool) {
    let ours = Es256Key::new(key).unwrap().verify(message, signature);
    let reference = p256::ecdsa::Signature::from_slice(signature).is_ok_and(|sig| {
        p256::ecdsa::VerifyingKey::from_sec1_bytes(key)
            .unwrap()
            .verify(message, &sig)
            .is_ok()
    });
    (ours, reference)
}

#[test]
fn signatures_are_judged_as_p256_judges_them() {
    let n = n();
    let mut seed = 0x5eed_5eed_5eed_5eed;
    for round in 0..12 {
        let d = BigUint::from_bytes_be(&random(&mut seed)) % &n;
        let d = if round == 0 { BigUint::from(1u8) } else { d };
        let key = public(&d);
        let message = random(&mut seed);
        let k = BigUint::from_bytes_be(&random(&mut seed)) % &n;
        let good = sign(&d, &k, &message);
        let (r, s) = (
            BigUint::from_bytes_be(&good[..32]),
            BigUint::from_bytes_be(&good[32..]),
        );
        let mut cases: Vec<(Vec<u8>, Vec<u8>)> = vec![
            (message.to_vec(), good.clone()),
            // The other s, n − s: both are valid (no low-s rule for P-256).
            (message.to_vec(), [be32(&r), be32(&(&n - &s))].concat()),
            (b"other".to_vec(), good.clone()),
            (message.to_vec(), good[..63].to_vec()),
            (message.to_vec(), [&good[..], &[0]].concat()),
            (message.to_vec(), vec![]),
            (message.to_vec(), [be32(&r), [0; 32]].concat()),
            (message.to_vec(), [[0; 32], be32(&s)].concat()),
            (message.to_vec(), [be32(&r), be32(&n)].concat()),
            (message.to_vec(), [be32(&n), be32(&s)].concat()),
            (message.to_vec(), [0xff; 64].to_vec()),
            (
                message.to_vec(),
                [be32(&(&n - 1u32)), be32(&(&n - 1u32))].concat(),
            ),
            (message.to_vec(), [be32(&s), be32(&r)].concat()),
        ];
        for bit in [0, 7, 255, 256, 300, 511] {
            let mut flipped = good.clone();
            flipped[bit / 8] ^= 1 << (bit % 8);
            cases.push((message.to_vec(), flipped));
        }
        for (i, (message, signature)) in cases.iter().enumerate() {
            let (ours, reference) = verdicts(&key, message, signature);
            assert_eq!(ours, reference, "round {round}, case {i}");
            assert_eq!(ours, i < 2, "round {round}, case {i}");
        }
    }
}

#[test]
fn an_x_coordinate_above_n_matches_r_plus_n() {
    // A point R whose x is in [n, p): r = x − n. The key Q = R − (z/r)·G makes (r, r) a
    // signature of the message: u1 = z/r, u2 = 1.
    let (n, p) = (n(), p());
    let message = b"r + n";
    let z = BigUint::from_bytes_be(&hmac_sha256::Hash::hash(message)) % &n;
    let r_point = (0u32..)
        .map(|i| &n + i)
        .take_while(|x| x < &p)
        .find_map(|x| {
            let compressed = [&[2u8][..], &be32(&x)[..]].concat();
            PublicKey::from_sec1_bytes(&compressed).ok()
        })
        .unwrap();
    let x = BigUint::from_bytes_be(&r_point.to_sec1_point(false).as_bytes()[1..33]);
    let r = &x - &n;
    let u1 = &z * r.modpow(&(&n - 2u32), &n) % &n;
    let q = ProjectivePoint::from(*r_point.as_affine()) - ProjectivePoint::GENERATOR * scalar(&u1);
    let key = sec1(&q);
    let signature = [be32(&r), be32(&r)].concat();
    assert_eq!(verdicts(&key, message, &signature), (true, true));
    let mut wrong = signature.clone();
    wrong[63] ^= 1;
    assert_eq!(verdicts(&key, message, &wrong), (false, false));
}

#[test]
fn tokens_are_judged_as_jwt_simple_judges_them() {
    let pair = ES256KeyPair::generate();
    let reference = pair.public_key();
    let ours = Es256Key::new(&reference.public_key().to_bytes_uncompressed()).unwrap();
    let other = ES256KeyPair::generate();
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
        c.invalid_before = Some(UnixTimeStamp::from_secs(999_990));
        c.expires_at = Some(UnixTimeStamp::from_secs(exp));
        c.with_issuer(iss).with_audience(aud)
    };
    let good = pair.sign(claims(1_000_100, "iss", "aud")).unwrap();
    let (head, rest) = good.split_once('.').unwrap();
    let (payload, sig) = rest.split_once('.').unwrap();
    let sig_bytes = URL_SAFE_NO_PAD.decode(sig).unwrap();
    let n = n();
    let high_s = [
        &sig_bytes[..32],
        &be32(&(&n - BigUint::from_bytes_be(&sig_bytes[32..])))[..],
    ]
    .concat();
    let mut flipped = sig_bytes.clone();
    flipped[40] ^= 1;
    let other_payload = URL_SAFE_NO_PAD.encode(br#"{"iss":"iss","aud":"aud","exp":1000100}"#);
    let rs_head = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","typ":"JWT"}"#);
    let with = |bytes: &[u8]| format!("{head}.{payload}.{}", URL_SAFE_NO_PAD.encode(bytes));
    let tokens = [
        good.clone(),
        pair.sign(claims(1_000_005, "iss", "aud")).unwrap(), // within the tolerance
        pair.sign(claims(999_980, "iss", "aud")).unwrap(),   // expired
        pair.sign(claims(1_000_100, "evil", "aud")).unwrap(),
        pair.sign(claims(1_000_100, "iss", "other")).unwrap(),
        other.sign(claims(1_000_100, "iss", "aud")).unwrap(), // wrong key
        with(&flipped),
        with(&high_s),
        with(&[0; 64]),
        with(&sig_bytes[..63]),
        with(&[&sig_bytes[..], &[0]].concat()),
        with(&[be32(&n), be32(&n)].concat()),
        format!("{head}.{other_payload}.{sig}"),
        format!("{rs_head}.{payload}.{sig}"),
        format!("{head}.{payload}"),
        format!("{head}.{payload}.{sig}.x"),
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
    // No low-s rule for P-256: both signatures of the pair are valid.
    assert!(ours.verify_token(&good, options()).is_ok());
    assert!(ours.verify_token(&with(&high_s), options()).is_ok());
}
