//! The path of a syntax error: serde_json names the line and column, the path says which
//! value was being read there, as it would for any other error.

use serde_json::Value;

/// Where the reader stands inside one container.
enum Frame {
    /// In an object: `Some(key)` while the key's value is being read.
    Object(Option<String>),
    /// In an array: the index of the item, and whether it is being read.
    Array(usize, Item),
}

/// Where an array's reader stands relative to its current item.
#[derive(PartialEq)]
enum Item {
    /// After `[` or `,`: whatever comes next (but `]`) is read as the item.
    Next,
    Reading,
    Done,
}

/// The dotted path of the value being read at byte `stop` of `text`, which is valid JSON
/// up to there (serde_json read it).
/// `stop` is past the byte at fault, unless the text ended early (`eof`).
pub(super) fn path_at(text: &[u8], stop: usize, eof: bool) -> String {
    let mut frames: Vec<Frame> = Vec::new();
    let mut pending_key: Option<String> = None;
    let mut at = 0;
    let read = if eof { stop } else { stop.saturating_sub(1) };
    let prefix = text.get(..read).unwrap_or(text);
    while let Some(&byte) = prefix.get(at) {
        if matches!(byte, b' ' | b'\n' | b'\t' | b'\r') {
            at += 1;
            continue;
        }
        let in_key_position = matches!(frames.last(), Some(Frame::Object(None)))
            && pending_key.is_none()
            && byte == b'"';
        start_item(&mut frames, byte);
        match byte {
            b'{' => frames.push(Frame::Object(None)),
            b'[' => frames.push(Frame::Array(0, Item::Next)),
            b'}' | b']' => {
                frames.pop();
                value_done(&mut frames);
            }
            b':' => {
                if let Some(Frame::Object(key)) = frames.last_mut() {
                    *key = pending_key.take();
                }
            }
            b',' => {
                if let Some(Frame::Array(index, item @ Item::Done)) = frames.last_mut() {
                    *index += 1;
                    *item = Item::Next;
                }
            }
            _ => {
                let end = token_end(prefix, at);
                // Cut off by the error: the value was still being read.
                let string = byte == b'"';
                if end > prefix.len() || (!string && end == prefix.len()) {
                    break;
                }
                if in_key_position {
                    let token = prefix.get(at..end).unwrap_or_default();
                    pending_key = match serde_json::from_slice(token) {
                        Ok(Value::String(key)) => Some(key),
                        _ => Some(String::from_utf8_lossy(token).into_owned()),
                    };
                } else {
                    value_done(&mut frames);
                }
                at = end;
                continue;
            }
        }
        at += 1;
    }
    // The byte at fault is read as an item's start, as serde_json does.
    if let (false, Some(&byte)) = (eof, text.get(read)) {
        start_item(&mut frames, byte);
    }
    let mut path = String::new();
    for frame in &frames {
        match frame {
            Frame::Object(Some(key)) if path.is_empty() => path.push_str(key),
            Frame::Object(Some(key)) => {
                path.push('.');
                path.push_str(key);
            }
            Frame::Array(index, Item::Reading) => path.push_str(&format!("[{index}]")),
            Frame::Object(None) | Frame::Array(..) => break,
        }
    }
    path
}

/// Anything but `]` (or blank) after `[` or `,` starts the next item.
fn start_item(frames: &mut [Frame], byte: u8) {
    if let Some(Frame::Array(_, item @ Item::Next)) = frames.last_mut() {
        if !matches!(byte, b']' | b' ' | b'\n' | b'\t' | b'\r') {
            *item = Item::Reading;
        }
    }
}

/// A value ended: its object member or array item is no longer being read.
fn value_done(frames: &mut [Frame]) {
    match frames.last_mut() {
        Some(Frame::Object(key)) => *key = None,
        Some(Frame::Array(_, item)) => *item = Item::Done,
        None => {}
    }
}

/// Where the string, number or literal starting at `at` ends; past the end of `text` if it
/// does not end there.
fn token_end(text: &[u8], at: usize) -> usize {
    let mut end = at;
    if text.get(at) == Some(&b'"') {
        end += 1;
        loop {
            match text.get(end) {
                None => return text.len() + 1,
                Some(b'"') => return end + 1,
                Some(b'\\') => end += 2,
                Some(_) => end += 1,
            }
        }
    }
    while !matches!(
        text.get(end),
        None | Some(b',' | b']' | b'}' | b':' | b' ' | b'\n' | b'\t' | b'\r')
    ) {
        end += 1;
    }
    end
}
