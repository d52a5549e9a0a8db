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

import base64
import hashlib
import io
import logging
import os
import random
import re
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image

from umr.errors import ModelNotFoundError, RemoteServerError, UnknownRecipeError
from umr.inputs import InputLike, MultimodalInput, coerce_inputs
from umr.processing import QWEN_UTILS_MAX_PIXELS, QWEN_UTILS_MIN_PIXELS, _to_rgb, clamp_aspect, smart_resize
from umr.prompting import RecipePrompts
from umr.recipes import EMBED_RECIPES, Side, resolve_recipe_name

logger = logging.getLogger(__name__)

RETRY_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
_TURN = re.compile(r"<\|im_start\|>(system|user|assistant)\n(.*?)(<\|im_end\|>\n?|$)", re.S)
Api = Literal["vllm", "sglang", "umr"]


def _httpx() -> Any:
    try:
        import httpx
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ImportError('the remote backend needs httpx: pip install "umr[remote]"') from exc
    return httpx


def api_key_from_env(api_key: str | None) -> str | None:
    """``api_key`` or ``$UMR_API_KEY`` (never logged)."""
    return api_key if api_key is not None else (os.environ.get("UMR_API_KEY") or None)


class _Client:
    """One HTTP client with retries, back-off and clear errors (shared by embedder and reranker)."""

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None,
        timeout: float,
        max_retries: int,
        backoff: float,
        max_backoff: float,
        transport: Any | None,
    ) -> None:
        httpx = _httpx()
        if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
            raise ValueError(f"server URL must start with http:// or https://, got {base_url!r}")
        if max_retries < 0 or timeout <= 0:
            raise ValueError("max_retries must be >= 0 and timeout > 0")
        self.owners: dict[str, str] = {}  # served model name -> owned_by, from /v1/models
        self.base_url = base_url.rstrip("/")
        if self.base_url.endswith("/v1"):
            self.base_url = self.base_url[:-3]
        self.timeout = float(timeout)
        self.max_retries = int(max_retries)
        self.backoff = float(backoff)
        self.max_backoff = float(max_backoff)
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.http = httpx.Client(
            base_url=self.base_url, headers=headers, timeout=httpx.Timeout(self.timeout), transport=transport
        )

    def _delay(self, attempt: int, response: Any | None) -> float:
        if response is not None:
            after = response.headers.get("retry-after")
            if after:
                try:
                    return min(self.max_backoff, max(0.0, float(after)))
                except ValueError:
                    pass
        return min(self.max_backoff, self.backoff * (2**attempt)) * (0.5 + random.random() / 2)

    def request(self, method: str, path: str, payload: Mapping[str, Any] | None = None) -> Any:
        """JSON answer of ``method path``; retries on 429/5xx, connection errors and timeouts."""
        httpx = _httpx()
        last = ""
        for attempt in range(self.max_retries + 1):
            response = None
            try:
                response = self.http.request(method, path, json=payload)
            except httpx.TimeoutException:
                last = f"no answer within the {self.timeout:g} s timeout"
            except httpx.TransportError as exc:
                last = f"cannot connect ({type(exc).__name__}: {exc})"
            else:
                if response.status_code < 400:
                    return response.json()
                detail = _error_detail(response)
                if response.status_code not in RETRY_STATUS:
                    if response.status_code == 404 and "model" in detail.lower():
                        raise ModelNotFoundError(f"{self.base_url}{path}: {detail}")
                    raise RemoteServerError(
                        f"{self.base_url}{path} refused the request (HTTP {response.status_code}): {detail}"
                    )
                last = f"HTTP {response.status_code}: {detail}"
            if attempt < self.max_retries:
                delay = self._delay(attempt, response)
                logger.info("%s%s: %s; retry %d/%d in %.2f s", self.base_url, path, last, attempt + 1,
                            self.max_retries, delay)
                time.sleep(delay)
        raise RemoteServerError(
            f"{self.base_url}{path} failed after {self.max_retries + 1} attempt(s): {last}. Is the server up "
            "(vllm serve MODEL --runner pooling / python -m sglang.launch_server --is-embedding)? Raise "
            "timeout= or max_retries= for a busy server"
        )

    def served_models(self) -> list[str] | None:
        """Model names from ``GET /v1/models`` (``None`` when the server has no such route)."""
        try:
            got = self.request("GET", "/v1/models")
        except (RemoteServerError, ModelNotFoundError) as exc:
            if "HTTP 404" in str(exc) or isinstance(exc, ModelNotFoundError):
                return None
            raise
        names: list[str] = []
        for entry in got.get("data", []) if isinstance(got, dict) else []:
            for key in ("id", "root"):
                value = entry.get(key)
                if isinstance(value, str) and value not in names:
                    names.append(value)
                    self.owners[value] = str(entry.get("owned_by", ""))
        return names

    def check_model(self, model: str) -> None:
        names = self.served_models()
        if names is not None and model not in names:
            raise ModelNotFoundError(
                f"the server at {self.base_url} does not serve {model!r}; it serves: "
                f"{', '.join(names) or 'nothing'}. Pass one of these as the model (--server-model)"
            )

    def close(self) -> None:
        self.http.close()


