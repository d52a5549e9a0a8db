"""The ``umr`` command line under faults: a closed output pipe, SIGTERM / SIGINT mid-index, a damaged
vector index, and errors in the command line's own words.  A model-free ``HashEmbedder`` stands in for
the model (the CLI's ``load_embedder`` is replaced), so each run takes seconds."""

from __future__ import annotations

import glob
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import umr.cli.index
from tests.hostile_corpus import make_pdf
from tests.store.conftest import BUDGET, script_env
from tests.store.index_script import SlowHashEmbedder
from tests.store.test_faults import _build_in_subprocess
from tests.store.test_resume_and_concurrency import _expected_ids, _stored
from umr.cli import main
from umr.store import ChromaStore
from umr.testing import HashEmbedder

ROOT = Path(__file__).resolve().parents[2]

# the CLI in a subprocess, embedding with a slow HashEmbedder instead of loading a model
CLI_WITH_HASH = """
import sys
import umr.cli.index
from tests.store.index_script import SlowHashEmbedder
umr.cli.index.load_embedder = lambda args, recorded=None: SlowHashEmbedder(float(sys.argv[1]))
from umr.cli import main
sys.exit(main(sys.argv[2:]))
"""


def run(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def _docs(root: Path, n: int = 6, pages: int = 3) -> dict[Path, int]:
    root.mkdir(parents=True, exist_ok=True)
    files = {}
    for i in range(n):
        make_pdf(root / f"doc{i}.pdf", pages=pages, text=f"document {i}")
        files[root / f"doc{i}.pdf"] = pages
    return files


def _env() -> dict[str, str]:
    env = script_env()
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env["PYTHONPATH"]])  # `tests` importable
    return env


def _cli(sleep: float, *argv: str, **kw: Any) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", CLI_WITH_HASH, str(sleep), *argv],
        env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw,
    )


@pytest.mark.parametrize(
    "signum,code,words",
    [
        (signal.SIGTERM, 143, "umr index: stopped by SIGTERM; re-run the same command to resume"),
        (signal.SIGINT, 130, "umr: interrupted (re-run the same command to resume"),
    ],
)
def test_a_signal_mid_index_stops_with_one_line_and_a_rerun_resumes_exactly(
    tmp_path: Path, signum: int, code: int, words: str
) -> None:
    files = _docs(tmp_path / "docs")
    db = tmp_path / "db"
    argv = ["index", str(tmp_path / "docs"), "--db", str(db), "--batch-size", "2", "--no-progress"]
    proc = _cli(0.3, *argv)
    deadline = time.monotonic() + 60
    while len(list((db / "images").rglob("*.png"))) < 4:  # the 2nd batch of 2 written: the 1st is stored
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.02)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert err.strip().splitlines()[-1].startswith(words) and "Traceback" not in err
    stored, _ = _stored(db)
    assert 0 < len(stored) < 18  # really stopped mid-run
    done = _cli(0.0, *argv)
    _, err = done.communicate(timeout=120)
    assert done.returncode == 0, err
    ids, metas = _stored(db)
    assert len(ids) == len(set(ids)) == 18
    assert set(ids) == _expected_ids(files, tmp_path / "ids-only-db")
    assert all(Path(m["image_path"]).is_file() for m in metas.values())


