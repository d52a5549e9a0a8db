"""Fixtures for umr.train: a tiny model with the shapes pixel budget, fresh embedders, a shapes dataset."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def shapes_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from umr.train.synthetic import build_shapes_model

    return build_shapes_model(tmp_path_factory.mktemp("shapes-model"), seed=0)


@pytest.fixture
def fresh_embedder(shapes_model_dir: Path):
    """A new embedder per test: ``fit`` changes its model in place."""
    import torch

    import umr

    torch.manual_seed(0)
    return umr.Embedder.from_pretrained(shapes_model_dir, device="cpu")


@pytest.fixture(scope="session")
def shapes_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from umr.train.synthetic import ShapesTask

    return ShapesTask(colours=3, shapes=2, seed=1).write_dataset(
        tmp_path_factory.mktemp("shapes-data"), train_per_class=4, test_per_class=2
    )
