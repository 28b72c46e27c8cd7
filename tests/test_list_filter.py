"""Filtered lists through a real Envoy: a caller's tools/list names only the tools its rules
let it call, in both answer forms (SSE and JSON), for the 2026-07-28 stateless client and an
rmcp session, while other answers pass untouched."""

from __future__ import annotations

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
