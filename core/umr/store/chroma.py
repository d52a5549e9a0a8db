"""``ChromaStore``: the facade of the page store (index PDFs, images and texts with an embedder; search).

Embedded ``chromadb.PersistentClient`` by default (one writer process at a time); pass ``host``
to talk to a Chroma server (``chroma run --path DB``), which is what several writer processes
need.  Page ids are content-derived (file sha256, page number, embedder fingerprint, render
settings), so indexing is idempotent and resumable: kill it at any point, run it again, and each
page of each good file ends up stored exactly once.

The work is done by one piece per concern, each usable alone:
:class:`~umr.store.collection.ChromaCollection` (Chroma access), :class:`~umr.store.images.PageImages`
(PNG files), :class:`~umr.store.lock.WriterLock` (one writer per folder) and
:class:`~umr.store.indexer.Indexer` (ingestion, shared with the Ray pipeline).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.util
import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
from PIL import Image

from umr.documents import (
    DEFAULT_MEMORY_LIMIT,
    DEFAULT_RENDER,
    DEFAULT_TIMEOUT,
    MAX_IMAGE_PIXELS,
    Page,
    RenderPool,
    downscale,
    load_image,
    safe_display,
    source_key,
    validate_render,
)
from umr.documents.paths import PathLike
from umr.protocols import check_embedder

from .collection import ChromaCollection, Scalar, chroma_client, collection_metadata, scalar_metadata
from .hybrid import SearchOptions
from .hybrid import search as hybrid_search
from .images import PageImages, png_bytes, write_png
from .indexer import Indexer, ProgressCallback, embed_input, settings_key
from .lock import WriterLock
from .records import DocumentInfo, IndexReport, Removal, SearchHit
from .repair import CheckReport, RebuildReport, check_vectors, rebuild_vectors
from .sources import is_alias_key, source_paths

if TYPE_CHECKING:
    from .lexical import LexicalMirror

logger = logging.getLogger(__name__)

#: Metadata keys the store writes itself on every record; user metadata cannot override these (nor
#: any key starting with ``source@``, where further paths of identical files are recorded).
RESERVED_KEYS = frozenset(
    {"sha256", "page", "page_count", "settings", "model_id", "kind", "image_uri", "image_path", "indexed_at"}
)
#: ... and on the pages of files (``add_files``), where ``source`` and the page's facts are the store's too.
FILE_PAGE_KEYS = RESERVED_KEYS | {
    "source", "filename", "width", "height", "title", "author", "max_pixels",
}
#: ... and on single images (``add_images``).
IMAGE_KEYS = RESERVED_KEYS | {"width", "height", "max_pixels"}

# Former private names, kept for callers that imported them from here.
_scalar_metadata = scalar_metadata
_write_png = write_png

F = TypeVar("F", bound=Callable[..., Any])


def _exclusive(method: F) -> F:
    """Hold the embedded database's writer lock (:class:`WriterLock`) while ``method`` runs."""

    @functools.wraps(method)
    def wrapper(self: ChromaStore, *args: Any, **kwargs: Any) -> Any:
        with self.lock.hold(), self._lexical_session():
            result = method(self, *args, **kwargs)
            self._sync_first_stage()
            return result

    return wrapper  # type: ignore[return-value]


def _exclusive_chroma(method: F) -> F:
    """Hold the writer lock only (no lexical write session: the method manages the lexical index)."""

    @functools.wraps(method)
    def wrapper(self: ChromaStore, *args: Any, **kwargs: Any) -> Any:
        with self.lock.hold():
            result = method(self, *args, **kwargs)
            self._sync_first_stage()
            return result

    return wrapper  # type: ignore[return-value]


