"""The ``umr serve`` command: ``add_parser(subparsers)`` registers it, ``run(args)`` serves until stopped.

    umr serve --db umr_db --model Alibaba-NLP/gme-Qwen2-VL-2B-Instruct --rerank Qwen/Qwen3-VL-Reranker-2B
    umr serve --db umr_db --api-key "$KEY" --bind 0.0.0.0 --port 8000
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import sys
from typing import Any

logger = logging.getLogger("umr.serve")


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``serve`` sub-command to an ``argparse`` sub-parsers object; returns its parser."""
    p = subparsers.add_parser(
        "serve",
        help="serve the models (OpenAI / Cohere APIs), the store's search and a search page over HTTP",
        description="HTTP service: POST /v1/embeddings (OpenAI), /v1/rerank (Cohere/Jina), /v1/search, "
        "/v1/documents; GET /health, /metrics; a search page at /. Needs: pip install 'umr[serve]'.",
    )
    g = p.add_argument_group("listening")
    g.add_argument("--bind", default="127.0.0.1", metavar="ADDR",
                   help="address to listen on (default 127.0.0.1: this machine only)")
    g.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000)")
    g.add_argument("--api-key", default=os.environ.get("UMR_SERVE_API_KEY"),
                   help="require 'Authorization: Bearer KEY' on every route but /health "
                   "(default: $UMR_SERVE_API_KEY)")
    g = p.add_argument_group("store (optional; without one, /v1/search and uploads are off)")
    g.add_argument("--db", default=os.environ.get("UMR_DB"), metavar="DIR", help="embedded Chroma folder")
    g.add_argument("--host", default=os.environ.get("UMR_CHROMA_HOST"), metavar="HOST",
                   help="Chroma server host instead of --db")
    g.add_argument("--chroma-port", type=int, default=int(os.environ.get("UMR_CHROMA_PORT", "8000")),
                   help="Chroma server port (default 8000)")
    g.add_argument("--collection", default="umr", help="collection name (default umr)")
    g.add_argument("--image-dir", default=os.environ.get("UMR_IMAGE_DIR"), metavar="DIR",
                   help="page image folder (default <db>/images)")
    g.add_argument("--upload-dir", default=None, metavar="DIR",
                   help="where uploaded files are kept, outside the database folder (default <db>-uploads)")
    g = p.add_argument_group("models")
    g.add_argument("--model", default=None, help="embedding model id or folder (default: GME-Qwen2-VL-2B)")
    g.add_argument("--recipe", default=None, help="recipe of a local embedding model folder")
    g.add_argument("--dim", type=int, default=None, help="Matryoshka output dimension of the embedder")
    g.add_argument("--rerank", default=None, metavar="MODEL", help="also serve this reranker")
    g.add_argument("--rerank-recipe", default=None, help="recipe of a local reranker folder")
    g.add_argument("--device", default=os.environ.get("UMR_DEVICE"), help="cpu, cuda, cuda:1 (default: auto)")
    g.add_argument("--dtype", default=None, help="float32, bfloat16, float16 (default: bf16 on GPU)")
    g.add_argument("--trust-remote-code", action="store_true", help="allow checkpoints that run their own code")
    g.add_argument("--served-model-name", default=None, help="name clients use for the embedder")
    g.add_argument("--served-reranker-name", default=None, help="name clients use for the reranker")
    g = p.add_argument_group("limits")
    g.add_argument("--allow-media-dir", action="append", default=[], metavar="DIR",
                   help="folder whose images requests may name by file:// URL (repeatable; default none)")
    g.add_argument("--max-body-mb", type=float, default=32.0, help="request body limit (default 32 MiB)")
    g.add_argument("--max-upload-mb", type=float, default=256.0, help="upload body limit (default 256 MiB)")
    g.add_argument("--max-image-pixels", type=int, default=40_000_000, help="pixels of one request image")
    g.add_argument("--max-inputs", type=int, default=2048, help="inputs per request (default 2048)")
    g.add_argument("--no-batching", action="store_true", help="one model call per request (no pooling)")
    g.add_argument("--max-batch-items", type=int, default=256, help="items pooled into one call (default 256)")
    g.add_argument("--max-batch-tokens", type=int, default=None,
                   help="tokens pooled into one embedding call (default: one forward pass of the model on a "
                        "GPU, 2048 on a CPU)")
    g.add_argument("--log-level", default="info", choices=("critical", "error", "warning", "info", "debug"))
    p.set_defaults(func=run)
    return p


