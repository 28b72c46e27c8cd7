//! Detectors of secrets and personal data in text: where each match is, and which
//! detector found it.
//!
//! Decides only spans. Built-in detectors are hand-written matchers over documented
//! shapes, each anchored on a literal (a key prefix, `@`, `+`, a digit, an upper-case
//! letter): one pass with a byte table finds every candidate of the prefix, card and IBAN
//! detectors, and `@` and `+` are found by memchr, so a clean 64 KiB text costs about one
//! table lookup per byte, not a regex pass per detector; payment cards
//! must pass Luhn and IBANs mod-97, which keeps random digit runs out. Custom detectors are
//! `regex-lite` expressions from the configuration. Never stores or reports the matched
//! text.

use std::ops::Range;

use regex_lite::Regex;

/// A built-in detector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Builtin {
    PrivateKey,
    AwsKey,
    GithubToken,
    SlackToken,
    StripeKey,
    GoogleApiKey,
    OpenaiKey,
    Jwt,
    BearerToken,
    Email,
    PaymentCard,
    Iban,
    Phone,
}

impl Builtin {
    /// Credentials: what `"secrets"` names in a configuration.
    pub const SECRETS: &'static [Builtin] = &[
        Builtin::PrivateKey,
        Builtin::AwsKey,
        Builtin::GithubToken,
        Builtin::SlackToken,
        Builtin::StripeKey,
        Builtin::GoogleApiKey,
        Builtin::OpenaiKey,
        Builtin::Jwt,
        Builtin::BearerToken,
    ];

    /// Personal data: what `"pii"` names.
    pub const PII: &'static [Builtin] = &[
        Builtin::Email,
        Builtin::PaymentCard,
        Builtin::Iban,
        Builtin::Phone,
    ];

    /// The name in configurations, metrics and redaction markers.
    pub fn name(self) -> &'static str {
        match self {
            Builtin::PrivateKey => "private_key",
            Builtin::AwsKey => "aws_key",
            Builtin::GithubToken => "github_token",
            Builtin::SlackToken => "slack_token",
            Builtin::StripeKey => "stripe_key",
            Builtin::GoogleApiKey => "google_api_key",
            Builtin::OpenaiKey => "openai_key",
            Builtin::Jwt => "jwt",
            Builtin::BearerToken => "bearer_token",
            Builtin::Email => "email",
            Builtin::PaymentCard => "payment_card",
            Builtin::Iban => "iban",
            Builtin::Phone => "phone",
        }
    }

    /// Every built-in detector: the credentials, then the personal data.
    pub fn all() -> impl Iterator<Item = Builtin> {
        Builtin::SECRETS.iter().chain(Builtin::PII).copied()
    }

    pub fn from_name(name: &str) -> Option<Builtin> {
        Builtin::all().find(|b| b.name() == name)
    }

    /// Appends the spans this detector finds in `text`, for detectors not anchored on a
    /// prefix, a digit or an upper-case letter (those are found in [`one_pass`]).
    fn find(self, text: &str, out: &mut Vec<Range<usize>>) {
        match self {
            Builtin::Email => emails(text, out),
            Builtin::Phone => phones(text, out),
            _ => {}
        }
    }

    /// The match that starts with `prefix` (one of this detector's [`ANCHORS`]) at `at`.
    fn after_prefix(self, text: &str, prefix: &str, at: usize) -> Option<Range<usize>> {
        let alnum = |b: u8| b.is_ascii_alphanumeric();
        let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b'-';
        let body = at + prefix.len();
        let token = |class: &dyn Fn(u8) -> bool, len: Range<usize>| {
            let n = run(text, body, class);
            (starts_word(text, at) && len.contains(&n)).then_some(at..body + n)
        };
        match self {
            Builtin::AwsKey => token(&|b| b.is_ascii_uppercase() || b.is_ascii_digit(), 16..17),
            Builtin::GithubToken if prefix == "github_pat_" => {
                token(&|b| alnum(b) || b == b'_', 22..256)
            }
            Builtin::GithubToken => token(&alnum, 36..256),
            Builtin::SlackToken => token(&|b| alnum(b) || b == b'-', 10..256),
            Builtin::StripeKey => token(&alnum, 16..256),
            Builtin::GoogleApiKey => token(&word, 35..36),
            Builtin::OpenaiKey => token(&word, 32..256),
            Builtin::Jwt => jwt(text, at),
            Builtin::BearerToken => bearer_token(text, at, body),
            Builtin::PrivateKey => private_key(text, at),
            Builtin::Email | Builtin::PaymentCard | Builtin::Iban | Builtin::Phone => None,
        }
    }
}

