"""Bulk indexing throughput: one process (``ChromaStore.add_files``) vs the Ray Data pipeline
(``umr.distributed.index_files``) with 1 and 2 embedding actors (issue 11).

Every run indexes the same generated corpus (PDFs of text, vector graphics and a photo per page, plus
PNG images) into its own fresh collection of one ``chroma run`` server started for the benchmark, so
all runs pay the same HTTP writes.  Pages/s is pages added / wall seconds of the whole call, start-up
included (Ray actors load their model inside the call; Ray itself is started once, before timing).

The tiny model (``umr.testing.build_tiny_model``) makes this a measure of the pipeline (render,
transfer, embed calls, writes), not of model FLOPs: with a real model on GPUs the embedding stage
dominates and the actor count scales it (see docs/scale-out.md).  On a GPU machine the actors get one
GPU each (``--device cuda``).

    python benchmarks/scale.py                         # 1 process vs Ray x1 vs Ray x2, CPU
    python benchmarks/scale.py --pdfs 4 --pages-per-pdf 2 --actors 1
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import _common
from _common import Column

sys.path.insert(0, str(_common.REPO_ROOT / "core"))  # this checkout's umr (also for the Ray workers)

NAME = "scale"
COLUMNS = [
    Column("mode", "mode"),
    Column("actors", "actors"),
    Column("pages", "pages"),
    Column("seconds", "seconds", "{:.2f}"),
    Column("pages_per_s", "pages/s", "{:.2f}"),
    Column("speedup", "vs 1 process", "{:.2f}x"),
]


def make_corpus(root: Path, pdfs: int, pages_per_pdf: int, images: int) -> int:
    """Write ``pdfs`` PDFs and ``images`` PNGs under ``root``; returns the number of pages."""
    import io

    import pymupdf

    root.mkdir(parents=True, exist_ok=True)
    photo = _common.make_photo((320, 240), seed=1)
    buf = io.BytesIO()
    photo.save(buf, format="JPEG", quality=80)
    for d in range(pdfs):
        doc = pymupdf.open()
        for i in range(pages_per_pdf):
            page = doc.new_page(width=595, height=842)
            page.insert_text((56, 72), f"Document {d} page {i + 1}", fontsize=20)
            page.insert_textbox(pymupdf.Rect(56, 100, 540, 420), " ".join(f"w{d}x{j}" for j in range(300)),
                                fontsize=9)
            page.insert_image(pymupdf.Rect(56, 440, 376, 680), stream=buf.getvalue())
        doc.save(root / f"doc{d:03d}.pdf", deflate=True)
        doc.close()
    for k in range(images):
        _common.make_page((620, 877), seed=k).save(root / f"scan{k:03d}.png")
    return pdfs * pages_per_pdf + images


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--pdfs", type=int, default=12, help="PDF files (default 12)")
    p.add_argument("--pages-per-pdf", type=int, default=4, help="pages per PDF (default 4)")
    p.add_argument("--images", type=int, default=8, help="PNG page scans (default 8)")
    p.add_argument("--actors", default="1,2", help="Ray actor counts to run, comma-separated (default 1,2)")
    p.add_argument("--modes", default="local,ray", help="local (1 process), ray, or both (default)")
    p.add_argument("--max-pixels", type=int, default=256 * 28 * 28, help="render budget per page")
    p.add_argument("--batch-size", type=int, default=16, help="pages per embed call (default 16)")
    p.add_argument("--num-cpus", type=int, default=None, help="CPUs of the local Ray (default: all)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    p.add_argument("--model-dir", default=None, help="model folder (default: a tiny random GME model)")
    p.add_argument("--out", default=None, help="JSON path (default benchmarks/results/scale.json)")
    args = p.parse_args(argv)
    args.modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    bad = set(args.modes) - {"local", "ray"}
    if bad:
        p.error(f"unknown mode(s) {sorted(bad)}; valid: local, ray")
    try:
        args.actors = [int(a) for a in args.actors.split(",") if a.strip()]
    except ValueError:
        p.error("--actors takes comma-separated integers, e.g. 1,2")
    return args


def _run_local(model_dir: str, docs: Path, host: str, port: int, args: argparse.Namespace) -> dict[str, Any]:
    import umr
    from umr.store import ChromaStore

    start = time.perf_counter()
    emb = umr.Embedder.from_pretrained(model_dir, device=args.device)
    with ChromaStore(emb, host=host, port=port, collection="bench_local", max_pixels=args.max_pixels,
                     batch_size=args.batch_size) as store:
        report = store.add_files(docs)
    seconds = time.perf_counter() - start
    return {"mode": "1 process", "actors": 1, "pages": report.pages_added, "seconds": seconds,
            "failed": len(report.failed)}


def _run_ray(model_dir: str, docs: Path, host: str, port: int, actors: int, args: argparse.Namespace) -> dict:
    from umr.distributed import EmbedderSpec, index_files

    start = time.perf_counter()
    report = index_files(
        docs, embedder=EmbedderSpec(model_dir, {"device": args.device}), host=host, port=port,
        collection=f"bench_ray{actors}", max_pixels=args.max_pixels, actors=actors, batch_size=args.batch_size,
    )
    seconds = time.perf_counter() - start
    return {"mode": "ray", "actors": actors, "pages": report.pages_added, "seconds": seconds,
            "failed": len(report.failed)}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark; print the table, write the JSON, return the payload."""
    args = parse_args(argv)
    _common.offline_env()
    os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
    from umr.store.server import ChromaServer

    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="umr-scale-") as tmp:
        docs = Path(tmp) / "docs"
        pages = make_corpus(docs, args.pdfs, args.pages_per_pdf, args.images)
        model_dir = args.model_dir
        if model_dir is None:
            from umr.testing import build_tiny_model

            model_dir = str(build_tiny_model(Path(tmp) / "tiny-gme", recipe="gme", seed=0))
        with ChromaServer(Path(tmp) / "chroma") as server:
            if "local" in args.modes:
                results.append(_run_local(model_dir, docs, server.host, server.port, args))
            if "ray" in args.modes:
                from umr.distributed import ensure_ray

                ray = ensure_ray(None, num_cpus=args.num_cpus) if args.num_cpus else ensure_ray(None)
                try:
                    for n in args.actors:
                        results.append(_run_ray(model_dir, docs, server.host, server.port, n, args))
                finally:
                    ray.shutdown()
    base = next((r for r in results if r["mode"] == "1 process"), None)
    for r in results:
        r["pages_per_s"] = r["pages"] / r["seconds"] if r["seconds"] > 0 else None
        r["speedup"] = r["pages_per_s"] / base["pages_per_s"] if base and base["pages_per_s"] else None
    settings = {
        "pdfs": args.pdfs, "pages_per_pdf": args.pages_per_pdf, "images": args.images, "pages": pages,
        "max_pixels": args.max_pixels, "batch_size": args.batch_size, "device": args.device,
        "model": args.model_dir or "umr.testing.build_tiny_model (gme recipe, 2 layers, hidden 64)",
        "modes": args.modes, "actors": args.actors, "num_cpus": args.num_cpus or os.cpu_count(),
    }
    payload = _common.result_payload(NAME, settings, results, notes=(
        "wall seconds include model loading (in each Ray actor) but not Ray start-up; tiny model: a "
        "pipeline measure, not a model one"
    ))
    path = _common.write_json(payload, args.out, NAME)
    _common.print_table(results, COLUMNS, title=f"bulk indexing, {pages} pages, {args.device}")
    print(f"wrote {path}")
    return payload


if __name__ == "__main__":  # pragma: no cover
    sys.exit(0 if main() else 1)
