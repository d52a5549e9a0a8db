"""``umr index PATH...``: index PDFs and images (folders are walked), locally or on Ray (``--ray``)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .common import (
    JobFailed,
    UsageError,
    add_image_dir_arg,
    add_model_args,
    add_server_args,
    add_store_args,
    check_db,
    display,
    load_embedder,
    model_name,
    open_store,
    out,
    recorded_model,
    show_progress,
)

DOC_SUFFIXES = {".pdf", ".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp", ".gif"}


def register(sub: Any) -> None:
    p = sub.add_parser("index", help="index PDFs and images (folders are walked)")
    p.add_argument("paths", nargs="+", metavar="PATH")
    add_store_args(p)
    add_image_dir_arg(p)
    add_model_args(p)
    p.add_argument("--workers", type=_workers_arg, default="auto",
                   help="renderer processes, or 'auto' (default): 1 with the model on the CPU, one per spare "
                        "CPU with a GPU, never more than files")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds allowed per file (default 60)")
    p.add_argument("--batch-size", type=int, default=16, help="pages embedded at a time (default 16)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    add_server_args(p)
    g = p.add_argument_group("bulk indexing on Ray (pip install 'umr[ray]')")
    g.add_argument("--ray", action="store_true",
                   help="run the Ray Data pipeline: render tasks, an embedding actor pool, Chroma writers")
    g.add_argument("--ray-address", default=None, metavar="ADDR",
                   help="Ray cluster to join ('auto' after `ray start --head`; default: a local Ray)")
    g.add_argument("--actors", type=int, default=None, metavar="N",
                   help="embedding actors, one model each (default: one per GPU, else 1)")
    p.set_defaults(func=run)


def _workers_arg(value: str) -> int | str:
    if value == "auto":
        return value
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"--workers takes a number >= 1 or 'auto', got {value!r}")
    return n


def render_workers(requested: int | str, embedder: Any, files: int) -> int:
    """``--workers``: a number as given, or ``auto`` sized by where the model runs (a GPU or a model
    server count as accelerators; see :func:`umr.documents.auto_workers`)."""
    if requested != "auto":
        return int(requested)
    from umr.documents import auto_workers

    device = getattr(embedder, "device", None)  # None: a model server does the forward pass elsewhere
    return auto_workers(accelerator=device is None or not str(device).startswith("cpu"), files=files)


def collect_files(paths: Sequence[str]) -> tuple[list[str], int]:
    """Files to index: explicit files as given, folders walked for PDFs and images; and how many
    other files the walk ignored."""
    from umr.documents import FileError, walk

    files: list[str] = []
    ignored = 0
    for p in paths:
        if not os.path.lexists(p):
            raise UsageError(f"no such file or directory: {display(p)}")
        if os.path.isdir(p):
            for entry in walk([p]):
                if isinstance(entry, FileError):
                    files.append(entry.source)  # reported as a failure by the store
                elif Path(entry).suffix.lower() in DOC_SUFFIXES:
                    files.append(entry)
                else:
                    ignored += 1
        else:
            files.append(p)
    return files, ignored


def run(args: argparse.Namespace) -> int:
    files, ignored = collect_files(args.paths)
    if not files:
        where = ", ".join(display(p) for p in args.paths)
        raise JobFailed(
            f"no PDF or image files found in {where}"
            + (f" ({ignored} other file(s) ignored)" if ignored else "")
            + f"; supported: {', '.join(sorted(DOC_SUFFIXES))}"
        )
    check_db(args, must_exist=False)
    if args.ray:
        report = index_with_ray(args, files)
        print_report(args, report, ignored)
        return 0 if report.ok else 1
    recorded = None if args.model or args.server_model else recorded_model(args)
    embedder = load_embedder(args, recorded)
    workers = render_workers(args.workers, embedder, len(files))
    store = open_store(args, embedder, workers=workers, timeout=args.timeout, batch_size=args.batch_size)
    bar = None
    started = time.monotonic()
    if show_progress(args):
        from tqdm import tqdm

        bar = tqdm(total=len(files), unit="file", desc="indexing", file=sys.stderr, dynamic_ncols=True)

    def progress(report: Any, record: Any) -> None:
        if bar is None:
            return
        done = report.files_done + len(report.failed)
        bar.update(max(0, done - bar.n))
        rate = report.pages_added / max(1e-9, time.monotonic() - started)
        bar.set_postfix(pages=report.pages_added + report.pages_skipped, pages_per_s=f"{rate:.2f}")

    try:
        report = store.add_files(files, progress=progress)
    finally:
        if bar is not None:
            bar.close()
        store.close()
    print_report(args, report, ignored)
    return 0 if report.ok else 1


def index_with_ray(args: argparse.Namespace, files: list[str]) -> Any:
    """``umr index --ray``: the Ray Data pipeline of ``umr.distributed``; with ``--db`` (no server) the
    folder is served by a ``chroma run`` started for the job, under the folder's writer lock, so the
    result is the same folder and no local writer touches it meanwhile."""
    try:
        from umr.distributed import EmbedderSpec, index_files, require_ray

        require_ray()
    except ImportError as exc:
        raise JobFailed(str(exc)) from None
    from umr.store.info import read_collection_info
    from umr.store.lock import StoreBusyError, WriterLock
    from umr.store.server import ChromaServer

    def job(host: str, port: int, **where: Any) -> Any:
        recorded = None
        if not (args.model or args.server_model):
            info = read_collection_info(collection=args.collection, host=host, port=port)
            recorded = None if info is None else info.get("umr_model_id")
        name = model_name(args, recorded)
        if args.server:
            from umr.remote import api_key_from_env

            options = {"api_key": api_key_from_env(args.api_key), "recipe": args.recipe, "api": args.server_api}
            spec = EmbedderSpec(args.server_model or name, options, server=args.server)
        else:
            options = {"device": args.device, "dtype": args.dtype, "recipe": args.recipe,
                       "trust_remote_code": args.trust_remote_code}
            spec = EmbedderSpec(name, {k: v for k, v in options.items() if v not in (None, False)})
        return index_files(
            files, embedder=spec, host=host, port=port, collection=args.collection, actors=args.actors,
            batch_size=args.batch_size, timeout=args.timeout, ray_address=args.ray_address,
            show_progress=show_progress(args), **where,
        )

    if args.host:
        return job(args.host, args.port, **({"image_dir": args.image_dir} if args.image_dir else {}))
    try:
        with WriterLock(args.db).hold(wait=False), ChromaServer(args.db) as server:
            return job(server.host, server.port, image_dir=args.image_dir or Path(args.db) / "images",
                       exclude=[args.db])
    except StoreBusyError as exc:
        raise JobFailed(str(exc)) from None


def print_report(args: argparse.Namespace, report: Any, ignored: int) -> None:
    if args.json:
        out(json.dumps(report_json(report, ignored), indent=2))
    elif not args.quiet:
        out(
            f"indexed {report.files_indexed} file(s), {report.pages_added} page(s) added; "
            f"{report.files_skipped} file(s) unchanged ({report.pages_skipped} page(s) skipped); "
            f"{len(report.failed)} failed; {report.seconds:.1f}s"
        )
        if report.pages_replaced:
            out(f"replaced {report.pages_replaced} page(s) of changed files")
        if ignored:
            out(f"ignored {ignored} file(s) that are not PDFs or images")
        for e in report.failed:
            out(f"  FAILED {display(e.source)}: {e.reason}")


def report_json(report: Any, ignored: int) -> dict[str, Any]:
    return {
        "files_indexed": report.files_indexed,
        "files_skipped": report.files_skipped,
        "pages_added": report.pages_added,
        "pages_skipped": report.pages_skipped,
        "pages_replaced": report.pages_replaced,
        "ignored": ignored,
        "seconds": round(report.seconds, 3),
        "failed": [{"source": display(e.source), "kind": e.kind, "reason": e.reason} for e in report.failed],
    }
