//! Arithmetic modulo the two P-256 moduli, the field prime `p` and the group order `n`, on
//! eight 32-bit limbs whose products are native u32×u32→u64 wasm32 multiplications (as
//! [`super::super::rsa`]). Residues modulo `n` are kept in Montgomery form; those modulo `p`
//! as they are, reduced with the special form of `p` (Solinas: sums of the product's words).

use std::cmp::Ordering;

/// A 256-bit number, least significant limb first.
pub(crate) type Limbs = [u32; 8];

/// A modulus and how its residues are represented.
pub(crate) struct Modulus {
    pub m: Limbs,
    form: Form,
}

enum Form {
    /// Montgomery form, `a ↦ a·R` with `R = 2²⁵⁶`.
    Montgomery {
        /// `-m⁻¹ mod 2³²`.
        m0: u32,
        /// `R² mod m`: multiplying by it enters the Montgomery domain.
        r2: Limbs,
    },
    /// Plain residues modulo `p`.
    P256,
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
    form: Form::P256,
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
    form: Form::Montgomery {
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
    },
};

impl Modulus {
    /// The product of two residues, in their representation.
    pub fn mul(&self, a: &Limbs, b: &Limbs) -> Limbs {
        match &self.form {
            Form::Montgomery { m0, .. } => self.montgomery_mul(*m0, a, b),
            Form::P256 => reduce_p256(&product(a, b)),
        }
    }

    /// `a²`: the cross products computed once.
    pub fn square(&self, a: &Limbs) -> Limbs {
        match &self.form {
            Form::Montgomery { m0, .. } => self.montgomery_mul(*m0, a, a),
            Form::P256 => reduce_p256(&square_product(a)),
        }
    }

    /// The representation of `a` (below `m`).
    pub fn enter(&self, a: &Limbs) -> Limbs {
        match &self.form {
            Form::Montgomery { r2, .. } => self.mul(a, r2),
            Form::P256 => *a,
        }
    }

    /// The inverse of a represented residue, represented (zero gives zero).
    pub fn invert(&self, a: &Limbs) -> Limbs {
        match &self.form {
            // a·R ↦ a⁻¹·R⁻¹ ↦ a⁻¹·R
            Form::Montgomery { .. } => self.enter(&self.enter(&self.invert_vartime(a))),
            Form::P256 => self.invert_vartime(a),
        }
    }

    /// `a·b·R⁻¹ mod m` (CIOS). Inputs below `m` give an output below `m`.
    fn montgomery_mul(&self, m0: u32, a: &Limbs, b: &Limbs) -> Limbs {
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
            let q = t0.wrapping_mul(m0);
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

    /// `a⁻¹ mod m` for `a` in `1..m`, as plain numbers, by the binary extended
    /// Euclidean algorithm (variable time: for public values only). Zero gives zero.
    fn invert_vartime(&self, a: &Limbs) -> Limbs {
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

/// `a >>= s` for `s` in `0..=32`, `top` shifted in above the most significant limb.
pub(crate) fn shift_right(a: &mut [u32], s: u32, top: u32) {
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

/// The 512-bit product of two 256-bit numbers, as sixteen limbs (schoolbook, one carry
/// chain per row).
fn product(a: &Limbs, b: &Limbs) -> [u32; 16] {
    let mut out = [0u32; 16];
    for (i, &ai) in a.iter().enumerate() {
        let mut carry = 0u64;
        let row = out.get_mut(i..i + 8).unwrap_or_default();
        for (o, &bj) in row.iter_mut().zip(b) {
            let v = u64::from(*o) + u64::from(ai) * u64::from(bj) + carry;
            *o = v as u32;
            carry = v >> 32;
        }
        if let Some(top) = out.get_mut(i + 8) {
            *top = carry as u32;
        }
    }
    out
}

/// `a²` as [`product`] computes it, each cross product once and doubled.
fn square_product(a: &Limbs) -> [u32; 16] {
    let mut columns = [0u64; 16];
    for (i, &ai) in a.iter().enumerate() {
        let mut high = 0u64;
        for (column, &aj) in columns.iter_mut().skip(2 * i + 1).zip(a.iter().skip(i + 1)) {
            let p = u64::from(ai) * u64::from(aj);
            *column += 2 * (p & 0xffff_ffff) + high;
            high = 2 * (p >> 32);
        }
        if let Some(column) = columns.get_mut(i + 8) {
            *column += high;
        }
    }
    for (pair, &ai) in columns.chunks_exact_mut(2).zip(a) {
        let p = u64::from(ai) * u64::from(ai);
        if let [low, high] = pair {
            *low += p & 0xffff_ffff;
            *high += p >> 32;
        }
    }
    carried(columns)
}

/// Column sums as limbs.
fn carried(columns: [u64; 16]) -> [u32; 16] {
    let mut out = [0u32; 16];
    let mut carry = 0u64;
    for (o, column) in out.iter_mut().zip(columns) {
        let v = column + carry;
        *o = v as u32;
        carry = v >> 32;
    }
    out
}

/// A 512-bit number modulo `p`: with `2²⁵⁶ ≡ 2²²⁴ − 2¹⁹² − 2⁹⁶ + 1`, each word of the result
/// is a signed sum of the input's words (FIPS 186-4 D.2.3), carried, then folded again
/// until nothing is left above 2²⁵⁶.
fn reduce_p256(c: &[u32; 16]) -> Limbs {
    let [c0, c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11, c12, c13, c14, c15] = c.map(i64::from);
    let mut words = [
        c0 + c8 + c9 - c11 - c12 - c13 - c14,
        c1 + c9 + c10 - c12 - c13 - c14 - c15,
        c2 + c10 + c11 - c13 - c14 - c15,
        c3 + 2 * (c11 + c12) + c13 - c15 - c8 - c9,
        c4 + 2 * (c12 + c13) + c14 - c9 - c10,
        c5 + 2 * (c13 + c14) + c15 - c10 - c11,
        c6 + 3 * c14 + 2 * c15 + c13 - c8 - c9,
        c7 + 3 * c15 + c8 - c10 - c11 - c12 - c13,
    ];
    let mut out = [0u32; 8];
    loop {
        // The value is out + top·2²⁵⁶; folding top subtracts top·p, so it ends in a few
        // rounds, out below 2²⁵⁶.
        let mut carry = 0i64;
        for (o, w) in out.iter_mut().zip(words) {
            let v = w + carry;
            *o = v as u32;
            carry = v >> 32;
        }
        if carry == 0 {
            break;
        }
        let [o0, o1, o2, o3, o4, o5, o6, o7] = out.map(i64::from);
        words = [
            o0 + carry,
            o1,
            o2,
            o3 - carry,
            o4,
            o5,
            o6 - carry,
            o7 + carry,
        ];
    }
    if !less(&out, &P.m) {
        sub_in_place(&mut out, &P.m);
    }
    out
}
