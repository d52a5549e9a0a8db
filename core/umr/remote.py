"""Remote encoder backend: an OpenAI-compatible embeddings server (vLLM, SGLang) instead of a local model.

    pip install "umr[remote]"
    vllm serve Alibaba-NLP/gme-Qwen2-VL-2B-Instruct --runner pooling --port 8001
    umr index docs/ --server http://localhost:8001

:class:`RemoteEmbedder` has the public surface of :class:`umr.Embedder` (``embed``, ``embed_queries``,
``embed_documents``, ``dim``, ``model_id``, ``fingerprint``, ``max_pixels``), so ``ChromaStore``, the
CLI, the Ray pipeline and both framework adapters take it in place of a local model.

Prompts follow the model's recipe exactly as the local path renders them (``build_prompt``):

- **vLLM** (``api="vllm"``): a text-only input is sent as its whole rendered prompt in ``input`` (many per
  request, special tokens already in the text); an input with an image becomes a chat request whose
  ``messages`` reproduce the recipe's turns: the system turn carries the instruction, the user turn the
  image (``image_url`` with a ``data:`` URI, or a ``file://`` URL) and the text in the recipe's order, and
  a trailing assistant turn (GME: ``<|endoftext|>``, the pooled token) is continued, not closed
  (``continue_final_message``).  Images are resized on this side as the recipe's first resize does and
  the pixel budget goes along in ``mm_processor_kwargs``.
- **umr serve** (``api="umr"``): ``input`` is a list of ``{"text", "image", "instruction"}`` items with
  ``input_type`` (query / document) and ``instruction``; the server renders the recipe's prompts itself, so
  its vectors are the local ``Embedder``'s.  ``api="auto"`` (the default) picks it when ``/v1/models`` says
  ``owned_by: umr``, else ``vllm``.
- **SGLang** (``api="sglang"``, ``--is-embedding``): ``input`` is a list of ``{"text", "image"}`` items;
  the server's chat template (``--chat-template gme-qwen2-vl`` for GME) builds the prompt, with its own
  default system turn (query instructions are not sent).

Vectors are float32 numpy arrays, L2-normalised, in the caller's order.  Requests are retried with
exponential back-off on 429 / 5xx answers, connection errors and timeouts; a server that does not serve
the model is reported with the names it does serve.  A server's vectors are close to, not bit-equal with,
the local ones (other kernels, vLLM's M-RoPE positions for Qwen2-VL), so they get their own fingerprint:
a collection never mixes the two.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image

from umr.backbones.base import to_rgb
from umr.backbones.qwen_vl.processing import (
    QWEN_UTILS_MAX_PIXELS,
    QWEN_UTILS_MIN_PIXELS,
    clamp_aspect,
    smart_resize,
)
from umr.engines import get_engine
from umr.engines.remote_server import (  # noqa: F401 - re-exported: the old import paths
    RETRY_STATUS,
    ServerClient,
    _Client,
    _error_detail,
    _httpx,
    _normalize,
    _parse_embeddings,
    api_key_from_env,
    image_data_uri,
    prompt_to_messages,
)
from umr.errors import RemoteServerError, UnknownRecipeError
from umr.inputs import InputLike, MultimodalInput, coerce_inputs, is_single_input
from umr.prompting import RecipePrompts
from umr.ranking import RankFromScores
from umr.recipes import EMBED_RECIPES, Side, resolve_recipe_name

logger = logging.getLogger(__name__)

Api = Literal["vllm", "sglang", "umr"]


class RemoteEmbedder(RecipePrompts):
    """An embedder whose model runs on an OpenAI-compatible server (``vllm serve MODEL --runner pooling``,
    SGLang ``--is-embedding``).

    >>> emb = RemoteEmbedder("http://localhost:8001", "Alibaba-NLP/gme-Qwen2-VL-2B-Instruct")  # doctest: +SKIP
    >>> emb.embed_documents(["page1.png", {"text": "caption", "image": "photo.jpg"}])        # doctest: +SKIP

    ``base_url``: the server (``http://host:port``; a trailing ``/v1`` is dropped).  ``model``: the name
    the server serves (``--served-model-name``); ``recipe``: the recipe of that model when the name is
    not a known model id (its engine must be servable: umr renders the prompts).  ``api``: ``"vllm"``
    or ``"sglang"`` request forms.  ``api_key``: bearer token (default ``$UMR_API_KEY``).
    ``timeout``: seconds per request; ``max_retries``: retries of a failed request, ``backoff`` seconds
    doubling each time (capped at ``max_backoff``; a ``Retry-After`` header wins).  ``concurrency``:
    requests in flight; ``batch_size``: text prompts per request.  ``query_instruction``: the task
    instruction queries get when a call gives none.  ``dim``: keep the first ``dim`` dims of the server's
    vectors (Matryoshka), re-normalised.  ``min_pixels`` / ``max_pixels``: pixel budget of one image
    (default: the recipe's); ``send_pixel_budget``: pass it to vLLM as ``mm_processor_kwargs``.
    Images are made RGB as the recipe's reference does (``recipe.alpha``).  ``image_transport``: ``"data"`` sends
    images as PNG data URIs; ``"file"`` sends ``file://`` URLs of image files (the server must see the
    same files: ``vllm serve --allowed-local-media-path``).  ``check_model``: ask ``/v1/models`` first.
    ``transport``: an ``httpx`` transport (tests).
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        recipe: str | None = None,
        api: Api | Literal["auto"] = "auto",
        timeout: float = 120.0,
        max_retries: int = 5,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        concurrency: int = 8,
        batch_size: int = 32,
        query_instruction: str | None = None,
        dim: int | None = None,
        min_pixels: int | None = None,
        max_pixels: int | None = None,
        image_transport: Literal["data", "file"] = "data",
        send_pixel_budget: bool = True,
        check_model: bool = True,
        transport: Any | None = None,
        **_: Any,
    ) -> None:
        if api not in ("vllm", "sglang", "umr", "auto"):
            raise ValueError(f"api must be 'auto', 'vllm', 'sglang' or 'umr', got {api!r}")
        if image_transport not in ("data", "file"):
            raise ValueError(f"image_transport must be 'data' or 'file', got {image_transport!r}")
        if concurrency < 1 or batch_size < 1:
            raise ValueError("concurrency and batch_size must be >= 1")
        self.client = ServerClient(
            base_url, api_key=api_key_from_env(api_key), timeout=timeout, max_retries=max_retries,
            backoff=backoff, max_backoff=max_backoff, transport=transport,
        )
        self.base_url = self.client.base_url
        if check_model:
            self.client.check_model(model)
        if api == "auto":  # umr serve says so in /v1/models; anything else is spoken to as vLLM
            api = "umr" if self.client.owners.get(model) == "umr" else "vllm"
        try:
            name = resolve_recipe_name(model, recipe, "embedding")
        except UnknownRecipeError as exc:
            raise UnknownRecipeError(
                f"{exc} A served model name that is not a known model id needs its recipe: recipe=<name> "
                "(--recipe on the command line)"
            ) from None
        self.recipe = EMBED_RECIPES[name]
        if not get_engine(self.recipe.engine).servable:
            raise ValueError(
                f"recipe {name!r} runs on the {self.recipe.engine!r} engine (the checkpoint's own encode()), "
                "which has no server form; use umr.Embedder locally"
            )
        self.model_id = model
        self.api: Api = api  # type: ignore[assignment]
        self.query_instruction = query_instruction
        self.concurrency = int(concurrency)
        self.batch_size = int(batch_size)
        self.image_transport = image_transport
        self.send_pixel_budget = send_pixel_budget
        self._min_pixels = int(min_pixels if min_pixels is not None else self.recipe.min_pixels)
        self._max_pixels = int(max_pixels if max_pixels is not None else self.recipe.max_pixels)
        self._text_only_image = (
            Image.new("RGB", self.recipe.text_only_image) if self.recipe.text_only_image is not None else None
        )
        self._requested_dim = dim
        self._dim: int | None = None
        self._lock = threading.Lock()

    # -- identity ---------------------------------------------------------------------------------------
    @property
    def max_pixels(self) -> int:
        return self._max_pixels

    @property
    def min_pixels(self) -> int:
        return self._min_pixels

    @property
    def dim(self) -> int:
        """Output dimension (asked from the server with one short embedding, once)."""
        if self._dim is None:
            with self._lock:
                if self._dim is None:
                    native = len(self._request_vectors([MultimodalInput(text="dimension probe")], "document",
                                                       None)[0])
                    want = self._requested_dim
                    if want is not None and not (0 < want <= native):
                        raise ValueError(f"dim={want} is not available: the server's vectors have {native}")
                    self._dim = int(want or native)
        return self._dim

    @property
    def fingerprint(self) -> str:
        """Stable id of what decides the vectors: served model, API form, recipe, pixel budget, dim."""
        h = hashlib.sha256()
        for part in ("remote", self.api, self.model_id, self.recipe.name, str(self.min_pixels),
                     str(self.max_pixels), str(self.dim)):
            h.update(part.encode("utf-8", "surrogateescape") + b"\x00")
        return h.hexdigest()[:16]

    def __repr__(self) -> str:
        return f"RemoteEmbedder(base_url={self.base_url!r}, model_id={self.model_id!r}, api={self.api!r})"

    def close(self) -> None:
        self.client.close()

    # -- embedding --------------------------------------------------------------------------------------
    def embed_queries(
        self, inputs: InputLike | Iterable[InputLike], instruction: str | None = None, **kwargs: Any
    ) -> np.ndarray:
        return self.embed(inputs, side="query", instruction=instruction, **kwargs)

    def embed_documents(self, inputs: InputLike | Iterable[InputLike], **kwargs: Any) -> np.ndarray:
        return self.embed(inputs, side="document", **kwargs)

    def embed(
        self,
        inputs: InputLike | Iterable[InputLike],
        *,
        side: Side = "document",
        instruction: str | None = None,
        batch_size: int | None = None,
        convert_to: Literal["numpy", "torch"] = "numpy",
        **_: Any,
    ) -> Any:
        """Like :meth:`umr.Embedder.embed`: one input gives ``(dim,)``, a sequence ``(n, dim)``."""
        if side not in ("query", "document"):
            raise ValueError(f"side must be 'query' or 'document', got {side!r}")
        if instruction is not None and not isinstance(instruction, str):
            raise TypeError(f"instruction must be str or None, got {type(instruction).__name__}")
        single = is_single_input(inputs)
        items = coerce_inputs(inputs)
        dim = self.dim
        if not items:
            out = np.zeros((0, dim), dtype=np.float32)
        else:
            out = self._request_vectors(items, side, instruction, batch_size)
            if out.shape[1] < dim:
                raise RemoteServerError(f"the server returned {out.shape[1]}-d vectors, expected {dim}")
            out = _normalize(out[:, :dim])
        result = out[0] if single else out
        if convert_to == "torch":
            import torch

            return torch.from_numpy(result)
        return result

    def _request_vectors(
        self, items: Sequence[MultimodalInput], side: Side, instruction: str | None, batch_size: int | None = None
    ) -> np.ndarray:
        size = batch_size or self.batch_size
        jobs: list[tuple[list[int], dict[str, Any]]] = []
        texts: list[int] = []
        if self.api == "umr":
            jobs = self._umr_jobs(items, side, instruction, size)
        for i, item in enumerate(items if self.api != "umr" else ()):
            mi = self._with_text_only_image(item)
            if self.api == "sglang":
                continue
            if mi.image is None:
                texts.append(i)
            else:
                jobs.append(([i], self._chat_payload(mi, self.build_prompt(item, side, instruction))))
        if self.api == "sglang":
            for lo in range(0, len(items), size):
                idx = list(range(lo, min(len(items), lo + size)))
                jobs.append((idx, self._sglang_payload([self._with_text_only_image(items[i]) for i in idx], side)))
        for lo in range(0, len(texts), size):
            idx = texts[lo : lo + size]
            jobs.append((idx, {
                "model": self.model_id,
                "input": [self.build_prompt(items[i], side, instruction) for i in idx],
                "encoding_format": "float",
                "add_special_tokens": False,
            }))
        rows: list[np.ndarray | None] = [None] * len(items)

        def run(job: tuple[list[int], dict[str, Any]]) -> None:
            idx, payload = job
            vectors = _parse_embeddings(self.client.request("POST", "/v1/embeddings", payload), len(idx))
            for i, v in zip(idx, vectors):
                rows[i] = v

        if len(jobs) == 1 or self.concurrency == 1:
            for job in jobs:
                run(job)
        else:
            with ThreadPoolExecutor(max_workers=min(self.concurrency, len(jobs))) as pool:
                list(pool.map(run, jobs))
        return np.stack([r for r in rows if r is not None]).astype(np.float32)

    # -- request bodies ---------------------------------------------------------------------------------
    def image_url(self, item: MultimodalInput) -> str:
        """The ``image_url`` of one input: a data URI of the pre-resized image, or a ``file://`` URL."""
        if self.image_transport == "file" and isinstance(item.image, Path):
            return item.image.resolve().as_uri()
        img = to_rgb(item.load_image(), self.recipe.alpha)  # as the recipe's reference makes RGB
        w, h = img.size
        if self.recipe.pre_resize:
            lo, hi = (
                (self.min_pixels, self.max_pixels) if self.recipe.pre_resize_to_budget
                else (QWEN_UTILS_MIN_PIXELS, QWEN_UTILS_MAX_PIXELS)
            )
            nh, nw = smart_resize(h, w, 28, lo, hi)
        else:
            nh, nw = clamp_aspect(h, w)
        if (nw, nh) != img.size:
            img = img.resize((nw, nh), Image.Resampling.BICUBIC)
        return image_data_uri(img)

    def _chat_payload(self, item: MultimodalInput, prompt: str) -> dict[str, Any]:
        messages, open_end = prompt_to_messages(prompt, self.recipe.image_placeholder, self.image_url(item))
        payload: dict[str, Any] = {
            "model": self.model_id,
            "messages": messages,
            "encoding_format": "float",
            "add_special_tokens": False,
            "add_generation_prompt": open_end,
            "continue_final_message": not open_end and messages[-1]["role"] == "assistant",
        }
        if self.send_pixel_budget:
            payload["mm_processor_kwargs"] = {"min_pixels": self.min_pixels, "max_pixels": self.max_pixels}
        return payload

    def _umr_jobs(
        self, items: Sequence[MultimodalInput], side: Side, instruction: str | None, size: int
    ) -> list[tuple[list[int], dict[str, Any]]]:
        """``umr serve`` bodies: texts ``size`` per request, each input with an image alone (body limits).

        Images go as lossless PNG (or ``file://`` URLs), not resized: the server applies the recipe."""
        groups: list[list[int]] = [[i] for i, it in enumerate(items) if it.image is not None]
        text_idx = [i for i, it in enumerate(items) if it.image is None]
        groups += [text_idx[lo : lo + size] for lo in range(0, len(text_idx), size)]
        jobs = []
        for idx in groups:
            entries: list[dict[str, str]] = []
            for i in idx:
                it = items[i]
                entry: dict[str, str] = {}
                if it.text is not None:
                    entry["text"] = it.text
                if it.image is not None:
                    if self.image_transport == "file" and isinstance(it.image, Path):
                        entry["image"] = it.image.resolve().as_uri()
                    else:
                        img = it.load_image()  # PNG keeps transparency: the server applies the recipe
                        if img.mode not in ("RGB", "RGBA", "L", "LA", "P"):
                            img = to_rgb(img, self.recipe.alpha)
                        entry["image"] = image_data_uri(img)
                if it.instruction is not None:
                    entry["instruction"] = it.instruction
                entries.append(entry)
            payload: dict[str, Any] = {"model": self.model_id, "input": entries, "input_type": side,
                                       "encoding_format": "base64"}
            if side == "query" and (instruction or self.query_instruction):
                payload["instruction"] = instruction or self.query_instruction
            jobs.append((idx, payload))
        return jobs

    def _sglang_payload(self, items: Sequence[MultimodalInput], side: Side) -> dict[str, Any]:
        entries: list[dict[str, str]] = []
        for mi in items:
            entry: dict[str, str] = {}
            text = (self.recipe.prefix_for(side) + mi.text) if mi.text else ""
            if text:
                entry["text"] = text
            if mi.image is not None:
                entry["image"] = self.image_url(mi)
            entries.append(entry)
        return {"model": self.model_id, "input": entries, "encoding_format": "float"}


