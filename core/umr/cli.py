"""The ``umr`` command line: index, search, delete, stats, eval, models, make-tiny-model, train.

Exit codes: 0 success; 1 the job ran but something failed (some files, no results, an error while
running); 2 usage errors (bad arguments, no such path). Errors print one line on stderr; ``--verbose``
adds the traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

logger = logging.getLogger("umr.cli")

DOC_SUFFIXES = {".pdf", ".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp", ".gif"}
DEFAULT_DB = "umr_db"
DEFAULT_COLLECTION = "umr"


class UsageError(Exception):
    """Bad command-line usage: exit code 2."""


class JobFailed(Exception):
    """The command ran but did not succeed: exit code 1."""


# --------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------
def _out(line: str = "") -> None:
    sys.stdout.write(line + "\n")


def _err(line: str) -> None:
    sys.stderr.write(line + "\n")


def _show_progress(args: argparse.Namespace) -> bool:
    return not getattr(args, "no_progress", False) and not args.quiet and sys.stderr.isatty()


def _display(path: str | os.PathLike | bytes) -> str:
    from umr.documents import safe_display

    return safe_display(path)


def _model_name(args: argparse.Namespace, recorded: str | None = None) -> str:
    from umr.recipes import DEFAULT_EMBEDDER

    return args.model or os.environ.get("UMR_MODEL") or recorded or DEFAULT_EMBEDDER


def _load_embedder(args: argparse.Namespace, recorded: str | None = None) -> Any:
    from umr.embedder import Embedder

    name = _model_name(args, recorded)
    if getattr(args, "server", None):
        from umr.remote import RemoteEmbedder

        served = args.server_model or name
        logger.info("embedding on the server %s (model %s)", args.server, served)
        return RemoteEmbedder(args.server, served, api_key=args.api_key, recipe=args.recipe, api=args.server_api)
    logger.info("loading embedder %s", name)
    return Embedder.from_pretrained(
        name, device=args.device, dtype=args.dtype, recipe=args.recipe,
        trust_remote_code=getattr(args, "trust_remote_code", False),
    )


def _client_args(args: argparse.Namespace) -> dict[str, Any]:
    if args.host:
        return {"host": args.host, "port": args.port}
    return {"path": args.db}


def _recorded_model(args: argparse.Namespace) -> str | None:
    """The model id a collection was built with (so ``search`` needs no ``--model``)."""
    from umr.store.info import read_collection_info

    info = read_collection_info(collection=args.collection, **_client_args(args))
    return None if info is None else info.get("umr_model_id")


def _open_store(args: argparse.Namespace, embedder: Any, **kwargs: Any) -> Any:
    from umr.store import ChromaStore

    image_dir = getattr(args, "image_dir", None)
    if image_dir:
        kwargs["image_dir"] = image_dir
    return ChromaStore(embedder, collection=args.collection, **_client_args(args), **kwargs)


def _check_db(args: argparse.Namespace, must_exist: bool) -> None:
    if args.host:
        return
    db = Path(args.db)
    if must_exist and not db.exists():
        raise JobFailed(f"no index at {_display(db)}: run `umr index PATH --db {_display(db)}` first")
    if db.exists() and not os.access(db, os.W_OK):
        raise JobFailed(f"the index folder {_display(db)} is not writable (read-only disk or permissions)")


# --------------------------------------------------------------------------------------------------
# commands
# --------------------------------------------------------------------------------------------------
def _collect_files(paths: Sequence[str]) -> tuple[list[str], int]:
    """Files to index: explicit files as given, folders walked for PDFs and images."""
    from umr.documents import FileError, walk

    files: list[str] = []
    ignored = 0
    for p in paths:
        if not os.path.lexists(p):
            raise UsageError(f"no such file or directory: {_display(p)}")
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


def cmd_index(args: argparse.Namespace) -> int:
    files, ignored = _collect_files(args.paths)
    if not files:
        where = ", ".join(_display(p) for p in args.paths)
        raise JobFailed(
            f"no PDF or image files found in {where}"
            + (f" ({ignored} other file(s) ignored)" if ignored else "")
            + f"; supported: {', '.join(sorted(DOC_SUFFIXES))}"
        )
    _check_db(args, must_exist=False)
    if args.ray:
        report = _index_with_ray(args, files)
        _print_index_report(args, report, ignored)
        return 0 if report.ok else 1
    recorded = None if args.model or args.server_model else _recorded_model(args)
    embedder = _load_embedder(args, recorded)
    store = _open_store(args, embedder, workers=args.workers, timeout=args.timeout, batch_size=args.batch_size)
    bar = None
    started = time.monotonic()
    if _show_progress(args):
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
    _print_index_report(args, report, ignored)
    return 0 if report.ok else 1


def _index_with_ray(args: argparse.Namespace, files: list[str]) -> Any:
    """``umr index --ray``: the Ray Data pipeline of ``umr.distributed``; with ``--db`` (no server) the
    folder is served by a ``chroma run`` started for the job, so the result is the same folder."""
    try:
        from umr.distributed import EmbedderSpec, index_files, require_ray

        require_ray()
    except ImportError as exc:
        raise JobFailed(str(exc)) from None
    from umr.store.server import ChromaServer

    def run(host: str, port: int, **where: Any) -> Any:
        from umr.store.info import read_collection_info

        recorded = None
        if not (args.model or args.server_model):
            info = read_collection_info(collection=args.collection, host=host, port=port)
            recorded = None if info is None else info.get("umr_model_id")
        name = _model_name(args, recorded)
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
            show_progress=_show_progress(args), **where,
        )

    if args.host:
        return run(args.host, args.port, **({"image_dir": args.image_dir} if args.image_dir else {}))
    with _db_writer_lock(Path(args.db)), ChromaServer(args.db) as server:
        return run(server.host, server.port, image_dir=args.image_dir or Path(args.db) / "images",
                   exclude=[args.db])


@contextlib.contextmanager
def _db_writer_lock(db: Path) -> Iterator[None]:
    """The writer lock of ``ChromaStore`` on an embedded folder: no local ``umr index`` writes to the
    folder while the job's server does."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    db.mkdir(parents=True, exist_ok=True)
    with open(db / ".umr-writer.lock", "a+b") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise JobFailed(
                f"another process is writing to {_display(db)}; wait for it, or run a Chroma server "
                "(chroma run --path DB) and pass --host/--port"
            ) from None
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _print_index_report(args: argparse.Namespace, report: Any, ignored: int) -> None:
    if args.json:
        _out(json.dumps(_report_json(report, ignored), indent=2))
    elif not args.quiet:
        _out(
            f"indexed {report.files_indexed} file(s), {report.pages_added} page(s) added; "
            f"{report.files_skipped} file(s) unchanged ({report.pages_skipped} page(s) skipped); "
            f"{len(report.failed)} failed; {report.seconds:.1f}s"
        )
        if report.pages_replaced:
            _out(f"replaced {report.pages_replaced} page(s) of changed files")
        if ignored:
            _out(f"ignored {ignored} file(s) that are not PDFs or images")
        for err in report.failed:
            _out(f"  FAILED {_display(err.source)}: {err.reason}")


