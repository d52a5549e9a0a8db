"""Request inputs to ``umr.MultimodalInput``: text, data-URI images, file URLs under allowed folders.

Every image is checked and decoded here, in the request's own thread, before it can join a pooled
batch: a header over the pixel limit, an undecodable or truncated image, a URL the operator did not allow,
each is a 400 naming the field, and none of them can fail another client's request.
"""

from __future__ import annotations

import base64
import binascii
import io
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from PIL import Image, ImageFile

from umr.errors import InputError
from umr.inputs import MultimodalInput, path_from_uri

from .errors import ApiError

#: the most characters of text one input may carry (tokenisation cuts long text anyway)
MAX_TEXT_CHARS = 200_000


def decode_image_bytes(data: bytes, field: str, max_pixels: int) -> Image.Image:
    """Decode encoded image bytes, refusing a header of more than ``max_pixels`` before decoding."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            img = Image.open(io.BytesIO(data))
            w, h = img.size
        except Image.DecompressionBombError as exc:
            raise ApiError(400, f"image has too many pixels ({exc})", field) from None
        except (OSError, ValueError, SyntaxError) as exc:
            raise ApiError(400, f"not a readable image ({exc}); send PNG, JPEG, WebP, GIF, BMP or TIFF", field) from None
        if w <= 0 or h <= 0:
            raise ApiError(400, f"image has an empty size {w}x{h}", field)
        if w * h > max_pixels:
            raise ApiError(
                400, f"image is {w}x{h} = {w * h} pixels, over this server's limit of {max_pixels}; downscale it",
                field,
            )
        try:
            ImageFile.LOAD_TRUNCATED_IMAGES = False
            img.load()
        except Image.DecompressionBombError as exc:
            raise ApiError(400, f"image has too many pixels ({exc})", field) from None
        except (OSError, ValueError, SyntaxError, EOFError) as exc:
            raise ApiError(400, f"cannot decode the image ({exc}); it may be truncated", field) from None
    return img


def parse_data_uri(url: str, field: str) -> bytes:
    head, sep, payload = url.partition(",")
    if not sep:
        raise ApiError(400, "a data URI needs a comma before its payload (data:image/png;base64,...)", field)
    if not head.lower().startswith("data:image/"):
        raise ApiError(400, f"data URI of type {head[5:40]!r} is not an image", field)
    if not head.lower().endswith(";base64"):
        raise ApiError(400, "only base64 data URIs are accepted (data:image/png;base64,...)", field)
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(400, "the data URI's payload is not valid base64", field) from None


def allowed_file(url: str, field: str, allowed: Sequence[Path]) -> Path:
    """The resolved path of a ``file://`` URL, only if it lies inside one of the ``allowed`` folders."""
    if not allowed:
        raise ApiError(
            400, "file URLs are not allowed on this server (the operator allows folders with --allow-media-dir); "
            "send the image as a data URI", field,
        )
    try:
        path = path_from_uri(url)
    except (InputError, TypeError) as exc:
        raise ApiError(400, str(exc), field) from None
    if not path.is_absolute():
        raise ApiError(400, "a file URL must name an absolute path", field)
    try:
        real = Path(os.path.realpath(path))
    except (OSError, ValueError) as exc:
        raise ApiError(400, f"cannot resolve the path ({exc})", field) from None
    if not any(real == root or root in real.parents for root in allowed):
        raise ApiError(403, "the file is outside the folders this server may read", field)
    if not real.is_file():
        raise ApiError(400, "no such image file (or not a regular file)", field)
    return real


def load_image_ref(value: Any, field: str, *, max_pixels: int, allowed: Sequence[Path]) -> Image.Image:
    """An image given as a data URI or an allowed ``file://`` URL, decoded."""
    if isinstance(value, Mapping):  # OpenAI {"url": ...}
        if "url" not in value:
            raise ApiError(400, "image_url needs a 'url'", field)
        field = f"{field}.url"
        value = value["url"]
    if not isinstance(value, str) or not value:
        raise ApiError(400, "an image must be a data: URI or a file:// URL string", field)
    if value.startswith("data:"):
        return decode_image_bytes(parse_data_uri(value, field), field, max_pixels)
    if value.startswith("file:") or value.startswith("/"):
        path = allowed_file(value, field, allowed)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ApiError(400, f"cannot read the file ({exc.strerror})", field) from None
        return decode_image_bytes(data, field, max_pixels)
    if value.startswith(("http://", "https://")):
        raise ApiError(400, "remote image URLs are not fetched by this server; send a data URI", field)
    raise ApiError(400, "an image must be a data: URI or a file:// URL", field)


