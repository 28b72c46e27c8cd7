"""Faults through a real Envoy: the filter's VM failing, an upstream killed in the middle of
an SSE stream. For each, the client gets a clear error, nothing unapproved reaches an
upstream, and the gateway keeps serving what it can."""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import wasmtime

from harness import gateway as gw
from harness import procs
from harness.rpc import stateless

TRAP_WAT = Path(__file__).resolve().parent / "faults" / "trap.wat"


def test_failed_vm_fails_closed(sniffer: procs.Sniffer, log_dir: Path) -> None:
    """A VM that traps (here a stand-in module; the shipped Wasm settings unchanged) makes
    Envoy refuse requests: failure_policy FAIL_CLOSED, never a bypass to the upstream."""
    wasm = log_dir / "trap.wasm"
    wasm.write_bytes(wasmtime.wat2wasm(TRAP_WAT.read_text()))
    port, admin = procs.free_port(), procs.free_port()
    config = gw.render_config(listen_port=port, admin_port=admin, upstream_port=sniffer.port, filter_config="{}")
    hcm = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    wasm_config = next(f for f in hcm["http_filters"] if f["name"] == "envoy.filters.http.wasm")["typed_config"]["config"]
    assert wasm_config["failure_policy"] == "FAIL_CLOSED"
    wasm_config["vm_config"]["code"]["local"]["filename"] = str(wasm)
    proc = gw.launch(config, name="envoy-trap", log_dir=log_dir)
    try:
        gw.wait_ready(proc, admin)
        body, headers = stateless("tools/call", {"name": "echo", "arguments": {"text": "x"}}, name="echo")
        for _ in range(3):
            resp = httpx.post(f"http://127.0.0.1:{port}/mcp", content=body, headers=headers, timeout=10)
            assert resp.status_code in (500, 503), resp.text
        assert sniffer.connections() == []
    finally:
        proc.stop()


def test_upstream_killed_mid_sse_stream(mcp_server_factory: Callable[..., procs.McpServer], _alpha: procs.McpServer, log_dir: Path) -> None:
    """An approved call streaming progress over SSE: its server dies after the first event.
    The client sees the stream end (no hang), and the gateway answers the next call with a
    clear 503 from Envoy instead of stalling."""
    victim = mcp_server_factory("victim")
    g = gw.start_gateway(victim.port, {"endpoints": ["/mcp"]}, name="envoy-sse-fault", log_dir=log_dir)
    try:
        body, headers = stateless("tools/call", {"name": "slow_count", "arguments": {"n": 30, "interval": 0.2}}, name="slow_count")
        message = json.loads(body)
        message["params"]["_meta"]["progressToken"] = "p1"  # progress notifications stream over SSE
        body = json.dumps(message).encode()
        events: list[str] = []
        outcome: dict[str, object] = {}

        def stream() -> None:
            try:
                with httpx.stream("POST", g.url, content=body, headers=headers, timeout=20) as resp:
                    outcome["status"] = resp.status_code
                    for line in resp.iter_lines():
                        if line.startswith("data:"):
                            events.append(line)
                outcome["ended"] = "cleanly"
            except httpx.HTTPError as e:
                outcome["ended"] = type(e).__name__

        reader = threading.Thread(target=stream)
        started = time.monotonic()
        reader.start()
        while not events and time.monotonic() - started < 10:
            time.sleep(0.05)
        assert events, "no progress event arrived"
        os.killpg(victim.proc.popen.pid, signal.SIGKILL)
        reader.join(timeout=15)
        assert not reader.is_alive(), "the client hangs on a dead upstream's stream"
        assert outcome["status"] == 200
        # The stream stopped early: the final result never came.
        assert not any('"result"' in e for e in events), events
        assert len(events) < 30
        resp = httpx.post(g.url, content=body, headers=headers, timeout=10)
        assert resp.status_code == 503, resp.text
    finally:
        g.stop()
        victim.stop()


def test_jwks_slow_then_down_never_lets_a_call_through(sniffer: procs.Sniffer, log_dir: Path) -> None:
    """A JWKS endpoint that never answers: callers with tokens wait up to max_wait_ms, then
    get 503; nothing reaches the upstream meanwhile."""
    blackhole = procs.free_port()
    server = socket.socket()
    server.bind(("127.0.0.1", blackhole))
    server.listen(16)  # accepts connections, never answers
    try:
        config = {
            "endpoints": ["/mcp"],
            "auth": {
                "jwt_providers": [
                    {
                        "name": "idp",
                        "issuer": "https://idp.example",
                        "audiences": ["mcp"],
                        "remote_jwks": {"cluster": "jwks", "path": "/jwks", "timeout_ms": 5000, "max_wait_ms": 800},
                    }
                ]
            },
        }
        g = gw.start_gateway(sniffer.port, config, extra_clusters={"jwks": blackhole}, name="envoy-jwks-blackhole", log_dir=log_dir)
        try:
            header = {"alg": "RS256", "kid": "k1", "typ": "JWT"}
            claims = {"iss": "https://idp.example", "aud": "mcp", "sub": "a", "exp": 4102444800}
            token = ".".join(base64.urlsafe_b64encode(json.dumps(d).encode()).rstrip(b"=").decode() for d in (header, claims)) + ".c2ln"
            body, headers = stateless("tools/call", {"name": "echo", "arguments": {"text": "x"}}, name="echo")
            started = time.monotonic()
            resp = httpx.post(g.url, content=body, headers={**headers, "authorization": f"Bearer {token}"}, timeout=10)
            waited = time.monotonic() - started
            assert resp.status_code == 503, resp.text
            assert resp.json()["error"]["code"] == -32603
            assert 0.5 < waited < 5, waited
            assert sniffer.connections() == []
        finally:
            g.stop()
    finally:
        server.close()
