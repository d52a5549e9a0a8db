"""Ingestion benchmark: render throughput, full-pipeline throughput, and memory vs document length.

    python benchmarks/ingest.py                 # defaults: 50- and 500-page PDFs
    python benchmarks/ingest.py --quick         # 20 / 100 pages, for a smoke run

Measures, on generated PDFs (text, vector graphics and an embedded raster image per page):

1. render + preprocess alone (``umr.documents.render_files``, worker processes), pages/s;
2. the full pipeline (``ChromaStore.add_files``: render, embed, write PNGs, upsert), pages/s, with
   the tiny random-weight Qwen2-VL from ``umr.testing`` (real code path, toy FLOPs) and with the
   model-free ``HashEmbedder`` (what remains is pure pipeline overhead);
3. peak RSS (VmHWM, Linux) of the indexing process and of its render worker for a short and a long PDF (each in a
   fresh subprocess, full pipeline with the ``HashEmbedder``): memory must not grow with pages.

Prints a table and writes ``benchmarks/results/ingest.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "core"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

BUDGET = 256 * 28 * 28  # pixels per page for the pipeline runs (a GME budget is 1280 * 28 * 28)


def make_pdf(path: Path, pages: int) -> None:
    import pymupdf
    from PIL import Image

    photo = Image.effect_noise((320, 240), 60).convert("RGB")
    import io

    buf = io.BytesIO()
    photo.save(buf, format="JPEG", quality=80)
    jpeg = buf.getvalue()
    doc = pymupdf.open()
    for i in range(pages):
        page = doc.new_page(width=595, height=842)
        page.insert_text((56, 72), f"Benchmark page {i + 1}", fontsize=20)
        body = " ".join(f"word{j}" for j in range(400))
        page.insert_textbox(pymupdf.Rect(56, 100, 540, 420), body, fontsize=9)
        for k in range(12):
            page.draw_rect(
                pymupdf.Rect(56 + 40 * k, 440, 86 + 40 * k, 440 + 10 * (k + 1)), fill=(k / 12, 0.3, 0.6)
            )
        page.insert_image(pymupdf.Rect(56, 600, 376, 840), stream=jpeg)
    doc.save(path, deflate=True)
    doc.close()


def bench_render(pdf: Path, max_pixels: int, workers: int) -> dict[str, Any]:
    from umr.documents import Page, render_files

    start = time.perf_counter()
    n = 0
    first = None
    for rec in render_files([pdf], max_pixels=max_pixels, workers=workers):
        if isinstance(rec, Page):
            n += 1
            if first is None:
                first = time.perf_counter() - start
    total = time.perf_counter() - start
    steady = (n - 1) / (total - first) if first is not None and n > 1 else 0.0
    return {
        "pages": n,
        "seconds": total,
        "pages_per_s": n / total,
        "steady_pages_per_s": steady,
        "startup_s": first,
    }


def bench_pipeline(pdf: Path, embedder: Any, max_pixels: int, batch_size: int) -> dict[str, Any]:
    from umr.store import ChromaStore

    with (
        tempfile.TemporaryDirectory() as tmp,
        ChromaStore(embedder, Path(tmp) / "db", max_pixels=max_pixels, batch_size=batch_size) as store,
    ):
        start = time.perf_counter()
        report = store.add_files(pdf)
        total = time.perf_counter() - start
        assert report.ok, report.summary()
    return {"pages": report.pages_added, "seconds": total, "pages_per_s": report.pages_added / total}


def _hwm_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def _children() -> list[int]:
    pid = os.getpid()
    try:
        return [int(x) for x in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def rss_case(pdf: Path) -> dict[str, Any]:
    """Full pipeline with the HashEmbedder in this (fresh) process; peak RSS of it and its worker."""
    from umr.store import ChromaStore, HashEmbedder

    with tempfile.TemporaryDirectory() as tmp:
        store = ChromaStore(HashEmbedder(dim=64, max_pixels=BUDGET), Path(tmp) / "db", batch_size=16)
        start = time.perf_counter()
        report = store.add_files(pdf)
        seconds = time.perf_counter() - start
        child_kib = max((_hwm_kib(pid) for pid in _children()), default=0)  # the idle render worker
        store.close()
    # VmHWM, not ru_maxrss: ru_maxrss survives exec and would report the parent's peak.
    self_kib = _hwm_kib(os.getpid())
    return {
        "pages": report.pages_added,
        "seconds": seconds,
        "pages_per_s": report.pages_added / seconds,
        "peak_rss_indexer_mib": self_kib / 1024,
        "peak_rss_worker_mib": child_kib / 1024,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--small", type=int, default=50, help="pages of the short PDF")
    ap.add_argument("--large", type=int, default=500, help="pages of the long PDF")
    ap.add_argument("--quick", action="store_true", help="20 / 100 pages")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--no-tiny", action="store_true", help="skip the tiny-model pipeline run")
    ap.add_argument("--rss-case", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.rss_case:
        print(json.dumps(rss_case(Path(args.rss_case))))
        return 0
    if args.quick:
        args.small, args.large = 20, 100

    results: dict[str, Any] = {
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
        },
        "budget_pixels": BUDGET,
    }
    rows: list[tuple[str, str, str, str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        small, large = Path(tmp) / "small.pdf", Path(tmp) / "large.pdf"
        make_pdf(small, args.small)
        make_pdf(large, args.large)

        from umr.documents import DEFAULT_MAX_PIXELS

        for name, budget in (("budget 256x28x28", BUDGET), ("GME budget 1280x28x28", DEFAULT_MAX_PIXELS)):
            r = bench_render(large, budget, args.workers)
            results[f"render_only[{name}]"] = r
            rows.append(
                (
                    f"render+preprocess only, {name}",
                    f"{r['pages']}",
                    f"{r['pages_per_s']:.1f} ({r['steady_pages_per_s']:.1f} steady)",
                    "",
                )
            )

        from umr.store import HashEmbedder

        r = bench_pipeline(large, HashEmbedder(dim=64, max_pixels=BUDGET), BUDGET, 16)
        results["pipeline[hash embedder]"] = r
        rows.append(
            ("full pipeline, HashEmbedder (no model)", f"{r['pages']}", f"{r['pages_per_s']:.1f}", "")
        )

        if not args.no_tiny:
            import torch

            import umr
            from umr.testing import build_tiny_model

            torch.manual_seed(0)
            model_dir = build_tiny_model(Path(tmp) / "tiny", recipe="gme", seed=0)
            embedder = umr.Embedder.from_pretrained(model_dir, device="cpu")
            r = bench_pipeline(small, embedder, BUDGET, 16)
            results["pipeline[tiny Qwen2-VL]"] = r
            rows.append(
                ("full pipeline, tiny Qwen2-VL (CPU)", f"{r['pages']}", f"{r['pages_per_s']:.2f}", "")
            )

        for label, pdf in (("short", small), ("long", large)):
            out = subprocess.run(
                [sys.executable, __file__, "--rss-case", str(pdf)], capture_output=True, text=True, check=True
            )
            r = json.loads(out.stdout.strip().splitlines()[-1])
            results[f"rss[{label}]"] = r
            rows.append(
                (
                    f"peak RSS, {label} PDF (indexer / worker)",
                    f"{r['pages']}",
                    f"{r['pages_per_s']:.1f}",
                    f"{r['peak_rss_indexer_mib']:.0f} / {r['peak_rss_worker_mib']:.0f} MiB",
                )
            )

    width = max(len(r[0]) for r in rows)
    print(f"{'measurement':<{width}}  {'pages':>6}  {'pages/s':>22}  memory")
    for name, pages, rate, mem in rows:
        print(f"{name:<{width}}  {pages:>6}  {rate:>22}  {mem}")
    s, lg = results["rss[short]"], results["rss[long]"]
    growth = lg["peak_rss_indexer_mib"] - s["peak_rss_indexer_mib"]
    print(f"indexer peak RSS growth from {s['pages']} to {lg['pages']} pages: {growth:+.0f} MiB")
    results["rss_growth_mib"] = growth
    out_dir = ROOT / "benchmarks" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "ingest.json").write_text(json.dumps(results, indent=2))
    print(f"wrote {out_dir / 'ingest.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
