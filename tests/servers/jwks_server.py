#!/usr/bin/env python3
"""A JWKS endpoint on loopback for mcp-guard's authentication tests: a real HTTP server
whose answers the test steers through files, so keys can rotate and the server can turn
slow or answer garbage mid-run.

Run:  python tests/servers/jwks_server.py --port P --dir D
  GET /jwks.json  -> the contents of D/jwks.json (application/json), re-read on every request.
  D/mode (optional, re-read on every request): "ok" (default) | "garbage" (200, not JSON) |
  "error" (503) | "slow:<seconds>" (answer after a delay).
Every request is appended to D/requests.log (one line: monotonic time and path).
Prints "ready <port>" once listening.
"""

from __future__ import annotations

import argparse
import http.server
import threading
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--dir", type=Path, required=True)
    args = ap.parse_args()
    folder: Path = args.dir
    lock = threading.Lock()

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            with lock, open(folder / "requests.log", "a") as log:
                log.write(f"{time.monotonic():.3f} {self.path}\n")
            mode_file = folder / "mode"
            mode = mode_file.read_text().strip() if mode_file.exists() else "ok"
            if mode.startswith("slow:"):
                time.sleep(float(mode.split(":", 1)[1]))
                mode = "ok"
            if self.path != "/jwks.json":
                self.reply(404, b'{"error":"not found"}')
            elif mode == "garbage":
                self.reply(200, b"<html>this is not a key set</html>")
            elif mode == "error":
                self.reply(503, b'{"error":"unavailable"}')
            else:
                self.reply(200, (folder / "jwks.json").read_bytes())

        def reply(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    print(f"ready {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
