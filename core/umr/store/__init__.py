"""The page store: index PDFs, images and texts with an MLLM embedder in Chroma, then search.

>>> from umr.store import ChromaStore               # doctest: +SKIP
>>> store = ChromaStore(embedder, "umr_db")         # doctest: +SKIP
>>> store.add_files(["papers/"]).summary()          # doctest: +SKIP
>>> store.search("total amount on the invoice", k=5)  # doctest: +SKIP

One module per concern:

- ``chroma``: :class:`ChromaStore`, the facade (add_files, add_images, add_texts, search, delete...);
- ``collection``: Chroma access (client, collection per embedder, scalar metadata, batched writes);
- ``images``: the page-image store (PNG files by record id, ``file://`` URIs);
- ``lock``: the writer lock of an embedded database folder (shared with ``umr index --ray``);
- ``indexer``: ingestion (walk, skip unchanged, render, embed, write, remove stale), used by
  ``ChromaStore.add_files`` and the Ray pipeline of :mod:`umr.distributed`;
- ``lexical``: the lexical (BM25, tantivy) index beside a collection, kept in step with it, and
  ``hybrid``: dense, lexical and hybrid (fused) search;
- ``faults``: bounded, retried Chroma calls and named store errors (server down or frozen, disk full,
  damaged database); ``repair``: check the vector index, rebuild it from the stored pages;
- ``info``: open an existing collection without a model; ``server``: a local ``chroma run``;
- ``sources``: which paths a page set belongs to (byte-identical files share one; ``docs/paths.md``);
- ``records``: :class:`SearchHit`, :class:`IndexReport`, :class:`DocumentInfo`, :class:`Removal`.

``HashEmbedder`` (a model-free embedder for tests) lives in :mod:`umr.testing`; ``umr.store.HashEmbedder``
still finds it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .chroma import ChromaStore
from .records import DocumentInfo, IndexReport, Removal, SearchHit

if TYPE_CHECKING:  # pragma: no cover
    from umr.testing import HashEmbedder

__all__ = ["ChromaStore", "DocumentInfo", "HashEmbedder", "IndexReport", "Removal", "SearchHit"]


def __getattr__(name: str) -> Any:
    if name == "HashEmbedder":  # moved to umr.testing; imported on first use only
        from umr.testing import HashEmbedder

        return HashEmbedder
    raise AttributeError(f"module 'umr.store' has no attribute {name!r}")
