"""What every ``umr`` command shares: errors and exit codes, output, argument groups, opening a store,
loading models.  Nothing heavy is imported here at import time."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Any

logger = logging.getLogger("umr.cli")

DEFAULT_DB = "umr_db"
DEFAULT_COLLECTION = "umr"


class UsageError(Exception):
    """Bad command-line usage: exit code 2."""


class JobFailed(Exception):
    """The command ran but did not succeed: exit code 1."""


# --------------------------------------------------------------------------------------------------
# output
# --------------------------------------------------------------------------------------------------
def out(line: str = "") -> None:
    """One line on stdout (results)."""
    sys.stdout.write(line + "\n")


def err(line: str) -> None:
    """One line on stderr (errors, progress notes)."""
    sys.stderr.write(line + "\n")


def display(path: str | os.PathLike | bytes) -> str:
    """A path printable on one line, whatever bytes its name holds."""
    from umr.documents import safe_display

    return safe_display(path)


def display_source(key: str) -> str:
    """A stored ``source`` (already a key, see :func:`umr.documents.source_key`) printable on one line."""
    from umr.documents.names import display_key

    return display_key(str(key))


def show_progress(args: argparse.Namespace) -> bool:
    """Progress bars and notes: on a terminal, unless ``--quiet`` or ``--no-progress``."""
    return not getattr(args, "no_progress", False) and not args.quiet and sys.stderr.isatty()


# --------------------------------------------------------------------------------------------------
# argument groups
# --------------------------------------------------------------------------------------------------
def add_store_args(p: argparse.ArgumentParser) -> None:
    """``--db`` / ``--host`` / ``--port`` / ``--collection``: where the index is."""
    g = p.add_argument_group("index location")
    g.add_argument("--db", default=os.environ.get("UMR_DB", DEFAULT_DB),
                   help="folder of the embedded Chroma index (default: ./umr_db or $UMR_DB)")
    g.add_argument("--host", default=os.environ.get("UMR_CHROMA_HOST"),
                   help="Chroma server host (instead of --db)")
    g.add_argument("--port", type=int, default=int(os.environ.get("UMR_CHROMA_PORT", "8000")),
                   help="Chroma server port (default 8000)")
    g.add_argument("--collection", default=DEFAULT_COLLECTION, help="collection name (default: umr)")


def add_image_dir_arg(p: argparse.ArgumentParser) -> None:
    """``--image-dir``: the folder of the page images."""
    p.add_argument("--image-dir", default=os.environ.get("UMR_IMAGE_DIR"), metavar="DIR",
                   help="folder of the page images (default: DB/images; with --host none are kept unless "
                        "given, and reranking then sees page text only); $UMR_IMAGE_DIR")


def add_lexical_dir_arg(p: argparse.ArgumentParser) -> None:
    """``--lexical-dir``: the folder of the lexical (BM25) index."""
    p.add_argument("--lexical-dir", default=os.environ.get("UMR_LEXICAL_DIR"), metavar="DIR",
                   help="folder of the lexical (BM25) index (default: DB/lexical/COLLECTION; with --host none "
                        "unless given); $UMR_LEXICAL_DIR")


def positive_int(value: str) -> int:
    """An ``argparse`` type: an int >= 1."""
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {n}")
    return n


def add_model_args(p: argparse.ArgumentParser) -> None:
    """``--model`` / ``--recipe`` / ``--device`` / ``--dtype`` / ``--trust-remote-code``."""
    g = p.add_argument_group("model")
    g.add_argument("--model", default=None,
                   help="hub id or local folder (default: $UMR_MODEL, the index's model, or GME-2B)")
    g.add_argument("--recipe", default=None, help="recipe name for a local folder (see `umr models`)")
    g.add_argument("--device", default=os.environ.get("UMR_DEVICE"), help="cpu, cuda, cuda:1 (default: auto)")
    g.add_argument("--dtype", default=None, help="float32, bfloat16, float16 (default: bf16 on GPU, fp32 on CPU)")
    g.add_argument("--trust-remote-code", action="store_true",
                   help="allow models that ship their own code (MM-Embed); only for code you trust")


def add_server_args(p: argparse.ArgumentParser) -> None:
    """``--server`` and friends: embed on a vLLM / SGLang server instead of a local model."""
    g = p.add_argument_group("model server (vLLM / SGLang) instead of a local model")
    g.add_argument("--server", default=os.environ.get("UMR_SERVER"), metavar="URL",
                   help="OpenAI-compatible embeddings server, e.g. http://localhost:8001 (vllm serve MODEL "
                        "--runner pooling); default $UMR_SERVER")
    g.add_argument("--server-model", default=None, metavar="NAME",
                   help="model name as the server serves it (default: --model, the index's model, or GME-2B)")
    g.add_argument("--api-key", default=None, help="bearer token for the server (default: $UMR_API_KEY)")
    g.add_argument("--server-api", choices=("auto", "vllm", "sglang", "umr"), default="auto",
                   help="request form: auto (default: umr for a `umr serve` server, else vllm), vllm (chat "
                        "messages, recipe prompts), sglang (--is-embedding) or umr (umr serve's own form)")


# --------------------------------------------------------------------------------------------------
# models
# --------------------------------------------------------------------------------------------------
def model_name(args: argparse.Namespace, recorded: str | None = None) -> str:
    """``--model``, else ``$UMR_MODEL``, else the model the index was built with, else the default."""
    from umr.recipes import DEFAULT_EMBEDDER

    return args.model or os.environ.get("UMR_MODEL") or recorded or DEFAULT_EMBEDDER


def load_embedder(args: argparse.Namespace, recorded: str | None = None) -> Any:
    """The embedder the arguments name: on ``--server``, or loaded locally."""
    name = model_name(args, recorded)
    if getattr(args, "server", None):
        from umr.remote import RemoteEmbedder

        served = args.server_model or name
        logger.info("embedding on the server %s (model %s)", args.server, served)
        return RemoteEmbedder(args.server, served, api_key=args.api_key, recipe=args.recipe, api=args.server_api)
    from umr.embedder import Embedder
    from umr.errors import UnknownRecipeError

    logger.info("loading embedder %s", name)
    try:
        return Embedder.from_pretrained(
            name, device=args.device, dtype=args.dtype, recipe=args.recipe,
            trust_remote_code=getattr(args, "trust_remote_code", False),
        )
    except UnknownRecipeError as exc:
        raise UsageError(cli_words(str(exc))) from None


def cli_words(message: str) -> str:
    """A library message in the words of the command line (``recipe=<name>`` -> ``--recipe NAME``)."""
    return message.replace("pass recipe=<name>", "pass --recipe NAME").replace("recipe=<name>", "--recipe NAME")


def load_reranker(name: str, args: argparse.Namespace) -> Any:
    """The reranker ``name`` (``--rerank MODEL``), on ``--device`` / ``--dtype``."""
    from umr.reranker import Reranker

    logger.info("loading reranker %s", name)
    return Reranker.from_pretrained(name, device=args.device, dtype=args.dtype)


# --------------------------------------------------------------------------------------------------
# the store
# --------------------------------------------------------------------------------------------------
def client_args(args: argparse.Namespace) -> dict[str, Any]:
    """``host`` + ``port`` of a server, or ``path`` of an embedded database."""
    if args.host:
        return {"host": args.host, "port": args.port}
    return {"path": args.db}


def recorded_model(args: argparse.Namespace) -> str | None:
    """The model id a collection was built with (so ``search`` needs no ``--model``)."""
    from umr.store.info import read_collection_info

    info = read_collection_info(collection=args.collection, **client_args(args))
    return None if info is None else info.get("umr_model_id")


def open_store(args: argparse.Namespace, embedder: Any, **kwargs: Any) -> Any:
    """A ``ChromaStore`` for ``embedder`` where the arguments say (``--image-dir``, ``--lexical-dir`` and
    ``--lexical-language`` honoured)."""
    from umr.store import ChromaStore

    image_dir = getattr(args, "image_dir", None)
    if image_dir:
        kwargs["image_dir"] = image_dir
    if getattr(args, "lexical_dir", None):
        kwargs["lexical_dir"] = args.lexical_dir
    if getattr(args, "lexical_language", None):
        kwargs["lexical_language"] = args.lexical_language
    return ChromaStore(embedder, collection=args.collection, **client_args(args), **kwargs)


def open_readonly(args: argparse.Namespace) -> Any:
    """A store opened with the model recorded in the collection, without loading any weights."""
    from umr.store.info import open_existing, read_collection_info

    info = read_collection_info(collection=args.collection, **client_args(args))
    if info is None:
        raise JobFailed(f"collection {args.collection!r} does not exist; nothing to do")
    return open_existing(collection=args.collection, image_dir=getattr(args, "image_dir", None),
                         lexical_dir=getattr(args, "lexical_dir", None), **client_args(args))


def check_db(args: argparse.Namespace, must_exist: bool) -> None:
    """``--db`` exists (when ``must_exist``) and is writable; nothing to check on a server."""
    if args.host:
        return
    db = Path(args.db)
    if must_exist and not db.exists():
        raise JobFailed(f"no index at {display(db)}: run `umr index PATH --db {display(db)}` first")
    if db.exists() and not os.access(db, os.W_OK):
        raise JobFailed(f"the index folder {display(db)} is not writable (read-only disk or permissions)")


WHERE_EXAMPLE = '\'{"kind": "pdf"}\' or \'{"$and": [{"kind": "pdf"}, {"page": {"$lte": 3}}]}\''


def parse_where(text: str | None) -> dict[str, Any] | None:
    """``--where``: a JSON object (a Chroma metadata filter), or a :class:`UsageError` with an example."""
    if not text:
        return None
    import json

    try:
        where = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"--where must be a JSON object, e.g. {WHERE_EXAMPLE} ({exc.msg})") from None
    if not isinstance(where, dict) or not where:
        got = "an empty object" if isinstance(where, dict) else f"a JSON {_json_kind(where)}"
        raise UsageError(f"--where must be a non-empty JSON object of metadata conditions, e.g. {WHERE_EXAMPLE}; "
                         f"got {got}")
    return where


def _json_kind(value: Any) -> str:
    return {list: "array", str: "string", bool: "boolean", int: "number", float: "number"}.get(
        type(value), "null" if value is None else type(value).__name__
    )


def image_path(uri: str) -> Path | None:
    """The local file behind a hit's ``image_uri`` (a percent-encoded ``file://`` URI), when it exists."""
    if not uri:
        return None
    from umr.inputs import path_from_uri

    try:
        path = path_from_uri(uri)
    except ValueError:  # not a local file (InputError is a ValueError)
        logger.warning("image %s is not a local file; reranking sees the page text only", uri[:80])
        return None
    if not path.is_file():
        logger.warning("page image %s is missing; reranking sees the page text only", display(path))
        return None
    return path
