"""A LangChain tool that lets an agent rerank candidate documents (text and/or images) for a query."""

from __future__ import annotations

import json
from typing import Any

from langchain_core.tools import BaseTool, StructuredTool
from pydantic import BaseModel, Field

from langchain_umr.rerank import UMRReranker

DEFAULT_DESCRIPTION = (
    "Rerank candidate documents by how well they answer a query, using a multimodal reranker. "
    "Each candidate is a string (text) or an object with 'text' and/or 'image' (a local image path or "
    "file:// URI) and an optional 'id'. Returns the candidates best first, each with its 0-based 'index' "
    "in the input list and a relevance 'score' in [0, 1]."
)


class RerankCandidate(BaseModel):
    """One candidate: text, an image, or both."""

    text: str | None = Field(default=None, description="Text of the candidate.")
    image: str | None = Field(default=None, description="Local image path or file:// URI of the candidate.")
    id: str | None = Field(default=None, description="Caller's id, returned unchanged.")


class RerankInput(BaseModel):
    """Arguments of the rerank tool."""

    query: str = Field(description="What the user is looking for.")
    documents: list[str | RerankCandidate] = Field(description="Candidates to rerank (strings are text).")
    top_n: int | None = Field(default=None, gt=0, description="Return only the best top_n candidates.")


def create_rerank_tool(
    reranker: UMRReranker | Any,
    *,
    name: str = "rerank_documents",
    description: str = DEFAULT_DESCRIPTION,
    top_n: int | None = None,
) -> BaseTool:
    """A structured tool over a ``UMRReranker`` or a ``umr.Reranker``.

    The tool's content is a JSON list of ``{"index", "score", "text"?, "image"?, "id"?}`` (best first); with
    a ``ToolCall`` input the same list is also the ``ToolMessage.artifact``. ``top_n`` is the default cut.
    """
    wrapper = reranker if isinstance(reranker, UMRReranker) else UMRReranker(reranker=reranker, top_n=None)
    default_top_n = top_n

    def rerank_documents(
        query: str, documents: list[str | RerankCandidate], top_n: int | None = None
    ) -> tuple[str, list[dict[str, Any]]]:
        from umr.inputs import MultimodalInput

        items: list[dict[str, Any]] = []
        inputs: list[MultimodalInput] = []
        for i, doc in enumerate(documents):
            if isinstance(doc, dict):
                doc = RerankCandidate.model_validate(doc)
            if isinstance(doc, str):
                items.append({"text": doc})
                inputs.append(MultimodalInput(text=doc))
                continue
            if doc.text is None and doc.image is None:
                raise ValueError(f"documents[{i}] has neither 'text' nor 'image'; give at least one")
            items.append(doc.model_dump(exclude_none=True))
            inputs.append(MultimodalInput.coerce({"text": doc.text, "image": doc.image}))
        n = top_n if top_n is not None else default_top_n
        kwargs = {
            k: v
            for k, v in (("batch_size", wrapper.batch_size), ("max_batch_tokens", wrapper.max_batch_tokens))
            if v
        }
        ranked = (
            wrapper.client.rerank(query, inputs, top_n=n, instruction=wrapper.instruction, **kwargs)
            if inputs
            else []
        )
        out = [{"index": i, "score": round(float(s), 6), **items[i]} for i, s in ranked]
        return json.dumps(out, ensure_ascii=False), out

    return StructuredTool.from_function(
        func=rerank_documents,
        name=name,
        description=description,
        args_schema=RerankInput,
        response_format="content_and_artifact",
    )
