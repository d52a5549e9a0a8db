"""Reranker distillation (U-MARVEL): teach the embedder the reranker's score distribution over top-K.

The reranker is run once per (query, candidate) and its scores are cached in a JSON file keyed by
content (reranker id, instruction, query content, candidate content), so a rerun or a resumed run
reuses them instead of running the slow cross-encoder again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from umr.inputs import InputLike, MultimodalInput
from umr.train.data import content_key

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistillSettings:
    """Distillation from a reranker over each training query's top-K candidates.

    ``reranker`` is an ``umr.Reranker`` (or anything with ``score(query, candidates) -> list[float]``
    and a ``model_id``); ``corpus`` the pool the top-K come from (default: every document of the
    training pairs); ``weight`` scales the KL term added to the InfoNCE loss; ``teacher_temperature``
    sharpens or flattens the reranker's distribution. ``cache_path`` defaults to
    ``<output_dir>/reranker_scores.json``.
    """

    reranker: Any
    top_k: int = 8
    weight: float = 1.0
    teacher_temperature: float = 0.1
    corpus: Sequence[InputLike] | None = None
    cache_path: str | os.PathLike | None = None

    def __post_init__(self) -> None:
        if self.top_k < 2:
            raise ValueError(f"distillation needs top_k >= 2 candidates per query, got {self.top_k}")
        if self.teacher_temperature <= 0:
            raise ValueError(f"teacher_temperature must be positive, got {self.teacher_temperature}")


class ScoreCache:
    """A JSON map ``key -> score`` on disk; ``save`` writes atomically."""

    def __init__(self, path: str | os.PathLike | None) -> None:
        self.path = Path(path) if path is not None else None
        self.scores: dict[str, float] = {}
        self.hits = 0
        self.misses = 0
        if self.path is not None and self.path.is_file():
            try:
                data = json.loads(self.path.read_text())
                self.scores = {str(k): float(v) for k, v in data.get("scores", {}).items()}
            except (ValueError, OSError, AttributeError) as exc:
                logger.warning("ignoring unreadable reranker score cache %s (%s)", self.path, exc)

    def save(self) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(self.path.suffix + ".tmp")
        tmp.write_text(json.dumps({"version": 1, "scores": self.scores}))
        os.replace(tmp, self.path)


def pair_key(reranker_id: str, instruction: str | None, query: MultimodalInput, candidate: MultimodalInput) -> str:
    h = hashlib.sha256()
    for part in (reranker_id, instruction or "", content_key(query), content_key(candidate)):
        h.update(part.encode("utf-8", "surrogatepass"))
        h.update(b"\x00")
    return h.hexdigest()[:32]


def teacher_scores(
    reranker: Any,
    queries: Sequence[InputLike],
    candidates: Sequence[Sequence[InputLike]],
    cache: ScoreCache,
    *,
    instruction: str | None = None,
) -> np.ndarray:
    """Reranker scores (Q, K) of each query's candidates, computing only what the cache lacks."""
    rid = str(getattr(reranker, "model_id", type(reranker).__name__))
    rid += ":" + str(getattr(reranker, "fingerprint", ""))
    out = np.zeros((len(queries), max((len(c) for c in candidates), default=0)), dtype=np.float32)
    for qi, (q, cands) in enumerate(zip(queries, candidates)):
        qm = MultimodalInput.coerce(q)
        cms = [MultimodalInput.coerce(c) for c in cands]
        keys = [pair_key(rid, instruction, qm, c) for c in cms]
        todo = [i for i, k in enumerate(keys) if k not in cache.scores]
        cache.hits += len(keys) - len(todo)
        cache.misses += len(todo)
        if todo:
            kwargs = {"instruction": instruction} if instruction is not None else {}
            got = reranker.score(qm, [cms[i] for i in todo], **kwargs)
            for i, s in zip(todo, got):
                cache.scores[keys[i]] = float(s)
        out[qi, : len(keys)] = [cache.scores[k] for k in keys]
    cache.save()
    logger.info("reranker scores: %d from cache, %d computed", cache.hits, cache.misses)
    return out


def top_candidates(embedder: Any, queries: Sequence[InputLike], corpus: Sequence[InputLike], k: int) -> list[list[int]]:
    """The embedder's top-``k`` corpus indices per query (the candidates to distill over)."""
    d = np.asarray(embedder.embed_documents(list(corpus)), dtype=np.float32)
    q = np.asarray(embedder.embed_queries(list(queries)), dtype=np.float32)
    order = np.argsort(-(q @ d.T), axis=1, kind="stable")[:, : min(k, len(corpus))]
    return [[int(j) for j in row] for row in order]