/// The literal each prefix-anchored detector starts from.
const ANCHORS: &[(&str, Builtin)] = &[
    ("AKIA", Builtin::AwsKey),
    ("ASIA", Builtin::AwsKey),
    ("ghp_", Builtin::GithubToken),
    ("gho_", Builtin::GithubToken),
    ("ghu_", Builtin::GithubToken),
    ("ghs_", Builtin::GithubToken),
    ("ghr_", Builtin::GithubToken),
    ("github_pat_", Builtin::GithubToken),
    ("xoxb-", Builtin::SlackToken),
    ("xoxp-", Builtin::SlackToken),
    ("xoxa-", Builtin::SlackToken),
    ("xoxr-", Builtin::SlackToken),
    ("xoxs-", Builtin::SlackToken),
    ("xoxo-", Builtin::SlackToken),
    ("sk_live_", Builtin::StripeKey),
    ("rk_live_", Builtin::StripeKey),
    ("AIza", Builtin::GoogleApiKey),
    ("sk-", Builtin::OpenaiKey),
    ("eyJ", Builtin::Jwt),
    ("Bearer ", Builtin::BearerToken),
    ("bearer ", Builtin::BearerToken),
    ("BEARER ", Builtin::BearerToken),
    ("-----BEGIN ", Builtin::PrivateKey),
];

/// Every match of the enabled detectors (`(index, builtin)`) found in one pass over
/// `text`: those anchored on a prefix, payment cards (from a digit) and IBANs (from an
/// upper-case letter). A table says which bytes may start one; every other byte costs a
/// lookup.
fn one_pass(enabled: &[(usize, Builtin)], text: &str, found: &mut Vec<Found>) {
    let index_of = |b: Builtin| enabled.iter().find(|(_, e)| *e == b).map(|(i, _)| *i);
    let mut anchors: Vec<(&str, usize, Builtin)> = ANCHORS
        .iter()
        .filter_map(|(prefix, b)| index_of(*b).map(|i| (*prefix, i, *b)))
        .collect();
    crate::sort::sort_by(&mut anchors, |(a, _, _), (b, _, _)| {
        a.as_bytes().first() < b.as_bytes().first()
    });
    // Byte → 1 + the index of the first anchor starting with it; OTHER: no anchor, but it
    // may start a card or an IBAN; 0: nothing starts with it.
    const OTHER: u8 = u8::MAX;
    let mut first = [0u8; 256];
    let (card, iban) = (index_of(Builtin::PaymentCard), index_of(Builtin::Iban));
    let mut mark = |bytes: std::ops::RangeInclusive<u8>| {
        for b in bytes {
            if let Some(slot) = first.get_mut(usize::from(b)) {
                *slot = OTHER;
            }
        }
    };
    if card.is_some() {
        mark(b'0'..=b'9');
    }
    if iban.is_some() {
        mark(b'A'..=b'Z');
    }
    for (k, (prefix, _, _)) in anchors.iter().enumerate().rev() {
        if let Some(slot) = prefix
            .as_bytes()
            .first()
            .and_then(|b| first.get_mut(usize::from(*b)))
        {
            *slot = u8::try_from(k + 1).unwrap_or(0);
        }
    }
    let (mut next_card, mut next_iban) = (0, 0);
    let bytes = text.as_bytes();
    for (at, &b) in bytes.iter().enumerate() {
        let k = first.get(usize::from(b)).copied().unwrap_or(0);
        if k == 0 {
            continue;
        }
        if let (Some(detector), true) = (card, b.is_ascii_digit() && at >= next_card) {
            let (span, next) = card_at(text, at);
            next_card = next;
            found.extend(span.map(|span| Found { span, detector }));
        }
        if let (Some(detector), true) = (iban, b.is_ascii_uppercase() && at >= next_iban) {
            let (span, next) = iban_at(text, at);
            next_iban = next;
            found.extend(span.map(|span| Found { span, detector }));
        }
        if k == OTHER {
            continue;
        }
        let rest = bytes.get(at..).unwrap_or_default();
        let same_first = anchors
            .get(usize::from(k - 1)..)
            .unwrap_or_default()
            .iter()
            .take_while(|(p, _, _)| p.as_bytes().first() == Some(&b));
        for (prefix, index, builtin) in same_first {
            // The second byte first: most bytes that start a prefix in prose go no further.
            if rest.get(1) == prefix.as_bytes().get(1) && rest.starts_with(prefix.as_bytes()) {
                if let Some(span) = builtin.after_prefix(text, prefix, at) {
                    found.push(Found {
                        span,
                        detector: *index,
                    });
                }
            }
        }
    }
}

