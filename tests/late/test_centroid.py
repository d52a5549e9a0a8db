"""CentroidIndex (PLAID-style first stage): its full centroid score is MaxSim against the pages' centroids,
it is bounded by the query's best centroid scores, add / delete change what it returns, and two-stage
search through it recovers the exhaustive MaxSim top 10 on a small clustered corpus."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from umr.late import CentroidIndex, PageVectorStore, TwoStageSearcher


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def _clustered(rng: np.random.Generator, n_pages: int, dim: int = 32):
    topics = _unit(rng.standard_normal((40, dim)))
    pages, owned = [], []
    for _ in range(n_pages):
        picked = rng.choice(40, size=3, replace=False)
        owned.append(picked)
        n = int(rng.integers(6, 20))
        centre = topics[rng.choice(picked, size=n)]
        pages.append(_unit(centre + 0.3 * rng.standard_normal((n, dim)) / np.sqrt(dim)))
    queries = []
    for target in rng.choice(n_pages, size=8, replace=False):
        centre = topics[rng.choice(owned[target], size=4)]
        queries.append(_unit(centre + 0.3 * rng.standard_normal((4, dim)) / np.sqrt(dim)))
    return pages, queries


def test_full_score_is_maxsim_against_the_page_centroids() -> None:
    rng = np.random.default_rng(0)
    pages, queries = _clustered(rng, 50)
    index = CentroidIndex.fit(pages, 16, iterations=4)
    ids = [f"p{i}" for i in range(len(pages))]
    index.add(ids, pages)
    for q in queries[:3]:
        got = index.approximate_scores(q, ids)
        want = []
        for page in pages:
            nearest = np.argmax(page @ index.centroids.T, axis=1)
            replaced = index.centroids[nearest]
            want.append((q @ replaced.T).max(axis=1).sum())
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
        # no page can score above every query token's best centroid
        assert (got <= (q @ index.centroids.T).max(axis=1).sum() + 1e-5).all()


def test_pages_made_of_centroids_score_exactly() -> None:
    rng = np.random.default_rng(1)
    centroids = _unit(rng.standard_normal((12, 16)))
    index = CentroidIndex(centroids, nprobe=12, candidates=10)
    pages = [centroids[rng.choice(12, size=4, replace=False)] for _ in range(10)]
    index.add([f"p{i}" for i in range(10)], pages)
    q = _unit(rng.standard_normal((3, 16)))
    exact = np.array([(q @ p.T).max(axis=1).sum() for p in pages])
    np.testing.assert_allclose(index.approximate_scores(q, [f"p{i}" for i in range(10)]), exact, rtol=1e-5)
    # nprobe = all centroids: the search order is the exact MaxSim order
    assert index.search([q], 10)[0] == [f"p{i}" for i in np.argsort(-exact, kind="stable")]


def test_add_replace_delete() -> None:
    rng = np.random.default_rng(2)
    centroids = _unit(rng.standard_normal((8, 16)))
    index = CentroidIndex(centroids, nprobe=8)
    index.add(["a", "b"], [centroids[[0, 1]], centroids[[2, 3]]])
    q = centroids[[0]]
    assert index.search([q], 1) == [["a"]]
    index.add(["b"], [centroids[[0]]])  # replace: b now holds centroid 0 only
    assert len(index) == 2
    assert sorted(index.search([q], 2)[0]) == ["a", "b"]
    index.delete(["a", "zzz"])
    assert index.search([q], 5) == [["b"]]
    with pytest.raises(ValueError, match="dim"):
        index.add(["c"], [np.ones((2, 5), dtype=np.float32)])


def test_two_stage_recall_against_exhaustive(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    pages, queries = _clustered(rng, 400)
    ids = [f"doc{k}#p1" for k in range(len(pages))]
    with PageVectorStore.open(tmp_path / "pv", dim=32) as store:
        store.add(ids, pages)
        index = CentroidIndex.fit(pages[:200], 64, iterations=6, nprobe=4, candidates=200)
        index.add(ids, pages)
        truth = TwoStageSearcher(store, device="cpu").exhaustive(queries, k=10)
        got = TwoStageSearcher(store, first_stage=index, device="cpu").search(queries, k=10, depth=60)
        recall = np.mean([len({i for i, _ in g} & {i for i, _ in t}) / 10 for g, t in zip(got, truth)])
        assert recall >= 0.9, recall
    with pytest.raises(ValueError, match="encoder"):
        TwoStageSearcher(store, device="cpu").search(queries, k=10)
