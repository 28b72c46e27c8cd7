#!/usr/bin/env python3
"""CLI + importable wrapper around the official MCP Python SDK 2.x client, for mcp-guard tests.

Default revision is the stateless 2026-07-28 one (no initialize, no session: every POST
carries MCP-Protocol-Version / Mcp-Method / Mcp-Name headers and `_meta` in params).

    python tests/clients/py_client.py --url URL [--header K:V ...] [--mode 2026-07-28|auto|legacy]
                                      [--timeout SECS] [--no-validate] [--transport streamable|sse] COMMAND
    COMMAND:  list | call NAME JSON | progress NAME JSON

Prints one JSON object per line (same shapes as tests/rmcp-client):
    {"step":"list","ok":true,"tools":["echo",...],"http_status":200}
    {"step":"call","tool":"echo","ok":true,"result":{CallToolResult},"http_status":200}
    {"step":"call","tool":"x","ok":false,"error":{"code":-32003,"message":"...","http_status":403}}
    {"step":"progress","t":<monotonic s>,"progress":1.0,"total":3.0,"message":"..."}   (progress only,
        one per notification as it arrives; then the "call" result line, which also carries "t")
Exit code 0 even when a step failed; 2 on usage errors.
A connect failure (auto/legacy modes) prints {"step":"connect","ok":false,"error":{...}}.

Note: after a successful tools/call the SDK sends a tools/list of its own (to validate
structuredContent against the tool's output schema) unless --no-validate / validate=False.

Import use (pytest):  from clients.py_client import list_tools, call_tool, call_with_progress
Each is async and returns the list of dicts it would print.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from typing import Any

import anyio
import httpx2
from mcp import Client
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.exceptions import MCPError

DEFAULT_MODE = "2026-07-28"

Emit = Callable[[dict[str, Any]], None]


class _StatusLog:
    """httpx2 response hook: remembers the HTTP status of each POST (the SDK hides it)."""

    def __init__(self) -> None:
        self.last_post_status: int | None = None

    async def __call__(self, response: httpx2.Response) -> None:
        if response.request.method == "POST":
            self.last_post_status = response.status_code


def _parse_headers(pairs: list[str] | dict[str, str] | None) -> dict[str, str]:
    if not pairs:
        return {}
    if isinstance(pairs, dict):
        return dict(pairs)
    out: dict[str, str] = {}
    for p in pairs:
        k, sep, v = p.partition(":")
        if not sep or not k.strip():
            raise ValueError(f"header must be K:V, got {p!r}")
        out[k.strip()] = v.strip()
    return out


def _error(exc: BaseException, status: _StatusLog) -> dict[str, Any]:
    if isinstance(exc, MCPError):
        err: dict[str, Any] = {"code": exc.code, "message": exc.message}
        if exc.data is not None:
            err["data"] = exc.data
    elif isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        return _error(exc.exceptions[0], status)
    else:
        kind = "transport" if isinstance(exc, (httpx2.HTTPError, OSError)) else "client"
        err = {"message": f"{type(exc).__name__}: {exc}", "kind": kind}
    if status.last_post_status is not None:
        err["http_status"] = status.last_post_status
    return err


class _Session:
    """One SDK Client over Streamable HTTP with extra headers and POST-status capture."""

    def __init__(
        self, url: str, headers: dict[str, str] | None, mode: str, timeout: float, transport: str = "streamable"
    ) -> None:
        self.url = url
        self.transport = transport
        self.headers = headers or {}
        self.mode = mode
        self.timeout = timeout
        self.status = _StatusLog()
        self._stack = AsyncExitStack()
        self.client: Client | None = None

    def _http_client(self, headers: dict[str, str] | None = None, timeout: Any = None, auth: Any = None) -> Any:
        http = create_mcp_http_client(
            headers={**self.headers, **(headers or {})}, timeout=timeout or httpx2.Timeout(self.timeout), auth=auth
        )
        http.event_hooks["response"].append(self.status)
        return http

    async def __aenter__(self) -> Client:
        if self.transport == "sse":
            # Legacy HTTP+SSE transport (GET /sse, POST /messages/?session_id=...): handshake only.
            transport: Any = sse_client(self.url, timeout=self.timeout, httpx_client_factory=self._http_client)
            mode = "legacy"
        else:
            http = await self._stack.enter_async_context(self._http_client())
            transport = streamable_http_client(self.url, http_client=http)
            mode = self.mode
        client = Client(transport, mode=mode, read_timeout_seconds=self.timeout, cache=None)
        try:
            self.client = await self._stack.enter_async_context(client)
        except BaseException:
            await self._stack.aclose()
            raise
        return self.client

    async def __aexit__(self, *exc: Any) -> None:
        await self._stack.__aexit__(*exc)


def _dump(model: Any) -> Any:
    return model.model_dump(mode="json", by_alias=True, exclude_none=True)


async def _run(
    url: str,
    headers: dict[str, str] | list[str] | None,
    mode: str,
    timeout: float,
    emit: Emit,
    body: Callable[[Client, _StatusLog, Emit], Any],
    transport: str = "streamable",
) -> None:
    sess = _Session(url, _parse_headers(headers), mode, timeout, transport)
    try:
        async with sess as client:
            await body(client, sess.status, emit)
    except Exception as exc:  # connect failure (e.g. discover/initialize denied) or teardown error
        emit({"step": "connect", "ok": False, "error": _error(exc, sess.status)})


def _collector(emit: Emit | None) -> tuple[list[dict[str, Any]], Emit]:
    out: list[dict[str, Any]] = []

    def collect(obj: dict[str, Any]) -> None:
        out.append(obj)
        if emit is not None:
            emit(obj)

    return out, collect


async def list_tools(
    url: str,
    headers: dict[str, str] | list[str] | None = None,
    *,
    mode: str = DEFAULT_MODE,
    timeout: float = 30.0,
    emit: Emit | None = None,
    transport: str = "streamable",
) -> list[dict[str, Any]]:
    out, collect = _collector(emit)

    async def body(client: Client, status: _StatusLog, emit: Emit) -> None:
        try:
            r = await client.list_tools()
        except Exception as exc:
            emit({"step": "list", "ok": False, "error": _error(exc, status)})
            return
        emit({"step": "list", "ok": True, "tools": [t.name for t in r.tools], "http_status": status.last_post_status})

    await _run(url, headers, mode, timeout, collect, body, transport)
    return out


async def _call(
    url: str,
    name: str,
    arguments: dict[str, Any] | None,
    headers: dict[str, str] | list[str] | None,
    mode: str,
    timeout: float,
    emit: Emit | None,
    with_progress: bool,
    validate: bool,
    transport: str,
) -> list[dict[str, Any]]:
    out, collect = _collector(emit)

    async def body(client: Client, status: _StatusLog, emit: Emit) -> None:
        if not validate:
            # The SDK follows a tools/call whose tool it has not listed with a tools/list, to
            # validate structuredContent against the output schema. Marking the tool as
            # "listed, no schema" (private SDK state) makes the call a single POST.
            client.session._tool_output_schemas.setdefault(name, None)  # pyright: ignore[reportPrivateUsage]
        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            emit({"step": "progress", "t": time.monotonic(), "progress": progress, "total": total, "message": message})

        step = "call"  # the result line; progress notifications are "progress" lines
        try:
            r = await client.call_tool(
                name, arguments or {}, progress_callback=on_progress if with_progress else None
            )
        except Exception as exc:
            emit({"step": step, "tool": name, "ok": False, "error": _error(exc, status)})
            return
        res: dict[str, Any] = {"step": step, "tool": name, "ok": True, "result": _dump(r)}
        res["http_status"] = status.last_post_status
        if with_progress:
            res["t"] = time.monotonic()
        emit(res)

    await _run(url, headers, mode, timeout, collect, body, transport)
    return out


async def call_tool(
    url: str,
    name: str,
    arguments: dict[str, Any] | None = None,
    headers: dict[str, str] | list[str] | None = None,
    *,
    mode: str = DEFAULT_MODE,
    timeout: float = 30.0,
    emit: Emit | None = None,
    validate: bool = True,
    transport: str = "streamable",
) -> list[dict[str, Any]]:
    """validate=False: skip the SDK's follow-up tools/list (see _call)."""
    return await _call(url, name, arguments, headers, mode, timeout, emit, False, validate, transport)


