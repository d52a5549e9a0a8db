"""``RemoteEmbedder`` / ``RemoteReranker`` satisfy ``umr.protocols``, checked without a server request."""

from __future__ import annotations

from tests.remote.conftest import SERVED
from tests.remote.fake_openai import FakeServer
from umr.protocols import check_embedder, check_reranker
from umr.remote import RemoteEmbedder, RemoteReranker


def test_remote_classes_satisfy_the_protocols(fake: FakeServer) -> None:
    emb = RemoteEmbedder(fake.url, SERVED, check_model=False)
    rr = RemoteReranker(fake.url, "some-reranker", check_model=False)
    assert check_embedder(emb, "store") is emb
    assert check_reranker(rr, "adapter") is rr
    # the check reads no property: the dim probe (a POST to /v1/embeddings) has not happened
    assert fake.posts("/v1/embeddings") == []
    assert emb.dim > 0 and len(fake.posts("/v1/embeddings")) == 1
