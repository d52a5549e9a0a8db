"""A LangChain tool that lets an agent rerank candidate documents (text and/or images) for a query."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

from langchain_core.tools import BaseTool, StructuredTool
from pydantic import BaseModel, Field

from langchain_umr.rerank import UMRReranker
from umr.confine import PathPolicy

DEFAULT_DESCRIPTION = (
    "Rerank candidate documents by how well they answer a query, using a multimodal reranker. "
    "Each candidate is a string (text) or an object with 'text' and/or 'image' (a local image path or "
    "file:// URI) and an optional 'id'. Returns the candidates best first, each with its 0-based 'index' "
    "in the input list and a relevance 'score' in [0, 1]. A candidate that cannot be used (an image outside "
    "the allowed folders, an unreadable image) comes back with an 'error' instead of a score."
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
    allowed_roots: Sequence[str | os.PathLike] | None = None,
) -> BaseTool:
    """A structured tool over a ``UMRReranker`` or a ``umr.Reranker``.

    The tool's content is a JSON list of ``{"index", "score", "text"?, "image"?, "id"?}`` (best first); with
    a ``ToolCall`` input the same list is also the ``ToolMessage.artifact``. ``top_n`` is the default cut.

    Image paths come from the model, so they are untrusted: they are read only under ``allowed_roots``
    (default: the ``UMRReranker``'s ``allowed_roots``, else the page-image folders of the ``ChromaStore``
    objects opened in this process), symlinks resolved first, never devices, FIFOs or ``/proc``. A
    candidate that is refused or unreadable is listed after the scored ones with ``"error"`` and no
    score; the other candidates are still scored.
    """
    wrapper = reranker if isinstance(reranker, UMRReranker) else UMRReranker(reranker=reranker, top_n=None)
    default_top_n = top_n
    roots = allowed_roots if allowed_roots is not None else wrapper.allowed_roots
    policy = PathPolicy(None if roots is None else [os.fspath(r) for r in roots])

    def rerank_documents(
        query: str, documents: list[str | RerankCandidate], top_n: int | None = None
    ) -> tuple[str, list[dict[str, Any]]]:
        from umr.errors import InputError
        from umr.inputs import MultimodalInput

        items: list[dict[str, Any]] = []
        inputs: list[MultimodalInput] = []
        usable: list[int] = []  # positions in `documents` of the candidates that are scored
        failed: list[dict[str, Any]] = []
        for i, doc in enumerate(documents):
            try:
                if isinstance(doc, dict):
                    doc = RerankCandidate.model_validate(doc)
                if isinstance(doc, str):
                    item: dict[str, Any] = {"text": doc}
                    candidate = MultimodalInput(text=doc)
                else:
                    if doc.text is None and doc.image is None:
                        raise InputError("the candidate has neither 'text' nor 'image'; give at least one")
                    item = doc.model_dump(exclude_none=True)
                    image = policy.read_bytes(doc.image, what=f"documents[{i}].image") if doc.image else None
                    candidate = MultimodalInput(text=doc.text, image=image)
                    if image is not None:
                        candidate.image_size()  # unreadable or oversized images fail here, alone
            except (InputError, ValueError, TypeError) as exc:
                failed.append({"index": i, "error": str(exc), **_echo(doc)})
                continue
            items.append(item)
            inputs.append(candidate)
            usable.append(i)
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
        out = [{"index": usable[j], "score": round(float(s), 6), **items[j]} for j, s in ranked]
        out += failed
        return json.dumps(out, ensure_ascii=False), out

    return StructuredTool.from_function(
        func=rerank_documents,
        name=name,
        description=description,
        args_schema=RerankInput,
        response_format="content_and_artifact",
    )


def _echo(doc: Any) -> dict[str, Any]:
    """The caller's own fields of a refused candidate (text, image, id as given), for the agent's benefit."""
    if isinstance(doc, str):
        return {"text": doc}
    if isinstance(doc, RerankCandidate):
        return doc.model_dump(exclude_none=True)
    if isinstance(doc, dict):
        return {k: v for k, v in doc.items() if k in ("text", "image", "id") and isinstance(v, str)}
    return {}
