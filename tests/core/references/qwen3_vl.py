"""Qwen3-VL-Embedding and Qwen3-VL-Reranker, from QwenLM/Qwen3-VL-Embedding ``src/models/``.

Embedding (``qwen3_vl_embedding.py``, ``Qwen3VLEmbedder``):

* system turn: the instruction, stripped, with a final "." unless its last character is punctuation
  (``unicodedata.category(c).startswith("P")``); no instruction: "Represent the user's input.";
* user turn: images first, then texts; nothing at all: the text "NULL";
* images: ``qwen_vl_utils.process_vision_info(..., image_patch_size=16)`` with per-image
  ``min_pixels=4*32*32``, ``max_pixels=1800*32*32`` (the current package: ``to_rgb`` pastes RGBA on white),
  then the processor with ``do_resize=False``;
* ``truncation=True, max_length=8192``, right padding, the model's own forward (M-RoPE, deepstack);
* the last attended position of ``last_hidden_state``, L2-normalised; Matryoshka: the first d values.

Reranker (``qwen3_vl_reranker.py``, ``Qwen3VLReranker``):

* system "Judge whether the Document meets the requirements based on the Query and the Instruct provided.
  Note that the answer can only be \\"yes\\" or \\"no\\"."; user items ``'<Instruct>: ' + instruction``,
  ``'<Query>:'``, the query's images then texts, ``'\\n<Document>:'``, the document's images then texts
  (an empty side is "NULL"); default instruction "Given a search query, retrieve relevant candidates that
  answer the query.";
* images as above (1800*32*32), ``do_resize=False``; left padding;
* score: ``sigmoid((w_yes - w_no) . h_last)`` with ``h_last`` the final-norm state at the last position.
"""

from __future__ import annotations

import unicodedata

import torch
from PIL import Image

from .common import chat, expand_pads, fetch_image, mm_token_type_ids

MIN_PIXELS = 4 * 32 * 32
MAX_PIXELS = 1800 * 32 * 32
EMBED_MAX_LENGTH = 8192
RERANK_SYSTEM = (
    'Judge whether the Document meets the requirements based on the Query and the Instruct provided. '
    'Note that the answer can only be "yes" or "no".'
)
RERANK_DEFAULT_INSTRUCTION = "Given a search query, retrieve relevant candidates that answer the query."


def _fetch(image: Image.Image) -> Image.Image:
    return fetch_image(image, factor=32, min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS, composite=True)


def _content(text: str | None, image: Image.Image | None) -> list[dict]:
    items: list[dict] = []
    if image is not None:
        items.append({"type": "image", "image": image})
    if text is not None:
        items.append({"type": "text", "text": text})
    return items


def _forward(model, tok, texts: list[str], images: list[Image.Image], image_processor, side: str,
             max_length: int | None = None):
    extra: dict = {}
    grids: list[list[int]] = []
    if images:
        out = image_processor(images=images, do_resize=False, return_tensors="pt")
        grids = out["image_grid_thw"].tolist()
        extra = {"pixel_values": out["pixel_values"].to(model.dtype), "image_grid_thw": out["image_grid_thw"]}
    expanded, k = [], 0
    for text in texts:
        n = text.count("<|image_pad|>")
        expanded.append(expand_pads(text, grids[k : k + n]))
        k += n
    tok.padding_side = side
    kwargs = {"truncation": True, "max_length": max_length} if max_length else {}
    enc = tok(expanded, padding=True, return_tensors="pt", add_special_tokens=False, **kwargs)
    hidden = model.model(
        input_ids=enc["input_ids"], attention_mask=enc["attention_mask"],
        mm_token_type_ids=mm_token_type_ids(enc["input_ids"], tok), use_cache=False, **extra,
    ).last_hidden_state
    return hidden, enc["attention_mask"]


class Qwen3VLEmbeddingReference:
    def __init__(self, model, tokenizer, image_processor) -> None:
        self.model = model.eval()  # Qwen3VLForConditionalGeneration
        self.tok = tokenizer
        self.ip = image_processor

    @staticmethod
    def system(instruction: str | None) -> str:
        if instruction:
            instruction = instruction.strip()
            if instruction and not unicodedata.category(instruction[-1]).startswith("P"):
                instruction = instruction + "."
        return instruction or "Represent the user's input."

    @torch.no_grad()
    def embed(self, items: list[tuple[str | None, Image.Image | None]], instruction: str | None = None,
              dimension: int | None = None) -> torch.Tensor:
        texts, images = [], []
        for text, image in items:
            content = _content(text, _fetch(image) if image is not None else None) or [{"type": "text", "text": "NULL"}]
            images += [c["image"] for c in content if c["type"] == "image"]
            messages = [{"role": "system", "content": [{"type": "text", "text": self.system(instruction)}]},
                        {"role": "user", "content": content}]
            texts.append(chat(messages, default_system=None))
        hidden, mask = _forward(self.model, self.tok, texts, images, self.ip, "right", EMBED_MAX_LENGTH)
        last = mask.shape[1] - mask.flip(1).argmax(1) - 1
        reps = hidden[torch.arange(hidden.shape[0]), last].float()
        if dimension is not None:
            reps = reps[:, :dimension]
        return torch.nn.functional.normalize(reps, p=2, dim=-1)


class Qwen3VLRerankerReference:
    def __init__(self, model, tokenizer, image_processor) -> None:
        self.model = model.eval()  # Qwen3VLForConditionalGeneration (lm_head kept for the two rows)
        self.tok = tokenizer
        self.ip = image_processor
        vocab = tokenizer.get_vocab()
        weight = model.lm_head.weight
        self.w = (weight[vocab["yes"]] - weight[vocab["no"]]).float()

    @torch.no_grad()
    def score(self, query: tuple[str | None, Image.Image | None], candidates: list[tuple[str | None, Image.Image | None]],
              instruction: str | None = None) -> list[float]:
        scores = []
        for doc in candidates:  # one pair per forward, as the default batch of the reference class
            q = _content(query[0], _fetch(query[1]) if query[1] is not None else None) or [{"type": "text", "text": "NULL"}]
            d = _content(doc[0], _fetch(doc[1]) if doc[1] is not None else None) or [{"type": "text", "text": "NULL"}]
            content = [{"type": "text", "text": "<Instruct>: " + (instruction or RERANK_DEFAULT_INSTRUCTION)},
                       {"type": "text", "text": "<Query>:"}, *q, {"type": "text", "text": "\n<Document>:"}, *d]
            messages = [{"role": "system", "content": [{"type": "text", "text": RERANK_SYSTEM}]},
                        {"role": "user", "content": content}]
            images = [c["image"] for c in content if c["type"] == "image"]
            hidden, _ = _forward(self.model, self.tok, [chat(messages, default_system=None)], images, self.ip, "left")
            scores.append(float(torch.sigmoid(hidden[0, -1].float() @ self.w)))
        return scores