class ChromaStore:
    """A Chroma collection of embedded pages, images and texts.

    ``embedder`` is a :class:`umr.Embedder` (or anything with ``embed_documents``,
    ``embed_queries``, ``model_id``, ``dim`` and ``max_pixels`` / ``recipe.max_pixels``; a
    ``fingerprint`` when it has one).

    ``path``: folder of the embedded database (``PersistentClient``); ignored for the database
    when ``host`` (a Chroma server at ``host:port``) or ``client`` (a ready ``chromadb`` client) is
    given.  Page images are saved as PNG files in ``image_dir`` (default ``<path>/images``; with a
    server only when ``image_dir`` is given; none with ``store_images=False``), named by page id in
    two-character shards, and their ``file://`` URI is kept in the metadata (``image_uri``) — never
    image bytes in Chroma.

    ``max_pixels``: render budget for pages (default: the embedder's).  ``render``: how PDF and SVG
    pages are drawn, ``"planned"`` (straight at the size the embedder resizes them to, so that its
    resizes are no-ops: ``Embedder.render_plan``) or ``"fit"`` (a uniform zoom that fits the budget; the
    embedder resizes).  A collection records its rendering when it is created (metadata ``umr_render``;
    a new one gets ``"planned"`` when the embedder has a plan, else ``"fit"``; one created before this
    setting existed renders ``"fit"``) and keeps it, so that all its pages come from one rendering:
    ``None`` (default) follows it, another choice than the recorded one is refused.  ``batch_size``: pages
    embedded at a time (memory stays flat).  ``workers``, ``timeout``, ``file_timeout``,
    ``memory_limit``: see :func:`umr.documents.render_files`.  ``max_image_pixels``: images claiming
    more pixels are refused before decoding.  ``embed_text_layer``: embed each page as image +
    extracted text instead of image only (the text is always stored as the Chroma document).

    ``lexical``: keep a lexical (BM25, tantivy) index of the stored texts beside the collection, for
    ``search(mode="lexical" | "hybrid")``; ``None`` (default): when tantivy is installed and the store
    has a folder for it.  ``lexical_dir``: its folder (default ``<path>/lexical/<collection>``; with a
    server or a client only when given).  ``lexical_language``: a stemmer for a new lexical index (see
    :data:`umr.store.lexical.LANGUAGES`; an existing index keeps its settings, rebuild to change them).
    ``request_timeout`` (seconds per request to a Chroma server; default ``$UMR_CHROMA_TIMEOUT`` or 30)
    and ``retries`` (of a request that timed out or was refused; default ``$UMR_CHROMA_RETRIES`` or 2)
    bound how long a dead or frozen server can stall a call; then
    :class:`~umr.store.faults.StoreUnavailableError` names it.  A full disk raises
    :class:`~umr.store.faults.StoreFullError`, a damaged database
    :class:`~umr.store.faults.StoreCorruptError` (see :mod:`umr.store.faults`).

    Parts: ``chroma`` (:class:`ChromaCollection`), ``images`` (:class:`PageImages` or ``None``),
    ``lock`` (:class:`WriterLock`), ``indexer`` (:class:`Indexer`), ``lexical``
    (:class:`~umr.store.lexical.LexicalMirror` or ``None``); ``collection`` is the raw ``chromadb``
    collection.
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
        lexical: bool | None = None,
        lexical_dir: PathLike | None = None,
        lexical_language: str | None = None,
        pool_factor: int | None = None,
        first_stage: str | None = None,
        page_vectors_dir: PathLike | None = None,
        request_timeout: float | None = None,
        retries: int | None = None,
        render: str | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if render is not None:
            render = validate_render(render)
        self.embedder = check_embedder(embedder, "ChromaStore(embedder=...)")
        self.model_id = str(embedder.model_id)
        plan = getattr(embedder, "render_plan", None)
        if render == "planned" and plan is None:
            raise ValueError(
                f"render='planned' draws pages at the size the embedder resizes them to, and {self.model_id!r} "
                "has no render plan (umr does not preprocess its images: own-code or remote engine, or no model "
                "loaded); use render='fit'"
            )
        self.dim = int(embedder.dim)
        #: a multi-vector (late-interaction) embedder: token vectors beside Chroma (umr.late.collection)
        self.multi_vector = bool(getattr(embedder, "multi_vector", False))
        late_options = {"pool_factor": pool_factor, "first_stage": first_stage, "page_vectors_dir": page_vectors_dir}
        if not self.multi_vector and any(v is not None for v in late_options.values()):
            given = ", ".join(k for k, v in late_options.items() if v is not None)
            raise ValueError(f"{given} apply to multi-vector (late-interaction) embedders; {self.model_id!r} is not one")
        if self.multi_vector and embed_text_layer:
            raise ValueError(
                f"{self.model_id!r} embeds a page from its image alone; embed_text_layer=True is not available "
                "for multi-vector models (the page text is still stored as the Chroma document)"
            )
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
        if client is not None:
            self.client = client
        else:
            self.client = chroma_client(self.path, host=host, port=port, timeout=request_timeout, retries=retries)
        if not store_images:
            self.image_dir: Path | None = None
        elif image_dir is not None:
            self.image_dir = Path(os.fsdecode(image_dir))
        elif self.path is not None:
            self.image_dir = self.path / "images"
        else:
            self.image_dir = None
        self.images = PageImages(self.image_dir) if self.image_dir is not None else None
        self.fingerprint = str(getattr(embedder, "fingerprint", "") or f"{self.model_id}|{self.dim}")
        self.collection_name = collection
        self.late: Any = None
        if self.multi_vector:
            from umr.late.collection import first_stage_encoder, first_stage_key

            encoder = first_stage_encoder(first_stage or "fde", self.dim)
            # the Chroma side holds the first-stage encoding; the fingerprint names it and the pooling
            self.fingerprint = f"{self.fingerprint}|{first_stage_key(encoder)}|pool{pool_factor or 1}"
            self.dim = int(encoder.dim)
        meta = collection_metadata(self.model_id, self.dim, self.fingerprint, self.max_pixels)
        meta["umr_render"] = render or (DEFAULT_RENDER if plan is not None else "fit")  # for a new collection
        if self.multi_vector:  # what opening it without the model (umr delete / stats) needs
            meta.update(
                umr_multi_vector=True, umr_token_dim=int(embedder.dim), umr_first_stage=first_stage or "fde",
                umr_pool_factor=int(pool_factor or 1),
                umr_model_fingerprint=str(getattr(embedder, "fingerprint", "") or f"{self.model_id}|{embedder.dim}"),
            )
        self.chroma = ChromaCollection.open(self.client, collection, meta)
        #: how this store draws PDF / SVG pages ("planned" or "fit"), as its collection records
        self.render = self._recorded_render(render)
        #: the embedder's render plan when this store renders "planned" (None: fit rendering)
        self.render_plan = plan if self.render == "planned" else None
        self.settings_key = settings_key(self.fingerprint, self.max_pixels, embed_text_layer, self.render)
        if self.multi_vector:
            self.chroma = self._open_late(encoder, collection, page_vectors_dir, pool_factor or 1)
        self.collection = self.chroma.raw
        self.lock = WriterLock(self.path)
        self.lexical: LexicalMirror | None = self._open_lexical(lexical, lexical_dir, lexical_language)
        lexical_path = self.lexical.path if self.lexical is not None else None
        self.indexer = Indexer(
            self.chroma, self.images, model_id=self.model_id, dim=self.dim, settings=self.settings_key,
            max_pixels=self.max_pixels, embed_text_layer=embed_text_layer,
            own=[p for p in (self.path, self.image_dir, lexical_path) if p is not None],
            lexical=self.lexical, plan=self.render_plan,
        )
        self._pool: RenderPool | None = None

    def _recorded_render(self, asked: str | None) -> str:
        """The rendering the collection records (``"fit"`` when it predates the setting); refuses an
        ``asked`` one that differs."""
        recorded = (self.chroma.raw.metadata or {}).get("umr_render")
        mode = validate_render(recorded) if recorded is not None else "fit"
        if asked is not None and asked != mode:
            why = "as recorded when it was created" if recorded is not None else (
                "it was created before planned rendering existed"
            )
            raise ValueError(
                f"collection {self.collection_name!r} renders PDF pages with {mode!r} rendering ({why}); every "
                f"page of a store comes from one rendering, so render={asked!r} cannot be used here: leave it "
                f"unset (CLI: no --render) to follow the store, or index into a new collection or folder"
            )
        return mode
    def _sync_first_stage(self) -> None:
        """After a write (writer lock held): the multi-vector first-stage index follows the page vectors."""
        if self.late is not None:
            self.late.sync_first_stage()

    def _open_late(self, encoder: Any, collection: str, page_dir: PathLike | None, pool_factor: int) -> Any:
        """Wrap the collection with the page-vector store of a multi-vector embedder and repair the pair."""
        from umr.late.collection import LateCollection
        from umr.late.page_store import PageVectorStore

        if page_dir is None:
            if self.path is None:
                raise ValueError(
                    f"{self.model_id!r} is a multi-vector model: its token vectors live in a local folder beside "
                    "Chroma; with a Chroma server pass page_vectors_dir= (CLI: --page-vectors-dir)"
                )
            page_dir = self.path / "page_vectors" / f"{collection}-{self.settings_key}"
        pages = PageVectorStore.open(Path(os.fsdecode(page_dir)), dim=int(self.embedder.dim), pool_factor=pool_factor)
        late = LateCollection(self.chroma, pages, encoder, device=getattr(self.embedder, "device", None))
        self.late = late
        late.repair()
        return late

    @property
    def max_batch(self) -> int:
        """Records per Chroma write (the client's ``get_max_batch_size()``; settable, e.g. in tests)."""
        return self.chroma.max_batch

    @max_batch.setter
    def max_batch(self, value: int) -> None:
        self.chroma.max_batch = max(1, int(value))

    # ------------------------------------------------------------------ lexical side
    def _open_lexical(
        self, enabled: bool | None, folder: PathLike | None, language: str | None
    ) -> LexicalMirror | None:
        self._lexical_dir: Path | None = None
        if enabled is False:
            return None
        if folder is None:
            if self.path is None:
                if enabled:
                    raise ValueError(
                        "lexical=True with a Chroma server or client needs lexical_dir= (a local folder for "
                        "the lexical index)"
                    )
                return None
            folder = self.path / "lexical" / self.collection_name
        if importlib.util.find_spec("tantivy") is None:
            if enabled:
                raise ImportError("the lexical index needs tantivy: pip install 'umr[lexical]'")
            logger.info("tantivy is not installed: no lexical index (pip install 'umr[lexical]' for hybrid search)")
            return None
        from umr.errors import LexicalIndexError

        from .lexical import LexicalConfig, LexicalIndex, LexicalMirror

        self._lexical_dir = Path(os.fsdecode(folder))
        config = LexicalConfig(language=language) if language is not None else None
        try:
            index = LexicalIndex(self._lexical_dir, config)
        except (OSError, LexicalIndexError) as exc:
            if enabled:
                raise
            # dense search and indexing go on; the lexical side is repaired or rebuilt later
            logger.warning("no lexical index this time: %s", exc)
            return None
        return LexicalMirror(self._chroma_side, index)

    @property
    def _chroma_side(self) -> ChromaCollection:
        """The Chroma collection itself (ids, metadata, texts), also under a multi-vector store's wrapper."""
        return self.late.inner if self.late is not None else self.chroma

    def _lexical_session(self) -> contextlib.AbstractContextManager[Any]:
        """One lexical write session for a whole call on an embedded database (its writers are
        serialised already); with a server each mirrored write is a short session of its own."""
        if self.lexical is None or self.path is None:
            return contextlib.nullcontext()
        return self.lexical.session()

    @_exclusive_chroma
    def rebuild_lexical(self, language: str | None = None) -> int:
        """Build the lexical index again from the texts and metadata stored in Chroma (no re-embedding);
        ``language``: a stemmer for the new index (default: the current settings).  Returns the records
        indexed."""
        from .lexical import LexicalConfig, LexicalIndex, LexicalMirror

        config = LexicalConfig(language=language) if language is not None else None
        if self.lexical is None:
            if self._lexical_dir is None:
                raise ValueError(
                    "this store has no lexical index: install tantivy (pip install 'umr[lexical]') and open it "
                    "with a path, or pass lexical_dir=..."
                )
            # the folder could not be opened (damaged, other version): start it again
            self.lexical = LexicalMirror(self._chroma_side, LexicalIndex.recreate(self._lexical_dir, config))
            self.indexer.lexical = self.lexical
        n = self.lexical.rebuild(config)
        logger.info("lexical index at %s rebuilt: %d records", self.lexical.path, n)
        return n

    # ------------------------------------------------------------------ ids
    def page_id(self, sha256: str, page: int) -> str:
        """Content-derived id of one page: file hash, page number, embedder and render settings."""
        return self.indexer.page_id(sha256, page)

    def stored_pages(self, sha: str) -> tuple[int, set[str]]:
        """``(page_count, ids of its pages already stored)`` for one file version under these settings;
        ``(0, set())`` when none is stored.  A file is complete when both sizes are equal."""
        return self.indexer.stored_pages(sha)

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
        extra = scalar_metadata(metadata, "add_files")  # refused before anything is rendered
        check_reserved(extra, FILE_PAGE_KEYS, "add_files")
        if self.render == "planned" and self.render_plan is None:
            raise ValueError(
                f"collection {self.collection_name!r} draws pages at its embedder's planned size (render "
                f"'planned'), and {self.model_id!r} as given has no render plan (opened without the model?): "
                "pass the umr.Embedder the store was built with"
            )
        return self.indexer.index(
            paths,
            embed=self._embed,
            pool=self._render_pool(),
            batch_size=self.batch_size,
            max_image_pixels=self.max_image_pixels,
            metadata=extra,
            progress=progress,
            read_ahead=self.read_ahead,
        )

    @property
    def read_ahead(self) -> bool:
        """Render the next batch while this one embeds: when the embedder runs on an accelerator."""
        device = getattr(self.embedder, "device", None)
        return device is not None and getattr(device, "type", str(device)) not in ("cpu",)

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

    # ------------------------------------------------------------------ writing
    embed_input = staticmethod(embed_input)

    def _page_input(self, page: Page) -> Any:
        return self.indexer.embed_input(page)

    def page_metadata(self, page: Page, extra: Mapping[str, Scalar], now: float) -> dict[str, Scalar]:
        """The Chroma metadata of one page (``page.image`` is not read)."""
        return self.indexer.page_metadata(page, extra, now)

    def write_embedded(
        self,
        pages: Sequence[Page],
        vectors: np.ndarray,
        extra: Mapping[str, Scalar],
        images: Sequence[Image.Image | bytes],
    ) -> int:
        """Store pages whose vectors are computed already (their images as PIL images or PNG bytes);
        see :meth:`Indexer.write_embedded`.  Returns the pages written."""
        return self.indexer.write_embedded(pages, vectors, extra, images)

    def _embed(self, inputs: list[Any]) -> Any:
        if self.multi_vector:  # one (n_tokens, dim) array per input; LateCollection stores them
            multi = self.embedder.embed_documents(inputs)
            if len(multi) != len(inputs):
                raise ValueError(f"embedder returned {len(multi)} multi-vectors for {len(inputs)} inputs")
            return multi
        vectors = np.asarray(self.embedder.embed_documents(inputs), dtype=np.float32)
        if vectors.shape != (len(inputs), self.dim):
            raise ValueError(f"embedder returned shape {vectors.shape}, expected {(len(inputs), self.dim)}")
        return vectors

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
                    image = load_image(
                        item, self.max_pixels, max_image_pixels=self.max_image_pixels, plan=self.render_plan
                    )
                digest = hashlib.sha256(
                    image.mode.encode() + repr(image.size).encode() + image.tobytes()
                ).hexdigest()
                user = scalar_metadata(metadatas[start + offset], "add_images")
                check_reserved(user, IMAGE_KEYS, "add_images")
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
                ids.append(self.indexer.item_id(digest, "i"))
                metas.append(meta)
                pil.append(image)
            self.indexer.write(ids, self._embed(pil), metas, [""] * len(ids), pil)
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
                user = scalar_metadata(metadatas[start + offset], "add_texts")
                check_reserved(user, RESERVED_KEYS, "add_texts")
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
                ids.append(self.indexer.item_id(digest, "t"))
                metas.append(meta)
                docs.append(clean)
            self.indexer.write(ids, self._embed([{"text": d} for d in docs]), metas, docs)
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
        mode: str = "dense",
        fusion: str = "rrf",
        depth: int | None = None,
        weights: tuple[float, float] = (1.0, 1.0),
    ) -> list[SearchHit]:
        """Top-``k`` hits for a text, image, or fused ``{"text", "image"}`` query.

        ``where`` / ``where_document`` are Chroma filters (e.g. ``{"kind": "pdf"}``), applied to both
        sides in lexical and hybrid modes.  ``instruction`` is the query-side task instruction for the
        embedder.  ``mode``: ``"dense"`` (embeddings, the default), ``"lexical"`` (BM25 over the stored
        text: exact codes, names, numbers; the query is plain text, never query syntax) or ``"hybrid"``
        (both, fused by ``fusion``: ``"rrf"`` reciprocal rank fusion with k=60, or ``"weighted"`` scaled
        scores; ``depth`` candidates from each side, default ``max(k, 10)``; ``weights`` = (dense,
        lexical)).  ``SearchHit.score`` is the mode's ranking score; ``dense_score`` / ``lexical_score``
        each side's own.
        """
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be >= 1, got {k!r}")
        options = SearchOptions(mode=mode, fusion=fusion, depth=depth, weights=weights)
        if self.multi_vector:  # first stage in Chroma, exact MaxSim over the stored token vectors
            if instruction is not None:
                raise ValueError(f"{self.model_id!r} takes no query instruction")

            def dense_hits(n: int) -> list[tuple[str, float, dict[str, Any], str]]:
                tokens = self.embedder.embed_queries([query])[0]
                return list(self.late.search(tokens, n, where, where_document))
        else:

            def dense_hits(n: int) -> list[tuple[str, float, dict[str, Any], str]]:
                if instruction is None:
                    vec = self.embedder.embed_queries([query])
                else:
                    vec = self.embedder.embed_queries([query], instruction=instruction)
                vec = np.asarray(vec, dtype=np.float32).reshape(1, self.dim)
                return list(self.chroma.query(vec, n, where, where_document))

        if options.mode == "dense":
            return [
                SearchHit(id=hid, score=score, metadata=meta, document=doc, image_uri=str(meta.get("image_uri", "")),
                          dense_score=score)
                for hid, score, meta, doc in dense_hits(k)
            ]
        lexical = None
        if self.lexical is not None:
            self.lexical.check_for_search()
            lexical = self.lexical.lexical
        return hybrid_search(
            self._chroma_side, lexical, query, k,
            dense_ranked=lambda n: [(hid, score) for hid, score, _, _ in dense_hits(n)],
            where=where, where_document=where_document, options=options,
        )

    # ------------------------------------------------------------------ management
    @_exclusive
    def remove_document(self, source_or_sha: PathLike) -> Removal:
        """Remove a document, named by its path or its sha256, and the page images no one else uses.

        The path is matched as given, then as an absolute path (``add_files`` stores absolute paths, so
        a path relative to the working directory works).  Pages that a byte-identical file at another
        path still lists are kept for it (``Removal.kept``); the others are deleted with their images.
        A sha256 removes that file version under every path."""
        text = os.fsdecode(os.fspath(source_or_sha))
        candidates = [text]
        if text and source_key(os.path.abspath(text)) != source_key(text):
            candidates.append(os.path.abspath(text))
        for path in candidates:  # release() takes paths: it computes their stored keys
            deleted, kept = self.indexer.release(path)
            if deleted or kept:
                return Removal(source_key(path), deleted, kept)
        if len(text) == 64 and all(c in "0123456789abcdef" for c in text.lower()):
            removed = self.indexer.delete_where({"sha256": text.lower()})
            if removed:
                return Removal("", removed, 0)
        return Removal(source_key(candidates[-1]), 0, 0)

    def delete_document(self, source_or_sha: PathLike) -> int:
        """Remove a document (see :meth:`remove_document`).  Returns the number of records no longer
        listed under it (deleted, or kept for a byte-identical file at another path)."""
        return self.remove_document(source_or_sha).records

    def count(self) -> int:
        """Records in the collection (pages, images and texts)."""
        return self.chroma.count()

    def documents(self) -> list[DocumentInfo]:
        """Stored documents: one per path and file version, sorted by path.  Byte-identical files at
        several paths share their pages and are listed once per path."""
        docs: dict[tuple[str, str], dict[str, Any]] = {}
        for m in self.chroma.iter_metadatas():
            kind = str(m.get("kind", ""))
            if kind not in ("pdf", "image"):
                continue
            for source in source_paths(m):
                d = docs.setdefault(
                    (source, str(m.get("sha256", ""))),
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
        """Collection, location, model and counts (records, documents (path and version), records by
        kind)."""
        kinds: dict[str, int] = {}
        files: set[tuple[str, str]] = set()
        for m in self.chroma.iter_metadatas():
            kind = str(m.get("kind", ""))
            kinds[kind] = kinds.get(kind, 0) + 1
            if kind in ("pdf", "image"):
                files.update((source, str(m.get("sha256"))) for source in source_paths(m))
        return {
            "collection": self.collection_name,
            "path": str(self.path) if self.path is not None else "",
            "image_dir": str(self.image_dir) if self.image_dir is not None else "",
            "model_id": self.model_id,
            "dim": self.dim,
            "max_pixels": self.max_pixels,
            "render": self.render,
            "settings": self.settings_key,
            "records": sum(kinds.values()),
            "documents": len(files),
            "by_kind": kinds,
            "lexical": None
            if self.lexical is None
            else {
                "path": str(self.lexical.path),
                "records": self.lexical.lexical.count(),
                "language": self.lexical.lexical.config.language,
                "needs_repair": self.lexical.lexical.needs_repair,
            },
            **(self.late.stats() if self.late is not None else {}),
        }

    # ------------------------------------------------------------------ health
    def check(self, sample: int = 64) -> CheckReport:
        """Compare what the store claims with what it returns: read back the vectors of ``sample``
        stored records (spread over the collection) and search with each; a healthy vector index finds
        every record itself.  No model is needed.  See :mod:`umr.store.repair`."""
        if self.path is not None:
            command = f"umr index --rebuild --db {safe_display(self.path)}"
        elif self.chroma.guard.is_server:
            command = f"umr index --rebuild --host {self.chroma.guard.host} --port {self.chroma.guard.port}"
        else:
            command = "umr index --rebuild"
        if self.collection_name != "umr":
            command += f" --collection {self.collection_name}"
        return check_vectors(
            self.chroma, sample=sample, images=self.images, where=self._where(), rebuild_command=command,
            folder=self.path,
        )

    @_exclusive
    def rebuild(self, progress: Callable[[RebuildReport], None] | None = None) -> RebuildReport:
        """Re-create every vector from the stored pages (page PNGs in the image folder and the stored
        page text; a text record from its text), without rendering any file again: ids, metadata and
        documents stay.  Fills a fresh collection and swaps it in when complete (a killed rebuild
        leaves the original; run it again).  Records whose page image is gone are dropped and listed
        in the report (``umr index`` renders their files again).  Needs the embedder of the store."""
        if not getattr(self.embedder, "has_weights", True):  # info.RecordedModel
            raise RuntimeError(f"rebuilding the vectors needs the embedder {self.model_id!r}; pass it to ChromaStore")
        if self.multi_vector:
            raise NotImplementedError(
                f"rebuild of a multi-vector store ({self.model_id!r}) is not available: its token vectors live "
                "beside Chroma. Re-index the documents into a new folder (umr index DOCS --db NEW_DIR)"
            )
        self.chroma, report = rebuild_vectors(
            self.client, self.chroma, embed=self._embed, images=self.images,
            embed_text_layer=self.embed_text_layer, batch_size=self.batch_size, progress=progress,
        )
        self.collection = self.chroma.raw
        self.indexer.collection = self.chroma
        logger.info("%s", report.summary())
        return report

    def _where(self) -> str:
        if self.path is not None:
            return safe_display(self.path)
        g = self.chroma.guard
        return f"{g.host}:{g.port}" if g.is_server else self.collection_name

    def __repr__(self) -> str:
        where = str(self.path) if self.path is not None else "server"
        return f"ChromaStore(collection={self.collection_name!r}, at={where!r}, model_id={self.model_id!r})"


def check_reserved(meta: Mapping[str, Any], reserved: frozenset[str], where: str) -> None:
    """Refuse user metadata keys the store writes itself (they would be overwritten silently)."""
    bad = sorted(k for k in meta if k in reserved or is_alias_key(k))
    if bad:
        raise ValueError(
            f"{where}: metadata keys {bad} are reserved by the store (it writes them itself); rename them "
            f"(reserved: {', '.join(sorted(reserved))}, and any key starting with 'source@')"
        )


__all__ = ["FILE_PAGE_KEYS", "IMAGE_KEYS", "RESERVED_KEYS", "ChromaStore", "check_reserved", "png_bytes"]
