"""The store's rendering setting (``render="planned"`` / ``"fit"``, collection metadata ``umr_render``).

A new store draws PDF pages at its embedder's planned size when the embedder has a plan, and records
it; a store made before the setting existed (no ``umr_render``) keeps fit rendering and its ids; a
store refuses another rendering than the one it records; the indexed vectors are those of the stored
page images.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.hostile_corpus import make_pdf
from umr.backbones.qwen_vl.geometry import QwenRenderPlan
from umr.documents import RENDER_VERSION, iter_pages
from umr.store import ChromaStore
from umr.store.collection import ChromaCollection, chroma_client, collection_metadata
from umr.store.indexer import settings_key
from umr.testing import HashEmbedder

GME_PLAN = QwenRenderPlan(28, 256 * 28 * 28, 1280 * 28 * 28, (4 * 28 * 28, 16384 * 28 * 28))
BUDGET = 256 * 28 * 28  # HashEmbedder's default: A4 fits 376x532, GME plans 364x532


class PlannedHash(HashEmbedder):
    """A model-free embedder with GME's render plan."""

    render_plan = GME_PLAN


def _stored_sizes(store: ChromaStore) -> dict[int, tuple[int, int]]:
    out = {}
    for meta in store.collection.get(include=["metadatas"])["metadatas"]:
        with Image.open(meta["image_path"]) as im:
            out[int(meta["page"])] = im.size
            assert (meta["width"], meta["height"]) == im.size
    return out


def _old_store(db: Path, embedder: HashEmbedder) -> None:
    """A collection as umr made it before the render setting: no ``umr_render`` in its metadata."""
    client = chroma_client(db)
    ChromaCollection.open(client, "umr", collection_metadata(embedder.model_id, embedder.dim,
                                                             embedder.fingerprint, embedder.max_pixels))


def test_new_store_renders_planned_and_records_it(tmp_path: Path) -> None:
    pdf = tmp_path / "doc.pdf"
    make_pdf(pdf, pages=2, text="planned")
    fit = next(iter_pages(pdf, BUDGET)).image.size
    planned = GME_PLAN.target_size(*fit, BUDGET)
    assert planned is not None and planned != fit
    with ChromaStore(PlannedHash(), tmp_path / "db") as store:
        assert store.render == "planned" and store.render_plan == GME_PLAN
        assert store.collection.metadata["umr_render"] == "planned"
        assert store.add_files(pdf).pages_added == 2
        assert _stored_sizes(store) == {1: planned, 2: planned}
        assert store.stats()["render"] == "planned"
    with ChromaStore(PlannedHash(), tmp_path / "db") as again:  # reopened: follows the record, skips all
        assert again.render == "planned"
        assert again.add_files(pdf).pages_skipped == 2


def test_embedder_without_plan_makes_a_fit_store(tmp_path: Path) -> None:
    pdf = tmp_path / "doc.pdf"
    make_pdf(pdf, pages=1)
    with ChromaStore(HashEmbedder(), tmp_path / "db") as store:
        assert store.render == "fit" and store.render_plan is None
        assert store.collection.metadata["umr_render"] == "fit"
        store.add_files(pdf)
        assert _stored_sizes(store) == {1: next(iter_pages(pdf, BUDGET)).image.size}
    with pytest.raises(ValueError, match="no render plan"):
        ChromaStore(HashEmbedder(), tmp_path / "db2", render="planned")


def test_old_store_keeps_fit_rendering_and_its_ids(tmp_path: Path) -> None:
    pdf = tmp_path / "doc.pdf"
    make_pdf(pdf, pages=2)
    emb = PlannedHash()
    _old_store(tmp_path / "db", emb)
    with ChromaStore(emb, tmp_path / "db") as store:
        assert store.render == "fit" and store.render_plan is None
        assert "umr_render" not in store.collection.metadata  # nothing rewritten
        store.add_files(pdf)
        fit = next(iter_pages(pdf, BUDGET)).image.size
        assert _stored_sizes(store) == {1: fit, 2: fit}
        # ids as before the setting existed
        old_key = hashlib.sha256(f"{emb.fingerprint}|{BUDGET}|{RENDER_VERSION}|0".encode()).hexdigest()[:12]
        assert store.settings_key == old_key
    with pytest.raises(ValueError, match="before planned rendering existed"):
        ChromaStore(emb, tmp_path / "db", render="planned")
    ChromaStore(emb, tmp_path / "db", render="fit").close()  # the recorded one is fine


