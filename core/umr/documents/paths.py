"""Path handling: regular-file checks, folder walking, hashing (and, from :mod:`.names`, safe
printing and stable text keys of paths)."""

from __future__ import annotations

import hashlib
import logging
import os
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path

from .names import PathLike, _as_str, safe_display, source_key
from .records import EMPTY, NOT_FOUND, NOT_REGULAR, UNREADABLE, DocumentError, FileError

logger = logging.getLogger(__name__)

__all__ = ["PathLike", "as_path", "check_regular", "file_sha256", "safe_display", "source_key", "walk"]

_HASH_CHUNK = 1 << 20


def check_regular(path: PathLike) -> os.stat_result:
    """``stat`` ``path`` and make sure it is a non-empty regular file (symlinks followed).

    Raises :class:`DocumentError` for missing files, dangling symlinks, FIFOs, sockets,
    devices, directories and empty files, so that nothing is ever opened that could block.
    """
    p = _as_str(path)
    try:
        st = os.stat(p)
    except FileNotFoundError:
        if os.path.islink(p):
            raise DocumentError(
                NOT_FOUND, "dangling symbolic link (its target does not exist): fix or remove the link"
            ) from None
        raise DocumentError(NOT_FOUND, "file not found: check the path") from None
    except OSError as exc:
        raise DocumentError(UNREADABLE, f"cannot stat file ({exc.strerror}): check permissions") from None
    mode = st.st_mode
    if not stat.S_ISREG(mode):
        if stat.S_ISFIFO(mode):
            what = "a FIFO (named pipe)"
        elif stat.S_ISSOCK(mode):
            what = "a socket"
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            what = "a device"
        elif stat.S_ISDIR(mode):
            what = "a directory"
        else:
            what = "not a regular file"
        raise DocumentError(NOT_REGULAR, f"{what}, not a regular file: skipped (index regular files only)")
    if st.st_size == 0:
        raise DocumentError(EMPTY, "empty file (0 bytes): nothing to index; re-download or remove it")
    return st


def file_sha256(path: PathLike) -> str:
    """Hex sha256 of the file's bytes, read in chunks (constant memory)."""
    digest = hashlib.sha256()
    try:
        with open(_as_str(path), "rb") as fh:
            while chunk := fh.read(_HASH_CHUNK):
                digest.update(chunk)
    except OSError as exc:
        raise DocumentError(UNREADABLE, f"cannot read file ({exc.strerror}): check permissions") from None
    return digest.hexdigest()


def walk(paths: PathLike | Iterable[PathLike], *, include_hidden: bool = False) -> Iterator[str | FileError]:
    """Expand files and folders into file paths, recursively, in a deterministic order.

    Folders are walked depth-first with entries sorted by name (bytewise); hidden entries
    (names starting with ``.``) are skipped unless ``include_hidden``.  Paths named
    explicitly are always yielded.  Symlinks to folders are not followed (no cycles);
    symlinks to files are.  Things that are not regular files (FIFOs, sockets, devices,
    dangling symlinks) and unreadable folders come out as :class:`FileError` records rather
    than being opened.  Regular files are yielded as ``str`` (surrogate-escaped where the
    name is not UTF-8); whether their content is a document is decided later.
    """
    if isinstance(paths, (str, bytes, os.PathLike)):
        paths = [paths]
    for item in paths:
        p = _as_str(item)
        if os.path.isdir(p):  # a folder (or a symlink to one, named explicitly)
            yield from _walk_dir(p, include_hidden)
        else:
            yield from _check_entry(p)


def _check_entry(p: str) -> Iterator[str | FileError]:
    try:
        check_regular(p)
    except DocumentError as exc:
        yield exc.to_record(p)
        return
    yield p


def _walk_dir(root: str, include_hidden: bool) -> Iterator[str | FileError]:
    try:
        with os.scandir(root) as it:
            entries = sorted(it, key=lambda e: os.fsencode(e.name))
    except OSError as exc:
        yield FileError(root, f"cannot list folder ({exc.strerror}): check permissions", UNREADABLE)
        return
    for entry in entries:
        if not include_hidden and entry.name.startswith("."):
            continue
        try:
            is_dir = entry.is_dir(follow_symlinks=False)
        except OSError:
            is_dir = False
        if is_dir:
            yield from _walk_dir(entry.path, include_hidden)
        elif entry.is_symlink() and os.path.isdir(entry.path):
            logger.debug("not following symlink to folder %s", safe_display(entry.path))
        else:
            yield from _check_entry(entry.path)


def as_path(path: PathLike) -> Path:
    return Path(_as_str(path))
