"""Dynamic batching: pooled calls, each request gets its own rows, a bad request fails alone."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest

from umr.serve.batcher import Batcher


class Recorder:
    """A ``run`` that records its calls; it waits on ``gate`` so that tasks pile up behind a busy worker."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, list[Any]]] = []
        self.gate = threading.Event()
        self.started = threading.Event()

    def __call__(self, key: Any, payloads: list[Any]) -> list[Any]:
        self.started.set()
        self.gate.wait(10)
        self.calls.append((key, list(payloads)))
        if any(p == "bad" for p in payloads):
            raise ValueError("bad item")
        return [f"{key}:{p}" for p in payloads]


def test_waiting_requests_share_one_call_per_key_and_get_their_own_results() -> None:
    run = Recorder()
    b = Batcher("t", run, max_items=100)
    try:
        first = b.submit("a", "x0")
        assert run.started.wait(5)  # the worker is busy with x0; the next ones queue up
        futures = [b.submit("a" if i % 2 else "b", f"x{i}") for i in range(1, 7)]
        run.gate.set()
        assert first.result(5) == "a:x0"
        assert [f.result(5) for f in futures] == [f"{'a' if i % 2 else 'b'}:x{i}" for i in range(1, 7)]
    finally:
        b.close()
    assert run.calls[0] == ("a", ["x0"])
    assert sorted(run.calls[1:]) == [("a", ["x1", "x3", "x5"]), ("b", ["x2", "x4", "x6"])]


def test_a_bad_request_fails_alone_and_the_worker_keeps_going() -> None:
    run = Recorder()
    b = Batcher("t", run)
    try:
        blocker = b.submit("k", "x0")
        assert run.started.wait(5)
        good1, bad, good2 = b.submit("k", "g1"), b.submit("k", "bad"), b.submit("k", "g2")
        run.gate.set()
        blocker.result(5)
        assert good1.result(5) == "k:g1" and good2.result(5) == "k:g2"
        with pytest.raises(ValueError, match="bad item"):
            bad.result(5)
        assert b.submit("k", "after").result(5) == "k:after"
    finally:
        b.close()
    # the pooled call failed, then each request was retried on its own
    assert ("k", ["g1", "bad", "g2"]) in run.calls and ("k", ["g1"]) in run.calls and ("k", ["g2"]) in run.calls


def test_disabled_runs_one_request_per_call_and_max_items_caps_pooling() -> None:
    run = Recorder()
    off = Batcher("off", run, enabled=False)
    try:
        f0 = off.submit("k", "x0")
        assert run.started.wait(5)
        fs = [off.submit("k", f"x{i}") for i in range(1, 4)]
        run.gate.set()
        f0.result(5)
        [f.result(5) for f in fs]
    finally:
        off.close()
    assert all(len(p) == 1 for _, p in run.calls)

    run2 = Recorder()
    capped = Batcher("cap", run2, max_items=4)
    try:
        f0 = capped.submit("k", "x0", size=1)
        assert run2.started.wait(5)
        fs = [capped.submit("k", f"x{i}", size=2) for i in range(1, 5)]
        run2.gate.set()
        [f.result(5) for f in [f0, *fs]]
    finally:
        capped.close()
    assert max(sum(2 for _ in p) for _, p in run2.calls[1:]) <= 4


def test_concurrent_requests_through_the_embedder_equal_one_by_one(tiny_embedder: Any) -> None:
    from umr.inputs import MultimodalInput
    from umr.serve.services import EmbedService

    calls: list[int] = []
    service = EmbedService(tiny_embedder, observe=lambda n, s: calls.append(n))
    texts = [f"request number {i} about {'tax' if i % 3 else 'the weather in spring'}" for i in range(24)]
    try:
        with ThreadPoolExecutor(12) as pool:
            got = list(pool.map(lambda t: service.embed_sync([MultimodalInput(text=t)], "query", None), texts))
    finally:
        service.close()
    want = tiny_embedder.embed_queries(texts)
    for g, w in zip(got, want):
        assert g.shape == (1, tiny_embedder.dim)
        np.testing.assert_allclose(g[0], w, atol=2e-5)
    assert sum(calls) == 24
    assert max(calls) > 1, "no call pooled two requests; the batcher did not batch"


