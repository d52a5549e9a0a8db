"""LlamaIndex retriever over a UMR Chroma store: pages come back as ``ImageNode``.

>>> from llama_index.retrievers.umr import UMRRetriever
"""

from llama_index.retrievers.umr.base import UMRRetriever, hit_to_node

__all__ = ["UMRRetriever", "hit_to_node"]
