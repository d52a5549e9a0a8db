"""Check a collection's vector index against what the store claims, and rebuild it without re-rendering.

Chroma keeps records (ids, metadata, page text) in ``chroma.sqlite3`` and vectors in an HNSW index
beside it.  When the HNSW files are damaged (truncated, lost), counts and metadata still look right,
searches quietly return wrong neighbours, and re-indexing skips every file (its pages are "stored").

:func:`check_vectors` samples stored ids, reads their vectors back and searches with each one: a
healthy index returns the record itself as the nearest neighbour.  :func:`rebuild_vectors` re-creates
the vectors from what the store keeps of each record (its page PNG and its page text; a text record's
text), with the same ids, metadata and documents, into a fresh collection that replaces the damaged
one only once it is complete (a killed rebuild leaves the original in place; running it again starts
over, or finishes the swap when only that was left).
"""

from __future__ import annotations

import logging
import os
import sqlite3
import struct
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from umr.documents import safe_display

from .collection import GET_CHUNK, ChromaCollection
from .faults import StoreError
from .images import PageImages
from .indexer import embed_input

logger = logging.getLogger(__name__)

#: suffix of the collection a rebuild fills before it replaces the original
REBUILD_SUFFIX = "-umr-rebuild"
#: collection metadata key set on the rebuilt collection once it holds every record
COMPLETE_KEY = "umr_rebuild_complete"
#: records written to the rebuilt collection at a time
WRITE_CHUNK = 512
#: a record's own vector is at cosine distance ~0 from itself
SELF_DISTANCE = 1e-3


@dataclass
class CheckReport:
    """What :func:`check_vectors` found.  ``records``: the count Chroma reports; ``sampled``: records
    checked; ``unreadable``: sampled ids whose vector cannot be read back; ``wrong``: sampled ids whose
    own vector does not find them; ``images_missing``: sampled page records whose PNG is gone;
    ``files``: HNSW files shorter than their header says; ``writer``: the pid of another process
    writing to the folder (then nothing was checked: ``ok`` claims no damage, ``summary`` says so)."""

    records: int = 0
    sampled: int = 0
    unreadable: list[str] = field(default_factory=list)
    wrong: list[str] = field(default_factory=list)
    images_missing: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    writer: int | None = None
    where: str = ""
    rebuild_command: str = "umr index --rebuild --db DIR"

    @property
    def ok(self) -> bool:
        """True when the index files are whole and every sampled vector was read back and found itself."""
        return not self.unreadable and not self.wrong and not self.files

    def summary(self) -> str:
        if self.writer is not None:
            who = f"another umr process (pid {self.writer})" if self.writer else "another umr process"
            return (
                f"vectors not checked: {who} is writing to {self.where or 'the store'} (a reader sees its "
                "vector index half-written); check again when it has finished"
            )
        if self.ok:
            line = f"vectors ok: {self.sampled} of {self.records} record(s) sampled, each found itself"
        else:
            found = (
                f"{self.files[0]}" + (f" (and {len(self.files) - 1} more)" if len(self.files) > 1 else "")
                if self.files
                else f"of {self.sampled} sampled record(s), {len(self.unreadable)} vector(s) cannot be read and "
                f"{len(self.wrong)} do not find their own record"
            )
            line = (
                f"the vector index of {self.where or 'the store'} is damaged: {found} (searches return wrong "
                f"pages). Rebuild the vectors from the stored pages (no re-rendering): {self.rebuild_command} "
                "(Python: ChromaStore.rebuild())"
            )
        if self.images_missing:
            line += f"; {len(self.images_missing)} sampled page image(s) missing"
        return line


@dataclass
class RebuildReport:
    """What :func:`rebuild_vectors` did: ``rebuilt`` records re-embedded and kept; ``dropped``: ids
    that could not be re-created (their page image is gone), listed with their source, so that
    ``umr index`` renders those files again."""

    rebuilt: int = 0
    dropped: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> str:
        line = f"rebuilt {self.rebuilt} record(s) from the stored pages in {self.seconds:.1f}s"
        if self.dropped:
            sources = sorted({s for _, s in self.dropped if s})
            line += (
                f"; {len(self.dropped)} record(s) dropped (page image missing): re-index "
                + (", ".join(safe_display(s) for s in sources[:5]) + (" ..." if len(sources) > 5 else ""))
                + " to render them again"
            )
        return line


