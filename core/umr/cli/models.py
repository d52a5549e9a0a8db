"""``umr models``: the table of embedding and reranking recipes."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from .common import out


def register(sub: Any) -> None:
    p = sub.add_parser("models", help="the model table")
    p.add_argument("--kind", choices=("all", "embedder", "reranker"), default="all")
    p.add_argument(
        "--json", action="store_true",
        help="JSON rows, each with the official code its recipe follows (reference) and its variants",
    )
    p.add_argument("--markdown", action="store_true", help="markdown, as in the README")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from umr.recipes import format_table, list_recipes

    rows = list_recipes(args.kind)
    if args.json:
        out(json.dumps(rows, indent=2))
    else:
        sys.stdout.write(format_table(rows, "markdown" if args.markdown else "text"))
    return 0
