"""Bulk indexing on Ray Data: render on CPUs, embed on an actor pool (one model per actor), write to Chroma.

    pip install "umr[ray]"
    chroma run --path /data/umr_db --port 8000 &
    umr index /archive --ray --host 127.0.0.1 --port 8000 --actors 4

The pipeline (a Ray Data streaming job, so rendered pages never pile up in memory):

1. **list** the files on the driver (folders walked, the store's own files left out);
2. **render** them in CPU tasks with the same worker-isolated renderer as the local path
   (:class:`umr.documents.RenderPool`: per-file time limit, memory limit, crash isolation).  Each task
   first asks Chroma whether the file version is stored already (the local path's
   :class:`umr.store.indexer.Indexer` decides, as for :meth:`ChromaStore.add_files`); a bad file becomes
   an error row, never an exception.  Pages travel
   as PNG bytes (lossless) in blocks of ``pages_per_block`` rows;
3. **embed** in an actor pool (``map_batches`` with a callable class): each actor loads one model
   (``num_gpus=1`` per actor on a GPU cluster) and embeds its batch with ``Embedder.embed_documents``,
   which plans forward passes by the same token budget as the local path;
4. **write** to the Chroma server in upserts of at most ``client.get_max_batch_size()`` rows, with the
   content-derived ids of the local path, so a retried task writes the same ids again: never duplicates;
5. on the driver, per file: remove pages of older versions (done), or pages of a file that failed.

The result is the :class:`umr.store.IndexReport` of the local path.  Vectors equal the local path's (the
same renderer, pixels and embedder; PNG is lossless).
"""

from __future__ import annotations

import io
import logging
import math
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np

from umr.documents import (
    DEFAULT_MEMORY_LIMIT,
    DEFAULT_TIMEOUT,
    MAX_IMAGE_PIXELS,
    FileDone,
    FileError,
    Page,
    RenderPool,
    safe_display,
)
from umr.documents.paths import PathLike
from umr.inputs import open_image
from umr.store.chroma import FILE_PAGE_KEYS, ChromaStore, check_reserved
from umr.store.collection import scalar_metadata
from umr.store.images import png_bytes
from umr.store.indexer import embed_input
from umr.store.info import RecordedModel
from umr.store.records import IndexReport

logger = logging.getLogger(__name__)

_CORE_DIR = str(Path(__file__).resolve().parents[1])
_PAGE, _FILE, _WRITTEN = "page", "file", "written"


def require_ray() -> Any:
    """Import ``ray`` (and ``ray.data``) or raise an ``ImportError`` that says what to install."""
    try:
        import ray
        import ray.data
    except ImportError as exc:
        raise ImportError(
            'bulk indexing on Ray needs Ray Data: pip install "umr[ray]" (or pip install "ray[data]>=2.40")'
        ) from exc
    return ray


# --------------------------------------------------------------------------------------------------
# what each actor loads
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class EmbedderSpec:
    """How an actor builds its embedder: a model id and options, never a loaded model (it is pickled).

    ``model``: hub id or local folder (``umr.Embedder.from_pretrained``), or the served model name when
    ``server`` is the base URL of an OpenAI-compatible embeddings server (``umr.remote.RemoteEmbedder``).
    ``options``: keyword arguments of that constructor (device, dtype, recipe, dim, max_pixels, ...).
    """

    model: str
    options: Mapping[str, Any] = field(default_factory=dict)
    server: str | None = None

    @property
    def remote(self) -> bool:
        return self.server is not None

    def load(self) -> Any:
        """The embedder (called once per actor)."""
        if self.server is not None:
            from umr.remote import RemoteEmbedder

            return RemoteEmbedder(self.server, self.model, **dict(self.options))
        from umr.embedder import Embedder

        return Embedder.from_pretrained(self.model, **dict(self.options))

    def render_plan(self) -> Any:
        """The page sizes the model plans (planned-size rendering), from its processor files, no weights;
        None for a server or a model umr does not preprocess for."""
        if self.server is not None:
            return None
        from umr.embedder import Embedder

        return Embedder.render_plan_for(self.model, **dict(self.options))

    def identity(self) -> dict[str, Any]:
        """``model_id``, ``dim``, ``fingerprint``, ``max_pixels`` of what :meth:`load` gives, without
        loading weights (a local model's config is read; a server is asked)."""
        if self.server is not None:
            emb = self.load()
            return {"model_id": emb.model_id, "dim": emb.dim, "fingerprint": emb.fingerprint,
                    "max_pixels": emb.max_pixels}
        from umr.embedder import Embedder

        return Embedder.identity(self.model, **dict(self.options))


