"""Tiny offline models of the real architectures, for tests, demos and benchmarks.

Nothing here touches a model hub. ``build_tiny_model(path, recipe=...)`` trains a small byte-level BPE
tokenizer on a built-in corpus, writes a Qwen-VL image processor config, creates the recipe's backbone
(Qwen2-VL, Qwen2.5-VL or Qwen3-VL) a few layers deep with random weights (deterministic for a seed) and
saves everything with ``save_pretrained``, so that it loads back through the same ``from_pretrained``
path a user's real checkpoint takes::

    from umr.testing import build_tiny_model
    path = build_tiny_model("/tmp/tiny-gme")                # recipe "gme" recorded in umr.json
    emb = umr.Embedder.from_pretrained(path)                   # no recipe= needed
    build_tiny_model("/tmp/tiny-q3", recipe="qwen3-vl-embedding")   # a Qwen3-VL backbone

``HashEmbedder`` is a model-free stand-in for an embedder (hash-seeded vectors), for store and pipeline
tests that need no model at all.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from umr.inputs import open_image
from umr.recipes import EMBED_RECIPES, RERANK_RECIPES, write_recipe_marker

SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)
# Recipe-specific added tokens (U-MARVEL) are added to every tiny tokenizer: harmless for others.
EXTRA_TOKENS = ("<instruction_start>", "<instruction_end>", "<emb>")
# Answer words of the reranker recipes: each must be a single token, as in the real Qwen vocabulary.
ANSWER_WORDS = ("Yes", "No", "yes", "no", "True", "False", "true", "false")

_CORPUS = """\
You are a helpful assistant. Represent the given text or image for retrieval.
Find an image that matches the given text. Find a document page that answers the question.
Query: what is shown in this image? What is the total amount on the invoice?
Does the candidate match the query? Answer Yes or No. Answer True or False.
The quick brown fox jumps over the lazy dog. A red circle, a blue square and a green triangle.
Retrieval augmented generation uses a vector database such as Chroma to store page embeddings.
Quarterly revenue grew by twelve percent; operating costs fell. Figure 3 shows the pipeline.
Installation manual: connect the power cable, press the reset button, wait for the green light.
Yes No yes no True False true false. The answer is Yes. The answer is No.
"""


def _train_tokenizer(vocab_size: int, extra_tokens: tuple[str, ...] = EXTRA_TOKENS) -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=1,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    corpus = [line for line in _CORPUS.splitlines() if line] * 4
    corpus += [" ".join(ANSWER_WORDS)] * 50
    tok.train_from_iterator(corpus, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=[t for t in SPECIAL_TOKENS if t not in ("<|endoftext|>", "<|im_end|>")],
    )
    if extra_tokens:
        fast.add_tokens(list(extra_tokens), special_tokens=True)
    missing = [w for w in ANSWER_WORDS if len(fast.encode(w, add_special_tokens=False)) != 1]
    if missing:
        fast.add_tokens(missing)
    return fast


def tiny_qwen2_vl_config(vocab_size: int, token_ids: dict[str, int], hidden: int = 64, layers: int = 2) -> Any:
    """A Qwen2-VL config a few layers deep (real architecture, toy sizes)."""
    from transformers import Qwen2VLConfig

    heads = 4
    head_dim = hidden // heads
    half = head_dim // 2
    mrope = [half // 4, (half - half // 4) // 2]
    mrope.append(half - sum(mrope))
    return Qwen2VLConfig(
        text_config={
            "vocab_size": vocab_size,
            "hidden_size": hidden,
            "intermediate_size": hidden * 2,
            "num_hidden_layers": layers,
            "num_attention_heads": heads,
            "num_key_value_heads": 2,
            "max_position_embeddings": 4096,
            "rms_norm_eps": 1e-6,
            "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": mrope},
            "bos_token_id": token_ids["<|endoftext|>"],
            "eos_token_id": token_ids["<|im_end|>"],
            "pad_token_id": token_ids["<|endoftext|>"],
            "tie_word_embeddings": True,
        },
        vision_config={
            "depth": 2,
            "embed_dim": 32,
            "hidden_size": hidden,
            "mlp_ratio": 2,
            "num_heads": 2,
            "in_channels": 3,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
        },
        image_token_id=token_ids["<|image_pad|>"],
        video_token_id=token_ids["<|video_pad|>"],
        vision_start_token_id=token_ids["<|vision_start|>"],
        vision_end_token_id=token_ids["<|vision_end|>"],
        tie_word_embeddings=True,
    )


def _text_config(vocab_size: int, token_ids: dict[str, int], hidden: int, layers: int) -> dict[str, Any]:
    heads = 4
    half = hidden // heads // 2
    mrope = [half // 4, (half - half // 4) // 2]
    mrope.append(half - sum(mrope))
    return {
        "vocab_size": vocab_size,
        "hidden_size": hidden,
        "intermediate_size": hidden * 2,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": 2,
        "max_position_embeddings": 4096,
        "rms_norm_eps": 1e-6,
        "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": mrope},
        "bos_token_id": token_ids["<|endoftext|>"],
        "eos_token_id": token_ids["<|im_end|>"],
        "pad_token_id": token_ids["<|endoftext|>"],
        "tie_word_embeddings": True,
    }


def _media_ids(token_ids: dict[str, int]) -> dict[str, int]:
    return {
        "image_token_id": token_ids["<|image_pad|>"],
        "video_token_id": token_ids["<|video_pad|>"],
        "vision_start_token_id": token_ids["<|vision_start|>"],
        "vision_end_token_id": token_ids["<|vision_end|>"],
    }


def tiny_qwen2_5_vl_config(
    vocab_size: int, token_ids: dict[str, int], hidden: int = 64, layers: int = 2
) -> Any:
    """A Qwen2.5-VL config a few layers deep: windowed vision attention with one full-attention block."""
    from transformers import Qwen2_5_VLConfig

    return Qwen2_5_VLConfig(
        text_config=_text_config(vocab_size, token_ids, hidden, layers),
        vision_config={
            "depth": 2,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_heads": 2,
            "in_channels": 3,
            "out_hidden_size": hidden,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "window_size": 56,
            "fullatt_block_indexes": [1],
        },
        tie_word_embeddings=True,
        **_media_ids(token_ids),
    )


def tiny_qwen3_vl_config(vocab_size: int, token_ids: dict[str, int], hidden: int = 64, layers: int = 2) -> Any:
    """A Qwen3-VL config a few layers deep: patch 16 (factor 32), interleaved M-RoPE, deepstack features."""
    from transformers import Qwen3VLConfig

    heads = 4
    head_dim = hidden // heads
    half = head_dim // 2
    mrope = [half - 2 * (half // 4), half // 4, half // 4]
    return Qwen3VLConfig(
        text_config={
            "vocab_size": vocab_size,
            "hidden_size": hidden,
            "intermediate_size": hidden * 2,
            "num_hidden_layers": layers,
            "num_attention_heads": heads,
            "num_key_value_heads": 2,
            "head_dim": head_dim,
            "max_position_embeddings": 4096,
            "rms_norm_eps": 1e-6,
            "rope_parameters": {
                "rope_type": "default", "rope_theta": 10000.0, "mrope_section": mrope, "mrope_interleaved": True,
            },
            "pad_token_id": token_ids["<|endoftext|>"],
            "tie_word_embeddings": True,
        },
        vision_config={
            "depth": 2,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_heads": 2,
            "in_channels": 3,
            "patch_size": 16,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "out_hidden_size": hidden,
            "num_position_embeddings": 64,
            "deepstack_visual_indexes": [0, 1],
        },
        tie_word_embeddings=True,
        **_media_ids(token_ids),
    )


#: backbones ``build_tiny_model`` can build: model_type -> (config builder, model class name, patch size)
TINY_BACKBONES: dict[str, tuple[str, str, int]] = {
    "qwen2_vl": ("tiny_qwen2_vl_config", "Qwen2VLForConditionalGeneration", 14),
    "qwen2_5_vl": ("tiny_qwen2_5_vl_config", "Qwen2_5_VLForConditionalGeneration", 14),
    "qwen3_vl": ("tiny_qwen3_vl_config", "Qwen3VLForConditionalGeneration", 16),
}


def recipe_backbone(recipe: str) -> str:
    """The backbone (transformers model_type) a recipe name runs on."""
    if recipe in EMBED_RECIPES:
        return EMBED_RECIPES[recipe].backbone
    if recipe in RERANK_RECIPES:
        return RERANK_RECIPES[recipe].backbone
    valid = sorted({*EMBED_RECIPES, *RERANK_RECIPES})
    raise ValueError(f"unknown recipe {recipe!r}; valid: {', '.join(valid)}")


def _save_tiny_lora(adapter_dir: Path, base_dir: Path, seed: int, rank: int = 4) -> None:
    """A random (non-zero) peft LoRA adapter on the language model's attention of the tiny base model."""
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError as exc:
        raise ImportError(
            "a tiny LoRA-adapter reranker needs peft: pip install 'umr[peft]' (or pip install peft)"
        ) from exc
    import torch
    from transformers import AutoModelForImageTextToText

    from umr.modeling import quiet_transformers

    with quiet_transformers():
        base = AutoModelForImageTextToText.from_pretrained(base_dir, dtype=torch.float32)
    config = LoraConfig(
        r=rank,
        lora_alpha=2 * rank,
        target_modules=r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj)",
        init_lora_weights=False,  # random A and B, so the adapter really changes the scores
    )
    with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # a transformers deprecation inside peft
        torch.manual_seed(seed + 1000)
        peft_model = get_peft_model(base, config)
    peft_model.save_pretrained(adapter_dir)


