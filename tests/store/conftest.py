from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from umr.store import ChromaStore, HashEmbedder

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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def chroma_server(tmp_path: Path) -> Iterator[tuple[str, int]]:
    """A real ``chroma run`` server on a free local port, stopped afterwards."""
    exe = shutil.which("chroma") or str(Path(sys.executable).with_name("chroma"))
    if not Path(exe).exists():
        pytest.skip("the chroma CLI is not installed")
    import chromadb
    from chromadb.config import Settings

    port = _free_port()
    log = open(tmp_path / "chroma.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [exe, "run", "--path", str(tmp_path / "server-db"), "--host", "127.0.0.1", "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                chromadb.HttpClient(
                    host="127.0.0.1", port=port, settings=Settings(anonymized_telemetry=False)
                ).heartbeat()
                break
            except Exception:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.skip(
                        f"chroma server did not start: {(tmp_path / 'chroma.log').read_text()[-500:]}"
                    )
                time.sleep(0.1)
        yield "127.0.0.1", port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
