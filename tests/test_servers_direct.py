"""The test servers and official-SDK clients, checked directly (no Envoy).

Covers: rmcp (Rust SDK) session flow incl. DELETE; Python SDK client on the stateless
2026-07-28 revision (headers + _meta on the wire); incremental progress; the legacy
HTTP+SSE transport; client error shapes; the request recorder; the raw TCP sniffer.
"""

from __future__ import annotations

import json
import socket
import time
import urllib.error
from pathlib import Path

import anyio
import pytest

from clients import py_client
from harness import procs

pytestmark = pytest.mark.timeout(60)


def _mcp_posts(seen: list[dict]) -> list[dict]:
    return [r for r in seen if r["method"] == "POST" and r["path"] == "/mcp"]


def test_rmcp_session_flow_and_delete(mcp_server: procs.McpServer, rmcp_client_bin: Path) -> None:
    run = procs.run_rmcp_client(
        mcp_server.url,
        "list",
        'call:echo:{"text":"hi"}',
        'call:add:{"a":2,"b":3}',
        "call:whoami",
        "prompts",
        "resources",
        "read:demo://readme",
        "close",
        binary=rmcp_client_bin,
    )
    assert run.returncode == 0, run.stderr
    init = run.first("initialize")
    assert init["ok"] and init["protocol_version"] == "2025-11-25" and init["session"] is True
    assert init["server"]["name"] == "alpha"
    assert set(run.first("list")["tools"]) == {"echo", "add", "delete_file", "whoami", "slow_count"}
    calls = {c["tool"]: c for c in run.steps("call")}
    assert calls["echo"]["ok"] and calls["echo"]["result"]["content"][0]["text"] == "hi"
    assert calls["add"]["result"]["structuredContent"] == {"result": 5}
    assert calls["whoami"]["result"]["content"][0]["text"] == "alpha"
    assert run.first("prompts")["prompts"] == ["greet"]
    assert run.first("resources")["resources"] == ["demo://readme"]
    assert "mcp-guard demo" in run.first("read")["result"]["contents"][0]["text"]
    close = run.first("close")
    assert close["ok"] and close["deleted"] is True

    seen = mcp_server.seen()
    sid = init["session_id"]
    first = seen[0]
    assert first["method"] == "POST" and json.loads(first["body"])["method"] == "initialize"
    assert json.loads(first["body"])["params"]["protocolVersion"] == "2025-11-25"
    later = [r for r in seen[1:] if r["path"] == "/mcp"]
    assert later and all(r["headers"].get("mcp-session-id") == sid for r in later)
    assert all(r["headers"].get("mcp-protocol-version") == "2025-11-25" for r in later)
    deletes = [r for r in seen if r["method"] == "DELETE"]
    assert len(deletes) == 1 and deletes[0]["headers"]["mcp-session-id"] == sid


def test_rmcp_without_close_leaves_session_open(mcp_server: procs.McpServer, rmcp_client_bin: Path) -> None:
    run = procs.run_rmcp_client(mcp_server.url, "call:echo:{\"text\":\"x\"}", binary=rmcp_client_bin)
    assert run.first("call")["ok"]
    assert not [r for r in mcp_server.seen() if r["method"] == "DELETE"]


def test_rmcp_progress(mcp_server: procs.McpServer, rmcp_client_bin: Path) -> None:
    run = procs.run_rmcp_client(
        mcp_server.url, 'progress:slow_count:{"n":2,"interval":0.3}', "close", binary=rmcp_client_bin
    )
    prog = run.steps("progress")
    assert [p["progress"] for p in prog] == [1.0, 2.0]
    assert prog[1]["t"] - prog[0]["t"] > 0.2
    result = run.first("call")
    assert result["ok"] and result["result"]["content"][0]["text"] == "counted 2"


def test_py_client_2026_wire_format(mcp_server: procs.McpServer) -> None:
    out = anyio.run(
        lambda: py_client.call_tool(mcp_server.url, "echo", {"text": "hi"}, {"x-tenant": "acme"}, validate=False)
    )
    assert out == [
        {
            "step": "call",
            "tool": "echo",
            "ok": True,
            "result": out[0]["result"],
            "http_status": 200,
        }
    ]
    assert out[0]["result"]["content"] == [{"type": "text", "text": "hi"}]
    posts = _mcp_posts(mcp_server.seen())
    assert len(posts) == 1  # stateless: no initialize, no discover, no follow-up list
    req = posts[0]
    h = req["headers"]
    assert h["mcp-protocol-version"] == "2026-07-28"
    assert h["mcp-method"] == "tools/call"
    assert h["mcp-name"] == "echo"
    assert h["x-tenant"] == "acme"
    assert "mcp-session-id" not in h
    body = json.loads(req["body"])
    assert body["method"] == "tools/call" and body["params"]["name"] == "echo"
    meta = body["params"]["_meta"]
    assert meta["io.modelcontextprotocol/protocolVersion"] == "2026-07-28"
    assert "io.modelcontextprotocol/clientInfo" in meta


