"""A deterministic, model-free embedder for tests, demos and store benchmarks.

``HashEmbedder`` maps each input to a unit vector seeded by a hash of its content: equal inputs
get equal vectors (score 1.0), different inputs get nearly orthogonal ones.  It has the attributes
:class:`umr.store.ChromaStore` reads from a real :class:`umr.Embedder` (``model_id``, ``dim``,
``max_pixels``, ``recipe.max_pixels``, ``fingerprint``) and no torch dependency.  It knows nothing
about meaning: use it to test plumbing, never retrieval quality.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class _Recipe:
    name: str
    max_pixels: int


class HashEmbedder:
    def __init__(
        self, dim: int = 32, max_pixels: int = 256 * 28 * 28, model_id: str = "umr/hash-embedder"
    ) -> None:
        self.dim = dim
        self.model_id = model_id
        self.max_pixels = max_pixels
        self.recipe = _Recipe("hash", max_pixels)
        self.calls = 0
        self.items = 0

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(f"{self.model_id}|{self.dim}|{self.max_pixels}".encode()).hexdigest()[:16]

    def _digest(self, item: Any) -> bytes:
        h = hashlib.sha256()
        if isinstance(item, str):
            h.update(b"T" + item.encode("utf-8", "surrogateescape"))
        elif isinstance(item, Image.Image):
            h.update(b"I" + item.mode.encode() + repr(item.size).encode() + item.tobytes())
        elif isinstance(item, (bytes, bytearray)):
            h.update(b"B" + bytes(item))
        elif isinstance(item, os.PathLike):
            with Image.open(item) as im:
                return self._digest(im.convert("RGB"))
        elif isinstance(item, Mapping):
            text, image = item.get("text"), item.get("image")
            if text is not None and image is None:
                return self._digest(text)
            if image is not None and text is None:
                return self._digest(image)
            h.update(b"F" + self._digest(text) + self._digest(image))
        else:
            raise TypeError(f"HashEmbedder cannot embed {type(item).__name__}")
        return h.digest()

    def _vector(self, item: Any) -> np.ndarray:
        seed = int.from_bytes(self._digest(item)[:8], "little")
        v = np.random.default_rng(seed).standard_normal(self.dim).astype(np.float32)
        return v / np.linalg.norm(v)

    def embed_documents(self, inputs: Iterable[Any], **_: Any) -> np.ndarray:
        items = list(inputs)
        self.calls += 1
        self.items += len(items)
        if not items:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([self._vector(x) for x in items])

    def embed_queries(self, inputs: Iterable[Any], instruction: str | None = None, **_: Any) -> np.ndarray:
        return self.embed_documents(inputs)
