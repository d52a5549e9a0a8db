"""A multi-vector model behind ChromaStore: first-stage vectors in Chroma, token vectors in the page-vector
store, kept in step through indexing, resume, deletion, a hostile corpus and a kill -9 mid-index."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from tests.hostile_corpus import build_hostile_corpus, make_pdf, make_png
from umr.documents._worker import TEST_FAULTS_ENV
from umr.late.model import LateInteractionModel
from umr.late.testing import build_tiny_colqwen
from umr.store import ChromaStore
from umr.store.info import open_existing

BUDGET = 40_000  # pixels per page: small pages keep the tiny model quick


@pytest.fixture(scope="module")
def checkout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_colqwen(tmp_path_factory.mktemp("colnomic"), "colnomic", seed=2, adapter=False)


@pytest.fixture(scope="module")
def model(checkout: Path) -> LateInteractionModel:
    return LateInteractionModel.from_pretrained(checkout, device="cpu", max_pixels=BUDGET)


def _ids_in_step(store: ChromaStore) -> set[str]:
    chroma = set(store.collection.get(include=[])["ids"])
    store.late.pages.refresh()
    pages = store.late.pages.ids()
    assert len(pages) == len(set(pages))
    assert chroma == set(pages), (chroma ^ set(pages))
    return chroma


def _docs(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    make_pdf(root / "a.pdf", pages=3, text="quarterly revenue")
    make_pdf(root / "b.pdf", pages=2, text="installation manual")
    make_png(root / "c.png", size=(120, 90))
    return root


def test_index_search_delete_rerun(tmp_path: Path, model: LateInteractionModel) -> None:
    docs = _docs(tmp_path / "docs")
    store = ChromaStore(model, tmp_path / "db", max_pixels=BUDGET)
    assert store.dim == 2560 and store.late is not None  # the MUVERA first stage lives in Chroma
    report = store.add_files(docs)
    assert report.pages_added == 6
    ids = _ids_in_step(store)
    assert len(ids) == 6
    query = model.embed_queries(["quarterly revenue"])[0]
    hits = store.search("quarterly revenue", k=6)  # small collection: exhaustive MaxSim
    # the reference: MaxSim over the stored token vectors, per query token
    expected = {i: float((query @ store.late.pages.get(i).T).max(axis=1).sum() / len(query)) for i in ids}
    assert [h.id for h in hits] == sorted(expected, key=lambda i: -expected[i])
    np.testing.assert_allclose([h.score for h in hits], sorted(expected.values(), reverse=True), atol=1e-4)
    assert hits[0].metadata["source"] and hits[0].image_uri.startswith("file://")
    two_stage = store.late.search(query, 3, exhaustive=False, depth=6)
    assert [h[0] for h in two_stage] == [h.id for h in hits[:3]]
    filtered = store.search("quarterly revenue", k=6, where={"kind": "image"})
    assert len(filtered) == 1 and filtered[0].metadata["kind"] == "image"
    assert store.add_files(docs).pages_added == 0  # resume: nothing embedded again
    assert store.delete_document(docs / "b.pdf") == 2
    assert len(_ids_in_step(store)) == 4
    # opened without the model (umr delete / umr stats): deleting removes the token vectors too
    managed = open_existing(collection="umr", path=tmp_path / "db")
    assert managed.multi_vector and managed.delete_document(docs / "c.png") == 1
    assert len(_ids_in_step(store)) == 3
    assert managed.stats()["first_stage"].startswith("fde")
    with pytest.raises(ValueError, match="embed_text_layer"):
        ChromaStore(model, tmp_path / "db2", embed_text_layer=True)


def test_hostile_corpus_keeps_both_sides_in_step(
    tmp_path: Path, model: LateInteractionModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(TEST_FAULTS_ENV, json.dumps({"dies-midway.pdf": "exit_after:2"}))
    hostile = tmp_path / "hostile"
    expected = build_hostile_corpus(hostile)
    (hostile / "giant-page.pdf").unlink()  # a 200000 pt page: rendering it takes long, not different here
    expected.pop("giant-page.pdf")
    make_pdf(hostile / "dies-midway.pdf", pages=4)
    expected["dies-midway.pdf"] = "crash"
    store = ChromaStore(model, tmp_path / "db", max_pixels=BUDGET)
    report = store.add_files(hostile)
    failed = {os.path.basename(e.source): e.kind for e in report.failed}
    bad = {n: k for n, k in expected.items() if k not in ("ok", "corrupt|ok")}
    assert {n: failed[n] for n in bad} == bad
    ids = _ids_in_step(store)
    sources = {os.path.basename(str(m["source"])) for m in store.collection.get(include=["metadatas"])["metadatas"]}
    assert "dies-midway.pdf" not in sources  # its partial pages are gone from both sides
    assert len(ids) == report.pages_added


_INDEXER = textwrap.dedent(
    """
    import sys, time
    from umr.late.model import LateInteractionModel
    from umr.store import ChromaStore

    model = LateInteractionModel.from_pretrained(sys.argv[1], device="cpu", max_pixels=int(sys.argv[4]))
    embed = model.embed_documents

    def slow(inputs, **kw):
        time.sleep(0.05)
        return embed(inputs, **kw)

    model.embed_documents = slow
    store = ChromaStore(model, sys.argv[2], max_pixels=int(sys.argv[4]), batch_size=1)
    print("ready", flush=True)
    store.add_files(sys.argv[3], progress=lambda report, record: print(report.pages_added, flush=True))
    print("done", flush=True)
    """
)


@pytest.mark.slow  # a subprocess loads the model and renders: about a minute on 2 busy cores
@pytest.mark.parametrize("after", [1, 4])
def test_kill_9_mid_index_then_rerun(tmp_path: Path, checkout: Path, model: LateInteractionModel, after: int) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    for i in range(4):
        make_pdf(docs / f"d{i}.pdf", pages=3, text=f"doc {i}")
    script = tmp_path / "indexer.py"
    script.write_text(_INDEXER)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen(
        [sys.executable, str(script), str(checkout), str(tmp_path / "db"), str(docs), str(BUDGET)],
        stdout=subprocess.PIPE, text=True, env=env,
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        line = proc.stdout.readline().strip()
        if line == "done" or (line.isdigit() and int(line) >= after):
            break
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    store = ChromaStore(model, tmp_path / "db", max_pixels=BUDGET)  # opening repairs the pair
    before = _ids_in_step(store)
    report = store.add_files(docs)
    ids = _ids_in_step(store)
    assert len(ids) == 12 and before <= ids
    assert report.pages_added == 12 - len(before)
    assert store.count() == 12


def test_retriever_over_the_store(tmp_path: Path, model: LateInteractionModel) -> None:
    lc = pytest.importorskip("langchain_umr")
    store = ChromaStore(model, tmp_path / "db", max_pixels=BUDGET)
    store.add_files(_docs(tmp_path / "docs"))
    docs = lc.UMRRetriever(store=store, k=2).invoke("quarterly revenue")
    hits = store.search("quarterly revenue", k=2)
    assert [d.metadata.get("id", d.id) for d in docs] == [h.id for h in hits]


def test_hybrid_search_on_a_multi_vector_store(tmp_path: Path, model: LateInteractionModel) -> None:
    # issue 20: the lexical side follows the Chroma collection under the multi-vector wrapper, and MaxSim
    # is the dense side of hybrid search
    pytest.importorskip("tantivy")
    docs = tmp_path / "docs"
    docs.mkdir()
    make_pdf(docs / "inv.pdf", pages=2, text="Invoice INV-2024-0173 total")
    make_pdf(docs / "man.pdf", pages=2, text="Router X200 reset")
    store = ChromaStore(model, tmp_path / "db", max_pixels=BUDGET)
    assert store.add_files(docs).pages_added == 4
    assert store.lexical is not None and store.lexical.lexical.ids() == _ids_in_step(store)
    for mode in ("lexical", "hybrid"):
        hits = store.search("inv-2024-0173", k=2, mode=mode)
        assert Path(hits[0].source).name == "inv.pdf" and hits[0].lexical_score is not None
    assert store.delete_document(docs / "man.pdf") == 2
    assert store.lexical.lexical.ids() == _ids_in_step(store)
    assert "man.pdf" not in {Path(h.source).name for h in store.search("X200", k=4, mode="hybrid")}


def test_multi_vector_store_renders_pages_at_the_models_planned_size(tmp_path: Path, model: LateInteractionModel) -> None:
    from PIL import Image

    from umr.inputs import path_from_uri

    docs = tmp_path / "docs"
    docs.mkdir()
    make_pdf(docs / "a.pdf", pages=1, text="planned size")
    store = ChromaStore(model, tmp_path / "db", max_pixels=BUDGET)
    assert store.render == "planned" and model.render_plan is not None
    store.add_files(docs)
    hit = store.search("planned size", k=1)[0]
    with Image.open(path_from_uri(hit.image_uri)) as img:
        size = img.size
    geometry = model.processor.geometry(*size)
    assert (geometry.pre_size or geometry.final_size) == size  # the model's resizes are no-ops
    stored, fresh = store.late.pages.get(hit.id), model.embed_documents([path_from_uri(hit.image_uri)])[0]
    assert stored.shape == fresh.shape
    np.testing.assert_allclose(stored, fresh, atol=1e-3)  # the stored page image gives the stored vectors (float16)


def test_token_level_first_stage_follows_every_write_and_matches_exhaustive(tmp_path: Path,
                                                                            model: LateInteractionModel) -> None:
    docs = _docs(tmp_path / "docs")
    store = ChromaStore(model, tmp_path / "db", max_pixels=BUDGET)
    store.late.exhaustive_max = 3  # six pages: more than exhaustive search covers, so the index is built
    assert store.add_files(docs).pages_added == 6
    warp = store.late.first_stage_index()
    assert warp is not None and store.late.warp_path.exists() and set(warp.ids()) == _ids_in_step(store)
    query = model.embed_queries(["quarterly revenue"])[0]
    exhaustive = store.late.search(query, 4, exhaustive=True)
    two_stage = store.late.search(query, 4, exhaustive=False, depth=6)  # depth covers all: same ranking
    assert [h[0] for h in two_stage] == [h[0] for h in exhaustive]
    assert "warp" in store.late.stats()["token_first_stage"]

    assert store.delete_document(docs / "b.pdf") == 2  # a write: the index drops the pages
    warp = store.late.first_stage_index()
    assert warp is not None and set(warp.ids()) == _ids_in_step(store) and len(warp) == 4

    store.late.warp_path.write_bytes(b"not an index")  # damaged (or a crash mid-way): never used ...
    assert store.late.first_stage_index() is None
    hits = store.late.search(query, 2, exhaustive=False, depth=6)  # ... the Chroma first stage answers
    assert [h[0] for h in hits] == [h[0] for h in store.late.search(query, 2, exhaustive=True)]
    make_pdf(docs / "d.pdf", pages=1, text="warranty terms")
    assert store.add_files(docs).pages_added == 3  # b.pdf is still in the folder, d.pdf is new
    warp = store.late.first_stage_index()  # the write rebuilt the index
    assert warp is not None and len(warp) == 7 and set(warp.ids()) == _ids_in_step(store)

    store.late.exhaustive_max = 2000  # small again: exhaustive search, no index kept
    store.delete_document(docs / "d.pdf")
    assert not store.late.warp_path.exists() and store.late.first_stage_index() is None
