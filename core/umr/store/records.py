"""Plain records returned by :class:`umr.store.ChromaStore` (and by the Ray pipeline's ``index_files``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from umr.documents import FileError, safe_display


@dataclass(frozen=True)
class SearchHit:
    """One search result.  ``score`` is the cosine similarity (``1 - distance``)."""

    id: str
    score: float
    metadata: dict[str, Any]
    document: str
    image_uri: str

    @property
    def source(self) -> str:
        return str(self.metadata.get("source", ""))

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
    versions of re-indexed files that were removed.
    """

    pages_added: int = 0
    pages_skipped: int = 0
    files_indexed: int = 0
    files_skipped: int = 0
    pages_replaced: int = 0
    failed: list[FileError] = field(default_factory=list)
    seconds: float = 0.0

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
        ]
        lines += [f"  failed [{e.kind}] {safe_display(e.source)}: {e.reason}" for e in self.failed]
        return "\n".join(lines)


@dataclass(frozen=True)
class DocumentInfo:
    """One stored document (file version), from :meth:`ChromaStore.documents`."""

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
