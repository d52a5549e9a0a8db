"""LlamaIndex embeddings backed by UMR multimodal embedders.

>>> from llama_index.embeddings.umr import UMREmbedding, umr_multimodal_index
"""

from llama_index.embeddings.umr.base import UMREmbedding
from llama_index.embeddings.umr.index import (
    check_flat_metadata,
    umr_chroma_vector_stores,
    umr_multimodal_index,
)

__all__ = ["UMREmbedding", "check_flat_metadata", "umr_chroma_vector_stores", "umr_multimodal_index"]
