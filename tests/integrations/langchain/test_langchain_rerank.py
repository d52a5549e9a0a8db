"""UMRReranker as a document compressor (also in ContextualCompressionRetriever) and the rerank tool."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from langchain_classic.retrievers import ContextualCompressionRetriever
from langchain_core.documents import Document
from langchain_core.messages import ToolMessage
from pydantic import ValidationError

from langchain_umr import UMRReranker, UMRRetriever, create_rerank_tool

QUERY = "quarterly revenue"
TEXTS = ["revenue grew by twelve percent", "press the reset button", "a red circle", "the lazy dog"]


@pytest.fixture(scope="module")
def core_reranker(tiny_reranker_dir: Path) -> Any:
    """The tiny zero-shot reranker with a small pixel budget."""
    import umr

    return umr.Reranker.from_pretrained(
        tiny_reranker_dir, device="cpu", min_pixels=16 * 28 * 28, max_pixels=64 * 28 * 28
    )


@pytest.fixture(autouse=True)
def _png_folder_allowed(png_files: list[Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """The test images' folder counts as a store image folder (as a ChromaStore's would)."""
    from umr import confine

    monkeypatch.setattr(confine, "_registered", [*confine.registered_roots(), png_files[0].parent.resolve()])


@pytest.fixture(scope="module")
def docs(png_files: list[Path]) -> list[Document]:
    text_docs = [Document(page_content=t, metadata={"n": i}, id=f"t{i}") for i, t in enumerate(TEXTS)]
    image_docs = [
        Document(page_content="", metadata={"n": 10 + i, "image_uri": p.resolve().as_uri()}, id=f"i{i}")
        for i, p in enumerate(png_files[:2])
    ]
    return text_docs + image_docs


def test_compress_documents_orders_by_core_scores(
    core_reranker: Any, docs: list[Document], png_files: list[Path]
) -> None:
    reranker = UMRReranker(reranker=core_reranker, top_n=3)
    expected = core_reranker.score(QUERY, [*TEXTS, png_files[0], png_files[1]])
    out = reranker.compress_documents(docs, QUERY)
    assert len(out) == 3
    best = sorted(range(len(docs)), key=lambda i: -expected[i])[:3]
    assert [d.id for d in out] == [docs[i].id for i in best]
    for doc, i in zip(out, best):
        assert doc.metadata["relevance_score"] == pytest.approx(expected[i], abs=1e-5)
        assert doc.metadata["n"] == docs[i].metadata["n"]
    assert all("relevance_score" not in d.metadata for d in docs)  # the inputs are not modified
    everything = UMRReranker(reranker=core_reranker, top_n=None).compress_documents(docs, QUERY)
    assert sorted(d.id for d in everything) == sorted(d.id for d in docs)
    assert UMRReranker(reranker=core_reranker).compress_documents([], QUERY) == []


def test_candidate_modes(core_reranker: Any, png_files: list[Path]) -> None:
    doc = Document(page_content="a blue circle", metadata={"image_path": str(png_files[1])})
    by_image = UMRReranker(reranker=core_reranker, mode="auto").score_documents(QUERY, [doc])[0]
    by_text = UMRReranker(reranker=core_reranker, mode="text").score_documents(QUERY, [doc])[0]
    fused = UMRReranker(reranker=core_reranker, mode="fused").score_documents(QUERY, [doc])[0]
    assert by_image == pytest.approx(core_reranker.score(QUERY, [png_files[1]])[0], abs=1e-5)
    assert by_text == pytest.approx(core_reranker.score(QUERY, ["a blue circle"])[0], abs=1e-5)
    assert fused == pytest.approx(
        core_reranker.score(QUERY, [{"text": "a blue circle", "image": png_files[1]}])[0], abs=1e-5
    )
    assert len({round(by_image, 6), round(by_text, 6), round(fused, 6)}) == 3
    with pytest.raises(ValueError, match="has no image"):
        UMRReranker(reranker=core_reranker, mode="image").score_documents(QUERY, [Document(page_content="x")])


def test_base64_image_content_from_chroma_add_images(core_reranker: Any, png_files: list[Path]) -> None:
    from langchain_chroma import Chroma

    doc = Document(page_content=Chroma.encode_image(str(png_files[0])))
    score = UMRReranker(reranker=core_reranker).score_documents(QUERY, [doc])[0]
    assert score == pytest.approx(core_reranker.score(QUERY, [png_files[0].read_bytes()])[0], abs=1e-5)


def test_fuse_with_first_stage_score(core_reranker: Any) -> None:
    docs = [Document(page_content=t, metadata={"score": s}) for t, s in zip(TEXTS, (0.9, 0.1, 0.5, 0.3))]
    out = UMRReranker(reranker=core_reranker, top_n=None, fuse_weight=0.1).compress_documents(docs, QUERY)
    fused = [d.metadata["fused_score"] for d in out]
    assert fused == sorted(fused, reverse=True)
    for d in out:
        assert d.metadata["fused_score"] == pytest.approx(
            d.metadata["score"] + 0.1 * d.metadata["relevance_score"]
        )
    with pytest.raises(ValueError, match=r"numeric metadata\[.score.\]"):
        UMRReranker(reranker=core_reranker, fuse_weight=0.1).compress_documents(
            [Document(page_content="x")], QUERY
        )


def test_lazy_loading_from_path(tiny_reranker_dir: Path, core_reranker: Any, docs: list[Document]) -> None:
    reranker = UMRReranker(model=tiny_reranker_dir, device="cpu", max_pixels=64 * 28 * 28, top_n=2)
    assert reranker.model == str(tiny_reranker_dir) and reranker._loaded is None
    out = reranker.compress_documents(docs[:4], QUERY)
    expected = core_reranker.rerank(QUERY, TEXTS, top_n=2)
    assert [(d.metadata["n"], round(d.metadata["relevance_score"], 5)) for d in out] == [
        (i, round(s, 5)) for i, s in expected
    ]
    assert "reranker" not in reranker.model_dump()


def test_configuration_errors(core_reranker: Any) -> None:
    with pytest.raises(ValidationError, match="top_n"):
        UMRReranker(top_n=0)
    with pytest.raises(ValidationError, match="unknown reranking recipe"):
        UMRReranker(recipe="nope")
    with pytest.raises(TypeError, match=r"umr\.Reranker"):
        UMRReranker(reranker="Qwen/Qwen2-VL-2B-Instruct")
    with pytest.raises(ValidationError, match="device"):
        UMRReranker(reranker=core_reranker, device="cpu")


def test_contextual_compression_retriever(store: Any, core_reranker: Any) -> None:
    base = UMRRetriever(store=store, k=6)
    pipeline = ContextualCompressionRetriever(
        base_compressor=UMRReranker(reranker=core_reranker, top_n=2), base_retriever=base
    )
    first = base.invoke(QUERY)
    out = pipeline.invoke(QUERY)
    assert len(out) == 2
    assert {d.id for d in out} <= {d.id for d in first}
    rel = [d.metadata["relevance_score"] for d in out]
    assert rel == sorted(rel, reverse=True)
    # page documents are judged by their page image (the store's image_uri), texts by their text
    candidates = [
        Path(d.metadata["image_path"]) if d.metadata.get("image_path") else d.page_content for d in first
    ]
    expected = core_reranker.rerank(QUERY, candidates, top_n=2)
    assert [d.id for d in out] == [first[i].id for i, _ in expected]
    kinds = {d.metadata["kind"] for d in first}
    assert "text" in kinds and kinds & {"pdf", "image"}  # both kinds of candidate were reranked together


async def test_contextual_compression_async(core_reranker: Any, docs: list[Document]) -> None:
    reranker = UMRReranker(reranker=core_reranker, top_n=1)
    out = await reranker.acompress_documents(docs, QUERY)
    assert [d.id for d in out] == [d.id for d in reranker.compress_documents(docs, QUERY)]


# -- the agent tool ---------------------------------------------------------------------------------------
def test_rerank_tool(core_reranker: Any, png_files: list[Path]) -> None:
    tool = create_rerank_tool(core_reranker)
    assert tool.name == "rerank_documents" and {"query", "documents", "top_n"} <= set(tool.args)
    candidates = [
        *TEXTS[:3],
        {"image": str(png_files[0]), "id": "fig-1"},
        {"text": "chart", "image": str(png_files[1])},
    ]
    content = tool.invoke({"query": QUERY, "documents": candidates, "top_n": 4})
    ranked = json.loads(content)
    expected = core_reranker.rerank(
        QUERY, [*TEXTS[:3], png_files[0], {"text": "chart", "image": png_files[1]}], top_n=4
    )
    assert [r["index"] for r in ranked] == [i for i, _ in expected]
    assert [r["score"] for r in ranked] == pytest.approx([s for _, s in expected], abs=1e-5)
    by_index = {r["index"]: r for r in ranked}
    if 3 in by_index:
        assert by_index[3]["id"] == "fig-1" and by_index[3]["image"] == str(png_files[0])
    for r in ranked:
        if r["index"] < 3:
            assert r["text"] == TEXTS[r["index"]]


def test_rerank_tool_call_gives_artifact(core_reranker: Any) -> None:
    tool = create_rerank_tool(UMRReranker(reranker=core_reranker), top_n=1, name="rerank")
    msg = tool.invoke(
        {"type": "tool_call", "id": "call-1", "name": "rerank", "args": {"query": QUERY, "documents": TEXTS}}
    )
    assert isinstance(msg, ToolMessage) and msg.tool_call_id == "call-1"
    assert len(msg.artifact) == 1 and json.loads(msg.content) == msg.artifact
    best = core_reranker.rerank(QUERY, TEXTS, top_n=1)[0]
    assert msg.artifact[0]["index"] == best[0]


def test_rerank_tool_reports_empty_candidate_and_scores_the_rest(core_reranker: Any) -> None:
    tool = create_rerank_tool(core_reranker)
    out = json.loads(tool.invoke({"query": QUERY, "documents": ["ok", {"id": "x"}]}))
    assert [r["index"] for r in out] == [0, 1]
    assert "score" in out[0] and "score" not in out[1]
    assert "neither" in out[1]["error"] and out[1]["id"] == "x"


def test_rerank_tool_confines_image_paths(
    core_reranker: Any, png_files: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Paths outside the allowed folders are refused alike (existing or not); the rest is scored."""
    import os

    from umr import confine

    allowed = tmp_path / "allowed"
    allowed.mkdir()
    good = allowed / "page.png"
    good.write_bytes(png_files[0].read_bytes())
    (allowed / "escape.png").symlink_to(png_files[1])  # a link out of the allowed folder
    os.mkfifo(allowed / "fifo.png")
    monkeypatch.setattr(confine, "_registered", [])
    tool = create_rerank_tool(core_reranker, allowed_roots=[allowed])
    hostile = [
        "/etc/passwd", "/etc/shadow", "/no/such/file.png", str(png_files[1]), str(allowed / "escape.png"),
        str(allowed / "fifo.png"), "/proc/self/environ", "/dev/zero", f"{allowed}/../{png_files[1].name}",
        "http://example.com/a.png",
    ]
    docs = [{"text": "a page", "image": str(good)}, *({"image": h} for h in hostile), "plain text"]
    out = json.loads(tool.invoke({"query": QUERY, "documents": docs}))
    scored = {r["index"]: r for r in out if "score" in r}
    errors = {r["index"]: r["error"] for r in out if "error" in r}
    assert set(scored) == {0, len(docs) - 1}
    assert set(errors) == set(range(1, len(hostile) + 1))
    # one message shape for all: nothing tells an existing file from a missing one
    assert len({e.split(": ", 1)[1] for e in errors.values()}) == 1
    expected = core_reranker.score(QUERY, [{"text": "a page", "image": good}, "plain text"])
    assert scored[0]["score"] == pytest.approx(expected[0], abs=1e-5)
    # the library class raises instead of reporting
    from langchain_core.documents import Document

    from umr.confine import PathNotAllowedError

    reranker = UMRReranker(reranker=core_reranker, allowed_roots=[str(allowed)])
    with pytest.raises(PathNotAllowedError):
        reranker.score_documents(QUERY, [Document(page_content="x", metadata={"image_path": "/etc/x.png"})])
    ok = reranker.score_documents(QUERY, [Document(page_content="", metadata={"image_path": str(good)})])
    assert ok[0] == pytest.approx(core_reranker.score(QUERY, [good])[0], abs=1e-5)
