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
    add_lexical_dir_arg,
    add_model_args,
    add_server_args,
    add_store_args,
    check_db,
    display,
    err,
    load_embedder,
    model_name,
    open_readonly,
    open_store,
    out,
    recorded_model,
    show_progress,
)

#: ``--render`` values (``umr.documents.RENDER_MODES``, spelled out so that ``--help`` imports nothing)
RENDER_CHOICES = ("planned", "fit")
DOC_SUFFIXES = {".pdf", ".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp", ".gif", ".svg"}


def register(sub: Any) -> None:
    p = sub.add_parser("index", help="index PDFs and images (folders are walked)")
    p.add_argument("paths", nargs="*", metavar="PATH", help="files and folders to index")
    add_store_args(p)
    add_image_dir_arg(p)
    add_lexical_dir_arg(p)
    p.add_argument("--rebuild-lexical", action="store_true",
                   help="build the lexical (BM25) index again from the texts stored in Chroma (no re-embedding); "
                        "without PATHs nothing else is done and no model is loaded")
    p.add_argument("--lexical-language", default=None, metavar="LANG",
                   help="stemmer of a new or rebuilt lexical index (english, french, german, ...; default none)")
    add_model_args(p)
    p.add_argument("--workers", type=_workers_arg, default="auto",
                   help="renderer processes, or 'auto' (default): 1 with the model on the CPU, one per spare "
                        "CPU with a GPU, never more than files")
    p.add_argument("--render", choices=RENDER_CHOICES, default=None,
                   help="how PDF/SVG pages are drawn: 'planned' (straight at the size the model resizes them to: "
                        "one resampling, less CPU) or 'fit' (uniform zoom to the pixel budget, then the model "
                        "resizes). Default: what the store records; a new store gets 'planned' when umr "
                        "preprocesses for the model, else 'fit'. A store keeps its rendering (another is refused)")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds allowed per file (default 60)")
    p.add_argument("--batch-size", type=int, default=16, help="pages embedded at a time (default 16)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--rebuild", action="store_true",
                   help="re-create every vector from the stored pages (page images and text; nothing is "
                        "rendered again), e.g. after `umr stats --check` found the vector index damaged; "
                        "then index PATH... if given")
    add_server_args(p)
    g = p.add_argument_group("bulk indexing on Ray (pip install 'umr[ray]')")
    g.add_argument("--ray", action="store_true",
                   help="run the Ray Data pipeline: render tasks, an embedding actor pool, Chroma writers")
    g.add_argument("--ray-address", default=None, metavar="ADDR",
                   help="Ray cluster to join ('auto' after `ray start --head`; default: a local Ray)")
    g.add_argument("--actors", type=int, default=None, metavar="N",
                   help="embedding actors, one model each (default: one per GPU, else 1)")
    p.set_defaults(func=run)


def own_folders(args: argparse.Namespace) -> list[str]:
    """The index's own folders (database, page images), never indexed even when a walk reaches them."""
    folders = [] if args.host else [args.db]
    if args.image_dir:
        folders.append(args.image_dir)
    elif not args.host:
        folders.append(os.path.join(args.db, "images"))
    return folders


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


def collect_files(paths: Sequence[str], own: Sequence[str] = ()) -> tuple[list[str], list[Any]]:
    """Files to index: explicit files as given, folders walked for PDFs and images (by name); and the
    entries the walk left out (:class:`umr.documents.NotIndexed`: other file types, hidden entries,
    symlinked folders, the index's own folders), each with its reason."""
    from umr.documents import FileError, NotIndexed, walk

    files: list[str] = []
    left_out: list[NotIndexed] = []
    for p in paths:
        if not os.path.lexists(p):
            raise UsageError(f"no such file or directory: {display(p)}")
        for entry in walk([p], exclude=own, suffixes=DOC_SUFFIXES, on_skip=left_out.append,
                          exclude_reason="inside the index's own folder (--db or --image-dir): never indexed"):
            files.append(entry.source if isinstance(entry, FileError) else entry)  # failures: reported by the store
    return files, left_out


#: records the quick vector check samples before indexing (a damaged index would skip every file)
QUICK_SAMPLE = 8


def run(args: argparse.Namespace) -> int:
    if not args.paths and not args.rebuild and not args.rebuild_lexical:
        raise UsageError("give the files or folders to index (PATH...), or --rebuild / --rebuild-lexical")
    if (args.rebuild or args.rebuild_lexical) and args.ray:
        raise UsageError("--rebuild and --rebuild-lexical run locally; drop --ray")
    if not args.paths:
        rc = rebuild(args) if args.rebuild else 0
        return rebuild_lexical(args) if args.rebuild_lexical else rc
    files, ignored = collect_files(args.paths, own_folders(args))
    if not files:
        where = ", ".join(display(p) for p in args.paths)
        if args.verbose:
            for n in ignored:
                err(f"  left out {display(n.source)}: {n.reason}")
        raise JobFailed(
            f"no PDF or image files found in {where}"
            + (f" ({len(ignored)} other file(s) or folder(s) left out; -v lists them)" if ignored else "")
            + f"; supported: {', '.join(sorted(DOC_SUFFIXES))}"
        )
    check_db(args, must_exist=False)
    if args.ray:
        report = index_with_ray(args, files)
        sync_lexical_after_ray(args)
        print_report(args, report, ignored)
        return 0 if report.ok else 1
    recorded = None if args.model or args.server_model else recorded_model(args)
    embedder = load_embedder(args, recorded)
    workers = render_workers(args.workers, embedder, len(files))
    store = open_store(args, embedder, workers=workers, timeout=args.timeout, batch_size=args.batch_size,
                       render=args.render)
    if args.rebuild_lexical:
        rebuild_lexical(args, store)
    if args.rebuild:
        rebuild_store(args, store)
    else:
        health = store.check(sample=QUICK_SAMPLE)
        if not health.ok:
            store.close()
            raise JobFailed(health.summary())
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


