"""Tool results scanned through a real Envoy (`contracts.results`): the official Python SDK
server's tools (and the TypeScript SDK server's) return secrets their arguments carry, in
SSE and JSON answers, through two Envoy workers; the filter
redacts, blocks or only logs them, blocks results over `max_bytes` and answers it cannot
read, counts matches by detector and notes them in the audit log, never with the text."""

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
from harness.http import answer_json
from harness.rpc import rpc_message, stateless

AWS = "AKIAIOSFODNN7EXAMPLE"
EMAIL = "jane.doe@example.com"
CARD = "4111 1111 1111 1111"

CONFIG = {
    "endpoints": ["/mcp", "/fake/*"],
    "metrics": {"tools": ["echo", "delete_file", "db_query"]},
    "audit": {"enabled": True},
    "contracts": {
        "results": [
            {
                "tools": ["echo"],
                "detectors": ["secrets", "pii"],
                "custom": [{"name": "ticket", "pattern": "TCK-[0-9]{6}"}],
                "action": "redact",
                "max_bytes": 4096,
            },
            {"tools": ["delete_file"], "detectors": ["private_key", "aws_key"], "action": "block"},
            {"tools": ["db_query"], "detectors": ["email"], "action": "log"},
        ]
    },
}


@pytest.fixture(scope="module")
def servers(log_dir: Path) -> Iterator[dict[str, procs.McpServer]]:
    started = {
        "sse": procs.start_mcp_server("results-sse", db_tools=True, log_dir=log_dir),
        "json": procs.start_mcp_server("results-json", json_response=True, db_tools=True, log_dir=log_dir),
    }
    yield started
    for server in started.values():
        server.stop()


@pytest.fixture(scope="module")
def gateways(servers: dict[str, procs.McpServer], log_dir: Path) -> Iterator[dict[str, gw.Gateway]]:
    # Two workers, each with its own filter VM: every answer is scanned whichever takes it.
    started = {
        form: gw.start_gateway(server.port, CONFIG, name=f"envoy-results-{form}", log_dir=log_dir, concurrency=2)
        for form, server in servers.items()
    }
    yield started
    for g in started.values():
        g.stop()


ACCEPT = {"content-type": "application/json", "accept": "application/json, text/event-stream"}
_sessions: dict[int, dict[str, str]] = {}


def session(g: gw.Gateway) -> dict[str, str]:
    """The headers of a 2025-11-25 session with the server behind `g` (its answers are SSE
    unless the server answers JSON)."""
    if g.port not in _sessions:
        init = {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}
        body = {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": init}
        resp = httpx.post(g.url, json=body, headers=ACCEPT, timeout=10)
        assert resp.status_code == 200, resp.text
        head = {**ACCEPT, "mcp-session-id": resp.headers["mcp-session-id"], "mcp-protocol-version": "2025-11-25"}
        note = {"jsonrpc": "2.0", "method": "notifications/initialized"}
        assert httpx.post(g.url, json=note, headers=head, timeout=10).status_code == 202
        _sessions[g.port] = head
    return _sessions[g.port]


def call(g: gw.Gateway, tool: str, arguments: dict, *, id: int = 5, headers: dict | None = None) -> httpx.Response:
    body = {"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": tool, "arguments": arguments}}
    # A fresh connection per call, so both workers take some.
    with httpx.Client() as client:
        return client.post(g.url, json=body, headers={**session(g), **(headers or {})}, timeout=10)


def counter(g: gw.Gateway, name: str) -> int:
    return sum(v for k, v in g.stats(name).items() if k.endswith(name))


@pytest.mark.parametrize("form", ["sse", "json"])
def test_secrets_are_redacted_and_the_answer_stays_valid(form: str, gateways: dict[str, gw.Gateway]) -> None:
    g = gateways[form]
    before = counter(g, "result_matches.mcp_tool=echo.mcp_detector=aws_key")
    text = f'key {AWS}, mail "{EMAIL}", card {CARD}, ticket TCK-123456, nothing else'
    for i in range(6):
        resp = call(g, "echo", {"text": text}, id=10 + i, headers={"x-request-id": f"req-{form}-{i}"})
        assert resp.status_code == 200, resp.text
        assert resp.headers["content-type"].startswith("application/json" if form == "json" else "text/event-stream")
        message = rpc_message(resp)
        assert message["id"] == 10 + i
        got = message["result"]["content"][0]["text"]
        assert got == (
            'key [REDACTED:aws_key], mail "[REDACTED:email]", card [REDACTED:payment_card], '
            "ticket [REDACTED:ticket], nothing else"
        ), got
        assert message["result"]["structuredContent"] == {"result": got}
        assert AWS not in resp.text and EMAIL not in resp.text
    # Twice per answer: in its text content and its structuredContent.
    assert counter(g, "result_matches.mcp_tool=echo.mcp_detector=aws_key") - before == 12
    assert counter(g, "result_redacted.mcp_tool=echo") >= 6
    log = g.log()
    audit = [json.loads(line.split("mcp-guard.audit ", 1)[1]) for line in log.splitlines() if "mcp-guard.audit " in line and f"req-{form}-0" in line]
    noted = [a for a in audit if "result" in a]
    assert noted and noted[0]["result"].startswith("redacted") and "aws_key=" in noted[0]["result"], audit
    assert AWS not in log and EMAIL not in log


