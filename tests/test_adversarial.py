"""An adversarial corpus through a real Envoy: hostile framing, encodings, names, ids, headers
and paths. Every case checks both what the client got and what the upstream (a raw TCP
sniffer that records every byte) received: no byte of a refused request's body reaches the
upstream (with `hold: request`, not even a connection), an approved one arrives exactly as
sent. The corpus runs once per hold (`hold: request` only where Envoy sets
allow_on_headers_stop_iteration)."""

from __future__ import annotations

import hashlib
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from harness import gateway as gw
from harness import procs
from harness.http import assert_refused, h2_request, read_http1_response

KEY = "adversarial-key"
CONFIG = {
    "endpoints": ["/sniff/mcp"],
    "other_paths": "deny",
    "max_body_bytes": 262144,
    "auth": {
        "api_keys": {"header": "x-api-key", "keys": [{"name": "ci", "sha256": hashlib.sha256(KEY.encode()).hexdigest(), "roles": ["dev"]}]}
    },
    "upstream": {"identity_headers": {"subject": "x-mcp-subject", "roles": "x-mcp-roles"}},
    "policy": {
        "allow": {"methods": ["initialize", "ping", "notifications/*", "tools/list", "tools/call"]},
        "deny": {"tools": ["delete_*"]},
    },
}
AUTH = {"x-api-key": KEY, "content-type": "application/json"}


HOLDS = ["body", "request"] if gw.flag_on() else ["body"]


@pytest.fixture(scope="module", params=HOLDS)
def gateway(request: pytest.FixtureRequest, _alpha: procs.McpServer, _sniffer: procs.Sniffer, log_dir: Path) -> Iterator[gw.Gateway]:
    config = {**CONFIG, "hold": request.param}
    g = gw.start_gateway(_alpha.port, config, extra_routes={"/sniff/": _sniffer.port}, name=f"envoy-adversarial-{request.param}", log_dir=log_dir)
    yield g
    g.stop()


def forwarded(sniffer: procs.Sniffer) -> bool:
    """Whether any request body reached the upstream (a request head alone carries no message)."""
    return any(c["bytes"].partition("\r\n\r\n")[2] for c in sniffer.connections())


def assert_not_forwarded(gateway: gw.Gateway, sniffer: procs.Sniffer) -> None:
    if gateway.hold == "request":
        assert sniffer.connections() == [], "hold: request lets nothing, not even a connection, upstream"
    else:
        assert not forwarded(sniffer), sniffer.connections()


def call(tool: str = "echo", arguments: Any = None, id: Any = 1, method: str = "tools/call") -> bytes:
    params = {"name": tool, "arguments": {"text": "hi"} if arguments is None else arguments}
    return json.dumps({"jsonrpc": "2.0", "id": id, "method": method, "params": params}).encode()


def upstream_bodies(sniffer: procs.Sniffer) -> str:
    return "".join(c["bytes"] for c in sniffer.connections())


def assert_forwarded_intact(sniffer: procs.Sniffer, body: bytes) -> None:
    received = upstream_bodies(sniffer)
    assert body.decode("latin-1") in received, received[-500:]


def raw_http1(port: int, head: bytes, pieces: list[bytes], pause: float = 0.0) -> tuple[int, bytes]:
    """Sends a request head, then each piece as its own write (with `pause` between)."""
    with socket.create_connection((procs.LOOPBACK, port), timeout=20) as s:
        s.sendall(head)
        for piece in pieces:
            s.sendall(piece)
            if pause:
                time.sleep(pause)
        return read_http1_response(s)


def chunked(body: bytes, size: int) -> list[bytes]:
    """`body` in HTTP/1.1 chunked encoding, `size` bytes a chunk, each chunk one write."""
    out = [f"{len(body[i : i + size]):x}\r\n".encode() + body[i : i + size] + b"\r\n" for i in range(0, len(body), size)]
    return [*out, b"0\r\n\r\n"]


def head(path: str = "/sniff/mcp", length: int | None = None, extra: str = "") -> bytes:
    framing = f"content-length: {length}\r\n" if length is not None else "transfer-encoding: chunked\r\n"
    return f"POST {path} HTTP/1.1\r\nhost: gw\r\ncontent-type: application/json\r\nx-api-key: {KEY}\r\n{framing}{extra}\r\n".encode()


# ---------------------------------------------------------------------------- split bodies


@pytest.mark.parametrize("tool,status", [("echo", 200), ("delete_file", 403)])
def test_one_byte_per_chunk(gateway: gw.Gateway, sniffer: procs.Sniffer, tool: str, status: int) -> None:
    body = call(tool)
    got, answer = raw_http1(gateway.port, head(), chunked(body, 1))
    assert got == status, answer
    if status == 200:
        assert_forwarded_intact(sniffer, body)
    else:
        assert_not_forwarded(gateway, sniffer)


