//! Scanning a `tools/call` answer: the text parts of `result.content` (and of embedded
//! resources) and every string in `result.structuredContent` go through a rule's
//! detectors; matches are redacted in place, or the answer is blocked, or only counted.
//!
//! Decides the bytes the client gets. Redaction replaces each match in the *decoded*
//! string with `[REDACTED:<detector>]` and writes the string back as a JSON string, so
//! escapes cannot hide a secret and the answer stays valid JSON; every other byte of the
//! answer is kept as it was. A blocked answer becomes a JSON-RPC error for the answer's
//! `id`. Works on one JSON-RPC message (a JSON body, or one SSE event via [`scan_event`]).
//! Never logs or returns matched text: only counts per detector.

use std::ops::Range;

use crate::protocol::jsonrpc::{Reader, SyntaxError};
use crate::report::reject::{push_json_string, Code, Rejection};

use super::detect::{find_all, Detector};

/// What replaces a match: `[REDACTED:<detector>]`. A call whose arguments carry it is
/// refused ([`carries_marker`]): a redacted value must not be written back as data.
pub const MARKER_PREFIX: &str = "[REDACTED:";

/// What a results rule does with matches, from the mildest to the strictest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Action {
    Log,
    Redact,
    Block,
}

/// A compiled `contracts.results` entry's scanning part.
#[derive(Debug, Clone)]
pub struct ResultRule {
    pub detectors: Vec<Detector>,
    pub action: Action,
    /// Larger answers (one message) are blocked unread.
    pub max_bytes: Option<u64>,
}

/// The outcome of scanning one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scan<'r> {
    /// Matches per detector (only detectors that matched), for metrics.
    pub counts: Vec<(&'r str, u32)>,
    /// The bytes to send instead; `None`: forward the message unchanged.
    pub body: Option<Vec<u8>>,
    /// Why the message was blocked, for the log (no matched text).
    pub blocked: Option<String>,
}

/// The strings of an answer that detectors read, and the answer's `id`.
#[derive(Default)]
struct Walk {
    id: Option<Range<usize>>,
    /// Byte range of each scanned JSON string and its decoded value.
    strings: Vec<(Range<usize>, String)>,
}

impl ResultRule {
    /// The strictest combination of `rules`, for a batch whose answers come as one body:
    /// every detector of any of them, the strictest action (block, then redact, then log)
    /// and the smallest `max_bytes`. `None` when `rules` is empty.
    pub fn strictest(rules: &[&ResultRule]) -> Option<ResultRule> {
        let (first, rest) = rules.split_first()?;
        let mut merged = (*first).clone();
        for rule in rest {
            for detector in &rule.detectors {
                if !merged.detectors.iter().any(|d| d.name() == detector.name()) {
                    merged.detectors.push(detector.clone());
                }
            }
            merged.action = merged.action.max(rule.action);
            merged.max_bytes = match (merged.max_bytes, rule.max_bytes) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        Some(merged)
    }

    /// Scans one JSON-RPC message (`tool` only names it in a block reason).
    pub fn scan(&self, tool: &str, message: &[u8]) -> Scan<'_> {
        let mut scan = Scan {
            counts: Vec::new(),
            body: None,
            blocked: None,
        };
        // Not a JSON object or array: not a JSON-RPC message (an SSE keep-alive, say).
        let mut probe = Reader::new(message);
        if !matches!(probe.peek(), Some(b'{' | b'[')) {
            return scan;
        }
        let mut walk = Walk::default();
        let mut reader = Reader::new(message);
        let read = read_message(&mut reader, &mut walk).and_then(|()| reader.finish());
        let too_large = self.max_bytes.filter(|max| message.len() as u64 > *max);
        let reason = match (read, too_large) {
            (_, Some(max)) => Some(format!(
                "the result of tool {tool:?} is {} bytes, over its max_bytes ({max})",
                message.len()
            )),
            (Err(_), None) if self.action != Action::Log => Some(format!(
                "the result of tool {tool:?} is not valid JSON and cannot be scanned"
            )),
            _ => None,
        };
        if let Some(reason) = reason {
            return self.block(scan, message, &walk, reason);
        }
        let mut counts = vec![0u32; self.detectors.len()];
        let mut splices: Vec<(Range<usize>, String)> = Vec::new();
        for (range, text) in &walk.strings {
            let found = find_all(&self.detectors, text, &mut counts);
            if found.is_empty() || self.action != Action::Redact {
                continue;
            }
            let mut redacted = String::with_capacity(text.len());
            let mut last = 0;
            for f in &found {
                redacted.push_str(text.get(last..f.span.start).unwrap_or_default());
                let name = self.detectors.get(f.detector).map_or("?", Detector::name);
                redacted.push_str(MARKER_PREFIX);
                redacted.push_str(name);
                redacted.push(']');
                last = f.span.end;
            }
            redacted.push_str(text.get(last..).unwrap_or_default());
            let mut json = String::with_capacity(redacted.len() + 2);
            push_json_string(&mut json, &redacted);
            splices.push((range.clone(), json));
        }
        scan.counts = self
            .detectors
            .iter()
            .zip(counts)
            .filter(|(_, n)| *n > 0)
            .map(|(d, n)| (d.name(), n))
            .collect();
        if scan.counts.is_empty() {
            return scan;
        }
        match self.action {
            Action::Log => scan,
            Action::Block => {
                let names: Vec<&str> = scan.counts.iter().map(|(name, _)| *name).collect();
                let reason = format!(
                    "the result of tool {tool:?} was withheld: it contains {}",
                    names.join(", ")
                );
                self.block(scan, message, &walk, reason)
            }
            Action::Redact => {
                scan.body = Some(splice(message, &splices));
                scan
            }
        }
    }

