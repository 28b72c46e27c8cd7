"""Process helpers shared by mcp-guard's Python tests: free ports, start/wait-ready/stop,
and handles for the test MCP server, the TCP sniffer and the two CLI clients.

Everything listens on 127.0.0.1 only. Child processes run in their own session (process
group) and are stopped by that group id; their stdout/stderr go to files in a log dir so
pipes can never fill up.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
TESTS = REPO / "tests"
PYTHON = sys.executable
MCP_SERVER = TESTS / "servers" / "mcp_server.py"
SNIFFER = TESTS / "servers" / "sniffer.py"
PY_CLIENT = TESTS / "clients" / "py_client.py"
LOOPBACK = "127.0.0.1"


def free_port() -> int:
    """A currently free loopback TCP port (racy by nature: bind soon after)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 10.0, host: str = LOOPBACK) -> None:
    """Block until something accepts TCP connections on host:port."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listening on {host}:{port} after {timeout}s") from None
            time.sleep(0.05)


def http_json(method: str, url: str, body: Any = None, timeout: float = 5.0) -> Any:
    """Tiny stdlib HTTP helper for control endpoints (/__seen, /__reset, /connections, /reset)."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, method=method, data=data)
    if data is not None:
        req.add_header("content-type", "application/json")
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read() or b"null")


