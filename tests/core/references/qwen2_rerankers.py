"""Generative yes/no rerankers on Qwen2-VL: MonoQwen2-VL and the zero-shot Qwen-VL judge.

MonoQwen2-VL (lightonai/MonoQwen2-VL-v0.1 model card, "How to use"):

* processor ``AutoProcessor.from_pretrained("Qwen/Qwen2-VL-2B-Instruct")``: its defaults, 4·28²..16384·28²
  pixels, one resize; the PIL image goes to the processor as it is (transformers' ``convert_to_rgb``
  pastes transparency on white);
* one user turn: the image, then ``"Assert the relevance of the previous image document to the following
  query, answer True or False. The query is: {query}"``; ``apply_chat_template(add_generation_prompt=True)``;
* ``model(**inputs).logits[:, -1, :]``, ``softmax(logits[:, [True, False]])[0]``.

Zero-shot judge, U-MARVEL's reference prompt (chaxjli/U-MARVEL
``dataset/datasets_mbeir_eval_zero_shot_rerank_pointwise.py``, ``collators/eval_rerank.py``,
``eval/eval_mbeir_zero_shot_rerank_pointwise.py``):

* one user turn of items joined with nothing: the judge text (its backslash continuation leaves 24
  spaces after "candidate", and it writes "responed"), ``"Query:"``, the query image, the query text,
  ``"Candidate:"``, the candidate image, the candidate text;
* images through the patched ``qwen2_vision_process`` (``convert("RGB")``, 4·28²..300·28², PIL resize),
  then the processor, which leaves them as they are;
* ``generate(..., do_sample=False, output_scores=True).scores[0]``: the next-token logits after the
  model's generation config has processed them (Qwen2-VL-Instruct ships ``repetition_penalty`` 1.05, which
  divides a positive logit, or multiplies a negative one, of every token already in the prompt);
  ``softmax([logit(tokenizer("Yes").input_ids[0]), logit(tokenizer("No").input_ids[0])])[0]``.

Zero-shot judge, umr's clean prompt (the same wording, typo fixed, parts on their own lines): the default
system turn, ``"{judge}\\nQuery: {query}\\nCandidate: {candidate}"``, image before text, the processor alone
with 4·28²..1024·28², last-position logits, softmax over Yes/No.
"""

from __future__ import annotations

import torch
from PIL import Image

from .common import chat, expand_pads, fetch_image, mm_token_type_ids

MONOQWEN_PROMPT = (
    "Assert the relevance of the previous image document to the following query, answer True or False. "
    "The query is: {query}"
)
LAMRA_JUDGE = (
    "I will provide you with a query and a candidate. Please evaluate whether the candidate"
    + " " * 24
    + "meets the requirements of the query. If it does, respond with 'Yes'; if it doesn't, responed with 'No'."
)
CLEAN_JUDGE = (
    "I will provide you with a query and a candidate. Please evaluate whether the candidate meets the "
    "requirements of the query. If it does, respond with 'Yes'; if it doesn't, respond with 'No'."
)


def _logits(model, tok, text: str, images: list[Image.Image], image_processor, **ip_kwargs) -> tuple[torch.Tensor, torch.Tensor]:
    """Full-vocabulary next-token logits of one prompt, and its input ids."""
    extra: dict = {}
    if images:
        out = image_processor(images=images, return_tensors="pt", **ip_kwargs)
        text = expand_pads(text, out["image_grid_thw"].tolist())
        extra = {"pixel_values": out["pixel_values"].to(model.dtype), "image_grid_thw": out["image_grid_thw"]}
    enc = tok(text, return_tensors="pt", add_special_tokens=False)
    logits = model(
        input_ids=enc["input_ids"], attention_mask=enc["attention_mask"],
        mm_token_type_ids=mm_token_type_ids(enc["input_ids"], tok), **extra,
    ).logits
    return logits[0, -1].float(), enc["input_ids"][0]


class MonoQwenReference:
    def __init__(self, model, tokenizer, image_processor) -> None:
        self.model = model.eval()  # the LoRA-adapted Qwen2VLForConditionalGeneration
        self.tok = tokenizer
        self.ip = image_processor  # the base model's image processor (16384·28² max)

    @torch.no_grad()
    def score(self, query: str, image: Image.Image) -> float:
        content = [{"type": "image", "image": image}, {"type": "text", "text": MONOQWEN_PROMPT.format(query=query)}]
        last, _ = _logits(self.model, self.tok, chat([{"role": "user", "content": content}]), [image], self.ip,
                          size={"shortest_edge": 4 * 28 * 28, "longest_edge": 16384 * 28 * 28})
        pair = last[[self.tok.convert_tokens_to_ids("True"), self.tok.convert_tokens_to_ids("False")]]
        return float(torch.softmax(pair, dim=-1)[0])


class ZeroShotReference:
    """``variant="clean"`` (umr's default prompt) or ``"u-marvel"`` (the reference judge prompt)."""

    def __init__(self, model, tokenizer, image_processor, variant: str = "clean") -> None:
        self.model = model.eval()
        self.tok = tokenizer
        self.ip = image_processor
        self.variant = variant
        self.yes = tokenizer("Yes", add_special_tokens=False).input_ids[0]
        self.no = tokenizer("No", add_special_tokens=False).input_ids[0]
        penalty = getattr(getattr(model, "generation_config", None), "repetition_penalty", None)
        self.penalty = float(penalty) if penalty is not None else 1.0

    def _items(self, text: str | None, image: Image.Image | None) -> list[dict]:
        items: list[dict] = []
        if image is not None:
            items.append({"type": "image", "image": image})
        if text is not None:
            items.append({"type": "text", "text": text})
        return items

    @torch.no_grad()
    def score(self, query: tuple[str | None, Image.Image | None], candidate: tuple[str | None, Image.Image | None]) -> float:
        if self.variant == "u-marvel":
            def fetch(im: Image.Image | None) -> Image.Image | None:
                if im is None:
                    return None
                return fetch_image(im, factor=28, min_pixels=4 * 28 * 28, max_pixels=300 * 28 * 28, composite=False)

            q, c = (query[0], fetch(query[1])), (candidate[0], fetch(candidate[1]))
            content = ([{"type": "text", "text": LAMRA_JUDGE}, {"type": "text", "text": "Query:"}] + self._items(*q)
                       + [{"type": "text", "text": "Candidate:"}] + self._items(*c))
            budget = {"size": {"shortest_edge": 4 * 28 * 28, "longest_edge": 16384 * 28 * 28}}
        else:
            q, c = query, candidate
            content = ([{"type": "text", "text": CLEAN_JUDGE + "\nQuery: "}] + self._items(*q)
                       + [{"type": "text", "text": "\nCandidate: "}] + self._items(*c))
            budget = {"size": {"shortest_edge": 4 * 28 * 28, "longest_edge": 1024 * 28 * 28}}
        images = [im for im in (q[1], c[1]) if im is not None]
        last, ids = _logits(self.model, self.tok, chat([{"role": "user", "content": content}]), images, self.ip, **budget)
        if self.variant == "u-marvel" and self.penalty != 1.0:  # RepetitionPenaltyLogitsProcessor
            seen = torch.unique(ids)
            picked = last[seen]
            last = last.clone()
            last[seen] = torch.where(picked < 0, picked * self.penalty, picked / self.penalty)
        return float(torch.softmax(torch.stack([last[self.yes], last[self.no]]), dim=0)[0])
