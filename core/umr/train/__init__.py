"""Fine-tuning an ``umr.Embedder`` on your own documents (extra ``train``: ``pip install "umr[train]"``).

>>> from umr.train import fit, LoraSettings                                   # doctest: +SKIP
>>> emb = umr.Embedder.from_pretrained("Alibaba-NLP/gme-Qwen2-VL-2B-Instruct")  # doctest: +SKIP
>>> pairs = [("total of invoice 17?", "scans/inv17.png"), ...]                # doctest: +SKIP
>>> report = fit(emb, pairs, epochs=2, lora=LoraSettings(r=16), output_dir="gme-invoices")  # doctest: +SKIP
>>> umr.Embedder.from_pretrained("gme-invoices")                             # doctest: +SKIP

* ``fit`` — InfoNCE with in-batch and explicit negatives, fixed or learnable temperature, LoRA (peft)
  or full fine-tuning, GradCache chunking, gradient checkpointing, bf16 on GPU, resumable checkpoints.
* ``mine_hard_negatives`` — top-k minus positives with a false-negative margin; modality-aware option.
* ``DistillSettings`` — reranker distillation (KL over the top-K, reranker scores cached on disk).
* ``umr.train.synthetic`` — a learnable coloured-shapes task for tests, demos and benchmarks.

Heavy modules load on first use: importing ``umr.train`` needs neither peft nor a model.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from umr._lazy import lazy_exports

_LAZY = {
    "fit": "umr.train.trainer",
    "FitReport": "umr.train.trainer",
    "TrainPair": "umr.train.data",
    "coerce_pairs": "umr.train.data",
    "load_training_data": "umr.train.data",
    "LoraSettings": "umr.train.lora",
    "DistillSettings": "umr.train.distill",
    "mine_hard_negatives": "umr.train.negatives",
    "info_nce": "umr.train.losses",
    "distill_kl": "umr.train.losses",
}

__all__ = [
    "DistillSettings",
    "FitReport",
    "LoraSettings",
    "TrainPair",
    "coerce_pairs",
    "distill_kl",
    "fit",
    "info_nce",
    "load_training_data",
    "mine_hard_negatives",
]

if TYPE_CHECKING:  # pragma: no cover
    from umr.train.data import TrainPair, coerce_pairs, load_training_data
    from umr.train.distill import DistillSettings
    from umr.train.lora import LoraSettings
    from umr.train.losses import distill_kl, info_nce
    from umr.train.negatives import mine_hard_negatives
    from umr.train.trainer import FitReport, fit


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, __all__, globals())
