"""One input type for text, image, or both (fused), plus an optional instruction.

``MultimodalInput.coerce`` accepts what users naturally have at hand:

* ``str`` — text; a ``file://`` URI or an existing image file path becomes an image;
* ``pathlib.Path`` — an image file;
* ``PIL.Image.Image`` — an image;
* ``bytes`` / ``bytearray`` — encoded image bytes (PNG, JPEG, ...);
* ``dict`` with ``"text"`` and/or ``"image"`` (and optional ``"instruction"``) — fused input;
* ``MultimodalInput`` — returned as is.

Images are opened lazily: coercing a path does not decode it, and ``image_size`` reads only the header,
so the cost of a batch can be planned before any pixel is decoded.
"""

from __future__ import annotations

import io
import logging
import os
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union
from urllib.parse import unquote, urlparse

from PIL import Image, ImageFile

from umr.errors import InputError

logger = logging.getLogger(__name__)


def open_image(src: Any, **kwargs: Any) -> Image.Image:
    """``PIL.Image.open(src)`` without PIL's ``DecompressionBombWarning`` on stderr: umr checks the
    pixel count itself (``MAX_IMAGE_PIXELS``) and refuses an image over it with an error naming the
    file; an image over PIL's lower warning threshold but within umr's limit is noted in the log."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", Image.DecompressionBombWarning)
        image = Image.open(src, **kwargs)
    for w in caught:
        if issubclass(w.category, Image.DecompressionBombWarning):
            name = os.fsdecode(src) if isinstance(src, (str, bytes, os.PathLike)) else "an image"
            logger.info("large image %s: %s", name, w.message)
        else:  # not ours to swallow
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return image

ImageLike = Union[Image.Image, str, os.PathLike, bytes, bytearray]  # noqa: UP007
InputLike = Union["MultimodalInput", str, os.PathLike, Image.Image, bytes, bytearray, Mapping[str, Any]]

ACCEPTED = (
    "str (text, an image file path or a file:// URI), pathlib.Path (image file), PIL.Image.Image, "
    'bytes (encoded image), dict {"text": ..., "image": ..., "instruction": ...}, or umr.MultimodalInput'
)
_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".ppm", ".pgm", ".pbm"}
# Text longer than this is never mistaken for a path.
_MAX_PATH_LEN = 4096
# Refuse images whose header claims more pixels than this (decompression bombs).
MAX_IMAGE_PIXELS = 180_000_000


def path_from_uri(value: str | os.PathLike) -> Path:
    """The one parser of local image references: a ``file://`` URI (percent-decoded) or a plain path.

    ``file:///tmp/my%20pages/p1.png`` and ``/tmp/my pages/p1.png`` give the same ``Path``. A URI with
    another scheme (``http://``, ``data:``) is refused with ``InputError``: only local files are read.
    Undecodable bytes in a percent-encoded name come back as surrogate escapes (``os.fsencode`` restores
    them), so every name a filesystem can hold round-trips through ``path_to_uri``.
    """
    if isinstance(value, os.PathLike):
        return Path(os.fspath(value))
    if not isinstance(value, str):
        raise TypeError(f"expected a path or a file:// URI, got {type(value).__name__}")
    if value.startswith("file:"):
        parsed = urlparse(value)
        if parsed.netloc not in ("", "localhost"):
            raise InputError(f"file URI {value!r} names host {parsed.netloc!r}; only local files are read")
        return Path(unquote(parsed.path, errors="surrogateescape"))
    scheme = urlparse(value).scheme
    if len(scheme) > 1 and "://" in value:  # "C:\x" has a one-letter scheme: a Windows path, not a URI
        raise InputError(f"{value[:80]!r} is a {scheme}:// URL; pass a local path or a file:// URI")
    return Path(value)


def path_to_uri(path: str | os.PathLike) -> str:
    """The ``file://`` URI of a local path (made absolute), percent-encoded; inverse of ``path_from_uri``."""
    return Path(os.path.abspath(os.fspath(path))).as_uri()


#: what a caller may pass as ONE input (everything else iterable is a sequence of inputs)
SINGLE_INPUT_TYPES: tuple[type, ...] = (str, bytes, bytearray, Mapping, os.PathLike)


def is_single_input(value: Any) -> bool:
    """True for one input (text, path, bytes, dict, ``MultimodalInput``, PIL image), False for a sequence."""
    return isinstance(value, (*SINGLE_INPUT_TYPES, MultimodalInput, Image.Image))


def _uri_to_path(uri: str) -> Path:  # kept for callers of the old private name
    return path_from_uri(uri)


def _looks_like_image_path(text: str) -> bool:
    if len(text) > _MAX_PATH_LEN or "\n" in text or "\x00" in text:
        return False
    if text.startswith("file://"):
        return True
    if Path(text).suffix.lower() not in _IMAGE_SUFFIXES:
        return False
    try:
        return Path(text).is_file()
    except OSError:
        return False


@dataclass(frozen=True, eq=False)
class MultimodalInput:
    """A query or document: text, an image, or both, with an optional instruction.

    ``image`` is a ``PIL.Image.Image``, a filesystem path, or encoded image ``bytes``; it is decoded only
    when ``load_image`` is called.
    """

    text: str | None = None
    image: Image.Image | Path | bytes | None = None
    instruction: str | None = None

    def __post_init__(self) -> None:
        if self.text is None and self.image is None:
            raise InputError("an input needs text, an image, or both; got neither")
        if self.text is not None and not isinstance(self.text, str):
            raise TypeError(f"MultimodalInput.text must be str, got {type(self.text).__name__}")
        if self.instruction is not None and not isinstance(self.instruction, str):
            raise TypeError(f"MultimodalInput.instruction must be str, got {type(self.instruction).__name__}")
        if self.image is not None and not isinstance(self.image, (Image.Image, Path, bytes)):
            raise TypeError(
                f"MultimodalInput.image must be a PIL image, a Path or bytes, got {type(self.image).__name__}"
            )

    # -- construction -------------------------------------------------------------------------------
    @classmethod
    def coerce(cls, value: InputLike) -> MultimodalInput:
        """Turn any accepted value into a ``MultimodalInput``; ``TypeError`` names what is accepted."""
        if isinstance(value, MultimodalInput):
            return value
        if isinstance(value, str):
            if _looks_like_image_path(value):
                path = path_from_uri(value)
                return cls(image=path)
            return cls(text=value)
        if isinstance(value, os.PathLike):
            return cls(image=Path(os.fspath(value)))
        if isinstance(value, Image.Image):
            return cls(image=value)
        if isinstance(value, (bytes, bytearray)):
            return cls(image=bytes(value))
        if isinstance(value, Mapping):
            unknown = set(value) - {"text", "image", "instruction"}
            if unknown:
                raise TypeError(
                    f"unknown key(s) {sorted(unknown)} in input dict; use 'text', 'image' and 'instruction'"
                )
            text = value.get("text")
            image = value.get("image")
            if text is not None and not isinstance(text, str):
                raise TypeError(f"input dict 'text' must be str, got {type(text).__name__}")
            return cls(text=text, image=cls._coerce_image(image), instruction=value.get("instruction"))
        raise TypeError(f"cannot use {type(value).__name__} as a umr input; accepted: {ACCEPTED}")

    @staticmethod
    def _coerce_image(image: Any) -> Image.Image | Path | bytes | None:
        if image is None or isinstance(image, (Image.Image, bytes)):
            return image
        if isinstance(image, bytearray):
            return bytes(image)
        if isinstance(image, str):
            return path_from_uri(image)
        if isinstance(image, os.PathLike):
            return Path(os.fspath(image))
        raise TypeError(
            f"cannot use {type(image).__name__} as an image; accepted: PIL.Image.Image, a path, "
            "a file:// URI, or encoded image bytes"
        )

    # -- properties ---------------------------------------------------------------------------------
    @property
    def modality(self) -> str:
        """``"text"``, ``"image"`` or ``"fused"``."""
        if self.image is None:
            return "text"
        return "image" if self.text is None else "fused"

    def describe(self) -> str:
        """Short human description used in error messages."""
        if isinstance(self.image, Path):
            img = f"image {os.fsdecode(self.image)!r}"
        elif isinstance(self.image, bytes):
            img = f"image bytes ({len(self.image)} B)"
        elif isinstance(self.image, Image.Image):
            img = f"PIL image {self.image.size[0]}x{self.image.size[1]} {self.image.mode}"
        else:
            img = ""
        txt = "" if self.text is None else f"text {self.text[:40]!r}{'...' if len(self.text) > 40 else ''}"
        return " + ".join(p for p in (img, txt) if p)

    def _open(self) -> Image.Image:
        assert self.image is not None
        if isinstance(self.image, Image.Image):
            return self.image
        try:
            if isinstance(self.image, bytes):
                return open_image(io.BytesIO(self.image))
            path = self.image
            if not path.exists():
                raise InputError(f"image file not found: {os.fsdecode(path)!r}; check the path")
            if not path.is_file():
                raise InputError(f"{os.fsdecode(path)!r} is not a regular file; pass an image file")
            return open_image(path)
        except InputError:
            raise
        except Image.DecompressionBombError as exc:
            raise InputError(f"{self.describe()}: too many pixels ({exc}); downscale it first") from exc
        except (OSError, ValueError, SyntaxError) as exc:
            raise InputError(
                f"cannot read {self.describe()}: {exc}; pass a PNG/JPEG/WebP/TIFF/BMP/GIF image"
            ) from exc

    def image_size(self) -> tuple[int, int]:
        """(width, height) of the image, read from the header only."""
        img = self._open()
        w, h = img.size
        if w <= 0 or h <= 0:
            raise InputError(f"{self.describe()} has an empty size {w}x{h}")
        if w * h > MAX_IMAGE_PIXELS:
            raise InputError(
                f"{self.describe()} is {w}x{h} = {w * h} pixels, over the {MAX_IMAGE_PIXELS} pixel limit "
                "(decompression-bomb guard); downscale it first"
            )
        return w, h

    def load_image(self) -> Image.Image:
        """Decode the image fully (raises ``InputError`` naming the input if it cannot be read)."""
        self.image_size()
        img = self._open()
        try:
            ImageFile.LOAD_TRUNCATED_IMAGES = False
            img.load()
        except (OSError, ValueError, SyntaxError) as exc:
            raise InputError(f"cannot decode {self.describe()}: {exc}; the file may be truncated") from exc
        return img


def coerce_inputs(inputs: InputLike | Iterable[InputLike]) -> list[MultimodalInput]:
    """Coerce one input or a sequence of inputs into a list of ``MultimodalInput``.

    A single ``str`` / image / dict is treated as one input, never as a sequence of characters.
    """
    if is_single_input(inputs):
        return [MultimodalInput.coerce(inputs)]  # type: ignore[arg-type]
    if not isinstance(inputs, Iterable):
        raise TypeError(f"cannot use {type(inputs).__name__} as umr inputs; accepted: {ACCEPTED}, or a list")
    out: list[MultimodalInput] = []
    for i, item in enumerate(inputs):
        try:
            out.append(MultimodalInput.coerce(item))
        except TypeError as exc:
            raise TypeError(f"input #{i}: {exc}") from None
    return out