def _report_json(report: Any, ignored: int) -> dict[str, Any]:
    return {
        "files_indexed": report.files_indexed,
        "files_skipped": report.files_skipped,
        "pages_added": report.pages_added,
        "pages_skipped": report.pages_skipped,
        "pages_replaced": report.pages_replaced,
        "ignored": ignored,
        "seconds": round(report.seconds, 3),
        "failed": [{"source": _display(e.source), "kind": e.kind, "reason": e.reason} for e in report.failed],
    }


def _query(args: argparse.Namespace) -> Any:
    text = args.query
    if args.image is None:
        if not text:
            raise UsageError("give a query text, --image PATH, or both")
        return text
    if not os.path.isfile(args.image):
        raise UsageError(f"query image not found: {_display(args.image)}")
    return {"image": Path(args.image)} if not text else {"text": text, "image": Path(args.image)}


def _snippet(text: str, width: int = 160) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def cmd_search(args: argparse.Namespace) -> int:
    if args.k < 1:
        raise UsageError("-k must be at least 1")
    query = _query(args)
    _check_db(args, must_exist=True)
    recorded = None if args.model or args.server_model else _recorded_model(args)
    if recorded is None and not args.host and not (args.model or args.server_model):
        raise JobFailed(
            f"collection {args.collection!r} does not exist in {_display(args.db)}: run `umr index` first"
        )
    embedder = _load_embedder(args, recorded)
    store = _open_store(args, embedder)
    where = None
    if args.where:
        try:
            where = json.loads(args.where)
        except json.JSONDecodeError as exc:
            raise UsageError(f"--where must be a JSON object, e.g. '{{\"kind\": \"pdf\"}}' ({exc.msg})") from None
    depth = max(args.k, args.rerank_depth) if args.rerank else args.k
    hits = store.search(query, k=depth, where=where, instruction=args.instruction)
    if not hits:
        raise JobFailed(f"no results: collection {args.collection!r} is empty or nothing matches the filter")
    rows = [
        {
            "id": h.id,
            "score": round(float(h.score), 6),
            "source": h.metadata.get("source", ""),
            "page": h.metadata.get("page", 0),
            "kind": h.metadata.get("kind", ""),
            "image_uri": h.image_uri,
            "snippet": _snippet(h.document),
        }
        for h in hits
    ]
    if args.rerank:
        from umr.reranker import Reranker

        reranker = Reranker.from_pretrained(args.rerank, device=args.device, dtype=args.dtype)
        candidates = []
        for h in hits:
            img = h.image_uri[7:] if h.image_uri.startswith("file://") else h.image_uri
            if img and os.path.isfile(img):
                candidates.append({"image": Path(img), "text": h.document} if h.document else {"image": Path(img)})
            else:
                candidates.append(h.document or " ")
        order = reranker.rerank(query, candidates)
        rows = [{**rows[i], "rerank_score": round(float(s), 6)} for i, s in order]
    rows = rows[: args.k]
    for rank, row in enumerate(rows, start=1):
        row["rank"] = rank
    if args.json:
        _out(json.dumps(rows, indent=2, ensure_ascii=False))
        return 0
    for row in rows:
        score = f"{row['score']:.4f}" + (f"  rerank {row['rerank_score']:.4f}" if "rerank_score" in row else "")
        where_s = _display(str(row["source"])) + (f"  p.{row['page']}" if row["page"] else "")
        _out(f"{row['rank']:>3}. {score}  {where_s}")
        if row["snippet"]:
            _out(f"     {row['snippet']}")
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    _check_db(args, must_exist=True)
    store = _open_readonly(args)
    missing = 0
    for src in args.sources:
        removed = store.delete_document(src)
        if removed:
            _out(f"removed {removed} record(s) of {_display(src)}")
        else:
            missing += 1
            _err(f"umr: nothing stored for {_display(src)} (give the path as indexed, or the file's sha256)")
    return 1 if missing else 0


