"""Store faults, named: a dead or frozen Chroma server, a full disk, a damaged database.

Every call the store makes to Chroma goes through a :class:`Guard`.  For a Chroma server it bounds
each request (``timeout`` seconds, default ``$UMR_CHROMA_TIMEOUT`` or 30) and retries a request that
timed out or could not connect, ``retries`` times with a doubling pause, then raises
:class:`StoreUnavailableError` naming ``host:port`` and what to do.  Writes are upserts of
content-derived ids and deletes by id, so a retried request that did reach the server changes nothing.

Chroma's own errors are translated into one of the :class:`StoreError` classes below, whose message
names the folder or server, what happened, and what to do:

- :class:`StoreUnavailableError`: the server does not answer (stopped, frozen, not started);
- :class:`StoreFullError`: no space left on the device of the store (Chroma itself says "Error in
  compaction: Failed to apply logs to the metadata segment");
- :class:`StoreCorruptError`: ``chroma.sqlite3`` or the vector index is damaged.

Every message ends with what to do; a re-run after the fault is gone resumes where the run stopped.
"""

from __future__ import annotations

import errno
import logging
import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from umr.documents import safe_display
from umr.errors import UMRError

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: below this many free bytes on the store's device, a failed write is reported as "disk full"
LOW_SPACE = 64 * 1024 * 1024

_FULL = ("no space left", "disk is full", "database or disk is full", "enospc", "quota exceeded")
_CORRUPT = (
    "file is not a database",
    "malformed",
    "no such table",
    "file is encrypted",
    "not a database",
    "database corrupt",
)
#: Chroma's words when a reader opens a vector index another process has not written yet
_NOT_ON_DISK_YET = ("nothing found on disk", "error creating hnsw segment reader")
#: Chroma's words for a write that failed below it (a full disk is the usual cause)
_WRITE_FAILED = ("failed to apply logs", "error in compaction", "disk i/o error", "i/o error", "readonly database")


class StoreError(UMRError, RuntimeError):
    """The store (a Chroma folder or server) failed; the message names it and says what to do."""


class StoreUnavailableError(StoreError, ConnectionError):
    """The Chroma server did not answer: refused the connection, or timed out every try."""


class StoreFullError(StoreError, OSError):
    """No space left on the device that holds the store."""


class StoreCorruptError(StoreError):
    """The store's database file or vector index is damaged."""


class StoreBusyReadError(StoreError):
    """Another process is writing to an embedded store whose vector index is not on disk yet."""


def env_float(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"${name} must be a number of seconds, got {raw!r}") from None
    if value <= 0:
        raise ValueError(f"${name} must be > 0, got {raw!r}")
    return value


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"${name} must be a whole number, got {raw!r}") from None
    if value < 0:
        raise ValueError(f"${name} must be >= 0, got {raw!r}")
    return value


def default_timeout() -> float:
    """Seconds one request to a Chroma server may take: ``$UMR_CHROMA_TIMEOUT`` or 30."""
    return env_float("UMR_CHROMA_TIMEOUT", 30.0)


def default_retries() -> int:
    """Retries of a request that timed out or could not connect: ``$UMR_CHROMA_RETRIES`` or 2."""
    return env_int("UMR_CHROMA_RETRIES", 2)


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    cur: BaseException | None = exc
    while cur is not None and cur not in seen:
        seen.append(cur)
        cur = cur.__cause__ or cur.__context__
    return seen


def _text(exc: BaseException) -> str:
    return " ".join(" ".join(str(e).split()) for e in _chain(exc)).lower()


def free_bytes(path: str | os.PathLike | None) -> int | None:
    """Free bytes for an unprivileged writer on the device holding ``path`` (its nearest existing
    parent); ``None`` when unknown."""
    if path is None:
        return None
    p = Path(os.fsdecode(path)).absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        st = os.statvfs(p)
    except OSError:
        return None
    return int(st.f_bavail * st.f_frsize)


