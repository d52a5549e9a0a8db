from __future__ import annotations

import io
import os
from pathlib import Path

import pymupdf
import pytest
from PIL import Image

from tests.hostile_corpus import (
    make_bomb_png,
    make_encrypted_pdf,
    make_giant_page_pdf,
    make_pdf,
    make_zero_page_pdf,
)
from umr.documents import DocumentError, fit_size, iter_pages, load_image, sniff
from umr.documents.render import MAX_ASPECT

BUDGET = 200_000


def _error(path: Path, **kw) -> DocumentError:
    with pytest.raises(DocumentError) as info:
        list(iter_pages(path, BUDGET, **kw))
    return info.value


@pytest.mark.parametrize(
    ("head", "kind", "fmt"),
    [
        (b"%PDF-1.4\n", "pdf", "PDF"),
        (b"junk before header %PDF-1.7", "pdf", "PDF"),
        (b"\x89PNG\r\n\x1a\n....", "image", "PNG"),
        (b"\xff\xd8\xff\xe0", "image", "JPEG"),
        (b"GIF89a", "image", "GIF"),
        (b"RIFF\x00\x00\x00\x00WEBPVP8 ", "image", "WEBP"),
        (b"II*\x00", "image", "TIFF"),
        (b"MM\x00*", "image", "TIFF"),
        (b"BM" + b"\x00" * 30, "image", "BMP"),
        (b'<svg xmlns="http://www.w3.org/2000/svg">', "image", "SVG"),
        (b'\xef\xbb\xbf\n<?xml version="1.0"?>\n<!-- drawn -->\n<!DOCTYPE svg>\n<svg width="1">', "image", "SVG"),
    ],
)
def test_sniff_by_magic_bytes(head: bytes, kind: str, fmt: str) -> None:
    assert sniff(head) == (kind, fmt)


@pytest.mark.parametrize(
    ("head", "hint"),
    [
        (b"hello world\n", "plain text"),
        (b"PK\x03\x04rest", "ZIP"),
        (b'<?xml version="1.0"?><html><p>see <svg> here</p></html>', "XML/HTML"),
    ],
)
def test_sniff_refuses_other_content_with_a_hint(head: bytes, hint: str) -> None:
    with pytest.raises(DocumentError) as info:
        sniff(head)
    assert info.value.kind == "unsupported" and hint in info.value.reason and "convert" in info.value.reason


def test_fit_size_respects_budget_and_never_upscales() -> None:
    assert fit_size(100, 100, BUDGET) == (100, 100)
    for w, h in [(10_000, 10_000), (1, 10_000_000), (12345, 678), (3000, 2000)]:
        tw, th = fit_size(w, h, BUDGET)
        assert tw * th <= BUDGET and tw >= 1 and th >= 1
        assert abs(tw / th - w / h) / (w / h) < 0.5 or min(tw, th) == 1


def test_pdf_pages_within_budget_with_text_and_metadata(tmp_path: Path) -> None:
    path = tmp_path / "doc.pdf"
    data = make_pdf(path, pages=3, text="hello", title="A title", author="Ann Author")
    pages = list(iter_pages(path, BUDGET))
    assert [p.page for p in pages] == [1, 2, 3]
    import hashlib

    sha = hashlib.sha256(data).hexdigest()
    for p in pages:
        assert p.kind == "pdf" and p.page_count == 3 and p.sha256 == sha
        assert p.width * p.height <= BUDGET and p.image.mode == "RGB" and p.image.size == (p.width, p.height)
        assert p.title == "A title" and p.author == "Ann Author"
        assert f"hello {p.page}" in p.text
    # The zoom fills the budget (pages are rendered sharp, not at 72 dpi).
    assert pages[0].width * pages[0].height > 0.95 * BUDGET


