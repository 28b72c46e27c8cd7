//! The two messages of Envoy's Rate Limit Service (`envoy.service.ratelimit.v3`,
//! `ShouldRateLimit`), hand-encoded: the filter needs one request shape and four response
//! fields, not a protobuf runtime in every worker's VM.
//!
//! Field numbers (envoy/service/ratelimit/v3/rls.proto, extensions/common/ratelimit/v3):
//! `RateLimitRequest { domain = 1; descriptors = 2; hits_addend = 3 }`,
//! `RateLimitDescriptor { entries = 1 }`, `Entry { key = 1; value = 2 }`,
//! `RateLimitResponse { overall_code = 1; statuses = 2 }`,
//! `DescriptorStatus { code = 1; current_limit = 2; limit_remaining = 3; duration_until_reset = 4 }`,
//! `RateLimit { requests_per_unit = 1; unit = 2; name = 3 }`, `Duration { seconds = 1; nanos = 2 }`.
//! Unknown fields are skipped, as protobuf requires.

/// gRPC service and method the filter calls.
pub const SERVICE: &str = "envoy.service.ratelimit.v3.RateLimitService";
pub const METHOD: &str = "ShouldRateLimit";

/// `RateLimitResponse.Code`.
pub const CODE_OK: u64 = 1;
pub const CODE_OVER_LIMIT: u64 = 2;

const VARINT: u64 = 0;
const FIXED64: u64 = 1;
const LEN: u64 = 2;
const FIXED32: u64 = 5;

/// One descriptor: its entries, key and value.
pub type Descriptor = Vec<(String, String)>;

/// Encodes a `RateLimitRequest`. Empty strings and a zero addend are left out, as protobuf
/// itself does for proto3 defaults.
pub fn encode_request(domain: &str, descriptors: &[Descriptor], hits_addend: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    put_str(&mut out, 1, domain);
    for descriptor in descriptors {
        let mut d = Vec::new();
        for (key, value) in descriptor {
            let mut entry = Vec::new();
            put_str(&mut entry, 1, key);
            put_str(&mut entry, 2, value);
            put_len(&mut d, 1, &entry);
        }
        put_len(&mut out, 2, &d);
    }
    if hits_addend != 0 {
        put_varint(&mut out, 3 << 3 | VARINT);
        put_varint(&mut out, u64::from(hits_addend));
    }
    out
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_len(out: &mut Vec<u8>, field: u64, bytes: &[u8]) {
    put_varint(out, field << 3 | LEN);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn put_str(out: &mut Vec<u8>, field: u64, s: &str) {
    if !s.is_empty() {
        put_len(out, field, s.as_bytes());
    }
}

/// Bytes that are not a `RateLimitResponse`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed;

/// A decoded `RateLimitResponse`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Response {
    pub overall_code: u64,
    pub statuses: Vec<Status>,
}

/// A decoded `DescriptorStatus`, in the order of the request's descriptors.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Status {
    pub code: u64,
    pub requests_per_unit: u64,
    /// `RateLimit.Unit`: 1 second, 2 minute, 3 hour, 4 day, 5 month, 6 year, 7 week.
    pub unit: u64,
    pub limit_remaining: u64,
    /// `duration_until_reset`, in milliseconds (rounded up).
    pub reset_ms: u64,
}

impl Status {
    /// Seconds in the limit's unit, if known.
    pub fn unit_seconds(&self) -> Option<u64> {
        Some(match self.unit {
            1 => 1,
            2 => 60,
            3 => 3_600,
            4 => 86_400,
            5 => 30 * 86_400,
            6 => 365 * 86_400,
            7 => 7 * 86_400,
            _ => return None,
        })
    }
}

/// A protobuf reader over one message's bytes.
struct Fields<'a> {
    bytes: &'a [u8],
}

/// A field's value: a varint, or the bytes of a length-delimited field.
enum Value<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Other,
}

impl<'a> Fields<'a> {
    fn varint(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..70).step_by(7) {
            let (&b, rest) = self.bytes.split_first()?;
            self.bytes = rest;
            v |= u64::from(b & 0x7f).checked_shl(shift).unwrap_or(0);
            if b < 0x80 {
                return Some(v);
            }
        }
        None
    }

    fn skip(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.bytes.len() {
            return None;
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Some(head)
    }

    /// The next field, `None` at the end; `Err` on malformed bytes.
    fn next(&mut self) -> Result<Option<(u64, Value<'a>)>, Malformed> {
        if self.bytes.is_empty() {
            return Ok(None);
        }
        let tag = self.varint().ok_or(Malformed)?;
        let value = match tag & 7 {
            VARINT => Value::Varint(self.varint().ok_or(Malformed)?),
            LEN => {
                let n = usize::try_from(self.varint().ok_or(Malformed)?).map_err(|_| Malformed)?;
                Value::Bytes(self.skip(n).ok_or(Malformed)?)
            }
            FIXED64 => self.skip(8).map(|_| Value::Other).ok_or(Malformed)?,
            FIXED32 => self.skip(4).map(|_| Value::Other).ok_or(Malformed)?,
            _ => return Err(Malformed),
        };
        Ok(Some((tag >> 3, value)))
    }
}

