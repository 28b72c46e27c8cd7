"""`make bench`: Envoy passthrough (A), Envoy's native MCP chain (B) and Envoy with mcp-guard (C),
measured in alternating rounds in one run, written to BENCHMARKS.md.

The Envoy under test runs with one worker pinned to core 0; wrk and the upstream (an Envoy
`direct_response` listener) share core 1. Every gateway is started once, on its own ports, and
loaded one at a time. Each measurement is preceded by a discarded warm-up. Ratios are medians
over rounds, with their spread (min..max) across rounds.

Gateways come in groups that share one table: the policy group (A, B, C) and the
authentication group (A, B-jwt, C-jwt), where every request carries a JWT minted here from the
test-only keys in envoy/bench/ (PyJWT). A token set of a few tokens is served from both
gateways' caches; one of 5000 tokens, cycled, is more than either cache (1024 entries) holds,
so every request pays for the signature check.
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

import jwt
import yaml
from cryptography.hazmat.primitives.serialization import load_pem_private_key

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness import gateway as gw  # noqa: E402
from harness import procs  # noqa: E402

BENCH = procs.REPO / "envoy" / "bench"
LUA = Path(__file__).resolve().parent / "mcp.lua"
TRIVIAL = gw.WASM.with_name("trivial_filter.wasm")



@dataclass(frozen=True)
class GatewaySpec:
    key: str
    legend: str  # one line of the report's legend
    config: Path
    auth: bool = False  # requires a JWT (401 without one)
    filter_config: dict | None = None  # replaces the config file's mcp-guard configuration
    log_level: str = "warning"  # Envoy's; audit lines are written at info
    flag: bool = True  # keep the Wasm filter's allow_on_headers_stop_iteration (Istio and Envoy Gateway cannot set it)
    module: Path = gw.WASM  # the Wasm module the config loads
    concurrency: int = 1  # Envoy workers (all pinned to the gateway's core)


@dataclass(frozen=True)
class TokenSet:
    """`count` distinct tokens signed with the private key in envoy/bench/`pem`."""

    alg: str
    kid: str
    pem: str
    count: int


@dataclass(frozen=True)
class Workload:
    name: str
    conns: int  # many connections for throughput, one for latency
    body: str = ""  # the request mcp.lua sends (MCP_WORKLOAD); the name if empty
    tokens: str = ""  # a TOKEN_SETS key: send "authorization: Bearer <token>", cycling
    denied: bool = False  # B and C must refuse every request (A forwards it)


@dataclass(frozen=True)
class Group:
    """Gateways compared in one set of rows, in the table's A, B and C columns."""

    roles: tuple[str, str, str]
    workloads: tuple[Workload, ...]

    @property
    def tag(self) -> str:
        """Appended to the workload in the table when the columns hold other gateways than A/B/C."""
        return "" if self.roles == ("A", "B", "C") else f" ({'/'.join(self.roles)})"


def hundred_rules() -> dict:
    """guard.yaml's allowlist spread over 100 rules that all apply to every caller, each with its
    own tool patterns and a deny list: every call is judged against all of them."""
    rules = [
        {"name": f"team-{i}", "allow": {"tools": [f"team{i}_*", f"t{i}_query"]}, "deny": {"tools": [f"team{i}_drop*"]}}
        for i in range(98)
    ]
    rules.append({"name": "demo-tools", "allow": {"tools": ["echo", "add", "search", "db_*"]}})
    rules.append({"name": "no-deletes", "deny": {"tools": ["delete_*"]}})
    return {"endpoints": ["/mcp"], "policy": {"rules": rules}}


GUARD_ALLOWLIST = {"endpoints": ["/mcp"], "policy": {"allow": {"tools": ["echo", "add", "search", "db_*"]}}}

GUARD_OBSERVED = {**GUARD_ALLOWLIST, "audit": {"enabled": True}}

GUARD_RATELIMIT = {
    **GUARD_ALLOWLIST,
    # Two buckets per call (per caller, per tool), so large that nothing is refused.
    "rate_limits": {
        "limits": [
            {"name": "per-caller", "methods": ["tools/call"], "key": ["subject"],
             "bucket": {"capacity": 1000000000, "refill": {"tokens": 1000000000}}},
            {"name": "per-tool", "methods": ["tools/call"], "key": ["tool"],
             "bucket": {"capacity": 1000000000, "refill": {"tokens": 1000000000}}, "cost": {"tools": {"db_*": 5}}},
        ]
    },
}

