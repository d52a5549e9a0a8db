"""``POST /v1/embeddings`` through the official ``openai`` client: the vectors are the library's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.serve.conftest import photo, png_data_uri

openai = pytest.importorskip("openai", reason="the openai client is a dev dependency")

COS = 0.9999


def _cos(a: Any, b: Any) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


@pytest.fixture
def client(serve: Any, tmp_path: Path) -> Any:
    media = tmp_path / "media"
    media.mkdir()
    with serve(api_key="secret", allowed_media_dirs=[media]) as url:
        c = openai.OpenAI(base_url=url + "/v1", api_key="secret", max_retries=0, timeout=60)
        c.media = media  # type: ignore[attr-defined]
        yield c


def test_text_image_and_fused_vectors_equal_the_library(client: Any, tiny_embedder: Any) -> None:
    model = tiny_embedder.model_id
    texts = ["the revenue grew in 2023", "a red bicycle"]
    # default encoding (the client asks for base64 and decodes it) and explicit float
    got = client.embeddings.create(model=model, input=texts)
    got_float = client.embeddings.create(model=model, input=texts, encoding_format="float")
    want = tiny_embedder.embed_documents(texts)
    for i in range(2):
        assert _cos(got.data[i].embedding, want[i]) >= COS
        assert _cos(got_float.data[i].embedding, want[i]) >= COS
    assert [d.index for d in got.data] == [0, 1]
    assert got.usage.prompt_tokens > 0

    # query side with an instruction (UMR fields through extra_body)
    q = client.embeddings.create(model=model, input="revenue 2023",
                                 extra_body={"input_type": "query", "instruction": "Find the report page."})
    assert _cos(q.data[0].embedding, tiny_embedder.embed_queries("revenue 2023", instruction="Find the report page.")) >= COS
    assert _cos(q.data[0].embedding, tiny_embedder.embed_documents("revenue 2023")) < COS  # the side matters

    img = photo(1)
    uri = png_data_uri(img)
    image_only = client.embeddings.create(model=model, input=[[{"type": "image_url", "image_url": {"url": uri}}]])
    fused = client.embeddings.create(model=model, input=[[
        {"type": "text", "text": "a caption"}, {"type": "image_url", "image_url": {"url": uri}},
    ]])
    umr_form = client.embeddings.create(model=model, input=[{"text": "a caption", "image": uri}])
    assert _cos(image_only.data[0].embedding, tiny_embedder.embed_documents(img)) >= COS
    want_fused = tiny_embedder.embed_documents({"text": "a caption", "image": img})
    assert _cos(fused.data[0].embedding, want_fused) >= COS
    assert _cos(umr_form.data[0].embedding, want_fused) >= COS

    # a file URL under a folder the operator allowed
    path = client.media / "p.png"
    img.save(path)
    by_file = client.embeddings.create(model=model, input=[[{"type": "image_url", "image_url": {"url": path.as_uri()}}]])
    assert _cos(by_file.data[0].embedding, tiny_embedder.embed_documents(path)) >= COS


def test_refusals_are_openai_errors_naming_the_field(client: Any, tiny_embedder: Any, tmp_path: Path) -> None:
    model = tiny_embedder.model_id
    with pytest.raises(openai.NotFoundError, match="model"):
        client.embeddings.create(model="no-such-model", input="x")
    with pytest.raises(openai.BadRequestError, match="dimensions"):
        client.embeddings.create(model=model, input="x", dimensions=32)  # GME has no Matryoshka dims
    outside = tmp_path / "outside.png"
    photo(2).save(outside)
    with pytest.raises(openai.PermissionDeniedError, match=r"input\[0\]\[0\]\.image_url\.url"):
        client.embeddings.create(model=model, input=[[{"type": "image_url", "image_url": {"url": outside.as_uri()}}]])
    with pytest.raises(openai.BadRequestError, match=r"input\[1\]"):
        client.embeddings.create(model=model, input=["fine", [{"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]])
    with pytest.raises(openai.BadRequestError, match="token ids"):
        client.embeddings.create(model=model, input=[1, 2, 3])
    bad = openai.OpenAI(base_url=str(client.base_url), api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.embeddings.create(model=model, input="x")


def test_matryoshka_dimensions(tmp_path_factory: pytest.TempPathFactory) -> None:
    """``dimensions`` truncates like ``Embedder(dim=...)`` for a recipe trained for it."""
    from fastapi.testclient import TestClient

    import umr
    from umr.serve import create_app
    from umr.testing import build_tiny_model

    path = build_tiny_model(tmp_path_factory.mktemp("tiny-q3"), recipe="qwen3-vl-embedding", seed=0, hidden_size=128)
    full = umr.Embedder.from_pretrained(path, device="cpu")
    small = umr.Embedder.from_pretrained(path, device="cpu", dim=64)
    app = create_app(full)
    try:
        with TestClient(app) as c:
            r = c.post("/v1/embeddings", json={"model": full.model_id, "input": ["a page about tax"], "dimensions": 64})
            assert r.status_code == 200, r.text
            vec = r.json()["data"][0]["embedding"]
            assert len(vec) == 64
            assert _cos(vec, small.embed_documents(["a page about tax"])[0]) >= COS
            r = c.post("/v1/embeddings", json={"model": full.model_id, "input": "x", "dimensions": 32})
            assert r.status_code == 400 and r.json()["error"]["param"] == "dimensions"
            assert "64 to 128" in r.json()["error"]["message"]
    finally:
        app.state.close()
