"""A lexical (BM25) index of record texts beside a Chroma collection, for lexical and hybrid search.

>>> from umr.store.lexical import LexicalIndex, LexicalRecord      # doctest: +SKIP
>>> lex = LexicalIndex("umr_db/lexical-umr")                         # doctest: +SKIP
>>> lex.upsert([LexicalRecord("id1", "Invoice INV-2024-0173", {"source": "a.pdf"})])  # doctest: +SKIP
>>> lex.search("INV-2024-0173", k=5)                                 # doctest: +SKIP
"""

from __future__ import annotations

from .filters import encode_value, metadata_terms
from .index import (
    LANGUAGES,
    LexicalConfig,
    LexicalHit,
    LexicalIndex,
    LexicalRecord,
    LexicalWriter,
    SyncReport,
    records_from_chroma,
)
from .mirror import LexicalMirror, chroma_ids, chroma_records
from .tokens import query_groups, tokenize

__all__ = [
    "LANGUAGES",
    "LexicalConfig",
    "LexicalHit",
    "LexicalIndex",
    "LexicalMirror",
    "LexicalRecord",
    "LexicalWriter",
    "SyncReport",
    "chroma_ids",
    "chroma_records",
    "encode_value",
    "metadata_terms",
    "query_groups",
    "records_from_chroma",
    "tokenize",
]