GATEWAYS = {
    g.key: g
    for g in (
        GatewaySpec("A", "Envoy passthrough (router only; a token header is simply forwarded)", BENCH / "passthrough.yaml"),
        GatewaySpec("B", "Envoy's native chain: `envoy.filters.http.mcp` (reject_duplicate_keys) + `rbac` on the parsed tool name", BENCH / "native.yaml"),
        GatewaySpec("C", "Envoy + mcp-guard with the same tool allowlist", BENCH / "guard.yaml"),
        GatewaySpec("T", "the Wasm floor: a trivial Rust proxy-wasm filter that holds the request, copies the body once and parses it with serde_json",
                    BENCH / "trivial.yaml", module=TRIVIAL),
        GatewaySpec("B-jwt", "B with `envoy.filters.http.jwt_authn` first (jwt_cache_config: 1024 entries)", BENCH / "native-jwt.yaml", auth=True),
        GatewaySpec("C-jwt", "C with a JWT provider in mcp-guard's `auth` (its per-worker cache: 1024 entries)", BENCH / "guard-jwt.yaml", auth=True),
        GatewaySpec("B-jwt-4w", "B-jwt with `--concurrency 4`", BENCH / "native-jwt.yaml", auth=True, concurrency=4),
        GatewaySpec("C-jwt-4w", "C-jwt with `--concurrency 4` (each worker's cache in front of the one the workers share)",
                    BENCH / "guard-jwt.yaml", auth=True, concurrency=4),
        GatewaySpec("C-100", "C with the allowlist spread over 100 rules that all apply (each with allow and deny patterns)", BENCH / "guard.yaml",
                    filter_config=hundred_rules()),
        GatewaySpec("C-audit", "C with the audit log on (a JSON line per message in Envoy's log, filter state for access logs)", BENCH / "guard.yaml",
                    filter_config=GUARD_OBSERVED, log_level="info"),
        GatewaySpec("C-rl", "C with two local rate limits on tools/call (per caller and per tool, in shared data; never refusing)",
                    BENCH / "guard.yaml", filter_config=GUARD_RATELIMIT),
        GatewaySpec("C-req", 'C with `"hold": "request"` (nothing reaches the upstream before the decision; needs the flag)',
                    BENCH / "guard.yaml", filter_config={**GUARD_ALLOWLIST, "hold": "request"}),
        GatewaySpec("C-noflag", 'C (`"hold": "body"`, the default) without allow_on_headers_stop_iteration, as Istio and Envoy Gateway run it',
                    BENCH / "guard.yaml", flag=False),
    )
}
UNCACHED = 5000  # tokens cycled per set: more than either gateway's cache (1024) holds
TOKEN_SETS = {
    "rs256-few": TokenSet("RS256", "rs", "bench-rs256.pem", 8),
    "rs256": TokenSet("RS256", "rs", "bench-rs256.pem", UNCACHED),
    "rs256-1000": TokenSet("RS256", "rs", "bench-rs256.pem", 1000),
    "es256": TokenSet("ES256", "es", "bench-es256.pem", UNCACHED),
    "eddsa": TokenSet("EdDSA", "ed", "bench-ed25519.pem", UNCACHED),
}
GROUPS = (
    Group(
        ("A", "B", "C"),
        (
            Workload("call300", 32),
            Workload("call300", 1),
            Workload("list", 32),
            Workload("call64k", 32),
            Workload("denied", 32, denied=True),
        ),
    ),
    Group(
        ("A", "B-jwt", "C-jwt"),
        (
            Workload("jwt-rs256", 32, "call300", "rs256-few"),
            Workload("jwt-rs256-nocache", 32, "call300", "rs256"),
            Workload("jwt-es256-nocache", 32, "call300", "es256"),
            Workload("jwt-eddsa-nocache", 32, "call300", "eddsa"),
        ),
    ),
    # Four workers and a rotating set of 1000 tokens: how often each token is verified.
    Group(("A", "B-jwt-4w", "C-jwt-4w"), (Workload("jwt-rs256-1000", 32, "call300", "rs256-1000"),)),
    # The Wasm floor: the "B" column holds the trivial filter, so C/B is mcp-guard against it.
    Group(("A", "T", "C"), (Workload("call300", 32), Workload("call300", 1), Workload("list", 32))),
    # Features against plain C: the "B" column holds C, so C/B is the feature's own cost.
    Group(("A", "C", "C-100"), (Workload("call300", 32), Workload("denied", 32, denied=True))),
    Group(("A", "C", "C-audit"), (Workload("call300", 32),)),
    Group(("A", "C", "C-rl"), (Workload("call300", 32), Workload("call300", 1))),
    # The two holds: C-req against C (both with the flag), C without the flag.
    Group(("A", "C-req", "C"), (Workload("call300", 32), Workload("call300", 1))),
    Group(("A", "C-req", "C-noflag"), (Workload("call300", 32), Workload("call300", 1))),
)
WORKLOAD_NOTES = (
    "Workloads: `call300` a ~300 B tools/call (varied ids and allowlisted tool names); `list` tools/list; `call64k` a 64 KiB",
    "tools/call; `denied` a tools/call of a tool outside the allowlist (B and C answer 403, A forwards it).",
    "The `jwt-*` rows (A/B-jwt/C-jwt in the A, B, C columns) send `call300` with `authorization: Bearer <JWT>`: `jwt-rs256`",
    f"cycles {TOKEN_SETS['rs256-few'].count} RS256 tokens, served from both caches; each `-nocache` row cycles {UNCACHED} distinct tokens"
    " (RSA 2048, EC",
    "P-256, Ed25519), more than either cache holds, so every request verifies a signature (the caches stay on).",
    f"`jwt-rs256-1000` (A/B-jwt-4w/C-jwt-4w) cycles {TOKEN_SETS['rs256-1000'].count} RS256 tokens through Envoys with 4 workers"
    " (pinned to the same core): a cache per worker verifies each token up to 4 times, mcp-guard's shared one once.",
    "Feature rows (A/C/C-100, A/C/C-audit, A/C/C-rl) hold plain C in the B column: their C/B is the feature's own cost.",
    "Hold rows (A/C-req/C, A/C-req/C-noflag) hold `\"hold\": \"request\"` in the B column: C/B is what `\"hold\": \"body\"` costs",
    "against it, with and without the flag.",
)


