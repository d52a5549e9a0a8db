"""Dense, lexical and hybrid search over a Chroma collection and its lexical index.

Chroma (local ``PersistentClient`` or ``chroma run``) has no BM25 and no hybrid search; this module
runs the dense query on Chroma, the lexical query on :class:`umr.store.lexical.LexicalIndex` and fuses
the two lists (:func:`umr.ranking.hybrid_fusion`: reciprocal rank fusion by default, or a weighted sum
of scaled scores).  Every lexical candidate is read back from Chroma with the caller's ``where`` and
``where_document``, so filters apply to both sides exactly and hits carry Chroma's metadata and text.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from umr.errors import QueryError
from umr.ranking import FUSION_METHODS, RRF_K, finite_scores, hybrid_fusion

from .records import SearchHit

logger = logging.getLogger(__name__)

#: search modes of :meth:`umr.store.ChromaStore.search`
MODES = ("dense", "lexical", "hybrid")
#: candidates taken from each side before fusion when ``depth`` is not given (at least ``k``)
DEFAULT_DEPTH = 30
#: a lexical filter that the index cannot apply exactly is checked by Chroma on up to this many candidates
MAX_LEXICAL_SCAN = 10_000


@dataclass(frozen=True)
class SearchOptions:
    """How :meth:`ChromaStore.search` ranks: ``mode`` (dense, lexical, hybrid), ``fusion`` (rrf,
    weighted), ``depth`` (candidates from each side; default ``max(k, 30)``), ``weights`` (dense,
    lexical) and ``rrf_k`` (the constant of reciprocal rank fusion)."""

    mode: str = "dense"
    fusion: str = "rrf"
    depth: int | None = None
    weights: tuple[float, float] = (1.0, 1.0)
    rrf_k: int = RRF_K

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"search mode {self.mode!r} is unknown; choose one of {', '.join(MODES)}")
        if self.fusion not in FUSION_METHODS:
            raise ValueError(f"fusion {self.fusion!r} is unknown; choose one of {', '.join(FUSION_METHODS)}")
        if self.depth is not None and (
            isinstance(self.depth, bool) or not isinstance(self.depth, int) or self.depth < 1
        ):
            raise ValueError(f"depth must be a positive int or None, got {self.depth!r}")
        w = finite_scores("weights", self.weights)
        if len(w) != 2 or min(w) < 0 or not any(w):
            raise ValueError(
                f"weights must be two non-negative numbers (dense, lexical), not both 0; got {self.weights!r}"
            )
        if isinstance(self.rrf_k, bool) or not isinstance(self.rrf_k, int) or self.rrf_k < 0:
            raise ValueError(f"rrf_k must be a non-negative int, got {self.rrf_k!r}")
        object.__setattr__(self, "weights", (w[0], w[1]))

    def depth_for(self, k: int) -> int:
        return max(k, self.depth if self.depth is not None else DEFAULT_DEPTH)


def query_text(query: Any) -> str | None:
    """The text a lexical search uses: a ``str`` query, or the ``"text"`` of a fused query; ``None``
    for an image-only query."""
    if isinstance(query, str):
        return query
    if isinstance(query, Mapping):
        text = query.get("text")
        return text if isinstance(text, str) else None
    return None


def _hit(
    hid: str, score: float, meta: Mapping[str, Any] | None, doc: str | None, **scores: float | None
) -> SearchHit:
    m = dict(meta or {})
    return SearchHit(
        id=hid, score=score, metadata=m, document=doc or "", image_uri=str(m.get("image_uri", "")), **scores
    )


def dense_hits(
    collection: Any,
    vector: np.ndarray,
    n: int,
    where: Mapping[str, Any] | None,
    where_document: Mapping[str, Any] | None,
) -> list[SearchHit]:
    """Chroma's top ``n`` by cosine similarity (``score = 1 - distance``)."""
    res = collection.query(
        query_embeddings=np.asarray(vector, dtype=np.float32).reshape(1, -1),
        n_results=n,
        where=dict(where) if where else None,
        where_document=dict(where_document) if where_document else None,
        include=["metadatas", "documents", "distances"],
    )
    metas = (res.get("metadatas") or [[]])[0]
    docs = (res.get("documents") or [[]])[0]
    out = []
    for i, (hid, dist) in enumerate(zip(res["ids"][0], res["distances"][0])):
        score = 1.0 - float(dist)
        out.append(_hit(hid, score, metas[i], docs[i], dense_score=score))
    return out


