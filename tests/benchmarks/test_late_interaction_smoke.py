"""Smoke test of ``benchmarks/late_interaction.py``: the tiny mode writes a JSON with the expected rows,
recalls in [0, 1] that rise with depth for the exact stores, and bytes per page that pooling shrinks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.benchmarks.test_benchmarks_smoke import _load


def test_late_interaction_smoke(tmp_path: Path) -> None:
    bench = _load("late_interaction")
    out = tmp_path / "late.json"
    bench.main(["--smoke", "--out", str(out)])
    data = json.loads(out.read_text())
    assert data["benchmark"] == "late_interaction"
    assert {"benchmark", "created", "machine", "settings", "results", "latency", "storage"} <= set(data)
    rows = data["results"]
    stages = ("mean (cosine)", "fde r10 k4 p16", "centroids 64 (PLAID-style)", "warp 64 c 4-bit nprobe 4",
              "warp 64 c 4-bit nprobe 16")
    assert {r["first_stage"] for r in rows} == set(stages)
    for stage in stages:
        plain = {r["depth"]: r["recall_at_10"] for r in rows if r["first_stage"] == stage and r["store"] == "float16"}
        assert set(plain) == {20, 50} and 0 <= plain[20] <= plain[50] <= 1
    storage = {(r["source"], r["store"]): r["kb_per_page"] for r in data["storage"]}
    assert storage[("48-token pages", "float16 pool 3")] < storage[("48-token pages", "float16 pool 2")] < (
        storage[("48-token pages", "float16")])
    assert all(r["rerank_ms"] > 0 for r in data["latency"])
    (index,) = data["first_stage_index"]
    assert index["first_stage"] == "warp 64 c 4-bit" and index["memory_mb"] > 0 and index["fit_s"] > 0
    latency_stages = {r["first_stage"] for r in data["latency"]}
    assert {"warp 64 c 4-bit nprobe 4", "warp 64 c 4-bit nprobe 16"} <= latency_stages
    with pytest.raises(SystemExit):
        bench.parse_args(["--sizes", "10", "--depths", "50"])
