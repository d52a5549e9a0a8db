"""``Reranker``: pointwise generative reranking of text, image and fused candidates with an MLLM.

Each (query, candidate) pair is rendered into the recipe's prompt, run through the model once, and scored
from the next-token logits of the recipe's two answer tokens (``Yes``/``No``, ``True``/``False`` or
``yes``/``no``) at the last position:

* ``softmax``: P(yes) = softmax([logit_yes, logit_no])[0] (zero-shot Qwen-VL, MonoQwen2-VL);
* ``sigmoid``: sigmoid(logit_yes - logit_no) (Qwen3-VL-Reranker); the same number for two logits.

Only the last position's final hidden state meets the two lm_head rows of the answer tokens (a (2, H)
slice of the weight, taken once at load time); the full-vocabulary lm_head is never applied. Pairs are
sorted by token cost (a page image costs hundreds of visual tokens, a text chunk a few dozen), packed
into batches under a padded-token budget, left-padded so the last position is every row's answer slot,
and the scores come back in the caller's order.

>>> rr = Reranker.from_pretrained("Qwen/Qwen3-VL-Reranker-2B")                  # doctest: +SKIP
>>> rr.rerank("revenue in 2023?", ["page1.png", "page2.png", "a text chunk"])   # doctest: +SKIP
[(0, 0.93), (2, 0.41), (1, 0.02)]
"""

from __future__ import annotations

import dataclasses
import logging
import math
import numbers
import os
import threading
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from umr import modeling, pooling
from umr.batching import run_planned
from umr.errors import InputError, ModelNotFoundError
from umr.inputs import InputLike, MultimodalInput
from umr.processing import EncodedImage, ImageGeometry, Processor, preprocess_pool
from umr.prompting import fill, render_content
from umr.recipes import DEFAULT_RERANKER, RERANK_RECIPES, RerankRecipe, resolve_recipe_name

logger = logging.getLogger(__name__)

#: default padded-token budget of one forward pass (about 14 pairs of a query and a 1024-token page)
DEFAULT_MAX_BATCH_TOKENS = 16384
DEFAULT_BATCH_SIZE = 16
#: U-MARVEL's weight of the rerank score when it is added to the first-stage similarity
DEFAULT_FUSE_WEIGHT = 0.1

_SINGLE_INPUT_TYPES = (str, bytes, bytearray, dict, MultimodalInput, os.PathLike)


def _softmax_yes(logits: torch.Tensor) -> torch.Tensor:
    """P(yes) from (n, 2) [yes, no] logits."""
    return torch.softmax(logits, dim=-1)[:, 0]


def _sigmoid_margin(logits: torch.Tensor) -> torch.Tensor:
    """sigmoid(yes - no) from (n, 2) [yes, no] logits."""
    return torch.sigmoid(logits[:, 0] - logits[:, 1])


#: recipe ``score`` -> function from (n, 2) float32 [yes, no] logits to (n,) scores in [0, 1]
SCORE_FUNCTIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "softmax": _softmax_yes,
    "sigmoid": _sigmoid_margin,
}


@dataclass(frozen=True)
class _PairImage:
    """One image of a pair: whose it is (for error messages), the input, and its planned geometry."""

    owner: str  # "query" or "candidate #i"
    item: MultimodalInput
    geometry: ImageGeometry


@dataclass
class _Pair:
    """One tokenised (query, candidate) prompt, one placeholder token per image; its exact cost is known."""

    index: int
    ids: list[int]
    images: list[_PairImage]  # in the order their placeholders appear in ``ids``

    @property
    def num_tokens(self) -> int:
        return len(self.ids) + sum(im.geometry.num_tokens - 1 for im in self.images)


