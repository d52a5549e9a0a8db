"""Old home of the Qwen-VL input processing; it now lives in ``umr.backbones.qwen_vl.processing``.

Kept so that ``from umr.processing import Processor, smart_resize, ...`` keeps working.
"""

from __future__ import annotations

from umr.backbones.base import EncodedImage, ImageGeometry, PreparedInput, preprocess_pool
from umr.backbones.qwen_vl.processing import (
    MAX_ASPECT_RATIO,
    QWEN_UTILS_MAX_PIXELS,
    QWEN_UTILS_MIN_PIXELS,
    Processor,
    _to_rgb,
    clamp_aspect,
    smart_resize,
    to_rgb,
)

__all__ = [
    "MAX_ASPECT_RATIO",
    "QWEN_UTILS_MAX_PIXELS",
    "QWEN_UTILS_MIN_PIXELS",
    "EncodedImage",
    "ImageGeometry",
    "PreparedInput",
    "Processor",
    "_to_rgb",
    "clamp_aspect",
    "preprocess_pool",
    "smart_resize",
    "to_rgb",
]
