"""Page throughput of a full-size Qwen2-VL-2B (random weights): naive reference loop vs UMR (issue 9).

The model is built from the public Qwen2-VL-2B-Instruct config (written out below, no hub access), with
random weights -- the vectors mean nothing, the FLOPs are real -- and the tiny locally trained tokenizer of
``umr.testing`` (its ids are small, so the real 151936-row vocabulary fits them). It is saved to a temp
dir and loaded back through the ordinary ``from_pretrained`` paths.

Side by side, in one run, for synthetic pages of exactly 768 / 1024 / 1280 visual tokens:

* embedding, ``naive``: one page per forward through ``Qwen2VLForConditionalGeneration`` -- lm_head over
  every position (full logits), all hidden states kept, fp32 (``--naive-dtype``), PIL preprocessing
  inline on the critical path. This is what a first implementation after the model card looks like.
* embedding, ``umr``: ``umr.Embedder.from_pretrained(...).embed_documents(pages)`` as shipped (bf16 on
  CUDA, token-budget batches, no lm_head, prefetching collation).
* reranking (query text + page), ``naive``: one pair per forward with full logits, read Yes/No at the
  last position; ``umr``: ``umr.Reranker`` batched with its token budget (skipped with a message when
  this checkout has no ``umr.Reranker`` yet).

Reported per row: pages/s, tokens/s (language-model sequence tokens), achieved TFLOP/s of *useful* model
FLOPs and MFU against the card's dense bf16 peak, peak GPU memory (peak RSS on CPU).

FLOPs per page (forward only, 1 multiply-add = 2 FLOPs), from the config alone:

    vision, P patches (P = 4 x visual tokens), width d, depth D, mlp ratio m, merge s:
        patch embed   2 P (C T p^2) d
        blocks        D [ 2 P (4 d^2 + 2 m d^2)  +  4 P^2 d ]        (qkv+proj, fc1+fc2; full attention)
        merger        2 (P / s^2) [ (s^2 d)^2 + s^2 d H ]
    language model, L tokens, width H, layers N, heads n_h x head_dim h_d, kv heads n_kv, MLP width I:
        layers        N [ 2 L (2 H n_h h_d + 2 H n_kv h_d + 3 H I)  +  2 L^2 n_h h_d ]   (causal: half of 4 L^2)
        lm_head       2 K H V      (K positions: 0 for embedding, 1 for reranking; naive runs K = L)

For Qwen2-VL-2B and a 1024-token page (L ~ 1054) this gives ~10.8 TFLOPs, ~73 % in the vision tower --
the figure in DESIGN.md ("Where time goes"); the script prints its own value as a check. "Useful" FLOPs
count what the task needs (K = 0 / 1); the naive loop's extra lm_head work is reported separately.

    python benchmarks/gpu_throughput.py                         # CUDA, 2B config, 16 pages per size
    python benchmarks/gpu_throughput.py --device cpu --config small --pages 2   # CPU smoke run
"""

from __future__ import annotations

import argparse
import gc
import inspect
import math
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import _common
from _common import Column

NAME = "gpu_throughput"
DEFAULT_SIZES = (768, 1024, 1280)
QUERY = "What was the operating margin in the third quarter, and how did it compare with last year?"
GME_TEMPLATE = (
    "<|im_start|>system\n{instruction}<|im_end|>\n<|im_start|>user\n{content}<|im_end|>\n"
    "<|im_start|>assistant\n<|endoftext|>"
)
IMAGE_PLACEHOLDER = "<|vision_start|><|image_pad|><|vision_end|>"

# Qwen2-VL-2B-Instruct config.json values (public model card / config). Checked against a third-party
# copy of the same config (mllm's configuration_qwen2vl: hidden 1536, intermediate 8960, 28 layers,
# 12 heads, 2 kv heads, vocab 151936, rope theta 1e6, mrope_section [16, 24, 24]; vision depth 32,
# embed_dim 1280, 16 heads, mlp_ratio 4, hidden_size 1536, patch 14, merge 2, temporal 2, tied embeddings).
CONFIGS: dict[str, dict[str, Any]] = {
    "2b": {
        "text": {
            "vocab_size": 151936,
            "hidden_size": 1536,
            "intermediate_size": 8960,
            "num_hidden_layers": 28,
            "num_attention_heads": 12,
            "num_key_value_heads": 2,
            "max_position_embeddings": 32768,
            "rms_norm_eps": 1e-6,
            "rope_theta": 1_000_000.0,
            "mrope_section": [16, 24, 24],
            "hidden_act": "silu",
        },
        "vision": {
            "depth": 32,
            "embed_dim": 1280,
            "hidden_size": 1536,
            "mlp_ratio": 4,
            "num_heads": 16,
            "in_channels": 3,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "hidden_act": "quick_gelu",
        },
        "tie_word_embeddings": True,
    },
    # A few layers of the same architecture, for CPU smoke runs (< 2 minutes on 2 cores).
    "small": {
        "text": {
            "vocab_size": 32768,
            "hidden_size": 128,
            "intermediate_size": 256,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "max_position_embeddings": 4096,
            "rms_norm_eps": 1e-6,
            "rope_theta": 1_000_000.0,
            "mrope_section": [4, 6, 6],
            "hidden_act": "silu",
        },
        "vision": {
            "depth": 2,
            "embed_dim": 32,
            "hidden_size": 128,
            "mlp_ratio": 2,
            "num_heads": 2,
            "in_channels": 3,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "hidden_act": "quick_gelu",
        },
        "tie_word_embeddings": True,
    },
}

