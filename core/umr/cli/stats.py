"""``umr stats``: what the index holds (model, counts, documents), without loading a model."""

from __future__ import annotations

import argparse
import json
from typing import Any

from .common import add_store_args, check_db, display_source, open_readonly, out


def register(sub: Any) -> None:
    p = sub.add_parser("stats", help="what the index holds")
    p.add_argument("--json", action="store_true")
    add_store_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    check_db(args, must_exist=True)
    store = open_readonly(args)
    stats = store.stats()
    docs = store.documents()
    if args.json:
        stats["documents_list"] = [
            {"source": d.source, "sha256": d.sha256, "pages": d.pages, "page_count": d.page_count}
            for d in docs
        ]
        out(json.dumps(stats, indent=2, default=str))
        return 0
    for key in ("collection", "path", "model_id", "dim", "records", "documents"):
        out(f"{key:>12}: {stats.get(key)}")
    for d in docs:
        out(f"  {d.pages:>4}/{d.page_count:<4} {display_source(d.source)}")
    return 0
