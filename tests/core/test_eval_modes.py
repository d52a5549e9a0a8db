"""umr.evaluation.evaluate with dense, lexical and hybrid modes side by side on the same qrels."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("tantivy")

from umr.evaluation import evaluate
from umr.store import HashEmbedder


def _dataset(root: Path, n: int = 60) -> Path:
    (root / "qrels").mkdir(parents=True)
    with open(root / "corpus.jsonl", "w") as fh:
        for i in range(n):
            fh.write(json.dumps({"_id": f"d{i}", "text": f"invoice INV-2024-{i:04d} for pumps and valves"}) + "\n")
    with open(root / "queries.jsonl", "w") as fh:
        for i in range(0, n, 3):
            fh.write(json.dumps({"_id": f"q{i}", "text": f"inv-2024-{i:04d}"}) + "\n")
        fh.write(json.dumps({"_id": "qe", "text": "😀"}) + "\n")  # no words: lexical answers nothing
    (root / "qrels" / "test.tsv").write_text(
        "".join(f"q{i}\td{i}\t1\n" for i in range(0, n, 3)) + "qe\td1\t1\n"
    )
    return root


class _ContainsReranker:
    """Puts candidates that contain the query text (case-folded) first; records what it was given."""

    def __init__(self) -> None:
        self.seen: list[list[str]] = []

    def score(self, query: str, candidates: list[str]) -> list[float]:
        self.seen.append(list(candidates))
        return [float(query.casefold() in c.casefold()) for c in candidates]


def test_modes_side_by_side(tmp_path: Path) -> None:
    ds = _dataset(tmp_path / "ds")
    result = evaluate(HashEmbedder(dim=16), ds, ks=(1, 10), modes=("dense", "lexical", "hybrid"))
    modes = result["modes"]
    assert set(modes) == {"dense", "lexical", "hybrid"} and result["retrieval"] == modes["dense"]
    n = result["queries"]
    assert n == 21
    assert modes["lexical"]["recall@1"] == pytest.approx(20 / n)  # every code query; the emoji one has none
    assert modes["hybrid"]["recall@1"] == pytest.approx(20 / n)
    assert modes["dense"]["recall@1"] < 0.3  # a hash embedder cannot read codes
    assert result["fusion"] == {"method": "rrf", "depth": 20, "weights": [1.0, 1.0]}


def test_reranker_runs_on_the_fused_list(tmp_path: Path) -> None:
    ds = _dataset(tmp_path / "ds")
    rr = _ContainsReranker()
    result = evaluate(HashEmbedder(dim=16), ds, ks=(1,), modes=("hybrid", "dense"), reranker=rr, rerank_depth=5,
                      fusion="weighted")
    assert result["mode"] == "hybrid" and result["retrieval"] == result["modes"]["hybrid"]
    assert result["reranked"]["recall@1"] == pytest.approx(20 / 21)
    assert "INV-2024-0003" in rr.seen[1][0]  # the fused list (lexical hit first) went to the reranker


def test_unknown_mode(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="dense, lexical, hybrid"):
        evaluate(HashEmbedder(dim=16), _dataset(tmp_path / "ds"), modes=("bm25",))
