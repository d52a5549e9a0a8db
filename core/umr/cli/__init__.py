"""The ``umr`` command line: one module per command, shared helpers in :mod:`umr.cli.common`.

Exit codes: 0 success; 1 the job ran but something failed (some files, no results, an error while
running); 2 usage errors (bad arguments, no such path). Errors print one line on stderr; ``--verbose``
adds the traceback.

Adding a command: write ``umr/cli/<name>.py`` with ``register(sub)`` (adds its subparser to ``sub``, the
``argparse`` subparsers, and sets ``func=run``; ``run(args) -> int`` is the command) and add ``<name>``
to :data:`COMMANDS`.  A command module imports its heavy dependencies inside ``run``, so ``umr --help``
stays fast, and never imports :mod:`umr.cli` itself (only :mod:`umr.cli.common`).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence

from .common import JobFailed, UsageError, err

#: command modules under ``umr.cli``, in the order ``umr --help`` lists them
COMMANDS: tuple[str, ...] = (
    "index",
    "search",
    "delete",
    "stats",
    "evaluate",
    "models",
    "make_tiny_model",
    "train",
    "serve",
)

__all__ = ["COMMANDS", "JobFailed", "UsageError", "build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The ``umr`` parser with every command of :data:`COMMANDS` registered."""
    parser = argparse.ArgumentParser(
        prog="umr",
        description="Universal multimodal retrieval: index PDFs and images, search them by page.",
    )
    parser.add_argument("--verbose", "-v", action="store_true", help="log details and show tracebacks")
    parser.add_argument("--quiet", "-q", action="store_true", help="print only results and errors")
    from umr import __version__

    parser.add_argument("--version", action="version", version=f"umr {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"{__name__}.{name}").register(sub)
    return parser


def configure_logging(verbose: bool, quiet: bool) -> None:
    level = logging.DEBUG if verbose else (logging.ERROR if quiet else logging.WARNING)
    logging.basicConfig(level=level, format="umr: %(levelname)s: %(message)s", stream=sys.stderr)
    if not verbose:
        # the index summary already lists every failed file with its reason; the writer lock's "waiting
        # for another umr process" and a Chroma server's retries (umr.store.lock, umr.store.faults) stay
        for noisy in (
            "chromadb", "httpx", "transformers", "urllib3", "umr.store.indexer", "umr.store.repair",
            "umr.distributed", "ray",
        ):
            logging.getLogger(noisy).setLevel(logging.ERROR)


class Stopped(KeyboardInterrupt):
    """SIGTERM (or SIGHUP) arrived: unwound like Ctrl-C, so render workers stop and locks are released."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _stop(signum: int, frame: object) -> None:
    import signal

    signal.signal(signum, signal.SIG_DFL)  # a second signal ends the process at once
    raise Stopped(signum)


def _install_signal_handlers() -> dict[int, object]:
    """SIGTERM / SIGHUP raise :class:`Stopped` in the main thread; returns the previous handlers."""
    import signal
    import threading

    previous: dict[int, object] = {}
    if threading.current_thread() is not threading.main_thread():
        return previous
    for name in ("SIGTERM", "SIGHUP"):
        signum = getattr(signal, name, None)
        if signum is None:
            continue
        try:
            previous[signum] = signal.signal(signum, _stop)
        except (OSError, ValueError):  # pragma: no cover
            pass
    return previous


def _restore_signal_handlers(previous: dict[int, object]) -> None:
    import signal

    for signum, handler in previous.items():
        try:
            signal.signal(signum, handler)  # type: ignore[arg-type]
        except (OSError, ValueError, TypeError):  # pragma: no cover
            pass


def _stdout_gone() -> int:
    """stdout was closed by the reader (``umr stats | head``): stop quietly, as Unix tools do."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so that the flush at exit does not fail again
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # pragma: no cover - stdout is not a real file
        pass
    return 141  # 128 + SIGPIPE, what a shell reports for a tool ended by a closed pipe


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``umr`` with ``argv`` (default ``sys.argv[1:]``); returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    configure_logging(args.verbose, args.quiet)
    os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
    previous = _install_signal_handlers()
    try:
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # a closed pipe shows here, not at exit
        return code
    except BrokenPipeError:
        return _stdout_gone()
    except UsageError as exc:
        err(f"umr {args.command}: error: {exc}")
        return 2
    except Stopped as exc:
        import signal

        name = signal.Signals(exc.signum).name
        err(f"umr {args.command}: stopped by {name}; re-run the same command to resume (finished pages are kept)")
        return 128 + exc.signum
    except KeyboardInterrupt:
        err("umr: interrupted (re-run the same command to resume; finished pages are kept)")
        return 130
    except Exception as exc:
        if args.verbose:
            import traceback

            traceback.print_exc()
        err(f"umr {args.command}: error: {one_line(exc)}")
        return 1
    finally:
        _restore_signal_handlers(previous)


def one_line(exc: BaseException) -> str:
    """An exception as one line, with a hint for the usual environment problems."""
    from umr.errors import UMRError

    msg = " ".join(str(exc).split()) or type(exc).__name__
    hint = ""
    low = msg.lower()
    if "readonly" in low or "read-only" in low or "read only" in low:
        hint = " (the index folder is on a read-only disk or not writable)"
    elif "locked" in low:
        hint = " (another process holds the index; use a Chroma server for several writers)"
    elif "connect" in low and "chroma" in low:
        hint = " (start one with `chroma run --path DIR --port PORT`, or drop --host to use ./umr_db)"
    from umr.store.faults import StoreError

    if isinstance(exc, StoreError):  # names the store and what to do already
        return msg
    if isinstance(exc, (UMRError, JobFailed, FileNotFoundError, ValueError)):
        return msg + hint
    return f"{type(exc).__name__}: {msg}{hint}"
