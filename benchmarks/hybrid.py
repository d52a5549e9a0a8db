"""Hybrid retrieval (issue 20): dense vs lexical (BM25, tantivy) vs hybrid (fused) on a generated corpus.

A generated corpus of invoices, service manuals and quarterly reports (``_hybrid_corpus.py``): every page
carries a code found on that page only (``INV-2024-0173``, ``KM-4821B``, ``PRJ-88213``) and a few
concepts written in one of several synonyms.  Two query sets:

- code lookups: one code (as printed, or lower-cased); the one page that carries it is relevant;
- descriptive queries: the page's concepts, each in the page's own words with probability 0.5, else in
  a synonym; asked only where one page has that combination.

The dense side is :class:`_hybrid_corpus.ConceptEmbedder`, a stand-in for a dense model: synonyms share
vectors, boilerplate counts less, and codes are blurred to their shape (``aaa-9999-9999``) as dense
models blur numbers.  Pages go through ``ChromaStore.add_texts`` (Chroma + the lexical index in step) and
queries through ``ChromaStore.search(mode=...)``, the code path users run.

Measured: Recall@1/@10 per query set and mode, index size on disk (Chroma folder, lexical folder),
query latency (median, p95) per mode; then at ``--scale-pages`` (default 100,000) the latency of dense
and hybrid search and the overhead of hybrid over dense.  Targets: code Recall@1 of hybrid >= 0.95;
hybrid Recall@10 on descriptive queries >= the better single mode - 0.02; hybrid overhead <= 20 ms.

    python benchmarks/hybrid.py                                  # 2,000 pages, 300+300 queries, 100k scale
    python benchmarks/hybrid.py --pages 500 --scale-pages 5000   # quicker
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import _common
import _hybrid_corpus as corpus
from _common import Column

sys.path.insert(0, str(_common.REPO_ROOT / "core"))  # this checkout's umr

NAME = "hybrid"
COLUMNS = [
    Column("corpus_pages", "pages"),
    Column("mode", "mode"),
    Column("code_r1", "code R@1", "{:.3f}"),
    Column("code_r10", "code R@10", "{:.3f}"),
    Column("desc_r1", "desc R@1", "{:.3f}"),
    Column("desc_r10", "desc R@10", "{:.3f}"),
    Column("ms_median", "ms median", "{:.2f}"),
    Column("ms_p95", "ms p95", "{:.2f}"),
]
#: (row label, search keyword arguments)
MODES = [
    ("dense", {"mode": "dense"}),
    ("lexical", {"mode": "lexical"}),
    ("hybrid rrf", {"mode": "hybrid", "fusion": "rrf"}),
    ("hybrid weighted", {"mode": "hybrid", "fusion": "weighted"}),
]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--pages", type=int, default=2000, help="pages of the recall corpus (default 2000)")
    p.add_argument("--queries", type=int, default=300, help="queries of each kind (default 300)")
    p.add_argument("--depths", default="", help="also run hybrid at these depths, comma-separated (e.g. 10,50,100)")
    p.add_argument("--scale-pages", type=int, default=100_000, help="pages for the latency run (0: skip)")
    p.add_argument("--scale-queries", type=int, default=200, help="queries timed in the latency run (default 200)")
    p.add_argument("--k", type=int, default=10, help="hits per search (default 10)")
    p.add_argument("--batch-size", type=int, default=512, help="texts per add_texts batch (default 512)")
    p.add_argument("--out", default=None, help="JSON path (default benchmarks/results/hybrid.json)")
    args = p.parse_args(argv)
    if args.pages < 30 or args.queries < 1 or args.k < 10:
        p.error("--pages must be >= 30, --queries >= 1, --k >= 10")
    try:
        args.depth_list = [int(d) for d in args.depths.split(",") if d.strip()]
    except ValueError:
        p.error(f"--depths takes comma-separated integers, got {args.depths!r}")
    return args


def _dir_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6


def _build(root: Path, pages: list[corpus.GeneratedPage], batch_size: int) -> tuple[Any, dict[str, str], float]:
    from umr.store import ChromaStore

    store = ChromaStore(corpus.ConceptEmbedder(), root, store_images=False, batch_size=batch_size)
    start = time.perf_counter()
    ids = store.add_texts([p.text for p in pages], [p.metadata for p in pages])
    seconds = time.perf_counter() - start
    return store, {p.id: i for p, i in zip(pages, ids)}, seconds


def _recall_and_latency(store: Any, queries: list[corpus.Query], ids: dict[str, str], k: int,
                        **search: Any) -> tuple[float, float, list[float]]:
    r1 = r10 = 0
    times = []
    for q in queries:
        start = time.perf_counter()
        hits = store.search(q.text, k=k, **search)
        times.append(time.perf_counter() - start)
        got = [h.id for h in hits]
        r1 += got[:1] == [ids[q.relevant]]
        r10 += ids[q.relevant] in got[:10]
    n = max(1, len(queries))
    return r1 / n, r10 / n, times


def _recall_rows(args: argparse.Namespace, tmp: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    pages = corpus.generate(args.pages, seed=0)
    codes, desc = corpus.make_queries(pages, args.queries, seed=1)
    store, ids, add_s = _build(tmp / "recall", pages, args.batch_size)
    sizes = {"chroma_mb": _dir_mb(tmp / "recall") - _dir_mb(store.lexical.path), "lexical_mb": _dir_mb(store.lexical.path)}
    modes = list(MODES) + [(f"hybrid {f} depth {d}", {"mode": "hybrid", "fusion": f, "depth": d})
                           for d in args.depth_list for f in ("rrf", "weighted")]
    rows = []
    for label, search in modes:
        c1, c10, ct = _recall_and_latency(store, codes, ids, args.k, **search)
        d1, d10, dt = _recall_and_latency(store, desc, ids, args.k, **search)
        times = sorted(ct + dt)
        rows.append({"corpus_pages": len(pages), "mode": label, "search": search, "code_r1": c1, "code_r10": c10,
                     "desc_r1": d1, "desc_r10": d10, "code_queries": len(codes), "desc_queries": len(desc),
                     "ms_median": statistics.median(times) * 1e3, "ms_p95": times[int(0.95 * (len(times) - 1))] * 1e3})
    store.close()
    return rows, {"add_texts_s": add_s, **sizes}


def _scale_rows(args: argparse.Namespace, tmp: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    pages = corpus.generate(args.scale_pages, seed=2, filler_words=40)
    codes, desc = corpus.make_queries(pages, max(1, args.scale_queries // 2), seed=3)
    queries = [q for pair in zip(codes, desc) for q in pair]
    store, ids, add_s = _build(tmp / "scale", pages, args.batch_size)
    sizes = {"chroma_mb": _dir_mb(tmp / "scale") - _dir_mb(store.lexical.path), "lexical_mb": _dir_mb(store.lexical.path)}
    for q in queries[:20]:  # warm both sides (HNSW pages, tantivy mmap)
        store.search(q.text, k=args.k, mode="hybrid")
    # Modes interleaved query by query, so a load spike on a shared machine hits every mode alike;
    # the overhead is the median of per-query differences (hybrid - dense).
    times: dict[str, list[float]] = {label: [] for label, _ in MODES}
    hits: dict[str, list[tuple[corpus.Query, list[str]]]] = {label: [] for label, _ in MODES}
    for q in queries:
        for label, search in MODES:
            start = time.perf_counter()
            got = store.search(q.text, k=args.k, **search)
            times[label].append(time.perf_counter() - start)
            hits[label].append((q, [h.id for h in got]))
    rows = []
    for label, search in MODES:
        rec: dict[str, float] = {}
        for kind, key in (("code", "code"), ("descriptive", "desc")):
            pairs = [(q, got) for q, got in hits[label] if q.kind == kind]
            n = max(1, len(pairs))
            rec[f"{key}_r1"] = sum(got[:1] == [ids[q.relevant]] for q, got in pairs) / n
            rec[f"{key}_r10"] = sum(ids[q.relevant] in got[:10] for q, got in pairs) / n
        ts = sorted(times[label])
        rows.append({"corpus_pages": len(pages), "mode": label, "search": search, **rec,
                     "ms_median": statistics.median(ts) * 1e3, "ms_p95": ts[int(0.95 * (len(ts) - 1))] * 1e3})
    overhead = {
        label: statistics.median(h - d for h, d in zip(times[label], times["dense"])) * 1e3
        for label, _ in MODES if label.startswith("hybrid")
    }
    store.close()
    return rows, {"add_texts_s": add_s, **sizes, "hybrid_overhead_ms": overhead}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark; print the table, write the JSON, return the payload."""
    args = parse_args(argv)
    _common.offline_env()
    os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
    logging.getLogger("umr").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="umr-hybrid-") as tmp:
        rows, recall_info = _recall_rows(args, Path(tmp))
        scale_rows: list[dict[str, Any]] = []
        scale_info: dict[str, Any] = {}
        if args.scale_pages:
            scale_rows, scale_info = _scale_rows(args, Path(tmp))
    by = {r["mode"]: r for r in rows}
    best_single = max(by["dense"]["desc_r10"], by["lexical"]["desc_r10"])
    summary: dict[str, Any] = {
        "recall_corpus": recall_info,
        "targets": {
            "code_hybrid_r1_ge_0.95": {m: by[m]["code_r1"] >= 0.95 for m in ("hybrid rrf", "hybrid weighted")},
            "desc_hybrid_r10_within_0.02_of_best_single": {
                m: by[m]["desc_r10"] >= best_single - 0.02 for m in ("hybrid rrf", "hybrid weighted")},
        },
    }
    if scale_rows:
        summary["scale_corpus"] = scale_info
        summary["targets"]["hybrid_overhead_le_20ms"] = {m: v <= 20.0 for m, v in scale_info["hybrid_overhead_ms"].items()}
    settings = {k: v for k, v in vars(args).items() if k not in ("out",)}
    payload = _common.result_payload(NAME, settings, rows + scale_rows, summary=summary)
    _common.print_table(rows + scale_rows, COLUMNS, title="Hybrid retrieval: dense vs lexical vs hybrid")
    print(f"index: {recall_info['chroma_mb']:.1f} MB Chroma + {recall_info['lexical_mb']:.1f} MB lexical for "
          f"{args.pages} pages; add_texts {recall_info['add_texts_s']:.1f} s")
    if scale_rows:
        print(f"at {args.scale_pages} pages: {scale_info['chroma_mb']:.1f} MB Chroma + {scale_info['lexical_mb']:.1f} MB "
              f"lexical; hybrid overhead over dense (median of per-query differences): "
              + ", ".join(f"{m} {v:+.2f} ms" for m, v in scale_info["hybrid_overhead_ms"].items()))
    print("targets:", summary["targets"])
    path = _common.write_json(payload, args.out, NAME)
    print(f"wrote {path}")
    return payload


if __name__ == "__main__":
    main()
