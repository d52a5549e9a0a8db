"""``Embedder``: text, images, fused text+image inputs and rendered pages to L2-normalised vectors."""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image

from umr import modeling, pooling
from umr.batching import run_planned
from umr.errors import RemoteCodeError
from umr.inputs import InputLike, MultimodalInput, coerce_inputs
from umr.processing import (
    QWEN_UTILS_MAX_PIXELS,
    QWEN_UTILS_MIN_PIXELS,
    PreparedInput,
    Processor,
    preprocess_pool,
)
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
        self.model = model
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
        self.processor: Processor | None = None
        self._exclude_span: tuple[int, int] | None = None
        if recipe.backend == "native":
            pre_budget = (
                (self._min_pixels, self._max_pixels)
                if recipe.pre_resize_to_budget
                else (QWEN_UTILS_MIN_PIXELS, QWEN_UTILS_MAX_PIXELS)
            )
            self.processor = Processor(
                tokenizer,
                image_processor,
                image_pad_token=recipe.image_pad_token,
                min_pixels=self._min_pixels,
                max_pixels=self._max_pixels,
                max_length=recipe.max_length,
                pre_resize=recipe.pre_resize,
                padding_side=recipe.padding_side,
                pre_resize_pixels=pre_budget,
            )
            if recipe.pool_exclude_span is not None:
                start, end = recipe.pool_exclude_span
                self._exclude_span = (self.processor.token_id(start), self.processor.token_id(end))
        self._text_only_image: Image.Image | None = None
        if recipe.text_only_image is not None:
            self._text_only_image = Image.new("RGB", recipe.text_only_image)
        self.native_dim = int(_hidden_size(model))
        self.dim = self._check_dim(dim)
        self._lock = threading.Lock()
        self._fingerprint_seed = fingerprint_seed

    #: one vector per input (a multi-vector model says ``multi_vector = True``)
    multi_vector = False

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

        A multi-vector (late-interaction) model (``vidore/colqwen2.5-v0.2``, ``vidore/colqwen2-v1.0``,
        ``nomic-ai/colnomic-embed-multimodal-3b`` / ``-7b``) gives a :class:`umr.late.LateInteractionModel`,
        whose ``embed_queries`` / ``embed_documents`` return :class:`umr.late.MultiVectors` (one
        ``(n_tokens, 128)`` array per input).

        ``recipe`` names the recipe for a local directory whose recipe cannot be inferred (a ``umr.json``
        marker or a folder named like the hub repository is enough). ``dtype`` defaults to bf16 on CUDA
        and float32 on CPU; ``attn_implementation`` to SDPA (FlashAttention 2 when installed on CUDA).
        """
        from umr.late.recipes import multi_vector_recipe_name

        if multi_vector_recipe_name(model_id_or_path, recipe) is not None:
            # a late-interaction model: one vector per token (embed_* return umr.late.MultiVectors)
            from umr.late.model import LateInteractionModel

            if dim is not None or query_instruction is not None or trust_remote_code:
                raise ValueError(
                    f"{os.fspath(model_id_or_path)!r} is a multi-vector (late-interaction) model with fixed "
                    "128-d token vectors and a fixed query prompt: drop dim=, query_instruction= and "
                    "trust_remote_code="
                )
            return LateInteractionModel.from_pretrained(  # type: ignore[return-value]
                model_id_or_path, recipe=recipe, device=device, dtype=dtype,
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
        dev = modeling.resolve_device(device)
        dt = modeling.resolve_dtype(dtype, dev, rec.preferred_dtype)
        remote = rec.backend == "remote-encode"
        attn = None if remote else modeling.resolve_attn_implementation(attn_implementation, dev, dt, rec.attention)
        if remote and attn_implementation is not None:
            attn = attn_implementation
        # Native recipes never run a checkout's own code, whatever the caller passed.
        trust = bool(trust_remote_code) and rec.trust_remote_code
        config = modeling.load_config(model_id_or_path, name, trust_remote_code=trust)
        source = _source(model_id_or_path)
        model = modeling.load_model(
            model_id_or_path, name, head="base", device=dev, dtype=dt, attn_implementation=attn,
            trust_remote_code=trust,
        )
        tokenizer = image_processor = None
        if not remote:
            tokenizer = modeling.load_tokenizer(source, name, rec.added_tokens)
            modeling.ensure_token_rows(model, tokenizer, rec.added_tokens, name)
            budget_min = min_pixels if min_pixels is not None else rec.min_pixels
            budget_max = max_pixels if max_pixels is not None else rec.max_pixels
            image_processor = modeling.load_image_processor(source, budget_min, budget_max)
        logger.info("loaded %s (recipe %s) on %s as %s with %s attention", source, name, dev, dt, attn)
        return cls(
            model, tokenizer, image_processor, rec,
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
        return self._min_pixels

    @property
    def fingerprint(self) -> str:
        """Stable id of everything that decides a vector: weights config, recipe, pixel budget, dim.

        Content-derived (a local copy moved elsewhere keeps its fingerprint), used in store ids.
        """
        return _fingerprint(self._fingerprint_seed, self.recipe.name, self.min_pixels, self.max_pixels, self.dim)

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
        name = resolve_recipe_name(model_id_or_path, recipe, "embedding")
        rec = EMBED_RECIPES[name]
        if rec.trust_remote_code and trust_remote_code is not True:
            raise RemoteCodeError(_remote_code_refusal(os.fspath(model_id_or_path), rec))
        config = modeling.load_config(
            model_id_or_path, name, trust_remote_code=bool(trust_remote_code) and rec.trust_remote_code
        )
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
        single = isinstance(inputs, (str, bytes, bytearray, dict, MultimodalInput, os.PathLike)) or (
            hasattr(inputs, "size") and hasattr(inputs, "mode")  # a PIL image
        )
        items = coerce_inputs(inputs)
        if not items:
            empty = np.zeros((0, self.dim), dtype=np.float32)
            return empty if convert_to == "numpy" else torch.from_numpy(empty)
        if self.processor is None:
            vectors = self._run_remote(items, side, instruction, batch_size)
        else:
            prepared = self.prepare_inputs(items, side=side, instruction=instruction)
            vectors = self._run(prepared, batch_size, max_batch_tokens, show_progress)
        out = vectors[0] if single else vectors
        return out.numpy() if convert_to == "numpy" else out

    def prepare_inputs(
        self,
        inputs: InputLike | Iterable[InputLike],
        *,
        side: Side = "document",
        instruction: str | None = None,
    ) -> list[PreparedInput]:
        """Tokenise ``inputs`` with the prompt, instruction and pixel budget that ``embed`` uses.

        The result feeds ``encode_prepared`` (training, custom batching); each item knows its exact
        token cost (``num_tokens``). Images are not decoded yet. Native (non remote-code) recipes only.
        """
        if side not in ("query", "document"):
            raise ValueError(f"side must be 'query' or 'document', got {side!r}")
        if self.processor is None:
            raise NotImplementedError(
                f"recipe {self.recipe.name!r} runs the checkpoint's own encode(); prepare_inputs and "
                "encode_prepared need a native recipe (see `umr models`)"
            )
        processor = self.processor
        items = coerce_inputs(inputs)
        return [
            processor.prepare(i, self._with_text_only_image(it), self.build_prompt(it, side, instruction))
            for i, it in enumerate(items)
        ]

    def encode_prepared(self, prepared: list[PreparedInput]) -> torch.Tensor:
        """Embed one batch of ``prepare_inputs`` items as a differentiable ``(n, dim)`` tensor on the device.

        The same collation, forward pass and pooling as ``embed``, but without ``torch.inference_mode``
        and without batch planning: autograd records the graph when gradients are enabled (fine-tuning).
        """
        if not prepared:
            raise ValueError("encode_prepared needs at least one prepared input")
        return self._forward(self._collate(list(prepared)))

    def _run(
        self,
        prepared: list[PreparedInput],
        batch_size: int | None,
        max_batch_tokens: int | None,
        show_progress: bool | None,
    ) -> torch.Tensor:
        progress = None
        if show_progress if show_progress is not None else self.show_progress:
            from tqdm.auto import tqdm

            progress = tqdm(total=len(prepared), desc="embedding", unit="input")
        try:
            with self._lock, torch.inference_mode():
                vectors = run_planned(
                    [p.num_tokens for p in prepared],
                    max_tokens=max_batch_tokens or self.max_batch_tokens,
                    max_batch_size=batch_size or self.batch_size,
                    collate=lambda idx: self._collate([prepared[i] for i in idx]),
                    forward=self._forward,
                    on_batch=progress.update if progress is not None else None,
                    overlap=self.device.type != "cpu",
                )
        finally:
            if progress is not None:
                progress.close()
        return vectors.cpu()

    def _run_remote(
        self, items: list[MultimodalInput], side: Side, instruction: str | None, batch_size: int | None
    ) -> torch.Tensor:
        """Checkpoints with their own ``encode(inputs, is_query, instruction, max_length)`` (MM-Embed).

        Inputs become ``{"txt": ..., "img": PIL}`` dicts; items are grouped by instruction because the
        reference API takes one instruction per call. The instruction goes in raw: its code renders
        ``Instruct: {instruction}\\nQuery: ...`` itself.
        """
        size = batch_size or self.batch_size
        groups: dict[str | None, list[int]] = {}
        for i, it in enumerate(items):
            text = self.instruction_for(it, side, instruction) if side == "query" else ""
            groups.setdefault(text or None, []).append(i)
        out: list[torch.Tensor | None] = [None] * len(items)
        with self._lock, torch.inference_mode():
            for instr, idx in groups.items():
                for lo in range(0, len(idx), size):
                    chunk = idx[lo : lo + size]
                    batch = [_remote_input(items[i]) for i in chunk]
                    result = self.model.encode(
                        batch, is_query=side == "query", instruction=instr, max_length=self.recipe.max_length
                    )
                    vecs = result["hidden_states"] if not isinstance(result, torch.Tensor) else result
                    vecs = vecs.float()[:, : self.dim]
                    if self.recipe.normalize:
                        vecs = torch.nn.functional.normalize(vecs, p=2, dim=-1)
                    for row, i in enumerate(chunk):
                        out[i] = vecs[row].cpu()
        return torch.stack([v for v in out if v is not None])

    def _collate(self, batch: list[PreparedInput]) -> dict[str, torch.Tensor]:
        assert self.processor is not None
        pool = preprocess_pool() if self.device.type == "cuda" else None
        tensors = self.processor.collate(batch, pool)
        if self.device.type == "cuda":
            tensors = {k: v.pin_memory() for k, v in tensors.items()}
        return tensors

    def _forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
        if "pixel_values" in batch:
            batch["pixel_values"] = batch["pixel_values"].to(self.dtype)
        assert self.processor is not None
        hidden = modeling.forward_hidden(
            self.model, batch, positions=self.recipe.positions, attention=self.recipe.attention,
            image_token_id=self.processor.image_pad_id,
        )
        pooled = pooling.pool(
            self.recipe.pooling, hidden, batch["attention_mask"], batch["input_ids"], self._exclude_span
        ).float()
        pooled = pooled[:, : self.dim]
        if self.recipe.normalize:
            pooled = torch.nn.functional.normalize(pooled, p=2, dim=-1)
        return pooled


def _hidden_size(model: Any) -> int:
    config = model.config
    text = getattr(config, "text_config", None) or config
    return int(text.hidden_size)


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


def _source(model_id_or_path: str | os.PathLike) -> str:
    path = Path(os.fspath(model_id_or_path)).expanduser()
    return str(path) if path.exists() else os.fspath(model_id_or_path)


def _remote_input(item: MultimodalInput) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if item.text is not None:
        out["txt"] = item.text
    if item.image is not None:
        img = item.load_image()
        out["img"] = img if img.mode == "RGB" else img.convert("RGB")
    return out


def _remote_code_refusal(model_id: str, recipe: EmbedRecipe) -> str:
    licences = sorted({e.license for e in MODELS if e.recipe == recipe.name})
    licence = " / ".join(licences) if licences else "see its model card"
    return (
        f"model {model_id!r} (recipe {recipe.name!r}, {recipe.family}) runs the modelling code shipped in "
        "its own repository, and umr never runs a checkout's code unless asked by name. Read that code, "
        f"then pass trust_remote_code=True to load it. Licence: {licence}"
        + (" (non-commercial use only)." if any("nc" in lic.lower() for lic in licences) else ".")
    )
