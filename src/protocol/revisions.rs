//! Which JSON-RPC methods each MCP revision defines, and what each one's params need.
//!
//! The gateway refuses a request for its params only when the revision it declares has
//! the method: a method the revision removed (`resources/subscribe` in 2026-07-28) goes to
//! the server, whose "method not found" (404, -32601) is the answer the client expects.
//! The table also says which param `Mcp-Name` mirrors. It never decides whether a caller
//! may send a method (that is the policy's) and never refuses a method it does not list:
//! extensions and future methods pass to the policy as they are.

/// A protocol revision the gateway knows, oldest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Revision {
    R2024_11_05,
    R2025_03_26,
    R2025_06_18,
    R2025_11_25,
    R2026_07_28,
}

impl Revision {
    pub const ALL: [Revision; 5] = [
        Revision::R2024_11_05,
        Revision::R2025_03_26,
        Revision::R2025_06_18,
        Revision::R2025_11_25,
        Revision::R2026_07_28,
    ];

    /// The revision named `text`; `None` for one the gateway does not know.
    pub fn parse(text: &str) -> Option<Revision> {
        Revision::ALL.into_iter().find(|r| r.as_str() == text)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Revision::R2024_11_05 => "2024-11-05",
            Revision::R2025_03_26 => "2025-03-26",
            Revision::R2025_06_18 => "2025-06-18",
            Revision::R2025_11_25 => "2025-11-25",
            Revision::R2026_07_28 => "2026-07-28",
        }
    }
}

/// A param a method cannot do without.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Param {
    /// `params.name`: a tool or prompt.
    Name,
    /// `params.uri`: a resource.
    Uri,
    /// `params.taskId`: a task the server created.
    TaskId,
}

impl Param {
    /// The member of `params` that carries it.
    pub fn key(self) -> &'static str {
        match self {
            Param::Name => "name",
            Param::Uri => "uri",
            Param::TaskId => "taskId",
        }
    }
}

/// One method: the revisions that define it (inclusive), the param it needs, and whether
/// `Mcp-Name` mirrors that param.
struct Method {
    name: &'static str,
    since: Revision,
    until: Revision,
    requires: Option<Param>,
    mirrored: bool,
}

const fn method(
    name: &'static str,
    since: Revision,
    until: Revision,
    requires: Option<Param>,
    mirrored: bool,
) -> Method {
    Method {
        name,
        since,
        until,
        requires,
        mirrored,
    }
}

use Revision::{R2024_11_05 as FIRST, R2025_11_25 as SESSIONS_END, R2026_07_28 as LAST};

/// Client-to-server methods whose existence or params differ between revisions, or that
/// `Mcp-Name` mirrors. Tasks: 2025-11-25 (experimental) has get, result, list and cancel;
/// 2026-07-28 (SEP-2663) has get, update and cancel, routed by `Mcp-Name: <taskId>`.
#[rustfmt::skip]
const METHODS: &[Method] = &[
    method("initialize", FIRST, SESSIONS_END, None, false),
    method("notifications/initialized", FIRST, SESSIONS_END, None, false),
    method("ping", FIRST, SESSIONS_END, None, false),
    method("logging/setLevel", FIRST, SESSIONS_END, None, false),
    method("server/discover", LAST, LAST, None, false),
    method("subscriptions/listen", LAST, LAST, None, false),
    method("tools/call", FIRST, LAST, Some(Param::Name), true),
    method("prompts/get", FIRST, LAST, Some(Param::Name), true),
    method("resources/read", FIRST, LAST, Some(Param::Uri), true),
    method("resources/subscribe", FIRST, SESSIONS_END, Some(Param::Uri), false),
    method("resources/unsubscribe", FIRST, SESSIONS_END, Some(Param::Uri), false),
    method("tasks/get", SESSIONS_END, LAST, Some(Param::TaskId), true),
    method("tasks/cancel", SESSIONS_END, LAST, Some(Param::TaskId), true),
    method("tasks/result", SESSIONS_END, SESSIONS_END, Some(Param::TaskId), false),
    method("tasks/list", SESSIONS_END, SESSIONS_END, None, false),
    method("tasks/update", LAST, LAST, Some(Param::TaskId), true),
];

