//! RSA signature verification with 32-bit limbs: RSASSA-PKCS1-v1_5 (RS256, RS384, RS512;
//! RFC 8017 §8.2.2) and RSASSA-PSS with MGF1 and a salt as long as the hash (PS256, PS384,
//! PS512; RFC 8017 §8.1.2, RFC 7518 §3.5).
//!
//! Why not the `rsa` crate jwt-simple uses: its bignums have 64-bit limbs, whose 64×64→128
//! products wasm32 emulates, which made one RS256 check cost ~700 µs in V8. Verification
//! with a public key is only `s^e mod n`, 17 Montgomery multiplications for e = 65537,
//! and u32×u32→u64 is a native wasm32 instruction. The modulus' Montgomery constants are
//! computed once when the key is loaded. Public inputs only: nothing here needs to run in
//! constant time, but the padding is still compared whole, as one encoded message.

use std::cmp::Ordering;

use jwt_simple::prelude::{JWTClaims, NoCustomClaims, VerificationOptions};
use jwt_simple::JWTError;

use super::jws;

/// Largest accepted modulus: 4096 bits, as the `rsa` crate (the smallest, 2048 bits, is
/// checked by the caller).
const MAX_MODULUS_BYTES: usize = 512;
/// Largest accepted public exponent, as the `rsa` crate: 2³³ − 1.
const MAX_EXPONENT: u64 = (1 << 33) - 1;

/// A digest a signature may cover, with its DER `DigestInfo` prefix (RFC 8017 §9.2 note 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Digest {
    Sha256,
    Sha384,
    Sha512,
}

/// How the hash is encoded into the signed message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Padding {
    Pkcs1,
    Pss,
}

impl Digest {
    fn prefix(self) -> &'static [u8] {
        match self {
            Digest::Sha256 => &[
                0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                0x01, 0x05, 0x00, 0x04, 0x20,
            ],
            Digest::Sha384 => &[
                0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                0x02, 0x05, 0x00, 0x04, 0x30,
            ],
            Digest::Sha512 => &[
                0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                0x03, 0x05, 0x00, 0x04, 0x40,
            ],
        }
    }

    fn hash(self, message: &[u8]) -> Vec<u8> {
        match self {
            Digest::Sha256 => hmac_sha256::Hash::hash(message).to_vec(),
            Digest::Sha384 => hmac_sha512::sha384::Hash::hash(message).to_vec(),
            Digest::Sha512 => hmac_sha512::Hash::hash(message).to_vec(),
        }
    }
}

/// An RSA public key ready for verification.
#[derive(Debug, Clone)]
pub(crate) struct RsaKey {
    /// The modulus, least significant limb first.
    n: Vec<u32>,
    /// `-n⁻¹ mod 2³²`.
    n0: u32,
    /// `R² mod n`, `R = 2^(32·limbs)`: multiplying by it enters the Montgomery domain.
    r2: Vec<u32>,
    e: u64,
    /// Length of the modulus in bytes: every signature has exactly this length.
    bytes: usize,
    /// Length of the modulus in bits.
    bits: usize,
}

impl RsaKey {
    /// The key of big-endian `n` and `e`, if it is one: an odd modulus of at most 4096
    /// bits, an odd exponent from 3 to 2³³ − 1.
    pub fn new(n: &[u8], e: &[u8]) -> Option<RsaKey> {
        let n = strip_zeros(n);
        let e = strip_zeros(e);
        if n.is_empty() || n.len() > MAX_MODULUS_BYTES || e.len() > 8 {
            return None;
        }
        let e = e.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
        let limbs = from_be(n, n.len().div_ceil(4))?;
        let low = *limbs.first()?;
        if low & 1 == 0 || !(3..=MAX_EXPONENT).contains(&e) || e & 1 == 0 {
            return None;
        }
        // Newton's iteration doubles the correct low bits of the inverse: 1, 2, 4, ... 32.
        let inverse = (0..5).fold(1u32, |x, _| {
            x.wrapping_mul(2u32.wrapping_sub(low.wrapping_mul(x)))
        });
        let r2 = r_squared(&limbs);
        let top = n.first().map_or(0, |b| 8 - b.leading_zeros() as usize);
        Some(RsaKey {
            bits: 8 * (n.len() - 1) + top,
            n0: inverse.wrapping_neg(),
            r2,
            n: limbs,
            e,
            bytes: n.len(),
        })
    }

    /// Whether `signature` is a signature of `message` with `digest` and `padding`.
    pub fn verify(
        &self,
        padding: Padding,
        digest: Digest,
        message: &[u8],
        signature: &[u8],
    ) -> bool {
        let Some(em) = self.public_op(signature) else {
            return false;
        };
        match padding {
            Padding::Pkcs1 => self.pkcs1(&em, digest, message),
            Padding::Pss => self.pss(&em, digest, message),
        }
    }