class CountingEmbedder:
    """The tiny embedder, counting how often inputs are tokenised."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.prepared = 0

    def prepare_inputs(self, items: Any, **kw: Any) -> Any:
        self.prepared += len(items)
        return self.inner.prepare_inputs(items, **kw)

    def embed_prepared(self, prepared: Any) -> Any:
        return self.inner.embed_prepared(prepared)

    def embed(self, items: Any, **kw: Any) -> Any:
        self.prepared += len(items)
        return self.inner.embed(items, **kw)


def test_embed_service_tokenises_each_request_once_and_pools_prepared_requests(tiny_embedder: Any) -> None:
    from umr.inputs import coerce_inputs
    from umr.serve.services import EmbedService

    counting = CountingEmbedder(tiny_embedder)
    service = EmbedService(counting)
    try:
        requests = [(["a red circle", "a chart"], "document", None), (["where is the invoice"], "query", "Find it.")]
        futures, tokens = [], []
        for texts, side, instruction in requests:
            prepared, n_tokens = service.validate(coerce_inputs(texts), side, instruction)
            assert prepared is not None and n_tokens == sum(p.num_tokens for p in prepared) > 0
            tokens.append(n_tokens)
            futures.append(service.submit_prepared(prepared))
        got = [f.result(30) for f in futures]
    finally:
        service.close()
    assert counting.prepared == 3  # once per input, at validation: the queued call does not tokenise again
    for (texts, side, instruction), vectors in zip(requests, got):
        np.testing.assert_allclose(vectors, tiny_embedder.embed(texts, side=side, instruction=instruction), atol=1e-5)


def test_token_cap_keeps_a_pool_to_one_forward_pass_and_keeps_order() -> None:
    run = Recorder()
    b = Batcher("t", run, max_items=100, max_tokens=1000)
    try:
        first = b.submit("a", "p0", tokens=400)
        assert run.started.wait(5)  # busy with p0; five pages of 400 tokens queue behind it
        futures = [b.submit("a", f"p{i}", tokens=400) for i in range(1, 6)]
        run.gate.set()
        assert first.result(5) == "a:p0"
        assert [f.result(5) for f in futures] == [f"a:p{i}" for i in range(1, 6)]
    finally:
        b.close()
    pools = [payloads for _, payloads in run.calls]
    assert pools == [["p0"], ["p1", "p2"], ["p3", "p4"], ["p5"]]  # <= 1000 tokens each, in arrival order


def test_a_task_over_the_cap_alone_still_runs_and_bad_caps_are_refused() -> None:
    run = Recorder()
    run.gate.set()
    b = Batcher("t", run, max_tokens=100)
    try:
        assert b.submit("a", "big", tokens=5000).result(5) == "a:big"
    finally:
        b.close()
    with pytest.raises(ValueError, match="max_tokens"):
        Batcher("t", run, max_tokens=0)


def test_pool_tokens_default_follows_the_device() -> None:
    import torch

    from umr.serve.app import pool_tokens
    from umr.serve.config import CPU_POOL_TOKENS, ServeConfig

    class Emb:
        def __init__(self, device: str) -> None:
            self.device = torch.device(device)
            self.max_batch_tokens = 16384

    assert pool_tokens(ServeConfig(), Emb("cpu")) == CPU_POOL_TOKENS
    assert pool_tokens(ServeConfig(), Emb("meta")) == 16384  # an accelerator: one forward pass
    assert pool_tokens(ServeConfig(max_batch_tokens=512), Emb("cpu")) == 512
