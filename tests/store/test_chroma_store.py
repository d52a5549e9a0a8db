from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.hostile_corpus import build_hostile_corpus, make_pdf, make_png
from tests.store.conftest import BUDGET
from umr.documents import source_key
from umr.documents._worker import TEST_FAULTS_ENV
from umr.store import ChromaStore, IndexReport
from umr.testing import HashEmbedder


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _all(store: ChromaStore) -> dict[str, dict]:
    got = store.collection.get(include=["metadatas"])
    return dict(zip(got["ids"], got["metadatas"]))


def _expected_ids(store: ChromaStore, files: dict[Path, int]) -> set[str]:
    return {store.page_id(_sha(p), n) for p, pages in files.items() for n in range(1, pages + 1)}


def test_add_files_then_rerun_is_idempotent_and_renders_nothing(
    tmp_path: Path, store: ChromaStore, embedder: HashEmbedder
) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    make_pdf(docs / "a.pdf", pages=3, text="alpha", title="Alpha", author="Ann")
    make_pdf(docs / "b.pdf", pages=2, text="beta")
    make_png(docs / "c.png")
    events: list[tuple[int, str]] = []
    report = store.add_files(docs, progress=lambda r, rec: events.append((r.pages_added, type(rec).__name__)))
    assert isinstance(report, IndexReport) and report.ok
    assert (report.pages_added, report.files_indexed, report.files_skipped) == (6, 3, 0)
    assert [e for e in events if e[1] == "FileDone"]  # progress was reported per file
    files = {docs / "a.pdf": 3, docs / "b.pdf": 2, docs / "c.png": 1}
    records = _all(store)
    assert set(records) == _expected_ids(store, files)
    meta = records[store.page_id(_sha(docs / "a.pdf"), 2)]
    assert meta["source"] == str(docs / "a.pdf") and meta["page"] == 2 and meta["page_count"] == 3
    assert meta["title"] == "Alpha" and meta["author"] == "Ann" and meta["kind"] == "pdf"
    assert meta["width"] * meta["height"] <= BUDGET
    assert all(v is not None and not isinstance(v, (list, dict)) for v in meta.values())
    image_path = Path(meta["image_path"])
    assert image_path.is_file() and image_path.parent.parent == (tmp_path / "db" / "images").resolve()
    assert meta["image_uri"] == image_path.as_uri()
    with Image.open(image_path) as im:
        assert im.size == (meta["width"], meta["height"])

    calls = embedder.items
    again = store.add_files(docs)
    assert (again.pages_added, again.pages_skipped, again.files_skipped) == (0, 6, 3)
    assert embedder.items == calls  # nothing embedded again
    assert set(_all(store)) == _expected_ids(store, files)
    # Same content through another spelling of the path: still nothing new.
    assert store.add_files([os.path.relpath(docs / "a.pdf")]).pages_added == 0


def test_changed_file_replaces_old_pages_after_new_are_written(tmp_path: Path, store: ChromaStore) -> None:
    path = tmp_path / "report.pdf"
    make_pdf(path, pages=3, text="version one")
    store.add_files(path)
    old_ids = set(_all(store))
    old_images = [Path(m["image_path"]) for m in _all(store).values()]
    make_pdf(path, pages=2, text="version two")
    report = store.add_files(path)
    assert report.pages_added == 2 and report.pages_replaced == 3
    now = _all(store)
    assert set(now) == _expected_ids(store, {path: 2}) and not (set(now) & old_ids)
    assert not any(p.exists() for p in old_images)
    assert [d.page_count for d in store.documents()] == [2]


