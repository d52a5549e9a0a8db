"""``umr delete SOURCE...``: remove documents (by path, or sha256) and their page images."""

from __future__ import annotations

import argparse
from typing import Any

from .common import (
    add_image_dir_arg,
    add_lexical_dir_arg,
    add_store_args,
    check_db,
    display,
    display_source,
    err,
    open_readonly,
    out,
)


def register(sub: Any) -> None:
    p = sub.add_parser(
        "delete",
        help="remove documents (by path, as indexed or relative to here, or sha256)",
        description="Remove documents and their page images.  A SOURCE is a file's path as `umr index` "
        "got it, or relative to the current folder, or the sha256 of its content (`umr stats --json`). "
        "Pages that a byte-identical file at another path still lists are kept for that path.",
    )
    p.add_argument("sources", nargs="+", metavar="SOURCE")
    add_store_args(p)
    add_image_dir_arg(p)
    add_lexical_dir_arg(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    check_db(args, must_exist=True)
    store = open_readonly(args)
    missing = 0
    for src in args.sources:
        removal = store.remove_document(src)
        if not removal.records:
            missing += 1
            err(
                f"umr: nothing stored for {display(src)} (give the file's path, as indexed or relative to "
                "the current folder, or its sha256 from `umr stats --json`)"
            )
            continue
        name = display_source(removal.source) if removal.source else display(src)
        line = f"removed {removal.deleted} record(s) of {name}"
        if removal.kept:
            line += f"; kept {removal.kept} record(s) that a byte-identical file at another path still lists"
        out(line)
    return 1 if missing else 0
