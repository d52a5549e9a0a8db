"""In-process rendering of PDFs and images into :class:`Page` records.

This module does the actual work; :mod:`umr.documents.workers` runs it in worker processes
with time and memory limits.  Use :func:`iter_pages` directly only for files you trust (a
hostile PDF can hang or crash the interpreter that renders it).

Pixel budgets are enforced *before* anything large is allocated: the PDF zoom is computed from
the page rectangle so that the pixmap has at most ``max_pixels`` pixels, and image headers are
checked against a decompression-bomb limit before any pixel is decoded.

With a :class:`~umr.documents.plan.RenderPlan` (planned-size rendering) a PDF or SVG page is drawn
at the size the embedder would resize its budget-fitted render to (see :mod:`umr.documents.plan`),
never over the budget; raster images are decoded and downscaled as without one.
"""

from __future__ import annotations

import io
import logging
import math
import re
import warnings
from collections.abc import Iterator
from typing import Any

from PIL import Image, ImageFile, ImageOps

from .paths import PathLike, _as_str, check_regular, file_sha256, safe_display
from .plan import RenderPlan
from .records import (
    CORRUPT,
    ENCRYPTED,
    INTERNAL,
    MEMORY,
    TOO_LARGE,
    UNREADABLE,
    UNSUPPORTED,
    ZERO_PAGES,
    DocumentError,
    DocumentKind,
    Page,
)

logger = logging.getLogger(__name__)

#: GME / Qwen2-VL document budget (1280 visual tokens of 28x28 pixels).
DEFAULT_MAX_PIXELS = 1280 * 28 * 28
#: Largest source image (in pixels) that is decoded at all; Pillow's own default.
MAX_IMAGE_PIXELS = 178_956_970
#: Pages / images more elongated than this are clipped (top / left part kept).
MAX_ASPECT = 200.0
#: PDF pages are rendered at most at this resolution, even if the budget allows more.
MAX_DPI = 300.0
#: Text layers are cut at this many characters.
MAX_TEXT_CHARS = 200_000
#: Bump when rendering changes so that content-derived ids change with it.
RENDER_VERSION = "1"

MIN_PIXELS_BUDGET = 1024

_MEMORY_HINT = "downscale or check the file, or raise the worker memory_limit"

_IMAGE_FORMATS = {"PNG", "JPEG", "GIF", "WEBP", "TIFF", "BMP"}


# --------------------------------------------------------------------------- sniffing


def sniff(head: bytes) -> tuple[DocumentKind, str]:
    """Tell the document type from the first bytes of a file (never from its name).

    Returns ``("pdf", "PDF")`` or ``("image", FORMAT)`` with a Pillow format name; raises
    :class:`DocumentError` (``unsupported``) otherwise, with a hint about what it looks like.
    """
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image", "PNG"
    if head.startswith(b"\xff\xd8\xff"):
        return "image", "JPEG"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "image", "GIF"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image", "WEBP"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "image", "TIFF"
    if head[:2] == b"BM" and len(head) >= 26:
        return "image", "BMP"
    # The PDF header may follow some junk; readers accept it within the first 1024 bytes.
    if b"%PDF-" in head[:1024]:
        return "pdf", "PDF"
    if _looks_like_svg(head):
        return "image", "SVG"
    raise DocumentError(UNSUPPORTED, _unsupported_reason(head))


_SVG_START = re.compile(
    rb"(?:\s|<\?xml[^>]*\?>|<!--.*?-->|<!doctype[^\[>]*(?:\[.*?\])?\s*>)*<svg[\s>/]", re.IGNORECASE | re.DOTALL
)


def _looks_like_svg(head: bytes) -> bool:
    """An SVG document: its first element is ``<svg``, after an optional XML declaration, comments and
    doctype.  (Rendered by MuPDF, which never loads the images it links to.)"""
    text = head[3:] if head.startswith(b"\xef\xbb\xbf") else head
    return _SVG_START.match(text[:1024]) is not None


