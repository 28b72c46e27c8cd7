"""A real Redis and the test-only Rate Limit Service on loopback, and gateways that reach
the service through an HTTP/2 Envoy cluster (`rls`)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

from . import gateway as gw
from .procs import LOOPBACK, PYTHON, TESTS, Proc, free_port, start

RLS_SERVER = TESTS / "servers" / "rls_server.py"
RLS_CLUSTER = "rls"


def redis_server_path() -> str:
    """Debian's redis-server (`make redis` installs it)."""
    path = shutil.which("redis-server")
    if path is None:
        subprocess.run(["make", "-s", "redis"], cwd=TESTS.parent, check=True)
        path = shutil.which("redis-server")
    if path is None:
        raise RuntimeError("redis-server is not installed")
    return path


def start_redis(log_dir: Path) -> tuple[Proc, int]:
    port = free_port()
    cmd = [redis_server_path(), "--port", str(port), "--bind", LOOPBACK, "--save", "", "--appendonly", "no"]
    return start(f"redis-{port}", cmd, ready_port=port, log_dir=log_dir), port


def start_rls(redis_port: int, limits: dict[str, Any], log_dir: Path, delay: float = 0.0) -> tuple[Proc, int]:
    """The service with `limits` (domain -> limit name -> [requests, unit]), answering
    `delay` seconds late."""
    cmd = [PYTHON, str(RLS_SERVER), "--port", "0", "--redis-port", str(redis_port), "--limits", json.dumps(limits), "--delay", str(delay)]
    proc = start("rls-server", cmd, ready=r"ready (\d+)", timeout=30, log_dir=log_dir)
    assert proc.ready_match is not None
    return proc, int(proc.ready_match.group(1))


def start_gateway(
    upstream_port: int, filter_config: dict[str, Any], rls_port: int, *, name: str, log_dir: Path, concurrency: int = 1
) -> gw.Gateway:
    """Like `gateway.start_gateway`, with the cluster `rls` speaking HTTP/2 to `rls_port`."""
    port, admin_port = free_port(), free_port()
    config = gw.render_config(
        listen_port=port,
        admin_port=admin_port,
        upstream_port=upstream_port,
        filter_config=filter_config,
        extra_clusters={RLS_CLUSTER: rls_port},
    )
    cluster = next(c for c in config["static_resources"]["clusters"] if c["name"] == RLS_CLUSTER)
    options = cluster["typed_extension_protocol_options"]["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
    options["explicit_http_config"] = {"http2_protocol_options": {}}
    proc = gw.launch(config, name=name, log_dir=log_dir, concurrency=concurrency)
    gw.wait_ready(proc, admin_port)
    return gw.Gateway(proc, port, admin_port, proc.stdout_path.with_suffix(".yaml"))
