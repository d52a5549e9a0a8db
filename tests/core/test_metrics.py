"""umr.metrics: hand-computed values, graded relevance, ties, bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest

from umr.metrics import (
    evaluate_rankings,
    evaluate_scores,
    hit_rate_at_k,
    mrr,
    ndcg_at_k,
    rank_scores,
    recall_at_k,
)


def test_rank_scores_orders_by_score_and_breaks_ties_by_index() -> None:
    scores = np.array([[0.1, 0.9, 0.5, 0.9], [3.0, 2.0, 1.0, 0.0]])
    assert rank_scores(scores).tolist() == [[1, 3, 2, 0], [0, 1, 2, 3]]
    assert rank_scores(scores, k=2).tolist() == [[1, 3], [0, 1]]
    with pytest.raises(ValueError, match="2-D"):
        rank_scores(np.zeros(3))
    with pytest.raises(ValueError, match="NaN"):
        rank_scores(np.array([[0.1, np.nan]]))


def test_recall_counts_the_fraction_of_relevant_documents() -> None:
    ranked = [["a", "b", "c", "d"], ["x", "y", "z", "w"]]
    relevant = [{"b", "d"}, {"x"}]
    assert recall_at_k(ranked, relevant, 1) == pytest.approx((0 + 1) / 2)
    assert recall_at_k(ranked, relevant, 2) == pytest.approx((0.5 + 1) / 2)
    assert recall_at_k(ranked, relevant, 4) == pytest.approx(1.0)
    assert recall_at_k(ranked, relevant, 2, per_query=True).tolist() == [0.5, 1.0]
    # hit rate: any relevant document in the top k
    assert hit_rate_at_k(ranked, relevant, 2) == pytest.approx(1.0)
    assert hit_rate_at_k(ranked, relevant, 1) == pytest.approx(0.5)


def test_ndcg_matches_hand_computation_with_grades() -> None:
    ranked = [[3, 1, 2, 0]]
    relevant = [{0: 3, 2: 1}]
    dcg = 1 / math.log2(4) + 3 / math.log2(5)
    idcg = 3 / math.log2(2) + 1 / math.log2(3)
    assert ndcg_at_k(ranked, relevant, 4) == pytest.approx(dcg / idcg)
    # at k=2 nothing relevant is retrieved; the ideal still has two relevant documents
    assert ndcg_at_k(ranked, relevant, 2) == 0.0
    assert ndcg_at_k([[0, 2, 1]], relevant, 10) == pytest.approx(1.0)


def test_mrr_and_queries_without_relevant_documents_are_skipped() -> None:
    ranked = [[5, 6, 7], [1, 2, 3], [9, 8]]
    relevant = [{7}, set(), {9}]
    assert mrr(ranked, relevant) == pytest.approx((1 / 3 + 1) / 2)
    assert mrr(ranked, relevant, k=2) == pytest.approx((0 + 1) / 2)
    with pytest.raises(ValueError, match="no query has a relevant"):
        mrr([[1]], [set()])


def test_evaluate_scores_and_input_checks() -> None:
    scores = np.array([[0.2, 0.8, 0.1], [0.9, 0.3, 0.4]])
    m = evaluate_scores(scores, [{1}, {2}], recall_ks=(1, 2), ndcg_ks=(3,))
    assert m["recall@1"] == pytest.approx(0.5)
    assert m["recall@2"] == pytest.approx(1.0)
    assert m["mrr"] == pytest.approx((1 + 0.5) / 2)
    assert m["ndcg@3"] == pytest.approx((1 + 1 / math.log2(3)) / 2)
    assert evaluate_rankings(rank_scores(scores), [{1}, {2}], recall_ks=(1, 2), ndcg_ks=(3,)) == m
    with pytest.raises(ValueError, match="2 queries but relevance for 1"):
        recall_at_k([[1], [2]], [{1}], 1)
    with pytest.raises(ValueError, match="k must be a positive"):
        recall_at_k([[1]], [{1}], 0)
    with pytest.raises(ValueError, match="more than once"):
        recall_at_k([[1, 1]], [{1}], 1)