def _open_readonly(args: argparse.Namespace) -> Any:
    """A store opened with the model recorded in the collection, without loading any weights."""
    from umr.store.info import open_existing, read_collection_info

    info = read_collection_info(collection=args.collection, **_client_args(args))
    if info is None:
        raise JobFailed(f"collection {args.collection!r} does not exist; nothing to do")
    return open_existing(collection=args.collection, image_dir=getattr(args, "image_dir", None), **_client_args(args))


def cmd_stats(args: argparse.Namespace) -> int:
    _check_db(args, must_exist=True)
    store = _open_readonly(args)
    stats = store.stats()
    docs = store.documents()
    if args.json:
        stats["documents_list"] = [
            {"source": _display(d.source), "sha256": d.sha256, "pages": d.pages, "page_count": d.page_count}
            for d in docs
        ]
        _out(json.dumps(stats, indent=2, default=str))
        return 0
    for key in ("collection", "path", "model_id", "dim", "records", "documents"):
        _out(f"{key:>12}: {stats.get(key)}")
    for d in docs:
        _out(f"  {d.pages:>4}/{d.page_count:<4} {_display(d.source)}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from umr.evaluation import evaluate, load_dataset

    if not os.path.isdir(args.dataset):
        raise UsageError(f"no such dataset folder: {_display(args.dataset)}")
    try:
        ks = sorted({int(k) for k in args.k.split(",")})
    except ValueError:
        raise UsageError(f"-k takes comma-separated integers like 1,5,10, got {args.k!r}") from None
    if not ks or ks[0] < 1:
        raise UsageError("-k values must be positive")
    dataset = load_dataset(args.dataset, args.split)
    embedder = _load_embedder(args)
    reranker = None
    if args.rerank:
        from umr.reranker import Reranker

        reranker = Reranker.from_pretrained(args.rerank, device=args.device, dtype=args.dtype)
    say = (lambda msg: _err(f"umr: {msg}")) if _show_progress(args) else None
    result = evaluate(
        embedder, dataset, reranker=reranker, ks=ks, rerank_depth=args.rerank_depth,
        instruction=args.instruction, on_progress=say,
    )
    result["model"] = embedder.model_id
    result["dataset"] = os.fspath(args.dataset)
    if args.rerank:
        result["reranker"] = args.rerank
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))
    if args.json:
        _out(json.dumps(result, indent=2))
        return 0
    names = list(result["retrieval"])
    _out(f"{result['queries']} queries, {result['corpus']} corpus items, model {embedder.model_id}")
    _out("| stage | " + " | ".join(names) + " |")
    _out("|---" * (len(names) + 1) + "|")
    for stage in ("retrieval", "reranked"):
        if stage in result:
            _out(f"| {stage} | " + " | ".join(f"{result[stage][n]:.4f}" for n in names) + " |")
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from umr.recipes import format_table, list_recipes

    rows = list_recipes(args.kind)
    if args.json:
        _out(json.dumps(rows, indent=2))
    else:
        sys.stdout.write(format_table(rows, "markdown" if args.markdown else "text"))
    return 0


