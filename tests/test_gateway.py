"""mcp-guard in a real Envoy 1.40, in front of real MCP servers, driven by official SDK clients.

Every refusal is checked twice: what the client got (HTTP status, JSON-RPC error) and what
the upstream received (the MCP server's request record, or the raw TCP sniffer's bytes).
"""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from harness import gateway as gw
from harness import procs
from harness.http import assert_refused, h2_request, post, read_http1_response, seen_bodies
from harness.rpc import rpc_message, stateless

DENY_DELETE = {"deny": {"tools": ["delete_*"]}}
# The strongest hold: these tests check that nothing, not even a connection, reaches the
# upstream before approval (tests/test_hold.py and tests/test_adversarial.py cover the
# default `hold: body`).
MAIN_CONFIG = {
    "hold": "request",
    "endpoints": ["/mcp", "/sse", "/messages/", "/sniff/mcp"],
    "other_paths": "allow",
    "policy": DENY_DELETE,
}
STRICT_CONFIG = {
    "hold": "request",
    "endpoints": ["/mcp", "/sniff/mcp"],
    "other_paths": "deny",
    "get_stream": "deny",
    "delete_session": "deny",
    "max_body_bytes": 4096,
    "policy": {"allow": {"tools": ["echo"]}},
}


@pytest.fixture(scope="module")
def gateway(_alpha: procs.McpServer, _sniffer: procs.Sniffer, log_dir: Path) -> Any:
    g = gw.start_gateway(_alpha.port, MAIN_CONFIG, extra_routes={"/sniff/": _sniffer.port}, name="envoy-main", log_dir=log_dir)
    yield g
    g.stop()


@pytest.fixture(scope="module")
def strict_gateway(_alpha: procs.McpServer, _sniffer: procs.Sniffer, log_dir: Path) -> Any:
    g = gw.start_gateway(_alpha.port, STRICT_CONFIG, extra_routes={"/sniff/": _sniffer.port}, name="envoy-strict", log_dir=log_dir)
    yield g
    g.stop()


# ---------------------------------------------------------------------------- SDK clients


def test_session_client_lists_and_calls_like_direct(gateway: Any, mcp_server: procs.McpServer, rmcp_client_bin: Path) -> None:
    steps = ("list", 'call:echo:{"text":"héllo"}', 'call:add:{"a":2,"b":40}', "close")
    via = procs.run_rmcp_client(gateway.url, *steps, binary=rmcp_client_bin)
    direct = procs.run_rmcp_client(mcp_server.url, *steps, binary=rmcp_client_bin)
    assert via.first("initialize")["protocol_version"] == "2025-11-25"
    # The gateway denies delete_*: its list leaves them out (docs/CONFIG.md, "Filtered lists").
    assert via.first("list")["tools"] == [t for t in direct.first("list")["tools"] if not t.startswith("delete_")]
    assert "echo" in via.first("list")["tools"] and "delete_file" in direct.first("list")["tools"]
    via_calls, direct_calls = via.steps("call"), direct.steps("call")
    assert [c["ok"] for c in via_calls] == [True, True], via.lines
    assert [c["result"] for c in via_calls] == [c["result"] for c in direct_calls]
    assert via_calls[0]["result"]["content"][0]["text"] == "héllo"


def test_stateless_client_lists_and_calls_like_direct(gateway: Any, mcp_server: procs.McpServer) -> None:
    via = procs.run_py_client(gateway.url, "call", "add", '{"a":1,"b":2}', no_validate=True)
    direct = procs.run_py_client(mcp_server.url, "call", "add", '{"a":1,"b":2}', no_validate=True)
    assert via.first("call")["ok"], via.lines
    assert via.first("call")["result"] == direct.first("call")["result"]
    listed = procs.run_py_client(gateway.url, "list")
    assert listed.first("list")["ok"] and "add" in listed.first("list")["tools"]
    # The SDK really spoke the stateless revision through the gateway.
    posted = [r for r in mcp_server.seen() if r["method"] == "POST"]
    assert posted and all(r["headers"].get("mcp-protocol-version") == "2026-07-28" for r in posted)


