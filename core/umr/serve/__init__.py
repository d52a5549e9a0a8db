"""``umr serve``: an HTTP service for UMR models and stores (``pip install "umr[serve]"``).

- ``POST /v1/embeddings`` (OpenAI format, plus ``input_type`` query/document and ``instruction``),
- ``POST /v1/rerank`` (Cohere / Jina format), ``POST /v1/search``, ``POST/GET/DELETE /v1/documents``,
  ``GET /v1/jobs/{id}``, ``GET /health``, ``GET /metrics``, and a search page at ``/``.

Requests of concurrent clients are pooled into shared forward passes (:mod:`umr.serve.batcher`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["ServeConfig", "create_app"]

if TYPE_CHECKING:  # pragma: no cover
    from .app import create_app
    from .config import ServeConfig


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from .app import create_app

        return create_app
    if name == "ServeConfig":
        from .config import ServeConfig

        return ServeConfig
    raise AttributeError(f"module 'umr.serve' has no attribute {name!r}")