def identity_of(embedder: Any) -> dict[str, Any]:
    """The identity of a loaded embedder (anything ``ChromaStore`` accepts)."""
    max_pixels = getattr(embedder, "max_pixels", None) or embedder.recipe.max_pixels
    return {
        "model_id": str(embedder.model_id),
        "dim": int(embedder.dim),
        "fingerprint": str(getattr(embedder, "fingerprint", "") or f"{embedder.model_id}|{embedder.dim}"),
        "max_pixels": int(max_pixels),
    }


# --------------------------------------------------------------------------------------------------
# job configuration shipped to tasks and actors
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Job:
    host: str
    port: int
    collection: str
    identity: Mapping[str, Any]
    max_pixels: int
    image_dir: str | None
    store_images: bool
    embed_text_layer: bool
    timeout: float
    file_timeout: float | None
    memory_limit: int | None
    max_image_pixels: int
    pages_per_block: int
    metadata: Mapping[str, Any]
    plan: Any = None  # the model's render plan (planned-size rendering), or None
    render: str | None = None  # the rendering asked for (None: the collection's, or the default)

    def open_store(self, *, images: bool) -> ChromaStore:
        info = {
            "umr_model_id": self.identity["model_id"],
            "umr_dim": self.identity["dim"],
            "umr_fingerprint": self.identity["fingerprint"],
            "umr_max_pixels": self.identity["max_pixels"],
        }
        model = RecordedModel(info)
        model.render_plan = self.plan  # a new collection renders planned when the model has a plan
        return ChromaStore(
            model,
            host=self.host,
            port=self.port,
            collection=self.collection,
            image_dir=self.image_dir if images else None,
            store_images=images and self.store_images,
            max_pixels=self.max_pixels,
            embed_text_layer=self.embed_text_layer,
            render=self.render,
        )


# Per worker process: a render pool and a store client, reused by every task that process runs
# (Ray keeps task workers alive), so renderer interpreters start once, not once per task.
_CACHE: dict[tuple[str, str], Any] = {}


def _cached(kind: str, job: _Job, make: Callable[[], Any]) -> Any:
    key = (kind, repr(job))
    if key not in _CACHE:
        _CACHE[key] = make()
    return _CACHE[key]


def _clean(text: str) -> str:
    """Arrow strings are UTF-8: replace lone surrogates (rare in PDF text layers)."""
    return text.encode("utf-8", "replace").decode("utf-8")


class _Rows:
    """Column buffers of one output block of the render stage."""

    COLUMNS = (
        "kind", "source", "sha256", "page", "page_count", "width", "height", "doc_kind", "title", "author",
        "text", "png", "status", "pages", "pages_skipped", "error_kind", "reason",
    )

    def __init__(self) -> None:
        self.cols: dict[str, list[Any]] = {c: [] for c in self.COLUMNS}

    def __len__(self) -> int:
        return len(self.cols["kind"])

    def _add(self, **values: Any) -> None:
        for c in self.COLUMNS:
            self.cols[c].append(values.get(c, _DEFAULTS[c]))

    def page(self, p: Page) -> None:
        self._add(
            kind=_PAGE, source=os.fsencode(p.source), sha256=p.sha256, page=p.page, page_count=p.page_count,
            width=p.width, height=p.height, doc_kind=p.kind, title=_clean(p.title), author=_clean(p.author),
            text=_clean(p.text), png=png_bytes(p.image),
        )

    def file(self, source: str, sha: str, status: str, *, pages: int = 0, skipped: int = 0,
             error_kind: str = "", reason: str = "") -> None:
        self._add(kind=_FILE, source=os.fsencode(source), sha256=sha, status=status, pages=pages,
                  pages_skipped=skipped, error_kind=error_kind, reason=_clean(reason))

    def flush(self) -> dict[str, np.ndarray]:
        out = {c: _array(c, v) for c, v in self.cols.items()}
        self.cols = {c: [] for c in self.COLUMNS}
        return out


