"""Qwen-VL inputs to tensors: prompt tokens, pixel budget, image conversion, collation. Never touches
the model (``modeling`` next to this module never touches PIL).

Everything specific to Qwen2-VL / Qwen2.5-VL / Qwen3-VL preprocessing lives here (the torch-free resize
arithmetic, ``smart_resize`` for the factor-28/32 grid, in ``geometry`` next to it): qwen-vl-utils' first resize, the ``<|image_pad|>`` placeholder that is
expanded to one token per merged 2x2 patch group, loading ``Qwen2VLImageProcessorPil`` (the PIL image
processor, which needs no torchvision), and the per-recipe alpha handling (``to_rgb``).

The work is split in two so that batches can be planned before any pixel is decoded:

1. ``Processor.prepare`` renders the prompt, tokenises it (with a single image placeholder) and computes
   the number of visual tokens from the image header size — cheap, exact token cost.
2. ``Processor.collate`` decodes and resizes the images of one planned batch, expands the placeholders,
   truncates, pads and returns tensors.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Executor
from typing import Any

import numpy as np
import torch
from PIL import Image

from umr.backbones.base import (
    ALPHA_MODES,
    AlphaMode,
    EncodedImage,
    ImageGeometry,
    PreparedInput,
    preprocess_pool,
    to_rgb,
)
from umr.errors import InputError, ModelNotFoundError
from umr.inputs import MultimodalInput

from .geometry import (
    MAX_ASPECT_RATIO,
    QWEN_UTILS_MAX_PIXELS,
    QWEN_UTILS_MIN_PIXELS,
    QwenRenderPlan,
    clamp_aspect,
    smart_resize,
)
from .patchify import FastPatchifier

__all__ = [
    "MAX_ASPECT_RATIO",
    "QWEN_UTILS_MAX_PIXELS",
    "QWEN_UTILS_MIN_PIXELS",
    "EncodedImage",
    "ImageGeometry",
    "PreparedInput",
    "Processor",
    "QwenRenderPlan",
    "clamp_aspect",
    "load_image_processor",
    "preprocess_pool",
    "smart_resize",
    "to_rgb",
]

class Processor:
    """Pixel budget, tokenisation and collation for Qwen-VL backbones (the prompt text comes rendered).

    ``tokenizer``: the checkpoint's tokenizer (its pad token pads, else ``<|endoftext|>``);
    ``image_processor``: a Qwen2-VL style image processor (``load_image_processor``), whose patch and
    merge sizes decide the resize factor (28 for Qwen2/2.5-VL, 32 for Qwen3-VL);
    ``image_pad_token``: the placeholder expanded to one token per visual token;
    ``min_pixels`` / ``max_pixels``: the final pixel budget of one image; ``max_length``: tokens kept per
    row (truncation on the right); ``pre_resize``: resize once like qwen-vl-utils ``fetch_image`` before
    the image processor resizes again (within ``pre_resize_pixels``, qwen-vl-utils' defaults unless a
    recipe says); ``padding_side``: "left" or "right"; ``alpha``: how transparency becomes RGB
    (``to_rgb``).
    """

    def __init__(
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
        pre_resize_pixels: tuple[int, int] | None = None,
        alpha: AlphaMode = "drop",
    ) -> None:
        if alpha not in ALPHA_MODES:
            raise ValueError(f"unknown alpha mode {alpha!r}; valid: {', '.join(ALPHA_MODES)}")
        if pre_resize_pixels is None:
            pre_resize_pixels = (QWEN_UTILS_MIN_PIXELS, QWEN_UTILS_MAX_PIXELS)
        self.alpha: AlphaMode = alpha
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        self.min_pixels = int(min_pixels)
        self.max_pixels = int(max_pixels)
        self.max_length = int(max_length)
        self.pre_resize = pre_resize
        #: (min, max) pixels of the first, qwen-vl-utils style resize (its defaults unless a recipe says)
        self.pre_min_pixels, self.pre_max_pixels = (int(x) for x in pre_resize_pixels)
        self.padding_side = padding_side
        self.patch_size = int(getattr(image_processor, "patch_size", 14))
        self.merge_size = int(getattr(image_processor, "merge_size", 2))
        self.temporal_patch_size = int(getattr(image_processor, "temporal_patch_size", 2))
        self.factor = self.patch_size * self.merge_size
        self.image_pad_id = self._token_id(image_pad_token)
        pad = tokenizer.pad_token_id
        self.pad_id = int(pad if pad is not None else tokenizer.convert_tokens_to_ids("<|endoftext|>"))
        if min_pixels > max_pixels:
            raise ValueError(f"min_pixels ({min_pixels}) must not exceed max_pixels ({max_pixels})")

    @property
    def patchifier(self) -> FastPatchifier:
        """Resize + normalise + patchify, equal to ``image_processor``'s output (checked when first
        built; it falls back to the image processor itself otherwise)."""
        fast = self.__dict__.get("_patchifier")
        if fast is None:
            fast = FastPatchifier(
                self.image_processor,
                min_pixels=self.min_pixels,
                max_pixels=self.max_pixels,
                patch_size=self.patch_size,
                merge_size=self.merge_size,
                temporal_patch_size=self.temporal_patch_size,
                smart_resize=smart_resize,
            )
            self.__dict__["_patchifier"] = fast
        return fast

    def _token_id(self, token: str) -> int:
        tid = self.tokenizer.convert_tokens_to_ids(token)
        if tid is None or tid == self.tokenizer.unk_token_id:
            raise ValueError(f"the tokenizer does not know the token {token!r}; is this the right recipe?")
        return int(tid)

    def token_id(self, token: str) -> int:
        """Id of a token that must exist as one unit in the vocabulary (answer words, markers)."""
        ids = self.tokenizer.encode(token, add_special_tokens=False)
        if len(ids) != 1:
            raise ValueError(f"{token!r} is not a single token in this tokenizer ({ids})")
        return int(ids[0])

    # -- geometry ------------------------------------------------------------------------------------
    def geometry(self, width: int, height: int) -> ImageGeometry:
        """Final size and visual-token count of an image of ``width`` x ``height``, without decoding it."""
        pre = None
        if self.pre_resize:
            ph, pw = smart_resize(height, width, self.factor, self.pre_min_pixels, self.pre_max_pixels)
            pre = (pw, ph)
            height, width = ph, pw
        fh, fw = smart_resize(height, width, self.factor, self.min_pixels, self.max_pixels)
        n = (fh // self.patch_size) * (fw // self.patch_size) // (self.merge_size**2)
        return ImageGeometry(pre_size=pre, final_size=(fw, fh), num_tokens=n)

    def render_plan(self) -> QwenRenderPlan:
        """The sizes :meth:`geometry` plans, as picklable data for a renderer: a page drawn at
        ``plan.target_size(...)`` needs none of this processor's resizes (planned-size rendering)."""
        pre = (self.pre_min_pixels, self.pre_max_pixels) if self.pre_resize else None
        return QwenRenderPlan(self.factor, self.min_pixels, self.max_pixels, pre, int(Image.Resampling.BICUBIC))

    # -- step 1: prompt + cost -------------------------------------------------------------------------
    def prepare(
        self, index: int, item: MultimodalInput, prompt: str, max_length: int | None = None
    ) -> PreparedInput:
        """Tokenise ``prompt`` (which holds at most one image placeholder) and size the image.

        ``max_length`` replaces the processor's token limit for this input (a recipe may cut queries and
        documents at different lengths).
        """
        ids = self.tokenizer.encode(prompt, add_special_tokens=False)
        n_pad = ids.count(self.image_pad_id)
        geometry = None
        if item.image is not None:
            if n_pad != 1:
                raise ValueError(f"prompt for input #{index} must hold exactly one image placeholder")
            try:
                w, h = item.image_size()
            except InputError as exc:
                raise InputError(f"input #{index}: {exc}") from None
            geometry = self.geometry(w, h)
        elif n_pad:
            raise InputError(
                f"input #{index} has no image but its text contains the image placeholder token; "
                "remove '<|image_pad|>' from the text"
            )
        return PreparedInput(index=index, input=item, ids=ids, geometry=geometry, max_length=max_length)

    # -- step 2: tensors ------------------------------------------------------------------------------
    def resize(self, item: MultimodalInput, geometry: ImageGeometry, owner: str) -> Image.Image:
        """Decode one image, make it RGB as the recipe's ``alpha`` says, resize it as its geometry planned.

        ``owner`` names the input in errors (``"input #3"``, ``"candidate #2"``).
        """
        try:
            img = item.load_image()
        except InputError as exc:
            raise InputError(f"{owner}: {exc}") from None
        img = to_rgb(img, self.alpha)
        if geometry.pre_size is not None and img.size != geometry.pre_size:
            img = img.resize(geometry.pre_size, Image.Resampling.BICUBIC)
        elif geometry.pre_size is None:
            h, w = clamp_aspect(img.size[1], img.size[0])
            if (w, h) != img.size:  # bring > 200:1 strips into range for the image processor
                img = img.resize((w, h), Image.Resampling.BICUBIC)
        return img

    def load_pixels(self, prepared: PreparedInput) -> Image.Image:
        """``resize`` for a prepared input."""
        assert prepared.geometry is not None
        return self.resize(prepared.input, prepared.geometry, f"input #{prepared.index}")

    def encode_image(
        self, item: MultimodalInput, geometry: ImageGeometry, owner: str, out: np.ndarray | None = None
    ) -> EncodedImage:
        """Decode, resize and patchify one image: patches ``(t*h*w, C*T*P*P)`` and its ``[t, h, w]`` grid.

        ``out``: where to write the patches (rows of a batch's ``pixel_values``), else a new array."""
        img = self.resize(item, geometry, owner)
        if out is not None and out.shape[0] != self.patch_rows(geometry):
            raise RuntimeError(f"{owner}: planned {self.patch_rows(geometry)} patch rows, out has {out.shape[0]}")
        patches, grid = self.patchifier.patchify(img, out)
        n_tokens = grid[0] * grid[1] * grid[2] // (self.merge_size**2)
        if n_tokens != geometry.num_tokens:  # planning and processing must agree
            raise RuntimeError(f"{owner}: planned {geometry.num_tokens} visual tokens, processor made {n_tokens}")
        return EncodedImage(patches, grid, n_tokens)

    def patch_rows(self, geometry: ImageGeometry) -> int:
        """Rows of ``pixel_values`` an image of this geometry takes."""
        w, h = geometry.final_size
        return (h // self.patch_size) * (w // self.patch_size)

    def encode_images(
        self,
        jobs: Sequence[tuple[MultimodalInput, ImageGeometry, str]],
        pool: Executor | None = None,
        out: np.ndarray | None = None,
    ) -> list[EncodedImage]:
        """``encode_image`` over many images, in ``pool``'s threads when given (PIL releases the GIL).

        ``out``: one float32 array with the rows of all of them, in order (``patch_rows`` each)."""
        outs: list[np.ndarray | None] = [None] * len(jobs)
        if out is not None:
            start = 0
            for k, (_, geometry, _) in enumerate(jobs):
                stop = start + self.patch_rows(geometry)
                outs[k] = out[start:stop]
                start = stop
            if start != out.shape[0]:
                raise ValueError(f"out has {out.shape[0]} rows, the images take {start}")
        if pool is None or len(jobs) < 2:
            return [self.encode_image(*job, o) for job, o in zip(jobs, outs)]
        return list(pool.map(lambda pair: self.encode_image(*pair[0], pair[1]), zip(jobs, outs)))

    def expand(self, ids: Sequence[int], images: Sequence[EncodedImage]) -> list[int]:
        """Replace the i-th image placeholder of ``ids`` by ``images[i].num_tokens`` placeholders."""
        out: list[int] = []
        pending = iter(images)
        for tok in ids:
            if tok == self.image_pad_id:
                out.extend([self.image_pad_id] * next(pending).num_tokens)
            else:
                out.append(tok)
        return out

    def pad(
        self,
        rows: Sequence[Sequence[int]],
        images: Sequence[EncodedImage] = (),
        pixel_values: np.ndarray | None = None,
    ) -> dict[str, torch.Tensor]:
        """Pad token rows on the recipe's side and stack them with the images' patches.

        Returns ``input_ids`` / ``attention_mask`` (B, L) and, with images, ``pixel_values``
        (total patches, C*T*P*P) and ``image_grid_thw`` (n_images, 3) in placeholder order.
        ``pixel_values``: the images' patches stacked already (``encode_images(..., out=)``), used as is.
        """
        longest = max(len(r) for r in rows)
        # input_ids (B, L) filled with the pad id, attention_mask (B, L) 1 on real tokens
        input_ids = torch.full((len(rows), longest), self.pad_id, dtype=torch.long)
        attention_mask = torch.zeros((len(rows), longest), dtype=torch.long)
        for i, r in enumerate(rows):
            span = slice(longest - len(r), longest) if self.padding_side == "left" else slice(0, len(r))
            input_ids[i, span] = torch.tensor(r, dtype=torch.long)
            attention_mask[i, span] = 1
        batch: dict[str, torch.Tensor] = {"input_ids": input_ids, "attention_mask": attention_mask}
        if images:
            stacked = pixel_values if pixel_values is not None else np.concatenate([im.patches for im in images])
            batch["pixel_values"] = torch.from_numpy(stacked)
            batch["image_grid_thw"] = torch.tensor([im.grid for im in images], dtype=torch.long)
        return batch

    def collate(self, batch: Sequence[PreparedInput], pool: Executor | None = None) -> dict[str, torch.Tensor]:
        """Encode the batch's images, expand placeholders, truncate to ``max_length`` and pad."""
        jobs = [(p.input, p.geometry, f"input #{p.index}") for p in batch if p.geometry is not None]
        # the batch's pixel_values, written in place by each image's patchify (no per-image copy to stack)
        total = sum(self.patch_rows(g) for _, g, _ in jobs)
        stacked = np.empty((total, self.patchifier.row_size), dtype=np.float32) if jobs else None
        encoded = iter(self.encode_images(jobs, pool, stacked))
        rows: list[list[int]] = []
        images: list[EncodedImage] = []
        for prep in batch:
            mine = [next(encoded)] if prep.geometry is not None else []
            ids = self.expand(prep.ids, mine)
            limit = prep.max_length if prep.max_length is not None else self.max_length
            if len(ids) > limit:
                ids = ids[:limit]
                if mine and ids.count(self.image_pad_id) != mine[0].num_tokens:
                    raise InputError(
                        f"input #{prep.index}: the prompt before the image is so long that truncation at "
                        f"{limit} tokens would cut the image; shorten the instruction or text"
                    )
            images.extend(mine)
            rows.append(ids)
        return self.pad(rows, images, stacked)




def _to_rgb(img: Image.Image) -> Image.Image:  # the old private name ("drop" was the only behaviour)
    return to_rgb(img, "drop")


def load_image_processor(source: str, min_pixels: int, max_pixels: int) -> Any:
    """The PIL Qwen2-VL image processor (no torchvision), with the recipe's pixel budget.

    In transformers 5 ``AutoProcessor`` for Qwen2-VL wants a video processor that needs torchvision;
    ``Qwen2VLImageProcessorPil`` serves Qwen2-VL, Qwen2.5-VL and Qwen3-VL checkpoints alike (their patch
    and merge sizes come from the checkpoint's preprocessor config).
    """
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    from umr.modeling import quiet_transformers

    try:
        with quiet_transformers():
            return Qwen2VLImageProcessorPil.from_pretrained(source, min_pixels=min_pixels, max_pixels=max_pixels)
    except (OSError, ValueError) as exc:
        raise ModelNotFoundError(f"cannot load the image processor of {source!r}: {exc}") from exc