def _unsupported_reason(head: bytes) -> str:
    supported = "PDF, PNG, JPEG, WebP, TIFF, BMP, GIF, SVG"
    if head.startswith(b"PK\x03\x04"):
        what = "a ZIP container (Office document, EPUB, archive?)"
    elif head[:4] in (b"\x1f\x8b\x08\x00", b"\x1f\x8b\x08\x08") or head[:2] == b"\x1f\x8b":
        what = "gzip-compressed data"
    elif head[:5] == b"<?xml" or head.lstrip()[:5].lower() in (b"<html", b"<!doc"):
        what = "XML/HTML text"
    elif _looks_like_text(head):
        what = "plain text"
    else:
        what = "unrecognised binary data"
    return (
        f"not a supported document (content looks like {what}; supported: {supported}); "
        "convert it to PDF or an image first, or leave it out"
    )


def _looks_like_text(head: bytes) -> bool:
    if not head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return b"\x00" not in head


def read_head(path: PathLike, n: int = 1024) -> bytes:
    try:
        with open(_as_str(path), "rb") as fh:
            return fh.read(n)
    except OSError as exc:
        raise DocumentError(UNREADABLE, f"cannot read file ({exc.strerror}): check permissions") from None


# --------------------------------------------------------------------------- budgets


def validate_max_pixels(max_pixels: int) -> int:
    max_pixels = int(max_pixels)
    if max_pixels < MIN_PIXELS_BUDGET:
        raise ValueError(f"max_pixels must be at least {MIN_PIXELS_BUDGET}, got {max_pixels}")
    return max_pixels


def fit_size(width: int, height: int, max_pixels: int) -> tuple[int, int]:
    """Largest size with the aspect ratio of ``width x height`` and at most ``max_pixels``
    pixels, never larger than the input (images are only scaled down)."""
    if width * height <= max_pixels:
        return width, height
    scale = math.sqrt(max_pixels / (width * height))
    w = max(1, int(width * scale))
    h = max(1, int(height * scale))
    while w * h > max_pixels:  # floating point safety; at most a step or two
        if w >= h:
            w -= 1
        else:
            h -= 1
    return w, h


def pdf_zoom(width_pt: float, height_pt: float, max_pixels: int, max_zoom: float = MAX_DPI / 72.0) -> float:
    """Zoom factor so that a ``width_pt x height_pt`` area renders within ``max_pixels``."""
    return min(math.sqrt(max_pixels / (width_pt * height_pt)), max_zoom)


def _clean_text(text: str, limit: int = MAX_TEXT_CHARS) -> str:
    if not text:
        return ""
    text = text.replace("\x00", "")
    if len(text) > limit:
        text = text[:limit]
    # Lone surrogates (broken PDF strings) cannot be stored as UTF-8.
    return text.encode("utf-8", "replace").decode("utf-8")


# --------------------------------------------------------------------------- documents


class OpenedDocument:
    """An opened PDF or image; iterate :meth:`pages` once, then :meth:`close`.

    Use :func:`open_document` to make one.  ``page_count``, ``sha256``, ``kind``, ``title`` and
    ``author`` are known as soon as it is open.
    """

    source: str
    sha256: str
    kind: DocumentKind
    page_count: int
    title: str
    author: str

    def pages(self) -> Iterator[Page]:  # pragma: no cover - abstract
        raise NotImplementedError

    def close(self) -> None:  # pragma: no cover - abstract
        pass

    def __enter__(self) -> OpenedDocument:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_document(
    path: PathLike,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    sha256: str | None = None,
    text: bool = True,
    max_image_pixels: int = MAX_IMAGE_PIXELS,
    plan: RenderPlan | None = None,
) -> OpenedDocument:
    """Open ``path`` as a PDF or image (type from magic bytes).  Raises :class:`DocumentError`.

    ``plan``: draw PDF / SVG pages at the embedder's planned size (planned-size rendering; within
    ``max_pixels`` still); ``None``: with the uniform zoom that fits the budget."""
    max_pixels = validate_max_pixels(max_pixels)
    source = _as_str(path)
    check_regular(source)
    kind, fmt = sniff(read_head(source))
    digest = sha256 or file_sha256(source)
    try:
        if kind == "pdf" or fmt == "SVG":  # MuPDF renders SVG like a one-page PDF
            return _PdfDocument(source, digest, max_pixels, text, fmt=fmt, plan=plan)
        return _ImageDocument(source, digest, fmt, max_pixels, max_image_pixels)
    except DocumentError as exc:
        exc.sha256 = exc.sha256 or digest
        exc.source = source
        raise


