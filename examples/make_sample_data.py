"""Write the small sample documents of ``examples/data/`` (a few PDFs and a PNG, well under 200 KB).

    python examples/make_sample_data.py [OUT_DIR]

The files are generated (text, tables and simple charts drawn with PyMuPDF and Pillow), so the
repository needs no binary blobs beyond their output, and anyone can re-create them.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pymupdf
from PIL import Image, ImageDraw

OUT = Path(__file__).resolve().parent / "data"


def _page(doc: pymupdf.Document, title: str, lines: list[str]) -> pymupdf.Page:
    page = doc.new_page(width=595, height=842)  # A4 in points
    page.insert_text((56, 80), title, fontsize=22, fontname="helv")
    y = 120
    for line in lines:
        page.insert_text((56, y), line, fontsize=12, fontname="helv")
        y += 20
    return page


def invoice(path: Path) -> None:
    doc = pymupdf.open()
    page = _page(
        doc,
        "Invoice INV-2024-0173",
        ["Northwind Traders, 12 Harbour Road, Bristol", "Billed to: Contoso Ltd.", "Date: 14 March 2024", ""],
    )
    rows = [("Item", "Qty", "Unit price", "Amount"), ("Laser printer", "2", "240.00", "480.00"),
            ("Toner cartridge", "6", "35.50", "213.00"), ("Service plan (1 year)", "1", "99.00", "99.00")]
    y = 220
    for row in rows:
        for x, cell in zip((56, 300, 380, 480), row):
            page.insert_text((x, y), cell, fontsize=11, fontname="helv")
        page.draw_line((56, y + 6), (540, y + 6), color=(0.6, 0.6, 0.6), width=0.5)
        y += 24
    page.insert_text((380, y + 20), "Total due: EUR 792.00", fontsize=13, fontname="hebo")
    doc.set_metadata({"title": "Invoice INV-2024-0173", "author": "Northwind Traders"})
    doc.save(path, garbage=4, deflate=True)


def manual(path: Path) -> None:
    doc = pymupdf.open()
    _page(doc, "Router X200 - Installation", [
        "1. Connect the power cable to the port marked DC 12V.",
        "2. Plug the network cable into the yellow WAN port.",
        "3. Press the reset button for five seconds.",
        "4. Wait until the status light turns solid green.",
    ])
    page = _page(doc, "Troubleshooting", [
        "Red light blinking: the WAN cable is not connected.",
        "No Wi-Fi network visible: hold the WPS button for two seconds.",
        "Forgotten password: reset to factory settings (see step 3).",
    ])
    page.draw_rect(pymupdf.Rect(56, 220, 300, 330), color=(0, 0, 0), fill=(0.85, 0.9, 1.0))
    page.insert_text((70, 280), "Status light: green = online", fontsize=11, fontname="helv")
    doc.set_metadata({"title": "Router X200 manual", "author": "Acme Networks"})
    doc.save(path, garbage=4, deflate=True)


def report(path: Path) -> None:
    doc = pymupdf.open()
    page = _page(doc, "Quarterly Report Q3 2024", [
        "Revenue grew 12 % year over year to 4.2 million euros.",
        "Operating costs fell by 3 %; the margin reached 18 %.",
        "Figure 1: revenue per quarter (million euros).",
    ])
    base, left = 500, 90
    for i, (label, value) in enumerate((("Q4 23", 3.4), ("Q1 24", 3.6), ("Q2 24", 3.9), ("Q3 24", 4.2))):
        x = left + i * 110
        top = base - value * 60
        page.draw_rect(pymupdf.Rect(x, top, x + 60, base), color=(0.1, 0.3, 0.6), fill=(0.2, 0.45, 0.8))
        page.insert_text((x + 8, base + 18), label, fontsize=10, fontname="helv")
        page.insert_text((x + 14, top - 6), f"{value:.1f}", fontsize=10, fontname="helv")
    doc.set_metadata({"title": "Quarterly Report Q3 2024", "author": "Finance team"})
    doc.save(path, garbage=4, deflate=True)


def chart_png(path: Path) -> None:
    img = Image.new("RGB", (480, 320), "white")
    draw = ImageDraw.Draw(img)
    draw.text((20, 12), "Website visitors per month", fill="black")
    values = [120, 150, 90, 200, 240, 180]
    for i, v in enumerate(values):
        x = 40 + i * 70
        draw.rectangle((x, 290 - v, x + 40, 290), fill=(220, 80, 60))
        draw.text((x + 4, 295), ["Jan", "Feb", "Mar", "Apr", "May", "Jun"][i], fill="black")
    img.save(path, optimize=True)


def main(out: Path = OUT) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    made = []
    for name, fn in (("invoice.pdf", invoice), ("router_manual.pdf", manual),
                     ("quarterly_report.pdf", report), ("visitors_chart.png", chart_png)):
        fn(out / name)
        made.append(out / name)
    return made


if __name__ == "__main__":
    paths = main(Path(sys.argv[1]) if len(sys.argv) > 1 else OUT)
    total = sum(p.stat().st_size for p in paths)
    sys.stdout.write(f"wrote {len(paths)} files, {total / 1024:.1f} KB, to {paths[0].parent}\n")
