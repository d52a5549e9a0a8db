"""Smoke tests of the scripts in ``benchmarks/``: each ``main()`` at its smallest settings writes a JSON
with the expected keys and positive numbers. Speed itself is never asserted here (see the JSON files).
Also checks the analytic FLOPs formula of ``gpu_throughput.py`` against a real model's weight shapes.
"""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH_DIR = Path(__file__).resolve().parents[2] / "benchmarks"


def _load(name: str) -> ModuleType:
    if str(BENCH_DIR) not in sys.path:
        sys.path.insert(0, str(BENCH_DIR))
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, BENCH_DIR / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def embed_cpu() -> ModuleType:
    return _load("embed_cpu")


@pytest.fixture(scope="module")
def gpu_throughput() -> ModuleType:
    return _load("gpu_throughput")


def _has_reranker() -> bool:
    import umr

    try:
        umr.Reranker  # noqa: B018
    except (AttributeError, ImportError):
        return False
    return True


# -- _common --------------------------------------------------------------------------------------------
def test_common_table_json_and_timing(tmp_path: Path) -> None:
    common = _load("_common")
    calls: list[int] = []
    timing = common.time_it(lambda: calls.append(1), warmup=2, repeats=3)
    assert len(calls) == 5 and len(timing.times) == 3
    assert timing.best <= timing.median <= max(timing.times)
    with pytest.raises(ValueError, match="repeats"):
        common.time_it(lambda: None, repeats=0)

    rows = [{"name": "a", "x": 1.5, "y": None}, {"name": "long-name", "x": 22.25, "y": 3}]
    cols = [common.Column("name", "name"), common.Column("x", "x", "{:.1f}"), common.Column("y", "y")]
    lines = common.format_table(rows, cols, title="T").splitlines()
    assert lines[0] == "T"
    assert lines[1].split() == ["name", "x", "y"]
    assert lines[3].split() == ["a", "1.5", "-"] and lines[4].split() == ["long-name", "22.2", "3"]
    assert len({len(line) for line in lines[2:]}) <= 2  # columns aligned

    payload = common.result_payload("demo", {"k": 1}, [{"v": float("nan"), "p": tmp_path}])
    path = common.write_json(payload, tmp_path / "sub" / "demo.json")
    data = json.loads(path.read_text())
    assert data["benchmark"] == "demo" and data["results"] == [{"v": None, "p": str(tmp_path)}]
    assert data["machine"]["cpu_count"] >= 1 and data["machine"]["torch"]
    assert common.peak_rss_mb() > 10


def test_run_isolated_reports_child_failure(tmp_path: Path) -> None:
    common = _load("_common")
    script = tmp_path / "phase.py"
    script.write_text("def ok(x):\n    return {'double': 2 * x}\n\ndef bad():\n    raise ValueError('boom')\n")
    assert common.run_isolated(script, "ok", {"x": 21}, timeout=120) == {"double": 42}
    with pytest.raises(common.IsolatedPhaseError, match="boom"):
        common.run_isolated(script, "bad", {}, timeout=120)


