"""Calls checked against their tool's learned inputSchema, through a real Envoy, with the
official Python SDK server and client: `Mcp-Param-*` headers must agree with the arguments
(SEP-2243), and argument contracts (`contracts.arguments`) refuse calls that violate the
schema. The schema is learned from a tools/list answer on one Envoy worker and used by the
other (shared data); a second Envoy process that never saw a list (a cold gateway) lists the
upstream's tools itself before it judges the call, and fails closed when it cannot."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from clients.py_client import call_tool
from harness import gateway as gw
from harness import procs
from harness.http import answer_json, assert_refused
from harness.rpc import rpc_message, stateless
from test_tool_definitions import fetch_count, start_balanced_gateway, worker_connections

pytestmark = pytest.mark.timeout(120)

CONFIG: dict[str, Any] = {"contracts": {"arguments": [{"tools": ["deploy"], "mode": "enforce"}]}}


@pytest.fixture(scope="module")
def deployer(mcp_server_factory: Callable[..., procs.McpServer]) -> procs.McpServer:
    return mcp_server_factory("deployer", param_tools=True, json_response=True)


@pytest.fixture(scope="module")
def two_workers(deployer: procs.McpServer, log_dir: Path) -> Iterator[gw.Gateway]:
    g = start_balanced_gateway(deployer.port, CONFIG, "envoy-contracts", log_dir)
    yield g
    g.stop()


def call(client: httpx.Client, url: str, arguments: dict[str, Any], headers: dict[str, str], id: int = 5) -> httpx.Response:
    body, base = stateless("tools/call", {"name": "deploy", "arguments": arguments}, id=id, name="deploy")
    return client.post(url, content=body, headers={**base, **headers}, timeout=10)


def list_tools(client: httpx.Client, url: str) -> set[str]:
    body, headers = stateless("tools/list", id=2)
    resp = client.post(url, content=body, headers=headers, timeout=10)
    assert resp.status_code == 200, resp.text
    return {t["name"] for t in rpc_message(resp)["result"]["tools"]}


def contract_counts(g: gw.Gateway) -> dict[str, int]:
    """Argument checks by outcome (every tool is `other`: no policy names one)."""
    prefix = "mcp_guard.contract_arguments.mcp_tool=other.mcp_result="
    return {k.split(prefix)[1]: v for k, v in g.stats("contract_arguments").items() if prefix in k}


def test_learned_on_one_worker_checked_on_the_other(two_workers: gw.Gateway, deployer: procs.McpServer) -> None:
    url = two_workers.url
    before = worker_connections(two_workers)
    # One connection lists (and stays open); the other, on the other worker, calls.
    with httpx.Client() as lister, httpx.Client() as caller:
        assert "deploy" in list_tools(lister, url)
        deployer.reset()
        ok = call(caller, url, {"region": "eu-west", "replicas": 2}, {"mcp-param-region": "eu-west"})
        assert ok.status_code == 200, ok.text
        assert "deployed 2 to eu-west" in json.dumps(rpc_message(ok))
        # The base64 form of the same value agrees too; unknown Mcp-Param headers pass.
        ok = call(caller, url, {"region": "eu-west"}, {"mcp-param-region": "=?base64?ZXUtd2VzdA==?=", "mcp-param-trace": "x"})
        assert ok.status_code == 200, ok.text
        assert len(deployer.seen()) == 2
        seen_headers = deployer.seen()[1]["headers"]
        assert seen_headers.get("mcp-param-trace") == "x"
        # (Measured before the refusals: Envoy may close a connection after a local reply.)
        after = worker_connections(two_workers)
        assert sorted(after[w] - before.get(w, 0) for w in after) == [1, 1], (before, after)
        refusals = [
            ({"region": "eu-west"}, {"mcp-param-region": "us-east"}, 400, -32020, "Mcp-Param-Region"),
            ({"region": "eu-west"}, {}, 400, -32020, "Mcp-Param-Region"),
            ({"region": "eu-west"}, {"mcp-param-region": "=?base64?***?="}, 400, -32020, "Mcp-Param-Region"),
            # Headers agree, the schema does not (replicas is 1..5): never echoing the value.
            ({"region": "eu-west", "replicas": 9}, {"mcp-param-region": "eu-west"}, 400, -32602, '"/replicas" fails "maximum"'),
            ({"replicas": 1}, {}, 400, -32602, 'fails "required"'),
        ]
        for arguments, headers, status, code, reason in refusals:
            resp = call(caller, url, arguments, headers, id=7)
            assert_refused(resp, status, code, reason, id=7)
        assert "9" not in json.dumps(call(caller, url, {"region": "eu-west", "replicas": 9}, {"mcp-param-region": "eu-west"}).json()["error"]["message"])
    # Nothing refused reached the server.
    assert len(deployer.seen()) == 2
    counts = contract_counts(two_workers)
    assert counts == {"refused": 3, "valid": 2}, counts


def test_the_official_client_mirrors_the_header_and_passes(two_workers: gw.Gateway) -> None:
    [line] = anyio.run(lambda: call_tool(two_workers.url, "deploy", {"region": "ap-south", "replicas": 1}, mode="2026-07-28", timeout=10))
    assert line["ok"], line
    [line] = anyio.run(lambda: call_tool(two_workers.url, "deploy", {"region": "ap-south", "replicas": 7}, mode="2026-07-28", timeout=10, validate=False))
    assert not line["ok"] and line["error"]["code"] == -32602, line


def test_a_cold_gateway_lists_the_tools_on_demand(deployer: procs.McpServer, two_workers: gw.Gateway, log_dir: Path) -> None:
    """A second Envoy process shares nothing with the first: its first call finds no schema,
    so the gateway lists the upstream's tools itself (stateless, like the client), learns
    them, and checks the call: a mismatched header is refused, a good call passes, and the
    server saw one list and only the good call."""
    assert two_workers  # the first process has learned the schema already
    cold = gw.start_gateway(deployer.port, CONFIG, name="envoy-contracts-cold", log_dir=log_dir)
    try:
        before = len(deployer.seen(own_lists=True))
        with httpx.Client() as client:
            resp = call(client, cold.url, {"region": "eu-west"}, {"mcp-param-region": "us-east"}, id=3)
            assert_refused(resp, 400, -32020, "Mcp-Param-Region", id=3)
            resp = call(client, cold.url, {"region": "eu-west"}, {"mcp-param-region": "eu-west"}, id=4)
            assert resp.status_code == 200, resp.text
        seen = deployer.seen(own_lists=True)[before:]
        methods = [json.loads(r["body"])["method"] for r in seen]
        assert methods == ["tools/list", "tools/call"], methods
        listed = seen[0]
        assert listed["headers"].get("mcp-method") == "tools/list", listed
        assert fetch_count(cold) == {"ok": 1}
    finally:
        cold.stop()


def test_concurrent_cold_calls_share_one_list(deployer: procs.McpServer, log_dir: Path) -> None:
    """Calls that arrive while the list is in flight wait on it: one list for all of them."""
    cold = gw.start_gateway(deployer.port, CONFIG, name="envoy-contracts-concurrent", log_dir=log_dir)
    try:
        def one(i: int) -> int:
            with httpx.Client() as client:
                return call(client, cold.url, {"region": "eu-west"}, {"mcp-param-region": "eu-west"}, id=10 + i).status_code

        results: list[int] = []
        threads = [threading.Thread(target=lambda i=i: results.append(one(i))) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert results == [200] * 8, results
        assert fetch_count(cold) == {"ok": 1}
    finally:
        cold.stop()


class SlowUpstream(http.server.BaseHTTPRequestHandler):
    """Answers nothing in time."""

    def do_POST(self) -> None:
        threading.Event().wait(3)

    def log_message(self, *args: object) -> None:
        pass


def test_a_list_that_does_not_come_fails_closed(deployer: procs.McpServer, log_dir: Path) -> None:
    """The upstream does not answer the gateway's list in tools.fetch_timeout_ms: the call is
    refused with 503 and Retry-After, carrying its id, and never forwarded."""
    server = http.server.ThreadingHTTPServer((procs.LOOPBACK, 0), SlowUpstream)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    config = {**CONFIG, "hold": "request", "tools": {"fetch_timeout_ms": 300}}
    g = gw.start_gateway(server.server_address[1], config, name="envoy-contracts-slow", log_dir=log_dir)
    try:
        with httpx.Client() as client:
            resp = call(client, g.url, {"region": "eu-west"}, {"mcp-param-region": "eu-west"}, id=6)
            assert_refused(resp, 503, -32603, "could not be listed", id=6)
            assert resp.headers["retry-after"] == "1"
        assert fetch_count(g) == {"failed": 1}
    finally:
        g.stop()
        server.shutdown()


class InvalidHeaderUpstream(http.server.BaseHTTPRequestHandler):
    """Lists two tools, one with an `x-mcp-header` on an object property (which the
    revision forbids; the official SDK server refuses to register such a tool)."""

    TOOLS = [
        {"name": "ok", "inputSchema": {"type": "object", "properties": {"region": {"type": "string", "x-mcp-header": "Region"}}}},
        {"name": "bad", "inputSchema": {"type": "object", "properties": {"spec": {"type": "object", "x-mcp-header": "Spec"}}}},
    ]

    def do_POST(self) -> None:
        request = json.loads(self.rfile.read(int(self.headers.get("content-length", "0"))))
        answer_json(self, {"jsonrpc": "2.0", "id": request["id"], "result": {"tools": self.TOOLS}})

    def log_message(self, *args: object) -> None:
        pass


def test_a_tool_with_an_invalid_header_declaration_is_left_out(log_dir: Path) -> None:
    server = http.server.ThreadingHTTPServer((procs.LOOPBACK, 0), InvalidHeaderUpstream)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    g = gw.start_gateway(server.server_address[1], {}, name="envoy-invalid-header", log_dir=log_dir)
    try:
        with httpx.Client() as client:
            # Directly, the server lists both; through the gateway the invalid one is gone.
            assert list_tools(client, f"http://{procs.LOOPBACK}:{server.server_address[1]}/mcp") == {"ok", "bad"}
            assert list_tools(client, g.url) == {"ok"}
        assert 'tool "bad" of upstream' in g.log() and "has an invalid x-mcp-header (/spec: " in g.log()
    finally:
        g.stop()
        server.shutdown()
