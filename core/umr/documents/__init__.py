"""PDF and image ingestion: render pages within a pixel budget, safely, one at a time.

No torch / transformers here: this package runs in light worker processes.

- :func:`walk` expands folders into files (sorted; hidden entries, symlinked folders and excluded
  folders left out and reported as :class:`NotIndexed`; non-regular files reported as :class:`FileError`).
- :func:`render_files` renders many files in worker processes with time and memory limits and
  yields :class:`Page`, :class:`FileDone` and :class:`FileError` records.
- :func:`iter_pages` renders one trusted file in this process.
- :func:`safe_display` prints any path on one line.
"""

from __future__ import annotations

from .names import display_key, path_from_key
from .paths import check_regular, file_sha256, safe_display, source_key, walk
from .plan import DEFAULT_RENDER, RENDER_MODES, RenderPlan, validate_render
from .records import (
    ERROR_KINDS,
    DocumentError,
    DocumentKind,
    FileDone,
    FileError,
    NotIndexed,
    Page,
    RenderRecord,
)
from .render import (
    DEFAULT_MAX_PIXELS,
    MAX_IMAGE_PIXELS,
    RENDER_VERSION,
    downscale,
    fit_size,
    iter_pages,
    load_image,
    open_document,
    sniff,
)
from .workers import (
    DEFAULT_MEMORY_LIMIT,
    DEFAULT_TIMEOUT,
    Prefetch,
    RenderPool,
    auto_workers,
    render_files,
    usable_cpus,
)

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "DEFAULT_MEMORY_LIMIT",
    "DEFAULT_RENDER",
    "DEFAULT_TIMEOUT",
    "ERROR_KINDS",
    "MAX_IMAGE_PIXELS",
    "RENDER_MODES",
    "RENDER_VERSION",
    "DocumentError",
    "DocumentKind",
    "FileDone",
    "FileError",
    "NotIndexed",
    "Page",
    "Prefetch",
    "RenderPlan",
    "RenderPool",
    "RenderRecord",
    "auto_workers",
    "check_regular",
    "display_key",
    "downscale",
    "file_sha256",
    "fit_size",
    "iter_pages",
    "load_image",
    "open_document",
    "path_from_key",
    "render_files",
    "safe_display",
    "sniff",
    "source_key",
    "usable_cpus",
    "validate_render",
    "walk",
]
