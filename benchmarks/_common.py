"""Shared helpers for the scripts in ``benchmarks/``: timing, peak memory, machine facts, tables, JSON.

Every benchmark prints a table and writes ``benchmarks/results/<name>.json`` (a gitignored folder) with
the same top-level keys: ``benchmark``, ``created``, ``machine``, ``settings``, ``results`` and, where
useful, ``summary`` / ``skipped`` / ``notes``. Scripts import this module as ``_common`` (their own folder
is on ``sys.path`` when run as ``python benchmarks/<script>.py``).

Nothing here imports torch at module import time, so a subprocess that only needs ``run_isolated``'s
child side stays light until the phase itself imports what it measures.
"""

from __future__ import annotations

import datetime as _dt
import importlib.util
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
_RESULT_MARKER = "__UMR_BENCH_RESULT__"


# -- imports ---------------------------------------------------------------------------------------------
def ensure_umr_importable() -> None:
    """Put this checkout's ``core/`` on ``sys.path`` when ``umr`` is not installed (a plain checkout)."""
    core = str(REPO_ROOT / "core")
    if importlib.util.find_spec("umr") is None and core not in sys.path:
        sys.path.insert(0, core)


def offline_env() -> None:
    """Benchmarks never reach a model hub: set the offline switches before transformers is imported."""
    for key, value in (
        ("HF_HUB_OFFLINE", "1"),
        ("TRANSFORMERS_OFFLINE", "1"),
        ("HF_HUB_DISABLE_TELEMETRY", "1"),
        ("TOKENIZERS_PARALLELISM", "false"),
    ):
        os.environ.setdefault(key, value)


# -- timing ----------------------------------------------------------------------------------------------
@dataclass
class Timing:
    """Wall-clock seconds of ``repeats`` timed calls (after ``warmup`` untimed ones)."""

    times: list[float] = field(default_factory=list)
    warmup: int = 0

    @property
    def best(self) -> float:
        return min(self.times)

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.times)

    def as_dict(self) -> dict[str, Any]:
        return {
            "seconds_best": self.best,
            "seconds_median": self.median,
            "seconds_mean": self.mean,
            "seconds_all": list(self.times),
            "repeats": len(self.times),
            "warmup": self.warmup,
        }


def time_it(
    fn: Callable[[], Any],
    *,
    warmup: int = 1,
    repeats: int = 3,
    sync: Callable[[], None] | None = None,
) -> Timing:
    """Call ``fn`` ``warmup`` times untimed, then ``repeats`` times timed.

    ``sync`` (for example ``torch.cuda.synchronize``) runs before the clock starts and before it stops,
    so that asynchronous device work is inside the measured interval.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    for _ in range(max(0, warmup)):
        fn()
    if sync is not None:
        sync()
    times: list[float] = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        if sync is not None:
            sync()
        times.append(time.perf_counter() - start)
    return Timing(times=times, warmup=max(0, warmup))


# -- memory ----------------------------------------------------------------------------------------------
def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB (``getrusage`` ``ru_maxrss``).

    Linux reports KiB, macOS bytes. The value only grows: to attribute a peak to one phase, run the
    phase in a fresh process (``run_isolated``).
    """
    raw = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return raw / (1024.0 * 1024.0) if sys.platform == "darwin" else raw / 1024.0


