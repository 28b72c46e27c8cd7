"""Filtered lists through a real Envoy: a caller's tools/list names only the tools its rules
let it call, in both answer forms (SSE and JSON), for the 2026-07-28 stateless client and an
rmcp session, while other answers pass untouched."""

from __future__ import annotations

import gzip
import http.server
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from harness import gateway as gw
from harness import procs
from harness.rpc import rpc_message, stateless
from test_policy import CONFIG

ALL_TOOLS = {"echo", "add", "delete_file", "whoami", "slow_count"}


@pytest.fixture(scope="module")
def sse_gateway(_alpha: procs.McpServer, log_dir: Path) -> Iterator[gw.Gateway]:
    g = gw.start_gateway(_alpha.port, CONFIG, name="envoy-lists-sse", log_dir=log_dir)
    yield g
    g.stop()


@pytest.fixture(scope="module")
def json_gateway(log_dir: Path) -> Iterator[gw.Gateway]:
    server = procs.start_mcp_server("lists-json", json_response=True, log_dir=log_dir)
    g = gw.start_gateway(server.port, CONFIG, name="envoy-lists-json", log_dir=log_dir)
    yield g
    g.stop()
    server.stop()


def tools_list(g: gw.Gateway, api_key: str) -> tuple[httpx.Response, dict]:
    body, headers = stateless("tools/list", id=7)
    resp = httpx.post(g.url, content=body, headers={**headers, "x-api-key": api_key}, timeout=10)
    assert resp.status_code == 200, resp.text
    return resp, rpc_message(resp)


@pytest.mark.parametrize("which", ["sse_gateway", "json_gateway"])
def test_tools_list_names_only_usable_tools(which: str, request: pytest.FixtureRequest) -> None:
    g = request.getfixturevalue(which)
    resp, dev = tools_list(g, "dev-key")
    if which == "json_gateway":
        assert resp.headers["content-type"].startswith("application/json")
    assert dev["id"] == 7
    assert {t["name"] for t in dev["result"]["tools"]} == {"echo", "add"}
    # Each kept tool is the server's element as it was (schema and all).
    _, admin = tools_list(g, "admin-key")
    names = {t["name"] for t in admin["result"]["tools"]}
    assert ALL_TOOLS - {"delete_file"} <= names and "delete_file" not in names
    by_name = {t["name"]: t for t in admin["result"]["tools"]}
    for tool in dev["result"]["tools"]:
        assert tool == by_name[tool["name"]]
    if which == "json_gateway":
        assert "content-length" not in resp.headers or int(resp.headers["content-length"]) == len(resp.content)
        json.loads(resp.content)


def test_rmcp_session_sees_only_allowed_tools(sse_gateway: gw.Gateway, rmcp_client_bin: Path) -> None:
    run = procs.run_rmcp_client(sse_gateway.url, "list", "close", headers={"x-api-key": "dev-key"}, binary=rmcp_client_bin)
    listed = run.first("list")
    assert listed["ok"], listed
    assert set(listed["tools"]) == {"echo", "add"}


@pytest.mark.parametrize("which", ["sse_gateway", "json_gateway"])
def test_other_answers_are_untouched(which: str, request: pytest.FixtureRequest) -> None:
    g = request.getfixturevalue(which)
    body, headers = stateless("tools/call", {"name": "echo", "arguments": {"text": "hi"}}, name="echo")
    resp = httpx.post(g.url, content=body, headers={**headers, "x-api-key": "dev-key"}, timeout=10)
    assert resp.status_code == 200, resp.text
    msg = rpc_message(resp)
    assert msg["result"]["content"][0]["text"].endswith("hi")
    if which == "json_gateway":
        assert int(resp.headers["content-length"]) == len(resp.content)


class _FakeUpstream(http.server.BaseHTTPRequestHandler):
    """Answers every POST with the list answer its path names; records Accept-Encoding."""

    seen_encodings: list[str | None] = []
    tools = [{"name": "echo", "inputSchema": {"type": "object"}}, {"name": "delete_file", "inputSchema": {"type": "object"}}]

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        self.rfile.read(int(self.headers["content-length"]))
        _FakeUpstream.seen_encodings.append(self.headers.get("accept-encoding"))
        answer = {"jsonrpc": "2.0", "id": 7, "result": {"tools": self.tools}}
        kind = self.path.rsplit("/", 1)[-1]
        headers = {"content-type": "application/json"}
        if kind == "big-json":
            answer["result"]["tools"] = [*self.tools, {"name": "pad", "description": "x" * (9 << 20)}]
            body = json.dumps(answer).encode()
        elif kind == "gzip":
            body, headers["content-encoding"] = gzip.compress(json.dumps(answer).encode()), "gzip"
        elif kind == "html":
            body, headers["content-type"] = b"<html>tools</html>", "text/html"
        else:  # big-sse: a priming event, then an event that never ends
            headers["content-type"] = "text/event-stream"
            body = b"event: message\ndata: {}\n\n" + b"data: " + b"y" * (9 << 20)
        self.send_response(200)
        for k, v in {**headers, "content-length": str(len(body))}.items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def fake_gateway(_alpha: procs.McpServer, log_dir: Path) -> Iterator[gw.Gateway]:
    config = {**CONFIG, "endpoints": ["/fake/*"]}
    with gw.with_fake_upstream(_FakeUpstream, _alpha.port, config, name="envoy-lists-fake", log_dir=log_dir) as g:
        yield g


@pytest.mark.parametrize(
    ("kind", "status", "reason"),
    [
        ("gzip", 502, "Content-Encoding"),
        ("html", 502, "neither JSON nor an event stream"),
        ("big-sse", 200, "exceeds 8388608 bytes"),
        # Over the listener's buffer limit (1 MiB in the shipped configs) Envoy itself answers 500
        # before the filter's own 8 MiB bound: still nothing unfiltered.
        ("big-json", 500, None),
    ],
)
def test_unfilterable_list_answers_fail_closed(fake_gateway: gw.Gateway, kind: str, status: int, reason: str | None) -> None:
    """A list answer the filter cannot read is never shown unfiltered: a JSON-RPC error
    (502 before the answer's head, an error event inside an SSE stream) takes its place.
    With `hold: body` a JSON answer's head goes on before its body is read (a paused head
    would stop the body callbacks without allow_on_headers_stop_iteration), so Envoy's own
    overflow becomes a reset stream instead of its 500."""
    _FakeUpstream.seen_encodings.clear()
    body, headers = stateless("tools/list", id=7)
    url = f"{fake_gateway.base}/fake/{kind}"
    headers = {**headers, "x-api-key": "dev-key", "accept-encoding": "gzip, br"}
    if kind == "big-json" and fake_gateway.hold == "body":
        with pytest.raises(httpx.RemoteProtocolError):
            httpx.post(url, content=body, headers=headers, timeout=30)
        assert _FakeUpstream.seen_encodings == [None]
        return
    resp = httpx.post(url, content=body, headers=headers, timeout=30)
    assert resp.status_code == status
    assert b"delete_file" not in resp.content
    if reason is not None:
        message = rpc_message(resp)
        assert message["id"] == 7 and message["error"]["code"] == -32603 and reason in message["error"]["data"]["reason"], message
    # The filter asked for an uncompressed answer.
    assert _FakeUpstream.seen_encodings == [None]
