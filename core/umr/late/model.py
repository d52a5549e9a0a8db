"""The ``late-interaction`` engine: run a ColQwen-family model, one L2-normalised 128-d vector per token.

Recipes (``umr.late.recipes``) name this engine; ``umr.Embedder.from_pretrained`` and
``umr.Reranker.from_pretrained`` hand such a model to it. It uses the Qwen-VL backbone package
(``umr.backbones``: processor, forward to final hidden states) and adds the per-token head.

Loading: the Qwen-VL base model (``AutoModel``) plus the projection head read from the checkpoint's
safetensors (``custom_text_proj.weight`` / ``.bias``). A LoRA-adapter checkout (``adapter_config.json``)
is applied through peft on top of its base and merged; colpali-engine saved its adapters with the module
names of its own class (``model.layers...`` / ``visual...`` / ``custom_text_proj``), which are mapped to
this module tree first.

Running: queries become ``prefix + text + suffix``, pages the page prompt with the image's visual tokens;
the recipe's processor (left padding, one resize within the pixel budget) tokenises them, the backbone
runs with causal attention and its M-RoPE positions, and every real token's final hidden state is
projected, normalised and kept; padding is dropped (``mask_non_image_tokens`` keeps only image tokens of
pages).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from umr import modeling
from umr.backbones import backbone_of
from umr.backbones.base import PreparedInput
from umr.errors import InputError, ModelNotFoundError, UnknownRecipeError
from umr.inputs import InputLike, MultimodalInput, coerce_inputs
from umr.late.recipes import (
    MULTI_VECTOR_MODELS,
    MULTI_VECTOR_RECIPES,
    MultiVectorRecipe,
    late_fingerprint,
    multi_vector_recipe_name,
)
from umr.late.result import MultiVectors
from umr.late.scoring import maxsim

logger = logging.getLogger(__name__)

class _ColModule(torch.nn.Module):
    """The module tree the head and the adapter attach to: ``model`` (Qwen-VL base) + the head."""

    def __init__(self, backbone: Any, head: torch.nn.Linear, head_name: str) -> None:
        super().__init__()
        self.model = backbone
        self.head_name = head_name
        setattr(self, head_name, head)


def _safetensors_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.safetensors"))


def load_head(folder: Path, name: str, dtype: torch.dtype) -> torch.nn.Linear:
    """The projection head ``<name>.weight`` (and ``.bias``) from a checkpoint's safetensors files."""
    from safetensors import safe_open

    weight = bias = None
    for file in _safetensors_files(folder):
        with safe_open(str(file), framework="pt") as f:
            for key in f.keys():  # noqa: SIM118 (safe_open is not a mapping)
                if key == f"{name}.weight" or key.endswith(f".{name}.weight"):
                    weight = f.get_tensor(key)
                elif key == f"{name}.bias" or key.endswith(f".{name}.bias"):
                    bias = f.get_tensor(key)
    if weight is None:
        raise ModelNotFoundError(
            f"the checkpoint in {str(folder)!r} has no projection head '{name}.weight' in its safetensors "
            "files; is it a ColQwen-family (multi-vector) checkpoint?"
        )
    head = torch.nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
    with torch.no_grad():
        head.weight.copy_(weight)
        if bias is not None:
            head.bias.copy_(bias)
    return head.to(dtype)


def remap_adapter_key(key: str) -> str:
    """colpali-engine adapter names -> this module tree (``model`` = the transformers base model).

    ``base_model.model.model.layers.*`` (ColQwen subclassing the generation model) and
    ``base_model.model.language_model.*`` (ColQwen subclassing the base model) both become
    ``base_model.model.model.language_model.*``; ``visual.*`` becomes ``model.visual.*``.
    """
    prefix = "base_model.model."
    if not key.startswith(prefix):
        return key
    rest = key[len(prefix):]
    if rest.startswith("model.language_model.") or rest.startswith("model.visual."):
        return key
    if rest.startswith("model."):
        return prefix + "model.language_model." + rest[len("model."):]
    if rest.startswith("language_model.") or rest.startswith("visual."):
        return prefix + "model." + rest
    return key