@dataclass
class Proc:
    """A started child process with its logs."""

    name: str
    cmd: list[str]
    popen: subprocess.Popen[bytes]
    stdout_path: Path
    stderr_path: Path
    ready_match: re.Match[str] | None = None

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def stop(self, timeout: float = 5.0) -> int | None:
        """SIGTERM the process group, then SIGKILL it if it lingers. Returns the exit code."""
        if self.popen.poll() is None:
            try:
                os.killpg(self.popen.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.popen.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.popen.wait(timeout)
        return self.popen.returncode


def start(
    name: str,
    cmd: list[str],
    *,
    ready: str | None = None,
    ready_port: int | None = None,
    timeout: float = 15.0,
    log_dir: Path | None = None,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> Proc:
    """Start cmd; wait until its stdout matches regex `ready` and/or `ready_port` accepts connections."""
    log_dir = Path(log_dir or tempfile.mkdtemp(prefix="mcp-guard-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    out_path = log_dir / f"{name}.stdout"
    err_path = log_dir / f"{name}.stderr"
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        popen = subprocess.Popen(
            cmd,
            stdout=out,
            stderr=err,
            stdin=subprocess.DEVNULL,
            cwd=str(cwd or REPO),
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
            start_new_session=True,
        )
    proc = Proc(name, cmd, popen, out_path, err_path)
    deadline = time.monotonic() + timeout
    try:
        if ready is not None:
            pattern = re.compile(ready)
            while True:
                m = pattern.search(proc.stdout())
                if m:
                    proc.ready_match = m
                    break
                if not proc.alive():
                    raise RuntimeError(f"{name} exited with {popen.returncode}:\n{proc.stderr()[-3000:]}")
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{name} not ready after {timeout}s:\n{proc.stderr()[-3000:]}")
                time.sleep(0.03)
        if ready_port is not None:
            wait_port(ready_port, max(0.1, deadline - time.monotonic()))
    except BaseException:
        proc.stop()
        raise
    return proc


# --------------------------------------------------------------------------- MCP server


@dataclass
class McpServer:
    proc: Proc
    port: int
    name: str

    @property
    def base(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def url(self) -> str:
        """Streamable HTTP endpoint."""
        return f"{self.base}/mcp"

    @property
    def sse_url(self) -> str:
        """Legacy HTTP+SSE endpoint (GET)."""
        return f"{self.base}/sse"

    def seen(self, own_lists: bool = False) -> list[dict[str, Any]]:
        """Every HTTP request that reached the server: method, path, headers (dict), header_list, body, time.
        The gateway's own tools/list requests (a cold gateway lists the tools to judge a call; their
        ids start with "mcp-guard-tools-") are left out unless `own_lists`."""
        seen = http_json("GET", f"{self.base}/__seen")
        return [r for r in seen if own_lists or '"id":"mcp-guard-tools-' not in r["body"]]

    def reset(self) -> None:
        http_json("POST", f"{self.base}/__reset")

    def mutate(self, tool: str, description: str) -> str:
        """Changes `tool`'s description from now on; returns the previous one."""
        answer = http_json("POST", f"{self.base}/__mutate", {"tool": tool, "description": description})
        assert answer["ok"], answer
        return answer["old"]

    def stop(self) -> int | None:
        return self.proc.stop()


def start_mcp_server(
    name: str = "mcp-test-server",
    *,
    port: int = 0,
    json_response: bool = False,
    deny_tools: tuple[str, ...] = (),
    db_tools: bool = False,
    param_tools: bool = False,
    log_dir: Path | None = None,
    timeout: float = 15.0,
) -> McpServer:
    """Start tests/servers/mcp_server.py; port=0 lets it pick a free port (read from its ready line)."""
    cmd = [PYTHON, str(MCP_SERVER), "--port", str(port), "--name", name]
    if json_response:
        cmd.append("--json-response")
    if db_tools:
        cmd.append("--db-tools")
    if param_tools:
        cmd.append("--param-tools")
    for t in deny_tools:
        cmd += ["--deny-tool", t]
    proc = start(f"mcp-server-{name}", cmd, ready=r"ready (\d+)", timeout=timeout, log_dir=log_dir)
    assert proc.ready_match is not None
    return McpServer(proc, int(proc.ready_match.group(1)), name)


NODE = TESTS / "node" / "node_modules" / "node" / "bin" / "node"
TS_SERVER = TESTS / "servers" / "ts_server.mjs"


def start_ts_server(*, log_dir: Path | None = None, timeout: float = 20.0, tasks: bool = False) -> McpServer:
    """tests/servers/ts_server.mjs: the official TypeScript SDK on Express (Node 22 and the
    packages from `make node-deps`); same /__seen and /__reset as the Python server. `tasks`:
    with the tasks extension and its task tool."""
    cmd = [str(NODE), str(TS_SERVER), *(["--tasks"] if tasks else [])]
    proc = start("mcp-server-ts" + ("-tasks" if tasks else ""), cmd, ready=r"ready (\d+)", timeout=timeout, log_dir=log_dir)
    assert proc.ready_match is not None
    return McpServer(proc, int(proc.ready_match.group(1)), "ts")


def start_rmcp_server(*, log_dir: Path | None = None, timeout: float = 20.0) -> McpServer:
    """The rmcp-server binary (tests/rmcp-client, `make rmcp-client`): the official Rust SDK on
    axum; same /__seen and /__reset as the Python server."""
    binary = cargo_target_dir() / "release" / "rmcp-server"
    proc = start("mcp-server-rmcp", [str(binary)], ready=r"ready (\d+)", timeout=timeout, log_dir=log_dir)
    assert proc.ready_match is not None
    return McpServer(proc, int(proc.ready_match.group(1)), "rmcp")


# --------------------------------------------------------------------------- sniffer


@dataclass
class Sniffer:
    proc: Proc
    port: int
    control_port: int

    def connections(self) -> list[dict[str, Any]]:
        """[{opened_at, closed_at, peer, requests, bytes (latin-1 text)}] per accepted connection."""
        return http_json("GET", f"http://{LOOPBACK}:{self.control_port}/connections")

    def total_bytes(self) -> int:
        return sum(len(c["bytes"]) for c in self.connections())

    def reset(self) -> None:
        http_json("POST", f"http://{LOOPBACK}:{self.control_port}/reset")

    def stop(self) -> int | None:
        return self.proc.stop()


def start_sniffer(
    *, port: int = 0, control_port: int = 0, log_dir: Path | None = None, timeout: float = 10.0
) -> Sniffer:
    cmd = [PYTHON, str(SNIFFER), "--port", str(port), "--control-port", str(control_port)]
    proc = start("sniffer", cmd, ready=r"ready (\d+) (\d+)", timeout=timeout, log_dir=log_dir)
    assert proc.ready_match is not None
    return Sniffer(proc, int(proc.ready_match.group(1)), int(proc.ready_match.group(2)))


# --------------------------------------------------------------------------- clients


@dataclass
class ClientRun:
    returncode: int
    lines: list[dict[str, Any]] = field(default_factory=list)
    stderr: str = ""

    def steps(self, step: str) -> list[dict[str, Any]]:
        return [line for line in self.lines if line.get("step") == step]

    def first(self, step: str) -> dict[str, Any]:
        found = self.steps(step)
        if not found:
            raise AssertionError(f"no {step!r} line in {self.lines}\nstderr:\n{self.stderr[-2000:]}")
        return found[0]


def _run_json_lines(cmd: list[str], timeout: float, env: dict[str, str] | None = None) -> ClientRun:
    r = subprocess.run(
        cmd,
        capture_output=True,
        timeout=timeout,
        cwd=str(REPO),
        env={**os.environ, **(env or {})},
        stdin=subprocess.DEVNULL,
    )
    lines = []
    for raw in r.stdout.decode(errors="replace").splitlines():
        raw = raw.strip()
        if raw.startswith("{"):
            lines.append(json.loads(raw))
    return ClientRun(r.returncode, lines, r.stderr.decode(errors="replace"))


def cargo_target_dir() -> Path:
    return Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))


def rmcp_client_path() -> Path:
    return cargo_target_dir() / "release" / "rmcp-client"


def build_rmcp_client(timeout: float = 900.0) -> Path:
    """`cargo build --release -p rmcp-client` (a no-op when up to date); returns the binary path."""
    cargo = shutil.which("cargo")
    if cargo is None:
        raise RuntimeError("cargo not found")
    subprocess.run([cargo, "build", "--release", "-q", "-p", "rmcp-client"], cwd=str(REPO), check=True, timeout=timeout)
    return rmcp_client_path()


def run_rmcp_client(
    url: str, *steps: str, headers: dict[str, str] | None = None, timeout: float = 60.0, binary: Path | None = None
) -> ClientRun:
    """Run tests/rmcp-client: initialize (2025-11-25 session) then steps, e.g. "list", "call:echo:{...}", "close"."""
    cmd = [str(binary or rmcp_client_path()), "--url", url]
    for k, v in (headers or {}).items():
        cmd += ["--header", f"{k}:{v}"]
    cmd += list(steps)
    return _run_json_lines(cmd, timeout)


def run_py_client(
    url: str,
    *args: str,
    headers: dict[str, str] | None = None,
    mode: str | None = None,
    transport: str | None = None,
    no_validate: bool = False,
    client_timeout: float | None = None,
    timeout: float = 60.0,
) -> ClientRun:
    """Run tests/clients/py_client.py as a subprocess, e.g. run_py_client(url, "call", "echo", '{"text":"x"}')."""
    cmd = [PYTHON, str(PY_CLIENT), "--url", url]
    for k, v in (headers or {}).items():
        cmd += ["--header", f"{k}:{v}"]
    if mode:
        cmd += ["--mode", mode]
    if transport:
        cmd += ["--transport", transport]
    if no_validate:
        cmd.append("--no-validate")
    if client_timeout is not None:
        cmd += ["--timeout", str(client_timeout)]
    cmd += list(args)
    return _run_json_lines(cmd, timeout)
