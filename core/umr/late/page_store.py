"""A page-vector store: each page's token vectors on disk, keyed by the page id Chroma uses.

Layout of the store directory::

    config.json        dim, dtype, pool factor (written once, atomically)
    MANIFEST           the current journal and the segment appends go to (atomically replaced)
    seg-000001.vec     append-only token vectors of many pages, memory-mapped for reading
    journal-000001.log append-only log of ADD(id, segment, offset, n_tokens) / DELETE(id) records
    LOCK               held (flock) by the one writer

Crash safety: a write appends the vectors to the segment and fsyncs it, then appends one CRC-checked
journal record per page and fsyncs the journal. Opening replays the journal up to the first torn or
corrupt record (a kill -9 mid-write leaves at most one torn tail record and some unreferenced bytes at a
segment's end), so every id the store lists has complete vectors. A page is either fully in or not in;
the caller compares :meth:`PageVectorStore.ids` with its Chroma collection to repair the difference.
:meth:`compact` rewrites the live pages into new files and switches the manifest atomically.

Values are stored as float16 (default), int8 (one float32 scale per token) or binary (sign bits; read
back as +-1/sqrt(dim)); with ``pool_factor > 1`` pages are token-pooled before they are stored.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import struct
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from umr.errors import UMRError

if TYPE_CHECKING:  # pragma: no cover
    from umr.late.scoring import MultiVector

logger = logging.getLogger(__name__)

StoreDtype = Literal["float16", "int8", "binary"]
DTYPES: tuple[str, ...] = ("float16", "int8", "binary")
FORMAT = 1
_SEGMENT_LIMIT = 1 << 30  # start a new segment file past 1 GiB
_OP_ADD = 1
_OP_DEL = 2
_REC_HEAD = struct.Struct("<II")  # payload length, crc32 of the payload
_ADD_TAIL = struct.Struct("<IQI")  # segment, byte offset, n_tokens


class PageStoreError(UMRError, RuntimeError):
    """The page-vector store cannot be opened or written (config mismatch, second writer, bad input)."""


@dataclass(frozen=True)
class PageStoreConfig:
    dim: int = 128
    dtype: StoreDtype = "float16"
    pool_factor: int = 1

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise PageStoreError(f"unknown page-store dtype {self.dtype!r}; valid: {', '.join(DTYPES)}")
        if self.dim < 1:
            raise PageStoreError(f"page-store dim must be >= 1, got {self.dim}")
        if self.pool_factor < 1:
            raise PageStoreError(f"pool_factor must be >= 1, got {self.pool_factor}")

    def record_bytes(self, n_tokens: int) -> int:
        """Bytes one page of ``n_tokens`` vectors takes in a segment."""
        if self.dtype == "float16":
            return n_tokens * self.dim * 2
        if self.dtype == "int8":
            return n_tokens * (self.dim + 4)
        return n_tokens * ((self.dim + 7) // 8)


@dataclass(frozen=True)
class _Entry:
    segment: int
    offset: int
    n_tokens: int


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _encode_record(op: int, page_id: str, entry: _Entry | None = None) -> bytes:
    key = page_id.encode("utf-8")
    payload = struct.pack("<BH", op, len(key)) + key
    if entry is not None:
        payload += _ADD_TAIL.pack(entry.segment, entry.offset, entry.n_tokens)
    return _REC_HEAD.pack(len(payload), zlib.crc32(payload)) + payload


def _replay(data: bytes, live: dict[str, _Entry] | None = None) -> tuple[dict[str, _Entry], int]:
    """Apply the journal records in ``data`` to ``live`` (a new dict when None); returns it and the length
    of the valid prefix (the rest is a torn or corrupt tail)."""
    live = {} if live is None else live
    pos = 0
    end = len(data)
    while pos + _REC_HEAD.size <= end:
        length, crc = _REC_HEAD.unpack_from(data, pos)
        start = pos + _REC_HEAD.size
        if start + length > end:
            break
        payload = data[start : start + length]
        if zlib.crc32(payload) != crc or length < 3:
            break
        op, key_len = struct.unpack_from("<BH", payload, 0)
        key = payload[3 : 3 + key_len].decode("utf-8")
        if op == _OP_ADD and length == 3 + key_len + _ADD_TAIL.size:
            live[key] = _Entry(*_ADD_TAIL.unpack_from(payload, 3 + key_len))
        elif op == _OP_DEL and length == 3 + key_len:
            live.pop(key, None)
        else:
            break
        pos = start + length
    return live, pos


class PageVectorStore:
    """Token vectors per page id, on disk, memory-mapped; add / delete / update / list.

    >>> store = PageVectorStore.open("db/pages", dim=128)          # doctest: +SKIP
    >>> store.add(["doc#p1"], [np.random.rand(700, 128)])           # doctest: +SKIP
    >>> store.get("doc#p1").shape                                   # doctest: +SKIP
    (700, 128)

    Several processes may open one directory. Writes take an exclusive ``flock`` on ``LOCK`` for their
    duration (writers queue) and first catch up with what others committed; a reader sees what was
    committed when it opened or last called :meth:`refresh` (or wrote). ``read_only=True`` refuses writes.
    """

    def __init__(self, root: Path, config: PageStoreConfig, read_only: bool) -> None:
        self.root = root
        self.config = config
        self.read_only = read_only
        self._closed = False
        self._maps: dict[int, np.memmap] = {}
        self._entries: dict[str, _Entry] = {}
        self._journal_name = ""
        self._journal_offset = 0
        self._segment = 1
        if read_only:
            self._load()
        else:
            with self._locked():  # repairs a torn journal tail and removes stray files
                pass

    # -- opening ---------------------------------------------------------------------------------------
    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        *,
        dim: int | None = None,
        dtype: StoreDtype | None = None,
        pool_factor: int | None = None,
        read_only: bool = False,
    ) -> PageVectorStore:
        """Open the store at ``path``, creating it (with ``dim``/``dtype``/``pool_factor``) when absent.

        Given settings must match an existing store's; left out, they are read from it.
        """
        root = Path(path)
        config_path = root / "config.json"
        if config_path.exists():
            stored = json.loads(config_path.read_text())
            if stored.get("format") != FORMAT:
                raise PageStoreError(f"{root}: page-store format {stored.get('format')!r}, this umr reads {FORMAT}")
            config = PageStoreConfig(stored["dim"], stored["dtype"], stored["pool_factor"])
            for name, given in (("dim", dim), ("dtype", dtype), ("pool_factor", pool_factor)):
                if given is not None and given != getattr(config, name):
                    raise PageStoreError(
                        f"{root} holds {name}={getattr(config, name)!r}, opened with {name}={given!r}; "
                        "open it with the stored settings or use a new directory"
                    )
            return cls(root, config, read_only)
        if read_only:
            raise PageStoreError(f"no page-vector store at {root} (config.json missing)")
        config = PageStoreConfig(dim or 128, dtype or "float16", pool_factor or 1)
        root.mkdir(parents=True, exist_ok=True)
        _atomic_write(config_path, json.dumps({"format": FORMAT, **asdict(config)}).encode())
        return cls(root, config, read_only)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Hold the writer lock, caught up with the journal (torn tail cut, stray files removed)."""
        if self.read_only or self._closed:
            raise PageStoreError(f"the page-vector store at {self.root} is open read-only (or closed)")
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.root / "LOCK", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            self._load(repair=True)
            yield
        finally:
            os.close(fd)  # releases the flock

    def _load(self, repair: bool = False) -> None:
        """Catch up with the journal: from where this object stopped when the journal is the same one,
        from the start after a compaction (a new journal) or on first load."""
        manifest_path = self.root / "MANIFEST"
        if manifest_path.exists():
            manifest = json.loads(manifest_path.read_text())
        else:
            manifest = {"journal": "journal-000001.log", "append_segment": 1}
            if repair:
                _atomic_write(manifest_path, json.dumps(manifest).encode())
        if manifest["journal"] != self._journal_name:
            self._entries, self._journal_offset = {}, 0
            self._maps.clear()
        self._journal_name = manifest["journal"]
        self._segment = int(manifest["append_segment"])
        journal = self.root / self._journal_name
        data = b""
        if journal.exists():
            with open(journal, "rb") as f:
                f.seek(self._journal_offset)
                data = f.read()
        _, valid = _replay(data, self._entries)
        self._journal_offset += valid
        for entry in self._entries.values():
            self._segment = max(self._segment, entry.segment)
        if repair:
            if valid < len(data):
                logger.warning(
                    "page-vector store %s: dropping a torn journal tail (%d bytes) left by an interrupted write",
                    self.root,
                    len(data) - valid,
                )
                with open(journal, "r+b") as f:
                    f.truncate(self._journal_offset)
                    f.flush()
                    os.fsync(f.fileno())
            self._remove_stray_files()

    def _remove_stray_files(self) -> None:
        """Delete files a crashed compaction or an old generation left (nothing the manifest uses)."""
        used = {self._journal_name}
        used.update(self._segment_name(e.segment) for e in self._entries.values())
        current = self._segment_name(self._segment)
        for path in self.root.iterdir():
            name = path.name
            stray_tmp = name.endswith(".tmp")
            stray_seg = name.startswith("seg-") and name not in used and name != current
            stray_journal = name.startswith("journal-") and name not in used
            if stray_tmp or stray_seg or stray_journal:
                path.unlink(missing_ok=True)

    def refresh(self) -> None:
        """Catch up with the journal (pick up what other processes committed since)."""
        self._load()

    def close(self) -> None:
        self._maps.clear()
        self._closed = True

    def __enter__(self) -> PageVectorStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reading ---------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, page_id: object) -> bool:
        return page_id in self._entries

    def ids(self) -> list[str]:
        """Every stored page id (in storage order)."""
        return sorted(self._entries, key=lambda k: (self._entries[k].segment, self._entries[k].offset))

    def n_tokens(self, page_id: str) -> int:
        return self._entry(page_id).n_tokens

    def _entry(self, page_id: str) -> _Entry:
        try:
            return self._entries[page_id]
        except KeyError:
            raise KeyError(f"page {page_id!r} is not in the page-vector store at {self.root}") from None

    @staticmethod
    def _segment_name(number: int) -> str:
        return f"seg-{number:06d}.vec"

    def _map(self, segment: int, need: int) -> np.memmap:
        mm = self._maps.get(segment)
        if mm is None or mm.shape[0] < need:
            mm = np.memmap(self.root / self._segment_name(segment), dtype=np.uint8, mode="r")
            self._maps[segment] = mm
        return mm

    def _raw(self, entry: _Entry) -> np.ndarray:
        size = self.config.record_bytes(entry.n_tokens)
        return self._map(entry.segment, entry.offset + size)[entry.offset : entry.offset + size]

    def _decode(self, raw: np.ndarray, n_tokens: int) -> np.ndarray:
        dim = self.config.dim
        if self.config.dtype == "float16":
            return raw.view(np.float16).reshape(n_tokens, dim).astype(np.float32)
        if self.config.dtype == "int8":
            values = raw[: n_tokens * dim].view(np.int8).reshape(n_tokens, dim).astype(np.float32)
            scales = raw[n_tokens * dim :].view(np.float32)
            return values * scales[:, None]
        bits = np.unpackbits(raw.reshape(n_tokens, -1), axis=1, count=dim)
        return (bits.astype(np.float32) * 2.0 - 1.0) / np.sqrt(dim, dtype=np.float32)

    def get(self, page_id: str) -> np.ndarray:
        """One page's token vectors as float32 ``(n_tokens, dim)``."""
        entry = self._entry(page_id)
        return self._decode(self._raw(entry), entry.n_tokens)

    def get_many(self, page_ids: Sequence[str]) -> list[np.ndarray]:
        return [self.get(page_id) for page_id in page_ids]

    def views(self, page_ids: Sequence[str]) -> list[np.ndarray]:
        """Each page's ``(n_tokens, dim)`` vectors as stored, without copying where possible.

        A float16 store gives read-only float16 views into the memory-mapped segments (no decoding, no
        copy: the caller converts block by block, see :func:`umr.late.scoring.maxsim_pages`); int8 and
        binary stores give decoded float32 arrays.
        """
        entries = [self._entry(page_id) for page_id in page_ids]
        if self.config.dtype == "float16":
            dim = self.config.dim
            return [self._raw(e).view(np.float16).reshape(e.n_tokens, dim) for e in entries]
        return [self._decode(self._raw(e), e.n_tokens) for e in entries]

    def gather(self, page_ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Tokens of ``page_ids`` concatenated ``(T, dim)`` float32 and each token's position in ``page_ids``."""
        entries = [self._entry(page_id) for page_id in page_ids]
        lengths = np.fromiter((e.n_tokens for e in entries), dtype=np.int64, count=len(entries))
        if self.config.dtype == "float16":
            parts = [self._raw(e).view(np.float16) for e in entries]
            flat = np.concatenate(parts).reshape(-1, self.config.dim).astype(np.float32) if parts else (
                np.zeros((0, self.config.dim), dtype=np.float32)
            )
        else:
            decoded = [self._decode(self._raw(e), e.n_tokens) for e in entries]
            flat = np.concatenate(decoded) if decoded else np.zeros((0, self.config.dim), dtype=np.float32)
        return flat, np.repeat(np.arange(len(entries)), lengths)

    def iter_batches(self, pages_per_batch: int = 1024) -> Iterator[tuple[list[str], np.ndarray, np.ndarray]]:
        """Every page in storage order, in batches of ``(ids, tokens, page_index)`` as :meth:`gather` gives."""
        ordered = self.ids()
        for start in range(0, len(ordered), pages_per_batch):
            chunk = ordered[start : start + pages_per_batch]
            tokens, index = self.gather(chunk)
            yield chunk, tokens, index

    def stats(self) -> dict[str, float]:
        """Pages, tokens, bytes of live vectors and of all files, bytes per page."""
        pages = len(self._entries)
        tokens = sum(e.n_tokens for e in self._entries.values())
        live = sum(self.config.record_bytes(e.n_tokens) for e in self._entries.values())
        on_disk = sum(p.stat().st_size for p in self.root.iterdir() if p.is_file())
        return {
            "pages": pages,
            "tokens": tokens,
            "tokens_per_page": tokens / pages if pages else 0.0,
            "vector_bytes": live,
            "file_bytes": on_disk,
            "vector_bytes_per_page": live / pages if pages else 0.0,
            "file_bytes_per_page": on_disk / pages if pages else 0.0,
        }

    # -- writing ---------------------------------------------------------------------------------------
    def _encode(self, vectors: np.ndarray) -> bytes:
        if self.config.dtype == "float16":
            return np.ascontiguousarray(vectors, dtype=np.float16).tobytes()
        if self.config.dtype == "int8":
            scale = np.abs(vectors).max(axis=1) / 127.0
            scale = np.where(scale > 0, scale, 1.0).astype(np.float32)
            values = np.clip(np.rint(vectors / scale[:, None]), -127, 127).astype(np.int8)
            return values.tobytes() + scale.tobytes()
        return np.packbits(vectors > 0, axis=1).tobytes()

    def _prepare(self, page_ids: Sequence[str], vectors: Sequence[Any]) -> list[np.ndarray]:
        if len(page_ids) != len(vectors):
            raise PageStoreError(f"add got {len(page_ids)} ids and {len(vectors)} multi-vectors; give one per id")
        if len(set(page_ids)) != len(page_ids):
            raise PageStoreError("add got the same page id twice in one call; give each page once")
        arrays = []
        for page_id, item in zip(page_ids, vectors):
            if not isinstance(page_id, str) or not page_id or len(page_id.encode("utf-8")) > 65535:
                raise PageStoreError(f"page ids must be non-empty strings under 64 KiB, got {page_id!r}")
            arr = item.detach().to("cpu").float().numpy() if hasattr(item, "detach") else np.asarray(item)
            arr = np.asarray(arr, dtype=np.float32)
            if arr.ndim != 2 or arr.shape[1] != self.config.dim or arr.shape[0] == 0:
                raise PageStoreError(
                    f"page {page_id!r}: vectors of shape {arr.shape}, the store needs (n_tokens >= 1, {self.config.dim})"
                )
            if not np.isfinite(arr).all():
                raise PageStoreError(f"page {page_id!r}: vectors contain NaN or infinity")
            arrays.append(arr)
        if self.config.pool_factor > 1:
            from umr.late.token_pooling import pool_tokens  # torch, only when pooling

            arrays = pool_tokens(arrays, self.config.pool_factor)
        return arrays

    def add(self, page_ids: Sequence[str], vectors: Sequence[MultiVector]) -> None:
        """Store (or replace) the token vectors of ``page_ids``; durable when this returns."""
        if self.read_only or self._closed:
            raise PageStoreError(f"the page-vector store at {self.root} is open read-only (or closed)")
        page_ids = list(page_ids)
        arrays = self._prepare(page_ids, list(vectors))  # pooling runs outside the lock
        if not arrays:
            return
        with self._locked():
            segment = self._segment
            path = self.root / self._segment_name(segment)
            if path.exists() and path.stat().st_size >= _SEGMENT_LIMIT:
                segment = self._segment = segment + 1
                path = self.root / self._segment_name(segment)
                self._write_manifest()
            new: dict[str, _Entry] = {}
            with open(path, "ab") as f:
                offset = f.tell()
                for page_id, arr in zip(page_ids, arrays):
                    blob = self._encode(arr)
                    f.write(blob)
                    new[page_id] = _Entry(segment, offset, arr.shape[0])
                    offset += len(blob)
                f.flush()
                os.fsync(f.fileno())
            self._append_journal(b"".join(_encode_record(_OP_ADD, k, e) for k, e in new.items()))
            self._entries.update(new)

    def delete(self, page_ids: Iterable[str]) -> int:
        """Remove ``page_ids`` (unknown ids are skipped); returns how many were removed."""
        wanted = list(dict.fromkeys(page_ids))
        with self._locked():
            present = [k for k in wanted if k in self._entries]
            if present:
                self._append_journal(b"".join(_encode_record(_OP_DEL, k) for k in present))
                for k in present:
                    del self._entries[k]
        return len(present)

    def _append_journal(self, blob: bytes) -> None:
        with open(self.root / self._journal_name, "ab") as f:
            f.write(blob)
            f.flush()
            os.fsync(f.fileno())
        self._journal_offset += len(blob)

    def _write_manifest(self) -> None:
        manifest = {"journal": self._journal_name, "append_segment": self._segment}
        _atomic_write(self.root / "MANIFEST", json.dumps(manifest).encode())

    def compact(self) -> dict[str, int]:
        """Rewrite the live pages into fresh segment and journal files; reclaims deleted and orphan bytes.

        The switch is one atomic manifest replace: a crash before it keeps the old files (the new ones are
        removed on the next open), a crash after it keeps the new ones.
        """
        with self._locked():
            return self._compact()

    def _compact(self) -> dict[str, int]:
        before = sum(p.stat().st_size for p in self.root.iterdir() if p.is_file())
        old_journal_number = int(self._journal_name.split("-")[1].split(".")[0])
        journal_name = f"journal-{old_journal_number + 1:06d}.log"
        segment = max([self._segment, *(e.segment for e in self._entries.values())]) + 1
        new: dict[str, _Entry] = {}
        out = None
        written = 0
        try:
            for page_id in self.ids():
                entry = self._entries[page_id]
                raw = self._raw(entry)
                if out is None or written >= _SEGMENT_LIMIT:
                    if out is not None:
                        out.flush()
                        os.fsync(out.fileno())
                        out.close()
                        segment += 1
                    out = open(self.root / self._segment_name(segment), "wb")  # noqa: SIM115 (closed below)
                    written = 0
                new[page_id] = _Entry(segment, written, entry.n_tokens)
                out.write(raw.tobytes())
                written += raw.shape[0]
            if out is not None:
                out.flush()
                os.fsync(out.fileno())
        finally:
            if out is not None:
                out.close()
        records = b"".join(_encode_record(_OP_ADD, k, e) for k, e in new.items())
        _atomic_write(self.root / journal_name, records)
        self._journal_name = journal_name
        self._journal_offset = len(records)
        self._segment = segment
        self._write_manifest()
        self._entries = new
        self._maps.clear()
        self._remove_stray_files()
        after = sum(p.stat().st_size for p in self.root.iterdir() if p.is_file())
        return {"bytes_before": before, "bytes_after": after, "pages": len(new)}