def _error_detail(response: Any) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:300].strip() or response.reason_phrase
    if isinstance(body, dict):
        err = body.get("error", body.get("detail", body.get("message", body)))
        if isinstance(err, dict):
            err = err.get("message", err)
        return str(err)[:300]
    return str(body)[:300]


def image_data_uri(image: Image.Image) -> str:
    """A PNG ``data:`` URI of ``image`` (lossless: the server decodes the same pixels)."""
    buf = io.BytesIO()
    image.save(buf, format="PNG", compress_level=1)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


class RemoteEmbedder(RecipePrompts):
    """An embedder whose model runs on an OpenAI-compatible server (``vllm serve MODEL --runner pooling``,
    SGLang ``--is-embedding``).

    >>> emb = RemoteEmbedder("http://localhost:8001", "Alibaba-NLP/gme-Qwen2-VL-2B-Instruct")  # doctest: +SKIP
    >>> emb.embed_documents(["page1.png", {"text": "caption", "image": "photo.jpg"}])        # doctest: +SKIP

    ``model``: the name the server serves (``--served-model-name``); ``recipe``: the recipe of that model
    when the name is not a known model id.  ``api_key``: bearer token (default ``$UMR_API_KEY``).
    ``timeout``: seconds per request; ``max_retries``: retries of a failed request, ``backoff`` seconds
    doubling each time (capped at ``max_backoff``; a ``Retry-After`` header wins).  ``concurrency``:
    requests in flight; ``batch_size``: text prompts per request.  ``image_transport``: ``"data"`` sends
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
        self.client = _Client(
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
        if self.recipe.backend != "native":
            raise ValueError(
                f"recipe {name!r} runs the checkpoint's own encode() and has no server form; "
                "use umr.Embedder locally"
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
        single = isinstance(inputs, (str, bytes, bytearray, dict, MultimodalInput, os.PathLike, Image.Image))
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
        img = _to_rgb(item.load_image())
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
                        entry["image"] = image_data_uri(_to_rgb(it.load_image()))
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


def prompt_to_messages(prompt: str, image_placeholder: str, image_url: str) -> tuple[list[dict[str, Any]], bool]:
    """Split a rendered ChatML prompt into OpenAI chat ``messages``.

    Returns ``(messages, open_end)``: ``open_end`` is true when the prompt ends with an empty assistant
    header (send ``add_generation_prompt``); otherwise a final assistant message with text (GME's
    ``<|endoftext|>``) is to be continued (``continue_final_message``).  The user turn's image
    placeholder becomes an ``image_url`` part, in place.
    """
    messages: list[dict[str, Any]] = []
    open_end = False
    for match in _TURN.finditer(prompt):
        role, body, end = match.group(1), match.group(2), match.group(3)
        if role == "assistant" and not body and not end:
            open_end = True
            continue
        if image_placeholder in body:
            before, _, after = body.partition(image_placeholder)
            parts: list[dict[str, Any]] = []
            if before:
                parts.append({"type": "text", "text": before})
            parts.append({"type": "image_url", "image_url": {"url": image_url}})
            if after:
                parts.append({"type": "text", "text": after})
            messages.append({"role": role, "content": parts})
        else:
            messages.append({"role": role, "content": body})
    if not messages:
        raise ValueError("the recipe's prompt is not in the ChatML form a chat endpoint takes")
    return messages, open_end


def _parse_embeddings(body: Any, expected: int) -> list[np.ndarray]:
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, list) or len(data) != expected:
        raise RemoteServerError(
            f"the server answered {len(data) if isinstance(data, list) else 'no'} embeddings for {expected} "
            "inputs; is it an embeddings server (vllm serve --runner pooling / sglang --is-embedding)?"
        )
    ordered = sorted(data, key=lambda d: int(d.get("index", 0)))
    out = []
    for d in ordered:
        emb = d.get("embedding")
        if isinstance(emb, str):  # base64 float32
            out.append(np.frombuffer(base64.b64decode(emb), dtype=np.float32))
        else:
            out.append(np.asarray(emb, dtype=np.float32))
    return out


def _normalize(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(norms, 1e-12)).astype(np.float32)


class RemoteReranker:
    """A reranker served by ``vllm serve MODEL --runner pooling`` (a cross-encoder / reranker), through
    ``/v1/score`` (``api="score"``) or ``/rerank`` (``api="rerank"``, Jina / Cohere form).

    Same ``score`` / ``rerank`` surface as :class:`umr.Reranker`.  Text goes as strings; an image (or
    text + image) goes as ``{"content": [image_url part, text part]}`` for servers whose model takes
    images (for example ``jinaai/jina-reranker-m0``).  The server's model decides the prompt: a
    per-call ``instruction`` is not supported and raises.
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
        self.client = _Client(
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
        img = _to_rgb(item.load_image())
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
        items = coerce_inputs(list(candidates) if not isinstance(candidates, (str, dict)) else [candidates])
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

    def rerank(
        self,
        query: InputLike,
        candidates: Iterable[InputLike],
        top_n: int | None = None,
        instruction: str | None = None,
        **kwargs: Any,
    ) -> list[tuple[int, float]]:
        """``(index, score)`` best first (ties keep the candidates' order); ``top_n`` keeps the best."""
        from umr.reranker import check_top_n, rank_scores

        n = check_top_n(top_n)
        return rank_scores(self.score(query, candidates, instruction, **kwargs), n)

    def close(self) -> None:
        self.client.close()
