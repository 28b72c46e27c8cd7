//! ES256 (ECDSA over P-256 with SHA-256, RFC 7518 §3.4) verification.
//!
//! Why not the `p256` crate jwt-simple uses: it computes `u1·G + u2·Q` with complete
//! projective formulas and no table for `G` in that sum, ~+490 µs per token in V8. Here:
//! - the field and the scalars are numbers on 32-bit limbs ([`field`]): products with a
//!   Solinas reduction modulo `p`, in Montgomery form modulo `n`;
//! - each scalar is split into eight 32-bit chunks, so that `u·P = Σ uᵢ·(2^(32i)·P)`: with
//!   tables of odd multiples of the eight points `2^(32i)·P`, the sum needs 32 doublings
//!   instead of 256. The tables of `G` (32 KiB) are built once per VM, those of the key `Q`
//!   (8 KiB) when the key is loaded, all in affine form for mixed Jacobian + affine additions;
//! - the chunks are read in width-w NAF (w = 8 for `G`, 6 for `Q`), a nonzero digit every
//!   `w + 1` bits on average;
//! - the result is compared without leaving Jacobian coordinates (`r·Z² = X`), so verifying
//!   costs one inversion, of `s` modulo `n` (binary extended Euclid).
//!
//! Public inputs only: nothing here runs in constant time. Every exceptional case of the
//! additions (equal or opposite points, the point at infinity) is handled, so the outcome is
//! the `p256` crate's for any signature.

use std::sync::OnceLock;

use jwt_simple::prelude::{JWTClaims, NoCustomClaims, VerificationOptions};
use jwt_simple::JWTError;

use super::jws;
use field::{add_in_place, from_be, is_zero, less, shift_right, sub_in_place, Limbs, N, P};

mod field;

/// Bits per scalar chunk, and chunks per scalar.
const CHUNK_BITS: usize = 32;
const CHUNKS: usize = 8;
/// wNAF positions of a scalar below `n`: one more than its bits.
const DIGITS: usize = CHUNK_BITS * CHUNKS + 1;
/// wNAF widths: a table holds `2^(w−2)` odd multiples. `G`'s tables are built once.
const W_G: u32 = 8;
const W_Q: u32 = 6;

/// The curve's `b` (`a = −3`) and the generator `G`, least significant limb first.
const B: Limbs = [
    0x27d2_604b,
    0x3bce_3c3e,
    0xcc53_b0f6,
    0x651d_06b0,
    0x7698_86bc,
    0xb3eb_bd55,
    0xaa3a_93e7,
    0x5ac6_35d8,
];
const GX: Limbs = [
    0xd898_c296,
    0xf4a1_3945,
    0x2deb_33a0,
    0x7703_7d81,
    0x63a4_40f2,
    0xf8bc_e6e5,
    0xe12c_4247,
    0x6b17_d1f2,
];
const GY: Limbs = [
    0x37bf_51f5,
    0xcbb6_4068,
    0x6b31_5ece,
    0x2bce_3357,
    0x7c0f_9e16,
    0x8ee7_eb4a,
    0xfe1a_7f9b,
    0x4fe3_42e2,
];

/// A point in affine coordinates; never the point at infinity.
#[derive(Debug, Clone, Copy)]
struct Affine {
    x: Limbs,
    y: Limbs,
}

/// A point in Jacobian coordinates `(X/Z², Y/Z³)`; `Z = 0` at infinity.
#[derive(Debug, Clone, Copy)]
struct Jacobian {
    x: Limbs,
    y: Limbs,
    z: Limbs,
}

const INFINITY: Jacobian = Jacobian {
    x: [0; 8],
    y: [0; 8],
    z: [0; 8],
};

fn double_(a: &Limbs) -> Limbs {
    P.add(a, a)
}

impl Jacobian {
    fn from_affine(a: &Affine) -> Jacobian {
        Jacobian {
            x: a.x,
            y: a.y,
            z: P.enter(&[1, 0, 0, 0, 0, 0, 0, 0]),
        }
    }

    /// `2·self` for `a = −3` (dbl-2001-b: 3M + 5S).
    fn double(&self) -> Jacobian {
        if is_zero(&self.z) {
            return *self;
        }
        let delta = P.square(&self.z);
        let gamma = P.square(&self.y);
        let beta = P.mul(&self.x, &gamma);
        let t = P.mul(&P.sub(&self.x, &delta), &P.add(&self.x, &delta));
        let alpha = P.add(&double_(&t), &t);
        let beta4 = double_(&double_(&beta));
        let x = P.sub(&P.square(&alpha), &double_(&beta4));
        let yz = P.add(&self.y, &self.z);
        let z = P.sub(&P.sub(&P.square(&yz), &gamma), &delta);
        let gamma8 = double_(&double_(&double_(&P.square(&gamma))));
        let y = P.sub(&P.mul(&alpha, &P.sub(&beta4, &x)), &gamma8);
        Jacobian { x, y, z }
    }

