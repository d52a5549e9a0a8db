"""``UMRRetriever``: LangChain retriever over a ``umr.store.ChromaStore`` or a LangChain vector store."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForRetrieverRun, CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables.config import run_in_executor
from langchain_core.vectorstores import VectorStore
from pydantic import ConfigDict, Field, field_validator, model_validator
from typing_extensions import Self

from langchain_umr._convert import as_plain_mapping, known_kwargs, query_input
from langchain_umr.embeddings import UMREmbeddings

#: metadata key of the similarity score (cosine similarity of L2-normalised vectors)
SCORE_KEY = "score"


def chroma_where(where: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """A Chroma filter; a plain ``{"a": 1, "b": 2}`` becomes ``{"$and": [{"a": 1}, {"b": 2}]}``."""
    if not where:
        return None
    where = dict(where)
    if len(where) > 1 and not any(key.startswith("$") for key in where):
        return {"$and": [{key: value} for key, value in where.items()]}
    return where


class UMRRetriever(BaseRetriever):
    """Retrieve pages, images and passages with text, image or fused text+image queries.

    >>> retriever = UMRRetriever(store=ChromaStore(embedder, "umr_db"), k=5)        # doctest: +SKIP
    >>> retriever.invoke("total amount on the invoice")                               # doctest: +SKIP
    >>> retriever.invoke("this chart for 2022", image="chart.png", where={"kind": "pdf"})  # doctest: +SKIP
    >>> UMRRetriever.from_vectorstore(Chroma(embedding_function=UMREmbeddings()))     # doctest: +SKIP

    Each ``Document`` carries the store's metadata (``source``, ``page``, ``image_uri`` of the rendered
    page...) plus ``score``, the cosine similarity to the query. ``invoke`` takes ``k``, ``where``,
    ``image`` (an image path, ``file://`` URI, PIL image or bytes fused with the text; an empty text
    makes an image-only query) and ``instruction`` as keyword arguments.
    """

    store: Any = Field(default=None, repr=False)
    """A ``umr.store.ChromaStore`` to search (give this or ``vectorstore``)."""
    vectorstore: VectorStore | None = Field(default=None, repr=False)
    """A LangChain vector store (e.g. ``langchain_chroma.Chroma``) whose embedding is ``UMREmbeddings``."""
    k: int = Field(default=4, gt=0)
    """Number of documents to return."""
    where: dict[str, Any] | None = None
    """Chroma metadata filter applied to every query (several keys are joined with ``$and``)."""
    where_document: dict[str, Any] | None = None
    """Chroma full-text filter on the stored text (``ChromaStore`` only)."""
    query_instruction: str | None = None
    """Query-side task instruction; ``None``: the embedder's own."""

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _known_kwargs(cls, data: Any) -> Any:
        return known_kwargs(cls, data, None)

    @field_validator("store")
    @classmethod
    def _is_store(cls, value: Any) -> Any:
        if value is not None and not callable(getattr(value, "search", None)):
            raise TypeError(f"store must be a umr.store.ChromaStore, got {type(value).__name__}")
        return value

    @model_validator(mode="after")
    def _one_backend(self) -> Self:
        if (self.store is None) == (self.vectorstore is None):
            raise ValueError(
                "give exactly one of store= (a umr.store.ChromaStore) or vectorstore= "
                "(a LangChain VectorStore)"
            )
        if self.where_document is not None and self.store is None:
            raise ValueError("where_document works with store= only; use where= with a vector store")
        return self

    @classmethod
    def from_vectorstore(cls, vectorstore: VectorStore, **kwargs: Any) -> UMRRetriever:
        """A retriever over a LangChain vector store built with ``UMREmbeddings``."""
        return cls(vectorstore=vectorstore, **kwargs)

    def _get_relevant_documents(
        self,
        query: Any,
        *,
        run_manager: CallbackManagerForRetrieverRun,
        k: int | None = None,
        where: Mapping[str, Any] | None = None,
        image: Any = None,
        instruction: str | None = None,
    ) -> list[Document]:
        k = self.k if k is None else k
        if not isinstance(k, int) or isinstance(k, bool) or k < 1:
            raise ValueError(f"k must be a positive int, got {k!r}")
        where = chroma_where({**(self.where or {}), **(where or {})})
        item = query_input(query, image)
        instruction = instruction if instruction is not None else self.query_instruction
        if self.store is not None:
            return self._from_store(item, k, where, instruction)
        return self._from_vectorstore(item, k, where, instruction)

    async def _aget_relevant_documents(
        self, query: Any, *, run_manager: AsyncCallbackManagerForRetrieverRun, **kwargs: Any
    ) -> list[Document]:
        return await run_in_executor(
            None, self._get_relevant_documents, query, run_manager=run_manager.get_sync(), **kwargs
        )

    def _from_store(
        self, item: Any, k: int, where: dict[str, Any] | None, instruction: str | None
    ) -> list[Document]:
        parts = {"text": item.text, "image": item.image, "instruction": item.instruction}
        query = {key: value for key, value in parts.items() if value is not None}  # never re-read as a path
        hits = self.store.search(
            query, k=k, where=where, where_document=self.where_document, instruction=instruction
        )
        docs = []
        for hit in hits:
            meta = as_plain_mapping(hit.metadata)
            meta.update(id=hit.id, image_uri=hit.image_uri, **{SCORE_KEY: float(hit.score)})
            docs.append(Document(page_content=hit.document or "", metadata=meta, id=hit.id))
        return docs

    def _from_vectorstore(
        self, item: Any, k: int, where: dict[str, Any] | None, instruction: str | None
    ) -> list[Document]:
        vs = self.vectorstore
        assert vs is not None
        emb = vs.embeddings
        if item.image is None and instruction is None:
            vector = emb.embed_query(item.text) if emb is not None else None
        elif isinstance(emb, UMREmbeddings):
            vector = emb.embed_multimodal([item], side="query", instruction=instruction)[0]
        else:
            raise TypeError(
                "image, fused or instructed queries need the vector store's embedding to be UMREmbeddings, "
                f"got {type(emb).__name__}"
            )
        if vector is None:
            return vs.similarity_search(item.text, k=k, filter=where)
        by_vector = getattr(vs, "similarity_search_by_vector_with_relevance_scores", None)
        if by_vector is None:
            return vs.similarity_search_by_vector(vector, k=k, filter=where)
        to_similarity = _distance_to_similarity(vs)
        docs = []
        for doc, distance in by_vector(vector, k=k, filter=where):
            meta = as_plain_mapping(doc.metadata)
            if doc.id is not None:
                meta.setdefault("id", doc.id)
            meta[SCORE_KEY] = to_similarity(float(distance))
            docs.append(Document(page_content=doc.page_content, metadata=meta, id=doc.id))
        return docs


def _distance_to_similarity(vs: VectorStore) -> Any:
    """Cosine similarity from a Chroma distance, for L2-normalised vectors (as UMR's are)."""
    space = "l2"
    config = getattr(getattr(vs, "_collection", None), "configuration", None)
    if isinstance(config, Mapping):
        for key in ("hnsw", "spann"):
            section = config.get(key)
            if isinstance(section, Mapping) and section.get("space"):
                space = str(section["space"])
                break
    if space == "l2":  # Chroma's l2 is the squared distance: |a-b|^2 = 2 - 2 cos
        return lambda d: 1.0 - d / 2.0
    return lambda d: 1.0 - d  # cosine and ip distances are 1 - cos for unit vectors
