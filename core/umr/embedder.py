"""``Embedder``: text, images, fused text+image inputs and rendered pages to L2-normalised vectors.

The front door of every embedding engine: it coerces inputs, resolves instructions and prompts (the
recipe's rules, ``RecipePrompts``), checks Matryoshka dims, names the vectors (``fingerprint``) and
hands the work to the engine the recipe names (``umr.engines``: the native engine runs the backbone,
the own-code engine runs a checkpoint's ``encode``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import threading
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image

from umr import modeling
from umr.backbones.base import BackboneProcessor, PreparedInput
from umr.documents.plan import RenderPlan
from umr.engines import embed_engine_class
from umr.engines.base import EmbedCall, EmbedEngine, source_path
from umr.errors import RemoteCodeError
from umr.inputs import InputLike, coerce_inputs, is_single_input
from umr.prompting import RecipePrompts, mbeir_format  # noqa: F401 - mbeir_format: re-exported
from umr.recipes import (
    DEFAULT_EMBEDDER,
    EMBED_RECIPES,
    MODELS,
    EmbedRecipe,
    Side,
    read_recipe_marker,
    resolve_recipe_name,
)

logger = logging.getLogger(__name__)

#: default padded-token budget of one forward pass (about 12 pages of 1280 visual tokens)
DEFAULT_MAX_BATCH_TOKENS = 16384
DEFAULT_BATCH_SIZE = 32


class Embedder(RecipePrompts):
    """A universal multimodal embedder following one recipe (GME by default).

    >>> emb = Embedder.from_pretrained("Alibaba-NLP/gme-Qwen2-VL-2B-Instruct")   # doctest: +SKIP
    >>> q = emb.embed_queries(["what is the revenue in 2023?"])                   # doctest: +SKIP
    >>> d = emb.embed_documents(["page1.png", {"text": "caption", "image": "photo.jpg"}])  # doctest: +SKIP
    >>> scores = q @ d.T                                                           # doctest: +SKIP

    Vectors are float32 numpy arrays, L2-normalised, so a dot product is the cosine similarity.
    ``embedder.engine`` is the engine the recipe names (``umr.engines``); ``embedder.processor`` its
    backbone processor (None when the checkpoint's own code preprocesses).
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        image_processor: Any,
        recipe: EmbedRecipe,
        *,
        model_id: str,
        device: torch.device,
        dtype: torch.dtype,
        dim: int | None = None,
        query_instruction: str | None = None,
        max_batch_tokens: int = DEFAULT_MAX_BATCH_TOKENS,
        batch_size: int = DEFAULT_BATCH_SIZE,
        min_pixels: int | None = None,
        max_pixels: int | None = None,
        show_progress: bool = False,
        fingerprint_seed: str = "",
    ) -> None:
        """Wrap loaded parts (``from_pretrained`` is the usual way in).

        ``model``, ``tokenizer``, ``image_processor``: what the recipe's engine loads (the own-code
        engine needs no tokenizer or image processor: pass None); ``recipe``: an ``EmbedRecipe``;
        ``model_id``: the name vectors are recorded under; ``device`` / ``dtype``: where the model lives;
        the other arguments are those of ``from_pretrained``; ``fingerprint_seed``: the weights' identity
        (``from_pretrained`` derives it from the checkpoint).
        """
        self.recipe = recipe
        self.model_id = model_id
        self.device = device
        self.dtype = dtype
        self.query_instruction = query_instruction
        self.max_batch_tokens = int(max_batch_tokens)
        self.batch_size = int(batch_size)
        self.show_progress = show_progress
        if self.max_batch_tokens <= 0 or self.batch_size <= 0:
            raise ValueError("max_batch_tokens and batch_size must be positive integers")
        self._min_pixels = int(min_pixels if min_pixels is not None else recipe.min_pixels)
        self._max_pixels = int(max_pixels if max_pixels is not None else recipe.max_pixels)
        if self._min_pixels > self._max_pixels:
            raise ValueError(f"min_pixels ({self._min_pixels}) must not exceed max_pixels ({self._max_pixels})")
        engine_cls = embed_engine_class(recipe.engine)
        #: how this recipe runs (``umr.engines``); holds the model and, when umr preprocesses, the processor
        self.engine: EmbedEngine = engine_cls(
            model, tokenizer, image_processor, recipe, device=device, dtype=dtype,
            min_pixels=self._min_pixels, max_pixels=self._max_pixels,
        )
        self._text_only_image: Image.Image | None = None
        if recipe.text_only_image is not None:
            self._text_only_image = Image.new("RGB", recipe.text_only_image)
        self.native_dim = self.engine.native_dim
        self.dim = self._check_dim(dim)
        self._lock = threading.Lock()
        self._fingerprint_seed = fingerprint_seed

    #: one vector per input (a multi-vector model says ``multi_vector = True``)
    multi_vector = False

    @property
    def model(self) -> Any:
        """The loaded model (the engine's; fine-tuning may replace it)."""
        return self.engine.model

    @model.setter
    def model(self, value: Any) -> None:
        self.engine.model = value

    @property
    def processor(self) -> BackboneProcessor | None:
        """The backbone's processor (tokenizer, image processor, pixel budget), or None when the
        checkpoint's own code preprocesses (own-code engine)."""
        return self.engine.processor

    @property
    def render_plan(self) -> RenderPlan | None:
        """The sizes this embedder resizes images to, as picklable data for a renderer (planned-size
        rendering, :mod:`umr.documents.plan`), or None when umr does not preprocess for it (own-code
        engine)."""
        make = getattr(self.processor, "render_plan", None)
        return make() if callable(make) else None

    # -- construction ---------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(
        cls,
        model_id_or_path: str | os.PathLike = DEFAULT_EMBEDDER,
        *,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
        recipe: str | None = None,
        dim: int | None = None,
        attn_implementation: str | None = None,
        query_instruction: str | None = None,
        max_batch_tokens: int = DEFAULT_MAX_BATCH_TOKENS,
        batch_size: int = DEFAULT_BATCH_SIZE,
        min_pixels: int | None = None,
        max_pixels: int | None = None,
        trust_remote_code: bool = False,
        show_progress: bool = False,
    ) -> Embedder:
        """Load an embedder from a hub id or a local directory.

        - ``model_id_or_path``: a published id (``umr models``) or a local checkpoint folder.
        - ``device``: ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``; None picks CUDA when available.
        - ``dtype``: ``"bfloat16"``, ``"float16"``, ``"float32"`` (or a ``torch.dtype``); None gives the
          recipe's half type on CUDA (bf16 when supported) and float32 elsewhere.
        - ``recipe``: the recipe name, needed for a local folder whose recipe cannot be inferred (a
          ``umr.json`` marker or a folder named like the hub repository is enough).
        - ``dim``: Matryoshka output dim, one the recipe was trained for (default: the native dim).
        - ``attn_implementation``: ``"sdpa"`` (default), ``"eager"`` or ``"flash_attention_2"`` (the
          default on CUDA in half precision when ``flash_attn`` is installed and the recipe is causal).
        - ``query_instruction``: the task instruction queries get when a call gives none (documents follow
          the recipe's rule).
        - ``max_batch_tokens``: padded-token budget of one forward pass; ``batch_size``: most inputs per
          forward pass (the planner sorts inputs by cost and fills batches under both limits).
        - ``min_pixels`` / ``max_pixels``: pixel budget of one image (default: the recipe's, or the one a
          fine-tuned checkpoint records in its ``umr.json``).
        - ``trust_remote_code``: must be True to load a recipe that runs the checkpoint's own code
          (MM-Embed); ignored (never passed on) for recipes umr runs itself.
        - ``show_progress``: a progress bar per ``embed`` call (tqdm).

        A multi-vector (late-interaction) model (``vidore/colqwen2.5-v0.2``, ``vidore/colqwen2-v1.0``,
        ``nomic-ai/colnomic-embed-multimodal-3b`` / ``-7b``) gives a :class:`umr.late.LateInteractionModel`,
        whose ``embed_queries`` / ``embed_documents`` return :class:`umr.late.MultiVectors` (one
        ``(n_tokens, 128)`` array per input).
        """
        from umr.late.recipes import MULTI_VECTOR_RECIPES, multi_vector_recipe_name

        late = multi_vector_recipe_name(model_id_or_path, recipe)
        if late is not None:
            # a late-interaction model: one vector per token (embed_* return umr.late.MultiVectors); its
            # recipe names the engine that loads and runs it
            if dim is not None or query_instruction is not None or trust_remote_code:
                raise ValueError(
                    f"{os.fspath(model_id_or_path)!r} is a multi-vector (late-interaction) model with fixed "
                    "128-d token vectors and a fixed query prompt: drop dim=, query_instruction= and "
                    "trust_remote_code="
                )
            engine = embed_engine_class(MULTI_VECTOR_RECIPES[late].engine)
            return engine.from_pretrained(  # type: ignore[no-any-return]
                model_id_or_path, recipe=late, device=device, dtype=dtype,
                attn_implementation=attn_implementation, min_pixels=min_pixels, max_pixels=max_pixels,
                batch_size=batch_size, max_batch_tokens=max_batch_tokens,
            )
        name = resolve_recipe_name(model_id_or_path, recipe, "embedding")
        rec = EMBED_RECIPES[name]
        # a fine-tuned checkpoint records the pixel budget it was trained with (umr.json)
        marker = read_recipe_marker(model_id_or_path)
        if min_pixels is None and isinstance(marker.get("min_pixels"), int):
            min_pixels = int(marker["min_pixels"])
        if max_pixels is None and isinstance(marker.get("max_pixels"), int):
            max_pixels = int(marker["max_pixels"])
        if rec.trust_remote_code and trust_remote_code is not True:
            # Checked before anything of the checkout is read: none of its code may run without consent.
            raise RemoteCodeError(_remote_code_refusal(os.fspath(model_id_or_path), rec))
        engine = embed_engine_class(rec.engine)
        dev = modeling.resolve_device(device)
        dt = modeling.resolve_dtype(dtype, dev, rec.preferred_dtype)
        attn = engine.choose_attn_implementation(attn_implementation, dev, dt, rec)
        # Recipes umr runs itself never run a checkout's own code, whatever the caller passed.
        trust = bool(trust_remote_code) and rec.trust_remote_code
        config = modeling.load_config(model_id_or_path, name, trust_remote_code=trust)
        source = source_path(model_id_or_path)
        parts = engine.load_parts(
            model_id_or_path, rec, config=config, device=dev, dtype=dt, attn_implementation=attn,
            trust_remote_code=trust,
            min_pixels=min_pixels if min_pixels is not None else rec.min_pixels,
            max_pixels=max_pixels if max_pixels is not None else rec.max_pixels,
        )
        logger.info(
            "loaded %s (recipe %s, %s engine) on %s as %s with %s attention", source, name, rec.engine, dev, dt, attn
        )
        return cls(
            parts.model, parts.tokenizer, parts.image_processor, rec,
            model_id=_source_id(model_id_or_path), device=dev, dtype=dt, dim=dim,
            query_instruction=query_instruction, max_batch_tokens=max_batch_tokens, batch_size=batch_size,
            min_pixels=min_pixels, max_pixels=max_pixels, show_progress=show_progress,
            fingerprint_seed=_weights_identity(model_id_or_path, config),
        )

    # -- properties -------------------------------------------------------------------------------------
    @property
    def max_pixels(self) -> int:
        """Pixel budget of one image; render pages at most this large."""
        return self._max_pixels

    @property
    def min_pixels(self) -> int:
        """Smallest pixel count an image is resized up to."""
        return self._min_pixels

    @property
    def fingerprint(self) -> str:
        """Stable id of everything that decides a vector: weights config, recipe, pixel budget, dim.

        Content-derived (a local copy moved elsewhere keeps its fingerprint), used in store ids.
        """
        return _fingerprint(self._fingerprint_seed, self.recipe.name, self.min_pixels, self.max_pixels, self.dim)

    @classmethod
    def render_plan_for(
        cls,
        model_id_or_path: str | os.PathLike = DEFAULT_EMBEDDER,
        *,
        recipe: str | None = None,
        min_pixels: int | None = None,
        max_pixels: int | None = None,
        trust_remote_code: bool = False,
        **_: Any,
    ) -> RenderPlan | None:
        """The :attr:`render_plan` that ``from_pretrained`` with these options would give, read from the
        tokenizer and image processor files alone (no weights: a bulk-indexing driver renders pages at the
        planned size without holding the model). None for models umr does not preprocess for (own-code
        engine) and for multi-vector models."""
        from umr.late.recipes import multi_vector_recipe_name

        if multi_vector_recipe_name(model_id_or_path, recipe) is not None:
            return None
        rec, config = _recipe_and_config(model_id_or_path, recipe, trust_remote_code)
        lo = int(min_pixels if min_pixels is not None else rec.min_pixels)
        hi = int(max_pixels if max_pixels is not None else rec.max_pixels)
        processor = embed_engine_class(rec.engine).load_processor(
            model_id_or_path, rec, config=config, min_pixels=lo, max_pixels=hi
        )
        make = getattr(processor, "render_plan", None)
        return make() if callable(make) else None

    @classmethod
    def identity(
        cls,
        model_id_or_path: str | os.PathLike = DEFAULT_EMBEDDER,
        *,
        recipe: str | None = None,
        dim: int | None = None,
        min_pixels: int | None = None,
        max_pixels: int | None = None,
        trust_remote_code: bool = False,
        **_: Any,
    ) -> dict[str, Any]:
        """What ``from_pretrained`` with these options would load, read from the config alone (no weights).

        Returns ``model_id``, ``dim``, ``fingerprint`` and ``max_pixels``, equal to the loaded embedder's
        (a bulk-indexing driver names store ids with it without holding the model). Options that do not
        change vectors (device, dtype, batch sizes) are accepted and ignored.
        """
        from umr.late.recipes import MULTI_VECTOR_RECIPES, late_fingerprint, multi_vector_recipe_name

        late = multi_vector_recipe_name(model_id_or_path, recipe)
        if late is not None:
            mv = MULTI_VECTOR_RECIPES[late]
            lo = int(min_pixels if min_pixels is not None else mv.min_pixels)
            hi = int(max_pixels if max_pixels is not None else mv.max_pixels)
            model_id = _source_id(model_id_or_path)
            return {"model_id": model_id, "dim": mv.dim, "max_pixels": hi, "multi_vector": True,
                    "fingerprint": late_fingerprint(model_id, late, lo, hi, mv.dim)}
        rec, config = _recipe_and_config(model_id_or_path, recipe, trust_remote_code)
        text = getattr(config, "text_config", None) or config
        out_dim = int(dim) if dim is not None else int(text.hidden_size)
        lo = int(min_pixels if min_pixels is not None else rec.min_pixels)
        hi = int(max_pixels if max_pixels is not None else rec.max_pixels)
        seed = _weights_identity(model_id_or_path, config)
        return {
            "model_id": _source_id(model_id_or_path),
            "dim": out_dim,
            "fingerprint": _fingerprint(seed, rec.name, lo, hi, out_dim),
            "max_pixels": hi,
        }

    def _check_dim(self, dim: int | None) -> int:
        """Matryoshka truncation: ``dim`` must be one the recipe was trained for (or the native dim)."""
        native = self.native_dim
        if dim is None:
            return native
        r = self.recipe
        ok = isinstance(dim, int) and not isinstance(dim, bool) and (
            dim == native
            or (dim in r.matryoshka_dims and dim <= native)
            or (r.matryoshka_min_dim is not None and r.matryoshka_min_dim <= dim <= native)
        )
        if not ok:
            truncates = bool(r.matryoshka_dims) or r.matryoshka_min_dim is not None
            raise ValueError(
                f"dim={dim!r} is not available for recipe {r.name!r}; allowed dims: {r.allowed_dims(native)}"
                + ("" if truncates else " (this recipe has no Matryoshka truncation)")
            )
        return dim

    def __repr__(self) -> str:
        return (
            f"Embedder(model_id={self.model_id!r}, recipe={self.recipe.name!r}, dim={self.dim}, "
            f"device={str(self.device)!r}, dtype={str(self.dtype).replace('torch.', '')!r})"
        )

    # -- embedding --------------------------------------------------------------------------------------
    def embed_queries(
        self, inputs: InputLike | Iterable[InputLike], instruction: str | None = None, **kwargs: Any
    ) -> np.ndarray:
        """Embed queries; ``instruction`` (or the embedder's ``query_instruction``) describes the task."""
        return self.embed(inputs, side="query", instruction=instruction, **kwargs)

    def embed_documents(self, inputs: InputLike | Iterable[InputLike], **kwargs: Any) -> np.ndarray:
        """Embed corpus items (pages, images, passages); the recipe decides their instruction."""
        return self.embed(inputs, side="document", **kwargs)

    def embed(
        self,
        inputs: InputLike | Iterable[InputLike],
        *,
        side: Side = "document",
        instruction: str | None = None,
        batch_size: int | None = None,
        max_batch_tokens: int | None = None,
        show_progress: bool | None = None,
        convert_to: Literal["numpy", "torch"] = "numpy",
    ) -> Any:
        """Embed one input (returns shape ``(dim,)``) or a sequence (returns ``(n, dim)``).

        Inputs are sorted by token cost, batched under ``max_batch_tokens`` padded tokens and
        ``batch_size`` items, and returned in the caller's order.
        """
        if side not in ("query", "document"):
            raise ValueError(f"side must be 'query' or 'document', got {side!r}")
        if instruction is not None and not isinstance(instruction, str):
            raise TypeError(f"instruction must be str or None, got {type(instruction).__name__}")
        single = is_single_input(inputs)
        items = coerce_inputs(inputs)
        if not items:
            empty = np.zeros((0, self.dim), dtype=np.float32)
            return empty if convert_to == "numpy" else torch.from_numpy(empty)
        call = self._call(side, instruction, batch_size, max_batch_tokens)
        vectors = self._run(lambda c: self.engine.embed(items, self, c), len(items), call, show_progress)
        out = vectors[0] if single else vectors  # (n, dim) float32, CPU
        return out.numpy() if convert_to == "numpy" else out

    def embed_prepared(
        self,
        prepared: Sequence[PreparedInput],
        *,
        batch_size: int | None = None,
        max_batch_tokens: int | None = None,
    ) -> np.ndarray:
        """Embed items from :meth:`prepare_inputs` (returns ``(n, dim)`` float32, in their order).

        The same token-budget batches and vectors as ``embed`` of the raw inputs, without tokenising
        them again: for callers that prepare first to learn each input's token cost or to validate it
        (``umr serve`` does, per request). Engines umr runs itself only, as ``prepare_inputs``.
        """
        items = list(prepared)
        if not all(isinstance(p, PreparedInput) for p in items):
            raise TypeError("embed_prepared takes the items prepare_inputs returned")
        if not items:
            return np.zeros((0, self.dim), dtype=np.float32)
        call = self._call("document", None, batch_size, max_batch_tokens)  # the prompts are already built
        return self._run(lambda c: self.engine.embed_prepared(items, c), len(items), call, False).numpy()

    def prepare_inputs(
        self,
        inputs: InputLike | Iterable[InputLike],
        *,
        side: Side = "document",
        instruction: str | None = None,
    ) -> list[PreparedInput]:
        """Tokenise ``inputs`` with the prompt, instruction and pixel budget that ``embed`` uses.

        The result feeds ``encode_prepared`` (training, custom batching); each item knows its exact
        token cost (``num_tokens``). Images are not decoded yet. Engines umr runs itself only (a recipe
        whose checkpoint code preprocesses raises ``NotImplementedError``).
        """
        if side not in ("query", "document"):
            raise ValueError(f"side must be 'query' or 'document', got {side!r}")
        return self.engine.prepare(coerce_inputs(inputs), self, side, instruction)

    def encode_prepared(self, prepared: list[PreparedInput]) -> torch.Tensor:
        """Embed one batch of ``prepare_inputs`` items as a differentiable ``(n, dim)`` tensor on the device.

        The same collation, forward pass and pooling as ``embed``, but without ``torch.inference_mode``
        and without batch planning: autograd records the graph when gradients are enabled (fine-tuning).
        """
        if not prepared:
            raise ValueError("encode_prepared needs at least one prepared input")
        return self.engine.encode_prepared(list(prepared), self.dim)

    def _call(self, side: Side, instruction: str | None, batch_size: int | None, max_batch_tokens: int | None) -> EmbedCall:
        return EmbedCall(
            side=side,
            instruction=instruction,
            dim=self.dim,
            batch_size=batch_size or self.batch_size,
            max_batch_tokens=max_batch_tokens or self.max_batch_tokens,
        )

    def _run(
        self, run: Callable[[EmbedCall], torch.Tensor], n: int, call: EmbedCall, show_progress: bool | None
    ) -> torch.Tensor:
        progress = None
        if show_progress if show_progress is not None else self.show_progress:
            from tqdm.auto import tqdm

            progress = tqdm(total=n, desc="embedding", unit="input")
        if progress is not None:
            call = dataclasses.replace(call, on_batch=progress.update)
        try:
            with self._lock, torch.inference_mode():
                return run(call)
        finally:
            if progress is not None:
                progress.close()


