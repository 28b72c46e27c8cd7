"""`make demo`: the demo gateway (envoy/demo.yaml) in front of a real MCP server, and a
scripted session showing each call and the gateway's decision.

Ports are the ones envoy/demo.yaml names: the gateway on 127.0.0.1:10000, Envoy's admin
on :9901, the MCP server on :18081. DEMO_EXIT=1 stops after the walk; otherwise the
gateway stays up until Ctrl-C.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

import httpx
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import gateway as gw  # noqa: E402
from harness import procs  # noqa: E402

GATEWAY = "http://127.0.0.1:10000"
MCP_URL = f"{GATEWAY}/mcp"
ADMIN_PORT = 9901
SERVER_PORT = 18081
STATELESS_META = {"io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {}}


def show(who: str, what: str, outcome: dict[str, Any]) -> None:
    """One line per call: who asked, what, and what the gateway decided."""
    if outcome.get("ok"):
        detail = json.dumps(outcome.get("detail", ""), ensure_ascii=False)
        print(f"  {who:<22} {what:<44} ALLOWED   {detail[:70]}")
    else:
        err = outcome.get("error", {})
        reason = err.get("data", {}).get("reason") or err.get("message", "")
        print(f"  {who:<22} {what:<44} REFUSED   {err.get('http_status', '')} {err.get('code', '')}: {reason}")


def sdk_outcome(line: dict[str, Any]) -> dict[str, Any]:
    if line.get("ok"):
        result = line.get("result") or {}
        texts = [c.get("text") for c in result.get("content", []) if c.get("type") == "text"]
        return {"ok": True, "detail": texts[0] if texts else line.get("tools", result)}
    err = dict(line.get("error") or {})
    body = err.get("body")
    if isinstance(body, dict) and "error" in body:
        err.update(body["error"])
    return {"ok": False, "error": err}


def raw(what: str, body: bytes, headers: dict[str, str] | None = None) -> None:
    headers = {"content-type": "application/json", "accept": "application/json, text/event-stream", **(headers or {})}
    resp = httpx.post(MCP_URL, content=body, headers=headers, timeout=10)
    if resp.headers.get("content-type") == "application/json" and resp.status_code >= 400:
        err = resp.json()["error"]
        show("raw HTTP", what, {"ok": False, "error": {**err, "http_status": resp.status_code}})
    else:
        show("raw HTTP", what, {"ok": True, "detail": f"HTTP {resp.status_code} from the MCP server"})


def walk() -> None:
    print("\n1. A session-based client (official Rust SDK rmcp, protocol 2025-11-25)")
    run = procs.run_rmcp_client(MCP_URL, "list", 'call:echo:{"text":"hello through mcp-guard"}', 'call:delete_file:{"path":"/etc/passwd"}', "close")
    for line in run.lines:
        step = line.get("step")
        if step == "initialize":
            show("rmcp", f"initialize ({line.get('protocol_version')})", {"ok": line.get("ok"), "detail": "session " + str(line.get("session_id", ""))[:8]})
        elif step == "list":
            show("rmcp", "tools/list", sdk_outcome(line))
        elif step == "call":
            show("rmcp", f"tools/call {line.get('tool')}", sdk_outcome(line))
        elif step == "close":
            show("rmcp", "DELETE (end session)", {"ok": line.get("ok"), "detail": "session ended"})

    print("\n2. A stateless client (official Python SDK 2.x, protocol 2026-07-28)")
    for name, args in (("add", '{"a": 20, "b": 22}'), ("delete_file", '{"path": "/tmp/x"}')):
        run = procs.run_py_client(MCP_URL, "call", name, args, no_validate=True)
        show("python-sdk", f"tools/call {name}", sdk_outcome(run.first("call")))

    print("\n3. What a strict gateway refuses")
    call = {"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "echo", "arguments": {"text": "x"}, "_meta": STATELESS_META}}
    stateless = {"mcp-protocol-version": "2026-07-28", "mcp-method": "tools/call"}
    raw("escaped name \"d\\u0065lete_file\"", json.dumps(call).replace('"echo"', '"d\\u0065lete_file"').encode(), {**stateless, "mcp-name": "delete_file"})
    raw("Mcp-Name: echo, body names delete_file", json.dumps(call).replace('"echo"', '"delete_file"').encode(), {**stateless, "mcp-name": "echo"})
    raw("duplicate \"name\" key", b'{"jsonrpc":"2.0","id":8,"method":"tools/call","params":{"name":"echo","name":"delete_file"}}')
    batch = [{"jsonrpc": "2.0", "id": i, "method": "tools/call", "params": {"name": name}} for i, name in enumerate(("echo", "delete_file"))]
    raw("batch with one denied member", json.dumps(batch).encode())
    raw("malformed JSON", b'{"jsonrpc":"2.0","id":9,"method":')
    raw("gzip-encoded body", b"\x1f\x8b...", {"content-encoding": "gzip"})
    raw("a 2 MiB body", b'{"jsonrpc":"2.0","id":10,"method":"tools/call","params":{"name":"echo","arguments":{"text":"' + b"x" * (2 << 20) + b'"}}}')


def main() -> int:
    log_dir = Path(tempfile.mkdtemp(prefix="mcp-guard-demo-"))
    for port in (10000, ADMIN_PORT, SERVER_PORT):
        try:
            procs.wait_port(port, timeout=0.1)
        except TimeoutError:
            continue
        print(f"port {port} is already in use: stop what runs there (an earlier demo?) and retry", file=sys.stderr)
        return 1
    server = procs.start_mcp_server("demo", port=SERVER_PORT, log_dir=log_dir)
    envoy = None
    try:
        envoy = gw.launch(yaml.safe_load(gw.DEMO_YAML.read_text()), name="envoy-demo", log_dir=log_dir, concurrency=2)
        gw.wait_ready(envoy, ADMIN_PORT)
        print(f"mcp-guard demo: Envoy with {gw.WASM.relative_to(procs.REPO)} ({gw.WASM.stat().st_size} bytes)")
        print(f"  gateway {MCP_URL}  ->  MCP server http://127.0.0.1:{SERVER_PORT}/mcp   (logs: {log_dir})")
        print("  policy: envoy/demo.yaml (tools matching delete_* are denied)")
        walk()
        if os.environ.get("DEMO_EXIT") == "1":
            return 0
        print(f"\nThe gateway is running on {MCP_URL} (Envoy admin http://127.0.0.1:{ADMIN_PORT}). Ctrl-C to stop.")
        stop = threading.Event()
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        while not stop.wait(1.0):
            if not envoy.alive() or not server.proc.alive():
                print("a demo process exited; see the logs above", file=sys.stderr)
                return 1
        return 0
    finally:
        if envoy is not None:
            envoy.stop()
        server.stop()


if __name__ == "__main__":
    sys.exit(main())
