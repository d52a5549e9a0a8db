"""Dynamic batching: requests of many clients share the model's forward passes.

Each request becomes a task on a queue.  One worker thread per model takes the oldest task, then the
tasks already waiting, in order, while the pool stays within ``max_items`` items and ``max_tokens``
tokens (tasks that know their token cost), groups them by key (for the embedder: side and instruction,
which decide the prompt), and makes ONE library call per group with the pooled items; the library plans
its usual token-budget batches over them.  Each task gets its own rows back.  The token cap keeps a pool
to about one forward pass: a request never waits for a long train of others' pages to finish before
its own answer (on a CPU, where one page already fills the cores, big pools only add latency).

There is no timer: an idle server answers a lone request at once (no added latency), a busy one pools
what arrived while the model was busy.  A call that fails is retried task by task, so a bad item fails
only the request that sent it.  With ``enabled=False`` each task runs alone (the baseline the benchmark
compares against).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

logger = logging.getLogger(__name__)

P = TypeVar("P")
R = TypeVar("R")

#: ``run(key, payloads) -> one result per payload`` (may raise: then each payload is retried alone)
RunFn = Callable[[Hashable, Sequence[Any]], Sequence[Any]]


@dataclass
class _Task(Generic[P]):
    key: Hashable
    payload: P
    size: int
    tokens: int = 0
    future: Future = field(default_factory=Future)
    enqueued: float = field(default_factory=time.perf_counter)


class Batcher:
    """A queue and one worker thread that pools tasks of equal key into shared library calls.

    ``run(key, payloads)`` returns one result per payload, in order.  ``observe(items, seconds)`` (optional)
    is called after each library call with the number of items it carried (metrics).
    """

    def __init__(
        self,
        name: str,
        run: RunFn,
        *,
        enabled: bool = True,
        max_items: int = 256,
        max_tokens: int | None = None,
        observe: Callable[[int, float], None] | None = None,
    ) -> None:
        if max_items < 1:
            raise ValueError(f"max_items must be >= 1, got {max_items}")
        if max_tokens is not None and max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1 or None, got {max_tokens}")
        self.name = name
        self.enabled = enabled
        self.max_items = int(max_items)
        self.max_tokens = int(max_tokens) if max_tokens is not None else None
        self._held: _Task | None = None  # taken from the queue but over the cap: starts the next pool
        self._run = run
        self._observe = observe
        self._queue: queue.SimpleQueue[_Task | None] = queue.SimpleQueue()
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name=f"umr-serve-{name}", daemon=True)
        self._thread.start()

    # -- producer side ----------------------------------------------------------------------------------
    def submit(self, key: Hashable, payload: Any, size: int = 1, tokens: int = 0) -> Future:
        """Queue one request's payload (``size`` items, ``tokens`` tokens when known); the future holds its
        result (or its own exception)."""
        if self._closed:
            raise RuntimeError(f"the {self.name} batcher is closed")
        task = _Task(key=key, payload=payload, size=max(1, int(size)), tokens=max(0, int(tokens)))
        self._queue.put(task)
        return task.future

    def depth(self) -> int:
        """Tasks waiting (approximate)."""
        return self._queue.qsize()

    def close(self, timeout: float = 5.0) -> None:
        if not self._closed:
            self._closed = True
            self._queue.put(None)
            self._thread.join(timeout)

    # -- worker side ------------------------------------------------------------------------------------
    def _take(self, first: _Task) -> tuple[list[_Task], bool]:
        tasks = [first]
        items, tokens = first.size, first.tokens
        stop = False
        while self.enabled and items < self.max_items:
            try:
                nxt = self._queue.get_nowait()
            except queue.Empty:
                break
            if nxt is None:
                stop = True
                break
            if items + nxt.size > self.max_items or (
                self.max_tokens is not None and tokens + nxt.tokens > self.max_tokens
            ):
                self._held = nxt  # first of the next pool: order is kept
                break
            tasks.append(nxt)
            items += nxt.size
            tokens += nxt.tokens
        return tasks, stop

    def _loop(self) -> None:
        while True:
            first, self._held = (self._held, None) if self._held is not None else (self._queue.get(), None)
            if first is None:
                return
            tasks, stop = self._take(first)
            groups: dict[Hashable, list[_Task]] = {}
            for t in tasks:
                groups.setdefault(t.key, []).append(t)
            for key, group in groups.items():
                self._execute(key, group)
            if stop:
                return

    def _execute(self, key: Hashable, tasks: list[_Task]) -> None:
        live = [t for t in tasks if t.future.set_running_or_notify_cancel()]
        if live:
            self._call(key, live)

    def _call(self, key: Hashable, tasks: list[_Task]) -> None:
        start = time.perf_counter()
        try:
            results = self._run(key, [t.payload for t in tasks])
            if len(results) != len(tasks):  # pragma: no cover - a bug in run()
                raise RuntimeError(f"{self.name}: {len(results)} results for {len(tasks)} requests")
        except BaseException as exc:
            if len(tasks) == 1:
                tasks[0].future.set_exception(exc)
                return
            logger.info("%s: a pooled call of %d requests failed (%s); retrying them one by one",
                        self.name, len(tasks), exc)
            for t in tasks:
                self._call(key, [t])
            return
        if self._observe is not None:
            self._observe(sum(t.size for t in tasks), time.perf_counter() - start)
        for t, r in zip(tasks, results):
            t.future.set_result(r)
