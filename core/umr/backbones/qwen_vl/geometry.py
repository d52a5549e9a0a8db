"""Qwen-VL resize arithmetic, without torch: ``smart_resize`` (the factor-28/32 grid), the aspect-ratio
clamp, and :class:`QwenRenderPlan`, the picklable plan a renderer uses to draw a page straight at the
size the processor would resize it to (planned-size rendering, :mod:`umr.documents.plan`).

Render worker processes unpickle a plan, so this module imports nothing heavy (``math`` only; its
package imports numpy and PIL, never torch).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = [
    "MAX_ASPECT_RATIO",
    "QWEN_UTILS_MAX_PIXELS",
    "QWEN_UTILS_MIN_PIXELS",
    "QwenRenderPlan",
    "clamp_aspect",
    "smart_resize",
]

# qwen-vl-utils ``fetch_image`` defaults (first of GME's two resizes)
QWEN_UTILS_MIN_PIXELS = 4 * 28 * 28
QWEN_UTILS_MAX_PIXELS = 16384 * 28 * 28
MAX_ASPECT_RATIO = 200

#: PIL's BICUBIC: the filter of the processor's first resize (``Processor.resize``)
_BICUBIC = 3


def smart_resize(
    height: int, width: int, factor: int = 28, min_pixels: int = 56 * 56, max_pixels: int = 28 * 28 * 1280
) -> tuple[int, int]:
    """Nearest (height, width) that are multiples of ``factor`` with an area in [min_pixels, max_pixels].

    Same arithmetic as Qwen2-VL's processors; an aspect ratio above 200 is first brought to 200 by
    clamping the long side (the reference raises instead, which would crash on a 10000x50 strip).
    """
    height, width = clamp_aspect(height, width)
    h_bar = max(factor, round(height / factor) * factor)
    w_bar = max(factor, round(width / factor) * factor)
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def clamp_aspect(height: int, width: int, max_ratio: float = MAX_ASPECT_RATIO) -> tuple[int, int]:
    """Shorten the long side so that long / short <= ``max_ratio`` (strictly below for the processor)."""
    if max(height, width) / min(height, width) > max_ratio:
        if height > width:
            height = int(width * max_ratio)
        else:
            width = int(height * max_ratio)
    return height, width


@dataclass(frozen=True)
class QwenRenderPlan:
    """The sizes a Qwen-VL processor resizes an image to, as plain data (picklable, no model).

    ``factor``: patch size x merge size (28, or 32 for Qwen3-VL); ``min_pixels`` / ``max_pixels``: the
    final budget; ``pre_resize``: ``(min, max)`` pixels of the qwen-vl-utils style first resize, ``None``
    when the recipe has none; ``resample``: the PIL filter of the processor's first resize (a renderer's
    last resort when its pixel box misses the planned size by a rounding).

    :meth:`sizes` equals ``Processor.geometry``; :meth:`target_size` is the size a renderer draws a page
    at so that the processor's resizes are no-ops.
    """

    factor: int
    min_pixels: int
    max_pixels: int
    pre_resize: tuple[int, int] | None = None
    resample: int = _BICUBIC

    def sizes(self, width: int, height: int) -> tuple[tuple[int, int] | None, tuple[int, int]]:
        """``(pre_size, final_size)`` (each ``(width, height)``; ``pre_size`` None without a first resize)
        of an image of ``width x height``, as ``Processor.geometry`` computes them."""
        pre = None
        if self.pre_resize is not None:
            height, width = smart_resize(height, width, self.factor, *self.pre_resize)
            pre = (width, height)
        fh, fw = smart_resize(height, width, self.factor, self.min_pixels, self.max_pixels)
        return pre, (fw, fh)

    def _first(self, size: tuple[int, int]) -> tuple[int, int]:
        """What the processor's first resize makes of ``size``: the pre-resize, else the aspect clamp."""
        pre, _ = self.sizes(*size)
        if pre is not None:
            return pre
        h, w = clamp_aspect(size[1], size[0])
        return w, h

    def target_size(self, width: int, height: int, max_pixels: int) -> tuple[int, int] | None:
        """The size to render a page at whose budget-fitted render would be ``width x height``: the
        processor's first planned size (``pre_size``, else ``final_size``) such that the processor's
        first resize leaves it as it is, it ends at the same final size, and it has at most
        ``max_pixels`` pixels; ``None`` when no planned size qualifies (render as fitted)."""
        pre, final = self.sizes(width, height)
        for size in (pre, final):
            if size is None or size[0] * size[1] > max_pixels:
                continue
            if self._first(size) == size and self.sizes(*size)[1] == final:
                return size
        return None