class Reranker:
    """A pointwise MLLM reranker following one recipe (zero-shot Qwen-VL, MonoQwen2-VL, Qwen3-VL-Reranker).

    >>> rr = Reranker.from_pretrained("Qwen/Qwen3-VL-Reranker-2B")                      # doctest: +SKIP
    >>> rr.score("a red car", ["car.jpg", {"text": "caption", "image": "b.png"}, "text"])  # doctest: +SKIP
    [0.91, 0.12, 0.40]

    Queries and candidates are any umr inputs: text, an image (path, ``file://`` URI, PIL image, bytes)
    or both (``{"text": ..., "image": ...}``). Scores are floats in [0, 1].
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        image_processor: Any,
        recipe: RerankRecipe,
        *,
        model_id: str,
        device: torch.device,
        dtype: torch.dtype,
        instruction: str | None = None,
        max_batch_tokens: int = DEFAULT_MAX_BATCH_TOKENS,
        batch_size: int = DEFAULT_BATCH_SIZE,
        min_pixels: int | None = None,
        max_pixels: int | None = None,
        show_progress: bool = False,
    ) -> None:
        self.model = model
        self.recipe = recipe
        self.model_id = model_id
        self.device = device
        self.dtype = dtype
        self.instruction = _check_instruction(instruction)
        self.max_batch_tokens = _positive_int("max_batch_tokens", max_batch_tokens)
        self.batch_size = _positive_int("batch_size", batch_size)
        self.show_progress = show_progress
        for key in ("{query}", "{candidate}"):
            if key not in recipe.template:
                raise ValueError(f"rerank recipe {recipe.name!r}: its template lacks the {key} placeholder")
        self.processor = Processor(
            tokenizer,
            image_processor,
            image_pad_token=recipe.image_pad_token,
            min_pixels=min_pixels if min_pixels is not None else recipe.min_pixels,
            max_pixels=max_pixels if max_pixels is not None else recipe.max_pixels,
            max_length=recipe.max_length,
            pre_resize=recipe.pre_resize,
            padding_side=recipe.padding_side,
        )
        self.yes_token_id = self.processor.token_id(recipe.yes_token)
        self.no_token_id = self.processor.token_id(recipe.no_token)
        # (2, H) float32 rows of the lm_head for [yes, no] (and the bias entries, if the head has any)
        self._head_weight, self._head_bias = answer_head(model, (self.yes_token_id, self.no_token_id))
        self._score_fn = SCORE_FUNCTIONS[recipe.score]
        self._query_first = recipe.template.index("{query}") < recipe.template.index("{candidate}")
        self._lock = threading.Lock()

    # -- construction ---------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(
        cls,
        model_id_or_path: str | os.PathLike = DEFAULT_RERANKER,
        *,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
        recipe: str | None = None,
        instruction: str | None = None,
        max_batch_tokens: int = DEFAULT_MAX_BATCH_TOKENS,
        batch_size: int = DEFAULT_BATCH_SIZE,
        min_pixels: int | None = None,
        max_pixels: int | None = None,
        attn_implementation: str | None = None,
        base_model: str | os.PathLike | None = None,
        trust_remote_code: bool = False,
        show_progress: bool = False,
    ) -> Reranker:
        """Load a reranker from a hub id or a local directory.

        ``recipe`` names the recipe of a local directory whose recipe cannot be inferred (a ``umr.json``
        marker or a folder named like the hub repository is enough). ``instruction`` replaces the recipe's
        default instruction (see ``recipe.default_instruction`` for its role in the prompt). ``dtype``
        defaults to bf16 on CUDA and float32 on CPU.

        A LoRA-adapter checkpoint (MonoQwen2-VL) needs ``peft`` (``pip install 'umr[peft]'``); its base
        model is the one its ``adapter_config.json`` names, or ``base_model`` (a local copy of
        ``Qwen/Qwen2-VL-2B-Instruct`` on an offline machine). The adapter is merged into the base weights.

        A late-interaction model (``vidore/colqwen2.5-v0.2`` and the other ColQwen-family ids) gives a
        :class:`umr.late.rerank.LateInteractionReranker`, which scores pairs by MaxSim.
        """
        from umr.late.recipes import multi_vector_recipe_name

        if multi_vector_recipe_name(model_id_or_path, recipe) is not None:
            # a late-interaction model scores (query, candidate) pairs by MaxSim
            from umr.late.rerank import LateInteractionReranker

            return LateInteractionReranker.from_pretrained(  # type: ignore[return-value]
                model_id_or_path, recipe=recipe, device=device, dtype=dtype, instruction=instruction,
                base_model=base_model, attn_implementation=attn_implementation, min_pixels=min_pixels,
                max_pixels=max_pixels, batch_size=batch_size, max_batch_tokens=max_batch_tokens,
            )
        name = resolve_recipe_name(model_id_or_path, recipe, "reranking")
        rec = RERANK_RECIPES[name]
        dev = modeling.resolve_device(device)
        dt = modeling.resolve_dtype(dtype, dev, rec.preferred_dtype)
        attn = modeling.resolve_attn_implementation(attn_implementation, dev, dt, "causal")
        source = _source(model_id_or_path)
        if rec.adapter_of is not None or Path(source, "adapter_config.json").is_file():
            model, processor_source = _load_adapter_model(
                source, rec, base_model, device=dev, dtype=dt, attn_implementation=attn,
                trust_remote_code=trust_remote_code,
            )
        else:
            if base_model is not None:
                raise ValueError(
                    f"base_model= is only used for LoRA-adapter checkpoints; {source!r} (recipe {name!r}) "
                    "is a full model: drop base_model="
                )
            model = modeling.load_model(
                model_id_or_path, name, head="lm", device=dev, dtype=dt, attn_implementation=attn,
                trust_remote_code=trust_remote_code,
            )
            processor_source = source
        tokenizer = modeling.load_tokenizer(processor_source, name)
        image_processor = modeling.load_image_processor(
            processor_source,
            min_pixels if min_pixels is not None else rec.min_pixels,
            max_pixels if max_pixels is not None else rec.max_pixels,
        )
        logger.info("loaded reranker %s (recipe %s) on %s as %s with %s attention", source, name, dev, dt, attn)
        return cls(
            model, tokenizer, image_processor, rec,
            model_id=os.fspath(model_id_or_path), device=dev, dtype=dt, instruction=instruction,
            max_batch_tokens=max_batch_tokens, batch_size=batch_size, min_pixels=min_pixels,
            max_pixels=max_pixels, show_progress=show_progress,
        )

    # -- properties -------------------------------------------------------------------------------------
    @property
    def max_pixels(self) -> int:
        """Pixel budget of one image (query or candidate)."""
        return self.processor.max_pixels

    @property
    def min_pixels(self) -> int:
        return self.processor.min_pixels

    def __repr__(self) -> str:
        return (
            f"Reranker(model_id={self.model_id!r}, recipe={self.recipe.name!r}, "
            f"device={str(self.device)!r}, dtype={str(self.dtype).replace('torch.', '')!r})"
        )

    # -- prompts ----------------------------------------------------------------------------------------
    def instruction_for(self, query: MultimodalInput, instruction: str | None = None) -> str:
        """The instruction of one call: the query's own, the call's, the reranker's, the recipe default."""
        chosen = query.instruction or _check_instruction(instruction)
        if chosen is None:
            chosen = self.instruction
        return chosen if chosen is not None else self.recipe.default_instruction

    def _content(self, item: MultimodalInput) -> str:
        return render_content(item, image_placeholder=self.recipe.image_placeholder, image_first=self.recipe.image_first)

    def build_prompt(self, query: InputLike, candidate: InputLike, instruction: str | None = None) -> str:
        """The exact text the model sees for one pair (one image placeholder per image)."""
        q = MultimodalInput.coerce(query)
        c = MultimodalInput.coerce(candidate)
        return fill(
            self.recipe.template,
            instruction=self.instruction_for(q, instruction),
            query=self._content(q),
            candidate=self._content(c),
        )

    # -- scoring ----------------------------------------------------------------------------------------
    def score(
        self,
        query: InputLike,
        candidates: Iterable[InputLike],
        instruction: str | None = None,
        *,
        batch_size: int | None = None,
        max_batch_tokens: int | None = None,
        show_progress: bool | None = None,
    ) -> list[float]:
        """Relevance of each candidate to ``query``, in [0, 1], in the order of ``candidates``.

        An empty ``candidates`` gives ``[]``. A candidate that cannot be read raises ``InputError``
        naming its position (``candidate #3: ...``, counting from 0). Candidate text too long for the
        recipe's ``max_length`` (with the query and the images) is cut at the end, with a warning.
        """
        q = _coerce_query(query)
        items = _coerce_candidates(candidates)
        if not items:
            return []
        bs = _positive_int("batch_size", batch_size) if batch_size is not None else self.batch_size
        budget = (
            _positive_int("max_batch_tokens", max_batch_tokens)
            if max_batch_tokens is not None else self.max_batch_tokens
        )
        pairs = self._prepare(q, items, self.instruction_for(q, instruction))
        logits = self._run(pairs, bs, budget, show_progress)
        return [float(s) for s in self._score_fn(logits)]

    def rerank(
        self,
        query: InputLike,
        candidates: Iterable[InputLike],
        top_n: int | None = None,
        instruction: str | None = None,
        **kwargs: Any,
    ) -> list[tuple[int, float]]:
        """``(index, score)`` of the candidates, best first; equal scores keep the candidates' order.

        ``top_n`` keeps the best ``top_n`` (a positive int; ``None`` keeps all). Other keyword
        arguments go to ``score``.
        """
        n = check_top_n(top_n)
        return rank_scores(self.score(query, candidates, instruction, **kwargs), n)

    # -- internals --------------------------------------------------------------------------------------
    def _geometry(self, owner: str, item: MultimodalInput) -> ImageGeometry:
        try:
            width, height = item.image_size()
        except InputError as exc:
            raise InputError(f"{owner}: {exc}") from None
        return self.processor.geometry(width, height)

    def _prepare(self, q: MultimodalInput, items: list[MultimodalInput], instruction: str) -> list[_Pair]:
        pad = self.recipe.image_pad_token
        if pad in instruction or (q.text is not None and pad in q.text):
            raise InputError(f"query: its text or instruction contains the image placeholder token {pad!r}; remove it")
        q_content = self._content(q)
        q_image = _PairImage("query", q, self._geometry("query", q)) if q.image is not None else None
        pairs: list[_Pair] = []
        cut = 0
        for i, item in enumerate(items):
            owner = f"candidate #{i}"
            if item.text is not None and pad in item.text:
                raise InputError(f"{owner}: its text contains the image placeholder token {pad!r}; remove it")
            c_image = _PairImage(owner, item, self._geometry(owner, item)) if item.image is not None else None
            ordered = (q_image, c_image) if self._query_first else (c_image, q_image)
            images = [im for im in ordered if im is not None]
            pair, was_cut = self._encode_pair(i, owner, item, instruction, q_content, images)
            cut += was_cut
            pairs.append(pair)
        if cut:
            logger.warning(
                "cut the text of %d candidate(s) so that each pair fits the %d-token limit of recipe %r",
                cut, self.processor.max_length, self.recipe.name,
            )
        return pairs

    def _encode_pair(
        self,
        index: int,
        owner: str,
        item: MultimodalInput,
        instruction: str,
        q_content: str,
        images: list[_PairImage],
    ) -> tuple[_Pair, bool]:
        """Tokenise one pair; cut the candidate's text at the end if the pair exceeds ``max_length``."""
        tokenizer = self.processor.tokenizer
        limit = self.processor.max_length
        visual = sum(im.geometry.num_tokens - 1 for im in images)
        current = item
        text_ids: list[int] = []
        keep = 0
        for attempt in range(8):
            candidate = self._content(current)
            prompt = fill(self.recipe.template, instruction=instruction, query=q_content, candidate=candidate)
            ids = tokenizer.encode(prompt, add_special_tokens=False)
            if ids.count(self.processor.image_pad_id) != len(images):  # checked above; a tokenizer surprise
                raise InputError(f"{owner}: the prompt does not hold one image placeholder per image")
            cost = len(ids) + visual
            if cost <= limit:
                return _Pair(index=index, ids=ids, images=images), current is not item
            if not item.text:
                break
            if attempt == 0:
                text_ids = tokenizer.encode(item.text, add_special_tokens=False)
                keep = len(text_ids)
            keep -= (cost - limit) + attempt  # growing slack: BPE may merge differently at the cut
            if keep <= 0:
                break
            current = dataclasses.replace(item, text=tokenizer.decode(text_ids[:keep]))
        raise InputError(
            f"{owner}: the pair takes {cost} tokens (query, instruction"
            f"{', images' if images else ''}{' and the candidate text' if item.text else ''}), over the "
            f"{limit}-token limit of recipe {self.recipe.name!r}; shorten the query or lower max_pixels"
        )

    def _pixels(self, image: _PairImage) -> EncodedImage:
        """Decode, resize and patchify one image of a pair."""
        return self.processor.encode_image(image.item, image.geometry, image.owner)

    def _collate(self, pairs: Sequence[_Pair], cached: dict[int, EncodedImage]) -> dict[str, torch.Tensor]:
        """Encode the pairs' images (the query's come from ``cached``), expand placeholders, pad, stack."""
        wanted = [im for pair in pairs for im in pair.images if id(im.item) not in cached]
        pool = preprocess_pool() if self.device.type == "cuda" else None
        fresh = iter(self.processor.encode_images([(im.item, im.geometry, im.owner) for im in wanted], pool))
        rows: list[list[int]] = []
        images: list[EncodedImage] = []
        for pair in pairs:
            mine = [cached[id(im.item)] if id(im.item) in cached else next(fresh) for im in pair.images]
            rows.append(self.processor.expand(pair.ids, mine))
            images.extend(mine)
        batch = self.processor.pad(rows, images)
        if self.device.type == "cuda":
            batch = {k: v.pin_memory() for k, v in batch.items()}
        return batch

    def _forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B, 2) float32 [yes, no] logits at each row's last real position."""
        batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
        if "pixel_values" in batch:
            batch["pixel_values"] = batch["pixel_values"].to(self.dtype)
        hidden = modeling.forward_hidden(  # (B, L, H) final-norm states; no lm_head
            self.model, batch, positions=self.recipe.positions, attention="causal",
            image_token_id=self.processor.image_pad_id,
        )
        last = pooling.last_token(hidden, batch["attention_mask"]).float()  # (B, H)
        logits = last @ self._head_weight.T  # (B, 2)
        if self._head_bias is not None:
            logits = logits + self._head_bias
        return logits

    def _run(
        self, pairs: list[_Pair], batch_size: int, max_batch_tokens: int, show_progress: bool | None
    ) -> torch.Tensor:
        progress = None
        if show_progress if show_progress is not None else self.show_progress:
            from tqdm.auto import tqdm

            progress = tqdm(total=len(pairs), desc="reranking", unit="pair")
        try:
            with self._lock, torch.inference_mode():
                # The query's image is decoded and patchified once per call, not once per pair.
                cached: dict[int, EncodedImage] = {}
                for image in pairs[0].images:
                    if image.owner == "query":
                        cached[id(image.item)] = self._pixels(image)
                logits = run_planned(
                    [p.num_tokens for p in pairs],
                    max_tokens=max_batch_tokens,
                    max_batch_size=batch_size,
                    collate=lambda idx: self._collate([pairs[i] for i in idx], cached),
                    forward=self._forward,
                    on_batch=progress.update if progress is not None else None,
                    overlap=self.device.type != "cpu",
                )
        finally:
            if progress is not None:
                progress.close()
        return logits.float().cpu()


