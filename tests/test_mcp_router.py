"""mcp-guard in front of Envoy's native mcp_router (envoy/examples/mcp-router.yaml, run as
shipped): two real MCP servers appear as one endpoint, the official Rust SDK client sees the
aggregated tools with their backend prefixes, filtered by mcp-guard's policy, and a denied
prefixed tool never reaches its backend.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from harness import gateway as gw
from harness import procs

EXAMPLE = procs.REPO / "envoy" / "examples" / "mcp-router.yaml"


@pytest.fixture(scope="module")
def backends(mcp_server_factory: Callable[..., procs.McpServer]) -> dict[str, procs.McpServer]:
    # mcp_router in Envoy 1.40 reads backend answers as JSON only (no SSE).
    return {
        "main": mcp_server_factory("main", json_response=True),
        "warehouse": mcp_server_factory("warehouse", json_response=True, db_tools=True),
    }


@pytest.fixture(scope="module")
def router(backends: dict[str, procs.McpServer], log_dir: Path) -> Iterator[gw.Gateway]:
    g = gw.start_shipped(EXAMPLE, {18084: backends["main"].port, 18085: backends["warehouse"].port}, name="envoy-mcp-router", log_dir=log_dir)
    yield g
    g.stop()


@pytest.fixture(autouse=True)
def _fresh(backends: dict[str, procs.McpServer]) -> None:
    for server in backends.values():
        server.reset()


def tool_calls(server: procs.McpServer) -> list[str]:
    """Names of the tools/call requests that reached `server`."""
    names = []
    for request in server.seen():
        if request["method"] == "POST":
            body = json.loads(request["body"])
            if body.get("method") == "tools/call":
                names.append(body["params"]["name"])
    return names


def test_client_sees_the_aggregated_tools_its_policy_allows(router: gw.Gateway, rmcp_client_bin: Path) -> None:
    run = procs.run_rmcp_client(router.url, "list", binary=rmcp_client_bin)
    assert run.first("initialize")["server"]["name"] == "envoy-mcp-gateway", run.lines  # the router answered
    # Both servers list echo, add, delete_file, whoami, slow_count; the warehouse also db_query
    # and db_drop_table: 12 prefixed tools, of which the policy allows these four.
    assert sorted(run.first("list")["tools"]) == ["main__add", "main__echo", "main__whoami", "warehouse__db_query"]


def test_prefixed_calls_reach_their_backend_unprefixed(router: gw.Gateway, backends: dict[str, procs.McpServer], rmcp_client_bin: Path) -> None:
    run = procs.run_rmcp_client(router.url, "call:main__whoami", 'call:warehouse__db_query:{"sql":"select 1"}', binary=rmcp_client_bin)
    calls = run.steps("call")
    assert [c["ok"] for c in calls] == [True, True], run.lines
    assert calls[0]["result"]["content"][0]["text"] == "main"
    assert calls[1]["result"]["content"][0]["text"] == "warehouse: 3 rows for select 1"
    assert tool_calls(backends["main"]) == ["whoami"]
    assert tool_calls(backends["warehouse"]) == ["db_query"]


@pytest.mark.parametrize("tool", ["warehouse__db_drop_table", "main__delete_file", "main__slow_count"])
def test_denied_prefixed_tool_is_refused_before_the_router(router: gw.Gateway, backends: dict[str, procs.McpServer], rmcp_client_bin: Path, tool: str) -> None:
    run = procs.run_rmcp_client(router.url, f"call:{tool}", binary=rmcp_client_bin)
    call = run.first("call")
    assert not call["ok"], run.lines
    assert call["error"]["http_status"] == 403, call
    assert tool in json.dumps(call["error"]), call
    assert tool_calls(backends["main"]) == tool_calls(backends["warehouse"]) == []
