//! A validating JSON reader that decodes only what the caller asks for.
//!
//! The filter must read a body exactly as a strict upstream would, but it must not build a
//! tree of tool arguments it never looks at. This reader walks the bytes once: callers pull
//! the keys and strings they care about, and [`Reader::skip_value`] validates everything
//! else (strings, escapes, numbers, nesting, UTF-8) without allocating. Outside strings the
//! grammar admits only ASCII, so validating UTF-8 inside strings validates the whole body;
//! strings are scanned eight bytes at a time, which is what large tool arguments cost.

use std::borrow::Cow;

use crate::words;

/// Deepest nesting accepted; deeper bodies are refused rather than guessed at.
pub const MAX_DEPTH: u32 = 128;

/// Where and why a body is not valid JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    pub offset: usize,
    pub reason: &'static str,
}

pub type Result<T> = std::result::Result<T, SyntaxError>;

/// The word of [`Reader::objects`] and the bit in it for the container at `depth + 1`.
fn depth_bit(depth: u32) -> (usize, u64) {
    ((depth / 64) as usize, 1 << (depth % 64))
}

/// Cursor over a JSON text given as bytes.
pub struct Reader<'a> {
    src: &'a [u8],
    pos: usize,
    depth: u32,
    /// Bit `d % 64` of word `d / 64` is set when the container at depth `d + 1` is an
    /// object (two words, not a `u128`: wasm32 has no 128-bit shifts).
    objects: [u64; 2],
}

impl<'a> Reader<'a> {
    pub fn new(src: &'a [u8]) -> Reader<'a> {
        Reader {
            src,
            pos: 0,
            depth: 0,
            objects: [0; 2],
        }
    }

    fn err<T>(&self, reason: &'static str) -> Result<T> {
        Err(SyntaxError {
            offset: self.pos,
            reason,
        })
    }

    fn byte(&self) -> Option<u8> {
        self.src.get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.byte() {
            self.pos += 1;
        }
    }

    /// The next significant byte, after whitespace.
    pub fn peek(&mut self) -> Option<u8> {
        self.skip_ws();
        self.byte()
    }

    /// Byte offset of the cursor.
    pub fn offset(&self) -> usize {
        self.pos
    }

    /// Byte offset of the next significant byte.
    pub fn offset_after_ws(&mut self) -> usize {
        self.skip_ws();
        self.pos
    }

    /// The source text between two offsets of already validated input (empty if out of
    /// range or not UTF-8, which validated ranges never are).
    pub fn slice(&self, start: usize, end: usize) -> &'a str {
        self.src
            .get(start..end)
            .and_then(|b| std::str::from_utf8(b).ok())
            .unwrap_or_default()
    }

    /// Succeeds when only whitespace is left.
    pub fn finish(&mut self) -> Result<()> {
        match self.peek() {
            None => Ok(()),
            Some(_) => self.err("trailing bytes after the JSON value"),
        }
    }

    fn consume(&mut self, want: u8, reason: &'static str) -> Result<()> {
        if self.peek() == Some(want) {
            self.pos += 1;
            Ok(())
        } else {
            self.err(reason)
        }
    }

    fn open(&mut self, object: bool) -> Result<()> {
        if self.depth >= MAX_DEPTH {
            return self.err("nesting deeper than 128 levels");
        }
        let (word, bit) = depth_bit(self.depth);
        if let Some(word) = self.objects.get_mut(word) {
            if object {
                *word |= bit;
            } else {
                *word &= !bit;
            }
        }
        self.depth += 1;
        self.pos += 1;
        Ok(())
    }

    /// Consumes `{`; follow with [`Reader::next_key`] until it returns `None`.
    pub fn begin_object(&mut self) -> Result<()> {
        match self.peek() {
            Some(b'{') => self.open(true),
            _ => self.err("expected an object"),
        }
    }

