"""Pooling of hidden states (B, L, H) into one vector per row (B, H)."""

from __future__ import annotations

import torch


def last_token(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """The hidden state of each row's last real token; works for left and right padding."""
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
    """Mean over positions where ``weights`` is 1. Rows with no such position fall back to all tokens."""
    w = weights.to(hidden.dtype).unsqueeze(-1)
    total = w.sum(1)
    summed = (hidden * w).sum(1)
    return summed / total.clamp_min(1.0)


def pool(
    kind: str,
    hidden: torch.Tensor,
    attention_mask: torch.Tensor,
    input_ids: torch.Tensor,
    exclude_span: tuple[int, int] | None = None,
) -> torch.Tensor:
    """Dispatch on the recipe's pooling kind ("last" or "mean")."""
    if kind == "last":
        return last_token(hidden, attention_mask)
    if kind == "mean":
        weights = attention_mask.to(torch.long)
        if exclude_span is not None:
            kept = weights * (1 - span_mask(input_ids, *exclude_span))
            # keep the plain mean for a row whose whole sequence would be excluded
            empty = kept.sum(-1, keepdim=True) == 0
            weights = torch.where(empty, weights, kept)
        return mean(hidden, weights)
    raise ValueError(f"unknown pooling {kind!r}; valid: 'last', 'mean'")
