"""``umr serve``: the HTTP service (OpenAI / Cohere endpoints, store routes, the search page).

The command lives with the service in :mod:`umr.serve.command`; FastAPI loads only when it runs.
"""

from __future__ import annotations

from umr.serve.command import add_parser as register
from umr.serve.command import run

__all__ = ["register", "run"]
