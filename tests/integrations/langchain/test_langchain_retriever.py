"""UMRRetriever: the standard retriever suite over a umr ChromaStore and over langchain_chroma.Chroma."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import chromadb
import pytest
from langchain_chroma import Chroma
from langchain_core.documents import Document
from langchain_tests.integration_tests import RetrieversIntegrationTests

from langchain_umr import UMREmbeddings, UMRRetriever
from umr.store import ChromaStore

from .conftest import TEXTS


@pytest.fixture(scope="module")
def chroma(small_embedder: Any, png_files: list[Path]) -> Chroma:
    """A langchain_chroma.Chroma with UMREmbeddings: 4 texts (add_texts) and 2 images (add_images)."""
    vs = Chroma(
        collection_name="lc-umr-vs",
        embedding_function=UMREmbeddings(embedder=small_embedder),
        client=chromadb.EphemeralClient(),
    )
    vs.add_texts(TEXTS, metadatas=[{"kind": "text", "n": i} for i in range(len(TEXTS))])
    vs.add_images(
        [str(p) for p in png_files[:2]],
        metadatas=[{"kind": "image", "image_uri": p.as_uri()} for p in png_files[:2]],
    )
    return vs


class TestUMRRetrieverOverStore(RetrieversIntegrationTests):
    @pytest.fixture(autouse=True)
    def _store(self, store: ChromaStore) -> None:
        type(self).umr_store = store

    @property
    def retriever_constructor(self) -> type[UMRRetriever]:
        return UMRRetriever

    @property
    def retriever_constructor_params(self) -> dict[str, Any]:
        return {"store": self.umr_store, "k": 2}

    @property
    def retriever_query_example(self) -> str:
        return "what was the revenue growth?"


class TestUMRRetrieverOverChroma(RetrieversIntegrationTests):
    @pytest.fixture(autouse=True)
    def _chroma(self, chroma: Chroma) -> None:
        type(self).vs = chroma

    @property
    def retriever_constructor(self) -> type[UMRRetriever]:
        return UMRRetriever

    @property
    def retriever_constructor_params(self) -> dict[str, Any]:
        return {"vectorstore": self.vs}

    @property
    def retriever_query_example(self) -> str:
        return "a red circle"


# -- store path ---------------------------------------------------------------------------------------
def test_store_documents_carry_page_metadata(store: ChromaStore, pdf_file: Path) -> None:
    docs = UMRRetriever(store=store, k=10, where={"kind": "pdf"}).invoke("installation manual")
    assert len(docs) == 2
    for doc in docs:
        assert doc.metadata["source"] == str(pdf_file.resolve())
        assert doc.metadata["page"] in (1, 2)
        assert doc.metadata["image_uri"].startswith("file://")
        assert Path(doc.metadata["image_path"]).is_file()
        assert -1.0 <= doc.metadata["score"] <= 1.0 + 1e-6
        assert doc.id and doc.id == doc.metadata["id"]
    assert {d.metadata["page"] for d in docs} == {1, 2}
    assert "Installation manual" in {d.page_content.strip() for d in docs}
    scores = [d.metadata["score"] for d in docs]
    assert scores == sorted(scores, reverse=True)


def test_store_exact_text_and_image_queries_rank_first(store: ChromaStore, png_files: list[Path]) -> None:
    retriever = UMRRetriever(store=store, k=3)
    top = retriever.invoke("press the reset button")[0]
    assert top.page_content == "press the reset button" and top.metadata["score"] == pytest.approx(
        1.0, abs=1e-4
    )
    by_image = retriever.invoke("", image=png_files[1])
    assert by_image[0].metadata["colour"] == "blue"
    assert by_image[0].metadata["score"] == pytest.approx(1.0, abs=1e-4)
    fused = retriever.invoke("the same shape in red", image=str(png_files[1]), k=2)
    assert len(fused) == 2 and fused[0].metadata["score"] < 1.0 - 1e-4


def test_store_filters_combine(store: ChromaStore) -> None:
    retriever = UMRRetriever(store=store, k=5, where={"kind": "image"})
    docs = retriever.invoke("a shape", where={"colour": "red"})  # several keys are joined with $and
    assert [d.metadata["colour"] for d in docs] == ["red"]
    assert all(d.metadata["kind"] == "image" for d in retriever.invoke("a shape"))


async def test_store_async_with_kwargs(store: ChromaStore) -> None:
    docs = await UMRRetriever(store=store).ainvoke("quarterly revenue grew", k=1, where={"kind": "text"})
    assert [d.page_content for d in docs] == ["quarterly revenue grew"]


def test_bad_configuration() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        UMRRetriever()
    with pytest.raises(TypeError, match="ChromaStore"):
        UMRRetriever(store="umr_db")
    with pytest.raises(ValueError, match="greater than 0"):
        UMRRetriever(store=object.__new__(ChromaStore), k=0)


def test_bad_k_at_call(store: ChromaStore) -> None:
    with pytest.raises(ValueError, match="k must be a positive int"):
        UMRRetriever(store=store).invoke("x", k=0)


# -- LangChain Chroma path ----------------------------------------------------------------------------
def test_chroma_similarity_search_with_umr_embeddings(chroma: Chroma, png_files: list[Path]) -> None:
    assert chroma.similarity_search("quarterly revenue grew", k=1)[0].page_content == "quarterly revenue grew"
    hit = chroma.similarity_search_by_image(str(png_files[0]), k=1)[0]
    assert hit.metadata["image_uri"] == png_files[0].as_uri()
    assert hit.page_content == Chroma.encode_image(str(png_files[0]))  # add_images stores base64


def test_chroma_retriever_scores_and_image_queries(chroma: Chroma, png_files: list[Path]) -> None:
    retriever = UMRRetriever.from_vectorstore(chroma, k=3)
    docs = retriever.invoke("the lazy dog")
    assert docs[0].page_content == "the lazy dog" and docs[0].metadata["score"] == pytest.approx(
        1.0, abs=1e-4
    )
    assert docs[0].metadata["score"] >= docs[1].metadata["score"] >= docs[2].metadata["score"]
    by_image = retriever.invoke("", image=png_files[1], where={"kind": "image"})
    assert [d.metadata["image_uri"] for d in by_image] == [png_files[1].as_uri(), png_files[0].as_uri()]
    assert by_image[0].metadata["score"] == pytest.approx(1.0, abs=1e-4)
    fused = retriever.invoke("this shape", image=png_files[0], k=1)
    assert isinstance(fused[0], Document) and fused[0].metadata["score"] < 1.0 - 1e-4


def test_chroma_image_queries_need_umr_embeddings(png_files: list[Path]) -> None:
    from langchain_core.embeddings import DeterministicFakeEmbedding

    vs = Chroma(
        collection_name="lc-fake",
        embedding_function=DeterministicFakeEmbedding(size=8),
        client=chromadb.EphemeralClient(),
    )
    vs.add_texts(["x", "y"])
    retriever = UMRRetriever.from_vectorstore(vs, k=1)
    assert len(retriever.invoke("x")) == 1
    with pytest.raises(TypeError, match="UMREmbeddings"):
        retriever.invoke("x", image=png_files[0])
