"""Multi-vector recipes (ColQwen2, ColQwen2.5, colnomic) on tiny checkouts against an independent
reference of the published facts: per-token cosine >= 0.9999; MaxSim scores; adapters through peft."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.late.colqwen_reference import ColQwenReference
from umr.errors import InputError
from umr.late.model import LateInteractionModel, remap_adapter_key
from umr.late.result import MultiVectors
from umr.late.testing import build_tiny_colqwen

pytest.importorskip("peft")

CASES = [("colqwen2", True), ("colqwen2.5", True), ("colnomic", False)]


@pytest.fixture(scope="module", params=CASES, ids=[c[0] for c in CASES])
def checkout(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    recipe, adapter = request.param
    return build_tiny_colqwen(tmp_path_factory.mktemp(recipe), recipe, seed=3, adapter=adapter)


def _pages() -> list[Image.Image]:
    rng = np.random.default_rng(0)
    big = Image.fromarray(rng.integers(0, 255, (900, 700, 3), dtype=np.uint8))  # over the pixel budget
    small = Image.fromarray(rng.integers(0, 255, (60, 90, 3), dtype=np.uint8))
    return [big, small]


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    assert a.shape == b.shape
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def test_vectors_match_reference(checkout: Path) -> None:
    model = LateInteractionModel.from_pretrained(checkout, device="cpu", dtype="float32")
    ref = ColQwenReference(checkout)
    queries = ["what is the total amount on the invoice?", "revenue"]
    got_q = model.embed_queries(queries)
    got_d = model.embed_documents(_pages())
    assert isinstance(got_q, MultiVectors) and got_q.dim == 128
    for got, text in zip(got_q, queries):
        want = ref.query(text)
        assert got.shape == want.shape
        assert _cosines(got, want).min() >= 0.9999
    for got, page in zip(got_d, _pages()):
        want = ref.page(page)
        assert got.shape == want.shape  # the big page was resized to <= 768 visual tokens
        assert _cosines(got, want).min() >= 0.9999
    assert got_d.n_tokens[0] > got_d.n_tokens[1]
    scores = model.score(got_q, got_d)
    expected = [[(ref.query(q) @ ref.page(p).T).max(1).sum() for p in _pages()] for q in queries]
    np.testing.assert_allclose(scores, expected, atol=1e-4)


def test_adapter_changes_the_vectors(tmp_path: Path) -> None:
    path = build_tiny_colqwen(tmp_path / "a", "colqwen2.5", seed=5)
    with_adapter = LateInteractionModel.from_pretrained(path, device="cpu", dtype="float32")
    # the same base as a full checkpoint: what the vectors would be without the LoRA weights
    base_only = LateInteractionModel.from_pretrained(path / "base", recipe="colqwen2.5", device="cpu",
                                                     dtype="float32")
    a = with_adapter.embed_queries(["revenue"])[0]
    b = base_only.embed_queries(["revenue"])[0]
    assert _cosines(a, b).mean() < 0.99


def test_remap_adapter_keys() -> None:
    assert remap_adapter_key("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight") == (
        "base_model.model.model.language_model.layers.0.self_attn.q_proj.lora_A.weight")
    assert remap_adapter_key("base_model.model.visual.blocks.0.mlp.up_proj.lora_B.weight") == (
        "base_model.model.model.visual.blocks.0.mlp.up_proj.lora_B.weight")
    assert remap_adapter_key("base_model.model.language_model.layers.1.mlp.up_proj.lora_A.weight") == (
        "base_model.model.model.language_model.layers.1.mlp.up_proj.lora_A.weight")
    kept = "base_model.model.custom_text_proj.lora_A.weight"
    assert remap_adapter_key(kept) == kept


def test_inputs_the_recipe_cannot_take(tmp_path: Path) -> None:
    model = LateInteractionModel.from_pretrained(build_tiny_colqwen(tmp_path / "c", "colnomic", adapter=False),
                                                 device="cpu")
    with pytest.raises(InputError, match="queries are text"):
        model.embed_queries([Image.new("RGB", (64, 64))])
    with pytest.raises(InputError, match="from its image alone"):
        model.embed_documents([{"image": Image.new("RGB", (64, 64)), "text": "caption"}])
    with pytest.raises(ValueError, match="no instruction"):
        model.embed_queries(["q"], instruction="Find the page")
