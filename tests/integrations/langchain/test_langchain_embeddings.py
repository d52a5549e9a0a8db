"""UMREmbeddings: LangChain's standard embeddings suites plus image, fused and Chroma behaviour."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from langchain_tests.integration_tests import EmbeddingsIntegrationTests
from langchain_tests.unit_tests import EmbeddingsUnitTests
from PIL import Image

from langchain_umr import UMREmbeddings


class TestUMREmbeddingsUnit(EmbeddingsUnitTests):
    @property
    def embeddings_class(self) -> type[UMREmbeddings]:
        return UMREmbeddings

    @property
    def embedding_model_params(self) -> dict[str, Any]:
        # construction validates the configuration but loads nothing
        return {"model": "Alibaba-NLP/gme-Qwen2-VL-2B-Instruct", "device": "cpu", "batch_size": 4}


class TestUMREmbeddingsFromPath(EmbeddingsIntegrationTests):
    """The suite with the model loaded by the adapter from a local directory."""

    @pytest.fixture(autouse=True)
    def _tiny_path(self, tiny_model_dir: Path) -> None:
        type(self).model_path = str(tiny_model_dir)

    @property
    def embeddings_class(self) -> type[UMREmbeddings]:
        return UMREmbeddings

    @property
    def embedding_model_params(self) -> dict[str, Any]:
        return {"model": self.model_path, "recipe": "gme", "device": "cpu", "dtype": "float32"}


class TestUMREmbeddingsInjected(EmbeddingsIntegrationTests):
    """The suite with an injected ``umr.Embedder``."""

    @pytest.fixture(autouse=True)
    def _small_embedder(self, small_embedder: Any) -> None:
        type(self).core = small_embedder

    @property
    def embeddings_class(self) -> type[UMREmbeddings]:
        return UMREmbeddings

    @property
    def embedding_model_params(self) -> dict[str, Any]:
        return {"embedder": self.core, "batch_size": 2}


# -- behaviour beyond the standard suites -----------------------------------------------------------------
@pytest.fixture(scope="module")
def emb(small_embedder: Any) -> UMREmbeddings:
    return UMREmbeddings(embedder=small_embedder)


def test_vectors_are_the_core_embedders(emb: UMREmbeddings, small_embedder: Any) -> None:
    texts = ["a red circle", "quarterly revenue grew"]
    np.testing.assert_allclose(emb.embed_documents(texts), small_embedder.embed_documents(texts), atol=1e-5)
    np.testing.assert_allclose(
        emb.embed_query("revenue?"), small_embedder.embed_queries(["revenue?"])[0], atol=1e-5
    )
    assert emb.embed_documents([]) == []


def test_query_instruction_changes_query_side_only(small_embedder: Any) -> None:
    plain = UMREmbeddings(embedder=small_embedder)
    instructed = UMREmbeddings(
        embedder=small_embedder, query_instruction="Find a page that answers the question."
    )
    assert not np.allclose(plain.embed_query("revenue"), instructed.embed_query("revenue"), atol=1e-4)
    np.testing.assert_allclose(
        plain.embed_documents(["revenue"]), instructed.embed_documents(["revenue"]), atol=1e-6
    )


def test_text_naming_an_image_file_stays_text(emb: UMREmbeddings, png_files: list[Path]) -> None:
    path = str(png_files[0])
    as_text = emb.embed_documents([path])[0]
    as_image = emb.embed_image([path])[0]
    assert not np.allclose(as_text, as_image, atol=1e-4)


def test_embed_image_paths_and_uris(emb: UMREmbeddings, small_embedder: Any, png_files: list[Path]) -> None:
    vecs = emb.embed_image([str(p) for p in png_files[:2]])
    assert len(vecs) == 2 and all(len(v) == small_embedder.dim for v in vecs)
    np.testing.assert_allclose(vecs, small_embedder.embed_documents(list(png_files[:2])), atol=1e-5)
    np.testing.assert_allclose(emb.embed_image([png_files[0].resolve().as_uri()])[0], vecs[0], atol=1e-5)
    assert not np.allclose(vecs[0], vecs[1], atol=1e-4)


def test_fused_query(emb: UMREmbeddings, small_embedder: Any, png_files: list[Path]) -> None:
    fused = emb.embed_query_with_image("the same shape in blue", png_files[0])
    core = small_embedder.embed_queries([{"text": "the same shape in blue", "image": png_files[0]}])[0]
    np.testing.assert_allclose(fused, core, atol=1e-5)
    assert not np.allclose(fused, emb.embed_query("the same shape in blue"), atol=1e-4)
    image_only = emb.embed_query_with_image(None, Image.open(png_files[0]))
    np.testing.assert_allclose(image_only, small_embedder.embed_queries([png_files[0]])[0], atol=1e-5)
    many = emb.embed_multimodal([{"text": "x", "image": str(png_files[1])}, "plain text"], side="query")
    np.testing.assert_allclose(many[1], emb.embed_query("plain text"), atol=1e-5)


async def test_async_image_and_multimodal(emb: UMREmbeddings, png_files: list[Path]) -> None:
    a = await emb.aembed_image([str(png_files[2])])
    b = await emb.aembed_multimodal([png_files[2]])
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_bad_inputs_are_named(emb: UMREmbeddings, tmp_path: Path) -> None:
    import umr

    with pytest.raises(TypeError, match="single str"):
        emb.embed_documents("not a list")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"texts\[1\] must be str"):
        emb.embed_documents(["ok", 3])  # type: ignore[list-item]
    missing = tmp_path / "missing.png"
    with pytest.raises(umr.InputError, match=r"missing\.png"):
        emb.embed_image([str(missing)])
    with pytest.raises(ValueError, match="needs an image"):
        emb.embed_query_with_image("text only", None)


def test_configuration_is_validated_at_construction(small_embedder: Any) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="unknown embedding recipe"):
        UMREmbeddings(recipe="no-such-recipe")
    with pytest.raises(ValidationError, match="unknown dtype"):
        UMREmbeddings(dtype="int4")
    with pytest.raises(ValidationError, match="batch_size"):
        UMREmbeddings(batch_size=0)
    with pytest.raises(ValidationError, match="model"):
        UMREmbeddings(model=42)
    with pytest.raises(TypeError, match=r"umr\.Embedder"):
        UMREmbeddings(embedder="gme")
    with pytest.raises(ValidationError, match="device"):
        UMREmbeddings(embedder=small_embedder, device="cpu")
    with pytest.raises(TypeError, match=r"unknown keyword argument.*valid: .*model"):
        UMREmbeddings(no_such_option="x")


def test_serialization_leaves_out_the_embedder(small_embedder: Any) -> None:
    emb = UMREmbeddings(embedder=small_embedder, batch_size=3)
    dumped = emb.model_dump()
    assert "embedder" not in dumped
    assert dumped["model"] == small_embedder.model_id and dumped["batch_size"] == 3
    rebuilt = UMREmbeddings(**dumped)  # loads the same model lazily from the dumped id
    np.testing.assert_allclose(rebuilt.embed_query("hello"), emb.embed_query("hello"), atol=1e-5)
