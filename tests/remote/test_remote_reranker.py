"""``umr.remote.RemoteReranker`` against the fake server's ``/v1/score`` and ``/rerank``."""

from __future__ import annotations

import pytest
from PIL import Image

from tests.remote.fake_openai import FakeServer
from umr.errors import ModelNotFoundError
from umr.remote import RemoteReranker


@pytest.mark.parametrize("api", ["score", "rerank"])
def test_score_and_rerank(fake: FakeServer, api: str) -> None:
    rr = RemoteReranker(fake.url, "some-reranker", api=api, backoff=0.01)  # type: ignore[arg-type]
    cands = ["first", "second", {"text": "third", "image": Image.new("RGB", (64, 64), "red")}]
    scores = rr.score("a query", cands)
    assert len(scores) == 3 and all(isinstance(s, float) for s in scores)
    ranked = rr.rerank("a query", cands, top_n=2)
    assert len(ranked) == 2 and ranked[0][1] >= ranked[1][1] and ranked[0][1] == max(scores)
    path = "/v1/score" if api == "score" else "/rerank"
    body = fake.posts(path)[-1]
    docs = body["text_2"] if api == "score" else body["documents"]
    assert docs[0] == "first" and docs[2]["content"][0]["image_url"]["url"].startswith("data:image/png")
    assert rr.score("q", []) == []
    with pytest.raises(ValueError, match="instruction"):
        rr.score("q", ["x"], instruction="judge")


def test_missing_reranker_model(fake: FakeServer) -> None:
    with pytest.raises(ModelNotFoundError, match="some-reranker"):
        RemoteReranker(fake.url, "BAAI/bge-reranker-v2-m3")
