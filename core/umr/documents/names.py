"""Names of files: safe printing and stored text keys.

File names are arbitrary bytes on POSIX.  Python hands them over as ``str`` with surrogate
escapes; such strings cannot be encoded to UTF-8 (so they cannot go into JSON, SQLite or a
terminal as is).  :func:`source_key` turns any path into the UTF-8 string the store keeps
(``source``), and :func:`path_from_key` turns it back; :func:`safe_display` makes any path
printable on one line.

The key is injective (two different paths never share a key) and leaves ordinary names alone:

- a name that is valid UTF-8 is its own key, unless it holds a backslash that would read as an
  escape (one followed by another backslash or by ``x`` and two hex digits): that backslash is
  doubled;
- a byte that is not valid UTF-8 is written ``\\xNN`` (lower-case hex).

So ``b"bad\\xff.pdf"`` (a raw 0xff byte) is stored as ``bad\\xff.pdf`` and a file literally named
``bad\\xff.pdf`` as ``bad\\\\xff.pdf``; ``path_from_key(source_key(p)) == os.fsdecode(p)`` for
every path.

Standard library only: the records, the walker and the renderer all import this module.
"""

from __future__ import annotations

import os
import re

PathLike = str | bytes | os.PathLike

_HEX = frozenset("0123456789abcdefABCDEF")
_ESCAPE = re.compile(r"\\(\\|x[0-9a-fA-F]{2})")


def _as_str(path: PathLike) -> str:
    """``os.fspath`` + ``os.fsdecode``: bytes become str with surrogate escapes."""
    return os.fsdecode(os.fspath(path))


def _is_escape_start(text: str, i: int) -> bool:
    """Would a backslash just before ``text[i:]`` read as an escape?  (``text[i]`` is a backslash or
    an undecodable byte, both written starting with a backslash, or ``x`` and two hex digits.)"""
    if i >= len(text):
        return False
    c = text[i]
    if c == "\\" or "\ud800" <= c <= "\udfff":
        return True
    return c == "x" and i + 3 <= len(text) and text[i + 1] in _HEX and text[i + 2] in _HEX


def source_key(path: PathLike) -> str:
    """The UTF-8 string stored for ``path`` (its ``source``): injective, and ``path`` itself for
    ordinary names (see the module docstring).  Invert with :func:`path_from_key`."""
    text = _as_str(path)
    if "\\" not in text:
        try:
            text.encode("utf-8")
            return text
        except UnicodeEncodeError:
            pass
        try:  # canonical form: the str os.fsdecode gives for these bytes (one key per file)
            text = os.fsdecode(os.fsencode(text))
        except UnicodeError:  # lone surrogates outside the surrogateescape range: no file has them
            pass
    out: list[str] = []
    for i, ch in enumerate(text):
        if ch == "\\":
            out.append("\\\\" if _is_escape_start(text, i + 1) else "\\")
        elif "\udc80" <= ch <= "\udcff":  # an undecodable byte (surrogateescape)
            out.append(f"\\x{ord(ch) - 0xDC00:02x}")
        elif "\ud800" <= ch <= "\udfff":  # a lone surrogate that no file name can hold
            out.append("".join(f"\\x{b:02x}" for b in ch.encode("utf-8", "surrogatepass")))
        else:
            out.append(ch)
    return "".join(out)


def path_from_key(key: str) -> str:
    """The path (``str``, surrogate-escaped where the name is not UTF-8) whose key is ``key``."""
    if "\\" not in key:
        return key
    raw = bytearray()
    pos = 0
    for m in _ESCAPE.finditer(key):
        raw += key[pos : m.start()].encode("utf-8", "surrogatepass")
        esc = m.group(1)
        raw += b"\\" if esc == "\\" else bytes([int(esc[1:], 16)])
        pos = m.end()
    raw += key[pos:].encode("utf-8", "surrogatepass")
    return os.fsdecode(bytes(raw))


def display_key(key: str) -> str:
    """A stored key printable on one line: control characters (newlines, tabs, escape sequences)
    as Python escapes."""
    if key.isprintable():
        return key
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in key)


def safe_display(path: PathLike) -> str:
    """A printable, single-line form of ``path``: its :func:`source_key` (undecodable bytes as
    ``\\xNN``) with control characters (newlines, tabs, escape sequences) as Python escapes."""
    return display_key(source_key(path))
