"""Hostile requests against a real server: each gets a 4xx JSON error naming the field; it keeps serving."""

from __future__ import annotations

import asyncio
import base64
import io
import struct
import zlib
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from tests.serve.conftest import photo, png_data_uri

KEY = "s3cret-key"
AUTH = {"Authorization": f"Bearer {KEY}"}


def bomb_png(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims ``width`` x ``height`` pixels (a decompression bomb's header)."""
    buf = io.BytesIO()
    photo(0, (8, 8)).save(buf, format="PNG")
    data = bytearray(buf.getvalue())
    ihdr = data[8 + 8 : 8 + 8 + 13]
    ihdr[0:8] = struct.pack(">II", width, height)
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + bytes(ihdr)) & 0xFFFFFFFF)
    return bytes(data)


def _error(r: httpx.Response, status: int, param: str | None = None) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    err = r.json()["error"]
    assert "Traceback" not in err["message"]
    if param is not None:
        assert err["param"] == param, err
    return err


@pytest.fixture
def server(serve: Any, tmp_path: Path) -> Any:
    media = tmp_path / "media"
    media.mkdir()
    (media / "ok.png").write_bytes(b"")
    photo(3).save(media / "ok.png")
    (media / "escape.png").symlink_to(Path("/etc/passwd"))
    with serve(db=tmp_path / "db", api_key=KEY, allowed_media_dirs=[media], max_body_bytes=4 * 1024 * 1024) as url:
        yield url, media


def test_each_hostile_request_is_refused_cleanly(server: Any, tiny_embedder: Any) -> None:
    url, media = server
    model = tiny_embedder.model_id
    with httpx.Client(base_url=url, timeout=60) as c:
        # credentials
        assert c.get("/health").status_code == 200
        _error(c.post("/v1/embeddings", json={"model": model, "input": "x"}), 401, "Authorization")
        _error(c.post("/v1/embeddings", json={"model": model, "input": "x"}, headers={"Authorization": "Bearer nope"}),
               401, "Authorization")
        _error(c.get("/metrics"), 401)
        assert c.get("/metrics", headers=AUTH).status_code == 200
        # malformed JSON, wrong shapes, unknown fields
        err = _error(c.post("/v1/embeddings", content=b'{"model": "x", "input": [', headers={
            **AUTH, "content-type": "application/json"}), 400, "body")
        assert "malformed JSON" in err["message"]
        _error(c.post("/v1/embeddings", json=[1, 2], headers=AUTH), 400)
        _error(c.post("/v1/embeddings", json={"model": model, "input": "x", "encoding_format": "int8"}, headers=AUTH),
               400, "encoding_format")
        _error(c.post("/v1/embeddings", json={"model": model, "input": "x", "temperature": 1}, headers=AUTH),
               400, "temperature")
        _error(c.post("/v1/embeddings", json={"model": model, "input": [{"type": "video", "video": "v"}]},
                      headers=AUTH), 400, "input[0].type")
        _error(c.post("/v1/rerank", json={"query": "q", "documents": "not a list"}, headers=AUTH), 400, "documents")
        _error(c.post("/v1/rerank", json={"query": "q", "documents": ["a"], "top_n": 0}, headers=AUTH), 400, "top_n")
        # a 50 MB body: refused from its Content-Length, and a streamed one without a length
        big = b'{"model": "x", "input": "' + b"a" * (50 * 1024 * 1024) + b'"}'
        _error(c.post("/v1/embeddings", content=big, headers={**AUTH, "content-type": "application/json"}), 413, "body")

        def chunks() -> Any:
            for _ in range(50):
                yield b"a" * (1024 * 1024)

        _error(c.post("/v1/embeddings", content=chunks(), headers={**AUTH, "content-type": "application/json"}),
               413, "body")
        # decompression bombs: a header over PIL's own guard, and one over the server's pixel limit
        for w, h in ((60000, 60000), (9000, 9000)):
            uri = "data:image/png;base64," + base64.b64encode(bomb_png(w, h)).decode()
            err = _error(c.post("/v1/embeddings", json={"model": model, "input": [{"type": "image_url", "image_url": {
                "url": uri}}]}, headers=AUTH), 400, "input[0].image_url.url")
            assert "pixels" in err["message"]
        # path traversal: file URLs leaving the allowed folder, a symlink out of it, page-image routes
        for ref in (f"file://{media}/../../../etc/passwd", (media / "escape.png").as_uri(), "file:///etc/passwd"):
            _error(c.post("/v1/embeddings", json={"model": model, "input": [{"text": "t", "image": ref}]},
                          headers=AUTH), 403, "input[0].image")
        _error(c.post("/v1/embeddings", json={"model": model, "input": [{"image": "http://example.com/a.png"}]},
                      headers=AUTH), 400, "input[0].image")
        for path in ("/v1/images/%2e%2e/%2e%2e/%2e%2e/etc/passwd", "/v1/images/..%2f..%2fchroma.sqlite3",
                     "/v1/images//etc/passwd"):
            _error(c.get(path, headers=AUTH), 404)
        # a good request still works, with an allowed file
        ok = c.post("/v1/embeddings", json={"model": model, "input": [{"image": (media / "ok.png").as_uri()}]},
                    headers=AUTH)
        assert ok.status_code == 200
        vec = np.asarray(ok.json()["data"][0]["embedding"])
        assert float(vec @ tiny_embedder.embed_documents(media / "ok.png")) > 0.9999


def test_a_burst_of_200_mixed_requests_is_answered_and_the_server_keeps_serving(server: Any, tiny_embedder: Any) -> None:
    url, _ = server
    model = tiny_embedder.model_id
    bad_image = "data:image/png;base64," + base64.b64encode(b"\x89PNG\r\n\x1a\n garbage").decode()
    good_image = png_data_uri(photo(7))

    def body(i: int) -> dict[str, Any]:
        if i % 10 == 3:
            return {"model": model, "input": [{"text": f"item {i}", "image": bad_image}]}
        if i % 10 == 7:
            return {"model": model, "input": [{"text": f"item {i}", "image": good_image}]}
        return {"model": model, "input": f"item {i}", "input_type": "query" if i % 2 else "document"}

    async def burst() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
        async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits, headers=AUTH) as c:
            return await asyncio.gather(*(c.post("/v1/embeddings", json=body(i)) for i in range(200)))

    answers = asyncio.run(burst())
    texts_doc = [f"item {i}" for i in range(200) if i % 10 not in (3, 7) and i % 2 == 0]
    texts_q = [f"item {i}" for i in range(200) if i % 10 not in (3, 7) and i % 2 == 1]
    want = dict(zip(texts_doc, tiny_embedder.embed_documents(texts_doc)))
    want.update(zip(texts_q, tiny_embedder.embed_queries(texts_q)))
    for i, r in enumerate(answers):
        if i % 10 == 3:
            _error(r, 400, "input[0].image")
        else:
            assert r.status_code == 200, (i, r.text)
            if i % 10 != 7:
                vec = np.asarray(r.json()["data"][0]["embedding"])
                assert float(vec @ want[f"item {i}"]) > 0.9999
    with httpx.Client(base_url=url, timeout=30) as c:
        assert c.get("/health").json()["status"] == "ok"
        metrics = c.get("/metrics", headers=AUTH).text
        assert 'umr_requests_total{method="POST",route="/v1/embeddings",status="200"} 180.0' in metrics
        assert 'umr_requests_total{method="POST",route="/v1/embeddings",status="400"} 20.0' in metrics