@dataclass
class Gateway:
    spec: GatewaySpec
    proc: procs.Proc
    port: int
    admin_port: int

    @property
    def key(self) -> str:
        return self.spec.key


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


def rewrite(spec: GatewaySpec, port: int, admin_port: int, upstream_port: int, out_dir: Path) -> Path:
    """The bench config with this run's ports (listener, admin, upstream cluster) and, if the
    spec has one, its own mcp-guard configuration."""
    config = yaml.safe_load(spec.config.read_text())
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
                vm["code"]["local"]["filename"] = str(spec.module)
                if not spec.flag:
                    del hf["typed_config"]["config"]["allow_on_headers_stop_iteration"]
                if spec.filter_config is not None:
                    hf["typed_config"]["config"]["configuration"]["value"] = json.dumps(spec.filter_config)
    out = out_dir / f"{spec.key}.yaml"
    out.write_text(yaml.safe_dump(config, sort_keys=False))
    return out


def start_envoy(name: str, config: Path, admin_port: int, core: int, log_dir: Path, log_level: str = "warning", concurrency: int = 1) -> procs.Proc:
    cmd = ["taskset", "-c", str(core), str(gw.ENVOY), "-c", str(config), "--concurrency", str(concurrency), "--use-dynamic-base-id", "-l", log_level]
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


def mint_tokens(sets: dict[str, TokenSet], out_dir: Path) -> dict[str, Path]:
    """Writes each token set to a file, one JWT a line: issuer, audience and keys of the jwt
    configs, exp far ahead (2100-01-01), a distinct sub and jti per token."""
    files = {}
    for name, ts in sets.items():
        key = load_pem_private_key((BENCH / ts.pem).read_bytes(), password=None)
        now = int(time.time())
        tokens = [
            jwt.encode(
                {"iss": "mcp-bench", "aud": "mcp-gateway", "sub": f"user-{i}", "jti": f"{name}-{i}", "iat": now, "exp": 4102444800},
                key,
                algorithm=ts.alg,
                headers={"kid": ts.kid},
            )
            for i in range(ts.count)
        ]
        files[name] = out_dir / f"tokens-{name}.txt"
        files[name].write_text("\n".join(tokens) + "\n")
    return files


