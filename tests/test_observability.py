"""Metrics, audit log, access-log fields and routing headers through a real Envoy, after a
scripted session of the official SDK clients."""

from __future__ import annotations

import hashlib
import json
import re
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from harness import gateway as gw
from harness import procs
from harness.rpc import stateless

KEY = "audit-key"
CONFIG = {
    "endpoints": ["/mcp"],
    "auth": {
        "api_keys": {
            "header": "x-api-key",
            "keys": [{"name": "auditor", "sha256": hashlib.sha256(KEY.encode()).hexdigest(), "roles": ["dev"]}],
        }
    },
    "policy": {"deny": {"tools": ["delete_file"]}},
    "metrics": {"tools": ["echo", "whoami"]},
    "audit": {"enabled": True, "arguments": True, "redact": ["secret"]},
    "upstream": {"routing_headers": {"method": "x-mcp-method", "tool": "x-mcp-tool"}},
    "hold": "request",
}


@pytest.fixture(scope="module")
def beta(mcp_server_factory: Callable[..., procs.McpServer]) -> procs.McpServer:
    return mcp_server_factory("beta")


@pytest.fixture(scope="module")
def gateway(_alpha: procs.McpServer, beta: procs.McpServer, log_dir: Path) -> Iterator[gw.Gateway]:
    """The demo config; `whoami` calls are routed to the beta server by the filter's header."""
    port, admin_port = procs.free_port(), procs.free_port()
    config = gw.render_config(
        listen_port=port, admin_port=admin_port, upstream_port=_alpha.port, filter_config=CONFIG, extra_clusters={"beta": beta.port}
    )
    hcm = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    routes = hcm["route_config"]["virtual_hosts"][0]["routes"]
    routes.insert(
        0,
        {
            "match": {"prefix": "/", "headers": [{"name": "x-mcp-tool", "string_match": {"exact": "whoami"}}]},
            "route": {"cluster": "beta", "timeout": "0s"},
        },
    )
    proc = gw.launch(config, name="envoy-observability", log_dir=log_dir)
    gw.wait_ready(proc, admin_port)
    g = gw.Gateway(proc, port, admin_port, proc.stdout_path.with_suffix(".yaml"))
    yield g
    g.stop()


def prometheus(g: gw.Gateway) -> dict[str, float]:
    """`name{labels}` -> value from Envoy's /stats/prometheus, for mcp_guard_* series."""
    with urllib.request.urlopen(f"http://127.0.0.1:{g.admin_port}/stats/prometheus", timeout=5) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        if line.startswith("mcp_guard_"):
            series, _, value = line.rpartition(" ")
            out[series] = float(value)
    return out


def audit_lines(g: gw.Gateway) -> list[dict[str, Any]]:
    return [json.loads(m) for m in re.findall(r"mcp-guard\.audit (\{.*\})", g.log())]


def access_lines(g: gw.Gateway) -> list[dict[str, Any]]:
    return [json.loads(line) for line in g.proc.stdout().splitlines() if line.startswith("{") and '"mcp_decision"' in line]


