"""The native engine: umr runs the backbone itself (processor -> forward -> pooling / answer logits).

The engine is generic: everything family-specific comes from the backbone (``umr.backbones``, chosen by
the checkpoint's ``model_type``) and from the recipe. Per batch the embedding path is::

    processor.collate(prepared)          -> input_ids, attention_mask (B, L); pixel_values, image_grid_thw
    backbone.forward_hidden(model, ...)  -> hidden (B, L, H), final norm, no lm_head
    self.head(hidden, batch)             -> pooler(...) (B, H) for "last" / "mean"
    self.finish(pooled, dim)             -> float32, first ``dim`` columns, L2-normalised

``head`` and ``finish`` are the seams for other heads: a late-interaction (multi-vector) engine
subclasses ``NativeEmbedEngine``, registers a pooler (``umr.pooling.register_pooler``) or overrides
``head`` (projection + per-token vectors) and ``finish`` (per-token normalisation), and reuses loading,
prompting, batch planning and collation as they are.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch

from umr import modeling
from umr.backbones import backbone_of, get_backbone
from umr.backbones.base import Backbone, EncodedImage, ImageGeometry, PreparedInput, preprocess_pool
from umr.batching import run_planned
from umr.engines.base import EmbedCall, EmbedEngine, Parts, Prompter, RerankEngine, source_path
from umr.errors import InputError, ModelNotFoundError
from umr.inputs import MultimodalInput
from umr.pooling import Pooler, make_pooler
from umr.recipes import EmbedRecipe, RerankRecipe, Side

logger = logging.getLogger(__name__)


def _processing_files(
    model_id_or_path: str | os.PathLike, recipe: EmbedRecipe, backbone: Backbone, min_pixels: int, max_pixels: int
) -> tuple[Any, Any]:
    """The tokenizer (with the recipe's added tokens) and image processor of a checkpoint (no weights)."""
    source = source_path(model_id_or_path)
    tokenizer = modeling.load_tokenizer(source, recipe.name, recipe.added_tokens)
    return tokenizer, backbone.load_image_processor(source, min_pixels, max_pixels)


def _backbone_for_source(config: Any, fallback: str) -> Backbone:
    model_type = getattr(config, "model_type", None)
    return get_backbone(model_type if isinstance(model_type, str) else fallback)


def _to_device(batch: dict[str, torch.Tensor], device: torch.device, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """Move a collated batch to the model; pixel values take the model's dtype."""
    batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
    if "pixel_values" in batch:
        batch["pixel_values"] = batch["pixel_values"].to(dtype)
    return batch



def recipe_processor(
    backbone: Any, tokenizer: Any, image_processor: Any, recipe: Any, min_pixels: int, max_pixels: int
) -> Any:
    """The backbone's processor set up as an embedding or rerank ``recipe`` says (one place for both).

    The first resize uses the recipe's own budget when ``pre_resize_to_budget``, else (None) the
    backbone's reference defaults (qwen-vl-utils' 4·28²–16384·28² for Qwen-VL)."""
    return backbone.make_processor(
        tokenizer,
        image_processor,
        image_pad_token=recipe.image_pad_token,
        min_pixels=min_pixels,
        max_pixels=max_pixels,
        max_length=recipe.max_length,
        pre_resize=recipe.pre_resize,
        padding_side=recipe.padding_side,
        pre_resize_pixels=(min_pixels, max_pixels) if recipe.pre_resize_to_budget else None,
        alpha=recipe.alpha,
    )

class NativeEmbedEngine(EmbedEngine):
    """Embeddings from a backbone umr runs: token-budget batches, the recipe's pooler, normalisation.

    ``pooler`` replaces the recipe's pooling (``umr.pooling.make_pooler(recipe.pooling, ...)``).
    """

    name: ClassVar[str] = "native"

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        image_processor: Any,
        recipe: EmbedRecipe,
        *,
        device: torch.device,
        dtype: torch.dtype,
        min_pixels: int,
        max_pixels: int,
        pooler: Pooler | None = None,
    ) -> None:
        self.model = model
        self.recipe = recipe
        self.device = device
        self.dtype = dtype
        self.backbone = backbone_of(model, recipe.backbone)
        self.processor = recipe_processor(self.backbone, tokenizer, image_processor, recipe, min_pixels, max_pixels)
        exclude: tuple[int, int] | None = None
        if recipe.pool_exclude_span is not None:
            start, end = recipe.pool_exclude_span
            exclude = (self.processor.token_id(start), self.processor.token_id(end))
        self.exclude_span = exclude
        self.pooler: Pooler = pooler if pooler is not None else make_pooler(recipe.pooling, exclude_span=exclude)

    # -- loading ------------------------------------------------------------------------------------------
    @classmethod
    def choose_attn_implementation(
        cls, requested: str | None, device: torch.device, dtype: torch.dtype, recipe: EmbedRecipe
    ) -> str | None:
        return modeling.resolve_attn_implementation(requested, device, dtype, recipe.attention)

    @classmethod
    def load_processor(
        cls, model_id_or_path: str | os.PathLike, recipe: EmbedRecipe, *, config: Any, min_pixels: int,
        max_pixels: int,
    ) -> Any:
        backbone = _backbone_for_source(config, recipe.backbone)
        tokenizer, image_processor = _processing_files(model_id_or_path, recipe, backbone, min_pixels, max_pixels)
        return recipe_processor(backbone, tokenizer, image_processor, recipe, min_pixels, max_pixels)

    @classmethod
    def load_parts(
        cls,
        model_id_or_path: str | os.PathLike,
        recipe: EmbedRecipe,
        *,
        config: Any,
        device: torch.device,
        dtype: torch.dtype,
        attn_implementation: str | None,
        trust_remote_code: bool,
        min_pixels: int,
        max_pixels: int,
    ) -> Parts:
        backbone = _backbone_for_source(config, recipe.backbone)
        model = modeling.load_model(
            model_id_or_path, recipe.name, head="base", device=device, dtype=dtype,
            attn_implementation=attn_implementation, trust_remote_code=trust_remote_code,
        )
        tokenizer, image_processor = _processing_files(model_id_or_path, recipe, backbone, min_pixels, max_pixels)
        modeling.ensure_token_rows(model, tokenizer, recipe.added_tokens, recipe.name)
        return Parts(model, tokenizer, image_processor)

    # -- per batch ----------------------------------------------------------------------------------------
    def prepare(
        self, items: list[MultimodalInput], prompter: Prompter, side: Side, instruction: str | None
    ) -> list[PreparedInput]:
        processor = self.processor
        assert processor is not None
        limit = self.recipe.max_length_for(side)
        return [
            processor.prepare(
                i, prompter.with_text_only_image(it), prompter.build_prompt(it, side, instruction), max_length=limit
            )
            for i, it in enumerate(items)
        ]

    def collate(self, batch: list[PreparedInput]) -> dict[str, torch.Tensor]:
        """Tensors of one planned batch, on the CPU (pinned when the model is on CUDA)."""
        assert self.processor is not None
        pool = preprocess_pool() if self.device.type == "cuda" else None
        tensors = self.processor.collate(batch, pool)
        if self.device.type == "cuda":
            tensors = {k: v.pin_memory() for k, v in tensors.items()}
        return tensors

    def hidden(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Final-norm hidden states ``(B, L, H)`` of a batch already on the device."""
        assert self.processor is not None
        return self.backbone.forward_hidden(
            self.model, batch, positions=self.recipe.positions, attention=self.recipe.attention,
            image_token_id=self.processor.image_pad_id,
        )

    def head(self, hidden: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Pooled rows ``(B, H)`` float32 from hidden states ``(B, L, H)``."""
        return self.pooler(hidden, batch["attention_mask"], batch["input_ids"]).float()

    def finish(self, pooled: torch.Tensor, dim: int) -> torch.Tensor:
        """Matryoshka cut to the first ``dim`` columns, then L2 normalisation when the recipe asks."""
        pooled = pooled[:, :dim]
        if self.recipe.normalize:
            pooled = torch.nn.functional.normalize(pooled, p=2, dim=-1)
        return pooled

    def forward(self, batch: dict[str, torch.Tensor], dim: int) -> torch.Tensor:
        """One collated CPU batch to ``(B, dim)`` vectors on the device."""
        batch = _to_device(batch, self.device, self.dtype)
        return self.finish(self.head(self.hidden(batch), batch), dim)

    def encode_prepared(self, prepared: list[PreparedInput], dim: int) -> torch.Tensor:
        return self.forward(self.collate(list(prepared)), dim)

    def embed(self, items: list[MultimodalInput], prompter: Prompter, call: EmbedCall) -> torch.Tensor:
        return self.embed_prepared(self.prepare(items, prompter, call.side, call.instruction), call)

    def embed_prepared(self, prepared: list[PreparedInput], call: EmbedCall) -> torch.Tensor:
        vectors = run_planned(
            [p.num_tokens for p in prepared],
            max_tokens=call.max_batch_tokens,
            max_batch_size=call.batch_size,
            collate=lambda idx: self.collate([prepared[i] for i in idx]),
            forward=lambda batch: self.forward(batch, call.dim),
            on_batch=call.on_batch,
            overlap=self.device.type != "cpu",
        )
        return vectors.cpu()

    def save_parts(self, out_dir: str | os.PathLike) -> None:
        assert self.processor is not None
        with modeling.quiet_transformers():
            self.processor.tokenizer.save_pretrained(out_dir)
            self.processor.image_processor.save_pretrained(out_dir)


# ---------------------------------------------------------------------------------------------------
# Reranking
# ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PairImage:
    """One image of a pair: whose it is (for error messages), the input, and its planned geometry."""

    owner: str  # "query" or "candidate #i"
    item: MultimodalInput
    geometry: ImageGeometry


@dataclass
class Pair:
    """One tokenised (query, candidate) prompt, one placeholder token per image; its exact cost is known."""

    index: int
    ids: list[int]
    images: list[PairImage]  # in the order their placeholders appear in ``ids``

    @property
    def num_tokens(self) -> int:
        return len(self.ids) + sum(im.geometry.num_tokens - 1 for im in self.images)


class NativeRerankEngine(RerankEngine):
    """Pointwise yes/no reranking on a backbone umr runs.

    Each pair is one prompt; only the last position's final hidden state meets the lm_head rows of the
    two answer tokens (read once at load time), so the full-vocabulary head is never applied.
    """

    name: ClassVar[str] = "native"

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        image_processor: Any,
        recipe: RerankRecipe,
        *,
        device: torch.device,
        dtype: torch.dtype,
        min_pixels: int,
        max_pixels: int,
    ) -> None:
        self.model = model
        self.recipe = recipe
        self.device = device
        self.dtype = dtype
        self.backbone = backbone_of(model, recipe.backbone)
        self.processor = recipe_processor(self.backbone, tokenizer, image_processor, recipe, min_pixels, max_pixels)
        #: ``answer_logits="generate"``: the checkpoint's repetition penalty (None when there is none)
        self.repetition_penalty: float | None = None
        if recipe.answer_logits == "generate":
            penalty = getattr(getattr(model, "generation_config", None), "repetition_penalty", None)
            if penalty is not None and float(penalty) != 1.0:
                self.repetition_penalty = float(penalty)
        self.yes_token_id = self.processor.token_id(recipe.yes_token)
        self.no_token_id = self.processor.token_id(recipe.no_token)
        # (2, H) float32 rows of the lm_head for [yes, no] (and the bias entries, if the head has any)
        self.head_weight, self.head_bias = self.backbone.answer_head(model, (self.yes_token_id, self.no_token_id))
        self._query_first = recipe.template.index("{query}") < recipe.template.index("{candidate}")

    @property
    def min_pixels(self) -> int:
        return self.processor.min_pixels

    @property
    def max_pixels(self) -> int:
        return self.processor.max_pixels

    @property
    def max_length(self) -> int:
        return self.processor.max_length

    # -- loading ------------------------------------------------------------------------------------------
    @classmethod
    def load_parts(
        cls,
        model_id_or_path: str | os.PathLike,
        recipe: RerankRecipe,
        *,
        device: torch.device,
        dtype: torch.dtype,
        attn_implementation: str | None,
        trust_remote_code: bool,
        min_pixels: int,
        max_pixels: int,
        base_model: str | os.PathLike | None = None,
    ) -> Parts:
        source = source_path(model_id_or_path)
        if recipe.adapter_of is not None or Path(source, "adapter_config.json").is_file():
            model, processor_source = _load_adapter_model(
                source, recipe, base_model, device=device, dtype=dtype, attn_implementation=attn_implementation,
                trust_remote_code=trust_remote_code,
            )
        else:
            if base_model is not None:
                raise ValueError(
                    f"base_model= is only used for LoRA-adapter checkpoints; {source!r} (recipe "
                    f"{recipe.name!r}) is a full model: drop base_model="
                )
            model = modeling.load_model(
                model_id_or_path, recipe.name, head="lm", device=device, dtype=dtype,
                attn_implementation=attn_implementation, trust_remote_code=trust_remote_code,
            )
            processor_source = source
        tokenizer = modeling.load_tokenizer(processor_source, recipe.name)
        backbone = backbone_of(model, recipe.backbone)
        image_processor = backbone.load_image_processor(processor_source, min_pixels, max_pixels)
        return Parts(model, tokenizer, image_processor)

    # -- pairs --------------------------------------------------------------------------------------------
    def geometry(self, owner: str, item: MultimodalInput) -> ImageGeometry:
        """Planned sizes of one input's image, read from its header (errors name ``owner``)."""
        try:
            width, height = item.image_size()
        except InputError as exc:
            raise InputError(f"{owner}: {exc}") from None
        return self.processor.geometry(width, height)

    def prepare_pairs(
        self,
        query: MultimodalInput,
        candidates: list[MultimodalInput],
        prompt: Callable[[MultimodalInput], str],
        instruction: str,
    ) -> list[Pair]:
        """Tokenise every (query, candidate) prompt; candidate text too long for ``max_length`` is cut."""
        pad = self.recipe.image_pad_token
        if pad in instruction or (query.text is not None and pad in query.text):
            raise InputError(f"query: its text or instruction contains the image placeholder token {pad!r}; remove it")
        q_image = PairImage("query", query, self.geometry("query", query)) if query.image is not None else None
        pairs: list[Pair] = []
        cut = 0
        for i, item in enumerate(candidates):
            owner = f"candidate #{i}"
            if item.text is not None and pad in item.text:
                raise InputError(f"{owner}: its text contains the image placeholder token {pad!r}; remove it")
            c_image = PairImage(owner, item, self.geometry(owner, item)) if item.image is not None else None
            ordered = (q_image, c_image) if self._query_first else (c_image, q_image)
            images = [im for im in ordered if im is not None]
            pair, was_cut = self._encode_pair(i, owner, item, prompt, images)
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
        prompt: Callable[[MultimodalInput], str],
        images: list[PairImage],
    ) -> tuple[Pair, bool]:
        """Tokenise one pair; cut the candidate's text at the end if the pair exceeds ``max_length``."""
        tokenizer = self.processor.tokenizer
        limit = self.processor.max_length
        visual = sum(im.geometry.num_tokens - 1 for im in images)
        current = item
        text_ids: list[int] = []
        keep = 0
        cost = 0
        for attempt in range(8):
            ids = tokenizer.encode(prompt(current), add_special_tokens=False)
            if ids.count(self.processor.image_pad_id) != len(images):  # checked above; a tokenizer surprise
                raise InputError(f"{owner}: the prompt does not hold one image placeholder per image")
            cost = len(ids) + visual
            if cost <= limit:
                return Pair(index=index, ids=ids, images=images), current is not item
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

    def pixels(self, image: PairImage) -> EncodedImage:
        """Decode, resize and patchify one image of a pair."""
        return self.processor.encode_image(image.item, image.geometry, image.owner)

    def collate(self, pairs: Sequence[Pair], cached: dict[int, EncodedImage]) -> dict[str, torch.Tensor]:
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

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B, 2) float32 [yes, no] logits at each row's last real position."""
        from umr.pooling import last_token

        batch = _to_device(batch, self.device, self.dtype)
        hidden = self.backbone.forward_hidden(  # (B, L, H) final-norm states; no lm_head
            self.model, batch, positions=self.recipe.positions, attention="causal",
            image_token_id=self.processor.image_pad_id,
        )
        last = last_token(hidden, batch["attention_mask"]).float()  # (B, H)
        logits = last @ self.head_weight.T  # (B, 2)
        if self.head_bias is not None:
            logits = logits + self.head_bias
        if self.repetition_penalty is not None:
            logits = penalise_seen_answers(
                logits, batch["input_ids"], batch["attention_mask"], (self.yes_token_id, self.no_token_id),
                self.repetition_penalty,
            )
        return logits

    def answer_logits(
        self,
        query: MultimodalInput,
        candidates: list[MultimodalInput],
        prompt: Callable[[MultimodalInput], str],
        *,
        batch_size: int,
        max_batch_tokens: int,
        on_batch: Callable[[int], None] | None = None,
        instruction: str = "",
    ) -> torch.Tensor:
        pairs = self.prepare_pairs(query, candidates, prompt, instruction)
        # The query's image is decoded and patchified once per call, not once per pair.
        cached: dict[int, EncodedImage] = {}
        for image in pairs[0].images:
            if image.owner == "query":
                cached[id(image.item)] = self.pixels(image)
        logits = run_planned(
            [p.num_tokens for p in pairs],
            max_tokens=max_batch_tokens,
            max_batch_size=batch_size,
            collate=lambda idx: self.collate([pairs[i] for i in idx], cached),
            forward=self.forward,
            on_batch=on_batch,
            overlap=self.device.type != "cpu",
        )
        return logits.float().cpu()


def penalise_seen_answers(
    logits: torch.Tensor,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    token_ids: Sequence[int],
    penalty: float,
) -> torch.Tensor:
    """transformers' repetition penalty on the answer columns: (B, k) logits of ``token_ids``.

    A token already in a row's prompt (real positions only) has its logit divided by ``penalty`` when
    positive, multiplied when negative, as ``generate`` does before it reports ``scores``.
    """
    out = logits.clone()
    real = attention_mask.bool()
    for k, tid in enumerate(token_ids):
        seen = ((input_ids == tid) & real).any(dim=-1).to(logits.device)  # (B,)
        col = logits[:, k]
        out[:, k] = torch.where(seen, torch.where(col < 0, col * penalty, col / penalty), col)
    return out


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
    attn_implementation: str | None,
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
        base = source_path(base_model)
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
    return merged, source if _has_tokenizer(source) else source_path(base)
