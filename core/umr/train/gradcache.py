"""GradCache-style chunked contrastive step: a large effective batch with the memory of a small one.

The contrastive loss couples every query with every document of the batch, so plain gradient
accumulation would shrink the set of in-batch negatives. GradCache (Gao et al., 2021) keeps the full
batch instead:

1. embed every chunk without building a graph;
2. compute the loss on the detached embeddings and its gradient with respect to each embedding;
3. embed each chunk again, this time with a graph, and back-propagate the cached embedding gradients.

The gradients equal those of one big forward pass (up to float rounding). Random state (dropout) is
recorded before each chunk's first pass and replayed for the second, so the two passes match.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import torch

T = TypeVar("T")

Encode = Callable[[list[Any]], torch.Tensor]


class _RandomState:
    """CPU and CUDA generator states at one moment, to replay a forward pass with the same dropout."""

    def __init__(self) -> None:
        self.cpu = torch.get_rng_state()
        self.cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None

    @contextmanager
    def replay(self) -> Iterator[None]:
        devices = list(range(torch.cuda.device_count())) if self.cuda is not None else []
        with torch.random.fork_rng(devices=devices):
            torch.set_rng_state(self.cpu)
            if self.cuda is not None:
                torch.cuda.set_rng_state_all(self.cuda)
            yield


def chunks(items: Sequence[T], size: int) -> list[list[T]]:
    if size <= 0:
        raise ValueError(f"chunk size must be a positive integer, got {size}")
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


def contrastive_step(
    encode_sides: Sequence[Encode],
    sides: Sequence[Sequence[Any]],
    loss_fn: Callable[..., torch.Tensor],
    chunk_size: int | None = None,
) -> torch.Tensor:
    """Run forward and backward for one contrastive batch; returns the (detached) loss.

    ``sides`` are the input lists (queries, documents), ``encode_sides[i]`` turns a list of inputs of
    side ``i`` into an ``(n, H)`` tensor, and ``loss_fn(*embeddings)`` gives a scalar. Gradients are
    accumulated into the parameters (the caller steps the optimizer). ``chunk_size=None`` (or a batch
    that fits one chunk per side) does one ordinary forward/backward; otherwise the GradCache route.
    """
    if len(encode_sides) != len(sides):
        raise ValueError("one encode function per side is needed")
    if chunk_size is None or all(len(s) <= chunk_size for s in sides):
        reps = [enc(list(s)) for enc, s in zip(encode_sides, sides)]
        loss = loss_fn(*reps)
        loss.backward()
        return loss.detach()

    side_chunks = [chunks(s, chunk_size) for s in sides]
    states: list[list[_RandomState]] = []
    cached: list[torch.Tensor] = []
    with torch.no_grad():
        for enc, parts in zip(encode_sides, side_chunks):
            side_states = []
            outs = []
            for part in parts:
                side_states.append(_RandomState())
                outs.append(enc(part))
            states.append(side_states)
            cached.append(torch.cat(outs).detach().requires_grad_(True))
    loss = loss_fn(*cached)
    loss.backward()  # gradients of the loss w.r.t. each embedding (and any loss parameters)
    for enc, parts, side_states, reps in zip(encode_sides, side_chunks, states, cached):
        grad = reps.grad
        if grad is None:  # this side does not enter the loss
            continue
        start = 0
        for part, state in zip(parts, side_states):
            stop = start + len(part)
            with state.replay():
                out = enc(part)
            out.backward(grad[start:stop].to(out.dtype))
            start = stop
    return loss.detach()