def test_a_store_refuses_another_rendering_and_unknown_ones(tmp_path: Path) -> None:
    ChromaStore(PlannedHash(), tmp_path / "db").close()
    with pytest.raises(ValueError, match="'planned' rendering"):
        ChromaStore(PlannedHash(), tmp_path / "db", render="fit")
    with pytest.raises(ValueError, match="choose one of: planned, fit"):
        ChromaStore(PlannedHash(), tmp_path / "db", render="sharp")
    with ChromaStore(PlannedHash(), tmp_path / "fit-db", render="fit") as fit:  # asked for explicitly
        assert fit.render == "fit" and fit.collection.metadata["umr_render"] == "fit"


def test_settings_key_names_planned_rendering_only() -> None:
    assert settings_key("f", 100, False) == settings_key("f", 100, False, "fit")
    assert settings_key("f", 100, False, "planned") != settings_key("f", 100, False, "fit")


def test_planned_store_without_the_model_refuses_to_index(tmp_path: Path) -> None:
    """A planned store opened with an embedder that has no plan (e.g. the recorded model only) can be
    searched and managed, but not filled: its pages would come from another rendering."""
    pdf = tmp_path / "doc.pdf"
    make_pdf(pdf, pages=1)
    ChromaStore(PlannedHash(), tmp_path / "db").close()
    with ChromaStore(HashEmbedder(), tmp_path / "db") as store:  # same fingerprint, no plan
        assert store.render == "planned" and store.render_plan is None
        with pytest.raises(ValueError, match="no render plan"):
            store.add_files(pdf)


def test_indexed_vectors_equal_embed_documents_of_the_stored_png(tmp_path: Path, tiny_embedder) -> None:
    """The index pipeline (planned render in a worker, fast patchify, no resize) stores the vector the
    embedder gives the stored page image."""
    budget = 300 * 28 * 28
    pdf = tmp_path / "doc.pdf"
    make_pdf(pdf, pages=2, text="quarterly revenue")
    plan = tiny_embedder.render_plan
    fit = next(iter_pages(pdf, budget)).image.size
    planned = plan.target_size(*fit, budget)
    assert planned is not None and planned != fit
    with ChromaStore(tiny_embedder, tmp_path / "db", max_pixels=budget, batch_size=2) as store:
        assert store.render == "planned"
        assert store.add_files(pdf).pages_added == 2
        got = store.collection.get(include=["embeddings", "metadatas"])
    pngs = []
    for meta in got["metadatas"]:
        with Image.open(meta["image_path"]) as im:
            assert im.size == planned
            geometry = tiny_embedder.processor.geometry(*im.size)
            assert geometry.pre_size == geometry.final_size == planned  # nothing left to resize
            pngs.append(im.convert("RGB"))
    plain = tiny_embedder.embed_documents(pngs, batch_size=1)
    for stored, vec in zip(got["embeddings"], plain):
        np.testing.assert_allclose(np.asarray(stored), vec, atol=1e-6, rtol=0)


def test_cli_render_option(tmp_path: Path, capsys, tiny_model_dir) -> None:
    from umr.cli import main

    pdf = tmp_path / "doc.pdf"
    make_pdf(pdf, pages=1)
    db = str(tmp_path / "db")
    base = ["index", str(pdf), "--db", db, "--model", str(tiny_model_dir), "--no-progress"]
    with pytest.raises(SystemExit) as bad:
        main([*base, "--render", "sharp"])
    assert bad.value.code == 2
    err = capsys.readouterr().err
    assert "--render" in err and "'planned'" in err and "'fit'" in err
    assert main([*base, "--render", "fit"]) == 0
    capsys.readouterr()
    assert main([*base, "--render", "planned"]) != 0
    err = capsys.readouterr().err
    assert "'fit' rendering" in err and "--render" in err
    assert main([*base, "--json"]) == 0  # no --render: follows the store
    assert json.loads(capsys.readouterr().out)["pages_skipped"] == 1
    assert main(["stats", "--db", db, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["render"] == "fit"
