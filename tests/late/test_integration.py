"""A multi-vector checkout through the public entry points: umr.Embedder / umr.Reranker dispatch, the
MultiVectors result type, and the single-vector adapters refusing it with a pointer to the retriever."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import umr
from umr.late.model import LateInteractionModel
from umr.late.result import MultiVectors
from umr.testing import build_tiny_colqwen

pytest.importorskip("peft")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_colqwen(tmp_path_factory.mktemp("cq"), "colqwen2.5", seed=1)


@pytest.fixture(scope="module")
def model(tiny: Path) -> LateInteractionModel:
    emb = umr.Embedder.from_pretrained(tiny, device="cpu")
    assert isinstance(emb, LateInteractionModel)
    return emb


def test_embedder_returns_multi_vectors(model: LateInteractionModel) -> None:
    assert model.multi_vector and model.dim == 128 and not umr.Embedder.multi_vector
    out = model.embed_queries(["total amount"])
    assert isinstance(out, MultiVectors) and len(out) == 1 and out[0].shape[1] == 128
    np.testing.assert_allclose(np.linalg.norm(out[0], axis=1), 1.0, atol=1e-5)
    with pytest.raises(TypeError, match="not one matrix"):
        np.asarray(out)
    with pytest.raises(TypeError, match="multi-vector model"):
        model.prepare_inputs(["x"])
    with pytest.raises(ValueError, match="drop dim="):
        umr.Embedder.from_pretrained("vidore/colqwen2.5-v0.2", dim=64)


def test_reranker_scores_by_maxsim(tiny: Path, model: LateInteractionModel) -> None:
    reranker = umr.Reranker.from_pretrained(tiny, device="cpu")
    rng = np.random.default_rng(0)
    pages = [Image.fromarray(rng.integers(0, 255, (120, 90, 3), dtype=np.uint8)) for _ in range(3)]
    scores = reranker.score("quarterly revenue", [*pages, "Installation manual"])
    q = model.embed_queries(["quarterly revenue"])
    d = model.embed_documents([*pages, "Installation manual"])
    raw = model.score(q, d)[0]
    np.testing.assert_allclose(scores, (1 + raw / q.n_tokens[0]) / 2, atol=1e-5)
    assert all(0 <= s <= 1 for s in scores)
    order = reranker.rerank("quarterly revenue", [*pages, "Installation manual"], top_n=2)
    assert [i for i, _ in order] == list(np.argsort(-raw, kind="stable")[:2])
    # a page hit carrying its text is scored from its image
    fused = reranker.score("quarterly revenue", [{"image": pages[0], "text": "page text"}])
    assert fused[0] == pytest.approx(scores[0], abs=1e-6)


def test_single_vector_adapters_refuse_multi_vector_models(model: LateInteractionModel) -> None:
    lc = pytest.importorskip("langchain_umr")
    with pytest.raises(ValueError, match="UMRRetriever"):
        lc.UMREmbeddings(model="vidore/colqwen2.5-v0.2")
    with pytest.raises(ValueError, match="UMRRetriever"):
        lc.UMREmbeddings(embedder=model)
    li = pytest.importorskip("llama_index.embeddings.umr")
    with pytest.raises(ValueError, match="UMRRetriever"):
        li.UMREmbedding(model_name="nomic-ai/colnomic-embed-multimodal-7b")
    with pytest.raises(ValueError, match="UMRRetriever"):
        li.UMREmbedding(embedder=model)


def test_langchain_reranker_takes_a_late_interaction_model(tiny: Path) -> None:
    lc = pytest.importorskip("langchain_umr")
    from langchain_core.documents import Document

    late = umr.Reranker.from_pretrained(tiny, device="cpu")
    docs = [Document(page_content=t) for t in ("Installation manual", "quarterly revenue grew", "blue square")]
    out = lc.UMRReranker(reranker=late, top_n=2).compress_documents(docs, "quarterly revenue")
    scores = late.score("quarterly revenue", [d.page_content for d in docs])
    best = sorted(range(3), key=lambda i: -scores[i])[:2]
    assert [d.page_content for d in out] == [docs[i].page_content for i in best]


def test_ray_pipeline_refuses_multi_vector_models(tmp_path: Path) -> None:
    from umr.distributed import index_files

    with pytest.raises(ValueError, match="without --ray"):
        index_files([tmp_path], embedder="vidore/colqwen2.5-v0.2", host="localhost")
