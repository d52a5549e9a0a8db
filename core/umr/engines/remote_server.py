"""The remote-server engine: an OpenAI-compatible server (vLLM, SGLang) runs the model.

This module is the wire side, shared by ``umr.remote.RemoteEmbedder`` and ``RemoteReranker`` (the front
doors): one HTTP client with retries, back-off and clear errors (``ServerClient``), and the request and
answer formats (ChatML prompt to chat ``messages``, PNG data URIs, the embeddings answer). A recipe can
run here when its engine is ``servable`` (``umr.engines``): umr renders its prompts, the server runs the
forward pass. httpx is imported on first use (``pip install "umr[remote]"``).
"""

from __future__ import annotations

import base64
import io
import logging
import os
import random
import re
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
from PIL import Image

from umr.errors import ModelNotFoundError, RemoteServerError

logger = logging.getLogger("umr.remote")

RETRY_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
_TURN = re.compile(r"<\|im_start\|>(system|user|assistant)\n(.*?)(<\|im_end\|>\n?|$)", re.S)


def _httpx() -> Any:
    try:
        import httpx
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ImportError('the remote backend needs httpx: pip install "umr[remote]"') from exc
    return httpx


def api_key_from_env(api_key: str | None) -> str | None:
    """``api_key`` or ``$UMR_API_KEY`` (never logged)."""
    return api_key if api_key is not None else (os.environ.get("UMR_API_KEY") or None)


class ServerClient:
    """One HTTP client with retries, back-off and clear errors (shared by embedder and reranker).

    ``base_url``: ``http(s)://host:port`` (a trailing ``/v1`` is dropped); ``api_key``: bearer token;
    ``timeout``: seconds per request; ``max_retries``: retries of a failed request with ``backoff``
    seconds doubling each time up to ``max_backoff`` (a ``Retry-After`` header wins); ``transport``: an
    ``httpx`` transport (tests).
    """

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


_Client = ServerClient  # the old private name
