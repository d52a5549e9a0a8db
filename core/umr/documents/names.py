"""Names of files: safe printing and stable text keys.

File names are arbitrary bytes on POSIX.  Python hands them over as ``str`` with surrogate
escapes; such strings cannot be encoded to UTF-8 (so they cannot go into JSON, SQLite or a
terminal as is).  :func:`safe_display` makes any path printable on one line and
:func:`source_key` gives a UTF-8-clean string that is stable for a given path.

Standard library only: the records, the walker and the renderer all import this module.
"""

from __future__ import annotations

import os

PathLike = str | bytes | os.PathLike


def _as_str(path: PathLike) -> str:
    """``os.fspath`` + ``os.fsdecode``: bytes become str with surrogate escapes."""
    return os.fsdecode(os.fspath(path))


def source_key(path: PathLike) -> str:
    """A UTF-8-clean string for ``path`` (used as the stored ``source``).

    Valid UTF-8 names come back unchanged; undecodable bytes are written as ``\\xNN``.
    """
    text = _as_str(path)
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return os.fsencode(text).decode("utf-8", "backslashreplace")


def safe_display(path: PathLike) -> str:
    """A printable, single-line form of ``path``: undecodable bytes as ``\\xNN`` and control
    characters (newlines, tabs, escape sequences) as Python escapes."""
    text = source_key(path)
    out: list[str] = []
    for ch in text:
        if ch.isprintable():
            out.append(ch)
        else:
            out.append(ch.encode("unicode_escape").decode("ascii"))
    return "".join(out)
