"""Every shipped configuration is one its consumer accepts: Envoy 1.40 (`envoy --mode
validate`) for envoy/**/*.yaml, with mcp-guard's metric labels; Debian's docker-compose for
docker-compose.yml, whose mounts and ports match the demo; Prometheus and Grafana files that
read metrics a real Envoy exports; Istio and Envoy Gateway resources whose filter
configuration the real filter loads.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness import demo_stack
from harness import gateway as gw
from harness import procs

CONFIGS = sorted((procs.REPO / "envoy").rglob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(procs.REPO)))
def test_envoy_accepts_config(path: Path) -> None:
    run = subprocess.run([str(gw.ENVOY), "--mode", "validate", "-c", str(path)], capture_output=True, text=True, timeout=60, cwd=procs.REPO)
    assert run.returncode == 0, run.stderr[-3000:] + run.stdout[-3000:]
    assert "OK" in run.stdout + run.stderr


# --------------------------------------------------------------------------- metric labels

STATS_TAGS = [
    {"tag_name": f"mcp_{label}", "regex": f"(\\.mcp_{label}=([^.]+))"}
    for label in ("method", "tool", "decision", "reason", "provider", "result", "detector")
]


GUARD_CONFIGS = [p for p in CONFIGS if "mcp_guard.wasm" in p.read_text()]


@pytest.mark.parametrize("path", GUARD_CONFIGS, ids=lambda p: str(p.relative_to(procs.REPO)))
def test_configs_with_mcp_guard_label_its_metrics(path: Path) -> None:
    config = yaml.safe_load(path.read_text())
    assert config.get("stats_config", {}).get("stats_tags") == STATS_TAGS


# --------------------------------------------------------------------------- docker-compose

COMPOSE = procs.REPO / "docker-compose.yml"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    """docker-compose.yml as Debian's docker-compose resolves it (`make docker-compose`)."""
    if shutil.which("docker-compose") is None:
        pytest.fail("docker-compose is not installed: run `make docker-compose`")
    quiet = subprocess.run(["docker-compose", "-f", str(COMPOSE), "config", "-q"], capture_output=True, text=True, timeout=60)
    assert quiet.returncode == 0, quiet.stderr
    run = subprocess.run(["docker-compose", "-f", str(COMPOSE), "config"], capture_output=True, text=True, timeout=60, check=True)
    return yaml.safe_load(run.stdout)


