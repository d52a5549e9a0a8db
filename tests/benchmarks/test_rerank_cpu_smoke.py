"""Smoke test of ``benchmarks/rerank_cpu.py`` at its smallest settings: the JSON has the expected rows,
positive numbers and batched scores equal to one-by-one scores. Speed itself is never asserted."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parents[2] / "benchmarks"


def _load_rerank_cpu():
    if str(BENCH_DIR) not in sys.path:
        sys.path.insert(0, str(BENCH_DIR))
    if "rerank_cpu" in sys.modules:
        return sys.modules["rerank_cpu"]
    spec = importlib.util.spec_from_file_location("rerank_cpu", BENCH_DIR / "rerank_cpu.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["rerank_cpu"] = module
    spec.loader.exec_module(module)
    return module


def test_rerank_cpu_smoke(tiny_reranker_dir: Path, tmp_path: Path) -> None:
    bench = _load_rerank_cpu()
    out = tmp_path / "rerank_cpu.json"
    payload = bench.main([
        "--n-text", "3", "--n-image", "1", "--n-page", "1", "--n-fused", "1", "--repeats", "1",
        "--warmup", "0", "--model-dir", str(tiny_reranker_dir), "--out", str(out),
    ])
    data = json.loads(out.read_text())
    assert data["benchmark"] == payload["benchmark"] == "rerank_cpu"
    assert {"benchmark", "created", "machine", "settings", "results", "summary"} <= set(data)
    rows = {(r["kind"], r["mode"]): r for r in data["results"]}
    assert set(rows) == {(k, m) for k in bench.KINDS for m in bench.MODES}
    for row in rows.values():
        assert row["pairs_per_s"] > 0 and row["tokens_per_pair"] > 0
        assert math.isclose(row["pairs_per_s"] * row["seconds_median"], row["n"], rel_tol=1e-6)
        assert row["max_abs_score_diff"] <= 1e-5
    # a page costs more tokens than a photo, which costs more than a short text passage
    assert rows[("page", "batched")]["tokens_per_pair"] > rows[("image", "batched")]["tokens_per_pair"]
    assert set(data["summary"]["batched_speedup"]) == set(bench.KINDS)
