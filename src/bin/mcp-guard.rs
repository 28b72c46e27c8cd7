//! `mcp-guard`: the filter's pure core as an offline command-line tool, for CI.
//!
//! `check` validates a configuration exactly as the filter does when Envoy loads it;
//! `explain` runs one HTTP request through the same gate the filter runs (head,
//! authentication, body) and says what would happen to it, and why; `pin` prints the pins
//! of a server's current tools, hashed as the filter hashes them; `scan` runs the result
//! detectors of `contracts.results` over a saved answer.
//!
//! Native only: the crate's wasm32 build (the filter) compiles this binary to a stub, so
//! it never produces a second, filter-like `.wasm` module.

#[cfg(not(target_arch = "wasm32"))]
fn main() -> std::process::ExitCode {
    cli::main()
}

#[cfg(target_arch = "wasm32")]
fn main() {
    eprintln!("mcp-guard: the command-line tool is native only; build it for the host");
    std::process::exit(1);
}

#[cfg(not(target_arch = "wasm32"))]
mod cli {
    /// `scan` and the contract lines of `explain` (src/bin/cli/contracts.rs).
    mod contracts;

    use std::io::{Read, Write};
    use std::process::ExitCode;
    use std::time::{SystemTime, UNIX_EPOCH};

    use mcp_guard::catalog::tooldef::{hex, ToolDef};
    use mcp_guard::catalog::toolstate::{NoTools, Record, ToolLookup, ToolStatus, ToolsConfig};
    use mcp_guard::config::Config;
    use mcp_guard::gate::{Gate, HeadVerdict, HeaderMap, RequestHead};
    use mcp_guard::identity::challenge::{AuthStep, Peer};
    use mcp_guard::identity::{Identity, KeyLookup, KeySet, TokenCache};
    use mcp_guard::policy::glob::Glob;
    use mcp_guard::policy::Decision;
    use mcp_guard::protocol::jsonrpc::{parse_body, Kind, Message, Target};
    use mcp_guard::report::reject::{Code, Rejection};

    const USAGE: &str = "\
usage: mcp-guard check --config FILE [--strict] [--json]
       mcp-guard explain --config FILE --request FILE [options]
       mcp-guard schema
       mcp-guard read FILE...
       mcp-guard pin [--answer FILE] [--upstream CLUSTER]
       mcp-guard scan --config FILE --answer FILE --tool NAME [--upstream CLUSTER]

