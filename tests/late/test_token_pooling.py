"""Hierarchical token pooling: the Ward cut equals a from-scratch reference; pooled vectors are cluster means."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from umr.late import n_clusters, pool_tokens
from umr.late.token_pooling import ward_labels


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _reference_partition(emb: np.ndarray, k: int) -> list[list[int]]:
    """Plain Ward agglomeration on the rows of 1 - E E^T: merge the pair whose union grows the
    within-cluster sum of squares least (n_a n_b / (n_a + n_b) |c_a - c_b|^2), until k clusters remain."""
    feats = 1.0 - emb.astype(np.float64) @ emb.astype(np.float64).T
    clusters = [[i] for i in range(len(emb))]
    while len(clusters) > k:
        best = None
        for a in range(len(clusters)):
            for b in range(a + 1, len(clusters)):
                ca, cb = feats[clusters[a]].mean(0), feats[clusters[b]].mean(0)
                na, nb = len(clusters[a]), len(clusters[b])
                cost = na * nb / (na + nb) * float(((ca - cb) ** 2).sum())
                if best is None or cost < best[0]:
                    best = (cost, a, b)
        _, a, b = best
        clusters[a] = clusters[a] + clusters.pop(b)
    return sorted(sorted(c) for c in clusters)


@pytest.mark.parametrize("pool_factor", [2, 3])
def test_ward_cut_matches_reference(pool_factor: int) -> None:
    rng = np.random.default_rng(pool_factor)
    pages = [_unit(rng.standard_normal((int(n), 16))).astype(np.float32) for n in rng.integers(4, 26, size=5)]
    padded = torch.nn.utils.rnn.pad_sequence([torch.from_numpy(p) for p in pages], batch_first=True)
    mask = torch.arange(padded.shape[1])[None, :] < torch.tensor([len(p) for p in pages])[:, None]
    keep = torch.tensor([n_clusters(len(p), pool_factor) for p in pages])
    labels = ward_labels(padded, mask, keep)
    for row, page in enumerate(pages):
        lab = labels[row, : len(page)].numpy()
        got = sorted(sorted(np.flatnonzero(lab == u).tolist()) for u in np.unique(lab))
        assert got == _reference_partition(page, n_clusters(len(page), pool_factor))
        assert (labels[row, len(page):] == -1).all()


def test_pooled_vectors_are_normalised_cluster_means() -> None:
    rng = np.random.default_rng(0)
    centres = _unit(rng.standard_normal((3, 32)))
    # three tight groups of 4 tokens each: pool factor 4 keeps 3 vectors, one per group
    page = np.concatenate([_unit(c + 0.01 * rng.standard_normal((4, 32))) for c in centres]).astype(np.float32)
    page = page[rng.permutation(len(page))]
    (pooled,) = pool_tokens([page], 4)
    assert pooled.shape == (3, 32)
    np.testing.assert_allclose(np.linalg.norm(pooled, axis=1), 1.0, atol=1e-5)
    # each pooled vector is the normalised mean of the tokens nearest to one centre
    for centre in centres:
        members = page[(page @ centre) > 0.9]
        expected = _unit(members.mean(axis=0))
        assert np.max(pooled @ expected) == pytest.approx(1.0, abs=1e-5)


def test_pool_sizes_and_identity() -> None:
    rng = np.random.default_rng(1)
    pages = [_unit(rng.standard_normal((n, 8))).astype(np.float32) for n in (1, 2, 7, 30)]
    pooled = pool_tokens(pages, 3)
    assert [p.shape[0] for p in pooled] == [1, 1, 2, 10]
    same = pool_tokens(pages, 1)
    for a, b in zip(pages, same):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="pool_factor"):
        pool_tokens(pages, 0)
