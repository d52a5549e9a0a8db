"""The engine and backbone registries: recipes name engines, the pipeline asks them."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from umr import pooling
from umr.backbones import BACKBONES, get_backbone
from umr.engines import ENGINES, embed_engine_class, get_engine, rerank_engine_class
from umr.engines.native import NativeEmbedEngine, NativeRerankEngine
from umr.engines.own_code import OwnCodeEmbedEngine
from umr.recipes import EMBED_RECIPES, GME, RERANK_RECIPES


def test_every_recipe_names_a_registered_local_engine():
    for recipe in (*EMBED_RECIPES.values(), *RERANK_RECIPES.values()):
        assert get_engine(recipe.engine).local
    assert embed_engine_class(GME.engine) is NativeEmbedEngine
    assert embed_engine_class(EMBED_RECIPES["mm-embed"].engine) is OwnCodeEmbedEngine
    assert rerank_engine_class(RERANK_RECIPES["qwen3-vl-reranker"].engine) is NativeRerankEngine
    # the old attribute still reads as before
    assert {n: r.backend for n, r in EMBED_RECIPES.items()} == {
        "gme": "native", "u-marvel": "native", "u-marvel-mbeir-eval": "native", "dse": "native",
        "qwen3-vl-embedding": "native", "mm-embed": "remote-encode",
    }
    assert get_engine("native").servable and not get_engine("own-code").servable
    assert get_engine("native").trainable and not get_engine("own-code").trainable


def test_unknown_or_non_local_engines_are_refused_with_the_valid_names():
    with pytest.raises(ValueError, match=r"unknown engine 'colbert'; known engines: late-interaction, native, own-code, remote-server"):
        dataclasses.replace(GME, engine="colbert")
    with pytest.raises(ValueError, match="not one a recipe can name"):
        dataclasses.replace(GME, engine="remote-server")
    with pytest.raises(ValueError, match="no rerank side; engines that do: late-interaction, native"):
        rerank_engine_class("own-code")
    assert set(ENGINES) >= {"native", "own-code", "remote-server"}


def test_backbones_by_model_type():
    for model_type in ("qwen2_vl", "qwen2_5_vl", "qwen3_vl"):
        assert get_backbone(model_type) is BACKBONES["qwen2_vl"]
    with pytest.raises(ValueError, match="no native backbone for model_type 'llava_next'"):
        get_backbone("llava_next")


def test_pooler_registry_is_open():
    hidden = torch.arange(12, dtype=torch.float32).view(1, 4, 3)
    mask = torch.tensor([[1, 1, 1, 0]])
    ids = torch.zeros_like(mask)
    assert pooling.make_pooler("last")(hidden, mask, ids).tolist() == [[6.0, 7.0, 8.0]]
    assert pooling.make_pooler("mean")(hidden, mask, ids).tolist() == [[3.0, 4.0, 5.0]]
    with pytest.raises(ValueError, match="unknown pooling 'multi'; valid: 'last', 'mean'"):
        pooling.make_pooler("multi")
    pooling.register_pooler("first-test", lambda **_: (lambda h, m, i: h[:, 0]))
    try:
        assert pooling.make_pooler("first-test")(hidden, mask, ids).tolist() == [[0.0, 1.0, 2.0]]
    finally:
        del pooling.POOLERS["first-test"]


def test_embedder_asks_its_engine(tiny_embedder):
    assert isinstance(tiny_embedder.engine, NativeEmbedEngine)
    assert tiny_embedder.processor is tiny_embedder.engine.processor
    assert tiny_embedder.model is tiny_embedder.engine.model
