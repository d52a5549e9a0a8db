"""Pixel budget arithmetic and token-cost planning."""

from __future__ import annotations

import pytest

from umr.processing import clamp_aspect, smart_resize


def test_gme_double_resize_matches_model_card_example(tiny_embedder) -> None:
    geo = tiny_embedder.processor.geometry(1500, 1100)
    assert geo.pre_size == (1512, 1092)
    assert geo.final_size == (1176, 840)  # one resize alone would give 1148 x 840
    assert smart_resize(1100, 1500, 28, 256 * 784, 1280 * 784) == (840, 1148)
    assert geo.num_tokens == (1176 // 14) * (840 // 14) // 4


@pytest.mark.parametrize("w,h", [(1, 1), (28, 28), (10000, 50), (50, 30000), (4000, 3000), (3, 700)])
def test_sizes_are_multiples_of_28_within_budget(tiny_embedder, w: int, h: int) -> None:
    proc = tiny_embedder.processor
    fw, fh = proc.geometry(w, h).final_size
    assert fw % 28 == 0 and fh % 28 == 0
    assert fw * fh <= proc.max_pixels
    assert fw * fh >= proc.min_pixels or max(fw, fh) / min(fw, fh) > 50


def test_aspect_is_clamped_not_raised() -> None:
    assert clamp_aspect(50, 20000) == (50, 10000)
    assert clamp_aspect(30000, 50) == (10000, 50)
    assert clamp_aspect(100, 100) == (100, 100)


def test_token_cost_is_exact(tiny_embedder) -> None:
    from PIL import Image

    from umr.inputs import MultimodalInput

    proc = tiny_embedder.processor
    item = MultimodalInput(text="hello", image=Image.new("RGB", (640, 480)))
    prep = proc.prepare(0, item, tiny_embedder.build_prompt(item, "document"))
    batch = proc.collate([prep])
    assert batch["input_ids"].shape[1] == prep.num_tokens
    assert int((batch["input_ids"] == proc.image_pad_id).sum()) == prep.geometry.num_tokens


def test_threaded_image_encoding_equals_sequential(tiny_embedder) -> None:
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np
    from PIL import Image

    from umr.inputs import MultimodalInput

    proc = tiny_embedder.processor
    rng = np.random.default_rng(0)
    items = [
        MultimodalInput(image=Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)))
        for w, h in [(300, 200), (64, 900), (1000, 1000), (50, 50)]
    ]
    preps = [proc.prepare(i, it, tiny_embedder.build_prompt(it, "document")) for i, it in enumerate(items)]
    seq = proc.collate(preps)
    with ThreadPoolExecutor(3) as pool:
        par = proc.collate(preps, pool)
    assert seq.keys() == par.keys()
    for k in seq:
        assert (seq[k] == par[k]).all(), k
