"""The writer lock of an embedded database folder: one writer process at a time.

A ``chromadb.PersistentClient`` is not safe for concurrent writers.  Every writer of a folder (a
:class:`~umr.store.ChromaStore` method that writes, ``umr index --ray`` serving the folder through a
job's own Chroma server) holds ``<folder>/.umr-writer.lock`` (``flock``) while it writes.  The OS
releases the lock of a killed writer.  A Chroma server serialises writes itself: no lock there.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from umr.documents import safe_display

logger = logging.getLogger(__name__)

LOCK_NAME = ".umr-writer.lock"


class StoreBusyError(RuntimeError):
    """Another process holds the writer lock of the folder (raised when not waiting for it)."""


class WriterLock:
    """The writer lock of ``folder`` (``None``: a server, nothing to lock).  Re-entrant in one object:
    a locked method that calls another locked method does not deadlock."""

    def __init__(self, folder: str | os.PathLike | None) -> None:
        self.folder = Path(os.fsdecode(folder)) if folder is not None else None
        self._depth = 0

    @contextlib.contextmanager
    def hold(self, *, wait: bool = True) -> Iterator[None]:
        """Hold the lock while the block runs.  When another process holds it: wait for it with a
        warning (``wait=True``), or raise :class:`StoreBusyError` (``wait=False``)."""
        if self.folder is None or self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows
            yield
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.folder / LOCK_NAME, "a+b") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _holder(fh)
                if not wait:
                    raise StoreBusyError(
                        f"another umr process{holder} is writing to {safe_display(self.folder)}; wait for it, "
                        "or run a Chroma server (chroma run --path DB) and pass --host/--port"
                    ) from None
                logger.warning(
                    "waiting for another umr process writing to %s%s to finish (several writers at once need a "
                    "Chroma server: chroma run --path DB, then --host/--port)",
                    safe_display(self.folder), holder,
                )
                fcntl.flock(fh, fcntl.LOCK_EX)
            _record_pid(fh)
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
                fcntl.flock(fh, fcntl.LOCK_UN)


def _record_pid(fh: Any) -> None:
    """Write this process's id into the lock file (read by a writer that has to wait)."""
    try:
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()).encode())
        fh.flush()
    except OSError:  # pragma: no cover - a full disk: the lock itself still holds
        pass


def _holder(fh: Any) -> str:
    """`` (pid N)`` of the process holding the lock, as it recorded itself; empty when unknown."""
    try:
        fh.seek(0)
        pid = int(fh.read(32).decode().strip() or 0)
    except (OSError, ValueError):
        return ""
    return f" (pid {pid})" if pid > 0 else ""


def writer_of(folder: str | os.PathLike) -> int | None:
    """The process id of the umr process writing to ``folder`` now (0 when it did not record one), or
    ``None`` when nobody holds the writer lock.  Takes the lock for an instant when it is free."""
    path = Path(os.fsdecode(folder)) / LOCK_NAME
    if not path.exists():
        return None
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        return None
    try:
        with open(path, "rb") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                try:
                    return int(fh.read(32).decode().strip() or 0)
                except ValueError:
                    return 0
            fcntl.flock(fh, fcntl.LOCK_UN)
            return None
    except OSError:
        return None
