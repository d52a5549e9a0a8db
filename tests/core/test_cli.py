"""The ``umr`` command line, driven as a user would (in-process for speed, plus one real subprocess)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from umr.cli import main

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def sample_docs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    sys.path.insert(0, str(ROOT / "examples"))
    try:
        import make_sample_data
    finally:
        sys.path.pop(0)
    out = tmp_path_factory.mktemp("docs")
    make_sample_data.main(out)
    (out / "notes.txt").write_text("not a document type the indexer takes")
    return out


@pytest.fixture(scope="module")
def indexed(tmp_path_factory, tiny_model_dir, sample_docs):
    db = tmp_path_factory.mktemp("db") / "umr_db"
    rc = main(["index", str(sample_docs), "--db", str(db), "--model", str(tiny_model_dir), "--no-progress"])
    assert rc == 0
    return db


def run(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_index_summary_and_rerun_skips(capsys, indexed, sample_docs, tiny_model_dir):
    rc, out, _ = run(capsys, "index", str(sample_docs), "--db", str(indexed), "--model", str(tiny_model_dir),
                     "--json")
    assert rc == 0
    report = json.loads(out)
    assert report["pages_added"] == 0 and report["files_skipped"] == 4 and report["pages_skipped"] == 5
    assert report["ignored"] == 1 and report["failed"] == []


def test_search_uses_the_index_model_and_prints_json(capsys, indexed):
    rc, out, _ = run(capsys, "search", "total due on the invoice", "--db", str(indexed), "-k", "3", "--json")
    assert rc == 0
    rows = json.loads(out)
    assert len(rows) == 3 and [r["rank"] for r in rows] == [1, 2, 3]
    assert rows[0]["score"] >= rows[1]["score"] >= rows[2]["score"]
    assert all(r["source"].endswith((".pdf", ".png")) and r["page"] >= 1 for r in rows)
    assert all(r["image_uri"].startswith("file://") for r in rows)
    rc, out, _ = run(capsys, "search", "router", "--db", str(indexed))
    assert rc == 0 and "p.1" in out


def test_search_with_image_and_fused_query(capsys, indexed, sample_docs):
    img = str(sample_docs / "visitors_chart.png")
    rc, out, _ = run(capsys, "search", "--image", img, "--db", str(indexed), "-k", "1", "--json")
    assert rc == 0
    assert json.loads(out)[0]["source"].endswith("visitors_chart.png")  # the same image is the nearest page
    rc, out, _ = run(capsys, "search", "visitors", "--image", img, "--db", str(indexed), "-k", "2", "--json")
    assert rc == 0 and len(json.loads(out)) == 2


def test_stats_and_delete(capsys, indexed, sample_docs, tmp_path):
    db = tmp_path / "copy_db"
    shutil.copytree(indexed, db)
    rc, out, _ = run(capsys, "stats", "--db", str(db), "--json")
    stats = json.loads(out)
    assert rc == 0 and stats["records"] == 5 and stats["documents"] == 4
    rc, out, _ = run(capsys, "delete", str(sample_docs / "router_manual.pdf"), "--db", str(db))
    assert rc == 0 and "removed 2" in out
    rc, out, _ = run(capsys, "stats", "--db", str(db), "--json")
    assert json.loads(out)["records"] == 3
    rc, _, err = run(capsys, "delete", str(sample_docs / "router_manual.pdf"), "--db", str(db))
    assert rc == 1 and "nothing stored" in err


def test_failed_files_give_exit_code_1_and_reasons(capsys, tmp_path, tiny_model_dir, sample_docs):
    docs = tmp_path / "mixed"
    docs.mkdir()
    shutil.copy(sample_docs / "invoice.pdf", docs / "good.pdf")
    (docs / "broken.pdf").write_bytes(b"%PDF-1.7\n this is not really a pdf")
    (docs / "empty.pdf").write_bytes(b"")
    rc, out, _ = run(capsys, "index", str(docs), "--db", str(tmp_path / "db"), "--model", str(tiny_model_dir),
                     "--no-progress")
    assert rc == 1
    assert "1 page(s) added" in out and "2 failed" in out
    assert "broken.pdf" in out and "empty.pdf" in out


@pytest.mark.parametrize(
    "argv,code,needle",
    [
        (["index", "/no/such/path"], 2, "no such file or directory"),
        (["search", "--db", "/no/such/db", "hello"], 1, "no index"),
        (["search", "--db", "DB"], 2, "give a query"),
        (["search", "q", "-k", "0", "--db", "DB"], 2, "-k"),
        (["eval", "/no/such/dataset"], 2, "no such dataset"),
        (["stats", "--db", "/no/such/db"], 1, "no index"),
    ],
)
def test_usage_errors_are_one_line(capsys, tmp_path, argv, code, needle):
    argv = [a.replace("DB", str(tmp_path)) for a in argv]
    rc, _, err = run(capsys, *argv)
    assert rc == code
    assert needle in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_empty_folder(capsys, tmp_path):
    (tmp_path / "empty").mkdir()
    rc, _, err = run(capsys, "index", str(tmp_path / "empty"), "--db", str(tmp_path / "db"))
    assert rc == 1 and "no PDF or image files" in err


def test_model_not_found_offline_is_one_line(capsys, tmp_path, sample_docs):
    rc, _, err = run(capsys, "index", str(sample_docs / "invoice.pdf"), "--db", str(tmp_path / "db"),
                     "--model", "Alibaba-NLP/gme-Qwen2-VL-2B-Instruct")
    assert rc == 1
    assert "Alibaba-NLP/gme-Qwen2-VL-2B-Instruct" in err and "local" in err and "Traceback" not in err


def test_readonly_db(capsys, indexed, tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root ignores file permissions")
    db = tmp_path / "ro"
    shutil.copytree(indexed, db)
    os.chmod(db, 0o555)
    try:
        rc, _, err = run(capsys, "search", "x", "--db", str(db))
        assert rc == 1 and "not writable" in err
    finally:
        os.chmod(db, 0o755)


def test_eval_on_beir_layout(capsys, tmp_path, tiny_model_dir, sample_docs):
    ds = tmp_path / "ds"
    (ds / "qrels").mkdir(parents=True)
    (ds / "images").mkdir()
    shutil.copy(sample_docs / "visitors_chart.png", ds / "images" / "chart.png")
    corpus = [
        {"_id": "d1", "text": "Invoice total due EUR 792"},
        {"_id": "d2", "image": "images/chart.png"},
        {"_id": "d3", "title": "Router", "text": "press the reset button"},
    ]
    queries = [{"_id": "q1", "text": "Invoice total due EUR 792"}, {"_id": "q2", "image": "images/chart.png"}]
    (ds / "corpus.jsonl").write_text("\n".join(json.dumps(r) for r in corpus))
    (ds / "queries.jsonl").write_text("\n".join(json.dumps(r) for r in queries))
    (ds / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td2\t1\n")
    out_file = tmp_path / "result.json"
    rc, out, _ = run(capsys, "eval", str(ds), "--model", str(tiny_model_dir), "-k", "1,3", "--out", str(out_file))
    assert rc == 0 and "recall@1" in out
    result = json.loads(out_file.read_text())
    # a query identical to its document (text-text, image-image) must be ranked first even by a random model
    assert result["retrieval"]["recall@1"] == 1.0 and result["retrieval"]["mrr"] == 1.0
    assert result["queries"] == 2 and result["corpus"] == 3


def test_models_table(capsys):
    rc, out, _ = run(capsys, "models", "--json")
    rows = json.loads(out)
    assert rc == 0 and any(r["model_id"] == "Alibaba-NLP/gme-Qwen2-VL-2B-Instruct" for r in rows)


def test_console_script_runs_in_a_subprocess(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT / "core"), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-m", "umr.cli", "--version"], capture_output=True, text=True, env=env,
                          timeout=60)
    assert proc.returncode == 0 and proc.stdout.startswith("umr ")
    proc = subprocess.run([sys.executable, "-m", "umr.cli"], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 2 and "index" in proc.stderr


def test_server_index_keeps_page_images_in_image_dir_and_delete_removes_them(
    capsys, tmp_path, tiny_model_dir, sample_docs
):
    from tests.chroma_server import chroma_server_at

    images = tmp_path / "shared-images"
    server = chroma_server_at(tmp_path / "server-db")
    host, port = next(server)
    try:
        where = ["--host", host, "--port", str(port), "--collection", "srv"]
        rc, out, _ = run(capsys, "index", str(sample_docs / "router_manual.pdf"), *where, "--image-dir", str(images),
                         "--model", str(tiny_model_dir), "--json", "--no-progress")
        assert rc == 0 and json.loads(out)["pages_added"] == 2
        pngs = sorted(images.rglob("*.png"))
        assert len(pngs) == 2
        rc, out, _ = run(capsys, "search", "reset button", *where, "-k", "2", "--json")
        assert rc == 0
        uris = {r["image_uri"] for r in json.loads(out)}
        assert uris == {p.resolve().as_uri() for p in pngs} or uris == {p.as_uri() for p in pngs}
        rc, _, _ = run(capsys, "delete", str(sample_docs / "router_manual.pdf"), *where, "--image-dir", str(images))
        assert rc == 0
        assert list(images.rglob("*.png")) == []
    finally:
        server.close()


class _SpyReranker:
    """Stands in for ``Reranker.from_pretrained``: records what it is asked to score; a candidate's score is
    the mean brightness of its image (0.0 without one), so the order shows that images were read."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, list[Any]]] = []

    def score(self, query: Any, candidates: Any, *args: Any, **kwargs: Any) -> list[float]:
        from PIL import Image, ImageStat

        items = list(candidates)
        self.calls.append((query, items))
        scores = []
        for c in items:
            image = c.get("image") if isinstance(c, dict) else None
            if image is None:
                scores.append(0.0)
                continue
            with Image.open(image) as im:
                scores.append(sum(ImageStat.Stat(im.convert("L")).mean) / 255.0)
        return scores


