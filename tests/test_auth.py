"""Authentication through a real Envoy: JWT with a JWKS served by a real HTTP server on
loopback (rotation, outage, slowness, garbage), API keys, the MCP OAuth resource-server
answers (checked with the official Python SDK's own discovery helpers), and what reaches
the upstream instead of the client's credentials.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt as pyjwt
import pytest
from mcp.client.auth.utils import (
    build_protected_resource_metadata_discovery_urls,
    extract_field_from_www_auth,
    extract_resource_metadata_from_www_auth,
    extract_scope_from_www_auth,
)
from mcp.shared.auth import ProtectedResourceMetadata

from harness import gateway as gw
from harness import procs
from harness import tokens
from harness.rpc import stateless

API_KEY = "mcp-guard-test-api-key"


def auth_config(jwks_cluster: str = "jwks", **remote: Any) -> dict[str, Any]:
    return {
        "endpoints": ["/mcp"],
        "auth": {
            "jwt_providers": [
                {
                    "name": "test-idp",
                    "issuer": tokens.ISSUER,
                    "audiences": [tokens.AUDIENCE],
                    "remote_jwks": {
                        "cluster": jwks_cluster,
                        "path": "/jwks.json",
                        "authority": "idp.test",
                        "refresh_seconds": 60,
                        "timeout_ms": 1000,
                        "min_refetch_seconds": 1,
                        "max_wait_ms": 3000,
                        **remote,
                    },
                    "claims": {"roles": "roles", "scopes": "scope"},
                }
            ],
            "api_keys": {
                "header": "x-api-key",
                "keys": [{"name": "ci-bot", "sha256": hashlib.sha256(API_KEY.encode()).hexdigest(), "roles": ["ci"], "scopes": ["mcp:tools"]}],
            },
            "required_scopes": ["mcp:tools"],
            "resource_metadata": {
                "resource": tokens.AUDIENCE,
                "authorization_servers": [tokens.ISSUER],
                "scopes_supported": ["mcp:tools"],
                "bearer_methods_supported": ["header"],
            },
        },
        "upstream": {
            "identity_headers": {"subject": "x-mcp-subject", "roles": "x-mcp-roles", "method": "x-mcp-auth"},
            "inject": [{"cluster": "mcp_demo", "headers": {"x-service-token": "svc-secret"}}],
        },
    }


class Idp:
    """The JWKS server and the keys it publishes."""

    def __init__(self, folder: Path, log_dir: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.rsa = tokens.new_key("rsa-1", "RS256")
        self.ec = tokens.new_key("ec-1", "ES256")
        self.ed = tokens.new_key("ed-1", "EdDSA")
        self.publish(self.rsa, self.ec, self.ed)
        self.mode("ok")
        self.proc = procs.start("jwks", [procs.PYTHON, str(procs.TESTS / "servers" / "jwks_server.py"), "--dir", str(folder)], ready=r"ready (\d+)", log_dir=log_dir)
        assert self.proc.ready_match is not None
        self.port = int(self.proc.ready_match.group(1))

    def publish(self, *keys: tokens.SigningKey) -> None:
        # Keys without `alg`, as many identity providers publish them.
        (self.folder / "jwks.json").write_text(json.dumps(tokens.jwks(*keys, with_alg=False)))

    def mode(self, mode: str) -> None:
        (self.folder / "mode").write_text(mode)

    def fetches(self) -> int:
        log = self.folder / "requests.log"
        return len(log.read_text().splitlines()) if log.exists() else 0


@pytest.fixture(scope="module")
def idp(tmp_path_factory: pytest.TempPathFactory, log_dir: Path) -> Iterator[Idp]:
    i = Idp(tmp_path_factory.mktemp("idp"), log_dir)
    yield i
    i.proc.stop()


@pytest.fixture(scope="module")
def gateway(idp: Idp, _alpha: procs.McpServer, log_dir: Path) -> Iterator[gw.Gateway]:
    # Two workers: each has its own VM, keys and token cache, and each must get everything right.
    g = gw.start_gateway(_alpha.port, auth_config(), extra_clusters={"jwks": idp.port}, name="envoy-auth", log_dir=log_dir, concurrency=2)
    yield g
    g.stop()


def call(url: str, headers: dict[str, str], tool: str = "echo", client: httpx.Client | None = None) -> httpx.Response:
    """One `tools/call`, on a new connection or on `client`'s."""
    body, base = stateless("tools/call", {"name": tool, "arguments": {"text": "hi"}}, name=tool)
    return (client or httpx).post(url, content=body, headers={**base, **headers}, timeout=15)


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def error_of(resp: httpx.Response) -> tuple[int, int, str]:
    body = resp.json()
    return resp.status_code, body["error"]["code"], body["error"]["data"]["reason"]


