"""Every embedding recipe end to end on its tiny model, plus the facts each recipe promises.

Prompts are checked against strings written out from the model cards / reference code (see
notes/recipes_facts.md); the stand-in MM-Embed checkout is written here, with a sentinel file that its
module writes on import, to prove that no checkout code runs without ``trust_remote_code=True``.
"""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import umr
from umr import modeling, pooling
from umr.errors import RemoteCodeError
from umr.recipes import EMBED_RECIPES, MODELS, format_table, get_recipe, list_recipes
from umr.testing import build_tiny_model

RECIPES = sorted(EMBED_RECIPES)
# tiny sizes: wide enough for a Matryoshka cut where the recipe has one
HIDDEN = {"dse": 256, "qwen3-vl-embedding": 128}
INSTRUCTION = "Find an image that matches the given text."

# -------------------------------------------------------------------------------------------------
# A stand-in for nvidia/MM-Embed's remote code: same ``encode`` signature and prompt format.
# -------------------------------------------------------------------------------------------------
_STANDIN = '''
import pathlib
pathlib.Path({sentinel!r}).write_text("imported")

import numpy as np
import torch
from transformers import PretrainedConfig, PreTrainedModel


class StandInConfig(PretrainedConfig):
    model_type = "umr_standin_mmembed"

    def __init__(self, hidden_size=32, **kwargs):
        self.hidden_size = hidden_size
        super().__init__(**kwargs)


class StandInModel(PreTrainedModel):
    config_class = StandInConfig
    base_model_prefix = "standin"

    def __init__(self, config):
        super().__init__(config)
        self.table = torch.nn.Embedding(256, config.hidden_size)
        self.calls = []
        self.post_init()

    def _init_weights(self, module):
        pass

    def encode(self, inputs, is_query=False, instruction=None, max_length=512, query_prefix="Query: "):
        prompts = []
        for x in inputs:
            body = ("<image>\\n" if "img" in x else "") + (x.get("txt") or "")
            if is_query:
                head = f"Instruct: {{instruction}}\\n" if instruction else ""
                prompts.append(head + query_prefix + body)
            else:
                prompts.append(body)
        self.calls.append((list(prompts), is_query, instruction, max_length))
        rows = []
        for prompt, x in zip(prompts, inputs):
            ids = torch.tensor(list(prompt.encode("utf-8"))[:max_length] or [0])
            v = self.table(ids).mean(0)
            if "img" in x:
                v = v + float(np.asarray(x["img"], dtype=np.float32).mean()) / 255.0
            rows.append(3.0 * v)  # deliberately not unit length
        return {{"hidden_states": torch.stack(rows)}}
'''


def write_standin_checkout(
    path: Path, sentinel: Path, *, recipe: str = "mm-embed", module: str = "modeling_standin"
) -> Path:
    """A tiny checkout whose config.json maps AutoConfig/AutoModel to its own module."""
    from safetensors.torch import save_file

    path.mkdir(parents=True, exist_ok=True)
    (path / f"{module}.py").write_text(textwrap.dedent(_STANDIN.format(sentinel=str(sentinel))))
    config = {
        "model_type": "umr_standin_mmembed",
        "hidden_size": 32,
        "architectures": ["StandInModel"],
        "auto_map": {
            "AutoConfig": f"{module}.StandInConfig",
            "AutoModel": f"{module}.StandInModel",
        },
    }
    (path / "config.json").write_text(json.dumps(config))
    gen = torch.Generator().manual_seed(0)
    save_file({"table.weight": torch.randn(256, 32, generator=gen)}, str(path / "model.safetensors"))
    (path / "umr.json").write_text(json.dumps({"recipe": recipe}))
    return path


@pytest.fixture()
def modules_cache(tmp_path, monkeypatch):
    """Keep transformers' copies of remote modules in a temp dir, and sys.path as it was."""
    import transformers.dynamic_module_utils as dmu

    monkeypatch.setattr(dmu, "HF_MODULES_CACHE", str(tmp_path / "hf_modules"))
    monkeypatch.setattr(sys, "path", list(sys.path))
    return tmp_path / "hf_modules"


# -------------------------------------------------------------------------------------------------
# Tiny models, one per recipe
# -------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("recipes")
    out: dict[str, Path] = {}
    for name in RECIPES:
        if EMBED_RECIPES[name].backend == "native":
            out[name] = build_tiny_model(root / name, recipe=name, seed=1, hidden_size=HIDDEN.get(name, 64))
        else:
            out[name] = write_standin_checkout(root / name, root / f"{name}-imported.txt")
    return out