# ---------------------------------------------------------------------------------------------------
# Fusion with first-stage scores
# ---------------------------------------------------------------------------------------------------
def fuse(
    first_stage_scores: Iterable[float],
    rerank_scores: Iterable[float],
    weight: float = DEFAULT_FUSE_WEIGHT,
) -> list[float]:
    """Fuse first-stage similarities with rerank scores: ``first + weight * rerank``, element-wise.

    U-MARVEL reranks the top 50 retrieved candidates and ranks them by the retriever's cosine similarity
    plus 0.1 times the reranker's P(yes); the first stage keeps its say and the reranker breaks its near
    ties. Pass both lists in the same candidate order::

        hits = store.search(query, k=50)
        rr = reranker.score(query, [h.image for h in hits])
        fused = umr.fuse([h.score for h in hits], rr)          # weight=0.1
        ranked = sorted(range(len(hits)), key=lambda i: -fused[i])

    Raises ``ValueError`` when the lengths differ or a value (or ``weight``) is NaN or infinite, and
    ``TypeError`` for values that are not real numbers.
    """
    first = _finite_scores("first_stage_scores", first_stage_scores)
    second = _finite_scores("rerank_scores", rerank_scores)
    if len(first) != len(second):
        raise ValueError(
            f"first_stage_scores has {len(first)} values but rerank_scores has {len(second)}; "
            "pass one score of each kind per candidate, in the same order"
        )
    w = _finite_number("weight", weight)
    return [a + w * b for a, b in zip(first, second)]


