"""UMR: universal multimodal retrieval with MLLM embedders and rerankers.

>>> import umr
>>> emb = umr.Embedder.from_pretrained("Alibaba-NLP/gme-Qwen2-VL-2B-Instruct")  # doctest: +SKIP

Heavy modules (torch, transformers) load on first use of ``Embedder`` / ``Reranker``, so light modules
such as ``umr.documents`` import fast (worker processes rely on that).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from umr._lazy import lazy_exports

__version__ = "0.1.0"

_LAZY = {
    "Embedder": "umr.embedder",
    "Reranker": "umr.reranker",
    "fuse": "umr.reranker",
    "MultimodalInput": "umr.inputs",
    "RemoteEmbedder": "umr.remote",
    "RemoteReranker": "umr.remote",
    "list_recipes": "umr.recipes",
    "get_recipe": "umr.recipes",
    "UMRError": "umr.errors",
    "ModelNotFoundError": "umr.errors",
    "UnknownRecipeError": "umr.errors",
    "InputError": "umr.errors",
}

__all__ = [
    "Embedder",
    "InputError",
    "ModelNotFoundError",
    "MultimodalInput",
    "RemoteEmbedder",
    "RemoteReranker",
    "Reranker",
    "UMRError",
    "UnknownRecipeError",
    "__version__",
    "fuse",
    "get_recipe",
    "list_recipes",
]

if TYPE_CHECKING:  # pragma: no cover
    from umr.embedder import Embedder
    from umr.errors import InputError, ModelNotFoundError, UMRError, UnknownRecipeError
    from umr.inputs import MultimodalInput
    from umr.recipes import get_recipe, list_recipes
    from umr.remote import RemoteEmbedder, RemoteReranker
    from umr.reranker import Reranker, fuse


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, __all__, globals())
