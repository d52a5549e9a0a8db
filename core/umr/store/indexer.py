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

import contextlib
import hashlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from umr.documents import (
    MAX_IMAGE_PIXELS,
    RENDER_VERSION,
    FileDone,
    FileError,
    NotIndexed,
    Page,
    Prefetch,
    RenderPlan,
    RenderPool,
    safe_display,
    source_key,
    walk,
)
from umr.documents.paths import PathLike
from umr.documents.records import INCOMPLETE

from .collection import ChromaCollection, Scalar
from .images import ImageData, PageImages
from .records import IndexReport
from .sources import ALIAS_PREFIX, alias_key, refers_to

if TYPE_CHECKING:
    from .lexical import LexicalMirror

logger = logging.getLogger(__name__)

ProgressCallback = Callable[[IndexReport, "Page | FileDone | FileError | None"], None]
EmbedFn = Callable[[list[Any]], np.ndarray]


def settings_key(fingerprint: str, max_pixels: int, embed_text_layer: bool, render: str = "fit") -> str:
    """12 hex digits naming what decides a page's vector: the embedder, the pixel budget, the renderer
    version, whether the text layer is embedded too, and the rendering (``"fit"`` adds nothing, so ids
    of stores made before planned rendering stay as they were).  Part of every record id."""
    text = f"{fingerprint}|{max_pixels}|{RENDER_VERSION}|{int(embed_text_layer)}"
    if render != "fit":
        text += f"|{render}"
    return hashlib.sha256(text.encode()).hexdigest()[:12]


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
        self._records: dict[str, list[tuple[str, dict[str, Any]]]] = {}  # of files skipped whole
        self._lock = threading.Lock()  # skip_file runs in the render reader's thread, skip_page in the caller's

    def _count(self, source: str, sha: str, pages: int) -> None:
        key = (source, sha)
        with self._lock:
            self._skipped[key] = self._skipped.get(key, 0) + pages
            if self.report is not None:
                self.report.pages_skipped += pages

    def skip_file(self, source: str, sha: str) -> bool:
        """The ``skip`` callback of :meth:`RenderPool.render`: True when every page is stored already."""
        records = self.indexer.version_records(sha)
        page_count, present = self.indexer.stored_pages(sha, records)
        if page_count and len(present) == page_count:
            self._count(source, sha, page_count)
            self._records[sha] = records  # for claim(): no second lookup
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

    def records(self, sha: str) -> list[tuple[str, dict[str, Any]]] | None:
        """The records of a file skipped whole, as :meth:`skip_file` read them (once)."""
        return self._records.pop(sha, None)


