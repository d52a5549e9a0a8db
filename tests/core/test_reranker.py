"""Reranker: parity with an independent full-logits reference, batching invariance, order, errors, fuse."""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import math
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import umr
from umr.errors import InputError, UnknownRecipeError
from umr.recipes import RERANK_RECIPES, get_rerank_recipe, list_recipes, resolve_recipe_name
from umr.reranker import SCORE_FUNCTIONS, Reranker, check_top_n, fuse

IMG = "<|vision_start|><|image_pad|><|vision_end|>"

# The prompts, written out here from the model cards / reference code (recipes_facts.md), not from umr.
ZERO_SHOT_PROMPT = (
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
    "I will provide you with a query and a candidate. Please evaluate whether the candidate meets the "
    "requirements of the query. If it does, respond with 'Yes'; if it doesn't, respond with 'No'.\n"
    "Query: {q}\nCandidate: {c}<|im_end|>\n<|im_start|>assistant\n"
)
MONOQWEN_PROMPT = (
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
    "{c}Assert the relevance of the previous image document to the following query, answer True or False. "
    "The query is: {q}<|im_end|>\n<|im_start|>assistant\n"
)
QWEN3_PROMPT = (
    "<|im_start|>system\nJudge whether the Document meets the requirements based on the Query and the "
    'Instruct provided. Note that the answer can only be "yes" or "no".<|im_end|>\n<|im_start|>user\n'
    "<Instruct>: Given a search query, retrieve relevant candidates that answer the query."
    "<Query>:{q}\n<Document>:{c}<|im_end|>\n<|im_start|>assistant\n"
)


def _image(w: int, h: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8), "RGB")


def _png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


