"""Start a local ``chroma run`` server for the duration of a job (or a test).

Several writer processes (the Ray pipeline of :mod:`umr.distributed`) need a Chroma server; an embedded
``PersistentClient`` folder must have one writer at a time.  :class:`ChromaServer` serves an existing
(or new) database folder on a free local port and stops the server afterwards, so that a job can write
to ``--db DIR`` through a server and leave the same folder behind.

>>> with ChromaServer("umr_db") as server:          # doctest: +SKIP
...     store = ChromaStore(embedder, host=server.host, port=server.port)
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO, Any

logger = logging.getLogger(__name__)


class ChromaServerError(RuntimeError):
    """The ``chroma`` command is missing or the server did not come up."""


def chroma_executable() -> str | None:
    """The ``chroma`` CLI next to this interpreter, or on ``PATH``; ``None`` when not installed."""
    local = Path(sys.executable).with_name("chroma")
    if local.is_file():
        return str(local)
    return shutil.which("chroma")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def heartbeat(host: str, port: int, timeout: float = 2.0) -> bool:
    """True when a Chroma server answers at ``host:port`` within ``timeout`` seconds."""
    from .collection import probe_server

    try:
        probe_server(host, port, timeout)
    except Exception:
        return False
    return True


class ChromaServer:
    """``chroma run --path PATH --host HOST --port PORT`` as a context manager.

    ``port`` defaults to a free port.  Start-up waits for the server's heartbeat (``startup_timeout``
    seconds); the server's output goes to a temporary log whose tail is quoted in errors.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        startup_timeout: float = 60.0,
    ) -> None:
        self.path = Path(os.fsdecode(path))
        self.host = host
        self.port = int(port) if port is not None else free_port(host)
        self.startup_timeout = startup_timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self) -> ChromaServer:
        exe = chroma_executable()
        if exe is None:
            raise ChromaServerError(
                "the `chroma` command is not installed; pip install 'umr[chroma]' (it comes with chromadb)"
            )
        self.path.mkdir(parents=True, exist_ok=True)
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in stop()
        env = dict(os.environ)
        env.setdefault("ANONYMIZED_TELEMETRY", "False")
        self._proc = subprocess.Popen(
            [exe, "run", "--path", str(self.path), "--host", self.host, "--port", str(self.port)],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        deadline = time.monotonic() + self.startup_timeout
        while not heartbeat(self.host, self.port):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                tail = self.log_tail()
                self.stop()
                raise ChromaServerError(
                    f"chroma server on {self.host}:{self.port} for {self.path} did not start: {tail or 'no output'}"
                )
            time.sleep(0.1)
        logger.info("chroma server for %s on %s:%d", self.path, self.host, self.port)
        return self

    @property
    def pid(self) -> int | None:
        """The server's process id while it runs (tests stop it with SIGSTOP or SIGKILL)."""
        return self._proc.pid if self._proc is not None else None

    def log_tail(self, limit: int = 800) -> str:
        if self._log is None:
            return ""
        try:
            self._log.seek(0)
            return self._log.read().decode("utf-8", "replace")[-limit:].strip()
        except (OSError, ValueError):
            return ""

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> ChromaServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
