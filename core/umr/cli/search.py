"""``umr search [QUERY] [--image PATH]``: search the index, optionally reranking the top candidates."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from .common import (
    WHERE_EXAMPLE,
    JobFailed,
    UsageError,
    add_lexical_dir_arg,
    add_model_args,
    add_server_args,
    add_store_args,
    check_db,
    display,
    display_source,
    err,
    image_path,
    load_embedder,
    load_reranker,
    open_readonly,
    open_store,
    out,
    parse_where,
    positive_int,
    recorded_model,
)

#: records the quick vector check samples before searching (a damaged index returns wrong pages)
QUICK_SAMPLE = 8


def register(sub: Any) -> None:
    p = sub.add_parser("search", help="search the index with text, an image, or both")
    p.add_argument("query", nargs="?", default="", help="query text")
    p.add_argument("--image", default=None, help="query image (with text: a fused query)")
    p.add_argument("-k", type=int, default=5, help="number of results (default 5)")
    p.add_argument("--where", default=None, help='metadata filter as JSON, e.g. \'{"kind": "pdf"}\'')
    p.add_argument("--instruction", default=None, help="query-side task instruction")
    p.add_argument("--rerank", default=None, metavar="MODEL", help="rerank with this MLLM reranker")
    p.add_argument("--rerank-depth", type=int, default=20, help="candidates to rerank (default 20)")
    p.add_argument("--mode", choices=("dense", "lexical", "hybrid"), default="dense",
                   help="dense: embeddings (default); lexical: BM25 over the page text (exact codes, names, "
                        "numbers; no model is loaded); hybrid: both, fused (--rerank then reranks the fused list)")
    p.add_argument("--fusion", choices=("rrf", "weighted"), default="rrf",
                   help="hybrid: reciprocal rank fusion (default) or weighted scaled scores")
    p.add_argument("--depth", type=positive_int, default=None,
                   help="hybrid: candidates from each side before fusion (default max(k, 10))")
    p.add_argument("--json", action="store_true", help="print results as JSON")
    add_store_args(p)
    add_lexical_dir_arg(p)
    add_model_args(p)
    add_server_args(p)
    p.set_defaults(func=run)


def query_input(args: argparse.Namespace) -> Any:
    """The query: text, ``{"image": path}``, or both fused."""
    text = args.query
    if args.image is None:
        if not text:
            raise UsageError("give a query text, --image PATH, or both")
        return text
    if not os.path.isfile(args.image):
        raise UsageError(f"query image not found: {display(args.image)}")
    return {"image": Path(args.image)} if not text else {"text": text, "image": Path(args.image)}


def snippet(text: str, width: int = 160) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def candidate(hit: Any) -> Any:
    """What the reranker sees of a hit: its page image (+ text) when the image file is here, else its text."""
    img = image_path(hit.image_uri)
    if img is not None:
        return {"image": img, "text": hit.document} if hit.document else {"image": img}
    return hit.document or " "


def check_lexical(args: argparse.Namespace, store: Any) -> None:
    """Lexical and hybrid modes need the lexical index; say so when it is missing or out of step."""
    if store.lexical is None:
        raise JobFailed(
            f"--mode {args.mode} needs the lexical index, which this store has none of: install tantivy "
            "(pip install 'umr[lexical]'); with --host give --lexical-dir DIR; then run "
            "`umr index --rebuild-lexical`"
        )
    lexical_n, chroma_n = store.lexical.lexical.count(), store.count()
    if lexical_n != chroma_n or store.lexical.lexical.needs_repair:
        err(f"umr search: warning: the lexical index holds {lexical_n} of {chroma_n} records; run "
            "`umr index --rebuild-lexical` (or any `umr index` run) to bring it in step")


def run(args: argparse.Namespace) -> int:
    if args.k < 1:
        raise UsageError("-k must be at least 1")
    query = query_input(args)
    where = parse_where(args.where)
    check_db(args, must_exist=True)
    recorded = None if args.model or args.server_model else recorded_model(args)
    if recorded is None and not args.host and not (args.model or args.server_model):
        raise JobFailed(
            f"collection {args.collection!r} does not exist in {display(args.db)}: run `umr index` first"
        )
    from umr.errors import QueryError
    from umr.store.faults import StoreError

    if args.mode == "lexical" and not args.rerank:  # BM25 only: no model to load
        store = open_readonly(args)
    else:
        store = open_store(args, load_embedder(args, recorded))
        health = store.check(sample=QUICK_SAMPLE)
        if not health.ok:  # a damaged vector index returns wrong pages: say so instead
            raise JobFailed(health.summary())
    if args.mode != "dense":
        check_lexical(args, store)
    depth = max(args.k, args.rerank_depth) if args.rerank else args.k
    try:
        hits = store.search(query, k=depth, where=where, instruction=args.instruction, mode=args.mode,
                            fusion=args.fusion, depth=args.depth)
    except (StoreError, QueryError):
        raise
    except ValueError as exc:
        if where is None:
            raise
        raise UsageError(
            f"--where {args.where}: Chroma refused this filter ({' '.join(str(exc).split())[:200]}); "
            f"e.g. {WHERE_EXAMPLE}"
        ) from None
    if not hits:
        raise JobFailed(f"no results: collection {args.collection!r} is empty or nothing matches the filter")
    rows = [
        {
            "id": h.id,
            "score": round(float(h.score), 6),
            "source": h.metadata.get("source", ""),
            "sources": h.sources,
            "page": h.metadata.get("page", 0),
            "kind": h.metadata.get("kind", ""),
            "image_uri": h.image_uri,
            "snippet": snippet(h.document),
            **({"dense_score": h.dense_score, "lexical_score": h.lexical_score} if args.mode == "hybrid" else {}),
        }
        for h in hits
    ]
    if args.rerank:
        from umr.ranking import rerank_order

        reranker = load_reranker(args.rerank, args)
        scores = reranker.score(query, [candidate(h) for h in hits])
        rows = [{**rows[i], "rerank_score": round(float(s), 6)} for i, s in rerank_order(None, scores)]
    rows = rows[: args.k]
    for rank, row in enumerate(rows, start=1):
        row["rank"] = rank
    if args.json:
        out(json.dumps(rows, indent=2, ensure_ascii=False))
        return 0
    for row in rows:
        score = f"{row['score']:.4f}" + (f"  rerank {row['rerank_score']:.4f}" if "rerank_score" in row else "")
        where_s = display_source(str(row["source"])) + (f"  p.{row['page']}" if row["page"] else "")
        out(f"{row['rank']:>3}. {score}  {where_s}")
        for other in row["sources"][1:]:  # byte-identical files at other paths
            out(f"     also {display_source(other)}")
        if row["snippet"]:
            out(f"     {row['snippet']}")
    return 0