#: Dense (no sparsity) bf16 tensor-core peaks in TFLOP/s, matched against ``torch.cuda.get_device_name``
#: in this order (first hit wins). Override with ``--peak-tflops``.
PEAK_BF16_TFLOPS: tuple[tuple[str, float], ...] = (
    ("H100 PCIe", 756.0),
    ("H100 NVL", 835.0),
    ("GH200", 989.0),
    ("H200", 989.0),
    ("H100", 989.0),  # SXM5 ("NVIDIA H100 80GB HBM3")
    ("H800", 989.0),
    ("B200", 2250.0),
    ("A100", 312.0),
    ("A800", 312.0),
    ("L40S", 362.0),
    ("L40", 181.0),
    ("L4", 121.0),
    ("A10G", 70.0),
    ("A10", 125.0),
    ("RTX 4090", 165.0),
    ("RTX 3090", 71.0),
)


def peak_tflops_for(device_name: str | None) -> float | None:
    """The card's dense bf16 peak (TFLOP/s) from its name, or ``None`` for an unknown card / CPU."""
    if not device_name:
        return None
    for key, value in PEAK_BF16_TFLOPS:
        if key.lower() in device_name.lower():
            return value
    return None


# -- FLOPs -----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Dims:
    """The numbers of a Qwen2-VL config that decide its FLOPs."""

    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    v_dim: int
    v_depth: int
    v_mlp_ratio: float
    v_patch: int
    v_temporal: int
    v_merge: int
    v_in: int

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> Dims:
        t, v = spec["text"], spec["vision"]
        return cls(
            hidden=t["hidden_size"], intermediate=t["intermediate_size"], layers=t["num_hidden_layers"],
            heads=t["num_attention_heads"], kv_heads=t["num_key_value_heads"],
            head_dim=t["hidden_size"] // t["num_attention_heads"], vocab=t["vocab_size"],
            v_dim=v["embed_dim"], v_depth=v["depth"], v_mlp_ratio=v["mlp_ratio"], v_patch=v["patch_size"],
            v_temporal=v["temporal_patch_size"], v_merge=v["spatial_merge_size"], v_in=v["in_channels"],
        )


def vision_flops(d: Dims, patches: int) -> float:
    """Forward FLOPs of the vision tower on one image of ``patches`` patches (full attention)."""
    p = float(patches)
    embed = 2 * p * (d.v_in * d.v_temporal * d.v_patch**2) * d.v_dim
    linear = 2 * p * (4 + 2 * d.v_mlp_ratio) * d.v_dim**2
    attention = 4 * p * p * d.v_dim
    s2 = d.v_merge**2
    merger = 2 * (p / s2) * ((s2 * d.v_dim) ** 2 + s2 * d.v_dim * d.hidden)
    return embed + d.v_depth * (linear + attention) + merger


def lm_flops(d: Dims, seq_len: int, logit_positions: int = 0) -> float:
    """Forward FLOPs of the language model on ``seq_len`` tokens (causal), lm_head on ``logit_positions``."""
    L = float(seq_len)
    qo = 2 * d.hidden * d.heads * d.head_dim
    kv = 2 * d.hidden * d.kv_heads * d.head_dim
    mlp = 3 * d.hidden * d.intermediate
    per_layer = 2 * L * (qo + kv + mlp) + 2 * L * L * d.heads * d.head_dim
    return d.layers * per_layer + 2.0 * logit_positions * d.hidden * d.vocab


def item_flops(d: Dims, patches: int, seq_len: int, logit_positions: int = 0) -> float:
    return (vision_flops(d, patches) if patches else 0.0) + lm_flops(d, seq_len, logit_positions)