class Indexer:
    """Writes pages of one embedder into one collection (and their images into ``images``).

    ``settings`` is :func:`settings_key` of the embedder and render settings; ``own`` lists folders
    never indexed (the database and the image folder, when a walk reaches them); ``plan``: the
    embedder's render plan when pages are drawn at its planned size (``None``: fit rendering).
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
        lexical: LexicalMirror | None = None,
        plan: RenderPlan | None = None,
    ) -> None:
        self.collection = collection
        self.images = images
        #: the lexical index kept in step with every write and delete (Chroma first), or ``None``
        self.lexical = lexical
        self.model_id = model_id
        self.dim = dim
        self.settings = settings
        self.max_pixels = max_pixels
        self.embed_text_layer = embed_text_layer
        self.plan = plan
        self.own = [os.path.abspath(os.fsdecode(p)) for p in own]
        self._defer = 0
        self._pending: dict[str, dict[str, str]] = {}  # claims not written yet: id -> {alias key: path key}

    # ------------------------------------------------------------------ ids and lookups
    def page_id(self, sha256: str, page: int) -> str:
        """Content-derived id of one page: file hash, page number, embedder and render settings."""
        return f"{sha256[:32]}-p{page}-{self.settings}"

    def item_id(self, digest: str, tag: str) -> str:
        """Content-derived id of a single image (``tag`` ``"i"``) or text (``"t"``)."""
        return f"{digest[:32]}-{tag}-{self.settings}"

    def version_records(self, sha: str) -> list[tuple[str, dict[str, Any]]]:
        """``(id, metadata)`` of every stored page of one file version under these settings."""
        return self.collection.records_where({"$and": [{"sha256": sha}, {"settings": self.settings}]}, None)

    def stored_pages(
        self, sha: str, records: list[tuple[str, dict[str, Any]]] | None = None
    ) -> tuple[int, set[str]]:
        """``(page_count, ids of its pages already stored)`` for one file version under these settings;
        ``(0, set())`` when none is stored.  A file is complete when both sizes are equal.  ``records``:
        :meth:`version_records`, when read already."""
        if records is None:
            records = self.version_records(sha)
        if not records:
            return 0, set()
        page_count = int(records[0][1].get("page_count", 0) or 0)
        if page_count <= 0:
            return 0, set()
        expected = {self.page_id(sha, p) for p in range(1, page_count + 1)}
        return page_count, {rid for rid, _ in records if rid in expected}

    def resume(self, report: IndexReport | None = None) -> Resume:
        """A fresh :class:`Resume` for one run (or one render task)."""
        return Resume(self, report)

    def sources(
        self,
        paths: PathLike | Iterable[PathLike],
        exclude: Sequence[PathLike] = (),
        on_skip: Callable[[NotIndexed], None] | None = None,
    ) -> Iterator[str | FileError]:
        """Files under ``paths`` (absolute; folders walked), leaving out the store's own folders and
        ``exclude`` (and hidden entries and symlinked folders, as :func:`umr.documents.walk` does),
        each reported to ``on_skip``; what cannot be read comes out as :class:`FileError`."""
        own = self.own + [os.path.abspath(os.fsdecode(p)) for p in exclude]
        yield from walk(
            absolute_paths(paths), exclude=own, on_skip=on_skip,
            exclude_reason="inside the store's own folder (its database or page images): never indexed",
        )

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

    def _lexical_metadata(self, ids: list[str]) -> None:
        """Metadata changed in Chroma (paths of a shared page set): the lexical filter terms follow."""
        if self.lexical is not None and ids:
            found = self.lexical.collection.records(ids)
            keep = [i for i in ids if i in found]
            self.lexical.upserted(keep, [found[i][1] for i in keep], [found[i][0] for i in keep])

    def write(
        self, ids: list[str], vectors: np.ndarray, metas: list[dict[str, Scalar]], docs: list[str],
        images: Sequence[ImageData] | None = None,
    ) -> None:
        """Images first (their paths and URIs go into ``metas``), then the records."""
        if images is not None:
            self.save_images(ids, images, metas)
        self.collection.upsert(ids, vectors, metas, docs)
        if self.lexical is not None:  # Chroma first: a kill in between leaves the lexical side behind
            self.lexical.upserted(ids, docs, metas)

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
        page PNGs first, then one upsert per ``max_batch`` ids.  Ids are content-derived: a page whose id
        is stored already (a retried task, or a byte-identical file at another path) or repeated in
        ``pages`` is written once, never duplicated nor re-labelled (the other path is recorded when its
        file completes, :meth:`claim`).  ``vectors``: an ``(n, dim)`` array, or multi-vectors
        (``umr.late.MultiVectors``, one array per page).  Returns the pages written."""
        multi = getattr(vectors, "n_tokens", None) is not None  # multi-vectors (umr.late): one array per page
        if multi:
            if len(vectors) != len(pages):
                raise ValueError(f"got {len(vectors)} multi-vectors for {len(pages)} pages")
        else:
            vectors = np.asarray(vectors, dtype=np.float32)
            if vectors.shape != (len(pages), self.dim):
                raise ValueError(f"got vectors of shape {vectors.shape} for {len(pages)} pages of dim {self.dim}")
        ids = [self.page_id(p.sha256, p.page) for p in pages]
        stored = self.collection.existing_ids(ids)
        keep: list[int] = []
        for i, pid in enumerate(ids):
            if pid not in stored:
                stored.add(pid)
                keep.append(i)
        if not keep:
            return 0
        now = time.time()
        if multi:
            kept_vectors: Any = type(vectors)([vectors[i] for i in keep], vectors.dim)
        else:
            kept_vectors = vectors[keep]
        self.write(
            [ids[i] for i in keep],
            kept_vectors,
            [self.page_metadata(pages[i], extra, now) for i in keep],
            [pages[i].text for i in keep],
            [images[i] for i in keep],
        )
        return len(keep)

    # ------------------------------------------------------------------ paths of page sets
    def claim(
        self, source: str, sha: str, pages: int = 0, records: list[tuple[str, dict[str, Any]]] | None = None
    ) -> int:
        """Record the path ``source`` on every stored page of its file version ``sha`` (a byte-identical
        file at another path may have stored them), unless fewer than ``pages`` of them are stored.
        ``records``: :meth:`version_records`, when read already.  Returns the number of pages stored."""
        key = source_key(source)
        if records is None:
            records = self.version_records(sha)
        if not records or len(records) < pages:
            return len(records)
        alias = alias_key(key)
        missing = [rid for rid, meta in records if meta.get("source") != key and meta.get(alias) != key]
        for rid in missing:
            self._pending.setdefault(rid, {})[alias] = key
        if not self._defer:
            self.apply_claims()
        return len(records)

    @contextlib.contextmanager
    def batched_claims(self) -> Iterator[None]:
        """Within this block, paths recorded by :meth:`claim` are written in one update (at the end,
        or before a :meth:`release` that touches those records): a Chroma write per copy is slow."""
        self._defer += 1
        try:
            yield
        finally:
            self._defer -= 1
            if not self._defer:
                self.apply_claims()

    def apply_claims(self) -> None:
        """Write the paths :meth:`claim` recorded inside :meth:`batched_claims`."""
        if self._pending:
            pending, self._pending = self._pending, {}
            self.collection.update_metadata(list(pending), list(pending.values()))
            self._lexical_metadata(list(pending))

    def release(self, source: str, where: Mapping[str, Any] | None = None) -> tuple[int, int]:
        """Take the path ``source`` off its records (those matching ``where`` too, when given).

        A record no other path lists is deleted with its page image; one that another path still lists
        is kept (when ``source`` was its first path, the next one takes its place).  Returns
        ``(deleted, kept)``."""
        key = source_key(source)
        cond = {"$and": [refers_to(key), dict(where)]} if where else refers_to(key)
        on_removed = self.images.remove if self.images is not None else None
        deleted = kept = 0
        seen: set[str] = set()
        while True:
            records = self.collection.records_where(cond, limit=min(self.collection.max_batch, 1000))
            if not records:
                return deleted, kept
            if self._pending and any(rid in self._pending for rid, _ in records):
                self.apply_claims()  # decide on the paths as they are, claims included
                continue
            if seen.issuperset(r[0] for r in records):  # pragma: no cover - an update that did not apply
                raise RuntimeError(f"could not take {safe_display(key)} off {len(records)} record(s)")
            seen.update(r[0] for r in records)
            drop: list[tuple[str, dict[str, Any]]] = []
            updates: list[tuple[str, dict[str, Any]]] = []
            for rid, meta in records:
                others = sorted(
                    {str(v) for k, v in meta.items() if k.startswith(ALIAS_PREFIX) and v and v != key}
                    | ({str(meta.get("source"))} if meta.get("source") not in (None, "", key) else set())
                )
                if not others:
                    drop.append((rid, meta))
                    continue
                change: dict[str, Any] = {}
                if meta.get("source") == key:  # the next path becomes the first
                    first = others[0]
                    change.update(source=first, filename=os.path.basename(first))
                    change[alias_key(first)] = None
                if meta.get(alias_key(key)) is not None:
                    change[alias_key(key)] = None
                updates.append((rid, change))
            if drop:
                self.collection.delete_ids([r[0] for r in drop])
                if self.lexical is not None:
                    self.lexical.deleted([r[0] for r in drop])
                if on_removed is not None:
                    on_removed([r[1] for r in drop])
                deleted += len(drop)
            if updates:
                self.collection.update_metadata([u[0] for u in updates], [u[1] for u in updates])
                self._lexical_metadata([u[0] for u in updates])
                kept += len(updates)

    # ------------------------------------------------------------------ removing
    def delete_where(self, where: Mapping[str, Any]) -> int:
        """Delete matching records and their page images; the number removed."""
        on_removed = self.images.remove if self.images is not None else None
        on_ids = self.lexical.deleted if self.lexical is not None else None
        return self.collection.delete_where(where, on_removed, on_ids)

    def remove_stale(self, source: str, sha: str) -> int:
        """Take ``source`` off the pages of its older versions (other content or other settings); those
        no other path lists are deleted.  Returns the pages no longer listed under ``source``."""
        where = {
            "$and": [
                {"kind": {"$in": ["pdf", "image"]}},
                {"$or": [{"sha256": {"$ne": sha}}, {"settings": {"$ne": self.settings}}]},
            ]
        }
        deleted, kept = self.release(source, where)
        return deleted + kept

    def finish_file(
        self,
        done: FileDone,
        report: IndexReport,
        *,
        records: list[tuple[str, dict[str, Any]]] | None = None,
        wrote_all: bool = False,
    ) -> None:
        """A file complete in the store (rendered and written now, or ``done.skipped``: present already):
        record its path on its pages, count it and take it off its older versions.

        A file rendered now whose pages are not all stored (a byte-identical file that wrote some of them
        failed meanwhile) is reported failed instead; the next run completes it.  ``records``: the
        version's records when read already; ``wrote_all``: the caller wrote every page of the file under
        its path just now (nothing to record, nothing missing)."""
        stored = done.pages if wrote_all else self.claim(done.source, done.sha256, done.pages, records)
        if stored < done.pages:
            report.failed.append(
                FileError(
                    done.source,
                    f"only {stored} of its {done.pages} page(s) are stored (an identical file that wrote "
                    "them failed meanwhile): run the command again",
                    INCOMPLETE,
                    done.sha256,
                )
            )
            logger.warning("incomplete %s: %d of %d pages stored", safe_display(done.source), stored, done.pages)
            return
        if done.skipped:
            report.files_skipped += 1
        else:
            report.files_indexed += 1
            logger.info("indexed %s (%d pages)", safe_display(done.source), done.pages)
        report.pages_replaced += self.remove_stale(done.source, done.sha256)

    def drop_partial(self, error: FileError) -> int:
        """Take a file that failed half-way (in this or a killed run) off the pages of that version;
        those no other path lists are deleted.  Returns the pages deleted."""
        if not error.sha256:
            return 0
        deleted, _ = self.release(error.source, {"$and": [{"sha256": error.sha256}, {"settings": self.settings}]})
        if deleted:
            logger.info("removed %d page(s) of the failed file %s", deleted, safe_display(error.source))
        return deleted

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
        read_ahead: bool = False,
    ) -> IndexReport:
        """Render ``paths`` in ``pool``, embed ``batch_size`` pages at a time with ``embed`` (inputs ->
        ``(n, dim)`` vectors), write them; see :meth:`umr.store.ChromaStore.add_files`.

        ``read_ahead``: read the render run in a thread up to one batch ahead (``Prefetch``), so the
        workers render the next batch while this one embeds. It pays when the model runs on an
        accelerator; on a CPU the renderer and torch compete for the same cores (measured slower on 2)."""
        start = time.monotonic()
        report = IndexReport()
        extra = dict(metadata or {})
        resume = self.resume(report)
        buffer: list[Page] = []
        finished: list[FileDone] = []
        written: set[str] = set()  # ids written by this run (a byte-identical file's pages are embedded once)
        own: dict[tuple[str, str], int] = {}  # pages each file wrote under its own path

        def flush() -> None:
            if buffer:
                fresh: list[Page] = []
                for p in buffer:
                    pid = self.page_id(p.sha256, p.page)
                    if pid in written:
                        report.pages_skipped += 1
                    else:
                        written.add(pid)
                        fresh.append(p)
                if fresh:
                    vectors = embed([self.embed_input(p) for p in fresh])
                    added = self.write_embedded(
                        fresh, vectors, extra, [p.png if p.png is not None else p.image for p in fresh]
                    )
                    report.pages_added += added
                    report.pages_skipped += len(fresh) - added
                    if added == len(fresh):
                        for p in fresh:
                            own[(p.source, p.sha256)] = own.get((p.source, p.sha256), 0) + 1
                buffer.clear()
                if progress is not None:
                    progress(report, None)
            for done in finished:
                resume.forget(done.sha256)
                self.finish_file(done, report, wrote_all=own.pop((done.source, done.sha256), 0) == done.pages)
                if progress is not None:
                    progress(report, done)
            finished.clear()

        claims = self.batched_claims()
        claims.__enter__()
        records = pool.render(
            self.sources(paths, on_skip=report.not_indexed.append),
            max_pixels=self.max_pixels,
            max_image_pixels=max_image_pixels,
            skip=resume.skip_file,
            png=self.images is not None,  # workers encode the stored PNG: nothing is re-encoded here
            plan=self.plan,
        )
        if read_ahead:
            records = Prefetch(records, size=batch_size)
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
                        self.finish_file(record, report, records=resume.records(record.sha256))
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
                    self.drop_partial(record)
                    report.failed.append(record)
                    logger.warning("skipped %s: %s", safe_display(record.source), record.reason)
                    if progress is not None:
                        progress(report, record)
            flush()
        finally:
            records.close()
            claims.__exit__(None, None, None)
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
