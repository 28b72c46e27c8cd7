"""The demo's processes (envoy/demo.yaml as shipped): the JWKS endpoint, two replicas of the MCP
server, the database MCP server and Envoy. `make demo` runs them on the shipped ports; tests
run the same configuration on free ports.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import jwt

from . import gateway as gw
from . import procs

DEMO_DIR = procs.REPO / "deploy" / "demo"
CI_KEY = "demo-ci-key"  # envoy/demo.yaml stores its SHA-256
ISSUER = "https://idp.demo.local"
AUDIENCE = "http://127.0.0.1:10000/mcp"
# The ports envoy/demo.yaml (and docker-compose.yml) name.
SHIPPED = {"gateway": 10000, "admin": 9901, "replica-a": 18081, "replica-b": 18082, "db": 18083, "jwks": 18090}
REPLICAS = ("replica-a", "replica-b")


def token(subject: str, roles: list[str]) -> str:
    """A token of the demo identity provider, signed with its TEST-ONLY key."""
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": subject, "iat": now, "exp": now + 3600, "roles": roles, "scope": "mcp:tools"}
    key = (DEMO_DIR / "demo-es256.pem").read_bytes()
    return jwt.encode(claims, key, algorithm="ES256", headers={"kid": "demo-es256"})


@dataclass
class DemoStack:
    gateway: gw.Gateway
    servers: dict[str, procs.McpServer]
    others: list[procs.Proc] = field(default_factory=list)

    def stop(self) -> None:
        self.gateway.stop()
        for server in self.servers.values():
            server.stop()
        for proc in self.others:
            proc.stop()

    def alive(self) -> bool:
        return self.gateway.proc.alive() and all(s.proc.alive() for s in self.servers.values()) and all(p.alive() for p in self.others)


def start(log_dir: Path, ports: dict[str, int] | None = None, concurrency: int = 2) -> DemoStack:
    """Start everything on `ports` (names as in SHIPPED; default: the shipped ports) and wait
    until Envoy is ready and every replica passed its health check."""
    ports = ports or SHIPPED
    keys = log_dir / "jwks"
    keys.mkdir(parents=True, exist_ok=True)
    shutil.copy(DEMO_DIR / "jwks.json", keys / "jwks.json")
    jwks_cmd = [procs.PYTHON, str(procs.TESTS / "servers" / "jwks_server.py"), "--port", str(ports["jwks"]), "--dir", str(keys)]
    others = [procs.start("jwks", jwks_cmd, ready=r"ready", log_dir=log_dir)]
    servers: dict[str, procs.McpServer] = {}
    try:
        for name in REPLICAS:
            servers[name] = procs.start_mcp_server(name, port=ports[name], log_dir=log_dir)
        servers["db"] = procs.start_mcp_server("db", port=ports["db"], db_tools=True, log_dir=log_dir)
        config = gw.load_shipped(gw.DEMO_YAML, {SHIPPED[name]: ports[name] for name in SHIPPED})
        envoy = gw.launch(config, name="envoy-demo", log_dir=log_dir, concurrency=concurrency)
        others.append(envoy)
        gw.wait_ready(envoy, ports["admin"])
        gw.wait_healthy(ports["admin"], "mcp_demo", len(REPLICAS))
        gw.wait_healthy(ports["admin"], "db_servers", 1)
    except BaseException:
        for proc in [*others, *(s.proc for s in servers.values())]:
            proc.stop()
        raise
    others.remove(envoy)
    gateway = gw.Gateway(envoy, ports["gateway"], ports["admin"], envoy.stdout_path.with_suffix(".yaml"))
    return DemoStack(gateway, servers, others)


def free_ports() -> dict[str, int]:
    """A fresh, distinct port for each demo process, for tests."""
    ports: dict[str, int] = {}
    while len(ports) < len(SHIPPED):
        port = procs.free_port()
        if port not in ports.values():
            ports[list(SHIPPED)[len(ports)]] = port
    return ports