def design_check(d: Dims, text_tokens: int = 30) -> dict[str, float]:
    """FLOPs of one 1024-visual-token page (the DESIGN.md figure: ~10.8 TFLOPs, ~73 % vision)."""
    patches = 1024 * d.v_merge**2
    vis = vision_flops(d, patches)
    total = vis + lm_flops(d, 1024 + text_tokens)
    return {"tflops_per_1024_token_page": total / 1e12, "vision_share": vis / total}


# -- model ----------------------------------------------------------------------------------------------
def make_config(spec: dict[str, Any], token_ids: dict[str, int]) -> Any:
    from transformers import Qwen2VLConfig

    t = dict(spec["text"])
    rope = {"rope_type": "default", "rope_theta": t.pop("rope_theta"), "mrope_section": t.pop("mrope_section")}
    return Qwen2VLConfig(
        text_config={
            **t,
            "rope_parameters": rope,
            "bos_token_id": token_ids["<|endoftext|>"],
            "eos_token_id": token_ids["<|im_end|>"],
            "pad_token_id": token_ids["<|endoftext|>"],
            "tie_word_embeddings": spec["tie_word_embeddings"],
        },
        vision_config=dict(spec["vision"]),
        image_token_id=token_ids["<|image_pad|>"],
        video_token_id=token_ids["<|video_pad|>"],
        vision_start_token_id=token_ids["<|vision_start|>"],
        vision_end_token_id=token_ids["<|vision_end|>"],
        tie_word_embeddings=spec["tie_word_embeddings"],
    )


def build_checkpoint(work: Path, config_name: str, device: str, save_dtype: str, seed: int = 0) -> dict[str, Any]:
    """Random-weight Qwen2-VL of ``config_name`` with the tiny tokenizer; embedder and reranker dirs."""
    import torch
    from transformers import AutoTokenizer, Qwen2VLForConditionalGeneration
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    from umr.recipes import write_recipe_marker
    from umr.testing import SPECIAL_TOKENS, build_tiny_model

    tiny = build_tiny_model(work / "tiny", recipe="gme", seed=seed)
    tokenizer = AutoTokenizer.from_pretrained(tiny)
    image_processor = Qwen2VLImageProcessorPil.from_pretrained(tiny)
    ids = {t: int(tokenizer.convert_tokens_to_ids(t)) for t in SPECIAL_TOKENS}
    spec = CONFIGS[config_name]
    if max(ids.values()) >= spec["text"]["vocab_size"] or len(tokenizer) > spec["text"]["vocab_size"]:
        raise RuntimeError("the tiny tokenizer's ids do not fit the config's vocabulary")
    config = make_config(spec, ids)
    emb_dir = work / f"qwen2-vl-{config_name}-random"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        with torch.device(device):
            model = Qwen2VLForConditionalGeneration(config)
    model.to(getattr(torch, save_dtype)).eval()
    params = sum(p.numel() for p in model.parameters())
    vision_params = sum(p.numel() for p in model.model.visual.parameters())
    model.save_pretrained(emb_dir)
    del model
    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    tokenizer.save_pretrained(emb_dir)
    image_processor.save_pretrained(emb_dir)
    write_recipe_marker(emb_dir, "gme", benchmark=True, config=config_name)
    # The reranker reads the same weights under another recipe: link the files, own marker.
    rr_dir = work / f"qwen2-vl-{config_name}-random-rerank"
    rr_dir.mkdir()
    for f in emb_dir.iterdir():
        if f.name != "umr.json":
            os.symlink(f, rr_dir / f.name)
    write_recipe_marker(rr_dir, "qwen-vl-yesno", benchmark=True, config=config_name)
    shutil.rmtree(tiny, ignore_errors=True)
    return {
        "embed_dir": str(emb_dir), "rerank_dir": str(rr_dir), "params": params,
        "vision_params": vision_params, "token_ids": ids, "save_dtype": save_dtype,
    }


