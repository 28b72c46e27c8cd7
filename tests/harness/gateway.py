"""A real Envoy with the built mcp-guard .wasm, configured from envoy/test-gateway.yaml.

Tests change only what they must: listener and admin ports, upstream ports, extra routes,
the filter's JSON configuration and, for mTLS tests, a downstream TLS context on the
listener. Everything else (buffer limits, header hold, failure policy, trailers) is
exactly what the shipped configurations use. `load_shipped` runs a shipped configuration
(the demo, the examples) unchanged except for its ports and the .wasm path.
"""

from __future__ import annotations

import contextlib
import copy
import http.server
import json
import threading
import os
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .procs import LOOPBACK, REPO, Proc, free_port, start

ENVOY = REPO / ".venv" / "bin" / "envoy"
TEST_YAML = REPO / "envoy" / "test-gateway.yaml"
DEMO_YAML = REPO / "envoy" / "demo.yaml"
WASM = REPO / "target" / "wasm32-wasip1" / "release" / "mcp_guard.wasm"
WASM_TYPE = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"
STRING_VALUE = "type.googleapis.com/google.protobuf.StringValue"

# How the Wasm filter is configured: "envoy" (envoy/test-gateway.yaml as shipped, with
# allow_on_headers_stop_iteration), or exactly as Istio's WasmPlugin ("istio") or Envoy
# Gateway's EnvoyExtensionPolicy ("envoy-gateway") generate it, neither of which can set that
# flag. `make integration` runs the hold-sensitive suites once per shape.
SHAPE = os.environ.get("MCP_GUARD_ENVOY_SHAPE", "envoy")
SHAPES = ("envoy", "istio", "envoy-gateway")
if SHAPE not in SHAPES:
    raise ValueError(f"MCP_GUARD_ENVOY_SHAPE={SHAPE!r}: expected one of {SHAPES}")


def flag_on() -> bool:
    """Whether the gateways of this run set allow_on_headers_stop_iteration."""
    return SHAPE == "envoy"


def istio_struct_json(value: Any) -> str:
    """A WasmPlugin's `pluginConfig` as Istio hands it to the filter: the YAML becomes a
    google.protobuf.Struct, which protojson writes back with sorted keys and every number a
    double (integral ones print without a fraction)."""

    def struct(v: Any) -> Any:
        if isinstance(v, bool) or v is None or isinstance(v, str):
            return v
        if isinstance(v, (int, float)):
            f = float(v)
            return int(f) if f.is_integer() and abs(f) < 1e21 else f
        if isinstance(v, dict):
            return {k: struct(x) for k, x in v.items()}
        return [struct(x) for x in v]

    return json.dumps(struct(value), sort_keys=True, separators=(",", ":"))


def istio_wasm_filter(plugin: dict[str, Any], wasm: Path = WASM) -> dict[str, Any]:
    """The HTTP filter Istio generates for a WasmPlugin (`plugin`: the parsed resource): the
    name is namespace.name, the root id is pluginName, failStrategy maps to the failure
    policy, the agent hands Envoy the fetched module as a local file, and no
    allow_on_headers_stop_iteration (the API has no field for it)."""
    meta, spec = plugin["metadata"], plugin["spec"]
    name = f"{meta['namespace']}.{meta['name']}"
    config: dict[str, Any] = {
        "name": name,
        "root_id": spec.get("pluginName", ""),
        "vm_config": {"runtime": "envoy.wasm.runtime.v8", "code": {"local": {"filename": str(wasm)}}},
        "failure_policy": {"FAIL_CLOSE": "FAIL_CLOSED", "FAIL_OPEN": "FAIL_OPEN"}[spec.get("failStrategy", "FAIL_CLOSE")],
    }
    if spec.get("pluginConfig"):
        config["configuration"] = {"@type": STRING_VALUE, "value": istio_struct_json(spec["pluginConfig"])}
    return {"name": name, "typed_config": {"@type": WASM_TYPE, "config": config}}


def envoy_gateway_wasm_filter(policy: dict[str, Any], index: int = 0, wasm: Path = WASM) -> dict[str, Any]:
    """The HTTP filter Envoy Gateway generates for an EnvoyExtensionPolicy's `wasm[index]`:
    named per policy, `config` passed as JSON text, failOpen as fail_open, no
    allow_on_headers_stop_iteration (the API has no field for it), and disabled in the
    listener's chain: the routes the policy targets enable it (see `_enable_per_route`)."""
    meta, entry = policy["metadata"], policy["spec"]["wasm"][index]
    config: dict[str, Any] = {
        "name": entry["name"],
        "root_id": entry.get("rootID", ""),
        "vm_config": {"vm_id": entry["name"], "runtime": "envoy.wasm.runtime.v8", "code": {"local": {"filename": str(wasm)}}},
        "fail_open": bool(entry.get("failOpen", False)),
    }
    if entry.get("config") is not None:
        config["configuration"] = {"@type": STRING_VALUE, "value": json.dumps(entry["config"])}
    name = f"envoy.filters.http.wasm/envoyextensionpolicy/{meta['namespace']}/{meta['name']}/{index}"
    return {"name": name, "disabled": True, "typed_config": {"@type": WASM_TYPE, "config": config}}


