"""Every recipe against its independent reference (tests/core/references/, docs/recipes.md).

Tiny random-weight checkouts of each recipe, the recipe's default options, and the inputs that decide a
vector or a score: text, an RGB image, an RGBA image with real transparency, a large page, fused text +
image and instructed queries. Embeddings: cosine >= 0.9999; scores: difference <= 1e-4. The A4 pages
(thousands of visual tokens even on a tiny model) run in the ``slow`` tests at the end.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import umr
from umr.testing import build_tiny_model

from .gme_reference import GMEReference
from .references.dse import DSEReference
from .references.qwen2_rerankers import MonoQwenReference, ZeroShotReference
from .references.qwen3_vl import Qwen3VLEmbeddingReference, Qwen3VLRerankerReference
from .references.u_marvel import UMarvelReference

INSTRUCTION = "Find an image that matches the given text."


def _rgb(w: int, h: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8), "RGB")


def _rgba(w: int, h: int, seed: int) -> Image.Image:
    """Random colours under a random alpha (fully transparent, partial and opaque pixels)."""
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 256, size=(h, w, 4), dtype=np.uint8)
    arr[: h // 3, :, 3] = 0
    arr[h // 3 : 2 * h // 3, :, 3] = 128
    arr[2 * h // 3 :, :, 3] = 255
    return Image.fromarray(arr, "RGBA")


def _page(w: int, h: int, seed: int) -> Image.Image:
    """A large page: white with dark random blocks, cheap to make at full size."""
    rng = np.random.default_rng(seed)
    arr = np.full((h, w, 3), 250, dtype=np.uint8)
    for _ in range(40):
        x, y = int(rng.integers(0, w - 200)), int(rng.integers(0, h - 40))
        arr[y : y + 30, x : x + 180] = rng.integers(0, 120, size=3, dtype=np.uint8)
    return Image.fromarray(arr, "RGB")


# (text, image) inputs, named
INPUTS: dict[str, tuple[str | None, Image.Image | None]] = {
    "text": ("what is the total amount on the invoice?", None),
    "image": (None, _rgb(300, 200, seed=1)),
    "rgba": (None, _rgba(120, 90, seed=2)),
    "page": (None, _page(1240, 1754, seed=3)),  # an A4 page at 150 dpi
    "fused": ("a red circle on a blue square", _rgb(150, 70, seed=4)),
}
#: the inputs of the default (fast) tests: every kind but the large page
FAST = ["text", "image", "rgba", "fused"]


def _umr_input(text: str | None, image: Image.Image | None) -> object:
    if image is None:
        return text
    return {"image": image} if text is None else {"text": text, "image": image}


def _cosines(got: np.ndarray, ref: torch.Tensor) -> list[float]:
    ref_np = ref.numpy()
    return [float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b))) for a, b in zip(got, ref_np)]


def _load(model_dir: Path, cls_name: str):
    import transformers
    from transformers import AutoTokenizer
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    model = getattr(transformers, cls_name).from_pretrained(model_dir, dtype=torch.float32).eval()
    return model, AutoTokenizer.from_pretrained(model_dir), Qwen2VLImageProcessorPil.from_pretrained(model_dir)


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fidelity")


# -------------------------------------------------------------------------------------------------
# Embedders
# -------------------------------------------------------------------------------------------------
def _check_embedder(emb: umr.Embedder, reference_embed, names: list[str], side: str, instruction: str | None,
                    **ref_kwargs) -> list[float]:
    items = [INPUTS[n] for n in names]
    got = emb.embed([_umr_input(*it) for it in items], side=side, instruction=instruction)
    ref = torch.cat([reference_embed([it], **ref_kwargs) for it in items])  # one item per reference call
    cos = _cosines(got, ref)
    assert min(cos) >= 0.9999, dict(zip(names, cos))
    # teeth: the inputs really give different vectors
    assert float(np.abs(got[0] - got[-1]).max()) > 1e-3
    return cos


@pytest.mark.parametrize("side", ["query", "document"])
def test_gme_default_matches_reference(tiny_model_dir, side):
    emb = umr.Embedder.from_pretrained(tiny_model_dir, device="cpu")
    model, tok, ip = _load(tiny_model_dir, "Qwen2VLForConditionalGeneration")
    ref = GMEReference(model, tok, ip)
    instruction = INSTRUCTION if side == "query" else None

    def embed(items):
        return ref.embed([t for t, _ in items], [i for _, i in items], is_query=side == "query", instruction=instruction)

    _check_embedder(emb, embed, FAST, side, instruction)


@pytest.fixture(scope="module")
def u_marvel_dir(root) -> Path:
    return build_tiny_model(root / "u-marvel", recipe="u-marvel", seed=5)


@pytest.mark.parametrize("side", ["query", "document"])
@pytest.mark.parametrize("instruction", [None, "retrieve a caption for the image"])
def test_u_marvel_default_matches_reference(u_marvel_dir, side, instruction):
    emb = umr.Embedder.from_pretrained(u_marvel_dir, device="cpu")
    model, tok, ip = _load(u_marvel_dir, "Qwen2VLForConditionalGeneration")
    ref = UMarvelReference(model, tok, ip, prompt="none")

    def embed(items):
        return ref.embed(items, side, instruction=instruction)

    _check_embedder(emb, embed, FAST, side, instruction)


@pytest.fixture(scope="module")
def dse_dir(root) -> Path:
    return build_tiny_model(root / "dse", recipe="dse", seed=6, hidden_size=128)


@pytest.mark.parametrize("side", ["query", "document"])
def test_dse_default_matches_reference(dse_dir, side):
    emb = umr.Embedder.from_pretrained(dse_dir, device="cpu")
    model, tok, ip = _load(dse_dir, "Qwen2VLForConditionalGeneration")
    ref = DSEReference(model, tok, ip)

    def embed(items):
        return ref.embed(items, side)

    _check_embedder(emb, embed, FAST, side, None)


@pytest.fixture(scope="module")
def qwen3_embedding_dir(root) -> Path:
    return build_tiny_model(root / "q3e", recipe="qwen3-vl-embedding", seed=7, hidden_size=128)


@pytest.mark.parametrize("side", ["query", "document"])
def test_qwen3_vl_embedding_default_matches_reference(qwen3_embedding_dir, side):
    emb = umr.Embedder.from_pretrained(qwen3_embedding_dir, device="cpu")
    model, tok, ip = _load(qwen3_embedding_dir, "Qwen3VLForConditionalGeneration")
    ref = Qwen3VLEmbeddingReference(model, tok, ip)
    instruction = "Retrieve images or text relevant to the user's query" if side == "query" else None

    def embed(items):
        return ref.embed(items, instruction=instruction)

    _check_embedder(emb, embed, FAST, side, instruction)


# -------------------------------------------------------------------------------------------------
# Rerankers
# -------------------------------------------------------------------------------------------------
CANDIDATES = ["text", "image", "rgba", "fused"]


def _check_scores(got: list[float], expected: list[float]) -> None:
    diff = max(abs(a - b) for a, b in zip(got, expected))
    assert diff <= 1e-4, (got, expected)
    assert max(expected) - min(expected) > 1e-4, expected  # teeth


@pytest.mark.parametrize("query", ["text", "fused"])
def test_zero_shot_default_matches_reference(tiny_reranker_dir, query):
    rr = umr.Reranker.from_pretrained(tiny_reranker_dir, device="cpu")
    model, tok, ip = _load(tiny_reranker_dir, "Qwen2VLForConditionalGeneration")
    ref = ZeroShotReference(model, tok, ip, variant="clean")
    q = INPUTS[query]
    got = rr.score(_umr_input(*q), [_umr_input(*INPUTS[c]) for c in CANDIDATES])
    _check_scores(got, [ref.score(q, INPUTS[c]) for c in CANDIDATES])


@pytest.fixture(scope="module")
def qwen3_reranker_dir(root) -> Path:
    return build_tiny_model(root / "q3r", recipe="qwen3-vl-reranker", seed=8)


@pytest.mark.parametrize("instruction", [None, "Find the page that answers the question."])
def test_qwen3_vl_reranker_default_matches_reference(qwen3_reranker_dir, instruction):
    rr = umr.Reranker.from_pretrained(qwen3_reranker_dir, device="cpu")
    model, tok, ip = _load(qwen3_reranker_dir, "Qwen3VLForConditionalGeneration")
    ref = Qwen3VLRerankerReference(model, tok, ip)
    q = INPUTS["fused"]
    got = rr.score(_umr_input(*q), [_umr_input(*INPUTS[c]) for c in CANDIDATES], instruction=instruction)
    _check_scores(got, ref.score(q, [INPUTS[c] for c in CANDIDATES], instruction=instruction))


@pytest.fixture(scope="module")
def monoqwen_dir(root) -> Path:
    pytest.importorskip("peft", reason="MonoQwen2-VL is a LoRA adapter; its tests need peft")
    return build_tiny_model(root / "monoqwen", recipe="monoqwen2-vl", seed=9)


def test_monoqwen_default_matches_reference(monoqwen_dir):
    from peft import PeftModel

    rr = umr.Reranker.from_pretrained(monoqwen_dir, device="cpu")
    base, tok, ip = _load(monoqwen_dir / "base", "Qwen2VLForConditionalGeneration")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        adapted = PeftModel.from_pretrained(base, monoqwen_dir).eval()
    ref = MonoQwenReference(adapted, tok, ip)
    pages = ["image", "rgba"]
    got = rr.score("what is the total amount?", [INPUTS[p][1] for p in pages])
    _check_scores(got, [ref.score("what is the total amount?", INPUTS[p][1]) for p in pages])


# -------------------------------------------------------------------------------------------------
# Recipe options and variants (issue 22)
# -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("side", ["query", "document"])
@pytest.mark.parametrize("instruction", [None, "retrieve a caption for the image"])
def test_u_marvel_mbeir_eval_variant_matches_reference(u_marvel_dir, side, instruction):
    """The evaluation prompt (suffixes) is a recipe of its own, exact against datasets_mbeir.py."""
    emb = umr.Embedder.from_pretrained(u_marvel_dir, device="cpu", recipe="u-marvel-mbeir-eval")
    model, tok, ip = _load(u_marvel_dir, "Qwen2VLForConditionalGeneration")
    ref = UMarvelReference(model, tok, ip, prompt="mbeir-eval")
    names = ["text", "image", "fused"]
    cos = _check_embedder(emb, lambda items: ref.embed(items, side, instruction=instruction), names, side, instruction)
    assert min(cos) >= 0.9999
    # and the suffix really changes the vectors
    plain = umr.Embedder.from_pretrained(u_marvel_dir, device="cpu")
    a = emb.embed([_umr_input(*INPUTS[n]) for n in names], side=side, instruction=instruction)
    b = plain.embed([_umr_input(*INPUTS[n]) for n in names], side=side, instruction=instruction)
    assert float(np.abs(a - b).max()) > 1e-3
    assert emb.fingerprint != plain.fingerprint


def test_u_marvel_batches_match_reference_batches(u_marvel_dir):
    """Padded batches (bidirectional attention, padding masked) equal the reference's own padded batch."""
    emb = umr.Embedder.from_pretrained(u_marvel_dir, device="cpu")
    model, tok, ip = _load(u_marvel_dir, "Qwen2VLForConditionalGeneration")
    ref = UMarvelReference(model, tok, ip)
    items = [INPUTS[n] for n in ("text", "fused", "image", "rgba")]
    for side in ("query", "document"):
        got = emb.embed([_umr_input(*it) for it in items], side=side, instruction="find it")
        cos = _cosines(got, ref.embed(items, side, instruction="find it"))
        assert min(cos) >= 0.9999, (side, cos)


