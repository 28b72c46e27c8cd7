//! Differential check, built only #[cfg(test)] or with the `fuzzing` feature (see mod.rs):
//! whatever the filter accepts, serde_json (what Rust MCP servers such as rmcp parse with)
//! must accept too and read the same method, id and name. The unit test feeds it mutations
//! of valid MCP messages from a fixed-seed generator, so failures reproduce; the fuzz
//! targets (tests/fuzz) feed it whatever libFuzzer finds.

use super::{parse_body, Body};

/// xorshift64*: small, deterministic, good enough to pick mutations.
#[cfg(test)]
struct Rng(u64);

#[cfg(test)]
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Mutated bodies per test run, and the generator's seed; MCP_GUARD_DIFF_ROUNDS and
/// MCP_GUARD_DIFF_SEED override them for longer, different runs.
#[cfg(test)]
fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[cfg(test)]
const SEEDS: &[&str] = &[
    r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hi","n":[1,2.5e3,-0],"o":{"a":null}}}}"#,
    r#"{"jsonrpc":"2.0","id":"r-7","method":"prompts/get","params":{"name":"gr\u00e9et","arguments":{}}}"#,
    r#"{"jsonrpc":"2.0","id":3,"method":"resources/read","params":{"uri":"file:///a%20b","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#,
    r#"[{"jsonrpc":"2.0","method":"notifications/initialized"},{"jsonrpc":"2.0","id":9,"result":{"roots":[]}}]"#,
    r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"c","version":"1"}}}"#,
];

/// Fragments that tend to find disagreements: escapes, surrogates, duplicate keys, odd
/// numbers and whitespace, structural bytes, non-ASCII and invalid UTF-8.
#[cfg(test)]
const FRAGMENTS: &[&[u8]] = &[
    b"\\u0065",
    b"\\ud83d\\ude00",
    b"\\ud800",
    b"\\\"",
    b"\\\\",
    b"\\/",
    b"\\u0000",
    b",\"name\":\"rm\"",
    b",\"method\":\"ping\"",
    b",\"id\":2",
    b",\"n\\u0061me\":\"x\"",
    b"1e400",
    b"-",
    b"01",
    b"0.",
    b"\"",
    b"{",
    b"}",
    b"[",
    b"]",
    b":",
    b",",
    b" ",
    b"\t\n\r",
    b"null",
    b"true",
    "é".as_bytes(),
    b"\xff",
    b"\xc3",
    b"\xed\xa0\x80",
    b"\xef\xbb\xbf",
];

#[cfg(test)]
fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    let mut body = seed.to_vec();
    for _ in 0..1 + rng.below(3) {
        let at = rng.below(body.len() + 1);
        match rng.below(4) {
            0 => {
                let frag = FRAGMENTS[rng.below(FRAGMENTS.len())];
                body.splice(at..at, frag.iter().copied());
            }
            1 if at < body.len() => {
                let end = (at + 1 + rng.below(4)).min(body.len());
                body.drain(at..end);
            }
            2 if at < body.len() => body[at] = rng.next() as u8,
            _ => {
                // Copy a run of the body elsewhere: repeats keys and values.
                let from = rng.below(body.len());
                let len = rng.below(24).min(body.len() - from);
                let run: Vec<u8> = body[from..from + len].to_vec();
                body.splice(at..at, run);
            }
        }
    }
    body
}

/// The reading a strict upstream would make of one message.
fn upstream_reading(v: &serde_json::Value) -> (Option<String>, Option<String>, Option<String>) {
    let method = v.get("method").and_then(|m| m.as_str()).map(str::to_owned);
    let id = v.get("id").map(|i| i.to_string());
    let key = match method.as_deref() {
        Some("resources/read" | "resources/subscribe" | "resources/unsubscribe") => "uri",
        _ => "name",
    };
    let name = v
        .get("params")
        .and_then(|p| p.get(key))
        .and_then(|n| n.as_str())
        .map(str::to_owned);
    (method, id, name)
}

/// Checks one body: `Ok(true)` if the filter accepts it and reads it as serde_json does,
/// `Ok(false)` if the filter refuses it, `Err` with the disagreement otherwise.
pub fn agree(body: &[u8]) -> Result<bool, String> {
    let Ok(ours) = parse_body(body) else {
        return Ok(false);
    };
    let text = String::from_utf8_lossy(body);
    let theirs: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| format!("we accepted what serde_json refuses ({e}): {text}"))?;
    let members: Vec<&serde_json::Value> = match (&ours, &theirs) {
        (Body::Single(_), v @ serde_json::Value::Object(_)) => vec![v],
        (Body::Batch(_), serde_json::Value::Array(a)) => a.iter().collect(),
        _ => return Err(format!("shape differs: {text}")),
    };
    if members.len() != ours.messages().len() {
        return Err(format!("message count differs: {text}"));
    }
    for (m, v) in ours.messages().iter().zip(members) {
        let (method, id, name) = upstream_reading(v);
        if m.method.as_deref() != method.as_deref() {
            return Err(format!("method differs: {text}"));
        }
        let our_id =
            m.id.map(|raw| serde_json::from_str::<serde_json::Value>(raw).map(|i| i.to_string()));
        if our_id.transpose().ok().flatten() != id {
            return Err(format!("id differs: {text}"));
        }
        if let Some(t) = &m.target {
            if Some(t.value()) != name.as_deref() {
                return Err(format!("name differs: {text}"));
            }
        }
    }
    Ok(true)
}

#[cfg(test)]
#[test]
fn accepted_bodies_read_the_same_as_serde_json() {
    let mut rng = Rng(setting("MCP_GUARD_DIFF_SEED", 0x9E37_79B9_7F4A_7C15).max(1));
    let (mut accepted, mut total) = (0, 0);
    for round in 0..setting("MCP_GUARD_DIFF_ROUNDS", 200_000) as usize {
        let seed = SEEDS[round % SEEDS.len()].as_bytes();
        let body = mutate(&mut rng, seed);
        total += 1;
        if agree(&body).unwrap_or_else(|e| panic!("{e}")) {
            accepted += 1;
        }
    }
    // The generator must exercise both sides, or this test proves nothing.
    assert!(
        accepted > total / 20 && accepted < total,
        "accepted {accepted} of {total}"
    );
}
