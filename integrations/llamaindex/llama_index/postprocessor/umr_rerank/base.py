"""``UMRRerank``: a LlamaIndex node postprocessor backed by ``umr.Reranker`` (text and image nodes)."""

from __future__ import annotations

import logging
import os
from typing import Any

from llama_index.core.bridge.pydantic import Field, PrivateAttr
from llama_index.core.callbacks import CallbackManager, CBEventType, EventPayload
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.events.rerank import ReRankEndEvent, ReRankStartEvent
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.schema import NodeWithScore, QueryBundle
from llama_index.embeddings.umr.convert import image_from_location, node_input

from umr.confine import PathPolicy
from umr.errors import reject_unknown
from umr.inputs import MultimodalInput
from umr.protocols import check_reranker
from umr.ranking import rerank_order
from umr.recipes import DEFAULT_RERANKER

logger = logging.getLogger(__name__)
dispatcher = get_dispatcher(__name__)

_LOAD_OPTIONS = (
    "device", "dtype", "recipe", "min_pixels", "max_pixels", "attn_implementation", "base_model",
    "trust_remote_code",
)


class UMRRerank(BaseNodePostprocessor):
    """Rerank text and image nodes with a UMR multimodal reranker; keep the best ``top_n``.

    An ``ImageNode`` is judged on its image: base64 ``image``, ``image_path``, or ``image_url`` when it is
    a ``file://`` URI, a ``data:`` URI or a local path (remote URLs raise an error naming the node). Any
    other node is judged on its text. The new score replaces ``NodeWithScore.score``; the first-stage
    score is kept in ``node.metadata[score_key]`` (``"retrieval_score"``, hidden from the LLM). Nodes that
    come twice (a multimodal index returns a page from its text and its image store) are scored once.

    >>> from llama_index.postprocessor.umr_rerank import UMRRerank
    >>> rerank = UMRRerank(model="Qwen/Qwen2-VL-2B-Instruct", top_n=3)            # doctest: +SKIP
    >>> rerank = UMRRerank(reranker=umr.Reranker.from_pretrained(...), top_n=3)  # doctest: +SKIP
    >>> engine = index.as_query_engine(similarity_top_k=20, node_postprocessors=[rerank])  # doctest: +SKIP
    """

    model: str = Field(default=DEFAULT_RERANKER, description="Hub id or local directory of the reranker.")
    top_n: int | None = Field(default=5, ge=1, description="Nodes to keep (None: keep all, reordered).")
    include_image_text: bool = Field(
        default=False,
        description="Judge image nodes on image + node text (default: image only; a page image shows its text).",
    )
    allowed_roots: list[str] | None = Field(
        default=None,
        description=(
            "Folders whose image files may be read for image nodes (node paths are untrusted). None: the "
            "page-image folders of the ChromaStores opened in this process. Elsewhere (symlinks resolved "
            "first), devices, FIFOs and /proc raise umr.confine.PathNotAllowedError."
        ),
    )
    score_key: str = Field(
        default="retrieval_score", description="Metadata key that keeps the first-stage score."
    )
    instruction: str | None = Field(
        default=None, description="Reranking instruction (None: the reranker's own or the recipe default)."
    )
    fuse_weight: float | None = Field(
        default=None, ge=0,
        description=(
            "Rank by first-stage score + fuse_weight * rerank score (umr.fuse; U-MARVEL uses 0.1) instead of "
            "the rerank score alone. The fused value becomes the node score; the rerank score is kept in "
            "metadata['rerank_score']."
        ),
    )
    batch_size: int | None = Field(default=None, gt=0, description="Most pairs per forward pass (reranker default).")
    max_batch_tokens: int | None = Field(
        default=None, gt=0, description="Padded-token budget of one forward pass (reranker default)."
    )
    device: str | None = Field(default=None, description="Device when loading from model (auto if None).")
    dtype: str | None = Field(default=None, description="dtype when loading (bf16 on CUDA, float32 on CPU).")
    recipe: str | None = Field(default=None, description="Rerank recipe for a local model without umr.json.")
    min_pixels: int | None = Field(default=None, description="Lower pixel budget per image (recipe default).")
    max_pixels: int | None = Field(default=None, description="Upper pixel budget per image (recipe default).")
    base_model: str | None = Field(default=None, description="Base model of a LoRA-adapter reranker (local copy).")
    attn_implementation: str | None = Field(default=None, description="Attention implementation (auto).")
    trust_remote_code: bool = Field(default=False, description="Allow models that ship their own code.")

    _reranker: Any = PrivateAttr()

    def __init__(
        self,
        model: str | None = None,
        *,
        reranker: Any | None = None,
        model_name: str | None = None,
        callback_manager: CallbackManager | None = None,
        **kwargs: Any,
    ) -> None:
        if model_name is not None:  # the spelling of UMREmbedding, accepted here too
            if model is not None and model != model_name:
                raise ValueError(f"model={model!r} and model_name={model_name!r} disagree; pass one")
            model = model_name
        reject_unknown("UMRRerank", kwargs, [*type(self).model_fields, "model_name", "reranker"])
        roots = kwargs.get("allowed_roots")
        if isinstance(roots, (str, os.PathLike)):
            roots = [roots]
        if roots is not None:
            kwargs["allowed_roots"] = [os.fspath(r) for r in roots]
        for key in ("device", "dtype"):  # torch.device / torch.dtype are welcome; stored as text
            if kwargs.get(key) is not None and not isinstance(kwargs[key], str):
                kwargs[key] = str(kwargs[key])
        if reranker is not None:
            check_reranker(reranker, "UMRRerank(reranker=...)")
            ignored = sorted(k for k in _LOAD_OPTIONS if kwargs.get(k) not in (None, False))
            if ignored:
                raise ValueError(
                    f"{', '.join(ignored)} only apply when UMRRerank loads the model from model; set "
                    "them on the injected umr.Reranker instead"
                )
            model_id = str(getattr(reranker, "model_id", "umr-reranker"))
            if model is not None and model != model_id:
                raise ValueError(f"model={model!r} does not match the injected reranker's model {model_id!r}")
            model = model_id
        if callback_manager is not None:
            kwargs["callback_manager"] = callback_manager
        super().__init__(model=model or DEFAULT_RERANKER, **kwargs)
        if reranker is None:
            import umr

            options = {k: getattr(self, k) for k in _LOAD_OPTIONS if getattr(self, k) not in (None, False)}
            reranker = umr.Reranker.from_pretrained(self.model, **options)
        self._reranker = reranker

    @classmethod
    def class_name(cls) -> str:
        return "UMRRerank"

    @property
    def reranker(self) -> Any:
        """The wrapped ``umr.Reranker``."""
        return self._reranker

    @staticmethod
    def query_input(query_bundle: QueryBundle) -> MultimodalInput:
        """The UMR query a ``QueryBundle`` stands for: its text, plus its ``image_path`` if any."""
        text = query_bundle.query_str if query_bundle.query_str.strip() else None
        image = image_from_location(query_bundle.image_path, "query image_path") if query_bundle.image_path else None
        if text is None and image is None:
            raise ValueError("UMRRerank got an empty query: give the QueryBundle a query_str or an image_path")
        return MultimodalInput(text=text, image=image)

    def _postprocess_nodes(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None
    ) -> list[NodeWithScore]:
        if query_bundle is None:
            raise ValueError(
                "UMRRerank needs the query: call postprocess_nodes(nodes, query_str=...) or "
                "postprocess_nodes(nodes, query_bundle=...)"
            )
        if not nodes:
            return []
        # the same node may arrive from two stores: score it once, keep its best first-stage score
        unique: dict[str, NodeWithScore] = {}
        for item in nodes:
            seen = unique.get(item.node.node_id)
            if seen is None or (item.score is not None and (seen.score is None or item.score > seen.score)):
                unique[item.node.node_id] = item
        candidates = list(unique.values())
        top_n = len(candidates) if self.top_n is None else min(self.top_n, len(candidates))
        query = self.query_input(query_bundle)

        dispatcher.event(
            ReRankStartEvent(query=query_bundle, nodes=nodes, top_n=top_n, model_name=self.model)
        )
        with self.callback_manager.event(
            CBEventType.RERANKING,
            payload={
                EventPayload.NODES: nodes,
                EventPayload.MODEL_NAME: self.model,
                EventPayload.QUERY_STR: query_bundle.query_str,
                EventPayload.TOP_K: top_n,
            },
        ) as event:
            policy = PathPolicy(self.allowed_roots)
            inputs = [node_input(c.node, self.include_image_text, policy) for c in candidates]
            out = self._rank(query, candidates, inputs, top_n)
            event.on_end(payload={EventPayload.NODES: out})
        dispatcher.event(ReRankEndEvent(nodes=out))
        return out

    def _rank(
        self, query: MultimodalInput, candidates: list[NodeWithScore], inputs: list[MultimodalInput], top_n: int
    ) -> list[NodeWithScore]:
        options: dict[str, Any] = {}
        if self.batch_size is not None:
            options["batch_size"] = self.batch_size
        if self.max_batch_tokens is not None:
            options["max_batch_tokens"] = self.max_batch_tokens
        if self.fuse_weight is None:
            ranked = self._reranker.rerank(query, inputs, top_n=top_n, instruction=self.instruction, **options)
            return [self._rescored(candidates[int(i)], float(score)) for i, score in ranked]
        missing = [c.node.node_id for c in candidates if c.score is None]
        if missing:
            raise ValueError(
                f"fuse_weight needs a first-stage score on every node; node(s) {missing[:3]} have none. "
                "Unset fuse_weight or score the nodes first."
            )
        scores = self._reranker.score(query, inputs, self.instruction, **options)
        first = [float(c.score) for c in candidates if c.score is not None]
        order = rerank_order(first, scores, fuse_weight=self.fuse_weight, top_n=top_n)
        return [self._rescored(candidates[i], fused, rerank_score=scores[i]) for i, fused in order]

    def _rescored(self, item: NodeWithScore, score: float, rerank_score: float | None = None) -> NodeWithScore:
        node = item.node
        metadata = dict(node.metadata)
        added = [self.score_key]
        if item.score is not None and self.score_key not in metadata:
            metadata[self.score_key] = float(item.score)
        if rerank_score is not None:
            metadata["rerank_score"] = float(rerank_score)
            added.append("rerank_score")
        update: dict[str, Any] = {"metadata": metadata}
        for field in ("excluded_llm_metadata_keys", "excluded_embed_metadata_keys"):
            keys = list(getattr(node, field))
            keys += [k for k in added if k not in keys]
            update[field] = keys
        return NodeWithScore(node=node.model_copy(update=update), score=score)
