"""Pieces shared by the references: the Qwen chat template, qwen-vl-utils image loading, image-pad expansion.

Written from the public code (no ``umr`` import):

* the Qwen2-VL chat template (``chat_template.json`` of Qwen/Qwen2-VL-*-Instruct): a default system turn
  "You are a helpful assistant." when the conversation has none; each turn
  ``<|im_start|>{role}\\n{content}<|im_end|>\\n``; an image item renders as
  ``<|vision_start|><|image_pad|><|vision_end|>``, a text item as its text, items joined with nothing;
  ``add_generation_prompt`` appends ``<|im_start|>assistant\\n``. Qwen3-VL's template adds no default
  system turn.
* qwen-vl-utils ``fetch_image``: the Qwen2-VL era package (QwenLM/Qwen2-VL ``qwen-vl-utils``, used by
  the DSE card, GME, U-MARVEL's patched copy) calls ``convert("RGB")`` (alpha dropped); the current one
  (QwenLM/Qwen3-VL ``qwen-vl-utils``) calls ``to_rgb``, which pastes an RGBA image on white and converts
  every other mode with ``convert("RGB")``. Both resize with ``Image.resize((w, h))`` (PIL's default
  filter, bicubic for RGB) to ``smart_resize``.
* the processors replace each ``<|image_pad|>`` by ``t*h*w / merge**2`` copies before tokenising.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from PIL import Image

IMAGE = "<|vision_start|><|image_pad|><|vision_end|>"
PAD = "<|image_pad|>"
QWEN2_DEFAULT_SYSTEM = "You are a helpful assistant."


def chat(messages: list[dict], *, default_system: str | None = QWEN2_DEFAULT_SYSTEM,
         add_generation_prompt: bool = True) -> str:
    """Render ``messages`` (role + str or list of {"type": "image"|"text"} items) like the chat template."""
    out = ""
    if default_system is not None and (not messages or messages[0]["role"] != "system"):
        out += f"<|im_start|>system\n{default_system}<|im_end|>\n"
    for message in messages:
        content = message["content"]
        if isinstance(content, str):
            body = content
        else:
            body = "".join(IMAGE if item["type"] == "image" else item["text"] for item in content)
        out += f"<|im_start|>{message['role']}\n{body}<|im_end|>\n"
    if add_generation_prompt:
        out += "<|im_start|>assistant\n"
    return out


def smart_resize(height: int, width: int, factor: int, min_pixels: int, max_pixels: int) -> tuple[int, int]:
    """qwen-vl-utils ``smart_resize`` (same arithmetic in the Qwen2-VL and Qwen3-VL era packages)."""
    if max(height, width) / min(height, width) > 200:
        raise ValueError("absolute aspect ratio must be smaller than 200")
    h_bar = max(factor, round(height / factor) * factor)
    w_bar = max(factor, round(width / factor) * factor)
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = math.floor(height / beta / factor) * factor
        w_bar = math.floor(width / beta / factor) * factor
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def to_rgb(image: Image.Image) -> Image.Image:
    """Current qwen-vl-utils ``to_rgb``: RGBA pasted on white with its alpha as mask, other modes convert."""
    if image.mode == "RGBA":
        white = Image.new("RGB", image.size, (255, 255, 255))
        white.paste(image, mask=image.split()[3])
        return white
    return image.convert("RGB")


def fetch_image(image: Image.Image, *, factor: int, min_pixels: int, max_pixels: int,
                composite: bool) -> Image.Image:
    """qwen-vl-utils ``fetch_image`` for a PIL image; ``composite`` picks the current package's ``to_rgb``."""
    image = to_rgb(image) if composite else image.convert("RGB")
    width, height = image.size
    h, w = smart_resize(height, width, factor, min_pixels, max_pixels)
    return image.resize((w, h))


def fetch_resized(image: Image.Image, resized_height: int, resized_width: int, *, factor: int) -> Image.Image:
    """``fetch_image`` with explicit ``resized_height``/``resized_width`` (the DSE dummy image)."""
    image = image.convert("RGB")
    h, w = smart_resize(resized_height, resized_width, factor, 4 * factor * factor, 16384 * factor * factor)
    return image.resize((w, h))


def expand_pads(text: str, grids: Sequence[Sequence[int]], merge: int = 2) -> str:
    """Replace the i-th ``<|image_pad|>`` by ``prod(grids[i]) // merge**2`` copies (what the processor does)."""
    pieces = text.split(PAD)
    assert len(pieces) == len(grids) + 1, (len(pieces), len(grids))
    out = pieces[0]
    for grid, rest in zip(grids, pieces[1:]):
        out += PAD * (int(grid[0]) * int(grid[1]) * int(grid[2]) // merge**2) + rest
    return out


def process_images(image_processor, images: list[Image.Image], **kwargs) -> dict[str, torch.Tensor]:
    """The image processor on a list of images (one call, as the processors make it)."""
    return image_processor(images=images, return_tensors="pt", **kwargs)


def mm_token_type_ids(input_ids: torch.Tensor, tokenizer) -> torch.Tensor:
    """What the transformers 5 Qwen-VL processors return beside ``input_ids``: 1 on image tokens."""
    return (input_ids == tokenizer.convert_tokens_to_ids(PAD)).int()
