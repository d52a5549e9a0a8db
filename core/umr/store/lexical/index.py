"""A persistent, updatable BM25 index of record texts on tantivy, with the same ids as the Chroma collection.

Layout of its folder: ``config.json`` (tokeniser settings and format, written first and atomically),
``index/`` (tantivy's files; a commit is atomic, so a kill at any moment leaves the last commit), a
``PENDING`` marker present while a write session is open (a killed run leaves it: the next writer
compares ids with Chroma and fills the missing side, see :meth:`LexicalIndex.sync`) and a lock file
(one writer at a time, across processes; a killed writer's lock is released by the OS).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from umr.errors import LexicalIndexError, QueryError

from .filters import FIELD as META_FIELD
from .filters import FilterTranslator, metadata_terms
from .tokens import TOKENIZER_VERSION, query_groups, tokenize

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
#: distinct terms searched per query at most (a longer query is cut, with a warning)
MAX_QUERY_TERMS = 1024
#: tantivy's snowball stemmers
LANGUAGES = (
    "arabic",
    "danish",
    "dutch",
    "english",
    "finnish",
    "french",
    "german",
    "greek",
    "hungarian",
    "italian",
    "norwegian",
    "portuguese",
    "romanian",
    "russian",
    "spanish",
    "swedish",
    "tamil",
    "turkish",
)
_ANALYZER = "umr_words"


def _tantivy() -> Any:
    try:
        import tantivy
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ImportError("the lexical index needs tantivy: pip install 'umr[lexical]'") from exc
    return tantivy


@dataclass(frozen=True)
class LexicalConfig:
    """How text is turned into terms.  Fixed when the index is created (changing it needs a rebuild).

    ``language``: a snowball stemmer (one of :data:`LANGUAGES`) or ``None`` for none.
    ``fold_accents``: ``café`` and ``cafe`` are one term.
    """

    language: str | None = None
    fold_accents: bool = True

    def __post_init__(self) -> None:
        if self.language is not None and self.language not in LANGUAGES:
            raise ValueError(
                f"language {self.language!r} has no stemmer; choose one of {', '.join(LANGUAGES)} or None"
            )


@dataclass(frozen=True)
class LexicalRecord:
    """One record to index: its id (the Chroma id), its text and its scalar metadata (for filters)."""

    id: str
    text: str
    metadata: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class LexicalHit:
    id: str
    score: float


@dataclass(frozen=True)
class SyncReport:
    """What :meth:`LexicalIndex.sync` did: records added (missing here) and removed (gone from the truth)."""

    added: int
    removed: int

    @property
    def changed(self) -> bool:
        return bool(self.added or self.removed)


def _write_json_atomic(path: Path, data: Mapping[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=1, sort_keys=True)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


class LexicalWriter:
    """Stages upserts and deletes; they become visible at the next commit (the session's end, or every
    ``commit_every`` seconds while it runs).  Get one from :meth:`LexicalIndex.writer`."""

    def __init__(self, index: LexicalIndex, commit_every: float, recovering: bool = False) -> None:
        self._index = index
        #: the previous session did not end cleanly (a killed run): compare with Chroma before trusting it
        self.recovering = recovering
        self._writer = index._tantivy_index.writer(heap_size=64_000_000, num_threads=1)
        self._commit_every = commit_every
        self._last_commit = time.monotonic()
        self.staged = 0

    def upsert(self, records: Iterable[LexicalRecord]) -> int:
        """Add records, replacing any with the same id.  Returns how many were staged."""
        n = 0
        for rec in records:
            if not isinstance(rec.text, str):
                raise TypeError(f"record {rec.id!r}: text must be str, got {type(rec.text).__name__}")
            self._writer.delete_documents_by_term("id", rec.id)
            self._writer.add_document(self._index._document(rec))
            n += 1
        self.staged += n
        self._maybe_commit()
        return n

    def delete(self, ids: Iterable[str]) -> int:
        n = 0
        for rid in ids:
            self._writer.delete_documents_by_term("id", rid)
            n += 1
        self.staged += n
        self._maybe_commit()
        return n

    def delete_source(self, source: str) -> None:
        """Delete every record whose metadata ``source`` is ``source``."""
        query, exact = self._index._filters.translate({"source": source})
        if query is None or not exact:
            raise ValueError(f"cannot delete by source {source!r}: not an indexed metadata value")
        self._writer.delete_documents_by_query(query)
        self.staged += 1
        self._maybe_commit()

    def clear(self) -> None:
        """Delete every record (a rebuild then adds them again)."""
        self._writer.delete_all_documents()
        self.staged += 1

    def commit(self) -> None:
        if self.staged:
            self._writer.commit()
            self.staged = 0
        self._last_commit = time.monotonic()

    def _maybe_commit(self) -> None:
        if time.monotonic() - self._last_commit >= self._commit_every:
            self.commit()

    def _close(self, commit: bool) -> None:
        try:
            if commit:
                self.commit()
            else:
                self._writer.rollback()
        finally:
            try:
                self._writer.wait_merging_threads()  # releases tantivy's writer lock
            finally:
                self._writer = None


class LexicalIndex:
    """BM25 search over record texts, kept in a folder beside a Chroma collection.

    ``config``: tokeniser settings for a new index; ``None`` opens an existing index with its own
    settings (a new one gets the defaults).  Passing settings that differ from an existing index's
    raises :class:`~umr.errors.LexicalIndexError` (rebuild it with the new settings).
    """

    def __init__(
        self, path: str | os.PathLike[str], config: LexicalConfig | None = None, *, commit_every: float = 10.0
    ) -> None:
        self._t = _tantivy()
        self.path = Path(os.fsdecode(path))
        self.commit_every = commit_every
        self.path.mkdir(parents=True, exist_ok=True)
        self.config = self._load_config(config)
        self._analyzer = self._build_analyzer()
        self._schema = self._build_schema()
        self._tantivy_index = self._open_tantivy()
        self._filters = FilterTranslator(self._tantivy_index.schema)
        self._session: LexicalWriter | None = None

    @classmethod
    def recreate(
        cls, path: str | os.PathLike[str], config: LexicalConfig | None = None, **kwargs: Any
    ) -> LexicalIndex:
        """An empty index at ``path`` (an existing one is removed first: moved aside atomically, then
        deleted, so a kill leaves either the old folder or none)."""
        folder = Path(os.fsdecode(path))
        if folder.exists():
            aside = folder.with_name(f".{folder.name}.removing-{os.getpid()}-{time.time_ns()}")
            os.replace(folder, aside)
            shutil.rmtree(aside, ignore_errors=True)
        return cls(folder, config, **kwargs)

    # ------------------------------------------------------------------ opening
    @property
    def _config_path(self) -> Path:
        return self.path / "config.json"

    @property
    def _pending_path(self) -> Path:
        return self.path / "PENDING"

    def _load_config(self, requested: LexicalConfig | None) -> LexicalConfig:
        if not self._config_path.exists():
            if (self.path / "index" / "meta.json").exists():
                raise LexicalIndexError(
                    f"lexical index at {self.path} has no config.json; delete the folder and rebuild it "
                    "(umr index --rebuild-lexical)"
                )
            config = requested or LexicalConfig()
            _write_json_atomic(
                self._config_path,
                {"format": FORMAT_VERSION, "tokenizer": TOKENIZER_VERSION, **asdict(config)},
            )
            return config
        try:
            data = json.loads(self._config_path.read_text(encoding="utf-8"))
            stored = LexicalConfig(
                language=data.get("language"), fold_accents=bool(data.get("fold_accents", True))
            )
        except (OSError, ValueError, TypeError) as exc:
            raise LexicalIndexError(
                f"cannot read {self._config_path}: {exc}; rebuild the lexical index "
                "(umr index --rebuild-lexical)"
            ) from exc
        if data.get("format") != FORMAT_VERSION or data.get("tokenizer") != TOKENIZER_VERSION:
            raise LexicalIndexError(
                f"lexical index at {self.path} was built by another version (format {data.get('format')}, "
                f"tokenizer {data.get('tokenizer')}; this is {FORMAT_VERSION}/{TOKENIZER_VERSION}): rebuild it "
                "(umr index --rebuild-lexical)"
            )
        if requested is not None and requested != stored:
            raise LexicalIndexError(
                f"lexical index at {self.path} was built with {stored}, not {requested}: open it without "
                "settings, or rebuild it with the new ones (umr index --rebuild-lexical)"
            )
        return stored

    def _build_analyzer(self) -> Any:
        t = self._t
        builder = t.TextAnalyzerBuilder(t.Tokenizer.whitespace())
        if self.config.language is not None:
            builder = builder.filter(t.Filter.stemmer(self.config.language))
        return builder.build()

    def _build_schema(self) -> Any:
        sb = self._t.SchemaBuilder()
        sb.add_text_field("id", stored=True, tokenizer_name="raw", index_option="basic")
        sb.add_text_field("text", stored=False, tokenizer_name=_ANALYZER, index_option="freq")
        sb.add_text_field(META_FIELD, stored=False, tokenizer_name="raw", index_option="basic")
        return sb.build()

    def _open_tantivy(self) -> Any:
        folder = self.path / "index"
        folder.mkdir(exist_ok=True)
        try:
            if self._t.Index.exists(str(folder)):
                index = self._t.Index.open(str(folder))
            else:
                index = self._t.Index(self._schema, path=str(folder))
        except Exception as exc:
            raise LexicalIndexError(
                f"cannot open the lexical index at {folder}: {exc}; delete the folder and rebuild it "
                "(umr index --rebuild-lexical)"
            ) from exc
        index.register_tokenizer(_ANALYZER, self._analyzer)
        return index

    # ------------------------------------------------------------------ state
    @property
    def in_session(self) -> bool:
        """True while this object has a write session open."""
        return self._session is not None

    @property
    def needs_repair(self) -> bool:
        """True when a write session did not end cleanly (a killed run): compare with Chroma (:meth:`sync`)."""
        return self._pending_path.exists()

    def _searcher(self) -> Any:
        self._tantivy_index.reload()
        return self._tantivy_index.searcher()

    def count(self) -> int:
        return int(self._searcher().num_docs)

    def ids(self) -> set[str]:
        """Every id in the index (committed state)."""
        s = self._searcher()
        n = s.num_docs
        if not n:
            return set()
        res = s.search(self._t.Query.all_query(), n, count=False)
        return {s.doc(addr)["id"][0] for _, addr in res.hits}

    # ------------------------------------------------------------------ writing
    def _document(self, rec: LexicalRecord) -> Any:
        doc = self._t.Document()
        doc.add_text("id", rec.id)
        doc.add_text("text", " ".join(tokenize(rec.text, fold_accents=self.config.fold_accents)))
        for term in metadata_terms(rec.metadata):
            doc.add_text(META_FIELD, term)
        return doc

    @contextlib.contextmanager
    def _file_lock(self) -> Iterator[None]:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows: tantivy's own lock refuses a second writer
            yield
            return
        with open(self.path / ".writer.lock", "a+b") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                logger.warning(
                    "another process is writing the lexical index at %s; waiting for it", self.path
                )
                fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    @contextlib.contextmanager
    def writer(self) -> Iterator[LexicalWriter]:
        """A write session: staged changes are committed at its end (also when the body raises: the
        caller mirrors writes that Chroma holds already).  Only a clean end clears the ``PENDING`` marker;
        nested sessions share the outer one."""
        if self._session is not None:
            yield self._session
            return
        with self._file_lock():
            recovering = self._pending_path.exists()
            fd = os.open(self._pending_path, os.O_CREAT | os.O_WRONLY, 0o644)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            session = LexicalWriter(self, self.commit_every, recovering)
            self._session = session
            clean = False
            try:
                yield session
                clean = True
            finally:
                self._session = None
                try:
                    session._close(commit=True)
                except Exception:
                    logger.exception("lexical index at %s: commit failed; the next run repairs it", self.path)
                    clean = False
                    raise
                finally:
                    if clean:
                        self._pending_path.unlink(missing_ok=True)

    def upsert(self, records: Iterable[LexicalRecord]) -> int:
        with self.writer() as w:
            return w.upsert(records)

    def delete(self, ids: Iterable[str]) -> int:
        with self.writer() as w:
            return w.delete(ids)

    def delete_source(self, source: str) -> None:
        with self.writer() as w:
            w.delete_source(source)

    def sync(
        self,
        expected_ids: Iterable[str],
        fetch: Callable[[list[str]], Iterable[LexicalRecord]],
        *,
        batch: int = 500,
    ) -> SyncReport:
        """Make this index hold exactly ``expected_ids`` (Chroma's): ids it lacks are fetched with
        ``fetch(ids)`` and added, ids Chroma no longer has are removed.  Clears ``needs_repair``."""
        expected = set(expected_ids)
        with self.writer() as w:
            w.commit()
            have = self.ids()
            missing = sorted(expected - have)
            extra = sorted(have - expected)
            w.delete(extra)
            added = 0
            for i in range(0, len(missing), batch):
                chunk = missing[i : i + batch]
                records = list(fetch(chunk))
                unknown = {r.id for r in records} - set(chunk)
                if unknown:
                    raise ValueError(f"fetch returned ids that were not asked for: {sorted(unknown)[:3]}")
                added += w.upsert(records)
        if added or extra:
            logger.info(
                "lexical index at %s repaired: %d record(s) added, %d removed", self.path, added, len(extra)
            )
        return SyncReport(added=added, removed=len(extra))

    # ------------------------------------------------------------------ search
    def _analyze(self, token: str) -> str:
        if self.config.language is None:
            return token
        out = self._analyzer.analyze(token)
        return out[0] if out else token

    def query_terms(self, query: str, searcher: Any | None = None) -> list[str]:
        """The index terms a plain-text query searches (no query syntax: every character is text).

        A compound token (a code) is searched whole when the index has it, else by its parts (a
        fragment of a code such as ``2024-0173``).  Raises :class:`~umr.errors.QueryError` when the
        query has no letters or digits.
        """
        if not isinstance(query, str):
            raise TypeError(f"a lexical query must be str, got {type(query).__name__}")
        s = searcher if searcher is not None else self._searcher()
        terms: dict[str, None] = {}
        for token, parts in query_groups(query, fold_accents=self.config.fold_accents):
            term = self._analyze(token)
            if not parts or s.doc_freq("text", term) > 0:
                terms[term] = None
            else:
                for p in parts:
                    terms[self._analyze(p)] = None
        if not terms:
            shown = query if len(query) <= 60 else query[:57] + "..."
            raise QueryError(f"query {shown!r} has no words or numbers to search for in the lexical index")
        out = list(terms)
        if len(out) > MAX_QUERY_TERMS:
            logger.warning("query has %d distinct terms; searching the first %d", len(out), MAX_QUERY_TERMS)
            out = out[:MAX_QUERY_TERMS]
        return out

    def filter_is_exact(self, where: Mapping[str, Any] | None) -> bool:
        """True when ``where`` is applied exactly by the index (else hits are a superset to check)."""
        return self._filters.translate(where)[1]

    def search(self, query: str, k: int = 10, where: Mapping[str, Any] | None = None) -> list[LexicalHit]:
        """Top-``k`` records by BM25 for a plain-text query, best first; ``where`` as in Chroma (see
        :mod:`umr.store.lexical.filters`: exact for equality, ``$ne``, ``$in``, ``$nin``, ``$and``,
        ``$or``; other operators are not applied here)."""
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be a positive int, got {k!r}")
        s = self._searcher()
        pre, _ = self._filters.translate(where)
        return self._run(s, self.query_terms(query, s), k, pre)

    def _run(self, s: Any, terms: list[str], k: int, restrict: Any | None) -> list[LexicalHit]:
        t = self._t
        should = [(t.Occur.Should, t.Query.term_query(self._schema, "text", x, index_option="freq")) for x in terms]
        q = t.Query.boolean_query(should)
        if restrict is not None:  # a filter that does not change the BM25 scores
            q = t.Query.boolean_query([(t.Occur.Must, q), (t.Occur.Must, t.Query.const_score_query(restrict, 0.0))])
        res = s.search(q, k, count=False)
        return [LexicalHit(s.doc(addr)["id"][0], float(score)) for score, addr in res.hits]

    def __repr__(self) -> str:
        return f"LexicalIndex({str(self.path)!r}, {self.config})"


def records_from_chroma(
    ids: Sequence[str], documents: Sequence[str | None], metadatas: Sequence[Mapping[str, Any] | None]
) -> list[LexicalRecord]:
    """Records from the columns of a Chroma ``get`` (documents may be ``None`` for image records)."""
    return [LexicalRecord(i, d or "", dict(m or {})) for i, d, m in zip(ids, documents, metadatas)]