# ------------------------------------------------------------------------------------------------ check
_HNSW_HEADER = struct.Struct("<iQQQQQQiIQQQdQ")  # Chroma's hnswlib header.bin (version first)


def vector_segment_dirs(folder: Path, collection_id: str) -> list[Path]:
    """The HNSW segment folders of one collection of an embedded store (read from ``chroma.sqlite3``,
    read-only); empty when unknown."""
    db = folder / "chroma.sqlite3"
    if not db.is_file():
        return []
    try:
        con = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True, timeout=5)
        try:
            rows = con.execute(
                "SELECT id FROM segments WHERE collection = ? AND scope = 'VECTOR'", (collection_id,)
            ).fetchall()
        finally:
            con.close()
    except sqlite3.Error as exc:
        logger.debug("cannot read the segments of %s: %s", safe_display(db), exc)
        return []
    return [folder / str(r[0]) for r in rows if (folder / str(r[0])).is_dir()]


def hnsw_file_problems(segment: Path) -> list[str]:
    """What is wrong with the files of one persisted HNSW segment, judged by their sizes against the
    element count and record size in ``header.bin`` (a truncated or lost file); empty when they agree
    or the segment has not been written yet.  Nothing is searched, so a damaged index cannot crash the
    check."""
    header = segment / "header.bin"
    if not header.exists():
        return []
    try:
        raw = header.read_bytes()
        if len(raw) < _HNSW_HEADER.size:
            return [f"{safe_display(header)} is truncated ({len(raw)} bytes)"]
        fields = _HNSW_HEADER.unpack_from(raw)
        count, per_element = int(fields[3]), int(fields[4])
        problems = []
        expected = {"data_level0.bin": count * per_element, "length.bin": count * 4}
        for name, size in expected.items():  # files may be larger (preallocated), never smaller
            f = segment / name
            actual = f.stat().st_size if f.exists() else -1
            if actual < size:
                what = "missing" if actual < 0 else f"{actual} bytes, expected at least {size}"
                problems.append(f"{safe_display(f)} is {what}")
        if not (segment / "link_lists.bin").exists():
            problems.append(f"{safe_display(segment / 'link_lists.bin')} is missing")
        return problems
    except OSError as exc:
        return [f"{safe_display(segment)} cannot be read ({exc})"]


def sample_ids(chroma: ChromaCollection, n: int, count: int | None = None) -> list[str]:
    """Up to ``n`` stored ids, spread evenly over the collection (``n`` small reads of one id each when
    the collection is large, so a quick check stays quick)."""
    count = chroma.count() if count is None else count
    if count <= max(n, GET_CHUNK):
        ids = list(chroma.iter_ids())
        if len(ids) <= n:
            return ids
        step = len(ids) / n
        return [ids[int(i * step)] for i in range(n)]
    step = count / n
    out: list[str] = []
    for i in range(n):
        got = chroma.call("sampling record ids", "get", limit=1, offset=int(i * step), include=[])
        out.extend(i for i in got["ids"] if i not in out)
    return out


