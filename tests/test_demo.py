"""`make demo` works as the README says: the walk shows each call and the gateway's decision."""

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
    for refused in (
        'REFUSED   403 -32003: tool "delete_file" is denied by policy',
        "REFUSED   400 -32020: Mcp-Name header",
        "REFUSED   400 -32600: duplicate key",
        'REFUSED   403 -32003: batch[1]: tool "delete_file"',
        "REFUSED   400 -32700",
        "REFUSED   415 -32015",
        "REFUSED   413 -32013",
    ):
        assert refused in out, out
    # initialize, tools/list, echo and DELETE (rmcp), add (Python SDK).
    assert out.count("ALLOWED") == 5, out
