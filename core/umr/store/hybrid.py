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
from dataclasses import dataclass
from typing import Any

from umr.errors import QueryError
from umr.ranking import FUSION_METHODS, RRF_K, finite_scores, hybrid_fusion

from .collection import ChromaCollection
from .records import SearchHit

logger = logging.getLogger(__name__)

#: search modes of :meth:`umr.store.ChromaStore.search`
MODES = ("dense", "lexical", "hybrid")
#: candidates taken from each side before fusion when ``depth`` is not given (at least ``k``).  Deeper
#: lists let near-misses that both sides rank mid-list overtake a hit one side ranks first: on the
#: generated corpus of benchmarks/hybrid.py (k=10) descriptive Recall@10 of RRF is 0.704 at depth 10,
#: 0.662 at 20, 0.630 at 30, 0.604 at 50 (dense alone 0.648, lexical 0.518)
DEFAULT_DEPTH = 10
#: a lexical filter that the index cannot apply exactly is checked by Chroma on up to this many candidates
MAX_LEXICAL_SCAN = 10_000


@dataclass(frozen=True)
class SearchOptions:
    """How :meth:`ChromaStore.search` ranks: ``mode`` (dense, lexical, hybrid), ``fusion`` (rrf,
    weighted), ``depth`` (candidates from each side; default ``max(k, 10)``), ``weights`` (dense,
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


def _hit(hid: str, score: float, meta: Mapping[str, Any], doc: str, **scores: float | None) -> SearchHit:
    return SearchHit(
        id=hid, score=score, metadata=dict(meta), document=doc, image_uri=str(meta.get("image_uri", "")), **scores
    )


def _lexical_ranked(
    collection: ChromaCollection,
    lexical: Any,
    text: str,
    n: int,
    where: Mapping[str, Any] | None,
    where_document: Mapping[str, Any] | None,
) -> list[tuple[str, float]]:
    """The lexical index's top ``n`` as ``(id, BM25)``, filtered like Chroma.

    Filters the index applies exactly need no check here; others (``$gt``, ``where_document``...) are
    checked by Chroma on a deeper and deeper candidate list until ``n`` pass or
    :data:`MAX_LEXICAL_SCAN` candidates were checked.
    """
    if lexical.filter_is_exact(where) and not where_document:
        return [(h.id, h.score) for h in lexical.search(text, n, where)]
    limit = n
    while True:
        cands = lexical.search(text, limit, where)
        ok = collection.filter_ids([h.id for h in cands], where, where_document)
        ranked = [(h.id, h.score) for h in cands if h.id in ok]
        if len(ranked) >= n or len(cands) < limit or limit >= MAX_LEXICAL_SCAN:
            if len(ranked) < n and len(cands) >= limit:
                logger.warning("lexical search: checked %d candidates against the filter, %d passed", limit, len(ranked))
            return ranked[:n]
        limit = min(limit * 4, MAX_LEXICAL_SCAN)


def _materialize(
    collection: ChromaCollection,
    ranked: Sequence[tuple[str, float, float | None, float | None]],
    k: int,
    where: Mapping[str, Any] | None,
    where_document: Mapping[str, Any] | None,
) -> list[SearchHit]:
    """The first ``k`` of ``(id, score, dense_score, lexical_score)`` as hits, with Chroma's metadata and
    text; an id Chroma does not return (the lexical index is out of step) is skipped, with a warning."""
    out: list[SearchHit] = []
    missing = 0
    pos = 0
    while len(out) < k and pos < len(ranked):
        chunk = ranked[pos : pos + (k - len(out))]
        pos += len(chunk)
        found = collection.records([r[0] for r in chunk], where, where_document)
        for hid, score, dense, lex in chunk:
            if hid in found:
                out.append(_hit(hid, score, *found[hid], dense_score=dense, lexical_score=lex))
            else:
                missing += 1
    if missing:
        logger.warning(
            "%d lexical hit(s) are not in the Chroma collection: the lexical index is out of step; the next "
            "write repairs it (or run: umr index --rebuild-lexical)",
            missing,
        )
    return out


def fused_ranking(
    dense: Sequence[tuple[str, float]], lexical: Sequence[tuple[str, float]], options: SearchOptions
) -> list[tuple[str, float, float | None, float | None]]:
    """Both sides' ``(id, score)`` lists fused, best first, as ``(id, fused, dense_score, lexical_score)``
    (a side's score is ``None`` when the id did not come from that side)."""
    fused = hybrid_fusion(dense, lexical, method=options.fusion, weights=options.weights, k=options.rrf_k)
    d, lx = dict(reversed(dense)), dict(reversed(lexical))
    return [(hid, float(score), d.get(hid), lx.get(hid)) for hid, score in fused]


def search(
    collection: ChromaCollection,
    lexical: Any | None,
    query: Any,
    k: int,
    *,
    dense_ranked: Callable[[int], list[tuple[str, float]]],
    where: Mapping[str, Any] | None = None,
    where_document: Mapping[str, Any] | None = None,
    options: SearchOptions,
) -> list[SearchHit]:
    """Top ``k`` hits in ``options.mode`` from ``collection`` and its lexical index.

    ``dense_ranked(n)`` gives the dense side's top ``n`` as ``(id, score)`` with ``where`` and
    ``where_document`` applied (cosine from Chroma, or MaxSim of a multi-vector store; called for the
    dense and hybrid modes only); ``lexical`` is a :class:`~umr.store.lexical.LexicalIndex` (``None``:
    lexical and hybrid refuse).  Dense and lexical
    candidates are ranked by ids and scores only; Chroma's metadata and text are read for the ``k``
    hits returned.
    """
    if options.mode == "dense":
        ranked = dense_ranked(k)
        return _materialize(collection, [(i, s, s, None) for i, s in ranked], k, where, where_document)
    if lexical is None:
        raise ValueError(
            f"search mode {options.mode!r} needs the lexical index, which this store has none of "
            "(install tantivy: pip install 'umr[lexical]', and open the store with a path or lexical_dir=...; "
            "an existing index gains it with umr index --rebuild-lexical)"
        )
    text = query_text(query)
    if options.mode == "lexical":
        if text is None:
            raise QueryError("lexical search needs a text query (got an image-only query); use mode='dense' or 'hybrid'")
        ranked = _lexical_ranked(collection, lexical, text, k, where, where_document)
        return _materialize(collection, [(i, s, None, s) for i, s in ranked], k, where, where_document)
    depth = options.depth_for(k)
    dense = dense_ranked(depth)
    lex: list[tuple[str, float]] = []
    if text is None:
        logger.info("hybrid search of an image-only query: dense side only")
    else:
        try:
            lex = _lexical_ranked(collection, lexical, text, depth, where, where_document)
        except QueryError as exc:
            logger.info("hybrid search: %s; dense side only", exc)
    return _materialize(collection, fused_ranking(dense, lex, options), k, where, where_document)
