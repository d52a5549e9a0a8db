"""Model recipes as data: one frozen dataclass per model family, one entry per published model id.

Adding a model means adding a recipe (or a ``ModelEntry`` pointing at an existing one), never an ``if``
in the pipeline. Every behaviour that differs between families is a field here: the engine that runs it
(``umr.engines``), the backbone (``umr.backbones``, by transformers ``model_type``), prompt template,
which instruction the document side gets, pooling, attention mode, positions, padding side, pixel
budget, alpha handling, Matryoshka dims. A new family needs a recipe entry and, if its architecture is
new, one backbone package.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal

from umr.engines import DEFAULT_ENGINE, get_engine
from umr.errors import UnknownRecipeError
from umr.late.recipes import MULTI_VECTOR_MODELS, MULTI_VECTOR_RECIPES

Pooling = Literal["last", "mean"]
Attention = Literal["causal", "bidirectional"]
Positions = Literal["1d", "mrope"]
Side = Literal["query", "document"]
#: how transparency becomes RGB: see ``umr.backbones.base.AlphaMode`` (kept in sync with it)
Alpha = Literal["drop", "white-rgba", "white-any"]

QWEN_IMAGE = "<|vision_start|><|image_pad|><|vision_end|>"
# The placeholder token that the processor expands to one token per merged visual patch.
QWEN_IMAGE_PAD = "<|image_pad|>"
#: Marker file written next to a checkpoint (by ``umr.testing`` or ``umr.train``) naming its recipe.
RECIPE_FILE = "umr.json"


@dataclass(frozen=True)
class EmbedRecipe:
    """How one family of MLLM embedders turns an input into a vector.

    The prompt is ``template`` (or the side's own template) filled with ``instruction`` and ``content``.
    ``content`` is the image placeholder and the text part, in the order ``image_first`` says. The text
    part is built in this order:

    1. the text with the side's prefix (``query_prefix`` / ``document_prefix``) in front, or
       ``document_image_text`` for a document that is an image only;
    2. with ``instruction_in_text`` the rendered instruction and a space go in front (U-MARVEL);
    3. ``text_style`` normalises the result (U-MARVEL's M-BEIR ``format_string``).

    An instruction is first resolved (``document_instruction`` rules the document side), normalised by
    ``instruction_style`` and, when not empty, wrapped by ``instruction_format``.
    """

    name: str
    family: str
    backbone: str  # transformers model_type of the checkpoint (qwen2_vl, qwen2_5_vl, qwen3_vl, ...)
    template: str
    default_instruction: str
    #: "default": the document side always gets ``default_instruction`` (GME); "query": documents get
    #: the same instruction resolution as queries; "none": documents get an empty instruction.
    document_instruction: Literal["default", "query", "none"] = "default"
    query_template: str | None = None  # when queries use another template than documents
    document_template: str | None = None
    query_prefix: str = ""
    document_prefix: str = ""
    #: text given to documents that are images only (DSE asks "What is shown in this image?")
    document_image_text: str | None = None
    #: a non-empty instruction is rendered through this format (U-MARVEL wraps it in marker tokens,
    #: MM-Embed writes "Instruct: ...\n"); an empty instruction renders as ""
    instruction_format: str = "{instruction}"
    #: put the rendered instruction in front of the user text (U-MARVEL) instead of ``{instruction}``
    instruction_in_text: bool = False
    #: "none": as given; "punct": strip and end with punctuation (Qwen3-VL-Embedding); "mbeir": M-BEIR
    #: ``format_string`` (strip, drop quotes, capitalise, end with . ? or !)
    instruction_style: Literal["none", "punct", "mbeir"] = "none"
    text_style: Literal["none", "mbeir"] = "none"
    image_first: bool = True
    image_placeholder: str = QWEN_IMAGE
    image_pad_token: str = QWEN_IMAGE_PAD
    #: (width, height) of a black image given to inputs without one (DSE encodes text with a dummy image)
    text_only_image: tuple[int, int] | None = None
    pooling: Pooling = "last"
    #: tokens (start, end) whose span, both ends included, is left out of mean pooling (U-MARVEL)
    pool_exclude_span: tuple[str, str] | None = None
    attention: Attention = "causal"
    positions: Positions = "1d"
    padding_side: Literal["left", "right"] = "right"
    #: first resize like qwen-vl-utils ``fetch_image`` before the image processor resizes again (GME)
    pre_resize: bool = True
    #: the first resize uses the recipe's own pixel budget (U-MARVEL's patched qwen-vl-utils, Qwen3-VL's
    #: per-image min/max_pixels) instead of qwen-vl-utils' defaults (4·28²–16384·28²)
    pre_resize_to_budget: bool = False
    min_pixels: int = 256 * 28 * 28
    max_pixels: int = 1280 * 28 * 28
    max_length: int = 1800
    normalize: bool = True
    #: dims that Matryoshka truncation may keep (empty: only the native dim)
    matryoshka_dims: tuple[int, ...] = ()
    #: any dim from this one up to the native dim may be kept (a Matryoshka range, Qwen3-VL-Embedding)
    matryoshka_min_dim: int | None = None
    #: tokens the tokenizer must know, in the order the reference adds them when they are missing
    added_tokens: tuple[str, ...] = ()
    #: the checkpoint ships its own modelling code: it loads only with an explicit trust_remote_code=True
    trust_remote_code: bool = False
    #: the engine that runs it (``umr.engines``): "native" (umr runs the backbone) or "own-code" (the
    #: checkpoint's own ``encode``)
    engine: str = DEFAULT_ENGINE
    #: how an image with transparency becomes RGB, as the model's reference code does it
    alpha: Alpha = "drop"
    #: words for the model table when the pooling is the checkpoint's own (MM-Embed: "latent attention")
    pooling_note: str | None = None
    preferred_dtype: Literal["bfloat16", "float16", "float32"] = "bfloat16"
    #: appended to the text part, by what the input holds: (image and text, text only, image only); a
    #: document with an image takes the first even when its text is empty (U-MARVEL's M-BEIR evaluation)
    text_suffixes: tuple[str, str, str] | None = None
    #: token limit of queries when it differs from ``max_length`` (U-MARVEL cuts candidates only)
    query_max_length: int | None = None
    #: the official code this recipe follows: repository and file(s), or model card section
    reference: str = ""
    #: the recipe whose checkpoints this one runs with another prompt (a variant, chosen with recipe=)
    variant_of: str | None = None

    def __post_init__(self) -> None:
        _check_engine(self.name, self.engine)

    def max_length_for(self, side: Side) -> int:
        """Token limit of one input on ``side`` (longer inputs are cut on the right)."""
        if side == "query" and self.query_max_length is not None:
            return self.query_max_length
        return self.max_length

    @property
    def backend(self) -> str:
        """Old name of the engine choice: "native", or "remote-encode" for an engine running checkpoint code."""
        return "remote-encode" if get_engine(self.engine).runs_checkpoint_code else "native"

    def template_for(self, side: Side) -> str:
        if side == "query" and self.query_template is not None:
            return self.query_template
        if side == "document" and self.document_template is not None:
            return self.document_template
        return self.template

    def prefix_for(self, side: Side) -> str:
        return self.query_prefix if side == "query" else self.document_prefix

    def allowed_dims(self, native_dim: int) -> str:
        """The dims ``Embedder(dim=...)`` accepts, in words (for error messages and the model table)."""
        if self.matryoshka_min_dim is not None:
            return f"any integer from {self.matryoshka_min_dim} to {native_dim}"
        dims = sorted({native_dim, *(d for d in self.matryoshka_dims if d <= native_dim)}, reverse=True)
        return ", ".join(str(d) for d in dims)


@dataclass(frozen=True)
class RerankRecipe:
    """A pointwise generative reranker: prompt (query, candidate), read two answer-token logits.

    ``template`` is the whole prompt, chat markup included, formatted with ``instruction``, ``query`` and
    ``candidate``; the query and the candidate are each rendered as their image placeholder and text, in
    the order ``image_first`` says. Images enter the prompt in the order their placeholders appear in
    ``template`` (MonoQwen puts the candidate before the query). The score reads the next-token logits of
    ``yes_token`` and ``no_token`` at the last position only.
    """

    name: str
    family: str
    #: transformers model_type of the checkpoint (qwen2_vl, qwen2_5_vl, qwen3_vl, ...)
    backbone: str
    template: str
    #: what fills ``{instruction}`` unless the caller gives another one
    default_instruction: str
    yes_token: str
    no_token: str
    #: "softmax": P(yes) = softmax([yes, no])[0]; "sigmoid": sigmoid(yes - no). Both equal in value
    #: for two logits; kept apart because the model cards describe them differently.
    score: Literal["softmax", "sigmoid"] = "softmax"
    image_first: bool = True
    image_placeholder: str = QWEN_IMAGE
    image_pad_token: str = QWEN_IMAGE_PAD
    #: first resize like qwen-vl-utils ``fetch_image`` before the image processor resizes again
    pre_resize: bool = False
    min_pixels: int = 4 * 28 * 28
    max_pixels: int = 1024 * 28 * 28
    #: longest prompt (query + candidate, visual tokens included); longer candidate text is cut to fit
    max_length: int = 4096
    positions: Positions = "mrope"
    padding_side: Literal["left", "right"] = "left"
    #: the checkpoint is a peft LoRA adapter; base model used when its adapter_config.json names none
    adapter_of: str | None = None
    #: the engine that runs it (``umr.engines``)
    engine: str = DEFAULT_ENGINE
    #: how an image with transparency becomes RGB, as the model's reference code does it
    alpha: Alpha = "drop"
    preferred_dtype: Literal["bfloat16", "float16", "float32"] = "bfloat16"
    #: the first resize uses the recipe's own pixel budget (U-MARVEL's patched qwen-vl-utils)
    pre_resize_to_budget: bool = False
    #: "mbeir": query and candidate texts go through M-BEIR ``format_string``, and an empty text next to
    #: an image is left out (U-MARVEL's rerank datasets)
    text_style: Literal["none", "mbeir"] = "none"
    #: the instruction is the task instruction put in front of the query text (M-BEIR), not ``{instruction}``
    instruction_in_query: bool = False
    #: "raw": the last position's logits; "generate": the logits as ``generate(...).scores[0]`` reports
    #: them, the checkpoint's ``generation_config.repetition_penalty`` applied to answer tokens that are
    #: already in the prompt (how U-MARVEL's zero-shot rerank code scores)
    answer_logits: Literal["raw", "generate"] = "raw"
    #: the official code this recipe follows: repository and file(s), or model card section
    reference: str = ""
    #: the recipe whose checkpoints this one runs with another prompt (a variant, chosen with recipe=)
    variant_of: str | None = None

    def __post_init__(self) -> None:
        _check_engine(self.name, self.engine)


def _check_engine(recipe: str, engine: str) -> None:
    info = get_engine(engine)  # raises for an unknown name
    if not info.local:
        raise ValueError(
            f"recipe {recipe!r}: engine {engine!r} is not one a recipe can name (it is chosen by passing a "
            "server URL); use a local engine such as 'native'"
        )


@dataclass(frozen=True)
class ModelEntry:
    """A published checkpoint: its id, the recipe it follows and the facts for the model table."""

    model_id: str
    recipe: str
    kind: Literal["embedder", "reranker"]
    params: str
    dim: int | None
    license: str
    purpose: str
    aliases: tuple[str, ...] = field(default=())


# ---------------------------------------------------------------------------------------------------
# Embedding recipes
# ---------------------------------------------------------------------------------------------------
# Prompts are written out as the reference code renders them (Qwen2-VL chat template: a default system
# turn, image as <|vision_start|><|image_pad|><|vision_end|>, "<|im_end|>\n" after each turn).
_QWEN_CHAT = (
    "<|im_start|>system\n{instruction}<|im_end|>\n<|im_start|>user\n{content}<|im_end|>\n"
    "<|im_start|>assistant\n<|endoftext|>"
)

# GME (gme_inference.py): hand-built prompt ending in <|endoftext|>, the pooled token; queries carry the
# task instruction in the system turn, corpus items always the default one; 1-D positions.
GME = EmbedRecipe(
    name="gme",
    family="GME",
    backbone="qwen2_vl",
    template=_QWEN_CHAT,
    default_instruction="You are a helpful assistant.",
    document_instruction="default",
    pooling="last",
    attention="causal",
    positions="1d",
    padding_side="right",
    pre_resize=True,
    min_pixels=256 * 28 * 28,
    max_pixels=1280 * 28 * 28,
    max_length=1800,
    alpha="drop",  # gme_inference.py fetch_image: image.convert("RGB")
    reference="Alibaba-NLP/gme-Qwen2-VL-2B-Instruct (model repository): gme_inference.py",
)

# U-MARVEL (chaxjli/U-MARVEL demo.py, dataset/datasets_mbeir.py, models/qwen2_vl.py): user turn then
# an assistant turn "<emb>." rendered with add_generation_prompt=True (so a second assistant header
# follows); the query text is format_string("<instruction_start>{I}<instruction_end> {text}"), candidates
# format_string(text) with no instruction; bidirectional attention, 1-D positions (the reference calls
# the inner language model with position_ids=None), mean over every non-pad token except the instruction
# span (markers included); images through its patched qwen-vl-utils with 4·28²–300·28² pixels, which
# the processor then leaves as they are; candidates are truncated at 1024 tokens, queries are not (only
# beyond the model's 32768 positions). Always bidirectional: the reference's SDPA shortcut (causal when a
# batch has no padding) would make a vector depend on its batch-mates; training batches are padded.
U_MARVEL = EmbedRecipe(
    name="u-marvel",
    family="U-MARVEL",
    backbone="qwen2_vl",
    template=(
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\n{content}<|im_end|>\n"
        "<|im_start|>assistant\n<emb>.<|im_end|>\n<|im_start|>assistant\n"
    ),
    default_instruction="",
    document_instruction="none",
    instruction_format="<instruction_start>{instruction}<instruction_end>",
    instruction_in_text=True,
    instruction_style="mbeir",
    text_style="mbeir",
    pooling="mean",
    pool_exclude_span=("<instruction_start>", "<instruction_end>"),
    attention="bidirectional",
    positions="1d",
    padding_side="right",
    pre_resize=True,
    pre_resize_to_budget=True,
    min_pixels=4 * 28 * 28,
    max_pixels=300 * 28 * 28,
    max_length=1024,
    query_max_length=32768,
    added_tokens=("<emb>", "<instruction_start>", "<instruction_end>"),
    alpha="drop",  # its patched qwen-vl-utils (collators/qwen2_vision_process.py): image_obj.convert("RGB")
    reference=(
        "chaxjli/U-MARVEL: demo.py, dataset/datasets_mbeir.py (prompt_index=1, no suffix, as the hard-negative "
        "and distillation training stages), collators/mbeir_eval.py, collators/qwen2_vision_process.py, "
        "models/qwen2_vl_finetune.py"
    ),
)

# U-MARVEL with the prompt of its M-BEIR evaluation (dataset/datasets_mbeir.py QueryDataset/CandidateDataset
# default prompt_index=0, used by eval/eval_mbeir_local_finetune_fast.py): a one-word summary request after
# the text; an image candidate takes the "image and sentence" one even when its text is empty.
U_MARVEL_MBEIR_EVAL = replace(
    U_MARVEL,
    name="u-marvel-mbeir-eval",
    text_suffixes=(
        "\nSummarize above image and sentence in one word: ",
        "\nSummarize above sentence in one word: ",
        "\nSummarize above image in one word: ",
    ),
    variant_of="u-marvel",
    reference=(
        "chaxjli/U-MARVEL: dataset/datasets_mbeir.py (QueryDataset/CandidateDataset, prompt_index=0) as used by "
        "eval/eval_mbeir_local_finetune_fast.py; the rest as recipe u-marvel"
    ),
)

# DSE (MrLight/dse-qwen2-2b-mrl-v1 model card): chat template + "<|endoftext|>", left padding, last
# token, standard M-RoPE forward; text goes with a dummy image (28x28 asked to resize to 1x1, which
# qwen-vl-utils' smart_resize turns into 56x56); truncate to the first d dims, then normalise. The card
# has no fused document: umr gives it the image and "Document: " + text. The card's get_embedding slices
# any prefix ("you can use any dimension ... e.g. 512"), so any dim from 1 to the native one is accepted.
DSE = EmbedRecipe(
    name="dse",
    family="DSE",
    backbone="qwen2_vl",
    template=(
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n{content}<|im_end|>\n"
        "<|im_start|>assistant\n<|endoftext|>"
    ),
    default_instruction="",
    document_instruction="none",
    query_prefix="Query: ",
    document_prefix="Document: ",
    document_image_text="What is shown in this image?",
    text_only_image=(56, 56),
    pooling="last",
    attention="causal",
    positions="mrope",
    padding_side="left",
    pre_resize=True,
    min_pixels=1 * 28 * 28,
    max_pixels=2560 * 28 * 28,
    max_length=8192,
    matryoshka_min_dim=1,
    # the card's process_vision_info is qwen-vl-utils of 2024, whose fetch_image does convert("RGB")
    # (the RGBA-on-white to_rgb came in January 2025, QwenLM/Qwen3-VL PR #661)
    alpha="drop",
    reference="MrLight/dse-qwen2-2b-mrl-v1 model card: How to Use the Model (encode query, encode document)",
)

# Qwen3-VL-Embedding (its repo's scripts/qwen3_vl_embedding.py): the instruction is the system turn (default
# "Represent the user's input.", a user instruction gets a final "." unless it ends in punctuation),
# generation prompt, last non-pad token, right padding, M-RoPE; images resized once by qwen-vl-utils
# (factor 32) within 4·32²–1800·32² and not again by the processor; MRL down to 64 dims.
QWEN3_VL_EMBEDDING = EmbedRecipe(
    name="qwen3-vl-embedding",
    family="Qwen3-VL-Embedding",
    backbone="qwen3_vl",
    template=(
        "<|im_start|>system\n{instruction}<|im_end|>\n<|im_start|>user\n{content}<|im_end|>\n"
        "<|im_start|>assistant\n"
    ),
    default_instruction="Represent the user's input.",
    document_instruction="default",
    instruction_style="punct",
    pooling="last",
    attention="causal",
    positions="mrope",
    padding_side="right",
    pre_resize=True,
    pre_resize_to_budget=True,
    min_pixels=4 * 32 * 32,
    max_pixels=1800 * 32 * 32,
    max_length=8192,
    matryoshka_min_dim=64,
    alpha="white-rgba",  # qwen-vl-utils' current to_rgb: RGBA pasted on white, other modes convert("RGB")
    reference=(
        "QwenLM/Qwen3-VL-Embedding: src/models/qwen3_vl_embedding.py (scripts/qwen3_vl_embedding.py in the "
        "model repositories)"
    ),
)

# MM-Embed (nvidia/MM-Embed modeling_nvmmembed.py): LLaVA-Next + NV-Embed latent attention, run by the
# checkpoint's own ``encode``; the templates below only document what that code builds.
MM_EMBED = EmbedRecipe(
    name="mm-embed",
    family="MM-Embed",
    backbone="llava_next",
    template="{content}",
    query_template="{instruction}Query: {content}",
    default_instruction="",
    document_instruction="none",
    instruction_format="Instruct: {instruction}\n",
    image_placeholder="<image>\n",
    image_pad_token="<image>",
    pooling="mean",
    attention="bidirectional",
    positions="1d",
    pre_resize=False,
    min_pixels=336 * 336,
    max_pixels=672 * 672,
    max_length=4096,
    trust_remote_code=True,
    engine="own-code",
    pooling_note="latent attention",
    # umr hands its encode() RGB images made by convert("RGB"), as its LLaVA-Next processor of that time
    # (transformers 4 image_transforms.convert_to_rgb: plain convert) would
    alpha="drop",
    preferred_dtype="float16",
    reference="nvidia/MM-Embed: modeling_nvmmembed.py (NVMMEmbedModel.encode) and the model card's usage (max_length=4096)",
)

EMBED_RECIPES: dict[str, EmbedRecipe] = {
    r.name: r for r in (GME, U_MARVEL, U_MARVEL_MBEIR_EVAL, DSE, QWEN3_VL_EMBEDDING, MM_EMBED)
}

EMBED_MODELS: tuple[ModelEntry, ...] = (
    ModelEntry(
        "Alibaba-NLP/gme-Qwen2-VL-2B-Instruct", "gme", "embedder", "2.2B", 1536, "apache-2.0",
        "default; text, image, fused and page retrieval",
    ),
    ModelEntry(
        "Alibaba-NLP/gme-Qwen2-VL-7B-Instruct", "gme", "embedder", "8.3B", 3584, "apache-2.0",
        "higher quality GME; same recipe",
    ),
    ModelEntry(
        "TencentBAC/U-MARVEL-Qwen2VL-7B-Instruct", "u-marvel", "embedder", "8.3B", 3584,
        "code MIT; weights: see model card",
        "universal retrieval (M-BEIR), bidirectional mean pooling",
    ),
    ModelEntry(
        "MrLight/dse-qwen2-2b-mrl-v1", "dse", "embedder", "2.2B", 1536, "apache-2.0",
        "screenshot / page retrieval, Matryoshka dims",
    ),
    ModelEntry(
        "Qwen/Qwen3-VL-Embedding-2B", "qwen3-vl-embedding", "embedder", "2B", 2048, "apache-2.0",
        "text, image, fused, page retrieval; MRL 64-2048",
    ),
    ModelEntry(
        "Qwen/Qwen3-VL-Embedding-8B", "qwen3-vl-embedding", "embedder", "8B", 4096, "apache-2.0",
        "higher quality Qwen3-VL-Embedding; MRL 64-4096",
    ),
    ModelEntry(
        "nvidia/MM-Embed", "mm-embed", "embedder", "8.2B", 4096, "cc-by-nc-4.0",
        "non-commercial only; runs its own code (trust_remote_code=True)",
    ),
)

# ---------------------------------------------------------------------------------------------------
# Reranking recipes
# ---------------------------------------------------------------------------------------------------
_QWEN_RERANK_CHAT = (
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n{user}<|im_end|>\n"
    "<|im_start|>assistant\n"
)

# Off-the-shelf Qwen2-VL / Qwen2.5-VL Instruct as a zero-shot judge (MM-Embed, U-MARVEL). The wording is
# the LamRA / U-MARVEL judge prompt (typo "responed" fixed); the parts are put on their own lines, and the
# Qwen2-VL chat template's default system turn is kept, as apply_chat_template would render it.
QWEN_ZERO_SHOT = RerankRecipe(
    name="qwen-vl-yesno",
    family="zero-shot MLLM",
    backbone="qwen2_vl",
    template=_QWEN_RERANK_CHAT.replace("{user}", "{instruction}\nQuery: {query}\nCandidate: {candidate}"),
    default_instruction=(
        "I will provide you with a query and a candidate. Please evaluate whether the candidate meets the "
        "requirements of the query. If it does, respond with 'Yes'; if it doesn't, respond with 'No'."
    ),
    yes_token="Yes",
    no_token="No",
    score="softmax",
    pre_resize=False,  # one resize, as the Qwen2-VL processor does on its own
    min_pixels=4 * 28 * 28,
    max_pixels=1024 * 28 * 28,
    max_length=4096,
    # the LamRA / U-MARVEL judges load images through 2024 qwen-vl-utils copies: convert("RGB")
    alpha="drop",
    reference=(
        "umr's clean judge prompt; wording from chaxjli/U-MARVEL "
        "dataset/datasets_mbeir_eval_zero_shot_rerank_pointwise.py, Qwen2-VL processor (one resize)"
    ),
)

# The zero-shot judge exactly as U-MARVEL scores it (dataset/datasets_mbeir_eval_zero_shot_rerank_pointwise.py,
# collators/eval_rerank.py, eval/eval_mbeir_zero_shot_rerank_pointwise.py), to reproduce its published
# numbers: the parts joined with no separator, the judge text with its typo and the 24 spaces its
# backslash line continuation leaves, M-BEIR format_string texts with the task instruction in front of the
# query, images pre-resized to 300 visual tokens, and the logits as generate(...).scores[0] reports them.
_UMARVEL_JUDGE = (
    "I will provide you with a query and a candidate. Please evaluate whether the candidate"
    + " " * 24
    + "meets the requirements of the query. If it does, respond with 'Yes'; if it doesn't, responed with 'No'."
)
QWEN_ZERO_SHOT_UMARVEL = replace(
    QWEN_ZERO_SHOT,
    name="qwen-vl-yesno-u-marvel",
    template=_QWEN_RERANK_CHAT.replace("{user}", _UMARVEL_JUDGE + "Query:{query}Candidate:{candidate}"),
    default_instruction="",
    instruction_in_query=True,
    text_style="mbeir",
    pre_resize=True,
    pre_resize_to_budget=True,
    min_pixels=4 * 28 * 28,
    max_pixels=300 * 28 * 28,
    answer_logits="generate",
    variant_of="qwen-vl-yesno",
    reference=(
        "chaxjli/U-MARVEL: dataset/datasets_mbeir_eval_zero_shot_rerank_pointwise.py, collators/eval_rerank.py, "
        "collators/qwen2_vision_process.py, eval/eval_mbeir_zero_shot_rerank_pointwise.py"
    ),
)

# lightonai/MonoQwen2-VL-v0.1: LoRA on Qwen2-VL-2B-Instruct, MonoT5 objective. One user turn holding the
# page image first, then the model card's prompt; P(True) from softmax over [True, False].
MONOQWEN = RerankRecipe(
    name="monoqwen2-vl",
    family="MonoQwen2-VL",
    backbone="qwen2_vl",
    template=_QWEN_RERANK_CHAT.replace("{user}", "{candidate}{instruction} The query is: {query}"),
    default_instruction=(
        "Assert the relevance of the previous image document to the following query, answer True or False."
    ),
    yes_token="True",
    no_token="False",
    score="softmax",
    pre_resize=False,  # the card calls the Qwen2-VL processor directly: one resize
    min_pixels=4 * 28 * 28,
    max_pixels=16384 * 28 * 28,  # the card's processor defaults; pass max_pixels= to lower it
    max_length=32768,  # the card cuts nothing; the model has 32768 positions
    adapter_of="Qwen/Qwen2-VL-2B-Instruct",
    # the card hands the PIL image to the Qwen2-VL processor, whose convert_to_rgb in transformers 4.x
    # (its release, Oct 2024) was a plain convert("RGB"); transformers 5 would composite ("white-any")
    alpha="drop",
    reference="lightonai/MonoQwen2-VL-v0.1 model card: How to use (processor of Qwen/Qwen2-VL-2B-Instruct, its defaults)",
)

# Qwen/Qwen3-VL-Reranker-2B / -8B: fixed judge system prompt, task instruction in the user turn, query
# and document content (image before text), sigmoid(logit_yes - logit_no) at the last position.
QWEN3_VL_RERANKER = RerankRecipe(
    name="qwen3-vl-reranker",
    family="Qwen3-VL-Reranker",
    backbone="qwen3_vl",
    template=(
        "<|im_start|>system\nJudge whether the Document meets the requirements based on the Query and the "
        'Instruct provided. Note that the answer can only be "yes" or "no".<|im_end|>\n'
        "<|im_start|>user\n<Instruct>: {instruction}<Query>:{query}\n<Document>:{candidate}<|im_end|>\n"
        "<|im_start|>assistant\n"
    ),
    default_instruction="Given a search query, retrieve relevant candidates that answer the query.",
    yes_token="yes",
    no_token="no",
    score="sigmoid",
    pre_resize=False,  # qwen-vl-utils resizes once (factor 32), the processor then does not resize
    min_pixels=4 * 32 * 32,
    max_pixels=1800 * 32 * 32,
    max_length=10240,
    alpha="white-rgba",  # its official code loads images through qwen-vl-utils' current to_rgb
    reference=(
        "QwenLM/Qwen3-VL-Embedding: src/models/qwen3_vl_reranker.py (scripts/qwen3_vl_reranker.py in the "
        "model repositories)"
    ),
)

RERANK_RECIPES: dict[str, RerankRecipe] = {
    r.name: r for r in (QWEN_ZERO_SHOT, QWEN_ZERO_SHOT_UMARVEL, MONOQWEN, QWEN3_VL_RERANKER)
}

#: what ``Reranker.from_pretrained()`` loads when given no model
DEFAULT_RERANKER = "Qwen/Qwen3-VL-Reranker-2B"

# ---------------------------------------------------------------------------------------------------
# Published checkpoints
# ---------------------------------------------------------------------------------------------------
#: late-interaction (multi-vector) embedders: their recipes live in ``umr.late.recipes``
MULTI_VECTOR_ENTRIES: tuple[ModelEntry, ...] = tuple(
    ModelEntry(m.model_id, m.recipe, "embedder", m.params, MULTI_VECTOR_RECIPES[m.recipe].dim, m.license, m.purpose)
    for m in MULTI_VECTOR_MODELS
)

MODELS: tuple[ModelEntry, ...] = (
    *EMBED_MODELS,
    *MULTI_VECTOR_ENTRIES,
    ModelEntry(
        "Qwen/Qwen3-VL-Reranker-2B", "qwen3-vl-reranker", "reranker", "2B", None, "apache-2.0",
        "default reranker; text, image and fused queries and candidates",
    ),
    ModelEntry(
        "Qwen/Qwen3-VL-Reranker-8B", "qwen3-vl-reranker", "reranker", "8B", None, "apache-2.0",
        "higher quality Qwen3-VL reranker; same recipe",
    ),
    ModelEntry(
        "lightonai/MonoQwen2-VL-v0.1", "monoqwen2-vl", "reranker", "2.2B", None, "apache-2.0",
        "page-image reranker (LoRA on Qwen2-VL-2B-Instruct; needs umr[peft])",
    ),
    ModelEntry(
        "Qwen/Qwen2-VL-2B-Instruct", "qwen-vl-yesno", "reranker", "2.2B", None, "apache-2.0",
        "zero-shot Yes/No reranker",
    ),
    ModelEntry(
        "Qwen/Qwen2-VL-7B-Instruct", "qwen-vl-yesno", "reranker", "8.3B", None, "apache-2.0",
        "zero-shot Yes/No reranker",
    ),
    ModelEntry(
        "Qwen/Qwen2.5-VL-3B-Instruct", "qwen-vl-yesno", "reranker", "3.8B", None, "qwen-research",
        "zero-shot Yes/No reranker (non-commercial licence)",
    ),
    ModelEntry(
        "Qwen/Qwen2.5-VL-7B-Instruct", "qwen-vl-yesno", "reranker", "8.3B", None, "apache-2.0",
        "zero-shot Yes/No reranker",
    ),
)

DEFAULT_EMBEDDER = "Alibaba-NLP/gme-Qwen2-VL-2B-Instruct"


def _norm(s: str) -> str:
    return s.strip().lower()


def find_model(model_id: str) -> ModelEntry | None:
    """The registry entry of a published id (case-insensitive), or ``None``."""
    key = _norm(model_id)
    for entry in MODELS:
        if _norm(entry.model_id) == key or key in (_norm(a) for a in entry.aliases):
            return entry
    return None


def _lookup(name: str, table: dict, kind: str):
    key = _norm(name)
    if key in table:
        return table[key]
    entry = find_model(name)
    if entry is not None and entry.recipe in table:
        return table[entry.recipe]
    known = ", ".join(sorted(table))
    ids = ", ".join(e.model_id for e in MODELS if e.recipe in table)
    raise UnknownRecipeError(
        f"unknown {kind} recipe or model id {name!r}. Valid recipe names: {known}. "
        f"Known model ids: {ids}. For a local directory pass recipe=<name>."
    )


def get_recipe(name_or_id: str) -> EmbedRecipe:
    """Look up an embedding recipe by recipe name (``"gme"``) or by published model id."""
    return _lookup(name_or_id, EMBED_RECIPES, "embedding")


def get_rerank_recipe(name_or_id: str) -> RerankRecipe:
    """Look up a reranking recipe by recipe name or by published model id."""
    return _lookup(name_or_id, RERANK_RECIPES, "reranking")


def _recipe_from_dir(path: Path) -> str | None:
    marker = path / RECIPE_FILE
    if marker.is_file():
        try:
            return str(json.loads(marker.read_text())["recipe"])
        except (ValueError, KeyError, OSError):
            return None
    # A local copy keeps the hub name as its folder name: ".../gme-Qwen2-VL-2B-Instruct"
    base = _norm(path.name)
    for entry in MODELS:
        if _norm(entry.model_id.split("/")[-1]) == base:
            return entry.recipe
    return None


def resolve_recipe_name(model_id_or_path: str | os.PathLike, recipe: str | None, kind: str) -> str:
    """Pick the recipe name for a model: explicit argument, registry id, marker file or folder name."""
    table = EMBED_RECIPES if kind == "embedding" else RERANK_RECIPES
    if recipe is not None:
        return _lookup(recipe, table, kind).name
    path = Path(os.fspath(model_id_or_path)).expanduser()
    if path.is_dir():
        found = _recipe_from_dir(path)
        if found is not None and found in table:
            return found
        raise UnknownRecipeError(
            f"cannot tell which {kind} recipe the local model {os.fspath(path)!r} follows; pass "
            f"recipe=<name> (valid: {', '.join(sorted(table))})"
        )
    return _lookup(os.fspath(model_id_or_path), table, kind).name


def read_recipe_marker(path: str | os.PathLike) -> dict[str, Any]:
    """The ``umr.json`` of a local checkpoint directory as a dict (empty when absent or unreadable)."""
    marker = Path(os.fspath(path)).expanduser() / RECIPE_FILE
    try:
        data = json.loads(marker.read_text()) if marker.is_file() else {}
    except (ValueError, OSError):
        return {}
    return data if isinstance(data, dict) else {}


def write_recipe_marker(path: str | os.PathLike, recipe: str, **extra: object) -> None:
    """Record in a checkpoint directory which recipe it follows, so ``recipe=`` can be omitted."""
    Path(path, RECIPE_FILE).write_text(json.dumps({"recipe": recipe, **extra}, indent=2))


def list_recipes(kind: Literal["embedder", "reranker", "all"] = "all") -> list[dict[str, object]]:
    """The model table: one row per published id with its recipe facts.

    Besides the table's columns each row carries ``reference`` (the official code the recipe follows) and
    ``variants``: the recipes that run the same checkpoints with another prompt (``recipe=<name>``), each
    with its own ``reference``.
    """
    rows: list[dict[str, object]] = []
    for entry in MODELS:
        if kind != "all" and entry.kind != kind:
            continue
        if entry.recipe in MULTI_VECTOR_RECIPES:
            mv = MULTI_VECTOR_RECIPES[entry.recipe]
            pooling = "every token (late interaction, MaxSim)"
            dims = f"{mv.dim} per token"
            backbone = mv.backbone
            reference = mv.reference
            variants: list[dict[str, str]] = []
        else:
            table: dict[str, EmbedRecipe] | dict[str, RerankRecipe] = (
                EMBED_RECIPES if entry.kind == "embedder" else RERANK_RECIPES
            )
            reference = table[entry.recipe].reference
            variants = [
                {"recipe": v.name, "reference": v.reference} for v in table.values() if v.variant_of == entry.recipe
            ]
            if entry.kind == "embedder":
                r = EMBED_RECIPES[entry.recipe]
                pooling = _embed_pooling_text(r)
                dims = r.allowed_dims(entry.dim) if entry.dim is not None else "-"
                backbone = r.backbone
            else:
                rr = RERANK_RECIPES[entry.recipe]
                pooling = f"{rr.yes_token}/{rr.no_token} {rr.score}"
                dims = "-"
                backbone = rr.backbone
        rows.append(
            {
                "model_id": entry.model_id,
                "kind": entry.kind,
                "recipe": entry.recipe,
                "backbone": backbone,
                "params": entry.params,
                "pooling": pooling,
                "dims": dims,
                "license": entry.license,
                "purpose": entry.purpose,
                "reference": reference,
                "variants": variants,
            }
        )
    return rows


def _embed_pooling_text(r: EmbedRecipe) -> str:
    if get_engine(r.engine).runs_checkpoint_code:
        return f"own code ({r.pooling_note})" if r.pooling_note else "own code"
    text = f"{r.pooling} ({r.attention})"
    if r.pool_exclude_span is not None:
        text += ", instruction excluded"
    return text


#: columns of the model table, in order, with their headers
TABLE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("model_id", "model"),
    ("kind", "kind"),
    ("recipe", "recipe"),
    ("backbone", "backbone"),
    ("params", "params"),
    ("pooling", "pooling"),
    ("dims", "dims"),
    ("license", "licence"),
    ("purpose", "purpose"),
)


def format_table(rows: list[dict[str, object]], fmt: Literal["markdown", "text"] = "markdown") -> str:
    """Render ``list_recipes()`` rows as a markdown table (README) or aligned plain text (``umr models``)."""
    if fmt not in ("markdown", "text"):
        raise ValueError(f"fmt must be 'markdown' or 'text', got {fmt!r}")
    keys = [k for k, _ in TABLE_COLUMNS]
    headers = [h for _, h in TABLE_COLUMNS]
    cells = [[str(row.get(k, "")) for k in keys] for row in rows]
    if fmt == "markdown":

        def md(values: list[str]) -> str:
            return "| " + " | ".join(v.replace("|", "\\|").replace("\n", " ") for v in values) + " |"

        lines = [md(headers), "|" + "|".join("---" for _ in headers) + "|"]
        lines += [md(c) for c in cells]
        return "\n".join(lines) + "\n"
    widths = [max(len(h), *(len(c[i]) for c in cells)) if cells else len(h) for i, h in enumerate(headers)]

    def line(values: list[str]) -> str:
        return "  ".join(v.ljust(w) for v, w in zip(values, widths)).rstrip()

    out = [line(headers), line(["-" * w for w in widths])] + [line(c) for c in cells]
    return "\n".join(out) + "\n"


def recipe_fields(recipe: EmbedRecipe | RerankRecipe) -> dict[str, object]:
    """The recipe as a plain dict (for ``umr models --json`` and debugging)."""
    return {f.name: getattr(recipe, f.name) for f in fields(recipe)}
