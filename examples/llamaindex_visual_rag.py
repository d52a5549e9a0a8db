"""Visual-document RAG with LlamaIndex and UMR: pages in, reranked page images out.

    python examples/llamaindex_visual_rag.py "How do I reset the router?"
    python examples/llamaindex_visual_rag.py --docs examples/data --model ./tiny-model --reranker ./tiny-reranker \\
        "total due on the invoice"

What it does:

1. indexes the PDFs and images of ``--docs`` page by page in a ``umr.store.ChromaStore`` (embedded Chroma
   in ``--db``; unchanged files are skipped on the next run);
2. builds a query engine: ``UMRRetriever`` (pages come back as ``ImageNode``s) -> ``UMRRerank`` as node
   postprocessor -> a multimodal LLM that gets the page images;
3. builds an agent whose tool retrieves and reranks pages.

Everything runs offline. The LLMs here are stand-ins so that the script runs anywhere: ``MockLLM``
(echoes its prompt) for the query engine and a scripted function-calling LLM that calls the search tool
once and answers with what it returned. Swap in a real one, e.g. a vision LLM for the query engine
(``llama_index.llms.openai.OpenAI(model="gpt-4o")`` or ``llama_index.llms.ollama.Ollama(model="qwen2.5vl")``)
and any function-calling LLM for ``FunctionAgent``.

Without hub access, make offline tiny models first (random weights: the pipeline is real, the answers
are not): ``umr make-tiny-model ./tiny-model`` and
``python -c "from umr.testing import build_tiny_model as b; b('./tiny-reranker', recipe='qwen-vl-yesno')"``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llama_index.core.agent.workflow import FunctionAgent, ToolCallResult
from llama_index.core.base.llms.types import ChatMessage, MessageRole, ToolCallBlock
from llama_index.core.llms import MockLLM
from llama_index.core.llms.mock import MockFunctionCallingLLM
from llama_index.core.query_engine import SimpleMultiModalQueryEngine
from llama_index.core.schema import ImageNode, NodeWithScore
from llama_index.core.tools import FunctionTool
from llama_index.embeddings.umr import UMREmbedding
from llama_index.postprocessor.umr_rerank import UMRRerank
from llama_index.retrievers.umr import UMRRetriever

from umr.recipes import DEFAULT_EMBEDDER, DEFAULT_RERANKER
from umr.store import ChromaStore

logger = logging.getLogger("llamaindex_visual_rag")

DATA = Path(__file__).resolve().parent / "data"
TOOL_NAME = "search_documents"


@dataclass
class VisualRAG:
    """The pieces of the pipeline, kept so that callers (and tests) can look inside."""

    store: ChromaStore
    retriever: UMRRetriever
    rerank: UMRRerank
    query_engine: SimpleMultiModalQueryEngine
    agent: FunctionAgent


def describe(nodes: Sequence[NodeWithScore]) -> str:
    """One line per node: source, page, rerank score and the first-stage score."""
    lines = []
    for rank, item in enumerate(nodes, 1):
        meta = item.node.metadata
        kind = "page image" if isinstance(item.node, ImageNode) else "text"
        lines.append(
            f"{rank}. {os.path.basename(str(meta.get('source', '')))} p.{meta.get('page', '?')} ({kind}) "
            f"score={item.score:.4f} retrieval={float(meta.get('retrieval_score', 0.0)):.4f}"
        )
    return "\n".join(lines) if lines else "no matching pages"


def make_search_tool(retriever: UMRRetriever, rerank: UMRRerank) -> FunctionTool:
    """A retrieve-and-rerank tool for agents."""

    def search_documents(query: str) -> str:
        """Search the indexed documents; returns the best pages (file, page number, scores), best first."""
        return describe(rerank.postprocess_nodes(retriever.retrieve(query), query_str=query))

    return FunctionTool.from_defaults(fn=search_documents, name=TOOL_NAME)


def scripted_agent_llm() -> MockFunctionCallingLLM:
    """An offline function-calling LLM: calls the search tool with the user's question, then answers
    with the tool's result. Replace it with a real LLM for real answers."""

    def respond(messages: Sequence[ChatMessage], **_: Any) -> ChatMessage:
        results = [m for m in messages if m.role == MessageRole.TOOL]
        if results:
            return ChatMessage(role=MessageRole.ASSISTANT, content=f"The best pages are:\n{results[-1].content}")
        question = next(m.content for m in reversed(messages) if m.role == MessageRole.USER)
        call = ToolCallBlock(tool_call_id="call-1", tool_name=TOOL_NAME, tool_kwargs={"query": question})
        return ChatMessage(role=MessageRole.ASSISTANT, blocks=[call])

    return MockFunctionCallingLLM(response_generator=respond)