def _loopback(addr: str) -> bool:
    if addr == "localhost":
        return True
    try:
        return ipaddress.ip_address(addr).is_loopback
    except ValueError:
        return False


#: ServeConfig fields whose command-line option is not ``--`` + the field name with dashes
_OPTION_OF = {"max_body_bytes": "--max-body-mb", "allowed_media_dirs": "--allow-media-dir"}


def _config_error(exc: ValueError) -> str:
    """A ServeConfig refusal in the words of the command line: ``--option: what is wrong`` per error."""
    errors = getattr(exc, "errors", None)
    if not callable(errors):
        return str(exc).replace("\n", " ")
    parts = []
    for err in errors():
        field = str(err.get("loc", ("?",))[0])
        option = _OPTION_OF.get(field, "--" + field.replace("_", "-"))
        parts.append(f"{option}: {str(err.get('msg', 'invalid value')).removeprefix('Value error, ')}")
    return "; ".join(parts)


def _fail(message: str) -> int:
    sys.stderr.write(f"umr serve: error: {message}\n")
    return 2


def run(args: argparse.Namespace) -> int:
    """Load the models, open the store, serve until interrupted. Returns the exit status."""
    try:
        import uvicorn

        from .app import DEFAULT_MAX_UPLOAD_BYTES, create_app
        from .config import ServeConfig
    except ImportError as exc:
        return _fail(f"{exc}; install the service: pip install 'umr[serve]'")
    logging.basicConfig(level=getattr(logging, args.log_level.upper()), format="%(levelname)s %(name)s: %(message)s")
    if not (0 < args.port < 65536):
        return _fail(f"--port {args.port} is not a port number (1-65535)")
    if not _loopback(args.bind) and not args.api_key:
        logger.warning("listening on %s without --api-key: anyone who can reach this address can use the "
                       "models and the store", args.bind)
    try:
        config = ServeConfig(
            api_key=args.api_key,
            allowed_media_dirs=tuple(args.allow_media_dir),
            max_body_bytes=int(args.max_body_mb * 1024 * 1024),
            max_image_pixels=args.max_image_pixels,
            max_inputs=args.max_inputs,
            batching=not args.no_batching,
            max_batch_items=args.max_batch_items,
            max_batch_tokens=args.max_batch_tokens,
            served_model_name=args.served_model_name,
            served_reranker_name=args.served_reranker_name,
            upload_dir=args.upload_dir,
        )
    except ValueError as exc:
        return _fail(_config_error(exc))
    try:
        import umr
        from umr.recipes import DEFAULT_EMBEDDER

        load: dict[str, Any] = {"device": args.device, "dtype": args.dtype}
        embedder = umr.Embedder.from_pretrained(
            args.model or DEFAULT_EMBEDDER, recipe=args.recipe, dim=args.dim,
            trust_remote_code=args.trust_remote_code, **load,
        )
        reranker = None
        if args.rerank:
            reranker = umr.Reranker.from_pretrained(args.rerank, recipe=args.rerank_recipe, **load)
    except (OSError, ValueError, ImportError, PermissionError) as exc:
        return _fail(f"cannot load the model: {exc}")
    store_options: dict[str, Any] | None = None
    if args.db or args.host:
        store_options = {"collection": args.collection}
        if args.host:
            store_options.update(host=args.host, port=args.chroma_port, path=args.db or "umr_db")
        else:
            store_options["path"] = args.db
        if args.image_dir:
            store_options["image_dir"] = args.image_dir
    try:
        app = create_app(
            embedder, reranker, store_options=store_options, config=config,
            max_upload_bytes=int(args.max_upload_mb * 1024 * 1024) or DEFAULT_MAX_UPLOAD_BYTES,
        )
    except (OSError, ValueError) as exc:
        return _fail(f"cannot open the store: {exc}")
    logger.info("umr serve on http://%s:%d (embedder %s%s%s)", args.bind, args.port, embedder.model_id,
                f", reranker {reranker.model_id}" if reranker is not None else "",
                ", store " + str(store_options.get("host") or store_options.get("path")) if store_options else "")
    try:
        uvicorn.run(app, host=args.bind, port=args.port, log_level=args.log_level, timeout_graceful_shutdown=5,
                    server_header=False)
    except KeyboardInterrupt:  # pragma: no cover
        pass
    return 0
