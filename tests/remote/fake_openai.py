"""A fake OpenAI-compatible embeddings / score server (vLLM's request and response format), recording
every request.  Runs ``http.server`` in a thread on a free local port; never touches the network."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np

DIM = 16


def fake_vector(item: Any, dim: int = DIM) -> np.ndarray:
    """The (unnormalised) vector the fake returns for one input item (a prompt or a message list)."""
    seed = int.from_bytes(hashlib.sha256(json.dumps(item, sort_keys=True).encode()).digest()[:8], "little")
    return np.random.default_rng(seed).standard_normal(dim).astype(np.float32) * 3.0


class FakeServer:
    def __init__(self, models: tuple[str, ...] = ("served-gme",), dim: int = DIM) -> None:
        self.models = list(models)
        self.dim = dim
        self.requests: list[dict[str, Any]] = []
        self.fail: list[int] = []  # statuses answered (one per request) before serving normally
        self.delay = 0.0
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, status: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                server._record("GET", self.path, None, self.headers)
                if self.path == "/v1/models":
                    self._send(200, {"object": "list", "data": [{"id": m, "root": m} for m in server.models]})
                else:
                    self._send(404, {"detail": "Not Found"})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length) or b"{}")
                server._record("POST", self.path, body, self.headers)
                status, answer = server._answer(self.path, body)
                if server.delay:
                    time.sleep(server.delay)
                self._send(status, answer)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)

    def _record(self, method: str, path: str, body: Any, headers: Any) -> None:
        with self._lock:
            self.requests.append({"method": method, "path": path, "json": body,
                                  "authorization": headers.get("Authorization")})

    def posts(self, path: str = "/v1/embeddings") -> list[dict[str, Any]]:
        return [r["json"] for r in self.requests if r["method"] == "POST" and r["path"] == path]

    def _answer(self, path: str, body: dict[str, Any]) -> tuple[int, Any]:
        with self._lock:
            if self.fail:
                status = self.fail.pop(0)
                return status, {"error": {"message": f"fake failure {status}"}}
        if body.get("model") not in self.models:
            return 404, {"error": {"message": f"The model `{body.get('model')}` does not exist."}}
        if path == "/v1/embeddings":
            items = [body["messages"]] if "messages" in body else list(body["input"])
            data = [{"object": "embedding", "index": i, "embedding": fake_vector(x, self.dim).tolist()}
                    for i, x in enumerate(items)]
            return 200, {"object": "list", "data": data[::-1], "model": body["model"]}  # any order: by index
        if path in ("/v1/score", "/rerank"):
            docs = body["text_2"] if path == "/v1/score" else body["documents"]
            scores = [float(abs(fake_vector(d)[0]) / 10) for d in docs]
            if path == "/v1/score":
                return 200, {"data": [{"index": i, "score": s} for i, s in enumerate(scores)]}
            return 200, {"results": [{"index": i, "relevance_score": s} for i, s in enumerate(scores)]}
        return 404, {"detail": "Not Found"}

    def __enter__(self) -> FakeServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def serve(**kwargs: Any) -> Iterator[FakeServer]:
    with FakeServer(**kwargs) as server:
        yield server
