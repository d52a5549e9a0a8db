"""Loading checkpoints with transformers: device, dtype, attention implementation, config, weights,
tokenizer. Nothing here is specific to one architecture family.

What a family does with its tensors (positions, visual features, attention mode) lives in its backbone
package; ``forward_hidden``, ``text_positions``, ``base_model`` and ``load_image_processor`` are
re-exported from ``umr.backbones.qwen_vl`` for callers of the old paths.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import torch

from umr.errors import ModelNotFoundError

logger = logging.getLogger(__name__)

DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "float16": torch.float16,
    "fp16": torch.float16,
    "half": torch.float16,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
}


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None`` picks CUDA when available, else CPU."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"invalid device {device!r}; use 'cpu', 'cuda', 'cuda:1', 'mps' or None") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} was asked for but CUDA is not available; use device='cpu'")
    return dev


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device, preferred: str) -> torch.dtype:
    """``None``: the recipe's preferred half type on CUDA (bf16 when supported), float32 elsewhere."""
    if dtype is None:
        if device.type != "cuda":
            return torch.float32
        wanted = DTYPES[preferred]
        if wanted is torch.bfloat16 and not torch.cuda.is_bf16_supported():
            return torch.float16
        return wanted
    if isinstance(dtype, torch.dtype):
        return dtype
    key = str(dtype).replace("torch.", "").lower()
    if key not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; valid: {', '.join(sorted(DTYPES))}")
    return DTYPES[key]


def resolve_attn_implementation(
    requested: str | None, device: torch.device, dtype: torch.dtype, attention: str
) -> str:
    """SDPA by default; FlashAttention 2 on CUDA in half precision when ``flash_attn`` is installed."""
    valid = ("sdpa", "eager", "flash_attention_2")
    if requested is not None:
        if requested not in valid:
            raise ValueError(f"unknown attn_implementation {requested!r}; valid: {', '.join(valid)}")
        if requested == "flash_attention_2" and attention != "causal":
            raise ValueError(
                "attn_implementation='flash_attention_2' runs causal attention only, but this recipe needs "
                f"{attention} attention; use 'sdpa' (the default) or 'eager'"
            )
        return requested
    if (
        device.type == "cuda"
        and dtype in (torch.float16, torch.bfloat16)
        and attention == "causal"
        and importlib.util.find_spec("flash_attn") is not None
    ):
        return "flash_attention_2"
    return "sdpa"


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence transformers' own progress bars while loading (library calls show none by default)."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def _offline_hint(model_id: str, recipe: str) -> str:
    return (
        f"could not load model {model_id!r}: it is not a local directory and the Hugging Face hub could not "
        "be reached or has no such repository (offline machine, HF_HUB_OFFLINE=1, a typo, or a gated model). "
        f"Download it where the hub is reachable (`hf download {model_id} --local-dir ./models/NAME`), copy "
        f"the folder here and pass its path (Python: from_pretrained('./models/NAME', recipe='{recipe}'); "
        "command line: --model ./models/NAME). "
        "For a quick offline try, `umr make-tiny-model ./tiny` writes a small random-weight model."
    )


def load_config(model_id_or_path: str | os.PathLike, recipe_name: str, trust_remote_code: bool = False) -> Any:
    """Load the config, turning every 'cannot find it' into one clear ``ModelNotFoundError``."""
    from transformers import AutoConfig

    name = os.fspath(model_id_or_path)
    path = Path(name).expanduser()
    if path.exists() and not (path / "config.json").is_file():
        raise ModelNotFoundError(
            f"{name!r} is a local path but holds no config.json; pass the folder that contains the "
            "model files (config.json, *.safetensors, tokenizer files)"
        )
    try:
        with quiet_transformers():
            return AutoConfig.from_pretrained(
                str(path) if path.exists() else name, trust_remote_code=trust_remote_code
            )
    except (OSError, ValueError) as exc:
        if path.exists():
            raise ModelNotFoundError(f"cannot read the model config in {name!r}: {exc}") from exc
        raise ModelNotFoundError(_offline_hint(name, recipe_name)) from exc


