"""Open an existing collection without loading a model (for ``umr stats`` / ``umr delete``)."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from .collection import read_collection_info

__all__ = ["RecordedModel", "open_existing", "read_collection_info"]


class RecordedModel:
    """Stands in for the embedder a collection was built with: ids and sizes, no weights.

    Enough for deleting, listing, counting and checking; embedding raises with a clear message.
    """

    has_weights = False

    def __init__(self, info: dict[str, Any]) -> None:
        self.model_id = str(info.get("umr_model_id", "unknown"))
        self.dim = int(info.get("umr_dim", 1))
        self.fingerprint = str(info.get("umr_fingerprint", ""))
        self.max_pixels = int(info.get("umr_max_pixels", 1) or 1)
        #: a multi-vector collection: token vectors beside Chroma, which deleting removes too
        self.multi_vector = bool(info.get("umr_multi_vector", False))
        if self.multi_vector:
            self.dim = int(info.get("umr_token_dim", 128))
            self.fingerprint = str(info.get("umr_model_fingerprint", ""))
            self.store_options = {
                "first_stage": str(info.get("umr_first_stage", "fde")),
                "pool_factor": int(info.get("umr_pool_factor", 1)),
            }
        else:
            self.store_options = {}

    def _no_model(self, *args: Any, **kwargs: Any) -> np.ndarray:
        raise RuntimeError(
            f"this store was opened without a model; load {self.model_id!r} with umr.Embedder.from_pretrained "
            "and pass it to ChromaStore to add or search"
        )

    embed_documents = _no_model
    embed_queries = _no_model
    embed = _no_model


def open_existing(
    *,
    collection: str,
    path: str | os.PathLike | None = None,
    host: str | None = None,
    port: int = 8000,
    image_dir: str | os.PathLike | None = None,
    lexical_dir: str | os.PathLike | None = None,
) -> Any:
    """A ``ChromaStore`` on an existing collection, for management only (delete, stats, documents,
    ``rebuild_lexical``, lexical search).

    ``image_dir`` names the folder of its page images when it is not the default (``delete`` removes
    a document's images only from there); ``lexical_dir`` the folder of its lexical index likewise."""
    from umr.store.chroma import ChromaStore

    info = read_collection_info(collection=collection, path=path, host=host, port=port)
    if info is None:
        where = f"{host}:{port}" if host else os.fspath(path or "")
        raise FileNotFoundError(f"collection {collection!r} does not exist at {where}")
    kwargs: dict[str, Any] = {"collection": collection}
    if host:
        kwargs.update(host=host, port=port)
    else:
        kwargs["path"] = path
    if image_dir:
        kwargs["image_dir"] = image_dir
    if lexical_dir:
        kwargs["lexical_dir"] = lexical_dir
    model = RecordedModel(info)
    return ChromaStore(model, **kwargs, **model.store_options)
