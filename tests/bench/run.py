"""`make bench`: Envoy passthrough (A), Envoy's native MCP chain (B) and Envoy with mcp-guard (C),
measured in alternating rounds in one run, written to BENCHMARKS.md.

The Envoy under test runs with one worker pinned to core 0; wrk and the upstream (an Envoy
`direct_response` listener) share core 1. All three gateways are started once, on their own
ports, and loaded one at a time. Each measurement is preceded by a discarded warm-up. Ratios
are medians over rounds, with their spread (min..max) across rounds.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness import gateway as gw  # noqa: E402
from harness import procs  # noqa: E402

BENCH = procs.REPO / "envoy" / "bench"
LUA = Path(__file__).resolve().parent / "mcp.lua"
GATEWAYS = [
    ("A", "Envoy passthrough", BENCH / "passthrough.yaml"),
    ("B", "native chain (mcp + rbac)", BENCH / "native.yaml"),
    ("C", "mcp-guard", BENCH / "guard.yaml"),
]
# (workload, connections): many connections for throughput, one for latency.
WORKLOADS = [
    ("call300", 32),
    ("call300", 1),
    ("list", 32),
    ("call64k", 32),
    ("denied", 32),
]
EXPECT_DENIED = {"denied"}


@dataclass
class Gateway:
    key: str
    label: str
    proc: procs.Proc
    port: int
    admin_port: int


@dataclass
class Sample:
    rps: float
    p50_us: int
    p99_us: int
    cpu_us_per_req: float
    cpu_util: float
    status_errors: int
    requests: int


@dataclass
class Cell:
    samples: list[Sample] = field(default_factory=list)

    def median(self, attr: str) -> float:
        return statistics.median(getattr(s, attr) for s in self.samples)


def rewrite(path: Path, port: int, admin_port: int, upstream_port: int, out_dir: Path) -> Path:
    """The bench config with this run's ports (listener, admin, upstream cluster)."""
    config = yaml.safe_load(path.read_text())
    config["admin"]["address"]["socket_address"]["port_value"] = admin_port
    config["static_resources"]["listeners"][0]["address"]["socket_address"]["port_value"] = port
    for cluster in config["static_resources"].get("clusters", []):
        for group in cluster["load_assignment"]["endpoints"]:
            for ep in group["lb_endpoints"]:
                ep["endpoint"]["address"]["socket_address"]["port_value"] = upstream_port
    for f in config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"]:
        for hf in f["typed_config"].get("http_filters", []):
            vm = hf.get("typed_config", {}).get("config", {}).get("vm_config")
            if vm:
                vm["code"]["local"]["filename"] = str(gw.WASM)
    out = out_dir / path.name
    out.write_text(yaml.safe_dump(config, sort_keys=False))
    return out


def start_envoy(name: str, config: Path, admin_port: int, core: int, log_dir: Path) -> procs.Proc:
    cmd = ["taskset", "-c", str(core), str(gw.ENVOY), "-c", str(config), "--concurrency", "1", "--use-dynamic-base-id", "-l", "warning"]
    proc = procs.start(name, cmd, log_dir=log_dir)
    gw.wait_ready(proc, admin_port)
    return proc