def human(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"  # pragma: no cover


def _is_transport(exc: BaseException) -> bool:
    try:
        import httpx
    except ImportError:  # pragma: no cover - chromadb depends on httpx
        return False
    return isinstance(exc, (httpx.TransportError, ConnectionError)) and not isinstance(exc, StoreError)


def _is_timeout(exc: BaseException) -> bool:
    try:
        import httpx
    except ImportError:  # pragma: no cover
        return False
    return isinstance(exc, (httpx.TimeoutException, TimeoutError))


class Guard:
    """Bounded, retried, translated calls to one Chroma client.

    ``host``/``port``: a server (requests are retried); else ``path``: an embedded folder (no retries:
    a local failure does not heal by waiting).  ``timeout``/``retries``: see the module docs;
    ``backoff``: the first pause between tries, doubled each time.
    """

    def __init__(
        self,
        *,
        host: str | None = None,
        port: int | None = None,
        path: str | os.PathLike | None = None,
        timeout: float | None = None,
        retries: int | None = None,
        backoff: float = 0.5,
    ) -> None:
        self.host = host
        self.port = port
        self.path = Path(os.fsdecode(path)) if path is not None and not host else None
        self.timeout = default_timeout() if timeout is None else float(timeout)
        self.retries = default_retries() if retries is None else int(retries)
        self.backoff = backoff

    @classmethod
    def for_client(cls, client: Any, **kwargs: Any) -> Guard:
        """The guard of a ready ``chromadb`` client (server or folder read from its settings)."""
        if isinstance(getattr(client, "_umr_guard", None), Guard):
            return client._umr_guard  # type: ignore[no-any-return]
        try:
            settings = client.get_settings()
        except Exception:  # pragma: no cover - a client without settings (a stand-in)
            return cls(**kwargs)
        host = getattr(settings, "chroma_server_host", None)
        if host:
            return cls(host=str(host), port=int(getattr(settings, "chroma_server_http_port", 0) or 0), **kwargs)
        persist = getattr(settings, "persist_directory", None) if getattr(settings, "is_persistent", False) else None
        return cls(path=persist, **kwargs)

    @property
    def is_server(self) -> bool:
        return bool(self.host)

    @property
    def where(self) -> str:
        """The store, as messages name it."""
        if self.host:
            return f"the Chroma server at {self.host}:{self.port}"
        if self.path is not None:
            return f"the store {safe_display(self.path)}"
        return "the Chroma store"

    def call(self, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)``; on a server, a timed-out or refused request is tried again
        (``retries`` times, pauses ``backoff``, ``2*backoff``...); every failure is translated.
        ``what`` says what was being done (``"writing 16 records"``) for the messages."""
        attempt = 0
        while True:
            try:
                return fn(*args, **kwargs)
            except StoreError:
                raise
            except Exception as exc:
                if self.is_server and _is_transport(exc) and attempt < self.retries:
                    pause = self.backoff * (2**attempt)
                    attempt += 1
                    logger.warning(
                        "%s did not answer while %s (%s); try %d of %d in %.1fs",
                        self.where, what, self._transport_reason(exc), attempt + 1, self.retries + 1, pause,
                    )
                    time.sleep(pause)
                    continue
                translated = self.translate(exc, what, tries=attempt + 1)
                if translated is None:
                    raise
                raise translated from exc

    def _transport_reason(self, exc: BaseException) -> str:
        if _is_timeout(exc):
            return f"no answer within {self.timeout:g}s"
        low = _text(exc)
        if "refused" in low:
            return "connection refused"
        return " ".join(str(exc).split()) or type(exc).__name__

    def translate(self, exc: BaseException, what: str = "using it", *, tries: int = 1) -> StoreError | None:
        """The :class:`StoreError` that names ``exc``, or ``None`` when it is not a store fault
        (a bad argument, a bug: raised as it is)."""
        low = _text(exc)
        rerun = "then re-run the same command: finished pages are kept"
        if self.is_server and (_is_transport(exc) or "could not connect to a chroma server" in low):
            server = f"{self.host}:{self.port}"
            if _is_timeout(exc):
                return StoreUnavailableError(
                    f"{self.where} did not answer within {self.timeout:g}s while {what} ({tries} tries): it is "
                    f"stopped, frozen or overloaded. Check the `chroma run` process serving {server} (resume "
                    f"it if it was stopped, restart it if it hangs), {rerun} (UMR_CHROMA_TIMEOUT=SECONDS "
                    "raises the limit)"
                )
            return StoreUnavailableError(
                f"cannot connect to {self.where} while {what} ({self._transport_reason(exc)}, {tries} tries): "
                f"start it (chroma run --path DIR --host {self.host} --port {self.port}) or drop --host to use a "
                f"local folder, {rerun}"
            )
        if self.path is not None and any(s in low for s in _NOT_ON_DISK_YET):
            from .lock import writer_of

            pid = writer_of(self.path)
            if pid is not None:
                who = f"another umr process (pid {pid})" if pid else "another umr process"
                return StoreBusyReadError(
                    f"{who} is writing to {self.where} and its vector index is not on disk yet, so it cannot be "
                    "searched now: search again when that run has finished, or serve the folder with a Chroma "
                    "server (chroma run --path DIR, then --host/--port) so that readers and writers can share it"
                )
            return StoreCorruptError(
                f"the vector index of {self.where} is missing ({_short(exc)}): rebuild it from the stored pages "
                "(umr index --rebuild --db DIR)"
            )
        full = any(isinstance(e, OSError) and e.errno == errno.ENOSPC for e in _chain(exc)) or any(
            s in low for s in _FULL
        )
        if any(s in low for s in _CORRUPT) or (
            type(exc) is sqlite3.DatabaseError and not full  # not OperationalError (locked, unable to open)
        ):
            return StoreCorruptError(self._corrupt_message(exc))
        if not full and any(s in low for s in _WRITE_FAILED):
            free = free_bytes(self.path) if self.path is not None else None
            full = free is not None and free < LOW_SPACE
        if full:
            if self.path is None:
                return StoreFullError(
                    f"{self.where} has no space left on its disk ({_short(exc)}) while {what}: free space on the "
                    f"device of the server's --path folder, {rerun}"
                )
            free = free_bytes(self.path)
            left = f"; {human(free)} free" if free is not None else ""
            return StoreFullError(
                f"no space left on the device of {self.where}{left} (Chroma: {_short(exc)}) while {what}: free "
                f"space there or move the store to a bigger disk (--db DIR), {rerun}"
            )
        if any(s in low for s in _WRITE_FAILED):
            return StoreError(
                f"Chroma could not write to {self.where} while {what} ({_short(exc)}): check free space and "
                f"permissions, {rerun}; if it keeps failing, check the store (umr stats --check)"
            )
        return None

    def _corrupt_message(self, exc: BaseException) -> str:
        if self.path is not None:
            db = safe_display(self.path / "chroma.sqlite3")
            return (
                f"the store's database file {db} is damaged ({_short(exc)}); it cannot be repaired in place. "
                f"Move {safe_display(self.path)} aside and re-index into a new folder "
                "(umr index PATH... --db NEW_DIR)"
            )
        return f"{self.where} reports a damaged database ({_short(exc)}); re-index into a new collection or server"


def _short(exc: BaseException, limit: int = 200) -> str:
    msg = " ".join(str(exc).split()) or type(exc).__name__
    return msg if len(msg) <= limit else msg[: limit - 1] + "…"


__all__ = [
    "LOW_SPACE",
    "Guard",
    "StoreBusyReadError",
    "StoreCorruptError",
    "StoreError",
    "StoreFullError",
    "StoreUnavailableError",
    "default_retries",
    "default_timeout",
    "free_bytes",
]
