"""Generators for good and hostile documents used by the ingestion and store tests.

Everything is generated at test time (no binaries in the repository).
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path

import pymupdf
from PIL import Image


def make_pdf(
    path: str | os.PathLike | bytes,
    pages: int = 3,
    size: tuple[float, float] = (595, 842),
    text: str = "page",
    title: str = "",
    author: str = "",
) -> bytes:
    """A small PDF whose page ``i`` carries ``f"{text} {i}"``; returns its bytes."""
    doc = pymupdf.open()
    for i in range(1, pages + 1):
        page = doc.new_page(width=size[0], height=size[1])
        page.insert_text((36, 72), f"{text} {i}", fontsize=24)
        page.draw_rect(pymupdf.Rect(36, 100, size[0] - 36, 160), color=(0, 0, 1), fill=(i / pages, 0.5, 0.2))
    if title or author:
        doc.set_metadata({"title": title, "author": author})
    data = doc.tobytes(deflate=True)
    doc.close()
    with open(path, "wb") as fh:
        fh.write(data)
    return data


def make_encrypted_pdf(path: str | os.PathLike) -> None:
    doc = pymupdf.open()
    doc.new_page().insert_text((72, 72), "secret")
    doc.save(os.fspath(path), encryption=pymupdf.PDF_ENCRYPT_AES_256, user_pw="user", owner_pw="owner")
    doc.close()


def _raw_pdf(objects: list[bytes]) -> bytes:
    """A PDF with a correct xref table from ``objects`` (object 1 is the catalog)."""
    out = io.BytesIO()
    out.write(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n" % number + body + b"\nendobj\n")
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    for off in offsets:
        out.write(b"%010d 00000 n \n" % off)
    out.write(b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref))
    return out.getvalue()


def make_zero_page_pdf(path: str | os.PathLike) -> None:
    Path(path).write_bytes(
        _raw_pdf([b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [] /Count 0 >>"])
    )


def make_giant_page_pdf(path: str | os.PathLike, width: float = 200_000, height: float = 200_000) -> None:
    """One page whose MediaBox is ``width x height`` points (far beyond the PDF spec's 14400)."""
    content = b"0 0 1 rg 0 0 %d %d re f" % (int(width / 2), int(height / 2))
    Path(path).write_bytes(
        _raw_pdf(
            [
                b"<< /Type /Catalog /Pages 2 0 R >>",
                b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
                b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 %d %d] /Contents 4 0 R >>"
                % (int(width), int(height)),
                b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream",
            ]
        )
    )


def _png_chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)


def make_bomb_png(path: str | os.PathLike, width: int = 100_000, height: int = 100_000) -> None:
    """A valid PNG header claiming ``width x height`` RGB pixels, with almost no data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    Path(path).write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", idat)
        + _png_chunk(b"IEND", b"")
    )


def make_png(
    path: str | os.PathLike | bytes, size: tuple[int, int] = (640, 480), color: tuple = (200, 30, 30)
) -> None:
    Image.new("RGB", size, color).save(os.fsdecode(path), format="PNG")


def build_hostile_corpus(root: Path) -> dict[str, str]:
    """Write good and bad files under ``root``; returns {basename: expected outcome}.

    Outcome is ``"ok"`` or the expected ``FileError.kind``; ``"corrupt|ok"`` means MuPDF may repair it.
    """
    root.mkdir(parents=True, exist_ok=True)
    expected: dict[str, str] = {}
    make_pdf(root / "good.pdf", pages=3, text="good")
    expected["good.pdf"] = "ok"
    make_png(root / "good.png")
    expected["good.png"] = "ok"
    # A PNG named .pdf: the type comes from the content, not the name.
    make_png(root / "png-named.pdf", color=(0, 90, 0))
    expected["png-named.pdf"] = "ok"
    make_encrypted_pdf(root / "encrypted.pdf")
    expected["encrypted.pdf"] = "encrypted"
    (root / "corrupt.pdf").write_bytes(b"%PDF-1.7\n" + os.urandom(2048))
    expected["corrupt.pdf"] = "corrupt"
    data = make_pdf(root / "tmp-full.pdf", pages=4, text="truncated")
    (root / "tmp-full.pdf").unlink()
    (root / "truncated.pdf").write_bytes(data[: len(data) // 3])
    expected["truncated.pdf"] = "corrupt|ok"
    (root / "empty.pdf").write_bytes(b"")
    expected["empty.pdf"] = "empty"
    make_zero_page_pdf(root / "zero-pages.pdf")
    expected["zero-pages.pdf"] = "zero_pages"
    (root / "text.pdf").write_text("this is not a PDF at all\n")
    expected["text.pdf"] = "unsupported"
    os.mkfifo(root / "fifo.pdf")
    expected["fifo.pdf"] = "not_regular"
    os.symlink(root / "missing-target.pdf", root / "dangling.pdf")
    expected["dangling.pdf"] = "not_found"
    make_bomb_png(root / "bomb.png")
    expected["bomb.png"] = "too_large"
    make_giant_page_pdf(root / "giant-page.pdf")
    expected["giant-page.pdf"] = "ok"
    weird = os.fsencode(root) + b"/caf\xe9-latin1.pdf"
    make_pdf(weird, pages=2, text="latin1 name")
    expected[os.fsdecode(b"caf\xe9-latin1.pdf")] = "ok"
    make_pdf(root / "new\nline.pdf", pages=1, text="newline name")
    expected["new\nline.pdf"] = "ok"
    # A raw 0xff byte, and a name spelling it with a literal backslash: two files, two stored names.
    make_pdf(os.fsencode(root) + b"/bad\xff.pdf", pages=1, text="raw byte name")
    expected[os.fsdecode(b"bad\xff.pdf")] = "ok"
    make_pdf(root / "bad\\xff.pdf", pages=2, text="literal backslash name")
    expected["bad\\xff.pdf"] = "ok"
    # A byte-identical copy: shares the pages of good.pdf, listed under both paths.
    (root / "good-copy.pdf").write_bytes((root / "good.pdf").read_bytes())
    expected["good-copy.pdf"] = "ok"
    # SVG: rendered by MuPDF, which never loads what the drawing links to (here a file outside).
    (root / "drawing.svg").write_text(make_svg(link=str(root.parent / "outside.png")))
    expected["drawing.svg"] = "ok"
    (root / "not-really.svg").write_text('<?xml version="1.0"?>\n<html><body>xml, not svg</body></html>\n')
    expected["not-really.svg"] = "unsupported"
    return expected


def make_svg(text: str = "diagram", link: str = "") -> str:
    """A small SVG drawing; ``link`` adds an ``<image>`` that refers to that file."""
    image = f'<image x="150" y="0" width="100" height="100" href="{link}"/>' if link else ""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<svg xmlns="http://www.w3.org/2000/svg" width="300" height="200">'
        f'<rect x="10" y="10" width="120" height="80" fill="navy"/>{image}'
        f'<text x="20" y="150" font-size="20">{text}</text></svg>\n'
    )
