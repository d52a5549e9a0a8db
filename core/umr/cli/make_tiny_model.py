"""``umr make-tiny-model DIR``: a tiny random-weight model, to try every command offline."""

from __future__ import annotations

import argparse
from typing import Any

from .common import display, out


def register(sub: Any) -> None:
    p = sub.add_parser("make-tiny-model", help="write a tiny random-weight model to try every command offline")
    p.add_argument("dir", metavar="DIR")
    p.add_argument("--recipe", default="gme", help="recipe of the tiny model (default gme)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from umr.testing import build_tiny_model

    path = build_tiny_model(args.dir, recipe=args.recipe, seed=args.seed)
    out(f"wrote a tiny random-weight {args.recipe} model to {display(path)}")
    out(f"try: umr index examples/data --model {display(path)}")
    return 0
