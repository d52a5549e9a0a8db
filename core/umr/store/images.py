"""The page-image store: one PNG file per stored page or image, named by its record id.

Chroma keeps only the ``file://`` URI (``image_uri``) and the path (``image_path``) of each image, never
image bytes.  Files live in two-character shards (``<root>/ab/ab12...-p3-....png``) and are written
atomically, so a killed writer never leaves a truncated image behind.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import threading
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from PIL import Image

from umr.confine import register_root
from umr.documents import safe_display
from umr.documents.render import PNG_COMPRESS_LEVEL, png_bytes  # noqa: F401 - re-exported

from .faults import StoreFullError, free_bytes, human

logger = logging.getLogger(__name__)

#: a page image as a PIL image, or PNG bytes encoded already (by a render task of the Ray pipeline)
ImageData = Image.Image | bytes


class PageImages:
    """PNG files by record id under ``root`` (created if missing).  ``root`` is registered with
    :func:`umr.confine.register_root`: rerankers and tools may read the images this store names."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(os.fsdecode(root))
        self.root.mkdir(parents=True, exist_ok=True)
        register_root(self.root)

    def path(self, item_id: str) -> Path:
        """Where the image of ``item_id`` is (or would be) stored."""
        return self.root / item_id[:2] / f"{item_id}.png"

    def save(self, ids: Sequence[str], images: Sequence[ImageData]) -> list[Path]:
        """Write the images (an existing file is kept: ids are content-derived); their resolved paths."""
        paths = [self.path(i) for i in ids]
        try:
            with ThreadPoolExecutor(max_workers=2) as pool:
                futures: list[Future[None]] = [pool.submit(write_png, img, p) for img, p in zip(images, paths)]
                for f in futures:
                    f.result()
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                free = free_bytes(self.root)
                left = f"; {human(free)} free" if free is not None else ""
                raise StoreFullError(
                    f"no space left on the device of the page-image folder {safe_display(self.root)}{left} while "
                    "writing page images: free space there or move the store to a bigger disk, then re-run the "
                    "same command: finished pages are kept"
                ) from exc
            raise
        return [p.resolve() for p in paths]

    def remove(self, metas: Iterable[Mapping[str, Any] | None]) -> None:
        """Remove the files named by the records' ``image_path``, only those under ``root``
        (an image this store did not write is never touched)."""
        root = self.root.resolve()
        for meta in metas:
            path = str((meta or {}).get("image_path", ""))
            if not path:
                continue
            p = Path(path)
            if root in p.parents:
                try:
                    p.unlink()
                except FileNotFoundError:
                    pass
                except OSError as exc:  # pragma: no cover
                    logger.warning("cannot remove %s: %s", safe_display(p), exc)


def write_png(image: ImageData, path: Path) -> None:
    """Write atomically (temp file + rename) so a kill never leaves a truncated image; ``bytes`` are
    PNG data already encoded (:func:`png_bytes`).  An existing file is kept."""
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        if isinstance(image, bytes):
            tmp.write_bytes(image)
        else:
            image.save(tmp, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
        os.replace(tmp, path)
    except BaseException:  # a full disk, a kill: no half-written temp file left behind
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


