"""`make soak`: mcp-guard with every feature on, at a steady load near 70% of its measured
maximum, for SOAK_SECONDS (600 by default). Reports throughput per slice and its drift,
Envoy's RSS and the filter VM's memory over time, and statuses by kind; writes the soak
section of BENCHMARKS.md.

Same placement as `make bench`: the gateway (one worker) on core 0, wrk and the upstream (an
Envoy `direct_response` fake MCP server, envoy/bench/upstream.yaml) on core 1. Features on:
API-key authentication, rules per identity with an annotation condition, an argument
constraint, filtered tools/list answers, trust-on-first-use pins, two local rate limits (one
that never refuses, one that does for `search`), routing headers, metrics and the audit log
(written to Envoy's log at info).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import run as bench  # tests/bench/run.py, which also puts tests/ on the path

from harness import procs  # noqa: E402

API_KEY = "soak-key"
FILTER_CONFIG = {
    "endpoints": ["/mcp"],
    "auth": {"api_keys": {"header": "x-api-key", "keys": [{"name": "soak", "sha256": hashlib.sha256(API_KEY.encode()).hexdigest(), "roles": ["dev"]}]}},
    "policy": {
        "rules": [
            {"name": "devs", "who": {"roles": ["dev"]}, "allow": {"tools": ["echo", "add", "search", "db_*"]}},
            {"name": "no-destructive", "who": {"authenticated": True}, "deny": {"tools": ["*"], "annotations": {"destructiveHint": True}}},
        ],
        "arguments": {"echo": [{"pointer": "/text", "max_length": 256}]},
    },
    "tools": {"pins": {"*": {"*": "trust_on_first_use"}}},
    "rate_limits": {
        "limits": [
            {"name": "per-caller", "key": ["subject"], "bucket": {"capacity": 1000000000, "refill": {"tokens": 1000000, "per_seconds": 1}}},
            {"name": "search", "tools": ["search"], "key": ["subject", "tool"], "bucket": {"capacity": 50, "refill": {"tokens": 50, "per_seconds": 1}}},
        ]
    },
    "upstream": {"routing_headers": {"method": "x-mcp-method", "tool": "x-mcp-tool"}},
    "hold": "request",
    "metrics": {"tools": ["echo", "add", "search", "db_query"]},
    "audit": {"enabled": True},
}
SPEC = bench.GatewaySpec("soak", "mcp-guard, every feature on", bench.BENCH / "guard.yaml", filter_config=FILTER_CONFIG, log_level="info")
CONNS = 32
LUA = Path(__file__).resolve().parent / "soak.lua"


def wrk(port: int, seconds: float, delay_ms: int) -> dict:
    cmd = ["taskset", "-c", "1", "wrk", "-t1", f"-c{CONNS}", f"-d{max(1, round(seconds))}s", "--latency", "-s", str(LUA), f"http://127.0.0.1:{port}"]
    env = {**os.environ, "MCP_API_KEY": API_KEY, "MCP_DELAY_MS": str(delay_ms)}
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60, env=env, check=True).stdout
    line = next(ln for ln in out.splitlines() if ln.startswith("RESULT "))
    result = json.loads(line[len("RESULT ") :])
    result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
    return result


def prime(port: int) -> None:
    """One tools/list first: trust on first use pins the tools, so calls are not refused as unverified."""
    body = b'{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{}}'
    req = urllib.request.Request(f"http://127.0.0.1:{port}/mcp", data=body, method="POST", headers={"content-type": "application/json", "x-api-key": API_KEY})
    with urllib.request.urlopen(req, timeout=5) as r:
        tools = [t["name"] for t in json.loads(r.read())["result"]["tools"]]
    assert "delete_file" not in tools and "echo" in tools, tools


def calibrate(port: int, target: float) -> int:
    """The per-connection pause (ms) that brings the rate near `target`."""
    delay = 1
    for _ in range(4):
        r = wrk(port, 4, delay)
        # Each connection does one request per (latency + pause).
        per_request_ms = CONNS * 1000 / r["rps"]
        delay = max(0, round(delay + CONNS * 1000 / target - per_request_ms))
    return delay


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=float(os.environ.get("SOAK_SECONDS", "600")))
    ap.add_argument("--slice", type=float, default=30)
    ap.add_argument("--out", type=Path, default=procs.REPO / "BENCHMARKS.md")
    args = ap.parse_args()

    log_dir = Path(tempfile.mkdtemp(prefix="mcp-guard-soak-"))
    started: list[procs.Proc] = []
    try:
        upstream_port, upstream_admin = procs.free_port(), procs.free_port()
        up = bench.GatewaySpec("upstream", "", bench.BENCH / "upstream.yaml")
        started.append(bench.start_envoy("upstream", bench.rewrite(up, upstream_port, upstream_admin, upstream_port, log_dir), upstream_admin, 1, log_dir))
        port, admin = procs.free_port(), procs.free_port()
        proc = bench.start_envoy("gateway-soak", bench.rewrite(SPEC, port, admin, upstream_port, log_dir), admin, 0, log_dir, SPEC.log_level)
        started.append(proc)
        gateway = bench.Gateway(SPEC, proc, port, admin)
        prime(port)
        maximum = wrk(port, 10, 0)["rps"]
        target = 0.7 * maximum
        delay = calibrate(port, target)
        print(f"maximum {maximum:.0f} req/s; target {target:.0f} req/s; pause {delay} ms per connection", flush=True)
        slices = []
        deadline = time.monotonic() + args.seconds
        while time.monotonic() < deadline:
            r = wrk(port, args.slice, delay)
            r["rss_kib"] = bench.rss_kib(proc.pid)
            r["vm_bytes"] = bench.vm_memory(gateway)
            slices.append(r)
            print(f"slice {len(slices):2}: {r['rps']:7.0f} req/s  p99 {r['p99_us']} us  RSS {r['rss_kib']} KiB  VM {r['vm_bytes']} B  {r['statuses']}  socket errors {r['socket_errors']}", flush=True)
        text = report(slices, maximum, target, delay, args)
        write(args.out, text)
        print(text)
        return 0
    finally:
        for p in reversed(started):
            p.stop()


def report(slices: list[dict], maximum: float, target: float, delay: int, args: argparse.Namespace) -> str:
    statuses: dict[str, int] = {}
    for s in slices:
        for k, v in s["statuses"].items():
            statuses[k] = statuses.get(k, 0) + v
    total = sum(statuses.values())
    warm = slices[1] if len(slices) > 1 else slices[0]
    third = max(1, len(slices) // 3)
    first, last = statistics.median(s["rps"] for s in slices[:third]), statistics.median(s["rps"] for s in slices[-third:])
    kinds = {"200": "allowed (200)", "403": "denied by policy (403)", "429": "rate limited (429)"}
    lines = [
        f"Command: `make soak` (SOAK_SECONDS={args.seconds:g}, slices of {args.slice:g} s). Gateway: one worker on core 0; wrk ({CONNS} connections,",
        f"paced) and the upstream on core 1. Maximum of this configuration {maximum:.0f} req/s (10 s unpaced); target 70% = {target:.0f} req/s",
        f"(pause {delay} ms per connection).",
        "",
        "| slice | req/s | p99 (us) | Envoy RSS (KiB) | VM memory (B) |",
        "|---:|---:|---:|---:|---:|",
        *(f"| {i + 1} | {s['rps']:.0f} | {s['p99_us']} | {s['rss_kib']} | {s['vm_bytes']} |" for i, s in enumerate(slices)),
        "",
        f"- Throughput: {statistics.median(s['rps'] for s in slices):.0f} req/s median ({statistics.median(s['rps'] for s in slices) / maximum:.0%} of the maximum);"
        f" drift {last / first - 1:+.1%} (median of the last third against the first third).",
        f"- Envoy RSS after warm-up (slice 2) {warm['rss_kib']} KiB, at the end {slices[-1]['rss_kib']} KiB ({slices[-1]['rss_kib'] - warm['rss_kib']:+d} KiB);"
        f" VM memory {warm['vm_bytes']} B then {slices[-1]['vm_bytes']} B.",
        f"- {total} responses: " + ", ".join(f"{kinds.get(k, 'HTTP ' + k)} {v}" for k, v in sorted(statuses.items())) + f"; socket errors {sum(s['socket_errors'] for s in slices)}.",
    ]
    return "\n".join(lines)


BEGIN, END = "<!-- soak:begin -->", "<!-- soak:end -->"


def write(path: Path, section: str) -> None:
    text = path.read_text()
    if BEGIN not in text:
        text += f"\n## Soak\n\n{BEGIN}\n{END}\n"
    head, _, rest = text.partition(BEGIN)
    _, _, tail = rest.partition(END)
    path.write_text(f"{head}{BEGIN}\n{section}\n{END}{tail}")


if __name__ == "__main__":
    sys.exit(main())