def test_u_marvel_queries_are_not_cut_at_1024_tokens(u_marvel_dir):
    """The reference pads queries without truncation and cuts candidates at 1024 tokens."""
    emb = umr.Embedder.from_pretrained(u_marvel_dir, device="cpu")
    model, tok, ip = _load(u_marvel_dir, "Qwen2VLForConditionalGeneration")
    ref = UMarvelReference(model, tok, ip)
    long_text = " ".join(["quarterly revenue grew by twelve percent"] * 300)
    assert len(tok.encode(long_text, add_special_tokens=False)) > 1100
    for side in ("query", "document"):
        got = emb.embed([long_text], side=side)
        cos = _cosines(got, ref.embed([(long_text, None)], side))
        assert cos[0] >= 0.9999, (side, cos)
    q = emb.embed([long_text], side="query")
    d = emb.embed([long_text], side="document")
    assert float(np.abs(q - d).max()) > 1e-3


@pytest.mark.parametrize("dim", [1, 100])
def test_dse_accepts_any_dim_like_the_card(dse_dir, dim):
    emb = umr.Embedder.from_pretrained(dse_dir, device="cpu", dim=dim)
    model, tok, ip = _load(dse_dir, "Qwen2VLForConditionalGeneration")
    ref = DSEReference(model, tok, ip)
    names = ["text", "image"]
    got = emb.embed_documents([_umr_input(*INPUTS[n]) for n in names])
    assert got.shape == (2, dim)
    expected = torch.cat([ref.embed([INPUTS[n]], "document", dimension=dim) for n in names])
    if dim == 1:  # one value normalised is +-1: compare signs
        assert np.array_equal(np.sign(got), np.sign(expected.numpy()))
    else:
        assert min(_cosines(got, expected)) >= 0.9999


