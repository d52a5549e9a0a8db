"""The models behind the queue: pooled embedding and reranking calls, and an embedder facade for the store."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Hashable, Iterable, Sequence
from concurrent.futures import Future
from typing import Any

import numpy as np

from umr.inputs import InputLike, MultimodalInput, coerce_inputs, is_single_input

from .batcher import Batcher

logger = logging.getLogger(__name__)

#: the batching key side of requests tokenised by ``EmbedService.validate`` (their prompts are built)
PREPARED = "prepared"


class EmbedService:
    """Embeds requests through a :class:`Batcher`: requests with the same side and instruction share calls."""

    def __init__(
        self, embedder: Any, *, batching: bool = True, max_items: int = 256, max_tokens: int | None = None,
        observe: Any | None = None,
    ) -> None:
        self.embedder = embedder
        self._prepares = callable(getattr(embedder, "prepare_inputs", None)) and callable(
            getattr(embedder, "embed_prepared", None))
        self.batcher = Batcher("embed", self._run, enabled=batching, max_items=max_items, max_tokens=max_tokens,
                               observe=observe)

    def _run(self, key: Hashable, payloads: Sequence[list[Any]]) -> list[np.ndarray]:
        side, instruction = key  # type: ignore[misc]
        pooled = [item for items in payloads for item in items]
        if side == PREPARED:  # tokenised by validate(): the prompt is in the tokens already
            vectors = self.embedder.embed_prepared(pooled)
        elif instruction is None:
            vectors = self.embedder.embed(pooled, side=side)
        else:
            vectors = self.embedder.embed(pooled, side=side, instruction=instruction)
        vectors = np.asarray(vectors, dtype=np.float32).reshape(len(pooled), -1)
        out, start = [], 0
        for items in payloads:
            out.append(vectors[start : start + len(items)])
            start += len(items)
        return out

    def validate(self, items: list[MultimodalInput], side: str, instruction: str | None) -> tuple[list[Any] | None, int]:
        """Tokenise the items as ``embed`` will (errors surface here, for this request only).

        Returns the prepared items (what :meth:`submit_prepared` takes: nothing is tokenised twice) and
        their tokens. Recipes that run a checkpoint's own ``encode()`` have no ``prepare_inputs``:
        ``(None, 0)``, and the raw items go through :meth:`submit`.
        """
        if not self._prepares:
            return None, 0
        try:
            prepared = self.embedder.prepare_inputs(items, side=side, instruction=instruction)
        except NotImplementedError:
            self._prepares = False
            return None, 0
        return prepared, int(sum(p.num_tokens for p in prepared))

    def submit(self, items: list[MultimodalInput], side: str, instruction: str | None) -> Future:
        return self.batcher.submit((side, instruction), items, size=len(items))

    def submit_prepared(self, prepared: list[Any]) -> Future:
        """Queue items from :meth:`validate`; they pool with every other prepared request."""
        tokens = sum(int(p.num_tokens) for p in prepared)
        return self.batcher.submit((PREPARED, None), prepared, size=len(prepared), tokens=tokens)

    def embed_sync(self, items: list[MultimodalInput], side: str, instruction: str | None) -> np.ndarray:
        return self.submit(items, side, instruction).result()

    def close(self) -> None:
        self.batcher.close()


class RerankService:
    """Scores (query, candidates) requests through a :class:`Batcher`.

    The public ``Reranker.score`` takes one query per call, so requests are pooled when they share the
    query text and instruction (a text-only query); other requests take their turn on the same worker.
    """

    def __init__(
        self, reranker: Any, *, batching: bool = True, max_items: int = 256, observe: Any | None = None
    ) -> None:
        self.reranker = reranker
        self.batcher = Batcher("rerank", self._run, enabled=batching, max_items=max_items, observe=observe)
        self._unique = itertools.count()

    def _run(self, key: Hashable, payloads: Sequence[tuple[MultimodalInput, list[MultimodalInput]]]) -> list[list[float]]:
        instruction = key[-1]  # type: ignore[index]
        query = payloads[0][0]
        pooled = [c for _, cands in payloads for c in cands]
        if instruction is None:
            scores = self.reranker.score(query, pooled)
        else:
            scores = self.reranker.score(query, pooled, instruction=instruction)
        out, start = [], 0
        for _, cands in payloads:
            out.append([float(s) for s in scores[start : start + len(cands)]])
            start += len(cands)
        return out

    def submit(self, query: MultimodalInput, candidates: list[MultimodalInput], instruction: str | None) -> Future:
        if query.image is None and query.instruction is None:
            key: Hashable = ("text", query.text, instruction)
        else:
            key = ("own", next(self._unique), instruction)
        return self.batcher.submit(key, (query, candidates), size=len(candidates))

    def score_sync(self, query: MultimodalInput, candidates: list[MultimodalInput], instruction: str | None) -> list[float]:
        if not candidates:
            return []
        return self.submit(query, candidates, instruction).result()

    def close(self) -> None:
        self.batcher.close()


class QueuedEmbedder:
    """The embedder as the store sees it: same attributes, but every embedding goes through the queue,
    so searches and indexing jobs share forward passes with the API's requests."""

    def __init__(self, embedder: Any, service: EmbedService) -> None:
        self._inner = embedder
        self._service = service

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    # the EmbedderLike members, spelled out (umr.protocols checks them statically, never via __getattr__)
    @property
    def model_id(self) -> str:
        return str(self._inner.model_id)

    @property
    def dim(self) -> int:
        return int(self._inner.dim)

    @property
    def fingerprint(self) -> str:
        return str(self._inner.fingerprint)

    @property
    def max_pixels(self) -> int:
        return int(self._inner.max_pixels)

    def __repr__(self) -> str:
        return f"QueuedEmbedder({self._inner!r})"

    def embed_queries(self, inputs: InputLike | Iterable[InputLike], instruction: str | None = None, **_: Any) -> Any:
        return self.embed(inputs, side="query", instruction=instruction)

    def embed_documents(self, inputs: InputLike | Iterable[InputLike], **_: Any) -> Any:
        return self.embed(inputs, side="document")

    def embed(
        self, inputs: InputLike | Iterable[InputLike], *, side: str = "document", instruction: str | None = None,
        **_: Any,
    ) -> Any:
        single = is_single_input(inputs)
        items = coerce_inputs(inputs)
        if not items:
            return np.zeros((0, int(self._inner.dim)), dtype=np.float32)
        vectors = self._service.embed_sync(items, side, instruction)
        return vectors[0] if single else vectors
