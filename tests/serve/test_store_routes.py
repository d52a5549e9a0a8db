"""Store routes: upload a PDF as a job, search it (text, image, fused, filters, rerank), page images, delete."""

from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from tests.serve.conftest import make_pdf, png_data_uri

pytest.importorskip("pymupdf")


@pytest.fixture
def client(make_app: Any, tmp_path: Path) -> Any:
    from fastapi.testclient import TestClient

    app = make_app(db=tmp_path / "db")
    with TestClient(app) as c:
        c.tmp = tmp_path  # type: ignore[attr-defined]
        yield c


def _wait(c: Any, job_id: str, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job = c.get(f"/v1/jobs/{job_id}").json()
        if job["status"] in ("done", "failed") or time.monotonic() > deadline:
            return job
        time.sleep(0.1)


def test_upload_index_search_view_and_delete(client: Any) -> None:
    pdf = make_pdf(client.tmp / "report.pdf", ["Quarterly revenue report", "Holiday photos", "Tax form"])
    with pdf.open("rb") as fh:
        r = client.post("/v1/documents", files=[("files", ("report.pdf", fh, "application/pdf"))])
    assert r.status_code == 202, r.text
    job = _wait(client, r.json()["job"]["id"])
    assert job["status"] == "done", job
    assert job["pages_total"] == 3 and job["pages_added"] == 3 and job["progress"] == 1.0 and not job["failed"]

    stats = client.get("/v1/stats").json()
    assert stats["documents"] == 1 and stats["records"] == 3
    docs = client.get("/v1/documents").json()["documents"]
    assert [d["name"] for d in docs] == ["report.pdf"] and docs[0]["pages"] == 3
    source = docs[0]["source"]

    r = client.post("/v1/search", json={"query": "revenue report", "k": 3})
    assert r.status_code == 200, r.text
    hits = r.json()["results"]
    assert sorted(h["page"] for h in hits) == [1, 2, 3]  # pages count from 1
    assert all(h["source"] == source and h["name"] == "report.pdf" and h["page_count"] == 3 for h in hits)
    assert any("revenue" in h["snippet"].lower() for h in hits)
    scores = [h["score"] for h in hits]
    assert scores == sorted(scores, reverse=True)

    # page images: full size (PNG) and thumbnails (JPEG), both decodable
    full = client.get(hits[0]["image_url"])
    assert full.status_code == 200 and full.headers["content-type"] == "image/png"
    big = Image.open(io.BytesIO(full.content))
    thumb = client.get(hits[0]["thumbnail_url"])
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
    small = Image.open(io.BytesIO(thumb.content))
    assert small.width == min(320, big.width)

    # image query and fused query use the page picture itself: its own page comes first
    uri = png_data_uri(big)
    by_image = client.post("/v1/search", json={"image": uri, "k": 1}).json()["results"]
    assert by_image[0]["id"] == hits[0]["id"]
    fused = client.post("/v1/search", json={"query": "page", "image": uri, "k": 3}).json()["results"]
    assert len(fused) == 3

    # filters: where on metadata; a bad filter is a 400 naming it
    only = client.post("/v1/search", json={"query": "x", "k": 5, "where": {"page": 2}}).json()["results"]
    assert [h["page"] for h in only] == [2]
    bad = client.post("/v1/search", json={"query": "x", "where": {"page": {"$nope": 1}}})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "where"

    # lexical and hybrid modes: the page whose text holds the words comes first (a tiny random dense
    # model could not do that); a mode that does not exist is a 400 naming the field
    for mode in ("lexical", "hybrid"):
        found = client.post("/v1/search", json={"query": "Tax form", "k": 3, "mode": mode}).json()["results"]
        assert found and found[0]["page"] == 3, (mode, found)
    bad_mode = client.post("/v1/search", json={"query": "x", "mode": "sparse"})
    assert bad_mode.status_code == 400 and "mode" in bad_mode.json()["error"]["param"]

    # rerank: the reranker's order over the candidates, with both scores reported
    rr = client.post("/v1/search", json={"query": "tax form", "k": 2, "rerank": True}).json()
    assert rr["reranked"] and len(rr["results"]) == 2
    assert all(h["rerank_score"] is not None and 0.0 <= h["rerank_score"] <= 1.0 for h in rr["results"])
    assert rr["results"][0]["rerank_score"] >= rr["results"][1]["rerank_score"]

    # uploading the same file again adds nothing
    with pdf.open("rb") as fh:
        again = client.post("/v1/documents", files=[("files", ("report.pdf", fh, "application/pdf"))]).json()["job"]
    job = _wait(client, again["id"])
    assert job["status"] == "done" and job["pages_added"] == 0

    # delete: by sha256 in the path, then by source (already gone)
    gone = client.delete(f"/v1/documents/{docs[0]['sha256']}")
    assert gone.status_code == 200 and gone.json()["removed"] == 3
    assert client.post("/v1/search", json={"query": "revenue", "k": 3}).json()["results"] == []
    assert client.get(hits[0]["image_url"]).status_code == 404
    missing = client.delete("/v1/documents", params={"source": source})
    assert missing.status_code == 404 and missing.json()["error"]["param"] == "source"


def test_upload_refusals_and_a_broken_file_reported_in_the_job(client: Any) -> None:
    r = client.post("/v1/documents", files=[("files", ("notes.exe", b"MZ...", "application/octet-stream"))])
    assert r.status_code == 400 and r.json()["error"]["param"] == "files[0]"
    r = client.post("/v1/documents", json={"files": []})
    assert r.status_code == 415
    r = client.post("/v1/documents", files=[("other", ("a.pdf", b"%PDF", "application/pdf"))])
    assert r.status_code == 400 and r.json()["error"]["param"] == "files"
    # a path in the file name never escapes the upload folder
    r = client.post("/v1/documents", files=[("files", ("../../evil.pdf", b"%PDF-1.4 broken", "application/pdf"))])
    assert r.status_code == 202
    job = _wait(client, r.json()["job"]["id"])
    assert job["status"] == "done" and job["files"] == ["evil.pdf"] and len(job["failed"]) == 1
    assert not (client.tmp / "evil.pdf").exists() and not (client.tmp / "db" / "evil.pdf").exists()
    assert client.get("/v1/jobs/nope").status_code == 404
    r = client.post("/v1/search", json={"k": 3})
    assert r.status_code == 400 and r.json()["error"]["param"] == "query"


def test_without_a_store_or_reranker_the_routes_say_so(make_app: Any) -> None:
    from fastapi.testclient import TestClient

    with TestClient(make_app(reranker=False)) as c:
        r = c.post("/v1/search", json={"query": "x"})
        assert r.status_code == 503 and "--db" in r.json()["error"]["message"]
        r = c.post("/v1/rerank", json={"query": "x", "documents": ["a"]})
        assert r.status_code == 503 and "--rerank" in r.json()["error"]["message"]
        assert c.get("/").status_code == 200 and "<form" in c.get("/").text