def load_model(
    model_id_or_path: str | os.PathLike,
    recipe_name: str,
    *,
    head: Literal["base", "lm"],
    device: torch.device,
    dtype: torch.dtype,
    attn_implementation: str | None,
    trust_remote_code: bool = False,
) -> Any:
    """Load the backbone: the base model without lm_head (``head="base"``) or with it (``"lm"``).

    ``attn_implementation=None`` leaves the choice to the model (checkpoints with their own code).
    """
    from transformers import AutoModel, AutoModelForImageTextToText

    name = os.fspath(model_id_or_path)
    path = Path(name).expanduser()
    source = str(path) if path.exists() else name
    cls = AutoModel if head == "base" else AutoModelForImageTextToText
    extra: dict[str, Any] = {}
    if attn_implementation is not None:
        extra["attn_implementation"] = attn_implementation
    try:
        with quiet_transformers():
            model = cls.from_pretrained(
                source,
                dtype=dtype,
                trust_remote_code=trust_remote_code,
                **extra,
            )
    except (OSError, ValueError) as exc:
        if path.exists():
            raise ModelNotFoundError(f"cannot load the model weights in {name!r}: {exc}") from exc
        raise ModelNotFoundError(_offline_hint(name, recipe_name)) from exc
    model.to(device)
    model.eval()
    model.requires_grad_(False)
    return model


def load_tokenizer(source: str, recipe_name: str, added_tokens: tuple[str, ...] = ()) -> Any:
    """Load the tokenizer; tokens a recipe needs that it lacks are added, in the recipe's order.

    U-MARVEL's released tokenizer lacks ``<emb>``, ``<instruction_start>`` and ``<instruction_end>``:
    its reference code adds them one by one at load time, so they get the next free ids in that order.
    Doing the same here gives the ids its weights were trained with (see ``ensure_token_rows``).
    """
    from transformers import AutoTokenizer

    try:
        with quiet_transformers():
            tok = AutoTokenizer.from_pretrained(source, trust_remote_code=False)
    except (OSError, ValueError) as exc:
        raise ModelNotFoundError(f"cannot load the tokenizer of {source!r}: {exc}") from exc
    for token in added_tokens:
        if tok.convert_tokens_to_ids(token) in (None, tok.unk_token_id):
            tok.add_tokens([token])
            logger.info(
                "recipe %s: added token %s to the tokenizer of %s as id %d",
                recipe_name, token, source, tok.convert_tokens_to_ids(token),
            )
    return tok


def ensure_token_rows(model: Any, tokenizer: Any, tokens: tuple[str, ...], recipe_name: str) -> None:
    """Make sure the input embedding has a row for every token in ``tokens``.

    A checkpoint trained with added tokens keeps their rows (and Qwen2-VL pads its vocabulary to
    152064 rows anyway), so nothing changes. Otherwise the embedding is resized as the reference code
    does (``resize_token_embeddings(len(tokenizer))``) and a warning says the new rows are untrained.
    """
    if not tokens:
        return
    rows = int(model.get_input_embeddings().weight.shape[0])
    top = max(int(tokenizer.convert_tokens_to_ids(t)) for t in tokens)
    if top < rows:
        return
    logger.warning(
        "recipe %s: the checkpoint has no embedding rows for %s (ids up to %d, %d rows); resizing the "
        "embeddings: the new rows are untrained, so vectors will not match the published model",
        recipe_name, list(tokens), top, rows,
    )
    model.resize_token_embeddings(len(tokenizer))


# Re-exports of the Qwen-VL specifics that used to live here (old import paths keep working).
from umr.backbones.qwen_vl.modeling import base_model, forward_hidden, text_positions  # noqa: E402
from umr.backbones.qwen_vl.processing import load_image_processor  # noqa: E402

__all__ = [
    "DTYPES",
    "base_model",
    "ensure_token_rows",
    "forward_hidden",
    "load_config",
    "load_image_processor",
    "load_model",
    "load_tokenizer",
    "quiet_transformers",
    "resolve_attn_implementation",
    "resolve_device",
    "resolve_dtype",
    "text_positions",
]