# ---------------------------------------------------------------------------------------------------
# Independent reference: one pair per forward, full HF forward, full-vocabulary logits
# ---------------------------------------------------------------------------------------------------
class FullLogitsReference:
    """Scores a pair the way the model cards do: ``model(**inputs).logits[:, -1]`` then the two tokens."""

    def __init__(self, model, tokenizer, image_processor, yes: str, no: str, score: str) -> None:
        self.model = model.eval()
        self.tok = tokenizer
        self.ip = image_processor
        self.yes = tokenizer.convert_tokens_to_ids(yes)
        self.no = tokenizer.convert_tokens_to_ids(no)
        self.kind = score

    @torch.no_grad()
    def score(self, prompt: str, images: list[Image.Image]) -> float:
        """``prompt`` holds one ``IMG`` per image, in the order of ``images`` (sizes already on the grid)."""
        pieces = prompt.split("<|image_pad|>")
        assert len(pieces) == len(images) + 1
        kwargs = {}
        text = pieces[0]
        if images:
            out = self.ip(images=images, return_tensors="pt")
            grids = out["image_grid_thw"]
            for grid, rest in zip(grids.tolist(), pieces[1:]):
                text += "<|image_pad|>" * (grid[0] * grid[1] * grid[2] // 4) + rest
            kwargs = {"pixel_values": out["pixel_values"], "image_grid_thw": grids}
        enc = self.tok(text, return_tensors="pt", add_special_tokens=False)
        ids = enc["input_ids"]
        # what the Qwen-VL processors return beside input_ids: 1 on image tokens (M-RoPE needs it)
        kwargs["mm_token_type_ids"] = (ids == self.tok.convert_tokens_to_ids("<|image_pad|>")).int()
        logits = self.model(input_ids=ids, attention_mask=enc["attention_mask"], **kwargs).logits
        assert logits.shape[1] == enc["input_ids"].shape[1]  # full logits over the whole sequence
        last = logits[0, -1].float()
        y, n = last[self.yes], last[self.no]
        if self.kind == "sigmoid":
            return float(torch.sigmoid(y - n))
        return float(torch.softmax(torch.stack([y, n]), dim=0)[0])


def _load_reference(model_dir: Path, recipe_name: str, model=None) -> FullLogitsReference:
    from transformers import AutoModelForImageTextToText, AutoTokenizer
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    r = RERANK_RECIPES[recipe_name]
    if model is None:
        model = AutoModelForImageTextToText.from_pretrained(model_dir, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(model_dir)
    ip = Qwen2VLImageProcessorPil.from_pretrained(model_dir)
    return FullLogitsReference(model, tok, ip, r.yes_token, r.no_token, r.score)


def _content(text: str | None, image: Image.Image | None) -> str:
    return (IMG if image is not None else "") + (text or "")


def _input(text: str | None, image: Image.Image | None):
    if image is None:
        return text
    return {"image": image} if text is None else {"text": text, "image": image}


# Image sizes already multiples of the patch grid and inside the pixel budget, so that no resize happens
# and the reference needs no resizing code of its own.
GRID_SIZES = {"qwen2": [(56, 84), (112, 56), (84, 84)], "qwen3": [(64, 96), (128, 64), (96, 96)]}
QUERIES = {"text": ("a red circle on a page", None), "fused": ("what does this chart show?", 2)}
CANDIDATES = [
    ("The quick brown fox jumps over the lazy dog.", None),
    (None, 0),
    ("Figure 3 shows the pipeline", 1),
    ("Installation manual: connect the power cable, press the reset button.", None),
]


def _pairs(grid: str, query_kind: str):
    sizes = GRID_SIZES[grid]
    images = [_image(*s, seed=i + 10) for i, s in enumerate(sizes)]
    qt, qi = QUERIES[query_kind]
    query = (qt, images[qi] if qi is not None else None)
    cands = [(t, images[i] if i is not None else None) for t, i in CANDIDATES]
    return query, cands


def _check_against_reference(rr: Reranker, ref: FullLogitsReference, template: str, grid: str,
                             candidate_first: bool = False, query_kinds: tuple[str, ...] = tuple(QUERIES)
                             ) -> list[float]:
    all_ref = []
    for query_kind in query_kinds:
        (qt, qi), cands = _pairs(grid, query_kind)
        expected = []
        for ct, ci in cands:
            prompt = template.format(q=_content(qt, qi), c=_content(ct, ci))
            order = [ci, qi] if candidate_first else [qi, ci]
            expected.append(ref.score(prompt, [im for im in order if im is not None]))
        got = rr.score(_input(qt, qi), [_input(ct, ci) for ct, ci in cands])
        assert len(got) == len(expected)
        diff = max(abs(a - b) for a, b in zip(got, expected))
        assert diff <= 1e-4, (query_kind, got, expected)
        all_ref.extend(expected)
    # the check has teeth: the scores of different pairs differ by far more than the tolerance
    assert max(all_ref) - min(all_ref) > 1e-3, all_ref
    return all_ref


# ---------------------------------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def reranker(tiny_reranker_dir) -> Reranker:
    return Reranker.from_pretrained(tiny_reranker_dir, device="cpu")


@pytest.fixture(scope="module")
def qwen3_dir(tmp_path_factory) -> Path:
    from umr.testing import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-qwen3-rerank"), recipe="qwen3-vl-reranker", seed=2)


@pytest.fixture(scope="module")
def monoqwen_dir(tmp_path_factory) -> Path:
    pytest.importorskip("peft", reason="MonoQwen2-VL is a LoRA adapter; its tests need peft")
    from umr.testing import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-monoqwen"), recipe="monoqwen2-vl", seed=3)


# ---------------------------------------------------------------------------------------------------
# Parity with the independent reference
# ---------------------------------------------------------------------------------------------------
def test_zero_shot_matches_full_logits_reference(reranker, tiny_reranker_dir):
    ref = _load_reference(tiny_reranker_dir, "qwen-vl-yesno")
    _check_against_reference(reranker, ref, ZERO_SHOT_PROMPT, "qwen2")


def test_zero_shot_on_qwen2_5_vl_matches_full_logits_reference(tmp_path_factory):
    from umr.testing import build_tiny_model

    d = build_tiny_model(tmp_path_factory.mktemp("tiny-q25"), recipe="qwen-vl-yesno", seed=4, backbone="qwen2_5_vl")
    rr = Reranker.from_pretrained(d, device="cpu")
    assert type(rr.model).__name__ == "Qwen2_5_VLForConditionalGeneration"
    ref = _load_reference(d, "qwen-vl-yesno")
    _check_against_reference(rr, ref, ZERO_SHOT_PROMPT, "qwen2", query_kinds=("fused",))


def test_qwen3_reranker_matches_full_logits_reference(qwen3_dir):
    rr = Reranker.from_pretrained(qwen3_dir, device="cpu")
    assert rr.recipe.name == "qwen3-vl-reranker" and type(rr.model).__name__ == "Qwen3VLForConditionalGeneration"
    # Untie the lm_head (as in Qwen3-VL-8B): the answer rows must come from the head, not the input embeddings.
    model = rr.model
    emb = model.get_input_embeddings().weight
    model.lm_head.weight = torch.nn.Parameter(emb.detach().clone() + 0.05 * torch.randn_like(emb))
    assert model.lm_head.weight.data_ptr() != emb.data_ptr()
    untied = Reranker(
        model, rr.processor.tokenizer, rr.processor.image_processor, rr.recipe,
        model_id="tiny-qwen3", device=torch.device("cpu"), dtype=torch.float32,
    )
    ref = _load_reference(qwen3_dir, "qwen3-vl-reranker", model=model)
    _check_against_reference(untied, ref, QWEN3_PROMPT, "qwen3")


def test_monoqwen_adapter_matches_unmerged_peft_reference(monoqwen_dir):
    from peft import PeftModel
    from transformers import AutoModelForImageTextToText

    base_dir = monoqwen_dir / "base"
    assert not (monoqwen_dir / "tokenizer.json").exists()  # like the hub repo: adapter files only
    rr = Reranker.from_pretrained(monoqwen_dir, device="cpu")
    assert rr.recipe.name == "monoqwen2-vl" and type(rr.model).__name__ == "Qwen2VLForConditionalGeneration"
    base = AutoModelForImageTextToText.from_pretrained(base_dir, dtype=torch.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # a transformers deprecation inside peft
        adapted = PeftModel.from_pretrained(base, monoqwen_dir).eval()  # unmerged LoRA, full forward
    with_adapter = _check_against_reference(
        rr, _load_reference(base_dir, "monoqwen2-vl", model=adapted), MONOQWEN_PROMPT, "qwen2", candidate_first=True
    )
    with adapted.disable_adapter():  # the adapter really changes the scores
        without = [
            _load_reference(base_dir, "monoqwen2-vl", model=adapted).score(
                MONOQWEN_PROMPT.format(q=_content(qt, qi), c=_content(ct, ci)),
                [im for im in (ci, qi) if im is not None],
            )
            for qt, qi in [QUERIES["text"]]
            for ct, ci in _pairs("qwen2", "text")[1]
        ]
    assert max(abs(a - b) for a, b in zip(with_adapter[: len(without)], without)) > 1e-3


def test_monoqwen_without_peft_says_how_to_install(tmp_path, monkeypatch):
    d = tmp_path / "adapter"
    d.mkdir()
    (d / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "Qwen/Qwen2-VL-2B-Instruct"}))
    (d / "umr.json").write_text(json.dumps({"recipe": "monoqwen2-vl"}))
    monkeypatch.setitem(sys.modules, "peft", None)  # import peft -> ImportError
    with pytest.raises(ImportError, match=r"pip install 'umr\[peft\]'"):
        Reranker.from_pretrained(d, device="cpu")


def test_prompts_are_the_recipe_formats(reranker):
    q = {"text": "red", "image": _image(56, 56)}
    c = {"text": "caption", "image": _image(56, 56, seed=1)}
    assert reranker.build_prompt(q, c) == ZERO_SHOT_PROMPT.format(q=IMG + "red", c=IMG + "caption")
    custom = reranker.build_prompt("red", "blue", instruction="Is the candidate the same colour? Answer Yes or No.")
    assert "Is the candidate the same colour?" in custom and "I will provide you" not in custom


# ---------------------------------------------------------------------------------------------------
# Batching
# ---------------------------------------------------------------------------------------------------
def _mixed_candidates() -> list:
    return [
        "short",
        _image(120, 80, seed=1),
        {"text": "a caption for the photo", "image": _image(50, 170, seed=2)},
        "a much longer candidate text " * 8,
        _png_bytes(_image(60, 60, seed=3)),
        {"text": "tiny", "image": _image(28, 28, seed=4)},
    ]


@pytest.mark.parametrize("query", ["a red circle", {"text": "like this", "image": _image(70, 60, seed=9)}])
def test_batch_equals_one_by_one(reranker, query):
    cands = _mixed_candidates()
    batched = reranker.score(query, cands)
    single = [reranker.score(query, [c])[0] for c in cands]
    assert max(abs(a - b) for a, b in zip(batched, single)) <= 1e-5
    # several small batches (token budget and batch size) give the same numbers
    small = reranker.score(query, cands, max_batch_tokens=900, batch_size=2)
    assert max(abs(a - b) for a, b in zip(batched, small)) <= 1e-5
    assert all(0.0 <= s <= 1.0 for s in batched)


def test_scores_come_back_in_caller_order(reranker):
    cands = ["short", _image(56, 56, seed=1), "a much longer candidate text " * 8, "red", "Yes", "The fox.", "No"]
    scores = reranker.score("red", cands)
    perm = [3, 0, 6, 2, 5, 1, 4]
    permuted = reranker.score("red", [cands[i] for i in perm])
    assert max(abs(permuted[j] - scores[i]) for j, i in enumerate(perm)) <= 1e-5
    assert len(set(np.round(scores, 6))) > 3  # distinct values, so a mix-up would show


def test_query_image_is_decoded_once(reranker, monkeypatch, tmp_path):
    from umr.inputs import MultimodalInput

    q_path = tmp_path / "q.png"
    _image(56, 56, seed=5).save(q_path)
    loads: list[str] = []
    original = MultimodalInput.load_image

    def counting(self):
        loads.append(str(self.image) if isinstance(self.image, Path) else type(self.image).__name__)
        return original(self)

    monkeypatch.setattr(MultimodalInput, "load_image", counting)
    reranker.score({"text": "q", "image": str(q_path)}, ["a", "b", _image(30, 30)], batch_size=1)
    assert loads.count(str(q_path)) == 1


def test_lm_head_is_never_applied_to_the_sequence(reranker):
    calls: list[tuple[int, ...]] = []
    hook = reranker.model.lm_head.register_forward_hook(lambda m, i, o: calls.append(tuple(o.shape)))
    try:
        scores = reranker.score({"text": "q", "image": _image(84, 56)}, ["text", _image(56, 56)])
        assert len(scores) == 2 and calls == []  # not over (B, L, V), not even over (B, V)
        # control: the hook does fire on a plain HF forward, with full (B, L, V) logits
        ids = torch.tensor([[reranker.processor.pad_id, reranker.yes_token_id, reranker.no_token_id]])
        with torch.no_grad():
            reranker.model(input_ids=ids, attention_mask=torch.ones_like(ids))
        vocab = reranker.model.lm_head.weight.shape[0]
        assert calls == [(1, 3, vocab)]
    finally:
        hook.remove()


# ---------------------------------------------------------------------------------------------------
# Ranking, top_n, ties
# ---------------------------------------------------------------------------------------------------
def test_rerank_sorts_descending_and_top_n(reranker):
    cands = ["a red circle", "a blue square", "The quick brown fox.", "revenue grew", "red", "Yes No"]
    scores = reranker.score("red", cands)
    ranked = reranker.rerank("red", cands, top_n=4)
    assert len(ranked) == 4 and len(set(i for i, _ in ranked)) == 4
    assert [s for _, s in ranked] == sorted(scores, reverse=True)[:4]
    assert all(abs(scores[i] - s) <= 1e-6 for i, s in ranked)


def test_ties_keep_the_candidates_order(reranker, monkeypatch):
    monkeypatch.setattr(reranker, "score", lambda q, c, i=None, **kw: [0.2, 0.9, 0.2, 0.9, 0.5, 0.2])
    assert reranker.rerank("q", ["a"] * 6) == [(1, 0.9), (3, 0.9), (4, 0.5), (0, 0.2), (2, 0.2), (5, 0.2)]
    assert reranker.rerank("q", ["a"] * 6, top_n=2) == [(1, 0.9), (3, 0.9)]
    assert len(reranker.rerank("q", ["a"] * 6, top_n=100)) == 6


def test_identical_candidates_score_alike_and_rank_together(reranker):
    ranked = reranker.rerank("red", ["same text", "another candidate entirely", "same text", "same text"])
    positions = [pos for pos, (i, _) in enumerate(ranked) if i != 1]
    assert positions in ([0, 1, 2], [1, 2, 3])  # nothing ranks between identical candidates
    same = [s for i, s in ranked if i != 1]
    assert max(same) - min(same) <= 1e-6
    if len(set(same)) == 1:  # bitwise ties (the usual case): the candidates' order is kept
        assert [i for i, _ in ranked if i != 1] == [0, 2, 3]


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, False, "3", 2.0])
def test_bad_top_n(reranker, bad):
    with pytest.raises(ValueError, match="top_n"):
        reranker.rerank("q", ["a", "b"], top_n=bad)


