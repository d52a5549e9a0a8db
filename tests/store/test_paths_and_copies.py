"""Byte-identical files at several paths, names that are not UTF-8, reserved metadata keys.

Identical files share one page set (ids are content-derived); every path is recorded on it, each path
is findable (search hits, ``documents()``, ``stats()``) and deletable on its own.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pytest

from tests.hostile_corpus import make_pdf, make_png
from umr.documents import source_key
from umr.store import ChromaStore
from umr.store.sources import source_paths
from umr.testing import HashEmbedder


def _sha(path: str | bytes | Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()


def _metas(store: ChromaStore) -> dict[str, dict]:
    got = store.collection.get(include=["metadatas"])
    return dict(zip(got["ids"], got["metadatas"]))


def _docs(store: ChromaStore) -> dict[str, tuple[str, int, int]]:
    return {d.source: (d.sha256, d.pages, d.page_count) for d in store.documents()}


def _copies(tmp_path: Path) -> tuple[Path, Path, Path, Path]:
    docs = tmp_path / "docs"
    docs.mkdir()
    a, b, c = docs / "a.pdf", docs / "b-copy.pdf", docs / "c.pdf"
    make_pdf(a, pages=3, text="shared")
    shutil.copyfile(a, b)
    make_pdf(c, pages=2, text="other")
    return docs, a, b, c


@pytest.mark.parametrize("batch_size", [16, 1])
def test_identical_files_share_one_page_set_and_list_both_paths(
    tmp_path: Path, embedder: HashEmbedder, batch_size: int
) -> None:
    docs, a, b, c = _copies(tmp_path)
    with ChromaStore(embedder, tmp_path / "db", batch_size=batch_size) as store:
        report = store.add_files(docs)
        assert report.ok, report.summary()
        # the copy is rendered with the original (one batch) or found stored already (batch of 1)
        assert report.files_done == 3 and report.pages_added == 5
        metas = _metas(store)
        assert len(metas) == 5  # the copy's pages are stored once
        shared = [m for m in metas.values() if m["sha256"] == _sha(a)]
        assert len(shared) == 3
        assert all(source_paths(m) == [str(a), str(b)] for m in shared)
        assert _docs(store) == {str(a): (_sha(a), 3, 3), str(b): (_sha(a), 3, 3), str(c): (_sha(c), 2, 2)}
        assert store.stats()["documents"] == 3
        hits = store.search("shared 1", k=5, where={"sha256": _sha(a)})
        assert hits and all(h.sources == [str(a), str(b)] for h in hits)

        embedded = embedder.items
        again = store.add_files(docs)  # idempotent: nothing embedded, nothing removed
        assert again.ok and again.files_skipped == 3 and again.pages_added == 0 and again.pages_replaced == 0
        assert embedder.items == embedded
        assert _metas(store) == metas


def test_copy_found_later_is_recorded_on_the_stored_pages(tmp_path: Path, store: ChromaStore) -> None:
    docs, a, b, c = _copies(tmp_path)
    store.add_files(a)
    report = store.add_files(docs)
    assert report.ok and report.pages_added == 2 and report.files_skipped == 2  # a, and its copy b
    assert set(_docs(store)) == {str(a), str(b), str(c)}


def test_deleting_one_path_keeps_the_pages_the_other_lists(tmp_path: Path, store: ChromaStore) -> None:
    docs, a, b, c = _copies(tmp_path)
    store.add_files(docs)
    images = {m["image_path"] for m in _metas(store).values() if m["sha256"] == _sha(a)}

    removal = store.remove_document(a)  # a is the first path (``source``): b takes its place
    assert (removal.deleted, removal.kept) == (0, 3)
    shared = [m for m in _metas(store).values() if m["sha256"] == _sha(a)]
    assert len(shared) == 3 and all(source_paths(m) == [str(b)] for m in shared)
    assert all(m["source"] == str(b) and m["filename"] == "b-copy.pdf" for m in shared)
    assert all(Path(p).is_file() for p in images)
    assert set(_docs(store)) == {str(b), str(c)}
    assert store.delete_document(a) == 0  # gone already

    # Re-indexing the folder records a again, and b's deletion then keeps them for a.
    assert store.add_files(docs).pages_added == 0
    assert set(_docs(store)) == {str(a), str(b), str(c)}
    assert store.remove_document(b).kept == 3
    assert store.delete_document(a) == 3
    assert [m["sha256"] for m in _metas(store).values()] == [_sha(c)] * 2
    assert not any(Path(p).exists() for p in images)


def test_changed_copy_leaves_the_other_path_intact(tmp_path: Path, store: ChromaStore) -> None:
    docs, a, b, c = _copies(tmp_path)
    store.add_files(docs)
    old = _sha(a)
    make_pdf(a, pages=1, text="a new version")
    report = store.add_files(docs)
    assert report.ok and report.pages_added == 1 and report.pages_replaced == 3
    assert _docs(store) == {str(a): (_sha(a), 1, 1), str(b): (old, 3, 3), str(c): (_sha(c), 2, 2)}
    assert all(source_paths(m) == [str(b)] for m in _metas(store).values() if m["sha256"] == old)
    # b changes too: the old version is listed nowhere and goes.
    make_pdf(b, pages=2, text="b new version")
    store.add_files(docs)
    assert old not in {m["sha256"] for m in _metas(store).values()}
    assert set(_docs(store)) == {str(a), str(b), str(c)}


def test_resume_with_copies_completes_the_shared_set(tmp_path: Path, store: ChromaStore) -> None:
    docs, a, b, _c = _copies(tmp_path)
    store.add_files(docs)
    full = _metas(store)
    # A killed run: one page of the shared set and the copy's record on another are gone.
    victim = store.page_id(_sha(a), 2)
    store.collection.delete(ids=[victim])
    report = store.add_files(docs)
    assert report.ok and report.pages_added == 1
    assert set(_metas(store)) == set(full)
    assert _docs(store)[str(b)] == (_sha(a), 3, 3)


def test_failed_copy_does_not_delete_the_pages_of_the_good_one(tmp_path: Path, store: ChromaStore) -> None:
    from umr.documents import FileError

    docs, a, b, c = _copies(tmp_path)
    store.add_files(docs)
    # b failing (say, a timeout) takes only b off the shared pages
    store.indexer.drop_partial(FileError(str(b), "timed out", "timeout", _sha(b)))
    assert set(_docs(store)) == {str(a), str(c)} and len(_metas(store)) == 5


# ------------------------------------------------------------------------------------------- names
def test_raw_byte_name_and_its_escaped_spelling_are_two_documents(tmp_path: Path, store: ChromaStore) -> None:
    root = os.fsencode(tmp_path / "docs")
    os.mkdir(root)
    raw = root + b"/bad\xff.pdf"  # a real 0xff byte
    literal = root + b"/bad\\xff.pdf"  # the four characters \ x f f
    make_pdf(raw, pages=2, text="raw byte")
    make_pdf(literal, pages=1, text="literal backslash")
    for _ in range(2):  # the second run's stale-version removal must not delete the other file
        report = store.add_files(root)
        assert report.ok, report.summary()
        docs = _docs(store)
        assert len(docs) == 2 and len(_metas(store)) == 3
    assert docs[source_key(raw)] == (_sha(raw), 2, 2)
    assert docs[source_key(literal)] == (_sha(literal), 1, 1)
    assert {d.path for d in store.documents()} == {os.fsdecode(raw), os.fsdecode(literal)}
    assert store.delete_document(raw) == 2  # bytes, as the shell passes them
    assert set(_docs(store)) == {source_key(literal)}
    assert store.delete_document(os.fsdecode(literal)) == 1
    assert store.count() == 0


def test_delete_takes_a_path_relative_to_the_working_directory(
    tmp_path: Path, store: ChromaStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    docs, _a, _b, _c = _copies(tmp_path)
    store.add_files(docs)  # stored as absolute paths
    monkeypatch.chdir(docs)
    assert store.remove_document("c.pdf").deleted == 2
    assert store.remove_document(Path("b-copy.pdf")).kept == 3
    for d in store.documents():  # documents() paths round-trip into delete_document
        assert store.delete_document(d.path) == d.pages
    assert store.count() == 0


# --------------------------------------------------------------------------------- reserved keys
@pytest.mark.parametrize("key", ["source", "image_path", "image_uri", "page", "sha256", "source@0123456789abcdef"])
def test_add_files_refuses_reserved_metadata_keys(tmp_path: Path, store: ChromaStore, key: str) -> None:
    make_png(tmp_path / "a.png")
    with pytest.raises(ValueError, match=r"add_files: metadata keys \[.*" + key.replace("@", "@") + ".*reserved"):
        store.add_files(tmp_path / "a.png", metadata={key: "x", "team": "ok"})
    assert store.count() == 0
    store.add_files(tmp_path / "a.png", metadata={"team": "ok"})
    assert [m["team"] for m in _metas(store).values()] == ["ok"]


def test_add_texts_and_images_refuse_keys_they_write(tmp_path: Path, store: ChromaStore) -> None:
    make_png(tmp_path / "a.png")
    with pytest.raises(ValueError, match="add_texts: metadata keys \\['indexed_at'\\]"):
        store.add_texts(["x"], metadatas=[{"indexed_at": 1.0}])
    with pytest.raises(ValueError, match="add_images: metadata keys \\['width'\\]"):
        store.add_images([tmp_path / "a.png"], metadatas=[{"width": 3}])
    store.add_texts(["x"], metadatas=[{"source": "notes.txt"}])  # a text's source is the caller's
    assert [m["source"] for m in _metas(store).values()] == ["notes.txt"]


def test_copy_found_in_the_run_where_the_original_changes_keeps_the_old_pages(
    tmp_path: Path, store: ChromaStore
) -> None:
    a = tmp_path / "a.pdf"
    make_pdf(a, pages=2, text="first version")
    store.add_files(a)
    old = _sha(a)
    backup = tmp_path / "z-backup"
    backup.mkdir()
    shutil.copyfile(a, backup / "a.pdf")  # the old version, found again under another path
    make_pdf(a, pages=1, text="second version")
    report = store.add_files([a, backup])  # a's stale removal comes after the copy is recorded
    assert report.ok and report.pages_replaced == 2
    assert _docs(store) == {str(a): (_sha(a), 1, 1), str(backup / "a.pdf"): (old, 2, 2)}
    assert all(Path(m["image_path"]).is_file() for m in _metas(store).values())
