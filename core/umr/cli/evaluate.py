"""``umr eval DATASET_DIR``: Recall@k / nDCG@k / MRR on a BEIR / ViDoRe style folder, optionally reranked."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from .common import UsageError, add_model_args, display, err, load_embedder, load_reranker, out, show_progress


def register(sub: Any) -> None:
    p = sub.add_parser("eval", help="Recall@k / nDCG@k / MRR on a BEIR / ViDoRe style folder")
    p.add_argument("dataset", metavar="DATASET_DIR")
    p.add_argument("--split", default="test", help="qrels split (default test)")
    p.add_argument("-k", default="1,5,10", help="cut-offs, comma-separated (default 1,5,10)")
    p.add_argument("--instruction", default=None, help="query-side task instruction")
    p.add_argument("--rerank", default=None, metavar="MODEL", help="also evaluate with this reranker")
    p.add_argument("--rerank-depth", type=int, default=20, help="candidates to rerank (default 20)")
    p.add_argument("--out", default=None, help="write the JSON result to this file")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    add_model_args(p)
    p.set_defaults(func=run)


def parse_ks(text: str) -> list[int]:
    """``"1,5,10"`` -> ``[1, 5, 10]`` (sorted, unique, positive)."""
    try:
        ks = sorted({int(k) for k in text.split(",")})
    except ValueError:
        raise UsageError(f"-k takes comma-separated integers like 1,5,10, got {text!r}") from None
    if not ks or ks[0] < 1:
        raise UsageError("-k values must be positive")
    return ks


def run(args: argparse.Namespace) -> int:
    from umr.evaluation import evaluate, load_dataset

    if not os.path.isdir(args.dataset):
        raise UsageError(f"no such dataset folder: {display(args.dataset)}")
    ks = parse_ks(args.k)
    dataset = load_dataset(args.dataset, args.split)
    embedder = load_embedder(args)
    reranker = load_reranker(args.rerank, args) if args.rerank else None
    say = (lambda msg: err(f"umr: {msg}")) if show_progress(args) else None
    result = evaluate(
        embedder, dataset, reranker=reranker, ks=ks, rerank_depth=args.rerank_depth,
        instruction=args.instruction, on_progress=say,
    )
    result["model"] = embedder.model_id
    result["dataset"] = os.fspath(args.dataset)
    if args.rerank:
        result["reranker"] = args.rerank
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))
    if args.json:
        out(json.dumps(result, indent=2))
        return 0
    names = list(result["retrieval"])
    out(f"{result['queries']} queries, {result['corpus']} corpus items, model {embedder.model_id}")
    out("| stage | " + " | ".join(names) + " |")
    out("|---" * (len(names) + 1) + "|")
    for stage in ("retrieval", "reranked"):
        if stage in result:
            out(f"| {stage} | " + " | ".join(f"{result[stage][n]:.4f}" for n in names) + " |")
    return 0