def _recipe_and_config(model_id_or_path: str | os.PathLike, recipe: str | None, trust_remote_code: bool) -> tuple[Any, Any]:
    """The embedding recipe and the config of a checkpoint, read without weights (remote code refused
    unless allowed)."""
    name = resolve_recipe_name(model_id_or_path, recipe, "embedding")
    rec = EMBED_RECIPES[name]
    if rec.trust_remote_code and trust_remote_code is not True:
        raise RemoteCodeError(_remote_code_refusal(os.fspath(model_id_or_path), rec))
    config = modeling.load_config(
        model_id_or_path, name, trust_remote_code=bool(trust_remote_code) and rec.trust_remote_code
    )
    return rec, config


def _fingerprint(seed: str, recipe: str, min_pixels: int, max_pixels: int, dim: int) -> str:
    h = hashlib.sha256()
    for part in (seed, recipe, str(min_pixels), str(max_pixels), str(dim)):
        h.update(part.encode("utf-8", "surrogateescape"))
        h.update(b"\x00")
    return h.hexdigest()[:16]


def _weights_identity(model_id_or_path: str | os.PathLike, config: Any) -> str:
    """Cheap content identity of a checkpoint: hub id + revision, or sampled bytes of local weights.

    Sampling 16 x 64 KiB per weight file tells a fine-tuned copy from its base without reading gigabytes.
    """
    path = Path(os.fspath(model_id_or_path)).expanduser()
    if not path.is_dir():
        return f"{os.fspath(model_id_or_path)}@{getattr(config, '_commit_hash', None) or 'main'}"
    h = hashlib.sha256()
    files = sorted(p for p in path.iterdir() if p.suffix in (".safetensors", ".bin", ".pt") and p.is_file())
    for f in files:
        size = f.stat().st_size
        h.update(f"{f.name}:{size}".encode())
        with f.open("rb") as fh:
            for k in range(16):
                fh.seek(size * k // 16)
                h.update(fh.read(65536))
    cfg = path / "config.json"
    if cfg.is_file():
        h.update(cfg.read_bytes())
    return h.hexdigest()


def _source_id(model_id_or_path: str | os.PathLike) -> str:
    """The hub id as given, or the absolute path of a local folder (valid from any directory)."""
    path = Path(os.fspath(model_id_or_path)).expanduser()
    return str(path.resolve()) if path.is_dir() else os.fspath(model_id_or_path)


def _remote_code_refusal(model_id: str, recipe: EmbedRecipe) -> str:
    licences = sorted({e.license for e in MODELS if e.recipe == recipe.name})
    licence = " / ".join(licences) if licences else "see its model card"
    return (
        f"model {model_id!r} (recipe {recipe.name!r}, {recipe.family}) runs the modelling code shipped in "
        "its own repository, and umr never runs a checkout's code unless asked by name. Read that code, "
        f"then pass trust_remote_code=True to load it. Licence: {licence}"
        + (" (non-commercial use only)." if any("nc" in lic.lower() for lic in licences) else ".")
    )