  check     validate a filter configuration (the JSON of Envoy's `configuration` value)
            and report what weakens it: one `warning: PATH: problem; fix: …` line each,
            then `ok` (none) or `valid, N warnings`; an invalid one prints the filter's
            error on stderr (exit 1). --strict: exit 2 when there are warnings. --json:
            one JSON object {\"findings\": [{check, path, problem, fix}…]} instead
  explain   run one POST request through the filter's gate and report the identity, the
            decision for each JSON-RPC message and, if refused, the exact response
            (exit 0: passes, 2: refused)
  schema    print the JSON Schema of the configuration (docs/mcp-guard.schema.json)
  read      how the filter reads each body FILE: one JSON line per file with `accepted`
            and, per message, its method, id (as JSON text) and tool/prompt name or URI,
            or the refusal's code and reason (for differential tests against other parsers)
  pin       read a tools/list answer (the JSON-RPC response or its result, default stdin)
            and print the `tools.pins` configuration that pins every tool in it, under
            the upstream CLUSTER (default \"*\": every upstream)
  scan      run the contracts.results detectors of the rule for tool NAME (and upstream
            CLUSTER, default none) over a saved tools/call answer, JSON or SSE; print the
            counts per detector and the answer as the client would get it (exit 2: blocked)

explain options:
  --request FILE      the request body (JSON-RPC)
  --path PATH         request path (default: the first literal endpoint, else /mcp)
  --header 'K: V'     add a request header (repeatable)
  --token T           add `authorization: Bearer T`
  --api-key K         add K in the configured API key header (default x-api-key)
  --jwks FILE         JWKS document used for every provider with remote_jwks
  --now SECONDS       the time, in Unix seconds (default: now)
  --tools FILE        a tools/list answer: judge a call as a filter that has seen it
                      (the tool's annotations, its pin, its inputSchema under
                      contracts.arguments); without it tools are unknown
  --upstream CLUSTER  the cluster those tools come from, for pins (default: none, so
                      only pins under \"*\" apply)

FILE may be `-` for stdin. Exit codes: 0 ok/passes, 1 usage or configuration error,
2 refused (explain) or warnings with --strict (check).";

    /// Exit code of a request the filter would refuse, and of `check --strict` warnings.
    const REFUSED: u8 = 2;

    pub fn main() -> ExitCode {
        let args: Vec<String> = std::env::args().skip(1).collect();
        match run(&args) {
            Ok(code) => code,
            Err(Error::Help) => {
                println!("{USAGE}");
                ExitCode::SUCCESS
            }
            Err(Error::Usage(message)) => {
                eprintln!("mcp-guard: {message}\n\n{USAGE}");
                ExitCode::FAILURE
            }
            Err(Error::Failed(message)) => {
                eprintln!("mcp-guard: {message}");
                ExitCode::FAILURE
            }
        }
    }

    enum Error {
        /// `-h` or `--help`: the usage text on stdout.
        Help,
        /// The command line is wrong: the message, then the usage text.
        Usage(String),
        /// A file, configuration or input problem.
        Failed(String),
    }

    fn usage(message: impl Into<String>) -> Error {
        Error::Usage(message.into())
    }

    fn run(args: &[String]) -> Result<ExitCode, Error> {
        let Some((command, rest)) = args.split_first() else {
            return Err(usage("missing command"));
        };
        match command.as_str() {
            "-h" | "--help" | "help" => Err(Error::Help),
            "check" => check(rest),
            "explain" => explain(&Options::parse(
                rest,
                &[
                    "--config",
                    "--request",
                    "--path",
                    "--header",
                    "--token",
                    "--api-key",
                    "--jwks",
                    "--now",
                    "--tools",
                    "--upstream",
                ],
            )?),
            "schema" => {
                if let Some(arg) = rest.first() {
                    return Err(usage(format!("unexpected argument {arg:?}")));
                }
                println!("{}", mcp_guard::config::json_schema());
                Ok(ExitCode::SUCCESS)
            }
            "pin" => pin(&Options::parse(rest, &["--answer", "--upstream"])?),
            "scan" => contracts::scan(&Options::parse(
                rest,
                &["--config", "--answer", "--tool", "--upstream"],
            )?),
            "read" if rest.is_empty() => Err(usage("read needs at least one FILE")),
            "read" => read(rest),
            other => Err(usage(format!("unknown command {other:?}"))),
        }
    }

    /// `check`: validate, then the posture report (see `mcp_guard::posture`).
    fn check(args: &[String]) -> Result<ExitCode, Error> {
        let flag = |name: &str| args.iter().any(|a| a == name);
        let (strict, json) = (flag("--strict"), flag("--json"));
        let rest: Vec<String> = args
            .iter()
            .filter(|a| !matches!(a.as_str(), "--strict" | "--json"))
            .cloned()
            .collect();
        let options = Options::parse(&rest, &["--config"])?;
        options.require_config()?;
        let (_, config) = load_config(&options)?;
        let findings = mcp_guard::posture::report(&config);
        if json {
            let report = serde_json::json!({ "findings": findings });
            println!("{report}");
        } else {
            for finding in &findings {
                println!("{finding}");
            }
            match findings.len() {
                0 => println!("ok"),
                1 => println!("valid, 1 warning"),
                n => println!("valid, {n} warnings"),
            }
        }
        Ok(if strict && !findings.is_empty() {
            ExitCode::from(REFUSED)
        } else {
            ExitCode::SUCCESS
        })
    }

    /// The command-line options; which ones a command takes is checked by [`Options::parse`].
    #[derive(Default)]
    struct Options {
        config: Option<String>,
        request: Option<String>,
        path: Option<String>,
        headers: Vec<String>,
        token: Option<String>,
        api_key: Option<String>,
        jwks: Option<String>,
        now: Option<u64>,
        answer: Option<String>,
        tools: Option<String>,
        upstream: Option<String>,
        tool: Option<String>,
    }

    impl Options {
        /// Parses `--name VALUE` (or `--name=VALUE`) pairs, accepting only `allowed` names.
        fn parse(args: &[String], allowed: &[&str]) -> Result<Options, Error> {
            let mut options = Options::default();
            let mut args = args.iter();
            while let Some(arg) = args.next() {
                if arg == "-h" || arg == "--help" {
                    return Err(Error::Help);
                }
                let (name, inline) = match arg.split_once('=') {
                    Some((name, value)) if name.starts_with("--") => (name, Some(value.to_owned())),
                    _ => (arg.as_str(), None),
                };
                if !allowed.contains(&name) {
                    return Err(usage(format!("unexpected argument {arg:?}")));
                }
                let value = match inline.or_else(|| args.next().cloned()) {
                    Some(value) => value,
                    None => return Err(usage(format!("{name} needs a value"))),
                };
                let once = |slot: &mut Option<String>| match slot.replace(value.clone()) {
                    Some(_) => Err(usage(format!("{name} given twice"))),
                    None => Ok(()),
                };
                match name {
                    "--config" => once(&mut options.config)?,
                    "--request" => once(&mut options.request)?,
                    "--path" => once(&mut options.path)?,
                    "--token" => once(&mut options.token)?,
                    "--api-key" => once(&mut options.api_key)?,
                    "--jwks" => once(&mut options.jwks)?,
                    "--answer" => once(&mut options.answer)?,
                    "--tools" => once(&mut options.tools)?,
                    "--upstream" => once(&mut options.upstream)?,
                    "--tool" => once(&mut options.tool)?,
                    "--header" => options.headers.push(value),
                    _ => {
                        let now = value
                            .parse()
                            .map_err(|_| usage(format!("--now {value:?} is not Unix seconds")))?;
                        options.now = Some(now);
                    }
                }
            }
            Ok(options)
        }

        fn require_config(&self) -> Result<(), Error> {
            match self.config {
                Some(_) => Ok(()),
                None => Err(usage("--config is required")),
            }
        }
    }

    /// The contents of `path`, or of stdin for `-`.
    fn read_input(path: &str) -> Result<Vec<u8>, Error> {
        let mut bytes = Vec::new();
        let read = if path == "-" {
            std::io::stdin().read_to_end(&mut bytes).map(|_| ())
        } else {
            std::fs::read(path).map(|b| bytes = b)
        };
        read.map_err(|e| Error::Failed(format!("cannot read {path}: {e}")))?;
        Ok(bytes)
    }

    /// The configuration's text and its compiled form; the error is the line the filter logs.
    fn load_config(options: &Options) -> Result<(Vec<u8>, Config), Error> {
        let path = options.config.as_deref().unwrap_or("-");
        let text = read_input(path)?;
        let config = Config::from_json(&text)
            .map_err(|e| Error::Failed(format!("invalid configuration: {e}")))?;
        Ok((text, config))
    }

    /// Keys offline: inline keys live in the providers; `--jwks` stands in for every remote one.
    struct OfflineKeys<'c> {
        config: &'c Config,
        jwks: Option<KeySet>,
    }

    impl KeyLookup for OfflineKeys<'_> {
        fn keys(&self, provider: usize) -> Option<&KeySet> {
            let remote = self
                .config
                .provider(provider)
                .is_some_and(|p| p.remote_jwks.is_some());
            self.jwks.as_ref().filter(|_| remote)
        }
    }

    fn explain(options: &Options) -> Result<ExitCode, Error> {
        options.require_config()?;
        let Some(request) = options.request.as_deref() else {
            return Err(usage("--request is required"));
        };
        let stdin = [
            options.config.as_deref(),
            Some(request),
            options.tools.as_deref(),
        ];
        if stdin.iter().filter(|path| **path == Some("-")).count() > 1 {
            return Err(usage(
                "only one of --config, --request and --tools can be stdin",
            ));
        }
        let (text, config) = load_config(options)?;
        let body = read_input(request)?;
        let jwks = match options.jwks.as_deref() {
            Some(path) => Some(
                KeySet::from_jwks(&read_input(path)?)
                    .map_err(|e| Error::Failed(format!("{path}: {e}")))?,
            ),
            None => None,
        };
        let now = options.now.unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs())
        });
        // The raw document, for the two defaults the compiled form does not expose.
        let raw: serde_json::Value = serde_json::from_slice(&text).unwrap_or_default();
        let path = options.path.clone().unwrap_or_else(|| default_path(&raw));
        let head = RequestHead::new(
            request_headers(options, &raw, &path, &body)?,
            body.is_empty(),
        );
        let gate = Gate { config: &config };
        let mut out = Report::default();
        out.line(format!("request:  POST {path} ({} bytes)", body.len()));

