"""Visual RAG with LangChain: index PDFs as page images, retrieve, rerank, ask a multimodal chat model.

    python examples/langchain_visual_rag.py "What is the total due on the invoice?" \
        [--docs examples/data] [--db ./umr_db] [--chat-model openai:gpt-4o-mini] [-k 8] [--top-n 3]

Pages are embedded as images with GME (``UMREmbeddings``' model), stored in a ``umr.store.ChromaStore``,
retrieved with ``UMRRetriever``, reranked with ``UMRReranker`` inside a ``ContextualCompressionRetriever``,
and the best page images go to the chat model in one multimodal ``HumanMessage``. Without
``--chat-model`` (it needs ``pip install langchain`` and the provider package) the script stops after
reranking and prints the message it would send. ``--embed-model`` / ``--rerank-model`` take hub ids or
local folders (``umr make-tiny-model DIR`` writes an offline tiny one: random vectors, real pipeline).
"""

from __future__ import annotations

import argparse
import base64
import logging
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from langchain_core.documents import Document
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage

from langchain_umr import UMRReranker, UMRRetriever

logger = logging.getLogger("langchain_visual_rag")

DATA = Path(__file__).resolve().parent / "data"
SYSTEM = (
    "You answer questions about documents. You are given page images retrieved for the question; "
    "answer from them only and name the document and page you used."
)
QUERY_INSTRUCTION = "Find a document page that answers the question."


@dataclass
class RagResult:
    """What one question produced: the reranked pages, the message sent and the model's answer."""

    question: str
    pages: list[Document]
    messages: list[Any]
    answer: AIMessage | None


def sample_documents(folder: Path | None = None) -> Path:
    """``folder`` if given, else ``examples/data`` if it holds PDFs, else freshly generated samples."""
    if folder is not None:
        return folder
    if any(DATA.glob("*.pdf")):
        return DATA
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import make_sample_data  # the generator of examples/data

    out = Path(tempfile.mkdtemp(prefix="umr-samples-"))
    make_sample_data.main(out)
    return out


def build_store(docs: Path, embedder: Any, db: Path, **store_kwargs: Any) -> Any:
    """Index every PDF and image under ``docs`` (idempotent: re-running skips unchanged files)."""
    from umr.store import ChromaStore

    store = ChromaStore(embedder, db, **store_kwargs)
    report = store.add_files([docs])
    logger.info("%s", report.summary())
    return store


def page_message(question: str, pages: Sequence[Document]) -> HumanMessage:
    """One user message: the question, then each page as a label and a PNG image content block."""
    content: list[str | dict[str, Any]] = [{"type": "text", "text": question}]
    for i, page in enumerate(pages, 1):
        meta = page.metadata
        label = f"Page {i}: {Path(str(meta.get('source', ''))).name or 'image'}, page {meta.get('page', '?')}"
        content.append({"type": "text", "text": label})
        image_path = meta.get("image_path")
        if not image_path:
            raise ValueError(f"{label} has no stored page image; index with ChromaStore(store_images=True)")
        data = base64.b64encode(Path(image_path).read_bytes()).decode("ascii")
        content.append({"type": "image", "base64": data, "mime_type": "image/png"})
    return HumanMessage(content=content)


def answer(question: str, retriever: Any, chat_model: BaseChatModel | None) -> RagResult:
    """Retrieve and rerank pages for ``question``, then ask ``chat_model`` (if any) with the page images."""
    pages = list(retriever.invoke(question))
    messages = [SystemMessage(content=SYSTEM), page_message(question, pages)]
    reply = chat_model.invoke(messages) if chat_model is not None else None
    return RagResult(question=question, pages=pages, messages=messages, answer=reply)


def build_retriever(store: Any, reranker: Any, k: int = 8, top_n: int = 3) -> Any:
    """First stage ``UMRRetriever`` (top ``k`` pages), second stage ``UMRReranker`` (best ``top_n``)."""
    from langchain_classic.retrievers import ContextualCompressionRetriever

    if not isinstance(reranker, UMRReranker):
        reranker = UMRReranker(reranker=reranker, top_n=top_n)
    else:
        reranker = reranker.model_copy(update={"top_n": top_n})
    base = UMRRetriever(
        store=store, k=k, where={"kind": {"$in": ["pdf", "image"]}}, query_instruction=QUERY_INSTRUCTION
    )
    return ContextualCompressionRetriever(base_compressor=reranker, base_retriever=base)


def load_chat_model(spec: str | None) -> BaseChatModel | None:
    if not spec:
        return None
    try:
        from langchain.chat_models import init_chat_model
    except ImportError:
        try:
            from langchain_classic.chat_models import init_chat_model
        except ImportError as exc:
            raise SystemExit("--chat-model needs `pip install langchain` and the provider's package") from exc
    return init_chat_model(spec)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("question")
    parser.add_argument("--docs", type=Path, default=None, help="folder of PDFs / images (default: samples)")
    parser.add_argument("--db", type=Path, default=Path("umr_db"), help="Chroma folder (default ./umr_db)")
    parser.add_argument("--embed-model", default="Alibaba-NLP/gme-Qwen2-VL-2B-Instruct")
    parser.add_argument("--rerank-model", default=None, help="default: umr's default reranker")
    parser.add_argument("--chat-model", default=None, help="init_chat_model spec, e.g. openai:gpt-4o-mini")
    parser.add_argument("--device", default=None)
    parser.add_argument("-k", type=int, default=8)
    parser.add_argument("--top-n", type=int, default=3)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    import umr

    embedder = umr.Embedder.from_pretrained(args.embed_model, device=args.device)
    store = build_store(sample_documents(args.docs), embedder, args.db)
    reranker = UMRReranker(model=args.rerank_model, device=args.device, top_n=args.top_n)
    retriever = build_retriever(store, reranker, k=args.k, top_n=args.top_n)
    result = answer(args.question, retriever, load_chat_model(args.chat_model))
    for page in result.pages:
        m = page.metadata
        sys.stdout.write(f"{m.get('relevance_score', 0):.3f}  {m.get('source')}  page {m.get('page')}\n")
    if result.answer is None:
        blocks = result.messages[-1].content
        sys.stdout.write(f"(no --chat-model: would send the question and {len(blocks) // 2} page images)\n")
    else:
        sys.stdout.write(f"\n{result.answer.text}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
