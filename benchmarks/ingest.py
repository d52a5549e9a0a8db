"""Ingestion benchmark: where the time of ``umr index`` goes, and how it compares with a naive loop.

    python benchmarks/ingest.py                          # 200-page PDF, tiny Qwen2-VL, GME budget
    python benchmarks/ingest.py --before /path/to/other/core --repeats 3   # "before" vs this checkout
    python benchmarks/ingest.py --quick                  # a few pages (the smoke test)
    python benchmarks/ingest.py --gpu                    # GPU mode (needs CUDA): --device cuda, workers auto

Everything runs at GME's default budget (1280 x 28 x 28 pixels a page) with the tiny random-weight
Qwen2-VL of ``umr.testing`` (the real code path; the model's cost is its vision attention over ~5000
patches a page) on generated PDFs (text, vector graphics and an embedded photo per page).

1. **Stages** (in this process, CPU milliseconds per page, median over the pages): render (PyMuPDF,
   text layer included), the hand-off of a page between processes (pickle out and in: the raw pixels
   travel, nothing is re-encoded), GME's first resize (qwen-vl-utils ``smart_resize``), the second resize
   + normalise + patchify (the transformers image processor, and UMR's exact fast path), planned-size
   rendering (the page drawn straight at the size the embedder resizes to, the default of a new store)
   and the fast patchify of that render (no resize left), PNG encode + write of the stored page image,
   the embedder's forward pass, and the Chroma upsert.  CPU time, not wall time, so that other load on
   a shared machine does not inflate it.  Preprocessing (render + resizes + patchify) is summed for the
   fit render with the transformers processor (the baseline), with the fast patchify, and planned.
2. **End to end**: ``umr index PDF --model TINY --json`` with the defaults a user gets (a new store:
   planned-size rendering; ``--files N``
   splits the pages over N PDFs: render workers take one file each), each run in a
   fresh process; pages/s from the indexing time the command reports (model loading excluded), its peak
   RSS (VmHWM) and CPU seconds.  With ``--before CORE`` the same command runs with another checkout's
   ``core/`` on ``PYTHONPATH`` too, alternating before / after ``--repeats`` times (medians reported).
3. **Naive loop**, written without UMR: render each page with PyMuPDF at the budget, resize and
   patchify it with the transformers image processor, embed it alone with the model, keep nothing.
4. **Memory**: peak RSS of ``umr index`` on a short and a long PDF (must stay flat: <= 1.5x).
5. **Ceiling**: the pages/s of a perfect pipeline on this machine (every core busy with umr's per-page CPU
   work from the stage profile, nothing else), and its ratio to the naive loop: with the tiny model at GME's
   budget the forward pass (its vision attention over ~5000 patches) is most of a page's CPU, which bounds
   what any pipeline around it can gain over the naive loop.

Prints a table and writes ``benchmarks/results/ingest.json`` (machine facts and load averages included).
The GPU mode was written without a GPU at hand: it runs the same phases with ``--device cuda`` and the
pages spread over 16 files, so that ``--workers auto`` (one render worker per spare CPU) has files to
share; pass ``--model`` a full-size random-weight checkpoint for real FLOPs.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import pickle
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
MARKER = "__UMR_INGEST__"
GME_BUDGET = 1280 * 28 * 28
PARTIAL: Path | None = None  # --partial: a JSON-lines log of each finished run


# -------------------------------------------------------------------------------------------- inputs
def make_pdf(path: Path, pages: int) -> None:
    """A PDF of ``pages`` A4 pages: a title, a paragraph, coloured bars and a JPEG photo each."""
    import pymupdf
    from PIL import Image

    photo = Image.effect_noise((320, 240), 60).convert("RGB")
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


def _cpu() -> float:
    return time.process_time()


def _med(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


# -------------------------------------------------------------------------------------------- stages
def stage_profile(pdf: Path, model_dir: Path, pages: int, batch_size: int, device: str) -> dict[str, Any]:
    """CPU ms per page of each step of ``umr index``, measured step by step in this process."""
    import numpy as np
    import torch
    from PIL import Image

    import umr
    from umr.documents.render import _PdfDocument
    from umr.store.collection import ChromaCollection, chroma_client, collection_metadata
    from umr.store.images import png_bytes, write_png

    emb = umr.Embedder.from_pretrained(model_dir, device=device)
    proc = emb.processor
    ms: dict[str, list[float]] = {k: [] for k in (
        "render", "handoff", "resize_1", "resize_2+normalise+patchify (transformers)",
        "resize_2+normalise+patchify (fast)", "render (planned size)", "normalise+patchify (fast, planned, no resize)",
        "png_encode", "png_write", "embed_forward", "chroma_upsert")}
    doc = _PdfDocument(str(pdf), "0" * 64, GME_BUDGET, True)
    # planned-size rendering (the default of a new store): drawn at the size the embedder resizes to
    planned_doc = _PdfDocument(str(pdf), "0" * 64, GME_BUDGET, True, plan=emb.render_plan)
    images: list[Image.Image] = []
    planned_sizes: list[tuple[int, int]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(min(pages, doc.page_count)):
            c = _cpu()
            page = doc._render(i)
            ms["render"].append(_cpu() - c)
            c = _cpu()
            page = pickle.loads(pickle.dumps(page, protocol=pickle.HIGHEST_PROTOCOL))
            ms["handoff"].append(_cpu() - c)
            g = proc.geometry(*page.image.size)
            c = _cpu()
            pre = page.image.resize(g.pre_size, Image.Resampling.BICUBIC) if g.pre_size != page.image.size \
                else page.image
            ms["resize_1"].append(_cpu() - c)
            c = _cpu()
            ref, _ = proc.patchifier._reference(pre)
            ms["resize_2+normalise+patchify (transformers)"].append(_cpu() - c)
            c = _cpu()
            fast, _ = proc.patchifier.patchify(pre)
            ms["resize_2+normalise+patchify (fast)"].append(_cpu() - c)
            if not np.array_equal(ref, fast):
                raise AssertionError("the fast patchify path differs from the image processor")
            c = _cpu()
            planned = planned_doc._render(i).image
            ms["render (planned size)"].append(_cpu() - c)
            gp = proc.geometry(*planned.size)
            c = _cpu()
            # what the embedder does with it: its resizes are no-ops (checked below), then patchify
            pix = proc.resize(umr.MultimodalInput(image=planned), gp, "page")
            fast_planned, _ = proc.patchifier.patchify(pix)
            ms["normalise+patchify (fast, planned, no resize)"].append(_cpu() - c)
            if pix.size != planned.size or gp.final_size != planned.size:
                raise AssertionError(f"planned render {planned.size} still resized by the embedder ({gp})")
            if not np.array_equal(proc.patchifier._reference(planned)[0], fast_planned):
                raise AssertionError("the fast patchify path differs from the image processor (planned)")
            planned_sizes.append(planned.size)
            c = _cpu()
            data = png_bytes(page.image)
            ms["png_encode"].append(_cpu() - c)
            c = _cpu()
            write_png(data, Path(tmp) / "img" / f"{i}.png")
            ms["png_write"].append(_cpu() - c)
            images.append(page.image)
        doc.close()
        planned_doc.close()
        # the forward pass alone, on collated batches of batch_size pages
        prepared = emb.prepare_inputs(images, side="document")
        sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
        with torch.inference_mode():
            for lo in range(0, len(prepared), batch_size):
                batch = emb.engine.collate(prepared[lo : lo + batch_size])
                sync()
                c = _cpu()
                vectors = emb.engine.forward(batch, emb.dim)
                sync()
                n = len(prepared[lo : lo + batch_size])
                ms["embed_forward"].extend([(_cpu() - c) / n] * n)
        vecs = np.asarray(vectors, dtype=np.float32)
        client = chroma_client(Path(tmp) / "db")
        col = ChromaCollection.open(client, "bench", collection_metadata("m", emb.dim, "f", GME_BUDGET))
        n = len(images)
        ids = [f"id{i}" for i in range(n)]
        metas = [{"source": "x.pdf", "page": i, "image_uri": f"file:///x/{i}.png", "kind": "pdf"} for i in range(n)]
        allv = np.resize(vecs, (n, emb.dim))
        for lo in range(0, n, batch_size):
            c = _cpu()
            col.upsert(ids[lo : lo + batch_size], allv[lo : lo + batch_size], metas[lo : lo + batch_size],
                       ["text"] * len(ids[lo : lo + batch_size]))
            k = len(ids[lo : lo + batch_size])
            ms["chroma_upsert"].extend([(_cpu() - c) / k] * k)
    out = {k: 1000 * _med(v) for k, v in ms.items()}
    pre_old = out["render"] + out["resize_1"] + out["resize_2+normalise+patchify (transformers)"]
    pre_new = out["render"] + out["resize_1"] + out["resize_2+normalise+patchify (fast)"]
    pre_planned = out["render (planned size)"] + out["normalise+patchify (fast, planned, no resize)"]
    return {
        "pages": len(images),
        "page_size": list(images[0].size) if images else None,
        "planned_size": list(planned_sizes[0]) if planned_sizes else None,
        "final_size": list(proc.geometry(*images[0].size).final_size) if images else None,
        "cpu_ms_per_page": out,
        "preprocess_cpu_ms_per_page": {"transformers": pre_old, "fast": pre_new, "planned": pre_planned},
        "preprocess_planned_vs_transformers": pre_planned / pre_old if pre_old else None,
        "fast_patchify_enabled": proc.patchifier.enabled,
    }


# -------------------------------------------------------------------------------------------- children
def _hwm_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _cpu_seconds() -> float:
    import resource

    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


def child_index(argv: list[str]) -> dict[str, Any]:
    """``umr index ARGV --json`` in this process (whatever ``umr`` is on ``PYTHONPATH``)."""
    from contextlib import redirect_stdout

    from umr.cli import main as cli_main

    buf = io.StringIO()
    start = time.perf_counter()
    with redirect_stdout(buf):
        rc = cli_main(["index", *argv, "--json", "--no-progress"])
    wall = time.perf_counter() - start
    text = buf.getvalue()
    report = json.loads(text[text.index("{"):])
    render = None
    if "--db" in argv:  # the rendering the store recorded (a new store: planned, the default)
        from umr.store.info import read_collection_info

        info = read_collection_info(collection="umr", path=argv[argv.index("--db") + 1]) or {}
        render = info.get("umr_render", "fit")
    return {
        "render": render,
        "rc": rc, "pages": report["pages_added"], "index_seconds": report["seconds"], "command_seconds": wall,
        "pages_per_s": report["pages_added"] / max(1e-9, report["seconds"]), "peak_rss_mib": _hwm_mib(),
        "cpu_seconds": _cpu_seconds(),
        "umr_file": __import__("umr").__file__,
    }


def child_naive(pdf: str, model_dir: str, max_pixels: int, device: str) -> dict[str, Any]:
    """The naive loop, without UMR: PyMuPDF render -> GME's resizes -> model, one page at a time."""
    import math

    import pymupdf
    import torch
    from PIL import Image
    from transformers import AutoTokenizer, Qwen2VLForConditionalGeneration
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    def smart_resize(h: int, w: int, f: int, lo: int, hi: int) -> tuple[int, int]:
        hb, wb = max(f, round(h / f) * f), max(f, round(w / f) * f)
        if hb * wb > hi:
            b = math.sqrt(h * w / hi)
            hb, wb = max(f, math.floor(h / b / f) * f), max(f, math.floor(w / b / f) * f)
        elif hb * wb < lo:
            b = math.sqrt(lo / (h * w))
            hb, wb = math.ceil(h * b / f) * f, math.ceil(w * b / f) * f
        return hb, wb

    tok = AutoTokenizer.from_pretrained(model_dir)
    ip = Qwen2VLImageProcessorPil.from_pretrained(model_dir)
    # SDPA as UMR uses (eager attention over ~5000 patches would make the baseline a strawman)
    model = Qwen2VLForConditionalGeneration.from_pretrained(model_dir, attn_implementation="sdpa").to(device).eval()
    pad_id = tok.convert_tokens_to_ids("<|image_pad|>")
    head = tok.encode("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
                      "<|vision_start|>")
    tail = tok.encode("<|vision_end|><|im_end|>\n<|im_start|>assistant\n<|endoftext|>")
    doc = pymupdf.open(pdf)
    start = time.perf_counter()
    n = 0
    with torch.inference_mode():
        for page in doc:
            zoom = math.sqrt(max_pixels / (page.rect.width * page.rect.height))
            pix = page.get_pixmap(matrix=pymupdf.Matrix(zoom, zoom), alpha=False)
            img = Image.frombytes("RGB", (pix.width, pix.height), pix.samples)
            h, w = smart_resize(img.height, img.width, 28, 4 * 28 * 28, 16384 * 28 * 28)
            img = img.resize((w, h), Image.Resampling.BICUBIC)
            out = ip(images=[img], size={"shortest_edge": 256 * 28 * 28, "longest_edge": max_pixels},
                     return_tensors="pt")
            grid = out["image_grid_thw"]
            ids = head + [pad_id] * int(grid.prod() // 4) + tail
            positions = torch.arange(len(ids), device=device).view(1, 1, -1).expand(3, 1, -1)  # GME: 1-D
            hidden = model.model(
                input_ids=torch.tensor([ids], device=device),
                position_ids=positions,
                pixel_values=out["pixel_values"].to(device),
                image_grid_thw=grid.to(device),
            ).last_hidden_state
            torch.nn.functional.normalize(hidden[0, -1].float(), dim=-1).cpu()
            n += 1
    seconds = time.perf_counter() - start
    return {"pages": n, "seconds": seconds, "pages_per_s": n / seconds, "peak_rss_mib": _hwm_mib(),
            "cpu_seconds": _cpu_seconds(), "attn_implementation": model.config._attn_implementation,
            "vision_attn_implementation": model.config.vision_config._attn_implementation}


def run_child(kind: str, payload: dict[str, Any], core: Path | None, env_extra: dict[str, str]) -> dict[str, Any]:
    env = dict(os.environ)
    if core is not None:
        env["PYTHONPATH"] = str(core) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.update(env_extra)
    proc = subprocess.run(
        [sys.executable, __file__, "--child", kind, json.dumps(payload)],
        capture_output=True, text=True, env=env, check=False,
    )
    for line in proc.stdout.splitlines():
        if line.startswith(MARKER):
            result = json.loads(line[len(MARKER):])
            if PARTIAL is not None:  # each run as it finishes, for long runs on a busy machine
                with PARTIAL.open("a") as fh:
                    fh.write(json.dumps({"kind": kind, "core": str(core), "load": os.getloadavg(), **result}) + "\n")
            return result
    raise RuntimeError(f"{kind} child failed (exit {proc.returncode}): {proc.stderr[-2000:]}")


# -------------------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pages", type=int, default=200, help="pages of the long PDF (throughput, memory)")
    ap.add_argument("--short", type=int, default=20, help="pages of the short PDF (memory)")
    ap.add_argument("--naive-pages", type=int, default=40, help="pages the naive loop embeds")
    ap.add_argument("--stage-pages", type=int, default=16, help="pages of the stage profile")
    ap.add_argument("--repeats", type=int, default=1, help="end-to-end runs of each variant (medians)")
    ap.add_argument("--before", type=Path, default=None,
                    help="another checkout's core/ folder: run `umr index` with it too, alternating")
    ap.add_argument("--quick", action="store_true", help="a few pages of everything (smoke test)")
    ap.add_argument("--gpu", action="store_true", help="GPU mode: --device cuda (needs CUDA)")
    ap.add_argument("--files", type=int, default=0,
                    help="split the long input into this many PDFs (default 1 on CPU, 16 with --gpu)")
    ap.add_argument("--model", type=Path, default=None, help="model folder (default: a tiny Qwen2-VL, built)")
    ap.add_argument("--out", type=Path, default=None, help="JSON path (default benchmarks/results/ingest.json)")
    ap.add_argument("--partial", type=Path, default=None, help="append each finished run to this JSON-lines file")
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
    if args.child:
        kind, payload = args.child[0], json.loads(args.child[1])
        result = child_index(payload["argv"]) if kind == "index" else child_naive(**payload)
        print(MARKER + json.dumps(result), flush=True)
        return 0

    global PARTIAL
    PARTIAL = args.partial
    sys.path.insert(0, str(BENCH_DIR))
    if str(ROOT / "core") not in sys.path:
        sys.path.insert(0, str(ROOT / "core"))
    import _common

    if args.quick:
        args.pages, args.short, args.naive_pages, args.stage_pages = 6, 3, 3, 3
    device = "cuda" if args.gpu else "cpu"
    if args.gpu:
        import torch

        if not torch.cuda.is_available():
            print("--gpu: no CUDA device here; nothing measured", file=sys.stderr)
            return 2
    new_core = ROOT / "core"
    variants: list[tuple[str, Path]] = [("after", new_core)]
    if args.before is not None:
        variants.insert(0, ("before", args.before.resolve()))

    results: dict[str, Any] = {"load_average_start": list(os.getloadavg())}
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        tmpd = Path(tmp)
        long_pdf, short_pdf = tmpd / "long.pdf", tmpd / "short.pdf"
        make_pdf(long_pdf, args.pages)
        files = args.files or (16 if args.gpu else 1)
        if files > 1:  # workers render one file each: a GPU run spreads the pages over several files
            long_input = tmpd / "docs"
            long_input.mkdir()
            for f in range(files):
                make_pdf(long_input / f"part{f:03d}.pdf", max(1, args.pages // files))
        else:
            long_input = long_pdf
        make_pdf(short_pdf, args.short)
        naive_pdf = tmpd / "naive.pdf"
        make_pdf(naive_pdf, args.naive_pages)
        if args.model is None:
            from umr.testing import build_tiny_model

            model_dir = build_tiny_model(tmpd / "tiny", recipe="gme", seed=0)
        else:
            model_dir = args.model

        # 1. stages
        stages = stage_profile(long_pdf, model_dir, args.stage_pages, 16, device)
        results["stages"] = stages
        for name, value in stages["cpu_ms_per_page"].items():
            rows.append({"measurement": f"stage: {name}", "variant": "", "value": f"{value:.1f} ms CPU/page"})
        for name, value in stages["preprocess_cpu_ms_per_page"].items():
            rows.append({"measurement": "preprocess (render+resize+patchify)", "variant": name,
                         "value": f"{value:.1f} ms CPU/page"})

        # 2. end to end, alternating variants; 3. naive loop in between
        base = ["--model", str(model_dir), "--device", device]
        runs: dict[str, list[dict[str, Any]]] = {}
        for rep in range(args.repeats):
            for label, core in variants:
                db = tmpd / f"db-{label}-{rep}"
                r = run_child("index", {"argv": [str(long_input), "--db", str(db), *base]}, core, {})
                r["load_average"] = list(os.getloadavg())
                runs.setdefault(label, []).append(r)
            naive = run_child("naive", {"pdf": str(naive_pdf), "model_dir": str(model_dir),
                                        "max_pixels": GME_BUDGET, "device": device}, None, {})
            naive["load_average"] = list(os.getloadavg())
            runs.setdefault("naive", []).append(naive)
        results["end_to_end"] = runs
        naive_rate = _med([r["pages_per_s"] for r in runs["naive"]])
        summary: dict[str, Any] = {"naive_pages_per_s": naive_rate}
        rows.append({"measurement": f"naive loop ({args.naive_pages} pages)", "variant": "",
                     "value": f"{naive_rate:.2f} pages/s"})
        for label, _ in variants:
            rate = _med([r["pages_per_s"] for r in runs[label]])
            summary[f"{label}_pages_per_s"] = rate
            summary[f"{label}_vs_naive"] = rate / naive_rate
            renders = sorted({str(r.get("render")) for r in runs[label]})
            rows.append({"measurement": f"umr index ({args.pages} pages, render {'/'.join(renders)})",
                         "variant": label, "value": f"{rate:.2f} pages/s = {rate / naive_rate:.2f}x naive"})

        # the most any pipeline can do on this machine: every CPU busy with umr's per-page work (planned
        # preprocess, hand-off, PNG, forward pass, upsert, from the stage profile), no overhead at all
        st = stages["cpu_ms_per_page"]
        per_page = stages["preprocess_cpu_ms_per_page"]["planned"] + sum(
            st[k] for k in ("handoff", "png_encode", "png_write", "embed_forward", "chroma_upsert"))
        cores = os.cpu_count() or 1
        ceiling = cores * 1000.0 / per_page if per_page > 0 else float("nan")
        summary["ceiling"] = {"cpu_ms_per_page": per_page, "cores": cores, "pages_per_s": ceiling,
                              "vs_naive": ceiling / naive_rate, "forward_share": st["embed_forward"] / per_page}
        rows.append({"measurement": f"ceiling: {cores} cores / {per_page:.0f} ms CPU per page "
                                    f"(forward pass {100 * st['embed_forward'] / per_page:.0f} %)",
                     "variant": "", "value": f"{ceiling:.2f} pages/s = {ceiling / naive_rate:.2f}x naive"})

        # 4. memory: short vs long (the long runs above give the long peak)
        for label, core in variants:
            short = run_child("index", {"argv": [str(short_pdf), "--db", str(tmpd / f"dbs-{label}"), *base]},
                              core, {})
            long_peak = _med([r["peak_rss_mib"] for r in runs[label]])
            ratio = long_peak / short["peak_rss_mib"]
            summary[f"{label}_peak_rss_mib"] = {"short": short["peak_rss_mib"], "long": long_peak, "ratio": ratio}
            rows.append({"measurement": f"peak RSS {args.short} -> {args.pages} pages", "variant": label,
                         "value": f"{short['peak_rss_mib']:.0f} -> {long_peak:.0f} MiB ({ratio:.2f}x)"})
    results["load_average_end"] = list(os.getloadavg())
    results["summary"] = summary
    cols = [_common.Column("measurement", "measurement"), _common.Column("variant", "variant"),
            _common.Column("value", "value")]
    _common.print_table(rows, cols, title=f"umr index vs naive loop, {device}, GME budget, tiny Qwen2-VL")
    la = results["load_average_start"], results["load_average_end"]
    print(f"load average at start {la[0][0]:.1f}, at end {la[1][0]:.1f} (1 min)")
    settings = {"device": device, "pages": args.pages, "short": args.short, "naive_pages": args.naive_pages,
                "stage_pages": args.stage_pages, "files": files, "repeats": args.repeats, "budget": GME_BUDGET,
                "before": str(args.before) if args.before else None,
                "omp_num_threads": os.environ.get("OMP_NUM_THREADS")}
    payload = _common.result_payload("ingest", settings, rows, **results)
    path = _common.write_json(payload, args.out, name="ingest")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
