"""Two-stage late-interaction search: one vector per page finds candidates, exact MaxSim re-ranks them.

The first stage is anything with ``search(vectors, depth) -> list of id lists`` over the single vector per
page (:class:`ExactIndex` here, an exact batched matrix product; the Chroma collection in the store), or one
that takes the query tokens themselves (``takes_tokens = True``: :class:`~umr.late.centroid.CentroidIndex`,
:class:`~umr.late.warp.WarpIndex`). The
second stage gathers the candidates' token vectors from the :class:`~umr.late.page_store.PageVectorStore`
and scores them by MaxSim. :meth:`TwoStageSearcher.exhaustive` scores every stored page (small
collections, and the reference the two-stage recall is measured against).
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from typing import Protocol

import numpy as np
import torch

from umr.late.centroid import CentroidIndex
from umr.late.fde import FDEEncoder, MeanTokenEncoder
from umr.late.page_store import PageVectorStore
from umr.late.scoring import MultiVector, default_device, maxsim_gathered, maxsim_pages, pad
from umr.late.warp import WarpIndex

Hits = list[tuple[str, float]]


class FirstStage(Protocol):
    def search(self, vectors: np.ndarray, depth: int) -> list[list[str]]:
        """For each row of ``vectors`` (one encoded query), the ids of the ``depth`` best pages."""
        ...


class SingleVectorEncoder(Protocol):
    def encode_queries(self, queries: Sequence[MultiVector]) -> np.ndarray: ...

    def encode_documents(self, docs: Sequence[MultiVector]) -> np.ndarray: ...


class ExactIndex:
    """Exact inner-product top-k over an in-memory matrix of page vectors (torch, GPU when present).

    Rows are kept float32 (``float16`` halves memory; on a CPU the product then runs block by block in
    float32). Deleting swaps the last row into the hole, so add / delete are O(rows touched).
    """

    def __init__(self, dim: int, dtype: torch.dtype = torch.float32, device: torch.device | str | None = None):
        self.dim = dim
        self.dtype = dtype
        self.device = torch.device(device) if device is not None else default_device()
        self._matrix = torch.zeros((0, dim), dtype=dtype, device=self.device)
        self._ids: list[str] = []
        self._row: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, page_ids: Sequence[str], vectors: np.ndarray) -> None:
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != self.dim or vectors.shape[0] != len(page_ids):
            raise ValueError(f"ExactIndex.add needs ({len(page_ids)}, {self.dim}) vectors, got {vectors.shape}")
        fresh_ids, fresh_rows = [], []
        values = torch.from_numpy(vectors).to(self.device, self.dtype)
        for k, page_id in enumerate(page_ids):
            row = self._row.get(page_id)
            if row is None:
                fresh_ids.append(page_id)
                fresh_rows.append(k)
            else:
                self._matrix[row] = values[k]
        if fresh_ids:
            base = len(self._ids)
            self._matrix = torch.cat([self._matrix, values[fresh_rows]])
            for offset, page_id in enumerate(fresh_ids):
                self._row[page_id] = base + offset
            self._ids.extend(fresh_ids)

    def delete(self, page_ids: Sequence[str]) -> None:
        for page_id in page_ids:
            row = self._row.pop(page_id, None)
            if row is None:
                continue
            last = len(self._ids) - 1
            if row != last:
                moved = self._ids[last]
                self._matrix[row] = self._matrix[last]
                self._ids[row] = moved
                self._row[moved] = row
            self._ids.pop()
            self._matrix = self._matrix[:last]

    def scores(self, vectors: np.ndarray) -> torch.Tensor:
        query = torch.as_tensor(np.asarray(vectors, dtype=np.float32), device=self.device)
        if self.dtype == torch.float32 or self.device.type != "cpu":
            return query.to(self.dtype) @ self._matrix.T
        out = torch.empty((query.shape[0], len(self._ids)))
        step = 65536
        for start in range(0, len(self._ids), step):
            out[:, start : start + step] = query @ self._matrix[start : start + step].float().T
        return out

    def search(self, vectors: np.ndarray, depth: int) -> list[list[str]]:
        if not self._ids:
            return [[] for _ in range(len(vectors))]
        with torch.inference_mode():
            scores = self.scores(vectors)
            top = torch.topk(scores, min(depth, len(self._ids)), dim=1).indices.cpu().numpy()
        return [[self._ids[i] for i in row] for row in top]


class TwoStageSearcher:
    """Search a :class:`PageVectorStore` by MaxSim, through a first stage or exhaustively."""

    def __init__(
        self,
        store: PageVectorStore,
        encoder: FDEEncoder | MeanTokenEncoder | SingleVectorEncoder | None = None,
        first_stage: FirstStage | CentroidIndex | WarpIndex | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        self.store = store
        self.encoder = encoder
        self.first_stage = first_stage
        self.device = torch.device(device) if device is not None else default_device()

    def rerank(self, queries: Sequence[MultiVector], candidates: Sequence[Sequence[str]], k: int) -> list[Hits]:
        """MaxSim top-``k`` of each query's candidate ids (unknown ids are an error: the store and the
        first stage are out of step, repair with the store's ids)."""
        out = []
        with torch.inference_mode():
            for query, ids in zip(queries, candidates):
                ids = list(dict.fromkeys(ids))
                if not ids:
                    out.append([])
                    continue
                scores = self.score(query, ids)
                order = np.argsort(-scores, kind="stable")[:k]
                out.append([(ids[i], float(scores[i])) for i in order])
        return out

    def score(self, query: MultiVector, page_ids: Sequence[str]) -> np.ndarray:
        """MaxSim of one query against ``page_ids`` (in that order)."""
        return maxsim_pages(query, self.store.views(page_ids), self.device)

    def search(self, queries: Sequence[MultiVector], k: int = 10, depth: int = 200) -> list[Hits]:
        """First stage (``depth`` candidates per query), then exact MaxSim; ``k`` hits per query."""
        takes_tokens = getattr(self.first_stage, "takes_tokens", False)
        if self.first_stage is None or (self.encoder is None and not takes_tokens):
            raise ValueError("two-stage search needs a first stage (and an encoder unless the first stage takes "
                             "the query tokens, as CentroidIndex and WarpIndex do); use exhaustive() without them")
        if takes_tokens:
            candidates = self.first_stage.search(list(queries), depth)
        else:
            encoded = self.encoder.encode_queries(list(queries))
            candidates = self.first_stage.search(encoded, depth)
        return self.rerank(queries, candidates, k)

    def exhaustive(self, queries: Sequence[MultiVector], k: int = 10, pages_per_batch: int = 512) -> list[Hits]:
        """Exact MaxSim of every query against every stored page; ``k`` hits per query."""
        n_q = len(queries)
        heaps: list[list[tuple[float, int, str]]] = [[] for _ in range(n_q)]
        serial = 0
        with torch.inference_mode():
            q, qm = pad(list(queries), self.device)
            for ids, tokens, index in self.store.iter_batches(pages_per_batch):
                lengths = torch.from_numpy(np.bincount(index, minlength=len(ids)))
                scores = maxsim_gathered(q, qm, torch.from_numpy(tokens).to(self.device), lengths).cpu()
                top = torch.topk(scores, min(k, len(ids)), dim=1)
                for row in range(n_q):
                    for value, col in zip(top.values[row].tolist(), top.indices[row].tolist()):
                        serial += 1
                        item = (value, -serial, ids[col])
                        if len(heaps[row]) < k:
                            heapq.heappush(heaps[row], item)
                        elif item > heaps[row][0]:
                            heapq.heapreplace(heaps[row], item)
        return [[(page_id, score) for score, _, page_id in sorted(h, reverse=True)] for h in heaps]
