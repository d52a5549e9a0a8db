"""UMRRetriever over a real umr.store.ChromaStore: page hits become ImageNodes, text hits TextNodes."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from llama_index.core.schema import ImageNode, QueryBundle, TextNode
from llama_index.retrievers.umr import UMRRetriever

from umr.inputs import MultimodalInput

TEXTS = ["Operating costs fell in the second quarter.", "Connect the power cable and wait for the green light."]


def _pdf(path: Path) -> Path:
    import pymupdf

    doc = pymupdf.open()
    for text in ("Invoice total: 420 euros", "Terms and conditions apply"):
        page = doc.new_page(width=200, height=260)
        page.insert_text((20, 60), text, fontsize=11)
    doc.save(path)
    doc.close()
    return path


@pytest.fixture(scope="module")
def store(tmp_path_factory, li_embedder, page_images):
    from umr.store import ChromaStore

    root = tmp_path_factory.mktemp("umr-store")
    store = ChromaStore(li_embedder, root / "db", collection="llamaindex_test")
    report = store.add_files([_pdf(root / "invoice.pdf")])
    assert report.ok, report.summary()
    store.add_images([page_images[0], page_images[1]], metadatas=[{"topic": "revenue"}, {"topic": "manual"}])
    store.add_texts(TEXTS, metadatas=[{"topic": "costs"}, {"topic": "manual"}])
    assert store.count() == 6
    return store


def test_retrieve_translates_hits(store) -> None:
    retriever = UMRRetriever(store, similarity_top_k=6)
    results = retriever.retrieve("invoice total amount")
    hits = store.search(MultimodalInput(text="invoice total amount"), k=6)
    assert [r.node.node_id for r in results] == [h.id for h in hits]
    assert [r.score for r in results] == pytest.approx([h.score for h in hits])
    kinds = {}
    for r, h in zip(results, hits):
        kind = h.metadata["kind"]
        kinds[kind] = kinds.get(kind, 0) + 1
        if kind == "text":
            assert type(r.node) is TextNode
            assert r.node.get_content() in TEXTS
        else:
            assert isinstance(r.node, ImageNode)
            assert Path(r.node.image_path).is_file()  # the page image the store saved
            assert r.node.image_path == h.metadata["image_path"]
            assert r.node.metadata["source"] == h.metadata["source"]
            assert r.node.metadata["page"] == h.metadata["page"]
            assert r.node.ref_doc_id == h.metadata["sha256"]
        # chroma-safe, LLM-friendly metadata: scalars only, no store bookkeeping
        assert all(isinstance(v, (str, int, float, bool)) for v in r.node.metadata.values())
        assert "image_uri" not in r.node.metadata and "settings" not in r.node.metadata
    assert kinds == {"pdf": 2, "image": 2, "text": 2}
    pdf_pages = [r.node for r in results if r.node.metadata.get("kind") == "pdf"]
    assert sorted(n.metadata["page"] for n in pdf_pages) == [1, 2]
    by_page = {n.metadata["page"]: n for n in pdf_pages}
    assert "Invoice total" in by_page[1].text  # the page text layer travels with the image
    assert "sha256" not in by_page[1].get_content(metadata_mode="llm")
    assert "source" in by_page[1].get_content(metadata_mode="llm")


def test_top_k_and_where_filter(store) -> None:
    only_text = UMRRetriever(store, similarity_top_k=5, where={"kind": "text"}).retrieve("power cable")
    assert len(only_text) == 2 and all(type(r.node) is TextNode for r in only_text)
    two = UMRRetriever(store, similarity_top_k=2).retrieve("power cable")
    assert len(two) == 2
    assert two[0].score >= two[1].score


def test_image_path_query_is_fused(store, page_images) -> None:
    retriever = UMRRetriever(store, similarity_top_k=3)
    bundle = QueryBundle(query_str="pages like this", image_path=str(page_images[0]))
    expected = store.search({"text": "pages like this", "image": str(page_images[0])}, k=3)
    results = retriever.retrieve(bundle)
    assert [r.node.node_id for r in results] == [h.id for h in expected]
    assert [r.score for r in results] == pytest.approx([h.score for h in expected])
    # an image-only bundle searches with the image alone
    image_only = retriever.retrieve(QueryBundle(query_str="", image_path=str(page_images[1])))
    alone = store.search({"image": str(page_images[1])}, k=3)
    assert [r.node.node_id for r in image_only] == [h.id for h in alone]


def test_custom_embedding_strs_are_merged_by_best_score(store) -> None:
    retriever = UMRRetriever(store, similarity_top_k=3)
    strs = ["invoice total", "reset button manual"]
    results = retriever.retrieve(QueryBundle(query_str="ignored for embedding", custom_embedding_strs=strs))
    best: dict[str, float] = {}
    for s in strs:
        for h in store.search(MultimodalInput(text=s), k=3):
            best[h.id] = max(best.get(h.id, -2.0), h.score)
    expected = sorted(best.items(), key=lambda kv: kv[1], reverse=True)[:3]
    assert [(r.node.node_id, round(r.score, 5)) for r in results] == [(i, round(s, 5)) for i, s in expected]


def test_async_and_errors(store) -> None:
    retriever = UMRRetriever(store, similarity_top_k=4)
    sync = retriever.retrieve("terms and conditions")
    got = asyncio.run(retriever.aretrieve("terms and conditions"))
    assert [r.node.node_id for r in got] == [r.node.node_id for r in sync]
    with pytest.raises(ValueError, match="empty query"):
        retriever.retrieve(QueryBundle(query_str="  "))
    with pytest.raises(ValueError, match="similarity_top_k"):
        UMRRetriever(store, similarity_top_k=0)
    with pytest.raises(TypeError, match="ChromaStore"):
        UMRRetriever(object())
