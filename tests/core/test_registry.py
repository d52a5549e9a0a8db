"""Recipe registry lookups."""

from __future__ import annotations

import pytest

from umr.errors import UnknownRecipeError
from umr.recipes import GME, get_recipe, list_recipes, resolve_recipe_name


def test_lookup_by_id_and_name() -> None:
    assert get_recipe("Alibaba-NLP/gme-Qwen2-VL-2B-Instruct") is GME
    assert get_recipe("alibaba-nlp/GME-Qwen2-VL-7B-Instruct") is GME
    assert get_recipe("gme") is GME


def test_unknown_names_list_valid_choices() -> None:
    with pytest.raises(UnknownRecipeError, match="gme") as info:
        get_recipe("bert")
    assert "Alibaba-NLP/gme-Qwen2-VL-2B-Instruct" in str(info.value)


def test_local_folder_named_like_the_hub_repo(tmp_path) -> None:
    d = tmp_path / "gme-Qwen2-VL-2B-Instruct"
    d.mkdir()
    assert resolve_recipe_name(d, None, "embedding") == "gme"


def test_gme_facts() -> None:
    assert GME.default_instruction == "You are a helpful assistant."
    assert (GME.min_pixels, GME.max_pixels, GME.max_length) == (256 * 784, 1280 * 784, 1800)
    assert GME.pooling == "last" and GME.attention == "causal" and GME.positions == "1d"
    rows = list_recipes("embedder")
    assert any(r["model_id"] == "Alibaba-NLP/gme-Qwen2-VL-2B-Instruct" and r["dims"] == "1536" for r in rows)