# -- pages -----------------------------------------------------------------------------------------------
def page_size_for_tokens(tokens: int, factor: int = 28, aspect: float = math.sqrt(2)) -> tuple[int, int]:
    """(width, height) in pixels, multiples of ``factor``, giving exactly ``tokens`` merged visual tokens.

    Among the factor pairs ``h x w = tokens`` (h >= w) picks the one closest to an A4 page's aspect.
    """
    pairs = [(tokens // w, w) for w in range(1, math.isqrt(tokens) + 1) if tokens % w == 0]
    h, w = min(pairs, key=lambda hw: abs(math.log(hw[0] / hw[1]) - math.log(aspect)))
    return w * factor, h * factor


def make_pages(tokens: int, n: int, seed: int = 0) -> list[Any]:
    size = page_size_for_tokens(tokens)
    return [_common.make_page(size, seed + 1000 * tokens + i) for i in range(n)]


# -- measuring ------------------------------------------------------------------------------------------
class Meter:
    """Peak memory and synchronisation for one device."""

    def __init__(self, device: str) -> None:
        import torch

        self.torch = torch
        self.cuda = device.startswith("cuda")

    def sync(self) -> None:
        if self.cuda:
            self.torch.cuda.synchronize()

    def reset(self) -> None:
        if self.cuda:
            self.torch.cuda.synchronize()
            self.torch.cuda.reset_peak_memory_stats()

    def peak_gb(self) -> float | None:
        return self.torch.cuda.max_memory_allocated() / 1024**3 if self.cuda else None

    def free(self) -> None:
        gc.collect()
        if self.cuda:
            self.torch.cuda.empty_cache()


def row_for(
    *, task: str, impl: str, tokens: int, n: int, seq_lens: list[int], patches: list[int], seconds: float,
    dims: Dims, useful_logits: int, executed_logits: list[int], peak: float | None, meter: Meter,
    dtype: str, extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    useful = sum(item_flops(dims, p, s, useful_logits) for p, s in zip(patches, seq_lens))
    executed = sum(item_flops(dims, p, s, k) for p, s, k in zip(patches, seq_lens, executed_logits))
    achieved = useful / seconds / 1e12
    return {
        "task": task,
        "impl": impl,
        "visual_tokens": tokens,
        "pages": n,
        "dtype": dtype,
        "seq_tokens_per_page": sum(seq_lens) / n,
        "seconds": seconds,
        "pages_per_s": n / seconds,
        "tokens_per_s": sum(seq_lens) / seconds,
        "tflops_per_page": useful / n / 1e12,
        "executed_tflops_per_page": executed / n / 1e12,
        "achieved_tflops": achieved,
        "mfu": (achieved / peak) if peak else None,
        "peak_mem_gb": meter.peak_gb(),
        "peak_rss_mb": _common.peak_rss_mb(),
        **(extra or {}),
    }


def naive_prepare(tokenizer: Any, image_processor: Any, prompt: str, image: Any, min_px: int, max_px: int,
                  image_pad_id: int) -> tuple[dict[str, Any], int]:
    """What a first implementation does per page: process the image, expand the pads, tokenize."""
    import torch

    vis = image_processor(images=[image], size={"shortest_edge": min_px, "longest_edge": max_px}, return_tensors="pt")
    grid = vis["image_grid_thw"]
    n_tokens = int(grid.prod()) // 4
    text = prompt.replace("<|image_pad|>", "<|image_pad|>" * n_tokens, 1)
    enc = tokenizer(text, return_tensors="pt")
    batch = {
        "input_ids": enc["input_ids"],
        "attention_mask": enc["attention_mask"],
        "pixel_values": vis["pixel_values"],
        "image_grid_thw": grid,
        "mm_token_type_ids": (enc["input_ids"] == image_pad_id).to(torch.int32),
    }
    return batch, int(grid.prod())


def bench_naive(args: argparse.Namespace, ckpt: dict[str, Any], pages: dict[int, list[Any]], dims: Dims,
                meter: Meter, peak: float | None) -> list[dict[str, Any]]:
    """One page (or pair) per forward, full logits, fp32, inline PIL preprocessing."""
    import torch
    from transformers import AutoTokenizer, Qwen2VLForConditionalGeneration
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    from umr.prompting import fill
    from umr.recipes import EMBED_RECIPES, RERANK_RECIPES

    gme, rr = EMBED_RECIPES["gme"], RERANK_RECIPES["qwen-vl-yesno"]
    meter.reset()
    model = Qwen2VLForConditionalGeneration.from_pretrained(ckpt["embed_dir"], dtype=getattr(torch, args.naive_dtype))
    model.to(args.device).eval()
    tokenizer = AutoTokenizer.from_pretrained(ckpt["embed_dir"])
    image_processor = Qwen2VLImageProcessorPil.from_pretrained(ckpt["embed_dir"])
    pad_id = int(tokenizer.convert_tokens_to_ids("<|image_pad|>"))
    yes_id = tokenizer.encode(rr.yes_token, add_special_tokens=False)[0]
    no_id = tokenizer.encode(rr.no_token, add_special_tokens=False)[0]
    embed_prompt = fill(GME_TEMPLATE, instruction=gme.default_instruction, content=IMAGE_PLACEHOLDER)
    rerank_prompt = fill(rr.template, instruction=rr.default_instruction, query=QUERY, candidate=IMAGE_PLACEHOLDER)

    def embed_one(img: Any) -> tuple[int, int]:
        batch, patches = naive_prepare(tokenizer, image_processor, embed_prompt, img, gme.min_pixels,
                                       gme.max_pixels, pad_id)
        batch = {k: v.to(args.device) for k, v in batch.items()}
        batch["pixel_values"] = batch["pixel_values"].to(model.dtype)
        with torch.no_grad():
            out = model(**batch, output_hidden_states=True)
        vec = torch.nn.functional.normalize(out.hidden_states[-1][0, -1].float(), dim=-1).cpu()
        assert vec.shape[0] == dims.hidden
        return patches, int(batch["input_ids"].shape[1])

    def rerank_one(img: Any) -> tuple[int, int]:
        batch, patches = naive_prepare(tokenizer, image_processor, rerank_prompt, img, rr.min_pixels,
                                       rr.max_pixels, pad_id)
        batch = {k: v.to(args.device) for k, v in batch.items()}
        batch["pixel_values"] = batch["pixel_values"].to(model.dtype)
        with torch.no_grad():
            logits = model(**batch).logits  # (1, L, V): the lm_head over every position
        pair = logits[0, -1, [yes_id, no_id]].float()
        score = torch.softmax(pair, -1)[0].item()
        assert 0.0 <= score <= 1.0 or math.isnan(score)
        return patches, int(batch["input_ids"].shape[1])

    rows = []
    tasks = [("embed", embed_one)] + ([] if args.skip_rerank else [("rerank", rerank_one)])
    for task, one in tasks:
        one(pages[max(pages)][0])  # warm-up once, on the largest pages (allocator, lazy init)
        for tokens, imgs in pages.items():
            meter.reset()
            stats: list[tuple[int, int]] = []

            def run(imgs: list[Any] = imgs, stats: list[tuple[int, int]] = stats, one: Any = one) -> None:
                stats.clear()
                stats.extend(one(img) for img in imgs)

            timing = _common.time_it(run, warmup=0, repeats=args.repeats, sync=meter.sync)
            patches = [p for p, _ in stats]
            seqs = [s for _, s in stats]
            rows.append(row_for(
                task=task, impl="naive", tokens=tokens, n=len(imgs), seq_lens=seqs, patches=patches,
                seconds=timing.median, dims=dims, useful_logits=0 if task == "embed" else 1,
                executed_logits=seqs, peak=peak, meter=meter, dtype=args.naive_dtype,
                extra={"batch": 1},
            ))
            _progress(rows[-1])
    return rows  # the model goes with this frame; main() frees the cache


def bench_umr_embed(args: argparse.Namespace, ckpt: dict[str, Any], pages: dict[int, list[Any]], dims: Dims,
                    meter: Meter, peak: float | None) -> list[dict[str, Any]]:
    import umr

    meter.reset()
    kwargs: dict[str, Any] = {"device": args.device}
    for key in ("dtype", "max_batch_tokens", "batch_size", "attn_implementation"):
        if getattr(args, key, None) is not None:
            kwargs[key] = getattr(args, key)
    emb = umr.Embedder.from_pretrained(ckpt["embed_dir"], **kwargs)
    dtype = str(emb.dtype).replace("torch.", "")
    rows = []
    emb.embed_documents(pages[max(pages)][:4])  # warm-up once, on the largest pages
    shipped: dict[int, Any] = {}
    for tokens, imgs in pages.items():
        prepared = [emb.processor.prepare(i, umr.MultimodalInput.coerce(im), emb.build_prompt(im, "document"))
                    for i, im in enumerate(imgs)]
        for p in prepared:
            if p.geometry is None or p.geometry.num_tokens != tokens:
                raise RuntimeError(f"page planned for {tokens} visual tokens got {p.geometry}")
        meter.reset()
        out: list[Any] = []
        timing = _common.time_it(lambda imgs=imgs, out=out, emb=emb: out.append(emb.embed_documents(imgs)),
                                 warmup=0, repeats=args.repeats, sync=meter.sync)
        assert out[-1].shape == (len(imgs), emb.dim)
        shipped[tokens] = out[-1][:PARITY_PAGES]
        seqs = [p.num_tokens for p in prepared]
        rows.append(row_for(
            task="embed", impl="umr", tokens=tokens, n=len(imgs), seq_lens=seqs,
            patches=[p.geometry.num_tokens * dims.v_merge**2 for p in prepared], seconds=timing.median,
            dims=dims, useful_logits=0, executed_logits=[0] * len(imgs), peak=peak, meter=meter, dtype=dtype,
            extra={"max_batch_tokens": emb.max_batch_tokens, "batch_size": emb.batch_size},
        ))
        _progress(rows[-1])
    del emb
    meter.free()
    # Same meaning as the CPU path: the shipped dtype (bf16 on CUDA) against an fp32 run of the same weights.
    ref = umr.Embedder.from_pretrained(ckpt["embed_dir"], device=args.device, dtype="float32")
    for row in rows:
        tokens = row["visual_tokens"]
        want = ref.embed_documents(pages[tokens][:PARITY_PAGES])
        row["min_cos_vs_fp32"] = float((shipped[tokens] * want).sum(axis=1).min())
    del ref
    return rows


def rerank_costs(ckpt: dict[str, Any], imgs: list[Any]) -> tuple[list[int], list[int]]:
    """Sequence length and patches of (QUERY, page) pairs under the reranker recipe's pixel budget."""
    from transformers import AutoTokenizer
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    from umr.inputs import MultimodalInput
    from umr.processing import Processor
    from umr.prompting import fill
    from umr.recipes import RERANK_RECIPES

    rr = RERANK_RECIPES["qwen-vl-yesno"]
    tok = AutoTokenizer.from_pretrained(ckpt["rerank_dir"])
    ip = Qwen2VLImageProcessorPil.from_pretrained(ckpt["rerank_dir"])
    proc = Processor(tok, ip, image_pad_token=rr.image_pad_token, min_pixels=rr.min_pixels,
                     max_pixels=rr.max_pixels, max_length=rr.max_length, pre_resize=rr.pre_resize,
                     padding_side=rr.padding_side)
    prompt = fill(rr.template, instruction=rr.default_instruction, query=QUERY, candidate=rr.image_placeholder)
    seqs, patches = [], []
    for i, im in enumerate(imgs):
        p = proc.prepare(i, MultimodalInput(image=im), prompt)
        assert p.geometry is not None
        seqs.append(p.num_tokens)
        patches.append(p.geometry.num_tokens * proc.merge_size**2)
    return seqs, patches


def bench_umr_rerank(args: argparse.Namespace, ckpt: dict[str, Any], pages: dict[int, list[Any]], dims: Dims,
                     meter: Meter, peak: float | None, skipped: list[dict[str, str]]) -> list[dict[str, Any]]:
    import umr

    try:
        reranker_cls = umr.Reranker
    except (AttributeError, ImportError) as exc:
        reason = (f"umr.Reranker is not available in this checkout ({type(exc).__name__}: {exc}); it comes "
                  "from branch 'rerank' -- merge main once it has landed to benchmark batched reranking")
        skipped.append({"what": "rerank/umr", "reason": reason})
        print(f"SKIP rerank/umr: {reason}", file=sys.stderr)
        return []
    meter.reset()
    sig = inspect.signature(reranker_cls.from_pretrained)
    kwargs: dict[str, Any] = {"device": args.device}
    for key in ("dtype", "max_batch_tokens", "batch_size", "attn_implementation"):
        if getattr(args, key, None) is not None and key in sig.parameters:
            kwargs[key] = getattr(args, key)
    try:
        rr = reranker_cls.from_pretrained(ckpt["rerank_dir"], **kwargs)
        score = rr.score
    except (TypeError, AttributeError) as exc:
        reason = f"umr.Reranker has an API this script does not know ({exc}); update bench_umr_rerank"
        skipped.append({"what": "rerank/umr", "reason": reason})
        print(f"SKIP rerank/umr: {reason}", file=sys.stderr)
        return []
    dtype = str(getattr(rr, "dtype", args.dtype or "?")).replace("torch.", "")
    rows = []
    try:
        score(QUERY, pages[max(pages)][:4])  # warm-up once, on the largest pages
    except TypeError as exc:
        reason = f"umr.Reranker.score(query, candidates) does not take (str, list of PIL pages): {exc}"
        skipped.append({"what": "rerank/umr", "reason": reason})
        print(f"SKIP rerank/umr: {reason}", file=sys.stderr)
        return []
    for tokens, imgs in pages.items():
        seqs, patches = rerank_costs(ckpt, imgs)
        meter.reset()
        out: list[Any] = []
        timing = _common.time_it(lambda imgs=imgs, out=out: out.append(score(QUERY, imgs)),
                                 warmup=0, repeats=args.repeats, sync=meter.sync)
        if len(out[-1]) != len(imgs):
            raise RuntimeError(f"umr.Reranker.score returned {len(out[-1])} scores for {len(imgs)} candidates")
        rows.append(row_for(
            task="rerank", impl="umr", tokens=tokens, n=len(imgs), seq_lens=seqs, patches=patches,
            seconds=timing.median, dims=dims, useful_logits=1, executed_logits=[1] * len(imgs), peak=peak,
            meter=meter, dtype=dtype,
        ))
        _progress(rows[-1])
    return rows


def _progress(row: dict[str, Any]) -> None:
    print(f"  {row['task']:<6} {row['impl']:<5} {row['visual_tokens']:>5} tok  {row['pages_per_s']:8.2f} pages/s  "
          f"{row['achieved_tflops']:8.3f} TFLOP/s", file=sys.stderr, flush=True)


# -- driver ----------------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--device", default=None, help="cuda, cuda:1 or cpu (default: cuda when available)")
    p.add_argument("--config", choices=sorted(CONFIGS), default=None,
                   help="2b: real Qwen2-VL-2B sizes; small: a few layers for CPU smoke runs "
                        "(default: 2b on CUDA, small on CPU)")
    p.add_argument("--pages", type=int, default=None, help="pages per size (default 16 on 2b, 2 on small)")
    p.add_argument("--sizes", default=",".join(str(s) for s in DEFAULT_SIZES),
                   help="visual tokens per page, comma list (default 768,1024,1280)")
    p.add_argument("--repeats", type=int, default=1, help="timed passes per row; median reported (default 1)")
    p.add_argument("--skip-naive", action="store_true", help="only measure UMR")
    p.add_argument("--skip-rerank", action="store_true", help="only measure embedding")
    p.add_argument("--dtype", default=None, help="UMR dtype (default: as shipped, bf16 on CUDA, fp32 on CPU)")
    p.add_argument("--naive-dtype", default="float32", help="dtype of the naive loop (default float32)")
    p.add_argument("--attn-implementation", default=None, help="UMR attention: sdpa | flash_attention_2 | eager")
    p.add_argument("--max-batch-tokens", type=int, default=None, help="UMR token budget (default as shipped)")
    p.add_argument("--batch-size", type=int, default=None, help="UMR max items per batch (default as shipped)")
    p.add_argument("--peak-tflops", type=float, default=None, help="override the card's dense bf16 peak")
    p.add_argument("--work-dir", default=None, help="where the random checkpoint is written (default: a temp dir)")
    p.add_argument("--out", default=None, help="JSON path (default benchmarks/results/gpu_throughput.json)")
    args = p.parse_args(argv)
    if args.device is None:
        import torch

        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.config is None:
        args.config = "2b" if args.device.startswith("cuda") else "small"
    if args.pages is None:
        args.pages = 16 if args.config == "2b" else 2
    try:
        args.sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    except ValueError:
        p.error(f"--sizes must be a comma list of integers, got {args.sizes!r}")
    if args.pages < 1 or args.repeats < 1 or not args.sizes:
        p.error("--pages and --repeats must be >= 1 and --sizes must name at least one size")
    _common.ensure_umr_importable()
    from umr.recipes import EMBED_RECIPES

    gme = EMBED_RECIPES["gme"]
    lo, hi = gme.min_pixels // 28**2, gme.max_pixels // 28**2
    bad = [t for t in args.sizes if not lo <= t <= hi]
    if bad:
        p.error(f"--sizes {bad} outside the GME pixel budget: pages hold {lo} to {hi} visual tokens")
    if args.naive_dtype not in ("float32", "bfloat16", "float16"):
        p.error("--naive-dtype must be float32, bfloat16 or float16")
    if args.config == "2b" and not args.device.startswith("cuda"):
        print("warning: the 2b config on CPU takes very long; use --config small for a smoke run", file=sys.stderr)
    return args


COLUMNS = [
    Column("task", "task"),
    Column("impl", "impl"),
    Column("dtype", "dtype"),
    Column("visual_tokens", "vis tok"),
    Column("pages", "pages"),
    Column("seq_tokens_per_page", "seq tok", "{:.0f}"),
    Column("pages_per_s", "pages/s", "{:.2f}"),
    Column("tokens_per_s", "tok/s", "{:.0f}"),
    Column("tflops_per_page", "TFLOP/page", "{:.3f}"),
    Column("achieved_tflops", "TFLOP/s", "{:.3f}"),
    Column("mfu", "MFU", lambda v: f"{100 * v:.1f}%"),
    Column("peak_mem_gb", "peak GiB", "{:.2f}"),
    Column("speedup", "x naive", "{:.1f}"),
    Column("min_cos_vs_fp32", "cos fp32", "{:.4f}"),
]

PARITY_PAGES = 4  # pages per size embedded again in fp32 for the parity column


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark; print the table, write the JSON, return the payload."""
    args = parse_args(argv)
    _common.offline_env()
    _common.ensure_umr_importable()
    import torch
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("--device cuda was asked for but CUDA is not available; use --device cpu --config small")
    meter = Meter(args.device)
    device_name = torch.cuda.get_device_name(torch.device(args.device)) if meter.cuda else "cpu"
    peak = args.peak_tflops if args.peak_tflops is not None else peak_tflops_for(device_name if meter.cuda else None)
    dims = Dims.from_spec(CONFIGS[args.config])
    check = design_check(dims)
    save_dtype = "bfloat16" if meter.cuda else "float32"
    results: list[dict[str, Any]] = []
    skipped: list[dict[str, str]] = []
    work_parent = args.work_dir
    if work_parent is not None:
        Path(work_parent).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="umr-gpu-bench-", dir=work_parent) as tmp:
        ckpt = build_checkpoint(Path(tmp), args.config, args.device, save_dtype)
        print(f"built {args.config} checkpoint: {ckpt['params'] / 1e9:.3f} B params "
              f"({ckpt['vision_params'] / 1e9:.3f} B vision) on {device_name}", file=sys.stderr, flush=True)
        pages = {t: make_pages(t, args.pages) for t in args.sizes}
        if not args.skip_naive:
            results += bench_naive(args, ckpt, pages, dims, meter, peak)
            meter.free()
        elif not args.skip_rerank:
            skipped.append({"what": "rerank/naive", "reason": "--skip-naive"})
        results += bench_umr_embed(args, ckpt, pages, dims, meter, peak)
        meter.free()
        if not args.skip_rerank:
            results += bench_umr_rerank(args, ckpt, pages, dims, meter, peak, skipped)
            meter.free()

    summary: dict[str, Any] = {"speedup_vs_naive": {}}
    for r in results:
        if r["impl"] != "umr":
            continue
        base = next((b for b in results if b["impl"] == "naive" and b["task"] == r["task"]
                     and b["visual_tokens"] == r["visual_tokens"]), None)
        if base is not None:
            r["speedup"] = r["pages_per_s"] / base["pages_per_s"]
            summary["speedup_vs_naive"][f"{r['task']}/{r['visual_tokens']}"] = r["speedup"]
    cosines = [r["min_cos_vs_fp32"] for r in results if "min_cos_vs_fp32" in r]
    if cosines:
        summary["embed_min_cosine_vs_fp32"] = min(cosines)
        summary["embed_parity_ok"] = min(cosines) >= 0.99  # issue 9: bf16 vs fp32 cosine >= 0.99
    check_2b = design_check(Dims.from_spec(CONFIGS["2b"]))
    summary["flops_check"] = {
        "config": args.config, **check,
        "2b_tflops_per_1024_token_page": check_2b["tflops_per_1024_token_page"],
        "2b_vision_share": check_2b["vision_share"],
        "design_md_tflops_per_1024_token_page": 10.8,
        "design_md_vision_share": 0.73,
    }
    settings = {
        "device": args.device, "device_name": device_name, "config": args.config,
        "config_values": CONFIGS[args.config], "params": ckpt["params"], "vision_params": ckpt["vision_params"],
        "pages_per_size": args.pages, "sizes": args.sizes, "page_pixels": {t: page_size_for_tokens(t) for t in args.sizes},
        "repeats": args.repeats, "umr_dtype": args.dtype, "naive_dtype": args.naive_dtype,
        "attn_implementation": args.attn_implementation, "max_batch_tokens": args.max_batch_tokens,
        "batch_size": args.batch_size, "peak_bf16_tflops": peak, "query": QUERY,
    }
    notes = [
        "useful FLOPs: vision tower + language model (+ lm_head at 1 position for reranking); see module doc.",
        "naive executes the lm_head at every position too: executed_tflops_per_page.",
        "MFU = achieved useful TFLOP/s / the card's dense bf16 peak (also for the fp32 naive loop).",
        "peak_mem_gb: torch.cuda.max_memory_allocated per row (weights included); peak_rss_mb is cumulative.",
        f"cos fp32: smallest cosine between the shipped embeddings and an fp32 run of the same weights "
        f"(first {PARITY_PAGES} pages per size); the target is >= 0.99.",
    ]
    payload = _common.result_payload(NAME, settings, results, summary=summary, skipped=skipped, notes=notes)
    path = _common.write_json(payload, args.out, NAME)
    _common.print_table(results, COLUMNS, title=f"Qwen2-VL {args.config} (random weights) on {device_name}"
                        + (f", peak {peak:.0f} bf16 TFLOP/s" if peak else ""))
    print(f"FLOPs check: Qwen2-VL-2B {check_2b['tflops_per_1024_token_page']:.2f} TFLOPs per 1024-token page, "
          f"{100 * check_2b['vision_share']:.0f}% in the vision tower (DESIGN.md: ~10.8, ~73%); "
          f"this run's config ({args.config}): {check['tflops_per_1024_token_page']:.4f} TFLOPs")
    for s in skipped:
        print(f"skipped {s['what']}: {s['reason']}")
    print(f"wrote {path}")
    return payload


if __name__ == "__main__":
    main()
