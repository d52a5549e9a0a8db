"""The contract between the generic pipeline and a backbone family, and the types they exchange.

A backbone package (``umr.backbones.qwen_vl``) knows one family of transformers architectures: how its
inputs become tensors (a ``processing`` module: prompt tokens, image sizes, pixels; never the model)
and how the model turns those tensors into final hidden states (a ``modeling`` module: positions,
attention mode, visual features; never PIL). The native engine (``umr.engines.native``) plans batches,
pools and normalises; it only talks to a backbone through ``Backbone`` and the types below.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

import numpy as np
from PIL import Image

from umr.inputs import MultimodalInput

if TYPE_CHECKING:  # pragma: no cover
    import torch

#: how an image with transparency becomes RGB (a recipe field, set from each model's reference code):
#: "drop": ``convert("RGB")``, the colour under the alpha channel is kept as it is;
#: "white-rgba": only mode RGBA is composited on white, other modes ``convert("RGB")`` (qwen-vl-utils'
#: ``to_rgb`` since January 2025);
#: "white-any": every image with an alpha band or a transparency key is composited on white
#: (transformers 5 ``image_transforms.convert_to_rgb``).
AlphaMode = Literal["drop", "white-rgba", "white-any"]
ALPHA_MODES: tuple[str, ...] = ("drop", "white-rgba", "white-any")


def to_rgb(img: Image.Image, alpha: AlphaMode = "drop") -> Image.Image:
    """An RGB image the way the recipe's reference code makes one (see ``AlphaMode``).

    - ``"drop"``: ``img.convert("RGB")``: the colour stored under transparent pixels shows (GME's
      ``fetch_image``, qwen-vl-utils before 2025, transformers 4 ``convert_to_rgb``).
    - ``"white-rgba"``: mode RGBA is pasted on white with its alpha as the mask; every other mode
      (LA, P with a transparency key, ...) is ``convert("RGB")`` (qwen-vl-utils' ``to_rgb``).
    - ``"white-any"``: any image with an alpha band or a transparency key goes through RGBA and is
      alpha-composited on white (transformers 5 ``convert_to_rgb``).

    16-bit and float greyscale images are first scaled to 8 bits (their maximum, or their range, maps to
    255): ``convert`` would clip them to white.
    """
    if img.mode == "RGB":
        return img
    if alpha == "white-rgba" and img.mode == "RGBA":
        background = Image.new("RGB", img.size, (255, 255, 255))
        background.paste(img, mask=img.getchannel("A"))
        return background
    if alpha == "white-any" and ("A" in img.getbands() or img.info.get("transparency") is not None):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if alpha not in ALPHA_MODES:
        raise ValueError(f"unknown alpha mode {alpha!r}; valid: {', '.join(ALPHA_MODES)}")
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float64)
        top = arr.max() or 1.0
        img = Image.fromarray((arr * (255.0 / top)).clip(0, 255).astype(np.uint8), mode="L")
    elif img.mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        scale = 255.0 / (hi - lo) if hi > lo else 0.0
        img = Image.fromarray(((arr - lo) * scale).clip(0, 255).astype(np.uint8), mode="L")
    return img.convert("RGB")


@dataclass(frozen=True)
class ImageGeometry:
    """Sizes an image goes through: after the optional pre-resize, and the final processor grid."""

    pre_size: tuple[int, int] | None  # (width, height) after the qwen-vl-utils style first resize
    final_size: tuple[int, int]  # (width, height) fed to the vision tower
    num_tokens: int  # visual tokens in the language model (after the 2x2 merge)


@dataclass
class PreparedInput:
    """One input, tokenised with a single image placeholder; its exact cost is known."""

    index: int
    input: MultimodalInput
    ids: list[int]  # prompt token ids, one placeholder token for the image (if any)
    geometry: ImageGeometry | None
    #: tokens kept of this input (its side's limit); None: the processor's ``max_length``
    max_length: int | None = None

    @property
    def num_tokens(self) -> int:
        """Tokens of the expanded prompt: the placeholder counts as the image's visual tokens."""
        extra = self.geometry.num_tokens - 1 if self.geometry else 0
        return len(self.ids) + extra


@dataclass(frozen=True)
class EncodedImage:
    """One image ready for the vision tower."""

    patches: np.ndarray  # (grid_t * grid_h * grid_w, C * T * P * P) float32
    grid: list[int]  # [t, h, w] in patches
    num_tokens: int  # placeholders in the language model (after the merge)


@runtime_checkable
class BackboneProcessor(Protocol):
    """What the native engine uses of a backbone's processor (``qwen_vl.processing.Processor``).

    Optional beyond these: ``render_plan()``, the processor's sizes as a picklable
    ``umr.documents.RenderPlan`` for planned-size rendering (``Embedder.render_plan`` is None without it,
    and stores then draw pages with the fit zoom)."""

    tokenizer: Any
    image_processor: Any
    min_pixels: int
    max_pixels: int
    max_length: int
    image_pad_id: int
    pad_id: int

    def token_id(self, token: str) -> int: ...

    def geometry(self, width: int, height: int) -> ImageGeometry: ...

    def prepare(
        self, index: int, item: MultimodalInput, prompt: str, max_length: int | None = None
    ) -> PreparedInput: ...

    def encode_image(self, item: MultimodalInput, geometry: ImageGeometry, owner: str) -> EncodedImage: ...

    def encode_images(
        self, jobs: Sequence[tuple[MultimodalInput, ImageGeometry, str]], pool: Executor | None = None
    ) -> list[EncodedImage]: ...

    def expand(self, ids: Sequence[int], images: Sequence[EncodedImage]) -> list[int]: ...

    def pad(self, rows: Sequence[Sequence[int]], images: Sequence[EncodedImage] = ()) -> dict[str, torch.Tensor]: ...

    def collate(self, batch: Sequence[PreparedInput], pool: Executor | None = None) -> dict[str, torch.Tensor]: ...


class Backbone(Protocol):
    """One family of architectures (several transformers ``model_type`` values may share one)."""

    #: the family's name in messages ("qwen-vl")
    name: str
    #: transformers ``model_type`` values this backbone runs
    model_types: tuple[str, ...]

    def load_image_processor(self, source: str, min_pixels: int, max_pixels: int) -> Any:
        """The family's image processor, loaded from a checkpoint folder or hub id."""
        ...

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
    ) -> BackboneProcessor:
        """Compose tokenizer and image processor into the object that turns inputs into tensors."""
        ...

    def forward_hidden(
        self, model: Any, batch: dict[str, torch.Tensor], *, positions: str, attention: str, image_token_id: int
    ) -> torch.Tensor:
        """Final-norm hidden states ``(B, L, H)`` of one collated batch (no lm_head)."""
        ...

    def answer_head(self, model: Any, token_ids: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The lm_head rows ``(k, H)`` (and bias ``(k,)`` or None) of ``token_ids``, float32."""
        ...


_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def preprocess_pool() -> ThreadPoolExecutor:
    """Process-wide threads for image decoding / resizing / patchifying (used when a GPU is the model's
    device, so that CPU preprocessing of a batch keeps up with the forward pass)."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            workers = max(1, min(8, (os.cpu_count() or 2) - 1))
            _POOL = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="umr-preprocess")
        return _POOL
