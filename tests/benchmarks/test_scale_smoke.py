"""Smoke test of ``benchmarks/scale.py``: the smallest run writes a JSON with the expected rows and
positive numbers (speed is never asserted).  The Ray rows start Ray and actors: marked slow."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.benchmarks.test_benchmarks_smoke import _load


def _check(out: Path, modes: list[tuple[str, int]]) -> None:
    data = json.loads(out.read_text())
    assert data["benchmark"] == "scale"
    assert {"benchmark", "created", "machine", "settings", "results"} <= set(data)
    assert [(r["mode"], r["actors"]) for r in data["results"]] == modes
    for r in data["results"]:
        assert r["pages"] == data["settings"]["pages"] and r["failed"] == 0
        assert r["seconds"] > 0 and r["pages_per_s"] > 0


def test_scale_local_smoke(tiny_model_dir: Path, tmp_path: Path) -> None:
    scale = _load("scale")
    out = tmp_path / "scale.json"
    scale.main(["--pdfs", "1", "--pages-per-pdf", "2", "--images", "1", "--modes", "local",
                "--model-dir", str(tiny_model_dir), "--out", str(out)])
    _check(out, [("1 process", 1)])
    with pytest.raises(SystemExit):
        scale.parse_args(["--modes", "spark"])


@pytest.mark.slow
def test_scale_ray_smoke(tiny_model_dir: Path, tmp_path: Path) -> None:
    pytest.importorskip("ray.data")
    scale = _load("scale")
    out = tmp_path / "scale.json"
    scale.main(["--pdfs", "1", "--pages-per-pdf", "2", "--images", "1", "--actors", "1", "--num-cpus", "2",
                "--model-dir", str(tiny_model_dir), "--out", str(out)])
    _check(out, [("1 process", 1), ("ray", 1)])
