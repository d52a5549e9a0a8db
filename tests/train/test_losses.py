"""Loss math against hand computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from umr.train.losses import Temperature, distill_kl, info_nce


def _normed(rows: list[list[float]]) -> torch.Tensor:
    t = torch.tensor(rows, dtype=torch.float64)
    return t / t.norm(dim=-1, keepdim=True)


def test_info_nce_matches_hand_computation() -> None:
    q = _normed([[1, 0, 0], [0, 1, 0.5]])
    d = _normed([[1, 0.2, 0], [0, 1, 0], [0.3, 0.3, 1]])  # two positives + one explicit negative
    pos = torch.tensor([0, 1])
    t = 0.1
    got = float(info_nce(q, d, pos, t))
    s = (q @ d.T).numpy() / t
    expected = np.mean([-(s[i, pos[i]] - math.log(np.exp(s[i]).sum())) for i in range(2)])
    assert got == pytest.approx(expected, rel=1e-9)


def test_info_nce_mask_removes_other_positives_but_never_the_own() -> None:
    q = _normed([[1, 0], [0, 1]])
    d = _normed([[1, 0.1], [0.9, 0.2], [0, 1]])
    pos = torch.tensor([0, 2])
    mask = torch.tensor([[True, True, False], [False, False, True]])  # row 0: column 1 is another positive
    got = float(info_nce(q, d, pos, 0.05, mask))
    s = (q @ d.T).numpy() / 0.05
    row0 = -(s[0, 0] - math.log(np.exp(s[0, [0, 2]]).sum()))  # column 1 dropped, own positive kept
    row1 = -(s[1, 2] - math.log(np.exp(s[1]).sum()))
    assert got == pytest.approx((row0 + row1) / 2, rel=1e-9)
    assert got < float(info_nce(q, d, pos, 0.05))  # masking a near-duplicate lowers the loss


def test_info_nce_rejects_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="q and d must be"):
        info_nce(torch.zeros(2, 3), torch.zeros(2, 4), torch.tensor([0, 1]), 0.1)


def test_distill_kl_matches_hand_computation_and_is_zero_when_equal() -> None:
    student = torch.tensor([[0.9, 0.5, 0.1], [0.2, 0.8, 0.3]], dtype=torch.float64)
    teacher = torch.tensor([[0.95, 0.3, 0.05], [0.1, 0.9, 0.6]], dtype=torch.float64)
    ts, tr = 0.05, 0.1
    got = float(distill_kl(student, teacher, ts, tr))

    def softmax(x: np.ndarray) -> np.ndarray:
        e = np.exp(x - x.max(-1, keepdims=True))
        return e / e.sum(-1, keepdims=True)

    p = softmax(teacher.numpy() / tr)
    qd = softmax(student.numpy() / ts)
    expected = float(np.mean(np.sum(p * (np.log(p) - np.log(qd)), axis=-1)))
    assert got == pytest.approx(expected, rel=1e-9)
    assert float(distill_kl(teacher * (ts / tr), teacher, ts, tr)) == pytest.approx(0.0, abs=1e-12)


def test_distill_kl_gradient_flows_to_student_only() -> None:
    student = torch.tensor([[0.3, 0.2]], requires_grad=True)
    teacher = torch.tensor([[0.9, 0.1]], requires_grad=True)
    distill_kl(student, teacher, 0.05, 0.1).backward()
    assert student.grad is not None and float(student.grad.abs().sum()) > 0
    assert teacher.grad is None


def test_temperature_fixed_or_learnable() -> None:
    fixed = Temperature(0.05)
    assert fixed.item() == pytest.approx(0.05) and not fixed.learnable
    learn = Temperature(0.05, learnable=True)
    q = _normed([[1, 0.8], [0.7, 1]]).float()
    loss = info_nce(q, _normed([[1, 0.9], [0.9, 1]]).float(), torch.tensor([0, 1]), learn())
    loss.backward()
    assert learn.log_value.grad is not None and float(learn.log_value.grad) != 0.0
    with pytest.raises(ValueError, match="temperature must be in"):
        Temperature(0.0)


def test_auto_epochs_and_lr() -> None:
    from types import SimpleNamespace

    from umr.train.trainer import AUTO_MAX_EPOCHS, auto_epochs, auto_lr

    assert auto_epochs(192, 32) == AUTO_MAX_EPOCHS  # 6 steps a pass: capped
    assert auto_epochs(640, 32) == 5  # 20 steps a pass: 5 passes for 100 steps
    assert auto_epochs(100_000, 32) == 1
    assert auto_lr(SimpleNamespace(native_dim=1536), lora=True) == 1e-4
    assert auto_lr(SimpleNamespace(native_dim=1536), lora=False) == 1e-5
    assert auto_lr(SimpleNamespace(native_dim=64), lora=True) == 5e-3
