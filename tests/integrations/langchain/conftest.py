"""Fixtures of the LangChain adapter tests: small PNG files written to a temp dir."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image, ImageDraw

COLOURS = ("red", "blue", "green", "orange")


@pytest.fixture(scope="session")
def png_files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Four different small PNG images (a coloured shape each)."""
    folder = tmp_path_factory.mktemp("pngs")
    paths = []
    for i, colour in enumerate(COLOURS):
        img = Image.new("RGB", (64 + 8 * i, 48), "white")
        draw = ImageDraw.Draw(img)
        if i % 2:
            draw.ellipse((8, 8, 40, 40), fill=colour)
        else:
            draw.rectangle((8, 8, 40 + 4 * i, 40), fill=colour)
        path = folder / f"{colour}.png"
        img.save(path)
        paths.append(path)
    return paths
