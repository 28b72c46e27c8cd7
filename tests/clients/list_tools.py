#!/usr/bin/env python3
"""Prints a running MCP server's tools/list result as JSON, as the server sent each tool,
fetched with the official MCP Python SDK client (every page). `make pin` pipes it into
`mcp-guard pin`, which prints the configuration that pins those definitions.

    python scripts/list-tools.py --url http://host:port/mcp [--header 'K: V' ...] [--mode auto|2026-07-28|legacy]
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import anyio
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client


async def list_tools(url: str, headers: dict[str, str], mode: str) -> list[dict[str, Any]]:
    tools: list[dict[str, Any]] = []
    async with create_mcp_http_client(headers=headers) as http:
        async with Client(streamable_http_client(url, http_client=http), mode=mode, cache=None) as client:  # type: ignore[arg-type]
            cursor = None
            while True:
                page = await client.list_tools(cursor=cursor)
                # exclude_unset: exactly the members the server sent, so hashes match the filter's.
                tools += [t.model_dump(mode="json", by_alias=True, exclude_unset=True) for t in page.tools]
                cursor = page.next_cursor
                if not cursor:
                    return tools


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", required=True)
    ap.add_argument("--header", "-H", action="append", default=[], help="request header 'K: V' (repeatable)")
    ap.add_argument("--mode", default="auto", help="auto (default), 2026-07-28 or legacy")
    args = ap.parse_args()
    headers: dict[str, str] = {}
    for pair in args.header:
        name, sep, value = pair.partition(":")
        if not sep:
            ap.error(f"header must be 'K: V', got {pair!r}")
        headers[name.strip()] = value.strip()
    tools = anyio.run(list_tools, args.url, headers, args.mode)
    json.dump({"tools": tools}, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
