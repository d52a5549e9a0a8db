"""``umr.RemoteEmbedder`` / ``umr.RemoteReranker`` and both adapters' ``server_url=`` against umr serve."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from tests.serve.conftest import photo
from umr.remote import RemoteEmbedder, RemoteReranker

NAME = "tiny-gme"


@pytest.fixture
def url(serve: Any) -> Any:
    with serve(api_key="k", served_model_name=NAME, served_reranker_name="tiny-rerank") as base:
        yield base


def test_remote_embedder_speaks_umr_and_matches_the_local_vectors(url: str, tiny_embedder: Any) -> None:
    emb = RemoteEmbedder(url, NAME, api_key="k", recipe="gme", max_retries=0)
    assert emb.api == "umr" and emb.dim == tiny_embedder.dim
    img = photo(5)
    inputs = ["a passage about taxes", img, {"text": "chart caption", "image": img}]
    np.testing.assert_allclose(emb.embed_documents(inputs), tiny_embedder.embed_documents(inputs), atol=1e-5)
    np.testing.assert_allclose(emb.embed_queries(["tax 2023"], instruction="Find the form."),
                               tiny_embedder.embed_queries(["tax 2023"], instruction="Find the form."), atol=1e-5)
    emb.close()


def test_remote_reranker_both_apis(url: str, tiny_reranker: Any) -> None:
    docs = ["a red car", "tax form 2023", {"text": "a photo", "image": photo(9)}]
    want = tiny_reranker.score("tax", docs[:2])
    for api in ("score", "rerank"):
        rr = RemoteReranker(url, "tiny-rerank", api=api, api_key="k", max_retries=0)
        np.testing.assert_allclose(rr.score("tax", docs[:2]), want, atol=1e-5)
        assert len(rr.score("tax", docs)) == 3  # an image candidate goes as a content input
        assert rr.rerank("tax", docs[:2], top_n=1)[0][0] == int(np.argmax(want))
        rr.close()


def test_adapters_with_server_url(url: str, tiny_embedder: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UMR_API_KEY", "k")
    want_q = tiny_embedder.embed_queries("what is the revenue?")
    pytest.importorskip("langchain_core")
    from langchain_umr import UMREmbeddings

    lc = UMREmbeddings(model=NAME, server_url=url, recipe="gme")
    np.testing.assert_allclose(lc.embed_query("what is the revenue?"), want_q, atol=1e-5)
    pytest.importorskip("llama_index.core")
    from llama_index.embeddings.umr import UMREmbedding

    li = UMREmbedding(model_name=NAME, server_url=url, recipe="gme")
    np.testing.assert_allclose(li.get_query_embedding("what is the revenue?"), want_q, atol=1e-5)
