"""Torch-free ranking and score fusion, shared by the rerankers, both adapters, the CLI and evaluation.

Everything here works on plain Python numbers (or 1-D numpy arrays), so light callers (the adapters'
type conversion, ``umr search``, ``umr eval``, the HTTP service) never import torch for it.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

import numpy as np

#: U-MARVEL's weight of the reranker's score when fused with the first-stage similarity
DEFAULT_FUSE_WEIGHT = 0.1
#: the usual constant of reciprocal rank fusion (Cormack et al. 2009)
RRF_K = 60

K = TypeVar("K", bound=Hashable)


def finite_number(name: str, value: Any) -> float:
    """``value`` as a finite float; ``TypeError`` for non-numbers (bools too), ``ValueError`` for NaN/inf."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    out = float(value)
    if not math.isfinite(out):
        raise ValueError(f"{name} must be finite, got {out}")
    return out


def finite_scores(name: str, values: Iterable[Any]) -> list[float]:
    """A one-dimensional sequence of finite numbers as floats, each checked by ``finite_number``."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        raise TypeError(f"{name} must be a sequence of numbers, got {type(values).__name__}")
    if isinstance(values, np.ndarray):
        if values.ndim != 1:
            raise ValueError(f"{name} must be one-dimensional, got shape {values.shape}")
        values = values.tolist()
    return [finite_number(f"{name}[{i}]", v) for i, v in enumerate(values)]


def check_top_n(top_n: Any) -> int | None:
    """``None`` or a positive int (bools are refused); anything else raises ``ValueError``."""
    if top_n is None:
        return None
    if isinstance(top_n, (bool, np.bool_)) or not isinstance(top_n, numbers.Integral):
        raise ValueError(f"top_n must be a positive int or None, got {top_n!r} ({type(top_n).__name__})")
    if top_n <= 0:
        raise ValueError(f"top_n must be a positive int or None, got {top_n}")
    return int(top_n)


def rank_scores(scores: Sequence[float], top_n: int | None = None) -> list[tuple[int, float]]:
    """``(index, score)`` best first; equal scores keep their order (``sorted`` is stable); ``top_n`` cuts."""
    n = check_top_n(top_n)
    ranked = [(i, scores[i]) for i in sorted(range(len(scores)), key=lambda i: -scores[i])]
    return ranked if n is None else ranked[:n]


def fuse(
    first_stage_scores: Iterable[float],
    rerank_scores: Iterable[float],
    weight: float = DEFAULT_FUSE_WEIGHT,
) -> list[float]:
    """Fuse first-stage similarities with rerank scores: ``first + weight * rerank``, element-wise.

    U-MARVEL reranks the top 50 retrieved candidates and ranks them by the retriever's cosine similarity
    plus 0.1 times the reranker's P(yes); the first stage keeps its say and the reranker breaks its near
    ties. Pass both lists in the same candidate order::

        hits = store.search(query, k=50)
        rr = reranker.score(query, [h.image for h in hits])
        fused = umr.fuse([h.score for h in hits], rr)          # weight=0.1
        ranked = umr.ranking.rank_scores(fused)

    Raises ``ValueError`` when the lengths differ or a value (or ``weight``) is NaN or infinite, and
    ``TypeError`` for values that are not real numbers.
    """
    first = finite_scores("first_stage_scores", first_stage_scores)
    second = finite_scores("rerank_scores", rerank_scores)
    if len(first) != len(second):
        raise ValueError(
            f"first_stage_scores has {len(first)} values but rerank_scores has {len(second)}; "
            "pass one score of each kind per candidate, in the same order"
        )
    w = finite_number("weight", weight)
    return [a + w * b for a, b in zip(first, second)]


def rerank_order(
    first_stage_scores: Sequence[float] | None,
    rerank_scores: Sequence[float],
    *,
    fuse_weight: float | None = None,
    top_n: int | None = None,
) -> list[tuple[int, float]]:
    """The final ``(index, score)`` order of reranked candidates, best first.

    With ``fuse_weight`` the score is ``first + fuse_weight * rerank`` (``first_stage_scores`` required),
    otherwise the rerank score alone. One helper for every caller that reranks a first-stage list, so
    the CLI, the adapters and evaluation order candidates the same way.
    """
    scores = finite_scores("rerank_scores", rerank_scores)
    if fuse_weight is not None:
        if first_stage_scores is None:
            raise ValueError("fuse_weight needs the first-stage scores of the candidates")
        scores = fuse(first_stage_scores, scores, fuse_weight)
    return rank_scores(scores, top_n)


def reciprocal_rank_fusion(
    rankings: Sequence[Sequence[K]],
    *,
    k: int = RRF_K,
    weights: Sequence[float] | None = None,
) -> list[tuple[K, float]]:
    """Fuse ranked id lists: ``score(d) = sum_i w_i / (k + rank_i(d))`` with ranks from 1.

    Ids missing from a list get nothing from it. Ties keep the order of first appearance (list by list),
    so the result is deterministic.
    """
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 0:
        raise ValueError(f"k must be a non-negative int, got {k!r}")
    w = [1.0] * len(rankings) if weights is None else finite_scores("weights", weights)
    if len(w) != len(rankings):
        raise ValueError(f"{len(rankings)} rankings but {len(w)} weights; pass one weight per ranking")
    scores: dict[K, float] = {}
    for ranking, weight in zip(rankings, w):
        seen: set[K] = set()
        for rank, key in enumerate(ranking, start=1):
            if key in seen:  # a duplicate id counts once, at its best rank
                continue
            seen.add(key)
            scores[key] = scores.get(key, 0.0) + weight / (k + rank)
    items = list(scores.items())
    order = sorted(range(len(items)), key=lambda i: -items[i][1])
    return [items[i] for i in order]


def min_max(scores: Mapping[K, float], lower_bound: float | None = None) -> dict[K, float]:
    """Scores scaled to [0, 1] (all equal scores map to 1.0), for weighted score fusion.

    ``lower_bound``: scale from this floor instead of the observed minimum ("theoretical min-max",
    e.g. -1 for cosine similarity, 0 for BM25), so a list of near-equal scores stays near-equal
    instead of being stretched over [0, 1]; values below the floor map to 0.
    """
    if not scores:
        return {}
    hi = max(scores.values())
    lo = min(scores.values()) if lower_bound is None else finite_number("lower_bound", lower_bound)
    if hi - lo <= 0:
        return dict.fromkeys(scores, 1.0)
    return {key: max(0.0, (v - lo) / (hi - lo)) for key, v in scores.items()}


def weighted_score_fusion(
    score_maps: Sequence[Mapping[K, float]],
    weights: Sequence[float],
    *,
    lower_bounds: Sequence[float | None] | None = None,
) -> list[tuple[K, float]]:
    """``sum_i w_i * minmax_i(score)`` over the ids of all maps (a missing id gets 0 from that map).

    ``lower_bounds``: one floor per map for :func:`min_max` (``None``: the observed minimum).
    Ties keep the order of first appearance (map by map).
    """
    w = finite_scores("weights", weights)
    if len(w) != len(score_maps):
        raise ValueError(f"{len(score_maps)} score lists but {len(w)} weights; pass one weight per list")
    bounds = [None] * len(score_maps) if lower_bounds is None else list(lower_bounds)
    if len(bounds) != len(score_maps):
        raise ValueError(f"{len(score_maps)} score lists but {len(bounds)} lower bounds; pass one per list")
    total: dict[K, float] = {}
    for mapping, weight, bound in zip(score_maps, w, bounds):
        for key, v in min_max(mapping, bound).items():
            total[key] = total.get(key, 0.0) + weight * v
        for key in mapping:
            total.setdefault(key, 0.0)
    items = list(total.items())
    order = sorted(range(len(items)), key=lambda i: -items[i][1])
    return [items[i] for i in order]


#: the fusion methods of :func:`hybrid_fusion`
FUSION_METHODS = ("rrf", "weighted")
#: the floors of the two score scales in weighted fusion: cosine similarity, BM25
DENSE_FLOOR, LEXICAL_FLOOR = -1.0, 0.0


def hybrid_fusion(
    dense: Sequence[tuple[K, float]],
    lexical: Sequence[tuple[K, float]],
    *,
    method: str = "rrf",
    weights: Sequence[float] = (1.0, 1.0),
    k: int = RRF_K,
) -> list[tuple[K, float]]:
    """Fuse a dense and a lexical result list (``(id, score)`` best first) into one, best first.

    ``method="rrf"``: reciprocal rank fusion, ``sum w / (k + rank)`` (scores ignored, only ranks).
    ``method="weighted"``: ``w_dense * cos' + w_lexical * bm25'``, each scaled to [0, 1] from its
    theoretical floor (cosine -1, BM25 0) to its list's best, so near-equal scores stay near-equal.
    ``weights`` are ``(dense, lexical)``.  Ties go to the lexical list's order: when a query names a
    code, the page that carries it is the lexical side's first hit.
    """
    if method not in FUSION_METHODS:
        raise ValueError(f"fusion method {method!r} is unknown; choose one of {', '.join(FUSION_METHODS)}")
    w = finite_scores("weights", weights)
    if len(w) != 2 or any(x < 0 for x in w) or not any(w):
        raise ValueError(
            f"weights must be two non-negative numbers (dense, lexical), not both 0; got {weights!r}"
        )
    if method == "rrf":
        return reciprocal_rank_fusion(
            [[key for key, _ in lexical], [key for key, _ in dense]], k=k, weights=[w[1], w[0]]
        )
    lex_map: dict[K, float] = {}
    dense_map: dict[K, float] = {}
    for target, ranked in ((lex_map, lexical), (dense_map, dense)):
        for key, score in ranked:
            target.setdefault(key, finite_number("score", score))  # a repeated id counts at its best rank
    return weighted_score_fusion(
        [lex_map, dense_map], [w[1], w[0]], lower_bounds=[LEXICAL_FLOOR, DENSE_FLOOR]
    )


class RankFromScores:
    """Mixin of every reranker: ``rerank`` is ``score`` ordered best first (one rule for all of them).

    The class defines ``score(query, candidates, instruction=None, **kwargs) -> list[float]``.
    """

    def score(self, query: Any, candidates: Any, instruction: str | None = None, **kwargs: Any) -> list[float]:
        raise NotImplementedError  # pragma: no cover - every reranker defines it

    def rerank(
        self,
        query: Any,
        candidates: Any,
        top_n: int | None = None,
        instruction: str | None = None,
        **kwargs: Any,
    ) -> list[tuple[int, float]]:
        """``(index, score)`` of the candidates, best first; equal scores keep the candidates' order.

        ``top_n`` keeps the best ``top_n`` (a positive int; ``None`` keeps all). Other keyword arguments
        go to ``score``.
        """
        n = check_top_n(top_n)
        return rank_scores(self.score(query, candidates, instruction, **kwargs), n)
