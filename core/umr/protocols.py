"""What the store, the CLI, the HTTP service and both framework adapters accept as "an embedder" and
"a reranker", as typed protocols, with one checker each.

``umr.Embedder``, ``umr.remote.RemoteEmbedder`` and the test ``HashEmbedder`` are ``EmbedderLike``;
``umr.Reranker`` and ``umr.remote.RemoteReranker`` are ``RerankerLike``. Any object with the same members
works (duck typing); ``check_embedder`` / ``check_reranker`` turn a wrong object into one ``TypeError``
that names what is missing, at the place it was passed.

The checkers look members up with ``inspect.getattr_static``: a property is never evaluated (a remote
embedder's ``dim`` asks its server), so checking is free and has no side effects. Python 3.11's own
``isinstance(obj, EmbedderLike)`` would evaluate properties; use the checkers.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from typing import Any, Protocol, runtime_checkable

import numpy as np

__all__ = ["EMBEDDER_MEMBERS", "RERANKER_MEMBERS", "EmbedderLike", "RerankerLike", "check_embedder", "check_reranker"]


@runtime_checkable
class EmbedderLike(Protocol):
    """Inputs (text, images, ``{"text", "image"}`` dicts, pages) to L2-normalised float32 vectors."""

    #: the model the vectors come from (recorded in a store's metadata)
    model_id: str

    @property
    def dim(self) -> int:
        """Width of the vectors."""
        ...

    @property
    def fingerprint(self) -> str:
        """Stable id of everything that decides a vector (a store refuses vectors of another one)."""
        ...

    @property
    def max_pixels(self) -> int:
        """Pixel budget of one image; pages are rendered at most this large."""
        ...

    def embed_queries(self, inputs: Any, instruction: str | None = None, **kwargs: Any) -> np.ndarray:
        """``(n, dim)`` query vectors (``(dim,)`` for one input)."""
        ...

    def embed_documents(self, inputs: Any, **kwargs: Any) -> np.ndarray:
        """``(n, dim)`` document vectors (``(dim,)`` for one input)."""
        ...

    def embed(self, inputs: Any, **kwargs: Any) -> Any:
        """Either side (``side="query" | "document"``), one input or many."""
        ...


@runtime_checkable
class RerankerLike(Protocol):
    """Pointwise relevance of candidates to a query."""

    def score(self, query: Any, candidates: Iterable[Any], instruction: str | None = None, **kwargs: Any) -> list[float]:
        """One score per candidate, in the candidates' order."""
        ...

    def rerank(
        self,
        query: Any,
        candidates: Iterable[Any],
        top_n: int | None = None,
        instruction: str | None = None,
        **kwargs: Any,
    ) -> list[tuple[int, float]]:
        """``(index, score)`` best first; ``top_n`` keeps the best."""
        ...


#: (member, is_method) of each protocol, in the order errors list them
EMBEDDER_MEMBERS: tuple[tuple[str, bool], ...] = (
    ("embed_queries", True),
    ("embed_documents", True),
    ("embed", True),
    ("model_id", False),
    ("dim", False),
    ("fingerprint", False),
    ("max_pixels", False),
)
RERANKER_MEMBERS: tuple[tuple[str, bool], ...] = (("score", True), ("rerank", True))

_SENTINEL = object()


def _missing(obj: Any, members: tuple[tuple[str, bool], ...]) -> list[str]:
    out: list[str] = []
    for name, is_method in members:
        value = inspect.getattr_static(obj, name, _SENTINEL)
        if value is _SENTINEL:
            out.append(name + "()" if is_method else name)
        elif is_method and not (callable(value) or isinstance(value, (staticmethod, classmethod))):
            out.append(f"{name}() (not callable)")
    return out


def _check(obj: Any, where: str, members: tuple[tuple[str, bool], ...], what: str, hint: str) -> Any:
    if obj is None:
        raise TypeError(f"{where}: expected {what}, got None; {hint}")
    missing = _missing(obj, members)
    if missing:
        raise TypeError(f"{where}: {type(obj).__name__} is not {what}: it lacks {', '.join(missing)}; {hint}")
    return obj


def check_embedder(obj: Any, where: str = "embedder") -> EmbedderLike:
    """``obj`` when it has every ``EmbedderLike`` member, else a ``TypeError`` naming ``where`` and what
    is missing. Properties are not evaluated."""
    return _check(  # type: ignore[no-any-return]
        obj, where, EMBEDDER_MEMBERS, "an embedder (umr.protocols.EmbedderLike)",
        "pass a umr.Embedder (umr.Embedder.from_pretrained(...)) or a umr.remote.RemoteEmbedder",
    )


def check_reranker(obj: Any, where: str = "reranker") -> RerankerLike:
    """``obj`` when it has ``score`` and ``rerank``, else a ``TypeError`` naming ``where`` and what is missing."""
    return _check(  # type: ignore[no-any-return]
        obj, where, RERANKER_MEMBERS, "a reranker (umr.protocols.RerankerLike)",
        "pass a umr.Reranker (umr.Reranker.from_pretrained(...)) or a umr.remote.RemoteReranker",
    )
