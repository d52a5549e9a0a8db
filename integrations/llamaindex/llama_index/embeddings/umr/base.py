"""``UMREmbedding``: a LlamaIndex ``MultiModalEmbedding`` backed by ``umr.Embedder``."""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

from llama_index.core.base.embeddings.base import Embedding
from llama_index.core.bridge.pydantic import Field, PrivateAttr
from llama_index.core.callbacks import CallbackManager
from llama_index.core.embeddings import MultiModalEmbedding
from llama_index.core.schema import ImageType
from llama_index.embeddings.umr.convert import image_input, text_input

from umr.embedder import DEFAULT_BATCH_SIZE
from umr.errors import reject_unknown
from umr.inputs import MultimodalInput
from umr.protocols import check_embedder
from umr.recipes import DEFAULT_EMBEDDER

logger = logging.getLogger(__name__)

# Options that only matter when the adapter loads the model itself.
_LOAD_OPTIONS = (
    "device", "dtype", "recipe", "dim", "min_pixels", "max_pixels", "attn_implementation", "trust_remote_code",
)


def _refuse_multi_vector(model_name: str | None, recipe: str | None, embedder: Any | None) -> None:
    """A late-interaction model gives one vector per token: it cannot back a single-vector index."""
    from umr.late.recipes import multi_vector_recipe_name

    late = bool(getattr(embedder, "multi_vector", False)) if embedder is not None else (
        model_name is not None and multi_vector_recipe_name(model_name, recipe) is not None
    )
    if late:
        name = getattr(embedder, "model_id", None) or model_name
        raise ValueError(
            f"{name!r} is a multi-vector (late-interaction) model: one vector per token, scored by MaxSim, so "
            "it cannot back a single-vector index. Index with `umr index DOCS --model "
            f"{name}` (or umr.store.ChromaStore) and query through UMRRetriever, or use it as a reranker "
            "with UMRRerank"
        )