@pytest.mark.parametrize("tool,status", [("echo", 200), ("delete_file", 403)])
def test_one_byte_per_write_with_content_length(gateway: gw.Gateway, sniffer: procs.Sniffer, tool: str, status: int) -> None:
    body = call(tool)
    got, _ = raw_http1(gateway.port, head(length=len(body)), [body[i : i + 1] for i in range(len(body))])
    assert got == status
    assert forwarded(sniffer) == (status == 200)


@pytest.mark.parametrize("trailers", [None, [("x-checksum", "1")]])
@pytest.mark.parametrize("tool,status", [("echo", 200), ("delete_file", 403)])
def test_http2_one_byte_frames(gateway: gw.Gateway, sniffer: procs.Sniffer, tool: str, status: int, trailers: list[tuple[str, str]] | None) -> None:
    body = call(tool)
    headers = [("content-type", "application/json"), ("x-api-key", KEY)]
    got, _ = h2_request(gateway.port, "/sniff/mcp", body, headers, trailers, frame=1)
    assert got == status
    if status == 200:
        assert_forwarded_intact(sniffer, body)
    else:
        assert_not_forwarded(gateway, sniffer)


def test_slow_client_is_judged_on_the_whole_body(gateway: gw.Gateway, sniffer: procs.Sniffer) -> None:
    """A body that trickles in (2 s) is held whole: nothing goes upstream before the last byte,
    and the name that completes last decides."""
    body = call("delete_file")
    cut = body.index(b"delete_file") + len(b"delete")
    with socket.create_connection((procs.LOOPBACK, gateway.port), timeout=20) as s:
        s.sendall(head(length=len(body)) + body[:cut])
        time.sleep(2.0)
        assert not forwarded(sniffer), "upstream saw part of a body the gate had not judged"
        s.sendall(body[cut:])
        assert read_http1_response(s)[0] == 403
    assert_not_forwarded(gateway, sniffer)


# ---------------------------------------------------------------------------- bodies


@pytest.mark.parametrize(
    ("body", "status", "code", "reason"),
    [
        (call("echo", {"deep": json.loads("[" * 200 + "]" * 200)}), 400, -32700, "nesting"),
        (call("echo").replace(b'"hi"', b'"h\xc3\x28"'), 400, -32700, "invalid UTF-8"),
        (call("echo").replace(b'"hi"', b'"\xed\xa0\x80"'), 400, -32700, "invalid UTF-8"),
        (b"\xef\xbb\xbf" + call("echo"), 400, -32700, "byte order mark"),
        (call("echo", id=None), 400, -32600, "id"),
        (call("echo", id=1.5), 400, -32600, "id"),
        (call("echo").replace(b'"id": 1', b'"id": 1e2'), 400, -32600, "id"),
        (call("delete_file").replace(b'"tools/call"', b'"tools\\/call"'), 403, -32003, "delete_file"),
        (call("delete_file").replace(b'"delete_file"', b'"\\u0064elete_file"'), 403, -32003, "delete_file"),
        (call("delete_file", method="Tools/Call"), 403, -32003, "Tools/Call"),
        (call("delete_file", method="tools/call "), 403, -32003, "tools/call "),
        (call("echo").replace(b'"method"', b'"method":"ping","method"'), 400, -32600, "duplicate"),
        (b'[{"jsonrpc":"2.0","id":1,"method":"ping"},' + call("delete_file") + b"]", 403, -32003, "batch[1]"),
        (b"[]", 400, -32600, "empty batch"),
        (b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"x":1e999}}}', 400, -32700, "number"),
    ],
    ids=lambda v: v[:48].decode("latin-1") if isinstance(v, bytes) else str(v),
)
def test_hostile_bodies_are_refused_before_the_upstream(
    gateway: gw.Gateway, sniffer: procs.Sniffer, body: bytes, status: int, code: int, reason: str
) -> None:
    resp = httpx.post(f"{gateway.base}/sniff/mcp", content=body, headers=AUTH, timeout=10)
    assert resp.status_code == status, resp.text
    error = resp.json()["error"]
    assert error["code"] == code and reason in error["data"]["reason"], error
    assert_not_forwarded(gateway, sniffer)


