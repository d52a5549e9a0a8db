"""UMRRerank: text and image nodes scored by umr.Reranker, reordered, first-stage score kept."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path

import pytest
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.schema import ImageNode, MetadataMode, NodeWithScore, QueryBundle, TextNode
from llama_index.postprocessor.umr_rerank import UMRRerank

from umr.errors import InputError

from .conftest import PIXELS

QUERY = "quarterly revenue chart"


@pytest.fixture()
def nodes(page_images, page_texts) -> list[NodeWithScore]:
    """Two text nodes and three image nodes (image_path, base64 image, file:// image_url)."""
    b64 = base64.b64encode(page_images[1].read_bytes()).decode()
    items = [
        TextNode(id_="t1", text="Operating costs fell in the second quarter.", metadata={"source": "a.txt"}),
        ImageNode(id_="p1", image_path=str(page_images[0]), text=page_texts[0], metadata={"source": "r.pdf", "page": 1}),
        ImageNode(id_="p2", image=b64, text=page_texts[1], metadata={"source": "r.pdf", "page": 2}),
        TextNode(id_="t2", text="Revenue grew by twelve percent this quarter.", metadata={"source": "b.txt"}),
        ImageNode(id_="p3", image_url=page_images[2].resolve().as_uri(), metadata={"source": "r.pdf", "page": 3}),
    ]
    return [NodeWithScore(node=n, score=0.9 - 0.1 * i) for i, n in enumerate(items)]


def expected_scores(reranker, nodes, page_images) -> dict[str, float]:
    """The reranker's own scores for the same candidates, built without the adapter."""
    candidates = [
        nodes[0].node.get_content(metadata_mode=MetadataMode.NONE),
        {"image": str(page_images[0])},
        {"image": page_images[1].read_bytes()},
        nodes[3].node.get_content(metadata_mode=MetadataMode.NONE),
        {"image": str(page_images[2])},
    ]
    scores = reranker.score(QUERY, candidates)
    return {n.node.node_id: s for n, s in zip(nodes, scores)}


def test_reorders_by_the_rerankers_scores(li_reranker, nodes, page_images) -> None:
    rerank = UMRRerank(reranker=li_reranker, top_n=3)
    assert isinstance(rerank, BaseNodePostprocessor) and rerank.model == li_reranker.model_id
    out = rerank.postprocess_nodes(nodes, query_str=QUERY)
    truth = expected_scores(li_reranker, nodes, page_images)
    assert len({round(v, 6) for v in truth.values()}) == 5  # distinct scores: the order is meaningful
    best = sorted(truth, key=truth.get, reverse=True)[:3]
    assert best != ["t1", "p1", "p2"]  # and it is not the first-stage order
    assert [r.node.node_id for r in out] == best
    assert [r.score for r in out] == pytest.approx([truth[i] for i in best], abs=1e-5)
    first_stage = {n.node.node_id: n.score for n in nodes}
    for r in out:
        assert r.node.metadata["retrieval_score"] == pytest.approx(first_stage[r.node.node_id])
        assert "retrieval_score" not in r.node.get_content(metadata_mode=MetadataMode.LLM)
        assert type(r.node) is type(next(n.node for n in nodes if n.node.node_id == r.node.node_id))
    # the caller's nodes are not modified
    assert all("retrieval_score" not in n.node.metadata for n in nodes)


def test_top_n_none_keeps_all_and_duplicates_are_scored_once(li_reranker, nodes, monkeypatch) -> None:
    calls: list[int] = []
    original = li_reranker.score

    def counting(query, candidates, *args, **kwargs):
        candidates = list(candidates)
        calls.append(len(candidates))
        return original(query, candidates, *args, **kwargs)

    monkeypatch.setattr(li_reranker, "score", counting)
    doubled = [*nodes, NodeWithScore(node=nodes[1].node, score=0.95)]
    out = UMRRerank(reranker=li_reranker, top_n=None).postprocess_nodes(doubled, query_str=QUERY)
    assert calls == [5]
    assert sorted(r.node.node_id for r in out) == ["p1", "p2", "p3", "t1", "t2"]
    assert [r.score for r in out] == sorted((r.score for r in out), reverse=True)
    assert next(r for r in out if r.node.node_id == "p1").node.metadata["retrieval_score"] == pytest.approx(0.95)


def test_fusion_and_image_query(li_reranker, nodes, page_images) -> None:
    fused = UMRRerank(reranker=li_reranker, top_n=5, fuse_weight=0.1).postprocess_nodes(nodes, query_str=QUERY)
    truth = expected_scores(li_reranker, nodes, page_images)
    first = {n.node.node_id: n.score for n in nodes}
    want = {i: first[i] + 0.1 * truth[i] for i in truth}
    assert [r.node.node_id for r in fused] == sorted(want, key=want.get, reverse=True)
    assert all(r.node.metadata["rerank_score"] == pytest.approx(truth[r.node.node_id], abs=1e-5) for r in fused)
    # a QueryBundle with an image is a fused text + image query
    bundle = QueryBundle(query_str="pages like this", image_path=str(page_images[3]))
    out = UMRRerank(reranker=li_reranker, top_n=2).postprocess_nodes(nodes[:2], query_bundle=bundle)
    direct = li_reranker.score(
        {"text": "pages like this", "image": str(page_images[3])},
        [nodes[0].node.get_content(), {"image": str(page_images[0])}],
    )
    assert {r.node.node_id: r.score for r in out} == pytest.approx({"t1": direct[0], "p1": direct[1]}, abs=1e-5)


def test_async_matches_sync(li_reranker, nodes) -> None:
    rerank = UMRRerank(reranker=li_reranker, top_n=2)
    sync = rerank.postprocess_nodes(nodes, query_str=QUERY)
    got = asyncio.run(rerank.apostprocess_nodes(nodes, query_str=QUERY))
    assert [(r.node.node_id, round(r.score, 5)) for r in got] == [(r.node.node_id, round(r.score, 5)) for r in sync]


def test_errors(li_reranker, nodes, tmp_path) -> None:
    rerank = UMRRerank(reranker=li_reranker)
    assert rerank.postprocess_nodes([], query_str=QUERY) == []
    with pytest.raises(ValueError, match="needs the query"):
        rerank.postprocess_nodes(nodes)
    remote = [NodeWithScore(node=ImageNode(id_="web", image_url="https://example.com/x.png"), score=0.5)]
    with pytest.raises(InputError, match=r"node 'web'.*remote URL"):
        rerank.postprocess_nodes(remote, query_str=QUERY)
    # a missing file and a file outside the allowed folders get the same refusal, naming the node
    for path in (tmp_path / "missing.png", Path("/etc/passwd"), Path("/dev/zero")):
        gone = [NodeWithScore(node=ImageNode(id_="gone", image_path=str(path)), score=0.5)]
        with pytest.raises(InputError, match="node 'gone': this path may not be read here"):
            rerank.postprocess_nodes(gone, query_str=QUERY)
    allowed = UMRRerank(reranker=li_reranker, allowed_roots=tmp_path)
    (tmp_path / "p.png").write_bytes(nodes[2].node.resolve_image().getvalue())
    ok = [NodeWithScore(node=ImageNode(id_="ok", image_path=str(tmp_path / "p.png")), score=0.5)]
    assert allowed.postprocess_nodes(ok, query_str=QUERY)[0].node.node_id == "ok"
    unscored = [NodeWithScore(node=TextNode(id_="u", text="x"), score=None)]
    with pytest.raises(ValueError, match="first-stage score"):
        UMRRerank(reranker=li_reranker, fuse_weight=0.1).postprocess_nodes(unscored, query_str=QUERY)
    with pytest.raises(ValueError, match="device"):
        UMRRerank(reranker=li_reranker, device="cpu")
    with pytest.raises(TypeError, match="rerank"):
        UMRRerank(reranker=object())
    with pytest.raises(ValueError, match="does not match"):
        UMRRerank("Qwen/Qwen2-VL-7B-Instruct", reranker=li_reranker)
    with pytest.raises(ValueError, match="disagree"):
        UMRRerank(model="a", model_name="b")


def test_built_from_a_model_path(tiny_reranker_dir, li_reranker, nodes, page_images) -> None:
    rerank = UMRRerank(model=str(tiny_reranker_dir), device="cpu", top_n=2, **PIXELS)
    assert rerank.reranker.max_pixels == PIXELS["max_pixels"]
    assert rerank.reranker is not li_reranker
    out = rerank.postprocess_nodes(nodes[:2], query_str=QUERY)
    truth = expected_scores(li_reranker, nodes, page_images)
    assert {r.node.node_id: r.score for r in out} == pytest.approx({"t1": truth["t1"], "p1": truth["p1"]}, abs=1e-5)