def iter_pages(
    path: PathLike,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    *,
    text: bool = True,
    max_image_pixels: int = MAX_IMAGE_PIXELS,
    plan: RenderPlan | None = None,
) -> Iterator[Page]:
    """Render the pages of one PDF or image file in this process, one at a time (``plan``: see
    :func:`open_document`).

    Raises :class:`DocumentError` for a bad file (possibly after some pages were yielded).
    For untrusted files prefer :func:`umr.documents.render_files`, which isolates rendering in
    worker processes with time and memory limits.
    """
    doc = open_document(path, max_pixels=max_pixels, text=text, max_image_pixels=max_image_pixels, plan=plan)
    with doc:
        try:
            yield from doc.pages()
        except DocumentError as exc:
            exc.sha256 = exc.sha256 or doc.sha256
            exc.source = doc.source
            raise
        except MemoryError:
            raise DocumentError(
                MEMORY,
                "ran out of memory while rendering: check the file",
                source=doc.source,
                sha256=doc.sha256,
            ) from None


# --------------------------------------------------------------------------- PDF


def _pymupdf() -> Any:
    try:
        import pymupdf
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ImportError("PDF support needs PyMuPDF: pip install 'umr[pdf]'") from exc
    return pymupdf


class _PdfDocument(OpenedDocument):
    """A PDF, or (``fmt="SVG"``) an SVG drawing, which MuPDF opens as a one-page document."""

    def __init__(
        self, source: str, sha256: str, max_pixels: int, text: bool, fmt: str = "PDF",
        plan: RenderPlan | None = None,
    ) -> None:
        pymupdf = _pymupdf()
        self.source, self.sha256 = source, sha256
        self.kind = "pdf" if fmt == "PDF" else "image"
        self._max_pixels, self._text, self._plan = max_pixels, text, plan
        filetype = fmt.lower()
        try:
            try:
                source.encode("utf-8")
                doc = pymupdf.open(source, filetype=filetype)
            except UnicodeEncodeError:  # non-UTF-8 name: MuPDF wants UTF-8, hand it the bytes
                with open(source, "rb") as fh:
                    doc = pymupdf.open(stream=fh.read(), filetype=filetype)
        except MemoryError:
            raise DocumentError(MEMORY, f"ran out of memory while opening the {fmt}: {_MEMORY_HINT}") from None
        except Exception as exc:
            repair = (
                "repair it (qpdf in.pdf out.pdf, or mutool clean in.pdf out.pdf) and index it again"
                if fmt == "PDF" else "re-export it"
            )
            raise DocumentError(
                CORRUPT, f"corrupt or unreadable {fmt} ({_mupdf_message(exc, source)}): {repair}"
            ) from None
        self._doc = doc
        if doc.needs_pass:
            doc.close()
            raise DocumentError(
                ENCRYPTED,
                "encrypted (password-protected) PDF: decrypt it first "
                "(qpdf --decrypt --password=PASSWORD in.pdf out.pdf) and index the copy",
            )
        try:
            self.page_count = int(doc.page_count)
        except Exception as exc:
            doc.close()
            raise DocumentError(
                CORRUPT, f"cannot count the pages of the PDF ({_mupdf_message(exc)}): repair it"
            ) from None
        if self.page_count <= 0:
            doc.close()
            raise DocumentError(ZERO_PAGES, "the PDF has no pages: nothing to index")
        meta = doc.metadata or {}
        self.title = _clean_text(str(meta.get("title") or ""), 1000)
        self.author = _clean_text(str(meta.get("author") or ""), 1000)

    def close(self) -> None:
        doc, self._doc = getattr(self, "_doc", None), None
        if doc is not None:
            doc.close()

    def pages(self) -> Iterator[Page]:
        for index in range(self.page_count):
            yield self._render(index)

    def _render(self, index: int) -> Page:
        pymupdf = _pymupdf()
        number = index + 1
        try:
            page = self._doc.load_page(index)
            rect = page.rect
            width, height = float(rect.width), float(rect.height)
            if not (math.isfinite(width) and math.isfinite(height)) or width <= 0 or height <= 0:
                raise DocumentError(
                    CORRUPT, f"page {number} has an invalid size ({width}x{height} pt): repair the PDF"
                )
            clip = None
            if width / height > MAX_ASPECT:
                width = height * MAX_ASPECT
                clip = pymupdf.Rect(rect.x0, rect.y0, rect.x0 + width, rect.y1)
            elif height / width > MAX_ASPECT:
                height = width * MAX_ASPECT
                clip = pymupdf.Rect(rect.x0, rect.y0, rect.x1, rect.y0 + height)
            if clip is not None:
                logger.warning(
                    "%s page %d is %.0fx%.0f pt; rendering only its first %.0fx%.0f pt (aspect ratio cap %g)",
                    safe_display(self.source),
                    number,
                    rect.width,
                    rect.height,
                    width,
                    height,
                    MAX_ASPECT,
                )
            area = clip if clip is not None else rect
            zoom = pdf_zoom(width, height, self._max_pixels)
            for _ in range(100):  # shrink until MuPDF's rounded-out pixel box fits the budget
                box = pymupdf.Rect(area).transform(pymupdf.Matrix(zoom, zoom)).irect
                if box.width * box.height <= self._max_pixels:
                    break
                zoom *= 0.995
            else:  # pragma: no cover - geometry guarantees a fit long before
                raise DocumentError(TOO_LARGE, f"page {number} cannot be fitted to the pixel budget")
            matrix = pymupdf.Matrix(zoom, zoom)
            target = None
            if self._plan is not None:  # planned size: what the embedder would resize the fitted render to
                target = self._plan.target_size(int(box.width), int(box.height), self._max_pixels)
                if target is not None:
                    target = (int(target[0]), int(target[1]))
                    if target[0] < 1 or target[1] < 1 or target[0] * target[1] > self._max_pixels:
                        target = None  # never over the budget, whatever a plan says
                if target is not None:
                    matrix = _planned_matrix(pymupdf, area, target)
            pix = page.get_pixmap(matrix=matrix, clip=clip, alpha=False, colorspace=pymupdf.csRGB)
            if pix.width * pix.height > self._max_pixels or pix.width < 1 or pix.height < 1:
                raise DocumentError(TOO_LARGE, f"page {number} rendered outside the pixel budget")
            image = Image.frombytes("RGB", (pix.width, pix.height), pix.samples)
            del pix
            if target is not None and image.size != target:  # pragma: no cover - _planned_matrix checks the box
                logger.debug("page %d rendered %s, planned %s: resized", number, image.size, target)
                image = image.resize(target, Image.Resampling(self._plan.resample))  # type: ignore[union-attr]
            text = _clean_text(page.get_text("text")) if self._text else ""
        except DocumentError:
            raise
        except MemoryError:
            raise DocumentError(
                MEMORY, f"ran out of memory rendering page {number}: check the file"
            ) from None
        except Exception as exc:
            raise DocumentError(
                CORRUPT,
                f"page {number} could not be rendered ({_mupdf_message(exc)}): repair the PDF "
                "(qpdf in.pdf out.pdf, or mutool clean) and index it again",
            ) from None
        return Page(
            source=self.source,
            sha256=self.sha256,
            page=number,
            page_count=self.page_count,
            width=image.width,
            height=image.height,
            image=image,
            text=text,
            title=self.title,
            author=self.author,
            kind=self.kind,
        )


