"""LangChain UMRRetriever with mode="lexical" / "hybrid" over a ChromaStore with its lexical index."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("tantivy")

from pydantic import ValidationError

from langchain_umr import UMRRetriever
from umr.store import ChromaStore, HashEmbedder

TEXTS = [f"Invoice INV-2024-{i:04d}: {('pumps', 'valves', 'filters')[i % 3]} for site {i}" for i in range(40)]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> ChromaStore:
    s = ChromaStore(HashEmbedder(dim=16), tmp_path_factory.mktemp("lc-hybrid") / "db", store_images=False)
    s.add_texts(TEXTS, [{"site": i} for i in range(40)])
    return s


@pytest.mark.parametrize("mode", ["lexical", "hybrid"])
def test_code_query_finds_its_passage_first(store: ChromaStore, mode: str) -> None:
    docs = UMRRetriever(store=store, mode=mode, k=3).invoke("inv-2024-0017")
    assert "INV-2024-0017" in docs[0].page_content and docs[0].metadata["site"] == 17
    assert docs[0].metadata["score"] > 0
    if mode == "hybrid":
        assert docs[0].metadata["lexical_score"] > 0


def test_filters_and_fusion_options_reach_the_store(store: ChromaStore) -> None:
    retriever = UMRRetriever(store=store, mode="hybrid", fusion="weighted", depth=5, where={"site": {"$in": [3, 4]}})
    docs = retriever.invoke("INV-2024-0017 pumps")
    assert docs and {d.metadata["site"] for d in docs} <= {3, 4}
    dense = UMRRetriever(store=store, k=2).invoke("INV-2024-0017")
    assert "lexical_score" not in dense[0].metadata  # dense mode: the cosine score only


def test_mode_validation(store: ChromaStore, tmp_path: Path) -> None:
    with pytest.raises(ValidationError):
        UMRRetriever(store=store, mode="sparse")
    with pytest.raises(ValidationError):
        UMRRetriever(store=store, mode="hybrid", fusion="max")
    with pytest.raises(ValidationError):
        UMRRetriever(store=store, mode="hybrid", depth=0)
    from langchain_core.vectorstores import InMemoryVectorStore

    from langchain_umr import UMREmbeddings

    class _Fake(UMREmbeddings):  # never called: the configuration is refused first
        pass

    with pytest.raises(ValidationError, match="store="):
        UMRRetriever(vectorstore=InMemoryVectorStore(embedding=_Fake.model_construct()), mode="lexical")
