"""Path handling: regular-file checks, folder walking, hashing (and, from :mod:`.names`, safe
printing and stable text keys of paths)."""

from __future__ import annotations

import hashlib
import logging
import os
import stat
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from pathlib import Path

from .names import PathLike, _as_str, safe_display, source_key
from .records import (
    EMPTY,
    EXCLUDED,
    HIDDEN,
    NOT_A_DOCUMENT,
    NOT_FOUND,
    NOT_REGULAR,
    SYMLINKED_FOLDER,
    UNREADABLE,
    DocumentError,
    FileError,
    NotIndexed,
)

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


SkipCallback = Callable[[NotIndexed], None]


def walk(
    paths: PathLike | Iterable[PathLike],
    *,
    include_hidden: bool = False,
    exclude: Sequence[PathLike] = (),
    suffixes: Collection[str] | None = None,
    on_skip: SkipCallback | None = None,
    exclude_reason: str = "inside an excluded folder: never indexed",
) -> Iterator[str | FileError]:
    """Expand files and folders into file paths, recursively, in a deterministic order.

    Folders are walked depth-first with entries sorted by name (bytewise).  Left out, each reported
    once to ``on_skip`` as a :class:`NotIndexed` record (a folder as one entry, not file by file):
    hidden entries (names starting with ``.``) unless ``include_hidden``; symlinks to folders (not
    followed: no cycles); anything at or under a folder of ``exclude`` (``exclude_reason`` says
    why, named paths too); with ``suffixes`` (lower-case, e.g. ``{".pdf", ".png"}``), files found in
    folders whose name has another suffix.  Paths named explicitly are otherwise always yielded.
    Symlinks to files are followed.  Things that are not regular files (FIFOs, sockets, devices,
    dangling symlinks) and unreadable folders come out as :class:`FileError` records rather than
    being opened.  Regular files are yielded as ``str`` (surrogate-escaped where the name is not
    UTF-8); whether their content is a document is decided later.
    """
    if isinstance(paths, (str, bytes, os.PathLike)):
        paths = [paths]
    walker = _Walker(include_hidden, exclude, suffixes, on_skip, exclude_reason)
    for item in paths:
        p = _as_str(item)
        if walker.excluded(p):
            continue
        if os.path.isdir(p):  # a folder (or a symlink to one, named explicitly)
            yield from walker.folder(p)
        else:
            yield from _check_entry(p)


def _check_entry(p: str) -> Iterator[str | FileError]:
    try:
        check_regular(p)
    except DocumentError as exc:
        yield exc.to_record(p)
        return
    yield p


class _Walker:
    def __init__(
        self,
        include_hidden: bool,
        exclude: Sequence[PathLike],
        suffixes: Collection[str] | None,
        on_skip: SkipCallback | None,
        exclude_reason: str,
    ) -> None:
        self.include_hidden = include_hidden
        self.exclude = [os.path.abspath(_as_str(e)) for e in exclude]
        self.suffixes = {s.lower() for s in suffixes} if suffixes is not None else None
        self.on_skip = on_skip
        self.exclude_reason = exclude_reason

    def skip(self, path: str, kind: str, reason: str) -> None:
        logger.debug("not indexed: %s (%s)", safe_display(path), reason)
        if self.on_skip is not None:
            self.on_skip(NotIndexed(path, reason, kind))

    def excluded(self, path: str) -> bool:
        if not self.exclude:
            return False
        full = os.path.abspath(path)
        if any(full == root or full.startswith(root.rstrip(os.sep) + os.sep) for root in self.exclude):
            self.skip(path, EXCLUDED, self.exclude_reason)
            return True
        return False

    def folder(self, root: str) -> Iterator[str | FileError]:
        try:
            with os.scandir(root) as it:
                entries = sorted(it, key=lambda e: os.fsencode(e.name))
        except OSError as exc:
            yield FileError(root, f"cannot list folder ({exc.strerror}): check permissions", UNREADABLE)
            return
        for entry in entries:
            if not self.include_hidden and entry.name.startswith("."):
                self.skip(entry.path, HIDDEN, "hidden (its name starts with '.'): name it explicitly to index it")
                continue
            if self.excluded(entry.path):
                continue
            try:
                is_dir = entry.is_dir(follow_symlinks=False)
            except OSError:
                is_dir = False
            if is_dir:
                yield from self.folder(entry.path)
            elif entry.is_symlink() and os.path.isdir(entry.path):
                self.skip(
                    entry.path, SYMLINKED_FOLDER,
                    "symbolic link to a folder: not followed (no cycles); name it explicitly to index it",
                )
            elif self.suffixes is not None and os.path.splitext(entry.name)[1].lower() not in self.suffixes:
                suffix = os.path.splitext(entry.name)[1].lower() or "no suffix"
                self.skip(
                    entry.path, NOT_A_DOCUMENT,
                    f"not a PDF or image by its name ({suffix}); supported: {', '.join(sorted(self.suffixes))}",
                )
            else:
                yield from _check_entry(entry.path)


def as_path(path: PathLike) -> Path:
    return Path(_as_str(path))