@pytest.mark.parametrize("dim", [0, -3, 129])
def test_dse_refuses_dims_outside_one_to_native(dse_dir, dim):
    with pytest.raises(ValueError, match="any integer from 1 to 128"):
        umr.Embedder.from_pretrained(dse_dir, device="cpu", dim=dim)


def test_monoqwen_follows_the_card_pixel_budget(monoqwen_dir):
    rr = umr.Reranker.from_pretrained(monoqwen_dir, device="cpu")
    assert rr.max_pixels == 16384 * 28 * 28
    lowered = umr.Reranker.from_pretrained(monoqwen_dir, device="cpu", max_pixels=512 * 28 * 28)
    assert lowered.max_pixels == 512 * 28 * 28


@pytest.fixture(scope="module")
def judge_dir(root) -> Path:
    """A zero-shot judge checkpoint whose generation config carries Qwen2-VL-Instruct's repetition penalty."""
    import json

    path = build_tiny_model(root / "judge", recipe="qwen-vl-yesno", seed=10)
    config = json.loads((path / "generation_config.json").read_text())
    config["repetition_penalty"] = 1.05
    (path / "generation_config.json").write_text(json.dumps(config))
    return path


@pytest.mark.parametrize("query", ["text", "fused", "image"])
def test_zero_shot_u_marvel_variant_matches_generate_reference(judge_dir, query):
    rr = umr.Reranker.from_pretrained(judge_dir, device="cpu", recipe="qwen-vl-yesno-u-marvel")
    model, tok, ip = _load(judge_dir, "Qwen2VLForConditionalGeneration")
    assert model.generation_config.repetition_penalty == 1.05
    ref = ZeroShotReference(model, tok, ip, variant="u-marvel")
    q = INPUTS[query]
    cands = ["text", "image", "rgba", "fused"]
    instruction = "retrieve a caption for the image"
    got = rr.score(_umr_input(*q), [_umr_input(*INPUTS[c]) for c in cands], instruction=instruction)
    _check_scores(got, [ref.score(q, INPUTS[c], instruction=instruction) for c in cands])
    # the prompt holds the reference's judge text verbatim: no separators, the typo and the spaces
    prompt = rr.build_prompt("a dog", "a cat")
    assert "the candidate" + " " * 24 + "meets" in prompt and "responed with 'No'.Query:A dog.Candidate:A cat." in prompt


