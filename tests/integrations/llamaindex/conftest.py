"""Fixtures for the LlamaIndex adapter tests: page images on disk, the adapter over the tiny model."""

from __future__ import annotations

from pathlib import Path

import pytest

PAGE_TEXTS = (
    "Quarterly revenue grew by twelve percent.",
    "Installation manual: press the reset button.",
    "A red circle, a blue square and a green triangle.",
    "Figure 3 shows the retrieval pipeline.",
)


def draw_page(path: Path, index: int, text: str) -> Path:
    """A small, distinct page image: a coloured background, a shape and a line of text."""
    from PIL import Image, ImageDraw

    colours = [(230, 60, 60), (60, 160, 230), (80, 200, 120), (240, 200, 40)]
    img = Image.new("RGB", (196 + 28 * index, 252), (250, 250, 250))
    draw = ImageDraw.Draw(img)
    draw.rectangle((10, 10 + 12 * index, 120, 90 + 12 * index), fill=colours[index % len(colours)])
    draw.text((10, 200), text[:30], fill=(0, 0, 0))
    img.save(path, format="PNG")
    return path


@pytest.fixture(scope="session")
def page_images(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Four page PNGs in a temp folder (PAGE_TEXTS[i] is drawn on page i)."""
    folder = tmp_path_factory.mktemp("pages")
    return [draw_page(folder / f"page_{i + 1}.png", i, t) for i, t in enumerate(PAGE_TEXTS)]


#: small image budgets (16-64 visual tokens) keep these CPU tests fast; the code paths are the same
PIXELS = {"min_pixels": 16 * 28 * 28, "max_pixels": 64 * 28 * 28}


@pytest.fixture(scope="session")
def li_embedder(tiny_model_dir):
    """``umr.Embedder`` on the tiny model with a small pixel budget (CPU, float32)."""
    import umr

    return umr.Embedder.from_pretrained(tiny_model_dir, device="cpu", **PIXELS)


@pytest.fixture(scope="session")
def li_reranker(tiny_reranker_dir):
    """``umr.Reranker`` on the tiny reranker with a small pixel budget."""
    import umr

    return umr.Reranker.from_pretrained(tiny_reranker_dir, device="cpu", **PIXELS)


@pytest.fixture(scope="session")
def umr_embed(li_embedder):
    """``UMREmbedding`` wrapping ``li_embedder``."""
    from llama_index.embeddings.umr import UMREmbedding

    return UMREmbedding(embedder=li_embedder)


@pytest.fixture(scope="session")
def page_vectors(li_embedder, page_images):
    """Document-side vectors of ``page_images`` from the core embedder (the reference values)."""
    return li_embedder.embed_documents(list(page_images))


@pytest.fixture(scope="session")
def page_texts() -> tuple[str, ...]:
    """The text drawn on each page of ``page_images``."""
    return PAGE_TEXTS


@pytest.fixture(autouse=True)
def _page_folder_allowed(page_images: list[Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """The test pages' folder counts as a store image folder (as a ChromaStore's would) for UMRRerank."""
    from umr import confine

    monkeypatch.setattr(confine, "_registered", [*confine.registered_roots(), page_images[0].parent.resolve()])
