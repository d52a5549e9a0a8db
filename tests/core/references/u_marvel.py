"""U-MARVEL (TencentBAC/U-MARVEL-Qwen2VL-7B-Instruct), from chaxjli/U-MARVEL.

Facts and their files:

* ``demo.py`` / ``eval/eval_mbeir_local_finetune_fast.py``: ``<emb>``, ``<instruction_start>``,
  ``<instruction_end>`` added to the tokenizer one by one (``add_embed_token``); messages rendered with
  ``apply_chat_template(..., add_generation_prompt=True)``; the user turn holds the image then the text,
  an assistant turn ``<emb>.`` follows.
* ``dataset/datasets_mbeir.py`` (``QueryDataset`` / ``CandidateDataset``): query text
  ``format_string(f"<instruction_start>{format_string(I)}<instruction_end> {q}")``; candidate text
  ``format_string(t)``; a query whose text comes out empty is image-only, a candidate with an image
  always keeps its (possibly empty) text; ``prompt_index`` 0 (the evaluation default) appends the suffixes
  ``"\\nSummarize above image and sentence in one word: "`` (image + text), ``"\\nSummarize above sentence in
  one word: "`` (text), ``"\\nSummarize above image in one word: "`` (image only); ``prompt_index`` 1
  (the hard-negative and distillation training stages, and the demo) appends nothing.
* ``collators/qwen2_vision_process.py``: ``convert("RGB")``, ``smart_resize`` within 4·28²..300·28², PIL
  resize; the processor then leaves the image as it is.
* ``collators/mbeir_eval.py``: queries padded, not truncated; candidates truncated at 1024 tokens (right);
  ``labels = input_ids`` with pad tokens set to -100; the instruction span (markers included) set to -100
  for queries (``get_instruction_mask``).
* ``models/qwen2_vl_finetune.py`` + ``models/qwen2_vl_bidirectional_atten.py``: visual features written
  into the image-pad embeddings, the language model run with ``position_ids=None`` (sequential 1-D
  positions in the transformers version it pins), a padding-only (bidirectional) mask, mean over the
  positions whose label is not -100, L2 normalisation. (The wrapper drops the mask, hence falls back to
  causal attention, under SDPA when a batch has no padding; the reference here is bidirectional always,
  as training batches and the paper are.)
"""

from __future__ import annotations

import torch
from PIL import Image

from .common import chat, expand_pads, fetch_image

SUFFIXES = {
    "mbeir-eval": (
        "\nSummarize above image and sentence in one word: ",
        "\nSummarize above sentence in one word: ",
        "\nSummarize above image in one word: ",
    ),
    "none": ("", "", ""),
}
MIN_PIXELS = 4 * 28 * 28
MAX_PIXELS = 300 * 28 * 28
CANDIDATE_MAX_LENGTH = 1024


def format_string(s: str | None) -> str:
    s = (s or "").replace("\r", "").strip().strip('"')
    if s:
        s = s[0].upper() + s[1:]
        s = s + "." if s[-1] not in [".", "?", "!"] else s
    return s


class UMarvelReference:
    def __init__(self, model, tokenizer, image_processor, prompt: str = "none") -> None:
        self.model = model.eval()  # Qwen2VLForConditionalGeneration
        self.tok = tokenizer
        for token in ("<emb>", "<instruction_start>", "<instruction_end>"):
            if token not in tokenizer.get_vocab():
                tokenizer.add_tokens([token])
        self.ip = image_processor
        self.suffix = SUFFIXES[prompt]

    def _messages(self, data: dict) -> list[dict]:
        if "txt" in data and "image" in data:
            content = [{"type": "image", "image": data["image"]}, {"type": "text", "text": data["txt"] + self.suffix[0]}]
        elif "txt" in data:
            content = [{"type": "text", "text": data["txt"] + self.suffix[1]}]
        else:
            content = [{"type": "image", "image": data["image"]}, {"type": "text", "text": self.suffix[2]}]
        return [{"role": "user", "content": content}, {"role": "assistant", "content": [{"type": "text", "text": "<emb>."}]}]

    def query_data(self, text: str | None, image: Image.Image | None, instruction: str | None) -> dict:
        if instruction:
            prompt = "<instruction_start>" + format_string(instruction) + "<instruction_end>"
            txt = format_string(f"{prompt} {text or ''}")
        else:
            txt = format_string(text)
        if image is None:
            return {"txt": txt}
        if txt == "":
            return {"image": image}
        return {"txt": txt, "image": image}

    def candidate_data(self, text: str | None, image: Image.Image | None) -> dict:
        txt = format_string(text)
        return {"txt": txt} if image is None else {"txt": txt, "image": image}

    @torch.no_grad()
    def embed(self, items: list[tuple[str | None, Image.Image | None]], side: str,
              instruction: str | None = None) -> torch.Tensor:
        datas = [
            self.query_data(t, i, instruction) if side == "query" else self.candidate_data(t, i) for t, i in items
        ]
        texts, images = [], []
        for data in datas:
            texts.append(chat(self._messages(data)))
            if "image" in data:
                images.append(fetch_image(data["image"], factor=28, min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS,
                                          composite=False))
        grids: list[list[int]] = []
        extra: dict = {}
        if images:
            out = self.ip(images=images, return_tensors="pt")
            grids = out["image_grid_thw"].tolist()
            extra = {"pixel_values": out["pixel_values"], "image_grid_thw": out["image_grid_thw"]}
        # expand each text's own image pads (at most one image per item)
        expanded, k = [], 0
        for text in texts:
            n = text.count("<|image_pad|>")
            expanded.append(expand_pads(text, grids[k : k + n]))
            k += n
        self.tok.padding_side = "right"
        if side == "query":
            enc = self.tok(expanded, padding=True, return_tensors="pt", add_special_tokens=False)
        else:
            enc = self.tok(expanded, padding="longest", truncation=True, max_length=CANDIDATE_MAX_LENGTH,
                           return_tensors="pt", add_special_tokens=False)
        ids, mask = enc["input_ids"], enc["attention_mask"]
        labels = ids.clone()
        labels[labels == self.tok.pad_token_id] = -100
        if side == "query":
            start = self.tok.convert_tokens_to_ids("<instruction_start>")
            end = self.tok.convert_tokens_to_ids("<instruction_end>")
            start_cum = (ids == start).int().cumsum(1)
            end_cum = (ids == end).int().cumsum(1)
            inside = ((start_cum - end_cum) > 0) | ((ids == end) & (start_cum - end_cum == 0))
            labels[inside] = -100
        base = self.model.model
        embeds = base.language_model.embed_tokens(ids)
        if extra:
            feats = base.visual(extra["pixel_values"].to(base.visual.dtype), grid_thw=extra["image_grid_thw"]).pooler_output
            pad_mask = ids == self.tok.convert_tokens_to_ids("<|image_pad|>")
            embeds = embeds.clone()
            embeds[pad_mask] = feats.to(embeds.dtype)
        bsz, length = ids.shape
        # padding-only additive mask: every real token sees every real token (bidirectional)
        additive = torch.zeros((bsz, 1, length, length), dtype=embeds.dtype)
        additive = additive.masked_fill(mask[:, None, None, :] == 0, torch.finfo(embeds.dtype).min)
        positions = torch.arange(length).view(1, 1, -1).expand(3, bsz, -1)
        hidden = base.language_model(inputs_embeds=embeds, attention_mask=additive, position_ids=positions).last_hidden_state
        valid = (labels != -100).unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * valid).sum(1) / valid.sum(1).clamp(min=1e-7)
        return torch.nn.functional.normalize(pooled.float(), dim=-1)
