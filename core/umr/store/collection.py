"""Chroma collection access: the client, opening a collection for one embedder, scalar metadata,
batched writes, id lookups and deletes.

Everything that talks to ``chromadb`` goes through here, so the rest of the store (images, indexer,
facade) never needs to know Chroma's limits: metadata values are scalars only (no ``None``, no lists),
and one write carries at most ``client.get_max_batch_size()`` records.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from umr.documents import source_key

from .faults import Guard, StoreError

logger = logging.getLogger(__name__)

Scalar = str | int | float | bool

#: ids (and metadata rows) read from Chroma at a time
GET_CHUNK = 1000


def chromadb_module() -> Any:
    """``import chromadb``, or an ``ImportError`` saying what to install."""
    try:
        import chromadb
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ImportError("the Chroma store needs chromadb: pip install 'umr[chroma]'") from exc
    return chromadb


def chroma_client(
    path: str | os.PathLike | None = None,
    *,
    host: str | None = None,
    port: int = 8000,
    create: bool = True,
    timeout: float | None = None,
    retries: int | None = None,
) -> Any:
    """A ``HttpClient`` for a Chroma server at ``host:port``, else a ``PersistentClient`` on the folder
    ``path`` (created when ``create``).  Telemetry is off.

    A server is asked for its heartbeat first (each request bounded by ``timeout`` seconds, retried
    ``retries`` times: :class:`~umr.store.faults.Guard`), so a dead or frozen server is named at once
    instead of hanging; every later request of the client is bounded by ``timeout`` too.  A damaged
    database folder raises :class:`~umr.store.faults.StoreCorruptError`."""
    chromadb = chromadb_module()
    from chromadb.config import Settings

    settings = Settings(anonymized_telemetry=False)
    if host:
        guard = Guard(host=host, port=port, timeout=timeout, retries=retries)
        guard.call("connecting", probe_server, host, port, guard.timeout)
        client = guard.call("connecting", chromadb.HttpClient, host=host, port=port, settings=settings)
        bound_requests(client, guard.timeout)
    else:
        if path is None:
            raise ValueError("give the folder of an embedded database (path) or a Chroma server (host)")
        if create:
            os.makedirs(os.fsdecode(path), exist_ok=True)
        guard = Guard(path=path, timeout=timeout, retries=retries)
        folder = os.fsdecode(os.fspath(path))
        try:
            client = guard.call("opening it", chromadb.PersistentClient, path=folder, settings=settings)
        except StoreError:
            forget_client(folder)  # chromadb would hand the broken client out again on the next open
            raise
    try:
        client._umr_guard = guard
    except AttributeError:  # pragma: no cover - a client class with __slots__
        pass
    return client


def forget_client(folder: str) -> None:
    """Drop chromadb's cached client of an embedded folder (best effort; chromadb caches one per path)."""
    try:
        from chromadb.api.shared_system_client import SharedSystemClient

        SharedSystemClient._identifier_to_system.pop(folder, None)
        SharedSystemClient._identifier_to_refcount.pop(folder, None)
    except Exception:  # pragma: no cover - a chromadb without that cache
        logger.debug("cannot drop chromadb's cached client of %s", folder)


def probe_server(host: str, port: int, timeout: float) -> None:
    """One heartbeat request to a Chroma server, bounded by ``timeout`` seconds (raises the ``httpx``
    error of a refused or timed-out connection)."""
    import httpx

    response = httpx.get(f"http://{host}:{port}/api/v2/heartbeat", timeout=timeout)
    response.raise_for_status()


def bound_requests(client: Any, timeout: float) -> None:
    """Give the ``httpx`` session of a chromadb ``HttpClient`` a timeout (chromadb 1.x creates it with
    none, so a frozen server would hang every request forever)."""
    import httpx

    session = getattr(getattr(client, "_server", None), "_session", None)
    if isinstance(session, httpx.Client):
        session.timeout = httpx.Timeout(timeout)
    else:  # pragma: no cover - a chromadb that changed its internals
        logger.warning("cannot set a request timeout on this chromadb client; a frozen server may hang")


def scalar_metadata(meta: Mapping[str, Any] | None, where: str) -> dict[str, Scalar]:
    """Chroma takes scalar metadata only: drop ``None``, turn paths into str, refuse the rest.

    ``where`` names the caller in error messages (``"add_texts"``)."""
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