@pytest.mark.parametrize("size", [(200_000, 200_000), (14_400, 14_400), (3, 3)])
def test_giant_and_tiny_pages_stay_in_budget(tmp_path: Path, size: tuple[int, int]) -> None:
    path = tmp_path / "g.pdf"
    make_giant_page_pdf(path, *size)
    (page,) = list(iter_pages(path, BUDGET))
    assert page.width * page.height <= BUDGET and page.width >= 1 and page.height >= 1


def test_elongated_page_is_clipped_to_the_aspect_cap(tmp_path: Path) -> None:
    path = tmp_path / "strip.pdf"
    make_pdf(path, pages=1, size=(20, 14_400))  # aspect 720 > cap
    (page,) = list(iter_pages(path, BUDGET))
    assert page.height / page.width <= MAX_ASPECT * 1.05
    assert page.width * page.height <= BUDGET


def test_encrypted_pdf_says_how_to_decrypt(tmp_path: Path) -> None:
    path = tmp_path / "e.pdf"
    make_encrypted_pdf(path)
    err = _error(path)
    assert err.kind == "encrypted" and "qpdf --decrypt" in err.reason and len(err.sha256) == 64


def test_owner_only_encryption_still_renders(tmp_path: Path) -> None:
    doc = pymupdf.open()
    doc.new_page().insert_text((72, 72), "readable")
    path = tmp_path / "owner.pdf"
    doc.save(path, encryption=pymupdf.PDF_ENCRYPT_AES_256, owner_pw="owner", user_pw="")
    (page,) = list(iter_pages(path, BUDGET))
    assert "readable" in page.text


def test_zero_page_corrupt_and_text_pdfs(tmp_path: Path) -> None:
    make_zero_page_pdf(tmp_path / "zero.pdf")
    assert _error(tmp_path / "zero.pdf").kind in ("zero_pages", "corrupt")
    (tmp_path / "junk.pdf").write_bytes(b"%PDF-1.7\n" + os.urandom(4096))
    assert _error(tmp_path / "junk.pdf").kind == "corrupt"
    (tmp_path / "notes.pdf").write_text("just text")
    assert _error(tmp_path / "notes.pdf").kind == "unsupported"
    (tmp_path / "empty.pdf").write_bytes(b"")
    assert _error(tmp_path / "empty.pdf").kind == "empty"


def test_truncated_pdf_never_raises_anything_but_document_error(tmp_path: Path) -> None:
    data = make_pdf(tmp_path / "full.pdf", pages=5)
    for fraction in (0.1, 0.3, 0.6, 0.9):
        path = tmp_path / f"cut{fraction}.pdf"
        path.write_bytes(data[: int(len(data) * fraction)])
        try:
            pages = list(iter_pages(path, BUDGET))
        except DocumentError as exc:
            assert exc.kind in ("corrupt", "zero_pages")
        else:
            assert all(p.width * p.height <= BUDGET for p in pages)


def test_decompression_bomb_header_is_refused_before_decoding(tmp_path: Path) -> None:
    path = tmp_path / "bomb.png"
    make_bomb_png(path, 100_000, 100_000)
    err = _error(path)
    assert err.kind == "too_large" and "downscale" in err.reason
    make_bomb_png(path, 20_000, 10_000)  # 200 M pixels: over the 178 M default limit
    assert _error(path).kind == "too_large"
    make_bomb_png(path, 4000, 1000)
    assert _error(path, max_image_pixels=1_000_000).kind == "too_large"


