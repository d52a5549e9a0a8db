from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.remote.fake_openai import FakeServer

SERVED = "Alibaba-NLP/gme-Qwen2-VL-2B-Instruct"


@pytest.fixture
def fake() -> Iterator[FakeServer]:
    with FakeServer(models=(SERVED, "some-reranker")) as server:
        yield server
