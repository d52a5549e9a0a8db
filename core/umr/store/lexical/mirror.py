"""Keep a lexical index in step with its Chroma collection: mirror writes, repair after a kill, rebuild.

Chroma is the truth.  Writes go to Chroma first, then to the lexical index (same ids, text, metadata),
so a kill between the two leaves the lexical side behind, never ahead with records Chroma lacks except
for deletes, which are mirrored the same way.  The next write session repairs: when the previous one
did not end cleanly (``PENDING`` marker), or when this store object opens its first session and the
record counts differ, the ids of both sides are compared and the lexical side is made equal (missing
records read back from Chroma, no re-embedding; extra ones removed).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .index import LexicalConfig, LexicalIndex, LexicalRecord, LexicalWriter, SyncReport, records_from_chroma

if TYPE_CHECKING:
    from ..collection import ChromaCollection

logger = logging.getLogger(__name__)

def chroma_ids(collection: ChromaCollection) -> set[str]:
    """Every id of a Chroma collection."""
    return collection.all_ids()


def chroma_records(collection: ChromaCollection, ids: Sequence[str]) -> list[LexicalRecord]:
    """The lexical records of these Chroma ids (their stored text and metadata)."""
    found = collection.records(ids)
    return [LexicalRecord(i, found[i][1], found[i][0]) for i in ids if i in found]


class LexicalMirror:
    """The lexical side of one Chroma collection, as a store uses it.

    ``session()`` is a write session (nested ones share the outer one); the first session of this
    object and any session after a killed one start with :meth:`repair`.  ``upserted`` / ``deleted``
    mirror Chroma writes just made.
    """

    def __init__(self, collection: ChromaCollection, lexical: LexicalIndex) -> None:
        self.collection = collection
        self.lexical = lexical
        self._checked = False
        self._warned = False

    @property
    def path(self) -> os.PathLike[str]:
        return self.lexical.path

    @contextlib.contextmanager
    def session(self) -> Iterator[LexicalWriter]:
        outer = not self.lexical.in_session
        with self.lexical.writer() as w:
            if outer and (w.recovering or not self._checked):
                self.repair(force=w.recovering)
            yield w

    def repair(self, *, force: bool = False) -> SyncReport | None:
        """Compare ids with Chroma and fill the missing side (when ``force``, or when the counts differ)."""
        self._checked = True
        with self.lexical.writer():
            if not force and self.lexical.count() == self.collection.count():
                return None
            if force:
                logger.info("lexical index at %s: the last write did not finish; comparing with Chroma", self.path)
            else:
                logger.info("lexical index at %s holds %d records, Chroma %d; comparing ids", self.path,
                            self.lexical.count(), self.collection.count())
            return self.lexical.sync(chroma_ids(self.collection), self._fetch)

    def _fetch(self, ids: list[str]) -> list[LexicalRecord]:
        return chroma_records(self.collection, ids)

    def upserted(self, ids: Sequence[str], documents: Sequence[str | None],
                 metadatas: Sequence[Mapping[str, Any] | None]) -> None:
        with self.session() as w:
            w.upsert(records_from_chroma(ids, documents, metadatas))

    def deleted(self, ids: Sequence[str]) -> None:
        if ids:
            with self.session() as w:
                w.delete(ids)

    def rebuild(self, config: LexicalConfig | None = None) -> int:
        """A fresh lexical index from the texts and metadata stored in Chroma (no re-embedding).
        ``config``: new tokeniser settings (default: the current ones).  Returns the records indexed."""
        config = config or self.lexical.config
        self.lexical = LexicalIndex.recreate(self.lexical.path, config, commit_every=self.lexical.commit_every)
        report = self.lexical.sync(chroma_ids(self.collection), self._fetch)
        self._checked = True
        return report.added

    def check_for_search(self) -> None:
        """Warn once when the index looks out of step (a search never writes; the next write repairs)."""
        if self._warned:
            return
        self._warned = True
        lexical, chroma = self.lexical.count(), self.collection.count()
        if self.lexical.needs_repair or lexical != chroma:
            logger.warning(
                "the lexical index at %s is out of step with Chroma (%d vs %d records%s): lexical and hybrid "
                "results may miss records; the next index run repairs it, or run: umr index --rebuild-lexical",
                self.path, lexical, chroma, ", an interrupted write" if self.lexical.needs_repair else "",
            )
