"""Records that the document pipeline yields: pages, per-file completion markers and errors.

Everything here is plain data (frozen dataclasses) so that it pickles across the worker
boundary and can be logged or stored without surprises.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from .names import safe_display

if TYPE_CHECKING:  # pragma: no cover - typing only
    from PIL import Image

DocumentKind = Literal["pdf", "image"]

# Error kinds (``FileError.kind``).  They are strings so that callers can filter on them and
# store them anywhere; the human explanation lives in ``FileError.reason``.
NOT_FOUND = "not_found"
NOT_REGULAR = "not_regular"
EMPTY = "empty"
UNSUPPORTED = "unsupported"
ENCRYPTED = "encrypted"
CORRUPT = "corrupt"
ZERO_PAGES = "zero_pages"
TOO_LARGE = "too_large"
TIMEOUT = "timeout"
CRASH = "crash"
MEMORY = "memory"
UNREADABLE = "unreadable"
INTERNAL = "internal"
INCOMPLETE = "incomplete"

ERROR_KINDS: frozenset[str] = frozenset(
    {
        NOT_FOUND,
        NOT_REGULAR,
        EMPTY,
        UNSUPPORTED,
        ENCRYPTED,
        CORRUPT,
        ZERO_PAGES,
        TOO_LARGE,
        TIMEOUT,
        CRASH,
        MEMORY,
        UNREADABLE,
        INTERNAL,
        INCOMPLETE,
    }
)


@dataclass(frozen=True, repr=False)
class Page:
    """One rendered page (a PDF page or an image frame).

    ``source`` is the path as given/walked (a ``str``; on POSIX it may hold surrogate escapes
    for non-UTF-8 bytes, use :func:`umr.documents.safe_display` to print it).  ``sha256`` is
    the hex digest of the whole file's bytes; ``page`` is 1-based.  ``width``/``height`` are the
    rendered image size in pixels, within the pixel budget the page was rendered with.
    """

    source: str
    sha256: str
    page: int
    page_count: int
    width: int
    height: int
    image: Image.Image
    text: str
    title: str
    author: str
    kind: DocumentKind
    #: the page image encoded as PNG already (by a render worker asked for it), else ``None``
    png: bytes | None = field(default=None, compare=False)

    def __repr__(self) -> str:
        return (
            f"Page(source={safe_display(self.source)!r}, page={self.page}/{self.page_count}, "
            f"size={self.width}x{self.height}, kind={self.kind!r}, sha256={self.sha256[:12]}…, "
            f"text={len(self.text)} chars)"
        )


@dataclass(frozen=True)
class FileDone:
    """Marks that every page of ``source`` has been yielded (``pages`` of them).

    ``skipped`` is true when the file was not rendered at all because the caller's ``skip``
    callback said it was already complete (then ``pages`` is 0).
    """

    source: str
    sha256: str
    pages: int
    skipped: bool = False


@dataclass(frozen=True)
class FileError:
    """A file that could not be (fully) rendered.

    ``kind`` is one of the ``ERROR_KINDS`` strings (``"encrypted"``, ``"timeout"``, ...);
    ``reason`` is a sentence for humans that says what went wrong and what to do.  ``sha256``
    is filled in when the file was read before the failure (pages of it may already have been
    yielded; a consumer that stores pages should drop them), else ``""``.
    """

    source: str
    reason: str
    kind: str
    sha256: str = field(default="")

    def __str__(self) -> str:
        return f"{safe_display(self.source)}: {self.reason}"


# Why a walk left an entry out (``NotIndexed.kind``): not failures, choices the caller can change.
HIDDEN = "hidden"
SYMLINKED_FOLDER = "symlinked_folder"
EXCLUDED = "excluded"
NOT_A_DOCUMENT = "not_a_document"

NOT_INDEXED_KINDS: frozenset[str] = frozenset({HIDDEN, SYMLINKED_FOLDER, EXCLUDED, NOT_A_DOCUMENT})


@dataclass(frozen=True)
class NotIndexed:
    """A file or folder that :func:`umr.documents.walk` left out on purpose (a hidden entry, a symbolic
    link to a folder, the store's own folder, a file whose name is not a document type), so that
    nothing is dropped without a word.  ``kind`` is one of ``NOT_INDEXED_KINDS``; ``reason`` says
    why and how to include it."""

    source: str
    reason: str
    kind: str

    def __str__(self) -> str:
        return f"{safe_display(self.source)}: {self.reason}"


class DocumentError(Exception):
    """Raised by the in-process API (:func:`umr.documents.iter_pages`) for a bad file."""

    def __init__(self, kind: str, reason: str, *, source: str = "", sha256: str = "") -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason
        self.source = source
        self.sha256 = sha256

    def to_record(self, source: str | None = None) -> FileError:
        return FileError(
            source=source if source is not None else self.source,
            reason=self.reason,
            kind=self.kind,
            sha256=self.sha256,
        )


RenderRecord = Page | FileDone | FileError
