"""LangChain integration of UMR: multimodal embeddings, a page retriever and an MLLM reranker.

>>> from langchain_umr import UMREmbeddings, UMRRetriever, UMRReranker   # doctest: +SKIP

The classes hold no model logic: they wrap ``umr.Embedder``, ``umr.store.ChromaStore`` and
``umr.Reranker`` and translate between their types and LangChain's.
"""

from __future__ import annotations

from langchain_umr.embeddings import UMREmbeddings
from langchain_umr.rerank import UMRReranker
from langchain_umr.retrievers import UMRRetriever
from langchain_umr.tools import create_rerank_tool

__all__ = ["UMREmbeddings", "UMRReranker", "UMRRetriever", "create_rerank_tool"]
