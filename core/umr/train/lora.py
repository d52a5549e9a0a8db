"""LoRA adapters (peft) on the language model, optionally the vision tower; merged weights for saving."""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from typing import Any

import torch

logger = logging.getLogger(__name__)

PEFT_HINT = 'LoRA fine-tuning needs peft: pip install "umr[train]" (or pip install peft)'

LM_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
# Qwen2-VL vision blocks: attn.qkv / attn.proj / mlp.fc1 / mlp.fc2; Qwen2.5/3-VL: gated MLP or linear_fc*
VISION_MODULES = ("qkv", "proj", "fc1", "fc2", "gate_proj", "up_proj", "down_proj", "linear_fc1", "linear_fc2")


@dataclass(frozen=True)
class LoraSettings:
    """LoRA on the language model's attention and MLP projections (and the vision blocks if asked).

    ``alpha`` defaults to ``2 * r``. ``vision=True`` also adapts the vision tower's blocks, useful when
    your images look unlike the backbone's training data (scans, plots, synthetic renders).
    """

    r: int = 16
    alpha: float | None = None
    dropout: float = 0.0
    vision: bool = False
    lm_modules: tuple[str, ...] = LM_MODULES
    vision_modules: tuple[str, ...] = VISION_MODULES

    def __post_init__(self) -> None:
        if not isinstance(self.r, int) or self.r <= 0:
            raise ValueError(f"LoRA rank r must be a positive integer, got {self.r!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"LoRA dropout must be in [0, 1), got {self.dropout}")

    def target_regex(self) -> str:
        parts = [rf".*language_model\..*\.({'|'.join(self.lm_modules)})"]
        if self.vision:
            parts.append(rf".*visual\.blocks\..*\.({'|'.join(self.vision_modules)})")
        return "^(" + "|".join(parts) + ")$"


def require_peft() -> Any:
    try:
        import peft
    except ImportError as exc:
        raise ImportError(PEFT_HINT) from exc
    return peft


def apply_lora(model: torch.nn.Module, settings: LoraSettings, seed: int = 0) -> Any:
    """Inject LoRA layers into ``model`` in place; returns the peft wrapper (for merging and unloading).

    ``model`` keeps its identity: the embedder goes on calling it, now with adapters inside. Only the
    adapter weights require gradients.
    """
    peft = require_peft()
    config = peft.LoraConfig(
        r=settings.r,
        lora_alpha=settings.alpha if settings.alpha is not None else 2 * settings.r,
        lora_dropout=settings.dropout,
        target_modules=settings.target_regex(),
    )
    with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.manual_seed(seed)
        wrapped = peft.get_peft_model(model, config)
    n = sum(p.numel() for p in model.parameters() if p.requires_grad)
    if n == 0:
        raise ValueError(
            f"LoRA matched no module of {type(model).__name__} (pattern {settings.target_regex()!r}); "
            f"valid language-model modules are {', '.join(LM_MODULES)}"
        )
    logger.info("LoRA r=%d on %s: %d trainable parameters", settings.r, type(model).__name__, n)
    return wrapped


def _lora_layers(model: torch.nn.Module) -> list[tuple[str, Any]]:
    try:
        from peft.tuners.lora import LoraLayer
    except ImportError:
        return []
    return [(name, m) for name, m in model.named_modules() if isinstance(m, LoraLayer)]


def merged_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The weights of ``model`` with every LoRA delta added to its base weight, under the plain names.

    Works while adapters are still injected (training continues afterwards); nothing is modified.
    """
    layers = dict(_lora_layers(model))
    state: dict[str, torch.Tensor] = {}
    for key, value in model.state_dict().items():
        if ".lora_" in key or "lora_magnitude" in key:
            continue
        state[key.replace(".base_layer.", ".")] = value.detach()
    for name, layer in layers.items():
        key = f"{name}.weight"
        base = layer.get_base_layer().weight.detach()
        delta = torch.zeros_like(base, dtype=torch.float32)
        for adapter in layer.active_adapters:
            if adapter in layer.lora_A:
                delta += layer.get_delta_weight(adapter).detach().float()
        state[key] = (base.float() + delta).to(base.dtype)
    return state


def merge_into_model(wrapped: Any) -> torch.nn.Module:
    """Fold the adapters into the base weights and remove the LoRA layers (in place); returns the model."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        model = wrapped.merge_and_unload()
    model.requires_grad_(False)
    return model