def _text(value: Any, field: str) -> str:
    if not isinstance(value, str):
        raise ApiError(400, f"text must be a string, got {type(value).__name__}", field)
    if len(value) > MAX_TEXT_CHARS:
        raise ApiError(400, f"text of {len(value)} characters is over the {MAX_TEXT_CHARS}-character limit", field)
    return value


def _instruction(value: Any, field: str) -> str | None:
    if value is None:
        return None
    return _text(value, field)


def parse_input(value: Any, field: str, *, max_pixels: int, allowed: Sequence[Path]) -> MultimodalInput:
    """One input of an embeddings / rerank request.

    Accepted: a string (always text, never read as a path); an OpenAI content part
    (``{"type": "text", "text"}`` or ``{"type": "image_url", "image_url": {"url"}}``); a list of content
    parts (one fused input: texts joined by a newline, at most one image); a UMR dict
    ``{"text", "image", "instruction"}``; Jina / vLLM ``{"content": [parts]}``.
    """
    image: Image.Image | None = None
    texts: list[str] = []
    instruction: str | None = None
    if isinstance(value, str):
        return MultimodalInput(text=_text(value, field))
    if isinstance(value, Mapping) and "content" in value and "type" not in value:
        extra = set(value) - {"content", "role"}
        if extra:
            raise ApiError(400, f"unknown key(s) {sorted(extra)}; a content input has only 'content'", field)
        field = f"{field}.content"
        value = value["content"]
        if isinstance(value, str):
            return MultimodalInput(text=_text(value, field))
    if isinstance(value, Mapping) and "type" not in value:
        unknown = set(value) - {"text", "image", "image_url", "instruction"}
        if unknown:
            raise ApiError(
                400, f"unknown key(s) {sorted(unknown)}; use 'text', 'image' (data URI or file URL), 'instruction'",
                field,
            )
        if "image" in value and "image_url" in value:
            raise ApiError(400, "give 'image' or 'image_url', not both", field)
        if value.get("text") is not None:
            texts.append(_text(value["text"], f"{field}.text"))
        key = "image" if "image" in value else "image_url"
        if value.get(key) is not None:
            image = load_image_ref(value[key], f"{field}.{key}", max_pixels=max_pixels, allowed=allowed)
        instruction = _instruction(value.get("instruction"), f"{field}.instruction")
    else:
        parts = [value] if isinstance(value, Mapping) else value
        if not isinstance(parts, list) or not parts:
            raise ApiError(
                400, "an input is a string, a content part, a non-empty list of content parts, or "
                '{"text", "image"}', field,
            )
        if all(isinstance(p, int) and not isinstance(p, bool) for p in parts):
            raise ApiError(400, "token ids are not accepted; send text", field)
        for j, part in enumerate(parts):
            pf = f"{field}[{j}]" if not isinstance(value, Mapping) else field
            if not isinstance(part, Mapping) or not isinstance(part.get("type"), str):
                raise ApiError(400, "a content part is an object with a 'type' ('text' or 'image_url')", pf)
            kind = part["type"]
            if kind == "text":
                texts.append(_text(part.get("text"), f"{pf}.text"))
            elif kind in ("image_url", "image"):
                if image is not None:
                    raise ApiError(400, "one input holds at most one image", pf)
                ref = part.get(kind)
                image = load_image_ref(ref, f"{pf}.{kind}", max_pixels=max_pixels, allowed=allowed)
            else:
                raise ApiError(400, f"unknown content part type {kind!r}; use 'text' or 'image_url'", f"{pf}.type")
    text = "\n".join(texts) if texts else None
    if text is None and image is None:
        raise ApiError(400, "an input needs text, an image, or both", field)
    return MultimodalInput(text=text, image=image, instruction=instruction)


def parse_inputs(
    value: Any, field: str, *, max_pixels: int, allowed: Sequence[Path], max_inputs: int
) -> list[MultimodalInput]:
    """The ``input`` of an embeddings request: one input or a list of inputs."""
    if isinstance(value, str):
        return [parse_input(value, field, max_pixels=max_pixels, allowed=allowed)]
    if isinstance(value, Mapping):
        return [parse_input(value, field, max_pixels=max_pixels, allowed=allowed)]
    if not isinstance(value, list):
        raise ApiError(400, "input must be a string or a list", field)
    if not value:
        raise ApiError(400, "input must not be empty", field)
    if all(isinstance(p, int) and not isinstance(p, bool) for p in value):
        raise ApiError(400, "token ids are not accepted; send text", field)
    # a list of content parts is one input per part; a list of lists of parts is one fused input per list
    if len(value) > max_inputs:
        raise ApiError(400, f"{len(value)} inputs is over this server's limit of {max_inputs} per request", field)
    return [parse_input(v, f"{field}[{i}]", max_pixels=max_pixels, allowed=allowed) for i, v in enumerate(value)]