def cmd_make_tiny_model(args: argparse.Namespace) -> int:
    from umr.testing import build_tiny_model

    path = build_tiny_model(args.dir, recipe=args.recipe, seed=args.seed)
    _out(f"wrote a tiny random-weight {args.recipe} model to {_display(path)}")
    _out(f"try: umr index examples/data --model {_display(path)}")
    return 0


# --------------------------------------------------------------------------------------------------
# parser
# --------------------------------------------------------------------------------------------------
def _add_store_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("index location")
    g.add_argument("--db", default=os.environ.get("UMR_DB", DEFAULT_DB),
                   help="folder of the embedded Chroma index (default: ./umr_db or $UMR_DB)")
    g.add_argument("--host", default=os.environ.get("UMR_CHROMA_HOST"),
                   help="Chroma server host (instead of --db)")
    g.add_argument("--port", type=int, default=int(os.environ.get("UMR_CHROMA_PORT", "8000")),
                   help="Chroma server port (default 8000)")
    g.add_argument("--collection", default=DEFAULT_COLLECTION, help="collection name (default: umr)")


def _add_image_dir_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--image-dir", default=os.environ.get("UMR_IMAGE_DIR"), metavar="DIR",
                   help="folder of the page images (default: DB/images; with --host none are kept unless "
                        "given, and reranking then sees page text only); $UMR_IMAGE_DIR")


def _add_model_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model")
    g.add_argument("--model", default=None,
                   help="hub id or local folder (default: $UMR_MODEL, the index's model, or GME-2B)")
    g.add_argument("--recipe", default=None, help="recipe name for a local folder (see `umr models`)")
    g.add_argument("--device", default=os.environ.get("UMR_DEVICE"), help="cpu, cuda, cuda:1 (default: auto)")
    g.add_argument("--dtype", default=None, help="float32, bfloat16, float16 (default: bf16 on GPU, fp32 on CPU)")
    g.add_argument("--trust-remote-code", action="store_true",
                   help="allow models that ship their own code (MM-Embed); only for code you trust")


def _add_server_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model server (vLLM / SGLang) instead of a local model")
    g.add_argument("--server", default=os.environ.get("UMR_SERVER"), metavar="URL",
                   help="OpenAI-compatible embeddings server, e.g. http://localhost:8001 (vllm serve MODEL "
                        "--runner pooling); default $UMR_SERVER")
    g.add_argument("--server-model", default=None, metavar="NAME",
                   help="model name as the server serves it (default: --model, the index's model, or GME-2B)")
    g.add_argument("--api-key", default=None, help="bearer token for the server (default: $UMR_API_KEY)")
    g.add_argument("--server-api", choices=("vllm", "sglang"), default="vllm",
                   help="request form: vllm (chat messages, recipe prompts; default) or sglang (--is-embedding)")


