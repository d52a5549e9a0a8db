"""Both framework adapters on a model server: ``server_url=`` builds a ``RemoteEmbedder``, and an injected
``RemoteEmbedder`` / ``RemoteReranker`` is accepted like a local model."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from tests.remote.conftest import SERVED
from tests.remote.fake_openai import FakeServer
from umr.remote import RemoteEmbedder, RemoteReranker


def test_langchain_embeddings_with_a_server(fake: FakeServer) -> None:
    pytest.importorskip("langchain_core")
    from langchain_umr import UMREmbeddings, UMRReranker

    emb = UMREmbeddings(model=SERVED, server_url=fake.url, api_key="k2")
    q = emb.embed_query("what is the revenue?")
    docs = emb.embed_documents(["passage one", "passage two"])
    assert len(q) == 16 and len(docs) == 2 and np.isclose(np.linalg.norm(q), 1.0, atol=1e-6)
    assert isinstance(emb.client, RemoteEmbedder)
    assert fake.requests[-1]["authorization"] == "Bearer k2"
    assert "k2" not in repr(emb)
    fused = emb.embed_query_with_image("same chart", Image.new("RGB", (64, 64), "blue"))
    assert len(fused) == 16 and "messages" in fake.posts()[-1]

    injected = UMREmbeddings(embedder=RemoteEmbedder(fake.url, SERVED))
    assert injected.model == SERVED
    np.testing.assert_allclose(injected.embed_query("what is the revenue?"), q, atol=1e-6)
    with pytest.raises(ValueError, match="not both"):
        UMREmbeddings(embedder=RemoteEmbedder(fake.url, SERVED), server_url=fake.url)
    with pytest.raises(ValueError, match="server decides"):
        UMREmbeddings(model=SERVED, server_url=fake.url, device="cpu")

    rr = UMRReranker(reranker=RemoteReranker(fake.url, "some-reranker"), top_n=1)
    from langchain_core.documents import Document

    out = rr.compress_documents([Document(page_content="a"), Document(page_content="b")], "query")
    assert len(out) == 1


def test_llamaindex_embedding_with_a_server(fake: FakeServer) -> None:
    pytest.importorskip("llama_index.core")
    from llama_index.embeddings.umr import UMREmbedding

    emb = UMREmbedding(model_name=SERVED, server_url=fake.url)
    assert isinstance(emb.embedder, RemoteEmbedder)
    q = emb.get_query_embedding("revenue")
    t = emb.get_text_embedding_batch(["a", "b", "c"])
    img = emb.get_image_embedding(Image.new("RGB", (64, 64), "red"))
    assert len(q) == 16 and len(t) == 3 and len(img) == 16
    injected = UMREmbedding(embedder=RemoteEmbedder(fake.url, SERVED))
    np.testing.assert_allclose(injected.get_query_embedding("revenue"), q, atol=1e-6)
    with pytest.raises(ValueError, match="server_url"):
        UMREmbedding(embedder=RemoteEmbedder(fake.url, SERVED), server_url=fake.url)
