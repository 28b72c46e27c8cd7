"""Hand-built MCP requests and response reading, for tests that need exact bytes."""

from __future__ import annotations

import json
from typing import Any

import httpx

META_VERSION = "io.modelcontextprotocol/protocolVersion"


def stateless(method: str, params: dict[str, Any] | None = None, *, id: Any = 1, name: str | None = None) -> tuple[bytes, dict[str, str]]:
    """A 2026-07-28 request as the Python SDK sends it: `_meta` in the body, routing headers."""
    params = dict(params or {})
    params["_meta"] = {META_VERSION: "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {}}
    body = json.dumps({"jsonrpc": "2.0", "id": id, "method": method, "params": params}).encode()
    headers = {
        "content-type": "application/json",
        "accept": "application/json, text/event-stream",
        "mcp-protocol-version": "2026-07-28",
        "mcp-method": method,
    }
    if name is not None:
        headers["mcp-name"] = name
    return body, headers


def rpc_message(resp: httpx.Response) -> dict[str, Any]:
    """The JSON-RPC message of a JSON or single-event SSE response."""
    if resp.headers.get("content-type", "").startswith("text/event-stream"):
        data = [line[5:].strip() for line in resp.text.splitlines() if line.startswith("data:")]
        return json.loads(data[-1])
    return resp.json()
