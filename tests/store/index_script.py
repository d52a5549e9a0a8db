"""Index a folder with a HashEmbedder; run as a subprocess by the store tests.

usage: index_script.py FOLDER (--db PATH | --host H --port P) [--sleep S] [--progress FILE]

A store fault (:class:`umr.store.faults.StoreError`) prints one line and exits 3.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from umr.store import ChromaStore
from umr.store.faults import StoreError
from umr.testing import HashEmbedder


class SlowHashEmbedder(HashEmbedder):
    def __init__(self, sleep: float) -> None:
        super().__init__(dim=16, max_pixels=60_000)
        self.sleep = sleep

    def embed_documents(self, inputs: Any, **kw: Any):  # type: ignore[override]
        time.sleep(self.sleep)
        return super().embed_documents(inputs, **kw)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("folder", nargs="+")
    ap.add_argument("--db")
    ap.add_argument("--host")
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--sleep", type=float, default=0.0)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--progress")
    ap.add_argument("--lexical-dir")
    args = ap.parse_args()
    embedder = SlowHashEmbedder(args.sleep)
    if args.host:
        store = ChromaStore(
            embedder, host=args.host, port=args.port, batch_size=args.batch, store_images=False,
            lexical_dir=args.lexical_dir,
        )
    else:
        store = ChromaStore(embedder, args.db, batch_size=args.batch)

    def progress(report: Any, record: Any) -> None:
        if args.progress:
            with open(args.progress, "a") as fh:
                fh.write(f"{report.pages_added}\n")

    try:
        report = store.add_files(args.folder, progress=progress)
    except StoreError as exc:  # what the CLI prints: one line naming the store and what to do
        print(f"store error: {exc}", file=sys.stderr)
        return 3
    print(report.summary())
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