def test_zero_shot_default_prompt_is_the_clean_one(tiny_reranker_dir):
    rr = umr.Reranker.from_pretrained(tiny_reranker_dir, device="cpu")
    prompt = rr.build_prompt("a dog", "a cat")
    assert "respond with 'No'.\nQuery: a dog\nCandidate: a cat<|im_end|>" in prompt
    assert "responed" not in prompt and "  " not in prompt


def test_models_json_carries_each_recipes_reference(capsys):
    import json

    from umr.cli import main

    assert main(["models", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    by_recipe = {r["recipe"]: r for r in rows}
    assert {"gme", "u-marvel", "dse", "qwen3-vl-embedding", "mm-embed", "qwen-vl-yesno", "monoqwen2-vl",
            "qwen3-vl-reranker"} <= set(by_recipe)
    assert all(r["reference"] for r in rows)
    assert "gme_inference.py" in by_recipe["gme"]["reference"]
    assert "chaxjli/U-MARVEL" in by_recipe["u-marvel"]["reference"]
    assert "model card" in by_recipe["dse"]["reference"]
    variants = {v["recipe"]: v for v in by_recipe["u-marvel"]["variants"]}
    assert "datasets_mbeir.py" in variants["u-marvel-mbeir-eval"]["reference"]
    variants = {v["recipe"]: v for v in by_recipe["qwen-vl-yesno"]["variants"]}
    assert "zero_shot_rerank" in variants["qwen-vl-yesno-u-marvel"]["reference"]


# -------------------------------------------------------------------------------------------------
# Large pages (slow): an A4 page at 150 dpi through each recipe's default pixel budget
# -------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_large_pages_match_references(tiny_model_dir, u_marvel_dir, dse_dir, qwen3_embedding_dir):
    page = [INPUTS["page"]]
    cases = [
        (tiny_model_dir, "gme", lambda m, t, i: lambda items: GMEReference(m, t, i).embed(
            [x for x, _ in items], [y for _, y in items], is_query=False)),
        (u_marvel_dir, "u-marvel", lambda m, t, i: lambda items: UMarvelReference(m, t, i).embed(items, "document")),
        (dse_dir, "dse", lambda m, t, i: lambda items: DSEReference(m, t, i).embed(items, "document")),
    ]
    for path, name, make in cases:
        emb = umr.Embedder.from_pretrained(path, device="cpu")
        model, tok, ip = _load(path, "Qwen2VLForConditionalGeneration")
        got = emb.embed_documents([_umr_input(*page[0])])
        assert _cosines(got, make(model, tok, ip)(page))[0] >= 0.9999, name
    emb = umr.Embedder.from_pretrained(qwen3_embedding_dir, device="cpu")
    model, tok, ip = _load(qwen3_embedding_dir, "Qwen3VLForConditionalGeneration")
    got = emb.embed_documents([_umr_input(*page[0])])
    assert _cosines(got, Qwen3VLEmbeddingReference(model, tok, ip).embed(page))[0] >= 0.9999


@pytest.mark.slow
def test_large_pages_match_reranker_references(monoqwen_dir, judge_dir):
    from peft import PeftModel

    page = INPUTS["page"][1]
    rr = umr.Reranker.from_pretrained(monoqwen_dir, device="cpu")
    base, tok, ip = _load(monoqwen_dir / "base", "Qwen2VLForConditionalGeneration")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        adapted = PeftModel.from_pretrained(base, monoqwen_dir).eval()
    got = rr.score("what is the total amount?", [page])[0]
    # the card's budget: about 2800 visual tokens for this page, not the 1280 umr used to cap it at
    assert abs(got - MonoQwenReference(adapted, tok, ip).score("what is the total amount?", page)) <= 1e-4
    judge = umr.Reranker.from_pretrained(judge_dir, device="cpu", recipe="qwen-vl-yesno-u-marvel")
    model, tok, ip = _load(judge_dir, "Qwen2VLForConditionalGeneration")
    ref = ZeroShotReference(model, tok, ip, variant="u-marvel").score(INPUTS["text"], (None, page))
    assert abs(judge.score(INPUTS["text"][0], [page])[0] - ref) <= 1e-4