    /// `self + b` (madd-2007-bl: 7M + 4S), equal and opposite points included.
    fn add_affine(&self, b: &Affine) -> Jacobian {
        if is_zero(&self.z) {
            return Jacobian::from_affine(b);
        }
        let z1z1 = P.square(&self.z);
        let u2 = P.mul(&b.x, &z1z1);
        let s2 = P.mul(&b.y, &P.mul(&self.z, &z1z1));
        let h = P.sub(&u2, &self.x);
        let r = double_(&P.sub(&s2, &self.y));
        if is_zero(&h) {
            return if is_zero(&r) { self.double() } else { INFINITY };
        }
        let hh = P.square(&h);
        let i = double_(&double_(&hh));
        let j = P.mul(&h, &i);
        let v = P.mul(&self.x, &i);
        let x = P.sub(&P.sub(&P.square(&r), &j), &double_(&v));
        let y = P.sub(&P.mul(&r, &P.sub(&v, &x)), &double_(&P.mul(&self.y, &j)));
        let z = P.sub(&P.sub(&P.square(&P.add(&self.z, &h)), &z1z1), &hh);
        Jacobian { x, y, z }
    }

    fn to_affine(self) -> Option<Affine> {
        to_affine_all(&[self])?.into_iter().next()
    }
}

/// The affine forms of `points`, with one inversion for all (Montgomery's trick); `None`
/// if one is the point at infinity.
fn to_affine_all(points: &[Jacobian]) -> Option<Vec<Affine>> {
    // prefix[i] = z₀·…·zᵢ
    let mut prefix = Vec::with_capacity(points.len());
    let mut product = P.enter(&[1, 0, 0, 0, 0, 0, 0, 0]);
    for point in points {
        product = P.mul(&product, &point.z);
        prefix.push(product);
    }
    if is_zero(&product) {
        return None;
    }
    // (z₀·…·zᵢ)⁻¹, from the last point down.
    let mut inverse = P.invert(&product);
    let mut out = Vec::with_capacity(points.len());
    for (i, point) in points.iter().enumerate().rev() {
        let zi = match i.checked_sub(1).and_then(|j| prefix.get(j)) {
            Some(before) => P.mul(&inverse, before),
            None => inverse,
        };
        inverse = P.mul(&inverse, &point.z);
        let zi2 = P.square(&zi);
        out.push(Affine {
            x: P.mul(&point.x, &zi2),
            y: P.mul(&point.y, &P.mul(&zi2, &zi)),
        });
    }
    out.reverse();
    Some(out)
}

/// For each chunk `i`, the odd multiples `1, 3, …, 2^(w−1) − 1` of `2^(32i)·P`.
#[derive(Debug, Clone)]
struct Tables([Vec<Affine>; CHUNKS]);

impl Tables {
    /// Built in Jacobian coordinates, then made affine together: one inversion per chunk
    /// (for `2·base`, added in affine form) and one for all.
    fn new(point: Affine, w: u32) -> Option<Tables> {
        let count = 1usize << (w - 2);
        let mut points = Vec::with_capacity(CHUNKS * count);
        let mut base = Jacobian::from_affine(&point);
        for chunk in 0..CHUNKS {
            if chunk > 0 {
                for _ in 0..CHUNK_BITS {
                    base = base.double();
                }
            }
            let twice = base.double().to_affine()?;
            let mut multiple = base;
            points.push(multiple);
            for _ in 1..count {
                multiple = multiple.add_affine(&twice);
                points.push(multiple);
            }
        }
        let affine = to_affine_all(&points)?;
        let mut tables = affine.chunks_exact(count).map(<[Affine]>::to_vec);
        Some(Tables(std::array::from_fn(|_| {
            tables.next().unwrap_or_default()
        })))
    }
}

/// The generator's tables, built on first use (once per VM).
fn generator() -> Option<&'static Tables> {
    static TABLES: OnceLock<Option<Tables>> = OnceLock::new();
    TABLES
        .get_or_init(|| {
            let g = Affine {
                x: P.enter(&GX),
                y: P.enter(&GY),
            };
            Tables::new(g, W_G)
        })
        .as_ref()
}

/// The width-`w` NAF of `k`: odd digits below `2^(w−1)` in magnitude, each followed by at
/// least `w − 1` zeros; `DIGITS` positions, least significant first.
fn wnaf(k: &Limbs, w: u32) -> [i8; DIGITS] {
    let mut digits = [0i8; DIGITS];
    // One more limb: subtracting a negative digit may carry above bit 255.
    let mut k9 = [0u32; 9];
    for (dst, src) in k9.iter_mut().zip(k) {
        *dst = *src;
    }
    let mut pos = 0usize;
    while k9.iter().any(|l| *l != 0) {
        let [low, ..] = k9;
        let shift = if low & 1 == 0 {
            if low == 0 {
                32
            } else {
                low.trailing_zeros()
            }
        } else {
            let window = (low & ((1 << w) - 1)) as i32;
            let digit = if window >= 1 << (w - 1) {
                window - (1 << w)
            } else {
                window
            };
            add_small(&mut k9, -digit);
            if let Some(slot) = digits.get_mut(pos) {
                *slot = digit as i8;
            }
            w
        };
        shift_right(&mut k9, shift, 0);
        pos += shift as usize;
    }
    digits
}

