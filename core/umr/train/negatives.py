"""Hard-negative mining with the current model (top-k minus positives, false-negative margin).

MM-Embed's modality-aware variant: for a query whose positives have one modality (say an image),
negatives come both from that target modality (hard ones: the model's best wrong images) and from
the other modalities (the best-scoring wrong texts), so the model learns to stop preferring a
modality (text, usually) over the relevant item.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from umr.inputs import InputLike, MultimodalInput

logger = logging.getLogger(__name__)


def mine_from_scores(
    scores: np.ndarray,
    positives: Sequence[Iterable[int]],
    *,
    k: int,
    margin: float = 0.05,
    depth: int | None = None,
    modalities: Sequence[str] | None = None,
    wrong_modality: int | None = None,
) -> list[list[int]]:
    """Pick negatives per query row of ``scores`` (Q, N); see ``mine_hard_negatives``."""
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    if scores.ndim != 2 or scores.shape[0] != len(positives):
        raise ValueError(f"scores must be (queries, corpus) with one positives set per query, got {scores.shape}")
    n = scores.shape[1]
    depth = n if depth is None else min(n, depth)
    out: list[list[int]] = []
    for qi, row in enumerate(scores):
        pos = {int(p) for p in positives[qi]}
        bad = [p for p in pos if not 0 <= p < n]
        if bad:
            raise ValueError(f"query #{qi}: positive index {bad[0]} is outside the corpus (0..{n - 1})")
        if not pos:
            raise ValueError(f"query #{qi} has no positive; every query needs at least one relevant item")
        # a candidate scoring within `margin` of the weakest positive (or above it) is likely unlabelled
        # relevant: never use it as a negative
        ceiling = min(float(row[p]) for p in pos) - margin
        order = np.argsort(-row, kind="stable")[:depth]
        candidates = [int(j) for j in order if int(j) not in pos and float(row[j]) < ceiling]
        if modalities is None:
            out.append(candidates[:k])
            continue
        targets = {modalities[p] for p in pos}
        n_wrong = (k // 2) if wrong_modality is None else min(k, wrong_modality)
        wrong = [j for j in candidates if modalities[j] not in targets][:n_wrong]
        same = [j for j in candidates if modalities[j] in targets][: k - len(wrong)]
        if len(same) + len(wrong) < k:  # top up from whatever is left
            rest = [j for j in candidates if j not in same and j not in wrong]
            wrong += rest[: k - len(same) - len(wrong)]
        picked = set(same) | set(wrong)
        out.append([j for j in candidates if j in picked])
    return out


def mine_hard_negatives(
    embedder: Any,
    queries: Sequence[InputLike],
    corpus: Sequence[InputLike],
    positives: Sequence[Iterable[int]],
    k: int = 3,
    margin: float = 0.05,
    *,
    modality_aware: bool = False,
    wrong_modality: int | None = None,
    depth: int | None = 100,
    instruction: str | None = None,
    show_progress: bool | None = None,
) -> list[list[int]]:
    """Mine ``k`` hard negatives per query: corpus indices, best-scoring first.

    ``positives[i]`` are the corpus indices relevant to ``queries[i]``. Candidates are the model's top
    ``depth`` corpus items minus the positives; a candidate whose cosine score is above the weakest
    positive's score minus ``margin`` is skipped as a likely false negative (an unlabelled relevant
    item). With ``modality_aware=True`` (MM-Embed), ``wrong_modality`` of the ``k`` negatives
    (default ``k // 2``) come from modalities other than the positives' and the rest from the target
    modality; when one kind runs short the other fills in.
    """
    if len(queries) != len(positives):
        raise ValueError(f"{len(queries)} queries but {len(positives)} positive sets; give one set per query")
    if not corpus:
        raise ValueError("the corpus is empty: nothing to mine negatives from")
    if not queries:
        return []
    doc_vecs = np.asarray(embedder.embed_documents(list(corpus), show_progress=show_progress), dtype=np.float32)
    q_vecs = np.asarray(
        embedder.embed_queries(list(queries), instruction=instruction, show_progress=show_progress),
        dtype=np.float32,
    )
    scores = q_vecs @ doc_vecs.T
    modalities = [MultimodalInput.coerce(c).modality for c in corpus] if modality_aware else None
    mined = mine_from_scores(
        scores, positives, k=k, margin=margin, depth=depth, modalities=modalities, wrong_modality=wrong_modality
    )
    short = sum(1 for m in mined if len(m) < k)
    if short:
        logger.info("hard negatives: %d of %d queries got fewer than %d (margin %.3f)", short, len(mined), k, margin)
    return mined
