"""How a request waits for the gate's decision, with and without Envoy's
allow_on_headers_stop_iteration (which Istio's WasmPlugin and Envoy Gateway's
EnvoyExtensionPolicy cannot set).

- `hold: body` (the default) works either way: the headers of an authenticated caller go on,
  the body is held, and a refused request's upstream stream is reset before any body byte
  is sent. An upstream that answers early is held until the decision.
- `hold: request` keeps even the headers (and the connection) from the upstream; it needs the
  flag, and without it a request is refused within a tick, naming the flag, never left to hang.
- The shipped Istio and Envoy Gateway resources work as the APIs generate them.

The upstream is the raw TCP sniffer (every byte it received) or, for early answers, a server
that answers as soon as the request head has arrived.
"""

from __future__ import annotations

import hashlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from harness import certs
from harness import gateway as gw
from harness import procs
from harness.http import assert_refused, read_http1_response
from harness.rpc import rpc_message, stateless

pytestmark = pytest.mark.timeout(90)

KEY = "hold-key"
AUTH = {"x-api-key": KEY, "content-type": "application/json"}
FLAG_NEEDED = "allow_on_headers_stop_iteration: true"


def config(hold: str) -> dict[str, Any]:
    return {
        "hold": hold,
        "endpoints": ["/sniff/mcp", "/early/mcp"],
        "other_paths": "deny",
        "auth": {"api_keys": {"header": "x-api-key", "keys": [{"name": "ci", "sha256": hashlib.sha256(KEY.encode()).hexdigest()}]}},
        "policy": {"deny": {"tools": ["delete_*"]}},
    }


def call(tool: str) -> bytes:
    return json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": tool, "arguments": {"text": "hi"}}}).encode()


class EarlyUpstream:
    """Answers 200 JSON as soon as a request head arrives (before its body), then records
    whatever body bytes still come on that connection."""

    ANSWER = b'{"jsonrpc":"2.0","id":1,"result":{"early":true}}'

    def __init__(self) -> None:
        self.sock = socket.create_server((procs.LOOPBACK, 0))
        self.port = self.sock.getsockname()[1]
        self.after_head: list[bytes] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn: socket.socket) -> None:
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                data += chunk
            head = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n" % len(self.ANSWER)
            conn.sendall(head + self.ANSWER)
            rest = data.partition(b"\r\n\r\n")[2]
            conn.settimeout(2)
            try:
                while chunk := conn.recv(65536):
                    rest += chunk
            except OSError:
                pass
            self.after_head.append(rest)

    def close(self) -> None:
        self.sock.close()


def start(hold: str, flag: bool, sniffer: procs.Sniffer, early: EarlyUpstream, log_dir: Path, extra: dict[str, Any] | None = None) -> gw.Gateway:
    """The test gateway in Envoy's own shape, with the flag on or off."""
    port, admin = procs.free_port(), procs.free_port()
    rendered = gw.render_config(
        listen_port=port,
        admin_port=admin,
        upstream_port=sniffer.port,
        filter_config={**config(hold), **(extra or {})},
        extra_routes={"/sniff/": sniffer.port, "/early/": early.port},
        shape="envoy",
    )
    wasm = next(f for f in gw.dicts(rendered) if f.get("name") == "envoy.filters.http.wasm")["typed_config"]["config"]
    if not flag:
        del wasm["allow_on_headers_stop_iteration"]
    proc = gw.launch(rendered, name=f"envoy-hold-{hold}-{'flag' if flag else 'noflag'}", log_dir=log_dir)
    gw.wait_ready(proc, admin)
    return gw.Gateway(proc, port, admin, proc.stdout_path.with_suffix(".yaml"))


def bodies_after_heads(sniffer: procs.Sniffer) -> list[str]:
    """What each upstream connection received after its request head."""
    return [c["bytes"].partition("\r\n\r\n")[2] for c in sniffer.connections()]


@pytest.fixture(scope="module")
def early() -> Iterator[EarlyUpstream]:
    server = EarlyUpstream()
    yield server
    server.close()


WAYS = [("body", True), ("body", False), ("request", True)]


@pytest.fixture(scope="module", params=WAYS, ids=[f"{h}-{'flag' if f else 'noflag'}" for h, f in WAYS])
def way(request: pytest.FixtureRequest, _sniffer: procs.Sniffer, early: EarlyUpstream, log_dir: Path) -> Iterator[tuple[str, gw.Gateway]]:
    hold, flag = request.param
    g = start(hold, flag, _sniffer, early, log_dir)
    yield hold, g
    g.stop()


