"""ChromaStore keeps its lexical index in step: add, re-add of a changed file, delete, texts, rebuild;
search(mode="lexical" | "hybrid") finds codes printed on one page."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest

pytest.importorskip("tantivy")

from tests.hostile_corpus import make_pdf
from umr.store import ChromaStore, HashEmbedder
from umr.store.lexical import LexicalIndex, chroma_ids

BUDGET = 60_000


def _lexical_ids(store: ChromaStore) -> set[str]:
    assert store.lexical is not None
    return store.lexical.lexical.ids()


def _sources(hits: list) -> list[str]:
    return [Path(h.source).name for h in hits]


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    folder = tmp_path / "docs"
    folder.mkdir()
    for i in range(6):
        make_pdf(folder / f"inv{i}.pdf", pages=2, text=f"Invoice INV-2024-{i:04d} part X{200 + i} page")
    return folder


def test_pages_are_found_by_code_in_lexical_and_hybrid_modes(tmp_path: Path, docs: Path) -> None:
    with ChromaStore(HashEmbedder(dim=16, max_pixels=BUDGET), tmp_path / "db", batch_size=3) as store:
        report = store.add_files(docs)
        assert report.ok and report.pages_added == 12
        assert _lexical_ids(store) == chroma_ids(store.chroma)
        for mode in ("lexical", "hybrid"):
            for fusion in ("rrf", "weighted"):
                hits = store.search("inv-2024-0003", k=3, mode=mode, fusion=fusion)
                assert _sources(hits)[0] == "inv3.pdf", (mode, fusion)
        hits = store.search("X204", k=2, mode="lexical", where={"page": 2})
        assert [(Path(h.source).name, h.page) for h in hits] == [("inv4.pdf", 2)]
        assert hits[0].image_uri.startswith("file://")  # Chroma's metadata, read back
        stats = store.stats()["lexical"]
        assert stats["records"] == 12 and stats["needs_repair"] is False


def test_delete_and_changed_file_keep_both_sides_in_step(tmp_path: Path, docs: Path) -> None:
    with ChromaStore(HashEmbedder(dim=16, max_pixels=BUDGET), tmp_path / "db", batch_size=4) as store:
        store.add_files(docs)
        assert store.delete_document(docs / "inv2.pdf") == 2
        assert _lexical_ids(store) == chroma_ids(store.chroma)
        for mode in ("lexical", "hybrid"):
            assert "inv2.pdf" not in _sources(store.search("INV-2024-0002", k=12, mode=mode))
        # re-add a changed file: only its new text is found
        make_pdf(docs / "inv1.pdf", pages=1, text="Credit note CN-7781 replaces the invoice")
        report = store.add_files(docs)
        assert report.pages_replaced == 2
        assert _lexical_ids(store) == chroma_ids(store.chroma)
        assert _sources(store.search("CN-7781", k=1, mode="lexical")) == ["inv1.pdf"]
        assert "inv1.pdf" not in _sources(store.search("INV-2024-0001", k=12, mode="lexical"))
        ids = store.add_texts(["Error code E-4521: the pump is blocked"], [{"topic": "faults"}])
        assert [h.id for h in store.search("e-4521", k=1, mode="hybrid")] == ids
        assert _lexical_ids(store) == chroma_ids(store.chroma)


def test_existing_index_gains_the_lexical_side_without_re_embedding(tmp_path: Path, docs: Path,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    embedder = HashEmbedder(dim=16, max_pixels=BUDGET)
    with ChromaStore(embedder, tmp_path / "db", lexical=False) as old:
        old.add_files(docs)
        with pytest.raises(ValueError, match="rebuild-lexical"):
            old.search("INV-2024-0001", mode="hybrid")
    shutil.rmtree(tmp_path / "db" / "lexical", ignore_errors=True)
    items = embedder.items
    with ChromaStore(embedder, tmp_path / "db") as store:
        with caplog.at_level(logging.WARNING):
            assert store.search("INV-2024-0001", k=3, mode="lexical") == []
        assert "out of step" in caplog.text and "--rebuild-lexical" in caplog.text
        assert store.rebuild_lexical(language="english") == 12
        assert _sources(store.search("INV-2024-0001", k=1, mode="lexical")) == ["inv1.pdf"]
        assert embedder.items == items  # nothing embedded again
    assert LexicalIndex(tmp_path / "db" / "lexical" / "umr").config.language == "english"


def test_a_lagging_lexical_side_is_repaired_by_the_next_write(tmp_path: Path, docs: Path) -> None:
    embedder = HashEmbedder(dim=16, max_pixels=BUDGET)
    with ChromaStore(embedder, tmp_path / "db") as store:
        store.add_files(docs)
        assert store.lexical is not None
        # as if killed between the Chroma write and the lexical one
        store.lexical.lexical.delete(sorted(_lexical_ids(store))[:5])
    with ChromaStore(embedder, tmp_path / "db") as store:
        store.add_texts(["a new passage"])
        assert _lexical_ids(store) == chroma_ids(store.chroma) and len(_lexical_ids(store)) == 13


def test_lexical_off_and_server_without_folder(tmp_path: Path) -> None:
    store = ChromaStore(HashEmbedder(dim=16), tmp_path / "db", lexical=False)
    assert store.lexical is None and store.stats()["lexical"] is None
    with pytest.raises(ValueError, match="dense, lexical, hybrid"):
        store.search("x", mode="bm25")
    import chromadb

    client = chromadb.EphemeralClient()
    assert ChromaStore(HashEmbedder(dim=16), client=client, collection="eph").lexical is None
    with pytest.raises(ValueError, match="lexical_dir"):
        ChromaStore(HashEmbedder(dim=16), client=client, collection="eph", lexical=True)
    with_dir = ChromaStore(HashEmbedder(dim=16), client=client, collection="eph2", lexical_dir=tmp_path / "lex")
    with_dir.add_texts(["Order ORD-991 shipped"])
    assert _sources(with_dir.search("ORD-991", k=1, mode="lexical")) == [""]
    assert with_dir.search("ORD-991", k=1, mode="lexical")[0].document == "Order ORD-991 shipped"


def test_a_damaged_lexical_index_never_blocks_dense_use_and_is_rebuilt(tmp_path: Path,
                                                                        caplog: pytest.LogCaptureFixture) -> None:
    embedder = HashEmbedder(dim=16)
    with ChromaStore(embedder, tmp_path / "db") as store:
        ids = store.add_texts(["Order ORD-991 shipped", "Order ORD-992 pending"])
    config = tmp_path / "db" / "lexical" / "umr" / "config.json"
    config.write_text("{ not json")
    with caplog.at_level(logging.WARNING):
        store = ChromaStore(embedder, tmp_path / "db")
    assert store.lexical is None and "rebuild-lexical" in caplog.text
    assert store.search("Order ORD-991 shipped", k=1)[0].id == ids[0]  # dense works
    with pytest.raises(ValueError, match="rebuild-lexical"):
        store.search("ORD-991", mode="lexical")
    assert store.rebuild_lexical() == 2
    assert [h.id for h in store.search("ORD-992", k=1, mode="lexical")] == [ids[1]]
    with pytest.raises(Exception, match="rebuild"):
        config.write_text("{ not json")
        ChromaStore(embedder, tmp_path / "db", lexical=True)  # asked for explicitly: the error itself
