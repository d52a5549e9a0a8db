"""Two-stage search: exhaustive MaxSim equals a brute-force reference; a first stage as deep as the
collection gives the exhaustive result; the exact first-stage index follows add / update / delete."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from umr.late import ExactIndex, FDEConfig, FDEEncoder, MeanTokenEncoder, PageVectorStore, TwoStageSearcher


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


@pytest.fixture
def corpus(tmp_path: Path) -> tuple[PageVectorStore, list[str], list[np.ndarray], list[np.ndarray]]:
    rng = np.random.default_rng(0)
    pages = [_unit(rng.standard_normal((int(rng.integers(2, 30)), 32))) for _ in range(60)]
    queries = [_unit(rng.standard_normal((int(rng.integers(2, 9)), 32))) for _ in range(4)]
    ids = [f"doc{k // 3}#p{k % 3 + 1}" for k in range(60)]
    store = PageVectorStore.open(tmp_path / "pv", dim=32)
    store.add(ids, pages)
    yield store, ids, pages, queries
    store.close()


def _brute(queries, pages, ids, k):
    stored = [p.astype(np.float16).astype(np.float64) for p in pages]
    out = []
    for q in queries:
        scores = np.array([(q.astype(np.float64) @ p.T).max(axis=1).sum() for p in stored])
        order = np.argsort(-scores, kind="stable")[:k]
        out.append([(ids[i], scores[i]) for i in order])
    return out


def test_exhaustive_matches_brute_force(corpus) -> None:
    store, ids, pages, queries = corpus
    got = TwoStageSearcher(store, device="cpu").exhaustive(queries, k=7, pages_per_batch=11)
    for hits, ref in zip(got, _brute(queries, pages, ids, 7)):
        assert [h for h, _ in hits] == [r for r, _ in ref]
        np.testing.assert_allclose([s for _, s in hits], [s for _, s in ref], atol=1e-5)


@pytest.mark.parametrize("encoder", [MeanTokenEncoder(32), FDEEncoder(FDEConfig(dim=32, repetitions=3))])
def test_full_depth_two_stage_equals_exhaustive(corpus, encoder) -> None:
    store, ids, pages, queries = corpus
    index = ExactIndex(encoder.dim, device="cpu")
    index.add(ids, encoder.encode_documents(pages))
    searcher = TwoStageSearcher(store, encoder, index, device="cpu")
    full = searcher.search(queries, k=5, depth=len(ids))
    exhaustive = searcher.exhaustive(queries, k=5)
    assert [[h for h, _ in row] for row in full] == [[h for h, _ in row] for row in exhaustive]
    shallow = searcher.search(queries, k=5, depth=5)
    # at depth 5 the hits are the first stage's 5 candidates, re-ordered by MaxSim
    for row, cands in zip(shallow, index.search(encoder.encode_queries(queries), 5)):
        assert sorted(h for h, _ in row) == sorted(cands)
        assert [s for _, s in row] == sorted((s for _, s in row), reverse=True)


def test_exact_index_add_update_delete() -> None:
    index = ExactIndex(3, device="cpu")
    index.add(["a", "b", "c"], np.eye(3, dtype=np.float32))
    assert index.search(np.array([[0, 1, 0]], dtype=np.float32), 1) == [["b"]]
    index.add(["b"], np.array([[0, 0, 0.5]], dtype=np.float32))  # update
    assert index.search(np.array([[0, 0, 1]], dtype=np.float32), 2) == [["c", "b"]]
    index.delete(["a", "zzz"])
    assert len(index) == 2
    assert sorted(index.search(np.array([[1, 0, 0]], dtype=np.float32), 5)[0]) == ["b", "c"]
    assert index.search(np.array([[0, 0, 1]], dtype=np.float32), 1) == [["c"]]
    with pytest.raises(ValueError, match=r"\(1, 3\)"):
        index.add(["x"], np.zeros((1, 4), dtype=np.float32))


def test_two_stage_needs_a_first_stage(corpus) -> None:
    store, _, _, queries = corpus
    with pytest.raises(ValueError, match="exhaustive"):
        TwoStageSearcher(store).search(queries)
    with pytest.raises(KeyError, match="missing"):
        TwoStageSearcher(store, device="cpu").rerank(queries[:1], [["missing"]], 3)
