"""Endpoint matching no server framework can outflank: every spelling of `/mcp` that a real
server of an official SDK might serve is inspected by mcp-guard, through a real Envoy, with
and without Envoy's own path normalisation, and under the shipped configurations.

Servers: the TypeScript SDK on Express (case-insensitive, trailing slash ignored), the Python
SDK on Starlette, rmcp on axum (`nest_service("/mcp")`: paths below it too). Each records the
HTTP requests it receives (`/__seen`), so "never reached" is checked at the upstream.

`MCP_GUARD_PATH_TABLE=file.json` writes each variant's outcome per server and gateway.
"""

from __future__ import annotations

import copy
import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness import demo_stack
from harness import gateway as gw
from harness import procs

DENY = {"policy": {"deny": {"tools": ["delete_*"]}}}
ROUTER_YAML = gw.REPO / "envoy" / "examples" / "mcp-router.yaml"

# Every spelling of /mcp we know a server or proxy to read as /mcp, and a few it must not
# (bad escapes: refused 400, whatever reads them).
VARIANTS = [
    "/mcp", "/MCP", "/Mcp", "/mCP", "/mcp/", "/MCP/", "/Mcp/", "/mcp//", "/mcp?x=1", "/MCP/?x=1",
    "/mcp;x=1", "/mcp;", "/MCP;x=1/", "/mcp/;x", "/mcp%2F", "/mcp%2f", "/mcp%5C", "/mcp%3Bx",
    "/%6dcp", "/%6D%63%70", "/m%43p", "/x/../mcp", "/x/%2e%2e/mcp", "/x/..;/mcp", "/./mcp",
    "/mcp/.", "//mcp", "///mcp/", "/mcp\\", "\\mcp",
]
BAD_ESCAPES = ["/mcp%", "/mcp%2", "/mcp%zz", "/%C0%AFmcp", "/mcp%FF"]
SERVERS = ["ts", "py", "rmcp"]
GATEWAYS = ["default", "no-normalise", "demo", "mcp-router"]
TABLE: dict[str, dict[str, str]] = {}


def rpc(method: str, params: dict[str, Any]) -> bytes:
    return json.dumps({"jsonrpc": "2.0", "id": 7, "method": method, "params": params}).encode()


INITIALIZE = rpc(
    "initialize", {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "probe", "version": "1"}}
)


def post_raw(port: int, path: str, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    """One HTTP/1.1 POST with `path` exactly as given in the request line (no client-side
    normalisation): the status and body (by content-length, else to the close)."""
    lines = [
        f"POST {path} HTTP/1.1",
        f"host: 127.0.0.1:{port}",
        "content-type: application/json",
        "accept: application/json, text/event-stream",
        "mcp-protocol-version: 2025-06-18",
        f"content-length: {len(body)}",
        "connection: close",
        *(f"{k}: {v}" for k, v in (headers or {}).items()),
    ]
    with socket.create_connection((procs.LOOPBACK, port), timeout=20) as s:
        s.sendall("\r\n".join(lines).encode("latin-1") + b"\r\n\r\n" + body)
        data = b""
        while (chunk := s.recv(65536)) and not _complete(data := data + chunk):
            pass
    head, _, rest = data.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), rest


def _complete(data: bytes) -> bool:
    head, found, rest = data.partition(b"\r\n\r\n")
    lengths = [line.split(b":")[1] for line in head.lower().split(b"\r\n") if line.startswith(b"content-length:")]
    return bool(found and lengths and len(rest) >= int(lengths[0]))


@pytest.fixture(scope="module")
def servers(log_dir: Path) -> Iterator[dict[str, procs.McpServer]]:
    started = {
        "ts": procs.start_ts_server(log_dir=log_dir),
        "py": procs.start_mcp_server("paths-py", log_dir=log_dir),
        "rmcp": procs.start_rmcp_server(log_dir=log_dir),
    }
    yield started
    for server in started.values():
        server.stop()
    out = os.environ.get("MCP_GUARD_PATH_TABLE")
    if out:
        Path(out).write_text(json.dumps(TABLE, indent=1, sort_keys=True))


def no_normalise(config: dict[str, Any]) -> dict[str, Any]:
    """The test gateway with Envoy's path normalisation switched off: what a mesh that never
    enabled it does."""
    config = copy.deepcopy(config)
    hcm = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    hcm.update(normalize_path=False, merge_slashes=False, path_with_escaped_slashes_action="KEEP_UNCHANGED")
    return config


def start_rendered(config: dict[str, Any], name: str, log_dir: Path) -> gw.Gateway:
    admin = config["admin"]["address"]["socket_address"]["port_value"]
    port = config["static_resources"]["listeners"][0]["address"]["socket_address"]["port_value"]
    proc = gw.launch(config, name=name, log_dir=log_dir)
    gw.wait_ready(proc, admin)
    return gw.Gateway(proc, port, admin, proc.stdout_path.with_suffix(".yaml"))


