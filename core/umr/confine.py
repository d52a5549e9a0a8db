"""Path confinement for paths that come from a model, node metadata or an HTTP request.

An agent (or a remote client) can name any path. Entry points that take such paths read them only
through a ``PathPolicy``: the path is resolved (symlinks followed *before* the check), must lie under one
of the allowed folders, must be a regular file (never a device, FIFO, socket or anything under
``/proc``, ``/sys`` or ``/dev``) and at most ``max_bytes`` long; the bytes are then read through one
``open`` with ``O_NOFOLLOW | O_NONBLOCK`` and checked again with ``fstat`` on the open descriptor, so a
file swapped for a FIFO or a link after the check is refused too.

Every refusal is the same ``PathNotAllowedError`` text whether or not the file exists, so a caller learns
nothing about files outside the allowed folders.

The default folders are the page-image folders of the ``ChromaStore`` objects opened in this process
(``register_root``) plus the folders a caller names (``allowed_roots=``).
"""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Iterable
from pathlib import Path

from umr.errors import InputError
from umr.inputs import path_from_uri

#: largest file read through a policy (a page image is a few MB; a huge sparse file is refused unread)
DEFAULT_MAX_BYTES = 64 * 1024 * 1024
#: never readable, whatever the allowed folders say
_FORBIDDEN = ("/proc", "/sys", "/dev")

_registry_lock = threading.Lock()
_registered: list[Path] = []


class PathNotAllowedError(InputError, PermissionError):
    """A path outside the allowed folders, or not a regular file. The message never says which."""


def register_root(folder: str | os.PathLike) -> None:
    """Allow ``folder`` for every default policy of this process (``ChromaStore`` registers its images)."""
    real = Path(os.path.realpath(os.fspath(folder)))
    with _registry_lock:
        if real not in _registered:
            _registered.append(real)


def registered_roots() -> list[Path]:
    """The folders registered with ``register_root`` (page-image folders of opened stores)."""
    with _registry_lock:
        return list(_registered)


def _within(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


class PathPolicy:
    """Which local files an untrusted caller may have read: those under ``roots``.

    ``roots=None`` means the registered store image folders only (``registered_roots()``, looked up at
    each check, so a store opened later counts). ``extra`` folders are added to either.
    """

    def __init__(
        self,
        roots: Iterable[str | os.PathLike] | None = None,
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        if isinstance(roots, (str, bytes, os.PathLike)):
            roots = [roots]  # type: ignore[list-item]
        self._roots = None if roots is None else [Path(os.path.realpath(os.fspath(r))) for r in roots]
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes <= 0:
            raise ValueError(f"max_bytes must be a positive int, got {max_bytes!r}")
        self.max_bytes = max_bytes

    @property
    def roots(self) -> list[Path]:
        """The allowed folders now (resolved)."""
        return list(self._roots) if self._roots is not None else registered_roots()

    def __repr__(self) -> str:
        return f"PathPolicy(roots={[str(r) for r in self.roots]!r})"

    def _refuse(self, what: str) -> PathNotAllowedError:
        return PathNotAllowedError(
            f"{what}: this path may not be read here; only regular image files under the allowed folders "
            "can be used (a store's page-image folder, or the folders passed as allowed_roots=)"
        )

    def resolve(self, value: str | os.PathLike, what: str = "image") -> Path:
        """The resolved path of ``value`` (a path or ``file://`` URI) if it is allowed, else raise.

        Nothing is opened here; ``read_bytes`` does the opening.
        """
        try:
            path = path_from_uri(value)
        except (TypeError, InputError):
            raise self._refuse(what) from None
        text = os.fspath(path)
        if "\x00" in text or not text:
            raise self._refuse(what)
        real = Path(os.path.realpath(text))
        if any(_within(real, Path(f)) for f in _FORBIDDEN):
            raise self._refuse(what)
        if not any(_within(real, root) for root in self.roots):
            raise self._refuse(what)
        return real

    def read_bytes(self, value: str | os.PathLike, what: str = "image") -> bytes:
        """The bytes of an allowed regular file, read through one non-blocking, no-follow open."""
        real = self.resolve(value, what)
        flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
        flags |= getattr(os, "O_CLOEXEC", 0)
        try:
            fd = os.open(real, flags)
        except OSError:
            raise self._refuse(what) from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_size > self.max_bytes:
                raise self._refuse(what)
            chunks: list[bytes] = []
            remaining = self.max_bytes + 1
            while remaining > 0:
                chunk = os.read(fd, min(remaining, 1 << 20))
                if not chunk:
                    break
                chunks.append(chunk)
                remaining -= len(chunk)
            data = b"".join(chunks)
            if len(data) > self.max_bytes:
                raise self._refuse(what)
            return data
        finally:
            os.close(fd)


def allow_all() -> PathPolicy:
    """A policy that allows every regular file (``/``): for trusted, caller-named paths only."""
    return PathPolicy(["/"])