@dataclass
class TokenCursor:
    """Where each gateway's next wrk run starts in a token set: it continues the cycle, so the
    tokens it sends first are the ones a gateway's cache saw longest ago (a cycle longer than
    the cache then never hits, across warm-ups and rounds too)."""

    files: dict[str, Path]
    offsets: dict[tuple[str, str], int] = field(default_factory=dict)

    def env(self, g: Gateway, w: Workload) -> dict[str, str]:
        if not w.tokens:
            return {}
        return {"MCP_TOKENS_FILE": str(self.files[w.tokens]), "MCP_TOKEN_OFFSET": str(self.offsets.get((g.key, w.tokens), 0))}

    def advance(self, g: Gateway, w: Workload, result: dict[str, float]) -> None:
        if w.tokens:
            # requests still in flight at the end were sent too: skip past them
            self.offsets[(g.key, w.tokens)] = self.offsets.get((g.key, w.tokens), 0) + int(result["requests"]) + w.conns


def wrk(port: int, w: Workload, seconds: float, env: dict[str, str]) -> dict[str, float]:
    cmd = [
        "taskset", "-c", "1", "wrk", "-t1", f"-c{w.conns}", f"-d{max(1, round(seconds))}s", "--latency",
        "-s", str(LUA), f"http://127.0.0.1:{port}",
    ]
    env = {**os.environ, "MCP_WORKLOAD": w.body or w.name, **env}
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 30, env=env, check=True)
    m = re.search(r"^RESULT (\{.*\})$", out.stdout, re.M)
    if not m:
        raise RuntimeError(f"wrk printed no result:\n{out.stdout}\n{out.stderr}")
    return json.loads(m.group(1))


def measure(g: Gateway, w: Workload, seconds: float, warmup: float, cursor: TokenCursor) -> Sample:
    cursor.advance(g, w, wrk(g.port, w, warmup, cursor.env(g, w)))
    pid = envoy_pid(g.proc)
    before = cpu_ns(pid)
    r = wrk(g.port, w, seconds, cursor.env(g, w))
    cursor.advance(g, w, r)
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


def check_decisions(gateways: list[Gateway], token_files: dict[str, Path]) -> list[str]:
    """Every gateway but A must allow the allowlisted call and refuse delete_file; A passes both.
    A gateway with auth must also answer 401 without a token or with a forged one, and 200 with
    a token of each key."""
    problems = []
    body = '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"%s","arguments":{}}}'
    tokens = {name: path.read_text().split() for name, path in token_files.items()}
    valid = tokens["rs256"][0]
    head_payload, _ = valid.rsplit(".", 1)
    forged = f"{head_payload}.{tokens['rs256'][1].rsplit('.', 1)[1]}"  # another token's signature
    for g in gateways:
        bearer = valid if g.spec.auth else None
        cases = [("echo", bearer, 200), ("delete_file", bearer, 200 if g.key in ("A", "T") else 403)]
        if g.spec.auth:
            cases += [("echo", None, 401), ("echo", forged, 401)]
            cases += [("echo", ts[0], 200) for ts in tokens.values()]
        for tool, token, want in cases:
            headers = {"content-type": "application/json", "accept": "application/json, text/event-stream"}
            if token:
                headers["authorization"] = f"Bearer {token}"
            req = urllib.request.Request(f"http://127.0.0.1:{g.port}/mcp", data=(body % tool).encode(), headers=headers, method="POST")
            try:
                status = urllib.request.urlopen(req, timeout=5).status
            except urllib.error.HTTPError as e:
                status = e.code
            if status != want:
                alg = jwt.get_unverified_header(token)["alg"] if token else ""
                what = "no token" if not token else ("a forged token" if token == forged else f"a valid {alg} token")
                problems.append(f"{g.key} answered {status} to tools/call {tool} with {what}, expected {want}")
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


Results = dict[tuple[Group, Workload], dict[str, Cell]]  # per row: gateway key -> cell


