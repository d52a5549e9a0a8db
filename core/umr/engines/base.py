"""The engine interface: what ``Embedder``, ``Reranker`` and ``umr.train`` ask of an engine.

An ``EmbedEngine`` instance holds one loaded model of one recipe and turns coerced inputs into vectors;
the front door (``umr.Embedder``) keeps what is the same for every engine: input coercion, the choice
of instruction and prompt (a ``Prompter``), Matryoshka ``dim`` checks, the fingerprint, the lock, the
progress bar, numpy / torch output. A ``RerankEngine`` likewise turns (query, candidate) pairs into
``(n, 2)`` [yes, no] answer logits for ``umr.Reranker``.

Loading is split in two so that tests and callers can build the parts themselves:
``Engine.load_parts(...)`` reads a checkpoint into ``(model, tokenizer, image_processor)`` and
``Engine(model, tokenizer, image_processor, recipe, ...)`` wraps them.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple, Protocol

import torch

from umr.inputs import MultimodalInput

if TYPE_CHECKING:  # pragma: no cover
    from umr.backbones.base import BackboneProcessor, PreparedInput
    from umr.recipes import EmbedRecipe, RerankRecipe, Side


class Parts(NamedTuple):
    """What ``load_parts`` read from a checkpoint (tokenizer / image processor None when unused)."""

    model: Any
    tokenizer: Any
    image_processor: Any


class Prompter(Protocol):
    """The front door's prompt rules for one embedding recipe (``umr.prompting.RecipePrompts``)."""

    recipe: EmbedRecipe

    def instruction_for(self, item: MultimodalInput, side: Side, instruction: str | None) -> str: ...

    def build_prompt(self, item: Any, side: Side = "query", instruction: str | None = None) -> str: ...

    def with_text_only_image(self, item: MultimodalInput) -> MultimodalInput: ...


@dataclass(frozen=True)
class EmbedCall:
    """The options of one ``embed`` call, resolved by the front door."""

    side: Side
    instruction: str | None  # the call's instruction (the Prompter resolves it per item)
    dim: int  # output dim (Matryoshka truncation when below the native dim)
    batch_size: int  # most inputs per forward pass
    max_batch_tokens: int  # most padded tokens per forward pass (engines that plan batches)
    on_batch: Callable[[int], None] | None = None  # called with the number of inputs done