class UMREmbedding(MultiModalEmbedding):
    """Text, image and page embeddings from a UMR multimodal embedder (GME by default).

    Queries go through ``Embedder.embed_queries`` (with ``query_instruction``), corpus text and images
    through ``Embedder.embed_documents``, so one model serves ``embed_model`` and ``image_embed_model`` of
    a ``MultiModalVectorStoreIndex`` and text and images share one vector space.

    >>> from llama_index.embeddings.umr import UMREmbedding
    >>> embed = UMREmbedding(model_name="Alibaba-NLP/gme-Qwen2-VL-2B-Instruct")   # doctest: +SKIP
    >>> embed = UMREmbedding(embedder=my_umr_embedder)  # reuse a loaded umr.Embedder  # doctest: +SKIP
    >>> q = embed.get_query_embedding("revenue in 2023")                               # doctest: +SKIP
    >>> v = embed.get_image_embedding("page_1.png")                                    # doctest: +SKIP
    """

    model_name: str = Field(
        default=DEFAULT_EMBEDDER, description="Hub id or local directory of the UMR embedding model."
    )
    embed_batch_size: int = Field(
        default=DEFAULT_BATCH_SIZE, gt=0, le=2048,
        description="Inputs per LlamaIndex batch call; also the most inputs in one forward pass.",
    )
    max_batch_tokens: int | None = Field(
        default=None, gt=0,
        description="Padded-token budget of one forward pass (None: the embedder's own budget).",
    )
    query_instruction: str | None = Field(
        default=None,
        description="Task instruction for queries (None: the embedder's query_instruction or the recipe default).",
    )
    device: str | None = Field(default=None, description="Device when loading from model_name (auto if None).")
    dtype: str | None = Field(default=None, description="dtype when loading (bf16 on CUDA, float32 on CPU).")
    recipe: str | None = Field(default=None, description="Recipe name for a local model that has no umr.json.")
    dim: int | None = Field(default=None, description="Output dimension (Matryoshka recipes only).")
    min_pixels: int | None = Field(default=None, description="Lower pixel budget per image (recipe default).")
    max_pixels: int | None = Field(default=None, description="Upper pixel budget per image (recipe default).")
    attn_implementation: str | None = Field(default=None, description="Attention implementation (auto).")
    trust_remote_code: bool = Field(
        default=False, description="Allow models that ship their own code (only when you trust them)."
    )
    server_url: str | None = Field(
        default=None,
        description="OpenAI-compatible embeddings server (vllm serve MODEL --runner pooling, SGLang "
        "--is-embedding); model_name is then the served model name and nothing is loaded here.",
    )
    api_key: str | None = Field(default=None, description="Bearer token of server_url (default $UMR_API_KEY).",
                                repr=False, exclude=True)

    _embedder: Any = PrivateAttr()

    def __init__(
        self,
        model_name: str | None = None,
        *,
        embedder: Any | None = None,
        callback_manager: CallbackManager | None = None,
        model: str | os.PathLike | None = None,
        **kwargs: Any,
    ) -> None:
        if model is not None:  # the spelling of UMRRerank and of the LangChain classes, accepted here too
            model = os.fspath(model)
            if model_name is not None and os.fspath(model_name) != model:
                raise ValueError(f"model={model!r} and model_name={model_name!r} disagree; pass one")
            model_name = model
        if isinstance(model_name, os.PathLike):
            model_name = os.fspath(model_name)
        reject_unknown("UMREmbedding", kwargs, [*type(self).model_fields, "model", "embedder"])
        for key in ("device", "dtype"):  # torch.device / torch.dtype are welcome; stored as text
            if kwargs.get(key) is not None and not isinstance(kwargs[key], str):
                kwargs[key] = str(kwargs[key])
        _refuse_multi_vector(model_name, kwargs.get("recipe"), embedder)
        if embedder is not None:
            check_embedder(embedder, "UMREmbedding(embedder=...)")
            ignored = sorted(k for k in (*_LOAD_OPTIONS, "server_url") if kwargs.get(k) not in (None, False))
            if ignored:
                raise ValueError(
                    f"{', '.join(ignored)} only apply when UMREmbedding loads the model from model_name; "
                    "set them on the injected umr.Embedder instead"
                )
            model_id = str(getattr(embedder, "model_id", "umr"))
            if model_name is not None and model_name != model_id:
                raise ValueError(
                    f"model_name={model_name!r} does not match the injected embedder's model {model_id!r}; "
                    "pass one or the other"
                )
            model_name = model_id
        super().__init__(
            model_name=model_name or DEFAULT_EMBEDDER, callback_manager=callback_manager, **kwargs
        )
        if embedder is None and self.server_url is not None:
            from umr.remote import RemoteEmbedder

            local = sorted(k for k in ("device", "dtype", "attn_implementation") if getattr(self, k) is not None)
            if local or self.trust_remote_code:
                raise ValueError(
                    f"{', '.join(local) or 'trust_remote_code'} configure a local model; the server decides "
                    "them (server_url)"
                )
            embedder = RemoteEmbedder(
                self.server_url, self.model_name, api_key=self.api_key, recipe=self.recipe, dim=self.dim,
                query_instruction=self.query_instruction, min_pixels=self.min_pixels, max_pixels=self.max_pixels,
                batch_size=self.embed_batch_size,
            )
        if embedder is None:
            from umr.embedder import Embedder

            options = {k: getattr(self, k) for k in _LOAD_OPTIONS}
            if self.max_batch_tokens is not None:
                options["max_batch_tokens"] = self.max_batch_tokens
            embedder = Embedder.from_pretrained(
                self.model_name, batch_size=self.embed_batch_size, query_instruction=self.query_instruction,
                **options,
            )
        self._embedder = embedder

    @classmethod
    def class_name(cls) -> str:
        return "UMREmbedding"

    @property
    def embedder(self) -> Any:
        """The wrapped ``umr.Embedder`` (or ``umr.remote.RemoteEmbedder`` with ``server_url``)."""
        return self._embedder

    # -- helpers ----------------------------------------------------------------------------------------
    def _budget(self) -> dict[str, Any]:
        return {"batch_size": self.embed_batch_size, "max_batch_tokens": self.max_batch_tokens}

    def _queries(self, inputs: list[Any]) -> list[Embedding]:
        vectors = self._embedder.embed_queries(inputs, instruction=self.query_instruction, **self._budget())
        return vectors.tolist()

    def _documents(self, inputs: list[Any]) -> list[Embedding]:
        return self._embedder.embed_documents(inputs, **self._budget()).tolist()

    # -- queries ----------------------------------------------------------------------------------------
    def _get_query_embedding(self, query: str) -> Embedding:
        return self._queries([text_input(query, "query")])[0]

    async def _aget_query_embedding(self, query: str) -> Embedding:
        return await asyncio.to_thread(self._get_query_embedding, query)

    def get_multimodal_query_embedding(self, text: str | None = None, image: ImageType | None = None) -> Embedding:
        """Embed a fused query (text and/or image) on the query side, e.g. "pages like this one about X"."""
        if text is None and image is None:
            raise ValueError("get_multimodal_query_embedding needs text, an image, or both")
        if text is not None and not isinstance(text, str):
            raise TypeError(f"query text must be str, got {type(text).__name__}")
        picture = image_input(image, "query image").image if image is not None else None
        return self._queries([MultimodalInput(text=text, image=picture)])[0]

    async def aget_multimodal_query_embedding(
        self, text: str | None = None, image: ImageType | None = None
    ) -> Embedding:
        return await asyncio.to_thread(self.get_multimodal_query_embedding, text, image)

    # -- documents --------------------------------------------------------------------------------------
    def _get_text_embedding(self, text: str) -> Embedding:
        return self._documents([text_input(text)])[0]

    def _get_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        return self._documents([text_input(t, f"text #{i}") for i, t in enumerate(texts)])

    async def _aget_text_embedding(self, text: str) -> Embedding:
        return await asyncio.to_thread(self._get_text_embedding, text)

    async def _aget_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        return await asyncio.to_thread(self._get_text_embeddings, texts)

    def _get_image_embedding(self, img_file_path: ImageType) -> Embedding:
        return self._documents([image_input(img_file_path)])[0]

    def _get_image_embeddings(self, img_file_paths: list[ImageType]) -> list[Embedding]:
        return self._documents([image_input(p, f"image #{i}") for i, p in enumerate(img_file_paths)])

    async def _aget_image_embedding(self, img_file_path: ImageType) -> Embedding:
        return await asyncio.to_thread(self._get_image_embedding, img_file_path)

    async def _aget_image_embeddings(self, img_file_paths: list[ImageType]) -> list[Embedding]:
        return await asyncio.to_thread(self._get_image_embeddings, img_file_paths)
