"""Rank fusion for hybrid search: reciprocal rank fusion, weighted score fusion, floors, ties."""

from __future__ import annotations

import math

import pytest

from umr.ranking import hybrid_fusion, min_max, reciprocal_rank_fusion, weighted_score_fusion


def test_rrf_scores_and_duplicates() -> None:
    fused = dict(reciprocal_rank_fusion([["a", "b", "a"], ["b", "c"]], k=60))
    assert fused["a"] == pytest.approx(1 / 61)  # the repeated "a" counts once, at its best rank
    assert fused["b"] == pytest.approx(1 / 62 + 1 / 61)
    assert fused["c"] == pytest.approx(1 / 62)
    assert [key for key, _ in reciprocal_rank_fusion([["a", "b"], ["b", "c"]])] == ["b", "a", "c"]


def test_min_max_with_a_floor_keeps_near_equal_scores_near_equal() -> None:
    scores = {"a": 0.50, "b": 0.49}
    assert min_max(scores) == {"a": 1.0, "b": 0.0}  # observed range stretched to [0, 1]
    floored = min_max(scores, lower_bound=-1.0)
    assert floored["a"] == 1.0 and floored["b"] == pytest.approx(1.49 / 1.5)
    assert min_max({"x": -2.0, "y": 1.0}, lower_bound=-1.0)["x"] == 0.0  # below the floor: 0
    with pytest.raises(ValueError, match="lower_bound"):
        min_max(scores, lower_bound=math.nan)


def test_weighted_fusion_lower_bounds_and_validation() -> None:
    fused = dict(weighted_score_fusion([{"a": 2.0, "b": 1.0}, {"b": 0.9, "c": 0.8}], [1.0, 1.0],
                                       lower_bounds=[0.0, -1.0]))
    assert fused["a"] == pytest.approx(1.0)
    assert fused["b"] == pytest.approx(0.5 + 1.0)
    assert fused["c"] == pytest.approx(1.8 / 1.9)
    with pytest.raises(ValueError, match="lower bounds"):
        weighted_score_fusion([{"a": 1.0}], [1.0], lower_bounds=[0.0, 0.0])


@pytest.mark.parametrize("method", ["rrf", "weighted"])
def test_hybrid_fusion_code_page_wins_over_flat_dense_list(method: str) -> None:
    # a code query: the lexical side finds one page, the dense side ranks look-alike pages by near-equal scores
    dense = [("p1", 0.31), ("p2", 0.30), ("p3", 0.30), ("code-page", 0.29)]
    lexical = [("code-page", 12.5)]
    assert hybrid_fusion(dense, lexical, method=method)[0][0] == "code-page"


def test_hybrid_fusion_agreement_beats_one_sided_hits() -> None:
    dense = [("a", 0.9), ("b", 0.8), ("c", 0.7)]
    lexical = [("x", 9.0), ("b", 8.0), ("y", 1.0)]
    for method in ("rrf", "weighted"):
        assert hybrid_fusion(dense, lexical, method=method)[0][0] == "b"
    # weights shift the balance
    assert hybrid_fusion(dense, lexical, method="rrf", weights=(1.0, 0.0))[0][0] in ("a", "b")
    assert [k for k, _ in hybrid_fusion(dense, lexical, method="weighted", weights=(0.0, 1.0))][:2] == ["x", "b"]


def test_hybrid_fusion_validates() -> None:
    with pytest.raises(ValueError, match="rrf, weighted"):
        hybrid_fusion([], [], method="max")
    with pytest.raises(ValueError, match="non-negative"):
        hybrid_fusion([], [], weights=(1.0, -1.0))
    with pytest.raises(ValueError, match="non-negative"):
        hybrid_fusion([], [], weights=(0.0, 0.0))
    with pytest.raises(ValueError, match="finite"):
        hybrid_fusion([("a", math.inf)], [], method="weighted")
    assert hybrid_fusion([], []) == []
    assert [k for k, _ in hybrid_fusion([("a", 0.5)], [])] == ["a"]