def build_tiny_model(
    path: str | os.PathLike,
    recipe: str = "gme",
    *,
    seed: int = 0,
    hidden_size: int = 64,
    num_layers: int = 2,
    vocab_size: int = 512,
    backbone: str | None = None,
) -> Path:
    """Write a tiny random-weight checkpoint (model, tokenizer, image processor) for ``recipe`` to ``path``.

    The architecture is the recipe's backbone (Qwen2-VL, Qwen2.5-VL or Qwen3-VL); ``backbone`` overrides
    it (e.g. a Qwen2.5-VL model under the zero-shot reranking recipe). The recipe is recorded in
    ``umr.json`` so ``Embedder.from_pretrained(path)`` / ``Reranker.from_pretrained(path)`` find it.
    Recipes whose tokens the released tokenizer lacks (U-MARVEL) get a tokenizer without them and an
    embedding with spare rows, like the real checkpoint. A recipe whose checkpoints are LoRA adapters
    (``adapter_of``: MonoQwen2-VL) gets a tiny base model in ``path/base`` and a random peft LoRA adapter
    on it in ``path`` (adapter files only, like the published repository; needs peft).
    Deterministic for a given ``seed``. Returns the path.
    """
    import torch
    import transformers
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    arch = backbone or recipe_backbone(recipe)
    if arch not in TINY_BACKBONES:
        raise ValueError(
            f"no tiny builder for backbone {arch!r} (recipe {recipe!r}); tiny models exist for "
            f"{', '.join(sorted(TINY_BACKBONES))}. Recipes that run a checkpoint's own code (MM-Embed) "
            "are tested with a small stand-in checkout instead."
        )
    config_fn, model_cls, patch = TINY_BACKBONES[arch]
    added = EMBED_RECIPES[recipe].added_tokens if recipe in EMBED_RECIPES else ()
    adapter = recipe in RERANK_RECIPES and RERANK_RECIPES[recipe].adapter_of is not None
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    target = out / "base" if adapter else out  # where the full model goes
    target.mkdir(exist_ok=True)
    tokenizer = _train_tokenizer(vocab_size, extra_tokens=() if added else EXTRA_TOKENS)
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    # like Qwen2-VL's 152064 rows for 151657 tokens: room for the tokens added at load time
    rows = len(tokenizer) + (-(-(len(tokenizer) + len(added)) // 64) * 64 - len(tokenizer) if added else 0)
    config = globals()[config_fn](rows, ids, hidden=hidden_size, layers=num_layers)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = getattr(transformers, model_cls)(config)
    model.eval()
    from umr.modeling import quiet_transformers

    with quiet_transformers():
        model.save_pretrained(target)
    tokenizer.save_pretrained(target)
    processor_kwargs: dict[str, Any] = {"patch_size": patch, "merge_size": 2, "temporal_patch_size": 2}
    if arch == "qwen3_vl":
        processor_kwargs.update(image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5])
    factor = patch * 2
    Qwen2VLImageProcessorPil(
        min_pixels=4 * factor * factor, max_pixels=16384 * 28 * 28, **processor_kwargs
    ).save_pretrained(target)
    if adapter:
        _save_tiny_lora(out, target, seed)
    write_recipe_marker(out, recipe, tiny=True, seed=seed, backbone=arch)
    return out


def build_tiny_colqwen(path: str | os.PathLike, recipe: str = "colqwen2.5", **kwargs: Any) -> Path:
    """A tiny random-weight checkout of a multi-vector (ColQwen-family) recipe, laid out like the published
    ones (a LoRA adapter on a ``base`` folder holding the backbone and the projection head); see
    :func:`umr.late.testing.build_tiny_colqwen`."""
    from umr.late.testing import build_tiny_colqwen as build

    return build(path, recipe, **kwargs)


# --------------------------------------------------------------------------------------------------
# a model-free embedder
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _HashRecipe:
    name: str
    max_pixels: int


class HashEmbedder:
    """A deterministic, model-free embedder for tests, demos and store benchmarks.

    Maps each input to a unit vector seeded by a hash of its content: equal inputs get equal vectors
    (score 1.0), different inputs nearly orthogonal ones.  It has the attributes
    :class:`umr.store.ChromaStore` reads from a real :class:`umr.Embedder` (``model_id``, ``dim``,
    ``max_pixels``, ``recipe.max_pixels``, ``fingerprint``) and no torch dependency.  It knows nothing
    about meaning: use it to test plumbing, never retrieval quality.  ``calls`` / ``items`` count the
    ``embed_documents`` calls and the inputs embedded.
    """

    def __init__(
        self, dim: int = 32, max_pixels: int = 256 * 28 * 28, model_id: str = "umr/hash-embedder"
    ) -> None:
        self.dim = dim
        self.model_id = model_id
        self.max_pixels = max_pixels
        self.recipe = _HashRecipe("hash", max_pixels)
        self.calls = 0
        self.items = 0

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(f"{self.model_id}|{self.dim}|{self.max_pixels}".encode()).hexdigest()[:16]

    def _digest(self, item: Any) -> bytes:
        h = hashlib.sha256()
        if isinstance(item, str):
            h.update(b"T" + item.encode("utf-8", "surrogateescape"))
        elif isinstance(item, Image.Image):
            h.update(b"I" + item.mode.encode() + repr(item.size).encode() + item.tobytes())
        elif isinstance(item, (bytes, bytearray)):
            h.update(b"B" + bytes(item))
        elif isinstance(item, os.PathLike):
            with open_image(item) as im:
                return self._digest(im.convert("RGB"))
        elif isinstance(item, Mapping):
            text, image = item.get("text"), item.get("image")
            if text is not None and image is None:
                return self._digest(text)
            if image is not None and text is None:
                return self._digest(image)
            h.update(b"F" + self._digest(text) + self._digest(image))
        else:
            raise TypeError(f"HashEmbedder cannot embed {type(item).__name__}")
        return h.digest()

    def _vector(self, item: Any) -> np.ndarray:
        seed = int.from_bytes(self._digest(item)[:8], "little")
        v = np.random.default_rng(seed).standard_normal(self.dim).astype(np.float32)
        return v / np.linalg.norm(v)

    def embed_documents(self, inputs: Iterable[Any], **_: Any) -> np.ndarray:
        items = list(inputs)
        self.calls += 1
        self.items += len(items)
        if not items:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([self._vector(x) for x in items])

    def embed_queries(self, inputs: Iterable[Any], instruction: str | None = None, **_: Any) -> np.ndarray:
        return self.embed_documents(inputs)

    def embed(self, inputs: Any, *, side: str = "document", instruction: str | None = None, **_: Any) -> np.ndarray:
        """Like ``umr.Embedder.embed``: one input gives ``(dim,)``, a sequence ``(n, dim)``."""
        from umr.inputs import is_single_input

        single = is_single_input(inputs)
        out = self.embed_documents([inputs] if single else inputs)
        return out[0] if single else out