def test_py_client_list_and_validating_call(mcp_server: procs.McpServer) -> None:
    out = anyio.run(lambda: py_client.list_tools(mcp_server.url))
    assert out[0]["ok"] and "delete_file" in out[0]["tools"]
    mcp_server.reset()
    out = anyio.run(lambda: py_client.call_tool(mcp_server.url, "add", {"a": 1, "b": 2}))
    assert out[0]["result"]["structuredContent"] == {"result": 3}
    # Default (validate=True): the SDK lists tools after the call to check the output schema.
    methods = [r["headers"].get("mcp-method") for r in _mcp_posts(mcp_server.seen())]
    assert methods == ["tools/call", "tools/list"]


def test_py_client_progress_is_incremental(mcp_server: procs.McpServer) -> None:
    interval = 0.4
    out = anyio.run(
        lambda: py_client.call_with_progress(mcp_server.url, "slow_count", {"n": 3, "interval": interval})
    )
    prog = [o for o in out if o["step"] == "progress"]
    assert [p["progress"] for p in prog] == [1.0, 2.0, 3.0]
    gaps = [b["t"] - a["t"] for a, b in zip(prog, prog[1:])]
    assert all(interval * 0.6 < g < interval * 2 for g in gaps), gaps
    result = out[-1]
    assert result["step"] == "call" and result["ok"]
    assert result["result"]["content"][0]["text"] == "counted 3"
    assert result["t"] >= prog[-1]["t"]
    body = json.loads(_mcp_posts(mcp_server.seen())[0]["body"])
    assert "progressToken" in body["params"]["_meta"]


def test_py_client_session_mode_and_cli(mcp_server: procs.McpServer) -> None:
    run = procs.run_py_client(mcp_server.url, "call", "whoami", "{}", mode="legacy", no_validate=True)
    assert run.returncode == 0, run.stderr
    assert run.first("call")["result"]["content"][0]["text"] == "alpha"
    seen = mcp_server.seen()
    assert json.loads(seen[0]["body"])["method"] == "initialize"
    assert [r for r in seen if r["method"] == "DELETE"]


def test_legacy_sse_transport(mcp_server: procs.McpServer) -> None:
    out = anyio.run(
        lambda: py_client.call_tool(mcp_server.sse_url, "echo", {"text": "via sse"}, transport="sse", validate=False)
    )
    assert out[0]["ok"] and out[0]["result"]["content"][0]["text"] == "via sse"
    seen = mcp_server.seen()
    assert seen[0]["method"] == "GET" and seen[0]["path"] == "/sse"
    posts = [r for r in seen if r["method"] == "POST"]
    assert posts and all(r["path"].startswith("/messages/?session_id=") for r in posts)
    assert [json.loads(r["body"]).get("method") for r in posts][:3] == [
        "initialize",
        "notifications/initialized",
        "tools/call",
    ]


def test_error_shapes_when_denied(denying_server: procs.McpServer, rmcp_client_bin: Path) -> None:
    run = procs.run_rmcp_client(
        denying_server.url, 'call:delete_file:{"path":"/x"}', 'call:echo:{"text":"still"}', "close",
        binary=rmcp_client_bin,
    )
    denied, ok = run.steps("call")
    assert denied["tool"] == "delete_file" and denied["ok"] is False
    assert denied["error"]["code"] == -32003 and denied["error"]["http_status"] == 403
    assert ok["ok"] and ok["result"]["content"][0]["text"] == "still"  # session survives a denial

    out = anyio.run(lambda: py_client.call_tool(denying_server.url, "delete_file", {"path": "/x"}))
    assert out == [
        {
            "step": "call",
            "tool": "delete_file",
            "ok": False,
            "error": {"code": -32003, "message": out[0]["error"]["message"], "http_status": 403},
        }
    ]


def test_recorder_endpoints(mcp_server: procs.McpServer) -> None:
    with pytest.raises(urllib.error.HTTPError):  # 406: no Accept header; recorded all the same
        procs.http_json("POST", f"{mcp_server.base}/mcp?x=1", {"jsonrpc": "2.0", "id": 7, "method": "ping"})
    seen = mcp_server.seen()
    assert len(seen) == 1 and seen[0]["path"] == "/mcp?x=1"
    assert json.loads(seen[0]["body"])["id"] == 7
    mcp_server.reset()
    assert mcp_server.seen() == []


def test_sniffer_records_and_answers(sniffer: procs.Sniffer) -> None:
    with socket.create_connection((procs.LOOPBACK, sniffer.port)) as s:
        s.sendall(b"POST /mcp HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhel")
        time.sleep(0.2)
        s.settimeout(0.2)
        with pytest.raises(socket.timeout):
            s.recv(100)  # body incomplete: no answer yet
        s.sendall(b"lo")
        s.settimeout(2)
        data = b""
        while not data.endswith(b'"result":{}}'):
            data += s.recv(1000)
        assert data.startswith(b"HTTP/1.1 200")
        assert b"content-type: application/json" in data
        s.sendall(b"POST /b HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n")
        data = b""
        while not data.endswith(b'"result":{}}'):
            data += s.recv(1000)
    conns = sniffer.connections()
    assert len(conns) == 1
    assert conns[0]["requests"] == 2
    assert conns[0]["bytes"].startswith("POST /mcp HTTP/1.1\r\n") and "hello" in conns[0]["bytes"]
    assert conns[0]["opened_at"] > 0
    sniffer.reset()
    assert sniffer.connections() == []
