"""Shared fixtures: offline, CPU, tiny random-weight models built once per session."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")  # chromadb

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny GME-recipe Qwen2-VL checkpoint (random weights, local tokenizer)."""
    from umr.testing import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-gme"), recipe="gme", seed=0)


@pytest.fixture(scope="session")
def tiny_embedder(tiny_model_dir: Path):
    """An ``umr.Embedder`` on the tiny model, CPU float32."""
    import torch

    import umr

    torch.manual_seed(0)
    return umr.Embedder.from_pretrained(tiny_model_dir, device="cpu")


@pytest.fixture(scope="session")
def tiny_reranker_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny zero-shot Yes/No reranker checkpoint (same Qwen2-VL architecture)."""
    from umr.testing import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-rerank"), recipe="qwen-vl-yesno", seed=1)


def has_cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:  # pragma: no cover
        return False


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU")
    cuda = None
    for item in items:
        if "gpu" in item.keywords:
            if cuda is None:
                cuda = has_cuda()
            if not cuda:
                item.add_marker(skip_gpu)
