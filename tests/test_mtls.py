"""Mesh identity through a real Envoy with real mTLS: the listener requires a client
certificate signed by a test CA, and the filter names the caller after the certificate's
SPIFFE ID (`peer_identity: "spiffe"`) or its first SAN (`"san"`), read from Envoy's
`connection.uri_san_peer_certificate` / `connection.dns_san_peer_certificate`.

The CA, the server certificate and the client certificates are generated for each run
into pytest's tmp dir.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from harness import certs
from harness import gateway as gw
from harness import procs
from harness.rpc import stateless

SPIFFE_ID = "spiffe://mesh.test/ns/agents/sa/planner"
DNS_ONLY = "tool-runner.mesh.test"


@dataclass
class Pki:
    ca: certs.Ca
    server: certs.CertFiles
    spiffe_client: certs.CertFiles
    dns_client: certs.CertFiles
    stranger: certs.CertFiles  # right SPIFFE ID, signed by a CA Envoy does not trust

    @property
    def listener_tls(self) -> dict[str, str | Path]:
        return {"cert": self.server.cert, "key": self.server.key, "client_ca": self.ca.cert_path}


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    folder = tmp_path_factory.mktemp("pki")
    ca = certs.Ca(folder)
    rogue = certs.Ca(folder / "rogue", name="untrusted CA")
    return Pki(
        ca=ca,
        server=ca.issue("server", dns=("localhost",), ips=(procs.LOOPBACK,), server=True),
        spiffe_client=ca.issue("planner", uris=(SPIFFE_ID,)),
        dns_client=ca.issue("tool-runner", dns=(DNS_ONLY,)),
        stranger=rogue.issue("stranger", uris=(SPIFFE_ID,)),
    )


def mtls_config(peer_identity: str) -> dict[str, Any]:
    return {
        "endpoints": ["/mcp"],
        "auth": {"peer_identity": peer_identity},
        "upstream": {"identity_headers": {"subject": "x-mcp-subject", "method": "x-mcp-auth"}},
    }


def _gateway(pki: Pki, server: procs.McpServer, log_dir: Path, peer_identity: str) -> Iterator[gw.Gateway]:
    g = gw.start_gateway(server.port, mtls_config(peer_identity), tls=pki.listener_tls, name=f"envoy-mtls-{peer_identity}", log_dir=log_dir)
    yield g
    g.stop()


@pytest.fixture(scope="module")
def spiffe_gateway(pki: Pki, _alpha: procs.McpServer, log_dir: Path) -> Iterator[gw.Gateway]:
    yield from _gateway(pki, _alpha, log_dir, "spiffe")


@pytest.fixture(scope="module")
def san_gateway(pki: Pki, _alpha: procs.McpServer, log_dir: Path) -> Iterator[gw.Gateway]:
    yield from _gateway(pki, _alpha, log_dir, "san")


def call(gateway: gw.Gateway, pki: Pki, client: certs.CertFiles | None, headers: dict[str, str] | None = None) -> httpx.Response:
    body, base = stateless("tools/call", {"name": "echo", "arguments": {"text": "hi"}}, name="echo")
    return httpx.post(
        gateway.url,
        content=body,
        headers={**base, **(headers or {})},
        verify=certs.client_context(pki.ca.cert_path, client),
        timeout=15,
    )


def posts(server: procs.McpServer) -> list[dict[str, Any]]:
    return [r for r in server.seen() if r["method"] == "POST"]


def test_gateway_speaks_tls_on_loopback(spiffe_gateway: gw.Gateway) -> None:
    assert spiffe_gateway.url == f"https://{procs.LOOPBACK}:{spiffe_gateway.port}/mcp"


def test_spiffe_id_becomes_the_subject(spiffe_gateway: gw.Gateway, pki: Pki, mcp_server: procs.McpServer) -> None:
    resp = call(spiffe_gateway, pki, pki.spiffe_client, {"x-mcp-subject": "admin", "x-mcp-auth": "api_key:root"})
    assert resp.status_code == 200, resp.text
    assert "hi" in resp.text  # the real server's echo
    (seen,) = posts(mcp_server)
    h = seen["headers"]
    assert h["x-mcp-subject"] == SPIFFE_ID  # the client's forged copy was replaced
    assert h["x-mcp-auth"] == "peer"
    subjects = [v for k, v in seen["header_list"] if k.lower() == "x-mcp-subject"]
    assert subjects == [SPIFFE_ID], seen["header_list"]


def test_certificate_without_spiffe_id_gets_401(spiffe_gateway: gw.Gateway, pki: Pki, mcp_server: procs.McpServer) -> None:
    resp = call(spiffe_gateway, pki, pki.dns_client, {"x-mcp-subject": SPIFFE_ID})
    assert resp.status_code == 401, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    body = resp.json()
    # Authentication is decided from the head, before the body is read: the id is unknown.
    assert (body["jsonrpc"], body["id"]) == ("2.0", None)
    assert body["error"]["code"] == -32001, body
    assert body["error"]["data"]["reason"] == "missing credentials"
    assert mcp_server.seen() == []


def test_listener_refuses_missing_or_untrusted_client_certificates(spiffe_gateway: gw.Gateway, pki: Pki, mcp_server: procs.McpServer) -> None:
    for client in (None, pki.stranger):
        with pytest.raises(httpx.TransportError):
            call(spiffe_gateway, pki, client)
    assert mcp_server.seen() == []


def test_san_mode_accepts_the_dns_name(san_gateway: gw.Gateway, pki: Pki, mcp_server: procs.McpServer) -> None:
    resp = call(san_gateway, pki, pki.dns_client, {"x-mcp-subject": "admin"})
    assert resp.status_code == 200, resp.text
    (seen,) = posts(mcp_server)
    assert seen["headers"]["x-mcp-subject"] == DNS_ONLY
    assert seen["headers"]["x-mcp-auth"] == "peer"
