from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from tests.hostile_corpus import build_hostile_corpus, make_pdf, make_png
from umr.documents import FileDone, FileError, Page, RenderPool, render_files, walk
from umr.documents._worker import TEST_FAULTS_ENV

BUDGET = 200_000


def _by_file(records: list) -> dict[str, list]:
    out: dict[str, list] = {}
    for r in records:
        out.setdefault(os.path.basename(r.source), []).append(r)
    return out


def _children() -> set[int]:
    pid = os.getpid()
    try:
        return {int(x) for x in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()}
    except OSError:  # pragma: no cover - not Linux
        return set()


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, str], list]:
    root = tmp_path_factory.mktemp("hostile")
    expected = build_hostile_corpus(root)
    # Test-only fault injection, read by the worker: a file that hangs and files that crash it.
    make_pdf(root / "hang.pdf", pages=1)
    make_pdf(root / "segv.pdf", pages=1)
    make_pdf(root / "dies-midway.pdf", pages=4)
    expected.update({"hang.pdf": "timeout", "segv.pdf": "crash", "dies-midway.pdf": "crash"})
    faults = {"hang.pdf": "hang", "segv.pdf": "segv", "dies-midway.pdf": "exit_after:2"}
    os.environ[TEST_FAULTS_ENV] = json.dumps(faults)
    try:
        records = list(render_files(walk(root), max_pixels=BUDGET, timeout=3.0, workers=2))
    finally:
        del os.environ[TEST_FAULTS_ENV]
    return expected, records


def test_hostile_corpus_every_file_accounted_for(hostile: tuple[dict[str, str], list]) -> None:
    expected, records = hostile
    by_file = _by_file(records)
    assert set(by_file) == set(expected)
    for name, outcome in expected.items():
        recs = by_file[name]
        last = recs[-1]
        if outcome == "ok":
            assert isinstance(last, FileDone), (name, last)
            pages = [r for r in recs if isinstance(r, Page)]
            assert [p.page for p in pages] == list(range(1, last.pages + 1))
            assert all(p.width * p.height <= BUDGET for p in pages)
            assert all(p.sha256 == last.sha256 for p in pages)
        elif outcome == "corrupt|ok":
            assert isinstance(last, (FileDone, FileError))
            if isinstance(last, FileError):
                assert last.kind == "corrupt"
        else:
            assert isinstance(last, FileError), (name, last)
            assert last.kind == outcome, (name, last)
            assert last.reason and last.source.endswith(name)
        assert sum(isinstance(r, (FileDone, FileError)) for r in recs) == 1


def test_hostile_reasons_tell_what_to_do(hostile: tuple[dict[str, str], list]) -> None:
    _, records = hostile
    errors = {os.path.basename(r.source): r for r in records if isinstance(r, FileError)}
    assert "qpdf --decrypt" in errors["encrypted.pdf"].reason
    assert "timeout" in errors["hang.pdf"].reason or "no progress" in errors["hang.pdf"].reason
    assert "SIGSEGV" in errors["segv.pdf"].reason
    midway = errors["dies-midway.pdf"]
    assert "after 2 of 4 pages" in midway.reason and len(midway.sha256) == 64
    assert "decompression-bomb" in errors["bomb.png"].reason
    for err in errors.values():
        str(err).encode("utf-8")  # printable even for odd names


def test_no_worker_left_behind(hostile: tuple[dict[str, str], list]) -> None:
    assert not _children()


def test_pages_of_each_file_in_order_with_several_workers(tmp_path: Path) -> None:
    for i in range(6):
        make_pdf(tmp_path / f"doc{i}.pdf", pages=3 + i % 3, text=f"d{i}")
    make_png(tmp_path / "z.png")
    records = list(render_files(walk(tmp_path), max_pixels=BUDGET, workers=2))
    by_file = _by_file(records)
    assert len(by_file) == 7
    for recs in by_file.values():
        assert isinstance(recs[-1], FileDone)
        assert [r.page for r in recs[:-1]] == list(range(1, recs[-1].pages + 1))


def test_slow_consumer_is_not_a_timeout(tmp_path: Path) -> None:
    make_pdf(tmp_path / "a.pdf", pages=2)
    records = []
    for rec in render_files([tmp_path / "a.pdf"], max_pixels=BUDGET, timeout=0.4):
        records.append(rec)
        time.sleep(0.6)  # the consumer (an embedder) is slower than the time limit
    assert isinstance(records[-1], FileDone) and records[-1].pages == 2