@pytest.fixture(scope="module")
def embedders(tiny_dirs: dict[str, Path]) -> dict[str, umr.Embedder]:
    import transformers.dynamic_module_utils as dmu

    saved, saved_path = dmu.HF_MODULES_CACHE, list(sys.path)
    dmu.HF_MODULES_CACHE = str(tiny_dirs["mm-embed"].parent / "hf_modules")
    try:
        # GME's 256·28² pixel floor would blow every test image up to 256 visual tokens: keep CPU time
        # down here (the budget itself is checked in test_embedder / test_processing)
        return {
            name: umr.Embedder.from_pretrained(
                path, device="cpu", trust_remote_code=True, min_pixels=4 * 28 * 28 if name == "gme" else None
            )
            for name, path in tiny_dirs.items()
        }
    finally:
        dmu.HF_MODULES_CACHE = saved
        sys.path[:] = saved_path


def _image(w: int, h: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8), "RGB")


# -------------------------------------------------------------------------------------------------
# End to end: text, image, fused; normalised; batch == single
# -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", RECIPES)
def test_recipe_end_to_end(embedders, name):
    emb = embedders[name]
    items = [
        "what is the total on the invoice?",
        _image(120, 90, seed=1),
        {"text": "a red circle", "image": _image(70, 150, seed=2)},
    ]
    for side in ("query", "document"):
        batch = emb.embed(items, side=side, instruction=INSTRUCTION)
        assert batch.shape == (len(items), emb.dim) and batch.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(batch, axis=1), 1.0, atol=1e-5)
        single = np.stack([emb.embed(it, side=side, instruction=INSTRUCTION) for it in items])
        assert np.abs(batch - single).max() <= 1e-5, (name, side)
        # inputs of different kinds really get different vectors
        assert np.abs(batch[0] - batch[1]).max() > 1e-4
    # the side decides the prompt, so a query and a document of the same text differ
    q = emb.embed_queries("same words", instruction=INSTRUCTION)
    d = emb.embed_documents("same words")
    assert np.abs(q - d).max() > 1e-4


# -------------------------------------------------------------------------------------------------
# Prompts, written out from each model card / reference script
# -------------------------------------------------------------------------------------------------
IMG = "<|vision_start|><|image_pad|><|vision_end|>"
SYS = "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
PIC = "PICTURE"  # stands for an image in the cases below