def rebuild_lexical(args: argparse.Namespace, store: Any = None) -> int:
    """``umr index --rebuild-lexical``: the lexical index again from the texts stored in Chroma (no model is
    loaded, nothing is embedded again)."""
    if store is None:
        check_db(args, must_exist=True)
        store = open_readonly(args)
    if store.lexical is None:
        raise JobFailed(
            "no lexical index for this store: install tantivy (pip install 'umr[lexical]'); with --host give "
            "--lexical-dir DIR"
        )
    started = time.monotonic()
    n = store.rebuild_lexical(language=args.lexical_language)
    if args.json and not args.paths:
        out(json.dumps({"lexical_records": n, "lexical_dir": os.fspath(store.lexical.path)}))
    elif not args.quiet:
        out(f"lexical index rebuilt: {n} record(s) in {time.monotonic() - started:.1f} s "
            f"({display(os.fspath(store.lexical.path))})")
    return 0


def sync_lexical_after_ray(args: argparse.Namespace) -> None:
    """The Ray pipeline writes Chroma only: bring the lexical side in step from Chroma (no re-embedding)."""
    if args.host and not args.lexical_dir:
        return
    try:
        store = open_readonly(args)
    except JobFailed:
        return
    if store.lexical is not None:
        store.lexical.repair()
def rebuild(args: argparse.Namespace) -> int:
    """``umr index --rebuild`` without paths: re-create the vectors of the collection, nothing else."""
    check_db(args, must_exist=True)
    recorded = None if args.model or args.server_model else recorded_model(args)
    if recorded is None and not (args.model or args.server_model):
        where = f"{args.host}:{args.port}" if args.host else display(args.db)
        raise JobFailed(f"collection {args.collection!r} does not exist at {where}: nothing to rebuild")
    embedder = load_embedder(args, recorded)
    store = open_store(args, embedder, batch_size=args.batch_size)
    try:
        report = rebuild_store(args, store)
    finally:
        store.close()
    return 0 if not report.dropped else 1


def rebuild_store(args: argparse.Namespace, store: Any) -> Any:
    """Rebuild the vectors of ``store`` and print what happened."""
    bar = None
    if show_progress(args):
        from tqdm import tqdm

        bar = tqdm(total=store.count(), unit="record", desc="rebuilding", file=sys.stderr, dynamic_ncols=True)

    def progress(report: Any) -> None:
        if bar is not None:
            bar.update(max(0, report.rebuilt - bar.n))

    try:
        report = store.rebuild(progress=progress)
    finally:
        if bar is not None:
            bar.close()
    if args.json and not args.paths:  # with PATH... the index summary is the one JSON document
        out(json.dumps({"rebuilt": report.rebuilt, "seconds": round(report.seconds, 3),
                        "dropped": [{"id": i, "source": display(s)} for i, s in report.dropped]}, indent=2))
    elif args.json:
        err(f"umr index: {report.summary()}")
    elif not args.quiet:
        out(report.summary())
    return report


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
            show_progress=show_progress(args), render=args.render, **where,
        )

    if args.host:
        return job(args.host, args.port, **({"image_dir": args.image_dir} if args.image_dir else {}))
    try:
        with WriterLock(args.db).hold(wait=False), ChromaServer(args.db) as server:
            return job(server.host, server.port, image_dir=args.image_dir or Path(args.db) / "images",
                       exclude=[args.db])
    except StoreBusyError as exc:
        raise JobFailed(str(exc)) from None


def print_report(args: argparse.Namespace, report: Any, ignored: list[Any]) -> None:
    left_out = list(ignored) + list(getattr(report, "not_indexed", []))
    if args.json:
        out(json.dumps(report_json(report, left_out), indent=2))
    elif not args.quiet:
        out(
            f"indexed {report.files_indexed} file(s), {report.pages_added} page(s) added; "
            f"{report.files_skipped} file(s) unchanged ({report.pages_skipped} page(s) skipped); "
            f"{len(report.failed)} failed; {report.seconds:.1f}s"
        )
        if report.pages_replaced:
            out(f"replaced {report.pages_replaced} page(s) of changed files")
        if left_out:
            kinds: dict[str, int] = {}
            for n in left_out:
                kinds[n.kind] = kinds.get(n.kind, 0) + 1
            detail = ", ".join(f"{count} {LEFT_OUT_WORDS.get(kind, kind)}" for kind, count in sorted(kinds.items()))
            out(f"left out {len(left_out)} file(s) or folder(s): {detail}"
                + ("" if args.verbose else " (-v lists them)"))
            if args.verbose:
                for n in left_out:
                    out(f"  left out {display(n.source)}: {n.reason}")
        for e in report.failed:
            out(f"  FAILED {display(e.source)}: {e.reason}")


LEFT_OUT_WORDS = {
    "not_a_document": "not PDFs or images",
    "hidden": "hidden",
    "symlinked_folder": "symlinked folders",
    "excluded": "in the index's own folder",
}


def report_json(report: Any, left_out: list[Any]) -> dict[str, Any]:
    return {
        "files_indexed": report.files_indexed,
        "files_skipped": report.files_skipped,
        "pages_added": report.pages_added,
        "pages_skipped": report.pages_skipped,
        "pages_replaced": report.pages_replaced,
        "ignored": len(left_out),
        "not_indexed": [{"source": display(n.source), "kind": n.kind, "reason": n.reason} for n in left_out],
        "seconds": round(report.seconds, 3),
        "failed": [{"source": display(e.source), "kind": e.kind, "reason": e.reason} for e in report.failed],
    }