def report(results: Results, rounds: int, seconds: float, extra: dict[str, str], micro: str, problems: list[str]) -> str:
    lines = [
        f"Command: `make bench` (BENCH_ROUNDS={rounds}, BENCH_SECONDS={seconds:g}). Envoy under test: `--concurrency 1` (4 for the `-4w` gateways), pinned to core 0;",
        "wrk (1 thread) and the upstream (Envoy `direct_response`) share core 1. Each cell is the median of the rounds; a",
        "discarded warm-up precedes every measurement. Ratios are against A in the same round: median (min..max over rounds).",
        "",
        *(f"- {g.key}: {g.legend}" for g in GATEWAYS.values()),
        "",
        *WORKLOAD_NOTES,
        "",
        "| workload | conns | A req/s | B req/s | C req/s | B/A | C/A | C/B | p50 A/B/C (us) | p99 A/B/C (us) | CPU us/req A/B/C | core-0 use A/B/C |",
        "|---|---:|---:|---:|---:|---|---|---|---|---|---|---|",
    ]
    for (group, w), cells in results.items():
        a, b, c = (cells[key] for key in group.roles)
        n = len(a.samples)
        ba = [b.samples[i].rps / a.samples[i].rps for i in range(n)]
        ca = [c.samples[i].rps / a.samples[i].rps for i in range(n)]
        cb = [c.samples[i].rps / b.samples[i].rps for i in range(n)]
        trio = lambda attr, f="{:.0f}": "/".join(f.format(x.median(attr)) for x in (a, b, c))  # noqa: E731
        lines.append(
            f"| {w.name}{group.tag} | {w.conns} | {a.median('rps'):.0f} | {b.median('rps'):.0f} | {c.median('rps'):.0f} | "
            f"{fmt_ratio(ba)} | {fmt_ratio(ca)} | {fmt_ratio(cb)} | {trio('p50_us')} | {trio('p99_us')} | "
            f"{trio('cpu_us_per_req', '{:.1f}')} | {trio('cpu_util', '{:.0%}')} |"
        )
    latency = []
    for (group, w), cells in results.items():
        if w.conns == 1:
            a, b, c = group.roles
            added = lambda key: cells[key].median("p50_us") - cells[a].median("p50_us")  # noqa: E731
            latency.append(f"- added median latency at one connection ({w.name}{group.tag}): {c} vs {a} {added(c):.0f} us, {b} vs {a} {added(b):.0f} us")
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
    ap.add_argument("--only", help="a smoke run: only the groups with this gateway (e.g. C-rl), no core bench")
    args = ap.parse_args()
    groups = tuple(g for g in GROUPS if not args.only or args.only in g.roles)
    specs = [s for s in GATEWAYS.values() if any(s.key in g.roles for g in groups)]

    log_dir = Path(tempfile.mkdtemp(prefix="mcp-guard-bench-"))
    upstream_port, upstream_admin = procs.free_port(), procs.free_port()
    upstream_cfg = yaml.safe_load((BENCH / "upstream.yaml").read_text())
    upstream_cfg["admin"]["address"]["socket_address"]["port_value"] = upstream_admin
    upstream_cfg["static_resources"]["listeners"][0]["address"]["socket_address"]["port_value"] = upstream_port
    (log_dir / "upstream.yaml").write_text(yaml.safe_dump(upstream_cfg, sort_keys=False))
    started: list[procs.Proc] = []
    try:
        started.append(start_envoy("upstream", log_dir / "upstream.yaml", upstream_admin, 1, log_dir))
        gateways: dict[str, Gateway] = {}
        for spec in specs:
            port, admin = procs.free_port(), procs.free_port()
            proc = start_envoy(f"gateway-{spec.key}", rewrite(spec, port, admin, upstream_port, log_dir), admin, 0, log_dir, spec.log_level, spec.concurrency)
            started.append(proc)
            gateways[spec.key] = Gateway(spec, proc, port, admin)
        cursor = TokenCursor(mint_tokens(TOKEN_SETS, log_dir))
        problems = check_decisions(list(gateways.values()), cursor.files)
        results: Results = {(group, w): {key: Cell() for key in group.roles} for group in groups for w in group.workloads}
        for rnd in range(args.rounds):
            for group in groups:
                shift = rnd % len(group.roles)
                order = [gateways[key] for key in group.roles[shift:] + group.roles[:shift]]
                for w in group.workloads:
                    for g in order:
                        s = measure(g, w, args.seconds, args.warmup, cursor)
                        results[(group, w)][g.key].samples.append(s)
                        denied = w.denied and g.key != "A"
                        if (s.status_errors == s.requests) != denied and (denied or s.status_errors):
                            problems.append(f"round {rnd + 1} {g.key} {w.name}/{w.conns}: {s.status_errors} of {s.requests} non-2xx")
                        print(
                            f"round {rnd + 1} {g.key:5} {w.name:17} c={w.conns:<3} {s.rps:8.0f} req/s  p50 {s.p50_us} us  p99 {s.p99_us} us  "
                            f"cpu {s.cpu_us_per_req:.1f} us/req",
                            flush=True,
                        )
        extra = versions()
        extra.update({f"mcp-guard VM memory (one worker, after the run), {key}": f"{vm_memory(g)} bytes" for key, g in gateways.items() if key.startswith("C")})
        extra.update({f"Envoy RSS after the run, {key}": f"{rss_kib(g.proc.pid)} KiB" for key, g in gateways.items()})
        micro = "(skipped)" if args.only else subprocess.run(
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
