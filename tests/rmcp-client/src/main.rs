//! `rmcp-client`: a scripted MCP client on the official Rust SDK (rmcp), session-based
//! revision 2025-11-25 over Streamable HTTP.
//!
//! Usage:
//!   rmcp-client --url URL [--header K:V ...] [--timeout SECS] STEP...
//!
//! Steps (run in order, after the initialize handshake, which is always step one):
//!   list                    tools/list
//!   call:NAME[:JSON]        tools/call (JSON = arguments object, default {})
//!   progress:NAME[:JSON]    same as call (rmcp puts a progressToken on every request);
//!                           progress notifications are printed as {"step":"progress",...} lines
//!   prompts                 prompts/list
//!   prompt:NAME[:JSON]      prompts/get
//!   resources               resources/list
//!   read:URI                resources/read
//!   ping                    ping
//!   sleep:SECS              pause
//!   close                   end the session (rmcp sends DELETE with Mcp-Session-Id)
//!
//! Prints one JSON object per line on stdout. Exit code 0 even if steps failed
//! (the JSON says), 2 on usage errors.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use futures::stream::BoxStream;
use http::{HeaderName, HeaderValue};
use rmcp::{
    model::{
        CallToolRequestParams, ClientCapabilities, ClientConfig, GetPromptRequestParams,
        Implementation, ProgressNotificationParam, ProtocolVersion, ReadResourceRequestParams,
    },
    service::{NotificationContext, RunningService},
    transport::{
        streamable_http_client::{
            StreamableHttpClient, StreamableHttpClientTransportConfig, StreamableHttpError,
            StreamableHttpPostResponse, StreamableHttpResponseLimits,
        },
        StreamableHttpClientTransport,
    },
    ClientHandler, RoleClient, ServiceError, ServiceExt,
};
use serde_json::{json, Map, Value};
use sse_stream::{Error as SseError, Sse};

fn emit(v: Value) {
    println!("{v}");
}

/// What the HTTP layer saw, shared between the transport wrapper and the step runner.
#[derive(Default)]
struct HttpState {
    session_id: Option<String>,
    /// The last failed POST/DELETE: (HTTP status if known, response body if known, error text).
    last_error: Option<(Option<u16>, Option<String>, String)>,
    deleted: Option<Result<(), String>>,
}

/// Wraps rmcp's reqwest client so the runner can see session ids and HTTP failure statuses,
/// which rmcp otherwise folds into opaque transport errors.
#[derive(Clone)]
struct Recording {
    inner: reqwest::Client,
    state: Arc<Mutex<HttpState>>,
}

/// Pulls the status and body out of an rmcp HTTP error.
fn describe(e: &StreamableHttpError<reqwest::Error>) -> (Option<u16>, Option<String>, String) {
    let text = e.to_string();
    match e {
        StreamableHttpError::HttpStatus(s) => (Some(s.status), None, text),
        StreamableHttpError::SessionExpired => (Some(404), None, text),
        StreamableHttpError::AuthRequired(_) => (Some(401), None, text),
        StreamableHttpError::InsufficientScope(_) => (Some(403), None, text),
        StreamableHttpError::UnexpectedServerResponse(msg) => {
            // The reqwest client formats non-2xx answers as "HTTP 403 Forbidden: <body>".
            if let Some(rest) = msg.strip_prefix("HTTP ") {
                let status = rest.get(..3).and_then(|s| s.parse::<u16>().ok());
                let body = rest.split_once(": ").map(|(_, b)| b.to_string());
                (status, body, text)
            } else {
                (None, None, text)
            }
        }
        StreamableHttpError::Client(re) => (re.status().map(|s| s.as_u16()), None, text),
        _ => (None, None, text),
    }
}

impl StreamableHttpClient for Recording {
    type Error = reqwest::Error;

