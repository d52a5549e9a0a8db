"""MultiModalVectorStoreIndex and VectorStoreIndex over real Chroma collections, embedded by UMR."""

from __future__ import annotations

import math

import chromadb
import numpy as np
import pytest
from llama_index.core import StorageContext, VectorStoreIndex
from llama_index.core.embeddings import MockEmbedding
from llama_index.core.schema import ImageNode, MetadataMode, TextNode
from llama_index.embeddings.umr import UMREmbedding, umr_chroma_vector_stores, umr_multimodal_index
from llama_index.vector_stores.chroma import ChromaVectorStore

PASSAGES = ["Operating costs fell in the second quarter.", "Wait for the green light after the reset."]


def page_nodes(page_images, page_texts) -> list[ImageNode]:
    return [
        ImageNode(
            id_=f"page-{i + 1}", image_path=str(path), text=page_texts[i],
            metadata={"source": "report.pdf", "page": i + 1},
        )
        for i, path in enumerate(page_images)
    ]


def text_nodes() -> list[TextNode]:
    return [
        TextNode(id_=f"text-{i}", text=t, metadata={"source": "notes.txt", "page": 1})
        for i, t in enumerate(PASSAGES)
    ]


def chroma_score(cosine: float) -> float:
    """ChromaVectorStore reports exp(-distance); with cosine distance that is exp(cos - 1)."""
    return math.exp(cosine - 1.0)


@pytest.fixture()
def client(tmp_path):
    return chromadb.PersistentClient(
        path=str(tmp_path / "chroma"), settings=chromadb.Settings(anonymized_telemetry=False)
    )


def test_index_embeds_everything_with_umr(client, umr_embed, li_embedder, page_images, page_texts, page_vectors):
    text_store, image_store = umr_chroma_vector_stores(client, umr_embed, "li")
    pages = page_nodes(page_images, page_texts)
    index = umr_multimodal_index(
        pages + text_nodes(), embed_model=umr_embed, vector_store=text_store, image_vector_store=image_store
    )
    assert index._embed_model is umr_embed and index.image_embed_model is umr_embed

    stored = client.get_collection("li_image").get(include=["embeddings"])
    by_id = dict(zip(stored["ids"], stored["embeddings"]))
    assert sorted(by_id) == [f"page-{i}" for i in range(1, 5)]
    for i in range(4):  # the image collection holds UMR document-side image vectors
        assert np.allclose(by_id[f"page-{i + 1}"], page_vectors[i], atol=1e-5)

    texts = client.get_collection("li_text").get(include=["embeddings"])
    nodes = {n.node_id: n for n in [*pages, *text_nodes()]}
    assert sorted(texts["ids"]) == sorted(nodes)  # passages plus the text of each page node
    expected = li_embedder.embed_documents(
        [{"text": nodes[i].get_content(metadata_mode=MetadataMode.EMBED)} for i in texts["ids"]]
    )
    assert np.allclose(np.asarray(texts["embeddings"]), expected, atol=1e-5)

    retriever = index.as_retriever(similarity_top_k=2, image_similarity_top_k=4)
    image_hits = retriever.text_to_image_retrieve("revenue growth")  # the image collection alone
    q = li_embedder.embed_queries(["revenue growth"])[0]
    cosine = {f"page-{i + 1}": float(page_vectors[i] @ q) for i in range(4)}
    assert all(isinstance(r.node, ImageNode) and r.node.image_path for r in image_hits)
    assert [r.node.node_id for r in image_hits] == sorted(cosine, key=cosine.get, reverse=True)
    assert [r.score for r in image_hits] == pytest.approx(
        sorted(chroma_score(c) for c in cosine.values())[::-1], abs=1e-4
    )
    assert all(r.node.metadata == {"source": "report.pdf", "page": int(r.node.node_id[5:])} for r in image_hits)
    # retrieve() merges both collections; a page found in both comes once (LlamaIndex dedupes by id)
    both = [r.node.node_id for r in retriever.retrieve("revenue growth")]
    assert len(both) == len(set(both)) and set(both) >= set(cosine)


def test_no_silent_clip_or_openai_fallback(umr_embed) -> None:
    with pytest.raises(TypeError, match="image_embed_model"):
        umr_multimodal_index([], embed_model=umr_embed, image_embed_model="clip")
    with pytest.raises(TypeError, match="UMREmbedding"):
        umr_multimodal_index([], embed_model=MockEmbedding(embed_dim=8))
    with pytest.raises(ValueError, match="conflicts"):
        umr_multimodal_index([], embed_model=umr_embed, model_name="Alibaba-NLP/gme-Qwen2-VL-7B-Instruct")


def test_collections_refuse_another_model(client, umr_embed, li_embedder) -> None:
    umr_chroma_vector_stores(client, umr_embed, "fp")
    from umr.store import HashEmbedder

    other = UMREmbedding(embedder=HashEmbedder(dim=li_embedder.dim))
    with pytest.raises(ValueError, match="holds vectors of"):
        umr_chroma_vector_stores(client, other, "fp")


