"""Late interaction (ColQwen family): MaxSim scoring, token pooling, MUVERA encodings, a PLAID-style
centroid first stage, a WARP-style token-level first stage (many centroids, residual codes), a page-vector
store beside Chroma and two-stage search.

>>> from umr.late import PageVectorStore, TwoStageSearcher, maxsim   # doctest: +SKIP

Names load on first use, so the page-vector store opens without importing torch (until pooling).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from umr._lazy import lazy_exports

_LAZY = {
    "CentroidIndex": "umr.late.centroid",
    "ExactIndex": "umr.late.search",
    "FirstStage": "umr.late.search",
    "TwoStageSearcher": "umr.late.search",
    "FDEConfig": "umr.late.fde",
    "FDEEncoder": "umr.late.fde",
    "MeanTokenEncoder": "umr.late.fde",
    "maxsim": "umr.late.scoring",
    "maxsim_gathered": "umr.late.scoring",
    "token_max": "umr.late.scoring",
    "PageStoreConfig": "umr.late.page_store",
    "PageStoreError": "umr.late.page_store",
    "PageVectorStore": "umr.late.page_store",
    "n_clusters": "umr.late.token_pooling",
    "LateInteractionModel": "umr.late.model",
    "LateInteractionReranker": "umr.late.rerank",
    "MultiVectors": "umr.late.result",
    "LateCollection": "umr.late.collection",
    "pool_tokens": "umr.late.token_pooling",
    "WarpIndex": "umr.late.warp",
}

__all__ = [
    "CentroidIndex",
    "ExactIndex",
    "FDEConfig",
    "FDEEncoder",
    "FirstStage",
    "LateCollection",
    "LateInteractionModel",
    "LateInteractionReranker",
    "MeanTokenEncoder",
    "MultiVectors",
    "PageStoreConfig",
    "PageStoreError",
    "PageVectorStore",
    "TwoStageSearcher",
    "WarpIndex",
    "maxsim",
    "maxsim_gathered",
    "n_clusters",
    "pool_tokens",
    "token_max",
]

if TYPE_CHECKING:  # pragma: no cover
    from umr.late.centroid import CentroidIndex
    from umr.late.collection import LateCollection
    from umr.late.fde import FDEConfig, FDEEncoder, MeanTokenEncoder
    from umr.late.model import LateInteractionModel
    from umr.late.page_store import PageStoreConfig, PageStoreError, PageVectorStore
    from umr.late.rerank import LateInteractionReranker
    from umr.late.result import MultiVectors
    from umr.late.scoring import maxsim, maxsim_gathered, token_max
    from umr.late.search import ExactIndex, FirstStage, TwoStageSearcher
    from umr.late.token_pooling import n_clusters, pool_tokens
    from umr.late.warp import WarpIndex


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, __all__, globals())
