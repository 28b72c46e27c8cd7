//! A fast hasher for the maps the filter reads on every request and every `tools/list`
//! element (learned definitions and records, compiled schemas, metric ids, rule lookups).
//! std's SipHash resists hash flooding with a strong keyed function, which costs hundreds
//! of wasm instructions per lookup, most of a short key's cost. Here each 8 bytes cost one
//! multiply and a rotate, from a seed drawn once per VM, so collisions cannot be prepared in
//! advance. Every map it serves is bounded (by configuration, or a cache that starts over at
//! its bound), so a flood could at worst slow one bounded map; maps that hold a caller's
//! secrets keep SipHash (the token cache's fingerprint).

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::OnceLock;

/// A `HashMap` with [`FastHash`].
pub type FastMap<K, V> = HashMap<K, V, FastHash>;

/// Builds [`FastHasher`]s from this VM's seed.
#[derive(Debug, Clone, Copy)]
pub struct FastHash {
    seed: u64,
}

impl Default for FastHash {
    fn default() -> Self {
        static SEED: OnceLock<u64> = OnceLock::new();
        FastHash {
            seed: *SEED.get_or_init(|| RandomState::new().hash_one(0x6d63_702d_6775_6172_u64)),
        }
    }
}

impl BuildHasher for FastHash {
    type Hasher = FastHasher;

    fn build_hasher(&self) -> FastHasher {
        FastHasher { state: self.seed }
    }
}

/// Multiply-rotate over 8-byte words (the FxHash step), finished with a final mix so the
/// low bits a table indexes by depend on every input bit.
pub struct FastHasher {
    state: u64,
}

const K: u64 = 0xf135_7aea_2e62_a9c5;

impl FastHasher {
    fn add(&mut self, word: u64) {
        self.state = (self.state.rotate_left(26) ^ word).wrapping_mul(K);
    }
}

impl Hasher for FastHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            self.add(word(chunk));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            // The length tells "ab" from "ab\0".
            self.add(word(rest) ^ ((rest.len() as u64) << 59));
        }
    }

    fn write_u8(&mut self, n: u8) {
        self.add(u64::from(n));
    }

    fn write_u32(&mut self, n: u32) {
        self.add(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }

    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    fn finish(&self) -> u64 {
        let h = self.state;
        (h ^ (h >> 32)).wrapping_mul(K) ^ (h >> 29)
    }
}

/// Whether two byte strings are equal, compared 8 bytes at a time: slice equality goes to
/// the C library's `memcmp`, a byte at a time in wasm (~20 instructions a byte), and the
/// memo of tool definitions compares whole elements on every list.
pub fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let (mut a_words, mut b_words) = (a.chunks_exact(8), b.chunks_exact(8));
    a_words
        .by_ref()
        .zip(b_words.by_ref())
        .all(|(x, y)| word(x) == word(y))
        && a_words.remainder() == b_words.remainder()
}

/// Up to 8 bytes as a little-endian word (missing bytes zero).
fn word(bytes: &[u8]) -> u64 {
    let mut word = [0; 8];
    if let Some(head) = word.get_mut(..bytes.len()) {
        head.copy_from_slice(bytes);
    }
    u64::from_le_bytes(word)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash(bytes: &[u8]) -> u64 {
        FastHash::default().hash_one(bytes)
    }

    #[test]
    fn equal_keys_hash_equal_and_near_keys_apart() {
        assert_eq!(
            hash(b"mcp-guard/tool/8:upstream/echo"),
            hash(b"mcp-guard/tool/8:upstream/echo")
        );
        let keys: [&[u8]; 6] = [b"", b"a", b"a\0", b"ab", b"abcdefgh", b"abcdefgh\0"];
        for (i, a) in keys.iter().enumerate() {
            for b in keys.iter().skip(i + 1) {
                assert_ne!(hash(a), hash(b), "{a:?} {b:?}");
            }
        }
    }

    #[test]
    fn same_bytes_is_slice_equality() {
        let texts: [&[u8]; 7] = [
            b"",
            b"a",
            b"b",
            b"abcdefgh",
            b"abcdefgi",
            b"abcdefghij",
            b"abcdefghik",
        ];
        for a in texts {
            for b in texts {
                assert_eq!(same_bytes(a, b), a == b, "{a:?} {b:?}");
            }
        }
    }

    #[test]
    fn a_map_works_as_a_map() {
        let mut map: FastMap<String, usize> = FastMap::default();
        for i in 0..1000 {
            map.insert(format!("tool-{i}"), i);
        }
        assert!((0..1000).all(|i| map.get(&format!("tool-{i}")) == Some(&i)));
        assert_eq!(map.get("tool-1000"), None);
    }
}
