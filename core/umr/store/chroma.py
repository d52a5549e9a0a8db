"""Chroma-backed page store: index PDFs and images with an MLLM embedder, search them.

Embedded ``chromadb.PersistentClient`` by default (one writer process at a time); pass ``host``
to talk to a Chroma server (``chroma run --path DB``), which is what several writer processes
need.  Page ids are content-derived (file sha256, page number, embedder fingerprint, render
settings), so indexing is idempotent and resumable: kill it at any point, run it again, and each
page of each good file ends up stored exactly once.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from PIL import Image

from umr.confine import register_root
from umr.documents import (
    DEFAULT_MEMORY_LIMIT,
    DEFAULT_TIMEOUT,
    MAX_IMAGE_PIXELS,
    RENDER_VERSION,
    FileDone,
    FileError,
    Page,
    RenderPool,
    downscale,
    load_image,
    safe_display,
    source_key,
    walk,
)
from umr.documents.paths import PathLike

from .records import DocumentInfo, IndexReport, SearchHit

logger = logging.getLogger(__name__)

ProgressCallback = Callable[[IndexReport, "Page | FileDone | FileError | None"], None]
Scalar = str | int | float | bool

#: Metadata keys the store writes itself; user metadata cannot override these.
RESERVED_KEYS = frozenset(
    {"sha256", "page", "page_count", "settings", "model_id", "kind", "image_uri", "image_path"}
)

_GET_CHUNK = 1000


F = TypeVar("F", bound=Callable[..., Any])


def _exclusive(method: F) -> F:
    """Hold the embedded database's writer lock while ``method`` runs (see ``_writer_lock``)."""

    @functools.wraps(method)
    def wrapper(self: ChromaStore, *args: Any, **kwargs: Any) -> Any:
        with self._writer_lock():
            return method(self, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


def _chromadb() -> Any:
    try:
        import chromadb
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ImportError("the Chroma store needs chromadb: pip install 'umr[chroma]'") from exc
    return chromadb


def _scalar_metadata(meta: Mapping[str, Any] | None, where: str) -> dict[str, Scalar]:
    """Chroma takes scalar metadata only: drop ``None``, turn paths into str, refuse the rest."""
    out: dict[str, Scalar] = {}
    for key, value in (meta or {}).items():
        if not isinstance(key, str):
            raise TypeError(f"{where}: metadata keys must be str, got {key!r}")
        if value is None:
            continue
        if isinstance(value, os.PathLike):
            value = source_key(value)
        if isinstance(value, (np.integer, np.floating, np.bool_)):
            value = value.item()
        if isinstance(value, str):
            value = value.encode("utf-8", "backslashreplace").decode("utf-8")
        if not isinstance(value, (str, int, float, bool)):
            raise TypeError(
                f"{where}: metadata {key!r} is a {type(value).__name__}; Chroma stores only str, int, "
                "float and bool values (join lists into a string)"
            )
        out[key] = value
    return out


class ChromaStore:
    """A Chroma collection of embedded pages, images and texts.

    ``embedder`` is a :class:`umr.Embedder` (or anything with ``embed_documents``,
    ``embed_queries``, ``model_id``, ``dim`` and ``max_pixels`` / ``recipe.max_pixels``).

    ``path``: folder of the embedded database (``PersistentClient``); ignored for the database
    when ``host`` is given (then a Chroma server at ``host:port`` is used).  Page images are
    saved as PNG files in ``image_dir`` (default ``<path>/images``; with a server only when
    ``image_dir`` is given), named by page id in two-character shards, and their ``file://``
    URI is kept in the metadata (``image_uri``) — never image bytes in Chroma.

    ``max_pixels``: render budget for pages (default: the embedder's).  ``batch_size``: pages
    embedded at a time (memory stays flat).  ``workers``, ``timeout``, ``file_timeout``,
    ``memory_limit``: see :func:`umr.documents.render_files`.  ``embed_text_layer``: embed each
    page as image + extracted text instead of image only (the text is always stored as the
    Chroma document).
    """

    def __init__(
        self,
        embedder: Any,
        path: PathLike = "umr_db",
        *,
        collection: str = "umr",
        host: str | None = None,
        port: int = 8000,
        client: Any | None = None,
        image_dir: PathLike | None = None,
        store_images: bool = True,
        max_pixels: int | None = None,
        batch_size: int = 16,
        workers: int = 1,
        timeout: float = DEFAULT_TIMEOUT,
        file_timeout: float | None = None,
        memory_limit: int | None = DEFAULT_MEMORY_LIMIT,
        max_image_pixels: int = MAX_IMAGE_PIXELS,
        embed_text_layer: bool = False,
    ) -> None:
        chromadb = _chromadb()
        from chromadb.config import Settings

        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.embedder = embedder
        self.model_id = str(embedder.model_id)
        self.dim = int(embedder.dim)
        if max_pixels is None:
            max_pixels = getattr(embedder, "max_pixels", None) or embedder.recipe.max_pixels
        self.max_pixels = int(max_pixels)
        self.batch_size = batch_size
        self.workers = workers
        self.timeout = timeout
        self.file_timeout = file_timeout
        self.memory_limit = memory_limit
        self.max_image_pixels = max_image_pixels
        self.embed_text_layer = embed_text_layer
        self.path = Path(os.fsdecode(path)) if host is None and client is None else None
        settings = Settings(anonymized_telemetry=False)
        if client is not None:
            self.client = client
        elif host is not None:
            self.client = chromadb.HttpClient(host=host, port=port, settings=settings)
        else:
            assert self.path is not None
            self.path.mkdir(parents=True, exist_ok=True)
            self.client = chromadb.PersistentClient(path=str(self.path), settings=settings)
        if image_dir is not None:
            self.image_dir: Path | None = Path(os.fsdecode(image_dir))
        elif self.path is not None:
            self.image_dir = self.path / "images"
        else:
            self.image_dir = None
        if not store_images:
            self.image_dir = None
        if self.image_dir is not None:
            self.image_dir.mkdir(parents=True, exist_ok=True)
            # page images named by this store may be read by rerankers and tools (umr.confine)
            register_root(self.image_dir)
        fingerprint = str(getattr(embedder, "fingerprint", "") or f"{self.model_id}|{self.dim}")
        self.fingerprint = fingerprint
        self.settings_key = hashlib.sha256(
            f"{fingerprint}|{self.max_pixels}|{RENDER_VERSION}|{int(embed_text_layer)}".encode()
        ).hexdigest()[:12]
        self.collection_name = collection
        self.collection = self._open_collection(collection)
        self.max_batch = max(1, int(self.client.get_max_batch_size()))
        self._existing: dict[str, set[str]] = {}
        self._pool: RenderPool | None = None
        self._lock_depth = 0

    # ------------------------------------------------------------------ setup
    def _open_collection(self, name: str) -> Any:
        meta = {
            "umr_model_id": self.model_id,
            "umr_dim": self.dim,
            "umr_fingerprint": self.fingerprint,
            "umr_max_pixels": self.max_pixels,
        }
        for attempt in range(5):
            try:
                col = self.client.get_or_create_collection(
                    name,
                    configuration={"hnsw": {"space": "cosine"}},
                    metadata=meta,
                    embedding_function=None,
                )
                break
            except Exception as exc:  # concurrent creation by another writer: retry
                if attempt == 4:
                    raise
                logger.debug("get_or_create_collection(%s) failed (%s); retrying", name, exc)
                time.sleep(0.2 * (attempt + 1))
        existing = col.metadata or {}
        dim = existing.get("umr_dim")
        if (dim is not None and int(dim) != self.dim) or (
            existing.get("umr_fingerprint") not in (None, self.fingerprint)
        ):
            raise ValueError(
                f"collection {name!r} holds vectors of {existing.get('umr_model_id')!r} "
                f"(dim {dim}, fingerprint {existing.get('umr_fingerprint')}); this embedder is "
                f"{self.model_id!r} (dim {self.dim}, fingerprint {self.fingerprint}). Vectors of different "
                "models cannot be mixed: use another collection name or delete this one"
            )
        space = (getattr(col, "configuration", None) or {}).get("hnsw", {}) or {}
        if space.get("space", "cosine") != "cosine":
            logger.warning(
                "collection %r uses %r distance, not cosine; scores will be off", name, space.get("space")
            )
        return col

    # ------------------------------------------------------------------ ids
    def page_id(self, sha256: str, page: int) -> str:
        """Content-derived id of one page: file hash, page number, embedder and render settings."""
        return f"{sha256[:32]}-p{page}-{self.settings_key}"

    def _item_id(self, digest: str, tag: str) -> str:
        return f"{digest[:32]}-{tag}-{self.settings_key}"

    # ------------------------------------------------------------------ files
    @_exclusive
    def add_files(
        self,
        paths: PathLike | Iterable[PathLike],
        *,
        progress: ProgressCallback | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> IndexReport:
        """Index PDFs and images (folders are walked recursively).

        Files whose pages are all present already are not rendered again; a changed file (same
        path, new content) replaces its old pages once the new ones are written; a bad file is
        reported in ``IndexReport.failed`` and never stops the run.  ``metadata`` (scalars) is
        added to every page.  ``progress(report, record)`` is called after each batch written
        (record ``None``) and each file finished or failed.
        """
        start = time.monotonic()
        report = IndexReport()
        extra = _scalar_metadata(metadata, "add_files")
        buffer: list[Page] = []
        finished: list[FileDone] = []

        def flush() -> None:
            if buffer:
                self._write_pages(buffer, extra, report)
                buffer.clear()
                if progress is not None:
                    progress(report, None)
            for done in finished:
                self._finish_file(done, report)
                if progress is not None:
                    progress(report, done)
            finished.clear()

        if isinstance(paths, (str, bytes, os.PathLike)):
            paths = [paths]
        # Absolute paths: the stored ``source`` must not depend on the working directory.
        absolute = [os.path.abspath(os.fsdecode(os.fspath(p))) for p in paths]
        records = self._render_pool().render(
            self._outside_store(walk(absolute)),
            max_pixels=self.max_pixels,
            max_image_pixels=self.max_image_pixels,
            skip=lambda source, sha: self._skip_file(source, sha, report),
        )
        try:
            for record in records:
                if isinstance(record, Page):
                    pid = self.page_id(record.sha256, record.page)
                    if pid in self._existing.get(record.sha256, ()):
                        report.pages_skipped += 1
                        continue
                    buffer.append(record)
                    if len(buffer) >= self.batch_size:
                        flush()
                elif isinstance(record, FileDone):
                    if record.skipped:
                        report.files_skipped += 1
                        self._remove_stale(record.source, record.sha256, report)
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
                    self._drop_partial(record)
                    report.failed.append(record)
                    logger.warning("skipped %s: %s", safe_display(record.source), record.reason)
                    if progress is not None:
                        progress(report, record)
            flush()
        finally:
            records.close()
            self._existing.clear()
        report.seconds = time.monotonic() - start
        logger.info("%s", report.summary().splitlines()[0])
        return report

    @contextlib.contextmanager
    def _writer_lock(self) -> Iterator[None]:
        """One writer process at a time on an embedded database (a ``PersistentClient`` is not
        safe for concurrent writers): a second one waits, with a warning.  A killed writer's lock
        is released by the OS.  No lock for a server, which serialises writes itself."""
        if self.path is None or self._lock_depth:
            self._lock_depth += 1
            try:
                yield
            finally:
                self._lock_depth -= 1
            return
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows
            yield
            return
        with open(self.path / ".umr-writer.lock", "a+b") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                logger.warning(
                    "another process is writing to %s; waiting for it (for concurrent writers run a Chroma "
                    "server: chroma run --path DB, and pass host=...)",
                    safe_display(self.path),
                )
                fcntl.flock(fh, fcntl.LOCK_EX)
            self._lock_depth += 1
            try:
                yield
            finally:
                self._lock_depth -= 1
                fcntl.flock(fh, fcntl.LOCK_UN)

    def _render_pool(self) -> RenderPool:
        if self._pool is None:
            self._pool = RenderPool(
                self.workers,
                timeout=self.timeout,
                file_timeout=self.file_timeout,
                memory_limit=self.memory_limit,
            )
        return self._pool

    def close(self) -> None:
        """Stop the render workers (they otherwise idle between ``add_files`` calls)."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()

    def __enter__(self) -> ChromaStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _outside_store(self, items: Iterable[str | FileError]) -> Iterator[str | FileError]:
        """Leave out the store's own files (database, page images) when a walk reaches them."""
        own = [os.path.abspath(p) for p in (self.path, self.image_dir) if p is not None]
        for item in items:
            path = item.source if isinstance(item, FileError) else item
            if any(path == root or path.startswith(root + os.sep) for root in own):
                continue
            yield item

    def _skip_file(self, source: str, sha: str, report: IndexReport) -> bool:
        """True when every page of this file version is stored already (then it is not rendered)."""
        page_count, present = self.stored_pages(sha)
        if page_count and len(present) == page_count:
            report.pages_skipped += page_count
            return True
        if present:
            self._existing[sha] = present  # resume: render again, but embed only the missing pages
        return False

    def stored_pages(self, sha: str) -> tuple[int, set[str]]:
        """``(page_count, ids of its pages already stored)`` for one file version under these settings;
        ``(0, set())`` when none is stored.  A file is complete when both sizes are equal."""
        got = self.collection.get(
            where={"$and": [{"sha256": sha}, {"settings": self.settings_key}]}, limit=1, include=["metadatas"]
        )
        if not got["ids"]:
            return 0, set()
        page_count = int((got["metadatas"] or [{}])[0].get("page_count", 0))
        if page_count <= 0:
            return 0, set()
        return page_count, self._existing_ids([self.page_id(sha, p) for p in range(1, page_count + 1)])

    def _existing_ids(self, ids: Sequence[str]) -> set[str]:
        found: set[str] = set()
        step = min(self.max_batch, _GET_CHUNK)
        for i in range(0, len(ids), step):
            found.update(self.collection.get(ids=list(ids[i : i + step]), include=[])["ids"])
        return found

    def _finish_file(self, done: FileDone, report: IndexReport) -> None:
        report.files_indexed += 1
        self._existing.pop(done.sha256, None)
        self._remove_stale(done.source, done.sha256, report)
        logger.info("indexed %s (%d pages)", safe_display(done.source), done.pages)

    def _remove_stale(self, source: str, sha: str, report: IndexReport) -> None:
        """Remove pages of older versions of ``source`` (other content or other settings)."""
        where = {
            "$and": [
                {"source": source_key(source)},
                {"kind": {"$in": ["pdf", "image"]}},
                {"$or": [{"sha256": {"$ne": sha}}, {"settings": {"$ne": self.settings_key}}]},
            ]
        }
        report.pages_replaced += self._delete_where(where)

    def _drop_partial(self, error: FileError) -> None:
        """Remove pages of a file that failed half-way (written by this or a killed run)."""
        self._existing.pop(error.sha256, None)
        if not error.sha256:
            return
        where = {
            "$and": [
                {"sha256": error.sha256},
                {"source": source_key(error.source)},
                {"settings": self.settings_key},
            ]
        }
        removed = self._delete_where(where)
        if removed:
            logger.info("removed %d page(s) of the failed file %s", removed, safe_display(error.source))

    # ------------------------------------------------------------------ writing
    def _page_input(self, page: Page) -> Any:
        if self.embed_text_layer and page.text.strip():
            return {"text": page.text, "image": page.image}
        return page.image

    def _write_pages(self, pages: list[Page], extra: Mapping[str, Scalar], report: IndexReport) -> None:
        vectors = self._embed([self._page_input(p) for p in pages])
        report.pages_added += self.write_embedded(pages, vectors, extra, [p.image for p in pages])

    @staticmethod
    def embed_input(image: Any, text: str, embed_text_layer: bool) -> Any:
        """What the embedder gets for one page: its image, or image + text layer (``embed_text_layer``)."""
        if embed_text_layer and text.strip():
            return {"text": text, "image": image}
        return image

    def _page_input(self, page: Page) -> Any:
        return self.embed_input(page.image, page.text, self.embed_text_layer)

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
            settings=self.settings_key,
            max_pixels=self.max_pixels,
            indexed_at=now,
        )
        return meta

    def write_embedded(
        self,
        pages: Sequence[Page],
        vectors: np.ndarray,
        extra: Mapping[str, Scalar],
        images: Sequence[Image.Image | bytes],
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
        self._save_images(ids, list(images), metas)
        self._upsert(ids, vectors, metas, [p.text for p in pages])
        return len(ids)

    def _embed(self, inputs: list[Any]) -> np.ndarray:
        vectors = np.asarray(self.embedder.embed_documents(inputs), dtype=np.float32)
        if vectors.shape != (len(inputs), self.dim):
            raise ValueError(f"embedder returned shape {vectors.shape}, expected {(len(inputs), self.dim)}")
        return vectors

    def _image_path(self, item_id: str) -> Path:
        assert self.image_dir is not None
        return self.image_dir / item_id[:2] / f"{item_id}.png"

    def _save_images(
        self, ids: list[str], images: list[Image.Image | bytes], metas: list[dict[str, Scalar]]
    ) -> None:
        if self.image_dir is None:
            for meta in metas:
                meta["image_uri"] = ""
            return
        paths = [self._image_path(i) for i in ids]
        with ThreadPoolExecutor(max_workers=2) as pool:
            futures: list[Future[None]] = [
                pool.submit(_write_png, img, path) for img, path in zip(images, paths)
            ]
            for f in futures:
                f.result()
        for meta, path in zip(metas, paths):
            resolved = path.resolve()
            meta["image_path"] = str(resolved)
            meta["image_uri"] = resolved.as_uri()

    def _upsert(
        self, ids: list[str], vectors: np.ndarray, metas: list[dict[str, Scalar]], docs: list[str]
    ) -> None:
        uris = [str(m.get("image_uri", "")) for m in metas]
        for i in range(0, len(ids), self.max_batch):
            j = i + self.max_batch
            self.collection.upsert(
                ids=ids[i:j],
                embeddings=vectors[i:j],
                metadatas=metas[i:j],
                documents=docs[i:j],
                uris=uris[i:j],
            )

    # ------------------------------------------------------------------ images & texts
    @_exclusive
    def add_images(
        self,
        images: Iterable[Image.Image | PathLike],
        metadatas: Sequence[Mapping[str, Any] | None] | None = None,
    ) -> list[str]:
        """Embed and store single images (PIL images or image/PDF paths; a path gives its first
        page/frame, loaded in this process).  Returns their ids (content-derived)."""
        items = list(images)
        metadatas = list(metadatas) if metadatas is not None else [None] * len(items)
        if len(metadatas) != len(items):
            raise ValueError(f"{len(items)} images but {len(metadatas)} metadatas")
        out: list[str] = []
        for start in range(0, len(items), self.batch_size):
            chunk = items[start : start + self.batch_size]
            ids, metas, pil = [], [], []
            for offset, item in enumerate(chunk):
                meta: dict[str, Scalar] = {"source": "", "kind": "image"}
                if isinstance(item, Image.Image):
                    image = downscale(item, self.max_pixels)
                else:
                    meta["source"] = source_key(item)
                    meta["filename"] = source_key(os.path.basename(os.fsdecode(item)))
                    image = load_image(item, self.max_pixels, max_image_pixels=self.max_image_pixels)
                digest = hashlib.sha256(
                    image.mode.encode() + repr(image.size).encode() + image.tobytes()
                ).hexdigest()
                user = _scalar_metadata(metadatas[start + offset], "add_images")
                _check_reserved(user)
                meta.update(user)
                meta.update(
                    sha256=digest,
                    page=1,
                    page_count=1,
                    width=image.width,
                    height=image.height,
                    model_id=self.model_id,
                    settings=self.settings_key,
                    max_pixels=self.max_pixels,
                    indexed_at=time.time(),
                )
                ids.append(self._item_id(digest, "i"))
                metas.append(meta)
                pil.append(image)
            vectors = self._embed(pil)
            self._save_images(ids, pil, metas)
            self._upsert(ids, vectors, metas, [""] * len(ids))
            out.extend(ids)
        return out

    @_exclusive
    def add_texts(
        self,
        texts: Iterable[str],
        metadatas: Sequence[Mapping[str, Any] | None] | None = None,
    ) -> list[str]:
        """Embed and store text passages.  Returns their ids (content-derived)."""
        items = list(texts)
        for t in items:
            if not isinstance(t, str):
                raise TypeError(f"add_texts takes str items, got {type(t).__name__}")
        metadatas = list(metadatas) if metadatas is not None else [None] * len(items)
        if len(metadatas) != len(items):
            raise ValueError(f"{len(items)} texts but {len(metadatas)} metadatas")
        out: list[str] = []
        for start in range(0, len(items), self.batch_size):
            chunk = items[start : start + self.batch_size]
            ids, metas, docs = [], [], []
            for offset, text in enumerate(chunk):
                clean = text.encode("utf-8", "replace").decode("utf-8")
                digest = hashlib.sha256(clean.encode("utf-8")).hexdigest()
                meta: dict[str, Scalar] = {"source": "", "kind": "text"}
                user = _scalar_metadata(metadatas[start + offset], "add_texts")
                _check_reserved(user)
                meta.update(user)
                meta.update(
                    sha256=digest,
                    page=1,
                    page_count=1,
                    model_id=self.model_id,
                    settings=self.settings_key,
                    image_uri="",
                    indexed_at=time.time(),
                )
                ids.append(self._item_id(digest, "t"))
                metas.append(meta)
                docs.append(clean)
            vectors = self._embed([{"text": d} for d in docs])
            self._upsert(ids, vectors, metas, docs)
            out.extend(ids)
        return out

    # ------------------------------------------------------------------ search
    def search(
        self,
        query: Any,
        k: int = 5,
        where: Mapping[str, Any] | None = None,
        *,
        where_document: Mapping[str, Any] | None = None,
        instruction: str | None = None,
    ) -> list[SearchHit]:
        """Top-``k`` hits for a text, image, or fused ``{"text", "image"}`` query.

        ``where`` / ``where_document`` are Chroma filters (e.g. ``{"kind": "pdf"}``).
        ``instruction`` is the query-side task instruction for the embedder.
        """
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        if instruction is None:
            vec = self.embedder.embed_queries([query])
        else:
            vec = self.embedder.embed_queries([query], instruction=instruction)
        vec = np.asarray(vec, dtype=np.float32).reshape(1, self.dim)
        res = self.collection.query(
            query_embeddings=vec,
            n_results=k,
            where=dict(where) if where else None,
            where_document=dict(where_document) if where_document else None,
            include=["metadatas", "documents", "distances"],
        )
        hits: list[SearchHit] = []
        metas = (res.get("metadatas") or [[]])[0]
        docs = (res.get("documents") or [[]])[0]
        for i, (hid, dist) in enumerate(zip(res["ids"][0], res["distances"][0])):
            meta = dict(metas[i] or {})
            hits.append(
                SearchHit(
                    id=hid,
                    score=1.0 - float(dist),
                    metadata=meta,
                    document=docs[i] or "",
                    image_uri=str(meta.get("image_uri", "")),
                )
            )
        return hits

    # ------------------------------------------------------------------ management
    def _delete_where(self, where: Mapping[str, Any]) -> int:
        removed = 0
        while True:
            got = self.collection.get(
                where=dict(where), limit=min(self.max_batch, _GET_CHUNK), include=["metadatas"]
            )
            ids = got["ids"]
            if not ids:
                return removed
            self.collection.delete(ids=ids)
            self._remove_image_files(got["metadatas"] or [])
            removed += len(ids)

    def _remove_image_files(self, metas: Iterable[Mapping[str, Any] | None]) -> None:
        if self.image_dir is None:
            return
        root = self.image_dir.resolve()
        for meta in metas:
            path = str((meta or {}).get("image_path", ""))
            if not path:
                continue
            p = Path(path)
            if root in p.parents:  # only files this store wrote
                try:
                    p.unlink()
                except FileNotFoundError:
                    pass
                except OSError as exc:  # pragma: no cover
                    logger.warning("cannot remove %s: %s", safe_display(p), exc)

    @_exclusive
    def delete_document(self, source_or_sha: PathLike) -> int:
        """Remove every page of a document, named by its path (as indexed) or its sha256.
        Returns the number of records removed."""
        key = source_key(source_or_sha)
        removed = self._delete_where({"source": key})
        if not removed and len(key) == 64 and all(c in "0123456789abcdef" for c in key.lower()):
            removed = self._delete_where({"sha256": key.lower()})
        return removed

    def count(self) -> int:
        return int(self.collection.count())

    def _iter_metadatas(self) -> Iterator[Mapping[str, Any]]:
        offset = 0
        while True:
            got = self.collection.get(limit=_GET_CHUNK, offset=offset, include=["metadatas"])
            metas = got["metadatas"] or []
            yield from (m or {} for m in metas)
            if len(got["ids"]) < _GET_CHUNK:
                return
            offset += len(got["ids"])

    def documents(self) -> list[DocumentInfo]:
        """Stored documents (one per source and content version), sorted by source."""
        docs: dict[tuple[str, str], dict[str, Any]] = {}
        for m in self._iter_metadatas():
            kind = str(m.get("kind", ""))
            if kind not in ("pdf", "image"):
                continue
            key = (str(m.get("source", "")), str(m.get("sha256", "")))
            d = docs.setdefault(
                key,
                {
                    "kind": kind,
                    "page_count": int(m.get("page_count", 0)),
                    "pages": 0,
                    "title": str(m.get("title", "")),
                    "author": str(m.get("author", "")),
                },
            )
            d["pages"] += 1
        return [DocumentInfo(source=s, sha256=h, **d) for (s, h), d in sorted(docs.items())]

    def stats(self) -> dict[str, Any]:
        kinds: dict[str, int] = {}
        files: set[tuple[str, str]] = set()
        for m in self._iter_metadatas():
            kind = str(m.get("kind", ""))
            kinds[kind] = kinds.get(kind, 0) + 1
            if kind in ("pdf", "image") and m.get("source"):
                files.add((str(m.get("source")), str(m.get("sha256"))))
        return {
            "collection": self.collection_name,
            "path": str(self.path) if self.path is not None else "",
            "image_dir": str(self.image_dir) if self.image_dir is not None else "",
            "model_id": self.model_id,
            "dim": self.dim,
            "max_pixels": self.max_pixels,
            "settings": self.settings_key,
            "records": sum(kinds.values()),
            "documents": len(files),
            "by_kind": kinds,
        }

    def __repr__(self) -> str:
        where = str(self.path) if self.path is not None else "server"
        return f"ChromaStore(collection={self.collection_name!r}, at={where!r}, model_id={self.model_id!r})"


def _check_reserved(meta: Mapping[str, Any]) -> None:
    bad = sorted(set(meta) & RESERVED_KEYS)
    if bad:
        raise ValueError(f"metadata keys {bad} are reserved by the store; rename them")


def _write_png(image: Image.Image | bytes, path: Path) -> None:
    """Write atomically (temp file + rename) so a kill never leaves a truncated image; ``bytes`` are
    PNG data already encoded (by a render task of the distributed pipeline, with ``png_bytes``)."""
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    if isinstance(image, bytes):
        tmp.write_bytes(image)
    else:
        image.save(tmp, format="PNG", compress_level=1)
    os.replace(tmp, path)


def png_bytes(image: Image.Image) -> bytes:
    """A page image as the PNG bytes ``_write_png`` would write (lossless: decoding gives the same pixels)."""
    buf = io.BytesIO()
    image.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()