@pytest.mark.parametrize("form", ["sse", "json"])
def test_clean_results_pass_unchanged(form: str, gateways: dict[str, gw.Gateway]) -> None:
    resp = call(gateways[form], "echo", {"text": "build 42 ok"})
    assert resp.status_code == 200
    assert rpc_message(resp)["result"]["content"][0]["text"] == "build 42 ok"


@pytest.mark.parametrize("form", ["sse", "json"])
def test_a_blocked_result_is_an_error_for_the_call(form: str, gateways: dict[str, gw.Gateway]) -> None:
    g = gateways[form]
    resp = call(g, "delete_file", {"path": f"/tmp/{AWS}"}, id=77)
    assert resp.status_code == 200
    message = rpc_message(resp)
    assert message["id"] == 77 and message["error"]["code"] == -32603, message
    assert "aws_key" in message["error"]["data"]["reason"]
    assert AWS not in resp.text and "deleted" not in resp.text
    assert counter(g, "result_blocked.mcp_tool=delete_file") >= 1
    # A clean result of the same tool passes.
    assert rpc_message(call(g, "delete_file", {"path": "/tmp/x"}))["result"]["content"][0]["text"] == "deleted /tmp/x"


@pytest.mark.parametrize("form", ["sse", "json"])
def test_log_only_counts(form: str, gateways: dict[str, gw.Gateway]) -> None:
    g = gateways[form]
    before = counter(g, "result_matches.mcp_tool=db_query.mcp_detector=email")
    resp = call(g, "db_query", {"sql": f"select * from users where mail = '{EMAIL}'"})
    assert EMAIL in rpc_message(resp)["result"]["content"][0]["text"]
    assert counter(g, "result_matches.mcp_tool=db_query.mcp_detector=email") == before + 2  # text and structuredContent


@pytest.mark.parametrize("form", ["sse", "json"])
def test_results_over_max_bytes_are_blocked(form: str, gateways: dict[str, gw.Gateway]) -> None:
    g = gateways[form]
    resp = call(g, "echo", {"text": "x" * 6000}, id=31)
    message = rpc_message(resp)
    assert message["id"] == 31 and message["error"]["code"] == -32603, message
    assert "4096" in message["error"]["data"]["reason"]
    assert "x" * 100 not in resp.text


@pytest.mark.skipif(not gw.flag_on(), reason='"hold": "request" needs allow_on_headers_stop_iteration')
def test_a_held_json_answer_is_scanned_before_its_head_goes(servers: dict[str, procs.McpServer], log_dir: Path) -> None:
    """With `hold: request` the answer's head waits for the scan: a result over `max_bytes`
    becomes a 502 carrying the call's id; a redacted one keeps its 200."""
    g = gw.start_gateway(servers["json"].port, {**CONFIG, "hold": "request"}, name="envoy-results-held", log_dir=log_dir)
    try:
        resp = call(g, "echo", {"text": "x" * 6000}, id=41)
        assert resp.status_code == 502, resp.text
        assert resp.json()["id"] == 41 and "4096" in resp.json()["error"]["data"]["reason"]
        resp = call(g, "echo", {"text": f"mail {EMAIL}"}, id=42)
        assert resp.status_code == 200 and resp.json()["result"]["content"][0]["text"] == "mail [REDACTED:email]"
    finally:
        g.stop()


