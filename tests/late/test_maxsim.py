"""MaxSim scoring against a plain einsum reference (issue 18: equal to 1e-5)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from umr.late import maxsim, maxsim_gathered, token_max
from umr.late.scoring import maxsim_pages, pad, token_max_pages


def _unit(rng: np.random.Generator, n: int, dim: int = 32) -> np.ndarray:
    x = rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _reference(queries: list[np.ndarray], docs: list[np.ndarray]) -> np.ndarray:
    out = np.zeros((len(queries), len(docs)))
    for i, q in enumerate(queries):
        for j, d in enumerate(docs):
            out[i, j] = np.einsum("qd,pd->qp", q.astype(np.float64), d.astype(np.float64)).max(axis=1).sum()
    return out


@pytest.fixture
def data() -> tuple[list[np.ndarray], list[np.ndarray]]:
    rng = np.random.default_rng(0)
    queries = [_unit(rng, int(n)) for n in rng.integers(1, 12, size=5)]
    docs = [_unit(rng, int(n)) for n in rng.integers(1, 40, size=23)]
    return queries, docs


def test_maxsim_lists_match_einsum(data: tuple[list[np.ndarray], list[np.ndarray]]) -> None:
    queries, docs = data
    got = maxsim(queries, docs, device="cpu").numpy()
    np.testing.assert_allclose(got, _reference(queries, docs), atol=1e-5)


def test_maxsim_padded_with_masks_and_float16(data: tuple[list[np.ndarray], list[np.ndarray]]) -> None:
    queries, docs = data
    q, qm = pad(queries)
    d, dm = pad([x.astype(np.float16) for x in docs])
    # padding rows filled with large values must not leak into the score
    q = q.masked_fill(~qm[..., None], 5.0)
    d = d.masked_fill(~dm[..., None], 5.0)
    got = maxsim(q, d, query_mask=qm, doc_mask=dm, device="cpu").numpy()
    ref = _reference(queries, [x.astype(np.float16).astype(np.float32) for x in docs])
    np.testing.assert_allclose(got, ref, atol=1e-5)


def test_gathered_and_token_max_match(data: tuple[list[np.ndarray], list[np.ndarray]]) -> None:
    queries, docs = data
    tokens = torch.from_numpy(np.concatenate(docs))
    lengths = torch.tensor([len(d) for d in docs])
    q, qm = pad(queries, "cpu")
    got = maxsim_gathered(q, qm, tokens, lengths).numpy()
    np.testing.assert_allclose(got, _reference(queries, docs), atol=1e-5)
    best = token_max(torch.from_numpy(queries[0]), tokens, lengths).numpy()
    ref = np.stack([(queries[0] @ d.T).max(axis=1) for d in docs], axis=1)
    np.testing.assert_allclose(best, ref, atol=1e-6)


@pytest.mark.parametrize("block_tokens", [1, 37, 8192])
def test_token_max_pages_blocks_match_einsum(data: tuple[list[np.ndarray], list[np.ndarray]], block_tokens: int) -> None:
    """Block-by-block CPU scoring (float16 pages read in place, one reused buffer) equals the reference,
    whether a block holds one page, several, or all."""
    queries, docs = data
    halves = [d.astype(np.float16) for d in docs]
    ref = _reference(queries, [h.astype(np.float32) for h in halves])
    for i, q in enumerate(queries):
        best = token_max_pages(torch.from_numpy(q), halves, block_tokens=block_tokens)
        assert best.shape == (len(q), len(docs))
        np.testing.assert_allclose(best.sum(axis=0), ref[i], atol=1e-5)
        np.testing.assert_allclose(maxsim_pages(q, halves, device="cpu"), ref[i], atol=1e-5)
    assert maxsim_pages(queries[0], [], device="cpu").shape == (0,)
    with pytest.raises(ValueError, match="dim"):
        token_max_pages(torch.from_numpy(queries[0]), [np.zeros((3, 8), dtype=np.float16)])


def test_bad_shapes_raise() -> None:
    with pytest.raises(ValueError, match="2-D"):
        maxsim([np.zeros(4, dtype=np.float32)], [np.zeros((2, 4), dtype=np.float32)])
    with pytest.raises(ValueError, match="at least one token"):
        maxsim([np.zeros((0, 4), dtype=np.float32)], [np.zeros((2, 4), dtype=np.float32)])
    with pytest.raises(ValueError, match="dim"):
        maxsim([np.zeros((1, 4), dtype=np.float32)], [np.zeros((2, 5), dtype=np.float32)])
    with pytest.raises(ValueError, match="at least one token"):
        token_max(torch.zeros(1, 4), torch.zeros(2, 4), torch.tensor([2, 0]))


@pytest.mark.gpu
def test_maxsim_gpu_matches_cpu(data: tuple[list[np.ndarray], list[np.ndarray]]) -> None:
    queries, docs = data
    np.testing.assert_allclose(
        maxsim(queries, docs, device="cuda").numpy(), maxsim(queries, docs, device="cpu").numpy(), atol=1e-4
    )
