#!/usr/bin/env python3
"""A real MCP server on the official Python SDK 2.x, for mcp-guard's integration tests and demo.

Run:  python tests/servers/mcp_server.py --port P [--name NAME] [--json-response] [--host 127.0.0.1]

Serves on one port:
  /mcp                 Streamable HTTP. One StreamableHTTPSessionManager answers both eras:
                       * requests whose MCP-Protocol-Version header is a handshake-era
                         revision (or absent) go the session-based path (initialize,
                         Mcp-Session-Id, GET server stream, DELETE) - 2025-11-25 and older;
                       * requests whose MCP-Protocol-Version is a modern revision
                         (2026-07-28) are served statelessly, one POST per exchange.
  /sse, /messages/     the older HTTP+SSE transport (2024-11-05).
  GET  /__seen         JSON list of every HTTP request that reached this process (a head
                       whose stream was reset before any body byte is not a request).
  POST /__reset        clears that list.
  POST /__mutate       {"tool": NAME, "description": TEXT} changes a tool's description from
                       now on (a server whose tool definitions drift); answers the old one.
  GET  /healthz        200 "ok" for load-balancer health checks (not recorded).

Tool annotations: echo, add and whoami say readOnlyHint (add also openWorldHint false),
delete_file says destructiveHint, slow_count says nothing.

--db-tools adds db_query and db_drop_table, the tools the demo routes to its database server.

--param-tools adds deploy (its `region` argument mirrored into an `Mcp-Param-Region` header,
`replicas` an integer 1..5).

--deny-tool NAME (repeatable) makes the recorder answer tools/call for NAME itself with
HTTP 403 and a JSON-RPC error (-32003), to exercise client error paths without Envoy.

Prints "ready <port>" on stdout once listening.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Annotated, Any

import anyio
import uvicorn
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.transport_security import TransportSecuritySettings
from mcp.types import ToolAnnotations
from pydantic import Field
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# DNS-rebinding protection off: the Host header arrives rewritten or not by Envoy,
# and this server only ever listens on loopback.
NO_HOST_CHECK = TransportSecuritySettings(enable_dns_rebinding_protection=False)


def build_mcp(name: str, db_tools: bool = False, param_tools: bool = False) -> MCPServer:
    mcp = MCPServer(name=name, version="1.0.0", instructions="mcp-guard test server", log_level="WARNING")

    read_only = ToolAnnotations(readOnlyHint=True)

    @mcp.tool(annotations=read_only)
    def echo(text: str) -> str:
        """Return the text unchanged."""
        return text

    @mcp.tool(annotations=ToolAnnotations(readOnlyHint=True, openWorldHint=False))
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    @mcp.tool(annotations=ToolAnnotations(readOnlyHint=False, destructiveHint=True))
    def delete_file(path: str) -> str:
        """Pretend to delete a file (harmless; the 'dangerous' tool policies deny)."""
        return f"deleted {path}"

    @mcp.tool(annotations=read_only)
    def whoami() -> str:
        """Name of the server replica that answered."""
        return name

    @mcp.tool()
    async def slow_count(ctx: Context, n: int = 3, interval: float = 1.0) -> str:
        """Send n progress notifications, one every `interval` seconds, then return."""
        for i in range(1, n + 1):
            await anyio.sleep(interval)
            await ctx.report_progress(i, n, f"count {i}")
        return f"counted {n}"

    if db_tools:
        add_db_tools(mcp, name)
    if param_tools:
        add_param_tools(mcp, name)

    @mcp.prompt()
    def greet(name: str) -> str:
        """Greet someone."""
        return f"Hello, {name}!"

    @mcp.resource("demo://readme", mime_type="text/plain")
    def readme() -> str:
        """Demo readme."""
        return "This is the mcp-guard demo MCP server."

    return mcp


def add_db_tools(mcp: MCPServer, name: str) -> None:
    """The database server's tools (harmless: nothing is queried or dropped)."""

    @mcp.tool(annotations=ToolAnnotations(readOnlyHint=True))
    def db_query(sql: str) -> str:
        """Run a read-only SQL query."""
        return f"{name}: 3 rows for {sql}"

    @mcp.tool(annotations=ToolAnnotations(destructiveHint=True))
    def db_drop_table(table: str) -> str:
        """Drop a table (the policy denies it)."""
        return f"{name}: dropped {table}"


def add_param_tools(mcp: MCPServer, name: str) -> None:
    """Tools whose arguments are mirrored into `Mcp-Param-*` headers (SEP-2243)."""

    @mcp.tool()
    def deploy(
        region: Annotated[str, Field(json_schema_extra={"x-mcp-header": "Region"})],
        replicas: Annotated[int, Field(ge=1, le=5)] = 1,
    ) -> str:
        """Deploy to a region."""
        return f"{name}: deployed {replicas} to {region}"


