"""Routing, affinity and failover of the demo gateway (envoy/demo.yaml as shipped, on free
ports) with the official SDK clients: mcp-guard's x-mcp-tool header sends db_* tools to the
database server and everything else to two replicas; a session stays on the replica that
created it; when a replica dies, session-less calls fail over without a loss; a tools/call
that may have run is never retried.
"""

from __future__ import annotations

import json
import os
import re
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from clients.py_client import call_tool
from harness import demo_stack as stack
from harness import gateway as gw
from harness import procs

DEV = {"authorization": f"Bearer {stack.token('alice', ['dev'])}"}


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[stack.DemoStack]:
    d = stack.start(tmp_path_factory.mktemp("demo"), stack.free_ports())
    yield d
    d.stop()


@pytest.fixture
def fresh(demo: stack.DemoStack) -> stack.DemoStack:
    for server in demo.servers.values():
        server.reset()
    return demo


def call(url: str, tool: str, arguments: dict[str, Any] | None = None, headers: dict[str, str] | None = None) -> dict[str, Any]:
    """One stateless (2026-07-28) tools/call with the official Python SDK: its result line."""
    lines = anyio.run(lambda: call_tool(url, tool, arguments or {}, {**DEV, **(headers or {})}, validate=False))
    return next(line for line in lines if line["step"] in ("call", "connect"))


def text(line: dict[str, Any]) -> str:
    assert line["ok"], line
    return line["result"]["content"][0]["text"]


def tool_calls(server: procs.McpServer) -> list[dict[str, Any]]:
    """The tools/call requests that reached `server`: tool name and the headers it saw."""
    out = []
    for request in server.seen():
        if request["method"] == "POST":
            body = json.loads(request["body"])
            if body.get("method") == "tools/call":
                out.append({"tool": body["params"]["name"], "headers": request["headers"]})
    return out


def test_db_tools_go_to_the_db_server_and_the_rest_to_the_replicas(fresh: stack.DemoStack) -> None:
    url = fresh.gateway.url
    assert text(call(url, "db_query", {"sql": "select 1"})) == "db: 3 rows for select 1"
    for _ in range(4):
        assert text(call(url, "whoami")) in stack.REPLICAS
    # A client cannot pick the route: its own x-mcp-tool is replaced by the filter's.
    assert text(call(url, "echo", {"text": "x"}, {"x-mcp-tool": "db_query"})) == "x"

    db_calls = tool_calls(fresh.servers["db"])
    assert [c["tool"] for c in db_calls] == ["db_query"]
    assert db_calls[0]["headers"]["x-mcp-tool"] == "db_query"
    assert db_calls[0]["headers"]["x-mcp-method"] == "tools/call"
    replica_calls = [c for name in stack.REPLICAS for c in tool_calls(fresh.servers[name])]
    assert sorted(c["tool"] for c in replica_calls) == ["echo"] + ["whoami"] * 4
    assert {c["headers"]["x-mcp-tool"] for c in replica_calls} == {"echo", "whoami"}


def test_sessionless_calls_spread_over_both_replicas(fresh: stack.DemoStack) -> None:
    # Envoy's workers may keep using the first healthy replica for about a second after the
    # admin API reports both healthy; after that, round robin alternates.
    answers = [text(call(fresh.gateway.url, "whoami")) for _ in range(60)]
    assert set(answers[-10:]) == set(stack.REPLICAS), answers