def test_compose_mounts_and_builds_files_that_exist(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {"envoy", "replica-a", "replica-b", "db", "jwks", "prometheus", "grafana"} <= set(services)
    for name, service in services.items():
        assert service["network_mode"] == "host", name  # the demo's 127.0.0.1 addresses
        for volume in service.get("volumes", []):
            source = Path(volume.split(":")[0])
            assert source.exists(), f"{name} mounts {source}, which does not exist (run `make build`?)"
        if "build" in service:
            dockerfile = Path(service["build"]["context"]) / service["build"]["dockerfile"]
            for line in dockerfile.read_text().splitlines():
                if line.startswith("COPY "):
                    assert (procs.REPO / line.split()[1]).exists(), line
        command = service.get("command", [])
        scripts = [arg for arg in command if arg.endswith(".py")]
        assert all((procs.REPO / s).exists() for s in scripts), command
    envoy = services["envoy"]
    assert envoy["image"].startswith("envoyproxy/envoy:v1.40")
    assert envoy["command"][:3] == ["envoy", "-c", "envoy/demo.yaml"]
    # The .wasm and the demo configuration land where envoy/demo.yaml (run from working_dir) expects them.
    mounted = {v.split(":")[1] for v in envoy["volumes"]}
    assert mounted == {f"{envoy['working_dir']}/envoy/demo.yaml", f"{envoy['working_dir']}/target/wasm32-wasip1/release/mcp_guard.wasm"}


def compose_port(service: dict[str, Any]) -> int:
    command = service["command"]
    return int(command[command.index("--port") + 1])


def test_compose_runs_the_servers_on_the_ports_the_demo_routes_to(compose: dict[str, Any]) -> None:
    services = compose["services"]
    demo = yaml.safe_load(gw.DEMO_YAML.read_text())
    endpoints = {
        c["name"]: sorted(e["endpoint"]["address"]["socket_address"]["port_value"] for g in c["load_assignment"]["endpoints"] for e in g["lb_endpoints"])
        for c in demo["static_resources"]["clusters"]
    }
    assert endpoints["mcp_demo"] == sorted(compose_port(services[n]) for n in demo_stack.REPLICAS)
    assert endpoints["db_servers"] == [compose_port(services["db"])]
    assert endpoints["jwks"] == [compose_port(services["jwks"])]
    assert "--db-tools" in services["db"]["command"]
    # Prometheus scrapes Envoy's admin port; Grafana reads that Prometheus.
    prometheus = yaml.safe_load((procs.REPO / "deploy" / "prometheus.yml").read_text())
    target = prometheus["scrape_configs"][0]["static_configs"][0]["targets"][0]
    assert target == f"127.0.0.1:{demo['admin']['address']['socket_address']['port_value']}"
    assert prometheus["scrape_configs"][0]["metrics_path"] == "/stats/prometheus"
    listen = next(a for a in services["prometheus"]["command"] if a.startswith("--web.listen-address="))
    datasources = yaml.safe_load((procs.REPO / "deploy" / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text())
    assert datasources["datasources"][0]["url"] == "http://" + listen.split("=", 1)[1]


# --------------------------------------------------------------------------- Grafana dashboard

DASHBOARD = procs.REPO / "deploy" / "grafana" / "dashboards" / "mcp-guard.json"
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


def dashboard_metrics() -> set[str]:
    """Every metric name the dashboard's queries read (not functions, labels or label values)."""
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    assert exprs
    names = set()
    for expr in exprs:
        without_labels = re.sub(r"\{[^}]*\}|\[[^]]*\]|by \([^)]*\)", "", expr)
        names |= set(re.findall(r"\b((?:mcp_guard|envoy)_[a-z_]+)\b", without_labels))
    return names


def test_dashboard_queries_documented_metrics() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "mcp-guard" and dashboard["panels"]
    documented = (procs.REPO / "docs" / "CONFIG.md").read_text()
    for name in dashboard_metrics():
        if name.startswith("mcp_guard_"):
            base = next((name[: -len(s)] for s in HISTOGRAM_SUFFIXES if name.endswith(s)), name)
            assert f"`{base}" in documented, f"{name} is not a documented mcp-guard metric"


def test_dashboard_metrics_exist_in_envoys_prometheus_output(tmp_path: Path) -> None:
    """Run the demo, make a few calls (allowed, denied, refused), and find every series the
    dashboard reads in Envoy's /stats/prometheus."""
    demo = demo_stack.start(tmp_path, demo_stack.free_ports(), concurrency=1)
    try:
        dev = {"authorization": f"Bearer {demo_stack.token('alice', ['dev'])}"}
        for tool, args in (("echo", '{"text": "hi"}'), ("db_query", '{"sql": "select 1"}'), ("delete_file", '{"path": "/x"}')):
            procs.run_py_client(demo.gateway.url, "call", tool, args, headers=dev, no_validate=True)
        with urllib.request.urlopen(f"http://127.0.0.1:{demo.gateway.admin_port}/stats/prometheus", timeout=5) as r:
            exported = {line.split("{")[0].split(" ")[0] for line in r.read().decode().splitlines() if line and not line.startswith("#")}
    finally:
        demo.stop()
    missing = sorted(name for name in dashboard_metrics() if name not in exported)
    assert not missing, f"not in /stats/prometheus: {missing}"


# --------------------------------------------------------------------------- Istio, Envoy Gateway


def test_wasm_image_is_only_the_module() -> None:
    lines = [line for line in (procs.REPO / "deploy" / "Dockerfile.wasm").read_text().splitlines() if line and not line.startswith("#")]
    assert lines == ["FROM scratch", "COPY target/wasm32-wasip1/release/mcp_guard.wasm ./plugin.wasm"]


def istio_plugin() -> tuple[dict[str, Any], dict[str, Any]]:
    doc = yaml.safe_load((procs.REPO / "deploy" / "istio" / "wasmplugin.yaml").read_text())
    assert (doc["apiVersion"], doc["kind"]) == ("extensions.istio.io/v1alpha1", "WasmPlugin")
    spec = doc["spec"]
    assert spec["url"].startswith("oci://")
    assert (spec["phase"], spec["failStrategy"], spec["pluginName"]) == ("AUTHN", "FAIL_CLOSE", "mcp_guard")
    return doc, spec["pluginConfig"]


def gateway_policy() -> tuple[dict[str, Any], dict[str, Any]]:
    doc = yaml.safe_load((procs.REPO / "deploy" / "envoy-gateway" / "extension-policy.yaml").read_text())
    assert (doc["apiVersion"], doc["kind"]) == ("gateway.envoyproxy.io/v1alpha1", "EnvoyExtensionPolicy")
    assert doc["spec"]["targetRefs"]
    (wasm,) = doc["spec"]["wasm"]
    assert wasm["code"]["type"] == "Image" and wasm["code"]["image"]["url"]
    assert wasm["failOpen"] is False and wasm["rootID"] == "mcp_guard"
    return doc, wasm["config"]


def validate_filter(wasm_config: dict[str, Any] | None, filter_config: Any, tmp_path: Path) -> None:
    """envoy/test-gateway.yaml with this filter configuration (and, if given, this Wasm filter
    `config` block, its code pointed at the built module) passes `envoy --mode validate`,
    which runs the filter's own configuration check."""
    config = gw.render_config(listen_port=procs.free_port(), admin_port=procs.free_port(), upstream_port=procs.free_port(), filter_config=filter_config)
    if wasm_config is not None:
        hcm = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
        wasm = next(f for f in hcm["http_filters"] if f["name"] == "envoy.filters.http.wasm")
        wasm["typed_config"]["config"] = {**wasm_config, "vm_config": {**wasm_config["vm_config"], "code": {"local": {"filename": str(gw.WASM)}}}}
    path = tmp_path / "envoy.yaml"
    path.write_text(yaml.safe_dump(config))
    run = subprocess.run([str(gw.ENVOY), "--mode", "validate", "-c", str(path)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "mcp-guard: configuration loaded" in run.stdout + run.stderr


@pytest.mark.parametrize("example", [istio_plugin, gateway_policy], ids=["istio", "envoy-gateway"])
def test_kubernetes_examples_carry_a_configuration_mcp_guard_accepts(example: Any, tmp_path: Path) -> None:
    _, filter_config = example()
    validate_filter(None, filter_config, tmp_path)


def test_istio_envoyfilter_is_the_wasmplugin_with_the_request_hold(tmp_path: Path) -> None:
    """The EnvoyFilter variant is the WasmPlugin's configuration plus what only the request
    hold allows: "hold": "request" with the flag set, and routing on the parsed tool."""
    doc = yaml.safe_load((procs.REPO / "deploy" / "istio" / "envoyfilter.yaml").read_text())
    assert (doc["apiVersion"], doc["kind"]) == ("networking.istio.io/v1alpha3", "EnvoyFilter")
    extension, http_filter = doc["spec"]["configPatches"]
    assert (extension["applyTo"], extension["patch"]["operation"]) == ("EXTENSION_CONFIG", "ADD")
    assert (http_filter["applyTo"], http_filter["patch"]["operation"]) == ("HTTP_FILTER", "INSERT_FIRST")
    assert extension["patch"]["value"]["name"] == http_filter["patch"]["value"]["name"]
    wasm = extension["patch"]["value"]["typed_config"]["config"]
    assert wasm["allow_on_headers_stop_iteration"] is True and wasm["failure_policy"] == "FAIL_CLOSED"
    plugin, plugin_config = istio_plugin()
    assert wasm["vm_config"]["code"]["remote"]["http_uri"]["uri"] == plugin["spec"]["url"]
    filter_config = json.loads(wasm["configuration"]["value"])
    assert filter_config.pop("hold") == "request"
    assert filter_config["upstream"].pop("routing_headers") == {"method": "x-mcp-method", "tool": "x-mcp-tool"}
    assert filter_config == plugin_config
    validate_filter(wasm, {**filter_config, "hold": "request"}, tmp_path)


def test_envoy_gateway_patch_policy_is_the_extension_policy_with_the_request_hold(tmp_path: Path) -> None:
    """The EnvoyPatchPolicy variant: the extension policy's configuration plus the request
    hold and routing, and a patch that sets the flag on the filter Envoy Gateway generates."""
    policy, patch = yaml.safe_load_all((procs.REPO / "deploy" / "envoy-gateway" / "patch-policy.yaml").read_text())
    assert (patch["kind"], patch["spec"]["type"]) == ("EnvoyPatchPolicy", "JSONPatch")
    (op,) = patch["spec"]["jsonPatches"]
    generated = gw.envoy_gateway_wasm_filter(policy)
    assert f"@.name=='{generated['name']}'" in op["operation"]["jsonPath"]
    assert (op["operation"]["op"], op["operation"]["path"], op["operation"]["value"]) == ("add", "/allow_on_headers_stop_iteration", True)
    config = copy.deepcopy(policy["spec"]["wasm"][0]["config"])
    assert config.pop("hold") == "request"
    assert config["upstream"].pop("routing_headers") == {"method": "x-mcp-method", "tool": "x-mcp-tool"}
    assert config == gateway_policy()[1]
    wasm = {**generated["typed_config"]["config"], "allow_on_headers_stop_iteration": True}
    validate_filter(wasm, policy["spec"]["wasm"][0]["config"], tmp_path)