fn find(name: &str) -> Option<&'static Method> {
    METHODS.iter().find(|m| m.name == name)
}

/// Whether `revision` defines `method`. A method the table does not list, or a revision
/// the gateway does not know (`None`), counts as defined: the gateway never guesses a
/// method away.
pub fn defines(revision: Option<Revision>, method: &str) -> bool {
    match (revision, find(method)) {
        (Some(r), Some(m)) => (m.since..=m.until).contains(&r),
        _ => true,
    }
}

/// The param `method` needs in `revision`: none when the revision does not define the
/// method, so that its server, not the gateway, answers it.
pub fn required_param(revision: Option<Revision>, method: &str) -> Option<Param> {
    let m = find(method)?;
    m.requires.filter(|_| defines(revision, method))
}

/// The param `Mcp-Name` mirrors for `method` (in every revision: older ones make the
/// header optional, but a header that is sent must agree).
pub fn mirrored_param(method: &str) -> Option<Param> {
    find(method).filter(|m| m.mirrored).and_then(|m| m.requires)
}

/// The param a method's target lives in, whatever the revision: what the parser reads.
pub fn target_param(method: &str) -> Option<Param> {
    find(method).and_then(|m| m.requires)
}

/// Whether requests of `revision` must carry `Mcp-Method` and `Mcp-Name` (stateless).
pub fn requires_routing_headers(revision: Revision) -> bool {
    revision >= Revision::R2026_07_28
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_per_revision() {
        use Revision::*;
        let old = Some(R2025_06_18);
        let tasks = Some(R2025_11_25);
        let new = Some(R2026_07_28);
        // (method, revision, defined, required param)
        let cases: &[(&str, Option<Revision>, bool, Option<Param>)] = &[
            ("resources/subscribe", old, true, Some(Param::Uri)),
            ("resources/subscribe", new, false, None),
            ("resources/unsubscribe", new, false, None),
            ("resources/subscribe", None, true, Some(Param::Uri)),
            ("ping", Some(R2024_11_05), true, None),
            ("ping", new, false, None),
            ("logging/setLevel", new, false, None),
            ("initialize", new, false, None),
            ("subscriptions/listen", tasks, false, None),
            ("subscriptions/listen", new, true, None),
            ("tools/call", Some(R2024_11_05), true, Some(Param::Name)),
            ("tools/call", new, true, Some(Param::Name)),
            ("resources/read", new, true, Some(Param::Uri)),
            ("tasks/get", old, false, None),
            ("tasks/get", tasks, true, Some(Param::TaskId)),
            ("tasks/get", new, true, Some(Param::TaskId)),
            ("tasks/result", tasks, true, Some(Param::TaskId)),
            ("tasks/result", new, false, None),
            ("tasks/list", new, false, None),
            ("tasks/update", tasks, false, None),
            ("tasks/update", new, true, Some(Param::TaskId)),
            ("tasks/cancel", new, true, Some(Param::TaskId)),
            ("vendor/extension", new, true, None),
        ];
        for (method, revision, defined, param) in cases {
            assert_eq!(
                (
                    defines(*revision, method),
                    required_param(*revision, method)
                ),
                (*defined, *param),
                "{method} in {revision:?}"
            );
        }
    }

    #[test]
    fn mirrored_params() {
        assert_eq!(mirrored_param("tools/call"), Some(Param::Name));
        assert_eq!(mirrored_param("resources/read"), Some(Param::Uri));
        assert_eq!(mirrored_param("resources/subscribe"), None);
        assert_eq!(mirrored_param("tasks/update"), Some(Param::TaskId));
        assert_eq!(mirrored_param("tasks/result"), None);
        assert_eq!(mirrored_param("tools/list"), None);
    }

    #[test]
    fn revisions_round_trip() {
        for r in Revision::ALL {
            assert_eq!(Revision::parse(r.as_str()), Some(r));
        }
        assert_eq!(Revision::parse("DRAFT-2026-v1"), None);
        assert!(requires_routing_headers(Revision::R2026_07_28));
        assert!(!requires_routing_headers(Revision::R2025_11_25));
    }
}
