"""Render files in worker processes with time and memory limits.

Each worker is a fresh interpreter (``python -m umr.documents._worker``, the equivalent of the
``spawn`` start method: nothing of the parent, such as torch's thread pools, is forked).  A
worker renders one file at a time and streams its pages back over a socket; a page is sent only
when the parent reads the previous one, so at most about one page per worker is in flight
(back-pressure: memory does not grow with page count or with a slow consumer).

A file that hangs the renderer is killed after ``timeout`` seconds without progress, a file
that crashes it (segfault, abort, memory limit) yields a :class:`FileError` and the worker is
replaced; the run goes on with the next file.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

from .paths import PathLike, _as_str, check_regular, file_sha256, safe_display
from .plan import RenderPlan
from .records import CRASH, MEMORY, TIMEOUT, DocumentError, FileDone, FileError, Page
from .render import DEFAULT_MAX_PIXELS, MAX_IMAGE_PIXELS, validate_max_pixels

logger = logging.getLogger(__name__)

#: Default address-space limit per worker (``RLIMIT_AS``), where the platform has one.
DEFAULT_MEMORY_LIMIT = 4 << 30
#: Default seconds a worker may go without progress (opening the file or finishing a page).
DEFAULT_TIMEOUT = 60.0

SkipCallback = Callable[[str, str], bool]

#: Most render workers ``auto`` starts (each is a process with its own PyMuPDF; more rarely helps).
MAX_AUTO_WORKERS = 16


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the platform has one, else ``os.cpu_count()``)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - macOS / Windows
        return max(1, os.cpu_count() or 1)


def auto_workers(*, accelerator: bool, files: int | None = None, cpus: int | None = None) -> int:
    """How many render workers keep the embedder busy on this machine.

    With the model on the CPU the forward pass costs several times what rendering a page (and encoding
    its PNG) does, and torch wants the cores for its own threads: one worker keeps up.  With an
    accelerator, the device outruns one renderer by far, so every CPU but the one feeding the device
    renders (pre-processing the pixels stays with the embedder's threads).  Never more workers than
    files (a worker renders one file at a time), at most ``MAX_AUTO_WORKERS``.
    """
    n = cpus if cpus is not None else usable_cpus()
    want = max(1, n - 1) if accelerator else 1
    if files is not None:
        want = min(want, max(1, files))
    return max(1, min(want, MAX_AUTO_WORKERS))
RenderItem = Page | FileDone | FileError

_CORE_DIR = str(Path(__file__).resolve().parents[2])


@dataclass
class _Task:
    task_id: int
    source: str
    sha256: str
    pages: int = 0
    page_count: int = 0
    step_used: float = 0.0
    total_used: float = 0.0


class _Worker:
    def __init__(self, memory_limit: int | None, env: dict[str, str]) -> None:
        parent_sock, child_sock = socket.socketpair()
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the worker
        try:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "umr.documents._worker",
                    str(child_sock.fileno()),
                    str(memory_limit or 0),
                    str(os.getpid()),
                ],
                pass_fds=(child_sock.fileno(),),
                stdin=subprocess.DEVNULL,
                stdout=self.log,
                stderr=self.log,
                env=env,
                close_fds=True,
            )
        finally:
            child_sock.close()
        self.conn = Connection(parent_sock.detach())
        self.ready = False
        self.startup_used = 0.0
        self.task: _Task | None = None

    def log_tail(self, limit: int = 300) -> str:
        try:
            self.log.seek(0, os.SEEK_END)
            size = self.log.tell()
            self.log.seek(max(0, size - 4096))
            lines = [ln for ln in self.log.read().decode("utf-8", "replace").splitlines() if ln.strip()]
        except (OSError, ValueError):
            return ""
        return lines[-1][:limit] if lines else ""

    def kill(self) -> int | None:
        try:
            self.proc.kill()
        except OSError:
            pass
        try:
            code = self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover - unkillable process
            code = None
        self._close()
        return code

    def _close(self) -> None:
        try:
            self.conn.close()
        except OSError:  # pragma: no cover
            pass
        try:
            self.log.close()
        except OSError:  # pragma: no cover
            pass


def _worker_env() -> dict[str, str]:
    env = dict(os.environ)
    existing = env.get("PYTHONPATH", "")
    env["PYTHONPATH"] = _CORE_DIR + (os.pathsep + existing if existing else "")
    # Renderers need no thread pools of their own; keep the machine for the embedder.
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env.setdefault(var, "1")
    return env


def _exit_description(code: int | None) -> str:
    if code is None:
        return "did not exit"
    if code < 0:
        try:
            return f"killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit status {code}"


class _Pool:
    def __init__(
        self,
        size: int,
        memory_limit: int | None,
        timeout: float,
        file_timeout: float | None,
        startup_timeout: float,
    ) -> None:
        self.size = size
        self.memory_limit = memory_limit
        self.timeout = timeout
        self.file_timeout = file_timeout
        self.startup_timeout = startup_timeout
        self.env = _worker_env()
        self.workers: list[_Worker] = []
        self.next_id = 0

    # ---------------------------------------------------------------- slots
    def start(self) -> None:
        """Start every worker now, in the calling thread.  A worker is asked to die with the thread that
        started it (Linux ``PR_SET_PDEATHSIG`` follows the thread), so workers are started by the thread
        that owns the pool, not by a reader thread that ends with the run (:class:`Prefetch`)."""
        self.reap()
        while len(self.workers) < self.size:
            self.workers.append(_Worker(self.memory_limit, self.env))

    def reap(self) -> None:
        """Forget idle workers that exited since the last run (replaced when next needed)."""
        for w in [w for w in self.workers if w.task is None and w.proc.poll() is not None]:
            self._discard(w)

    def free_worker(self) -> _Worker | None:
        for w in self.workers:
            if w.task is None:
                return w
        if len(self.workers) < self.size:
            w = _Worker(self.memory_limit, self.env)
            self.workers.append(w)
            return w
        return None

    def busy(self) -> list[_Worker]:
        return [w for w in self.workers if w.task is not None]

    def assign(self, worker: _Worker, source: str, sha: str | None, options: dict[str, Any]) -> None:
        self.next_id += 1
        worker.task = _Task(self.next_id, source, sha or "")
        try:
            worker.conn.send((self.next_id, source, sha, options))
        except OSError:
            pass  # the worker died; poll() will see EOF and report it

    def _discard(self, worker: _Worker) -> int | None:
        code = worker.kill()
        self.workers.remove(worker)
        return code

    # ---------------------------------------------------------------- polling
    def _budget_left(self, w: _Worker) -> float:
        if not w.ready:
            return self.startup_timeout - w.startup_used
        assert w.task is not None
        left = self.timeout - w.task.step_used
        if self.file_timeout is not None:
            left = min(left, self.file_timeout - w.task.total_used)
        return left

    def poll(self) -> list[RenderItem]:
        busy = self.busy()
        if not busy:
            return []
        limit = max(0.0, min(self._budget_left(w) for w in busy))
        start = time.monotonic()
        ready = wait([w.conn for w in busy], timeout=limit + 0.01)
        elapsed = time.monotonic() - start
        for w in busy:
            if w.ready:
                assert w.task is not None
                w.task.step_used += elapsed
                w.task.total_used += elapsed
            else:
                w.startup_used += elapsed
        out: list[RenderItem] = []
        by_conn = {id(w.conn): w for w in busy}
        for conn in ready:
            w = by_conn[id(conn)]
            item = self._receive(w)
            if item is not None:
                out.append(item)
        for w in self.busy():
            if self._budget_left(w) <= 0:
                out.append(self._timeout(w))
        return out

    def _receive(self, w: _Worker) -> RenderItem | None:
        task = w.task
        assert task is not None
        try:
            msg = w.conn.recv()
        except (EOFError, OSError):
            return self._crashed(w)
        tag = msg[0]
        if tag == "ready":
            w.ready = True
            return None
        if msg[1] != task.task_id:  # pragma: no cover - protocol guard
            logger.error("render worker answered for task %s, expected %s", msg[1], task.task_id)
            return None
        task.step_used = 0.0
        if tag == "start":
            task.sha256, task.page_count = msg[2], msg[3]
            return None
        if tag == "page":
            task.pages += 1
            return msg[2]
        w.task = None
        if tag == "done":
            return FileDone(task.source, task.sha256, task.pages)
        if tag == "error":
            _, _, kind, reason, sha = msg
            return FileError(task.source, reason, kind, sha or task.sha256)
        raise RuntimeError(f"unexpected message from render worker: {tag!r}")  # pragma: no cover

    def _crashed(self, w: _Worker) -> FileError:
        task = w.task
        assert task is not None
        was_ready = w.ready
        tail = w.log_tail()
        code = self._discard(w)
        if not was_ready:
            raise RuntimeError(
                f"render worker failed to start ({_exit_description(code)}): {tail or 'no output'}; "
                "check the Python environment and memory_limit"
            )
        how = _exit_description(code)
        detail = f" [{tail}]" if tail else ""
        if code == -signal.SIGKILL or "MemoryError" in tail:
            kind, reason = (
                MEMORY,
                (
                    f"renderer was killed ({how}) while rendering this file, probably out of memory: "
                    "raise memory_limit or check the file"
                ),
            )
        else:
            kind, reason = (
                CRASH,
                (
                    f"renderer crashed on this file ({how}){detail}: the file is probably damaged or "
                    "hostile; check it (mutool info / qpdf --check) or leave it out"
                ),
            )
        if task.pages:
            reason += f" (after {task.pages} of {task.page_count} pages)"
        logger.warning("%s: %s", safe_display(task.source), reason)
        return FileError(task.source, reason, kind, task.sha256)

    def _timeout(self, w: _Worker) -> FileError:
        task = w.task
        assert task is not None
        if not w.ready:
            tail = w.log_tail()
            self._discard(w)
            raise RuntimeError(
                f"render worker did not start within {self.startup_timeout:.0f} s: {tail or 'no output'}"
            )
        total = self.file_timeout is not None and task.total_used >= self.file_timeout
        self._discard(w)
        if total:
            reason = (
                f"rendering took longer than the per-file limit of {self.file_timeout:g} s "
                f"({task.pages} of {task.page_count or '?'} pages done): raise file_timeout or split the file"
            )
        else:
            where = f"page {task.pages + 1}" if task.page_count else "opening the file"
            reason = (
                f"renderer hung: no progress for {self.timeout:g} s on {where}; the file may be hostile "
                "or very complex: check it, or raise the time limit (timeout=...)"
            )
        logger.warning("%s: %s", safe_display(task.source), reason)
        return FileError(task.source, reason, TIMEOUT, task.sha256)

    def abort_busy(self) -> None:
        """Kill workers still busy with files of an abandoned run (their output is stale)."""
        for w in self.busy():
            self._discard(w)

    def close(self) -> None:
        """Stop idle workers politely, kill busy ones; never wait long."""
        for w in self.workers:
            if w.task is None and w.ready:
                try:
                    w.conn.send(None)
                except OSError:
                    pass
            else:
                w.kill()
        deadline = time.monotonic() + 1.0
        for w in self.workers:
            if w.proc.returncode is None:
                try:
                    w.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    w.kill()
                    continue
            w._close()
        self.workers.clear()


class RenderPool:
    """Worker processes that render files; reuse one pool across many runs to pay the
    interpreter start-up once.  See :func:`render_files` for the meaning of the options.

    >>> with RenderPool(workers=2) as pool:                       # doctest: +SKIP
    ...     for record in pool.render(walk("papers/"), max_pixels=1_003_520):
    ...         ...

    Workers start on first use, stay idle between runs, and stop on :meth:`close` (or when this
    process exits).  One run at a time per pool.
    """

    def __init__(
        self,
        workers: int = 1,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        file_timeout: float | None = None,
        memory_limit: int | None = DEFAULT_MEMORY_LIMIT,
        startup_timeout: float = 120.0,
    ) -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        if timeout <= 0:
            raise ValueError(f"timeout must be positive, got {timeout}")
        if file_timeout is not None and file_timeout <= 0:
            raise ValueError(f"file_timeout must be positive or None, got {file_timeout}")
        self._pool = _Pool(workers, memory_limit, timeout, file_timeout, startup_timeout)
        self._running = False
        self._closed = False

    @property
    def workers(self) -> int:
        return self._pool.size

    def render(
        self,
        paths: Iterable[PathLike | FileError],
        *,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        skip: SkipCallback | None = None,
        text: bool = True,
        max_image_pixels: int = MAX_IMAGE_PIXELS,
        png: bool = False,
        plan: RenderPlan | None = None,
    ) -> Iterator[RenderItem]:
        """Like :func:`render_files`, on this pool's workers.  ``png``: the workers also encode each
        page image as PNG (``Page.png``), in parallel with the consumer, for a store that keeps them."""
        if self._closed:
            raise RuntimeError("this RenderPool is closed")
        max_pixels = validate_max_pixels(max_pixels)
        _check_plan(plan)
        options = {"max_pixels": max_pixels, "text": text, "max_image_pixels": max_image_pixels, "png": png}
        if plan is not None:
            options["plan"] = plan
        if self._running:
            raise RuntimeError("a RenderPool renders one run at a time; finish or close the other run first")
        self._pool.start()
        return self._run(paths, options, skip)

    def _run(
        self, paths: Iterable[PathLike | FileError], options: dict[str, Any], skip: SkipCallback | None
    ) -> Iterator[RenderItem]:
        if self._running:
            raise RuntimeError("a RenderPool renders one run at a time; finish or close the other run first")
        self._running = True
        pool = self._pool
        items = iter(paths)
        exhausted = False
        try:
            while True:
                while not exhausted and len(pool.busy()) < pool.size:
                    item = next(items, None)
                    if item is None:
                        exhausted = True
                        break
                    if isinstance(item, FileError):
                        yield item
                        continue
                    source = _as_str(item)
                    sha: str | None = None
                    try:
                        check_regular(source)
                        if skip is not None:
                            sha = file_sha256(source)
                            if skip(source, sha):
                                yield FileDone(source, sha, 0, skipped=True)
                                continue
                    except DocumentError as exc:
                        yield exc.to_record(source)
                        continue
                    worker = pool.free_worker()
                    assert worker is not None
                    pool.assign(worker, source, sha, options)
                if not pool.busy():
                    if exhausted:
                        return
                    continue
                yield from pool.poll()
        finally:
            pool.abort_busy()
            self._running = False

    def close(self) -> None:
        self._closed = True
        self._pool.close()

    def __enter__(self) -> RenderPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:  # pragma: no cover - best effort
        try:
            if not self._closed:
                self._pool.close()
        except Exception:
            pass


class Prefetch:
    """Iterate ``records`` (a render run) in a thread, up to ``size`` items ahead of the consumer.

    A render worker sends its next page only when the previous one was read; without a reader the
    workers stand still while the consumer embeds a batch, and rendering and embedding take turns.  With
    one, they overlap, and memory stays bounded (``size`` pages).  ``close()`` stops the reader and
    closes ``records`` in the reader's thread (a generator is closed where it runs).
    """

    _END = object()

    def __init__(self, records: Iterator[RenderItem], size: int) -> None:
        import queue
        import threading

        self._records = records
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max(1, size))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, name="umr-render-reader", daemon=True)
        self._thread.start()

    def _put(self, item: Any) -> bool:
        import queue

        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _read(self) -> None:
        try:
            for record in self._records:
                if not self._put((record, None)):
                    return
            self._put((self._END, None))
        except BaseException as exc:  # handed to the consumer
            self._put((self._END, exc))
        finally:
            close = getattr(self._records, "close", None)
            if close is not None:
                close()

    def __iter__(self) -> Iterator[RenderItem]:
        while True:
            record, exc = self._queue.get()
            if exc is not None:
                raise exc
            if record is self._END:
                return
            yield record

    def close(self) -> None:
        import queue

        self._stop.set()
        while self._thread.is_alive():
            try:
                self._queue.get(timeout=0.1)  # unblock a reader waiting to put
            except queue.Empty:
                pass
        self._thread.join()


def render_files(
    paths: Iterable[PathLike | FileError],
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    timeout: float = DEFAULT_TIMEOUT,
    file_timeout: float | None = None,
    workers: int = 1,
    memory_limit: int | None = DEFAULT_MEMORY_LIMIT,
    skip: SkipCallback | None = None,
    text: bool = True,
    max_image_pixels: int = MAX_IMAGE_PIXELS,
    startup_timeout: float = 120.0,
    plan: RenderPlan | None = None,
) -> Iterator[RenderItem]:
    """Render many files in worker processes and stream back their pages.

    Yields, for each input path, either its :class:`Page` records in page order followed by a
    :class:`FileDone`, or a :class:`FileError` (possibly after some of its pages, which the
    caller should then discard).  With ``workers > 1`` the records of different files may
    interleave; the pages of one file are always in order.  :class:`FileError` items in
    ``paths`` (as :func:`walk` yields them) are passed through.

    ``timeout``: seconds a worker may spend without progress (opening the file, or rendering one
    page) before it is killed and the file reported; it restarts with every page, so long
    documents are fine.  ``file_timeout``: optional cap on the total seconds per file.  Time is
    only counted while this generator is waiting for a worker, never while the consumer works.

    ``memory_limit``: address-space limit in bytes per worker (``RLIMIT_AS``; ignored where
    unsupported, ``None`` or 0 for none).  ``skip(source, sha256)``: called before rendering;
    when it returns true the file is not rendered and ``FileDone(..., skipped=True)`` comes out
    (the file is hashed in this process for that).  Non-regular files (FIFOs, devices, dangling
    symlinks) and empty files are reported without ever being opened.

    ``plan``: draw PDF / SVG pages at an embedder's planned size (``Embedder.render_plan``, see
    :mod:`umr.documents.plan`; still within ``max_pixels``), ``None`` with the zoom that fits the budget.

    Workers start with the run and stop when the generator finishes or is closed; use a
    :class:`RenderPool` to keep them across runs.
    """
    pool = RenderPool(
        workers,
        timeout=timeout,
        file_timeout=file_timeout,
        memory_limit=memory_limit,
        startup_timeout=startup_timeout,
    )
    try:
        run = pool.render(
            paths, max_pixels=max_pixels, skip=skip, text=text, max_image_pixels=max_image_pixels, plan=plan
        )
    except BaseException:
        pool.close()
        raise
    return _closing(run, pool)


def _check_plan(plan: Any) -> None:
    """A render plan travels to worker processes: refuse one that is not a plan or does not pickle."""
    if plan is None:
        return
    if not isinstance(plan, RenderPlan):
        raise TypeError(
            f"plan must be a render plan (target_size(width, height, max_pixels) and resample, e.g. "
            f"Embedder.render_plan) or None, got {type(plan).__name__}"
        )
    import pickle

    try:
        pickle.dumps(plan)
    except Exception as exc:
        raise TypeError(
            f"the render plan {type(plan).__name__} cannot be sent to render workers (it does not pickle: {exc}); "
            "make it plain data"
        ) from None


def _closing(run: Iterator[RenderItem], pool: RenderPool) -> Iterator[RenderItem]:
    try:
        yield from run
    finally:
        close = getattr(run, "close", None)
        if close is not None:
            close()
        pool.close()
