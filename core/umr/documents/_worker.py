"""Render worker process: ``python -m umr.documents._worker FD MEMORY_LIMIT PARENT_PID``.

Started by :mod:`umr.documents.workers` as a fresh interpreter (never a fork of the parent,
which may hold torch threads).  It talks to the parent over the socket ``FD`` with
``multiprocessing.connection`` framing:

parent -> worker: ``(task_id, source, sha256_or_None, options)`` or ``None`` to stop; ``options`` are
:func:`open_document`'s keyword arguments (a render ``plan`` among them, unpickled here: plain data whose
module imports without torch) plus ``png`` (encode each page image as PNG here too).
worker -> parent: ``("ready", pid)`` once, then per task ``("start", id, sha, page_count,
kind)``, ``("page", id, Page)`` ..., and ``("done", id, pages)`` or ``("error", id, kind,
reason, sha)``.

Sending a page blocks while the parent is not reading (the socket buffer is much smaller than a
page), which is the back-pressure that keeps memory flat.
"""

from __future__ import annotations

import faulthandler
import json
import os
import signal
import sys
import time
from dataclasses import replace
from multiprocessing.connection import Connection
from typing import Any

# Test-only fault injection: a JSON object {file basename: action} with action one of
# "hang", "exit", "segv", "sleep:SECONDS" (before opening the file) or "exit_after:N" (after
# sending N pages).  Read here, in the worker, and nowhere else.
TEST_FAULTS_ENV = "_UMR_TEST_RENDER_FAULTS"


def _limit_memory(limit: int) -> None:
    if limit <= 0:
        return
    try:
        import resource
    except ImportError:  # pragma: no cover - non-POSIX
        return
    try:
        _soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        if hard != resource.RLIM_INFINITY:
            limit = min(limit, hard)
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    except (ValueError, OSError, AttributeError):  # pragma: no cover - platform specific
        pass


def _die_with_parent(parent_pid: int) -> None:
    """Linux: get SIGKILL when the parent dies (so a hung render never outlives it)."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            pr_set_pdeathsig = 1
            libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)
        except Exception:  # pragma: no cover - exotic libc
            pass
    if parent_pid and os.getppid() != parent_pid:  # parent already gone
        os._exit(0)


def _test_fault(source: str, faults: dict[str, str]) -> None:
    action = faults.get(os.path.basename(source))
    if action is None:
        return
    if action == "hang":
        while True:
            time.sleep(3600)
    elif action == "exit":
        os._exit(3)
    elif action == "segv":
        faulthandler.disable()
        os.kill(os.getpid(), signal.SIGSEGV)
        time.sleep(10)
    elif action.startswith("sleep:"):
        time.sleep(float(action.split(":", 1)[1]))


def _exit_after(source: str, faults: dict[str, str]) -> int:
    action = faults.get(os.path.basename(source), "")
    return int(action.split(":", 1)[1]) if action.startswith("exit_after:") else -1


def _serve(conn: Connection, faults: dict[str, str]) -> None:
    from .records import MEMORY, DocumentError
    from .render import open_document, png_bytes

    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg is None:
            return
        task_id, source, sha, options = msg
        if faults:
            _test_fault(source, faults)
        pages = 0
        doc_sha = sha or ""
        options = dict(options)
        encode_png = bool(options.pop("png", False))
        try:
            doc = open_document(source, sha256=sha, **options)
            doc_sha = doc.sha256
            with doc:
                conn.send(("start", task_id, doc.sha256, doc.page_count, doc.kind))
                exit_after = _exit_after(source, faults)
                for page in doc.pages():
                    if encode_png:  # the storage encoding, done here in parallel with the embedder
                        page = replace(page, png=png_bytes(page.image))
                    conn.send(("page", task_id, page))
                    pages += 1
                    if pages == exit_after:
                        os._exit(3)
        except DocumentError as exc:
            conn.send(("error", task_id, exc.kind, exc.reason, exc.sha256 or doc_sha))
        except MemoryError:
            conn.send(("error", task_id, MEMORY, _memory_reason(), doc_sha))
        except (BrokenPipeError, ConnectionError):
            return
        except Exception as exc:
            kind, reason = _classify(exc)
            conn.send(("error", task_id, kind, reason, doc_sha))
        else:
            conn.send(("done", task_id, pages))


def _memory_reason() -> str:
    return "renderer ran out of memory (worker memory limit reached): raise memory_limit or check the file"


def _classify(exc: BaseException) -> tuple[str, str]:
    from .records import INTERNAL, MEMORY

    text = str(exc)
    if "malloc" in text or "out of memory" in text.lower():
        return MEMORY, _memory_reason()
    return INTERNAL, f"renderer failed ({type(exc).__name__}: {text[:200]}): please report this file"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    fd, memory_limit = int(args[0]), int(args[1])
    parent_pid = int(args[2]) if len(args) > 2 else 0
    faulthandler.enable()
    _die_with_parent(parent_pid)
    _limit_memory(memory_limit)
    faults: dict[str, Any] = {}
    if os.environ.get(TEST_FAULTS_ENV):
        faults = json.loads(os.environ[TEST_FAULTS_ENV])
    # PyMuPDF imports its optional ``pymupdf.layout`` add-on (onnxruntime, seconds of start-up)
    # when installed; a renderer does not need it.  ``None`` in sys.modules makes that import fail.
    sys.modules.setdefault("pymupdf.layout", None)  # type: ignore[arg-type]
    try:
        import pymupdf

        pymupdf.TOOLS.mupdf_display_errors(False)
        pymupdf.TOOLS.mupdf_display_warnings(False)
    except ImportError:  # images still work
        pass
    import PIL.Image  # noqa: F401  (import cost paid before "ready")

    conn = Connection(fd)
    try:
        conn.send(("ready", os.getpid()))
        _serve(conn, faults)
    finally:
        conn.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
