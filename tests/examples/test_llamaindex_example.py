"""examples/llamaindex_visual_rag.py runs offline with tiny models: reranked page images reach the LLM,
and the agent answers through the retrieve-and-rerank tool."""

from __future__ import annotations

import asyncio
import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest
from llama_index.core.base.llms.types import ImageBlock
from llama_index.core.llms.mock import MockLLMWithChatMemoryOfLastCall
from llama_index.core.schema import ImageNode

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "llamaindex_visual_rag.py"
QUESTION = "total amount on the invoice"
PIXELS = {"min_pixels": 16 * 28 * 28, "max_pixels": 64 * 28 * 28}  # small images keep the test fast


def _load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("llamaindex_visual_rag", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


def _documents(folder: Path) -> Path:
    import pymupdf
    from PIL import Image, ImageDraw

    folder.mkdir()
    doc = pymupdf.open()
    for text in ("Invoice total: 420 euros", "Router manual: hold reset for 5 seconds"):
        page = doc.new_page(width=200, height=260)
        page.insert_text((20, 60), text, fontsize=11)
    doc.save(folder / "mixed.pdf")
    doc.close()
    chart = Image.new("RGB", (224, 224), "white")
    ImageDraw.Draw(chart).rectangle((30, 60, 90, 200), fill=(200, 40, 40))
    chart.save(folder / "chart.png")
    return folder


@pytest.fixture(scope="module")
def example() -> ModuleType:
    return _load_example()


@pytest.fixture(scope="module")
def setup(example, tiny_model_dir, tiny_reranker_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("li-example")
    docs = _documents(root / "docs")
    llm = MockLLMWithChatMemoryOfLastCall()
    rag = example.build(
        [docs], root / "db", model=str(tiny_model_dir), reranker=str(tiny_reranker_dir), device="cpu",
        top_k=3, top_n=2, llm=llm, **PIXELS,
    )
    return rag, llm, docs, root


def test_query_engine_sends_reranked_page_images(setup) -> None:
    rag, llm, _, _ = setup
    assert rag.store.count() == 3  # two PDF pages and one image
    assert rag.store.max_pixels == PIXELS["max_pixels"] == rag.rerank.reranker.max_pixels
    retrieved = rag.retriever.retrieve(QUESTION)
    assert len(retrieved) == 3 and all(isinstance(n.node, ImageNode) for n in retrieved)
    scores = rag.rerank.reranker.score(QUESTION, [{"image": n.node.image_path} for n in retrieved])
    truth = {n.node.node_id: s for n, s in zip(retrieved, scores)}
    expected = sorted(truth, key=truth.get, reverse=True)[:2]

    response = rag.query_engine.query(QUESTION)
    assert [n.node.node_id for n in response.source_nodes] == expected
    assert [n.score for n in response.source_nodes] == pytest.approx([truth[i] for i in expected], abs=1e-5)
    # the (multimodal) LLM got the reranked page images, best first, then the question
    (message,) = llm.last_chat_messages
    images = [b for b in message.blocks if isinstance(b, ImageBlock)]
    assert [str(b.path) for b in images] == [n.node.image_path for n in response.source_nodes]
    assert QUESTION in message.blocks[-1].text


def test_agent_uses_the_retrieve_and_rerank_tool(example, setup) -> None:
    rag, _, _, _ = setup
    answer, calls = asyncio.run(example.run_agent(rag.agent, QUESTION))
    assert len(calls) == 1 and calls[0].tool_name == example.TOOL_NAME
    assert calls[0].tool_kwargs == {"query": QUESTION}
    expected = example.describe(rag.rerank.postprocess_nodes(rag.retriever.retrieve(QUESTION), query_str=QUESTION))
    assert str(calls[0].tool_output) == expected
    assert expected in answer and "p." in expected and "page image" in expected


def test_command_line(example, setup, tiny_model_dir, tiny_reranker_dir, capsys, caplog) -> None:
    _, _, docs, root = setup
    argv = [
        QUESTION, "--docs", str(docs), "--db", str(root / "db"), "--model", str(tiny_model_dir),
        "--reranker", str(tiny_reranker_dir), "--device", "cpu", "--top-k", "3", "--top-n", "1",
        "--min-pixels", str(PIXELS["min_pixels"]), "--max-pixels", str(PIXELS["max_pixels"]),
    ]
    with caplog.at_level("INFO", logger="llamaindex_visual_rag"):
        assert example.main(argv) == 0
    assert "0 file(s) indexed, 2 already present" in caplog.text  # same models and db: nothing re-embedded
    out = capsys.readouterr().out
    assert "Query engine, reranked pages" in out and "Agent (1 tool call(s))" in out
    ranked = [line.split(".")[0] for line in out.splitlines() if re.match(r"\d+\. ", line)]
    assert ranked == ["1", "1"]  # top_n=1 in both the query engine and the agent's tool
