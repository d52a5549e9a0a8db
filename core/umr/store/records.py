"""Plain records returned by :class:`umr.store.ChromaStore` (and by the Ray pipeline's ``index_files``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from umr.documents import FileError, NotIndexed, safe_display
from umr.documents.names import path_from_key

from .sources import source_paths


@dataclass(frozen=True)
class SearchHit:
    """One search result.

    ``score`` ranks the hits: the cosine similarity (``1 - distance``) in dense mode, the BM25 score in
    lexical mode, the fused score in hybrid mode.  ``dense_score`` / ``lexical_score``: each side's own
    score (``None`` when the hit did not come from that side).
    """

    id: str
    score: float
    metadata: dict[str, Any]
    document: str
    image_uri: str
    dense_score: float | None = None
    lexical_score: float | None = None

    @property
    def source(self) -> str:
        return str(self.metadata.get("source", ""))

    @property
    def sources(self) -> list[str]:
        """Every path this page is stored under (byte-identical files share their pages), ``source``
        first."""
        return source_paths(self.metadata)

    @property
    def page(self) -> int:
        return int(self.metadata.get("page", 0))


@dataclass
class IndexReport:
    """What :meth:`ChromaStore.add_files` (or :func:`umr.distributed.index_files`) did.

    ``pages_added``: pages embedded and written; ``pages_skipped``: pages already present (not
    embedded again); ``files_indexed``: files rendered and completed; ``files_skipped``: files
    already complete in the store (not even rendered); ``failed``: one :class:`FileError` per file
    that could not be indexed (its reason says what to do); ``pages_replaced``: pages of older
    versions of re-indexed files that were removed (or, when a byte-identical file at another path
    still lists them, no longer listed under this path); ``not_indexed``: one :class:`NotIndexed` per
    file or folder a walk left out on purpose (hidden, symlinked folder, the store's own folder), with
    the reason.
    """

    pages_added: int = 0
    pages_skipped: int = 0
    files_indexed: int = 0
    files_skipped: int = 0
    pages_replaced: int = 0
    failed: list[FileError] = field(default_factory=list)
    seconds: float = 0.0
    not_indexed: list[NotIndexed] = field(default_factory=list)

    @property
    def files_done(self) -> int:
        return self.files_indexed + self.files_skipped

    @property
    def ok(self) -> bool:
        return not self.failed

    def summary(self) -> str:
        lines = [
            f"{self.files_indexed} file(s) indexed, {self.files_skipped} already present, "
            f"{len(self.failed)} failed; {self.pages_added} page(s) added, {self.pages_skipped} skipped, "
            f"{self.pages_replaced} replaced; {self.seconds:.1f} s"
            + (f"; {len(self.not_indexed)} left out" if self.not_indexed else "")
        ]
        lines += [f"  failed [{e.kind}] {safe_display(e.source)}: {e.reason}" for e in self.failed]
        lines += [f"  left out [{n.kind}] {safe_display(n.source)}: {n.reason}" for n in self.not_indexed]
        return "\n".join(lines)


@dataclass(frozen=True)
class DocumentInfo:
    """One stored document (a path and the file version stored under it), from
    :meth:`ChromaStore.documents`.  ``source`` is the stored key of the path
    (:func:`umr.documents.source_key`: printable, the path itself for ordinary names); :attr:`path` is
    the path to open or to pass to :meth:`ChromaStore.delete_document`."""

    source: str
    sha256: str
    kind: str
    page_count: int
    pages: int
    title: str = ""
    author: str = ""

    @property
    def complete(self) -> bool:
        return self.pages >= self.page_count

    @property
    def path(self) -> str:
        """The file's path (``str``; surrogate-escaped where the name is not UTF-8, like ``os.listdir``)."""
        return path_from_key(self.source)


@dataclass(frozen=True)
class Removal:
    """What :meth:`ChromaStore.remove_document` did: ``deleted`` records were removed with their page
    images; ``kept`` records stay because another path (a byte-identical file) still lists them.
    ``source`` is the stored key that matched (``""`` when removed by sha256)."""

    source: str
    deleted: int
    kept: int

    @property
    def records(self) -> int:
        """Records no longer listed under the path."""
        return self.deleted + self.kept