        let rule = match gate
            .metadata_reply(&head)
            .unwrap_or_else(|| gate.on_head(&head))
        {
            HeadVerdict::Forward => {
                out.line("verdict:  forwarded untouched (not an MCP endpoint: pass_paths or other_paths: allow)");
                return out.finish(ExitCode::SUCCESS);
            }
            HeadVerdict::Respond(reply) => {
                out.line(format!("verdict:  answered locally, HTTP {}", reply.status));
                out.line(reply.body);
                return out.finish(ExitCode::SUCCESS);
            }
            HeadVerdict::Reject(rejection) => return out.refused(&rejection),
            HeadVerdict::Endpoint(rule) => rule,
        };
        let keys = OfflineKeys {
            config: &config,
            jwks,
        };
        let step = gate.authenticate(
            &head,
            &Peer::default(),
            &keys,
            &mut TokenCache::default(),
            now,
        );
        let identity = match step {
            AuthStep::Authenticated(identity) => identity,
            AuthStep::Reject(rejection) => return out.refused(&rejection),
            AuthStep::NeedKeys {
                provider,
                unknown_kid,
            } => {
                if keys.jwks.is_none() {
                    let name = config.provider(provider).map_or("?", |p| p.name.as_str());
                    return Err(Error::Failed(format!(
                        "JWT provider {name:?} uses remote_jwks, whose keys are not available \
                         offline: pass its JWKS document with --jwks FILE"
                    )));
                }
                // The filter refetches once; with the given JWKS as the current keys the kid
                // stays unknown, and it refuses.
                return out.refused(&gate.keys_unavailable(provider, unknown_kid));
            }
        };
        out.line(format!("identity: {}", describe(&identity)));

