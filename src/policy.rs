//! The allow/deny decision for each JSON-RPC message. Deny wins over allow; whatever the
//! allow lists do not match is refused.

use crate::glob::PatternSet;
use crate::jsonrpc::{Kind, Message, Target};

/// Patterns for each thing a message can name.
#[derive(Debug, Clone, Default)]
pub struct Lists {
    pub methods: PatternSet,
    pub tools: PatternSet,
    pub prompts: PatternSet,
    pub resources: PatternSet,
}

/// A global policy: the same for every caller.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    pub allow: Lists,
    pub deny: Lists,
}

impl Policy {
    /// `Ok` when `message` may go upstream, else the reason it may not.
    pub fn check(&self, message: &Message<'_>) -> Result<(), String> {
        // A client's reply to a server request names nothing the policy governs.
        if message.kind == Kind::Response {
            return Ok(());
        }
        let method = message.method.as_deref().unwrap_or_default();
        check_one("method", method, &self.allow.methods, &self.deny.methods)?;
        match &message.target {
            Some(Target::Tool(name)) => {
                check_one("tool", name, &self.allow.tools, &self.deny.tools)
            }
            Some(Target::Prompt(name)) => {
                check_one("prompt", name, &self.allow.prompts, &self.deny.prompts)
            }
            Some(Target::Resource(uri)) => {
                check_one("resource", uri, &self.allow.resources, &self.deny.resources)
            }
            None => Ok(()),
        }
    }
}

fn check_one(what: &str, value: &str, allow: &PatternSet, deny: &PatternSet) -> Result<(), String> {
    if deny.is_match(value) {
        Err(format!("{what} {value:?} is denied by policy"))
    } else if !allow.is_match(value) {
        Err(format!("{what} {value:?} is not allowed by policy"))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use crate::jsonrpc::parse_body;

    const CONFIG: &str = r#"{"policy":{
        "allow":{"methods":["initialize","notifications/*","tools/*","prompts/get","resources/read"],
                 "tools":["echo","db_*"],"prompts":["greet"],"resources":["demo://*"]},
        "deny":{"tools":["db_drop"],"resources":["demo://secret/*"]}}}"#;

    #[test]
    fn decision_table() {
        let policy = Config::from_json(CONFIG.as_bytes()).unwrap().policy;
        let call = |name: &str| {
            format!(
                r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"{name}"}}}}"#
            )
        };
        let cases: Vec<(String, Option<&str>)> = vec![
            (call("echo"), None),
            (call("db_query"), None),
            (call("db_drop"), Some(r#"tool "db_drop" is denied by policy"#)),
            (call("rm"), Some(r#"tool "rm" is not allowed by policy"#)),
            (call("\\u0064b_drop"), Some(r#"tool "db_drop" is denied by policy"#)),
            (call("Echo"), Some(r#"tool "Echo" is not allowed by policy"#)),
            (call("echo\\u0000"), Some("tool \"echo\\0\" is not allowed by policy")),
            (r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#.into(), None),
            (r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#.into(), Some(r#"method "ping" is not allowed by policy"#)),
            (r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#.into(), None),
            (r#"{"jsonrpc":"2.0","id":7,"result":{}}"#.into(), None),
            (r#"{"jsonrpc":"2.0","id":1,"method":"prompts/get","params":{"name":"greet"}}"#.into(), None),
            (r#"{"jsonrpc":"2.0","id":1,"method":"prompts/get","params":{"name":"leak"}}"#.into(), Some(r#"prompt "leak" is not allowed by policy"#)),
            (r#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"demo://readme"}}"#.into(), None),
            (r#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"demo://secret/k"}}"#.into(), Some(r#"resource "demo://secret/k" is denied by policy"#)),
        ];
        for (body, want) in cases {
            let parsed = parse_body(body.as_bytes()).unwrap();
            let got = policy.check(&parsed.messages()[0]);
            assert_eq!(got.err().as_deref(), want, "{body}");
        }
    }
}