def test_check_top_n_accepts_numpy_ints():
    assert check_top_n(np.int64(3)) == 3 and check_top_n(None) is None


# ---------------------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------------------
def test_empty_candidates(reranker):
    assert reranker.score("q", []) == []
    assert reranker.rerank("q", [], top_n=3) == []


def test_unreadable_candidates_are_named_by_position(reranker, tmp_path):
    missing = tmp_path / "nope.png"
    with pytest.raises(InputError, match=r"candidate #2: .*not found"):
        reranker.score("q", ["a", "b", missing, "d"])
    with pytest.raises(InputError, match=r"candidate #1: cannot read"):
        reranker.score("q", ["a", b"\x89PNG\r\n\x1a\n garbage bytes", "c"])
    truncated = _png_bytes(_image(100, 100, seed=1))[:300]  # valid header, data cut short
    with pytest.raises(InputError, match=r"candidate #3: "):
        reranker.score("q", ["a", "b", "c", truncated])
    with pytest.raises(TypeError, match=r"candidate #1: "):
        reranker.score("q", ["a", 42])
    with pytest.raises(InputError, match=r"^query: "):
        reranker.score({"text": "q", "image": missing}, ["a"])
    with pytest.raises(InputError, match=r"candidate #0: .*placeholder"):
        reranker.score("q", ["sneaky <|image_pad|> text"])