def test_refused_body_never_reaches_the_upstream(way: tuple[str, gw.Gateway], sniffer: procs.Sniffer) -> None:
    hold, g = way
    resp = httpx.post(f"{g.base}/sniff/mcp", content=call("delete_file"), headers=AUTH, timeout=10)
    assert_refused(resp, 403, -32003, "delete_file", id=1)
    time.sleep(0.2)
    if hold == "request":
        assert sniffer.connections() == [], "hold: request lets nothing, not even a connection, upstream"
    else:
        assert all(rest == "" for rest in bodies_after_heads(sniffer)), sniffer.connections()
    sniffer.reset()
    allowed = call("echo")
    resp = httpx.post(f"{g.base}/sniff/mcp", content=allowed, headers=AUTH, timeout=10)
    assert resp.status_code == 200
    assert [allowed.decode()] == [rest for rest in bodies_after_heads(sniffer) if rest]


def test_unauthenticated_callers_send_nothing_upstream(way: tuple[str, gw.Gateway], sniffer: procs.Sniffer) -> None:
    _, g = way
    resp = httpx.post(f"{g.base}/sniff/mcp", content=call("echo"), headers={"content-type": "application/json"}, timeout=10)
    assert resp.status_code == 401
    assert sniffer.connections() == []


def test_a_slow_body_is_held_whole(way: tuple[str, gw.Gateway], sniffer: procs.Sniffer) -> None:
    """The name that completes last decides; no byte of the body goes before it."""
    hold, g = way
    body = call("delete_file")
    cut = body.index(b"delete_file") + len(b"delete")
    head = f"POST /sniff/mcp HTTP/1.1\r\nhost: gw\r\ncontent-type: application/json\r\nx-api-key: {KEY}\r\ncontent-length: {len(body)}\r\n\r\n"
    with socket.create_connection((procs.LOOPBACK, g.port), timeout=20) as s:
        s.sendall(head.encode() + body[:cut])
        time.sleep(1.0)
        if hold == "request":
            assert sniffer.connections() == []
        else:
            assert len(sniffer.connections()) == 1, "hold: body sends the head once the caller is known"
            assert bodies_after_heads(sniffer) == [""]
        s.sendall(body[cut:])
        assert read_http1_response(s)[0] == 403
    time.sleep(0.2)
    assert all(rest == "" for rest in bodies_after_heads(sniffer))


def post_late_body(port: int, path: str, body: bytes, pause: float = 0.5) -> tuple[int, bytes]:
    """A POST whose body follows its head after `pause` seconds."""
    head = f"POST {path} HTTP/1.1\r\nhost: gw\r\ncontent-type: application/json\r\nx-api-key: {KEY}\r\ncontent-length: {len(body)}\r\n\r\n"
    with socket.create_connection((procs.LOOPBACK, port), timeout=10) as s:
        s.sendall(head.encode())
        time.sleep(pause)
        try:
            s.sendall(body)
        except OSError:
            pass  # already answered and closed
        return read_http1_response(s)


@pytest.mark.parametrize("tool", ["echo", "delete_file"])
def test_an_upstream_answering_before_the_body_is_never_trusted(way: tuple[str, gw.Gateway], early: EarlyUpstream, tool: str) -> None:
    """With `hold: body` an upstream sees the head of an authenticated request before its
    body; if it answers then, the answer cannot be one to the body's messages: the client gets
    a 502 instead and the body is never sent. With `hold: request` the upstream sees the whole
    approved request or nothing."""
    hold, g = way
    early.after_head.clear()
    status, answer = post_late_body(g.port, "/early/mcp", call(tool))
    time.sleep(2.5)
    if hold == "body":
        assert status == 502, answer
        assert json.loads(answer)["error"]["data"]["reason"] == "the upstream answered before the request was complete"
        assert early.after_head == [b""]
    elif tool == "echo":
        assert (status, json.loads(answer)["result"]) == (200, {"early": True})
        assert early.after_head == [call(tool)]
    else:
        assert status == 403
        assert early.after_head == []


def test_request_hold_without_the_flag_fails_loudly(_sniffer: procs.Sniffer, sniffer: procs.Sniffer, early: EarlyUpstream, log_dir: Path) -> None:
    """The wrong combination answers within a tick or two, naming the missing setting; requests
    without a body are not affected."""
    g = start("request", False, _sniffer, early, log_dir)
    try:
        started = time.monotonic()
        resp = httpx.post(f"{g.base}/sniff/mcp", content=call("echo"), headers=AUTH, timeout=10)
        assert time.monotonic() - started < 2.0
        assert_refused(resp, 500, -32603, FLAG_NEEDED)
        assert sniffer.connections() == []
        assert FLAG_NEEDED in g.log()
        resp = httpx.delete(f"{g.base}/sniff/mcp", headers={"x-api-key": KEY}, timeout=10)
        assert resp.status_code == 200
    finally:
        g.stop()