def test_scripted_session_is_counted_audited_and_routed(gateway: gw.Gateway, _alpha: procs.McpServer, beta: procs.McpServer) -> None:
    _alpha.reset()
    beta.reset()
    creds = {"x-api-key": KEY, "x-request-id": "req-echo-1"}
    run = procs.run_py_client(gateway.url, "call", "echo", '{"text": "hi", "secret": "hunter2"}', headers=creds, no_validate=True)
    assert run.lines[-1]["ok"], run.lines
    run = procs.run_py_client(gateway.url, "call", "whoami", "{}", headers={"x-api-key": KEY}, no_validate=True)
    assert run.lines[-1]["ok"], run.lines
    run = procs.run_py_client(gateway.url, "call", "delete_file", '{"path": "/x"}', headers={"x-api-key": KEY}, no_validate=True)
    assert run.lines[-1]["error"]["http_status"] == 403, run.lines
    run = procs.run_py_client(gateway.url, "call", "add", '{"a": 1, "b": 2}', headers={"x-api-key": KEY}, no_validate=True)
    assert run.lines[-1]["ok"], run.lines
    body, headers = stateless("tools/call", {"name": "echo", "arguments": {"text": "x"}}, name="echo")
    assert httpx.post(gateway.url, content=body, headers=headers, timeout=10).status_code == 401
    # A client cannot steer routing: its own x-mcp-tool is replaced by the filter's.
    body, headers = stateless("tools/call", {"name": "echo", "arguments": {"text": "steer"}}, name="echo")
    resp = httpx.post(gateway.url, content=body, headers={**headers, "x-api-key": KEY, "x-mcp-tool": "whoami"}, timeout=10)
    assert resp.status_code == 200, resp.text

    # Routing: whoami went to beta, everything else to alpha.
    assert any('"whoami"' in r["body"] for r in beta.seen())
    assert not any('"whoami"' in r["body"] for r in _alpha.seen())
    assert any('"steer"' in r["body"] for r in _alpha.seen()) and not any('"steer"' in r["body"] for r in beta.seen())
    assert all(r["headers"].get("x-mcp-tool") == "echo" for r in _alpha.seen() if '"steer"' in r["body"])

    # Decision time is sampled (one decision in 8): enough lists for a few samples.
    for i in range(24):
        body, headers = stateless("tools/list", id=100 + i)
        assert httpx.post(gateway.url, content=body, headers={**headers, "x-api-key": KEY}, timeout=10).status_code == 200

    # Histograms appear once Envoy merges them (stats flush, every 5 s by default); each
    # approved echo call's duration is recorded under its tool.
    deadline = time.monotonic() + 12

    def histograms_complete(stats: dict[str, float]) -> bool:
        return stats.get('mcp_guard_call_duration_ms_count{mcp_tool="echo"}') == 2 and stats.get("mcp_guard_decision_time_us_count{}", 0) >= 3

    stats = prometheus(gateway)
    while not histograms_complete(stats):
        assert time.monotonic() < deadline, [k for k in stats if "_count" in k]
        time.sleep(0.5)
        stats = prometheus(gateway)
    series = lambda m, t, d: stats.get(f'mcp_guard_requests{{mcp_method="{m}",mcp_tool="{t}",mcp_decision="{d}"}}', 0)  # noqa: E731
    assert series("tools_call", "echo", "allowed") == 2
    assert series("tools_call", "whoami", "allowed") == 1
    assert series("tools_call", "delete_file", "denied_policy") == 1  # named by the policy: labelled
    assert series("tools_call", "other", "allowed") == 1  # add
    assert series("unknown", "none", "denied_auth") == 1  # refused before its body was read
    assert stats.get('mcp_guard_rejections{mcp_reason="forbidden"}') == 1
    assert stats.get('mcp_guard_rejections{mcp_reason="unauthenticated"}') == 1

    lines = audit_lines(gateway)
    echo = next(a for a in lines if a.get("request_id") == "req-echo-1")
    assert echo["subject"] == "auditor" and echo["method"] == "tools/call" and echo["tool"] == "echo"
    # The cluster is Envoy's choice after the routing headers: the access log has it, not the audit line.
    assert echo["decision"] == "allowed" and "upstream" not in echo
    assert echo["arguments"] == {"text": "hi", "secret": "[redacted]"}
    assert "hunter2" not in gateway.log()
    denied = next(a for a in lines if a.get("tool") == "delete_file")
    assert denied["decision"] == "denied_policy" and denied["rule"] == "global" and "delete_file" in denied["reason"]
    assert any(a["decision"] == "denied_auth" for a in lines)

    # Envoy flushes its access log on a timer.
    deadline = time.monotonic() + 10
    while len(access := access_lines(gateway)) < 6 and time.monotonic() < deadline:
        time.sleep(0.3)
    assert any(a["mcp_tool"] == "whoami" and a["upstream"] == "beta" and a["mcp_decision"] == "allowed" for a in access), access
    assert any(a["mcp_tool"] == "delete_file" and a["mcp_decision"] == "denied_policy" and str(a["status"]) == "403" for a in access), access
