"""Type translation between LangChain objects and umr inputs (no model logic here)."""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from langchain_core.documents import Document

from umr.confine import PathPolicy
from umr.errors import reject_unknown
from umr.inputs import MultimodalInput, path_from_uri

#: metadata keys that may hold the image of a document, in the order they are tried
DEFAULT_IMAGE_KEYS: tuple[str, ...] = ("image_uri", "image_path", "image", "source")
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff"})
# Magic prefixes of base64-encoded PNG / JPEG / GIF / WebP files (how Chroma.add_images stores images).
_B64_IMAGE_PREFIXES = ("iVBORw0KGgo", "/9j/", "R0lGOD", "UklGR")


def uri_to_path(uri: str | os.PathLike[str]) -> Path:
    """A local path from a filesystem path or a ``file://`` URI (``umr.inputs.path_from_uri``)."""
    return path_from_uri(uri)


def path_to_uri(path: str | os.PathLike[str]) -> str:
    """A ``file://`` URI for a local path (absolute)."""
    return Path(os.fspath(path)).resolve().as_uri()


def text_inputs(texts: Sequence[str], what: str = "texts") -> list[MultimodalInput]:
    """Texts as text inputs: a string that happens to name an image file stays text."""
    if isinstance(texts, str):
        raise TypeError(f"{what} must be a list of str, got a single str; wrap it in a list")
    out: list[MultimodalInput] = []
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise TypeError(f"{what}[{i}] must be str, got {type(t).__name__}")
        out.append(MultimodalInput(text=t))
    return out


def image_inputs(uris: Sequence[str | os.PathLike[str]]) -> list[MultimodalInput]:
    """Image file paths or ``file://`` URIs as image inputs."""
    if isinstance(uris, (str, os.PathLike)):
        raise TypeError(
            "uris must be a list of image paths or file:// URIs, got a single value; wrap it in a list"
        )
    out: list[MultimodalInput] = []
    for i, uri in enumerate(uris):
        if not isinstance(uri, (str, os.PathLike)):
            raise TypeError(f"uris[{i}] must be a path or a file:// URI, got {type(uri).__name__}")
        out.append(MultimodalInput(image=uri_to_path(uri)))
    return out


def _image_reference(value: Any) -> Path | None:
    """The path an image-looking metadata value names (by its suffix; the filesystem is not touched)."""
    if not isinstance(value, (str, os.PathLike)):
        return None
    text = os.fspath(value)
    if "\n" in text or "\x00" in text or len(text) > 4096:
        return None
    try:
        path = uri_to_path(text)
    except (TypeError, ValueError):
        return None
    return path if path.suffix.lower() in IMAGE_SUFFIXES else None


def _is_image_file(value: Any) -> bool:
    path = _image_reference(value)
    if path is None:
        return False
    try:
        return path.is_file()
    except OSError:
        return False


def decode_b64_image(text: str) -> bytes | None:
    """The bytes of a base64-encoded image (as ``Chroma.add_images`` stores it), else ``None``."""
    if len(text) < 16 or not text.startswith(_B64_IMAGE_PREFIXES) or any(c.isspace() for c in text[:64]):
        return None
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None


def document_image(
    doc: Document, image_keys: Sequence[str] = DEFAULT_IMAGE_KEYS, policy: PathPolicy | None = None
) -> Path | bytes | None:
    """The image of a document: an image file named in its metadata, or a base64 image page content.

    With a ``policy`` (paths that come from metadata are untrusted) the file is read through it: a path
    outside its folders raises ``umr.confine.PathNotAllowedError``, without saying whether it exists.
    Without one, a metadata path that is not an existing image file is passed over.
    """
    for key in image_keys:
        value = doc.metadata.get(key)
        if policy is not None:
            if _image_reference(value) is not None:
                return policy.read_bytes(value, what=f"metadata[{key!r}] of document {doc.id or ''!s}".rstrip())
        elif _is_image_file(value):
            return uri_to_path(value)
    return decode_b64_image(doc.page_content)


def document_to_input(
    doc: Document,
    mode: str = "auto",
    image_keys: Sequence[str] = DEFAULT_IMAGE_KEYS,
    policy: PathPolicy | None = None,
) -> MultimodalInput:
    """A rerank candidate from a ``Document``.

    ``mode``: ``"auto"`` (the image when the document has one, else its text), ``"image"``, ``"text"``, or
    ``"fused"`` (image and text together; text only when there is no image). ``policy`` confines the image
    files read from metadata (see ``document_image``).
    """
    if mode not in ("auto", "image", "text", "fused"):
        raise ValueError(f"mode must be 'auto', 'image', 'text' or 'fused', got {mode!r}")
    image = None if mode == "text" else document_image(doc, image_keys, policy)
    text = doc.page_content if isinstance(doc.page_content, str) else str(doc.page_content)
    if image is None:
        if mode == "image":
            raise ValueError(
                f"document {doc.id or ''!s} has no image: none of the metadata keys {list(image_keys)} names "
                "an image file and its page_content is not a base64 image; use mode='auto'"
            )
        return MultimodalInput(text=text)
    # a base64 page_content is the image itself (Chroma.add_images): there is no text to fuse
    image_is_content = isinstance(image, bytes) and decode_b64_image(text) is not None
    if image_is_content or mode in ("auto", "image") or not text.strip():
        return MultimodalInput(image=image)
    return MultimodalInput(text=text, image=image)


def query_input(query: Any, image: Any = None) -> MultimodalInput:
    """A query from a string (always text), a dict / image / ``MultimodalInput``, plus an optional image."""
    if isinstance(query, str):
        if image is None:
            return MultimodalInput(text=query)
        return MultimodalInput.coerce({"text": query if query.strip() else None, "image": image})
    mi = MultimodalInput.coerce(query)
    if image is not None:
        if mi.image is not None:
            raise ValueError("the query already has an image; pass image= only with a text query")
        mi = MultimodalInput.coerce({"text": mi.text, "image": image, "instruction": mi.instruction})
    return mi


def as_plain_mapping(value: Any) -> dict[str, Any]:
    """A plain dict copy of a mapping (metadata from stores may be read-only mappings)."""
    return dict(value) if isinstance(value, Mapping) else {}


def known_kwargs(cls: type, data: Any, aliases: Mapping[str, str] | None = None) -> Any:
    """Check the keyword arguments of a pydantic adapter class before validation.

    ``aliases`` maps another accepted spelling to its field (``model_name`` -> ``model``, the LlamaIndex
    spelling); an unknown keyword raises ``TypeError`` naming the valid ones, never silently ignored.
    """
    if not isinstance(data, Mapping):
        return data
    out = dict(data)
    for alias, field in (aliases or {}).items():
        if alias in out:
            value = out.pop(alias)
            if field in out and out[field] != value:
                raise ValueError(f"{field}={out[field]!r} and {alias}={value!r} disagree; pass one")
            out[field] = value
    fields = getattr(cls, "model_fields", {})
    valid = {*fields, *(f.alias for f in fields.values() if getattr(f, "alias", None)), *(aliases or {})}
    reject_unknown(cls.__name__, out, valid)
    return out
