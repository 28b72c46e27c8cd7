//! Arithmetic modulo a 256-bit odd number in Montgomery form, on eight 32-bit limbs whose
//! products are native u32×u32→u64 wasm32 multiplications (as [`super::super::rsa`]). Both
//! P-256 moduli use it: the field prime `p` and the group order `n`.

use std::cmp::Ordering;

/// A 256-bit number, least significant limb first.
pub(crate) type Limbs = [u32; 8];

/// A modulus with its Montgomery constants (`R = 2²⁵⁶`).
pub(crate) struct Modulus {
    pub m: Limbs,
    /// `-m⁻¹ mod 2³²`.
    m0: u32,
    /// `R² mod m`: multiplying by it enters the Montgomery domain.
    r2: Limbs,
}

/// The field prime `p = 2²⁵⁶ − 2²²⁴ + 2¹⁹² + 2⁹⁶ − 1`.
pub(crate) const P: Modulus = Modulus {
    m: [
        0xffff_ffff,
        0xffff_ffff,
        0xffff_ffff,
        0,
        0,
        0,
        1,
        0xffff_ffff,
    ],
    m0: 1,
    r2: [
        0x0000_0003,
        0x0000_0000,
        0xffff_ffff,
        0xffff_fffb,
        0xffff_fffe,
        0xffff_ffff,
        0xffff_fffd,
        0x0000_0004,
    ],
};

/// The order `n` of the P-256 group.
pub(crate) const N: Modulus = Modulus {
    m: [
        0xfc63_2551,
        0xf3b9_cac2,
        0xa717_9e84,
        0xbce6_faad,
        0xffff_ffff,
        0xffff_ffff,
        0,
        0xffff_ffff,
    ],
    m0: 0xee00_bc4f,
    r2: [
        0xbe79_eea2,
        0x8324_4c95,
        0x49bd_6fa6,
        0x4699_799c,
        0x2b6b_ec59,
        0x2845_b239,
        0xf3d9_5620,
        0x66e1_2d94,
    ],
};

impl Modulus {
    /// `a·b·R⁻¹ mod m` (CIOS). Inputs below `m` give an output below `m`.
    pub fn mul(&self, a: &Limbs, b: &Limbs) -> Limbs {
        let mut t = [0u32; 8];
        // t[8] and t[9] of the running sum.
        let mut hi = 0u32;
        for &bi in b {
            let mut carry = 0u64;
            for (tj, &aj) in t.iter_mut().zip(a) {
                let v = u64::from(*tj) + u64::from(aj) * u64::from(bi) + carry;
                *tj = v as u32;
                carry = v >> 32;
            }
            let v = u64::from(hi) + carry;
            hi = v as u32;
            let hi2 = (v >> 32) as u32;
            let [t0, ..] = t;
            let q = t0.wrapping_mul(self.m0);
            let mut carry = 0u64;
            for (tj, &mj) in t.iter_mut().zip(&self.m) {
                let v = u64::from(*tj) + u64::from(q) * u64::from(mj) + carry;
                *tj = v as u32;
                carry = v >> 32;
            }
            // The low limb is now zero: dividing by 2³² drops it.
            let v = u64::from(hi) + carry;
            t.rotate_left(1);
            let [.., last] = &mut t;
            *last = v as u32;
            hi = hi2.wrapping_add((v >> 32) as u32);
        }
        if hi != 0 || !less(&t, &self.m) {
            sub_in_place(&mut t, &self.m);
        }
        t
    }

    pub fn square(&self, a: &Limbs) -> Limbs {
        self.mul(a, a)
    }

    /// `a·R mod m` for `a` below `m`.
    pub fn to_mont(&self, a: &Limbs) -> Limbs {
        self.mul(a, &self.r2)
    }

    /// `a + b mod m`.
    pub fn add(&self, a: &Limbs, b: &Limbs) -> Limbs {
        let mut out = *a;
        let carry = add_in_place(&mut out, b);
        if carry || !less(&out, &self.m) {
            sub_in_place(&mut out, &self.m);
        }
        out
    }