def collection_metadata(model_id: str, dim: int, fingerprint: str, max_pixels: int) -> dict[str, Scalar]:
    """What a collection records about the embedder that filled it (read back by ``read_collection_info``)."""
    return {
        "umr_model_id": model_id,
        "umr_dim": dim,
        "umr_fingerprint": fingerprint,
        "umr_max_pixels": max_pixels,
    }


def read_collection_info(
    *, collection: str, path: str | os.PathLike | None = None, host: str | None = None, port: int = 8000
) -> dict[str, Any] | None:
    """The umr metadata of a collection (model id, dim, fingerprint), or ``None`` if it does not exist.

    An embedded database folder that does not exist is not created.
    """
    if not host and (path is None or not os.path.exists(os.fsdecode(path))):
        return None
    client = chroma_client(path, host=host, port=port, create=False)
    guard = Guard.for_client(client)
    names = {c if isinstance(c, str) else c.name for c in guard.call("listing collections", client.list_collections)}
    if collection not in names:
        return None
    return dict(guard.call("reading the collection", client.get_collection, collection).metadata or {})


class ChromaCollection:
    """One Chroma collection: batched upserts, id lookups, filtered deletes, metadata scans.

    ``raw`` is the ``chromadb`` collection; ``max_batch`` the client's ``get_max_batch_size()``.
    """

    def __init__(self, raw: Any, max_batch: int, guard: Guard | None = None) -> None:
        self.raw = raw
        self.max_batch = max(1, int(max_batch))
        self.guard = guard if guard is not None else Guard()

    def call(self, what: str, method: str, **kwargs: Any) -> Any:
        """``raw.<method>(**kwargs)`` through the guard: bounded, retried on a server, faults named."""
        return self.guard.call(what, getattr(self.raw, method), **kwargs)

    @classmethod
    def open(cls, client: Any, name: str, meta: Mapping[str, Scalar]) -> ChromaCollection:
        """Get or create ``name`` (cosine space) for the embedder described by ``meta``
        (:func:`collection_metadata`).  A collection filled by another model (other dim or
        fingerprint) is refused: vectors of different models cannot be mixed."""
        guard = Guard.for_client(client)
        for attempt in range(5):
            try:
                col = guard.call(
                    f"opening the collection {name!r}",
                    client.get_or_create_collection,
                    name,
                    configuration={"hnsw": {"space": "cosine"}},
                    metadata=dict(meta),
                    embedding_function=None,
                )
                break
            except StoreError:
                raise
            except Exception as exc:  # concurrent creation by another writer: retry
                if attempt == 4:
                    raise
                logger.debug("get_or_create_collection(%s) failed (%s); retrying", name, exc)
                time.sleep(0.2 * (attempt + 1))
        existing = col.metadata or {}
        dim = existing.get("umr_dim")
        fingerprint = meta.get("umr_fingerprint")
        if (dim is not None and int(dim) != int(meta["umr_dim"])) or (
            existing.get("umr_fingerprint") not in (None, fingerprint)
        ):
            raise ValueError(
                f"collection {name!r} holds vectors of {existing.get('umr_model_id')!r} "
                f"(dim {dim}, fingerprint {existing.get('umr_fingerprint')}); this embedder is "
                f"{meta.get('umr_model_id')!r} (dim {meta['umr_dim']}, fingerprint {fingerprint}). Vectors of "
                "different models cannot be mixed: use another collection name or delete this one"
            )
        space = (getattr(col, "configuration", None) or {}).get("hnsw", {}) or {}
        if space.get("space", "cosine") != "cosine":
            logger.warning(
                "collection %r uses %r distance, not cosine; scores will be off", name, space.get("space")
            )
        return cls(col, guard.call("connecting", client.get_max_batch_size), guard)

    @property
    def name(self) -> str:
        return str(self.raw.name)

    def count(self) -> int:
        return int(self.call("counting records", "count"))

    def upsert(
        self, ids: list[str], vectors: np.ndarray, metas: list[dict[str, Scalar]], docs: list[str]
    ) -> None:
        """Insert or replace records, ``max_batch`` at a time; ``image_uri`` metadata doubles as Chroma's uri."""
        uris = [str(m.get("image_uri", "")) for m in metas]
        for i in range(0, len(ids), self.max_batch):
            j = i + self.max_batch
            self.call(
                f"writing {len(ids[i:j])} records",
                "upsert",
                ids=ids[i:j],
                embeddings=vectors[i:j],
                metadatas=metas[i:j],
                documents=docs[i:j],
                uris=uris[i:j],
            )

    def existing_ids(self, ids: Sequence[str]) -> set[str]:
        """Those of ``ids`` that are stored (``ids`` may repeat)."""
        ids = list(dict.fromkeys(ids))  # Chroma refuses repeated ids, in reads too
        found: set[str] = set()
        step = min(self.max_batch, GET_CHUNK)
        for i in range(0, len(ids), step):
            found.update(self.call("looking up stored pages", "get", ids=list(ids[i : i + step]), include=[])["ids"])
        return found

    def first_metadata(self, where: Mapping[str, Any]) -> Mapping[str, Any] | None:
        """The metadata of one record matching ``where``, or ``None``."""
        got = self.call("looking up stored pages", "get", where=dict(where), limit=1, include=["metadatas"])
        if not got["ids"]:
            return None
        return (got["metadatas"] or [{}])[0] or {}

    def delete_where(
        self,
        where: Mapping[str, Any],
        on_removed: Callable[[list[Mapping[str, Any]]], None] | None = None,
        on_deleted_ids: Callable[[list[str]], None] | None = None,
    ) -> int:
        """Delete every record matching ``where``; ``on_removed(metadatas)`` after each deleted chunk
        (the page-image store removes their files), ``on_deleted_ids(ids)`` too (the lexical index
        follows).  Returns the number removed."""
        removed = 0
        while True:
            got = self.call(
                "finding records to delete", "get",
                where=dict(where), limit=min(self.max_batch, GET_CHUNK), include=["metadatas"],
            )
            ids = got["ids"]
            if not ids:
                return removed
            self.call(f"deleting {len(ids)} records", "delete", ids=ids)
            if on_deleted_ids is not None:
                on_deleted_ids(list(ids))
            if on_removed is not None:
                on_removed([m or {} for m in (got["metadatas"] or [])])
            removed += len(ids)

    def ids_where(self, where: Mapping[str, Any]) -> list[str]:
        """Ids of every record matching ``where``."""
        found: list[str] = []
        while True:
            got = self.call("reading record ids", "get", where=dict(where), limit=GET_CHUNK, offset=len(found), include=[])
            found.extend(got["ids"])
            if len(got["ids"]) < GET_CHUNK:
                return found

    def records_where(
        self, where: Mapping[str, Any], limit: int | None = GET_CHUNK
    ) -> list[tuple[str, dict[str, Any]]]:
        """Records matching ``where`` as ``(id, metadata)``: up to ``limit``, or all (``None``)."""
        out: list[tuple[str, dict[str, Any]]] = []
        while True:
            step = GET_CHUNK if limit is None else min(GET_CHUNK, limit - len(out))
            got = self.call("reading records", "get", where=dict(where), limit=step, offset=len(out), include=["metadatas"])
            out.extend((i, dict(m or {})) for i, m in zip(got["ids"], got["metadatas"] or []))
            if len(got["ids"]) < step or (limit is not None and len(out) >= limit):
                return out

    def update_metadata(self, ids: Sequence[str], metas: Sequence[Mapping[str, Any]]) -> None:
        """Merge ``metas`` into the records ``ids`` (a ``None`` value removes that key)."""
        for i in range(0, len(ids), self.max_batch):
            j = i + self.max_batch
            self.call("updating record metadata", "update", ids=list(ids[i:j]), metadatas=[dict(m) for m in metas[i:j]])

    def delete_ids(self, ids: Sequence[str]) -> None:
        for i in range(0, len(ids), self.max_batch):
            self.call("deleting records", "delete", ids=list(ids[i : i + self.max_batch]))

    def iter_ids(self) -> Iterator[str]:
        """Every stored id, ``GET_CHUNK`` at a time."""
        offset = 0
        while True:
            got = self.call("reading record ids", "get", limit=GET_CHUNK, offset=offset, include=[])
            yield from got["ids"]
            if len(got["ids"]) < GET_CHUNK:
                return
            offset += len(got["ids"])

    def iter_metadatas(self) -> Iterator[Mapping[str, Any]]:
        """Every record's metadata, ``GET_CHUNK`` at a time."""
        offset = 0
        while True:
            got = self.call("reading records", "get", limit=GET_CHUNK, offset=offset, include=["metadatas"])
            metas = got["metadatas"] or []
            yield from (m or {} for m in metas)
            if len(got["ids"]) < GET_CHUNK:
                return
            offset += len(got["ids"])

    def all_ids(self) -> set[str]:
        """Every id in the collection (read ``GET_CHUNK`` at a time)."""
        out: set[str] = set()
        offset = 0
        while True:
            ids = self.call("reading record ids", "get", limit=GET_CHUNK, offset=offset, include=[])["ids"]
            out.update(ids)
            if len(ids) < GET_CHUNK:
                return out
            offset += len(ids)

    def filter_ids(
        self,
        ids: Sequence[str],
        where: Mapping[str, Any] | None = None,
        where_document: Mapping[str, Any] | None = None,
    ) -> set[str]:
        """Those of ``ids`` that are stored and pass the filters."""
        found: set[str] = set()
        step = min(self.max_batch, GET_CHUNK)
        for i in range(0, len(ids), step):
            got = self.call(
                "filtering records", "get",
                ids=list(ids[i : i + step]),
                where=dict(where) if where else None,
                where_document=dict(where_document) if where_document else None,
                include=[],
            )
            found.update(got["ids"])
        return found

    def records(
        self,
        ids: Sequence[str],
        where: Mapping[str, Any] | None = None,
        where_document: Mapping[str, Any] | None = None,
    ) -> dict[str, tuple[dict[str, Any], str]]:
        """``{id: (metadata, document)}`` of those of ``ids`` that are stored and pass the filters."""
        out: dict[str, tuple[dict[str, Any], str]] = {}
        step = min(self.max_batch, GET_CHUNK)
        for i in range(0, len(ids), step):
            got = self.call(
                "reading records", "get",
                ids=list(ids[i : i + step]),
                where=dict(where) if where else None,
                where_document=dict(where_document) if where_document else None,
                include=["metadatas", "documents"],
            )
            n = len(got["ids"])
            metas = got.get("metadatas") or [None] * n
            docs = got.get("documents") or [None] * n
            for hid, meta, doc in zip(got["ids"], metas, docs):
                out[hid] = (dict(meta or {}), doc or "")
        return out

    def query_ids(
        self,
        vector: np.ndarray,
        k: int,
        where: Mapping[str, Any] | None = None,
        where_document: Mapping[str, Any] | None = None,
    ) -> list[tuple[str, float]]:
        """Nearest ``k`` records as ``(id, cosine similarity)``, best first (no metadata or text read)."""
        res = self.call(
            "searching", "query",
            query_embeddings=np.asarray(vector, dtype=np.float32).reshape(1, -1),
            n_results=k,
            where=dict(where) if where else None,
            where_document=dict(where_document) if where_document else None,
            include=["distances"],
        )
        return [(hid, 1.0 - float(dist)) for hid, dist in zip(res["ids"][0], res["distances"][0])]

    def query(
        self,
        vector: np.ndarray,
        k: int,
        where: Mapping[str, Any] | None = None,
        where_document: Mapping[str, Any] | None = None,
    ) -> list[tuple[str, float, dict[str, Any], str]]:
        """Nearest ``k`` records to one vector: ``(id, cosine similarity, metadata, document)`` best first."""
        res = self.call(
            "searching",
            "query",
            query_embeddings=np.asarray(vector, dtype=np.float32).reshape(1, -1),
            n_results=k,
            where=dict(where) if where else None,
            where_document=dict(where_document) if where_document else None,
            include=["metadatas", "documents", "distances"],
        )
        metas = (res.get("metadatas") or [[]])[0]
        docs = (res.get("documents") or [[]])[0]
        return [
            (hid, 1.0 - float(dist), dict(metas[i] or {}), docs[i] or "")
            for i, (hid, dist) in enumerate(zip(res["ids"][0], res["distances"][0]))
        ]