# -- embed_cpu ------------------------------------------------------------------------------------------
def test_embed_cpu_smoke(embed_cpu: ModuleType, tiny_model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "embed_cpu.json"
    payload = embed_cpu.main([
        "--n-text", "3", "--n-image", "1", "--n-page", "1", "--n-fused", "1",
        "--repeats", "1", "--warmup", "0", "--no-isolate",
        "--model-dir", str(tiny_model_dir), "--out", str(out),
    ])
    data = json.loads(out.read_text())
    assert data["benchmark"] == payload["benchmark"] == "embed_cpu"
    assert {"benchmark", "created", "machine", "settings", "results", "summary"} <= set(data)
    rows = {(r["kind"], r["mode"]): r for r in data["results"]}
    assert set(rows) == {(k, m) for k in embed_cpu.KINDS for m in embed_cpu.MODES}
    for row in rows.values():
        for key in ("items_per_s", "ms_per_item", "tokens_per_item", "tokens_per_s", "peak_rss_mb",
                    "rss_after_load_mb", "seconds_median"):
            assert row[key] > 0, (row["kind"], row["mode"], key)
        assert math.isclose(row["items_per_s"] * row["seconds_median"], row["n"], rel_tol=1e-6)
        assert row["rss_isolated"] is False
    # token costs follow the inputs: a 1240x1754 page costs more than a 512x512 image, which costs more
    # than its caption alone would
    assert rows[("page", "batched")]["tokens_per_item"] > rows[("image", "batched")]["tokens_per_item"] > 256
    assert rows[("fused", "batched")]["tokens_per_item"] > rows[("image", "batched")]["tokens_per_item"]
    assert set(data["summary"]["batched_speedup"]) == set(embed_cpu.KINDS)


@pytest.mark.slow
def test_embed_cpu_isolated_phases(embed_cpu: ModuleType, tiny_model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "iso.json"
    embed_cpu.main([
        "--kinds", "text", "--modes", "batched", "--n-text", "2", "--repeats", "1", "--warmup", "0",
        "--model-dir", str(tiny_model_dir), "--out", str(out),
    ])
    rows = json.loads(out.read_text())["results"]
    assert [(r["kind"], r["mode"]) for r in rows] == [("text", "batched")]
    for r in rows:
        assert r["rss_isolated"] is True and r["items_per_s"] > 0
        assert r["peak_rss_mb"] >= r["rss_after_load_mb"] > 0


def test_embed_cpu_rejects_unknown_kind(embed_cpu: ModuleType) -> None:
    with pytest.raises(SystemExit):
        embed_cpu.parse_args(["--kinds", "video"])


# -- gpu_throughput ------------------------------------------------------------------------------------
def test_flops_formula_matches_model_weights(gpu_throughput: ModuleType) -> None:
    """The linear terms of the formula are 2 x (weights touched) x tokens, counted on a real model."""
    import torch
    from transformers import Qwen2VLForConditionalGeneration

    gt = gpu_throughput
    ids = {t: i for i, t in enumerate(
        ["<|endoftext|>", "<|im_end|>", "<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>"]
    )}
    spec = gt.CONFIGS["small"]
    model = Qwen2VLForConditionalGeneration(gt.make_config(spec, ids))
    dims = gt.Dims.from_spec(spec)

    def linear_weights(module: torch.nn.Module) -> int:
        return sum(m.weight.numel() for m in module.modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv3d)))

    patches, seq = 64, 40
    visual = model.model.visual
    attention = dims.v_depth * 4 * patches**2 * dims.v_dim
    expected_vision = (
        2 * patches * (linear_weights(visual.patch_embed) + linear_weights(visual.blocks))
        + 2 * (patches // dims.v_merge**2) * linear_weights(visual.merger)
        + attention
    )
    assert math.isclose(gt.vision_flops(dims, patches), expected_vision, rel_tol=1e-9)
    lm = model.model.language_model
    lm_attention = dims.layers * 2 * seq * seq * dims.heads * dims.head_dim
    expected_lm = 2 * seq * linear_weights(lm.layers) + lm_attention
    assert math.isclose(gt.lm_flops(dims, seq), expected_lm, rel_tol=1e-9)
    head = 2 * 5 * model.lm_head.weight.numel()
    assert math.isclose(gt.lm_flops(dims, seq, logit_positions=5) - gt.lm_flops(dims, seq), head, rel_tol=1e-9)


def test_flops_match_design_figure_and_page_sizes(gpu_throughput: ModuleType) -> None:
    gt = gpu_throughput
    check = gt.design_check(gt.Dims.from_spec(gt.CONFIGS["2b"]))
    assert 10.5 < check["tflops_per_1024_token_page"] < 11.1  # DESIGN.md: ~10.8 TFLOPs
    assert 0.70 < check["vision_share"] < 0.76  # DESIGN.md: ~73 % in the vision tower
    for tokens in (768, 1024, 1280):
        w, h = gt.page_size_for_tokens(tokens)
        assert w % 28 == 0 and h % 28 == 0 and (w // 28) * (h // 28) == tokens and h >= w
    assert gt.peak_tflops_for("NVIDIA H100 80GB HBM3") == 989.0
    assert gt.peak_tflops_for("NVIDIA H100 PCIe") == 756.0
    assert gt.peak_tflops_for("NVIDIA A100-SXM4-80GB") == 312.0
    assert gt.peak_tflops_for("NVIDIA L4") == 121.0
    assert gt.peak_tflops_for("NVIDIA L40S") == 362.0
    assert gt.peak_tflops_for("Some Future Card") is None


def test_gpu_throughput_rejects_sizes_outside_budget(gpu_throughput: ModuleType) -> None:
    with pytest.raises(SystemExit):
        gpu_throughput.parse_args(["--device", "cpu", "--sizes", "16"])


def test_gpu_throughput_cpu_smoke(gpu_throughput: ModuleType, tmp_path: Path) -> None:
    out = tmp_path / "gpu.json"
    gpu_throughput.main([
        "--device", "cpu", "--config", "small", "--pages", "1", "--sizes", "256",
        "--work-dir", str(tmp_path / "work"), "--out", str(out),
    ])
    data = json.loads(out.read_text())
    assert {"benchmark", "machine", "settings", "results", "summary", "skipped"} <= set(data)
    assert data["settings"]["config"] == "small" and data["settings"]["device_name"] == "cpu"
    rows = {(r["task"], r["impl"], r["visual_tokens"]): r for r in data["results"]}
    expected = {("embed", "naive", 256), ("embed", "umr", 256), ("rerank", "naive", 256)}
    if _has_reranker():
        expected.add(("rerank", "umr", 256))
    else:
        assert any(s["what"] == "rerank/umr" and "Reranker" in s["reason"] for s in data["skipped"])
    assert set(rows) == expected
    for row in rows.values():
        for key in ("pages_per_s", "tokens_per_s", "tflops_per_page", "achieved_tflops", "seconds"):
            assert row[key] > 0, (row["task"], row["impl"], key)
        assert row["mfu"] is None and row["peak_mem_gb"] is None  # no peak known for a CPU
        assert row["seq_tokens_per_page"] > 256
    naive, fast = rows[("embed", "naive", 256)], rows[("embed", "umr", 256)]
    # both paths see the same page at the same cost; only the naive one pays for full logits
    assert naive["seq_tokens_per_page"] == fast["seq_tokens_per_page"]
    assert math.isclose(naive["tflops_per_page"], fast["tflops_per_page"], rel_tol=1e-9)
    assert naive["executed_tflops_per_page"] > naive["tflops_per_page"]
    assert fast["executed_tflops_per_page"] == fast["tflops_per_page"]
    assert "embed/256" in data["summary"]["speedup_vs_naive"]
    assert fast["min_cos_vs_fp32"] > 0.9999 and data["summary"]["embed_parity_ok"] is True
    check = data["summary"]["flops_check"]
    assert 0 < check["tflops_per_1024_token_page"] < check["2b_tflops_per_1024_token_page"]
    assert not (tmp_path / "work").exists() or not any((tmp_path / "work").iterdir())  # checkpoint removed


def test_gpu_throughput_bf16_parity_column(gpu_throughput: ModuleType, tmp_path: Path) -> None:
    """The shipped dtype is compared with an fp32 run of the same weights (issue 9: cosine >= 0.99)."""
    out = tmp_path / "gpu-bf16.json"
    gpu_throughput.main([
        "--device", "cpu", "--config", "small", "--pages", "1", "--sizes", "256", "--dtype", "bfloat16",
        "--skip-naive", "--skip-rerank", "--work-dir", str(tmp_path / "work"), "--out", str(out),
    ])
    data = json.loads(out.read_text())
    (row,) = data["results"]
    assert row["impl"] == "umr" and row["dtype"] == "bfloat16"
    assert 0.99 <= row["min_cos_vs_fp32"] < 1.0 - 1e-7  # bf16 really ran, and means the same
    assert data["summary"]["embed_min_cosine_vs_fp32"] == row["min_cos_vs_fp32"]


# -- ingest.py --------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_ingest_quick_writes_stages_naive_and_memory(tmp_path: Path) -> None:
    ingest = _load("ingest")
    out = tmp_path / "ingest.json"
    assert ingest.main(["--quick", "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["benchmark"] == "ingest"
    stages = data["stages"]["cpu_ms_per_page"]
    for key in ("render", "handoff", "resize_1", "png_encode", "embed_forward", "chroma_upsert",
                "render (planned size)", "normalise+patchify (fast, planned, no resize)"):
        assert stages[key] >= 0 and math.isfinite(stages[key])
    assert data["stages"]["fast_patchify_enabled"] is True
    # planned-size rendering: A4 drawn at GME's grid, the size the embedder would resize to
    assert data["stages"]["planned_size"] == data["stages"]["final_size"] == [840, 1176]
    assert set(data["stages"]["preprocess_cpu_ms_per_page"]) == {"transformers", "fast", "planned"}
    summary = data["summary"]
    assert summary["naive_pages_per_s"] > 0 and summary["after_pages_per_s"] > 0
    assert summary["after_peak_rss_mib"]["short"] > 0
    assert data["end_to_end"]["after"][0]["pages"] == data["settings"]["pages"]
    assert data["end_to_end"]["after"][0]["render"] == "planned"  # the default of a new store
