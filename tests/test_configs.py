"""Every shipped Envoy configuration is one Envoy 1.40 accepts (`envoy --mode validate`)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from harness import gateway as gw
from harness import procs

CONFIGS = sorted((procs.REPO / "envoy").rglob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(procs.REPO)))
def test_envoy_accepts_config(path: Path) -> None:
    run = subprocess.run([str(gw.ENVOY), "--mode", "validate", "-c", str(path)], capture_output=True, text=True, timeout=60, cwd=procs.REPO)
    assert run.returncode == 0, run.stderr[-3000:] + run.stdout[-3000:]
    assert "OK" in run.stdout + run.stderr
