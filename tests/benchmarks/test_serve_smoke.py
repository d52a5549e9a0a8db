"""Smoke test of ``benchmarks/serve.py`` at its smallest settings (servers as threads): the JSON has a row
per endpoint, mode and client count, every request answered. Speed itself is never asserted."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

BENCH_DIR = Path(__file__).resolve().parents[2] / "benchmarks"

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")


def _load_bench():
    if str(BENCH_DIR) not in sys.path:
        sys.path.insert(0, str(BENCH_DIR))
    if "serve_bench" in sys.modules:
        return sys.modules["serve_bench"]
    spec = importlib.util.spec_from_file_location("serve_bench", BENCH_DIR / "serve.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["serve_bench"] = module
    spec.loader.exec_module(module)
    return module


def test_serve_benchmark_smoke(tiny_model_dir: Path, tiny_reranker_dir: Path, tmp_path: Path) -> None:
    bench = _load_bench()
    out = tmp_path / "serve.json"
    payload = bench.main([
        "--clients", "1,3", "--requests", "6", "--rerank-requests", "3", "--repeats", "1", "--warmup", "1",
        "--server", "thread", "--model-dir", str(tiny_model_dir), "--reranker-dir", str(tiny_reranker_dir),
        "--out", str(out),
    ])
    data = json.loads(out.read_text())
    assert data["benchmark"] == payload["benchmark"] == "serve"
    rows = {(r["endpoint"], r["batching"], r["clients"]): r for r in data["results"]}
    want = {(e, m, c) for e in bench.ENDPOINTS for m in bench.MODES for c in (1, 3)}
    want |= {(e, "in-process", 1) for e in bench.ENDPOINTS}
    assert set(rows) == want
    for key, row in rows.items():
        assert row["errors"] == 0, key
        assert row["rps"] > 0 and 0 < row["p50_ms"] <= row["p95_ms"], key
        if key[1] != "in-process":
            assert row["requests"] >= 3, key
    for endpoint in bench.ENDPOINTS:
        s = data["summary"][endpoint]
        assert s["speedup_at_3_clients"] > 0 and s["p95_1_client_vs_inprocess"] > 0
