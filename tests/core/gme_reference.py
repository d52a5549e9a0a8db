"""An independent GME encoder written from the model card facts, used only to check ``umr.Embedder``.

It follows the released inference script's steps, not umr's code: it builds the chat string per
item, resizes the way qwen-vl-utils ``fetch_image`` does, calls the image processor with explicit
min/max pixels, expands the image pads, tokenises the whole batch with right truncation at 1800 and
right padding, embeds tokens, writes the vision features into the pad positions, runs the language
model with no position ids (sequential 1-D positions), and L2-normalises the final-norm hidden state of
the last real token. One item per call or a whole batch, as the caller likes.
"""

from __future__ import annotations

import math

import torch
from PIL import Image

DEFAULT_INSTRUCTION = "You are a helpful assistant."
MIN_PIXELS = 256 * 28 * 28
MAX_PIXELS = 1280 * 28 * 28
MAX_LENGTH = 1800


def _round(x: float, f: int) -> int:
    return round(x / f) * f


def fetch_image(img: Image.Image) -> Image.Image:
    """qwen-vl-utils: RGB, then resize to multiples of 28 within 4*28^2 .. 16384*28^2 pixels."""
    img = img.convert("RGB")
    w, h = img.size
    if max(w, h) / min(w, h) > 200:  # the library raises; umr clamps the long side to 200x
        if h > w:
            h = int(w * 200)
        else:
            w = int(h * 200)
    lo, hi, f = 4 * 28 * 28, 16384 * 28 * 28, 28
    hb, wb = max(f, _round(h, f)), max(f, _round(w, f))
    if hb * wb > hi:
        beta = math.sqrt(h * w / hi)
        hb, wb = max(f, math.floor(h / beta / f) * f), max(f, math.floor(w / beta / f) * f)
    elif hb * wb < lo:
        beta = math.sqrt(lo / (h * w))
        hb, wb = math.ceil(h * beta / f) * f, math.ceil(w * beta / f) * f
    return img.resize((wb, hb), Image.Resampling.BICUBIC)


class GMEReference:
    def __init__(self, model, tokenizer, image_processor) -> None:
        self.model = model  # Qwen2VLForConditionalGeneration
        self.tok = tokenizer
        self.ip = image_processor
        self.pad_id = tokenizer.convert_tokens_to_ids("<|image_pad|>")

    @torch.no_grad()
    def embed(self, texts, images, is_query: bool = True, instruction: str | None = None) -> torch.Tensor:
        strings, pil = [], []
        for t, i in zip(texts, images):
            instr = instruction if (is_query and instruction is not None) else DEFAULT_INSTRUCTION
            content = ""
            if i is not None:
                img = fetch_image(i)
                out = self.ip(
                    images=[img],
                    size={"shortest_edge": MIN_PIXELS, "longest_edge": MAX_PIXELS},
                    return_tensors="pt",
                )
                pil.append(out)
                n = int(out["image_grid_thw"][0].prod()) // 4
                content += "<|vision_start|>" + "<|image_pad|>" * n + "<|vision_end|>"
            if t is not None:
                content += t
            strings.append(
                f"<|im_start|>system\n{instr}<|im_end|>\n<|im_start|>user\n{content}<|im_end|>\n"
                "<|im_start|>assistant\n<|endoftext|>"
            )
        self.tok.padding_side = "right"
        enc = self.tok(strings, padding=True, truncation=True, max_length=MAX_LENGTH, return_tensors="pt")
        base = self.model.model
        embeds = base.language_model.embed_tokens(enc["input_ids"])
        if pil:
            pixel_values = torch.cat([p["pixel_values"] for p in pil]).to(base.visual.dtype)
            grid = torch.cat([p["image_grid_thw"] for p in pil])
            feats = base.visual(pixel_values, grid_thw=grid).pooler_output
            mask = enc["input_ids"] == self.pad_id
            embeds = embeds.clone()
            embeds[mask] = feats.to(embeds.dtype)
        hidden = base.language_model(inputs_embeds=embeds, attention_mask=enc["attention_mask"]).last_hidden_state
        last = enc["attention_mask"].sum(1) - 1
        vec = hidden[torch.arange(hidden.shape[0]), last]
        return torch.nn.functional.normalize(vec.float(), p=2, dim=-1)