def test_non_scalar_metadata_is_refused_before_writing(client, umr_embed, page_images, page_texts) -> None:
    text_store, image_store = umr_chroma_vector_stores(client, umr_embed, "bad")
    bad = page_nodes(page_images[:1], page_texts)
    bad[0].metadata["tags"] = ["finance", "q3"]
    with pytest.raises(ValueError, match=r"node 'page-1'.*metadata\['tags'\]"):
        umr_multimodal_index(bad, embed_model=umr_embed, vector_store=text_store, image_vector_store=image_store)
    none_value = text_nodes()[:1]
    none_value[0].metadata["author"] = None
    with pytest.raises(ValueError, match="author"):
        umr_multimodal_index(
            none_value, embed_model=umr_embed, vector_store=text_store, image_vector_store=image_store
        )
    assert client.get_collection("bad_text").count() == 0 and client.get_collection("bad_image").count() == 0


def test_reopen_and_text_only_insert_keep_image_search(client, umr_embed, page_images, page_texts) -> None:
    text_store, image_store = umr_chroma_vector_stores(client, umr_embed, "re")
    umr_multimodal_index(
        page_nodes(page_images[:2], page_texts), embed_model=umr_embed,
        vector_store=text_store, image_vector_store=image_store,
    )
    # a later run adds only passages to the same collections: the pages must stay searchable
    text_store, image_store = umr_chroma_vector_stores(client, umr_embed, "re")
    index = umr_multimodal_index(
        text_nodes(), embed_model=umr_embed, vector_store=text_store, image_vector_store=image_store
    )
    assert not index.is_image_vector_store_empty
    found = index.as_retriever(image_similarity_top_k=2).text_to_image_retrieve("reset button")
    assert {r.node.node_id for r in found} == {"page-1", "page-2"}
    # reopening without nodes searches both collections
    text_store, image_store = umr_chroma_vector_stores(client, umr_embed, "re")
    reopened = umr_multimodal_index(embed_model=umr_embed, vector_store=text_store, image_vector_store=image_store)
    retriever = reopened.as_retriever(similarity_top_k=4, image_similarity_top_k=1)
    assert {r.node.node_id for r in retriever.text_retrieve("costs")} == {"text-0", "text-1", "page-1", "page-2"}
    found = retriever.text_to_image_retrieve("costs")
    assert len(found) == 1 and isinstance(found[0].node, ImageNode) and found[0].node.image_path


def test_text_vector_store_index(client, umr_embed, li_embedder) -> None:
    col = client.get_or_create_collection("plain", configuration={"hnsw": {"space": "cosine"}})
    nodes = [*text_nodes(), TextNode(id_="text-x", text="The quick brown fox jumps over the lazy dog.")]
    ctx = StorageContext.from_defaults(vector_store=ChromaVectorStore(chroma_collection=col))
    index = VectorStoreIndex(nodes, embed_model=umr_embed, storage_context=ctx)
    results = index.as_retriever(similarity_top_k=3).retrieve("brown fox")
    q = li_embedder.embed_queries(["brown fox"])[0]
    docs = li_embedder.embed_documents([{"text": n.get_content(metadata_mode=MetadataMode.EMBED)} for n in nodes])
    cosine = {n.node_id: float(d @ q) for n, d in zip(nodes, docs)}
    assert [r.node.node_id for r in results] == sorted(cosine, key=cosine.get, reverse=True)
    assert [r.score for r in results] == pytest.approx(
        sorted(chroma_score(c) for c in cosine.values())[::-1], abs=1e-4
    )


def test_query_engine_reranks_pages_with_umr(client, umr_embed, li_reranker, page_images) -> None:
    """Text query -> Chroma text + image collections -> UMRRerank -> ImageNodes in the reranker's order."""
    from llama_index.core.llms import MockLLM
    from llama_index.postprocessor.umr_rerank import UMRRerank


    reranker = li_reranker
    text_store, image_store = umr_chroma_vector_stores(client, umr_embed, "qe")
    # pages without a text layer go to the image collection only; passages to the text collection
    pages = [
        ImageNode(id_=f"page-{i + 1}", image_path=str(p), metadata={"source": "report.pdf", "page": i + 1})
        for i, p in enumerate(page_images)
    ]
    index = umr_multimodal_index(
        pages + text_nodes(), embed_model=umr_embed, vector_store=text_store, image_vector_store=image_store
    )
    query = "quarterly revenue chart"
    retrieved = index.as_retriever(similarity_top_k=1, image_similarity_top_k=4).retrieve(query)
    candidates = [
        {"image": n.node.image_path} if isinstance(n.node, ImageNode) else n.node.get_content()
        for n in retrieved
    ]
    truth = dict(zip((n.node.node_id for n in retrieved), reranker.score(query, candidates)))
    expected = sorted(truth, key=truth.get, reverse=True)[:3]

    engine = index.as_query_engine(
        llm=MockLLM(), similarity_top_k=1, image_similarity_top_k=4,
        node_postprocessors=[UMRRerank(reranker=reranker, top_n=3)],
    )
    response = engine.query(query)
    assert [n.node.node_id for n in response.source_nodes] == expected
    assert [n.score for n in response.source_nodes] == pytest.approx([truth[i] for i in expected], abs=1e-5)
    image_nodes = response.metadata["image_nodes"]
    assert image_nodes and all(isinstance(n.node, ImageNode) and n.node.image_path for n in image_nodes)
    assert [n.node.node_id for n in image_nodes] == [i for i in expected if i.startswith("page-")]
    assert all("retrieval_score" in n.node.metadata for n in response.source_nodes)