        let Some(rule) = rule else {
            out.line("verdict:  pass (no body to inspect)");
            return out.finish(ExitCode::SUCCESS);
        };
        if body.len() as u64 > config.max_body_bytes {
            return out.refused(&gate.too_large());
        }
        let definitions = options.tools.as_deref().map(listed_tools).transpose()?;
        let listed = definitions.as_ref().map(|defs| ListedTools {
            config: &config.tools,
            upstream: options.upstream.clone().unwrap_or_default(),
            records: defs
                .iter()
                .map(|(def, _)| (def.name.clone(), Record::first_seen(def.hints, def.sha256)))
                .collect(),
        });
        let tools: &dyn ToolLookup = match &listed {
            Some(listed) => listed,
            None => &NoTools,
        };
        let verdict = gate.approve(rule, &head, &identity, &body, tools);
        // Each message's decision, by the same rules the gate applies (a policy refusal stops
        // the gate at the first denied message; the report shows every one).
        let policy_stage = match &verdict {
            Ok(_) => true,
            Err(rejection) => rejection.code == Code::Forbidden,
        };
        if let (true, Ok(parsed)) = (policy_stage, parse_body(&body)) {
            let rules = config.policy.applicable(&identity);
            let batch = parsed.messages().len() > 1;
            for (i, message) in parsed.messages().iter().enumerate() {
                let label = if batch {
                    format!("batch[{i}]")
                } else {
                    "message".to_owned()
                };
                let line = decision_line(message, &gate.decide(&rules, message, &body, tools));
                out.line(format!("{label:<9} {line}"));
            }
        }
        match verdict {
            Ok(approved) => {
                // What the request would take from each rate-limit bucket (offline, the
                // buckets themselves are unknown).
                for charge in &approved.charges {
                    if let Some(limit) = config.rate_limits.limits.get(charge.limit) {
                        out.line(format!(
                            "limit:    {:?} key {:?} costs {}",
                            limit.name, charge.key, charge.cost
                        ));
                    }
                }
                if let Some(rejection) =
                    contracts::explain(&config, &body, options, definitions.as_deref(), &mut out)
                {
                    return out.refused(&rejection);
                }
                out.line("verdict:  pass");
                out.finish(ExitCode::SUCCESS)
            }
            Err(rejection) => out.refused(&rejection),
        }
    }

    /// The tools of a `tools/list` answer (the JSON-RPC response or its result) in `path`.
    fn tool_definitions(path: &str) -> Result<Vec<ToolDef>, Error> {
        Ok(listed_tools(path)?
            .into_iter()
            .map(|(def, _)| def)
            .collect())
    }

    /// Each tool of a `tools/list` answer in `path` with its element's JSON text.
    fn listed_tools(path: &str) -> Result<Vec<(ToolDef, String)>, Error> {
        let answer: serde_json::Value = serde_json::from_slice(&read_input(path)?)
            .map_err(|e| Error::Failed(format!("{path}: not JSON: {e}")))?;
        let result = answer.get("result").unwrap_or(&answer);
        let Some(tools) = result.get("tools").and_then(serde_json::Value::as_array) else {
            return Err(Error::Failed(format!(
                "{path}: not a tools/list answer (no result.tools or tools array)"
            )));
        };
        let mut defs: Vec<(ToolDef, String)> = Vec::with_capacity(tools.len());
        for (i, tool) in tools.iter().enumerate() {
            let text = tool.to_string();
            let def = ToolDef::parse(text.as_bytes())
                .map_err(|e| Error::Failed(format!("{path}: tools[{i}]: {}", e.reason)))?;
            if defs.iter().any(|(d, _)| d.name == def.name) {
                return Err(Error::Failed(format!(
                    "{path}: tool {:?} is listed twice",
                    def.name
                )));
            }
            defs.push((def, text));
        }
        Ok(defs)
    }

    /// The tools of a saved answer, as a filter that has just seen it knows them.
    struct ListedTools<'c> {
        config: &'c ToolsConfig,
        upstream: String,
        records: std::collections::HashMap<String, Record>,
    }

    impl ToolLookup for ListedTools<'_> {
        fn status(&self, tool: &str) -> ToolStatus {
            self.config
                .status(&self.upstream, tool, self.records.get(tool))
        }
    }

    /// Prints `{"tools":{"pins":{UPSTREAM:{TOOL:SHA256,...}}}}` for the tools of an answer.
    fn pin(options: &Options) -> Result<ExitCode, Error> {
        let path = options.answer.as_deref().unwrap_or("-");
        let pins: serde_json::Map<String, serde_json::Value> = tool_definitions(path)?
            .into_iter()
            .map(|def| (def.name, hex(&def.sha256).into()))
            .collect();
        let upstream = options.upstream.clone().unwrap_or_else(|| "*".into());
        let config = serde_json::json!({ "tools": { "pins": { upstream: pins } } });
        let text = serde_json::to_string_pretty(&config)
            .map_err(|e| Error::Failed(format!("cannot print the pins: {e}")))?;
        Report { text: text + "\n" }.finish(ExitCode::SUCCESS)
    }

    /// One JSON line per body file: the filter's reading of it.
    fn read(files: &[String]) -> Result<ExitCode, Error> {
        let mut text = String::new();
        for file in files {
            let body = read_input(file)?;
            let line = match parse_body(&body) {
                Ok(parsed) => {
                    let messages: Vec<serde_json::Value> = parsed
                        .messages()
                        .iter()
                        .map(|m| {
                            serde_json::json!({
                                "method": m.method.as_deref(),
                                "id": m.id,
                                "target": m.target.as_ref().map(Target::value),
                            })
                        })
                        .collect();
                    serde_json::json!({"file": file, "accepted": true, "messages": messages})
                }
                Err(e) => {
                    serde_json::json!({"file": file, "accepted": false, "reason": format!("{e:?}")})
                }
            };
            text.push_str(&line.to_string());
            text.push('\n');
        }
        Report { text }.finish(ExitCode::SUCCESS)
    }

    /// The first endpoint without wildcards, else `/mcp`.
    fn default_path(raw: &serde_json::Value) -> String {
        raw.get("endpoints")
            .and_then(serde_json::Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(serde_json::Value::as_str)
            .find_map(|p| Glob::new(p).ok()?.as_literal())
            .unwrap_or_else(|| "/mcp".to_owned())
    }

    /// The request's headers, as the host would hand them to the filter.
    fn request_headers(
        options: &Options,
        raw: &serde_json::Value,
        path: &str,
        body: &[u8],
    ) -> Result<HeaderMap, Error> {
        let mut given = Vec::new();
        for header in &options.headers {
            let Some((name, value)) = header.split_once(':') else {
                return Err(usage(format!("--header {header:?} is not 'Name: value'")));
            };
            given.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
        }
        if let Some(token) = &options.token {
            given.push(("authorization".into(), format!("Bearer {token}")));
        }
        if let Some(key) = &options.api_key {
            let header = raw
                .pointer("/auth/api_keys/header")
                .and_then(serde_json::Value::as_str)
                .unwrap_or("x-api-key");
            given.push((header.to_ascii_lowercase(), key.clone()));
        }
        let mut headers = vec![(":method".to_owned(), "POST".to_owned())];
        headers.push((":path".into(), path.to_owned()));
        for (name, value) in [
            ("content-type", "application/json".to_owned()),
            ("content-length", body.len().to_string()),
        ] {
            if !given.iter().any(|(n, _)| n == name) {
                headers.push((name.into(), value));
            }
        }
        headers.extend(given);
        Ok(HeaderMap::from_pairs(&headers))
    }

    /// `jwt:corp, subject "alice", roles ["dev"], scopes ["mcp:tools"]`.
    fn describe(identity: &Identity) -> String {
        let mut text = format!(
            "{}, subject {:?}, roles {:?}, scopes {:?}",
            identity.kind, identity.subject, identity.roles, identity.scopes
        );
        if !identity.claims.is_empty() {
            text.push_str(&format!(", claims {:?}", identity.claims));
        }
        if let Some(exp) = identity.expires_at {
            text.push_str(&format!(", expires at {exp}"));
        }
        text
    }

    /// `allow  tools/call tool "echo"  (rule "global")`, with the reason of a denial.
    fn decision_line(message: &Message<'_>, decision: &Decision<'_>) -> String {
        let what = match (message.kind, message.method.as_deref()) {
            (Kind::Response, _) | (_, None) => format!("response id {}", message.id.unwrap_or("?")),
            (_, Some(method)) => match &message.target {
                Some(Target::Tool(name)) => format!("{method} tool {name:?}"),
                Some(Target::Prompt(name)) => format!("{method} prompt {name:?}"),
                Some(Target::Resource(uri)) => format!("{method} resource {uri:?}"),
                None => method.to_owned(),
            },
        };
        let by = |rule: Option<&str>, none: &str| {
            rule.map_or(none.to_owned(), |r| format!("rule {r:?}"))
        };
        match decision {
            Decision::Allowed { rule } => {
                format!("allow        {what}  ({})", by(*rule, "default"))
            }
            Decision::Denied { rule, reason } => {
                format!("deny         {what}  ({}): {reason}", by(*rule, "no rule"))
            }
            Decision::ShadowDenied { rule, reason } => {
                format!("shadow-deny  {what}  ({}): {reason}", by(*rule, "no rule"))
            }
        }
    }

    /// The report, printed on stdout at the end.
    #[derive(Default)]
    struct Report {
        text: String,
    }

    impl Report {
        fn line(&mut self, line: impl AsRef<str>) {
            self.text.push_str(line.as_ref());
            self.text.push('\n');
        }

        /// The response the filter sends for `rejection`: status, headers, body.
        fn refused(mut self, rejection: &Rejection) -> Result<ExitCode, Error> {
            let code = rejection.code;
            self.line(format!(
                "verdict:  refused, HTTP {} {}",
                code.http_status(),
                code.message()
            ));
            for (name, value) in &rejection.headers {
                self.line(format!("{name}: {value}"));
            }
            self.line(rejection.to_json());
            self.finish(ExitCode::from(REFUSED))
        }

        fn finish(self, code: ExitCode) -> Result<ExitCode, Error> {
            std::io::stdout()
                .write_all(self.text.as_bytes())
                .map_err(|e| Error::Failed(format!("cannot write the report: {e}")))?;
            Ok(code)
        }
    }
}
