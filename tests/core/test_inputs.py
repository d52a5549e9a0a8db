"""MultimodalInput coercion and lazy image handling."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from umr.errors import InputError
from umr.inputs import MultimodalInput, coerce_inputs


@pytest.fixture()
def png(tmp_path: Path) -> Path:
    p = tmp_path / "x.png"
    Image.new("RGB", (40, 30), "red").save(p)
    return p


def test_text_and_image_forms(png: Path) -> None:
    assert MultimodalInput.coerce("hello").modality == "text"
    assert MultimodalInput.coerce(str(png)).image == png
    assert MultimodalInput.coerce(png.as_uri()).image == png
    assert MultimodalInput.coerce(png).modality == "image"
    assert MultimodalInput.coerce(Image.new("L", (2, 2))).modality == "image"
    buf = io.BytesIO()
    Image.new("RGB", (5, 5)).save(buf, format="PNG")
    assert MultimodalInput.coerce(buf.getvalue()).image_size() == (5, 5)
    fused = MultimodalInput.coerce({"text": "cap", "image": str(png), "instruction": "Find."})
    assert fused.modality == "fused" and fused.instruction == "Find." and fused.image_size() == (40, 30)


def test_text_that_merely_looks_like_a_path_stays_text(tmp_path: Path) -> None:
    assert MultimodalInput.coerce(str(tmp_path / "missing.png")).modality == "text"
    assert MultimodalInput.coerce("report.pdf is attached").modality == "text"


def test_wrong_types_name_what_is_accepted() -> None:
    for bad in (3, 2.5, None, object()):
        with pytest.raises(TypeError, match="accepted"):
            MultimodalInput.coerce(bad)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="unknown key"):
        MultimodalInput.coerce({"txt": "typo"})
    with pytest.raises(TypeError, match="input #1"):
        coerce_inputs(["ok", 5])
    with pytest.raises(InputError, match="neither"):
        MultimodalInput.coerce({})


def test_single_values_are_not_iterated(png: Path) -> None:
    assert len(coerce_inputs("abc")) == 1
    assert len(coerce_inputs(png)) == 1
    assert len(coerce_inputs({"text": "a"})) == 1
    assert len(coerce_inputs(["a", "b", "c"])) == 3
    assert coerce_inputs([]) == []


def test_image_errors_name_the_input(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a jpeg")
    with pytest.raises(InputError, match=r"bad\.jpg"):
        MultimodalInput(image=bad).load_image()
    with pytest.raises(InputError, match="not a regular file"):
        MultimodalInput(image=tmp_path).image_size()