    /// `a − b mod m`.
    pub fn sub(&self, a: &Limbs, b: &Limbs) -> Limbs {
        let mut out = *a;
        if sub_in_place(&mut out, b) {
            add_in_place(&mut out, &self.m);
        }
        out
    }

    /// `a⁻¹` in the Montgomery domain (`aR ↦ a⁻¹R`).
    pub fn invert_mont(&self, a: &Limbs) -> Limbs {
        self.to_mont(&self.to_mont(&self.invert_vartime(a)))
    }

    /// `a⁻¹ mod m` for `a` in `1..m`, outside the Montgomery domain, by the binary extended
    /// Euclidean algorithm (variable time: for public values only). Zero gives zero.
    pub fn invert_vartime(&self, a: &Limbs) -> Limbs {
        // Invariants: x1·a ≡ u and x2·a ≡ v (mod m).
        let (mut u, mut v) = (*a, self.m);
        let (mut x1, mut x2) = ([1, 0, 0, 0, 0, 0, 0, 0], [0; 8]);
        let one = |n: &Limbs| n.iter().skip(1).all(|l| *l == 0) && n.first() == Some(&1);
        while !is_zero(&u) && !one(&u) && !one(&v) {
            self.remove_twos(&mut u, &mut x1);
            self.remove_twos(&mut v, &mut x2);
            if less(&u, &v) {
                sub_in_place(&mut v, &u);
                x2 = self.sub(&x2, &x1);
            } else {
                sub_in_place(&mut u, &v);
                x1 = self.sub(&x1, &x2);
            }
        }
        if one(&u) {
            x1
        } else if one(&v) {
            x2
        } else {
            [0; 8]
        }
    }

    /// Divides `u` by 2 until it is odd (zero stays zero), and `x` by as many 2s modulo `m`.
    fn remove_twos(&self, u: &mut Limbs, x: &mut Limbs) {
        loop {
            let [low, ..] = *u;
            if low & 1 == 1 || is_zero(u) {
                return;
            }
            let twos = low.trailing_zeros().min(31);
            shift_right(u, twos, 0);
            for _ in 0..twos {
                let odd = x.first().is_some_and(|l| l & 1 == 1);
                let carry = odd && add_in_place(x, &self.m);
                shift_right(x, 1, u32::from(carry));
            }
        }
    }
}

/// `a >>= s` for `s` in `0..32`, `top` shifted in above the most significant limb.
fn shift_right(a: &mut Limbs, s: u32, top: u32) {
    let mut above = top;
    for limb in a.iter_mut().rev() {
        let wide = (u64::from(above) << 32) | u64::from(*limb);
        above = *limb;
        *limb = (wide >> s) as u32;
    }
}

/// Whether `a < b`.
pub(crate) fn less(a: &Limbs, b: &Limbs) -> bool {
    a.iter().rev().cmp(b.iter().rev()) == Ordering::Less
}

pub(crate) fn is_zero(a: &Limbs) -> bool {
    a.iter().all(|l| *l == 0)
}

/// `a += b`; whether it carried out.
pub(crate) fn add_in_place(a: &mut Limbs, b: &Limbs) -> bool {
    let mut carry = 0u64;
    for (x, &y) in a.iter_mut().zip(b) {
        let v = u64::from(*x) + u64::from(y) + carry;
        *x = v as u32;
        carry = v >> 32;
    }
    carry != 0
}

/// `a −= b`; whether it borrowed.
pub(crate) fn sub_in_place(a: &mut Limbs, b: &Limbs) -> bool {
    let mut borrow = 0u64;
    for (x, &y) in a.iter_mut().zip(b) {
        let v = u64::from(*x)
            .wrapping_sub(u64::from(y))
            .wrapping_sub(borrow);
        *x = v as u32;
        borrow = v >> 63;
    }
    borrow != 0
}

/// 32 big-endian bytes as limbs.
pub(crate) fn from_be(bytes: &[u8; 32]) -> Limbs {
    let mut out = [0u32; 8];
    for (limb, chunk) in out.iter_mut().zip(bytes.rchunks(4)) {
        *limb = chunk.iter().fold(0, |acc, b| (acc << 8) | u32::from(*b));
    }
    out
}