def test_denied_call_never_reaches_the_server(gateway: Any, mcp_server: procs.McpServer, rmcp_client_bin: Path) -> None:
    run = procs.run_rmcp_client(gateway.url, 'call:delete_file:{"path":"/etc/passwd"}', 'call:echo:{"text":"after"}', "close", binary=rmcp_client_bin)
    denied, after = run.steps("call")
    assert not denied["ok"]
    assert denied["error"]["code"] == -32003 and denied["error"]["http_status"] == 403
    assert after["ok"], "the session survives a denial"
    assert not any("delete_file" in b for b in seen_bodies(mcp_server))

    py = procs.run_py_client(gateway.url, "call", "delete_file", '{"path":"/x"}')
    err = py.first("call")["error"]
    assert (err["code"], err["http_status"]) == (-32003, 403)
    assert not any("delete_file" in b for b in seen_bodies(mcp_server))


def test_progress_streams_incrementally(gateway: Any, mcp_server: procs.McpServer) -> None:
    run = procs.run_py_client(gateway.url, "progress", "slow_count", '{"n":3,"interval":1.0}', no_validate=True)
    progress = run.steps("progress")
    result = run.first("call")
    assert result["ok"], run.lines
    assert [p["progress"] for p in progress] == [1.0, 2.0, 3.0]
    # Each notification arrives as the server sends it, not buffered until the result.
    assert result["t"] - progress[0]["t"] > 1.5
    assert progress[1]["t"] - progress[0]["t"] > 0.5


def test_get_stream_and_delete_reach_the_server(gateway: Any, mcp_server: procs.McpServer, rmcp_client_bin: Path) -> None:
    run = procs.run_rmcp_client(gateway.url, "list", "sleep:0.5", "close", binary=rmcp_client_bin)
    assert run.first("close")["deleted"], run.lines
    session = run.first("close")["session_id"]
    methods = {(r["method"], r["headers"].get("mcp-session-id")) for r in mcp_server.seen()}
    assert ("GET", session) in methods
    assert ("DELETE", session) in methods


def test_stream_and_session_end_can_be_denied(strict_gateway: Any, mcp_server: procs.McpServer) -> None:
    for method in ("GET", "DELETE"):
        resp = httpx.request(method, strict_gateway.url, headers={"mcp-session-id": "s1"}, timeout=10)
        assert_refused(resp, 403, -32003, f"{method} ")
    assert mcp_server.seen() == []


def test_legacy_sse_transport_gets_the_same_checks(gateway: Any, mcp_server: procs.McpServer) -> None:
    ok = procs.run_py_client(f"{gateway.base}/sse", "call", "echo", '{"text":"old"}', transport="sse", no_validate=True)
    assert ok.first("call")["ok"], ok.lines
    assert ok.first("call")["result"]["content"][0]["text"] == "old"
    # The legacy transport answers on the SSE stream; a refused POST leaves the SDK waiting
    # for that answer until its own timeout.
    denied = procs.run_py_client(
        f"{gateway.base}/sse", "call", "delete_file", '{"path":"/x"}', transport="sse", no_validate=True, client_timeout=3
    )
    assert not denied.first("call")["ok"]
    assert any(r["path"].startswith("/messages/") for r in mcp_server.seen())
    assert not any("delete_file" in b for b in seen_bodies(mcp_server))


# ---------------------------------------------------------------------------- parsing like the upstream


def test_escaped_names_are_decoded_before_matching(gateway: Any, mcp_server: procs.McpServer) -> None:
    _, headers = stateless("tools/call", name="echo")
    body = b'{"jsonrpc":"2.0","id":"e","method":"tools/call","params":{"name":"\\u0065cho","arguments":{"text":"esc"},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}'
    resp = post(gateway.url, body, headers)
    assert resp.status_code == 200, resp.text
    assert rpc_message(resp)["result"]["content"][0]["text"] == "esc"

    _, headers = stateless("tools/call", name="delete_file")
    body = body.replace(b"\\u0065cho", b"d\\u0065lete_file")
    assert_refused(post(gateway.url, body, headers), 403, -32003, 'tool "delete_file" is denied', id="e")
    assert not any("lete_file" in b for b in seen_bodies(mcp_server))


