"""Token-budget batch planning, prefetching, OOM back-off and order restoration.

Generic: nothing here knows a model family. Each input's token cost is known before any forward
(``umr.backbones.base.PreparedInput.num_tokens``, or a reranker pair's ``num_tokens``). Inputs
are sorted longest first (an out-of-memory error shows up on the first batch, not the last), then
batches are filled while ``longest * count`` stays within the token budget and ``count`` within the
batch size. Results are written back at each input's original position.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

import torch

logger = logging.getLogger(__name__)

T = TypeVar("T")
B = TypeVar("B")


def plan_batches(costs: Sequence[int], max_tokens: int, max_batch_size: int) -> list[list[int]]:
    """Group indices into batches whose padded cost (longest x count) fits ``max_tokens``.

    An input longer than the budget alone gets a batch of its own. Batches hold indices in
    decreasing cost order; the concatenation of all batches is a permutation of ``range(len(costs))``.
    """
    if max_tokens <= 0 or max_batch_size <= 0:
        raise ValueError("max_tokens and max_batch_size must be positive")
    order = sorted(range(len(costs)), key=lambda i: (-costs[i], i))
    batches: list[list[int]] = []
    current: list[int] = []
    longest = 0
    for i in order:
        c = max(1, int(costs[i]))
        if current and (max(longest, c) * (len(current) + 1) > max_tokens or len(current) >= max_batch_size):
            batches.append(current)
            current, longest = [], 0
        current.append(i)
        longest = max(longest, c)
    if current:
        batches.append(current)
    return batches


def is_oom(exc: BaseException) -> bool:
    if isinstance(exc, torch.cuda.OutOfMemoryError):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def prefetch(items: Iterable[T], prepare: Callable[[T], B], enabled: bool = True) -> Iterator[tuple[T, B]]:
    """Yield ``(item, prepare(item))``, preparing the next item in a thread while the caller works.

    Decoding and resizing images (PIL releases the GIL) then overlaps with the model's forward pass.
    """
    if not enabled:
        for item in items:
            yield item, prepare(item)
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="umr-prefetch") as pool:
        it = iter(items)
        pending: tuple[T, Future[B]] | None = None
        for item in it:
            fut = pool.submit(prepare, item)
            if pending is not None:
                yield pending[0], pending[1].result()
            pending = (item, fut)
        if pending is not None:
            yield pending[0], pending[1].result()


def run_planned(
    costs: Sequence[int],
    *,
    max_tokens: int,
    max_batch_size: int,
    collate: Callable[[list[int]], B],
    forward: Callable[[B], torch.Tensor],
    on_batch: Callable[[int], None] | None = None,
    overlap: bool = True,
) -> torch.Tensor:
    """Plan batches, run ``forward(collate(indices))`` on each, return rows in the original order.

    ``forward`` returns one row per index (``(len(indices), ...)``, any trailing shape); the result is
    ``(len(costs), ...)`` on the device of the first batch's rows.

    On a CUDA out-of-memory error the batch is split in halves and retried, and the budget for the
    rest of the run is halved too; a single input that does not fit raises the original error.
    """
    n = len(costs)
    if n == 0:
        raise ValueError("nothing to run")
    budget = max_tokens
    out: torch.Tensor | None = None

    def store(indices: list[int], rows: torch.Tensor) -> None:
        nonlocal out
        rows = rows.detach()
        if out is None:
            out = torch.empty((n, *rows.shape[1:]), dtype=rows.dtype, device=rows.device)
        out[torch.tensor(indices, device=rows.device)] = rows

    def run(indices: list[int], batch: B | None) -> None:
        nonlocal budget
        try:
            rows = forward(batch if batch is not None else collate(indices))
        except Exception as exc:
            if not is_oom(exc) or len(indices) == 1:
                raise
            torch.cuda.empty_cache()
            budget = max(1, budget // 2)
            logger.warning("out of memory on a batch of %d; halving the token budget to %d", len(indices), budget)
            half = len(indices) // 2
            run(indices[:half], None)
            run(indices[half:], None)
            return
        store(indices, rows)

    plan = plan_batches(costs, max_tokens, max_batch_size)
    for indices, batch in prefetch(plan, collate, enabled=overlap and len(plan) > 1):
        if budget < max_tokens:  # after an OOM, re-split what was planned with the old budget
            for sub in plan_batches([costs[i] for i in indices], budget, max_batch_size):
                run([indices[j] for j in sub], None)
        else:
            run(indices, batch)
        if on_batch is not None:
            on_batch(len(indices))
    assert out is not None
    return out
