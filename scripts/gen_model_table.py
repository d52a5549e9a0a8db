"""Print the model table (markdown by default) from the recipe registry.

    python scripts/gen_model_table.py               # markdown, for the README
    python scripts/gen_model_table.py --text        # aligned plain text, as `umr models` shows it
    python scripts/gen_model_table.py --kind embedder

The README table and `umr models` come from the same data: ``umr.recipes.list_recipes``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

try:
    from umr.recipes import format_table, list_recipes
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "core"))
    from umr.recipes import format_table, list_recipes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--text", action="store_true", help="aligned plain text instead of markdown")
    parser.add_argument("--kind", choices=("all", "embedder", "reranker"), default="all")
    args = parser.parse_args(argv)
    sys.stdout.write(format_table(list_recipes(args.kind), "text" if args.text else "markdown"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
