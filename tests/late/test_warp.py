"""WarpIndex (WARP-style first stage): residual codes decode close to the tokens, its scores are MaxSim
against the decoded tokens, two-stage search through it recovers the exhaustive MaxSim top 10, add /
delete / replace leave it equal to an index built from the remaining pages, and save / load round-trips."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from umr.late import PageVectorStore, TwoStageSearcher, WarpIndex


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def _clustered(rng: np.random.Generator, n_pages: int, dim: int = 32, n_queries: int = 8):
    topics = _unit(rng.standard_normal((60, dim)))
    pages, owned = [], []
    for _ in range(n_pages):
        picked = rng.choice(60, size=3, replace=False)
        owned.append(picked)
        n = int(rng.integers(6, 20))
        centre = topics[rng.choice(picked, size=n)]
        pages.append(_unit(centre + 0.4 * rng.standard_normal((n, dim)) / np.sqrt(dim)))
    queries = []
    for target in rng.choice(n_pages, size=n_queries, replace=False):
        centre = topics[rng.choice(owned[target], size=4)]
        queries.append(_unit(centre + 0.4 * rng.standard_normal((4, dim)) / np.sqrt(dim)))
    return pages, queries


def _blank(index: WarpIndex) -> WarpIndex:
    """An empty index with the same centroids, residual levels and settings."""
    return WarpIndex(index.coarse, index.centroids, index.cell_bounds, index.residual_low, index.residual_step,
                     nbits=index.nbits, nprobe=index.nprobe, missing_scale=index.missing_scale,
                     candidates=index.candidates, cells=index.cells)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    pages, queries = _clustered(rng, 240)
    ids = [f"doc{i // 4}#p{i % 4 + 1}" for i in range(len(pages))]
    index = WarpIndex.fit(pages, 64, coarse=8, nbits=4, iterations=5, nprobe=8)
    index.add(ids, pages)
    return pages, queries, ids, index


@pytest.mark.parametrize("nbits", [1, 2, 4, 8])
def test_residual_codes_decode_close_to_the_tokens(nbits: int) -> None:
    rng = np.random.default_rng(1)
    pages, _ = _clustered(rng, 80)
    tokens = np.concatenate(pages)
    index = WarpIndex.fit(pages, 32, nbits=nbits, iterations=4)
    ids, codes = index.encode(tokens)
    assert codes.shape == (len(tokens), 32 * nbits // 8) and codes.dtype == np.uint8
    decoded = index.decode(ids, codes)
    error = np.linalg.norm(decoded - tokens, axis=1).mean()
    centroid_only = np.linalg.norm(index.centroids[ids] - tokens, axis=1).mean()
    assert error < centroid_only  # the residual adds information at every bit width
    if nbits >= 4:
        cosine = (decoded * tokens).sum(axis=1) / np.linalg.norm(decoded, axis=1)
        assert cosine.mean() > (0.99 if nbits == 8 else 0.95)


def test_every_token_lands_in_a_centroid_of_its_nearest_cell(data) -> None:
    pages, _, _, index = data
    tokens = np.concatenate(pages[:20])
    got = index.assign(tokens)
    cell = np.argmax(tokens @ index.coarse.T, axis=1)
    assert ((got >= index.cell_bounds[cell]) & (got < index.cell_bounds[cell + 1])).all()
    assert index.n_centroids == 64 and len(index.coarse) == len(index.cell_bounds) - 1 <= 8


def test_approximate_scores_are_maxsim_against_decoded_tokens(data) -> None:
    pages, queries, ids, index = data
    for q in queries[:3]:
        got = index.approximate_scores(q, ids[:30])
        want = []
        for page in pages[:30]:
            decoded = index.decode(*index.encode(page))
            want.append((q.astype(np.float64) @ decoded.T).max(axis=1).sum())
        np.testing.assert_allclose(got, want, atol=1e-4)


def test_probing_everything_ranks_by_the_decoded_maxsim(data) -> None:
    pages, queries, ids, index = data
    full = _blank(index)
    full.nprobe, full.candidates = full.n_centroids, len(ids)
    full.add(ids, pages)
    for q in queries[:3]:
        got = full.search([q], 20)[0]
        scores = full.approximate_scores(q, ids)
        want = [ids[i] for i in np.argsort(-scores, kind="stable")[:20]]
        assert got[:10] == want[:10]


def test_cells_keep_the_probes_among_the_opened_cells_centroids(data) -> None:
    pages, queries, ids, index = data
    narrow = _blank(index)
    narrow.cells, narrow.nprobe = 2, 4
    narrow.add(ids, pages)
    for q in queries:
        _, top, top_sims = narrow._probe(q)
        opened = np.unique(np.argsort(-(q @ narrow.coarse.T), axis=1)[:, :2])
        allowed = np.concatenate([np.arange(narrow.cell_bounds[c], narrow.cell_bounds[c + 1]) for c in opened])
        assert set(top.ravel()) <= set(allowed.tolist())
        # each query token's probes are its best centroids among the allowed ones
        want = np.sort(np.sort(q @ narrow.centroids[allowed].T, axis=1)[:, ::-1][:, : top.shape[1]], axis=1)
        np.testing.assert_allclose(np.sort(top_sims, axis=1), want, atol=1e-5)
        np.testing.assert_allclose(np.take_along_axis(q @ narrow.centroids.T, top, axis=1), top_sims, atol=1e-5)
        assert len(narrow.search([q], 10)[0]) == 10


def test_two_stage_search_recovers_the_exhaustive_top_10(data, tmp_path: Path) -> None:
    pages, queries, ids, index = data
    with PageVectorStore.open(tmp_path / "pv", dim=32) as store:
        store.add(ids, pages)
        searcher = TwoStageSearcher(store, first_stage=index, device="cpu")
        truth = searcher.exhaustive(queries, k=10)
        got = searcher.search(queries, k=10, depth=40)
    recall = np.mean([len({h for h, _ in g} & {t for t, _ in w}) / 10 for g, w in zip(got, truth)])
    assert recall >= 0.95
    for g, w in zip(got, truth):  # hits it returns carry their exact MaxSim
        exact = dict(w)
        for page_id, score in g:
            if page_id in exact:
                assert score == pytest.approx(exact[page_id], abs=1e-5)


def test_add_delete_and_replace_equal_a_fresh_index(data) -> None:
    pages, queries, ids, index = data
    rng = np.random.default_rng(2)
    edited = _blank(index)
    edited.add(ids[:100], pages[:100])
    edited.search(queries[:1], 5)  # built: the edits below hit built pages as well as pending ones
    edited.add(ids[100:], pages[100:])
    gone = set(rng.choice(ids, size=60, replace=False).tolist())
    edited.delete(sorted(gone))
    assert not any(page_id in edited for page_id in gone)
    assert all(page_id in edited for page_id in ids if page_id not in gone)
    edited.delete(["never-added"])  # unknown ids are ignored
    replaced = {ids[1]: pages[7], ids[2]: pages[9]}
    edited.add(list(replaced), list(replaced.values()))
    fresh = _blank(index)
    keep = [(i, replaced.get(i, p)) for i, p in zip(ids, pages) if i not in gone]
    fresh.add([i for i, _ in keep], [p for _, p in keep])
    assert len(edited) == len(fresh) == len(keep) and set(edited.ids()) == set(fresh.ids())
    for q in queries:
        got = edited.search([q], 25)[0]
        assert not gone & set(got)
        assert set(got) == set(fresh.search([q], 25)[0])
        np.testing.assert_allclose(edited.approximate_scores(q, got), fresh.approximate_scores(q, got), atol=1e-6)


def test_save_and_load_round_trip(data, tmp_path: Path) -> None:
    _, queries, _, index = data
    path = index.save(tmp_path / "warp.npz")
    loaded = WarpIndex.load(path)
    assert (loaded.nbits, loaded.nprobe, loaded.candidates, loaded.cells, len(loaded)) == (
        index.nbits, index.nprobe, index.candidates, index.cells, len(index))
    assert loaded.search(queries, 30) == index.search(queries, 30)
    (tmp_path / "other.npz").write_bytes(b"not an index")
    with pytest.raises(Exception):  # noqa: B017 - numpy's own error for a file that is no archive
        WarpIndex.load(tmp_path / "other.npz")


def test_bad_input_raises(data) -> None:
    pages, _, _, index = data
    with pytest.raises(ValueError, match="nbits"):
        WarpIndex.fit(pages, 16, nbits=3)
    with pytest.raises(ValueError, match="n_centroids"):
        WarpIndex.fit(pages[:1], 10_000)
    with pytest.raises(ValueError, match="dim"):
        index.search([np.ones((3, 8), dtype=np.float32)], 5)
    with pytest.raises(ValueError, match="ids"):
        index.add(["a", "b"], pages[:1])
    assert _blank(index).search([pages[0]], 5) == [[]]