def check_vectors(
    chroma: ChromaCollection,
    *,
    sample: int = 64,
    images: PageImages | None = None,
    where: str = "",
    rebuild_command: str = "umr index --rebuild --db DIR",
    folder: Path | None = None,
) -> CheckReport:
    """Compare what the collection claims with what it returns (see the module docs).  ``folder``: the
    embedded store's folder, whose HNSW files are checked first by size (a damaged index can crash
    Chroma when searched, so it is not searched then)."""
    report = CheckReport(records=chroma.count(), where=where, rebuild_command=rebuild_command)
    if folder is not None:
        from .lock import writer_of

        writer = writer_of(folder)
        if writer is not None and writer != os.getpid():  # not damage: another process is mid-write
            report.writer = writer
            return report
        for segment in vector_segment_dirs(folder, str(chroma.raw.id)):
            report.files.extend(hnsw_file_problems(segment))
        if report.files:
            return report
    ids = sample_ids(chroma, max(1, sample), report.records)
    report.sampled = len(ids)
    if not ids:
        return report
    vectors: dict[str, np.ndarray] = {}
    metas: dict[str, Mapping[str, Any]] = {}
    for start in range(0, len(ids), 50):
        chunk = ids[start : start + 50]
        try:
            got = chroma.call("reading vectors", "get", ids=chunk, include=["embeddings", "metadatas"])
        except StoreError:
            raise
        except Exception as exc:  # a damaged index fails the whole read: find which ids
            logger.debug("reading %d vectors failed (%s); reading them one by one", len(chunk), exc)
            got = {"ids": [], "embeddings": [], "metadatas": []}
            for one in chunk:
                try:
                    g = chroma.call("reading vectors", "get", ids=[one], include=["embeddings", "metadatas"])
                except StoreError:
                    raise
                except Exception:
                    report.unreadable.append(one)
                    continue
                got["ids"] += list(g["ids"])
                got["embeddings"] += list(g["embeddings"] if g["embeddings"] is not None else [])
                got["metadatas"] += list(g["metadatas"] or [])
        embs = got["embeddings"] if got["embeddings"] is not None else []
        for i, rid in enumerate(got["ids"]):
            vec = np.asarray(embs[i], dtype=np.float32) if i < len(embs) else np.zeros(0)
            if vec.size == 0 or not np.isfinite(vec).all() or not np.any(vec):
                report.unreadable.append(rid)
            else:
                vectors[rid] = vec
            metas[rid] = (got["metadatas"] or [{}] * len(got["ids"]))[i] or {}
        report.unreadable.extend(i for i in chunk if i not in metas and i not in report.unreadable)
    if vectors and not report.unreadable:  # unreadable vectors: damaged already, and searching could crash
        order = list(vectors)
        k = min(10, report.records) or 1
        try:
            res = chroma.call(
                "searching with the sampled vectors", "query",
                query_embeddings=np.stack([vectors[i] for i in order]), n_results=k, include=["distances"],
            )
        except StoreError:
            raise
        except Exception as exc:
            logger.debug("searching with the sampled vectors failed: %s", exc)
            report.wrong.extend(order)
        else:
            for rid, hits, dists in zip(order, res["ids"], res["distances"]):
                if not any(h == rid and d <= SELF_DISTANCE for h, d in zip(hits, dists)):
                    report.wrong.append(rid)
    for rid, meta in metas.items():
        if str(meta.get("kind", "")) in ("pdf", "image") and _image_file(rid, meta, images) is None:
            report.images_missing.append(rid)
    return report


def _image_file(rid: str, meta: Mapping[str, Any], images: PageImages | None) -> Path | None:
    """The page PNG of a record in the store's image folder: its ``image_path`` when that lies under the
    folder, else where the folder keeps images of that id.  Nothing outside the folder is read."""
    if images is None:
        return None
    root = images.root.resolve()
    recorded = str(meta.get("image_path", "") or "")
    candidates = [Path(recorded)] if recorded else []
    candidates.append(images.path(rid))
    for p in candidates:
        try:
            real = p.resolve()
        except OSError:
            continue
        if root in real.parents and real.is_file():
            return real
    return None


# ------------------------------------------------------------------------------------------------ rebuild
def iter_records(chroma: ChromaCollection) -> Iterator[tuple[list[str], list[Mapping[str, Any]], list[str]]]:
    """``(ids, metadatas, documents)`` chunks of every record (no vectors: those may be damaged)."""
    offset = 0
    while True:
        got = chroma.call(
            "reading records", "get", limit=GET_CHUNK, offset=offset, include=["metadatas", "documents"]
        )
        ids = list(got["ids"])
        if ids:
            yield ids, [m or {} for m in (got["metadatas"] or [{}] * len(ids))], [
                d or "" for d in (got["documents"] or [""] * len(ids))
            ]
        if len(ids) < GET_CHUNK:
            return
        offset += len(ids)


def _load_png(path: Path) -> Image.Image:
    with Image.open(path) as im:
        im.load()
        return im.convert("RGB") if im.mode not in ("RGB", "L") else im.copy()


