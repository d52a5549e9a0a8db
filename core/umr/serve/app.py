"""The FastAPI application of ``umr serve``.

>>> from umr.serve import create_app, ServeConfig                          # doctest: +SKIP
>>> app = create_app(embedder, reranker, store_options={"path": "umr_db"}) # doctest: +SKIP
>>> uvicorn.run(app, host="127.0.0.1", port=8000)                          # doctest: +SKIP

One process owns the models; every embedding (API requests, searches, indexing jobs) goes through one
queue per model (:mod:`umr.serve.batcher`).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import io
import json
import logging
import os
import re
import secrets
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from PIL import Image
from starlette.exceptions import HTTPException as StarletteHTTPException

from umr import __version__
from umr.errors import InputError
from umr.inputs import MultimodalInput
from umr.ranking import rank_scores

from .config import CPU_POOL_TOKENS, ServeConfig
from .errors import ApiError, error_body
from .jobs import JobRunner
from .media import load_image_ref, parse_input, parse_inputs
from .metrics import Metrics
from .schemas import EmbeddingsRequest, RerankRequest, ScoreRequest, SearchRequest
from .services import EmbedService, QueuedEmbedder, RerankService

logger = logging.getLogger(__name__)

STATIC = Path(__file__).with_name("static")
#: routes open without an API key (the page shell asks for the key; its API calls send it)
PUBLIC_PATHS = ("/health", "/", "/favicon.ico")
UPLOAD_SUFFIXES = {".pdf", ".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff"}
DEFAULT_MAX_UPLOAD_BYTES = 256 * 1024 * 1024
_SAFE_NAME = re.compile(r"[^\w.\- ()+]")


def _json_error(status: int, message: str, param: str | None = None, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(status, message, param), status_code=status, headers=headers)


class Guard:
    """ASGI middleware: API key, body size limit, request metrics; answers its refusals as JSON errors.

    The body is read here up to the limit (a larger ``Content-Length`` is refused before reading) and
    replayed to the app, so no route ever sees an oversized body.
    """

    def __init__(self, app: Any, config: ServeConfig, metrics: Metrics, max_upload_bytes: int) -> None:
        self.app = app
        self.config = config
        self.metrics = metrics
        self.max_upload_bytes = max_upload_bytes
        self._key = config.api_key.encode() if config.api_key else None

    async def __call__(self, scope: dict, receive: Callable[[], Awaitable[dict]], send: Callable[[dict], Awaitable[None]]) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        path: str = scope.get("path", "")
        route = self.metrics.route_label(path)
        status_box = {"status": 500}

        async def send_wrapper(message: dict) -> None:
            if message["type"] == "http.response.start":
                status_box["status"] = int(message["status"])
            await send(message)

        try:
            refusal = self._check_auth(scope, path)
            if refusal is None:
                upload = path == "/v1/documents" and scope.get("method") == "POST"
                limit = self.max_upload_bytes if upload else self.config.max_body_bytes
                body, refusal = await self._read_body(scope, receive, limit)
            if refusal is not None:
                await refusal(scope, receive, send_wrapper)
                return
            replayed = False

            async def replay() -> dict:
                nonlocal replayed
                if not replayed:
                    replayed = True
                    return {"type": "http.request", "body": body, "more_body": False}
                return await receive()

            await self.app(scope, replay, send_wrapper)
        finally:
            self.metrics.observe_request(route, scope.get("method", ""), status_box["status"], time.perf_counter() - start)

    def _check_auth(self, scope: dict, path: str) -> JSONResponse | None:
        if self._key is None or path in PUBLIC_PATHS or path.startswith("/static/"):
            return None
        header = b""
        for name, value in scope.get("headers", []):
            if name == b"authorization":
                header = value
                break
        scheme, _, token = header.partition(b" ")
        if not header:
            return _json_error(401, "missing API key: send 'Authorization: Bearer <key>'", "Authorization",
                               {"WWW-Authenticate": "Bearer"})
        if scheme.lower() != b"bearer" or not secrets.compare_digest(token.strip(), self._key):
            return _json_error(401, "wrong API key", "Authorization", {"WWW-Authenticate": "Bearer"})
        return None

    async def _read_body(self, scope: dict, receive: Callable[[], Awaitable[dict]], limit: int) -> tuple[bytes, JSONResponse | None]:
        def too_large() -> JSONResponse:
            return _json_error(413, f"request body over this server's limit of {limit} bytes", "body")

        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    return b"", _json_error(400, "Content-Length is not a number", "Content-Length")
                if declared > limit:
                    return b"", too_large()
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                return b"", too_large()
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks), None


def _validation_param(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path")]
    out = ""
    for p in parts:
        out += f"[{p}]" if p.isdigit() else (f".{p}" if out else p)
    return out or "body"


def _safe_upload_name(name: str | None, field: str) -> str:
    base = (name or "").replace("\\", "/").rsplit("/", 1)[-1]
    base = _SAFE_NAME.sub("_", base).lstrip(". ")[-150:]
    suffix = Path(base).suffix.lower()
    if not base or suffix not in UPLOAD_SUFFIXES:
        raise ApiError(400, f"file {name!r} is not a PDF or an image (accepted: {', '.join(sorted(UPLOAD_SUFFIXES))})",
                       field)
    return base


def _encode(vector: np.ndarray, fmt: str) -> Any:
    if fmt == "base64":
        return base64.b64encode(np.ascontiguousarray(vector, dtype="<f4").tobytes()).decode("ascii")
    return vector.tolist()


def pool_tokens(config: ServeConfig, embedder: Any) -> int | None:
    """Tokens pooled at most into one embedding call: the operator's ``max_batch_tokens``, else one forward
    pass of the embedder on an accelerator, ``CPU_POOL_TOKENS`` on a CPU (None: no token cap known)."""
    if config.max_batch_tokens is not None:
        return int(config.max_batch_tokens)
    device = getattr(embedder, "device", None)
    if getattr(device, "type", device) == "cpu":
        return CPU_POOL_TOKENS
    budget = getattr(embedder, "max_batch_tokens", None)
    return int(budget) if isinstance(budget, int) and budget > 0 else None


def create_app(
    embedder: Any,
    reranker: Any | None = None,
    *,
    store: Any | None = None,
    store_options: dict[str, Any] | None = None,
    config: ServeConfig | None = None,
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
) -> FastAPI:
    """The ASGI app serving ``embedder`` (and ``reranker``, and a store).

    ``store_options``: keyword arguments of ``umr.store.ChromaStore`` (``path``, ``host``, ``port``,
    ``collection``, ``image_dir`` ...); the store is opened with an embedder that goes through the queue.
    ``store``: an already opened store instead (its own embedder is then used as is).
    """
    config = config or ServeConfig()
    metrics = Metrics()
    embed_service = EmbedService(
        embedder, batching=config.batching, max_items=config.max_batch_items,
        max_tokens=pool_tokens(config, embedder), observe=lambda n, s: metrics.observe_batch("embed", n, s),
    )
    rerank_service = (
        RerankService(reranker, batching=config.batching, max_items=config.max_batch_items,
                      observe=lambda n, s: metrics.observe_batch("rerank", n, s))
        if reranker is not None else None
    )
    own_store = store is None and store_options is not None
    if own_store:
        from umr.store import ChromaStore

        store = ChromaStore(QueuedEmbedder(embedder, embed_service), **(store_options or {}))
    upload_dir = config.upload_dir
    if upload_dir is None and store is not None and getattr(store, "path", None) is not None:
        # beside the database, not inside it: the store never indexes files under its own folder
        upload_dir = Path(str(store.path).rstrip("/\\") + "-uploads")
    jobs = JobRunner(store) if store is not None else None
    metrics.bind_gauges(embed_service, rerank_service, jobs)

    embed_names = {n for n in (config.served_model_name, str(embedder.model_id)) if n}
    rerank_names = {n for n in (config.served_reranker_name, str(getattr(reranker, "model_id", ""))) if n}
    embed_public = config.served_model_name or str(embedder.model_id)
    rerank_public = (config.served_reranker_name or str(reranker.model_id)) if reranker is not None else None
    recipe = getattr(embedder, "recipe", None)

    def _close() -> None:
        embed_service.close()
        if rerank_service is not None:
            rerank_service.close()
        if jobs is not None:
            jobs.close()
        if own_store and hasattr(store, "close"):
            store.close()  # its render workers

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        _close()

    app = FastAPI(title="umr serve", version=__version__, docs_url="/docs", redoc_url=None, lifespan=lifespan)
    app.state.embed_service = embed_service
    app.state.rerank_service = rerank_service
    app.state.store = store
    app.state.jobs = jobs
    app.state.metrics = metrics
    app.state.config = config

    app.state.close = _close

    # -- errors: every refusal is JSON naming the field --------------------------------------------------
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return _json_error(exc.status, exc.message, exc.param)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = sorted(exc.errors(), key=lambda e: e.get("type") != "extra_forbidden")
        first = errors[0] if errors else {"loc": ("body",), "msg": "invalid request", "type": ""}
        if first.get("type") == "json_invalid":
            return _json_error(400, f"malformed JSON ({first.get('msg', '')}); send a JSON object", "body")
        param = _validation_param(tuple(first.get("loc", ())))
        msg = str(first.get("msg", "invalid value"))
        if first.get("type") == "extra_forbidden":
            msg = "unknown field; see /docs for the accepted fields"
        if first.get("type") == "model_attributes_type":
            msg = "the body must be a JSON object"
        more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
        return _json_error(400, msg + more, param)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _json_error(exc.status_code, str(exc.detail), None, getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        logger.error("unexpected error while serving a request", exc_info=exc)
        return _json_error(500, f"internal error ({type(exc).__name__}); the server log has the details")

    def _library_error(exc: BaseException, param: str) -> ApiError:
        if isinstance(exc, ApiError):
            return exc
        if isinstance(exc, (InputError, ValueError, TypeError)):
            return ApiError(400, str(exc), param)
        raise exc

    def _check_model(name: str | None, served: set[str], public: str | None, what: str) -> None:
        if name is None or name in served:
            return
        raise ApiError(404, f"model {name!r} is not served here; the {what} model is {public!r} (see /v1/models)",
                       "model")

    def _need_store() -> Any:
        if store is None:
            raise ApiError(503, "this server has no document store; start it with --db DIR (or --host)", None)
        return store

    # -- public routes -----------------------------------------------------------------------------------
    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {
            "status": "ok",
            "version": __version__,
            "embedder": embed_public,
            "reranker": rerank_public,
            "store": store is not None,
            "queue": embed_service.batcher.depth(),
        }

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/metrics", include_in_schema=False)
    async def prometheus() -> Response:
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        data = [{
            "id": embed_public, "object": "model", "owned_by": "umr", "root": str(embedder.model_id),
            "kind": "embedding", "dim": int(embedder.dim), "recipe": getattr(recipe, "name", None),
            "max_pixels": getattr(embedder, "max_pixels", None),
            "fingerprint": getattr(embedder, "fingerprint", None),
        }]
        if reranker is not None:
            data.append({"id": rerank_public, "object": "model", "owned_by": "umr", "root": str(reranker.model_id),
                         "kind": "rerank"})
        return {"object": "list", "data": data}

    # -- embeddings ----------------------------------------------------------------------------------------
    def _allowed_dims(d: int | None) -> int | None:
        native = int(embedder.dim)
        if d is None or d == native:
            return None
        ok = d < native and recipe is not None and (
            d in getattr(recipe, "matryoshka_dims", ())
            or (getattr(recipe, "matryoshka_min_dim", None) is not None and recipe.matryoshka_min_dim <= d)
        )
        if not ok:
            words = recipe.allowed_dims(native) if recipe is not None else str(native)
            raise ApiError(400, f"{d} is not available for this model; allowed: {words}", "dimensions")
        return d

    def _prepare_embeddings(req: EmbeddingsRequest) -> tuple[list[MultimodalInput], list[Any] | None, int]:
        items = parse_inputs(req.input, "input", max_pixels=config.max_image_pixels,
                             allowed=config.allowed_media_dirs, max_inputs=config.max_inputs)
        try:
            prepared, tokens = embed_service.validate(items, req.input_type, req.instruction)
        except Exception as exc:
            raise _library_error(exc, "input") from None
        return items, prepared, tokens

    @app.post("/v1/embeddings")
    async def embeddings(req: EmbeddingsRequest) -> JSONResponse:
        _check_model(req.model, embed_names, embed_public, "embedding")
        dims = _allowed_dims(req.dimensions)
        text_only = isinstance(req.input, str) or (
            isinstance(req.input, list) and len(req.input) <= 64 and all(isinstance(x, str) for x in req.input)
        )
        if text_only:
            items, prepared, tokens = _prepare_embeddings(req)
        else:
            items, prepared, tokens = await run_in_threadpool(_prepare_embeddings, req)
        if prepared is not None:
            future = embed_service.submit_prepared(prepared)
        else:
            future = embed_service.submit(items, req.input_type, req.instruction)
        try:
            vectors = await asyncio.wrap_future(future)
        except Exception as exc:
            raise _library_error(exc, "input") from None
        if dims is not None:
            vectors = vectors[:, :dims]
            vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        metrics.count_inputs("embed", len(items))
        data = [{"object": "embedding", "index": i, "embedding": _encode(v, req.encoding_format)}
                for i, v in enumerate(vectors)]
        return JSONResponse({
            "object": "list", "data": data, "model": embed_public,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        })

    # -- rerank --------------------------------------------------------------------------------------------
    def _prepare_rerank(req: RerankRequest) -> tuple[MultimodalInput, list[MultimodalInput]]:
        kw = {"max_pixels": config.max_image_pixels, "allowed": config.allowed_media_dirs}
        if len(req.documents) > config.max_inputs:
            raise ApiError(400, f"{len(req.documents)} documents is over this server's limit of {config.max_inputs}",
                           "documents")
        query = parse_input(req.query, "query", **kw)
        docs = [parse_input(d, f"documents[{i}]", **kw) for i, d in enumerate(req.documents)]
        return query, docs

    async def _rerank(req: RerankRequest) -> JSONResponse:
        if rerank_service is None:
            raise ApiError(503, "this server has no reranker; start it with --rerank MODEL", "model")
        _check_model(req.model, rerank_names, rerank_public, "rerank")
        query, docs = await run_in_threadpool(_prepare_rerank, req)
        if docs:
            try:
                scores = await asyncio.wrap_future(rerank_service.submit(query, docs, req.instruction))
            except Exception as exc:
                raise _library_error(exc, "documents") from None
        else:
            scores = []
        metrics.count_inputs("rerank", len(docs))
        results = []
        for index, score in rank_scores(scores, req.top_n):
            entry: dict[str, Any] = {"index": index, "relevance_score": score}
            if req.return_documents:
                raw = req.documents[index]
                entry["document"] = {"text": raw} if isinstance(raw, str) else raw
            results.append(entry)
        return JSONResponse({"id": secrets.token_hex(8), "model": rerank_public, "results": results,
                             "usage": {"total_tokens": 0, "documents": len(docs)}})

    @app.post("/v1/rerank")
    async def rerank(req: RerankRequest) -> JSONResponse:
        return await _rerank(req)

    @app.post("/rerank", include_in_schema=False)
    async def rerank_jina(req: RerankRequest) -> JSONResponse:
        return await _rerank(req)

    @app.post("/v1/score")
    async def score(req: ScoreRequest) -> JSONResponse:
        query = req.text_1[0] if isinstance(req.text_1, list) and len(req.text_1) == 1 else req.text_1
        if isinstance(query, list):
            raise ApiError(400, "give one query (a string or a content input); pairwise lists are not served",
                           "text_1")
        documents = req.text_2 if isinstance(req.text_2, list) else [req.text_2]
        answer = await _rerank(RerankRequest(model=req.model, query=query, documents=documents,
                                             instruction=req.instruction))
        ranked = json.loads(answer.body)
        data = sorted(({"index": r["index"], "object": "score", "score": r["relevance_score"]}
                       for r in ranked["results"]), key=lambda d: d["index"])
        return JSONResponse({"id": ranked["id"], "object": "list", "model": ranked["model"], "data": data,
                             "usage": ranked["usage"]})

    # -- store ---------------------------------------------------------------------------------------------
    def _image_url(meta: dict[str, Any]) -> str | None:
        image_dir = getattr(store, "image_dir", None)
        path = meta.get("image_path")
        if not path or image_dir is None:
            return None
        root = Path(image_dir).resolve()
        p = Path(str(path))
        try:
            rel = p.resolve().relative_to(root)
        except (ValueError, OSError):
            return None
        return "/v1/images/" + rel.as_posix()

    def _search(req: SearchRequest) -> dict[str, Any]:
        st = _need_store()
        started = time.perf_counter()
        image = None
        if req.image is not None:
            image = load_image_ref(req.image, "image", max_pixels=config.max_image_pixels,
                                   allowed=config.allowed_media_dirs)
        if (req.query is None or not req.query.strip()) and image is None:
            raise ApiError(400, "give a query text, an image, or both", "query")
        if req.rerank and rerank_service is None:
            raise ApiError(400, "this server has no reranker (start it with --rerank MODEL)", "rerank")
        query: dict[str, Any] = {}
        if req.query and req.query.strip():
            query["text"] = req.query
        if image is not None:
            query["image"] = image
        depth = max(req.k, req.rerank_depth or config.rerank_depth) if req.rerank else req.k
        try:
            hits = st.search(query, k=depth, where=req.where, where_document=req.where_document,
                             instruction=req.instruction, mode=req.mode, fusion=req.fusion)
        except (InputError, ValueError, TypeError) as exc:
            param = "where" if (req.where or req.where_document) and "where" in str(exc).lower() else "query"
            raise ApiError(400, str(exc), param) from None
        except Exception as exc:  # a Chroma filter error has its own class per version
            if req.where or req.where_document:
                raise ApiError(400, f"cannot apply the filter: {exc}", "where") from None
            raise
        rerank_scores: list[float] | None = None
        order = [(i, h.score) for i, h in enumerate(hits)][: req.k]
        if req.rerank and hits:
            assert rerank_service is not None
            candidates = []
            for h in hits:
                p = h.metadata.get("image_path")
                if p and Path(str(p)).is_file():
                    candidates.append(MultimodalInput(image=Path(str(p))))
                else:
                    candidates.append(MultimodalInput(text=h.document or " "))
            rerank_scores = rerank_service.score_sync(MultimodalInput.coerce(query), candidates, req.instruction)
            order = rank_scores(rerank_scores, req.k)
        results = []
        for i, score in order:
            h = hits[i]
            meta = {k: v for k, v in h.metadata.items() if k not in ("image_path", "image_uri")}
            url = _image_url(h.metadata)
            doc = h.document or ""
            results.append({
                "id": h.id,
                "score": float(score),
                "vector_score": float(h.score),
                "rerank_score": None if rerank_scores is None else float(rerank_scores[i]),
                "source": h.source,
                "name": os.path.basename(h.source) or h.source,
                "page": h.page,
                "page_count": meta.get("page_count"),
                "kind": meta.get("kind"),
                "snippet": doc[:400] + ("…" if len(doc) > 400 else ""),
                "image_url": url,
                "thumbnail_url": f"{url}?width=320" if url else None,
                "metadata": meta,
            })
        return {"results": results, "reranked": rerank_scores is not None,
                "seconds": round(time.perf_counter() - started, 4)}

    @app.post("/v1/search")
    async def search(req: SearchRequest) -> dict[str, Any]:
        return await run_in_threadpool(_search, req)

    @app.get("/v1/images/{rel:path}")
    def page_image(rel: str, width: int | None = Query(None, ge=16, le=4096)) -> Response:
        st = _need_store()
        image_dir = getattr(st, "image_dir", None)
        if image_dir is None:
            raise ApiError(404, "this store keeps no page images", "path")
        root = Path(image_dir).resolve()
        try:
            target = (root / rel).resolve()
        except (OSError, ValueError):
            raise ApiError(404, "no such page image", "path") from None
        if root not in target.parents or target.suffix.lower() != ".png" or not target.is_file():
            raise ApiError(404, "no such page image", "path")
        headers = {"Cache-Control": "private, max-age=3600", "X-Content-Type-Options": "nosniff"}
        if width is None:
            return FileResponse(target, media_type="image/png", headers=headers)
        with Image.open(target) as img:
            img.load()
            if img.width > width:
                img = img.resize((width, max(1, round(img.height * width / img.width))), Image.Resampling.LANCZOS)
            buf = io.BytesIO()
            img.convert("RGB").save(buf, format="JPEG", quality=85)
        return Response(buf.getvalue(), media_type="image/jpeg", headers=headers)

    @app.get("/v1/documents")
    def list_documents() -> dict[str, Any]:
        st = _need_store()
        docs = [{
            "source": d.source, "name": os.path.basename(d.source) or d.source, "sha256": d.sha256, "kind": d.kind,
            "pages": d.pages, "page_count": d.page_count, "title": d.title, "complete": d.complete,
        } for d in st.documents()]
        return {"documents": docs}

    @app.get("/v1/stats")
    def stats() -> dict[str, Any]:
        st = _need_store()
        out = dict(st.stats())
        out.pop("path", None)
        out.pop("image_dir", None)
        out["embedder"] = embed_public
        out["reranker"] = rerank_public
        out["jobs_active"] = jobs.active() if jobs is not None else 0
        return out

    @app.post("/v1/documents", status_code=202)
    async def upload(request: Request) -> JSONResponse:
        _need_store()
        assert jobs is not None
        if upload_dir is None:
            raise ApiError(503, "uploads need a folder: start the server with --upload-dir DIR", "files")
        ctype = request.headers.get("content-type", "")
        if not ctype.startswith("multipart/form-data"):
            raise ApiError(415, "send the files as multipart/form-data under the field 'files'", "files")
        try:
            form = await request.form(max_files=config.max_upload_files, max_fields=16)
        except Exception as exc:
            raise ApiError(400, f"cannot read the form ({exc})", "files") from None
        uploads = [v for k, v in form.multi_items() if k in ("files", "file") and not isinstance(v, str)]
        if not uploads:
            raise ApiError(400, "no files: send them under the form field 'files'", "files")
        names = [_safe_upload_name(u.filename, f"files[{i}]") for i, u in enumerate(uploads)]
        saved = await run_in_threadpool(_save_uploads, uploads, names, Path(upload_dir))
        await form.close()
        job = jobs.submit(saved, names)
        return JSONResponse({"job": job.as_dict()}, status_code=202,
                            headers={"Location": f"/v1/jobs/{job.id}"})

    @app.get("/v1/jobs/{job_id}")
    async def job_status(job_id: str) -> dict[str, Any]:
        job = jobs.get(job_id) if jobs is not None else None
        if job is None:
            raise ApiError(404, f"no job {job_id!r} (finished jobs are kept for a while)", "job_id")
        return job.as_dict()

    def _delete(source: str) -> dict[str, Any]:
        st = _need_store()
        if not source:
            raise ApiError(400, "name the document by its source (as listed by GET /v1/documents) or sha256",
                           "source")
        removed = int(st.delete_document(source))
        if not removed:
            raise ApiError(404, f"no document with source or sha256 {source!r}", "source")
        return {"source": source, "removed": removed}

    @app.delete("/v1/documents")
    async def delete_by_query(source: str = Query(..., min_length=1)) -> dict[str, Any]:
        return await run_in_threadpool(_delete, source)

    @app.delete("/v1/documents/{source:path}")
    async def delete_document(source: str) -> dict[str, Any]:
        return await run_in_threadpool(_delete, source)

    app.add_middleware(Guard, config=config, metrics=metrics, max_upload_bytes=max_upload_bytes)
    return app


def _save_uploads(uploads: list[Any], names: list[str], upload_dir: Path) -> list[Path]:
    """Copy each upload to ``upload_dir/<sha256[:16]>/<name>`` (same content, same path: idempotent)."""
    upload_dir.mkdir(parents=True, exist_ok=True)
    out = []
    for upload, name in zip(uploads, names):
        h = hashlib.sha256()
        fd, tmp = tempfile.mkstemp(dir=upload_dir, prefix=".upload-")
        try:
            with os.fdopen(fd, "wb") as fh:
                upload.file.seek(0)
                while chunk := upload.file.read(1 << 20):
                    h.update(chunk)
                    fh.write(chunk)
            folder = upload_dir / h.hexdigest()[:16]
            folder.mkdir(exist_ok=True)
            target = folder / name
            if target.exists():
                os.unlink(tmp)
            else:
                shutil.move(tmp, target)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        out.append(target)
    return out
