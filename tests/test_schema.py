"""The JSON Schema of the configuration (docs/mcp-guard.schema.json, generated from the Rust
types) accepts every configuration we document and ship, and refuses what the filter refuses
for its shape: editors that validate with it agree with the filter."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from harness import gateway as gw
from harness import procs

SCHEMA = json.loads((procs.REPO / "docs" / "mcp-guard.schema.json").read_text())
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)


def documented() -> list[str]:
    """The ```json examples of docs/CONFIG.md; fragments (`"auth": {...}`) wrapped in an object."""
    blocks = re.findall(r"```json\n(.*?)```", (procs.REPO / "docs" / "CONFIG.md").read_text(), re.S)
    return [b.strip() if b.strip().startswith("{") else "{" + b.strip() + "}" for b in blocks]


def wasm_configs(node: Any) -> Iterator[str]:
    """The mcp-guard configuration strings inside an Envoy YAML tree: the `configuration`
    value of every Wasm plugin config (the mapping with a `vm_config`)."""
    for d in gw.dicts(node):
        configuration = d.get("configuration")
        if "vm_config" in d and isinstance(configuration, dict) and isinstance(configuration.get("value"), str):
            yield configuration["value"]


def shipped() -> list[tuple[str, str]]:
    out = []
    for path in sorted((procs.REPO / "envoy").rglob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            out += [(str(path.relative_to(procs.REPO)), c) for c in wasm_configs(doc)]
    return out


@pytest.mark.parametrize("text", documented(), ids=lambda t: t[:40])
def test_documented_examples_validate(text: str) -> None:
    VALIDATOR.validate(json.loads(text))


def test_shipped_filter_configs_validate() -> None:
    configs = shipped()
    assert len(configs) >= 3
    for where, text in configs:
        errors = [e.message for e in VALIDATOR.iter_errors(json.loads(text))]
        assert not errors, (where, errors)


@pytest.mark.parametrize(
    "config",
    [
        {"bogus": 1},
        {"policy": {"allow": {"tool": ["echo"]}}},
        {"other_paths": "maybe"},
        {"auth": {"api_keys": {"keys": [{"name": "a"}]}}},
        {"max_body_bytes": -1},
    ],
    ids=str,
)
def test_schema_refuses_what_the_filter_refuses(config: dict[str, Any], tmp_path: Path) -> None:
    assert list(VALIDATOR.iter_errors(config))
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    cli = ["cargo", "run", "-q", "--bin", "mcp-guard", "--", "check", "--config", str(path)]
    run = subprocess.run(cli, capture_output=True, text=True, timeout=300, cwd=procs.REPO)
    assert run.returncode == 1, run.stdout + run.stderr