class _FakeUpstream(http.server.BaseHTTPRequestHandler):
    """Answers every POST with an echo result in the form its path names; records
    Accept-Encoding."""

    seen_encodings: list[str | None] = []
    protocol_version = "HTTP/1.1"  # the answers are chunked

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        request = json.loads(self.rfile.read(int(self.headers["content-length"])))
        if request.get("method") == "tools/list":  # the gateway's own list of a cold upstream
            self._answer_list(request["id"])
            return
        _FakeUpstream.seen_encodings.append(self.headers.get("accept-encoding"))
        answer = json.dumps({"jsonrpc": "2.0", "id": 9, "result": {"content": [{"type": "text", "text": AWS}]}}).encode()
        kind = self.path.rsplit("/", 1)[-1]
        headers = {"content-type": "application/json"}
        if kind == "gzip":
            body, headers["content-encoding"] = gzip.compress(answer), "gzip"
        elif kind == "html":
            body, headers["content-type"] = b"<html>" + answer + b"</html>", "text/html"
        elif kind == "big-event":  # an SSE event that never ends
            headers["content-type"] = "text/event-stream"
            body = b"event: message\ndata: " + b"y" * 9000
        else:  # split: the secret cut across chunks, the data across lines
            headers["content-type"] = "text/event-stream"
            cut = answer.index(b'"result"')
            body = b"event: message\ndata: " + answer[:cut] + b"\ndata: " + answer[cut:] + b"\n\n"
        self.send_response(200)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        for i in range(0, len(body), 7):
            piece = body[i : i + 7]
            self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")

    def _answer_list(self, id_: object) -> None:
        tools = [{"name": "echo", "inputSchema": {"type": "object", "properties": {"text": {"type": "string"}}}}]
        answer_json(self, {"jsonrpc": "2.0", "id": id_, "result": {"tools": tools}})

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def fake_gateway(servers: dict[str, procs.McpServer], log_dir: Path) -> Iterator[gw.Gateway]:
    with gw.with_fake_upstream(_FakeUpstream, servers["sse"].port, CONFIG, name="envoy-results-fake", log_dir=log_dir) as g:
        yield g


@pytest.mark.parametrize(
    ("kind", "status", "reason"),
    [
        ("gzip", 502, "Content-Encoding"),
        ("html", 502, "neither JSON nor an event stream"),
        ("big-event", 200, "exceeds 4096 bytes"),
        ("split", 200, None),
    ],
)
def test_unreadable_results_are_blocked(fake_gateway: gw.Gateway, kind: str, status: int, reason: str | None) -> None:
    """An answer the filter cannot read is never passed unscanned; one it can read is
    scanned event by event however the upstream cuts it."""
    _FakeUpstream.seen_encodings.clear()
    body, headers = stateless("tools/call", {"name": "echo", "arguments": {"text": "x"}}, id=9, name="echo")
    headers = {**headers, "accept-encoding": "gzip, br"}
    resp = httpx.post(f"{fake_gateway.base}/fake/{kind}", content=body, headers=headers, timeout=30)
    assert resp.status_code == status, resp.text
    assert AWS.encode() not in resp.content
    if kind == "split":  # the event's data lines joined, as SSE defines
        data = [line[5:].removeprefix(" ") for line in resp.text.splitlines() if line.startswith("data:")]
        message = json.loads("\n".join(data))
    else:
        message = rpc_message(resp)
    if reason is None:
        assert message["result"]["content"][0]["text"] == "[REDACTED:aws_key]", message
    else:
        assert message["id"] == 9 and message["error"]["code"] == -32603 and reason in message["error"]["data"]["reason"], message
    # The filter asked for an uncompressed answer.
    assert _FakeUpstream.seen_encodings == [None]


@pytest.fixture(scope="module")
def ts_gateway(log_dir: Path) -> Iterator[gw.Gateway]:
    server = procs.start_ts_server(log_dir=log_dir)
    g = gw.start_gateway(server.port, CONFIG, name="envoy-results-ts", log_dir=log_dir)
    yield g
    g.stop()
    server.stop()


def test_typescript_sdk_results_are_scanned_too(ts_gateway: gw.Gateway) -> None:
    """The official TypeScript SDK server (stateless, JSON answers): redacted and blocked."""
    head = {**ACCEPT, "mcp-protocol-version": "2025-11-25"}

    def ts_call(tool: str, arguments: dict) -> dict:
        body = {"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": tool, "arguments": arguments}}
        resp = httpx.post(ts_gateway.url, json=body, headers=head, timeout=10)
        assert resp.status_code == 200 and AWS not in resp.text, resp.text
        return rpc_message(resp)

    assert ts_call("echo", {"text": f"token {AWS} for {EMAIL}"})["result"]["content"][0]["text"] == (
        "token [REDACTED:aws_key] for [REDACTED:email]"
    )
    blocked = ts_call("delete_file", {"path": f"/keys/{AWS}"})
    assert blocked["id"] == 3 and blocked["error"]["code"] == -32603, blocked
