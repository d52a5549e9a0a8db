"""The own-code engine: the checkpoint ships its modelling code and an ``encode`` method (MM-Embed).

umr loads that code only when the caller passed ``trust_remote_code=True`` (the front door checks the
recipe before anything of the checkout is read), hands it ``{"txt": ..., "img": PIL RGB}`` dicts and
takes the vectors it returns. The checkpoint's code does its own prompting and preprocessing, so there
is no umr processor, no token-budget planning and no fine-tuning on this engine.
"""

from __future__ import annotations

import os
from typing import Any, ClassVar

import torch

from umr import modeling
from umr.backbones.base import to_rgb
from umr.engines.base import EmbedCall, EmbedEngine, Parts, Prompter
from umr.inputs import MultimodalInput
from umr.recipes import EmbedRecipe


class OwnCodeEmbedEngine(EmbedEngine):
    """Runs ``model.encode(inputs, is_query=..., instruction=..., max_length=...)`` of the checkpoint."""

    name: ClassVar[str] = "own-code"

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
    ) -> None:
        self.model = model
        self.recipe = recipe
        self.device = device
        self.dtype = dtype
        self.processor = None  # the checkpoint's own code preprocesses

    @classmethod
    def choose_attn_implementation(
        cls, requested: str | None, device: torch.device, dtype: torch.dtype, recipe: EmbedRecipe
    ) -> str | None:
        return requested  # None: the checkpoint's code decides

    @classmethod
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
        model = modeling.load_model(
            model_id_or_path, recipe.name, head="base", device=device, dtype=dtype,
            attn_implementation=attn_implementation, trust_remote_code=trust_remote_code,
        )
        return Parts(model, None, None)

    def _input(self, item: MultimodalInput) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if item.text is not None:
            out["txt"] = item.text
        if item.image is not None:
            out["img"] = to_rgb(item.load_image(), self.recipe.alpha)
        return out

    def embed(self, items: list[MultimodalInput], prompter: Prompter, call: EmbedCall) -> torch.Tensor:
        """Items are grouped by instruction, because the reference API takes one instruction per call.

        The instruction goes in raw (its code renders ``Instruct: {instruction}\\nQuery: ...`` itself);
        documents get none.
        """
        groups: dict[str | None, list[int]] = {}
        for i, it in enumerate(items):
            text = prompter.instruction_for(it, call.side, call.instruction) if call.side == "query" else ""
            groups.setdefault(text or None, []).append(i)
        out: list[torch.Tensor | None] = [None] * len(items)
        for instr, idx in groups.items():
            for lo in range(0, len(idx), call.batch_size):
                chunk = idx[lo : lo + call.batch_size]
                result = self.model.encode(
                    [self._input(items[i]) for i in chunk], is_query=call.side == "query", instruction=instr,
                    max_length=self.recipe.max_length,
                )
                vecs = result["hidden_states"] if not isinstance(result, torch.Tensor) else result
                vecs = vecs.float()[:, : call.dim]  # (len(chunk), dim)
                if self.recipe.normalize:
                    vecs = torch.nn.functional.normalize(vecs, p=2, dim=-1)
                for row, i in enumerate(chunk):
                    out[i] = vecs[row].cpu()
                if call.on_batch is not None:
                    call.on_batch(len(chunk))
        return torch.stack([v for v in out if v is not None])