def _finite_number(name: str, value: Any) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    out = float(value)
    if not math.isfinite(out):
        raise ValueError(f"{name} must be finite, got {out}")
    return out


def _finite_scores(name: str, values: Iterable[Any]) -> list[float]:
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        raise TypeError(f"{name} must be a sequence of numbers, got {type(values).__name__}")
    if isinstance(values, np.ndarray):
        if values.ndim != 1:
            raise ValueError(f"{name} must be one-dimensional, got shape {values.shape}")
        values = values.tolist()
    return [_finite_number(f"{name}[{i}]", v) for i, v in enumerate(values)]


# ---------------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------------
def check_top_n(top_n: Any) -> int | None:
    """``None`` or a positive int (bools are refused); anything else raises ``ValueError``."""
    if top_n is None:
        return None
    if isinstance(top_n, (bool, np.bool_)) or not isinstance(top_n, numbers.Integral):
        raise ValueError(f"top_n must be a positive int or None, got {top_n!r} ({type(top_n).__name__})")
    if top_n <= 0:
        raise ValueError(f"top_n must be a positive int or None, got {top_n}")
    return int(top_n)


def rank_scores(scores: Sequence[float], top_n: int | None = None) -> list[tuple[int, float]]:
    """``(index, score)`` best first; equal scores keep their order (``sorted`` is stable); ``top_n`` cuts."""
    ranked = [(i, scores[i]) for i in sorted(range(len(scores)), key=lambda i: -scores[i])]
    return ranked if top_n is None else ranked[: check_top_n(top_n)]


