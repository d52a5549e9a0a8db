"""A Chroma collection for a multi-vector (late-interaction) embedder: one first-stage vector per page in
Chroma, the page's token vectors in a :class:`~umr.late.page_store.PageVectorStore` beside it.

It has the methods of :class:`umr.store.collection.ChromaCollection` that the indexer and the store use
(``upsert``, ``existing_ids``, ``first_metadata``, ``delete_where``, ``iter_metadatas``, ``count``), so
ingestion, resume and deletion rules stay the store's. The two stores are kept in step by order:

* writing: token vectors first (durable when ``add`` returns), then the Chroma record;
* deleting: the Chroma record first, then the token vectors.

So every Chroma id has its token vectors at every moment; a kill -9 can only leave token vectors whose
Chroma record is missing (orphans), which :meth:`LateCollection.repair` (run when the store opens for
writing) removes. A page whose Chroma record is missing is re-embedded by the next run (resume), so a
re-run after a crash ends with the same id set on both sides.

Search (:meth:`LateCollection.search`): a first stage finds ``depth`` candidates, exact MaxSim over their
stored token vectors orders them. Collections of at most ``exhaustive_max`` records are scored
exhaustively instead (every record matching the filters). Above that, an unfiltered query uses the
collection's :class:`~umr.late.warp.WarpIndex` (``first_stage.warp.npz`` in the page-vector folder: a
token-level index, recall@10 0.977 of exhaustive MaxSim at depth 200 on 100k synthetic pages where the
single-vector MUVERA stage gets 0.51); a filtered query, or one made while that index lags behind the
page vectors, uses the query's single (MUVERA) vector in Chroma with the caller's filters. Scores are
MaxSim divided by the number of query tokens (the mean best cosine, in [-1, 1]).

The WarpIndex is a cache derived from the page-vector store: every write of the store ends with
:meth:`LateCollection.sync_first_stage`, which fits it once (on a sample of the pages) when the collection
outgrows exhaustive search, then adds and deletes pages to match the page vectors, and replaces the file
atomically. A kill -9 leaves the old file or the new one; a lagging index is never used, and the next
write brings it in step.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from umr.late.fde import FDEConfig, FDEEncoder, MeanTokenEncoder
from umr.late.page_store import PageVectorStore
from umr.late.scoring import default_device, maxsim_pages
from umr.store.collection import GET_CHUNK, ChromaCollection, Scalar

logger = logging.getLogger(__name__)

#: the first stage: MUVERA FDE, 10 repetitions x 16 SimHash partitions x 16 projected dims = 2560 dims
#: (benchmarks/late_interaction.py: clearly ahead of the mean token at every depth)
DEFAULT_FIRST_STAGE = FDEConfig(dim=128, repetitions=10, simhash_bits=4, projection_dim=16, seed=42)
DEFAULT_DEPTH = 200
DEFAULT_EXHAUSTIVE_MAX = 2000
#: the token-level first stage's file in the page-vector folder, and the most pages its centroids are
#: fitted on (a sample of the collection when it first outgrows exhaustive search)
WARP_FILE = "first_stage.warp.npz"
WARP_FIT_PAGES = 20_000
WARP_FIT_TOKENS = 1_500_000

Hit = tuple[str, float, dict[str, Any], str]


def first_stage_encoder(name: str = "fde", dim: int = 128) -> FDEEncoder | MeanTokenEncoder:
    """``"fde"`` (default, :data:`DEFAULT_FIRST_STAGE`) or ``"mean"`` (normalised mean token)."""
    if name == "fde":
        cfg = DEFAULT_FIRST_STAGE if dim == DEFAULT_FIRST_STAGE.dim else FDEConfig(
            dim=dim, repetitions=10, simhash_bits=4, projection_dim=16, seed=42
        )
        return FDEEncoder(cfg)
    if name == "mean":
        return MeanTokenEncoder(dim)
    raise ValueError(f"unknown first stage {name!r}; valid: 'fde', 'mean'")


def first_stage_key(encoder: FDEEncoder | MeanTokenEncoder) -> str:
    """Names the first-stage encoding (part of the collection fingerprint: encodings never mix)."""
    if isinstance(encoder, FDEEncoder):
        c = encoder.config
        return f"fde-r{c.repetitions}-k{c.simhash_bits}-p{c.projection_dim}-f{c.final_dim}-s{c.seed}"
    return "mean"


class LateCollection:
    """Chroma (first-stage vectors, metadata, documents) + a page-vector store (token vectors)."""

    def __init__(
        self,
        inner: ChromaCollection,
        pages: PageVectorStore,
        encoder: FDEEncoder | MeanTokenEncoder,
        *,
        depth: int = DEFAULT_DEPTH,
        exhaustive_max: int = DEFAULT_EXHAUSTIVE_MAX,
        device: torch.device | str | None = None,
    ) -> None:
        self.inner = inner
        self.pages = pages
        self.encoder = encoder
        self.depth = int(depth)
        self.exhaustive_max = int(exhaustive_max)
        self.device = torch.device(device) if device is not None else default_device()
        self._warp: Any = None  # the loaded WarpIndex (None: not loaded, or none)
        self._warp_stamp: tuple[int, int] | None = None  # (mtime_ns, size) of the file it was loaded from
        self._warp_checked: tuple[Any, int] | None = None  # (stamp, pages) last found in step

    @contextlib.contextmanager
    def _pair(self, *, wait: bool = True) -> Iterator[bool]:
        """Hold the pair lock (``PAIR.lock`` in the page-store folder) across a two-sided write, so that a
        :meth:`repair` in another process never sees the gap between the token vectors and the Chroma
        record. Yields False (nothing held) when ``wait`` is False and another process holds it."""
        self.pages.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.pages.root / "PAIR.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                yield False
                return
            yield True
        finally:
            os.close(fd)

    # -- the ChromaCollection surface ------------------------------------------------------------------
    @property
    def raw(self) -> Any:
        return self.inner.raw

    @property
    def max_batch(self) -> int:
        return self.inner.max_batch

    @max_batch.setter
    def max_batch(self, value: int) -> None:
        self.inner.max_batch = value

    @property
    def name(self) -> str:
        return self.inner.name

    def count(self) -> int:
        return self.inner.count()

    def existing_ids(self, ids: Sequence[str]) -> set[str]:
        return self.inner.existing_ids(ids)

    def first_metadata(self, where: Mapping[str, Any]) -> Mapping[str, Any] | None:
        return self.inner.first_metadata(where)

    def iter_metadatas(self) -> Iterator[Mapping[str, Any]]:
        return self.inner.iter_metadatas()

    # read-only access for umr.store.repair (check) and the indexer, through the inner collection's guard
    @property
    def guard(self) -> Any:
        return self.inner.guard

    def call(self, what: str, method: str, **kwargs: Any) -> Any:
        if method not in ("get", "query", "count", "peek"):
            raise RuntimeError(f"{method} on a multi-vector collection must go through its paired writes")
        return self.inner.call(what, method, **kwargs)

    def iter_ids(self) -> Iterator[str]:
        return self.inner.iter_ids()

    def ids_where(self, where: Mapping[str, Any]) -> list[str]:
        return self.inner.ids_where(where)

    def records_where(self, where: Mapping[str, Any], limit: int | None = GET_CHUNK) -> list[tuple[str, dict[str, Any]]]:
        return self.inner.records_where(where, limit)

    def update_metadata(self, ids: Sequence[str], metas: Sequence[Mapping[str, Any]]) -> None:
        """Metadata only (paths of a shared page set): the token vectors do not change."""
        self.inner.update_metadata(ids, metas)

    def delete_ids(self, ids: Sequence[str]) -> None:
        """Delete the records, then their token vectors, as one pair."""
        for start in range(0, len(ids), self.max_batch):
            chunk = list(ids[start : start + self.max_batch])
            with self._pair():
                self.raw.delete(ids=chunk)
                self.pages.delete(chunk)

    def upsert(self, ids: list[str], vectors: Any, metas: list[dict[str, Scalar]], docs: list[str]) -> None:
        """Token vectors to the page store (durable), then the first-stage vectors and records to Chroma."""
        multi = list(vectors)
        if len(multi) != len(ids):
            raise ValueError(f"got {len(multi)} multi-vectors for {len(ids)} ids")
        with self._pair():
            self.pages.add(ids, multi)
            singles = self.encoder.encode_documents([self.pages.get(i) for i in ids])
            self.inner.upsert(ids, singles, metas, docs)

    def delete_where(
        self,
        where: Mapping[str, Any],
        on_removed: Callable[[list[Mapping[str, Any]]], None] | None = None,
        on_deleted_ids: Callable[[list[str]], None] | None = None,
    ) -> int:
        """Delete matching Chroma records, then their token vectors; ``on_removed(metadatas)`` and
        ``on_deleted_ids(ids)`` (the lexical index follows) per chunk."""
        removed = 0
        while True:
            got = self.raw.get(where=dict(where), limit=min(self.max_batch, GET_CHUNK), include=["metadatas"])
            ids = got["ids"]
            if not ids:
                return removed
            with self._pair():
                self.raw.delete(ids=ids)
                self.pages.delete(ids)
            if on_deleted_ids is not None:
                on_deleted_ids(list(ids))
            if on_removed is not None:
                on_removed([m or {} for m in (got["metadatas"] or [])])
            removed += len(ids)

    def query(
        self, vector: np.ndarray, k: int, where: Mapping[str, Any] | None = None,
        where_document: Mapping[str, Any] | None = None,
    ) -> list[Hit]:
        """The first stage alone: nearest records to an encoded (single) query vector."""
        return self.inner.query(vector, k, where, where_document)

    # -- consistency -----------------------------------------------------------------------------------
    def all_ids(self) -> set[str]:
        ids: set[str] = set()
        offset = 0
        while True:
            got = self.raw.get(limit=GET_CHUNK, offset=offset, include=[])
            ids.update(got["ids"])
            if len(got["ids"]) < GET_CHUNK:
                return ids
            offset += len(got["ids"])

    def repair(self) -> dict[str, int]:
        """Make both sides hold the same ids: token vectors without a Chroma record are deleted (left by
        an interrupted write or delete); Chroma records without token vectors (a lost page-store folder)
        are deleted too, so the next indexing run embeds those pages again."""
        with self._pair(wait=False) as held:
            if not held:  # another process is writing a pair right now; its next open repairs
                logger.debug("page-vector store %s is being written; repair skipped", self.pages.root)
                return {"orphan_vectors_removed": 0, "records_without_vectors_removed": 0}
            return self._repair()

    def _repair(self) -> dict[str, int]:
        self.pages.refresh()
        in_chroma = self.all_ids()
        stored = set(self.pages.ids())
        orphans = sorted(stored - in_chroma)
        missing = sorted(in_chroma - stored)
        if orphans:
            self.pages.delete(orphans)
            logger.info("page-vector store: removed %d token-vector sets without a Chroma record", len(orphans))
        for start in range(0, len(missing), self.max_batch):
            self.raw.delete(ids=missing[start : start + self.max_batch])
        if missing:
            logger.warning(
                "removed %d Chroma records whose token vectors are missing; re-run indexing to embed them",
                len(missing),
            )
        return {"orphan_vectors_removed": len(orphans), "records_without_vectors_removed": len(missing)}

    # -- search ----------------------------------------------------------------------------------------
    def _ids_matching(self, where: Mapping[str, Any] | None, where_document: Mapping[str, Any] | None) -> list[str]:
        ids: list[str] = []
        offset = 0
        while True:
            got = self.raw.get(
                where=dict(where) if where else None,
                where_document=dict(where_document) if where_document else None,
                limit=GET_CHUNK, offset=offset, include=[],
            )
            ids.extend(got["ids"])
            if len(got["ids"]) < GET_CHUNK:
                return ids
            offset += len(got["ids"])

    # -- the token-level first stage -------------------------------------------------------------------
    @property
    def warp_path(self) -> Any:
        return self.pages.root / WARP_FILE

    def _load_warp(self) -> Any:
        """The saved WarpIndex (reloaded when its file changed), or None."""
        from umr.late.warp import WarpIndex

        try:
            st = self.warp_path.stat()
        except FileNotFoundError:
            self._warp, self._warp_stamp = None, None
            return None
        stamp = (st.st_mtime_ns, st.st_size)
        if self._warp is None or stamp != self._warp_stamp:
            try:
                self._warp = WarpIndex.load(self.warp_path)
            except (OSError, ValueError, KeyError) as exc:  # damaged: rebuilt by the next write
                logger.warning("first-stage index %s is unreadable (%s); searching with the Chroma first stage "
                               "until the next write rebuilds it", self.warp_path, exc)
                self._warp = None
            self._warp_stamp = stamp
        return self._warp

    def first_stage_index(self) -> Any:
        """The WarpIndex when it holds exactly the stored pages (else None: the Chroma first stage is used)."""
        warp = self._load_warp()
        if warp is None:
            return None
        self.pages.refresh()
        key = (self._warp_stamp, len(self.pages))
        if key != self._warp_checked:  # the full comparison once per index file and page count, not per query
            if len(warp) != len(self.pages) or set(warp.ids()) != set(self.pages.ids()):
                logger.debug("first-stage index lags behind the page vectors; using the Chroma first stage")
                return None
            self._warp_checked = key
        return warp

    def sync_first_stage(
        self, *, fit_pages: int = WARP_FIT_PAGES, fit_tokens: int = WARP_FIT_TOKENS, batch_pages: int = 512
    ) -> dict[str, int]:
        """Bring the WarpIndex in step with the page vectors: fit it when the collection first has more than
        ``exhaustive_max`` pages (centroids from a seeded sample of at most ``fit_pages`` pages and about
        ``fit_tokens`` tokens), add the
        pages it lacks, drop the ones deleted, write it atomically. Collections searched exhaustively keep
        no index (a stale file is removed). Returns what changed."""
        from umr.late.warp import WarpIndex

        self.pages.refresh()
        stored = self.pages.ids()
        if len(stored) <= self.exhaustive_max:
            if self.warp_path.exists():
                self.warp_path.unlink()
            self._warp, self._warp_stamp = None, None
            return {"fitted": 0, "added": 0, "deleted": 0}
        warp = self._load_warp()
        fitted = 0
        if warp is None:
            # a seeded sample of pages, up to fit_pages pages or fit_tokens tokens (memory stays bounded)
            order = np.random.default_rng(0).permutation(len(stored))
            sample_ids, tokens = [], 0
            for i in order[:fit_pages]:
                sample_ids.append(stored[int(i)])
                tokens += self.pages.n_tokens(stored[int(i)])
                if tokens >= fit_tokens:
                    break
            sample = self.pages.get_many(sample_ids)
            n_tokens = sum(self.pages.n_tokens(page_id) for page_id in stored)
            # PLAID's rule: about 16 * sqrt(tokens) centroids, a power of two, at most a tenth of the sample's tokens
            want = max(16.0, min(16 * np.sqrt(n_tokens), 65536.0, tokens / 10))
            n_centroids = min(int(2 ** round(np.log2(want))), 2 ** int(np.log2(max(16.0, tokens / 10))))
            logger.info("fitting the first-stage index of %d pages (%d centroids)", len(stored), n_centroids)
            warp = WarpIndex.fit(sample, n_centroids=n_centroids, seed=0)
            fitted = 1
        have = set(warp.ids())
        now = set(stored)
        gone = sorted(have - now)
        new = [page_id for page_id in stored if page_id not in have]
        if gone:
            warp.delete(gone)
        for start in range(0, len(new), batch_pages):
            chunk = new[start : start + batch_pages]
            warp.add(chunk, self.pages.get_many(chunk))
        if fitted or gone or new:
            warp.save(self.warp_path)
            st = self.warp_path.stat()
            self._warp, self._warp_stamp = warp, (st.st_mtime_ns, st.st_size)
        return {"fitted": fitted, "added": len(new), "deleted": len(gone)}

    def maxsim(self, query: np.ndarray, ids: Sequence[str]) -> np.ndarray:
        """MaxSim of one query's tokens against the stored pages ``ids`` (in that order)."""
        return maxsim_pages(query, self.pages.views(ids), self.device)

    def search(
        self,
        query: np.ndarray,
        k: int,
        where: Mapping[str, Any] | None = None,
        where_document: Mapping[str, Any] | None = None,
        *,
        depth: int | None = None,
        exhaustive: bool | None = None,
    ) -> list[Hit]:
        """Top ``k`` by MaxSim: two-stage (``depth`` first-stage candidates), or exhaustive over every
        matching record (``exhaustive=True``, or by default when the collection has at most
        ``exhaustive_max`` records)."""
        query = np.asarray(query, dtype=np.float32)
        if exhaustive is None:
            exhaustive = self.count() <= self.exhaustive_max
        warp = None if exhaustive or where or where_document else self.first_stage_index()
        if exhaustive:
            candidates = self._ids_matching(where, where_document)
        elif warp is not None:
            candidates = warp.search([query], max(k, depth or self.depth))[0]
        else:
            single = self.encoder.encode_queries([query])[0]
            found = self.inner.query(single, max(k, depth or self.depth), where, where_document)
            candidates = [hid for hid, _, _, _ in found]
        present = [c for c in candidates if c in self.pages]
        if len(present) < len(candidates):
            logger.warning(
                "%d candidate(s) have no token vectors (the store is being written or needs repair); skipped",
                len(candidates) - len(present),
            )
        if not present:
            return []
        scores = self.maxsim(query, present) / max(1, query.shape[0])
        order = np.argsort(-scores, kind="stable")[:k]
        top = [present[i] for i in order]
        got = self.raw.get(ids=top, include=["metadatas", "documents"])
        by_id = {hid: (dict(m or {}), d or "") for hid, m, d in zip(got["ids"], got["metadatas"], got["documents"])}
        return [(present[i], float(scores[i]), *by_id.get(present[i], ({}, ""))) for i in order]

    def stats(self) -> dict[str, Any]:
        s = self.pages.stats()
        warp = self.first_stage_index()
        return {"first_stage": first_stage_key(self.encoder), "first_stage_dim": int(self.encoder.dim),
                "token_first_stage": (f"warp {warp.n_centroids} centroids, {len(warp)} pages"
                                      if warp is not None else "none"),
                "page_vectors": str(self.pages.root), "token_vectors_per_page": s["tokens_per_page"],
                "token_vector_bytes": s["file_bytes"]}
