"""Planned-size rendering: draw a vector page straight at the size the embedder will resize it to.

A PDF (or SVG) page is rendered with a uniform zoom that fits the pixel budget ("fit"); an embedder
that preprocesses in umr then resizes that image to its own grid (Qwen-VL: sides multiples of 28, one
or two bicubic resizes), a full pass over the pixels that costs more than the rendering.  With a
:class:`RenderPlan` the renderer draws the page with an anisotropic zoom so that the pixmap has exactly
the size the embedder would resize the fitted render to ("planned"): the embedder's resizes become
no-ops, and the page is resampled once (by the rasteriser, from vectors) instead of twice.

This changes the pixels, hence the vectors, of newly rendered pages: a store records which rendering
it uses (:data:`RENDER_MODES`, collection metadata ``umr_render``) so that all its pages come from one.
Raster image files are never rendered and are unaffected.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

__all__ = ["DEFAULT_RENDER", "RENDER_MODES", "RenderPlan", "validate_render"]

#: ``"planned"``: vector pages drawn at the embedder's planned size (when the embedder has a plan);
#: ``"fit"``: drawn with a uniform zoom that fits the pixel budget (stores made before planned
#: rendering existed, and embedders that preprocess elsewhere).
RENDER_MODES: tuple[str, ...] = ("planned", "fit")
#: what a new store records when nothing is asked (and its embedder has a plan)
DEFAULT_RENDER = "planned"


def validate_render(mode: object) -> str:
    """``mode`` if it is one of :data:`RENDER_MODES`, else a ``ValueError`` naming the choices."""
    if not isinstance(mode, str) or mode not in RENDER_MODES:
        raise ValueError(f"unknown render mode {mode!r}; choose one of: {', '.join(RENDER_MODES)}")
    return mode


@runtime_checkable
class RenderPlan(Protocol):
    """What a renderer needs of an embedder's preprocessing (e.g. ``Processor.render_plan()``).

    It is sent to render worker processes, so it must pickle (plain data; its module must import
    without torch).  ``resample``: a PIL filter, used only when the rasteriser's pixel box misses the
    planned size by a rounding and the pixmap must be resized to it.
    """

    resample: int

    def target_size(self, width: int, height: int, max_pixels: int) -> tuple[int, int] | None:
        """``(width, height)`` to draw a page at whose budget-fitted render is ``width x height``, with
        at most ``max_pixels`` pixels; ``None`` to draw it as fitted."""
        ...
