"""Smoke test of ``benchmarks/hybrid.py`` at its smallest: the JSON has every mode's row, and the property
the benchmark exists for holds even here (a code printed on one page is found first by lexical and hybrid
search, where a dense model that blurs numbers is near chance).  Speed is never asserted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.benchmarks.test_benchmarks_smoke import _load

pytest.importorskip("tantivy")


def test_hybrid_smoke(tmp_path: Path) -> None:
    hybrid = _load("hybrid")
    out = tmp_path / "hybrid.json"
    hybrid.main(["--pages", "90", "--queries", "15", "--scale-pages", "150", "--scale-queries", "10",
                 "--depths", "20", "--out", str(out)])
    data = json.loads(out.read_text())
    assert data["benchmark"] == "hybrid"
    assert {"benchmark", "created", "machine", "settings", "results", "summary"} <= set(data)
    rows = {(r["corpus_pages"], r["mode"]): r for r in data["results"]}
    modes = ["dense", "lexical", "hybrid rrf", "hybrid weighted"]
    assert set(rows) == {(90, m) for m in [*modes, "hybrid rrf depth 20", "hybrid weighted depth 20"]} | {
        (150, m) for m in modes
    }
    for pages in (90, 150):
        assert rows[(pages, "lexical")]["code_r1"] == 1.0
        assert rows[(pages, "hybrid rrf")]["code_r1"] >= 0.95 and rows[(pages, "hybrid weighted")]["code_r1"] >= 0.95
        assert rows[(pages, "dense")]["code_r1"] < 0.5
    assert all(r["ms_median"] > 0 for r in data["results"])
    summary = data["summary"]
    assert summary["recall_corpus"]["lexical_mb"] > 0 and summary["recall_corpus"]["chroma_mb"] > 0
    assert set(summary["scale_corpus"]["hybrid_overhead_ms"]) == {"hybrid rrf", "hybrid weighted"}
    with pytest.raises(SystemExit):
        hybrid.parse_args(["--depths", "ten"])
