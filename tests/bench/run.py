"""`make bench`: Envoy passthrough (A), Envoy's native MCP chain (B) and Envoy with mcp-guard (C),
measured in alternating rounds in one run, written to BENCHMARKS.md.

Every row reports what a gateway adds over A in the same round: the proxy process's CPU time
per request served, the throughput ratio and the median latency, as medians with min..max
over the rounds. The headline group (issue 17) puts the same full policy (JWT with cached
verification, per-subject tool rules, a per-subject token bucket) in Envoy's native chain
(B-full) and in mcp-guard (C-full), next to mcp-guard with an allowlist only (C) and the Wasm
floor (T), for an allowed call, a denied call and a tools/list, and prints the goal ratios.

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
    tokens: str = "rs256"  # the TOKEN_SETS key whose first token must be allowed (auth gateways)
    prime: bool = False  # one tools/list through it before measuring: it knows the tools' schemas, as after a client's list


@dataclass(frozen=True)
class TokenSet:
    """`count` distinct tokens signed with the private key in envoy/bench/`pem`."""

    alg: str
    kid: str
    pem: str
    count: int
    subjects: tuple[str, ...] = ()  # cycled as `sub`; empty: user-<i>


@dataclass(frozen=True)
class Workload:
    name: str
    conns: int  # many connections for throughput, one for latency
    body: str = ""  # the request mcp.lua sends (MCP_WORKLOAD); the name if empty
    tokens: str = ""  # a TOKEN_SETS key: send "authorization: Bearer <token>", cycling
    denied: bool = False  # every gateway but A and T must refuse every request (they forward it)


@dataclass(frozen=True)
class Group:
    """Gateways measured on the same workloads, in alternating order each round. roles[0] is the
    passthrough every row is measured against; `ref` the gateway the others are compared with."""

    roles: tuple[str, ...]
    workloads: tuple[Workload, ...]
    ref: str


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

# Argument contracts on the four listed tools the calls name (envoy/bench/upstream.yaml gives
# each a schema with a typed property, a bound and a required key); db_read, also called, is
# not listed and so not checked.
GUARD_ARGUMENTS = {**GUARD_ALLOWLIST, "contracts": {"arguments": [{"tools": ["echo", "add", "search", "db_query"], "mode": "enforce"}]}}

# Every call's result scanned for credentials and e-mail addresses (held, scanned, passed).
GUARD_RESULTS = {**GUARD_ALLOWLIST, "contracts": {"results": [{"detectors": ["secrets", "email"], "action": "redact"}]}}

HUGE_BUCKET = {"capacity": 1000000000, "refill": {"tokens": 1000000000}}  # never refuses: its cost, not its 429s

GUARD_RATELIMIT = {
    **GUARD_ALLOWLIST,
    # Two buckets per call (per caller, per tool), so large that nothing is refused.
    "rate_limits": {
        "limits": [
            {"name": "per-caller", "methods": ["tools/call"], "key": ["subject"], "bucket": HUGE_BUCKET},
            {"name": "per-tool", "methods": ["tools/call"], "key": ["tool"], "bucket": HUGE_BUCKET, "cost": {"tools": {"db_*": 5}}},
        ]
    },
}

# The full policy of issue 17, as mcp-guard states it: guard-jwt.yaml's provider (cached
# verification), tool rules per subject, one token bucket per subject. native-full.yaml is the
# same policy in Envoy's native chain.
FULL_TOOLS = {"alice": ["echo", "add", "search", "db_*"], "bob": ["echo", "add", "search", "db_query", "db_read"]}


def full_policy() -> dict:
    guard_jwt = yaml.safe_load((BENCH / "guard-jwt.yaml").read_text())
    hcm = guard_jwt["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    wasm = next(f for f in hcm["http_filters"] if "vm_config" in f["typed_config"].get("config", {}))
    auth = json.loads(wasm["typed_config"]["config"]["configuration"]["value"])["auth"]
    return {
        "endpoints": ["/mcp"],
        "auth": auth,
        "policy": {"rules": [{"name": sub, "who": {"subjects": [sub]}, "allow": {"tools": tools}} for sub, tools in FULL_TOOLS.items()]},
        "rate_limits": {"limits": [{"name": "per-subject", "key": ["subject"], "bucket": HUGE_BUCKET}]},
    }


PROBE_TIMES = 10
# The trivial filter's host-call probes (tests/bench/trivial-filter): what each host call the
# filter makes costs in Envoy's V8, next to T in one group.
PROBES = (
    ("clock", "get_current_time_nanoseconds"),
    ("metric", "increment_metric"),
    ("remove_header", "remove_header_map_value"),
    ("property", "get_property"),
    ("shared_get", "get_shared_data"),
    ("headers", "get_header_map_pairs"),
)

GATEWAYS = {
    g.key: g
    for g in (
        GatewaySpec("A", "Envoy passthrough (router only; a token header is simply forwarded)", BENCH / "passthrough.yaml"),
        GatewaySpec("B", "Envoy's native chain: `envoy.filters.http.mcp` (reject_duplicate_keys) + `rbac` on the parsed tool name", BENCH / "native.yaml"),
        GatewaySpec("C", "Envoy + mcp-guard with the same tool allowlist", BENCH / "guard.yaml"),
        GatewaySpec("T", "the Wasm floor: a trivial Rust proxy-wasm filter that holds the request, copies the body once and parses it with serde_json",
                    BENCH / "trivial.yaml", module=TRIVIAL),
        *(GatewaySpec(f"T-{probe}", f"T making {PROBE_TIMES} `{call}` host calls per request: one costs (T-{probe} - T) / {PROBE_TIMES}",
                      BENCH / "trivial.yaml", module=TRIVIAL, filter_config={"probe": probe, "times": PROBE_TIMES})
          for probe, call in PROBES),
        GatewaySpec("B-full", "the full policy in Envoy's native chain: `jwt_authn` (cache 1024) + `mcp` + `rbac` tool rules per JWT subject + "
                    "`local_ratelimit` one bucket per subject (never refusing)", BENCH / "native-full.yaml", auth=True, tokens="subjects"),
        GatewaySpec("C-full", "the full policy in mcp-guard: its JWT provider (cached verification), tool rules per subject, one token bucket "
                    "per subject (never refusing)", BENCH / "guard-jwt.yaml", auth=True, tokens="subjects", filter_config=full_policy()),
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
        GatewaySpec("C-args", "C with argument contracts enforced (each call validated against its tool's inputSchema)",
                    BENCH / "guard.yaml", filter_config=GUARD_ARGUMENTS, prime=True),
        GatewaySpec("C-scan", "C with every result scanned for credentials and e-mail addresses (the answer held, scanned, redacted if need be)",
                    BENCH / "guard.yaml", filter_config=GUARD_RESULTS),
        GatewaySpec("C-noflag", 'C (`"hold": "body"`, the default) without allow_on_headers_stop_iteration, as Istio and Envoy Gateway run it',
                    BENCH / "guard.yaml", flag=False),
    )
}
UNCACHED = 5000  # tokens cycled per set: more than either gateway's cache (1024) holds
TOKEN_SETS = {
    "subjects": TokenSet("RS256", "rs", "bench-rs256.pem", 8, tuple(FULL_TOOLS)),
    "rs256": TokenSet("RS256", "rs", "bench-rs256.pem", UNCACHED),
    "rs256-1000": TokenSet("RS256", "rs", "bench-rs256.pem", 1000),
    "es256": TokenSet("ES256", "es", "bench-es256.pem", UNCACHED),
    "eddsa": TokenSet("EdDSA", "ed", "bench-ed25519.pem", UNCACHED),
}
HEADLINE = Group(
    ("A", "B-full", "C-full", "C", "T"),
    tuple(Workload(name, conns, body, "subjects", denied) for name, body, denied in (
        ("call", "call300", False), ("denied", "denied", True), ("list", "list", False)) for conns in (32, 1)),
    ref="B-full",
)
GROUPS = (
    HEADLINE,
    Group(("A", "B", "C"), (Workload("call300", 32), Workload("call64k", 32)), ref="B"),
    Group(
        ("A", "B-jwt", "C-jwt"),
        (
            Workload("jwt-rs256-nocache", 32, "call300", "rs256"),
            Workload("jwt-es256-nocache", 32, "call300", "es256"),
            Workload("jwt-eddsa-nocache", 32, "call300", "eddsa"),
        ),
        ref="B-jwt",
    ),
    # Four workers and a rotating set of 1000 tokens: how often each token is verified.
    Group(("A", "B-jwt-4w", "C-jwt-4w"), (Workload("jwt-rs256-1000", 32, "call300", "rs256-1000"),), ref="B-jwt-4w"),
    # Features and holds against plain C: their "vs C" column is the feature's own cost.
    Group(("A", "C", "C-100", "C-audit", "C-rl", "C-req", "C-noflag"), (Workload("call300", 32), Workload("call300", 1)), ref="C"),
    Group(("A", "C", "C-100"), (Workload("denied", 32, denied=True),), ref="C"),
    Group(("A", "T", *(f"T-{probe}" for probe, _ in PROBES)), (Workload("call300", 32),), ref="T"),
    Group(("A", "C", "C-args", "C-scan"), (Workload("call300", 32), Workload("call300", 1)), ref="C"),
)
WORKLOAD_NOTES = (
    "Workloads: `call300` a ~300 B tools/call (varied ids and allowlisted tool names); `list` tools/list; `call64k` a 64 KiB",
    "tools/call; `denied` a tools/call of a tool outside the allowlist (every gateway but A and T answers 403).",
    "Headline rows (`call`, `denied`, `list`) send those bodies with `authorization: Bearer <JWT>` to every gateway (RS256,",
    f"{TOKEN_SETS['subjects'].count} tokens cycled, subjects {' and '.join(FULL_TOOLS)}; the gateways without auth forward the header).",
    f"Each `jwt-*-nocache` row cycles {UNCACHED} distinct tokens (RSA 2048, EC P-256, Ed25519), more than either cache holds,",
    "so every request verifies a signature (the caches stay on).",
    f"`jwt-rs256-1000` (A/B-jwt-4w/C-jwt-4w) cycles {TOKEN_SETS['rs256-1000'].count} RS256 tokens through Envoys with 4 workers"
    " (pinned to the same core): a cache per worker verifies each token up to 4 times, mcp-guard's shared one once.",
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
                    hf["typed_config"]["config"]["configuration"] = {
                        "@type": "type.googleapis.com/google.protobuf.StringValue",
                        "value": json.dumps(spec.filter_config),
                    }
    out = out_dir / f"{spec.key}.yaml"
    out.write_text(yaml.safe_dump(config, sort_keys=False))
    return out


def start_envoy(name: str, config: Path, admin_port: int, core: int, log_dir: Path, log_level: str = "warning", concurrency: int = 1) -> procs.Proc:
    cmd = ["taskset", "-c", str(core), str(gw.ENVOY), "-c", str(config), "--concurrency", str(concurrency), "--use-dynamic-base-id", "-l", log_level]
    proc = procs.start(name, cmd, log_dir=log_dir)
    gw.wait_ready(proc, admin_port)
    return proc


def prime(port: int) -> None:
    """Lists the tools through a gateway once, as a client would before calling them."""
    body = b'{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{}}'
    headers = {"content-type": "application/json", "accept": "application/json, text/event-stream", "x-bench-answer": "tools/list"}
    request = urllib.request.Request(f"http://127.0.0.1:{port}/mcp", data=body, headers=headers, method="POST")
    with urllib.request.urlopen(request, timeout=10) as r:
        if b'"echo"' not in r.read():
            raise RuntimeError("priming list: the gateway did not pass the tools")


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
    configs, exp far ahead (2100-01-01), a distinct jti per token and a distinct sub unless the
    set names its subjects."""
    files = {}
    for name, ts in sets.items():
        key = load_pem_private_key((BENCH / ts.pem).read_bytes(), password=None)
        now = int(time.time())
        tokens = [
            jwt.encode(
                {"iss": "mcp-bench", "aud": "mcp-gateway", "sub": ts.subjects[i % len(ts.subjects)] if ts.subjects else f"user-{i}",
                 "jti": f"{name}-{i}", "iat": now, "exp": 4102444800},
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
    """Every gateway but A and T must allow the allowlisted call and refuse delete_file; A and T
    pass both. A gateway with auth must also answer 401 without a token or with a forged one, and
    200 with a token of each key (the full-policy gateways: of each subject)."""
    problems = []
    body = '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"%s","arguments":{}}}'
    tokens = {name: path.read_text().split() for name, path in token_files.items()}
    for g in gateways:
        valid = tokens[g.spec.tokens][0]
        head_payload, _ = valid.rsplit(".", 1)
        forged = f"{head_payload}.{tokens[g.spec.tokens][1].rsplit('.', 1)[1]}"  # another token's signature
        bearer = valid if g.spec.auth else None
        cases = [("echo", bearer, 200), ("delete_file", bearer, 200 if g.key in ("A", "T") else 403)]
        if g.spec.auth:
            cases += [("echo", None, 401), ("echo", forged, 401)]
            fits = [g.spec.tokens] if TOKEN_SETS[g.spec.tokens].subjects else [k for k, ts in TOKEN_SETS.items() if not ts.subjects]
            cases += [("echo", t, 200) for k in fits for t in tokens[k][: max(1, len(TOKEN_SETS[k].subjects))]]
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


def spread(values: list[float], f: str = "{:.2f}") -> str:
    """Median (min..max) over the rounds; n/a when no round gave a value (a reference that added nothing)."""
    if not values:
        return "n/a"
    return f"{f.format(statistics.median(values))} ({f.format(min(values))}..{f.format(max(values))})"


Results = dict[tuple[Group, Workload], dict[str, Cell]]  # per row: gateway key -> cell


def per_round(cells: dict[str, Cell], key: str, base: str, attr: str) -> list[float]:
    """`key`'s `attr` minus `base`'s, round by round."""
    return [getattr(s, attr) - getattr(b, attr) for s, b in zip(cells[key].samples, cells[base].samples)]


def added_cpu_ratio(cells: dict[str, Cell], key: str, ref: str, base: str) -> list[float]:
    """`key`'s CPU per request over `base` divided by `ref`'s, round by round."""
    return [k / r for k, r in zip(per_round(cells, key, base, "cpu_us_per_req"), per_round(cells, ref, base, "cpu_us_per_req")) if r > 0]


GOALS = (("C-full", "B-full", 0.6), ("C-full", "T", 1.5), ("C", "B-full", None), ("C", "T", None))


def goal_lines(results: Results) -> list[str]:
    """Issue 17's goal, stated as the ratios of added CPU per request in the headline rows."""
    lines = []
    for (group, w), cells in results.items():
        if group != HEADLINE:
            continue
        parts = []
        for key, ref, goal in GOALS:
            r = added_cpu_ratio(cells, key, ref, group.roles[0])
            if r:
                met = "" if goal is None else (" (goal <= %g: %s)" % (goal, "met" if statistics.median(r) <= goal else "NOT met"))
                parts.append(f"{key}/{ref} {spread(r)}{met}")
        lines.append(f"- `{w.name}`, {w.conns} conn: " + "; ".join(parts))
    return lines


def tail_output(cmd: list[str], problems: list[str]) -> str:
    """The output of one of the report's extra commands; a failure is noted in `problems`."""
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=procs.REPO)
    if out.returncode != 0:
        problems.append(f"`{' '.join(cmd)}` failed ({out.returncode}): {out.stderr.strip()[-500:]}")
    return out.stdout


def report(results: Results, rounds: int, seconds: float, extra: dict[str, str], micro: str, calls: str, problems: list[str]) -> str:
    lines = [
        f"Command: `make bench` (BENCH_ROUNDS={rounds}, BENCH_SECONDS={seconds:g}). Envoy under test: `--concurrency 1` (4 for the `-4w` gateways), pinned to core 0;",
        "wrk (1 thread) and the upstream (Envoy `direct_response`) share core 1. Each group of rows is measured in alternating order",
        "every round, with a discarded warm-up before every measurement. Every figure is the median over the rounds, with",
        "min..max; \"added\" is against A (passthrough) in the same round; CPU is the Envoy process's CPU time per request served.",
        "",
        *(f"- {g.key}: {g.legend}" for g in GATEWAYS.values()),
        "",
        *WORKLOAD_NOTES,
        "",
        "### Goal (issue 17): added CPU per request, full policy against the native chain and the Wasm floor",
        "",
        *goal_lines(results),
        "",
        "| workload | conns | gateway | req/s | throughput / A | added CPU us/req | added CPU / ref's | added p50 (us) | p50 / p99 (us) | core-0 use |",
        "|---|---:|---|---:|---|---|---|---|---|---:|",
    ]
    for (group, w), cells in results.items():
        base = group.roles[0]
        a = cells[base]
        lines.append(
            f"| {w.name} | {w.conns} | {base} | {a.median('rps'):.0f} | | (A: {spread([s.cpu_us_per_req for s in a.samples], '{:.1f}')}) | | | "
            f"{a.median('p50_us'):.0f} / {a.median('p99_us'):.0f} | {a.median('cpu_util'):.0%} |"
        )
        for key in group.roles[1:]:
            c = cells[key]
            thr = [s.rps / b.rps for s, b in zip(c.samples, a.samples)]
            vs_ref = f"{spread(added_cpu_ratio(cells, key, group.ref, base))} ({group.ref})" if key != group.ref else "(ref)"
            lines.append(
                f"| {w.name} | {w.conns} | {key} | {c.median('rps'):.0f} | {spread(thr)} | "
                f"{spread(per_round(cells, key, base, 'cpu_us_per_req'), '{:.1f}')} | {vs_ref} | "
                f"{spread(per_round(cells, key, base, 'p50_us'), '{:.0f}')} | {c.median('p50_us'):.0f} / {c.median('p99_us'):.0f} | "
                f"{c.median('cpu_util'):.0%} |"
            )
    lines += ["", "### Run", ""]
    lines += [f"- {k}: {v}" for k, v in extra.items()]
    if problems:
        lines += ["", "### Problems seen", ""] + [f"- {p}" for p in problems]
    lines += ["", "### Host calls and wasm instructions per request (`make hostcalls`, the same modules on wasmtime)", "", calls.strip()]
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
    ap.add_argument("--rounds", type=int, default=int(os.environ.get("BENCH_ROUNDS", "5")))
    ap.add_argument("--seconds", type=float, default=float(os.environ.get("BENCH_SECONDS", "3")))
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
        ready_ms: dict[str, float] = {}
        for spec in specs:
            port, admin = procs.free_port(), procs.free_port()
            t0 = time.monotonic()
            proc = start_envoy(f"gateway-{spec.key}", rewrite(spec, port, admin, upstream_port, log_dir), admin, 0, log_dir, spec.log_level, spec.concurrency)
            ready_ms[spec.key] = (time.monotonic() - t0) * 1e3
            started.append(proc)
            gateways[spec.key] = Gateway(spec, proc, port, admin)
            if spec.prime:
                prime(port)
        cells = sum(len(g.roles) * len(g.workloads) for g in groups)
        print(f"{cells} cells x {args.rounds} rounds, about {cells * args.rounds * (args.seconds + args.warmup + 0.3) / 60:.0f} min", flush=True)
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
                        denied = w.denied and g.key not in ("A", "T")
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
        # Envoy's start includes compiling the module and starting its VMs (main thread, one worker).
        extra.update({f"Envoy start to ready, {key}": f"{ms:.0f} ms" for key, ms in ready_ms.items()})
        # The rounds are the run's worth: a failing extra is reported, never allowed to lose them.
        micro = "(skipped)" if args.only else tail_output(["cargo", "bench", "-q", "-p", "mcp-guard", "--bench", "core"], problems)
        calls = tail_output([sys.executable, str(Path(__file__).with_name("hostcalls.py"))], problems)
        text = report(results, args.rounds, args.seconds, extra, micro, calls, problems)
        write_report(args.out, text)
        print(text)
        return 1 if problems else 0
    finally:
        for p in reversed(started):
            p.stop()


if __name__ == "__main__":
    sys.exit(main())
