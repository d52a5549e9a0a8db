"""Smoke test of benchmarks/train_shapes.py at its smallest settings (speed itself is never asserted)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

pytest.importorskip("peft")

BENCH_DIR = Path(__file__).resolve().parents[2] / "benchmarks"


def _load():
    if str(BENCH_DIR) not in sys.path:
        sys.path.insert(0, str(BENCH_DIR))
    spec = importlib.util.spec_from_file_location("train_shapes", BENCH_DIR / "train_shapes.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["train_shapes"] = module
    spec.loader.exec_module(module)
    return module


def test_train_shapes_smoke(tmp_path: Path) -> None:
    bench = _load()
    out = tmp_path / "train_shapes.json"
    payload = bench.main([
        "--configs", "lora", "lora-chunk", "--colours", "2", "--shapes", "2", "--per-class", "2",
        "--test-per-class", "1", "--epochs", "1", "--batch-size", "4", "--out", str(out),
    ])
    data = json.loads(out.read_text())
    assert data["benchmark"] == payload["benchmark"] == "train_shapes"
    assert {"benchmark", "created", "machine", "settings", "results", "summary"} <= set(data)
    rows = {r["config"]: r for r in data["results"]}
    assert set(rows) == {"lora", "lora-chunk"}
    for row in rows.values():
        assert row["steps"] == 2 and row["seconds"] > 0
        assert 0.0 <= row["recall@1_before"] <= 1.0 and 0.0 <= row["recall@1_after"] <= 1.0
    # GradCache chunks give the same gradients, so the same trained model (up to float rounding)
    assert rows["lora"]["recall@1_after"] == rows["lora-chunk"]["recall@1_after"]
    assert abs(rows["lora"]["final_loss"] - rows["lora-chunk"]["final_loss"]) < 1e-3
