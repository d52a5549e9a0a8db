"""Store faults, named and survived: a frozen or killed Chroma server, a full disk, a damaged database,
a damaged vector index.  Each ends with one clear message in a bounded time, and a re-run after the
fault is gone leaves the exact page set."""

from __future__ import annotations

import glob
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import chromadb
import numpy as np
import pytest
from chromadb.config import Settings

from tests.store.conftest import BUDGET, SCRIPT, run_script, script_env
from tests.store.test_resume_and_concurrency import _corpus, _expected_ids, _stored, _wait_progress
from umr.cli import main
from umr.store import ChromaStore
from umr.store.collection import chroma_client
from umr.store.faults import (
    Guard,
    StoreCorruptError,
    StoreFullError,
    StoreUnavailableError,
)
from umr.store.server import ChromaServer, ChromaServerError, chroma_executable, free_port
from umr.testing import HashEmbedder

FAST = {"UMR_CHROMA_TIMEOUT": "1.5", "UMR_CHROMA_RETRIES": "1"}


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ChromaServer]:
    """A real ``chroma run`` the test may stop (SIGSTOP), resume or kill; always resumed and stopped."""
    if chroma_executable() is None:
        pytest.skip("the chroma CLI is not installed")
    srv = ChromaServer(tmp_path / "server-db", startup_timeout=60)
    try:
        srv.start()
    except ChromaServerError as exc:
        pytest.skip(str(exc))
    try:
        yield srv
    finally:
        if srv.pid is not None:
            try:
                os.kill(srv.pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
        srv.stop()


def _server_ids(host: str, port: int) -> list[str]:
    client = chromadb.HttpClient(host=host, port=port, settings=Settings(anonymized_telemetry=False))
    return list(client.get_collection("umr").get(include=[])["ids"])


def _index_on_server(docs: Path, srv: ChromaServer, progress: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(SCRIPT), str(docs), "--host", srv.host, "--port", str(srv.port),
         "--progress", str(progress), "--sleep", "0.3"],
        env=script_env() | FAST, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def test_a_frozen_server_mid_index_is_named_in_bounded_time_and_a_rerun_is_exact(
    tmp_path: Path, server: ChromaServer
) -> None:
    files = _corpus(tmp_path / "docs", n=6, pages=3)
    proc = _index_on_server(tmp_path / "docs", server, tmp_path / "progress")
    _wait_progress(tmp_path / "progress", proc, 2)
    assert server.pid is not None
    os.kill(server.pid, signal.SIGSTOP)
    started = time.monotonic()
    try:
        _, err = proc.communicate(timeout=60)
    finally:
        elapsed = time.monotonic() - started
        os.kill(server.pid, signal.SIGCONT)
    assert proc.returncode == 3, err
    line = err.strip().splitlines()[-1]
    assert f"the Chroma server at {server.host}:{server.port} did not answer within 1.5s" in line
    assert "re-run the same command" in line and "Traceback" not in err
    assert elapsed < 30  # 2 tries of 1.5 s and a pause, plus the rest of the batch
    done = run_script(str(tmp_path / "docs"), "--host", server.host, "--port", str(server.port))
    assert done.returncode == 0, done.stdout + done.stderr
    ids = _server_ids(server.host, server.port)
    assert len(ids) == len(set(ids)) == 18
    assert set(ids) == _expected_ids(files, tmp_path / "ids-only-db")


def test_a_killed_server_mid_index_says_start_it_and_a_rerun_after_restart_is_exact(
    tmp_path: Path, server: ChromaServer
) -> None:
    files = _corpus(tmp_path / "docs", n=6, pages=3)
    proc = _index_on_server(tmp_path / "docs", server, tmp_path / "progress")
    _wait_progress(tmp_path / "progress", proc, 2)
    assert server.pid is not None
    os.kill(server.pid, signal.SIGKILL)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 3, err
    line = err.strip().splitlines()[-1]
    assert f"cannot connect to the Chroma server at {server.host}:{server.port}" in line
    assert "connection refused" in line and "chroma run --path" in line and "Traceback" not in err
    server.stop()
    restarted = ChromaServer(server.path, port=server.port).start()
    try:
        done = run_script(str(tmp_path / "docs"), "--host", restarted.host, "--port", str(restarted.port))
        assert done.returncode == 0, done.stdout + done.stderr
        ids = _server_ids(restarted.host, restarted.port)
    finally:
        restarted.stop()
    assert len(ids) == len(set(ids)) == 18
    assert set(ids) == _expected_ids(files, tmp_path / "ids-only-db")


def test_cli_on_a_frozen_server_fails_fast_naming_it_and_works_once_resumed(
    tmp_path: Path, server: ChromaServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    store = ChromaStore(HashEmbedder(dim=16), host=server.host, port=server.port, store_images=False)
    store.add_texts(["one", "two"])
    for key, value in FAST.items():
        monkeypatch.setenv(key, value)
    argv = ["stats", "--host", server.host, "--port", str(server.port)]
    assert server.pid is not None
    os.kill(server.pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        rc = main(argv)
        elapsed = time.monotonic() - started
    finally:
        os.kill(server.pid, signal.SIGCONT)
    err = capsys.readouterr().err
    assert rc == 1 and elapsed < 15
    assert err.count("\n") == 1 and f"{server.host}:{server.port} did not answer" in err, err
    assert main(argv) == 0
    assert "records: 2" in capsys.readouterr().out


def test_no_server_at_the_port_is_named_with_how_to_start_one() -> None:
    port = free_port()
    started = time.monotonic()
    with pytest.raises(StoreUnavailableError, match=rf"cannot connect to the Chroma server at 127.0.0.1:{port}") as info:
        chroma_client(host="127.0.0.1", port=port, timeout=1, retries=1)
    assert time.monotonic() - started < 10
    assert "chroma run --path DIR" in str(info.value)


def test_guard_retries_with_back_off_then_gives_up() -> None:
    import httpx

    calls: list[float] = []

    def flaky() -> str:
        calls.append(time.monotonic())
        if len(calls) < 3:
            raise httpx.ReadTimeout("timed out")
        return "ok"

    guard = Guard(host="h", port=1, timeout=1, retries=2, backoff=0.05)
    assert guard.call("reading", flaky) == "ok" and len(calls) == 3
    assert calls[2] - calls[1] >= 2 * (calls[1] - calls[0]) * 0.8  # the pause doubles
    calls.clear()
    with pytest.raises(StoreUnavailableError, match=r"did not answer within 1s while reading \(2 tries\)"):
        Guard(host="h", port=1, timeout=1, retries=1, backoff=0.01).call("reading", flaky)
    # an embedded folder is not retried, and a plain bug is not dressed up as a store fault
    with pytest.raises(ZeroDivisionError):
        Guard(path="x").call("adding", lambda: 1 / 0)


# ------------------------------------------------------------------------------------------------ disk
@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 8 MiB tmpfs (needs root: skipped with the reason when mount is not permitted)."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    try:
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mnt)],
                           capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"cannot mount a tmpfs: {exc}")
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs (needs root): {r.stderr.strip() or r.returncode}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True, timeout=30)