def test_file_timeout_caps_total_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_pdf(tmp_path / "slow.pdf", pages=1)
    make_pdf(tmp_path / "after.pdf", pages=1)
    monkeypatch.setenv(TEST_FAULTS_ENV, json.dumps({"slow.pdf": "sleep:30"}))
    records = list(
        render_files(
            [tmp_path / "slow.pdf", tmp_path / "after.pdf"], max_pixels=BUDGET, timeout=60, file_timeout=1.0
        )
    )
    assert (
        isinstance(records[0], FileError) and records[0].kind == "timeout" and "per-file" in records[0].reason
    )
    assert isinstance(records[-1], FileDone) and records[-1].source.endswith("after.pdf")


def test_skip_callback_avoids_rendering(tmp_path: Path) -> None:
    make_pdf(tmp_path / "a.pdf", pages=2)
    make_pdf(tmp_path / "b.pdf", pages=2, text="other")
    seen: list[tuple[str, str]] = []

    def skip(source: str, sha: str) -> bool:
        seen.append((source, sha))
        return source.endswith("a.pdf")

    records = list(render_files(walk(tmp_path), max_pixels=BUDGET, skip=skip))
    assert records[0] == FileDone(str(tmp_path / "a.pdf"), seen[0][1], 0, skipped=True)
    assert [type(r).__name__ for r in records[1:]] == ["Page", "Page", "FileDone"]
    assert records[-1].sha256 == seen[1][1]


def test_memory_limit_turns_a_huge_decode_into_an_error(tmp_path: Path) -> None:
    from PIL import Image

    Image.new("1", (12_000, 12_000)).save(tmp_path / "huge.png")  # 144 M pixels, 17 kB on disk
    make_png(tmp_path / "fine.png")
    records = list(render_files(walk(tmp_path), max_pixels=BUDGET, memory_limit=700 << 20))
    assert isinstance(records[1], FileDone) and records[1].source.endswith("fine.png")
    err = records[2]
    assert isinstance(err, FileError) and err.kind == "memory", err
    assert "memory_limit" in err.reason


def test_closing_the_generator_early_stops_workers(tmp_path: Path) -> None:
    make_pdf(tmp_path / "a.pdf", pages=20)
    gen = render_files([tmp_path / "a.pdf"], max_pixels=BUDGET)
    assert isinstance(next(gen), Page)
    assert _children()
    gen.close()
    assert not _children()


def test_invalid_arguments_fail_fast() -> None:
    with pytest.raises(ValueError):
        render_files([], max_pixels=10)
    with pytest.raises(ValueError):
        render_files([], workers=0)


def test_render_pool_reuses_workers_across_runs(tmp_path: Path) -> None:
    make_pdf(tmp_path / "a.pdf", pages=5)
    make_png(tmp_path / "b.png")
    with RenderPool(workers=1) as pool:
        first = list(pool.render([tmp_path / "a.pdf"], max_pixels=BUDGET))
        workers = _children()
        assert isinstance(first[-1], FileDone) and len(workers) == 1
        abandoned = pool.render([tmp_path / "a.pdf"], max_pixels=BUDGET)
        next(abandoned)
        abandoned.close()  # the busy worker is killed: its output would be stale
        second = list(pool.render([tmp_path / "b.png"], max_pixels=BUDGET))
        assert isinstance(second[-1], FileDone) and second[-1].pages == 1
    assert not _children()


def test_prefetch_keeps_order_passes_errors_and_closes_the_run() -> None:
    from umr.documents import Prefetch

    closed: list[bool] = []

    def run(n: int, fail_at: int | None = None):
        try:
            for i in range(n):
                if i == fail_at:
                    raise ValueError("boom")
                yield i
        finally:
            closed.append(True)

    assert list(Prefetch(run(50), size=4)) == list(range(50))
    it = Prefetch(run(10, fail_at=3), size=2)
    with pytest.raises(ValueError, match="boom"):
        list(it)
    early = Prefetch(run(1000), size=2)
    first = next(iter(early))
    early.close()  # the reader stops and closes the run in its own thread
    assert first == 0 and closed == [True, True, True]
