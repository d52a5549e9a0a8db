"""``umr_multimodal_index``: a ``MultiModalVectorStoreIndex`` whose text *and* image models are UMR.

``MultiModalVectorStoreIndex`` silently falls back to ``Settings.embed_model`` (OpenAI) for text and to
CLIP for images when either model is left out. Building the index through this helper makes that
impossible: one ``UMREmbedding`` is set as both, and any attempt to pass another model is refused.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

from llama_index.core.indices.multi_modal.base import MultiModalVectorStoreIndex
from llama_index.core.schema import BaseNode
from llama_index.core.storage.storage_context import StorageContext
from llama_index.core.vector_stores.simple import DEFAULT_VECTOR_STORE
from llama_index.core.vector_stores.types import BasePydanticVectorStore
from llama_index.embeddings.umr.base import UMREmbedding

logger = logging.getLogger(__name__)

_SCALARS = (str, int, float, bool)


def check_flat_metadata(nodes: Sequence[BaseNode]) -> None:
    """Raise ``ValueError`` naming the node and key if any metadata value is not a scalar.

    Chroma (and most vector stores with ``flat_metadata``) accept only ``str``, ``int``, ``float`` and
    ``bool`` values: no ``None``, lists or dicts. Checking before the first write means a bad node fails
    the call up front instead of half-way through a batch.
    """
    for node in nodes:
        for key, value in node.metadata.items():
            if not isinstance(key, str):
                raise ValueError(f"node {node.node_id!r}: metadata key {key!r} must be a str")
            if not isinstance(value, _SCALARS):
                hint = "drop the key" if value is None else "store it as a str (e.g. json.dumps) or split it"
                raise ValueError(
                    f"node {node.node_id!r}: metadata[{key!r}] is {type(value).__name__}; the vector store "
                    f"accepts only str, int, float or bool values. {hint}."
                )
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"node {node.node_id!r}: metadata[{key!r}] is {value}; use a finite number")


def _is_flat(store: Any) -> bool:
    return bool(getattr(store, "flat_metadata", False))


def _stored_count(store: Any) -> int | None:
    """Items already in a store, when it can tell (Chroma can); ``None`` otherwise."""
    collection = getattr(store, "_collection", None)
    count = getattr(collection, "count", None)
    if callable(count):
        try:
            return int(count())
        except Exception:  # a store that cannot count is treated as unknown
            return None
    return None


def umr_chroma_vector_stores(
    client: Any,
    embed_model: UMREmbedding,
    collection: str = "umr",
) -> tuple[BasePydanticVectorStore, BasePydanticVectorStore]:
    """Text and image ``ChromaVectorStore``s (collections ``<collection>_text`` / ``<collection>_image``).

    ``client`` is a ``chromadb`` client or a folder for a ``PersistentClient``. The collections use cosine
    distance and record the UMR model fingerprint, so reopening them with another model (whose vectors
    cannot be compared) raises instead of returning nonsense.
    """
    import os

    import chromadb
    from llama_index.vector_stores.chroma import ChromaVectorStore

    if isinstance(client, (str, os.PathLike)):
        client = chromadb.PersistentClient(
            path=os.fspath(client), settings=chromadb.Settings(anonymized_telemetry=False)
        )
    embedder = embed_model.embedder
    fingerprint = str(getattr(embedder, "fingerprint", "") or embed_model.model_name)
    meta = {"umr_model_id": embed_model.model_name, "umr_fingerprint": fingerprint}
    stores = []
    for kind in ("text", "image"):
        name = f"{collection}_{kind}"
        col = client.get_or_create_collection(
            name, configuration={"hnsw": {"space": "cosine"}}, metadata=meta, embedding_function=None
        )
        found = (col.metadata or {}).get("umr_fingerprint")
        if found not in (None, fingerprint):
            raise ValueError(
                f"Chroma collection {name!r} holds vectors of {(col.metadata or {}).get('umr_model_id')!r} "
                f"(fingerprint {found}); this embed model is {embed_model.model_name!r} (fingerprint "
                f"{fingerprint}). Use another collection name or delete the old one."
            )
        stores.append(ChromaVectorStore(chroma_collection=col))
    return stores[0], stores[1]


def umr_multimodal_index(
    nodes: Sequence[BaseNode] | None = None,
    *,
    embed_model: UMREmbedding | None = None,
    model_name: str | None = None,
    vector_store: BasePydanticVectorStore | None = None,
    image_vector_store: BasePydanticVectorStore | None = None,
    storage_context: StorageContext | None = None,
    **kwargs: Any,
) -> MultiModalVectorStoreIndex:
    """Build (or reopen) a ``MultiModalVectorStoreIndex`` that embeds text and images with UMR.

    ``nodes`` are ``TextNode``s and ``ImageNode``s (pages: ``image_path`` plus the page text); leave them
    out to reopen stores that already hold vectors. ``vector_store`` holds text vectors and
    ``image_vector_store`` image vectors (e.g. two ``ChromaVectorStore`` collections); both default to
    in-memory stores. Other keyword arguments go to ``MultiModalVectorStoreIndex``.

    >>> index = umr_multimodal_index(nodes, embed_model=UMREmbedding(), vector_store=text_store,
    ...                              image_vector_store=image_store)           # doctest: +SKIP
    """
    if "image_embed_model" in kwargs:
        raise TypeError(
            "umr_multimodal_index sets image_embed_model to the UMR embed_model itself; do not pass it"
        )
    if embed_model is None:
        embed_model = UMREmbedding(model_name=model_name)
    elif not isinstance(embed_model, UMREmbedding):
        raise TypeError(
            f"embed_model must be a UMREmbedding, got {type(embed_model).__name__}; use MultiModalVectorStoreIndex "
            "directly to mix models"
        )
    elif model_name is not None and model_name != embed_model.model_name:
        raise ValueError(f"model_name={model_name!r} conflicts with embed_model {embed_model.model_name!r}")

    if storage_context is None:
        storage_context = StorageContext.from_defaults(vector_store=vector_store)
    elif vector_store is not None:
        storage_context.add_vector_store(vector_store, DEFAULT_VECTOR_STORE)
    if image_vector_store is not None:
        storage_context.add_vector_store(image_vector_store, MultiModalVectorStoreIndex.image_namespace)

    nodes = list(nodes or [])
    stores = [s for s in storage_context.vector_stores.values() if s is not None]
    if nodes and any(_is_flat(s) for s in stores):
        check_flat_metadata(nodes)

    index = MultiModalVectorStoreIndex(
        nodes=nodes,
        storage_context=storage_context,
        embed_model=embed_model,
        image_embed_model=embed_model,
        **kwargs,
    )
    # A batch without images (or texts) marks that store "empty" and the retriever then skips it, even
    # when earlier runs filled it: trust the store's own count where it has one.
    text_count = _stored_count(index.vector_store)
    if text_count is not None:
        index._is_text_vector_store_empty = text_count == 0
    image_count = _stored_count(index.image_vector_store)
    if image_count is not None:
        index._is_image_vector_store_empty = image_count == 0
    if index._embed_model is not embed_model or index.image_embed_model is not embed_model:
        raise RuntimeError("MultiModalVectorStoreIndex replaced the UMR embedding model; please report this")
    logger.debug("multimodal index over %d new nodes with %s", len(nodes), embed_model.model_name)
    return index
