"""LlamaIndex node postprocessor that reranks text and image nodes with a UMR reranker.

>>> from llama_index.postprocessor.umr_rerank import UMRRerank
"""

from llama_index.postprocessor.umr_rerank.base import UMRRerank

__all__ = ["UMRRerank"]