/// One detector of a results rule.
#[derive(Debug, Clone)]
pub enum Detector {
    Builtin(Builtin),
    Custom { name: String, regex: Regex },
}

impl Detector {
    pub fn name(&self) -> &str {
        match self {
            Detector::Builtin(b) => b.name(),
            Detector::Custom { name, .. } => name,
        }
    }

    fn find(&self, text: &str, out: &mut Vec<Range<usize>>) {
        match self {
            Detector::Builtin(b) => b.find(text, out),
            Detector::Custom { regex, .. } => {
                out.extend(
                    regex
                        .find_iter(text)
                        .filter(|m| !m.is_empty())
                        .map(|m| m.range()),
                );
            }
        }
    }
}

/// A match: its byte span in the text and the index of the detector (in the rule's list).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub span: Range<usize>,
    pub detector: usize,
}

/// Every match of `detectors` in `text`, in order, overlaps merged (the span keeps the
/// first detector's label); `counts[i]` gains the matches of detector `i` before merging.
pub fn find_all(detectors: &[Detector], text: &str, counts: &mut [u32]) -> Vec<Found> {
    let mut found = Vec::new();
    let enabled: Vec<(usize, Builtin)> = detectors
        .iter()
        .enumerate()
        .filter_map(|(i, d)| match d {
            Detector::Builtin(b) => Some((i, *b)),
            Detector::Custom { .. } => None,
        })
        .collect();
    one_pass(&enabled, text, &mut found);
    let mut spans = Vec::new();
    for (i, detector) in detectors.iter().enumerate() {
        spans.clear();
        detector.find(text, &mut spans);
        found.extend(spans.drain(..).map(|span| Found { span, detector: i }));
    }
    for f in &found {
        if let Some(count) = counts.get_mut(f.detector) {
            *count = count.saturating_add(1);
        }
    }
    crate::sort::sort_by(&mut found, |a, b| {
        (a.span.start, b.span.end) < (b.span.start, a.span.end)
    });
    let mut merged: Vec<Found> = Vec::with_capacity(found.len());
    for f in found {
        match merged.last_mut() {
            Some(last) if f.span.start < last.span.end => {
                last.span.end = last.span.end.max(f.span.end)
            }
            _ => merged.push(f),
        }
    }
    merged
}

fn byte(text: &str, i: usize) -> Option<u8> {
    text.as_bytes().get(i).copied()
}

/// Whether a token may start at `i`: the byte before is not part of a word.
fn starts_word(text: &str, i: usize) -> bool {
    i == 0
        || !byte(text, i - 1)
            .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'+')
}

/// How many bytes from `from` satisfy `class`.
fn run(text: &str, from: usize, class: impl Fn(u8) -> bool) -> usize {
    text.as_bytes()
        .get(from..)
        .unwrap_or_default()
        .iter()
        .take_while(|b| class(**b))
        .count()
}

/// `-----BEGIN … PRIVATE KEY…-----` through its `-----END …-----` line (or the text's end).
fn private_key(text: &str, at: usize) -> Option<Range<usize>> {
    let from = at + "-----BEGIN ".len();
    let label_end = text.get(from..)?.find("-----")? + from;
    let label = text.get(from..label_end)?;
    if label.len() > 64 || !label.contains("PRIVATE KEY") {
        return None;
    }
    let end = text
        .get(label_end + 5..)
        .and_then(|t| t.find("-----END "))
        .map(|i| i + label_end + 5 + 9)
        .and_then(|e| text.get(e..)?.find("-----").map(|i| i + e + 5))
        .unwrap_or(text.len());
    Some(at..end)
}