@pytest.mark.parametrize(
    "body",
    [
        call("echo", {"text": "x" * 200_000}),
        call("echo", {"nested": json.loads("[" * 100 + "]" * 100), "é": "ünïcödé \u2028"}),
        call("echo", id=-0),
        call("echo", id=9007199254740993),
        call("echo", id="⚡ id"),
        b'[{"jsonrpc":"2.0","method":"notifications/initialized"},{"jsonrpc":"2.0","id":7,"result":{}},' + call("echo", id=8) + b"]",
        call("echo").replace(b'{"jsonrpc"', b' \n\t{"jsonrpc"') + b"\r\n ",
    ],
    ids=["200 KB argument", "nesting 100 and unicode", "id -0", "id 2^53+1", "unicode id", "mixed batch", "whitespace"],
)
def test_unusual_but_valid_bodies_arrive_byte_for_byte(gateway: gw.Gateway, sniffer: procs.Sniffer, body: bytes) -> None:
    resp = httpx.post(f"{gateway.base}/sniff/mcp", content=body, headers=AUTH, timeout=20)
    assert resp.status_code == 200, resp.text
    assert_forwarded_intact(sniffer, body)


# ---------------------------------------------------------------------------- headers


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"content-type": "application/json; charset=utf-8"}, 200),
        ({"content-type": "Application/JSON"}, 200),
        ({"content-type": "text/plain"}, 415),
        ({"content-type": "application/jsonx"}, 415),
        ({"content-type": "application/x-www-form-urlencoded"}, 415),
        ({"content-encoding": "gzip"}, 415),
        ({"content-encoding": "GZip"}, 415),
        ({"content-encoding": "identity, gzip"}, 415),
        ({"content-encoding": "br"}, 415),
    ],
    ids=str,
)
def test_content_type_and_encoding_tricks(gateway: gw.Gateway, sniffer: procs.Sniffer, headers: dict[str, str], status: int) -> None:
    resp = httpx.post(f"{gateway.base}/sniff/mcp", content=call("echo"), headers={**AUTH, **headers}, timeout=10)
    assert resp.status_code == status, resp.text
    assert forwarded(sniffer) == (status == 200)


def test_identity_headers_cannot_be_smuggled(gateway: gw.Gateway, sniffer: procs.Sniffer) -> None:
    extra = "x-mcp-subject: admin\r\nX-MCP-Roles: admin\r\nx-mcp-subject: root\r\n"
    body = call("echo")
    status, _ = raw_http1(gateway.port, head(length=len(body), extra=extra), [body])
    assert status == 200
    received = upstream_bodies(sniffer).lower()
    assert received.count("x-mcp-subject:") == 1 and "x-mcp-subject: ci\r\n" in received
    assert received.count("x-mcp-roles:") == 1 and "x-mcp-roles: dev\r\n" in received
    assert "admin" not in received and "root" not in received


def test_oversized_headers_and_tokens(gateway: gw.Gateway, sniffer: procs.Sniffer) -> None:
    # Over Envoy's header limit (60 KiB by default): Envoy itself refuses.
    resp = httpx.post(f"{gateway.base}/sniff/mcp", content=call("echo"), headers={**AUTH, "x-pad": "a" * 70_000}, timeout=10)
    assert resp.status_code == 431
    # A bearer token far over any sane size, within Envoy's limit: not an API key, refused.
    token = {"content-type": "application/json", "authorization": "Bearer " + "e" * 40_000}
    assert_refused(httpx.post(f"{gateway.base}/sniff/mcp", content=call("echo"), headers=token, timeout=10), 401, -32001, "")
    assert sniffer.connections() == []  # refused on its head: nothing at all, whatever the hold


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/sniff/mcp?session=1", 200),
        ("/sniff/other", 403),
        ("/sniff/MCP", 200),
        ("/sniff/mcp/", 200),
        ("/sniff/Mcp;v=1/", 200),
        ("/sniff/mcp/../other", 403),
        ("/sniff/x/../mcp", 200),
        ("/sniff/%6dcp", 200),
        ("/sniff/mcp%zz", 400),
    ],
)
def test_paths_are_judged_canonically(gateway: gw.Gateway, sniffer: procs.Sniffer, path: str, status: int) -> None:
    """Every spelling of the endpoint is judged as the endpoint (a denied tool on it is
    refused), and goes upstream with its path as sent; tests/test_paths.py covers every
    spelling against real servers of each SDK."""
    for tool, want in (("echo", status), ("delete_file", 403 if status == 200 else status)):
        sniffer.reset()
        body = call(tool)
        got, _ = raw_http1(gateway.port, head(path, length=len(body)), [body])
        assert got == want, (path, tool)
        assert forwarded(sniffer) == (want == 200), (path, tool)
        if want == 200 and ".." not in path and "%" not in path:  # Envoy leaves these as they are
            assert f"POST {path} HTTP/1.1" in upstream_bodies(sniffer), path