/// Calls `each` with every field of `bytes`.
fn fields<'a>(bytes: &'a [u8], mut each: impl FnMut(u64, Value<'a>)) -> Result<(), Malformed> {
    let mut f = Fields { bytes };
    while let Some((field, value)) = f.next()? {
        each(field, value);
    }
    Ok(())
}

/// Decodes a `RateLimitResponse`; `Err` on bytes that are not one.
pub fn decode_response(bytes: &[u8]) -> Result<Response, Malformed> {
    let mut response = Response::default();
    let mut statuses = Vec::new();
    fields(bytes, |field, value| match (field, value) {
        (1, Value::Varint(code)) => response.overall_code = code,
        (2, Value::Bytes(b)) => statuses.push(b),
        _ => {}
    })?;
    for bytes in statuses {
        response.statuses.push(decode_status(bytes)?);
    }
    Ok(response)
}

fn decode_status(bytes: &[u8]) -> Result<Status, Malformed> {
    let mut status = Status::default();
    let (mut limit, mut reset) = (None, None);
    fields(bytes, |field, value| match (field, value) {
        (1, Value::Varint(v)) => status.code = v,
        (2, Value::Bytes(b)) => limit = Some(b),
        (3, Value::Varint(v)) => status.limit_remaining = v,
        (4, Value::Bytes(b)) => reset = Some(b),
        _ => {}
    })?;
    if let Some(b) = limit {
        fields(b, |field, value| match (field, value) {
            (1, Value::Varint(v)) => status.requests_per_unit = v,
            (2, Value::Varint(v)) => status.unit = v,
            _ => {}
        })?;
    }
    if let Some(b) = reset {
        let (mut seconds, mut nanos) = (0u64, 0u64);
        fields(b, |field, value| match (field, value) {
            (1, Value::Varint(v)) => seconds = v,
            (2, Value::Varint(v)) => nanos = v,
            _ => {}
        })?;
        // A negative duration arrives as a huge varint: treat it as "now".
        let seconds = if seconds > i64::MAX as u64 {
            0
        } else {
            seconds
        };
        let nanos = if nanos > 999_999_999 { 0 } else { nanos };
        status.reset_ms = seconds
            .saturating_mul(1000)
            .saturating_add(nanos.div_ceil(1_000_000));
    }
    Ok(status)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn d(entries: &[(&str, &str)]) -> Descriptor {
        entries
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// Bytes from Python's protobuf runtime (7.36) over tests/rls/rls.proto:
    /// `RateLimitRequest(domain="mcp-guard", hits_addend=3, descriptors=[
    ///   [limit=calls, subject=alice], [limit=all, tool=""]]).SerializeToString()`.
    const REQUEST: &str = "0a096d63702d677561726412220a0e0a056c696d6974120563616c6c730a100a077375626a6563741205616c69636512160a0c0a056c696d69741203616c6c0a060a04746f6f6c1803";

    /// `RateLimitResponse(overall_code=OVER_LIMIT, statuses=[
    ///   (OK, RateLimit(100, MINUTE, name="all"), remaining 97, reset 42.5 s),
    ///   (OVER_LIMIT, RateLimit(20, HOUR), remaining 0, reset 3599 s)])`.
    const RESPONSE: &str =
        "0802121908011209086410021a03616c6c18612208082a1080cab5ee01120d08021204081410032203088f1c";

    #[test]
    fn request_matches_the_protobuf_runtime() {
        let got = encode_request(
            "mcp-guard",
            &[
                d(&[("limit", "calls"), ("subject", "alice")]),
                d(&[("limit", "all"), ("tool", "")]),
            ],
            3,
        );
        assert_eq!(got, hex(REQUEST));
    }

    #[test]
    fn response_from_the_protobuf_runtime() {
        let r = decode_response(&hex(RESPONSE)).unwrap();
        assert_eq!(
            r,
            Response {
                overall_code: CODE_OVER_LIMIT,
                statuses: vec![
                    Status {
                        code: CODE_OK,
                        requests_per_unit: 100,
                        unit: 2,
                        limit_remaining: 97,
                        reset_ms: 42_500
                    },
                    Status {
                        code: CODE_OVER_LIMIT,
                        requests_per_unit: 20,
                        unit: 3,
                        limit_remaining: 0,
                        reset_ms: 3_599_000
                    },
                ]
            }
        );
        assert_eq!(r.statuses[1].unit_seconds(), Some(3600));
        assert_eq!(decode_response(&hex("0801")).unwrap().overall_code, CODE_OK);
        assert_eq!(decode_response(&[]).unwrap(), Response::default());
    }

    #[test]
    fn skips_unknown_fields_and_refuses_truncation() {
        // overall_code OK, then unknown fields 9 (fixed64), 10 (fixed32), 11 (bytes).
        let mut bytes = hex("0801");
        bytes.extend(hex("490102030405060708"));
        bytes.extend(hex("5501020304"));
        bytes.extend(hex("5a03616263"));
        assert_eq!(decode_response(&bytes).unwrap().overall_code, CODE_OK);
        let full = hex(RESPONSE);
        for cut in 1..full.len() {
            // Any prefix either fails or decodes to something shorter: never panics.
            let _ = decode_response(&full[..cut]);
        }
        assert!(decode_response(&hex("12ff")).is_err());
        assert!(decode_response(&hex("0f")).is_err());
    }
}