fn base64url(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

/// `eyJ…` header, `.`, payload, `.`, signature (possibly empty for `alg: none`).
fn jwt(text: &str, at: usize) -> Option<Range<usize>> {
    let dot = at + run(text, at, base64url);
    let payload = run(text, dot + 1, base64url);
    let dot2 = dot + 1 + payload;
    let shape = dot - at >= 10
        && payload >= 10
        && byte(text, dot) == Some(b'.')
        && byte(text, dot2) == Some(b'.');
    (shape && starts_word(text, at)).then(|| at..dot2 + 1 + run(text, dot2 + 1, base64url))
}

/// The credential after `Bearer ` (token68, at least 16 characters).
fn bearer_token(text: &str, at: usize, after: usize) -> Option<Range<usize>> {
    let token68 =
        |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/');
    let start = after + run(text, after, |b| b == b' ');
    let n = run(text, start, token68);
    let end = start + n + run(text, start + n, |b| b == b'=');
    (starts_word(text, at) && n >= 16).then_some(start..end)
}

/// `local@domain.tld`, the top-level domain alphabetic and at least two letters long.
fn emails(text: &str, out: &mut Vec<Range<usize>>) {
    let bytes = text.as_bytes();
    let local = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'%' | b'+' | b'-');
    let mut next = 0;
    for (at, _) in text.match_indices('@') {
        if at < next {
            continue;
        }
        let left = bytes
            .get(..at)
            .unwrap_or_default()
            .iter()
            .rev()
            .take(64)
            .take_while(|b| local(**b))
            .count();
        let mut start = at - left;
        while byte(text, start) == Some(b'.') && start < at {
            start += 1;
        }
        let domain_len = run(text, at + 1, |b| {
            b.is_ascii_alphanumeric() || b == b'.' || b == b'-'
        })
        .min(253);
        let domain = text
            .get(at + 1..at + 1 + domain_len)
            .unwrap_or_default()
            .trim_end_matches(['.', '-']);
        let labels_ok = domain
            .split('.')
            .all(|l| !l.is_empty() && !l.starts_with('-'));
        let tld_ok = domain
            .rsplit_once('.')
            .is_some_and(|(_, tld)| tld.len() >= 2 && tld.bytes().all(|b| b.is_ascii_alphabetic()));
        if start < at && labels_ok && tld_ok {
            next = at + 1 + domain.len();
            out.push(start..next);
        }
    }
}

/// The digits of a [`digit_run`], without allocating (a run stops after 41).
struct Digits {
    values: [u8; 41],
    len: usize,
}

impl Digits {
    fn as_slice(&self) -> &[u8] {
        self.values.get(..self.len).unwrap_or_default()
    }
}

/// Digits with single separators (`sep`) between them, from `at`: the end and the digits.
fn digit_run(text: &str, at: usize, sep: impl Fn(u8) -> bool, max_seps: usize) -> (usize, Digits) {
    let mut digits = Digits {
        values: [0; 41],
        len: 0,
    };
    let mut i = at;
    let mut end = at;
    while let Some(b) = byte(text, i) {
        if b.is_ascii_digit() {
            let Some(slot) = digits.values.get_mut(digits.len) else {
                break;
            };
            *slot = b - b'0';
            digits.len += 1;
            i += 1;
            end = i;
        } else if sep(b) && digits.len > 0 && run(text, i, &sep) <= max_seps {
            i += run(text, i, &sep);
        } else {
            break;
        }
    }
    (end, digits)
}

/// Luhn's check digit test.
pub fn luhn(digits: &[u8]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            let d = u32::from(d);
            match i % 2 {
                1 if d * 2 > 9 => d * 2 - 9,
                1 => d * 2,
                _ => d,
            }
        })
        .sum();
    sum % 10 == 0
}

