"""``umr eval DATASET_DIR``: Recall@k / nDCG@k / MRR on a BEIR / ViDoRe style folder, optionally reranked."""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
from pathlib import Path
from typing import Any

from .common import (
    JobFailed,
    UsageError,
    add_model_args,
    display,
    err,
    load_embedder,
    load_reranker,
    out,
    positive_int,
    show_progress,
)

MODES = ("dense", "lexical", "hybrid")


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
    default_modes = ",".join(MODES) if importlib.util.find_spec("tantivy") is not None else "dense"
    p.add_argument("--modes", default=default_modes,
                   help=f"retrieval modes scored side by side on the same qrels (default {default_modes}); the "
                        "first one is the one --rerank reranks")
    p.add_argument("--fusion", choices=("rrf", "weighted"), default="rrf", help="hybrid fusion (default rrf)")
    p.add_argument("--depth", type=positive_int, default=None,
                   help="hybrid: candidates from each side (default max(k, 10))")
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
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if not modes or any(m not in MODES for m in modes):
        raise UsageError(f"--modes takes {', '.join(MODES)}, comma-separated; got {args.modes!r}")
    if any(m != "dense" for m in modes) and importlib.util.find_spec("tantivy") is None:
        raise JobFailed("lexical and hybrid evaluation need tantivy: pip install 'umr[lexical]' (or --modes dense)")
    dataset = load_dataset(args.dataset, args.split)
    embedder = load_embedder(args)
    reranker = load_reranker(args.rerank, args) if args.rerank else None
    say = (lambda msg: err(f"umr: {msg}")) if show_progress(args) else None
    result = evaluate(
        embedder, dataset, reranker=reranker, ks=ks, rerank_depth=args.rerank_depth,
        instruction=args.instruction, on_progress=say, modes=modes, fusion=args.fusion, fusion_depth=args.depth,
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
    if "fusion" in result:
        f = result["fusion"]
        out(f"hybrid: {f['method']} fusion over {f['depth']} candidates a side")
    out("| stage | " + " | ".join(names) + " |")
    out("|---" * (len(names) + 1) + "|")
    for mode, metrics in result["modes"].items():
        out(f"| {mode} | " + " | ".join(f"{metrics[n]:.4f}" for n in names) + " |")
    if "reranked" in result:
        out(f"| {result['mode']} + rerank | " + " | ".join(f"{result['reranked'][n]:.4f}" for n in names) + " |")
    return 0
