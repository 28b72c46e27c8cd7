"""Shared pytest fixtures: real MCP servers, the TCP sniffer and the rmcp client binary.

Helpers live in tests/harness/procs.py (importable as `harness.procs` because pytest puts
this directory on sys.path for a rootdir conftest without __init__.py).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from harness import procs


@pytest.fixture(scope="session")
def log_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("logs")


@pytest.fixture(scope="session")
def mcp_server_factory(log_dir: Path) -> Iterator[Callable[..., procs.McpServer]]:
    """start(name=..., json_response=..., deny_tools=(...)) -> McpServer; all stopped at session end."""
    started: list[procs.McpServer] = []

    def start(name: str = "mcp-test-server", **kw: object) -> procs.McpServer:
        srv = procs.start_mcp_server(name, log_dir=log_dir, **kw)  # type: ignore[arg-type]
        started.append(srv)
        return srv

    yield start
    for srv in started:
        srv.stop()


@pytest.fixture(scope="session")
def _alpha(mcp_server_factory: Callable[..., procs.McpServer]) -> procs.McpServer:
    return mcp_server_factory("alpha")


@pytest.fixture
def mcp_server(_alpha: procs.McpServer) -> procs.McpServer:
    """A session-wide real MCP server named "alpha", with its request record cleared for this test."""
    _alpha.reset()
    return _alpha


@pytest.fixture(scope="session")
def _denying(mcp_server_factory: Callable[..., procs.McpServer]) -> procs.McpServer:
    return mcp_server_factory("denying", deny_tools=("delete_file",))


@pytest.fixture
def denying_server(_denying: procs.McpServer) -> procs.McpServer:
    """Like mcp_server, but tools/call of delete_file is answered 403 + JSON-RPC -32003 by the server itself."""
    _denying.reset()
    return _denying


@pytest.fixture(scope="session")
def _sniffer(log_dir: Path) -> Iterator[procs.Sniffer]:
    s = procs.start_sniffer(log_dir=log_dir)
    yield s
    s.stop()


@pytest.fixture
def sniffer(_sniffer: procs.Sniffer) -> procs.Sniffer:
    _sniffer.reset()
    return _sniffer


@pytest.fixture(scope="session")
def rmcp_client_bin() -> Path:
    """Path to the built tests/rmcp-client binary (cargo build --release -p rmcp-client if needed)."""
    if shutil.which("cargo") is None:
        path = procs.rmcp_client_path()
        if not path.exists():
            pytest.skip("cargo not available and rmcp-client not built")
        return path
    return procs.build_rmcp_client()