    /// The next key of the current object (cursor then sits on its value), or `None` at `}`.
    pub fn next_key(&mut self, first: &mut bool) -> Result<Option<Cow<'a, str>>> {
        if !self.key_follows(first)? {
            return Ok(None);
        }
        let key = self.read_string()?;
        self.consume(b':', "expected ':' after key")?;
        Ok(Some(key))
    }

    /// [`Reader::next_key`] as the key's UTF-8 bytes (decoded when escaped), for callers
    /// that only compare keys: a key then costs no conversion to text.
    pub fn next_key_bytes(&mut self, first: &mut bool) -> Result<Option<Cow<'a, [u8]>>> {
        if !self.key_follows(first)? {
            return Ok(None);
        }
        let mut decoded = String::new();
        let (start, end, escaped) = self.scan_string(Some(&mut decoded))?;
        self.consume(b':', "expected ':' after key")?;
        Ok(Some(if escaped {
            Cow::Owned(decoded.into_bytes())
        } else {
            Cow::Borrowed(self.src.get(start..end).unwrap_or_default())
        }))
    }

    /// Consumes what comes before a key (`,` after the first); `false` at the object's end.
    fn key_follows(&mut self, first: &mut bool) -> Result<bool> {
        match self.peek() {
            Some(b'}') => {
                self.pos += 1;
                self.depth -= 1;
                return Ok(false);
            }
            Some(b',') if !*first => self.pos += 1,
            _ if !*first => return self.err("expected ',' or '}' in object"),
            _ => {}
        }
        *first = false;
        Ok(true)
    }

    /// Consumes `[`; follow with [`Reader::next_element`] until it returns `false`.
    pub fn begin_array(&mut self) -> Result<()> {
        match self.peek() {
            Some(b'[') => self.open(false),
            _ => self.err("expected an array"),
        }
    }

    /// Whether another element follows (cursor then sits on it); `false` at `]`.
    pub fn next_element(&mut self, first: &mut bool) -> Result<bool> {
        let was_first = std::mem::replace(first, false);
        match self.peek() {
            Some(b']') => {
                self.pos += 1;
                self.depth -= 1;
                Ok(false)
            }
            Some(b',') if !was_first => {
                self.pos += 1;
                Ok(true)
            }
            Some(_) if was_first => Ok(true),
            _ => self.err("expected ',' or ']' in array"),
        }
    }

    /// Reads a string, decoding escapes; borrows from the source when there are none.
    pub fn read_string(&mut self) -> Result<Cow<'a, str>> {
        let mut decoded = String::new();
        let (start, end, escaped) = self.scan_string(Some(&mut decoded))?;
        if escaped {
            Ok(Cow::Owned(decoded))
        } else {
            Ok(Cow::Borrowed(self.slice(start, end)))
        }
    }

    /// Walks a string literal, validating escapes; when `out` is given and the string has
    /// escapes, the decoded text is written to it. Returns the raw span and whether any
    /// escape was seen.
    fn scan_string(&mut self, out: Option<&mut String>) -> Result<(usize, usize, bool)> {
        match self.peek() {
            Some(b'"') => self.pos += 1,
            None => return self.err("unexpected end of input"),
            Some(_) => return self.err("expected a string"),
        }
        self.string_after_quote(out)
    }

    /// [`Reader::scan_string`] from just after the opening quote. Inlined: it is the inner
    /// loop of [`Reader::skip_value`] as well.
    #[inline(always)]
    fn string_after_quote(&mut self, mut out: Option<&mut String>) -> Result<(usize, usize, bool)> {
        let start = self.pos;
        let mut run = start;
        let mut escaped = false;
        loop {
            self.skip_plain_string_bytes();
            match self.byte() {
                None => return self.err("unterminated string"),
                Some(b'"') => {
                    let end = self.pos;
                    if let (true, Some(out)) = (escaped, out.as_deref_mut()) {
                        out.push_str(self.slice(run, end));
                    }
                    self.pos += 1;
                    return Ok((start, end, escaped));
                }
                Some(b'\\') => {
                    if let Some(out) = out.as_deref_mut() {
                        out.push_str(self.slice(run, self.pos));
                    }
                    escaped = true;
                    self.pos += 1;
                    let c = self.escape()?;
                    if let Some(out) = out.as_deref_mut() {
                        out.push(c);
                    }
                    run = self.pos;
                }
                Some(0..=0x1f) => return self.err("control character in string"),
                Some(lead @ 0x80..) => self.pos += self.utf8_sequence(lead)?,
                Some(_) => self.pos += 1,
            }
        }
    }

    /// Advances over string bytes that need no attention (printable ASCII other than `"`
    /// and `\`), eight at a time.
    fn skip_plain_string_bytes(&mut self) {
        while let Some(w) = words::word_at(self.src, self.pos) {
            let special = words::equal(w, b'"')
                | words::equal(w, b'\\')
                | words::below(w, 0x20)
                | words::non_ascii(w);
            if special != 0 {
                self.pos += words::first_flagged(special);
                return;
            }
            self.pos += 8;
        }
    }

    /// Length of the valid UTF-8 sequence starting with `lead` at the cursor.
    fn utf8_sequence(&self, lead: u8) -> Result<usize> {
        let len = match lead {
            0xC2..=0xDF => 2,
            0xE0..=0xEF => 3,
            0xF0..=0xF4 => 4,
            _ => return self.err("invalid UTF-8"),
        };
        match self
            .src
            .get(self.pos..self.pos + len)
            .map(std::str::from_utf8)
        {
            Some(Ok(_)) => Ok(len),
            _ => self.err("invalid UTF-8"),
        }
    }

    /// Decodes one escape after the backslash.
    fn escape(&mut self) -> Result<char> {
        let b = self.byte();
        self.pos += 1;
        Ok(match b {
            Some(b'"') => '"',
            Some(b'\\') => '\\',
            Some(b'/') => '/',
            Some(b'b') => '\u{8}',
            Some(b'f') => '\u{c}',
            Some(b'n') => '\n',
            Some(b'r') => '\r',
            Some(b't') => '\t',
            Some(b'u') => {
                let hi = self.hex4()?;
                let code = match hi {
                    0xD800..=0xDBFF => {
                        if self.byte() != Some(b'\\') || self.src.get(self.pos + 1) != Some(&b'u') {
                            return self.err("unpaired surrogate escape");
                        }
                        self.pos += 2;
                        let lo = self.hex4()?;
                        if !(0xDC00..=0xDFFF).contains(&lo) {
                            return self.err("unpaired surrogate escape");
                        }
                        0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                    }
                    0xDC00..=0xDFFF => return self.err("unpaired surrogate escape"),
                    _ => hi,
                };
                match char::from_u32(code) {
                    Some(c) => c,
                    None => return self.err("invalid unicode escape"),
                }
            }
            _ => return self.err("invalid escape"),
        })
    }

    fn hex4(&mut self) -> Result<u32> {
        let mut v = 0u32;
        for _ in 0..4 {
            let d = match self.byte() {
                Some(b @ b'0'..=b'9') => b - b'0',
                Some(b @ b'a'..=b'f') => b - b'a' + 10,
                Some(b @ b'A'..=b'F') => b - b'A' + 10,
                _ => return self.err("invalid unicode escape"),
            };
            v = v * 16 + u32::from(d);
            self.pos += 1;
        }
        Ok(v)
    }

    /// Reads a number per RFC 8259 and returns its text.
    pub fn read_number(&mut self) -> Result<&'a str> {
        self.skip_ws();
        let start = self.pos;
        self.number()?;
        Ok(self.slice(start, self.pos))
    }

    /// Validates the number at the cursor (RFC 8259, and within f64's range) and moves
    /// past it; its text is converted only when it could be out of range.
    fn number(&mut self) -> Result<()> {
        let start = self.pos;
        if self.byte() == Some(b'-') {
            self.pos += 1;
        }
        match self.byte() {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => self.digits(),
            _ => return self.err("invalid number"),
        }
        if self.byte() == Some(b'.') {
            self.pos += 1;
            if !matches!(self.byte(), Some(b'0'..=b'9')) {
                return self.err("invalid number");
            }
            self.digits();
        }
        let exponent = matches!(self.byte(), Some(b'e' | b'E'));
        if exponent {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.byte() {
                self.pos += 1;
            }
            if !matches!(self.byte(), Some(b'0'..=b'9')) {
                return self.err("invalid number");
            }
            self.digits();
        }
        // Upstreams disagree on numbers beyond f64 (serde_json refuses them, Python reads
        // infinity): refuse them too. Only long or exponent numbers can get there.
        if (self.pos - start > 300 || exponent)
            && self
                .slice(start, self.pos)
                .parse::<f64>()
                .is_ok_and(f64::is_infinite)
        {
            return self.err("number out of range");
        }
        Ok(())
    }

    fn digits(&mut self) {
        while let Some(b'0'..=b'9') = self.byte() {
            self.pos += 1;
        }
    }

    /// Validates and skips one complete value of any kind, without recursion or allocation.
    ///
    /// The answers and arguments it walks are mostly structure and short ASCII strings, so
    /// that path keeps the cursor, depth and container kinds in locals (a method call per
    /// token, storing the cursor through `self`, cost half again as much in wasm); escapes,
    /// non-ASCII bytes and numbers go through the same checks as the rest of the reader.
    pub fn skip_value(&mut self) -> Result<()> {
        let src = self.src;
        let base = self.depth;
        let (mut pos, mut depth, mut objects) = (self.pos, self.depth, self.objects);
        // Leaves the walk with the cursor where it stopped, as the other readers do.
        macro_rules! fail {
            ($reason:expr) => {{
                self.pos = pos;
                return self.err($reason);
            }};
        }
        macro_rules! ws {
            () => {
                while let Some(b' ' | b'\t' | b'\n' | b'\r') = src.get(pos) {
                    pos += 1;
                }
            };
        }
        // The string whose opening quote is at `pos`, by the reader's own string loop.
        macro_rules! string {
            () => {{
                self.pos = pos + 1;
                self.string_after_quote(None)?;
                pos = self.pos;
            }};
        }
        // A member's key and colon, after whitespace.
        macro_rules! key {
            () => {{
                ws!();
                match src.get(pos) {
                    Some(b'"') => string!(),
                    None => fail!("unexpected end of input"),
                    Some(_) => fail!("expected a string"),
                }
                ws!();
                if src.get(pos) != Some(&b':') {
                    fail!("expected ':' after key");
                }
                pos += 1;
            }};
        }
        // Opens a container at `pos`: `true` when it is empty (and closed again).
        macro_rules! open {
            ($object:expr, $close:expr) => {{
                if depth >= MAX_DEPTH {
                    fail!("nesting deeper than 128 levels");
                }
                let (word, bit) = depth_bit(depth);
                if let Some(word) = objects.get_mut(word) {
                    if $object {
                        *word |= bit;
                    } else {
                        *word &= !bit;
                    }
                }
                depth += 1;
                pos += 1;
                ws!();
                let empty = src.get(pos) == Some(&$close);
                if empty {
                    pos += 1;
                    depth -= 1;
                }
                empty
            }};
        }
        loop {
            // A value starts here.
            ws!();
            match src.get(pos) {
                Some(b'{') => {
                    if !open!(true, b'}') {
                        key!();
                        continue;
                    }
                }
                Some(b'[') => {
                    if !open!(false, b']') {
                        continue;
                    }
                }
                Some(b'"') => string!(),
                Some(b'-' | b'0'..=b'9') => {
                    self.pos = pos;
                    self.number()?;
                    pos = self.pos;
                }
                Some(b't') => self.literal_at(&mut pos, b"true")?,
                Some(b'f') => self.literal_at(&mut pos, b"false")?,
                Some(b'n') => self.literal_at(&mut pos, b"null")?,
                None => fail!("unexpected end of input"),
                Some(_) => fail!("expected a value"),
            }
            // A value ended: close containers until the next value starts or we are done.
            loop {
                if depth == base {
                    (self.pos, self.depth, self.objects) = (pos, depth, objects);
                    return Ok(());
                }
                let (word, bit) = depth_bit(depth - 1);
                let object = objects.get(word).is_some_and(|w| w & bit != 0);
                ws!();
                match src.get(pos) {
                    Some(b',') => {
                        pos += 1;
                        if object {
                            key!();
                        }
                        break;
                    }
                    Some(b'}') if object => {
                        pos += 1;
                        depth -= 1;
                    }
                    Some(b']') if !object => {
                        pos += 1;
                        depth -= 1;
                    }
                    _ => fail!("expected ',' or a closing bracket"),
                }
            }
        }
    }

    /// The literal `word` at `*pos` (advanced past it).
    fn literal_at(&mut self, pos: &mut usize, word: &'static [u8]) -> Result<()> {
        if self.src.get(*pos..*pos + word.len()) == Some(word) {
            *pos += word.len();
            Ok(())
        } else {
            self.pos = *pos;
            self.err("invalid literal")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn skip_all(text: &str) -> Result<()> {
        let mut r = Reader::new(text.as_bytes());
        r.skip_value()?;
        r.finish()
    }

    #[test]
    fn skips_valid_json() {
        for ok in [
            "0",
            "-0.5e+10",
            "\"a\\u00e9\\ud83d\\ude00\"",
            "[]",
            "{}",
            "[1,[2,{\"a\":[true,false,null]}],{}]",
            " {\"k\" : {\"n\":{}} } ",
            "\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"",
        ] {
            assert_eq!(skip_all(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn rejects_invalid_json() {
        let cases = [
            ("", "unexpected end of input"),
            ("01", "trailing bytes after the JSON value"),
            ("1.", "invalid number"),
            ("-", "invalid number"),
            ("1e", "invalid number"),
            ("1e400", "number out of range"),
            ("[-2E+309]", "number out of range"),
            ("[1,]", "expected a value"),
            ("[1 2]", "expected ',' or a closing bracket"),
            ("{\"a\"1}", "expected ':' after key"),
            ("{\"a\":1,}", "expected a string"),
            ("{1:2}", "expected a string"),
            ("\"abc", "unterminated string"),
            ("\"a\u{1}\"", "control character in string"),
            ("\"\\x\"", "invalid escape"),
            ("\"\\u12G4\"", "invalid unicode escape"),
            ("\"\\ud800\"", "unpaired surrogate escape"),
            ("\"\\udc00\"", "unpaired surrogate escape"),
            ("\"\\ud800\\u0041\"", "unpaired surrogate escape"),
            ("tru", "invalid literal"),
            ("nul1", "invalid literal"),
            ("{} {}", "trailing bytes after the JSON value"),
            ("'a'", "expected a value"),
            ("[1]]", "trailing bytes after the JSON value"),
            ("[1}", "expected ',' or a closing bracket"),
        ];
        for (text, reason) in cases {
            assert_eq!(
                skip_all(text).map_err(|e| e.reason),
                Err(reason),
                "{text:?}"
            );
        }
    }

    /// The eight-byte fast path must agree with serde_json wherever the interesting byte falls.
    #[test]
    fn string_scan_agrees_with_serde_at_every_offset() {
        let specials: &[&[u8]] = &[
            b"\"",
            b"\\n",
            b"\\u00e9",
            b"\x01",
            b"\x1f",
            b"\x7f",
            b" ",
            "é".as_bytes(),
            "€".as_bytes(),
            "😀".as_bytes(),
            b"\xc0\x80",
            b"\xed\xa0\x80",
            b"\xf5\x80\x80\x80",
            b"\xe2\x82",
            b"\xff",
            b"\x80",
        ];
        for special in specials {
            for before in 0..18 {
                for after in [0, 1, 7, 9] {
                    let mut text = b"\"".to_vec();
                    text.extend(std::iter::repeat_n(b'a', before));
                    text.extend_from_slice(special);
                    text.extend(std::iter::repeat_n(b'b', after));
                    text.push(b'"');
                    let ours = skip_all_bytes(&text).is_ok();
                    let theirs = serde_json::from_slice::<String>(&text).is_ok();
                    assert_eq!(ours, theirs, "{:?}", String::from_utf8_lossy(&text));
                    if ours {
                        let decoded = Reader::new(&text).read_string().unwrap().into_owned();
                        assert_eq!(decoded, serde_json::from_slice::<String>(&text).unwrap());
                    }
                }
            }
        }
    }

    fn skip_all_bytes(text: &[u8]) -> Result<()> {
        let mut r = Reader::new(text);
        r.skip_value()?;
        r.finish()
    }

    #[test]
    fn non_ascii_outside_strings_is_refused() {
        assert!(skip_all_bytes("[1,\u{a0}2]".as_bytes()).is_err());
        assert!(skip_all_bytes(b"\xef\xbb\xbf{}").is_err());
    }

    #[test]
    fn nesting_is_bounded() {
        let ok = "[".repeat(128) + &"]".repeat(128);
        assert_eq!(skip_all(&ok), Ok(()));
        let deep = "[".repeat(129) + &"]".repeat(129);
        assert_eq!(
            skip_all(&deep).map_err(|e| e.reason),
            Err("nesting deeper than 128 levels")
        );
        let deep_objects = "{\"a\":".repeat(200);
        assert!(skip_all(&deep_objects).is_err());
    }

    #[test]
    fn decodes_strings_and_borrows_plain_ones() {
        let mut r = Reader::new(br#""plain""#);
        assert!(matches!(r.read_string(), Ok(Cow::Borrowed("plain"))));
        let mut r = Reader::new(br#""\u0064elete \ud83d\ude00 \"q\"""#);
        assert_eq!(r.read_string().unwrap(), "delete \u{1F600} \"q\"");
    }

    #[test]
    fn walks_objects_and_arrays() {
        let mut r = Reader::new(br#"{"a": [1, "x"], "b\u0021": {}}"#);
        r.begin_object().unwrap();
        let mut first = true;
        assert_eq!(r.next_key(&mut first).unwrap().unwrap(), "a");
        r.begin_array().unwrap();
        let mut f = true;
        assert!(r.next_element(&mut f).unwrap());
        assert_eq!(r.read_number().unwrap(), "1");
        assert!(r.next_element(&mut f).unwrap());
        assert_eq!(r.read_string().unwrap(), "x");
        assert!(!r.next_element(&mut f).unwrap());
        assert_eq!(r.next_key(&mut first).unwrap().unwrap(), "b!");
        r.skip_value().unwrap();
        assert_eq!(r.next_key(&mut first).unwrap(), None);
        r.finish().unwrap();
    }
}