_INT_COLUMNS = {"page", "page_count", "width", "height", "pages", "pages_skipped"}
_DEFAULTS: dict[str, Any] = {c: (0 if c in _INT_COLUMNS else "") for c in _Rows.COLUMNS}
_DEFAULTS["png"] = b""


def _array(column: str, values: list[Any]) -> np.ndarray:
    if column in _INT_COLUMNS:
        return np.asarray(values, dtype=np.int64)
    return np.asarray(values, dtype=object)


def _render_batch(batch: Mapping[str, np.ndarray], job: _Job) -> Iterator[dict[str, np.ndarray]]:
    """Render one batch of files; yield blocks of page rows and one row per file (done/skipped/error)."""
    store = _cached("store", job, lambda: job.open_store(images=False))
    pool: RenderPool = _cached(
        "render", job,
        lambda: RenderPool(1, timeout=job.timeout, file_timeout=job.file_timeout, memory_limit=job.memory_limit),
    )
    rows = _Rows()
    resume = store.indexer.resume()  # the local path's rules: complete files not rendered, stored pages not embedded
    sources = [os.fsdecode(bytes(p)) for p in batch["path"]]
    records = pool.render(sources, max_pixels=job.max_pixels, max_image_pixels=job.max_image_pixels,
                          skip=resume.skip_file, plan=store.render_plan)  # as the collection records
    try:
        for record in records:
            if isinstance(record, Page):
                if resume.skip_page(record):
                    continue
                rows.page(record)
                if len(rows) >= job.pages_per_block:
                    yield rows.flush()
            elif isinstance(record, FileDone):
                skipped = resume.skipped(record.source, record.sha256)
                if record.skipped:
                    rows.file(record.source, record.sha256, "skipped", skipped=skipped)
                else:
                    rows.file(record.source, record.sha256, "done", pages=record.pages, skipped=skipped)
            else:
                rows.file(record.source, record.sha256, "error", error_kind=record.kind, reason=record.reason,
                          skipped=resume.skipped(record.source, record.sha256))
    finally:
        close = getattr(records, "close", None)
        if close is not None:
            close()
    if len(rows):
        yield rows.flush()


# --------------------------------------------------------------------------------------------------
# actors
# --------------------------------------------------------------------------------------------------
def _decode_png(data: bytes) -> Any:

    img = open_image(io.BytesIO(bytes(data)))
    img.load()
    return img


class _EmbedActor:
    """One model per actor; embeds the page rows of each batch, passes the other rows through."""

    def __init__(self, spec: Any, job: _Job) -> None:
        _prepare_worker()
        self.embedder = spec.load()
        self.job = job
        got = identity_of(self.embedder)
        want = dict(job.identity)
        if (got["fingerprint"], got["dim"]) != (want["fingerprint"], want["dim"]):
            raise RuntimeError(
                f"the embedder loaded by this actor ({got}) is not the one the job was planned with ({want}); "
                "every node must see the same model files"
            )
        self.dim = int(got["dim"])

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = len(batch["kind"])
        vectors = np.zeros((n, self.dim), dtype=np.float32)
        idx = [i for i in range(n) if batch["kind"][i] == _PAGE]
        if idx:
            inputs = [
                embed_input(_decode_png(batch["png"][i]), str(batch["text"][i]), self.job.embed_text_layer)
                for i in idx
            ]
            vectors[idx] = np.asarray(self.embedder.embed_documents(inputs), dtype=np.float32)
        out = dict(batch)
        out["vector"] = vectors
        return out


class _WriteActor:
    """Upserts embedded pages (and their PNGs when the job keeps page images); emits one small row per
    page written and passes file rows through."""

    def __init__(self, job: _Job) -> None:
        _prepare_worker()
        self.job = job
        self.store = job.open_store(images=True)
        self.extra = scalar_metadata(job.metadata, "index_files")

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = len(batch["kind"])
        idx = [i for i in range(n) if batch["kind"][i] == _PAGE]
        if idx:
            pages = [
                Page(
                    source=os.fsdecode(bytes(batch["source"][i])), sha256=str(batch["sha256"][i]),
                    page=int(batch["page"][i]), page_count=int(batch["page_count"][i]),
                    width=int(batch["width"][i]), height=int(batch["height"][i]),
                    image=cast(Any, None), text=str(batch["text"][i]), title=str(batch["title"][i]),
                    author=str(batch["author"][i]), kind=cast(Any, str(batch["doc_kind"][i])),
                )
                for i in idx
            ]
            images = [bytes(batch["png"][i]) for i in idx]
            self.store.indexer.write_embedded(pages, batch["vector"][idx], self.extra, images)
        keep = ("source", "sha256", "page", "status", "pages", "pages_skipped", "error_kind", "reason")
        out = {k: batch[k] for k in keep}
        out["kind"] = np.asarray([_WRITTEN if batch["kind"][i] == _PAGE else _FILE for i in range(n)],
                                 dtype=object)
        return out