def test_routing_on_the_body_needs_the_request_hold(sniffer: procs.Sniffer, early: EarlyUpstream, log_dir: Path) -> None:
    routed = {"upstream": {"routing_headers": {"tool": "x-mcp-tool"}}}
    log = gw.refusal(sniffer.port, {**config("body"), **routed}, name="envoy-hold-routing", log_dir=log_dir, shape="envoy")
    assert 'upstream.routing_headers: routing on the parsed message needs "hold": "request"' in log


# ---------------------------------------------------------------------------- shipped resources

REPO = procs.REPO
SPIFFE_AGENT = "spiffe://cluster.local/ns/agents/sa/planner"


def test_shipped_istio_wasmplugin_works_as_istio_generates_it(mcp_server: procs.McpServer, tmp_path: Path, log_dir: Path) -> None:
    """deploy/istio/wasmplugin.yaml as Istio renders it (no flag), callers named by their mesh
    certificate: an agent's allowed call works, a destructive one is refused before the body
    reaches the server."""
    plugin = yaml.safe_load((REPO / "deploy/istio/wasmplugin.yaml").read_text())
    ca = certs.Ca(tmp_path)
    server = ca.issue("server", dns=("localhost",), ips=(procs.LOOPBACK,), server=True)
    agent = ca.issue("planner", uris=(SPIFFE_AGENT,))
    port, admin = procs.free_port(), procs.free_port()
    rendered = gw.render_config(
        listen_port=port,
        admin_port=admin,
        upstream_port=mcp_server.port,
        filter_config="{}",
        tls={"cert": server.cert, "key": server.key, "client_ca": ca.cert_path},
        shape="envoy",
    )
    gw.reshape(rendered, "istio", plugin)
    wasm = next(f for f in gw.dicts(rendered) if f.get("name") == "mcp.mcp-guard")["typed_config"]["config"]
    assert "allow_on_headers_stop_iteration" not in wasm and wasm["failure_policy"] == "FAIL_CLOSED"
    proc = gw.launch(rendered, name="envoy-istio-shipped", log_dir=log_dir)
    gw.wait_ready(proc, admin)
    try:
        with httpx.Client(verify=certs.client_context(ca.cert_path, agent), timeout=10) as client:
            url = f"https://localhost:{port}/mcp"
            body, headers = stateless("tools/call", {"name": "echo", "arguments": {"text": "mesh"}}, name="echo")
            resp = client.post(url, content=body, headers=headers)
            assert resp.status_code == 200, resp.text
            assert "mesh" in json.dumps(rpc_message(resp)["result"])
            body, headers = stateless("tools/call", {"name": "delete_file", "arguments": {"path": "/"}}, name="delete_file")
            resp = client.post(url, content=body, headers=headers)
            assert_refused(resp, 403, -32003, "delete_file", id=1)
        assert not any("delete_file" in r["body"] for r in mcp_server.seen())
    finally:
        proc.stop()


def test_shipped_envoy_gateway_policy_works_as_envoy_gateway_generates_it(mcp_server: procs.McpServer, log_dir: Path) -> None:
    """deploy/envoy-gateway/extension-policy.yaml as Envoy Gateway renders it (no flag, filter
    enabled per route); the CI key's hash is replaced by one of a key the test knows."""
    policy = yaml.safe_load((REPO / "deploy/envoy-gateway/extension-policy.yaml").read_text())
    keys = policy["spec"]["wasm"][0]["config"]["auth"]["api_keys"]["keys"]
    ci = next(k for k in keys if "ci" in k["roles"])
    ci["sha256"] = hashlib.sha256(KEY.encode()).hexdigest()
    port, admin = procs.free_port(), procs.free_port()
    rendered = gw.render_config(listen_port=port, admin_port=admin, upstream_port=mcp_server.port, filter_config="{}", shape="envoy")
    gw.reshape(rendered, "envoy-gateway", policy)
    proc = gw.launch(rendered, name="envoy-eg-shipped", log_dir=log_dir)
    gw.wait_ready(proc, admin)
    try:
        url = f"http://{procs.LOOPBACK}:{port}/mcp"
        body, headers = stateless("tools/call", {"name": "echo", "arguments": {"text": "gateway"}}, name="echo")
        resp = httpx.post(url, content=body, headers={**headers, "x-api-key": KEY}, timeout=10)
        assert resp.status_code == 200, resp.text
        body, headers = stateless("tools/call", {"name": "ticket_delete", "arguments": {}}, name="ticket_delete")
        resp = httpx.post(url, content=body, headers={**headers, "x-api-key": KEY}, timeout=10)
        assert resp.status_code == 403
        resp = httpx.post(url, content=call("echo"), headers={"content-type": "application/json"}, timeout=10)
        assert resp.status_code == 401
    finally:
        proc.stop()