def test_missing_credentials_point_to_resource_metadata(gateway: gw.Gateway) -> None:
    resp = call(gateway.url, {})
    status, code, reason = error_of(resp)
    assert (status, code) == (401, -32001), reason
    assert resp.headers["www-authenticate"].startswith("Bearer ")
    # The official SDK's OAuth discovery, step by step, against what the gateway answered.
    # The challenge names the metadata URL of the configured resource (RFC 9728); the SDK
    # falls back to the well-known paths on the URL it connected to, which the gateway serves.
    url = extract_resource_metadata_from_www_auth(resp)
    assert url == "https://mcp.test/.well-known/oauth-protected-resource/mcp"
    candidates = build_protected_resource_metadata_discovery_urls(url, gateway.url)
    assert candidates[1:] == [f"{gateway.base}/.well-known/oauth-protected-resource/mcp", f"{gateway.base}/.well-known/oauth-protected-resource"]
    for candidate in candidates[1:]:
        doc = httpx.get(candidate, timeout=5)
        assert doc.status_code == 200, candidate
        metadata = ProtectedResourceMetadata.model_validate_json(doc.content)
        assert str(metadata.resource) == tokens.AUDIENCE
        assert [str(a) for a in metadata.authorization_servers] == [tokens.ISSUER]
        assert metadata.scopes_supported == ["mcp:tools"]


def test_valid_tokens_pass_and_credentials_stay_at_the_gateway(gateway: gw.Gateway, idp: Idp, mcp_server: procs.McpServer) -> None:
    for key in (idp.rsa, idp.ec, idp.ed):
        token = key.token("alice", roles=["dev", "ops"], scope="mcp:tools other")
        resp = call(gateway.url, {**bearer(token), "x-mcp-subject": "admin", "x-mcp-roles": "root"})
        assert resp.status_code == 200, (key.alg, resp.text)
    seen = [r for r in mcp_server.seen() if r["method"] == "POST"]
    assert len(seen) == 3
    for r in seen:
        h = r["headers"]
        assert "authorization" not in h
        assert h["x-mcp-subject"] == "alice"  # the client's forged copy was removed
        assert h["x-mcp-roles"] == "dev,ops"
        assert h["x-mcp-auth"] == "jwt:test-idp"
        assert h["x-service-token"] == "svc-secret"


@pytest.mark.parametrize(
    ("claims", "fragment"),
    [
        ({"lifetime": -120}, "expired"),
        ({"aud": "https://other.test"}, "audience"),
        ({"iss": "https://evil.test"}, "issuer"),
        ({"nbf": int(time.time()) + 3600}, "not valid yet"),
    ],
)
def test_bad_tokens_get_401_invalid_token(gateway: gw.Gateway, idp: Idp, mcp_server: procs.McpServer, claims: dict[str, Any], fragment: str) -> None:
    token = idp.rsa.token("mallory", scope="mcp:tools", **claims)
    resp = call(gateway.url, bearer(token))
    status, code, reason = error_of(resp)
    assert (status, code) == (401, -32001)
    assert fragment in reason
    assert extract_field_from_www_auth(resp, "error") == "invalid_token"
    assert mcp_server.seen() == []


def test_tampered_and_alg_none_tokens_are_refused(gateway: gw.Gateway, idp: Idp, mcp_server: procs.McpServer) -> None:
    token = idp.rsa.token("alice", scope="mcp:tools")
    head, payload, sig = token.split(".")
    forged_payload = payload[:-2] + ("A" if payload[-2] != "A" else "B") + payload[-1]
    none_token = f"{head}.{payload}."
    for bad in (f"{head}.{forged_payload}.{sig}", none_token, "not-a-jwt"):
        resp = call(gateway.url, bearer(bad))
        assert error_of(resp)[:2] == (401, -32001), bad
        assert extract_field_from_www_auth(resp, "error") == "invalid_token"
    assert mcp_server.seen() == []