def test_long_candidate_text_is_cut_to_fit(reranker, caplog):
    recipe = dataclasses.replace(reranker.recipe, max_length=160)
    small = Reranker(
        reranker.model, reranker.processor.tokenizer, reranker.processor.image_processor, recipe,
        model_id="tiny", device=torch.device("cpu"), dtype=torch.float32,
    )
    long_text = "Quarterly revenue grew by twelve percent; operating costs fell. " * 40
    with caplog.at_level(logging.WARNING, logger="umr.reranker"):
        scores = small.score("revenue", ["short", long_text])
    assert len(scores) == 2 and all(0 <= s <= 1 for s in scores)
    assert "cut the text of 1 candidate" in caplog.text
    query, instruction = umr.MultimodalInput(text="revenue"), small.recipe.default_instruction
    pairs = small.engine.prepare_pairs(
        query, [umr.MultimodalInput(text=long_text)], small.prompt_for(query, instruction), instruction
    )
    assert 140 <= pairs[0].num_tokens <= 160  # cut close to the limit, not to nothing
    # an image that alone exceeds the limit cannot be cut: a clear error naming the candidate
    with pytest.raises(InputError, match=r"candidate #1: .*160-token limit"):
        small.score("q", ["a", _image(400, 400)])


def test_base_model_is_refused_for_full_models(tiny_reranker_dir):
    with pytest.raises(ValueError, match="base_model"):
        Reranker.from_pretrained(tiny_reranker_dir, device="cpu", base_model="/somewhere")


