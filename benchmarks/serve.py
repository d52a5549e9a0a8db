"""Throughput and latency of ``umr serve``: /v1/embeddings and /v1/rerank, dynamic batching on vs off (issue 19).

A real server (``python -m umr.serve`` under uvicorn on 127.0.0.1, one process per mode) takes 1, 8 and 32
concurrent clients; each client sends single-item requests back to back over one keep-alive connection
(a minimal asyncio HTTP/1.1 client, so the load generator costs little CPU next to the server).  Reported
per endpoint, mode and client count: requests/s, p50 and p95 latency.  The in-process baseline is the
library call the server makes for one request (``Embedder.embed_documents([text])``,
``Reranker.score(query, docs)``), timed in this process with the same thread count.

Targets: at 32 clients, batching on >= 3x the throughput of batching off (embeddings); at 1 client the p95
latency within 10 % of the in-process call.  The tiny model (2 layers, hidden 64) makes this a measure of
the serving path and per-call overhead, not of a real model's FLOPs: a short text costs it ~3 ms, so the
fixed cost of an HTTP request (~1 ms: parsing, validation, the hop to the model thread, the response) is
a large share there, while a page image (``embeddings_image``: a 640x480 PNG sent as a data URI and
decoded by the server, against the library embedding the same PNG bytes) shows that cost against a
request's real work.

    python benchmarks/serve.py                                  # table + benchmarks/results/serve.json
    python benchmarks/serve.py --clients 1,32 --requests 100 --threads 1
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import _common
from _common import Column

NAME = "serve"
ENDPOINTS = ("embeddings", "embeddings_image", "rerank")
MODES = ("on", "off")
_WORDS = ["revenue", "grew", "operating", "costs", "fell", "figure", "shows", "pipeline", "installation",
          "manual", "connect", "power", "cable", "press", "reset", "button", "green", "light", "invoice", "total"]


def _text(i: int, n: int = 12) -> str:
    return " ".join(_WORDS[(i * 7 + j * 3) % len(_WORDS)] for j in range(n)) + f" #{i}"


def embed_body(i: int, model: str) -> dict[str, Any]:
    return {"model": model, "input": [_text(i)], "encoding_format": "base64"}


_PAGES: list[bytes] = []


def page_png(i: int) -> bytes:
    """One of 8 small page-like PNGs (640 x 480: a title bar, text lines, a chart), by ``i``."""
    if not _PAGES:
        import io

        from PIL import Image, ImageDraw

        for k in range(8):
            img = Image.new("RGB", (640, 480), "white")
            draw = ImageDraw.Draw(img)
            draw.rectangle((20, 20, 620, 60), fill=(30 + 20 * k, 60, 120))
            for line in range(12):
                draw.text((24, 80 + 16 * line), _text(k * 12 + line, 9), fill="black")
            for bar in range(8):
                draw.rectangle((360 + 30 * bar, 460 - 20 * ((bar + k) % 8 + 1), 380 + 30 * bar, 460), fill=(200, 80, 40))
            buf = io.BytesIO()
            img.save(buf, format="PNG")
            _PAGES.append(buf.getvalue())
    return _PAGES[i % len(_PAGES)]


def embed_image_body(i: int, model: str) -> dict[str, Any]:
    import base64

    url = "data:image/png;base64," + base64.b64encode(page_png(i)).decode("ascii")
    return {"model": model, "input": [[{"type": "image_url", "image_url": {"url": url}}]], "encoding_format": "base64"}


def rerank_body(i: int, docs: int) -> dict[str, Any]:
    return {"query": f"which page explains {_WORDS[i % len(_WORDS)]} #{i}?",
            "documents": [_text(i * 13 + d, 16) for d in range(docs)]}


# -- load generator ----------------------------------------------------------------------------------------
async def _request(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str, path: str,
                   body: bytes) -> tuple[int, bytes]:
    writer.write(
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n".encode() + body
    )
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return status, await reader.readexactly(length)


async def _load(host: str, port: int, path: str, bodies: Callable[[int], bytes], clients: int,
                per_client: int, keep: list[float] | None = None) -> dict[str, Any]:
    latencies: list[float] = []
    errors = 0

    async def client(c: int) -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection(host, port)
        try:
            for k in range(per_client):
                body = bodies(c * per_client + k)
                start = time.perf_counter()
                status, _ = await _request(reader, writer, host, path, body)
                latencies.append(time.perf_counter() - start)
                errors += status != 200
        finally:
            writer.close()

    start = time.perf_counter()
    await asyncio.gather(*(client(c) for c in range(clients)))
    wall = time.perf_counter() - start
    if keep is not None:
        keep.extend(latencies)
    return {"requests": len(latencies), "errors": errors, "seconds": wall, **_stats(latencies, wall)}


def _stats(latencies: list[float], wall: float) -> dict[str, float]:
    lat = sorted(latencies)

    def p(q: float) -> float:
        return lat[min(len(lat) - 1, round(q * (len(lat) - 1)))] * 1000

    return {"rps": len(lat) / wall if wall else float("nan"), "p50_ms": p(0.5), "p95_ms": p(0.95)}


# -- servers ---------------------------------------------------------------------------------------------
def process_cpu_seconds(pid: int | None) -> float | None:
    """CPU seconds (user + system, all threads) a process has used so far; None when unknown."""
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def server(mode: str, model_dir: Path, reranker_dir: Path, threads: int, how: str) -> Iterator[tuple[str, int, int | None]]:
    """A umr serve on 127.0.0.1 with batching ``on`` / ``off``: a separate process (``how="process"``,
    the measured setting) or a thread of this process (``"thread"``: quick, for the smoke test)."""
    port = _free_port()
    if how == "thread":
        import threading

        import uvicorn

        import umr
        from umr.serve import ServeConfig, create_app

        app = create_app(umr.Embedder.from_pretrained(model_dir, device="cpu"),
                         umr.Reranker.from_pretrained(reranker_dir, device="cpu"),
                         config=ServeConfig(batching=mode == "on"))
        srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
        t = threading.Thread(target=srv.run, daemon=True)
        t.start()
        while not srv.started:
            time.sleep(0.02)
        try:
            yield "127.0.0.1", port, None
        finally:
            srv.should_exit = True
            t.join(10)
            app.state.close()
        return
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads),
               PYTHONPATH=os.pathsep.join([str(_common.REPO_ROOT / "core"), os.environ.get("PYTHONPATH", "")]))
    cmd = [sys.executable, "-m", "umr.serve", "--model", str(model_dir), "--rerank", str(reranker_dir),
           "--device", "cpu", "--port", str(port), "--log-level", "warning"]
    if mode == "off":
        cmd.append("--no-batching")
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        import httpx

        deadline = time.monotonic() + 300
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"umr serve exited: {proc.stderr.read() if proc.stderr else ''}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("umr serve did not start within 300 s")
            time.sleep(0.2)
        yield "127.0.0.1", port, proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# -- in-process baseline ---------------------------------------------------------------------------------
class InProcess:
    """The library calls one request makes, timed in this process (same thread count as the server)."""

    def __init__(self, model_dir: Path, reranker_dir: Path, docs: int, threads: int) -> None:
        import torch

        import umr

        torch.set_num_threads(threads)
        self.emb = umr.Embedder.from_pretrained(model_dir, device="cpu")
        self.rr = umr.Reranker.from_pretrained(reranker_dir, device="cpu")
        self.docs = docs

    def call(self, endpoint: str, i: int) -> Any:
        if endpoint == "embeddings":
            return self.emb.embed_documents([_text(i)])
        if endpoint == "embeddings_image":  # decoded from the same PNG bytes the request carries
            import io

            from PIL import Image

            return self.emb.embed_documents([Image.open(io.BytesIO(page_png(i)))])
        body = rerank_body(i, self.docs)
        return self.rr.score(body["query"], body["documents"])

    def run(self, endpoint: str, n: int, offset: int = 0) -> list[float]:
        lat = []
        for i in range(n):
            t0 = time.perf_counter()
            self.call(endpoint, offset + i)
            lat.append(time.perf_counter() - t0)
        return lat


def _median_row(runs: list[dict[str, Any]], latencies: list[float]) -> dict[str, Any]:
    return {
        "runs": len(runs),
        "requests": sum(r["requests"] for r in runs),
        "errors": sum(r["errors"] for r in runs),
        "rps": statistics.median(r["rps"] for r in runs),
        "rps_min": min(r["rps"] for r in runs),
        "rps_max": max(r["rps"] for r in runs),
        **{k: v for k, v in _stats(latencies, 1.0).items() if k != "rps"},
        "cpu_ms_per_request": (statistics.median(r["cpu_ms_per_request"] for r in runs)
                               if all("cpu_ms_per_request" in r for r in runs) else None),
    }


# -- main ------------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", default="1,8,32", help="concurrent clients, comma-separated (default 1,8,32)")
    parser.add_argument("--requests", type=int, default=192,
                        help="requests per timed run, spread over the clients (default 192)")
    parser.add_argument("--rerank-requests", type=int, default=64,
                        help="requests per timed rerank or page-image run (default 64)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="timed runs per setting; on and off alternate, medians reported (default 3)")
    parser.add_argument("--warmup", type=int, default=8, help="untimed requests per server and endpoint (default 8)")
    parser.add_argument("--docs", type=int, default=4, help="documents per rerank request (default 4)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the server (default 1)")
    parser.add_argument("--server", choices=("process", "thread"), default="process",
                        help="servers in their own processes (measured) or threads here (smoke test)")
    parser.add_argument("--endpoints", default="embeddings,embeddings_image,rerank",
                        help="comma-separated: embeddings (one short text), embeddings_image (one 640x480 page "
                             "PNG as a data URI), rerank (default: all three)")
    parser.add_argument("--model-dir", default=None, help="tiny embedder folder (default: built in a temp dir)")
    parser.add_argument("--reranker-dir", default=None, help="tiny reranker folder (default: built)")
    parser.add_argument("--out", default=None, help="JSON path (default benchmarks/results/serve.json)")
    args = parser.parse_args(argv)
    _common.offline_env()
    _common.ensure_umr_importable()
    clients = [int(c) for c in args.clients.split(",") if c.strip()]
    endpoints = [e for e in args.endpoints.split(",") if e]
    for e in endpoints:
        if e not in ENDPOINTS:
            parser.error(f"unknown endpoint {e!r}; choose from {', '.join(ENDPOINTS)}")

    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="umr-bench-serve-") as tmp, ExitStack() as stack:
        from umr.testing import build_tiny_model

        model_dir = Path(args.model_dir) if args.model_dir else build_tiny_model(Path(tmp) / "gme", "gme", seed=0)
        rr_dir = (Path(args.reranker_dir) if args.reranker_dir
                  else build_tiny_model(Path(tmp) / "rr", "qwen-vl-yesno", seed=1))
        local = InProcess(model_dir, rr_dir, args.docs, args.threads)
        # both servers run at once and the timed runs alternate between them, so that the load of the
        # machine (other processes) weighs on both modes alike
        servers = {mode: stack.enter_context(server(mode, model_dir, rr_dir, args.threads, args.server))
                   for mode in MODES}
        model = str(model_dir.resolve())
        make = {
            "embeddings": ("/v1/embeddings", lambda i: json.dumps(embed_body(i, model)).encode()),
            "embeddings_image": ("/v1/embeddings", lambda i: json.dumps(embed_image_body(i, model)).encode()),
            "rerank": ("/v1/rerank", lambda i: json.dumps(rerank_body(i, args.docs)).encode()),
        }
        for endpoint in endpoints:
            path, bodies = make[endpoint]
            total = args.requests if endpoint == "embeddings" else args.rerank_requests
            for host, port, _ in servers.values():
                asyncio.run(_load(host, port, path, lambda i, b=bodies: b(900_000 + i), 1, args.warmup))
            local.run(endpoint, args.warmup, 900_000)
            base_lat: list[float] = []
            base_runs: list[dict[str, Any]] = []
            for n in clients:
                per_client = max(2, -(-total // n))
                runs: dict[str, list[dict[str, Any]]] = {m: [] for m in MODES}
                lat: dict[str, list[float]] = {m: [] for m in MODES}
                for rep in range(args.repeats):
                    order = MODES if rep % 2 == 0 else MODES[::-1]
                    for mode in order:
                        host, port, pid = servers[mode]
                        cpu0 = process_cpu_seconds(pid)
                        got = asyncio.run(_load(host, port, path, bodies, n, per_client, keep=lat[mode]))
                        cpu1 = process_cpu_seconds(pid)
                        if cpu0 is not None and cpu1 is not None:
                            got["cpu_ms_per_request"] = (cpu1 - cpu0) * 1000 / max(1, got["requests"])
                        runs[mode].append(got)
                    if n == 1:  # the in-process call, between the 1-client runs
                        t0 = time.perf_counter()
                        c0 = time.process_time()
                        one = local.run(endpoint, per_client, rep * per_client)
                        base_runs.append({"requests": per_client, "errors": 0,
                                          "rps": per_client / (time.perf_counter() - t0),
                                          "cpu_ms_per_request": (time.process_time() - c0) * 1000 / per_client})
                        base_lat.extend(one)
                for mode in MODES:
                    row = {"endpoint": endpoint, "batching": mode, "clients": n, **_median_row(runs[mode], lat[mode])}
                    rows.append(row)
                    print(f"  {endpoint:10s} batching {mode:3s} {n:3d} clients: {row['rps']:8.1f} req/s  "
                          f"p50 {row['p50_ms']:6.2f} ms  p95 {row['p95_ms']:6.2f} ms", flush=True)
            if base_runs:
                rows.append({"endpoint": endpoint, "batching": "in-process", "clients": 1,
                             **_median_row(base_runs, base_lat)})

    summary: dict[str, Any] = {}
    top = max(clients)
    for endpoint in endpoints:
        by = {(r["batching"], r["clients"]): r for r in rows if r["endpoint"] == endpoint}
        entry: dict[str, Any] = {}
        on, off = by.get(("on", top)), by.get(("off", top))
        if on and off:
            entry[f"speedup_at_{top}_clients"] = on["rps"] / off["rps"]
            if on.get("cpu_ms_per_request") and off.get("cpu_ms_per_request"):
                entry[f"cpu_per_request_off_vs_on_at_{top}_clients"] = off["cpu_ms_per_request"] / on["cpu_ms_per_request"]
        one, base = by.get(("on", 1)), by.get(("in-process", 1))
        if one and base:
            entry["inprocess_p95_ms"] = base["p95_ms"]
            entry["served_p95_ms_1_client"] = one["p95_ms"]
            entry["p95_1_client_vs_inprocess"] = one["p95_ms"] / base["p95_ms"]
            entry["p50_1_client_vs_inprocess"] = one["p50_ms"] / base["p50_ms"]
        summary[endpoint] = entry
    _common.print_table(rows, [
        Column("endpoint", "endpoint"), Column("batching", "batching"), Column("clients", "clients"),
        Column("rps", "req/s", "{:.1f}"), Column("rps_min", "min", "{:.1f}"), Column("rps_max", "max", "{:.1f}"),
        Column("p50_ms", "p50 ms", "{:.2f}"), Column("p95_ms", "p95 ms", "{:.2f}"),
        Column("cpu_ms_per_request", "CPU ms/req", "{:.2f}"), Column("errors", "errors"),
    ], title="umr serve: single-item requests, tiny model, CPU (median of runs; on/off alternate)")
    for endpoint, entry in summary.items():
        print(f"{endpoint}: " + ", ".join(f"{k} {v:.2f}" for k, v in entry.items()))
    settings = {k: v for k, v in vars(args).items() if k != "out"}
    payload = _common.result_payload(NAME, settings, rows, summary=summary, notes=[
        "targets (issue 19): embeddings speedup at 32 clients >= 3; served p95 at 1 client / in-process p95 <= 1.10",
        "rerank pools requests only when they share the query (Reranker.score takes one query per call)",
        "latencies are client round trips over HTTP/1.1 keep-alive on 127.0.0.1",
        "cpu_ms_per_request: CPU time of the server process (all threads) per request; on a shared machine "
        "it is steadier than req/s (the load of other processes does not enter it)",
    ])
    path = _common.write_json(payload, args.out, NAME)
    print(f"wrote {path}")
    return payload


if __name__ == "__main__":
    main()
