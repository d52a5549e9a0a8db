"""Fixtures of the ``umr serve`` tests: tiny models, an app factory, a real uvicorn server in a thread."""

from __future__ import annotations

import base64
import importlib.util
import io
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

# without the serve extra (pip install 'umr[serve]') these tests are not collected
_MISSING = [m for m in ("fastapi", "uvicorn", "prometheus_client", "multipart") if importlib.util.find_spec(m) is None]
if _MISSING:
    collect_ignore_glob = ["test_*.py"]


def png_data_uri(image: Image.Image) -> str:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def photo(seed: int, size: tuple[int, int] = (96, 72)) -> Image.Image:
    """A small deterministic picture with some structure (not a flat colour)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    arr = (rng.random((size[1] // 8, size[0] // 8, 3)) * 255).astype("uint8")
    return Image.fromarray(arr).resize(size, Image.Resampling.NEAREST)


def make_pdf(path: Path, pages: list[str]) -> Path:
    import pymupdf

    doc = pymupdf.open()
    for i, text in enumerate(pages):
        page = doc.new_page(width=300, height=400)
        page.insert_text((30, 60), text, fontsize=14)
        page.draw_rect(pymupdf.Rect(30, 100 + 10 * i, 200, 200 + 10 * i), color=(0.2, 0.3, 0.8), fill=(0.8, 0.3, 0.2))
    doc.save(str(path))
    doc.close()
    return path


@pytest.fixture(scope="session")
def tiny_reranker(tiny_reranker_dir: Path) -> Any:
    import umr

    return umr.Reranker.from_pretrained(tiny_reranker_dir, device="cpu")


@pytest.fixture
def make_app(tiny_embedder: Any, tiny_reranker: Any) -> Iterator[Callable[..., Any]]:
    """``make_app(db=None, reranker=True, max_upload_bytes=..., **config)``: an app on the tiny models (closed afterwards)."""
    from umr.serve import ServeConfig, create_app

    apps: list[Any] = []

    def build(
        db: Path | None = None, reranker: bool = True, max_upload_bytes: int = 64 * 1024 * 1024, **config: Any
    ) -> Any:
        app = create_app(
            tiny_embedder, tiny_reranker if reranker else None,
            store_options={"path": db} if db is not None else None, config=ServeConfig(**config),
            max_upload_bytes=max_upload_bytes,
        )
        apps.append(app)
        return app

    yield build
    for app in apps:
        app.state.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def running(app: Any) -> Iterator[str]:
    """Serve ``app`` with uvicorn on 127.0.0.1 in a thread; yields its base URL."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture
def serve(make_app: Callable[..., Any]) -> Callable[..., Any]:
    """``with serve(**options) as url:`` a real server on the tiny models."""

    @contextmanager
    def start(**options: Any) -> Iterator[str]:
        with running(make_app(**options)) as url:
            yield url

    return start
