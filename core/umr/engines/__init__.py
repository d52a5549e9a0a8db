"""Engines: how a model family runs. A recipe names its engine (``recipe.engine``); ``Embedder``,
``Reranker``, ``umr.train`` and ``RemoteEmbedder`` ask the engine, never the recipe's name.

==================  =======================================================================================
``native``          umr runs the backbone itself: the backbone package's processor makes tensors, its
                    modeling gives final hidden states, a pooler (``umr.pooling``) or the answer-token
                    rows of the lm_head make vectors / scores (``umr.engines.native``)
``own-code``        the checkpoint ships its own modelling code with an ``encode`` method (MM-Embed); it is
                    loaded only with an explicit ``trust_remote_code=True`` (``umr.engines.own_code``)
``late-interaction`` umr runs a Qwen-VL backbone and a per-token projection head (ColQwen family): one
                    vector per token, scored by MaxSim (``umr.late.model``; recipes in ``umr.late.recipes``)
``remote-server``   an OpenAI-compatible server (vLLM, SGLang) runs the model; umr renders the recipe's
                    prompts and sends them (``umr.engines.remote_server``, behind ``umr.remote``). Any
                    recipe whose engine is ``servable`` can run this way.
==================  =======================================================================================

This module is light (no torch): the registry holds import paths, and the engine classes load on
first use. ``register_engine`` adds one (a late-interaction engine, say).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

#: the engine a recipe runs on when it names none
DEFAULT_ENGINE = "native"


@dataclass(frozen=True)
class EngineInfo:
    """One engine in the registry: what it can do and where its classes live ("module:Class")."""

    name: str
    summary: str
    #: the class that embeds (``umr.engines.base.EmbedEngine``), or None
    embed: str | None = None
    #: the class that reranks (``umr.engines.base.RerankEngine``), or None
    rerank: str | None = None
    #: umr renders its recipes' prompts, so the remote-server engine can send them to a server
    servable: bool = False
    #: ``umr.train`` can fine-tune its embedders (prepare / encode_prepared / save_parts)
    trainable: bool = False
    #: the checkpoint's own code runs: loading needs an explicit ``trust_remote_code=True``
    runs_checkpoint_code: bool = False
    #: a local engine (a recipe may name it); the remote-server engine is chosen by giving a server URL
    local: bool = True


ENGINES: dict[str, EngineInfo] = {}


def register_engine(info: EngineInfo) -> None:
    """Add (or replace) an engine under ``info.name``."""
    ENGINES[info.name] = info


register_engine(EngineInfo(
    name="native",
    summary="umr runs the backbone: processor -> forward -> pooling (or answer-token logits)",
    embed="umr.engines.native:NativeEmbedEngine",
    rerank="umr.engines.native:NativeRerankEngine",
    servable=True,
    trainable=True,
))
register_engine(EngineInfo(
    name="own-code",
    summary="the checkpoint's own modelling code and its encode() run (needs trust_remote_code=True)",
    embed="umr.engines.own_code:OwnCodeEmbedEngine",
    runs_checkpoint_code=True,
))
register_engine(EngineInfo(
    name="late-interaction",
    summary="umr runs a Qwen-VL backbone + a per-token projection head: one vector per token, MaxSim (ColQwen)",
    embed="umr.late.model:LateInteractionModel",
    rerank="umr.late.rerank:LateInteractionReranker",
))
register_engine(EngineInfo(
    name="remote-server",
    summary="an OpenAI-compatible server runs the model (umr.remote.RemoteEmbedder / RemoteReranker)",
    local=False,
))


def get_engine(name: str) -> EngineInfo:
    """The registry entry of an engine; ``ValueError`` naming the known engines otherwise."""
    try:
        return ENGINES[name]
    except KeyError:
        raise ValueError(f"unknown engine {name!r}; known engines: {', '.join(sorted(ENGINES))}") from None


def _load(path: str | None, what: str, name: str) -> Any:
    if path is None:
        runs = [n for n, e in ENGINES.items() if getattr(e, what) is not None]
        raise ValueError(
            f"engine {name!r} has no {what} side; engines that do: {', '.join(sorted(runs)) or 'none'}"
        )
    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(module), attr)


def embed_engine_class(name: str) -> Any:
    """The ``EmbedEngine`` subclass of engine ``name`` (imports it)."""
    return _load(get_engine(name).embed, "embed", name)


def rerank_engine_class(name: str) -> Any:
    """The ``RerankEngine`` subclass of engine ``name`` (imports it)."""
    return _load(get_engine(name).rerank, "rerank", name)


__all__ = [
    "DEFAULT_ENGINE",
    "ENGINES",
    "EngineInfo",
    "embed_engine_class",
    "get_engine",
    "register_engine",
    "rerank_engine_class",
]
