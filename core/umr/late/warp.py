"""A WARP-style token-level first stage for late-interaction search: many centroids, compressed residuals.

:class:`~umr.late.centroid.CentroidIndex` keeps, per page, only the set of centroids its tokens fall in;
with a few thousand centroids that cannot tell apart pages that share a topic, and flat k-means with the
tens of thousands of centroids a 100k-page collection needs is too slow on a CPU. :class:`WarpIndex`
follows ColBERTv2 / PLAID / WARP instead:

* **two-level k-means** (:meth:`WarpIndex.fit`, on a token sample): ``coarse`` cells first, then each cell's
  tokens into fine centroids (their number proportional to the cell's share of the sample), so fitting
  and assigning a token costs ``coarse + one cell's centroids`` similarities, not all ``n_centroids``;
* every stored token keeps its fine centroid id and its **residual** (token - centroid) quantised to
  ``nbits`` per dimension (uniform levels per dimension, fitted on the sample), ``dim * nbits / 8``
  bytes; tokens are held in inverted lists, centroid -> (page, residual code);
* a query token looks at its ``nprobe`` most similar centroids (among those of the ``cells`` coarse cells
  most similar to any query token: the probes of all query tokens stay in the query's region, and only
  those centroids are scored); every token in the probed lists is
  decoded (``centroid + residual``: unpacking and one matrix product, no per-token Python) and scored
  against *every* query token; each page keeps, per query token, its best hit token, raised to WARP's
  *missing-similarity* estimate for that query token (the similarity of its least similar probed centroid
  times ``missing_scale``: roughly what its unprobed tokens could offer). The sum over query tokens ranks
  the pages and the best ``depth`` go to exact MaxSim (:meth:`umr.late.search.TwoStageSearcher.rerank`);
* optionally (``candidates > 0``) the best ``candidates`` pages are first re-scored with *all* their tokens
  decoded (closer to MaxSim, at about the cost of exact MaxSim of as many pages).

Unlike PLAID's centroid interaction, which ranks pages by centroid ids alone, the residuals break the ties
between the many pages that share a topic's centroids; that is what a 100k-page collection needs
(``benchmarks/late_interaction.py``).

Everything is held in memory: per stored token ``dim * nbits / 8`` code bytes (64 at 128 dims and 4 bits),
its centroid id, page row and position (int32 each), plus a per-page copy of ids and codes for add /
delete / save (:meth:`WarpIndex.memory_bytes`). :meth:`WarpIndex.save` / :meth:`WarpIndex.load` persist it to one
``.npz`` file.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from umr.late.scoring import MultiVector

logger = logging.getLogger(__name__)

_NBITS = (1, 2, 4, 8)
#: optimal uniform quantiser step for a unit Gaussian by bit width (8 bits: levels over +-4 sigma)
_GAUSSIAN_STEP = {1: 1.596, 2: 0.9957, 4: 0.3352, 8: 8 / 255}
_FORMAT = 2


def _as_array(vectors: MultiVector, dim: int | None = None) -> np.ndarray:
    if isinstance(vectors, torch.Tensor):
        vectors = vectors.detach().to("cpu", torch.float32).numpy()
    array = np.asarray(vectors, dtype=np.float32)
    if array.ndim != 2 or array.shape[0] == 0:
        raise ValueError(f"a multi-vector must be a non-empty (n_tokens, dim) array, got shape {array.shape}")
    if dim is not None and array.shape[1] != dim:
        raise ValueError(f"tokens have dim {array.shape[1]}, the index {dim}")
    return array


def _spherical_kmeans(x: torch.Tensor, k: int, iterations: int, gen: torch.Generator) -> torch.Tensor:
    """Unit centroids of unit rows ``x`` (k <= len(x)); empty clusters re-seeded from random rows."""
    centroids = x[torch.randperm(len(x), generator=gen)[:k]].clone()
    for _ in range(iterations):
        assign = _nearest(x, centroids)
        sums = torch.zeros_like(centroids).index_add_(0, assign, x)
        empty = torch.bincount(assign, minlength=k) == 0
        if empty.any():
            sums[empty] = x[torch.randint(len(x), (int(empty.sum()),), generator=gen)]
        centroids = torch.nn.functional.normalize(sums, dim=1)
    return centroids


def _nearest(x: torch.Tensor, centroids: torch.Tensor, block: int = 16384) -> torch.Tensor:
    out = torch.empty(len(x), dtype=torch.long)
    for start in range(0, len(x), block):
        out[start : start + block] = (x[start : start + block] @ centroids.T).argmax(dim=1)
    return out


def _segments(offsets: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Flat positions of CSR rows ``rows`` (concatenated) and each position's index into ``rows``."""
    starts, ends = offsets[rows], offsets[rows + 1]
    lengths = ends - starts
    firsts = np.zeros(len(rows), dtype=np.int64)
    np.cumsum(lengths[:-1], out=firsts[1:])
    total = int(lengths.sum())
    positions = np.arange(total, dtype=np.int64) - np.repeat(firsts - starts, lengths)
    return positions, np.repeat(np.arange(len(rows)), lengths)