def rebuild_vectors(
    client: Any,
    chroma: ChromaCollection,
    *,
    embed: Callable[[list[Any]], np.ndarray],
    images: PageImages | None,
    embed_text_layer: bool,
    batch_size: int,
    progress: Callable[[RebuildReport], None] | None = None,
) -> tuple[ChromaCollection, RebuildReport]:
    """Re-embed every record of ``chroma`` into a fresh collection, then put it in the original's place.
    Returns the new collection (same name) and the report."""
    start = time.monotonic()
    name = chroma.name
    tmp_name = name + REBUILD_SUFFIX
    guard = chroma.guard
    meta = dict(chroma.raw.metadata or {})
    meta.pop(COMPLETE_KEY, None)
    names = {c if isinstance(c, str) else c.name for c in guard.call("listing collections", client.list_collections)}
    if tmp_name in names:
        leftover = guard.call("reading the collection", client.get_collection, tmp_name)
        if (leftover.metadata or {}).get(COMPLETE_KEY):
            logger.warning("finishing an interrupted rebuild of %r (the rebuilt collection is complete)", name)
            return _swap(client, guard, name, leftover, chroma), RebuildReport(seconds=time.monotonic() - start)
        guard.call("removing an unfinished rebuild", client.delete_collection, tmp_name)
    hnsw = dict((getattr(chroma.raw, "configuration", None) or {}).get("hnsw") or {})
    hnsw = {k: v for k, v in hnsw.items() if v is not None} | {"space": "cosine"}
    try:
        raw = guard.call(
            "creating the rebuilt collection", client.create_collection, tmp_name,
            configuration={"hnsw": hnsw}, metadata=meta, embedding_function=None,
        )
    except StoreError:
        raise
    except Exception as exc:  # a setting this Chroma does not take back: the defaults
        logger.debug("keeping the HNSW settings %s failed (%s); using the defaults", hnsw, exc)
        raw = guard.call(
            "creating the rebuilt collection", client.create_collection, tmp_name,
            configuration={"hnsw": {"space": "cosine"}}, metadata=meta, embedding_function=None,
        )
    target = ChromaCollection(raw, chroma.max_batch, guard)
    report = RebuildReport()
    pending: tuple[list[str], list[np.ndarray], list[dict[str, Any]], list[str]] = ([], [], [], [])

    def write() -> None:
        if pending[0]:
            target.upsert(pending[0], np.concatenate(pending[1]), pending[2], pending[3])
            report.rebuilt += len(pending[0])
            for part in pending:
                part.clear()
            if progress is not None:
                progress(report)

    for ids, metas, docs in iter_records(chroma):
        for i in range(0, len(ids), batch_size):
            keep_ids: list[str] = []
            keep_metas: list[dict[str, Any]] = []
            keep_docs: list[str] = []
            inputs: list[Any] = []
            for rid, m, doc in zip(ids[i : i + batch_size], metas[i : i + batch_size], docs[i : i + batch_size]):
                kind = str(m.get("kind", ""))
                if kind in ("pdf", "image"):
                    png = _image_file(rid, m, images)
                    if png is None:
                        report.dropped.append((rid, str(m.get("source", ""))))
                        continue
                    try:
                        image = _load_png(png)
                    except (OSError, ValueError, Image.DecompressionBombError) as exc:
                        logger.warning("page image %s is unreadable (%s)", safe_display(png), exc)
                        report.dropped.append((rid, str(m.get("source", ""))))
                        continue
                    inputs.append(embed_input(image, doc, embed_text_layer))
                else:
                    inputs.append({"text": doc or " "})
                keep_ids.append(rid)
                keep_metas.append(dict(m))
                keep_docs.append(doc)
            if keep_ids:
                pending[0].extend(keep_ids)
                pending[1].append(np.asarray(embed(inputs), dtype=np.float32))
                pending[2].extend(keep_metas)
                pending[3].extend(keep_docs)
                if len(pending[0]) >= WRITE_CHUNK:
                    write()
    write()
    if report.dropped:
        logger.warning(
            "%d record(s) could not be rebuilt (page image missing); re-index their files", len(report.dropped)
        )
    guard.call("marking the rebuild complete", raw.modify, metadata={**meta, COMPLETE_KEY: True})
    new = _swap(client, guard, name, raw, chroma)
    report.seconds = time.monotonic() - start
    return new, report


def _swap(client: Any, guard: Any, name: str, rebuilt: Any, old: ChromaCollection) -> ChromaCollection:
    """Drop the original collection and give the rebuilt one its name."""
    try:
        guard.call("removing the damaged collection", client.delete_collection, name)
    except StoreError:
        raise
    except Exception as exc:  # already gone (an earlier swap stopped after this step)
        logger.debug("deleting %r: %s", name, exc)
    guard.call("renaming the rebuilt collection", rebuilt.modify, name=name)
    return ChromaCollection(guard.call("reading the collection", client.get_collection, name), old.max_batch, guard)


__all__ = [
    "COMPLETE_KEY",
    "REBUILD_SUFFIX",
    "CheckReport",
    "RebuildReport",
    "check_vectors",
    "rebuild_vectors",
    "sample_ids",
]
