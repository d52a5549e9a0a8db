"""Fine-tune an embedder on your own pairs, then use it like any model: a self-contained offline demo.

    python examples/finetune_shapes.py [--out ./shapes-ft] [--model DIR_OR_ID] [--classes 12] [--epochs 3]

The task is synthetic (pictures of coloured shapes, queried by image, matched to their descriptions;
see ``umr.train.synthetic``), so it runs anywhere in about a minute of CPU on a tiny random-weight
model. With your own data, build ``pairs`` from your (query, relevant page) examples instead: either
side may be text, an image path, a PIL image or ``{"text": ..., "image": ...}``.

Steps: build a tiny base model (or pass ``--model``), measure held-out Recall@1, fine-tune with LoRA,
measure again, reload the saved folder with ``umr.Embedder.from_pretrained`` and search with it.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import umr
from umr.evaluation import RetrievalDataset
from umr.train import LoraSettings, fit
from umr.train.synthetic import COLOURS, SHAPES, ShapesTask, build_shapes_model

logger = logging.getLogger("finetune_shapes")


def held_out(task: ShapesTask, per_class: int) -> RetrievalDataset:
    """Fresh renders (never trained on) as queries; one description per class as the corpus."""
    samples = task.samples(per_class, split="test")
    ids = [task.class_id(c) for c in task.classes]
    return RetrievalDataset(
        corpus_ids=ids,
        corpus=[task.describe(c) for c in task.classes],
        query_ids=[f"q{i}" for i in range(len(samples))],
        queries=[img for img, _ in samples],
        qrels={f"q{i}": {task.class_id(c): 1.0} for i, (_, c) in enumerate(samples)},
    )


def run(
    out: Path, model: str | None = None, colours: int = 4, shapes: int = 3, per_class: int = 64,
    epochs: int = 3, seed: int = 0, progress: bool | None = None,
) -> dict[str, Any]:
    base = model or str(build_shapes_model(out.parent / f"{out.name}-base", seed=seed))
    embedder = umr.Embedder.from_pretrained(base, device="cpu")
    task = ShapesTask(colours=colours, shapes=shapes, seed=seed)
    pairs = task.pairs(per_class)  # [(PIL image, "a red circle"), ...]
    report = fit(
        embedder, pairs, epochs=epochs, batch_size=16, lr=5e-3, temperature=0.02, lora=LoraSettings(r=16),
        output_dir=out, eval_set=held_out(task, 8), seed=seed, progress=progress,
    )
    # the saved folder is a normal model: the CLI, the store and both adapters load it by path
    trained = umr.Embedder.from_pretrained(out, device="cpu")
    query = task.samples(1, split="test")[0]
    docs = [task.describe(c) for c in task.classes]
    scores = trained.embed_queries([query[0]]) @ trained.embed_documents(docs).T
    best = docs[int(scores.argmax())]
    return {
        "recall@1_before": report.metric("recall@1", "before"),
        "recall@1_after": report.metric("recall@1", "after"),
        "steps": report.steps,
        "seconds": report.seconds,
        "example": {"truth": task.describe(query[1]), "retrieved": best},
        "out": str(out),
    }


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=None, help="output folder (default: a temporary folder)")
    p.add_argument("--model", default=None, help="base model (default: a tiny random-weight model)")
    p.add_argument("--colours", type=int, default=4, help=f"colours, 1..{len(COLOURS)}")
    p.add_argument("--shapes", type=int, default=3, help=f"shapes, 1..{len(SHAPES)}")
    p.add_argument("--per-class", type=int, default=64, help="training pictures per class")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out) if args.out else Path(tmp) / "shapes-ft"
        result = run(out, args.model, args.colours, args.shapes, args.per_class, args.epochs, args.seed)
    print(f"held-out Recall@1: {result['recall@1_before']:.3f} before -> {result['recall@1_after']:.3f} after "
          f"({result['steps']} steps, {result['seconds']:.0f} s)")
    print(f"a test picture of {result['example']['truth']!r} retrieves {result['example']['retrieved']!r}")
    if args.out:
        print(f"model saved to {args.out}; try: umr eval DATA --model {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
