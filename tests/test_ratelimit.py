"""Rate limits through a real Envoy: the 429 an official SDK client sees, per-tool limits
that leave other tools and callers alone, batches that pass whole or consume nothing,
exactness across two Envoy workers (local buckets in shared data), and global limits shared
by two Envoy processes through a Rate Limit Service backed by a real redis-server."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from harness import gateway as gw
from harness import procs
from harness import ratelimit as rl
from harness.rpc import stateless

KEYS = ("alice-key", "bob-key")


def api_key(secret: str) -> dict[str, Any]:
    return {"name": secret.removesuffix("-key"), "sha256": hashlib.sha256(secret.encode()).hexdigest()}


def config(limits: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {
        "endpoints": ["/mcp"],
        "auth": {"api_keys": {"header": "x-api-key", "keys": [api_key(k) for k in KEYS]}},
        "rate_limits": {"limits": limits, **extra},
    }


BEHAVIOUR = {**config(
    [
        # Per caller and tool: two echo calls, ever.
        {"name": "echo-per-caller", "tools": ["echo"], "key": ["api_key", "tool"], "bucket": {"capacity": 2}},
        # Per caller, any tool: add costs 3 of 10 tokens, refilled at 1 per second.
        {
            "name": "calls",
            "methods": ["tools/call"],
            "key": ["api_key"],
            "bucket": {"capacity": 10, "refill": {"tokens": 1, "per_seconds": 1}},
            "cost": {"tools": {"add": 3, "echo": 0}},
        },
    ]
), "audit": {"enabled": True}}


@pytest.fixture(scope="module")
def gateway(_alpha: procs.McpServer, log_dir: Path) -> Iterator[gw.Gateway]:
    g = gw.start_gateway(_alpha.port, BEHAVIOUR, name="envoy-ratelimit", log_dir=log_dir)
    yield g
    g.stop()


def post(g: gw.Gateway, body: bytes, headers: dict[str, str], key: str) -> httpx.Response:
    return httpx.post(g.url, content=body, headers={**headers, "x-api-key": key}, timeout=10)


def call(g: gw.Gateway, tool: str, key: str, arguments: dict[str, Any] | None = None) -> httpx.Response:
    body, headers = stateless("tools/call", {"name": tool, "arguments": arguments or {"text": "x", "a": 1, "b": 2}}, name=tool)
    return post(g, body, headers, key)


def counter(g: gw.Gateway, name: str) -> int:
    """The filter's counter `name` (e.g. `mcp_guard.ratelimit_contention`), summed over workers."""
    return sum(v for k, v in g.stats(name).items() if k.endswith(name))


def sdk_call(g: gw.Gateway, tool: str, key: str, arguments: str) -> dict[str, Any]:
    run = procs.run_py_client(g.url, "call", tool, arguments, headers={"x-api-key": key}, no_validate=True)
    return run.first("call")


def test_sdk_client_sees_429_with_the_limit_and_the_wait(gateway: gw.Gateway, mcp_server: procs.McpServer) -> None:
    for _ in range(2):
        assert sdk_call(gateway, "echo", "alice-key", '{"text":"hi"}')["ok"]
    refused = sdk_call(gateway, "echo", "alice-key", '{"text":"hi"}')
    assert not refused["ok"]
    error = refused["error"]
    assert (error["http_status"], error["code"]) == (429, -32029), error
    # No refill: this call can never pass again, and the data says so.
    assert error["data"]["limit"] == "echo-per-caller"
    assert error["data"]["retry_after_seconds"] is None
    echoed = [r for r in mcp_server.seen() if '"echo"' in r["body"]]
    assert len(echoed) == 2

    # Another caller, and another tool of the same caller, are not affected.
    assert sdk_call(gateway, "echo", "bob-key", '{"text":"hi"}')["ok"]
    assert sdk_call(gateway, "add", "alice-key", '{"a":1,"b":2}')["ok"]


