//! Subscriptions (SEP-2575, 2026-07-28): who may listen to which notifications and
//! resources, and which events of a `subscriptions/listen` stream reach the caller.
//!
//! `subscriptions/listen` is a method like any other for the policy (a named rule lists
//! it under `methods`). Each notification type it asks for in `params.notifications`
//! (`toolsListChanged`, `promptsListChanged`, `resourcesListChanged`,
//! `resourceSubscriptions`) is judged as the notification method it delivers
//! (`notifications/tools/list_changed`, …, `notifications/resources/updated`): notifications
//! pass by default, so a rule refuses a type by denying its method. The
//! `resourceSubscriptions` URIs are judged like `resources/read` of each URI with the
//! existing `resources` patterns: a caller may listen to a resource exactly when it may read
//! it. A type or one URI the caller may not have refuses the request (403) rather than
//! being dropped silently. On the stream, a notification whose method the caller's rules
//! deny is dropped, and `notifications/resources/updated` passes only for URIs the caller
//! may read (the rules may have changed since the listen, and a server may send more than
//! was asked); the list-changed notifications, the acknowledgement and priming events
//! (empty data) pass, since they name nothing. Any other event that is not one readable
//! JSON-RPC message is dropped. Nothing here rewrites a request or an event.

use std::borrow::Cow;

use crate::catalog::tooldef::Hints;
use crate::policy::arguments::{find, Found, Item};
use crate::policy::Applicable;
use crate::policy::Decision;
use crate::protocol::jsonrpc::{parse_body, Body, Kind, Message, Reader};
use crate::report::reject::{Code, Rejection};
use crate::response::listfilter::{visible, ListKind};

/// The method that opens a subscription stream.
pub const LISTEN: &str = "subscriptions/listen";

/// What a listen asks for (its `params.notifications` keys) and the notification method
/// each type delivers.
const TYPES: [(&str, &str); 4] = [
    ("toolsListChanged", "notifications/tools/list_changed"),
    ("promptsListChanged", "notifications/prompts/list_changed"),
    (
        "resourcesListChanged",
        "notifications/resources/list_changed",
    ),
    ("resourceSubscriptions", UPDATED),
];

/// The notification a resource subscription delivers.
const UPDATED: &str = "notifications/resources/updated";

/// Whether the caller with `rules` may receive notifications of `method`.
fn may_receive(rules: &Applicable<'_>, method: &str) -> bool {
    let message = Message {
        kind: Kind::Notification,
        id: None,
        method: Some(Cow::Borrowed(method)),
        target: None,
        meta_protocol_version: None,
        initialize_protocol_version: None,
        arguments: None,
        task_id: None,
    };
    !matches!(
        rules.decide(&message, &Hints::UNKNOWN.effective()),
        Decision::Denied { .. }
    )
}

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
    let refuse = |code, reason: String| Err(Rejection::new(code, reason).with_id(id));
    for (key, method) in TYPES {
        let path = ["params", "notifications", key].map(String::from);
        let asked = match find(&mut Reader::new(body), &path) {
            Ok(Found::One(Item::Bool(asked))) => asked,
            Ok(Found::Array(items)) => !items.is_empty(),
            Ok(Found::Ambiguous(duplicate)) => {
                return refuse(
                    Code::InvalidRequest,
                    format!("duplicate key {duplicate:?} on params.notifications.{key}"),
                )
            }
            // Absent, or a shape the server refuses (checked below for subscriptions).
            _ => false,
        };
        if asked && !may_receive(rules, method) {
            return refuse(
                Code::Forbidden,
                format!("{key} may not be listened to: {method:?} is denied by policy"),
            );
        }
    }
    let path = ["params", "notifications", "resourceSubscriptions"].map(String::from);
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
    let method = m.method.as_deref().unwrap_or_default();
    if m.kind == Kind::Notification && !may_receive(rules, method) {
        return false;
    }
    if method != UPDATED {
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
    fn rules_decide_which_notification_types_a_caller_may_listen_to() {
        let config = Config::from_json(
            br#"{"policy":{"rules":[{"name":"r",
            "allow":{"methods":["subscriptions/listen"],"resources":["file:///project/*"]},
            "deny":{"methods":["notifications/tools/*"]}}]}}"#,
        )
        .unwrap();
        let rules = config.policy.applicable(&Identity::anonymous());
        for ok in [
            r#"{"promptsListChanged":true,"resourcesListChanged":true}"#,
            r#"{"toolsListChanged":false,"resourceSubscriptions":["file:///project/a"]}"#,
        ] {
            assert_eq!(
                check_listen(&rules, listen(ok).as_bytes(), None),
                Ok(()),
                "{ok}"
            );
        }
        let r = check_listen(
            &rules,
            listen(r#"{"toolsListChanged":true}"#).as_bytes(),
            Some("1"),
        )
        .unwrap_err();
        assert_eq!(
            (r.code, r.reason.as_str(), r.id.as_deref()),
            (
                Code::Forbidden,
                "toolsListChanged may not be listened to: \"notifications/tools/list_changed\" is denied by policy",
                Some("1")
            )
        );
        let twice = listen(r#"{"toolsListChanged":false,"toolsListChanged":true}"#);
        assert_eq!(
            check_listen(&rules, twice.as_bytes(), None)
                .unwrap_err()
                .code,
            Code::InvalidRequest
        );
        // On the stream, the denied type never reaches the caller; the others pass.
        let tools = r#"{"jsonrpc":"2.0","method":"notifications/tools/list_changed"}"#;
        let prompts = r#"{"jsonrpc":"2.0","method":"notifications/prompts/list_changed"}"#;
        assert!(!keep_event(&rules, tools.as_bytes()));
        assert!(keep_event(&rules, prompts.as_bytes()));
        // Denying resource updates refuses every subscription, whatever the URI.
        let config = Config::from_json(
            br#"{"policy":{"allow":{"methods":["*"],"resources":["*"]},
            "deny":{"methods":["notifications/resources/updated"]}}}"#,
        )
        .unwrap();
        let rules = config.policy.applicable(&Identity::anonymous());
        let subscribe = listen(r#"{"resourceSubscriptions":["file:///a"]}"#);
        let r = check_listen(&rules, subscribe.as_bytes(), None).unwrap_err();
        assert_eq!(r.code, Code::Forbidden);
        assert_eq!(
            check_listen(
                &rules,
                listen(r#"{"resourceSubscriptions":[]}"#).as_bytes(),
                None
            ),
            Ok(())
        );
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