def _prepare_worker() -> None:
    """Workers of a local cluster import this checkout's umr like the driver (also for render workers)."""
    if _CORE_DIR not in sys.path:
        sys.path.insert(0, _CORE_DIR)


# --------------------------------------------------------------------------------------------------
# the driver
# --------------------------------------------------------------------------------------------------
def _runtime_env() -> dict[str, Any]:
    """Environment for workers of a cluster started here: the driver's import path for umr (and for
    the caller's modules: a checkout run without installing works the same)."""
    prefixes = tuple({sys.prefix, sys.base_prefix, sys.exec_prefix})
    parts = [_CORE_DIR, *[
        p for p in sys.path
        if p and os.path.isdir(p) and "site-packages" not in p and not p.startswith(prefixes)
    ]]
    existing = os.environ.get("PYTHONPATH", "")
    if existing:
        parts.append(existing)
    seen: list[str] = []
    for p in parts:
        if p not in seen:
            seen.append(p)
    env = {"PYTHONPATH": os.pathsep.join(seen)}
    for key in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HOME", "ANONYMIZED_TELEMETRY"):
        if key in os.environ:
            env[key] = os.environ[key]
    return {"env_vars": env}


def ensure_ray(address: str | None = None, **init_kwargs: Any) -> Any:
    """Connect to ``address`` (``"auto"``: a cluster started with ``ray start``), or start a local Ray
    with this process's import path; does nothing when Ray is initialised already."""
    ray = require_ray()
    if not ray.is_initialized():
        if address is None:
            address = os.environ.get("RAY_ADDRESS") or None
        kwargs: dict[str, Any] = {"log_to_driver": False, "include_dashboard": False}
        if address is None:
            kwargs["runtime_env"] = _runtime_env()
        kwargs.update(init_kwargs)
        ray.init(address=address, **kwargs)
    return ray


@dataclass(frozen=True)
class Resources:
    """Ray resources of each stage (computed from the cluster by :func:`plan_resources`)."""

    actors: int
    gpus_per_actor: float
    cpus_per_actor: float
    render_cpus: float
    writer_cpus: float
    writers: int


