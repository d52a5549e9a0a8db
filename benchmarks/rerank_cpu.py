"""CPU throughput of ``umr.Reranker`` on a tiny model: batched vs one pair per forward (issue 4).

For each candidate kind (short text passages, 512x512 images, 1240x1754 pages at A4/150 dpi, fused
text + image) and each way of calling the reranker:

* ``batched``    -- one ``Reranker.score(query, candidates)`` call, as shipped (pairs sorted by token
  cost, packed under the token budget, left-padded, order restored);
* ``one_by_one`` -- ``Reranker.score(query, [candidate])`` in a Python loop: one pair per forward.

it reports pairs/s (median of ``--repeats`` timed passes after one warm-up pass), the mean token cost
of a pair, and the largest difference between the two modes' scores (they must agree to ~1e-6 in fp32).

The tiny model (``umr.testing.build_tiny_model``: 2 layers, hidden 64) makes this a measure of the
pipeline around the model (tokenisation, image decoding and resizing, collation, batching, padding) and
of per-forward overhead, not of a real model's FLOPs.

    python benchmarks/rerank_cpu.py                       # table + benchmarks/results/rerank_cpu.json
    python benchmarks/rerank_cpu.py --recipe qwen3-vl-reranker --n-text 16 --n-page 2 --repeats 2
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
RESULTS = BENCH_DIR / "results" / "rerank_cpu.json"
sys.path.insert(0, str(BENCH_DIR.parent / "core"))
for _key, _value in (("HF_HUB_OFFLINE", "1"), ("TRANSFORMERS_OFFLINE", "1"), ("TOKENIZERS_PARALLELISM", "false")):
    os.environ.setdefault(_key, _value)

KINDS = ("text", "image", "page", "fused")
MODES = ("batched", "one_by_one")
_WORDS = [
    "revenue", "grew", "operating", "costs", "fell", "figure", "shows", "the", "pipeline", "installation",
    "manual", "connect", "power", "cable", "press", "reset", "button", "wait", "green", "light", "vector",
    "database", "stores", "page", "embeddings", "quick", "brown", "fox",
]


def _text(rng: Any, n_words: int) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(n_words)).capitalize() + "."


def _candidates(kind: str, n: int, seed: int) -> list[Any]:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)

    def image(w: int, h: int) -> Image.Image:
        # smooth noise compresses like a real picture and costs a realistic resize
        small = rng.integers(0, 256, size=(max(1, h // 16), max(1, w // 16), 3), dtype=np.uint8)
        return Image.fromarray(small, "RGB").resize((w, h), Image.Resampling.BILINEAR)

    if kind == "text":
        return [_text(rng, int(rng.integers(20, 120))) for _ in range(n)]
    if kind == "image":
        return [image(512, 512) for _ in range(n)]
    if kind == "page":
        return [image(1240, 1754) for _ in range(n)]
    return [{"text": _text(rng, int(rng.integers(5, 30))), "image": image(512, 384)} for _ in range(n)]


def _time(fn: Any, repeats: int) -> list[float]:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", default="qwen-vl-yesno", help="reranking recipe of the tiny model")
    parser.add_argument("--n-text", type=int, default=32)
    parser.add_argument("--n-image", type=int, default=8)
    parser.add_argument("--n-page", type=int, default=4)
    parser.add_argument("--n-fused", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-batch-tokens", type=int, default=16384)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    import torch

    import umr
    from umr.testing import build_tiny_model

    if args.threads:
        torch.set_num_threads(args.threads)
    counts = {"text": args.n_text, "image": args.n_image, "page": args.n_page, "fused": args.n_fused}
    query = "What does the figure on the installation page show?"
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        path = build_tiny_model(Path(tmp) / "tiny", recipe=args.recipe, seed=0)
        rr = umr.Reranker.from_pretrained(
            path, device="cpu", max_batch_tokens=args.max_batch_tokens, batch_size=args.batch_size
        )
        for k, kind in enumerate(KINDS):
            n = counts[kind]
            if n <= 0:
                continue
            cands = _candidates(kind, n, seed=k)
            q = umr.MultimodalInput.coerce(query)
            pairs = rr._prepare(q, [umr.MultimodalInput.coerce(c) for c in cands], rr.instruction_for(q))
            mean_tokens = statistics.fmean(p.num_tokens for p in pairs)
            scores: dict[str, list[float]] = {}

            def batched(cands: list[Any] = cands, scores: dict[str, list[float]] = scores) -> None:
                scores["batched"] = rr.score(query, cands)

            def one_by_one(cands: list[Any] = cands, scores: dict[str, list[float]] = scores) -> None:
                scores["one_by_one"] = [rr.score(query, [c])[0] for c in cands]

            for mode, fn in (("batched", batched), ("one_by_one", one_by_one)):
                times = _time(fn, args.repeats)
                median = statistics.median(times)
                rows.append(
                    {
                        "kind": kind, "mode": mode, "pairs": n, "mean_tokens_per_pair": round(mean_tokens, 1),
                        "seconds_median": median, "seconds_all": times, "pairs_per_s": n / median,
                    }
                )
            diff = max(abs(a - b) for a, b in zip(scores["batched"], scores["one_by_one"]))
            for row in rows[-2:]:
                row["max_abs_score_diff"] = diff

    speedups = {}
    for kind in KINDS:
        by_mode = {r["mode"]: r for r in rows if r["kind"] == kind}
        if len(by_mode) == 2:
            speedups[kind] = by_mode["batched"]["pairs_per_s"] / by_mode["one_by_one"]["pairs_per_s"]

    header = f"{'kind':<6} {'mode':<11} {'pairs':>5} {'tok/pair':>8} {'pairs/s':>9} {'speed-up':>8} {'max |diff|':>10}"
    lines = [header, "-" * len(header)]
    for r in rows:
        up = f"{speedups[r['kind']]:.2f}x" if r["mode"] == "batched" and r["kind"] in speedups else ""
        lines.append(
            f"{r['kind']:<6} {r['mode']:<11} {r['pairs']:>5} {r['mean_tokens_per_pair']:>8.0f} "
            f"{r['pairs_per_s']:>9.2f} {up:>8} {r['max_abs_score_diff']:>10.1e}"
        )
    sys.stdout.write("\n".join(lines) + "\n")

    result = {
        "benchmark": "rerank_cpu",
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "load_average_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        },
        "settings": {
            "recipe": args.recipe, "model": "umr.testing.build_tiny_model (2 layers, hidden 64)",
            "query": query, "counts": counts, "repeats": args.repeats,
            "max_batch_tokens": args.max_batch_tokens, "batch_size": args.batch_size,
            "max_pixels": rr.max_pixels,
        },
        "results": rows,
        "summary": {"batched_speedup": speedups},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    sys.stdout.write(f"wrote {args.out}\n")
    return result


if __name__ == "__main__":
    main()
