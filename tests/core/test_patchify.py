"""``FastPatchifier`` gives the transformers image processor's ``pixel_values`` bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from umr.backbones.qwen_vl.patchify import FastPatchifier
from umr.backbones.qwen_vl.processing import smart_resize


@pytest.fixture(scope="module")
def image_processor(tiny_model_dir):
    from umr.backbones.qwen_vl.processing import load_image_processor

    return load_image_processor(str(tiny_model_dir), 256 * 28 * 28, 1280 * 28 * 28)


def _fast(image_processor, **kw) -> FastPatchifier:
    args = dict(min_pixels=256 * 28 * 28, max_pixels=1280 * 28 * 28, patch_size=14, merge_size=2,
                temporal_patch_size=2, smart_resize=smart_resize)
    args.update(kw)
    return FastPatchifier(image_processor, **args)


@pytest.mark.parametrize("size", [(840, 1176), (838, 1186), (1500, 1100), (300, 500), (40, 900)])
def test_equal_to_the_image_processor(image_processor, size: tuple[int, int]) -> None:
    fast = _fast(image_processor)
    assert fast.enabled
    rng = np.random.default_rng(sum(size))
    image = Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8), "RGB")
    got, grid = fast.patchify(image)
    out = image_processor(images=[image], size={"shortest_edge": 256 * 28 * 28, "longest_edge": 1280 * 28 * 28},
                          return_tensors="np")
    assert grid == [int(x) for x in out["image_grid_thw"][0]]
    assert got.dtype == np.float32 and got.shape == out["pixel_values"].shape
    assert np.array_equal(got, out["pixel_values"])


def test_a_mismatch_switches_the_fast_path_off(image_processor) -> None:
    wrong = _fast(image_processor, merge_size=1)  # not how this processor groups patches
    assert not wrong.enabled
    image = Image.new("RGB", (448, 448), (10, 200, 30))
    got, grid = wrong.patchify(image)  # the image processor's own output
    out = image_processor(images=[image], size={"shortest_edge": 256 * 28 * 28, "longest_edge": 1280 * 28 * 28},
                          return_tensors="np")
    assert np.array_equal(got, out["pixel_values"]) and grid == [1, 32, 32]


def test_collate_writes_every_image_into_one_batch_array(tiny_embedder) -> None:
    rng = np.random.default_rng(3)
    images = [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), "RGB")
              for w, h in ((500, 700), (1200, 300), (64, 64))]
    proc = tiny_embedder.processor
    batch = proc.collate(tiny_embedder.prepare_inputs([*images, "a text-only input"]))
    ref = [proc.image_processor(images=[proc.resize(p.input, p.geometry, "x")],
                                size={"shortest_edge": proc.min_pixels, "longest_edge": proc.max_pixels},
                                return_tensors="np")
           for p in tiny_embedder.prepare_inputs(images)]
    expected = np.concatenate([r["pixel_values"] for r in ref])
    assert np.array_equal(batch["pixel_values"].numpy(), expected)
    assert batch["image_grid_thw"].tolist() == [r["image_grid_thw"][0].tolist() for r in ref]
