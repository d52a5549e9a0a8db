"""A PLAID-style centroid first stage for late-interaction search.

Stored page tokens are clustered by spherical k-means (:meth:`CentroidIndex.fit`, a sample is enough);
each page keeps only the set of centroid ids its tokens fall in, and an inverted list maps each centroid to
the pages holding it. A query is scored in two vectorised steps, as PLAID / ColBERTv2 do:

1. **pruned** centroid interaction: each query token looks at its ``nprobe`` most similar centroids only;
   every page in those centroids' lists gets, per query token, the best such centroid score (0 when the
   token reached none of the page's centroids); the sum over query tokens ranks the pages and the best
   ``candidates`` go on;
2. **full** centroid interaction on those candidates: ``sum_i max over the page's centroids c of <q_i, c>``,
   which is exactly MaxSim with every page token replaced by its centroid; the best ``depth`` are returned
   for exact MaxSim (:meth:`umr.late.search.TwoStageSearcher.rerank`).

The index takes multi-vector queries, not one encoded vector (``takes_tokens = True``), and keeps
everything in memory (a few bytes per page token: one int32 per distinct centroid of a page, twice).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch

from umr.late.scoring import MultiVector
from umr.late.warp import _as_array
from umr.late.warp import _token_rows as _segments

logger = logging.getLogger(__name__)


class CentroidIndex:
    """Centroid-id sets per page plus inverted lists; ``search(queries, depth)`` returns page ids.

    ``nprobe``: centroids each query token looks at in the pruned step; ``candidates``: pages the pruned
    step passes to the full centroid scoring (at least ``depth``).
    """

    takes_tokens = True

    def __init__(self, centroids: np.ndarray, nprobe: int = 8, candidates: int = 2000) -> None:
        centroids = np.asarray(centroids, dtype=np.float32)
        if centroids.ndim != 2 or centroids.shape[0] == 0:
            raise ValueError(f"centroids must be a non-empty (n_centroids, dim) array, got shape {centroids.shape}")
        if nprobe < 1 or candidates < 1:
            raise ValueError(f"nprobe and candidates must be >= 1, got nprobe={nprobe}, candidates={candidates}")
        self.centroids = centroids
        self.nprobe = nprobe
        self.candidates = candidates
        self._codes: dict[str, np.ndarray] = {}
        self._built: tuple | None = None

    @property
    def dim(self) -> int:
        return self.centroids.shape[1]

    @property
    def n_centroids(self) -> int:
        return self.centroids.shape[0]

    def __len__(self) -> int:
        return len(self._codes)

    # -- building ---------------------------------------------------------------------------------------
    @classmethod
    def fit(
        cls,
        sample: Sequence[MultiVector] | np.ndarray,
        n_centroids: int,
        iterations: int = 8,
        seed: int = 0,
        **kwargs: int,
    ) -> CentroidIndex:
        """Spherical k-means (torch, CPU) of the sample's tokens into ``n_centroids`` unit centroids.

        The centroid count must grow with the collection: ColBERTv2 / PLAID take about ``16 * sqrt(stored
        tokens)`` rounded to a power of two. On the benchmark's synthetic corpus 4096 centroids give recall@10
        0.985 at depth 200 over 10k pages but only 0.49 over 100k (``benchmarks/late_interaction.py``);
        :class:`umr.late.warp.WarpIndex` (two-level k-means to tens of thousands of centroids, residual
        codes) is the first stage for large collections.
        """
        tokens = _as_array(sample) if isinstance(sample, np.ndarray) and sample.ndim == 2 else np.concatenate(
            [_as_array(page) for page in sample]
        )
        if n_centroids < 1 or n_centroids > len(tokens):
            raise ValueError(f"n_centroids must be in [1, {len(tokens)}] (sample tokens), got {n_centroids}")
        gen = torch.Generator().manual_seed(seed)
        x = torch.nn.functional.normalize(torch.from_numpy(tokens), dim=1)
        centroids = x[torch.randperm(len(x), generator=gen)[:n_centroids]].clone()
        with torch.inference_mode():
            for _ in range(iterations):
                assign = cls._nearest(x, centroids)
                sums = torch.zeros_like(centroids).index_add_(0, assign, x)
                counts = torch.bincount(assign, minlength=n_centroids)
                empty = counts == 0
                if empty.any():  # re-seed empty clusters with random sample tokens
                    sums[empty] = x[torch.randint(len(x), (int(empty.sum()),), generator=gen)]
                centroids = torch.nn.functional.normalize(sums, dim=1)
        return cls(centroids.numpy(), **kwargs)

    @staticmethod
    def _nearest(x: torch.Tensor, centroids: torch.Tensor, block: int = 16384) -> torch.Tensor:
        out = torch.empty(len(x), dtype=torch.long)
        for start in range(0, len(x), block):
            out[start : start + block] = (x[start : start + block] @ centroids.T).argmax(dim=1)
        return out

    def codes(self, page: MultiVector) -> np.ndarray:
        """The sorted distinct centroid ids of one page's tokens (nearest centroid by inner product)."""
        tokens = torch.from_numpy(_as_array(page))
        if tokens.shape[1] != self.dim:
            raise ValueError(f"page tokens have dim {tokens.shape[1]}, the centroids {self.dim}")
        with torch.inference_mode():
            nearest = self._nearest(tokens, torch.from_numpy(self.centroids))
        return np.unique(nearest.numpy()).astype(np.int32)

    def add(self, page_ids: Sequence[str], pages: Sequence[MultiVector]) -> None:
        """Add or replace pages (their tokens are assigned to the centroids; the tokens are not kept)."""
        if len(page_ids) != len(pages):
            raise ValueError(f"CentroidIndex.add got {len(page_ids)} ids for {len(pages)} pages")
        if not pages:
            return
        arrays = [_as_array(p) for p in pages]
        for a in arrays:
            if a.shape[1] != self.dim:
                raise ValueError(f"page tokens have dim {a.shape[1]}, the centroids {self.dim}")
        lengths = np.array([len(a) for a in arrays])
        with torch.inference_mode():
            nearest = self._nearest(torch.from_numpy(np.concatenate(arrays)), torch.from_numpy(self.centroids))
        nearest = nearest.numpy()
        bounds = np.concatenate([[0], np.cumsum(lengths)])
        for k, page_id in enumerate(page_ids):
            self._codes[page_id] = np.unique(nearest[bounds[k] : bounds[k + 1]]).astype(np.int32)
        self._built = None

    def delete(self, page_ids: Sequence[str]) -> None:
        for page_id in page_ids:
            if self._codes.pop(page_id, None) is not None:
                self._built = None

    def _build(self) -> tuple:
        if self._built is None:
            ids = list(self._codes)
            codes = [self._codes[i] for i in ids]
            lengths = np.array([len(c) for c in codes], dtype=np.int64)
            offsets = np.zeros(len(ids) + 1, dtype=np.int64)
            np.cumsum(lengths, out=offsets[1:])
            flat = np.concatenate(codes) if codes else np.zeros(0, dtype=np.int32)
            rows = np.repeat(np.arange(len(ids), dtype=np.int32), lengths)
            order = np.argsort(flat, kind="stable")
            inv_pages = rows[order]
            inv_offsets = np.zeros(self.n_centroids + 1, dtype=np.int64)
            np.cumsum(np.bincount(flat, minlength=self.n_centroids), out=inv_offsets[1:])
            self._built = (ids, offsets, flat, inv_offsets, inv_pages)
        return self._built

    # -- scoring ----------------------------------------------------------------------------------------
    def approximate_scores(self, query: MultiVector, page_ids: Sequence[str]) -> np.ndarray:
        """Full centroid interaction of one query with ``page_ids``: MaxSim against the pages' centroids."""
        sims = _as_array(query) @ self.centroids.T
        return self._full(sims, [self._codes[i] for i in page_ids])

    @staticmethod
    def _full(sims: np.ndarray, codes: list[np.ndarray] | tuple[np.ndarray, np.ndarray]) -> np.ndarray:
        if isinstance(codes, tuple):
            flat, firsts = codes
        else:
            lengths = np.array([len(c) for c in codes])
            firsts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
            flat = np.concatenate(codes)
        if len(firsts) == 0:
            return np.zeros(0, dtype=np.float32)
        return np.maximum.reduceat(sims[:, flat], firsts, axis=1).sum(axis=0)

    def search(self, queries: Sequence[MultiVector], depth: int) -> list[list[str]]:
        """For each multi-vector query, the ids of the ``depth`` pages with the best centroid scores."""
        ids, offsets, flat, inv_offsets, inv_pages = self._build()
        n_pages = len(ids)
        out = []
        for query in queries:
            if n_pages == 0:
                out.append([])
                continue
            q = _as_array(query)
            if q.shape[1] != self.dim:
                raise ValueError(f"query tokens have dim {q.shape[1]}, the centroids {self.dim}")
            sims = q @ self.centroids.T  # (n_q, K)
            n_q = len(q)
            probe = min(self.nprobe, self.n_centroids)
            top = np.argpartition(-sims, probe - 1, axis=1)[:, :probe] if probe < self.n_centroids else (
                np.broadcast_to(np.arange(self.n_centroids), (n_q, self.n_centroids)))
            cells = top.ravel()
            values = np.take_along_axis(sims, top, axis=1).ravel()
            token = np.repeat(np.arange(n_q), probe)
            positions, _ = _segments(inv_offsets, cells)
            lengths = inv_offsets[cells + 1] - inv_offsets[cells]
            pages = inv_pages[positions].astype(np.int64)
            key = torch.from_numpy(np.repeat(token, lengths) * n_pages + pages)
            vals = torch.from_numpy(np.repeat(values, lengths).astype(np.float32))
            # pages no probed centroid reaches score 0 for that token (PLAID's pruned interaction)
            dense = torch.zeros(n_q * n_pages).scatter_reduce_(0, key, vals, "amax", include_self=False)
            pruned = dense.view(n_q, n_pages).sum(dim=0)
            reached = torch.zeros(n_pages, dtype=torch.bool)
            reached[torch.from_numpy(pages)] = True
            n_cand = min(max(self.candidates, depth), int(reached.sum()))
            pruned[~reached] = -float("inf")
            cand = torch.topk(pruned, n_cand).indices.numpy() if n_cand else np.zeros(0, dtype=np.int64)
            if len(cand) <= depth:  # fewer reached than asked: return those, best first
                chosen = cand[np.argsort(-self._full(sims, self._csr(offsets, flat, cand)), kind="stable")]
            else:
                full = self._full(sims, self._csr(offsets, flat, cand))
                best = np.argpartition(-full, depth - 1)[:depth]
                chosen = cand[best[np.argsort(-full[best], kind="stable")]]
            out.append([ids[i] for i in chosen])
        return out

    @staticmethod
    def _csr(offsets: np.ndarray, flat: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        positions, firsts = _segments(offsets, rows)
        return flat[positions], firsts