def test_hostile_corpus_fails_cleanly_and_loses_nothing(
    tmp_path: Path, store: ChromaStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Test-only fault injection (read by the render workers when they start).
    monkeypatch.setenv(TEST_FAULTS_ENV, json.dumps({"dies-midway.pdf": "exit_after:3"}))
    good = tmp_path / "good"
    good.mkdir()
    make_pdf(good / "keep.pdf", pages=2, text="keep me")
    store.add_files(good)
    before = set(_all(store))
    hostile = tmp_path / "hostile"
    expected = build_hostile_corpus(hostile)
    make_pdf(hostile / "dies-midway.pdf", pages=4)
    expected["dies-midway.pdf"] = "crash"
    report = store.add_files([good, hostile])
    failed = {os.path.basename(e.source): e.kind for e in report.failed}
    bad = {n: k for n, k in expected.items() if k not in ("ok", "corrupt|ok")}
    assert {n: failed[n] for n in bad} == bad
    assert all(e.reason for e in report.failed)
    stored = _all(store)
    assert before <= set(stored)  # nothing stored before is lost
    sources = {os.path.basename(d.source) for d in store.documents()}
    ok_names = {source_key(n) for n, k in expected.items() if k == "ok"}
    assert ok_names <= sources  # every good file is listed, a byte-identical copy too
    assert "caf\\xe9-latin1.pdf" in sources  # non-UTF-8 name stored as an escaped, UTF-8-clean string
    assert {"bad\\xff.pdf", "bad\\\\xff.pdf"} <= sources  # a raw 0xff byte, and a literal backslash
    assert not (set(bad) & sources)  # in particular no partial pages of dies-midway.pdf
    for doc in store.documents():
        assert doc.complete
    report.summary().encode("utf-8")


def test_resume_embeds_only_missing_pages(tmp_path: Path, store: ChromaStore, embedder: HashEmbedder) -> None:
    path = tmp_path / "long.pdf"
    make_pdf(path, pages=6)
    store.add_files(path)
    ids = sorted(_all(store))
    store.collection.delete(ids=ids[:2])  # as if killed before these were written
    before = embedder.items
    report = store.add_files(path)
    assert report.pages_added == 2 and report.pages_skipped == 4
    assert embedder.items - before == 2
    assert sorted(_all(store)) == ids


def test_writes_are_batched_under_the_server_limit(tmp_path: Path, store: ChromaStore) -> None:
    sizes: list[int] = []
    real = store.collection.upsert

    def spy(**kw):
        sizes.append(len(kw["ids"]))
        return real(**kw)

    store.collection.upsert = spy  # type: ignore[method-assign]
    store.max_batch = 3
    make_pdf(tmp_path / "a.pdf", pages=7)
    store.add_files(tmp_path / "a.pdf")
    assert sum(sizes) == 7 and max(sizes) <= 3


def test_search_text_image_and_fused(tmp_path: Path, store: ChromaStore) -> None:
    ids = store.add_texts(["the invoice total is 42 EUR", "a red bicycle"], [{"lang": "en"}, None])
    assert len(ids) == 2 and store.add_texts(["a red bicycle"]) == ids[1:]  # content ids: no duplicate
    img = Image.new("RGB", (120, 80), (10, 200, 10))
    (img_id,) = store.add_images([img], [{"caption": "green", "skip_me": None}])
    make_png(tmp_path / "blue.png", color=(0, 0, 255))
    store.add_images([tmp_path / "blue.png"])
    assert store.count() == 4
    hits = store.search("a red bicycle", k=2)
    assert hits[0].id == ids[1] and hits[0].score == pytest.approx(1.0, abs=1e-5)
    assert hits[0].document == "a red bicycle" and -1.0 <= hits[1].score < 0.9
    hit = store.search(img, k=1)[0]
    assert hit.id == img_id and hit.score == pytest.approx(1.0, abs=1e-5)
    assert hit.metadata["caption"] == "green" and "skip_me" not in hit.metadata
    assert hit.image_uri.startswith("file://") and Path(hit.metadata["image_path"]).is_file()
    fused = store.search({"text": "the invoice total is 42 EUR", "image": img}, k=4)
    assert len(fused) == 4
    only_text = store.search("a red bicycle", k=4, where={"kind": "text"})
    assert {h.metadata["kind"] for h in only_text} == {"text"}


def test_metadata_must_be_scalar(store: ChromaStore) -> None:
    with pytest.raises(TypeError, match="str, int, float and bool"):
        store.add_texts(["x"], [{"tags": ["a", "b"]}])
    with pytest.raises(ValueError, match="reserved"):
        store.add_texts(["x"], [{"sha256": "mine"}])
    with pytest.raises(TypeError):
        store.add_files([], metadata={"nested": {"a": 1}})


def test_delete_document_by_source_and_sha(tmp_path: Path, store: ChromaStore) -> None:
    make_pdf(tmp_path / "a.pdf", pages=3)
    make_pdf(tmp_path / "b.pdf", pages=2, text="b")
    store.add_files(tmp_path)
    images = [Path(m["image_path"]) for m in _all(store).values() if m["source"].endswith("a.pdf")]
    assert store.delete_document(tmp_path / "a.pdf") == 3
    assert not any(p.exists() for p in images)
    assert store.delete_document(_sha(tmp_path / "b.pdf")) == 2
    assert store.delete_document("never-indexed.pdf") == 0
    assert store.count() == 0
    # tmp_path also holds the store itself (db/, db/images/): never indexed.
    report = store.add_files(tmp_path)
    assert report.ok and report.files_indexed == 2


def test_documents_and_stats(tmp_path: Path, store: ChromaStore) -> None:
    make_pdf(tmp_path / "a.pdf", pages=2, title="T")
    make_png(tmp_path / "b.png")
    store.add_files(tmp_path)
    store.add_texts(["loose text"])
    docs = store.documents()
    assert [(Path(d.source).name, d.kind, d.pages, d.page_count, d.complete) for d in docs] == [
        ("a.pdf", "pdf", 2, 2, True),
        ("b.png", "image", 1, 1, True),
    ]
    stats = store.stats()
    assert (
        stats["records"] == 4
        and stats["documents"] == 2
        and stats["by_kind"] == {"pdf": 2, "image": 1, "text": 1}
    )
    assert stats["dim"] == 16 and stats["max_pixels"] == BUDGET


def test_other_model_cannot_reuse_the_collection(tmp_path: Path, store: ChromaStore) -> None:
    store.add_texts(["x"])
    with pytest.raises(ValueError, match="cannot be mixed"):
        ChromaStore(HashEmbedder(dim=8, max_pixels=BUDGET), tmp_path / "db")
    other = ChromaStore(HashEmbedder(dim=8, max_pixels=BUDGET), tmp_path / "db", collection="small")
    assert other.count() == 0


def test_embedder_shape_is_checked(tmp_path: Path) -> None:
    class Broken(HashEmbedder):
        def embed_documents(self, inputs, **kw):  # type: ignore[override]
            return np.zeros((1, 3), dtype=np.float32)

    store = ChromaStore(Broken(dim=16, max_pixels=BUDGET), tmp_path / "db")
    with pytest.raises(ValueError, match="shape"):
        store.add_texts(["a", "b"])


def test_second_writer_on_an_embedded_db_waits_for_the_first(tmp_path: Path, store: ChromaStore) -> None:
    import fcntl
    import threading

    with open(tmp_path / "db" / ".umr-writer.lock", "a+b") as other_writer:
        fcntl.flock(other_writer, fcntl.LOCK_EX)
        done = threading.Event()
        thread = threading.Thread(target=lambda: (store.add_texts(["waiting"]), done.set()))
        thread.start()
        assert not done.wait(0.5)  # blocked behind the other writer
        fcntl.flock(other_writer, fcntl.LOCK_UN)
        assert done.wait(30)
        thread.join()
    assert store.count() == 1