PROMPTS: dict[str, list[tuple[object, str, str | None, str]]] = {
    "gme": [
        ("a dog", "query", INSTRUCTION,
         f"<|im_start|>system\n{INSTRUCTION}<|im_end|>\n<|im_start|>user\na dog<|im_end|>\n"
         "<|im_start|>assistant\n<|endoftext|>"),
        ({"text": "a dog", "image": PIC}, "document", INSTRUCTION,
         f"{SYS}<|im_start|>user\n{IMG}a dog<|im_end|>\n<|im_start|>assistant\n<|endoftext|>"),
        ("a dog", "query", None,
         f"{SYS}<|im_start|>user\na dog<|im_end|>\n<|im_start|>assistant\n<|endoftext|>"),
    ],
    "u-marvel": [
        # M-BEIR query: format_string("<instruction_start>" + format_string(I) + "<instruction_end> " + text)
        ({"text": "two dogs on a bench", "image": PIC}, "query", "retrieve a caption for the image",
         f"{SYS}<|im_start|>user\n{IMG}<instruction_start>Retrieve a caption for the image.<instruction_end>"
         " two dogs on a bench.<|im_end|>\n<|im_start|>assistant\n<emb>.<|im_end|>\n<|im_start|>assistant\n"),
        (PIC, "query", "Retrieve a caption.",
         f"{SYS}<|im_start|>user\n{IMG}<instruction_start>Retrieve a caption.<instruction_end>.<|im_end|>\n"
         "<|im_start|>assistant\n<emb>.<|im_end|>\n<|im_start|>assistant\n"),
        # demo.py: query without instruction tokens
        ({"text": "Find an image caption describing the following everyday image.", "image": PIC}, "query", None,
         f"{SYS}<|im_start|>user\n{IMG}Find an image caption describing the following everyday image."
         "<|im_end|>\n<|im_start|>assistant\n<emb>.<|im_end|>\n<|im_start|>assistant\n"),
        # candidates: format_string(text), no instruction even when one is given
        ("a dog and a woman are playing on the bench", "document", INSTRUCTION,
         f"{SYS}<|im_start|>user\nA dog and a woman are playing on the bench.<|im_end|>\n"
         "<|im_start|>assistant\n<emb>.<|im_end|>\n<|im_start|>assistant\n"),
        (PIC, "document", None,
         f"{SYS}<|im_start|>user\n{IMG}<|im_end|>\n<|im_start|>assistant\n<emb>.<|im_end|>\n"
         "<|im_start|>assistant\n"),
    ],
    "dse": [
        # text query: dummy image + "Query: ..."
        ("what is the revenue?", "query", None,
         f"{SYS}<|im_start|>user\n{IMG}Query: what is the revenue?<|im_end|>\n<|im_start|>assistant\n"
         "<|endoftext|>"),
        (PIC, "document", None,
         f"{SYS}<|im_start|>user\n{IMG}What is shown in this image?<|im_end|>\n<|im_start|>assistant\n"
         "<|endoftext|>"),
        ("plain text passage", "document", INSTRUCTION,
         f"{SYS}<|im_start|>user\n{IMG}Document: plain text passage<|im_end|>\n<|im_start|>assistant\n"
         "<|endoftext|>"),
    ],
    # datasets_mbeir.py QueryDataset/CandidateDataset with prompt_index=0 (the evaluation default)
    "u-marvel-mbeir-eval": [
        ({"text": "two dogs on a bench", "image": PIC}, "query", "retrieve a caption for the image",
         f"{SYS}<|im_start|>user\n{IMG}<instruction_start>Retrieve a caption for the image.<instruction_end>"
         " two dogs on a bench.\nSummarize above image and sentence in one word: <|im_end|>\n"
         "<|im_start|>assistant\n<emb>.<|im_end|>\n<|im_start|>assistant\n"),
        ("a dog", "query", "Find a caption.",
         f"{SYS}<|im_start|>user\n<instruction_start>Find a caption.<instruction_end> a dog.\nSummarize above "
         "sentence in one word: <|im_end|>\n<|im_start|>assistant\n<emb>.<|im_end|>\n<|im_start|>assistant\n"),
        (PIC, "query", None,
         f"{SYS}<|im_start|>user\n{IMG}\nSummarize above image in one word: <|im_end|>\n<|im_start|>assistant\n"
         "<emb>.<|im_end|>\n<|im_start|>assistant\n"),
        # an image candidate keeps its empty text: the "image and sentence" suffix
        (PIC, "document", None,
         f"{SYS}<|im_start|>user\n{IMG}\nSummarize above image and sentence in one word: <|im_end|>\n"
         "<|im_start|>assistant\n<emb>.<|im_end|>\n<|im_start|>assistant\n"),
        ("a dog and a woman", "document", INSTRUCTION,
         f"{SYS}<|im_start|>user\nA dog and a woman.\nSummarize above sentence in one word: <|im_end|>\n"
         "<|im_start|>assistant\n<emb>.<|im_end|>\n<|im_start|>assistant\n"),
    ],
    "qwen3-vl-embedding": [
        ({"text": "a dog", "image": PIC}, "query", "Retrieve images or text relevant to the user's query",
         "<|im_start|>system\nRetrieve images or text relevant to the user's query.<|im_end|>\n"
         f"<|im_start|>user\n{IMG}a dog<|im_end|>\n<|im_start|>assistant\n"),
        ("a dog", "query", "Is it a dog?",
         "<|im_start|>system\nIs it a dog?<|im_end|>\n<|im_start|>user\na dog<|im_end|>\n<|im_start|>assistant\n"),
        ("a dog", "document", INSTRUCTION,
         "<|im_start|>system\nRepresent the user's input.<|im_end|>\n<|im_start|>user\na dog<|im_end|>\n"
         "<|im_start|>assistant\n"),
    ],
    "mm-embed": [
        ({"text": "a dog", "image": PIC}, "query", "Retrieve a caption",
         "Instruct: Retrieve a caption\nQuery: <image>\na dog"),
        ("a dog", "query", None, "Query: a dog"),
        ({"text": "a dog", "image": PIC}, "document", INSTRUCTION, "<image>\na dog"),
        ("a dog", "document", None, "a dog"),
    ],
}