/// `k += d` for a small `d` of either sign (the result stays non-negative here).
fn add_small(k: &mut [u32; 9], d: i32) {
    let mut carry = i64::from(d);
    for limb in k.iter_mut() {
        if carry == 0 {
            break;
        }
        let v = i64::from(*limb) + carry;
        *limb = v as u32;
        carry = v >> 32;
    }
}

/// `acc + digit·P`, `table` holding the odd multiples of `P`.
fn add_digit(acc: Jacobian, table: &[Affine], digit: i8) -> Jacobian {
    if digit == 0 {
        return acc;
    }
    let Some(point) = table.get(usize::from(digit.unsigned_abs() / 2)) else {
        return acc;
    };
    if digit > 0 {
        acc.add_affine(point)
    } else {
        acc.add_affine(&Affine {
            x: point.x,
            y: P.sub(&[0; 8], &point.y),
        })
    }
}

/// `u1·G + u2·Q`, all chunks of both scalars sharing one chain of doublings.
fn lincomb(g: &Tables, u1: &Limbs, q: &Tables, u2: &Limbs) -> Jacobian {
    let (d1, d2) = (wnaf(u1, W_G), wnaf(u2, W_Q));
    let mut acc = INFINITY;
    // The top chunk owns the one position past 256 bits.
    for j in (0..=CHUNK_BITS).rev() {
        acc = acc.double();
        for (c, (gt, qt)) in g.0.iter().zip(&q.0).enumerate() {
            if j == CHUNK_BITS && c + 1 < CHUNKS {
                continue;
            }
            let i = c * CHUNK_BITS + j;
            acc = add_digit(acc, gt, d1.get(i).copied().unwrap_or(0));
            acc = add_digit(acc, qt, d2.get(i).copied().unwrap_or(0));
        }
    }
    acc
}

/// A P-256 public key ready for ES256 verification.
#[derive(Debug, Clone)]
pub(crate) struct Es256Key {
    q: Tables,
}

impl Es256Key {
    /// The key of an uncompressed SEC1 point `04 || x || y`, if it is one on the curve.
    pub fn new(sec1: &[u8]) -> Result<Es256Key, jwt_simple::Error> {
        Self::from_sec1(sec1).ok_or_else(|| JWTError::InvalidPublicKey.into())
    }

    fn from_sec1(sec1: &[u8]) -> Option<Es256Key> {
        let (x, y) = match sec1.split_first() {
            Some((4, xy)) if xy.len() == 64 => xy.split_at(32),
            _ => return None,
        };
        let (x, y) = (from_be(x.try_into().ok()?), from_be(y.try_into().ok()?));
        if !less(&x, &P.m) || !less(&y, &P.m) {
            return None;
        }
        let (x, y) = (P.enter(&x), P.enter(&y));
        // y² = x³ − 3x + b
        let x3 = P.mul(&P.square(&x), &x);
        let rhs = P.add(&P.sub(&x3, &P.add(&double_(&x), &x)), &P.enter(&B));
        if P.square(&y) != rhs {
            return None;
        }
        // Built now rather than by the first request.
        generator()?;
        Some(Es256Key {
            q: Tables::new(Affine { x, y }, W_Q)?,
        })
    }

    /// Whether `signature` (`r || s`, 32 bytes each) is an ES256 signature of `message`.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        self.check(message, signature).is_some()
    }

    fn check(&self, message: &[u8], signature: &[u8]) -> Option<()> {
        if signature.len() != 64 {
            return None;
        }
        let (r, s) = signature.split_at(32);
        let (r, s) = (from_be(r.try_into().ok()?), from_be(s.try_into().ok()?));
        if [&r, &s].iter().any(|v| is_zero(v) || !less(v, &N.m)) {
            return None;
        }
        let mut z = from_be(&hmac_sha256::Hash::hash(message));
        if !less(&z, &N.m) {
            sub_in_place(&mut z, &N.m);
        }
        // s⁻¹·R in Montgomery form: the products below by plain z and r leave the domain.
        let w = N.invert(&N.enter(&s));
        let (u1, u2) = (N.mul(&z, &w), N.mul(&r, &w));
        let point = lincomb(generator()?, &u1, &self.q, &u2);
        if is_zero(&point.z) {
            return None;
        }
        // x = X/Z² must be r modulo n: r itself, or r + n when that is still below p.
        let zz = P.square(&point.z);
        let is_x = |v: &Limbs| P.mul(&P.enter(v), &zz) == point.x;
        let mut r_plus_n = r;
        let overflow = add_in_place(&mut r_plus_n, &N.m);
        (is_x(&r) || (!overflow && less(&r_plus_n, &P.m) && is_x(&r_plus_n))).then_some(())
    }

    pub fn verify_token(
        &self,
        token: &str,
        options: Option<VerificationOptions>,
    ) -> Result<JWTClaims<NoCustomClaims>, jwt_simple::Error> {
        let options = options.unwrap_or_default();
        jws::verify("ES256", token, &options, |signed, signature| {
            self.verify(signed, signature)
        })
    }
}

#[cfg(test)]
mod tests;
