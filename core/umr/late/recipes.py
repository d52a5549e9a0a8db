"""Multi-vector (late-interaction) recipes as data: the ColQwen family.

Facts from colpali-engine's ``ColQwen2Processor`` / ``ColQwen2_5_Processor`` and the ``ColQwen2`` /
``ColQwen2_5`` models, and the model cards:

* pages are images rendered into ``<|im_start|>user\\n<|vision_start|><|image_pad|><|vision_end|>Describe
  the image.<|im_end|><|endoftext|>`` (the image pad expanded to one token per merged 28x28 patch);
* queries are ``"Query: " + text + "<|endoftext|>" * 10`` (ten augmentation tokens, no chat markup);
* the processor resizes images once, within ``4 * 28 * 28`` and ``768 * 28 * 28`` pixels
  (``max_num_visual_tokens = 768``); the tokenizer pads on the left;
* the model is the Qwen-VL base model (causal attention, its own M-RoPE positions); every token's final
  hidden state goes through ``custom_text_proj`` (a linear layer to 128 dims, with bias), is
  L2-normalised and multiplied by the attention mask (``mask_non_image_embeddings`` is off by default);
* the published ``vidore`` checkpoints are LoRA adapters on a ``*-base`` checkpoint that holds the
  backbone and the projection head.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

# torch-free and independent of umr.recipes (which lists these models in its table)
QWEN_IMAGE_PAD = "<|image_pad|>"

COLQWEN_PAGE_PROMPT = (
    "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>Describe the image.<|im_end|><|endoftext|>"
)


@dataclass(frozen=True)
class MultiVectorRecipe:
    """How a late-interaction model turns a query or a page into one normalised vector per token."""

    name: str
    family: str
    backbone: str  # transformers model_type (qwen2_vl, qwen2_5_vl)
    #: the engine that runs it (``umr.engines``)
    engine: str = "late-interaction"
    #: the official code this recipe follows
    reference: str = (
        "illuin-tech/colpali colpali_engine/models/qwen2/colqwen2 (ColQwen2, ColQwen2Processor) and "
        "qwen2_5/colqwen2_5 (ColQwen2_5, ColQwen2_5_Processor)"
    )
    #: the page prompt; ``image_pad_token`` in it is expanded to the image's visual tokens
    page_prompt: str = COLQWEN_PAGE_PROMPT
    query_prefix: str = "Query: "
    #: appended to every query (colpali-engine: the augmentation token ten times)
    query_suffix: str = "<|endoftext|>" * 10
    image_pad_token: str = QWEN_IMAGE_PAD
    min_pixels: int = 4 * 28 * 28
    max_pixels: int = 768 * 28 * 28
    padding_side: str = "left"
    #: name of the projection head's weights in the checkpoint (``<head>.weight`` / ``<head>.bias``)
    head: str = "custom_text_proj"
    dim: int = 128
    #: keep only the image tokens of a page (colpali-engine's ``mask_non_image_embeddings``)
    mask_non_image_tokens: bool = False
    #: the published checkpoint is a LoRA adapter; this is its base when adapter_config.json names none
    adapter_of: str | None = None
    preferred_dtype: str = "bfloat16"


COLQWEN2 = MultiVectorRecipe(name="colqwen2", family="ColQwen2", backbone="qwen2_vl", adapter_of="vidore/colqwen2-base")
COLQWEN2_5 = MultiVectorRecipe(
    name="colqwen2.5", family="ColQwen2.5", backbone="qwen2_5_vl", adapter_of="vidore/colqwen2.5-base"
)
# colnomic-embed-multimodal (nomic-ai): ColQwen2.5 architecture and processor, trained by Nomic
COLNOMIC = MultiVectorRecipe(name="colnomic", family="ColNomic", backbone="qwen2_5_vl")

MULTI_VECTOR_RECIPES: dict[str, MultiVectorRecipe] = {r.name: r for r in (COLQWEN2, COLQWEN2_5, COLNOMIC)}


@dataclass(frozen=True)
class MultiVectorModel:
    """A published multi-vector checkpoint: its id, recipe and the facts of the model table."""

    model_id: str
    recipe: str
    params: str
    license: str
    purpose: str


MULTI_VECTOR_MODELS: tuple[MultiVectorModel, ...] = (
    MultiVectorModel(
        "vidore/colqwen2.5-v0.2", "colqwen2.5", "3.8B", "see model card (Qwen2.5-VL-3B base: qwen-research)",
        "late-interaction page retrieval (LoRA on vidore/colqwen2.5-base; needs umr[peft])",
    ),
    MultiVectorModel(
        "vidore/colqwen2-v1.0", "colqwen2", "2.2B", "apache-2.0",
        "late-interaction page retrieval (LoRA on vidore/colqwen2-base; needs umr[peft])",
    ),
    MultiVectorModel(
        "nomic-ai/colnomic-embed-multimodal-3b", "colnomic", "3.8B",
        "see model card (Qwen2.5-VL-3B base: qwen-research)", "late-interaction page retrieval",
    ),
    MultiVectorModel(
        "nomic-ai/colnomic-embed-multimodal-7b", "colnomic", "8.3B", "apache-2.0",
        "late-interaction page retrieval, larger",
    ),
)


def _read_marker(path: Path) -> str | None:
    import json

    try:
        data = json.loads((path / "umr.json").read_text())
    except (OSError, ValueError):
        return None
    recipe = data.get("recipe") if isinstance(data, dict) else None
    return recipe if isinstance(recipe, str) else None


def multi_vector_recipe_name(model_id_or_path: str | os.PathLike, recipe: str | None = None) -> str | None:
    """The multi-vector recipe of ``recipe`` (a recipe name or model id), of a local checkout (its
    ``umr.json`` marker or a folder named like the hub repository) or of a published id; ``None`` when
    the model is not a multi-vector one."""
    by_id = {m.model_id.lower(): m.recipe for m in MULTI_VECTOR_MODELS}
    if recipe is not None:
        key = recipe.strip().lower()
        return key if key in MULTI_VECTOR_RECIPES else by_id.get(key)
    name = os.fspath(model_id_or_path)
    path = Path(name).expanduser()
    if path.is_dir():
        marked = _read_marker(path)
        if marked is not None:
            return marked if marked in MULTI_VECTOR_RECIPES else None
        for m in MULTI_VECTOR_MODELS:
            if m.model_id.split("/")[-1].lower() == path.name.lower():
                return m.recipe
        return None
    return by_id.get(name.strip().lower())


def late_fingerprint(model_id: str, recipe: str, min_pixels: int, max_pixels: int, dim: int) -> str:
    """What a multi-vector model's vectors depend on, as a short hash (used in store ids)."""
    import hashlib

    seed = f"{model_id}|{recipe}|{min_pixels}|{max_pixels}|{dim}|multi-vector"
    return hashlib.sha256(seed.encode()).hexdigest()[:16]
