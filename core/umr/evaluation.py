"""Retrieval evaluation on local BEIR / ViDoRe style datasets, with and without reranking.

Layout of a dataset folder (the BEIR layout ViDoRe also uses)::

    corpus.jsonl        {"_id": "d1", "text": "...", "title": "...", "image": "pages/d1.png"}
    queries.jsonl       {"_id": "q1", "text": "...", "image": "optional/query.png"}
    qrels/test.tsv      query-id <TAB> corpus-id <TAB> score   (a header line is allowed)

Image columns (``image``, ``image_path``, ``page_image``, ``image_uri``) are file paths relative to the
dataset folder; absolute paths and ``file://`` URIs (percent-encoded, as ``Path.as_uri`` writes them) work
too. A row with both text and image is a fused input.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from umr.inputs import path_from_uri
from umr.ranking import rank_scores

logger = logging.getLogger(__name__)

IMAGE_KEYS = ("image", "image_path", "page_image", "image_uri")


@dataclass
class RetrievalDataset:
    """Queries, corpus and graded relevance judgements."""

    corpus_ids: list[str]
    corpus: list[Any]
    query_ids: list[str]
    queries: list[Any]
    qrels: dict[str, dict[str, float]] = field(default_factory=dict)


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    rows = []
    with path.open("r", encoding="utf-8") as fh:
        for n, line in enumerate(fh, start=1):
            line = line.strip()
            if not line:
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}: line {n} is not valid JSON ({exc.msg})") from None
            if not isinstance(row, dict):
                raise ValueError(f"{path}: line {n} must be a JSON object")
            rows.append(row)
    return rows


def _row_input(row: dict[str, Any], root: Path, where: str) -> Any:
    rid = row.get("_id", row.get("id"))
    if rid is None:
        raise ValueError(f"{where}: a row has no '_id'")
    text = row.get("text")
    title = row.get("title")
    if title and text:
        text = f"{title}\n{text}"
    elif title and not text:
        text = title
    image = None
    for key in IMAGE_KEYS:
        value = row.get(key)
        if isinstance(value, str) and value:
            p = path_from_uri(value)  # a plain path or a (percent-encoded) file:// URI
            path = p if p.is_absolute() else root / p
            if not path.is_file():
                raise ValueError(f"{where}: row {rid!r}: image file {str(path)!r} does not exist")
            image = path
            break
    if text is None and image is None:
        raise ValueError(f"{where}: row {rid!r} has neither 'text' nor an image column ({', '.join(IMAGE_KEYS)})")
    if image is None:
        return str(rid), str(text)
    return str(rid), ({"image": image} if not text else {"text": str(text), "image": image})


def load_dataset(root: str | os.PathLike, split: str = "test") -> RetrievalDataset:
    """Read ``corpus.jsonl``, ``queries.jsonl`` and ``qrels/<split>.tsv`` from ``root``."""
    base = Path(root)
    if not base.is_dir():
        raise FileNotFoundError(f"dataset folder {str(base)!r} does not exist")
    missing = [p for p in ("corpus.jsonl", "queries.jsonl") if not (base / p).is_file()]
    qrels_path = base / "qrels" / f"{split}.tsv"
    if not qrels_path.is_file():
        missing.append(f"qrels/{split}.tsv")
    if missing:
        raise FileNotFoundError(
            f"dataset folder {str(base)!r} lacks {', '.join(missing)} (expected the BEIR layout: corpus.jsonl, "
            "queries.jsonl, qrels/test.tsv)"
        )
    corpus_rows = [_row_input(r, base, "corpus.jsonl") for r in _read_jsonl(base / "corpus.jsonl")]
    query_rows = [_row_input(r, base, "queries.jsonl") for r in _read_jsonl(base / "queries.jsonl")]
    qrels = read_qrels(qrels_path)
    if not corpus_rows:
        raise ValueError(f"{base / 'corpus.jsonl'} is empty")
    query_ids = [q for q, _ in query_rows]
    keep = [i for i, q in enumerate(query_ids) if any(v > 0 for v in qrels.get(q, {}).values())]
    if not keep:
        raise ValueError(f"no query in {base / 'queries.jsonl'} has a positive judgement in {qrels_path}")
    return RetrievalDataset(
        corpus_ids=[c for c, _ in corpus_rows],
        corpus=[x for _, x in corpus_rows],
        query_ids=[query_ids[i] for i in keep],
        queries=[query_rows[i][1] for i in keep],
        qrels=qrels,
    )


def read_qrels(
    path: Path, query_ids: set[str] | None = None, corpus_ids: set[str] | None = None
) -> dict[str, dict[str, float]]:
    """``qrels/<split>.tsv`` (query-id, corpus-id, score; a header line is skipped) as ``{qid: {did: score}}``.

    With ``query_ids`` / ``corpus_ids`` given, a line naming an id outside them is an error (training);
    without them unknown ids are kept (evaluation ignores them).
    """
    qrels: dict[str, dict[str, float]] = {}
    with path.open("r", encoding="utf-8", newline="") as fh:
        for n, rec in enumerate(csv.reader(fh, delimiter="\t"), start=1):
            if not rec or (n == 1 and not _is_number(rec[-1])):
                continue  # blank line or header
            if len(rec) < 3:
                raise ValueError(f"{path}: line {n} needs query-id, corpus-id and score separated by tabs")
            qid, did, score = rec[0], rec[1], rec[-1]
            if not _is_number(score):
                raise ValueError(f"{path}: line {n}: score {score!r} is not a number")
            if query_ids is not None and qid not in query_ids:
                raise ValueError(
                    f"{path}: line {n}: query id {qid!r} is not in queries.jsonl; add the query or drop the line"
                )
            if corpus_ids is not None and did not in corpus_ids:
                raise ValueError(
                    f"{path}: line {n}: corpus id {did!r} is not in corpus.jsonl; add the document or drop the line"
                )
            qrels.setdefault(qid, {})[did] = float(score)
    return qrels


def _is_number(s: str) -> bool:
    try:
        return math.isfinite(float(s))
    except ValueError:
        return False


def _metrics(ranked: Sequence[Sequence[str]], relevant: Sequence[dict[str, float]], ks: Sequence[int]) -> dict[str, float]:
    from umr.metrics import mrr, ndcg_at_k, recall_at_k

    out: dict[str, float] = {}
    for k in ks:
        out[f"recall@{k}"] = float(recall_at_k(ranked, relevant, k))
        out[f"ndcg@{k}"] = float(ndcg_at_k(ranked, relevant, k))
    out["mrr"] = float(mrr(ranked, relevant))
    return out


def evaluate(
    embedder: Any,
    dataset: RetrievalDataset | str | os.PathLike,
    *,
    reranker: Any | None = None,
    ks: Sequence[int] = (1, 5, 10),
    rerank_depth: int = 20,
    instruction: str | None = None,
    split: str = "test",
    on_progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Exact (brute-force) retrieval over the corpus, scored with Recall@k, nDCG@k and MRR.

    With a ``reranker`` (anything with ``score(query, candidates) -> list[float]``) the top
    ``rerank_depth`` candidates of each query are re-scored, ranked by :func:`umr.ranking.rank_scores`,
    and the metrics are reported a second time under ``"reranked"``.
    """
    ds = dataset if isinstance(dataset, RetrievalDataset) else load_dataset(dataset, split)
    if on_progress:
        on_progress(f"embedding {len(ds.corpus)} corpus items")
    doc_vecs = np.asarray(embedder.embed_documents(ds.corpus), dtype=np.float32)
    if on_progress:
        on_progress(f"embedding {len(ds.queries)} queries")
    q_vecs = np.asarray(embedder.embed_queries(ds.queries, instruction=instruction), dtype=np.float32)
    scores = q_vecs @ doc_vecs.T
    order = np.argsort(-scores, axis=1, kind="stable")
    depth = max(max(ks), rerank_depth)
    ranked = [[ds.corpus_ids[j] for j in row[:depth]] for row in order]
    relevant = [ds.qrels.get(q, {}) for q in ds.query_ids]
    result: dict[str, Any] = {
        "queries": len(ds.queries),
        "corpus": len(ds.corpus),
        "retrieval": _metrics(ranked, relevant, ks),
    }
    if reranker is not None:
        reranked: list[list[str]] = []
        for qi, row in enumerate(order):
            top = [int(j) for j in row[:rerank_depth]]
            if on_progress and qi % 10 == 0:
                on_progress(f"reranking query {qi + 1}/{len(order)}")
            scores = reranker.score(ds.queries[qi], [ds.corpus[j] for j in top])
            new = [ds.corpus_ids[top[i]] for i, _ in rank_scores(scores)]
            reranked.append(new + ranked[qi][len(new):])
        result["reranked"] = _metrics(reranked, relevant, ks)
        result["rerank_depth"] = rerank_depth
    return result
