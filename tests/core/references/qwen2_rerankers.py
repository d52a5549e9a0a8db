"""Generative yes/no rerankers on Qwen2-VL: MonoQwen2-VL and the zero-shot Qwen-VL judge.

MonoQwen2-VL (lightonai/MonoQwen2-VL-v0.1 model card, "How to use"):

* processor ``AutoProcessor.from_pretrained("Qwen/Qwen2-VL-2B-Instruct")``: its defaults, 4·28²..16384·28²
  pixels, one resize; the PIL image goes to the processor as it is, whose ``convert_to_rgb`` in the
  transformers 4.x of the card's release (Oct 2024) was a plain ``convert("RGB")`` (alpha dropped;
  transformers 5 would paste transparency on white);
* one user turn: the image, then ``"Assert the relevance of the previous image document to the following
  query, answer True or False. The query is: {query}"``; ``apply_chat_template(add_generation_prompt=True)``;
* ``model(**inputs).logits[:, -1, :]``, ``softmax(logits[:, [True, False]])[0]``.

Zero-shot judge, U-MARVEL's reference prompt (chaxjli/U-MARVEL
``dataset/datasets_mbeir_eval_zero_shot_rerank_pointwise.py``, ``collators/eval_rerank.py``,
``eval/eval_mbeir_zero_shot_rerank_pointwise.py``):

* texts: query ``format_string(f"{task instruction} {query}")``, candidate ``format_string(text)``, an empty
  text next to an image dropped (``_prepare_data_dict``);
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
system turn, ``"{judge}\\nQuery: {query}\\nCandidate: {candidate}"``, image before text, ``convert("RGB")`` (as
the 2024 judges did), the processor alone with 4·28²..1024·28², last-position logits, softmax over Yes/No.
"""

from __future__ import annotations

import torch
from PIL import Image

from .common import chat, expand_pads, fetch_image, mm_token_type_ids
from .u_marvel import format_string

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


def _inputs(tok, text: str, images: list[Image.Image], image_processor, **ip_kwargs) -> dict:
    """Tokenised prompt (image pads expanded) and image tensors, as the processor returns them."""
    extra: dict = {}
    if images:
        out = image_processor(images=images, return_tensors="pt", **ip_kwargs)
        text = expand_pads(text, out["image_grid_thw"].tolist())
        extra = {"pixel_values": out["pixel_values"], "image_grid_thw": out["image_grid_thw"]}
    enc = tok(text, return_tensors="pt", add_special_tokens=False)
    return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"],
            "mm_token_type_ids": mm_token_type_ids(enc["input_ids"], tok), **extra}


def _logits(model, tok, text: str, images: list[Image.Image], image_processor, **ip_kwargs) -> torch.Tensor:
    """Full-vocabulary next-token logits of one prompt (``model(**inputs).logits[:, -1]``)."""
    return model(**_inputs(tok, text, images, image_processor, **ip_kwargs)).logits[0, -1].float()


class MonoQwenReference:
    def __init__(self, model, tokenizer, image_processor) -> None:
        self.model = model.eval()  # the LoRA-adapted Qwen2VLForConditionalGeneration
        self.tok = tokenizer
        self.ip = image_processor  # the base model's image processor (16384·28² max)

    @torch.no_grad()
    def score(self, query: str, image: Image.Image) -> float:
        image = image.convert("RGB")  # transformers 4.x convert_to_rgb
        content = [{"type": "image", "image": image}, {"type": "text", "text": MONOQWEN_PROMPT.format(query=query)}]
        last = _logits(self.model, self.tok, chat([{"role": "user", "content": content}]), [image], self.ip,
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

    def _items(self, text: str | None, image: Image.Image | None) -> list[dict]:
        items: list[dict] = []
        if image is not None:
            items.append({"type": "image", "image": image})
        if text is not None:
            items.append({"type": "text", "text": text})
        return items

    @torch.no_grad()
    def score(self, query: tuple[str | None, Image.Image | None], candidate: tuple[str | None, Image.Image | None],
              instruction: str | None = None) -> float:
        """``instruction``: the M-BEIR task instruction (``u-marvel`` variant only), put before the query text."""
        if self.variant == "u-marvel":
            def fetch(im: Image.Image | None) -> Image.Image | None:
                if im is None:
                    return None
                return fetch_image(im, factor=28, min_pixels=4 * 28 * 28, max_pixels=300 * 28 * 28, composite=False)

            def data(text: str, im: Image.Image | None) -> tuple[str | None, Image.Image | None]:
                return (None if text == "" and im is not None else text), fetch(im)  # _prepare_data_dict

            q_text = format_string(f"{instruction} {query[0] or ''}") if instruction else format_string(query[0])
            q, c = data(q_text, query[1]), data(format_string(candidate[0]), candidate[1])
            content = [{"type": "text", "text": LAMRA_JUDGE}, {"type": "text", "text": "Query:"}, *self._items(*q),
                       {"type": "text", "text": "Candidate:"}, *self._items(*c)]
            budget = {"size": {"shortest_edge": 4 * 28 * 28, "longest_edge": 16384 * 28 * 28}}
        else:
            q = (query[0], query[1].convert("RGB") if query[1] is not None else None)
            c = (candidate[0], candidate[1].convert("RGB") if candidate[1] is not None else None)
            content = [{"type": "text", "text": CLEAN_JUDGE + "\nQuery: "}, *self._items(*q),
                       {"type": "text", "text": "\nCandidate: "}, *self._items(*c)]
            budget = {"size": {"shortest_edge": 4 * 28 * 28, "longest_edge": 1024 * 28 * 28}}
        images = [im for im in (q[1], c[1]) if im is not None]
        prompt = chat([{"role": "user", "content": content}])
        if self.variant == "u-marvel":
            # generate(...).scores[0]: the first step's logits after the generation config's processors
            out = self.model.generate(**_inputs(self.tok, prompt, images, self.ip, **budget), max_new_tokens=1,
                                      do_sample=False, output_scores=True, return_dict_in_generate=True)
            last = out.scores[0][0].float()
        else:
            last = _logits(self.model, self.tok, prompt, images, self.ip, **budget)
        return float(torch.softmax(torch.stack([last[self.yes], last[self.no]]), dim=0)[0])
