"""``UMREmbeddings``: LangChain ``Embeddings`` over ``umr.Embedder`` (text, images, fused text+image)."""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

from langchain_core.embeddings import Embeddings
from langchain_core.runnables.config import run_in_executor
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, SecretStr, field_validator, model_validator
from typing_extensions import Self

from langchain_umr._convert import image_inputs, known_kwargs, query_input, text_inputs
from umr.protocols import check_embedder
from umr.recipes import DEFAULT_EMBEDDER, get_recipe

if TYPE_CHECKING:
    from umr.embedder import Embedder
    from umr.inputs import InputLike

# Fields that only matter when this class loads the model itself.
_LOAD_FIELDS = ("device", "dtype", "recipe", "dim", "max_pixels")


class UMREmbeddings(BaseModel, Embeddings):
    """Universal multimodal embeddings (GME and other MLLM recipes) for LangChain.

    >>> from langchain_umr import UMREmbeddings
    >>> emb = UMREmbeddings()                      # doctest: +SKIP  (GME 2B, loaded on first use)
    >>> emb.embed_query("what is the revenue in 2023?")          # doctest: +SKIP
    >>> emb.embed_image(["page1.png"])                           # doctest: +SKIP  (Chroma.add_images uses it)
    >>> emb.embed_query_with_image("same chart, but for 2022", "chart.png")  # doctest: +SKIP

    Build it from a model id (loaded lazily, once) or inject a ready ``umr.Embedder`` as ``embedder``.
    Vectors are L2-normalised, so Chroma's cosine, ip and l2 spaces rank them the same way.
    """

    model: str = DEFAULT_EMBEDDER
    """Hub id or local directory of the embedding model (ignored for loading when ``embedder`` is given)."""
    device: str | None = None
    """Torch device (``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``); ``None``: CUDA when available."""
    dtype: str | None = None
    """``"bfloat16"``, ``"float16"`` or ``"float32"``; ``None``: bf16 on CUDA, float32 on CPU."""
    recipe: str | None = None
    """Recipe name (``"gme"``, ``"dse"``, ``"u-marvel"``) for a local directory that does not record one."""
    query_instruction: str | None = None
    """Task instruction for queries (documents get the recipe's own); ``None``: the recipe default."""
    max_batch_tokens: int | None = Field(default=None, gt=0)
    """Padded-token budget of one forward pass; ``None``: the embedder's default (16384)."""
    batch_size: int | None = Field(default=None, gt=0)
    """Most inputs in one forward pass; ``None``: the embedder's default (32)."""
    dim: int | None = Field(default=None, gt=0)
    """Output dimension (Matryoshka truncation where the recipe allows it); ``None``: native size."""
    max_pixels: int | None = Field(default=None, gt=0)
    """Pixel budget of one image; ``None``: the recipe's budget."""
    embedder: Any = Field(default=None, exclude=True, repr=False)
    """A ready ``umr.Embedder`` (or ``umr.remote.RemoteEmbedder``, anything with ``embed``,
    ``embed_queries`` and ``embed_documents``) to use instead of loading ``model`` (not serialized)."""
    server_url: str | None = None
    """Base URL of an OpenAI-compatible embeddings server (``vllm serve MODEL --runner pooling``, SGLang
    ``--is-embedding``); ``model`` is then the served model name and nothing is loaded here."""
    api_key: SecretStr | None = Field(default=None, repr=False)
    """Bearer token of ``server_url`` (default: ``$UMR_API_KEY``)."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=(), validate_assignment=True)

    @model_validator(mode="before")
    @classmethod
    def _known_kwargs(cls, data: Any) -> Any:
        return known_kwargs(cls, data, {"model_name": "model"})

    _loaded: Embedder | None = PrivateAttr(default=None)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    # -- validation -------------------------------------------------------------------------------------
    @field_validator("model", mode="before")
    @classmethod
    def _model_to_str(cls, value: Any) -> Any:
        return os.fspath(value) if isinstance(value, os.PathLike) else value

    @field_validator("recipe")
    @classmethod
    def _known_recipe(cls, value: str | None) -> str | None:
        return None if value is None else get_recipe(value).name

    @field_validator("dtype")
    @classmethod
    def _known_dtype(cls, value: str | None) -> str | None:
        from umr.modeling import DTYPES

        if value is not None and value.replace("torch.", "").lower() not in DTYPES:
            raise ValueError(f"unknown dtype {value!r}; valid: {', '.join(sorted(DTYPES))}")
        return value

    @field_validator("device")
    @classmethod
    def _valid_device(cls, value: str | None) -> str | None:
        if value is not None:
            import torch

            try:
                torch.device(value)
            except (RuntimeError, TypeError) as exc:
                raise ValueError(
                    f"invalid device {value!r}; use 'cpu', 'cuda', 'cuda:1', 'mps' or None"
                ) from exc
        return value

    @field_validator("embedder")
    @classmethod
    def _is_embedder(cls, value: Any) -> Any:
        if value is not None:
            check_embedder(value, "UMREmbeddings(embedder=...)")
        return value

    @model_validator(mode="after")
    def _embedder_or_model(self) -> Self:
        from umr.late.recipes import multi_vector_recipe_name

        late = bool(getattr(self.embedder, "multi_vector", False)) if self.embedder is not None else (
            self.server_url is None and multi_vector_recipe_name(self.model, self.recipe) is not None
        )
        if late:
            name = getattr(self.embedder, "model_id", None) or self.model
            raise ValueError(
                f"{name!r} is a multi-vector (late-interaction) model: one vector per token, scored by MaxSim, "
                "so it cannot back a LangChain vector store. Index with `umr index DOCS --model "
                f"{name}` (or umr.store.ChromaStore) and query through langchain_umr.UMRRetriever, or use it as "
                "a reranker with UMRReranker"
            )
        if self.embedder is None:
            if self.server_url is not None and any(
                f in self.model_fields_set and getattr(self, f) is not None for f in ("device", "dtype")
            ):
                raise ValueError("device and dtype configure a local model; the server decides them (server_url)")
            return self
        if self.server_url is not None:
            raise ValueError("pass embedder= or server_url=, not both")
        clashing = [f for f in _LOAD_FIELDS if f in self.model_fields_set and getattr(self, f) is not None]
        if "dim" in clashing and self.dim == self.embedder.dim:
            clashing.remove("dim")
        if clashing:
            raise ValueError(
                f"{', '.join(clashing)} configure model loading and cannot apply to an injected embedder; "
                "pass them to umr.Embedder.from_pretrained(...) or drop embedder="
            )
        if "model" not in self.model_fields_set:
            object.__setattr__(self, "model", self.embedder.model_id)
        return self

    # -- the core object --------------------------------------------------------------------------------
    @property
    def client(self) -> Embedder:
        """The embedder in use: injected, or loaded from ``model`` (or connected to ``server_url``) on first
        access."""
        if self.embedder is not None:
            return self.embedder
        with self._lock:
            if self._loaded is None and self.server_url is not None:
                from umr.remote import RemoteEmbedder

                self._loaded = RemoteEmbedder(
                    self.server_url,
                    self.model,
                    api_key=self.api_key.get_secret_value() if self.api_key is not None else None,
                    recipe=self.recipe,
                    dim=self.dim,
                    query_instruction=self.query_instruction,
                    max_pixels=self.max_pixels,
                )
            if self._loaded is None:
                from umr.embedder import Embedder

                self._loaded = Embedder.from_pretrained(
                    self.model,
                    device=self.device,
                    dtype=self.dtype,
                    recipe=self.recipe,
                    dim=self.dim,
                    query_instruction=self.query_instruction,
                    max_pixels=self.max_pixels,
                )
            return self._loaded

    def _run(
        self, inputs: list[Any], side: Literal["query", "document"], instruction: str | None = None
    ) -> list[list[float]]:
        if not inputs:
            return []
        kwargs: dict[str, Any] = {"side": side}
        if self.batch_size is not None:
            kwargs["batch_size"] = self.batch_size
        if self.max_batch_tokens is not None:
            kwargs["max_batch_tokens"] = self.max_batch_tokens
        if side == "query":
            kwargs["instruction"] = instruction if instruction is not None else self.query_instruction
        return self.client.embed(inputs, **kwargs).tolist()

    # -- LangChain Embeddings interface -----------------------------------------------------------------
    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """Embed passages (corpus side). Each string is text, even if it names a file."""
        return self._run(text_inputs(texts), "document")

    def embed_query(self, text: str) -> list[float]:
        """Embed a text query (query side, with ``query_instruction``)."""
        return self._run(text_inputs([text], "text"), "query")[0]

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        return await run_in_executor(None, self.embed_documents, texts)

    async def aembed_query(self, text: str) -> list[float]:
        return await run_in_executor(None, self.embed_query, text)

    # -- images and fused inputs ------------------------------------------------------------------------
    def embed_image(self, uris: list[str]) -> list[list[float]]:
        """Embed image files (paths or ``file://`` URIs), corpus side; ``Chroma.add_images`` calls it."""
        return self._run(image_inputs(uris), "document")

    def embed_multimodal(
        self,
        inputs: Sequence[InputLike],
        *,
        side: Literal["query", "document"] = "document",
        instruction: str | None = None,
    ) -> list[list[float]]:
        """Embed any umr inputs: text, image paths, PIL images, bytes, or dicts ``{"text", "image"}``.

        A string naming an existing image file is taken as that image (``umr.MultimodalInput.coerce``).
        """
        if side not in ("query", "document"):
            raise ValueError(f"side must be 'query' or 'document', got {side!r}")
        if isinstance(inputs, (str, bytes, dict)):
            raise TypeError("inputs must be a list; wrap a single input in a list")
        from umr.inputs import coerce_inputs

        return self._run(coerce_inputs(inputs), side, instruction)

    def embed_query_with_image(
        self, text: str | None, image: Any, instruction: str | None = None
    ) -> list[float]:
        """Embed a fused query: text and an image (path, ``file://`` URI, PIL image or bytes) together."""
        if image is None:
            raise ValueError("embed_query_with_image needs an image; use embed_query for a text-only query")
        return self._run([query_input(text or "", image)], "query", instruction)[0]

    async def aembed_image(self, uris: list[str]) -> list[list[float]]:
        return await run_in_executor(None, self.embed_image, uris)

    async def aembed_multimodal(
        self,
        inputs: Sequence[InputLike],
        *,
        side: Literal["query", "document"] = "document",
        instruction: str | None = None,
    ) -> list[list[float]]:
        return await run_in_executor(
            None, lambda: self.embed_multimodal(inputs, side=side, instruction=instruction)
        )