def _apply_adapter(module: _ColModule, adapter: Path) -> _ColModule:
    """Inject the LoRA adapter with peft, load its weights under remapped names, merge and unload."""
    try:
        import peft
        from safetensors.torch import load_file
    except ImportError as exc:
        raise ImportError(
            f"{str(adapter)!r} is a LoRA adapter and loading it needs peft: pip install 'umr[peft]'"
        ) from exc
    config = peft.PeftConfig.from_pretrained(str(adapter))
    files = [adapter / "adapter_model.safetensors"]
    if not files[0].is_file():
        raise ModelNotFoundError(f"the LoRA adapter {str(adapter)!r} has no adapter_model.safetensors")
    state = {remap_adapter_key(k): v for k, v in load_file(str(files[0])).items()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        peft_model = peft.get_peft_model(module, config)
        result = peft.set_peft_model_state_dict(peft_model, state)
    unexpected = list(getattr(result, "unexpected_keys", []) or [])
    if unexpected:
        raise ModelNotFoundError(
            f"the LoRA adapter {str(adapter)!r} holds weights for modules this model does not have "
            f"(first: {unexpected[0]!r}); is its base the right checkpoint?"
        )
    merged = peft_model.merge_and_unload()
    return merged


class LateInteractionModel:
    """A ColQwen-family model: ``embed_queries`` / ``embed_documents`` return :class:`MultiVectors`.

    ``umr.Embedder.from_pretrained`` returns one for a multi-vector model id or checkout. The
    single-vector parts of the ``Embedder`` API (``prepare_inputs`` / ``encode_prepared``, a fixed-size
    vector per input) raise :class:`TypeError`: there is one vector per token, scored by MaxSim.

    >>> model = LateInteractionModel.from_pretrained("vidore/colqwen2.5-v0.2")     # doctest: +SKIP
    >>> q = model.embed_queries(["total revenue 2023"])                            # doctest: +SKIP
    >>> d = model.embed_documents(["page1.png", "page2.png"])                      # doctest: +SKIP
    >>> model.score(q, d)                                                          # doctest: +SKIP
    """

    def __init__(
        self,
        module: _ColModule,
        processor: Any,
        recipe: MultiVectorRecipe,
        *,
        model_id: str,
        device: torch.device,
        dtype: torch.dtype,
        batch_size: int = 8,
        max_batch_tokens: int = 16384,
    ) -> None:
        self.module = module
        self.processor = processor
        self.recipe = recipe
        self.model_id = model_id
        self.device = device
        self.dtype = dtype
        self.batch_size = int(batch_size)
        self.max_batch_tokens = int(max_batch_tokens)
        if self.batch_size < 1 or self.max_batch_tokens < 1:
            raise ValueError("batch_size and max_batch_tokens must be positive integers")
        self.multi_vector = True
        self.head: torch.nn.Linear = getattr(module, recipe.head)
        self.backbone = backbone_of(module.model, recipe.backbone)
        self.dim = int(self.head.out_features)
        self._lock = threading.Lock()

    @property
    def max_pixels(self) -> int:
        return self.processor.max_pixels

    @property
    def fingerprint(self) -> str:
        """Identifies what the vectors depend on (model, recipe, pixel budget, dim)."""
        from umr.embedder import _source_id

        return late_fingerprint(_source_id(self.model_id), self.recipe.name, self.min_pixels, self.max_pixels,
                                self.dim)

    def _single_vector_only(self, what: str) -> TypeError:
        return TypeError(
            f"{what} gives one vector per input, but {self.model_id!r} ({self.recipe.family}) is a multi-vector "
            "model (one 128-d vector per token, scored by MaxSim): use embed_queries / embed_documents, which "
            "return umr.late.MultiVectors, and umr.late.maxsim or a umr store indexed with this model"
        )

    def prepare_inputs(self, *args: Any, **kwargs: Any) -> Any:
        raise self._single_vector_only("prepare_inputs / encode_prepared (fine-tuning)")

    def encode_prepared(self, *args: Any, **kwargs: Any) -> Any:
        raise self._single_vector_only("encode_prepared (fine-tuning)")

    @property
    def min_pixels(self) -> int:
        return self.processor.min_pixels

    @property
    def render_plan(self) -> Any:
        """The sizes this model resizes page images to, for planned-size rendering (as ``Embedder``)."""
        make = getattr(self.processor, "render_plan", None)
        return make() if callable(make) else None

    def __repr__(self) -> str:
        return (
            f"LateInteractionModel(model_id={self.model_id!r}, recipe={self.recipe.name!r}, dim={self.dim}, "
            f"device={str(self.device)!r})"
        )

    @classmethod
    def from_pretrained(
        cls,
        model_id_or_path: str | os.PathLike,
        *,
        recipe: str | None = None,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
        base_model: str | os.PathLike | None = None,
        attn_implementation: str | None = None,
        min_pixels: int | None = None,
        max_pixels: int | None = None,
        batch_size: int = 8,
        max_batch_tokens: int = 16384,
    ) -> LateInteractionModel:
        """Load a ColQwen-family model from a hub id or a local checkout (adapter or full checkpoint).

        An adapter's base is ``base_model``, else the one its ``adapter_config.json`` names (a path relative
        to the adapter folder counts), else the recipe's published base.
        """
        name = multi_vector_recipe_name(model_id_or_path, recipe)
        if name is None:
            raise UnknownRecipeError(
                f"{os.fspath(model_id_or_path)!r} is not a known multi-vector model; valid ids: "
                f"{', '.join(m.model_id for m in MULTI_VECTOR_MODELS)}; for a local folder pass recipe= one of "
                f"{', '.join(sorted(MULTI_VECTOR_RECIPES))}"
            )
        rec = MULTI_VECTOR_RECIPES[name]
        dev = modeling.resolve_device(device)
        dt = modeling.resolve_dtype(dtype, dev, rec.preferred_dtype)
        attn = modeling.resolve_attn_implementation(attn_implementation, dev, dt, "causal")
        source = Path(os.fspath(model_id_or_path)).expanduser()
        if not source.is_dir():
            raise ModelNotFoundError(
                f"{os.fspath(model_id_or_path)!r} is not a local folder and umr loads multi-vector checkpoints "
                f"from disk: download it (`hf download {os.fspath(model_id_or_path)} --local-dir ./models/NAME`"
                + (f" and its base `hf download {rec.adapter_of} --local-dir ./models/BASE`" if rec.adapter_of else "")
                + ") and pass the folder (and base_model= for an adapter)"
            )
        adapter = (source / "adapter_config.json").is_file()
        base = source
        if adapter:
            if base_model is not None:
                base = Path(os.fspath(base_model)).expanduser()
            else:
                named = json.loads((source / "adapter_config.json").read_text()).get("base_model_name_or_path")
                candidates = [source / named, Path(named).expanduser()] if named else []
                found = [c for c in candidates if c.is_dir()]
                if not found:
                    raise ModelNotFoundError(
                        f"the LoRA adapter {str(source)!r} needs its base model "
                        f"({named or rec.adapter_of!r}) as a local folder: download it and pass base_model="
                    )
                base = found[0]
        from transformers.utils import logging as hf_logging

        verbosity = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()  # the head's keys are "unexpected" to the base model class: expected
        try:
            backbone = modeling.load_model(
                base, name, head="base", device=torch.device("cpu"), dtype=dt, attn_implementation=attn
            )
        finally:
            hf_logging.set_verbosity(verbosity)
        module = _ColModule(backbone, load_head(base, rec.head, dt), rec.head)
        if adapter:
            module = _apply_adapter(module, source)
        module.to(dev)
        module.eval()
        module.requires_grad_(False)
        files_from = source if (source / "tokenizer_config.json").is_file() else base
        tokenizer = modeling.load_tokenizer(str(files_from), name)
        lo = min_pixels if min_pixels is not None else rec.min_pixels
        hi = max_pixels if max_pixels is not None else rec.max_pixels
        backbone = backbone_of(module.model, rec.backbone)
        image_processor = backbone.load_image_processor(str(files_from), lo, hi)
        # colpali-engine's processors resize once (the image processor) and convert("RGB") (alpha dropped)
        processor = backbone.make_processor(
            tokenizer, image_processor, image_pad_token=rec.image_pad_token, min_pixels=lo, max_pixels=hi,
            max_length=1 << 20, pre_resize=False, padding_side=rec.padding_side, alpha="drop",
        )
        logger.info("loaded multi-vector model %s (recipe %s) on %s as %s", source, name, dev, dt)
        return cls(module, processor, rec, model_id=os.fspath(model_id_or_path), device=dev, dtype=dt,
                   batch_size=batch_size, max_batch_tokens=max_batch_tokens)

    # -- prompts ----------------------------------------------------------------------------------------
    def prompt(self, item: MultimodalInput, side: str) -> str:
        """The text the model reads for ``item``: query text with prefix and augmentation suffix, a page
        image in the page prompt, or a text passage as it is."""
        rec = self.recipe
        if side == "query":
            if item.image is not None:
                raise InputError(
                    f"{rec.family} queries are text; got an image query ({item.describe()}). "
                    "Embed the image as a document, or use a single-vector model for image queries."
                )
            return rec.query_prefix + (item.text or "") + rec.query_suffix
        if item.image is not None:
            if item.text:
                raise InputError(
                    f"{rec.family} embeds a page from its image alone; got an image with text "
                    f"({item.describe()}). Pass the image only (the page text can live in metadata)."
                )
            return rec.page_prompt
        return item.text or ""

    # -- embedding --------------------------------------------------------------------------------------
    def embed_queries(self, inputs: InputLike | Iterable[InputLike], **kwargs: Any) -> MultiVectors:
        return self.embed(inputs, side="query", **kwargs)

    def embed_documents(self, inputs: InputLike | Iterable[InputLike], **kwargs: Any) -> MultiVectors:
        return self.embed(inputs, side="document", **kwargs)

    def embed(
        self,
        inputs: InputLike | Iterable[InputLike],
        *,
        side: str = "document",
        batch_size: int | None = None,
        instruction: str | None = None,
    ) -> MultiVectors:
        """One ``(n_tokens, dim)`` float32 array per input (a list even for a single input)."""
        if side not in ("query", "document"):
            raise ValueError(f"side must be 'query' or 'document', got {side!r}")
        if instruction:
            raise ValueError(
                f"{self.recipe.family} takes no instruction (its query prompt is fixed); got {instruction!r}"
            )
        items = coerce_inputs(inputs)
        prepared = [self.processor.prepare(i, it, self.prompt(it, side)) for i, it in enumerate(items)]
        out: list[np.ndarray | None] = [None] * len(prepared)
        order = sorted(range(len(prepared)), key=lambda i: prepared[i].num_tokens)
        size = batch_size or self.batch_size
        with self._lock, torch.inference_mode():
            start = 0
            while start < len(order):
                stop = start + 1
                while (stop < len(order) and stop - start < size
                       and (stop - start + 1) * prepared[order[stop]].num_tokens <= self.max_batch_tokens):
                    stop += 1
                chunk = order[start:stop]
                for i, vec in zip(chunk, self._forward([prepared[i] for i in chunk], side)):
                    out[i] = vec
                start = stop
        return MultiVectors([v for v in out if v is not None])

    def _forward(self, batch: Sequence[PreparedInput], side: str) -> list[np.ndarray]:
        tensors = self.processor.collate(batch)
        tensors = {k: v.to(self.device) for k, v in tensors.items()}
        if "pixel_values" in tensors:
            tensors["pixel_values"] = tensors["pixel_values"].to(self.dtype)
        hidden = self.backbone.forward_hidden(
            self.module.model, tensors, positions="mrope", attention="causal",
            image_token_id=self.processor.image_pad_id,
        )
        projected = self.head(hidden.to(self.head.weight.dtype)).float()
        projected = torch.nn.functional.normalize(projected, p=2, dim=-1)
        keep = tensors["attention_mask"].bool()
        if side == "document" and self.recipe.mask_non_image_tokens and "pixel_values" in tensors:
            keep = keep & (tensors["input_ids"] == self.processor.image_pad_id)
        return [projected[row][keep[row]].cpu().numpy() for row in range(projected.shape[0])]

    def score(self, queries: MultiVectors | Sequence[np.ndarray], documents: MultiVectors | Sequence[np.ndarray]
              ) -> np.ndarray:
        """MaxSim scores ``(n_queries, n_documents)``."""
        return maxsim(list(queries), list(documents), device=self.device).numpy()
