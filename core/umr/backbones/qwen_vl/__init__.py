"""The Qwen-VL backbone family: Qwen2-VL, Qwen2.5-VL and Qwen3-VL (``model_type`` qwen2_vl, qwen2_5_vl,
qwen3_vl).

``processing``: inputs to tensors (resize arithmetic, image processor, placeholders, alpha); never the
model. ``modeling``: tensors to hidden states (positions, visual scatter, attention mode, answer rows of
the lm_head); never PIL. ``QWEN_VL`` is the ``umr.backbones.base.Backbone`` the native engine uses.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from umr.backbones.base import AlphaMode

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from umr.backbones.qwen_vl.processing import Processor


class QwenVLBackbone:
    """``Backbone`` for the Qwen-VL family; heavy modules are imported on first use."""

    name = "qwen-vl"
    model_types: tuple[str, ...] = ("qwen2_vl", "qwen2_5_vl", "qwen3_vl")

    def load_image_processor(self, source: str, min_pixels: int, max_pixels: int) -> Any:
        from umr.backbones.qwen_vl.processing import load_image_processor

        return load_image_processor(source, min_pixels, max_pixels)

    def make_processor(
        self,
        tokenizer: Any,
        image_processor: Any,
        *,
        image_pad_token: str,
        min_pixels: int,
        max_pixels: int,
        max_length: int,
        pre_resize: bool,
        padding_side: str,
        alpha: AlphaMode,
        pre_resize_pixels: tuple[int, int] | None = None,
    ) -> Processor:
        from umr.backbones.qwen_vl.processing import Processor

        return Processor(
            tokenizer, image_processor, image_pad_token=image_pad_token, min_pixels=min_pixels,
            max_pixels=max_pixels, max_length=max_length, pre_resize=pre_resize, padding_side=padding_side,
            pre_resize_pixels=pre_resize_pixels, alpha=alpha,
        )

    def forward_hidden(
        self, model: Any, batch: dict[str, torch.Tensor], *, positions: str, attention: str, image_token_id: int
    ) -> torch.Tensor:
        from umr.backbones.qwen_vl.modeling import forward_hidden

        return forward_hidden(model, batch, positions=positions, attention=attention, image_token_id=image_token_id)

    def answer_head(self, model: Any, token_ids: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor | None]:
        from umr.backbones.qwen_vl.modeling import answer_head

        return answer_head(model, token_ids)

    def __repr__(self) -> str:
        return f"QwenVLBackbone(model_types={self.model_types})"


QWEN_VL = QwenVLBackbone()

__all__ = ["QWEN_VL", "QwenVLBackbone"]
