"""Embedder: parity with an independent GME implementation, batching invariance, odd inputs, errors."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

import umr
from umr.errors import InputError, ModelNotFoundError, UnknownRecipeError

from .gme_reference import GMEReference


def _image(w: int, h: int, mode: str = "RGB", seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
    return Image.fromarray(arr, "RGB").convert(mode)


@pytest.fixture(scope="module")
def reference(tiny_model_dir):
    from transformers import AutoTokenizer, Qwen2VLForConditionalGeneration
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    model = Qwen2VLForConditionalGeneration.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    ip = Qwen2VLImageProcessorPil.from_pretrained(tiny_model_dir)
    return GMEReference(model, tok, ip)


CASES = {
    "text": ("what is the total on the invoice?", None),
    "image": (None, (300, 200)),
    "fused": ("a caption for the picture", (1500, 1100)),
    "empty-text": ("", None),
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("side", ["query", "document"])
@pytest.mark.parametrize("instruction", [None, "Find an image that matches the given text."])
def test_matches_independent_gme_reference(tiny_embedder, reference, case, side, instruction):
    text, size = CASES[case]
    img = _image(*size, seed=3) if size else None
    ref = reference.embed([text], [img], is_query=side == "query", instruction=instruction)[0].numpy()
    item = {"text": text, "image": img} if img is not None else text
    got = tiny_embedder.embed([item], side=side, instruction=instruction)[0]
    cos = float(np.dot(ref, got))
    assert cos >= 0.9999, (case, side, instruction, cos)


def test_reference_batch_matches_umr_batch(tiny_embedder, reference):
    texts = ["short", None, "a longer text " * 20, "fused text"]
    imgs = [None, _image(64, 64, seed=1), None, _image(500, 120, seed=2)]
    ref = reference.embed(texts, imgs, is_query=False).numpy()
    items = [t if i is None else ({"image": i} if t is None else {"text": t, "image": i}) for t, i in zip(texts, imgs)]
    got = tiny_embedder.embed_documents(items)
    assert np.min(np.sum(ref * got, axis=1)) >= 0.9999


def test_documents_ignore_instructions_queries_use_them(tiny_embedder):
    q_default = tiny_embedder.embed_queries(["hello"])
    q_instr = tiny_embedder.embed_queries(["hello"], instruction="Retrieve passages.")
    d = tiny_embedder.embed_documents([{"text": "hello", "instruction": "Retrieve passages."}])
    assert np.abs(q_default - d).max() < 1e-6  # corpus side always gets the default instruction
    assert np.abs(q_default - q_instr).max() > 1e-4
    prompt = tiny_embedder.build_prompt({"text": "x", "instruction": "Custom."}, "document")
    assert "You are a helpful assistant." in prompt and "Custom." not in prompt


def test_prompt_is_gme_template_with_image_before_text(tiny_embedder):
    prompt = tiny_embedder.build_prompt({"text": "cat", "image": _image(30, 30)}, "query", "Find it.")
    assert prompt == (
        "<|im_start|>system\nFind it.<|im_end|>\n<|im_start|>user\n"
        "<|vision_start|><|image_pad|><|vision_end|>cat<|im_end|>\n<|im_start|>assistant\n<|endoftext|>"
    )


def test_batch_equals_single_and_order_is_restored(tiny_embedder):
    items = [
        "tiny",
        _image(900, 700, seed=5),
        {"text": "fused " * 30, "image": _image(100, 300, seed=6)},
        "a much longer piece of text " * 40,
        _image(28, 28, seed=7),
        "",
    ]
    batched = tiny_embedder.embed_documents(items, max_batch_tokens=2048, batch_size=3)
    single = np.stack([tiny_embedder.embed_documents([x])[0] for x in items])
    assert batched.shape == (len(items), tiny_embedder.dim)
    assert batched.dtype == np.float32
    assert np.abs(batched - single).max() <= 1e-5
    assert np.allclose(np.linalg.norm(batched, axis=1), 1.0, atol=1e-5)
    # reversing the input reverses the output
    rev = tiny_embedder.embed_documents(items[::-1], max_batch_tokens=2048, batch_size=3)
    assert np.abs(rev[::-1] - batched).max() <= 1e-5


def test_single_input_returns_vector_and_empty_list_returns_empty(tiny_embedder):
    v = tiny_embedder.embed_queries("one query")
    assert v.shape == (tiny_embedder.dim,)
    empty = tiny_embedder.embed_documents([])
    assert empty.shape == (0, tiny_embedder.dim)
    t = tiny_embedder.embed_documents(["a", "b"], convert_to="torch")
    assert isinstance(t, torch.Tensor) and t.shape == (2, tiny_embedder.dim)


@pytest.mark.parametrize(
    "image",
    [
        _image(1, 1),
        _image(10000, 50),
        _image(50, 12000),
        _image(64, 48, "CMYK"),
        _image(64, 48, "RGBA"),
        _image(64, 48, "L"),
        _image(64, 48, "P"),
        _image(64, 48, "I;16"),
        _image(64, 48, "1"),
    ],
    ids=["1x1", "10000x50", "50x12000", "cmyk", "rgba", "gray", "palette", "16bit", "bilevel"],
)
def test_odd_images_embed(tiny_embedder, image):
    v = tiny_embedder.embed_documents([image])
    assert v.shape == (1, tiny_embedder.dim) and np.isfinite(v).all()
    assert abs(float(np.linalg.norm(v)) - 1.0) < 1e-5


def test_huge_text_is_truncated_not_crashing(tiny_embedder):
    huge = "word " * 20000
    v = tiny_embedder.embed_documents([huge, huge + "different tail"])
    # both truncated at 1800 tokens from the right: the tails are cut, so the vectors agree
    assert np.abs(v[0] - v[1]).max() < 1e-6


def test_accepts_paths_uris_bytes_and_dicts(tiny_embedder, tmp_path):
    img = _image(120, 80, seed=9)
    path = tmp_path / "pic.png"
    img.save(path)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    ref = tiny_embedder.embed_documents([img])[0]
    for form in (str(path), path, path.as_uri(), buf.getvalue(), {"image": str(path)}):
        got = tiny_embedder.embed_documents([form])[0]
        assert np.abs(got - ref).max() < 1e-6, form


def test_unreadable_image_names_the_input(tiny_embedder, tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\nthis is not a png")
    with pytest.raises(InputError, match=r"input #1.*broken\.png"):
        tiny_embedder.embed_documents(["fine", {"image": bad}])
    with pytest.raises(InputError, match="not found"):
        tiny_embedder.embed_documents([{"image": tmp_path / "missing.jpg"}])
    with pytest.raises(TypeError, match="accepted"):
        tiny_embedder.embed_documents([3.14])
    with pytest.raises(TypeError, match="accepted"):
        tiny_embedder.embed_documents(12)


def test_decompression_bomb_header_is_rejected(tiny_embedder, tmp_path):
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 10)) + chunk(b"IEND", b"")
    path = tmp_path / "bomb.png"
    path.write_bytes(png)
    with pytest.raises(InputError, match="pixels"):
        tiny_embedder.embed_documents([path])


def test_matryoshka_dim_rejected_for_gme(tiny_model_dir):
    with pytest.raises(ValueError, match="allowed dims"):
        umr.Embedder.from_pretrained(tiny_model_dir, dim=16)


def test_unknown_hub_id_offline_gives_one_clear_error():
    with pytest.raises(UnknownRecipeError, match="recipe=") as info:
        umr.Embedder.from_pretrained("someone/not-a-model")
    assert "gme" in str(info.value)
    with pytest.raises(ModelNotFoundError) as info2:
        umr.Embedder.from_pretrained("Alibaba-NLP/gme-Qwen2-VL-2B-Instruct", device="cpu")
    msg = str(info2.value)
    assert "Alibaba-NLP/gme-Qwen2-VL-2B-Instruct" in msg and "local" in msg and "recipe='gme'" in msg


def test_unknown_recipe_lists_valid_names(tiny_model_dir):
    with pytest.raises(UnknownRecipeError, match="gme"):
        umr.Embedder.from_pretrained(tiny_model_dir, recipe="nope")


def test_local_dir_without_marker_needs_recipe(tiny_model_dir, tmp_path):
    import shutil

    copy = tmp_path / "my-model"
    shutil.copytree(tiny_model_dir, copy)
    (copy / "umr.json").unlink()
    with pytest.raises(UnknownRecipeError, match="recipe="):
        umr.Embedder.from_pretrained(copy)
    emb = umr.Embedder.from_pretrained(copy, recipe="gme")
    assert emb.recipe.name == "gme"
    with pytest.raises(ModelNotFoundError, match=r"config\.json"):
        umr.Embedder.from_pretrained(tmp_path, recipe="gme")


def test_fingerprint_is_content_derived(tiny_model_dir, tiny_embedder, tmp_path):
    import shutil

    copy = tmp_path / tiny_model_dir.name
    shutil.copytree(tiny_model_dir, copy)
    other = umr.Embedder.from_pretrained(copy)
    assert other.fingerprint == tiny_embedder.fingerprint
    smaller = umr.Embedder.from_pretrained(copy, max_pixels=64 * 28 * 28, min_pixels=4 * 28 * 28)
    assert smaller.fingerprint != tiny_embedder.fingerprint


# -- embed_prepared: tokenise once, embed later (umr serve validates each request this way) ------------
def _prepared_inputs() -> list:
    from PIL import Image

    pic = Image.new("RGB", (96, 64), (200, 40, 40))
    return ["a red circle", pic, {"text": "a chart of sales", "image": pic}, "a much longer text " * 20]


@pytest.mark.parametrize("side,instruction", [("document", None), ("query", "Find the page.")])
def test_embed_prepared_equals_embed(tiny_embedder, side: str, instruction: str | None) -> None:
    items = _prepared_inputs()
    expected = tiny_embedder.embed(items, side=side, instruction=instruction)
    prepared = tiny_embedder.prepare_inputs(items, side=side, instruction=instruction)
    got = tiny_embedder.embed_prepared(prepared, max_batch_tokens=64)  # several planned batches
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert got.dtype == np.float32 and got.shape == (len(items), tiny_embedder.dim)


def test_embed_prepared_refuses_raw_inputs(tiny_embedder) -> None:
    with pytest.raises(TypeError, match="prepare_inputs"):
        tiny_embedder.embed_prepared(["raw text"])
    assert tiny_embedder.embed_prepared([]).shape == (0, tiny_embedder.dim)