@pytest.fixture
def spy_reranker(monkeypatch: pytest.MonkeyPatch) -> _SpyReranker:
    from umr.reranker import Reranker

    spy = _SpyReranker()
    monkeypatch.setattr(Reranker, "from_pretrained", staticmethod(lambda *a, **k: spy))
    return spy


UNUSUAL = "my índex – ü 日本"  # spaces and non-ASCII letters: percent-encoded in file:// URIs


def test_search_rerank_scores_page_images_under_a_path_with_spaces_and_non_ascii(
    capsys, tmp_path, tiny_model_dir, sample_docs, spy_reranker
):
    db = tmp_path / UNUSUAL / "umr_db"
    rc, _, _ = run(capsys, "index", str(sample_docs / "router_manual.pdf"), str(sample_docs / "visitors_chart.png"),
                   "--db", str(db), "--model", str(tiny_model_dir), "--no-progress")
    assert rc == 0
    rc, out, err = run(capsys, "search", "reset button", "--db", str(db), "-k", "3", "--rerank", "some-reranker",
                       "--json")
    assert rc == 0, err
    rows = json.loads(out)
    assert all("%20" in r["image_uri"] for r in rows)  # the URIs really are percent-encoded
    (query, candidates), = spy_reranker.calls
    assert query == "reset button" and len(candidates) == 3
    assert all(isinstance(c, dict) and "image" in c for c in candidates), candidates  # not text only
    images = [c["image"] for c in candidates]
    assert all(isinstance(p, Path) and p.is_file() and UNUSUAL in str(p) for p in images)
    # the printed order is the reranker's: brightest page first, scores from the image files themselves
    assert [r["rerank_score"] for r in rows] == sorted((r["rerank_score"] for r in rows), reverse=True)
    assert min(r["rerank_score"] for r in rows) > 0.0