class RemoteReranker(RankFromScores):
    """A reranker served by ``vllm serve MODEL --runner pooling`` (a cross-encoder / reranker), through
    ``/v1/score`` (``api="score"``) or ``/rerank`` (``api="rerank"``, Jina / Cohere form).

    Same ``score`` / ``rerank`` surface as :class:`umr.Reranker`.  Text goes as strings; an image (or
    text + image) goes as ``{"content": [image_url part, text part]}`` for servers whose model takes
    images (for example ``jinaai/jina-reranker-m0``).  The server's model decides the prompt: a
    per-call ``instruction`` is not supported and raises.

    ``base_url``: the server (``http://host:port``; a trailing ``/v1`` is dropped); ``model``: the name
    it serves; ``api_key``: bearer token (default ``$UMR_API_KEY``); ``api``: ``"score"`` or
    ``"rerank"``; ``timeout``: seconds per request; ``max_retries``: retries of a failed request (429,
    5xx, connection errors, timeouts), ``backoff`` seconds doubling each time up to ``max_backoff`` (a
    ``Retry-After`` header wins); ``max_pixels``: images are resized to at most this many pixels before
    sending (alpha dropped); ``check_model``: ask ``/v1/models`` first; ``transport``: an ``httpx``
    transport (tests).
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        api: Literal["score", "rerank"] = "score",
        timeout: float = 120.0,
        max_retries: int = 5,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        max_pixels: int = 1280 * 28 * 28,
        check_model: bool = True,
        transport: Any | None = None,
    ) -> None:
        if api not in ("score", "rerank"):
            raise ValueError(f"api must be 'score' or 'rerank', got {api!r}")
        self.model_id = model
        self.api = api
        self.max_pixels = int(max_pixels)
        self.client = ServerClient(
            base_url, api_key=api_key_from_env(api_key), timeout=timeout, max_retries=max_retries,
            backoff=backoff, max_backoff=max_backoff, transport=transport,
        )
        self.base_url = self.client.base_url
        if check_model:
            self.client.check_model(model)

    def __repr__(self) -> str:
        return f"RemoteReranker(base_url={self.base_url!r}, model_id={self.model_id!r}, api={self.api!r})"

    def _param(self, item: MultimodalInput) -> Any:
        if item.image is None:
            return item.text or ""
        # the served model's own preprocessing is unknown here: alpha is dropped, as most references do
        img = to_rgb(item.load_image(), "drop")
        w, h = img.size
        nh, nw = smart_resize(h, w, 28, 4 * 28 * 28, self.max_pixels)
        if (nw, nh) != img.size:
            img = img.resize((nw, nh), Image.Resampling.BICUBIC)
        parts: list[dict[str, Any]] = [{"type": "image_url", "image_url": {"url": image_data_uri(img)}}]
        if item.text:
            parts.append({"type": "text", "text": item.text})
        return {"content": parts}

    def score(
        self, query: InputLike, candidates: Iterable[InputLike], instruction: str | None = None, **_: Any
    ) -> list[float]:
        """Relevance of each candidate to ``query``, in the order of ``candidates``."""
        if instruction is not None:
            raise ValueError("a served reranker takes no per-call instruction; its model decides the prompt")
        q = MultimodalInput.coerce(query)
        items = coerce_inputs(candidates)  # one input (text, image, dict) counts as one candidate
        if not items:
            return []
        docs = [self._param(c) for c in items]
        if self.api == "score":
            body = self.client.request("POST", "/v1/score", {"model": self.model_id, "text_1": self._param(q),
                                                              "text_2": docs})
            data, key = body.get("data"), "score"
        else:
            body = self.client.request("POST", "/rerank", {"model": self.model_id, "query": self._param(q),
                                                            "documents": docs, "top_n": len(docs)})
            data, key = body.get("results"), "relevance_score"
        if not isinstance(data, list) or len(data) != len(items):
            raise RemoteServerError(
                f"the server answered {len(data) if isinstance(data, list) else 'no'} scores for {len(items)} "
                "candidates; does it serve a reranker (vllm serve MODEL --runner pooling)?"
            )
        scores = [0.0] * len(items)
        for d in data:
            scores[int(d["index"])] = float(d[key])
        return scores

    def close(self) -> None:
        self.client.close()
