"""Late-interaction models as rerankers: score (query, candidate) pairs by MaxSim.

``umr.Reranker.from_pretrained("vidore/colqwen2.5-v0.2")`` returns a :class:`LateInteractionReranker`:
the query and every candidate are embedded once (candidates are pages: images, or text passages) and each
candidate's score is its MaxSim with the query (a candidate with an image, such as a page hit that also
carries its extracted text, is scored from its image: ColQwen models read pages as images; text-only
candidates are scored from their text), divided by the number of query tokens and mapped to
[0, 1] as ``(1 + mean best cosine) / 2`` (so scores keep the [0, 1] contract of the other rerankers and
their order is exactly MaxSim's). Any first stage can feed it (Chroma, BM25, a single-vector embedder).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

import torch

from umr.inputs import InputLike, MultimodalInput
from umr.late.model import LateInteractionModel
from umr.late.scoring import maxsim
from umr.ranking import RankFromScores


class LateInteractionReranker(RankFromScores):
    """Rerank candidates of any first stage by MaxSim with a ColQwen-family model."""

    def __init__(self, model: LateInteractionModel) -> None:
        self.model = model
        self.model_id = model.model_id
        self.recipe = model.recipe
        self.device = model.device
        self.dtype = model.dtype

    @classmethod
    def from_pretrained(cls, model_id_or_path: str | os.PathLike, **kwargs: Any) -> LateInteractionReranker:
        """Load the model (see :meth:`LateInteractionModel.from_pretrained` for the keyword arguments)."""
        for unused in ("instruction", "trust_remote_code", "show_progress"):
            value = kwargs.pop(unused, None)
            if unused == "instruction" and value:
                raise ValueError(f"{model_id_or_path!r} is a late-interaction reranker and takes no instruction")
        return cls(LateInteractionModel.from_pretrained(model_id_or_path, **kwargs))

    @property
    def max_pixels(self) -> int:
        return self.model.max_pixels

    @property
    def min_pixels(self) -> int:
        return self.model.min_pixels

    def __repr__(self) -> str:
        return f"LateInteractionReranker(model_id={self.model_id!r}, recipe={self.recipe.name!r})"

    def score(
        self,
        query: InputLike,
        candidates: Iterable[InputLike],
        instruction: str | None = None,
        *,
        batch_size: int | None = None,
        **_: Any,
    ) -> list[float]:
        """Relevance of each candidate to ``query`` in [0, 1] (monotone in MaxSim), in candidate order."""
        if instruction:
            raise ValueError(f"{self.recipe.family} takes no instruction; got {instruction!r}")
        q = MultimodalInput.coerce(query)
        items = [MultimodalInput.coerce(c) for c in candidates]
        if not items:
            return []
        # a page is read from its image (its extracted text is for display); see the module docstring
        items = [MultimodalInput(image=c.image) if c.image is not None and c.text else c for c in items]
        qv = self.model.embed_queries([q], batch_size=batch_size)
        dv = self.model.embed_documents(items, batch_size=batch_size)
        with torch.inference_mode():
            raw = maxsim(list(qv), list(dv), device=self.device)[0]
        n_q = max(1, qv.n_tokens[0])
        return [float((1.0 + s / n_q) / 2.0) for s in raw.tolist()]

