"""`make demo` works as the README says: the walk starts every demo process (two replicas, the
database server, the JWKS endpoint, Envoy with envoy/demo.yaml) and shows each call, the
gateway's decision and which server answered."""

from __future__ import annotations

import os
import re
import subprocess

from harness import procs

# `/MCP/` and `/mcp/` are read the way Express servers read them, as the endpoint, so the
# policy judges the call itself.
PATH_TRICK_REFUSAL = 'tool "delete_file" is denied by rule "no-destruction"'


def test_demo_walk_shows_decisions(rmcp_client_bin: object) -> None:
    run = subprocess.run(
        [procs.PYTHON, str(procs.TESTS / "demo.py")],
        env={**os.environ, "DEMO_EXIT": "1"},
        capture_output=True,
        text=True,
        timeout=120,
        cwd=procs.REPO,
    )
    assert run.returncode == 0, run.stderr
    out = run.stdout
    assert "tools/call echo" in out and "hello through mcp-guard" in out
    # The session's calls stay on one replica; db_query is routed to the database server.
    session_replicas = {line.split()[-1] for line in out.splitlines() if line.strip().startswith("rmcp") and "tools/call whoami" in line}
    assert len(session_replicas) == 1 and session_replicas <= {'"replica-a"', '"replica-b"'}, out
    assert 'ALLOWED   "db: 3 rows for select * from orders"' in out, out
    # A db_* result reaches the caller with the email address in it redacted.
    assert "ALLOWED   \"db: 3 rows for select plan from customers where email = '[REDACTED:email]'\"" in out, out
    assert "jane.doe@example.com" not in out, out
    for refused in (
        'REFUSED   403 -32003: tool "delete_file" is denied by rule "no-destruction"',
        'REFUSED   403 -32003: tool "db_drop_table" is denied by rule "no-destruction"',
        'REFUSED   403 -32003: no rule allows tool "db_query"',
        "REFUSED   401 -32001: missing credentials",
        "REFUSED   400 -32020: Mcp-Name header",
        "REFUSED   400 -32600: duplicate key",
        'REFUSED   403 -32003: batch[1]: tool "delete_file"',
        'REFUSED   400 -32602: the arguments of tool "echo" do not match its inputSchema: "/text" fails "type"',
        "REFUSED   400 -32700",
        "REFUSED   415 -32015",
        "REFUSED   413 -32013",
    ):
        assert refused in out, out
    # The CI bot's third echo after its first meets the rate limit: 429, Retry-After, the limit's name.
    lines = out.splitlines()
    limited = next(i for i, line in enumerate(lines) if "REFUSED   429 -32029" in line)
    assert 'tools/call echo (3)' in lines[limited] and 'rate limit "ci-calls" exceeded; retry in' in lines[limited], out
    assert re.search(r"Retry-After: \d+, limit 'ci-calls', RateLimit: \"ci-calls\";r=0;t=\d+", lines[limited + 1]), out
    # Other spellings of the endpoint do not get a denied tool through.
    for path in ("/MCP/", "/mcp/"):
        line = next(line for line in lines if f"POST {path} tools/call delete_file" in line)
        assert "REFUSED   403 -32003: " in line and PATH_TRICK_REFUSAL in line, line
    # The walk ends with the gateway's own metrics, non-zero mcp_guard_* series only.
    shown = lines[lines.index(next(line for line in lines if line.startswith("7. "))) + 1 :]
    series = [line.strip() for line in shown if line.startswith("  mcp_guard_")]
    for expected in (
        'mcp_guard_rejections{mcp_reason="rate_limited"} 1',
        'mcp_guard_requests{mcp_method="tools_call",mcp_tool="echo",mcp_decision="denied_limit"} 1',
        'mcp_guard_requests{mcp_method="tools_call",mcp_tool="echo",mcp_decision="allowed"} 4',
        'mcp_guard_requests{mcp_method="tools_call",mcp_tool="delete_file",mcp_decision="denied_policy"} 5',
        'mcp_guard_result_matches{mcp_tool="db_query",mcp_detector="email"} 2',
        'mcp_guard_result_redacted{mcp_tool="db_query"} 1',
    ):
        assert expected in series, out
    assert not [s for s in series if s.endswith(" 0") or "_bucket{" in s], series
    # rmcp: initialize, tools/list, whoami, echo, whoami, DELETE; Python SDK: whoami twice,
    # db_query twice (alice) and echo (CI bot); raw HTTP: the CI bot's echo twice before its limit.
    assert out.count("ALLOWED") == 13, out
