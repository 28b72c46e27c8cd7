"""Per-identity rules through a real Envoy: who may call which tool, deny wins, default
methods, shadow rules that log instead of refusing, and what the MCP server never sees."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from harness import gateway as gw
from harness import procs
from harness import tokens
from harness.rpc import rpc_message, stateless

KEYS = {"dev-key": ["dev"], "admin-key": ["admin"], "ops-key": ["ops"], "nobody-key": []}
SIGNER = tokens.new_key("team-key", "ES256")


def api_key(name: str, roles: list[str]) -> dict[str, Any]:
    return {"name": name.removesuffix("-key"), "sha256": hashlib.sha256(name.encode()).hexdigest(), "roles": roles}


CONFIG = {
    "endpoints": ["/mcp"],
    "auth": {
        "api_keys": {"header": "x-api-key", "keys": [api_key(k, r) for k, r in KEYS.items()]},
        "jwt_providers": [
            {
                "name": "idp",
                "issuer": tokens.ISSUER,
                "audiences": [tokens.AUDIENCE],
                "jwks": tokens.jwks(SIGNER),
                "claims": {"other": {"team": "org.team"}},
            }
        ],
    },
    "policy": {
        "rules": [
            {"name": "devs", "who": {"roles": ["dev"]}, "allow": {"tools": ["echo", "add"]}},
            {"name": "admins", "who": {"roles": ["admin"]}, "allow": {"tools": ["*"]}, "deny": {"tools": ["delete_*"]}},
            {"name": "no-deletes", "who": {"authenticated": True}, "deny": {"tools": ["delete_file"]}},
            {"name": "payments", "who": {"claims": {"team": ["payments"]}}, "allow": {"tools": ["add"]}},
            {"name": "ops-trial", "who": {"roles": ["ops"]}, "allow": {"tools": ["whoami"]}, "deny": {"tools": ["whoami"]}, "shadow": True},
        ]
    },
}


@pytest.fixture(scope="module")
def gateway(_alpha: procs.McpServer, log_dir: Path) -> Iterator[gw.Gateway]:
    g = gw.start_gateway(_alpha.port, CONFIG, name="envoy-policy", log_dir=log_dir)
    yield g
    g.stop()


def call(g: gw.Gateway, tool: str, creds: dict[str, str]) -> httpx.Response:
    body, headers = stateless("tools/call", {"name": tool, "arguments": {"text": "x", "a": 1, "b": 2, "path": "/tmp/x"}}, name=tool)
    return httpx.post(g.url, content=body, headers={**headers, **creds}, timeout=10)


def key(name: str) -> dict[str, str]:
    return {"x-api-key": name}


def decision(resp: httpx.Response) -> tuple[int, str]:
    if resp.status_code == 200:
        return 200, ""
    return resp.status_code, resp.json()["error"]["data"]["reason"]


@pytest.mark.parametrize(
    ("caller", "tool", "status", "reason"),
    [
        ("dev-key", "echo", 200, ""),
        ("dev-key", "add", 200, ""),
        ("dev-key", "whoami", 403, "no rule allows"),
        ("dev-key", "delete_file", 403, "no-deletes"),
        ("admin-key", "whoami", 200, ""),
        ("admin-key", "delete_file", 403, "delete_file"),
        ("nobody-key", "echo", 403, "no rule allows"),
    ],
)
def test_rules_by_role(gateway: gw.Gateway, mcp_server: procs.McpServer, caller: str, tool: str, status: int, reason: str) -> None:
    got_status, got_reason = decision(call(gateway, tool, key(caller)))
    assert got_status == status, got_reason
    assert reason in got_reason
    called = [r for r in mcp_server.seen() if f'"name": "{tool}"' in r["body"] or f'"name":"{tool}"' in r["body"]]
    assert bool(called) == (status == 200)


def test_claims_select_rules(gateway: gw.Gateway) -> None:
    payments = {"authorization": "Bearer " + SIGNER.token("pat", org={"team": "payments"})}
    others = {"authorization": "Bearer " + SIGNER.token("sam", org={"team": "growth"})}
    assert decision(call(gateway, "add", payments))[0] == 200
    assert decision(call(gateway, "add", others))[0] == 403
    assert decision(call(gateway, "echo", payments))[0] == 403


def test_listing_and_default_methods(gateway: gw.Gateway, mcp_server: procs.McpServer) -> None:
    for method, creds, passes in (("tools/list", key("dev-key"), True), ("tools/list", key("nobody-key"), False), ("ping", key("nobody-key"), True)):
        mcp_server.reset()
        body, headers = stateless(method)
        resp = httpx.post(gateway.url, content=body, headers={**headers, **creds}, timeout=10)
        # A passing request reaches the server (which answers as it will); a refused one does not.
        assert bool(mcp_server.seen()) == passes, (method, creds, resp.text)
        if not passes:
            assert resp.status_code == 403 and "no rule allows" in resp.json()["error"]["data"]["reason"]
    assert "tools" in rpc_message(httpx.post(gateway.url, content=stateless("tools/list")[0], headers={**stateless("tools/list")[1], **key("dev-key")}, timeout=10))["result"]


def test_shadow_rule_logs_instead_of_refusing(gateway: gw.Gateway, mcp_server: procs.McpServer) -> None:
    assert decision(call(gateway, "whoami", key("ops-key")))[0] == 200
    assert any('"whoami"' in r["body"] for r in mcp_server.seen())
    assert "shadow" in gateway.log() and "ops-trial" in gateway.log()


ARGUMENTS_CONFIG = {
    "endpoints": ["/mcp"],
    "policy": {"arguments": {"ec*": [{"pointer": "/text", "glob": ["ok*"], "required": True}]}},
}


@pytest.fixture(scope="module")
def arguments_gateway(_alpha: procs.McpServer, log_dir: Path) -> Iterator[gw.Gateway]:
    g = gw.start_gateway(_alpha.port, ARGUMENTS_CONFIG, name="envoy-arguments", log_dir=log_dir)
    yield g
    g.stop()


def test_argument_constraints_refuse_before_the_server(arguments_gateway: gw.Gateway, mcp_server: procs.McpServer) -> None:
    def echo(text: str) -> httpx.Response:
        body, headers = stateless("tools/call", {"name": "echo", "arguments": {"text": text}}, name="echo")
        return httpx.post(arguments_gateway.url, content=body, headers=headers, timeout=10)

    status, reason = decision(echo("evil"))
    assert status == 403, reason
    assert reason == 'argument "/text" of tool "echo": "evil" does not match ["ok*"]'
    assert not any('"evil"' in r["body"] for r in mcp_server.seen())
    resp = echo("ok then")
    assert resp.status_code == 200, resp.text
    assert any('"ok then"' in r["body"] for r in mcp_server.seen())
