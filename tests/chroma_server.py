"""A real ``chroma run`` server for tests (skipped when the chroma CLI is not installed)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from umr.store.server import ChromaServer, ChromaServerError, chroma_executable


def chroma_server_at(path: Path) -> Iterator[tuple[str, int]]:
    """Start a server on ``path`` (a free port), yield ``(host, port)``, stop it afterwards."""
    if chroma_executable() is None:
        pytest.skip("the chroma CLI is not installed")
    server = ChromaServer(path, startup_timeout=60)
    try:
        server.start()
    except ChromaServerError as exc:
        pytest.skip(str(exc))
    try:
        yield server.host, server.port
    finally:
        server.stop()
