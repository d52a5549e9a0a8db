"""CPU throughput and peak memory of ``umr.Embedder`` on the tiny model: batched vs one-by-one (issue 3).

What it measures, for each input kind (short/long texts, 512x512 images, 1240x1754 pages at A4/150 dpi,
fused text + image), and for two ways of calling the embedder:

* ``batched``    -- one ``Embedder.embed(list)`` call, as shipped (token-budget batches, order restored);
* ``one_by_one`` -- ``Embedder.embed(item)`` in a Python loop, one forward per input.

It reports items/s (median of ``--repeats`` timed passes after a warm-up) and peak RSS. Each
(kind, mode) phase runs in its own Python process by default, so its peak RSS (``ru_maxrss``) belongs to
that phase alone; ``--no-isolate`` runs everything in this process (faster; RSS is then cumulative).

The tiny model (``umr.testing.build_tiny_model``: 2 layers, hidden 64) makes the numbers a measure of
the pipeline around the model -- tokenisation, image decoding / resizing, collation, batching -- not of
the model's FLOPs. For model-bound throughput on a GPU see ``gpu_throughput.py``.

    python benchmarks/embed_cpu.py                      # table + benchmarks/results/embed_cpu.json
    python benchmarks/embed_cpu.py --n-text 8 --n-image 2 --n-page 1 --n-fused 2 --no-isolate
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

import _common
from _common import Column

NAME = "embed_cpu"
KINDS = ("text", "image", "page", "fused")
MODES = ("batched", "one_by_one")
IMAGE_SIZE = (512, 512)
PAGE_SIZE = (1240, 1754)  # A4 at 150 dpi
_WORDS = [
    "revenue", "grew", "twelve", "percent", "quarter", "operating", "costs", "fell", "figure", "shows",
    "pipeline", "installation", "manual", "connect", "power", "cable", "press", "reset", "button", "wait",
    "green", "light", "invoice", "total", "amount", "retrieval", "page", "table", "chart", "vector",
    "database", "query", "document", "image", "caption", "summary", "section", "appendix", "method",
    "result",
]


# -- inputs ----------------------------------------------------------------------------------------------
def make_texts(n: int, seed: int = 0) -> list[str]:
    """``n`` sentences of 6 to 120 words (queries and passages of mixed length)."""
    import random

    rng = random.Random(seed)
    lengths = [6, 12, 24, 48, 120]
    return [" ".join(rng.choice(_WORDS) for _ in range(lengths[i % len(lengths)])) for i in range(n)]


def make_inputs(kind: str, n: int, seed: int = 0) -> list[Any]:
    """``n`` inputs of one kind, deterministic for ``seed``."""
    if kind == "text":
        return make_texts(n, seed)
    if kind == "image":
        return [_common.make_photo(IMAGE_SIZE, seed + i) for i in range(n)]
    if kind == "page":
        return [_common.make_page(PAGE_SIZE, seed + i) for i in range(n)]
    if kind == "fused":
        texts = make_texts(n, seed)
        return [{"text": t, "image": _common.make_photo(IMAGE_SIZE, seed + i)} for i, t in enumerate(texts)]
    raise ValueError(f"unknown input kind {kind!r}; valid: {', '.join(KINDS)}")


def side_for(kind: str) -> str:
    """Texts are embedded as queries, everything else as corpus documents."""
    return "query" if kind == "text" else "document"


# -- one phase -------------------------------------------------------------------------------------------
def run_phase(
    model_dir: str,
    kind: str,
    mode: str,
    n: int,
    warmup: int = 1,
    repeats: int = 3,
    threads: int | None = None,
    batch_size: int | None = None,
    max_batch_tokens: int | None = None,
) -> dict[str, Any]:
    """Load the embedder, embed ``n`` inputs of ``kind`` ``repeats`` times in ``mode``; JSON-able result."""
    _common.offline_env()
    _common.ensure_umr_importable()
    import numpy as np
    import torch

    import umr

    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; valid: {', '.join(MODES)}")
    if threads:
        torch.set_num_threads(int(threads))
    rss_start = _common.peak_rss_mb()
    kwargs: dict[str, Any] = {"device": "cpu"}
    if batch_size:
        kwargs["batch_size"] = batch_size
    if max_batch_tokens:
        kwargs["max_batch_tokens"] = max_batch_tokens
    emb = umr.Embedder.from_pretrained(model_dir, **kwargs)
    rss_loaded = _common.peak_rss_mb()
    items = make_inputs(kind, n)
    side = side_for(kind)
    tokens = [
        emb.processor.prepare(i, umr.MultimodalInput.coerce(it), emb.build_prompt(it, side)).num_tokens
        for i, it in enumerate(items)
    ]
    outputs: list[np.ndarray] = []

    def batched(batch: list[Any]) -> None:
        outputs.append(emb.embed(batch, side=side))

    def one_by_one(batch: list[Any]) -> None:
        outputs.append(np.stack([emb.embed(it, side=side) for it in batch]))

    call = batched if mode == "batched" else one_by_one
    for _ in range(max(0, warmup)):  # warm up on a few items: first-call allocations, lazy imports
        call(items[: min(2, n)])
    outputs.clear()
    timing = _common.time_it(lambda: call(items), warmup=0, repeats=repeats)
    last = outputs[-1]
    if last.shape != (n, emb.dim) or not np.isfinite(last).all():
        raise RuntimeError(f"{kind}/{mode}: bad output shape {last.shape} or non-finite values")
    seconds = timing.median
    return {
        "kind": kind,
        "mode": mode,
        "side": side,
        "n": n,
        "items_per_s": n / seconds,
        "ms_per_item": 1000.0 * seconds / n,
        "tokens_per_item": float(np.mean(tokens)),
        "tokens_per_s": float(np.sum(tokens)) / seconds,
        **timing.as_dict(),
        "rss_start_mb": rss_start,
        "rss_after_load_mb": rss_loaded,
        "peak_rss_mb": _common.peak_rss_mb(),
        "torch_threads": torch.get_num_threads(),
    }


# -- driver ----------------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--n-text", type=int, default=64, help="texts per pass (default 64)")
    p.add_argument("--n-image", type=int, default=8, help="512x512 images per pass (default 8)")
    p.add_argument("--n-page", type=int, default=4, help="1240x1754 pages per pass (default 4)")
    p.add_argument("--n-fused", type=int, default=8, help="text+image inputs per pass (default 8)")
    p.add_argument("--kinds", default=",".join(KINDS), help=f"comma list out of {','.join(KINDS)}")
    p.add_argument("--modes", default=",".join(MODES), help=f"comma list out of {','.join(MODES)}")
    p.add_argument("--repeats", type=int, default=3, help="timed passes per phase; the median is reported")
    p.add_argument("--warmup", type=int, default=1, help="untimed warm-up calls on 2 items per phase")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--batch-size", type=int, default=None, help="Embedder batch_size (default as shipped)")
    p.add_argument("--max-batch-tokens", type=int, default=None, help="Embedder max_batch_tokens (default as shipped)")
    p.add_argument("--no-isolate", action="store_true", help="run phases in this process (RSS is cumulative)")
    p.add_argument("--model-dir", default=None, help="use this checkpoint instead of building the tiny model")
    p.add_argument("--out", default=None, help="JSON path (default benchmarks/results/embed_cpu.json)")
    args = p.parse_args(argv)
    args.kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    args.modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    for k in args.kinds:
        if k not in KINDS:
            p.error(f"unknown kind {k!r}; valid: {', '.join(KINDS)}")
    for m in args.modes:
        if m not in MODES:
            p.error(f"unknown mode {m!r}; valid: {', '.join(MODES)}")
    for name in ("n_text", "n_image", "n_page", "n_fused", "repeats"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    return args


COLUMNS = [
    Column("kind", "kind"),
    Column("mode", "mode"),
    Column("n", "n"),
    Column("tokens_per_item", "tok/item", "{:.0f}"),
    Column("items_per_s", "items/s", "{:.1f}"),
    Column("ms_per_item", "ms/item", "{:.1f}"),
    Column("tokens_per_s", "tok/s", "{:.0f}"),
    Column("rss_after_load_mb", "RSS load MiB", "{:.0f}"),
    Column("peak_rss_mb", "peak RSS MiB", "{:.0f}"),
]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark; print the table, write the JSON, return the payload."""
    args = parse_args(argv)
    _common.offline_env()
    _common.ensure_umr_importable()
    counts = {"text": args.n_text, "image": args.n_image, "page": args.n_page, "fused": args.n_fused}
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="umr-bench-") as tmp:
        model_dir = args.model_dir
        if model_dir is None:
            from umr.testing import build_tiny_model

            model_dir = str(build_tiny_model(Path(tmp) / "tiny-gme", recipe="gme", seed=0))
        for kind in args.kinds:
            for mode in args.modes:
                kwargs = {
                    "model_dir": model_dir, "kind": kind, "mode": mode, "n": counts[kind],
                    "warmup": args.warmup, "repeats": args.repeats, "threads": args.threads,
                    "batch_size": args.batch_size, "max_batch_tokens": args.max_batch_tokens,
                }
                if args.no_isolate:
                    row = run_phase(**kwargs)
                else:
                    row = _common.run_isolated(__file__, "run_phase", kwargs)
                row["rss_isolated"] = not args.no_isolate
                results.append(row)
                print(f"  {kind:<6} {mode:<10} {row['items_per_s']:9.1f} items/s", file=sys.stderr, flush=True)

    speedup = {}
    for kind in args.kinds:
        by_mode = {r["mode"]: r for r in results if r["kind"] == kind}
        if "batched" in by_mode and "one_by_one" in by_mode:
            speedup[kind] = by_mode["batched"]["items_per_s"] / by_mode["one_by_one"]["items_per_s"]
    settings = {
        "model": "umr.testing.build_tiny_model (gme recipe, 2 layers, hidden 64)" if args.model_dir is None
        else args.model_dir,
        "device": "cpu",
        "counts": {k: counts[k] for k in args.kinds},
        "modes": args.modes,
        "repeats": args.repeats,
        "warmup": args.warmup,
        "threads": args.threads,
        "batch_size": args.batch_size,
        "max_batch_tokens": args.max_batch_tokens,
        "isolated": not args.no_isolate,
        "image_size": IMAGE_SIZE,
        "page_size": PAGE_SIZE,
    }
    notes = [
        "items/s = n / median wall seconds of one pass over n inputs (PIL images in memory).",
        "peak RSS from getrusage ru_maxrss; per phase when isolated, else cumulative over the run.",
    ]
    payload = _common.result_payload(NAME, settings, results, summary={"batched_speedup": speedup}, notes=notes)
    path = _common.write_json(payload, args.out, NAME)
    _common.print_table(results, COLUMNS, title=f"umr.Embedder on CPU, tiny model ({'isolated' if not args.no_isolate else 'in-process'} phases)")
    if speedup:
        print("batched / one-by-one speed-up: " + ", ".join(f"{k} {v:.2f}x" for k, v in speedup.items()))
    print(f"wrote {path}")
    return payload


if __name__ == "__main__":
    main()