def test_missing_scope_gets_403_insufficient_scope(gateway: gw.Gateway, idp: Idp, mcp_server: procs.McpServer) -> None:
    resp = call(gateway.url, bearer(idp.rsa.token("bob", scope="other")))
    status, code, _ = error_of(resp)
    assert (status, code) == (403, -32003)
    assert extract_field_from_www_auth(resp, "error") == "insufficient_scope"
    assert extract_scope_from_www_auth(resp) == "mcp:tools"
    assert extract_resource_metadata_from_www_auth(resp) is not None
    assert mcp_server.seen() == []


def test_api_keys(gateway: gw.Gateway, mcp_server: procs.McpServer) -> None:
    assert call(gateway.url, {"x-api-key": API_KEY}).status_code == 200
    (seen,) = [r for r in mcp_server.seen() if r["method"] == "POST"]
    assert "x-api-key" not in seen["headers"]
    assert seen["headers"]["x-mcp-subject"] == "ci-bot"
    assert seen["headers"]["x-mcp-auth"] == "api_key:ci-bot"
    mcp_server.reset()
    assert error_of(call(gateway.url, {"x-api-key": API_KEY + "x"}))[:2] == (401, -32001)
    assert mcp_server.seen() == []


def test_sdk_client_with_a_token(gateway: gw.Gateway, idp: Idp) -> None:
    token = idp.ec.token("carol", scope="mcp:tools")
    run = procs.run_py_client(gateway.url, "call", "echo", '{"text":"sdk"}', headers=bearer(token), no_validate=True)
    assert run.first("call")["ok"], run.lines
    denied = procs.run_py_client(gateway.url, "call", "echo", '{"text":"sdk"}', no_validate=True)
    assert denied.first("call")["error"]["http_status"] == 401


def test_key_rotation_without_restart(gateway: gw.Gateway, idp: Idp) -> None:
    rotated = tokens.new_key("rsa-2", "RS256")
    idp.publish(rotated, idp.ec, idp.ed)
    time.sleep(1.1)  # past min_refetch_seconds since any earlier fetch
    before = idp.fetches()
    resp = call(gateway.url, bearer(rotated.token("dave", scope="mcp:tools")))
    assert resp.status_code == 200, resp.text
    assert idp.fetches() == before + 1
    # An unknown kid does not make every request refetch: at most one per worker (two here)
    # per min_refetch_seconds.
    unknown = tokens.new_key("never-published", "RS256")
    for _ in range(6):
        assert error_of(call(gateway.url, bearer(unknown.token("eve", scope="mcp:tools"))))[:2] == (401, -32001)
    assert idp.fetches() <= before + 3
    idp.publish(idp.rsa, idp.ec, idp.ed)


def test_jwks_garbage_keeps_the_last_good_keys(idp: Idp, _alpha: procs.McpServer, log_dir: Path) -> None:
    g = gw.start_gateway(_alpha.port, auth_config(refresh_seconds=1, min_refetch_seconds=1), extra_clusters={"jwks": idp.port}, name="envoy-auth-garbage", log_dir=log_dir)
    try:
        token = idp.rsa.token("frank", scope="mcp:tools")
        assert call(g.url, bearer(token)).status_code == 200
        for mode in ("garbage", "error"):
            idp.mode(mode)
            before = idp.fetches()
            deadline = time.monotonic() + 10
            while idp.fetches() < before + 2 and time.monotonic() < deadline:
                time.sleep(0.2)
            assert idp.fetches() >= before + 2, "the gateway kept refreshing"
            assert call(g.url, bearer(token)).status_code == 200, mode
    finally:
        idp.mode("ok")
        g.stop()


def test_requests_wait_for_first_keys_then_fail_closed(idp: Idp, _alpha: procs.McpServer, log_dir: Path) -> None:
    # Nothing listens on the JWKS port: requests wait max_wait_ms, then get 503.
    dead_port = procs.free_port()
    g = gw.start_gateway(_alpha.port, auth_config(max_wait_ms=1500), extra_clusters={"jwks": dead_port}, name="envoy-auth-down", log_dir=log_dir)
    try:
        started = time.monotonic()
        resp = call(g.url, bearer(idp.rsa.token("gina", scope="mcp:tools")))
        waited = time.monotonic() - started
        assert error_of(resp)[:2] == (503, -32603), resp.text
        assert 1.0 < waited < 6, waited
    finally:
        g.stop()