def _stand_in(plugin_config: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Minimal WasmPlugin and EnvoyExtensionPolicy resources carrying `plugin_config`, with
    the settings the shipped deploy files use."""
    meta = {"name": "mcp-guard", "namespace": "mcp"}
    istio = {"metadata": meta, "spec": {"pluginName": "mcp_guard", "phase": "AUTHN", "failStrategy": "FAIL_CLOSE", "pluginConfig": plugin_config}}
    eg = {"metadata": meta, "spec": {"wasm": [{"name": "mcp-guard", "rootID": "mcp_guard", "failOpen": False, "config": plugin_config}]}}
    return istio, eg


def reshape(config: dict[str, Any], shape: str, resource: dict[str, Any] | None = None) -> dict[str, Any]:
    """`config` (a rendered gateway) with its Wasm filter as `shape` generates it: from
    `resource` (a WasmPlugin or EnvoyExtensionPolicy) or, by default, from the filter
    configuration the gateway has. Istio's phase AUTHN puts the plugin first in the chain,
    ahead of the authorization filter (an allow-all RBAC stands in for Istio's); Envoy
    Gateway enables its filter on every route."""
    if shape == "envoy":
        return config
    hcm = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    filters = hcm["http_filters"]
    i = next(i for i, f in enumerate(filters) if f["name"] == "envoy.filters.http.wasm")
    plugin_config = json.loads(filters[i]["typed_config"]["config"]["configuration"]["value"] or "{}")
    istio, eg = _stand_in(plugin_config)
    if shape == "istio":
        filters[i] = istio_wasm_filter(resource or istio)
        rbac = {
            "name": "envoy.filters.http.rbac",
            "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC"},
        }
        filters.insert(i + 1, rbac)
    else:
        filters[i] = envoy_gateway_wasm_filter(resource or eg)
        _enable_per_route(hcm, filters[i]["name"])
    return config


def _enable_per_route(hcm: dict[str, Any], name: str) -> None:
    for host in hcm["route_config"]["virtual_hosts"]:
        for route in host["routes"]:
            route.setdefault("typed_per_filter_config", {})[name] = {
                "@type": "type.googleapis.com/envoy.config.route.v3.FilterConfig",
                "config": {},
            }


def _wasm_filter(hcm: dict[str, Any]) -> dict[str, Any]:
    return next(f for f in hcm["http_filters"] if f["name"] == "envoy.filters.http.wasm")


def _cluster(name: str, port: int, template: dict[str, Any]) -> dict[str, Any]:
    cluster = copy.deepcopy(template)
    cluster["name"] = name
    cluster["load_assignment"] = {
        "cluster_name": name,
        "endpoints": [
            {"lb_endpoints": [{"endpoint": {"address": {"socket_address": {"address": LOOPBACK, "port_value": port}}}}]}
        ],
    }
    return cluster


def _downstream_tls(tls: dict[str, str | Path]) -> dict[str, Any]:
    """A listener transport socket terminating TLS with `cert`/`key` and requiring a client
    certificate signed by `client_ca` (all PEM file paths)."""
    return {
        "name": "envoy.transport_sockets.tls",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
            "require_client_certificate": True,
            "common_tls_context": {
                "tls_certificates": [
                    {
                        "certificate_chain": {"filename": str(tls["cert"])},
                        "private_key": {"filename": str(tls["key"])},
                    }
                ],
                "validation_context": {"trusted_ca": {"filename": str(tls["client_ca"])}},
            },
        },
    }


def render_config(
    *,
    listen_port: int,
    admin_port: int,
    upstream_port: int,
    filter_config: dict[str, Any] | str,
    extra_routes: dict[str, int] | None = None,
    extra_clusters: dict[str, int] | None = None,
    tls: dict[str, str | Path] | None = None,
    shape: str | None = None,
) -> dict[str, Any]:
    """envoy/test-gateway.yaml with new ports and filter configuration, its Wasm filter in
    `shape` (default: this run's `SHAPE`).

    `extra_routes` maps a path prefix to an upstream port; each gets its own cluster and a
    route placed before the catch-all route to the MCP server. `extra_clusters` adds named
    clusters without routes (for the filter's own calls, e.g. a JWKS endpoint). `tls`
    (keys `cert`, `key`, `client_ca`: PEM paths) makes the listener speak TLS only and
    require a client certificate signed by `client_ca`; without it the listener is plain.
    """
    config = yaml.safe_load(TEST_YAML.read_text())
    config["admin"]["address"]["socket_address"]["port_value"] = admin_port
    listener = config["static_resources"]["listeners"][0]
    listener["address"]["socket_address"]["port_value"] = listen_port
    if tls is not None:
        listener["filter_chains"][0]["transport_socket"] = _downstream_tls(tls)
    hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
    wasm = _wasm_filter(hcm)["typed_config"]["config"]
    wasm["vm_config"]["code"]["local"]["filename"] = str(WASM)
    wasm["configuration"]["value"] = filter_config if isinstance(filter_config, str) else json.dumps(filter_config)

    clusters = config["static_resources"]["clusters"]
    template = clusters[0]
    clusters[0] = _cluster(template["name"], upstream_port, template)
    routes = hcm["route_config"]["virtual_hosts"][0]["routes"]
    for i, (prefix, port) in enumerate((extra_routes or {}).items()):
        name = f"extra_{i}"
        clusters.append(_cluster(name, port, template))
        route = copy.deepcopy(routes[-1])
        route["match"] = {"prefix": prefix}
        route["route"]["cluster"] = name
        routes.insert(0, route)
    for name, port in (extra_clusters or {}).items():
        clusters.append(_cluster(name, port, template))
    return reshape(config, shape or SHAPE)


def dicts(node: Any) -> Iterator[dict[str, Any]]:
    """Every mapping in a parsed YAML document, depth first."""
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from dicts(value)
    elif isinstance(node, list):
        for value in node:
            yield from dicts(value)


def load_shipped(path: Path, ports: dict[int, int]) -> dict[str, Any]:
    """A shipped Envoy configuration as is, except that each port it names is replaced by
    `ports[port]` (listeners, admin and upstream endpoints alike) and the .wasm path is the
    freshly built one. Every shipped port must be mapped, so a test never touches the
    fixed ports a running demo uses."""
    config = yaml.safe_load(path.read_text())
    nodes = list(dicts(config))
    missing = {n["port_value"] for n in nodes if "port_value" in n} - set(ports)
    if missing:
        raise ValueError(f"{path.name}: no test port for {sorted(missing)}")
    for node in nodes:
        if "port_value" in node:
            node["port_value"] = ports[node["port_value"]]
        if str(node.get("local", {}).get("filename", "")).endswith(".wasm"):
            node["local"]["filename"] = str(WASM)
    return config


@dataclass
class Gateway:
    proc: Proc
    port: int
    admin_port: int
    config_path: Path
    tls: bool = False
    # The filter configuration's `hold` ("body" unless it says "request").
    hold: str = "body"

    @property
    def base(self) -> str:
        return f"{'https' if self.tls else 'http'}://{LOOPBACK}:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.base}/mcp"

    def log(self) -> str:
        return self.proc.stderr() + self.proc.stdout()

    def stats(self, prefix: str = "") -> dict[str, int]:
        with urllib.request.urlopen(f"http://{LOOPBACK}:{self.admin_port}/stats?filter={prefix}", timeout=5) as r:
            out: dict[str, int] = {}
            for line in r.read().decode().splitlines():
                name, _, value = line.partition(": ")
                if value.strip().lstrip("-").isdigit():
                    out[name] = int(value)
            return out

    def stop(self) -> None:
        self.proc.stop()


def launch(config: dict[str, Any], *, name: str = "envoy", log_dir: Path | None = None, concurrency: int = 1) -> Proc:
    """Start Envoy on a rendered configuration without waiting for it (see `start_gateway`)."""
    log_dir = Path(log_dir or tempfile.mkdtemp(prefix="mcp-guard-envoy-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    path = log_dir / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    cmd = [str(ENVOY), "-c", str(path), "--concurrency", str(concurrency), "--use-dynamic-base-id", "-l", "info"]
    return start(name, cmd, log_dir=log_dir)


def refusal(upstream_port: int, filter_config: dict[str, Any], *, name: str, log_dir: Path, shape: str | None = None) -> str:
    """Envoy's log after it refused to start with this filter configuration (the filter
    rejected it at load time); fails if Envoy started."""
    config = render_config(
        listen_port=free_port(), admin_port=free_port(), upstream_port=upstream_port, filter_config=filter_config, shape=shape
    )
    proc = launch(config, name=name, log_dir=log_dir)
    try:
        proc.popen.wait(timeout=30)
    finally:
        proc.stop()
    assert proc.popen.returncode != 0, "Envoy started with a configuration the filter should refuse"
    return proc.stderr() + proc.stdout()


def start_gateway(
    upstream_port: int,
    filter_config: dict[str, Any] | str,
    *,
    extra_routes: dict[str, int] | None = None,
    extra_clusters: dict[str, int] | None = None,
    name: str = "envoy",
    log_dir: Path | None = None,
    timeout: float = 20.0,
    tls: dict[str, str | Path] | None = None,
    concurrency: int = 1,
    shape: str | None = None,
    balanced: bool = False,
) -> Gateway:
    """Start Envoy with mcp-guard and wait until its listener accepts requests (`tls`: see
    `render_config`; `concurrency`: Envoy workers, each with its own filter VM; `balanced`:
    each new connection goes to the worker with the fewest open ones, so while one
    connection stays open the next lands on another worker)."""
    port, admin_port = free_port(), free_port()
    config = render_config(
        listen_port=port,
        admin_port=admin_port,
        upstream_port=upstream_port,
        filter_config=filter_config,
        extra_routes=extra_routes,
        extra_clusters=extra_clusters,
        tls=tls,
        shape=shape,
    )
    if balanced:
        listener = config["static_resources"]["listeners"][0]
        listener["enable_reuse_port"] = False
        listener["connection_balance_config"] = {"exact_balance": {}}
    proc = launch(config, name=name, log_dir=log_dir, concurrency=concurrency)
    wait_ready(proc, admin_port, timeout)
    hold = json.loads(filter_config) if isinstance(filter_config, str) else filter_config
    return Gateway(proc, port, admin_port, proc.stdout_path.with_suffix(".yaml"), tls=tls is not None, hold=hold.get("hold", "body"))


@contextlib.contextmanager
def with_fake_upstream(
    handler: type[http.server.BaseHTTPRequestHandler], upstream_port: int, filter_config: dict[str, Any], *, name: str, log_dir: Path
) -> Iterator[Gateway]:
    """A gateway whose `/fake/` paths go to an in-process HTTP server answering with
    `handler` (answers a real server would not give); every other path to `upstream_port`."""
    server = http.server.ThreadingHTTPServer((LOOPBACK, 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    g = start_gateway(upstream_port, filter_config, extra_routes={"/fake/": server.server_address[1]}, name=name, log_dir=log_dir)
    try:
        yield g
    finally:
        g.stop()
        server.shutdown()


def start_shipped(
    path: Path,
    upstreams: dict[int, int],
    *,
    name: str = "envoy",
    log_dir: Path | None = None,
    concurrency: int = 1,
    timeout: float = 20.0,
) -> Gateway:
    """Start a shipped configuration (see `load_shipped`) on fresh listener and admin ports;
    `upstreams` maps each upstream port it names to the port of a server the test started."""
    shipped = yaml.safe_load(path.read_text())
    admin = shipped["admin"]["address"]["socket_address"]["port_value"]
    listener = shipped["static_resources"]["listeners"][0]["address"]["socket_address"]["port_value"]
    port, admin_port = free_port(), free_port()
    config = load_shipped(path, {**upstreams, listener: port, admin: admin_port})
    proc = launch(config, name=name, log_dir=log_dir, concurrency=concurrency)
    wait_ready(proc, admin_port, timeout)
    return Gateway(proc, port, admin_port, proc.stdout_path.with_suffix(".yaml"))


def healthy_hosts(admin_port: int, cluster: str) -> set[str]:
    """Addresses of `cluster`'s hosts the admin API reports healthy (/clusters); Envoy's
    workers may take about a second more to balance over a host that just turned healthy."""
    with urllib.request.urlopen(f"http://{LOOPBACK}:{admin_port}/clusters", timeout=5) as r:
        lines = r.read().decode().splitlines()
    prefix = f"{cluster}::"
    return {
        line[len(prefix) :].split("::")[0]
        for line in lines
        if line.startswith(prefix) and line.endswith("::health_flags::healthy")
    }


def wait_healthy(admin_port: int, cluster: str, count: int, timeout: float = 20.0) -> None:
    """Wait until `count` hosts of `cluster` passed their health checks (Envoy reports ready
    before the first round of active health checks is done)."""
    deadline = time.monotonic() + timeout
    while len(healthy_hosts(admin_port, cluster)) < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{cluster}: fewer than {count} healthy hosts after {timeout}s")
        time.sleep(0.1)


def wait_ready(proc: Proc, admin_port: int, timeout: float = 20.0) -> None:
    """Wait until Envoy's admin endpoint reports LIVE; fail with its log if it exits or hangs."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"http://{LOOPBACK}:{admin_port}/ready", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        if not proc.alive():
            raise RuntimeError(f"envoy exited with {proc.popen.returncode}:\n{(proc.stderr() + proc.stdout())[-4000:]}")
        if time.monotonic() > deadline:
            proc.stop()
            raise TimeoutError(f"envoy not ready after {timeout}s:\n{(proc.stderr() + proc.stdout())[-4000:]}")
        time.sleep(0.05)
