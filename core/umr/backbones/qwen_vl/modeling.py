"""Qwen-VL tensors to hidden states: positions, visual scatter, attention mode. Never touches PIL.

The model gets the tensors ``processing.Processor`` made (``input_ids`` / ``attention_mask`` (B, L),
``pixel_values`` (patches, C*T*P*P), ``image_grid_thw`` (images, 3)). Qwen2-VL, Qwen2.5-VL and Qwen3-VL
share this code: the base model's own forward embeds the tokens, runs the vision tower and scatters the
visual features into the ``<|image_pad|>`` rows; umr chooses the positions (1-D ``arange`` or 3-D
M-RoPE from ``get_rope_index``) and the attention mask (causal, or bidirectional through a 4-D
padding-only mask handed to the language model). Embeddings come from the final-norm hidden states;
the lm_head is never applied to a sequence (``answer_head`` reads the rows a reranker needs).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch


def base_model(model: Any) -> Any:
    """The multimodal base model (vision tower + language model) inside a model with a head."""
    return model.model if hasattr(model, "lm_head") else model


def language_model(model: Any) -> Any:
    """The text decoder inside a Qwen-VL model (with or without its lm_head)."""
    return base_model(model).language_model


def text_positions(attention_mask: torch.Tensor) -> torch.Tensor:
    """Sequential positions counted over real tokens only (pads get 0), as (3, B, L) for M-RoPE models.

    Equals ``get_rope_index`` for text-only rows, with left or right padding.
    """
    pos = (attention_mask.to(torch.long).cumsum(-1) - 1).clamp_min(0)
    return pos.unsqueeze(0).expand(3, -1, -1)


def forward_hidden(
    model: Any,
    batch: dict[str, torch.Tensor],
    *,
    positions: str,
    attention: str,
    image_token_id: int,
) -> torch.Tensor:
    """Run the base model on one collated batch; returns final-norm hidden states (B, L, H).

    ``positions="1d"`` gives every token the sequential position ``arange(L)`` on all three M-RoPE axes
    (GME's reference behaviour); ``"mrope"`` gives the 3-D positions of the image grid (the model's own
    ``get_rope_index``, computed here from the 2-D padding mask) and, for text-only batches, positions
    counted over real tokens. ``attention="bidirectional"`` replaces the causal mask by a padding-only
    4-D mask, which every Qwen-VL language model (qwen2_vl, qwen2_5_vl, qwen3_vl) takes as it is.
    """
    from transformers.masking_utils import create_bidirectional_mask

    base = base_model(model)
    input_ids = batch["input_ids"]
    attention_mask = batch["attention_mask"]
    bsz, length = input_ids.shape
    kwargs: dict[str, Any] = {"use_cache": False}
    # (B, L) int32: 1 where the processor put an <|image_pad|> (the rows visual features replace)
    mm_token_type_ids = (input_ids == image_token_id).to(torch.int32)
    if "pixel_values" in batch:
        kwargs["pixel_values"] = batch["pixel_values"]
        kwargs["image_grid_thw"] = batch["image_grid_thw"]
    kwargs["mm_token_type_ids"] = mm_token_type_ids
    if positions == "1d":
        # (3, B, L): the same arange(L) on the temporal, height and width axes
        kwargs["position_ids"] = (
            torch.arange(length, device=input_ids.device).view(1, 1, -1).expand(3, bsz, -1)
        )
    elif positions == "mrope":
        if "pixel_values" in batch:
            # (3, B, L): image tokens get (t, h, w) grid positions, text continues after the image
            kwargs["position_ids"], _ = base.get_rope_index(
                input_ids,
                mm_token_type_ids=mm_token_type_ids,
                image_grid_thw=batch["image_grid_thw"],
                attention_mask=attention_mask,
            )
        else:
            kwargs["position_ids"] = text_positions(attention_mask)
    else:
        raise ValueError(f"unknown positions {positions!r}; valid: '1d', 'mrope'")
    mask: Any = attention_mask
    if attention == "bidirectional":
        # (B, 1, L, L) additive mask, 0 between any two real tokens: padding only, no causal triangle
        dummy = torch.empty((bsz, length, 1), dtype=base.dtype, device=input_ids.device)
        mask = create_bidirectional_mask(
            config=language_model(base).config, inputs_embeds=dummy, attention_mask=attention_mask,
            allow_is_bidirectional_skip=False,
        )
    elif attention != "causal":
        raise ValueError(f"unknown attention {attention!r}; valid: 'causal', 'bidirectional'")
    out = base(input_ids=input_ids, attention_mask=mask, **kwargs)
    return out.last_hidden_state


def answer_head(model: Any, token_ids: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The lm_head rows (and bias entries) of ``token_ids`` as float32: ``(k, H)`` and ``(k,)`` or None.

    Read once at load time, so a reranker scores ``last_hidden (B, H) @ rows.T`` instead of applying the
    full-vocabulary head; an untied head (Qwen3-VL-8B) gives its own rows, not the input embeddings'.
    """
    head = model.get_output_embeddings()
    weight = getattr(head, "weight", None)
    if weight is None:
        raise ValueError(f"{type(model).__name__} has no lm_head weight to read answer-token logits from")
    index = torch.tensor(list(token_ids), dtype=torch.long, device=weight.device)
    rows = weight.detach().index_select(0, index).float()
    bias = getattr(head, "bias", None)
    return rows, (bias.detach().index_select(0, index).float() if bias is not None else None)
