"""Pooling of final hidden states ``(B, L, H)`` into what an engine returns per row.

A pooler is built once per embedder from the recipe (``make_pooler``) and called on every batch as
``pooler(hidden, attention_mask, input_ids)``. Single-vector poolers return ``(B, H)``; the registry is
open (``register_pooler``), so a late-interaction head (one vector per token, ``(B, L, D)``) plugs in
under its own name without touching the engine.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import torch


class Pooler(Protocol):
    """``(hidden (B, L, H), attention_mask (B, L), input_ids (B, L)) -> pooled`` for one batch."""

    def __call__(
        self, hidden: torch.Tensor, attention_mask: torch.Tensor, input_ids: torch.Tensor
    ) -> torch.Tensor: ...


def last_token(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """The hidden state of each row's last real token ``(B, H)``; works for left and right padding."""
    bsz, length = attention_mask.shape
    # index of the last 1 in each row: L - 1 - (position of the first 1 in the reversed row)
    last = length - 1 - attention_mask.flip(-1).to(torch.long).argmax(-1)
    return hidden[torch.arange(bsz, device=hidden.device), last.to(hidden.device)]


def span_mask(input_ids: torch.Tensor, start_id: int, end_id: int) -> torch.Tensor:
    """1 inside [start, end] (both markers included) of each row, 0 elsewhere; (B, L) long."""
    starts = (input_ids == start_id).to(torch.long).cumsum(-1)
    ends = (input_ids == end_id).to(torch.long).cumsum(-1)
    inside = (starts > ends) | (input_ids == end_id)
    return inside.to(torch.long)


def mean(hidden: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Mean ``(B, H)`` over positions where ``weights`` (B, L) is 1; an all-zero row gives zeros."""
    w = weights.to(hidden.dtype).unsqueeze(-1)  # (B, L, 1)
    total = w.sum(1)  # (B, 1)
    summed = (hidden * w).sum(1)  # (B, H)
    return summed / total.clamp_min(1.0)


def masked_mean(
    hidden: torch.Tensor,
    attention_mask: torch.Tensor,
    input_ids: torch.Tensor,
    exclude_span: tuple[int, int] | None = None,
) -> torch.Tensor:
    """Mean over real tokens, leaving out the ``exclude_span`` markers' span (U-MARVEL's instruction).

    A row whose every token would be left out keeps the plain mean over its real tokens.
    """
    weights = attention_mask.to(torch.long)
    if exclude_span is not None:
        kept = weights * (1 - span_mask(input_ids, *exclude_span))
        empty = kept.sum(-1, keepdim=True) == 0
        weights = torch.where(empty, weights, kept)
    return mean(hidden, weights)


def _make_last(**_: Any) -> Pooler:
    return lambda hidden, attention_mask, input_ids: last_token(hidden, attention_mask)


def _make_mean(*, exclude_span: tuple[int, int] | None = None, **_: Any) -> Pooler:
    return lambda hidden, attention_mask, input_ids: masked_mean(hidden, attention_mask, input_ids, exclude_span)


#: pooling name (a recipe's ``pooling``) -> factory taking keyword options (``exclude_span``) -> Pooler
POOLERS: dict[str, Callable[..., Pooler]] = {"last": _make_last, "mean": _make_mean}


def register_pooler(name: str, factory: Callable[..., Pooler]) -> None:
    """Add a pooling kind; ``factory(**options)`` returns the pooler (options it does not use: ignore)."""
    POOLERS[name] = factory


def make_pooler(kind: str, **options: Any) -> Pooler:
    """The pooler of a recipe's pooling kind; ``ValueError`` naming the valid kinds otherwise."""
    if kind not in POOLERS:
        raise ValueError(f"unknown pooling {kind!r}; valid: {', '.join(repr(k) for k in POOLERS)}")
    return POOLERS[kind](**options)


def pool(
    kind: str,
    hidden: torch.Tensor,
    attention_mask: torch.Tensor,
    input_ids: torch.Tensor,
    exclude_span: tuple[int, int] | None = None,
) -> torch.Tensor:
    """One-shot form of ``make_pooler(kind, exclude_span=...)(hidden, attention_mask, input_ids)``."""
    return make_pooler(kind, exclude_span=exclude_span)(hidden, attention_mask, input_ids)
