"""Every adapter class rejects unknown keyword arguments (naming the valid ones) and accepts both
spellings of the model argument, so no option is ever accepted and silently ignored."""

from __future__ import annotations

import pytest

from langchain_umr import UMREmbeddings, UMRReranker, UMRRetriever


@pytest.mark.parametrize(
    ("factory", "name"),
    [
        (lambda: UMREmbeddings(modle="x"), "UMREmbeddings"),
        (lambda: UMRReranker(top_k=3), "UMRReranker"),
        (lambda: UMRRetriever(store=None, top_k=3), "UMRRetriever"),
    ],
)
def test_langchain_unknown_kwargs_name_the_valid_ones(factory, name) -> None:
    with pytest.raises(TypeError, match=rf"{name} got unknown keyword argument.*valid: "):
        factory()


def test_langchain_model_name_spelling_is_accepted() -> None:
    assert UMREmbeddings(model_name="./my-model").model == "./my-model"
    assert UMRReranker(model_name="./my-reranker").model == "./my-reranker"
    with pytest.raises(ValueError, match="disagree"):
        UMREmbeddings(model="a", model_name="b")


def test_llamaindex_unknown_kwargs_and_model_spelling(tmp_path) -> None:
    from llama_index.embeddings.umr import UMREmbedding
    from llama_index.postprocessor.umr_rerank import UMRRerank

    with pytest.raises(TypeError, match=r"UMREmbedding got unknown keyword argument\(s\) 'modle_name'.*model_name"):
        UMREmbedding(modle_name="x")
    with pytest.raises(TypeError, match=r"UMRRerank got unknown keyword argument\(s\) 'top_k'"):
        UMRRerank(reranker=object(), top_k=2)
    # model= is not ignored: it is the model that loads (here: a folder without a model, so it fails
    # naming that folder, instead of loading the default hub model)
    with pytest.raises(Exception, match="my-model"):
        UMREmbedding(model=str(tmp_path / "my-model"))
    with pytest.raises(ValueError, match="disagree"):
        UMREmbedding(model="a", model_name="b")