def build(
    docs: Sequence[str | os.PathLike],
    db: str | os.PathLike,
    *,
    model: str = DEFAULT_EMBEDDER,
    reranker: str = DEFAULT_RERANKER,
    device: str | None = None,
    top_k: int = 10,
    top_n: int = 3,
    min_pixels: int | None = None,
    max_pixels: int | None = None,
    llm: Any | None = None,
    agent_llm: Any | None = None,
    embed_model: UMREmbedding | None = None,
    rerank: UMRRerank | None = None,
) -> VisualRAG:
    """Index ``docs`` into ``db`` and assemble the query engine and the agent.

    ``min_pixels`` / ``max_pixels`` set the image budget of both models (lower is faster, coarser); pages
    are rendered within ``max_pixels``. ``embed_model`` / ``rerank`` replace the ones built from ``model``
    / ``reranker``; ``llm`` / ``agent_llm`` replace the offline stand-ins.
    """
    pixels = {"min_pixels": min_pixels, "max_pixels": max_pixels}
    embed = embed_model or UMREmbedding(model_name=model, device=device, **pixels)
    store = ChromaStore(embed.embedder, db)
    report = store.add_files(list(docs))
    logger.info("%s", report.summary())
    retriever = UMRRetriever(store, similarity_top_k=top_k)
    rerank = rerank or UMRRerank(model=reranker, device=device, top_n=top_n, **pixels)
    query_engine = SimpleMultiModalQueryEngine(
        retriever,  # type: ignore[arg-type]  # any retriever works; the hint names the index's own
        multi_modal_llm=llm or MockLLM(),
        node_postprocessors=[rerank],
    )
    agent = FunctionAgent(
        tools=[make_search_tool(retriever, rerank)],
        llm=agent_llm or scripted_agent_llm(),
        system_prompt="Answer questions about the user's documents. Use the search tool to find pages.",
    )
    return VisualRAG(store, retriever, rerank, query_engine, agent)


async def run_agent(agent: FunctionAgent, question: str) -> tuple[str, list[ToolCallResult]]:
    """Run the agent on ``question``; returns its answer and the tool calls it made."""
    handler = agent.run(user_msg=question)
    calls = [event async for event in handler.stream_events() if isinstance(event, ToolCallResult)]
    return str(await handler), calls


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("question", nargs="?", default="How do I reset the router?")
    parser.add_argument("--docs", nargs="+", default=[str(DATA)], help="PDF/image files or folders")
    parser.add_argument("--db", default="umr_db", help="Chroma folder (created if missing)")
    parser.add_argument("--model", default=os.environ.get("UMR_MODEL", DEFAULT_EMBEDDER), help="embedder")
    parser.add_argument("--reranker", default=DEFAULT_RERANKER, help="reranker id or folder")
    parser.add_argument("--device", default=None, help="cuda, cpu, ... (auto)")
    parser.add_argument("--top-k", type=int, default=10, help="pages retrieved before reranking")
    parser.add_argument("--top-n", type=int, default=3, help="pages kept after reranking")
    parser.add_argument("--min-pixels", type=int, default=None, help="smallest image budget (model default)")
    parser.add_argument("--max-pixels", type=int, default=None, help="largest image budget (model default)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    rag = build(
        args.docs, args.db, model=args.model, reranker=args.reranker, device=args.device,
        top_k=args.top_k, top_n=args.top_n, min_pixels=args.min_pixels, max_pixels=args.max_pixels,
    )
    response = rag.query_engine.query(args.question)
    print(f"Query engine, reranked pages for {args.question!r}:\n{describe(response.source_nodes)}")
    answer, calls = asyncio.run(run_agent(rag.agent, args.question))
    print(f"\nAgent ({len(calls)} tool call(s)):\n{answer}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
