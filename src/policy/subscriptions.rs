//! Subscriptions (SEP-2575, 2026-07-28): who may listen to which resources, and which
//! events of a `subscriptions/listen` stream reach the caller.
//!
//! `subscriptions/listen` is a method like any other for the policy (a named rule lists
//! it under `methods`). Its `params.notifications.resourceSubscriptions` URIs are judged
//! like `resources/read` of each URI with the existing `resources` patterns: a caller may
//! listen to a resource exactly when it may read it, so one URI it may not read refuses
//! the request (403) rather than being dropped silently. On the stream,
//! `notifications/resources/updated` passes only for URIs the caller may read (the rules
//! may have changed since the listen, and a server may send more than was asked); the
//! list-changed notifications, the acknowledgement and priming events (empty data) pass,
//! since they name nothing. Any other event that is not one readable JSON-RPC message is
//! dropped. Nothing here rewrites a
//! request or an event.

use crate::catalog::tooldef::Hints;
use crate::policy::arguments::{find, Found, Item};
use crate::policy::Applicable;
use crate::protocol::jsonrpc::{parse_body, Body, Reader};
use crate::report::reject::{Code, Rejection};
use crate::response::listfilter::{visible, ListKind};

/// The method that opens a subscription stream.
pub const LISTEN: &str = "subscriptions/listen";

/// Whether the caller with `rules` may read the resource `uri`.
fn may_read(rules: &Applicable<'_>, uri: &str) -> bool {
    visible(rules, ListKind::Resources, uri, &Hints::UNKNOWN.effective())
}

/// Checks the resources a `subscriptions/listen` request (`body`, the single message; `id`
/// its id as JSON text) asks to follow; call it after the policy let the method pass.
pub fn check_listen(
    rules: &Applicable<'_>,
    body: &[u8],
    id: Option<&str>,
) -> Result<(), Rejection> {
    let path = ["params", "notifications", "resourceSubscriptions"].map(String::from);
    let refuse = |code, reason: String| Err(Rejection::new(code, reason).with_id(id));
    let items = match find(&mut Reader::new(body), &path) {
        Ok(Found::Absent | Found::One(Item::Null)) => return Ok(()),
        Ok(Found::Array(items)) => items,
        Ok(Found::Ambiguous(key)) => {
            return refuse(
                Code::InvalidRequest,
                format!("duplicate key {key:?} on params.notifications.resourceSubscriptions"),
            )
        }
        Ok(Found::One(_)) | Err(_) => {
            return refuse(
                Code::InvalidParams,
                "params.notifications.resourceSubscriptions must be an array of URIs".into(),
            )
        }
    };
    for item in items {
        let Item::String(uri) = item else {
            return refuse(
                Code::InvalidParams,
                "params.notifications.resourceSubscriptions must be an array of URIs".into(),
            );
        };
        if !may_read(rules, &uri) {
            return refuse(
                Code::Forbidden,
                format!("resource {uri:?} may not be read, so it may not be listened to"),
            );
        }
    }
    Ok(())
}

/// Whether one event of a `subscriptions/listen` stream (its JSON-RPC message) goes on to
/// the caller with `rules`. An event with empty data (a priming event, SEP-1699: it carries
/// only the event id a client resumes from) names nothing and passes.
pub fn keep_event(rules: &Applicable<'_>, message: &[u8]) -> bool {
    if message.is_empty() {
        return true;
    }
    let Ok(Body::Single(m)) = parse_body(message) else {
        return false;
    };
    if m.method.as_deref() != Some("notifications/resources/updated") {
        return true;
    }
    let uri = find(&mut Reader::new(message), &["params".into(), "uri".into()]);
    matches!(uri, Ok(Found::One(Item::String(uri))) if may_read(rules, &uri))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::identity::Identity;

    const POLICY: &str = r#"{"policy":{"rules":[{"name":"r",
        "allow":{"methods":["subscriptions/listen"],"resources":["file:///project/*"]},
        "deny":{"resources":["file:///project/secret*"]}}]}}"#;

    fn with_rules(check: impl Fn(&Applicable<'_>)) {
        let config = Config::from_json(POLICY.as_bytes()).unwrap();
        check(&config.policy.applicable(&Identity::anonymous()));
    }

    fn listen(notifications: &str) -> String {
        format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"subscriptions/listen","params":{{"notifications":{notifications}}}}}"#
        )
    }

    #[test]
    fn listening_needs_read_access_to_every_uri() {
        with_rules(|rules| {
            let ok = [
                r#"{"toolsListChanged":true}"#,
                r#"{"resourceSubscriptions":[]}"#,
                r#"{"resourceSubscriptions":["file:///project/a.json","file:///project/b"]}"#,
            ];
            for n in ok {
                assert_eq!(
                    check_listen(rules, listen(n).as_bytes(), Some("1")),
                    Ok(()),
                    "{n}"
                );
            }
            let bad = [
                (
                    r#"{"resourceSubscriptions":["file:///project/a","file:///project/secret.env"]}"#,
                    Code::Forbidden,
                ),
                (
                    r#"{"resourceSubscriptions":["file:///etc/passwd"]}"#,
                    Code::Forbidden,
                ),
                (
                    r#"{"resourceSubscriptions":"file:///project/a"}"#,
                    Code::InvalidParams,
                ),
                (r#"{"resourceSubscriptions":[7]}"#, Code::InvalidParams),
                (
                    r#"{"resourceSubscriptions":[],"resourceSubscriptions":["file:///etc/passwd"]}"#,
                    Code::InvalidRequest,
                ),
            ];
            for (n, code) in bad {
                let r = check_listen(rules, listen(n).as_bytes(), Some("1")).unwrap_err();
                assert_eq!((r.code, r.id.as_deref()), (code, Some("1")), "{n}");
            }
        });
    }

    #[test]
    fn stream_events_are_filtered_per_uri() {
        with_rules(|rules| {
            let updated = |uri: &str| {
                format!(
                    r#"{{"jsonrpc":"2.0","method":"notifications/resources/updated","params":{{"_meta":{{"io.modelcontextprotocol/subscriptionId":"1"}},"uri":"{uri}"}}}}"#
                )
            };
            assert!(keep_event(rules, updated("file:///project/a").as_bytes()));
            assert!(!keep_event(
                rules,
                updated("file:///project/secret").as_bytes()
            ));
            assert!(!keep_event(rules, updated("file:///other").as_bytes()));
            for kept in [
                "",
                r#"{"jsonrpc":"2.0","method":"notifications/tools/list_changed"}"#,
                r#"{"jsonrpc":"2.0","method":"notifications/subscriptions/acknowledged","params":{"notifications":{}}}"#,
            ] {
                assert!(keep_event(rules, kept.as_bytes()), "{kept}");
            }
            for dropped in [
                r#"{"jsonrpc":"2.0","method":"notifications/resources/updated","params":{}}"#,
                r#"{"jsonrpc":"2.0","method":"notifications/resources/updated","params":{"uri":"file:///project/a","uri":"file:///project/secret"}}"#,
                "not json",
            ] {
                assert!(!keep_event(rules, dropped.as_bytes()), "{dropped}");
            }
        });
    }
}
