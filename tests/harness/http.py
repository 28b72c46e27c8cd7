"""Raw HTTP for tests that need exact bytes or framing: posts, the refusal check, HTTP/2 with
prior knowledge (optionally in many DATA frames, optionally ending in trailers), and HTTP/1.1
response reading off a socket."""

from __future__ import annotations

import http.server
import json
import socket
from typing import Any

import h2.config
import h2.connection
import h2.events
import httpx

from . import procs


def answer_json(handler: http.server.BaseHTTPRequestHandler, message: Any) -> None:
    """Answers the request an in-process upstream's `handler` serves with `message` as JSON."""
    body = json.dumps(message).encode()
    handler.send_response(200)
    handler.send_header("content-type", "application/json")
    handler.send_header("content-length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


def post(url: str, body: bytes | str, headers: dict[str, str] | None = None, **kw: Any) -> httpx.Response:
    headers = {"content-type": "application/json", **(headers or {})}
    return httpx.post(url, content=body, headers=headers, timeout=10, **kw)


def assert_refused(resp: httpx.Response, status: int, code: int, reason: str, id: Any = None) -> None:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"] == "application/json"
    body = resp.json()
    assert body["jsonrpc"] == "2.0"
    assert body["id"] == id
    assert body["error"]["code"] == code
    assert reason in body["error"]["data"]["reason"], body


def seen_bodies(server: procs.McpServer) -> list[str]:
    return [r["body"] for r in server.seen()]


def h2_request(
    port: int, path: str, body: bytes, headers: list[tuple[str, str]], trailers: list[tuple[str, str]] | None, frame: int | None = None
) -> tuple[int, bytes]:
    """POST over cleartext HTTP/2 with prior knowledge, optionally ending the body with trailers;
    `frame` splits the body into DATA frames of that many bytes, each sent on its own."""
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
    conn.initiate_connection()
    with socket.create_connection((procs.LOOPBACK, port), timeout=10) as sock:
        sock.sendall(conn.data_to_send())
        request = [(":method", "POST"), (":path", path), (":authority", "127.0.0.1"), (":scheme", "http"), *headers]
        conn.send_headers(1, request)
        pieces = [body[i : i + frame] for i in range(0, len(body), frame)] if frame else [body]
        for i, piece in enumerate(pieces):
            conn.send_data(1, piece, end_stream=trailers is None and i == len(pieces) - 1)
            sock.sendall(conn.data_to_send())
        if trailers is not None:
            conn.send_headers(1, trailers, end_stream=True)
        sock.sendall(conn.data_to_send())
        status, data = 0, b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                raise AssertionError("connection closed before the response ended")
            for event in conn.receive_data(chunk):
                if isinstance(event, h2.events.ResponseReceived):
                    status = int(dict(event.headers)[":status"])
                elif isinstance(event, h2.events.DataReceived):
                    data += event.data
                    conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                elif isinstance(event, h2.events.StreamEnded | h2.events.StreamReset):
                    return status, data
            sock.sendall(conn.data_to_send())


def read_http1_response(sock: socket.socket) -> tuple[int, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, rest = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ")[1])
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:"))
    while len(rest) < length:
        rest += sock.recv(65536)
    return status, rest