class RequestRecorder:
    """ASGI middleware: records every HTTP request (fully buffered body) before the app sees it."""

    def __init__(self, app: ASGIApp, mcp: MCPServer, deny_tools: frozenset[str] = frozenset()) -> None:
        self.app = app
        self.mcp = mcp
        self.deny_tools = deny_tools
        self.seen: list[dict[str, Any]] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("raw_path") or scope["path"].encode()
        full_path = path.decode("latin-1")
        if scope.get("query_string"):
            full_path += "?" + scope["query_string"].decode("latin-1")

        if scope["path"] == "/__seen" and scope["method"] == "GET":
            await _send_json(send, self.seen)
            return
        if scope["path"] == "/healthz" and scope["method"] == "GET":
            await _send_json(send, "ok")
            return
        if scope["path"] == "/__reset" and scope["method"] == "POST":
            self.seen.clear()
            await _send_json(send, {"ok": True})
            return
        if scope["path"] == "/__mutate" and scope["method"] == "POST":
            await _send_json(send, await self._mutate(receive))
            return

        # Buffer the whole body before handing over.
        chunks: list[bytes] = []
        buffered: list[Message] = []
        disconnected = False
        while True:
            msg = await receive()
            buffered.append(msg)
            if msg["type"] == "http.disconnect":
                disconnected = True
                break
            chunks.append(msg.get("body", b""))
            if not msg.get("more_body", False):
                break
        body = b"".join(chunks)
        if disconnected and not body:
            # A request head alone, its stream reset before any body (mcp-guard's `hold: body`
            # refusing the message): no message reached the server. Any body byte counts.
            return
        pairs = [[k.decode("latin-1"), v.decode("latin-1")] for k, v in scope["headers"]]
        headers: dict[str, str] = {}
        for k, v in pairs:
            headers[k] = f"{headers[k]}, {v}" if k in headers else v
        self.seen.append(
            {
                "time": time.time(),
                "method": scope["method"],
                "path": full_path,
                "http_version": scope.get("http_version"),
                "headers": headers,
                "header_list": pairs,
                "body": body.decode("latin-1"),
            }
        )

        if self.deny_tools and scope["method"] == "POST":
            denied = _denied_call(body, self.deny_tools)
            if denied is not None:
                await _send_json(send, denied, status=403)
                return

        replay = [{"type": "http.request", "body": body, "more_body": False}]
        if disconnected:
            replay.append({"type": "http.disconnect"})

        async def replay_receive() -> Message:
            if replay:
                return replay.pop(0)
            return await receive()

        await self.app(scope, replay_receive, send)


    async def _mutate(self, receive: Receive) -> dict[str, Any]:
        body = b""
        while True:
            msg = await receive()
            body += msg.get("body", b"")
            if not msg.get("more_body", False):
                break
        change = json.loads(body)
        tool = self.mcp._tool_manager.get_tool(change["tool"])  # pyright: ignore[reportPrivateUsage]
        if tool is None:
            return {"ok": False, "error": f"no tool {change['tool']!r}"}
        old, tool.description = tool.description, change["description"]
        return {"ok": True, "old": old}


def _denied_call(body: bytes, deny_tools: frozenset[str]) -> dict[str, Any] | None:
    """For --deny-tool: the JSON-RPC error a policy proxy would answer a denied tools/call with."""
    try:
        msg = json.loads(body)
    except ValueError:
        return None
    if not isinstance(msg, dict) or msg.get("method") != "tools/call":
        return None
    params = msg.get("params")
    name = params.get("name") if isinstance(params, dict) else None
    if name not in deny_tools:
        return None
    return {
        "jsonrpc": "2.0",
        "id": msg.get("id"),
        "error": {"code": -32003, "message": f"tool '{name}' denied by test server (--deny-tool)"},
    }


async def _send_json(send: Send, obj: Any, status: int = 200) -> None:
    body = json.dumps(obj).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


def build_app(
    name: str,
    json_response: bool = False,
    deny_tools: frozenset[str] = frozenset(),
    db_tools: bool = False,
    param_tools: bool = False,
) -> RequestRecorder:
    mcp = build_mcp(name, db_tools, param_tools)
    # streamable_http_app carries the lifespan that runs the session manager;
    # stateless_http=False keeps 2025-era sessions; 2026-07-28 requests are routed
    # to the SDK's modern single-exchange entry by their MCP-Protocol-Version header.
    app = mcp.streamable_http_app(
        streamable_http_path="/mcp",
        json_response=json_response,
        stateless_http=False,
        transport_security=NO_HOST_CHECK,
    )
    sse = mcp.sse_app(sse_path="/sse", message_path="/messages/", transport_security=NO_HOST_CHECK)
    app.router.routes.extend(sse.routes)
    return RequestRecorder(app, mcp, deny_tools)


async def _serve(
    host: str,
    port: int,
    name: str,
    json_response: bool,
    log_level: str,
    deny_tools: frozenset[str],
    db_tools: bool,
    param_tools: bool = False,
) -> None:
    config = uvicorn.Config(
        build_app(name, json_response, deny_tools, db_tools, param_tools),
        host=host,
        port=port,
        log_level=log_level,
        lifespan="on",
        timeout_graceful_shutdown=1,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            await task
            sys.exit(1)
        await asyncio.sleep(0.02)
    bound = port
    for s in server.servers:
        for sock in s.sockets:
            bound = sock.getsockname()[1]
    print(f"ready {bound}", flush=True)
    await task


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--port", type=int, required=True, help="0 picks a free port (printed in 'ready <port>')")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--name", default="mcp-test-server")
    ap.add_argument("--json-response", action="store_true", help="answer POSTs with JSON instead of SSE")
    ap.add_argument("--log-level", default="warning")
    ap.add_argument(
        "--deny-tool",
        action="append",
        default=[],
        help="answer tools/call for this tool with HTTP 403 + JSON-RPC error -32003 (client error-path testing)",
    )
    ap.add_argument("--db-tools", action="store_true", help="also serve db_query and db_drop_table")
    ap.add_argument("--param-tools", action="store_true", help="also serve deploy (an Mcp-Param header)")
    args = ap.parse_args()
    try:
        asyncio.run(
            _serve(
                args.host,
                args.port,
                args.name,
                args.json_response,
                args.log_level,
                frozenset(args.deny_tool),
                args.db_tools,
                args.param_tools,
            )
        )
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
