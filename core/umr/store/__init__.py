"""Chroma store for UMR: index PDFs, images and texts with an MLLM embedder, then search.

>>> from umr.store import ChromaStore               # doctest: +SKIP
>>> store = ChromaStore(embedder, "umr_db")         # doctest: +SKIP
>>> store.add_files(["papers/"]).summary()          # doctest: +SKIP
>>> store.search("total amount on the invoice", k=5)  # doctest: +SKIP
"""

from __future__ import annotations

from .chroma import ChromaStore
from .fake import HashEmbedder
from .records import DocumentInfo, IndexReport, SearchHit

__all__ = ["ChromaStore", "DocumentInfo", "HashEmbedder", "IndexReport", "SearchHit"]
