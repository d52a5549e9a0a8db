"""A WARP-style token-level first stage for late-interaction search: many centroids, compressed residuals.

:class:`~umr.late.centroid.CentroidIndex` keeps, per page, only the set of centroids its tokens fall in;
with a few thousand centroids that cannot tell apart pages that share a topic, and flat k-means with the
tens of thousands of centroids a 100k-page collection needs is too slow on a CPU. :class:`WarpIndex`
follows ColBERTv2 / PLAID / WARP instead:

* **two-level k-means** (:meth:`WarpIndex.fit`, on a token sample): ``coarse`` cells first, then each cell's
  tokens into fine centroids (their number proportional to the cell's share of the sample), so fitting
  and assigning a token costs ``coarse + one cell's centroids`` similarities, not all ``n_centroids``;
* every stored token keeps its fine centroid id and its **residual** (token - centroid) quantised to
  ``nbits`` per dimension (per-dimension quantile buckets fitted on the sample, each bucket decoded to its
  mean), ``dim * nbits / 8`` bytes; tokens are held in inverted lists, centroid -> (page, residual code);
* a query token looks at its ``nprobe`` most similar centroids; every token in those lists is scored
  approximately, ``<q, c> + <q, decoded residual>`` (the second term by byte lookup tables built once per
  query token), each page keeps, per query token, its best token; a page that no probed list reaches for
  a query token gets WARP's *missing-similarity* estimate for it (the similarity of that token's least
  similar probed centroid, an upper bound on what unprobed centroids offer, scaled by ``missing_scale``);
  the sum over query tokens ranks the pages and the best ``depth`` go to exact MaxSim
  (:meth:`umr.late.search.TwoStageSearcher.rerank`).

Everything is held in memory: per stored token one int32 page row, one int32 centroid id while building
and ``dim * nbits / 8`` code bytes. :meth:`WarpIndex.save` / :meth:`WarpIndex.load` persist it to one
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
_FORMAT = 1


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

    Build with :meth:`fit` on a sample of page tokens, then :meth:`add` pages. ``nprobe``: centroids each
    query token scores the lists of; ``missing_scale``: factor on the missing-similarity estimate of a page
    a query token reaches through none of its probed centroids.
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
        nprobe: int = 16,
        missing_scale: float = 1.0,
        candidates: int = 500,
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
        if nprobe < 1 or missing_scale < 0 or candidates < 0:
            raise ValueError(f"nprobe must be >= 1, missing_scale >= 0 and candidates >= 0, got {nprobe}, "
                             f"{missing_scale}, {candidates}")
        self.nbits = nbits
        self.nprobe = nprobe
        self.missing_scale = float(missing_scale)
        self.candidates = int(candidates)
        levels = 2**nbits
        per_byte = 8 // nbits
        # level of each packed dimension for every byte value: (256, per_byte)
        shifts = np.arange(per_byte) * nbits
        self._byte_levels = ((np.arange(256)[:, None] >> shifts[None, :]) & (levels - 1)).astype(np.int64)
        # decoded residual value of each (dim, level): (dim, levels)
        self.weights = self.residual_low[:, None] + self.residual_step[:, None] * np.arange(levels, dtype=np.float32)
        self._pages: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._built: tuple | None = None

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
        return len(self._pages)

    def __contains__(self, page_id: object) -> bool:
        return page_id in self._pages

    def ids(self) -> list[str]:
        return list(self._pages)

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
        nprobe: int = 16,
        missing_scale: float = 1.0,
        candidates: int = 500,
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
        index = cls(top.numpy()[keep], centroids, cell_bounds, np.zeros(dim), np.zeros(dim), nbits=nbits,
                    nprobe=nprobe, missing_scale=missing_scale)
        residual = x.numpy() - centroids[index.assign(x.numpy())]
        # uniform levels per dimension over the central 99.8 % of the sample's residuals
        low, high = np.quantile(residual, [0.001, 0.999], axis=0)
        step = np.maximum(high - low, 1e-6) / (2**nbits - 1)
        return cls(index.coarse, centroids, cell_bounds, low, step, nbits=nbits, nprobe=nprobe,
                   missing_scale=missing_scale, candidates=candidates)

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
            lo, hi = bounds[k], bounds[k + 1]
            self._pages[page_id] = (ids[lo:hi], codes[lo:hi])
        self._built = None

    def delete(self, page_ids: Sequence[str]) -> None:
        for page_id in page_ids:
            if self._pages.pop(page_id, None) is not None:
                self._built = None

    def _build(self) -> tuple:
        """``(ids, list offsets, list page rows, page offsets, centroid ids, codes)``: inverted lists
        (centroid -> distinct pages) and the tokens page after page (centroid ids, residual codes)."""
        if self._built is None:
            ids = list(self._pages)
            entries = [self._pages[i] for i in ids]
            lengths = np.array([len(e[0]) for e in entries], dtype=np.int64)
            cents = np.concatenate([e[0] for e in entries]) if entries else np.zeros(0, dtype=np.int32)
            codes = (np.concatenate([e[1] for e in entries]) if entries
                     else np.zeros((0, self.code_bytes), dtype=np.uint8))
            page_offsets = np.zeros(len(ids) + 1, dtype=np.int64)
            np.cumsum(lengths, out=page_offsets[1:])
            rows = np.repeat(np.arange(len(ids), dtype=np.int64), lengths)
            # inverted lists: centroid -> the distinct pages with a token there
            pairs = np.unique(cents.astype(np.int64) * max(1, len(ids)) + rows)
            list_cents = pairs // max(1, len(ids))
            list_rows = (pairs % max(1, len(ids))).astype(np.int32)
            offsets = np.zeros(self.n_centroids + 1, dtype=np.int64)
            np.cumsum(np.bincount(list_cents, minlength=self.n_centroids), out=offsets[1:])
            self._built = (ids, offsets, list_rows, page_offsets, cents, codes)
        return self._built

    def memory_bytes(self) -> int:
        """Bytes of the searchable arrays (centroids, lists, codes), excluding Python objects."""
        built = self._build()
        return int(self.centroids.nbytes + self.coarse.nbytes + sum(a.nbytes for a in built[1:]))

    # -- scoring ----------------------------------------------------------------------------------------
    def _tables(self, q: np.ndarray) -> np.ndarray:
        """Byte lookup tables ``(n_q, code_bytes, 256)``: ``<q_i, decoded residual part of byte b = v>``."""
        per_byte = 8 // self.nbits
        # (n_q, code_bytes, per_byte, levels): q_i[d] * weight[d, level]
        parts = (q[:, :, None] * self.weights[None, :, :]).reshape(len(q), self.code_bytes, per_byte, -1)
        tables = np.zeros((len(q), self.code_bytes, 256), dtype=np.float32)
        for k in range(per_byte):
            tables += parts[:, :, k, :][:, :, self._byte_levels[:, k]]
        return tables

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

    def _search_one(self, q: np.ndarray, depth: int, offsets: np.ndarray, list_rows: np.ndarray,
                    page_offsets: np.ndarray, cents: np.ndarray, codes: np.ndarray) -> np.ndarray:
        n_q = len(q)
        sims = q @ self.centroids.T  # (n_q, K)
        probe = min(self.nprobe, self.n_centroids)
        if probe < self.n_centroids:
            top = np.argpartition(-sims, probe - 1, axis=1)[:, :probe]
        else:
            top = np.broadcast_to(np.arange(self.n_centroids), (n_q, probe))
        top_sims = np.take_along_axis(sims, top, axis=1)
        missing = self.missing_scale * top_sims.min(axis=1)  # (n_q,)
        positions, which = _segments(offsets, top.ravel())
        if len(positions) == 0:
            return np.zeros(0, dtype=np.int64)
        # 1. pruned centroid interaction: per query token, a page's best probed centroid, else `missing`
        token = which // probe
        pages, page_slot = np.unique(list_rows[positions], return_inverse=True)
        key = torch.from_numpy(token * len(pages) + page_slot)
        best = torch.full((n_q * len(pages),), -np.inf)
        best.scatter_reduce_(0, key, torch.from_numpy(top_sims.ravel()[which]), "amax", include_self=True)
        best = best.view(n_q, len(pages)).numpy()
        scores = np.where(np.isfinite(best), best, missing[:, None]).sum(axis=0)
        if self.candidates and len(pages) > max(depth, self.candidates):
            keep = np.argpartition(-scores, self.candidates - 1)[: self.candidates]
            pages = pages[keep]
        if self.candidates:
            # 2. the candidates' every token decoded (centroid + residual): approximate MaxSim in full
            scores = self._decoded_maxsim(q, sims, pages, page_offsets, cents, codes)
        if len(pages) <= depth:
            return pages[np.argsort(-scores, kind="stable")]
        chosen = np.argpartition(-scores, depth - 1)[:depth]
        return pages[chosen[np.argsort(-scores[chosen], kind="stable")]]

    def _decoded_maxsim(self, q: np.ndarray, sims: np.ndarray, pages: np.ndarray, page_offsets: np.ndarray,
                        cents: np.ndarray, codes: np.ndarray) -> np.ndarray:
        """Approximate MaxSim of ``pages`` with every token decoded: ``<q, c> + <q, low> + <q * step, level>``."""
        positions, firsts = _token_rows(page_offsets, pages)
        packed = torch.from_numpy(codes[positions])  # (T, code_bytes) uint8
        if self.nbits == 8:
            levels = packed
        else:
            mask = 2**self.nbits - 1
            shifts = range(0, 8, self.nbits)
            levels = torch.stack([(packed >> shift) & mask for shift in shifts], dim=2)
        levels = levels.reshape(len(positions), self.dim).to(torch.float32)
        qt = torch.from_numpy(q)
        token_sims = (qt * torch.from_numpy(self.residual_step)) @ levels.T  # (n_q, T)
        token_sims += torch.from_numpy(sims[:, cents[positions]] + (q @ self.residual_low)[:, None])
        return np.maximum.reduceat(token_sims.numpy(), firsts, axis=1).sum(axis=0)

    # -- persistence ------------------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write the index (centroids, residual buckets, every page's codes) to one ``.npz`` file."""
        path = Path(path)
        ids = list(self._pages)
        lengths = np.array([len(self._pages[i][0]) for i in ids], dtype=np.int64)
        cents = np.concatenate([self._pages[i][0] for i in ids]) if ids else np.zeros(0, dtype=np.int32)
        codes = (np.concatenate([self._pages[i][1] for i in ids]) if ids
                 else np.zeros((0, self.code_bytes), dtype=np.uint8))
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(tmp, format=np.int64(_FORMAT), coarse=self.coarse, centroids=self.centroids,
                 cell_bounds=self.cell_bounds, residual_low=self.residual_low, residual_step=self.residual_step,
                 settings=np.array([self.nbits, self.nprobe, self.missing_scale, self.candidates], dtype=np.float64),
                 page_ids=np.array(ids, dtype=np.str_), lengths=lengths, cents=cents, codes=codes)
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> WarpIndex:
        """Read an index written by :meth:`save`."""
        with np.load(Path(path), allow_pickle=False) as data:
            if "format" not in data or int(data["format"]) != _FORMAT:
                raise ValueError(f"{path} is not a WarpIndex file of format {_FORMAT}")
            nbits, nprobe, missing_scale, candidates = data["settings"]
            index = cls(data["coarse"], data["centroids"], data["cell_bounds"], data["residual_low"],
                        data["residual_step"], nbits=int(nbits), nprobe=int(nprobe),
                        missing_scale=float(missing_scale), candidates=int(candidates))
            bounds = np.concatenate([[0], np.cumsum(data["lengths"])])
            cents, codes = data["cents"], data["codes"]
            for k, page_id in enumerate(data["page_ids"].tolist()):
                index._pages[page_id] = (cents[bounds[k] : bounds[k + 1]], codes[bounds[k] : bounds[k + 1]])
        return index
