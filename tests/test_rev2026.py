"""MCP 2026-07-28 through a real Envoy: sessions that belong to their caller (sealed
`Mcp-Session-Id`, checked by two Envoy processes sharing only the configured key),
`subscriptions/listen` judged like reading each resource and its stream filtered event by
event, list answers filtered for one caller never left marked for shared caches, and
methods the revision removed reaching the server instead of being refused for their params.

The session tests use the official Python SDK server (its session-based path); the
subscription and caching tests a small upstream that answers with exactly the bytes a test
needs.
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from harness import gateway as gw
from harness import procs
from harness.http import answer_json, assert_refused
from harness.rpc import rpc_message, stateless

pytestmark = pytest.mark.timeout(90)

KEYS = {"alice-key": "alice", "bob-key": "bob"}
SEAL_KEY = base64.b64encode(b"k" * 32).decode()


def config(**extra: Any) -> dict[str, Any]:
    return {
        "endpoints": ["/mcp", "/fake/*"],
        "auth": {
            "api_keys": {
                "header": "x-api-key",
                "keys": [{"name": name, "sha256": hashlib.sha256(key.encode()).hexdigest()} for key, name in KEYS.items()],
            }
        },
        "ownership": {"keys": [SEAL_KEY], "sessions": True, "tasks": True},
        "policy": {
            "rules": [
                {"name": "everyone", "who": {"authenticated": True},
                 "allow": {"methods": ["*"], "tools": ["*"], "resources": ["file:///project/*"]}, "deny": {"resources": ["file:///project/secret*"]}},
            ]
        },
        **extra,
    }


INIT = json.dumps({
    "jsonrpc": "2.0", "id": 1, "method": "initialize",
    "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
}).encode()
HEADERS = {"content-type": "application/json", "accept": "application/json, text/event-stream"}


def post(g: gw.Gateway, key: str, body: bytes, session: str | None = None, path: str = "/mcp") -> httpx.Response:
    headers = {**HEADERS, "x-api-key": key}
    if session is not None:
        headers["mcp-session-id"] = session
        headers["mcp-protocol-version"] = "2025-11-25"
    return httpx.post(f"{g.base}{path}", content=body, headers=headers, timeout=10)


def tools_list(id: int = 2) -> bytes:
    return json.dumps({"jsonrpc": "2.0", "id": id, "method": "tools/list"}).encode()


@pytest.fixture(scope="module")
def gateways(_alpha: procs.McpServer, log_dir: Path) -> Iterator[tuple[gw.Gateway, gw.Gateway]]:
    """Two Envoy processes with the same sealing key, in front of the same server."""
    one = gw.start_gateway(_alpha.port, config(), name="envoy-rev2026-1", log_dir=log_dir)
    two = gw.start_gateway(_alpha.port, config(), name="envoy-rev2026-2", log_dir=log_dir)
    yield one, two
    one.stop()
    two.stop()


def test_a_session_belongs_to_the_caller_that_created_it(gateways: tuple[gw.Gateway, gw.Gateway], mcp_server: procs.McpServer) -> None:
    one, two = gateways
    resp = post(one, "alice-key", INIT)
    assert resp.status_code == 200, resp.text
    sealed = resp.headers["mcp-session-id"]
    assert sealed.startswith("mg1.")
    # The owner uses it, through either Envoy: nothing but the key is shared.
    for g in (one, two):
        resp = post(g, "alice-key", tools_list(), session=sealed)
        assert resp.status_code == 200, resp.text
        assert "tools" in rpc_message(resp)["result"]
    mcp_server.reset()
    # Another caller's session is forbidden; the upstream's own id or an edited one is an
    # unknown session; the server never hears of either.
    cases = (
        ("bob-key", sealed, 403, "the session belongs to another caller"),
        ("alice-key", sealed[:-2] + "AA", 404, "unknown session"),
        ("alice-key", "not-sealed", 404, "unknown session"),
    )
    for key, session, status, reason in cases:
        resp = post(two, key, tools_list(), session=session)
        assert resp.status_code == status, (key, session, resp.text)
        assert rpc_message(resp)["error"]["data"]["reason"] == reason
    assert mcp_server.seen() == []


class FakeUpstream(http.server.BaseHTTPRequestHandler):
    """Answers /fake/listen with an SSE stream of resource notifications and /fake/list with
    a resources/list answer marked for shared caches."""

    protocol_version = "HTTP/1.1"
    EVENTS = [
        {"jsonrpc": "2.0", "method": "notifications/resources/updated", "params": {"uri": "file:///project/readme"}},
        {"jsonrpc": "2.0", "method": "notifications/resources/updated", "params": {"uri": "file:///project/secret.env"}},
        {"jsonrpc": "2.0", "method": "notifications/resources/list_changed"},
        {"jsonrpc": "2.0", "method": "notifications/resources/updated", "params": {"uri": "file:///etc/passwd"}},
    ]

    received: list[bytes] = []
    names: list[str | None] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        if not body:
            return  # a head whose stream was reset before its body (hold: body refusing it)
        if "/tasks" in self.path:
            return self.tasks(body)
        if self.path.endswith("/listen"):
            body = b"".join(b"event: message\ndata: " + json.dumps(e).encode() + b"\n\n" for e in self.EVENTS)
            self.send_response(200)
            self.send_header("content-type", "text/event-stream")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            # In pieces that split events, as a real stream may.
            for i in range(0, len(body), 37):
                self.wfile.write(body[i : i + 37])
                self.wfile.flush()
                time.sleep(0.005)
            return
        answer = {"jsonrpc": "2.0", "id": 5, "result": {
            "resources": [{"uri": "file:///project/readme", "name": "readme"}, {"uri": "file:///project/secret.env", "name": "secret"}],
            "ttlMs": 60000, "cacheScope": "public"}}
        answer_json(self, answer)

    def tasks(self, body: bytes) -> None:
        """A tools/call creates task t-123 (announced by a status notification first, over
        SSE when the path ends in /sse); tasks/get echoes the id it was sent; tools/list (the
        gateway's own, to check the call's Mcp-Param-* headers) has the one tool."""
        FakeUpstream.received.append(body)
        request = json.loads(body)
        if request["method"] == "tools/list":
            result = {"tools": [{"name": "slow", "inputSchema": {"type": "object"}}]}
        elif request["method"] == "tools/call":
            result = {"task": {"taskId": "t-123", "status": "working"}}
        else:
            FakeUpstream.names.append(self.headers.get("mcp-name"))
            result = {"taskId": request["params"]["taskId"], "status": "working"}
        answer = json.dumps({"jsonrpc": "2.0", "id": request["id"], "result": result}).encode()
        if self.path.endswith("/sse"):
            status = {"jsonrpc": "2.0", "method": "notifications/tasks/status", "params": {"taskId": "t-123", "status": "working"}}
            answer = b"event: message\ndata: " + json.dumps(status).encode() + b"\n\nevent: message\ndata: " + answer + b"\n\n"
            kind = "text/event-stream"
        else:
            kind = "application/json"
        self.send_response(200)
        self.send_header("content-type", kind)
        self.send_header("content-length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def fake(_alpha: procs.McpServer, log_dir: Path) -> Iterator[gw.Gateway]:
    server = http.server.ThreadingHTTPServer((procs.LOOPBACK, 0), FakeUpstream)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    g = gw.start_gateway(_alpha.port, config(), extra_routes={"/fake/": server.server_address[1]}, name="envoy-rev2026-fake", log_dir=log_dir)
    yield g
    g.stop()
    server.shutdown()


def listen(uris: list[str]) -> tuple[bytes, dict[str, str]]:
    return stateless("subscriptions/listen", {"notifications": {"resourceSubscriptions": uris}}, id=9)


def test_listening_is_judged_like_reading(fake: gw.Gateway) -> None:
    body, headers = listen(["file:///project/readme", "file:///project/secret.env"])
    resp = httpx.post(f"{fake.base}/fake/listen", content=body, headers={**headers, "x-api-key": "alice-key"}, timeout=10)
    assert_refused(resp, 403, -32003, "may not be read, so it may not be listened to", id=9)


def test_the_listen_stream_is_filtered_event_by_event(fake: gw.Gateway) -> None:
    body, headers = listen(["file:///project/readme"])
    resp = httpx.post(f"{fake.base}/fake/listen", content=body, headers={**headers, "x-api-key": "alice-key"}, timeout=10)
    assert resp.status_code == 200
    events = [json.loads(line[5:]) for line in resp.text.splitlines() if line.startswith("data:")]
    assert events == [FakeUpstream.EVENTS[0], FakeUpstream.EVENTS[2]]


def test_a_filtered_list_is_never_left_public(fake: gw.Gateway) -> None:
    body, headers = stateless("resources/list", id=5)
    resp = httpx.post(f"{fake.base}/fake/list", content=body, headers={**headers, "x-api-key": "alice-key"}, timeout=10)
    assert resp.status_code == 200
    result = rpc_message(resp)["result"]
    assert [r["uri"] for r in result["resources"]] == ["file:///project/readme"]
    assert result["cacheScope"] == "private" and result["ttlMs"] == 60000


def test_a_removed_method_reaches_the_server(gateways: tuple[gw.Gateway, gw.Gateway], mcp_server: procs.McpServer) -> None:
    """resources/subscribe does not exist in 2026-07-28: the server answers it (method not
    found), the gateway does not refuse it for its params."""
    one, _ = gateways
    body, headers = stateless("resources/subscribe", {}, id=4)
    resp = httpx.post(f"{one.base}/mcp", content=body, headers={**headers, "x-api-key": "alice-key"}, timeout=10)
    assert any('"resources/subscribe"' in r["body"] for r in mcp_server.seen()), resp.text
    assert rpc_message(resp)["error"]["code"] == -32601


@pytest.mark.parametrize("framing", ["json", "sse"])
def test_a_task_belongs_to_the_caller_that_created_it(fake: gw.Gateway, framing: str) -> None:
    path = "/fake/tasks" + ("/sse" if framing == "sse" else "")
    body, headers = stateless("tools/call", {"name": "slow", "arguments": {}}, id=1, name="slow")
    resp = httpx.post(f"{fake.base}{path}", content=body, headers={**headers, "x-api-key": "alice-key"}, timeout=10)
    assert resp.status_code == 200, resp.text
    if framing == "sse":
        events = [json.loads(line[5:]) for line in resp.text.splitlines() if line.startswith("data:")]
        assert events[0]["params"]["taskId"] == events[1]["result"]["task"]["taskId"]
    task = rpc_message(resp)["result"]["task"]["taskId"]
    assert task.startswith("mg1.") and "t-123" not in resp.text
    FakeUpstream.received.clear()
    get, headers = stateless("tasks/get", {"taskId": task}, id=2, name=task)
    resp = httpx.post(f"{fake.base}/fake/tasks", content=get, headers={**headers, "x-api-key": "alice-key"}, timeout=10)
    assert resp.status_code == 200, resp.text
    result = rpc_message(resp)["result"]
    assert result["taskId"] == task  # sealed again on the way back
    assert FakeUpstream.names[-1] == "t-123"  # the routing header went upstream unsealed too
    (seen,) = FakeUpstream.received
    assert len(seen) == len(get) and json.loads(seen)["params"]["taskId"] == "t-123"
    FakeUpstream.received.clear()
    for key, visible, status, reason in (("bob-key", task, 403, "the task belongs to another caller"), ("alice-key", "t-123", 400, "unknown task")):
        get, headers = stateless("tasks/get", {"taskId": visible}, id=3, name=visible)
        resp = httpx.post(f"{fake.base}/fake/tasks", content=get, headers={**headers, "x-api-key": key}, timeout=10)
        assert resp.status_code == status, resp.text
        message = rpc_message(resp)
        assert message["error"]["data"]["reason"] == reason and message["id"] == 3
    assert FakeUpstream.received == [], "no body of a refused tasks request reached the server"
