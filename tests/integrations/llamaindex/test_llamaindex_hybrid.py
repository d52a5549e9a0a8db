"""LlamaIndex UMRRetriever with mode="lexical" / "hybrid" over a ChromaStore with its lexical index."""

from __future__ import annotations

import pytest

pytest.importorskip("tantivy")

from llama_index.retrievers.umr import UMRRetriever

from umr.store import ChromaStore, HashEmbedder

TEXTS = [f"Service manual KM-{4800 + i}B: replace the {('pump', 'valve', 'filter')[i % 3]}" for i in range(30)]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> ChromaStore:
    s = ChromaStore(HashEmbedder(dim=16), tmp_path_factory.mktemp("li-hybrid") / "db", store_images=False)
    s.add_texts(TEXTS, [{"n": i} for i in range(30)])
    return s


@pytest.mark.parametrize(("mode", "fusion"), [("lexical", "rrf"), ("hybrid", "rrf"), ("hybrid", "weighted")])
def test_code_query(store: ChromaStore, mode: str, fusion: str) -> None:
    nodes = UMRRetriever(store, similarity_top_k=3, mode=mode, fusion=fusion).retrieve("km-4812b")
    assert "KM-4812B" in nodes[0].node.get_content() and nodes[0].node.metadata["n"] == 12
    assert nodes[0].score is not None and nodes[0].score > 0


def test_where_applies_in_hybrid_mode(store: ChromaStore) -> None:
    nodes = UMRRetriever(store, similarity_top_k=5, mode="hybrid", depth=8, where={"n": {"$in": [1, 2]}}).retrieve(
        "KM-4812B pump"
    )
    assert nodes and {n.node.metadata["n"] for n in nodes} <= {1, 2}


def test_bad_options(store: ChromaStore) -> None:
    with pytest.raises(ValueError, match="dense, lexical, hybrid"):
        UMRRetriever(store, mode="bm25")
    with pytest.raises(ValueError, match="rrf, weighted"):
        UMRRetriever(store, mode="hybrid", fusion="sum")
    with pytest.raises(ValueError, match="depth"):
        UMRRetriever(store, mode="hybrid", depth=0)
