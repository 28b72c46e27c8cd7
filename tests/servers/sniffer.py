#!/usr/bin/env python3
"""Raw TCP upstream that records every byte it receives, for mcp-guard's "nothing leaks" tests.

Run:  python tests/servers/sniffer.py --port P --control-port C [--host 127.0.0.1]

Data port P (plain asyncio TCP, no HTTP framework): records for each accepted connection the
arrival time and every byte received. Whenever a complete HTTP/1.1 request has arrived
(headers plus a content-length body, or a chunked body up to its terminating chunk) it
answers 200, content-type application/json, body {"jsonrpc":"2.0","id":1,"result":{}}, and
keeps the connection open for further requests (keep-alive). Nothing on P is special-cased:
no control path exists on the data socket.

Control port C (a separate listener):
  GET  /connections  -> JSON list of {"opened_at": epoch s, "closed_at": epoch s|null,
                        "peer": "ip:port", "requests": n, "bytes": latin-1 text of all bytes}
                        for each connection opened, or carrying bytes, since the last reset.
  POST /reset        -> forgets closed connections and the bytes seen so far on open ones
                        (an upstream pool may reuse them, and their new bytes must count).

Prints "ready <port> <control-port>" on stdout once both are listening.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any

RESPONSE_BODY = b'{"jsonrpc":"2.0","id":1,"result":{}}'
RESPONSE = (
    b"HTTP/1.1 200 OK\r\n"
    b"content-type: application/json\r\n"
    b"content-length: " + str(len(RESPONSE_BODY)).encode() + b"\r\n"
    b"\r\n" + RESPONSE_BODY
)


class Record:
    def __init__(self, peer: str) -> None:
        self.opened_at = time.time()
        self.closed_at: float | None = None
        self.peer = peer
        self.data = bytearray()
        self.requests = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "opened_at": self.opened_at,
            "closed_at": self.closed_at,
            "peer": self.peer,
            "requests": self.requests,
            "bytes": self.data.decode("latin-1"),
        }


RECORDS: list[Record] = []
RESET_AT = [0.0]


def _current() -> list[Record]:
    return [r for r in RECORDS if r.opened_at >= RESET_AT[0] or r.data]


def _complete_request_length(buf: bytes) -> int | None:
    """Length of the first complete HTTP/1.x request in buf, or None if more bytes are needed."""
    head_end = buf.find(b"\r\n\r\n")
    if head_end < 0:
        return None
    body_start = head_end + 4
    headers: dict[str, str] = {}
    for line in buf[:head_end].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower().decode("latin-1")] = value.strip().decode("latin-1")
    if "chunked" in headers.get("transfer-encoding", "").lower():
        pos = body_start
        while True:
            line_end = buf.find(b"\r\n", pos)
            if line_end < 0:
                return None
            size_text = buf[pos:line_end].split(b";")[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                return len(buf)  # malformed: answer anyway
            if size == 0:
                # last-chunk, optional trailers, then CRLF
                trailer_end = buf.find(b"\r\n\r\n", line_end)
                if trailer_end < 0:
                    return None
                return trailer_end + 4
            pos = line_end + 2 + size + 2
            if pos > len(buf):
                return None
    try:
        length = int(headers.get("content-length", "0"))
    except ValueError:
        length = 0
    if len(buf) < body_start + length:
        return None
    return body_start + length


async def handle_data(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    peer = writer.get_extra_info("peername")
    rec = Record(f"{peer[0]}:{peer[1]}" if peer else "?")
    RECORDS.append(rec)
    pending = b""
    try:
        while True:
            chunk = await reader.read(65536)
            if not chunk:
                break
            rec.data.extend(chunk)
            pending += chunk
            while True:
                n = _complete_request_length(pending)
                if n is None:
                    break
                pending = pending[n:]
                rec.requests += 1
                writer.write(RESPONSE)
                await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        rec.closed_at = time.time()
        writer.close()


async def handle_control(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        buf = b""
        while _complete_request_length(buf) is None:
            chunk = await reader.read(65536)
            if not chunk:
                return
            buf += chunk
        request_line = buf.split(b"\r\n", 1)[0].decode("latin-1").split()
        method, path = (request_line + ["", ""])[:2]
        status = "200 OK"
        if method == "GET" and path == "/connections":
            body = json.dumps([r.to_json() for r in _current()]).encode()
        elif method == "POST" and path == "/reset":
            RECORDS[:] = [r for r in RECORDS if r.closed_at is None]
            for r in RECORDS:
                r.data.clear()
                r.requests = 0
            RESET_AT[0] = time.time()
            body = b'{"ok":true}'
        else:
            status, body = "404 Not Found", b'{"error":"not found"}'
        writer.write(
            f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
            "connection: close\r\n\r\n".encode()
            + body
        )
        await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


async def serve(host: str, port: int, control_port: int) -> None:
    data = await asyncio.start_server(handle_data, host, port)
    control = await asyncio.start_server(handle_control, host, control_port)
    dport = data.sockets[0].getsockname()[1]
    cport = control.sockets[0].getsockname()[1]
    print(f"ready {dport} {cport}", flush=True)
    async with data, control:
        await asyncio.gather(data.serve_forever(), control.serve_forever())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--control-port", type=int, required=True)
    ap.add_argument("--host", default="127.0.0.1")
    args = ap.parse_args()
    try:
        asyncio.run(serve(args.host, args.port, args.control_port))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
