"""Late-interaction search (issue 18): two-stage recall against exhaustive MaxSim, query latency, storage.

A synthetic clustered multi-vector corpus stands in for ColQwen page embeddings: a pool of "concept"
directions with Zipf-like popularity; each page mixes 6-20 concepts (its own perturbed version of each)
with 30-60 % "background" tokens drawn near a few layout directions shared by all pages (blank margins,
the tokens that make mean vectors alike); tokens are unit vectors near their centre. A query picks 2-4
concepts of a target page and writes 3-5 tokens near each, plus 6 filler tokens near the mean of those
concepts pulled towards one direction all queries share (ColQwen's augmentation tokens). Nothing is tuned to the first stages being compared.

Measured, per corpus size:

* **recall@10**: the share of exhaustive MaxSim's top 10 that the two-stage search returns, for each
  first stage (mean token, MUVERA FDE configs, PLAID-style centroids: k-means of the first chunk's tokens,
  pages as centroid-id sets, pruned then full centroid interaction) at depths 50 / 100 / 200; also with pooled page vectors
  (``pool_factor`` 2), still against exhaustive MaxSim on the unpooled vectors.
* **latency** of one query: encode the query's single vector + exact first-stage top-``depth`` over all
  pages + gather the candidates from the memory-mapped store + MaxSim; CPU, and GPU when present.
* **bytes per page** on disk (files of the store / pages).

Pages here are shorter than real ColQwen pages (``--tokens``; this machine holds 100k pages of 32-96
tokens), so the second table repeats the size-dependent parts on real-sized pages: bytes per page of a
768-token page (float16, int8, binary; unpooled and pooled by factor 2 and 3, pooled for real) and the
rerank latency of 200 candidates of 768 tokens (unpooled) and 256 tokens (what pool factor 3 keeps).

    python benchmarks/late_interaction.py                      # 10k and 100k pages
    python benchmarks/late_interaction.py --sizes 10000 --queries 100
    python benchmarks/late_interaction.py --smoke              # seconds; what the smoke test runs
"""

from __future__ import annotations

import argparse
import copy
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import _common
from _common import Column

sys.path.insert(0, str(_common.REPO_ROOT / "core"))

import numpy as np
import torch

from umr.late import (
    CentroidIndex,
    ExactIndex,
    FDEConfig,
    FDEEncoder,
    MeanTokenEncoder,
    PageVectorStore,
    TwoStageSearcher,
    WarpIndex,
    pool_tokens,
)

NAME = "late_interaction"
DIM = 128

RECALL_COLUMNS = [
    Column("pages", "pages"),
    Column("first_stage", "first stage"),
    Column("vector_dim", "dim"),
    Column("store", "page vectors"),
    Column("depth", "depth"),
    Column("recall_at_10", "recall@10", "{:.3f}"),
]
LATENCY_COLUMNS = [
    Column("pages", "pages"),
    Column("device", "device"),
    Column("first_stage", "first stage"),
    Column("store", "page vectors"),
    Column("tokens_per_page", "tokens/page", "{:.0f}"),
    Column("depth", "depth"),
    Column("first_stage_ms", "first stage ms", "{:.2f}"),
    Column("rerank_ms", "rerank ms", "{:.2f}"),
    Column("total_ms", "total ms", "{:.2f}"),
]
INDEX_COLUMNS = [
    Column("pages", "pages"),
    Column("first_stage", "first stage"),
    Column("fit_s", "fit s", "{:.1f}"),
    Column("add_s", "add s", "{:.1f}"),
    Column("memory_mb", "memory MB", "{:.1f}"),
    Column("bytes_per_token", "bytes/token", "{:.1f}"),
]
BYTES_COLUMNS = [
    Column("source", "pages"),
    Column("store", "page vectors"),
    Column("tokens_per_page", "tokens/page", "{:.0f}"),
    Column("kb_per_page", "KB/page (files)", "{:.1f}"),
]


