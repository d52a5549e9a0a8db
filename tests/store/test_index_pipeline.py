"""The faster indexing pipeline stores what the plain path computes: page PNGs encoded by the render
workers decode to the rendered pixels, and the stored vectors equal those of the same rendered pages
embedded through ``Embedder`` directly with the transformers image processor (the old path)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.hostile_corpus import make_pdf
from umr.documents import iter_pages
from umr.store import ChromaStore

BUDGET = 64 * 28 * 28  # below GME's min_pixels: the second resize (an upscale) runs too


def test_indexed_vectors_equal_the_plain_embedder_path(tmp_path: Path, tiny_embedder, monkeypatch) -> None:
    pdf = tmp_path / "doc.pdf"
    make_pdf(pdf, pages=3, text="quarterly revenue")
    # fit rendering, as iter_pages below (planned rendering: tests/store/test_render_setting.py)
    with ChromaStore(tiny_embedder, tmp_path / "db", max_pixels=BUDGET, batch_size=2, render="fit") as store:
        report = store.add_files(pdf)
        assert report.ok and report.pages_added == 3
        got = store.collection.get(include=["embeddings", "metadatas"])
    assert tiny_embedder.processor.patchifier.enabled  # the fast path ran
    by_page = {m["page"]: (np.asarray(e), m) for e, m in zip(got["embeddings"], got["metadatas"])}

    pages = list(iter_pages(pdf, BUDGET))
    for page in pages:  # the worker's PNG holds exactly the rendered pixels
        with Image.open(by_page[page.page][1]["image_path"]) as im:
            assert np.array_equal(np.asarray(im.convert("RGB")), np.asarray(page.image))

    monkeypatch.setattr(tiny_embedder.processor.patchifier, "enabled", False)  # transformers' processor
    plain = tiny_embedder.embed_documents([p.image for p in pages], batch_size=1)
    for page, vec in zip(pages, plain):
        np.testing.assert_allclose(by_page[page.page][0], vec, atol=1e-6, rtol=0)


def test_read_ahead_stores_the_same_pages(tmp_path: Path, monkeypatch) -> None:
    """With read-ahead (the accelerator path) the store ends with the same records as without it."""
    from umr.testing import HashEmbedder

    docs = tmp_path / "docs"
    docs.mkdir()
    for i in range(3):
        make_pdf(docs / f"d{i}.pdf", pages=3, text=f"document {i}")
    results = {}
    for ahead in (False, True):
        monkeypatch.setattr(ChromaStore, "read_ahead", property(lambda self, a=ahead: a))
        with ChromaStore(HashEmbedder(), tmp_path / f"db{ahead}", batch_size=2) as store:
            report = store.add_files(docs)
            assert report.ok and report.pages_added == 9
            got = store.collection.get(include=["embeddings"])
            results[ahead] = dict(zip(got["ids"], (np.asarray(e) for e in got["embeddings"])))
    assert results[True].keys() == results[False].keys()
    for key, vec in results[False].items():
        np.testing.assert_array_equal(results[True][key], vec)


def test_render_workers_encode_png_only_when_asked(tmp_path: Path) -> None:
    from umr.documents import Page, RenderPool

    pdf = tmp_path / "doc.pdf"
    make_pdf(pdf, pages=1, text="x")
    with RenderPool(1) as pool:
        plain = [r for r in pool.render([pdf], max_pixels=BUDGET) if isinstance(r, Page)]
        coded = [r for r in pool.render([pdf], max_pixels=BUDGET, png=True) if isinstance(r, Page)]
    assert plain[0].png is None and coded[0].png is not None
    from io import BytesIO

    with Image.open(BytesIO(coded[0].png)) as im:
        assert im.format == "PNG"
        assert np.array_equal(np.asarray(im.convert("RGB")), np.asarray(coded[0].image))


@pytest.mark.parametrize(
    ("accelerator", "files", "cpus", "expected"),
    [(False, 10, 2, 1), (False, 10, 64, 1), (True, 100, 16, 15), (True, 3, 16, 3), (True, 100, 1, 1),
     (True, 100, 64, 16)],
)
def test_auto_workers(accelerator: bool, files: int, cpus: int, expected: int) -> None:
    from umr.documents import auto_workers

    assert auto_workers(accelerator=accelerator, files=files, cpus=cpus) == expected