    async fn post_message(
        &self,
        uri: Arc<str>,
        message: rmcp::model::ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<StreamableHttpPostResponse, StreamableHttpError<Self::Error>> {
        self.post_message_with_response_limits(
            uri,
            message,
            session_id,
            auth_header,
            custom_headers,
            StreamableHttpResponseLimits::default(),
        )
        .await
    }

    async fn post_message_with_response_limits(
        &self,
        uri: Arc<str>,
        message: rmcp::model::ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        limits: StreamableHttpResponseLimits,
    ) -> Result<StreamableHttpPostResponse, StreamableHttpError<Self::Error>> {
        let r = self
            .inner
            .post_message_with_response_limits(
                uri,
                message,
                session_id,
                auth_header,
                custom_headers,
                limits,
            )
            .await;
        let mut st = self.state.lock().unwrap();
        match &r {
            Ok(StreamableHttpPostResponse::Json(_, Some(sid)))
            | Ok(StreamableHttpPostResponse::Sse(_, Some(sid))) => {
                st.session_id = Some(sid.clone());
            }
            Ok(_) => {}
            Err(e) => st.last_error = Some(describe(e)),
        }
        r
    }

    async fn delete_session(
        &self,
        uri: Arc<str>,
        session_id: Arc<str>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<(), StreamableHttpError<Self::Error>> {
        let r = self
            .inner
            .delete_session(uri, session_id, auth_header, custom_headers)
            .await;
        self.state.lock().unwrap().deleted = Some(match &r {
            Ok(()) => Ok(()),
            Err(e) => Err(e.to_string()),
        });
        r
    }

    async fn get_stream(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<BoxStream<'static, Result<Sse, SseError>>, StreamableHttpError<Self::Error>> {
        self.inner
            .get_stream(uri, session_id, last_event_id, auth_header, custom_headers)
            .await
    }

    async fn get_stream_with_max_sse_event_size(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        max_sse_event_size: usize,
    ) -> Result<BoxStream<'static, Result<Sse, SseError>>, StreamableHttpError<Self::Error>> {
        self.inner
            .get_stream_with_max_sse_event_size(
                uri,
                session_id,
                last_event_id,
                auth_header,
                custom_headers,
                max_sse_event_size,
            )
            .await
    }
}

/// Client handler: identifies as rmcp-client at 2025-11-25 and prints progress notifications.
struct Handler {
    config: ClientConfig,
    start: Instant,
}

impl ClientHandler for Handler {
    fn get_info(&self) -> ClientConfig {
        self.config.clone()
    }

    async fn on_progress(
        &self,
        params: ProgressNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        emit(json!({
            "step": "progress",
            "t": self.start.elapsed().as_secs_f64(),
            "progress_token": params.progress_token,
            "progress": params.progress,
            "total": params.total,
            "message": params.message,
        }));
    }
}

struct Args {
    url: String,
    headers: HashMap<HeaderName, HeaderValue>,
    timeout: Duration,
    steps: Vec<String>,
}

fn usage(msg: &str) -> ! {
    eprintln!("rmcp-client: {msg}");
    eprintln!(
        "usage: rmcp-client --url URL [--header K:V ...] [--timeout SECS] \
         [list|call:NAME[:JSON]|progress:NAME[:JSON]|prompts|prompt:NAME[:JSON]|resources|read:URI|ping|sleep:SECS|close]..."
    );
    std::process::exit(2)
}

fn parse_args() -> Args {
    let mut url = None;
    let mut headers = HashMap::new();
    let mut timeout = Duration::from_secs(30);
    let mut steps = Vec::new();
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--url" => url = Some(it.next().unwrap_or_else(|| usage("--url needs a value"))),
            "--header" | "-H" => {
                let h = it.next().unwrap_or_else(|| usage("--header needs K:V"));
                let (k, v) = h
                    .split_once(':')
                    .unwrap_or_else(|| usage("--header needs K:V"));
                let name = HeaderName::from_bytes(k.trim().as_bytes())
                    .unwrap_or_else(|_| usage("bad header name"));
                let value =
                    HeaderValue::from_str(v.trim()).unwrap_or_else(|_| usage("bad header value"));
                headers.insert(name, value);
            }
            "--timeout" => {
                let s = it.next().unwrap_or_else(|| usage("--timeout needs SECS"));
                let secs: f64 = s.parse().unwrap_or_else(|_| usage("bad --timeout"));
                timeout = Duration::from_secs_f64(secs);
            }
            "-h" | "--help" => usage("help"),
            _ if a.starts_with("--") => usage(&format!("unknown option {a}")),
            _ => steps.push(a),
        }
    }
    let url = url.unwrap_or_else(|| usage("--url is required"));
    for s in &steps {
        let kind = s.split(':').next().unwrap_or("");
        let ok = match kind {
            "list" | "prompts" | "resources" | "ping" | "close" => s == kind,
            "call" | "progress" | "prompt" | "read" | "sleep" => s.len() > kind.len() + 1,
            _ => false,
        };
        if !ok {
            usage(&format!("bad step {s:?}"));
        }
        if matches!(kind, "call" | "progress" | "prompt") {
            parse_name_args(s).unwrap_or_else(|e| usage(&e));
        }
    }
    Args {
        url,
        headers,
        timeout,
        steps,
    }
}

