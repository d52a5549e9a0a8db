"""Per-recipe alpha handling: RGBA, LA and palette-with-transparency images through every recipe give the
pixel tensors of that recipe's reference conversion.

The references are written out here, independently of umr's ``to_rgb``:

- ``drop``: ``img.convert("RGB")`` (GME's ``fetch_image``, 2024 qwen-vl-utils copies in DSE / U-MARVEL /
  the zero-shot judges, transformers 4 ``convert_to_rgb`` behind MonoQwen2-VL and MM-Embed);
- ``white-rgba``: qwen-vl-utils' current ``to_rgb`` (Qwen3-VL-Embedding / -Reranker): an RGBA image is
  pasted on white with its alpha band as the mask, every other mode is ``convert("RGB")``;
- ``white-any``: transformers 5 ``image_transforms.convert_to_rgb`` itself (no recipe uses it today).

Each recipe's processor gets the transparent image; its reference gets the already converted RGB image
through the same processor. The patch tensors must be equal, and the modes must really differ on these
images (so the comparison can fail).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import umr
from umr.engines.own_code import OwnCodeEmbedEngine
from umr.inputs import MultimodalInput
from umr.recipes import EMBED_RECIPES, RERANK_RECIPES

#: each recipe's reference conversion (facts from the references named in recipes.py)
EXPECTED = {
    "gme": "drop",
    "u-marvel": "drop",
    "u-marvel-mbeir-eval": "drop",
    "dse": "drop",
    "qwen3-vl-embedding": "white-rgba",
    "mm-embed": "drop",
    "qwen-vl-yesno": "drop",
    "qwen-vl-yesno-u-marvel": "drop",
    "monoqwen2-vl": "drop",
    "qwen3-vl-reranker": "white-rgba",
}


def ref_drop(img: Image.Image) -> Image.Image:
    return img.convert("RGB")


def ref_qwen_vl_utils(img: Image.Image) -> Image.Image:
    if img.mode == "RGBA":
        out = Image.new("RGB", img.size, (255, 255, 255))
        out.paste(img, mask=img.split()[3])
        return out
    return img.convert("RGB")


def ref_transformers5(img: Image.Image) -> Image.Image:
    from transformers.image_transforms import convert_to_rgb

    return Image.fromarray(convert_to_rgb(img, return_numpy=True))


REFERENCES = {"drop": ref_drop, "white-rgba": ref_qwen_vl_utils, "white-any": ref_transformers5}


def _images() -> dict[str, Image.Image]:
    rng = np.random.default_rng(7)
    w, h = 90, 60
    rgb = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
    alpha = rng.integers(0, 256, size=(h, w), dtype=np.uint8)
    alpha[:, :15] = 0  # fully transparent strip: the colour underneath is random, not white
    alpha[:, -15:] = 255
    rgba = Image.fromarray(np.dstack([rgb, alpha]), "RGBA")
    la = Image.fromarray(np.dstack([rgb[..., 0], alpha]), "LA")
    pal = Image.fromarray(rng.integers(0, 16, size=(h, w), dtype=np.uint8), "P")
    pal.putpalette([int(v) for v in rng.integers(0, 256, size=16 * 3)])
    pal.info["transparency"] = 3  # palette index 3 is transparent
    return {"RGBA": rgba, "LA": la, "P+transparency": pal}


IMAGES = _images()


def _parts(tiny_model_dir, recipe):
    """The tiny GME model's tokenizer and an image processor with the recipe's patch size."""
    from transformers import AutoTokenizer
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    patch = 16 if recipe.backbone == "qwen3_vl" else 14
    ip = Qwen2VLImageProcessorPil(patch_size=patch, merge_size=2, temporal_patch_size=2)
    return AutoTokenizer.from_pretrained(tiny_model_dir), ip


@pytest.fixture(scope="module")
def gme_model(tiny_model_dir):
    from transformers import AutoModel

    return AutoModel.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()


@pytest.fixture(scope="module")
def rerank_model(tiny_reranker_dir):
    from transformers import AutoModelForImageTextToText

    return AutoModelForImageTextToText.from_pretrained(tiny_reranker_dir, dtype=torch.float32).eval()


def test_every_recipe_names_its_reference_alpha():
    assert {n: r.alpha for n, r in {**EMBED_RECIPES, **RERANK_RECIPES}.items()} == EXPECTED


def test_references_differ_on_these_images():
    """The three conversions really disagree (else the per-recipe checks below could not fail)."""
    for name, img in IMAGES.items():
        drop = np.asarray(ref_drop(img), dtype=np.int16)
        anyw = np.asarray(ref_transformers5(img), dtype=np.int16)
        assert np.abs(drop - anyw).max() > 50, name
    rgba = IMAGES["RGBA"]
    assert np.abs(np.asarray(ref_drop(rgba), np.int16) - np.asarray(ref_qwen_vl_utils(rgba), np.int16)).max() > 50
    # qwen-vl-utils composites RGBA only: LA and palette images are a plain convert
    for name in ("LA", "P+transparency"):
        assert np.array_equal(np.asarray(ref_drop(IMAGES[name])), np.asarray(ref_qwen_vl_utils(IMAGES[name])))


def _patches(processor, image: Image.Image) -> np.ndarray:
    item = MultimodalInput(image=image)
    geometry = processor.geometry(*image.size)
    return processor.encode_image(item, geometry, "input #0").patches


@pytest.mark.parametrize("name", sorted(n for n, r in EMBED_RECIPES.items() if r.engine == "native"))
def test_native_embedding_recipes_match_their_reference(name, tiny_model_dir, gme_model):
    recipe = EMBED_RECIPES[name]
    tok, ip = _parts(tiny_model_dir, recipe)
    emb = umr.Embedder(gme_model, tok, ip, recipe, model_id="tiny", device=torch.device("cpu"), dtype=torch.float32)
    reference = REFERENCES[EXPECTED[name]]
    others = [m for m in REFERENCES if m != EXPECTED[name]]
    for label, img in IMAGES.items():
        got = _patches(emb.processor, img)
        np.testing.assert_array_equal(got, _patches(emb.processor, reference(img)), err_msg=f"{name} {label}")
        # and not another reference's (where that one converts this image differently)
        for other in others:
            alt = REFERENCES[other](img)
            if not np.array_equal(np.asarray(alt), np.asarray(reference(img))):
                assert not np.array_equal(got, _patches(emb.processor, alt)), (name, label, other)


@pytest.mark.parametrize("name", sorted(RERANK_RECIPES))
def test_rerank_recipes_match_their_reference(name, tiny_model_dir, rerank_model):
    recipe = RERANK_RECIPES[name]
    tok, ip = _parts(tiny_model_dir, recipe)
    rr = umr.Reranker(rerank_model, tok, ip, recipe, model_id="tiny", device=torch.device("cpu"), dtype=torch.float32)
    reference = REFERENCES[EXPECTED[name]]
    for label, img in IMAGES.items():
        np.testing.assert_array_equal(
            _patches(rr.processor, img), _patches(rr.processor, reference(img)), err_msg=f"{name} {label}"
        )


def test_own_code_recipe_hands_its_encode_the_reference_rgb():
    recipe = EMBED_RECIPES["mm-embed"]
    engine = OwnCodeEmbedEngine(
        None, None, None, recipe, device=torch.device("cpu"), dtype=torch.float32,
        min_pixels=recipe.min_pixels, max_pixels=recipe.max_pixels,
    )
    reference = REFERENCES[EXPECTED["mm-embed"]]
    for label, img in IMAGES.items():
        got = engine._input(MultimodalInput(text="t", image=img))
        assert got["txt"] == "t" and got["img"].mode == "RGB"
        np.testing.assert_array_equal(np.asarray(got["img"]), np.asarray(reference(img)), err_msg=label)


def test_qwen3_vl_vectors_of_rgba_images_follow_the_white_background(tmp_path):
    """End to end on a tiny Qwen3-VL model: an RGBA image embeds like its white-composited RGB copy."""
    from umr.testing import build_tiny_model

    path = build_tiny_model(tmp_path / "q3", recipe="qwen3-vl-embedding", seed=2)
    emb = umr.Embedder.from_pretrained(path, device="cpu")
    rgba = IMAGES["RGBA"]
    got = emb.embed_documents([rgba, ref_qwen_vl_utils(rgba), ref_drop(rgba)])
    assert float(got[0] @ got[1]) > 0.99999
    assert float(got[0] @ got[2]) < 0.9999  # dropping alpha would give another vector