def _token_rows(offsets: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Flat positions of CSR rows ``rows`` (concatenated, each non-empty) and the start of each row."""
    starts, ends = offsets[rows], offsets[rows + 1]
    lengths = ends - starts
    firsts = np.zeros(len(rows), dtype=np.int64)
    np.cumsum(lengths[:-1], out=firsts[1:])
    positions = np.arange(int(lengths.sum()), dtype=np.int64) - np.repeat(firsts - starts, lengths)
    return positions, firsts


class WarpIndex:
    """Token-level first stage over many centroids with residual codes; ``search(queries, depth)`` -> ids.

    Build with :meth:`fit` on a sample of page tokens, then :meth:`add` pages (add / delete are cheap; the
    inverted lists are rebuilt, O(stored tokens), by the next search). ``nprobe``: centroids each query
    token probes; ``cells``: coarse cells opened per query token, whose centroids the probes are chosen
    from (0: all centroids); ``missing_scale``: factor on the missing-similarity estimate; ``candidates``:
    pages re-scored with all their tokens decoded before the best ``depth`` are returned (0: none).

    On the benchmark's 100k-page corpus (32768 centroids, 4-bit residuals) ``nprobe`` 32 with ``cells`` 8
    gives recall@10 0.977 of exhaustive MaxSim at depth 200 (0.965 scoring all centroids); ``nprobe`` 16
    is faster at 0.956.

    >>> index = WarpIndex.fit(sample_pages, n_centroids=32768)      # doctest: +SKIP
    >>> index.add(page_ids, pages)                                   # doctest: +SKIP
    >>> TwoStageSearcher(store, first_stage=index).search(queries, k=10, depth=200)  # doctest: +SKIP
    """

    takes_tokens = True

    def __init__(
        self,
        coarse: np.ndarray,
        centroids: np.ndarray,
        cell_bounds: np.ndarray,
        residual_low: np.ndarray,
        residual_step: np.ndarray,
        nbits: int = 4,
        nprobe: int = 32,
        missing_scale: float = 1.0,
        candidates: int = 0,
        cells: int = 8,
    ) -> None:
        self.coarse = np.ascontiguousarray(coarse, dtype=np.float32)
        self.centroids = np.ascontiguousarray(centroids, dtype=np.float32)
        self.cell_bounds = np.asarray(cell_bounds, dtype=np.int64)
        self.residual_low = np.asarray(residual_low, dtype=np.float32)  # (dim,): value of level 0
        self.residual_step = np.asarray(residual_step, dtype=np.float32)  # (dim,): value between levels
        dim = self.centroids.shape[1] if self.centroids.ndim == 2 else -1
        if self.centroids.ndim != 2 or self.coarse.ndim != 2 or self.coarse.shape[1] != dim:
            raise ValueError(f"coarse {self.coarse.shape} and centroids {self.centroids.shape} must be (n, dim)")
        if len(self.cell_bounds) != len(self.coarse) + 1 or self.cell_bounds[-1] != len(self.centroids):
            raise ValueError("cell_bounds must hold len(coarse) + 1 offsets ending at len(centroids)")
        if self.residual_low.shape != (dim,) or self.residual_step.shape != (dim,):
            raise ValueError(f"residual_low / residual_step must be ({dim},), got {self.residual_low.shape}, "
                             f"{self.residual_step.shape}")
        if nbits not in _NBITS:
            raise ValueError(f"nbits must be one of {_NBITS}, got {nbits}")
        if dim % (8 // nbits):
            raise ValueError(f"dim {dim} must be a multiple of {8 // nbits} for {nbits}-bit residuals")
        if nprobe < 1 or missing_scale < 0 or candidates < 0 or cells < 0:
            raise ValueError(f"nprobe must be >= 1, missing_scale, candidates and cells >= 0, got {nprobe}, "
                             f"{missing_scale}, {candidates}, {cells}")
        self.nbits = nbits
        self.nprobe = nprobe
        self.missing_scale = float(missing_scale)
        self.candidates = int(candidates)
        self.cells = int(cells)
        levels = 2**nbits
        per_byte = 8 // nbits
        # level of each packed dimension for every byte value: (256, per_byte)
        shifts = np.arange(per_byte) * nbits
        self._byte_levels = ((np.arange(256)[:, None] >> shifts[None, :]) & (levels - 1)).astype(np.int64)
        # decoded residual value of each (dim, level): (dim, levels)
        self.weights = self.residual_low[:, None] + self.residual_step[:, None] * np.arange(levels, dtype=np.float32)
        # built state: tokens in centroid order (see _build); pages added since (pending) and base rows
        # deleted or replaced since (dead) are merged in by the next _build
        self._base_ids: list[str] = []
        self._base_row: dict[str, int] = {}
        self._dead: set[int] = set()
        self._pending: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._set_base([], np.zeros(0, dtype=np.int32), np.zeros((0, self.code_bytes), dtype=np.uint8),
                       np.zeros(0, dtype=np.int64))

    @property
    def dim(self) -> int:
        return self.centroids.shape[1]

    @property
    def n_centroids(self) -> int:
        return self.centroids.shape[0]

    @property
    def code_bytes(self) -> int:
        """Bytes of one token's residual code."""
        return self.dim * self.nbits // 8

    def __len__(self) -> int:
        return len(self._base_ids) - len(self._dead) + len(self._pending)

    def __contains__(self, page_id: object) -> bool:
        row = self._base_row.get(page_id)  # type: ignore[call-overload]
        return page_id in self._pending or (row is not None and row not in self._dead)

    def ids(self) -> list[str]:
        """Every page id held (built pages first, then those added since)."""
        alive = [i for r, i in enumerate(self._base_ids) if r not in self._dead]
        return alive + list(self._pending)

    # -- fitting ----------------------------------------------------------------------------------------
    @classmethod
    def fit(
        cls,
        sample: Sequence[MultiVector] | np.ndarray,
        n_centroids: int,
        coarse: int | None = None,
        nbits: int = 4,
        iterations: int = 8,
        seed: int = 0,
        nprobe: int = 32,
        missing_scale: float = 1.0,
        candidates: int = 0,
        cells: int = 8,
    ) -> WarpIndex:
        """Two-level spherical k-means of the sample's tokens and the residual buckets.

        ``n_centroids`` fine centroids in all (about ``16 * sqrt(stored tokens)`` as PLAID takes, rounded to
        a power of two: 32768 for 6M tokens); ``coarse`` cells (default ``sqrt(n_centroids)``), each split
        into fine centroids in proportion to its share of the sample. The sample should hold several
        tokens per centroid (a few hundred thousand tokens for 32k centroids). ``nbits`` per residual
        dimension: one of 1, 2, 4, 8.
        """
        tokens = _as_array(sample) if isinstance(sample, np.ndarray) and sample.ndim == 2 else np.concatenate(
            [_as_array(page) for page in sample]
        )
        if nbits not in _NBITS:
            raise ValueError(f"nbits must be one of {_NBITS}, got {nbits}")
        if n_centroids < 1 or n_centroids > len(tokens):
            raise ValueError(f"n_centroids must be in [1, {len(tokens)}] (sample tokens), got {n_centroids}")
        n_coarse = coarse if coarse is not None else max(1, round(float(np.sqrt(n_centroids))))
        if not 1 <= n_coarse <= n_centroids:
            raise ValueError(f"coarse must be in [1, n_centroids={n_centroids}], got {n_coarse}")
        gen = torch.Generator().manual_seed(seed)
        x = torch.nn.functional.normalize(torch.from_numpy(tokens), dim=1)
        with torch.inference_mode():
            top = _spherical_kmeans(x, n_coarse, iterations, gen)
            cell = _nearest(x, top)
            counts = torch.bincount(cell, minlength=n_coarse).numpy()
            # fine centroids per cell in proportion to its tokens (largest remainders), at most its tokens
            share = counts / counts.sum() * n_centroids
            fine = np.minimum(np.floor(share).astype(np.int64), counts)
            for c in np.argsort(-(share - np.floor(share))):
                if fine.sum() >= n_centroids:
                    break
                if fine[c] < counts[c]:
                    fine[c] += 1
            order = torch.argsort(cell, stable=True)
            bounds = np.concatenate([[0], np.cumsum(counts)])
            parts = []
            for c in range(n_coarse):
                if fine[c] == 0:
                    continue
                members = x[order[bounds[c] : bounds[c + 1]]]
                parts.append(_spherical_kmeans(members, int(fine[c]), iterations, gen))
            centroids = torch.cat(parts).numpy()
        keep = fine > 0
        cell_bounds = np.concatenate([[0], np.cumsum(fine[keep])])
        dim = tokens.shape[1]
        index = cls(top.numpy()[keep], centroids, cell_bounds, np.zeros(dim), np.zeros(dim), nbits=nbits)
        residual = x.numpy() - centroids[index.assign(x.numpy())]
        # uniform levels per dimension, centred on the mean, spaced by the step that minimises the squared
        # error of a uniform quantiser of a Gaussian (Max, 1960) times the dimension's standard deviation
        mean, std = residual.mean(axis=0), np.maximum(residual.std(axis=0), 1e-6)
        step = _GAUSSIAN_STEP[nbits] * std
        low = mean - step * (2**nbits - 1) / 2
        return cls(index.coarse, centroids, cell_bounds, low, step, nbits=nbits, nprobe=nprobe,
                   missing_scale=missing_scale, candidates=candidates, cells=cells)

    # -- encoding ---------------------------------------------------------------------------------------
    def assign(self, tokens: np.ndarray) -> np.ndarray:
        """Fine centroid id of each token: its nearest coarse cell, then the nearest centroid in that cell."""
        x = torch.from_numpy(np.ascontiguousarray(tokens, dtype=np.float32))
        with torch.inference_mode():
            cell = _nearest(x, torch.from_numpy(self.coarse)).numpy()
            out = np.empty(len(x), dtype=np.int32)
            order = np.argsort(cell, kind="stable")
            bounds = np.searchsorted(cell[order], np.arange(len(self.coarse) + 1))
            for c in np.flatnonzero(np.diff(bounds)):
                rows = order[bounds[c] : bounds[c + 1]]
                lo, hi = self.cell_bounds[c], self.cell_bounds[c + 1]
                sims = x[torch.from_numpy(rows)] @ torch.from_numpy(self.centroids[lo:hi]).T
                out[rows] = lo + sims.argmax(dim=1).numpy()
        return out

    def _levels(self, residual: np.ndarray) -> np.ndarray:
        levels = np.rint((residual - self.residual_low) / self.residual_step)
        return np.clip(levels, 0, 2**self.nbits - 1).astype(np.uint8)

    def encode(self, tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(centroid ids (n,) int32, residual codes (n, code_bytes) uint8)`` of ``(n, dim)`` tokens."""
        tokens = _as_array(tokens, self.dim)
        ids = self.assign(tokens)
        levels = self._levels(tokens - self.centroids[ids])
        per_byte = 8 // self.nbits
        grouped = levels.reshape(len(tokens), -1, per_byte).astype(np.uint16)
        packed = (grouped << (np.arange(per_byte, dtype=np.uint16) * self.nbits)).sum(axis=2)
        return ids, packed.astype(np.uint8)

    def decode(self, ids: np.ndarray, codes: np.ndarray) -> np.ndarray:
        """Approximate tokens from centroid ids and residual codes (the inverse of :meth:`encode`)."""
        levels = self._byte_levels[codes.astype(np.int64)].reshape(len(ids), self.dim)
        return self.centroids[ids] + self.weights[np.arange(self.dim)[None, :], levels]

    # -- building ---------------------------------------------------------------------------------------
    def add(self, page_ids: Sequence[str], pages: Sequence[MultiVector]) -> None:
        """Add or replace pages (tokens are encoded to centroid ids + residual codes; not kept)."""
        if len(page_ids) != len(pages):
            raise ValueError(f"WarpIndex.add got {len(page_ids)} ids for {len(pages)} pages")
        if not pages:
            return
        arrays = [_as_array(p, self.dim) for p in pages]
        lengths = np.array([len(a) for a in arrays])
        ids, codes = self.encode(np.concatenate(arrays))
        bounds = np.concatenate([[0], np.cumsum(lengths)])
        for k, page_id in enumerate(page_ids):
            row = self._base_row.get(page_id)
            if row is not None:
                self._dead.add(row)
            self._pending[page_id] = (ids[bounds[k] : bounds[k + 1]], codes[bounds[k] : bounds[k + 1]])

    def delete(self, page_ids: Sequence[str]) -> None:
        """Remove pages; unknown ids are ignored."""
        for page_id in page_ids:
            self._pending.pop(page_id, None)
            row = self._base_row.get(page_id)
            if row is not None:
                self._dead.add(row)

    def _page(self, page_id: str) -> tuple[np.ndarray, np.ndarray]:
        """One page's ``(centroid ids, residual codes)``."""
        if page_id in self._pending:
            return self._pending[page_id]
        row = self._base_row.get(page_id)
        if row is None or row in self._dead:
            raise KeyError(f"page {page_id!r} is not in the WarpIndex")
        where = self._positions[self._page_offsets[row] : self._page_offsets[row + 1]]
        return self._token_cents[where], self._codes[where]

    def _set_base(self, ids: list[str], cents: np.ndarray, codes: np.ndarray, lengths: np.ndarray) -> None:
        """Make ``ids`` (their tokens page after page: centroid ids, codes) the built state."""
        self._base_ids = ids
        self._base_row = {page_id: row for row, page_id in enumerate(ids)}
        self._dead, self._pending = set(), {}
        self._page_offsets = np.zeros(len(ids) + 1, dtype=np.int64)
        np.cumsum(lengths, out=self._page_offsets[1:])
        order = np.argsort(cents, kind="stable")
        self._offsets = np.zeros(self.n_centroids + 1, dtype=np.int64)
        np.cumsum(np.bincount(cents, minlength=self.n_centroids), out=self._offsets[1:])
        self._token_pages = np.repeat(np.arange(len(ids), dtype=np.int32), lengths)[order]
        self._token_cents = np.ascontiguousarray(cents[order], dtype=np.int32)
        self._codes = np.ascontiguousarray(codes[order])
        self._positions = np.empty(len(order), dtype=np.int32)
        self._positions[order] = np.arange(len(order), dtype=np.int32)

    def _build(self) -> tuple:
        """``(ids, list offsets, token pages, token codes, page offsets, token positions, token centroids)``:
        every token in centroid order (its page row, residual code and centroid; list ``c`` is
        ``offsets[c]:offsets[c + 1]``) and per page (CSR by ``page offsets``) its tokens' positions in that
        order. Pages added or deleted since the last build are merged in first (O(stored tokens))."""
        if self._pending or self._dead:
            alive = np.array([r for r in range(len(self._base_ids)) if r not in self._dead], dtype=np.int64)
            rows, _ = _token_rows(self._page_offsets, alive)
            where = self._positions[rows]
            pending = list(self._pending.values())
            cents = np.concatenate([self._token_cents[where], *(c for c, _ in pending)])
            codes = np.concatenate([self._codes[where], *(k for _, k in pending)])
            lengths = np.concatenate([np.diff(self._page_offsets)[alive], [len(c) for c, _ in pending]])
            ids = [self._base_ids[r] for r in alive] + list(self._pending)
            self._set_base(ids, cents.astype(np.int32), codes, lengths.astype(np.int64))
        return (self._base_ids, self._offsets, self._token_pages, self._codes, self._page_offsets, self._positions,
                self._token_cents)

    def memory_bytes(self) -> int:
        """Bytes of the index's arrays (centroids, inverted lists, codes); Python objects not counted."""
        self._build()
        arrays = (self.centroids, self.coarse, self._offsets, self._token_pages, self._token_cents, self._codes,
                  self._page_offsets, self._positions)
        return int(sum(a.nbytes for a in arrays))

    # -- scoring ----------------------------------------------------------------------------------------
    def search(self, queries: Sequence[MultiVector], depth: int) -> list[list[str]]:
        """For each multi-vector query, the ids of the ``depth`` pages with the best approximate MaxSim."""
        ids, *built = self._build()
        out = []
        with torch.inference_mode():
            for query in queries:
                if not ids:
                    out.append([])
                    continue
                q = _as_array(query, self.dim)
                out.append([ids[i] for i in self._search_one(q, depth, *built)])
        return out

    def approximate_scores(self, query: MultiVector, page_ids: Sequence[str]) -> np.ndarray:
        """MaxSim of one query against ``page_ids`` with every page token decoded (centroid + residual):
        the score the index ranks by when every list is probed."""
        q = _as_array(query, self.dim)
        sims_t = self.centroids @ q.T
        out = np.empty(len(page_ids), dtype=np.float32)
        for k, page_id in enumerate(page_ids):
            cents, codes = self._page(page_id)
            out[k] = float(self._token_sims(q, sims_t, codes, cents).amax(dim=0).sum())
        return out

    def _token_sims(self, q: np.ndarray, sims_t: np.ndarray, codes: np.ndarray, token_cents: np.ndarray
                    ) -> np.ndarray:
        """``(T, n_q)`` tensor of approximate similarities of decoded tokens: ``<q, c> + <q, low> + <q * step,
        level>``.

        ``sims_t`` is ``(K, n_q)``: every centroid against every query token."""
        packed = torch.from_numpy(codes)  # (T, code_bytes) uint8
        if self.nbits == 8:
            levels = packed
        else:
            mask = 2**self.nbits - 1
            levels = torch.stack([(packed >> shift) & mask for shift in range(0, 8, self.nbits)], dim=2)
        levels = levels.reshape(len(codes), self.dim).to(torch.float32)
        out = levels @ torch.from_numpy((q * self.residual_step).T)
        out += torch.from_numpy(sims_t[token_cents] + (q @ self.residual_low)[None, :])
        return out

    def _probe(self, q: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(sims_t (K, n_q), top (n_q, nprobe), top sims)``: each query token's ``nprobe`` most similar
        centroids. With ``cells`` set, only the centroids of the ``cells`` coarse cells most similar to some
        query token are scored (rows of ``sims_t`` outside them are 0 and never read); without, all are."""
        qt = torch.from_numpy(q)
        probe = min(self.nprobe, self.n_centroids)
        if self.cells and self.cells < len(self.coarse) and not self.candidates:
            coarse = qt @ torch.from_numpy(self.coarse).T  # (n_q, cells)
            opened = np.unique(torch.topk(coarse, self.cells, dim=1).indices.numpy())
            rows, _ = _segments(self.cell_bounds, opened)
            sub = qt @ torch.from_numpy(self.centroids[rows]).T  # (n_q, len(rows))
            probe = min(probe, len(rows))
            top_sims, top = torch.topk(sub, probe, dim=1)
            sims_t = np.zeros((self.n_centroids, len(q)), dtype=np.float32)
            sims_t[rows] = sub.T.numpy()
            return sims_t, rows[top.numpy()], top_sims.numpy()
        sims = qt @ torch.from_numpy(self.centroids).T  # (n_q, K)
        top_sims, top = torch.topk(sims, probe, dim=1)
        return sims.T.contiguous().numpy(), top.numpy(), top_sims.numpy()

    def _search_one(self, q: np.ndarray, depth: int, offsets: np.ndarray, token_pages: np.ndarray,
                    codes: np.ndarray, page_offsets: np.ndarray, positions: np.ndarray, token_cents: np.ndarray
                    ) -> np.ndarray:
        sims_t, top, top_sims = self._probe(q)
        missing = self.missing_scale * top_sims[:, -1]  # each query token's least similar probed centroid
        probed = np.unique(top)
        hit, which = _segments(offsets, probed)
        if len(hit) == 0:
            return np.zeros(0, dtype=np.int64)
        # 1. every token in a probed list, decoded, against every query token; per page the best of its
        #    hit tokens, raised to the missing-similarity estimate where that is higher
        owner = token_pages[hit]
        order = np.argsort(owner, kind="stable")  # hit tokens page by page
        hit, which, owner = hit[order], which[order], owner[order]
        starts = np.concatenate([[0], np.flatnonzero(owner[1:] != owner[:-1]) + 1])
        pages = owner[starts].astype(np.int64)
        lengths = torch.from_numpy(np.diff(np.append(starts, len(owner))))
        token_sims = self._token_sims(q, sims_t, codes[hit], probed[which])
        best = torch.segment_reduce(token_sims, "max", lengths=lengths, axis=0)  # (pages, n_q)
        scores = torch.maximum(best, torch.from_numpy(missing)[None, :]).sum(dim=1).numpy()
        if self.candidates and len(pages) > max(depth, self.candidates):
            pages = pages[torch.topk(torch.from_numpy(scores), self.candidates).indices.numpy()]
        if self.candidates:
            # 2. the candidates' every token decoded: approximate MaxSim in full
            rows, _ = _token_rows(page_offsets, pages)
            where = positions[rows]
            full = self._token_sims(q, sims_t, codes[where], token_cents[where])
            lengths = torch.from_numpy(page_offsets[pages + 1] - page_offsets[pages])
            scores = torch.segment_reduce(full, "max", lengths=lengths, axis=0).sum(dim=1).numpy()
        return pages[torch.topk(torch.from_numpy(scores), min(depth, len(pages))).indices.numpy()]

    # -- persistence ------------------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write the index (centroids, residual levels, settings, inverted lists) to one ``.npz`` file."""
        path = Path(path)
        ids, offsets, token_pages, codes, page_offsets, positions, token_cents = self._build()
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(tmp, format=np.int64(_FORMAT), coarse=self.coarse, centroids=self.centroids,
                 cell_bounds=self.cell_bounds, residual_low=self.residual_low, residual_step=self.residual_step,
                 settings=np.array([self.nbits, self.nprobe, self.missing_scale, self.candidates, self.cells],
                                   dtype=np.float64),
                 page_ids=np.array(ids, dtype=np.str_), offsets=offsets, token_pages=token_pages, codes=codes,
                 page_offsets=page_offsets, positions=positions, token_cents=token_cents)
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> WarpIndex:
        """Read an index written by :meth:`save`."""
        with np.load(Path(path), allow_pickle=False) as data:
            if "format" not in data or int(data["format"]) != _FORMAT:
                raise ValueError(f"{path} is not a WarpIndex file of format {_FORMAT}")
            nbits, nprobe, missing_scale, candidates, cells = data["settings"]
            index = cls(data["coarse"], data["centroids"], data["cell_bounds"], data["residual_low"],
                        data["residual_step"], nbits=int(nbits), nprobe=int(nprobe),
                        missing_scale=float(missing_scale), candidates=int(candidates), cells=int(cells))
            ids = data["page_ids"].tolist()
            index._base_ids, index._base_row = ids, {page_id: row for row, page_id in enumerate(ids)}
            index._offsets, index._token_pages, index._codes = data["offsets"], data["token_pages"], data["codes"]
            index._page_offsets, index._positions = data["page_offsets"], data["positions"]
            index._token_cents = data["token_cents"]
            if index._offsets.shape != (index.n_centroids + 1,) or len(index._page_offsets) != len(ids) + 1:
                raise ValueError(f"{path}: inverted lists do not fit the centroids / page ids")
        return index