def plan_resources(
    cluster: Mapping[str, float], *, remote: bool, actors: int | None, gpus_per_actor: float | None = None,
    cpus_per_actor: float | None = None,
) -> Resources:
    """One actor per GPU (each ``num_gpus=1``) on a GPU cluster; on CPUs, actors share the cores with
    the render tasks (fractional CPUs so that a 2-core machine runs 2 actors and still renders)."""
    cpus = float(cluster.get("CPU", 1.0))
    gpus = float(cluster.get("GPU", 0.0))
    if gpus_per_actor is None:
        gpus_per_actor = 1.0 if gpus >= 1 and not remote else 0.0
    if actors is None:
        actors = int(gpus // gpus_per_actor) if gpus_per_actor else (4 if remote else 1)
    if actors < 1:
        raise ValueError(f"actors must be >= 1, got {actors}")
    if gpus_per_actor and gpus_per_actor * actors > gpus + 1e-9:
        raise ValueError(
            f"{actors} actors x {gpus_per_actor:g} GPU need {actors * gpus_per_actor:g} GPUs; the cluster has "
            f"{gpus:g}: lower --actors"
        )
    writer_cpus = 0.25
    if cpus_per_actor is None:
        if gpus_per_actor:
            cpus_per_actor = 1.0 if cpus >= actors + 2 else 0.5
        elif remote:
            cpus_per_actor = 0.1
        else:
            # leave at least one CPU to rendering and writing
            cpus_per_actor = max(0.1, min(1.0, (cpus - 1.0 - writer_cpus) / actors))
    render_cpus = 1.0 if cpus >= 8 else 0.5
    return Resources(actors, float(gpus_per_actor), float(cpus_per_actor), render_cpus, writer_cpus, 1)


def index_files(
    paths: PathLike | Iterable[PathLike],
    *,
    embedder: EmbedderSpec | str,
    host: str,
    port: int = 8000,
    collection: str = "umr",
    image_dir: PathLike | None = None,
    store_images: bool = True,
    max_pixels: int | None = None,
    embed_text_layer: bool = False,
    metadata: Mapping[str, Any] | None = None,
    actors: int | None = None,
    gpus_per_actor: float | None = None,
    cpus_per_actor: float | None = None,
    batch_size: int = 16,
    files_per_task: int = 4,
    pages_per_block: int = 16,
    timeout: float = DEFAULT_TIMEOUT,
    file_timeout: float | None = None,
    memory_limit: int | None = DEFAULT_MEMORY_LIMIT,
    max_image_pixels: int = MAX_IMAGE_PIXELS,
    max_restarts: int = 3,
    ray_address: str | None = None,
    exclude: Sequence[PathLike] = (),
    show_progress: bool = False,
    progress: Callable[[IndexReport], None] | None = None,
    render: str | None = None,
) -> IndexReport:
    """Index PDFs and images into the Chroma server at ``host:port`` with a Ray Data pipeline.

    Same result as ``ChromaStore(embedder, host=host, port=port).add_files(paths)`` (ids, vectors,
    metadata, skipping of unchanged files, the report), computed by ``actors`` model replicas. Pages are
    drawn as the collection records (a new one: at the model's planned size, read by the driver from the
    model's processor files, when it has a plan); ``render``: as ``ChromaStore(render=...)``.
    ``embedder`` is an :class:`EmbedderSpec` or a model id / folder.  ``batch_size``: pages per actor
    call (each call plans its forward passes by the embedder's token budget).  ``files_per_task``:
    files rendered by one CPU task; ``pages_per_block``: pages per streamed block (small blocks keep
    memory flat).  ``max_restarts``: restarts of a dead actor (its batch is retried; ids are
    content-derived, so a retry never duplicates).  ``exclude``: folders never indexed (the database).
    Connects to ``ray_address`` (``"auto"`` for a cluster started with ``ray start``), or starts a
    local Ray.
    """
    spec = embedder if isinstance(embedder, EmbedderSpec) else EmbedderSpec(os.fspath(embedder))
    if batch_size < 1 or files_per_task < 1 or pages_per_block < 1:
        raise ValueError("batch_size, files_per_task and pages_per_block must be >= 1")
    extra = scalar_metadata(metadata, "index_files")
    check_reserved(extra, FILE_PAGE_KEYS, "index_files")
    identity = spec.identity()
    if identity.get("multi_vector"):
        raise ValueError(
            f"{identity['model_id']!r} is a multi-vector (late-interaction) model; the Ray pipeline writes one "
            "vector per page and does not keep token vectors yet: index it without --ray (umr index DOCS "
            f"--model {identity['model_id']})"
        )
    ray = ensure_ray(ray_address)
    start = time.monotonic()
    report = IndexReport()
    job = _Job(
        host=host, port=int(port), collection=collection, identity=identity,
        max_pixels=int(max_pixels if max_pixels is not None else identity["max_pixels"]),
        image_dir=os.fsdecode(image_dir) if image_dir is not None else None, store_images=store_images,
        embed_text_layer=embed_text_layer, timeout=timeout, file_timeout=file_timeout,
        memory_limit=memory_limit, max_image_pixels=max_image_pixels, pages_per_block=pages_per_block,
        metadata=dict(extra), plan=spec.render_plan(), render=render,
    )
    store = job.open_store(images=True)  # creates the collection (or checks it holds this model)

    files: list[str] = []
    for item in store.indexer.sources(paths, exclude=exclude, on_skip=report.not_indexed.append):
        if isinstance(item, FileError):
            report.failed.append(item)
        else:
            files.append(item)
    order = {f: i for i, f in enumerate(files)}
    if not files:
        report.seconds = time.monotonic() - start
        return report

    res = plan_resources(ray.cluster_resources(), remote=spec.remote, actors=actors,
                         gpus_per_actor=gpus_per_actor, cpus_per_actor=cpus_per_actor)
    logger.info("ray pipeline: %d file(s), %s", len(files), res)
    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = False
    ctx.enable_progress_bars = show_progress
    ctx.print_on_execution_start = show_progress
    retry = {"max_restarts": max_restarts, "max_task_retries": max_restarts}
    # On a local cluster (even one the caller started) workers import umr from where the driver does.
    env = {"runtime_env": _runtime_env()} if ray_address in (None, "local") else {}

    blocks = max(1, math.ceil(len(files) / files_per_task))
    ds = ray.data.from_items([{"path": os.fsencode(f)} for f in files], override_num_blocks=blocks)
    ds = ds.map_batches(
        _render_batch, fn_kwargs={"job": job}, batch_size=files_per_task, batch_format="numpy",
        num_cpus=res.render_cpus, **env,
    )
    with warnings.catch_warnings():
        # Ray >= 2.60 would rather take restarts elsewhere; the keyword works on every supported version
        warnings.filterwarnings("ignore", message=".*ray_remote_args.*")
        ds = ds.map_batches(
            _EmbedActor, fn_constructor_kwargs={"spec": spec, "job": job}, batch_size=batch_size,
            batch_format="numpy", compute=ray.data.ActorPoolStrategy(size=res.actors),
            num_gpus=res.gpus_per_actor or None, num_cpus=res.cpus_per_actor, **retry, **env,
        )
        ds = ds.map_batches(
            _WriteActor, fn_constructor_kwargs={"job": job}, batch_size=None, batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=res.writers), num_cpus=res.writer_cpus, **retry, **env,
        )

    outcome: dict[tuple[bytes, str], dict[str, Any]] = {}
    written: dict[tuple[bytes, str], set[int]] = {}
    for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
        for i in range(len(batch["kind"])):
            key = (bytes(batch["source"][i]), str(batch["sha256"][i]))
            if batch["kind"][i] == _WRITTEN:
                written.setdefault(key, set()).add(int(batch["page"][i]))
                continue
            row = {c: batch[c][i] for c in ("status", "pages", "pages_skipped", "error_kind", "reason")}
            # a retried render task reports a file twice: a finished attempt wins over a failed one
            if key not in outcome or outcome[key]["status"] == "error":
                outcome[key] = row
        if progress is not None:
            report.pages_added = sum(len(v) for v in written.values())
            progress(report)

    if logger.isEnabledFor(logging.DEBUG):
        try:
            logger.debug("ray data stats:\n%s", ds.stats())
        except Exception:  # pragma: no cover - stats are best effort
            pass
    report.pages_added = 0
    failed: list[FileError] = []
    counted: set[tuple[str, int]] = set()  # a byte-identical copy's pages count once, as the local path
    claims = store.indexer.batched_claims()
    claims.__enter__()
    for (source_b, sha), row in sorted(outcome.items(), key=lambda kv: order.get(os.fsdecode(kv[0][0]), 0)):
        source = os.fsdecode(source_b)
        status = str(row["status"])
        report.pages_skipped += int(row["pages_skipped"])
        if status == "error":
            err = FileError(source, str(row["reason"]), str(row["error_kind"]), sha)
            store.indexer.drop_partial(err)
            failed.append(err)
            logger.warning("skipped %s: %s", safe_display(source), err.reason)
            continue
        pages = {(sha, page) for page in written.get((source_b, sha), ())}
        report.pages_added += len(pages - counted)
        report.pages_skipped += len(pages & counted)
        counted |= pages
        if status == "skipped":
            store.indexer.finish_file(FileDone(source, sha, 0, skipped=True), report)
        else:
            store.indexer.finish_file(FileDone(source, sha, int(row["pages"])), report)
    claims.__exit__(None, None, None)
    report.failed.extend(failed)
    seen = {os.fsdecode(k[0]) for k in outcome}
    for f in (f for f in files if f not in seen):  # pragma: no cover - a render task lost for good (Ray gave up retrying)
        report.failed.append(FileError(f, "the render task for this file was lost; run the job again",
                                       "internal"))
    report.seconds = time.monotonic() - start
    logger.info("%s", report.summary().splitlines()[0])
    return report
