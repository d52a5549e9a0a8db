"""UMREmbedding: the LlamaIndex embedding calls map onto the right core calls and sides."""

from __future__ import annotations

import asyncio
import io

import numpy as np
import pytest
from llama_index.core.embeddings import MultiModalEmbedding
from llama_index.embeddings.umr import UMREmbedding

from umr.errors import InputError

from .conftest import PIXELS


def _close(a, b) -> bool:
    return np.allclose(np.asarray(a), np.asarray(b), atol=1e-5)


def test_is_multimodal_and_names_the_model(umr_embed, li_embedder) -> None:
    assert isinstance(umr_embed, MultiModalEmbedding)
    assert umr_embed.model_name == li_embedder.model_id
    assert umr_embed.embedder is li_embedder
    assert umr_embed.class_name() == "UMREmbedding"


def test_query_side_uses_embed_queries_with_instruction(li_embedder) -> None:
    plain = UMREmbedding(embedder=li_embedder)
    instructed = UMREmbedding(embedder=li_embedder, query_instruction="Find a document page that answers the question.")
    q = "what is the total amount on the invoice?"
    expected = li_embedder.embed_queries([q], instruction="Find a document page that answers the question.")[0]
    got = instructed.get_query_embedding(q)
    assert isinstance(got, list) and isinstance(got[0], float) and len(got) == li_embedder.dim
    assert _close(got, expected)
    # the instruction changes the query vector, and documents never get it
    assert not _close(got, plain.get_query_embedding(q))
    assert _close(instructed.get_text_embedding(q), li_embedder.embed_documents([{"text": q}])[0])


def test_text_batch_matches_core_rows_in_order(li_embedder) -> None:
    embed = UMREmbedding(embedder=li_embedder, embed_batch_size=2, max_batch_tokens=64)
    texts = ["alpha", "a much longer passage about quarterly revenue and costs", "beta", "", "gamma ray"]
    got = embed.get_text_embedding_batch(texts)
    expected = li_embedder.embed_documents([{"text": t} for t in texts])
    assert len(got) == len(texts)
    for row, exp in zip(got, expected):
        assert _close(row, exp)


def test_text_naming_an_image_file_stays_text(umr_embed, li_embedder, page_images, page_vectors) -> None:
    path = str(page_images[0])
    as_text = umr_embed.get_text_embedding(path)
    assert _close(as_text, li_embedder.embed_documents([{"text": path}])[0])
    assert not _close(as_text, page_vectors[0])


def test_image_path_bytesio_and_file_uri_agree(umr_embed, page_images, page_vectors) -> None:
    path = page_images[1]
    expected = page_vectors[1]
    buf = io.BytesIO(path.read_bytes())
    buf.seek(7)  # a half-read buffer still gives the whole image
    assert _close(umr_embed.get_image_embedding(str(path)), expected)
    assert _close(umr_embed.get_image_embedding(buf), expected)
    assert _close(umr_embed.get_image_embedding(path.resolve().as_uri()), expected)
    batch = umr_embed.get_image_embedding_batch([str(page_images[2]), str(page_images[0])])
    assert _close(batch[0], page_vectors[2]) and _close(batch[1], page_vectors[0])
    assert not _close(batch[0], batch[1])


def test_fused_query_embedding(umr_embed, li_embedder, page_images) -> None:
    got = umr_embed.get_multimodal_query_embedding("pages like this one", str(page_images[2]))
    expected = li_embedder.embed_queries([{"text": "pages like this one", "image": str(page_images[2])}])[0]
    assert _close(got, expected)
    with pytest.raises(ValueError, match="needs text, an image"):
        umr_embed.get_multimodal_query_embedding()


def test_async_variants_match_sync(umr_embed, page_images, page_vectors) -> None:
    async def run():
        return await asyncio.gather(
            umr_embed.aget_query_embedding("revenue"),
            umr_embed.aget_text_embedding_batch(["one", "two", "three"]),
            umr_embed.aget_image_embedding_batch([str(p) for p in page_images[:2]]),
        )

    q, texts, images = asyncio.run(run())
    assert _close(q, umr_embed.get_query_embedding("revenue"))
    assert all(_close(a, b) for a, b in zip(texts, umr_embed.get_text_embedding_batch(["one", "two", "three"])))
    assert all(_close(a, b) for a, b in zip(images, page_vectors[:2]))


def test_bad_images_raise_clear_errors(umr_embed, tmp_path) -> None:
    with pytest.raises(InputError, match="remote URL"):
        umr_embed.get_image_embedding("https://example.com/page.png")
    missing = tmp_path / "nope.png"
    with pytest.raises(InputError, match="not found"):
        umr_embed.get_image_embedding(str(missing))
    with pytest.raises(TypeError, match="cannot use int"):
        umr_embed.get_image_embedding(3)  # type: ignore[arg-type]


def test_injection_rules(li_embedder) -> None:
    with pytest.raises(ValueError, match="device"):
        UMREmbedding(embedder=li_embedder, device="cpu")
    with pytest.raises(ValueError, match="does not match"):
        UMREmbedding("Alibaba-NLP/gme-Qwen2-VL-7B-Instruct", embedder=li_embedder)
    with pytest.raises(TypeError, match=r"umr\.Embedder"):
        UMREmbedding(embedder=object())


def test_built_from_a_model_path(tiny_model_dir, li_embedder) -> None:
    import torch

    embed = UMREmbedding(
        model_name=str(tiny_model_dir), device=torch.device("cpu"), dtype=torch.float32,
        max_batch_tokens=512, embed_batch_size=4, **PIXELS,
    )
    assert embed.dtype == "torch.float32" and embed.embedder.dtype == torch.float32
    assert embed.embedder is not li_embedder
    assert embed.embedder.max_batch_tokens == 512 and embed.embedder.batch_size == 4
    assert embed.embedder.fingerprint == li_embedder.fingerprint  # same model, recipe and pixel budget
    assert _close(embed.get_query_embedding("hello"), li_embedder.embed_queries(["hello"])[0])