def test_a_closed_output_pipe_ends_quietly(tmp_path: Path) -> None:
    with ChromaStore(HashEmbedder(dim=16, max_pixels=BUDGET), tmp_path / "db") as store:
        store.add_texts([f"text {i}" for i in range(5)])
    proc = subprocess.Popen(
        [sys.executable, "-m", "umr.cli", "stats", "--db", str(tmp_path / "db")],
        env=script_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None
    proc.stdout.close()  # the reader is gone before umr writes a line (as `umr stats | head -0`)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 141, err
    assert b"Traceback" not in err and b"BrokenPipeError" not in err and err == b""


def test_stats_check_and_index_rebuild_on_a_damaged_vector_index(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    _docs(tmp_path / "docs", n=2, pages=2)
    db = tmp_path / "db"
    _build_in_subprocess(db, texts=120, docs=tmp_path / "docs", sync_threshold=10)
    (segment,) = glob.glob(str(db / "*" / "data_level0.bin"))
    os.truncate(segment, os.path.getsize(segment) // 3)
    embedder = HashEmbedder(dim=16, max_pixels=BUDGET)
    monkeypatch.setattr(umr.cli.index, "load_embedder", lambda args, recorded=None: embedder)

    rc, out, err = run(capsys, "stats", "--db", str(db), "--check", "--json")
    assert rc == 1 and '"ok": false' in out and "umr index --rebuild" in err
    # indexing into a damaged index would skip every file: it stops and says how to rebuild
    rc, _, err = run(capsys, "index", str(tmp_path / "docs"), "--db", str(db), "--no-progress")
    assert rc == 1 and f"umr index --rebuild --db {db}" in err and embedder.items == 0
    rc, out, err = run(capsys, "index", "--rebuild", "--db", str(db), "--no-progress")
    assert rc == 0, err
    assert out.startswith("rebuilt 124 record(s) from the stored pages")
    assert embedder.items == 124  # 4 page images and 120 texts embedded again, nothing rendered
    rc, out, _ = run(capsys, "stats", "--db", str(db), "--check")
    assert rc == 0 and "vectors ok: 124 of 124" in out
    rc, out, _ = run(capsys, "index", str(tmp_path / "docs"), "--db", str(db), "--no-progress")
    assert rc == 0 and "2 file(s) unchanged (4 page(s) skipped)" in out


def test_errors_use_the_command_lines_words(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    _docs(tmp_path / "docs", n=1, pages=1)
    (tmp_path / "my-model").mkdir()
    rc, _, err = run(capsys, "index", str(tmp_path / "docs"), "--db", str(tmp_path / "db"),
                     "--model", str(tmp_path / "my-model"))
    assert rc == 2 and "pass --recipe NAME (valid: " in err and "recipe=<name>" not in err
    for where, needle in (("[1,2]", "got a JSON array"), ("{}", "got an empty object"),
                          ("{kind: pdf}", "Expecting property name")):
        rc, _, err = run(capsys, "search", "q", "--db", str(tmp_path / "db"), "--where", where)
        assert rc == 2 and "--where must be a" in err and '\'{"kind": "pdf"}\'' in err and needle in err
        assert len(err.strip().splitlines()) == 1
    rc, _, err = run(capsys, "index", "--db", str(tmp_path / "db"))
    assert rc == 2 and "give the files or folders to index (PATH...), or --rebuild" in err


def test_a_chroma_filter_refused_by_chroma_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    import umr.cli.search

    with ChromaStore(HashEmbedder(dim=16, max_pixels=BUDGET), tmp_path / "db") as store:
        store.add_texts(["a text"])
    monkeypatch.setattr(umr.cli.search, "load_embedder",
                        lambda args, recorded=None: HashEmbedder(dim=16, max_pixels=BUDGET))
    rc, _, err = run(capsys, "search", "q", "--db", str(tmp_path / "db"), "--where", '{"kind": [1]}')
    assert rc == 2 and err.startswith('umr search: error: --where {"kind": [1]}: Chroma refused this filter')
    assert "e.g. '{\"kind\": \"pdf\"}'" in err
    rc, out, _ = run(capsys, "search", "q", "--db", str(tmp_path / "db"), "--where", '{"kind": "text"}')
    assert rc == 0 and "a text" in out


def test_the_slow_embedder_stand_in_matches_the_expected_ids() -> None:
    # _expected_ids computes ids with HashEmbedder(dim=16, max_pixels=BUDGET): the CLI stand-in must agree
    assert SlowHashEmbedder(0).fingerprint == HashEmbedder(dim=16, max_pixels=BUDGET).fingerprint