def test_a_session_keeps_hitting_the_replica_that_created_it(fresh: stack.DemoStack, rmcp_client_bin: Path) -> None:
    owners = []
    for _ in range(4):
        run = procs.run_rmcp_client(fresh.gateway.url, *["call:whoami"] * 6, "close", headers=DEV, binary=rmcp_client_bin)
        answers = {text(line) for line in run.steps("call")}
        assert len(run.steps("call")) == 6 and len(answers) == 1, run.lines
        owners.append(answers.pop())
    # Every request of a session (initialize, calls, DELETE) reached its owner only, with the
    # server's own session id (the envelope Envoy adds for the client is removed again).
    server_ids = set()
    for name in stack.REPLICAS:
        other = next(n for n in stack.REPLICAS if n != name)
        own = {r["headers"].get("mcp-session-id") for r in fresh.servers[name].seen()} - {None}
        theirs = {r["headers"].get("mcp-session-id") for r in fresh.servers[other].seen()} - {None}
        assert len(own) == owners.count(name) and not own & theirs
        assert all(";UV:" not in sid for sid in own)
        server_ids |= own
    # mcp-guard runs after the stateful session filter: its audit log has the servers' ids too.
    audited = {json.loads(m).get("session_id") for m in re.findall(r"mcp-guard\.audit (\{.*\})", fresh.gateway.log())}
    assert server_ids <= audited and not any(";UV:" in (sid or "") for sid in audited)


class CallStream:
    """Sequential session-less whoami calls in a thread; `quiet()` holds the stream between
    two calls, so a replica can be killed while no call is in flight."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.results: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        while not self.stop.is_set():
            with self.lock:
                self.results.append(call(self.url, "whoami"))
            time.sleep(0.02)


def kill(server: procs.McpServer) -> None:
    os.killpg(server.proc.pid, signal.SIGKILL)
    server.proc.popen.wait(5)


def test_killing_a_replica_loses_no_sessionless_call(tmp_path: Path) -> None:
    demo = stack.start(tmp_path, stack.free_ports())
    try:
        stream = CallStream(demo.gateway.url)
        stream.thread.start()
        deadline = time.monotonic() + 15
        while {r["result"]["content"][0]["text"] for r in stream.results if r["ok"]} != set(stack.REPLICAS):
            assert time.monotonic() < deadline, stream.results
            time.sleep(0.05)
        with stream.lock:
            before = len(stream.results)
            kill(demo.servers["replica-a"])
        while len(stream.results) < before + 40:
            time.sleep(0.05)
        stream.stop.set()
        stream.thread.join(30)
        failed = [r for r in stream.results if not r["ok"]]
        assert not failed, failed
        answers = [text(r) for r in stream.results]
        assert set(answers[:before]) == set(stack.REPLICAS)
        assert set(answers[before:]) == {"replica-b"}
        # Calls that picked the dead replica were retried on the other one (connect-failure),
        # and the dead one left the rotation (outlier detection, then health checks).
        stats = demo.gateway.stats("cluster.mcp_demo.")
        assert stats["cluster.mcp_demo.upstream_rq_retry_success"] >= 1, stats
        deadline = time.monotonic() + 5
        while gw.healthy_hosts(demo.gateway.admin_port, "mcp_demo") != {f"127.0.0.1:{demo.servers['replica-b'].port}"}:
            assert time.monotonic() < deadline, gw.healthy_hosts(demo.gateway.admin_port, "mcp_demo")
            time.sleep(0.1)
    finally:
        demo.stop()


def test_a_call_in_flight_on_a_dying_replica_is_not_retried(tmp_path: Path) -> None:
    demo = stack.start(tmp_path, stack.free_ports())
    try:
        result: dict[str, Any] = {}
        worker = threading.Thread(target=lambda: result.update(call(demo.gateway.url, "slow_count", {"n": 3, "interval": 1.0})))
        worker.start()
        deadline = time.monotonic() + 10
        owner = None
        while owner is None:
            assert time.monotonic() < deadline, "slow_count reached no replica"
            owner = next((n for n in stack.REPLICAS if tool_calls(demo.servers[n])), None)
            time.sleep(0.05)
        kill(demo.servers[owner])
        worker.join(30)
        assert not result["ok"], result  # the client learns the call failed
        survivor = next(n for n in stack.REPLICAS if n != owner)
        assert tool_calls(demo.servers[survivor]) == []  # and it did not run a second time
    finally:
        demo.stop()
