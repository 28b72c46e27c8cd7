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

    /// A stream as a server may write it: a priming event, comments, CRLF and LF lines, a
    /// task status notification, resource notifications (readable, unreadable), a
    /// list-changed notification, a list answer marked public with a task id-looking
    /// string in it, a multi-line `data`, and an unfinished tail.
    const REALISTIC: &[u8] = b"id: 0\r\ndata:\r\n\r\n: keep-alive\n\n\
event: message\r\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/tasks/status\",\"params\":{\"taskId\":\"t-1\",\"status\":\"working\"}}\r\n\r\n\
event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/resources/updated\",\"params\":{\"uri\":\"file:///project/a\"}}\nid: 4\n\n\
data: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/resources/updated\",\"params\":{\"uri\":\"file:///project/secret.env\"}}\n\n\
data: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/resources/list_changed\"}\r\n\r\n\
event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{\"resources\":[{\"uri\":\"file:///project/a\",\"name\":\"a\"},\ndata: {\"uri\":\"file:///project/secret.env\",\"name\":\"s\"}],\"ttlMs\":5,\"cacheScope\":\"public\"}}\n\n\
event: message\r\ndata: {\"jsonrpc\":\"2.0\",\"id\":8,\"result\":{\"task\":{\"taskId\":\"t-1\",\"status\":\"completed\"},\"note\":\"\\u00e9\"}}\r\n\r\n\
data: {\"unfinished\":";

    /// `stream` cut into `chunks`, framed, and each complete event replaced by `edit`'s
    /// answer (`None`: kept), as the filter's answer and listen streams do.
    fn through(chunks: &[&[u8]], edit: &mut dyn FnMut(&[u8]) -> Option<Vec<u8>>) -> Vec<u8> {
        let mut framer = SseFramer::default();
        let mut out = Vec::new();
        for chunk in chunks {
            for event in framer.push(chunk) {
                out.extend(edit(&event).unwrap_or(event));
            }
        }
        out.extend(framer.finish());
        out
    }

    /// `edit` gives the same stream for every single split point of [`REALISTIC`], for
    /// two split points everywhere in its first events, and one byte at a time; returns it.
    fn split_invariant(edit: &mut dyn FnMut(&[u8]) -> Option<Vec<u8>>) -> String {
        let whole = through(&[REALISTIC], edit);
        for a in 0..=REALISTIC.len() {
            let (x, y) = REALISTIC.split_at(a);
            assert_eq!(through(&[x, y], edit), whole, "split at {a}");
        }
        for a in 0..=160 {
            for b in a..=160 {
                let parts = [&REALISTIC[..a], &REALISTIC[a..b], &REALISTIC[b..]];
                assert_eq!(through(&parts, edit), whole, "split at {a},{b}");
            }
        }
        let bytes: Vec<&[u8]> = REALISTIC.chunks(1).collect();
        assert_eq!(through(&bytes, edit), whole, "one byte at a time");
        String::from_utf8(whole).unwrap()
    }

    fn config() -> crate::config::Config {
        crate::config::Config::from_json(
            br#"{"ownership":{"keys":["AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="]},
                "policy":{"rules":[{"name":"r","allow":{"methods":["*"],"resources":["file:///project/*"]},
                "deny":{"resources":["file:///project/secret*"]}}]}}"#,
        )
        .unwrap()
    }

    #[test]
    fn task_ids_are_sealed_alike_at_every_split() {
        use crate::identity::ownership::{seal_task_ids, IdKind};
        let config = config();
        let sealer = &config.ownership.as_ref().unwrap().sealer;
        let owner = crate::identity::Identity::anonymous();
        let out = split_invariant(&mut |event| {
            rewrite_event(event, &mut |data| seal_task_ids(data, sealer, &owner))
        });
        let sealed = sealer.seal(IdKind::Task, "t-1", &owner);
        assert!(!out.contains("\"t-1\""), "{out}");
        assert_eq!(out.matches(&sealed).count(), 2, "{out}");
        // Only the two events with a task id changed, byte for byte elsewhere.
        assert_eq!(
            out.replace(&sealed, "t-1"),
            String::from_utf8_lossy(REALISTIC)
        );
    }

    #[test]
    fn the_listen_filter_drops_alike_at_every_split() {
        use crate::policy::subscriptions::keep_event;
        let config = config();
        let rules = config
            .policy
            .applicable(&crate::identity::Identity::anonymous());
        let out = split_invariant(&mut |event| {
            let data = event_data(event)?;
            (!keep_event(&rules, &data)).then(Vec::new)
        });
        assert!(out.contains("file:///project/a\"}}\nid: 4\n\n"), "{out}");
        assert!(out.contains("list_changed"), "{out}");
        assert!(!out.contains("secret.env\"}}\n\n"), "{out}");
        // A list answer is no notification about a URI: it passes; so does the status event.
        assert!(out.contains("\"cacheScope\":\"public\"") && out.contains("tasks/status"));
    }

    #[test]
    fn list_answers_are_filtered_and_made_private_alike_at_every_split() {
        use crate::response::cachescope::privatize_cache_scope;
        use crate::response::listfilter::{filter_list, ListKind, ListRequest};
        let request = ListRequest {
            kind: ListKind::Resources,
            id: "7".into(),
        };
        let mut keep = |uri: &str, _: &[u8]| !uri.contains("secret");
        let out = split_invariant(&mut |event| {
            rewrite_event(event, &mut |data| {
                let filtered = filter_list(data, &request, &mut keep);
                privatize_cache_scope(filtered.as_deref().unwrap_or(data)).or(filtered)
            })
        });
        let answer = "event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{\"resources\":[{\"uri\":\"file:///project/a\",\"name\":\"a\"}],\"ttlMs\":5,\"cacheScope\":\"private\"}}\n\n";
        assert!(out.contains(answer), "{out}");
        assert_eq!(out.matches("cacheScope").count(), 1);
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
