"""Retrieval quality metrics: Recall@k, hit rate, nDCG@k, MRR (pure numpy, no torch).

Every metric takes rankings and relevance judgements in one of two shapes:

* ``ranked``: per query, the retrieved document ids best first (any hashable ids: ints, strings);
  ``rank_scores(scores)`` turns a dense (n_queries, n_docs) score matrix into such rankings (column
  indices as ids).
* ``relevant``: per query, the relevant documents as a set / list of ids (grade 1 each) or a mapping
  ``{doc_id: grade}`` (graded relevance for nDCG; grades <= 0 count as not relevant).

Queries without any relevant document are left out of the mean (as BEIR / pytrec_eval do); if no
query has one, a ``ValueError`` says so. Each metric returns the mean over queries, or the per-query
values (``np.ndarray``) with ``per_query=True``.

>>> ranked = [[3, 1, 2], [0, 2, 1]]
>>> relevant = [{1}, {0}]
>>> recall_at_k(ranked, relevant, 1), recall_at_k(ranked, relevant, 2)
(0.5, 1.0)
>>> round(mrr(ranked, relevant), 3)
0.75
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import Any, Union

import numpy as np

Relevance = Union[Mapping[Hashable, float], Iterable[Hashable]]  # noqa: UP007


def rank_scores(scores: Any, k: int | None = None) -> np.ndarray:
    """Column indices of ``scores`` (n_queries, n_docs) sorted by decreasing score, ties by index.

    Returns an int array (n_queries, min(k, n_docs)); ``k=None`` ranks every column.
    """
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 2:
        raise ValueError(f"scores must be a 2-D (n_queries, n_docs) array, got shape {s.shape}")
    if np.isnan(s).any():
        raise ValueError("scores contain NaN; cannot rank them")
    n_docs = s.shape[1]
    kk = n_docs if k is None else max(0, min(int(k), n_docs))
    # stable sort of the negated scores keeps the lower index first among ties
    order = np.argsort(-s, axis=1, kind="stable")
    return order[:, :kk]


def _grades(rel: Relevance) -> dict[Hashable, float]:
    if isinstance(rel, Mapping):
        return {d: float(g) for d, g in rel.items() if float(g) > 0}
    if isinstance(rel, (str, bytes)):
        raise TypeError("relevant documents of a query must be a set/list of ids or a {id: grade} mapping")
    return {d: 1.0 for d in rel}


def _prepare(ranked: Sequence[Sequence[Hashable]] | np.ndarray, relevant: Sequence[Relevance], k: int | None):
    if k is not None and (not isinstance(k, (int, np.integer)) or k < 1):
        raise ValueError(f"k must be a positive integer, got {k!r}")
    if len(ranked) != len(relevant):
        raise ValueError(f"got rankings for {len(ranked)} queries but relevance for {len(relevant)}")
    rows = []
    for q, (rank_list, rel) in enumerate(zip(ranked, relevant)):
        grades = _grades(rel)
        if not grades:
            continue
        items = [x.item() if isinstance(x, np.generic) else x for x in list(rank_list)]
        if len(set(items)) != len(items):
            raise ValueError(f"query #{q}: the ranking lists a document more than once")
        rows.append((items if k is None else items[:k], grades))
    if not rows:
        raise ValueError("no query has a relevant document; cannot compute retrieval metrics")
    return rows


def _reduce(values: list[float], per_query: bool) -> Any:
    arr = np.asarray(values, dtype=np.float64)
    return arr if per_query else float(arr.mean())


def recall_at_k(
    ranked: Sequence[Sequence[Hashable]] | np.ndarray,
    relevant: Sequence[Relevance],
    k: int,
    *,
    per_query: bool = False,
) -> Any:
    """Fraction of each query's relevant documents found in its top ``k`` (BEIR's Recall@k).

    With one relevant document per query this equals the hit rate.
    """
    vals = [sum(1 for d in top if d in g) / len(g) for top, g in _prepare(ranked, relevant, k)]
    return _reduce(vals, per_query)


def hit_rate_at_k(
    ranked: Sequence[Sequence[Hashable]] | np.ndarray,
    relevant: Sequence[Relevance],
    k: int,
    *,
    per_query: bool = False,
) -> Any:
    """1 when at least one relevant document is in the top ``k`` (M-BEIR's "Recall@k"), else 0."""
    vals = [float(any(d in g for d in top)) for top, g in _prepare(ranked, relevant, k)]
    return _reduce(vals, per_query)


def ndcg_at_k(
    ranked: Sequence[Sequence[Hashable]] | np.ndarray,
    relevant: Sequence[Relevance],
    k: int,
    *,
    per_query: bool = False,
) -> Any:
    """Normalised discounted cumulative gain at ``k``: gain = grade, discount = 1 / log2(rank + 1)."""
    vals = []
    for top, g in _prepare(ranked, relevant, k):
        dcg = sum(g.get(d, 0.0) / math.log2(i + 2) for i, d in enumerate(top))
        ideal = sorted(g.values(), reverse=True)[:k]
        idcg = sum(v / math.log2(i + 2) for i, v in enumerate(ideal))
        vals.append(dcg / idcg)
    return _reduce(vals, per_query)


def mrr(
    ranked: Sequence[Sequence[Hashable]] | np.ndarray,
    relevant: Sequence[Relevance],
    k: int | None = None,
    *,
    per_query: bool = False,
) -> Any:
    """Mean reciprocal rank of the first relevant document (0 if none in the top ``k``; ``None``: all)."""
    vals = []
    for top, g in _prepare(ranked, relevant, k):
        rr = 0.0
        for i, d in enumerate(top):
            if d in g:
                rr = 1.0 / (i + 1)
                break
        vals.append(rr)
    return _reduce(vals, per_query)


def evaluate_rankings(
    ranked: Sequence[Sequence[Hashable]] | np.ndarray,
    relevant: Sequence[Relevance],
    *,
    recall_ks: Sequence[int] = (1, 5, 10),
    ndcg_ks: Sequence[int] = (10,),
    with_mrr: bool = True,
) -> dict[str, float]:
    """A metrics dict such as ``{"recall@1": ..., "recall@5": ..., "ndcg@10": ..., "mrr": ...}``."""
    out: dict[str, float] = {}
    for k in recall_ks:
        out[f"recall@{k}"] = recall_at_k(ranked, relevant, k)
    for k in ndcg_ks:
        out[f"ndcg@{k}"] = ndcg_at_k(ranked, relevant, k)
    if with_mrr:
        out["mrr"] = mrr(ranked, relevant)
    return out


def evaluate_scores(
    scores: Any,
    relevant: Sequence[Relevance],
    *,
    recall_ks: Sequence[int] = (1, 5, 10),
    ndcg_ks: Sequence[int] = (10,),
    with_mrr: bool = True,
) -> dict[str, float]:
    """``evaluate_rankings`` on a dense score matrix; ``relevant`` holds column indices."""
    return evaluate_rankings(
        rank_scores(scores), relevant, recall_ks=recall_ks, ndcg_ks=ndcg_ks, with_mrr=with_mrr
    )
