"""`make demo`: the demo gateway (envoy/demo.yaml) in front of two replicas of an MCP server,
a database MCP server and a JWKS endpoint, and a scripted session showing each call, the
gateway's decision and which server answered.

Ports are the ones envoy/demo.yaml names (docker-compose.yml runs the same processes on the
same ports): the gateway on 127.0.0.1:10000, Envoy's admin on :9901, the replicas on :18081
and :18082, the database server on :18083, the JWKS on :18090. DEMO_EXIT=1 stops after the
walk; otherwise everything stays up until Ctrl-C.
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

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import demo_stack as stack  # noqa: E402
from harness import gateway as gw  # noqa: E402
from harness import procs  # noqa: E402

PORTS = stack.SHIPPED
MCP_URL = f"http://127.0.0.1:{PORTS['gateway']}/mcp"
CI_KEY = stack.CI_KEY
STATELESS_META = {"io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {}}


def show(who: str, what: str, outcome: dict[str, Any]) -> None:
    """One line per call: who asked, what, and what the gateway decided."""
    if outcome.get("ok"):
        detail = json.dumps(outcome.get("detail", ""), ensure_ascii=False)
        print(f"  {who:<12} {what:<44} ALLOWED   {detail[:80]}")
    else:
        err = outcome.get("error", {})
        reason = err.get("data", {}).get("reason") or err.get("message", "")
        print(f"  {who:<12} {what:<44} REFUSED   {err.get('http_status', '')} {err.get('code', '')}: {reason}")


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


def raw(what: str, body: bytes, headers: dict[str, str] | None = None, path: str = "/mcp") -> httpx.Response:
    """POST `body` as the CI bot (to `path` on the gateway) and show the gateway's answer."""
    headers = {"content-type": "application/json", "accept": "application/json, text/event-stream", "x-api-key": CI_KEY, **(headers or {})}
    resp = httpx.post(f"http://127.0.0.1:{PORTS['gateway']}{path}", content=body, headers=headers, timeout=10)
    if resp.headers.get("content-type") == "application/json" and resp.status_code >= 400:
        err = resp.json()["error"]
        show("raw HTTP", what, {"ok": False, "error": {**err, "http_status": resp.status_code}})
    else:
        show("raw HTTP", what, {"ok": True, "detail": f"HTTP {resp.status_code} from the MCP server"})
    return resp


