"""LangChain integration of UMR: multimodal embeddings, a page retriever and an MLLM reranker.

>>> from langchain_umr import UMREmbeddings, UMRRetriever, UMRReranker   # doctest: +SKIP

The classes hold no model logic: they wrap ``umr.Embedder``, ``umr.store.ChromaStore`` and
``umr.Reranker`` and translate between their types and LangChain's.
"""

from __future__ import annotations

from langchain_umr.embeddings import UMREmbeddings
from langchain_umr.retrievers import UMRRetriever

__all__ = ["UMREmbeddings", "UMRRetriever"]
