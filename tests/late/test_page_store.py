"""Page-vector store: add / get / update / delete / list / compact / reopen, dtypes, pooling, locking,
and crash safety (kill -9 a writer mid-write, reopen: every listed page intact, every acknowledged page
present)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from umr.late import PageStoreError, PageVectorStore, n_clusters


def _page(seed: int, n: int | None = None, dim: int = 16) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = n or int(rng.integers(1, 30))
    x = rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_add_get_update_delete_reopen(tmp_path: Path) -> None:
    root = tmp_path / "pv"
    with PageVectorStore.open(root, dim=16) as store:
        store.add(["a", "b", "c"], [_page(1), _page(2), _page(3)])
        assert len(store) == 3 and set(store.ids()) == {"a", "b", "c"}
        np.testing.assert_allclose(store.get("b"), _page(2), atol=1e-3)  # float16
        store.add(["b"], [_page(20)])  # update replaces
        assert store.delete(["c", "nope"]) == 1
        assert "c" not in store
        with pytest.raises(KeyError, match="'c'"):
            store.get("c")
    with PageVectorStore.open(root) as store:  # settings read back from the store
        assert store.config.dim == 16 and sorted(store.ids()) == ["a", "b"]
        np.testing.assert_allclose(store.get("b"), _page(20), atol=1e-3)
        report = store.compact()
        assert report["bytes_after"] < report["bytes_before"]
        np.testing.assert_allclose(store.get("a"), _page(1), atol=1e-3)
    with PageVectorStore.open(root) as store:
        assert sorted(store.ids()) == ["a", "b"]
        np.testing.assert_allclose(store.get("b"), _page(20), atol=1e-3)
        names = sorted(p.name for p in root.iterdir())
        assert [n for n in names if n.startswith(("seg-", "journal-"))] == ["journal-000002.log", "seg-000002.vec"]


def test_gather_and_batches(tmp_path: Path) -> None:
    pages = [_page(k) for k in range(7)]
    with PageVectorStore.open(tmp_path / "pv", dim=16) as store:
        store.add([f"p{k}" for k in range(7)], pages)
        tokens, index = store.gather(["p3", "p0"])
        np.testing.assert_allclose(tokens, np.concatenate([pages[3], pages[0]]), atol=1e-3)
        assert index.tolist() == [0] * len(pages[3]) + [1] * len(pages[0])
        seen = [i for ids, _, _ in store.iter_batches(3) for i in ids]
        assert seen == [f"p{k}" for k in range(7)]


@pytest.mark.parametrize(("dtype", "tol"), [("int8", 0.01), ("binary", None)])
def test_int8_and_binary(tmp_path: Path, dtype: str, tol: float | None) -> None:
    page = _page(5, 12, dim=20)
    with PageVectorStore.open(tmp_path / dtype, dim=20, dtype=dtype) as store:
        store.add(["x"], [page])
        got = store.get("x")
        if tol is not None:
            np.testing.assert_allclose(got, page, atol=tol)
        else:
            np.testing.assert_array_equal(np.sign(got), np.where(page > 0, 1.0, -1.0))
            np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-6)
        assert store.stats()["vector_bytes"] == store.config.record_bytes(12)


def test_pooling_store(tmp_path: Path) -> None:
    with PageVectorStore.open(tmp_path / "pooled", dim=16, pool_factor=3) as store:
        store.add(["x", "y"], [_page(1, 30), _page(2, 2)])
        assert store.n_tokens("x") == n_clusters(30, 3) == 10 and store.n_tokens("y") == 1


def test_errors_and_two_handles(tmp_path: Path) -> None:
    root = tmp_path / "pv"
    store = PageVectorStore.open(root, dim=16)
    with pytest.raises(PageStoreError, match="dim=16"):
        PageVectorStore.open(root, dim=32, read_only=True)
    with pytest.raises(PageStoreError, match=r"shape \(3, 8\)"):
        store.add(["a"], [np.ones((3, 8), dtype=np.float32)])
    with pytest.raises(PageStoreError, match="NaN"):
        store.add(["a"], [np.full((3, 16), np.nan, dtype=np.float32)])
    with pytest.raises(PageStoreError, match="same page id twice"):
        store.add(["a", "a"], [_page(1), _page(2)])
    with pytest.raises(PageStoreError, match="dtype"):
        PageVectorStore.open(tmp_path / "other", dtype="float8")  # type: ignore[arg-type]
    store.add(["a"], [_page(1)])
    # a second writer (another process, say) queues on the lock and catches up before it writes
    other = PageVectorStore.open(root)
    other.add(["b"], [_page(2)])
    assert sorted(other.ids()) == ["a", "b"]
    store.delete(["a"])  # catches up with "b" first
    assert sorted(store.ids()) == ["b"]
    reader = PageVectorStore.open(root, read_only=True)
    assert reader.ids() == ["b"]
    other.add(["c"], [_page(3)])
    assert reader.ids() == ["b"]
    reader.refresh()
    assert sorted(reader.ids()) == ["b", "c"]
    np.testing.assert_allclose(reader.get("c"), _page(3), atol=1e-3)
    other.compact()
    reader.refresh()  # a new journal after compaction: read from its start
    assert sorted(reader.ids()) == ["b", "c"]
    np.testing.assert_allclose(reader.get("b"), _page(2), atol=1e-3)
    with pytest.raises(PageStoreError, match="read-only"):
        reader.delete(["b"])
    for handle in (store, other, reader):
        handle.close()


def test_torn_journal_tail_and_stray_files_are_dropped(tmp_path: Path) -> None:
    root = tmp_path / "pv"
    with PageVectorStore.open(root, dim=16) as store:
        store.add(["a", "b"], [_page(1), _page(2)])
    journal = root / "journal-000001.log"
    good = journal.read_bytes()
    journal.write_bytes(good + good[: len(good) // 3])  # a torn copy of the records
    (root / "seg-000009.vec").write_bytes(b"\0" * 64)  # left by a compaction that never switched
    (root / "MANIFEST.tmp").write_bytes(b"{")
    with PageVectorStore.open(root) as store:
        assert sorted(store.ids()) == ["a", "b"]
        np.testing.assert_allclose(store.get("b"), _page(2), atol=1e-3)
    assert journal.read_bytes() == good
    assert not (root / "seg-000009.vec").exists() and not (root / "MANIFEST.tmp").exists()


_WRITER = textwrap.dedent(
    """
    import sys
    import numpy as np
    from umr.late.page_store import PageVectorStore

    def page(k):
        rng = np.random.default_rng(k)
        return rng.standard_normal((int(rng.integers(1, 200)), 16)).astype(np.float32)

    store = PageVectorStore.open(sys.argv[1], dim=16)
    k = int(sys.argv[2])
    print("ready", flush=True)
    while True:
        ids = [f"p{k + j}" for j in range(8)]
        store.add(ids, [page(k + j) for j in range(8)])
        if k % 3 == 0:
            store.delete([f"p{k - 5}"])
        if k % 40 == 0:
            store.compact()
        print(k + 7, flush=True)
        k += 8
    """
)


@pytest.mark.parametrize("delay", [0.05, 0.5])
def test_kill_9_mid_write_leaves_a_consistent_store(tmp_path: Path, delay: float) -> None:
    root = tmp_path / "pv"
    script = tmp_path / "writer.py"
    script.write_text(_WRITER)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    acknowledged = -1
    start = 0
    for round_ in range(2):  # crash, reopen and continue writing, crash again
        proc = subprocess.Popen([sys.executable, str(script), str(root), str(start)], stdout=subprocess.PIPE,
                                text=True, env=env)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        time.sleep(delay + round_ * 0.2)
        proc.send_signal(signal.SIGKILL)
        out, _ = proc.communicate()
        done = [int(x) for x in out.split()]
        assert round_ > 0 or delay < 0.1 or done, "the writer acknowledged nothing before the kill"
        acknowledged = max([acknowledged, *done])
        with PageVectorStore.open(root) as store:
            ids = store.ids()
            assert len(ids) == len(set(ids))
            for page_id in ids:  # every listed page is complete and intact
                k = int(page_id[1:])
                rng = np.random.default_rng(k)
                expected = rng.standard_normal((int(rng.integers(1, 200)), 16)).astype(np.float32)
                np.testing.assert_allclose(store.get(page_id), expected, rtol=1e-3, atol=1e-2)
            present = {int(i[1:]) for i in ids}
            # deletes up to and including the batch in flight when the writer was killed
            deleted = {k - 5 for k in range(0, acknowledged + 9, 8) if k % 3 == 0}
            # every acknowledged page is there unless the writer deleted it
            assert set(range(acknowledged + 1)) - deleted <= present
            start = max([acknowledged + 1, *(p + 1 for p in present)])
            start += (-start) % 8
