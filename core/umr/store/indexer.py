"""Ingestion: files -> rendered pages -> vectors -> Chroma records (+ page images).

One :class:`Indexer` holds the rules both ingestion paths follow, so that they store the same thing:

- which files to read (folders walked; the store's own database and image folders left out);
- what is stored already (content-derived page ids; a file whose pages are all present is not even
  rendered, a file stored in part is rendered again but only its missing pages are embedded);
- what the embedder gets for a page (:func:`embed_input`) and which metadata each page carries;
- how a file ends: its older versions removed once it is complete, or its partial pages removed when it
  failed half-way.

:meth:`Indexer.index` is the local loop (``ChromaStore.add_files``): render in worker processes, embed
in batches, write.  The Ray pipeline (:mod:`umr.distributed`) runs the same steps on a cluster: its
render tasks use :meth:`Indexer.resume` and :meth:`Indexer.sources`, its writers
:meth:`Indexer.write_embedded`, its driver :meth:`Indexer.finish_file` / :meth:`Indexer.drop_partial`.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np

from umr.documents import (
    MAX_IMAGE_PIXELS,
    RENDER_VERSION,
    FileDone,
    FileError,
    Page,
    Prefetch,
    RenderPool,
    safe_display,
    source_key,
    walk,
)
from umr.documents.paths import PathLike

from .collection import ChromaCollection, Scalar
from .images import ImageData, PageImages
from .records import IndexReport

logger = logging.getLogger(__name__)

ProgressCallback = Callable[[IndexReport, "Page | FileDone | FileError | None"], None]
EmbedFn = Callable[[list[Any]], np.ndarray]


def settings_key(fingerprint: str, max_pixels: int, embed_text_layer: bool) -> str:
    """12 hex digits naming what decides a page's vector: the embedder, the pixel budget, the renderer
    version and whether the text layer is embedded too.  Part of every record id."""
    return hashlib.sha256(
        f"{fingerprint}|{max_pixels}|{RENDER_VERSION}|{int(embed_text_layer)}".encode()
    ).hexdigest()[:12]


def embed_input(image: Any, text: str, embed_text_layer: bool) -> Any:
    """What the embedder gets for one page: its image, or image + text layer (``embed_text_layer``,
    when the page has text)."""
    if embed_text_layer and text.strip():
        return {"text": text, "image": image}
    return image


def absolute_paths(paths: PathLike | Iterable[PathLike]) -> list[str]:
    """Absolute ``str`` paths: the stored ``source`` must not depend on the working directory."""
    if isinstance(paths, (str, bytes, os.PathLike)):
        paths = [paths]
    return [os.path.abspath(os.fsdecode(os.fspath(p))) for p in paths]


class Resume:
    """What one run may leave out: files stored completely (not rendered) and pages stored already
    (rendered, not embedded).  ``skipped(source, sha)`` counts the pages left out per file; with a
    ``report`` its ``pages_skipped`` counts them all as they are found."""

    def __init__(self, indexer: Indexer, report: IndexReport | None = None) -> None:
        self.indexer = indexer
        self.report = report
        self._present: dict[str, set[str]] = {}
        self._skipped: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()  # skip_file runs in the render reader's thread, skip_page in the caller's

    def _count(self, source: str, sha: str, pages: int) -> None:
        key = (source, sha)
        with self._lock:
            self._skipped[key] = self._skipped.get(key, 0) + pages
            if self.report is not None:
                self.report.pages_skipped += pages

    def skip_file(self, source: str, sha: str) -> bool:
        """The ``skip`` callback of :meth:`RenderPool.render`: True when every page is stored already."""
        page_count, present = self.indexer.stored_pages(sha)
        if page_count and len(present) == page_count:
            self._count(source, sha, page_count)
            return True
        if present:
            self._present[sha] = present  # resume: render again, but embed only the missing pages
        return False

    def skip_page(self, page: Page) -> bool:
        """True (and counted) when this page is stored already."""
        if self.indexer.page_id(page.sha256, page.page) in self._present.get(page.sha256, ()):
            self._count(page.source, page.sha256, 1)
            return True
        return False

    def skipped(self, source: str, sha: str) -> int:
        """Pages of this file left out so far (all of them when the file was skipped whole)."""
        return self._skipped.get((source, sha), 0)

    def forget(self, sha: str) -> None:
        self._present.pop(sha, None)


class Indexer:
    """Writes pages of one embedder into one collection (and their images into ``images``).

    ``settings`` is :func:`settings_key` of the embedder and render settings; ``own`` lists folders
    never indexed (the database and the image folder, when a walk reaches them).
    """

    def __init__(
        self,
        collection: ChromaCollection,
        images: PageImages | None,
        *,
        model_id: str,
        dim: int,
        settings: str,
        max_pixels: int,
        embed_text_layer: bool = False,
        own: Sequence[PathLike] = (),
    ) -> None:
        self.collection = collection
        self.images = images
        self.model_id = model_id
        self.dim = dim
        self.settings = settings
        self.max_pixels = max_pixels
        self.embed_text_layer = embed_text_layer
        self.own = [os.path.abspath(os.fsdecode(p)) for p in own]

    # ------------------------------------------------------------------ ids and lookups
    def page_id(self, sha256: str, page: int) -> str:
        """Content-derived id of one page: file hash, page number, embedder and render settings."""
        return f"{sha256[:32]}-p{page}-{self.settings}"

    def item_id(self, digest: str, tag: str) -> str:
        """Content-derived id of a single image (``tag`` ``"i"``) or text (``"t"``)."""
        return f"{digest[:32]}-{tag}-{self.settings}"

    def stored_pages(self, sha: str) -> tuple[int, set[str]]:
        """``(page_count, ids of its pages already stored)`` for one file version under these settings;
        ``(0, set())`` when none is stored.  A file is complete when both sizes are equal."""
        meta = self.collection.first_metadata({"$and": [{"sha256": sha}, {"settings": self.settings}]})
        if meta is None:
            return 0, set()
        page_count = int(meta.get("page_count", 0))
        if page_count <= 0:
            return 0, set()
        return page_count, self.collection.existing_ids([self.page_id(sha, p) for p in range(1, page_count + 1)])

    def resume(self, report: IndexReport | None = None) -> Resume:
        """A fresh :class:`Resume` for one run (or one render task)."""
        return Resume(self, report)

    def sources(
        self, paths: PathLike | Iterable[PathLike], exclude: Sequence[PathLike] = ()
    ) -> Iterator[str | FileError]:
        """Files under ``paths`` (absolute; folders walked), leaving out the store's own folders and
        ``exclude``; what cannot be read comes out as :class:`FileError`."""
        own = self.own + [os.path.abspath(os.fsdecode(p)) for p in exclude]
        for item in walk(absolute_paths(paths)):
            path = item.source if isinstance(item, FileError) else item
            if any(path == root or path.startswith(root + os.sep) for root in own):
                continue
            yield item

    # ------------------------------------------------------------------ writing
    def embed_input(self, page: Page) -> Any:
        return embed_input(page.image, page.text, self.embed_text_layer)

    def page_metadata(self, page: Page, extra: Mapping[str, Scalar], now: float) -> dict[str, Scalar]:
        """The Chroma metadata of one page (``page.image`` is not read)."""
        meta: dict[str, Scalar] = dict(extra)
        meta.update(
            source=source_key(page.source),
            filename=source_key(os.path.basename(page.source)),
            sha256=page.sha256,
            page=page.page,
            page_count=page.page_count,
            kind=page.kind,
            width=page.width,
            height=page.height,
            title=page.title,
            author=page.author,
            model_id=self.model_id,
            settings=self.settings,
            max_pixels=self.max_pixels,
            indexed_at=now,
        )
        return meta

    def write(
        self, ids: list[str], vectors: np.ndarray, metas: list[dict[str, Scalar]], docs: list[str],
        images: Sequence[ImageData] | None = None,
    ) -> None:
        """Images first (their paths and URIs go into ``metas``), then the records."""
        if images is not None:
            self.save_images(ids, images, metas)
        self.collection.upsert(ids, vectors, metas, docs)

    def save_images(self, ids: list[str], images: Sequence[ImageData], metas: list[dict[str, Scalar]]) -> None:
        if self.images is None:
            for meta in metas:
                meta["image_uri"] = ""
            return
        for meta, path in zip(metas, self.images.save(ids, images)):
            meta["image_path"] = str(path)
            meta["image_uri"] = path.as_uri()

    def write_embedded(
        self,
        pages: Sequence[Page],
        vectors: np.ndarray,
        extra: Mapping[str, Scalar],
        images: Sequence[ImageData],
    ) -> int:
        """Store pages whose vectors are computed already (their images as PIL images or PNG bytes):
        page PNGs first, then one upsert per ``max_batch`` ids.  Ids are content-derived, so writing the
        same pages again (a retried task) replaces them, never duplicates.  Returns the pages written."""
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.shape != (len(pages), self.dim):
            raise ValueError(f"got vectors of shape {vectors.shape} for {len(pages)} pages of dim {self.dim}")
        now = time.time()
        ids = [self.page_id(p.sha256, p.page) for p in pages]
        metas = [self.page_metadata(p, extra, now) for p in pages]
        self.write(ids, vectors, metas, [p.text for p in pages], images)
        return len(ids)

    # ------------------------------------------------------------------ removing
    def delete_where(self, where: Mapping[str, Any]) -> int:
        """Delete matching records and their page images; the number removed."""
        on_removed = self.images.remove if self.images is not None else None
        return self.collection.delete_where(where, on_removed)

    def remove_stale(self, source: str, sha: str) -> int:
        """Remove pages of older versions of ``source`` (other content or other settings)."""
        where = {
            "$and": [
                {"source": source_key(source)},
                {"kind": {"$in": ["pdf", "image"]}},
                {"$or": [{"sha256": {"$ne": sha}}, {"settings": {"$ne": self.settings}}]},
            ]
        }
        return self.delete_where(where)

    def finish_file(self, done: FileDone, report: IndexReport) -> None:
        """A file rendered completely and written: count it and remove its older versions."""
        report.files_indexed += 1
        report.pages_replaced += self.remove_stale(done.source, done.sha256)
        logger.info("indexed %s (%d pages)", safe_display(done.source), done.pages)

    def drop_partial(self, error: FileError) -> int:
        """Remove pages of a file that failed half-way (written by this or a killed run)."""
        if not error.sha256:
            return 0
        where = {
            "$and": [
                {"sha256": error.sha256},
                {"source": source_key(error.source)},
                {"settings": self.settings},
            ]
        }
        removed = self.delete_where(where)
        if removed:
            logger.info("removed %d page(s) of the failed file %s", removed, safe_display(error.source))
        return removed

    # ------------------------------------------------------------------ the local loop
    def index(
        self,
        paths: PathLike | Iterable[PathLike],
        *,
        embed: EmbedFn,
        pool: RenderPool,
        batch_size: int,
        max_image_pixels: int = MAX_IMAGE_PIXELS,
        metadata: Mapping[str, Scalar] | None = None,
        progress: ProgressCallback | None = None,
    ) -> IndexReport:
        """Render ``paths`` in ``pool``, embed ``batch_size`` pages at a time with ``embed`` (inputs ->
        ``(n, dim)`` vectors), write them; see :meth:`umr.store.ChromaStore.add_files`."""
        start = time.monotonic()
        report = IndexReport()
        extra = dict(metadata or {})
        resume = self.resume(report)
        buffer: list[Page] = []
        finished: list[FileDone] = []
        # Page images and records of one batch are written by this thread while the next batch renders
        # and embeds; at most one write is in flight, and anything else that touches a file's records
        # (finishing it, dropping a failed one) waits for it first, so the order of effects is unchanged.
        writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="umr-write")
        pending: list[Future[int]] = []

        def settle() -> None:
            while pending:
                report.pages_added += pending.pop().result()
                if progress is not None:
                    progress(report, None)

        def flush() -> None:
            if buffer:
                vectors = embed([self.embed_input(p) for p in buffer])
                images = [p.png if p.png is not None else p.image for p in buffer]
                batch = list(buffer)
                buffer.clear()
                settle()
                pending.append(writer.submit(self.write_embedded, batch, vectors, extra, images))
            if finished:
                settle()
            for done in finished:
                resume.forget(done.sha256)
                self.finish_file(done, report)
                if progress is not None:
                    progress(report, done)
            finished.clear()

        records = Prefetch(
            pool.render(
                self.sources(paths),
                max_pixels=self.max_pixels,
                max_image_pixels=max_image_pixels,
                skip=resume.skip_file,
                png=self.images is not None,
            ),
            size=batch_size,  # workers render the next batch while this one embeds
        )
        try:
            for record in records:
                if isinstance(record, Page):
                    if resume.skip_page(record):
                        continue
                    buffer.append(record)
                    if len(buffer) >= batch_size:
                        flush()
                elif isinstance(record, FileDone):
                    if record.skipped:
                        report.files_skipped += 1
                        report.pages_replaced += self.remove_stale(record.source, record.sha256)
                        if progress is not None:
                            progress(report, record)
                    else:
                        finished.append(record)
                        if not buffer:
                            flush()
                else:
                    buffer[:] = [
                        p for p in buffer if not (p.source == record.source and p.sha256 == record.sha256)
                    ]
                    resume.forget(record.sha256)
                    settle()
                    self.drop_partial(record)
                    report.failed.append(record)
                    logger.warning("skipped %s: %s", safe_display(record.source), record.reason)
                    if progress is not None:
                        progress(report, record)
            flush()
            settle()
        finally:
            records.close()
            writer.shutdown(wait=True)
        report.seconds = time.monotonic() - start
        logger.info("%s", report.summary().splitlines()[0])
        return report


__all__ = [
    "EmbedFn",
    "Indexer",
    "ProgressCallback",
    "Resume",
    "absolute_paths",
    "embed_input",
    "settings_key",
]
