"""``UMRReranker``: a LangChain document compressor that reranks with ``umr.Reranker`` (MLLM, pointwise)."""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

from langchain_core.callbacks import Callbacks
from langchain_core.documents import BaseDocumentCompressor, Document
from pydantic import ConfigDict, Field, PrivateAttr, field_validator, model_validator
from typing_extensions import Self

from langchain_umr._convert import DEFAULT_IMAGE_KEYS, as_plain_mapping, document_to_input, known_kwargs
from umr.confine import PathPolicy
from umr.protocols import check_reranker
from umr.ranking import rerank_order
from umr.recipes import get_rerank_recipe

if TYPE_CHECKING:
    from umr.reranker import Reranker

_LOAD_FIELDS = ("device", "dtype", "recipe", "max_pixels")


class UMRReranker(BaseDocumentCompressor):
    """Rerank retrieved documents (page images or text) with a multimodal LLM reranker.

    >>> reranker = UMRReranker(top_n=3)               # doctest: +SKIP  (loaded on first use)
    >>> ContextualCompressionRetriever(                # doctest: +SKIP
    ...     base_compressor=reranker, base_retriever=UMRRetriever(store=store))

    A document is judged by its image when one of ``image_keys`` in its metadata names an image file (a
    ``ChromaStore`` page's ``image_uri``) or its content is a base64 image (``Chroma.add_images``), else by
    its text; see ``mode``. Returned documents are copies, best first, with the score in
    ``metadata[score_key]``.
    """

    model: str | None = None
    """Hub id or local directory of the reranker; ``None``: umr's default reranker."""
    reranker: Any = Field(default=None, exclude=True, repr=False)
    """A ready ``umr.Reranker`` to use instead of loading ``model`` (not serialized)."""
    top_n: int | None = Field(default=3, gt=0)
    """Number of documents to return; ``None`` returns them all, reordered."""
    mode: Literal["auto", "image", "text", "fused"] = "auto"
    """Candidate content: ``auto`` = the image when the document has one, else its text; ``fused`` = both."""
    image_keys: tuple[str, ...] = DEFAULT_IMAGE_KEYS
    """Metadata keys tried, in order, for the document's image path or ``file://`` URI."""
    allowed_roots: list[str] | None = None
    """Folders whose image files may be read when a document's metadata names one (paths from a
    retriever or an agent are untrusted). ``None``: the page-image folders of the ``ChromaStore`` objects
    opened in this process. A path elsewhere (symlinks resolved first), a device, FIFO or ``/proc`` file
    raises ``umr.confine.PathNotAllowedError`` without saying whether it exists."""
    score_key: str = "relevance_score"
    """Metadata key the rerank score (in [0, 1]) is written to."""
    fuse_weight: float | None = Field(default=None, ge=0)
    """If set, order by ``metadata[first_stage_key] + fuse_weight * rerank score`` (U-MARVEL uses 0.1)."""
    first_stage_key: str = "score"
    """Metadata key of the first-stage similarity used by ``fuse_weight``."""
    device: str | None = None
    """Torch device; ``None``: CUDA when available."""
    dtype: str | None = None
    """``"bfloat16"``, ``"float16"`` or ``"float32"``; ``None``: bf16 on CUDA, float32 on CPU."""
    recipe: str | None = None
    """Rerank recipe name for a local directory that does not record one."""
    instruction: str | None = None
    """Replaces the recipe's judging instruction (per call, so it also applies to an injected reranker)."""
    batch_size: int | None = Field(default=None, gt=0)
    """Most pairs in one forward pass; ``None``: the reranker's default."""
    max_batch_tokens: int | None = Field(default=None, gt=0)
    """Padded-token budget of one forward pass; ``None``: the reranker's default."""
    max_pixels: int | None = Field(default=None, gt=0)
    """Pixel budget of one image; ``None``: the recipe's."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=(), arbitrary_types_allowed=True)

    @model_validator(mode="before")
    @classmethod
    def _known_kwargs(cls, data: Any) -> Any:
        return known_kwargs(cls, data, {"model_name": "model"})

    _loaded: Reranker | None = PrivateAttr(default=None)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    @field_validator("model", mode="before")
    @classmethod
    def _model_to_str(cls, value: Any) -> Any:
        return os.fspath(value) if isinstance(value, os.PathLike) else value

    @field_validator("allowed_roots", mode="before")
    @classmethod
    def _roots_to_list(cls, value: Any) -> Any:
        if isinstance(value, (str, os.PathLike)):
            value = [value]
        if isinstance(value, (list, tuple)):
            return [os.fspath(v) if isinstance(v, os.PathLike) else v for v in value]
        return value

    @field_validator("recipe")
    @classmethod
    def _known_recipe(cls, value: str | None) -> str | None:
        return None if value is None else get_rerank_recipe(value).name

    @field_validator("reranker")
    @classmethod
    def _is_reranker(cls, value: Any) -> Any:
        if value is not None:
            check_reranker(value, "UMRReranker(reranker=...)")
        return value

    @model_validator(mode="after")
    def _reranker_or_model(self) -> Self:
        if self.reranker is None:
            return self
        clashing = [f for f in _LOAD_FIELDS if getattr(self, f) is not None]
        if clashing or self.model is not None:
            raise ValueError(
                f"{', '.join(clashing or ['model'])} configure model loading and cannot apply to an injected "
                "reranker; pass them to umr.Reranker.from_pretrained(...) or drop reranker="
            )
        return self

    @property
    def client(self) -> Reranker:
        """The ``umr.Reranker`` in use (loaded on first access)."""
        if self.reranker is not None:
            return self.reranker
        with self._lock:
            if self._loaded is None:
                from umr.reranker import Reranker

                kwargs = {f: getattr(self, f) for f in _LOAD_FIELDS if getattr(self, f) is not None}
                args = () if self.model is None else (self.model,)
                self._loaded = Reranker.from_pretrained(*args, **kwargs)
            return self._loaded

    def path_policy(self) -> PathPolicy:
        """The ``umr.confine.PathPolicy`` that image paths from document metadata are read through."""
        return PathPolicy(self.allowed_roots)

    def score_documents(self, query: Any, documents: Sequence[Document]) -> list[float]:
        """Rerank score of each document for ``query`` (text, or any umr input), in input order."""
        policy = self.path_policy()
        candidates = [document_to_input(d, self.mode, self.image_keys, policy) for d in documents]
        if not candidates:
            return []
        kwargs = {
            k: v
            for k, v in (("batch_size", self.batch_size), ("max_batch_tokens", self.max_batch_tokens))
            if v
        }
        return self.client.score(query, candidates, self.instruction, **kwargs)

    def compress_documents(
        self, documents: Sequence[Document], query: str, callbacks: Callbacks | None = None
    ) -> Sequence[Document]:
        """The ``top_n`` best documents for ``query``, best first, each a copy carrying its score."""
        docs = list(documents)
        scores = self.score_documents(query, docs)
        first: list[float] | None = None
        if self.fuse_weight is not None:
            missing = [
                i
                for i, d in enumerate(docs)
                if not isinstance(d.metadata.get(self.first_stage_key), (int, float))
            ]
            if missing:
                raise ValueError(
                    f"fuse_weight needs a numeric metadata[{self.first_stage_key!r}] on every document; "
                    f"document #{missing[0]} has none (retrieve with UMRRetriever, or set first_stage_key)"
                )
            first = [d.metadata[self.first_stage_key] for d in docs]
        order = rerank_order(first, scores, fuse_weight=self.fuse_weight, top_n=self.top_n)
        out = []
        for i, key in order:
            meta = as_plain_mapping(docs[i].metadata)
            meta[self.score_key] = scores[i]
            if self.fuse_weight is not None:
                meta["fused_score"] = key
            out.append(docs[i].model_copy(update={"metadata": meta}))
        return out