def test_bad_sizes_are_refused(tiny_reranker_dir, reranker):
    with pytest.raises(ValueError, match="batch_size"):
        reranker.score("q", ["a"], batch_size=0)
    with pytest.raises(ValueError, match="max_batch_tokens"):
        Reranker.from_pretrained(tiny_reranker_dir, device="cpu", max_batch_tokens=-5)
    with pytest.raises(TypeError, match="instruction"):
        reranker.score("q", ["a"], instruction=3)


# ---------------------------------------------------------------------------------------------------
# Instructions
# ---------------------------------------------------------------------------------------------------
def test_instruction_override_changes_scores(tiny_reranker_dir, reranker):
    cands = ["a red circle", "a blue square"]
    default = reranker.score("red", cands)
    other = "Is the candidate about the same colour as the query? Respond with 'Yes' or 'No'."
    custom = reranker.score("red", cands, instruction=other)
    assert max(abs(a - b) for a, b in zip(default, custom)) > 1e-4
    per_query = reranker.score({"text": "red", "instruction": other}, cands)
    assert max(abs(a - b) for a, b in zip(custom, per_query)) <= 1e-6
    loaded = Reranker.from_pretrained(tiny_reranker_dir, device="cpu", instruction=other)
    assert max(abs(a - b) for a, b in zip(custom, loaded.score("red", cands))) <= 1e-6
    assert max(abs(a - b) for a, b in zip(default, loaded.score("red", cands, instruction=reranker.recipe.default_instruction))) <= 1e-6


