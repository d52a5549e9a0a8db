"""``RemoteEmbedder`` converts transparent images as its recipe's reference does before sending them."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image

from tests.remote.fake_openai import FakeServer
from umr.inputs import MultimodalInput
from umr.remote import RemoteEmbedder


def _rgba() -> Image.Image:
    rng = np.random.default_rng(3)
    rgb = rng.integers(0, 256, size=(64, 96, 3), dtype=np.uint8)
    alpha = rng.integers(0, 256, size=(64, 96), dtype=np.uint8)
    alpha[:, :20] = 0
    return Image.fromarray(np.dstack([rgb, alpha]), "RGBA")


def _decoded(url: str) -> np.ndarray:
    assert url.startswith("data:image/png;base64,")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))))


@pytest.mark.parametrize(("recipe", "white"), [("gme", False), ("qwen3-vl-embedding", True)])
def test_image_url_follows_the_recipe_alpha(fake: FakeServer, recipe: str, white: bool) -> None:
    emb = RemoteEmbedder(fake.url, "served", recipe=recipe, check_model=False)
    img = _rgba()
    white_rgb = Image.new("RGB", img.size, (255, 255, 255))
    white_rgb.paste(img, mask=img.split()[3])
    expected = white_rgb if white else img.convert("RGB")
    other = img.convert("RGB") if white else white_rgb
    got = _decoded(emb.image_url(MultimodalInput(image=img)))
    assert np.array_equal(got, _decoded(emb.image_url(MultimodalInput(image=expected))))
    assert not np.array_equal(got, _decoded(emb.image_url(MultimodalInput(image=other))))