/// The card number starting at digit `i`, if any: 13 to 19 digits, in groups separated
/// by single spaces or hyphens, starting with a major network's first digit (2 to 6) and
/// passing Luhn. Also where the next candidate may start (past this digit run).
fn card_at(text: &str, i: usize) -> (Option<Range<usize>>, usize) {
    let boundary = i == 0
        || !byte(text, i - 1)
            .is_some_and(|p| p.is_ascii_alphanumeric() || matches!(p, b'+' | b'.' | b'-' | b'_'));
    if !boundary {
        return (None, i + 1);
    }
    let (end, digits) = digit_run(text, i, |s| s == b' ' || s == b'-', 1);
    let digits = digits.as_slice();
    let after_ok = !byte(text, end).is_some_and(|a| a.is_ascii_alphanumeric());
    let card = after_ok
        && (13..=19).contains(&digits.len())
        && matches!(digits.first(), Some(2..=6))
        && luhn(digits);
    (card.then_some(i..end), end.max(i + 1))
}

/// The ISO 13616 check: the first four characters moved to the end, letters as 10 to 35,
/// the number mod 97 must be 1.
pub fn iban_valid(compact: &[u8]) -> bool {
    let (head, tail) = compact.split_at(compact.len().min(4));
    let mut rem: u32 = 0;
    for &c in tail.iter().chain(head) {
        let v = match c {
            b'0'..=b'9' => u32::from(c - b'0'),
            b'A'..=b'Z' => u32::from(c - b'A') + 10,
            _ => return false,
        };
        rem = if v >= 10 {
            (rem * 100 + v) % 97
        } else {
            (rem * 10 + v) % 97
        };
    }
    rem == 1
}

/// The IBAN starting at upper-case letter `i`, if any: country code, check digits, then 11
/// to 30 letters or digits, optionally in groups separated by single spaces; the longest
/// candidate passing mod-97 is the match. Also where the next candidate may start.
fn iban_at(text: &str, i: usize) -> (Option<Range<usize>>, usize) {
    let head = byte(text, i + 1).is_some_and(|c| c.is_ascii_uppercase())
        && byte(text, i + 2).is_some_and(|c| c.is_ascii_digit())
        && byte(text, i + 3).is_some_and(|c| c.is_ascii_digit())
        && (i == 0 || !byte(text, i - 1).is_some_and(|p| p.is_ascii_alphanumeric()));
    if !head {
        return (None, i + 1);
    }
    let mut compact = [0u8; 35];
    let mut len = 0;
    let mut j = i;
    let mut best = None;
    let upper_or_digit = |c: u8| c.is_ascii_uppercase() || c.is_ascii_digit();
    while let Some(slot) = compact.get_mut(len) {
        match byte(text, j) {
            Some(c) if upper_or_digit(c) => {
                *slot = c;
                len += 1;
                j += 1;
                // A candidate ends where a group ends.
                let group_end = !byte(text, j).is_some_and(upper_or_digit);
                let after_ok = !byte(text, j).is_some_and(|a| a.is_ascii_alphanumeric());
                if group_end
                    && after_ok
                    && (15..=34).contains(&len)
                    && iban_valid(compact.get(..len).unwrap_or_default())
                {
                    best = Some(j);
                }
            }
            Some(b' ') if byte(text, j + 1).is_some_and(upper_or_digit) && j > i => j += 1,
            _ => break,
        }
    }
    match best {
        Some(end) => (Some(i..end), end),
        None => (None, i + 1),
    }
}

/// `+`, a country code not starting with 0, then 8 to 15 digits in all, separated at most
/// by pairs of spaces, hyphens, dots or parentheses (E.164-like; numbers without `+` are
/// never matched: too many other numbers look like them).
fn phones(text: &str, out: &mut Vec<Range<usize>>) {
    for (at, _) in text.match_indices('+') {
        let boundary =
            at == 0 || !byte(text, at - 1).is_some_and(|p| p.is_ascii_alphanumeric() || p == b'+');
        if !boundary || !byte(text, at + 1).is_some_and(|b| matches!(b, b'1'..=b'9')) {
            continue;
        }
        let (end, digits) = digit_run(
            text,
            at + 1,
            |s| matches!(s, b' ' | b'-' | b'.' | b'(' | b')'),
            2,
        );
        let after_ok = !byte(text, end).is_some_and(|a| a.is_ascii_alphanumeric());
        if after_ok && (8..=15).contains(&digits.len) {
            out.push(at..end);
        }
    }
}
