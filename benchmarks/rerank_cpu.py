"""CPU throughput of ``umr.Reranker`` on a tiny model: batched vs one pair per forward (issue 4).

For each candidate kind (short text passages, 512x512 photos, 1240x1754 pages at A4/150 dpi, fused
caption + photo) and each way of calling the reranker:

* ``batched``    -- one ``Reranker.score(query, candidates)`` call, as shipped (pairs sorted by token
  cost, packed under the token budget, left-padded, scores back in the caller's order);
* ``one_by_one`` -- ``Reranker.score(query, [candidate])`` in a Python loop: one pair per forward.

it reports pairs/s (median of ``--repeats`` timed passes after ``--warmup`` untimed ones), the mean token
cost of a pair (visual tokens included), and the largest difference between the two modes' scores (they
agree to ~1e-7 in fp32; a bigger number is a bug, not noise).

The tiny model (``umr.testing.build_tiny_model``: 2 layers, hidden 64) makes this a measure of the work
around the model (tokenisation, image decoding and resizing, collation, padding) and of per-forward
overhead, not of a real model's FLOPs; ``gpu_throughput.py`` measures the full-size model on a GPU.

    python benchmarks/rerank_cpu.py                        # table + benchmarks/results/rerank_cpu.json
    python benchmarks/rerank_cpu.py --recipe qwen3-vl-reranker --n-text 16 --n-page 2 --threads 1
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path
from typing import Any

import _common
from _common import Column

NAME = "rerank_cpu"
KINDS = ("text", "image", "page", "fused")
MODES = ("batched", "one_by_one")
PHOTO_SIZE = (512, 512)
PAGE_SIZE = (1240, 1754)  # A4 at 150 dpi
QUERY = "What does the figure on the installation page show?"
_WORDS = [
    "revenue", "grew", "operating", "costs", "fell", "figure", "shows", "the", "pipeline", "installation",
    "manual", "connect", "power", "cable", "press", "reset", "button", "wait", "green", "light", "vector",
    "database", "stores", "page", "embeddings", "quick", "brown", "fox",
]


def _text(rng: Any, n_words: int) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(n_words)).capitalize() + "."


def make_candidates(kind: str, n: int, seed: int) -> list[Any]:
    """``n`` synthetic candidates of one kind (deterministic for ``seed``)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    if kind == "text":
        return [_text(rng, int(rng.integers(20, 120))) for _ in range(n)]
    if kind == "image":
        return [_common.make_photo(PHOTO_SIZE, seed * 1000 + i) for i in range(n)]
    if kind == "page":
        return [_common.make_page(PAGE_SIZE, seed * 1000 + i) for i in range(n)]
    if kind == "fused":
        return [
            {"text": _text(rng, int(rng.integers(5, 30))), "image": _common.make_photo((512, 384), seed * 1000 + i)}
            for i in range(n)
        ]
    raise ValueError(f"unknown kind {kind!r}; valid: {', '.join(KINDS)}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipe", default="qwen-vl-yesno", help="reranking recipe of the tiny model")
    p.add_argument("--model-dir", default=None, help="an existing reranker checkpoint instead of a fresh tiny one")
    p.add_argument("--kinds", nargs="+", default=list(KINDS), choices=KINDS)
    p.add_argument("--n-text", type=int, default=32)
    p.add_argument("--n-image", type=int, default=8)
    p.add_argument("--n-page", type=int, default=4)
    p.add_argument("--n-fused", type=int, default=8)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--max-batch-tokens", type=int, default=16384)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    p.add_argument("--out", default=None, help=f"JSON path (default benchmarks/results/{NAME}.json)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark; print the table, write the JSON, return the payload."""
    args = parse_args(argv)
    _common.offline_env()
    _common.ensure_umr_importable()
    import torch

    import umr

    if args.threads:
        torch.set_num_threads(args.threads)
    counts = {"text": args.n_text, "image": args.n_image, "page": args.n_page, "fused": args.n_fused}
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="umr-bench-") as tmp:
        model_dir = args.model_dir
        if model_dir is None:
            from umr.testing import build_tiny_model

            model_dir = str(build_tiny_model(Path(tmp) / "tiny-rerank", recipe=args.recipe, seed=0))
        rr = umr.Reranker.from_pretrained(
            model_dir, device="cpu", max_batch_tokens=args.max_batch_tokens, batch_size=args.batch_size
        )
        query = umr.MultimodalInput.coerce(QUERY)
        for k, kind in enumerate(args.kinds):
            n = counts[kind]
            if n <= 0:
                continue
            cands = make_candidates(kind, n, seed=k)
            pairs = rr._prepare(query, [umr.MultimodalInput.coerce(c) for c in cands], rr.instruction_for(query))
            tokens = statistics.fmean(p.num_tokens for p in pairs)
            scores: dict[str, list[float]] = {}
            calls = {
                "batched": lambda c=cands, s=scores: s.__setitem__("batched", rr.score(QUERY, c)),
                "one_by_one": lambda c=cands, s=scores: s.__setitem__(
                    "one_by_one", [rr.score(QUERY, [x])[0] for x in c]
                ),
            }
            rows = []
            for mode in MODES:
                timing = _common.time_it(calls[mode], warmup=args.warmup, repeats=args.repeats)
                rows.append(
                    {
                        "kind": kind, "mode": mode, "n": n, "tokens_per_pair": tokens,
                        "pairs_per_s": n / timing.median, "ms_per_pair": 1000 * timing.median / n,
                        "tokens_per_s": n * tokens / timing.median, **timing.as_dict(),
                    }
                )
            diff = max(abs(a - b) for a, b in zip(scores["batched"], scores["one_by_one"]))
            for row in rows:
                row["max_abs_score_diff"] = diff
            results.extend(rows)

    speedup = {}
    for kind in args.kinds:
        by_mode = {r["mode"]: r for r in results if r["kind"] == kind}
        if len(by_mode) == 2:
            speedup[kind] = by_mode["batched"]["pairs_per_s"] / by_mode["one_by_one"]["pairs_per_s"]
            by_mode["batched"]["speedup"] = speedup[kind]
    _common.print_table(
        results,
        [
            Column("kind", "kind"), Column("mode", "mode"), Column("n", "pairs"),
            Column("tokens_per_pair", "tok/pair", "{:.0f}"), Column("pairs_per_s", "pairs/s", "{:.2f}"),
            Column("ms_per_pair", "ms/pair", "{:.1f}"), Column("speedup", "speed-up", "{:.2f}x"),
            Column("max_abs_score_diff", "max |diff|", "{:.1e}"),
        ],
        title=f"umr.Reranker on the tiny {args.recipe} model, CPU (threads={torch.get_num_threads()})",
    )
    settings = {
        "recipe": args.recipe, "model_dir": args.model_dir or "tiny (build_tiny_model, 2 layers, hidden 64)",
        "query": QUERY, "counts": counts, "photo_size": PHOTO_SIZE, "page_size": PAGE_SIZE,
        "warmup": args.warmup, "repeats": args.repeats, "max_batch_tokens": args.max_batch_tokens,
        "batch_size": args.batch_size, "threads": torch.get_num_threads(), "max_pixels": rr.max_pixels,
    }
    payload = _common.result_payload(NAME, settings, results, summary={"batched_speedup": speedup})
    path = _common.write_json(payload, args.out, name=NAME)
    print(f"wrote {path}")
    return payload


if __name__ == "__main__":
    main()
