"""``umr search --mode``, ``umr index --rebuild-lexical``, ``umr stats`` and ``umr eval --modes`` (issue 20)."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

pytest.importorskip("tantivy")

from umr.cli import main

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def indexed(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    sys.path.insert(0, str(ROOT / "examples"))
    try:
        import make_sample_data
    finally:
        sys.path.pop(0)
    docs = tmp_path_factory.mktemp("docs")
    make_sample_data.main(docs)
    db = tmp_path_factory.mktemp("db") / "umr_db"
    assert main(["index", str(docs), "--db", str(db), "--model", str(tiny_model_dir), "--no-progress"]) == 0
    return db


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.mark.parametrize("mode", ["lexical", "hybrid"])
def test_search_modes_find_the_code(capsys: pytest.CaptureFixture[str], indexed: Path, mode: str) -> None:
    rc, out, _ = run(capsys, "search", "inv-2024-0173", "--db", str(indexed), "--mode", mode, "-k", "2", "--json")
    assert rc == 0
    rows = json.loads(out)
    assert Path(rows[0]["source"]).name == "invoice.pdf"
    if mode == "hybrid":
        assert rows[0]["lexical_score"] > 0 and "dense_score" in rows[0]
    rc, out, _ = run(capsys, "search", "X200", "--db", str(indexed), "--mode", mode, "--fusion", "weighted",
                     "--depth", "5", "-k", "1", "--json")
    assert rc == 0 and Path(json.loads(out)[0]["source"]).name == "router_manual.pdf"


def test_hostile_and_empty_lexical_queries(capsys: pytest.CaptureFixture[str], indexed: Path) -> None:
    rc, out, _ = run(capsys, "search", 'X200 AND "reset" OR title:(router) 😀', "--db", str(indexed),
                     "--mode", "lexical", "-k", "1", "--json")
    assert rc == 0 and Path(json.loads(out)[0]["source"]).name == "router_manual.pdf"
    rc, _, err = run(capsys, "search", "😀 !!", "--db", str(indexed), "--mode", "lexical")
    assert rc == 1 and "no words or numbers" in err and len(err.strip().splitlines()) == 1
    with pytest.raises(SystemExit) as exc:
        main(["search", "x", "--db", str(indexed), "--mode", "sparse"])
    assert exc.value.code == 2 and "invalid choice" in capsys.readouterr().err


def test_rebuild_lexical_without_a_model(capsys: pytest.CaptureFixture[str], indexed: Path,
                                         tmp_path: Path) -> None:
    db = tmp_path / "copy"
    shutil.copytree(indexed, db)
    shutil.rmtree(db / "lexical")
    rc, out, err = run(capsys, "search", "INV-2024-0173", "--db", str(db), "--mode", "lexical", "--json")
    assert "holds 0 of" in err and "--rebuild-lexical" in err
    rc, out, _ = run(capsys, "stats", "--db", str(db))
    assert "out of step" in out
    rc, out, _ = run(capsys, "index", "--rebuild-lexical", "--db", str(db), "--lexical-language", "english")
    assert rc == 0 and "lexical index rebuilt" in out
    rc, out, _ = run(capsys, "stats", "--db", str(db))
    assert rc == 0 and "in step" in out
    rc, out, _ = run(capsys, "search", "INV-2024-0173", "--db", str(db), "--mode", "lexical", "-k", "1", "--json")
    assert rc == 0 and Path(json.loads(out)[0]["source"]).name == "invoice.pdf"
    rc, _, err = run(capsys, "index", "--db", str(db))
    assert rc == 2 and "--rebuild-lexical" in err


def test_eval_reports_modes_side_by_side(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                         tiny_model_dir: Path) -> None:
    ds = tmp_path / "ds"
    (ds / "qrels").mkdir(parents=True)
    corpus = [{"_id": f"d{i}", "text": f"Invoice INV-2024-{i:04d} for pumps and valves"} for i in range(12)]
    queries = [{"_id": f"q{i}", "text": f"inv-2024-{i:04d}"} for i in range(0, 12, 2)]
    (ds / "corpus.jsonl").write_text("\n".join(json.dumps(r) for r in corpus))
    (ds / "queries.jsonl").write_text("\n".join(json.dumps(r) for r in queries))
    (ds / "qrels" / "test.tsv").write_text("".join(f"q{i}\td{i}\t1\n" for i in range(0, 12, 2)))
    out_file = tmp_path / "r.json"
    rc, out, _ = run(capsys, "eval", str(ds), "--model", str(tiny_model_dir), "-k", "1,5", "--out", str(out_file))
    assert rc == 0
    assert "| dense |" in out and "| lexical |" in out and "| hybrid |" in out and "rrf fusion" in out
    result = json.loads(out_file.read_text())
    assert result["modes"]["lexical"]["recall@1"] == 1.0 and result["modes"]["hybrid"]["recall@1"] == 1.0
    assert result["retrieval"] == result["modes"]["dense"]
    rc, _, err = run(capsys, "eval", str(ds), "--model", str(tiny_model_dir), "--modes", "dense,bm25")
    assert rc == 2 and "--modes" in err