def test_header_body_mismatch_is_refused(gateway: Any, mcp_server: procs.McpServer) -> None:
    body, headers = stateless("tools/call", {"name": "delete_file", "arguments": {"path": "/x"}}, id=9, name="echo")
    assert_refused(post(gateway.url, body, headers), 400, -32020, 'Mcp-Name header "echo" does not match', id=9)
    body, headers = stateless("tools/call", {"name": "echo", "arguments": {"text": "x"}}, id=10, name="echo")
    headers["mcp-method"] = "tools/list"
    assert_refused(post(gateway.url, body, headers), 400, -32020, "Mcp-Method header", id=10)
    assert mcp_server.seen() == []


def test_duplicate_keys_are_refused(gateway: Any, mcp_server: procs.McpServer) -> None:
    body = b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","name":"delete_file","arguments":{}}}'
    assert_refused(post(gateway.url, body), 400, -32600, 'duplicate key "name" in params', id=1)
    body = b'{"jsonrpc":"2.0","id":1,"method":"tools/list","m\\u0065thod":"tools/call"}'
    assert_refused(post(gateway.url, body), 400, -32600, 'duplicate key "method"', id=1)
    assert mcp_server.seen() == []


@pytest.mark.parametrize(
    ("body", "code", "reason"),
    [
        (b'{"jsonrpc":"2.0","id":1,"method":"tools/call"', -32700, "at byte"),
        (b'{"jsonrpc":"2.0","id":1,"method":"ping"} {}', -32700, "trailing bytes"),
        (b"\xef\xbb\xbf{}", -32700, "byte order mark"),
        (b'{"jsonrpc":"2.0","id":1,"method":"p\xffng"}', -32700, "invalid UTF-8"),
        (b"[]", -32600, "empty batch"),
        (b'{"jsonrpc":"1.0","id":1,"method":"ping"}', -32600, '"jsonrpc" must be "2.0"'),
    ],
)
def test_malformed_bodies_are_refused(gateway: Any, sniffer: procs.Sniffer, body: bytes, code: int, reason: str) -> None:
    resp = post(f"{gateway.base}/sniff/mcp", body)
    assert resp.status_code == 400
    assert resp.json()["error"]["code"] == code
    assert reason in resp.json()["error"]["data"]["reason"]
    assert sniffer.connections() == []


def test_batch_with_one_denied_member_sends_nothing(gateway: Any, sniffer: procs.Sniffer) -> None:
    batch = [
        {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "echo", "arguments": {"text": "a"}}},
        {"jsonrpc": "2.0", "method": "notifications/progress", "params": {"progressToken": 1, "progress": 1}},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "delete_file", "arguments": {}}},
    ]
    assert_refused(post(f"{gateway.base}/sniff/mcp", json.dumps(batch)), 403, -32003, 'batch[2]: tool "delete_file"')
    assert sniffer.connections() == []
    allowed = json.dumps(batch[:2]).encode()
    assert post(f"{gateway.base}/sniff/mcp", allowed).status_code == 200
    (conn,) = sniffer.connections()
    assert conn["bytes"].endswith(allowed.decode())


# ---------------------------------------------------------------------------- Streamable HTTP handling


def test_headers_are_held_until_the_body_is_approved(gateway: Any, sniffer: procs.Sniffer) -> None:
    allowed = b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{}}}'
    denied = allowed.replace(b"echo", b"delete_file")
    for body, status in ((denied, 403), (allowed, 200)):
        sniffer.reset()
        with socket.create_connection((procs.LOOPBACK, gateway.port), timeout=10) as s:
            head = f"POST /sniff/mcp HTTP/1.1\r\nhost: gw\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
            s.sendall(head.encode())
            time.sleep(1.0)
            assert sniffer.connections() == [], "the upstream saw the request before its body was judged"
            s.sendall(body)
            assert read_http1_response(s)[0] == status
    (conn,) = sniffer.connections()
    assert conn["bytes"].endswith(allowed.decode())


