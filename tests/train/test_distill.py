"""Reranker distillation: teacher scores cached on disk by content and reused; fit with distillation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from umr.train.distill import DistillSettings, ScoreCache, teacher_scores


class CountingReranker:
    """Scores by word overlap; counts the candidates it scored."""

    model_id = "fake-reranker"

    def __init__(self) -> None:
        self.calls = 0

    def score(self, query, candidates, instruction=None):
        self.calls += len(candidates)
        q = set((query.text or "").split())
        return [len(q & set((c.text or "").split())) / max(1, len(q)) for c in candidates]


def test_scores_computed_once_then_read_from_the_cache(tmp_path: Path) -> None:
    path = tmp_path / "scores.json"
    rr = CountingReranker()
    queries = ["a red circle", "a blue square"]
    cands = [["a red square", "a red circle"], ["a blue square", "a green cross"]]
    first = teacher_scores(rr, queries, cands, ScoreCache(path))
    assert rr.calls == 4 and path.is_file()
    again = teacher_scores(rr, queries, cands, ScoreCache(path))  # a rerun: new cache object, same file
    assert rr.calls == 4
    np.testing.assert_array_equal(first, again)
    assert first[0, 1] == pytest.approx(1.0) and first[1, 1] == pytest.approx(1 / 3)
    teacher_scores(rr, ["a red circle"], [["a red circle", "a purple dot"]], ScoreCache(path))
    assert rr.calls == 5  # only the new candidate was scored
    other = CountingReranker()
    other.model_id = "another-reranker"
    teacher_scores(other, queries, cands, ScoreCache(path))
    assert other.calls == 4  # the key includes the reranker


def test_unreadable_cache_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "scores.json"
    path.write_text("{not json")
    rr = CountingReranker()
    teacher_scores(rr, ["q"], [["c1", "c2"]], ScoreCache(path))
    assert rr.calls == 2 and ScoreCache(path).scores


def test_settings_validation() -> None:
    with pytest.raises(ValueError, match="top_k >= 2"):
        DistillSettings(reranker=CountingReranker(), top_k=1)


def test_fit_with_distillation_reuses_cached_scores(fresh_embedder, shapes_model_dir, tmp_path: Path) -> None:
    pytest.importorskip("peft")
    import umr
    from umr.train import LoraSettings, fit
    from umr.train.synthetic import ShapesTask

    pairs = ShapesTask(colours=2, shapes=2, seed=2).pairs(per_class=2)
    corpus = [*sorted({t for _, t in pairs}), "a purple dot", "a big orange cross"]
    rr = CountingReranker()
    kw = dict(epochs=1, batch_size=4, lr=5e-3, lora=LoraSettings(r=4), progress=False, hard_negatives=1,
              distill=DistillSettings(reranker=rr, top_k=3, corpus=corpus))
    report = fit(fresh_embedder, pairs, output_dir=tmp_path / "a", **kw)
    assert report.completed and rr.calls > 0 and (tmp_path / "a" / "reranker_scores.json").is_file()
    assert any("computed" in n for n in report.notes) and any("hard negatives" in n for n in report.notes)
    calls = rr.calls
    again = umr.Embedder.from_pretrained(shapes_model_dir, device="cpu")
    fit(again, pairs, output_dir=tmp_path / "a", resume=False, **kw)
    assert rr.calls == calls  # second run: every teacher score came from the cache
