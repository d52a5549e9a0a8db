from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.chroma_server import chroma_server_at
from umr.store import ChromaStore
from umr.testing import HashEmbedder

BUDGET = 60_000
SCRIPT = Path(__file__).with_name("index_script.py")
CORE = Path(__file__).resolve().parents[2] / "core"


def script_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(CORE), str(Path(__file__).resolve().parents[1])])
    env["ANONYMIZED_TELEMETRY"] = "False"
    return env


def run_script(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        env=script_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def embedder() -> HashEmbedder:
    return HashEmbedder(dim=16, max_pixels=BUDGET)


@pytest.fixture
def store(tmp_path: Path, embedder: HashEmbedder) -> Iterator[ChromaStore]:
    with ChromaStore(embedder, tmp_path / "db", batch_size=4) as s:
        yield s


@pytest.fixture
def chroma_server(tmp_path: Path) -> Iterator[tuple[str, int]]:
    """A real ``chroma run`` server on a free local port, stopped afterwards."""
    yield from chroma_server_at(tmp_path / "server-db")
