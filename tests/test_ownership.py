"""Tasks and sessions belong to the identity that created them (issue 15 point 4), across
two Envoy processes with two workers each, sharing nothing but the sealing key: the owner
uses its ids through any process and worker; another identity is refused 403 and the
server never gets the request (with `hold: request` not even its head; with `hold: body`
its head may go upstream, its body never does). Process one holds the body, process two
the whole request, so both holds are covered.

Sessions are driven by the official Python SDK client, its requests spread over both
processes by its HTTP transport; tasks by the official TypeScript SDK, client and server
(tests/clients/ts_tasks.mjs, tests/servers/ts_server.mjs --tasks), and, for every method
and the adversarial cases, by a raw upstream that records every head and body it receives.
The same upstream writes SSE answers one byte at a time, to check that what the gateway
rewrites in a stream (task ids, the listen filter, the private cache scope) comes out
exactly as if it had come whole, and holds a stream open to check that nothing waits for
its end.
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import itertools
import json
import re
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from harness import gateway as gw
from harness import procs
from harness.rpc import rpc_message, stateless

pytestmark = pytest.mark.timeout(120)

KEYS = {"alice-key": "alice", "bob-key": "bob", "carol-key": "carol"}
SEAL_KEY = base64.b64encode(b"o" * 32).decode()


def config(hold: str) -> dict[str, Any]:
    return {
        "endpoints": ["/mcp", "/fake/*"],
        "hold": hold,
        "auth": {
            "api_keys": {
                "header": "x-api-key",
                "keys": [{"name": name, "sha256": hashlib.sha256(key.encode()).hexdigest()} for key, name in KEYS.items()],
            }
        },
        "ownership": {"keys": [SEAL_KEY]},
        "policy": {
            "rules": [
                {"name": "everyone", "who": {"authenticated": True},
                 "allow": {"methods": ["*"], "tools": ["*"], "resources": ["file:///project/*"]},
                 "deny": {"resources": ["file:///project/secret*"]}},
            ]
        },
        # Rate limits count tasks methods like any other.
        "rate_limits": {"limits": [{"name": "carol-polls", "who": {"api_keys": ["carol"]}, "methods": ["tasks/get"],
                                    "key": ["subject"], "bucket": {"capacity": 2}}]},
    }


class Upstream(http.server.BaseHTTPRequestHandler):
    """A tasks server that records what reaches it: every head (`heads`: the `x-test-request`
    header the test tagged it with, else its path) and every complete body (`bodies`). `tools/call` creates task t-<n>; tasks/* answer for the id they get.
    Paths ending in /sse answer as an event stream (a status notification first); /bytes
    writes the answer one byte per write, flushed, with TCP_NODELAY."""

    protocol_version = "HTTP/1.1"
    heads: list[str] = []
    bodies: list[dict[str, Any]] = []
    names: list[str | None] = []
    raw: list[tuple[dict[str, str], bytes]] = []
    counter = itertools.count(1)
    lock = threading.Lock()

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length", "0"))
        raw = self.rfile.read(length)
        request = json.loads(raw) if raw and len(raw) == length else {}
        if str(request.get("id")).startswith("mcp-guard-tools-"):
            # The gateway's own list (a cold gateway checks a 2026-07-28 call's Mcp-Param-*
            # headers against the tool's schema): answered, not recorded.
            tools = {"tools": [{"name": "slow", "inputSchema": {"type": "object"}}]}
            answer = {"jsonrpc": "2.0", "id": request["id"], "result": tools}
            return self.write("application/json", json.dumps(answer).encode())
        with self.lock:
            Upstream.heads.append(self.headers.get("x-test-request", self.path))
        if not request:
            return  # a stream reset before its body: the request never arrived
        with self.lock:
            Upstream.bodies.append(request)
            Upstream.names.append(self.headers.get("mcp-name"))
            Upstream.raw.append((dict(self.headers.items()), raw))
        if "/error/" in self.path:
            code = int(self.path.rsplit("/", 1)[1])
            error = {"code": code, "message": "from the server", "data": {"kept": True}}
            return self.write("application/json", json.dumps({"jsonrpc": "2.0", "id": request["id"], "error": error}).encode())
        if "/held/" in self.path:
            return self.held(STREAMS[self.path.rsplit("/", 1)[1]])
        if self.path.endswith("/bytes"):
            stream = self.path.rsplit("/", 2)[-2]
            return self.write("text/event-stream", STREAMS[stream], one_byte=True)
        method = request["method"]
        if method == "tools/call":
            task = f"t-{next(self.counter)}"
            result: dict[str, Any] = {"task": {"taskId": task, "status": "working"}}
        elif method == "tasks/result":
            task = request["params"]["taskId"]
            result = {"content": [{"type": "text", "text": "done"}],
                      "_meta": {"io.modelcontextprotocol/related-task": {"taskId": task}}}
        else:
            task = request["params"]["taskId"]
            status = "cancelled" if method == "tasks/cancel" else "working"
            result = {"taskId": task, "status": status}
        answer = json.dumps({"jsonrpc": "2.0", "id": request["id"], "result": result}).encode()
        if self.path.endswith("/sse"):
            note = {"jsonrpc": "2.0", "method": "notifications/tasks/status", "params": {"taskId": task, "status": "working"}}
            answer = b"event: message\ndata: " + json.dumps(note).encode() + b"\n\nevent: message\ndata: " + answer + b"\n\n"
            self.write("text/event-stream", answer)
        else:
            self.write("application/json", answer)

    def write(self, kind: str, body: bytes, one_byte: bool = False) -> None:
        self.send_response(200)
        self.send_header("content-type", kind)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        if not one_byte:
            self.wfile.write(body)
            return
        self.wfile.flush()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(len(body)):
            self.wfile.write(body[i : i + 1])
            self.wfile.flush()
            time.sleep(0.0005)

    released = threading.Event()
    finished = threading.Event()

    def held(self, body: bytes) -> None:
        """Writes all but the last event of `body` (chunked, as an open stream), then waits
        for the test to release it before writing the last and ending the stream."""
        ends = [m.end() for m in re.finditer(rb"\r\n\r\n|\n\n", body)]
        first, last = body[: ends[-2]], body[ends[-2] :]
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        for part in (first, None, last, b""):
            if part is None:
                Upstream.released.wait(15)
                Upstream.finished.set()
                continue
            self.wfile.write(f"{len(part):x}\r\n".encode() + part + b"\r\n")
            self.wfile.flush()

    def log_message(self, *args: object) -> None:
        pass


def sse(*messages: dict[str, Any] | bytes, crlf: bool = False) -> bytes:
    """Events as a server writes them (raw bytes are written as they are)."""
    nl = b"\r\n" if crlf else b"\n"
    out = b""
    for m in messages:
        out += m if isinstance(m, bytes) else b"event: message" + nl + b"data: " + json.dumps(m).encode() + nl + nl
    return out


UPDATED = "notifications/resources/updated"
STREAMS: dict[str, bytes] = {
    # A tools/call answered over SSE: priming event, status notification, keep-alive, answer.
    "task": sse(
        b"id: 0\ndata:\n\n",
        {"jsonrpc": "2.0", "method": "notifications/tasks/status", "params": {"taskId": "t-77", "status": "working"}},
        b": keep-alive\r\n\r\n",
        {"jsonrpc": "2.0", "id": 1, "result": {"task": {"taskId": "t-77", "status": "working"}, "note": "caf\u00e9"}},
        crlf=True,
    ),
    # A listen stream: readable and unreadable updates, a list-changed notification.
    "listen": sse(
        b"id: 0\ndata:\n\n",
        {"jsonrpc": "2.0", "method": "notifications/subscriptions/acknowledged", "params": {"notifications": {}}},
        {"jsonrpc": "2.0", "method": UPDATED, "params": {"uri": "file:///project/readme"}},
        {"jsonrpc": "2.0", "method": UPDATED, "params": {"uri": "file:///project/secret.env"}},
        {"jsonrpc": "2.0", "method": "notifications/resources/list_changed"},
        {"jsonrpc": "2.0", "method": UPDATED, "params": {"uri": "file:///etc/passwd"}},
        {"jsonrpc": "2.0", "method": UPDATED, "params": {"uri": "file:///project/b"}},
    ),
    # A list answer over SSE, every element readable, marked for shared caches.
    "list": sse(
        {"jsonrpc": "2.0", "method": "notifications/message", "params": {"level": "info", "data": "listing"}},
        {"jsonrpc": "2.0", "id": 5, "result": {"resources": [{"uri": "file:///project/readme", "name": "readme"}],
                                               "ttlMs": 60000, "cacheScope": "public"}},
    ),
}


@pytest.fixture(scope="module")
def upstream() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer((procs.LOOPBACK, 0), Upstream)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()


@pytest.fixture(scope="module")
def gateways(_alpha: procs.McpServer, upstream: int, log_dir: Path) -> Iterator[tuple[gw.Gateway, gw.Gateway]]:
    """Two Envoy processes, two workers each, the same sealing key; one holds the body, the
    other the whole request (where this Envoy shape can)."""
    second = "request" if gw.flag_on() else "body"
    routes = {"/fake/": upstream}
    one = gw.start_gateway(_alpha.port, config("body"), extra_routes=routes, name="envoy-owners-1", log_dir=log_dir, concurrency=2)
    two = gw.start_gateway(_alpha.port, config(second), extra_routes=routes, name="envoy-owners-2", log_dir=log_dir, concurrency=2)
    yield one, two
    one.stop()
    two.stop()


class Spread(httpx2.AsyncBaseTransport):
    """Sends each request of an SDK client to the next of `ports` in turn (each on a new
    connection, so Envoy's workers take turns too), and records what went where."""

    def __init__(self, ports: list[int]) -> None:
        self.ports = itertools.cycle(ports)
        # No kept-alive connections: every request finds a worker anew.
        self.inner = httpx2.AsyncHTTPTransport(limits=httpx2.Limits(max_keepalive_connections=0))
        self.sent: list[tuple[int, str, int, str | None, str | None]] = []

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        port = next(self.ports)
        request.url = request.url.copy_with(port=port)
        resp = await self.inner.handle_async_request(request)
        self.sent.append((port, request.method, resp.status_code, request.headers.get("mcp-session-id"), resp.headers.get("mcp-session-id")))
        return resp

    async def aclose(self) -> None:
        await self.inner.aclose()


async def sdk_session(one: gw.Gateway, two: gw.Gateway, spread: Spread) -> list[str]:
    headers = {"x-api-key": "alice-key"}
    async with httpx2.AsyncClient(headers=headers, transport=spread, timeout=httpx2.Timeout(20)) as http:
        async with Client(streamable_http_client(f"{one.base}/mcp", http_client=http), mode="legacy", cache=None) as client:  # type: ignore[arg-type]
            texts = []
            for word in ("one", "two", "three"):
                result = await client.call_tool("echo", {"text": word})
                texts.append(result.content[0].text)  # type: ignore[union-attr]
            await client.list_tools()
            return texts


def test_a_session_is_its_creators_through_every_process_and_worker(gateways: tuple[gw.Gateway, gw.Gateway], mcp_server: procs.McpServer) -> None:
    one, two = gateways
    ports = [one.port, two.port]
    spread = Spread(ports)
    texts = anyio.run(sdk_session, one, two, spread)
    assert texts == ["one", "two", "three"]
    # The session came back sealed, the SDK sent it to both processes, and both took it.
    sealed = {issued for (_, _, _, _, issued) in spread.sent if issued}
    assert len(sealed) == 1 and next(iter(sealed)).startswith("mg1."), spread.sent
    (session,) = sealed
    used = {port for (port, _, status, sent, _) in spread.sent if sent == session and status < 300}
    assert used == set(ports), spread.sent
    # The server saw its own id, never the sealed one.
    seen = mcp_server.seen()
    assert seen and all(session not in json.dumps(r) for r in seen)
    mcp_server.reset()
    # Another identity with it, through either process, for every HTTP method: 403, and
    # the server hears nothing (the session is checked on the head).
    for g, (method, body) in itertools.product((one, two), (("POST", tools_list()), ("GET", b""), ("DELETE", b""))):
        headers = {"x-api-key": "bob-key", "mcp-session-id": session, "mcp-protocol-version": "2025-11-25",
                   "accept": "application/json, text/event-stream"}
        if body:
            headers["content-type"] = "application/json"
        resp = httpx.request(method, f"{g.base}/mcp", content=body, headers=headers, timeout=10)
        assert resp.status_code == 403, (g.port, method, resp.text)
        assert resp.json()["error"]["data"]["reason"] == "the session belongs to another caller"
    assert mcp_server.seen() == []


def tools_list() -> bytes:
    return json.dumps({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}).encode()


def send(g: gw.Gateway, key: str, method: str, params: dict[str, Any], *, id: int, path: str = "/fake/tasks", legacy: bool = False,
         tag: str | None = None) -> httpx.Response:
    """A tasks request as a 2026-07-28 client sends it (Mcp-Name: the task id, for the
    methods that name one), or as a 2025-11-25 one (`legacy`); a new connection each time.
    `tag`: an `x-test-request` header, by which the upstream records the request's head."""
    name = None if method == "tasks/result" else params.get("taskId") or params.get("name")
    body, headers = stateless(method, params, id=id, name=name)
    if legacy:
        body = json.dumps({"jsonrpc": "2.0", "id": id, "method": method, "params": params}).encode()
        headers = {"content-type": "application/json", "accept": "application/json, text/event-stream",
                   "mcp-protocol-version": "2025-11-25"}
    tagged = {"x-test-request": tag} if tag else {}
    return httpx.post(f"{g.base}{path}", content=body, headers={**headers, "x-api-key": key, **tagged}, timeout=10)


def create_task(g: gw.Gateway, key: str, framing: str) -> str:
    path = "/fake/tasks" + ("/sse" if framing == "sse" else "")
    resp = send(g, key, "tools/call", {"name": "slow", "arguments": {}}, id=1, path=path)
    assert resp.status_code == 200, resp.text
    task = rpc_message(resp)["result"]["task"]["taskId"]
    assert task.startswith("mg1.") and '"t-' not in resp.text, resp.text
    return task


# Each tasks method, as the revision that defines it sends it.
METHODS = [("tasks/get", False), ("tasks/update", False), ("tasks/cancel", False), ("tasks/result", True)]


@pytest.mark.parametrize("framing", ["json", "sse"])
def test_a_task_is_its_creators_through_every_process_and_worker(gateways: tuple[gw.Gateway, gw.Gateway], framing: str) -> None:
    one, two = gateways
    task = create_task(one, "alice-key", framing)
    upstream_id = base64.urlsafe_b64decode(task.split(".")[1] + "==").decode()
    # The owner, through both processes, several times each (new connections: both workers).
    for round, (g, (method, legacy)) in enumerate(itertools.product((one, two, one, two), METHODS)):
        Upstream.bodies.clear()
        params = {"taskId": task, "status": "input_required"} if method == "tasks/update" else {"taskId": task}
        resp = send(g, "alice-key", method, params, id=10 + round, legacy=legacy)
        assert resp.status_code == 200, (g.port, method, resp.text)
        (seen,) = Upstream.bodies
        assert seen["params"]["taskId"] == upstream_id, seen  # unsealed for the server
        assert upstream_id not in resp.text and task in resp.text, resp.text  # sealed again
    # Another identity, with the owner's id, through both: 403 with the request's id, and
    # no body reaches the server; through the process that holds the request, no head (a
    # head `hold: body` let go is recorded when Envoy resets its stream, which may come
    # after the 403: heads are told apart by their tag).
    held: list[str] = []
    for g, (method, legacy) in itertools.product((one, two), METHODS):
        Upstream.bodies.clear()
        params = {"taskId": task, "status": "input_required"} if method == "tasks/update" else {"taskId": task}
        tag = f"bob-{g.port}-{method}"
        resp = send(g, "bob-key", method, params, id=99, legacy=legacy, tag=tag)
        assert resp.status_code == 403, (g.port, method, resp.text)
        message = resp.json()
        assert message["id"] == 99 and message["error"]["code"] == -32003, message
        assert message["error"]["data"]["reason"] == "the task belongs to another caller"
        assert Upstream.bodies == [], (method, Upstream.bodies)
        if g is two and gw.flag_on():
            held.append(tag)
    time.sleep(0.5)  # long enough for any head let go to be recorded
    assert not set(held) & set(Upstream.heads), Upstream.heads
    # The upstream's own id, decoded from the sealed one, is no way around it.
    Upstream.bodies.clear()
    resp = send(two, "bob-key", "tasks/get", {"taskId": upstream_id}, id=98)
    assert resp.status_code == 400 and resp.json()["error"]["data"]["reason"] == "unknown task"
    # Nor is a method the revision removed (tasks/result in 2026-07-28): the server gets a
    # blank id and answers the removed method itself.
    resp = send(one, "bob-key", "tasks/result", {"taskId": task}, id=97)
    assert [b["params"]["taskId"] for b in Upstream.bodies] == [""], Upstream.bodies


def test_rate_limits_count_tasks_methods(gateways: tuple[gw.Gateway, gw.Gateway]) -> None:
    one, _ = gateways
    task = create_task(one, "carol-key", "json")
    statuses = [send(one, "carol-key", "tasks/get", {"taskId": task}, id=i).status_code for i in range(3)]
    assert statuses == [200, 200, 429]


def one_byte_at_a_time(g: gw.Gateway, kind: str, body: bytes, headers: dict[str, str]) -> bytes:
    resp = httpx.post(f"{g.base}/fake/{kind}/bytes", content=body, headers={**headers, "x-api-key": "alice-key"}, timeout=30)
    assert resp.status_code == 200, resp.text
    return resp.content


def test_streams_written_one_byte_at_a_time_come_out_exactly_transformed(gateways: tuple[gw.Gateway, gw.Gateway]) -> None:
    one, two = gateways
    # Task ids: sealed in the status notification and in the answer, nothing else changed.
    body, headers = stateless("tools/call", {"name": "slow", "arguments": {}}, id=1, name="slow")
    got = one_byte_at_a_time(one, "task", body, headers)
    sealed = json.loads(got.split(b"data: ")[-1])["result"]["task"]["taskId"]
    assert sealed.startswith("mg1.") and base64.urlsafe_b64decode(sealed.split(".")[1] + "==") == b"t-77"
    assert got == STREAMS["task"].replace(b'"t-77"', json.dumps(sealed).encode())
    assert got.count(sealed.encode()) == 2
    # The listen stream: exactly the events the caller may see, byte for byte.
    body, headers = stateless("subscriptions/listen", {"notifications": {"resourceSubscriptions": ["file:///project/readme"]}}, id=9)
    got = one_byte_at_a_time(two, "listen", body, headers)
    events = STREAMS["listen"].split(b"\n\n")
    dropped = [e for e in events if b"secret.env" in e or b"/etc/passwd" in e]
    assert len(dropped) == 2
    assert got == b"\n\n".join(e for e in events if e not in dropped)
    # A list answer over SSE: only "public" became "private".
    body, headers = stateless("resources/list", id=5)
    got = one_byte_at_a_time(one, "list", body, headers)
    assert got == STREAMS["list"].replace(b'"cacheScope": "public"', b'"cacheScope": "private"')
    assert got != STREAMS["list"]


@pytest.mark.parametrize(
    ("method", "params", "code"),
    [
        # Gone from 2026-07-28: they reach the server, which answers method not found.
        ("ping", {}, -32601),
        ("logging/setLevel", {"level": "info"}, -32601),
        # New in 2026-07-28, and resource-not-found: the server's codes reach the client.
        ("tools/list", {}, -32021),
        ("tools/list", {}, -32022),
        ("resources/read", {"uri": "file:///project/missing"}, -32602),
    ],
)
def test_what_2026_07_28_changed_passes_through(gateways: tuple[gw.Gateway, gw.Gateway], method: str, params: dict[str, Any], code: int) -> None:
    one, _ = gateways
    name = params.get("uri")
    body, headers = stateless(method, params, id=3, name=name)
    # An Mcp-Param header no schema declares is the server's business: forwarded untouched.
    headers = {**headers, "mcp-param-region": "=?base64?not base64"}
    Upstream.raw.clear()
    resp = httpx.post(f"{one.base}/fake/error/{code}", content=body, headers={**headers, "x-api-key": "alice-key"}, timeout=10)
    ((seen_headers, seen_body),) = Upstream.raw
    assert seen_body == body
    assert {k.lower(): v for k, v in seen_headers.items()}["mcp-param-region"] == "=?base64?not base64"
    assert resp.status_code == 200
    assert resp.json() == {"jsonrpc": "2.0", "id": 3, "error": {"code": code, "message": "from the server", "data": {"kept": True}}}


@pytest.mark.parametrize("stream", ["listen", "task"])
def test_nothing_waits_for_the_stream_to_end(gateways: tuple[gw.Gateway, gw.Gateway], stream: str) -> None:
    """The events a stream has finished reach the client while the upstream keeps it open."""
    one, _ = gateways
    Upstream.released.clear()
    Upstream.finished.clear()
    if stream == "listen":
        body, headers = stateless("subscriptions/listen", {"notifications": {"resourceSubscriptions": ["file:///project/readme"]}}, id=9)
        early = b"file:///project/readme"
    else:
        body, headers = stateless("tools/call", {"name": "slow", "arguments": {}}, id=1, name="slow")
        early = b"notifications/tasks/status"
    got = b""
    with httpx.stream("POST", f"{one.base}/fake/held/{stream}", content=body, headers={**headers, "x-api-key": "alice-key"}, timeout=30) as resp:
        assert resp.status_code == 200
        chunks = resp.iter_bytes()
        while early not in got:
            got += next(chunks)
        assert not Upstream.finished.is_set(), "the event came only once the upstream ended the stream"
        Upstream.released.set()
        got += b"".join(chunks)
    if stream == "listen":
        assert b"secret.env" not in got and b"file:///project/b" in got
    else:
        assert b"t-77" not in got and got.count(b"mg1.") == 2


@pytest.fixture(scope="module")
def ts_tasks(log_dir: Path) -> Iterator[procs.McpServer]:
    server = procs.start_ts_server(log_dir=log_dir, tasks=True)
    yield server
    server.stop()


def test_the_typescript_sdk_keeps_a_task_to_its_creator(ts_tasks: procs.McpServer, log_dir: Path) -> None:
    """The official TypeScript SDK, client and server (whose task store keeps no owner),
    through two Envoy processes with two workers each: the owner's requests alternate
    between them; another identity's requests for the owner's task are refused 403."""
    second = "request" if gw.flag_on() else "body"
    one = gw.start_gateway(ts_tasks.port, config("body"), name="envoy-owners-ts-1", log_dir=log_dir, concurrency=2)
    two = gw.start_gateway(ts_tasks.port, config(second), name="envoy-owners-ts-2", log_dir=log_dir, concurrency=2)
    try:
        ts_tasks.reset()
        cmd = [str(procs.NODE), str(procs.REPO / "tests" / "clients" / "ts_tasks.mjs"),
               "--ports", f"{one.port},{two.port}", "--owner", "alice-key", "--other", "bob-key"]
        run = subprocess.run(cmd, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
        steps = {line["step"]: line for line in map(json.loads, run.stdout.splitlines())}
        assert set(steps) == {"created", "polled", "result", "other-get", "other-result", "other-cancel", "other-list", "other-get-listed"}, (run.stdout, run.stderr)
        task = steps["created"]["taskId"]
        assert task.startswith("mg1."), steps
        assert steps["polled"] == {"step": "polled", "taskId": task, "status": "completed"}, steps
        assert steps["result"]["text"] == "waited 100", steps
        for step in ("other-get", "other-result", "other-cancel"):
            assert steps[step]["code"] == 403, steps[step]
            assert '"reason":"the task belongs to another caller"' in steps[step]["error"], steps[step]
        # The server lists every caller's tasks; the id shown to another identity is sealed
        # as listed: it shows the task, it never opens it.
        (shown,) = steps["other-list"]["listed"]
        assert shown.startswith("mg1.") and shown != task, steps
        assert steps["other-get-listed"]["code"] == 400, steps
        assert '"reason":"unknown task"' in steps["other-get-listed"]["error"], steps
        bodies = [r["body"] for r in ts_tasks.seen()]
        assert all(task not in b for b in bodies), "the server saw only its own ids"
        assert sum('"tasks/result"' in b for b in bodies) == 1 and not any('"tasks/cancel"' in b for b in bodies), bodies
    finally:
        one.stop()
        two.stop()
