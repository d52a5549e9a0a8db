"""``umr stats``: what the index holds (model, counts, documents), without loading a model."""

from __future__ import annotations

import argparse
import json
from typing import Any

from .common import (
    add_lexical_dir_arg,
    add_store_args,
    check_db,
    display,
    display_source,
    err,
    open_readonly,
    out,
)

#: records sampled by the quick vector check every ``umr stats`` runs (``--check`` samples more)
QUICK_SAMPLE = 16


def register(sub: Any) -> None:
    p = sub.add_parser("stats", help="what the index holds (and whether its vectors are sound)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--check", action="store_true",
                   help="check the vector index thoroughly: read back SAMPLE stored vectors and search with "
                        "each (a damaged index returns wrong pages); exit 1 when damaged")
    p.add_argument("--sample", type=int, default=256, metavar="N",
                   help="records --check samples (default 256; every record when the index is smaller)")
    add_store_args(p)
    add_lexical_dir_arg(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    check_db(args, must_exist=True)
    store = open_readonly(args)
    stats = store.stats()
    docs = store.documents()
    health = store.check(sample=max(1, args.sample) if args.check else QUICK_SAMPLE)
    stats["check"] = {
        "ok": health.ok,
        "sampled": health.sampled,
        "unreadable": len(health.unreadable),
        "wrong": len(health.wrong),
        "images_missing": len(health.images_missing),
        "summary": health.summary(),
    }
    code = 0 if health.ok else 1
    if not health.ok:
        err(f"umr stats: {health.summary()}")
    if args.json:
        stats["documents_list"] = [
            {"source": d.source, "sha256": d.sha256, "pages": d.pages, "page_count": d.page_count}
            for d in docs
        ]
        out(json.dumps(stats, indent=2, default=str))
        return code
    for key in ("collection", "path", "model_id", "dim", "records", "documents"):
        out(f"{key:>12}: {stats.get(key)}")
    lexical = stats.get("lexical")
    if lexical:
        in_step = lexical["records"] == stats["records"] and not lexical["needs_repair"]
        state = "in step" if in_step else "out of step: run `umr index --rebuild-lexical`"
        out(f"{'lexical':>12}: {lexical['records']} records, {state} ({display(lexical['path'])})")
    out(f"{'vectors':>12}: {health.summary()}")
    for d in docs:
        out(f"  {d.pages:>4}/{d.page_count:<4} {display_source(d.source)}")
    return code
