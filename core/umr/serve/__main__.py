"""``python -m umr.serve [options]``: the ``umr serve`` command without the ``umr`` entry point."""

from __future__ import annotations

import argparse
import sys

from .command import add_parser, run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m umr.serve")
    sub = parser.add_subparsers(dest="command")
    add_parser(sub)
    args = parser.parse_args(["serve", *(sys.argv[1:] if argv is None else argv)])
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
