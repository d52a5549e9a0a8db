"""Fixtures of the LangChain adapter tests: small PNG files written to a temp dir."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageDraw

COLOURS = ("red", "blue", "green", "orange")


@pytest.fixture(scope="session")
def small_embedder(tiny_model_dir: Path) -> Any:
    """The tiny GME model with a small pixel budget (16-64 visual tokens per image): fast image tests."""
    import umr

    return umr.Embedder.from_pretrained(
        tiny_model_dir, device="cpu", min_pixels=16 * 28 * 28, max_pixels=64 * 28 * 28
    )


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


def write_pdf(path: Path, pages: list[str]) -> Path:
    """A small PDF with one line of text per page (and a coloured bar, so pages differ as images)."""
    import pymupdf

    doc = pymupdf.open()
    for i, text in enumerate(pages):
        page = doc.new_page(width=300, height=200)
        page.insert_text((20, 40), text, fontsize=14)
        page.draw_rect(
            pymupdf.Rect(20, 80 + 10 * i, 200, 120 + 10 * i), color=(0, 0, 1), fill=(0.2 * i, 0.5, 0.8)
        )
    doc.save(path)
    doc.close()
    return path


@pytest.fixture(scope="session")
def pdf_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A two-page PDF."""
    folder = tmp_path_factory.mktemp("pdfs")
    return write_pdf(
        folder / "report.pdf", ["Quarterly revenue grew by twelve percent", "Installation manual"]
    )


#: the passages every store fixture holds
TEXTS = ["a red circle", "quarterly revenue grew", "press the reset button", "the lazy dog"]


@pytest.fixture(scope="session")
def store(
    small_embedder: Any, tmp_path_factory: pytest.TempPathFactory, pdf_file: Path, png_files: list[Path]
) -> Any:
    """A umr ChromaStore with 2 PDF pages, 2 images and 4 texts, embedded with the tiny GME model."""
    from umr.store import ChromaStore

    s = ChromaStore(small_embedder, tmp_path_factory.mktemp("umr_db"), collection="lc-test")
    report = s.add_files([pdf_file])
    assert report.ok and report.pages_added == 2, report.summary()
    s.add_images(png_files[:2], metadatas=[{"colour": "red"}, {"colour": "blue"}])
    s.add_texts(TEXTS)
    return s