def _add_ray_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("bulk indexing on Ray (pip install 'umr[ray]')")
    g.add_argument("--ray", action="store_true",
                   help="run the Ray Data pipeline: render tasks, an embedding actor pool, Chroma writers")
    g.add_argument("--ray-address", default=None, metavar="ADDR",
                   help="Ray cluster to join ('auto' after `ray start --head`; default: a local Ray)")
    g.add_argument("--actors", type=int, default=None, metavar="N",
                   help="embedding actors, one model each (default: one per GPU, else 1)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="umr",
        description="Universal multimodal retrieval: index PDFs and images, search them by page.",
    )
    parser.add_argument("--verbose", "-v", action="store_true", help="log details and show tracebacks")
    parser.add_argument("--quiet", "-q", action="store_true", help="print only results and errors")
    from umr import __version__

    parser.add_argument("--version", action="version", version=f"umr {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("index", help="index PDFs and images (folders are walked)")
    p.add_argument("paths", nargs="+", metavar="PATH")
    _add_store_args(p)
    _add_image_dir_arg(p)
    _add_model_args(p)
    p.add_argument("--workers", type=int, default=1, help="renderer processes (default 1)")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds allowed per file (default 60)")
    p.add_argument("--batch-size", type=int, default=16, help="pages embedded at a time (default 16)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    _add_server_args(p)
    _add_ray_args(p)
    p.set_defaults(func=cmd_index)

    p = sub.add_parser("search", help="search the index with text, an image, or both")
    p.add_argument("query", nargs="?", default="", help="query text")
    p.add_argument("--image", default=None, help="query image (with text: a fused query)")
    p.add_argument("-k", type=int, default=5, help="number of results (default 5)")
    p.add_argument("--where", default=None, help='metadata filter as JSON, e.g. \'{"kind": "pdf"}\'')
    p.add_argument("--instruction", default=None, help="query-side task instruction")
    p.add_argument("--rerank", default=None, metavar="MODEL", help="rerank with this MLLM reranker")
    p.add_argument("--rerank-depth", type=int, default=20, help="candidates to rerank (default 20)")
    p.add_argument("--json", action="store_true", help="print results as JSON")
    _add_store_args(p)
    _add_model_args(p)
    _add_server_args(p)
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("delete", help="remove documents (by path as indexed, or sha256)")
    p.add_argument("sources", nargs="+", metavar="SOURCE")
    _add_store_args(p)
    _add_image_dir_arg(p)
    p.set_defaults(func=cmd_delete)

    p = sub.add_parser("stats", help="what the index holds")
    p.add_argument("--json", action="store_true")
    _add_store_args(p)
    p.set_defaults(func=cmd_stats)

    p = sub.add_parser("eval", help="Recall@k / nDCG@k / MRR on a BEIR / ViDoRe style folder")
    p.add_argument("dataset", metavar="DATASET_DIR")
    p.add_argument("--split", default="test", help="qrels split (default test)")
    p.add_argument("-k", default="1,5,10", help="cut-offs, comma-separated (default 1,5,10)")
    p.add_argument("--instruction", default=None, help="query-side task instruction")
    p.add_argument("--rerank", default=None, metavar="MODEL", help="also evaluate with this reranker")
    p.add_argument("--rerank-depth", type=int, default=20, help="candidates to rerank (default 20)")
    p.add_argument("--out", default=None, help="write the JSON result to this file")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    _add_model_args(p)
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("models", help="the model table")
    p.add_argument("--kind", choices=("all", "embedder", "reranker"), default="all")
    p.add_argument("--json", action="store_true")
    p.add_argument("--markdown", action="store_true", help="markdown, as in the README")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("make-tiny-model", help="write a tiny random-weight model to try every command offline")
    p.add_argument("dir", metavar="DIR")
    p.add_argument("--recipe", default="gme", help="recipe of the tiny model (default gme)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_make_tiny_model)

    _add_train_parser(sub)
    return parser


def _add_train_parser(sub: Any) -> None:
    try:
        from umr.train.cli import add_parser
    except ImportError:
        return
    add_parser(sub)


def _configure_logging(verbose: bool, quiet: bool) -> None:
    level = logging.DEBUG if verbose else (logging.ERROR if quiet else logging.WARNING)
    logging.basicConfig(level=level, format="umr: %(levelname)s: %(message)s", stream=sys.stderr)
    if not verbose:
        # the index summary already lists every failed file with its reason
        for noisy in ("chromadb", "httpx", "transformers", "urllib3", "umr.store", "umr.distributed", "ray"):
            logging.getLogger(noisy).setLevel(logging.ERROR)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    _configure_logging(args.verbose, args.quiet)
    os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
    try:
        return int(args.func(args) or 0)
    except UsageError as exc:
        _err(f"umr {args.command}: error: {exc}")
        return 2
    except KeyboardInterrupt:
        _err("umr: interrupted (re-run the same command to resume; finished pages are kept)")
        return 130
    except Exception as exc:
        if args.verbose:
            import traceback

            traceback.print_exc()
        _err(f"umr {args.command}: error: {_one_line(exc)}")
        return 1


def _one_line(exc: BaseException) -> str:
    from umr.errors import UMRError

    msg = " ".join(str(exc).split()) or type(exc).__name__
    hint = ""
    low = msg.lower()
    if "readonly" in low or "read-only" in low or "read only" in low:
        hint = " (the index folder is on a read-only disk or not writable)"
    elif "locked" in low:
        hint = " (another process holds the index; use a Chroma server for several writers)"
    elif "connect" in low and "chroma" in low:
        hint = " (start one with `chroma run --path DIR --port PORT`, or drop --host to use ./umr_db)"
    if isinstance(exc, (UMRError, JobFailed, FileNotFoundError, ValueError)):
        return msg + hint
    return f"{type(exc).__name__}: {msg}{hint}"


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
