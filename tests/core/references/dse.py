"""DSE (MrLight/dse-qwen2-2b-mrl-v1), from its model card's usage code.

* processor ``AutoProcessor.from_pretrained(..., min_pixels=1*28*28, max_pixels=2560*28*28)``,
  ``padding_side = "left"``;
* query: a dummy ``Image.new('RGB', (28, 28))`` with ``resized_height=1, resized_width=1`` (qwen-vl-utils
  turns that into 56x56) and the text ``f"Query: {query}"``;
* document: the page image and the text ``"What is shown in this image?"``;
* prompt: ``apply_chat_template(..., add_generation_prompt=True) + "<|endoftext|>"``;
* images through ``qwen_vl_utils.process_vision_info`` (the Qwen2-VL era package: ``convert("RGB")``,
  4·28²..16384·28²), then the processor (its own min/max above) resizes again;
* a plain model forward (the model's own M-RoPE positions), ``hidden_states[-1][:, -1]``, the first
  ``dimension`` values, L2-normalised.

The card has no text or fused documents and no image queries; umr gives documents the card's query form
with "Document: " (text with the dummy image, or the page with its text) and an image-only query no text
at all. Those choices are umr's and are written here the same way.
"""

from __future__ import annotations

import torch
from PIL import Image

from .common import chat, expand_pads, fetch_image, fetch_resized, mm_token_type_ids

MIN_PIXELS = 1 * 28 * 28
MAX_PIXELS = 2560 * 28 * 28


class DSEReference:
    def __init__(self, model, tokenizer, image_processor) -> None:
        self.model = model.eval()  # Qwen2VLForConditionalGeneration
        self.tok = tokenizer
        self.ip = image_processor

    def _item(self, text: str | None, image: Image.Image | None, side: str) -> tuple[list[dict], Image.Image]:
        if image is None:
            pic = fetch_resized(Image.new("RGB", (28, 28)), 1, 1, factor=28)
            words = ("Query: " if side == "query" else "Document: ") + (text or "")
        else:
            pic = fetch_image(image, factor=28, min_pixels=4 * 28 * 28, max_pixels=16384 * 28 * 28, composite=False)
            if side == "query":
                words = "Query: " + text if text else ""
            else:
                words = "What is shown in this image?" if not text else "Document: " + text
        content = [{"type": "image", "image": pic}] + ([{"type": "text", "text": words}] if words else [])
        return [{"role": "user", "content": content}], pic

    @torch.no_grad()
    def embed(self, items: list[tuple[str | None, Image.Image | None]], side: str, dimension: int | None = None
              ) -> torch.Tensor:
        texts, pics = [], []
        for text, image in items:
            messages, pic = self._item(text, image, side)
            texts.append(chat(messages) + "<|endoftext|>")
            pics.append(pic)
        out = self.ip(images=pics, size={"shortest_edge": MIN_PIXELS, "longest_edge": MAX_PIXELS}, return_tensors="pt")
        grids = out["image_grid_thw"].tolist()
        expanded = [expand_pads(t, [g]) for t, g in zip(texts, grids)]
        self.tok.padding_side = "left"
        enc = self.tok(expanded, padding="longest", return_tensors="pt", add_special_tokens=False)
        hidden = self.model.model(
            input_ids=enc["input_ids"], attention_mask=enc["attention_mask"],
            pixel_values=out["pixel_values"].to(self.model.dtype), image_grid_thw=out["image_grid_thw"],
            mm_token_type_ids=mm_token_type_ids(enc["input_ids"], self.tok), use_cache=False,
        ).last_hidden_state
        reps = hidden[:, -1].float()
        if dimension is not None:
            reps = reps[:, :dimension]
        return torch.nn.functional.normalize(reps, p=2, dim=-1)