def _fill(disk: Path, leave: int) -> Path:
    """A filler file taking all but ``leave`` bytes of ``disk``."""
    st = os.statvfs(disk)
    filler = disk / "filler"
    with open(filler, "wb") as fh:
        fh.write(b"\0" * max(0, st.f_bavail * st.f_frsize - leave))
    return filler


def test_a_full_disk_is_named_and_a_rerun_after_space_is_freed_is_exact(
    tmp_path: Path, small_disk: Path, capsys: pytest.CaptureFixture
) -> None:
    files = _corpus(tmp_path / "docs", n=10, pages=3)
    db = small_disk / "db"
    with ChromaStore(HashEmbedder(dim=16, max_pixels=BUDGET), db, batch_size=4) as store:
        store.add_texts(["created while there is room"])
    filler = _fill(small_disk, leave=150_000)
    with pytest.raises(StoreFullError) as info, ChromaStore(
        HashEmbedder(dim=16, max_pixels=BUDGET), db, batch_size=4
    ) as store:
        for _ in range(20):  # pages, then texts, until the device is full
            store.add_files(tmp_path / "docs")
            store.add_texts([f"filler text {i} " * 40 for i in range(200)])
    msg = str(info.value)
    assert "no space left on the device of" in msg and str(db) in msg and "free space" in msg
    assert "re-run the same command" in msg
    # umr stats on the full disk: either it can still read, or it says the same, never Chroma's words
    rc = main(["stats", "--db", str(db)])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err and "Error in compaction" not in captured.err.split("(Chroma")[0]
    assert rc == 0 or "no space left" in captured.err
    filler.unlink()
    with ChromaStore(HashEmbedder(dim=16, max_pixels=BUDGET), db, batch_size=4) as store:
        report = store.add_files(tmp_path / "docs")
        assert report.ok and not report.failed
        pages = store.chroma.raw.get(where={"kind": "pdf"}, include=[])["ids"]
    assert len(pages) == len(set(pages)) == 30
    assert set(pages) == _expected_ids(files, tmp_path / "ids-only-db")
    assert not list((db / "images").rglob("*.tmp"))
    assert main(["stats", "--db", str(db)]) == 0


