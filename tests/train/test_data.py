"""Training pairs and dataset folders: accepted forms, and clear errors naming the row at fault."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from umr.errors import InputError
from umr.evaluation import load_dataset
from umr.train.data import TrainPair, coerce_pairs, load_training_data
from umr.train.synthetic import ShapesTask


def test_pair_forms_and_modalities(tmp_path: Path) -> None:
    img = ShapesTask(seed=0).render(("red", "circle"), __import__("numpy").random.default_rng(0))
    img.save(tmp_path / "a.png")
    pairs = coerce_pairs([
        ("a red circle", tmp_path / "a.png"),
        {"query": {"text": "what is this?", "image": img}, "positive": "a red circle", "negatives": ["a dot"]},
        ("q", "p", ["n1", "n2"]),
        TrainPair(*coerce_pairs([("x", "y")])[0].__dict__.values()),
    ])
    assert [p.positive.modality for p in pairs] == ["image", "text", "text", "text"]
    assert pairs[1].query.modality == "fused" and len(pairs[1].negatives) == 1
    assert [n.text for n in pairs[2].negatives] == ["n1", "n2"]
    assert pairs[0].positive_key() == coerce_pairs([("z", tmp_path / "a.png")])[0].positive_key()  # by content


def test_empty_pairs() -> None:
    with pytest.raises(ValueError, match="no training pairs"):
        coerce_pairs([])


def test_missing_positive_names_the_pair() -> None:
    with pytest.raises(ValueError, match=r"pair #1: positive is missing"):
        coerce_pairs([("q", "p"), {"query": "q2"}])
    with pytest.raises(ValueError, match=r"pair #0: expected \(query, positive"):
        coerce_pairs([("only-one",)])


def test_unreadable_image_names_the_pair(tmp_path: Path) -> None:
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not an image at all")
    with pytest.raises(InputError, match=r"pair #1: positive: .*broken\.png"):
        coerce_pairs([("q", "p"), ("q2", {"image": bad})])
    with pytest.raises(InputError, match=r"pair #0: negative #0: image file not found"):
        coerce_pairs([("q", "p", [{"image": tmp_path / "missing.png"}])])


def test_fit_rejects_bad_arguments(fresh_embedder) -> None:
    from umr.train import fit

    with pytest.raises(ValueError, match="no training pairs"):
        fit(fresh_embedder, [], progress=False)
    with pytest.raises(ValueError, match="batch_size must be at least 2"):
        fit(fresh_embedder, [("a", "b")], batch_size=1, progress=False)
    with pytest.raises(ValueError, match="hard_negatives must be >= 0"):
        fit(fresh_embedder, [("a", "b"), ("c", "d")], hard_negatives=-1, progress=False)
    with pytest.raises(ValueError, match="temperature must be in"):
        fit(fresh_embedder, [("a", "b"), ("c", "d")], temperature=5.0, lora=None, progress=False)
    with pytest.raises(TypeError, match="eval_set must be"):
        fit(fresh_embedder, [("a", "b"), ("c", "d")], eval_set=42, progress=False)


def _write(root: Path, corpus: list[dict], queries: list[dict], qrels: dict[str, str]) -> Path:
    (root / "qrels").mkdir(parents=True, exist_ok=True)
    (root / "corpus.jsonl").write_text("".join(json.dumps(r) + "\n" for r in corpus))
    (root / "queries.jsonl").write_text("".join(json.dumps(r) + "\n" for r in queries))
    for name, text in qrels.items():
        (root / "qrels" / name).write_text(text)
    return root


def test_dataset_folder_split_conventions(shapes_dataset: Path, tmp_path: Path) -> None:
    data = load_training_data(shapes_dataset)
    assert "train.tsv trains" in data.split_note
    assert len(data.pairs) == 6 * 4 and data.eval_set is not None and len(data.eval_set.queries) == 6 * 2
    assert not set(data.train_query_ids) & set(data.eval_set.query_ids)
    assert load_dataset(shapes_dataset).queries  # the same folder works for `umr eval`
    # only test.tsv: deterministic hash split of its queries
    corpus = [{"_id": f"d{i}", "text": f"doc {i}"} for i in range(40)]
    queries = [{"_id": f"q{i}", "text": f"query {i}"} for i in range(40)]
    root = _write(tmp_path / "one", corpus, queries, {"test.tsv": "".join(f"q{i}\td{i}\t1\n" for i in range(40))})
    a, b = load_training_data(root), load_training_data(root)
    assert a.eval_set is not None and 2 <= len(a.eval_set.query_ids) <= 20
    assert a.eval_set.query_ids == b.eval_set.query_ids  # deterministic
    assert not set(a.train_query_ids) & set(a.eval_set.query_ids)
    assert len(a.train_query_ids) + len(a.eval_set.query_ids) == 40


def test_dataset_folder_errors(tmp_path: Path) -> None:
    corpus = [{"_id": "d1", "text": "doc"}]
    queries = [{"_id": "q1", "text": "query"}]
    root = _write(tmp_path / "unknown-doc", corpus, queries, {"train.tsv": "q1\td9\t1\n"})
    with pytest.raises(ValueError, match=r"train\.tsv: line 1: corpus id 'd9' is not in corpus\.jsonl"):
        load_training_data(root)
    root = _write(tmp_path / "unknown-q", corpus, queries, {"train.tsv": "q1\td1\t1\nq7\td1\t1\n"})
    with pytest.raises(ValueError, match=r"line 2: query id 'q7' is not in queries\.jsonl"):
        load_training_data(root)
    root = _write(tmp_path / "empty", [], queries, {"train.tsv": "q1\td1\t1\n"})
    with pytest.raises(ValueError, match=r"corpus\.jsonl is empty"):
        load_training_data(root)
    root = _write(tmp_path / "no-pos", corpus, queries, {"train.tsv": "q1\td1\t0\n"})
    with pytest.raises(ValueError, match="no training query with a positive"):
        load_training_data(root)
    root = _write(tmp_path / "no-qrels", corpus, queries, {})
    with pytest.raises(FileNotFoundError, match=r"qrels/train\.tsv"):
        load_training_data(root)
    (tmp_path / "bad-img" / "qrels").mkdir(parents=True)
    (tmp_path / "bad-img" / "p.png").write_bytes(b"garbage")
    root = _write(tmp_path / "bad-img", [{"_id": "d1", "image": "p.png"}], queries, {"train.tsv": "q1\td1\t1\n"})
    with pytest.raises(InputError, match=r"pair #0 \(query 'q1'\): positive: cannot read .*p\.png"):
        load_training_data(root)


def test_judged_non_relevant_become_negatives(tmp_path: Path) -> None:
    corpus = [{"_id": f"d{i}", "text": f"doc {i}"} for i in range(3)]
    root = _write(tmp_path / "neg", corpus, [{"_id": "q1", "text": "q"}], {"train.tsv": "q1\td0\t1\nq1\td2\t0\n"})
    data = load_training_data(root)
    assert len(data.pairs) == 1 and data.pairs[0].negative_ids == ("d2",)
    assert data.eval_set is None or data.eval_set.query_ids == ["q1"]


def test_synthetic_task_is_deterministic(tmp_path: Path) -> None:
    import numpy as np

    a = ShapesTask(seed=4).samples(2)
    b = ShapesTask(seed=4).samples(2)
    c = ShapesTask(seed=5).samples(2)
    assert [cls for _, cls in a] == [cls for _, cls in b]
    assert all(np.array_equal(np.asarray(x), np.asarray(y)) for (x, _), (y, _) in zip(a, b))
    assert not all(np.array_equal(np.asarray(x), np.asarray(y)) for (x, _), (y, _) in zip(a, c))
    with pytest.raises(ValueError, match="shapes must be in"):
        ShapesTask(shapes=9)
