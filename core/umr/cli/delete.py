"""``umr delete SOURCE...``: remove documents (by path as indexed, or sha256) and their page images."""

from __future__ import annotations

import argparse
from typing import Any

from .common import add_image_dir_arg, add_store_args, check_db, display, err, open_readonly, out


def register(sub: Any) -> None:
    p = sub.add_parser("delete", help="remove documents (by path as indexed, or sha256)")
    p.add_argument("sources", nargs="+", metavar="SOURCE")
    add_store_args(p)
    add_image_dir_arg(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    check_db(args, must_exist=True)
    store = open_readonly(args)
    missing = 0
    for src in args.sources:
        removed = store.delete_document(src)
        if removed:
            out(f"removed {removed} record(s) of {display(src)}")
        else:
            missing += 1
            err(f"umr: nothing stored for {display(src)} (give the path as indexed, or the file's sha256)")
    return 1 if missing else 0