def walk() -> None:
    alice = {"authorization": f"Bearer {stack.token('alice', ['dev'])}"}
    print("\n1. alice (JWT, role dev), session-based client (official Rust SDK rmcp, 2025-11-25):")
    print("   the session stays on the replica that created it")
    steps = ("list", "call:whoami", 'call:echo:{"text":"hello through mcp-guard"}', "call:whoami", 'call:delete_file:{"path":"/etc/passwd"}', "close")
    run = procs.run_rmcp_client(MCP_URL, *steps, headers=alice)
    for line in run.lines:
        step = line.get("step")
        if step == "initialize":
            show("rmcp", f"initialize ({line.get('protocol_version')})", {"ok": line.get("ok"), "detail": "session " + str(line.get("session_id", ""))[:8]})
        elif step == "list":
            show("rmcp", "tools/list (filtered for alice)", sdk_outcome(line))
        elif step == "call":
            show("rmcp", f"tools/call {line.get('tool')}", sdk_outcome(line))
        elif step == "close":
            show("rmcp", "DELETE (end session)", {"ok": line.get("ok"), "detail": "session ended"})

    print("\n2. alice, stateless client (official Python SDK 2.x, 2026-07-28): db_* tools go to the database server")
    for name, args in (("whoami", "{}"), ("whoami", "{}"), ("db_query", '{"sql": "select * from orders"}'), ("db_drop_table", '{"table": "orders"}')):
        run = procs.run_py_client(MCP_URL, "call", name, args, headers=alice, no_validate=True)
        show("python-sdk", f"tools/call {name}", sdk_outcome(run.first("call")))
    print("   a db_* result is scanned before it reaches the model: the address in it is redacted")
    sql = "select plan from customers where email = 'jane.doe@example.com'"
    run = procs.run_py_client(MCP_URL, "call", "db_query", json.dumps({"sql": sql}), headers=alice, no_validate=True)
    show("python-sdk", "tools/call db_query (result with an email)", sdk_outcome(run.first("call")))

    print("\n3. The CI bot (API key): only echo and whoami")
    for name, args in (("echo", '{"text": "build 42 ok"}'), ("db_query", '{"sql": "select 1"}')):
        run = procs.run_py_client(MCP_URL, "call", name, args, headers={"x-api-key": CI_KEY}, no_validate=True)
        show("python-sdk", f"tools/call {name}", sdk_outcome(run.first("call")))
    run = procs.run_py_client(MCP_URL, "call", "echo", '{"text": "x"}', no_validate=True)
    show("anonymous", "tools/call echo", sdk_outcome(run.first("call")))

    print("\n4. What a strict gateway refuses (CI bot's API key)")
    call = {"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "echo", "arguments": {"text": "x"}, "_meta": STATELESS_META}}
    stateless = {"mcp-protocol-version": "2026-07-28", "mcp-method": "tools/call"}
    raw("escaped name \"d\\u0065lete_file\"", json.dumps(call).replace('"echo"', '"d\\u0065lete_file"').encode(), {**stateless, "mcp-name": "delete_file"})
    raw("Mcp-Name: echo, body names delete_file", json.dumps(call).replace('"echo"', '"delete_file"').encode(), {**stateless, "mcp-name": "echo"})
    raw("duplicate \"name\" key", b'{"jsonrpc":"2.0","id":8,"method":"tools/call","params":{"name":"echo","name":"delete_file"}}')
    batch = [{"jsonrpc": "2.0", "id": i, "method": "tools/call", "params": {"name": name}} for i, name in enumerate(("echo", "delete_file"))]
    raw("batch with one denied member", json.dumps(batch).encode())
    wrong = json.loads(json.dumps(call))
    wrong["params"]["arguments"] = {"text": 42}
    raw("echo with a number as its text (schema: string)", json.dumps(wrong).encode(), {**stateless, "mcp-name": "echo"})
    raw("malformed JSON", b'{"jsonrpc":"2.0","id":9,"method":')
    raw("gzip-encoded body", b"\x1f\x8b...", {"content-encoding": "gzip"})
    raw("a 2 MiB body", b'{"jsonrpc":"2.0","id":10,"method":"tools/call","params":{"name":"echo","arguments":{"text":"' + b"x" * (2 << 20) + b'"}}}')

    print('\n5. Rate limit "ci-calls": the CI bot may make 3 tool calls, then one every 20 s (its echo above was the first)')
    for n in range(1, 4):
        resp = raw(f"tools/call echo ({n})", json.dumps(call).encode(), {**stateless, "mcp-name": "echo"})
        if resp.status_code == 429:
            limit = resp.json()["error"]["data"]["limit"]
            print(f"  {'':<57} Retry-After: {resp.headers.get('retry-after')}, limit {limit!r}, RateLimit: {resp.headers.get('ratelimit')}")
            break

    print("\n6. Path tricks: the endpoint is /mcp; other spellings of it do not bypass the policy")
    delete = json.dumps(call).replace('"echo"', '"delete_file"').encode()
    for path in ("/MCP/", "/mcp/"):
        raw(f"POST {path} tools/call delete_file", delete, {**stateless, "mcp-name": "delete_file"}, path=path)


def metrics() -> None:
    """The gateway's own account of the walk: Envoy's Prometheus output, mcp-guard's series."""
    print("\n7. The gateway's metrics for this walk (non-zero mcp_guard_* series of Envoy's /stats/prometheus, histogram buckets left out)")
    text = httpx.get(f"http://127.0.0.1:{PORTS['admin']}/stats/prometheus", timeout=10).text
    for line in text.splitlines():
        series, _, value = line.rpartition(" ")
        if series.startswith("mcp_guard_") and "_bucket{" not in series and float(value) != 0:
            print(f"  {series} {value if float(value).is_integer() else f'{float(value):.1f}'}")


def main() -> int:
    log_dir = Path(tempfile.mkdtemp(prefix="mcp-guard-demo-"))
    for port in PORTS.values():
        try:
            procs.wait_port(port, timeout=0.1)
        except TimeoutError:
            continue
        print(f"port {port} is already in use: stop what runs there (an earlier demo?) and retry", file=sys.stderr)
        return 1
    demo = stack.start(log_dir)
    try:
        print(f"mcp-guard demo: Envoy with {gw.WASM.relative_to(procs.REPO)} ({gw.WASM.stat().st_size} bytes)")
        print(f"  gateway {MCP_URL}  ->  replicas :{PORTS['replica-a']} and :{PORTS['replica-b']}, db_* tools -> :{PORTS['db']}")
        print(f"  policy and routing: envoy/demo.yaml   (logs, with Envoy's access log: {log_dir})")
        walk()
        metrics()
        if os.environ.get("DEMO_EXIT") == "1":
            return 0
        print(f"\nThe gateway is running on {MCP_URL} (Envoy admin and /stats/prometheus on http://127.0.0.1:{PORTS['admin']}).")
        print(f"Try: .venv/bin/python tests/clients/py_client.py --url {MCP_URL} --header x-api-key:{CI_KEY} list   Ctrl-C to stop.")
        stop = threading.Event()
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        while not stop.wait(1.0):
            if not demo.alive():
                print("a demo process exited; see the logs above", file=sys.stderr)
                return 1
        return 0
    finally:
        demo.stop()


if __name__ == "__main__":
    sys.exit(main())