def _materialise(item: object) -> object:
    if item == PIC:
        return _image(32, 32, seed=5)
    if isinstance(item, dict) and item.get("image") == PIC:
        return {**item, "image": _image(32, 32, seed=5)}
    return item


def test_every_recipe_has_prompt_cases():
    assert set(PROMPTS) == set(EMBED_RECIPES)


@pytest.mark.parametrize(
    ("name", "case"), [(n, i) for n in sorted(PROMPTS) for i in range(len(PROMPTS[n]))]
)
def test_build_prompt_matches_model_card(embedders, name, case):
    item, side, instruction, expected = PROMPTS[name][case]
    assert embedders[name].build_prompt(_materialise(item), side, instruction) == expected


def test_remote_encode_receives_the_documented_prompts(embedders):
    """MM-Embed's own code builds the prompt; build_prompt documents exactly what it builds."""
    emb = embedders["mm-embed"]
    model = emb.model
    items = [{"text": "a dog", "image": _image(32, 32, seed=5)}, "a cat", {"text": "x", "instruction": "Other."}]
    model.calls.clear()
    emb.embed_queries(items, instruction="Retrieve a caption")
    seen = [p for prompts, *_ in model.calls for p in prompts]
    expected = [emb.build_prompt(it, "query", "Retrieve a caption") for it in items]
    assert sorted(seen) == sorted(expected)
    # one encode call per distinct instruction, the instruction passed raw, queries flagged
    assert sorted((c[2], c[1]) for c in model.calls) == [("Other.", True), ("Retrieve a caption", True)]
    assert all(c[3] == get_recipe("mm-embed").max_length for c in model.calls)
    model.calls.clear()
    emb.embed_documents(items)
    assert [(c[1], c[2]) for c in model.calls] == [(False, None)]


# -------------------------------------------------------------------------------------------------
# U-MARVEL: added tokens, instruction span left out of the mean, bidirectional attention, pixels
# -------------------------------------------------------------------------------------------------
def test_u_marvel_tokens_added_in_reference_order(tiny_dirs, embedders):
    from transformers import AutoTokenizer

    released = AutoTokenizer.from_pretrained(tiny_dirs["u-marvel"])
    # like the released checkpoint, the tokenizer on disk lacks the tokens...
    assert all(released.convert_tokens_to_ids(t) in (None, released.unk_token_id)
               for t in ("<emb>", "<instruction_start>", "<instruction_end>"))
    tok = embedders["u-marvel"].processor.tokenizer
    base = len(released)
    # ...and they are added one by one, as demo.py does: <emb>, <instruction_start>, <instruction_end>
    assert [tok.convert_tokens_to_ids(t) for t in ("<emb>", "<instruction_start>", "<instruction_end>")] == [
        base, base + 1, base + 2,
    ]
    for t in ("<emb>", "<instruction_start>", "<instruction_end>"):
        assert tok.encode(f"a{t}b", add_special_tokens=False).count(tok.convert_tokens_to_ids(t)) == 1
    # the checkpoint has rows for them (trained), so its embedding is not resized
    rows = embedders["u-marvel"].model.get_input_embeddings().weight.shape[0]
    assert rows > base + 2 and rows % 64 == 0


