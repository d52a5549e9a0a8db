"""LexicalMirror: the lexical side follows Chroma writes, is repaired after a kill, and is rebuilt from Chroma."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

pytest.importorskip("tantivy")
chromadb = pytest.importorskip("chromadb")

from umr.store.collection import ChromaCollection  # noqa: E402
from umr.store.lexical import (  # noqa: E402
    LexicalConfig,
    LexicalIndex,
    LexicalMirror,
    LexicalRecord,
    chroma_ids,
)


def _collection(root: Path) -> ChromaCollection:
    client = chromadb.PersistentClient(path=str(root / "db"))
    return ChromaCollection(client.get_or_create_collection("mir", embedding_function=None), max_batch=2)


def _add(col: ChromaCollection, ids: list[str], texts: list[str]) -> None:
    col.raw.upsert(ids=ids, embeddings=[[1.0, float(i)] for i in range(len(ids))], documents=texts,
               metadatas=[{"source": f"/{i}.pdf"} for i in ids])


def test_mirror_follows_writes_and_repairs_a_lagging_side(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    col = _collection(tmp_path)
    mirror = LexicalMirror(col, LexicalIndex(tmp_path / "lex"))
    _add(col, ["a", "b"], ["alpha pumps", "beta valves"])
    mirror.upserted(["a", "b"], ["alpha pumps", "beta valves"], [{"source": "/a.pdf"}, {"source": "/b.pdf"}])
    assert mirror.lexical.ids() == {"a", "b"} == chroma_ids(col)
    col.raw.delete(ids=["a"])
    mirror.deleted(["a"])
    assert mirror.lexical.ids() == {"b"}

    # a run killed after its Chroma writes: the lexical side lags; the next store object's first session repairs
    _add(col, ["c", "d", "e"], ["gamma", "delta INV-7", "epsilon"])
    col.raw.delete(ids=["b"])
    later = LexicalMirror(col, LexicalIndex(tmp_path / "lex"))
    # a library's logging.config call earlier in the run (disable_existing_loggers) must not hide this
    mirror_logger = logging.getLogger("umr.store.lexical.mirror")
    monkeypatch.setattr(mirror_logger, "disabled", False)
    with caplog.at_level(logging.INFO, logger="umr.store.lexical.mirror"), later.session():
        pass
    assert later.lexical.ids() == {"c", "d", "e"} == chroma_ids(col)
    assert "comparing ids" in caplog.text
    assert [h.id for h in later.lexical.search("inv-7", 3)] == ["d"]  # text read back from Chroma


def test_an_interrupted_session_forces_a_full_comparison(tmp_path: Path) -> None:
    col = _collection(tmp_path)
    lex = LexicalIndex(tmp_path / "lex")
    mirror = LexicalMirror(col, lex)
    _add(col, ["a", "b"], ["alpha", "beta"])
    mirror.upserted(["a", "b"], ["alpha", "beta"], [{}, {}])
    # same counts, different ids: only the PENDING marker of the interrupted run tells
    with pytest.raises(RuntimeError), lex.writer() as w:
        w.delete(["b"])
        w.upsert([LexicalRecord("zz", "stale")])
        raise RuntimeError("killed")
    assert lex.ids() == {"a", "zz"} and lex.needs_repair
    fresh = LexicalMirror(col, LexicalIndex(tmp_path / "lex"))
    fresh._checked = True  # even a store object that checked the counts already
    with fresh.session():
        pass
    assert fresh.lexical.ids() == {"a", "b"} and not fresh.lexical.needs_repair


def test_rebuild_from_chroma_with_new_settings(tmp_path: Path) -> None:
    col = _collection(tmp_path)
    _add(col, ["a", "b"], ["the pumps were running", "a valve"])
    mirror = LexicalMirror(col, LexicalIndex(tmp_path / "lex"))
    assert mirror.rebuild(LexicalConfig(language="english")) == 2
    assert mirror.lexical.config.language == "english"
    assert [h.id for h in mirror.lexical.search("pump runs", 3)] == ["a"]
    assert LexicalIndex(tmp_path / "lex").config.language == "english"


def test_search_check_warns_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    col = _collection(tmp_path)
    _add(col, ["a"], ["alpha"])
    mirror = LexicalMirror(col, LexicalIndex(tmp_path / "lex"))
    with caplog.at_level(logging.WARNING):
        mirror.check_for_search()
        mirror.check_for_search()
    assert caplog.text.count("out of step") == 1 and "--rebuild-lexical" in caplog.text