def test_429_headers_follow_the_ietf_draft(gateway: gw.Gateway) -> None:
    # bob: add costs 3 of 10 tokens, refilled at 1 per second: the fourth call or so is refused.
    for _ in range(6):
        resp = call(gateway, "add", "bob-key")
        if resp.status_code != 200:
            break
    assert resp.status_code == 429, resp.text
    retry = int(resp.headers["retry-after"])
    assert 1 <= retry <= 3
    assert resp.headers["ratelimit-policy"] == '"calls";q=10;w=10'
    # Whole tokens left: the wait for the missing ones, rounded up, is exactly 3 - r seconds.
    assert resp.headers["ratelimit"] == f'"calls";r={3 - retry};t={retry}'
    body = resp.json()
    assert body["id"] == 1
    assert body["error"]["code"] == -32029
    assert body["error"]["data"] == {
        "reason": f'rate limit "calls" exceeded; retry in {retry} s',
        "limit": "calls",
        "retry_after_seconds": retry,
    }
    # After the wait, it passes again.
    time.sleep(retry)
    assert call(gateway, "add", "bob-key").status_code == 200
    assert counter(gateway, "mcp_guard.rejections.mcp_reason=rate_limited") > 0
    audit = [json.loads(line.split("mcp-guard.audit ", 1)[1]) for line in gateway.log().splitlines() if "mcp-guard.audit " in line]
    limited = [a for a in audit if a.get("decision") == "denied_limit" and a.get("tool") == "add"]
    assert limited, audit[-5:]
    assert all(a["limit"] == "calls" and "rule" not in a for a in limited), limited


BATCH = config([{"name": "batch", "key": ["tool"], "methods": ["tools/call"], "bucket": {"capacity": 2}}])


def test_a_refused_batch_consumes_nothing(_alpha: procs.McpServer, mcp_server: procs.McpServer, log_dir: Path) -> None:
    g = gw.start_gateway(_alpha.port, BATCH, name="envoy-ratelimit-batch", log_dir=log_dir)
    try:
        def batch(n: int) -> httpx.Response:
            msgs = [{"jsonrpc": "2.0", "id": i, "method": "tools/call", "params": {"name": "echo", "arguments": {"text": "b"}}} for i in range(n)]
            headers = {"content-type": "application/json", "accept": "application/json, text/event-stream"}
            return post(g, json.dumps(msgs).encode(), headers, "alice-key")

        refused = batch(3)
        assert refused.status_code == 429, refused.text
        assert refused.json()["id"] is None
        assert not any('"echo"' in r["body"] for r in mcp_server.seen())
        # Nothing was taken: the full capacity is still there, then nothing.
        assert call(g, "echo", "alice-key").status_code == 200
        assert call(g, "echo", "bob-key").status_code == 200
        assert call(g, "echo", "alice-key").status_code == 429
    finally:
        g.stop()