def test_eval_rerank_scores_images_given_as_file_uris_under_an_unusual_path(
    capsys, tmp_path, tiny_model_dir, sample_docs, spy_reranker
):
    ds = tmp_path / UNUSUAL / "ds"
    (ds / "qrels").mkdir(parents=True)
    (ds / "pages").mkdir()
    shutil.copy(sample_docs / "visitors_chart.png", ds / "pages" / "chart.png")
    from PIL import Image

    Image.new("RGB", (64, 48), (250, 250, 250)).save(ds / "pages" / "blank page.png")
    corpus = [
        {"_id": "d1", "text": "Invoice total due EUR 792"},
        {"_id": "d2", "image": (ds / "pages" / "chart.png").as_uri()},  # file:///...my%20%C3%ADndex...
        {"_id": "d3", "image": "pages/blank page.png"},
    ]
    (ds / "corpus.jsonl").write_text("\n".join(json.dumps(r) for r in corpus))
    (ds / "queries.jsonl").write_text(json.dumps({"_id": "q1", "text": "visitors per month"}))
    (ds / "qrels" / "test.tsv").write_text("q1\td3\t1\n")
    rc, out, err = run(capsys, "eval", str(ds), "--model", str(tiny_model_dir), "-k", "1,3", "--rerank", "rr",
                       "--json")
    assert rc == 0, err
    result = json.loads(out)
    (_, candidates), = spy_reranker.calls
    images = sorted(str(c["image"]) for c in candidates if isinstance(c, dict) and "image" in c)
    assert images == sorted([str(ds / "pages" / "chart.png"), str(ds / "pages" / "blank page.png")])
    # the blank (brightest) page is the relevant one: reranking by image brightness puts it first
    assert result["reranked"]["recall@1"] == 1.0 and result["reranked"]["mrr"] == 1.0


SVG = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    '<svg xmlns="http://www.w3.org/2000/svg" width="300" height="200">'
    '<rect x="10" y="10" width="120" height="80" fill="navy"/><text x="20" y="150">diagram</text></svg>\n'
)


