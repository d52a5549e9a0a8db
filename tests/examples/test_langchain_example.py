"""examples/langchain_visual_rag.py runs offline with tiny models and sends page images to the chat model."""

from __future__ import annotations

import base64
import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.outputs import ChatResult
from pydantic import Field

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "langchain_visual_rag.py"


def _load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("langchain_visual_rag", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


class RecordingChatModel(GenericFakeChatModel):
    """A fake chat model that keeps the messages each call received (as the model sees them)."""

    received: list[list[BaseMessage]] = Field(default_factory=list)

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        self.received.append(list(messages))
        return super()._generate(messages, stop=stop, run_manager=run_manager, **kwargs)


@pytest.fixture(scope="module")
def example() -> ModuleType:
    return _load_example()


def test_visual_rag_sends_reranked_page_images(
    example: ModuleType, tiny_model_dir: Path, tiny_reranker_dir: Path, tmp_path: Path
) -> None:
    import umr

    embedder = umr.Embedder.from_pretrained(
        tiny_model_dir, device="cpu", min_pixels=16 * 28 * 28, max_pixels=64 * 28 * 28
    )
    reranker = umr.Reranker.from_pretrained(
        tiny_reranker_dir, device="cpu", min_pixels=16 * 28 * 28, max_pixels=64 * 28 * 28
    )
    docs = example.sample_documents()
    assert sorted(p.name for p in docs.glob("*.pdf")), "examples/data holds the sample PDFs"
    store = example.build_store(docs, embedder, tmp_path / "db")
    assert store.count() >= 4

    chat = RecordingChatModel(messages=iter([AIMessage(content="The total due is EUR 792.00.")]))
    retriever = example.build_retriever(store, reranker, k=4, top_n=2)
    question = "What is the total due on the invoice?"
    result = example.answer(question, retriever, chat)

    assert result.answer is not None and result.answer.content == "The total due is EUR 792.00."
    assert len(result.pages) == 2
    scores = [p.metadata["relevance_score"] for p in result.pages]
    assert scores == sorted(scores, reverse=True)
    assert all(p.metadata["kind"] in ("pdf", "image") for p in result.pages)

    # the chat model got exactly one call whose user message carries the question and both page images
    assert len(chat.received) == 1
    human = [m for m in chat.received[0] if isinstance(m, HumanMessage)]
    assert len(human) == 1
    blocks = human[0].content
    assert blocks[0] == {"type": "text", "text": question}
    images = [b for b in blocks if isinstance(b, dict) and b.get("type") == "image"]
    assert [b["mime_type"] for b in images] == ["image/png", "image/png"]
    for block, page in zip(images, result.pages):
        sent = base64.b64decode(block["base64"])
        assert sent.startswith(b"\x89PNG") and sent == Path(page.metadata["image_path"]).read_bytes()
    assert [b["type"] for b in human[0].content_blocks].count("image") == 2


def test_page_message_needs_stored_images(example: ModuleType) -> None:
    from langchain_core.documents import Document

    with pytest.raises(ValueError, match="no stored page image"):
        example.page_message("q", [Document(page_content="x", metadata={"source": "a.pdf", "page": 1})])
