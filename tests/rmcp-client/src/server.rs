//! `rmcp-server`: an MCP server on the official Rust SDK (rmcp), Streamable HTTP mounted on
//! axum the way rmcp's README does it (`nest_service("/mcp", …)`), so mcp-guard's path tests
//! see exactly which paths an rmcp server really serves.
//!
//! Usage: rmcp-server [--port P]   (0 or absent: a free port)
//!
//! Tools: `echo` (returns `text`) and `delete_file` (the tests' policies deny `delete_*`).
//! Every HTTP request is recorded before routing (method, path with query, body as text):
//! `GET /__seen` answers the list, `POST /__reset` clears it; `GET /healthz` answers "ok"
//! for Envoy's health checks (not recorded). Prints `ready <port>` once listening. Sessions (2025-11-25) as the rmcp client uses them; `initialize` needs none.

use std::sync::{Arc, Mutex};

use axum::{
    body::{to_bytes, Body},
    extract::{Request, State},
    middleware::{self, Next},
    response::Response,
    routing::{get, post},
    Json, Router,
};
use rmcp::{
    model::{
        CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
        JsonObject, ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig,
        Tool,
    },
    service::RequestContext,
    transport::streamable_http_server::{
        session::local::LocalSessionManager, StreamableHttpServerConfig, StreamableHttpService,
    },
    ErrorData, RoleServer, ServerHandler,
};
use serde_json::{json, Value};

type Seen = Arc<Mutex<Vec<Value>>>;

#[derive(Clone)]
struct Tools;

fn tool(name: &'static str, description: &'static str, argument: &str) -> Tool {
    let schema = json!({"type": "object", "properties": {argument: {"type": "string"}}, "required": [argument]});
    let schema: JsonObject = serde_json::from_value(schema).unwrap_or_default();
    Tool::new(name, description, schema)
}

impl ServerHandler for Tools {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("rmcp-test-server", "1.0.0"))
    }

    async fn list_tools(
        &self,
        _: Option<PaginatedRequestParams>,
        _: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(vec![
            tool("echo", "Return the text unchanged.", "text"),
            tool("delete_file", "Delete a file (pretends to).", "path"),
        ]))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        _: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let argument = |key: &str| {
            request
                .arguments
                .as_ref()
                .and_then(|a| a.get(key))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        let text = match request.name.as_ref() {
            "echo" => argument("text"),
            "delete_file" => format!("deleted {}", argument("path")),
            other => return Err(ErrorData::invalid_params(format!("no tool {other}"), None)),
        };
        Ok(CallToolResult::success(vec![ContentBlock::text(text)]).into())
    }
}

/// Records the request (its body buffered and handed on unchanged), then routes it.
async fn record(State(seen): State<Seen>, request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    let bytes = to_bytes(body, 16 << 20).await.unwrap_or_default();
    if !["/__seen", "/__reset", "/healthz"].contains(&parts.uri.path()) {
        let entry = json!({
            "method": parts.method.as_str(),
            "path": parts.uri.path_and_query().map_or("", |p| p.as_str()),
            "body": String::from_utf8_lossy(&bytes),
        });
        seen.lock().map(|mut s| s.push(entry)).ok();
    }
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let mut port = 0u16;
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next().and_then(|v| v.parse().ok())) {
            ("--port", Some(p)) => port = p,
            _ => {
                eprintln!("usage: rmcp-server [--port P]");
                std::process::exit(2);
            }
        }
    }
    let seen: Seen = Arc::default();
    // Envoy forwards the client's Host; this server only listens on loopback.
    let config = StreamableHttpServerConfig::default()
        .disable_allowed_hosts()
        .with_legacy_session_mode(true);
    let mcp = StreamableHttpService::new(
        || Ok(Tools),
        Arc::new(LocalSessionManager::default()),
        config,
    );
    let app = Router::new()
        .route(
            "/__seen",
            get(|State(seen): State<Seen>| async move {
                Json(
                    seen.lock()
                        .map(|s| Value::from(s.clone()))
                        .unwrap_or_default(),
                )
            }),
        )
        .route(
            "/__reset",
            post(|State(seen): State<Seen>| async move {
                seen.lock().map(|mut s| s.clear()).ok();
                Json(json!({"ok": true}))
            }),
        )
        .route("/healthz", get(|| async { Json("ok") }))
        .nest_service("/mcp", mcp)
        .layer(middleware::from_fn_with_state(seen.clone(), record))
        .with_state(seen);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    println!("ready {}", listener.local_addr()?.port());
    axum::serve(listener, app).await
}