    /// EMSA-PKCS1-v1_5: the expected encoded message is built and compared whole.
    fn pkcs1(&self, em: &[u8], digest: Digest, message: &[u8]) -> bool {
        let prefix = digest.prefix();
        let hash = digest.hash(message);
        let t_len = prefix.len() + hash.len();
        let Some(ps_len) = self.bytes.checked_sub(t_len + 3).filter(|l| *l >= 8) else {
            return false;
        };
        let mut expected = Vec::with_capacity(self.bytes);
        expected.extend_from_slice(&[0x00, 0x01]);
        expected.resize(2 + ps_len, 0xff);
        expected.push(0x00);
        expected.extend_from_slice(prefix);
        expected.extend_from_slice(&hash);
        em.len() == expected.len() && em.iter().zip(&expected).fold(0, |d, (a, b)| d | (a ^ b)) == 0
    }

    /// EMSA-PSS-VERIFY (RFC 8017 §9.1.2) with MGF1 of the same hash and `sLen = hLen`.
    fn pss(&self, em: &[u8], digest: Digest, message: &[u8]) -> bool {
        let em_bits = self.bits - 1;
        let em_len = em_bits.div_ceil(8);
        // The public operation gives `bytes` bytes; with `bits − 1` a multiple of 8 the
        // encoded message is one byte shorter and the first byte must be zero.
        let Some((lead, em)) = em.split_at_checked(em.len() - em_len) else {
            return false;
        };
        let h_len = digest.hash(b"").len();
        let Some(db_len) = em_len.checked_sub(h_len + 1) else {
            return false;
        };
        if lead.iter().any(|b| *b != 0) || em_len < 2 * h_len + 2 || em.last() != Some(&0xbc) {
            return false;
        }
        let (masked_db, rest) = em.split_at(db_len);
        let h = rest.get(..h_len).unwrap_or_default();
        let unused_bits = 8 * em_len - em_bits;
        let top_mask = 0xffu8.checked_shr(unused_bits as u32).unwrap_or(0);
        if masked_db.first().is_some_and(|b| b & !top_mask != 0) {
            return false;
        }
        let mut db: Vec<u8> = masked_db
            .iter()
            .zip(mgf1(digest, h, db_len))
            .map(|(a, b)| a ^ b)
            .collect();
        if let Some(first) = db.first_mut() {
            *first &= top_mask;
        }
        // DB = PS (zeros) || 0x01 || salt (hLen bytes).
        let Some((ps_one, salt)) = db.split_at_checked(db_len - h_len) else {
            return false;
        };
        let Some((one, ps)) = ps_one.split_last() else {
            return false;
        };
        if *one != 1 || ps.iter().any(|b| *b != 0) {
            return false;
        }
        let mut m_prime = vec![0u8; 8];
        m_prime.extend(digest.hash(message));
        m_prime.extend_from_slice(salt);
        digest.hash(&m_prime) == h
    }

    /// `s^e mod n` as `bytes` big-endian bytes; `None` unless the signature is exactly
    /// `bytes` long and, as a number, below `n` (RFC 8017 §5.2.2).
    fn public_op(&self, signature: &[u8]) -> Option<Vec<u8>> {
        if signature.len() != self.bytes {
            return None;
        }
        let s = from_be(signature, self.n.len())?;
        if compare(&s, &self.n) != Ordering::Less {
            return None;
        }
        let mut base = Vec::new();
        self.mont_mul(&s, &self.r2, &mut base);
        let mut acc = base.clone();
        let mut tmp = Vec::new();
        let top = 63 - self.e.leading_zeros();
        for bit in (0..top).rev() {
            self.mont_mul(&acc, &acc, &mut tmp);
            std::mem::swap(&mut acc, &mut tmp);
            if (self.e >> bit) & 1 == 1 {
                self.mont_mul(&acc, &base, &mut tmp);
                std::mem::swap(&mut acc, &mut tmp);
            }
        }
        let mut one = vec![0; self.n.len()];
        if let Some(low) = one.first_mut() {
            *low = 1;
        }
        self.mont_mul(&acc, &one, &mut tmp);
        let be = to_be(&tmp);
        let extra = be.len().checked_sub(self.bytes)?;
        let (zeros, out) = be.split_at(extra);
        zeros.iter().all(|b| *b == 0).then(|| out.to_vec())
    }

