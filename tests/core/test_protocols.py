"""``umr.protocols``: the embedder / reranker contracts and their one checker each."""

from __future__ import annotations

import pytest

import umr
from umr.protocols import EMBEDDER_MEMBERS, EmbedderLike, RerankerLike, check_embedder, check_reranker


def test_local_embedder_and_reranker_satisfy_the_protocols(tiny_embedder, tiny_reranker_dir):
    assert check_embedder(tiny_embedder, "store") is tiny_embedder
    assert isinstance(tiny_embedder, EmbedderLike)
    rr = umr.Reranker.from_pretrained(tiny_reranker_dir, device="cpu")
    assert check_reranker(rr, "adapter") is rr
    assert isinstance(rr, RerankerLike)
    # an embedder is not a reranker and the other way round
    with pytest.raises(TypeError, match=r"adapter: Embedder is not a reranker .*lacks score\(\), rerank\(\)"):
        check_reranker(tiny_embedder, "adapter")
    with pytest.raises(TypeError, match=r"embed_queries\(\), embed_documents\(\), embed\(\)"):
        check_embedder(rr)


class _Partial:
    model_id = "x"

    def embed_documents(self, inputs, **kwargs):
        return []

    @property
    def dim(self) -> int:
        raise AssertionError("a checker must not evaluate properties (a remote dim asks its server)")


def test_checker_names_each_missing_member_and_never_evaluates_properties():
    with pytest.raises(TypeError) as info:
        check_embedder(_Partial(), "ChromaStore(embedder=...)")
    msg = str(info.value)
    assert msg.startswith("ChromaStore(embedder=...): _Partial is not an embedder")
    for missing in ("embed_queries()", "embed()", "fingerprint", "max_pixels"):
        assert missing in msg
    for present in ("embed_documents", "model_id", " dim"):
        assert present not in msg.split("lacks", 1)[1]
    with pytest.raises(TypeError, match="got None"):
        check_embedder(None, "--model")


def test_a_member_that_is_not_callable_is_reported():
    class NotCallable:
        score = 3

        def rerank(self, query, candidates, top_n=None, instruction=None, **kwargs):
            return []

    with pytest.raises(TypeError, match=r"score\(\) \(not callable\)"):
        check_reranker(NotCallable())


def test_member_list_matches_the_protocol():
    declared = {n for n in EmbedderLike.__dict__ if not n.startswith("_")} | set(EmbedderLike.__annotations__)
    assert {name for name, _ in EMBEDDER_MEMBERS} == declared
