"""``Reranker``: pointwise generative reranking of text, image and fused candidates with an MLLM.

Each (query, candidate) pair is rendered into the recipe's prompt, run through the model once, and scored
from the next-token logits of the recipe's two answer tokens (``Yes``/``No``, ``True``/``False`` or
``yes``/``no``) at the last position:

* ``softmax``: P(yes) = softmax([logit_yes, logit_no])[0] (zero-shot Qwen-VL, MonoQwen2-VL);
* ``sigmoid``: sigmoid(logit_yes - logit_no) (Qwen3-VL-Reranker); the same number for two logits.

``Reranker`` is the front door: it coerces the query and candidates, resolves the instruction, renders
each pair's prompt from the recipe and turns logits into scores. The engine the recipe names
(``umr.engines``; today the native one, ``umr.engines.native.NativeRerankEngine``) does the work: only
the last position's final hidden state meets the two lm_head rows of the answer tokens (a (2, H) slice
of the weight, taken once at load time), so the full-vocabulary lm_head is never applied. Pairs are
sorted by token cost (a page image costs hundreds of visual tokens, a text chunk a few dozen), packed
into batches under a padded-token budget, left-padded so the last position is every row's answer slot,
and the scores come back in the caller's order. Ranking and fusion with first-stage scores live in the
torch-free ``umr.ranking`` (``fuse``, ``rank_scores`` are importable from here too).

>>> rr = Reranker.from_pretrained("Qwen/Qwen3-VL-Reranker-2B")                  # doctest: +SKIP
>>> rr.rerank("revenue in 2023?", ["page1.png", "page2.png", "a text chunk"])   # doctest: +SKIP
[(0, 0.93), (2, 0.41), (1, 0.02)]
"""

from __future__ import annotations

import dataclasses
import logging
import numbers
import os
import threading
from collections.abc import Callable, Iterable
from typing import Any

import torch

from umr import modeling
from umr.backbones.base import BackboneProcessor
from umr.engines import rerank_engine_class
from umr.engines.base import RerankEngine, source_path
from umr.errors import InputError
from umr.inputs import InputLike, MultimodalInput, is_single_input
from umr.prompting import fill, mbeir_format, render_content
from umr.ranking import (  # noqa: F401 - fuse, finite_scores: re-exported (umr.fuse, old import paths)
    DEFAULT_FUSE_WEIGHT,
    RankFromScores,
    check_top_n,
    finite_scores,
    fuse,
    rank_scores,
)
from umr.recipes import DEFAULT_RERANKER, RERANK_RECIPES, RerankRecipe, resolve_recipe_name

logger = logging.getLogger(__name__)

#: default padded-token budget of one forward pass (about 14 pairs of a query and a 1024-token page)
DEFAULT_MAX_BATCH_TOKENS = 16384
DEFAULT_BATCH_SIZE = 16


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