def _planned_matrix(pymupdf: Any, area: Any, target: tuple[int, int]) -> Any:
    """A matrix that maps ``area`` (page points) onto exactly ``target`` pixels: each axis scaled to its
    side, the box shifted onto whole pixels, and a scale nudged by a hair where MuPDF's rounding of the
    pixel box still misses a side (checked on the box MuPDF computes, before anything is drawn)."""
    rect = pymupdf.Rect(area)
    tw, th = target
    sx, sy = tw / rect.width, th / rect.height
    matrix = pymupdf.Matrix(sx, sy)
    for step in range(1, 9):
        moved = rect * pymupdf.Matrix(sx, sy)  # a new rect (Rect.transform changes rect in place)
        matrix = pymupdf.Matrix(sx, 0, 0, sy, round(moved.x0) - moved.x0, round(moved.y0) - moved.y0)
        box = (rect * matrix).irect
        if (box.width, box.height) == (tw, th):
            return matrix
        sx *= 1 - step * 2e-3 * (box.width - tw) / tw  # moves the far edge by step * 0.002 px
        sy *= 1 - step * 2e-3 * (box.height - th) / th
    return matrix  # pragma: no cover - the caller resizes the pixmap to the target


def _mupdf_message(exc: BaseException, source: str = "") -> str:
    """First line of an exception message, without the file's path, printable."""
    msg = str(exc).strip().splitlines()
    text = msg[0] if msg else type(exc).__name__
    if source:
        text = text.replace(f" '{source}'", "").replace(source, "<file>")
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text[:200]