    fn block<'r>(
        &self,
        mut scan: Scan<'r>,
        message: &[u8],
        walk: &Walk,
        reason: String,
    ) -> Scan<'r> {
        let id = walk
            .id
            .clone()
            .and_then(|r| std::str::from_utf8(message.get(r)?).ok());
        let rejection = Rejection::new(Code::BadGateway, reason.clone()).with_id(id);
        scan.body = Some(rejection.to_json().into_bytes());
        scan.blocked = Some(reason);
        scan
    }
}

/// Scans one raw SSE event (every `data:` line of it joined, as SSE defines); the event
/// is rewritten only if the message is.
pub fn scan_event<'r>(rule: &'r ResultRule, tool: &str, event: &[u8]) -> Scan<'r> {
    let mut outcome = None;
    let rewritten = crate::response::sse::rewrite_event(event, &mut |data| {
        let scan = rule.scan(tool, data);
        let body = scan.body.clone();
        outcome = Some(scan);
        body
    });
    let mut scan = outcome.unwrap_or(Scan {
        counts: Vec::new(),
        body: None,
        blocked: None,
    });
    scan.body = rewritten;
    scan
}

/// `message` with each range replaced (ranges in order, not overlapping).
fn splice(message: &[u8], splices: &[(Range<usize>, String)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + 64 * splices.len());
    let mut last = 0;
    for (range, text) in splices {
        out.extend_from_slice(message.get(last..range.start).unwrap_or_default());
        out.extend_from_slice(text.as_bytes());
        last = range.end;
    }
    out.extend_from_slice(message.get(last..).unwrap_or_default());
    out
}

type Read = Result<(), SyntaxError>;

/// A message object, or an array of them (a batch answer).
fn read_message(reader: &mut Reader<'_>, walk: &mut Walk) -> Read {
    if reader.peek() == Some(b'[') {
        reader.begin_array()?;
        let mut first = true;
        while reader.next_element(&mut first)? {
            read_message(reader, walk)?;
        }
        return Ok(());
    }
    members(reader, |reader, key| match key {
        "id" => {
            let start = reader.offset_after_ws();
            reader.skip_value()?;
            walk.id = Some(start..reader.offset());
            Ok(())
        }
        "result" => members(reader, |reader, key| match key {
            "content" => elements(reader, |reader| {
                members(reader, |reader, key| match key {
                    "text" => text(reader, walk),
                    "resource" => members(reader, |reader, key| match key {
                        "text" => text(reader, walk),
                        _ => reader.skip_value(),
                    }),
                    _ => reader.skip_value(),
                })
            }),
            "structuredContent" => all_strings(reader, walk),
            _ => reader.skip_value(),
        }),
        _ => reader.skip_value(),
    })
}

/// Calls `each` on every member of an object; any other value is skipped.
fn members(reader: &mut Reader<'_>, mut each: impl FnMut(&mut Reader<'_>, &str) -> Read) -> Read {
    if reader.peek() != Some(b'{') {
        return reader.skip_value();
    }
    reader.begin_object()?;
    let mut first = true;
    while let Some(key) = reader.next_key(&mut first)? {
        each(reader, &key)?;
    }
    Ok(())
}

/// Calls `each` on every element of an array; any other value is skipped.
fn elements(reader: &mut Reader<'_>, mut each: impl FnMut(&mut Reader<'_>) -> Read) -> Read {
    if reader.peek() != Some(b'[') {
        return reader.skip_value();
    }
    reader.begin_array()?;
    let mut first = true;
    while reader.next_element(&mut first)? {
        each(reader)?;
    }
    Ok(())
}

/// A string to scan (anything else is skipped).
fn text(reader: &mut Reader<'_>, walk: &mut Walk) -> Read {
    if reader.peek() != Some(b'"') {
        return reader.skip_value();
    }
    let start = reader.offset_after_ws();
    let value = reader.read_string()?;
    walk.strings
        .push((start..reader.offset(), value.into_owned()));
    Ok(())
}

/// Every string value at any depth (object keys are not scanned).
fn all_strings(reader: &mut Reader<'_>, walk: &mut Walk) -> Read {
    match reader.peek() {
        Some(b'"') => text(reader, walk),
        Some(b'{') => members(reader, |reader, _| all_strings(reader, walk)),
        Some(b'[') => elements(reader, |reader| all_strings(reader, walk)),
        _ => reader.skip_value(),
    }
}

/// Whether any string (or key) in a call's arguments contains the redaction marker,
/// escapes decoded. Unreadable arguments count as carrying it: they are refused anyway.
pub fn carries_marker(arguments: &[u8]) -> bool {
    let raw = arguments
        .windows(MARKER_PREFIX.len())
        .any(|w| w == MARKER_PREFIX.as_bytes());
    if raw || !arguments.contains(&b'\\') {
        return raw;
    }
    fn walk(reader: &mut Reader<'_>) -> Result<bool, SyntaxError> {
        match reader.peek() {
            Some(b'"') => Ok(reader.read_string()?.contains(MARKER_PREFIX)),
            Some(b'{') => {
                reader.begin_object()?;
                let mut first = true;
                let mut found = false;
                while let Some(key) = reader.next_key(&mut first)? {
                    found |= key.contains(MARKER_PREFIX);
                    found |= walk(reader)?;
                }
                Ok(found)
            }
            Some(b'[') => {
                reader.begin_array()?;
                let mut first = true;
                let mut found = false;
                while reader.next_element(&mut first)? {
                    found |= walk(reader)?;
                }
                Ok(found)
            }
            _ => reader.skip_value().map(|()| false),
        }
    }
    walk(&mut Reader::new(arguments)).unwrap_or(true)
}