def test_oversized_bodies_get_413_and_send_nothing(strict_gateway: Any, gateway: Any, sniffer: procs.Sniffer) -> None:
    big = b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"' + b"x" * 5000 + b'"}}}'
    # Declared length over the limit: refused from the headers.
    assert_refused(post(f"{strict_gateway.base}/sniff/mcp", big), 413, -32013, "exceeds 4096 bytes")
    # Chunked, no declared length: refused while it streams in.
    resp = httpx.post(f"{strict_gateway.base}/sniff/mcp", content=iter([big[:3000], big[3000:]]), headers={"content-type": "application/json"}, timeout=10)
    assert_refused(resp, 413, -32013, "exceeds 4096 bytes")
    # The default 1 MiB limit: the filter, not Envoy's own buffer limit, answers.
    huge = b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"' + b"y" * (3 << 20) + b'"}}}'
    assert_refused(post(f"{gateway.base}/sniff/mcp", huge), 413, -32013, "exceeds 1048576 bytes")
    assert sniffer.connections() == []
    # Just under the limit passes intact.
    fits = b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"' + b"z" * (4096 - 100) + b'"}}}'
    assert len(fits) <= 4096
    assert post(f"{strict_gateway.base}/sniff/mcp", fits).status_code == 200
    (conn,) = sniffer.connections()
    assert conn["bytes"].endswith(fits.decode())


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({"content-type": "text/plain"}, "is not application/json"),
        ({"content-type": "application/json", "content-encoding": "gzip"}, 'Content-Encoding "gzip" cannot be inspected'),
        ({"content-type": "application/x-www-form-urlencoded"}, "is not application/json"),
    ],
)
def test_uninspectable_bodies_get_415(gateway: Any, sniffer: procs.Sniffer, headers: dict[str, str], reason: str) -> None:
    resp = httpx.post(f"{gateway.base}/sniff/mcp", content=b'{"jsonrpc":"2.0","id":1,"method":"ping"}', headers=headers, timeout=10)
    assert_refused(resp, 415, -32015, reason)
    assert sniffer.connections() == []


def test_other_paths_pass_or_are_denied(gateway: Any, strict_gateway: Any, sniffer: procs.Sniffer) -> None:
    assert httpx.post(f"{gateway.base}/sniff/other", content=b"not json", timeout=10).status_code == 200
    assert len(sniffer.connections()) == 1
    sniffer.reset()
    assert_refused(httpx.post(f"{strict_gateway.base}/sniff/other", content=b"x", timeout=10), 403, -32003, "is not an MCP endpoint")
    assert_refused(httpx.put(f"{strict_gateway.base}/sniff/mcp", content=b"{}", timeout=10), 405, -32005, "PUT")
    assert sniffer.connections() == []


def test_http2_client(gateway: Any, mcp_server: procs.McpServer) -> None:
    body, headers = stateless("tools/call", {"name": "echo", "arguments": {"text": "h2"}}, name="echo")
    with httpx.Client(http1=False, http2=True, timeout=10) as client:
        resp = client.post(gateway.url, content=body, headers=headers)
        assert resp.http_version == "HTTP/2"
        assert rpc_message(resp)["result"]["content"][0]["text"] == "h2"
        body, headers = stateless("tools/call", {"name": "delete_file", "arguments": {}}, name="delete_file")
        denied = client.post(gateway.url, content=body, headers=headers)
        assert_refused(denied, 403, -32003, "delete_file", id=1)
    assert not any("delete_file" in b for b in seen_bodies(mcp_server))


def test_http2_body_ending_in_trailers(gateway: Any, sniffer: procs.Sniffer) -> None:
    headers = [("content-type", "application/json")]
    trailers = [("x-checksum", "abc")]
    denied = b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"delete_file"}}'
    status, data = h2_request(gateway.port, "/sniff/mcp", denied, headers, trailers)
    assert status == 403 and json.loads(data)["error"]["code"] == -32003
    assert sniffer.connections() == []
    allowed = denied.replace(b"delete_file", b"echo")
    status, _ = h2_request(gateway.port, "/sniff/mcp", allowed, headers, trailers)
    assert status == 200
    (conn,) = sniffer.connections()
    assert allowed.decode() in conn["bytes"] and "x-checksum: abc" in conn["bytes"]


# ---------------------------------------------------------------------------- configuration


def test_bad_config_is_refused_with_its_path(mcp_server: procs.McpServer, log_dir: Path) -> None:
    log = gw.refusal(mcp_server.port, {"policy": {"deny": {"tools": ["["]}}}, name="envoy-bad-config", log_dir=log_dir)
    assert 'mcp-guard: invalid configuration: policy.deny.tools[0]: invalid pattern "["' in log

