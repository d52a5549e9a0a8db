"""Request bodies (pydantic): OpenAI embeddings, Cohere / Jina rerank, UMR search.

Unknown fields are refused (``extra="forbid"``) so that a misspelt option is an error naming it, not a
silently ignored setting.  Inputs themselves are parsed by :mod:`umr.serve.media` (their forms are many).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class EmbeddingsRequest(BaseModel):
    """``POST /v1/embeddings``: OpenAI's fields plus ``input_type`` and ``instruction`` (UMR)."""

    model_config = ConfigDict(extra="forbid")

    model: str
    input: Any
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(None, gt=0)
    user: str | None = None
    #: which side of retrieval the inputs are: queries get the recipe's query instruction
    input_type: Literal["query", "document"] = "document"
    #: query-side task instruction (overrides the server's default)
    instruction: str | None = None


class RerankRequest(BaseModel):
    """``POST /v1/rerank`` (also ``/rerank``): Cohere / Jina fields."""

    model_config = ConfigDict(extra="forbid")

    model: str | None = None
    query: Any
    documents: list[Any]
    top_n: int | None = Field(None, gt=0)
    return_documents: bool = False
    instruction: str | None = None


class SearchRequest(BaseModel):
    """``POST /v1/search``: a text, image (data URI / allowed file URL) or fused query over the store."""

    model_config = ConfigDict(extra="forbid")

    query: str | None = None
    image: str | None = None
    k: int = Field(5, ge=1, le=200)
    where: dict[str, Any] | None = None
    where_document: dict[str, Any] | None = None
    instruction: str | None = None
    rerank: bool = False
    rerank_depth: int | None = Field(None, ge=1, le=500)
    #: dense (embeddings), lexical (BM25 over the page text: exact codes, names) or hybrid (fused)
    mode: Literal["dense", "lexical", "hybrid"] = "dense"
    fusion: Literal["rrf", "weighted"] = "rrf"


class ScoreRequest(BaseModel):
    """``POST /v1/score`` (vLLM's score API, as ``umr.RemoteReranker(api="score")`` sends it):
    one query ``text_1`` against the candidates ``text_2``."""

    model_config = ConfigDict(extra="forbid")

    model: str | None = None
    text_1: Any
    text_2: Any
    instruction: str | None = None
