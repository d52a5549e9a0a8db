"""Contrastive and distillation losses on embedding matrices.

Shapes: ``q`` (B, H) query vectors, ``d`` (M, H) document vectors (positives, explicit negatives and
any other candidates of the batch), both L2-normalised, so ``q @ d.T`` are cosine similarities.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

#: temperatures below this make the softmax numerically brittle; a learnable one is clamped here
MIN_TEMPERATURE = 0.005
MAX_TEMPERATURE = 1.0


class Temperature(torch.nn.Module):
    """InfoNCE temperature, fixed or learnable (stored as a log so it stays positive)."""

    def __init__(self, value: float = 0.05, learnable: bool = False) -> None:
        super().__init__()
        if not MIN_TEMPERATURE <= value <= MAX_TEMPERATURE:
            raise ValueError(f"temperature must be in [{MIN_TEMPERATURE}, {MAX_TEMPERATURE}], got {value}")
        self.log_value = torch.nn.Parameter(torch.tensor(math.log(value)), requires_grad=learnable)

    @property
    def learnable(self) -> bool:
        return bool(self.log_value.requires_grad)

    def forward(self) -> torch.Tensor:
        return self.log_value.exp().clamp(MIN_TEMPERATURE, MAX_TEMPERATURE)

    def item(self) -> float:
        return float(self.forward().detach())


def info_nce(
    q: torch.Tensor,
    d: torch.Tensor,
    positive: torch.Tensor,
    temperature: torch.Tensor | float,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean InfoNCE loss: ``-log softmax(q_i . d / t)[positive_i]`` over all documents of the batch.

    Every document of the batch that is not a query's positive is a negative for it (in-batch and
    explicit negatives alike). ``mask`` (B, M) bool removes entries from the softmax (other known
    positives of a query, which must not be pushed away); a query's own positive is never masked.
    """
    if q.ndim != 2 or d.ndim != 2 or q.shape[1] != d.shape[1]:
        raise ValueError(f"q and d must be (B, H) and (M, H), got {tuple(q.shape)} and {tuple(d.shape)}")
    logits = (q @ d.T) / temperature  # (B, M)
    if mask is not None:
        keep_pos = torch.zeros_like(mask)
        keep_pos[torch.arange(len(positive), device=mask.device), positive.to(mask.device)] = True
        logits = logits.masked_fill(mask & ~keep_pos, float("-inf"))
    return F.cross_entropy(logits, positive.to(logits.device))


def distill_kl(
    student: torch.Tensor,
    teacher: torch.Tensor,
    student_temperature: torch.Tensor | float,
    teacher_temperature: float,
) -> torch.Tensor:
    """``KL(softmax(teacher / t_r) || softmax(student / t))`` per query, averaged over queries.

    ``student`` (B, K) are the embedder's similarities to each query's top-K candidates, ``teacher``
    (B, K) the reranker's scores of the same candidates (no gradient flows into the teacher).
    """
    if student.shape != teacher.shape or student.ndim != 2:
        raise ValueError(f"student and teacher must both be (B, K), got {tuple(student.shape)}, {tuple(teacher.shape)}")
    log_p_student = F.log_softmax(student / student_temperature, dim=-1)
    p_teacher = F.softmax(teacher.to(student.dtype).detach() / teacher_temperature, dim=-1)
    return F.kl_div(log_p_student, p_teacher, reduction="batchmean")