def test_index_names_every_entry_it_leaves_out_and_indexes_svg(capsys, tmp_path, tiny_model_dir, sample_docs):
    docs = tmp_path / "docs"
    (docs / ".git").mkdir(parents=True)
    (docs / ".git" / "x.pdf").write_bytes((sample_docs / "invoice.pdf").read_bytes())
    shutil.copy(sample_docs / "invoice.pdf", docs / "good.pdf")
    shutil.copy(sample_docs / "invoice.pdf", docs / ".hidden.pdf")
    (docs / "drawing.svg").write_text(SVG)
    (docs / "notes.txt").write_text("not a document")
    other = tmp_path / "elsewhere"
    other.mkdir()
    shutil.copy(sample_docs / "invoice.pdf", other / "linked.pdf")
    os.symlink(other, docs / "link")
    db = docs / "umr_db"  # the index inside the folder it indexes
    argv = ["index", str(docs), "--db", str(db), "--model", str(tiny_model_dir), "--no-progress"]
    for attempt in range(2):
        rc, out, _ = run(capsys, *argv, "--json")
        assert rc == 0, out
        report = json.loads(out)
        assert report["files_indexed" if attempt == 0 else "files_skipped"] == 2  # good.pdf and drawing.svg
        left = {Path(n["source"]).name: n["kind"] for n in report["not_indexed"]}
        expected = {".git": "hidden", ".hidden.pdf": "hidden", "notes.txt": "not_a_document",
                    "link": "symlinked_folder"}
        if attempt == 1:  # the database exists now: one entry for the whole folder
            expected["umr_db"] = "excluded"
        assert left == expected and report["ignored"] == len(expected)
        assert all(n["reason"] for n in report["not_indexed"])
    rc, out, _ = run(capsys, "stats", "--db", str(db), "--json")
    assert {Path(d["source"]).name for d in json.loads(out)["documents_list"]} == {"good.pdf", "drawing.svg"}
    rc, out, _ = run(capsys, "-v", *argv)
    assert rc == 0 and "left out 5 file(s) or folder(s)" in out
    assert "notes.txt: not a PDF or image by its name (.txt)" in out and "link: symbolic link to a folder" in out
    rc, out, _ = run(capsys, *argv)
    assert "left out 5" in out and "-v lists them" in out and "notes.txt" not in out


def test_identical_files_index_twice_and_delete_by_relative_path(
    capsys, tmp_path, tiny_model_dir, sample_docs, monkeypatch
):
    docs = tmp_path / "docs"
    docs.mkdir()
    shutil.copy(sample_docs / "invoice.pdf", docs / "invoice.pdf")
    shutil.copy(sample_docs / "invoice.pdf", docs / "invoice (1).pdf")
    raw = os.fsencode(docs) + b"/caf\xe9.pdf"  # a name that is not UTF-8
    shutil.copy(sample_docs / "router_manual.pdf", os.fsdecode(raw))
    db = tmp_path / "db"
    argv = ["index", str(docs), "--db", str(db), "--model", str(tiny_model_dir), "--no-progress", "--json"]
    for _ in range(2):  # the first run wrote both copies' pages in one batch; the second skips all
        rc, out, _ = run(capsys, *argv)
        assert rc == 0 and json.loads(out)["failed"] == []
    rc, out, _ = run(capsys, "stats", "--db", str(db), "--json")
    stats = json.loads(out)
    assert stats["records"] == 3 and stats["documents"] == 3  # invoice (1 page, twice), router manual (2)
    names = sorted(Path(d["source"]).name for d in stats["documents_list"])
    assert names == sorted(["invoice.pdf", "invoice (1).pdf", "caf\\xe9.pdf"])
    rc, out, _ = run(capsys, "search", "invoice total", "--db", str(db), "-k", "3", "--json")
    hit = next(r for r in json.loads(out) if "invoice" in r["source"])
    assert sorted(Path(s).name for s in hit["sources"]) == ["invoice (1).pdf", "invoice.pdf"]

    monkeypatch.chdir(docs)  # paths as the user types them here: relative, and with the raw byte
    rc, out, _ = run(capsys, "delete", "invoice (1).pdf", "--db", str(db))  # the first path: the other takes over
    assert rc == 0 and "removed 0 record(s)" in out and "kept 1 record(s)" in out
    rc, out, _ = run(capsys, "delete", "invoice.pdf", os.fsdecode(b"caf\xe9.pdf"), "--db", str(db))
    assert rc == 0 and "removed 1 record(s) of" in out and "removed 2 record(s) of" in out and "caf\\xe9.pdf" in out
    rc, out, _ = run(capsys, "stats", "--db", str(db), "--json")
    assert json.loads(out)["records"] == 0
    rc, _, err = run(capsys, "delete", "invoice.pdf", "--db", str(db))
    assert rc == 1 and "nothing stored for invoice.pdf" in err
