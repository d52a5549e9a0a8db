"""``UMRRetriever``: LlamaIndex retriever over a ``umr.store.ChromaStore`` (pages, images, texts)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.callbacks import CallbackManager
from llama_index.core.schema import (
    BaseNode,
    ImageNode,
    NodeRelationship,
    NodeWithScore,
    QueryBundle,
    RelatedNodeInfo,
    TextNode,
)
from llama_index.embeddings.umr.convert import image_from_location

logger = logging.getLogger(__name__)

PAGE_KINDS = frozenset({"pdf", "image"})
SEARCH_MODES = ("dense", "lexical", "hybrid")
FUSIONS = ("rrf", "weighted")
# Store bookkeeping that is not useful on a node (the image location goes to ImageNode fields).
_DROPPED_KEYS = frozenset({"image_uri", "image_path", "settings", "indexed_at", "max_pixels", "model_id"})
# Kept on the node but hidden from the LLM and from re-embedding.
_TECHNICAL_KEYS = ("sha256", "kind", "width", "height", "page_count")


def hit_to_node(hit: Any) -> BaseNode:
    """One ``umr.store.SearchHit`` as a LlamaIndex node.

    Page and image hits (``kind`` ``"pdf"`` / ``"image"``) become ``ImageNode``s: ``image_path`` is the
    page image the store saved, ``text`` the page's text layer, metadata ``source`` and ``page``. Text hits
    become ``TextNode``s. A page stored without an image (``store_images=False``) becomes a ``TextNode``
    unless its source is itself an image file.
    """
    meta: Mapping[str, Any] = hit.metadata or {}
    kind = str(meta.get("kind", ""))
    metadata = {k: v for k, v in meta.items() if k not in _DROPPED_KEYS and v is not None}
    metadata.setdefault("source", "")
    metadata.setdefault("page", 1)
    technical = [k for k in _TECHNICAL_KEYS if k in metadata]
    common: dict[str, Any] = {
        "id_": hit.id,
        "text": hit.document or "",
        "metadata": metadata,
        "excluded_llm_metadata_keys": technical,
        "excluded_embed_metadata_keys": technical,
    }
    sha = meta.get("sha256")
    if sha:
        common["relationships"] = {NodeRelationship.SOURCE: RelatedNodeInfo(node_id=str(sha))}
    if kind in PAGE_KINDS:
        image_path = str(meta.get("image_path") or "")
        if not image_path and hit.image_uri:
            location = image_from_location(hit.image_uri, f"image of hit {hit.id!r}")
            image_path = str(location) if isinstance(location, Path) else ""
        if not image_path and kind == "image" and meta.get("source"):
            image_path = str(meta["source"])
        if image_path:
            return ImageNode(image_path=image_path, **common)
        logger.debug("page hit %s has no stored image; returning it as a TextNode", hit.id)
    return TextNode(**common)


class UMRRetriever(BaseRetriever):
    """Retrieve pages (as ``ImageNode``) and passages (as ``TextNode``) from a ``umr.store.ChromaStore``.

    The query is embedded by the store's UMR embedder on the query side. A ``QueryBundle`` with
    ``image_path`` becomes a fused text + image query (image only when ``query_str`` is empty). Several
    ``custom_embedding_strs`` are searched one by one (each fused with the image, if any) and merged,
    keeping each hit's best score. ``NodeWithScore.score`` is the cosine similarity in ``mode="dense"``
    (the default), the BM25 score in ``"lexical"`` and the fused score in ``"hybrid"`` (dense and lexical
    results fused by ``fusion``, ``"rrf"`` or ``"weighted"``, over ``depth`` candidates a side).

    >>> from umr.store import ChromaStore
    >>> from llama_index.retrievers.umr import UMRRetriever
    >>> retriever = UMRRetriever(ChromaStore(embedder, "umr_db"), similarity_top_k=10)   # doctest: +SKIP
    >>> retriever.retrieve("total amount on the invoice")                                # doctest: +SKIP
    """

    def __init__(
        self,
        store: Any,
        similarity_top_k: int = 5,
        *,
        where: Mapping[str, Any] | None = None,
        where_document: Mapping[str, Any] | None = None,
        instruction: str | None = None,
        mode: str = "dense",
        fusion: str = "rrf",
        depth: int | None = None,
        callback_manager: CallbackManager | None = None,
        verbose: bool = False,
    ) -> None:
        if not callable(getattr(store, "search", None)):
            raise TypeError(f"store must be a umr.store.ChromaStore (with search()), got {type(store).__name__}")
        if not isinstance(similarity_top_k, int) or similarity_top_k < 1:
            raise ValueError(f"similarity_top_k must be a positive int, got {similarity_top_k!r}")
        if mode not in SEARCH_MODES:
            raise ValueError(f"mode {mode!r} is unknown; choose one of {', '.join(SEARCH_MODES)}")
        if fusion not in FUSIONS:
            raise ValueError(f"fusion {fusion!r} is unknown; choose one of {', '.join(FUSIONS)}")
        if depth is not None and (isinstance(depth, bool) or not isinstance(depth, int) or depth < 1):
            raise ValueError(f"depth must be a positive int or None, got {depth!r}")
        self._store = store
        self._ranking: dict[str, Any] = {} if mode == "dense" else {"mode": mode, "fusion": fusion, "depth": depth}
        self.mode = mode
        self._similarity_top_k = similarity_top_k
        self._where = dict(where) if where else None
        self._where_document = dict(where_document) if where_document else None
        self._instruction = instruction
        super().__init__(callback_manager=callback_manager, verbose=verbose)

    @property
    def store(self) -> Any:
        return self._store

    @property
    def similarity_top_k(self) -> int:
        return self._similarity_top_k

    @similarity_top_k.setter
    def similarity_top_k(self, value: int) -> None:
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"similarity_top_k must be a positive int, got {value!r}")
        self._similarity_top_k = value

    def queries(self, query_bundle: QueryBundle) -> list[dict[str, Any]]:
        """The UMR queries a ``QueryBundle`` stands for: ``{"text": ...}``, ``{"image": ...}`` or both."""
        image = None
        if query_bundle.image_path:
            image = image_from_location(query_bundle.image_path, "query image_path")
        texts = [t for t in (query_bundle.custom_embedding_strs or []) if t and t.strip()]
        if not texts and query_bundle.query_str.strip():
            texts = [query_bundle.query_str]
        if not texts:
            if image is None:
                raise ValueError("empty query: give the QueryBundle a query_str or an image_path")
            return [{"image": image}]
        return [{"text": t} if image is None else {"text": t, "image": image} for t in texts]

    def _search(self, query: dict[str, Any]) -> list[Any]:
        return self._store.search(
            query,
            k=self._similarity_top_k,
            where=self._where,
            where_document=self._where_document,
            instruction=self._instruction,
            **self._ranking,
        )

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        best: dict[str, Any] = {}
        for query in self.queries(query_bundle):
            for hit in self._search(query):
                if hit.id not in best or hit.score > best[hit.id].score:
                    best[hit.id] = hit
        hits = sorted(best.values(), key=lambda h: h.score, reverse=True)[: self._similarity_top_k]
        return [NodeWithScore(node=hit_to_node(h), score=float(h.score)) for h in hits]

    async def _aretrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        return await asyncio.to_thread(self._retrieve, query_bundle)
