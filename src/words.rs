//! Eight bytes at a time: finding bytes in a 64-bit word, for the scans every request body
//! and list answer goes through (a byte-by-byte loop costs several wasm instructions a
//! byte). Each test flags the high bit of every matching byte; only the lowest flag is
//! exact (borrows run upwards), which is the one [`first_flagged`] reads.

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGH: u64 = 0x8080_8080_8080_8080;

/// The 8 bytes of `bytes` at `at`, as a little-endian word; `None` when fewer are left.
pub fn word_at(bytes: &[u8], at: usize) -> Option<u64> {
    let chunk: [u8; 8] = bytes.get(at..at.checked_add(8)?)?.try_into().ok()?;
    Some(u64::from_le_bytes(chunk))
}

/// Flags the bytes of `w` below `n` (`n` at most 0x80).
pub fn below(w: u64, n: u8) -> u64 {
    w.wrapping_sub(ONES * u64::from(n)) & !w & HIGH
}

/// Flags the bytes of `w` equal to `byte`.
pub fn equal(w: u64, byte: u8) -> u64 {
    below(w ^ (ONES * u64::from(byte)), 1)
}

/// Flags the bytes of `w` at or above 0x80 (not ASCII).
pub fn non_ascii(w: u64) -> u64 {
    w & HIGH
}

/// The index (0..8) of the first byte `flags` marks; `flags` must not be zero.
pub fn first_flagged(flags: u64) -> usize {
    (flags.trailing_zeros() / 8) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_flag_is_the_first_match() {
        let w = word_at(b"ab\"c\\d\x01e", 0).unwrap();
        assert_eq!(first_flagged(equal(w, b'"')), 2);
        assert_eq!(first_flagged(equal(w, b'\\')), 4);
        assert_eq!(first_flagged(below(w, 0x20)), 6);
        assert_eq!(equal(w, b'z'), 0);
        assert_eq!(non_ascii(w), 0);
        assert_eq!(
            first_flagged(non_ascii(word_at("abcdefé".as_bytes(), 0).unwrap())),
            6
        );
        assert_eq!(word_at(b"1234567", 0), None);
        assert_eq!(word_at(b"123456789", 1), word_at(b"23456789", 0));
    }
}
