"""MUVERA encodings against a loop-by-loop reference of the published algorithm, and the mean token."""

from __future__ import annotations

import numpy as np
import pytest

from umr.late import FDEConfig, FDEEncoder, MeanTokenEncoder, maxsim


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def _reference(points: np.ndarray, cfg: FDEConfig, document: bool) -> np.ndarray:
    """One page or query, point by point: SimHash bits per repetition (Gaussian matrix drawn from seed + rep,
    then the +-1 AMS projection from the same generator), sum per partition (queries) or mean with empty
    partitions taken from the point nearest in Hamming distance (pages)."""
    blocks = []
    n_part = 2**cfg.simhash_bits
    for rep in range(cfg.repetitions):
        rng = np.random.default_rng(cfg.seed + rep)
        gauss = rng.normal(size=(cfg.dim, cfg.simhash_bits)).astype(np.float32)
        if cfg.projection_dim is None:
            proj = np.eye(cfg.dim, dtype=np.float32)
        else:
            proj = np.zeros((cfg.dim, cfg.projection_dim), dtype=np.float32)
            cols = rng.integers(0, cfg.projection_dim, size=cfg.dim)
            signs = rng.choice([-1.0, 1.0], size=cfg.dim)
            for row in range(cfg.dim):
                proj[row, cols[row]] = signs[row]
        width = proj.shape[1]
        bits = [tuple(int(v > 0) for v in p @ gauss) for p in points]
        block = np.zeros((n_part, width))
        for part in range(n_part):
            part_bits = tuple((part >> (cfg.simhash_bits - 1 - b)) & 1 for b in range(cfg.simhash_bits))
            members = [p @ proj for p, bb in zip(points, bits) if bb == part_bits]
            if members:
                block[part] = np.mean(members, axis=0) if document else np.sum(members, axis=0)
            elif document and cfg.fill_empty:
                dist = [sum(x != y for x, y in zip(bb, part_bits)) for bb in bits]
                block[part] = points[int(np.argmin(dist))] @ proj
        blocks.append(block.reshape(-1))
    return np.concatenate(blocks)


@pytest.mark.parametrize(
    "cfg",
    [
        FDEConfig(dim=16, repetitions=3, simhash_bits=3, projection_dim=4, seed=7),
        FDEConfig(dim=16, repetitions=2, simhash_bits=2, projection_dim=None, fill_empty=False),
    ],
)
def test_fde_matches_reference(cfg: FDEConfig) -> None:
    rng = np.random.default_rng(0)
    pages = [_unit(rng.standard_normal((n, cfg.dim))) for n in (1, 3, 9)]
    enc = FDEEncoder(cfg)
    docs = enc.encode_documents(pages)
    queries = enc.encode_queries(pages)
    assert docs.shape == (3, cfg.output_dim)
    for k, page in enumerate(pages):
        np.testing.assert_allclose(docs[k], _reference(page, cfg, document=True), atol=1e-5)
        np.testing.assert_allclose(queries[k], _reference(page, cfg, document=False), atol=1e-5)


def test_final_projection_is_a_count_sketch_of_the_full_encoding() -> None:
    full_cfg = FDEConfig(dim=16, repetitions=2, simhash_bits=2, projection_dim=4)
    sketch_cfg = FDEConfig(dim=16, repetitions=2, simhash_bits=2, projection_dim=4, final_dim=10)
    rng = np.random.default_rng(1)
    pages = [_unit(rng.standard_normal((5, 16)))]
    full = FDEEncoder(full_cfg).encode_documents(pages)[0]
    got = FDEEncoder(sketch_cfg).encode_documents(pages)[0]
    g = np.random.default_rng(sketch_cfg.seed)
    index = g.integers(0, 10, size=full.size)
    sign = g.choice([-1.0, 1.0], size=full.size)
    expected = np.zeros(10)
    np.add.at(expected, index, sign * full)
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_fde_inner_product_tracks_maxsim() -> None:
    """With fine partitions and no projection, <FDE(q), FDE(d)> ranks pages close to MaxSim."""
    rng = np.random.default_rng(2)
    centres = _unit(rng.standard_normal((40, 32)))
    pages = [_unit(centres[rng.choice(40, 4)].repeat(6, axis=0) + 0.2 * rng.standard_normal((24, 32)))
             for _ in range(60)]
    queries = [_unit(centres[rng.choice(40, 2)].repeat(3, axis=0) + 0.2 * rng.standard_normal((6, 32)))
               for _ in range(10)]
    exact = maxsim(queries, pages, device="cpu").numpy()
    enc = FDEEncoder(FDEConfig(dim=32, repetitions=20, simhash_bits=3, projection_dim=None))
    approx = enc.encode_queries(queries) @ enc.encode_documents(pages).T
    corr = np.mean([np.corrcoef(a, e)[0, 1] for a, e in zip(approx, exact)])
    assert corr > 0.8


def test_mean_token_encoder() -> None:
    rng = np.random.default_rng(3)
    page = _unit(rng.standard_normal((7, 8)))
    enc = MeanTokenEncoder(8)
    np.testing.assert_allclose(enc.encode_documents([page])[0], _unit(page.mean(0)), atol=1e-6)
    np.testing.assert_allclose(enc.encode_queries([page])[0], page.sum(0), atol=1e-5)
    np.testing.assert_allclose(MeanTokenEncoder(8, normalize=False).encode_documents([page])[0], page.mean(0),
                               atol=1e-6)


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="simhash_bits"):
        FDEConfig(simhash_bits=40)
    with pytest.raises(ValueError, match="dim 8"):
        FDEEncoder(FDEConfig(dim=16)).encode_documents([np.ones((2, 8), dtype=np.float32)])