/// `kind:NAME[:JSON]` -> (NAME, arguments object).
fn parse_name_args(step: &str) -> Result<(String, Map<String, Value>), String> {
    let rest = step.split_once(':').map(|x| x.1).unwrap_or("");
    let (name, json_text) = match rest.split_once(':') {
        Some((n, j)) => (n, j),
        None => (rest, "{}"),
    };
    if name.is_empty() {
        return Err(format!("missing name in {step:?}"));
    }
    match serde_json::from_str::<Value>(json_text) {
        Ok(Value::Object(m)) => Ok((name.to_string(), m)),
        _ => Err(format!("arguments in {step:?} must be a JSON object")),
    }
}

fn error_json(e: &ServiceError, state: &Arc<Mutex<HttpState>>) -> Value {
    match e {
        ServiceError::McpError(d) => {
            let mut v = json!({"code": d.code.0, "message": d.message});
            if let Some(data) = &d.data {
                v["data"] = data.clone();
            }
            v
        }
        other => {
            let mut v = json!({"message": other.to_string(), "kind": kind_of(other)});
            if let ServiceError::TransportSend(_) = other {
                if let Some((status, body, text)) = state.lock().unwrap().last_error.take() {
                    v["message"] = Value::String(text);
                    if let Some(s) = status {
                        v["http_status"] = json!(s);
                    }
                    if let Some(b) = body {
                        // A JSON-RPC error body (e.g. a policy denial) lends its code/message.
                        if let Ok(parsed) = serde_json::from_str::<Value>(&b) {
                            if let Some(err) = parsed.get("error") {
                                if let Some(c) = err.get("code") {
                                    v["code"] = c.clone();
                                }
                                if let Some(m) = err.get("message") {
                                    v["message"] = m.clone();
                                }
                                if let Some(d) = err.get("data") {
                                    v["data"] = d.clone();
                                }
                            }
                            v["body"] = parsed;
                        } else {
                            v["body"] = Value::String(b);
                        }
                    }
                }
            }
            v
        }
    }
}

fn kind_of(e: &ServiceError) -> &'static str {
    match e {
        ServiceError::McpError(_) => "mcp",
        ServiceError::TransportSend(_) => "transport",
        ServiceError::TransportClosed => "transport_closed",
        ServiceError::Timeout { .. } => "timeout",
        ServiceError::Cancelled { .. } => "cancelled",
        _ => "other",
    }
}

async fn timed<T>(
    timeout: Duration,
    f: impl std::future::Future<Output = Result<T, ServiceError>>,
) -> Result<T, ServiceError> {
    match tokio::time::timeout(timeout, f).await {
        Ok(r) => r,
        Err(_) => Err(ServiceError::Timeout { timeout }),
    }
}

async fn run_step(
    client: &mut RunningService<RoleClient, Handler>,
    step: &str,
    args: &Args,
    state: &Arc<Mutex<HttpState>>,
    start: Instant,
) -> Value {
    let kind = step.split(':').next().unwrap_or("");
    let t = args.timeout;
    let fail = |e: ServiceError| json!({"ok": false, "error": error_json(&e, state)});
    let mut out = match kind {
        "list" => match timed(t, client.list_tools(None)).await {
            Ok(r) => {
                let names: Vec<&str> = r.tools.iter().map(|x| x.name.as_ref()).collect();
                json!({"ok": true, "tools": names})
            }
            Err(e) => fail(e),
        },
        "call" | "progress" => {
            let (name, arguments) = parse_name_args(step).unwrap_or_default();
            // rmcp stamps its own progressToken on every request; `progress` differs from
            // `call` only in name: notifications are printed by the handler either way.
            let params = CallToolRequestParams::new(name.clone()).with_arguments(arguments);
            let mut v = match timed(t, client.call_tool(params)).await {
                Ok(r) => json!({"ok": true, "result": r}),
                Err(e) => fail(e),
            };
            v["tool"] = json!(name);
            v
        }
        "prompts" => match timed(t, client.list_prompts(None)).await {
            Ok(r) => {
                let names: Vec<&str> = r.prompts.iter().map(|x| x.name.as_ref()).collect();
                json!({"ok": true, "prompts": names})
            }
            Err(e) => fail(e),
        },
        "prompt" => {
            let (name, arguments) = parse_name_args(step).unwrap_or_default();
            let params = GetPromptRequestParams::new(name.clone()).with_arguments(arguments);
            let mut v = match timed(t, client.get_prompt(params)).await {
                Ok(r) => json!({"ok": true, "result": r}),
                Err(e) => fail(e),
            };
            v["prompt"] = json!(name);
            v
        }
        "resources" => match timed(t, client.list_resources(None)).await {
            Ok(r) => {
                let uris: Vec<&str> = r.resources.iter().map(|x| x.uri.as_str()).collect();
                json!({"ok": true, "resources": uris})
            }
            Err(e) => fail(e),
        },
        "read" => {
            let uri = step.split_once(':').map(|x| x.1).unwrap_or("").to_string();
            let mut v = match timed(
                t,
                client.read_resource(ReadResourceRequestParams::new(uri.clone())),
            )
            .await
            {
                Ok(r) => json!({"ok": true, "result": r}),
                Err(e) => fail(e),
            };
            v["uri"] = json!(uri);
            v
        }
        "ping" => match timed(
            t,
            client.send_request(rmcp::model::PingRequest::default().into()),
        )
        .await
        {
            Ok(_) => json!({"ok": true}),
            Err(e) => fail(e),
        },
        "sleep" => {
            let secs: f64 = step
                .split_once(':')
                .and_then(|x| x.1.parse().ok())
                .unwrap_or(0.0);
            tokio::time::sleep(Duration::from_secs_f64(secs)).await;
            json!({"ok": true, "seconds": secs})
        }
        "close" => {
            let session = state.lock().unwrap().session_id.clone();
            match client.close_with_timeout(t).await {
                Ok(Some(reason)) => {
                    let deleted = state.lock().unwrap().deleted.clone();
                    let mut v = json!({
                        "ok": true,
                        "quit_reason": format!("{reason:?}"),
                        "session_id": session,
                        "deleted": deleted.as_ref().map(|d| d.is_ok()),
                    });
                    if let Some(Err(e)) = deleted {
                        v["delete_error"] = json!(e);
                    }
                    v
                }
                Ok(None) => json!({"ok": false, "error": {"message": "close timed out"}}),
                Err(e) => json!({"ok": false, "error": {"message": e.to_string()}}),
            }
        }
        _ => json!({"ok": false, "error": {"message": "unknown step"}}),
    };
    let mut obj = Map::new();
    // A `progress:` step's result line is a "call" line; "progress" lines are notifications.
    let step_name = if kind == "progress" { "call" } else { kind };
    obj.insert("step".into(), json!(step_name));
    if let Value::Object(m) = &mut out {
        obj.append(m);
    }
    obj.insert("t".into(), json!(start.elapsed().as_secs_f64()));
    Value::Object(obj)
}

