"""Tiny offline models of the real architectures, for tests, demos and benchmarks.

Nothing here touches a model hub. ``build_tiny_model(path)`` trains a small byte-level BPE tokenizer on
a built-in corpus, writes a Qwen2-VL image processor config, creates a Qwen2-VL model a few layers deep
with random weights (deterministic for a seed) and saves everything with ``save_pretrained``, so that it
loads back through the same ``from_pretrained`` path a user's real checkpoint takes::

    from umr.testing import build_tiny_model
    path = build_tiny_model("/tmp/tiny-gme")                # recipe "gme" recorded in umr.json
    emb = umr.Embedder.from_pretrained(path)                   # no recipe= needed
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

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


def _train_tokenizer(vocab_size: int) -> Any:
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
    fast.add_tokens(list(EXTRA_TOKENS), special_tokens=True)
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


def build_tiny_model(
    path: str | os.PathLike,
    recipe: str = "gme",
    *,
    seed: int = 0,
    hidden_size: int = 64,
    num_layers: int = 2,
    vocab_size: int = 512,
) -> Path:
    """Write a tiny random-weight Qwen2-VL checkpoint (model, tokenizer, image processor) to ``path``.

    ``recipe`` is any embedding or reranking recipe name using a Qwen2-VL backbone; it is recorded in
    ``umr.json`` so ``Embedder.from_pretrained(path)`` / ``Reranker.from_pretrained(path)`` find it.
    Deterministic for a given ``seed``. Returns the path.
    """
    import torch
    from transformers import Qwen2VLForConditionalGeneration
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    if recipe not in EMBED_RECIPES and recipe not in RERANK_RECIPES:
        valid = sorted({*EMBED_RECIPES, *RERANK_RECIPES})
        raise ValueError(f"unknown recipe {recipe!r}; valid: {', '.join(valid)}")
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = _train_tokenizer(vocab_size)
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    config = tiny_qwen2_vl_config(len(tokenizer), ids, hidden=hidden_size, layers=num_layers)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen2VLForConditionalGeneration(config)
    model.eval()
    from umr.modeling import quiet_transformers

    with quiet_transformers():
        model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    Qwen2VLImageProcessorPil(min_pixels=4 * 28 * 28, max_pixels=16384 * 28 * 28).save_pretrained(out)
    write_recipe_marker(out, recipe, tiny=True, seed=seed)
    return out