# ------------------------------------------------------------------------------------------------ damage
def _build_in_subprocess(db: Path, texts: int, docs: Path | None = None, sync_threshold: int = 0) -> None:
    """Fill a store in another process (this one would keep Chroma's state cached and never see the damage).
    ``sync_threshold`` small: Chroma writes its HNSW files after that many records."""
    code = f"""
import sys
from umr.store import ChromaStore
from umr.store.collection import chroma_client
from umr.testing import HashEmbedder
e = HashEmbedder(dim=16, max_pixels={BUDGET})
db = {str(db)!r}
if {sync_threshold}:
    client = chroma_client(db)
    meta = dict(ChromaStore(e, db, client=client, store_images=False).collection.metadata)
    client.delete_collection("umr")
    client.create_collection("umr", metadata=meta, embedding_function=None, configuration={{"hnsw": {{
        "space": "cosine", "sync_threshold": {sync_threshold}, "batch_size": {sync_threshold}}}}})
with ChromaStore(e, db, batch_size=8) as s:
    if {str(docs) if docs else ""!r}:
        assert s.add_files({str(docs) if docs else ""!r}).ok
    s.add_texts([f"text number {{i}}" for i in range({texts})])
"""
    r = subprocess.run([sys.executable, "-c", code], env=script_env(), capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr


def test_a_damaged_database_file_is_named_with_the_way_to_rebuild(tmp_path: Path, capsys) -> None:
    db = tmp_path / "db"
    _build_in_subprocess(db, texts=50)
    sqlite = db / "chroma.sqlite3"
    data = bytearray(sqlite.read_bytes())
    data[100:20_000] = b"\x5a" * (20_000 - 100)  # the schema pages
    sqlite.write_bytes(bytes(data))
    with pytest.raises(StoreCorruptError) as info:
        ChromaStore(HashEmbedder(dim=16, max_pixels=BUDGET), db)
    msg = str(info.value)
    assert f"{sqlite} is damaged" in msg and "re-index into a new folder" in msg and "--db NEW_DIR" in msg
    for argv in (["stats", "--db", str(db)], ["delete", "x.pdf", "--db", str(db)]):
        rc = main(argv)
        err = capsys.readouterr().err
        assert rc == 1 and err.count("\n") == 1, err
        assert f"{sqlite} is damaged" in err and "Traceback" not in err


@pytest.mark.parametrize("damage", ["truncated", "zeroed"])
def test_a_damaged_vector_index_is_detected_and_rebuilt_without_rendering(
    tmp_path: Path, capsys: pytest.CaptureFixture, damage: str
) -> None:
    files = _corpus(tmp_path / "docs", n=3, pages=2)
    db = tmp_path / "db"
    _build_in_subprocess(db, texts=120, docs=tmp_path / "docs", sync_threshold=10)
    (segment,) = glob.glob(str(db / "*" / "data_level0.bin"))
    size = os.path.getsize(segment)
    if damage == "truncated":  # caught by the file sizes, before anything is searched
        os.truncate(segment, size // 3)
    else:  # same size, vectors and links wiped: caught by reading sampled vectors back
        with open(segment, "r+b") as fh:
            fh.write(b"\0" * size)

    # the CLI sees it: stats (quick check) and stats --check exit 1 naming the rebuild
    assert main(["stats", "--db", str(db), "--check"]) == 1
    captured = capsys.readouterr()
    assert "vector index of" in captured.err and f"umr index --rebuild --db {db}" in captured.err
    assert main(["stats", "--db", str(db)]) == 1
    capsys.readouterr()

    embedder = HashEmbedder(dim=16, max_pixels=BUDGET)
    with ChromaStore(embedder, db, batch_size=8) as store:
        before = store.check(sample=500)
        assert not before.ok
        if damage == "truncated":
            assert before.files == [f"{segment} is {size // 3} bytes, expected at least {size}"]
            assert before.files[0] in before.summary()
        else:
            assert before.sampled == 126 and len(before.unreadable) + len(before.wrong) > 60
        metas_before = {m["sha256"] + str(m["page"]): m for m in store.chroma.iter_metadatas()}
        report = store.rebuild()
        assert (report.rebuilt, report.dropped) == (126, [])
        after = store.check(sample=500)
        assert after.ok and after.sampled == 126, after.summary()
        # same ids, same metadata, and every record finds itself again
        ids, metas = _stored(db)
        assert len(ids) == len(set(ids)) == 126
        assert {m["sha256"] + str(m["page"]): m for m in metas.values()} == metas_before
        for i in range(0, 120, 17):
            assert store.search(f"text number {i}", k=1)[0].document == f"text number {i}"
        pages = set(store.chroma.raw.get(where={"kind": "pdf"}, include=[])["ids"])
        assert pages == _expected_ids(files, tmp_path / "ids-only-db")
        # re-indexing skips every file (nothing rendered or embedded), the store stays exact
        embedder.items = 0
        again = store.add_files(tmp_path / "docs")
        assert (again.files_skipped, again.pages_added, embedder.items) == (3, 0, 0)
        # page vectors came from the stored PNGs: equal to embedding the image file
        got = store.chroma.raw.get(where={"kind": "pdf"}, limit=1, include=["embeddings", "metadatas"])
        png = Path(got["metadatas"][0]["image_path"])
        from PIL import Image

        with Image.open(png) as im:
            expected = HashEmbedder(dim=16, max_pixels=BUDGET).embed_documents([im.convert("RGB")])[0]
        assert np.allclose(np.asarray(got["embeddings"][0]), expected, atol=1e-6)
    assert main(["stats", "--db", str(db), "--check"]) == 0
    assert "vectors ok: 126 of 126" in capsys.readouterr().out


def test_a_rebuild_drops_and_lists_pages_whose_image_is_gone(tmp_path: Path) -> None:
    _corpus(tmp_path / "docs", n=2, pages=2)
    with ChromaStore(HashEmbedder(dim=16, max_pixels=BUDGET), tmp_path / "db") as store:
        assert store.add_files(tmp_path / "docs").ok
        store.add_texts(["kept text"])
        victim = store.chroma.raw.get(where={"page": 2}, limit=1, include=["metadatas"])
        Path(victim["metadatas"][0]["image_path"]).unlink()
        report = store.rebuild()
        assert report.rebuilt == 4 and [i for i, _ in report.dropped] == victim["ids"]
        assert str(victim["metadatas"][0]["source"]) in report.summary()
        assert store.count() == 4
        # the next index run renders that file again: the store is whole
        again = store.add_files(tmp_path / "docs")
        assert again.pages_added == 1 and store.count() == 5
        assert store.check().ok



def test_a_quick_check_of_a_large_collection_samples_spread_ids(
    store: ChromaStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    import umr.store.repair as repair

    store.add_texts([f"text {i}" for i in range(60)])
    all_ids = list(store.chroma.iter_ids())
    monkeypatch.setattr(repair, "GET_CHUNK", 10)  # "large": read one id per sample, not every id
    reads: list[dict] = []
    real_call = store.chroma.call

    def counting_call(what: str, method: str, **kwargs: object) -> object:
        reads.append(dict(kwargs, method=method))
        return real_call(what, method, **kwargs)

    monkeypatch.setattr(store.chroma, "call", counting_call)
    sampled = repair.sample_ids(store.chroma, 6)
    assert sampled == [all_ids[i * 10] for i in range(6)]
    assert all(r.get("limit") == 1 for r in reads if r["method"] == "get")
    report = store.check(sample=6)
    assert report.ok and report.sampled == 6 and report.records == 60


def test_a_rebuild_that_fails_half_way_leaves_the_original_and_can_run_again(store: ChromaStore) -> None:
    from umr.store.repair import REBUILD_SUFFIX

    store.add_texts([f"text {i}" for i in range(40)])
    store.batch_size = 8
    real = store.embedder.embed_documents
    calls = {"n": 0}

    def failing(inputs, **kw):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # as a Ctrl-C half-way through
        return real(inputs, **kw)

    store.embedder.embed_documents = failing  # type: ignore[method-assign]
    with pytest.raises(KeyboardInterrupt):
        store.rebuild()
    names = {c.name for c in store.client.list_collections()}
    assert names == {"umr", "umr" + REBUILD_SUFFIX}  # the unfinished copy beside the untouched original
    assert store.count() == 40 and store.check().ok
    store.embedder.embed_documents = real  # type: ignore[method-assign]
    report = store.rebuild()
    assert report.rebuilt == 40 and {c.name for c in store.client.list_collections()} == {"umr"}
    assert store.count() == 40 and store.check(sample=40).ok
    assert store.search("text 7", k=1)[0].document == "text 7"


def test_chroma_errors_are_translated_by_what_they_mean(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import errno
    import sqlite3

    import umr.store.faults as faults
    from umr.store.faults import StoreError

    guard = Guard(path=tmp_path)
    compaction = RuntimeError("Error in compaction: Failed to apply logs to the metadata segment")
    # with room on the device, Chroma's write failure is not called a full disk
    plain = guard.translate(compaction, "writing")
    assert type(plain) is StoreError and str(tmp_path) in str(plain) and "permissions" in str(plain)
    monkeypatch.setattr(faults, "free_bytes", lambda path: 1000)
    full = guard.translate(compaction, "writing")
    assert isinstance(full, StoreFullError) and "1000 B free" in str(full)
    assert isinstance(guard.translate(OSError(errno.ENOSPC, "No space left on device"), "x"), StoreFullError)
    corrupt = guard.translate(sqlite3.DatabaseError("file is not a database"), "opening it")
    assert isinstance(corrupt, StoreCorruptError) and str(tmp_path / "chroma.sqlite3") in str(corrupt)
    # not store faults: raised as they are
    assert guard.translate(sqlite3.OperationalError("database is locked"), "x") is None
    assert guard.translate(ValueError("Expected where value to be a str"), "searching") is None


def test_search_while_another_process_indexes_is_never_called_damage(tmp_path: Path) -> None:
    import json

    from umr.store.faults import StoreBusyReadError

    _corpus(tmp_path / "docs", n=6, pages=3)
    db = tmp_path / "db"
    progress = tmp_path / "progress"
    proc = subprocess.Popen(
        [sys.executable, str(SCRIPT), str(tmp_path / "docs"), "--db", str(db), "--progress", str(progress),
         "--sleep", "0.3"],
        env=script_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    _wait_progress(progress, proc, 2)
    store = ChromaStore(HashEmbedder(dim=16, max_pixels=BUDGET), db)
    report = store.check()
    assert report.writer == proc.pid and report.ok and report.sampled == 0
    assert f"another umr process (pid {proc.pid}) is writing to {db}" in report.summary()
    try:
        store.search("doc 1", k=3)
    except StoreBusyReadError as exc:  # Chroma cannot read a half-written index: said so, not a traceback
        assert f"(pid {proc.pid}) is writing to the store {db}" in str(exc) and "search again" in str(exc)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    # a fresh reader (another process, as a CLI command) sees the whole, sound store
    stats = subprocess.run([sys.executable, "-m", "umr.cli", "stats", "--db", str(db), "--json", "--check"],
                           env=script_env(), capture_output=True, text=True, timeout=120)
    assert stats.returncode == 0, stats.stderr
    got = json.loads(stats.stdout)
    assert got["records"] == 18 and got["check"]["ok"] and got["check"]["sampled"] == 18