# ---------------------------------------------------------------------------------------------------
# Recipes, registry, tiny models
# ---------------------------------------------------------------------------------------------------
def test_rerank_recipes_are_data():
    for r in RERANK_RECIPES.values():
        assert "{query}" in r.template and "{candidate}" in r.template
        # the instruction fills the template, or (M-BEIR task instruction) goes in front of the query text
        assert ("{instruction}" in r.template) != r.instruction_in_query
        assert r.score in SCORE_FUNCTIONS and r.padding_side == "left"
        assert r.template.endswith("<|im_start|>assistant\n")
    assert get_rerank_recipe("lightonai/MonoQwen2-VL-v0.1").name == "monoqwen2-vl"
    assert get_rerank_recipe("Qwen/Qwen3-VL-Reranker-2B").score == "sigmoid"
    assert get_rerank_recipe("Qwen/Qwen2.5-VL-7B-Instruct").name == "qwen-vl-yesno"
    r3 = get_rerank_recipe("qwen3-vl-reranker")
    assert (r3.yes_token, r3.no_token, r3.min_pixels, r3.max_pixels) == ("yes", "no", 4 * 1024, 1800 * 1024)
    mono = get_rerank_recipe("monoqwen2-vl")
    assert (mono.yes_token, mono.no_token, mono.adapter_of) == ("True", "False", "Qwen/Qwen2-VL-2B-Instruct")
    with pytest.raises(UnknownRecipeError, match="qwen3-vl-reranker"):
        get_rerank_recipe("gme")
    rows = {r["model_id"]: r for r in list_recipes("reranker")}
    assert rows["Qwen/Qwen3-VL-Reranker-2B"]["pooling"] == "yes/no sigmoid"


def test_local_folder_named_like_the_adapter_repo(tmp_path):
    d = tmp_path / "MonoQwen2-VL-v0.1"
    d.mkdir()
    assert resolve_recipe_name(d, None, "reranking") == "monoqwen2-vl"


def test_softmax_and_sigmoid_agree_on_two_logits():
    logits = torch.randn(50, 2, generator=torch.Generator().manual_seed(0)) * 5
    a, b = SCORE_FUNCTIONS["softmax"](logits), SCORE_FUNCTIONS["sigmoid"](logits)
    assert torch.allclose(a, b, atol=1e-6)
    assert torch.all((a >= 0) & (a <= 1))


# ---------------------------------------------------------------------------------------------------
# fuse
# ---------------------------------------------------------------------------------------------------
def test_fuse_maths():
    assert fuse([0.5, 0.25], [1.0, 0.0]) == pytest.approx([0.6, 0.25])
    assert fuse([0.5, 0.25], [1.0, 0.5], weight=2) == pytest.approx([2.5, 1.25])
    assert fuse(np.array([0.1, 0.2], dtype=np.float32), (0.0, 1.0), weight=0.0) == pytest.approx([0.1, 0.2])
    assert fuse([], []) == []
    # the U-MARVEL use: the rerank score breaks near ties of the first stage
    first, rr = [0.80, 0.79, 0.50], [0.10, 0.95, 0.99]
    fused = fuse(first, rr)
    assert sorted(range(3), key=lambda i: -fused[i]) == [1, 0, 2]
    assert umr.fuse is fuse and umr.Reranker is Reranker


@pytest.mark.parametrize(
    ("first", "second", "weight", "exc", "match"),
    [
        ([0.1, 0.2], [0.3], 0.1, ValueError, "2 values but rerank_scores has 1"),
        ([0.1, math.nan], [0.3, 0.4], 0.1, ValueError, r"first_stage_scores\[1\] must be finite"),
        ([0.1, 0.2], [0.3, math.inf], 0.1, ValueError, r"rerank_scores\[1\] must be finite"),
        ([0.1], [0.3], math.nan, ValueError, "weight must be finite"),
        ([0.1], [True], 0.1, TypeError, "real number"),
        ([0.1], ["0.3"], 0.1, TypeError, "real number"),
        ("0.1", [0.3], 0.1, TypeError, "sequence of numbers"),
        (np.zeros((2, 2)), [0.3, 0.1], 0.1, ValueError, "one-dimensional"),
    ],
)
def test_fuse_validation(first, second, weight, exc, match):
    with pytest.raises(exc, match=match):
        fuse(first, second, weight=weight)
