"""umr.store.hybrid on a real Chroma collection and lexical index: modes, fusion, filters on both sides."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("tantivy")
chromadb = pytest.importorskip("chromadb")

from umr.errors import QueryError  # noqa: E402
from umr.store import HashEmbedder  # noqa: E402
from umr.store.collection import ChromaCollection  # noqa: E402
from umr.store.hybrid import SearchOptions, search  # noqa: E402
from umr.store.lexical import LexicalIndex, LexicalRecord  # noqa: E402

N = 120


def _text(i: int) -> str:
    kind = ("invoice", "manual", "report")[i % 3]
    return f"{kind} number {i} about pumps and valves, code INV-2024-{i:04d}, part X{100 + i}"


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, LexicalIndex, HashEmbedder]:
    root: Path = tmp_path_factory.mktemp("hybrid")
    emb = HashEmbedder(dim=16)
    client = chromadb.PersistentClient(path=str(root / "db"))
    raw = client.get_or_create_collection("hyb", configuration={"hnsw": {"space": "cosine"}}, embedding_function=None)
    col = ChromaCollection(raw, max_batch=50)
    ids = [f"id{i:03d}" for i in range(N)]
    texts = [_text(i) for i in range(N)]
    metas = [{"source": f"/d/{i // 10}.pdf", "page": i % 10 + 1, "kind": ("pdf", "text")[i % 2]} for i in range(N)]
    raw.add(ids=ids, embeddings=emb.embed_documents(texts), documents=texts, metadatas=metas)
    lex = LexicalIndex(root / "lexical")
    lex.upsert(LexicalRecord(i, t, m) for i, t, m in zip(ids, texts, metas))
    return col, lex, emb


def _run(setup: Any, query: Any, k: int = 5, **kw: Any) -> list:
    col, lex, emb = setup
    where = kw.pop("where", None)
    where_document = kw.pop("where_document", None)
    text = query if isinstance(query, str) else "x"
    vec = emb.embed_queries([text])[0]
    return search(col, lex, query, k, dense_ranked=lambda n: col.query_ids(vec, n, where, where_document),
                  where=where, where_document=where_document, options=SearchOptions(**kw))


def test_modes_on_a_code_query(setup: Any) -> None:
    dense = _run(setup, "INV-2024-0042", mode="dense")
    assert "id042" not in [h.id for h in dense[:1]]  # a hash embedder cannot read codes
    assert all(h.lexical_score is None and h.dense_score == h.score for h in dense)
    lexical = _run(setup, "INV-2024-0042", mode="lexical")
    assert [h.id for h in lexical] == ["id042"]
    assert lexical[0].lexical_score == lexical[0].score > 0 and lexical[0].dense_score is None
    assert lexical[0].document == _text(42) and lexical[0].metadata["page"] == 3  # read back from Chroma
    for fusion in ("rrf", "weighted"):
        hybrid = _run(setup, "inv-2024-0042", mode="hybrid", fusion=fusion)
        assert hybrid[0].id == "id042" and hybrid[0].lexical_score is not None
        assert len(hybrid) == 5 and [h.score for h in hybrid] == sorted((h.score for h in hybrid), reverse=True)


def test_hybrid_keeps_a_hit_both_sides_agree_on(setup: Any) -> None:
    hits = _run(setup, _text(7), mode="hybrid", k=3)  # same text: dense score 1.0 and best BM25
    assert hits[0].id == "id007"
    assert hits[0].dense_score == pytest.approx(1.0, abs=1e-5) and hits[0].lexical_score is not None


def test_exact_filters_apply_to_both_sides(setup: Any) -> None:
    where = {"$and": [{"kind": "text"}, {"source": {"$in": ["/d/1.pdf", "/d/2.pdf"]}}]}
    for mode in ("lexical", "hybrid", "dense"):
        hits = _run(setup, "pumps INV-2024-0011", mode=mode, k=10, where=where)
        assert hits and all(h.metadata["kind"] == "text" and h.metadata["source"] in ("/d/1.pdf", "/d/2.pdf")
                            for h in hits)
    assert _run(setup, "INV-2024-0011", mode="lexical", where=where)[0].id == "id011"
    assert _run(setup, "INV-2024-0011", mode="lexical", where={"kind": "pdf"}) == []  # id011 is a text record


def test_inexact_filters_are_checked_by_chroma_on_deeper_lists(setup: Any) -> None:
    # every record matches "pumps"; only page 10 of each source passes: 12 of 120, found past the first candidates
    hits = _run(setup, "pumps valves", mode="lexical", k=12, where={"page": {"$gt": 9}})
    assert len(hits) == 12 and all(h.metadata["page"] == 10 for h in hits)
    hits = _run(setup, "pumps", mode="lexical", k=3, where_document={"$contains": "part X155"})
    assert [h.id for h in hits] == ["id055"]
    hits = _run(setup, "pumps", mode="hybrid", k=3, where_document={"$contains": "part X155"})
    assert [h.id for h in hits] == ["id055"]


def test_queries_without_words_and_image_queries(setup: Any, caplog: pytest.LogCaptureFixture) -> None:
    for q in ("", "😀 ?!", {"image": np.zeros((4, 4, 3), np.uint8)}):
        with pytest.raises(QueryError):
            _run(setup, q, mode="lexical")
        with caplog.at_level(logging.INFO, logger="umr.store.hybrid"):
            hits = _run(setup, q, mode="hybrid")
        assert len(hits) == 5 and all(h.lexical_score is None for h in hits)  # dense side only, logged
    assert "dense side only" in caplog.text
    weird = _run(setup, 'INV-2024-0009 AND "pumps" OR kind:pdf (x) 😀', mode="lexical")
    assert weird[0].id == "id009"


def test_out_of_step_lexical_ids_are_dropped_with_a_warning(setup: Any, caplog: pytest.LogCaptureFixture) -> None:
    lex = setup[1]
    lex.upsert([LexicalRecord("ghost", "zeppelin hangar", {"kind": "pdf"})])
    try:
        with caplog.at_level(logging.WARNING):
            assert _run(setup, "zeppelin", mode="lexical") == []
        assert "out of step" in caplog.text
    finally:
        lex.delete(["ghost"])


def test_search_options_are_validated() -> None:
    with pytest.raises(ValueError, match="dense, lexical, hybrid"):
        SearchOptions(mode="sparse")
    with pytest.raises(ValueError, match="rrf, weighted"):
        SearchOptions(fusion="max")
    with pytest.raises(ValueError, match="depth"):
        SearchOptions(depth=0)
    with pytest.raises(ValueError, match="weights"):
        SearchOptions(weights=(0.0, 0.0))
    assert SearchOptions(depth=7).depth_for(20) == 20 and SearchOptions().depth_for(5) == 10 and SearchOptions().depth_for(25) == 25


def test_lexical_modes_need_the_index(setup: Any) -> None:
    col, _, emb = setup
    with pytest.raises(ValueError, match="rebuild-lexical"):
        search(col, None, "pumps", 3, dense_ranked=lambda n: col.query_ids(emb.embed_queries(["pumps"])[0], n),
               options=SearchOptions(mode="hybrid"))
