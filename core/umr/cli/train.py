"""``umr train DATA_DIR --model ID_OR_DIR --out DIR``: fine-tune an embedder on a BEIR-layout folder.

Training code (``umr.train``: torch, peft) is imported when the command runs, never at registration.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from .common import UsageError, add_model_args, display, err, load_embedder, load_reranker, out, show_progress

SUMMARY_METRICS = ("recall@1", "recall@5", "ndcg@10")


def register(sub: Any) -> argparse.ArgumentParser:
    """Add the ``train`` subcommand to the ``umr`` parser's subparsers."""
    p = sub.add_parser(
        "train",
        help="fine-tune an embedder on your own documents (BEIR-layout folder)",
        description=(
            "Contrastive fine-tuning (LoRA by default) on DATA_DIR: corpus.jsonl, queries.jsonl, "
            "qrels/train.tsv (training) and qrels/test.tsv (held-out evaluation). With only one qrels "
            "file, a deterministic share of its queries (--eval-fraction) is held out. The trained "
            "model is saved to --out as a normal model folder (umr eval / index / search --model OUT); "
            "OUT/checkpoint-last holds the state a rerun resumes from."
        ),
    )
    p.add_argument("dataset", metavar="DATA_DIR")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder for the fine-tuned model")
    add_model_args(p)
    g = p.add_argument_group("training")
    g.add_argument("--epochs", type=int, default=None,
                   help="passes over the training pairs (default: enough for ~100 steps, at most 10)")
    g.add_argument("--batch-size", type=int, default=32, help="pairs per step, all in-batch negatives (default 32)")
    g.add_argument("--chunk-size", type=int, default=None,
                   help="GradCache: inputs per forward pass when a batch does not fit memory (default: whole batch)")
    g.add_argument("--lr", type=float, default=None,
                   help="learning rate (default: 1e-4 LoRA / 1e-5 full; 5e-3 / 5e-4 on tiny test models)")
    g.add_argument("--temperature", type=float, default=0.05, help="InfoNCE temperature (default 0.05)")
    g.add_argument("--learn-temperature", action="store_true", help="train the temperature too")
    g.add_argument("--lora-r", type=int, default=16, help="LoRA rank (default 16); 0 trains every weight")
    g.add_argument("--lora-vision", action="store_true", help="LoRA on the vision tower as well")
    g.add_argument("--grad-checkpointing", action="store_true", help="less memory, ~30%% slower")
    g.add_argument("--max-steps", type=int, default=None, help="stop after this many steps (resumable)")
    g.add_argument("--checkpoint-every", type=int, default=50, help="save the resumable state every N steps")
    g.add_argument("--no-resume", action="store_true", help="ignore OUT/checkpoint-last and start over")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--instruction", default=None, help="query-side task instruction (training and eval)")
    g = p.add_argument_group("negatives and distillation")
    g.add_argument("--hard-negatives", type=int, default=0, metavar="N",
                   help="mine N hard negatives per query with the model before training (default 0)")
    g.add_argument("--margin", type=float, default=0.05,
                   help="skip candidates scoring within this of the positive (likely false negatives)")
    g.add_argument("--modality-aware", action="store_true",
                   help="MM-Embed: half of the mined negatives from the other modality")
    g.add_argument("--distill", default=None, metavar="RERANKER",
                   help="distil this reranker's scores over each query's top-K (scores cached in OUT)")
    g.add_argument("--distill-top-k", type=int, default=8, help="candidates per query for distillation")
    g.add_argument("--distill-weight", type=float, default=1.0, help="weight of the KL term (default 1)")
    g = p.add_argument_group("evaluation and output")
    g.add_argument("--eval-fraction", type=float, default=0.2,
                   help="share of queries held out when DATA_DIR has only one qrels file (default 0.2)")
    g.add_argument("--no-eval", action="store_true", help="skip the before/after evaluation")
    g.add_argument("--no-progress", action="store_true", help="no progress bars")
    g.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    if not os.path.isdir(args.dataset):
        raise UsageError(f"no such dataset folder: {display(args.dataset)}")
    for name in ("epochs", "batch_size"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be at least 1")
    if args.batch_size < 2:
        raise UsageError("--batch-size must be at least 2 (in-batch negatives)")
    if args.lora_r < 0:
        raise UsageError("--lora-r must be >= 0 (0 = full fine-tuning)")
    if args.lr is not None and args.lr <= 0:
        raise UsageError("--lr must be positive")
    if not 0.0 < args.eval_fraction < 1.0:
        raise UsageError("--eval-fraction must be between 0 and 1")
    if args.chunk_size is not None and args.chunk_size < 1:
        raise UsageError("--chunk-size must be at least 1")
    if args.model is None and os.environ.get("UMR_MODEL") is None:
        raise UsageError("--model is required: the base model to fine-tune (hub id or local folder)")
    out_dir = Path(args.out)
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"--out {display(out_dir)} exists and is not a folder")

    from umr.train.data import load_training_data
    from umr.train.lora import LoraSettings, require_peft
    from umr.train.trainer import fit

    lora = None if args.lora_r == 0 else LoraSettings(r=args.lora_r, vision=args.lora_vision)
    if lora is not None:
        require_peft()
    data = load_training_data(args.dataset, eval_fraction=args.eval_fraction)
    show = show_progress(args)
    say = (lambda msg: err(f"umr: {msg}")) if show else (lambda msg: None)
    say(f"{len(data.pairs)} training pairs, {len(data.corpus)} corpus items; {data.split_note}")
    embedder = load_embedder(args)
    distill = None
    if args.distill:
        from umr.train.distill import DistillSettings

        reranker = load_reranker(args.distill, args)
        distill = DistillSettings(reranker=reranker, top_k=args.distill_top_k, weight=args.distill_weight,
                                  corpus=data.corpus)
    report = fit(
        embedder, data.pairs, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
        temperature=args.temperature, learn_temperature=args.learn_temperature, lora=lora,
        grad_checkpointing=args.grad_checkpointing, chunk_size=args.chunk_size,
        hard_negatives=args.hard_negatives, hard_negative_margin=args.margin,
        modality_aware=args.modality_aware, corpus=data.corpus, distill=distill,
        instruction=args.instruction, output_dir=out_dir, checkpoint_every=args.checkpoint_every,
        resume=not args.no_resume, max_steps=args.max_steps,
        eval_set=None if args.no_eval else data.eval_set, seed=args.seed, progress=show,
    )
    result = report.to_dict()
    result["split"] = data.split_note
    if args.json:
        out(json.dumps(result, indent=2, default=str))
        return 0
    kind = "full fine-tuning" if lora is None else f"LoRA r={lora.r}{' + vision' if lora.vision else ''}"
    resumed = f", resumed at step {report.resumed_from_step}" if report.resumed_from_step else ""
    out(
        f"trained {report.steps}/{report.total_steps} steps in {report.seconds:.1f} s ({kind}, "
        f"{report.pairs} pairs, {report.epochs} epochs, batch {report.batch_size}, lr {report.lr:g}{resumed})"
    )
    for note in report.notes:
        out(f"  {note}")
    if report.completed:
        out(f"model saved to {display(out_dir)} (load it with --model {display(out_dir)})")
    else:
        out(f"stopped early; state saved in {display(out_dir / 'checkpoint-last')}: run the same command to resume")
    if report.eval_before is not None and report.eval_after is not None:
        n = report.eval_before.get("queries")
        out(f"held-out evaluation: {n} queries ({data.split_note})")
        out("| metric | before | after |")
        out("|---|---|---|")
        for m in SUMMARY_METRICS:
            before = report.eval_before["retrieval"].get(m)
            after = report.eval_after["retrieval"].get(m)
            if before is not None and after is not None:
                out(f"| {m} | {before:.4f} | {after:.4f} |")
    elif data.eval_set is None and not args.no_eval:
        out("no held-out queries to evaluate (add qrels/test.tsv)")
    sys.stdout.flush()
    return 0
