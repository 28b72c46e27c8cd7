"""The JSON-RPC reader's fuzz corpus (tests/fuzz/corpus/jsonrpc_body), read by Python's json
module too: whatever the filter accepts, Python (what the official Python SDK's servers
parse with) accepts and reads with the same method, id and tool/prompt name or URI. The
fuzz target itself holds the filter to serde_json the same way."""

from __future__ import annotations

import json
import subprocess
from typing import Any

from harness import procs

CORPUS = procs.REPO / "tests" / "fuzz" / "corpus" / "jsonrpc_body"
TARGET_KEY = {"resources/read": "uri", "resources/subscribe": "uri", "resources/unsubscribe": "uri"}


def filter_readings(files: list[str]) -> list[dict[str, Any]]:
    """`mcp-guard read`: the filter's own reading of each body, in chunks of files."""
    out = []
    for i in range(0, len(files), 400):
        cli = ["cargo", "run", "-q", "--bin", "mcp-guard", "--", "read", *files[i : i + 400]]
        run = subprocess.run(cli, capture_output=True, text=True, timeout=600, cwd=procs.REPO, check=True)
        out += [json.loads(line) for line in run.stdout.splitlines()]
    return out


def test_python_reads_what_the_filter_accepts_the_same_way() -> None:
    files = sorted(str(p) for p in CORPUS.iterdir())
    readings = filter_readings(files)
    assert len(readings) == len(files)
    accepted = [r for r in readings if r["accepted"]]
    # The corpus must exercise both sides, or this proves nothing.
    assert 0 < len(accepted) < len(readings)
    for reading in accepted:
        raw = open(reading["file"], "rb").read()
        value = json.loads(raw)  # raises if Python refuses what the filter accepted
        members = value if isinstance(value, list) else [value]
        assert len(members) == len(reading["messages"]), reading
        for member, ours in zip(members, reading["messages"], strict=True):
            method = member.get("method")
            assert ours["method"] == method, (reading["file"], member)
            if ours["id"] is not None:
                assert json.loads(ours["id"]) == member.get("id"), (reading["file"], member)
            if ours["target"] is not None:
                key = TARGET_KEY.get(method, "name")
                assert ours["target"] == member["params"][key], (reading["file"], member)
