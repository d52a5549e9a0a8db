"""Tiny offline ColQwen-family checkouts, laid out like the published ones, for tests and demos.

``build_tiny_colqwen(path, recipe="colqwen2.5")`` writes, with random weights:

* ``path/base``: a Qwen-VL backbone saved by ``save_pretrained`` whose weights file also holds the
  projection head ``custom_text_proj.weight`` / ``.bias`` (hidden -> 128), like ``vidore/colqwen2.5-base``;
* ``path``: a LoRA adapter on it (``adapter_config.json`` + ``adapter_model.safetensors``) with colpali-
  engine's target pattern (every language-model projection and the head) and its module names
  (``base_model.model.model.layers.N...``, from the ColQwen class that subclassed the generation model),
  plus the tokenizer and image processor, like ``vidore/colqwen2.5-v0.2``.

``adapter=False`` writes one full checkpoint (backbone + head) at ``path`` instead. A ``umr.json`` marker
names the recipe.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from umr.late.recipes import MULTI_VECTOR_RECIPES
from umr.recipes import write_recipe_marker

#: colpali-engine's LoRA target pattern for the ColQwen adapters
COLPALI_LORA_TARGETS = r"(.*(model).*(down_proj|gate_proj|up_proj|k_proj|q_proj|v_proj|o_proj).*$|.*(custom_text_proj).*$)"
_LM_LINEARS = (
    ("self_attn", "q_proj"), ("self_attn", "k_proj"), ("self_attn", "v_proj"), ("self_attn", "o_proj"),
    ("mlp", "gate_proj"), ("mlp", "up_proj"), ("mlp", "down_proj"),
)


def _add_head(weights_dir: Path, hidden: int, dim: int, generator: Any) -> None:
    """Append ``custom_text_proj.weight`` / ``.bias`` to the checkpoint's safetensors file."""
    import torch
    from safetensors.torch import load_file, save_file

    files = sorted(weights_dir.glob("*.safetensors"))
    if len(files) != 1:
        raise RuntimeError(f"expected one safetensors file in {weights_dir}, found {len(files)}")
    tensors = load_file(str(files[0]))
    bound = 1.0 / hidden**0.5
    tensors["custom_text_proj.weight"] = (torch.rand((dim, hidden), generator=generator) * 2 - 1) * bound
    tensors["custom_text_proj.bias"] = (torch.rand((dim,), generator=generator) * 2 - 1) * bound
    save_file(tensors, str(files[0]), metadata={"format": "pt"})


def _save_adapter(adapter_dir: Path, config: Any, dim: int, rank: int, generator: Any) -> None:
    import torch
    from safetensors.torch import save_file

    text = config.text_config
    hidden, inter, heads = text.hidden_size, text.intermediate_size, text.num_attention_heads
    head_dim = getattr(text, "head_dim", None) or hidden // heads
    kv = text.num_key_value_heads * head_dim
    shapes = {
        "q_proj": (heads * head_dim, hidden), "k_proj": (kv, hidden), "v_proj": (kv, hidden),
        "o_proj": (hidden, heads * head_dim), "gate_proj": (inter, hidden), "up_proj": (inter, hidden),
        "down_proj": (hidden, inter),
    }
    tensors = {}

    def lora(prefix: str, out_f: int, in_f: int) -> None:
        tensors[f"{prefix}.lora_A.weight"] = torch.randn((rank, in_f), generator=generator) * 0.2
        tensors[f"{prefix}.lora_B.weight"] = torch.randn((out_f, rank), generator=generator) * 0.2

    for layer in range(text.num_hidden_layers):
        for block, name in _LM_LINEARS:
            lora(f"base_model.model.model.layers.{layer}.{block}.{name}", *shapes[name])
    lora("base_model.model.custom_text_proj", dim, hidden)
    save_file(tensors, str(adapter_dir / "adapter_model.safetensors"), metadata={"format": "pt"})
    adapter_config = {
        "peft_type": "LORA",
        "task_type": "FEATURE_EXTRACTION",
        "base_model_name_or_path": "base",
        "r": rank,
        "lora_alpha": 2 * rank,
        "lora_dropout": 0.0,
        "bias": "none",
        "target_modules": COLPALI_LORA_TARGETS,
        "init_lora_weights": "gaussian",
        "use_rslora": False,
        "fan_in_fan_out": False,
        "inference_mode": True,
        "modules_to_save": None,
    }
    (adapter_dir / "adapter_config.json").write_text(json.dumps(adapter_config, indent=2))


def build_tiny_colqwen(
    path: str | os.PathLike,
    recipe: str = "colqwen2.5",
    *,
    seed: int = 0,
    adapter: bool = True,
    hidden_size: int = 64,
    num_layers: int = 2,
    vocab_size: int = 512,
    rank: int = 4,
) -> Path:
    """Write a tiny random-weight checkout of a multi-vector ``recipe``; returns ``path``."""
    import torch
    import transformers
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    from umr import testing
    from umr.modeling import quiet_transformers

    if recipe not in MULTI_VECTOR_RECIPES:
        raise ValueError(f"unknown multi-vector recipe {recipe!r}; valid: {', '.join(sorted(MULTI_VECTOR_RECIPES))}")
    rec = MULTI_VECTOR_RECIPES[recipe]
    config_fn, model_cls, patch = testing.TINY_BACKBONES[rec.backbone]
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    target = out / "base" if adapter else out
    target.mkdir(exist_ok=True)
    tokenizer = testing._train_tokenizer(vocab_size)
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in testing.SPECIAL_TOKENS}
    config = getattr(testing, config_fn)(len(tokenizer), ids, hidden=hidden_size, layers=num_layers)
    generator = torch.Generator().manual_seed(seed + 17)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = getattr(transformers, model_cls)(config)
    model.eval()
    with quiet_transformers():
        model.save_pretrained(target)
    _add_head(target, hidden_size, rec.dim, generator)
    cfg_path = target / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["architectures"] = ["ColQwen2" if rec.backbone == "qwen2_vl" else "ColQwen2_5"]
    cfg_path.write_text(json.dumps(cfg, indent=2))
    image_processor = Qwen2VLImageProcessorPil(
        min_pixels=rec.min_pixels, max_pixels=rec.max_pixels, patch_size=patch, merge_size=2, temporal_patch_size=2
    )
    for folder in {target, out}:
        tokenizer.save_pretrained(folder)
        image_processor.save_pretrained(folder)
    if adapter:
        _save_adapter(out, config, rec.dim, rank, generator)
    write_recipe_marker(out, recipe, tiny=True, seed=seed, backbone=rec.backbone)
    return out