def test_images_downscaled_rgb_alpha_on_white(tmp_path: Path) -> None:
    rgba = Image.new("RGBA", (2000, 1000), (0, 0, 0, 0))
    rgba.paste((255, 0, 0, 255), (0, 0, 1000, 1000))
    path = tmp_path / "pic.png"
    rgba.save(path)
    (page,) = list(iter_pages(path, BUDGET))
    assert page.kind == "image" and page.image.mode == "RGB" and page.width * page.height <= BUDGET
    assert page.image.getpixel((page.width - 1, page.height // 2)) == (255, 255, 255)  # transparent -> white
    r, g, b = page.image.getpixel((2, 2))
    assert r > 240 and g < 10 and b < 10
    small = tmp_path / "small.jpg"
    Image.new("RGB", (50, 40), (1, 2, 3)).save(small)
    (page,) = list(iter_pages(small, BUDGET))
    assert page.image.size == (50, 40)  # images are never upscaled


def test_multiframe_tiff_pages_and_gif_first_frame(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (300, 200), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    tif = tmp_path / "scan.tiff"
    frames[0].save(tif, save_all=True, append_images=frames[1:])
    pages = list(iter_pages(tif, BUDGET))
    assert [p.page for p in pages] == [1, 2, 3] and all(p.page_count == 3 for p in pages)
    assert [p.image.getpixel((5, 5)) for p in pages] == [(255, 0, 0), (0, 255, 0), (0, 0, 255)]
    gif = tmp_path / "anim.gif"
    frames[0].save(gif, save_all=True, append_images=frames[1:])
    assert len(list(iter_pages(gif, BUDGET))) == 1


def test_exif_orientation_applied(tmp_path: Path) -> None:
    img = Image.new("RGB", (400, 200), (10, 20, 30))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees
    path = tmp_path / "photo.jpg"
    img.save(path, exif=exif)
    (page,) = list(iter_pages(path, BUDGET))
    assert page.image.size == (200, 400)


def test_type_comes_from_content_not_extension(tmp_path: Path) -> None:
    path = tmp_path / "really-a-png.pdf"
    Image.new("RGB", (64, 64), (0, 0, 255)).save(path, format="PNG")
    (page,) = list(iter_pages(path, BUDGET))
    assert page.kind == "image"
    pdf_named_png = tmp_path / "doc.png"
    make_pdf(pdf_named_png, pages=2)
    assert [p.kind for p in iter_pages(pdf_named_png, BUDGET)] == ["pdf", "pdf"]


def test_truncated_image_is_corrupt(tmp_path: Path) -> None:
    buf = io.BytesIO()
    Image.effect_noise((500, 500), 50).convert("RGB").save(buf, format="PNG")
    path = tmp_path / "cut.png"
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    assert _error(path).kind == "corrupt"


def test_non_utf8_pdf_name_renders(tmp_path: Path) -> None:
    raw = os.fsencode(tmp_path) + b"/r\xe9sum\xe9.pdf"
    make_pdf(raw, pages=1, text="cv")
    name = os.fsdecode(raw)
    (page,) = list(iter_pages(name, BUDGET))
    assert page.source == name and "cv 1" in page.text
    assert load_image(name, BUDGET).size == (page.width, page.height)


def test_pages_are_streamed_lazily(tmp_path: Path) -> None:
    path = tmp_path / "long.pdf"
    make_pdf(path, pages=50)
    it = iter_pages(path, BUDGET)
    first = next(it)
    assert first.page == 1 and first.page_count == 50
    it.close()


def test_svg_renders_within_budget_with_its_text_and_never_reads_linked_files(tmp_path: Path) -> None:
    from tests.hostile_corpus import make_png, make_svg

    secret = tmp_path / "secret.png"
    make_png(secret, size=(100, 100), color=(255, 0, 0))
    path = tmp_path / "drawing.svg"
    path.write_text(make_svg("hello diagram", link=str(secret)))
    (page,) = list(iter_pages(path, BUDGET))
    assert page.kind == "image" and page.page_count == 1 and page.width * page.height <= BUDGET
    assert page.width / page.height == pytest.approx(1.5, rel=0.02) and "hello diagram" in page.text
    # The linked PNG is red; MuPDF leaves external images out, so no red shows where it would be.
    region = page.image.crop((page.width // 2 + page.width // 8, 0, page.width, page.height // 2))
    assert all(not (r > 200 and g < 60 and b < 60) for r, g, b in region.getdata())
    path.write_text("<svg xmlns='http://www.w3.org/2000/svg' width='0' height='0'></svg>")
    assert _error(path).kind in ("corrupt", "zero_pages")
