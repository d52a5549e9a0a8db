"""Crash safety and concurrent writers, with real processes (SIGKILL, a real ``chroma run``)."""

from __future__ import annotations

import hashlib
import signal
import subprocess
import sys
import time
from pathlib import Path

import chromadb
from chromadb.config import Settings

from tests.hostile_corpus import make_pdf, make_png
from tests.store.conftest import BUDGET, SCRIPT, run_script, script_env
from umr.store import ChromaStore
from umr.testing import HashEmbedder


def _corpus(root: Path, n: int, pages: int, prefix: str = "doc") -> dict[Path, int]:
    root.mkdir(parents=True, exist_ok=True)
    files: dict[Path, int] = {}
    for i in range(n):
        path = root / f"{prefix}{i:02d}.pdf"
        make_pdf(path, pages=pages, text=f"{prefix} {i}")
        files[path] = pages
    return files


def _expected_ids(files: dict[Path, int], db: Path) -> set[str]:
    # Same embedder settings as index_script.py; the store computes ids, no rendering needed.
    store = ChromaStore(HashEmbedder(dim=16, max_pixels=BUDGET), db, store_images=False)
    ids = set()
    for path, pages in files.items():
        sha = hashlib.sha256(path.read_bytes()).hexdigest()
        ids |= {store.page_id(sha, p) for p in range(1, pages + 1)}
    return ids


def _stored(db: Path) -> tuple[list[str], dict[str, dict]]:
    client = chromadb.PersistentClient(path=str(db), settings=Settings(anonymized_telemetry=False))
    got = client.get_collection("umr").get(include=["metadatas"])
    return got["ids"], dict(zip(got["ids"], got["metadatas"]))


def _wait_progress(progress: Path, proc: subprocess.Popen, at_least: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = progress.read_text().split() if progress.exists() else []
        if lines and int(lines[-1]) >= at_least:
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.02)
    raise AssertionError("indexing made no progress")


def test_sigkill_mid_run_then_rerun_stores_each_page_exactly_once(tmp_path: Path) -> None:
    files = _corpus(tmp_path / "docs", n=8, pages=4)
    make_png(tmp_path / "docs" / "zz.png")
    files[tmp_path / "docs" / "zz.png"] = 1
    db = tmp_path / "db"
    progress = tmp_path / "progress"
    args = [sys.executable, str(SCRIPT), str(tmp_path / "docs"), "--db", str(db), "--progress", str(progress)]
    # Kill twice at different points (mid-batch, mid-file), then let a run finish.
    for at_least in (4, 14):
        proc = subprocess.Popen(
            [*args, "--sleep", "0.15"], env=script_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        _wait_progress(progress, proc, at_least)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert proc.returncode == -signal.SIGKILL
        ids, _ = _stored(db)
        assert len(ids) < 33  # really interrupted
    done = run_script(str(tmp_path / "docs"), "--db", str(db))
    assert done.returncode == 0, done.stdout + done.stderr
    ids, metas = _stored(db)
    assert len(ids) == len(set(ids)) == 33
    assert set(ids) == _expected_ids(files, db)
    for meta in metas.values():
        assert Path(meta["image_path"]).is_file()  # every stored page has its image
    images = list((db / "images").rglob("*.png"))
    assert len(images) == 33 and not list((db / "images").rglob("*.tmp"))
    # And once more (in this process): nothing to render, nothing to embed.
    embedder = HashEmbedder(dim=16, max_pixels=BUDGET)
    with ChromaStore(embedder, db) as store:
        again = store.add_files(tmp_path / "docs")
    assert (again.pages_added, again.pages_skipped, again.files_skipped, embedder.items) == (0, 33, 9, 0)


def test_four_writer_processes_through_a_chroma_server(
    tmp_path: Path, chroma_server: tuple[str, int]
) -> None:
    host, port = chroma_server
    shared = _corpus(tmp_path / "shared", n=2, pages=2, prefix="shared")
    folders = []
    expected_files = dict(shared)
    for w in range(4):
        folder = tmp_path / f"w{w}"
        expected_files |= _corpus(folder, n=3, pages=2, prefix=f"w{w}-")
        folders.append(folder)
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                str(SCRIPT),
                str(folder),
                str(tmp_path / "shared"),
                "--host",
                host,
                "--port",
                str(port),
            ],
            env=script_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for folder in folders
    ]
    for proc in procs:
        out, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, out + err
    client = chromadb.HttpClient(host=host, port=port, settings=Settings(anonymized_telemetry=False))
    got = client.get_collection("umr").get(include=["metadatas"])
    expected = _expected_ids(expected_files, tmp_path / "ids-only-db")
    assert len(got["ids"]) == len(expected) == 4 * 3 * 2 + 2 * 2
    assert set(got["ids"]) == expected
    assert all(m["image_uri"] == "" for m in got["metadatas"])  # no image folder given for the server
