"""`mcp-guard check --strict` over every filter configuration we ship or document (envoy/,
deploy/, the examples of docs/CONFIG.md) reports exactly the findings docs/CONFIG.md lists for
it in "Posture checks": a shipped weakness is either fixed or explained there."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from harness import procs
from test_configs import gateway_policy, istio_plugin
from test_schema import wasm_configs

CONFIG_MD = procs.REPO / "docs" / "CONFIG.md"


def configurations() -> dict[str, str]:
    """Each configuration by the name the table uses: its file, or docs/CONFIG.md#<heading>."""
    out: dict[str, str] = {}
    for path in sorted([*(procs.REPO / "envoy").rglob("*.yaml"), *(procs.REPO / "deploy").rglob("*.yaml")]):
        found = [c for doc in yaml.safe_load_all(path.read_text()) for c in wasm_configs(doc)]
        assert len(found) <= 1, path
        out.update({str(path.relative_to(procs.REPO)): text for text in found})
    out["deploy/istio/wasmplugin.yaml"] = json.dumps(istio_plugin()[1])
    out["deploy/envoy-gateway/extension-policy.yaml"] = json.dumps(gateway_policy()[1])
    heading = ""
    for block in re.split(r"^```json\n", CONFIG_MD.read_text(), flags=re.M):
        text = block.split("```")[0].strip() if heading else ""
        if text:
            slug = re.sub(r"[^a-z0-9 _-]", "", heading.lower()).strip().replace(" ", "-")
            assert f"docs/CONFIG.md#{slug}" not in out, slug
            out[f"docs/CONFIG.md#{slug}"] = text if text.startswith("{") else "{" + text + "}"
        heading = ([line for line in block.splitlines() if line.startswith("#")] or [heading])[-1].lstrip("# ")
    return out


def documented() -> dict[str, set[str]]:
    """The table of "Posture checks": each finding and the configurations its last cell names."""
    section = CONFIG_MD.read_text().split("\n## Posture checks\n")[1].split("\n## ")[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    return {re.match(r"\| `([a-z-]+)`", row).group(1): set(re.findall(r"`((?:envoy|deploy|docs)/[^`]+)`", row.rsplit(" | ", 1)[1])) for row in rows}


@pytest.fixture(scope="module")
def cli() -> Path:
    subprocess.run(["cargo", "build", "-q", "--bin", "mcp-guard"], check=True, timeout=600, cwd=procs.REPO)
    return procs.REPO / "target" / "debug" / "mcp-guard"


def check(cli: Path, text: str) -> tuple[int, set[str]]:
    run = subprocess.run([str(cli), "check", "--strict", "--json", "--config", "-"], input=text, capture_output=True, text=True, timeout=60)
    assert run.returncode in (0, 2), run.stderr
    return run.returncode, {f["check"] for f in json.loads(run.stdout)["findings"]}


def test_the_table_names_every_check_and_only_configurations_that_exist() -> None:
    table, configs = documented(), configurations()
    reported = set(re.findall(r'^\s*"([a-z]+(?:-[a-z]+)+)",$', (procs.REPO / "src" / "posture.rs").read_text(), re.M))
    assert set(table) == reported
    assert len(configs) >= 15
    assert set().union(*table.values()) <= set(configs)


@pytest.mark.parametrize("name", sorted(configurations()))
def test_shipped_configuration_reports_what_the_docs_say(name: str, cli: Path) -> None:
    text = configurations()[name]
    expected = {check for check, where in documented().items() if name in where}
    # A configuration that leaves other_paths out has the default's finding, whichever it is.
    default_allows = "other-paths-allow" in check(cli, "{}")[1]
    if default_allows and "other_paths" not in json.loads(text):
        expected.add("other-paths-allow")
    code, found = check(cli, text)
    assert found == expected
    assert code == (2 if expected else 0)