def start(kind: str, server: procs.McpServer, log_dir: Path) -> tuple[gw.Gateway, dict[str, str], str]:
    """A gateway of `kind` in front of `server`: the gateway, the headers its callers need and
    the name under which the denied tool is called."""
    name = f"envoy-paths-{kind}-{server.name}"
    if kind in ("default", "no-normalise"):
        ports = {"listen_port": procs.free_port(), "admin_port": procs.free_port()}
        config = gw.render_config(**ports, upstream_port=server.port, filter_config=DENY)
        return start_rendered(config if kind == "default" else no_normalise(config), name, log_dir), {}, "delete_file"
    if kind == "demo":
        upstreams = {18081: server.port, 18082: server.port, 18083: server.port, 18090: server.port}
        g = gw.start_shipped(gw.DEMO_YAML, upstreams, name=name, log_dir=log_dir)
        gw.wait_healthy(g.admin_port, "mcp_demo", 1)
        return g, {"x-api-key": demo_stack.CI_KEY}, "delete_file"
    g = gw.start_shipped(ROUTER_YAML, {18084: server.port, 18085: server.port}, name=name, log_dir=log_dir)
    return g, {}, "main__delete_file"


def reached(server: procs.McpServer, marker: str) -> bool:
    return any(marker in request["body"] for request in server.seen())


def outcome(status: int, body: bytes) -> str:
    """`403 -32003 policy` (the tool was judged), `403 -32003 path`, `400 -32600 path`, or the
    status with what answered (`upstream`, `envoy`)."""
    try:
        error = json.loads(body)["error"]
        reason = error["data"]["reason"]
    except (ValueError, KeyError, TypeError):
        return f"{status} envoy-or-upstream"
    kind = "policy" if "delete_file" in reason else "path"
    return f"{status} {error['code']} {kind}"


@pytest.mark.parametrize("kind", GATEWAYS)
@pytest.mark.parametrize("which", SERVERS)
def test_no_spelling_of_the_endpoint_reaches_an_upstream(
    servers: dict[str, procs.McpServer], log_dir: Path, which: str, kind: str
) -> None:
    server = servers[which]
    gateway, headers, tool = start(kind, server, log_dir)
    try:
        denied = rpc("tools/call", {"name": tool, "arguments": {"path": "/etc/passwd"}})
        results: dict[str, str] = {}
        for path in VARIANTS + BAD_ESCAPES:
            server.reset()
            status, body = post_raw(gateway.port, path, denied, headers)
            leaked = reached(server, "/etc/passwd")
            results[path] = ("REACHED " if leaked else "") + outcome(status, body)
        TABLE[f"{which} {kind}"] = results
        # An allowed request on the canonical path still goes through (mcp_router answers
        # initialize itself; tests/test_mcp_router.py drives it with the SDK clients).
        server.reset()
        status, body = post_raw(gateway.port, "/mcp", INITIALIZE, headers)
        assert status == 200 and b"serverInfo" in body, (status, body[:300])
        assert kind == "mcp-router" or reached(server, '"probe"')
    finally:
        gateway.stop()
    leaks = {path: r for path, r in results.items() if r.startswith("REACHED")}
    assert not leaks, leaks
    wrong = {
        path: r
        for path, r in results.items()
        if r not in ("403 -32003 policy", "400 -32600 path") and not r.startswith("400 envoy")
    }
    assert not wrong, wrong
    escapes = {path: results[path] for path in BAD_ESCAPES}
    assert all(r in ("400 -32600 path", "400 envoy-or-upstream") for r in escapes.values()), escapes


def test_the_servers_really_serve_other_spellings(servers: dict[str, procs.McpServer]) -> None:
    """Without the gateway: which spellings reach each server's MCP handler (an `initialize`
    answered with the server's info). Express serves case and trailing-slash variants: the
    bypass the canonical matching closes was real. Starlette decodes escapes before routing;
    axum's `nest_service` serves paths below `/mcp`."""
    served: dict[str, list[str]] = {}
    for which, server in servers.items():
        served[which] = [p for p in VARIANTS if b"serverInfo" in post_raw(server.port, p, INITIALIZE)[1]]
    TABLE["direct initialize served"] = {which: " ".join(paths) for which, paths in served.items()}
    assert {"/MCP", "/mcp/", "/Mcp/", "/MCP/?x=1"} <= set(served["ts"]), served
    assert {"/%6dcp", "/%6D%63%70"} <= set(served["py"]), served  # Starlette decodes first
    assert {"/mcp/", "/mcp//", "/mcp/;x", "/mcp/."} <= set(served["rmcp"]), served  # nest_service
    assert all("/mcp" in paths for paths in served.values()), served


@pytest.mark.parametrize("which", SERVERS)
def test_sdk_clients_work_through_the_default_gateway(
    servers: dict[str, procs.McpServer], log_dir: Path, which: str, rmcp_client_bin: Path
) -> None:
    server = servers[which]
    gateway, _, _ = start("default", server, log_dir)
    try:
        mode = "2026-07-28" if which == "py" else "legacy"
        run = procs.run_py_client(gateway.url, "call", "echo", '{"text":"via py"}', mode=mode, no_validate=True)
        assert run.first("call")["ok"], run.lines
        denied = procs.run_py_client(gateway.url, "call", "delete_file", '{"path":"x"}', mode=mode, no_validate=True)
        assert denied.first("call")["error"]["code"] == -32003, denied.lines
        if which == "rmcp":
            rmcp = procs.run_rmcp_client(gateway.url, "call:echo:{\"text\":\"via rmcp\"}", binary=rmcp_client_bin)
            assert rmcp.first("call")["ok"], rmcp.lines
        assert not reached(server, '"path":"x"') and not reached(server, '"path": "x"')
    finally:
        gateway.stop()
