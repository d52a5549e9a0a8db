"""``fit``: contrastive fine-tuning of an ``umr.Embedder`` on (query, positive[, negatives]) pairs.

The training forward pass is the inference one (``Embedder.prepare_inputs`` + ``encode_prepared``:
same prompt, instruction, pixel budget, positions and pooling as ``embed``), so what is trained is
exactly what is served. The loss is InfoNCE over the batch (every other positive and every explicit
negative is a negative), optionally plus the KL term of reranker distillation.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from umr.engines import ENGINES, get_engine
from umr.inputs import InputLike, MultimodalInput
from umr.train import checkpoint as ckpt
from umr.train.data import TrainPair, coerce_pairs, doc_key
from umr.train.distill import DistillSettings, ScoreCache, teacher_scores, top_candidates
from umr.train.gradcache import contrastive_step
from umr.train.lora import LoraSettings, apply_lora, merge_into_model
from umr.train.losses import Temperature, distill_kl, info_nce
from umr.train.negatives import mine_hard_negatives

logger = logging.getLogger(__name__)

DEFAULT_LORA = LoraSettings()


@dataclass
class FitReport:
    """What a ``fit`` run did: steps, losses, time, and the held-out metrics before and after."""

    steps: int
    total_steps: int
    epochs: int
    lr: float
    completed: bool
    resumed_from_step: int
    losses: list[float]
    seconds: float
    temperature: float
    trainable_parameters: int
    pairs: int
    batch_size: int
    eval_before: dict[str, Any] | None = None
    eval_after: dict[str, Any] | None = None
    output_dir: str | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def metric(self, name: str, when: str = "after") -> float | None:
        ev = self.eval_after if when == "after" else self.eval_before
        return None if ev is None else ev.get("retrieval", {}).get(name)


@dataclass
class _Batch:
    queries: list[MultimodalInput]
    docs: list[MultimodalInput]
    positive: torch.Tensor  # (B,) column of each query's positive in docs
    mask: torch.Tensor  # (B, M) other known positives of the query: out of its softmax
    distill_index: torch.Tensor | None = None  # (B, K) columns of the distillation candidates
    teacher: torch.Tensor | None = None  # (B, K) reranker scores


def _data_fingerprint(pairs: Sequence[TrainPair]) -> str:
    h = hashlib.sha256()
    for p in pairs:
        h.update(p.query_key().encode())
        h.update(p.positive_key().encode())
        for k in p.negative_keys():
            h.update(k.encode())
        h.update(b"\n")
    return h.hexdigest()[:16]


def _show(progress: bool | None) -> bool:
    return bool(progress) if progress is not None else sys.stderr.isatty()


def fit(
    embedder: Any,
    train_pairs: Iterable[TrainPair | Sequence[Any] | Mapping[str, Any]],
    *,
    epochs: int | None = None,
    batch_size: int = 32,
    lr: float | None = None,
    temperature: float = 0.05,
    learn_temperature: bool = False,
    lora: LoraSettings | None = DEFAULT_LORA,
    grad_checkpointing: bool = False,
    bf16: bool | None = None,
    chunk_size: int | None = None,
    hard_negatives: int = 0,
    hard_negative_margin: float = 0.05,
    modality_aware: bool = False,
    corpus: Sequence[InputLike] | None = None,
    distill: DistillSettings | None = None,
    instruction: str | None = None,
    output_dir: str | os.PathLike | None = None,
    checkpoint_every: int | None = 50,
    resume: bool = True,
    max_steps: int | None = None,
    eval_set: Any = None,
    eval_ks: Sequence[int] = (1, 5, 10),
    warmup_ratio: float = 0.1,
    weight_decay: float = 0.0,
    max_grad_norm: float | None = 1.0,
    seed: int = 0,
    progress: bool | None = None,
    on_step: Callable[[int, float], None] | None = None,
) -> FitReport:
    """Fine-tune ``embedder`` in place on ``train_pairs``; returns a ``FitReport``.

    Pairs are ``(query, positive)`` or ``(query, positive, negatives)`` tuples, dicts with those keys
    or ``TrainPair``; each side is text, an image or both (anything ``umr.MultimodalInput`` takes).

    * ``epochs`` — passes over the pairs; ``None`` (auto) makes enough passes for about
      ``AUTO_MIN_STEPS`` optimizer steps, at most ``AUTO_MAX_EPOCHS`` (one pass for large data).
    * ``lr`` — ``None`` (auto): 1e-4 for LoRA and 1e-5 for full fine-tuning on real backbones (hidden
      size >= 1024); toy models (``umr.testing``, hidden 64) need 5e-3 / 5e-4 to move within minutes.

    * ``lora`` — LoRA settings (default r=16 on the language model; ``LoraSettings(vision=True)`` adds
      the vision tower); ``None`` trains every weight (full fine-tuning). Needs ``peft`` for LoRA.
    * ``temperature`` — InfoNCE temperature; ``learn_temperature=True`` makes it a trained parameter.
    * ``chunk_size`` — GradCache: embed at most this many inputs per forward pass, whatever
      ``batch_size`` is, with the gradients of the full batch (all in-batch negatives kept).
    * ``grad_checkpointing`` — recompute activations in the backward pass (less memory, ~30 % slower).
    * ``bf16`` — on CUDA, autocast a float32 model to bfloat16 (default: on when the GPU supports it;
      a model loaded in bf16 stays bf16; LoRA weights stay float32).
    * ``hard_negatives`` — mine this many negatives per query with the model before training, from
      ``corpus`` (default: every document of the pairs), skipping candidates within
      ``hard_negative_margin`` of the positive's score; ``modality_aware`` as in MM-Embed.
    * ``distill`` — ``DistillSettings``: add KL(reranker || embedder) over each query's top-K.
    * ``output_dir`` — the trained model is saved there as a normal model directory (LoRA merged)
      that ``Embedder.from_pretrained`` loads; ``checkpoint-last/`` inside holds the resumable state,
      written every ``checkpoint_every`` steps and on Ctrl-C. With ``resume=True`` a run continues from it.
    * ``max_steps`` — stop after this many steps in total (the run reports ``completed=False``).
    * ``eval_set`` — a ``umr.evaluation.RetrievalDataset`` or a dataset folder: evaluated before and
      after training (Recall@k, nDCG@k, MRR).
    """
    from umr.evaluation import RetrievalDataset, evaluate, load_dataset

    t0 = time.perf_counter()
    engine = get_engine(embedder.recipe.engine)
    if not engine.trainable:
        trainable = ", ".join(sorted(n for n, e in ENGINES.items() if e.trainable))
        raise NotImplementedError(
            f"recipe {embedder.recipe.name!r} runs on the {engine.name!r} engine ({engine.summary}); umr.train "
            f"fine-tunes recipes on these engines: {trainable}"
        )
    for name, value in (("epochs", 1 if epochs is None else epochs), ("batch_size", batch_size)):
        if not isinstance(value, int) or value <= 0:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if batch_size < 2:
        raise ValueError("batch_size must be at least 2: in-batch negatives need other pairs in the batch")
    if chunk_size is not None and chunk_size <= 0:
        raise ValueError(f"chunk_size must be a positive integer or None, got {chunk_size!r}")
    if lr is None:
        lr = auto_lr(embedder, lora is not None)
    if lr <= 0:
        raise ValueError(f"lr must be positive, got {lr}")
    if hard_negatives < 0:
        raise ValueError(f"hard_negatives must be >= 0 (0 = no mining), got {hard_negatives}")
    if max_steps is not None and max_steps <= 0:
        raise ValueError(f"max_steps must be a positive integer or None, got {max_steps!r}")
    if checkpoint_every is not None and checkpoint_every < 0:
        raise ValueError(f"checkpoint_every must be >= 0 or None (0/None: only at the end), got {checkpoint_every}")
    temp = Temperature(temperature, learnable=learn_temperature).to(embedder.device)  # validates the value
    pairs = coerce_pairs(train_pairs)
    notes: list[str] = []
    if epochs is None:
        epochs = auto_epochs(len(pairs), batch_size)
        notes.append(f"epochs: {epochs} (auto, about {AUTO_MIN_STEPS} steps)")
    if isinstance(eval_set, (str, os.PathLike)):
        eval_set = load_dataset(eval_set, "test")
    if eval_set is not None and not isinstance(eval_set, RetrievalDataset):
        raise TypeError("eval_set must be a umr.evaluation.RetrievalDataset, a dataset folder, or None")

    model: torch.nn.Module = embedder.model
    out = Path(output_dir) if output_dir is not None else None
    state = ckpt.read_state(out) if (out is not None and resume) else None
    settings = {
        "base_fingerprint": embedder.fingerprint,
        "data_fingerprint": _data_fingerprint(pairs),
        "batch_size": batch_size,
        "epochs": epochs,
        "lora": asdict(lora) if lora is not None else None,
        "seed": seed,
        "hard_negatives": hard_negatives,
        "learn_temperature": learn_temperature,
    }
    if state is not None:
        diff = [k for k, v in settings.items() if k != "epochs" and _jsonable(v) != state.get("settings", {}).get(k)]
        if diff:
            raise ValueError(
                f"{out}/{ckpt.STATE_DIR} was written by a run with other {', '.join(diff)} (or another base "
                "model: resume from the base model, not from a fine-tuned output); use a new output_dir, "
                "or resume=False (--no-resume) to start over"
            )
        if state.get("completed") and state.get("step", 0) >= _total_steps(len(pairs), batch_size, epochs, max_steps):
            notes.append("the saved state is already complete; nothing left to train")

    # -- before any weight changes: baseline eval, mined negatives, distillation candidates -------
    eval_before = state.get("eval_before") if state is not None else None
    if eval_set is not None and eval_before is None:
        eval_before = evaluate(embedder, eval_set, ks=eval_ks, instruction=instruction)
        logger.info("before training: %s", eval_before["retrieval"])

    pool_keys: list[str] = []
    pool: list[MultimodalInput] = []
    if hard_negatives > 0 or distill is not None:
        pool, pool_keys = _doc_pool(pairs, corpus if distill is None or distill.corpus is None else distill.corpus)
    qgroups = _query_groups(pairs)
    known_pos: dict[str, set[str]] = {qk: {pairs[i].positive_key() for i in idx} for qk, idx in qgroups.items()}
    extra_negs: dict[str, list[int]] = {}
    if hard_negatives > 0:
        keys = list(qgroups)
        pos_index = {k: i for i, k in enumerate(pool_keys)}
        positives = [{pos_index[pk] for pk in known_pos[qk] if pk in pos_index} for qk in keys]
        if any(not p for p in positives):
            raise ValueError("hard-negative mining needs every positive in the corpus; pass corpus=None or a superset")
        mined = mine_hard_negatives(
            embedder, [pairs[qgroups[k][0]].query for k in keys], pool, positives, k=hard_negatives,
            margin=hard_negative_margin, modality_aware=modality_aware, instruction=instruction,
            show_progress=_show(progress),
        )
        extra_negs = dict(zip(keys, mined))
        notes.append(f"mined {sum(len(m) for m in mined)} hard negatives for {len(keys)} queries")
    distill_cands: dict[str, tuple[list[int], np.ndarray]] = {}
    if distill is not None:
        keys = list(qgroups)
        queries = [pairs[qgroups[k][0]].query for k in keys]
        cands = top_candidates(embedder, queries, pool, distill.top_k)
        cache_path = distill.cache_path or (out / "reranker_scores.json" if out is not None else None)
        cache = ScoreCache(cache_path)
        scores = teacher_scores(distill.reranker, queries, [[pool[j] for j in c] for c in cands], cache,
                                instruction=instruction)
        distill_cands = {k: (c, scores[i, : len(c)]) for i, (k, c) in enumerate(zip(keys, cands))}
        notes.append(f"reranker scores: {cache.hits} cached, {cache.misses} computed")

    # -- trainable parameters -------------------------------------------------------------------
    if state is None:
        torch.manual_seed(seed)
    wrapped = None
    if lora is not None:
        wrapped = apply_lora(model, lora, seed=seed)
    else:
        model.requires_grad_(True)
    params = [p for p in model.parameters() if p.requires_grad]
    n_trainable = sum(p.numel() for p in params)
    groups: list[dict[str, Any]] = [{"params": params, "weight_decay": weight_decay}]
    if learn_temperature:
        groups.append({"params": [temp.log_value], "weight_decay": 0.0})
    optimizer = torch.optim.AdamW(groups, lr=lr)
    total = _total_steps(len(pairs), batch_size, epochs, None)
    warmup = int(warmup_ratio * total)

    def schedule(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        return max(0.0, (total - step) / max(1, total - warmup))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    start_step = 0
    losses: list[float] = []
    if state is not None:
        try:
            extra = ckpt.load_state(state["_dir"], model, optimizer, scheduler)
        except BaseException:
            _abort(embedder, model, wrapped)
            raise
        if "log_temperature" in extra:
            with torch.no_grad():
                temp.log_value.copy_(extra["log_temperature"].reshape(()))
        start_step = int(state["step"])
        losses = [float(x) for x in state.get("losses", [])]
        logger.info("resuming from step %d of %d (%s)", start_step, total, state["_dir"])
    stop_at = min(total, max_steps) if max_steps is not None else total

    use_autocast = False
    if embedder.device.type == "cuda":
        supported = torch.cuda.is_bf16_supported()
        use_autocast = (bf16 if bf16 is not None else supported) and embedder.dtype == torch.float32
    if grad_checkpointing:
        _set_checkpointing(model, True)

    def encode(side: str) -> Callable[[list[MultimodalInput]], torch.Tensor]:
        def run(items: list[MultimodalInput]) -> torch.Tensor:
            prepared = embedder.prepare_inputs(items, side=side, instruction=instruction)
            if not use_autocast:
                return embedder.encode_prepared(prepared).float()
            with torch.autocast("cuda", dtype=torch.bfloat16):
                return embedder.encode_prepared(prepared).float()
        return run

    def save(step: int, completed: bool) -> None:
        if out is None:
            return
        ckpt.save_state(
            out, model, optimizer, scheduler,
            {"step": step, "total_steps": total, "completed": completed, "losses": losses,
             "eval_before": eval_before, "settings": _jsonable(settings)},
            {"log_temperature": temp.log_value},
        )

    show = _show(progress)
    from tqdm.auto import tqdm

    bar = tqdm(total=stop_at, initial=min(start_step, stop_at), desc="training", unit="step",
               disable=not show, file=sys.stderr, dynamic_ncols=True)
    step = start_step
    model.train()
    try:
        for epoch in range(epochs):
            batches = _epoch_batches(len(pairs), batch_size, seed, epoch)
            for b, idx in enumerate(batches):
                number = epoch * len(batches) + b
                if number < start_step:
                    continue
                if step >= stop_at:
                    break
                batch = _make_batch([pairs[i] for i in idx], known_pos, extra_negs, pool, pool_keys, distill_cands)
                loss_fn = _loss_fn(batch, temp, distill)
                with embedder._lock:
                    loss = contrastive_step(
                        [encode("query"), encode("document")], [batch.queries, batch.docs], loss_fn, chunk_size
                    )
                if max_grad_norm is not None:
                    torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                step = number + 1
                value = float(loss)
                if not math.isfinite(value):
                    raise FloatingPointError(
                        f"loss became {value} at step {step}; lower lr (now {lr}) or raise the temperature"
                    )
                losses.append(value)
                bar.update(1)
                bar.set_postfix(loss=f"{value:.4f}", t=f"{temp.item():.3f}")
                if on_step is not None:
                    on_step(step, value)
                if checkpoint_every and step % checkpoint_every == 0 and step < stop_at:
                    save(step, completed=False)
            if step >= stop_at:
                break
    except BaseException as exc:  # Ctrl-C, out of memory, an unreadable image mid-run...
        bar.close()
        optimizer.zero_grad(set_to_none=True)
        if step > start_step:
            save(step, completed=False)  # the state after the last finished step
        _finish(embedder, model, wrapped, grad_checkpointing)
        logger.warning(
            "training stopped at step %d (%s)%s", step, type(exc).__name__,
            "; the state is saved, run again to resume" if out is not None and step > start_step else "",
        )
        raise
    bar.close()
    completed = step >= total
    save(step, completed=completed)
    _finish(embedder, model, wrapped, grad_checkpointing)
    if step > 0:  # the vectors changed: stores must not mix them with the base model's
        embedder._fingerprint_seed = f"{embedder._fingerprint_seed}+ft:{settings['data_fingerprint']}:{step}"

    eval_after = None
    if eval_set is not None:
        eval_after = evaluate(embedder, eval_set, ks=eval_ks, instruction=instruction)
        logger.info("after training: %s", eval_after["retrieval"])
    report = FitReport(
        steps=step, total_steps=total, epochs=epochs, lr=lr, completed=completed, resumed_from_step=start_step, losses=losses,
        seconds=0.0, temperature=temp.item(), trainable_parameters=n_trainable, pairs=len(pairs),
        batch_size=batch_size, eval_before=eval_before, eval_after=eval_after,
        output_dir=str(out) if out is not None else None, notes=notes,
    )
    if out is not None and completed:
        ckpt.save_model_dir(
            embedder, out, steps=step, epochs=epochs, lr=lr, batch_size=batch_size,
            lora=asdict(lora) if lora is not None else None, temperature=temp.item(),
        )
    report.seconds = time.perf_counter() - t0
    if out is not None:
        (out / "train_report.json").write_text(json.dumps(report.to_dict(), indent=2, default=str))
    return report


AUTO_MIN_STEPS = 100
AUTO_MAX_EPOCHS = 10


def auto_epochs(n_pairs: int, batch_size: int) -> int:
    """Passes for about ``AUTO_MIN_STEPS`` steps: small data gets several epochs, large data one."""
    per_epoch = len(_epoch_batches(n_pairs, batch_size, 0, 0))
    return max(1, min(AUTO_MAX_EPOCHS, math.ceil(AUTO_MIN_STEPS / per_epoch)))


def auto_lr(embedder: Any, lora: bool) -> float:
    """Default learning rate: usual LoRA / full values on real backbones, larger on toy models."""
    toy = int(getattr(embedder, "native_dim", 4096)) < 1024
    if lora:
        return 5e-3 if toy else 1e-4
    return 5e-4 if toy else 1e-5


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def _total_steps(n: int, batch_size: int, epochs: int, max_steps: int | None) -> int:
    per_epoch = len(_epoch_batches(n, batch_size, 0, 0))
    total = per_epoch * epochs
    return min(total, max_steps) if max_steps is not None else total


def _epoch_batches(n: int, batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """A deterministic shuffle per (seed, epoch); a last batch of one joins the previous batch."""
    order = np.random.default_rng([seed, epoch]).permutation(n).tolist()
    batches = [order[i : i + batch_size] for i in range(0, n, batch_size)]
    if len(batches) > 1 and len(batches[-1]) < 2:
        batches[-2].extend(batches.pop())
    return batches


def _query_groups(pairs: Sequence[TrainPair]) -> dict[str, list[int]]:
    groups: dict[str, list[int]] = {}
    for i, p in enumerate(pairs):
        groups.setdefault(p.query_key(), []).append(i)
    return groups


def _doc_pool(
    pairs: Sequence[TrainPair], corpus: Sequence[InputLike] | None
) -> tuple[list[MultimodalInput], list[str]]:
    pool: list[MultimodalInput] = []
    keys: list[str] = []
    seen: set[str] = set()

    def add(item: MultimodalInput, key: str) -> None:
        if key not in seen:
            seen.add(key)
            pool.append(item)
            keys.append(key)

    for p in pairs:
        add(p.positive, p.positive_key())
        for n, k in zip(p.negatives, p.negative_keys()):
            add(n, k)
    if corpus is not None:
        # a user corpus is keyed by content, so match the pair documents by content too
        by_content = {doc_key(p.positive): p.positive_key() for p in pairs}
        for item in corpus:
            mi = MultimodalInput.coerce(item)
            ck = doc_key(mi)
            add(mi, by_content.get(ck, ck))
    return pool, keys


def _make_batch(
    batch_pairs: Sequence[TrainPair],
    known_pos: dict[str, set[str]],
    extra_negs: dict[str, list[int]],
    pool: Sequence[MultimodalInput],
    pool_keys: Sequence[str],
    distill_cands: dict[str, tuple[list[int], np.ndarray]],
) -> _Batch:
    docs: list[MultimodalInput] = []
    col: dict[str, int] = {}

    def add(item: MultimodalInput, key: str) -> int:
        if key not in col:
            col[key] = len(docs)
            docs.append(item)
        return col[key]

    positive = [add(p.positive, p.positive_key()) for p in batch_pairs]
    for p in batch_pairs:
        for n, k in zip(p.negatives, p.negative_keys()):
            add(n, k)
        for j in extra_negs.get(p.query_key(), []):
            add(pool[j], pool_keys[j])
    distill_index = teacher = None
    if distill_cands:
        rows, trows = [], []
        for p in batch_pairs:
            cands, scores = distill_cands[p.query_key()]
            rows.append([add(pool[j], pool_keys[j]) for j in cands])
            trows.append(scores)
        width = min(len(r) for r in rows)
        distill_index = torch.tensor([r[:width] for r in rows], dtype=torch.long)
        teacher = torch.tensor(np.stack([t[:width] for t in trows]), dtype=torch.float32)
    mask = torch.zeros((len(batch_pairs), len(docs)), dtype=torch.bool)
    for i, p in enumerate(batch_pairs):
        for key in known_pos.get(p.query_key(), ()):
            if key in col:
                mask[i, col[key]] = True
    return _Batch(
        queries=[p.query for p in batch_pairs], docs=docs, positive=torch.tensor(positive, dtype=torch.long),
        mask=mask, distill_index=distill_index, teacher=teacher,
    )


def _loss_fn(batch: _Batch, temp: Temperature, distill: DistillSettings | None) -> Callable[..., torch.Tensor]:
    def loss_fn(q: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        t = temp()
        loss = info_nce(q, d, batch.positive.to(q.device), t, batch.mask.to(q.device))
        if distill is not None and batch.distill_index is not None and batch.teacher is not None:
            cand = d[batch.distill_index.to(d.device)]  # (B, K, H)
            student = (q.unsqueeze(1) * cand).sum(-1)  # (B, K)
            loss = loss + distill.weight * distill_kl(
                student, batch.teacher.to(q.device), t, distill.teacher_temperature
            )
        return loss

    return loss_fn


def _finish(embedder: Any, model: torch.nn.Module, wrapped: Any, grad_checkpointing: bool) -> None:
    """Back to inference: adapters merged, no gradients, eval mode."""
    if grad_checkpointing:
        _set_checkpointing(model, False)
    if wrapped is not None:
        embedder.model = merge_into_model(wrapped)
    embedder.model.requires_grad_(False)
    embedder.model.eval()


def _set_checkpointing(model: torch.nn.Module, on: bool) -> None:
    """Activation (gradient) checkpointing on or off; transformers 5 renamed the methods."""
    name = "activation_checkpointing" if hasattr(model, "activation_checkpointing_enable") else "gradient_checkpointing"
    if on:
        getattr(model, f"{name}_enable")(**{f"{name}_kwargs": {"use_reentrant": False}})
    else:
        getattr(model, f"{name}_disable")()


def _abort(embedder: Any, model: torch.nn.Module, wrapped: Any) -> None:
    """Undo the training setup without keeping any weight change (adapters removed, not merged)."""
    if wrapped is not None:
        embedder.model = wrapped.unload()
    embedder.model.requires_grad_(False)
    embedder.model.eval()
