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


def test_a_large_image_gives_no_pil_warning_on_stderr_but_a_log_notice(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import logging
    import warnings

    from umr.inputs import MAX_IMAGE_PIXELS

    big = tmp_path / "big.png"
    Image.new("1", (10_000, 9_500)).save(big)  # 95 Mpx: over PIL's warning threshold, under umr's limit
    assert Image.MAX_IMAGE_PIXELS is not None and Image.MAX_IMAGE_PIXELS < 95_000_000 < MAX_IMAGE_PIXELS
    with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.INFO, logger="umr.inputs"):
        warnings.simplefilter("always")
        item = MultimodalInput(image=big)
        assert item.image_size() == (10_000, 9_500)
    assert not [w for w in caught if issubclass(w.category, Image.DecompressionBombWarning)]
    assert any("large image" in r.getMessage() and str(big) in r.getMessage() for r in caplog.records)
    # over umr's own limit: an error naming the file, still no PIL warning
    huge = tmp_path / "huge.png"
    Image.new("1", (15_000, 12_500)).save(huge)  # 187.5 Mpx
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(InputError, match=r"huge\.png.*too many pixels.*downscale it first"):
            MultimodalInput(image=huge).image_size()
    assert not [w for w in caught if issubclass(w.category, Image.DecompressionBombWarning)]