class EmbedEngine(ABC):
    """How one family of embedders runs; one instance per loaded model.

    Attributes the front door and ``umr.train`` read: ``model`` (settable: training swaps in a merged
    model), ``recipe``, ``device``, ``dtype``, ``processor`` (the backbone's processor, or None when the
    checkpoint's own code does the preprocessing), ``native_dim``.
    """

    #: the registry name (``umr.engines.ENGINES``)
    name: ClassVar[str]

    model: Any
    recipe: EmbedRecipe
    device: torch.device
    dtype: torch.dtype
    processor: BackboneProcessor | None = None

    @classmethod
    @abstractmethod
    def load_parts(
        cls,
        model_id_or_path: str | os.PathLike,
        recipe: EmbedRecipe,
        *,
        config: Any,
        device: torch.device,
        dtype: torch.dtype,
        attn_implementation: str | None,
        trust_remote_code: bool,
        min_pixels: int,
        max_pixels: int,
    ) -> Parts:
        """Read model, tokenizer and image processor of a checkpoint (``config`` already loaded)."""

    @classmethod
    def load_processor(
        cls, model_id_or_path: str | os.PathLike, recipe: EmbedRecipe, *, config: Any, min_pixels: int,
        max_pixels: int,
    ) -> BackboneProcessor | None:
        """The processor ``load_parts`` would set up, without the weights (a bulk-indexing driver plans page
        sizes with it); None for engines whose checkpoint code preprocesses."""
        return None

    @classmethod
    @abstractmethod
    def choose_attn_implementation(
        cls, requested: str | None, device: torch.device, dtype: torch.dtype, recipe: EmbedRecipe
    ) -> str | None:
        """The attention implementation to load with (None: the checkpoint decides)."""

    @abstractmethod
    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        image_processor: Any,
        recipe: EmbedRecipe,
        *,
        device: torch.device,
        dtype: torch.dtype,
        min_pixels: int,
        max_pixels: int,
    ) -> None: ...

    @property
    def native_dim(self) -> int:
        """Width of the model's vectors before Matryoshka truncation (the text model's hidden size)."""
        config = self.model.config
        text = getattr(config, "text_config", None) or config
        return int(text.hidden_size)

    @abstractmethod
    def embed(self, items: list[MultimodalInput], prompter: Prompter, call: EmbedCall) -> torch.Tensor:
        """Vectors ``(n, call.dim)`` float32 on the CPU, in the order of ``items``, normalised as the recipe
        says. The caller holds the embedder's lock and ``torch.inference_mode``."""

    def embed_prepared(self, prepared: list[PreparedInput], call: EmbedCall) -> torch.Tensor:
        """``embed`` of inputs already tokenised by ``prepare`` (a server validates a request by preparing
        it, then embeds what it prepared: each input is tokenised once). Same planning and vectors as
        ``embed``; the caller holds the lock and ``torch.inference_mode``."""
        raise NotImplementedError(self._not_trainable("embed_prepared"))

    # -- fine-tuning (engines whose registry entry says ``trainable``) ------------------------------------
    def prepare(
        self, items: list[MultimodalInput], prompter: Prompter, side: Side, instruction: str | None
    ) -> list[PreparedInput]:
        """Tokenised inputs whose exact token cost is known (no pixels decoded yet)."""
        raise NotImplementedError(self._not_trainable("prepare_inputs and encode_prepared"))

    def encode_prepared(self, prepared: list[PreparedInput], dim: int) -> torch.Tensor:
        """One batch of ``prepare`` items as a differentiable ``(n, dim)`` tensor on the device."""
        raise NotImplementedError(self._not_trainable("encode_prepared"))

    def save_parts(self, out_dir: str | os.PathLike) -> None:
        """Write the tokenizer and image processor files next to saved weights (``umr.train``)."""
        raise NotImplementedError(self._not_trainable("saving"))

    def _not_trainable(self, what: str) -> str:
        return (
            f"recipe {self.recipe.name!r} runs on the {self.name!r} engine (the checkpoint's own encode()); "
            f"{what} need an engine umr runs itself, such as 'native' (see `umr models`)"
        )


class RerankEngine(ABC):
    """How one family of pointwise rerankers runs; one instance per loaded model.

    Attributes ``umr.Reranker`` reads: ``model``, ``recipe``, ``device``, ``dtype``, ``processor``,
    ``yes_token_id``, ``no_token_id``, ``min_pixels``, ``max_pixels``, ``max_length``.
    """

    name: ClassVar[str]

    model: Any
    recipe: RerankRecipe
    device: torch.device
    dtype: torch.dtype
    yes_token_id: int
    no_token_id: int

    @classmethod
    @abstractmethod
    def load_parts(
        cls,
        model_id_or_path: str | os.PathLike,
        recipe: RerankRecipe,
        *,
        device: torch.device,
        dtype: torch.dtype,
        attn_implementation: str | None,
        trust_remote_code: bool,
        min_pixels: int,
        max_pixels: int,
        base_model: str | os.PathLike | None = None,
    ) -> Parts:
        """Read model, tokenizer and image processor (``base_model``: base of a LoRA-adapter checkpoint)."""

    @abstractmethod
    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        image_processor: Any,
        recipe: RerankRecipe,
        *,
        device: torch.device,
        dtype: torch.dtype,
        min_pixels: int,
        max_pixels: int,
    ) -> None: ...

    @abstractmethod
    def answer_logits(
        self,
        query: MultimodalInput,
        candidates: list[MultimodalInput],
        prompt: Callable[[MultimodalInput], str],
        *,
        batch_size: int,
        max_batch_tokens: int,
        on_batch: Callable[[int], None] | None = None,
        instruction: str = "",
    ) -> torch.Tensor:
        """``(n, 2)`` float32 [yes, no] logits on the CPU, one row per candidate, in their order.

        ``prompt(candidate)`` is the rendered prompt of (query, candidate) with the call's instruction
        (``instruction``, already resolved); engines that render prompts themselves may ignore it. The
        caller holds the lock and ``torch.inference_mode``.
        """


def source_path(model_id_or_path: str | os.PathLike) -> str:
    """A local folder as a path string (``~`` expanded), a hub id as given."""
    path = Path(os.fspath(model_id_or_path)).expanduser()
    return str(path) if path.exists() else os.fspath(model_id_or_path)
