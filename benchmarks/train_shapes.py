"""Fine-tuning quality and speed on the synthetic shapes task (issue 12), CPU, tiny model.

For each training configuration it fine-tunes a fresh tiny model (``umr.train.synthetic``: image
queries of coloured shapes matched to their descriptions; ``colours x shapes`` classes, chance
Recall@1 = 1 / classes) and reports steps, seconds, seconds per step, and held-out Recall@1/5 and
nDCG@10 before and after. Held-out queries are fresh renders never trained on.

Configurations (``--configs``):

* ``lora``        -- LoRA r=16 on the language model (the default of ``umr.train.fit``)
* ``lora-chunk``  -- the same with GradCache chunks of 4 inputs (same gradients, less memory)
* ``lora-vision`` -- LoRA on the language model and the vision tower
* ``full``        -- every weight trained (lr 10x lower)
* ``lora-hardneg``-- LoRA plus 2 mined hard negatives per query (the corpus is the class descriptions)

    python benchmarks/train_shapes.py                     # table + benchmarks/results/train_shapes.json
    python benchmarks/train_shapes.py --configs lora full --colours 3 --shapes 2 --threads 2
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import _common
from _common import Column

NAME = "train_shapes"
CONFIGS = ("lora", "lora-chunk", "lora-vision", "full", "lora-hardneg")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configs", nargs="+", default=["lora", "lora-chunk", "full"], choices=CONFIGS)
    p.add_argument("--colours", type=int, default=4)
    p.add_argument("--shapes", type=int, default=3)
    p.add_argument("--per-class", type=int, default=64, help="training pictures per class")
    p.add_argument("--test-per-class", type=int, default=8, help="held-out pictures per class")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=5e-3, help="LoRA learning rate (full fine-tuning uses lr/10)")
    p.add_argument("--temperature", type=float, default=0.02)
    p.add_argument("--seed", type=int, default=0)
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
    from umr.evaluation import RetrievalDataset
    from umr.train import LoraSettings, fit
    from umr.train.synthetic import ShapesTask, build_shapes_model

    if args.threads:
        torch.set_num_threads(args.threads)
    task = ShapesTask(colours=args.colours, shapes=args.shapes, seed=args.seed)
    pairs = task.pairs(args.per_class)
    test = task.samples(args.test_per_class, split="test")
    eval_set = RetrievalDataset(
        corpus_ids=[task.class_id(c) for c in task.classes],
        corpus=[task.describe(c) for c in task.classes],
        query_ids=[f"q{i}" for i in range(len(test))],
        queries=[img for img, _ in test],
        qrels={f"q{i}": {task.class_id(c): 1.0} for i, (_, c) in enumerate(test)},
    )
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="umr-bench-") as tmp:
        base = build_shapes_model(Path(tmp) / "base", seed=args.seed)
        for config in args.configs:
            torch.manual_seed(args.seed)
            embedder = umr.Embedder.from_pretrained(base, device="cpu")
            kwargs: dict[str, Any] = {"lora": LoraSettings(r=16), "lr": args.lr}
            if config == "lora-chunk":
                kwargs["chunk_size"] = 4
            elif config == "lora-vision":
                kwargs["lora"] = LoraSettings(r=16, vision=True)
            elif config == "full":
                kwargs.update(lora=None, lr=args.lr / 10)
            elif config == "lora-hardneg":
                kwargs.update(hard_negatives=2, hard_negative_margin=0.0)
            start = time.perf_counter()
            report = fit(
                embedder, pairs, epochs=args.epochs, batch_size=args.batch_size,
                temperature=args.temperature, eval_set=eval_set, seed=args.seed, progress=False, **kwargs,
            )
            seconds = time.perf_counter() - start
            row: dict[str, Any] = {
                "config": config, "classes": len(task.classes), "pairs": len(pairs), "steps": report.steps,
                "seconds": seconds, "s_per_step": seconds / max(1, report.steps),
                "trainable_params": report.trainable_parameters, "final_loss": report.losses[-1],
            }
            for when in ("before", "after"):
                for metric in ("recall@1", "recall@5", "ndcg@10"):
                    row[f"{metric}_{when}"] = report.metric(metric, when)
            results.append(row)
    _common.print_table(
        results,
        [
            Column("config", "config"), Column("classes", "classes"), Column("steps", "steps"),
            Column("seconds", "s", "{:.1f}"), Column("s_per_step", "s/step", "{:.2f}"),
            Column("recall@1_before", "R@1 before", "{:.3f}"), Column("recall@1_after", "R@1 after", "{:.3f}"),
            Column("recall@5_before", "R@5 before", "{:.3f}"), Column("recall@5_after", "R@5 after", "{:.3f}"),
            Column("ndcg@10_before", "nDCG@10 before", "{:.3f}"),
            Column("ndcg@10_after", "nDCG@10 after", "{:.3f}"),
        ],
        title=f"umr.train.fit on the shapes task, tiny model, CPU (threads={torch.get_num_threads()})",
    )
    settings = {k: v for k, v in vars(args).items() if k != "out"}
    settings["threads"] = torch.get_num_threads()
    settings["chance_recall@1"] = 1 / len(task.classes)
    payload = _common.result_payload(
        NAME, settings, results,
        summary={r["config"]: {"recall@1_before": r["recall@1_before"], "recall@1_after": r["recall@1_after"]}
                 for r in results},
    )
    path = _common.write_json(payload, args.out, name=NAME)
    print(f"wrote {path}")
    return payload


if __name__ == "__main__":
    main()