def hammer(url: str, total: int, threads: int, *, duration: float | None = None, key: str = "alice-key", tool: str = "echo") -> tuple[list[int], float, float]:
    """`total` tools/call requests (or as many as fit in `duration` seconds) from `threads`
    threads, each with its own connection: the statuses, and the time of the first send and
    of the last answer."""
    body, headers = stateless("tools/call", {"name": tool, "arguments": {"text": "x"}}, name=tool)
    headers = {**headers, "x-api-key": key}
    statuses: list[int] = []
    lock = threading.Lock()
    start = threading.Barrier(threads)
    times: list[float] = []

    def worker(n: int) -> None:
        with httpx.Client(timeout=30) as client:
            start.wait()
            with lock:
                times.append(time.monotonic())
            deadline = time.monotonic() + duration if duration else None
            sent = 0
            while (sent < n) if deadline is None else (time.monotonic() < deadline):
                sent += 1
                status = client.post(url, content=body, headers=headers).status_code
                with lock:
                    statuses.append(status)
                    times.append(time.monotonic())

    per, extra = divmod(total, threads)
    pool = [threading.Thread(target=worker, args=(per + (i < extra),)) for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return statuses, min(times), max(times)


N = 20


def served_by_workers(g: gw.Gateway) -> list[int]:
    """Connections each Envoy worker accepted."""
    stats = g.stats("worker_")
    return [v for k, v in sorted(stats.items()) if k.startswith("listener.") and k.endswith("downstream_cx_total")]


def test_exactly_capacity_passes_across_two_workers(_alpha: procs.McpServer, mcp_server: procs.McpServer, log_dir: Path) -> None:
    cfg = config([{"name": "exact", "key": ["api_key"], "methods": ["tools/call"], "bucket": {"capacity": N}}])
    g = gw.start_gateway(_alpha.port, cfg, name="envoy-ratelimit-exact", log_dir=log_dir, concurrency=2)
    try:
        statuses, _, _ = hammer(g.url, 10 * N, threads=8)
        assert sorted(set(statuses)) == [200, 429]
        assert statuses.count(200) == N, statuses.count(200)
        assert statuses.count(429) == 9 * N
        assert len([r for r in mcp_server.seen() if '"tools/call"' in r["body"]]) == N
        workers = served_by_workers(g)
        assert len(workers) == 2 and min(workers) > 0, workers
        refused = counter(g, "mcp_guard.rejections.mcp_reason=rate_limited")
        limited = counter(g, "mcp_guard.requests.mcp_method=tools_call.mcp_tool=other.mcp_decision=denied_limit")
        assert (refused, limited) == (9 * N, 9 * N)
        counters = {name: counter(g, f"mcp_guard.ratelimit_{name}") for name in ("contention", "overflow", "service_errors")}
        print(
            f"\nexactness (local, concurrency 2): {statuses.count(200)} of {len(statuses)} passed, capacity {N}; "
            f"connections per worker {workers}; counters {counters}"
        )
    finally:
        g.stop()


def test_contention_is_counted_and_follows_on_contention(_alpha: procs.McpServer, log_dir: Path) -> None:
    """One compare-and-swap attempt per update, two workers, 16 connections: the updates that
    lose their race are refused (on_contention deny), each one counted."""
    cfg = config([{"name": "hot", "bucket": {"capacity": 1000000}}], cas_retries=1, on_contention="deny")
    g = gw.start_gateway(_alpha.port, cfg, name="envoy-ratelimit-contention", log_dir=log_dir, concurrency=2)
    try:
        statuses, _, _ = hammer(g.url, 3000, threads=16)
        contention = counter(g, "mcp_guard.ratelimit_contention")
        print(f"\ncontention (cas_retries 1, concurrency 2): {contention} of {len(statuses)} updates lost their race")
        assert set(statuses) <= {200, 429}
        assert statuses.count(429) == contention
        assert counter(g, "mcp_guard.rejections.mcp_reason=rate_limited") == contention
    finally:
        g.stop()


def test_refill_stays_within_capacity_plus_rate_times_window(_alpha: procs.McpServer, log_dir: Path) -> None:
    capacity, rate = 10, 20
    cfg = config([{"name": "refill", "key": ["api_key"], "bucket": {"capacity": capacity, "refill": {"tokens": rate}}}])
    g = gw.start_gateway(_alpha.port, cfg, name="envoy-ratelimit-refill", log_dir=log_dir, concurrency=2)
    try:
        statuses, first, last = hammer(g.url, 0, threads=6, duration=2.0)
        window = last - first
        passed = statuses.count(200)
        bound = capacity + rate * window
        print(f"\nrefill (local, concurrency 2): {passed} passed in {window:.2f} s; bound {bound:.1f}")
        assert statuses.count(429) > 0
        assert passed <= bound
        # The refill did happen: well over the capacity alone got through.
        assert passed >= capacity + rate * window * 0.5
    finally:
        g.stop()


# --------------------------------------------------------------------------- global mode

DAY_LIMITS = {"mcp-guard": {"shared": [N, "day"], "g-echo": [2, "day"]}}


@pytest.fixture(scope="module")
def redis_port(log_dir: Path) -> Iterator[int]:
    """A real redis-server on a free loopback port."""
    redis, port = rl.start_redis(log_dir)
    yield port
    redis.stop()


@pytest.fixture(scope="module")
def rls(redis_port: int, log_dir: Path) -> Iterator[int]:
    """The test Rate Limit Service on that Redis: the service's port."""
    service, port = rl.start_rls(redis_port, DAY_LIMITS, log_dir)
    yield port
    service.stop()


def global_config(limits: list[dict[str, Any]], failure_mode: str = "deny") -> dict[str, Any]:
    service = {"cluster": rl.RLS_CLUSTER, "timeout_ms": 2000, "failure_mode": failure_mode}
    return config(limits, service=service)


def test_two_envoys_share_the_global_limit_exactly(_alpha: procs.McpServer, mcp_server: procs.McpServer, rls: int, log_dir: Path) -> None:
    cfg = global_config([{"name": "shared", "scope": "global", "key": ["api_key"], "methods": ["tools/call"]}])
    gateways = [
        rl.start_gateway(_alpha.port, cfg, rls, name=f"envoy-ratelimit-global-{i}", log_dir=log_dir, concurrency=2) for i in range(2)
    ]
    try:
        results: list[list[int]] = [[], []]

        def run(i: int) -> None:
            results[i] = hammer(gateways[i].url, 5 * N, threads=4)[0]

        pool = [threading.Thread(target=run, args=(i,)) for i in range(2)]
        for t in pool:
            t.start()
        for t in pool:
            t.join()
        statuses = results[0] + results[1]
        passed = [r.count(200) for r in results]
        print(f"\nexactness (global, 2 Envoys x 2 workers): {sum(passed)} of {len(statuses)} passed ({passed[0]} + {passed[1]}), limit {N}")
        assert sorted(set(statuses)) == [200, 429]
        assert sum(passed) == N
        assert len([r for r in mcp_server.seen() if '"tools/call"' in r["body"]]) == N
    finally:
        for g in gateways:
            g.stop()


def test_global_refusal_gives_local_tokens_back(_alpha: procs.McpServer, rls: int, log_dir: Path) -> None:
    cfg = global_config(
        [
            {"name": "local-calls", "key": ["api_key"], "methods": ["tools/call"], "bucket": {"capacity": 3}},
            {"name": "g-echo", "scope": "global", "tools": ["echo"], "key": ["api_key", "tool"]},
        ]
    )
    g = rl.start_gateway(_alpha.port, cfg, rls, name="envoy-ratelimit-mixed", log_dir=log_dir)
    try:
        for _ in range(2):
            assert sdk_call(g, "echo", "alice-key", '{"text":"g"}')["ok"]
        refused = sdk_call(g, "echo", "alice-key", '{"text":"g"}')
        error = refused["error"]
        assert (error["http_status"], error["code"], error["data"]["limit"]) == (429, -32029, "g-echo"), error
        assert error["data"]["retry_after_seconds"] > 0
        resp = call(g, "echo", "alice-key")
        assert resp.status_code == 429
        assert resp.headers["ratelimit-policy"] == '"g-echo";q=2;w=86400'
        assert resp.headers["ratelimit"].startswith('"g-echo";r=0;t=')
        assert int(resp.headers["retry-after"]) > 0
        # The local bucket (3) lost only the two calls that passed: one add passes, then none.
        assert call(g, "add", "alice-key").status_code == 200
        assert call(g, "add", "alice-key").status_code == 429
        # Bob has his own global bucket.
        assert call(g, "echo", "bob-key").status_code == 200
    finally:
        g.stop()


@pytest.mark.parametrize(
    ("mode", "cluster", "status"),
    [("deny", rl.RLS_CLUSTER, 503), ("allow", rl.RLS_CLUSTER, 200), ("deny", "no-such-cluster", 503)],
)
def test_service_failure_follows_failure_mode(_alpha: procs.McpServer, log_dir: Path, mode: str, cluster: str, status: int) -> None:
    """Nothing listens behind the `rls` cluster (or the cluster does not exist)."""
    cfg = global_config([{"name": "shared", "scope": "global", "key": ["api_key"]}], failure_mode=mode)
    cfg["rate_limits"]["service"]["cluster"] = cluster
    g = rl.start_gateway(_alpha.port, cfg, procs.free_port(), name=f"envoy-ratelimit-down-{mode}-{cluster}", log_dir=log_dir)
    try:
        for _ in range(2):  # the filter stays up after a failure
            resp = call(g, "echo", "alice-key")
            assert resp.status_code == status, resp.text
        if status == 503:
            assert resp.json()["error"]["data"]["reason"] == "the rate limit service cannot be reached"
        assert counter(g, "mcp_guard.ratelimit_service_errors") == 2
    finally:
        g.stop()


def test_a_slow_service_times_out_into_the_failure_mode(_alpha: procs.McpServer, redis_port: int, log_dir: Path) -> None:
    service, port = rl.start_rls(redis_port, DAY_LIMITS, log_dir, delay=2.0)
    cfg = global_config([{"name": "shared", "scope": "global", "key": ["api_key"]}])
    cfg["rate_limits"]["service"]["timeout_ms"] = 200
    g = rl.start_gateway(_alpha.port, cfg, port, name="envoy-ratelimit-slow", log_dir=log_dir)
    try:
        started = time.monotonic()
        resp = call(g, "echo", "alice-key")
        took = time.monotonic() - started
        assert resp.status_code == 503, resp.text
        assert took < 1.5, took
    finally:
        g.stop()
        service.stop()
