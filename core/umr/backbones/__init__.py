"""Backbone families the native engine can run, looked up by transformers ``model_type``.

Adding a family: one package here (``processing`` + ``modeling``, see ``base.Backbone``), one
``register_backbone`` call below, and recipes naming its ``model_type`` in their ``backbone`` field.
"""

from __future__ import annotations

from typing import Any

from umr.backbones.base import Backbone
from umr.backbones.qwen_vl import QWEN_VL

#: transformers model_type -> backbone
BACKBONES: dict[str, Backbone] = {}


def register_backbone(backbone: Backbone) -> None:
    """Make ``backbone`` the one that runs each of its ``model_types``."""
    for model_type in backbone.model_types:
        BACKBONES[model_type] = backbone


register_backbone(QWEN_VL)


def get_backbone(model_type: str) -> Backbone:
    """The backbone of a transformers ``model_type``; ``ValueError`` naming the known ones otherwise."""
    try:
        return BACKBONES[model_type]
    except KeyError:
        raise ValueError(
            f"umr has no native backbone for model_type {model_type!r}; known: {', '.join(sorted(BACKBONES))}. "
            "Add a backbone package under umr/backbones/ (see umr.backbones.base.Backbone)"
        ) from None


def backbone_of(model: Any, fallback: str) -> Backbone:
    """The backbone of a loaded model (its config's ``model_type``), else of ``fallback`` (the recipe's)."""
    config = getattr(model, "config", None)
    model_type = getattr(config, "model_type", None)
    if isinstance(model_type, str) and model_type in BACKBONES:
        return BACKBONES[model_type]
    return get_backbone(fallback)


__all__ = ["BACKBONES", "Backbone", "backbone_of", "get_backbone", "register_backbone"]
