"""Which paths a stored page belongs to.

Page ids are content-derived (file sha256, page, settings), so byte-identical files at several paths
share one page set: it is embedded and stored once, and every path is recorded on each of its records.
Chroma metadata holds scalars only, so the paths are spread over keys:

- ``source``: the first path that stored the page (what a search hit shows first);
- ``source@<16 hex>``: one key per further path, named by the sha256 of the path's key and holding that
  key, so "the records of this path" is an exact, indexed lookup (:func:`refers_to`).

A path is added to a page set when its file is complete (:meth:`Indexer.claim`) and taken off when the
file changes, fails, or is deleted (:meth:`Indexer.release`); a record is deleted when no path lists it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

#: prefix of the metadata keys naming further paths of a shared page set
ALIAS_PREFIX = "source@"


def alias_key(key: str) -> str:
    """The metadata key that records the path whose stored key is ``key`` (besides ``source``)."""
    return ALIAS_PREFIX + hashlib.sha256(key.encode("utf-8")).hexdigest()[:16]


def refers_to(key: str) -> dict[str, Any]:
    """A Chroma ``where`` clause matching the records listed under the path ``key``."""
    return {"$or": [{"source": key}, {alias_key(key): key}]}


def source_paths(meta: Mapping[str, Any]) -> list[str]:
    """Every path a record is listed under (stored keys): ``source`` first, then the others sorted."""
    first = str(meta.get("source", "") or "")
    others = sorted({str(v) for k, v in meta.items() if k.startswith(ALIAS_PREFIX) and v and v != first})
    return ([first] if first else []) + others


def is_alias_key(name: str) -> bool:
    return name.startswith(ALIAS_PREFIX)


__all__ = ["ALIAS_PREFIX", "alias_key", "is_alias_key", "refers_to", "source_paths"]