def answer_head(model: Any, token_ids: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The lm_head rows (and bias entries) of ``token_ids`` as float32: ``(k, H)`` and ``(k,)`` or None."""
    head = model.get_output_embeddings()
    weight = getattr(head, "weight", None)
    if weight is None:
        raise ValueError(f"{type(model).__name__} has no lm_head weight to read answer-token logits from")
    index = torch.tensor(list(token_ids), dtype=torch.long, device=weight.device)
    rows = weight.detach().index_select(0, index).float()
    bias = getattr(head, "bias", None)
    return rows, (bias.detach().index_select(0, index).float() if bias is not None else None)


def _check_instruction(instruction: Any) -> str | None:
    if instruction is not None and not isinstance(instruction, str):
        raise TypeError(f"instruction must be str or None, got {type(instruction).__name__}")
    return instruction


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value <= 0:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


def _is_single(value: Any) -> bool:
    return isinstance(value, _SINGLE_INPUT_TYPES) or (hasattr(value, "size") and hasattr(value, "mode"))


def _coerce_query(query: Any) -> MultimodalInput:
    if query is None:
        raise TypeError("query must be a umr input (text, image or {'text', 'image'}), got None")
    try:
        return MultimodalInput.coerce(query)
    except TypeError as exc:
        raise TypeError(f"query: {exc}") from None


def _coerce_candidates(candidates: Any) -> list[MultimodalInput]:
    """A list of inputs; a single input (a str, an image, a dict) counts as one candidate."""
    if candidates is None:
        raise TypeError("candidates must be a list of umr inputs, got None")
    if _is_single(candidates):
        candidates = [candidates]
    if not isinstance(candidates, Iterable):
        raise TypeError(f"candidates must be a list of umr inputs, got {type(candidates).__name__}")
    out: list[MultimodalInput] = []
    for i, value in enumerate(candidates):
        try:
            out.append(MultimodalInput.coerce(value))
        except (TypeError, InputError) as exc:
            raise type(exc)(f"candidate #{i}: {exc}") from None
    return out


def _source(model_id_or_path: str | os.PathLike) -> str:
    path = Path(os.fspath(model_id_or_path)).expanduser()
    return str(path) if path.exists() else os.fspath(model_id_or_path)


def _has_tokenizer(source: str) -> bool:
    path = Path(source)
    return path.is_dir() and any((path / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json"))


def _load_adapter_model(
    source: str,
    recipe: RerankRecipe,
    base_model: str | os.PathLike | None,
    *,
    device: torch.device,
    dtype: torch.dtype,
    attn_implementation: str,
    trust_remote_code: bool,
) -> tuple[Any, str]:
    """Load base + peft LoRA adapter, merged. Returns the model and where the tokenizer lives."""
    try:
        import peft
    except ImportError as exc:
        raise ImportError(
            f"{source!r} (recipe {recipe.name!r}) is a LoRA adapter and loading it needs peft: "
            "pip install 'umr[peft]'  (or: pip install peft)"
        ) from exc
    base_hint = recipe.adapter_of or "<base model id>"
    how = (
        f"Download the adapter and its base where the hub is reachable (`hf download {source} --local-dir "
        f"./models/ADAPTER` and `hf download {base_hint} --local-dir ./models/BASE`), then call "
        "from_pretrained('./models/ADAPTER', base_model='./models/BASE')"
    )
    try:
        config = peft.PeftConfig.from_pretrained(source)
    except (OSError, ValueError) as exc:
        raise ModelNotFoundError(
            f"cannot read the LoRA adapter config (adapter_config.json) of {source!r}: {exc}. {how}"
        ) from exc
    if base_model is not None:
        base = _source(base_model)
    else:
        named = config.base_model_name_or_path
        base = named or recipe.adapter_of or ""
        if named and not Path(named).exists() and Path(source, named).is_dir():
            base = str(Path(source, named))  # a base path recorded relative to the adapter folder
        if not base:
            raise ModelNotFoundError(f"the adapter {source!r} names no base model; pass base_model=")
    logger.info("loading base model %s for the LoRA adapter %s", base, source)
    try:
        model = modeling.load_model(
            base, recipe.name, head="lm", device=device, dtype=dtype, attn_implementation=attn_implementation,
            trust_remote_code=trust_remote_code,
        )
    except ModelNotFoundError as exc:
        raise ModelNotFoundError(
            f"cannot load the base model {base!r} of the LoRA adapter {source!r}: it is "
            "not a local folder and the hub cannot be reached (or its files are broken). Download it where "
            f"the hub is reachable (`hf download {base} --local-dir ./models/BASE`) and pass "
            "base_model='./models/BASE'"
        ) from exc
    try:
        with warnings.catch_warnings(), modeling.quiet_transformers():
            warnings.simplefilter("ignore", FutureWarning)
            adapted = peft.PeftModel.from_pretrained(model, source)
            merged = adapted.merge_and_unload()
    except (OSError, ValueError) as exc:
        raise ModelNotFoundError(f"cannot load the LoRA adapter weights of {source!r}: {exc}") from exc
    merged.to(device)
    merged.eval()
    merged.requires_grad_(False)
    return merged, source if _has_tokenizer(source) else _source(base)
