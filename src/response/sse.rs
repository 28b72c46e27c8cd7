//! Server-sent events (`text/event-stream`): one framer that cuts a stream into events as
//! chunks arrive, and the rewrite of one event's `data`. Any per-answer transform of a
//! streamed answer goes through these, never through its own framing.

/// Cuts a `text/event-stream` body into events as chunks arrive.
///
/// An event ends at a blank line; lines end with `\r\n`, `\n` or `\r`. Complete events are
/// handed out as the exact bytes received (their blank line included); an incomplete tail
/// waits for the next chunk.
#[derive(Debug, Default)]
pub struct SseFramer {
    buf: Vec<u8>,
    /// How far `buf` has been scanned for line ends.
    scanned: usize,
    /// Start of the current line within `buf`.
    line_start: usize,
}

impl SseFramer {
    /// Appends `chunk` and returns every complete event, each as its raw bytes.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<Vec<u8>> {
        self.buf.extend_from_slice(chunk);
        let mut events = Vec::new();
        let mut event_start = 0;
        let mut i = self.scanned;
        while let Some(&b) = self.buf.get(i) {
            let end = match b {
                b'\n' => i + 1,
                b'\r' => match self.buf.get(i + 1) {
                    Some(b'\n') => i + 2,
                    Some(_) => i + 1,
                    // A final `\r` may be the first half of `\r\n`: wait.
                    None => break,
                },
                _ => {
                    i += 1;
                    continue;
                }
            };
            let blank = self.line_start == i;
            self.line_start = end;
            i = end;
            if blank {
                events.push(self.buf.get(event_start..end).unwrap_or_default().to_vec());
                event_start = end;
            }
        }
        self.buf.drain(..event_start);
        self.scanned = i - event_start;
        self.line_start -= event_start;
        events
    }

    /// Bytes held for an event not complete yet.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// The incomplete tail, as received, at the end of the stream.
    pub fn finish(&mut self) -> Vec<u8> {
        self.scanned = 0;
        self.line_start = 0;
        std::mem::take(&mut self.buf)
    }
}

/// The data of one raw event (its `data` lines joined by newlines); `None` when it has none
/// (a comment or a priming event).
pub fn event_data(event: &[u8]) -> Option<Vec<u8>> {
    let mut data: Option<Vec<u8>> = None;
    for (line, _) in split_lines(event) {
        if let Some(value) = data_value(line) {
            match &mut data {
                Some(data) => {
                    data.push(b'\n');
                    data.extend_from_slice(value);
                }
                None => data = Some(value.to_vec()),
            }
        }
    }
    data
}

/// Rewrites one raw event if its data is the answer `filter` rewrites; `None` leaves it.
///
/// A rewritten event keeps every non-`data` line (fields, comments) verbatim and in place;
/// its `data` lines become the rewritten JSON, one `data: ` line per line of it, where the
/// first `data` line was, ended the way the event's first line was.
pub fn rewrite_event(
    event: &[u8],
    filter: &mut dyn FnMut(&[u8]) -> Option<Vec<u8>>,
) -> Option<Vec<u8>> {
    let lines = split_lines(event);
    let rewritten = filter(&event_data(event)?)?;
    let newline: &[u8] = lines.first().map_or(b"\n", |(_, end)| end);
    let newline = if newline.is_empty() { b"\n" } else { newline };
    let mut out = Vec::with_capacity(event.len());
    let mut placed = false;
    for (line, end) in &lines {
        if data_value(line).is_some() {
            if !placed {
                for part in rewritten.split(|&b| b == b'\n') {
                    out.extend_from_slice(b"data: ");
                    out.extend_from_slice(part);
                    out.extend_from_slice(newline);
                }
                placed = true;
            }
            continue;
        }
        out.extend_from_slice(line);
        out.extend_from_slice(end);
    }
    Some(out)
}

/// The value of a `data` field line (one leading space removed), if it is one.
fn data_value(line: &[u8]) -> Option<&[u8]> {
    if line == b"data" {
        return Some(b"");
    }
    let value = line.strip_prefix(b"data:")?;
    Some(value.strip_prefix(b" ").unwrap_or(value))
}

/// Lines with their terminators (the last may have none).
fn split_lines(text: &[u8]) -> Vec<(&[u8], &[u8])> {
    let mut lines = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while let Some(&b) = text.get(i) {
        let end = match b {
            b'\n' => i + 1,
            b'\r' if text.get(i + 1) == Some(&b'\n') => i + 2,
            b'\r' => i + 1,
            _ => {
                i += 1;
                continue;
            }
        };
        lines.push((
            text.get(start..i).unwrap_or_default(),
            text.get(i..end).unwrap_or_default(),
        ));
        start = end;
        i = end;
    }
    if start < text.len() {
        lines.push((text.get(start..).unwrap_or_default(), &b""[..]));
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    const STREAM: &[u8] = b": comment\r\nevent: message\r\nid: 7\r\ndata: {\"a\":\r\ndata: 1}\r\n\r\n\ndata: x\n\ndata:y\r\rretry: 5\n\ntail";

    fn events_of(chunks: &[&[u8]]) -> (Vec<Vec<u8>>, Vec<u8>) {
        let mut framer = SseFramer::default();
        let mut events = Vec::new();
        for chunk in chunks {
            events.extend(framer.push(chunk));
        }
        (events, framer.finish())
    }

    #[test]
    fn framer_cuts_events_at_every_split() {
        let (whole, tail) = events_of(&[STREAM]);
        let want: Vec<&[u8]> = vec![
            b": comment\r\nevent: message\r\nid: 7\r\ndata: {\"a\":\r\ndata: 1}\r\n\r\n",
            b"\n",
            b"data: x\n\n",
            b"data:y\r\r",
            b"retry: 5\n\n",
        ];
        assert_eq!(whole, want);
        assert_eq!(tail, b"tail");
        for a in 0..=STREAM.len() {
            for b in a..=STREAM.len() {
                let got = events_of(&[&STREAM[..a], &STREAM[a..b], &STREAM[b..]]);
                assert_eq!(got, (whole.clone(), tail.clone()), "split at {a},{b}");
            }
        }
        // One byte at a time.
        let bytes: Vec<&[u8]> = STREAM.chunks(1).collect();
        assert_eq!(events_of(&bytes), (whole, tail));
    }

    #[test]
    fn events_rewrite_only_their_data() {
        let event = b": c\r\nevent: message\r\ndata: {\"a\":\r\ndata: 1}\r\nid: 3\r\n\r\n";
        let mut seen = Vec::new();
        let out = rewrite_event(event, &mut |data| {
            seen = data.to_vec();
            Some(b"{\"b\":\n2}".to_vec())
        })
        .unwrap();
        assert_eq!(seen, b"{\"a\":\n1}");
        assert_eq!(
            out,
            b": c\r\nevent: message\r\ndata: {\"b\":\r\ndata: 2}\r\nid: 3\r\n\r\n"
        );
        assert_eq!(rewrite_event(b"data: x\n\n", &mut |_| None), None);
        assert_eq!(
            rewrite_event(b": only\n\n", &mut |_| Some(Vec::new())),
            None
        );
    }
}