def cpu_ns(pid: int) -> int:
    """CPU time of every thread of `pid`, in ns (schedstat: precise, unlike clock ticks)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            pass
    return total


def envoy_pid(proc: procs.Proc) -> int:
    """taskset execs Envoy in place, so the child's pid is Envoy's."""
    return proc.pid


def wrk(port: int, workload: str, conns: int, seconds: float) -> dict[str, float]:
    cmd = [
        "taskset", "-c", "1", "wrk", "-t1", f"-c{conns}", f"-d{max(1, round(seconds))}s", "--latency",
        "-s", str(LUA), f"http://127.0.0.1:{port}",
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 30, env={**os.environ, "MCP_WORKLOAD": workload}, check=True)
    m = re.search(r"^RESULT (\{.*\})$", out.stdout, re.M)
    if not m:
        raise RuntimeError(f"wrk printed no result:\n{out.stdout}\n{out.stderr}")
    return json.loads(m.group(1))


def measure(g: Gateway, workload: str, conns: int, seconds: float, warmup: float) -> Sample:
    wrk(g.port, workload, conns, warmup)
    pid = envoy_pid(g.proc)
    before = cpu_ns(pid)
    r = wrk(g.port, workload, conns, seconds)
    cpu = cpu_ns(pid) - before
    requests = max(1, int(r["requests"]))
    wall_us = r["duration_us"]
    return Sample(
        rps=requests / (wall_us / 1e6),
        p50_us=int(r["p50_us"]),
        p99_us=int(r["p99_us"]),
        cpu_us_per_req=cpu / 1e3 / requests,
        cpu_util=cpu / 1e3 / wall_us,
        status_errors=int(r["status_errors"]),
        requests=requests,
    )


def check_decisions(gateways: list[Gateway]) -> list[str]:
    """B and C must allow the allowlisted call and refuse delete_file; A passes both."""
    problems = []
    body = '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"%s","arguments":{}}}'
    for g in gateways:
        for tool, want in (("echo", 200), ("delete_file", 200 if g.key == "A" else 403)):
            headers = {"content-type": "application/json", "accept": "application/json, text/event-stream"}
            req = urllib.request.Request(f"http://127.0.0.1:{g.port}/mcp", data=(body % tool).encode(), headers=headers, method="POST")
            try:
                status = urllib.request.urlopen(req, timeout=5).status
            except urllib.error.HTTPError as e:
                status = e.code
            if status != want:
                problems.append(f"{g.key} answered {status} to tools/call {tool}, expected {want}")
    return problems


def vm_memory(g: Gateway) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{g.admin_port}/stats?filter=mcp_guard", timeout=5) as r:
        for line in r.read().decode().splitlines():
            if "vm_memory_bytes" in line:
                return line.split(":")[1].strip()
    return "n/a"


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def versions() -> dict[str, str]:
    def first_line(cmd: list[str]) -> str:
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
            return (out.stdout or out.stderr).strip().splitlines()[0]
        except (OSError, IndexError):
            return "n/a"

    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines() if ln.startswith("model name")), "n/a")
    return {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {cpu}",
        "kernel": platform.release(),
        "envoy": first_line([str(gw.ENVOY), "--version"]).split("version:")[-1].strip(),
        "rustc": first_line(["rustc", "--version"]),
        "wrk": first_line(["wrk", "--version"]),
        "mcp_guard.wasm": f"{gw.WASM.stat().st_size} bytes",
    }


def fmt_ratio(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} ({min(values):.2f}..{max(values):.2f})"


def report(results: dict[tuple[str, int], dict[str, Cell]], rounds: int, seconds: float, extra: dict[str, str], micro: str, problems: list[str]) -> str:
    lines = [
        f"Command: `make bench` (BENCH_ROUNDS={rounds}, BENCH_SECONDS={seconds:g}). Envoy under test: `--concurrency 1`, pinned to core 0;",
        "wrk (1 thread) and the upstream (Envoy `direct_response`) share core 1. Each cell is the median of the rounds; a",
        "discarded warm-up precedes every measurement. Ratios are against A in the same round: median (min..max over rounds).",
        "",
        "- A: Envoy passthrough (router only)",
        "- B: Envoy's native chain: `envoy.filters.http.mcp` (reject_duplicate_keys) + `rbac` on the parsed tool name",
        "- C: Envoy + mcp-guard with the same tool allowlist",
        "",
        "Workloads: `call300` a ~300 B tools/call (varied ids and allowlisted tool names); `list` tools/list; `call64k` a 64 KiB",
        "tools/call; `denied` a tools/call of a tool outside the allowlist (B and C answer 403, A forwards it).",
        "",
        "| workload | conns | A req/s | B req/s | C req/s | B/A | C/A | C/B | p50 A/B/C (us) | p99 A/B/C (us) | CPU us/req A/B/C | core-0 use A/B/C |",
        "|---|---:|---:|---:|---:|---|---|---|---|---|---|---|",
    ]
    for (workload, conns), cells in results.items():
        a, b, c = cells["A"], cells["B"], cells["C"]
        n = len(a.samples)
        ba = [b.samples[i].rps / a.samples[i].rps for i in range(n)]
        ca = [c.samples[i].rps / a.samples[i].rps for i in range(n)]
        cb = [c.samples[i].rps / b.samples[i].rps for i in range(n)]
        trio = lambda attr, f="{:.0f}": "/".join(f.format(x.median(attr)) for x in (a, b, c))  # noqa: E731
        lines.append(
            f"| {workload} | {conns} | {a.median('rps'):.0f} | {b.median('rps'):.0f} | {c.median('rps'):.0f} | "
            f"{fmt_ratio(ba)} | {fmt_ratio(ca)} | {fmt_ratio(cb)} | {trio('p50_us')} | {trio('p99_us')} | "
            f"{trio('cpu_us_per_req', '{:.1f}')} | {trio('cpu_util', '{:.0%}')} |"
        )
    latency = [
        f"- added median latency at one connection ({w}): C vs A {cells['C'].median('p50_us') - cells['A'].median('p50_us'):.0f} us, "
        f"B vs A {cells['B'].median('p50_us') - cells['A'].median('p50_us'):.0f} us"
        for (w, conns), cells in results.items()
        if conns == 1
    ]
    lines += ["", *latency, "", "### Run", ""]
    lines += [f"- {k}: {v}" for k, v in extra.items()]
    if problems:
        lines += ["", "### Problems seen", ""] + [f"- {p}" for p in problems]
    lines += ["", "### Pure core (native, `cargo bench --bench core`)", "", micro.strip()]
    return "\n".join(lines)


BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"


def write_report(path: Path, section: str) -> None:
    """Replaces the generated section of BENCHMARKS.md, keeping the hand-written notes around it."""
    text = path.read_text() if path.exists() else f"# Benchmarks\n\n{BEGIN}\n{END}\n"
    head, _, rest = text.partition(BEGIN)
    _, _, tail = rest.partition(END)
    path.write_text(f"{head}{BEGIN}\n{section}\n{END}{tail}")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=int(os.environ.get("BENCH_ROUNDS", "3")))
    ap.add_argument("--seconds", type=float, default=float(os.environ.get("BENCH_SECONDS", "5")))
    ap.add_argument("--warmup", type=float, default=1.0)
    ap.add_argument("--out", type=Path, default=procs.REPO / "BENCHMARKS.md")
    args = ap.parse_args()

    log_dir = Path(tempfile.mkdtemp(prefix="mcp-guard-bench-"))
    upstream_port, upstream_admin = procs.free_port(), procs.free_port()
    upstream_cfg = yaml.safe_load((BENCH / "upstream.yaml").read_text())
    upstream_cfg["admin"]["address"]["socket_address"]["port_value"] = upstream_admin
    upstream_cfg["static_resources"]["listeners"][0]["address"]["socket_address"]["port_value"] = upstream_port
    (log_dir / "upstream.yaml").write_text(yaml.safe_dump(upstream_cfg, sort_keys=False))
    started: list[procs.Proc] = []
    try:
        started.append(start_envoy("upstream", log_dir / "upstream.yaml", upstream_admin, 1, log_dir))
        gateways = []
        for key, label, path in GATEWAYS:
            port, admin = procs.free_port(), procs.free_port()
            proc = start_envoy(f"gateway-{key}", rewrite(path, port, admin, upstream_port, log_dir), admin, 0, log_dir)
            started.append(proc)
            gateways.append(Gateway(key, label, proc, port, admin))
        problems = check_decisions(gateways)
        results: dict[tuple[str, int], dict[str, Cell]] = {w: {g.key: Cell() for g in gateways} for w in WORKLOADS}
        for rnd in range(args.rounds):
            order = gateways[rnd % 3:] + gateways[: rnd % 3]
            for workload, conns in WORKLOADS:
                for g in order:
                    s = measure(g, workload, conns, args.seconds, args.warmup)
                    results[(workload, conns)][g.key].samples.append(s)
                    denied = workload in EXPECT_DENIED and g.key != "A"
                    if (s.status_errors == s.requests) != denied and (denied or s.status_errors):
                        problems.append(f"round {rnd + 1} {g.key} {workload}/{conns}: {s.status_errors} of {s.requests} non-2xx")
                    print(f"round {rnd + 1} {g.key} {workload:8} c={conns:<3} {s.rps:8.0f} req/s  p50 {s.p50_us} us  p99 {s.p99_us} us  cpu {s.cpu_us_per_req:.1f} us/req", flush=True)
        c = next(g for g in gateways if g.key == "C")
        extra = versions()
        extra["mcp-guard VM memory (one worker, after the run)"] = f"{vm_memory(c)} bytes"
        extra.update({f"Envoy RSS after the run, {g.key}": f"{rss_kib(g.proc.pid)} KiB" for g in gateways})
        micro = subprocess.run(
            ["cargo", "bench", "-q", "-p", "mcp-guard", "--bench", "core"], capture_output=True, text=True, cwd=procs.REPO, check=True
        ).stdout
        text = report(results, args.rounds, args.seconds, extra, micro, problems)
        write_report(args.out, text)
        print(text)
        return 1 if problems else 0
    finally:
        for p in reversed(started):
            p.stop()


if __name__ == "__main__":
    sys.exit(main())
