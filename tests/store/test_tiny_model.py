"""The store with the real ``umr.Embedder`` on a tiny random-weight Qwen2-VL (offline, CPU)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.hostile_corpus import make_pdf, make_png
from umr.store import ChromaStore


@pytest.fixture
def tiny_store(tmp_path: Path, tiny_embedder) -> ChromaStore:
    with ChromaStore(tiny_embedder, tmp_path / "db", max_pixels=64 * 28 * 28, batch_size=4) as store:
        yield store


def test_index_and_search_with_the_tiny_model(tmp_path: Path, tiny_store: ChromaStore, tiny_embedder) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    make_pdf(docs / "report.pdf", pages=2, text="quarterly revenue")
    make_png(docs / "chart.png", size=(300, 200))
    report = tiny_store.add_files(docs)
    assert report.ok and report.pages_added == 3
    assert tiny_store.collection.metadata["umr_model_id"] == tiny_embedder.model_id
    assert tiny_store.collection.metadata["umr_fingerprint"] == tiny_embedder.fingerprint

    hits = tiny_store.search("quarterly revenue", k=3)
    assert len(hits) == 3 and all(np.isfinite(h.score) and -1.0001 <= h.score <= 1.0001 for h in hits)
    assert {h.metadata["kind"] for h in hits} == {"pdf", "image"}

    # A stored page image used as the query finds itself (same pixels, same prompt: cosine 1).
    meta = next(h.metadata for h in hits if h.metadata["kind"] == "pdf")
    with Image.open(meta["image_path"]) as im:
        image = im.convert("RGB")
    own = {h.id: h.score for h in tiny_store.search(image, k=3)}
    page_id = tiny_store.page_id(meta["sha256"], meta["page"])
    assert own[page_id] == pytest.approx(1.0, abs=1e-3)

    again = tiny_store.add_files(docs)
    assert (again.pages_added, again.files_skipped) == (0, 2)
    fused = tiny_store.search({"text": "revenue chart", "image": image}, k=2)
    assert len(fused) == 2
