"""`make demo` works as the README says: the walk starts every demo process (two replicas, the
database server, the JWKS endpoint, Envoy with envoy/demo.yaml) and shows each call, the
gateway's decision and which server answered."""

from __future__ import annotations

import os
import subprocess

from harness import procs


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
    for refused in (
        'REFUSED   403 -32003: tool "delete_file" is denied by rule "no-destruction"',
        'REFUSED   403 -32003: tool "db_drop_table" is denied by rule "no-destruction"',
        'REFUSED   403 -32003: no rule allows tool "db_query"',
        "REFUSED   401 -32001: missing credentials",
        "REFUSED   400 -32020: Mcp-Name header",
        "REFUSED   400 -32600: duplicate key",
        'REFUSED   403 -32003: batch[1]: tool "delete_file"',
        "REFUSED   400 -32700",
        "REFUSED   415 -32015",
        "REFUSED   413 -32013",
    ):
        assert refused in out, out
    # rmcp: initialize, tools/list, whoami, echo, whoami, DELETE; Python SDK: whoami twice,
    # db_query (alice) and echo (CI bot).
    assert out.count("ALLOWED") == 10, out
