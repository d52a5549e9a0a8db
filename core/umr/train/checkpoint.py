"""Saving a fine-tuned embedder as a normal model directory, and the resumable training state.

``save_model_dir`` writes what ``umr.Embedder.from_pretrained(dir)`` loads: config and safetensors
weights (LoRA merged), tokenizer files, the image processor config, and ``umr.json`` with the recipe,
the pixel budget and how the model was trained.

``checkpoint-last/`` holds what a resumed run needs: trainable weights (LoRA adapters or the full
parameters), the temperature, optimizer and scheduler state, the step, and the random generators.
It is written to a temporary folder and renamed, so a kill mid-save leaves the previous one intact.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import torch

from umr.engines import get_engine
from umr.modeling import quiet_transformers
from umr.recipes import RECIPE_FILE, read_recipe_marker, write_recipe_marker

logger = logging.getLogger(__name__)

STATE_DIR = "checkpoint-last"
STATE_FILE = "state.json"
WEIGHTS_FILE = "trainable.safetensors"
OPTIM_FILE = "optimizer.pt"
RNG_FILE = "rng.pt"


def save_model_dir(
    embedder: Any, out_dir: str | os.PathLike, state_dict: dict[str, torch.Tensor] | None = None,
    **info: Any,
) -> Path:
    """Write ``embedder``'s model as a loadable checkpoint directory (weights from ``state_dict`` if given)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if not get_engine(embedder.recipe.engine).trainable:
        raise NotImplementedError(
            f"recipe {embedder.recipe.name!r} runs on the {embedder.recipe.engine!r} engine and cannot be saved "
            "by umr.train"
        )
    with quiet_transformers():
        embedder.model.save_pretrained(out, state_dict=state_dict, safe_serialization=True)
    embedder.engine.save_parts(out)  # tokenizer and image processor files
    base_marker = read_recipe_marker(embedder.model_id) if Path(embedder.model_id).is_dir() else {}
    extra = {k: v for k, v in base_marker.items() if k not in ("recipe", "min_pixels", "max_pixels")}
    extra.update(
        min_pixels=int(embedder.min_pixels),
        max_pixels=int(embedder.max_pixels),
        base_model=base_marker.get("base_model", embedder.model_id),
        fine_tuned=info,
    )
    write_recipe_marker(out, embedder.recipe.name, **extra)
    logger.info("saved the fine-tuned model to %s", out)
    return out


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().cpu().contiguous() for n, p in model.named_parameters() if p.requires_grad}


def save_state(
    out_dir: str | os.PathLike,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    state: dict[str, Any],
    extra_tensors: dict[str, torch.Tensor],
) -> Path:
    from safetensors.torch import save_file

    final = Path(out_dir) / STATE_DIR
    tmp = Path(out_dir) / (STATE_DIR + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    tensors = {f"model.{k}": v for k, v in trainable_state(model).items()}
    tensors.update({f"extra.{k}": v.detach().cpu().reshape(-1).contiguous() for k, v in extra_tensors.items()})
    save_file(tensors, str(tmp / WEIGHTS_FILE))
    torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}, tmp / OPTIM_FILE)
    rng: dict[str, Any] = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    torch.save(rng, tmp / RNG_FILE)
    (tmp / STATE_FILE).write_text(json.dumps(state, indent=2))
    old = Path(out_dir) / (STATE_DIR + ".old")
    if final.exists():
        if old.exists():
            shutil.rmtree(old)
        final.rename(old)
    tmp.rename(final)
    if old.exists():
        shutil.rmtree(old)
    logger.info("saved training state at step %s to %s", state.get("step"), final)
    return final


def read_state(out_dir: str | os.PathLike) -> dict[str, Any] | None:
    """``state.json`` of ``out_dir/checkpoint-last`` (or of the ``.old`` copy a crash mid-save left)."""
    for name in (STATE_DIR, STATE_DIR + ".old"):
        path = Path(out_dir) / name / STATE_FILE
        if path.is_file():
            data = json.loads(path.read_text())
            data["_dir"] = str(path.parent)
            return data
    return None


def load_state(
    state_dir: str | os.PathLike,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
) -> dict[str, torch.Tensor]:
    """Restore trainable weights, optimizer, scheduler and generators; returns the extra tensors."""
    from safetensors.torch import load_file

    d = Path(state_dir)
    tensors = load_file(str(d / WEIGHTS_FILE))
    params = dict(model.named_parameters())
    with torch.no_grad():
        for key, value in tensors.items():
            if not key.startswith("model."):
                continue
            name = key[len("model."):]
            if name not in params:
                raise ValueError(
                    f"{d}: the saved training state has weight {name!r} that this model lacks; it was "
                    "written by a different model or LoRA setting (use a new --out, or --no-resume)"
                )
            params[name].copy_(value.to(params[name].device, params[name].dtype))
    opt = torch.load(d / OPTIM_FILE, map_location="cpu", weights_only=True)
    optimizer.load_state_dict(opt["optimizer"])
    scheduler.load_state_dict(opt["scheduler"])
    rng = torch.load(d / RNG_FILE, map_location="cpu", weights_only=True)
    torch.set_rng_state(rng["cpu"])
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
    return {k[len("extra."):]: v for k, v in tensors.items() if k.startswith("extra.")}


def is_model_dir(path: str | os.PathLike) -> bool:
    p = Path(path)
    return (p / "config.json").is_file() and (p / RECIPE_FILE).is_file()
