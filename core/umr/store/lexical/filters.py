"""Chroma ``where`` filters on the lexical side.

Each scalar metadata value of a record is indexed as one exact term ``key\\x1f<type>:<value>`` (numbers
normalised so that ``1`` and ``1.0`` agree, as they do in Chroma; booleans apart, as in Chroma).  A
``where`` dict is translated into a tantivy query over those terms.  The translation is exact for
equality, ``$eq``, ``$ne``, ``$in``, ``$nin``, ``$and`` and ``$or`` (``$ne`` / ``$nin`` match records
without the key, like Chroma); anything else (``$gt``, ``$contains``, ...) is left out of the
pre-filter, which then matches a superset, and the store checks every candidate against Chroma.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterator, Mapping
from typing import Any

#: metadata strings longer than this are not indexed for filtering (a filter on them is checked by Chroma)
MAX_VALUE_CHARS = 1000
FIELD = "meta"
_SEP = "\x1f"


def encode_value(value: Any) -> str | None:
    """The filter term of one scalar value, or ``None`` when it is not indexed (long strings, NaN)."""
    if isinstance(value, bool):
        return f"b:{int(value)}"
    if isinstance(value, numbers.Integral):
        return f"n:{int(value)}"
    if isinstance(value, numbers.Real):
        f = float(value)
        if not math.isfinite(f):
            return None
        return f"n:{int(f)}" if f.is_integer() else f"n:{f!r}"
    if isinstance(value, str):
        return f"s:{value}" if len(value) <= MAX_VALUE_CHARS else None
    return None


def metadata_terms(metadata: Mapping[str, Any]) -> Iterator[str]:
    """The filter terms of one record's metadata."""
    for key, value in metadata.items():
        enc = encode_value(value)
        if enc is not None and isinstance(key, str) and _SEP not in key:
            yield f"{key}{_SEP}{enc}"


class FilterTranslator:
    """Turns a Chroma ``where`` dict into ``(query or None, exact)`` for one tantivy schema.

    ``None`` means no pre-filter (every record may match); ``exact`` is False when some part could not
    be translated and the result is a superset of Chroma's.
    """

    def __init__(self, schema: Any) -> None:
        import tantivy

        self._t = tantivy
        self._schema = schema

    def translate(self, where: Mapping[str, Any] | None) -> tuple[Any | None, bool]:
        if not where:
            return None, True
        if not isinstance(where, Mapping):
            raise TypeError(f"where must be a dict like {{'source': 'a.pdf'}}, got {type(where).__name__}")
        return self._clause(where)

    # -- helpers
    def _term(self, key: str, value: Any) -> Any | None:
        enc = encode_value(value)
        if enc is None or _SEP in key:
            return None
        return self._t.Query.term_query(self._schema, FIELD, f"{key}{_SEP}{enc}", index_option="basic")

    def _any(self, queries: list[Any]) -> Any:
        if len(queries) == 1:
            return queries[0]
        if not queries:
            return self._t.Query.empty_query()
        occur = self._t.Occur.Should
        return self._t.Query.boolean_query([(occur, q) for q in queries])

    def _all(self, queries: list[Any]) -> Any:
        if len(queries) == 1:
            return queries[0]
        occur = self._t.Occur.Must
        return self._t.Query.boolean_query([(occur, q) for q in queries])

    def _not(self, query: Any) -> Any:
        o = self._t.Occur
        return self._t.Query.boolean_query([(o.Must, self._t.Query.all_query()), (o.MustNot, query)])

    # -- grammar
    def _clause(self, where: Mapping[str, Any]) -> tuple[Any | None, bool]:
        parts: list[Any] = []
        exact = True
        for key, value in where.items():
            if key == "$and":
                q, ex = self._and(value)
            elif key == "$or":
                q, ex = self._or(value)
            elif isinstance(key, str) and not key.startswith("$"):
                q, ex = self._field(key, value)
            else:
                q, ex = None, False
            exact = exact and ex
            if q is not None:
                parts.append(q)
        return (self._all(parts) if parts else None), exact

    def _and(self, items: Any) -> tuple[Any | None, bool]:
        if not isinstance(items, list):
            return None, False
        parts, exact = [], True
        for item in items:
            q, ex = self._clause(item) if isinstance(item, Mapping) else (None, False)
            exact = exact and ex
            if q is not None:
                parts.append(q)
        return (self._all(parts) if parts else None), exact

    def _or(self, items: Any) -> tuple[Any | None, bool]:
        if not isinstance(items, list) or not items:
            return None, False
        parts = []
        for item in items:
            q, ex = self._clause(item) if isinstance(item, Mapping) else (None, False)
            if q is None:  # one unconstrained branch: the whole $or matches anything
                return None, False
            parts.append(q)
            if not ex:
                return None, False
        return self._any(parts), True

    def _field(self, key: str, cond: Any) -> tuple[Any | None, bool]:
        if not isinstance(cond, Mapping):
            cond = {"$eq": cond}
        parts, exact = [], True
        for op, value in cond.items():
            q: Any | None = None
            if op == "$eq":
                q = self._term(key, value)
            elif op == "$ne":
                t = self._term(key, value)
                q = self._not(t) if t is not None else None
            elif op in ("$in", "$nin") and isinstance(value, list):
                terms = [self._term(key, v) for v in value]
                if all(t is not None for t in terms):
                    if op == "$in":
                        q = self._any(terms)
                    else:
                        q = self._not(self._any(terms)) if terms else self._t.Query.all_query()
            if q is None:
                exact = False
            else:
                parts.append(q)
        return (self._all(parts) if parts else None), exact