def test_slow_jwks_requests_wait_and_resume(idp: Idp, _alpha: procs.McpServer, log_dir: Path) -> None:
    idp.mode("slow:1")
    try:
        g = gw.start_gateway(_alpha.port, auth_config(timeout_ms=3000, max_wait_ms=3000), extra_clusters={"jwks": idp.port}, name="envoy-auth-slow", log_dir=log_dir)
        try:
            resp = call(g.url, bearer(idp.rsa.token("hank", scope="mcp:tools")))
            assert resp.status_code == 200, resp.text
        finally:
            g.stop()
    finally:
        idp.mode("ok")


def test_streams_and_session_ends_need_credentials_too(gateway: gw.Gateway, mcp_server: procs.McpServer) -> None:
    for method in ("GET", "DELETE"):
        resp = httpx.request(method, gateway.url, headers={"mcp-session-id": "s1", "accept": "text/event-stream"}, timeout=10)
        assert error_of(resp)[:2] == (401, -32001), method
    assert mcp_server.seen() == []
    resp = httpx.request("DELETE", gateway.url, headers={"mcp-session-id": "s1", "x-api-key": API_KEY}, timeout=10)
    assert resp.status_code != 401
    (seen,) = mcp_server.seen()
    assert seen["method"] == "DELETE" and seen["headers"]["x-mcp-subject"] == "ci-bot"


def test_a_token_is_verified_once_per_envoy(idp: Idp, _alpha: procs.McpServer, log_dir: Path) -> None:
    """Two workers, each request of a pair on its own: the second worker takes the first
    one's verification from shared data, until the token expires or its key is rotated away."""
    cfg = auth_config()
    cfg["auth"]["jwt_providers"][0]["leeway_seconds"] = 0
    g = gw.start_gateway(_alpha.port, cfg, extra_clusters={"jwks": idp.port}, name="envoy-auth-shared", log_dir=log_dir, concurrency=2, balanced=True)

    def counters() -> tuple[int, int]:
        stats = g.stats("mcp_guard.jwt_")
        return tuple(sum(v for k, v in stats.items() if k.endswith(name)) for name in ("jwt_verifications", "jwt_shared_cache_hits"))  # type: ignore[return-value]

    def on_both_workers(token: str) -> list[httpx.Response]:
        # The first connection stays open while the second opens: it lands on the other worker.
        with httpx.Client() as one, httpx.Client() as two:
            return [call(g.url, bearer(token), client=c) for c in (one, two)]

    try:
        assert "verified JWTs cached: 1024 per worker, 4096 slots shared by the workers" in g.log()
        token = idp.rsa.token("alice", scope="mcp:tools", lifetime=3)
        assert [r.status_code for r in on_both_workers(token)] == [200, 200]
        connections = {k: v for k, v in g.stats("downstream_cx_total").items() if ".worker_" in k and k.startswith("listener.")}
        assert sorted(connections.values()) == [1, 1], connections
        assert counters() == (1, 1), "verified by one worker, taken from shared data by the other"
        assert [r.status_code for r in on_both_workers(token)] == [200, 200]
        assert counters() == (1, 1), "then each worker's own cache serves it"

        time.sleep(max(0.0, pyjwt.decode(token, options={"verify_signature": False})["exp"] - time.time()) + 0.2)
        for resp in on_both_workers(token):
            assert error_of(resp)[:2] == (401, -32001)
            assert "expired" in error_of(resp)[2]

        fresh = idp.rsa.token("bob", scope="mcp:tools")
        assert [r.status_code for r in on_both_workers(fresh)] == [200, 200]
        rotated = tokens.new_key("rsa-3", "RS256")
        idp.publish(rotated, idp.ec, idp.ed)
        time.sleep(1.1)  # past min_refetch_seconds: a new kid makes each worker refetch
        assert [r.status_code for r in on_both_workers(rotated.token("carol", scope="mcp:tools"))] == [200, 200]
        for resp in on_both_workers(fresh):
            assert error_of(resp)[:2] == (401, -32001), "the key that verified it is gone"
    finally:
        idp.publish(idp.rsa, idp.ec, idp.ed)
        g.stop()
