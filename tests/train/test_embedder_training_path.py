"""The training forward pass (prepare_inputs + encode_prepared) gives the inference vectors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from umr.train.synthetic import ShapesTask


def _inputs() -> list:
    imgs = [img for img, _ in ShapesTask(colours=2, shapes=2, seed=5).samples(1)]
    return ["a red circle", imgs[0], {"text": "a blue square", "image": imgs[1]}, "a longer text query about shapes"]


@pytest.mark.parametrize("side,instruction", [("document", None), ("query", None), ("query", "Find the picture.")])
def test_encode_prepared_equals_embed(fresh_embedder, side: str, instruction: str | None) -> None:
    emb = fresh_embedder
    items = _inputs()
    expected = emb.embed(items, side=side, instruction=instruction)
    emb.model.train()  # training mode must not change the vectors (no dropout in the recipe path)
    got = emb.encode_prepared(emb.prepare_inputs(items, side=side, instruction=instruction))
    emb.model.eval()
    assert got.requires_grad is False  # no trainable parameters yet
    np.testing.assert_allclose(got.detach().numpy(), expected, atol=1e-5)


def test_encode_prepared_is_differentiable_and_embed_unchanged(fresh_embedder) -> None:
    emb = fresh_embedder
    before = emb.embed_documents(["a red circle", "a blue square"])
    emb.model.get_input_embeddings().weight.requires_grad_(True)
    try:
        out = emb.encode_prepared(emb.prepare_inputs(["a red circle", "a blue square"]))
        assert out.requires_grad
        out.sum().backward()
        assert emb.model.get_input_embeddings().weight.grad is not None
    finally:
        emb.model.get_input_embeddings().weight.requires_grad_(False)
        emb.model.get_input_embeddings().weight.grad = None
    np.testing.assert_array_equal(emb.embed_documents(["a red circle", "a blue square"]), before)


def test_prepare_inputs_rejects_bad_side(fresh_embedder) -> None:
    with pytest.raises(ValueError, match="side must be"):
        fresh_embedder.prepare_inputs(["x"], side="passage")
    with pytest.raises(ValueError, match="at least one"):
        fresh_embedder.encode_prepared([])


def test_marker_pixel_budget_is_used(fresh_embedder, shapes_model_dir) -> None:
    from umr.train.synthetic import MAX_PIXELS, MIN_PIXELS

    assert (fresh_embedder.min_pixels, fresh_embedder.max_pixels) == (MIN_PIXELS, MAX_PIXELS)
    import umr

    explicit = umr.Embedder.from_pretrained(shapes_model_dir, device="cpu", max_pixels=MAX_PIXELS * 4)
    assert explicit.max_pixels == MAX_PIXELS * 4  # an explicit argument still wins
    assert torch.is_tensor(explicit.embed("x", convert_to="torch"))