# -- synthetic corpus ------------------------------------------------------------------------------------
@dataclass
class Corpus:
    concepts: np.ndarray  # (C, D)
    popularity: np.ndarray  # (C,)
    background: np.ndarray  # (B, D)
    query_filler: np.ndarray  # (D,)
    page_concepts: list[np.ndarray]


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def _near(rng: np.random.Generator, centre: np.ndarray, spread: float, n: int) -> np.ndarray:
    noise = rng.standard_normal((n, centre.shape[-1])).astype(np.float32) / np.sqrt(centre.shape[-1])
    return _unit(centre[None, :] + spread * noise)


def make_world(n_pages: int, seed: int) -> Corpus:
    rng = np.random.default_rng(seed)
    n_concepts = max(256, n_pages // 4)
    concepts = _unit(rng.standard_normal((n_concepts, DIM)))
    ranks = rng.permutation(n_concepts)
    popularity = 1.0 / (ranks + 20.0) ** 0.8
    return Corpus(concepts, popularity / popularity.sum(), _unit(rng.standard_normal((8, DIM))),
                  _unit(rng.standard_normal(DIM)), [])


def make_pages(world: Corpus, n: int, tokens: tuple[int, int], rng: np.random.Generator) -> list[np.ndarray]:
    pages = []
    for _ in range(n):
        n_tok = int(rng.integers(tokens[0], tokens[1] + 1))
        picked = rng.choice(len(world.concepts), size=int(rng.integers(6, 21)), replace=False, p=world.popularity)
        world.page_concepts.append(picked)
        n_bg = int(n_tok * rng.uniform(0.3, 0.6))
        parts = []
        owner = rng.integers(0, len(world.background), size=n_bg)
        bg = _unit(world.background[owner] + 0.5 * rng.standard_normal((n_bg, DIM)).astype(np.float32) / np.sqrt(DIM))
        parts.append(bg)
        share = rng.dirichlet(np.ones(len(picked)))
        counts = rng.multinomial(n_tok - n_bg, share)
        for concept, count in zip(picked, counts):
            if count == 0:
                continue
            variant = _near(rng, world.concepts[concept], 0.4, 1)[0]
            parts.append(_near(rng, variant, 0.5, int(count)))
        page = np.concatenate(parts)
        pages.append(page[rng.permutation(len(page))])
    return pages


def make_queries(world: Corpus, n: int, rng: np.random.Generator) -> list[np.ndarray]:
    queries = []
    n_pages = len(world.page_concepts)
    for target in rng.choice(n_pages, size=n, replace=n > n_pages):
        own = world.page_concepts[target]
        picked = rng.choice(own, size=min(len(own), int(rng.integers(2, 5))), replace=False)
        parts = [_near(rng, world.concepts[c], 0.5, int(rng.integers(3, 6))) for c in picked]
        # filler tokens (ColQwen's augmentation tokens attend to the whole query): near the query's
        # concepts' mean, pulled towards one direction all queries share
        gist = _unit(world.concepts[picked].mean(axis=0) + 0.5 * world.query_filler)
        parts.append(_near(rng, gist, 0.5, 6))
        queries.append(np.concatenate(parts))
    return queries


# -- helpers ----------------------------------------------------------------------------------------------
def recall_at(hits: list[list[tuple[str, float]]], truth: list[list[tuple[str, float]]], k: int = 10) -> float:
    scores = [len({h for h, _ in got[:k]} & {t for t, _ in want[:k]}) / max(1, len(want[:k]))
              for got, want in zip(hits, truth)]
    return float(np.mean(scores))


def median_ms(fn: Any, runs: list[Any], sync: Any = None) -> float:
    times = []
    for item in runs:
        if sync:
            sync()
        start = time.perf_counter()
        fn(item)
        if sync:
            sync()
        times.append((time.perf_counter() - start) * 1000)
    return float(np.median(times))


def kb_per_page(store: PageVectorStore) -> float:
    return store.stats()["file_bytes_per_page"] / 1024


def encoders(smoke: bool, n_pages: int) -> dict[str, Any]:
    """The first stages compared; the 10240-d FDE only where its matrix fits this machine (<= 20k pages)."""
    out: dict[str, Any] = {
        "mean (cosine)": MeanTokenEncoder(DIM, normalize=True),
        "mean (inner product)": MeanTokenEncoder(DIM, normalize=False),
        "fde r10 k4 p16": FDEEncoder(FDEConfig(DIM, repetitions=10, simhash_bits=4, projection_dim=16)),
    }
    if n_pages <= 20_000:
        out["fde r20 k4 p32"] = FDEEncoder(FDEConfig(DIM, repetitions=20, simhash_bits=4, projection_dim=32))
    if smoke:
        out = {k: out[k] for k in ("mean (cosine)", "fde r10 k4 p16")}
    return out


# -- one corpus size --------------------------------------------------------------------------------------
def warp_centroids(n_pages: int, tokens: list[int]) -> int:
    """PLAID's rule of thumb: about 16 * sqrt(stored tokens) centroids, rounded to a power of two."""
    stored = n_pages * (tokens[0] + tokens[1]) / 2
    return 2 ** round(float(np.log2(16 * np.sqrt(stored))))


def warp_label(index: WarpIndex) -> str:
    label = f"warp {index.n_centroids} c {index.nbits}-bit nprobe {index.nprobe}"
    label += f" cells {index.cells}" if index.cells else ""
    return label + (f" cand {index.candidates}" if index.candidates else "")


def run_size(n_pages: int, args: argparse.Namespace, work: Path, recall_rows: list, latency_rows: list,
             bytes_rows: list, index_rows: list) -> dict[str, Any]:
    rng = np.random.default_rng(args.seed + n_pages)
    world = make_world(n_pages, args.seed + n_pages)
    pooled_here = args.pool_factor > 1 and n_pages <= args.pool_max_pages
    stores = {"float16": PageVectorStore.open(work / f"plain-{n_pages}", dim=DIM)}
    if pooled_here:
        stores[f"float16 pool {args.pool_factor}"] = PageVectorStore.open(work / f"pooled-{n_pages}", dim=DIM,
                                                                          pool_factor=args.pool_factor)
    encs = encoders(args.smoke, n_pages)
    singles: dict[str, list[np.ndarray]] = {name: [] for name in encs}
    ids: list[str] = []
    t0 = time.perf_counter()
    timings: dict[str, float] = {"encode_s": 0.0, "pool_s": 0.0, "centroid_fit_s": 0.0, "centroid_add_s": 0.0}
    centroid: CentroidIndex | None = None
    warp: WarpIndex | None = None
    warp_pending: list[tuple[list[str], list[np.ndarray]]] = []
    warp_sample: list[np.ndarray] = []
    sample_rng = np.random.default_rng(args.seed + 1)  # not the corpus's generator: the corpus stays the same
    timings.update(warp_fit_s=0.0, warp_add_s=0.0)
    for start in range(0, n_pages, args.chunk):
        count = min(args.chunk, n_pages - start)
        pages = make_pages(world, count, tuple(args.tokens), rng)
        chunk_ids = [f"doc{(start + i) // 7}#p{(start + i) % 7 + 1}" for i in range(count)]
        ids.extend(chunk_ids)
        stores["float16"].add(chunk_ids, pages)
        if pooled_here:
            t = time.perf_counter()
            stores[f"float16 pool {args.pool_factor}"].add(chunk_ids, pages)
            timings["pool_s"] += time.perf_counter() - t
        t = time.perf_counter()
        for name, enc in encs.items():
            singles[name].append(enc.encode_documents(pages))
        timings["encode_s"] += time.perf_counter() - t
        if args.centroids:
            t = time.perf_counter()
            if centroid is None:  # k-means on the first chunk's tokens (a sample, as PLAID does)
                centroid = CentroidIndex.fit(pages, args.centroids, iterations=6, seed=args.seed,
                                             nprobe=args.nprobe, candidates=args.centroid_candidates)
                timings["centroid_fit_s"] = time.perf_counter() - t
                t = time.perf_counter()
            centroid.add(chunk_ids, pages)
            timings["centroid_add_s"] += time.perf_counter() - t
        if args.warp:
            t = time.perf_counter()
            if warp is None:  # a token sample of the first --warp-fit-pages pages, then fit, then add them
                warp_pending.append((chunk_ids, pages))
                warp_sample.extend(p[sample_rng.random(len(p)) < args.warp_sample_share] for p in pages)
                if start + count >= min(n_pages, args.warp_fit_pages):
                    n_cent = args.warp_centroids or warp_centroids(n_pages, args.tokens)
                    warp = WarpIndex.fit(warp_sample, n_cent, nbits=args.warp_nbits, iterations=6, seed=args.seed,
                                         nprobe=args.warp_nprobe[0], candidates=args.warp_candidates,
                                         cells=args.warp_cells)
                    timings["warp_fit_s"] = time.perf_counter() - t
                    t = time.perf_counter()
                    for pending_ids, pending_pages in warp_pending:
                        warp.add(pending_ids, pending_pages)
                    warp_pending, warp_sample = [], []
            else:
                warp.add(chunk_ids, pages)
            timings["warp_add_s"] += time.perf_counter() - t
    timings["build_s"] = time.perf_counter() - t0
    if warp is not None:
        t = time.perf_counter()
        memory = warp.memory_bytes()  # also builds the inverted lists
        timings["warp_add_s"] += time.perf_counter() - t
        index_rows.append({"pages": n_pages, "first_stage": f"warp {warp.n_centroids} c {warp.nbits}-bit", "fit_s": timings["warp_fit_s"],
                           "add_s": timings["warp_add_s"], "memory_mb": memory / 2**20,
                           "bytes_per_token": memory / max(1, stores["float16"].stats()["tokens"])})
    queries = make_queries(world, args.queries, rng)
    plain = TwoStageSearcher(stores["float16"], device="cpu")
    t = time.perf_counter()
    truth = plain.exhaustive(queries, k=10)
    timings["exhaustive_s_per_query"] = (time.perf_counter() - t) / len(queries)
    for store_name, store in stores.items():
        bytes_rows.append({"source": f"{n_pages} synthetic", "store": store_name,
                           "tokens_per_page": store.stats()["tokens_per_page"], "kb_per_page": kb_per_page(store)})
    best: dict[str, float] = {}
    indexes: dict[str, ExactIndex] = {}
    for name, enc in encs.items():
        matrix = np.concatenate(singles[name])
        index = ExactIndex(matrix.shape[1], device="cpu")
        index.add(ids, matrix)
        indexes[name] = index
        for store_name, store in stores.items():
            searcher = TwoStageSearcher(store, enc, index, device="cpu")
            for depth in args.depths:
                hits = searcher.search(queries, k=10, depth=depth)
                r = recall_at(hits, truth)
                recall_rows.append({"pages": n_pages, "first_stage": name, "vector_dim": matrix.shape[1],
                                    "store": store_name, "depth": depth, "recall_at_10": r})
                if store_name == "float16":
                    best[f"{name}@{depth}"] = r
    centroid_name = f"centroids {args.centroids} (PLAID-style)"
    if centroid is not None:
        for store_name, store in stores.items():
            searcher = TwoStageSearcher(store, first_stage=centroid, device="cpu")
            for depth in args.depths:
                r = recall_at(searcher.search(queries, k=10, depth=depth), truth)
                recall_rows.append({"pages": n_pages, "first_stage": centroid_name, "vector_dim": "-",
                                    "store": store_name, "depth": depth, "recall_at_10": r})
                if store_name == "float16":
                    best[f"{centroid_name}@{depth}"] = r
    warps = [copy.copy(warp) for _ in args.warp_nprobe] if warp is not None else []
    for view, nprobe in zip(warps, args.warp_nprobe):  # shallow copies share the arrays, differ in nprobe
        view.nprobe = nprobe
        for store_name, store in stores.items():
            searcher = TwoStageSearcher(store, first_stage=view, device="cpu")
            for depth in args.depths:
                r = recall_at(searcher.search(queries, k=10, depth=depth), truth)
                recall_rows.append({"pages": n_pages, "first_stage": warp_label(view), "vector_dim": "-",
                                    "store": store_name, "depth": depth, "recall_at_10": r})
                if store_name == "float16":
                    best[f"{warp_label(view)}@{depth}"] = r
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    depth = args.latency_depth
    for device in devices:
        sync = torch.cuda.synchronize if device == "cuda" else None
        for name, enc in encs.items():
            index = indexes[name]
            if device == "cuda":
                index = ExactIndex(index.dim, device="cuda")
                index.add(ids, np.concatenate(singles[name]))
            for store_name, store in stores.items():
                searcher = TwoStageSearcher(store, enc, index, device=device)
                encoded = [enc.encode_queries([q]) for q in queries]
                first = median_ms(lambda v, ix=index: ix.search(v, depth), encoded, sync)
                cands = [index.search(v, depth)[0] for v in encoded]
                rerank = median_ms(lambda qc, s=searcher: s.rerank([qc[0]], [qc[1]], 10), list(zip(queries, cands)),
                                   sync)
                total = median_ms(lambda q, s=searcher: s.search([q], k=10, depth=depth), queries, sync)
                latency_rows.append({"pages": n_pages, "device": device, "first_stage": name, "store": store_name,
                                     "tokens_per_page": store.stats()["tokens_per_page"], "depth": depth,
                                     "first_stage_ms": first, "rerank_ms": rerank, "total_ms": total})
        token_stages = [(centroid_name, centroid)] if centroid is not None else []
        token_stages += [(warp_label(view), view) for view in warps]
        for stage_name, stage in token_stages:  # the token-level first stages run in numpy on the CPU
            for store_name, store in stores.items():
                searcher = TwoStageSearcher(store, first_stage=stage, device=device)
                first = median_ms(lambda q, st=stage: st.search([q], depth), queries, sync)
                cands = [stage.search([q], depth)[0] for q in queries]
                rerank = median_ms(lambda qc, s=searcher: s.rerank([qc[0]], [qc[1]], 10), list(zip(queries, cands)),
                                   sync)
                total = median_ms(lambda q, s=searcher: s.search([q], k=10, depth=depth), queries, sync)
                latency_rows.append({"pages": n_pages, "device": device, "first_stage": stage_name,
                                     "store": store_name, "tokens_per_page": store.stats()["tokens_per_page"],
                                     "depth": depth, "first_stage_ms": first, "rerank_ms": rerank, "total_ms": total})
    for store in stores.values():
        store.close()
    return {"pages": n_pages, **timings, "recall_by_first_stage": best}


def chroma_first_stage(n_pages: int, args: argparse.Namespace, work: Path) -> dict[str, Any] | None:
    """Chroma HNSW (cosine) over the mean-token vectors vs the exact matrix product: recall, latency, build."""
    try:
        import chromadb
    except ImportError:
        return None
    rng = np.random.default_rng(args.seed + n_pages)
    world = make_world(n_pages, args.seed + n_pages)
    enc = MeanTokenEncoder(DIM)
    vecs, ids = [], []
    for start in range(0, n_pages, args.chunk):
        count = min(args.chunk, n_pages - start)
        vecs.append(enc.encode_documents(make_pages(world, count, tuple(args.tokens), rng)))
        ids.extend(f"p{start + i}" for i in range(count))
    matrix = np.concatenate(vecs)
    queries = enc.encode_queries(make_queries(world, args.queries, rng))
    client = chromadb.PersistentClient(path=str(work / f"chroma-{n_pages}"))
    coll = client.create_collection("pages", metadata={"hnsw:space": "cosine"})
    t = time.perf_counter()
    for start in range(0, n_pages, 5000):
        coll.add(ids=ids[start:start + 5000], embeddings=matrix[start:start + 5000])
    build = time.perf_counter() - t
    exact = ExactIndex(DIM, device="cpu")
    exact.add(ids, matrix)
    depth = args.latency_depth
    truth = exact.search(queries, depth)
    got = [coll.query(query_embeddings=[q], n_results=depth)["ids"][0] for q in queries]
    overlap = float(np.mean([len(set(a) & set(b)) / depth for a, b in zip(got, truth)]))
    ms = median_ms(lambda q: coll.query(query_embeddings=[q], n_results=depth), list(queries))
    exact_ms = median_ms(lambda q: exact.search(q[None], depth), list(queries))
    return {"pages": n_pages, "depth": depth, "hnsw_overlap_with_exact": overlap, "hnsw_query_ms": ms,
            "exact_query_ms": exact_ms, "hnsw_build_s": build}


# -- real-sized pages -------------------------------------------------------------------------------------
def real_sized(args: argparse.Namespace, work: Path, latency_rows: list, bytes_rows: list) -> dict[str, Any]:
    rng = np.random.default_rng(args.seed)
    world = make_world(1000, args.seed)
    n_tok = args.page_tokens
    sample = make_pages(world, args.sample_pages, (n_tok, n_tok), rng)
    ids = [f"s{i}" for i in range(len(sample))]
    pool_seconds = {}
    for pf in (1, 2, 3):
        t = time.perf_counter()
        pooled = pool_tokens(sample, pf)
        pool_seconds[pf] = (time.perf_counter() - t) / len(sample)
        for dtype in ("float16", "int8", "binary"):
            if pf > 1 and dtype == "binary":
                continue
            with PageVectorStore.open(work / f"real-{pf}-{dtype}", dim=DIM, dtype=dtype) as store:
                store.add(ids, pooled)
                label = dtype + (f" pool {pf}" if pf > 1 else "")
                bytes_rows.append({"source": f"{n_tok}-token pages", "store": label,
                                   "tokens_per_page": store.stats()["tokens_per_page"], "kb_per_page": kb_per_page(store)})
    # rerank latency of `depth` candidates at real sizes: unpooled and what pool factor 3 keeps
    depth = args.latency_depth
    queries = make_queries(world, min(args.queries, 32), rng)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for tokens, label in ((n_tok, "float16"), (n_tok // 3, "float16 pool 3")):
        with PageVectorStore.open(work / f"lat-{tokens}", dim=DIM) as store:
            lat_ids = [f"l{i}" for i in range(depth)]
            for start in range(0, depth, 50):
                store.add(lat_ids[start:start + 50], make_pages(world, min(50, depth - start), (tokens, tokens), rng))
            for device in devices:
                sync = torch.cuda.synchronize if device == "cuda" else None
                searcher = TwoStageSearcher(store, device=device)
                rerank = median_ms(lambda q, s=searcher, c=lat_ids: s.rerank([q], [c], 10), queries, sync)
                latency_rows.append({"pages": f"{depth} real-sized", "device": device, "first_stage": "-",
                                     "store": label, "tokens_per_page": tokens, "depth": depth,
                                     "rerank_ms": rerank})
    return {"pool_seconds_per_page": pool_seconds, "page_tokens": n_tok, "sample_pages": len(sample)}


# -- main -------------------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    p.add_argument("--queries", type=int, default=48)
    p.add_argument("--tokens", type=int, nargs=2, default=[32, 96], metavar=("MIN", "MAX"))
    p.add_argument("--depths", type=int, nargs="+", default=[50, 100, 200, 500])
    p.add_argument("--latency-depth", type=int, default=200, help="first-stage depth of the latency rows")
    p.add_argument("--pool-factor", type=int, default=2)
    p.add_argument("--pool-max-pages", type=int, default=10_000,
                   help="build the pooled store only for sizes up to this (pooling 100k pages takes minutes)")
    p.add_argument("--chroma-max-pages", type=int, default=10_000,
                   help="measure Chroma HNSW as the first stage for sizes up to this")
    p.add_argument("--centroids", type=int, default=4096,
                   help="k-means centroids of the PLAID-style first stage (fitted on the first chunk); 0: skip it")
    p.add_argument("--nprobe", type=int, default=4, help="centroids each query token probes (centroid first stage)")
    p.add_argument("--centroid-candidates", type=int, default=1000,
                   help="pages the pruned centroid step passes to full centroid scoring")
    p.add_argument("--warp", action=argparse.BooleanOptionalAction, default=True,
                   help="measure the WARP-style first stage (two-level k-means, residual codes)")
    p.add_argument("--warp-centroids", type=int, default=0,
                   help="its centroids; 0: 16 * sqrt(stored tokens) rounded to a power of two")
    p.add_argument("--warp-fit-pages", type=int, default=20_000, help="pages whose tokens it is fitted on")
    p.add_argument("--warp-sample-share", type=float, default=0.5, help="share of those pages' tokens sampled")
    p.add_argument("--warp-nbits", type=int, default=4, help="bits per residual dimension (1, 2, 4, 8)")
    p.add_argument("--warp-nprobe", type=int, nargs="+", default=[16, 32],
                   help="centroids each query token probes (one row set per value)")
    p.add_argument("--warp-cells", type=int, default=8,
                   help="coarse cells each query token opens; probes are chosen among their centroids (0: all)")
    p.add_argument("--warp-candidates", type=int, default=0,
                   help="pages re-scored with all their tokens decoded before the best depth go on (0: none)")
    p.add_argument("--page-tokens", type=int, default=768)
    p.add_argument("--sample-pages", type=int, default=48)
    p.add_argument("--chunk", type=int, default=2000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--smoke", action="store_true", help="tiny sizes for the smoke test")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    if args.smoke:
        args.sizes, args.queries, args.tokens = [400], 8, [8, 24]
        args.depths, args.latency_depth, args.page_tokens, args.sample_pages, args.chunk = [20, 50], 50, 48, 4, 150
        args.pool_max_pages = args.chroma_max_pages = 400
        args.centroids, args.centroid_candidates = 64, 200
        args.warp_centroids, args.warp_fit_pages, args.warp_nprobe, args.warp_cells = 64, 300, [4, 16], 0
    for size in args.sizes:
        if size < max(*args.depths, args.latency_depth) or size < args.queries:
            p.error(f"--sizes {size} must be at least the largest depth and the number of queries")
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    recall_rows: list[dict[str, Any]] = []
    latency_rows: list[dict[str, Any]] = []
    bytes_rows: list[dict[str, Any]] = []
    index_rows: list[dict[str, Any]] = []
    sizes_info, chroma_info = [], []
    work = Path(tempfile.mkdtemp(prefix="umr-late-"))
    try:
        for n_pages in args.sizes:
            sizes_info.append(run_size(n_pages, args, work, recall_rows, latency_rows, bytes_rows, index_rows))
            shutil.rmtree(work / f"plain-{n_pages}", ignore_errors=True)
            shutil.rmtree(work / f"pooled-{n_pages}", ignore_errors=True)
            if n_pages <= args.chroma_max_pages:
                info = chroma_first_stage(n_pages, args, work)
                if info:
                    chroma_info.append(info)
        real = real_sized(args, work, latency_rows, bytes_rows)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    _common.print_table(recall_rows, RECALL_COLUMNS, "two-stage recall@10 against exhaustive MaxSim")
    _common.print_table(latency_rows, LATENCY_COLUMNS, "\nquery latency (median of single queries)")
    _common.print_table(bytes_rows, BYTES_COLUMNS, "\nstorage")
    if index_rows:
        _common.print_table(index_rows, INDEX_COLUMNS, "\nWARP-style first-stage index (build on this CPU, memory)")
    if chroma_info:
        print("\nChroma HNSW as first stage:", chroma_info, flush=True)
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    payload = _common.result_payload(
        NAME, settings, recall_rows,
        latency=latency_rows, storage=bytes_rows, first_stage_index=index_rows, sizes=sizes_info, chroma_hnsw=chroma_info, real_sized=real,
    )
    path = _common.write_json(payload, args.out, NAME)
    print(f"\nwrote {path}", flush=True)
    return payload


if __name__ == "__main__":
    main()