def test_missing_embedding_rows_are_resized_with_a_warning(tiny_dirs, caplog):
    from transformers import AutoModel, AutoTokenizer

    model = AutoModel.from_pretrained(tiny_dirs["gme"], dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(tiny_dirs["gme"])
    rows = model.get_input_embeddings().weight.shape[0]
    tok.add_tokens(["<brand_new_a>", "<brand_new_b>"])
    with caplog.at_level("WARNING", logger="umr.modeling"):
        modeling.ensure_token_rows(model, tok, ("<brand_new_a>", "<brand_new_b>"), "test")
    assert model.get_input_embeddings().weight.shape[0] == len(tok) == rows + 2
    assert "untrained" in caplog.text


def _capture(emb: umr.Embedder):
    """Hooks recording the input ids and the final hidden states of every forward pass."""
    seen: dict[str, list[torch.Tensor]] = {"ids": [], "mask": [], "hidden": []}

    def pre(_module, _args, kwargs):
        seen["ids"].append(kwargs["input_ids"].clone())
        seen["mask"].append(kwargs["attention_mask"].clone())

    def post(_module, _args, output):
        seen["hidden"].append(output.last_hidden_state.clone())

    h1 = emb.model.register_forward_pre_hook(pre, with_kwargs=True)
    h2 = emb.model.language_model.register_forward_hook(post)
    return seen, (h1, h2)


def test_u_marvel_mean_leaves_the_instruction_span_out(embedders):
    emb = embedders["u-marvel"]
    tok = emb.processor.tokenizer
    start, end = (tok.convert_tokens_to_ids(t) for t in ("<instruction_start>", "<instruction_end>"))
    for instruction in ("Find the picture", "Retrieve a news caption that matches the photo"):
        item = {"text": "two dogs", "image": _image(60, 40, seed=3)}
        seen, hooks = _capture(emb)
        try:
            vec = emb.embed_queries(item, instruction=instruction)
        finally:
            for h in hooks:
                h.remove()
        (ids,), (hidden,) = seen["ids"], seen["hidden"]
        row = ids[0].tolist()
        i, j = row.index(start), row.index(end)
        n_instr = len(tok.encode(instruction[0].upper() + instruction[1:] + ".", add_special_tokens=False))
        assert j - i - 1 == n_instr  # the span holds exactly the instruction
        keep = [k for k in range(len(row)) if not i <= k <= j]
        expected = torch.nn.functional.normalize(hidden[0, keep].mean(0), dim=-1).numpy()
        with_span = torch.nn.functional.normalize(hidden[0].mean(0), dim=-1).numpy()
        np.testing.assert_allclose(vec, expected, atol=1e-5)
        assert np.abs(vec - with_span).max() > 1e-4  # the exclusion changes the vector


def test_pooling_excludes_marked_span():
    hidden = torch.arange(6, dtype=torch.float32).view(1, 6, 1).repeat(1, 1, 2)
    ids = torch.tensor([[5, 7, 1, 2, 8, 5]])  # 7 = start, 8 = end
    mask = torch.ones_like(ids)
    got = pooling.pool("mean", hidden, mask, ids, exclude_span=(7, 8))
    assert got.tolist() == [[(0 + 5) / 2, (0 + 5) / 2]]
    assert pooling.pool("mean", hidden, mask, ids).tolist() == [[2.5, 2.5]]


def _hidden(emb: umr.Embedder, ids: list[int]) -> torch.Tensor:
    batch = {"input_ids": torch.tensor([ids]), "attention_mask": torch.ones(1, len(ids), dtype=torch.long)}
    r = emb.recipe
    with torch.inference_mode():
        return modeling.forward_hidden(
            emb.model, batch, positions=r.positions, attention=r.attention,
            image_token_id=emb.processor.image_pad_id,
        )[0]


@pytest.mark.parametrize(("name", "bidirectional"), [("u-marvel", True), ("gme", False), ("qwen3-vl-embedding", False)])
def test_attention_direction(embedders, name, bidirectional):
    emb = embedders[name]
    ids = emb.processor.tokenizer.encode("the quick brown fox jumps", add_special_tokens=False)
    changed = [*ids[:-1], emb.processor.tokenizer.encode(" dog", add_special_tokens=False)[0]]
    assert changed != ids
    a, b = _hidden(emb, ids), _hidden(emb, changed)
    first_moved = float((a[0] - b[0]).abs().max())
    if bidirectional:
        assert first_moved > 1e-4  # a later token changed an earlier token's state
    else:
        assert first_moved == 0.0


def test_u_marvel_pixel_budget_is_one_resize_to_300_tokens(embedders):
    proc = embedders["u-marvel"].processor
    geo = proc.geometry(2000, 1500)
    assert geo.num_tokens <= 300 and geo.pre_size == geo.final_size
    assert embedders["u-marvel"].max_pixels == 300 * 28 * 28


# -------------------------------------------------------------------------------------------------
# DSE and Qwen3-VL specifics
# -------------------------------------------------------------------------------------------------
def test_dse_text_is_encoded_with_a_black_dummy_image(embedders):
    emb = embedders["dse"]
    assert emb.processor.padding_side == "left"
    assert emb.processor.geometry(56, 56).num_tokens == 4
    text_only = emb.embed_queries("what is the revenue?")
    with_black = emb.embed_queries({"text": "what is the revenue?", "image": Image.new("RGB", (56, 56))})
    np.testing.assert_allclose(text_only, with_black, atol=1e-6)
    other = emb.embed_queries({"text": "what is the revenue?", "image": Image.new("RGB", (56, 56), "white")})
    assert np.abs(text_only - other).max() > 1e-4


def test_qwen3_vl_uses_patch_16_factor_32(embedders):
    emb = embedders["qwen3-vl-embedding"]
    proc = emb.processor
    assert (proc.patch_size, proc.factor) == (16, 32)
    w, h = proc.geometry(1000, 700).final_size
    assert w % 32 == 0 and h % 32 == 0
    assert proc.geometry(1000, 700).num_tokens == (w // 16) * (h // 16) // 4
    assert proc.geometry(5000, 5000).num_tokens <= 1800


def test_tiny_builder_follows_the_recipe_backbone(tiny_dirs, tmp_path):
    from transformers import AutoConfig

    for name, path in tiny_dirs.items():
        if EMBED_RECIPES[name].backend == "native":
            assert AutoConfig.from_pretrained(path).model_type == EMBED_RECIPES[name].backbone
    p = build_tiny_model(tmp_path / "q25", recipe="gme", backbone="qwen2_5_vl")
    assert AutoConfig.from_pretrained(p).model_type == "qwen2_5_vl"
    emb = umr.Embedder.from_pretrained(p, device="cpu")
    v = emb.embed_documents([{"text": "x", "image": _image(90, 60, seed=1)}, "y"])
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    with pytest.raises(ValueError, match="stand-in"):
        build_tiny_model(tmp_path / "mm", recipe="mm-embed")


# -------------------------------------------------------------------------------------------------
# Matryoshka dims
# -------------------------------------------------------------------------------------------------
def test_matryoshka_truncation_renormalises(tiny_dirs, embedders):
    full = embedders["dse"].embed_documents(["a page of text", _image(80, 80, seed=4)])
    cut = umr.Embedder.from_pretrained(tiny_dirs["dse"], device="cpu", dim=128)
    assert cut.dim == 128
    got = cut.embed_documents(["a page of text", _image(80, 80, seed=4)])
    expected = full[:, :128] / np.linalg.norm(full[:, :128], axis=1, keepdims=True)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert cut.fingerprint != embedders["dse"].fingerprint
    q3 = umr.Embedder.from_pretrained(tiny_dirs["qwen3-vl-embedding"], device="cpu", dim=100)
    np.testing.assert_allclose(np.linalg.norm(q3.embed_queries(["x", "y"]), axis=1), 1.0, atol=1e-5)
    assert q3.embed_queries(["x"]).shape == (1, 100)


@pytest.mark.parametrize(
    ("name", "dim", "message"),
    [
        ("dse", 0, "any integer from 1 to 256"),
        ("dse", 257, "any integer from 1 to 256"),
        ("gme", 32, "allowed dims: 64 .*no Matryoshka"),
        ("qwen3-vl-embedding", 63, "any integer from 64 to 128"),
        ("qwen3-vl-embedding", 129, "any integer from 64 to 128"),
        ("dse", True, "allowed dims"),
    ],
)
def test_matryoshka_refuses_other_dims(tiny_dirs, name, dim, message):
    with pytest.raises(ValueError, match=message):
        umr.Embedder.from_pretrained(tiny_dirs[name], device="cpu", dim=dim)


# -------------------------------------------------------------------------------------------------
# Remote code: never imported without an explicit trust_remote_code=True
# -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("flag", [None, False, "yes", 1])
def test_mm_embed_refuses_without_explicit_trust(tmp_path, modules_cache, flag):
    sentinel = tmp_path / "imported.txt"
    path = write_standin_checkout(tmp_path / "mm", sentinel, module="modeling_refused")
    kwargs = {} if flag is None else {"trust_remote_code": flag}
    with pytest.raises(RemoteCodeError) as info:
        umr.Embedder.from_pretrained(path, device="cpu", **kwargs)
    msg = str(info.value)
    assert "trust_remote_code=True" in msg and "cc-by-nc-4.0" in msg and "non-commercial" in msg
    assert not sentinel.exists()
    assert not modules_cache.exists() or not any(modules_cache.rglob("modeling_refused.py"))
    assert not any("modeling_refused" in m for m in sys.modules)


def test_mm_embed_loads_its_own_code_when_trusted(tmp_path, modules_cache):
    sentinel = tmp_path / "imported.txt"
    path = write_standin_checkout(tmp_path / "mm", sentinel)
    emb = umr.Embedder.from_pretrained(path, device="cpu", trust_remote_code=True)
    assert sentinel.exists()
    v = emb.embed_queries(["a dog", {"text": "a cat", "image": _image(20, 20, seed=1)}], instruction="Find it")
    assert v.shape == (2, 32)
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize("name", ["gme", "u-marvel", "dse", "qwen3-vl-embedding"])
@pytest.mark.parametrize("trust", [False, True])
def test_native_recipes_never_import_checkout_code(tmp_path, modules_cache, name, trust):
    """A checkout whose configs point at its own code still loads with the built-in classes only."""
    path = build_tiny_model(tmp_path / name, recipe=name, seed=2)
    sentinel = tmp_path / "imported.txt"
    (path / "evil.py").write_text(
        f"import pathlib\npathlib.Path({str(sentinel)!r}).write_text('imported')\n"
        "from transformers import PretrainedConfig, PreTrainedModel, PreTrainedTokenizerFast\n"
        "class C(PretrainedConfig):\n    model_type = 'evil'\n"
        "class M(PreTrainedModel):\n    config_class = C\n"
        "class T(PreTrainedTokenizerFast):\n    pass\n"
    )
    for file, key, target in (
        ("config.json", "auto_map", {"AutoConfig": "evil.C", "AutoModel": "evil.M"}),
        ("tokenizer_config.json", "auto_map", {"AutoTokenizer": [None, "evil.T"]}),
    ):
        data = json.loads((path / file).read_text())
        data[key] = target
        (path / file).write_text(json.dumps(data))
    emb = umr.Embedder.from_pretrained(path, device="cpu", trust_remote_code=trust)
    assert emb.embed_documents(["text"]).shape == (1, emb.dim)
    assert not sentinel.exists()
    assert not any("evil" in m.split(".")[-1] for m in sys.modules)


# -------------------------------------------------------------------------------------------------
# Model table
# -------------------------------------------------------------------------------------------------
def test_list_recipes_covers_every_model_and_renders():
    rows = list_recipes()
    assert [r["model_id"] for r in rows] == [m.model_id for m in MODELS]
    for key in ("model_id", "backbone", "pooling", "dims", "license", "purpose"):
        assert all(str(r[key]) for r in rows), key
    by_id = {r["model_id"]: r for r in rows}
    assert by_id["nvidia/MM-Embed"]["license"] == "cc-by-nc-4.0"
    assert by_id["MrLight/dse-qwen2-2b-mrl-v1"]["dims"] == "any integer from 1 to 1536"
    assert by_id["Qwen/Qwen3-VL-Embedding-2B"]["dims"] == "any integer from 64 to 2048"
    assert "instruction excluded" in str(by_id["TencentBAC/U-MARVEL-Qwen2VL-7B-Instruct"]["pooling"])
    md = format_table(rows, "markdown").splitlines()
    assert len(md) == len(rows) + 2 and md[1].count("---") == md[0].count("|") - 1
    assert all(line.count(" | ") == md[0].count(" | ") for line in md[2:])
    text = format_table(rows, "text").splitlines()
    assert len(text) == len(rows) + 2
    assert all(line.startswith(r["model_id"]) for line, r in zip(text[2:], rows))
    # aligned: every column starts at the same offset in every line
    col = text[0].index("backbone")
    assert all(line[col:].startswith(str(r["backbone"])) for line, r in zip(text[2:], rows))
    with pytest.raises(ValueError, match="markdown"):
        format_table(rows, "html")  # type: ignore[arg-type]


def test_readme_model_table_is_generated_from_the_registry(capsys):
    from umr.cli import main

    assert main(["models", "--markdown"]) == 0
    table = capsys.readouterr().out
    assert table == format_table(list_recipes(), "markdown")
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    start = readme.index("<!-- model-table:start -->") + len("<!-- model-table:start -->\n")
    end = readme.index("<!-- model-table:end -->")
    assert readme[start:end] == table, "README model table is stale: run `umr models --markdown`"
    main(["models", "--kind", "embedder"])
    assert capsys.readouterr().out == format_table(list_recipes("embedder"), "text")