def current_rss_mb() -> float | None:
    """Current resident set size in MiB (Linux ``/proc``), or ``None`` where unavailable."""
    try:
        with open("/proc/self/statm") as fh:
            pages = int(fh.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / (1024.0 * 1024.0)
    except (OSError, ValueError, IndexError):
        return None


# -- machine facts ---------------------------------------------------------------------------------------
def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True, timeout=10, check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _total_memory_gb() -> float | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3
    except (ValueError, OSError, AttributeError):
        return None


def machine_info() -> dict[str, Any]:
    """Facts that decide a benchmark's numbers: CPU, threads, memory, library versions, GPU, commit."""
    info: dict[str, Any] = {
        "hostname": platform.node(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "memory_gb": _total_memory_gb(),
        "git_commit": _git_commit(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
        info["cuda_available"] = torch.cuda.is_available()
        if torch.cuda.is_available():
            props = torch.cuda.get_device_properties(0)
            info["gpu"] = torch.cuda.get_device_name(0)
            info["gpu_count"] = torch.cuda.device_count()
            info["gpu_memory_gb"] = props.total_memory / 1024**3
            info["cuda"] = torch.version.cuda
            info["cudnn"] = torch.backends.cudnn.version()
    except ImportError:  # pragma: no cover
        info["torch"] = None
    for name in ("transformers", "flash_attn", "numpy", "PIL"):
        try:
            mod = __import__(name)
            info[name] = getattr(mod, "__version__", "?")
        except ImportError:
            info[name] = None
    return info


# -- output ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Column:
    """One table column: the row key, its header and a format spec (``"{:.1f}"``) or a callable."""

    key: str
    header: str
    fmt: str | Callable[[Any], str] = "{}"

    def render(self, row: dict[str, Any]) -> str:
        value = row.get(self.key)
        if value is None:
            return "-"
        if isinstance(value, float) and not math.isfinite(value):
            return str(value)
        if callable(self.fmt):
            return self.fmt(value)
        try:
            return self.fmt.format(value)
        except (ValueError, TypeError):
            return str(value)


def format_table(rows: Sequence[dict[str, Any]], columns: Sequence[Column], title: str | None = None) -> str:
    """A plain-text table: text columns left-aligned, numeric columns right-aligned."""
    cells = [[c.render(r) for c in columns] for r in rows]
    widths = [max([len(c.header), *(len(row[i]) for row in cells)]) for i, c in enumerate(columns)]
    numeric = [
        all(isinstance(r.get(c.key), (int, float)) or r.get(c.key) is None for r in rows) for c in columns
    ]

    def line(values: Sequence[str]) -> str:
        return "  ".join(v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric)).rstrip()

    out = []
    if title:
        out.append(title)
    out.append(line([c.header for c in columns]))
    out.append("  ".join("-" * w for w in widths))
    out.extend(line(row) for row in cells)
    return "\n".join(out)


def print_table(rows: Sequence[dict[str, Any]], columns: Sequence[Column], title: str | None = None) -> None:
    print(format_table(rows, columns, title), flush=True)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "__dataclass_fields__"):
        return _jsonable(asdict(value))
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if hasattr(value, "item"):  # numpy / torch scalars
        return _jsonable(value.item())
    return str(value)


def result_payload(name: str, settings: dict[str, Any], results: list[dict[str, Any]], **extra: Any) -> dict:
    """The common JSON layout of a benchmark result."""
    return {
        "benchmark": name,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "settings": settings,
        "results": results,
        **extra,
    }


def write_json(payload: dict[str, Any], out: str | os.PathLike | None = None, name: str | None = None) -> Path:
    """Write ``payload`` to ``out`` (a file path) or ``benchmarks/results/<name>.json``; returns the path."""
    if out is None:
        if not name:
            raise ValueError("write_json needs out= or name=")
        path = RESULTS_DIR / f"{name}.json"
    else:
        path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(_jsonable(payload), indent=2, sort_keys=False) + "\n")
    tmp.replace(path)
    return path


# -- synthetic inputs ------------------------------------------------------------------------------------
def make_photo(size: tuple[int, int], seed: int) -> Any:
    """A noisy colour image (a photo stand-in; content does not change the cost)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    w, h = size
    base = rng.integers(0, 256, size=(h // 8 + 1, w // 8 + 1, 3), dtype=np.uint8)
    img = Image.fromarray(base).resize((w, h), Image.Resampling.BILINEAR)
    noise = rng.integers(0, 32, size=(h, w, 3), dtype=np.uint8)
    return Image.fromarray(np.asarray(img, dtype=np.uint8) // 2 + noise)


def make_page(size: tuple[int, int], seed: int) -> Any:
    """A white page with dark text-like line blocks and a grey figure box (a rendered-PDF stand-in)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    w, h = size
    page = np.full((h, w), 255, dtype=np.uint8)
    margin, line_h = w // 12, max(6, h // 90)
    y = margin
    while y < h - margin:
        if rng.random() < 0.08:  # a figure
            fig_h = int(h * 0.15)
            page[y : min(h - margin, y + fig_h), margin : w - margin] = rng.integers(120, 220)
            y += fig_h + line_h
            continue
        x = margin
        end = w - margin - int(rng.integers(0, w // 4))
        while x < end:
            word = int(rng.integers(line_h, line_h * 6))
            page[y : y + line_h - 2, x : min(end, x + word)] = int(rng.integers(0, 80))
            x += word + line_h
        y += int(line_h * 1.8)
    return Image.fromarray(page, mode="L").convert("RGB")


# -- isolation -------------------------------------------------------------------------------------------
_CHILD = """
import importlib.util, json, sys
bench_dir, core_dir, script, func = sys.argv[1:5]
sys.path[:0] = [bench_dir, core_dir]
spec = importlib.util.spec_from_file_location("_umr_bench_phase", script)
mod = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mod)
kwargs = json.loads(sys.stdin.read())
result = getattr(mod, func)(**kwargs)
sys.stdout.write("\\n" + sys.argv[5] + json.dumps(result) + "\\n")
sys.stdout.flush()
"""


class IsolatedPhaseError(RuntimeError):
    """A phase run in a subprocess failed; the message carries the tail of its output."""


def run_isolated(script: str | os.PathLike, func: str, kwargs: dict[str, Any], timeout: float = 1800) -> Any:
    """Run ``func(**kwargs)`` from ``script`` in a fresh Python process and return its JSON result.

    Used to give each phase its own peak RSS (``ru_maxrss`` only grows within a process). ``kwargs``
    and the result must be JSON-serialisable.
    """
    env = dict(os.environ)
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    cmd = [sys.executable, "-c", _CHILD, str(BENCH_DIR), str(REPO_ROOT / "core"), str(script), func, _RESULT_MARKER]
    proc = subprocess.run(
        cmd, input=json.dumps(kwargs), capture_output=True, text=True, timeout=timeout, env=env, check=False
    )
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(_RESULT_MARKER):
            return json.loads(line[len(_RESULT_MARKER):])
    tail = (proc.stdout[-2000:] + "\n" + proc.stderr[-4000:]).strip()
    raise IsolatedPhaseError(f"phase {func}({kwargs}) in {script} failed (exit {proc.returncode}):\n{tail}")
