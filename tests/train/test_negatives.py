"""Hard-negative mining rules: positives excluded, false-negative margin, depth, modality-aware mix."""

from __future__ import annotations

import numpy as np
import pytest

from umr.train.negatives import mine_from_scores, mine_hard_negatives


def test_top_k_minus_positives_in_score_order() -> None:
    scores = np.array([[0.9, 0.2, 0.5, 0.7, 0.1]])
    assert mine_from_scores(scores, [{0}], k=2, margin=0.0) == [[3, 2]]


def test_margin_skips_likely_false_negatives() -> None:
    # positive 0 scores 0.80; 1 scores above it, 2 is within the margin: both skipped
    scores = np.array([[0.80, 0.85, 0.78, 0.60, 0.50]])
    assert mine_from_scores(scores, [{0}], k=2, margin=0.05) == [[3, 4]]
    assert mine_from_scores(scores, [{0}], k=2, margin=0.0) == [[2, 3]]
    # the weakest positive sets the ceiling when there are several
    assert mine_from_scores(scores, [{0, 3}], k=5, margin=0.05) == [[4]]


def test_depth_limits_candidates_and_errors_name_the_query() -> None:
    scores = np.array([[0.9, 0.5, 0.4, 0.3]])
    assert mine_from_scores(scores, [{0}], k=3, margin=0.0, depth=2) == [[1]]
    with pytest.raises(ValueError, match="query #0 has no positive"):
        mine_from_scores(scores, [set()], k=1)
    with pytest.raises(ValueError, match="outside the corpus"):
        mine_from_scores(scores, [{7}], k=1)


def test_modality_aware_mixes_target_and_wrong_modality() -> None:
    # corpus: 0 image (positive), 1-3 texts scoring high, 4-5 images scoring lower
    modalities = ["image", "text", "text", "text", "image", "image"]
    scores = np.array([[0.9, 0.8, 0.7, 0.6, 0.5, 0.4]])
    plain = mine_from_scores(scores, [{0}], k=2, margin=0.0)
    assert plain == [[1, 2]]  # both text: the model's modality bias
    aware = mine_from_scores(scores, [{0}], k=2, margin=0.0, modalities=modalities)
    assert sorted(aware[0]) == [1, 4]  # one wrong-modality (text), one target-modality (image)
    aware4 = mine_from_scores(scores, [{0}], k=4, margin=0.0, modalities=modalities, wrong_modality=1)
    assert aware4 == [[1, 2, 4, 5]]  # 1 text asked, only 2 images exist: topped up with the next text
    assert sum(modalities[j] == "image" for j in aware4[0]) == 2


def test_modality_aware_tops_up_when_one_kind_is_short() -> None:
    modalities = ["image", "text", "text", "text"]
    scores = np.array([[0.9, 0.5, 0.4, 0.3]])
    assert len(mine_from_scores(scores, [{0}], k=2, margin=0.0, modalities=modalities)[0]) == 2


class _FixedEmbedder:
    """Vectors by lookup: enough of the Embedder API for mining."""

    def __init__(self, table: dict[str, list[float]]) -> None:
        self.table = table

    def _vecs(self, items) -> np.ndarray:
        v = np.array([self.table[i if isinstance(i, str) else i["text"]] for i in items], dtype=np.float32)
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    def embed_documents(self, items, **_):
        return self._vecs(items)

    def embed_queries(self, items, **_):
        return self._vecs(items)


def test_mine_hard_negatives_with_a_model() -> None:
    emb = _FixedEmbedder({"q": [1, 0], "pos": [1, 0.1], "near": [1, 0.12], "hard": [1, 0.6], "far": [0, 1]})
    got = mine_hard_negatives(emb, ["q"], ["pos", "near", "hard", "far"], [{0}], k=2, margin=0.01)
    assert got == [[2, 3]]  # 'near' is within the margin of the positive: a likely false negative
    with pytest.raises(ValueError, match="one set per query"):
        mine_hard_negatives(emb, ["q"], ["pos"], [], k=1)