#[tokio::main]
async fn main() {
    let args = parse_args();
    let start = Instant::now();
    let state = Arc::new(Mutex::new(HttpState::default()));
    let http = Recording {
        inner: reqwest::Client::builder()
            .no_proxy()
            .build()
            .unwrap_or_else(|e| usage(&format!("http client: {e}"))),
        state: state.clone(),
    };
    let config = StreamableHttpClientTransportConfig::with_uri(args.url.clone())
        .custom_headers(args.headers.clone())
        .reinit_on_expired_session(false);
    let transport = StreamableHttpClientTransport::with_client(http, config);
    let handler = Handler {
        config: ClientConfig::new(
            ClientCapabilities::default(),
            Implementation::new("rmcp-client", env!("CARGO_PKG_VERSION")),
        )
        .with_protocol_version(ProtocolVersion::V_2025_11_25),
        start,
    };

    let mut client = match tokio::time::timeout(args.timeout, handler.serve(transport)).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            let mut err = json!({"message": e.to_string()});
            if let Some((status, body, text)) = state.lock().unwrap().last_error.take() {
                err["detail"] = json!(text);
                if let Some(s) = status {
                    err["http_status"] = json!(s);
                }
                if let Some(b) = body {
                    err["body"] = serde_json::from_str(&b).unwrap_or(Value::String(b));
                }
            }
            emit(json!({"step": "initialize", "ok": false, "error": err}));
            return;
        }
        Err(_) => {
            emit(json!({"step": "initialize", "ok": false, "error": {"message": "timed out"}}));
            return;
        }
    };
    let info = client.peer_info();
    let session_id = state.lock().unwrap().session_id.clone();
    emit(json!({
        "step": "initialize",
        "ok": true,
        "protocol_version": info.as_ref().map(|i| i.protocol_version.to_string()),
        "server": info.as_ref().and_then(|i| i.server_info.as_ref()).map(|s| json!({"name": s.name, "version": s.version})),
        "session": session_id.is_some(),
        "session_id": session_id,
        "t": start.elapsed().as_secs_f64(),
    }));

    let mut closed = false;
    for step in &args.steps {
        if closed {
            emit(
                json!({"step": step.split(':').next().unwrap_or(""), "ok": false, "error": {"message": "session already closed"}}),
            );
            continue;
        }
        let v = run_step(&mut client, step, &args, &state, start).await;
        emit(v);
        if step == "close" {
            closed = true;
        }
    }
    if !closed {
        // Without a `close` step the session is left open on purpose: exit before
        // rmcp's drop-time cleanup could send a DELETE.
        use std::io::Write;
        let _ = std::io::stdout().flush();
        std::process::exit(0);
    }
}