# --------------------------------------------------------------------------- images

#: zlib level of stored page PNGs: 1 is the cheapest that still compresses (level 0 stores ~12x the
#: bytes for little less CPU, most of the cost being PNG's row filtering); higher levels cost 1.3-2.5x.
PNG_COMPRESS_LEVEL = 1


def png_bytes(image: Image.Image) -> bytes:
    """A page image as PNG (lossless: decoding gives the same pixels), as the page-image store keeps it."""
    buf = io.BytesIO()
    image.save(buf, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    return buf.getvalue()



def _to_rgb(image: Image.Image) -> Image.Image:
    """RGB copy of ``image``; transparency is composited on white (pages are paper)."""
    if image.mode == "RGB":
        return image
    has_alpha = image.mode in ("RGBA", "LA", "RGBa", "La", "PA") or (
        image.mode == "P" and "transparency" in image.info
    )
    if has_alpha:
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        image = image.point(lambda v: v * (1 / 256)).convert("L")  # 16-bit greyscale
    return image.convert("RGB")


def downscale(image: Image.Image, max_pixels: int) -> Image.Image:
    """Downscale ``image`` (any mode) to at most ``max_pixels`` pixels, as RGB."""
    target = fit_size(image.width, image.height, max_pixels)
    image = _to_rgb(image)
    if target != image.size:
        factor = min(image.width // target[0], image.height // target[1])
        if factor >= 2:
            image = image.reduce(factor)  # cheap box reduction first, then a good filter
        image = image.resize(target, Image.Resampling.LANCZOS)
    return image


def check_image_header(width: int, height: int, max_image_pixels: int, what: str = "image") -> None:
    if width <= 0 or height <= 0:
        raise DocumentError(CORRUPT, f"{what} has an invalid size {width}x{height}: the file is damaged")
    if width * height > max_image_pixels:
        raise DocumentError(
            TOO_LARGE,
            f"{what} is {width}x{height} = {width * height:,} pixels, over the limit of "
            f"{max_image_pixels:,} (decompression-bomb guard): downscale it first "
            "(e.g. vips resize, or magick in.png -resize 50% out.png) or raise max_image_pixels",
        )


class _ImageDocument(OpenedDocument):
    def __init__(self, source: str, sha256: str, fmt: str, max_pixels: int, max_image_pixels: int) -> None:
        self.source, self.sha256, self.kind = source, sha256, "image"
        self.title = self.author = ""
        self._max_pixels, self._max_image_pixels = max_pixels, max_image_pixels
        self._image: Image.Image | None = None
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                image = Image.open(source, formats=[fmt] if fmt in _IMAGE_FORMATS else None)
        except Image.DecompressionBombError as exc:
            raise DocumentError(
                TOO_LARGE, f"image too large ({exc}); decompression-bomb guard: downscale it first"
            ) from None
        except MemoryError:
            raise DocumentError(
                MEMORY, f"ran out of memory while opening the image: {_MEMORY_HINT}"
            ) from None
        except Exception as exc:
            raise DocumentError(
                CORRUPT, f"corrupt or unreadable {fmt} image ({_mupdf_message(exc)}): re-export it"
            ) from None
        self._image = image
        try:
            check_image_header(image.width, image.height, max_image_pixels)
            frames = int(getattr(image, "n_frames", 1) or 1) if image.format == "TIFF" else 1
        except DocumentError:
            image.close()
            raise
        self.page_count = max(1, frames)

    def close(self) -> None:
        image, self._image = self._image, None
        if image is not None:
            image.close()

    def pages(self) -> Iterator[Page]:
        assert self._image is not None
        for index in range(self.page_count):
            yield self._frame(index)

    def _frame(self, index: int) -> Page:
        image = self._image
        assert image is not None
        number = index + 1
        what = "image" if self.page_count == 1 else f"frame {number} of the image"
        try:
            if index:
                image.seek(index)
            check_image_header(image.width, image.height, self._max_image_pixels, what)
            if image.format == "JPEG":
                image.draft("RGB", fit_size(image.width, image.height, self._max_pixels))
            previous = ImageFile.LOAD_TRUNCATED_IMAGES
            ImageFile.LOAD_TRUNCATED_IMAGES = False
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                    image.load()
                    frame = ImageOps.exif_transpose(image) or image
            finally:
                ImageFile.LOAD_TRUNCATED_IMAGES = previous
            out = downscale(frame, self._max_pixels)
            if out is image:
                out = image.copy()
        except DocumentError:
            raise
        except MemoryError:
            raise DocumentError(MEMORY, f"ran out of memory decoding the {what}: {_MEMORY_HINT}") from None
        except Image.DecompressionBombError as exc:
            raise DocumentError(TOO_LARGE, f"{what} too large ({exc}): downscale it first") from None
        except (OSError, ValueError, SyntaxError, EOFError) as exc:
            raise DocumentError(
                CORRUPT,
                f"corrupt or truncated {what} ({_mupdf_message(exc, self.source)}): re-export or re-download it",
            ) from None
        except Exception as exc:  # pragma: no cover - decoder bugs
            raise DocumentError(INTERNAL, f"cannot decode the {what} ({type(exc).__name__}: {exc})") from None
        return Page(
            source=self.source,
            sha256=self.sha256,
            page=number,
            page_count=self.page_count,
            width=out.width,
            height=out.height,
            image=out,
            text="",
            title="",
            author="",
            kind="image",
        )


def load_image(
    path: PathLike,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    *,
    max_image_pixels: int = MAX_IMAGE_PIXELS,
    plan: RenderPlan | None = None,
) -> Image.Image:
    """First page/frame of an image or PDF file, within the pixel budget (in process; ``plan``: see
    :func:`open_document`)."""
    pages = iter_pages(path, max_pixels, text=False, max_image_pixels=max_image_pixels, plan=plan)
    try:
        return next(pages).image
    except StopIteration:  # pragma: no cover - open_document refuses zero-page files
        raise DocumentError(ZERO_PAGES, "no pages") from None
    finally:
        pages.close()
