"""Type translation between LlamaIndex objects and ``umr`` inputs. No model logic here.

LlamaIndex hands images around as ``ImageType`` (a path ``str`` or a ``BytesIO``) and as ``ImageNode``
fields (base64 ``image``, ``image_path``, ``image_url``); ``umr`` wants a ``MultimodalInput``. Text is
always wrapped explicitly as text, so a chunk that happens to name an existing ``.png`` file is never
embedded as that picture.
"""

from __future__ import annotations

import base64
import binascii
import os
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from llama_index.core.schema import BaseNode, ImageNode, MetadataMode

from umr.confine import PathPolicy
from umr.errors import InputError
from umr.inputs import MultimodalInput

_REMOTE_SCHEMES = ("http", "https", "s3", "gs", "ftp")


def _decode_base64(data: str, what: str) -> bytes:
    if data.startswith("data:"):
        _, _, data = data.partition(",")
    try:
        return base64.b64decode(data, validate=False)
    except (binascii.Error, ValueError) as exc:
        raise InputError(f"{what} is not valid base64 image data ({exc}); store the encoded image bytes") from exc


def image_from_location(value: str | os.PathLike, what: str = "image") -> Path | bytes:
    """A local path, a ``file://`` URI or a ``data:`` URI as something ``MultimodalInput`` accepts.

    Remote URLs are refused: ``umr`` never downloads anything on its own.
    """
    text = os.fspath(value)
    if text.startswith("data:"):
        return _decode_base64(text, what)
    parsed = urlparse(text)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))
    if parsed.scheme.lower() in _REMOTE_SCHEMES:
        raise InputError(
            f"{what} {text!r} is a remote URL; umr does not download images. Download it first and pass "
            "the local path (or a BytesIO)."
        )
    return Path(text)


def image_input(image: Any, what: str = "image") -> MultimodalInput:
    """Turn a LlamaIndex ``ImageType`` (path ``str`` / ``BytesIO``) or bytes / PIL image into an input."""
    if isinstance(image, MultimodalInput):
        return image
    if isinstance(image, (str, os.PathLike)):
        return MultimodalInput(image=image_from_location(image, what))
    if isinstance(image, (bytes, bytearray, memoryview)):
        return MultimodalInput(image=bytes(image))
    getvalue = getattr(image, "getvalue", None)
    if callable(getvalue):  # BytesIO: the whole buffer, wherever its cursor is
        return MultimodalInput(image=bytes(getvalue()))
    read = getattr(image, "read", None)
    if callable(read):
        return MultimodalInput(image=bytes(read()))
    if hasattr(image, "size") and hasattr(image, "mode"):  # PIL image
        return MultimodalInput(image=image)
    raise TypeError(
        f"cannot use {type(image).__name__} as {what}; pass a file path, a file:// URI, a BytesIO, bytes "
        "or a PIL image"
    )


def text_input(text: str, what: str = "text") -> MultimodalInput:
    """Text as text (never sniffed as a file path)."""
    if not isinstance(text, str):
        raise TypeError(f"{what} must be str, got {type(text).__name__}")
    return MultimodalInput(text=text)


def node_image(node: BaseNode, policy: PathPolicy | None = None) -> Path | bytes | None:
    """The image of an ``ImageNode`` (base64 ``image``, ``image_path``, or a local ``image_url``).

    Returns ``None`` for nodes without an image. Raises ``InputError`` naming the node when the only image
    it has is a remote URL. With a ``policy`` (node paths are untrusted, e.g. in a postprocessor), a local
    file is read through it: outside its folders ``umr.confine.PathNotAllowedError`` is raised.
    """
    if not isinstance(node, ImageNode):
        return None
    what = f"image of node {node.node_id!r}"
    if node.image:
        return _decode_base64(node.image, what)
    location = node.image_path or node.image_url
    if not location:
        return None
    image = image_from_location(location, what)
    if isinstance(image, Path) and policy is not None:
        return policy.read_bytes(image, what)
    if isinstance(image, Path) and not image.is_file():
        raise InputError(f"{what}: {os.fsdecode(image)!r} is not a readable file; fix image_path / image_url")
    return image


def node_input(
    node: BaseNode, include_image_text: bool = False, policy: PathPolicy | None = None
) -> MultimodalInput:
    """A node as a rerank candidate: its image (plus its text if asked) for image nodes, else its text."""
    text = node.get_content(metadata_mode=MetadataMode.NONE)
    image = node_image(node, policy)
    if image is None:
        return MultimodalInput(text=text)
    if include_image_text and text.strip():
        return MultimodalInput(text=text, image=image)
    return MultimodalInput(image=image)