class Reranker(RankFromScores):
    """A pointwise MLLM reranker following one recipe (zero-shot Qwen-VL, MonoQwen2-VL, Qwen3-VL-Reranker).

    >>> rr = Reranker.from_pretrained("Qwen/Qwen3-VL-Reranker-2B")                      # doctest: +SKIP
    >>> rr.score("a red car", ["car.jpg", {"text": "caption", "image": "b.png"}, "text"])  # doctest: +SKIP
    [0.91, 0.12, 0.40]

    Queries and candidates are any umr inputs: text, an image (path, ``file://`` URI, PIL image, bytes)
    or both (``{"text": ..., "image": ...}``). Scores are floats in [0, 1].

    ``Reranker(model, tokenizer, image_processor, recipe, model_id=..., device=..., dtype=...)`` wraps
    parts loaded elsewhere (tests, custom loading); the keyword options are those of ``from_pretrained``.
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
        engine_cls = rerank_engine_class(recipe.engine)
        #: how this recipe runs (``umr.engines``): the model, its processor, the answer-token rows
        self.engine: RerankEngine = engine_cls(
            model, tokenizer, image_processor, recipe, device=device, dtype=dtype,
            min_pixels=min_pixels if min_pixels is not None else recipe.min_pixels,
            max_pixels=max_pixels if max_pixels is not None else recipe.max_pixels,
        )
        self.yes_token_id = self.engine.yes_token_id
        self.no_token_id = self.engine.no_token_id
        self._score_fn = SCORE_FUNCTIONS[recipe.score]
        self._lock = threading.Lock()

    @property
    def model(self) -> Any:
        """The loaded model (with its lm_head; only the answer tokens' rows are ever used)."""
        return self.engine.model

    @property
    def processor(self) -> BackboneProcessor:
        """The backbone's processor (tokenizer, image processor, pixel budget, ``max_length``)."""
        return self.engine.processor  # type: ignore[attr-defined, no-any-return]

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

        - ``model_id_or_path``: a published id (``umr models``) or a local checkpoint folder.
        - ``device``: ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``; None picks CUDA when available.
        - ``dtype``: ``"bfloat16"``, ``"float16"``, ``"float32"`` (or a ``torch.dtype``); None gives bf16
          on CUDA (fp16 where bf16 is unsupported) and float32 elsewhere.
        - ``recipe``: the recipe name, needed for a local folder whose recipe cannot be inferred (a
          ``umr.json`` marker or a folder named like the hub repository is enough).
        - ``instruction``: replaces the recipe's default instruction (``recipe.default_instruction``);
          a query's own instruction or a call's ``instruction=`` still win.
        - ``max_batch_tokens``: padded-token budget of one forward pass; ``batch_size``: most pairs per
          forward pass.
        - ``min_pixels`` / ``max_pixels``: pixel budget of one image (query or candidate); default: the
          recipe's.
        - ``attn_implementation``: ``"sdpa"`` (default), ``"eager"`` or ``"flash_attention_2"`` (the
          default on CUDA in half precision when ``flash_attn`` is installed).
        - ``base_model``: for a LoRA-adapter checkpoint (MonoQwen2-VL, needs ``pip install 'umr[peft]'``),
          the base model when its ``adapter_config.json`` names one that cannot be reached (a local copy
          of ``Qwen/Qwen2-VL-2B-Instruct`` on an offline machine); the adapter is merged into it. Refused
          for full checkpoints.
        - ``trust_remote_code``: passed to transformers when loading (the rerank recipes run built-in
          classes; leave it False).
        - ``show_progress``: a progress bar per ``score`` call (tqdm).

        A late-interaction model (``vidore/colqwen2.5-v0.2`` and the other ColQwen-family ids) gives a
        :class:`umr.late.rerank.LateInteractionReranker`, which scores pairs by MaxSim.
        """
        from umr.late.recipes import MULTI_VECTOR_RECIPES, multi_vector_recipe_name

        late = multi_vector_recipe_name(model_id_or_path, recipe)
        if late is not None:
            # a late-interaction model scores (query, candidate) pairs by MaxSim (its recipe's engine)
            return rerank_engine_class(MULTI_VECTOR_RECIPES[late].engine).from_pretrained(  # type: ignore[no-any-return]
                model_id_or_path, recipe=late, device=device, dtype=dtype, instruction=instruction,
                base_model=base_model, attn_implementation=attn_implementation, min_pixels=min_pixels,
                max_pixels=max_pixels, batch_size=batch_size, max_batch_tokens=max_batch_tokens,
            )
        name = resolve_recipe_name(model_id_or_path, recipe, "reranking")
        rec = RERANK_RECIPES[name]
        engine = rerank_engine_class(rec.engine)
        dev = modeling.resolve_device(device)
        dt = modeling.resolve_dtype(dtype, dev, rec.preferred_dtype)
        attn = modeling.resolve_attn_implementation(attn_implementation, dev, dt, "causal")
        source = source_path(model_id_or_path)
        parts = engine.load_parts(
            model_id_or_path, rec, device=dev, dtype=dt, attn_implementation=attn,
            trust_remote_code=trust_remote_code,
            min_pixels=min_pixels if min_pixels is not None else rec.min_pixels,
            max_pixels=max_pixels if max_pixels is not None else rec.max_pixels,
            base_model=base_model,
        )
        logger.info("loaded reranker %s (recipe %s) on %s as %s with %s attention", source, name, dev, dt, attn)
        return cls(
            parts.model, parts.tokenizer, parts.image_processor, rec,
            model_id=os.fspath(model_id_or_path), device=dev, dtype=dt, instruction=instruction,
            max_batch_tokens=max_batch_tokens, batch_size=batch_size, min_pixels=min_pixels,
            max_pixels=max_pixels, show_progress=show_progress,
        )

    # -- properties -------------------------------------------------------------------------------------
    @property
    def max_pixels(self) -> int:
        """Pixel budget of one image (query or candidate)."""
        return int(self.engine.max_pixels)  # type: ignore[attr-defined]

    @property
    def min_pixels(self) -> int:
        """Smallest pixel count an image is resized up to."""
        return int(self.engine.min_pixels)  # type: ignore[attr-defined]

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

    def _content(self, item: MultimodalInput, task_instruction: str = "") -> str:
        """One side of a pair: image placeholder and text, as the recipe writes them.

        ``task_instruction`` goes in front of the text (the query side of an ``instruction_in_query``
        recipe); ``text_style="mbeir"`` applies M-BEIR ``format_string`` and leaves out an empty text next
        to an image.
        """
        r = self.recipe
        text = item.text
        if task_instruction:
            text = f"{task_instruction} {text or ''}"
        if r.text_style == "mbeir":
            text = mbeir_format(text or "")
            if not text and item.image is not None:
                text = None
        if text != item.text:
            item = dataclasses.replace(item, text=text)
        return render_content(item, image_placeholder=r.image_placeholder, image_first=r.image_first)

    def _query_content(self, query: MultimodalInput, instruction: str) -> str:
        return self._content(query, instruction if self.recipe.instruction_in_query else "")

    def build_prompt(self, query: InputLike, candidate: InputLike, instruction: str | None = None) -> str:
        """The exact text the model sees for one pair (one image placeholder per image)."""
        q = MultimodalInput.coerce(query)
        c = MultimodalInput.coerce(candidate)
        chosen = self.instruction_for(q, instruction)
        return fill(
            self.recipe.template,
            instruction=chosen,
            query=self._query_content(q, chosen),
            candidate=self._content(c),
        )

    def prompt_for(self, query: MultimodalInput, instruction: str) -> Callable[[MultimodalInput], str]:
        """``candidate -> prompt`` for one query and a resolved instruction (what the engine tokenises)."""
        q_content = self._query_content(query, instruction)

        def prompt(candidate: MultimodalInput) -> str:
            return fill(self.recipe.template, instruction=instruction, query=q_content, candidate=self._content(candidate))

        return prompt

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
        chosen = self.instruction_for(q, instruction)
        prompt = self.prompt_for(q, chosen)
        logits = self._run(q, items, prompt, chosen, bs, budget, show_progress)  # (n, 2) [yes, no]
        return [float(s) for s in self._score_fn(logits)]

    # -- internals --------------------------------------------------------------------------------------
    def _prepare(self, query: MultimodalInput, items: list[MultimodalInput], instruction: str) -> list[Any]:
        """The engine's tokenised pairs of one call (each knows its ``num_tokens``); benchmarks read it."""
        return self.engine.prepare_pairs(  # type: ignore[attr-defined, no-any-return]
            query, items, self.prompt_for(query, instruction), instruction
        )

    def _run(
        self,
        query: MultimodalInput,
        items: list[MultimodalInput],
        prompt: Callable[[MultimodalInput], str],
        instruction: str,
        batch_size: int,
        max_batch_tokens: int,
        show_progress: bool | None,
    ) -> torch.Tensor:
        progress = None
        if show_progress if show_progress is not None else self.show_progress:
            from tqdm.auto import tqdm

            progress = tqdm(total=len(items), desc="reranking", unit="pair")
        try:
            with self._lock, torch.inference_mode():
                return self.engine.answer_logits(
                    query, items, prompt, batch_size=batch_size, max_batch_tokens=max_batch_tokens,
                    on_batch=progress.update if progress is not None else None, instruction=instruction,
                )
        finally:
            if progress is not None:
                progress.close()


# ---------------------------------------------------------------------------------------------------
# Helpers (ranking and fusion live in ``umr.ranking``; ``fuse``, ``rank_scores`` and ``check_top_n`` are
# imported above so that ``umr.reranker.fuse`` and friends keep working)
# ---------------------------------------------------------------------------------------------------
def _check_instruction(instruction: Any) -> str | None:
    if instruction is not None and not isinstance(instruction, str):
        raise TypeError(f"instruction must be str or None, got {type(instruction).__name__}")
    return instruction


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value <= 0:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


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
    if is_single_input(candidates):
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


def __getattr__(name: str) -> Any:
    # ``answer_head`` moved to the Qwen-VL backbone; the old import path still works, loaded lazily so
    # that this generic module imports nothing family-specific.
    if name == "answer_head":
        from umr.backbones.qwen_vl.modeling import answer_head

        return answer_head
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
