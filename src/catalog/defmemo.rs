//! A worker's memory of the tool definitions it has read: the same element of a
//! `tools/list` answer comes back on every list, and reading it (canonical form, SHA-256)
//! costs more than the rest of filtering the list. Found by the element's hash and checked
//! against its exact bytes, so a remembered definition is exactly what reading those bytes
//! again would give. Each also keeps what learning it last concluded for an upstream, so
//! an unchanged element of an unchanged upstream is not learned again on every list.

use std::cell::RefCell;
use std::hash::BuildHasher;
use std::rc::Rc;

use super::tooldef::{Hints, ToolDef};
use crate::fasthash::{same_bytes, FastHash, FastMap};

/// Elements longer than this are read every time (a huge definition is rare, and keeping
/// it would crowd out the usual ones).
const MAX_ELEMENT_BYTES: usize = 16 * 1024;

/// Remembered elements, bounded by count and by bytes; at a bound it starts over empty,
/// which keeps the memory predictable and costs one more read per element.
pub struct DefMemo {
    /// By the element's hash: the element and its definition. Elements that share a hash
    /// share the slot (the last one read keeps it).
    defs: FastMap<u64, (Box<[u8]>, Rc<Remembered>)>,
    hash: FastHash,
    bytes: usize,
    max_entries: usize,
    max_bytes: usize,
}

impl DefMemo {
    pub fn new(max_entries: usize, max_bytes: usize) -> DefMemo {
        DefMemo {
            defs: FastMap::default(),
            hash: FastHash::default(),
            bytes: 0,
            max_entries,
            max_bytes,
        }
    }

    /// The definition `element` holds (`None`: unreadable, see [`ToolDef::parse`]).
    pub fn read(&mut self, element: &[u8]) -> Option<Rc<Remembered>> {
        let key = self.hash.hash_one(element);
        if let Some((bytes, def)) = self.defs.get(&key) {
            if same_bytes(bytes, element) {
                return Some(def.clone());
            }
        }
        let def = Rc::new(Remembered {
            def: ToolDef::parse(element).ok()?,
            listed: RefCell::new(None),
        });
        if element.len() <= MAX_ELEMENT_BYTES {
            let size = size(element, &def);
            if self.defs.len() >= self.max_entries || self.bytes + size > self.max_bytes {
                self.defs.clear();
                self.bytes = 0;
            }
            self.bytes += size;
            if let Some((bytes, old)) = self.defs.insert(key, (element.into(), def.clone())) {
                self.bytes -= self::size(&bytes, &old);
            }
        }
        Some(def)
    }

    /// Entries and bytes held.
    #[cfg(test)]
    fn usage(&self) -> (usize, usize) {
        (self.defs.len(), self.bytes)
    }
}

/// What an entry counts against the memo's byte bound.
fn size(element: &[u8], remembered: &Remembered) -> usize {
    let def = &remembered.def;
    element.len() + def.input_schema.as_ref().map_or(0, String::len)
}

/// A remembered definition, with what learning it last concluded.
#[derive(Debug)]
pub struct Remembered {
    pub def: ToolDef,
    listed: RefCell<Option<Listed>>,
}

/// What learning an element from `upstream`'s list concluded (`visible`: its hints, or
/// `None` when every caller is kept from it), true while the upstream's tools are at
/// `version`: every write of one of its records bumps that version.
#[derive(Debug)]
struct Listed {
    upstream: String,
    version: Option<u32>,
    visible: Option<Hints>,
}

impl Remembered {
    /// What learning this element from `upstream` at `version` concluded, if it was.
    pub fn listed(&self, upstream: &str, version: Option<u32>) -> Option<Option<Hints>> {
        let listed = self.listed.borrow();
        let listed = listed.as_ref()?;
        (listed.upstream == upstream && listed.version == version).then_some(listed.visible)
    }

    /// Keeps what learning this element from `upstream` at `version` concluded.
    pub fn remember_listed(&self, upstream: &str, version: Option<u32>, visible: Option<Hints>) {
        *self.listed.borrow_mut() = Some(Listed {
            upstream: upstream.to_owned(),
            version,
            visible,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ECHO: &[u8] = br#"{"name":"echo","inputSchema":{"type":"object"}}"#;
    const ADD: &[u8] = br#"{"name":"add","annotations":{"readOnlyHint":true}}"#;

    #[test]
    fn a_remembered_element_reads_as_parsing_it_again() {
        let mut memo = DefMemo::new(8, 1 << 20);
        for element in [ECHO, ADD, ECHO, ADD] {
            assert_eq!(
                memo.read(element).unwrap().def,
                ToolDef::parse(element).unwrap()
            );
        }
        assert_eq!(memo.usage().0, 2);
    }

    #[test]
    fn a_changed_byte_is_another_element() {
        let mut memo = DefMemo::new(8, 1 << 20);
        let a = memo.read(ECHO).unwrap();
        let other = br#"{"name":"echo","inputSchema":{"type":"string"}}"#;
        let b = memo.read(other).unwrap();
        assert_ne!(a.def.sha256, b.def.sha256);
    }

    #[test]
    fn a_listing_is_remembered_per_upstream_and_version() {
        let mut memo = DefMemo::new(8, 1 << 20);
        let echo = memo.read(ECHO).unwrap();
        assert_eq!(echo.listed("mcp", Some(3)), None);
        echo.remember_listed("mcp", Some(3), Some(Hints::UNKNOWN));
        let again = memo.read(ECHO).unwrap();
        assert_eq!(again.listed("mcp", Some(3)), Some(Some(Hints::UNKNOWN)));
        // Another upstream, or a record written since: learned again.
        assert_eq!(again.listed("other", Some(3)), None);
        assert_eq!(again.listed("mcp", Some(4)), None);
        assert_eq!(again.listed("mcp", None), None);
        again.remember_listed("mcp", Some(4), None);
        assert_eq!(echo.listed("mcp", Some(4)), Some(None));
    }

    #[test]
    fn unreadable_elements_are_not_remembered() {
        let mut memo = DefMemo::new(8, 1 << 20);
        assert!(memo.read(br#"{"name":"x","name":"y"}"#).is_none());
        assert_eq!(memo.usage(), (0, 0));
    }

    #[test]
    fn it_starts_over_at_its_bounds() {
        let mut memo = DefMemo::new(1, 1 << 20);
        memo.read(ECHO);
        memo.read(ADD);
        assert_eq!(memo.usage().0, 1);
        let mut memo = DefMemo::new(8, ECHO.len() + 20);
        memo.read(ECHO);
        memo.read(ADD);
        assert!(memo.usage().1 <= ECHO.len() + 20);
        let huge = format!(
            r#"{{"name":"big","description":"{}"}}"#,
            "x".repeat(MAX_ELEMENT_BYTES)
        );
        assert!(memo.read(huge.as_bytes()).is_some());
        assert!(memo.usage().1 <= ECHO.len() + 20);
    }
}
