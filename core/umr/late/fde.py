"""One vector per page for the first stage: MUVERA fixed-dimensional encodings, or the mean token.

MUVERA (Dhulipala et al., 2024; Google graph-mining ``sketching/point_cloud``): per repetition, ``k``
Gaussian SimHash hyperplanes split the space into ``2**k`` partitions; every token is (optionally)
projected to ``projection_dim`` by a random +-1 sparse (AMS) matrix; a query's block for a partition is the
**sum** of its tokens there, a page's block the **mean** of its tokens there, and a page's empty partition
is filled with the projected token whose SimHash bits are nearest in Hamming distance to the partition.
Repetitions are concatenated; an optional count-sketch projects the result to ``final_dim``. The inner
product of a query encoding and a page encoding approximates the MaxSim (Chamfer) score.

Partitions are numbered by the plain binary value of the sign bits (the reference numbers them in Gray
code): any bijection gives the same inner products, and Hamming distances are taken on the bits.

The mean-token alternative is the normalised mean of a page's tokens and the sum of a query's tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from umr.late.scoring import MultiVector, as_tensor


@dataclass(frozen=True)
class FDEConfig:
    """Parameters of a MUVERA encoding; the output has ``repetitions * 2**simhash_bits * projection_dim``
    dimensions (or ``final_dim`` when set)."""

    dim: int = 128
    repetitions: int = 10
    simhash_bits: int = 4
    #: None keeps the token dimension (identity projection)
    projection_dim: int | None = 16
    fill_empty: bool = True
    final_dim: int | None = None
    seed: int = 42

    def __post_init__(self) -> None:
        if self.dim < 1 or self.repetitions < 1:
            raise ValueError(f"FDEConfig needs dim >= 1 and repetitions >= 1, got {self.dim}, {self.repetitions}")
        if not 0 <= self.simhash_bits <= 16:
            raise ValueError(f"simhash_bits must be in [0, 16], got {self.simhash_bits}")
        if self.projection_dim is not None and self.projection_dim < 1:
            raise ValueError(f"projection_dim must be >= 1 or None, got {self.projection_dim}")
        if self.final_dim is not None and self.final_dim < 1:
            raise ValueError(f"final_dim must be >= 1 or None, got {self.final_dim}")

    @property
    def partitions(self) -> int:
        return 2**self.simhash_bits

    @property
    def block_dim(self) -> int:
        return self.projection_dim if self.projection_dim is not None else self.dim

    @property
    def output_dim(self) -> int:
        return self.final_dim or self.repetitions * self.partitions * self.block_dim


class FDEEncoder:
    """Encodes queries and pages with one :class:`FDEConfig`; the random matrices are drawn once from the seed."""

    def __init__(self, config: FDEConfig | None = None) -> None:
        self.config = config or FDEConfig()
        cfg = self.config
        self._simhash: list[torch.Tensor] = []
        self._projection: list[torch.Tensor | None] = []
        for rep in range(cfg.repetitions):
            rng = np.random.default_rng(cfg.seed + rep)
            self._simhash.append(torch.from_numpy(rng.normal(size=(cfg.dim, cfg.simhash_bits)).astype(np.float32)))
            if cfg.projection_dim is None:
                self._projection.append(None)
            else:
                # one +-1 per row (AMS sketch): the column, then the sign, drawn after the SimHash matrix
                cols = rng.integers(0, cfg.projection_dim, size=cfg.dim)
                signs = rng.choice([-1.0, 1.0], size=cfg.dim)
                ams = np.zeros((cfg.dim, cfg.projection_dim), dtype=np.float32)
                ams[np.arange(cfg.dim), cols] = signs
                self._projection.append(torch.from_numpy(ams))
        self._sketch: tuple[torch.Tensor, torch.Tensor] | None = None
        if cfg.final_dim is not None:
            rng = np.random.default_rng(cfg.seed)
            full = cfg.repetitions * cfg.partitions * cfg.block_dim
            self._sketch = (
                torch.from_numpy(rng.integers(0, cfg.final_dim, size=full)),
                torch.from_numpy(rng.choice([-1.0, 1.0], size=full).astype(np.float32)),
            )
        # popcount of every partition code, for Hamming distances between bit patterns
        self._popcount = torch.tensor([bin(v).count("1") for v in range(cfg.partitions)])
        self._weights = 2 ** torch.arange(cfg.simhash_bits - 1, -1, -1)

    @property
    def dim(self) -> int:
        return self.config.output_dim

    def encode_queries(self, queries: Sequence[MultiVector]) -> np.ndarray:
        """``(n, output_dim)`` float32 query encodings (sum per partition)."""
        return self._encode(queries, document=False)

    def encode_documents(self, docs: Sequence[MultiVector]) -> np.ndarray:
        """``(n, output_dim)`` float32 page encodings (mean per partition, empty ones filled)."""
        return self._encode(docs, document=True)

    def _encode(self, items: Sequence[MultiVector], document: bool) -> np.ndarray:
        cfg = self.config
        if len(items) == 0:
            return np.zeros((0, cfg.output_dim), dtype=np.float32)
        tensors = [as_tensor(item, "cpu") for item in items]
        for k, t in enumerate(tensors):
            if t.shape[1] != cfg.dim:
                raise ValueError(f"multi-vector {k} has dim {t.shape[1]}, the FDE config expects {cfg.dim}")
        with torch.inference_mode():
            points = torch.cat(tensors)
            lengths = torch.tensor([t.shape[0] for t in tensors])
            owner = torch.repeat_interleave(torch.arange(len(tensors)), lengths)
            n_docs, n_part, width = len(tensors), cfg.partitions, cfg.block_dim
            blocks = []
            # every repetition's SimHash bits in one product
            all_bits = (points @ torch.cat(self._simhash, dim=1) > 0).to(torch.long) if cfg.simhash_bits else None
            for rep in range(cfg.repetitions):
                if all_bits is None:
                    code = torch.zeros_like(owner)
                else:
                    bits = all_bits[:, rep * cfg.simhash_bits : (rep + 1) * cfg.simhash_bits]
                    code = (bits * self._weights).sum(dim=1)
                slot = owner * n_part + code
                # aggregate in the token space, then project: the projection is linear, so the mean
                # (or sum, or the filled-in token) of projected tokens is the projection of the aggregate,
                # and there are fewer (page, partition) slots than tokens
                sums = torch.zeros((n_docs * n_part, cfg.dim)).index_add_(0, slot, points)
                if document:
                    counts = torch.bincount(slot, minlength=n_docs * n_part).to(torch.float32)
                    sums = sums / counts.clamp_min(1.0)[:, None]
                    if cfg.fill_empty:
                        sums = self._fill_empty(sums, counts, code, owner, points, n_docs)
                proj = self._projection[rep]
                if proj is not None:
                    sums = sums @ proj
                blocks.append(sums.view(n_docs, n_part * width))
            out = torch.cat(blocks, dim=1)
            if self._sketch is not None:
                index, sign = self._sketch
                out = torch.zeros((n_docs, cfg.final_dim)).index_add_(1, index, out * sign)
            return out.numpy()

    def _fill_empty(
        self,
        sums: torch.Tensor,
        counts: torch.Tensor,
        code: torch.Tensor,
        owner: torch.Tensor,
        projected: torch.Tensor,
        n_docs: int,
    ) -> torch.Tensor:
        """Each empty (page, partition) slot takes the page's token nearest in Hamming distance (first on ties)."""
        n_part = self.config.partitions
        empty = counts == 0
        if not bool(empty.any()):
            return sums
        n_points = code.shape[0]
        hamming = self._popcount[code[:, None] ^ torch.arange(n_part)[None, :]]  # (P, n_part)
        key = hamming * n_points + torch.arange(n_points)[:, None]  # smaller distance, then earlier token
        best = torch.full((n_docs, n_part), torch.iinfo(torch.long).max, dtype=torch.long)
        best.scatter_reduce_(0, owner[:, None].expand(-1, n_part), key, reduce="amin", include_self=True)
        slots = empty.nonzero(as_tuple=True)[0]
        sums[slots] = projected[best.view(-1)[slots] % n_points]
        return sums


class MeanTokenEncoder:
    """The mean-token first stage: the mean of a page's tokens (L2-normalised unless ``normalize=False``)
    and the sum of a query's tokens.

    Unnormalised, ``<sum(q), mean(d)>`` is the average over page tokens of the summed query similarity, a
    cheap proxy for MaxSim; normalised, it is what a cosine-space index (Chroma's default) ranks by.
    """

    def __init__(self, dim: int = 128, normalize: bool = True) -> None:
        self.dim = dim
        self.normalize = normalize

    def encode_queries(self, queries: Sequence[MultiVector]) -> np.ndarray:
        return np.stack([as_tensor(q, "cpu").sum(dim=0).numpy() for q in queries]) if len(queries) else (
            np.zeros((0, self.dim), dtype=np.float32)
        )

    def encode_documents(self, docs: Sequence[MultiVector]) -> np.ndarray:
        if not len(docs):
            return np.zeros((0, self.dim), dtype=np.float32)
        means = torch.stack([as_tensor(d, "cpu").mean(dim=0) for d in docs])
        if self.normalize:
            means = torch.nn.functional.normalize(means, dim=-1)
        return means.numpy()