async def call_with_progress(
    url: str,
    name: str,
    arguments: dict[str, Any] | None = None,
    headers: dict[str, str] | list[str] | None = None,
    *,
    mode: str = DEFAULT_MODE,
    timeout: float = 30.0,
    emit: Emit | None = None,
    validate: bool = True,
    transport: str = "streamable",
) -> list[dict[str, Any]]:
    """Progress lines (as they arrive) then the result line; each progress line has a monotonic `t`."""
    return await _call(url, name, arguments, headers, mode, timeout, emit, True, validate, transport)


def _print(obj: dict[str, Any]) -> None:
    print(json.dumps(obj), flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", required=True)
    ap.add_argument("--header", "-H", action="append", default=[], help="extra request header K:V (repeatable)")
    ap.add_argument("--mode", default=DEFAULT_MODE, help="2026-07-28 (default, no probe), auto, or legacy")
    ap.add_argument("--timeout", type=float, default=30.0)
    ap.add_argument(
        "--transport",
        choices=["streamable", "sse"],
        default="streamable",
        help="sse = legacy HTTP+SSE transport (URL is the GET /sse endpoint; forces the initialize handshake)",
    )
    ap.add_argument(
        "--no-validate",
        action="store_true",
        help="skip the SDK's follow-up tools/list after a call (one POST per call)",
    )
    ap.add_argument("command", choices=["list", "call", "progress"])
    ap.add_argument("name", nargs="?")
    ap.add_argument("arguments", nargs="?", default="{}")
    args = ap.parse_args(argv)
    try:
        headers = _parse_headers(args.header)
    except ValueError as e:
        ap.error(str(e))
    if args.command == "list":
        anyio.run(
            lambda: list_tools(
                args.url, headers, mode=args.mode, timeout=args.timeout, emit=_print, transport=args.transport
            )
        )
        return 0
    if not args.name:
        ap.error(f"{args.command} needs NAME [JSON]")
    try:
        arguments = json.loads(args.arguments)
    except ValueError as e:
        ap.error(f"bad JSON arguments: {e}")
    if not isinstance(arguments, dict):
        ap.error("arguments must be a JSON object")
    fn = call_with_progress if args.command == "progress" else call_tool
    anyio.run(
        lambda: fn(
            args.url,
            args.name,
            arguments,
            headers,
            mode=args.mode,
            timeout=args.timeout,
            emit=_print,
            validate=not args.no_validate,
            transport=args.transport,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
