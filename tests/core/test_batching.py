"""Token-budget planning, order restoration and out-of-memory back-off."""

from __future__ import annotations

import random

import pytest
import torch

from umr.batching import plan_batches, run_planned


def test_plan_is_a_permutation_within_budget() -> None:
    rng = random.Random(0)
    costs = [rng.randint(1, 2000) for _ in range(300)]
    plan = plan_batches(costs, max_tokens=4096, max_batch_size=16)
    flat = [i for b in plan for i in b]
    assert sorted(flat) == list(range(len(costs)))
    for b in plan:
        assert len(b) <= 16
        assert len(b) == 1 or max(costs[i] for i in b) * len(b) <= 4096
    # longest first: the first batch holds the most expensive input
    assert plan[0][0] == max(range(len(costs)), key=lambda i: costs[i])


def test_oversized_input_gets_its_own_batch() -> None:
    plan = plan_batches([10, 99999, 10], max_tokens=100, max_batch_size=8)
    assert [1] in plan and sorted(i for b in plan for i in b) == [0, 1, 2]


def test_invalid_budget() -> None:
    with pytest.raises(ValueError):
        plan_batches([1], 0, 1)


def test_results_come_back_in_caller_order() -> None:
    costs = [5, 1, 9, 3, 7]
    out = run_planned(
        costs, max_tokens=12, max_batch_size=2,
        collate=lambda idx: torch.tensor(idx, dtype=torch.float32),
        forward=lambda t: t.unsqueeze(1) * 10,
    )
    assert out.squeeze(1).tolist() == [0, 10, 20, 30, 40]


def test_out_of_memory_halves_and_retries() -> None:
    calls: list[int] = []
    ok: list[int] = []

    def forward(t: torch.Tensor) -> torch.Tensor:
        calls.append(len(t))
        if len(t) > 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate")
        ok.append(len(t))
        return t.unsqueeze(1)

    costs = [1] * 8
    out = run_planned(costs, max_tokens=100, max_batch_size=8,
                      collate=lambda idx: torch.tensor(idx, dtype=torch.float32), forward=forward)
    assert out.squeeze(1).tolist() == list(range(8))
    assert calls[0] == 8 and sum(ok) == 8 and max(ok) <= 2


def test_single_input_oom_is_raised() -> None:
    def forward(t: torch.Tensor) -> torch.Tensor:
        raise torch.cuda.OutOfMemoryError("CUDA out of memory")

    with pytest.raises(torch.cuda.OutOfMemoryError):
        run_planned([1], max_tokens=10, max_batch_size=1,
                    collate=lambda idx: torch.zeros(1), forward=forward)