    /// `out = a·b·R⁻¹ mod n` (coarsely integrated operand scanning, CIOS). Inputs below `n`
    /// give an output below `n`.
    fn mont_mul(&self, a: &[u32], b: &[u32], out: &mut Vec<u32>) {
        let n = &self.n;
        out.clear();
        out.resize(n.len(), 0);
        // out holds t[0..k]; t[k] lives in `hi`, t[k+1] in `hi2`.
        let mut hi = 0u32;
        for &bi in b {
            let mut carry = 0u64;
            for (t, &aj) in out.iter_mut().zip(a) {
                let v = u64::from(*t) + u64::from(aj) * u64::from(bi) + carry;
                *t = v as u32;
                carry = v >> 32;
            }
            let v = u64::from(hi) + carry;
            hi = v as u32;
            let hi2 = (v >> 32) as u32;
            let m = out.first().copied().unwrap_or(0).wrapping_mul(self.n0);
            let mut carry = 0u64;
            for (t, &nj) in out.iter_mut().zip(n) {
                let v = u64::from(*t) + u64::from(m) * u64::from(nj) + carry;
                *t = v as u32;
                carry = v >> 32;
            }
            // The low limb is now zero: dividing by 2³² drops it.
            let v = u64::from(hi) + carry;
            out.copy_within(1.., 0);
            if let Some(last) = out.last_mut() {
                *last = v as u32;
            }
            hi = hi2.wrapping_add((v >> 32) as u32);
        }
        if hi != 0 || compare(out, n) != Ordering::Less {
            subtract(out, n);
        }
    }
}

/// MGF1 (RFC 8017 §B.2.1): `len` bytes of `Hash(seed || counter)`.
fn mgf1(digest: Digest, seed: &[u8], len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 64);
    let mut input = seed.to_vec();
    for counter in 0u32.. {
        if out.len() >= len {
            break;
        }
        input.truncate(seed.len());
        input.extend_from_slice(&counter.to_be_bytes());
        out.extend(digest.hash(&input));
    }
    out.truncate(len);
    out
}

/// An RSA key verifying one RS* or PS* algorithm, as jwt-simple's key types do.
#[derive(Debug, Clone)]
pub(crate) struct RsaVerifier {
    key: RsaKey,
    padding: Padding,
    digest: Digest,
}

impl RsaVerifier {
    pub fn new(
        n: &[u8],
        e: &[u8],
        padding: Padding,
        digest: Digest,
    ) -> Result<RsaVerifier, jwt_simple::Error> {
        let key = RsaKey::new(n, e).ok_or(JWTError::InvalidPublicKey)?;
        Ok(RsaVerifier {
            key,
            padding,
            digest,
        })
    }

    /// The JWS algorithm name.
    fn alg(&self) -> &'static str {
        match (self.padding, self.digest) {
            (Padding::Pkcs1, Digest::Sha256) => "RS256",
            (Padding::Pkcs1, Digest::Sha384) => "RS384",
            (Padding::Pkcs1, Digest::Sha512) => "RS512",
            (Padding::Pss, Digest::Sha256) => "PS256",
            (Padding::Pss, Digest::Sha384) => "PS384",
            (Padding::Pss, Digest::Sha512) => "PS512",
        }
    }

    pub fn verify_token(
        &self,
        token: &str,
        options: Option<VerificationOptions>,
    ) -> Result<JWTClaims<NoCustomClaims>, jwt_simple::Error> {
        let options = options.unwrap_or_default();
        jws::verify(self.alg(), token, &options, |signed, signature| {
            self.key
                .verify(self.padding, self.digest, signed, signature)
        })
    }
}

fn strip_zeros(bytes: &[u8]) -> &[u8] {
    let first = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    bytes.get(first..).unwrap_or_default()
}

/// Big-endian bytes as `limbs` little-endian limbs; `None` if they do not fit.
fn from_be(bytes: &[u8], limbs: usize) -> Option<Vec<u32>> {
    let mut out: Vec<u32> = bytes
        .rchunks(4)
        .map(|chunk| chunk.iter().fold(0u32, |acc, b| (acc << 8) | u32::from(*b)))
        .collect();
    if out.len() > limbs {
        return None;
    }
    out.resize(limbs, 0);
    Some(out)
}

fn to_be(limbs: &[u32]) -> Vec<u8> {
    limbs.iter().rev().flat_map(|l| l.to_be_bytes()).collect()
}

/// Compares two numbers of the same limb count.
fn compare(a: &[u32], b: &[u32]) -> Ordering {
    a.iter().rev().cmp(b.iter().rev())
}

/// `a -= b` modulo `2^(32·limbs)`.
fn subtract(a: &mut [u32], b: &[u32]) {
    let mut borrow = 0u64;
    for (x, &y) in a.iter_mut().zip(b) {
        let v = u64::from(*x)
            .wrapping_sub(u64::from(y))
            .wrapping_sub(borrow);
        *x = v as u32;
        borrow = v >> 63;
    }
}

/// `R² mod n` by doubling 1 modulo `n` `2·32·limbs` times: once per key load.
fn r_squared(n: &[u32]) -> Vec<u32> {
    let mut x = vec![0u32; n.len()];
    if let Some(low) = x.first_mut() {
        *low = 1;
    }
    for _ in 0..64 * n.len() {
        let mut carry = 0u32;
        for limb in x.iter_mut() {
            let next = *limb >> 31;
            *limb = (*limb << 1) | carry;
            carry = next;
        }
        if carry != 0 || compare(&x, n) != Ordering::Less {
            subtract(&mut x, n);
        }
    }
    x
}

#[cfg(test)]
mod tests;