def _read_back(
    collection: Any,
    ids: Sequence[str],
    where: Mapping[str, Any] | None,
    where_document: Mapping[str, Any] | None,
    max_batch: int,
) -> dict[str, tuple[Mapping[str, Any] | None, str | None]]:
    found: dict[str, tuple[Mapping[str, Any] | None, str | None]] = {}
    for i in range(0, len(ids), max_batch):
        got = collection.get(
            ids=list(ids[i : i + max_batch]),
            where=dict(where) if where else None,
            where_document=dict(where_document) if where_document else None,
            include=["metadatas", "documents"],
        )
        metas = got.get("metadatas") or [None] * len(got["ids"])
        docs = got.get("documents") or [None] * len(got["ids"])
        for hid, meta, doc in zip(got["ids"], metas, docs):
            found[hid] = (meta, doc)
    return found


def lexical_hits(
    collection: Any,
    lexical: Any,
    text: str,
    n: int,
    where: Mapping[str, Any] | None,
    where_document: Mapping[str, Any] | None,
    *,
    max_batch: int = 1000,
) -> list[SearchHit]:
    """The lexical index's top ``n`` (BM25) that Chroma holds and that pass ``where`` / ``where_document``.

    Filters the index applies exactly need one round; others (``$gt``, ``where_document``...) are
    checked by Chroma on a deeper and deeper candidate list until ``n`` pass or
    :data:`MAX_LEXICAL_SCAN` candidates were checked.
    """
    exact = lexical.filter_is_exact(where) and not where_document
    limit = n
    while True:
        cands = lexical.search(text, limit, where)
        found = _read_back(collection, [h.id for h in cands], where, where_document, max_batch)
        hits = [_hit(h.id, h.score, *found[h.id], lexical_score=h.score) for h in cands if h.id in found]
        if exact and len(hits) < len(cands):
            logger.warning(
                "%d lexical hit(s) are not in the Chroma collection: the lexical index is out of step; the next "
                "write repairs it (or run: umr index --rebuild-lexical)",
                len(cands) - len(hits),
            )
        if exact or len(hits) >= n or len(cands) < limit or limit >= MAX_LEXICAL_SCAN:
            if not exact and len(hits) < n and len(cands) >= limit:
                logger.warning(
                    "lexical search: checked %d candidates against the filter, %d passed", limit, len(hits)
                )
            return hits[:n]
        limit = min(limit * 4, MAX_LEXICAL_SCAN)


def fused_hits(
    dense: Sequence[SearchHit], lexical: Sequence[SearchHit], options: SearchOptions
) -> list[SearchHit]:
    """One list from both sides' hits, best first; ``score`` is the fused score, ``dense_score`` /
    ``lexical_score`` keep each side's own (``None`` where the hit came from one side only)."""
    fused = hybrid_fusion(
        [(h.id, h.score) for h in dense],
        [(h.id, h.score) for h in lexical],
        method=options.fusion,
        weights=options.weights,
        k=options.rrf_k,
    )
    by_dense = {h.id: h for h in dense}
    by_lex = {h.id: h for h in lexical}
    out = []
    for hid, score in fused:
        d, lx = by_dense.get(hid), by_lex.get(hid)
        base = d or lx
        assert base is not None
        out.append(
            replace(
                base,
                score=float(score),
                dense_score=d.score if d else None,
                lexical_score=lx.score if lx else None,
            )
        )
    return out


def search(
    collection: Any,
    lexical: Any | None,
    query: Any,
    k: int,
    *,
    embed_query: Callable[[], np.ndarray],
    where: Mapping[str, Any] | None = None,
    where_document: Mapping[str, Any] | None = None,
    options: SearchOptions,
    max_batch: int = 1000,
) -> list[SearchHit]:
    """Top ``k`` hits in ``options.mode``.  ``embed_query()`` gives the query vector (called for the dense
    side only); ``lexical`` is the collection's lexical index (``None``: lexical and hybrid refuse)."""
    if options.mode == "dense":
        return dense_hits(collection, embed_query(), k, where, where_document)
    if lexical is None:
        raise ValueError(
            f"search mode {options.mode!r} needs the lexical index, which this store has none of "
            "(open it with a path, or pass lexical_dir=...; an existing index gains it with umr index "
            "--rebuild-lexical)"
        )
    text = query_text(query)
    if options.mode == "lexical":
        if text is None:
            raise QueryError(
                "lexical search needs a text query (got an image-only query); use mode='dense' or 'hybrid'"
            )
        return lexical_hits(collection, lexical, text, k, where, where_document, max_batch=max_batch)
    depth = options.depth_for(k)
    dense = dense_hits(collection, embed_query(), depth, where, where_document)
    lex: list[SearchHit] = []
    if text is None:
        logger.info("hybrid search of an image-only query: dense side only")
    else:
        try:
            lex = lexical_hits(collection, lexical, text, depth, where, where_document, max_batch=max_batch)
        except QueryError as exc:
            logger.info("hybrid search: %s; dense side only", exc)
    return fused_hits(dense, lex, options)[:k]
