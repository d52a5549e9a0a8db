"""Settings of one ``umr serve`` process (validated once, at start-up)."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

#: default request body limit: 32 MiB (a few page images as data URIs fit; a 50 MB body does not)
DEFAULT_MAX_BODY_BYTES = 32 * 1024 * 1024
#: default limit on the pixels of one decoded request image (header checked before decoding)
DEFAULT_MAX_IMAGE_PIXELS = 40_000_000


#: tokens pooled into one embedding call when the model runs on a CPU (dozens of short texts, a few pages)
CPU_POOL_TOKENS = 2048


class ServeConfig(BaseModel):
    """What the operator decided: limits, credentials, folders the server may read.

    ``api_key``: when set, every route but ``/health`` (and the static page shell) needs
    ``Authorization: Bearer <key>``.  ``allowed_media_dirs``: folders whose files a request may name with
    a ``file://`` URL (none by default: only data URIs).  ``max_body_bytes``: larger requests get 413.
    ``max_image_pixels``: a request image whose header claims more pixels gets 400 before any decoding.
    ``max_inputs``: inputs per embeddings request, documents per rerank request.  ``batching``: pool the
    items of concurrent requests into shared forward passes (off: one call per request, for comparison).
    ``max_batch_items``: items pooled at most into one library call.  ``max_batch_tokens``: tokens pooled at
    most into one embedding call (None: one forward pass of the embedder, its ``max_batch_tokens``, on an
    accelerator; ``CPU_POOL_TOKENS`` on a CPU, where one page already fills the cores and a bigger pool
    only makes each request wait for the others).  ``served_model_name`` /
    ``served_reranker_name``: names the ``model`` field may use (the model ids are accepted too).
    ``upload_dir``: where uploaded files are kept (they stay the store's ``source``).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    api_key: str | None = None
    allowed_media_dirs: tuple[Path, ...] = ()
    max_body_bytes: int = Field(DEFAULT_MAX_BODY_BYTES, gt=0)
    max_image_pixels: int = Field(DEFAULT_MAX_IMAGE_PIXELS, gt=0)
    max_inputs: int = Field(2048, gt=0)
    max_upload_files: int = Field(64, gt=0)
    batching: bool = True
    max_batch_items: int = Field(256, gt=0)
    max_batch_tokens: int | None = Field(None, gt=0)
    served_model_name: str | None = None
    served_reranker_name: str | None = None
    upload_dir: Path | None = None
    rerank_depth: int = Field(20, gt=0)

    @field_validator("allowed_media_dirs", mode="before")
    @classmethod
    def _resolve_dirs(cls, value: object) -> tuple[Path, ...]:
        if value is None:
            return ()
        if isinstance(value, (str, os.PathLike)):
            value = [value]
        out = []
        for v in value:  # type: ignore[union-attr]
            p = Path(os.fspath(v)).expanduser().resolve()
            if not p.is_dir():
                raise ValueError(f"allowed media folder {os.fspath(v)!r} is not a directory")
            out.append(p)
        return tuple(out)

    @field_validator("api_key")
    @classmethod
    def _key(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("api_key must not be empty (omit it to serve without a key)")
        return value
