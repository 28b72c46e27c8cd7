//! A header map as the proxy-wasm host hands it over: one serialized buffer, read in place.
//!
//! The SDK's readers copy every name and value into strings of their own (two allocations
//! and a UTF-8 check per header, and as many frees at the end of the request): about a
//! sixth of an allowed call's own work. This map keeps the host's buffer and hands out
//! slices of it; names are bytes too, compared with the lower-case names the code asks
//! for (the host's header maps spell names in lower case).

use std::ops::Range;

/// A header map: names (lower case, as the host gives them) with their values (bytes:
/// HTTP allows non-UTF-8 octets in values), in the host's order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderMap {
    /// The host's serialization; names and values are read from it in place.
    buf: Vec<u8>,
    /// Per header: where its name and its value are in `buf`.
    spans: Vec<(Range<usize>, Range<usize>)>,
}

impl HeaderMap {
    /// Reads the proxy-wasm ABI serialization: a little-endian u32 count, a (name size,
    /// value size) u32 pair per header, then each name and value followed by a NUL. An
    /// empty buffer is an empty map. `Err`: the buffer is not such a map.
    pub fn parse(buf: Vec<u8>) -> Result<HeaderMap, &'static str> {
        const BAD: &str = "malformed header map";
        if buf.is_empty() {
            return Ok(HeaderMap::default());
        }
        let word = |at: usize| -> Result<usize, &'static str> {
            let bytes = buf.get(at..at + 4).ok_or(BAD)?;
            let bytes = <[u8; 4]>::try_from(bytes).map_err(|_| BAD)?;
            Ok(u32::from_le_bytes(bytes) as usize)
        };
        let count = word(0)?;
        let sizes_end = count.checked_mul(8).and_then(|n| n.checked_add(4));
        if sizes_end.is_none_or(|end| end > buf.len()) {
            return Err(BAD);
        }
        let mut spans = Vec::with_capacity(count);
        let mut at = sizes_end.unwrap_or_default();
        for i in 0..count {
            let (name_size, value_size) = (word(4 + i * 8)?, word(8 + i * 8)?);
            let name_end = at.checked_add(name_size).ok_or(BAD)?;
            let name = at..name_end;
            // A NUL follows each name and each value.
            let value = name_end + 1;
            let value_end = value.checked_add(value_size).ok_or(BAD)?;
            at = value_end.checked_add(1).ok_or(BAD)?;
            if at > buf.len() {
                return Err(BAD);
            }
            spans.push((name, value..value_end));
        }
        Ok(HeaderMap { buf, spans })
    }

    /// A map of `pairs`, serialized as the host does (tests, the CLI, the bench).
    pub fn from_pairs<N: AsRef<[u8]>, V: AsRef<[u8]>>(pairs: &[(N, V)]) -> HeaderMap {
        let mut buf = Vec::new();
        buf.extend_from_slice(&(pairs.len() as u32).to_le_bytes());
        for (name, value) in pairs {
            buf.extend_from_slice(&(name.as_ref().len() as u32).to_le_bytes());
            buf.extend_from_slice(&(value.as_ref().len() as u32).to_le_bytes());
        }
        for (name, value) in pairs {
            for part in [name.as_ref(), value.as_ref()] {
                buf.extend_from_slice(part);
                buf.push(0);
            }
        }
        HeaderMap::parse(buf).unwrap_or_default()
    }

    /// Every header (name, value), in order.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
        let slice = |span: &Range<usize>| self.buf.get(span.clone()).unwrap_or_default();
        self.spans
            .iter()
            .map(move |(name, value)| (slice(name), slice(value)))
    }

    /// The value of the `index`th header.
    pub fn value(&self, index: usize) -> Option<&[u8]> {
        let (_, value) = self.spans.get(index)?;
        self.buf.get(value.clone())
    }

    /// Every value of header `name` (as the host spells names: lower case), in order.
    pub fn values<'h>(&'h self, name: &'h str) -> impl Iterator<Item = &'h [u8]> + 'h {
        let name = name.as_bytes();
        self.iter().filter(move |(n, _)| *n == name).map(|(_, v)| v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_it_serializes() {
        let pairs: &[(&str, &[u8])] = &[
            (":path", b"/mcp"),
            ("x-empty", b""),
            ("", b"no name"),
            ("x-bytes", b"\xff\x00a"),
            ("x-b", b"1"),
            ("x-b", b"2"),
        ];
        let map = HeaderMap::from_pairs(pairs);
        let read: Vec<(&str, &[u8])> = map
            .iter()
            .map(|(n, v)| (std::str::from_utf8(n).unwrap(), v))
            .collect();
        assert_eq!(read, pairs);
        assert_eq!(map.values("x-b").collect::<Vec<_>>(), [b"1", b"2"]);
        assert_eq!(map.values("x-none").count(), 0);
        assert_eq!(map.value(3), Some(&b"\xff\x00a"[..]));
        assert_eq!(map.value(6), None);
        assert_eq!(HeaderMap::parse(Vec::new()).unwrap().iter().count(), 0);
    }

    #[test]
    fn refuses_what_the_host_would_not_send() {
        let good = HeaderMap::from_pairs(&[("a", "b"), ("cd", "ef")]).buf;
        // Every truncation: a size that runs past the end.
        for end in 1..good.len() - 1 {
            assert!(HeaderMap::parse(good[..end].to_vec()).is_err(), "{end}");
        }
        let mut huge_count = good.clone();
        huge_count[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(HeaderMap::parse(huge_count).is_err());
    }
}
